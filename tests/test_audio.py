"""Decoding: formats, layouts, and clear errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.audio import AudioLoadError, load

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "audio"


def test_wav_is_int16_over_32768(tmp_path):
    samples = np.array([[0, 1, -1, 32767, -32768, 1234]], dtype=np.int16).T
    path = tmp_path / "x.wav"
    sf.write(path, samples, 16000, subtype="PCM_16")
    waveform, sr = load(path)
    assert sr == 16000 and waveform.shape == (1, 6) and waveform.dtype == torch.float32
    np.testing.assert_array_equal(waveform[0].numpy(), samples[:, 0] / 32768.0)


def test_channels_first_and_mono(tmp_path):
    stereo = np.stack([np.linspace(-0.5, 0.5, 1000), np.zeros(1000)], axis=1)
    path = tmp_path / "s.flac"
    sf.write(path, stereo, 22050, subtype="PCM_16")
    waveform, sr = load(path)
    assert waveform.shape == (2, 1000) and sr == 22050
    mono, _ = load(path, mono=True)
    torch.testing.assert_close(mono, waveform.mean(0))


@pytest.mark.parametrize(
    "name,sr,channels",
    [("speech_en_16k.wav", 16000, 1), ("pink_noise_16k.flac", 16000, 1),
     ("sweep_48k.ogg", 48000, 1), ("chord_44k1_stereo.wav", 44100, 2)],
)  # fmt: skip
def test_shipped_examples(name, sr, channels):
    waveform, rate = load(EXAMPLES / name)
    assert rate == sr and waveform.shape[0] == channels and waveform.shape[1] > sr


def test_m4a_container_with_pyav():
    pytest.importorskip("av", reason="PyAV not installed (pip install 'audiorep[av]')")
    waveform, sr = load(EXAMPLES / "tone_aac_22k.m4a")
    assert sr == 22050 and waveform.shape[0] == 1
    # a 660 Hz tone of amplitude 0.3: AAC keeps its level and pitch
    x = waveform[0, 4096:36864].numpy()
    assert 0.25 < np.abs(x).max() < 0.35
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) * sr / len(x) - 660) < 5


def test_errors_name_the_file(tmp_path):
    with pytest.raises(AudioLoadError, match="missing.wav: no such file"):
        load(tmp_path / "missing.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioLoadError, match="empty.wav: empty file"):
        load(empty)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not a RIFF file at all" * 10)
    with pytest.raises(AudioLoadError, match="garbage.wav: not a recognised audio format"):
        load(garbage)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros((0, 1)), 16000)
    with pytest.raises(AudioLoadError, match="zero.wav: zero-length"):
        load(zero)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioLoadError, match="nan.wav: .*NaN"):
        load(nan)
    with pytest.raises(AudioLoadError, match="is a directory"):
        load(tmp_path)
    broken_m4a = tmp_path / "broken.m4a"
    broken_m4a.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    with pytest.raises(AudioLoadError, match="broken.m4a"):
        load(broken_m4a)


def test_api_refuses_non_finite_samples_and_bad_rates():
    """Issue 12 item 8: NaN/Inf gave finite, normal-looking embeddings; sr=0 divided by zero."""
    import audiorep
    from audiorep import hear
    from audiorep.pipelines.backbones import prepare_waveform

    x = torch.zeros(16000)
    x[1234] = float("nan")
    bundle = audiorep.load("vggish", weights="random")
    with pytest.raises(ValueError, match=r"1 non-finite sample\(s\) \(NaN/Inf\), the first at"):
        bundle.embed(x, 16000)
    stereo = torch.zeros(2, 16000)
    stereo[1, 7] = float("inf")
    with pytest.raises(ValueError, match=r"index \(1, 7\)"):
        prepare_waveform(stereo, 16000)
    with pytest.raises(ValueError, match="HEAR audio: 1 non-finite"):
        hear.get_scene_embeddings(x[None], hear.HearVGGish(bundle))
    for rate in (0, -16000, 16000.5):
        with pytest.raises(ValueError, match="sample rate must be a positive whole number"):
            bundle.embed(torch.zeros(16000), rate)
    assert bundle.embed(torch.zeros(16000), 16000).shape == (1, 128)  # clean input still works


def test_headerless_au_is_decoded_with_a_warning(tmp_path):
    """Random bytes named .au are 'valid' headerless mu-law to libsndfile: the user is told."""
    import warnings

    from audiorep.audio import DamagedAudioWarning

    noise = tmp_path / "noise.au"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.warns(DamagedAudioWarning, match=r"noise\.au: no audio header"):
        waveform, sr = load(noise)
    assert sr == 8000 and waveform.shape == (1, 4000)
    real = tmp_path / "tone.au"  # a real AU file (".snd" header) decodes without a warning
    sf.write(real, 0.5 * np.sin(np.arange(800) / 5.0), 8000, format="AU", subtype="ULAW")
    assert real.read_bytes()[:4] == b".snd"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedAudioWarning)
        assert load(real)[0].shape == (1, 800)
