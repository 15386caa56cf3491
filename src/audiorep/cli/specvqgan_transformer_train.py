"""``audiorep specvqgan train-transformer``: the code transformer's training loop.

The loop is :mod:`audiorep.specvqgan.transformer_training`; the data is read and encoded by
:mod:`audiorep.specvqgan.code_dataset`. This module only parses options.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from audiorep.cli.common import display, fail, positive_int

CONDITIONS = ("class", "feature", "feature+class")


def register(subparsers: Any) -> None:
    """Add ``train-transformer`` to the ``audiorep specvqgan`` group."""
    p = subparsers.add_parser(
        "train-transformer",
        help="train the code transformer (stage two) over a codec",
        description=(
            "Train SpecVQGAN's code transformer with the authors' recipe (AdamW betas (0.9, "
            "0.95), weight decay 0.01 on Linear weights only, lr = base x processes x batch, "
            "early stopping on the validation loss with patience 2) on the codes of DATA. "
            "--condition class: DATA is a folder of labelled clips <class>/<id>.wav (or the "
            "VAS mel layout) with split files vas_train.txt / vas_valid.txt (else a seeded "
            "80/10/10 split); --views adds augmented views of each training clip. "
            "--condition feature / feature+class: DATA is the authors' feature layout "
            "(<class>/melspec_10s_22050hz/<id>_mel.npy + feature pickles). OUT_DIR gets "
            "resumable checkpoints, the best model (transformer.safetensors + .json), "
            "log.jsonl and samples/. Run it again to resume; under torchrun: DDP."
        ),
    )
    p.add_argument("data", metavar="DATA", help="clip folder (see above)")
    p.add_argument("output_dir", metavar="OUT_DIR", help="checkpoints, best model, samples")
    p.add_argument("--condition", choices=CONDITIONS, default="class", help="(default class)")
    p.add_argument("--codec", default="small", help="codec: small (shipped), a file or a name")
    p.add_argument("--views", type=int, default=0, help="augmented views per training clip")
    p.add_argument("--view-seed", type=int, default=0, help="seed of the augmented views")
    p.add_argument("--cache", default=None, help="token cache folder (default OUT_DIR/tokens)")
    p.add_argument("--layers", type=positive_int, default=None, help="GPT layers (24)")
    p.add_argument("--heads", type=positive_int, default=None, help="attention heads (16)")
    p.add_argument("--width", type=positive_int, default=None, help="embedding width (1024)")
    p.add_argument("--dropout", type=float, default=None, help="embedding/residual dropout (0)")
    p.add_argument("--feat-sample-size", type=positive_int, default=None, help="frames (212)")
    p.add_argument(
        "--features", choices=("bninception", "resnet50"), default="bninception",
        help="feature files for --condition feature* (RGB|flow BN-Inception, or ResNet50)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=None, help="per process (16)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: base x batch)")
    p.add_argument("--base-lr", type=float, default=None, help="base learning rate (1e-6)")
    p.add_argument("--epochs", type=positive_int, default=None, help="at most N epochs")
    p.add_argument("--eval-every", type=positive_int, default=None, help="steps (every epoch)")
    p.add_argument("--patience", type=int, default=None, help="early stopping (2; 0: off)")
    p.add_argument("--grad-clip", type=float, default=None, help="global gradient norm limit")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up (0)")
    p.add_argument("--cosine-steps", type=positive_int, default=None, help="cosine decay span")
    p.add_argument("--seed", type=int, default=None, help="(default 23)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after N steps")
    p.add_argument("--minutes", type=float, default=None, help="wall-time budget (minutes)")
    p.add_argument("--max-cpu-minutes", type=float, default=None, help="CPU-time budget")
    p.add_argument("--checkpoint-every", type=positive_int, default=500, help="steps")
    p.add_argument("--restart", action="store_true", help="start over instead of resuming")
    p.add_argument("--no-samples", action="store_true", help="no sample PNG per evaluation")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if any)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> Any:
    from audiorep.specvqgan.transformer_training import TransformerTrainConfig

    base = TransformerTrainConfig(kind=args.condition)
    fields: dict[str, Any] = {}
    for name, value in (
        ("n_layer", args.layers),
        ("n_head", args.heads),
        ("n_embd", args.width),
        ("feat_sample_size", args.feat_sample_size),
        ("batch_size", args.batch_size),
        ("learning_rate", args.lr),
        ("base_learning_rate", args.base_lr),
        ("epochs", args.epochs),
        ("eval_every", args.eval_every),
        ("patience", args.patience),
        ("grad_clip", args.grad_clip),
        ("warmup_steps", args.warmup_steps),
        ("seed", args.seed),
    ):
        if value is not None:
            fields[name] = value
    if args.dropout is not None:
        fields["embd_pdrop"] = fields["resid_pdrop"] = args.dropout
    if args.cosine_steps is not None:
        fields["lr_schedule"] = "cosine"
        fields["schedule_steps"] = args.cosine_steps
    return TransformerTrainConfig.from_dict({**base.to_dict(), **fields})


def run(args: argparse.Namespace) -> int:
    from audiorep.specvqgan.code_dataset import class_token_sets, feature_token_sets
    from audiorep.specvqgan.codec_models import load_codec
    from audiorep.specvqgan.transformer_training import train_transformer

    command = "specvqgan train-transformer"
    if args.views < 0:
        return fail(command, f"--views must be >= 0, got {args.views}")

    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 reports

    def log(msg: str) -> None:
        if main_rank:
            print(display(msg), flush=True)

    try:
        cfg = _config(args)
        codec, codec_name = load_codec(args.codec, args.device or "cpu")
        cache = args.cache or str(Path(args.output_dir) / "tokens")
        progress = not args.no_progress
        if args.condition == "class":
            sets = class_token_sets(
                args.data, codec, views=args.views, seed=args.view_seed, cache_dir=cache,
                progress=progress, log=log,
            )  # fmt: skip
        else:
            if args.views:
                return fail(command, "--views applies to --condition class only")
            from audiorep.specvqgan.visual_features import FeatureSettings

            settings = FeatureSettings(feat_sample_size=cfg.feat_sample_size)
            sets = feature_token_sets(
                args.data, codec, feature_kind=args.features, settings=settings,
                cache_dir=cache, progress=progress, log=log,
            )  # fmt: skip
            depth = int(sets["train"].features.shape[1]) if "train" in sets else cfg.feat_depth
            if depth != cfg.feat_depth:
                return fail(command, f"{args.data}: features have {depth} channels, not "
                                     f"{cfg.feat_depth}")  # fmt: skip
        for name in ("train", "valid"):
            if name not in sets:
                return fail(command, f"{args.data}: no {name} clips")
        for s in sets.values():
            log(s.summary())
        result = train_transformer(
            sets["train"],
            sets["valid"],
            args.output_dir,
            cfg,
            codec=codec,
            codec_name=args.codec,
            device=args.device,
            resume=not args.restart,
            max_steps=args.max_steps,
            max_seconds=args.minutes * 60 if args.minutes else None,
            max_cpu_seconds=args.max_cpu_minutes * 60 if args.max_cpu_minutes else None,
            checkpoint_every=args.checkpoint_every,
            samples=not args.no_samples,
            progress=progress and main_rank,
            log=log,
            info={"data": str(args.data), "codec_source": codec_name},
        )
    except (OSError, ValueError, KeyError, FloatingPointError) as exc:
        return fail(command, exc)
    best = result.best["valid"] if result.best else None
    summary = {
        "step": result.step,
        "seconds": round(result.seconds, 1),
        "stopped_early": result.stopped_early,
        "best_step": result.best["step"] if result.best else None,
        "best_valid": best,
        "model": str(Path(args.output_dir) / "transformer.safetensors"),
    }
    if main_rank:
        print(json.dumps(summary))
    return 0
