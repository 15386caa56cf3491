"""Base class of the stateful metric objects: update / compute / reset / merge / sync.

The protocol follows torchmetrics: ``update`` accumulates a batch, ``compute`` gives the value
of everything seen so far, ``reset`` clears the state. In addition:

* ``merge(other)`` folds the state of another instance (another worker or process) into this
  one. Order matters only where the metric samples rows (KID, Inception Score shuffle):
  ``a.merge(b)`` puts ``a``'s rows first.
* ``sync(group=None)`` replaces the local state by the state of *all* ranks when
  ``torch.distributed`` is initialised: the states are exchanged with ``all_gather`` (tensors for
  :class:`FrechetDistance`, pickled objects otherwise) and merged in rank order, so every rank
  computes the same global value. Without an initialised process group it does nothing.
  Call it once, after the last ``update`` and before ``compute``.
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import torch
import torch.distributed as dist

M = TypeVar("M", bound="Metric")


def distributed_world(group: Any = None) -> int:
    """World size of ``group`` when torch.distributed is initialised, else 1."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def collective_device(group: Any = None) -> torch.device:
    """Device the backend of ``group`` exchanges tensors on (CUDA for NCCL)."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class Metric:
    """Common state handling; subclasses implement ``update``, ``compute`` and the state hooks."""

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Picklable state."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def merge(self: M, other: M) -> M:  # pragma: no cover - abstract
        raise NotImplementedError

    def empty_like(self: M) -> M:
        """A fresh instance with the same settings and no data."""
        out = copy.copy(self)
        out.reset()
        return out

    def sync(self: M, group: Any = None) -> M:
        """Merge the states of all ranks (rank order) into every rank; no-op if not distributed."""
        if distributed_world(group) == 1:
            return self
        states: list[Any] = [None] * distributed_world(group)
        dist.all_gather_object(states, self.state_dict(), group=group)
        merged = self.empty_like()
        for st in states:
            part = self.empty_like()
            part.load_state_dict(st)
            merged.merge(part)
        self.load_state_dict(merged.state_dict())
        return self
