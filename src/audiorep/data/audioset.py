"""AudioSet's released VGGish features (``audioset_v1_embeddings``) as PyTorch datasets.

Each record of the release is one <= 10 s segment, a ``tf.train.SequenceExample`` with
context ``video_id`` (bytes), ``start_time_seconds`` / ``end_time_seconds`` (float32),
``labels`` (int64 class indices, rows of :func:`audioset_class_names`) and the feature list
``audio_embedding``: one 128-byte string (uint8 PCA-quantised VGGish embedding) per second.

Items are dicts:

* ``video_id``: str, the 11-character YouTube id
* ``start_time_seconds``, ``end_time_seconds``: float (the stored float32 value, exactly)
* ``labels``: float32 ``(num_classes,)`` multi-hot (a record without ``labels`` is all zeros)
* ``num_frames``: int, ``T`` (1..10 in the release; 0 is accepted)
* ``embeddings``: float32 ``(T, 128)``, dequantised exactly like the YouTube-8M readers,
  ``q * fl32(4/255) + fl32(-1.9921875)`` in float32 (bitwise
  :func:`audiorep.features.dequantize`)
* ``quantized``: uint8 ``(T, 128)``, the stored bytes (only with ``return_quantized=True``)

:func:`collate_audioset` pads a batch to its longest item (zeros after dequantisation, as the
YouTube-8M reader pads) and adds a ``mask``. Class names: :func:`audioset_class_names`
(``class_labels_indices.csv`` ships with audiorep; AudioSet, (c) Google, CC BY 4.0 -- see
``ATTRIBUTION.md`` next to it; cite Gemmeke et al., ICASSP 2017).
"""

from __future__ import annotations

import csv
import io
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Union

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from audiorep.data.example import parse_sequence_example
from audiorep.data.quantization import QUANTIZE_MAX, QUANTIZE_MIN
from audiorep.data.tfrecord import SkippedRegion, TFRecordReader, index_tfrecords, read_record_at

PathLike = Union[str, os.PathLike]

NUM_CLASSES = 527
EMBEDDING_DIM = 128
MAX_FRAMES = 10  # the longest AudioSet segment, in 1 s frames
FEATURE_NAME = "audio_embedding"


# --------------------------------------------------------------------------------- classes


@lru_cache(maxsize=1)
def _class_table() -> tuple[tuple[int, str, str], ...]:
    from importlib.resources import files

    text = files("audiorep.data").joinpath("class_labels_indices.csv").read_text("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if rows[0] != ["index", "mid", "display_name"]:
        raise RuntimeError(f"unexpected class_labels_indices.csv header {rows[0]}")
    table = tuple((int(i), mid, name) for i, mid, name in rows[1:])
    assert [r[0] for r in table] == list(range(len(table)))
    return table


def audioset_class_names() -> list[str]:
    """The 527 AudioSet display names, by class index (e.g. ``[0] == "Speech"``)."""
    return [name for _, _, name in _class_table()]


def audioset_class_mids() -> list[str]:
    """The 527 AudioSet ontology ids (MIDs), by class index (e.g. ``[0] == "/m/09x0r"``)."""
    return [mid for _, mid, _ in _class_table()]


# ---------------------------------------------------------------------------------- records


@dataclass
class AudioSetRecord:
    """One decoded segment, numpy only (no dequantisation yet).

    ``labels``: int64 ``(L,)`` class indices in stored order (``None`` when the record has
    no ``labels`` key); ``quantized``: uint8 ``(T, 128)``.
    """

    video_id: str
    start_time_seconds: float
    end_time_seconds: float
    labels: np.ndarray | None
    quantized: np.ndarray


def _scalar(context: dict, key: str, kind: type) -> Any:
    value = context.get(key)
    if value is None or len(value) != 1:
        raise ValueError(f"context feature {key!r} must hold exactly one value, got {value!r}")
    if kind is bytes:
        if not isinstance(value, list):
            raise ValueError(f"context feature {key!r} must be a bytes_list")
        return value[0].decode("utf-8")
    # .dtype.kind: comparing dtype objects costs ~1 us each, a noticeable part of an item
    if not (isinstance(value, np.ndarray) and value.dtype.kind == "f"):
        raise ValueError(f"context feature {key!r} must be a float_list")
    return value.item()


def decode_audioset_record(
    payload: bytes, *, feature_name: str = FEATURE_NAME, feature_size: int = EMBEDDING_DIM
) -> AudioSetRecord:
    """Decode one serialized AudioSet ``SequenceExample`` (see the module docstring).

    Raises:
        ValueError: a missing or malformed field (the message names it).
    """
    ex = parse_sequence_example(payload)
    ctx = ex.context
    labels = ctx.get("labels")
    if labels is not None and not (isinstance(labels, np.ndarray) and labels.dtype.kind == "i"):
        raise ValueError("context feature 'labels' must be an int64_list")
    frames = ex.feature_lists.get(feature_name)
    if frames is None:
        raise ValueError(f"no feature list {feature_name!r} (has {list(ex.feature_lists)})")
    try:  # fast path: every frame a bytes_list with exactly one value of the right size
        values = [v for (v,) in frames]
        ok = all(type(v) is bytes and len(v) == feature_size for v in values)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        for t, f in enumerate(frames):
            if not (isinstance(f, list) and len(f) == 1 and len(f[0]) == feature_size):
                raise ValueError(
                    f"frame {t} of {feature_name!r} is not one {feature_size}-byte string: "
                    f"{f!r:.80}"
                )
    # bytearray: one copy that numpy (and torch.from_numpy) may write to
    joined = bytearray(b"".join(values))
    quantized = np.frombuffer(joined, dtype=np.uint8).reshape(len(frames), feature_size)
    return AudioSetRecord(
        video_id=_scalar(ctx, "video_id", bytes),
        start_time_seconds=_scalar(ctx, "start_time_seconds", float),
        end_time_seconds=_scalar(ctx, "end_time_seconds", float),
        labels=labels,
        quantized=quantized,
    )


def multi_hot(labels: np.ndarray | None, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """float32 ``(num_classes,)`` with 1 at every index in ``labels`` (duplicates allowed)."""
    out = np.zeros(num_classes, dtype=np.float32)  # numpy: a third of torch's per-call cost
    if labels is not None and labels.size:
        idx = labels.tolist()  # a handful of labels: Python min/max beat numpy's reductions
        if min(idx) < 0 or max(idx) >= num_classes:
            raise ValueError(f"label indices {idx} outside [0, {num_classes})")
        out[idx] = 1.0
    return torch.from_numpy(out)


# audiorep.features.dequantize's constants as float32: torch casts its Python-float scalars
# to the tensor's dtype, so ``q * _SCALE + _BIAS`` in numpy float32 is bitwise the same
# (tested over all 256 values); numpy has ~4x less per-call overhead on (10, 128) frames.
_SCALE = np.float32((QUANTIZE_MAX - QUANTIZE_MIN) / 255.0)
_BIAS = np.float32((QUANTIZE_MAX - QUANTIZE_MIN) / 512.0 + QUANTIZE_MIN)


def dequantize_frames(quantized: np.ndarray) -> torch.Tensor:
    """YouTube-8M dequantisation of uint8 ``(T, 128)`` frames -> float32 ``(T, 128)``.

    Bitwise equal to :func:`audiorep.features.dequantize` (and to the YouTube-8M reader,
    ``q * fl32(4/255) + fl32(-1.9921875)``), computed in numpy for speed.
    """
    return torch.from_numpy(quantized.astype(np.float32) * _SCALE + _BIAS)


def _record_to_item(
    rec: AudioSetRecord,
    *,
    num_classes: int,
    max_frames: int | None,
    return_embeddings: bool,
    return_quantized: bool,
) -> dict[str, Any]:
    q = rec.quantized if max_frames is None else rec.quantized[:max_frames]
    item: dict[str, Any] = {
        "video_id": rec.video_id,
        "start_time_seconds": rec.start_time_seconds,
        "end_time_seconds": rec.end_time_seconds,
        "labels": multi_hot(rec.labels, num_classes),
        "num_frames": int(q.shape[0]),
    }
    if return_embeddings:
        item["embeddings"] = dequantize_frames(q)
    if return_quantized:
        item["quantized"] = torch.from_numpy(q)
    return item


# ---------------------------------------------------------------------------------- shards


def find_shards(source: PathLike | Iterable[PathLike]) -> list[Path]:
    """Shard files of ``source``: a ``.tfrecord`` file, a folder (searched recursively for
    ``*.tfrecord``, sorted by relative path) or a sequence of files and folders (in order)."""
    items = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    shards: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            # os.walk rather than Path.rglob: several times faster on 4k-shard folders
            root = os.fspath(p)
            found = []
            for dirpath, _, filenames in os.walk(root):
                rel = os.path.relpath(dirpath, root)
                for f in filenames:
                    if f.endswith(".tfrecord"):
                        key = f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
                        found.append((key, os.path.join(dirpath, f)))
            if not found:
                raise FileNotFoundError(f"no *.tfrecord files under {p}")
            shards.extend(Path(full) for _, full in sorted(found))
        elif p.is_file():
            shards.append(p)
        else:
            raise FileNotFoundError(f"no such TFRecord file or folder: {p}")
    return shards


class AudioSetDataset(Dataset):
    """Map-style dataset over AudioSet feature shards (random access through an index).

    Args:
        source: a folder (recursive ``*.tfrecord``), a shard, or a list of them.
        num_classes: length of the multi-hot ``labels`` (527 for AudioSet).
        max_frames: keep at most this many frames per segment (YouTube-8M's
            ``max_frames``); ``None`` keeps all (AudioSet has <= 10).
        return_embeddings: include dequantised float32 ``embeddings`` ``(T, 128)``.
        return_quantized: include the stored uint8 ``quantized`` ``(T, 128)``.
        verify_crc: check both CRCs of every record read.
        skip_bad: index only records that verify and step over damaged ones with a warning
            (default: a damaged shard raises :class:`TFRecordError` naming file and offset).
        cache_dir, use_index_cache: see :func:`audiorep.data.tfrecord.index_tfrecords`; the
            record offsets of every shard are cached (keyed by path, size and mtime) so that
            reopening thousands of shards only ``stat``\\ s them.

    ``len(ds)`` is the number of records; ``ds[i]`` an item dict (module docstring).
    """

    def __init__(
        self,
        source: PathLike | Iterable[PathLike],
        *,
        num_classes: int = NUM_CLASSES,
        max_frames: int | None = None,
        return_embeddings: bool = True,
        return_quantized: bool = False,
        verify_crc: bool = True,
        skip_bad: bool = False,
        cache_dir: PathLike | None = None,
        use_index_cache: bool = True,
    ):
        self.shards = find_shards(source)
        self.num_classes = num_classes
        self.max_frames = max_frames
        self.return_embeddings = return_embeddings
        self.return_quantized = return_quantized
        self.verify_crc = verify_crc
        self.index = index_tfrecords(
            self.shards, cache_dir=cache_dir, use_cache=use_index_cache, skip_bad=skip_bad
        )
        self._local = threading.local()  # .open = (pid, shard, file): the last shard read

    def __len__(self) -> int:
        return len(self.index)

    def location(self, i: int) -> tuple[Path, int]:
        """``(shard path, header byte offset)`` of record ``i``."""
        return self.index.paths[int(self.index.shard[i])], int(self.index.offsets[i])

    def raw(self, i: int) -> bytes:
        """The serialized ``SequenceExample`` of record ``i``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} out of range for {len(self)} records")
        i %= len(self)
        shard = int(self.index.shard[i])
        path = self.index.paths[shard]
        return read_record_at(
            path,
            int(self.index.offsets[i]),
            int(self.index.lengths[i]),
            verify_crc=self.verify_crc,
            file=self._file(shard),
        )

    def _file(self, shard: int) -> BinaryIO:
        # Keep the last shard open (per thread): consecutive indices are usually in the same
        # shard. The pid check keeps a forked DataLoader worker off its parent's handle.
        pid = os.getpid()
        cur = getattr(self._local, "open", None)
        if cur is None or cur[0] != pid or cur[1] != shard:
            if cur is not None and cur[0] == pid:
                cur[2].close()
            cur = self._local.open = (pid, shard, open(self.index.paths[shard], "rb"))
        return cur[2]

    def record(self, i: int) -> AudioSetRecord:
        """Record ``i`` decoded but not dequantised."""
        payload = self.raw(i)
        try:
            return decode_audioset_record(payload)
        except ValueError as exc:
            raise self._located(i, exc) from None

    def _located(self, i: int, exc: Exception) -> ValueError:
        path, offset = self.location(i % len(self))
        return ValueError(f"{path}: record at byte {offset}: {exc}")

    def __getitem__(self, i: int) -> dict[str, Any]:
        rec = self.record(i)
        try:
            return _record_to_item(
                rec,
                num_classes=self.num_classes,
                max_frames=self.max_frames,
                return_embeddings=self.return_embeddings,
                return_quantized=self.return_quantized,
            )
        except ValueError as exc:  # e.g. label indices outside [0, num_classes)
            raise self._located(i, exc) from None

    def close(self) -> None:
        """Close this thread's cached file handle (reopened on demand)."""
        cur = getattr(self._local, "open", None)
        if cur is not None:
            if cur[0] == os.getpid():
                cur[2].close()
            self._local.open = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_local"]  # open files do not pickle (spawned DataLoader workers)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()


class AudioSetIterableDataset(IterableDataset):
    """Streaming dataset over AudioSet shards, read sequentially (no index needed).

    Shards are split across ``world_size`` ranks (``shards[rank::world_size]``) and then
    across DataLoader workers (``[worker_id::num_workers]``), so every record is read once
    per epoch. With ``shuffle=True`` the shard order and the record order inside each shard
    are permuted with ``seed + epoch`` (call :meth:`set_epoch` every epoch); all workers
    draw the same shard permutation before splitting it.

    Other args as :class:`AudioSetDataset`. With ``skip_bad=True`` damaged regions are
    stepped over with a :class:`~audiorep.data.tfrecord.TFRecordWarning` and (in the
    process that iterates) collected in :attr:`skipped`.
    """

    def __init__(
        self,
        source: PathLike | Iterable[PathLike],
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_classes: int = NUM_CLASSES,
        max_frames: int | None = None,
        return_embeddings: bool = True,
        return_quantized: bool = False,
        verify_crc: bool = True,
        skip_bad: bool = False,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.shards = find_shards(source)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.rank = rank
        self.world_size = world_size
        self.num_classes = num_classes
        self.max_frames = max_frames
        self.return_embeddings = return_embeddings
        self.return_quantized = return_quantized
        self.verify_crc = verify_crc
        self.skip_bad = skip_bad
        self.skipped: list[SkippedRegion] = []

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffling (``seed + epoch``)."""
        self.epoch = int(epoch)

    def shards_for(self, worker_id: int = 0, num_workers: int = 1) -> list[Path]:
        """The shards one worker of this rank reads this epoch, in reading order."""
        order = list(range(len(self.shards)))
        if self.shuffle:
            order = np.random.RandomState(self.seed + self.epoch).permutation(order).tolist()
        mine = order[self.rank :: self.world_size][worker_id::num_workers]
        return [self.shards[i] for i in mine]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.RandomState([self.seed + self.epoch, 1 + wid])
        self.skipped = []
        for shard in self.shards_for(wid, nw):
            reader = TFRecordReader(shard, verify_crc=self.verify_crc, skip_bad=self.skip_bad)
            records: Iterable[tuple[str, int, bytes]] = reader.iter_with_offsets()
            if self.shuffle:  # shards are small (~20 KiB in the release): permute in memory
                records = list(records)
                records = [records[j] for j in rng.permutation(len(records))]
            for path, offset, payload in records:
                try:
                    yield _record_to_item(
                        decode_audioset_record(payload),
                        num_classes=self.num_classes,
                        max_frames=self.max_frames,
                        return_embeddings=self.return_embeddings,
                        return_quantized=self.return_quantized,
                    )
                except ValueError as exc:
                    raise ValueError(f"{path}: record at byte {offset}: {exc}") from None
            self.skipped.extend(reader.skipped)


# --------------------------------------------------------------------------------- collate


def collate_audioset(batch: Sequence[dict[str, Any]], pad_to: int | None = None) -> dict:
    """Stack items of the AudioSet datasets into a batch, zero-padding the frames.

    Args:
        batch: item dicts (all with the same keys).
        pad_to: frames per item in the output (e.g. 10 for fixed-size AudioSet batches);
            default: the longest item of the batch. An item longer than ``pad_to`` raises
            (use the datasets' ``max_frames`` to truncate).

    Returns:
        ``embeddings`` float32 ``(B, T, 128)`` and/or ``quantized`` uint8 ``(B, T, 128)``,
        zero past each item's frames; ``mask`` bool ``(B, T)`` (True on real frames);
        ``num_frames`` int64 ``(B,)``; ``labels`` float32 ``(B, C)``; ``video_id`` list of
        str; ``start_time_seconds`` / ``end_time_seconds`` float64 ``(B,)``. Items with
        ``audio`` (:class:`AudioSetWithRecordings`) also give ``audio`` ``(B, [channels,]
        samples)`` zero-padded on the last axis, ``audio_lengths`` int64 ``(B,)`` (samples),
        ``sample_rate`` int64 ``(B,)`` and ``audio_path`` list of str.
    """
    if not batch:
        raise ValueError("empty batch")
    num_frames = torch.tensor([int(b["num_frames"]) for b in batch], dtype=torch.int64)
    longest = int(num_frames.max())
    t = longest if pad_to is None else int(pad_to)
    if longest > t:
        raise ValueError(f"an item has {longest} frames, more than pad_to={t}")
    out: dict[str, Any] = {
        "video_id": [b["video_id"] for b in batch],
        "start_time_seconds": torch.tensor(
            [b["start_time_seconds"] for b in batch], dtype=torch.float64
        ),
        "end_time_seconds": torch.tensor(
            [b["end_time_seconds"] for b in batch], dtype=torch.float64
        ),
        "labels": torch.stack([b["labels"] for b in batch]),
        "num_frames": num_frames,
        "mask": torch.arange(t)[None, :] < num_frames[:, None],
    }
    for key in ("embeddings", "quantized"):
        if key in batch[0]:
            first = batch[0][key]
            padded = first.new_zeros((len(batch), t, first.shape[-1]))
            for i, b in enumerate(batch):
                padded[i, : b[key].shape[0]] = b[key]
            out[key] = padded
    if "audio" in batch[0]:
        lengths = torch.tensor([b["audio"].shape[-1] for b in batch], dtype=torch.int64)
        first = batch[0]["audio"]
        audio = first.new_zeros((len(batch), *first.shape[:-1], int(lengths.max())))
        for i, b in enumerate(batch):
            audio[i, ..., : b["audio"].shape[-1]] = b["audio"]
        out["audio"] = audio
        out["audio_lengths"] = lengths
        out["sample_rate"] = torch.tensor([b["sample_rate"] for b in batch], dtype=torch.int64)
        out["audio_path"] = [b["audio_path"] for b in batch]
    return out


# ------------------------------------------------------------------------------ recordings


def recording_stems(video_id: str, start_time_seconds: float) -> tuple[str, str, str]:
    """File stems tried, in order, for a segment: ``<id>_<start_ms>``, ``<id>``, ``Y<id>``."""
    start_ms = int(round(start_time_seconds * 1000))
    return f"{video_id}_{start_ms}", video_id, f"Y{video_id}"


class AudioSetWithRecordings(Dataset):
    """AudioSet segments paired with the user's own recordings of them.

    Recordings are found (recursively) under ``recordings`` among files with an audio
    extension (:data:`audiorep.audio.AUDIO_EXTENSIONS`: wav, flac, mp3, ogg, m4a, ...).
    Accepted file names (stems), tried in this order for the segment of YouTube video
    ``<ID>`` (the 11-character ``video_id``) that starts at ``S`` seconds:

    1. ``<ID>_<ms>``, with ``<ms> = round(S * 1000)`` as an integer, e.g.
       ``--4gqARaEJE_30000.wav`` for the segment starting at 30 s: the file holds that
       segment;
    2. ``<ID>``, e.g. ``--4gqARaEJE.flac``;
    3. ``Y<ID>``, e.g. ``Y--4gqARaEJE.wav`` (the naming of some download scripts).

    Forms 2 and 3 hold the segment itself (AudioSet has one segment per video and split),
    or with ``trim=True`` the whole video, which is then cut to ``[start, end)`` seconds.
    When several files share a stem (``x.wav``, ``x.flac``) the first in sorted path order
    is used. Audio is decoded with :func:`audiorep.audio.load`.

    Args:
        features: an :class:`AudioSetDataset` or its ``source`` (then ``dataset_kwargs``
            are passed to it).
        recordings: the folder of audio files.
        output: ``"both"`` (features + audio), ``"audio"`` (no ``embeddings``/``quantized``)
            or ``"embeddings"`` (features only, restricted to segments that have audio).
        mono: average channels: ``audio`` is ``(samples,)``; else ``(channels, samples)``.
        sample_rate: resample to this rate in Hz (:func:`audiorep.resample.resample`);
            ``None`` keeps each file's rate.
        missing: ``"skip"`` (default) leaves out segments without a recording (their ids
            are in :attr:`missing`); ``"error"`` raises ``FileNotFoundError``.
        trim: files named ``<ID>`` / ``Y<ID>`` hold whole videos (see above).

    Items: the :class:`AudioSetDataset` item plus ``audio`` float32, ``sample_rate`` int
    (Hz) and ``audio_path`` str. :func:`collate_audioset` batches them.
    """

    def __init__(
        self,
        features: AudioSetDataset | PathLike | Iterable[PathLike],
        recordings: PathLike,
        *,
        output: str = "both",
        mono: bool = True,
        sample_rate: int | None = None,
        missing: str = "skip",
        trim: bool = False,
        **dataset_kwargs: Any,
    ):
        from audiorep.audio import AUDIO_EXTENSIONS

        if output not in ("both", "audio", "embeddings"):
            raise ValueError(f"output must be 'both', 'audio' or 'embeddings', got {output!r}")
        if missing not in ("skip", "error"):
            raise ValueError(f"missing must be 'skip' or 'error', got {missing!r}")
        if isinstance(features, AudioSetDataset):
            if dataset_kwargs:
                raise TypeError("dataset keyword arguments need a source, not a dataset")
            self.features = features
        else:
            dataset_kwargs.setdefault("return_embeddings", output != "audio")
            self.features = AudioSetDataset(features, **dataset_kwargs)
        root = Path(recordings)
        if not root.is_dir():
            raise FileNotFoundError(f"no such recordings folder: {root}")
        files: dict[str, Path] = {}
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                files.setdefault(p.stem, p)
        self.output = output
        self.mono = mono
        self.sample_rate = sample_rate
        self.trim = trim
        self.pairs: list[tuple[int, Path, bool]] = []  # (feature index, file, is whole video)
        self.missing: list[str] = []
        for i in range(len(self.features)):
            ctx = parse_sequence_example(self.features.raw(i), feature_lists=False).context
            vid = _scalar(ctx, "video_id", bytes)
            start = _scalar(ctx, "start_time_seconds", float)
            for k, stem in enumerate(recording_stems(vid, start)):
                if stem in files:
                    self.pairs.append((i, files[stem], trim and k > 0))
                    break
            else:
                self.missing.append(vid)
        if self.missing and missing == "error":
            raise FileNotFoundError(
                f"{len(self.missing)} of {len(self.features)} segments have no recording in "
                f"{root}, e.g. {self.missing[:5]} (accepted names: ID_<start_ms>.wav, ID.wav, "
                f"YID.wav, any audio extension)"
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from audiorep.audio import load

        index, path, whole_video = self.pairs[i]
        item = self.features[index]
        if self.output == "embeddings":
            return item
        if self.output == "audio":
            item.pop("embeddings", None)
            item.pop("quantized", None)
        audio, sr = load(path, mono=self.mono)
        if whole_video:
            a = int(round(item["start_time_seconds"] * sr))
            b = int(round(item["end_time_seconds"] * sr))
            if a >= audio.shape[-1]:
                raise ValueError(
                    f"{path}: {audio.shape[-1] / sr:.3f} s long, the segment starts at "
                    f"{item['start_time_seconds']} s"
                )
            audio = audio[..., a:b]
        if self.sample_rate is not None and sr != self.sample_rate:
            from audiorep.resample import resample

            audio = resample(audio, sr, self.sample_rate)
            sr = self.sample_rate
        item["audio"] = audio
        item["sample_rate"] = int(sr)
        item["audio_path"] = str(path)
        return item
