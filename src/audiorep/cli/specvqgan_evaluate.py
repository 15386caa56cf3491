"""``audiorep specvqgan evaluate``: FID / IS / KID / MKL of generated audio with Melception.

The library is :mod:`audiorep.specvqgan.evaluate`; this module only parses and reports.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from audiorep.cli.common import add_batch_size_option, add_device_option, display, fail
from audiorep.pipelines import WeightsUnavailableError

COMMAND = "specvqgan evaluate"


def register(sub: Any) -> None:
    """Add ``evaluate`` to the ``audiorep specvqgan`` group."""
    p = sub.add_parser(
        "evaluate",
        help="FID / IS / KID / MKL of generated sounds against a reference set (Melception)",
        description=(
            "Score generated sounds (.wav, or the authors' _mel.npy / x_sample_*.npy "
            "spectrograms) against a reference set with SpecVQGAN's Melception judge, with the "
            "authors' settings: FID on the 2048-d features, IS on logits_unbiased (10 splits), "
            "KID (100 subsets of up to 1000, degree 3) and MKL (KL per generated file against "
            "the reference file of the same video, by the VGGSound or VAS naming rules). "
            "Reference features are cached (keyed by file content and the weights). Writes "
            "OUT/specvqgan_eval.json, .txt and a per-video KL histogram."
        ),
    )
    p.add_argument("--generated", required=True, help="folder, list file or file of samples")
    p.add_argument("--reference", required=True, help="folder, list file or file of references")
    p.add_argument(
        "--weights",
        default=None,
        help="Melception weights: the authors' melception-21-05-10T09-28-40.pt, a converted "
        ".safetensors, the registry name specvqgan-melception, or 'random[:SEED]' (plumbing "
        "only). Default: the cached authors' file (`audiorep weights download "
        "specvqgan-melception`).",
    )
    p.add_argument(
        "--dataset",
        choices=("vggsound", "vas", "none"),
        default="vggsound",
        help="file-naming rules that pair a generated file with its reference video for MKL "
        "(none: skip MKL)",
    )
    p.add_argument(
        "--metrics", default="fid,isc,kid,mkl", help="comma-separated subset of fid,isc,kid,mkl"
    )
    p.add_argument("--out", default="specvqgan_eval", help="folder for the reports")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="feature cache folder (default: <weights cache>/specvqgan_eval; 'none' disables)",
    )
    p.add_argument("--seed", type=int, default=2020, help="IS/KID subset seed (authors': 2020)")
    add_batch_size_option(p, 16, "spectrograms")
    add_device_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audiorep.specvqgan.evaluate import EvaluationInputError, evaluate, write_report
    from audiorep.weights import cache_dir

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.cache_dir is None:
        cache = cache_dir() / "specvqgan_eval"
    else:
        cache = None if args.cache_dir.lower() == "none" else Path(args.cache_dir)
    try:
        result = evaluate(
            args.generated,
            args.reference,
            weights=args.weights,
            cache_dir=cache,
            dataset=None if args.dataset == "none" else args.dataset,
            metrics=metrics,
            batch_size=args.batch_size,
            device=args.device,
            seed=args.seed,
            progress=not args.quiet,
        )
    except (EvaluationInputError, FileNotFoundError, ValueError, WeightsUnavailableError) as exc:
        return fail(COMMAND, exc)
    paths = write_report(result, args.out)
    for line in result.lines():
        print(display(line))
    for kind, path in paths.items():
        print(display(f"{kind}: {path}"))
    return 0
