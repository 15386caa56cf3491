"""AudioSet feature splits held in memory, and their batch loaders (for the classifier heads).

:class:`PackedAudioSet` holds a split's uint8 features (~1.3 KB per segment) and builds
dequantised batches exactly as the YouTube-8M reader does; :class:`BatchLoader` iterates it,
shuffling with the GLOBAL torch RNG so that the training loop resumes exactly;
:func:`stream_loader` is the same over the index-cached :class:`~audiorep.data.AudioSetDataset`
when a split does not fit in memory.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: Frames per window the heads see: AudioSet segments are at most 10 one-second frames.
WINDOW_FRAMES = 10


def progress_bar(iterable: Iterable[Any], *, enabled: bool, **kwargs: Any) -> Iterable[Any]:
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal, else ``iterable``."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, disable=None, file=sys.stderr, dynamic_ncols=True, **kwargs)


def _paths(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    return [Path(s) for s in items]


class PackedAudioSet:
    """An AudioSet feature split held in memory, packed.

    Attributes:
        quantized: uint8 ``(N, T, 128)`` stored bytes, zero past each segment's frames
            (``T`` = the longest segment, at most ``max_frames``).
        num_frames: int64 ``(N,)``.
        label_indices: int64 ``(L,)`` all segments' class indices, concatenated;
            ``label_offsets`` int64 ``(N + 1,)`` delimits each segment's run (CSR layout).
        video_ids: list of str; ``start_times``: float64 ``(N,)``.
        num_classes: length of the multi-hot labels built per batch.

    Memory: ~1.3 KB per 10-frame segment (the bytes as stored), so bal_train + eval take
    ~55 MB and the 2M-segment unbal_train ~2.7 GB. Batches are dequantised on the fly exactly
    as the YouTube-8M reader does (float32, zero padding after dequantisation).
    """

    def __init__(
        self,
        quantized: torch.Tensor,
        num_frames: torch.Tensor,
        label_indices: torch.Tensor,
        label_offsets: torch.Tensor,
        video_ids: list[str],
        start_times: np.ndarray,
        num_classes: int = 527,
        source: str = "",
    ) -> None:
        n = quantized.shape[0]
        if num_frames.shape != (n,) or label_offsets.shape != (n + 1,) or len(video_ids) != n:
            raise ValueError("inconsistent PackedAudioSet arrays")
        self.quantized = quantized
        self.num_frames = num_frames
        self.label_indices = label_indices
        self.label_offsets = label_offsets
        self.video_ids = video_ids
        self.start_times = start_times
        self.num_classes = num_classes
        self.source = source

    @classmethod
    def load(
        cls,
        source: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        num_classes: int = 527,
        max_frames: int = WINDOW_FRAMES,
        workers: int = 0,
        verify_crc: bool = True,
        skip_bad: bool = False,
        progress: bool = True,
        desc: str = "reading",
    ) -> PackedAudioSet:
        """Read every record of ``source`` (shards and/or folders searched recursively for
        ``*.tfrecord``) with :class:`~audiorep.data.AudioSetIterableDataset`; ``workers``
        DataLoader processes read disjoint shards in parallel.

        Raises:
            FileNotFoundError: a path does not exist or a folder holds no ``*.tfrecord``.
            audiorep.data.TFRecordError / ValueError: a damaged or malformed record (the
                message names the file and byte offset).
        """
        from torch.utils.data import DataLoader

        from audiorep.data import AudioSetIterableDataset

        paths = _paths(source)
        ds = AudioSetIterableDataset(
            paths,
            num_classes=num_classes,
            max_frames=max_frames,
            return_embeddings=False,
            return_quantized=True,
            verify_crc=verify_crc,
            skip_bad=skip_bad,
        )
        items: Iterable[dict[str, Any]] = ds
        if workers > 0:
            items = DataLoader(
                ds, batch_size=None, num_workers=workers, collate_fn=_identity, prefetch_factor=64
            )
        q_list: list[torch.Tensor] = []
        nf: list[int] = []
        labels: list[np.ndarray] = []
        vids: list[str] = []
        starts: list[float] = []
        for item in progress_bar(items, enabled=progress, desc=desc, unit=" segments"):
            q_list.append(item["quantized"])
            nf.append(int(item["num_frames"]))
            labels.append(np.flatnonzero(item["labels"].numpy() > 0))
            vids.append(item["video_id"])
            starts.append(float(item["start_time_seconds"]))
        if not q_list:
            raise ValueError(f"no records in {', '.join(map(str, paths))}")
        t = max(max(nf), 1)
        quantized = torch.zeros(len(q_list), t, q_list[0].shape[-1], dtype=torch.uint8)
        for i, q in enumerate(q_list):
            quantized[i, : q.shape[0]] = q
        offsets = np.zeros(len(labels) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(x) for x in labels])
        flat = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
        return cls(
            quantized,
            torch.tensor(nf, dtype=torch.int64),
            torch.from_numpy(flat.astype(np.int64)),
            torch.from_numpy(offsets),
            vids,
            np.asarray(starts, dtype=np.float64),
            num_classes,
            ", ".join(map(str, paths)),
        )

    def __len__(self) -> int:
        return int(self.quantized.shape[0])

    def labels(self, index: torch.Tensor) -> torch.Tensor:
        """float32 multi-hot ``(len(index), num_classes)`` of the segments ``index``."""
        starts, ends = self.label_offsets[index], self.label_offsets[index + 1]
        counts = ends - starts
        rows = torch.repeat_interleave(torch.arange(len(index)), counts)
        # positions of every label of the selected segments inside label_indices
        within = torch.arange(int(counts.sum())) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        cols = self.label_indices[torch.repeat_interleave(starts, counts) + within]
        out = torch.zeros(len(index), self.num_classes, dtype=torch.float32)
        out[rows, cols] = 1.0
        return out

    def batch(self, index: torch.Tensor) -> dict[str, Any]:
        """The batch of segments ``index``: ``embeddings`` float32 ``(B, T, 128)``
        (dequantised, zero past ``num_frames``), ``num_frames`` ``(B,)``, ``labels``
        ``(B, C)``, ``video_id``."""
        from audiorep.data.quantization import dequantize

        nf = self.num_frames[index]
        t = max(int(nf.max()), 1) if len(index) else 1
        q = self.quantized[index, :t]
        mask = torch.arange(t)[None, :] < nf[:, None]
        emb = dequantize(q) * mask[..., None].to(torch.float32)
        return {
            "embeddings": emb,
            "num_frames": nf,
            "labels": self.labels(index),
            "video_id": [self.video_ids[i] for i in index.tolist()],
        }

    def loader(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        balanced: bool = False,
        progress: bool = False,
        desc: str = "",
    ) -> BatchLoader:
        """A re-iterable loader (one pass per ``iter``); see :class:`BatchLoader`."""
        return BatchLoader(
            self, batch_size, shuffle=shuffle, balanced=balanced, progress=progress, desc=desc
        )

    def label_counts(self) -> torch.Tensor:
        """Positive segments per class, int64 ``(num_classes,)``."""
        return torch.bincount(self.label_indices, minlength=self.num_classes)

    def label_lists(self) -> list[np.ndarray]:
        """Every segment's class indices (int64 arrays, as stored)."""
        off, idx = self.label_offsets.numpy(), self.label_indices.numpy()
        return [idx[off[i] : off[i + 1]] for i in range(len(self))]

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> PackedAudioSet:
        """A new split holding the segments ``index`` (in that order); arrays are copied."""
        index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise IndexError(f"subset index out of range for {len(self)} segments")
        starts, ends = self.label_offsets[index], self.label_offsets[index + 1]
        counts = ends - starts
        within = torch.arange(int(counts.sum())) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        labels = self.label_indices[torch.repeat_interleave(starts, counts) + within]
        offsets = torch.zeros(len(index) + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(counts, 0)
        return PackedAudioSet(
            self.quantized[index].clone(),
            self.num_frames[index].clone(),
            labels.clone(),
            offsets,
            [self.video_ids[i] for i in index.tolist()],
            np.asarray(self.start_times)[index.numpy()],
            self.num_classes,
            self.source,
        )


def balanced_order(data: PackedAudioSet, length: int | None = None) -> torch.Tensor:
    """A class-balanced epoch order (int64 ``(length,)``, default ``len(data)``): classes are
    visited in rounds, each round in a fresh random class order, and each visit takes the next
    segment of that class's shuffled queue (reshuffled when used up) - every class is drawn
    equally often whatever its frequency (the sampler PANNs use on the unbalanced AudioSet).
    Draws from the GLOBAL torch RNG, like the shuffled loader, so resuming stays exact.
    Classes without segments are skipped."""
    n = len(data) if length is None else int(length)
    off, idx = data.label_offsets, data.label_indices
    owners = torch.repeat_interleave(torch.arange(len(data)), off[1:] - off[:-1])
    members = [owners[idx == c] for c in range(data.num_classes)]
    present = [c for c in range(data.num_classes) if members[c].numel()]
    if not present:
        raise ValueError(f"{data.source or 'data'}: no labelled segment to balance over")
    queues = [members[c][torch.randperm(members[c].numel())] for c in range(data.num_classes)]
    used = [0] * data.num_classes
    out: list[int] = []
    while len(out) < n:
        for k in torch.randperm(len(present)).tolist():
            c = present[k]
            if used[c] == queues[c].numel():
                queues[c], used[c] = members[c][torch.randperm(members[c].numel())], 0
            out.append(int(queues[c][used[c]]))
            used[c] += 1
            if len(out) == n:
                break
    return torch.tensor(out, dtype=torch.int64)


def _identity(x: Any) -> Any:
    return x


class BatchLoader:
    """Batches of a :class:`PackedAudioSet`; every ``iter`` is one pass (epoch).

    ``shuffle=True`` draws the order with ``torch.randperm`` from the GLOBAL torch RNG, so the
    order of an epoch depends only on the RNG state at its start - what
    :func:`~audiorep.heads.training.train_classifier` saves and restores for exact resume. The
    last batch may be smaller (as train.py's queue at the end of the data).
    ``balanced=True``: every epoch is :func:`balanced_order` (as many draws as segments).
    """

    def __init__(
        self,
        data: PackedAudioSet,
        batch_size: int,
        *,
        shuffle: bool = False,
        balanced: bool = False,
        progress: bool = False,
        desc: str = "",
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.data = data
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.balanced = balanced
        self.progress = progress
        self.desc = desc

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        n = len(self.data)
        if self.balanced:
            order = balanced_order(self.data, n)
        else:
            order = torch.randperm(n) if self.shuffle else torch.arange(n)
        starts = range(0, n, self.batch_size)
        for s in progress_bar(starts, enabled=self.progress, desc=self.desc, unit=" batches",
                           leave=False):  # fmt: skip
            yield self.data.batch(order[s : s + self.batch_size])


def stream_loader(
    source: Sequence[str | os.PathLike], batch_size: int, shuffle: bool, workers: int
) -> Iterable[dict[str, Any]]:
    """A torch DataLoader over :class:`~audiorep.data.AudioSetDataset` (random access through
    the index cache): nothing is held in memory. Its shuffling also draws from the global
    torch RNG, so resuming stays exact (workers are re-created each epoch)."""
    from functools import partial

    from torch.utils.data import DataLoader

    from audiorep.data import AudioSetDataset, collate_audioset

    ds = AudioSetDataset(list(source), max_frames=WINDOW_FRAMES)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        collate_fn=partial(collate_audioset, pad_to=None),
    )


__all__ = [
    "WINDOW_FRAMES",
    "BatchLoader",
    "PackedAudioSet",
    "balanced_order",
    "progress_bar",
    "stream_loader",
]
