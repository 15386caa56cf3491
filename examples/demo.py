"""`make demo`: embed the example audio shipped in examples/audio with VGGish, then score a
synthetic "generated" set against a clean one with FAD (per-clip FD, FAD-inf, plot).

Uses pretrained weights when they are available (cached, ``--weights PATH``, or downloadable);
otherwise says so plainly and runs on seeded random weights, labelled as such.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

import audiorep
from audiorep.extract.runner import embed_files
from audiorep.pipelines import WeightsUnavailableError

HERE = Path(__file__).resolve().parent


def _load_bundle(weights: str | None):
    if weights:
        return audiorep.load("vggish", weights=weights)
    try:
        return audiorep.load("vggish")  # cached pretrained weights, never downloads
    except WeightsUnavailableError as exc:
        print(f"[demo] no cached pretrained weights: {exc}")
    if os.environ.get("AUDIOREP_OFFLINE") != "1":
        print("[demo] trying to download torchvggish's converted weights (no TensorFlow needed)")
        try:
            return audiorep.load("vggish", weights="vggish-torchvggish")
        except Exception as exc:  # no network here is the normal case
            print(f"[demo] download failed: {type(exc).__name__}: {str(exc)[:200]}")
    print("[demo] => running on SEEDED RANDOM WEIGHTS: the pipeline is real, the features are not")
    return audiorep.load("vggish", weights="random", seed=0)


def _synthetic_set(folder: Path, count: int, degraded: bool, seed: int) -> None:
    """Harmonic tones with a decaying envelope; ``degraded`` adds hard clipping and noise."""
    import soundfile as sf

    rs = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sr = 22050
    for i in range(count):
        t = np.arange(int(sr * rs.uniform(2.5, 4.0))) / sr
        f0 = rs.uniform(110, 660)
        x = sum(rs.uniform(0.2, 1) / k * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3))
        x = x * np.exp(-t * rs.uniform(0.3, 2.0))
        x = 0.5 * x / np.abs(x).max()
        if degraded:
            x = np.clip(x, -0.15, 0.15) + 0.03 * rs.randn(t.size)
        sf.write(folder / f"clip{i:02d}.wav", x.astype(np.float32), sr)


def fad_demo(bundle, out: Path) -> None:
    """FAD of degraded tones against clean ones, through the same API ``audiorep fad`` uses."""
    from audiorep.fad import EmbeddingCache, compare_sets, open_set
    from audiorep.fad.plot import plot_report

    _synthetic_set(out / "background", 24, degraded=False, seed=1)
    _synthetic_set(out / "eval", 16, degraded=True, seed=2)
    cache = lambda b: EmbeddingCache(out / "cache", b.settings())  # noqa: E731
    sets = [
        open_set(out / name, bundle_factory=lambda: bundle, cache_factory=cache, progress=False)
        for name in ("background", "eval")
    ]
    report = compare_sets(*sets, preset="vggish", inf=True, inf_min_n=10, per_clip=True)
    report.write_per_clip(out / "per_clip.csv")
    plot_report(report, out / "report.png")
    print()
    for line in report.lines():
        print(f"[fad] {line}")
    print(f"[fad] per-clip CSV and plot: {out / 'per_clip.csv'}, {out / 'report.png'}")
    print("[fad] same from the shell: audiorep fad BACKGROUND_DIR EVAL_DIR --inf --plot report.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default=None, help="weights file or registry name")
    parser.add_argument("--out", default="demo_out", help="output folder")
    args = parser.parse_args()

    bundle = _load_bundle(args.weights)
    print(f"[demo] model: VGGish - {bundle.weights_description}")
    audio_dir = HERE / "audio"
    summary = embed_files(bundle, [audio_dir], args.out, progress=sys.stderr.isatty())
    print()
    print(f"{'file':28s} {'examples':>8s} {'emb mean':>9s} {'emb std':>8s} {'uint8 mean':>10s}")
    for npz in sorted(Path(args.out).rglob("*.npz")):
        d = np.load(npz)
        e = d["embeddings"]
        q = d["quantized"].mean() if "quantized" in d and d["quantized"].size else float("nan")
        mean, std = (e.mean(), e.std()) if e.size else (float("nan"), float("nan"))
        print(f"{npz.name:28s} {e.shape[0]:8d} {mean:9.4f} {std:8.4f} {q:10.1f}")
    print()
    for line in summary.lines():
        print(line)
    print(f"[demo] outputs in {args.out}/ (keys: embeddings, timestamps, quantized)")
    fad_demo(bundle, Path(args.out) / "fad")
    if not bundle.pretrained:
        print("[demo] reminder: random weights - numbers above only show that the pipeline runs")
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
