"""Inception Score from classifier logits, as torch-fidelity / SpecVQGAN compute it.

``IS = exp(E_x KL(p(y|x) || p(y)))`` per split, with ``p(y)`` the mean prediction of the split:

* optional shuffle of the rows with ``numpy.random.RandomState(seed).permutation(N)``
  (torch-fidelity ``samples_shuffle=True``, ``rng_seed=2020``);
* float64 softmax / log-softmax;
* split ``i`` covers rows ``[i * N // splits, (i + 1) * N // splits)`` (``splits = 10``);
* result: mean and ``numpy.std`` (ddof 0) of the per-split scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from audiorep.metrics._array import ArrayLike, as_embeddings


@dataclass(frozen=True)
class ISResult:
    """Inception Score ``mean``, ``std`` over splits and the per-split ``scores``."""

    mean: float
    std: float
    scores: tuple[float, ...]

    def __float__(self) -> float:
        return self.mean


def inception_score(
    logits: ArrayLike, *, splits: int = 10, shuffle: bool = True, seed: int = 2020
) -> ISResult:
    """Inception Score of classifier logits ``(N, C)`` (pre-softmax, e.g. ``logits_unbiased``)."""
    x = as_embeddings(logits, "logits")
    n = x.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"need at least one row per split ({n} rows, {splits} splits)")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(n)]
    t = torch.from_numpy(np.ascontiguousarray(x))
    p = t.softmax(dim=1)
    log_p = t.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        p_chunk, log_chunk = p[lo:hi], log_p[lo:hi]
        q = p_chunk.mean(dim=0, keepdim=True)
        kl = (p_chunk * (log_chunk - q.log())).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return ISResult(float(np.mean(scores)), float(np.std(scores)), tuple(scores))
