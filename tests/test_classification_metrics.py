"""Classification metrics vs the YouTube-8M / sklearn golden data (tests/fixtures/yt8m/metrics).

The golden values come from the original google/youtube-8m code and scikit-learn (see the
fixture README). Tie-free cases must match to 1e-9; tie cases must lie within the stored
bounds, and this implementation's pessimistic / optimistic tie modes must reproduce them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from audiorep.metrics.classification import (
    TIE_MODES,
    ClassificationMetrics,
    audioset_metrics,
    average_precision_per_class,
    d_prime,
    global_average_precision,
    hit_at_one,
    precision_at_equal_recall_rate,
    roc_auc_per_class,
    top_k_per_video,
    yt8m_average_precision,
    yt8m_average_precision_per_class,
    yt8m_mean_average_precision,
)

FIXTURES = Path(__file__).parent / "fixtures" / "yt8m" / "metrics"
GOLDEN = json.loads((FIXTURES / "metrics_golden.json").read_text())
CASES = {c["name"]: c for c in GOLDEN["cases"]}
TIE_FREE = [n for n, c in CASES.items() if c["tie_free"]]
TIED = [n for n, c in CASES.items() if not c["tie_free"]]
EXACT = 1e-9


def load(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def _none_to_nan(x):
    return math.nan if x is None else (math.inf if x == "inf" else x)


def _same(a: float, b, tol: float = EXACT) -> bool:
    b = _none_to_nan(b)
    if math.isnan(b) or math.isinf(b):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return abs(a - b) <= tol


def test_fixture_set_complete():
    assert len(CASES) == 11
    assert set(TIED) == {"c03_c10_n200_ties", "c09_c527_n300_ties"}


# ------------------------------------------------------------------------------------------
# YT8M scalars


@pytest.mark.parametrize("name", TIE_FREE)
def test_yt8m_scalars_tie_free(name):
    case, z = CASES[name], load(name)
    p, y = z["predictions"], z["labels"]
    assert abs(hit_at_one(p, y) - case["hit_at_one"]) <= 1e-6
    assert abs(precision_at_equal_recall_rate(p, y) - case["perr"]) <= EXACT
    assert abs(global_average_precision(p, y, 20) - case["gap"]) <= EXACT
    assert _same(yt8m_mean_average_precision(p, y), case["evaluation_metrics"]["map"])
    legacy = yt8m_mean_average_precision(p, y, filter_empty_classes=False)
    assert abs(legacy - case["map_all_classes_legacy_pre2019"]) <= EXACT
    assert _same(yt8m_mean_average_precision(p, y, top_k=None), case["full_map"])
    # Without ties every tie rule gives the same value.
    for ties in TIE_MODES:
        assert abs(global_average_precision(p, y, ties=ties) - case["gap"]) <= EXACT


@pytest.mark.parametrize("name", TIED)
def test_yt8m_scalars_within_tie_bounds(name):
    case, z = CASES[name], load(name)
    p, y = z["predictions"], z["labels"]
    b = case["bounds"]
    # numpy.argmax takes the first maximum, which is the "first" rule: identical.
    assert abs(hit_at_one(p, y) - case["hit_at_one"]) <= 1e-6
    for key, fn in [("hit_at_one", hit_at_one), ("perr", precision_at_equal_recall_rate)]:
        lo, hi = b[key]
        assert lo - EXACT <= fn(p, y) <= hi + EXACT
        # The pessimistic / optimistic modes ARE the bounds.
        assert abs(fn(p, y, ties="pessimistic") - lo) <= EXACT
        assert abs(fn(p, y, ties="optimistic") - hi) <= EXACT
        assert lo - EXACT <= case[key] <= hi + EXACT
    gap_lo = global_average_precision(p, y, ties="pessimistic")
    gap_hi = global_average_precision(p, y, ties="optimistic")
    assert gap_lo - EXACT <= global_average_precision(p, y) <= gap_hi + EXACT
    assert gap_lo - EXACT <= case["gap"] <= gap_hi + EXACT  # the reference's own choice
    if b["gap"] is not None:  # top-20 selection unambiguous: exact bounds
        assert abs(gap_lo - b["gap"][0]) <= EXACT and abs(gap_hi - b["gap"][1]) <= EXACT
    else:  # c09: only a bit-faithful numpy-1.26 port reproduces the reference selection
        assert abs(global_average_precision(p, y) - case["gap"]) <= 1e-2
        assert abs(yt8m_mean_average_precision(p, y) - case["evaluation_metrics"]["map"]) <= 1e-2
    lo, hi = b["full_map"]
    for ties in TIE_MODES:
        assert lo - EXACT <= yt8m_mean_average_precision(p, y, None, ties=ties) <= hi + EXACT
    if b["eval_map"] is not None:
        lo, hi = b["eval_map"]
        assert lo - EXACT <= yt8m_mean_average_precision(p, y) <= hi + EXACT


# ------------------------------------------------------------------------------------------
# per-class AP


@pytest.mark.parametrize("name", list(CASES))
def test_per_class_aps(name):
    case, z = CASES[name], load(name)
    p, y = z["predictions"], z["labels"]
    idx = z["eval_aps_class_index"]
    full, numpos = yt8m_average_precision_per_class(p, y, top_k=None)
    assert np.array_equal(numpos > 0, z["has_positive"])
    if case["tie_free"]:
        aps, _ = yt8m_average_precision_per_class(p, y)
        np.testing.assert_allclose(aps[idx], z["eval_aps"], rtol=0, atol=EXACT)
        others = np.setdiff1d(np.arange(p.shape[1]), idx)
        assert np.all(aps[others] == 0)  # classes without positives (dropped from the mean)
        np.testing.assert_allclose(full, z["full_ap"], rtol=0, atol=EXACT)
        np.testing.assert_allclose(full, z["static_ap"], rtol=0, atol=EXACT)
    # Bounds over tie orderings: the pessimistic / optimistic modes reproduce them.
    lo, _ = yt8m_average_precision_per_class(p, y, None, ties="pessimistic")
    hi, _ = yt8m_average_precision_per_class(p, y, None, ties="optimistic")
    np.testing.assert_allclose(lo, z["full_ap_lo"], rtol=0, atol=EXACT)
    np.testing.assert_allclose(hi, z["full_ap_hi"], rtol=0, atol=EXACT)
    assert np.all(z["full_ap_lo"] - EXACT <= full) and np.all(full <= z["full_ap_hi"] + EXACT)
    if not case["ties"]["topk_selection"]:  # sparsified lists are then fixed
        lo, _ = yt8m_average_precision_per_class(p, y, ties="pessimistic")
        hi, _ = yt8m_average_precision_per_class(p, y, ties="optimistic")
        np.testing.assert_allclose(lo[idx], z["eval_aps_lo"], rtol=0, atol=EXACT)
        np.testing.assert_allclose(hi[idx], z["eval_aps_hi"], rtol=0, atol=EXACT)


def test_yt8m_average_precision_by_hand():
    s, y = [0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]
    assert yt8m_average_precision(s, y) == pytest.approx((1 / 1 + 2 / 3) / 2, abs=1e-15)
    assert yt8m_average_precision(s, y, n=2) == pytest.approx(1 / 2, abs=1e-15)
    assert yt8m_average_precision(s, y, num_positives=4) == pytest.approx(
        (1 + 2 / 3) / 4, abs=1e-15
    )
    assert yt8m_average_precision(s, [0, 0, 0, 0]) == 0.0
    assert yt8m_average_precision([], []) == 0.0
    # ties: [0.5 (neg), 0.5 (pos)] -> first: neg first (AP 1/2), optimistic: 1.
    assert yt8m_average_precision([0.5, 0.5], [0, 1]) == 0.5
    assert yt8m_average_precision([0.5, 0.5], [0, 1], ties="optimistic") == 1.0


def test_top_k_per_video():
    p = np.array([[0.1, 0.9, 0.5, 0.7], [0.3, 0.3, 0.3, 0.0]])
    y = np.array([[0, 1, 0, 0], [0, 0, 1, 0]])
    cls, s, lab = top_k_per_video(p, y, 2)
    assert cls.tolist() == [[1, 3], [0, 1]]  # ties: lowest class index first
    assert s.tolist() == [[0.9, 0.7], [0.3, 0.3]] and lab.tolist() == [[1, 0], [0, 0]]
    cls, _, _ = top_k_per_video(p, y, 2, ties="optimistic")
    assert cls[1].tolist() == [0, 2]  # the tied positive enters the list
    assert top_k_per_video(p, y, 10)[0].shape == (2, 4)  # k = min(k, C)
    with pytest.raises(ValueError):
        top_k_per_video(p, y, 0)


def test_perr_signed_scores_and_empty_rows():
    p = np.array([[0.5, -0.2, -0.3], [0.1, 0.2, 0.3]])
    y = np.array([[1, 1, 0], [0, 0, 0]])
    # row 0: top-2 = classes 0, 1; class 1 is positive but scores <= 0 -> 1/2; row 1: 0.
    assert precision_at_equal_recall_rate(p, y) == pytest.approx(0.25, abs=1e-15)


# ------------------------------------------------------------------------------------------
# EvaluationMetrics (streaming) vs the golden per-batch and epoch values


@pytest.mark.parametrize("name", list(CASES))
def test_streaming_evaluation_metrics(name):
    case, z = CASES[name], load(name)
    em = case["evaluation_metrics"]
    p, y, loss = z["predictions"], z["labels"], z["loss_per_example"]
    acc = ClassificationMetrics(p.shape[1], 20)
    for ref in em["per_batch"]:
        sl = slice(ref["start"], ref["start"] + ref["size"])
        got = acc.update(p[sl], y[sl], loss[sl])
        assert abs(got["hit_at_one"] - ref["hit_at_one"]) <= 1e-6
        assert abs(got["loss"] - ref["loss"]) <= EXACT
        if case["tie_free"]:
            assert abs(got["perr"] - ref["perr"]) <= EXACT
    res = acc.compute()
    assert res["num_examples"] == p.shape[0]
    assert abs(res["avg_hit_at_one"] - em["avg_hit_at_one"]) <= 1e-6
    assert abs(res["avg_loss"] - em["avg_loss"]) <= EXACT
    assert res["yt8m_num_classes"] == em["num_classes"]
    assert math.isnan(res["yt8m_map"]) == em["map_is_nan"]
    if case["tie_free"]:
        assert abs(res["avg_perr"] - em["avg_perr"]) <= EXACT
        assert abs(res["gap"] - em["gap"]) <= EXACT
        assert _same(res["yt8m_map"], em["map"])
    sk = case["audioset_sklearn"]
    assert res["num_classes"] == sk["num_classes"]
    for key in ("map", "mauc", "d_prime"):
        assert _same(res[key], sk[key]), key


def test_streaming_equals_one_shot_any_split():
    rng = np.random.default_rng(0)
    plan = {
        "c08_c527_n2000_batched": ("first",),
        "c09_c527_n300_ties": TIE_MODES,
        "c11_c10_n1000_batched": ("first", "optimistic"),
    }
    for name, modes in plan.items():
        z = load(name)
        p, y, loss = z["predictions"], z["labels"], z["loss_per_example"]
        for ties in modes:
            cuts = np.sort(rng.choice(np.arange(1, p.shape[0]), size=6, replace=False))
            acc = ClassificationMetrics(p.shape[1], 20, ties=ties)
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, p.shape[0]]):
                acc.update(torch.from_numpy(p[a:b]), y[a:b], loss[a:b])  # torch input too
            res = acc.compute(per_class=True)
            one = audioset_metrics(p, y)
            aps, _ = yt8m_average_precision_per_class(p, y, ties=ties)
            assert res["avg_hit_at_one"] == pytest.approx(hit_at_one(p, y, ties=ties), abs=1e-12)
            perr = precision_at_equal_recall_rate(p, y, ties=ties)
            assert res["avg_perr"] == pytest.approx(perr, abs=1e-12)
            assert res["gap"] == global_average_precision(p, y, ties=ties)
            assert res["yt8m_map"] == yt8m_mean_average_precision(p, y, ties=ties)
            np.testing.assert_array_equal(res["yt8m_aps"], aps)
            assert res["avg_loss"] == pytest.approx(loss.mean(), abs=1e-12)
            for key in ("map", "mauc", "d_prime", "num_classes", "num_skipped_classes"):
                assert res[key] == one[key]
            np.testing.assert_array_equal(res["ap"], one["ap"])


def test_streaming_options_and_errors():
    z = load("c07_c527_n100")
    p, y = z["predictions"], z["labels"]
    acc = ClassificationMetrics(527, keep_full=False)
    with pytest.raises(ValueError):
        acc.compute()  # nothing accumulated, as the original
    acc.update(p, y, loss=3.0)  # scalar batch-mean loss
    res = acc.compute()
    assert "map" not in res and res["avg_loss"] == 3.0
    acc.reset()
    acc.update(p, y)
    assert math.isnan(acc.compute()["avg_loss"])
    with pytest.raises(ValueError):
        acc.update(p[:, :10], y[:, :10])
    with pytest.raises(ValueError):
        ClassificationMetrics(527, ties="random")


# ------------------------------------------------------------------------------------------
# AudioSet-standard metrics (sklearn semantics)


@pytest.mark.parametrize("name", list(CASES))
def test_sklearn_parity(name):
    case, z = CASES[name], load(name)
    p, y = z["predictions"], z["labels"]
    ap, auc = average_precision_per_class(p, y), roc_auc_per_class(p, y)
    ok = np.isfinite(z["sk_ap"])
    np.testing.assert_allclose(ap[ok], z["sk_ap"][ok], rtol=0, atol=EXACT)
    np.testing.assert_array_equal(np.isfinite(auc), np.isfinite(z["sk_auc"]))
    ok = np.isfinite(z["sk_auc"])
    np.testing.assert_allclose(auc[ok], z["sk_auc"][ok], rtol=0, atol=EXACT)
    assert np.all(np.isnan(ap[~z["has_positive"]]))
    res, sk = audioset_metrics(p, y), case["audioset_sklearn"]
    assert res["num_classes"] == sk["num_classes"]
    assert res["num_skipped_classes"] == p.shape[1] - sk["num_classes"]
    for key in ("map", "mauc", "d_prime"):
        assert _same(res[key], sk[key]), key


def test_sklearn_ties_by_hand():
    # Scores [0.8, 0.5, 0.5, 0.2], labels [1, 1, 0, 0]: one tied pos/neg pair.
    p = np.array([0.8, 0.5, 0.5, 0.2])[:, None]
    y = np.array([1, 1, 0, 0])[:, None]
    # AP: thresholds 0.8 (P=1, R=1/2), 0.5 (P=2/3, R=1) -> 1/2 + 1/2 * 2/3.
    assert average_precision_per_class(p, y)[0] == pytest.approx(0.5 + 1 / 3, abs=1e-15)
    # AUC: pairs (pos, neg): (0.8, 0.5) 1, (0.8, 0.2) 1, (0.5, 0.5) 1/2, (0.5, 0.2) 1 -> 3.5/4.
    assert roc_auc_per_class(p, y)[0] == pytest.approx(3.5 / 4, abs=1e-15)
    # Row order does not matter (tie-aware definitions).
    perm = [2, 0, 3, 1]
    assert roc_auc_per_class(p[perm], y[perm])[0] == roc_auc_per_class(p, y)[0]
    assert average_precision_per_class(p[perm], y[perm])[0] == pytest.approx(0.5 + 1 / 3)


def test_d_prime():
    assert d_prime(0.5) == 0.0
    assert d_prime(1.0) == math.inf and d_prime(0.0) == -math.inf
    assert math.isnan(d_prime(math.nan))
    assert d_prime(0.975) == pytest.approx(math.sqrt(2) * 1.959963984540054, abs=1e-12)
    # the AudioSet papers apply it to the MEAN AUC (as the golden data)
    res = audioset_metrics(*[load("c07_c527_n100")[k] for k in ("predictions", "labels")])
    assert res["d_prime"] == d_prime(res["mauc"])


def test_input_validation():
    with pytest.raises(ValueError):
        hit_at_one(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError):
        hit_at_one(np.full((2, 3), np.nan), np.zeros((2, 3)))
    with pytest.raises(ValueError):
        hit_at_one(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError):
        global_average_precision(np.zeros((2, 3)), np.zeros((2, 3)), ties="random")
