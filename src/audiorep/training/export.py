"""A trained model as one file anyone can load: safetensors weights + JSON config beside them.

``<name>.safetensors`` holds the state dict with metadata ``format`` and ``config`` (JSON);
``<name>.json`` repeats them and adds what the run measured (strict JSON). Both are written
atomically, so a crash leaves the previous pair intact. No pickle anywhere.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from audiorep.atomic import commit, current_umask, make_temp


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Run ``write(tmp)`` on a temporary file next to ``path``, then rename it onto ``path``."""
    fd, tmp = make_temp(path.parent, f".{path.name}.", ".tmp")
    os.close(fd)
    try:
        write(tmp)
        # some writers (safetensors) recreate the file with mode 0600: restore open()'s mode
        os.chmod(tmp, 0o666 & ~current_umask())
        commit(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def finite_json(obj: Any) -> Any:
    """``obj`` with non-finite floats as None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def save_model_file(
    path: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    *,
    format: str,
    config: Mapping[str, Any],
    info: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` sidecar; returns ``path``.

    ``dtype``: store floating tensors in this dtype (e.g. float16 to halve a shipped file;
    :func:`load_model_file` returns float32).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in state_dict.items():
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v
    meta = {"format": format, "config": json.dumps(dict(config))}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    doc = {"format": format, "config": dict(config), **dict(info or {})}
    text = json.dumps(finite_json(doc), indent=1, allow_nan=False)
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text + "\n"))
    return path


def load_model_file(
    path: str | os.PathLike, format: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict in float32, info)`` of a file written by :func:`save_model_file`; info has
    ``config`` and, when the ``.json`` sidecar is there, everything it records.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a ``format`` file (the message names the file and what it is).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # SafetensorError: truncated / not safetensors
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != format:
        raise ValueError(f"{path}: not a {format} file (its format is {meta.get('format')!r})")
    info: dict[str, Any] = {"config": json.loads(meta["config"])}
    side = path.with_suffix(".json")
    if side.is_file():
        info.update(json.loads(side.read_text()))
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    return sd, info


__all__ = ["atomic_write", "finite_json", "load_model_file", "save_model_file"]
