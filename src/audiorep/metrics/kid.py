"""Kernel Inception/Audio Distance: unbiased MMD^2 with a polynomial kernel over random subsets.

Defaults and random draws are torch-fidelity's (``kid_features_to_metric``), which SpecVQGAN and
audioldm_eval copy:

* kernel ``k(x, y) = (gamma * x.y + coef0) ** degree``, ``degree = 3``, ``gamma = 1 / d``,
  ``coef0 = 1``;
* ``subsets = 100`` subsets of ``subset_size = 1000`` rows;
* ``rs = numpy.random.RandomState(seed)`` (seed 2020); per subset, first
  ``rs.choice(n1, m, replace=False)`` for set 1 (generated), then the same for set 2
  (reference);
* per subset ``MMD^2 = (sum K_XX off-diag + sum K_YY off-diag) / (m (m - 1)) - 2 sum K_XY / m^2``;
  the result is the mean and ``numpy.std`` (ddof 0) over subsets.

When a set has fewer rows than ``subset_size``: torch-fidelity raises, audioldm_eval and
SpecVQGAN shrink the subset to ``min(subset_size, n1, n2)`` with a warning. Here
``small_sets="raise"`` (default) raises ``ValueError`` and ``small_sets="clamp"`` shrinks (the
result then records the size used).

Computation (float64): when it is cheaper, the kernel matrices are evaluated once in row blocks
and every subset sum is read off with a 0/1 selection matrix (``w^T K w``), instead of
recomputing three ``m x m`` kernels per subset; both give the same sums up to rounding.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from audiorep.metrics._array import ArrayLike, as_embeddings

# Row-block size bound for full-kernel evaluation (elements of one kernel block).
_BLOCK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class KIDResult:
    """KID ``mean`` and ``std`` over subsets, the per-subset ``values`` and the settings used."""

    mean: float
    std: float
    values: np.ndarray
    subset_size: int
    subsets: int

    def __float__(self) -> float:
        return self.mean


def polynomial_kernel(
    x: torch.Tensor, y: torch.Tensor, degree: int, gamma: float, coef0: float
) -> torch.Tensor:
    """``(gamma * x y^T + coef0) ** degree`` for ``x`` (a, d), ``y`` (b, d) -> (a, b)."""
    return (x @ y.T * gamma + coef0) ** degree


def _subset_sums_direct(
    x: torch.Tensor,
    y: torch.Tensor,
    idx1: np.ndarray,
    idx2: np.ndarray,
    degree: int,
    gamma: float,
    coef0: float,
) -> np.ndarray:
    """Per subset: (sum K_XX off-diagonal, sum K_YY off-diagonal, sum K_XY)."""
    out = np.empty((idx1.shape[0], 3))
    for s in range(idx1.shape[0]):
        f1 = x[torch.from_numpy(idx1[s])]
        f2 = y[torch.from_numpy(idx2[s])]
        kxx = polynomial_kernel(f1, f1, degree, gamma, coef0)
        kyy = polynomial_kernel(f2, f2, degree, gamma, coef0)
        kxy = polynomial_kernel(f1, f2, degree, gamma, coef0)
        out[s, 0] = float(kxx.sum() - torch.diagonal(kxx).sum())
        out[s, 1] = float(kyy.sum() - torch.diagonal(kyy).sum())
        out[s, 2] = float(kxy.sum())
    return out


def _selection(idx: np.ndarray, n: int) -> torch.Tensor:
    """0/1 matrix ``(n, subsets)``: column s marks the rows of subset s (no repeats)."""
    w = torch.zeros((n, idx.shape[0]), dtype=torch.float64)
    cols = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    w[torch.from_numpy(idx.reshape(-1)), torch.from_numpy(cols)] = 1.0
    return w


def _blocked_quadratic(
    a: torch.Tensor,
    b: torch.Tensor,
    wa: torch.Tensor,
    wb: torch.Tensor,
    degree: int,
    gamma: float,
    coef0: float,
) -> torch.Tensor:
    """``diag(wa^T K(a, b) wb)`` per subset, evaluating K in row blocks of ``a``."""
    out = torch.zeros(wa.shape[1], dtype=torch.float64)
    step = max(1, _BLOCK_ELEMENTS // max(1, b.shape[0]))
    for start in range(0, a.shape[0], step):
        k = polynomial_kernel(a[start : start + step], b, degree, gamma, coef0)
        out += (wa[start : start + step] * (k @ wb)).sum(dim=0)
    return out


def _subset_sums_full(
    x: torch.Tensor,
    y: torch.Tensor,
    idx1: np.ndarray,
    idx2: np.ndarray,
    degree: int,
    gamma: float,
    coef0: float,
) -> np.ndarray:
    w1 = _selection(idx1, x.shape[0])
    w2 = _selection(idx2, y.shape[0])
    diag_x = (gamma * (x * x).sum(dim=1) + coef0) ** degree
    diag_y = (gamma * (y * y).sum(dim=1) + coef0) ** degree
    sxx = _blocked_quadratic(x, x, w1, w1, degree, gamma, coef0) - diag_x @ w1
    syy = _blocked_quadratic(y, y, w2, w2, degree, gamma, coef0) - diag_y @ w2
    sxy = _blocked_quadratic(x, y, w1, w2, degree, gamma, coef0)
    return torch.stack([sxx, syy, sxy], dim=1).numpy()


def kernel_inception_distance(
    features_1: ArrayLike,
    features_2: ArrayLike,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 2020,
    small_sets: str = "raise",
    method: str = "auto",
) -> KIDResult:
    """KID of ``features_1`` ``(n1, d)`` (generated) vs ``features_2`` ``(n2, d)`` (reference).

    Args:
        subsets, subset_size, degree, gamma, coef0, seed: torch-fidelity's KID settings
            (``gamma=None`` means ``1 / d``).
        small_sets: ``"raise"`` (torch-fidelity) or ``"clamp"`` (audioldm_eval / SpecVQGAN:
            use ``min(subset_size, n1, n2)`` and warn) when a set is smaller than a subset.
        method: ``"auto"``, ``"full"`` (kernel matrices once) or ``"subsets"`` (per subset).
    """
    x_np = as_embeddings(features_1, "features_1")
    y_np = as_embeddings(features_2, "features_2", x_np.shape[1])
    n1, n2, d = x_np.shape[0], y_np.shape[0], x_np.shape[1]
    m = subset_size
    if m > n1 or m > n2:
        if small_sets == "clamp":
            m = min(m, n1, n2)
            warnings.warn(
                f"KID subset size {subset_size} is larger than a feature set "
                f"({n1}, {n2}); using {m} for both",
                stacklevel=2,
            )
        elif small_sets == "raise":
            raise ValueError(
                f"KID subset size {subset_size} is larger than a feature set "
                f"(features_1: {n1}, features_2: {n2}); pass a smaller subset_size or "
                'small_sets="clamp"'
            )
        else:
            raise ValueError(f"small_sets must be 'raise' or 'clamp', not {small_sets!r}")
    if m < 2:
        raise ValueError("KID needs subsets of at least 2 rows")
    g = 1.0 / d if gamma is None else float(gamma)
    rs = np.random.RandomState(seed)
    idx1 = np.empty((subsets, m), dtype=np.int64)
    idx2 = np.empty((subsets, m), dtype=np.int64)
    for s in range(subsets):  # draw order matters: set 1, then set 2, per subset
        idx1[s] = rs.choice(n1, m, replace=False)
        idx2[s] = rs.choice(n2, m, replace=False)
    x = torch.from_numpy(x_np)
    y = torch.from_numpy(y_np)
    if method == "auto":
        # multiply-adds: full kernels (gram + selection products) vs three m x m kernels per subset
        cost_full = (n1 * n1 + n2 * n2 + n1 * n2) * (d + subsets)
        cost_subsets = 3 * subsets * m * m * d
        method = "full" if cost_full < cost_subsets else "subsets"
    if method == "full":
        sums = _subset_sums_full(x, y, idx1, idx2, degree, g, coef0)
    elif method == "subsets":
        sums = _subset_sums_direct(x, y, idx1, idx2, degree, g, coef0)
    else:
        raise ValueError(f"method must be 'auto', 'full' or 'subsets', not {method!r}")
    mmd = (sums[:, 0] + sums[:, 1]) / (m * (m - 1)) - 2.0 * sums[:, 2] / (m * m)
    return KIDResult(float(np.mean(mmd)), float(np.std(mmd)), mmd, m, subsets)
