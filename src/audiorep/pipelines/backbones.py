"""CNN14 (PANNs) and AST bundles on the :class:`~audiorep.pipelines.base.Bundle` surface.

``load_backbone("cnn14" | "ast", weights=...)`` returns a bundle holding a frontend, a frozen
model and a description of its weights, with:

* ``embed(waveform, sample_rate)`` -> float32 ``(N, D)``: one row per *analysis unit*;
* ``embed_clip(waveform, sample_rate)`` -> ``(D,)``: one clip-level vector;
* ``fusion(waveform, sample_rate)`` -> ``(D_fusion,)``: the paper's clip-level fusion feature
  (CNN14-Fusion#3#6, 6144-d; AST-Fusion#5#12, 1536-d);
* ``settings()`` (the keys of ``VGGishBundle.settings()``, so the embedding caches key on them
  unchanged) and ``weights_fingerprint()``.

Analysis units (``N``; ``windowing_settings()`` of each bundle):

* **CNN14**: PANNs runs the network over the whole clip (its global max + mean pooling over
  time makes any length valid), so ``N = 1``. Clips shorter than 4960 samples at 16 kHz (the
  network's 32-frame minimum, 0.31 s) are zero-padded to that length. Memory grows linearly
  with the clip length (a 10 min clip needs a few GB); cut long recordings yourself.
* **AST**: the AudioSet model takes exactly 1024 fbank frames (10.24 s). The clip's mean is
  removed over the whole clip and its fbank computed once (``T = 1 + (n - 400) // 160``
  frames); windows of 1024 frames start every ``hop_frames`` (default 1024: no overlap,
  10.24 s) until every frame is covered, ``N = 1 + ceil(max(0, T - 1024) / hop)``; the last
  (or only) window is zero-padded *before* normalisation, exactly as AST's dataloader pads a
  short clip. A clip of at most 10.24 s therefore gives one window identical to AST's own
  input. ``embed_clip``/``fusion`` average over the windows.

Inputs: ``(samples,)`` or ``(channels, samples)`` float in [-1, 1] (or int16, scaled by
1/32768), any sample rate; channels are averaged, the audio is resampled to 16 kHz with the
resampy-exact ``kaiser_best`` resampler (:func:`audiorep.resample.resample`, in float64).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiorep.audio import check_waveform
from audiorep.features.fusion import GeneralPurposeAST, GeneralPurposeCnn14
from audiorep.frontends.kaldi_fbank import AST_TARGET_LENGTH, ASTFrontend
from audiorep.frontends.panns import PannsLogmel
from audiorep.hashing import state_dict_sha256 as state_fingerprint
from audiorep.models.ast import AST
from audiorep.models.cnn14 import TIME_REDUCTION, Cnn14
from audiorep.pipelines.base import (
    RANDOM_WEIGHTS,
    RESAMPLER,
    Bundle,
    Frames,
    WeightsUnavailableError,
    model_from_state,
    random_weights_description,
)
from audiorep.pipelines.registry import BundleSpec, register

SAMPLE_RATE = 16000
#: Smallest clip CNN14 accepts: 32 log-mel frames, ``T = 1 + n // 160`` -> 4960 samples.
CNN14_MIN_SAMPLES = (TIME_REDUCTION - 1) * 160
#: Kaldi framing needs one whole 25 ms frame.
AST_MIN_SAMPLES = 400
AST_FRAME_SHIFT = 160  # samples (10 ms)
#: Registry entries tried, in order, for ``weights=None`` (cached files only, never downloaded).
PRETRAINED_ENTRIES = {"cnn14": ("cnn14-16k",), "ast": ("ast-audioset", "ast-audioset-hf")}
_CONVERTERS = {"cnn14": ("panns_cnn14",), "ast": ("ast", "ast_hf")}
BACKBONES = ("cnn14", "ast")


# ----------------------------------------------------------------------------- helpers


def prepare_waveform(waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
    """One clip -> mono float32 ``(n,)`` at 16 kHz (channels averaged, resampled if needed).

    Args:
        waveform: ``(samples,)`` or ``(channels, samples)``; float in [-1, 1] or int16.
        sample_rate: its rate in Hz.

    Raises:
        ValueError: other shapes, or a 2-D array with more rows than columns (it looks like
            ``(samples, channels)``; pass ``waveform.T``).
    """
    x = torch.as_tensor(waveform) if not isinstance(waveform, torch.Tensor) else waveform
    check_waveform(x, sample_rate)
    if not torch.is_floating_point(x):
        if x.dtype != torch.int16:
            raise TypeError(f"expected a float or int16 waveform, got dtype {x.dtype}")
        x = x.to(torch.float64) / 32768.0
    if x.dim() == 2:
        if x.shape[0] > x.shape[1]:
            raise ValueError(
                f"waveform of shape {tuple(x.shape)} looks like (samples, channels); audiorep "
                "takes (channels, samples): pass waveform.T"
            )
        x = x.to(torch.float64).mean(dim=0)
    elif x.dim() != 1:
        raise ValueError(f"expected (samples,) or (channels, samples), got {tuple(x.shape)}")
    if int(sample_rate) != SAMPLE_RATE:
        from audiorep.resample import resample

        # float64: resampy-exact; the result is cast to the models' float32 afterwards.
        x = resample(x.to(torch.float64), int(sample_rate), SAMPLE_RATE)
    return x.to(torch.float32)


def _mean_rows(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=0)


class _BackboneBundle(Bundle):
    """Shared plumbing of CNN14 and AST: device moves, settings."""

    sample_rate = SAMPLE_RATE
    precision = "float32"

    frontend: nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device):
        """Move model and frontend to ``device``; returns the bundle."""
        self.model.to(device)
        self.frontend.to(device)
        return self

    def describe_units(self) -> str:
        return str(self.windowing_settings()["policy"])

    @property
    def frontend_dtype(self) -> torch.dtype:  # pragma: no cover - abstract
        raise NotImplementedError

    def settings(self) -> dict[str, object]:
        """Everything that determines the embeddings (JSON-serialisable): the keys of
        ``VGGishBundle.settings()``, so caches keyed on them work unchanged."""
        return {
            "model": self.name,
            "weights": self.weights_description,
            "weights_sha256": self.weights_fingerprint(),
            "pretrained": self.pretrained,
            "final_relu": False,  # no VGGish-style embedding ReLU option on these models
            "frontend_dtype": str(self.frontend_dtype).replace("torch.", ""),
            "precision": self.precision,
            "windowing": self.windowing_settings(),
            "resampler": RESAMPLER,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weights={self.weights_description!r}, device={self.device})"


# ----------------------------------------------------------------------------- CNN14


class Cnn14Bundle(_BackboneBundle):
    """PANNs CNN14 (16 kHz) frontend + model with their weights.

    Attributes:
        sample_rate: 16000.
        embedding_size: 2048 (PANNs' ``embedding`` = ReLU(fc1)).
        model: :class:`~audiorep.models.cnn14.Cnn14` in eval mode.
        frontend: :class:`~audiorep.frontends.panns.PannsLogmel` (torchlibrosa's conv DFT).
        weights_description: a path, registry name, or ``"seeded random weights (seed=S) ..."``.
        pretrained: False for seeded random weights.

    ``embed`` gives one row per clip (``N = 1``): PANNs runs the whole clip through the
    network; clips under 4960 samples at 16 kHz are zero-padded to 4960.
    """

    name = "cnn14"
    embedding_size = 2048
    #: CNN14-Fusion#3#6 (6144-d), the paper's choice.
    default_fusion_layers: tuple[int | str, ...] = (3, 6)

    def __init__(
        self,
        model: Cnn14,
        weights_description: str,
        device: str | torch.device = "cpu",
        pretrained: bool = True,
    ) -> None:
        super().__init__(weights_description, pretrained)
        self.model = model.eval()
        self.frontend = PannsLogmel()
        self.to(device)

    @property
    def frontend_dtype(self) -> torch.dtype:
        return self.frontend.dtype

    def windowing_settings(self) -> dict[str, object]:
        return {
            "policy": "whole clip, one embedding per clip",
            "min_samples": CNN14_MIN_SAMPLES,
            "short_clips": "zero-padded to min_samples",
            "frontend": f"panns-logmel-{self.frontend.method}",
        }

    def logmel(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip -> PANNs log-mel ``(1, 1, T, 64)`` in dB, ``T = 1 + n // 160``
        (``n`` = samples at 16 kHz after padding to at least 4960)."""
        x = prepare_waveform(waveform, sample_rate).to(self.device)
        if x.shape[-1] < CNN14_MIN_SAMPLES:
            x = nn.functional.pad(x, (0, CNN14_MIN_SAMPLES - x.shape[-1]))
        return self.frontend(x[None])

    @torch.inference_mode()
    def embed(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip -> float32 ``(1, 2048)``: PANNs' ``embedding`` of the whole clip."""
        return self.model(self.logmel(waveform, sample_rate)).float()

    def embed_clip(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip -> ``(2048,)`` (the single row of :meth:`embed`)."""
        return self.embed(waveform, sample_rate)[0]

    def unit_starts(self, num_units: int) -> np.ndarray:
        """The whole clip is one unit, starting at 0 s."""
        return np.zeros(num_units, dtype=np.float64)

    def frames(
        self, *, hop_seconds: float | None = None, batch_size: int | None = None
    ) -> Cnn14Frames:
        """conv_block6 frames every 0.32 s (:class:`Cnn14Frames`); the hop is the network's."""
        _fixed_hop("cnn14", hop_seconds)
        return Cnn14Frames(self, DEFAULT_FRAME_BATCH_SIZE if batch_size is None else batch_size)

    def fusion_module(self, layers: Sequence[int | str] | None = None) -> GeneralPurposeCnn14:
        """The CNN14-Fusion module on this model (default layers ``[3, 6]``)."""
        return GeneralPurposeCnn14(self.model, layers or self.default_fusion_layers)

    @torch.inference_mode()
    def fusion(
        self,
        waveform: np.ndarray | torch.Tensor,
        sample_rate: int,
        layers: Sequence[int | str] | None = None,
    ) -> torch.Tensor:
        """One clip -> CNN14-Fusion sample-level feature ``(D,)`` (6144 for ``[3, 6]``):
        block outputs max-pooled along time to ``T // 32`` frames, then max_t + mean_t (EVAR's
        ``AR_Cnn14_Fusion``)."""
        return self.fusion_module(layers)(self.logmel(waveform, sample_rate))[0].float()


# ----------------------------------------------------------------------------- AST


class ASTBundle(_BackboneBundle):
    """Audio Spectrogram Transformer (AudioSet, 10.24 s input) frontend + model + weights.

    Attributes:
        sample_rate: 16000.
        embedding_size: 768 (``(cls + dist) / 2`` after the final LayerNorm).
        model: :class:`~audiorep.models.ast.AST` (``input_tdim`` frames per window, 1024).
        frontend: :class:`~audiorep.frontends.kaldi_fbank.ASTFrontend` padding/cutting to
            ``model.input_tdim`` frames: ``model(frontend(x))`` is AST on a clip of at most
            10.24 s.
        hop_frames: frames between window starts (default: ``model.input_tdim``, no overlap).
        batch_size: windows per model call.

    ``embed`` gives one row per 10.24 s window (module docstring).
    """

    name = "ast"
    embedding_size = 768
    #: AST-Fusion#5#12 (1536-d), the paper's choice (0-based blocks).
    default_fusion_layers: tuple[int | str, ...] = (4, 11)

    def __init__(
        self,
        model: AST,
        weights_description: str,
        device: str | torch.device = "cpu",
        pretrained: bool = True,
        hop_frames: int | None = None,
        batch_size: int = 4,
    ) -> None:
        super().__init__(weights_description, pretrained)
        self.model = model.eval()
        self.embedding_size = model.embedding_size
        self.frontend = ASTFrontend(target_length=model.input_tdim)
        self.window_frames = int(model.input_tdim)
        self.hop_frames = int(hop_frames or self.window_frames)
        if self.hop_frames < 1:
            raise ValueError(f"hop_frames must be >= 1, got {hop_frames}")
        self.batch_size = int(batch_size)
        self.to(device)

    @property
    def frontend_dtype(self) -> torch.dtype:
        return self.frontend.fbank.dtype

    def windowing_settings(self) -> dict[str, object]:
        shift = AST_FRAME_SHIFT / SAMPLE_RATE
        return {
            "policy": "fbank windows, one embedding per window",
            "window_frames": self.window_frames,
            "hop_frames": self.hop_frames,
            "window_seconds": round(self.window_frames * shift, 6),
            "hop_seconds": round(self.hop_frames * shift, 6),
            "mean_removal": "whole clip",
            "last_window": "zero-padded before normalisation (as AST pads short clips)",
            "normalization": {"mean": self.frontend.mean, "std": self.frontend.std},
        }

    def num_windows(self, num_frames: int) -> int:
        """Windows for a clip of ``num_frames`` fbank frames: ``1 + ceil(max(0, T - W) / hop)``."""
        extra = max(0, int(num_frames) - self.window_frames)
        return 1 + math.ceil(extra / self.hop_frames)

    def window_starts(self, num_frames: int) -> np.ndarray:
        """Start time in seconds of each window, float64 ``(N,)`` (``k * hop * 0.01``)."""
        hop_s = self.hop_frames * AST_FRAME_SHIFT / SAMPLE_RATE
        return np.arange(self.num_windows(num_frames), dtype=np.float64) * hop_s

    def windows(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip -> normalised fbank windows ``(N, window_frames, 128)`` (module docstring).

        Clips under 400 samples at 16 kHz (one Kaldi frame) are zero-padded to 400.
        """
        x = prepare_waveform(waveform, sample_rate).to(self.device)
        x = x.to(self.frontend.fbank.dtype)
        # AST subtracts the mean of the whole loaded clip; padding comes after it.
        x = x - x.mean()
        if x.shape[-1] < AST_MIN_SAMPLES:
            x = nn.functional.pad(x, (0, AST_MIN_SAMPLES - x.shape[-1]))
        feats = self.frontend.fbank(x[None])[0]  # (T, 128), un-normalised log mel
        t = feats.shape[0]
        n = self.num_windows(t)
        total = (n - 1) * self.hop_frames + self.window_frames
        feats = nn.functional.pad(feats, (0, 0, 0, total - t))  # zeros in the log domain, as AST
        wins = feats.unfold(0, self.window_frames, self.hop_frames)  # (N, 128, W)
        wins = wins.transpose(1, 2)
        if self.frontend.normalize:
            wins = (wins - self.frontend.mean) / (self.frontend.std * 2.0)
        return wins.contiguous()

    def unit_seconds(self, clip_seconds: float) -> float:
        """One window: ``window_frames`` fbank frames (10.24 s for the AudioSet model)."""
        return self.window_frames * AST_FRAME_SHIFT / SAMPLE_RATE

    def unit_starts(self, num_units: int) -> np.ndarray:
        """Start of each window in seconds, float64 ``(num_units,)`` (``k * hop``)."""
        hop_s = self.hop_frames * AST_FRAME_SHIFT / SAMPLE_RATE
        return np.arange(num_units, dtype=np.float64) * hop_s

    def frames(
        self, *, hop_seconds: float | None = None, batch_size: int | None = None
    ) -> ASTFrames:
        """Time-patch embeddings every 0.1 s (:class:`ASTFrames`); the hop is the network's."""
        _fixed_hop("ast", hop_seconds)
        return ASTFrames(self, DEFAULT_FRAME_BATCH_SIZE if batch_size is None else batch_size)

    def _run(self, wins: torch.Tensor, fn) -> torch.Tensor:
        outs = [fn(wins[i : i + self.batch_size]) for i in range(0, len(wins), self.batch_size)]
        return torch.cat(outs).float()

    @torch.inference_mode()
    def embed(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip -> float32 ``(N, 768)``, one row per 10.24 s window."""
        return self._run(self.windows(waveform, sample_rate), self.model)

    def fusion_module(self, layers: Sequence[int | str] | None = None) -> GeneralPurposeAST:
        """The AST-Fusion module on this model (default 0-based blocks ``[4, 11]``)."""
        return GeneralPurposeAST(self.model, layers or self.default_fusion_layers)

    @torch.inference_mode()
    def fusion(
        self,
        waveform: np.ndarray | torch.Tensor,
        sample_rate: int,
        layers: Sequence[int | str] | None = None,
    ) -> torch.Tensor:
        """One clip -> AST-Fusion feature ``(D,)`` (1536 for ``[4, 11]``): per window the
        blocks' ``(cls + dist) / 2`` after the final LayerNorm, concatenated (EVAR's
        ``AR_AST_Fusion``), then averaged over windows."""
        module = self.fusion_module(layers)
        return _mean_rows(self._run(self.windows(waveform, sample_rate), module))


# ----------------------------------------------------------------------------- frames

#: Sounds (CNN14) or 10.24 s windows (AST) per forward when computing frames.
DEFAULT_FRAME_BATCH_SIZE = 8
_MS_PER_SAMPLE = 1000.0 / SAMPLE_RATE
#: Samples per log-mel / fbank frame hop of both backbones (10 ms).
_FRAME_HOP = 160


def _fixed_hop(name: str, hop_seconds: float | None) -> None:
    if hop_seconds is not None:
        raise TypeError(
            f"hop_seconds does not apply to {name!r}: its frame hop is fixed by the network"
        )


class _GridFrames(Frames):
    """Frames on a uniform grid: centre ``first_centre_ms + k * hop_ms``."""

    first_centre_ms = 0.0
    hop_ms = 0.0

    def __init__(self, bundle: Cnn14Bundle | ASTBundle, batch_size: int) -> None:
        super().__init__(bundle, batch_size)
        # Registered so that ``.to(device)`` (as hear-eval-kit does) moves them.
        self.model = bundle.model
        self.frontend = bundle.frontend

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        """float32 ``(n_timestamps,)`` frame centres in ms (``first_centre_ms + k * hop_ms``,
        computed in float64), on the model's device."""
        k = torch.arange(self.num_timestamps(num_samples), dtype=torch.float64)
        return (self.first_centre_ms + k * self.hop_ms).to(torch.float32).to(self.device)


class Cnn14Frames(_GridFrames):
    """PANNs CNN14 frames (docs/hear.md).

    * Frame embeddings: PANNs' frame-level features, the ``conv_block6`` map
      ``(B, 2048, T // 32, 2)`` averaged over its 2 frequency bins (as PANNs does before its
      time pooling) -> one 2048-d frame per 32 log-mel frames (0.32 s). ``T = 1 + n // 160``
      log-mel frames for ``n`` samples (sounds under 4960 samples are zero-padded to 4960, as
      :class:`Cnn14Bundle` does), so ``n_timestamps = T // 32 >= 1``.
    * Timestamps: five floor-aligned 2x2 average poolings make frame ``k`` the pool of log-mel
      frames ``[32 k, 32 k + 32)``; torchlibrosa's STFT is centred (256 samples of reflect
      padding), so log-mel frame ``j`` is centred at sample ``160 j`` (``10 j`` ms). Frame
      ``k`` is centred at ``10 (32 k + 15.5)`` = **155 + 320 k ms**. The last ``T mod 32``
      log-mel frames (< 0.32 s) belong to no frame, as in PANNs.
    * Scene embeddings: :meth:`Cnn14Bundle.embed_clip` of each sound, ``(n_sounds, 2048)``.
    """

    first_centre_ms = 10.0 * (TIME_REDUCTION - 1) / 2  # 155 ms
    hop_ms = 10.0 * TIME_REDUCTION  # 320 ms

    def num_timestamps(self, num_samples: int) -> int:
        """``(1 + max(n, 4960) // 160) // 32``: conv_block6 frames (>= 1)."""
        frames = 1 + max(int(num_samples), CNN14_MIN_SAMPLES) // _FRAME_HOP
        return frames // TIME_REDUCTION

    def logmel(self, audio: torch.Tensor) -> torch.Tensor:
        """``(n_sounds, n)`` float32 on the device -> PANNs log-mel ``(n_sounds, 1, T, 64)``
        (the batched :meth:`Cnn14Bundle.logmel`)."""
        if audio.shape[-1] < CNN14_MIN_SAMPLES:
            audio = nn.functional.pad(audio, (0, CNN14_MIN_SAMPLES - audio.shape[-1]))
        return self.frontend(audio)

    def embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        def run(x: torch.Tensor) -> torch.Tensor:
            fmap = self.model.forward_taps(self.logmel(x), "conv_block6")["conv_block6"]
            return fmap.mean(dim=3).transpose(1, 2)  # (b, T', 2048)

        return self.batched(audio, run)

    def scene(self, audio: torch.Tensor) -> torch.Tensor:
        return self.batched(audio, lambda x: self.model(self.logmel(x)))


class ASTFrames(_GridFrames):
    """AST time-patch frames (docs/hear.md).

    * Frame embeddings: the final-LayerNorm output tokens (``norm`` tap) without the cls and
      distillation tokens, reshaped to ``(freq patches, time patches, 768)`` (AST's patch
      order is frequency-major) and averaged over the 12 frequency patches: one 768-d
      embedding per time patch. Time patch ``p`` covers fbank frames ``[10 p, 10 p + 16)``.
    * Long sounds: windows of ``input_tdim`` (1024) frames start every ``10 * 101 = 1010``
      frames, so the patches of consecutive windows continue one uniform 10-frame grid: patch
      ``q`` overall is patch ``q mod 101`` of window ``q // 101``; each window is an
      independent AST input, the last one zero-padded in the log domain before normalisation
      as AST pads short clips. The sound's mean is removed over the whole sound first.
    * Timestamps: Kaldi frames (25 ms, ``snip_edges``) are centred at ``10 i + 12.5`` ms, so
      patch ``q`` is centred at **87.5 + 100 q ms**; one timestamp per centre inside the
      sound and at least one: ``n_timestamps = max(1, ceil((n - 1400) / 1600))``.
    * Scene embeddings: :meth:`ASTBundle.embed_clip` of each sound (mean over the bundle's own
      10.24 s windows), ``(n_sounds, 768)``.

    Other ``input_tdim`` / strides / patch sizes follow the same formulas.
    """

    def __init__(self, bundle: ASTBundle, batch_size: int) -> None:
        super().__init__(bundle, batch_size)
        proj = bundle.model.patch_embed.proj
        self.patch_frames = int(proj.kernel_size[1])
        self.stride_frames = int(proj.stride[1])
        self.freq_patches, self.patches_per_window = (int(g) for g in bundle.model.grid)
        self.window_frames = int(bundle.model.input_tdim)
        self.hop_frames = self.stride_frames * self.patches_per_window
        # Kaldi frame i covers samples [160 i, 160 i + 400): centre 160 i + 200.
        self.first_centre_samples = _FRAME_HOP * (self.patch_frames - 1) // 2 + AST_MIN_SAMPLES // 2
        self.hop_samples = _FRAME_HOP * self.stride_frames
        self.first_centre_ms = self.first_centre_samples * _MS_PER_SAMPLE
        self.hop_ms = self.hop_samples * _MS_PER_SAMPLE

    def num_timestamps(self, num_samples: int) -> int:
        """One per patch centre inside the sound, at least one:
        ``max(1, ceil((n - 1400) / 1600))`` for the AudioSet model."""
        rest = int(num_samples) - self.first_centre_samples
        return max(1, -(-rest // self.hop_samples))

    def num_windows(self, num_samples: int) -> int:
        """Model windows the timestamps of a ``num_samples`` sound need."""
        return math.ceil(self.num_timestamps(num_samples) / self.patches_per_window)

    def windows(self, audio: torch.Tensor) -> torch.Tensor:
        """``(n_sounds, n)`` -> normalised fbank windows ``(n_sounds, W, window_frames, 128)``
        every ``hop_frames`` frames (``W = num_windows(n)``)."""
        fbank = self.frontend.fbank
        x = audio.to(fbank.dtype)
        x = x - x.mean(dim=-1, keepdim=True)  # AST removes the whole clip's mean first
        if x.shape[-1] < AST_MIN_SAMPLES:
            x = nn.functional.pad(x, (0, AST_MIN_SAMPLES - x.shape[-1]))
        feats = fbank(x)  # (n_sounds, T, 128) log mel
        n_win = self.num_windows(audio.shape[-1])
        total = (n_win - 1) * self.hop_frames + self.window_frames
        feats = nn.functional.pad(feats[:, :total], (0, 0, 0, max(0, total - feats.shape[1])))
        wins = feats.unfold(1, self.window_frames, self.hop_frames).transpose(2, 3)
        if self.frontend.normalize:
            wins = (wins - self.frontend.mean) / (self.frontend.std * 2.0)
        return wins

    def embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        n_sounds, n = audio.shape
        wins = self.windows(audio)
        n_win = wins.shape[1]
        f, t = self.freq_patches, self.patches_per_window

        def run(x: torch.Tensor) -> torch.Tensor:
            tokens = self.model.forward_taps(x, "norm")["norm"][:, 2:]  # (b, f * t, D)
            return tokens.reshape(len(x), f, t, -1).mean(dim=1)  # (b, t, D)

        out = self.batched(wins.reshape(n_sounds * n_win, *wins.shape[2:]), run)
        out = out.reshape(n_sounds, n_win * t, -1)
        return out[:, : self.num_timestamps(n)]

    def scene(self, audio: torch.Tensor) -> torch.Tensor:
        # All sounds have the same length, so the same number of bundle windows.
        wins = torch.stack([self.bundle.windows(a, SAMPLE_RATE) for a in audio])
        n_sounds, n_win = wins.shape[:2]
        emb = self.batched(wins.reshape(n_sounds * n_win, *wins.shape[2:]), self.model)
        return emb.reshape(n_sounds, n_win, -1).mean(dim=1)


# ----------------------------------------------------------------------------- factory


def _read_weights(name: str, path: Path) -> dict[str, torch.Tensor]:
    if name == "cnn14":
        from audiorep.convert.cnn14 import load_cnn14_weights

        return load_cnn14_weights(path)
    from audiorep.convert.ast import load_ast_weights

    # The bundle runs the AudioSet model at its own 1024-frame input (10.24 s windows).
    return load_ast_weights(path, input_tdim=AST_TARGET_LENGTH)


def _missing_message(name: str) -> str:
    from audiorep.weights import cache_dir, cached_path

    entries = PRETRAINED_ENTRIES[name]
    looked = ", ".join(str(cached_path(e)) for e in entries)
    label = {"cnn14": "CNN14 (PANNs Cnn14_16k)", "ast": "AST (AudioSet)"}[name]
    return (
        f"no {label} weights in the cache {cache_dir()} (looked for {looked}). Download them "
        f"with `audiorep weights download {entries[0]}`, or pass weights=PATH (--weights "
        "PATH) to use a checkpoint file directly. Or use weights='random' (--weights random) "
        "for seeded random weights."
    )


def resolve_backbone_weights(
    name: str, weights: str | os.PathLike | None
) -> tuple[dict[str, torch.Tensor], str]:
    """State dict and description for ``load_backbone(name, weights=...)`` (not ``"random"``).

    * ``None`` / ``"auto"``: the cached registry file(s) of :data:`PRETRAINED_ENTRIES`
      (never downloads);
    * an existing path: a PANNs/AST checkpoint (``.pth``) or converted ``.safetensors``;
    * a registry name of this backbone: fetched (downloaded if needed) then read.

    Raises:
        WeightsUnavailableError: nothing cached (``None``); the message says what to run.
        FileNotFoundError: neither a file nor a registry name.
        ValueError: a registry name of another model.
    """
    from audiorep.weights import REGISTRY, cached_path, fetch

    if weights is None or (isinstance(weights, str) and weights.strip().lower() == "auto"):
        for entry in PRETRAINED_ENTRIES[name]:
            path = cached_path(entry)
            if path.is_file():
                return _read_weights(name, path), f"{entry}: {path}"
        raise WeightsUnavailableError(_missing_message(name))
    path = Path(weights)
    if path.is_file():
        return _read_weights(name, path), str(path)
    key = os.fspath(weights)
    if key in REGISTRY:
        if REGISTRY[key].converter not in _CONVERTERS[name]:
            ours = ", ".join(e for e, v in REGISTRY.items() if v.converter in _CONVERTERS[name])
            raise ValueError(f"weights {key!r} are not {name} weights; use one of: {ours}")
        fetched = fetch(key)
        return _read_weights(name, fetched), f"{key}: {fetched}"
    raise FileNotFoundError(
        f"--weights {key}: no such file, and not a registry name for {name} "
        f"({', '.join(PRETRAINED_ENTRIES[name])}), 'auto' or 'random'"
    )


def load_backbone(
    name: str,
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> Cnn14Bundle | ASTBundle:
    """Build a CNN14 or AST bundle.

    Args:
        name: ``"cnn14"`` (PANNs ``Cnn14_16k``) or ``"ast"`` (AST AudioSet, 10.24 s windows).
        weights: ``None`` = the cached pretrained checkpoint (``audiorep weights download
            cnn14-16k`` / ``ast-audioset``; never downloads by itself); a file path; a
            registry name (downloaded into the cache unless ``AUDIOREP_OFFLINE=1``); or
            ``"random"`` for the model's ``seeded_random_state_dict(seed)`` (labelled as such).
        device: where the frontend and model run.
        seed: seed for ``weights="random"``.

    Raises:
        ValueError: unknown name.
        WeightsUnavailableError: ``weights=None`` and nothing cached; the message says what
            to run.
    """
    key = name.lower().strip()
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)}")
    random = weights is not None and os.fspath(weights) == RANDOM_WEIGHTS
    if random:
        if key == "cnn14":
            from audiorep.models.cnn14 import seeded_random_state_dict as cnn14_random

            state = cnn14_random(seed)
        else:
            from audiorep.models.ast import seeded_random_state_dict as ast_random

            state = ast_random(seed)
        description = random_weights_description(seed)
    else:
        state, description = resolve_backbone_weights(key, weights)
    if key == "cnn14":
        num_classes = int(state["fc_audioset.weight"].shape[0])
        model = model_from_state(Cnn14, state, num_classes=num_classes)
        return Cnn14Bundle(model, description, device, pretrained=not random)
    num_classes = int(state["head.weight"].shape[0])
    model = model_from_state(AST, state, num_classes=num_classes)
    return ASTBundle(model, description, device, pretrained=not random)


def _loader(name: str):
    def load(*, weights=None, device="cpu", seed: int = 0) -> Cnn14Bundle | ASTBundle:
        return load_backbone(name, weights=weights, device=device, seed=seed)

    load.__doc__ = f"``audiorep.load({name!r}, ...)``: see :func:`load_backbone`."
    return load


register(
    BundleSpec(
        name="cnn14",
        loader=_loader("cnn14"),
        summary="PANNs CNN14 (16 kHz): 2048-d per clip",
        min_samples=CNN14_MIN_SAMPLES,
        fusion_layers=Cnn14Bundle.default_fusion_layers,
        clip_feature_notes=("whole clip", "max+mean over T//32 fusion frames"),
    )
)
register(
    BundleSpec(
        name="ast",
        loader=_loader("ast"),
        summary="AST (AudioSet): 768-d per 10.24 s window",
        min_samples=AST_MIN_SAMPLES,
        fusion_layers=ASTBundle.default_fusion_layers,
        clip_feature_notes=("mean over 10.24 s windows", "mean over 10.24 s windows"),
    )
)

__all__ = [
    "ASTBundle",
    "ASTFrames",
    "Cnn14Frames",
    "BACKBONES",
    "Cnn14Bundle",
    "load_backbone",
    "prepare_waveform",
    "resolve_backbone_weights",
    "state_fingerprint",
]
