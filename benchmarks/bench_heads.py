"""Training throughput of the YouTube-8M heads on AudioSet-shaped data.

Run with ``python benchmarks/bench_heads.py [--batch 1024] [--threads 2] [--steps 3]
[--heads logistic,moe,...] [--device cpu] [--markdown PATH]``.

Each head is built with its default config (527 classes, 128-d features; DBoF 30 samples x
8192 clusters x 1024 hidden + MoE; LSTM 2 x 1024 + MoE) and timed on full training steps of
:func:`audiorep.heads.training.train_step` - forward, YT8M cross-entropy + L2 penalty,
backward, per-tensor gradient clipping, Adam - on random dequantized-like frames ``(B, 10,
128)`` with every clip at 10 frames (as 98 % of AudioSet) and ~2.4 labels per clip. Data
loading is not included. ``dbof-gather`` is DBoF with ``fold_samples=False`` (the original's
literal ``B * 30``-row cluster layer) to show what folding the repeated samples saves.

Reported: best and median seconds per step over ``--steps`` timed steps (after ``--warmup``)
and examples per second from the median.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from audiorep.heads import build_head
from audiorep.heads.training import TrainConfig, make_optimizer, train_step

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import Timer  # noqa: E402  (benchmarks/ is on sys.path)

VARIANTS = {
    "logistic": ("logistic", {}),
    "moe": ("moe", {}),
    "frame_logistic": ("frame_logistic", {}),
    "dbof": ("dbof", {}),
    "dbof-gather": ("dbof", {"fold_samples": False}),
    "lstm": ("lstm", {}),
}


def make_batch(b: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = 4 * torch.rand(b, 10, 128, generator=g) - 2
    num_frames = torch.full((b,), 10, dtype=torch.int64)
    labels = (torch.rand(b, 527, generator=g) < 2.4 / 527).float()
    return frames.to(device), num_frames.to(device), labels.to(device)


def bench_head(
    variant: str, batch: int, steps: int, warmup: int, device: torch.device
) -> tuple[Timer, int]:
    name, overrides = VARIANTS[variant]
    torch.manual_seed(0)
    model = build_head(name, **overrides).to(device)
    cfg = TrainConfig.for_head(name)
    opt = make_optimizer(model, cfg)
    frames, num_frames, labels = make_batch(batch, device)

    def step() -> None:
        train_step(model, opt, cfg, frames, num_frames, labels, cfg.base_learning_rate)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    timer = Timer(variant, step)
    for _ in range(warmup):
        step()
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        timer.times.append(time.perf_counter() - t0)
    params = sum(p.numel() for p in model.parameters())
    return timer, params


def machine_line(threads: int, device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    return (
        f"device: {where} ({os.cpu_count()} logical CPUs), torch {torch.__version__}, "
        f"numpy {np.__version__}, {threads} torch threads"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--heads", default=",".join(VARIANTS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    lines = [
        f"Training step throughput, batch {args.batch} x 10 frames x 128, 527 classes "
        f"({args.steps} timed steps after {args.warmup} warm-up)",
        machine_line(args.threads, device),
        "",
        "| head | parameters | s/step (best) | s/step (median) | examples/s |",
        "|---|---:|---:|---:|---:|",
    ]
    print("\n".join(lines[:2]), flush=True)
    for variant in args.heads.split(","):
        timer, params = bench_head(variant, args.batch, args.steps, args.warmup, device)
        median = statistics.median(timer.times)
        row = (
            f"| {variant} | {params:,} | {timer.best:.3f} | {median:.3f} | "
            f"{args.batch / median:,.0f} |"
        )
        lines.append(row)
        print(row, flush=True)
    print()
    print("\n".join(lines[2:]))
    if args.markdown is not None:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
