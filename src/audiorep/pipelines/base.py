"""What every bundle shares: the weights sentinel, the settings keys, errors and the base class.

A bundle = frontend + model (+ postprocessing) + a description of its weights. Every bundle
(VGGish, CNN14, AST, and those to come) derives from :class:`Bundle`, so consumers (extraction,
FAD, HEAR, linear evaluation) read one surface instead of guessing by ``hasattr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from audiorep.hashing import state_dict_sha256

RANDOM_WEIGHTS = "random"
#: The fields of ``Bundle.settings()`` that change embeddings (descriptions and paths do not):
#: caches are keyed on them and sets are comparable only when they agree.
EMBEDDING_KEY_FIELDS = (
    "model",
    "weights_sha256",
    "final_relu",
    "frontend_dtype",
    "precision",
    "windowing",
    "resampler",
)
#: Model precisions: "float32" (reference-exact to ~1e-5); "bfloat16" (fast on AMX CPUs and
#: GPUs) and "float16" (CUDA only) are approximate.
PRECISIONS = ("float32", "bfloat16", "float16")
#: The resampler every bundle uses on inputs at other rates (audiorep/resample.py).
RESAMPLER = "resampy-0.4.3-kaiser_best"


class WeightsUnavailableError(RuntimeError):
    """No pretrained weights could be found or fetched; the message says what to do."""


def model_from_state(cls: type[nn.Module], state: dict[str, torch.Tensor], **kwargs) -> nn.Module:
    """``cls(**kwargs)`` holding ``state``'s tensors (strict), built on the meta device so the
    throw-away random initialisation of tens of millions of parameters is never paid."""
    with torch.device("meta"):
        model = cls(**kwargs)
    model.load_state_dict(state, strict=True, assign=True)
    return model


def random_weights_description(seed: int) -> str:
    """How seeded random weights are labelled everywhere (reports, settings, logs)."""
    return f"seeded random weights (seed={seed}) - NOT pretrained, features meaningless"


@dataclass
class Embeddings:
    """Every row a bundle computes for one clip, with where each row starts.

    Attributes:
        embeddings: float32 ``(N, D)``, one row per analysis unit (``Bundle.embed``).
        timestamps: float64 ``(N,)`` start time of each unit in seconds.
        quantized: uint8 ``(N, D)`` PCA-quantised rows (VGGish with PCA parameters), else None.
    """

    embeddings: np.ndarray
    timestamps: np.ndarray
    quantized: np.ndarray | None = None


class Frames(nn.Module):
    """Frame-level (timestamped) embeddings of a bundle for a batch of equal-length sounds, the
    surface the HEAR wrapper (``audiorep/hear.py``) needs; built by ``Bundle.frames``.

    A subclass registers the modules it runs (so ``.to(device)`` moves them) and implements
    :meth:`num_timestamps`, :meth:`timestamps_ms`, :meth:`embeddings` and :meth:`scene`.
    Inputs are float32 ``(n_sounds, n_samples)`` at the bundle's rate, on its device, with
    ``n_sounds >= 1``; the HEAR wrapper checks them, runs under ``inference_mode`` and handles
    empty batches.

    Attributes:
        bundle: the bundle the frames come from.
        batch_size: sounds, windows or examples per model forward (bounds memory).
        embedding_size: D of the frame and scene embeddings.
    """

    def __init__(self, bundle: Bundle, batch_size: int) -> None:
        super().__init__()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.bundle = bundle
        self.batch_size = int(batch_size)
        self.embedding_size = int(bundle.embedding_size)

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    def num_timestamps(self, num_samples: int) -> int:  # pragma: no cover - abstract
        """Frames for a sound of ``num_samples`` samples (>= 1)."""
        raise NotImplementedError

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:  # pragma: no cover - abstract
        """float32 ``(n_timestamps,)``: the centre of each frame in milliseconds."""
        raise NotImplementedError

    def embeddings(self, audio: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``(n_sounds, n)`` -> float ``(n_sounds, n_timestamps, D)``."""
        raise NotImplementedError

    def scene(self, audio: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``(n_sounds, n)`` -> float ``(n_sounds, D)``: one embedding per sound."""
        raise NotImplementedError

    def batched(self, x: torch.Tensor, fn) -> torch.Tensor:
        """``fn`` over ``x`` in chunks of ``batch_size`` rows, concatenated."""
        return torch.cat(
            [fn(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        )


class Bundle:
    """Base of every bundle.

    Every method below means the same for every model (``tests/test_bundle_contract.py``):

    * :meth:`embed` -> float32 ``(N, D)``: one row per analysis unit of one clip;
    * :meth:`embed_clip` -> float32 ``(D,)``: one vector per clip;
    * :meth:`clip_embeddings` -> :class:`Embeddings` (rows, their start times, PCA bytes);
    * :meth:`fusion` / :meth:`fusion_module`: the paper's multi-layer fusion feature;
    * :meth:`frames` -> :class:`Frames`: timestamped frame embeddings (HEAR);
    * :meth:`settings`, :meth:`windowing_settings`, :meth:`describe_units`,
      :meth:`weights_fingerprint`; ``streams_windows`` says how extraction may feed it.

    Attributes:
        name: the registry name (``"vggish"``, ``"cnn14"``, ``"ast"``).
        sample_rate: the rate the model works at, Hz (inputs at other rates are resampled).
        embedding_size: D of ``embed``'s ``(N, D)`` rows.
        weights_description: where the weights came from, or the random-weights label.
        pretrained: False for seeded random weights.
        model: the network (an ``nn.Module`` with ``forward_taps``).
    """

    name = ""
    sample_rate = 16000
    embedding_size = 0
    #: True when the frontend cuts fixed windows independently of the clip's length (VGGish):
    #: extraction may then decode long files in chunks and pack the windows of several files
    #: into one batch. False: every clip goes through ``embed`` whole (CNN14, AST).
    streams_windows = False
    model: nn.Module

    def __init__(self, weights_description: str, pretrained: bool) -> None:
        self.weights_description = weights_description
        self.pretrained = pretrained
        self._fingerprint: str | None = None

    def weights_fingerprint(self) -> str:
        """sha256 (hex) of the model's state dict (:func:`audiorep.hashing.state_dict_sha256`):
        identifies the weights whatever file format they came from; cached; keys caches."""
        if self._fingerprint is None:
            self._fingerprint = state_dict_sha256(self.model)
        return self._fingerprint

    def settings(self) -> dict[str, object]:  # pragma: no cover - abstract
        """Everything that determines the embeddings (JSON-serialisable); has every key of
        :data:`EMBEDDING_KEY_FIELDS`."""
        raise NotImplementedError

    def embed(self, waveform, sample_rate: int) -> torch.Tensor:  # pragma: no cover - abstract
        """float32 ``(N, D)``: one row per analysis unit of one clip."""
        raise NotImplementedError

    def windowing_settings(self) -> dict[str, object]:  # pragma: no cover - abstract
        """How a clip is cut into analysis units: ``settings()["windowing"]`` (JSON)."""
        raise NotImplementedError

    def describe_units(self) -> str:  # pragma: no cover - abstract
        """One line on the analysis units, for run summaries."""
        raise NotImplementedError

    def unit_starts(self, num_units: int) -> np.ndarray:  # pragma: no cover - abstract
        """float64 ``(num_units,)``: start time in seconds of each row of :meth:`embed`."""
        raise NotImplementedError

    def unit_seconds(self, clip_seconds: float) -> float:
        """Length in seconds of each row's analysis unit, for a clip of ``clip_seconds``
        (default: the whole clip, for models that embed a clip as one unit)."""
        return float(clip_seconds)

    def embed_clip(self, waveform, sample_rate: int) -> torch.Tensor:
        """float32 ``(D,)``: one vector per clip, the mean of :meth:`embed`'s rows (a bundle
        whose model pools a whole clip itself returns that instead)."""
        return self.embed(waveform, sample_rate).mean(dim=0)

    def clip_embeddings(self, waveform, sample_rate: int) -> Embeddings:
        """Every row of :meth:`embed` as NumPy, with the start time of each row."""
        rows = self.embed(waveform, sample_rate)
        return Embeddings(
            embeddings=rows.cpu().numpy().astype(np.float32),
            timestamps=self.unit_starts(rows.shape[0]),
        )

    def fusion_module(  # pragma: no cover - abstract
        self, layers: Sequence[int | str] | None = None
    ) -> nn.Module:
        """The paper's fusion feature module on this model (``None`` = its default layers);
        raises ``ValueError`` for unknown layers."""
        raise NotImplementedError

    def fusion(
        self, waveform, sample_rate: int, layers: Sequence[int | str] | None = None
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """float32 ``(D_fusion,)``: the clip-level fusion feature of one clip."""
        raise NotImplementedError

    def frames(
        self, *, hop_seconds: float | None = None, batch_size: int | None = None
    ) -> Frames:  # pragma: no cover - abstract
        """Timestamped frame embeddings (:class:`Frames`). ``hop_seconds``: the frame hop
        where the model lets one choose it (``TypeError`` where it is fixed by the network);
        ``batch_size``: per forward (``None``: the bundle's default)."""
        raise NotImplementedError


__all__ = [
    "Bundle",
    "EMBEDDING_KEY_FIELDS",
    "Embeddings",
    "Frames",
    "PRECISIONS",
    "RANDOM_WEIGHTS",
    "RESAMPLER",
    "WeightsUnavailableError",
    "model_from_state",
    "random_weights_description",
]
