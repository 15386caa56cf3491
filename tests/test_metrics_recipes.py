"""Input recipes of the metric fixtures, regenerated here instead of stored, plus their checks.

* ``fadgen-v1`` (tests/fixtures/fad/golden.json): every FAD fixture set, from legacy
  ``RandomState`` streams and element-wise float64 arithmetic, rounded to float32; checked
  against the stored sha256 of the float32 bytes.
* SpecVQGAN evaluation-feature recipe v1 (tests/fixtures/specvqgan_metrics/expected.json):
  ``fid_features``, ``logits_features``, ``kl_case``, written from their specification.

Other metric test modules import the helpers from here (tests/ is on ``sys.path``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
FAD_GOLDEN = FIXTURES / "fad" / "golden.json"
SPECVQGAN_EXPECTED = FIXTURES / "specvqgan_metrics" / "expected.json"


def sha256_f32(x: np.ndarray) -> str:
    """sha256 of the C-order little-endian float32 bytes."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").tobytes()).hexdigest()


@functools.cache
def fad_golden() -> dict:
    return json.loads(FAD_GOLDEN.read_text())


@functools.cache
def specvqgan_expected() -> dict:
    return json.loads(SPECVQGAN_EXPECTED.read_text())


def fadgen(spec: dict) -> np.ndarray:
    """Recipe fadgen-v1: one ``(n, d)`` float32 set (evaluation order as specified)."""
    d, n = spec["d"], spec["n"]
    rp = np.random.RandomState(spec["dist_seed"])
    a = rp.uniform(0.5, 1.5, d)
    b = rp.uniform(-0.8, 0.8, d)
    c = rp.uniform(-0.4, 0.4, d)
    m = rp.standard_normal(d) * 0.5
    rz = np.random.RandomState(spec["sample_seed"])
    z = rz.standard_normal((n, d))
    x = ((a * z) + (b * np.roll(z, 1, axis=1))) + (c * np.roll(z, 2, axis=1))
    x = (x * spec.get("scale", 1.0)) + (m + spec.get("shift", 0.0))
    if spec.get("dup_every"):
        e = rz.standard_normal((n, d))  # same stream, drawn after z
        for j in range(1, d, spec["dup_every"]):
            x[:, j] = x[:, j - 1] + spec["dup_eps"] * e[:, j]
    if spec.get("dead_every"):
        x[:, 0 :: spec["dead_every"]] -= 50.0
        x = np.maximum(x, 0.0)
    return x.astype(np.float32)


@functools.cache
def fad_set(name: str) -> np.ndarray:
    """A FAD fixture set by name, regenerated and checked against its sha256 (cached)."""
    entry = fad_golden()["sets"][name]
    x = fadgen(entry["spec"])
    assert list(x.shape) == entry["shape"]
    assert sha256_f32(x) == entry["sha256_f32"], f"recipe does not reproduce {name}"
    x.setflags(write=False)
    return x


# ------------------------------------------------------------------- SpecVQGAN recipe v1


def fid_features(seed: int, n1: int, n2: int, d: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 feature sets. Draw order: z1 (n1, d), G (d, d) for 'mixed', z2 (n2, d).

    mixed: f1 = z1, f2 = z2 (I + 0.5 G / sqrt(d)) + 0.3; identical: f2 = f1;
    relu: f1 = |z1|, f2 = 1.1 |z2| + 0.05.
    """
    rs = np.random.RandomState(seed)
    z1 = rs.standard_normal((n1, d))
    if mode == "identical":
        return z1.astype(np.float32), z1.astype(np.float32)
    if mode == "mixed":
        g = rs.standard_normal((d, d))
        z2 = rs.standard_normal((n2, d))
        f2 = z2 @ (np.eye(d) + 0.5 * g / np.sqrt(d)) + 0.3
        return z1.astype(np.float32), f2.astype(np.float32)
    if mode == "relu":
        z2 = rs.standard_normal((n2, d))
        return np.abs(z1).astype(np.float32), (1.1 * np.abs(z2) + 0.05).astype(np.float32)
    raise ValueError(mode)


def logits_features(seed: int, n: int, c: int, peak: float = 6.0, scale: float = 2.0):
    """float32 logits ``scale * z + peak * onehot(k)``; z (n, c) drawn first, then k."""
    rs = np.random.RandomState(seed)
    z = rs.standard_normal((n, c))
    k = rs.randint(c, size=n)
    x = scale * z
    x[np.arange(n), k] += peak
    return x.astype(np.float32)


def kl_case(seed, n_videos, samples_per_video, c, dataset, classes=None, noise=1.5):
    """Real logits (one per video), shuffled fake logits and the file paths of both."""
    rs = np.random.RandomState(seed)
    z = rs.standard_normal((n_videos, c))
    k = rs.randint(c, size=n_videos)
    real = 2.0 * z
    real[np.arange(n_videos), k] += 6.0
    fake = np.repeat(real, samples_per_video, axis=0)
    fake = fake + noise * rs.standard_normal((n_videos * samples_per_video, c))
    perm = rs.permutation(n_videos * samples_per_video)
    real_paths: list[str] = []
    fake_paths: list[str] = []
    for v in range(n_videos):
        if dataset == "vggsound":
            vid = f"vid{v:08d}_{1000 * v}_{1000 * v + 10000}"
            real_paths.append(f"./data/vggsound/melspec_10s_22050hz/{vid}_mel.npy")
            folder = f"./logs/exp/samples_t/VGGSound_test/cls_{v % 309}"
        else:
            cls = classes[v % len(classes)]
            vid = f"video_{10 * v + 7:05d}"
            real_paths.append(f"./data/vas/features/{cls}/melspec_10s_22050hz/{vid}_mel.npy")
            folder = f"./logs/exp/samples_t/VAS_validation/cls_{sorted(classes).index(cls)}"
        fake_paths += [f"{folder}/{vid}_sample_{s}.npy" for s in range(samples_per_video)]
    return (
        real.astype(np.float32),
        real_paths,
        fake[perm].astype(np.float32),
        [fake_paths[i] for i in perm],
    )


@functools.cache
def specvqgan_inputs(name: str) -> dict:
    """Regenerated inputs of one SpecVQGAN metrics case, checked against the stored hashes."""
    case = specvqgan_expected()[name]
    stored = case.get("sha256_inputs", {})
    out: dict = {}
    if case["recipe"] == "fid_features":
        f1, f2 = fid_features(case["seed"], case["n1"], case["n2"], case["d"], case["mode"])
        assert sha256_f32(f1).startswith(case.get("sha256_16_f1", "")), name
        assert sha256_f32(f2).startswith(case.get("sha256_16_f2", "")), name
        out = {"f1": f1, "f2": f2}
    elif case["recipe"] == "logits_features":
        x = logits_features(case["seed"], case["n"], case["c"])
        assert sha256_f32(x).startswith(case["sha256_16"]), name
        out = {"logits": x}
    else:  # kl_case, possibly "then fake = real copy"
        real, rp, fake, fp = kl_case(
            case["seed"], case["n_videos"], case["samples_per_video"], case["c"],
            case["dataset_name"], case["classes"],
        )  # fmt: skip
        if name == "kl_identical":
            fake, fp = real.copy(), [p.replace("_mel.npy", "_sample_0.npy") for p in rp]
        assert rp == case["real_paths"] and fp == case["fake_paths"], name
        out = {"real_logits": real, "fake_logits": fake, "real_paths": rp, "fake_paths": fp}
    for key, digest in stored.items():
        assert sha256_f32(out[key]) == digest, f"recipe does not reproduce {name}/{key}"
    return out


# ------------------------------------------------------------------------------ tests


def _small_sets() -> list[str]:
    return [k for k, v in fad_golden()["sets"].items() if v["shape"][0] * v["shape"][1] <= 10**6]


@pytest.mark.parametrize("name", _small_sets())
def test_fadgen_reproduces_small_sets(name: str) -> None:
    x = fad_set(name)
    np.testing.assert_array_equal(x.reshape(-1)[:4], fad_golden()["sets"][name]["first_values"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [k for k in fad_golden()["sets"] if k not in _small_sets()]
)  # fmt: skip
def test_fadgen_reproduces_large_sets(name: str) -> None:
    fad_set(name)  # sha256 checked inside


@pytest.mark.parametrize(
    "name", [k for k, v in specvqgan_expected().items() if k != "versions" and v.get("d", 0) < 2048]
)
def test_specvqgan_recipe_reproduces_inputs(name: str) -> None:
    assert specvqgan_inputs(name)
