"""`audiorep embed` end to end on small files, including bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.cli import main
from audiorep.frontends.vggish import waveform_to_examples
from audiorep.pipelines import load
from numerics import VGGISH_EMBEDDING, assert_reordering_close

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "audio"


def _write_inputs(root: Path) -> None:
    rng = np.random.default_rng(0)
    (root / "sub").mkdir(parents=True)
    sf.write(root / "a.wav", rng.uniform(-0.3, 0.3, 16000 * 3), 16000, subtype="PCM_16")
    sf.write(root / "sub" / "b.flac", rng.uniform(-0.3, 0.3, (44100 * 2, 2)), 44100)
    sf.write(root / "short.wav", np.zeros(8000), 16000, subtype="PCM_16")
    (root / "notes.txt").write_text("not audio, ignored by the folder scan")


def test_embed_folder_writes_npz_per_file(tmp_path, capsys, frozen_vggish):
    _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    code = main(["embed", str(tmp_path / "in"), "-o", str(out), "--weights", "random", "-q"])
    assert code == 0
    a = np.load(out / "a.npz")
    # 3 s at 16 kHz: floor((48000 - 240) / 15360) = 3 examples
    assert a["embeddings"].shape == (3, 128) and a["embeddings"].dtype == np.float32
    np.testing.assert_allclose(a["timestamps"], [0.0, 0.96, 1.92])
    assert a["quantized"].dtype == np.uint8 and a["quantized"].shape == (3, 128)
    b = np.load(out / "sub" / "b.npz")  # 2 s stereo at 44.1 kHz -> 32000 samples -> 2
    assert b["embeddings"].shape == (2, 128)
    short = np.load(out / "short.npz")
    assert short["embeddings"].shape == (0, 128)
    # same numbers as the library call
    bundle = load("vggish", weights="random", seed=0)
    wave, sr = sf.read(tmp_path / "in" / "a.wav", dtype="float32")
    expected = bundle.embed_examples(waveform_to_examples(wave, sr))
    assert_reordering_close(a["embeddings"], expected.numpy(), VGGISH_EMBEDDING)
    printed = capsys.readouterr().out
    assert "files:      3 embedded of 3" in printed and "failures:   0" in printed


def test_bad_file_is_reported_and_others_still_written(tmp_path, capsys):
    _write_inputs(tmp_path / "in")
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF garbage")
    out = tmp_path / "out"
    code = main(["embed", str(tmp_path / "in"), "-o", str(out), "--weights", "random", "-q",
                 "--no-pca"])  # fmt: skip
    assert code == 1
    assert (out / "a.npz").exists() and "quantized" not in np.load(out / "a.npz")
    failures = (out / "failures.tsv").read_text()
    assert "broken.wav" in failures and "not a recognised audio format" in failures
    assert "FAILED" in capsys.readouterr().out


def test_missing_input_and_missing_weights_are_clear(tmp_path, monkeypatch, capsys):
    assert main(["embed", str(tmp_path / "nope.wav"), "-o", str(tmp_path), "--weights",
                 "random", "-q"]) == 2  # fmt: skip
    assert "input not found" in capsys.readouterr().err
    monkeypatch.setenv("AUDIOREP_HOME", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    assert main(["embed", str(EXAMPLES / "speech_en_16k.wav"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "weights" in err and "random" in err


def test_container_input(tmp_path):
    pytest.importorskip("av", reason="PyAV not installed")
    out = tmp_path / "out"
    code = main(["embed", str(EXAMPLES / "tone_aac_22k.m4a"), "-o", str(out), "--weights",
                 "random", "-q"])  # fmt: skip
    assert code == 0 and np.load(out / "tone_aac_22k.npz")["embeddings"].shape == (2, 128)


def test_fusion_features_through_embed(tmp_path):
    from audiorep.features.fusion import GeneralPurposeVGGish

    out = tmp_path / "out"
    wav = EXAMPLES / "speech_en_16k.wav"
    assert main(["embed", str(wav), "-o", str(out), "--weights", "random", "-q",
                 "--fusion", "9,14"]) == 0  # fmt: skip
    d = np.load(out / "speech_en_16k.npz")
    n = d["embeddings"].shape[0]
    assert d["fusion"].shape == (n, 8192) and d["fusion_clip"].shape == (8192,)
    bundle = load("vggish", weights="random", seed=0)
    wave, sr = sf.read(wav, dtype="float32")
    examples = waveform_to_examples(wave, sr).float()
    fusion = GeneralPurposeVGGish(bundle.model, [9, 14])
    with torch.no_grad():
        # fused taps come from layers up to the embedding: bounded by the whole network's sums
        assert_reordering_close(d["fusion"], fusion(examples).numpy(), VGGISH_EMBEDDING)
        clip = fusion.forward_clip(examples[None])[0].numpy()
        assert_reordering_close(d["fusion_clip"], clip, VGGISH_EMBEDDING)
    assert main(["embed", str(wav), "-o", str(out), "--weights", "random", "-q",
                 "--fusion", "16"]) == 2  # fmt: skip
