"""The local extraction engine: decode in worker processes, embed in packed model batches.

Data flow::

    DataLoader workers (one file at a time each, ``ClipExamples`` chunks)
        -> main process: queue of example rows from any files
        -> model batches of exactly ``batch_size`` rows (the last one shorter)
        -> rows handed back to their files; a file is complete when its last chunk is embedded
        -> ``on_result(FileResult)`` (in completion order; writers restore input order)

Memory is bounded by the workers' prefetch (``2 x workers`` chunks of ``chunk_seconds``) plus
one model batch, whatever the files' lengths.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from audiorep.audio import AudioLoadError, load
from audiorep.extract.inputs import InputItem
from audiorep.extract.stream import ClipExamples

#: Exceptions that mark one input as failed without stopping the run.
FILE_ERRORS = (AudioLoadError, ValueError, RuntimeError, OSError, EOFError)


@dataclass
class FileResult:
    """One input's outcome.

    Attributes:
        index: position in the run's input list.
        item: the input.
        embeddings: float32 ``(N, D)`` (``None`` on failure).
        timestamps: float64 ``(N,)`` start of each embedding's window, seconds.
        ends: float64 ``(N,)`` end of each window, seconds.
        duration: seconds of audio.
        padded: the clip was shorter than one example and zero-padded (``pad_short``).
        fusion: float32 ``(N, D)`` per-example fusion features (with a fusion extractor).
        fusion_clip: float32 ``(D,)`` max + mean over all frames of the clip.
        error: why it failed.
    """

    index: int
    item: InputItem
    embeddings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    ends: np.ndarray | None = None
    duration: float = 0.0
    padded: bool = False
    fusion: np.ndarray | None = None
    fusion_clip: np.ndarray | None = None
    error: str | None = None


@dataclass
class RunSummary:
    files: int = 0
    written: int = 0
    skipped: int = 0
    audio_seconds: float = 0.0
    examples: int = 0
    wall_seconds: float = 0.0
    windows: str = "0.96 s each, hop 0.96 s"
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: inputs written with no embeddings: shorter than one window (see ``pad_short``)
    empty: list[str] = field(default_factory=list)

    def record(self, result: FileResult) -> None:
        """Count one finished input (a failure, or its written embeddings)."""
        if result.error is not None:
            self.failures.append((str(result.item.path), result.error))
            return
        self.written += 1
        self.audio_seconds += result.duration
        self.examples += int(result.embeddings.shape[0])
        if result.embeddings.shape[0] == 0:
            self.empty.append(str(result.item.path))

    def lines(self) -> list[str]:
        wall = max(self.wall_seconds, 1e-9)
        out = [
            f"files:      {self.written} embedded of {self.files}"
            + (f" ({self.skipped} already done, skipped)" if self.skipped else ""),
            f"audio:      {self.audio_seconds:.1f} s ({self.audio_seconds / 3600:.3f} h)",
            f"embeddings: {self.examples} ({self.windows})",
            f"wall time:  {self.wall_seconds:.2f} s ({self.audio_seconds / wall:.1f} s of audio "
            f"per second, {self.written / wall:.2f} files/s)",
            f"failures:   {len(self.failures)}",
        ]
        if self.empty:
            out.insert(
                1,
                f"too short:  {len(self.empty)} file(s) shorter than one window gave no "
                "embeddings (--pad-short pads them to one): "
                + ", ".join(self.empty[:3])
                + (" ..." if len(self.empty) > 3 else ""),
            )
        out += [f"  FAILED {reason}" for _, reason in self.failures]
        return out


class _ChunkSource(IterableDataset):
    """Yields ``(kind, index, payload)``: ``chunk`` examples, then ``done`` or ``error``."""

    def __init__(self, items, windowing, dtype, chunk_seconds, pad_short) -> None:
        super().__init__()
        self.items = list(items)
        self.windowing = windowing
        self.dtype = dtype
        self.chunk_seconds = chunk_seconds
        self.pad_short = pad_short

    def __iter__(self):
        info = get_worker_info()
        mine = self.items if info is None else self.items[info.id :: info.num_workers]
        for index, item in mine:
            clip = ClipExamples(
                item.path, self.windowing, self.dtype, self.chunk_seconds, self.pad_short
            )
            try:
                for k, chunk in enumerate(clip):
                    if k == 0:  # the header is read: how many examples the file will give
                        yield "expect", index, clip.expected_examples
                    yield "chunk", index, chunk
            except FILE_ERRORS as exc:
                yield (
                    "error",
                    index,
                    str(exc) if str(item.path) in str(exc) else (f"{item.path}: {exc}"),
                )
                continue
            yield "done", index, (clip.duration, clip.padded)


class _WholeClipSource(IterableDataset):
    """For backbones that embed whole clips (CNN14, AST): yields decoded waveforms."""

    def __init__(self, items) -> None:
        super().__init__()
        self.items = list(items)

    def __iter__(self):
        info = get_worker_info()
        mine = self.items if info is None else self.items[info.id :: info.num_workers]
        for index, item in mine:
            try:
                waveform, sr = load(item.path)
            except FILE_ERRORS as exc:
                yield "error", index, str(exc)
                continue
            yield "clip", index, (waveform, sr)


def window_times(bundle, n: int, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (seconds) of each of a clip's ``n`` embeddings."""
    starts = bundle.unit_starts(n)
    return starts, starts + bundle.unit_seconds(duration)


def embed_fixed_batches(bundle, x: torch.Tensor, batch_size: int, fusion=None):
    """Embed ``(n, 96, 64)`` examples in batches of exactly ``batch_size`` rows.

    The last batch is zero-padded: CPU kernels pick different code paths for different batch
    sizes (results differ by ~1e-5), but at a fixed size each row's result does not depend on
    the other rows. So a file's embeddings are bit-identical however the files were packed,
    which is what makes interrupted-and-resumed runs equal uninterrupted ones.

    Returns ``(embeddings (n, 128), fusion frames (n, D, T) or None)`` on the CPU.
    """
    n = x.shape[0]
    embs, frames = [], []
    for i in range(0, n, batch_size):
        part = x[i : i + batch_size]
        m = part.shape[0]
        if m < batch_size:
            part = torch.cat([part, part.new_zeros((batch_size - m, *part.shape[1:]))])
        if fusion is None:
            embs.append(bundle.embed_examples(part, batch_size=batch_size)[:m].cpu())
        else:
            e, f = bundle.embed_examples_with_fusion(part, fusion, batch_size=batch_size)
            embs.append(e[:m].cpu())
            frames.append(f[:m].cpu())
    if not embs:
        return x.new_zeros((0, bundle.embedding_size)), None
    return torch.cat(embs), (torch.cat(frames) if frames else None)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the main process's model owns the cores


def _identity(x):
    return x


class _FileState:
    __slots__ = (
        "parts", "fusion_parts", "fmax", "fsum", "frames", "pending", "done", "info", "expected"
    )  # fmt: skip

    def __init__(self) -> None:
        self.parts: list[torch.Tensor] = []
        self.fusion_parts: list[torch.Tensor] = []
        self.fmax: torch.Tensor | None = None
        self.fsum: torch.Tensor | None = None
        self.frames = 0
        self.pending = 0  # rows queued but not yet embedded
        self.done = False
        self.info: tuple[float, bool] = (0.0, False)
        self.expected = 0  # examples the file will give (0 = not known yet)


def embed_corpus(
    bundle,
    items: Sequence[InputItem],
    on_result: Callable[[FileResult], None],
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 64,
    workers: int = 0,
    chunk_seconds: float = 20.0,
    pad_short: bool = False,
    fusion=None,
    progress: bool = True,
) -> RunSummary:
    """Embed ``items`` (those at ``indices``, default all) and pass each result to
    ``on_result`` as soon as the file is complete.

    Args:
        bundle: a VGGish bundle (its windowing, frontend dtype, device and precision apply).
        items: every input of the run (indices refer to this list).
        on_result: called once per processed input, success or failure.
        batch_size: rows per model forward pass.
        workers: DataLoader worker processes decoding/resampling/framing (0 = in-process).
        chunk_seconds: audio per decoded chunk (bounds memory on long files).
        pad_short: zero-pad clips shorter than one example (else they give 0 embeddings).
        fusion: a :class:`~audiorep.features.fusion.GeneralPurposeVGGish` to also compute
            per-example and clip-level fusion features; for CNN14/AST bundles, a list of
            layers for their clip-level ``bundle.fusion``.
    """
    todo = list(range(len(items))) if indices is None else list(indices)
    summary = RunSummary(files=len(items), windows=bundle.describe_units())
    summary.skipped = len(items) - len(todo)
    start = time.perf_counter()
    clip_fusion_layers = None
    whole_clips = not bundle.streams_windows  # CNN14 / AST: every clip whole
    if whole_clips:
        clip_fusion_layers, fusion = fusion, None  # a list of layers for bundle.fusion
        source = _WholeClipSource([(i, items[i]) for i in todo])
    else:
        source = _ChunkSource(
            [(i, items[i]) for i in todo],
            bundle.windowing,
            bundle.frontend.dtype,
            chunk_seconds,
            pad_short,
        )
    loader = (
        DataLoader(
            source,
            batch_size=None,
            num_workers=workers,
            worker_init_fn=_worker_init,
            collate_fn=_identity,
            prefetch_factor=2,
        )
        if workers > 0
        else source
    )
    states: dict[int, _FileState] = {}
    queue: list[tuple[int, torch.Tensor]] = []
    queued = 0
    # Files are the unit, advanced by fractions as a file's examples are embedded, so one
    # long file moves the bar too (not 0/1 until it ends).
    bar = tqdm(
        total=len(todo),
        unit="file",
        disable=not progress,
        dynamic_ncols=True,
        smoothing=0.05,
        bar_format="{l_bar}{bar}| {n:.2f}/{total_fmt} files [{elapsed}<{remaining}{postfix}]",
    )
    advanced: dict[int, float] = {}  # fraction of each open file already shown

    def advance(index: int, fraction: float) -> None:
        step = min(fraction, 1.0 - advanced.get(index, 0.0))
        if step > 0:
            advanced[index] = advanced.get(index, 0.0) + step
            bar.update(step)

    def finish(index: int, result: FileResult) -> None:
        states.pop(index, None)
        summary.record(result)
        on_result(result)
        bar.update(1.0 - advanced.pop(index, 0.0))
        wall = max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(
            audio_h=f"{summary.audio_seconds / 3600:.3f}",
            audio_h_per_s=f"{summary.audio_seconds / 3600 / wall:.4f}",
            failed=len(summary.failures),
        )

    def complete(index: int) -> None:
        st = states[index]
        duration, padded = st.info
        emb = torch.cat(st.parts) if st.parts else torch.zeros((0, bundle.embedding_size))
        starts, ends = window_times(bundle, emb.shape[0], duration)
        result = FileResult(index, items[index], emb.numpy(), starts, ends, duration, padded)
        if fusion is not None:
            dim = fusion.dim
            result.fusion = (
                torch.cat(st.fusion_parts).numpy()
                if st.fusion_parts
                else np.zeros((0, dim), np.float32)
            )
            if st.frames:
                result.fusion_clip = (st.fmax + st.fsum / st.frames).float().numpy()
        finish(index, result)

    def run_batch(rows: list[tuple[int, torch.Tensor]]) -> None:
        x = torch.cat([ex for _, ex in rows])
        emb, frames = embed_fixed_batches(bundle, x, batch_size, fusion)
        at = 0
        for index, ex in rows:
            n = ex.shape[0]
            st = states.get(index)
            if st is not None:  # None: the file failed meanwhile, drop its rows
                if st.expected:
                    advance(index, 0.999 * n / st.expected)  # the last 0.1% on completion
                st.parts.append(emb[at : at + n])
                if frames is not None:
                    f = frames[at : at + n]  # (n, D, T)
                    st.fusion_parts.append(f.max(dim=-1).values + f.mean(dim=-1))
                    fmax = f.amax(dim=(0, 2))
                    st.fmax = fmax if st.fmax is None else torch.maximum(st.fmax, fmax)
                    fsum = f.to(torch.float64).sum(dim=(0, 2))
                    st.fsum = fsum if st.fsum is None else st.fsum + fsum
                    st.frames += f.shape[0] * f.shape[2]
                st.pending -= n
                if st.done and st.pending == 0:
                    complete(index)
            at += n

    def drain(force: bool) -> None:
        nonlocal queue, queued
        while queued >= batch_size or (force and queued):
            take, rows = 0, []
            while queue and take < batch_size:
                index, ex = queue[0]
                room = batch_size - take
                if ex.shape[0] <= room:
                    rows.append(queue.pop(0))
                    take += ex.shape[0]
                else:  # split a chunk across two batches
                    rows.append((index, ex[:room]))
                    queue[0] = (index, ex[room:])
                    take += room
            queued -= take
            run_batch(rows)

    with torch.inference_mode():
        for kind, index, payload in loader:
            st = states.setdefault(index, _FileState())
            if kind == "chunk":
                if payload.shape[0]:
                    queue.append((index, payload))
                    queued += payload.shape[0]
                    st.pending += payload.shape[0]
                    drain(force=False)
            elif kind == "expect":
                st.expected = int(payload)
            elif kind == "clip":
                waveform, sr = payload
                try:
                    emb = bundle.embed(waveform, sr).float().cpu().numpy()
                except FILE_ERRORS as exc:
                    finish(
                        index, FileResult(index, items[index], error=f"{items[index].path}: {exc}")
                    )
                    continue
                duration = waveform.shape[-1] / sr
                starts, ends = window_times(bundle, emb.shape[0], duration)
                result = FileResult(index, items[index], emb, starts, ends, duration)
                if clip_fusion_layers:
                    clip = bundle.fusion(waveform, sr, clip_fusion_layers)
                    result.fusion_clip = clip.float().cpu().numpy()
                finish(index, result)
            elif kind == "error":
                queue = [(i, ex) for i, ex in queue if i != index]
                queued = sum(ex.shape[0] for _, ex in queue)
                finish(index, FileResult(index, items[index], error=payload))
            else:
                st.done, st.info = True, payload
                if st.pending == 0:
                    complete(index)
        drain(force=True)
    bar.close()
    summary.wall_seconds = time.perf_counter() - start
    return summary


__all__ = [
    "FILE_ERRORS",
    "FileResult",
    "RunSummary",
    "embed_corpus",
    "embed_fixed_batches",
    "window_times",
]
