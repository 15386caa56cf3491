"""Embed many audio files with model batches packed across files.

A file's examples rarely fill a model batch (a 5 s clip gives 5), so embedding file by file
wastes most of each forward pass. :func:`iter_file_embeddings` decodes files in order, queues
their examples, runs the model once enough examples are queued, and hands each file's
embeddings back in input order. Memory stays bounded: at most one batch of queued examples
plus the file being decoded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiorep.audio import AudioLoadError, load
from audiorep.extract.engine import embed_fixed_batches


@dataclass
class FileEmbeddings:
    """The outcome for one input file.

    Attributes:
        path: the input file.
        embeddings: float32 ``(N, D)``; ``None`` when the file failed.
        duration: seconds of audio decoded (0 when it failed).
        error: why the file failed (``None`` on success).
    """

    path: Path
    embeddings: np.ndarray | None
    duration: float = 0.0
    error: str | None = None


def iter_file_embeddings(
    bundle,
    paths: Iterable[str | os.PathLike],
    *,
    batch_size: int = 64,
) -> Iterator[FileEmbeddings]:
    """Yield one :class:`FileEmbeddings` per path, in order; failures never stop the run.

    Args:
        bundle: a loaded model bundle (``bundle.examples`` / ``bundle.embed_examples``).
        paths: audio files (anything :func:`audiorep.audio.load` decodes).
        batch_size: examples per model forward pass.
    """
    # Failed files wait in the queue too (examples None) so results keep input order.
    queue: list[tuple[FileEmbeddings, torch.Tensor | None]] = []
    queued = 0

    def flush() -> Iterator[FileEmbeddings]:
        nonlocal queued
        ok = [ex for _, ex in queue if ex is not None and ex.shape[0]]
        parts: Iterator[torch.Tensor] = iter(())
        if queued:
            emb, _ = embed_fixed_batches(bundle, torch.cat(ok), batch_size)
            parts = iter(torch.split(emb, [ex.shape[0] for ex in ok]))
        for item, ex in queue:
            if ex is not None:
                part = next(parts) if ex.shape[0] else torch.zeros((0, bundle.embedding_size))
                item.embeddings = part.numpy().astype(np.float32, copy=False)
            yield item
        queue.clear()
        queued = 0

    for raw in paths:
        path = Path(raw)
        try:
            waveform, sr = load(path)
            examples = bundle.examples(waveform, sr)  # load() rejects NaN/inf samples
        except (AudioLoadError, ValueError, RuntimeError, OSError) as exc:
            queue.append((FileEmbeddings(path, None, 0.0, str(exc)), None))
            continue
        queue.append((FileEmbeddings(path, None, waveform.shape[-1] / sr), examples))
        queued += examples.shape[0]
        if queued >= batch_size:
            yield from flush()
    yield from flush()


__all__ = ["FileEmbeddings", "iter_file_embeddings"]
