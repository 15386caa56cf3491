"""Shared by the benchmark scripts: a named callable and its measured wall times."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Timer:
    """One timed callable and its wall times (seconds)."""

    name: str
    fn: Callable[[], object]
    times: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)
