"""Training throughput of the YouTube-8M heads on AudioSet-shaped data, next to a FLOP /
memory-bandwidth estimate of the limit.

Run with ``python benchmarks/bench_heads.py [--batch 1024] [--threads 2] [--steps 3]
[--heads logistic,moe,...] [--device cpu] [--markdown PATH] [--compare-before DIR]``.

Each head is built with its default config (527 classes, 128-d features; DBoF 30 samples x
8192 clusters x 1024 hidden + MoE; LSTM 2 x 1024 + MoE) and timed on full training steps of
:func:`audiorep.heads.training.train_step` - forward, YT8M cross-entropy + L2 penalty,
backward, per-tensor gradient clipping, Adam - on random dequantized-like frames ``(B, 10,
128)`` with every clip at 10 frames (as 98 % of AudioSet) and ~2.4 labels per clip. Data
loading is not included. Variants: ``dbof-unfused`` is DBoF with ``fused_max_pool=False``
(the layer-by-layer cluster layer with its ``(B, 10, 8192)`` temporaries, the code before
the fused max pool); ``dbof-gather`` is additionally ``fold_samples=False`` (the original's
literal ``B * 30``-row cluster layer).

Columns: training FLOPs per example (matrix products only, ``2 m n k`` each: forward, the
weight gradient, and the input gradient where the input needs one), the estimated DRAM
traffic per example (big activations and the optimizer's passes over the parameters, see
:func:`cost_per_example`), the limit ``1 / (FLOPs / R + bytes / W)`` with ``R`` this
machine's float32 matmul rate (``torch.mm`` of 1024 x 1024 matrices) and ``W`` its copy
bandwidth (a 256 MiB tensor copy), both measured first at the benchmark's thread count,
and the measured examples/s from the best and the median of ``--steps`` timed steps (after
``--warmup``). The machine's load average is printed: timings on a shared machine are
contended.

``--compare-before DIR`` runs every head twice per round, alternately on the code of the
checkout ``DIR`` (its ``src/``, e.g. ``git worktree add /tmp/before <commit>``) and on this
checkout's, each in a fresh process, and prints both medians and the speed-up. Variant
overrides the older code does not know are dropped where they only ask for what that code
does anyway (``fused_max_pool=False``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import Timer  # noqa: E402  (benchmarks/ is on sys.path)

HERE_SRC = Path(__file__).resolve().parents[1] / "src"

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "logistic": ("logistic", {}),
    "moe": ("moe", {}),
    "frame_logistic": ("frame_logistic", {}),
    "dbof": ("dbof", {}),
    "dbof-unfused": ("dbof", {"fused_max_pool": False}),
    "dbof-gather": ("dbof", {"fold_samples": False, "fused_max_pool": False}),
    "lstm": ("lstm", {}),
}
#: Overrides an older checkout may not know, with the value that is its only behaviour.
LEGACY_BEHAVIOUR = {"fused_max_pool": False}

FRAMES = 10  # AudioSet: 10 one-second frames per clip
ADAM_ACCESSES = 16  # float32 reads + writes per parameter per step of torch's for-loop Adam


def make_batch(b: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = 4 * torch.rand(b, FRAMES, 128, generator=g) - 2
    num_frames = torch.full((b,), FRAMES, dtype=torch.int64)
    labels = (torch.rand(b, 527, generator=g) < 2.4 / 527).float()
    return frames.to(device), num_frames.to(device), labels.to(device)


# ------------------------------------------------------------------------------------------
# cost model


def _classifier_flops(kind: str, d: int, c: int, mixtures: int) -> float:
    """Forward FLOPs of a video-level classifier on a ``d``-vector: logistic ``2 d C``, MoE
    gates ``2 d C (M + 1)`` + experts ``2 d C M``."""
    return 2.0 * d * c * ((2 * mixtures + 1) if kind == "moe" else 1)


def cost_per_example(
    name: str, cfg: dict[str, Any], params: int, batch: int, t: int = FRAMES
) -> tuple[float, float]:
    """``(training FLOPs, DRAM bytes)`` per example of head ``name`` with config dict
    ``cfg`` (its ``to_dict()``), ``params`` trainable parameters, at batch ``batch``.

    FLOPs: matrix products only (``2 m n k``): forward, the weight gradient (same count), and
    the input gradient where the layer's input needs one (3x forward; 2x for a layer on the
    frames). Elementwise work is counted as memory traffic instead, in float32 passes over
    the big activations (reads + writes, fwd + bwd; rough counts from the profiles): the
    video-level heads ~8 over the frames and ~10 over the (C x outputs) logits; DBoF ~16
    over the pooled ``(cluster_size,)`` units, plus ~20 over the ``(R, cluster_size)``
    cluster activations unless ``fused_max_pool`` keeps them in cache (its covariance
    statistics add ``2 R D^2 + 2 D^2 S / B`` per example, x3); the LSTM ~12 over the
    ``(4 H,)`` gates per step and layer. Plus Adam's ~16 accesses per parameter per step,
    divided over the batch.
    """
    d, c = cfg["feature_size"], cfg["num_classes"]
    adam = ADAM_ACCESSES * 4.0 * params / batch
    if name in ("logistic", "moe", "frame_logistic"):
        mixtures = cfg.get("num_mixtures", 1)
        fwd = _classifier_flops("moe" if name == "moe" else "logistic", d, c, mixtures)
        outputs = c * ((2 * mixtures + 1) if name == "moe" else 1)
        return 2.0 * fwd, 4.0 * (8 * t * d + 10 * outputs) + adam
    head_out = _classifier_flops(cfg["classifier"], _hidden(name, cfg), c, cfg["num_mixtures"])
    if name == "dbof":
        s, h, k = cfg["cluster_size"], cfg["hidden_size"], cfg["iterations"]
        rows = t if (cfg.get("fold_samples", True) and t <= k) else k
        flops = 3.0 * (2.0 * rows * d * s + 2.0 * s * h + head_out)
        passes = 16.0 * s
        if cfg.get("pooling_method") == "max" and cfg.get("fused_max_pool", False):
            # batch-norm statistics from the D x D input covariance, once per batch
            flops += 3.0 * (2.0 * rows * d * d + 2.0 * d * d * s / batch)
        else:
            passes += 20.0 * rows * s
        return flops, 4.0 * passes + adam
    if name == "lstm":
        hsz, layers = cfg["lstm_cells"], cfg["lstm_layers"]
        flops = 0.0
        for layer in range(layers):
            x_in = d if layer == 0 else hsz
            input_part = 2.0 * t * 4 * hsz * x_in
            flops += 3.0 * 2.0 * t * 4 * hsz * hsz  # recurrent product
            flops += (2.0 if layer == 0 else 3.0) * input_part  # frames need no gradient
        flops += 3.0 * head_out
        return flops, 4.0 * 12 * t * layers * 4 * hsz + adam
    raise KeyError(f"no cost model for head {name!r}")


def _hidden(name: str, cfg: dict[str, Any]) -> int:
    return cfg["hidden_size"] if name == "dbof" else cfg["lstm_cells"]


def measure_machine(threads: int) -> tuple[float, float]:
    """``(float32 matmul GFLOP/s, copy GB/s)`` at ``threads``: the best of 10 ``torch.mm`` of
    1024 x 1024 matrices and of 5 copies of a 256 MiB tensor into a reused one (bytes read
    + written)."""
    torch.set_num_threads(threads)
    n = 1024
    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    best = float("inf")
    for i in range(12):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        if i >= 2:
            best = min(best, time.perf_counter() - t0)
    gflops = 2.0 * n**3 / best / 1e9
    x = torch.randn(64 * 2**20)
    y = torch.empty_like(x)
    y.copy_(x)  # fault the pages in
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        y.copy_(x)
        best = min(best, time.perf_counter() - t0)
    return gflops, 2.0 * x.numel() * 4 / best / 1e9


# ------------------------------------------------------------------------------------------
# timing


def _build(variant: str):
    from audiorep.heads import build_head

    name, overrides = VARIANTS[variant]
    try:
        return build_head(name, **overrides)
    except ValueError as err:  # an older checkout: drop overrides that are its behaviour
        kept = {k: v for k, v in overrides.items() if LEGACY_BEHAVIOUR.get(k, object()) != v}
        if kept == overrides or "unknown" not in str(err):
            raise
        return build_head(name, **kept)


def bench_head(
    variant: str, batch: int, steps: int, warmup: int, device: torch.device, adam: str = "default"
) -> tuple[Timer, int, dict[str, Any]]:
    """Time ``steps`` training steps of ``variant``: (timer, trainable parameters, config).
    ``adam="fused"``: the trainer's Adam rebuilt with ``fused=True`` (same settings)."""
    from audiorep.heads.training import TrainConfig, make_optimizer, train_step

    name = VARIANTS[variant][0]
    torch.manual_seed(0)
    model = _build(variant).to(device)
    cfg = TrainConfig.for_head(name)
    opt = make_optimizer(model, cfg)
    if adam == "fused":
        opt = type(opt)([{**g, "fused": True, "foreach": False} for g in opt.param_groups])
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
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return timer, params, model.config.to_dict()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


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


def _limit(flops: float, nbytes: float, gflops: float, gbps: float) -> float:
    return 1.0 / (flops / (gflops * 1e9) + nbytes / (gbps * 1e9))


def _worker(args: argparse.Namespace) -> None:
    """One variant on the code under ``--src``; prints a JSON line."""
    sys.path.insert(0, str(args.src))
    torch.set_num_threads(args.threads)
    import audiorep

    timer, params, cfg = bench_head(
        args.worker, args.batch, args.steps, args.warmup, torch.device(args.device), args.adam
    )
    result = {"times": timer.times, "params": params, "config": cfg, "module": audiorep.__file__}
    print("RESULT " + json.dumps(result), flush=True)


def _run_worker(src: Path, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--worker", variant, "--src", str(src),
        "--batch", str(args.batch), "--threads", str(args.threads),
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
        "--adam", args.adam,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"{variant} on {src} failed:\n{proc.stderr[-2000:]}")


def compare(args: argparse.Namespace, gflops: float, gbps: float, header: list[str]) -> list[str]:
    before_src = args.compare_before / "src"
    if not (before_src / "audiorep").is_dir():
        raise SystemExit(f"--compare-before: no src/audiorep in {args.compare_before}")
    lines = [
        *header,
        f"before = {args.compare_before}, after = {HERE_SRC.parent}; {args.rounds} round(s) "
        "per head, alternating, each in a fresh process; medians over all timed steps",
        "",
        "| head | training MFLOP/example | limit examples/s | before examples/s | "
        "after examples/s | speed-up | load avg |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    print("\n".join(lines), flush=True)
    for variant in args.heads.split(","):
        times: dict[str, list[float]] = {"before": [], "after": []}
        info: dict[str, Any] = {}
        modules: dict[str, str] = {}
        loads = [load_average()]
        for r in range(args.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for which in order:
                src = before_src if which == "before" else HERE_SRC
                res = _run_worker(src, variant, args)
                times[which] += res["times"]
                modules[which] = res["module"]
                if which == "after":
                    info = res
        loads.append(load_average())
        flops, nbytes = cost_per_example(
            VARIANTS[variant][0], info["config"], info["params"], args.batch
        )
        before = args.batch / statistics.median(times["before"])
        after = args.batch / statistics.median(times["after"])
        row = (
            f"| {variant} | {flops / 1e6:,.1f} | {_limit(flops, nbytes, gflops, gbps):,.0f} | "
            f"{before:,.0f} | {after:,.0f} | {after / before:.2f}x | {' -> '.join(loads)} |"
        )
        lines.append(row)
        print(row, flush=True)
    lines.append(f"code timed: before {modules['before']}, after {modules['after']}")
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--heads", default=",".join(VARIANTS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    ap.add_argument(
        "--compare-before", type=Path, default=None, metavar="DIR",
        help="also time the code of the checkout DIR (its src/), alternating with this one",
    )  # fmt: skip
    ap.add_argument("--rounds", type=int, default=2, help="--compare-before rounds per head")
    ap.add_argument(
        "--adam", choices=("default", "fused"), default="default",
        help="fused: time with torch's fused CPU Adam instead of the trainer's default",
    )  # fmt: skip
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, default=HERE_SRC, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = sorted(set(args.heads.split(",")) - set(VARIANTS))
    if unknown:
        ap.error(f"--heads: unknown {unknown}; choose from {sorted(VARIANTS)}")
    if args.worker is not None:
        return _worker(args)
    device = torch.device(args.device)
    gflops, gbps = measure_machine(args.threads)
    header = [
        f"Training step throughput, batch {args.batch} x {FRAMES} frames x 128, 527 classes "
        f"({args.steps} timed steps after {args.warmup} warm-up, Adam: {args.adam})",
        machine_line(args.threads, device),
        f"measured: float32 matmul {gflops:.0f} GFLOP/s, copy {gbps:.1f} GB/s "
        f"({args.threads} threads); load average {load_average()}",
    ]
    if args.compare_before is not None:
        lines = compare(args, gflops, gbps, header)
    else:
        sys.path.insert(0, str(args.src))
        lines = [
            *header,
            "",
            "| head | trainable parameters | training MFLOP/example | DRAM MB/example | "
            "limit examples/s | s/step (best) | s/step (median) | examples/s (best) | "
            "examples/s (median) | % of limit |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        print("\n".join(lines), flush=True)
        for variant in args.heads.split(","):
            timer, params, cfg = bench_head(
                variant, args.batch, args.steps, args.warmup, device, args.adam
            )
            flops, nbytes = cost_per_example(VARIANTS[variant][0], cfg, params, args.batch)
            limit = _limit(flops, nbytes, gflops, gbps)
            median = statistics.median(timer.times)
            row = (
                f"| {variant} | {params:,} | {flops / 1e6:,.2f} | {nbytes / 1e6:.2f} | "
                f"{limit:,.0f} | {timer.best:.3f} | {median:.3f} | {args.batch / timer.best:,.0f} "
                f"| {args.batch / median:,.0f} | {100 * args.batch / median / limit:.0f} |"
            )
            lines.append(row)
            print(row, flush=True)
        lines.append(f"load average after: {load_average()}")
    print()
    print("\n".join(lines))
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
