"""Training the spectrogram VQGAN codec (SpecVQGAN stage one) on real audio.

The authors' recipe (``configs/{vas,vggsound}_codebook.yaml``, ``train.py``,
``VQModel.training_step``) is the default of :class:`CodecTrainConfig`:

* two Adams with betas (0.5, 0.9): one over the encoder, decoder, quantiser and the
  quant / post-quant convolutions, one over the patch-GAN discriminator;
* learning rate = ``base_learning_rate x processes x batch_size`` (their ``train.py`` rule,
  without gradient accumulation), unless ``learning_rate`` is given;
* each step: the codec's loss (L1 + optional LPAPS + adaptive-weight hinge GAN from
  ``disc_start`` on + codebook loss, :class:`audiorep.losses.vqgan.VQGANLoss`) and its Adam
  step, then the discriminator's hinge loss on the detached reconstruction and its Adam step.
  Before ``disc_start`` the discriminator's loss is exactly 0, so its step is skipped (the
  authors run it to no effect other than moving its BatchNorm statistics);
* batches of random ``crop_frames``-wide windows of the recordings' mel spectrograms
  (:class:`audiorep.specvqgan.audio_corpus.MelCrops`; the authors use 848-wide crops of 10 s
  clips); a batch is a function of ``(seed, step, rank)``.

``restart_dead_codes = N > 0`` (off in the authors' recipe) re-seeds, every N steps, each code
no batch used in those N steps with a random encoder output of the current batch (and clears
its Adam moments): the dead-code restart of SoundStream / Jukebox-style VQ training, which keeps
a small codebook in use on a short budget.

Training stops on a non-finite loss term with an error naming the term and the step (their
issue #20: NaN, then a codebook collapsed to one code), and warns when the held-out code usage
collapses. Every ``eval_every`` steps the held-out recordings are encoded and decoded whole:
mel L1 on the [0, 1] scale, codes in use, perplexity; the best model so far (lowest held-out
L1) is written to ``codec.safetensors`` + ``codec.json`` (:func:`load_trained_codec`), and a
reconstruction is logged as a PNG (when matplotlib is installed) and a WAV (with the given
vocoder, else Griffin-Lim) under ``samples/``.

Runs on CPU, one GPU, or several under ``torchrun`` (DistributedDataParallel for the codec and
the discriminator, whose BatchNorms become SyncBatchNorm, as the authors' ``sync_batchnorm``).
Checkpoints (:mod:`audiorep.training.loop`) hold both models, both optimizers, the position and
the RNG states: a resumed run equals an uninterrupted one.
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

import torch
from torch import nn
from tqdm import tqdm

from audiorep.frontends.specvqgan import N_MELS, from_model_range, to_model_range
from audiorep.losses.lpaps import LPAPS
from audiorep.losses.vqgan import VQGANLoss, VQGANLossConfig, check_finite, warn_if_collapsed
from audiorep.models.patchgan import PatchGANDiscriminator
from audiorep.models.vqgan import SpectrogramVQGAN, VQGANConfig
from audiorep.specvqgan.audio_corpus import AudioCorpus, MelCrops
from audiorep.specvqgan.codec import plot_comparison
from audiorep.specvqgan.griffin_lim import griffin_lim
from audiorep.training.distributed import Distributed, setup_distributed
from audiorep.training.export import load_model_file, save_model_file
from audiorep.training.loop import StopRule, checkpoint, restore
from audiorep.training.rng import seed_everything
from audiorep.training.settings import SettingsRecord

logger = logging.getLogger("audiorep.specvqgan")
LogFn = Callable[[str], None]
#: ``format`` of the files :func:`save_trained_codec` writes.
CODEC_FORMAT = "audiorep.specvqgan.codec"


@dataclasses.dataclass
class CodecTrainConfig(SettingsRecord):
    """Everything that defines a codec training run (JSON-able; stored in checkpoints).

    ``model`` / ``loss``: :class:`VQGANConfig` / :class:`VQGANLossConfig` fields.
    ``lpaps``: build the perceptual loss (random backbone, as every released codebook had: the
    authors' LPAPS weights never loaded); ``False`` or ``loss.perceptual_weight = 0`` skips it.
    """

    SETTINGS_NAME: ClassVar[str] = "codec training settings"

    model: dict[str, Any] = dataclasses.field(default_factory=lambda: VQGANConfig.vas().to_dict())
    loss: dict[str, Any] = dataclasses.field(default_factory=lambda: VQGANLossConfig().to_dict())
    batch_size: int = 3
    base_learning_rate: float = 1e-6
    learning_rate: float | None = None
    betas: tuple[float, float] = (0.5, 0.9)
    crop_frames: int = 848
    seed: int = 23
    lpaps: bool = True
    eval_every: int = 500
    eval_frames: int = 848
    restart_dead_codes: int = 0

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        # validated and completed with the defaults, in JSON's types (tuples as lists), so that
        # a config read back from a checkpoint compares equal
        self.model = json.loads(json.dumps(VQGANConfig.from_dict(self.model).to_dict()))
        self.loss = json.loads(json.dumps(VQGANLossConfig.from_dict(self.loss).to_dict()))
        if self.batch_size < 1 or self.crop_frames < 16 or self.eval_every < 1:
            raise ValueError("batch_size >= 1, crop_frames >= 16 and eval_every >= 1 required")

    def effective_learning_rate(self, world: int = 1) -> float:
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return self.base_learning_rate * world * self.batch_size


class CodecTrainingModule(nn.Module):
    """The codec's modules plus ``loss`` (discriminator, LPAPS): state-dict keys are the
    authors' Lightning layout (``encoder.*`` ... ``loss.discriminator.*``,
    ``loss.perceptual_loss.*``)."""

    name = "specvqgan-codec-training"

    def __init__(self, codec: SpectrogramVQGAN, loss: VQGANLoss, config: CodecTrainConfig):
        super().__init__()
        for child_name, child in codec.named_children():
            self.add_module(child_name, child)
        self.loss = loss
        self.config = config
        self.codec = [codec]  # a list: not registered twice


def build_codec_training(config: CodecTrainConfig) -> CodecTrainingModule:
    """A fresh codec + loss with the authors' initialisation (seeded by the caller)."""
    codec = SpectrogramVQGAN(VQGANConfig.from_dict(config.model))
    loss_cfg = VQGANLossConfig.from_dict(config.loss)
    disc = PatchGANDiscriminator(in_channels=codec.config.out_ch)
    disc.init_weights_()
    lpaps = LPAPS() if (config.lpaps and loss_cfg.perceptual_weight) else None
    return CodecTrainingModule(codec, VQGANLoss(loss_cfg, disc, lpaps), config)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_codec(
    codec: SpectrogramVQGAN,
    mels: list[torch.Tensor],
    *,
    chunk_frames: int = 848,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Held-out quality of ``codec`` on [0, 1] mels ``(80, T)`` encoded whole (in chunks of
    ``chunk_frames``, a multiple of 16): ``mel_l1`` (mean |S - S_rec| on the [0, 1] scale, over
    the ``16 floor(T/16)`` frames the codec returns), ``baseline_l1`` (the same for every band
    replaced by its mean over the recording: what a codec that keeps no detail scores),
    ``codes_used`` (distinct codes over all grids), ``perplexity`` and ``frames``."""
    chunk = max(16, chunk_frames // 16 * 16)
    was_training = codec.training
    codec.eval()
    abs_err = base_err = 0.0
    frames = 0
    counts = torch.zeros(codec.config.n_embed, dtype=torch.long)
    for mel in mels:
        usable = mel.shape[-1] // 16 * 16
        if usable == 0:
            continue
        spec = mel[:, :usable]
        for a in range(0, usable, chunk):
            piece = spec[:, a : a + chunk]
            codes = codec.encode_to_codes(to_model_range(piece)[None, None].to(device))
            counts += torch.bincount(codes.flatten().cpu(), minlength=codec.config.n_embed)
            rec = from_model_range(codec.decode_codes(codes)[0, 0].cpu())
            abs_err += float((rec - piece).abs().sum())
        base = spec.mean(dim=-1, keepdim=True)
        base_err += float((spec - base).abs().sum())
        frames += usable
    codec.train(was_training)
    n = max(frames * N_MELS, 1)
    p = counts.double() / max(int(counts.sum()), 1)
    entropy = -float((p[p > 0] * p[p > 0].log()).sum())
    return {
        "mel_l1": abs_err / n,
        "baseline_l1": base_err / n,
        "codes_used": int((counts > 0).sum()),
        "n_codes": codec.config.n_embed,
        "perplexity": math.exp(entropy),
        "frames": frames,
        "code_counts": counts.tolist(),
    }


def _log_sample(
    out: Path,
    step: int,
    codec: SpectrogramVQGAN,
    mel: torch.Tensor,
    vocoder: Callable[[torch.Tensor], torch.Tensor] | None,
    device: torch.device,
) -> None:
    """``samples/step-<N>.{png,wav}``: original vs reconstruction of the first held-out mel."""
    import soundfile as sf

    width = min(mel.shape[-1], 848) // 16 * 16
    if width == 0:
        return
    spec = mel[:, :width]
    with torch.no_grad():
        rec = from_model_range(codec.reconstruct(to_model_range(spec)[None, None].to(device)))
    rec = rec[0, 0].cpu().clamp(0, 1)
    folder = out / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    wave = vocoder(rec) if vocoder is not None else griffin_lim(rec, iterations=32)
    sf.write(folder / f"step-{step:08d}.wav", wave.numpy(), 22050, subtype="PCM_16")
    plot_comparison(folder / f"step-{step:08d}.png", spec, rec, label=f"step {step}")


# ----------------------------------------------------------------------------- outputs


def save_trained_codec(
    path: str | Path, codec: SpectrogramVQGAN, info: dict[str, Any] | None = None
) -> Path:
    """``path`` (.safetensors: the codec's authors'-keyed state dict, config in the metadata)
    and its ``.json`` sidecar."""
    return save_model_file(
        path, codec.state_dict(), format=CODEC_FORMAT, config=codec.config.to_dict(), info=info
    )


def load_trained_codec(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[SpectrogramVQGAN, dict[str, Any]]:
    """A codec written by :func:`save_trained_codec` (file or the folder holding
    ``codec.safetensors``), in eval mode, and its info; weights load strictly."""
    path = Path(path)
    if path.is_dir():
        path = path / "codec.safetensors"
    sd, info = load_model_file(path, CODEC_FORMAT)
    codec = SpectrogramVQGAN(VQGANConfig.from_dict(info["config"]))
    codec.load_state_dict(sd, strict=True)
    return codec.to(device).eval(), info


@dataclasses.dataclass
class CodecTrainResult:
    codec: SpectrogramVQGAN
    step: int
    seconds: float
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    last_checkpoint: Path | None


# ----------------------------------------------------------------------------- the loop


def train_codec(
    train: AudioCorpus,
    out_dir: str | Path,
    config: CodecTrainConfig | None = None,
    *,
    heldout: AudioCorpus | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    max_cpu_seconds: float | None = None,
    checkpoint_every: int = 500,
    keep: int | None = 2,
    vocoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = True,
    log: LogFn | None = None,
) -> CodecTrainResult:
    """Train (or resume) a codec on ``train``; see the module docstring.

    ``max_steps`` / ``max_seconds`` end this call (checkpointed; call again to continue);
    ``vocoder``: ``(80, T) [0, 1] mel -> (256 T,) waveform`` for the logged audio.
    """
    cfg = config or CodecTrainConfig()
    log = log or logger.info
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dist, dev = setup_distributed(device)
    t0 = time.perf_counter()
    stop = StopRule(max_steps, max_seconds, max_cpu_seconds)
    try:
        return _train(
            train, out, cfg, heldout, dist, dev, resume, stop,
            checkpoint_every, keep, vocoder, progress, log, t0,
        )  # fmt: skip
    finally:
        dist.close()


@torch.no_grad()
def _restart_dead_codes(
    codec: SpectrogramVQGAN,
    opt: torch.optim.Optimizer,
    usage: torch.Tensor,
    z: torch.Tensor,
    dist: Distributed,
) -> int:
    """Re-seed unused codebook rows with random rows of ``z`` (B, C, H, W); returns how many."""
    if dist.world > 1:
        torch.distributed.all_reduce(usage)
    dead = torch.nonzero(usage == 0).flatten()
    if dead.numel() == 0:
        return 0
    table = codec.quantize.embedding.weight
    rows = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    pick = torch.randint(0, rows.shape[0], (dead.numel(),))
    new = rows[pick].to(table.dtype)
    if dist.world > 1:
        torch.distributed.broadcast(new, 0)
    table[dead.to(table.device)] = new.to(table.device)
    state = opt.state.get(table, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][dead.to(table.device)] = 0
    return int(dead.numel())


def _train(
    train: AudioCorpus,
    out: Path,
    cfg: CodecTrainConfig,
    heldout: AudioCorpus | None,
    dist: Distributed,
    dev: torch.device,
    resume: bool,
    stop: StopRule,
    checkpoint_every: int,
    keep: int | None,
    vocoder: Callable[[torch.Tensor], torch.Tensor] | None,
    progress: bool,
    log: LogFn,
    t0: float,
) -> CodecTrainResult:
    seed_everything(cfg.seed)
    module = build_codec_training(cfg).to(dev)
    codec = module.codec[0]
    loss_fn: VQGANLoss = module.loss
    lr = cfg.effective_learning_rate(dist.world)
    ae_params = [p for n, p in module.named_parameters() if not n.startswith("loss.")]
    opt_ae = torch.optim.Adam(ae_params, lr=lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(loss_fn.discriminator.parameters(), lr=lr, betas=cfg.betas)
    optimizers = {"autoencoder": opt_ae, "discriminator": opt_d}
    forward: nn.Module = codec
    disc: nn.Module = loss_fn.discriminator
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [dev.index] if dev.type == "cuda" else None
        forward = DDP(codec, device_ids=ids)
        loss_fn.discriminator = DDP(nn.SyncBatchNorm.convert_sync_batchnorm(disc), device_ids=ids)
    crops = MelCrops(train, cfg.crop_frames, cfg.seed)
    held = heldout.mels() if heldout is not None else []
    ckpt_dir = out / "checkpoints"
    step, trainer, last = restore(
        ckpt_dir, module, optimizers, resume=resume, dist=dist, config=cfg.to_dict()
    )
    trainer = trainer or {"history": [], "best": None, "running": {}, "seconds": 0.0}
    if dist.main:
        n_codec = sum(p.numel() for p in codec.parameters())
        log(
            f"codec: {n_codec / 1e6:.3f} M parameters, {codec.config.n_embed} codes; "
            f"{len(train)} recordings ({train.seconds / 60:.1f} min) for training, "
            f"{len(held)} held out; lr {lr:g}; device {dev}, {dist.world} process(es)"
            + (f"; resumed at step {step} from {last}" if last else "")
        )
    disc_start = int(loss_fn.config.disc_start)
    running: dict[str, float] = dict(trainer["running"])
    t_run = time.perf_counter()
    seconds_before = float(trainer["seconds"])

    def save() -> None:
        nonlocal last
        trainer["running"] = running
        trainer["seconds"] = seconds_before + time.perf_counter() - t_run
        last = checkpoint(
            ckpt_dir, module, optimizers, step=step, trainer=trainer, dist=dist, keep=keep,
            config=cfg.to_dict(),
        )  # fmt: skip

    def evaluate() -> None:
        if not held or not dist.main:
            dist.barrier()
            return
        metrics = evaluate_codec(codec, held, chunk_frames=cfg.eval_frames, device=dev)
        warn_if_collapsed(torch.tensor(metrics["code_counts"]), step)
        train_terms = {k: v / max(running.get("_n", 1), 1) for k, v in running.items() if k != "_n"}
        record = {"step": step, "heldout": {k: v for k, v in metrics.items() if k != "code_counts"},
                  "train": train_terms}  # fmt: skip
        trainer["history"].append(record)
        best = trainer["best"]
        if best is None or metrics["mel_l1"] < best["heldout"]["mel_l1"]:
            trainer["best"] = record
            save_trained_codec(
                out / "codec.safetensors", codec, {"best": record, "train_config": cfg.to_dict()}
            )
        m = record["heldout"]
        log(
            f"step {step}: held-out mel L1 {m['mel_l1']:.4f} (per-band-mean baseline "
            f"{m['baseline_l1']:.4f}), {m['codes_used']}/{m['n_codes']} codes, perplexity "
            f"{m['perplexity']:.1f}; train "
            + " ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in train_terms.items())
        )
        _log_sample(out, step, codec, held[0], vocoder, dev)
        running.clear()
        dist.barrier()

    captured: list[torch.Tensor] = []
    usage = torch.zeros(codec.config.n_embed, dtype=torch.long)
    if cfg.restart_dead_codes:
        codec.quant_conv.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    bar = tqdm(
        desc="codec", initial=step, total=stop.max_steps, disable=not (progress and dist.main)
    )
    module.train()
    if loss_fn.perceptual_loss is not None:
        loss_fn.perceptual_loss.eval()  # LPAPS dropout off (the authors' was on by accident)
    while not stop.reached(step, dist):
        x = crops.batch(step, cfg.batch_size, dist.rank).to(dev)
        captured.clear()
        xrec, qloss, info = forward(x)
        ae_loss, logs = loss_fn.generator_loss(
            qloss, x, xrec, step, last_layer=codec.get_last_layer(), split="train"
        )
        check_finite(logs, step)
        opt_ae.zero_grad(set_to_none=True)
        ae_loss.backward()
        opt_ae.step()
        if step >= disc_start:
            d_loss, d_logs = loss_fn.discriminator_loss(x, xrec.detach(), step, split="train")
            check_finite(d_logs, step)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            logs = {**logs, **d_logs}
        if cfg.restart_dead_codes:
            usage += torch.bincount(info[2].cpu(), minlength=codec.config.n_embed)
            if (step + 1) % cfg.restart_dead_codes == 0:
                _restart_dead_codes(codec, opt_ae, usage, captured[-1], dist)
                usage.zero_()
        step += 1
        for k in ("train/nll_loss", "train/quant_loss", "train/g_loss", "train/disc_loss"):
            if k in logs:
                running[k] = running.get(k, 0.0) + float(logs[k])
        running["_n"] = running.get("_n", 0) + 1
        bar.update(1)
        bar.set_postfix(nll=f"{float(logs['train/nll_loss']):.4f}")
        if step % cfg.eval_every == 0:
            evaluate()
        if checkpoint_every and step % checkpoint_every == 0:
            save()
    bar.close()
    # only rank 0 keeps the history: every rank must take the same branch (evaluate has
    # collectives), so rank 0 decides
    if dist.from_main(not trainer["history"] or trainer["history"][-1]["step"] != step):
        evaluate()
    save()
    seconds = time.perf_counter() - t0
    return CodecTrainResult(codec.eval(), step, seconds, trainer["history"], trainer["best"], last)


__all__ = [
    "CODEC_FORMAT",
    "CodecTrainConfig",
    "CodecTrainResult",
    "CodecTrainingModule",
    "build_codec_training",
    "evaluate_codec",
    "load_trained_codec",
    "save_trained_codec",
    "train_codec",
]
