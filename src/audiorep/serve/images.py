"""Pictures the page shows and offers for download, drawn without matplotlib.

A minimal PNG writer (8-bit RGB, one zlib stream) plus the three images of the tool: a [0, 1]
mel spectrogram through a magma-like colour map, a code grid (one colour per code index) and
the uint8 / base64 forms that the page's canvases draw while sampling. The page's
``static/app.js`` holds the same colour-map anchors, so a streamed spectrogram and the final
PNG look alike.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

#: Magma-like colour map: (position, RGB) anchors, linearly interpolated (static/app.js: MAGMA).
MAGMA_ANCHORS = (
    (0.0, (0, 0, 4)),
    (0.125, (28, 16, 68)),
    (0.25, (79, 18, 123)),
    (0.375, (129, 37, 129)),
    (0.5, (181, 54, 122)),
    (0.625, (229, 80, 100)),
    (0.75, (251, 135, 97)),
    (0.875, (254, 194, 135)),
    (1.0, (252, 253, 191)),
)


def _lut() -> np.ndarray:
    pos = np.array([p for p, _ in MAGMA_ANCHORS])
    rgb = np.array([c for _, c in MAGMA_ANCHORS], dtype=np.float64)
    x = np.linspace(0.0, 1.0, 256)
    return (
        np.stack([np.interp(x, pos, rgb[:, k]) for k in range(3)], axis=1).round().astype(np.uint8)
    )


MAGMA = _lut()  # (256, 3) uint8


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of a uint8 ``(H, W, 3)`` image (colour type 2, no interlace, filter 0)."""
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"expected a non-empty (H, W, 3) image, got shape {img.shape}")
    h, w, _ = img.shape
    rows = np.concatenate([np.zeros((h, 1), np.uint8), img.reshape(h, w * 3)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def to_uint8(values: np.ndarray) -> np.ndarray:
    """``round(255 x)`` of values clipped to [0, 1] (NaN -> 0)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(v, 0.0, 1.0) * 255.0).astype(np.uint8)


def spectrogram_rgb(mel: np.ndarray, row_scale: int = 2) -> np.ndarray:
    """A [0, 1] mel ``(80, T)`` as RGB ``(80 row_scale, T, 3)``, low bands at the bottom."""
    mel = np.asarray(mel)
    if mel.ndim != 2:
        raise ValueError(f"expected a (bands, frames) spectrogram, got shape {mel.shape}")
    img = MAGMA[to_uint8(mel)[::-1]]
    return np.repeat(img, row_scale, axis=0)


def spectrogram_png(mel: np.ndarray, row_scale: int = 2) -> bytes:
    """PNG of :func:`spectrogram_rgb`: one pixel per 11.6 ms frame, ``row_scale`` per band."""
    return encode_png(spectrogram_rgb(mel, row_scale))


def code_colours(n_codes: int) -> np.ndarray:
    """``(n_codes, 3)`` uint8: hues spread by the golden ratio, so neighbouring indices differ
    (static/app.js: codeColour draws the same)."""
    i = np.arange(n_codes, dtype=np.float64)
    hue = (i * 0.6180339887498949) % 1.0
    sat, val = 0.55, 0.95
    k = (hue * 6.0)[:, None] + np.array([5.0, 3.0, 1.0])  # HSV -> RGB, per channel offsets
    k = k % 6.0
    rgb = val - val * sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return np.rint(rgb * 255.0).astype(np.uint8)


def codes_png(codes: np.ndarray, n_codes: int, cell: int = 8) -> bytes:
    """PNG of a ``(rows, columns)`` code grid, ``cell`` pixels per code, row 0 (lowest mel
    region) at the bottom, a 1-pixel dark gap between columns of codes."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.size == 0:
        raise ValueError(f"expected a (rows, columns) code grid, got shape {codes.shape}")
    if int(codes.min()) < 0 or int(codes.max()) >= n_codes:
        raise ValueError(f"codes must lie in [0, {n_codes}), got [{codes.min()}, {codes.max()}]")
    img = code_colours(n_codes)[codes[::-1]]
    img = np.repeat(np.repeat(img, cell, axis=0), cell, axis=1)
    img[:, ::cell] = 24
    return encode_png(img)


def b64_uint8(values: np.ndarray) -> str:
    """Base64 of :func:`to_uint8` in row-major order (what the canvases decode)."""
    return base64.b64encode(to_uint8(values).tobytes()).decode("ascii")


__all__ = [
    "MAGMA",
    "MAGMA_ANCHORS",
    "b64_uint8",
    "code_colours",
    "codes_png",
    "encode_png",
    "spectrogram_png",
    "spectrogram_rgb",
    "to_uint8",
]
