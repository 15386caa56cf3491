"""Training the MelGAN vocoder (SpecVQGAN's ``vocoder/``) on real audio.

The authors' recipe (``vocoder/scripts/train.py`` with ``args.yml``) is the default of
:class:`VocoderTrainConfig`: generator ngf 32, 3 residual units, ratios [8, 8, 2, 2];
multi-scale discriminator (3 scales, ndf 16, 4 layers, downsampling 4); Adam lr 1e-4, betas
(0.5, 0.9) for both; batch 64 of 8192-sample crops (peak-normalised to 0.95, scaled by
U(0.3, 1)); per step the discriminator's hinge loss and step, then the generator's adversarial
+ 10 x feature-matching loss against the updated discriminator
(:func:`audiorep.losses.melgan.melgan_training_step`).

``disc_start`` > 0 trains the generator alone on the mel L1 loss for that many steps first
(the discriminator then starts from its initialisation; Parallel WaveGAN's recipe warms its
generator up the same way). The authors start both at once (``disc_start = 0``).

``mel_loss_weight`` adds an L1 loss between the target mel and the generated waveform's mel
(not in the authors' recipe, which only monitors that distance; HiFi-GAN-style vocoders use it
and it speeds up training on a small budget a lot). The run reports which it used.

Every ``eval_every`` steps the held-out recordings are vocoded from their mels and scored by
the mel L1 of the result on the [0, 1] scale (the authors' ``mel_error``); the best generator
is written to ``vocoder.safetensors`` + ``.json`` (:func:`load_trained_vocoder`; the authors
keep ``best_netG.pt`` by the same rule) and a sample WAV to ``samples/``. Checkpoints,
resume, CPU / GPU / torchrun as for the codec (:mod:`audiorep.specvqgan.codec_training`).
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

from audiorep.frontends.specvqgan import mel_spectrogram
from audiorep.losses.melgan import mel_reconstruction_loss, melgan_training_step
from audiorep.models.melgan import MelGANConfig, MelGANDiscriminator, MelGANGenerator
from audiorep.specvqgan.audio_corpus import AudioCorpus, WaveCrops
from audiorep.training.distributed import Distributed, setup_distributed
from audiorep.training.export import load_model_file, save_model_file
from audiorep.training.loop import StopRule, checkpoint, restore
from audiorep.training.rng import seed_everything
from audiorep.training.settings import SettingsRecord

logger = logging.getLogger("audiorep.specvqgan")
LogFn = Callable[[str], None]
#: ``format`` of the files :func:`save_trained_vocoder` writes.
VOCODER_FORMAT = "audiorep.specvqgan.melgan"


@dataclasses.dataclass
class VocoderTrainConfig(SettingsRecord):
    """A vocoder training run (JSON-able; stored in checkpoints)."""

    generator: dict[str, Any] = dataclasses.field(default_factory=lambda: MelGANConfig().to_dict())
    num_D: int = 3
    ndf: int = 16
    n_layers_D: int = 4
    downsampling_factor: int = 4
    batch_size: int = 64
    segment: int = 8192
    learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    lambda_feat: float = 10.0
    mel_loss_weight: float = 0.0
    disc_start: int = 0
    seed: int = 1
    eval_every: int = 1000

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        # completed with the defaults, in JSON's types, so a checkpoint's copy compares equal
        self.generator = json.loads(json.dumps(MelGANConfig.from_dict(self.generator).to_dict()))
        if self.batch_size < 1 or self.eval_every < 1 or self.segment % 256:
            raise ValueError("batch_size >= 1, eval_every >= 1, segment a multiple of 256")


class VocoderTrainingModule(nn.Module):
    """``netG`` and ``netD`` in one module (one checkpoint, two optimizers)."""

    SETTINGS_NAME: ClassVar[str] = "vocoder training settings"

    name = "specvqgan-melgan-training"

    def __init__(self, config: VocoderTrainConfig):
        super().__init__()
        self.config = config
        self.netG = MelGANGenerator(MelGANConfig.from_dict(config.generator))
        self.netD = MelGANDiscriminator(
            config.num_D, config.ndf, config.n_layers_D, config.downsampling_factor
        )


@torch.no_grad()
def evaluate_vocoder(
    generator: MelGANGenerator,
    mels: list[torch.Tensor],
    *,
    chunk_frames: int = 2048,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Mel L1 (the [0, 1] scale) between held-out mels ``(80, T)`` and the mels of their
    vocoded waveforms (vocoded in chunks of ``chunk_frames``; the first ``T`` frames of the
    re-analysed ``256 T`` samples are compared)."""
    was = generator.training
    generator.eval()
    err = 0.0
    count = 0
    for mel in mels:
        for a in range(0, mel.shape[-1], chunk_frames):
            piece = mel[:, a : a + chunk_frames]
            wave = generator(piece[None].to(device))[0, 0].cpu()
            again = mel_spectrogram(wave.double(), None, max_frames=piece.shape[-1]).float()
            err += float((again - piece).abs().sum())
            count += piece.numel()
    generator.train(was)
    return {"mel_l1": err / max(count, 1), "frames": count // 80}


def _generator_warmup_step(
    generator: nn.Module, opt_g: torch.optim.Optimizer, mel: torch.Tensor
) -> dict[str, float]:
    """One generator-only step on the mel L1 loss (before ``disc_start``)."""
    loss = mel_reconstruction_loss(mel, generator(mel))
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    return {"loss_mel": float(loss.detach())}


def save_trained_vocoder(
    path: str | Path,
    generator: MelGANGenerator,
    info: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """``path`` (.safetensors: the generator's authors'-keyed weight-norm state dict) + JSON."""
    return save_model_file(
        path,
        generator.state_dict(),
        format=VOCODER_FORMAT,
        config=generator.config.to_dict(),
        info=info,
        dtype=dtype,
    )


def load_trained_vocoder(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[MelGANGenerator, dict[str, Any]]:
    """A generator written by :func:`save_trained_vocoder` (file or its folder), eval mode."""
    path = Path(path)
    if path.is_dir():
        path = path / "vocoder.safetensors"
    sd, info = load_model_file(path, VOCODER_FORMAT)
    gen = MelGANGenerator(MelGANConfig.from_dict(info["config"]))
    gen.load_state_dict(sd, strict=True)
    return gen.to(device).eval(), info


@dataclasses.dataclass
class VocoderTrainResult:
    generator: MelGANGenerator
    step: int
    seconds: float
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    last_checkpoint: Path | None


def train_vocoder(
    train: AudioCorpus,
    out_dir: str | Path,
    config: VocoderTrainConfig | None = None,
    *,
    heldout: AudioCorpus | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    max_cpu_seconds: float | None = None,
    checkpoint_every: int = 500,
    keep: int | None = 2,
    progress: bool = True,
    log: LogFn | None = None,
) -> VocoderTrainResult:
    """Train (or resume) a MelGAN on ``train``; see the module docstring."""
    cfg = config or VocoderTrainConfig()
    log = log or logger.info
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dist, dev = setup_distributed(device)
    t0 = time.perf_counter()
    stop = StopRule(max_steps, max_seconds, max_cpu_seconds)
    try:
        return _train(
            train, out, cfg, heldout, dist, dev, resume, stop,
            checkpoint_every, keep, progress, log, t0,
        )  # fmt: skip
    finally:
        dist.close()


def _train(
    train: AudioCorpus,
    out: Path,
    cfg: VocoderTrainConfig,
    heldout: AudioCorpus | None,
    dist: Distributed,
    dev: torch.device,
    resume: bool,
    stop: StopRule,
    checkpoint_every: int,
    keep: int | None,
    progress: bool,
    log: LogFn,
    t0: float,
) -> VocoderTrainResult:
    seed_everything(cfg.seed)
    module = VocoderTrainingModule(cfg).to(dev)
    opt_g = torch.optim.Adam(module.netG.parameters(), lr=cfg.learning_rate, betas=cfg.betas)
    opt_d = torch.optim.Adam(module.netD.parameters(), lr=cfg.learning_rate, betas=cfg.betas)
    optimizers = {"generator": opt_g, "discriminator": opt_d}
    net_g: nn.Module = module.netG
    net_d: nn.Module = module.netD
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [dev.index] if dev.type == "cuda" else None
        net_g, net_d = DDP(net_g, device_ids=ids), DDP(net_d, device_ids=ids)
    crops = WaveCrops(train, cfg.seed, segment=cfg.segment)
    held = heldout.mels() if heldout is not None else []

    ckpt_dir = out / "checkpoints"
    step, trainer, last = restore(
        ckpt_dir, module, optimizers, resume=resume, dist=dist, config=cfg.to_dict()
    )
    trainer = trainer or {"history": [], "best": None, "running": {}, "seconds": 0.0}
    running: dict[str, float] = dict(trainer["running"])
    if dist.main:
        n_g = sum(p.numel() for p in module.netG.parameters())
        log(
            f"MelGAN: generator {n_g / 1e6:.3f} M parameters; {len(train)} recordings "
            f"({train.seconds / 60:.1f} min) for training, {len(held)} held out; batch "
            f"{cfg.batch_size} x {cfg.segment} samples; mel loss weight {cfg.mel_loss_weight:g}; "
            f"device {dev}, {dist.world} process(es)"
            + (f"; resumed at step {step} from {last}" if last else "")
        )
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
        metrics = evaluate_vocoder(module.netG, held, device=dev)
        n = max(running.get("_n", 1), 1)
        record = {
            "step": step,
            "heldout": metrics,
            "train": {k: v / n for k, v in running.items() if k != "_n"},
        }
        trainer["history"].append(record)
        best = trainer["best"]
        if best is None or metrics["mel_l1"] < best["heldout"]["mel_l1"]:
            trainer["best"] = record
            info = {"best": record, "train_config": cfg.to_dict()}
            save_trained_vocoder(out / "vocoder.safetensors", module.netG, info)
        log(
            f"step {step}: held-out mel L1 {metrics['mel_l1']:.4f}; train "
            + " ".join(f"{k} {v:.4f}" for k, v in record["train"].items())
        )
        import soundfile as sf

        (out / "samples").mkdir(exist_ok=True)
        with torch.no_grad():
            wave = module.netG.eval()(held[0][None, :, :860].to(dev))[0, 0].cpu()
        module.netG.train()
        sf.write(out / "samples" / f"step-{step:08d}.wav", wave.numpy(), 22050, subtype="PCM_16")
        running.clear()
        dist.barrier()

    show = progress and dist.main
    bar = tqdm(desc="vocoder", initial=step, total=stop.max_steps, disable=not show)
    module.train()
    while not stop.reached(step, dist):
        wave, mel = crops.batch(step, cfg.batch_size, dist.rank)
        if step < cfg.disc_start:
            terms = _generator_warmup_step(net_g, opt_g, mel.to(dev))
        else:
            terms = melgan_training_step(
                net_g, net_d, opt_g, opt_d, wave.to(dev), mel.to(dev),
                lambda_feat=cfg.lambda_feat, mel_loss_weight=cfg.mel_loss_weight,
            )  # fmt: skip
        bad = [k for k, v in terms.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(
                f"vocoder training stopped: {', '.join(bad)} is not finite at step {step}; "
                "the last checkpoint is intact (lower the learning rate and resume)"
            )
        step += 1
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + float(v)
        running["_n"] = running.get("_n", 0) + 1
        bar.update(1)
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
    return VocoderTrainResult(
        module.netG.eval(),
        step,
        time.perf_counter() - t0,
        trainer["history"],
        trainer["best"],
        last,
    )


__all__ = [
    "VOCODER_FORMAT",
    "VocoderTrainConfig",
    "VocoderTrainResult",
    "VocoderTrainingModule",
    "evaluate_vocoder",
    "load_trained_vocoder",
    "save_trained_vocoder",
    "train_vocoder",
]
