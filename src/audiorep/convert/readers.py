"""Safe readers and the atomic writer every converter shares (VGGish, CNN14, AST, ...).

Nothing here unpickles arbitrary objects: safetensors and ``.npz`` (``allow_pickle=False``) are
plain data; torch files go through ``torch.load(weights_only=True)``, retried, only when a
NumPy global was refused, with exactly NumPy's array and dtype constructors allow-listed
(training checkpoints such as PANNs' carry sampler state as NumPy arrays).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from audiorep.atomic import commit

PathLike = Union[str, "os.PathLike[str]"]

#: Where training checkpoints nest their weights, tried in this order.
CHECKPOINT_KEYS = ("model", "state_dict", "model_state_dict")


class WeightsFormatError(ValueError):
    """A weights file could not be read or does not hold what was expected (names the file)."""


def _numpy_safe_globals() -> list[Any]:
    """NumPy constructors a pickled ``ndarray`` needs, under NumPy 1.x and 2.x names."""
    try:
        from numpy._core import multiarray as ma  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import multiarray as ma
    rebuild = ma._reconstruct
    out: list[Any] = [
        # Files pickled by NumPy 1.x name it numpy.core.multiarray; NumPy 2.x renamed the module.
        (rebuild, "numpy.core.multiarray._reconstruct"),
        (rebuild, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
    ]
    dtypes = getattr(np, "dtypes", None)  # NumPy >= 1.25: dtype classes met when unpickling
    if dtypes is not None:
        for name in dir(dtypes):
            if name.endswith("DType") and any(
                name.startswith(p) for p in ("Bool", "Int", "UInt", "Float", "Complex")
            ):
                out.append(getattr(dtypes, name))
    return out


def read_torch_checkpoint(path: PathLike) -> Any:
    """``torch.load(path, weights_only=True)``, tolerating pickled NumPy arrays.

    A first attempt uses torch's default allow-list. If that refuses a NumPy global (training
    checkpoints often carry sampler state as arrays), it retries with only NumPy's array and
    dtype constructors added (:func:`torch.serialization.safe_globals`).

    Raises:
        WeightsFormatError: the file is not a torch checkpoint, or holds other objects.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # torch raises UnpicklingError/RuntimeError/...
        message = str(first)
        if "numpy" not in message:
            raise WeightsFormatError(
                f"{path}: torch.load(weights_only=True) refused or failed ({message[:300]}). "
                "audiorep never unpickles arbitrary objects; save the state_dict() instead"
            ) from first
        try:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as second:
            raise WeightsFormatError(
                f"{path}: torch.load(weights_only=True) failed even with NumPy arrays "
                f"allowed ({str(second)[:300]})"
            ) from second


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def read_state_dict(path: PathLike) -> dict[str, Any]:
    """The tensors of a checkpoint: safetensors, or a torch file (its ``"model"`` entry if any).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        WeightsFormatError: unreadable, or no tensors found.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if is_safetensors(path):
        return read_safetensors(path)
    obj = read_torch_checkpoint(path)
    if not isinstance(obj, Mapping):
        raise WeightsFormatError(f"{path}: expected a dict, found a {type(obj).__name__}")
    for key in CHECKPOINT_KEYS:  # training checkpoints nest the weights one level down
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            obj = inner
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsFormatError(
            f"{path}: no tensors found (top-level keys: {', '.join(map(str, list(obj)[:8]))})"
        )
    return tensors


def write_state_dict(
    dst: PathLike, state_dict: Mapping[str, torch.Tensor], *, fmt: str, source: str = ""
) -> Path:
    """Atomically write ``state_dict`` as ``.safetensors`` with ``{"format", "source"}`` metadata.

    Written to a temporary name in the destination folder, then moved into place with
    ``os.replace``, so readers never see a partial file.
    """
    from safetensors.torch import save_file

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    try:
        save_file(tensors, str(tmp), metadata={"format": fmt, "source": source})
        commit(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return dst


__all__ = [
    "CHECKPOINT_KEYS",
    "WeightsFormatError",
    "is_safetensors",
    "read_safetensors",
    "read_state_dict",
    "read_torch_checkpoint",
    "write_state_dict",
]
