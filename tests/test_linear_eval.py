"""EVAR-style linear evaluation: datasets, splits, training loop, caching, CLI."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.cli.linear_eval import format_table
from audiorep.cli.linear_eval import register as add_command
from audiorep.evaluation.features import (
    ClipFeatureExtractor,
    FeatureCache,
    cache_key,
    make_extractor,
)
from audiorep.evaluation.linear import (
    Clip,
    LinearConfig,
    assign_splits,
    evaluate_features,
    read_dataset,
    run_linear_eval,
    standardize,
    stratified_split,
    train_linear,
)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOREP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    monkeypatch.setenv("AUDIOREP_EAGER", "1")  # VGGish: skip the TorchScript build (seconds)


def write_wav(path: Path, seconds: float = 0.1, freq: float = 440.0, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * freq * t), sr, "PCM_16")
    return path


def make_folder_set(root: Path, per_class: int = 6, seconds: float = 0.1) -> Path:
    """Two classes of tones that differ in frequency (every file distinct)."""
    for label, base in (("high", 2000.0), ("low", 200.0)):
        for k in range(per_class):
            write_wav(root / label / f"{label}{k}.wav", seconds, base + 17 * k)
    return root


def blobs(n_per_class: int, classes: int, dim: int, sep: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)) * sep
    y = np.repeat(np.arange(classes), n_per_class)
    x = centres[y] + rng.standard_normal((len(y), dim))
    return x.astype(np.float32), y


# ----------------------------------------------------------------------------- datasets


def test_folder_layouts(tmp_path):
    root = make_folder_set(tmp_path / "flat", per_class=3)
    (root / "low" / "notes.txt").write_text("not audio")
    clips = read_dataset(root)
    assert len(clips) == 6 and {c.label for c in clips} == {"high", "low"}
    assert all(c.split is None for c in clips)
    assert [c.path.name for c in clips[:3]] == ["high0.wav", "high1.wav", "high2.wav"]

    split_root = tmp_path / "split"
    for split in ("train", "val", "test"):
        write_wav(split_root / split / "a" / "x.wav")
        write_wav(split_root / split / "b" / "y.wav")
    clips = read_dataset(split_root)
    assert Counter(c.split for c in clips) == {"train": 2, "valid": 2, "test": 2}

    write_wav(split_root / "c" / "z.wav")  # a class folder beside split folders
    with pytest.raises(ValueError, match="split folders"):
        read_dataset(split_root)
    with pytest.raises(FileNotFoundError):
        read_dataset(tmp_path / "nowhere")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="no audio"):
        read_dataset(tmp_path / "empty")


def test_csv_layouts(tmp_path):
    a = write_wav(tmp_path / "audio" / "a.wav")
    b = write_wav(tmp_path / "audio" / "b.wav")
    (tmp_path / "with_header.csv").write_text(
        f"label,path,split\ndog,audio/a.wav,train\ncat,{b},Test\n"
    )
    clips = read_dataset(tmp_path / "with_header.csv")
    assert clips == [Clip(a, "dog", "train"), Clip(b, "cat", "test")]
    (tmp_path / "plain.csv").write_text("audio/a.wav,dog\naudio/b.wav,cat\n")
    clips = read_dataset(tmp_path / "plain.csv")
    assert [(c.label, c.split) for c in clips] == [("dog", None), ("cat", None)]
    (tmp_path / "bad_split.csv").write_text("audio/a.wav,dog,holdout\n")
    with pytest.raises(ValueError, match="unknown split"):
        read_dataset(tmp_path / "bad_split.csv")
    (tmp_path / "missing.csv").write_text("audio/zzz.wav,dog\n")
    with pytest.raises(FileNotFoundError, match="zzz.wav"):
        read_dataset(tmp_path / "missing.csv")


def test_stratified_split_proportions_and_determinism():
    labels = ["a"] * 30 + ["b"] * 20 + ["c"] * 3
    s1 = stratified_split(labels, seed=7)
    assert s1 == stratified_split(labels, seed=7)
    assert s1 != stratified_split(labels, seed=8)
    per = Counter(zip(labels, s1))
    # 15 % valid / 15 % test per class, rounding half up, at least one each
    assert (per["a", "train"], per["a", "valid"], per["a", "test"]) == (20, 5, 5)
    assert (per["b", "train"], per["b", "valid"], per["b", "test"]) == (14, 3, 3)
    assert (per["c", "train"], per["c", "valid"], per["c", "test"]) == (1, 1, 1)
    # a class's split does not depend on the order of the other classes' items
    shuffled = labels[30:] + labels[:30]
    s2 = stratified_split(shuffled, seed=7)
    assert Counter(zip(shuffled, s2)) == per
    with pytest.raises(ValueError, match="fractions"):
        stratified_split(labels, (0.5, 0.2, 0.2))


def test_assign_splits_rules():
    p = Path("x.wav")
    none = [Clip(p, "a")] * 10 + [Clip(p, "b")] * 10
    out = assign_splits(none, seed=1)
    assert Counter(c.split for c in out) == {"train": 12, "valid": 4, "test": 4}
    # train + test given: 10 % of each class's training clips become valid, test untouched
    given = [Clip(p, lab, "train") for lab in "ab" for _ in range(20)]
    given += [Clip(p, lab, "test") for lab in "ab" for _ in range(3)]
    out = assign_splits(given, seed=0)
    per = Counter((c.label, c.split) for c in out)
    assert per["a", "valid"] == per["b", "valid"] == 2 and per["a", "test"] == 3
    with pytest.raises(ValueError, match="some clips"):
        assign_splits([Clip(p, "a", "train"), Clip(p, "a")])
    with pytest.raises(ValueError, match="no test"):
        assign_splits([Clip(p, "a", "train"), Clip(p, "a", "valid")])
    with pytest.raises(ValueError, match="without training"):
        assign_splits([Clip(p, "a", "train"), Clip(p, "b", "test"), Clip(p, "a", "valid")])


# ----------------------------------------------------------------------------- protocol


def test_standardize_uses_train_statistics():
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 3.0, (50, 4))
    train[:, 3] = 2.0  # constant feature: centred, not scaled
    test = rng.normal(5.0, 3.0, (10, 4))
    st, ss = standardize(train, test)
    np.testing.assert_allclose(st[:, :3].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(st[:, :3].std(0), 1, atol=1e-5)
    assert np.all(st[:, 3] == 0) and st.dtype == np.float32
    np.testing.assert_allclose(ss, (test - train.mean(0)) / np.where(
        train.std(0) == 0, 1, train.std(0)), rtol=1e-5)  # fmt: skip


def test_training_separable_reaches_full_accuracy_and_is_deterministic():
    x, y = blobs(40, 4, 16, sep=4.0, seed=0)
    xv, yv = blobs(10, 4, 16, sep=4.0, seed=0)  # same centres (same seed), new noise below
    xv = xv + np.random.default_rng(1).standard_normal(xv.shape).astype(np.float32) * 0.1
    x, xv = standardize(x, xv)
    cfg = LinearConfig(batch_size=16, max_epochs=60)  # EVAR lr 3e-4; 10 steps per epoch
    r1 = train_linear(x, y, xv, yv, 4, seed=42, config=cfg)
    assert r1.best_valid_accuracy == 1.0 and (r1.predict(x) == y).mean() == 1.0
    r2 = train_linear(x, y, xv, yv, 4, seed=42, config=cfg)
    np.testing.assert_array_equal(r1.weight, r2.weight)
    assert r1.valid_history == r2.valid_history
    r3 = train_linear(x, y, xv, yv, 4, seed=43, config=cfg)
    assert not np.array_equal(r1.weight, r3.weight)


def test_early_stopping_keeps_best_and_stops_after_patience():
    x, y = blobs(30, 2, 8, sep=3.0, seed=0)
    (x,) = standardize(x)
    # Validation labels are the training rule inverted: accuracy falls as training proceeds.
    cfg = LinearConfig(lr=1e-3, patience=5, max_epochs=200)
    r = train_linear(x, y, x, 1 - y, 2, seed=1, config=cfg)
    assert r.stopped_early and r.epochs == r.best_epoch + 1 + cfg.patience
    assert len(r.valid_history) == r.epochs and r.best_valid_accuracy == max(r.valid_history)
    last_max = max(i for i, a in enumerate(r.valid_history) if a == r.best_valid_accuracy)
    assert r.best_epoch == last_max > 0  # ties go to the later epoch
    assert all(a < r.best_valid_accuracy for a in r.valid_history[r.best_epoch + 1 :])
    assert (r.predict(x) == 1 - y).mean() == r.best_valid_accuracy  # the best epoch's weights
    # Ties go to the later epoch and reset the patience: constant accuracy never stops.
    # (identical validation inputs with labels 0 and 1: accuracy 0.5 whatever the weights)
    flat = train_linear(x, y, np.zeros_like(x[:2]), np.array([0, 1]), 2, 0, LinearConfig(
        max_epochs=30, patience=3))  # fmt: skip
    assert not flat.stopped_early and flat.epochs == 30 and flat.best_epoch == 29


def test_evaluate_features_seeds_mean_std():
    x, y = blobs(20, 3, 8, sep=1.0, seed=3)
    splits = stratified_split([str(v) for v in y], seed=0)
    res = evaluate_features(x, y, splits, 3, seeds=(1, 2, 3), config=LinearConfig(max_epochs=40))
    accs = np.array([r.test_accuracy for r in res.runs])
    assert [r.seed for r in res.runs] == [1, 2, 3]
    assert res.mean == pytest.approx(accs.mean()) and res.std == pytest.approx(accs.std())
    again = evaluate_features(x, y, splits, 3, seeds=(1, 2, 3), config=LinearConfig(max_epochs=40))
    assert again.as_dict() == res.as_dict()
    with pytest.raises(ValueError, match="no valid"):
        evaluate_features(x, y, ["train"] * len(y), 3)


# ----------------------------------------------------------------------------- features, cache


class FakeExtractor:
    """Cheap stand-in: log-spectrum band energies; counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def settings(self) -> dict:
        return {"model": "fake", "weights": "none", "weights_sha256": "0" * 64, "bands": 8}

    def __call__(self, waveform: torch.Tensor, sr: int) -> np.ndarray:
        self.calls += 1
        spec = np.abs(np.fft.rfft(waveform.numpy().mean(0), 512))
        return np.log(np.array([b.sum() for b in np.array_split(spec, 8)]) + 1e-6)


def test_run_with_cache_hits_second_time(tmp_path):
    root = make_folder_set(tmp_path / "set", per_class=8)
    fake = FakeExtractor()
    # batch 4: 3 steps per epoch (EVAR's min(200, n) would give one step per epoch, too
    # few for 12 clips at lr 3e-4; see docs/linear_eval.md)
    cfg = LinearConfig(batch_size=4)
    kw = {"cache_dir": tmp_path / "cache", "extractor": fake, "seeds": (42, 43), "config": cfg}
    first = run_linear_eval("fake", root, **kw)
    assert fake.calls == 16 and first["cache"]["misses"] == 16 and first["cache"]["hits"] == 0
    assert first["counts"] == {"train": 12, "valid": 2, "test": 2} and first["feature_dim"] == 8
    assert first["result"]["mean"] == 1.0  # tones 200 Hz vs 2 kHz: trivially separable
    second = run_linear_eval("fake", root, **kw)
    assert fake.calls == 16 and second["cache"]["hits"] == 16
    assert second["result"] == first["result"]
    entries = list(Path(first["cache"]["dir"]).rglob("*.npy"))
    assert len(entries) == 16 and all(np.load(e).dtype == np.float32 for e in entries)
    assert json.loads((Path(first["cache"]["dir"]) / "settings.json").read_text())["bands"] == 8
    # a renamed copy of a file hits, other settings miss
    cache = FeatureCache(tmp_path / "cache", fake.settings())
    other = FeatureCache(tmp_path / "cache", {**fake.settings(), "bands": 9})
    assert other.dir != cache.dir
    assert cache_key({**fake.settings(), "weights": "elsewhere"}) == cache_key(fake.settings())


def test_vggish_extractors_random_weights():
    ext = make_extractor("vggish", weights="random", seed=0)
    x = torch.from_numpy(0.1 * np.random.default_rng(0).standard_normal(2 * 16000)).float()
    f = ext(x, 16000)
    assert f.shape == (128,) and f.dtype == np.float32
    # max + mean over the two examples of the bundle's embeddings
    emb = ext.bundle.embed(x, 16000).numpy()
    np.testing.assert_allclose(f, emb.max(0) + emb.mean(0), rtol=1e-5, atol=1e-6)
    assert ext(x[:8000], 16000).shape == (128,)  # shorter than one example: zero-padded
    fus = ClipFeatureExtractor("vggish-fusion", ext.bundle)
    assert fus(x, 16000).shape == (8192,) and fus.layers == (9, 14)
    s = fus.settings()
    assert s["feature"] == "vggish-fusion" and s["layers"] == [9, 14] and s["model"] == "vggish"
    unit = ClipFeatureExtractor("vggish", ext.bundle, unit_seconds=1.0)
    assert unit.waveform_16k(x, 16000).shape == (16000,)
    with pytest.raises(ValueError, match="unknown model"):
        make_extractor("vggish-3000")
    with pytest.raises(ValueError, match="only apply"):
        ClipFeatureExtractor("vggish", ext.bundle, layers=[9])


# ----------------------------------------------------------------------------- CLI


def test_cli_end_to_end(tmp_path, capsys):
    root = make_folder_set(tmp_path / "set", per_class=6, seconds=1.0)
    parser = argparse.ArgumentParser(prog="audiorep")
    add_command(parser.add_subparsers())
    argv = ["linear-eval", "--model", "vggish", "--dataset", str(root), "--weights", "random",
            "--cache-dir", str(tmp_path / "cache"), "--seeds", "2", "--epochs", "30",
            "--json", str(tmp_path / "out.json"), "-q"]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "| vggish | 128 | 8/2/2 |" in out and "seed 42" in out and "seed 43" in out
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["settings"]["pretrained"] is False and len(data["result"]["runs"]) == 2
    assert data["cache"]["misses"] == 12
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert "12 hits, 0 misses" in capsys.readouterr().out
    assert format_table([data]).count("\n") == 2

    args = parser.parse_args(["linear-eval", "--model", "cnn14", "--dataset", str(root)])
    assert args.func(args) == 2  # no cached CNN14 weights: a clear error, exit status 2
    assert "audiorep weights download cnn14-16k" in capsys.readouterr().err
