"""Model selection on a validation metric: remember the best, stop when it stops improving."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BestTracker"]


@dataclass
class BestTracker:
    """Tracks a validation metric across evaluations (higher is better with ``mode="max"``).

    ``patience``: evaluations in a row without an improvement of more than ``min_delta`` after
    which :attr:`should_stop` is true (0: never stop early). The state is a plain dict for
    checkpoints (:meth:`to_dict` / :meth:`from_dict`).
    """

    mode: str = "max"
    patience: int = 0
    min_delta: float = 0.0
    best: float = math.nan
    best_step: int = -1
    best_epoch: int = -1
    since_best: int = 0
    evaluations: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError("mode must be 'max' or 'min'")
        if self.patience < 0:
            raise ValueError("patience must be >= 0")

    def update(self, value: float, *, step: int, epoch: int) -> bool:
        """Record one evaluation; True when it is the new best (a NaN never is)."""
        self.evaluations += 1
        better = not math.isnan(value) and (
            math.isnan(self.best)
            or (value > self.best + self.min_delta if self.mode == "max"
                else value < self.best - self.min_delta)
        )  # fmt: skip
        if better:
            self.best, self.best_step, self.best_epoch, self.since_best = value, step, epoch, 0
        else:
            self.since_best += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["best"] = None if math.isnan(self.best) else self.best
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BestTracker:
        data = dict(data)
        data["best"] = math.nan if data.get("best") is None else float(data["best"])
        return cls(**data)
