"""SpecVQGAN's classifier checkpoints (``vggishish16.pt``, ``melception-*.pt``), read safely.

The authors' classifier files are ``torch.save`` pickles of their training logger's dict
(``specvqgan/modules/losses/vggishish/logger.py`` in their repository):
``{"model": state_dict, "optimizer": Adam state, "epoch": int, "loss": float,
"metrics": {"accuracy_1": float, ..., "mAP": numpy.float64, ...}}``. The NumPy scalars in
``metrics`` are pickled as ``numpy.core.multiarray.scalar(dtype, bytes)``, which
``torch.load(weights_only=True)`` refuses by default. :func:`read_specvqgan_checkpoint` loads
with ``weights_only=True`` and an explicit allow-list: NumPy's array, dtype and scalar
constructors only (they build plain numbers and arrays and run no other code). Anything else
in the pickle (``os.system``, ``builtins.eval``, any class) is refused, with an error naming
the file; nothing is ever loaded with ``weights_only=False``.

There is no LPAPS checkpoint of its own: the authors' LPAPS reads ``vggishish16.pt`` (their
name for it is ``vggishish_lpaps``) and calls ``load_state_dict(ckpt, strict=False)`` on the
*outer* dict, so nothing loads (Issue #13) and no trained LPAPS head weights exist. The
backbone half is :func:`vggishish_to_lpaps_net`; a codebook (Lightning ``.ckpt``) stores the
LPAPS it trained with under ``loss.perceptual_loss.*`` (:func:`sub_state_dict`).

Loading is strict everywhere here: :func:`check_state_dict` compares a state dict with a
model's (or any ``{key: shape}``) and raises :class:`StateDictMismatchError` listing missing,
unexpected and mis-shaped keys, with a hint when the dict is a whole training checkpoint or its
keys carry an extra / missing prefix. It works for any ``nn.Module`` (VGGish-ish, Melception,
LPAPS, ...).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from audiorep.convert.readers import (
    CHECKPOINT_KEYS,
    WeightsFormatError,
    _numpy_safe_globals,
    write_state_dict,
)
from audiorep.models.vggishish import LPAPS_SLICES, slices_state_dict

PathLike = Union[str, "os.PathLike[str]"]

#: ``format`` value in the metadata of converted files.
FORMAT = "audiorep.specvqgan"
#: Keys of the authors' classifier checkpoints (``logger.log_best_model``).
CLASSIFIER_CHECKPOINT_KEYS = ("loss", "metrics", "epoch", "optimizer", "model")
#: Where a codebook checkpoint keeps its LPAPS.
CODEBOOK_LPAPS_PREFIX = "loss.perceptual_loss."
_LIST = 20  # keys listed per kind in an error message


class StateDictMismatchError(ValueError):
    """A state dict does not match a model: lists ``missing``, ``unexpected``, ``mismatched``."""

    def __init__(
        self,
        message: str,
        missing: list[str],
        unexpected: list[str],
        mismatched: list[str],
    ):
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


# ----------------------------------------------------------------------------- reading


def _allow_list() -> list[Any]:
    """NumPy's array/dtype constructors (as the house reader) plus its scalar constructor."""
    try:
        from numpy._core import multiarray as ma  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import multiarray as ma
    return [
        *_numpy_safe_globals(),
        # numpy.float64 etc. pickle as scalar(dtype, raw bytes): data only
        (ma.scalar, "numpy.core.multiarray.scalar"),
        (ma.scalar, "numpy._core.multiarray.scalar"),
    ]


def read_specvqgan_checkpoint(path: PathLike) -> dict[str, Any]:
    """The whole dict of an authors' ``.pt`` file, loaded with ``weights_only=True``.

    Only plain containers, numbers, strings, tensors and NumPy arrays / dtypes / scalars can
    come out; any other global in the pickle is refused before it is called.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        WeightsFormatError: not a torch file, refused content (named), or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_allow_list()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError, ...
        raise WeightsFormatError(
            f"{path}: refused or unreadable: torch.load(weights_only=True) with only NumPy's "
            f"array, dtype and scalar constructors allowed failed ({_reason(e)}). audiorep "
            "never unpickles arbitrary objects; if you trust the file, re-save its state_dict()"
        ) from e
    if not isinstance(obj, Mapping):
        raise WeightsFormatError(f"{path}: expected a dict, found a {type(obj).__name__}")
    return dict(obj)


def _reason(e: Exception) -> str:
    """The line of torch's message that names the refused global, else its start."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    named = [ln for ln in lines if "GLOBAL" in ln]
    kept = named or [ln for ln in lines if not ln.startswith(boilerplate)]
    return " ".join(kept)[:400] or type(e).__name__


def _tensor_dict(obj: Mapping[str, Any], where: str) -> dict[str, torch.Tensor]:
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad or not obj:
        raise WeightsFormatError(
            f"{where}: not a state dict (no tensors)"
            if not obj
            else f"{where}: not a state dict; non-tensor entries: {', '.join(bad[:8])}"
        )
    return OrderedDict((str(k), v) for k, v in obj.items())


def load_specvqgan_state_dict(
    path: PathLike, model: nn.Module | None = None, key: str = "model"
) -> dict[str, torch.Tensor]:
    """The state dict inside an authors' classifier ``.pt`` (``ckpt["model"]``).

    Args:
        path: ``vggishish16.pt``, ``melception-21-05-10T09-28-40.pt`` or a file of the same
            shape (a dict with a state dict under ``key``; a bare state dict is accepted too).
        model: if given, the state dict is checked strictly against it
            (:func:`check_state_dict`); nothing is loaded into it.
        key: where the weights sit in the dict.

    Returns:
        ``{name: tensor}`` on the CPU, as stored (float32 for the released files).

    Raises:
        FileNotFoundError, WeightsFormatError (naming the file), StateDictMismatchError.
    """
    obj = read_specvqgan_checkpoint(path)
    inner = obj.get(key)
    if isinstance(inner, Mapping):
        sd = _tensor_dict(inner, f"{path} [{key!r}]")
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = _tensor_dict(obj, str(path))
    else:
        raise WeightsFormatError(
            f"{path}: no state dict under {key!r} (top-level keys: "
            f"{', '.join(map(str, list(obj)[:8]))})"
        )
    if model is not None:
        try:
            check_state_dict(sd, model, what=type(model).__name__)
        except StateDictMismatchError as e:
            raise StateDictMismatchError(
                f"{path}: {e}", e.missing, e.unexpected, e.mismatched
            ) from None
    return sd


def load_into(model: nn.Module, path: PathLike, key: str = "model") -> nn.Module:
    """Read ``path`` (:func:`load_specvqgan_state_dict`), check it, load it strictly; return
    ``model``."""
    sd = load_specvqgan_state_dict(path, model, key)
    model.load_state_dict(sd, strict=True)
    return model


# ----------------------------------------------------------------------------- checking


def _shape(v: Any) -> tuple[int, ...] | None:
    shape = getattr(v, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def _prefix_hint(missing: list[str], unexpected: list[str]) -> str:
    """A prefix that, added to or stripped from the given keys, would make them match."""
    want = set(missing)
    have = set(unexpected)
    for keys, pool, verb in ((unexpected, want, "strip"), (missing, have, "add")):
        for k in keys:
            parts = k.split(".")
            for n in range(1, len(parts)):
                if ".".join(parts[n:]) in pool:
                    prefix = ".".join(parts[:n]) + "."
                    if verb == "strip":
                        return f"; the keys carry an extra prefix: strip {prefix!r}"
                    return f"; the model's keys start with {prefix!r}: add it"
    return ""


def check_state_dict(
    state_dict: Mapping[str, Any],
    expected: nn.Module | Mapping[str, Any],
    what: str = "model",
) -> None:
    """Raise unless ``state_dict`` has exactly the keys and shapes of ``expected``.

    Args:
        state_dict: ``{key: tensor}``.
        expected: a module (its ``state_dict()``: keys and shapes, meta tensors fine) or a
            mapping ``key -> shape`` (or ``key -> tensor``).
        what: names the model in the message.

    Raises:
        StateDictMismatchError: listing up to 20 missing, unexpected and mis-shaped keys each
            (with counts), plus a hint for a whole training checkpoint (``{"model": ...}``) or
            a prefix mismatch.
    """
    if isinstance(expected, nn.Module):
        shapes = {k: tuple(v.shape) for k, v in expected.state_dict().items()}
    else:
        shapes = {
            k: (tuple(int(s) for s in v) if isinstance(v, (tuple, list)) else _shape(v))
            for k, v in expected.items()
        }
    missing = [k for k in shapes if k not in state_dict]
    unexpected = [str(k) for k in state_dict if k not in shapes]
    mismatched = [
        f"{k}: {_shape(state_dict[k])} in the file, {shapes[k]} in the model"
        for k in shapes
        if k in state_dict and shapes[k] is not None and _shape(state_dict[k]) != shapes[k]
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", mismatched),
    ):
        if keys:
            more = f" ... ({len(keys) - _LIST} more)" if len(keys) > _LIST else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:_LIST])}{more}")
    hint = ""
    outer = [k for k in unexpected if k in CHECKPOINT_KEYS or k in CLASSIFIER_CHECKPOINT_KEYS]
    if outer and any(isinstance(state_dict[k], Mapping) for k in outer):
        hint = (
            f"; this is a whole training checkpoint (keys {', '.join(outer)}), not a state "
            "dict: pass ckpt['model'] (the authors' LPAPS made this mistake with "
            "strict=False and loaded nothing, SpecVQGAN Issue #13)"
        )
    elif missing and unexpected:
        hint = _prefix_hint(missing, unexpected)
    raise StateDictMismatchError(
        f"{what} state dict does not match: " + "; ".join(parts) + hint,
        missing,
        unexpected,
        mismatched,
    )


# ----------------------------------------------------------------------------- mapping


def sub_state_dict(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries under ``prefix`` with it removed, e.g. a codebook checkpoint's
    ``loss.perceptual_loss.*`` (:data:`CODEBOOK_LPAPS_PREFIX`) -> an LPAPS state dict.

    Raises:
        KeyError: no key starts with ``prefix``.
    """
    out = OrderedDict((k[len(prefix) :], v) for k, v in state_dict.items() if k.startswith(prefix))
    if not out:
        raise KeyError(f"no keys under {prefix!r} (first keys: {', '.join(list(state_dict)[:5])})")
    return out


def vggishish_to_lpaps_net(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A VGGish-ish state dict (``vggishish16.pt``'s ``"model"``) -> LPAPS's ``net.*`` entries.

    ``features.<i>.*`` -> ``net.slice<k>.<i>.*`` for the five LPAPS slices; the classifier is
    dropped. This is the backbone the authors' LPAPS was meant to load (Issue #13; their fix
    was reverted after NaN losses, Issues #13 and #20). The ``lin<k>`` heads were never
    trained: no file has them.
    """
    return OrderedDict((f"net.{k}", v) for k, v in slices_state_dict(sd, LPAPS_SLICES).items())


# ----------------------------------------------------------------------------- writing


def convert(src: PathLike, dst: PathLike, model: nn.Module | None = None) -> Path:
    """An authors' classifier ``.pt`` -> audiorep ``.safetensors`` of its ``"model"`` (atomic),
    checked against ``model`` when given."""
    sd = load_specvqgan_state_dict(src, model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    return write_state_dict(dst, tensors, fmt=FORMAT, source=Path(src).name)


def numpy_metrics(obj: Mapping[str, Any]) -> dict[str, float]:
    """The ``"metrics"`` of a checkpoint dict as plain floats (NumPy scalars converted)."""
    metrics = obj.get("metrics") or {}
    return {str(k): float(np.asarray(v)) for k, v in metrics.items()}


__all__ = [
    "CODEBOOK_LPAPS_PREFIX",
    "FORMAT",
    "StateDictMismatchError",
    "WeightsFormatError",
    "check_state_dict",
    "convert",
    "load_into",
    "load_specvqgan_state_dict",
    "numpy_metrics",
    "read_specvqgan_checkpoint",
    "sub_state_dict",
    "vggishish_to_lpaps_net",
]
