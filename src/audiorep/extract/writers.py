"""Atomic output writers: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from audiorep.atomic import write_bytes_atomic  # noqa: F401 - re-exported


def write_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write ``arrays`` to ``path`` (.npz, uncompressed) atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return write_bytes_atomic(path, buffer.getbuffer())


def write_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write one array to ``path`` (.npy, no pickle) atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return write_bytes_atomic(path, buffer.getbuffer())


LOCK_FILE = ".audiorep.lock"


class OutputBusyError(RuntimeError):
    """Another run holds the output folder's lock."""


@contextlib.contextmanager
def claim_output_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``<out_dir>/.audiorep.lock`` for one run; then remove stale temp files.

    The lock is an advisory ``flock`` that the kernel drops when the process dies (``kill -9``
    included), so a killed run never blocks the next. A second run on the same folder is refused
    with :class:`OutputBusyError` instead of interleaving its files with the first run's. While
    the lock is held, the ``.<name>.<random>.tmp`` files of :func:`write_bytes_atomic` left by a
    killed run are removed (no live writer can own them). Where ``fcntl`` is unavailable
    (Windows) there is no lock and temp files are left alone.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield out
        return
    lock_path = out / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise OutputBusyError(
                f"{out}: another audiorep run is writing to this folder (it holds {lock_path}); "
                "wait for it to finish or choose another output folder"
            ) from exc
        _remove_stale_temps(out)
        yield out
    finally:
        os.close(fd)  # releases the flock


def _remove_stale_temps(out: Path) -> None:
    for tmp in out.rglob(".*.tmp"):
        if tmp.is_file() and not tmp.is_symlink() and tmp.name.count(".") >= 3:
            tmp.unlink(missing_ok=True)
