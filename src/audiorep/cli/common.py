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


def display(text: object) -> str:
    """``text`` safe to print on any terminal: bytes of file names that are not valid UTF-8
    (held as surrogates) are shown as ``\\xNN`` escapes instead of raising on output."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def fail(command: str, message: object) -> int:
    """Print ``audiorep <command>: <message>`` on stderr; returns :data:`EXIT_USAGE`."""
    text = message.args[0] if isinstance(message, KeyError) and message.args else message
    print(display(f"audiorep {command}: {text}"), file=sys.stderr)
    return EXIT_USAGE


def parse_device(text: str) -> str:
    """argparse type of ``--device``: checked once, before any work, with a clear message
    (a CUDA device on a CPU-only torch build used to end in a traceback mid-run)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"unknown device {text!r}; use cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            raise argparse.ArgumentTypeError(
                f"{text}: this torch build ({torch.__version__}) has no CUDA support; "
                "install a CUDA build of torch or use --device cpu"
            )
        count = torch.cuda.device_count()
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device is visible here")
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(f"{text}: only {count} CUDA device(s) visible")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}; use cpu, cuda or mps")
    return text


def positive_int(text: str) -> int:
    """argparse type of counts that must be >= 1 (``--batch-size`` and friends)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_max_seconds_option(p: argparse.ArgumentParser) -> None:
    """``--max-seconds``: the per-file ceiling on decoded audio (see ``audiorep.audio``)."""
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        metavar="S",
        help="refuse files holding more than S seconds of audio (default: $AUDIOREP_MAX_SECONDS "
        "or 14400 = 4 h); implausible sample rates (< 1 kHz or > 768 kHz) are always refused",
    )


def apply_max_seconds(args: argparse.Namespace) -> None:
    """Make ``--max-seconds`` the process-wide limit (inherited by decoding workers)."""
    import os

    from audiorep.audio import ENV_MAX_SECONDS

    value = getattr(args, "max_seconds", None)
    if value is not None:
        if not value > 0:
            raise CommandError(f"--max-seconds must be > 0, got {value}")
        os.environ[ENV_MAX_SECONDS] = repr(float(value))


def add_device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", type=parse_device, help="torch device (default: cpu)")


def add_seed_option(p: argparse.ArgumentParser, what: str = "--weights random") -> None:
    p.add_argument("--seed", type=int, default=0, help=f"seed for {what}")


def add_batch_size_option(p: argparse.ArgumentParser, default: int, unit: str) -> None:
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=default,
        help=f"{unit} per batch (default {default})",
    )


__all__ = [
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "CommandError",
    "add_batch_size_option",
    "add_device_option",
    "add_max_seconds_option",
    "apply_max_seconds",
    "add_seed_option",
    "display",
    "fail",
    "parse_device",
    "positive_int",
]
