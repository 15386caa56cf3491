"""``audiorep linear-eval --model M --dataset DIR``: EVAR-style linear evaluation.

Exit status: 0 = evaluated; 2 = bad arguments, unreadable dataset or missing weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from audiorep.cli.common import add_device_option, add_seed_option, fail
from audiorep.evaluation.features import MODEL_SPECS as MODEL_CHOICES


def register(sub) -> None:
    """Register ``linear-eval`` on an ``argparse`` sub-parser collection."""
    p = sub.add_parser(
        "linear-eval",
        help="EVAR-style linear evaluation of frozen clip features on a labelled folder/CSV",
        description=(
            "Extract one feature vector per clip (cached on disk by file content and "
            "settings), standardise with training statistics, train one linear layer (Adam "
            "lr 3e-4, up to 200 epochs, early stopping on validation accuracy with patience "
            "20) for each seed and report the test accuracy mean and std. DATASET is "
            "DIR/<label>/*.wav, DIR/<split>/<label>/*.wav (train/valid/test) or a CSV of "
            "path,label[,split]; without splits a seeded stratified 70/15/15 split is made. "
            "See docs/linear_eval.md."
        ),
    )
    p.add_argument("--model", required=True, choices=MODEL_CHOICES, help="feature model spec")
    p.add_argument("--dataset", required=True, help="dataset folder or CSV")
    p.add_argument(
        "--weights",
        default=None,
        help="weights: a file, a registry name, or 'random' (seeded, NOT pretrained). "
        "Default: the cached pretrained weights.",
    )
    add_seed_option(p)
    p.add_argument(
        "--layers",
        default=None,
        help="fusion layers, comma-separated (default: the paper's: vggish 9,14; cnn14 3,6; "
        "ast 4,11 (0-based blocks))",
    )
    p.add_argument(
        "--unit-seconds",
        type=float,
        default=None,
        help="crop (from the start) / zero-pad every clip to this length (default: whole clip)",
    )
    add_device_option(p)
    p.add_argument(
        "--cache-dir",
        default=None,
        help="feature cache (default: $AUDIOREP_HOME/linear_eval or ~/.cache/audiorep/linear_eval)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--seeds", type=int, default=3, help="training runs (default 3)")
    p.add_argument(
        "--seed-base", type=int, default=42, help="first training seed (default 42, as EVAR)"
    )
    p.add_argument(
        "--split-seed", type=int, default=0, help="seed of the stratified split (default 0)"
    )
    p.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (default 3e-4)")
    p.add_argument("--epochs", type=int, default=200, help="maximum epochs (default 200)")
    p.add_argument("--patience", type=int, default=20, help="early-stopping patience (20)")
    p.add_argument(
        "--batch-size", type=int, default=None, help="training batch (default min(200, n_train))"
    )
    p.add_argument("--json", default=None, metavar="PATH", help="write the full results here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=run)


def format_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table of one or more :func:`run_linear_eval` results (accuracy in %)."""
    if not results:
        return ""
    seeds = [r["seed"] for r in results[0]["result"]["runs"]]
    head = ["model", "D", "train/valid/test", *(f"seed {s}" for s in seeds), "mean ± std"]
    head.append("time (s)")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in results:
        res, counts = r["result"], r["counts"]
        cells = [
            r["model"],
            str(r["feature_dim"]),
            f"{counts['train']}/{counts['valid']}/{counts['test']}",
            *(f"{100 * run['test_accuracy']:.1f}" for run in res["runs"]),
            f"{100 * res['mean']:.1f} ± {100 * res['std']:.1f}",
            f"{r['timing']['total']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from audiorep.evaluation.linear import LinearConfig, run_linear_eval
    from audiorep.features.fusion import parse_layers
    from audiorep.pipelines import WeightsUnavailableError

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    if args.seeds < 1:
        print("error: --seeds must be >= 1", file=sys.stderr)
        return 2
    config = LinearConfig(
        lr=args.lr, max_epochs=args.epochs, patience=args.patience, batch_size=args.batch_size
    )
    try:
        out = run_linear_eval(
            args.model,
            args.dataset,
            weights=args.weights,
            weights_seed=args.seed,
            device=args.device,
            cache_dir=args.cache_dir,
            use_cache=not args.no_cache,
            seeds=[args.seed_base + i for i in range(args.seeds)],
            split_seed=args.split_seed,
            layers=parse_layers(args.layers) if args.layers else None,
            unit_seconds=args.unit_seconds,
            config=config,
            log=log,
        )
    except (WeightsUnavailableError, FileNotFoundError, ValueError) as e:
        return fail("linear-eval", e)
    if args.json:  # before printing: a closed stdout must not lose the results
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(format_table([out]))
    c, t = out["cache"], out["timing"]
    print(
        f"\nweights: {out['settings']['weights']}\n"
        f"classes: {', '.join(out['classes'])}\n"
        f"feature cache: {c['hits']} hits, {c['misses']} misses ({c['dir'] or 'disabled'})\n"
        f"time: features {t['features']:.1f} s, training {t['training']:.1f} s, "
        f"total {t['total']:.1f} s"
    )
    return 0


__all__ = ["format_table", "register", "run"]
