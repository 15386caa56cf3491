"""Train every classifier head on AudioSet bal_train, select on validation, score once on eval.

Reproduces the main table of ``docs/results.md``::

    python examples/train_audioset_heads.py                      # every head + the ensemble
    python examples/train_audioset_heads.py --heads logistic,mlp # some heads
    python examples/train_audioset_heads.py --table-only         # rebuild the table

Every row is one command, ``audiorep train-classifier --model HEAD --recipe converge --train
bal_train --eval eval --out OUT/HEAD`` (plus ``--seed`` for the ensemble's extra members):
the ``converge`` recipe (:mod:`audiorep.heads.recipes`) carves a seeded, stratified 10 %
validation split out of bal_train, trains with BCE on logits, AdamW, warm-up + cosine, mixup
and a weight average, keeps the epoch with the best validation mAP and stops early; the eval
set is scored once, with the selected weights, and never used for any choice. The ensemble
row is ``audiorep ensemble-classifier`` over those runs (members chosen on validation).

Data: ``--data`` (default ``/work/shared/audioset/full``) must hold ``bal_train/`` and
``eval/`` with AudioSet's released feature shards (``audioset_v1_embeddings``; Google, CC BY
4.0). When it is absent the script says so and exits with status 0. Runs go to ``--out``
(default ``bench_out/audioset_heads``, git-ignored); finished runs are reused, interrupted ones
resume, ``--retrain`` starts over.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path("/work/shared/audioset/full")
#: Table order: YouTube-8M's heads, then the attention / MLP heads.
HEADS = (
    "logistic",
    "moe",
    "frame_logistic",
    "dbof",
    "lstm",
    "mlp",
    "decision_attention",
    "feature_attention",
    "multilevel_attention",
)
#: Extra seeds trained for the ensemble (the heads' own runs use seed 0).
ENSEMBLE_SEEDS = {"mlp": (1, 2)}


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def train_command(head: str, data: Path, out: Path, seed: int, threads: int) -> list[str]:
    return [
        "audiorep", "train-classifier", "--model", head, "--recipe", "converge",
        "--train", str(data / "bal_train"), "--eval", str(data / "eval"), "--out", str(out),
        "--seed", str(seed), "--threads", str(threads), "-q", "--json", str(out / "run.json"),
    ]  # fmt: skip


def run(cmd: list[str]) -> None:
    _log("$ " + " ".join(cmd))
    exe = Path(sys.executable).with_name("audiorep")
    subprocess.run([str(exe) if exe.exists() else cmd[0], *cmd[1:]], check=True)


def _row(name: str, res: dict[str, Any], command: str) -> str:
    ev = res["eval"]
    history = res.get("history") or []
    rates = sorted(h["examples_per_second"] for h in history if h.get("examples_per_second"))
    rate = rates[len(rates) // 2] if rates else math.nan
    epochs = f"{res.get('best_epoch', '?')} / {res.get('epochs_completed', '?')}"
    minutes = res.get("wall_seconds", math.nan) / 60
    return (
        f"| {name} | {res.get('parameters', 0):,} | {ev['map']:.3f} | {ev['mauc']:.3f} | "
        f"{ev['d_prime']:.2f} | {ev['gap']:.3f} | {ev['avg_hit_at_one']:.3f} | {epochs} | "
        f"{minutes:.1f} min | {rate:,.0f} | `{command}` |"
    )


def table(out: Path, heads: list[str]) -> str:
    lines = [
        "| head | parameters | mAP | mAUC | d′ | GAP@20 | Hit@1 | epochs (selected / run) | "
        "wall time | train examples/s | command |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for head in heads:
        path = out / head / "run.json"
        if path.is_file():
            cmd = f"audiorep train-classifier --model {head} --recipe converge ..."
            lines.append(_row(head, json.loads(path.read_text()), cmd))
    ens = out / "ensemble" / "run.json"
    if ens.is_file():
        res = json.loads(ens.read_text())
        ev = res["eval"]
        n = len(res["selection"]["members"])
        lines.append(
            f"| ensemble ({n} members) | | {ev['map']:.3f} | {ev['mauc']:.3f} | "
            f"{ev['d_prime']:.2f} | {ev['gap']:.3f} | {ev['avg_hit_at_one']:.3f} | | | | "
            "`audiorep ensemble-classifier --runs ...` |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=Path("bench_out/audioset_heads"))
    ap.add_argument("--heads", default=",".join(HEADS), help="comma-separated")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-ensemble", action="store_true")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args(argv)
    heads = [h for h in args.heads.split(",") if h]
    unknown = sorted(set(heads) - set(HEADS))
    if unknown:
        ap.error(f"unknown heads {unknown}; choose from {HEADS}")
    if not args.table_only:
        if not (args.data / "bal_train").is_dir() or not (args.data / "eval").is_dir():
            _log(f"{args.data}: no bal_train/ and eval/ feature shards here; nothing to do")
            return 0
        runs: list[Path] = []
        for head in heads:
            extra = () if args.no_ensemble else ENSEMBLE_SEEDS.get(head, ())
            for seed in (0, *extra):
                out = args.out / (head if seed == 0 else f"{head}_seed{seed}")
                if args.retrain or not (out / "run.json").is_file():
                    cmd = train_command(head, args.data, out, seed, args.threads)
                    run(cmd + (["--no-resume"] if args.retrain else []))
                runs.append(out)
        if not args.no_ensemble and len(runs) > 1:
            ens = args.out / "ensemble"
            run(["audiorep", "ensemble-classifier", "--runs", *map(str, runs),
                 "--train", str(args.data / "bal_train"), "--eval", str(args.data / "eval"),
                 "--out", str(ens), "--json", str(ens / "run.json"), "-q"])  # fmt: skip
    text = table(args.out, heads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
