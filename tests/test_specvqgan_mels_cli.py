"""``audiorep specvqgan mels``: folders of audio/video -> the authors' mel layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.audio import load
from audiorep.cli import main
from audiorep.frontends.specvqgan import CLIP_SAMPLES, mel_spectrogram
from audiorep.resample import resample
from audiorep.specvqgan.mels import MEL_FOLDER, extract_mels, is_complete, load_clip
from numerics import EPS32

FIXTURES = Path(__file__).parent / "fixtures" / "specvqgan_mel"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "audio"


def tone(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """``(samples, channels)`` float32: harmonics of 220 Hz plus a little noise."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1760 * t)
    cols = [x * (0.5 + 0.5 * c) + 0.01 * rng.standard_normal(t.size) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


@pytest.fixture
def corpus(tmp_path) -> Path:
    """``long44k.wav`` (10.5 s, 44.1 kHz stereo), ``dog/short.wav`` (3 s at 22.05 kHz, tiled),
    ``dog/speech_short.wav`` (a fixture clip), ``broken.wav`` (not audio)."""
    root = tmp_path / "in"
    (root / "dog").mkdir(parents=True)
    sf.write(root / "long44k.wav", tone(10.5, 44100, channels=2), 44100, subtype="PCM_16")
    sf.write(root / "dog" / "short.wav", tone(3.0, 22050, seed=1), 22050, subtype="PCM_16")
    shutil.copy(FIXTURES / "speech_short.wav", root / "dog" / "speech_short.wav")
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 4)
    return root


def out_file(out: Path, rel_folder: str, name: str) -> Path:
    return out / rel_folder / MEL_FOLDER / f"{name}_mel.npy"


def test_folder_to_mels(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["specvqgan", "mels", str(corpus), str(out), "-q", "--batch-size", "2"]) == 1
    stdout = capsys.readouterr().out
    assert "3 written of 4" in stdout and "failures.tsv" in stdout
    paths = {
        "long44k": out_file(out, ".", "long44k"),
        "short": out_file(out, "dog", "short"),
        "speech_short": out_file(out, "dog", "speech_short"),
    }
    mels = {}
    for key, path in paths.items():
        mels[key] = np.load(path)
        assert mels[key].shape == (80, 860) and mels[key].dtype == np.float32, key
    assert sorted(p.name for p in out.rglob("*.npy")) == sorted(p.name for p in paths.values())

    # failures.tsv names the broken file and why; no temp files are left behind.
    failures = (out / "failures.tsv").read_text().splitlines()
    assert len(failures) == 1
    path, reason = failures[0].split("\t")
    assert path == str(corpus / "broken.wav") and "broken.wav" in reason
    assert not list(out.rglob("*.tmp"))

    # 44.1 kHz stereo: cut to 10 s at 44.1 kHz, mono, resampled, then the mel.
    x, sr = load(corpus / "long44k.wav")
    expected = mel_spectrogram(resample(x[:, :441000].double().mean(0), sr, 22050))
    np.testing.assert_allclose(mels["long44k"], expected, rtol=0, atol=EPS32)

    # A 3 s clip is looped to 10 s before the mel (not zero-padded).
    x, _ = load(corpus / "dog" / "short.wav", mono=True)
    tiled = np.tile(x.numpy(), 4)[:CLIP_SAMPLES]
    np.testing.assert_allclose(mels["short"], mel_spectrogram(torch.from_numpy(tiled)), atol=EPS32)
    assert mels["short"][:, 300:].min() > 0  # the tail is sound, not silence

    # Already 22.05 kHz 16-bit: the pipeline of the reference, on the tiled clip.
    x, _ = load(corpus / "dog" / "speech_short.wav", mono=True)
    tiled = np.tile(x.numpy(), 3)[:CLIP_SAMPLES]
    np.testing.assert_allclose(
        mels["speech_short"], mel_spectrogram(torch.from_numpy(tiled)), rtol=0, atol=EPS32
    )


def test_no_tile_reproduces_the_reference_mel(corpus, tmp_path):
    out = tmp_path / "out"
    extract_mels(corpus / "dog", out, tile=False, progress=False)
    got = np.load(out_file(out, ".", "speech_short"))
    with np.load(FIXTURES / "expected_mels.npz") as data:
        np.testing.assert_allclose(got, data["mel_speech_short"], rtol=0, atol=1e-5)


def test_resume_skips_finished_outputs(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["specvqgan", "mels", str(corpus), str(out), "-q"]) == 1
    long_path, short_path = out_file(out, ".", "long44k"), out_file(out, "dog", "short")
    speech_path = out_file(out, "dog", "speech_short")
    before = {p: p.stat().st_mtime_ns for p in (long_path, short_path)}
    complete = np.load(speech_path)
    # A half-written file under the final name (what atomic writes prevent) is redone.
    speech_path.write_bytes(speech_path.read_bytes()[:1000])
    assert not is_complete(speech_path) and is_complete(long_path)
    capsys.readouterr()
    assert main(["specvqgan", "mels", str(corpus), str(out), "-q", "--resume"]) == 1
    assert "(2 already done, skipped)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before  # untouched
    np.testing.assert_array_equal(np.load(speech_path), complete)
    assert len((out / "failures.tsv").read_text().splitlines()) == 1

    # Fixing the broken input: the next resumed run has no failures and removes the list.
    (corpus / "broken.wav").unlink()
    assert main(["specvqgan", "mels", str(corpus), str(out), "-q", "--resume"]) == 0
    assert not (out / "failures.tsv").exists()


def test_video_container(tmp_path):
    pytest.importorskip("av", reason="PyAV not installed (pip install 'audiorep[av]')")
    src = tmp_path / "clips"
    src.mkdir()
    shutil.copy(EXAMPLES / "tone_aac_22k.m4a", src / "tone.m4a")
    summary = extract_mels(src, tmp_path / "out", progress=False)
    assert summary.written == 1 and not summary.failures
    got = np.load(out_file(tmp_path / "out", ".", "tone"))
    np.testing.assert_allclose(got, mel_spectrogram(load_clip(src / "tone.m4a")), atol=EPS32)


def test_clashing_names_and_missing_input(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "a.wav", tone(1.0, 22050), 22050)
    sf.write(src / "a.flac", tone(1.0, 22050), 22050)
    assert main(["specvqgan", "mels", str(src), str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "audiorep specvqgan mels:" in err and "a.wav" in err and "a.flac" in err
    missing = tmp_path / "nowhere"
    assert main(["specvqgan", "mels", str(missing), str(tmp_path / "out"), "-q"]) == 2
    assert str(missing) in capsys.readouterr().err


def test_group_without_subcommand_prints_help(capsys):
    assert main(["specvqgan"]) == 2
    assert "mels" in capsys.readouterr().err


def test_worker_processes_give_the_same_mels(corpus, tmp_path):
    a = extract_mels(corpus / "dog", tmp_path / "a", progress=False)
    b = extract_mels(corpus / "dog", tmp_path / "b", workers=1, progress=False)
    assert a.written == b.written == 2
    for name in ("short", "speech_short"):
        np.testing.assert_array_equal(
            np.load(out_file(tmp_path / "a", ".", name)),
            np.load(out_file(tmp_path / "b", ".", name)),
        )


def test_bad_options_are_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    base = ["specvqgan", "mels", str(tmp_path / "empty"), str(tmp_path / "out")]
    for flags, message in (
        (["--device", "gpu"], "unknown device 'gpu'"),
        (["--batch-size", "0"], "must be >= 1, got 0"),
    ):
        with pytest.raises(SystemExit) as exc:
            main([*base, *flags])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert main([*base, "-q"]) == 2
    assert "no input files found" in capsys.readouterr().err
    assert main([*base, "--workers", "-1"]) == 2
    assert "--workers must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
