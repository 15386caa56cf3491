"""Fréchet distance between Gaussians fitted to embeddings (FAD / FID).

    FD = ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)

Three entry points, all float64:

* :func:`frechet_terms` / :func:`frechet_distance` - from means and covariances. The trace of
  the square root is taken by a symmetric route: ``S1 = F F^T`` (Cholesky, or ``eigh`` when S1
  is singular), then the eigenvalues of the symmetric PSD ``F^T S2 F``, with eigenvalues below
  the float64 noise floor truncated (see :mod:`audiorep.metrics._psd`). No ``sqrtm`` and no
  eigenvectors of the non-symmetric product ``S1 S2``.
* :func:`frechet_terms_from_embeddings` - from the two embedding sets. Economic QR of each
  centred set, ``X - mu = Q R``, then ``tr sqrt(S1 S2) = ||R1 R2^T||_* / sqrt((n1-1)(n2-1))``
  (nuclear norm). No covariance is formed, so it is exact up to ordinary rounding even for
  rank-deficient sets (n <= d); it costs a QR per set (about 2x the covariance).
* :func:`frechet_terms_to_embeddings` - background statistics against one set of embeddings
  (per-clip FAD): ``||F^T (X - mu)^T||_* / sqrt(n - 1)``, also exact for few frames.

Negative results: FD >= 0 in exact arithmetic. A negative value within round-off
(``|FD| <= 1e-10 * (tr S1 + tr S2 + ||mu1 - mu2||^2)``) is reported as 0 with
``clamped=True`` and a note; anything more negative raises ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from audiorep.metrics._array import ArrayLike, as_embeddings, as_mean_cov
from audiorep.metrics._psd import (
    PsdFactor,
    cholesky_factor,
    eigh_factor,
    lowrank_factor,
    psd_factor,
    qr_r,
    svd_nuclear,
    trace_sqrt_from_factor,
)
from audiorep.metrics._threads import SMALL_PRODUCT_BELOW, lapack_threads
from audiorep.metrics.stats import GaussianStats

# Relative size of a negative FD that still counts as round-off (see module docstring).
NEGATIVE_RTOL = 1e-10


@dataclass(frozen=True)
class FrechetTerms:
    """The Fréchet distance and its terms (all float64 values as Python floats).

    ``value = mean_term + trace1 + trace2 - 2 * trace_sqrt_product`` (clamped at 0 when the
    result is negative only by round-off; ``clamped`` then says so).
    """

    value: float
    mean_term: float  # ||mu1 - mu2||^2
    trace1: float  # tr S1
    trace2: float  # tr S2
    trace_sqrt_product: float  # tr sqrt(S1 S2)
    method: str  # "cholesky" | "eigh" | "qr-svd" | "factor-svd"
    raw_value: float = 0.0  # value before clamping
    clamped: bool = False
    truncated: int = 0  # eigen-directions dropped as float64 noise
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __float__(self) -> float:
        return self.value

    def as_dict(self) -> dict[str, object]:
        return {
            "fd": self.value,
            "mean_term": self.mean_term,
            "trace1": self.trace1,
            "trace2": self.trace2,
            "trace_sqrt_product": self.trace_sqrt_product,
            "method": self.method,
            "raw_value": self.raw_value,
            "clamped": self.clamped,
            "truncated": self.truncated,
            "notes": list(self.notes),
        }


def _assemble(
    mean_term: float,
    tr1: float,
    tr2: float,
    ts: float,
    method: str,
    truncated: int = 0,
    notes: Sequence[str] = (),
) -> FrechetTerms:
    raw = mean_term + (tr1 + tr2) - 2.0 * ts
    notes = list(notes)
    clamped = False
    value = raw
    if raw < 0:
        scale = tr1 + tr2 + mean_term
        if -raw <= NEGATIVE_RTOL * scale or scale == 0.0:
            value = 0.0
            clamped = True
            notes.append(f"negative round-off {raw:.3g} reported as 0")
        else:
            raise ValueError(
                f"Fréchet distance is negative ({raw:.6g}; traces {tr1:.6g}, {tr2:.6g}): "
                "the inputs are not valid covariances"
            )
    return FrechetTerms(
        value=value,
        mean_term=mean_term,
        trace1=tr1,
        trace2=tr2,
        trace_sqrt_product=ts,
        method=method,
        raw_value=raw,
        clamped=clamped,
        truncated=truncated,
        notes=tuple(notes),
    )


def _mean_term(mu1: np.ndarray, mu2: np.ndarray) -> float:
    diff = mu1 - mu2
    return float(diff @ diff)


def frechet_terms(
    mu1: ArrayLike,
    sigma1: ArrayLike,
    mu2: ArrayLike,
    sigma2: ArrayLike,
    *,
    rank1: int | None = None,
    rank2: int | None = None,
) -> FrechetTerms:
    """Fréchet distance of ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` with all its terms.

    Args:
        mu1, mu2: means ``(d,)``.
        sigma1, sigma2: covariances ``(d, d)`` (symmetric PSD).
        rank1, rank2: optional upper bounds on the covariance ranks (``n - 1`` for a sample
            covariance of ``n`` embeddings); they sharpen the noise truncation.
    """
    m1, s1 = as_mean_cov(mu1, sigma1, "1")
    m2, s2 = as_mean_cov(mu2, sigma2, "2")
    if m1.shape != m2.shape:
        raise ValueError(f"dimension mismatch: {m1.shape[0]} vs {m2.shape[0]}")
    tr1 = float(np.trace(s1))
    tr2 = float(np.trace(s2))
    # Dimensions where either covariance is exactly zero (dead ReLU units) contribute nothing to
    # tr sqrt(S1 S2): deflate them exactly before any factorisation.
    d1, d2 = np.diagonal(s1), np.diagonal(s2)
    for diag, name in ((d1, "sigma1"), (d2, "sigma2")):
        if diag.size and diag.min() < 0 and diag.min() < -1e-4 * max(float(diag.max()), 0.0):
            raise ValueError(f"{name} has a negative variance: not a covariance")
    keep = (d1 > 0) & (d2 > 0)
    support = None if keep.all() else np.flatnonzero(keep)
    mean_term = _mean_term(m1, m2)
    # tr sqrt(S1 S2) = tr sqrt(S2 S1): factor whichever covariance is definite (Cholesky is
    # cheap and its factor has no noise columns); else the one with the smaller known rank by a
    # low-rank sketch; else eigen-factor (eigh) the one with the smaller rank bound.
    sides = [(s1, s2, rank1, rank2, "sigma1"), (s2, s1, rank2, rank1, "sigma2")]
    for s_f, s_o, r_f, r_o, name in sides:
        chol = cholesky_factor(s_f, max_rank=r_f, name=name, support=support)
        if chol is not None:
            ts, trunc, notes = trace_sqrt_from_factor(chol, s_o, max_rank2=r_o)
            return _assemble(mean_term, tr1, tr2, ts, "cholesky", trunc, notes)
    big = s1.shape[0] + 1
    sides.sort(key=lambda side: big if side[2] is None else side[2])
    s_f, s_o, r_f, r_o, name = sides[0]
    f1 = None
    if r_f is not None:
        f1 = lowrank_factor(s_f, max_rank=r_f, name=name, support=support)
    if f1 is None:
        f1 = eigh_factor(s_f, max_rank=r_f, name=name, support=support)
    ts, trunc, notes = trace_sqrt_from_factor(f1, s_o, max_rank2=r_o)
    return _assemble(mean_term, tr1, tr2, ts, f1.route, trunc + f1.dropped, f1.notes + notes)


def frechet_distance(
    mu1: ArrayLike,
    sigma1: ArrayLike,
    mu2: ArrayLike,
    sigma2: ArrayLike,
    *,
    rank1: int | None = None,
    rank2: int | None = None,
) -> float:
    """Fréchet distance (a float); see :func:`frechet_terms` for the terms and diagnostics."""
    return frechet_terms(mu1, sigma1, mu2, sigma2, rank1=rank1, rank2=rank2).value


def frechet_terms_from_stats(stats1: GaussianStats, stats2: GaussianStats) -> FrechetTerms:
    """Fréchet terms of two :class:`GaussianStats` (their counts bound the ranks)."""
    return frechet_terms(
        stats1.mean,
        stats1.cov,
        stats2.mean,
        stats2.cov,
        rank1=stats1.max_rank,
        rank2=stats2.max_rank,
    )


def _centred(x: ArrayLike, name: str, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    arr = as_embeddings(x, name, dim)
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 embeddings for a covariance")
    mu = arr.mean(axis=0)
    return mu, arr - mu


def frechet_terms_from_embeddings(x1: ArrayLike, x2: ArrayLike) -> FrechetTerms:
    """Fréchet terms from two embedding sets ``(n1, d)``, ``(n2, d)`` (data-based, exact).

    ``tr sqrt(S1 S2) = ||R1 R2^T||_* / sqrt((n1 - 1)(n2 - 1))`` with ``X_i - mu_i = Q_i R_i``.
    Exact for rank-deficient sets; cost ~2 n d^2 per set for the QR.
    """
    mu1, a1 = _centred(x1, "x1")
    mu2, a2 = _centred(x2, "x2", a1.shape[1])
    n1, n2 = a1.shape[0], a2.shape[0]
    tr1 = float(np.einsum("ij,ij->", a1, a1)) / (n1 - 1)
    tr2 = float(np.einsum("ij,ij->", a2, a2)) / (n2 - 1)
    r1 = qr_r(torch.from_numpy(a1))
    r2 = qr_r(torch.from_numpy(a2))
    with lapack_threads(a1.shape[1], SMALL_PRODUCT_BELOW):
        prod = r1 @ r2.T
    ts = svd_nuclear(prod) / math.sqrt((n1 - 1) * (n2 - 1))
    return _assemble(_mean_term(mu1, mu2), tr1, tr2, ts, "qr-svd")


def frechet_distance_from_embeddings(x1: ArrayLike, x2: ArrayLike) -> float:
    """Fréchet distance from two embedding sets (data-based reference method)."""
    return frechet_terms_from_embeddings(x1, x2).value


class PreparedReference:
    """Background statistics factored once, to score many sets or clips against them.

    Used by FAD-inf, per-clip FAD and :class:`~audiorep.metrics.objects.FrechetDistance` with a
    fixed reference. The factor is ``S_bg = F F^T`` (see :func:`frechet_terms`).
    """

    def __init__(self, mu: ArrayLike, sigma: ArrayLike, *, max_rank: int | None = None) -> None:
        self.mu, self.sigma = as_mean_cov(mu, sigma, "_ref")
        self.trace = float(np.trace(self.sigma))
        self.factor: PsdFactor = psd_factor(self.sigma, max_rank=max_rank, name="sigma_ref")

    @classmethod
    def from_stats(cls, stats: GaussianStats) -> PreparedReference:
        return cls(stats.mean, stats.cov, max_rank=stats.max_rank)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def terms_stats(
        self, mu: ArrayLike, sigma: ArrayLike, *, max_rank: int | None = None
    ) -> FrechetTerms:
        """FD(reference, N(mu, sigma)); reference is the first argument (``trace1``)."""
        m2, s2 = as_mean_cov(mu, sigma, "2")
        if m2.shape != self.mu.shape:
            raise ValueError(f"dimension mismatch: {m2.shape[0]} vs {self.dim}")
        ts, trunc, notes = trace_sqrt_from_factor(self.factor, s2, max_rank2=max_rank)
        return _assemble(
            _mean_term(self.mu, m2),
            self.trace,
            float(np.trace(s2)),
            ts,
            self.factor.route,
            trunc + self.factor.dropped,
            self.factor.notes + notes,
        )

    def terms_embeddings(self, x: ArrayLike) -> FrechetTerms:
        """FD(reference, Gaussian of the embeddings ``x`` (n, d)), exact for few frames.

        ``tr sqrt(S_bg S_x) = ||(X - mu_x) F||_* / sqrt(n - 1)``; no covariance of ``x``.
        """
        mu, a = _centred(x, "x", self.dim)
        n = a.shape[0]
        f = self.factor
        if f.support is not None:
            a_sub = np.ascontiguousarray(a[:, f.support])
        else:
            a_sub = a
        with lapack_threads(a_sub.shape[1], SMALL_PRODUCT_BELOW):
            b = torch.from_numpy(a_sub) @ f.factor  # (n, r)
        ts = svd_nuclear(qr_r(b)) / math.sqrt(n - 1)
        tr2 = float(np.einsum("ij,ij->", a, a)) / (n - 1)
        return _assemble(
            _mean_term(self.mu, mu), self.trace, tr2, ts, "factor-svd", f.dropped, f.notes
        )


def frechet_terms_to_embeddings(
    mu: ArrayLike, sigma: ArrayLike, x: ArrayLike, *, max_rank: int | None = None
) -> FrechetTerms:
    """Fréchet terms of background statistics ``(mu (d,), sigma (d, d))`` vs embeddings ``x``.

    The background is the first Gaussian (``trace1``); ``max_rank`` optionally bounds the rank
    of ``sigma`` (``n - 1``). Exact for clips with few frames.
    """
    return PreparedReference(mu, sigma, max_rank=max_rank).terms_embeddings(x)
