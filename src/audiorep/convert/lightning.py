"""PyTorch-Lightning ``.ckpt`` files (SpecVQGAN's codebooks and transformers), read safely.

What a PL 1.2.10 checkpoint holds (``Trainer.save_checkpoint`` ->
``CheckpointConnector.dump_checkpoint``; the authors trained with PL 1.2.10 and torch 1.8.1, so
the file is torch's zip format, pickle protocol 2, tensors possibly tagged ``cuda:0``)::

    {"epoch": int, "global_step": int, "pytorch-lightning_version": "1.2.10",
     "state_dict": OrderedDict[str, Tensor],
     "callbacks": {<callback CLASS>: {...}},     # e.g. ModelCheckpoint -> {"monitor",
                                                 #  "best_model_score", "best_model_path",
                                                 #  "current_score", "dirpath"}
     "optimizer_states": [Adam state dicts], "lr_schedulers": [],
     # only with native AMP / a model with hparams (not SpecVQGAN's):
     "native_amp_scaling_state": {...}, "hyper_parameters": {...}}

The ``callbacks`` dict is keyed by ``type(callback)``, so the pickle names classes such as
``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``. Lightning is never imported
here: :func:`read_lightning_checkpoint` runs ``torch.load(weights_only=True)`` (torch's
restricted unpickler: tensors, storages, plain containers and numbers) with an explicit
allow-list of

* NumPy's array / dtype / scalar constructors (data only), and
* a few Lightning callback class *names*, each bound to an inert :class:`ForeignClass`
  record. A record can serve as a dict key and nothing else: calling or instantiating it is
  refused, and after loading it must sit among the keys of the top-level ``"callbacks"`` dict
  (checked), so a pickle cannot use the admitted names to build objects.

Every other global (``os.system``, ``builtins.eval``, ``functools.partial``, any class
instance) is refused before it is called, with a :class:`LightningCheckpointError` that names
the file and the global. Nothing is ever loaded with ``weights_only=False``.
"""

from __future__ import annotations

import os
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union

import torch

from audiorep.convert.readers import WeightsFormatError
from audiorep.convert.specvqgan import _allow_list as _numpy_allow_list
from audiorep.convert.specvqgan import _reason

PathLike = Union[str, "os.PathLike[str]"]

#: Callback classes a PL 1.2 checkpoint may use as ``callbacks`` keys (only those whose
#: ``on_save_checkpoint`` returns a state appear: SpecVQGAN's codebooks have ModelCheckpoint,
#: its transformers ModelCheckpoint and EarlyStopping).
CALLBACK_CLASSES = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor",
)
#: Prefixes of a codebook (``VQModel``) state dict needed for inference.
CODEBOOK_PREFIXES = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
#: Where a codebook keeps its training loss (discriminator, LPAPS): not needed for inference.
LOSS_PREFIX = "loss."
#: Groups of a transformer (``Net2NetTransformer``) state dict that must be present.
TRANSFORMER_GROUPS = ("transformer", "first_stage_model")


class LightningCheckpointError(WeightsFormatError):
    """A ``.ckpt`` was refused or is not what was expected (the message names the file)."""


class _ForeignUse(Exception):
    """Raised inside the unpickler when a stand-in is called or instantiated."""


class ForeignClass:
    """Inert stand-in for a class named in a checkpoint (a Lightning callback type).

    Holds ``module`` and ``name`` only; equal to another record with the same two strings;
    ``str()`` gives the dotted path. It cannot be called or instantiated: a pickle that tries
    either is refused.
    """

    __slots__ = ("module", "name")

    def __new__(cls, *args: Any, **kwargs: Any) -> ForeignClass:
        if isinstance(cls, ForeignClass):  # a NEWOBJ opcode applied to a stand-in
            raise _ForeignUse(f"instantiates {cls.path}")
        return super().__new__(cls)

    def __init__(self, module: str, name: str):
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "name", name)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("ForeignClass records are immutable")

    @classmethod
    def from_path(cls, path: str) -> ForeignClass:
        module, _, name = path.rpartition(".")
        if not module or not name:
            raise ValueError(f"not a dotted class path: {path!r}")
        return cls(module, name)

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # a REDUCE opcode
        raise _ForeignUse(f"calls {self.path}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ForeignClass):
            return NotImplemented
        return (self.module, self.name) == (other.module, other.name)

    def __hash__(self) -> int:
        return hash((ForeignClass, self.module, self.name))

    def __repr__(self) -> str:
        return f"ForeignClass({self.path!r})"

    def __str__(self) -> str:
        return self.path

    def __reduce__(self) -> tuple[Any, ...]:  # copy / deepcopy keep working
        return (ForeignClass, (self.module, self.name))


# ----------------------------------------------------------------------------- reading


def _stand_ins(names: Iterable[str]) -> list[tuple[ForeignClass, str]]:
    return [(ForeignClass.from_path(n), n) for n in names]


def _misplaced_stand_ins(obj: Any) -> list[str]:
    """Where :class:`ForeignClass` records sit other than as keys of ``obj["callbacks"]``."""
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(obj, "checkpoint")]
    seen: set[int] = set()
    while stack:
        node, where = stack.pop()
        if isinstance(node, ForeignClass):
            found.append(f"{where} ({node.path})")
            continue
        if isinstance(node, (torch.Tensor, str, bytes, int, float, bool)) or node is None:
            continue
        if id(node) in seen:  # shared sub-objects (pickle memo) are walked once
            continue
        seen.add(id(node))
        if isinstance(node, Mapping):
            allowed_keys = node is obj.get("callbacks") if isinstance(obj, Mapping) else False
            for k, v in node.items():
                if isinstance(k, ForeignClass) and not allowed_keys:
                    found.append(f"{where} key ({k.path})")
                elif not isinstance(k, ForeignClass):
                    stack.append((k, f"{where} key"))
                stack.append((v, f"{where}[{k!s}]"))
        elif isinstance(node, (list, tuple, set, frozenset)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
    return found


def read_lightning_checkpoint(
    path: PathLike,
    *,
    callback_classes: Iterable[str] = CALLBACK_CLASSES,
    mmap: bool = False,
) -> dict[str, Any]:
    """The whole dict of a Lightning ``.ckpt``, read without running code from the file.

    Args:
        path: a ``.ckpt`` (torch zip format, or the legacy pre-1.6 format).
        callback_classes: dotted class names admitted as inert ``callbacks`` keys
            (:class:`ForeignClass` records in the result).
        mmap: memory-map the tensors instead of reading them (zip format only): the optimizer
            states of a large checkpoint then cost no memory unless touched.

    Returns:
        The checkpoint dict on the CPU. ``state_dict`` is an ``OrderedDict[str, Tensor]``;
        ``callbacks`` keys are :class:`ForeignClass` records.

    Raises:
        FileNotFoundError: no such file.
        LightningCheckpointError: refused (names the global), unreadable, not a dict, no
            ``state_dict`` of tensors, or a stand-in used other than as a callbacks key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    allowed = [*_numpy_allow_list(), *_stand_ins(callback_classes)]
    use_mmap = bool(mmap) and zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except _ForeignUse as e:
        raise LightningCheckpointError(
            f"{path}: refused: the pickle {e} (admitted only as an inert callbacks key)"
        ) from None
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError, zip errors, ...
        raise LightningCheckpointError(
            f"{path}: refused or unreadable: torch.load(weights_only=True) with only tensors, "
            "plain containers, NumPy data and Lightning callback names (as inert keys) allowed "
            f"failed ({_reason(e)}). audiorep never unpickles arbitrary objects"
        ) from e
    if not isinstance(obj, Mapping):
        raise LightningCheckpointError(f"{path}: expected a dict, found a {type(obj).__name__}")
    obj = dict(obj)
    misplaced = _misplaced_stand_ins(obj)
    if misplaced:
        raise LightningCheckpointError(
            f"{path}: refused: class names admitted only as callbacks keys appear elsewhere: "
            + ", ".join(misplaced[:8])
        )
    sd = obj.get("state_dict")
    if not isinstance(sd, Mapping):
        raise LightningCheckpointError(
            f"{path}: not a Lightning checkpoint: no 'state_dict' (top-level keys: "
            f"{', '.join(map(str, list(obj)[:10]))})"
        )
    _tensors(sd, f"{path} ['state_dict']")
    return obj


def _tensors(sd: Mapping[Any, Any], where: str) -> dict[str, torch.Tensor]:
    bad = [str(k) for k, v in sd.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad or not sd:
        detail = f"non-tensor entries: {', '.join(bad[:8])}" if bad else "it is empty"
        raise LightningCheckpointError(f"{where}: not a state dict ({detail})")
    return OrderedDict(sd.items())


def _state_dict_of(ckpt: Mapping[str, Any] | PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """(state dict, name for messages) of a path, a checkpoint dict or a bare state dict."""
    if isinstance(ckpt, (str, os.PathLike)):
        where = str(ckpt)
        ckpt = read_lightning_checkpoint(ckpt)
    else:
        where = "checkpoint"
    inner = ckpt.get("state_dict")
    if isinstance(inner, Mapping):
        return _tensors(inner, f"{where} ['state_dict']"), where
    return _tensors(ckpt, where), where


def checkpoint_metadata(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """``epoch``, ``global_step``, Lightning version, tensor count and the callback states
    keyed by dotted class name, for logs and reports."""
    callbacks = ckpt.get("callbacks") or {}
    return {
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "pytorch_lightning_version": ckpt.get("pytorch-lightning_version"),
        "num_tensors": len(ckpt.get("state_dict") or {}),
        "callbacks": {str(k): v for k, v in callbacks.items()},
        "keys": sorted(map(str, ckpt)),
    }


# ----------------------------------------------------------------------------- mapping


def codebook_state_dict(
    ckpt: Mapping[str, Any] | PathLike,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A codebook (``VQModel``) checkpoint -> (inference state dict, ignored ``loss.*`` keys).

    The released codebooks also store their training loss: ``loss.discriminator.*`` (patch
    GAN, with BatchNorm statistics) and ``loss.perceptual_loss.*`` (LPAPS; random weights,
    SpecVQGAN Issue #13). Those are returned by name only; the kept keys (``encoder.*``,
    ``decoder.*``, ``quantize.embedding.weight`` (n_embed, embed_dim), ``quant_conv.*``,
    ``post_quant_conv.*``) keep their order and names.

    Args:
        ckpt: a path, a dict from :func:`read_lightning_checkpoint`, or a bare state dict.

    Raises:
        LightningCheckpointError: no ``quantize.embedding.weight``, or keys outside the
            codebook's groups (e.g. a transformer checkpoint: see
            :func:`transformer_state_dict`).
    """
    sd, where = _state_dict_of(ckpt)
    ignored = [k for k in sd if k.startswith(LOSS_PREFIX)]
    kept = OrderedDict((k, v) for k, v in sd.items() if not k.startswith(LOSS_PREFIX))
    foreign = [k for k in kept if not k.startswith(CODEBOOK_PREFIXES)]
    if foreign or "quantize.embedding.weight" not in kept:
        hint = ""
        if any(k.startswith(TRANSFORMER_GROUPS[0] + ".") for k in foreign):
            hint = "; this is a transformer checkpoint: use transformer_state_dict"
        problem = (
            f"keys outside {', '.join(CODEBOOK_PREFIXES)}: {', '.join(foreign[:8])}"
            if foreign
            else "no quantize.embedding.weight"
        )
        raise LightningCheckpointError(f"{where}: not a SpecVQGAN codebook ({problem}){hint}")
    return kept, ignored


def transformer_state_dict(
    ckpt: Mapping[str, Any] | PathLike,
) -> dict[str, dict[str, torch.Tensor]]:
    """A transformer (``Net2NetTransformer``) checkpoint split by its first key component.

    Returns:
        ``{"transformer": {...}, "first_stage_model": {...}, "first_stage_permuter": {...},
        ...}`` with the group prefix removed from the keys: the GPT (``tok_emb.weight``,
        ``pos_emb`` (1, block, n_embd), ``blocks.<i>.attn.mask`` buffers, ``embedder.*``, ...),
        the frozen codebook (its keys as in :func:`codebook_state_dict`; no ``loss.*``), and
        the permuter's ``forward_shuffle_idx`` / ``backward_shuffle_idx``. Any other group
        (a conditioning stage with parameters) is returned under its own name.

    Raises:
        LightningCheckpointError: ``transformer`` or ``first_stage_model`` missing.
    """
    sd, where = _state_dict_of(ckpt)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        head, dot, rest = k.partition(".")
        groups.setdefault(head if dot else "", OrderedDict())[rest if dot else k] = v
    missing = [g for g in TRANSFORMER_GROUPS if g not in groups]
    if missing:
        raise LightningCheckpointError(
            f"{where}: not a SpecVQGAN transformer: no {', '.join(g + '.*' for g in missing)} "
            f"keys (groups present: {', '.join(sorted(groups)) or 'none'})"
        )
    return groups


__all__ = [
    "CALLBACK_CLASSES",
    "CODEBOOK_PREFIXES",
    "ForeignClass",
    "LOSS_PREFIX",
    "LightningCheckpointError",
    "TRANSFORMER_GROUPS",
    "checkpoint_metadata",
    "codebook_state_dict",
    "read_lightning_checkpoint",
    "transformer_state_dict",
]
