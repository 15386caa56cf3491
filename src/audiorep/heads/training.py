"""Losses, optimisation and the train / evaluate loops of the YouTube-8M starter code, in torch.

Losses (``losses.py``), each ``(B, C)`` predictions and labels -> mean over the batch of the
per-example SUM over classes (so values scale with C ~ 527):

* :func:`cross_entropy_loss` (the default ``--label_loss``): on probabilities with
  ``eps = 1e-5``: ``-[y log(p + eps) + (1 - y) log(1 - p + eps)]`` (each term <= -log(1e-5)).
* :func:`hinge_loss`: ``max(0, b - (2y - 1) p)``, b = 1 (for scores in [-1, 1]).
* :func:`softmax_loss`: labels L1-normalised per row (denominator ``max(sum y, 1e-7)``),
  ``-sum y_hat log softmax(p)`` - softmax of whatever the model outputs (probabilities here).
* :func:`bce_with_logits_loss`: the numerically sound alternative on ``outputs["logits"]``
  (same scale as cross-entropy; needs a head with a logistic output layer).

Optimisation (``train.py`` defaults, :class:`TrainConfig`): Adam (0.9, 0.999, 1e-8), base
learning rate 0.01 decayed by 0.95 every 4,000,000 examples (staircase), every gradient tensor
clipped to L2 norm <= 1 on its own (:func:`clip_gradient_norms`), total loss = label loss +
1.0 x the model's L2 penalty; the logged "Loss" is the label loss.

Checkpoints (one folder per save, ``ckpt-<step:08d>/``): ``model.safetensors`` (state dict),
``optimizer.safetensors`` (optimizer tensors keyed ``<param name>::<key>``) and ``state.json``
(model name and config, train config, step, examples seen, epoch position, optimizer
hyper-parameters and the RNG states - torch, CUDA, numpy, Python). No pickle anywhere.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from audiorep.metrics.classification import (
    ClassificationMetrics,
    global_average_precision,
    hit_at_one,
    precision_at_equal_recall_rate,
)

__all__ = [
    "LABEL_LOSSES",
    "TrainConfig",
    "TrainResult",
    "bce_with_logits_loss",
    "clip_gradient_norms",
    "cross_entropy_loss",
    "evaluate_classifier",
    "hinge_loss",
    "label_loss",
    "latest_checkpoint",
    "learning_rate_at",
    "load_checkpoint",
    "load_head",
    "make_optimizer",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "softmax_loss",
    "train_classifier",
    "train_step",
]

logger = logging.getLogger("audiorep.heads")

LogFn = Callable[[str], None]
_CKPT_RE = re.compile(r"^ckpt-(\d{8,})$")
_FORMAT = "audiorep.heads.checkpoint"

# ------------------------------------------------------------------------------------------
# losses


def _reduce(per_example: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_example.mean()
    if reduction == "none":
        return per_example
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def cross_entropy_loss(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    *,
    epsilon: float = 1e-5,
    label_weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """YT8M ``CrossEntropyLoss`` on probabilities ``(B, C)``: per example
    ``sum_c -[y log(p + eps) + (1 - y) log(1 - p + eps)]`` (optionally x ``label_weights``),
    then the batch mean (``reduction="none"``: the ``(B,)`` sums)."""
    y = labels.to(predictions.dtype)
    xent = -(y * torch.log(predictions + epsilon) + (1 - y) * torch.log(1 - predictions + epsilon))
    if label_weights is not None:
        xent = xent * label_weights
    return _reduce(xent.sum(dim=1), reduction)


def hinge_loss(
    predictions: torch.Tensor, labels: torch.Tensor, *, b: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """YT8M ``HingeLoss``: ``sum_c max(0, b - (2y - 1) p)`` per example, batch mean."""
    sign = 2 * labels.to(predictions.dtype) - 1
    return _reduce(torch.clamp(b - sign * predictions, min=0).sum(dim=1), reduction)


def softmax_loss(
    predictions: torch.Tensor,
    labels: torch.Tensor,
    *,
    epsilon: float = 1e-7,
    reduction: str = "mean",
) -> torch.Tensor:
    """YT8M ``SoftmaxLoss``: labels divided by ``max(sum y, 1e-7)`` per row, then
    ``-sum_c y_hat log softmax(predictions)`` per example, batch mean."""
    y = labels.to(predictions.dtype)
    y = y / y.sum(dim=1, keepdim=True).clamp(min=epsilon)
    return _reduce(-(y * torch.log_softmax(predictions, dim=1)).sum(dim=1), reduction)


def bce_with_logits_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, reduction: str = "mean"
) -> torch.Tensor:
    """Binary cross-entropy on logits, summed over classes, batch mean (the cross-entropy's
    scale without its epsilon and without saturating at p = 0 / 1)."""
    bce = nn.functional.binary_cross_entropy_with_logits(
        logits, labels.to(logits.dtype), reduction="none"
    )
    return _reduce(bce.sum(dim=1), reduction)


#: ``TrainConfig.label_loss`` names.
LABEL_LOSSES = ("cross_entropy", "hinge", "softmax", "bce_logits")


def label_loss(
    name: str, outputs: dict[str, torch.Tensor], labels: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Loss ``name`` (:data:`LABEL_LOSSES`) of a head's output dict against ``labels``."""
    if name == "cross_entropy":
        return cross_entropy_loss(outputs["predictions"], labels, reduction=reduction)
    if name == "hinge":
        return hinge_loss(outputs["predictions"], labels, reduction=reduction)
    if name == "softmax":
        return softmax_loss(outputs["predictions"], labels, reduction=reduction)
    if name == "bce_logits":
        if "logits" not in outputs:
            raise ValueError("bce_logits needs a head that returns 'logits' (logistic output)")
        return bce_with_logits_loss(outputs["logits"], labels, reduction=reduction)
    raise ValueError(f"unknown label loss {name!r}; choose from {LABEL_LOSSES}")


# ------------------------------------------------------------------------------------------
# optimisation


@dataclasses.dataclass
class TrainConfig:
    """train.py's optimisation flags (defaults as the original's flag defaults).

    ``clip_mode``: "per_tensor" (the original: every gradient tensor on its own) or "global"
    (one norm over all). ``clip_gradient_norm <= 0`` disables clipping. ``top_k``: GAP list
    length for the logged training metrics.
    """

    label_loss: str = "cross_entropy"
    base_learning_rate: float = 0.01
    learning_rate_decay: float = 0.95
    learning_rate_decay_examples: int = 4_000_000
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    clip_gradient_norm: float = 1.0
    clip_mode: str = "per_tensor"
    regularization_penalty: float = 1.0
    top_k: int = 20

    def __post_init__(self) -> None:
        if self.label_loss not in LABEL_LOSSES:
            raise ValueError(f"label_loss must be one of {LABEL_LOSSES}")
        if self.clip_mode not in ("per_tensor", "global"):
            raise ValueError("clip_mode must be 'per_tensor' or 'global'")

    @classmethod
    def for_head(cls, name: str, **overrides: Any) -> TrainConfig:
        """Defaults for head ``name``: the YT8M README trains the LSTM with lr 0.001."""
        base = {"base_learning_rate": 0.001} if name in ("lstm", "LstmModel") else {}
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {unknown}")
        return cls(**data)


def learning_rate_at(
    examples: int,
    base_learning_rate: float = 0.01,
    decay: float = 0.95,
    decay_examples: int = 4_000_000,
) -> float:
    """Staircase exponential decay: ``base * decay ** floor(examples / decay_examples)``.

    ``examples`` = examples processed BEFORE the step (the original uses ``global_step *
    batch_size``, the same number while every batch is full).
    """
    return base_learning_rate * decay ** (int(examples) // int(decay_examples))


@torch.no_grad()
def clip_gradient_norms(parameters: Iterable[torch.Tensor], max_norm: float) -> list[float]:
    """Clip every gradient tensor to L2 norm ``<= max_norm`` on its own, in place (the
    original's ``clip_gradient_norms`` = ``tf.clip_by_norm`` per variable:
    ``g * max_norm / max(||g||, max_norm)``). Returns the norms before clipping."""
    norms = []
    for p in parameters:
        if p.grad is None:
            continue
        norm = float(torch.linalg.vector_norm(p.grad.detach()))  # float32 as tf.clip_by_norm
        norms.append(norm)
        if norm > max_norm:
            p.grad.mul_(max_norm / norm)
    return norms


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def make_optimizer(model: nn.Module, config: TrainConfig | None = None) -> torch.optim.Adam:
    """Adam over the trainable parameters with the config's betas / epsilon / base lr.

    torch's Adam adds epsilon to ``sqrt(v_hat)``; TF1's to ``sqrt(v)`` with a bias-corrected
    step size - the same update up to a rescaled epsilon (irrelevant at 1e-8)."""
    cfg = config or TrainConfig()
    return torch.optim.Adam(
        [p for _, p in _trainable(model)],
        lr=cfg.base_learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
    )


# ------------------------------------------------------------------------------------------
# RNG state (JSON-safe)


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_state() -> dict[str, Any]:
    """torch (CPU + initialised CUDA), numpy-global and Python ``random`` states, as JSON."""
    # The legacy global state on purpose: datasets that call np.random.* draw from it.
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    py = random.getstate()
    state: dict[str, Any] = {
        "torch": _b64(torch.get_rng_state()),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [py[0], list(py[1]), py[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(_unb64(state["torch"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


# ------------------------------------------------------------------------------------------
# checkpoints


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
) -> Path:
    """Write ``directory/ckpt-<step>/`` atomically (a temp folder renamed at the end).

    ``extra``: more JSON fields for ``state.json`` (the trainer stores its position and RNG).
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
    state: dict[str, Any] = {"format": _FORMAT, "version": 1, "model": name, "config": cfg}
    state["step"] = int(step)
    if optimizer is not None:
        state["optimizer"] = _save_optimizer(tmp / "optimizer.safetensors", model, optimizer)
    state.update(extra or {})
    (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
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


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The complete ``ckpt-*`` folder with the highest step, or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = []
    for d in directory.iterdir():
        m = _CKPT_RE.match(d.name)
        if m and (d / "state.json").is_file() and (d / "model.safetensors").is_file():
            found.append((int(m.group(1)), d))
    return max(found)[1] if found else None


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    strict_config: bool = True,
) -> dict[str, Any]:
    """Load weights (and optimizer state) from a ``ckpt-*`` folder (or a checkpoint directory:
    its latest) into ``model``; returns ``state.json``. With ``strict_config`` a checkpoint of
    another head or config raises ValueError."""
    path = Path(path)
    if not (path / "state.json").is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"no checkpoint in {path}")
        path = latest
    state = json.loads((path / "state.json").read_text())
    if state.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an {_FORMAT}")
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
    return state


def load_head(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the registered head a checkpoint was written for and load its weights."""
    from audiorep.heads import build_head  # local: audiorep.heads imports nothing from here

    path = Path(path)
    if not (path / "state.json").is_file():
        path = latest_checkpoint(path) or path
    state = json.loads((path / "state.json").read_text())
    model = build_head(state["model"], state["config"]).to(device)
    load_checkpoint(path, model)
    return model, state


def _prune(directory: Path, keep: int | None) -> None:
    if keep is None:
        return
    found = sorted(
        (int(m.group(1)), d) for d in directory.iterdir() if (m := _CKPT_RE.match(d.name))
    )
    for _, d in found[: max(len(found) - keep, 0)]:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# loops


def _unpack(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A loader batch -> ``(embeddings (B, T, D) f32, num_frames (B,) i64, labels (B, C) f32)``."""
    try:
        emb, nf, lab = batch["embeddings"], batch["num_frames"], batch["labels"]
    except (KeyError, TypeError, IndexError) as err:
        raise KeyError("batches must be dicts with 'embeddings', 'num_frames', 'labels'") from err
    emb = torch.as_tensor(emb).to(device=device, dtype=torch.float32)
    nf = torch.as_tensor(nf).to(device=device, dtype=torch.int64).reshape(-1)
    lab = torch.as_tensor(lab).to(device=device, dtype=torch.float32)
    return emb, nf, lab


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_classifier` ends with."""

    step: int  # global step reached
    examples_seen: int
    epoch: int  # completed passes over train_loader
    label_loss: float  # of the last step (NaN if no step ran)
    checkpoint: Path | None
    eval_metrics: dict[str, Any] | None


def train_classifier(
    model: nn.Module,
    train_loader: Iterable[Any],
    eval_loader: Iterable[Any] | None = None,
    *,
    config: TrainConfig | None = None,
    max_steps: int | None = None,
    num_epochs: int | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    log_every: int = 1,
    metrics_every: int = 10,
    checkpoint_every_steps: int | None = None,
    checkpoint_every_seconds: float | None = 900.0,
    keep_checkpoints: int | None = 3,
    eval_every_steps: int | None = None,
    device: str | torch.device | None = None,
    log: LogFn | None = None,
) -> TrainResult:
    """Train a head as YT8M's train.py does (see :class:`TrainConfig`).

    Args:
        train_loader: re-iterable (one pass = one epoch; a torch DataLoader, a list, ...)
            yielding dicts ``embeddings (B, T, D)``, ``num_frames (B,)``, ``labels (B, C)``.
        eval_loader: evaluated (:func:`evaluate_classifier`) at the end and every
            ``eval_every_steps``.
        max_steps: stop when the global step reaches this (a total, also when resuming, like
            ``--max_steps``). num_epochs: stop after this many passes. Neither: 5 epochs.
        checkpoint_dir: where ``ckpt-<step>/`` folders go (None: no checkpoints). Saved every
            ``checkpoint_every_steps`` steps and/or ``checkpoint_every_seconds`` (the
            original: 15 min) and at the end; the last ``keep_checkpoints`` are kept.
        resume: continue from the latest checkpoint there (weights, optimizer, step, examples,
            position in the epoch, RNG states), so an interrupted run gives the same weights
            as an uninterrupted one on CPU. A checkpoint of another head/config raises;
            ``resume=False`` starts a new model (``--start_new_model``).
        log_every / metrics_every: a log line every ``log_every`` steps,
            ``training step <s> | Loss: <label loss> Examples/sec: <n>``, with
            `` | Hit@1: <x> PERR: <x> GAP: <x>`` on the current training batch (predictions
            from the forward pass of that step) every ``metrics_every`` steps (as train.py).
        log: line sink (default: ``logging.getLogger("audiorep.heads").info``).

    Exactness of resume needs the loader's order to depend only on the RNG states saved
    (torch DataLoader shuffling, numpy/python ``random`` in a dataset; worker processes are
    fine as long as they are re-created per epoch, i.e. not ``persistent_workers``): the
    trainer restores the RNG state of the interrupted epoch's start, re-creates the iterator,
    skips the batches already used, then restores the current state.
    Evaluation runs under a saved/restored RNG so it never perturbs training.
    """
    cfg = config or TrainConfig()
    log = log or logger.info
    dev = torch.device(device) if device is not None else _model_device(model)
    model.to(dev)
    optimizer = make_optimizer(model, cfg)
    if max_steps is None and num_epochs is None:
        num_epochs = 5  # --num_epochs default
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None

    step = examples = epoch = batch_in_epoch = 0
    epoch_start: dict[str, Any] | None = None
    restored = latest_checkpoint(ckpt_dir) if (ckpt_dir is not None and resume) else None
    if restored is not None:
        state = load_checkpoint(restored, model, optimizer)
        if state.get("train_config") not in (None, cfg.to_dict()):
            log(f"note: train config differs from the checkpoint's {state['train_config']}")
        pos = state.get("trainer", {})
        step, examples = int(state["step"]), int(pos.get("examples_seen", 0))
        epoch, batch_in_epoch = int(pos.get("epoch", 0)), int(pos.get("batch_in_epoch", 0))
        log(f"restored {restored} (step {step}, {examples} examples, epoch {epoch})")
        epoch_start = pos.get("rng_epoch_start")
        if epoch_start is not None:
            set_rng_state(epoch_start)
        it = iter(train_loader)
        for _ in range(batch_in_epoch):  # replay the epoch's order up to where it stopped
            next(it)
        if "rng" in pos:
            set_rng_state(pos["rng"])
    else:
        epoch_start = rng_state()
        it = iter(train_loader)

    def checkpoint() -> Path:
        assert ckpt_dir is not None
        trainer = {
            "examples_seen": examples,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "rng": rng_state(),
            "rng_epoch_start": epoch_start,
        }
        path = save_checkpoint(
            ckpt_dir,
            model,
            optimizer,
            step=step,
            extra={"train_config": cfg.to_dict(), "trainer": trainer},
        )
        _prune(ckpt_dir, keep_checkpoints)
        return path

    def run_eval() -> dict[str, Any]:
        saved = rng_state()  # evaluation (e.g. DBoF's random eval sampling) must not shift it
        try:
            return evaluate_classifier(
                model, eval_loader, loss=cfg.label_loss, top_k=cfg.top_k, device=dev, log=log,
                global_step=step,
            )  # fmt: skip
        finally:
            set_rng_state(saved)
            model.train()

    last_loss = math.nan
    last_ckpt_time = time.monotonic()
    last_saved_step = step if restored is not None else -1
    ckpt_path: Path | None = restored
    eval_metrics = None
    while (max_steps is None or step < max_steps) and (num_epochs is None or epoch < num_epochs):
        try:
            batch = next(it)
        except StopIteration:
            if batch_in_epoch == 0:
                raise ValueError("train_loader yielded no batches") from None
            epoch, batch_in_epoch = epoch + 1, 0
            if num_epochs is not None and epoch >= num_epochs:
                break
            epoch_start = rng_state()
            it = iter(train_loader)
            continue
        batch_in_epoch += 1
        t0 = time.perf_counter()
        frames, num_frames, labels = _unpack(batch, dev)
        lr = learning_rate_at(
            examples, cfg.base_learning_rate, cfg.learning_rate_decay,
            cfg.learning_rate_decay_examples,
        )  # fmt: skip
        loss, predictions = train_step(model, optimizer, cfg, frames, num_frames, labels, lr)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        step += 1
        examples += labels.shape[0]
        last_loss = float(loss)
        with_metrics = metrics_every > 0 and step % metrics_every == 0
        if with_metrics or (log_every > 0 and step % log_every == 0):
            line = (
                f"training step {step} | Loss: {last_loss:.2f} "
                f"Examples/sec: {labels.shape[0] / max(seconds, 1e-9):.2f}"
            )
            if with_metrics:
                p, y = predictions.cpu().numpy(), labels.cpu().numpy()
                line += (
                    f" | Hit@1: {hit_at_one(p, y):.2f} "
                    f"PERR: {precision_at_equal_recall_rate(p, y):.2f} "
                    f"GAP: {global_average_precision(p, y, cfg.top_k):.2f}"
                )
            log(line)
        if ckpt_dir is not None and (
            (checkpoint_every_steps and step % checkpoint_every_steps == 0)
            or (
                checkpoint_every_seconds is not None
                and time.monotonic() - last_ckpt_time >= checkpoint_every_seconds
            )
        ):
            ckpt_path, last_saved_step, last_ckpt_time = checkpoint(), step, time.monotonic()
        if eval_loader is not None and eval_every_steps and step % eval_every_steps == 0:
            eval_metrics = run_eval()
    if ckpt_dir is not None and last_saved_step != step:
        ckpt_path = checkpoint()
    if eval_loader is not None and not (
        eval_every_steps and step % eval_every_steps == 0 and eval_metrics is not None
    ):
        eval_metrics = run_eval()
    return TrainResult(step, examples, epoch, last_loss, ckpt_path, eval_metrics)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    frames: torch.Tensor,
    num_frames: torch.Tensor,
    labels: torch.Tensor,
    lr: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One update at learning rate ``lr``: forward (train mode), label loss + penalty x L2,
    backward, clipping, Adam step. ``frames (B, T, D)``, ``num_frames (B,)``, ``labels (B, C)``
    on the model's device. Returns the label loss and the predictions of this forward pass
    (before the update), both detached."""
    model.train()
    outputs = model(frames, num_frames)
    loss = label_loss(cfg.label_loss, outputs, labels)
    total = loss
    if cfg.regularization_penalty and hasattr(model, "regularization_loss"):
        total = loss + cfg.regularization_penalty * model.regularization_loss()
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if cfg.clip_gradient_norm > 0:
        params = [p for _, p in _trainable(model)]
        if cfg.clip_mode == "per_tensor":
            clip_gradient_norms(params, cfg.clip_gradient_norm)
        else:
            nn.utils.clip_grad_norm_(params, cfg.clip_gradient_norm)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    return loss.detach(), outputs["predictions"].detach()


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    loss: str = "cross_entropy",
    top_k: int = 20,
    device: str | torch.device | None = None,
    keep_full: bool = True,
    log: LogFn | None = None,
    log_every: int | None = None,
    global_step: int | None = None,
) -> dict[str, Any]:
    """One pass over ``loader`` in eval mode (eval.py ``--run_once``), returning
    :meth:`ClassificationMetrics.compute`: ``avg_hit_at_one``, ``avg_perr``, ``avg_loss``
    (``loss`` per example, batch-weighted), ``gap``, ``yt8m_map``, ``yt8m_num_classes`` and the
    AudioSet ``map``, ``mauc``, ``d_prime``, ``num_classes``, ``num_skipped_classes``
    (``keep_full``), ``num_examples``.

    ``log``: a per-batch line every ``log_every`` batches and eval.py's end-of-pass line (plus
    the AudioSet numbers). The model's train/eval mode is restored afterwards.
    """
    dev = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    metrics: ClassificationMetrics | None = None
    t_start = time.perf_counter()
    try:
        batches: Iterator[Any] = iter(loader)
        for i, batch in enumerate(batches):
            frames, num_frames, labels = _unpack(batch, dev)
            outputs = model(frames, num_frames)
            per_example = label_loss(loss, outputs, labels, reduction="none")
            if metrics is None:
                metrics = ClassificationMetrics(labels.shape[1], top_k, keep_full=keep_full)
            b = metrics.update(outputs["predictions"], labels, per_example)
            if log is not None and log_every and (i + 1) % log_every == 0:
                rate = metrics.num_examples / max(time.perf_counter() - t_start, 1e-9)
                log(
                    f"examples_processed: {metrics.num_examples} | global_step {global_step} | "
                    f"Batch Hit@1: {b['hit_at_one']:.3f} | Batch PERR: {b['perr']:.3f} | "
                    f"Batch Loss: {b['loss']:.3f} | Examples_per_sec: {rate:.3f}"
                )
    finally:
        model.train(was_training)
    if metrics is None:
        raise ValueError("eval loader yielded no batches")
    res = metrics.compute()
    if log is not None:
        line = (
            f"epoch/eval number {global_step} | Avg_Hit@1: {res['avg_hit_at_one']:.3f} | "
            f"Avg_PERR: {res['avg_perr']:.3f} | MAP: {res['yt8m_map']:.3f} | "
            f"GAP: {res['gap']:.3f} | Avg_Loss: {res['avg_loss']:.6f} | "
            f"num_classes: {res['yt8m_num_classes']}"
        )
        if keep_full:
            line += (
                f" | mAP: {res['map']:.4f} | mAUC: {res['mauc']:.4f} | "
                f"d': {res['d_prime']:.3f} ({res['num_classes']} classes)"
            )
        log(line)
    return res


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global RNG and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - the global state the trainer checkpoints
    random.seed(seed)
