"""Streaming, mergeable Gaussian statistics (mean and covariance) of embeddings, in float64.

The state is the count ``n``, the mean ``mu`` (d,) and the *centred* scatter matrix
``M2 = sum_i (x_i - mu)(x_i - mu)^T`` (d, d). Each batch is centred on its own mean before its
scatter is formed (one symmetric rank-k BLAS update, ``xc.T @ xc``), and batches, workers or
processes are combined with the pairwise update of Chan, Golub & LeVeque::

    n = na + nb,  delta = mu_b - mu_a,  mu = mu_a + delta * nb / n
    M2 = M2_a + M2_b + delta delta^T * na * nb / n

The raw-moment form ``sum x x^T - n mu mu^T`` (used by Google's Beam pipeline) is avoided on
purpose: it cancels catastrophically when ``|mu|`` is large next to the spread.

The covariance uses ``ddof = 1`` (``np.cov`` convention).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiorep.metrics._array import ArrayLike, as_float64
from audiorep.metrics._threads import SMALL_PRODUCT_BELOW, lapack_threads

STATS_FORMAT = "audiorep-gaussian-stats-v1"

# Rows per BLAS call: bounds the float64 working block to 512 MiB (32768 rows at d = 2048).
# Fewer, larger syrk calls are faster; the cap keeps memory bounded for huge batches.
_BLOCK_ELEMENTS = 1 << 26


def _batch_moments_torch(x: torch.Tensor) -> tuple[int, np.ndarray, np.ndarray]:
    """Moments of a tensor that lives on an accelerator: computed there in float64."""
    xd = x.detach().to(torch.float64)
    if xd.ndim == 1:
        xd = xd[None, :]
    mu = xd.mean(dim=0)
    if not bool(torch.isfinite(mu).all()):
        raise ValueError("x contains NaN or infinite values")
    xc = xd - mu
    m2 = xc.T @ xc
    return xd.shape[0], mu.cpu().numpy(), m2.cpu().numpy()


def _as_batch(x: ArrayLike, dim: int | None) -> np.ndarray:
    """A CPU ``(n, d)`` float32 or float64 array (float32 stays float32: no full copy)."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
        if t.dtype not in (torch.float32, torch.float64):
            t = t.to(torch.float64)
        arr = t.numpy()
    else:
        arr = np.asarray(x)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"x must have shape (n, d), got {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"x has dimension {arr.shape[1]}, expected {dim}")
    return arr


def _batch_moments(x: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(n, mean, centred scatter)`` of one ``(n, d)`` batch, float64 (two-pass).

    The batch mean is taken first (float64 accumulation); the rows are then centred on it in
    float64 blocks and their products accumulated. ``x`` is not modified.
    """
    n, d = x.shape
    mu = x.mean(axis=0, dtype=np.float64)
    if not np.all(np.isfinite(mu)):  # any NaN/inf in the batch reaches its column mean
        raise ValueError("x contains NaN or infinite values")
    m2 = np.zeros((d, d))
    step = max(1, _BLOCK_ELEMENTS // max(1, d))
    buf = np.empty((min(step, n), d))  # one float64 block, reused
    for start in range(0, n, step):
        block = x[start : start + step]
        xc = buf[: block.shape[0]]
        np.copyto(xc, block)
        xc -= mu
        if d >= SMALL_PRODUCT_BELOW:
            # numpy dispatches ``a.T @ a`` to BLAS syrk: half the flops of a general product,
            # and the result is exactly symmetric.
            m2 += xc.T @ xc
        else:
            # Small d: one thread is fastest and immune to busy-machine thread stalls.
            t = torch.from_numpy(xc)
            with lapack_threads(0):
                m2 += (t.T @ t).numpy()
    if d < SMALL_PRODUCT_BELOW:
        m2 = 0.5 * (m2 + m2.T)
    if not np.all(np.isfinite(np.diagonal(m2))):
        raise ValueError("x overflows float64 in the covariance")
    return n, mu, m2


def _chan_merge(
    na: int, mua: np.ndarray, m2a: np.ndarray, nb: int, mub: np.ndarray, m2b: np.ndarray
) -> tuple[int, np.ndarray, np.ndarray]:
    """Pairwise combination of two (n, mean, M2) triples (Chan et al. 1979)."""
    if na == 0:
        return nb, mub.copy(), m2b.copy()
    if nb == 0:
        return na, mua.copy(), m2a.copy()
    n = na + nb
    delta = mub - mua
    mu = mua + delta * (nb / n)
    m2 = m2a + m2b
    # outer(u, u) with u = delta * sqrt(na nb / n) is bit-symmetric (outer(delta, c delta) is not)
    u = delta * np.sqrt(na * nb / n)
    m2 += np.outer(u, u)
    return n, mu, m2


class GaussianStats:
    """Mean and covariance of a set of embeddings, accumulated in float64 and mergeable.

    Args:
        dim: embedding size ``d``; inferred from the first :meth:`update` when omitted.
        meta: JSON-serialisable settings stored with the statistics (model, hop, ...).

    Typical use::

        stats = GaussianStats(meta={"model": "vggish"})
        for batch in loader:           # (batch, d) float32/float64 arrays or tensors
            stats.update(batch)
        stats.save("background.npz")
        worker_stats.merge(other_worker_stats)   # exact combination of two partial sets

    Statistics loaded from other tools without a sample count (fadtk) have ``n = None``: they
    can be compared but not merged.
    """

    def __init__(self, dim: int | None = None, *, meta: Mapping[str, Any] | None = None) -> None:
        self.meta: dict[str, Any] = dict(meta or {})
        self._n: int | None = 0
        self._dim = dim
        self._mean = np.zeros(dim) if dim is not None else None
        self._m2 = np.zeros((dim, dim)) if dim is not None else None
        self._cov_only: np.ndarray | None = None  # external stats without a count

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_embeddings(
        cls, x: ArrayLike, *, meta: Mapping[str, Any] | None = None
    ) -> GaussianStats:
        """Statistics of one ``(n, d)`` set of embeddings."""
        out = cls(meta=meta)
        out.update(x)
        return out

    @classmethod
    def from_moments(
        cls,
        mean: ArrayLike,
        cov: ArrayLike,
        n: int | None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> GaussianStats:
        """Statistics from a mean ``(d,)``, a ddof-1 covariance ``(d, d)`` and a count.

        ``n=None`` marks statistics whose sample count is unknown (they cannot be merged).
        """
        mu = as_float64(mean, "mean").reshape(-1)
        c = as_float64(cov, "cov")
        d = mu.shape[0]
        if c.shape != (d, d):
            raise ValueError(f"cov must have shape ({d}, {d}), got {c.shape}")
        out = cls(d, meta=meta)
        out._mean = mu.copy()
        if n is None:
            out._n = None
            out._m2 = None
            out._cov_only = c.copy()
        else:
            if n < 1:
                raise ValueError("n must be >= 1")
            out._n = int(n)
            out._m2 = c * (n - 1) if n > 1 else np.zeros((d, d))
        return out

    @classmethod
    def from_scatter(
        cls,
        n: int,
        mean: ArrayLike,
        scatter: ArrayLike,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> GaussianStats:
        """Statistics from the raw state: count, mean ``(d,)`` and centred scatter ``(d, d)``."""
        mu = as_float64(mean, "mean").reshape(-1)
        m2 = as_float64(scatter, "scatter")
        d = mu.shape[0]
        if m2.shape != (d, d):
            raise ValueError(f"scatter must have shape ({d}, {d}), got {m2.shape}")
        if n < 0:
            raise ValueError("n must be >= 0")
        out = cls(d, meta=meta)
        out._n = int(n)
        out._mean = mu.copy()
        out._m2 = m2.copy()
        return out

    # ------------------------------------------------------------------ accumulation
    def update(self, x: ArrayLike) -> GaussianStats:
        """Add a batch of embeddings ``(n, d)`` (or one ``(d,)`` vector); returns ``self``.

        Tensors on an accelerator are reduced there (float64) and only ``d x d`` comes back.
        """
        if self._n is None:
            raise ValueError("statistics with an unknown sample count cannot be updated")
        if isinstance(x, torch.Tensor) and x.device.type != "cpu":
            if x.numel() == 0:
                return self
            self._check_dim(x.shape[-1])
            self._absorb(*_batch_moments_torch(x))
            return self
        arr = _as_batch(x, self._dim)
        if arr.shape[0] == 0:
            return self
        self._check_dim(arr.shape[1])
        self._absorb(*_batch_moments(arr))
        return self

    def merge(self, other: GaussianStats) -> GaussianStats:
        """Combine ``other`` into ``self`` (exact, order-independent up to rounding)."""
        if self._n is None or other._n is None:
            raise ValueError("statistics with an unknown sample count cannot be merged")
        if other._n == 0:
            return self
        self._check_dim(other.dim)
        self._absorb(other._n, other._mean, other._m2)
        return self

    def merged(self, other: GaussianStats) -> GaussianStats:
        """A new object holding ``self`` combined with ``other``."""
        return self.copy().merge(other)

    def copy(self) -> GaussianStats:
        out = GaussianStats(self._dim, meta=self.meta)
        out._n = self._n
        out._mean = None if self._mean is None else self._mean.copy()
        out._m2 = None if self._m2 is None else self._m2.copy()
        out._cov_only = None if self._cov_only is None else self._cov_only.copy()
        return out

    def _check_dim(self, d: int | None) -> None:
        if d is None:
            return
        if self._dim is None:
            self._dim = int(d)
            self._mean = np.zeros(d)
            self._m2 = np.zeros((d, d))
        elif d != self._dim:
            raise ValueError(f"dimension mismatch: {d} vs {self._dim}")

    def _absorb(self, nb: int, mub: np.ndarray, m2b: np.ndarray) -> None:
        assert self._mean is not None and self._m2 is not None and self._n is not None
        self._n, self._mean, self._m2 = _chan_merge(self._n, self._mean, self._m2, nb, mub, m2b)

    # ------------------------------------------------------------------ results
    @property
    def n(self) -> int | None:
        """Number of embeddings seen (``None`` if loaded without a count)."""
        return self._n

    @property
    def dim(self) -> int | None:
        return self._dim

    @property
    def mean(self) -> np.ndarray:
        """Mean ``(d,)``, float64."""
        if self._mean is None or self._n == 0:
            raise ValueError("no data")
        return self._mean.copy()

    @property
    def scatter(self) -> np.ndarray:
        """Centred scatter ``sum (x - mu)(x - mu)^T`` ``(d, d)``."""
        if self._m2 is None:
            if self._cov_only is None:
                raise ValueError("no data")
            raise ValueError("scatter unknown: statistics were loaded without a sample count")
        return self._m2.copy()

    @property
    def cov(self) -> np.ndarray:
        """Covariance ``(d, d)`` with ddof = 1."""
        if self._cov_only is not None:
            return self._cov_only.copy()
        if self._n is None or self._n < 2 or self._m2 is None:
            raise ValueError("the covariance needs at least 2 embeddings")
        return self._m2 / (self._n - 1)

    @property
    def max_rank(self) -> int | None:
        """Upper bound on the covariance rank, ``min(d, n - 1)``, when ``n`` is known."""
        if self._n is None or self._dim is None:
            return None
        return max(0, min(self._dim, self._n - 1))

    def __repr__(self) -> str:
        return f"GaussianStats(n={self._n}, dim={self._dim}, meta={self.meta!r})"

    # ------------------------------------------------------------------ state / IO
    def state_dict(self) -> dict[str, Any]:
        """Plain picklable state (used for process synchronisation)."""
        return {
            "n": self._n,
            "dim": self._dim,
            "mean": self._mean,
            "m2": self._m2,
            "cov_only": self._cov_only,
            "meta": self.meta,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> GaussianStats:
        out = cls(state["dim"], meta=state.get("meta"))
        out._n = state["n"]
        out._mean = None if state["mean"] is None else np.array(state["mean"], dtype=np.float64)
        out._m2 = None if state["m2"] is None else np.array(state["m2"], dtype=np.float64)
        cov_only = state.get("cov_only")
        out._cov_only = None if cov_only is None else np.array(cov_only, dtype=np.float64)
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` with ``mu`` (d,), ``sigma`` (d, d, ddof 1), ``n`` and ``meta`` (JSON).

        ``n`` is stored as -1 when unknown. ``sigma`` is all zeros when ``n < 2``.
        """
        if self._mean is None:
            raise ValueError("no data")
        path = Path(path)
        if self._cov_only is not None:
            sigma = self._cov_only
        elif self._n is not None and self._n >= 2:
            sigma = self.cov
        else:
            sigma = np.zeros((self._dim, self._dim))
        with open(path, "wb") as fh:
            np.savez(
                fh,
                mu=self._mean,
                sigma=sigma,
                n=np.int64(-1 if self._n is None else self._n),
                meta=np.array(json.dumps(self.meta, sort_keys=True)),
                format=np.array(STATS_FORMAT),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> GaussianStats:
        """Read a file written by :meth:`save` (other formats: :mod:`audiorep.metrics.stats_io`)."""
        with np.load(Path(path), allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise ValueError(f"{path}: not an audiorep statistics file (no mu/sigma)")
            n = int(data["n"]) if "n" in data else -1
            meta = json.loads(str(data["meta"])) if "meta" in data else {}
            return cls.from_moments(data["mu"], data["sigma"], None if n < 0 else n, meta=meta)
