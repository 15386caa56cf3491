"""Losses, optimisation and the train / evaluate loops of the YouTube-8M starter code, in torch.

Losses (``losses.py``), each ``(B, C)`` predictions and labels -> mean over the batch of the
per-example SUM over classes (so values scale with C ~ 527):

* :func:`cross_entropy_loss` (the default ``--label_loss``): on probabilities with
  ``eps = 1e-5``: ``-[y log(p + eps) + (1 - y) log(1 - p + eps)]`` (each term <= -log(1e-5)).
* :func:`hinge_loss`: ``max(0, b - (2y - 1) p)``, b = 1 (for scores in [-1, 1]).
* :func:`softmax_loss`: labels L1-normalised per row (denominator ``max(sum y, 1e-7)``),
  ``-sum y_hat log softmax(p)`` - softmax of whatever the model outputs (probabilities here).
* :func:`bce_with_logits_loss`: the numerically sound alternative on ``outputs["logits"]``
  (same scale as cross-entropy; every head returns logits, the MoE and attention mixtures as
  their stable ``log p - log(1 - p)``).

Optimisation (``train.py`` defaults, :class:`TrainConfig`): Adam (0.9, 0.999, 1e-8), base
learning rate 0.01 decayed by 0.95 every 4,000,000 examples (staircase), every gradient tensor
clipped to L2 norm <= 1 on its own (:func:`clip_gradient_norms`), total loss = label loss +
1.0 x the model's L2 penalty; the logged "Loss" is the label loss.

Checkpoints, RNG state, the schedule and gradient clipping are the shared training plumbing
(:mod:`audiorep.training`; re-exported here): ``state.json`` also holds the train config, the
examples seen, the epoch position and the RNG states.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiorep.metrics.classification import (
    ClassificationMetrics,
    global_average_precision,
    hit_at_one,
    precision_at_equal_recall_rate,
)
from audiorep.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_checkpoint_tensors,
    prune_checkpoints,
    read_checkpoint_state,
    save_checkpoint,
    verify_checkpoint,
)
from audiorep.training.ema import WeightAverage
from audiorep.training.mixup import mixup_batch
from audiorep.training.optim import clip_gradient_norms, learning_rate_at
from audiorep.training.rng import rng_state, seed_everything, set_rng_state
from audiorep.training.schedules import SCHEDULES, scheduled_learning_rate
from audiorep.training.selection import BestTracker

__all__ = [
    "LABEL_LOSSES",
    "TrainConfig",
    "SELECTED_DIR",
    "SELECT_METRICS",
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
    "resolve_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "softmax_loss",
    "train_classifier",
    "seed_everything",
    "train_step",
]

logger = logging.getLogger("audiorep.heads")

LogFn = Callable[[str], None]

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
#: Metrics of :func:`evaluate_classifier` that ``TrainConfig.select_metric`` may name.
SELECT_METRICS = ("map", "mauc", "d_prime", "gap", "avg_hit_at_one", "avg_perr", "avg_loss")


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
            raise ValueError("bce_logits needs a head that returns 'logits'")
        return bce_with_logits_loss(outputs["logits"], labels, reduction=reduction)
    raise ValueError(f"unknown label loss {name!r}; choose from {LABEL_LOSSES}")


# ------------------------------------------------------------------------------------------
# optimisation


@dataclasses.dataclass
class TrainConfig:
    """How a head is trained. The defaults are train.py's flag defaults (YouTube-8M); the
    fields after ``top_k`` are this project's additions for training to convergence on a
    small set such as AudioSet's bal_train (all off by default).

    YouTube-8M fields: ``label_loss`` (:data:`LABEL_LOSSES`); Adam ``base_learning_rate`` with
    staircase decay ``learning_rate_decay`` every ``learning_rate_decay_examples``;
    ``clip_mode``: "per_tensor" (the original: every gradient tensor on its own) or "global"
    (one norm over all), ``clip_gradient_norm <= 0`` disables clipping;
    ``regularization_penalty`` x the head's L2 loss; ``top_k``: GAP list length.

    Additions:
        schedule: "staircase" (YouTube-8M, by examples) or a step schedule of
            :mod:`audiorep.training.schedules` ("constant", "cosine", "one_cycle") over the
            run's planned steps, peaking at ``base_learning_rate`` after ``warmup_steps``
            and ending at ``final_lr_fraction`` x the peak.
        optimizer: "adam" (coupled L2, the original) or "adamw" (decoupled ``weight_decay``
            on weight matrices; biases and normalisation parameters are not decayed).
        mixup_alpha: mixup's Beta(alpha, alpha) (:mod:`audiorep.training.mixup`); 0 = off.
        ema_decay: evaluate / select / export the moving average of the weights
            (:mod:`audiorep.training.ema`); 0 = off.
        balanced_sampling: class-balanced batches (:func:`audiorep.data.packed.balanced_order`)
            instead of a uniform shuffle; recorded here, applied by the loader's builder.
        patience: stop after this many validations in a row without a better
            ``select_metric`` (0 = never); the best validated weights are kept either way.
        select_metric: the validation metric that selects the best checkpoint ("map", "mauc",
            "gap", "avg_hit_at_one", or "-avg_loss" for the lowest loss).
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
    schedule: str = "staircase"
    warmup_steps: int = 0
    final_lr_fraction: float = 0.0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    mixup_alpha: float = 0.0
    ema_decay: float = 0.0
    balanced_sampling: bool = False
    patience: int = 0
    select_metric: str = "map"

    def __post_init__(self) -> None:
        if self.label_loss not in LABEL_LOSSES:
            raise ValueError(f"label_loss must be one of {LABEL_LOSSES}")
        if self.clip_mode not in ("per_tensor", "global"):
            raise ValueError("clip_mode must be 'per_tensor' or 'global'")
        if self.schedule not in ("staircase", *SCHEDULES):
            raise ValueError(f"schedule must be one of {('staircase', *SCHEDULES)}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError("optimizer must be 'adam' or 'adamw'")
        if self.ema_decay and not 0.0 < self.ema_decay < 1.0:
            raise ValueError("ema_decay must be 0 (off) or in (0, 1)")
        if self.mixup_alpha < 0 or self.warmup_steps < 0 or self.patience < 0:
            raise ValueError("mixup_alpha, warmup_steps and patience must be >= 0")
        if self.select_metric.lstrip("-") not in SELECT_METRICS:
            raise ValueError(f"select_metric must be one of {SELECT_METRICS} (or '-' + one)")

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


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def make_optimizer(model: nn.Module, config: TrainConfig | None = None) -> torch.optim.Optimizer:
    """Adam (or AdamW) over the trainable parameters with the config's betas / epsilon / lr.

    torch's Adam adds epsilon to ``sqrt(v_hat)``; TF1's to ``sqrt(v)`` with a bias-corrected
    step size - the same update up to a rescaled epsilon (irrelevant at 1e-8). AdamW decays
    only tensors with 2+ dimensions (weight matrices): decaying biases and batch-norm scales
    only hurts."""
    cfg = config or TrainConfig()
    params = [p for _, p in _trainable(model)]
    # The fused kernel updates all tensors in one pass: DBoF's 12 M parameters take ~9 ms per
    # step instead of ~75 ms with the default per-tensor loop (1 CPU thread).
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") for p in params)
    kw = {"lr": cfg.base_learning_rate, "betas": (cfg.adam_beta1, cfg.adam_beta2),
          "eps": cfg.adam_epsilon, "fused": fused or None}  # fmt: skip
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, **kw)
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], **kw)


# ------------------------------------------------------------------------------------------
# checkpoints


def resolve_checkpoint(path: str | Path) -> Path:
    """The ``ckpt-*`` folder meant by ``path``: itself; for a training folder the weights the
    run selected (``selected/``) when there are any, else its latest checkpoint."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    chosen = latest_checkpoint(path / SELECTED_DIR)
    return chosen or latest_checkpoint(path) or path


def load_head(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the registered head a checkpoint was written for and load its weights."""
    from audiorep.heads import build_head  # local: audiorep.heads imports nothing from here

    path = resolve_checkpoint(path)
    state = verify_checkpoint(path)
    model = build_head(state["model"], state["config"]).to(device)
    load_checkpoint(path, model)
    return model, state


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
    """What :func:`train_classifier` ends with.

    ``selected``: the ``ckpt-*`` folder under ``<checkpoint_dir>/selected/`` holding the weights
    the run chose (best on validation, else the final - weight-averaged - ones); the model
    passed in holds those weights on return. ``valid_metrics``: their validation metrics.
    ``history``: one record per epoch (loss, learning rate, examples/s, validation metrics).
    """

    step: int  # global step reached
    examples_seen: int
    epoch: int  # completed passes over train_loader
    label_loss: float  # of the last step (NaN if no step ran)
    checkpoint: Path | None
    eval_metrics: dict[str, Any] | None
    selected: Path | None = None
    valid_metrics: dict[str, Any] | None = None
    best_epoch: int = -1
    stopped_early: bool = False
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)


#: The folder under a run's checkpoint directory with the weights the run selected.
SELECTED_DIR = "selected"


def _metric_value(metrics: dict[str, Any], name: str) -> float:
    """``name`` of :data:`SELECT_METRICS`, negated for a leading "-" (higher is better)."""
    value = float(metrics[name.lstrip("-")])
    return -value if name.startswith("-") else value


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


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
    valid_loader: Iterable[Any] | None = None,
    validate_every_epochs: int = 1,
    run_info: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a head as YT8M's train.py does, plus the :class:`TrainConfig` additions
    (schedules, AdamW, mixup, weight averaging, selection on validation, early stopping).

    Args:
        train_loader: re-iterable (one pass = one epoch; a torch DataLoader, a list, ...)
            yielding dicts ``embeddings (B, T, D)``, ``num_frames (B,)``, ``labels (B, C)``.
            Step schedules need ``len(train_loader)`` when the run is given in epochs.
        eval_loader: evaluated (:func:`evaluate_classifier`) at the end (with the selected
            weights) and every ``eval_every_steps``.
        max_steps: stop when the global step reaches this (a total, also when resuming, like
            ``--max_steps``). num_epochs: stop after this many passes. Neither: 5 epochs.
        checkpoint_dir: where ``ckpt-<step>/`` folders go (None: no checkpoints). Saved every
            ``checkpoint_every_steps`` steps and/or ``checkpoint_every_seconds`` (the
            original: 15 min), after every validation and at the end; the last
            ``keep_checkpoints`` are kept. ``selected/ckpt-<step>/`` holds the chosen weights.
        resume: continue from the latest checkpoint there (weights, optimizer, weight average,
            step, examples, position in the epoch, RNG states, the validation history), so an
            interrupted run gives the same weights as an uninterrupted one on CPU. A
            checkpoint of another head/config raises; ``resume=False`` starts a new model.
        log_every / metrics_every: a log line every ``log_every`` steps (0: none),
            ``training step <s> | Loss: <label loss> Examples/sec: <n>``, with
            `` | Hit@1: <x> PERR: <x> GAP: <x>`` on the current training batch every
            ``metrics_every`` steps (as train.py). Every epoch also ends with one compact line
            (mean loss, learning rate, examples/s, validation), whatever ``log_every``.
        valid_loader: the validation split, evaluated every ``validate_every_epochs`` epochs
            (with the averaged weights when ``ema_decay`` is set); the best
            ``config.select_metric`` is saved to ``selected/`` and ``config.patience`` stops
            the run early.
        run_info: JSON facts stored in every checkpoint (e.g. the split and the training
            set's class counts, ``train_class_counts``).
        log: line sink (default: ``logging.getLogger("audiorep.heads").info``).

    Exactness of resume needs the loader's order to depend only on the RNG states saved
    (torch DataLoader shuffling, numpy/python ``random`` in a dataset; worker processes are
    fine as long as they are re-created per epoch, i.e. not ``persistent_workers``): the
    trainer restores the RNG state of the interrupted epoch's start, re-creates the iterator,
    skips the batches already used, then restores the current state. Mixup draws from the
    same saved global RNG. Evaluation runs under a saved/restored RNG so it never perturbs
    training.
    """
    cfg = config or TrainConfig()
    log = log or logger.info
    dev = torch.device(device) if device is not None else _model_device(model)
    model.to(dev)
    optimizer = make_optimizer(model, cfg)
    if max_steps is None and num_epochs is None:
        num_epochs = 5  # --num_epochs default
    if validate_every_epochs < 1:
        raise ValueError("validate_every_epochs must be >= 1")
    total_steps = max_steps
    if cfg.schedule != "staircase" and total_steps is None:
        try:
            total_steps = int(num_epochs or 0) * len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError(
                f"schedule {cfg.schedule!r} needs max_steps or a train_loader with a length"
            ) from None
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    tracker = BestTracker(patience=cfg.patience)
    history: list[dict[str, Any]] = []
    loss_sum, loss_count = 0.0, 0  # over the current epoch's steps
    info = dict(run_info or {})

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
        if "selection" in pos:
            tracker = BestTracker.from_dict(pos["selection"])
        history = list(pos.get("history", []))
        loss_sum, loss_count = pos.get("epoch_loss", [0.0, 0])
        if ema is not None:
            ema.load_state_dict(load_checkpoint_tensors(restored, "ema"))
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
            "selection": tracker.to_dict(),
            # without the timings: a resumed run must write the same checkpoints
            "history": [
                {k: v for k, v in h.items() if k != "examples_per_second"} for h in history
            ],  # fmt: skip
            "epoch_loss": [loss_sum, loss_count],  # the epoch's mean loss survives a resume
        }
        path = save_checkpoint(
            ckpt_dir,
            model,
            optimizer,
            step=step,
            extra={"train_config": cfg.to_dict(), "trainer": trainer, **info},
            tensor_groups={"ema": ema.state_dict()} if ema is not None else None,
        )
        prune_checkpoints(ckpt_dir, keep_checkpoints)
        return path

    def run_eval(loader: Iterable[Any]) -> dict[str, Any]:
        saved = rng_state()  # evaluation (e.g. DBoF's random eval sampling) must not shift it
        try:
            return evaluate_classifier(
                model, loader, loss=cfg.label_loss, top_k=cfg.top_k, device=dev,
                log=log if loader is eval_loader else None, global_step=step,
            )  # fmt: skip
        finally:
            set_rng_state(saved)
            model.train()

    def save_selected(metrics: dict[str, Any] | None) -> Path | None:
        """Write the current weights (averaged, when EMA is on: call inside ``applied``)."""
        if ckpt_dir is None:
            return None
        selection = {"metric": cfg.select_metric, "epoch": epoch, "step": step,
                     "weight_average": ema is not None,
                     "valid_metrics": _scalars(metrics) if metrics else None}  # fmt: skip
        path = save_checkpoint(
            ckpt_dir / SELECTED_DIR, model, step=step,
            extra={"train_config": cfg.to_dict(), "selection": selection, **info},
        )  # fmt: skip
        prune_checkpoints(ckpt_dir / SELECTED_DIR, 1)
        return path

    def selected_weights() -> Any:
        return ema.applied(model) if ema is not None else contextlib.nullcontext(model)

    epoch_seconds = 0.0
    stopped_early = False

    def end_of_epoch() -> None:
        """The epoch's compact line, and validation / selection when due."""
        nonlocal loss_sum, loss_count, epoch_seconds, stopped_early
        record: dict[str, Any] = {
            "epoch": epoch, "step": step,
            "loss": loss_sum / loss_count if loss_count else math.nan,
            "lr": current_lr, "examples_per_second": epoch_examples / max(epoch_seconds, 1e-9),
        }  # fmt: skip
        line = (
            f"epoch {epoch}" + (f"/{num_epochs}" if num_epochs else "") + f" | step {step} | "
            f"loss {record['loss']:.4f} | lr {current_lr:.3g} | "
            f"{record['examples_per_second']:,.0f} examples/s"
        )
        if valid_loader is not None and epoch % validate_every_epochs == 0:
            with selected_weights():
                metrics = run_eval(valid_loader)
                value = _metric_value(metrics, cfg.select_metric)
                improved = tracker.update(value, step=step, epoch=epoch)
                if improved:
                    save_selected(metrics)
            record["valid"] = _scalars(metrics)
            line += (
                f" | valid {cfg.select_metric} {value:.4f} (best {tracker.best:.4f} @ epoch "
                f"{tracker.best_epoch}){' *' if improved else ''}"
            )
            if tracker.should_stop:
                stopped_early = True
                line += f" | no better for {tracker.patience} validations: stopping"
        history.append(record)
        log(line)
        loss_sum, loss_count, epoch_seconds = 0.0, 0, 0.0

    last_loss = math.nan
    last_ckpt_time = time.monotonic()
    last_saved_step = step if restored is not None else -1
    ckpt_path: Path | None = restored
    eval_metrics = None
    current_lr = cfg.base_learning_rate
    epoch_examples = 0
    while (max_steps is None or step < max_steps) and (num_epochs is None or epoch < num_epochs):
        try:
            batch = next(it)
        except StopIteration:
            if batch_in_epoch == 0:
                raise ValueError("train_loader yielded no batches") from None
            epoch, batch_in_epoch = epoch + 1, 0
            end_of_epoch()
            epoch_examples = 0
            if ckpt_dir is not None and valid_loader is not None:
                ckpt_path, last_saved_step, last_ckpt_time = (checkpoint(), step, time.monotonic())
            if stopped_early or (num_epochs is not None and epoch >= num_epochs):
                break
            epoch_start = rng_state()
            it = iter(train_loader)
            continue
        batch_in_epoch += 1
        t0 = time.perf_counter()
        frames, num_frames, labels = _unpack(batch, dev)
        if cfg.schedule == "staircase":
            current_lr = learning_rate_at(
                examples, cfg.base_learning_rate, cfg.learning_rate_decay,
                cfg.learning_rate_decay_examples,
            )  # fmt: skip
        else:
            assert total_steps is not None
            current_lr = scheduled_learning_rate(
                cfg.schedule, step, total_steps, cfg.base_learning_rate,
                warmup_steps=cfg.warmup_steps, final_fraction=cfg.final_lr_fraction,
            )  # fmt: skip
        if cfg.mixup_alpha > 0:
            frames, num_frames, labels = mixup_batch(frames, num_frames, labels, cfg.mixup_alpha)
        loss, predictions = train_step(
            model, optimizer, cfg, frames, num_frames, labels, current_lr
        )
        if ema is not None:
            ema.update(model)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        epoch_seconds += seconds
        step += 1
        examples += labels.shape[0]
        epoch_examples += labels.shape[0]
        last_loss = float(loss)
        loss_sum, loss_count = loss_sum + last_loss, loss_count + 1
        with_metrics = metrics_every > 0 and step % metrics_every == 0 and cfg.mixup_alpha == 0
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
            with selected_weights():
                eval_metrics = run_eval(eval_loader)
    if ckpt_dir is not None and last_saved_step != step:
        ckpt_path = checkpoint()
    # The chosen weights: the best validated ones, else the final (averaged) ones.
    selected: Path | None = None
    valid_metrics: dict[str, Any] | None = None
    best_dir = latest_checkpoint(ckpt_dir / SELECTED_DIR) if ckpt_dir is not None else None
    if valid_loader is not None and best_dir is not None and tracker.best_step >= 0:
        load_checkpoint(best_dir, model)
        selected = best_dir
        valid_metrics = read_checkpoint_state(best_dir)["selection"]["valid_metrics"]
    else:
        if ema is not None:
            ema.copy_to(model)
        selected = save_selected(None)
    if eval_loader is not None and not (
        eval_every_steps
        and step % eval_every_steps == 0
        and eval_metrics is not None
        and selected is None
    ):
        eval_metrics = run_eval(eval_loader)
    return TrainResult(
        step, examples, epoch, last_loss, ckpt_path, eval_metrics, selected, valid_metrics,
        tracker.best_epoch, stopped_early, history,
    )  # fmt: skip


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
    backward, clipping, optimiser step. ``frames (B, T, D)``, ``num_frames (B,)``, ``labels
    (B, C)`` (multi-hot, or soft after mixup) on the model's device. Returns the label loss and
    the predictions of this forward pass (before the update), both detached."""
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
    per_class: bool = False,
) -> dict[str, Any]:
    """One pass over ``loader`` in eval mode (eval.py ``--run_once``), returning
    :meth:`ClassificationMetrics.compute`: ``avg_hit_at_one``, ``avg_perr``, ``avg_loss``
    (``loss`` per example, batch-weighted), ``gap``, ``yt8m_map``, ``yt8m_num_classes`` and the
    AudioSet ``map``, ``mauc``, ``d_prime``, ``num_classes``, ``num_skipped_classes``
    (``keep_full``), ``num_examples``. ``per_class=True`` adds the ``(C,)`` float64 arrays
    ``yt8m_aps``, ``num_positives`` and (``keep_full``) ``ap`` / ``auc`` (NaN for classes
    without both positives and negatives) from the same pass.

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
    res = metrics.compute(per_class=per_class)
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
