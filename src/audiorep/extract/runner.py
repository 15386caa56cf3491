"""``audiorep embed``: inputs -> engine -> output format, with resume and a failures file.

:func:`embed_files` is the whole run: collect inputs (files, folders, list files), drop those
whose outputs are complete (``resume``), embed the rest with the local engine
(:mod:`audiorep.extract.engine`), write each result in the chosen format
(:mod:`audiorep.extract.formats`) and list failures in ``<out>/failures.tsv``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from audiorep.extract.engine import RunSummary, embed_corpus
from audiorep.extract.formats import make_output
from audiorep.extract.inputs import collect_inputs
from audiorep.extract.writers import claim_output_dir, write_bytes_atomic

FAILURES_FILE = "failures.tsv"


def embed_files(
    bundle,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    fmt: str = "npz",
    resume: bool = False,
    batch_size: int = 64,
    workers: int = 0,
    chunk_seconds: float = 20.0,
    pad_short: bool = False,
    fusion_layers: Sequence[int | str] | None = None,
    shard_size: int = 256,
    extensions: Iterable[str] | None = None,
    progress: bool = True,
) -> RunSummary:
    """Embed every input into ``out_dir``; never raises for a single bad file.

    Args:
        bundle: a loaded VGGish bundle (weights, windowing, precision, device).
        inputs: files, folders (recursive) and list files (.txt/.csv).
        out_dir: output folder.
        fmt: ``npz``, ``parquet`` or ``tfrecord`` (see :mod:`audiorep.extract.formats`).
        resume: skip inputs whose outputs are already complete (same settings).
        batch_size, workers, chunk_seconds, pad_short: see
            :func:`audiorep.extract.engine.embed_corpus`.
        fusion_layers: with ``npz``, also write fusion features: VGGish (e.g. ``[9, 14]``):
            ``fusion`` float32 ``(N, D)`` per example and ``fusion_clip`` ``(D,)``; CNN14
            (e.g. ``[3, 6]``) and AST (e.g. ``[4, 11]``): ``fusion_clip`` only.
        shard_size: inputs per shard for ``parquet`` / ``tfrecord``.
        extensions: file extensions searched in folders (default: all audio).

    Returns:
        the run summary; failures are also written to ``<out>/failures.tsv`` (path, reason),
        which is removed when a run has none.

    Raises:
        audiorep.extract.writers.OutputBusyError: another run is writing to ``out_dir``.
    """
    if fusion_layers and fmt != "npz":
        raise ValueError("fusion features are written to npz outputs only (--format npz)")
    fusion = None
    if fusion_layers:
        # VGGish: per-example + clip fusion from the packed batches; CNN14/AST: clip-level
        # fusion from their bundles (``fusion_module`` validates the layers up front).
        module = bundle.fusion_module(fusion_layers)  # validates the layers up front
        fusion = module if bundle.streams_windows else list(fusion_layers)
    skipped: list[tuple[str, str]] = []
    items = collect_inputs(inputs, extensions, skipped)
    if not items and not skipped:
        exts = ", ".join(sorted(extensions)) if extensions else "any audio extension"
        raise FileNotFoundError(
            f"no input files found in {', '.join(map(str, inputs))} (searched for {exts})"
        )
    with claim_output_dir(out_dir) as out:
        writer = make_output(fmt, out, items, bundle, shard_size, fusion_layers)
        todo = writer.pending() if resume else list(range(len(items)))
        summary = embed_corpus(
            bundle,
            items,
            writer.add,
            indices=todo,
            batch_size=batch_size,
            workers=workers,
            chunk_seconds=chunk_seconds,
            pad_short=pad_short,
            fusion=fusion,
            progress=progress,
        )
        writer.close()
        summary.failures.extend(skipped)  # not regular files: reported, never opened
        write_failures(out, summary.failures)
    return summary


def tsv_field(text: str) -> str:
    """One TSV field: backslashes, tabs, carriage returns and newlines escaped as two-character
    backslash sequences, so that any file name keeps the two columns intact."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")


def write_failures(out_dir: Path, failures: Sequence[tuple[str, str]]) -> None:
    """``<out>/failures.tsv`` (path, reason) written atomically; removed when there are none."""
    path = Path(out_dir) / FAILURES_FILE
    if failures:
        lines = "".join(f"{tsv_field(p)}\t{tsv_field(r)}\n" for p, r in failures)
        # surrogateescape: a name that is not valid UTF-8 is written as its original bytes
        write_bytes_atomic(path, lines.encode("utf-8", "surrogateescape"))
    elif path.exists():
        path.unlink()


__all__ = ["FAILURES_FILE", "RunSummary", "embed_files", "write_failures"]
