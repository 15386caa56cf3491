"""Real audio for training the codec and the vocoder: recordings, held-out regions, crops.

A corpus is a list of mono 22 050 Hz recordings (any file :func:`audiorep.audio.load`
decodes, resampled exactly with :func:`audiorep.resample.resample`), optionally cut to a time
region, so that one long recording can give training material from its start and held-out
material from its end. A list file has one row per recording::

    path [start_seconds [stop_seconds]]     # '#' starts a comment; paths relative to the file

Batches are a pure function of ``(seed, step, rank)`` (:func:`batch_rng`), so a resumed run
draws exactly the batches an uninterrupted one would, with no loader state to save.

* :class:`MelCrops` (codec): random ``crop_frames``-wide windows of each recording's mel
  spectrogram (the authors' §1.2 transform at the recording's own length), mapped to [-1, 1];
* :class:`WaveCrops` (vocoder): the authors' MelGAN data pipeline: peak-normalise to 0.95,
  scale by U(0.3, 1.0), a random 8192-sample crop (zero-padded when shorter), and its mel
  (``8192 // 256 = 32`` frames, the 33rd dropped as in their ``wav2mel``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from audiorep.audio import load
from audiorep.frontends.specvqgan import HOP_LENGTH, SAMPLE_RATE, mel_spectrogram, to_model_range
from audiorep.resample import resample

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Recording:
    """One corpus entry: ``waveform`` float32 ``(samples,)`` at 22 050 Hz, mono."""

    name: str
    waveform: torch.Tensor

    @property
    def seconds(self) -> float:
        return self.waveform.shape[-1] / SAMPLE_RATE


def load_recording(path: PathLike, start: float = 0.0, stop: float | None = None) -> torch.Tensor:
    """Mono float32 ``(samples,)`` at 22 050 Hz of ``path`` between ``start`` and ``stop``
    seconds (cut at the file's own rate, then averaged over channels and resampled in
    float64)."""
    wave, sr = load(path)
    a = int(round(start * sr))
    b = wave.shape[-1] if stop is None else int(round(stop * sr))
    if not 0 <= a < b:
        raise ValueError(f"{path}: empty region [{start}, {stop}] s ({wave.shape[-1] / sr:.2f} s)")
    mono = wave[:, a:b].to(torch.float64).mean(dim=0)
    if sr != SAMPLE_RATE:
        mono = resample(mono, sr, SAMPLE_RATE)
    return mono.to(torch.float32)


def read_list_file(list_file: PathLike) -> list[tuple[Path, float, float | None]]:
    """Rows ``(path, start, stop)`` of a corpus list file (module docstring)."""
    list_file = Path(list_file)
    rows = []
    for lineno, line in enumerate(list_file.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            times = [float(t) for t in parts[1:3]]
        except ValueError:
            raise ValueError(
                f"{list_file}:{lineno}: expected 'path [start [stop]]' in seconds, got {line!r}"
            ) from None
        path = Path(parts[0])
        if not path.is_absolute():
            path = list_file.parent / path
        rows.append((path, times[0] if times else 0.0, times[1] if len(times) > 1 else None))
    if not rows:
        raise ValueError(f"{list_file}: no recordings listed")
    return rows


class AudioCorpus:
    """Recordings in memory (a few minutes of audio is a few tens of MB)."""

    def __init__(self, recordings: Sequence[Recording]):
        if not recordings:
            raise ValueError("an audio corpus needs at least one recording")
        self.recordings = list(recordings)
        self._mels: list[torch.Tensor] | None = None

    @classmethod
    def from_paths(
        cls,
        paths: Sequence[PathLike | tuple[PathLike, float, float | None]],
        *,
        progress: bool = False,
    ) -> AudioCorpus:
        """Audio files (or ``(path, start, stop)`` regions) decoded to 22 050 Hz mono."""
        recs = []
        for item in tqdm(paths, "loading audio", disable=not progress, leave=False):
            path, start, stop = item if isinstance(item, tuple) else (item, 0.0, None)
            name = str(path) if (start, stop) == (0.0, None) else f"{path}[{start}:{stop}]"
            recs.append(Recording(name, load_recording(path, start, stop)))
        return cls(recs)

    @classmethod
    def from_source(cls, source: PathLike, *, progress: bool = False) -> AudioCorpus:
        """A list file (module docstring), one audio file, or a folder (every WAV/FLAC/OGG/MP3
        under it, sorted)."""
        source = Path(source)
        if source.is_dir():
            exts = {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aiff", ".au"}
            files = sorted(p for p in source.rglob("*") if p.suffix.lower() in exts)
            if not files:
                raise ValueError(f"{source}: no audio files found")
            return cls.from_paths(files, progress=progress)
        if source.suffix.lower() in {".txt", ".lst", ".list"}:
            return cls.from_paths(read_list_file(source), progress=progress)
        if not source.exists():
            raise FileNotFoundError(f"audio corpus not found: {source}")
        return cls.from_paths([source], progress=progress)

    def __len__(self) -> int:
        return len(self.recordings)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.recordings)

    def mels(self) -> list[torch.Tensor]:
        """Each recording's [0, 1] mel spectrogram ``(80, 1 + samples // 256)``, float32
        (computed once in float64, the authors'-exact path)."""
        if self._mels is None:
            self._mels = [
                mel_spectrogram(r.waveform.double(), None, max_frames=None).float()
                for r in self.recordings
            ]
        return self._mels


def batch_rng(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator of batch ``step`` on ``rank``: independent of every other batch."""
    return np.random.default_rng([int(seed), int(step), int(rank)])


class MelCrops:
    """Codec batches: ``(B, 1, 80, crop_frames)`` windows in [-1, 1].

    Recordings are drawn in proportion to their length (every second of audio equally
    likely); a recording shorter than the crop is looped in time (the authors tile short
    clips to 10 s).
    """

    def __init__(self, corpus: AudioCorpus, crop_frames: int, seed: int):
        if crop_frames < 16:
            raise ValueError(
                f"crop_frames must be >= 16 (the codec downsamples 16x), got {crop_frames}"
            )
        self.mels = corpus.mels()
        self.crop_frames = int(crop_frames)
        self.seed = int(seed)
        lengths = np.array([m.shape[-1] for m in self.mels], dtype=np.float64)
        self.weights = lengths / lengths.sum()

    def batch(self, step: int, batch_size: int, rank: int = 0) -> torch.Tensor:
        rng = batch_rng(self.seed, step, rank)
        out = []
        for i in rng.choice(len(self.mels), size=batch_size, p=self.weights):
            mel = self.mels[i]
            width = mel.shape[-1]
            if width < self.crop_frames:
                mel = mel.repeat(1, -(-self.crop_frames // width))
                width = mel.shape[-1]
            start = int(rng.integers(0, width - self.crop_frames + 1))
            out.append(mel[:, start : start + self.crop_frames])
        return to_model_range(torch.stack(out)[:, None])


class WaveCrops:
    """Vocoder batches: ``(wave (B, 1, segment), mel (B, 80, segment // 256))``, the authors'
    MelGAN pipeline (module docstring)."""

    def __init__(self, corpus: AudioCorpus, seed: int, segment: int = 8192, augment: bool = True):
        if segment % HOP_LENGTH:
            raise ValueError(f"segment must be a multiple of {HOP_LENGTH} samples, got {segment}")
        self.waves = []
        for r in corpus.recordings:
            peak = float(r.waveform.abs().max())
            # librosa.util.normalize then * 0.95; a silent recording stays silent
            self.waves.append(r.waveform * (0.95 / peak) if peak > 0 else r.waveform.clone())
        lengths = np.array([w.shape[-1] for w in self.waves], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.seed, self.segment, self.augment = int(seed), int(segment), augment

    def batch(self, step: int, batch_size: int, rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        rng = batch_rng(self.seed, step, rank)
        crops = []
        for i in rng.choice(len(self.waves), size=batch_size, p=self.weights):
            w = self.waves[i]
            gain = float(rng.uniform(0.3, 1.0)) if self.augment else 1.0
            if w.shape[-1] >= self.segment:
                start = int(rng.integers(0, w.shape[-1] - self.segment + 1))
                crop = w[start : start + self.segment]
            else:
                crop = torch.nn.functional.pad(w, (0, self.segment - w.shape[-1]))
            crops.append(crop * gain)
        wave = torch.stack(crops)
        frames = self.segment // HOP_LENGTH
        mel = mel_spectrogram(wave.double(), None, max_frames=frames).float()
        return wave[:, None], mel


__all__ = [
    "AudioCorpus",
    "MelCrops",
    "Recording",
    "WaveCrops",
    "batch_rng",
    "load_recording",
    "read_list_file",
]
