"""Multi-label classification metrics: YouTube-8M's (Hit@1, PERR, GAP@20, top-20 "MAP") and
AudioSet's standard ones (mAP, mAUC, d').

Inputs everywhere: ``predictions`` ``(N, C)`` scores (probabilities, or signed scores for
hinge-trained models) and ``labels`` ``(N, C)`` multi-hot ground truth (0/1; soft values are
accepted where the original accepts them). numpy arrays or torch tensors (any device). All
arithmetic is float64 (float32 inputs convert exactly, so ties and order are preserved).

YouTube-8M metrics (google/youtube-8m ``eval_util.py``, ``average_precision_calculator.py``,
``mean_average_precision_calculator.py``, behaviour as of commit ``e6f6bf6``):

* :func:`hit_at_one` - label of the top-scoring class, averaged over videos (first index wins
  a tie, like ``numpy.argmax``).
* :func:`precision_at_equal_recall_rate` (PERR) - for each video with ``L`` labels the fraction
  of its ``L`` top-scoring classes that are positive *and* have a score ``> 0``; videos without
  labels count as 0 but stay in the average.
* :func:`global_average_precision` (GAP) - the top ``k`` (score, label) pairs of every video are
  pooled and ranked; non-interpolated AP with the denominator = ALL positive labels (also those
  that fell outside a top-k list).
* :func:`yt8m_average_precision_per_class` / :func:`yt8m_mean_average_precision` - eval.py's
  "MAP": per class, AP over the pairs that entered that class's top-k lists, denominator = the
  class's total positives; classes without positives are dropped (``filter_empty_classes``,
  since 2019-05; ``False`` gives the older sum(aps)/C). ``top_k=None`` uses the full columns.
* :class:`ClassificationMetrics` - streaming accumulator, the counterpart of
  ``EvaluationMetrics`` (plus the AudioSet metrics); batch results equal the one-shot ones.

AudioSet-standard metrics (PANNs / AST practice, scikit-learn semantics, no sklearn needed):

* :func:`average_precision_per_class` - sklearn ``average_precision_score`` per column
  (step-wise, tied scores form one threshold, independent of row order).
* :func:`roc_auc_per_class` - sklearn ``roc_auc_score`` per column (ties count 1/2).
* :func:`d_prime` - ``sqrt(2) * Phi^-1(AUC)``; :func:`audioset_metrics` applies it to the MEAN
  AUC, as the AudioSet papers (and the golden data) do.
* :func:`audioset_metrics` - mAP, mAUC, d' over the classes with at least one positive AND one
  negative; the others are skipped and counted.

Ties. The original shuffles with ``random.seed(0)`` and then sorts, and selects top-k entries
with ``numpy.argpartition``, so with tied scores its value depends on Python's RNG, heap layout
and the numpy version. Here every function takes ``ties``:

* ``"first"`` (default, deterministic): among equal scores the lower class index (within a
  video) / the earlier video (across videos) comes first - ``numpy.argmax`` / stable-sort order.
* ``"pessimistic"`` / ``"optimistic"``: negatives (positives) first among equal scores, both for
  the ranking and for which tied classes enter a top-k list. Labels are taken as binary
  (``> 0``) for this. They give the lower / upper bound over all tie orderings (for PERR, Hit@1,
  GAP and per-class AP); tie-free inputs give the same value in all three modes.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import torch

__all__ = [
    "TIE_MODES",
    "ClassificationMetrics",
    "audioset_metrics",
    "average_precision_per_class",
    "d_prime",
    "global_average_precision",
    "hit_at_one",
    "precision_at_equal_recall_rate",
    "roc_auc_per_class",
    "top_k_per_video",
    "yt8m_average_precision",
    "yt8m_average_precision_per_class",
    "yt8m_mean_average_precision",
]

ArrayLike = Any  # numpy array, torch tensor or nested sequence
TIE_MODES = ("first", "pessimistic", "optimistic")
_COLUMN_CHUNK = 64  # classes per block in the full-column metrics (caps (N, C) temporaries)


# ------------------------------------------------------------------------------------------
# input handling


def _as_array(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float64)
    return arr


def _pair(predictions: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 ``(N, C)``; a single ``(C,)`` row becomes ``(1, C)``."""
    p = np.asarray(_as_array(predictions, "predictions"), dtype=np.float64)
    y = np.asarray(_as_array(labels, "labels"), dtype=np.float64)
    if p.ndim == 1:
        p, y = p[None, :], y.reshape(1, -1)
    if p.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"predictions and labels must both be (N, C); got {p.shape} and {y.shape}")
    if np.isnan(p).any():
        raise ValueError("predictions contain NaN")
    if np.isnan(y).any():
        raise ValueError("labels contain NaN")
    return p, y


def _check_ties(ties: str) -> None:
    if ties not in TIE_MODES:
        raise ValueError(f"ties must be one of {TIE_MODES}, got {ties!r}")


def _check_nonempty(n: int) -> None:
    if n == 0:
        raise ValueError("no examples (N = 0)")


# ------------------------------------------------------------------------------------------
# per-row selection helpers


def _hits(p: np.ndarray, y: np.ndarray, ties: str) -> np.ndarray:
    """``(N,)`` label value at each row's top-scoring class."""
    if ties == "first":
        return y[np.arange(p.shape[0]), np.argmax(p, axis=1)]
    tied = p == p.max(axis=1, keepdims=True)
    if ties == "pessimistic":
        return np.where(tied, y, np.inf).min(axis=1)
    return np.where(tied, y, -np.inf).max(axis=1)


def _tie_rank(tied: np.ndarray, pos: np.ndarray, ties: str) -> np.ndarray:
    """1-based rank of every tied entry within its row under the tie rule (0 elsewhere)."""
    if ties == "first":
        return np.cumsum(tied, axis=1) * tied
    # "pessimistic": tied negatives first (in class order), then tied positives.
    first = tied & (~pos if ties == "pessimistic" else pos)
    second = tied & ~first
    rank = np.cumsum(first, axis=1) * first
    rank += (first.sum(axis=1, keepdims=True) + np.cumsum(second, axis=1)) * second
    return rank


def _select_top(
    p: np.ndarray, pos: np.ndarray, counts: np.ndarray, ties: str, kth: np.ndarray | None = None
) -> np.ndarray:
    """Boolean ``(N, C)`` mask selecting exactly ``counts[i]`` (1..C) top entries of each row.

    ``kth``: ``(N,)`` the ``counts[i]``-th largest score of each row if already known.
    """
    if kth is None:
        desc = -np.sort(-p, axis=1)
        kth = desc[np.arange(p.shape[0]), counts - 1]
    kth = kth[:, None]
    strict = p > kth
    tied = p == kth
    need = counts[:, None] - strict.sum(axis=1, keepdims=True)
    return strict | (tied & (_tie_rank(tied, pos, ties) <= need))


def _perr_rows(p: np.ndarray, y: np.ndarray, ties: str) -> np.ndarray:
    """``(N,)`` per-video precision at equal recall rate (the original's ``item_precision``)."""
    n, c = p.shape
    # int(sum(labels)) as the original (truncation; labels are >= 0).
    num_labels = np.minimum(np.floor(y.sum(axis=1)).astype(np.int64), c)
    # A row without labels selects all C classes (argpartition(-0)[-0:]) and divides by C.
    counts = np.where(num_labels > 0, num_labels, c)
    sel = _select_top(p, y > 0, counts, ties)
    hit = np.where(sel & (p > 0), y, 0.0).sum(axis=1)
    return hit / counts


def _top_k_mask(p: np.ndarray, y: np.ndarray, k: int, ties: str) -> np.ndarray:
    n, c = p.shape
    counts = np.full(n, k, dtype=np.int64)
    kth = np.partition(p, c - k, axis=1)[:, c - k]  # k-th largest, O(C) per row
    return _select_top(p, y > 0, counts, ties, kth=kth)


def _check_k(top_k: int) -> None:
    if not isinstance(top_k, (int, np.integer)) or top_k <= 0:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")


def top_k_per_video(
    predictions: ArrayLike, labels: ArrayLike, k: int = 20, *, ties: str = "first"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``min(k, C)`` top-scoring classes of every video (``top_k_triplets``).

    Returns ``(classes, scores, labels)``, each ``(N, k)``, classes ascending within a row (the
    original's order within a row is unspecified and does not matter to any metric).
    """
    _check_ties(ties)
    _check_k(k)
    p, y = _pair(predictions, labels)
    rows, cols = _top_k_entries(p, y, k, ties)
    n = p.shape[0]
    k = min(k, p.shape[1])
    return (cols.reshape(n, k), p[rows, cols].reshape(n, k), y[rows, cols].reshape(n, k))


def _top_k_entries(p: np.ndarray, y: np.ndarray, k: int, ties: str) -> tuple[np.ndarray, ...]:
    """Row-major ``(rows, cols)`` of the per-video top-k entries (``N * min(k, C)`` each)."""
    k = min(k, p.shape[1])
    return np.nonzero(_top_k_mask(p, y, k, ties))


# ------------------------------------------------------------------------------------------
# AP on ranked lists


def _order(scores: np.ndarray, pos: np.ndarray, ties: str, *extra_primary: np.ndarray):
    """Stable ranking by score descending with the tie rule; ``extra_primary`` keys sort first
    (``np.lexsort`` takes its last key as primary)."""
    if ties == "first":
        keys: tuple[np.ndarray, ...] = (-scores,)
    elif ties == "pessimistic":
        keys = (pos, -scores)
    else:
        keys = (~pos, -scores)
    return np.lexsort(keys + tuple(extra_primary))


def yt8m_average_precision(
    predictions: ArrayLike,
    labels: ArrayLike,
    *,
    num_positives: float | None = None,
    n: int | None = None,
    ties: str = "first",
) -> float:
    """``AveragePrecisionCalculator.ap_at_n`` on one ranked list (non-interpolated AP).

    Args:
        predictions, labels: ``(M,)`` scores and labels of the list (label ``> 0`` = positive).
        num_positives: denominator (total positives, also those missing from the list);
            default: the positives in the list.
        n: cut-off (AP@n: only the first ``n`` items, denominator ``min(num_positives, n)``).

    Returns 0 when the denominator is 0 or the list is empty.
    """
    _check_ties(ties)
    s = np.asarray(_as_array(predictions, "predictions"), dtype=np.float64).ravel()
    y = np.asarray(_as_array(labels, "labels"), dtype=np.float64).ravel()
    if s.shape != y.shape:
        raise ValueError("predictions and labels must have the same length")
    if n is not None and (not isinstance(n, (int, np.integer)) or n <= 0):
        raise ValueError("n must be None or a positive integer")
    pos = y > 0
    numpos = float(pos.sum()) if num_positives is None else float(num_positives)
    if s.size == 0:
        return 0.0
    return _ap_ranked(pos[_order(s, pos, ties)], numpos, n)


def _ap_ranked(pos_sorted: np.ndarray, numpos: float, n: int | None = None) -> float:
    if numpos == 0:
        return 0.0
    if n is not None:
        numpos = min(numpos, n)
        pos_sorted = pos_sorted[:n]
    ranks = np.flatnonzero(pos_sorted) + 1.0  # 1-based positions of the positives
    return float(np.sum(np.arange(1, ranks.size + 1) / ranks) / numpos)


def hit_at_one(predictions: ArrayLike, labels: ArrayLike, *, ties: str = "first") -> float:
    """Hit@1: mean over videos of the label of the top-scoring class."""
    _check_ties(ties)
    p, y = _pair(predictions, labels)
    _check_nonempty(p.shape[0])
    return float(_hits(p, y, ties).mean())


def precision_at_equal_recall_rate(
    predictions: ArrayLike, labels: ArrayLike, *, ties: str = "first"
) -> float:
    """PERR: mean over videos of the precision of its ``L`` top classes (``L`` = its labels).

    Only classes with a score ``> 0`` count as hits (matters for signed hinge scores). Videos
    without labels contribute 0 and still count in the mean.
    """
    _check_ties(ties)
    p, y = _pair(predictions, labels)
    _check_nonempty(p.shape[0])
    return float(_perr_rows(p, y, ties).mean())


def _gap_from_entries(s: np.ndarray, y: np.ndarray, total_positives: float, ties: str) -> float:
    if s.size == 0:
        return 0.0  # the original's empty heap
    pos = y > 0
    return _ap_ranked(pos[_order(s, pos, ties)], total_positives)


def global_average_precision(
    predictions: ArrayLike, labels: ArrayLike, top_k: int = 20, *, ties: str = "first"
) -> float:
    """GAP@k (``calculate_gap``): AP of all videos' pooled top-``k`` (score, label) pairs.

    The denominator is the sum of ALL labels, so positives outside a video's top-k list cap
    the reachable value. 0 when there are no positives.
    """
    _check_ties(ties)
    _check_k(top_k)
    p, y = _pair(predictions, labels)
    rows, cols = _top_k_entries(p, y, top_k, ties)
    return _gap_from_entries(p[rows, cols], y[rows, cols], float(y.sum()), ties)


def _class_aps_from_entries(
    cls: np.ndarray,
    s: np.ndarray,
    y: np.ndarray,
    num_positives: np.ndarray,
    num_classes: int,
    ties: str,
) -> np.ndarray:
    """Per-class AP over sparse (class, score, label) entries, denominators ``num_positives``."""
    aps = np.zeros(num_classes)
    if cls.size == 0:
        return aps
    pos = y > 0
    order = _order(s, pos, ties, cls)  # class-major, then rank
    cls_s, pos_s = cls[order], pos[order]
    counts = np.bincount(cls_s, minlength=num_classes)
    starts = np.cumsum(counts) - counts
    rank = np.arange(cls_s.size) - starts[cls_s] + 1.0
    cum = np.cumsum(pos_s)
    before = (cum - pos_s)[starts[cls_s]]  # positives of earlier classes
    contrib = np.where(pos_s, (cum - before) / rank, 0.0)
    sums = np.bincount(cls_s, weights=contrib, minlength=num_classes)
    ok = num_positives > 0
    aps[ok] = sums[ok] / num_positives[ok]
    return aps


def _full_column_aps(p: np.ndarray, pos: np.ndarray, ties: str) -> np.ndarray:
    """YT8M AP of every full column (``AveragePrecisionCalculator.ap``), ``(C,)``."""
    n, c = p.shape
    aps = np.zeros(c)
    ranks = np.arange(1, n + 1, dtype=np.float64)[:, None]
    for j0 in range(0, c, _COLUMN_CHUNK):
        ps, qs = p[:, j0 : j0 + _COLUMN_CHUNK], pos[:, j0 : j0 + _COLUMN_CHUNK]
        if ties == "first":
            order = np.argsort(-ps, axis=0, kind="stable")
        else:
            tie_key = qs if ties == "pessimistic" else ~qs
            order = np.lexsort((tie_key, -ps), axis=0)
        q = np.take_along_axis(qs, order, axis=0)
        cum = np.cumsum(q, axis=0)
        numpos = q.sum(axis=0)
        sums = np.where(q, cum / ranks, 0.0).sum(axis=0)
        aps[j0 : j0 + _COLUMN_CHUNK] = np.where(numpos > 0, sums / np.maximum(numpos, 1), 0.0)
    return aps


def yt8m_average_precision_per_class(
    predictions: ArrayLike,
    labels: ArrayLike,
    top_k: int | None = 20,
    *,
    ties: str = "first",
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class YT8M AP, ``(aps (C,), num_positives (C,))``.

    ``top_k=20`` (eval.py): each class's list holds only the entries where the class was among
    a video's top-20 scores, the denominator is the class's total label sum. ``top_k=None``:
    the full column (``MeanAveragePrecisionCalculator`` fed whole columns), denominator = the
    number of positives. Classes without positives get AP 0.
    """
    _check_ties(ties)
    p, y = _pair(predictions, labels)
    if top_k is None:
        pos = y > 0
        return _full_column_aps(p, pos, ties), pos.sum(axis=0).astype(np.float64)
    _check_k(top_k)
    rows, cols = _top_k_entries(p, y, top_k, ties)
    numpos = y.sum(axis=0)
    aps = _class_aps_from_entries(cols, p[rows, cols], y[rows, cols], numpos, p.shape[1], ties)
    return aps, numpos


def _mean_ap(aps: np.ndarray, numpos: np.ndarray, filter_empty_classes: bool) -> float:
    if not filter_empty_classes:
        return float(aps.sum() / aps.size)
    kept = aps[numpos > 0]
    return float(kept.mean()) if kept.size else math.nan


def yt8m_mean_average_precision(
    predictions: ArrayLike,
    labels: ArrayLike,
    top_k: int | None = 20,
    *,
    filter_empty_classes: bool = True,
    ties: str = "first",
) -> float:
    """eval.py's "MAP": mean of :func:`yt8m_average_precision_per_class` over the classes with
    positives (NaN if none). ``filter_empty_classes=False``: the pre-2019 sum(aps) / C.

    With ``top_k=20`` and C = 527 this is NOT the AudioSet mAP (see :func:`audioset_metrics`).
    """
    aps, numpos = yt8m_average_precision_per_class(predictions, labels, top_k, ties=ties)
    return _mean_ap(aps, numpos, filter_empty_classes)


# ------------------------------------------------------------------------------------------
# AudioSet-standard (sklearn semantics)


def _group_bounds(sorted_vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of the run of equal values each entry belongs to (axis 0)."""
    n = sorted_vals.shape[0]
    idx = np.broadcast_to(np.arange(n)[:, None], sorted_vals.shape)
    new = np.ones(sorted_vals.shape, dtype=bool)
    new[1:] = sorted_vals[1:] != sorted_vals[:-1]
    last = np.ones(sorted_vals.shape, dtype=bool)
    last[:-1] = new[1:]
    start = np.maximum.accumulate(np.where(new, idx, 0), axis=0)
    end = np.minimum.accumulate(np.where(last, idx, n)[::-1], axis=0)[::-1]
    return start, end


def _sk_columns(p: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn AP and ROC-AUC of every column (NaN where undefined), each ``(C,)``."""
    n, c = p.shape
    ap = np.full(c, np.nan)
    auc = np.full(c, np.nan)
    for j0 in range(0, c, _COLUMN_CHUNK):
        sl = slice(j0, j0 + _COLUMN_CHUNK)
        ps, qs = p[:, sl], pos[:, sl]
        order = np.argsort(ps, axis=0, kind="stable")  # ascending; tie order is irrelevant
        v = np.take_along_axis(ps, order, axis=0)
        q = np.take_along_axis(qs, order, axis=0)
        start, end = _group_bounds(v)
        npos = q.sum(axis=0).astype(np.float64)
        nneg = n - npos
        # AUC = Mann-Whitney U with mid-ranks for ties (what sklearn's trapezoids give).
        mid_rank = (start + end) / 2.0 + 1.0
        rank_sum = np.where(q, mid_rank, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            a = (rank_sum - npos * (npos + 1) / 2.0) / (npos * nneg)
        auc[sl] = np.where((npos > 0) & (nneg > 0), a, np.nan)
        # AP: every positive gets the precision at the lowest score of its tie group, i.e.
        # sum_t (R_t - R_{t-1}) P_t over distinct thresholds. Descending = reversed ascending,
        # so "items scoring >= this group" = n - start.
        above_or_tied = n - start  # items ranked at or above this group's threshold
        tp_at = (npos - (np.cumsum(q, axis=0) - q))[start, np.arange(q.shape[1])]
        prec = tp_at / above_or_tied
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.where(q, prec, 0.0).sum(axis=0) / npos
        ap[sl] = np.where(npos > 0, a, np.nan)
    return ap, auc


def average_precision_per_class(predictions: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """sklearn ``average_precision_score`` for every class column, ``(C,)``.

    Positive = label ``> 0``. NaN where the class has no positive.
    """
    p, y = _pair(predictions, labels)
    return _sk_columns(p, y > 0)[0]


def roc_auc_per_class(predictions: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """sklearn ``roc_auc_score`` for every class column, ``(C,)`` (tied scores count 1/2).

    NaN where the class has no positive or no negative.
    """
    p, y = _pair(predictions, labels)
    return _sk_columns(p, y > 0)[1]


def d_prime(auc: float) -> float:
    """``sqrt(2) * Phi^-1(auc)`` (``Phi^-1`` = standard normal quantile); +-inf at 1 / 0."""
    auc = float(auc)
    if math.isnan(auc):
        return math.nan
    if auc >= 1.0:
        return math.inf
    if auc <= 0.0:
        return -math.inf
    return math.sqrt(2.0) * NormalDist().inv_cdf(auc)


def _audioset_from(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    pos = y > 0
    ap, auc = _sk_columns(p, pos)
    npos = pos.sum(axis=0)
    valid = (npos > 0) & (npos < p.shape[0])
    k = int(valid.sum())
    mean_ap = float(ap[valid].mean()) if k else math.nan
    mauc = float(auc[valid].mean()) if k else math.nan
    return {
        "map": mean_ap,
        "mauc": mauc,
        "d_prime": d_prime(mauc),
        "num_classes": k,
        "num_skipped_classes": int(p.shape[1] - k),
        "ap": np.where(valid, ap, np.nan),
        "auc": np.where(valid, auc, np.nan),
    }


def audioset_metrics(predictions: ArrayLike, labels: ArrayLike) -> dict[str, Any]:
    """AudioSet-standard metrics on the full prediction columns.

    Returns ``map`` (mean sklearn AP), ``mauc`` (mean ROC-AUC), ``d_prime`` (of ``mauc``),
    ``num_classes`` (classes used: >= 1 positive and >= 1 negative), ``num_skipped_classes``
    and per-class ``ap`` / ``auc`` arrays ``(C,)`` (NaN for skipped classes). The scalars are
    NaN when no class qualifies.
    """
    p, y = _pair(predictions, labels)
    _check_nonempty(p.shape[0])
    return _audioset_from(p, y)


# ------------------------------------------------------------------------------------------
# streaming


class ClassificationMetrics:
    """Streaming YT8M + AudioSet metrics (the counterpart of ``eval_util.EvaluationMetrics``).

    ``update(predictions, labels, loss)`` per batch returns that batch's ``hit_at_one``,
    ``perr`` and mean ``loss`` (as ``EvaluationMetrics.accumulate``); ``compute()`` gives the
    epoch values. Results equal the one-shot functions on the concatenated batches (same tie
    rule; differences only from float summation order, ~1e-16).

    Args:
        num_classes: C.
        top_k: per-video list length for GAP and the YT8M MAP (20 as eval.py).
        keep_full: keep every prediction row (``N * C`` values) for the AudioSet metrics
            (mAP / mAUC / d'); ``False`` keeps only ``N * top_k`` entries and drops those.
        ties: tie rule (module docstring).
    """

    def __init__(
        self,
        num_classes: int = 527,
        top_k: int = 20,
        *,
        keep_full: bool = True,
        ties: str = "first",
    ) -> None:
        _check_ties(ties)
        _check_k(top_k)
        self.num_classes = int(num_classes)
        self.top_k = int(top_k)
        self.keep_full = keep_full
        self.ties = ties
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.num_examples = 0
        self._sum_hit = 0.0
        self._sum_perr = 0.0
        self._sum_loss = 0.0
        self._loss_examples = 0
        self._positives = np.zeros(self.num_classes)
        self._entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._full: list[tuple[np.ndarray, np.ndarray]] = []

    def update(
        self, predictions: ArrayLike, labels: ArrayLike, loss: ArrayLike | None = None
    ) -> dict[str, float]:
        """Add a batch: predictions/labels ``(B, C)``; ``loss`` per example ``(B,)`` or the
        batch mean (scalar), optional. Returns the batch's ``hit_at_one``, ``perr``, ``loss``.
        """
        raw_p, raw_y = _as_array(predictions, "predictions"), _as_array(labels, "labels")
        p, y = _pair(raw_p, raw_y)
        if p.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} classes, got {p.shape[1]}")
        b = p.shape[0]
        if b == 0:
            return {"hit_at_one": math.nan, "perr": math.nan, "loss": math.nan}
        hits = _hits(p, y, self.ties)
        perr = _perr_rows(p, y, self.ties)
        self._sum_hit += float(hits.sum())
        self._sum_perr += float(perr.sum())
        batch_loss = math.nan
        if loss is not None:
            arr = np.asarray(_as_array(loss, "loss"), dtype=np.float64)
            batch_loss = float(arr.mean())
            self._sum_loss += float(arr.sum()) if arr.size == b else batch_loss * b
            self._loss_examples += b
        rows, cols = _top_k_entries(p, y, self.top_k, self.ties)
        self._entries.append((cols, p[rows, cols], y[rows, cols]))
        self._positives += y.sum(axis=0)
        if self.keep_full:
            # Keep the caller's precision (float32 stays float32; converts exactly later).
            self._full.append((np.array(raw_p).reshape(b, -1), np.array(raw_y).reshape(b, -1)))
        self.num_examples += b
        return {"hit_at_one": float(hits.mean()), "perr": float(perr.mean()), "loss": batch_loss}

    def compute(self, per_class: bool = False) -> dict[str, Any]:
        """Epoch metrics.

        Keys: ``num_examples``; YT8M: ``avg_hit_at_one``, ``avg_perr``, ``avg_loss`` (NaN when
        no loss was given), ``gap``, ``yt8m_map`` (NaN when no class has positives),
        ``yt8m_num_classes`` (classes with positives); AudioSet (``keep_full``): ``map``,
        ``mauc``, ``d_prime``, ``num_classes``, ``num_skipped_classes``. ``per_class=True``
        adds arrays ``yt8m_aps`` (C,), ``num_positives`` (C,) (label sums: positives for
        0/1 labels), ``ap`` (C,), ``auc`` (C,).

        Raises ValueError when nothing was accumulated (as the original).
        """
        if self.num_examples <= 0:
            raise ValueError("no examples accumulated")
        n = self.num_examples
        cols = np.concatenate([e[0] for e in self._entries])
        s = np.concatenate([e[1] for e in self._entries])
        y = np.concatenate([e[2] for e in self._entries])
        aps = _class_aps_from_entries(cols, s, y, self._positives, self.num_classes, self.ties)
        out: dict[str, Any] = {
            "num_examples": n,
            "avg_hit_at_one": self._sum_hit / n,
            "avg_perr": self._sum_perr / n,
            "avg_loss": self._sum_loss / self._loss_examples if self._loss_examples else math.nan,
            "gap": _gap_from_entries(s, y, float(self._positives.sum()), self.ties),
            "yt8m_map": _mean_ap(aps, self._positives, True),
            "yt8m_num_classes": int((self._positives > 0).sum()),
        }
        if per_class:
            out["yt8m_aps"] = aps
            out["num_positives"] = self._positives.copy()
        if self.keep_full:
            p = np.concatenate([f[0] for f in self._full]).astype(np.float64)
            lab = np.concatenate([f[1] for f in self._full]).astype(np.float64)
            audio = _audioset_from(p, lab)
            ap_arr, auc_arr = audio.pop("ap"), audio.pop("auc")
            out.update(audio)
            if per_class:
                out["ap"], out["auc"] = ap_arr, auc_arr
        return out
