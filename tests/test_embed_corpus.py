"""`audiorep embed` at corpus scale: inputs, streaming, packed batches, formats, resume, kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import audiorep
from audiorep.cli import main
from audiorep.extract.engine import embed_corpus
from audiorep.extract.inputs import InputItem, collect_inputs
from audiorep.extract.stream import ClipExamples
from audiorep.extract.writers import LOCK_FILE, OutputBusyError, claim_output_dir
from audiorep.frontends.vggish import Windowing, waveform_to_examples
from numerics import (
    CNN14_CONV_BLOCK6,
    CNN14_EMBEDDING,
    EPS32,
    VGGISH_EMBEDDING,
    assert_reordering_close,
)

SRC = Path(__file__).resolve().parents[1] / "src"


def _noise(rs, sr, seconds, channels=1):
    return (0.2 * rs.randn(int(sr * seconds), channels)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """8 clips at 16/22.05/44.1/48 kHz (one stereo), 0.5-3 s, in two folders."""
    root = tmp_path_factory.mktemp("corpus")
    rs = np.random.RandomState(11)
    rates = [16000, 22050, 44100, 48000]
    for i in range(8):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        sr = rates[i % 4]
        sf.write(
            sub / f"clip{i:02d}.wav", _noise(rs, sr, rs.uniform(0.5, 3), 2 if i == 3 else 1), sr
        )
    return root


@pytest.fixture(scope="module")
def bundle():
    return audiorep.load("vggish", weights="random", seed=1)


def _reference(bundle, path: Path) -> np.ndarray:
    wav, sr = audiorep.audio.load(path)
    return bundle.embed(wav, sr).numpy()


# ----------------------------------------------------------------------------- inputs


def test_inputs_from_folders_lists_and_csv(corpus, tmp_path):
    items = collect_inputs([corpus])
    assert [it.rel for it in items][:2] == ["a/clip01.wav", "a/clip03.wav"] and len(items) == 8
    (tmp_path / "list.txt").write_text(
        f"# a comment\n{corpus / 'a/clip01.wav'}\n\n{corpus / 'b/clip00.wav'}\n"
    )
    listed = collect_inputs([tmp_path / "list.txt"])
    assert [it.path for it in listed] == [corpus / "a/clip01.wav", corpus / "b/clip00.wav"]
    local = tmp_path / "data"
    local.mkdir()
    sf.write(local / "x.wav", np.zeros(16000, np.float32), 16000)
    (tmp_path / "set.csv").write_text("label,path\ndog,data/x.wav\n")
    assert collect_inputs([tmp_path / "set.csv"]) == [InputItem(local / "x.wav", "data/x.wav")]
    assert collect_inputs([corpus], extensions=["flac"]) == []
    with pytest.raises(FileNotFoundError, match="nope"):
        collect_inputs([tmp_path / "nope"])


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("sr,channels", [(44100, 2), (16000, 1), (48000, 1)])
def test_streamed_examples_equal_whole_file(tmp_path, sr, channels):
    rs = np.random.RandomState(sr)
    path = tmp_path / "long.wav"
    sf.write(path, _noise(rs, sr, 23.7, channels), sr, subtype="FLOAT")
    wav, _ = audiorep.audio.load(path)
    for windowing in (Windowing(), Windowing(hop_frames=25)):
        clip = ClipExamples(path, windowing, chunk_seconds=3.0)
        chunks = list(clip)
        assert len(chunks) > 3  # really chunked
        want = waveform_to_examples(wav, sr, windowing=windowing).float()
        # float64 log-mels that agree to ~1e-15, rounded to float32: at most one ulp apart.
        torch.testing.assert_close(torch.cat(chunks), want, rtol=EPS32, atol=1e-12)
        assert clip.num_examples == want.shape[0] and clip.duration == pytest.approx(23.7, 1e-4)


def test_short_clip_policy(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, 0.1 * np.ones(12000, np.float32), 16000)
    assert list(ClipExamples(path)) == []
    clip = ClipExamples(path, pad_short=True)
    (ex,) = list(clip)
    padded = np.zeros(15600)
    padded[:12000] = sf.read(path)[0]
    torch.testing.assert_close(ex, waveform_to_examples(padded, 16000).float())
    assert clip.padded and clip.num_examples == 1


# ----------------------------------------------------------------------------- engine


def test_packed_batches_and_workers_match_file_by_file(corpus, bundle):
    items = collect_inputs([corpus])
    got: dict[int, np.ndarray] = {}
    summary = embed_corpus(
        bundle,
        items,
        lambda r: got.__setitem__(r.index, r.embeddings),
        batch_size=5,
        workers=2,
        chunk_seconds=1.0,
        progress=False,
    )
    assert summary.written == 8 and not summary.failures
    for i, it in enumerate(items):
        # other batch composition: the model's sums may run in another order
        assert_reordering_close(got[i], _reference(bundle, it.path), VGGISH_EMBEDDING)
    assert summary.examples == sum(g.shape[0] for g in got.values())


def test_progress_moves_during_one_long_file(tmp_path, bundle, monkeypatch):
    """Issue 12 item 14: the bar advances by fractions of a file as its examples are embedded
    (it used to sit at 0/1 for a whole long file), and ends at exactly the file count."""
    import audiorep.extract.engine as engine

    shown: list[float] = []

    class RecordingBar:
        def __init__(self, total, **kwargs):
            self.n = 0.0

        def update(self, step):
            self.n += step
            shown.append(self.n)

        def set_postfix(self, **kwargs):
            pass

        def close(self):
            pass

    monkeypatch.setattr(engine, "tqdm", RecordingBar)
    rs = np.random.RandomState(5)
    sf.write(tmp_path / "long.wav", _noise(rs, 16000, 12.0), 16000)  # 12 examples
    sf.write(tmp_path / "short.wav", _noise(rs, 16000, 2.0), 16000)
    items = collect_inputs([tmp_path])
    summary = embed_corpus(bundle, items, lambda r: None, batch_size=2, chunk_seconds=2.0)
    assert summary.written == 2
    fractional = [n for n in shown if 0.0 < n < 1.0]
    assert len(fractional) >= 4, shown  # the long file moved the bar in steps
    assert all(b >= a for a, b in zip(shown, shown[1:]))  # never backwards
    assert shown[-1] == pytest.approx(2.0, abs=1e-9)


# ----------------------------------------------------------------------------- formats


def test_parquet_and_tfrecord_outputs(corpus, tmp_path):
    import pyarrow.parquet as pq

    from audiorep.data.example import parse_sequence_example
    from audiorep.data.tfrecord import read_tfrecord

    common = [str(corpus), "--weights", "random", "--seed", "1", "-q", "--shard-size", "4"]
    assert main(["embed", *common, "-o", str(tmp_path / "npz")]) == 0
    assert main(["embed", *common, "-o", str(tmp_path / "pq"), "--format", "parquet"]) == 0
    assert main(["embed", *common, "-o", str(tmp_path / "tf"), "--format", "tfrecord"]) == 0
    shards = sorted((tmp_path / "pq").glob("part-*.parquet"))
    assert [s.name for s in shards] == [f"part-{i:05d}.parquet" for i in range(2)]
    table = pq.read_table(shards)
    meta = json.loads(table.schema.metadata[b"audiorep.settings"])
    assert (
        meta["weights_sha256"]
        == audiorep.load("vggish", weights="random", seed=1).weights_fingerprint()
    )
    rows = table.to_pydict()
    records = [
        parse_sequence_example(r)
        for r in read_tfrecord(sorted((tmp_path / "tf").glob("part-*.tfrecord")))
    ]
    assert len(records) == 8
    for rec, it in zip(records, collect_inputs([corpus])):
        d = np.load(tmp_path / "npz" / Path(it.rel).with_suffix(".npz"))
        sel = [i for i, r in enumerate(rows["rel"]) if r == it.rel]
        assert [rows["example_index"][i] for i in sel] == list(range(len(d["embeddings"])))
        np.testing.assert_array_equal(
            np.array([rows["embedding"][i] for i in sel], np.float32).reshape(-1, 128),
            d["embeddings"],
        )
        np.testing.assert_allclose([rows["start"][i] for i in sel], d["timestamps"])
        assert rec.context["video_id"] == [str(Path(it.rel).with_suffix("")).encode()]
        assert rec.context["start_time_seconds"].tolist() == [0.0]
        frames = rec.feature_lists["audio_embedding"]
        q = np.array([np.frombuffer(f[0], np.uint8) for f in frames]).reshape(-1, 128)
        np.testing.assert_array_equal(q, d["quantized"])
        info = sf.info(it.path)
        assert rec.context["end_time_seconds"][0] == pytest.approx(info.frames / info.samplerate)


# ----------------------------------------------------------------------------- failures, resume


def test_bad_inputs_are_listed_and_the_run_continues(corpus, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.wav").write_bytes(b"")
    (bad / "garbage.flac").write_bytes(b"not audio at all")
    nan = np.zeros(20000, np.float32)
    nan[100] = np.nan
    sf.write(bad / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(bad / "ok.wav", np.random.RandomState(0).randn(20000).astype(np.float32) * 0.1, 16000)
    out = tmp_path / "out"
    assert main(["embed", str(bad), "-o", str(out), "--weights", "random", "-q"]) == 1
    failures = (out / "failures.tsv").read_text().splitlines()
    reasons = dict(line.split("\t") for line in failures)
    assert set(reasons) == {str(bad / n) for n in ("empty.wav", "garbage.flac", "nan.wav")}
    assert "0 bytes" in reasons[str(bad / "empty.wav")]
    assert "NaN" in reasons[str(bad / "nan.wav")]
    assert (out / "ok.npz").exists() and not (out / "nan.npz").exists()
    assert "FAILED" in capsys.readouterr().out


def test_resume_skips_finished_outputs(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["embed", str(corpus), "-o", str(out), "--weights", "random", "--seed", "1", "-q"]
    assert main(args) == 0
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.npz")}
    (out / "a/clip05.npz").unlink()
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "1 embedded of 8 (7 already done, skipped)" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in first.items() if p.name != "clip05.npz")
    # other settings (another seed = other weights) are not "finished"
    assert main([*args[:-3], "--seed", "2", "-q", "--resume"]) == 0
    assert "8 embedded of 8" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["npz", "parquet"])
def test_kill_minus_9_then_resume_equals_uninterrupted(corpus, tmp_path, fmt):
    """SIGKILL a real run mid-way; --resume must produce exactly the uninterrupted outputs."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    base = [
        str(corpus),
        "--weights",
        "random",
        "--seed",
        "1",
        "-q",
        "--format",
        fmt,
        "--shard-size",
        "2",
        "--batch-size",
        "2",
    ]
    assert main(["embed", *base, "-o", str(clean)]) == 0
    env = dict(os.environ, PYTHONPATH=str(SRC))
    code = "import sys; from audiorep.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "embed", *base, "-o", str(killed)], env=env
    )
    pattern = "*.npz" if fmt == "npz" else "part-*.parquet"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(killed.rglob(pattern))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(killed.rglob(pattern)))
    assert 2 <= done_before < len(list(clean.rglob(pattern))), "kill did not land mid-run"
    assert main(["embed", *base, "-o", str(killed), "--resume"]) == 0
    clean_files = sorted(p.relative_to(clean) for p in clean.rglob("*") if p.is_file())
    killed_files = sorted(p.relative_to(killed) for p in killed.rglob("*") if p.is_file())
    assert killed_files == clean_files  # no temp files left behind
    assert Path(LOCK_FILE) in clean_files  # the (released) lock of each run
    for rel in (f for f in clean_files if f.name != LOCK_FILE):
        if rel.name.endswith(".settings.json"):  # a shard's settings: the same bytes
            assert (clean / rel).read_bytes() == (killed / rel).read_bytes()
        elif fmt == "npz":
            a, b = np.load(clean / rel), np.load(killed / rel)
            assert a.files == b.files
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k])
        else:
            import pyarrow.parquet as pq

            assert pq.read_table(clean / rel).equals(pq.read_table(killed / rel))


def test_embed_other_backbones_one_row_per_clip_or_window(corpus, tmp_path):
    """--model cnn14: one 2048-d embedding per clip, spanning the clip."""
    import pyarrow.parquet as pq

    files = [str(p) for p in sorted(corpus.rglob("*.wav"))[:3]]
    out = tmp_path / "cnn14"
    args = ["embed", *files, "-o", str(out), "--model", "cnn14", "--weights", "random", "-q"]
    assert main([*args, "--format", "parquet"]) == 0
    rows = pq.read_table(sorted(out.glob("*.parquet"))).to_pydict()
    assert len(rows["embedding"]) == 3 and len(rows["embedding"][0]) == 2048
    b = audiorep.load("cnn14", weights="random")
    wav, sr = audiorep.audio.load(files[0])
    assert_reordering_close(rows["embedding"][0], b.embed(wav, sr)[0].numpy(), CNN14_EMBEDDING)
    assert rows["start"][0] == 0.0 and rows["end"][0] == pytest.approx(wav.shape[-1] / sr)
    with pytest.raises(ValueError, match="VGGish only"):
        audiorep.load("cnn14", weights="random", pca="x.npz")
    # --fusion with cnn14: the clip-level CNN14-Fusion#3#6 feature per file
    out2 = tmp_path / "cnn14_fusion"
    assert main(["embed", files[0], "-o", str(out2), "--model", "cnn14", "--weights", "random",
                 "-q", "--fusion", "3,6"]) == 0  # fmt: skip
    d = np.load(out2 / Path(files[0]).with_suffix(".npz").name)
    assert_reordering_close(d["fusion_clip"], b.fusion(wav, sr, [3, 6]).numpy(), CNN14_CONV_BLOCK6)
    assert d["fusion_clip"].shape == (6144,)


def test_output_folder_lock_refuses_a_second_run_and_clears_stale_temps(corpus, tmp_path):
    """Two runs into one folder: the second is refused; a killed run's temp files are removed."""
    out = tmp_path / "out"
    stale = out / "a" / ".clip01.npz.k3j2h1g0.tmp"  # as write_bytes_atomic names them
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")
    keep = out / "a" / ".notes.txt"  # not one of ours
    keep.write_text("x")
    with claim_output_dir(out):
        assert not stale.exists() and keep.exists()
        with pytest.raises(OutputBusyError, match="another audiorep run is writing"):
            with claim_output_dir(out):
                pass
        code = main(["embed", str(corpus), "-o", str(out), "--weights", "random", "-q"])
        assert code == 2 and not list(out.rglob("clip*.npz"))  # refused before any work
    # released: the next run goes ahead
    assert main(["embed", str(corpus), "-o", str(out), "--weights", "random", "-q"]) == 0
    assert len(list(out.rglob("clip*.npz"))) == 8


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_follow_the_users_umask(corpus, tmp_path, umask):
    """Issue 12 item 10: every output was created 0600 (mkstemp) whatever the umask."""
    (tmp_path / "in").mkdir()
    for p in sorted(corpus.rglob("*.wav"))[:2]:
        (tmp_path / "in" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF....WAVEfmt ")  # -> failures.tsv
    old = os.umask(umask)
    try:
        for fmt in ("npz", "parquet", "tfrecord"):
            out = tmp_path / fmt
            args = ["embed", str(tmp_path / "in"), "-o", str(out), "--format", fmt]
            assert main([*args, "--weights", "random", "-q"]) == 1  # one failure
            files = [p for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE]
            assert len(files) >= 2 and any(p.name == "failures.tsv" for p in files)
            for p in files:
                assert p.stat().st_mode & 0o777 == 0o666 & ~umask, (p, oct(p.stat().st_mode))
    finally:
        os.umask(old)


@pytest.mark.skipif(sys.platform != "linux", reason="byte file names, FIFOs and symlinks: Linux")
def test_hostile_names_and_non_regular_files_never_end_a_run(corpus, tmp_path, capsys):
    """Issue 12 items 1, 2, 5: a non-UTF-8 name crashed the failures report (exit 2, report
    lost); a FIFO hung the run forever; symlink loops aborted list files and were skipped
    silently in folders; tabs/newlines in names broke failures.tsv's columns."""
    good = next(corpus.rglob("*.wav")).read_bytes()
    src = tmp_path / "in"
    src.mkdir()
    raw = os.fsencode(src)
    for name in (b"good.wav", b"good_\xff\xfe.wav"):
        with open(raw + b"/" + name, "wb") as f:
            f.write(good)
    for name in (b"bad_\xff.wav", b"tab\tand\nnewline.wav"):  # undecodable content
        with open(raw + b"/" + name, "wb") as f:
            f.write(b"RIFF\x00\x00\x00\x00WAVEjunk")
    os.mkfifo(src / "pipe.wav")
    os.symlink("loop.wav", src / "loop.wav")
    os.symlink("missing.wav", src / "dangling.wav")
    (tmp_path / "list.txt").write_text("in/good.wav\nin/loop.wav\n")
    out = tmp_path / "out"
    args = [str(src), str(tmp_path / "list.txt"), str(src / "pipe.wav"), "-o", str(out)]
    code = main(["embed", *args, "--weights", "random", "-q"])  # must not hang
    assert code == 1
    printed = capsys.readouterr().out
    assert "failures:   7" in printed  # 2 undecodable + FIFO x2 + loop x2 + dangling
    written = sorted(p.name for p in out.rglob("*.npz"))
    assert len(written) == 3  # good.wav, good_\xff\xfe.wav, and the listed good.wav
    lines = (out / "failures.tsv").read_bytes().split(b"\n")[:-1]
    assert len(lines) == 7 and all(line.count(b"\t") == 1 for line in lines)
    text = b"\n".join(lines)
    assert b"bad_\xff.wav" in text  # the original bytes, not mangled
    assert b"tab\\tand\\nnewline.wav" in text  # escaped: the columns hold
    assert b"is a FIFO (named pipe)" in text and b"Too many levels of symbolic links" in text
    assert b"dangling symbolic link" in text


def test_resume_redoes_outputs_whose_pca_or_fusion_changed(corpus, tmp_path, capsys):
    """Issue 12 item 7: --resume kept stale quantized bytes after --no-pca / another PCA and
    never wrote fusion arrays, because the saved settings recorded neither."""
    files = [str(p) for p in sorted(corpus.rglob("*.wav"))[:3]]
    base = ["embed", *files, "--weights", "random", "-q"]

    def run(out, *extra):
        capsys.readouterr()
        assert main([*base, "-o", str(out), "--resume", *extra]) == 0
        return capsys.readouterr().out

    out = tmp_path / "npz"
    assert "3 embedded of 3" in run(out)
    first = sorted(out.glob("*.npz"))
    assert all("quantized" in np.load(p).files for p in first)
    assert "0 embedded of 3" in run(out)  # same settings: nothing to do
    assert "3 embedded of 3" in run(out, "--no-pca")  # PCA changed: redone
    assert all("quantized" not in np.load(p).files for p in first)
    assert "0 embedded of 3" in run(out, "--no-pca")
    assert "3 embedded of 3" in run(out, "--no-pca", "--fusion", "9,14")  # fusion changed
    for p in first:
        d = np.load(p)
        assert d["fusion"].shape[1] == 8192
        assert json.loads(str(d["settings"]))["fusion"] == ["9", "14"]
    # sharded outputs: each shard's settings sit beside it
    pq_out = tmp_path / "pq"
    assert "3 embedded of 3" in run(pq_out, "--format", "parquet")
    assert "0 embedded of 3" in run(pq_out, "--format", "parquet")
    assert "3 embedded of 3" in run(pq_out, "--format", "parquet", "--no-pca")
    import pyarrow.parquet as pq

    table = pq.read_table(sorted(pq_out.glob("part-*.parquet")))
    assert "quantized" not in table.column_names
    sidecar = json.loads((pq_out / "part-00000.parquet.settings.json").read_text())
    assert sidecar["pca_sha256"] is None


def test_implausible_rates_and_overlong_files_are_refused_fast(tmp_path, monkeypatch, capsys):
    """Issue 12 item 3: a 20 KB WAV at 1 Hz (10,000 s of "audio") allocated 3.2 GB; one at
    7 Hz took 142 s. Now both are refused from the header, and a per-file ceiling applies."""
    src = tmp_path / "in"
    src.mkdir()
    rs = np.random.RandomState(0)
    sf.write(src / "one_hz.wav", rs.randn(10_000).astype(np.float32) * 0.1, 1)
    sf.write(src / "seven_hz.wav", rs.randn(17_500).astype(np.float32) * 0.1, 7)
    sf.write(src / "three_s.wav", rs.randn(48_000).astype(np.float32) * 0.1, 16000)
    sf.write(src / "one_s.wav", rs.randn(16_000).astype(np.float32) * 0.1, 16000)
    with pytest.raises(audiorep.audio.AudioLoadError, match="1 Hz is implausible"):
        audiorep.audio.load(src / "one_hz.wav")
    monkeypatch.setenv("AUDIOREP_MAX_SECONDS", "14400")  # restored after the test
    out = tmp_path / "out"
    args = ["embed", str(src), "-o", str(out), "--weights", "random", "-q", "--max-seconds", "2"]
    assert main(args) == 1
    report = (out / "failures.tsv").read_text()
    assert "sample rate 1 Hz is implausible" in report and "7 Hz is implausible" in report
    assert "3 s of audio exceeds the per-file limit of 2 s" in report
    assert sorted(p.name for p in out.glob("*.npz")) == ["one_s.npz"]
    assert main(["embed", str(src), "-o", str(tmp_path / "o2"), "--max-seconds", "0", "-q"]) == 2
    assert "--max-seconds must be > 0" in capsys.readouterr().err
