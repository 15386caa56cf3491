"""Stateful metric objects (torchmetrics style) for FAD/FID, KID, Inception Score and MKL.

All accumulate float64 state on the CPU; see :mod:`audiorep.metrics.metric` for the protocol
(``update``, ``compute``, ``reset``, ``merge``, ``sync``).

Conventions: ``real=True`` rows are the reference / background set, the others are generated
("fake") rows. :class:`FrechetDistance` keeps only streaming statistics; KID, IS and MKL need
the rows themselves and keep them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from audiorep.metrics._array import ArrayLike, as_embeddings
from audiorep.metrics.frechet import (
    FrechetTerms,
    PreparedReference,
    frechet_terms_from_stats,
)
from audiorep.metrics.inception import ISResult, inception_score
from audiorep.metrics.kid import KIDResult, kernel_inception_distance
from audiorep.metrics.kl import KL_EPS, mean_kl_divergence, specvqgan_shared_key
from audiorep.metrics.metric import Metric, collective_device, distributed_world
from audiorep.metrics.stats import GaussianStats


class FrechetDistance(Metric):
    """Streaming Fréchet distance (FAD with audio embeddings, FID with image features).

    Args:
        reference: fixed background statistics; then every ``update`` is a generated batch and
            only the generated statistics are synchronised.
        dim: embedding size (optional; inferred from the first batch).

    ``compute()`` returns :class:`~audiorep.metrics.frechet.FrechetTerms` with the reference
    (real) set first; ``float(result)`` is the distance.
    """

    def __init__(self, reference: GaussianStats | None = None, *, dim: int | None = None) -> None:
        self.reference = reference
        self.dim = dim if reference is None else reference.dim
        self._prepared: PreparedReference | None = None
        self.reset()

    def reset(self) -> None:
        self.real = GaussianStats(self.dim)
        self.fake = GaussianStats(self.dim)

    def update(self, x: ArrayLike, real: bool = False) -> None:
        """Add embeddings ``(n, d)`` to the real (reference) or generated set."""
        if real and self.reference is not None:
            raise ValueError("this metric has a fixed reference; real batches are not accepted")
        (self.real if real else self.fake).update(x)

    def compute(self) -> FrechetTerms:
        if self.reference is not None:
            if self._prepared is None:
                self._prepared = PreparedReference.from_stats(self.reference)
            return self._prepared.terms_stats(
                self.fake.mean, self.fake.cov, max_rank=self.fake.max_rank
            )
        return frechet_terms_from_stats(self.real, self.fake)

    def merge(self, other: FrechetDistance) -> FrechetDistance:
        self.real.merge(other.real)
        self.fake.merge(other.fake)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"real": self.real.state_dict(), "fake": self.fake.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.real = GaussianStats.from_state_dict(state["real"])
        self.fake = GaussianStats.from_state_dict(state["fake"])

    def sync(self, group: Any = None) -> FrechetDistance:
        """All-gather ``(n, mean, scatter)`` of all ranks (float64 tensors); merge in rank order."""
        world = distributed_world(group)
        if world == 1:
            return self
        dims: list[Any] = [None] * world
        dist.all_gather_object(dims, (self.real.dim, self.fake.dim), group=group)
        device = collective_device(group)
        for attr, k in (("real", 0), ("fake", 1)):
            d = next((dd[k] for dd in dims if dd[k] is not None), None)
            if d is None:
                continue  # no rank has data for this set
            local: GaussianStats = getattr(self, attr)
            packed = torch.zeros(1 + d + d * d, dtype=torch.float64)
            if local.n:
                packed[0] = float(local.n)
                packed[1 : 1 + d] = torch.from_numpy(local.mean)
                packed[1 + d :] = torch.from_numpy(local.scatter).reshape(-1)
            packed = packed.to(device)
            parts = [torch.empty_like(packed) for _ in range(world)]
            dist.all_gather(parts, packed, group=group)
            merged = GaussianStats(d, meta=local.meta)
            for p in parts:
                p = p.cpu().numpy()
                n = int(p[0])
                if n:
                    merged.merge(
                        GaussianStats.from_scatter(n, p[1 : 1 + d], p[1 + d :].reshape(d, d))
                    )
            setattr(self, attr, merged)
        return self


class _RowStore:
    """Rows of one set kept as float64 blocks (concatenated lazily)."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []

    def add(self, x: np.ndarray) -> None:
        if x.shape[0]:
            self.blocks.append(x)

    def rows(self) -> np.ndarray:
        if not self.blocks:
            raise ValueError("no data")
        if len(self.blocks) > 1:
            self.blocks = [np.concatenate(self.blocks, axis=0)]
        return self.blocks[0]

    def __len__(self) -> int:
        return sum(b.shape[0] for b in self.blocks)


class KernelInceptionDistance(Metric):
    """KID, torch-fidelity defaults (:func:`~audiorep.metrics.kid.kernel_inception_distance`).

    Rows are kept in arrival order (merge: own rows first), which fixes the random subsets.
    ``compute()`` returns :class:`~audiorep.metrics.kid.KIDResult` for generated (set 1) vs real.
    """

    def __init__(
        self,
        *,
        subsets: int = 100,
        subset_size: int = 1000,
        degree: int = 3,
        gamma: float | None = None,
        coef0: float = 1.0,
        seed: int = 2020,
        small_sets: str = "raise",
    ) -> None:
        self.settings = dict(
            subsets=subsets,
            subset_size=subset_size,
            degree=degree,
            gamma=gamma,
            coef0=coef0,
            seed=seed,
            small_sets=small_sets,
        )
        self.reset()

    def reset(self) -> None:
        self.real = _RowStore()
        self.fake = _RowStore()

    def update(self, x: ArrayLike, real: bool = False) -> None:
        (self.real if real else self.fake).add(as_embeddings(x, "x"))

    def compute(self) -> KIDResult:
        return kernel_inception_distance(self.fake.rows(), self.real.rows(), **self.settings)

    def merge(self, other: KernelInceptionDistance) -> KernelInceptionDistance:
        self.real.blocks += other.real.blocks
        self.fake.blocks += other.fake.blocks
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"real": list(self.real.blocks), "fake": list(self.fake.blocks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        self.real.blocks = list(state["real"])
        self.fake.blocks = list(state["fake"])


class InceptionScore(Metric):
    """Inception Score of classifier logits (torch-fidelity / SpecVQGAN settings)."""

    def __init__(self, *, splits: int = 10, shuffle: bool = True, seed: int = 2020) -> None:
        self.settings = dict(splits=splits, shuffle=shuffle, seed=seed)
        self.reset()

    def reset(self) -> None:
        self.logits = _RowStore()

    def update(self, logits: ArrayLike) -> None:
        """Add logits ``(n, C)`` of generated samples."""
        self.logits.add(as_embeddings(logits, "logits"))

    def compute(self) -> ISResult:
        return inception_score(self.logits.rows(), **self.settings)

    def merge(self, other: InceptionScore) -> InceptionScore:
        self.logits.blocks += other.logits.blocks
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"logits": list(self.logits.blocks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        self.logits.blocks = list(state["logits"])


class MeanKLDivergence(Metric):
    """Mean KL(real || generated) over generated samples, paired by video key (SpecVQGAN MKL).

    Args:
        dataset: if given (``"vggsound"`` or ``"vas"``), ``update`` takes file paths and turns
            them into keys with :func:`~audiorep.metrics.kl.specvqgan_shared_key`; otherwise the
            keys are used as given.
        classes: VAS class names (for ``dataset="vas"``).
        eps: added to the generated probabilities inside the log.
    """

    def __init__(
        self,
        *,
        dataset: str | None = None,
        classes: Sequence[str] | None = None,
        eps: float = KL_EPS,
    ) -> None:
        self.dataset = dataset
        self.classes = list(classes) if classes is not None else None
        self.eps = eps
        self.reset()

    def reset(self) -> None:
        self.real = _RowStore()
        self.fake = _RowStore()
        self.real_keys: list[str] = []
        self.fake_keys: list[str] = []

    def update(self, logits: ArrayLike, keys: Sequence[str], real: bool = False) -> None:
        """Add logits ``(n, C)`` with one key (or path) per row."""
        x = as_embeddings(logits, "logits")
        if len(keys) != x.shape[0]:
            raise ValueError("one key per row is needed")
        if self.dataset is not None:
            keys = [specvqgan_shared_key(str(k), self.dataset, self.classes) for k in keys]
        (self.real if real else self.fake).add(x)
        (self.real_keys if real else self.fake_keys).extend(str(k) for k in keys)

    def compute(self) -> float:
        return mean_kl_divergence(
            self.real.rows(), self.fake.rows(), self.real_keys, self.fake_keys, eps=self.eps
        )

    def merge(self, other: MeanKLDivergence) -> MeanKLDivergence:
        self.real.blocks += other.real.blocks
        self.fake.blocks += other.fake.blocks
        self.real_keys += other.real_keys
        self.fake_keys += other.fake_keys
        return self

    def state_dict(self) -> dict[str, Any]:
        return {
            "real": list(self.real.blocks),
            "fake": list(self.fake.blocks),
            "real_keys": list(self.real_keys),
            "fake_keys": list(self.fake_keys),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        self.real.blocks = list(state["real"])
        self.fake.blocks = list(state["fake"])
        self.real_keys = list(state["real_keys"])
        self.fake_keys = list(state["fake_keys"])
