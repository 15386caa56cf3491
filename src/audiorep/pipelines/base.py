"""What every bundle shares: the weights sentinel, the settings keys, errors and the base class.

A bundle = frontend + model (+ postprocessing) + a description of its weights. Every bundle
(VGGish, CNN14, AST, and those to come) derives from :class:`Bundle`, so consumers (extraction,
FAD, HEAR, linear evaluation) read one surface instead of guessing by ``hasattr``.
"""

from __future__ import annotations

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


class Bundle:
    """Base of every bundle.

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


__all__ = [
    "Bundle",
    "EMBEDDING_KEY_FIELDS",
    "PRECISIONS",
    "RANDOM_WEIGHTS",
    "RESAMPLER",
    "WeightsUnavailableError",
    "model_from_state",
    "random_weights_description",
]
