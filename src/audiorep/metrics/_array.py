"""Input conversion shared by the metric modules: anything array-like -> float64 numpy."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

ArrayLike = Any  # numpy array, torch tensor (any device) or nested sequence


def as_float64(x: ArrayLike, name: str = "x") -> np.ndarray:
    """``x`` as a float64 numpy array on the CPU (a copy only when needed)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to(device="cpu", dtype=torch.float64).numpy()
    arr = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def as_embeddings(x: ArrayLike, name: str = "x", dim: int | None = None) -> np.ndarray:
    """``x`` as a float64 ``(n, d)`` matrix; a single ``(d,)`` vector becomes ``(1, d)``."""
    arr = as_float64(x, name)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has dimension {arr.shape[1]}, expected {dim}")
    return arr


def _max_asymmetry(s: np.ndarray, block: int = 256) -> float:
    """``max |S - S^T|`` compared tile by tile (a plain ``s.T`` pass is cache-hostile)."""
    d = s.shape[0]
    worst = 0.0
    for i in range(0, d, block):
        for j in range(i, d, block):
            a = s[i : i + block, j : j + block]
            b = s[j : j + block, i : i + block].T
            if not np.array_equal(a, b):
                worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def as_mean_cov(mu: ArrayLike, sigma: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate a Gaussian ``(mu (d,), sigma (d, d))``; returns float64 copies, sigma symmetric."""
    m = as_float64(mu, f"mu{name}").reshape(-1)
    s = as_float64(sigma, f"sigma{name}")
    if s.ndim != 2 or s.shape != (m.shape[0], m.shape[0]):
        raise ValueError(f"sigma{name} must have shape ({m.shape[0]}, {m.shape[0]}), got {s.shape}")
    asym = _max_asymmetry(s)
    if asym == 0.0:  # the common case (np.cov, GaussianStats)
        return m, s
    scale = float(np.max(np.abs(s)))
    # Statistics written by other tools can be symmetric only up to rounding; anything larger
    # means the caller passed something that is not a covariance.
    if asym > 1e-6 * scale:
        raise ValueError(f"sigma{name} is not symmetric (max |S - S^T| = {asym:.3g})")
    return m, 0.5 * (s + s.T)
