"""Checkpoints of any training loop: safetensors tensors + a JSON state, written atomically.

One folder per save, ``ckpt-<step:08d>/``: ``model.safetensors`` (the state dict),
``optimizer.safetensors`` (optimizer tensors keyed ``<param name>::<key>``; a loop with several
optimizers, e.g. a GAN's generator and discriminator, writes ``optimizer-<name>.safetensors``
for each, the parameters named within the one ``model`` that holds them all) and ``state.json``
(model name and config, step, optimizer hyper-parameters, and whatever the loop adds: its
position and the RNG states of :mod:`audiorep.training.rng`). No pickle anywhere. A folder is
written under a temporary name and renamed when complete, so a killed run never leaves a
partial ``ckpt-*``.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from audiorep.atomic import commit

CKPT_RE = re.compile(r"^ckpt-(\d{8,})$")
OPTIMIZER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
#: ``state.json`` "format" (the value first written by the YouTube-8M heads; kept so their
#: checkpoints stay readable).
CHECKPOINT_FORMAT = "audiorep.heads.checkpoint"


def _model_identity(model: nn.Module) -> tuple[str, dict[str, Any] | None]:
    name = getattr(model, "name", "") or type(model).__name__
    cfg = getattr(model, "config", None)
    return name, (cfg.to_dict() if hasattr(cfg, "to_dict") else None)


def save_checkpoint(
    directory: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    step: int = 0,
    extra: dict[str, Any] | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    tensor_groups: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
) -> Path:
    """Write ``directory/ckpt-<step>/`` atomically (a temp folder renamed at the end).

    ``extra``: more JSON fields for ``state.json`` (the trainer stores its position and RNG).
    ``optimizers``: named optimizers over parameters of ``model`` (names: letters, digits,
    ``_``, ``-``), each saved to ``optimizer-<name>.safetensors``.
    ``tensor_groups``: more named tensor dicts (e.g. a weight average), each saved to
    ``tensors-<name>.safetensors`` and read back with :func:`load_checkpoint_tensors`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"ckpt-{step:08d}"
    tmp = directory / f".tmp-ckpt-{step:08d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    name, cfg = _model_identity(model)
    state: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "model": name,
        "config": cfg,
    }
    state["step"] = int(step)
    if optimizer is not None:
        state["optimizer"] = _save_optimizer(tmp / "optimizer.safetensors", model, optimizer)
    if optimizers:
        for key in optimizers:
            if not OPTIMIZER_NAME_RE.match(key):
                raise ValueError(f"optimizer name {key!r}: use letters, digits, '_' or '-'")
        state["optimizers"] = {
            key: _save_optimizer(tmp / f"optimizer-{key}.safetensors", model, opt)
            for key, opt in optimizers.items()
        }
    for key, group in (tensor_groups or {}).items():
        if not OPTIMIZER_NAME_RE.match(key):
            raise ValueError(f"tensor group name {key!r}: use letters, digits, '_' or '-'")
        flat = {k: v.detach().cpu().contiguous() for k, v in group.items()}
        save_file(flat, str(tmp / f"tensors-{key}.safetensors"), metadata={"format": "pt"})
    if tensor_groups:
        state["tensors"] = sorted(tensor_groups)
    state.update(extra or {})
    (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
    if final.exists():
        shutil.rmtree(final)
    commit(tmp, final)
    return final


def _save_optimizer(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    names = {id(p): n for n, p in model.named_parameters()}
    sd = optimizer.state_dict()
    order = [p for g in optimizer.param_groups for p in g["params"]]  # state_dict's indexing
    index_to_name = [names[id(p)] for p in order]
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        pname = index_to_name[idx]
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{pname}::{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(pname, {})[key] = val
    save_file(tensors, str(path), metadata={"format": "pt"})
    groups = []
    for g in sd["param_groups"]:
        g = dict(g)
        g["params"] = [index_to_name[i] for i in g["params"]]
        groups.append(g)
    return {"class": type(optimizer).__name__, "param_groups": groups, "scalars": scalars}


def _load_optimizer(
    path: Path, info: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    if info["class"] != type(optimizer).__name__:
        raise ValueError(f"checkpoint optimizer is {info['class']}, not {type(optimizer).__name__}")
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    name_to_index = {n: i for i, n in enumerate(order)}
    tensors = load_file(str(path)) if path.exists() else {}
    state: dict[int, dict[str, Any]] = {}
    for key, val in tensors.items():
        pname, sub = key.split("::", 1)
        state.setdefault(name_to_index[pname], {})[sub] = val
    for pname, vals in info.get("scalars", {}).items():
        state.setdefault(name_to_index[pname], {}).update(vals)
    groups = []
    for g in info["param_groups"]:
        g = dict(g)
        g["params"] = [name_to_index[n] for n in g["params"]]
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


class CheckpointError(ValueError):
    """A damaged or foreign checkpoint; the message names the file and the problem."""


def read_checkpoint_state(path: str | Path) -> dict[str, Any]:
    """``state.json`` of the ``ckpt-*`` folder ``path``, checked to be one of ours.

    Raises:
        CheckpointError: missing, unreadable, not JSON, or not a checkpoint of this format.
    """
    file = Path(path) / "state.json"
    try:
        state = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: unreadable checkpoint state ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{file}: not an {CHECKPOINT_FORMAT} state file")
    return state


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """Check a ``ckpt-*`` folder without loading its tensors: ``state.json`` parses and every
    safetensors file it needs has a complete header covering the file; returns the state.

    Raises:
        CheckpointError: naming the damaged file (truncated, corrupt, missing).
    """
    from safetensors import safe_open

    path = Path(path)
    state = read_checkpoint_state(path)
    needed = ["model.safetensors"] + (["optimizer.safetensors"] if "optimizer" in state else [])
    needed += [f"optimizer-{key}.safetensors" for key in state.get("optimizers", {})]
    needed += [f"tensors-{key}.safetensors" for key in state.get("tensors", [])]
    for name in needed:
        file = path / name
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except Exception as exc:  # SafetensorError, OSError: the file is not usable
            raise CheckpointError(f"{file}: damaged checkpoint file ({exc})") from None
    return state


def _checkpoints_newest_first(directory: Path) -> list[Path]:
    found = [(int(m.group(1)), d) for d in directory.iterdir() if (m := CKPT_RE.match(d.name))]
    return [d for _, d in sorted(found, reverse=True)]


def latest_checkpoint(directory: str | Path, *, verify: bool = True) -> Path | None:
    """The ``ckpt-*`` folder with the highest step that is intact, or None.

    With ``verify`` (default) each candidate is checked with :func:`verify_checkpoint`, newest
    first; a damaged one is skipped with a warning that names the file and the problem, so a
    run resumes from (or a command loads) the newest intact checkpoint. Without it, only the
    presence of ``state.json`` and ``model.safetensors`` is checked.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    for d in _checkpoints_newest_first(directory):
        if not ((d / "state.json").is_file() and (d / "model.safetensors").is_file()):
            continue
        if not verify:
            return d
        try:
            verify_checkpoint(d)
        except CheckpointError as exc:
            warnings.warn(f"skipping a damaged checkpoint: {exc}", stacklevel=2)
            continue
        return d
    return None


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    strict_config: bool = True,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
) -> dict[str, Any]:
    """Load weights (and optimizer state) from a ``ckpt-*`` folder (or a checkpoint directory:
    its latest) into ``model``; returns ``state.json``. With ``strict_config`` a checkpoint of
    another head or config raises ValueError; a damaged one :class:`CheckpointError` (a
    ValueError) naming the file. ``optimizers``: the named optimizers saved with
    :func:`save_checkpoint` (a name the checkpoint lacks raises CheckpointError)."""
    path = Path(path)
    if not (path / "state.json").is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"no intact checkpoint in {path}")
        path = latest
    state = verify_checkpoint(path)
    name, cfg = _model_identity(model)
    if strict_config and (state["model"] != name or state["config"] != cfg):
        raise ValueError(
            f"checkpoint {path} was written for {state['model']} {state['config']}, the model is "
            f"{name} {cfg}; start a new model (resume=False) or use a matching config"
        )
    device = next(iter(model.state_dict().values())).device
    model.load_state_dict(load_file(str(path / "model.safetensors"), device=str(device)))
    if optimizer is not None and "optimizer" in state:
        _load_optimizer(path / "optimizer.safetensors", state["optimizer"], model, optimizer)
    saved = state.get("optimizers", {})
    for key, opt in (optimizers or {}).items():
        if key not in saved:
            raise CheckpointError(f"{path}: no state for optimizer {key!r} (has {sorted(saved)})")
        _load_optimizer(path / f"optimizer-{key}.safetensors", saved[key], model, opt)
    return state


def load_checkpoint_tensors(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The tensor group ``name`` saved with :func:`save_checkpoint` (``tensor_groups=``) in the
    ``ckpt-*`` folder ``path`` (CPU tensors).

    Raises:
        CheckpointError: the checkpoint has no such group.
    """
    path = Path(path)
    state = read_checkpoint_state(path)
    if name not in state.get("tensors", []):
        raise CheckpointError(f"{path}: no tensor group {name!r} (has {state.get('tensors', [])})")
    return load_file(str(path / f"tensors-{name}.safetensors"))


def prune_checkpoints(directory: Path, keep: int | None) -> None:
    """Keep the ``keep`` newest ``ckpt-*`` folders of ``directory`` (all when None)."""
    if keep is None:
        return
    found = sorted(
        (int(m.group(1)), d) for d in directory.iterdir() if (m := CKPT_RE.match(d.name))
    )
    for _, d in found[: max(len(found) - keep, 0)]:
        shutil.rmtree(d, ignore_errors=True)


__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "read_checkpoint_state",
    "verify_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "load_checkpoint_tensors",
    "prune_checkpoints",
    "save_checkpoint",
]
