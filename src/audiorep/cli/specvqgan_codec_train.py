"""``audiorep specvqgan train-codec`` and ``train-vocoder``: the codec and MelGAN loops.

The loops are :mod:`audiorep.specvqgan.codec_training` and
:mod:`audiorep.specvqgan.vocoder_training`; data is any audio folder, file or list file
(:mod:`audiorep.specvqgan.audio_corpus`). This module only parses options.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from audiorep.cli.common import display, fail, positive_int

CORPUS_HELP = (
    "audio folder (searched recursively), one file, or a list file of 'path [start [stop]]' rows "
    "(seconds; e.g. the first 80%% of a recording for training, the rest held out)"
)


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _shared(p: argparse.ArgumentParser) -> None:
    p.add_argument("train", metavar="TRAIN", help=CORPUS_HELP)
    p.add_argument("output_dir", metavar="OUT_DIR", help="checkpoints, best model, samples")
    p.add_argument("--heldout", default=None, metavar="AUDIO", help="held-out audio (same forms)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after N steps")
    p.add_argument("--minutes", type=float, default=None, help="stop after M minutes (budget)")
    p.add_argument("--restart", action="store_true", help="start over instead of resuming")
    p.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if any)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="per process")
    p.add_argument("--lr", type=float, default=None, help="learning rate")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--eval-every", type=positive_int, default=None, help="steps")
    p.add_argument("--no-progress", action="store_true")


def register(subparsers: Any) -> None:
    """Add ``train-codec`` and ``train-vocoder`` to the ``audiorep specvqgan`` group."""
    c = subparsers.add_parser(
        "train-codec",
        help="train the spectrogram VQGAN codec on audio",
        description=(
            "Train SpecVQGAN's codebook with the authors' recipe (two Adams, betas (0.5, 0.9), "
            "lr = base x processes x batch, L1 + LPAPS + patch-GAN from --disc-start, codebook "
            "loss) on TRAIN. OUT_DIR gets resumable checkpoints, the best held-out codec "
            "(codec.safetensors + codec.json) and logged reconstructions (samples/). Stops with a "
            "clear error on NaN; warns on codebook collapse. Under torchrun: DDP + SyncBatchNorm."
        ),
    )
    _shared(c)
    example = '{"ch": 32, "n_embed": 128}'
    c.add_argument(
        "--model", type=_json_dict, default=None, help=f"architecture overrides, JSON ({example})"
    )
    c.add_argument("--n-codes", type=positive_int, default=None, help="codebook size (128 VAS)")
    c.add_argument("--disc-start", type=int, default=None, help="GAN from this step (2001)")
    c.add_argument("--perceptual-weight", type=float, default=None, help="LPAPS weight (1.0)")
    c.add_argument("--crop-frames", type=positive_int, default=None, help="(default 848)")
    c.set_defaults(func=run_codec)
    v = subparsers.add_parser(
        "train-vocoder",
        help="train the MelGAN vocoder on audio",
        description=(
            "Train SpecVQGAN's MelGAN with the authors' recipe (batch 64 x 8192 samples, Adam "
            "1e-4 betas (0.5, 0.9), hinge + 10 x feature matching) on TRAIN; --mel-loss-weight "
            "and --disc-start (generator warm-up on the mel L1) are optional extras. OUT_DIR gets "
            "checkpoints, the best held-out generator (vocoder.safetensors) and samples/."
        ),
    )
    _shared(v)
    v.add_argument("--ngf", type=positive_int, default=None, help="generator width (32)")
    v.add_argument("--mel-loss-weight", type=float, default=None, help="(default 0)")
    v.add_argument("--disc-start", type=int, default=None, help="(default 0)")
    v.add_argument("--segment", type=positive_int, default=None, help="samples (8192)")
    v.set_defaults(func=run_vocoder)


def _corpora(args: argparse.Namespace) -> tuple[Any, Any]:
    from audiorep.specvqgan.audio_corpus import AudioCorpus

    progress = not args.no_progress
    train = AudioCorpus.from_source(args.train, progress=progress)
    held = AudioCorpus.from_source(args.heldout, progress=progress) if args.heldout else None
    return train, held


def _loop_kwargs(args: argparse.Namespace, held: Any) -> dict[str, Any]:
    return {
        "heldout": held,
        "device": args.device,
        "resume": not args.restart,
        "max_steps": args.max_steps,
        "max_seconds": args.minutes * 60 if args.minutes else None,
        "checkpoint_every": args.checkpoint_every,
        "progress": not args.no_progress,
        "log": lambda msg: print(display(msg), flush=True),
    }


def run_codec(args: argparse.Namespace) -> int:
    from audiorep.specvqgan.codec_training import CodecTrainConfig, train_codec

    command = "specvqgan train-codec"
    try:
        base = CodecTrainConfig()
        model = {**base.model, **(args.model or {})}
        if args.n_codes:
            model["n_embed"] = args.n_codes
        loss = dict(base.loss)
        if args.disc_start is not None:
            loss["disc_start"] = args.disc_start
        if args.perceptual_weight is not None:
            loss["perceptual_weight"] = args.perceptual_weight
        fields: dict[str, Any] = {"model": model, "loss": loss}
        for name, value in (
            ("batch_size", args.batch_size),
            ("learning_rate", args.lr),
            ("seed", args.seed),
            ("eval_every", args.eval_every),
            ("crop_frames", args.crop_frames),
        ):
            if value is not None:
                fields[name] = value
        cfg = CodecTrainConfig.from_dict({**base.to_dict(), **fields})
        train, held = _corpora(args)
        result = train_codec(train, args.output_dir, cfg, **_loop_kwargs(args, held))
    except (OSError, ValueError, KeyError) as exc:
        return fail(command, exc)
    best = result.best["heldout"] if result.best else None
    print(json.dumps({"step": result.step, "seconds": round(result.seconds, 1), "best": best}))
    return 0


def run_vocoder(args: argparse.Namespace) -> int:
    from audiorep.specvqgan.vocoder_training import VocoderTrainConfig, train_vocoder

    command = "specvqgan train-vocoder"
    try:
        base = VocoderTrainConfig()
        fields: dict[str, Any] = {}
        if args.ngf:
            fields["generator"] = {**base.generator, "ngf": args.ngf}
        for name, value in (
            ("batch_size", args.batch_size),
            ("learning_rate", args.lr),
            ("seed", args.seed),
            ("eval_every", args.eval_every),
            ("mel_loss_weight", args.mel_loss_weight),
            ("disc_start", args.disc_start),
            ("segment", args.segment),
        ):
            if value is not None:
                fields[name] = value
        cfg = VocoderTrainConfig.from_dict({**base.to_dict(), **fields})
        train, held = _corpora(args)
        result = train_vocoder(train, args.output_dir, cfg, **_loop_kwargs(args, held))
    except (OSError, ValueError, KeyError) as exc:
        return fail(command, exc)
    best = result.best["heldout"] if result.best else None
    print(json.dumps({"step": result.step, "seconds": round(result.seconds, 1), "best": best}))
    return 0
