"""Cost of the VGGish deep feature loss (DFL) relative to a small enhancer's training step.

Run with ``python benchmarks/bench_dfl.py [--repeats N] [--threads T] [--markdown PATH]``.
For a batch of 8 x 1 s waveforms (16 kHz, ``(8, 16000)`` float32) it times, on CPU:

* **DFL default, fwd+bwd**: ``VGGishDFL(model)(estimate, target).backward()`` (exact VGGish
  frontend, 8 ReLU taps + pre-activation embedding, target under ``no_grad``);
* **DFL vggishdfl-compatible + PCA, fwd+bwd**: ``VGGishDFL.vggishdfl_compatible(model,
  Postprocessor(...))`` with random PCA parameters (centred reflect-padded STFT, final ReLU,
  rounding PCA term, target not detached);
* **DFL default, forward only** (``no_grad``, e.g. for evaluation);
* **DFL default, fwd+bwd, 15600 samples**: 8 x 0.975 s, the longest input that is a single
  VGGish example (a 1 s input is two examples, the second mostly zero padding);
* **enhancer step, MSE**: one full training step (forward, waveform MSE, backward, Adam) of the
  mask-based STFT enhancer of ``examples/train_enhancer_dfl.py``;
* **enhancer step, DFL**: the same step with the default DFL as the loss.

Each is reported as best and median wall time over ``--repeats`` timed calls (after
``--warmup`` untimed ones, interleaved, the order rotated each repeat) and as a ratio to the
MSE enhancer step. VGGish uses seeded random weights: the cost does not depend on the weights.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

import audiorep
from audiorep.features.postprocess import Postprocessor
from audiorep.losses import VGGishDFL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from timing import Timer  # noqa: E402  (benchmarks/ is on sys.path)
from train_enhancer_dfl import MaskEnhancer  # noqa: E402

SAMPLE_RATE = 16000  # Hz
BATCH = 8
SECONDS = 1.0
# Longest input that is one VGGish example in the default flavour (1 s makes two: the second
# holds the last 640 samples and zero padding); vggishdfl's frontend needs <= 15359 for one.
ONE_EXAMPLE = 15600


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


def test_signals(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(target, noisy)``, each float32 ``(8, 16000)``: harmonic tones + noise, 16 kHz."""
    t = torch.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 100 + 200 * torch.rand(BATCH, 1, generator=gen)
    target = sum(torch.sin(2 * torch.pi * k * f0 * t) / k for k in range(1, 9)) * 0.05
    noisy = target + 0.02 * torch.randn(target.shape, generator=gen)
    return target.float(), noisy.float()


def random_pca(gen: torch.Generator) -> Postprocessor:
    """PCA postprocessor with a random orthonormal basis (scaled by 1/8) and zero means."""
    q, _ = torch.linalg.qr(torch.randn(128, 128, generator=gen, dtype=torch.float64))
    return Postprocessor((q / 8).float().numpy(), np.zeros(128, dtype=np.float32), "round")


def machine_info(threads: int) -> list[str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = (
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}"
    )
    try:
        versions += f", audiorep {importlib.metadata.version('audiorep')}"
    except importlib.metadata.PackageNotFoundError:
        versions += f", audiorep {getattr(audiorep, '__version__', '?')}"
    return [
        f"machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.system()} "
        f"{platform.release()} ({platform.machine()})",
        f"versions: {versions}; oneDNN {torch.backends.mkldnn.is_available()}",
        f"torch threads: {threads}; batch {BATCH} x {SECONDS:g} s at {SAMPLE_RATE} Hz",
    ]


def build_timers(seed: int) -> list[Timer]:
    gen = torch.Generator().manual_seed(seed)
    model = audiorep.load("vggish", weights="random", seed=seed, pca=False).model
    dfl = VGGishDFL(model).eval()
    compat = VGGishDFL.vggishdfl_compatible(model, random_pca(gen)).eval()
    target, noisy = test_signals(gen)
    estimate = noisy.clone().requires_grad_(True)

    def dfl_step(loss_module: nn.Module, samples: int = target.shape[1]) -> Callable[[], None]:
        est, tgt = estimate[:, :samples].detach().requires_grad_(True), target[:, :samples]

        def run() -> None:
            est.grad = None
            loss_module(est, tgt).backward()

        return run

    def dfl_forward() -> None:
        with torch.no_grad():
            dfl(noisy, target)

    torch.manual_seed(seed)
    enhancer = MaskEnhancer()
    opt = torch.optim.Adam(enhancer.parameters(), lr=1e-4)

    def enhancer_step(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        def run() -> None:
            loss = loss_fn(enhancer(noisy), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return run

    return [
        Timer("enhancer step, MSE", enhancer_step(nn.functional.mse_loss)),
        Timer("DFL default, fwd+bwd", dfl_step(dfl)),
        Timer("DFL vggishdfl-compatible + PCA, fwd+bwd", dfl_step(compat)),
        Timer("DFL default, forward only", dfl_forward),
        Timer(f"DFL default, fwd+bwd, {ONE_EXAMPLE} samples", dfl_step(dfl, ONE_EXAMPLE)),
        Timer("enhancer step, DFL (default)", enhancer_step(dfl)),
    ]


def table(timers: list[Timer]) -> list[str]:
    ref = timers[0]
    lines = [
        "| operation (batch 8 x 1 s) | best ms | median ms | x MSE step (best) "
        "| x MSE step (median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in timers:
        lines.append(
            f"| {t.name} | {1e3 * t.best:.1f} | {1e3 * t.median:.1f} "
            f"| {t.best / ref.best:.1f} | {t.median / ref.median:.1f} |"
        )
    by_name = {t.name: t for t in timers}
    compat = by_name["DFL vggishdfl-compatible + PCA, fwd+bwd"]
    default = by_name["DFL default, fwd+bwd"]
    lines.append("")
    lines.append(
        f"vggishdfl-compatible / default DFL (fwd+bwd): {compat.best / default.best:.2f} (best), "
        f"{compat.median / default.median:.2f} (median)"
    )
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15, help="timed calls per operation")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per operation first")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    for line in info:
        print(line)
    start = time.perf_counter()
    timers = build_timers(args.seed)
    measure(timers, args.repeats, args.warmup)
    lines = table(timers)
    footer = (
        f"best and median of {args.repeats} repeats after {args.warmup} warm-up calls; "
        f"VGGish with seeded random weights (cost does not depend on weights); "
        f"total {time.perf_counter() - start:.0f} s"
    )
    print()
    print("\n".join(lines))
    print()
    print(footer)
    if args.markdown:
        md = ["# VGGish DFL cost", "", *[f"- {s}" for s in info], "", *lines, "", footer, ""]
        Path(args.markdown).write_text("\n".join(md))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
