"""Atomic file writes: a crash never leaves a half-written file under the final name.

The lowest layer: outputs, caches, weights conversions and reports all write through here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else by the
    classic set-and-restore."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """``tempfile.mkstemp`` in ``folder``, but with the mode a plain ``open`` would give
    (``0o666 & ~umask``) instead of 0600, so that the file renamed into place is readable
    by whoever the user's umask allows (colleagues on shared storage)."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except (AttributeError, OSError):  # pragma: no cover - Windows: no fchmod
        pass
    return fd, tmp


#: Fault injection for the kill -9 tests (tests/test_kill_campaign.py): "N:before" or
#: "N:after" makes the process SIGKILL itself just before / just after its N-th commit (the
#: rename that publishes a finished output). Unset in normal use: one environment lookup.
ENV_FAULT = "AUDIOREP_FAULT_KILL_AT_COMMIT"
_commits = 0


def _fault_point(phase: str) -> None:
    spec = os.environ.get(ENV_FAULT)
    if not spec:
        return
    number, _, when = spec.partition(":")
    if when == phase and _commits == int(number):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def commit(tmp: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Publish a finished temp file or folder under its final name (``os.replace``): the one
    place every writer commits, so that the kill -9 tests can stop a run at any of them."""
    global _commits
    _commits += 1
    _fault_point("before")
    os.replace(tmp, dst)
    _fault_point("after")


def write_bytes_atomic(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and ``os.replace``.

    The file gets the mode a plain ``open`` would give (``0o666 & ~umask``)."""
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(dst.parent, f".{dst.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        commit(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


__all__ = ["ENV_FAULT", "commit", "current_umask", "make_temp", "write_bytes_atomic"]
