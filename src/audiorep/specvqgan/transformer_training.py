"""Training SpecVQGAN's code transformer (stage two) on codec tokens.

The authors' recipe (``configs/vas_transformer.yaml``, ``train.py``,
``Net2NetTransformer.configure_optimizers``; specs: SpecVQGAN §3.1, §3.4) is the default of
:class:`TransformerTrainConfig`:

* the objective: teacher-forced next-token cross-entropy over the 265 column-major codes of a
  clip, with the condition (features, class, or both) as a prefix
  (:meth:`audiorep.specvqgan.transformer.CodeTransformer.loss`); the codec is frozen;
* AdamW, betas (0.9, 0.95), weight decay 0.01 on the weights of ``nn.Linear`` layers only: no
  decay on biases, LayerNorms, the token / class Embeddings, the Conv1d feature embedder or
  ``pos_emb`` (:func:`configure_optimizer`);
* learning rate = ``base_learning_rate x processes x batch_size``: their ``train.py`` sets
  ``model.learning_rate = accumulate_grad_batches * ngpu * batch_size * base_lr`` (base 1e-6
  for VAS, 5e-6 for VGGSound; with 16 clips per GPU on 4 GPUs, 6.4e-5 for VAS), unless
  ``learning_rate`` is given;
* early stopping on the validation loss, mode min, patience 2 (Lightning's ``EarlyStopping``:
  stop after ``patience`` evaluations in a row without a new minimum), evaluated once per
  epoch (``eval_every`` None) or every ``eval_every`` steps; the model with the lowest
  validation loss is kept;
* the authors' GPT for VAS features: 24 layers, 16 heads, width 1024, no dropout.

Extras, off by default: gradient clipping (``grad_clip``, global L2 norm), linear warm-up
(``warmup_steps``) and a cosine decay (``lr_schedule="cosine"`` over ``schedule_steps``).

Data: :class:`audiorep.specvqgan.code_dataset.TokenSet` (codes already encoded). Epochs visit
every training sequence once in a seeded order (``default_rng([seed, epoch])``); a batch is a
function of ``(seed, step, rank)``, so a resumed run draws the batches an uninterrupted one
would, and under torchrun each process takes its own slice of the epoch's order.

Outputs in ``out_dir``: resumable checkpoints (``checkpoints/``, :mod:`audiorep.training.loop`:
the GPT, AdamW's state, the position, the early-stopping state and every rank's RNG), the best
model so far (``transformer.safetensors`` + ``.json`` with its history, via
:func:`audiorep.specvqgan.transformer.save_transformer`; load it with
:func:`~audiorep.specvqgan.transformer.load_transformer`), ``log.jsonl`` (one line per
evaluation), and, with matplotlib, one sampled spectrogram per evaluation (``samples/``). A
non-finite loss stops the run before the optimizer step, naming the step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from audiorep.frontends.specvqgan import from_model_range
from audiorep.hashing import state_dict_sha256
from audiorep.models.gpt import GPTConfig
from audiorep.models.vqgan import SpectrogramVQGAN
from audiorep.specvqgan.code_dataset import KINDS, TokenSet
from audiorep.specvqgan.transformer import CodeTransformer, TransformerSpec, save_transformer
from audiorep.training.distributed import Distributed, setup_distributed
from audiorep.training.export import finite_json
from audiorep.training.loop import StopRule, checkpoint, restore
from audiorep.training.rng import seed_everything
from audiorep.training.settings import SettingsRecord

logger = logging.getLogger("audiorep.specvqgan")
LogFn = Callable[[str], None]
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class TransformerTrainConfig(SettingsRecord):
    """A transformer training run (JSON-able; stored in checkpoints and in the model's JSON).

    Model: ``kind`` (``"feature"``, ``"class"``, ``"feature+class"``), the GPT's ``n_layer``,
    ``n_head``, ``n_embd`` and dropouts; ``feat_depth`` / ``feat_sample_size`` for feature
    conditions. The vocabulary (the codec's codes), the block size (``condition + 265``, the
    authors' rule) and the classes come from the codec and the data.

    Optimisation: see the module docstring. ``epochs`` None: until early stopping (or a
    budget) ends the run. ``patience`` 0 turns early stopping off.
    """

    SETTINGS_NAME: ClassVar[str] = "transformer training settings"

    kind: str = "feature"
    n_layer: int = 24
    n_head: int = 16
    n_embd: int = 1024
    embd_pdrop: float = 0.0
    resid_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    feat_depth: int = 2048
    feat_sample_size: int = 212
    batch_size: int = 16
    base_learning_rate: float = 1e-6
    learning_rate: float | None = None
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.01
    epochs: int | None = None
    eval_every: int | None = None
    patience: int = 2
    grad_clip: float | None = None
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    schedule_steps: int = 0
    min_lr_ratio: float = 0.0
    seed: int = 23
    sample_top_k: int | None = None

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        if min(self.n_layer, self.n_head, self.n_embd, self.batch_size) < 1:
            raise ValueError("n_layer, n_head, n_embd and batch_size must be >= 1")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError(
                f"eval_every must be >= 1 (or None: every epoch), got {self.eval_every}"
            )
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1 (or None), got {self.epochs}")
        if self.patience < 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("patience, warmup_steps and weight_decay must be >= 0")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if self.lr_schedule == "cosine" and self.schedule_steps <= self.warmup_steps:
            raise ValueError("a cosine schedule needs schedule_steps > warmup_steps")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 (or None), got {self.grad_clip}")
        if "feature" in self.kind and (self.feat_depth < 1 or self.feat_sample_size < 1):
            raise ValueError(
                "a feature-conditioned model needs feat_depth and feat_sample_size >= 1"
            )

    @property
    def condition_length(self) -> int:
        """S: condition positions in front of the tokens."""
        return (self.feat_sample_size if "feature" in self.kind else 0) + ("class" in self.kind)

    def effective_learning_rate(self, world: int = 1) -> float:
        """``learning_rate``, else ``base_learning_rate x world x batch_size`` (the authors')."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return self.base_learning_rate * world * self.batch_size

    def learning_rate_at(self, step: int, world: int = 1) -> float:
        """The learning rate of optimizer step ``step`` (0-based): warm-up, then constant or
        cosine down to ``min_lr_ratio x lr`` at ``schedule_steps``."""
        lr = self.effective_learning_rate(world)
        if self.warmup_steps and step < self.warmup_steps:
            return lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "cosine":
            span = self.schedule_steps - self.warmup_steps
            t = min(max(step - self.warmup_steps, 0) / span, 1.0)
            return lr * (
                self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
            )
        return lr

    def gpt_config(self, vocab_size: int, grid: tuple[int, int] = (5, 53)) -> GPTConfig:
        """The GPT for a codec of ``vocab_size`` codes (block = condition + H x W)."""
        return GPTConfig(
            vocab_size=int(vocab_size),
            block_size=self.condition_length + grid[0] * grid[1],
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            embd_pdrop=self.embd_pdrop,
            resid_pdrop=self.resid_pdrop,
            attn_pdrop=self.attn_pdrop,
        )


def transformer_spec(
    config: TransformerTrainConfig,
    codec: SpectrogramVQGAN,
    classes: tuple[str, ...] | list[str] = (),
    *,
    codec_name: str = "",
    grid: tuple[int, int] = (5, 53),
) -> TransformerSpec:
    """The :class:`TransformerSpec` a run of ``config`` trains over ``codec``."""
    if "class" in config.kind and not classes:
        raise ValueError(f"a {config.kind!r} model needs class names (the data has none)")
    return TransformerSpec(
        gpt=config.gpt_config(codec.config.n_embed, grid),
        kind=config.kind,
        feat_depth=config.feat_depth if "feature" in config.kind else 0,
        feat_sample_size=config.feat_sample_size if "feature" in config.kind else 0,
        n_classes=len(classes) if "class" in config.kind else 0,
        classes=tuple(classes) if "class" in config.kind else (),
        grid=grid,
        codec=codec_name,
        codec_sha256=state_dict_sha256(codec),
    )


# ------------------------------------------------------------------------------ optimizer


def parameter_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """``(decayed, not decayed)`` parameter names of a GPT (or a CodeTransformer's GPT): the
    weights of ``nn.Linear`` modules are decayed; everything else (biases, LayerNorm,
    Embedding, Conv1d embedder, ``pos_emb``) is not. Frozen parameters are left out."""
    gpt = model.transformer if isinstance(model, CodeTransformer) else model
    decay: set[str] = set()
    for mod_name, mod in gpt.named_modules():
        if isinstance(mod, nn.Linear):
            decay.add(f"{mod_name}.weight" if mod_name else "weight")
    names = [n for n, p in gpt.named_parameters() if p.requires_grad]
    return [n for n in names if n in decay], [n for n in names if n not in decay]


def configure_optimizer(
    model: nn.Module,
    config: TransformerTrainConfig | None = None,
    *,
    learning_rate: float | None = None,
) -> torch.optim.AdamW:
    """AdamW over the GPT's parameters in two groups (:func:`parameter_groups`): weight decay
    ``config.weight_decay`` on the Linear weights, 0 elsewhere; betas ``config.betas``.
    ``learning_rate`` defaults to ``config.effective_learning_rate()``. The codec (frozen) is
    not in it."""
    cfg = config or TransformerTrainConfig()
    gpt = model.transformer if isinstance(model, CodeTransformer) else model
    params = dict(gpt.named_parameters())
    decay, no_decay = parameter_groups(gpt)
    lr = cfg.effective_learning_rate() if learning_rate is None else float(learning_rate)
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": cfg.weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas)


# ------------------------------------------------------------------------------ batches


class EpochBatches:
    """Batch ``step`` of an epoch-based run: epoch ``e`` visits the training rows in the order
    ``default_rng([seed, e]).permutation(n)``; each step takes ``batch_size x world``
    consecutive rows (the last incomplete batch of an epoch is dropped) and rank ``r`` gets
    its ``batch_size``-row slice."""

    def __init__(self, n: int, batch_size: int, seed: int, world: int = 1):
        self.n, self.batch_size, self.seed, self.world = (
            int(n),
            int(batch_size),
            int(seed),
            int(world),
        )
        self.steps_per_epoch = self.n // (self.batch_size * self.world)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{n} training sequences are fewer than one batch of {batch_size} x {world} "
                "process(es); lower the batch size"
            )
        self._order: tuple[int, torch.Tensor] | None = None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def indices(self, step: int, rank: int = 0) -> torch.Tensor:
        """``(batch_size,)`` int64 row indices of batch ``step`` on ``rank``."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._order = (epoch, torch.from_numpy(perm))
        start = (i * self.world + rank) * self.batch_size
        return self._order[1][start : start + self.batch_size]


# ------------------------------------------------------------------------------ evaluation


def teacher_forced_loss(
    gpt: nn.Module, tokens: torch.Tensor, condition: Any, *, reduction: str = "mean"
) -> torch.Tensor:
    """Next-token cross-entropy of ``gpt`` (a GPT, or a DDP wrapping one) on ``tokens`` (B, L):
    it is fed the ``S`` condition positions and ``tokens[:, :-1]``, and output position
    ``S - 1 + j`` predicts token ``j`` (the authors' objective, as
    :meth:`CodeTransformer.loss`, but through the module given so that DDP sees the call)."""
    logits, _ = gpt(tokens[:, :-1], condition)
    logits = logits[:, -tokens.shape[1] :]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), reduction=reduction
    )


@torch.no_grad()
def evaluate_loss(
    model: CodeTransformer, data: TokenSet, *, batch_size: int = 32
) -> dict[str, float]:
    """Mean next-token cross-entropy (nats) and top-1 token accuracy of ``model`` on ``data``
    (every token of every row counts once), in eval mode."""
    was = model.transformer.training
    model.transformer.eval()
    total = hits = 0.0
    count = 0
    dev = model.device
    for a in range(0, len(data), batch_size):
        idx = torch.arange(a, min(a + batch_size, len(data)))
        tokens = data.tokens[idx].to(dev)
        cond = model.condition_to(data.condition(idx, model.kind))
        logits, _ = model.transformer(tokens[:, :-1], cond)
        logits = logits[:, -tokens.shape[1] :].float()
        total += float(
            F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), reduction="sum"
            )
        )
        hits += float((logits.argmax(-1) == tokens).sum())
        count += tokens.numel()
    model.transformer.train(was)
    return {"loss": total / max(count, 1), "token_accuracy": hits / max(count, 1), "tokens": count}


def _log_sample(
    out: Path, step: int, model: CodeTransformer, valid: TokenSet, top_k: int, round_: int
) -> None:
    """``samples/step-<N>.png``: a sample for the condition of one validation clip (a different
    one each round) under that clip's codec reconstruction."""
    from audiorep.specvqgan.codec import plot_comparison
    from audiorep.specvqgan.sampling import SamplingSettings, sample_tokens

    originals = valid.originals()
    if not len(originals):
        return
    i = round_ % len(originals)
    cond = originals.condition([i], model.kind)
    was = model.transformer.training
    tokens = sample_tokens(model, cond, SamplingSettings(top_k=top_k), seed=step)
    model.transformer.train(was)
    sample = from_model_range(model.decode(tokens)[0, 0].cpu()).clamp(0, 1)
    real = from_model_range(model.decode(originals.tokens[i : i + 1])[0, 0].cpu()).clamp(0, 1)
    folder = out / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    what = originals.clip_ids[i]
    plot_comparison(folder / f"step-{step:08d}.png", real, sample, title=f"step {step}: {what}",
                    label=f"sample (top-k {top_k})")  # fmt: skip


# ------------------------------------------------------------------------------ the loop


class _TrainingModule(nn.Module):
    """What checkpoints hold: the GPT only (the codec is frozen and fixed by its fingerprint)."""

    name = "specvqgan-transformer-training"

    def __init__(self, model: CodeTransformer):
        super().__init__()
        self.transformer = model.transformer
        self.config = model.spec


@dataclasses.dataclass
class TransformerTrainResult:
    model: CodeTransformer
    step: int
    seconds: float
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    stopped_early: bool
    last_checkpoint: Path | None
    out_dir: Path


def train_transformer(
    train: TokenSet,
    valid: TokenSet,
    out_dir: str | Path,
    config: TransformerTrainConfig | None = None,
    *,
    codec: SpectrogramVQGAN,
    codec_name: str = "",
    device: str | torch.device | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    max_cpu_seconds: float | None = None,
    checkpoint_every: int = 500,
    keep: int | None = 2,
    samples: bool = True,
    progress: bool = True,
    log: LogFn | None = None,
    info: dict[str, Any] | None = None,
) -> TransformerTrainResult:
    """Train (or resume) a code transformer on ``train``, selecting on ``valid``; see the module
    docstring.

    Args:
        train / valid: token sets (:mod:`audiorep.specvqgan.code_dataset`) encoded with ``codec``.
        codec: the frozen codec (its fingerprint goes into the saved model).
        codec_name: how to load that codec again (a ``load_codec`` spec, e.g. ``"small"``).
        max_steps / max_seconds / max_cpu_seconds: end this call (checkpointed; call again to
            continue). ``max_cpu_seconds`` counts this process's CPU time (fair on a shared
            machine).
        samples: write one sampled spectrogram PNG per evaluation (needs matplotlib).
        info: extra fields for the saved model's JSON (e.g. the dataset's description).
    """
    cfg = config or TransformerTrainConfig()
    log = log or logger.info
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if train.classes != valid.classes:
        raise ValueError("the training and validation sets have different classes")
    if len(valid) == 0:
        raise ValueError("the validation set is empty: early stopping needs it")
    dist, dev = setup_distributed(device)
    stop = StopRule(max_steps, max_seconds, max_cpu_seconds)
    t0 = time.perf_counter()
    try:
        return _train(train, valid, out, cfg, codec, codec_name, dist, dev, resume, stop,
                      checkpoint_every, keep, samples, progress, log, info or {}, t0)  # fmt: skip
    finally:
        dist.close()


def _train(
    train: TokenSet,
    valid: TokenSet,
    out: Path,
    cfg: TransformerTrainConfig,
    codec: SpectrogramVQGAN,
    codec_name: str,
    dist: Distributed,
    dev: torch.device,
    resume: bool,
    stop: StopRule,
    checkpoint_every: int,
    keep: int | None,
    samples: bool,
    progress: bool,
    log: LogFn,
    info: dict[str, Any],
    t0: float,
) -> TransformerTrainResult:
    seed_everything(cfg.seed)
    spec = transformer_spec(cfg, codec, train.classes, codec_name=codec_name)
    if train.sequence_length != spec.grid[0] * spec.grid[1]:
        raise ValueError(
            f"training sequences have {train.sequence_length} tokens; the model expects "
            f"{spec.grid[0] * spec.grid[1]}"
        )
    if int(train.tokens.max()) >= spec.gpt.vocab_size:
        raise ValueError("token ids exceed the codec's codebook: encoded with another codec?")
    model = CodeTransformer.build(spec, codec).to(dev)
    module = _TrainingModule(model)
    lr = cfg.effective_learning_rate(dist.world)
    opt = configure_optimizer(model, cfg, learning_rate=lr)
    optimizers = {"adamw": opt}
    forward: nn.Module = model.transformer
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        forward = DDP(model.transformer, device_ids=[dev.index] if dev.type == "cuda" else None)
    batches = EpochBatches(len(train), cfg.batch_size, cfg.seed, dist.world)
    eval_every = cfg.eval_every or batches.steps_per_epoch
    total_steps = cfg.epochs * batches.steps_per_epoch if cfg.epochs else None
    if total_steps is not None:
        stop.max_steps = total_steps if stop.max_steps is None else min(stop.max_steps, total_steps)
    top_k = cfg.sample_top_k or max(1, spec.gpt.vocab_size // 2)
    ckpt_dir = out / "checkpoints"
    run_config = {**cfg.to_dict(), "spec": spec.to_dict(), "train_rows": len(train)}
    step, trainer, last = restore(
        ckpt_dir, module, optimizers, resume=resume, dist=dist, config=run_config
    )
    trainer = trainer or {"history": [], "best": None, "running": {}, "seconds": 0.0,
                          "cpu_seconds": 0.0, "bad_rounds": 0, "stopped_early": False}  # fmt: skip
    n_params = sum(p.numel() for p in model.transformer.parameters())
    if dist.main:
        log(
            f"transformer ({spec.kind}): {n_params / 1e6:.3f} M parameters, {spec.gpt.n_layer} "
            f"layers x {spec.gpt.n_head} heads x {spec.gpt.n_embd}, vocab {spec.gpt.vocab_size}, "
            f"block {spec.gpt.block_size}; {len(train)} training / {len(valid)} validation "
            f"sequences; batch {cfg.batch_size} x {dist.world}, {batches.steps_per_epoch} steps "
            f"per epoch, lr {lr:g}; device {dev}"
            + (f"; resumed at step {step} from {last}" if last else "")
        )
    running: dict[str, float] = dict(trainer["running"])
    t_run, cpu_run = time.perf_counter(), time.process_time()
    seconds_before, cpu_before = float(trainer["seconds"]), float(trainer.get("cpu_seconds", 0.0))

    def elapsed() -> tuple[float, float]:
        return (
            seconds_before + time.perf_counter() - t_run,
            cpu_before + time.process_time() - cpu_run,
        )

    def save() -> None:
        nonlocal last
        trainer["running"] = running
        trainer["seconds"], trainer["cpu_seconds"] = elapsed()
        last = checkpoint(ckpt_dir, module, optimizers, step=step, trainer=trainer, dist=dist,
                          keep=keep, config=run_config)  # fmt: skip

    def evaluate(regular: bool = True) -> bool:
        """Validation loss, best model, early stopping; True when the run should stop.

        A ``regular`` evaluation is one every ``eval_every`` steps; the extra one at the end of
        a call that stopped between them (a budget) may update the saved best model, but it
        neither counts for early stopping nor resets the running training loss, so that a run
        resumed after it continues exactly as an uninterrupted one."""
        stop_now = False
        if dist.main:
            metrics = evaluate_loss(model, valid, batch_size=max(cfg.batch_size, 16))
            n = max(running.get("_n", 0), 1)
            wall, cpu = elapsed()
            record = {
                "step": step,
                "epoch": step / batches.steps_per_epoch,
                "valid": metrics,
                "train_loss": running.get("loss", float("nan")) / n if running.get("_n") else None,
                "lr": cfg.learning_rate_at(max(step - 1, 0), dist.world),
                "seconds": round(wall, 1),
                "cpu_seconds": round(cpu, 1),
                "regular": regular,
            }
            trainer["history"].append(record)
            best = trainer["best"]
            improved = best is None or metrics["loss"] < best["valid"]["loss"]
            if improved:
                trainer["best"] = record
                save_transformer(model, out / "transformer.safetensors", finite_json({
                    **info, "best": record, "history": trainer["history"],
                    "train_config": cfg.to_dict(), "parameters": n_params,
                    "train_sequences": len(train), "valid_sequences": len(valid),
                }))  # fmt: skip
            if regular:
                # Lightning's EarlyStopping: a new minimum of the (regular) evaluations resets
                # the count; ``patience`` evaluations in a row without one stop the run
                floor = trainer.get("best_regular_loss")
                if floor is None or metrics["loss"] < floor:
                    trainer["best_regular_loss"] = metrics["loss"]
                    trainer["bad_rounds"] = 0
                else:
                    trainer["bad_rounds"] += 1
                if cfg.patience and trainer["bad_rounds"] >= cfg.patience:
                    stop_now = True
                    trainer["stopped_early"] = True
                trainer["rounds"] = trainer.get("rounds", 0) + 1
            with open(out / "log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(finite_json(record)) + "\n")
            tl = record["train_loss"]
            log(
                f"step {step} (epoch {record['epoch']:.2f}): valid loss {metrics['loss']:.4f} "
                f"(token acc {metrics['token_accuracy']:.3f})"
                + (f", train loss {tl:.4f}" if tl is not None else "")
                + ("  * best" if improved else "")
                + (f"  ({trainer['bad_rounds']}/{cfg.patience} without a new best)"
                   if regular and trainer["bad_rounds"] else "")
                + ("" if regular else " (end of this call)")
                + (f"; {cpu:.0f} CPU-s" if cpu else "")
            )  # fmt: skip
            if samples:
                _log_sample(out, step, model, valid, top_k, trainer.get("rounds", 0))
            if regular:
                running.clear()
        return bool(dist.from_main(stop_now))

    show = progress and dist.main
    bar = tqdm(desc="transformer", initial=step, total=stop.max_steps, disable=not show)
    model.train()
    early = bool(trainer.get("stopped_early"))
    while not early and not stop.reached(step, dist):
        idx = batches.indices(step, dist.rank)
        tokens = train.tokens[idx].to(dev)
        cond = model.condition_to(train.condition(idx, spec.kind))
        for g in opt.param_groups:
            g["lr"] = cfg.learning_rate_at(step, dist.world)
        loss = teacher_forced_loss(forward, tokens, cond)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(
                f"transformer training stopped: the loss is {value} at step {step}; the last "
                f"checkpoint ({last or 'none yet'}) is intact (lower the learning rate, set "
                "grad_clip, and resume)"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.transformer.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        running["loss"] = running.get("loss", 0.0) + value
        running["_n"] = running.get("_n", 0) + 1
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}", epoch=f"{step / batches.steps_per_epoch:.1f}")
        if step % eval_every == 0:
            early = evaluate()
        if early or (checkpoint_every and step % checkpoint_every == 0):
            save()
    bar.close()
    # only rank 0 keeps the history: it decides, every rank joins (evaluate broadcasts)
    pending = not trainer["history"] or trainer["history"][-1]["step"] != step
    if not early and dist.from_main(pending):
        evaluate(regular=False)
    save()
    if dist.main and early:
        log(
            f"early stopping at step {step}: no better validation loss in {cfg.patience} "
            "evaluations"
        )
    best_model = model
    if dist.main and (out / "transformer.safetensors").is_file():
        from audiorep.specvqgan.transformer import load_trained_transformer

        best_model, _ = load_trained_transformer(
            out / "transformer.safetensors", codec=codec, device=dev
        )
    return TransformerTrainResult(
        best_model.eval(), step, time.perf_counter() - t0, trainer["history"], trainer["best"],
        bool(trainer.get("stopped_early")), last, out,
    )  # fmt: skip


__all__ = [
    "EpochBatches",
    "TransformerTrainConfig",
    "TransformerTrainResult",
    "configure_optimizer",
    "evaluate_loss",
    "parameter_groups",
    "teacher_forced_loss",
    "train_transformer",
    "transformer_spec",
]
