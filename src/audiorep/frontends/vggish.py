"""The VGGish log-mel frontend, exact to the reference ``vggish_input.waveform_to_examples``.

Pipeline (reference constants from ``vggish_params``):

1. mix channels to mono (mean), resample to 16 kHz with resampy ``kaiser_best``
   (:mod:`audiorep.resample`);
2. frames of 400 samples (25 ms) every 160 samples (10 ms), no centring or padding, incomplete
   frames dropped; periodic Hann window; magnitude of a 512-point real FFT;
3. 64 HTK-mel bands between 125 and 7500 Hz (triangles in mel space, no area normalisation, DC
   weight zero); ``log(mel + 0.01)``;
4. examples of 96 frames hopping 96 frames (0.96 s, no overlap); the tail is dropped.

Other windowings (:class:`Windowing`): a shorter hop for overlapping examples (``--hop``), and
google-research FAD's: whole 1 s windows every 0.5 s, each clip first divided by
``max(0.1, max sample)`` (:data:`GOOGLE_FAD_WINDOWING`).

Consequences users trip over, kept deliberately for parity: at 16 kHz ``n`` samples give
``floor((n - 240) / 15360)`` examples, so exactly ``k x 0.96 s`` gives ``k - 1`` examples and
anything under 0.975 s (15 600 samples) gives none. The reference raises ``ValueError`` for
fewer than 240 samples; we return an empty ``(0, 96, 64)`` batch with a warning instead.

The reference computes in float64; so does this module by default (max deviation from the
golden examples 2.4e-7, the float32 storage limit). ``dtype=torch.float32`` is a faster path:
its error is up to ~1e-3 on pure tones and ~2e-5 on noise (see docs/frontend.md).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from audiorep.audio import check_waveform
from audiorep.resample import output_length, resample

SAMPLE_RATE = 16000
WINDOW_LENGTH = 400  # round(0.025 * 16000)
HOP_LENGTH = 160  # round(0.010 * 16000)
FFT_LENGTH = 512  # 2 ** ceil(log2(400))
NUM_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # round(0.96 / 0.010)
EXAMPLE_HOP_FRAMES = 96
EXAMPLE_SECONDS = EXAMPLE_FRAMES * HOP_LENGTH / SAMPLE_RATE  # 0.96
MIN_SAMPLES_16K = WINDOW_LENGTH - HOP_LENGTH  # 240: below this the reference raises
EXAMPLE_SAMPLES = (EXAMPLE_FRAMES - 1) * HOP_LENGTH + WINDOW_LENGTH  # 15 600
PEAK_NORMALIZE_FLOOR = 0.1  # google-research FAD: at most +20 dB of gain


def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``1127 * ln(1 + f / 700)``."""
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


@lru_cache(maxsize=8)
def mel_matrix(
    num_bands: int = NUM_BANDS,
    num_spectrogram_bins: int = FFT_LENGTH // 2 + 1,
    sample_rate: int = SAMPLE_RATE,
    lower_hz: float = MEL_MIN_HZ,
    upper_hz: float = MEL_MAX_HZ,
) -> np.ndarray:
    """The reference's ``spectrogram_to_mel_matrix``: float64 ``(bins, bands)``, read-only."""
    nyquist = sample_rate / 2.0
    bin_mel = hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))
    edges = np.linspace(hertz_to_mel(lower_hz), hertz_to_mel(upper_hz), num_bands + 2)
    lo, centre, hi = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel[:, None] - lo) / (centre - lo)
    falling = (hi - bin_mel[:, None]) / (hi - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the reference zeroes the DC bin explicitly
    weights.setflags(write=False)
    return weights


@dataclass(frozen=True)
class Windowing:
    """How examples are cut from a clip's log-mel frames.

    Attributes:
        hop_frames: 10 ms frames between example starts; 96 (0.96 s, no overlap) is the
            reference, smaller values give overlapping examples.
        window_samples: ``None``: an example exists when its 96 frames exist (15 600 samples
            from its start, the reference rule). An int: it needs that many samples from its
            start (google-research FAD cuts whole 16 000-sample windows, so its last 0.4 s
            window is dropped where the reference would keep it).
        peak_normalize: divide each clip (at 16 kHz) by ``max(0.1, max sample)`` first, as
            google-research FAD does (the positive peak, not the absolute one; quiet clips are
            boosted by at most 20 dB).
    """

    hop_frames: int = EXAMPLE_HOP_FRAMES
    window_samples: int | None = None
    peak_normalize: bool = False

    def __post_init__(self) -> None:
        if int(self.hop_frames) != self.hop_frames or self.hop_frames < 1:
            raise ValueError(f"hop_frames must be a positive integer, got {self.hop_frames!r}")
        if self.window_samples is not None and self.window_samples < EXAMPLE_SAMPLES:
            raise ValueError(
                f"window_samples must be >= {EXAMPLE_SAMPLES} (96 frames), "
                f"got {self.window_samples}"
            )

    @classmethod
    def from_hop_seconds(cls, hop_seconds: float, **kwargs) -> Windowing:
        """A windowing with the hop given in seconds (a multiple of the 10 ms frame hop)."""
        frames = hop_seconds * SAMPLE_RATE / HOP_LENGTH
        if not math.isfinite(frames) or frames < 0.5 or abs(frames - round(frames)) > 1e-6:
            raise ValueError(
                f"hop must be a positive multiple of 0.01 s (the frame hop), got {hop_seconds}"
            )
        return cls(hop_frames=round(frames), **kwargs)

    @property
    def hop_seconds(self) -> float:
        return self.hop_frames * HOP_LENGTH / SAMPLE_RATE

    def num_examples(self, num_samples_16k: int) -> int:
        """Examples of a clip of ``num_samples_16k`` samples at 16 kHz (>= 0)."""
        n = int(num_samples_16k)
        if self.window_samples is not None:
            if n < self.window_samples:
                return 0
            return 1 + (n - self.window_samples) // (self.hop_frames * HOP_LENGTH)
        frames = 1 + (n - WINDOW_LENGTH) // HOP_LENGTH if n >= WINDOW_LENGTH else 0
        return 0 if frames < EXAMPLE_FRAMES else 1 + (frames - EXAMPLE_FRAMES) // self.hop_frames

    def as_dict(self) -> dict[str, object]:
        return {"hop_seconds": self.hop_seconds, **asdict(self)}


#: The reference: 0.96 s examples, no overlap, no normalisation.
VGGISH_WINDOWING = Windowing()
#: google-research FAD: 1 s windows every 0.5 s, peak-normalised clips.
GOOGLE_FAD_WINDOWING = Windowing(hop_frames=50, window_samples=SAMPLE_RATE, peak_normalize=True)


def num_examples_for(num_samples_16k: int, windowing: Windowing = VGGISH_WINDOWING) -> int:
    """Examples the reference yields for ``num_samples_16k`` samples at 16 kHz (>= 0)."""
    return windowing.num_examples(num_samples_16k)


def example_timestamps(num_examples: int, hop_seconds: float = EXAMPLE_SECONDS) -> np.ndarray:
    """Start times in seconds of each example, float64 ``(N,)``: ``k * hop_seconds``.

    Example ``k`` covers ``[k * hop, k * hop + 0.975)`` s of the 16 kHz signal (96 frames of
    10 ms hop plus the 15 ms window tail); its centre is at ``start + 0.4875`` s.
    """
    return np.arange(num_examples, dtype=np.float64) * hop_seconds


class VGGishFrontend(nn.Module):
    """Batched VGGish frontend: waveforms ``(batch, samples)`` -> log-mel examples.

    Args:
        dtype: computation dtype. ``torch.float64`` (default) matches the reference to
            ~1e-7; ``torch.float32`` is faster, with errors up to ~1e-3 on pure tones.
        windowing: how examples are cut (default: the reference's 0.96 s, no overlap).

    All operations are tensor ops (matmul resampler, ``unfold``, ``rfft``), so it runs on any
    device and is differentiable with respect to the waveform.
    """

    def __init__(self, dtype: torch.dtype = torch.float64, windowing: Windowing = VGGISH_WINDOWING):
        super().__init__()
        self.dtype = dtype
        self.windowing = windowing
        self.register_buffer(
            "window", torch.hann_window(WINDOW_LENGTH, periodic=True, dtype=torch.float64),
            persistent=False,
        )  # fmt: skip
        self.register_buffer("mel", torch.from_numpy(np.array(mel_matrix())), persistent=False)

    def log_mel(self, waveform_16k: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` at 16 kHz -> log-mel ``(batch, frames, 64)``.

        ``frames = 1 + (samples - 400) // 160`` (0 below 400 samples).
        """
        x = waveform_16k.to(self.dtype)
        batch, n = x.shape
        if n < WINDOW_LENGTH:
            return x.new_zeros((batch, 0, NUM_BANDS))
        frames = x.unfold(-1, WINDOW_LENGTH, HOP_LENGTH) * self.window.to(x.dtype)
        # Zero-padding to the FFT length ourselves and taking |X| as a norm over (re, im) is
        # ~2x faster than rfft(n=512) + complex abs, with the same values to ~1 ulp.
        frames = nn.functional.pad(frames, (0, FFT_LENGTH - WINDOW_LENGTH))
        spectrum = torch.linalg.vector_norm(torch.view_as_real(torch.fft.rfft(frames)), dim=-1)
        return torch.log(spectrum @ self.mel.to(x.dtype) + LOG_OFFSET)

    def frame_examples(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, 64)`` -> ``(batch, N, 96, 64)`` examples every ``hop_frames``."""
        batch, frames, bands = log_mel.shape
        if frames < EXAMPLE_FRAMES:
            return log_mel.new_zeros((batch, 0, EXAMPLE_FRAMES, bands))
        return log_mel.unfold(1, EXAMPLE_FRAMES, self.windowing.hop_frames).transpose(-1, -2)

    def forward(
        self,
        waveform: torch.Tensor,
        sample_rate: int = SAMPLE_RATE,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Turn a padded batch of mono waveforms into examples.

        Args:
            waveform: ``(batch, samples)`` mono, zero-padded beyond each item's length.
            sample_rate: of ``waveform``, Hz (resampled to 16 kHz when different).
            lengths: ``(batch,)`` valid samples per item; ``None`` means all of them.

        Returns:
            ``examples (total, 96, 64)`` for all items concatenated in order, and
            ``counts (batch,)`` examples per item (``torch.split(examples, counts.tolist())``
            gives each item's examples). Item ``i`` gets exactly what
            :func:`waveform_to_examples` gives it on its own.
        """
        if waveform.dim() != 2:
            raise ValueError(
                f"VGGishFrontend expects (batch, samples), got shape {tuple(waveform.shape)}"
            )
        batch, n = waveform.shape
        if lengths is None:
            lengths = torch.full((batch,), n, dtype=torch.long)
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        x = waveform.to(self.dtype)
        if sample_rate != SAMPLE_RATE:
            if lengths.numel() and int(lengths.min()) < n:
                # Samples past an item's end must be zero for its resampling to be exact.
                mask = torch.arange(n, device=x.device)[None, :] < lengths.to(x.device)[:, None]
                x = x * mask
            x = resample(x, int(sample_rate), SAMPLE_RATE)
            lengths = torch.tensor(
                [output_length(int(k), sample_rate, SAMPLE_RATE) for k in lengths]
            )
        if self.windowing.peak_normalize:
            # Samples past an item's end are zero and the floor is positive: they never win.
            peak = x.amax(dim=-1, keepdim=True) if n else x.new_zeros((batch, 1))
            x = x / peak.clamp_min(PEAK_NORMALIZE_FLOOR)
        win = self.windowing
        counts = torch.tensor([win.num_examples(int(k)) for k in lengths], dtype=torch.long)
        most = int(counts.max()) if batch else 0
        if most == 0:
            return x.new_zeros((0, EXAMPLE_FRAMES, NUM_BANDS)), counts
        used = (most - 1) * win.hop_frames * HOP_LENGTH + EXAMPLE_SAMPLES
        # Only the samples that complete examples matter; frames never read past an
        # item's own length because counts come from that length.
        examples = self.frame_examples(self.log_mel(x[:, : min(used, x.shape[1])]))
        keep = torch.arange(examples.shape[1])[None, :] < counts[:, None]
        return examples[keep.to(examples.device)], counts


def _as_mono_tensor(waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(waveform) if not isinstance(waveform, torch.Tensor) else waveform
    if not torch.is_floating_point(x):
        if x.dtype == torch.int16:
            x = x.to(torch.float64) / 32768.0  # the reference's WAV scaling
        else:
            raise TypeError(f"expected a float or int16 waveform, got dtype {x.dtype}")
    if x.dim() == 1:
        return x
    if x.dim() == 2:
        channels, samples = x.shape
        if channels > samples:
            raise ValueError(
                f"waveform of shape {tuple(x.shape)} looks like (samples, channels), the "
                "reference's layout; audiorep takes (channels, samples): pass waveform.T"
            )
        return x.to(torch.float64).mean(dim=0) if channels > 1 else x[0]
    raise ValueError(f"expected (samples,) or (channels, samples), got {tuple(x.shape)}")


def waveform_to_examples(
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    windowing: Windowing = VGGISH_WINDOWING,
) -> torch.Tensor:
    """One clip -> VGGish examples ``(N, 96, 64)``, as ``vggish_input.waveform_to_examples``.

    Args:
        waveform: numpy array or tensor, ``(samples,)`` or ``(channels, samples)``; float in
            [-1, 1] or int16 (scaled by 1/32768 like the reference's WAV reader). Note the
            reference takes ``(samples, channels)``; a 2-D input with more rows than columns
            is rejected as transposed. Channels are averaged.
        sample_rate: Hz; resampled to 16 kHz with resampy-exact ``kaiser_best``.
        dtype: computation and output dtype (float64 = reference precision).
        device: where to compute (default: the waveform's device).
        windowing: example hop and window rule (default: the reference's).

    Returns:
        ``(N, 96, 64)`` log-mel examples; with the default windowing
        ``N = floor((n16k - 240) / 15360)`` where ``n16k`` is the length at 16 kHz.
        Fewer than 240 samples at 16 kHz gives ``(0, 96, 64)`` with a warning (the reference
        raises ``ValueError`` there).
    """
    x = check_waveform(_as_mono_tensor(waveform), sample_rate)
    if device is not None:
        x = x.to(device)
    n16k = output_length(x.shape[-1], int(sample_rate), SAMPLE_RATE)
    if n16k < MIN_SAMPLES_16K:
        warnings.warn(
            f"waveform too short for VGGish: {x.shape[-1]} samples at {sample_rate} Hz "
            f"({n16k} at 16 kHz, need >= {MIN_SAMPLES_16K} for a spectrogram and >= 15600 "
            "for one example); returning no examples",
            stacklevel=2,
        )
        return torch.zeros((0, EXAMPLE_FRAMES, NUM_BANDS), dtype=dtype, device=x.device)
    frontend = _frontend_for(dtype, windowing).to(x.device)
    examples, _ = frontend(x.to(dtype)[None, :], int(sample_rate))
    return examples


@lru_cache(maxsize=8)
def _frontend_for(dtype: torch.dtype, windowing: Windowing) -> VGGishFrontend:
    # Built outside inference mode even when first asked for inside it: a cached frontend
    # with inference-tensor buffers would break every later differentiable call.
    with torch.inference_mode(False):
        return VGGishFrontend(dtype, windowing)


__all__ = [
    "VGGishFrontend",
    "Windowing",
    "VGGISH_WINDOWING",
    "GOOGLE_FAD_WINDOWING",
    "waveform_to_examples",
    "mel_matrix",
    "num_examples_for",
    "example_timestamps",
    "EXAMPLE_SECONDS",
    "SAMPLE_RATE",
]
