"""``audiorep specvqgan train-judge DATA OUT_DIR``: train VGGish-ish or Melception on labelled mels.

The library side is :mod:`audiorep.specvqgan.classifier_training` (the loop) and
:mod:`audiorep.specvqgan.classifier_data` (the layouts); this module only parses options.
Registered in the ``audiorep specvqgan`` group by :func:`register`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from audiorep.cli.common import (
    EXIT_OK,
    CommandError,
    display,
    fail,
    positive_int,
)

COMMAND = "specvqgan train-judge"


def _conv_layers(text: str) -> tuple[int | str, ...]:
    out: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        if part.upper() in ("M", "MP"):
            out.append("MP")
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"--conv-layers: expected channel counts and MP, got {part!r}"
            ) from None
    return tuple(out)


def register(subparsers: Any) -> None:
    """Add ``train-judge`` to the ``audiorep specvqgan`` subcommands."""
    p = subparsers.add_parser(
        "train-judge",
        help="train a SpecVQGAN judge (VGGish-ish or Melception) on labelled mels or audio",
        description=(
            "Train VGGish-ish or Melception with the authors' recipe (Adam 3e-4, batch 32 / 8, "
            "early stopping on the validation loss with patience 3, seed 1337) on DATA: a folder "
            "tree <class>/<files> (mels or audio), a CSV path,label[,split], a VGGSound folder "
            "(vggsound.csv + melspec_10s_22050hz/) or a VAS folder (<class>/melspec_10s_22050hz/ "
            "+ vas_{train,valid,test}.txt). OUT_DIR gets resumable checkpoints and the best model "
            "as best.pt (the authors' layout), best.safetensors and best.json. Running the same "
            "command again resumes. Under torchrun it trains with DistributedDataParallel."
        ),
    )
    p.add_argument("data", metavar="DATA", help="dataset folder or CSV")
    p.add_argument("output_dir", metavar="OUT_DIR", help="checkpoints and best model")
    p.add_argument("--layout", default="auto", choices=("auto", "folder", "csv", "vggsound", "vas"))
    p.add_argument("--splits-dir", default=None, help="folder of the split .txt files")
    p.add_argument("--mels-dir", default=None, help="VGGSound mel folder")
    p.add_argument("--model", default="vggishish", choices=("vggishish", "melception"))
    p.add_argument("--batch-size", type=positive_int, default=None, help="per process")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 3e-4)")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--epochs", type=positive_int, default=None, help="at most (default 100)")
    p.add_argument("--patience", type=positive_int, default=None, help="(default 3)")
    p.add_argument("--seed", type=int, default=None, help="(default 1337)")
    p.add_argument("--crop-frames", type=positive_int, default=None, help="(default 848)")
    p.add_argument("--random-crop", action="store_true", help="random training crops")
    p.add_argument("--class-weights", action="store_true", help="weight the loss by 1/count")
    p.add_argument("--aux-loss-weight", type=float, default=None, help="Melception (default 0)")
    p.add_argument(
        "--conv-layers",
        type=_conv_layers,
        default=None,
        help="VGGish-ish layout, e.g. 8,MP,16,MP,32 (default the VGG16 layout)",
    )
    p.add_argument("--hidden", type=positive_int, default=None, help="VGGish-ish MLP width")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0)")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after N steps")
    p.add_argument("--checkpoint-every-steps", type=positive_int, default=None)
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="start over (deletes the checkpoints and best files in OUT_DIR)",
    )
    p.add_argument("--cache", action="store_true", help="keep decoded mels in memory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from audiorep.specvqgan.classifier_data import ClipDataError, load_clip_table
    from audiorep.specvqgan.classifier_training import JudgeTrainConfig, train_judge

    if args.device is not None:
        from audiorep.cli.common import parse_device

        try:
            parse_device(args.device)
        except argparse.ArgumentTypeError as e:
            return fail(COMMAND, e)
    overrides = {
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "weight_decay": args.weight_decay,
        "num_epochs": args.epochs,
        "patience": args.patience,
        "seed": args.seed,
        "crop_frames": args.crop_frames,
        "aux_loss_weight": args.aux_loss_weight,
        "conv_layers": args.conv_layers,
        "hidden": args.hidden,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    overrides.update(
        random_crop=args.random_crop, class_weights=args.class_weights, num_workers=args.workers
    )
    try:
        config = JudgeTrainConfig.for_model(args.model, **overrides)
        table = load_clip_table(
            args.data,
            args.layout,
            splits_dir=args.splits_dir,
            mels_dir=args.mels_dir,
            seed=config.seed,
        )
    except (ClipDataError, ValueError, CommandError) as e:
        return fail(COMMAND, e)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(display(f"{table.source}: {table.summary()}"))
    try:
        result = train_judge(
            table,
            args.output_dir,
            config=config,
            device=args.device,
            resume=not args.no_resume,
            max_steps=args.max_steps,
            checkpoint_every_steps=args.checkpoint_every_steps,
            cache=args.cache,
            progress=not args.no_progress,
        )
    except (ClipDataError, ValueError) as e:
        return fail(COMMAND, e)
    if result.interrupted:
        print(f"stopped at step {result.step} (--max-steps); run again to resume")
    else:
        print(
            f"{result.epochs} epochs, best epoch {result.best_epoch} "
            f"(valid loss {result.best_valid_loss:.4f}), {result.seconds:.1f} s"
        )
        if result.test_metrics is not None:
            shown = {
                k: result.test_metrics[k] for k in ("accuracy_1", "accuracy_5", "mAP", "mROCAUC")
            }
            print("test: " + json.dumps({k: round(v, 4) for k, v in shown.items()}))
        if result.best_checkpoint is not None:
            print(display(f"best model: {result.best_checkpoint} (+ .safetensors, .json)"))
    return EXIT_OK


__all__ = ["register", "run"]
