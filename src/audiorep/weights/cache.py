"""Where weights live: the cache folder, offline mode, and the errors of the weights layer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch

PathLike = Union[str, "os.PathLike[str]"]
StateDict = dict[str, torch.Tensor]

ENV_HOME = "AUDIOREP_HOME"
ENV_OFFLINE = "AUDIOREP_OFFLINE"


class WeightsError(RuntimeError):
    """Base class for weight download / cache errors."""


class OfflineError(WeightsError):
    """A download was needed but ``AUDIOREP_OFFLINE=1`` is set."""


class DownloadError(WeightsError):
    """A transfer failed (HTTP error, connection lost, every mirror failed)."""


class ChecksumError(DownloadError):
    """A file's sha256 does not match the pinned value."""


class UnpinnedWeightsWarning(UserWarning):
    """A file was downloaded without any checksum to verify it against."""


class _Interrupted(Exception):
    """Internal: a transfer broke off in a way that resuming may fix."""


def cache_dir() -> Path:
    """The weights cache: ``$AUDIOREP_HOME`` if set, else ``~/.cache/audiorep``."""
    home = os.environ.get(ENV_HOME, "").strip()
    return Path(home).expanduser() if home else Path.home() / ".cache" / "audiorep"


def is_offline() -> bool:
    """True when ``AUDIOREP_OFFLINE`` is set to 1/true/yes/on."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}
