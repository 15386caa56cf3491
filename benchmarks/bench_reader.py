"""Throughput of audiorep's TFRecord reader and AudioSet datasets on the real feature release.

Run with ``python benchmarks/bench_reader.py [--root DIR] [--limit N] [--repeats R]
[--markdown PATH]``. Reads every ``*.tfrecord`` under ``--root`` (default
``/work/shared/audioset/full``: AudioSet bal_train + eval, 8,132 shards, 42,531 segments,
77 MB) on one thread and reports records/s and MB/s (file bytes) for:

* **plain Python framing, no CRC** (baseline): ``read`` the 12-byte header, then payload +
  footer, nothing checked;
* **TFRecordReader**, ``verify_crc=False`` and with both CRCs checked (numpy CRC-32C, and the
  compiled ``google_crc32c``/``crc32c`` backend when one is importable);
* **+ parse_sequence_example** and **AudioSetIterableDataset** (full items: decode,
  dequantise, multi-hot labels);
* **AudioSetDataset construction** with the index cache cold (empty cache dir: every shard's
  headers are scanned) and warm (one ``stat`` per shard), then random access ``ds[i]`` in
  index order and in a shuffled order.

All files are read once before timing, so the numbers measure CPU work, not the disk. Each
row is the best of ``--repeats`` passes. Prints a markdown table (and writes it with
``--markdown``). Exits with a message (status 0) when the data folder is missing.
"""

from __future__ import annotations

import argparse
import os
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from audiorep.data import crc as crc_module  # noqa: E402
from audiorep.data.audioset import (  # noqa: E402
    AudioSetDataset,
    AudioSetIterableDataset,
    find_shards,
)
from audiorep.data.example import parse_sequence_example  # noqa: E402
from audiorep.data.tfrecord import TFRecordReader  # noqa: E402

DEFAULT_ROOT = Path("/work/shared/audioset/full")


def plain_python_records(paths: list[Path]) -> int:
    """Baseline: the simplest framing loop, no checks at all."""
    n = 0
    unpack = struct.Struct("<Q").unpack
    for p in paths:
        with open(p, "rb") as f:
            while True:
                header = f.read(12)
                if len(header) < 12:
                    break
                (length,) = unpack(header[:8])
                f.read(length + 4)
                n += 1
    return n


def best_of(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - t0)
    return best, count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N shards")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        print(f"skipped: {args.root} does not exist (needs the shared AudioSet feature release)")
        return 0
    torch.set_num_threads(1)
    shards = find_shards(args.root)
    if args.limit:
        shards = shards[: args.limit]
    if not shards:
        print(f"skipped: no *.tfrecord under {args.root}")
        return 0
    total_bytes = sum(p.stat().st_size for p in shards)
    for p in shards:  # page cache warm-up: measure CPU, not the disk
        p.read_bytes()

    accel = crc_module.set_backend("auto")  # the compiled backend, if one is importable
    accel = None if accel == "numpy" else accel

    def count_records(backend: str, verify_crc: bool = True, parse: bool = False) -> int:
        crc_module.set_backend(backend)
        n = 0
        for payload in TFRecordReader(shards, verify_crc=verify_crc):
            if parse:
                parse_sequence_example(payload)
            n += 1
        return n

    rows: list[tuple[str, int, float]] = []

    def add(name: str, fn: Callable[[], int]) -> None:
        seconds, count = best_of(fn, args.repeats)
        rows.append((name, count, seconds))
        print(f"  {name}: {count} records in {seconds:.2f} s", file=sys.stderr)

    add("plain Python framing, no CRC (baseline)", lambda: plain_python_records(shards))
    add("TFRecordReader, verify_crc=False", lambda: count_records("numpy", verify_crc=False))
    add("TFRecordReader, CRC-32C numpy", lambda: count_records("numpy"))
    if accel:
        add(f"TFRecordReader, CRC-32C {accel}", lambda: count_records(accel))
    add(
        "TFRecordReader (numpy CRC) + parse_sequence_example",
        lambda: count_records("numpy", parse=True),
    )
    crc_module.set_backend("numpy")  # the dataset rows: what a plain install gets
    add("AudioSetIterableDataset (items)", lambda: sum(1 for _ in AudioSetIterableDataset(shards)))

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10**9))

        def cold() -> int:
            return len(AudioSetDataset(shards, cache_dir=Path(tmp) / f"cold{next(counter)}"))

        add("AudioSetDataset(...) index cache cold", cold)
        warm_dir = Path(tmp) / "warm"
        ds = AudioSetDataset(shards, cache_dir=warm_dir)
        add(
            "AudioSetDataset(...) index cache warm",
            lambda: len(AudioSetDataset(shards, cache_dir=warm_dir)),
        )
        add("AudioSetDataset ds[i], index order", lambda: sum(1 for i in range(len(ds)) if ds[i]))
        order = np.random.RandomState(0).permutation(len(ds)).tolist()
        add("AudioSetDataset ds[i], shuffled order", lambda: sum(1 for i in order if ds[i]))

    mb = total_bytes / 1e6
    lines = [
        f"{len(shards)} shards, {rows[0][1]} records, {mb:.1f} MB under `{args.root}`; "
        f"1 thread; Python {platform.python_version()}, numpy {np.__version__}, "
        f"torch {torch.__version__}; {platform.processor() or platform.machine()}.",
        "",
        "| what | records/s | MB/s | seconds |",
        "|---|---:|---:|---:|",
    ]
    for name, count, seconds in rows:
        lines.append(f"| {name} | {count / seconds:,.0f} | {mb / seconds:,.1f} | {seconds:.2f} |")
    lines.append("")
    lines.append(
        "MB/s counts file bytes (for the index rows: bytes indexed per second). The cold index "
        "scans headers only; payload CRCs are checked when ds[i] reads a record."
    )
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
