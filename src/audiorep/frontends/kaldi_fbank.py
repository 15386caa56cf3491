"""Kaldi-style log mel filterbanks in torch (``compute-fbank-feats``), and AST's input pipeline.

:class:`KaldiFbank` follows ``torchaudio.compliance.kaldi.fbank`` (which mirrors Kaldi's
``compute-fbank-feats``) without needing torchaudio. For each clip ``(N,)``:

1. framing: window ``W = int(sr * frame_length_ms / 1000)`` samples (400 at 16 kHz / 25 ms),
   shift ``S = int(sr * frame_shift_ms / 1000)`` (160); with ``snip_edges=True`` only whole
   frames: ``T = 1 + (N - W) // S`` (0 if ``N < W``), frame ``t`` = samples ``[S t, S t + W)``;
   with ``snip_edges=False``, ``T = (N + S // 2) // S`` frames over the signal extended at both
   ends by mirror images (Kaldi's ``ExtractWindow``);
2. dither (``dither * N(0, 1)`` noise, only in training mode here: eval is deterministic);
3. remove the DC offset: subtract each frame's mean;
4. log energy of the frame (only for ``use_energy``), before pre-emphasis when
   ``raw_energy`` (floor ``energy_floor``);
5. pre-emphasis ``y[j] = x[j] - c x[j - 1]`` with ``y[0] = x[0] - c x[0]``, ``c = 0.97``;
6. window: ``povey`` = symmetric Hann ``(0.5 - 0.5 cos(2 pi j / (W - 1)))^0.85``, ``hanning``
   = symmetric Hann, ``hamming`` (0.54/0.46), ``rectangular``, ``blackman``;
7. zero-pad to the next power of two (512) and take the power spectrum ``|rfft|^2`` (257 bins;
   ``use_power=False``: magnitude);
8. ``num_mel_bins`` triangles, equally spaced on the mel scale ``1127 ln(1 + f / 700)``
   between ``low_freq`` (20 Hz) and ``high_freq`` (``<= 0`` means Nyquist + high_freq), each
   rising from its left to its centre edge and falling to its right edge *linearly in mel*,
   evaluated at the FFT bin frequencies ``k * sr / 512`` for ``k < 256`` (the Nyquist bin gets
   weight 0), no area normalisation;
9. ``log(max(energy, eps))`` with ``eps = float32 epsilon = 1.1920929e-07``.

:class:`ASTFrontend` is the Audio Spectrogram Transformer's input: subtract the clip's mean
from the waveform, fbank with ``htk_compat=True, use_energy=False, window_type='hanning',
num_mel_bins=128, dither=0, frame_shift=10`` at 16 kHz, zero-pad (or cut) to 1024 frames
(10.24 s), then normalise ``(x - mean) / (2 std)`` with AST's AudioSet statistics
``mean = -4.2677393, std = 4.5689974``. Padding happens before the normalisation, as in AST's
dataloader, so padded frames hold ``(0 - mean) / (2 std) = 0.467``, not 0.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import nn

#: ``std::numeric_limits<float>::epsilon()``: the log floor Kaldi and torchaudio use.
FLOAT_EPSILON = float(np.finfo(np.float32).eps)
WINDOW_TYPES = ("hamming", "hanning", "povey", "rectangular", "blackman")

# AST (YuanGongND/ast) AudioSet input settings.
AST_SAMPLE_RATE = 16000
AST_NUM_MEL_BINS = 128
AST_TARGET_LENGTH = 1024
AST_MEAN = -4.2677393
AST_STD = 4.5689974


def mel_scale(freq: np.ndarray | float) -> np.ndarray:
    """Kaldi/HTK mel: ``1127 ln(1 + f / 700)``, float64."""
    return 1127.0 * np.log(1.0 + np.asarray(freq, dtype=np.float64) / 700.0)


def next_power_of_2(x: int) -> int:
    """Smallest power of two ``>= x`` (1 for 0)."""
    return 1 if x == 0 else 2 ** (x - 1).bit_length()


@lru_cache(maxsize=16)
def kaldi_mel_banks(
    num_bins: int,
    padded_window_size: int,
    sample_frequency: float,
    low_freq: float,
    high_freq: float,
) -> np.ndarray:
    """Kaldi's mel filterbank (no VTLN): float64 ``(num_bins, padded_window_size // 2 + 1)``.

    The last column (Nyquist bin) is zero, as in Kaldi/torchaudio. Read-only.
    """
    if num_bins < 3:
        raise ValueError("Kaldi fbank needs at least 3 mel bins")
    num_fft_bins = padded_window_size // 2
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(
            f"bad mel range: low_freq {low_freq} and high_freq {high_freq} vs Nyquist {nyquist}"
        )
    fft_bin_width = sample_frequency / padded_window_size
    mel_low, mel_high = float(mel_scale(low_freq)), float(mel_scale(high_freq))
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = np.arange(num_bins, dtype=np.float64)[:, None]
    left, centre, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
    mel = mel_scale(fft_bin_width * np.arange(num_fft_bins))[None, :]
    up = (mel - left) / (centre - left)
    down = (right - mel) / (right - centre)
    banks = np.zeros((num_bins, num_fft_bins + 1))
    banks[:, :num_fft_bins] = np.maximum(0.0, np.minimum(up, down))
    banks.setflags(write=False)
    return banks


def feature_window(window_type: str, size: int, blackman_coeff: float = 0.42) -> np.ndarray:
    """Kaldi's analysis windows (symmetric, float64 ``(size,)``)."""
    n = np.arange(size, dtype=np.float64)
    a = 2.0 * math.pi / (size - 1)
    if window_type == "hanning":
        return 0.5 - 0.5 * np.cos(a * n)
    if window_type == "povey":
        return (0.5 - 0.5 * np.cos(a * n)) ** 0.85
    if window_type == "hamming":
        return 0.54 - 0.46 * np.cos(a * n)
    if window_type == "rectangular":
        return np.ones(size)
    if window_type == "blackman":
        return blackman_coeff - 0.5 * np.cos(a * n) + (0.5 - blackman_coeff) * np.cos(2 * a * n)
    raise ValueError(f"window_type must be one of {WINDOW_TYPES}, got {window_type!r}")


class KaldiFbank(nn.Module):
    """Batched ``torchaudio.compliance.kaldi.fbank``: ``(B, N)`` or ``(N,)`` -> ``(B, T, bins)``.

    Arguments and defaults are torchaudio's (milliseconds for frame settings, Hz for
    frequencies); see the module docstring for the computation. ``channel`` and VTLN warping
    are not supported (pass one channel per row; ``vtln_warp`` is 1). Dither is applied only
    in training mode. ``use_energy`` appends (``htk_compat=True``) or prepends the log energy.
    ``subtract_mean`` subtracts each clip's per-bin mean over its frames.

    ``dtype``: compute dtype, float32 (torchaudio on float32 input) or float64.
    """

    def __init__(
        self,
        sample_frequency: float = 16000.0,
        frame_length: float = 25.0,
        frame_shift: float = 10.0,
        num_mel_bins: int = 23,
        low_freq: float = 20.0,
        high_freq: float = 0.0,
        window_type: str = "povey",
        blackman_coeff: float = 0.42,
        preemphasis_coefficient: float = 0.97,
        remove_dc_offset: bool = True,
        round_to_power_of_two: bool = True,
        snip_edges: bool = True,
        dither: float = 0.0,
        energy_floor: float = 1.0,
        raw_energy: bool = True,
        use_energy: bool = False,
        htk_compat: bool = False,
        use_log_fbank: bool = True,
        use_power: bool = True,
        subtract_mean: bool = False,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.window_shift = int(sample_frequency * frame_shift * 0.001)
        self.window_size = int(sample_frequency * frame_length * 0.001)
        self.padded_window_size = (
            next_power_of_2(self.window_size) if round_to_power_of_two else self.window_size
        )
        if self.window_size < 2 or self.window_shift <= 0:
            raise ValueError("frame_length must give >= 2 samples and frame_shift > 0")
        if self.padded_window_size % 2:
            raise ValueError("the padded window size must be even; use round_to_power_of_two")
        if not 0.0 <= preemphasis_coefficient <= 1.0:
            raise ValueError("preemphasis_coefficient must be in [0, 1]")
        self.sample_frequency = sample_frequency
        self.num_mel_bins = num_mel_bins
        self.preemphasis_coefficient = preemphasis_coefficient
        self.remove_dc_offset = remove_dc_offset
        self.snip_edges = snip_edges
        self.dither = dither
        self.energy_floor = energy_floor
        self.raw_energy = raw_energy
        self.use_energy = use_energy
        self.htk_compat = htk_compat
        self.use_log_fbank = use_log_fbank
        self.use_power = use_power
        self.subtract_mean = subtract_mean
        self.dtype = dtype
        window = feature_window(window_type, self.window_size, blackman_coeff)
        banks = kaldi_mel_banks(
            num_mel_bins, self.padded_window_size, sample_frequency, low_freq, high_freq
        )
        self.register_buffer("window", torch.from_numpy(window.copy()).to(dtype), persistent=False)
        # (bins_fft, num_mel_bins) so that the projection is one matmul.
        self.register_buffer(
            "mel_banks", torch.from_numpy(banks.T.copy()).to(dtype), persistent=False
        )

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of ``num_samples`` samples."""
        if self.snip_edges:
            return (
                0
                if num_samples < self.window_size
                else (1 + (num_samples - self.window_size) // self.window_shift)
            )
        return (num_samples + self.window_shift // 2) // self.window_shift

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` -> ``(B, T, W)`` analysis frames (a strided view for ``snip_edges``)."""
        w, s = self.window_size, self.window_shift
        t = self.num_frames(x.shape[-1])
        if not self.snip_edges:
            # Kaldi mirrors the signal at both ends: [x[p-1] .. x[0]] x [x[N-1] .. x[0]].
            pad = w // 2 - s // 2
            rev = torch.flip(x, dims=[-1])
            if pad > 0:
                x = torch.cat((rev[:, -pad:], x, rev), dim=-1)
            else:
                x = torch.cat((x[:, -pad:], rev), dim=-1)
        if t <= 0:
            return x.new_zeros((x.shape[0], 0, w))
        if x.shape[-1] < (t - 1) * s + w:
            raise ValueError(f"clip of {x.shape[-1]} samples is too short for Kaldi framing")
        return x.unfold(-1, w, s)[:, :t]

    def _log_energy(self, frames: torch.Tensor) -> torch.Tensor:
        eps = torch.tensor(FLOAT_EPSILON, dtype=frames.dtype, device=frames.device)
        energy = torch.maximum(frames.square().sum(-1), eps).log()
        if self.energy_floor == 0.0:
            return energy
        return torch.clamp(energy, min=math.log(self.energy_floor))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(B, N)`` or ``(N,)`` (any scale; Kaldi uses int16 units, torchaudio
        users usually [-1, 1]) -> features ``(B, T, num_mel_bins [+1])``."""
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(
                f"Kaldi fbank expects waveforms (batch, samples) or (samples,), got "
                f"{tuple(waveform.shape)}"
            )
        x = waveform.to(self.dtype)
        frames = self._frames(x)  # (B, T, W)
        if frames.shape[1] == 0:  # shorter than one window (FFT libraries reject empty input)
            width = self.num_mel_bins + (1 if self.use_energy else 0)
            return x.new_zeros((x.shape[0], 0, width))
        if self.dither != 0.0 and self.training:
            frames = frames + torch.randn_like(frames) * self.dither
        if self.remove_dc_offset:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        energy = self._log_energy(frames) if self.use_energy and self.raw_energy else None
        if self.preemphasis_coefficient != 0.0:
            previous = torch.cat((frames[..., :1], frames[..., :-1]), dim=-1)
            frames = frames - self.preemphasis_coefficient * previous
        frames = frames * self.window.to(frames.dtype)
        if self.padded_window_size != self.window_size:
            frames = nn.functional.pad(frames, (0, self.padded_window_size - self.window_size))
        if self.use_energy and not self.raw_energy:
            energy = self._log_energy(frames)
        spec = torch.fft.rfft(frames, dim=-1)
        power = spec.real.square() + spec.imag.square()
        spectrum = power if self.use_power else power.sqrt()
        mel = torch.matmul(spectrum, self.mel_banks.to(spectrum.dtype))  # (B, T, bins)
        if self.use_log_fbank:
            eps = torch.tensor(FLOAT_EPSILON, dtype=mel.dtype, device=mel.device)
            mel = torch.maximum(mel, eps).log()
        if energy is not None:
            e = energy.unsqueeze(-1)
            mel = torch.cat((mel, e) if self.htk_compat else (e, mel), dim=-1)
        if self.subtract_mean and mel.shape[1] > 0:
            mel = mel - mel.mean(dim=1, keepdim=True)
        return mel


class ASTFrontend(nn.Module):
    """AST's input: waveforms ``(B, N)`` at 16 kHz -> normalised fbank ``(B, target_length, 128)``.

    Args:
        target_length: frames after zero-padding / cutting (1024 = 10.24 s for the AudioSet
            model); ``None`` keeps the natural ``1 + (N - 400) // 160`` frames (EVAR sets the
            model's ``input_tdim`` to that count instead).
        mean, std: normalisation ``(x - mean) / (2 std)``; AST's AudioSet statistics by
            default (EVAR computes them per task); ``normalize=False`` skips it.
        dtype: compute dtype of the fbank.

    Each row is one clip: its mean is removed over all ``N`` samples, so pad clips *after*
    this frontend (via ``target_length``), not before, to match AST on shorter clips.
    """

    def __init__(
        self,
        target_length: int | None = AST_TARGET_LENGTH,
        mean: float = AST_MEAN,
        std: float = AST_STD,
        normalize: bool = True,
        num_mel_bins: int = AST_NUM_MEL_BINS,
        sample_rate: int = AST_SAMPLE_RATE,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.target_length = target_length
        self.mean = mean
        self.std = std
        self.normalize = normalize
        self.sample_rate = sample_rate
        # torchaudio.compliance.kaldi.fbank(waveform, htk_compat=True, sample_frequency=sr,
        # use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)
        self.fbank = KaldiFbank(
            sample_frequency=float(sample_rate),
            frame_shift=10.0,
            num_mel_bins=num_mel_bins,
            window_type="hanning",
            dither=0.0,
            use_energy=False,
            htk_compat=True,
            dtype=dtype,
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` or ``(N,)`` float waveforms in [-1, 1] -> ``(B, T, 128)``."""
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        x = waveform.to(self.fbank.dtype)
        x = x - x.mean(dim=-1, keepdim=True)
        feats = self.fbank(x)
        if self.target_length is not None:
            n = feats.shape[1]
            if n < self.target_length:
                feats = nn.functional.pad(feats, (0, 0, 0, self.target_length - n))
            else:
                feats = feats[:, : self.target_length]
        if self.normalize:
            feats = (feats - self.mean) / (self.std * 2.0)
        return feats
