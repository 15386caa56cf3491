"""CRC-32C (Castagnoli), the checksum of the TFRecord framing, without compiled extensions.

Three implementations that give identical results:

* :func:`crc32c_python`: the textbook byte-at-a-time table loop (reference, ~10 MB/s).
* :func:`crc32c_numpy`: a vectorised form (hundreds of MB/s on records of a few KiB). CRC-32C
  without its initial/final inversion is linear over GF(2), so the register after a message
  is the XOR of one contribution per byte, and that contribution depends only on the byte
  value and on how many bytes follow it. A precomputed ``(4096, 256)`` table holds every
  contribution for distances below 4096, so one gather plus one XOR-reduction checksums a
  whole 4 KiB block; longer inputs are processed block by block.
* an optional compiled accelerator: ``google_crc32c`` or ``crc32c`` from PyPI when one is
  importable (set ``AUDIOREP_PURE_CRC32C=1`` to ignore them).

:func:`crc32c` dispatches to the fastest available one; :data:`BACKEND` names it and
:func:`set_backend` changes it.
"""

from __future__ import annotations

import os
import threading
from typing import Callable, Union

import numpy as np

BytesLike = Union[bytes, bytearray, memoryview]

#: Reflected Castagnoli polynomial.
POLY = 0x82F63B78
#: Added (mod 2**32) to the rotated CRC by TFRecord's "masked" CRC.
MASK_DELTA = 0xA282EAD8
_BLOCK = 4096  # bytes per gather in crc32c_numpy (table: _BLOCK * 256 * 4 B = 4 MiB)
_SMALL = 48  # below this many bytes the plain loop beats numpy's per-call overhead


def _byte_table() -> list[int]:
    table = []
    for b in range(256):
        r = b
        for _ in range(8):
            r = (r >> 1) ^ POLY if r & 1 else r >> 1
        table.append(r)
    return table


_TABLE = _byte_table()
_dist_lock = threading.Lock()
_dist: np.ndarray | None = None  # (_BLOCK, 256) uint32, built on first use
_dist_flat: np.ndarray | None = None
_desc: np.ndarray | None = None  # (_BLOCK,) intp: (_BLOCK - 1 - i) * 256


def _distance_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row ``d``, column ``b``: CRC register (started at 0) after byte ``b`` then ``d`` zeros."""
    global _dist, _dist_flat, _desc
    if _dist is None:
        with _dist_lock:
            if _dist is None:
                t = np.asarray(_TABLE, dtype=np.uint32)
                dist = np.empty((_BLOCK, 256), dtype=np.uint32)
                row = t.copy()
                for d in range(_BLOCK):
                    dist[d] = row
                    row = t[row & 0xFF] ^ (row >> 8)  # feed one zero byte
                _desc = np.arange(_BLOCK - 1, -1, -1, dtype=np.intp) * 256
                _dist_flat = dist.reshape(-1)
                _dist = dist
    assert _dist is not None and _dist_flat is not None and _desc is not None
    return _dist, _dist_flat, _desc


def crc32c_python(data: BytesLike, value: int = 0) -> int:
    """CRC-32C of ``data``, continuing from a previous result ``value`` (byte-at-a-time loop)."""
    table = _TABLE
    crc = value ^ 0xFFFFFFFF
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_numpy(data: BytesLike, value: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``value``; vectorised with numpy (see module doc)."""
    n = len(data)
    if n < _SMALL:
        return crc32c_python(data, value)
    dist, flat, desc = _distance_tables()
    arr = np.frombuffer(data, dtype=np.uint8)
    state = value ^ 0xFFFFFFFF
    pos = 0
    while pos < n:
        size = min(_BLOCK, n - pos)
        if 0 < n - pos - size < 4:
            size -= 4  # keep the last block >= 4 bytes so the state folds in as below
        block = arr[pos : pos + size]
        contrib = int(np.bitwise_xor.reduce(flat[desc[_BLOCK - size :] + block]))
        # The incoming register XORs into the block's first 4 bytes (reflected CRC), so it
        # contributes like those 4 byte values at distances size-1 .. size-4.
        state = (
            contrib
            ^ int(dist[size - 1, state & 0xFF])
            ^ int(dist[size - 2, (state >> 8) & 0xFF])
            ^ int(dist[size - 3, (state >> 16) & 0xFF])
            ^ int(dist[size - 4, state >> 24])
        )
        pos += size
    return state ^ 0xFFFFFFFF


def _load_backend(name: str) -> Callable[[BytesLike, int], int] | None:
    """The compiled CRC-32C function of package ``name``, or None if it is not importable."""
    if name == "google_crc32c":
        try:
            import google_crc32c
        except ImportError:
            return None
        if getattr(google_crc32c, "implementation", "c") != "c":
            return None  # its pure-Python fallback is slower than ours

        def _google(data: BytesLike, value: int = 0) -> int:
            return google_crc32c.extend(value, bytes(data))

        return _google
    if name == "crc32c":
        try:
            import crc32c as _ext
        except ImportError:
            return None

        def _icrar(data: BytesLike, value: int = 0) -> int:
            return _ext.crc32c(data, value)

        return _icrar
    raise ValueError(f"unknown CRC-32C backend {name!r}")


_ACCELERATORS = ("google_crc32c", "crc32c")
BACKEND = "numpy"
_ACCEL: Callable[[BytesLike, int], int] | None = None


def set_backend(name: str = "auto") -> str:
    """Choose what :func:`crc32c` uses and return its name.

    ``"auto"``: the first importable of ``google_crc32c``, ``crc32c``, else ``"numpy"``
    (``AUDIOREP_PURE_CRC32C=1`` in the environment makes auto pick ``"numpy"``); or one of
    these names explicitly (``ImportError`` if that package is missing).
    """
    global BACKEND, _ACCEL
    if name == "auto":
        pure = os.environ.get("AUDIOREP_PURE_CRC32C", "") not in ("", "0")
        for candidate in () if pure else _ACCELERATORS:
            fn = _load_backend(candidate)
            if fn is not None:
                BACKEND, _ACCEL = candidate, fn
                return BACKEND
        name = "numpy"
    if name == "numpy":
        BACKEND, _ACCEL = "numpy", None
        return BACKEND
    fn = _load_backend(name)
    if fn is None:
        raise ImportError(f"CRC-32C backend {name!r} is not importable")
    BACKEND, _ACCEL = name, fn
    return BACKEND


set_backend("auto")


def crc32c(data: BytesLike, value: int = 0) -> int:
    """CRC-32C of ``data`` (continuing from ``value``) with the fastest available backend."""
    if _ACCEL is not None:
        return _ACCEL(data, value)
    if len(data) < _SMALL:
        return crc32c_python(data, value)
    return crc32c_numpy(data, value)


def mask(crc: int) -> int:
    """TFRecord's masking of a CRC: rotate right by 15 bits, add ``0xa282ead8`` (mod 2**32)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    """Inverse of :func:`mask`."""
    rot = (masked - MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def masked_crc32c(data: BytesLike) -> int:
    """``mask(crc32c(data))``: the value TFRecord stores after the length and the payload."""
    return mask(crc32c(data))


def window_crc32c(buf: BytesLike, width: int) -> np.ndarray:
    """CRC-32C of every ``width``-byte window of ``buf`` at once (``width <= 4096``).

    Returns ``(len(buf) - width + 1,)`` uint32 (empty if ``buf`` is shorter than ``width``):
    element ``p`` is ``crc32c(buf[p : p + width])``. Used to find TFRecord headers when
    resynchronising after a corrupt length field.
    """
    if not 4 <= width <= _BLOCK:
        raise ValueError(f"width must be in [4, {_BLOCK}], got {width}")
    arr = np.frombuffer(buf, dtype=np.uint8)
    count = arr.size - width + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint32)
    dist, _, _ = _distance_tables()
    acc = np.zeros(count, dtype=np.uint32)
    for k in range(width):
        acc ^= dist[width - 1 - k][arr[k : k + count]]
    # The initial 0xFFFFFFFF register acts like XOR-ing 0xff into the first 4 bytes.
    init = 0
    for k in range(4):
        init ^= int(dist[width - 1 - k, 0xFF])
    return acc ^ np.uint32(init ^ 0xFFFFFFFF)
