"""SpecVQGAN's 22.05 kHz log-mel front end and the transforms around it, in torch.

The authors' dataset pipeline (their mel extraction run with librosa 0.8.0), reproduced here
without librosa:

1. **tiling** (their video/audio preparation step, *before* the mel): a clip shorter than 10 s
   is looped end to end and the first 10 s are kept; this happens on the waveform at the
   file's own sample rate, before the downmix to mono and the resampling to 22 050 Hz
   (:func:`tile_to_length`, :func:`tile_seconds`);
2. pad with zeros / truncate to ``length`` = 220 500 samples (10 s at 22 050 Hz);
3. centred STFT: reflect padding of ``n_fft // 2 = 512`` samples on both sides (librosa 0.8's
   default; librosa >= 0.10 pads with zeros, which moves columns 0-1 by up to 0.1), frames of
   1024 samples every 256, periodic Hann window, magnitude ``|X|`` (power 1) of the 513 bins;
4. Slaney mel filterbank, 80 bands from 125 to 7600 Hz (librosa 0.8 ``filters.mel`` with
   ``htk=False, norm='slaney'``, float32 weights), ``mel = basis @ |X|``;
5. ``S = clip((20 log10(max(mel, 1e-5)) - 20 + 100) / 100, 0, 1)``;
6. the first 860 frames: ``(80, 860)``, row 0 = the lowest band.

As model input the spectrogram is centre-cropped to 848 columns (:func:`center_crop`) and
mapped to [-1, 1] by ``2 S - 1`` (:func:`to_model_range`). The two spectrogram classifiers
("judges") instead receive it normalised per mel bin with VGGSound training statistics
(:func:`normalize_for_judges`).

Numerics: the reference computes in float64 when it zero-pads a short clip and "in float32"
otherwise, but its float32 path still multiplies the float32 frames by a float64 window and
takes a float64 FFT, rounding only the spectrum to complex64; the two paths differ by at most
1.3e-7. We therefore compute in float64 by default (simpler than switching, and within 1.2e-7
of the reference on tests/fixtures/specvqgan_mel). A true float32 FFT
(``compute_dtype=torch.float32``, ~2x faster) is up to ~1e-4 off in quiet bands next to loud
ones (6.8e-5 on the sweep fixture): FFT rounding of ~1e-7 of the frame's energy, amplified by
the log, ``dS = 0.2 / ln 10 * d(mel) / mel``.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from audiorep.frontends.panns import periodic_hann, slaney_mel_matrix

SAMPLE_RATE = 22050  # Hz
N_FFT = 1024
HOP_LENGTH = 256
N_MELS = 80
FMIN = 125.0  # Hz
FMAX = 7600.0  # Hz
CLIP_SECONDS = 10.0
CLIP_SAMPLES = 220500  # 10 s at 22 050 Hz
SPEC_FRAMES = 860  # frames kept of the 862 a 10 s clip gives
CROP_FRAMES = 848  # centre crop fed to the codec (9.846 s)
AMIN = 1e-5  # floor of the mel magnitude before the log
REF_DB = 20.0  # dB subtracted after 20 log10
DYNAMIC_RANGE_DB = 100.0  # dB mapped onto [0, 1]

#: The judges' per-mel-bin statistics, shipped as package data (see frontends/data/ATTRIBUTION.md).
JUDGE_STATS_FILE = Path(__file__).parent / "data" / "train_means_stds_melspec_10s_22050hz.txt"


def num_frames(num_samples: int, hop_length: int = HOP_LENGTH) -> int:
    """Frames of the centred STFT of ``num_samples`` samples: ``1 + num_samples // hop``."""
    return 1 + num_samples // hop_length


def mel_basis() -> np.ndarray:
    """The Slaney mel filterbank, float32 ``(80, 513)`` (mels, FFT bins), read-only.

    Identical to librosa 0.8 ``filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=125,
    fmax=7600)`` (the FFT bin frequencies of ``np.fft.rfftfreq`` and ``np.linspace`` agree
    exactly at these settings).
    """
    return slaney_mel_matrix(SAMPLE_RATE, N_FFT, N_MELS, FMIN, FMAX).T


@lru_cache(maxsize=1)
def _used_bins() -> tuple[int, int]:
    """``[lo, hi)``: the FFT bins the filterbank weighs at all (6..352 of 513): the others
    only ever add exact zeros, so they are skipped."""
    used = np.nonzero(mel_basis().any(axis=0))[0]
    return int(used[0]), int(used[-1]) + 1


@lru_cache(maxsize=16)
def _constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(window (1024,), basis (hi - lo, 80))`` on ``device`` in ``dtype``, built once per pair.

    The basis keeps librosa's float32 values (only widened) for the bins in
    :func:`_used_bins`; the window is the float64 periodic Hann librosa uses (narrowed for
    float32 computation).
    """
    lo, hi = _used_bins()
    # Built outside inference mode even when first asked for inside it: cached inference
    # tensors could never be used in a later differentiable call.
    with torch.inference_mode(False):
        window = torch.from_numpy(periodic_hann(N_FFT)).to(device=device, dtype=dtype)
        basis = torch.from_numpy(mel_basis()[:, lo:hi].T.copy()).to(device=device, dtype=dtype)
    return window, basis


def reflect_indices(num_samples: int, pad: int) -> np.ndarray:
    """Indices into a signal of ``num_samples`` that pad it by ``pad`` on both sides.

    ``numpy.pad(x, pad, mode='reflect')`` (what librosa 0.8 calls): the signal mirrored about
    its end samples without repeating them, repeated as often as needed, so it works for
    signals shorter than ``pad`` (where ``torch.nn.functional.pad`` refuses). int64
    ``(num_samples + 2 * pad,)``.
    """
    if num_samples < 1:
        raise ValueError("cannot reflect-pad an empty signal")
    positions = np.arange(-pad, num_samples + pad, dtype=np.int64)
    if num_samples == 1:
        return np.zeros_like(positions)
    period = 2 * (num_samples - 1)
    folded = np.mod(positions, period)
    return np.where(folded < num_samples, folded, period - folded)


def mel_spectrogram(
    waveform: torch.Tensor | np.ndarray,
    length: int | None = CLIP_SAMPLES,
    *,
    max_frames: int | None = SPEC_FRAMES,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The authors' mel spectrogram of 22 050 Hz waveforms (module docstring, steps 2-6).

    Args:
        waveform: ``(..., samples)`` mono audio at 22 050 Hz in [-1, 1], any leading
            dimensions (batch), any device. Already tiled if it should be (step 1 is
            :func:`tile_to_length` / :func:`tile_seconds`, not done here).
        length: pad with zeros / truncate to this many samples first (default 220 500 = 10 s,
            the dataset path). ``None``: use the samples as they are (the authors' demo / codec
            path, ``length = number of samples``).
        max_frames: keep at most this many frames (default 860, as the reference always
            trims); ``None`` keeps all ``1 + samples // 256``.
        compute_dtype: ``torch.float64`` (default, within 1.3e-7 of the reference) or
            ``torch.float32`` (faster; up to ~1e-4 off in quiet bands, module docstring).

    Returns:
        ``(..., 80, frames)`` in [0, 1], ``frames = min(max_frames, 1 + n // 256)`` with ``n``
        = ``length`` (or the input's samples): ``(..., 80, 860)`` by default. The dtype is the
        input's when it is float32 or float64, else float32. Differentiable (pure torch ops;
        zero gradient where the floor or the [0, 1] clip is active).
    """
    x = torch.as_tensor(waveform)
    if not torch.is_floating_point(x) or x.is_complex():
        raise TypeError(f"waveform must be a real floating tensor, got {x.dtype}")
    out_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    if compute_dtype not in (torch.float32, torch.float64):
        raise ValueError(
            f"compute_dtype must be torch.float32 or torch.float64, got {compute_dtype}"
        )
    x = x.to(compute_dtype)
    if length is not None:
        if length < 1:
            raise ValueError(f"length must be >= 1 sample, got {length}")
        n = x.shape[-1]
        # The reference copies short clips into a zero buffer and slices long ones.
        x = torch.nn.functional.pad(x, (0, length - n)) if n < length else x[..., :length]
    n = x.shape[-1]
    if n < 1:
        raise ValueError("mel_spectrogram needs at least one sample")
    lead = x.shape[:-1]
    if x.numel() == 0:  # an empty batch (MKL's FFT refuses zero-sized inputs)
        width = num_frames(n) if max_frames is None else min(max_frames, num_frames(n))
        return x.new_zeros((*lead, N_MELS, width), dtype=out_dtype)
    x = x.reshape(-1, n)
    if (
        x.shape[0] > 1
        and x.device.type == "cpu"
        and not (torch.is_grad_enabled() and x.requires_grad)
    ):
        # On a CPU one clip at a time is ~3x faster than the whole batch: a 10 s clip's frames
        # (7 MB in float64) stay in cache, a batch's do not (benchmarks/bench_specvqgan_mel.py).
        # Each row is computed exactly as in a batch, so the result does not change.
        rows = [mel_spectrogram(row, None, max_frames=max_frames, compute_dtype=compute_dtype)
                for row in x]  # fmt: skip
        return torch.stack(rows).reshape(*lead, N_MELS, rows[0].shape[-1]).to(out_dtype)
    half = N_FFT // 2
    if n > half:  # torch's reflect padding is numpy's when the pad is shorter than the signal
        padded = torch.nn.functional.pad(x[:, None], (half, half), mode="reflect")[:, 0]
    else:
        index = torch.from_numpy(reflect_indices(n, half)).to(x.device)
        padded = x.index_select(-1, index)  # (B, n + 1024)
    frames = padded.unfold(-1, N_FFT, HOP_LENGTH)  # (B, 1 + n // 256, 1024), a view
    if max_frames is not None:
        frames = frames[:, :max_frames]
    window, basis = _constants(x.device, compute_dtype)
    lo, hi = _used_bins()
    spectrum = torch.fft.rfft(frames * window, dim=-1)[..., lo:hi]  # (B, T, hi - lo)
    if torch.is_grad_enabled() and spectrum.requires_grad:
        magnitude = spectrum.abs()  # its gradient is finite at X = 0 (zero padding): sgn(0) = 0
    else:
        # sqrt(re^2 + im^2) in place: ~2x faster than complex abs (hypot) on CPU, equal to an
        # ulp; it underflows only for |X| < 1e-19 (float32) / 1e-154, far under the floor.
        re, im = spectrum.real, spectrum.imag
        magnitude = (re * re).addcmul_(im, im).sqrt_()
    mel = torch.matmul(magnitude, basis).transpose(-1, -2)  # (B, 80, T)
    db = 20.0 * torch.log10(torch.clamp(mel, min=AMIN)) - REF_DB
    spec = torch.clamp((db + DYNAMIC_RANGE_DB) / DYNAMIC_RANGE_DB, 0.0, 1.0)
    return spec.reshape(*lead, N_MELS, spec.shape[-1]).to(out_dtype)


# ------------------------------------------------------------------------------------ tiling


def tile_to_length(waveform: torch.Tensor, length: int) -> torch.Tensor:
    """Loop ``(..., n)`` end to end and keep the first ``length`` samples: ``(..., length)``.

    The authors' ``ffmpeg -stream_loop`` + ``-t 10`` step for short clips (longer ones are just
    cut). Apply it at the file's own sample rate before resampling to 22 050 Hz, as they do.
    """
    n = waveform.shape[-1]
    if n < 1:
        raise ValueError("cannot tile an empty waveform")
    if n >= length:
        return waveform[..., :length]
    reps = math.ceil(length / n)
    return waveform.repeat(*([1] * (waveform.dim() - 1)), reps)[..., :length]


def tile_seconds(
    waveform: torch.Tensor, sample_rate: int, seconds: float = CLIP_SECONDS
) -> torch.Tensor:
    """:func:`tile_to_length` to ``round(seconds * sample_rate)`` samples (10 s by default)."""
    return tile_to_length(waveform, int(round(seconds * sample_rate)))


# ------------------------------------------------------------------------- model input forms


def center_crop(spec: torch.Tensor, width: int = CROP_FRAMES) -> torch.Tensor:
    """Columns ``[(W - width) // 2, ... + width)`` of ``(..., 80, W)`` (albumentations'
    ``CenterCrop`` offset): ``(..., 80, 860)`` -> columns 6..853. A view."""
    w = spec.shape[-1]
    if w < width:
        raise ValueError(f"cannot centre-crop {w} frames to {width}")
    start = (w - width) // 2
    return spec[..., start : start + width]


def to_model_range(spec: torch.Tensor) -> torch.Tensor:
    """[0, 1] spectrogram -> the codec's [-1, 1] input, ``2 S - 1``."""
    return 2.0 * spec - 1.0


def from_model_range(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_model_range`: ``(x + 1) / 2`` (no clamping, as the authors save
    samples)."""
    return (image + 1.0) / 2.0


# ------------------------------------------------------------------------ judge normaliser


@lru_cache(maxsize=4)
def _judge_stats_numpy(path: str) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(path, dtype=np.float64)
    if table.shape != (N_MELS, 2):
        raise ValueError(f"{path}: expected {N_MELS} rows 'mean std', got shape {table.shape}")
    means, stds = np.ascontiguousarray(table[:, 0]), np.ascontiguousarray(table[:, 1])
    means.setflags(write=False)
    stds.setflags(write=False)
    return means, stds


def load_judge_stats(
    path: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-bin ``(means, stds)``, float64 ``(80,)`` each, of VGGSound training mels.

    ``path``: a ``train_means_stds_melspec_10s_22050hz.txt`` (80 rows "mean std"); default
    the authors' file shipped with the package (:data:`JUDGE_STATS_FILE`).
    """
    means, stds = _judge_stats_numpy(str(path if path is not None else JUDGE_STATS_FILE))
    return torch.from_numpy(means.copy()), torch.from_numpy(stds.copy())


def normalize_for_judges(
    spec: torch.Tensor,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The judges' input normalisation (the authors' ``StandardNormalizeAudio`` + ``ToFloat32``).

    Args:
        spec: ``(..., 80, W)`` [0, 1] spectrograms (float32 in the authors' evaluation).
        stats: ``(means, stds)`` ``(80,)`` from :func:`load_judge_stats` (default: the shipped
            file).

    Returns:
        ``(spec - mean_f) / std_f`` per mel bin ``f``, float32. As in the reference, the
        arithmetic is float64 (float32 input minus float64 NumPy statistics) and the result is
        rounded to float32 once at the end.
    """
    means, stds = stats if stats is not None else load_judge_stats()
    if spec.shape[-2] != means.shape[0]:
        raise ValueError(f"expected {means.shape[0]} mel bins on axis -2, got {spec.shape}")
    wide = spec.to(torch.float64)
    means = means.to(device=wide.device, dtype=torch.float64)[:, None]
    stds = stds.to(device=wide.device, dtype=torch.float64)[:, None]
    return ((wide - means) / stds).to(torch.float32)


__all__ = [
    "CLIP_SAMPLES",
    "CROP_FRAMES",
    "HOP_LENGTH",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "SPEC_FRAMES",
    "center_crop",
    "from_model_range",
    "load_judge_stats",
    "mel_basis",
    "mel_spectrogram",
    "normalize_for_judges",
    "num_frames",
    "reflect_indices",
    "tile_seconds",
    "tile_to_length",
    "to_model_range",
]
