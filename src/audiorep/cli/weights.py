"""``audiorep weights {list,download,verify}`` and ``audiorep convert`` subcommands.

The main CLI calls :func:`register` on its ``add_subparsers(dest="command")`` object;
each leaf parser stores its handler as ``func(args) -> int`` (the exit status).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from safetensors import safe_open

from audiorep import weights
from audiorep.cli.common import fail
from audiorep.convert.vggish import WeightsFormatError, convert

# Errors a user can cause and fix; anything else is a bug and keeps its traceback.
_USER_ERRORS = (weights.WeightsError, WeightsFormatError, OSError, ImportError, KeyError)


def _error(message: Any, command: str = "weights") -> None:
    fail(command, message)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # unreachable; keeps type checkers calm


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _pin_text(entry: weights.WeightsEntry) -> str:
    if entry.sha256:
        return "sha256"
    return f"prefix {entry.sha256_prefix}" if entry.sha256_prefix else "not pinned"


def cmd_weights_list(args: argparse.Namespace) -> int:
    """Print the registry with cache status."""
    rows = []
    for entry in weights.REGISTRY.values():
        path = weights.cached_path(entry.name)
        cached = _size(path.stat().st_size) if path.is_file() else "no"
        rows.append([entry.name, entry.kind, _pin_text(entry), cached, entry.licence])
    print(_table(rows, ["NAME", "KIND", "CHECKSUM", "CACHED", "LICENCE"]))
    print()
    for entry in weights.REGISTRY.values():
        print(f"{entry.name}: {entry.description}")
        for url in entry.urls:
            print(f"    {url}")
    print(f"\ncache: {weights.cache_dir()}  (set ${weights.ENV_HOME} to move it)")
    if weights.is_offline():
        print(f"{weights.ENV_OFFLINE}=1: downloads are disabled")
    return 0


def cmd_weights_download(args: argparse.Namespace) -> int:
    """Download (or confirm cached) registry entries."""
    names = list(weights.REGISTRY) if args.all else list(dict.fromkeys(args.names))
    if not names:
        _error("name at least one entry (see `audiorep weights list`) or pass --all")
        return 2
    unknown = [n for n in names if n not in weights.REGISTRY]
    if unknown:
        _error(f"unknown weights {', '.join(unknown)}; known: {', '.join(weights.REGISTRY)}")
        return 2
    status = 0
    for name in names:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                path = weights.fetch(name, progress=not args.quiet)
        except _USER_ERRORS as e:
            _error(e)
            status = 1
            continue
        finally:
            for w in caught:  # e.g. "not pinned ... its sha256 is ...", shown as one line
                print(f"warning: {w.message}", file=sys.stderr)
        print(f"{name}: {path}")
    return status


def cmd_weights_verify(args: argparse.Namespace) -> int:
    """Hash registry entries or files and compare with the pinned digests."""
    targets = args.targets or list(weights.REGISTRY)
    rows = []
    status = 0
    for target in targets:
        try:
            r = weights.verify(target)
        except _USER_ERRORS as e:
            _error(e)
            status = 1
            continue
        # Without arguments a missing download is just reported, not a failure.
        if not r["ok"] and (args.targets or r["exists"]):
            status = 1
        label = r["name"] or target
        if r["name"] and target != r["name"]:
            label = f"{target} ({r['name']})"
        rows.append([label, _size(r["size"]), r["sha256"] or "-", r["message"]])
        if r["name"] and target == r["name"] and weights.converted_path(target).is_file():
            # the converted cache file that `audiorep.load` would use: trusted only with a
            # provenance record matching its bytes and the pinned sources
            from audiorep.weights.vggish import converted_problem

            conv = weights.converted_path(target)
            problem = converted_problem(target)
            status = 1 if problem else status
            rows.append([f"{target} (converted)", _size(conv.stat().st_size),
                         weights.sha256_file(conv), problem or "provenance verified"])  # fmt: skip
    if rows:
        print(_table(rows, ["FILE", "SIZE", "SHA256", "STATUS"]))
    return status


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert any VGGish weights / PCA file to an audiorep ``.safetensors``."""
    src, dst = Path(args.src), Path(args.output)
    if dst.resolve() == src.resolve():
        _error("the output would overwrite the input; choose another -o", "convert")
        return 2
    try:
        convert(src, dst)
        with safe_open(str(dst), framework="pt") as f:  # header only: cheap
            contains = (f.metadata() or {}).get("contains", "")
    except _USER_ERRORS as e:
        _error(e, "convert")
        return 1
    print(f"wrote {dst} ({contains.replace(',', ' + ')}) from {src}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``weights`` (with ``list``/``download``/``verify``) and ``convert`` subcommands.

    Args:
        subparsers: the object returned by ``parser.add_subparsers(dest="command")``.
    """
    group = subparsers.add_parser(
        "weights",
        help="list, download and verify pretrained weights",
        description="Pretrained weights in the cache "
        f"(${weights.ENV_HOME}, default ~/.cache/audiorep).",
    )
    sub = group.add_subparsers(dest="weights_command", metavar="{list,download,verify}")
    sub.required = True

    p = sub.add_parser("list", help="show the registry and what is cached")
    p.set_defaults(func=cmd_weights_list)

    p = sub.add_parser("download", help="download registry entries into the cache")
    p.add_argument("names", nargs="*", metavar="NAME", help="registry names")
    p.add_argument("--all", action="store_true", help="download every registry entry")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_weights_download)

    p = sub.add_parser("verify", help="sha256 of cached entries or files vs. pinned values")
    p.add_argument("targets", nargs="*", metavar="NAME|PATH", help="default: every registry entry")
    p.set_defaults(func=cmd_weights_verify)

    p = subparsers.add_parser(
        "convert",
        help="convert VGGish weights (TF .ckpt/.npz, torchvggish .pth) to .safetensors",
        description="Convert a VGGish checkpoint or PCA file to audiorep's .safetensors "
        "(model and/or PCA, whatever the input holds). Reading a TF .ckpt needs TensorFlow.",
    )
    p.add_argument("src", metavar="SRC", help=".ckpt, .npz, .pth/.pt or .safetensors")
    p.add_argument("-o", "--output", required=True, metavar="DST", help="output .safetensors")
    p.set_defaults(func=cmd_convert)
