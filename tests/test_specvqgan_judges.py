"""The judge bundles (``audiorep.load("melception" | "vggishish")``): a WAV file in, the
authors' features out, through the registry; weights loading; ``audiorep specvqgan evaluate``.

Fixtures: tests/fixtures/specvqgan_mel (WAVs and the authors' mels), specvqgan_melception and
specvqgan_vggishish (the authors' judge outputs on seeded recipe weights; their READMEs give
the tolerances). Case 2 of the judge fixtures is ``mel_speech_long`` centre-cropped.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import audiorep
from audiorep.audio import load
from audiorep.cli import main
from audiorep.pipelines import WeightsUnavailableError
from audiorep.pipelines.specvqgan import judge_windows

FIX = Path(__file__).parent / "fixtures"
MEL = FIX / "specvqgan_mel"
SPEECH_CASE = 2  # row of the judge fixtures computed from mel_speech_long


@pytest.fixture(scope="module")
def melception():
    return audiorep.load("melception", weights="random")


@pytest.fixture(scope="module")
def speech_long():
    return load(MEL / "speech_long.wav", mono=True)


def test_wav_to_melception_features_equals_the_authors_pipeline(melception, speech_long):
    """WAV -> mel (1.2e-7 from the authors') -> crop -> normalise -> Melception: the whole
    chain through the bundle lands within the fixture tolerances of the authors' outputs on
    their own mel (2048: atol 1e-4, logits: 3e-4, tests/fixtures/specvqgan_melception/README.md;
    the mel's 1.2e-7 becomes <= 2e-6 after normalisation by stds of ~0.1, far below them)."""
    wave, sr = speech_long
    mels = melception.mels(wave, sr)
    assert mels.shape == (2, 80, 860)  # 13.8 s: two 10 s windows, the first is the authors'
    expected = np.load(MEL / "expected_mels.npz")["mel_speech_long"]
    np.testing.assert_allclose(mels[0].numpy(), expected, rtol=0, atol=1e-5)
    feats = melception.embed(wave, sr)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    ref = np.load(FIX / "specvqgan_melception" / "judges_melception_2048.npy")[SPEECH_CASE]
    np.testing.assert_allclose(feats[0].numpy(), ref, rtol=0, atol=1e-4)
    logits = melception.logits(wave, sr)
    ref = np.load(FIX / "specvqgan_melception" / "judges_melception_logits.npy")[SPEECH_CASE]
    np.testing.assert_allclose(logits[0].numpy(), ref, rtol=0, atol=3e-4)
    clip = melception.clip_embeddings(wave, sr)
    np.testing.assert_array_equal(clip.timestamps, [0.0, 10.0])


def test_wav_to_vggishish_logits_equals_the_authors_pipeline(speech_long):
    """Same chain for VGGish-ish (logits atol 3e-4, tests/fixtures/specvqgan_vggishish)."""
    judge = audiorep.load("vggishish", weights="random")
    assert judge.embedding_size == 4096 and judge.num_classes == 309
    wave, sr = speech_long
    logits = judge.logits(wave[: 10 * sr], sr)  # exactly the authors' first 10 s
    ref = np.load(FIX / "specvqgan_vggishish" / "judges_vggishish_logits.npy")[SPEECH_CASE]
    np.testing.assert_allclose(logits[0].numpy(), ref, rtol=0, atol=3e-4)
    assert judge.fusion(wave[:sr], sr).shape == (256 + 512 + 512,)


def test_windows_loop_short_clips_at_their_own_rate_and_cut_long_ones():
    short = torch.arange(1, 8001, dtype=torch.float64) / 8000  # 1 s at 8 kHz, a ramp
    w = judge_windows(short, 8000)
    assert w.shape == (1, 220500)
    # looped at 8 kHz first (the authors' ffmpeg -stream_loop), then resampled
    ten = torch.cat([short] * 10)
    from audiorep.resample import resample

    np.testing.assert_allclose(w[0].numpy(), resample(ten, 8000, 22050)[:220500].numpy())
    long = torch.randn(2, 22050 * 25, generator=torch.Generator().manual_seed(0)) * 0.1
    w = judge_windows(long, 22050)  # stereo mixed, 25 s -> 3 windows, the last looped
    assert w.shape == (3, 220500)
    mono = long.double().mean(dim=0)
    torch.testing.assert_close(w[1], mono[220500:441000], rtol=0, atol=0)
    tail = mono[441000:]
    torch.testing.assert_close(w[2, : tail.shape[0]], tail, rtol=0, atol=0)
    torch.testing.assert_close(w[2, tail.shape[0] : 2 * tail.shape[0]], tail, rtol=0, atol=0)
    with pytest.raises(ValueError, match="non-empty"):
        judge_windows(torch.zeros(0), 22050)


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_weights_are_checked_strictly_and_pickles_refused(tmp_path, monkeypatch):
    bad = tmp_path / "melception-21-05-10T09-28-40.pt"
    torch.save({"model": {"fc.weight": torch.zeros(3, 2048), "fc.bias": torch.zeros(3)}}, bad)
    with pytest.raises(ValueError, match=r"does not match: \d+ missing: Conv2d_1a_3x3"):
        audiorep.load("melception", weights=bad)
    evil = tmp_path / "vggishish16.pt"
    evil.write_bytes(pickle.dumps({"model": _Payload()}))
    with pytest.raises(Exception, match="vggishish16.pt") as caught:
        audiorep.load("vggishish", weights=evil)
    assert "pwned" not in str(caught.value)
    monkeypatch.setenv("AUDIOREP_HOME", str(tmp_path / "cache"))
    with pytest.raises(WeightsUnavailableError, match="weights download specvqgan-melception"):
        audiorep.load("melception")
    with pytest.raises(ValueError, match="not melception weights"):
        audiorep.load("melception", weights="specvqgan-vggishish16")


def test_a_judge_trained_on_other_classes_loads_the_same_way(tmp_path):
    from audiorep.models.melception import seeded_random_state_dict

    state = seeded_random_state_dict(7, num_classes=5)
    path = tmp_path / "my_judge.pt"
    torch.save({"model": state, "epoch": 3}, path)  # the authors' checkpoint layout
    judge = audiorep.load("melception", weights=path)
    assert judge.num_classes == 5 and judge.pretrained
    assert judge.logits(torch.zeros(22050), 22050).shape == (1, 5)


def test_evaluate_command_writes_reports(tmp_path, capsys):
    rs = np.random.RandomState(0)
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    for i in range(3):
        sf.write(gen / f"vid{i}_sample_0.wav", (0.1 * rs.randn(22050 * 2)).astype("f4"), 22050)
        np.save(ref / f"vid{i}_mel.npy", rs.rand(80, 860).astype(np.float32))
    out = tmp_path / "out"
    argv = ["specvqgan", "evaluate", "--generated", str(gen), "--reference", str(ref),
            "--weights", "random", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "FID:" in text and "MKL:" in text and "random weights" in text
    import json

    data = json.loads((out / "specvqgan_eval.json").read_text())
    metrics = data["metrics"]  # the authors' metric names
    assert np.isfinite(metrics["frechet_inception_distance"])
    assert metrics["kullback_leibler_divergence"] >= 0
    assert main([*argv[:-1], "--dataset", "vas"]) == 2  # no VAS names: a clear usage error
    assert "no generated file shares a video" in capsys.readouterr().err
