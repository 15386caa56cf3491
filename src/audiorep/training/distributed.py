"""One process or a torchrun process group: the few collective calls training loops need.

``torchrun --nproc_per_node N`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``;
:func:`setup_distributed` joins that group (NCCL on CUDA, Gloo on CPU) and picks the device.
With one process every call is a no-op, so a loop is written once for CPU, one GPU and DDP.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch


@dataclasses.dataclass
class Distributed:
    """The process group of a torchrun launch (``WORLD_SIZE > 1``), or one process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # we initialised the process group, so we tear it down

    @property
    def main(self) -> bool:
        return self.rank == 0

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (a list of ``world`` items, rank order) on every rank."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def from_main(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (decisions that depend on a clock must agree)."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.owned and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def setup_distributed(device: str | torch.device | None) -> tuple[Distributed, torch.device]:
    """Join the torchrun group if there is one; the device this process trains on.

    ``device`` None: CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return Distributed(), dev
    owned = False
    if not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        owned = True
    return Distributed(torch.distributed.get_rank(), world, local, owned), dev


__all__ = ["Distributed", "setup_distributed"]
