"""``audiorep fad BACKGROUND EVAL``: Fréchet Audio Distance between two sets.

Each side is a folder of audio, a folder of embeddings from ``audiorep embed``, or a
statistics file. Exit status: 0 = scored, 1 = scored but some files failed (listed in the
report), 2 = nothing scored (bad arguments, unreadable inputs, incomparable sets).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiorep.cli.common import (
    add_batch_size_option,
    add_device_option,
    add_max_seconds_option,
    add_seed_option,
)
from audiorep.cli.common import fail as _fail


def register(sub) -> None:
    from audiorep.fad.presets import PRESETS

    presets = "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())
    p = sub.add_parser(
        "fad",
        help="Fréchet Audio Distance between two folders of audio/embeddings or stats files",
        description=(
            "FAD of EVAL against BACKGROUND. Each side may be a folder of audio (embedded "
            "with VGGish, embeddings cached per file by content hash + settings), a folder "
            "of .npz embeddings written by 'audiorep embed' (or .npy arrays), or a statistics "
            f"file (audiorep/fadtk .npz, google-research TFRecord). Presets: {presets}."
        ),
    )
    p.add_argument("background", help="reference set: audio folder, embedding folder or stats")
    p.add_argument("eval", help="set to score: audio folder, embedding folder or stats")
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default="vggish",
        help="embedding pipeline for audio folders (default: vggish)",
    )
    p.add_argument(
        "--hop",
        type=float,
        default=None,
        metavar="SECONDS",
        help="example hop in seconds (multiple of 0.01), overriding the preset's",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="VGGish weights (file, registry name or 'random'); default: cached",
    )
    add_seed_option(p)
    add_max_seconds_option(p)
    add_device_option(p)
    add_batch_size_option(p, 64, "examples")
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        default="float32",
        help="model precision (bfloat16 is fast but not reference-exact)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help="embedding cache (default: $AUDIOREP_HOME/embeddings or ~/.cache/audiorep/embeddings)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument(
        "--per-clip",
        metavar="CSV",
        default=None,
        help="write every eval clip's FD against the background (fadtk order)",
    )
    p.add_argument("--inf", action="store_true", help="also compute FAD-inf (fadtk procedure)")
    p.add_argument("--inf-steps", type=int, default=25, help="FAD-inf: points in the fit")
    p.add_argument("--inf-min-n", type=int, default=500, help="FAD-inf: smallest sample size")
    p.add_argument("--inf-seed", type=int, default=0, help="FAD-inf: bootstrap seed")
    p.add_argument(
        "--inf-no-replace",
        action="store_true",
        help="FAD-inf: subsample without replacement (fadtk bootstraps with)",
    )
    p.add_argument("--kid", action="store_true", help="also compute KID (torch-fidelity)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID: number of subsets")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID: subset size")
    p.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="write the full report as JSON ('-' prints JSON instead of text)",
    )
    p.add_argument(
        "--save-stats",
        metavar="DIR",
        default=None,
        help="write DIR/background.npz and DIR/eval.npz (mu, sigma, n, settings)",
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        default=None,
        help="draw per-clip FD distribution and FAD-inf fit (needs matplotlib)",
    )
    p.add_argument("--model", default=None, help="model key inside a fadtk stats file")
    p.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare sets embedded with different settings (not recommended)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _cache(args: argparse.Namespace, bundle):
    from audiorep.fad.cache import EmbeddingCache
    from audiorep.weights import cache_dir

    if args.no_cache:
        return None
    root = Path(args.cache_dir) if args.cache_dir else cache_dir() / "embeddings"
    return EmbeddingCache(root, bundle.settings())


def run(args: argparse.Namespace) -> int:
    from audiorep.fad.presets import get_preset
    from audiorep.fad.report import compare_sets
    from audiorep.fad.sources import SetError, open_set
    from audiorep.pipelines import WeightsUnavailableError, load
    from audiorep.weights import WeightsError

    def fail(message: object) -> int:
        return _fail("fad", message)

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    try:
        preset = get_preset(args.preset).with_hop(args.hop)
    except ValueError as exc:
        return fail(str(exc))
    state: dict = {}

    def bundle():
        if "bundle" not in state:
            b = load(
                "vggish",
                weights=args.weights,
                pca=False,
                device=args.device,
                torchvggish_compat=preset.final_relu,
                seed=args.seed,
                precision=args.precision,
                windowing=preset.windowing,
            )
            log(f"model:      VGGish, {b.weights_description}")
            if not b.pretrained:
                log("WARNING: seeded random weights - this FAD is NOT meaningful")
            state["bundle"] = b
        return state["bundle"]

    def side(path: str, label: str):
        log(f"{label}: {path}")
        return open_set(
            path,
            bundle_factory=bundle,
            cache_factory=lambda b: _cache(args, b),
            batch_size=args.batch_size,
            progress=not args.quiet,
            model=args.model,
        )

    try:
        background = side(args.background, "background")
        eval_set = side(args.eval, "eval")
        report = compare_sets(
            background,
            eval_set,
            preset=preset.name if "bundle" in state else None,
            allow_mismatch=args.allow_mismatch,
            # --plot draws what the sets allow: its panels say when a part was not computed
            inf=args.inf or (bool(args.plot) and eval_set.has_embeddings),
            inf_steps=args.inf_steps,
            inf_min_n=args.inf_min_n,
            inf_replace=not args.inf_no_replace,
            kid=args.kid,
            kid_subsets=args.kid_subsets,
            kid_subset_size=args.kid_subset_size,
            per_clip=bool(args.per_clip) or (bool(args.plot) and eval_set.has_embeddings),
            seed=args.inf_seed,
        )
    except (SetError, WeightsUnavailableError, WeightsError) as exc:
        return fail(str(exc))
    except ValueError as exc:  # e.g. FAD-inf grid larger than the set without replacement
        return fail(str(exc))

    if args.per_clip:
        report.write_per_clip(args.per_clip)
    if args.save_stats:
        out = Path(args.save_stats)
        out.mkdir(parents=True, exist_ok=True)
        for name, s in (("background", background), ("eval", eval_set)):
            s.stats.meta = {**(s.settings or {}), "source": s.source, "preset": report.preset}
            s.stats.save(out / f"{name}.npz")
    if args.plot:
        from audiorep.fad.plot import plot_report

        try:
            plot_report(report, args.plot)
        except RuntimeError as exc:
            return fail(str(exc))
    if args.json and args.json != "-":
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(report.to_json() + "\n")
    if args.json == "-":
        print(report.to_json())
    else:
        for line in report.lines():
            print(line)
        written = [x for x in (args.per_clip, args.json, args.plot) if x]
        if args.save_stats:
            written.append(f"{args.save_stats}/{{background,eval}}.npz")
        if written:
            print(f"written:    {', '.join(written)}")
    failures = background.failures + eval_set.failures
    for path, reason in failures:
        print(
            f"FAILED {reason if reason.startswith(path) else f'{path}: {reason}'}", file=sys.stderr
        )
    return 1 if failures else 0


__all__ = ["register", "run"]
