"""``audiorep embed INPUT... -o OUT``: embeddings of audio files with any registered model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from audiorep.cli.common import (
    add_batch_size_option,
    add_device_option,
    add_max_seconds_option,
    add_seed_option,
    display,
)
from audiorep.cli.common import fail as _fail


def register(sub) -> None:
    from audiorep.pipelines import BUNDLES

    p = sub.add_parser(
        "embed",
        help="audio files/folders/lists -> VGGish embeddings (npz, parquet or AudioSet tfrecord)",
        description=(
            "Embed audio with VGGish, batched across files. --format npz (default) writes "
            "<out>/<relative path>.npz per input with 'embeddings' float32 (N,128), "
            "'timestamps' float64 (N,) example START times in seconds, 'settings' (JSON) and "
            "'quantized' uint8 (N,128) when PCA parameters are available; parquet writes "
            "shards with one row per example; tfrecord writes the AudioSet release layout. "
            "Outputs are written atomically; --resume skips finished inputs; bad inputs are "
            "listed in <out>/failures.tsv and the exit status is 1."
        ),
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="audio files, folders (searched recursively) or list files (.txt/.csv)",
    )
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--format",
        choices=["npz", "parquet", "tfrecord"],
        default="npz",
        help="output format (default npz)",
    )
    p.add_argument(
        "--shard-size",
        type=int,
        default=256,
        help="inputs per parquet/tfrecord shard (default 256)",
    )
    p.add_argument(
        "--ext",
        default=None,
        help="comma-separated extensions searched in folders (default: all audio)",
    )
    p.add_argument(
        "--model",
        choices=list(BUNDLES),
        default="vggish",
        help="model (default vggish): "
        + "; ".join(f"{n}: {spec.summary}" for n, spec in BUNDLES.items())
        + ". The VGGish-only options do not apply to the others",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="weights: a file (.safetensors/.ckpt/.npz/.pth), a registry name, or 'random' "
        "(seeded, NOT pretrained). Default: the cached pretrained weights.",
    )
    p.add_argument("--pca", default=None, help="PCA parameters file (default: with the weights)")
    p.add_argument("--no-pca", action="store_true", help="do not write 'quantized'")
    add_device_option(p)
    add_batch_size_option(p, 64, "examples")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="decoding/resampling worker processes (default 0: in the main process)",
    )
    p.add_argument(
        "--hop",
        type=float,
        default=None,
        metavar="SECONDS",
        help="hop between examples (multiple of 0.01 s); default 0.96 (no overlap)",
    )
    p.add_argument(
        "--pad-short",
        action="store_true",
        help="zero-pad clips shorter than one example to one example (default: "
        "they give no embeddings)",
    )
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=20.0,
        help="audio decoded per chunk of a long file (bounds memory; default 20)",
    )
    p.add_argument(
        "--low-memory",
        action="store_true",
        help="CPU: do not repack the fully connected weights for oneDNN (-290 MB, ~10-15%% slower)",
    )
    p.add_argument(
        "--float32-frontend",
        action="store_true",
        help="compute the log-mel frontend in float32 (faster, ~1e-3 from the reference)",
    )
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="model precision: float32 (reference-exact), bfloat16 (fast on AMX CPUs and "
        "GPUs) or float16 (CUDA only); the low precisions are not exact",
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
        help="also write fusion features (npz only): VGGish '9,14' (8192-d VGGish-Fusion#10#15, "
        "per example and per clip) or tap names 'conv3_2,conv4_2'; cnn14 '3,6' (6144-d) and "
        "ast '4,11' (1536-d), per clip",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs whose outputs are complete (same settings)",
    )
    p.add_argument("--skip-existing", action="store_true", help=argparse.SUPPRESS)
    add_seed_option(p)
    add_max_seconds_option(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from audiorep.extract.ray_engine import add_ray_arguments

    add_ray_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiorep.extract.runner import FAILURES_FILE, embed_files
    from audiorep.features.fusion import GeneralPurposeVGGish, parse_layers
    from audiorep.frontends.vggish import VGGISH_WINDOWING, Windowing
    from audiorep.pipelines import WeightsUnavailableError, load
    from audiorep.weights import WeightsError

    def fail(message: object) -> int:
        return _fail("embed", message)

    if args.model != "vggish":  # refuse what would otherwise be silently ignored
        vggish_only = {
            "--hop": args.hop,
            "--float32-frontend": args.float32_frontend,
            "--torchvggish-compat": args.torchvggish_compat,
            "--precision": args.precision != "float32",
            "--pca": args.pca,
            "--no-pca": args.no_pca,
            "--low-memory": args.low_memory,
        }
        used = [flag for flag, value in vggish_only.items() if value]
        if used:
            return fail(f"{', '.join(used)} apply to VGGish only, not --model {args.model}")
        if args.format == "tfrecord":
            return fail(
                "--format tfrecord writes AudioSet's VGGish layout (128 PCA-quantised bytes "
                f"per example); use npz or parquet with --model {args.model}"
            )
    try:
        windowing = Windowing.from_hop_seconds(args.hop) if args.hop else VGGISH_WINDOWING
        if args.model != "vggish":
            bundle = load(args.model, weights=args.weights, device=args.device, seed=args.seed)
        else:
            load_kwargs = dict(
                weights=args.weights,
                pca=False if args.no_pca else args.pca,
                device=args.device,
                frontend_dtype=torch.float32 if args.float32_frontend else torch.float64,
                torchvggish_compat=args.torchvggish_compat,
                seed=args.seed,
                precision=args.precision,
                windowing=windowing,
            )
            bundle = load("vggish", **load_kwargs)
    except (WeightsUnavailableError, WeightsError, FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    fusion_layers = None
    if args.fusion:
        try:  # validate before any file is processed
            fusion_layers = parse_layers(args.fusion)
            if args.model == "vggish":
                GeneralPurposeVGGish(bundle.model, fusion_layers)
            else:
                bundle.fusion_module(fusion_layers)
        except ValueError as exc:
            return fail(f"--fusion {args.fusion}: {exc}")
    log(f"model:   {args.model}, {bundle.weights_description}")
    if not bundle.pretrained:
        log("WARNING: seeded random weights - the embeddings are NOT meaningful features")
    if args.model == "vggish":
        bundle.low_memory = args.low_memory
    extensions = [e.strip() for e in args.ext.split(",") if e.strip()] if args.ext else None
    if getattr(args, "engine", "local") == "ray":
        if args.model != "vggish":
            return fail("--engine ray runs VGGish only")
        from audiorep.extract.ray_engine import run_from_args

        return run_from_args(args, load_kwargs, bundle=bundle)
    try:
        summary = embed_files(
            bundle,
            args.inputs,
            args.out,
            fmt=args.format,
            resume=args.resume or args.skip_existing,
            batch_size=args.batch_size,
            workers=args.workers,
            chunk_seconds=args.chunk_seconds,
            pad_short=args.pad_short,
            fusion_layers=fusion_layers,
            shard_size=args.shard_size,
            extensions=extensions,
            progress=not args.quiet,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        return fail(str(exc))
    for line in summary.lines():
        print(display(line))
    if summary.failures:
        print(f"failures listed in {Path(args.out) / FAILURES_FILE}")
    return 1 if summary.failures else 0
