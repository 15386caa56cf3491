"""GaussianStats: streaming and merged statistics equal one-shot ones; file formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiorep.metrics import (
    GaussianStats,
    frechet_distance,
    load_fadtk_stats,
    load_google_stats,
    load_stats,
    save_fadtk_stats,
)
from test_metrics_recipes import fad_set


def one_shot(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-pass float64 reference: mean, then centred products."""
    x = x.astype(np.float64)
    mu = x.mean(axis=0)
    xc = x - mu
    return mu, xc.T @ xc / (len(x) - 1)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", ["d128_bg5000", "d128_ev500_nearsing", "d2048_bg50"])
def test_streaming_and_merging_equal_one_shot(name: str) -> None:
    x = fad_set(name)
    mu, cov = one_shot(x)
    rng = np.random.default_rng(0)
    # many uneven batches into one object
    cuts = np.sort(rng.choice(np.arange(1, len(x)), size=min(40, len(x) // 5), replace=False))
    streamed = GaussianStats()
    for part in np.split(x, cuts):
        streamed.update(part)
    # "workers": each takes a strided share, merged in a scrambled order, pairwise tree
    workers = [GaussianStats().update(x[w::7]) for w in range(7)]
    order = rng.permutation(7)
    tree = [workers[i] for i in order]
    while len(tree) > 1:
        tree = [tree[i].merged(tree[i + 1]) if i + 1 < len(tree) else tree[i]
                for i in range(0, len(tree), 2)]  # fmt: skip
    for stats in (streamed, tree[0], GaussianStats.from_embeddings(x)):
        assert stats.n == len(x)
        assert rel_err(stats.mean, mu) <= 1e-12
        assert rel_err(stats.cov, cov) <= 1e-12
        np.testing.assert_array_equal(stats.cov, stats.cov.T)


def test_large_offset_is_stable() -> None:
    """|mu| >> spread: centred scatter keeps full accuracy, the raw-moment form does not."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20000, 8)) * 1e-3 + 1e4
    mu, cov = one_shot(x)
    stats = GaussianStats()
    for part in np.array_split(x, 13):
        stats.update(part)
    # |mu| / sigma = 1e7: both the reference and the batch means carry ~eps * |mu| of error
    assert rel_err(stats.cov, cov) <= 1e-8
    raw = (x.T @ x - len(x) * np.outer(x.mean(0), x.mean(0))) / (len(x) - 1)
    assert rel_err(raw, cov) > 1e-3  # why the raw form is not used


def test_inputs_single_vectors_and_tensors() -> None:
    x = fad_set("d128_bg50")
    a = GaussianStats()
    for row in x:
        a.update(row)  # (d,) vectors
    b = GaussianStats(128).update(torch.from_numpy(x.copy()))
    b.update(np.zeros((0, 128)))  # empty batch: no-op
    assert a.n == b.n == 50
    assert rel_err(a.cov, b.cov) <= 1e-12
    with pytest.raises(ValueError, match="dimension"):
        b.update(np.zeros((3, 64)))
    with pytest.raises(ValueError, match="at least 2"):
        _ = GaussianStats().update(x[0]).cov
    assert GaussianStats(4).max_rank == 0 and a.max_rank == 49
    bad = x.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GaussianStats().update(bad)
    ints = GaussianStats().update(np.arange(12).reshape(4, 3))  # integer input is upcast
    np.testing.assert_allclose(ints.cov, np.cov(np.arange(12).reshape(4, 3), rowvar=False))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_accelerator_tensors_are_reduced_on_device() -> None:
    x = fad_set("d128_bg500")
    a = GaussianStats().update(torch.from_numpy(x.copy()).cuda())
    mu, cov = one_shot(x)
    assert rel_err(a.cov, cov) <= 1e-12 and rel_err(a.mean, mu) <= 1e-12


def test_save_load_roundtrip(tmp_path) -> None:
    x = fad_set("d128_ev500_othercov")
    stats = GaussianStats.from_embeddings(x, meta={"model": "vggish", "hop_s": 0.96})
    path = stats.save(tmp_path / "s.npz")
    with np.load(path) as data:
        assert set(data.files) >= {"mu", "sigma", "n", "meta"}
        assert json.loads(str(data["meta"])) == {"hop_s": 0.96, "model": "vggish"}
    back = GaussianStats.load(path)
    assert back.n == 500 and back.meta == stats.meta
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_allclose(back.cov, stats.cov, rtol=1e-15)
    assert load_stats(path).n == 500
    # merging a loaded object keeps working (scatter restored from sigma and n)
    both = back.merged(stats)
    mu, cov = one_shot(np.concatenate([x, x]))
    assert rel_err(both.cov, cov) <= 1e-12


def test_state_dict_roundtrip() -> None:
    stats = GaussianStats.from_embeddings(fad_set("d128_bg50"), meta={"a": 1})
    again = GaussianStats.from_state_dict(stats.state_dict())
    np.testing.assert_array_equal(again.scatter, stats.scatter)
    assert again.n == stats.n and again.meta == {"a": 1}


def test_fadtk_formats(tmp_path) -> None:
    stats = GaussianStats.from_embeddings(fad_set("d128_bg500"))
    pack = save_fadtk_stats(stats, tmp_path / "pack.npz", "vggish")
    save_fadtk_stats(stats, pack, "clap")  # adds a second model to the same pack
    with np.load(pack) as data:
        assert set(data.files) == {"vggish.mu", "vggish.cov", "clap.mu", "clap.cov"}
    loaded = load_fadtk_stats(pack, "vggish")
    assert loaded.n is None and loaded.max_rank is None
    np.testing.assert_array_equal(loaded.cov, stats.cov)
    with pytest.raises(ValueError, match="model"):
        load_fadtk_stats(pack)
    with pytest.raises(ValueError, match="unknown sample count"):
        loaded.merge(stats)
    # fadtk's cache folder <dir>/stats/<model>/{mu,cov}.npy
    folder = tmp_path / "eval" / "stats" / "vggish"
    folder.mkdir(parents=True)
    np.save(folder / "mu.npy", stats.mean)
    np.save(folder / "cov.npy", stats.cov)
    from_dir = load_stats(tmp_path / "eval", model="vggish")
    assert frechet_distance(from_dir.mean, from_dir.cov, stats.mean, stats.cov) == 0.0
    assert load_stats(pack, model="clap").n is None


# ------------------------------------------------------------ google-research TFRecord


def write_google_stats(path, mu: np.ndarray, sigma: np.ndarray, n: int) -> None:
    """A stats TFRecord as google-research writes it: one Example, float32 lists, real CRCs."""
    from audiorep.data.example import serialize_example
    from audiorep.data.tfrecord import write_tfrecord

    feats = {
        "embedding_count": np.array([n], np.int64),
        "embedding_length": np.array([len(mu)], np.int64),
        "mu": np.asarray(mu, np.float32),
        "sigma": np.asarray(sigma, np.float32).reshape(-1),
    }
    write_tfrecord(path, [serialize_example(feats)])


def test_google_tfrecord_stats(tmp_path) -> None:
    stats = GaussianStats.from_embeddings(fad_set("d128_bg500"))
    path = tmp_path / "bg_stats"
    write_google_stats(path, stats.mean, stats.cov, stats.n)
    loaded = load_google_stats(path)
    assert loaded.n == 500 and loaded.meta["storage_dtype"] == "float32"
    np.testing.assert_array_equal(loaded.mean, stats.mean.astype(np.float32))
    np.testing.assert_array_equal(loaded.cov, stats.cov.astype(np.float32).astype(np.float64))
    again = load_stats(path)
    np.testing.assert_array_equal(again.cov, loaded.cov)
    # float32 storage costs accuracy (fixtures: ~1e-8 relative for full-rank sets)
    ev = GaussianStats.from_embeddings(fad_set("d128_ev500_othercov"))
    exact = frechet_distance(stats.mean, stats.cov, ev.mean, ev.cov)
    f32 = frechet_distance(loaded.mean, loaded.cov, ev.mean, ev.cov)
    assert abs(f32 - exact) <= 1e-6 * exact
