"""Optimisation helpers shared by training loops: schedules and per-tensor gradient clipping."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def learning_rate_at(
    examples: int,
    base_learning_rate: float = 0.01,
    decay: float = 0.95,
    decay_examples: int = 4_000_000,
) -> float:
    """Staircase exponential decay: ``base * decay ** floor(examples / decay_examples)``.

    ``examples`` = examples processed BEFORE the step (the original uses ``global_step *
    batch_size``, the same number while every batch is full).
    """
    return base_learning_rate * decay ** (int(examples) // int(decay_examples))


@torch.no_grad()
def clip_gradient_norms(parameters: Iterable[torch.Tensor], max_norm: float) -> list[float]:
    """Clip every gradient tensor to L2 norm ``<= max_norm`` on its own, in place (the
    original's ``clip_gradient_norms`` = ``tf.clip_by_norm`` per variable:
    ``g * max_norm / max(||g||, max_norm)``). Returns the norms before clipping."""
    norms = []
    for p in parameters:
        if p.grad is None:
            continue
        norm = float(torch.linalg.vector_norm(p.grad.detach()))  # float32 as tf.clip_by_norm
        norms.append(norm)
        if norm > max_norm:
            p.grad.mul_(max_norm / norm)
    return norms


__all__ = ["clip_gradient_norms", "learning_rate_at"]
