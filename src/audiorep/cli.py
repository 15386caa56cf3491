"""The ``audiorep`` command line: ``embed``, ``fad``, ``weights``, ``convert``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from audiorep import __version__


def _add_embed(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="audio files/folders -> one .npz of VGGish embeddings per file",
        description=(
            "Embed audio with VGGish. Each input file gives <out>/<relative path>.npz with "
            "'embeddings' float32 (N,128), 'timestamps' float64 (N,) example start times in "
            "seconds, and 'quantized' uint8 (N,128) when PCA parameters are available."
        ),
    )
    p.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--weights",
        default=None,
        help="weights: a file (.safetensors/.ckpt/.npz/.pth), a registry name, or 'random' "
        "(seeded, NOT pretrained). Default: the cached pretrained weights.",
    )
    p.add_argument("--pca", default=None, help="PCA parameters file (default: with the weights)")
    p.add_argument("--no-pca", action="store_true", help="do not write 'quantized'")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--batch-size", type=int, default=64, help="examples per model batch")
    p.add_argument(
        "--float32-frontend",
        action="store_true",
        help="compute the log-mel frontend in float32 (faster, ~1e-3 from the reference)",
    )
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        default="float32",
        help="model precision: float32 (reference-exact) or bfloat16 (fast on AMX CPUs and "
        "GPUs, cosine >= 0.9999 to float32, not exact)",
    )
    p.add_argument(
        "--torchvggish-compat",
        action="store_true",
        help="final ReLU + rounding quantiser, to reproduce numbers made with torchvggish",
    )
    p.add_argument(
        "--fusion",
        default=None,
        metavar="LAYERS",
        help="also write GP-VGGish fusion features, e.g. '9,14' (8192-d, the paper's "
        "VGGish-Fusion#10#15) or tap names 'conv3_2,conv4_2'",
    )
    p.add_argument("--skip-existing", action="store_true", help="keep outputs already there")
    p.add_argument("--seed", type=int, default=0, help="seed for --weights random")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_embed)


def _cmd_embed(args: argparse.Namespace) -> int:
    from audiorep.extract.runner import embed_files
    from audiorep.features.fusion import GeneralPurposeVGGish, parse_layers
    from audiorep.pipelines import WeightsUnavailableError, load
    from audiorep.weights import WeightsError

    try:
        bundle = load(
            "vggish",
            weights=args.weights,
            pca=False if args.no_pca else args.pca,
            device=args.device,
            frontend_dtype=torch.float32 if args.float32_frontend else torch.float64,
            torchvggish_compat=args.torchvggish_compat,
            seed=args.seed,
            precision=args.precision,
        )
    except (WeightsUnavailableError, WeightsError, FileNotFoundError, ValueError) as exc:
        print(f"audiorep embed: {exc}", file=sys.stderr)
        return 2
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    fusion_layers = None
    if args.fusion:
        try:  # validate before any file is processed
            fusion_layers = parse_layers(args.fusion)
            GeneralPurposeVGGish(bundle.model, fusion_layers)
        except ValueError as exc:
            print(f"audiorep embed: --fusion {args.fusion}: {exc}", file=sys.stderr)
            return 2
    log(f"model:   VGGish, {bundle.weights_description}")
    if not bundle.pretrained:
        log("WARNING: seeded random weights - the embeddings are NOT meaningful features")
    try:
        summary = embed_files(
            bundle,
            args.inputs,
            args.out,
            overwrite=not args.skip_existing,
            batch_size=args.batch_size,
            progress=not args.quiet,
            fusion_layers=fusion_layers,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"audiorep embed: {exc}", file=sys.stderr)
        return 2
    if summary.failures:
        failures = Path(args.out) / "failures.tsv"
        failures.parent.mkdir(parents=True, exist_ok=True)
        failures.write_text("".join(f"{p}\t{r}\n" for p, r in summary.failures))
    for line in summary.lines():
        print(line)
    if summary.failures:
        print(f"failures listed in {Path(args.out) / 'failures.tsv'}")
    return 1 if summary.failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="audiorep", description="Exact, fast AudioSet-family audio models in PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"audiorep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_embed(sub)
    from audiorep.cli_fad import add_command as add_fad
    from audiorep.cli_weights import add_commands

    add_fad(sub)
    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
