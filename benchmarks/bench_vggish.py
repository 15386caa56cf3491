"""Throughput of audiorep's VGGish against torchvggish 0.2, on CPU, in one process.

Run with ``make bench`` (or ``python benchmarks/bench_vggish.py``). For a synthetic clip
(tones + noise + a sweep, ``--seconds`` long, default 60 s) at 16 kHz and at 44.1 kHz it
times, for both libraries, interleaved in the same process:

* **frontend**: waveform array -> log-mel examples, resampling to 16 kHz included;
* **model only**: examples -> 128-D embeddings (independent of the input rate, timed once);
* **end to end**: waveform array -> embeddings -> PCA + 8-bit quantisation.

plus extra rows: audiorep's float32 frontend, audiorep's eager model (``AUDIOREP_EAGER=1``),
the resampler alone (44.1 kHz -> 16 kHz, float64) and, with ``--batch``, 16 clips of 10 s at
44.1 kHz embedded as one padded batch (audiorep) vs clip by clip (torchvggish).

Throughput is seconds of input audio processed per second of wall time (best of
``--repeats`` runs; the median is reported too), each timed call preceded by ``--gap``
seconds idle so that one library's spinning thread pool does not slow the other. Both
models use random weights, so nothing is downloaded: the network is the same, only its
implementation differs. torchvggish's ``Postprocessor`` downloads its PCA parameters when
constructed, so its few tensor ops (matmul, clamp, round) are replicated here with random
PCA parameters. One-off costs are
excluded by warm-up calls before timing: resampy's numba JIT compilation, audiorep's
TorchScript freezing, resampling-plan construction and oneDNN primitive creation.

The torch thread count is ``--threads`` (default 2). NumPy's BLAS pool is pinned to the same
count through ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``/``MKL_NUM_THREADS``; since those
are read when NumPy loads, the script re-executes itself once with them set when needed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import resampy
import torch
from timing import Timer  # noqa: E402  (benchmarks/ is on sys.path)
from torchvggish import vggish_input
from torchvggish.torchvggish import VGG, make_layers

import audiorep
from audiorep.resample import resample as audiorep_resample

RATES = (16000, 44100)
TARGET_END_TO_END_44K = 3.0  # audiorep / torchvggish, end to end at 44.1 kHz
TARGET_MODEL_ONLY = 1.5  # audiorep / torchvggish, model only
BATCH_CLIPS = 16
BATCH_CLIP_SECONDS = 10.0
BATCH_RATE = 44100
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_REEXEC_FLAG = "AUDIOREP_BENCH_REEXEC"


# --------------------------------------------------------------------------- timing


@dataclass
class Row:
    """One line of the results table: audiorep vs torchvggish on the same work."""

    stage: str
    rate: str
    audio_seconds: float
    audiorep: Timer
    torchvggish: Timer
    note: str = ""
    headline: bool = True

    def throughput(self, timer: Timer, stat: str) -> float:
        return self.audio_seconds / getattr(timer, stat)

    def ratio(self, stat: str) -> float:
        """Speedup of audiorep over torchvggish (time ratio) for ``stat`` best/median."""
        return getattr(self.torchvggish, stat) / getattr(self.audiorep, stat)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "rate": self.rate,
            "note": self.note,
            "headline": self.headline,
            "audio_seconds": self.audio_seconds,
            "audiorep_seconds": self.audiorep.times,
            "torchvggish_seconds": self.torchvggish.times,
            "audiorep_throughput_best": self.throughput(self.audiorep, "best"),
            "audiorep_throughput_median": self.throughput(self.audiorep, "median"),
            "torchvggish_throughput_best": self.throughput(self.torchvggish, "best"),
            "torchvggish_throughput_median": self.throughput(self.torchvggish, "median"),
            "ratio_best": self.ratio("best"),
            "ratio_median": self.ratio("median"),
        }


def measure(timers: Sequence[Timer], repeats: int, warmup: int, gap: float) -> None:
    """Warm up every timer, then time them interleaved, rotating the order each repeat.

    ``gap`` seconds of sleep precede each timed call: after a NumPy BLAS call OpenBLAS's
    worker threads keep spinning for up to ~0.1 s, and on 2 cores that steals a core from
    whatever runs next (measured: audiorep's 16 kHz frontend 2-4x slower right after
    torchvggish's). The gap lets both libraries start from idle thread pools. Every call runs
    under ``torch.inference_mode()`` (no autograd bookkeeping for either library).
    """
    with torch.inference_mode():
        for timer in timers:
            for _ in range(warmup):
                timer.fn()
        n = len(timers)
        for r in range(repeats):
            for timer in [*timers[r % n :], *timers[: r % n]]:
                time.sleep(gap)
                start = time.perf_counter()
                timer.fn()
                timer.times.append(time.perf_counter() - start)


@contextmanager
def eager_audiorep() -> Iterator[None]:
    """Force audiorep's eager model (``AUDIOREP_EAGER=1``) inside the block."""
    previous = os.environ.get("AUDIOREP_EAGER")
    os.environ["AUDIOREP_EAGER"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["AUDIOREP_EAGER"]
        else:
            os.environ["AUDIOREP_EAGER"] = previous


# --------------------------------------------------------------------------- inputs


def synthetic_clip(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A float64 mono test clip: three tones, white noise and a log sweep, peak ~0.8."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate)), dtype=np.float64) / sample_rate
    tones = sum(
        a * np.sin(2 * np.pi * f * t) for a, f in ((0.2, 220.0), (0.15, 1000.0), (0.1, 3150.0))
    )
    noise = 0.05 * rng.standard_normal(t.shape[0])
    f0, f1 = 50.0, 0.45 * sample_rate  # the sweep crosses 8 kHz at 44.1 kHz input
    k = np.log(f1 / f0) / max(seconds, 1e-9)
    sweep = 0.2 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1.0) / k)
    return np.asarray(tones + noise + sweep, dtype=np.float64)


class TorchvggishPostprocess:
    """torchvggish 0.2's ``Postprocessor.postprocess`` ops, with random PCA parameters.

    Its class downloads the PCA parameters in ``__init__``; the arithmetic (float32 matmul,
    clamp to [-2, 2], scale to 0..255, round, squeeze) is what it runs per batch.
    """

    def __init__(self, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(128, 128, generator=gen, dtype=torch.float64))
        self.pca_matrix = (q / 8.0).float()
        self.pca_means = torch.zeros(128, 1)

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        pca_applied = torch.mm(self.pca_matrix, embeddings.t() - self.pca_means).t()
        clipped = torch.clamp(pca_applied, -2.0, 2.0)
        return torch.squeeze(torch.round((clipped + 2.0) * (255.0 / 4.0)))


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(threads: int) -> dict[str, Any]:
    """CPU, core counts, load average and library versions."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "torch_threads": threads,
        "blas_threads_env": {k: os.environ.get(k) for k in _THREAD_ENV},
        "load_average_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "onednn": bool(torch.backends.mkldnn.is_available()),
        "numpy": np.__version__,
        "resampy": _version("resampy"),
        "numba": _version("numba"),
        "torchvggish": _version("torchvggish"),
        "audiorep": getattr(audiorep, "__version__", _version("audiorep")),
    }


# --------------------------------------------------------------------------- benchmark


def build_rows(args: argparse.Namespace) -> tuple[list[Row], dict[str, float]]:
    """Set up both libraries, check the frontends agree, and time every scenario."""
    seconds = float(args.seconds)
    bundle = audiorep.load("vggish", weights="random")
    bundle32 = audiorep.load("vggish", weights="random", frontend_dtype=torch.float32)
    torch.manual_seed(0)
    tv_model = VGG(make_layers(), postprocess=False).eval()
    tv_post = TorchvggishPostprocess()
    clips = {sr: synthetic_clip(seconds, sr) for sr in RATES}

    def tv_examples(wave: np.ndarray, sr: int) -> torch.Tensor:
        return vggish_input.waveform_to_examples(wave, sr, return_tensor=True)

    @torch.inference_mode()
    def tv_end_to_end(wave: np.ndarray, sr: int) -> torch.Tensor:
        return tv_post(tv_model(tv_examples(wave, sr)))

    @torch.inference_mode()
    def ar_end_to_end(wave: np.ndarray, sr: int) -> torch.Tensor:
        return bundle.quantize(bundle.embed(wave, sr))

    @torch.inference_mode()
    def tv_embed(examples: torch.Tensor) -> torch.Tensor:
        return tv_model(examples)

    checks: dict[str, float] = {}
    rows: list[Row] = []

    def first_call(name: str, fn: Callable[[], object]) -> None:
        """Time a cold first call (JIT compilation, plan building, freezing): not in the table."""
        start = time.perf_counter()
        fn()
        checks[f"first_call_{name}"] = time.perf_counter() - start

    first_call("torchvggish_frontend_44k", lambda: tv_examples(clips[44100], 44100))
    first_call("audiorep_frontend_44k", lambda: bundle.examples(clips[44100], 44100))
    first_call("audiorep_embed", lambda: bundle.embed(clips[16000], 16000))

    def run(row: Row) -> Row:
        print(f"  timing {row.stage} @ {row.rate} ...", flush=True)
        measure([row.audiorep, row.torchvggish], args.repeats, args.warmup, args.gap)
        print(
            f"    audiorep {row.audiorep.best:.4f} s, torchvggish {row.torchvggish.best:.4f} s "
            f"(best) -> {row.ratio('best'):.2f}x",
            flush=True,
        )
        rows.append(row)
        return row

    for sr in RATES:
        wave = clips[sr]
        with torch.inference_mode():
            ar_ex = bundle.examples(wave, sr)
            tv_ex = tv_examples(wave, sr)
        checks[f"frontend_max_abs_diff_{sr}"] = float(
            (ar_ex - tv_ex[:, 0].to(torch.float64)).abs().max()
        )
        checks[f"examples_{sr}"] = float(ar_ex.shape[0])
        rate = f"{sr / 1000:g} kHz"
        run(
            Row(
                "frontend", rate, seconds,
                Timer("audiorep", lambda w=wave, s=sr: bundle.examples(w, s)),
                Timer("torchvggish", lambda w=wave, s=sr: tv_examples(w, s)),
                note="float64 (reference-exact)",
            )
        )  # fmt: skip
        run(
            Row(
                "frontend float32", rate, seconds,
                Timer("audiorep", lambda w=wave, s=sr: bundle32.examples(w, s)),
                Timer("torchvggish", lambda w=wave, s=sr: tv_examples(w, s)),
                note="audiorep frontend_dtype=float32",
                headline=False,
            )
        )  # fmt: skip
        run(
            Row(
                "end to end", rate, seconds,
                Timer("audiorep", lambda w=wave, s=sr: ar_end_to_end(w, s)),
                Timer("torchvggish", lambda w=wave, s=sr: tv_end_to_end(w, s)),
                note="frontend + model + PCA/quantise",
            )
        )  # fmt: skip

    # Model only: the input rate no longer matters; use the 16 kHz clip's examples.
    with torch.inference_mode():
        ar_ex = bundle.examples(clips[16000], 16000)
        tv_ex = tv_examples(clips[16000], 16000)

    def ar_embed_eager() -> torch.Tensor:
        with eager_audiorep():
            return bundle.embed_examples(ar_ex)

    run(
        Row(
            "model only", "any", seconds,
            Timer("audiorep", lambda: bundle.embed_examples(ar_ex)),
            Timer("torchvggish", lambda: tv_embed(tv_ex)),
            note=f"{ar_ex.shape[0]} examples; audiorep frozen TorchScript/oneDNN",
        )
    )  # fmt: skip
    run(
        Row(
            "model only, eager", "any", seconds,
            Timer("audiorep", ar_embed_eager),
            Timer("torchvggish", lambda: tv_embed(tv_ex)),
            note="AUDIOREP_EAGER=1",
            headline=False,
        )
    )  # fmt: skip

    bundle_bf16 = audiorep.load("vggish", weights="random", precision="bfloat16")
    with torch.inference_mode():
        exact = bundle.embed_examples(ar_ex)
        approx = bundle_bf16.embed_examples(ar_ex)
    checks["bf16_min_cosine"] = float(torch.nn.functional.cosine_similarity(exact, approx).min())
    checks["bf16_max_abs_diff"] = float((exact - approx).abs().max())
    run(
        Row(
            "model only, bfloat16", "any", seconds,
            Timer("audiorep", lambda: bundle_bf16.embed_examples(ar_ex)),
            Timer("torchvggish", lambda: tv_embed(tv_ex)),
            note="audiorep precision='bfloat16' (not exact; AMX/AVX512-BF16 CPUs)",
            headline=False,
        )
    )  # fmt: skip

    wave44 = clips[44100]
    wave44_t = torch.from_numpy(wave44)
    run(
        Row(
            "resampler only", "44.1 -> 16 kHz", seconds,
            Timer("audiorep", lambda: audiorep_resample(wave44_t, 44100, 16000)),
            Timer("torchvggish", lambda: resampy.resample(wave44, 44100, 16000)),
            note="float64; audiorep.resample vs resampy kaiser_best",
            headline=False,
        )
    )  # fmt: skip
    resampled = audiorep_resample(wave44_t, 44100, 16000).numpy()
    checks["resample_max_abs_diff"] = float(
        np.abs(resampled - resampy.resample(wave44, 44100, 16000)).max()
    )

    if args.batch:
        batch_row(bundle, tv_model, tv_post, tv_examples, run)  # run() records the row
    return rows, checks


def batch_row(
    bundle: Any,
    tv_model: torch.nn.Module,
    tv_post: TorchvggishPostprocess,
    tv_examples: Callable[[np.ndarray, int], torch.Tensor],
    run: Callable[[Row], Row],
) -> Row:
    """16 clips of 10 s at 44.1 kHz: one padded batch (audiorep) vs clip by clip."""
    waves = [synthetic_clip(BATCH_CLIP_SECONDS, BATCH_RATE, seed=i) for i in range(BATCH_CLIPS)]
    batch = torch.from_numpy(np.stack(waves))
    lengths = torch.tensor([w.shape[0] for w in waves])

    @torch.inference_mode()
    def ar_batch() -> list[torch.Tensor]:
        examples, counts = bundle.frontend(batch, BATCH_RATE, lengths)
        quantized = bundle.quantize(bundle.embed_examples(examples))
        return list(torch.split(quantized, counts.tolist()))

    @torch.inference_mode()
    def tv_clips() -> list[torch.Tensor]:
        return [tv_post(tv_model(tv_examples(w, BATCH_RATE))) for w in waves]

    return run(
        Row(
            f"batch {BATCH_CLIPS} x {BATCH_CLIP_SECONDS:g} s", "44.1 kHz",
            BATCH_CLIPS * BATCH_CLIP_SECONDS,
            Timer("audiorep", ar_batch),
            Timer("torchvggish", tv_clips),
            note="end to end; audiorep one padded batch, torchvggish clip by clip",
            headline=False,
        )
    )  # fmt: skip


# --------------------------------------------------------------------------- report


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def targets(rows: Sequence[Row]) -> list[tuple[str, float, float, float, bool]]:
    """(name, target, ratio best, ratio median, met on best) for the two stated targets."""
    out = []
    for stage, rate, target in (
        ("end to end", "44.1 kHz", TARGET_END_TO_END_44K),
        ("model only", "any", TARGET_MODEL_ONLY),
    ):
        for row in rows:
            if row.stage == stage and row.rate == rate:
                best, median = row.ratio("best"), row.ratio("median")
                out.append((f"{stage} @ {rate}", target, best, median, best >= target))
    return out


def markdown(
    rows: Sequence[Row],
    info: dict[str, Any],
    checks: dict[str, float],
    args: argparse.Namespace,
) -> str:
    """The results as a markdown document fragment (machine, table, targets)."""
    lines = [
        f"Machine: {info['cpu']}, {info['usable_cpus']} usable of {info['logical_cpus']} "
        f"logical CPUs, torch threads {info['torch_threads']}; load average at start "
        f"{' / '.join(f'{x:.2f}' for x in info['load_average_start'])} (1/5/15 min), "
        f"at end {' / '.join(f'{x:.2f}' for x in info['load_average_end'])}.",
        "",
        f"Versions: Python {info['python']}, torch {info['torch']} (oneDNN "
        f"{'on' if info['onednn'] else 'off'}), numpy {info['numpy']}, resampy "
        f"{info['resampy']} (numba {info['numba']}), torchvggish {info['torchvggish']}, "
        f"audiorep {info['audiorep']}.",
        "",
        f"Input: {args.seconds:g} s synthetic clip; best (median) of {args.repeats} runs after "
        f"{args.warmup} warm-up call(s), interleaved, {args.gap:g} s idle before each timed "
        "call; throughput in seconds of audio per second.",
        "",
        "| stage | input | audiorep | torchvggish | audiorep / torchvggish | notes |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        ar, tv = (
            f"{_fmt(row.throughput(t, 'best'))} ({_fmt(row.throughput(t, 'median'))})"
            for t in (row.audiorep, row.torchvggish)
        )
        ratio = f"{row.ratio('best'):.2f}x ({row.ratio('median'):.2f}x)"
        stage = f"**{row.stage}**" if row.headline else row.stage
        lines.append(f"| {stage} | {row.rate} | {ar} | {tv} | {ratio} | {row.note} |")
    lines += ["", "| target | required | measured best (median) | met |", "|---|---:|---:|---|"]
    for name, target, best, median, met in targets(rows):
        lines.append(
            f"| {name} | >= {target:g}x | {best:.2f}x ({median:.2f}x) | {'yes' if met else 'no'} |"
        )
    lines += [
        "",
        "Sanity checks: frontend max |audiorep - torchvggish| "
        + ", ".join(
            f"{sr / 1000:g} kHz {checks[f'frontend_max_abs_diff_{sr}']:.2e} "
            f"({checks[f'examples_{sr}']:.0f} examples)"
            for sr in RATES
        )
        + f"; resampler max |diff| {checks['resample_max_abs_diff']:.2e}; bfloat16 model vs "
        f"float32: min cosine {checks['bf16_min_cosine']:.6f}, max |diff| "
        f"{checks['bf16_max_abs_diff']:.2e}.",
        "",
        "First calls, excluded from the table: torchvggish frontend at 44.1 kHz "
        f"{checks['first_call_torchvggish_frontend_44k']:.2f} s (resampy's numba JIT), audiorep "
        f"frontend at 44.1 kHz {checks['first_call_audiorep_frontend_44k']:.2f} s (resampling "
        f"plan), audiorep 16 kHz frontend + first embed_examples "
        f"{checks['first_call_audiorep_embed']:.2f} s (TorchScript freeze).",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="torch/BLAS threads (default 2)")
    p.add_argument("--seconds", type=float, default=60.0, help="clip length (default 60)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per case (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per case (default 2)")
    p.add_argument(
        "--gap", type=float, default=0.3, help="idle seconds before each timed call (0.3)"
    )
    p.add_argument("--batch", action="store_true", help="also time 16 x 10 s batched")
    p.add_argument("--markdown", type=Path, help="write the results table here")
    p.add_argument("--json", type=Path, help="write raw timings and machine info here")
    return p.parse_args(argv)


def _reexec_with_blas_threads(threads: int) -> None:
    """Restart once with the BLAS thread variables set (NumPy reads them at import)."""
    wanted = str(threads)
    if os.environ.get(_REEXEC_FLAG) or all(os.environ.get(k) == wanted for k in _THREAD_ENV):
        return
    env = dict(os.environ, **{k: wanted for k in _THREAD_ENV}, **{_REEXEC_FLAG: "1"})
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or args.seconds < 1.0 or args.gap < 0:
        raise SystemExit("--repeats/--threads must be >= 1, --seconds >= 1, --gap >= 0")
    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    print("audiorep vs torchvggish benchmark (CPU)")
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(flush=True)

    rows, checks = build_rows(args)
    info["load_average_end"] = list(os.getloadavg())
    report = markdown(rows, info, checks, args)
    print()
    print(report)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report)
        print(f"wrote {args.markdown}")
    if args.json:
        payload = {
            "machine": info,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "checks": checks,
            "rows": [row.as_dict() for row in rows],
            "targets": [
                {"name": n, "target": t, "ratio_best": b, "ratio_median": m, "met": met}
                for n, t, b, m, met in targets(rows)
            ],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    _reexec_with_blas_threads(parse_args().threads)
    sys.exit(main())
