"""SpecVQGAN's mel front end: our batched torch version vs a per-clip NumPy one.

Run with ``python benchmarks/bench_specvqgan_mel.py [--threads 2] [--clips 32] [--repeats 3]
[--device cpu] [--markdown PATH]``. Both turn ``--clips`` 10 s, 22 050 Hz float32 clips into
``(80, 860)`` mels (src/audiorep/frontends/specvqgan.py):

* **NumPy, per clip**: what the authors run (librosa 0.8 style, written out here so that librosa
  is not needed): ``np.pad(..., mode='reflect')``, strided framing, float64 window times the
  float32 frames, ``np.fft.rfft`` stored as complex64, ``|.|``, float32 mel matmul, dB mapping,
  one clip at a time;
* **torch, batched**: ``mel_spectrogram`` on the whole ``(clips, 220500)`` batch on
  ``--device`` (the clips are already there; the result stays there), float64 (default,
  reference-exact) and ``compute_dtype=torch.float32``.

The two first have to agree to 1e-5 (asserted), then each is timed: best of ``--repeats`` calls
after ``--warmup`` untimed ones, interleaved (medians reported too), ``--threads`` torch
threads. NumPy's FFT is single-threaded; its BLAS uses whatever threads it was built with.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from audiorep.frontends import specvqgan as sv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import Timer  # noqa: E402  (benchmarks/ is on sys.path)

AGREEMENT_ATOL = 1e-5  # the fixture tolerance of tests/test_specvqgan_mel.py


def clips(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 220500)`` float32 test audio: harmonic tones with random pitch + noise, |x| < 1."""
    rng = np.random.default_rng(seed)
    t = np.arange(sv.CLIP_SAMPLES) / sv.SAMPLE_RATE
    f0 = rng.uniform(100, 400, size=(n, 1))
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)) * 0.1
    return (x + 0.01 * rng.standard_normal((n, t.size))).astype(np.float32)


def numpy_mel(y: np.ndarray) -> np.ndarray:
    """One float32 clip -> float32 ``(80, 860)``, librosa-0.8 style (see the module docstring)."""
    y = y[: sv.CLIP_SAMPLES]
    if y.size < sv.CLIP_SAMPLES:  # the reference copies short clips into a float64 buffer
        y = np.pad(y.astype(np.float64), (0, sv.CLIP_SAMPLES - y.size))
    padded = np.pad(y, sv.N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, sv.N_FFT)[:: sv.HOP_LENGTH]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(sv.N_FFT) / sv.N_FFT)  # periodic Hann
    spectrum = np.fft.rfft(window * frames, axis=-1).astype(
        np.complex64 if y.dtype == np.float32 else np.complex128
    )
    mel = sv.mel_basis() @ np.abs(spectrum).T  # (80, frames)
    spec = np.clip((20 * np.log10(np.maximum(mel, 1e-5)) - 20 + 100) / 100, 0, 1)
    return spec[:, : sv.SPEC_FRAMES].astype(np.float32)


def measure(timers: list[Timer], repeats: int, warmup: int) -> None:
    """Warm every timer up, then time them interleaved, rotating the order each repeat."""
    for t in timers:
        for _ in range(warmup):
            t.fn()
    for r in range(repeats):
        k = r % len(timers)
        for t in timers[k:] + timers[:k]:
            start = time.perf_counter()
            t.fn()
            t.times.append(time.perf_counter() - start)


def markdown(
    timers: list[Timer], n: int, threads: int, repeats: int, deviations, device: torch.device
) -> str:
    base = timers[0].best
    lines = [
        f"{n} clips of 10 s at 22 050 Hz -> (80, 860) mels; torch on {device}, "
        f"{threads} torch thread(s), best of "
        f"{repeats} (median in brackets); torch {torch.__version__}, numpy {np.__version__}, "
        f"{platform.machine()}, audiorep {importlib.metadata.version('audiorep')}.",
        "",
        "| implementation | max abs diff vs NumPy | ms / batch | clips / s | speed-up vs NumPy |",
        "|---|---:|---:|---:|---:|",
    ]
    for t, dev in zip(timers, deviations):
        lines.append(
            f"| {t.name} | {dev:.1e} | {t.best * 1e3:.0f} ({t.median * 1e3:.0f}) "
            f"| {n / t.best:.1f} ({n / t.median:.1f}) | {base / t.best:.2f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--clips", type=int, default=32, help="clips per batch (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per case first")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    audio = clips(args.clips)
    batch = torch.from_numpy(audio).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run_numpy() -> np.ndarray:
        return np.stack([numpy_mel(y) for y in audio])

    def run_torch64() -> torch.Tensor:
        out = sv.mel_spectrogram(batch)
        sync()
        return out

    def run_torch32() -> torch.Tensor:
        out = sv.mel_spectrogram(batch, compute_dtype=torch.float32)
        sync()
        return out

    timers = [
        Timer("NumPy, per clip (librosa 0.8 style)", run_numpy),
        Timer("torch, batched, float64 (default)", run_torch64),
        Timer("torch, batched, float32 compute", run_torch32),
    ]
    with torch.inference_mode():
        ref = run_numpy()
        deviations = [0.0]
        for fn in (run_torch64, run_torch32):
            deviations.append(float(np.abs(fn().cpu().numpy() - ref).max()))
        if deviations[1] > AGREEMENT_ATOL:
            raise SystemExit(f"float64 torch and NumPy mels differ by {deviations[1]:.2e}")
        measure(timers, args.repeats, args.warmup)
    table = markdown(timers, args.clips, args.threads, args.repeats, deviations, device)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
