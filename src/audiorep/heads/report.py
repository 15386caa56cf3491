"""Per-class reports of a classifier evaluation: a table, its CSV and best / worst lines.

One row per class (:class:`ClassRow`): its index, AudioSet ontology id (MID) and display name,
the AudioSet-standard AP and ROC AUC on the evaluation set (NaN where undefined: a class
without positives, or without negatives, in that set), the number of evaluation clips that
carry the class and, when known, the number of training clips that carried it. The values come
from one evaluation pass:
``evaluate_classifier(..., per_class=True)`` (``src/audiorep/heads/training.py``) returns the
``ap``, ``auc`` and ``num_positives`` arrays this module tabulates.

The training counts are either saved with a run (``state.json`` key ``train_class_counts``:
a list of C ints) or counted from the training shards (:func:`train_counts_from_data`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiorep.atomic import write_bytes_atomic

__all__ = [
    "CSV_COLUMNS",
    "ClassRow",
    "best_and_worst",
    "check_train_counts",
    "class_labels",
    "format_best_worst",
    "per_class_table",
    "train_counts_from_data",
    "train_counts_from_state",
    "write_per_class_csv",
]

#: Columns of :func:`write_per_class_csv`, in order (the :class:`ClassRow` field names).
CSV_COLUMNS = ("index", "mid", "name", "ap", "auc", "eval_positives", "train_examples")


@dataclasses.dataclass(frozen=True)
class ClassRow:
    """One class of a per-class report.

    ``ap`` / ``auc``: NaN where undefined (no positive or no negative evaluation clip).
    ``eval_positives``: evaluation clips labelled with the class. ``train_examples``: training
    clips labelled with it, ``None`` when unknown.
    """

    index: int
    mid: str
    name: str
    ap: float
    auc: float
    eval_positives: int
    train_examples: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes ``None``."""
        out = dataclasses.asdict(self)
        for key in ("ap", "auc"):
            if not math.isfinite(out[key]):
                out[key] = None
        return out

    @property
    def label(self) -> str:
        """``"Speech (/m/09x0r)"``, or the bare name when there is no MID."""
        return f"{self.name} ({self.mid})" if self.mid else self.name


def class_labels(num_classes: int) -> tuple[list[str], list[str]]:
    """``(display names, MIDs)`` of ``num_classes`` classes: AudioSet's 527 when C == 527,
    else ``"class <i>"`` and empty MIDs (a head trained on another label set)."""
    from audiorep.data import audioset_class_mids, audioset_class_names

    if num_classes == len(audioset_class_names()):
        return audioset_class_names(), audioset_class_mids()
    return [f"class {i}" for i in range(num_classes)], [""] * num_classes


def _vector(values: Any, num_classes: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.shape != (num_classes,):
        raise ValueError(f"{what}: expected {num_classes} values, got {arr.shape[0]}")
    return arr


def check_train_counts(counts: Any, num_classes: int, what: str) -> np.ndarray:
    """``counts`` as int64 ``(num_classes,)``; ValueError naming ``what`` when it is not a
    list of ``num_classes`` non-negative integers."""
    try:
        arr = np.asarray(counts, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: not a list of numbers") from None
    if arr.shape != (num_classes,):
        raise ValueError(
            f"{what}: {arr.shape[0]} class counts for a {num_classes}-class head "
            "(trained on another label set?)"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise ValueError(f"{what}: class counts must be non-negative integers")
    return arr.astype(np.int64)


def train_counts_from_state(state: dict[str, Any], num_classes: int) -> np.ndarray | None:
    """The checkpoint's ``train_class_counts`` (int64 ``(C,)``), or ``None`` if it has none."""
    counts = state.get("train_class_counts")
    if counts is None:
        return None
    return check_train_counts(counts, num_classes, "checkpoint state.json 'train_class_counts'")


def train_counts_from_data(
    sources: Sequence[str | os.PathLike], num_classes: int, *, progress: bool = False
) -> np.ndarray:
    """Training clips per class, int64 ``(C,)``, counted from AudioSet feature shards /
    folders (every record read once)."""
    from audiorep.data.packed import PackedAudioSet

    data = PackedAudioSet.load(
        list(sources), num_classes=num_classes, progress=progress, desc="reading --train-data"
    )
    return data.label_counts().numpy().astype(np.int64)


def per_class_table(
    ap: Any,
    auc: Any,
    eval_positives: Any,
    train_examples: Any | None = None,
    *,
    names: Sequence[str] | None = None,
    mids: Sequence[str] | None = None,
) -> list[ClassRow]:
    """One :class:`ClassRow` per class, in class order.

    Args:
        ap, auc: ``(C,)`` per-class AP / ROC AUC (NaN where undefined).
        eval_positives: ``(C,)`` evaluation clips per class (label sums).
        train_examples: ``(C,)`` training clips per class, or ``None`` (unknown).
        names, mids: ``C`` display names / MIDs; default :func:`class_labels`.
    """
    ap_arr = np.asarray(ap, dtype=np.float64).reshape(-1)
    c = ap_arr.shape[0]
    auc_arr = _vector(auc, c, "auc")
    pos = _vector(eval_positives, c, "eval_positives")
    train = None if train_examples is None else check_train_counts(train_examples, c, "train")
    if names is None or mids is None:
        default_names, default_mids = class_labels(c)
        names = default_names if names is None else names
        mids = default_mids if mids is None else mids
    if len(names) != c or len(mids) != c:
        raise ValueError(f"expected {c} class names and MIDs, got {len(names)} / {len(mids)}")
    return [
        ClassRow(
            index=i,
            mid=str(mids[i]),
            name=str(names[i]),
            ap=float(ap_arr[i]),
            auc=float(auc_arr[i]),
            eval_positives=int(round(pos[i])),
            train_examples=None if train is None else int(train[i]),
        )
        for i in range(c)
    ]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        # repr: the shortest text that reads back as the same float64
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def write_per_class_csv(path: str | os.PathLike, rows: Sequence[ClassRow]) -> Path:
    """Write ``rows`` as CSV (header :data:`CSV_COLUMNS`, one line per class, full float
    precision; an undefined AP / AUC or unknown training count is an empty cell), atomically.
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(getattr(row, col)) for col in CSV_COLUMNS])
    return write_bytes_atomic(path, buf.getvalue().encode("utf-8"))


def best_and_worst(rows: Sequence[ClassRow], n: int) -> tuple[list[ClassRow], list[ClassRow]]:
    """The ``n`` classes of highest AP (descending) and of lowest AP (ascending), among the
    classes with a defined AP; equal APs in class-index order."""
    ranked = [r for r in rows if math.isfinite(r.ap)]
    best = sorted(ranked, key=lambda r: (-r.ap, r.index))[: max(n, 0)]
    worst = sorted(ranked, key=lambda r: (r.ap, r.index))[: max(n, 0)]
    return best, worst


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _line(rank: int, row: ClassRow) -> str:
    auc = f"{row.auc:.4f}" if math.isfinite(row.auc) else "   -  "
    return (
        f"  {rank:>4}  {row.ap:.4f}  {auc}  {_count(row.train_examples):>7}  "
        f"{_count(row.eval_positives):>6}  {row.label}"
    )


def format_best_worst(rows: Sequence[ClassRow], n: int) -> list[str]:
    """Text lines: the ``n`` best and ``n`` worst classes by AP, each with its AP, ROC AUC,
    training clips (``-``: unknown) and evaluation positives; empty for ``n <= 0``."""
    if n <= 0:
        return []
    best, worst = best_and_worst(rows, n)
    undefined = sum(1 for r in rows if not math.isfinite(r.ap))
    head = f"  {'rank':>4}  {'AP':>6}  {'AUC':>6}  {'#train':>7}  {'#eval':>6}  class"
    note = f" ({undefined} classes without an AP on this data not ranked)" if undefined else ""
    lines = [f"best {len(best)} classes by AP{note}:", head]
    lines += [_line(k + 1, r) for k, r in enumerate(best)]
    lines += [f"worst {len(worst)} classes by AP:", head]
    lines += [_line(k + 1, r) for k, r in enumerate(worst)]
    return lines
