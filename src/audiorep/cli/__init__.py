"""The ``audiorep`` command line: one module per command group, one convention.

Each module below has ``register(subparsers)`` (adds its parsers, each with ``func`` set to a
``run(args) -> int`` handler) and keeps no library code; shared options, exit statuses and the
error printer are in :mod:`audiorep.cli.common`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from audiorep._version import __version__
from audiorep.cli.common import CommandError, apply_max_seconds, fail

#: Command modules, in ``--help`` order.
COMMAND_MODULES = (
    "embed",
    "fad",
    "linear_eval",
    "classifier",
    "weights",
    "specvqgan",
    "codec",
    "generate",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiorep", description="Exact, fast AudioSet-family audio models in PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"audiorep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"audiorep.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        apply_max_seconds(args)  # --max-seconds, where a command has it
    except CommandError as exc:
        return fail(args.command, exc)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `audiorep ... | head`: the reader left. Point stdout at devnull so the interpreter's
        # final flush does not raise again, and exit quietly.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
