"""Resume, checkpoint and stop: the parts every step-based training loop shares.

A loop keeps its position in a JSON-able ``trainer`` dict; :func:`restore` and
:func:`checkpoint` move it, the weights, every optimizer and each rank's RNG state through
:mod:`audiorep.training.checkpoint`, so a killed run resumes where it stopped.
:class:`StopRule` ends a run after a number of steps or of seconds (a CPU budget).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiorep.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    read_checkpoint_state,
    save_checkpoint,
)
from audiorep.training.distributed import Distributed
from audiorep.training.rng import rng_state, set_rng_state


def _as_json(config: Mapping[str, Any]) -> Any:
    """``config`` as it reads back from JSON (tuples become lists), for comparisons."""
    return json.loads(json.dumps(dict(config)))


def restore(
    ckpt_dir: Path,
    module: nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    *,
    resume: bool,
    dist: Distributed,
    config: Mapping[str, Any] | None = None,
) -> tuple[int, dict[str, Any] | None, Path | None]:
    """``(step, trainer state, checkpoint)`` of the newest intact checkpoint in ``ckpt_dir``
    (weights, optimizers and this rank's RNG restored), or ``(0, None, None)``.

    ``resume=False`` deletes older checkpoints (they must not be resumed later by mistake).
    ``config``: the run's settings; a checkpoint saved (by :func:`checkpoint`) with other
    settings raises ValueError showing both.
    """
    if not resume and dist.main:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    dist.barrier()
    found = latest_checkpoint(ckpt_dir) if resume else None
    if found is None:
        return 0, None, None
    if config is not None:
        saved = read_checkpoint_state(found).get("run_config")
        if saved != _as_json(config):
            raise ValueError(
                f"{found} was written by a run with other settings; start over (resume=False, "
                f"--restart) or use the same settings.\nsaved: {json.dumps(saved)}"
                f"\nnow:   {json.dumps(_as_json(config))}"
            )
    state = load_checkpoint(found, module, optimizers=optimizers)
    trainer = dict(state["trainer"])
    rngs = trainer.pop("rng")
    set_rng_state(rngs[dist.rank] if dist.rank < len(rngs) else rngs[0])
    return int(state["step"]), trainer, found


def checkpoint(
    ckpt_dir: Path,
    module: nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    *,
    step: int,
    trainer: dict[str, Any],
    dist: Distributed,
    keep: int | None = 3,
    config: Mapping[str, Any] | None = None,
) -> Path | None:
    """Save ``ckpt_dir/ckpt-<step>`` (rank 0 writes; every rank's RNG state is gathered) with
    the run's ``config`` for :func:`restore` to compare."""
    state = {**trainer, "rng": dist.gather(rng_state())}
    extra = {} if config is None else {"run_config": _as_json(config)}
    path = None
    if dist.main:
        path = save_checkpoint(
            ckpt_dir,
            module,
            step=step,
            extra={"trainer": state, **extra},
            optimizers=optimizers,
        )
        prune_checkpoints(ckpt_dir, keep)
    dist.barrier()
    return path


@dataclass
class StopRule:
    """Stop after ``max_steps`` steps in all, ``max_seconds`` of wall time or
    ``max_cpu_seconds`` of this process's CPU time (all its threads) in this call, whichever
    comes first. The time limits are budgets: a stopped run can be resumed for more. A CPU
    budget is the fair one on a shared machine: other processes do not eat into it."""

    max_steps: int | None = None
    max_seconds: float | None = None
    max_cpu_seconds: float | None = None
    started: float = field(default_factory=time.monotonic)
    started_cpu: float = field(default_factory=time.process_time)

    def reached(self, step: int, dist: Distributed | None = None) -> bool:
        if self.max_steps is not None and step >= self.max_steps:
            return True
        if self.max_seconds is None and self.max_cpu_seconds is None:
            return False
        late = self.max_seconds is not None and time.monotonic() - self.started >= self.max_seconds
        if self.max_cpu_seconds is not None:
            late = late or time.process_time() - self.started_cpu >= self.max_cpu_seconds
        if dist is not None:
            late = bool(dist.from_main(late))  # every rank must stop on the same step
        return late


__all__ = ["StopRule", "checkpoint", "restore"]
