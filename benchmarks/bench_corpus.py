"""Corpus benchmark: a folder of mixed-rate files end to end, audiorep vs torchvggish's loop.

The corpus (generated once into ``--data``): ``--files`` clips (default 200), 5-30 s, sample
rates cycling 16 / 44.1 / 48 kHz, harmonic tones + noise, 16-bit WAV.

* torchvggish 0.2: the loop its users write: for each file ``soundfile.read`` ->
  ``vggish_input.waveform_to_examples`` (resampy) -> ``model(examples)`` under
  ``inference_mode``, one batch per file.
* audiorep: ``audiorep.extract.runner.embed_files`` (the ``audiorep embed`` engine): workers
  decoding/resampling, model batches packed across files, npz outputs written atomically.

Both use seeded random weights (same architecture and cost). Reported: seconds of audio per
second and the ratio, plus ``--memory``: peak RSS of ``audiorep embed`` on a 1-hour 44.1 kHz
file in a fresh process (ru_maxrss).

    python benchmarks/bench_corpus.py --markdown bench_out/corpus.md [--files 200] [--memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))

import audiorep  # noqa: E402
from audiorep.extract.runner import embed_files  # noqa: E402

RATES = (16000, 44100, 48000)
ROOT = Path(__file__).resolve().parents[1]


def make_corpus(folder: Path, files: int, seed: int = 0) -> float:
    """Write the corpus (if not there yet); returns its total duration in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    rs = np.random.RandomState(seed)
    total = 0.0
    for i in range(files):
        sr = RATES[i % len(RATES)]
        seconds = rs.uniform(5, 30)
        path = folder / f"clip{i:04d}_{sr}.wav"
        total += int(sr * seconds) / sr
        if path.exists():
            continue
        t = np.arange(int(sr * seconds)) / sr
        f0 = rs.uniform(100, 800)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3)) * 0.2
        x = x + 0.05 * rs.randn(t.size)
        sf.write(path, x.astype(np.float32), sr, subtype="PCM_16")
    return total


def run_torchvggish(files: list[Path]) -> float:
    from torchvggish import vggish_input
    from torchvggish.torchvggish import VGG, make_layers

    torch.manual_seed(0)
    model = VGG(make_layers(), postprocess=False).eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for f in files:
            wav, sr = sf.read(f, dtype="int16")
            examples = vggish_input.waveform_to_examples(wav / 32768.0, sr, return_tensor=True)
            model(examples)
    return time.perf_counter() - start


def run_audiorep(files_dir: Path, workers: int, batch_size: int) -> tuple[float, int]:
    bundle = audiorep.load("vggish", weights="random")
    bundle.embed(np.zeros(16000 * 2), 16000)  # build the CPU inference module outside the timing
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = embed_files(bundle, [files_dir], out, workers=workers, batch_size=batch_size,
                              progress=False)  # fmt: skip
        wall = time.perf_counter() - start
    if summary.failures:
        raise RuntimeError(f"audiorep failed on {summary.failures[:3]}")
    return wall, summary.examples


def peak_rss_one_hour(data: Path, extra: list[str]) -> dict:
    """Peak RSS of ``audiorep embed`` on a 1 h 44.1 kHz mono 16-bit WAV, in a new process."""
    path = data / "one_hour_44k.wav"
    if not path.exists():
        sr, block = 44100, 44100 * 60
        rs = np.random.RandomState(1)
        with sf.SoundFile(path, "w", sr, 1, "PCM_16") as f:
            for _ in range(60):
                f.write((0.1 * rs.randn(block)).astype(np.float32))
    code = "import sys; from audiorep.cli import main; sys.exit(main(sys.argv[1:]))"
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
        start = time.perf_counter()
        # /usr/bin/time-style: the child's own peak RSS, read after it exits
        proc = subprocess.run(
            [sys.executable, "-c", code, "embed", str(path), "-o", out, "--weights", "random",
             "-q", *extra],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - start
    return {
        "file": "1 h, 44.1 kHz, mono, 16-bit WAV (318 MB)",
        "options": " ".join(extra) or "(defaults)",
        # the largest child's peak so far: run the lighter configuration first
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "wall_seconds": wall,
        "exit": proc.returncode,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--data", type=Path, default=ROOT / "bench_out" / "corpus")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--memory", action="store_true", help="also measure the 1-hour file")
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    audio_seconds = make_corpus(args.data / f"files{args.files}", args.files)
    files = sorted((args.data / f"files{args.files}").glob("*.wav"))
    print(f"corpus: {len(files)} files, {audio_seconds / 60:.1f} min of audio", flush=True)
    ar_wall, examples = run_audiorep(args.data / f"files{args.files}", args.workers,
                                     args.batch_size)  # fmt: skip
    print(f"audiorep:    {ar_wall:.1f} s", flush=True)
    tv_wall = run_torchvggish(files)
    print(f"torchvggish: {tv_wall:.1f} s", flush=True)
    result = {
        "files": len(files),
        "audio_seconds": audio_seconds,
        "examples": examples,
        "threads": args.threads,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "audiorep_seconds": ar_wall,
        "torchvggish_seconds": tv_wall,
        "audiorep_audio_s_per_s": audio_seconds / ar_wall,
        "torchvggish_audio_s_per_s": audio_seconds / tv_wall,
        "ratio": tv_wall / ar_wall,
        "load_average_end": list(os.getloadavg()),
        "cpu_seconds_self": resource.getrusage(resource.RUSAGE_SELF).ru_utime,
    }
    if args.memory:
        result["memory"] = [peak_rss_one_hour(args.data, x) for x in (["--low-memory"], [])]
    print(json.dumps(result, indent=2))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            f"Corpus: {len(files)} files, {audio_seconds / 60:.1f} min, 16/44.1/48 kHz, 5-30 s; "
            f"{args.threads} torch threads, {args.workers} worker(s), batch {args.batch_size}.",
            "",
            "| | wall s | audio s / s | ratio |",
            "|---|---:|---:|---:|",
            f"| audiorep embed | {ar_wall:.1f} | {audio_seconds / ar_wall:.1f} | "
            f"**{tv_wall / ar_wall:.2f}x** |",
            f"| torchvggish 0.2 per-file loop | {tv_wall:.1f} | {audio_seconds / tv_wall:.1f} "
            "| 1.00x |",
        ]
        for m in result.get("memory", []):
            lines += ["", f"Peak RSS, {m['file']}, `audiorep embed {m['options']}`: "
                      f"**{m['peak_rss_mb']:.0f} MB** ({m['wall_seconds']:.0f} s)."]  # fmt: skip
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
