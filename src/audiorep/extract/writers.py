"""Atomic output writers: a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np


def write_bytes_atomic(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and ``os.replace``."""
    dst = Path(path)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


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
