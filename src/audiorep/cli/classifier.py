"""Classifier commands: ``train-classifier``, ``evaluate-classifier`` and ``tag``.

* ``audiorep train-classifier --model lstm --train DIR [--eval DIR] --out CKPT_DIR`` trains a
  YouTube-8M head (:mod:`audiorep.heads`) on AudioSet feature shards with train.py's defaults
  (:class:`~audiorep.heads.training.TrainConfig`), logging train.py's lines, writing resumable
  ``ckpt-<step>/`` checkpoints and, with ``--eval``, printing the final evaluation metrics.
* ``audiorep evaluate-classifier --checkpoint CKPT --data DIR`` runs ONE evaluation pass
  (eval.py ``--run_once``) and prints Hit@1, PERR, GAP@20, YouTube-8M's top-20 MAP and the
  AudioSet metrics mAP, mAUC and d'.
* ``audiorep tag AUDIO... --classifier CKPT`` runs VGGish -> PCA + 8-bit quantisation ->
  YouTube-8M dequantisation -> classifier and prints the top-k AudioSet classes per file (and
  per VGGish frame with ``--frames``).

Register them with ``register(sub)`` on the ``audiorep`` sub-parsers. The module also
holds the small Python API the commands are built from: :class:`PackedAudioSet` (a feature
split held in memory, ~1.3 KB per segment, with a re-iterable batch loader whose shuffling
uses the global torch RNG so that :func:`~audiorep.heads.training.train_classifier` resumes
exactly), :func:`classify_quantized` and :func:`tag_file`.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiorep.cli.common import (
    CommandError,
    add_device_option,
    add_max_seconds_option,
    add_seed_option,
    fail,
    positive_int,
)
from audiorep.cli.common import fail as _fail
from audiorep.data.packed import (
    BatchLoader,
    PackedAudioSet,
    progress_bar,
    stream_loader,
)
from audiorep.heads.tagging import (
    DEFAULT_TAGGER,
    TagResult,
    classify_quantized,
    load_classifier,
    tag_file,
    top_classes,
)
from audiorep.heads.training import seed_everything

__all__ = [
    "BatchLoader",
    "PackedAudioSet",
    "TagResult",
    "register",
    "classify_quantized",
    "load_classifier",
    "tag_file",
    "top_classes",
]

RANDOM_WEIGHTS_WARNING = (
    "WARNING: VGGish has seeded random weights - these tags are MEANINGLESS. The classifiers "
    "are trained on AudioSet's released features, which come from the real VGGish weights and "
    "PCA parameters: run `audiorep weights download vggish-torchvggish vggish-pca-torchvggish` "
    "(or pass --weights FILE --pca FILE) for meaningful output."
)


# ------------------------------------------------------------------------------------------
# data


def _check_sources(sources: Sequence[str], what: str) -> list[str]:
    from audiorep.data.audioset import find_shards

    for s in sources:
        try:
            find_shards(s)
        except FileNotFoundError as exc:
            raise CommandError(f"{what}: {exc}") from None
    return list(sources)


# ------------------------------------------------------------------------------------------
# checkpoints


def _remove_checkpoints(directory: Path) -> int:
    """Delete the ``ckpt-*`` / ``.tmp-ckpt-*`` folders, the ``selected/`` weights and the
    ``split.json`` of a previous run (nothing else)."""
    n = 0
    if directory.is_dir():
        for d in directory.iterdir():
            if d.is_dir() and (d.name.startswith(("ckpt-", ".tmp-ckpt-")) or d.name == "selected"):
                shutil.rmtree(d)
                n += 1
        (directory / "split.json").unlink(missing_ok=True)
    return n


# ------------------------------------------------------------------------------------------
# metrics output


_METRIC_LINES = (
    ("avg_hit_at_one", "Hit@1", "{:.4f}"),
    ("avg_perr", "PERR", "{:.4f}"),
    ("gap", "GAP@20", "{:.4f}"),
    ("yt8m_map", "YT8M MAP@20", "{:.4f}"),
    ("map", "mAP", "{:.4f}"),
    ("mauc", "mAUC", "{:.4f}"),
    ("d_prime", "d'", "{:.3f}"),
    ("avg_loss", "avg loss", "{:.4f}"),
)


def format_metrics(res: dict[str, Any]) -> list[str]:
    """Human-readable lines for :func:`~audiorep.heads.training.evaluate_classifier` output."""
    lines = []
    for key, label, fmt in _METRIC_LINES:
        if key in res:
            text = fmt.format(res[key])
            if key == "gap":
                text += "  (YouTube-8M GAP, top 20 per clip)"
            if key == "yt8m_map":
                text += f"  (YouTube-8M top-20 MAP, {res.get('yt8m_num_classes', '?')} classes)"
            if key == "map":
                text += (
                    f"  (AudioSet mAP, {res.get('num_classes', '?')} classes, "
                    f"{res.get('num_skipped_classes', 0)} skipped)"
                )
            lines.append(f"{label + ':':<13}{text}")
    lines.append(f"{'examples:':<13}{res.get('num_examples', '?')}")
    return lines


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return np.asarray(obj).tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _write_json(path: str, data: dict[str, Any]) -> None:
    text = json.dumps(_jsonable(data), indent=1, sort_keys=True)
    if path == "-":
        print(text)
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(out)


# ------------------------------------------------------------------------------------------
# train-classifier


def _parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--set {item!r}: expected KEY=VALUE, e.g. bn_momentum=0.01")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value  # bare strings: pooling_method=average
    return out


def _add_train(sub: Any) -> None:
    from audiorep.heads import HEADS
    from audiorep.heads.recipes import RECIPES
    from audiorep.heads.training import LABEL_LOSSES, SELECT_METRICS
    from audiorep.training.schedules import SCHEDULES

    p = sub.add_parser(
        "train-classifier",
        help="train a classifier head (YouTube-8M's, attention, MLP) on AudioSet feature shards",
        description=(
            "Train a classifier head on AudioSet's released VGGish features "
            "(audioset_v1_embeddings TFRecords). Defaults (--recipe yt8m) are train.py's: batch "
            "1024, Adam, learning rate 0.01 (0.001 for lstm) decayed x0.95 every 4M examples, "
            "every gradient tensor clipped to norm 1, YouTube-8M cross-entropy + L2, 5 epochs. "
            "--recipe converge trains to convergence on a small set: a stratified validation "
            "split, BCE on logits, AdamW, warm-up + cosine, mixup, a weight average, selection "
            "and early stopping on validation mAP. One line per epoch (--log-every N adds "
            "train.py's step lines). Checkpoints go to OUT/ckpt-<step>/, the selected weights to "
            "OUT/selected/; running the same command again resumes where it stopped (exactly, "
            "on CPU)."
        ),
    )
    trainable = sorted(set(HEADS) - {"ensemble"})  # ensembles come from ensemble-classifier
    p.add_argument("--model", required=True, choices=trainable, help="head to train")
    p.add_argument(
        "--train",
        required=True,
        nargs="+",
        metavar="PATH",
        help="training shards: folders (searched recursively for *.tfrecord) and/or files",
    )
    p.add_argument(
        "--eval", nargs="+", metavar="PATH", default=None, help="evaluation shards (optional)"
    )
    p.add_argument("--out", required=True, metavar="CKPT_DIR", help="checkpoint folder")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, help="passes over --train (default 5)")
    length.add_argument(
        "--steps", type=int, default=None, help="stop at this global step (a total, as --max_steps)"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=None, help="examples per step (default 1024)"
    )
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default="yt8m",
        help="defaults for the flags below: yt8m (train.py as it is, default) or converge "
        "(validation split, BCE on logits, AdamW, warm-up + cosine, mixup, weight average, "
        "early stopping: see docs/results.md); explicit flags still win",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="base / peak learning rate (default 0.01; 0.001 for lstm, as the YouTube-8M README)",
    )
    p.add_argument(
        "--lr-decay", type=float, default=None, help="staircase decay factor (default 0.95)"
    )
    p.add_argument(
        "--lr-decay-examples",
        type=int,
        default=None,
        help="examples per decay step (staircase; default 4,000,000)",
    )
    p.add_argument(
        "--schedule",
        choices=["staircase", *SCHEDULES],
        default=None,
        help="staircase (YouTube-8M, default) or a step schedule over the planned run: constant, "
        "cosine, one_cycle",
    )
    p.add_argument(
        "--warmup-epochs", type=float, default=None, help="warm-up length of a step schedule"
    )
    p.add_argument(
        "--final-lr-fraction", type=float, default=None, help="cosine floor, x the peak (default 0)"
    )
    p.add_argument(
        "--label-loss",
        choices=LABEL_LOSSES,
        default=None,
        help="cross_entropy (YouTube-8M, default), hinge, softmax or bce_logits (binary "
        "cross-entropy on every head's logits)",
    )
    p.add_argument(
        "--clip-norm", type=float, default=None, help="gradient clipping norm (<= 0: off; 1)"
    )
    p.add_argument(
        "--clip-mode",
        choices=["per_tensor", "global"],
        default=None,
        help="per_tensor (the original, default) or global",
    )
    p.add_argument("--optimizer", choices=["adam", "adamw"], default=None, help="default adam")
    p.add_argument(
        "--weight-decay", type=float, default=None, help="AdamW decay of weight matrices"
    )
    p.add_argument("--mixup", type=float, default=None, metavar="ALPHA", help="mixup Beta alpha")
    p.add_argument(
        "--ema", type=float, default=None, metavar="DECAY", help="weight average decay (0: off)"
    )
    p.add_argument(
        "--balanced",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="class-balanced batches instead of a uniform shuffle",
    )
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=None,
        help="carve a seeded, multi-label stratified validation split of this share out of "
        "--train (saved as OUT/split.json); it selects the best epoch (OUT/selected/)",
    )
    p.add_argument("--valid-seed", type=int, default=0, help="seed of the validation split")
    p.add_argument(
        "--patience",
        type=int,
        default=None,
        help="stop after N validations without a better --select-metric (0: never)",
    )
    p.add_argument(
        "--select-metric",
        choices=list(SELECT_METRICS),
        default=None,
        help="validation metric that picks the selected weights (default map)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="head config override (repeatable), e.g. --set bn_momentum=0.01 --set "
        "cluster_size=2048; values are JSON (bare words are strings)",
    )
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the latest checkpoint in --out (default); --no-resume deletes "
        "OUT's ckpt-* folders and starts a new model (train.py --start_new_model)",
    )
    p.add_argument(
        "--workers", type=int, default=0, help="reader processes (default 0: main process)"
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="read batches from the shards every epoch (indexed random access) instead of "
        "holding the split in memory (~1.3 KB per segment)",
    )
    add_seed_option(p, "initialisation and shuffling")
    add_device_option(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--log-every",
        type=int,
        default=0,
        help="also log train.py's line every N steps (default 0: one line per epoch only)",
    )
    p.add_argument("--metrics-every", type=int, default=10, help="add Hit@1/PERR/GAP every N steps")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="also save every N steps",
    )
    p.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=15.0,
        help="save at least this often (default 15, as train.py); and always at the end",
    )
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept (default 3)")
    p.add_argument(
        "--eval-every", type=int, default=None, metavar="STEPS", help="also evaluate every N steps"
    )
    p.add_argument(
        "--json", metavar="PATH", default=None, help="write the run summary + eval metrics"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _examples_in_checkpoint(out: Path) -> tuple[int, int]:
    from audiorep.heads.training import latest_checkpoint

    latest = latest_checkpoint(out)
    if latest is None:
        return 0, 0
    state = json.loads((latest / "state.json").read_text())
    return int(state.get("step", 0)), int(state.get("trainer", {}).get("examples_seen", 0))


def _cmd_train(args: argparse.Namespace) -> int:
    try:
        return _run_train(args)
    except CommandError as exc:
        return fail("train-classifier", exc)


#: ``--flag`` destinations -> the TrainConfig field each sets.
_TRAIN_FLAGS = {
    "lr": "base_learning_rate",
    "lr_decay": "learning_rate_decay",
    "lr_decay_examples": "learning_rate_decay_examples",
    "label_loss": "label_loss",
    "clip_norm": "clip_gradient_norm",
    "clip_mode": "clip_mode",
    "schedule": "schedule",
    "final_lr_fraction": "final_lr_fraction",
    "optimizer": "optimizer",
    "weight_decay": "weight_decay",
    "mixup": "mixup_alpha",
    "ema": "ema_decay",
    "balanced": "balanced_sampling",
    "patience": "patience",
    "select_metric": "select_metric",
}
#: Recipe keys that are not TrainConfig fields (the command's own settings).
_RUN_KEYS = ("batch_size", "epochs", "valid_fraction", "warmup_epochs", "head_config")


def _resolve_settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(TrainConfig overrides, run settings) from the recipe, then the explicit flags."""
    from audiorep.heads.recipes import recipe

    chosen = recipe(args.recipe, args.model)
    for dest, field in _TRAIN_FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            chosen[field] = value
    for key in _RUN_KEYS:
        value = getattr(args, key, None)
        if value is not None:
            chosen[key] = value
    run = {key: chosen.pop(key) for key in _RUN_KEYS if key in chosen}
    run.setdefault("batch_size", 1024)
    if args.steps is None:
        run.setdefault("epochs", 5)
    else:
        run["epochs"] = None
    run.setdefault("valid_fraction", 0.0)
    run.setdefault("warmup_epochs", 0.0)
    run.setdefault("head_config", {})
    return chosen, run


def _split_validation(
    data: PackedAudioSet, fraction: float, seed: int, out: Path, resume: bool
) -> tuple[PackedAudioSet, PackedAudioSet, dict[str, Any]]:
    """Carve the stratified validation split; write / check ``OUT/split.json``."""
    from audiorep.data.splits import validation_split

    if not 0.0 < fraction < 1.0:
        raise CommandError(f"--valid-fraction must be in (0, 1), got {fraction}")
    train, valid, record = validation_split(data, fraction, seed)
    path = out / "split.json"
    if resume and path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"{path}: unreadable split record ({exc})") from None
        if saved != record:
            raise CommandError(
                f"{path}: this run's validation split differs from the saved one (other "
                "--train data, --valid-fraction or --valid-seed); use the same settings or "
                "--no-resume"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(path)
    summary = {k: v for k, v in record.items() if k != "valid_segments"}
    return train, valid, summary


def _run_train(args: argparse.Namespace) -> int:
    from audiorep.heads import build_head, head_config
    from audiorep.heads.training import TrainConfig, evaluate_classifier, train_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    for flag in ("epochs", "steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise CommandError(f"--{flag} must be >= 1")
    train_src = _check_sources(args.train, "--train")
    eval_src = _check_sources(args.eval, "--eval") if args.eval else None
    train_overrides, run = _resolve_settings(args)
    fields = head_config(args.model).to_dict()
    recipe_head = {k: v for k, v in run["head_config"].items() if k in fields}
    overrides = {**recipe_head, **_parse_overrides(args.overrides)}
    batch_size, fraction = int(run["batch_size"]), float(run["valid_fraction"])
    if fraction and args.stream:
        raise CommandError("--valid-fraction needs the split in memory (drop --stream)")
    try:
        cfg = TrainConfig.for_head(args.model, **train_overrides)
        seed_everything(args.seed)
        model = build_head(args.model, **overrides)
    except (ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from None
    if cfg.balanced_sampling and args.stream:
        raise CommandError("--balanced needs the split in memory (drop --stream)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} exists and is not a folder")
    if not args.resume:
        removed = _remove_checkpoints(out)
        if removed:
            print(f"--no-resume: removed {removed} checkpoint folder(s) from {out}")
    step0, examples0 = _examples_in_checkpoint(out) if args.resume else (0, 0)
    progress = not args.quiet

    t_load = time.perf_counter()
    valid_loader = None
    run_info: dict[str, Any] = {"recipe": args.recipe, "batch_size": batch_size}
    try:
        if args.stream:
            train_loader = stream_loader(train_src, batch_size, True, args.workers)
            eval_loader = (
                stream_loader(eval_src, batch_size, False, args.workers) if eval_src else None
            )
            n_train = len(train_loader.dataset)  # type: ignore[attr-defined]
        else:
            train_data = PackedAudioSet.load(
                train_src, workers=args.workers, progress=progress, desc="reading --train"
            )
            if fraction:
                train_data, valid_data, split = _split_validation(
                    train_data, fraction, args.valid_seed, out, args.resume
                )
                run_info["split"] = split
                valid_loader = valid_data.loader(1024)
            run_info["train_class_counts"] = train_data.label_counts().tolist()
            train_loader = train_data.loader(
                batch_size, shuffle=True, balanced=cfg.balanced_sampling, progress=progress,
                desc="epoch",
            )  # fmt: skip
            eval_loader = None
            if eval_src:
                eval_data = PackedAudioSet.load(
                    eval_src, workers=args.workers, progress=progress, desc="reading --eval"
                )
                eval_loader = eval_data.loader(batch_size, progress=progress, desc="eval")
            n_train = len(train_data)
    except (OSError, ValueError) as exc:  # TFRecordError is a ValueError
        raise CommandError(str(exc)) from None
    load_seconds = time.perf_counter() - t_load
    if run["warmup_epochs"]:
        steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
        cfg = TrainConfig.from_dict(
            {**cfg.to_dict(), "warmup_steps": round(run["warmup_epochs"] * steps_per_epoch)}
        )

    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"model: {args.model} ({params:,} trainable parameters), config "
        f"{json.dumps(model.config.to_dict(), sort_keys=True)}"
    )
    extras = [
        k for k, v in cfg.to_dict().items() if v != TrainConfig.__dataclass_fields__[k].default
    ]
    print(
        f"train: {n_train:,} segments from {', '.join(train_src)} (read in {load_seconds:.1f} s)"
        + (f", {run_info['split']['num_valid']:,} held out for validation" if fraction else "")
        + f"; recipe {args.recipe}, batch {batch_size}, "
        + (f"{args.steps} steps" if args.steps else f"up to {run['epochs']} epochs")
        + "; settings "
        + ", ".join(f"{k}={getattr(cfg, k)}" for k in extras)
    )

    def log(line: str) -> None:
        if progress:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    t0 = time.perf_counter()
    try:
        result = train_classifier(
            model,
            train_loader,
            eval_loader if args.eval_every else None,
            config=cfg,
            max_steps=args.steps,
            num_epochs=run["epochs"] if args.steps is None else None,
            checkpoint_dir=out,
            resume=args.resume,
            log_every=args.log_every,
            metrics_every=args.metrics_every if args.log_every else 0,
            checkpoint_every_steps=args.checkpoint_every,
            checkpoint_every_seconds=args.checkpoint_minutes * 60.0,
            keep_checkpoints=args.keep,
            eval_every_steps=args.eval_every,
            device=args.device,
            log=log,
            valid_loader=valid_loader,
            run_info=run_info,
        )
    except ValueError as exc:  # e.g. a checkpoint of another head/config in --out
        raise CommandError(str(exc)) from None
    train_seconds = time.perf_counter() - t0
    if (args.eval_every and result.eval_metrics is not None) or valid_loader is not None:
        train_seconds = math.nan  # includes evaluations; not a clean throughput
    new_examples = result.examples_seen - examples0
    trained = [h for h in result.history if h.get("examples_per_second")]
    rate = (
        new_examples / train_seconds
        if train_seconds and new_examples and not math.isnan(train_seconds)
        else float(np.median([h["examples_per_second"] for h in trained])) if trained
        else math.nan
    )  # fmt: skip
    print(
        f"trained to step {result.step} ({result.examples_seen:,} examples, {result.epoch} "
        f"epochs); this run: {result.step - step0} steps, {new_examples:,} examples "
        f"({rate:,.0f} examples/s in training steps); checkpoint {result.checkpoint}"
    )
    if result.valid_metrics is not None:
        v = result.valid_metrics
        print(
            f"selected: epoch {result.best_epoch} (validation mAP {v['map']:.4f}, mAUC "
            f"{v['mauc']:.4f}, d' {v['d_prime']:.3f})"
            + (" - stopped early" if result.stopped_early else "")
            + f"; weights in {result.selected}"
        )
    elif result.selected is not None:
        print(f"selected: the final weights, in {result.selected}")
    summary: dict[str, Any] = {
        "model": args.model,
        "recipe": args.recipe,
        "config": model.config.to_dict(),
        "train_config": cfg.to_dict(),
        "batch_size": batch_size,
        "checkpoint": result.checkpoint,
        "selected": result.selected,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "valid": result.valid_metrics,
        "split": run_info.get("split"),
        "history": result.history,
        "step": result.step,
        "examples_seen": result.examples_seen,
        "epochs_completed": result.epoch,
        "run_steps": result.step - step0,
        "run_examples": new_examples,
        "wall_seconds": time.perf_counter() - t0,
        "examples_per_second": rate,
        "load_seconds": load_seconds,
        "threads": torch.get_num_threads(),
        "parameters": params,
    }
    if eval_loader is not None:
        t1 = time.perf_counter()
        metrics = evaluate_classifier(
            model,
            eval_loader,
            loss=cfg.label_loss,
            top_k=cfg.top_k,
            device=args.device,
            log=log,
            global_step=result.step,
        )
        summary["eval_seconds"] = time.perf_counter() - t1
        summary["eval"] = metrics
        print(f"final evaluation on {', '.join(eval_src or [])} (selected weights):")
        for line in format_metrics(metrics):
            print(f"  {line}")
    if args.json:
        _write_json(args.json, summary)
    return 0


# ------------------------------------------------------------------------------------------
# evaluate-classifier


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate-classifier",
        help="evaluate a trained head once: Hit@1, PERR, GAP@20, YT8M MAP, mAP, mAUC, d'",
        description=(
            "One evaluation pass of a train-classifier checkpoint over AudioSet feature shards "
            "(eval.py --run_once). Prints YouTube-8M's Hit@1, PERR, GAP@20 and top-20 MAP "
            "(its sparsified per-class AP - NOT comparable with published AudioSet numbers) and "
            "the AudioSet-standard mAP, mAUC and d' (full-list per-class AP / ROC AUC over every "
            "class with positives and negatives, d' = sqrt(2) * Phi^-1(mAUC)), then the best "
            "and worst classes by AP. --per-class-csv / --json give every class's AP, ROC AUC, "
            "eval positives and training examples; --plot draws per-class AP against training "
            "examples (the training counts come from the checkpoint or --train-data)."
        ),
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="CKPT",
        help="a ckpt-<step>/ folder, a training folder (the weights it selected, else its "
        f"latest checkpoint), a tagger file or a registry name such as {DEFAULT_TAGGER}",
    )
    p.add_argument("--data", required=True, nargs="+", metavar="PATH", help="shards / folders")
    p.add_argument("--batch-size", type=positive_int, default=1024, help="examples per batch")
    p.add_argument("--workers", type=int, default=0, help="reader processes")
    p.add_argument("--stream", action="store_true", help="do not hold the data in memory")
    p.add_argument(
        "--top-k", type=int, default=None, help="GAP/MAP list length (default: the checkpoint's)"
    )
    add_device_option(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--log-every",
        type=int,
        default=None,
        metavar="BATCHES",
        help="print eval.py's per-batch line every N batches",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="write the metrics and a per_class list ('-': stdout)",
    )
    p.add_argument(
        "--per-class-csv",
        metavar="PATH",
        default=None,
        help="write one CSV row per class: index, mid, name, ap, auc, eval_positives, "
        "train_examples (empty where undefined / unknown)",
    )
    p.add_argument(
        "--plot",
        metavar="PATH.png",
        default=None,
        help="draw per-class AP against training examples per class (PNG, 1200x700); needs "
        "matplotlib (pip install 'audiorep[plot]') and the training counts",
    )
    p.add_argument(
        "--train-data",
        nargs="+",
        metavar="PATH",
        default=None,
        help="training shards / folders to count training examples per class (default: the "
        "counts saved with the checkpoint, if any)",
    )
    p.add_argument(
        "--show",
        type=int,
        default=10,
        metavar="N",
        help="print the N best and N worst classes by AP (default 10; 0: none)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from audiorep.heads.report import (
        format_best_worst,
        per_class_table,
        train_counts_from_data,
        train_counts_from_state,
        write_per_class_csv,
    )
    from audiorep.heads.training import evaluate_classifier

    def fail(message: object) -> int:
        return _fail("evaluate-classifier", message)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.show < 0:
        return fail(f"--show must be >= 0, got {args.show}")
    if args.plot:
        from audiorep.heads.report_plot import PlotUnavailableError, require_matplotlib

        if Path(args.plot).suffix.lower() != ".png":
            return fail(f"--plot {args.plot}: the plot is written as PNG; name a .png file")
        try:
            require_matplotlib()  # before the evaluation pass, not after it
        except PlotUnavailableError as exc:
            return fail(f"--plot: {exc}")
    try:
        data_src = _check_sources(args.data, "--data")
        train_src = _check_sources(args.train_data, "--train-data") if args.train_data else None
        model, state, ckpt = load_classifier(args.checkpoint, args.device)
    except (CommandError, FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    num_classes = int(model.config.num_classes)
    try:
        train_counts = train_counts_from_state(state, num_classes)
    except ValueError as exc:
        return fail(f"{ckpt}: {exc}")
    counts_from = "checkpoint" if train_counts is not None else None
    if train_src is None and train_counts is None and args.plot:
        return fail(
            f"--plot needs the number of training examples per class, but {ckpt} holds no "
            "'train_class_counts': pass --train-data PATH... (the training shards)"
        )
    train_cfg = state.get("train_config") or {}
    loss = train_cfg.get("label_loss", "cross_entropy")
    top_k = args.top_k or int(train_cfg.get("top_k", 20))
    progress = not args.quiet
    try:
        if args.stream:
            loader: Iterable[Any] = stream_loader(data_src, args.batch_size, False, args.workers)
        else:
            data = PackedAudioSet.load(
                data_src, workers=args.workers, progress=progress, desc="reading --data"
            )
            loader = data.loader(args.batch_size, progress=progress, desc="evaluating")
    except (OSError, ValueError) as exc:
        return fail(str(exc))
    if train_src is not None:
        try:
            train_counts = train_counts_from_data(train_src, num_classes, progress=progress)
        except (OSError, ValueError) as exc:
            return fail(f"--train-data: {exc}")
        counts_from = "--train-data"
    to_stdout = args.json == "-"
    out = sys.stderr if to_stdout else sys.stdout
    print(f"checkpoint: {ckpt} ({state['model']}, step {state.get('step')})", file=out)
    t0 = time.perf_counter()
    try:
        res = evaluate_classifier(
            model,
            loader,
            loss=loss,
            top_k=top_k,
            device=args.device,
            log=lambda line: print(line, file=out),
            log_every=args.log_every,
            global_step=state.get("step"),
            per_class=True,
        )
    except ValueError as exc:
        return fail(str(exc))
    seconds = time.perf_counter() - t0
    # the per-class arrays go to the table; res keeps the scalar metrics it always had
    rows = per_class_table(res.pop("ap"), res.pop("auc"), res.pop("num_positives"), train_counts)
    res.pop("yt8m_aps", None)
    for line in format_metrics(res):
        print(line, file=out)
    print(f"{'seconds:':<13}{seconds:.1f} ({res['num_examples'] / seconds:,.0f} examples/s)",
          file=out)  # fmt: skip
    for line in format_best_worst(rows, args.show):
        print(line, file=out)
    if args.per_class_csv:
        try:
            write_per_class_csv(args.per_class_csv, rows)
        except OSError as exc:
            return fail(f"--per-class-csv {args.per_class_csv}: {exc}")
        print(f"per-class table: {args.per_class_csv}", file=out)
    if args.plot:
        from audiorep.heads.report_plot import plot_ap_vs_train_examples

        try:
            plot_ap_vs_train_examples(
                args.plot,
                rows,
                mean_ap=float(res.get("map", math.nan)),
                model_name=f"{state['model']} ({ckpt.parent.name}/{ckpt.name})",
            )
        except (OSError, ValueError) as exc:
            return fail(f"--plot {args.plot}: {exc}")
        print(f"per-class AP plot: {args.plot} (training counts from {counts_from})", file=out)
    if args.json:
        _write_json(
            args.json,
            {
                "checkpoint": ckpt,
                "model": state["model"],
                "step": state.get("step"),
                "data": data_src,
                "seconds": seconds,
                "metrics": res,
                "train_counts_from": counts_from,
                "per_class": [r.to_dict() for r in rows],
            },
        )
    return 0


# ------------------------------------------------------------------------------------------
# tag


def _add_tag(sub: Any) -> None:
    p = sub.add_parser(
        "tag",
        help="audio files -> top AudioSet classes with a trained classifier head",
        description=(
            "VGGish embeddings -> PCA + 8-bit quantisation (the AudioSet release form) -> "
            "YouTube-8M dequantisation -> a train-classifier head -> the top-k AudioSet classes "
            "(names from the shipped class_labels_indices.csv). A file is classified in "
            "consecutive 10-frame windows (the segments the heads were trained on); its score "
            "per class is the max (--pool mean: the mean) over windows. --frames also prints, "
            "for every VGGish frame (0.96 s), the head's output on that frame alone as a "
            "1-frame clip. The heads are trained on features of the REAL VGGish weights + PCA: "
            "anything else (e.g. --weights random) runs but gives meaningless tags."
        ),
    )
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files, folders or list files")
    p.add_argument(
        "--classifier",
        default=DEFAULT_TAGGER,
        metavar="CKPT",
        help=f"a train-classifier ckpt-<step>/ or training folder, a tagger file or a registry "
        f"name (default: {DEFAULT_TAGGER}, the AudioSet tagger shipped with audiorep)",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="VGGish weights: file, registry name or 'random' (meaningless tags); default: "
        "the cached pretrained weights",
    )
    p.add_argument("--pca", default=None, help="PCA parameters file (default: with the weights)")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per file/frame")
    p.add_argument("--frames", action="store_true", help="also tag every frame on its own")
    p.add_argument("--pool", choices=["max", "mean"], default="max", help="window -> file pooling")
    p.add_argument("--ext", default=None, help="extensions searched in folders, comma-separated")
    add_device_option(p)
    add_seed_option(p)
    add_max_seconds_option(p)
    p.add_argument("--json", metavar="PATH", default=None, help="write results ('-': stdout)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tag)


def _cmd_tag(args: argparse.Namespace) -> int:
    from audiorep.extract.inputs import collect_inputs
    from audiorep.pipelines import WeightsUnavailableError, load
    from audiorep.weights import WeightsError

    def fail(message: object) -> int:
        return _fail("tag", message)

    if args.top_k < 1:
        return fail("--top-k must be >= 1")
    exts = [e.strip() for e in args.ext.split(",") if e.strip()] if args.ext else None
    try:
        items = collect_inputs(args.audio, exts)
    except (FileNotFoundError, OSError) as exc:
        return fail(str(exc))
    if not items:
        return fail(f"no audio files found in {', '.join(args.audio)}")
    try:
        model, state, ckpt = load_classifier(args.classifier, args.device)
    except (FileNotFoundError, ValueError) as exc:
        return fail(f"--classifier: {exc}")
    try:
        bundle = load("vggish", weights=args.weights, pca=args.pca, device=args.device,
                      seed=args.seed)  # fmt: skip
    except (WeightsUnavailableError, WeightsError, FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    if bundle.postprocessor is None:
        return fail(
            "the classifier needs PCA-quantised features but no PCA parameters were found with "
            "the weights; pass --pca vggish_pca_params.npz (or a converted .safetensors)"
        )
    num_classes = int(model.config.num_classes)
    from audiorep.data import audioset_class_mids, audioset_class_names

    if num_classes == 527:
        names, mids = audioset_class_names(), audioset_class_mids()
    else:
        names = [f"class {i}" for i in range(num_classes)]
        mids = [""] * num_classes
    meaningful = bool(bundle.pretrained)
    to_stdout = args.json == "-"
    out = sys.stderr if to_stdout else sys.stdout
    if not meaningful:
        print(RANDOM_WEIGHTS_WARNING, file=out)
    print(f"vggish: {bundle.weights_description}", file=out)
    print(f"classifier: {ckpt} ({state['model']}, step {state.get('step')})", file=out)

    results: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    progress = not args.quiet

    def entry(idx: int, name: str, score: float) -> dict[str, Any]:
        return {"index": idx, "mid": mids[idx], "name": name, "score": score}

    for item in progress_bar(items, enabled=progress, desc="tagging", unit=" files"):
        try:
            res = tag_file(bundle, model, item.path, frames=args.frames, pool=args.pool)
        except (ValueError, OSError, RuntimeError) as exc:
            msg = str(exc)
            failures.append((str(item.path), msg))
            print(
                f"audiorep tag: {msg if str(item.path) in msg else f'{item.path}: {msg}'}",
                file=sys.stderr,
            )
            continue
        top = top_classes(res.scores, args.top_k, names)
        print(
            f"{res.path}: {res.duration:.2f} s, {res.num_frames} frames, {res.num_windows} "
            f"window(s), {args.pool} over windows",
            file=out,
        )
        for _, name, score in top:
            print(f"  {score:.4f}  {name}", file=out)
        rec: dict[str, Any] = {
            "path": res.path,
            "duration": res.duration,
            "num_frames": res.num_frames,
            "num_windows": res.num_windows,
            "top": [entry(i, n, s) for i, n, s in top],
        }
        if res.frame_scores is not None:
            rec["frames"] = []
            for t, fs in zip(res.timestamps, res.frame_scores):
                ftop = top_classes(fs, args.top_k, names)
                shown = " | ".join(f"{n} {s:.3f}" for _, n, s in ftop)
                print(f"    [{t:7.2f} s] {shown}", file=out)
                rec["frames"].append({"start": float(t), "top": [entry(*x) for x in ftop]})
        results.append(rec)
    if not meaningful and results:
        print(RANDOM_WEIGHTS_WARNING, file=out)
    if args.json:
        _write_json(
            args.json,
            {
                "classifier": ckpt,
                "model": state["model"],
                "vggish": bundle.weights_description,
                "meaningful": meaningful,
                "pool": args.pool,
                "files": results,
                "failures": [{"path": p, "error": e} for p, e in failures],
            },
        )
    return 1 if failures else 0


# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# ensemble-classifier


def _add_ensemble(sub: Any) -> None:
    p = sub.add_parser(
        "ensemble-classifier",
        help="average trained heads, members chosen on the validation split only",
        description=(
            "Greedy forward selection with replacement (Caruana et al. 2004) over the selected "
            "weights of several train-classifier runs that share one validation split "
            "(--valid-fraction, same --valid-seed and --train): members are added while the "
            "validation mAP of the averaged probabilities rises. The ensemble is written as an "
            "ordinary head checkpoint (OUT/selected/) that evaluate-classifier and tag load. "
            "--eval scores it once at the end; the eval set plays no part in the choice."
        ),
    )
    p.add_argument("--runs", required=True, nargs="+", metavar="RUN", help="training folders")
    p.add_argument(
        "--train", required=True, nargs="+", metavar="PATH", help="the runs' --train shards"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where the ensemble is written")
    p.add_argument("--max-members", type=positive_int, default=8, help="default 8")
    p.add_argument("--eval", nargs="+", metavar="PATH", default=None, help="score once on these")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", metavar="PATH", default=None, help="write the choice and metrics")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_ensemble)


def _cmd_ensemble(args: argparse.Namespace) -> int:
    try:
        return _run_ensemble(args)
    except CommandError as exc:
        return fail("ensemble-classifier", exc)


def _validation_of(runs: Sequence[str], data: PackedAudioSet) -> PackedAudioSet:
    """The validation split the runs share, rebuilt from their ``split.json``."""
    records = []
    for run in runs:
        path = Path(run) / "split.json"
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(
                f"{path}: no readable split record ({exc}); train the runs with --valid-fraction"
            ) from None
    if any(r != records[0] for r in records[1:]):
        raise CommandError("the runs were validated on different splits (--valid-fraction/-seed)")
    from audiorep.data.splits import subset_of_record

    try:
        return subset_of_record(data, records[0])
    except KeyError as exc:
        raise CommandError(f"--train: {exc.args[0]}") from None


def _run_ensemble(args: argparse.Namespace) -> int:
    from audiorep.heads.ensemble import EnsembleModel
    from audiorep.heads.ensemble_selection import greedy_selection, predict
    from audiorep.heads.training import evaluate_classifier
    from audiorep.training.checkpoint import save_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.quiet
    heads, states = [], []
    for run in args.runs:
        try:
            model, state, ckpt = load_classifier(run)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(f"--runs: {exc}") from None
        heads.append(model)
        states.append(state)
    try:
        data = PackedAudioSet.load(
            _check_sources(args.train, "--train"), progress=progress, desc="reading --train"
        )
    except (OSError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    valid = _validation_of(args.runs, data)
    preds = []
    labels = None
    for model in progress_bar(heads, enabled=progress, desc="validating"):
        p, labels = predict(model, valid.loader(1024))
        preds.append(p)
    assert labels is not None
    chosen, scores = greedy_selection(preds, labels, max_members=args.max_members)
    for k, (i, score) in enumerate(zip(chosen, scores)):
        print(f"member {k + 1}: {args.runs[i]} -> validation mAP {score:.4f}")
    ensemble = EnsembleModel.from_heads([heads[i] for i in chosen])
    counts = states[chosen[0]].get("train_class_counts")
    selection = {"members": [str(args.runs[i]) for i in chosen], "valid_map": scores}
    extra = {"selection": selection, "train_class_counts": counts}
    out = Path(args.out)
    path = save_checkpoint(out / "selected", ensemble, step=0, extra=extra)
    print(f"ensemble of {len(chosen)} ({len(set(chosen))} distinct runs) written to {path}")
    summary: dict[str, Any] = {"selection": selection, "checkpoint": path}
    if args.eval:
        try:
            evalset = PackedAudioSet.load(
                _check_sources(args.eval, "--eval"), progress=progress, desc="reading --eval"
            )
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        metrics = evaluate_classifier(ensemble, evalset.loader(1024), loss="bce_logits")
        summary["eval"] = metrics
        print(f"evaluation on {', '.join(args.eval)}:")
        for line in format_metrics(metrics):
            print(f"  {line}")
    if args.json:
        _write_json(args.json, summary)
    return 0


# ------------------------------------------------------------------------------------------


def register(sub: Any) -> None:
    """Register ``train-classifier``, ``evaluate-classifier`` and ``tag`` on ``sub`` (the
    ``add_subparsers()`` object of the ``audiorep`` parser)."""
    _add_train(sub)
    _add_evaluate(sub)
    _add_tag(sub)
    _add_ensemble(sub)
