"""Melception (SpecVQGAN's evaluation judge) throughput: spectrograms per second, float32.

Run with ``python benchmarks/bench_melception.py [--device cpu|cuda] [--batch-sizes 1 16]
[--threads 2] [--repeats 1] [--warmup 1] [--markdown PATH]``. Each case times one forward pass
of :class:`audiorep.models.melception.Melception` (src/audiorep/models/melception.py) on a
batch of normalised ``(80, 848)`` mels (9.85 s of 22.05 kHz audio each) returning the three
taps the evaluation reads (``2048``, ``logits_unbiased``, ``logits``), eagerly in float32 under
``torch.inference_mode()``; on CUDA with TF32 off (full float32, as the parity tests run).
Best of ``--repeats`` timed calls after ``--warmup`` untimed ones (on CPU on one spectrogram),
interleaved (medians too).
Weights are the default random initialisation: the cost does not depend on their values.

One 80 x 848 spectrogram costs 56 G multiply-adds (Inception-v3 without its stem max-pools, ~12x
the spatial size of a 299 x 299 image), so on a 2-core CPU a batch of 16 takes tens of
seconds: the defaults (1 repeat, 1 single-spectrogram warm-up) keep the run under a minute
there (unloaded); use more repeats on a GPU.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import time
from pathlib import Path

import torch

from audiorep.models.melception import INPUT_FRAMES, MEL_BINS, Melception
from audiorep.specvqgan.evaluate import FEATURE_TAPS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import Timer  # noqa: E402  (benchmarks/ is on sys.path)

SECONDS_PER_SPECTROGRAM = INPUT_FRAMES * 256 / 22050  # 9.846 s


def build(device: torch.device, batch_sizes: list[int]) -> tuple[list[tuple[int, Timer]], list]:
    """The timed cases and their warm-up calls (on CPU one spectrogram of each batch: a full
    batch of 16 would cost as much as the timed call; on CUDA the full batch, so that cuDNN
    picks its algorithms before the clock runs)."""
    model = Melception().eval().to(device)
    gen = torch.Generator().manual_seed(0)
    cases, warm = [], []
    for b in batch_sizes:
        x = torch.randn(b, MEL_BINS, INPUT_FRAMES, generator=gen).to(device)

        def run(x: torch.Tensor = x) -> object:
            out = model.forward_taps(x, FEATURE_TAPS)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return out

        cases.append((b, Timer(f"batch {b}", run)))
        warm.append(run if device.type == "cuda" else (lambda x=x[:1]: run(x)))
    return cases, warm


def measure(timers: list[Timer], warm: list, repeats: int, warmup: int) -> None:
    """Warm every case up, then time them interleaved, rotating the order each repeat."""
    for fn in warm:
        for _ in range(warmup):
            fn()
    for r in range(repeats):
        k = r % len(timers)
        for t in timers[k:] + timers[:k]:
            start = time.perf_counter()
            t.fn()
            t.times.append(time.perf_counter() - start)


def markdown(cases: list[tuple[int, Timer]], device: torch.device, threads: int, repeats: int):
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (TF32 off)"
    else:
        where = f"CPU, {threads} thread(s), {platform.machine()}"
    lines = [
        f"Melception forward (taps {', '.join(FEATURE_TAPS)}), float32 eager, {where}; best of "
        f"{repeats} (median in brackets); torch {torch.__version__}, "
        f"audiorep {importlib.metadata.version('audiorep')}.",
        "",
        "| batch | s / batch | spectrograms / s | audio s / s |",
        "|---:|---:|---:|---:|",
    ]
    for b, t in cases:
        best, med = t.best, t.median
        audio = b * SECONDS_PER_SPECTROGRAM
        lines.append(
            f"| {b} | {best:.3f} ({med:.3f}) | {b / best:.2f} ({b / med:.2f}) "
            f"| {audio / best:.1f} ({audio / med:.1f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per case first")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    with torch.inference_mode():
        cases, warm = build(device, args.batch_sizes)
        measure([t for _, t in cases], warm, args.repeats, args.warmup)
    table = markdown(cases, device, args.threads, args.repeats)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
