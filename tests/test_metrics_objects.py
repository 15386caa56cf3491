"""Metric objects: update / compute / reset / merge, and sync over torch.distributed (gloo)."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from audiorep.metrics import (
    FrechetDistance,
    GaussianStats,
    InceptionScore,
    KernelInceptionDistance,
    MeanKLDivergence,
    frechet_terms_from_embeddings,
    inception_score,
    kernel_inception_distance,
    mean_kl_divergence,
    specvqgan_shared_key,
)
from test_metrics_recipes import fad_set, specvqgan_inputs

KID_SMALL = dict(subsets=5, subset_size=200)


def _batches(x: np.ndarray, k: int) -> list[np.ndarray]:
    return np.array_split(x, k)


def test_frechet_distance_object_streams_and_merges() -> None:
    real, fake = fad_set("d128_bg500"), fad_set("d128_ev500_othercov")
    exact = frechet_terms_from_embeddings(real, fake).value
    whole = FrechetDistance()
    for r in _batches(real, 7):
        whole.update(r, real=True)
    for f in _batches(fake, 5):
        whole.update(torch.from_numpy(f.copy()))
    assert whole.compute().value == pytest.approx(exact, rel=1e-12)
    parts = [FrechetDistance() for _ in range(3)]
    for i, (r, f) in enumerate(zip(_batches(real, 9), _batches(fake, 9))):
        parts[i % 3].update(r, real=True)
        parts[i % 3].update(f)
    merged = parts[2].merge(parts[0]).merge(parts[1])
    assert float(merged.compute()) == pytest.approx(exact, rel=1e-12)
    merged.reset()
    assert merged.real.n == 0 and merged.fake.n == 0


def test_frechet_distance_with_fixed_reference() -> None:
    bg = GaussianStats.from_embeddings(fad_set("d128_bg5000"))
    metric = FrechetDistance(reference=bg)
    with pytest.raises(ValueError, match="fixed reference"):
        metric.update(fad_set("d128_bg500"), real=True)
    ev = fad_set("d128_ev50_small")
    metric.update(ev)
    exact = frechet_terms_from_embeddings(fad_set("d128_bg5000"), ev).value
    assert metric.compute().value == pytest.approx(exact, rel=1e-9)


def test_kid_is_mkl_objects_equal_functions() -> None:
    real, fake = fad_set("d128_bg500"), fad_set("d128_ev500_nearsing")
    kid = KernelInceptionDistance(**KID_SMALL)
    other = KernelInceptionDistance(**KID_SMALL)
    kid.update(real[:300], real=True)
    kid.update(fake[:100])
    other.update(real[300:], real=True)
    other.update(fake[100:])
    res = kid.merge(other).compute()
    ref = kernel_inception_distance(fake, real, **KID_SMALL)
    np.testing.assert_allclose(res.values, ref.values, rtol=1e-12)

    logits = specvqgan_inputs("isc_small")["logits"]
    isc = InceptionScore()
    for part in _batches(logits, 4):
        isc.update(part)
    assert isc.compute().mean == pytest.approx(inception_score(logits).mean, rel=1e-14)

    x = specvqgan_inputs("kl_vas_3spv")
    classes = ["baby", "cough", "dog", "drum", "fireworks", "gun", "hammer", "sneeze"]
    mkl = MeanKLDivergence(dataset="vas", classes=classes)
    for logit, paths in zip(_batches(x["fake_logits"], 3), np.array_split(x["fake_paths"], 3)):
        mkl.update(logit, list(paths))
    mkl.update(x["real_logits"], x["real_paths"], real=True)
    keys = [specvqgan_shared_key(p, "vas", classes) for p in x["real_paths"]]
    fkeys = [specvqgan_shared_key(p, "vas", classes) for p in x["fake_paths"]]
    expect = mean_kl_divergence(x["real_logits"], x["fake_logits"], keys, fkeys)
    assert mkl.compute() == pytest.approx(expect, rel=1e-14)
    state = mkl.state_dict()
    again = MeanKLDivergence(dataset="vas", classes=classes)
    again.load_state_dict(state)
    assert again.compute() == mkl.compute()


def test_sync_without_process_group_is_a_no_op() -> None:
    metric = FrechetDistance()
    metric.update(fad_set("d128_bg50"))
    assert metric.sync() is metric and metric.fake.n == 50


# ------------------------------------------------------------------ two gloo processes


def _worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        real, fake = fad_set("d128_bg500"), fad_set("d128_ev500_othercov")
        fd = FrechetDistance()
        kid = KernelInceptionDistance(**KID_SMALL)
        # rank r owns rows r::world
        fd.update(real[rank::world], real=True)
        fd.update(fake[rank::world])
        kid.update(real[rank::world], real=True)
        kid.update(fake[rank::world])
        fd_value = fd.sync().compute().value
        kid_values = kid.sync().compute().values
        np.savez(out_file + f".{rank}.npz", fd=fd_value, kid=kid_values)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_sync_across_two_processes() -> None:
    world = 2
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        out = os.path.join(tmp, "out")
        mp.spawn(_worker, args=(world, init_file, out), nprocs=world, join=True)
        results = [np.load(out + f".{r}.npz") for r in range(world)]
        real, fake = fad_set("d128_bg500"), fad_set("d128_ev500_othercov")
        exact = frechet_terms_from_embeddings(real, fake).value
        # merged in rank order: rows of rank 0 first, then rank 1
        order_real = np.concatenate([real[r::world] for r in range(world)])
        order_fake = np.concatenate([fake[r::world] for r in range(world)])
        kid = kernel_inception_distance(order_fake, order_real, **KID_SMALL).values
        for res in results:
            assert float(res["fd"]) == pytest.approx(exact, rel=1e-12)
            np.testing.assert_allclose(res["kid"], kid, rtol=1e-12)
