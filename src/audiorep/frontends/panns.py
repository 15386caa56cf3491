"""The PANNs log-mel frontend (torchlibrosa 0.1.0 ``Spectrogram`` + ``LogmelFilterBank``), in torch.

This is the frontend of PANNs' ``Cnn14_16k`` (qiuqiangkong/audioset_tagging_cnn), which builds it
with ``window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000`` at 16 kHz:

1. centred STFT: the waveform ``(B, N)`` is reflect-padded by ``n_fft // 2 = 256`` samples on
   both sides and cut into frames of 512 samples every 160 samples, ``T = 1 + N // 160``
   (frame ``t`` covers samples ``[160 t - 256, 160 t + 256)``); each frame is multiplied by a
   *periodic* Hann window of length 512 (``scipy.signal.get_window('hann', 512)``);
2. power spectrum ``re^2 + im^2`` of the 257 one-sided DFT bins -> ``(B, 1, T, 257)``;
3. librosa's Slaney mel filterbank (``librosa.filters.mel(sr=16000, n_fft=512, n_mels=64,
   fmin=50, fmax=8000)``: Slaney mel scale, area normalisation ``norm='slaney'``, built in float32
   as librosa does), written out here with NumPy so that librosa is not a dependency;
4. ``10 * log10(max(mel, amin)) - 10 * log10(max(amin, ref))`` with ``amin = 1e-10`` and
   ``ref = 1.0`` (so the second term is 0 and the floor is -100 dB), ``top_db=None`` (no
   dynamic-range clipping) -> ``(B, 1, T, 64)``, the tensor PANNs feeds to ``bn0``.

torchlibrosa computes the DFT as a ``Conv1d`` with float32 DFT kernels; ``method="conv"``
(default) reproduces that arithmetic (max 2e-5 dB from the reference on the fixtures),
``method="rfft"`` uses ``torch.fft.rfft``: the same maths with different float32 rounding,
faster, differing from the reference by up to ~0.1 dB but only in near-silent bins (below
-90 dB; <= 1.3e-4 dB above -40 dB). Numbers in docs/backbones.md.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 160
N_MELS = 64
FMIN = 50.0
FMAX = 8000.0
REF = 1.0
AMIN = 1e-10
TOP_DB: float | None = None

# Slaney's mel scale (librosa htk=False): linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3  # Hz per mel in the linear part
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel_slaney(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel of ``hz`` (librosa ``hz_to_mel(htk=False)``), float64."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / _F_SP
    log_part = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log_part, mel)


def mel_to_hz_slaney(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel_slaney` (librosa ``mel_to_hz(htk=False)``), float64."""
    mel = np.asarray(mel, dtype=np.float64)
    hz = _F_SP * mel
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log_part, hz)


@lru_cache(maxsize=8)
def slaney_mel_matrix(
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> np.ndarray:
    """librosa's ``filters.mel(sr, n_fft, n_mels, fmin, fmax)`` transposed, float32 (bins, mels).

    Triangles between consecutive Slaney-mel-spaced centre frequencies (in Hz, linear
    interpolation over the FFT bin frequencies), each scaled by ``2 / (f[i+2] - f[i])`` so
    that its area is constant ('slaney' normalisation). librosa fills a float32 array row by
    row and rescales it in place; the casts below follow it so the values agree to the bit.
    Read-only.
    """
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)  # (bins,)
    mel_edges = np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2)
    hz_edges = mel_to_hz_slaney(mel_edges)  # (n_mels + 2,) centre frequencies in Hz
    fdiff = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, fft_freqs.size), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(lower, upper))  # float64 -> float32 row
    enorm = 2.0 / (hz_edges[2 : n_mels + 2] - hz_edges[:n_mels])
    weights = (weights * enorm[:, None]).astype(np.float32)  # in-place *= in librosa
    out = np.ascontiguousarray(weights.T)
    out.setflags(write=False)
    return out


def periodic_hann(length: int) -> np.ndarray:
    """``scipy.signal.get_window('hann', length, fftbins=True)``: float64 ``(length,)``."""
    n = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


def num_frames(num_samples: int, hop_length: int = HOP_LENGTH) -> int:
    """Frames of the centred STFT: ``1 + num_samples // hop_length``."""
    return 1 + num_samples // hop_length


class PannsLogmel(nn.Module):
    """Waveforms ``(B, N)`` (or ``(N,)``) at 16 kHz -> log-mel ``(B, 1, T, 64)`` in dB.

    Defaults are PANNs' ``Cnn14_16k`` settings (module docstring); ``T = 1 + N // 160``.
    Differentiable, batched, runs on the input's device. Inputs need ``N > n_fft // 2``
    samples (reflect padding), i.e. at least 257 at the defaults.

    Args:
        sample_rate, n_fft, hop_length, n_mels, fmin, fmax: STFT and mel settings; the window
            length equals ``n_fft`` (torchlibrosa's default, used by every PANNs model).
        ref, amin, top_db: ``power_to_db`` settings. ``top_db`` (default ``None``) clips at
            ``max - top_db`` with the max taken over the whole batch, as torchlibrosa does.
        method: ``"conv"`` (default: torchlibrosa's float32 DFT-as-convolution arithmetic,
            which reproduces the reference to ~1e-5 dB) or ``"rfft"`` (``torch.fft.rfft``:
            2-5x faster frontend, differences up to ~0.1 dB in near-silent bins only).
        dtype: compute dtype (float32 as the reference; float64 for a more accurate result).

    Buffers: ``window`` ``(n_fft,)``, ``mel_matrix`` ``(n_fft // 2 + 1, n_mels)`` and, for
    ``method="conv"``, ``dft_real``/``dft_imag`` ``(n_fft // 2 + 1, 1, n_fft)``.
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = N_FFT,
        hop_length: int = HOP_LENGTH,
        n_mels: int = N_MELS,
        fmin: float = FMIN,
        fmax: float = FMAX,
        ref: float = REF,
        amin: float = AMIN,
        top_db: float | None = TOP_DB,
        method: str = "conv",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if method not in ("rfft", "conv"):
            raise ValueError(f"method must be 'rfft' or 'conv', got {method!r}")
        if top_db is not None and top_db < 0:
            raise ValueError(f"top_db must be non-negative, got {top_db}")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.ref = ref
        self.amin = amin
        self.top_db = top_db
        self.method = method
        self.dtype = dtype
        window = periodic_hann(n_fft)
        mel = slaney_mel_matrix(sample_rate, n_fft, n_mels, fmin, fmax)
        # float32 buffers as the reference stores them; promoted to float64 on demand.
        self.register_buffer(
            "window", torch.from_numpy(window.astype(np.float32)), persistent=False
        )
        self.register_buffer("mel_matrix", torch.from_numpy(mel.copy()), persistent=False)
        if method == "conv":
            # torchlibrosa: W[k, n] = exp(-2 pi i k n / N) times the window, in float64, then
            # stored as float32 conv kernels (out = 257 bins, in = 1, kernel = n_fft).
            k = np.arange(n_fft // 2 + 1)[:, None]
            n = np.arange(n_fft)[None, :]
            w = np.exp(-2j * np.pi * k * n / n_fft) * window[None, :]
            self.register_buffer(
                "dft_real",
                torch.from_numpy(np.real(w).astype(np.float32))[:, None, :],
                persistent=False,
            )
            self.register_buffer(
                "dft_imag",
                torch.from_numpy(np.imag(w).astype(np.float32))[:, None, :],
                persistent=False,
            )
        # 10 log10(max(amin, ref)): 0 for ref = 1.
        self._db_offset = float(10.0 * np.log10(max(amin, ref)))

    def _check(self, waveform: torch.Tensor) -> torch.Tensor:
        if waveform.dim() == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.dim() != 2:
            raise ValueError(
                f"PANNs frontend expects waveforms (batch, samples) or (samples,), got "
                f"{tuple(waveform.shape)}"
            )
        if waveform.shape[-1] <= self.n_fft // 2:
            raise ValueError(
                f"PANNs frontend needs more than {self.n_fft // 2} samples per clip for its "
                f"reflect padding, got {waveform.shape[-1]}; pad the clip first"
            )
        return waveform.to(self.dtype)

    def spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """Power spectrogram ``(B, 1, T, n_fft // 2 + 1)`` of ``(B, N)`` waveforms."""
        x = self._check(waveform)
        half = self.n_fft // 2
        x = nn.functional.pad(x[:, None, :], (half, half), mode="reflect")  # (B, 1, N + n_fft)
        if self.method == "conv":
            real = nn.functional.conv1d(x, self.dft_real.to(x.dtype), stride=self.hop_length)
            imag = nn.functional.conv1d(x, self.dft_imag.to(x.dtype), stride=self.hop_length)
            power = real.square() + imag.square()  # (B, bins, T)
            return power.transpose(1, 2)[:, None]
        frames = x[:, 0].unfold(-1, self.n_fft, self.hop_length)  # (B, T, n_fft)
        spec = torch.fft.rfft(frames * self.window.to(x.dtype), dim=-1)
        return (spec.real.square() + spec.imag.square())[:, None]  # (B, 1, T, bins)

    def power_to_db(self, power_mel: torch.Tensor) -> torch.Tensor:
        """torchlibrosa's ``power_to_db``: ``10 log10(max(x, amin))`` minus the ref term."""
        log_spec = 10.0 * torch.log10(torch.clamp(power_mel, min=self.amin))
        if self._db_offset:
            log_spec = log_spec - self._db_offset
        if self.top_db is not None:
            # Global max over the whole batch tensor, as torchlibrosa (not per item).
            log_spec = torch.clamp(log_spec, min=log_spec.max().item() - self.top_db)
        return log_spec

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` waveforms in [-1, 1] -> log-mel ``(B, 1, 1 + N // hop, n_mels)`` in dB."""
        power = self.spectrogram(waveform)
        mel = torch.matmul(power, self.mel_matrix.to(power.dtype))
        return self.power_to_db(mel)
