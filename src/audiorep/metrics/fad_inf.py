"""FAD-inf (extrapolation to infinite sample size) and per-clip FAD, after microsoft/fadtk.

FAD-inf (Gui et al. 2024, fadtk ``score_inf``): FD between the background and bootstrap
samples of the eval embeddings of growing size ``n``, then a least-squares line
``FD(n) = slope / n + intercept``; the intercept is FAD-inf. The procedure and defaults are
fadtk's, with the randomness made explicit and seeded by default:

* ``ns = [int(v) for v in numpy.linspace(min_n, N, steps)]`` (descending when N < min_n, as in
  fadtk), ``steps = 25``, ``min_n = 500``;
* draws: ``rs = numpy.random.RandomState(seed)``, then for each n in order
  ``rs.choice(N, size=n, replace=True)``. This is exactly the stream of
  ``numpy.random.seed(seed)`` followed by ``numpy.random.choice`` (fadtk uses the unseeded
  global generator, so seed it yourself to compare);
* ``slope, intercept = numpy.polyfit(1 / n, FD, 1)``; ``r2 = 1 - SS_res / SS_tot``.

``replace=False`` draws without replacement (then every n must be <= N).

Per-clip FAD (fadtk ``score_individual``): FD between each clip's own frames and the
background, sorted by ``|FD|`` like fadtk's CSV. Clips have few frames, so their covariance is
rank-deficient; the data-based route here (:meth:`PreparedReference.terms_embeddings`) is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

from audiorep.metrics._array import ArrayLike, as_embeddings
from audiorep.metrics.frechet import PreparedReference
from audiorep.metrics.stats import GaussianStats

DEFAULT_SEED = 0

Reference = Union[GaussianStats, PreparedReference, tuple]


@dataclass(frozen=True)
class FadInfResult:
    """FAD-inf: ``value`` (intercept), ``slope``, ``r2`` and the fit ``points`` [(n, FD)]."""

    value: float
    slope: float
    r2: float
    points: tuple[tuple[int, float], ...]
    seed: int | None
    replace: bool

    def __float__(self) -> float:
        return self.value


def prepare_reference(reference: Reference) -> PreparedReference:
    """Accept :class:`GaussianStats`, a :class:`PreparedReference` or ``(mu, sigma)``."""
    if isinstance(reference, PreparedReference):
        return reference
    if isinstance(reference, GaussianStats):
        return PreparedReference.from_stats(reference)
    mu, sigma = reference
    return PreparedReference(mu, sigma)


def fad_inf(
    reference: Reference,
    eval_embeddings: ArrayLike,
    *,
    steps: int = 25,
    min_n: int = 500,
    seed: int | None = DEFAULT_SEED,
    replace: bool = True,
) -> FadInfResult:
    """FAD-inf of eval embeddings ``(N, d)`` against a reference (background) Gaussian.

    Args:
        reference: background statistics (:class:`GaussianStats` or ``(mu, sigma)``).
        eval_embeddings: all eval frames ``(N, d)``, in a fixed order (draws index into it).
        steps, min_n: the n-grid, ``linspace(min_n, N, steps)`` truncated to int.
        seed: seed of ``numpy.random.RandomState``; ``None`` uses fresh OS entropy.
        replace: bootstrap with replacement (fadtk) or subsample without replacement.
    """
    ref = prepare_reference(reference)
    x = as_embeddings(eval_embeddings, "eval_embeddings", ref.dim)
    n_total = x.shape[0]
    if steps < 2:
        raise ValueError("steps must be >= 2 for a line fit")
    ns = [int(v) for v in np.linspace(min_n, n_total, steps)]
    if min(ns) < 2:
        raise ValueError("every n must be >= 2")
    if not replace and max(ns) > n_total:
        raise ValueError(f"without replacement n cannot exceed N = {n_total} (min_n = {min_n})")
    rs = np.random.RandomState(seed)
    points: list[tuple[int, float]] = []
    for n in ns:
        idx = rs.choice(n_total, size=n, replace=replace)
        stats = GaussianStats.from_embeddings(x[idx])
        # A bootstrap sample has at most (#distinct rows - 1) independent directions.
        rank = min(ref.dim, len(np.unique(idx)) - 1)
        points.append((n, ref.terms_stats(stats.mean, stats.cov, max_rank=rank).value))
    ys = np.array([p[1] for p in points])
    xs = 1.0 / np.array(ns, dtype=np.float64)
    slope, intercept = np.polyfit(xs, ys, 1)
    resid = ys - (slope * xs + intercept)
    ss_tot = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 1.0
    return FadInfResult(float(intercept), float(slope), r2, tuple(points), seed, replace)


def per_clip_fd(
    reference: Reference,
    clips: Mapping[str, ArrayLike] | Iterable[tuple[str, ArrayLike]],
    *,
    sort: bool = True,
) -> list[tuple[str, float]]:
    """FD of every clip's frames ``(n_i, d)`` against the reference (fadtk ``--indiv``).

    Returns ``[(name, FD)]``, sorted by ``|FD|`` ascending when ``sort`` (fadtk's CSV order;
    ties keep input order), else in input order. Clips need at least 2 frames.
    """
    ref = prepare_reference(reference)
    items: Sequence[tuple[str, ArrayLike]]
    items = list(clips.items()) if isinstance(clips, Mapping) else list(clips)
    rows = [(name, ref.terms_embeddings(x).value) for name, x in items]
    if sort:
        rows.sort(key=lambda r: abs(r[1]))
    return rows
