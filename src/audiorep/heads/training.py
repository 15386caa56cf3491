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

Checkpoints, RNG state, the schedule and gradient clipping are the shared training plumbing
(:mod:`audiorep.training`; re-exported here): ``state.json`` also holds the train config, the
examples seen, the epoch position and the RNG states.
"""

from __future__ import annotations

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
    prune_checkpoints,
    save_checkpoint,
    verify_checkpoint,
)
from audiorep.training.optim import clip_gradient_norms, learning_rate_at
from audiorep.training.rng import rng_state, seed_everything, set_rng_state

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
# checkpoints


def load_head(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the registered head a checkpoint was written for and load its weights."""
    from audiorep.heads import build_head  # local: audiorep.heads imports nothing from here

    path = Path(path)
    if not (path / "state.json").is_file():
        path = latest_checkpoint(path) or path
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
        prune_checkpoints(ckpt_dir, keep_checkpoints)
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
