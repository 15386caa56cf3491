"""VGGish, CNN14 and AST as HEAR modules (the hear-eval-kit / HEAR 2021 common API).

hear-eval-kit imports a module and calls three functions on it::

    python -m heareval.embeddings.runner audiorep.hear --model path/to/weights.safetensors
    python -m heareval.embeddings.runner audiorep.hear --model-options '{"model": "cnn14"}'

``load_model(..., model="cnn14" | "ast")`` returns a :class:`HearCnn14` / :class:`HearAST`
(frame-level embeddings from the networks' own time axis; see those classes and
docs/hear.md). The rest of this docstring describes VGGish (the default ``model="vggish"``):

- :func:`load_model` returns a :class:`HearVGGish` (a ``torch.nn.Module``) with
  ``sample_rate = 16000`` and ``scene_embedding_size = timestamp_embedding_size = 128``;
- :func:`get_timestamp_embeddings` returns ``(n_sounds, n_timestamps, 128)`` float32
  embeddings and ``(n_sounds, n_timestamps)`` float32 timestamps in milliseconds, each the
  centre of its 0.975 s VGGish window;
- :func:`get_scene_embeddings` returns ``(n_sounds, 128)``: the mean of the timestamp
  embeddings.

Window layout (``h`` = the hop in samples, a multiple of the 160-sample frame hop; ``W`` =
15 600 samples, one 96-frame example; ``n`` = the sound's length in samples at 16 kHz):

- The sound is padded with ``lead * h`` zeros in front, ``lead = (W // 2) // h`` (as many whole
  hops as fit in half a window), so that the first window is centred as close after t = 0 as
  the frame grid allows: at ``c0 = W // 2 - lead * h`` samples, ``0 <= c0 < h`` when
  ``h <= W / 2``. Window ``k`` starts at ``k * h - lead * h`` and is centred at
  ``c0 + k * h``.
- There is one window for each centre inside the sound (``c0 + k * h < n``), and at least
  one: ``n_timestamps = max(1, ceil((n - c0) / h))``. The sound is zero-padded at the end as
  far as the last window needs. Whenever ``h <= W / 2`` the windows cover every sample.
- Because the front padding is a whole number of hops (and so of 10 ms frames), every window
  lying entirely inside the sound is exactly an example of ``audiorep.load("vggish",
  windowing=Windowing.from_hop_seconds(hop))``: timestamp ``k`` is that bundle's example
  ``k - lead``. The windows that reach into the padding see zeros (log-mel ``ln(0.01)``), as
  in hearbaseline's centre-padded framing.
- With ``hop_seconds=0.96`` there is no front padding: windows are the reference's examples,
  timestamps ``487.5 + 960 k`` ms (hearbaseline's VGGish wrapper writes ``480 + 960 k``).

The default hop is 50 ms, the largest the HEAR rules suggest for timestamp tasks (onset
tolerances there are 50-200 ms; a 0.96 s hop cannot place events). It costs about 20 VGGish
examples per second of audio, ~19x the reference's 0.96 s hop: fine on a GPU, ~0.5 CPU-s per
second of audio on a CPU. ``--model-options '{"hop_seconds": 0.96}'`` gives the reference's
windows (and cheaper scene embeddings).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from audiorep.audio import check_waveform
from audiorep.frontends.vggish import (
    EXAMPLE_FRAMES,
    EXAMPLE_SAMPLES,
    HOP_LENGTH,
    NUM_BANDS,
    SAMPLE_RATE,
    Windowing,
)
from audiorep.pipelines import RANDOM_WEIGHTS, VGGishBundle, load

if TYPE_CHECKING:
    from audiorep.pipelines import ASTBundle, Cnn14Bundle

#: Default hop between timestamps, in seconds (HEAR suggests <= 50 ms).
DEFAULT_HOP_SECONDS = 0.05
#: Default number of examples per model forward.
DEFAULT_BATCH_SIZE = 256
#: Default batch of the CNN14 / AST wrappers: sounds (CNN14) or 10.24 s windows (AST).
DEFAULT_BACKBONE_BATCH_SIZE = 8
#: The models :func:`load_model` knows.
HEAR_MODELS = ("vggish", "cnn14", "ast")
_HALF_WINDOW = EXAMPLE_SAMPLES // 2  # 7800 samples = 487.5 ms, centre of an example

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).replace("torch.", "")
    if name not in _DTYPES:
        raise ValueError(f"frontend_dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[name]


@dataclass(frozen=True)
class WindowLayout:
    """Where the HEAR windows of a sound lie, for a hop of ``hop_samples`` at 16 kHz.

    Attributes:
        hop_samples: samples between window starts (a multiple of the 160-sample frame hop).
    """

    hop_samples: int

    def __post_init__(self) -> None:
        if self.hop_samples < HOP_LENGTH or self.hop_samples % HOP_LENGTH:
            raise ValueError(
                f"hop_samples must be a positive multiple of {HOP_LENGTH}, got {self.hop_samples}"
            )

    @property
    def lead_windows(self) -> int:
        """Windows before the first one starting at sample 0: the front padding is
        ``lead_windows * hop_samples`` zeros, as many whole hops as fit in half a window."""
        return _HALF_WINDOW // self.hop_samples

    @property
    def first_centre_samples(self) -> int:
        """Centre of the first window, in samples from the sound's start (``c0``)."""
        return _HALF_WINDOW - self.lead_windows * self.hop_samples

    def num_timestamps(self, num_samples: int) -> int:
        """Windows for ``num_samples`` samples: one per centre ``c0 + k * hop`` inside the
        sound, and at least one: ``max(1, ceil((num_samples - c0) / hop))``."""
        rest = int(num_samples) - self.first_centre_samples
        return max(1, -(-rest // self.hop_samples))

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        """float32 ``(n_timestamps,)`` window centres in milliseconds (CPU)."""
        k = torch.arange(self.num_timestamps(num_samples), dtype=torch.float64)
        centres = (self.first_centre_samples + k * self.hop_samples) * (1000.0 / SAMPLE_RATE)
        return centres.to(torch.float32)


class HearVGGish(nn.Module):
    """A VGGish bundle packaged for HEAR; see the module docstring for the window layout.

    Args:
        bundle: an ``audiorep.load("vggish", windowing=...)`` bundle; its windowing's hop is
            the timestamp hop (its ``window_samples`` must be ``None`` and it must not
            peak-normalise: those are FAD conventions, not HEAR ones).
        batch_size: examples per model forward (bounds memory; results do not depend on it
            beyond float rounding).

    Attributes:
        sample_rate: 16000 Hz; HEAR feeds audio at this rate (no resampling here).
        scene_embedding_size, timestamp_embedding_size, embedding_size: 128.
        layout: the :class:`WindowLayout` (``hop_samples``, ``lead_windows`` and
            ``first_centre_samples`` are also attributes of the module).
    """

    sample_rate = SAMPLE_RATE
    scene_embedding_size = 128
    timestamp_embedding_size = 128
    embedding_size = 128

    def __init__(self, bundle: VGGishBundle, batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__()
        win = bundle.windowing
        if win.window_samples is not None or win.peak_normalize:
            raise ValueError(
                f"HEAR windows are 96-frame examples without peak normalisation; got {win!r}"
            )
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.bundle = bundle
        # Registered so that ``.to(device)`` (as hear-eval-kit does) moves them.
        self.model = bundle.model
        self.frontend = bundle.frontend
        self.batch_size = int(batch_size)
        self.layout = WindowLayout(win.hop_frames * HOP_LENGTH)

    @property
    def hop_samples(self) -> int:
        return self.layout.hop_samples

    @property
    def lead_windows(self) -> int:
        return self.layout.lead_windows

    @property
    def first_centre_samples(self) -> int:
        return self.layout.first_centre_samples

    @property
    def hop_seconds(self) -> float:
        return self.hop_samples / SAMPLE_RATE

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    def _apply(self, fn, *args, **kwargs):  # type: ignore[override]
        out = super()._apply(fn, *args, **kwargs)
        # Let the bundle move what it owns outside the registered modules (PCA) and drop its
        # device-specific caches (TorchScript / bfloat16 copies of the model).
        self.bundle.to(self.bundle.device)
        return out

    def num_timestamps(self, num_samples: int) -> int:
        """Timestamps (windows) for a sound of ``num_samples`` samples at 16 kHz (>= 1)."""
        return self.layout.num_timestamps(num_samples)

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        """float32 ``(n_timestamps,)`` window centres in ms, on the model's device."""
        return self.layout.timestamps_ms(num_samples).to(self.device)

    def timestamp_embeddings(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """See :func:`get_timestamp_embeddings`."""
        audio = _check_audio(audio)
        with torch.inference_mode():
            embeddings, timestamps = self._timestamp_embeddings(audio)
        # Plain tensors (not inference tensors), usable anywhere afterwards.
        return embeddings.clone(), timestamps.clone()

    def scene_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        """See :func:`get_scene_embeddings`."""
        audio = _check_audio(audio)
        with torch.inference_mode():
            embeddings, _ = self._timestamp_embeddings(audio)
            scene = embeddings.mean(dim=1)
        return scene.clone()

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`timestamp_embeddings`."""
        return self.timestamp_embeddings(audio)

    def window_examples(self, audio: torch.Tensor) -> torch.Tensor:
        """The log-mel example of every window: ``(n_sounds, n_timestamps, 96, 64)``.

        ``audio``: ``(n_sounds, n_samples)`` at 16 kHz. One frontend pass for the whole batch
        (in the frontend's dtype, on the model's device); the result is a strided view of
        the log-mel frames, so it costs ~frames, not ~examples, of memory (~19x less at 50 ms).
        """
        audio = _check_audio(audio)
        n = audio.shape[1]
        h, lead = self.hop_samples, self.lead_windows
        # Samples the last window reaches, counted from the start of the front padding.
        needed = (self.num_timestamps(n) - 1) * h + EXAMPLE_SAMPLES
        x = audio.to(device=self.device, dtype=self.frontend.dtype)
        if x.shape[0] == 0:  # an empty batch (FFT backends reject zero-size inputs)
            return x.new_zeros((0, self.num_timestamps(n), EXAMPLE_FRAMES, NUM_BANDS))
        x = nn.functional.pad(x, (lead * h, max(0, needed - lead * h - n)))[:, :needed]
        return self.frontend.frame_examples(self.frontend.log_mel(x))

    def _timestamp_embeddings(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n_sounds, n = audio.shape
        count = self.num_timestamps(n)
        examples = self.window_examples(audio)
        assert examples.shape[:2] == (n_sounds, count), (examples.shape, count)
        total = n_sounds * count
        out = torch.empty((total, self.timestamp_embedding_size), device=self.device)
        for start in range(0, total, self.batch_size):
            idx = torch.arange(start, min(start + self.batch_size, total), device=self.device)
            chunk = examples[idx // count, idx % count]  # gathers this batch only
            out[start : start + len(idx)] = self.bundle.embed_examples(chunk, len(idx))
        embeddings = out.reshape(n_sounds, count, self.timestamp_embedding_size)
        timestamps = self.timestamps_ms(n).expand(n_sounds, count)
        return embeddings, timestamps

    def extra_repr(self) -> str:
        return (
            f"hop_seconds={self.hop_seconds}, batch_size={self.batch_size}, "
            f"weights={self.bundle.weights_description!r}"
        )


def _check_audio(audio: torch.Tensor) -> torch.Tensor:
    audio = torch.as_tensor(audio)
    if audio.dim() != 2:
        raise ValueError(
            f"HEAR audio must be (n_sounds, n_samples) at 16 kHz, got shape {tuple(audio.shape)}"
        )
    if not torch.is_floating_point(audio):
        raise TypeError(f"HEAR audio must be float in [-1, 1], got dtype {audio.dtype}")
    return check_waveform(audio, what="HEAR audio")


# ----------------------------------------------------------------------------- CNN14 and AST

_MS_PER_SAMPLE = 1000.0 / SAMPLE_RATE
#: Samples per log-mel / fbank frame hop of both backbones (10 ms).
_FRAME_HOP = 160
#: CNN14: log-mel frames per conv_block6 frame (five 2x2 poolings); its smallest input
#: (``audiorep.pipelines.backbones.CNN14_MIN_SAMPLES``: 32 frames).
_CNN14_REDUCTION = 32
_CNN14_MIN_SAMPLES = (_CNN14_REDUCTION - 1) * _FRAME_HOP  # 4960
#: AST: one Kaldi frame (25 ms), its smallest input
#: (``audiorep.pipelines.backbones.AST_MIN_SAMPLES``).
_AST_FRAME = 400


class _HearBackbone(nn.Module):
    """Shared plumbing of :class:`HearCnn14` and :class:`HearAST`: the bundle's model and
    frontend are registered submodules (``.to(device)`` moves them), ``inference_mode``,
    plain (non-inference) output tensors."""

    sample_rate = SAMPLE_RATE
    #: first timestamp (ms) and spacing (ms); set by the subclasses
    first_centre_ms = 0.0
    hop_ms = 0.0

    def __init__(self, bundle: Cnn14Bundle | ASTBundle, batch_size: int):
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.bundle = bundle
        self.model = bundle.model
        self.frontend = bundle.frontend
        self.batch_size = int(batch_size)
        size = int(bundle.embedding_size)
        self.scene_embedding_size = self.timestamp_embedding_size = self.embedding_size = size

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    def num_timestamps(self, num_samples: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        """float32 ``(n_timestamps,)`` frame centres in ms (``first_centre_ms + k * hop_ms``,
        computed in float64), on the model's device."""
        k = torch.arange(self.num_timestamps(num_samples), dtype=torch.float64)
        return (self.first_centre_ms + k * self.hop_ms).to(torch.float32).to(self.device)

    def timestamp_embeddings(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """See :func:`get_timestamp_embeddings`."""
        audio = _check_audio(audio)
        n_sounds, n = audio.shape
        count = self.num_timestamps(n)
        with torch.inference_mode():
            if n_sounds == 0:
                emb = torch.zeros((0, count, self.timestamp_embedding_size), device=self.device)
            else:
                emb = self._frames(audio.to(device=self.device, dtype=torch.float32))
            assert emb.shape == (n_sounds, count, self.timestamp_embedding_size), emb.shape
            ts = self.timestamps_ms(n).expand(n_sounds, count)
        return emb.float().clone(), ts.clone()

    def scene_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        """See :func:`get_scene_embeddings`."""
        audio = _check_audio(audio)
        with torch.inference_mode():
            if audio.shape[0] == 0:
                return torch.zeros((0, self.scene_embedding_size), device=self.device)
            scene = self._scene(audio.to(device=self.device, dtype=torch.float32))
        return scene.float().clone()

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`timestamp_embeddings`."""
        return self.timestamp_embeddings(audio)

    def _batched(self, x: torch.Tensor, fn) -> torch.Tensor:
        return torch.cat(
            [fn(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        )

    def _frames(self, audio: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _scene(self, audio: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"batch_size={self.batch_size}, weights={self.bundle.weights_description!r}"


class HearCnn14(_HearBackbone):
    """PANNs CNN14 (``Cnn14_16k``) packaged for HEAR.

    * Timestamp embeddings: PANNs' frame-level features, the ``conv_block6`` map
      ``(B, 2048, T // 32, 2)`` averaged over its 2 frequency bins (as PANNs does before its
      time pooling) -> one 2048-d frame per 32 log-mel frames (0.32 s). ``T = 1 + n // 160``
      log-mel frames for ``n`` samples (sounds under 4960 samples are zero-padded to 4960, as
      :class:`~audiorep.pipelines.Cnn14Bundle` does), so ``n_timestamps = T // 32 >= 1``.
    * Timestamps: five floor-aligned 2x2 average poolings make frame ``k`` the pool of log-mel
      frames ``[32 k, 32 k + 32)``; torchlibrosa's STFT is centred (256 samples of reflect
      padding), so log-mel frame ``j`` is centred at sample ``160 j`` (``10 j`` ms). Frame
      ``k`` is centred at ``10 (32 k + 15.5)`` = **155 + 320 k ms**. (The 3x3 convolutions
      widen each frame's receptive field beyond its pooling cell; the centre is unchanged.)
      The last ``T mod 32`` log-mel frames (< 0.32 s) belong to no frame, as in PANNs.
    * Scene embeddings: :meth:`Cnn14Bundle.embed_clip` of each sound (PANNs' ``embedding``,
      ReLU(fc1) after max + mean pooling over time), ``(n_sounds, 2048)``.

    Args:
        bundle: ``load_backbone("cnn14", ...)``.
        batch_size: sounds per forward.
    """

    first_centre_ms = 10.0 * (_CNN14_REDUCTION - 1) / 2  # 155 ms
    hop_ms = 10.0 * _CNN14_REDUCTION  # 320 ms

    def __init__(self, bundle: Cnn14Bundle, batch_size: int = DEFAULT_BACKBONE_BATCH_SIZE):
        super().__init__(bundle, batch_size)

    def num_timestamps(self, num_samples: int) -> int:
        """``(1 + max(n, 4960) // 160) // 32``: conv_block6 frames (>= 1)."""
        frames = 1 + max(int(num_samples), _CNN14_MIN_SAMPLES) // _FRAME_HOP
        return frames // _CNN14_REDUCTION

    def logmel(self, audio: torch.Tensor) -> torch.Tensor:
        """``(n_sounds, n)`` float32 on the device -> PANNs log-mel ``(n_sounds, 1, T, 64)``
        (the batched :meth:`Cnn14Bundle.logmel`)."""
        if audio.shape[-1] < _CNN14_MIN_SAMPLES:
            audio = nn.functional.pad(audio, (0, _CNN14_MIN_SAMPLES - audio.shape[-1]))
        return self.frontend(audio)

    def _frames(self, audio: torch.Tensor) -> torch.Tensor:
        def run(x: torch.Tensor) -> torch.Tensor:
            fmap = self.model.forward_taps(self.logmel(x), "conv_block6")["conv_block6"]
            return fmap.mean(dim=3).transpose(1, 2)  # (b, T', 2048)

        return self._batched(audio, run)

    def _scene(self, audio: torch.Tensor) -> torch.Tensor:
        return self._batched(audio, lambda x: self.model(self.logmel(x)))


class HearAST(_HearBackbone):
    """The Audio Spectrogram Transformer (AudioSet model) packaged for HEAR.

    * Timestamp embeddings: the final-LayerNorm output tokens (``norm`` tap) without the cls
      and distillation tokens, reshaped to ``(freq patches, time patches, 768)`` (AST's patch
      order is frequency-major) and averaged over the 12 frequency patches: one 768-d
      embedding per time patch. Time patch ``p`` covers fbank frames ``[10 p, 10 p + 16)``.
    * Long sounds: windows of ``input_tdim`` (1024) frames start every ``10 * 101 = 1010``
      frames (the 101 time patches of a window times the patch stride), so the patches of
      consecutive windows continue one uniform 10-frame grid: patch ``q`` overall is patch
      ``q mod 101`` of window ``q // 101`` and covers frames ``[10 q, 10 q + 16)``; each window
      is an independent AST input (its own attention context), the last one zero-padded in
      the log domain before normalisation as AST pads short clips. The sound's mean is
      removed over the whole sound first. Frames 1010-1023 of a window feed its attention but
      its patches there are not used (they are the next window's first patch).
    * Timestamps: Kaldi frames (25 ms, ``snip_edges``) are centred at ``10 i + 12.5`` ms, so
      patch ``q`` is centred at ``10 (10 q + 7.5) + 12.5`` = **87.5 + 100 q ms**. One
      timestamp per centre inside the sound and at least one:
      ``n_timestamps = max(1, ceil((n - 1400) / 1600))``.
    * Scene embeddings: :meth:`ASTBundle.embed_clip` of each sound (``(cls + dist) / 2``,
      averaged over the bundle's own 10.24 s windows), ``(n_sounds, 768)``.

    The numbers above are for the AudioSet model; other ``input_tdim`` / strides / patch
    sizes of the bundle's model follow the same formulas (``first_centre_ms``, ``hop_ms``,
    ``hop_frames``, ``patches_per_window``).

    Args:
        bundle: ``load_backbone("ast", ...)`` (or any :class:`ASTBundle`).
        batch_size: windows per forward.
    """

    def __init__(self, bundle: ASTBundle, batch_size: int = DEFAULT_BACKBONE_BATCH_SIZE):
        super().__init__(bundle, batch_size)
        proj = bundle.model.patch_embed.proj
        self.patch_frames = int(proj.kernel_size[1])
        self.stride_frames = int(proj.stride[1])
        self.freq_patches, self.patches_per_window = (int(g) for g in bundle.model.grid)
        self.window_frames = int(bundle.model.input_tdim)
        self.hop_frames = self.stride_frames * self.patches_per_window
        # Kaldi frame i covers samples [160 i, 160 i + 400): centre 160 i + 200.
        self.first_centre_samples = _FRAME_HOP * (self.patch_frames - 1) // 2 + _AST_FRAME // 2
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
        if x.shape[-1] < _AST_FRAME:
            x = nn.functional.pad(x, (0, _AST_FRAME - x.shape[-1]))
        feats = fbank(x)  # (n_sounds, T, 128) log mel
        n_win = self.num_windows(audio.shape[-1])
        total = (n_win - 1) * self.hop_frames + self.window_frames
        feats = nn.functional.pad(feats[:, :total], (0, 0, 0, max(0, total - feats.shape[1])))
        wins = feats.unfold(1, self.window_frames, self.hop_frames).transpose(2, 3)
        if self.frontend.normalize:
            wins = (wins - self.frontend.mean) / (self.frontend.std * 2.0)
        return wins

    def _frames(self, audio: torch.Tensor) -> torch.Tensor:
        n_sounds, n = audio.shape
        wins = self.windows(audio)
        n_win = wins.shape[1]
        f, t = self.freq_patches, self.patches_per_window

        def run(x: torch.Tensor) -> torch.Tensor:
            tokens = self.model.forward_taps(x, "norm")["norm"][:, 2:]  # (b, f * t, D)
            return tokens.reshape(len(x), f, t, -1).mean(dim=1)  # (b, t, D)

        out = self._batched(wins.reshape(n_sounds * n_win, *wins.shape[2:]), run)
        out = out.reshape(n_sounds, n_win * t, -1)
        return out[:, : self.num_timestamps(n)]

    def _scene(self, audio: torch.Tensor) -> torch.Tensor:
        # All sounds have the same length, so the same number of bundle windows.
        wins = torch.stack([self.bundle.windows(a, SAMPLE_RATE) for a in audio])
        n_sounds, n_win = wins.shape[:2]
        emb = self._batched(wins.reshape(n_sounds * n_win, *wins.shape[2:]), self.model)
        return emb.reshape(n_sounds, n_win, -1).mean(dim=1)


def load_model(
    model_file_path: str = "",
    *,
    model: str = "vggish",
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    precision: str = "float32",
    frontend_dtype: str | torch.dtype = "float64",
    torchvggish_compat: bool = False,
    **kwargs: Any,
) -> HearVGGish | HearCnn14 | HearAST:
    """HEAR ``load_model``: VGGish (default), CNN14 or AST with its weights, a ``torch.nn.Module``.

    Every keyword can come from hear-eval-kit's ``--model-options`` JSON.

    Args:
        model_file_path: ``""`` = the cached pretrained weights (``audiorep weights
            download``; raises :class:`~audiorep.pipelines.WeightsUnavailableError` with
            instructions when there are none); a weights file or a registry name (VGGish:
            ``.safetensors``, ``vggish_model.ckpt``, ``.npz``, torchvggish ``.pth``, as for
            ``audiorep.load``; CNN14 / AST: a PANNs / AST checkpoint or converted
            ``.safetensors``, as for ``audiorep.pipelines.load_backbone``); ``"random"`` =
            seeded random weights, **for testing only** (the embeddings mean nothing).
        model: ``"vggish"`` (:class:`HearVGGish`), ``"cnn14"`` (:class:`HearCnn14`) or
            ``"ast"`` (:class:`HearAST`).
        hop_seconds: VGGish only: seconds between timestamps, a multiple of 0.01 (default
            0.05; 0.96 gives the reference's non-overlapping examples). CNN14 and AST have a
            fixed frame hop (0.32 s, 0.1 s).
        device: where to run; ``None`` = CUDA when available, else CPU (hear-eval-kit moves
            the module with ``.to()`` anyway).
        batch_size: per model forward: VGGish examples (default 256), CNN14 sounds or AST
            10.24 s windows (default 8).
        seed: seed of ``"random"`` weights.
        precision, frontend_dtype, torchvggish_compat: VGGish only: ``"float32"``
            (reference-exact) or ``"bfloat16"``; ``"float64"`` (reference-exact) or
            ``"float32"`` frontend; torchvggish's final ReLU.
        **kwargs: VGGish only, passed on to :func:`audiorep.load` (not ``windowing``: use
            ``hop_seconds``).

    Returns:
        A :class:`HearVGGish`, :class:`HearCnn14` or :class:`HearAST` in eval mode.
    """
    key = str(model).lower().strip()
    if key not in HEAR_MODELS:
        raise ValueError(f"unknown HEAR model {model!r}; available: {', '.join(HEAR_MODELS)}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    path = os.fspath(model_file_path) if model_file_path else ""
    weights = None if path == "" else (RANDOM_WEIGHTS if path == RANDOM_WEIGHTS else path)
    if key != "vggish":
        vggish_only = {
            "hop_seconds": hop_seconds != DEFAULT_HOP_SECONDS,
            "precision": precision != "float32",
            "frontend_dtype": _as_dtype(frontend_dtype) != torch.float64,
            "torchvggish_compat": bool(torchvggish_compat),
            **{name: True for name in kwargs},
        }
        given = sorted(name for name, set_ in vggish_only.items() if set_)
        if given:
            raise TypeError(f"option(s) {', '.join(given)} only apply to model='vggish'")
        from audiorep.pipelines import load_backbone

        bundle = load_backbone(key, weights=weights, device=device, seed=seed)
        wrapper = HearCnn14 if key == "cnn14" else HearAST
        size = DEFAULT_BACKBONE_BATCH_SIZE if batch_size is None else batch_size
        return wrapper(bundle, batch_size=size).eval()
    if "windowing" in kwargs:
        raise TypeError("load_model sets the windowing from hop_seconds; do not pass windowing")
    kwargs.setdefault("pca", False)  # HEAR uses the float embeddings, never the PCA bytes
    bundle = load(
        "vggish",
        weights=weights,
        device=device,
        seed=seed,
        precision=precision,
        frontend_dtype=_as_dtype(frontend_dtype),
        torchvggish_compat=torchvggish_compat,
        windowing=Windowing.from_hop_seconds(hop_seconds),
        **kwargs,
    )
    return HearVGGish(
        bundle, batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    ).eval()


def get_timestamp_embeddings(
    audio: torch.Tensor, model: HearVGGish | HearCnn14 | HearAST
) -> tuple[torch.Tensor, torch.Tensor]:
    """HEAR ``get_timestamp_embeddings``: one embedding per window (VGGish) or frame (CNN14,
    AST) of each sound.

    Args:
        audio: ``(n_sounds, n_samples)`` mono float in [-1, 1] at 16 kHz (any device; all
            sounds the same length, as HEAR pads them).
        model: from :func:`load_model`.

    Returns:
        ``embeddings``: float32 ``(n_sounds, n_timestamps, 128)`` pre-activation VGGish
        embeddings; ``timestamps``: float32 ``(n_sounds, n_timestamps)``, the centre of each
        window in **milliseconds**, the same for every sound (``c0 + k * hop``; 37.5 + 50 k at
        the default hop). ``n_timestamps = max(1, ceil((n_samples - c0) / hop))``; see the
        module docstring for the padding. Both on the model's device.

        CNN14: ``(n_sounds, T // 32, 2048)`` conv_block6 frames, timestamps ``155 + 320 k``
        ms; AST: ``(n_sounds, max(1, ceil((n - 1400) / 1600)), 768)`` time-patch embeddings,
        timestamps ``87.5 + 100 k`` ms (see :class:`HearCnn14`, :class:`HearAST`).
    """
    return model.timestamp_embeddings(audio)


def get_scene_embeddings(
    audio: torch.Tensor, model: HearVGGish | HearCnn14 | HearAST
) -> torch.Tensor:
    """HEAR ``get_scene_embeddings``: VGGish: the mean of each sound's timestamp embeddings;
    CNN14 / AST: the bundle's clip embedding (``embed_clip``) of each sound.

    Args:
        audio: ``(n_sounds, n_samples)`` mono float in [-1, 1] at 16 kHz.
        model: from :func:`load_model`.

    Returns:
        float32 ``(n_sounds, 128)``: the mean over timestamps of
        :func:`get_timestamp_embeddings` (the HEAR baseline convention), padded windows
        included. CNN14: ``(n_sounds, 2048)``, AST: ``(n_sounds, 768)``.
    """
    return model.scene_embeddings(audio)


__all__ = [
    "load_model",
    "get_timestamp_embeddings",
    "get_scene_embeddings",
    "HearVGGish",
    "HearCnn14",
    "HearAST",
    "HEAR_MODELS",
    "WindowLayout",
    "DEFAULT_HOP_SECONDS",
]
