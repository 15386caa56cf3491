"""Training SpecVQGAN's two judges (VGGish-ish, Melception) on any labelled mel data.

One loop for both models, with the authors' recipe (``train_vggishish.py``,
``train_melception.py`` and their ``vggish.yaml`` / ``melception.yaml``) as the defaults of
:class:`JudgeTrainConfig`:

* Adam, lr 3e-4, betas (0.9, 0.999); weight decay 1e-4 (VGGish-ish) / 0 (Melception);
  batch 32 / 8; at most 100 epochs; seed 1337; plain cross-entropy (class weights off);
* per epoch: one pass over the shuffled training split (last short batch dropped), then the
  validation split; the model with the lowest validation loss is kept, and training stops
  when it has not improved for ``patience`` = 3 epochs; the kept model is then evaluated on
  the test split;
* Melception: the authors compute ``loss + 0.4 aux_loss`` and then overwrite it with the main
  loss alone, so the auxiliary head is run (its BatchNorm statistics move) but never trained:
  ``aux_loss_weight = 0.0`` reproduces that, 0.4 gives torchvision's intended recipe. Its
  weights start from torchvision's Inception-v3 initialisation (:func:`inception_init_`).

Metrics per epoch (:func:`classification_metrics`, on :mod:`audiorep.metrics.classification`):
top-1 / top-5 accuracy, mAP, mAUC (one-vs-rest on the softmax) and d'; the training split
reports its loss and top-1 / top-5 of the training forward passes.

Outputs in ``out_dir`` (rank 0 writes):

* ``checkpoints/ckpt-<step>/``: the shared training checkpoints
  (:mod:`audiorep.training.checkpoint`: weights, Adam state, epoch position, early-stopping
  state, RNG states); ``resume=True`` continues from the newest, so a killed run ends with the
  same weights as an uninterrupted one (on CPU; cuDNN autotuning is not deterministic);
* ``best.pt``: the best model in the authors' layout ``{"model", "optimizer", "epoch",
  "loss", "metrics"}`` (loads with ``model.load_state_dict(ckpt["model"])`` and with
  :func:`audiorep.convert.specvqgan.load_into`); ``best.safetensors`` (the same weights, with
  the class names and config in its metadata) and ``best.json`` (classes, config, epoch,
  validation and test metrics): :func:`load_trained_judge` reads them.

Runs on CPU, one GPU, or several under ``torchrun`` (``WORLD_SIZE > 1``: one process per
GPU, DistributedDataParallel, each rank a disjoint shard of every epoch; the batch size is per
process, as the authors' per-GPU batch).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from audiorep.frontends.specvqgan import CROP_FRAMES
from audiorep.metrics.classification import audioset_metrics, top_k_per_video
from audiorep.models.melception import Melception
from audiorep.models.vggishish import VGGISH16_LAYERS, VGGishish
from audiorep.specvqgan.classifier_data import (
    AUTHORS_SEED,
    ClipTable,
    JudgeMelDataset,
    epoch_batches,
)
from audiorep.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    read_checkpoint_state,
    save_checkpoint,
)
from audiorep.training.distributed import Distributed, setup_distributed
from audiorep.training.export import atomic_write, finite_json
from audiorep.training.rng import rng_state, seed_everything, set_rng_state

logger = logging.getLogger("audiorep.specvqgan")
LogFn = Callable[[str], None]

MODELS = ("vggishish", "melception")
#: ``format`` of ``best.json`` and of the ``best.safetensors`` metadata.
JUDGE_FORMAT = "audiorep.specvqgan.judge"
#: Config fields that may differ when a run is resumed.
RESUME_FREE_FIELDS = ("num_workers", "cudnn_benchmark", "num_epochs")
#: The authors' metric names (their ``metrics.py``), used in ``best.pt`` and everywhere here.
METRIC_NAMES = ("accuracy_1", "accuracy_5", "mAP", "mROCAUC", "dprime")


@dataclasses.dataclass
class JudgeTrainConfig:
    """Recipe of one judge training run (defaults: the authors' ``vggish.yaml``; use
    :meth:`for_model` for Melception's).

    Args:
        model: ``"vggishish"`` or ``"melception"``.
        batch_size: per process. learning_rate, betas, weight_decay: Adam's (``optimizer``
            ``"sgd"`` uses ``momentum`` instead of betas, as the authors' option).
        num_epochs: upper bound; patience: epochs without a lower validation loss before
            stopping.
        seed: model initialisation, shuffling and random crops.
        crop_frames: input width (848 as the authors; Melception needs >= 79).
        random_crop: random training crops (the authors crop the centre; validation and test
            always do).
        class_weights: weight the training loss by 1 / class count (the authors'
            ``cls_weights_in_loss``, off).
        aux_loss_weight: Melception's auxiliary-logits loss weight (0: the authors' effective
            recipe, see the module docstring).
        conv_layers, use_bn, hidden: VGGish-ish architecture (default the released VGG16
            layout); ``hidden`` None keeps the model's default 4096-wide MLP.
        num_workers: DataLoader worker processes (the authors: 0).
        cudnn_benchmark: cuDNN autotuning on CUDA (the authors: on).
    """

    model: str = "vggishish"
    batch_size: int = 32
    learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    optimizer: str = "adam"
    momentum: float = 0.9
    num_epochs: int = 100
    patience: int = 3
    seed: int = AUTHORS_SEED
    crop_frames: int = CROP_FRAMES
    random_crop: bool = False
    class_weights: bool = False
    aux_loss_weight: float = 0.0
    conv_layers: tuple[int | str, ...] = VGGISH16_LAYERS
    use_bn: bool = False
    hidden: int | None = None
    num_workers: int = 0
    cudnn_benchmark: bool = True

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        for name in ("batch_size", "num_epochs", "crop_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        self.conv_layers = tuple(v if v == "MP" else int(v) for v in self.conv_layers)

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> JudgeTrainConfig:
        """The authors' defaults for ``model``: Melception trains with batch 8 and no weight
        decay (``melception.yaml``), VGGish-ish with batch 32 and 1e-4 (``vggish.yaml``)."""
        base: dict[str, Any] = {"model": model}
        if model == "melception":
            base.update(batch_size=8, weight_decay=0.0)
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["conv_layers"] = list(self.conv_layers)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JudgeTrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown JudgeTrainConfig field(s): {unknown}")
        d = dict(data)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        if "conv_layers" in d:
            d["conv_layers"] = tuple(d["conv_layers"])
        return cls(**d)


# ------------------------------------------------------------------------------- models


def _truncated_normal_(t: torch.Tensor, std: float) -> torch.Tensor:
    """``N(0, std)`` truncated to +-2 std, in place, by redrawing the values outside (the same
    distribution as ``nn.init.trunc_normal_``, several times faster on CPU)."""
    with torch.no_grad():
        t.normal_(0.0, std)
        outside = t.abs() > 2 * std
        while bool(outside.any()):
            t[outside] = torch.empty(int(outside.sum()), dtype=t.dtype, device=t.device).normal_(
                0.0, std
            )
            outside = t.abs() > 2 * std
    return t


def inception_init_(model: Melception) -> Melception:
    """torchvision's Inception-v3 initialisation (``init_weights=True``), as the authors' model
    got it: conv and linear weights from a normal truncated at +-2 std (std 0.1; 0.01 for
    ``AuxLogits.conv1``, 0.001 for ``AuxLogits.fc``), BatchNorm weight 1 / bias 0, linear
    biases left at PyTorch's default; then ``Conv2d_1a_3x3`` is rebuilt with PyTorch's default
    initialisation (the authors replace it after the parent's init). Draws from torch's global
    RNG (torchvision 0.9 drew from SciPy, i.e. NumPy's; the distribution is the same)."""
    special = {}
    if model.AuxLogits is not None:
        special = {id(model.AuxLogits.conv1.conv): 0.01, id(model.AuxLogits.fc): 0.001}
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _truncated_normal_(m.weight, special.get(id(m), 0.1))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        first = model.Conv2d_1a_3x3
        first.conv.reset_parameters()
        first.bn.reset_parameters()
    return model


def build_judge(config: JudgeTrainConfig, num_classes: int) -> nn.Module:
    """A freshly initialised judge for ``config`` with ``num_classes`` outputs (draws from
    torch's global RNG: seed it first)."""
    if config.model == "vggishish":
        kwargs: dict[str, Any] = {}
        if config.hidden is not None:
            kwargs["hidden"] = int(config.hidden)
        widths = [v for v in config.conv_layers if v != "MP"]
        if widths and widths[-1] != 512:  # a narrower judge: the classifier follows its width
            kwargs["match_last_conv"] = True
        return VGGishish(list(config.conv_layers), config.use_bn, num_classes, **kwargs)
    return inception_init_(Melception(num_classes=num_classes, aux_logits=True))


class _TrainForward(nn.Module):
    """What DistributedDataParallel wraps: ``x -> (logits, aux logits or None)``.

    Melception runs its auxiliary head in training (as torchvision's Inception3 does),
    VGGish-ish has none."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(self.model, Melception):
            taps = ["logits"]
            if self.training and self.model.AuxLogits is not None:
                taps.append("aux_logits")
            out = self.model.forward_taps(x, taps)
            return out["logits"], out.get("aux_logits")
        return self.model(x), None


def judge_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class logits ``(B, C)`` of either judge for normalised mels ``(B, 80, T)``."""
    if isinstance(model, Melception):
        return model.forward_taps(x, "logits")["logits"]
    return model(x)


# ------------------------------------------------------------------------------ metrics


def classification_metrics(
    logits: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    topk: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """The authors' judge metrics of single-label predictions.

    Args:
        logits: ``(N, C)`` scores; targets: ``(N,)`` class indices.

    Returns:
        ``accuracy_<k>`` (target among the k best scores; ties: lower class index first;
        k capped at C), ``mAP`` and ``mROCAUC`` (mean one-vs-rest average precision / ROC AUC
        of the softmax, over the classes with at least one positive and one negative example;
        the authors' code gives 0 / 0.5 when any class is absent) and ``dprime``
        (``sqrt(2) Phi^-1(mROCAUC)``), plus ``num_examples`` and ``num_classes_scored``.
    """
    z = torch.as_tensor(logits).detach().to("cpu", torch.float64)
    y = torch.as_tensor(targets).detach().to("cpu", torch.int64).reshape(-1)
    if z.dim() != 2 or z.shape[0] != y.shape[0] or z.shape[0] == 0:
        raise ValueError(
            f"need logits (N, C) and targets (N,), got {tuple(z.shape)} and {tuple(y.shape)}"
        )
    onehot = F.one_hot(y, z.shape[1]).numpy().astype(np.float64)
    out: dict[str, float] = {}
    for k in topk:
        _, _, hit = top_k_per_video(z.numpy(), onehot, min(int(k), z.shape[1]))
        out[f"accuracy_{k}"] = float(hit.any(axis=1).mean())
    scored = audioset_metrics(torch.softmax(z, dim=1).numpy(), onehot)
    out.update(
        mAP=float(scored["map"]),
        mROCAUC=float(scored["mauc"]),
        dprime=float(scored["d_prime"]),
        num_examples=int(z.shape[0]),
        num_classes_scored=int(scored["num_classes"]),
    )
    return out


def _fmt(metrics: dict[str, Any]) -> str:
    keys = [
        ("loss", "loss"),
        ("accuracy_1", "top1"),
        ("accuracy_5", "top5"),
        ("mAP", "mAP"),
        ("mROCAUC", "mAUC"),
    ]
    return " ".join(f"{short} {metrics[k]:.4f}" for k, short in keys if k in metrics)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_judge(
    model: nn.Module,
    dataset: JudgeMelDataset,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "eval",
    _dist: Distributed | None = None,
) -> dict[str, Any]:
    """One pass over ``dataset`` in eval mode: mean cross-entropy ``loss`` (per example) and
    :func:`classification_metrics`; ``logits`` ``(N, C)`` and ``targets`` ``(N,)`` too (numpy,
    in dataset order). Under torchrun each rank scores a shard and every rank gets the whole
    result. The model's train/eval mode is restored."""
    dist = _dist or Distributed()
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    batches = epoch_batches(
        len(dataset),
        batch_size,
        shuffle=False,
        drop_last=False,
        rank=dist.rank,
        world_size=dist.world,
    )
    # Own generator: the loader's worker seed must not draw from the global RNG (a resumed
    # run would otherwise see other dropout masks).
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=dev.type == "cuda",
        generator=torch.Generator(),
    )
    was_training = model.training
    model.eval()
    idx, outs = [], []
    try:
        for batch in tqdm(loader, desc, disable=not (progress and dist.main), leave=False):
            outs.append(judge_logits(model, batch["input"].to(dev)).float().cpu())
            idx.append(batch["index"])
    finally:
        model.train(was_training)
    num_classes = len(dataset.classes)
    local = (
        torch.cat(idx).numpy() if idx else np.zeros(0, np.int64),
        torch.cat(outs).numpy() if outs else np.zeros((0, num_classes), np.float32),
    )
    parts = dist.gather(local)
    index = np.concatenate([p[0] for p in parts])
    logits = np.concatenate([p[1] for p in parts])
    order = np.argsort(index, kind="stable")
    logits = logits[order]
    targets = np.asarray(dataset.targets, dtype=np.int64)[index[order]]
    result: dict[str, Any] = {
        "loss": float(F.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(targets)))
    }
    result.update(classification_metrics(logits, targets))
    result["logits"], result["targets"] = logits, targets
    return result


def _public(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in ("logits", "targets")}


# ------------------------------------------------------------------------------ outputs


_atomic_write = atomic_write
_finite_json = finite_json


def save_judge(
    path: str | os.PathLike,
    model: nn.Module,
    classes: Sequence[str],
    config: JudgeTrainConfig,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write ``path`` (``.safetensors``: the state dict; metadata ``format``, ``model``,
    ``classes``, ``config``) and ``path`` with suffix ``.json`` (the same plus ``info``; strict
    JSON: non-finite numbers, such as the d' of a perfect mAUC, become null), atomically.
    :func:`load_trained_judge` reads them back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": JUDGE_FORMAT,
        "model": config.model,
        "classes": json.dumps(list(classes)),
        "config": json.dumps(config.to_dict()),
    }
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    doc = {
        "format": JUDGE_FORMAT,
        "model": config.model,
        "classes": list(classes),
        "config": config.to_dict(),
        **(info or {}),
    }
    text = json.dumps(_finite_json(doc), indent=1, allow_nan=False)
    _atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text + "\n"))
    return path


def load_trained_judge(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """A judge written by :func:`save_judge` / :func:`train_judge` (``best.safetensors``, or the
    folder holding it), in eval mode, and its info (``classes``, ``config``, metrics when the
    ``.json`` is there). The architecture is rebuilt from the stored config; weights load
    strictly."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        path = path / "best.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no judge weights at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != JUDGE_FORMAT:
        raise ValueError(f"{path}: not a judge written by audiorep (metadata {meta})")
    info: dict[str, Any] = {
        "classes": json.loads(meta["classes"]),
        "config": json.loads(meta["config"]),
    }
    side = path.with_suffix(".json")
    if side.is_file():
        info.update(json.loads(side.read_text()))
    config = JudgeTrainConfig.from_dict(info["config"])
    with torch.random.fork_rng(devices=[]):  # building draws random init: keep the caller's RNG
        model = build_judge(config, len(info["classes"]))
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.to(device).eval(), info


def _write_authors_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    loss: float,
    metrics: dict[str, Any],
) -> None:
    ckpt = {
        "loss": float(loss),
        "metrics": {k: float(metrics[k]) for k in METRIC_NAMES if k in metrics},
        "epoch": int(epoch),
        "optimizer": optimizer.state_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    _atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


# ------------------------------------------------------------------------------ training


@dataclasses.dataclass
class JudgeTrainResult:
    """What :func:`train_judge` ends with."""

    model: nn.Module  # the best model (the last one if no validation ran), eval mode, CPU/GPU
    classes: tuple[str, ...]
    step: int  # optimizer steps taken in total
    epochs: int  # completed epochs
    best_epoch: int | None  # 0-based, as the authors' "epoch"
    best_valid_loss: float
    stopped_early: bool
    interrupted: bool  # stopped at max_steps (resume to continue)
    history: list[dict[str, Any]]  # per epoch: train and valid metrics, seconds
    test_metrics: dict[str, Any] | None
    best_checkpoint: Path | None  # best.pt
    last_checkpoint: Path | None  # checkpoints/ckpt-*
    seconds: float  # wall time of this call


def _optimizer(model: nn.Module, cfg: JudgeTrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(), lr=cfg.learning_rate, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.learning_rate,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )


def _class_weights(dataset: JudgeMelDataset, num_classes: int) -> torch.Tensor:
    counts = np.bincount(np.asarray(dataset.targets, dtype=np.int64), minlength=num_classes)
    return torch.from_numpy(1.0 / np.maximum(counts, 1)).float()


def _check_resume(
    state: dict[str, Any], cfg: JudgeTrainConfig, classes: Sequence[str], path: Path
) -> None:
    judge = state.get("judge") or {}
    saved = {k: v for k, v in (judge.get("config") or {}).items() if k not in RESUME_FREE_FIELDS}
    now = {
        k: v
        for k, v in json.loads(json.dumps(cfg.to_dict())).items()
        if k not in RESUME_FREE_FIELDS
    }
    if saved != now or list(judge.get("classes") or []) != list(classes):
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        what = f"config fields {diff}" if diff else "class list"
        raise ValueError(
            f"checkpoint {path} belongs to another run ({what} differ); use a new output folder "
            "or resume=False to start over"
        )


def train_judge(
    table: ClipTable,
    out_dir: str | os.PathLike,
    *,
    config: JudgeTrainConfig | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    checkpoint_every_steps: int | None = None,
    checkpoint_every_seconds: float | None = 600.0,
    keep_checkpoints: int | None = 2,
    evaluate_test: bool = True,
    cache: bool = False,
    progress: bool = True,
    log: LogFn | None = None,
) -> JudgeTrainResult:
    """Train a judge on ``table``'s train split, early-stopped on its valid split.

    Args:
        table: clips with splits (:mod:`audiorep.specvqgan.classifier_data`); train and valid
            must be non-empty; test is evaluated with the best model when present.
        out_dir: checkpoints and best-model files (module docstring).
        config: the recipe (default: the authors' for VGGish-ish).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; None = CUDA when available (under
            torchrun ``cuda:$LOCAL_RANK``).
        resume: continue from the newest checkpoint in ``out_dir/checkpoints`` (weights, Adam,
            epoch and batch position, early-stopping state, every rank's RNG); a checkpoint of
            another config or class list raises. False starts over: the checkpoints and
            best-model files already in ``out_dir`` are deleted first.
        max_steps: stop (with a checkpoint) once this many optimizer steps were taken in
            total; the result has ``interrupted=True`` and a later call resumes.
        checkpoint_every_steps / checkpoint_every_seconds: mid-epoch checkpoints (one is also
            written after every validation); ``keep_checkpoints`` newest are kept.
        evaluate_test: evaluate the best model on the test split at the end.
        cache: keep decoded mels in memory (audio-file datasets, ``num_workers=0``).
        progress: tqdm bars on rank 0. log: line sink (default the ``audiorep.specvqgan``
            logger).
    """
    t_start = time.perf_counter()
    cfg = config or JudgeTrainConfig()
    log = log or logger.info
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    dist, dev = setup_distributed(device)
    try:
        return _train(
            table,
            out,
            ckpt_dir,
            cfg,
            dev,
            dist,
            resume,
            max_steps,
            checkpoint_every_steps,
            checkpoint_every_seconds,
            keep_checkpoints,
            evaluate_test,
            cache,
            progress,
            log,
            t_start,
        )
    finally:
        dist.close()


def _train(
    table: ClipTable,
    out: Path,
    ckpt_dir: Path,
    cfg: JudgeTrainConfig,
    dev: torch.device,
    dist: Distributed,
    resume: bool,
    max_steps: int | None,
    every_steps: int | None,
    every_seconds: float | None,
    keep: int | None,
    evaluate_test: bool,
    cache: bool,
    progress: bool,
    log: LogFn,
    t_start: float,
) -> JudgeTrainResult:
    classes = tuple(table.classes)
    num_classes = len(classes)
    if not table.has_splits:
        raise ValueError(f"{table.source}: some clips have no split (use assign_splits)")
    common = {"crop_frames": cfg.crop_frames, "seed": cfg.seed, "cache": cache}
    train_set = JudgeMelDataset(
        table.split("train"), classes, random_crop=cfg.random_crop, **common
    )
    valid_set = JudgeMelDataset(table.split("valid"), classes, **common)
    test_set = JudgeMelDataset(table.split("test"), classes, **common)
    if len(train_set) == 0 or len(valid_set) == 0:
        raise ValueError(
            f"{table.source}: train and valid splits must not be empty ({table.summary()})"
        )
    batches_per_epoch = len(
        epoch_batches(len(train_set), cfg.batch_size, rank=dist.rank, world_size=dist.world)
    )
    if batches_per_epoch == 0:
        raise ValueError(
            f"{len(train_set)} training clips give no full batch of {cfg.batch_size} per process "
            f"({dist.world} process(es)); lower batch_size"
        )
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark

    seed_everything(cfg.seed)
    model = build_judge(cfg, num_classes).to(dev)
    if dist.world > 1:
        torch.manual_seed(cfg.seed + dist.rank)  # different dropout masks per rank
    optimizer = _optimizer(model, cfg)
    forward: nn.Module = _TrainForward(model)
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        unused = isinstance(model, Melception) and cfg.aux_loss_weight == 0
        forward = DistributedDataParallel(
            forward,
            device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=unused,
        )
    weights = _class_weights(train_set, num_classes).to(dev) if cfg.class_weights else None
    n_params = sum(p.numel() for p in model.parameters())
    if dist.main:
        log(
            f"{cfg.model}: {n_params / 1e6:.3f} M parameters, {num_classes} classes; "
            f"{table.summary()}; device {dev}, {dist.world} process(es)"
        )

    step = epoch = batch_in_epoch = 0
    best_loss, best_epoch, no_change = math.inf, None, 0
    stopped_early = done = False
    history: list[dict[str, Any]] = []
    running = {"loss_sum": 0.0, "count": 0, "hits1": 0, "hits5": 0}
    epoch_seconds = 0.0
    if not resume and dist.main:  # start over: an older run's files must not be resumed later
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        for name in ("best.pt", "best.safetensors", "best.json"):
            (out / name).unlink(missing_ok=True)
    dist.barrier()
    restored = latest_checkpoint(ckpt_dir) if resume else None
    if restored is not None:
        _check_resume(read_checkpoint_state(restored), cfg, classes, restored)
        state = load_checkpoint(restored, model, optimizer)
        tr = state["trainer"]
        step, epoch, batch_in_epoch = (
            int(state["step"]),
            int(tr["epoch"]),
            int(tr["batch_in_epoch"]),
        )
        best_loss = float(tr["best_valid_loss"])
        best_epoch, no_change = tr["best_epoch"], int(tr["no_change_epochs"])
        stopped_early, done = bool(tr["stopped_early"]), bool(tr["done"])
        history, running = list(tr["history"]), dict(tr["running"])
        epoch_seconds = float(tr.get("epoch_seconds", 0.0))
        rngs = tr["rng"]
        set_rng_state(rngs[dist.rank] if dist.rank < len(rngs) else rngs[0])
        if dist.main:
            log(f"resumed from {restored} (step {step}, epoch {epoch}, batch {batch_in_epoch})")

    last_ckpt: Path | None = restored
    last_ckpt_time = time.monotonic()

    def checkpoint() -> Path | None:
        nonlocal last_ckpt, last_ckpt_time
        trainer = {
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "best_valid_loss": best_loss,
            "best_epoch": best_epoch,
            "no_change_epochs": no_change,
            "stopped_early": stopped_early,
            "done": done,
            "history": history,
            "running": running,
            "epoch_seconds": epoch_seconds,
            "rng": dist.gather(rng_state()),
        }
        if dist.main:
            extra = {
                "judge": {"config": cfg.to_dict(), "classes": list(classes)},
                "trainer": trainer,
            }
            last_ckpt = save_checkpoint(ckpt_dir, model, optimizer, step=step, extra=extra)
            prune_checkpoints(ckpt_dir, keep)
        dist.barrier()
        last_ckpt_time = time.monotonic()
        return last_ckpt

    interrupted = False
    while not done and epoch < cfg.num_epochs:
        train_set.set_epoch(epoch)
        batches = epoch_batches(
            len(train_set),
            cfg.batch_size,
            epoch=epoch,
            seed=cfg.seed,
            rank=dist.rank,
            world_size=dist.world,
        )
        loader = DataLoader(
            train_set,
            batch_sampler=batches[batch_in_epoch:],
            num_workers=cfg.num_workers,
            pin_memory=dev.type == "cuda",
            generator=torch.Generator(),
        )
        forward.train()
        t_epoch = time.perf_counter()
        bar = tqdm(
            loader,
            f"train ({epoch})",
            total=len(batches),
            initial=batch_in_epoch,
            disable=not (progress and dist.main),
            leave=False,
        )
        for batch in bar:
            if max_steps is not None and step >= max_steps:
                interrupted = True
                break
            x = batch["input"].to(dev, non_blocking=True)
            y = batch["target"].to(dev, non_blocking=True)
            logits, aux = forward(x)
            loss = F.cross_entropy(logits, y, weight=weights)
            total = loss
            if aux is not None and cfg.aux_loss_weight:
                total = loss + cfg.aux_loss_weight * F.cross_entropy(aux, y, weight=weights)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            step += 1
            batch_in_epoch += 1
            with torch.no_grad():
                top = logits.detach().topk(min(5, num_classes), dim=1).indices == y[:, None]
                running["loss_sum"] += float(loss) * len(y)
                running["count"] += len(y)
                running["hits1"] += int(top[:, 0].sum())
                running["hits5"] += int(top.any(dim=1).sum())
            bar.set_postfix(loss=f"{loss.item():.4f}")
            late = every_seconds is not None and time.monotonic() - last_ckpt_time >= every_seconds
            if (every_steps and step % every_steps == 0) or dist.from_main(late):
                epoch_seconds += time.perf_counter() - t_epoch
                t_epoch = time.perf_counter()
                checkpoint()
        bar.close()
        epoch_seconds += time.perf_counter() - t_epoch
        if interrupted or (
            max_steps is not None and step >= max_steps and batch_in_epoch < len(batches)
        ):
            interrupted = True
            checkpoint()
            break

        # End of the epoch: the authors' validation phase and early stopping.
        t_valid = time.perf_counter()
        counts = dist.gather(running)
        n = sum(c["count"] for c in counts)
        train_m = {
            "loss": sum(c["loss_sum"] for c in counts) / max(n, 1),
            "accuracy_1": sum(c["hits1"] for c in counts) / max(n, 1),
            "accuracy_5": sum(c["hits5"] for c in counts) / max(n, 1),
            "num_examples": n,
        }
        if dist.world > 1:  # every rank scores its shard with rank 0's BatchNorm statistics
            for buf in model.buffers():
                torch.distributed.broadcast(buf, 0)
        valid = _public(
            evaluate_judge(
                model,
                valid_set,
                batch_size=cfg.batch_size,
                device=dev,
                num_workers=cfg.num_workers,
                progress=progress,
                desc=f"valid ({epoch})",
                _dist=dist,
            )
        )
        improved = valid["loss"] < best_loss
        if improved:
            best_loss, best_epoch, no_change = valid["loss"], epoch, 0
        else:
            no_change += 1
        record = {
            "epoch": epoch,
            "train": train_m,
            "valid": valid,
            "improved": improved,
            "seconds": epoch_seconds + time.perf_counter() - t_valid,
        }
        history.append(record)
        if dist.main:
            log(
                f"epoch {epoch}: train {_fmt(train_m)} | valid {_fmt(valid)}"
                + (" (best)" if improved else f" (no improvement for {no_change}/{cfg.patience})")
            )
            if improved:
                _write_best(out, model, optimizer, classes, cfg, epoch, valid)
        dist.barrier()
        epoch, batch_in_epoch, epoch_seconds = epoch + 1, 0, 0.0
        running = {"loss_sum": 0.0, "count": 0, "hits1": 0, "hits5": 0}
        if no_change >= cfg.patience:
            stopped_early = True
            if dist.main:
                log(
                    f"early stop after epoch {epoch - 1}: validation loss has not improved for "
                    f"{cfg.patience} epochs (best {best_loss:.4f} at epoch {best_epoch})"
                )
        done = stopped_early or epoch >= cfg.num_epochs
        checkpoint()

    test_metrics = None
    if not interrupted:
        best_file = out / "best.safetensors"
        if best_file.is_file():
            model.load_state_dict(load_file(str(best_file), device=str(dev)))
        if evaluate_test and len(test_set):
            test_metrics = _public(
                evaluate_judge(
                    model,
                    test_set,
                    batch_size=cfg.batch_size,
                    device=dev,
                    num_workers=cfg.num_workers,
                    progress=progress,
                    desc="test",
                    _dist=dist,
                )
            )
            if dist.main:
                log(
                    f"test (best epoch {best_epoch}): {_fmt(test_metrics)} "
                    f"dprime {test_metrics['dprime']:.3f}"
                )
                _update_best_json(out, test=test_metrics, history=history)
        elif dist.main and best_file.is_file():
            _update_best_json(out, history=history)
    model.eval()
    return JudgeTrainResult(
        model=model,
        classes=classes,
        step=step,
        epochs=epoch,
        best_epoch=best_epoch,
        best_valid_loss=best_loss,
        stopped_early=stopped_early,
        interrupted=interrupted,
        history=history,
        test_metrics=test_metrics,
        best_checkpoint=(out / "best.pt") if (out / "best.pt").is_file() else None,
        last_checkpoint=last_ckpt,
        seconds=time.perf_counter() - t_start,
    )


def _write_best(
    out: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    classes: Sequence[str],
    cfg: JudgeTrainConfig,
    epoch: int,
    valid: dict[str, Any],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_authors_checkpoint(out / "best.pt", model, optimizer, epoch, valid["loss"], valid)
    info = {
        "epoch": epoch,
        "valid": valid,
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    save_judge(out / "best.safetensors", model, classes, cfg, info)


def _update_best_json(out: Path, **fields: Any) -> None:
    path = out / "best.json"
    if not path.is_file():
        return
    doc = json.loads(path.read_text())
    doc.update(fields)
    text = json.dumps(_finite_json(doc), indent=1, allow_nan=False)
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))


__all__ = [
    "JUDGE_FORMAT",
    "JudgeTrainConfig",
    "JudgeTrainResult",
    "METRIC_NAMES",
    "MODELS",
    "build_judge",
    "classification_metrics",
    "evaluate_judge",
    "inception_init_",
    "judge_logits",
    "load_trained_judge",
    "save_judge",
    "train_judge",
]
