"""The per-class AP against training-examples picture of an AudioSet classifier, as a PNG.

One dot per class: its evaluation AP (y) against the number of training clips that carry the
class (x, log scale), a binned median and mean of the AP over log-spaced bins of the training
count, the mean AP (mAP) as a horizontal line, and the best / worst classes named. Rows come
from :func:`audiorep.heads.report.per_class_table` (``src/audiorep/heads/report.py``).

matplotlib is an optional dependency (``pip install 'audiorep[plot]'``). The figure is drawn
on matplotlib's Agg canvas directly (``matplotlib.figure.Figure`` + ``FigureCanvasAgg``),
without pyplot, so the caller's matplotlib backend and global state are left alone.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiorep.atomic import write_bytes_atomic
from audiorep.heads.report import ClassRow

__all__ = [
    "PlotUnavailableError",
    "binned_ap",
    "plot_ap_vs_train_examples",
    "require_matplotlib",
]

MATPLOTLIB_HINT = "plotting needs matplotlib: pip install 'audiorep[plot]'"


class PlotUnavailableError(ImportError):
    """matplotlib is not installed (the message says how to install it)."""


def require_matplotlib() -> None:
    """Raise :class:`PlotUnavailableError` naming ``pip install 'audiorep[plot]'`` when
    matplotlib (with its Agg canvas) cannot be imported; call before a long evaluation."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as exc:
        raise PlotUnavailableError(f"{MATPLOTLIB_HINT} ({exc})") from None


def binned_ap(
    train_examples: np.ndarray, ap: np.ndarray, *, bins: int = 10, min_count: int = 3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and mean AP over ``bins`` log-spaced bins of the training count.

    Args:
        train_examples: ``(K,)`` positive training clips per class.
        ap: ``(K,)`` finite APs.
        bins: number of equal-width bins of ``log(train_examples)`` between its min and max.
        min_count: bins with fewer classes are dropped (a median of 1-2 dots is noise).

    Returns:
        ``(x, median, mean)``, each ``(B,)`` for the B kept bins in increasing order; ``x`` is
        the geometric mean of the training counts in the bin.
    """
    x = np.asarray(train_examples, dtype=np.float64)
    y = np.asarray(ap, dtype=np.float64)
    if x.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    lo, hi = math.log(float(x.min())), math.log(float(x.max()))
    if hi - lo < 1e-9:  # every class has the same count: one bin
        edges = np.array([lo, lo + 1.0])
    else:
        edges = np.linspace(lo, hi, bins + 1)
    # the top edge belongs to the last bin
    which = np.clip(np.searchsorted(edges, np.log(x), side="right") - 1, 0, len(edges) - 2)
    xs, medians, means = [], [], []
    for b in range(len(edges) - 1):
        sel = which == b
        if int(sel.sum()) < min_count:
            continue
        xs.append(math.exp(float(np.log(x[sel]).mean())))
        medians.append(float(np.median(y[sel])))
        means.append(float(y[sel].mean()))
    return np.asarray(xs), np.asarray(medians), np.asarray(means)


def _spread(targets: list[float], gap: float, lo: float, hi: float) -> list[float]:
    """Label positions (display units) near ``targets``, at least ``gap`` apart and inside
    ``[lo, hi]`` where there is room, in the order of the targets: push up from below, then
    down from above."""
    order = sorted(range(len(targets)), key=lambda i: targets[i])
    pos = [targets[i] for i in order]
    for k in range(len(pos)):
        pos[k] = max(pos[k], lo, pos[k - 1] + gap if k else lo)
    for k in range(len(pos) - 1, -1, -1):
        pos[k] = min(pos[k], hi, pos[k + 1] - gap if k + 1 < len(pos) else hi)
    out = [0.0] * len(targets)
    for k, i in enumerate(order):
        out[i] = pos[k]
    return out


def _annotate(ax: Any, fig: Any, best: Sequence[ClassRow], worst: Sequence[ClassRow]) -> None:
    """Name the ``best`` and ``worst`` classes next to their dots: each label 40 px to the
    side (left of dots in the right 40 % of the axes), best ones a little below their dot,
    worst ones a little above, every side's labels stacked without overlapping."""
    line = 1.4 * 9 * fig.dpi / 72.0  # 9 pt text at 1.4 line spacing, in pixels
    box = ax.get_window_extent()
    items = []
    for row, is_best in [(r, True) for r in best] + [(r, False) for r in worst]:
        px, py = ax.transData.transform((row.train_examples, row.ap))
        right = bool(px > box.x0 + 0.6 * box.width)
        items.append((row, px, py + (-0.8 if is_best else 0.8) * line, right))
    from_disp = ax.transData.inverted()
    for side in (False, True):
        group = [it for it in items if it[3] is side]
        ys = _spread([it[2] for it in group], line, box.y0 + line, box.y1 - line)
        for (row, px, _, right), ty in zip(group, ys):
            ax.annotate(
                f"{row.name} ({row.ap:.2f})",
                xy=(row.train_examples, row.ap),
                xytext=tuple(from_disp.transform((px - 40 if right else px + 40, ty))),
                textcoords="data",
                fontsize=9,
                ha="right" if right else "left",
                va="center",
                arrowprops={"arrowstyle": "-", "color": "0.45", "lw": 0.7},
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )


def _count_ticks(ax: Any, lo: float, hi: float) -> None:
    """Label the log x axis at 1-2-5 steps with plain counts ("60", "1,000") when the range
    spans few decades (matplotlib would label only the powers of ten), else at powers of 10."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    steps = (1, 2, 5) if len(decades) <= 5 else (1,)
    ticks = [m * 10.0**k for k in decades for m in steps if lo <= m * 10.0**k <= hi]
    if len(ticks) < 2:
        return  # keep matplotlib's own ticks on a very narrow range
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_ap_vs_train_examples(
    path: str | os.PathLike,
    rows: Sequence[ClassRow],
    *,
    mean_ap: float,
    model_name: str,
    annotate: int = 4,
    width_px: int = 1200,
    height_px: int = 700,
    dpi: int = 100,
) -> Path:
    """Write the per-class AP (y) against training clips per class (x, log) PNG to ``path``.

    Args:
        rows: the per-class table; every row needs ``train_examples``. Classes without a
            defined AP or without training clips (no place on a log axis) are left out and
            counted in a note under the plot.
        mean_ap: the evaluation's mAP (horizontal line; in the title).
        model_name: shown in the title (e.g. the head and checkpoint).
        annotate: this many best and this many worst classes are named.
        width_px, height_px, dpi: image size in pixels and text resolution.

    Raises:
        PlotUnavailableError: matplotlib is missing.
        ValueError: rows without training counts, or no class to plot.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if any(r.train_examples is None for r in rows):
        raise ValueError("the plot needs the number of training examples of every class")
    shown = [r for r in rows if math.isfinite(r.ap) and (r.train_examples or 0) > 0]
    if not shown:
        raise ValueError("no class has both a defined AP and training examples: nothing to plot")
    left_out = len(rows) - len(shown)
    x = np.array([r.train_examples for r in shown], dtype=np.float64)
    y = np.array([r.ap for r in shown], dtype=np.float64)

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    x_min, x_max = float(x.min()), float(x.max())
    ax.set_xlim(x_min / 1.25, x_max * 1.25)
    _count_ticks(ax, x_min / 1.25, x_max * 1.25)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, which="major", color="0.88", lw=0.8)
    ax.grid(True, which="minor", axis="x", color="0.94", lw=0.5)
    ax.set_axisbelow(True)

    ax.scatter(x, y, s=16, color="#3b75af", alpha=0.55, lw=0, label=f"one class ({len(shown)})")
    bx, med, mean = binned_ap(x, y)
    if bx.size:
        ax.plot(bx, med, "-o", color="#d1495b", lw=2.2, ms=5, label="median AP per log-spaced bin")
        ax.plot(bx, mean, "--s", color="#edae49", lw=2.0, ms=4, label="mean AP per log-spaced bin")
    if math.isfinite(mean_ap):
        ax.axhline(mean_ap, color="0.25", lw=1.3, ls=":", label=f"mAP {mean_ap:.3f}")

    ax.set_xlabel("training clips labelled with the class (log scale)", fontsize=11)
    ax.set_ylabel("average precision on the evaluation set", fontsize=11)
    title = f"{model_name}: per-class AP vs training examples"
    if math.isfinite(mean_ap):
        title += f" (mAP {mean_ap:.3f})"
    ax.set_title(title, fontsize=13, pad=26)
    ax.tick_params(labelsize=10)
    if left_out:  # an entry without a marker: the note travels with the legend
        ax.plot([], [], " ", label=f"{left_out} classes not shown (no AP or no training clips)")
    # one row between the title and the axes: never on top of dots or class names
    ax.legend(
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
        ncol=5,
        fontsize=9,
        frameon=False,
        handletextpad=0.4,
        columnspacing=1.4,
    )
    # lay out first: the annotations are placed in pixels of the final axes
    fig.tight_layout()
    k = max(int(annotate), 0)
    by_ap = sorted(shown, key=lambda r: (-r.ap, r.index))
    best = by_ap[:k]
    worst = [r for r in by_ap[::-1][:k] if r not in best]
    _annotate(ax, fig, best, worst)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return write_bytes_atomic(path, buf.getvalue())
