"""FID / IS / KID / MKL parity with SpecVQGAN's ``evaluation/metrics`` (golden fixtures).

Their FID takes ``scipy.linalg.sqrtm`` of the non-symmetric product with a float32 mean; our
exact value differs from it by <= 4.3e-8 relative (rank-deficient case), inside the fixture
tolerance rtol 1e-6. Their KID and MKL ran in float32 (we use float64): rtol 1e-5.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from audiorep.metrics import (
    GaussianStats,
    frechet_terms_from_embeddings,
    frechet_terms_from_stats,
    inception_score,
    kernel_inception_distance,
    mean_kl_divergence,
    specvqgan_shared_key,
)
from test_metrics_recipes import specvqgan_expected, specvqgan_inputs


def _names(metric: str) -> list:
    out = []
    for name, case in specvqgan_expected().items():
        if name == "versions" or case["metric"] != metric:
            continue
        slow = case.get("d", 0) >= 2048
        out.append(pytest.param(name, id=name, marks=[pytest.mark.slow] if slow else []))
    return out


@pytest.mark.parametrize("name", _names("fid"))
def test_fid(name: str) -> None:
    case = specvqgan_expected()[name]
    x = specvqgan_inputs(name)
    terms = frechet_terms_from_stats(
        GaussianStats.from_embeddings(x["f1"]), GaussianStats.from_embeddings(x["f2"])
    )
    if case["mode"] == "identical":
        assert abs(terms.value - case["value"]) <= 1e-9
        return
    assert terms.value == pytest.approx(case["value"], rel=1e-6)
    # their float64 eigen check (tr sqrt(sqrt(S1) S2 sqrt(S1))) is closer still
    assert terms.value == pytest.approx(case["check_eigh_float64"], rel=1e-7)
    if case["n1"] * case["d"] <= 10**6:
        exact = frechet_terms_from_embeddings(x["f1"], x["f2"]).value
        assert terms.value == pytest.approx(exact, rel=1e-11)


@pytest.mark.parametrize("name", _names("isc"))
def test_inception_score(name: str) -> None:
    case = specvqgan_expected()[name]
    logits = specvqgan_inputs(name)["logits"]
    res = inception_score(logits, splits=case["splits"], seed=case["rng_seed"])
    assert res.mean == pytest.approx(case["mean"], rel=1e-12)
    assert res.std == pytest.approx(case["std"], rel=1e-10)
    plain = inception_score(logits, splits=case["splits"], shuffle=False)
    assert plain.mean == pytest.approx(case["noshuffle_mean"], rel=1e-12)
    assert plain.std == pytest.approx(case["noshuffle_std"], rel=1e-10)
    one = inception_score(logits, splits=1, shuffle=False)
    assert one.mean == pytest.approx(case["splits1_noshuffle_mean"], rel=1e-12)


@pytest.mark.parametrize("name", _names("kid"))
def test_kid(name: str) -> None:
    case = specvqgan_expected()[name]
    x = specvqgan_inputs(name)
    # SpecVQGAN always shrinks the subset to min(1000, n1, n2) (with a warning when it does)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = kernel_inception_distance(
            x["f1"], x["f2"], subsets=case["subsets"], subset_size=case["subset_size"],
            degree=case["degree"], gamma=case["gamma"], coef0=case["coef0"],
            seed=case["rng_seed"], small_sets="clamp",
        )  # fmt: skip
    assert res.mean == pytest.approx(case["mean"], rel=1e-5)
    assert res.std == pytest.approx(case["std"], rel=1e-5)


@pytest.mark.parametrize("name", _names("kl"))
def test_mean_kl(name: str) -> None:
    case = specvqgan_expected()[name]
    x = specvqgan_inputs(name)
    ds, classes = case["dataset_name"], case["classes"]
    real_keys = [specvqgan_shared_key(p, ds, classes) for p in x["real_paths"]]
    fake_keys = [specvqgan_shared_key(p, ds, classes) for p in x["fake_paths"]]
    value = mean_kl_divergence(x["real_logits"], x["fake_logits"], real_keys, fake_keys)
    if name == "kl_identical":
        assert value == pytest.approx(case["value"], abs=1e-7)
    else:
        assert value == pytest.approx(case["value"], rel=1e-5)


def test_shared_keys() -> None:
    assert specvqgan_shared_key("./x/melspec_10s_22050hz/vid_1_2_mel.npy", "vggsound") == "vid_1_2"
    assert specvqgan_shared_key("a/cls_3/vid_1_2_sample_7.npy", "VGGSound") == "vid_1_2"
    classes = ["dog", "baby", "cough"]  # sorted: baby, cough, dog
    real = "./data/vas/features/dog/melspec_10s_22050hz/video_00007_mel.npy"
    fake = "./logs/exp/samples_t/VAS_validation/cls_2/video_00007_sample_4.npy"
    assert specvqgan_shared_key(real, "vas", classes) == "dog_video_00007"
    assert specvqgan_shared_key(fake, "vas", classes) == "dog_video_00007"
    with pytest.raises(ValueError, match="classes"):
        specvqgan_shared_key(fake, "vas")
    with pytest.raises(ValueError, match="unknown dataset"):
        specvqgan_shared_key(fake, "audiocaps")


def test_mkl_pairing_rules() -> None:
    rng = np.random.default_rng(0)
    real = rng.standard_normal((2, 5))
    fake = rng.standard_normal((3, 5))
    # one-to-one without keys needs equal counts
    with pytest.raises(ValueError, match="same number"):
        mean_kl_divergence(real, fake)
    # generated rows whose video has no real row are left out, with a warning
    with pytest.warns(UserWarning, match="1 generated"):
        v = mean_kl_divergence(real, fake, ["a", "b"], ["a", "c", "a"])
    ref = mean_kl_divergence(real[[0, 0]], fake[[0, 2]])
    assert v == pytest.approx(ref, rel=1e-14)
