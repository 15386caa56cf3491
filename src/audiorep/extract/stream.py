"""One audio file -> its VGGish examples, chunk by chunk, in bounded memory.

:class:`ClipExamples` decodes a file block by block (soundfile), mixes to mono, resamples the
part of the 16 kHz signal that the next few examples need (:func:`resample_range`, same
weights and absolute phases as the whole-signal call) and frames those examples. A one-hour
44.1 kHz file never exists in memory as a whole: only a chunk of ``chunk_seconds`` of audio plus
the filter's context does. The examples equal those of ``waveform_to_examples`` on the whole
file up to float64 summation order (~1e-15).

Files are decoded whole instead (same values, memory proportional to length) when streaming is
not possible or not useful: containers decoded by PyAV, peak-normalised windowing (the gain
depends on the whole clip), and clips too short for one example.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiorep.audio import (
    CONTAINER_EXTENSIONS,
    AudioLoadError,
    check_size,
    decode_reason,
    load,
    native_path,
    require_regular_file,
    warn_if_wav_truncated,
)
from audiorep.frontends.vggish import (
    EXAMPLE_SAMPLES,
    HOP_LENGTH,
    SAMPLE_RATE,
    VGGISH_WINDOWING,
    VGGishFrontend,
    Windowing,
    waveform_to_examples,
)
from audiorep.resample import input_range, output_length, resample, resample_range

_READ_BLOCK = 1 << 16  # frames per soundfile read


class ClipExamples:
    """Iterate over float32 ``(n_i, 96, 64)`` example chunks of one file, in order.

    Args:
        path: an audio file.
        windowing: example hop / window rule / normalisation.
        dtype: frontend computation dtype (float64 = reference-exact).
        chunk_seconds: audio per chunk (bounds memory); at least one example per chunk.
        pad_short: zero-pad a clip shorter than one example to exactly one example (instead of
            yielding nothing).

    After iteration, ``duration`` (seconds), ``num_examples`` and ``padded`` are set;
    ``expected_examples`` is set before the first chunk is yielded (for progress reports).

    Raises:
        AudioLoadError: unreadable, empty or non-finite audio (names the file).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        windowing: Windowing = VGGISH_WINDOWING,
        dtype: torch.dtype = torch.float64,
        chunk_seconds: float = 20.0,
        pad_short: bool = False,
    ) -> None:
        self.path = Path(path)
        self.windowing = windowing
        self.dtype = dtype
        self.chunk_seconds = chunk_seconds
        self.pad_short = pad_short
        self.duration = 0.0
        self.num_examples = 0
        self.padded = False
        self.expected_examples = 0
        self._frontend = VGGishFrontend(dtype, windowing)

    def __iter__(self) -> Iterator[torch.Tensor]:
        p = self.path
        require_regular_file(p)
        if p.stat().st_size == 0:
            raise AudioLoadError(p, "empty file (0 bytes)")
        streamable = p.suffix.lower() not in CONTAINER_EXTENSIONS
        if streamable and not self.windowing.peak_normalize:
            try:
                info = sf.info(native_path(p))
            except Exception:  # let the whole-file path produce the precise error
                info = None
            if info is not None and info.frames > 0:
                check_size(p, int(info.samplerate), int(info.frames))
                warn_if_wav_truncated(p, int(info.frames))
                n16 = output_length(int(info.frames), int(info.samplerate), SAMPLE_RATE)
                if self.windowing.num_examples(n16) > 0:
                    yield from self._stream(int(info.samplerate), int(info.frames))
                    return
        yield from self._whole()

    # ------------------------------------------------------------------ whole file
    def _whole(self) -> Iterator[torch.Tensor]:
        waveform, sr = load(self.path)
        self.duration = waveform.shape[-1] / sr
        x = waveform.to(torch.float64).mean(dim=0)  # as waveform_to_examples mixes
        examples = waveform_to_examples(x, sr, dtype=self.dtype, windowing=self.windowing)
        if examples.shape[0] == 0 and self.pad_short:
            need = self.windowing.window_samples or EXAMPLE_SAMPLES
            y16 = resample(x.to(self.dtype), sr, SAMPLE_RATE) if sr != SAMPLE_RATE else x
            y16 = torch.nn.functional.pad(y16, (0, max(0, need - y16.shape[-1])))
            examples = waveform_to_examples(
                y16, SAMPLE_RATE, dtype=self.dtype, windowing=self.windowing
            )
            self.padded = True
        self.num_examples = self.expected_examples = int(examples.shape[0])
        step = self._examples_per_chunk()
        for k in range(0, examples.shape[0], step):
            yield examples[k : k + step].float()

    # ------------------------------------------------------------------ streamed
    def _examples_per_chunk(self) -> int:
        hop = self.windowing.hop_frames * HOP_LENGTH
        return max(1, int(self.chunk_seconds * SAMPLE_RATE) // hop)

    def _stream(self, sr: int, frames: int) -> Iterator[torch.Tensor]:
        n16 = output_length(frames, sr, SAMPLE_RATE)
        total = self.expected_examples = self.windowing.num_examples(n16)
        hop = self.windowing.hop_frames * HOP_LENGTH
        step = self._examples_per_chunk()
        buf = np.zeros(0)  # mono float64 input samples [buf_start, buf_start + len)
        buf_start = 0
        read_pos = 0
        try:
            f = sf.SoundFile(native_path(self.path))
        except Exception as exc:
            raise AudioLoadError(self.path, decode_reason(exc)) from None
        with f:
            for k0 in range(0, total, step):
                k1 = min(total, k0 + step)
                j0, j1 = k0 * hop, (k1 - 1) * hop + EXAMPLE_SAMPLES
                a, b = input_range(sr, SAMPLE_RATE, j0, j1)
                a, b = max(a, 0), min(b, frames)
                if a > buf_start:  # drop what no later chunk needs
                    buf = buf[a - buf_start :]
                    buf_start = a
                while read_pos < b:
                    try:
                        block = f.read(
                            min(_READ_BLOCK, frames - read_pos), dtype="float32", always_2d=True
                        )
                    except Exception as exc:
                        raise AudioLoadError(self.path, decode_reason(exc)) from None
                    if block.shape[0] == 0:
                        raise AudioLoadError(self.path, f"file ends early at frame {read_pos}")
                    if not np.isfinite(block).all():
                        raise AudioLoadError(self.path, "audio contains NaN or infinite samples")
                    mono = torch.from_numpy(np.ascontiguousarray(block.T)).to(torch.float64)
                    buf = np.concatenate([buf, mono.mean(dim=0).numpy()])
                    read_pos += block.shape[0]
                seg = torch.from_numpy(buf).to(self.dtype)
                if sr == SAMPLE_RATE:
                    y16 = seg[j0 - buf_start : j1 - buf_start]
                else:
                    y16 = resample_range(seg, buf_start, frames, sr, SAMPLE_RATE, j0, j1)
                fe = self._frontend
                examples = fe.frame_examples(fe.log_mel(y16[None]))[0][: k1 - k0]
                self.num_examples += int(examples.shape[0])
                yield examples.float()
        self.duration = frames / sr


__all__ = ["ClipExamples"]
