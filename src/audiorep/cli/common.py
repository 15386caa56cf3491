"""What every command shares: exit statuses, the one error printer, the common options.

Convention (docs/architecture.md, "Adding a command"): a command module has
``register(subparsers)``, which adds its parser(s) and sets ``func`` to a
``run(args) -> int`` handler; user errors are printed with :func:`fail` and give
:data:`EXIT_USAGE`; library code never lives here.
"""

from __future__ import annotations

import argparse
import sys

#: Exit statuses of every command.
EXIT_OK = 0
EXIT_SOME_FAILED = 1  # the command ran; some inputs failed (listed in its report)
EXIT_USAGE = 2  # nothing done: bad arguments, unreadable inputs, missing weights


class CommandError(Exception):
    """A user-facing error: printed as ``audiorep <command>: <message>``, exit status 2."""


def fail(command: str, message: object) -> int:
    """Print ``audiorep <command>: <message>`` on stderr; returns :data:`EXIT_USAGE`."""
    text = message.args[0] if isinstance(message, KeyError) and message.args else message
    print(f"audiorep {command}: {text}", file=sys.stderr)
    return EXIT_USAGE


def add_weights_option(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """``--weights`` (cached pretrained weights by default; a path; a registry name; random)."""
    p.add_argument(
        "--weights",
        default=None,
        help=help_text
        or "weights: a file, a registry name, or 'random' (seeded random weights, NOT "
        "meaningful features); default: the cached pretrained weights",
    )


def add_device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def add_seed_option(p: argparse.ArgumentParser, what: str = "--weights random") -> None:
    p.add_argument("--seed", type=int, default=0, help=f"seed for {what}")


def add_batch_size_option(p: argparse.ArgumentParser, default: int, unit: str) -> None:
    p.add_argument(
        "--batch-size", type=int, default=default, help=f"{unit} per batch (default {default})"
    )


__all__ = [
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "CommandError",
    "add_batch_size_option",
    "add_device_option",
    "add_seed_option",
    "add_weights_option",
    "fail",
]
