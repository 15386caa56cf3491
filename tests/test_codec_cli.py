"""``audiorep codec``: the .codes format, bitrate, windows, and the three commands end to end
with a tiny seeded codec and vocoder (the shipped small models are tested where they are
registered)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.cli import main
from audiorep.models.melgan import MelGANConfig, MelGANGenerator
from audiorep.models.vqgan import SpectrogramVQGAN, VQGANConfig
from audiorep.specvqgan.codec import (
    CodeFile,
    CodeFileError,
    bitrate_kbps,
    bits_per_code,
    decode_codes,
    encode_file,
    encode_mel,
    pack_bits,
    unpack_bits,
)
from audiorep.specvqgan.codec_training import save_trained_codec
from audiorep.specvqgan.vocoder_training import save_trained_vocoder

WAVS = Path(__file__).parent / "fixtures" / "specvqgan_mel"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[SpectrogramVQGAN, Path, Path]:
    torch.manual_seed(0)
    cfg = VQGANConfig(ch=32, ch_mult=(1, 1, 1, 1, 1), num_res_blocks=1, attn_resolutions=(),
                      z_channels=32, embed_dim=16, n_embed=100)  # fmt: skip
    codec = SpectrogramVQGAN(cfg).eval()
    root = tmp_path_factory.mktemp("models")
    save_trained_codec(root / "codec.safetensors", codec)
    gen = MelGANGenerator(MelGANConfig(ngf=8))
    save_trained_vocoder(root / "vocoder.safetensors", gen)
    return codec, root / "codec.safetensors", root / "vocoder.safetensors"


def test_bitrate_formula_is_bits_times_codes_over_seconds():
    assert bits_per_code(128) == 7 and bits_per_code(1024) == 10 and bits_per_code(100) == 7
    assert bits_per_code(2) == 1 and bits_per_code(129) == 8
    # the authors' 10 s example with 1024 codes: 10 bits x 265 codes / 9.85 s = 0.269 kbps
    assert bitrate_kbps(1024, 265, 9.85) == pytest.approx(10 * 265 / 9.85 / 1000)
    assert bitrate_kbps(1024, 265, 9.85) == pytest.approx(0.26904, abs=1e-5)


@pytest.mark.parametrize("bits", [1, 3, 7, 10, 13])
def test_bit_packing_round_trips(bits):
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 2**bits, size=101)
    data = pack_bits(values, bits)
    assert len(data) == math.ceil(101 * bits / 8)
    assert np.array_equal(unpack_bits(data, bits, 101), values)
    with pytest.raises(ValueError, match="does not fit"):
        pack_bits(np.array([2**bits]), bits)


def test_code_file_round_trip_and_damage(tmp_path):
    codes = np.arange(5 * 9).reshape(5, 9) % 128
    cf = CodeFile(codes, 128, frames=140, source_rate=44100, source_samples=72000,
                  codec={"name": "x"})  # fmt: skip
    path = cf.save(tmp_path / "a.codes")
    back = CodeFile.load(path)
    assert np.array_equal(back.codes, codes) and back.frames == 140 and back.codec == {"name": "x"}
    assert back.kbps == pytest.approx(7 * 45 / (72000 / 44100) / 1000)
    raw = path.read_bytes()
    assert len(raw) < 200  # 45 codes x 7 bits = 40 bytes of payload + a small header
    (tmp_path / "b.codes").write_bytes(raw[:-10])
    with pytest.raises(CodeFileError, match="b.codes: damaged"):
        CodeFile.load(tmp_path / "b.codes")
    (tmp_path / "c.codes").write_bytes(b"RIFF" + raw)
    with pytest.raises(CodeFileError, match="c.codes: not an audiorep .codes file"):
        CodeFile.load(tmp_path / "c.codes")


def test_any_width_is_padded_to_whole_columns(tiny):
    codec = tiny[0]
    for frames in (1, 15, 16, 17, 300):
        mel = torch.rand(80, frames)
        codes = encode_mel(codec, mel, window_frames=128)
        assert codes.shape == (5, math.ceil(frames / 16))
        assert decode_codes(codec, codes, frames, window_frames=128).shape == (80, frames)


def test_windows_make_codes_independent_of_the_file_length(tiny):
    codec = tiny[0]
    torch.manual_seed(1)
    mel = torch.rand(80, 300)
    long = encode_mel(codec, mel, window_frames=128)
    first = encode_mel(codec, mel[:, :128], window_frames=128)
    assert torch.equal(long[:, :8], first)


def test_encode_resamples_any_rate(tiny, tmp_path):
    x, sr = sf.read(WAVS / "speech_short.wav", dtype="float32")
    assert sr == 22050
    stereo = np.stack([x, x], axis=1)
    sf.write(tmp_path / "s48k.wav", stereo[: sr * 2], 22050)
    cf, mel = encode_file(tiny[0], tmp_path / "s48k.wav")
    assert cf.source_rate == 22050 and cf.frames == 1 + 44100 // 256 == mel.shape[-1]
    assert cf.codes.shape == (5, math.ceil(cf.frames / 16))


def test_cli_reconstruct_encode_decode(tiny, tmp_path, capsys):
    _, codec_path, vocoder_path = tiny
    x, sr = sf.read(WAVS / "speech_short.wav", dtype="float32")
    src = tmp_path / "in" / "speech.flac"
    src.parent.mkdir()
    sf.write(src, x[:30000], sr)
    out = tmp_path / "out"
    rc = main(["codec", "reconstruct", str(src), "-o", str(out), "--codec", str(codec_path),
               "--vocoder", str(vocoder_path), "--json", "--no-progress", "--plot"])  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["n_codes"] == 100 and report["bits_per_code"] == 7
    frames = 1 + 30000 // 256
    assert report["grid"] == [5, math.ceil(frames / 16)]
    assert report["kbps"] == pytest.approx(
        7 * 5 * math.ceil(frames / 16) / (30000 / sr) / 1000, rel=1e-3
    )
    wav, rate = sf.read(out / "speech.wav")
    assert rate == 22050 and len(wav) == 256 * frames
    assert (out / "speech.png").stat().st_size > 1000
    assert 0 <= report["mel_l1"] <= 1
    # decode the written codes again, with Griffin-Lim, at the source's rate
    rc = main(["codec", "decode", str(out / "speech.codes"), "-o", str(tmp_path / "dec"),
               "--codec", str(codec_path), "--vocoder", "griffin-lim", "--sample-rate", "16000",
               "--no-progress"])  # fmt: skip
    assert rc == 0
    wav2, rate2 = sf.read(tmp_path / "dec" / "speech.wav")
    assert rate2 == 16000 and abs(len(wav2) - 256 * frames * 16000 / 22050) <= 1
    # encode only: the same grid as reconstruct wrote
    rc = main(["codec", "encode", str(src), "-o", str(tmp_path / "enc"), "--codec",
               str(codec_path), "--no-progress"])  # fmt: skip
    assert rc == 0
    a = CodeFile.load(out / "speech.codes").codes
    assert np.array_equal(a, CodeFile.load(tmp_path / "enc" / "speech.codes").codes)


def test_cli_errors_name_the_problem(tiny, tmp_path, capsys):
    _, codec_path, _ = tiny
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    rc = main(["codec", "encode", str(bad), "-o", str(tmp_path / "o"), "--codec",
               str(codec_path), "--no-progress"])  # fmt: skip
    assert rc == 1 and "bad.wav" in capsys.readouterr().err
    rc = main(["codec", "encode", str(bad), "-o", str(tmp_path / "o"), "--codec", "nope"])
    assert rc == 2 and "nope" in capsys.readouterr().err
    # a grid decoded with another codec's weights is refused, not turned into noise
    codes = CodeFile(np.zeros((5, 3), dtype=np.int64), 100, 40, 22050, 10240,
                     codec={"weights_sha256": "0" * 16})  # fmt: skip
    codes.save(tmp_path / "x.codes")
    args = ["--codec", str(codec_path), "--vocoder", "griffin-lim", "--no-progress"]
    rc = main(["codec", "decode", str(tmp_path / "x.codes"), "-o", str(tmp_path / "o"), *args])
    assert rc == 1 and "made by codec weights" in capsys.readouterr().err


def test_shipped_small_models_beat_a_per_band_mean(tmp_path):
    """The bundled codec + vocoder are trained: on speech and tones that are not in their
    training data the codec's mel is closer to the original than each band's mean is, it uses
    many codes, and the vocoder's audio re-analyses to a mel closer than silence.

    Not on every signal: on the white-noise and sine-sweep fixtures (stationary or unlike its
    training audio) the small codec is WORSE than the per-band mean (0.049 vs 0.023 and
    0.160 vs 0.086, docs/codec.md), so those are not asserted here."""
    from audiorep.specvqgan.codec import audio_to_mel, load_audio_22k, mel_to_audio
    from audiorep.specvqgan.codec_models import load_codec, load_vocoder

    codec, _ = load_codec("small")
    vocoder, _ = load_vocoder("small")
    for name in ("speech_long.wav", "speech_short.wav", "tones.wav"):
        mel = audio_to_mel(load_audio_22k(WAVS / name)[0])[:, :848]
        codes = encode_mel(codec, mel)
        rebuilt = decode_codes(codec, codes, mel.shape[-1])
        err = float((rebuilt - mel).abs().mean())
        baseline = float((mel - mel.mean(dim=1, keepdim=True)).abs().mean())
        assert err < baseline, (name, err, baseline)
        assert len(torch.unique(codes)) >= 20
        wave = mel_to_audio(mel, vocoder)
        again = audio_to_mel(wave)[:, : mel.shape[-1]]
        assert float((again - mel).abs().mean()) < 0.5 * float(mel.abs().mean())
