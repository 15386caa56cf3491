"""``audiorep specvqgan SUBCOMMAND``: the SpecVQGAN command group.

``mels`` is defined here. Other subcommands live in their own modules, each with
``register(subparsers)`` adding its parser to the group, and are listed once in
:data:`SUBCOMMAND_MODULES` (one line per subcommand).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from audiorep.cli.common import (
    EXIT_SOME_FAILED,
    EXIT_USAGE,
    add_batch_size_option,
    add_device_option,
    add_max_seconds_option,
    display,
    fail,
)

#: Modules adding further ``audiorep specvqgan`` subcommands (``register(subparsers)``), in
#: ``--help`` order after ``mels``, e.g. ``"audiorep.cli.specvqgan_evaluate"``.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "audiorep.cli.specvqgan_evaluate",
    "audiorep.cli.specvqgan_train",
    "audiorep.cli.specvqgan_codec_train",
    "audiorep.cli.specvqgan_transformer_train",
)


def register(subparsers: Any) -> None:
    """Add the ``specvqgan`` group and its subcommands.

    Args:
        subparsers: the object returned by ``parser.add_subparsers(dest="command")``.
    """
    group = subparsers.add_parser(
        "specvqgan",
        help="SpecVQGAN (Iashin & Rahtu, BMVC 2021): data preparation and tools",
        description="SpecVQGAN tools. Run `audiorep specvqgan SUBCOMMAND --help` for each.",
    )
    sub = group.add_subparsers(dest="specvqgan_command", metavar="SUBCOMMAND")
    register_mels(sub)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)

    def usage(_: argparse.Namespace) -> int:
        group.print_help(sys.stderr)
        return EXIT_USAGE

    group.set_defaults(func=usage)


def register_mels(sub: Any) -> None:
    """``audiorep specvqgan mels INPUT OUTPUT_DIR``."""
    p = sub.add_parser(
        "mels",
        help="audio/video files -> the authors' 10 s, 22.05 kHz mel spectrograms",
        description=(
            "Write SpecVQGAN's dataset mel spectrogram of every audio or video file in INPUT: "
            "<OUTPUT_DIR>/<subfolder>/melspec_10s_22050hz/<name>_mel.npy, float32 (80, 860) in "
            "[0, 1]. Clips shorter than 10 s are looped to 10 s at their own rate (as the "
            "authors prepare their data), mixed to mono and resampled to 22050 Hz. Outputs are "
            "written atomically; --resume skips finished ones; files that fail are listed in "
            "<OUTPUT_DIR>/failures.tsv and the exit status is 1."
        ),
    )
    p.add_argument(
        "input",
        metavar="INPUT",
        help="folder (searched recursively; subfolders are mirrored), file or list file",
    )
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="output folder")
    p.add_argument(
        "--ext",
        default=None,
        help="comma-separated extensions searched in folders (default: all audio and video)",
    )
    p.add_argument(
        "--no-tile",
        action="store_true",
        help="zero-pad clips shorter than 10 s instead of looping them",
    )
    p.add_argument("--resume", action="store_true", help="skip inputs whose mel is complete")
    add_device_option(p)
    add_batch_size_option(p, 16, "clips")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="decoding/resampling worker processes (default 0: in the main process)",
    )
    add_max_seconds_option(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_mels)


def run_mels(args: argparse.Namespace) -> int:
    from audiorep.extract.writers import OutputBusyError
    from audiorep.specvqgan.mels import FAILURES_FILE, extract_mels

    if args.workers < 0:
        return fail("specvqgan mels", f"--workers must be >= 0, got {args.workers}")
    extensions = [e.strip() for e in args.ext.split(",") if e.strip()] if args.ext else None
    try:
        summary = extract_mels(
            args.input,
            args.output_dir,
            resume=args.resume,
            batch_size=args.batch_size,
            device=args.device,
            workers=args.workers,
            tile=not args.no_tile,
            extensions=extensions,
            progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError, OutputBusyError) as exc:
        return fail("specvqgan mels", exc)
    for line in summary.lines():
        print(display(line))
    if summary.failures:
        print(display(f"failures listed in {Path(args.output_dir) / FAILURES_FILE}"))
        return EXIT_SOME_FAILED
    return 0
