"""The SpecVQGAN authors' visual-feature files (``.pkl``), read without running pickled code.

The authors store one feature matrix per video and stream as a Python pickle of a single
``numpy.ndarray`` (BN-Inception RGB / flow: ``(216, 1024)`` float32, protocol 3; ResNet-50:
``(215, 2048)`` float32, protocol 4). Such a pickle names exactly three globals:
``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype`` (NumPy 2 spells
the first ``numpy._core.multiarray._reconstruct``). :func:`read_feature_array` unpickles with an
allow-list of exactly those; any other global (``os.system``, ``builtins.eval``, any class) is
refused before it is resolved, so nothing it names ever runs, and the error names the file and
the global. ``.npy`` files are read with ``numpy.load(allow_pickle=False)``.

The result is always a finite float32 ``(T, D)`` matrix: one row per video frame (21.5 fps in
the authors' data), ``D`` feature channels.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

#: Extensions read as pickles / as NumPy ``.npy``.
PICKLE_SUFFIXES = (".pkl", ".pickle")
NPY_SUFFIXES = (".npy",)
#: The largest feature file accepted, bytes (a 10-s clip's ResNet-50 matrix is 1.8 MB; an hour
#: at 21.5 fps x 2048 float32 is 634 MB).
MAX_FILE_BYTES = 1 << 30


class FeatureFileError(ValueError):
    """A feature file could not be read or does not hold a usable matrix; names the file."""

    def __init__(self, path: PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray as ma  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import multiarray as ma
    rebuild = ma._reconstruct
    # Both module spellings map to the function object directly, so NumPy 2 never imports its
    # deprecated numpy.core alias (which warns) while reading the authors' NumPy 1.x files.
    return {
        ("numpy.core.multiarray", "_reconstruct"): rebuild,
        ("numpy._core.multiarray", "_reconstruct"): rebuild,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


#: ``(module, name)`` pairs a feature pickle may name; nothing else is resolved.
ALLOWED_GLOBALS = tuple(sorted(f"{m}.{n}" for m, n in _allowed_globals()))


#: Globals of array pickles in other protocols (refused, with a hint): protocol 2 spells bytes
#: with ``_codecs.encode``, protocol 5 rebuilds arrays with ``numeric._frombuffer``.
_OTHER_PROTOCOLS = {
    "_codecs.encode": 2,
    "numpy.core.numeric._frombuffer": 5,
    "numpy._core.numeric._frombuffer": 5,
}


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, qualified: str):
        self.qualified = qualified
        super().__init__(qualified)


class _ArrayUnpickler(pickle.Unpickler):
    """Resolves only :data:`ALLOWED_GLOBALS`; refuses persistent ids and everything else."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def unpickle_array(path: PathLike) -> np.ndarray:
    """The ``numpy.ndarray`` pickled in ``path`` (any shape and dtype), read with the allow-list.

    Raises:
        FeatureFileError: missing/unreadable file, a refused global (named), a damaged pickle,
            or a pickle holding anything but one ``numpy.ndarray``.
    """
    p = Path(path)
    data = _read_bytes(p)
    try:
        # latin1: how NumPy arrays pickled by Python 2 decode; a no-op for Python 3 pickles.
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _RefusedGlobal as exc:
        hint = ""
        if exc.qualified in _OTHER_PROTOCOLS:
            hint = (
                f" ({exc.qualified} is how pickle protocol {_OTHER_PROTOCOLS[exc.qualified]} "
                "stores arrays; re-save the features with numpy.save as .npy, or pickle "
                "protocol 3 or 4 as the authors did)"
            )
        raise FeatureFileError(
            p,
            f"refused to unpickle global {exc.qualified!r}: a feature pickle may only hold a "
            f"NumPy array (allowed globals: {', '.join(ALLOWED_GLOBALS)}); nothing was "
            f"run{hint}",
        ) from None
    except Exception as exc:  # truncated / not a pickle / bad array state
        reason = f"not a readable feature pickle ({type(exc).__name__}: {exc})"
        raise FeatureFileError(p, reason) from None
    if type(obj) is not np.ndarray:
        raise FeatureFileError(p, f"expected a pickled numpy.ndarray, found a {type(obj).__name__}")
    return obj


def _read_bytes(p: Path) -> bytes:
    if not p.exists():
        raise FeatureFileError(p, "no such file")
    if not p.is_file():
        raise FeatureFileError(p, "not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise FeatureFileError(p, "empty file (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise FeatureFileError(p, f"{size} bytes is larger than the {MAX_FILE_BYTES} accepted")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise FeatureFileError(p, f"cannot read ({exc.strerror or exc})") from None


def _load_npy(p: Path) -> np.ndarray:
    _read_bytes(p)  # existence / size checks with the same messages
    try:
        arr = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise FeatureFileError(
                p, "the .npy holds Python objects (it needs pickle); only numeric arrays are read"
            ) from None
        raise FeatureFileError(p, f"not a readable .npy file ({exc})") from None
    except Exception as exc:
        reason = f"not a readable .npy file ({type(exc).__name__}: {exc})"
        raise FeatureFileError(p, reason) from None
    if not isinstance(arr, np.ndarray):  # np.load gives an NpzFile for .npz content
        raise FeatureFileError(p, "expected a single array (.npy), found an .npz archive")
    return arr


def check_feature_matrix(arr: np.ndarray, path: PathLike) -> np.ndarray:
    """``arr`` as a C-contiguous float32 ``(T, D)`` matrix, or :class:`FeatureFileError`.

    Floating dtypes (float16/32/64) are accepted and cast to float32 (the authors' files are
    float32); integer, boolean, complex and object arrays are refused, as are shapes other than
    2-D with ``T, D >= 1`` and NaN / infinite values.
    """
    if arr.dtype.kind != "f":
        raise FeatureFileError(
            path, f"features must be a floating-point array, found dtype {arr.dtype}"
        )
    if arr.ndim != 2:
        raise FeatureFileError(
            path, f"features must be a 2-D (frames, channels) matrix, found shape {arr.shape}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise FeatureFileError(path, f"empty feature matrix (shape {arr.shape})")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise FeatureFileError(path, f"{bad} of {arr.shape[0]} rows hold NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float32)


def read_feature_array(path: PathLike) -> np.ndarray:
    """A visual-feature file as float32 ``(T, D)``: ``T`` frames (rows), ``D`` channels.

    Args:
        path: the authors' ``.pkl`` (read with the allow-list unpickler) or a ``.npy``
            (``allow_pickle=False``).

    Raises:
        FeatureFileError: unknown extension, unreadable or refused file, or a matrix that is not
            2-D, not floating point, empty or not finite; the message names the file.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        arr = unpickle_array(p)
    elif suffix in NPY_SUFFIXES:
        arr = _load_npy(p)
    else:
        raise FeatureFileError(
            p,
            f"unsupported feature file extension {p.suffix!r}: expected one of "
            f"{', '.join(PICKLE_SUFFIXES + NPY_SUFFIXES)}",
        )
    return check_feature_matrix(arr, p)


__all__ = [
    "ALLOWED_GLOBALS",
    "FeatureFileError",
    "MAX_FILE_BYTES",
    "NPY_SUFFIXES",
    "PICKLE_SUFFIXES",
    "check_feature_matrix",
    "read_feature_array",
    "unpickle_array",
]
