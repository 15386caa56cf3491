"""One way for every training loop's settings dataclass to become JSON and come back.

A run's settings are stored in its checkpoints and model files and compared on resume
(:mod:`audiorep.training.loop`), so they must survive JSON unchanged: tuples become lists, and
parsing refuses unknown keys (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="SettingsRecord")


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class SettingsRecord:
    """Mixin for a dataclass of training settings: ``to_dict`` (JSON-ready: tuples as lists)
    and ``from_dict`` (unknown keys are an error naming ``SETTINGS_NAME``)."""

    SETTINGS_NAME: ClassVar[str] = "training settings"

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in dataclasses.asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"unknown {cls.SETTINGS_NAME}: {unknown}")
        return cls(**dict(data))


__all__ = ["SettingsRecord"]
