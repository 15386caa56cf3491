"""Folders of audio or video files -> SpecVQGAN mel spectrograms in the authors' layout.

For every input ``<folder>/<name>.<ext>`` under the input folder this writes
``<out>/<folder>/melspec_10s_22050hz/<name>_mel.npy``: float32 ``(80, 860)`` in [0, 1], the
authors' dataset mel (:mod:`audiorep.frontends.specvqgan`). A flat folder of clips gives
VGGSound's layout (``<out>/melspec_10s_22050hz/<id>_mel.npy``), a folder of class folders
VAS's (``<out>/<class>/melspec_10s_22050hz/<id>_mel.npy``). ``<name>`` is the file name
without its last extension (the authors cut at the first dot, which would merge ``a.1.wav``
and ``a.2.wav``).

Per file (:func:`load_clip`), in the authors' order: decode (PyAV for containers, via
:mod:`audiorep.audio`); at the file's own rate, loop a clip shorter than 10 s end to end and
keep the first 10 s (their ``ffmpeg -stream_loop`` + ``-t 10``; longer clips are cut);
downmix to mono (channel mean, as ``ffmpeg -ac 1``); resample to 22 050 Hz with
:func:`audiorep.resample.resample`; then :func:`audiorep.frontends.specvqgan.mel_spectrogram`,
batched across files. The authors resample with ffmpeg and store 16-bit WAVs in between, so
mels of resampled or re-encoded files are close to, not bit-identical with, theirs; 22 050 Hz
16-bit WAVs of 10 s reproduce their mels to ~1e-7.

Runs like ``audiorep embed`` (:mod:`audiorep.extract`): a lock on the output folder, outputs
published atomically (a killed run never leaves a half file), ``resume`` skips complete outputs,
failures go to ``<out>/failures.tsv`` and never stop the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from audiorep.audio import AudioLoadError, load
from audiorep.extract.inputs import InputItem, collect_inputs
from audiorep.extract.runner import FAILURES_FILE, write_failures
from audiorep.extract.writers import claim_output_dir, write_npy_atomic
from audiorep.frontends.specvqgan import (
    CLIP_SAMPLES,
    CLIP_SECONDS,
    N_MELS,
    SAMPLE_RATE,
    SPEC_FRAMES,
    mel_spectrogram,
    tile_seconds,
)
from audiorep.resample import resample

#: The authors' folder name for these mels (10 s at 22 050 Hz).
MEL_FOLDER = "melspec_10s_22050hz"
MEL_SUFFIX = "_mel.npy"
#: Exceptions that fail one input without stopping the run.
FILE_ERRORS = (AudioLoadError, ValueError, RuntimeError, OSError, EOFError)


def output_path(out_dir: str | os.PathLike, item: InputItem) -> Path:
    """Where ``item``'s mel goes: ``<out>/<rel folder>/melspec_10s_22050hz/<stem>_mel.npy``."""
    rel = PurePosixPath(item.rel)
    return Path(out_dir, *rel.parent.parts, MEL_FOLDER, rel.stem + MEL_SUFFIX)


def output_paths(out_dir: str | os.PathLike, items: list[InputItem]) -> list[Path]:
    """:func:`output_path` of every item; two inputs with one output (``a.wav`` and ``a.mp4``
    in one folder) raise ``ValueError`` naming both."""
    seen: dict[Path, Path] = {}
    paths = []
    for item in items:
        path = output_path(out_dir, item)
        if path in seen:
            raise ValueError(f"{item.path} and {seen[path]} would both write {path}; rename one")
        seen[path] = item.path
        paths.append(path)
    return paths


def is_complete(path: Path) -> bool:
    """``path`` is a whole float32 ``(80, 860)`` .npy (header and size checked, data not read)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return False
            data_start = fh.tell()
        size = os.path.getsize(path)
    except (OSError, ValueError):
        return False
    return (
        shape == (N_MELS, SPEC_FRAMES)
        and dtype == np.dtype("<f4")
        and not fortran
        and size == data_start + N_MELS * SPEC_FRAMES * 4
    )


def load_clip(path: str | os.PathLike, *, tile: bool = True) -> torch.Tensor:
    """Decode ``path`` into the authors' 10 s, 22 050 Hz mono clip: float64 ``(220500,)``.

    ``tile``: loop clips shorter than 10 s (default, as the authors' dataset preparation);
    ``False`` zero-pads them instead (their mel script on an untiled file).

    Raises:
        AudioLoadError: the file cannot be decoded (the message names it).
    """
    waveform, sr = load(path)  # float32 (channels, samples)
    if tile:
        waveform = tile_seconds(waveform, sr, CLIP_SECONDS)
    else:
        waveform = waveform[..., : int(round(CLIP_SECONDS * sr))]
    mono = waveform.to(torch.float64).mean(dim=0)
    clip = resample(mono, sr, SAMPLE_RATE)  # float64: exact resampy arithmetic
    n = clip.shape[-1]
    # Zero-pad / cut to exactly 10 s, as the mel does; a rate whose 10 s do not map to a whole
    # number of 22 050 Hz samples can come out one sample short.
    return (
        torch.nn.functional.pad(clip, (0, CLIP_SAMPLES - n))
        if n < CLIP_SAMPLES
        else clip[:CLIP_SAMPLES]
    )


@dataclass
class MelsSummary:
    """What a run did: counts, failures ``(path, reason)`` and wall time (seconds)."""

    files: int = 0
    written: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    wall_seconds: float = 0.0

    def lines(self) -> list[str]:
        done = f" ({self.skipped} already done, skipped)" if self.skipped else ""
        rate = self.written / max(self.wall_seconds, 1e-9)
        return [
            f"files:      {self.written} written of {self.files}{done}",
            f"failed:     {len(self.failures)}",
            f"wall time:  {self.wall_seconds:.2f} s ({rate:.1f} files/s)",
        ]


class _ClipSource(IterableDataset):
    """Decoded clips ``("clip", index, (220500,))`` or ``("error", index, reason)``."""

    def __init__(self, items: list[tuple[int, InputItem]], tile: bool) -> None:
        super().__init__()
        self.items = items
        self.tile = tile

    def __iter__(self):
        info = get_worker_info()
        mine = self.items if info is None else self.items[info.id :: info.num_workers]
        for index, item in mine:
            try:
                clip = load_clip(item.path, tile=self.tile)
            except FILE_ERRORS as exc:
                text = str(exc)
                yield "error", index, text if str(item.path) in text else f"{item.path}: {text}"
                continue
            yield "clip", index, clip


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # the main process's batched mel owns the cores


def _identity(x):
    return x


def extract_mels(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    workers: int = 0,
    tile: bool = True,
    extensions: Iterable[str] | None = None,
    progress: bool = True,
) -> MelsSummary:
    """Write the mel of every input (module docstring for layout and steps).

    Args:
        inputs: a folder (searched recursively), a file, a list file (.txt/.csv), or several.
        out_dir: output folder (created).
        resume: skip inputs whose output is already a complete ``(80, 860)`` float32 .npy.
        batch_size: clips per mel batch (the last batch is zero-padded to this size, so a
            clip's mel does not depend on which clips share its batch).
        device: where the mels are computed.
        workers: decoding/resampling worker processes (0: in this process).
        tile: loop clips shorter than 10 s (default); ``False`` zero-pads them.
        extensions: file extensions searched in folders (default: every audio and container
            extension :mod:`audiorep.audio` decodes).
        progress: show a progress bar.

    Returns:
        the summary; failures are also listed in ``<out>/failures.tsv`` (path, reason), which is
        removed when a run has none.

    Raises:
        FileNotFoundError: an input does not exist, or a folder holds no audio.
        ValueError: two inputs would write the same output.
        audiorep.extract.writers.OutputBusyError: another run holds the output folder.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    skipped: list[tuple[str, str]] = []
    items = collect_inputs(inputs, extensions, skipped)
    if not items and not skipped:
        exts = ", ".join(sorted(extensions)) if extensions else "any audio or video extension"
        raise FileNotFoundError(
            f"no input files found in {', '.join(map(str, inputs))} (searched for {exts})"
        )
    outputs = output_paths(out_dir, items)
    summary = MelsSummary(files=len(items))
    start = time.perf_counter()
    device = torch.device(device)
    with claim_output_dir(out_dir) as out:
        todo = [i for i in range(len(items)) if not (resume and is_complete(outputs[i]))]
        summary.skipped = len(items) - len(todo)
        source = _ClipSource([(i, items[i]) for i in todo], tile)
        loader: Iterable = source
        if workers > 0:
            loader = DataLoader(
                source,
                batch_size=None,
                num_workers=workers,
                worker_init_fn=_worker_init,
                collate_fn=_identity,
                prefetch_factor=2,
            )
        bar = tqdm(total=len(todo), unit="file", disable=not progress, dynamic_ncols=True)
        pending: list[tuple[int, torch.Tensor]] = []

        def flush() -> None:
            if not pending:
                return
            clips = torch.stack([clip for _, clip in pending])
            if clips.shape[0] < batch_size:
                clips = torch.cat(
                    [clips, clips.new_zeros(batch_size - clips.shape[0], CLIP_SAMPLES)]
                )
            mels = mel_spectrogram(clips.to(device)).to(torch.float32).cpu().numpy()
            for k, (index, _) in enumerate(pending):
                write_npy_atomic(outputs[index], np.ascontiguousarray(mels[k]))
                summary.written += 1
            bar.update(len(pending))
            bar.set_postfix(failed=len(summary.failures))
            pending.clear()

        try:
            for kind, index, payload in loader:
                if kind == "error":
                    summary.failures.append((str(items[index].path), payload))
                    bar.update(1)
                    bar.set_postfix(failed=len(summary.failures))
                    continue
                pending.append((index, payload))
                if len(pending) == batch_size:
                    flush()
            flush()
        finally:
            bar.close()
        summary.failures.extend(skipped)  # not regular files: reported, never opened
        write_failures(out, summary.failures)
    summary.wall_seconds = time.perf_counter() - start
    return summary


__all__ = [
    "FAILURES_FILE",
    "MEL_FOLDER",
    "MEL_SUFFIX",
    "MelsSummary",
    "extract_mels",
    "is_complete",
    "load_clip",
    "output_path",
    "output_paths",
]
