"""Griffin-Lim: a waveform from the authors' [0, 1] mel spectrogram without a vocoder.

The fallback when no MelGAN is at hand (the authors' sampling tool offers it too). Undo the
spectrogram steps of :mod:`audiorep.frontends.specvqgan` that can be undone: ``[0, 1] -> dB ->
mel magnitude``, then map the 80 mel bands back to the 513 STFT bins with the filterbank's
non-negative least-squares pseudo-inverse, and recover a phase by Griffin-Lim iterations
(with the "fast" momentum of Perraudin et al. 2013) on the same STFT (n_fft 1024, hop 256,
periodic Hann, centred). The clip at 0 (below -100 dB re the 1e-5 floor) and at 1 cannot be
undone; quality is what Griffin-Lim gives: intelligible, phasey.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from audiorep.frontends.specvqgan import (
    DYNAMIC_RANGE_DB,
    HOP_LENGTH,
    N_FFT,
    N_MELS,
    REF_DB,
    mel_basis,
)


@lru_cache(maxsize=1)
def _inverse_basis() -> np.ndarray:
    """``(513, 80)`` float64: bins from mel bands by the pseudo-inverse, clipped at 0."""
    return np.linalg.pinv(mel_basis().astype(np.float64))


def mel_to_magnitude(spec: torch.Tensor) -> torch.Tensor:
    """``(..., 80, T)`` [0, 1] spectrogram -> ``(..., 513, T)`` STFT magnitude estimate."""
    if spec.shape[-2] != N_MELS:
        raise ValueError(f"expected (..., {N_MELS}, frames) spectrograms, got {tuple(spec.shape)}")
    db = spec.to(torch.float64) * DYNAMIC_RANGE_DB - DYNAMIC_RANGE_DB + REF_DB
    mel = torch.pow(10.0, db / 20.0)
    inv = torch.from_numpy(_inverse_basis()).to(spec.device)
    return torch.clamp(inv @ mel, min=0.0)


def griffin_lim(
    spec: torch.Tensor | np.ndarray,
    iterations: int = 64,
    momentum: float = 0.99,
    seed: int = 0,
) -> torch.Tensor:
    """Waveform ``(..., 256 * (T - 1))`` float32 at 22 050 Hz from ``(..., 80, T)`` [0, 1]
    spectrograms (the authors' scale; a [-1, 1] model output must be mapped by ``(x+1)/2``
    first). ``seed`` fixes the initial random phase."""
    spec = torch.as_tensor(spec)
    lead = spec.shape[:-2]
    mag = mel_to_magnitude(spec.reshape(-1, *spec.shape[-2:]))  # (B, 513, T) float64
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64, device=mag.device)
    length = HOP_LENGTH * (mag.shape[-1] - 1)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    phase = torch.rand(mag.shape, generator=gen, dtype=torch.float64).to(mag.device)
    angles = torch.polar(torch.ones_like(mag), 2 * np.pi * phase)
    stft = {"n_fft": N_FFT, "hop_length": HOP_LENGTH, "window": window, "center": True}
    previous = torch.zeros_like(angles)
    for _ in range(iterations):
        wave = torch.istft(mag * angles, length=length, **stft)
        rebuilt = torch.stft(wave, return_complex=True, pad_mode="reflect", **stft)
        step = rebuilt - (momentum / (1 + momentum)) * previous if momentum else rebuilt
        previous = rebuilt
        angles = step / step.abs().clamp(min=1e-16)
    wave = torch.istft(mag * angles, length=length, **stft)
    return wave.to(torch.float32).reshape(*lead, length)


__all__ = ["griffin_lim", "mel_to_magnitude"]
