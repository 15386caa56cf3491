"""Symmetric linear algebra for tr sqrt(S1 S2): PSD factors, noise floors, truncation.

Why this is not ``sqrtm``: the eigenvalues of ``S1 S2`` are those of the *symmetric* PSD matrix
``F^T S2 F`` for any factor ``S1 = F F^T``. A symmetric eigensolver returns them with absolute
error ~eps * ||S1|| ||S2||; where the exact value is 0 (rank-deficient sets, n <= d, dead
units) that noise turns into ~sqrt(eps) after the square root, i.e. ~1e-8 relative per
eigenvalue. This module therefore

* drops dimensions whose variance is exactly 0 (ReLU dead units) - an exact deflation;
* factors ``S1`` by Cholesky when it is numerically definite; otherwise, when a small rank bound
  ``r = n - 1`` is known, from a seeded Gaussian sketch of its range (O(d^2 r)); otherwise by
  ``eigh``. The last two keep only eigenvalues above the noise floor
  ``c * k * eps * lambda_max`` (and at most ``r``);
* truncates eigenvalues of the product below its own noise floor
  ``c * k * eps * lambda_max(S1) * lambda_max(S2)`` (and beyond the known rank).

Eigenvalues below those floors are not resolved by float64 covariances at all, so dropping them
is the most accurate answer the covariances allow. On the shared golden fixtures this matches
the data-based QR reference to <= 5e-12 relative (peers: up to 3e-7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from audiorep.metrics._threads import SMALL_PRODUCT_BELOW, lapack_threads

EPS = float(np.finfo(np.float64).eps)
# Safety factor on the noise floors. On the fixture cases the noise stays below 0.01 floor
# units, while the eigenvalues that carry the trace sit above 1e5 units.
NOISE_FACTOR = 8.0
# Negative eigenvalues beyond this fraction of lambda_max are not round-off: the input is not a
# covariance. Statistics stored as float32 (google-research) stay well inside it.
NOT_PSD_RTOL = 1e-4


@dataclass
class PsdFactor:
    """``S[support][:, support] = F F^T`` with ``F`` ``(k, r)``, plus diagnostics."""

    factor: torch.Tensor
    support: np.ndarray | None  # kept dimensions (None: all)
    lambda_max: float
    route: str  # "cholesky" | "lowrank" | "eigh" | "empty"
    dropped: int = 0  # eigen-directions removed as noise / beyond the rank bound
    notes: list[str] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return int(self.factor.shape[1])


def lambda_max(s: torch.Tensor, iters: int = 12) -> float:
    """Largest eigenvalue of a PSD matrix by power iteration (a scale for noise floors only)."""
    k = s.shape[0]
    if k == 0:
        return 0.0
    gen = torch.Generator().manual_seed(0)
    v = torch.rand(k, generator=gen, dtype=torch.float64) + 0.5
    v = v / torch.linalg.vector_norm(v)
    lam = 0.0
    with lapack_threads(0):  # matrix-vector products are memory-bound: one thread
        for _ in range(iters):
            w = s @ v
            nrm = float(torch.linalg.vector_norm(w))
            if nrm == 0.0:
                return 0.0
            lam = nrm
            v = w / nrm
    # power iteration converges from below; the max diagonal is also a lower bound
    return max(lam, float(torch.max(torch.diagonal(s))))


def _support(diag: np.ndarray, name: str) -> np.ndarray | None:
    if np.any(diag < 0):
        bad = float(diag.min())
        scale = float(diag.max()) if diag.size else 0.0
        if bad < -NOT_PSD_RTOL * max(scale, 0.0) or scale <= 0:
            raise ValueError(f"{name} has a negative variance ({bad:.3g}): not a covariance")
    keep = diag > 0
    return None if keep.all() else np.flatnonzero(keep)


def _restrict(
    sigma: np.ndarray, support: np.ndarray | None, name: str
) -> tuple[torch.Tensor, np.ndarray | None]:
    if support is None:
        support = _support(np.diagonal(sigma), name)
    s_np = sigma if support is None else sigma[np.ix_(support, support)]
    return torch.from_numpy(np.ascontiguousarray(s_np)), support


def cholesky_factor(
    sigma: np.ndarray,
    *,
    max_rank: int | None = None,
    name: str = "sigma",
    support: np.ndarray | None = None,
) -> PsdFactor | None:
    """Cholesky factor of ``sigma`` (restricted to ``support``), or None if not definite.

    "Definite" means every pivot lies above the float64 noise floor; a pivot at the floor means
    the matrix is singular up to rounding, and the factor would carry noise columns.
    """
    s, support = _restrict(sigma, support, name)
    k = s.shape[0]
    if k == 0 or (max_rank is not None and max_rank < k):
        return None
    with lapack_threads(k, SMALL_PRODUCT_BELOW):
        chol, info = torch.linalg.cholesky_ex(s)
    if int(info) != 0:
        return None
    lam = lambda_max(s)
    floor = NOISE_FACTOR * k * EPS * lam
    if float(torch.min(torch.diagonal(chol))) ** 2 <= floor:
        return None
    return PsdFactor(chol, support, lam, "cholesky")


def eigh_factor(
    sigma: np.ndarray,
    *,
    max_rank: int | None = None,
    name: str = "sigma",
    support: np.ndarray | None = None,
) -> PsdFactor:
    """``F = V sqrt(w)`` over the eigenvalues above the noise floor (at most ``max_rank``)."""
    s, support = _restrict(sigma, support, name)
    k = s.shape[0]
    if k == 0:
        return PsdFactor(torch.zeros((0, 0), dtype=torch.float64), support, 0.0, "empty")
    with lapack_threads(k):
        w, v = torch.linalg.eigh(s)
    lam = float(w[-1])
    if lam <= 0:
        return PsdFactor(torch.zeros((k, 0), dtype=torch.float64), support, 0.0, "eigh", k)
    notes: list[str] = []
    wmin = float(w[0])
    if wmin < -NOT_PSD_RTOL * lam:
        raise ValueError(
            f"{name} is not positive semi-definite (eigenvalue {wmin:.3g}, max {lam:.3g})"
        )
    floor = NOISE_FACTOR * k * EPS * lam
    if wmin < -floor:
        notes.append(
            f"{name}: negative eigenvalues down to {wmin:.3g} ({-wmin / lam:.1e} of the max) "
            "treated as 0; statistics stored in low precision?"
        )
    keep = w > floor
    if max_rank is not None:
        # eigh sorts ascending: keep only the max_rank largest
        keep[: max(0, k - max_rank)] = False
    idx = torch.nonzero(keep).flatten()
    factor = v[:, idx] * torch.sqrt(w[idx])
    return PsdFactor(factor, support, lam, "eigh", k - int(idx.numel()), notes)


# Extra columns of the randomized range finder beyond the rank bound.
OVERSAMPLE = 10


def lowrank_factor(
    sigma: np.ndarray,
    *,
    max_rank: int,
    name: str = "sigma",
    support: np.ndarray | None = None,
) -> PsdFactor | None:
    """Factor of a covariance whose rank is known to be small (``n - 1 << d``), in O(d^2 r).

    A Gaussian sketch ``S Omega`` (``r + 10`` columns, fixed seed) spans the range of ``S``
    exactly when ``rank(S) <= r``; one subspace iteration cleans it, and the eigenvalues of the
    small projected matrix ``Q^T S Q`` replace those of the full ``eigh``. Returns None when the
    sketch misses variance (the rank bound was wrong) so the caller can fall back to ``eigh``.
    """
    s, support = _restrict(sigma, support, name)
    k = s.shape[0]
    p = max_rank + OVERSAMPLE
    if k == 0 or 4 * p > k:
        return None
    gen = torch.Generator().manual_seed(0)
    omega = torch.randn((k, p), generator=gen, dtype=torch.float64)
    with lapack_threads(p):
        q = torch.linalg.qr(s @ omega)[0]
        q = torch.linalg.qr(s @ q)[0]  # one subspace iteration
    with lapack_threads(k, SMALL_PRODUCT_BELOW):
        b = q.T @ (s @ q)
    b = 0.5 * (b + b.T)
    with lapack_threads(p):
        w, v = torch.linalg.eigh(b)
    lam = float(w[-1])
    if lam <= 0:
        return None
    floor = NOISE_FACTOR * k * EPS * lam
    if float(w[0]) < -NOT_PSD_RTOL * lam:
        raise ValueError(f"{name} is not positive semi-definite (eigenvalue {float(w[0]):.3g})")
    keep = w > floor
    keep[: max(0, p - max_rank)] = False
    captured = float(w[keep].sum())
    total = float(torch.trace(s))
    # All variance must be inside the sketch; anything beyond round-off means rank > max_rank.
    if total - captured > NOISE_FACTOR * k * k * EPS * lam:
        return None
    idx = torch.nonzero(keep).flatten()
    factor = q @ (v[:, idx] * torch.sqrt(w[idx]))
    return PsdFactor(factor, support, lam, "lowrank", k - int(idx.numel()))


def psd_factor(
    sigma: np.ndarray,
    *,
    max_rank: int | None = None,
    name: str = "sigma",
    support: np.ndarray | None = None,
) -> PsdFactor:
    """Factor a covariance ``(d, d)`` as ``F F^T`` on its non-zero-variance dimensions.

    Cholesky when numerically definite, else :func:`lowrank_factor` when a small rank bound is
    known, else :func:`eigh_factor`.

    Args:
        sigma: symmetric PSD matrix, float64.
        max_rank: known upper bound on the rank (``n - 1`` for a sample covariance).
        name: for error messages.
        support: restrict to these dimensions (default: those with non-zero variance).
    """
    if support is None:
        support = _support(np.diagonal(sigma), name)
    chol = cholesky_factor(sigma, max_rank=max_rank, name=name, support=support)
    if chol is not None:
        return chol
    if max_rank is not None:
        low = lowrank_factor(sigma, max_rank=max_rank, name=name, support=support)
        if low is not None:
            return low
    return eigh_factor(sigma, max_rank=max_rank, name=name, support=support)


def trace_sqrt_from_factor(
    f1: PsdFactor,
    sigma2: np.ndarray,
    *,
    max_rank2: int | None = None,
    lambda_max2: float | None = None,
) -> tuple[float, int, list[str]]:
    """``tr sqrt(S1 S2)`` given a factor of ``S1``: sum of sqrt eig(F^T S2 F), noise truncated.

    Returns ``(value, number of truncated product eigenvalues, notes)``.
    """
    if f1.rank == 0:
        return 0.0, 0, []
    s2_np = sigma2 if f1.support is None else sigma2[np.ix_(f1.support, f1.support)]
    s2 = torch.from_numpy(np.ascontiguousarray(s2_np))
    f = f1.factor
    with lapack_threads(f.shape[0], SMALL_PRODUCT_BELOW):  # large products: all threads
        m = f.T @ (s2 @ f)
    m = 0.5 * (m + m.T)
    with lapack_threads(f.shape[1]):
        ev = torch.linalg.eigvalsh(m)
    lam2 = lambda_max(s2) if lambda_max2 is None else lambda_max2
    scale = f1.lambda_max * lam2
    floor = NOISE_FACTOR * s2.shape[0] * EPS * scale
    notes: list[str] = []
    evmin = float(ev[0]) if ev.numel() else 0.0
    if evmin < -NOT_PSD_RTOL * scale:
        raise ValueError(
            f"the covariance product has a negative eigenvalue {evmin:.3g}: not PSD inputs"
        )
    if evmin < -floor:
        notes.append(f"covariance product: negative eigenvalues down to {evmin:.3g} treated as 0")
    keep = ev > floor
    cap = f1.rank if max_rank2 is None else min(f1.rank, max_rank2)
    keep[: max(0, ev.numel() - cap)] = False
    truncated = int(ev.numel() - int(keep.sum()))
    value = float(torch.sqrt(ev[keep]).sum()) if bool(keep.any()) else 0.0
    return value, truncated, notes


def svd_nuclear(a: torch.Tensor) -> float:
    """Nuclear norm (sum of singular values) of a float64 matrix."""
    if a.numel() == 0:
        return 0.0
    with lapack_threads(min(a.shape)):
        return float(torch.linalg.svdvals(a).sum())


def qr_r(x: torch.Tensor) -> torch.Tensor:
    """``R`` of the economic QR of ``x`` ``(n, d)``: ``(min(n, d), d)``, ``R^T R = x^T x``."""
    if x.shape[0] <= x.shape[1]:
        # x = Q R with Q (n, n) orthogonal: any product x1 x2^T = Q1 (R1 R2^T) Q2^T has the
        # singular values of R1 R2^T, so x itself can stand in for R.
        return x
    with lapack_threads(x.shape[1], SMALL_PRODUCT_BELOW):
        return torch.linalg.qr(x, mode="r")[1]
