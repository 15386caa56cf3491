"""``--plot report.png``: the per-clip FD distribution and the FAD-inf fit in one figure.

Needs matplotlib (``pip install 'audiorep[plot]'``); imported only when a plot is requested.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from audiorep.fad.report import FadReport


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "--plot needs matplotlib: pip install 'audiorep[plot]' (or pip install matplotlib)"
        ) from exc
    return plt


def plot_report(report: FadReport, path: str | os.PathLike, *, label_worst: int = 5) -> Path:
    """Draw the per-clip FD histogram (left) and the FAD-inf fit (right) into ``path``.

    Panels whose data were not computed (no per-clip scores / no FAD-inf) say so instead.
    """
    plt = _pyplot()
    fig, (ax_clip, ax_inf) = plt.subplots(1, 2, figsize=(11, 4.2))
    title = f"FAD {report.fad:.4f}"
    if report.preset:
        title += f"  ·  preset {report.preset}"
    title += f"  ·  n = {report.background.n} vs {report.eval.n}, d = {report.background.dim}"
    if any(n.startswith("caution: ") and "random weights" in n for n in report.notes):
        title += "\nRANDOM WEIGHTS: not meaningful features (plumbing check only)"
    fig.suptitle(title, color="#C44E52" if "RANDOM" in title else "black")

    scores = [c for c in (report.per_clip or []) if math.isfinite(c.fd)]
    if scores:
        values = np.array([c.fd for c in scores])
        ax_clip.hist(values, bins=min(40, max(5, len(values) // 3)), color="#4C72B0")
        ax_clip.axvline(float(np.median(values)), color="k", ls="--", lw=1, label="median")
        worst = sorted(scores, key=lambda c: abs(c.fd), reverse=True)[:label_worst]
        top = ax_clip.get_ylim()[1]
        for i, c in enumerate(worst):
            ax_clip.annotate(
                Path(c.clip).name[:24],
                (c.fd, 0),
                xytext=(c.fd, top * (0.9 - 0.12 * i)),
                fontsize=7,
                ha="right",
                arrowprops={"arrowstyle": "-", "lw": 0.5},
            )
        ax_clip.set_xlabel("FD of clip vs background")
        ax_clip.set_ylabel("clips")
        ax_clip.set_title(f"per-clip FD ({len(scores)} clips)")
        ax_clip.legend(loc="upper left", fontsize=8)
    else:
        ax_clip.text(0.5, 0.5, "per-clip FD not computed", ha="center", va="center")
        ax_clip.set_axis_off()

    r = report.fad_inf
    if r is not None:
        n = np.array([p[0] for p in r.points], dtype=np.float64)
        fd = np.array([p[1] for p in r.points])
        ax_inf.plot(1.0 / n, fd, "o", ms=4, label="bootstrap FD(n)")
        xs = np.linspace(0.0, float((1.0 / n).max()) * 1.05, 50)
        ax_inf.plot(
            xs,
            r.slope * xs + r.value,
            "-",
            color="#C44E52",
            label=f"fit: FAD-inf {r.value:.4f} + {r.slope:.3g}/n (r² {r.r2:.3f})",
        )
        ax_inf.plot([0.0], [r.value], "*", ms=12, color="#C44E52")
        ax_inf.set_xlabel("1 / n")
        ax_inf.set_ylabel("FD")
        ax_inf.set_title("FAD-inf extrapolation")
        ax_inf.legend(fontsize=8, loc="upper left")
        ax_inf.set_xlim(left=-0.02 * float(xs.max()))
    else:
        ax_inf.text(0.5, 0.5, "FAD-inf not computed", ha="center", va="center")
        ax_inf.set_axis_off()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


__all__ = ["plot_report"]
