"""Learning-rate schedules by step: constant, cosine and one-cycle, each with a linear warm-up.

YouTube-8M's staircase decay by examples stays in :func:`audiorep.training.optim.learning_rate_at`.
All functions are pure (the step is the only state), so a resumed run continues the curve.
"""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "scheduled_learning_rate"]

#: Schedule names :func:`scheduled_learning_rate` knows.
SCHEDULES = ("constant", "cosine", "one_cycle")


def scheduled_learning_rate(
    schedule: str,
    step: int,
    total_steps: int,
    peak: float,
    *,
    warmup_steps: int = 0,
    final_fraction: float = 0.0,
    start_fraction: float = 0.04,
) -> float:
    """The learning rate for the update with index ``step`` (0-based) of ``total_steps``.

    * ``constant``: ``peak`` after a linear warm-up from ``peak / warmup_steps``.
    * ``cosine``: linear warm-up to ``peak`` over ``warmup_steps``, then a half cosine down to
      ``final_fraction * peak`` at the last step (SGDR without restarts).
    * ``one_cycle``: starts at ``start_fraction * peak`` (one-cycle's ``1 / div_factor``, 25),
      rises to ``peak`` along a half cosine over ``warmup_steps``, then anneals along a half
      cosine to ``final_fraction * peak`` (Smith and Topin, 2018).

    Steps past ``total_steps`` keep the final value.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose from {SCHEDULES}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    warmup_steps = max(0, min(int(warmup_steps), total_steps))
    floor = final_fraction * peak
    if step < warmup_steps:
        if schedule == "one_cycle":
            start = start_fraction * peak
            return start + (peak - start) * 0.5 * (1.0 - math.cos(math.pi * step / warmup_steps))
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    span = max(total_steps - warmup_steps - 1, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
