"""VGGish as a HEAR module (the hear-eval-kit / HEAR 2021 common API).

hear-eval-kit imports a module and calls three functions on it::

    python -m heareval.embeddings.runner audiorep.hear --model path/to/weights.safetensors

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

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from audiorep.frontends.vggish import (
    EXAMPLE_FRAMES,
    EXAMPLE_SAMPLES,
    HOP_LENGTH,
    NUM_BANDS,
    SAMPLE_RATE,
    Windowing,
)
from audiorep.pipelines import RANDOM_WEIGHTS, VGGishBundle, load

#: Default hop between timestamps, in seconds (HEAR suggests <= 50 ms).
DEFAULT_HOP_SECONDS = 0.05
#: Default number of examples per model forward.
DEFAULT_BATCH_SIZE = 256
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
    return audio


def load_model(
    model_file_path: str = "",
    *,
    hop_seconds: float = DEFAULT_HOP_SECONDS,
    device: str | torch.device | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    precision: str = "float32",
    frontend_dtype: str | torch.dtype = "float64",
    torchvggish_compat: bool = False,
    **kwargs: Any,
) -> HearVGGish:
    """HEAR ``load_model``: VGGish with its weights, as a ``torch.nn.Module``.

    Every keyword can come from hear-eval-kit's ``--model-options`` JSON.

    Args:
        model_file_path: ``""`` = the cached pretrained weights (``audiorep weights
            download``; raises :class:`~audiorep.pipelines.WeightsUnavailableError` with
            instructions when there are none); a weights file (``.safetensors``,
            ``vggish_model.ckpt``, ``.npz``, torchvggish ``.pth``) or a registry name, as for
            ``audiorep.load``; ``"random"`` = seeded random weights, **for testing only** (the
            embeddings mean nothing).
        hop_seconds: seconds between timestamps, a multiple of 0.01 (default 0.05; 0.96 gives
            the reference's non-overlapping examples).
        device: where to run; ``None`` = CUDA when available, else CPU (hear-eval-kit moves
            the module with ``.to()`` anyway).
        batch_size: examples per model forward.
        seed: seed of ``"random"`` weights.
        precision: ``"float32"`` (reference-exact) or ``"bfloat16"`` (faster, approximate).
        frontend_dtype: ``"float64"`` (reference-exact) or ``"float32"`` (faster).
        torchvggish_compat: apply torchvggish's final ReLU to the embeddings.
        **kwargs: passed on to :func:`audiorep.load` (not ``windowing``: use ``hop_seconds``).

    Returns:
        A :class:`HearVGGish` in eval mode.
    """
    if "windowing" in kwargs:
        raise TypeError("load_model sets the windowing from hop_seconds; do not pass windowing")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    path = os.fspath(model_file_path) if model_file_path else ""
    weights = None if path == "" else (RANDOM_WEIGHTS if path == RANDOM_WEIGHTS else path)
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
    return HearVGGish(bundle, batch_size=batch_size).eval()


def get_timestamp_embeddings(
    audio: torch.Tensor, model: HearVGGish
) -> tuple[torch.Tensor, torch.Tensor]:
    """HEAR ``get_timestamp_embeddings``: one embedding per window of each sound.

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
    """
    return model.timestamp_embeddings(audio)


def get_scene_embeddings(audio: torch.Tensor, model: HearVGGish) -> torch.Tensor:
    """HEAR ``get_scene_embeddings``: the mean of each sound's timestamp embeddings.

    Args:
        audio: ``(n_sounds, n_samples)`` mono float in [-1, 1] at 16 kHz.
        model: from :func:`load_model`.

    Returns:
        float32 ``(n_sounds, 128)``: the mean over timestamps of
        :func:`get_timestamp_embeddings` (the HEAR baseline convention), padded windows
        included.
    """
    return model.scene_embeddings(audio)


__all__ = [
    "load_model",
    "get_timestamp_embeddings",
    "get_scene_embeddings",
    "HearVGGish",
    "WindowLayout",
    "DEFAULT_HOP_SECONDS",
]
