"""Clip-level features for linear evaluation, and their on-disk cache.

A *model spec* names the backbone and how one clip becomes one vector (EVAR's wrappers,
summarised in docs/linear_eval.md):

=================  =====================================================================  ======
spec               clip feature                                                           D
=================  =====================================================================  ======
``vggish``         128-d embedding of every 0.96 s example, max + mean over the examples   128
                   (EVAR's ``AR_VGGish`` with ``temporal_pooling: mean_max``)
``vggish-fusion``  GP-VGGish ``[9, 14]`` frames of every example, max + mean over all       8192
                   ``6 n`` frames (``AR_VGGish_Fusion``)
``cnn14``          PANNs ``embedding`` (ReLU(fc1)) of the whole clip (``AR_Cnn14``)          2048
``cnn14-fusion``   GP-CNN14 ``[3, 6]``, max + mean over ``T // 32`` frames                   6144
                   (``AR_Cnn14_Fusion``)
``ast``            AST ``(cls + dist) / 2``, mean over 10.24 s windows (one window for       768
                   clips up to 10.24 s)
``ast-fusion``     AST-Fusion ``[4, 11]`` (0-based blocks), mean over windows               1536
=================  =====================================================================  ======

Differences from EVAR, on purpose: the VGGish embedding is the bundle's (pre-activation, the
current TF model; EVAR's PyTorch port applies a final ReLU -- load with
``torchvggish_compat=True`` to get it); AST keeps its AudioSet 1024-frame input and
normalisation instead of EVAR's per-task ``input_tdim`` and statistics. Clips shorter than
the model's minimum are zero-padded to it (one VGGish example, 15 600 samples; CNN14 4960;
AST 400) where EVAR would fail.

Cache layout: ``<root>/<key>/settings.json`` + ``<root>/<key>/<aa>/<sha256 of file>.npy``
(float32 ``(D,)``), where ``key`` hashes the feature settings (model, weights sha256,
frontend/windowing, spec, layers, clip length rule). Keyed on file *content*: renamed files
hit, edited files miss. Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiorep.features.fusion import pool_max_plus_mean
from audiorep.pipelines import BUNDLES, load
from audiorep.pipelines.backbones import prepare_waveform

#: Model specs accepted by :func:`make_extractor` / ``audiorep linear-eval --model``: every
#: registered bundle, alone and with its fusion layers.
MODEL_SPECS = tuple(s for name in BUNDLES for s in (name, f"{name}-fusion"))
#: The paper's fusion layers per backbone (from the bundle registry).
DEFAULT_FUSION_LAYERS: dict[str, tuple[int, ...]] = {n: s.fusion_layers for n, s in BUNDLES.items()}
#: Bump when the way clip features are computed changes (invalidates old cache entries).
FEATURE_VERSION = 1
SAMPLE_RATE = 16000
#: Shortest clip each backbone accepts, in samples at 16 kHz (shorter clips are zero-padded).
MIN_SAMPLES = {name: spec.min_samples for name, spec in BUNDLES.items()}


def parse_spec(spec: str) -> tuple[str, bool]:
    """``"cnn14-fusion"`` -> ``("cnn14", True)``; raises ``ValueError`` for unknown specs."""
    key = spec.strip().lower()
    if key not in MODEL_SPECS:
        raise ValueError(f"unknown model {spec!r}; available: {', '.join(MODEL_SPECS)}")
    backbone, _, rest = key.partition("-")
    return backbone, rest == "fusion"


class ClipFeatureExtractor:
    """One audio clip -> one float32 feature vector ``(D,)`` for a model spec.

    Build it with :func:`make_extractor`. Call it with a waveform ``(samples,)`` or
    ``(channels, samples)`` and its sample rate.

    Attributes:
        spec: the model spec (:data:`MODEL_SPECS`).
        bundle: the underlying ``VGGishBundle`` / ``Cnn14Bundle`` / ``ASTBundle``.
        layers: fusion layers (``None`` for plain embeddings).
        unit_seconds: ``None`` (whole clips) or the length every clip is cropped (from its
            start) / zero-padded to, like EVAR's per-task unit length.
    """

    def __init__(
        self,
        spec: str,
        bundle: Any,
        layers: Sequence[int | str] | None = None,
        unit_seconds: float | None = None,
    ) -> None:
        self.spec = spec.strip().lower()
        self.backbone, self.is_fusion = parse_spec(self.spec)
        self.bundle = bundle
        if self.is_fusion:
            self.layers: tuple[int | str, ...] | None = tuple(
                layers if layers else DEFAULT_FUSION_LAYERS[self.backbone]
            )
        elif layers:
            raise ValueError(f"layers only apply to fusion specs, not {spec!r}")
        else:
            self.layers = None
        if unit_seconds is not None and unit_seconds <= 0:
            raise ValueError(f"unit_seconds must be positive, got {unit_seconds}")
        self.unit_seconds = unit_seconds
        self._spec = BUNDLES[self.backbone]
        if self.is_fusion:
            bundle.fusion_module(self.layers)  # unknown layers fail here, not on the first clip

    def settings(self) -> dict[str, object]:
        """The bundle's settings plus the clip-feature rule (JSON-serialisable)."""
        pooling = self._spec.clip_feature_notes[1 if self.is_fusion else 0]
        return {
            **self.bundle.settings(),
            "feature": self.spec,
            "layers": list(self.layers) if self.layers is not None else None,
            "clip_pooling": pooling,
            "unit_seconds": self.unit_seconds,
            "min_samples": MIN_SAMPLES[self.backbone],
            "feature_version": FEATURE_VERSION,
        }

    def waveform_16k(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Mono float32 ``(n,)`` at 16 kHz after the unit-length and minimum-length rules."""
        x = prepare_waveform(waveform, sample_rate)
        if self.unit_seconds is not None:
            unit = round(self.unit_seconds * SAMPLE_RATE)
            x = x[:unit] if x.shape[-1] >= unit else torch.nn.functional.pad(x, (0, unit - len(x)))
        short = MIN_SAMPLES[self.backbone] - x.shape[-1]
        if short > 0:
            x = torch.nn.functional.pad(x, (0, short))
        return x

    @torch.inference_mode()
    def __call__(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """One clip -> float32 ``(D,)``."""
        x = self.waveform_16k(waveform, sample_rate)
        b = self.bundle
        if self.is_fusion:
            out = b.fusion(x, SAMPLE_RATE, layers=self.layers)
        elif self._spec.clip_feature == "mean_max":
            emb = b.embed(x, SAMPLE_RATE)  # (n, D)
            out = pool_max_plus_mean(emb.T[None])[0]  # EVAR's mean_max temporal pooling
        else:
            out = b.embed_clip(x, SAMPLE_RATE)
        return out.detach().float().cpu().numpy().astype(np.float32, copy=False)


def make_extractor(
    spec: str,
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    layers: Sequence[int | str] | None = None,
    unit_seconds: float | None = None,
) -> ClipFeatureExtractor:
    """Build the bundle for ``spec`` and wrap it as a :class:`ClipFeatureExtractor`.

    Args:
        spec: one of :data:`MODEL_SPECS`.
        weights: ``None`` (cached pretrained), a path, a registry name or ``"random"``
            (``seed``-ed random weights), as for ``audiorep.load`` / ``load_backbone``.
        layers: fusion layers (default: the paper's, :data:`DEFAULT_FUSION_LAYERS`).
        unit_seconds: crop/pad every clip to this length (``None``: whole clips).

    Raises:
        WeightsUnavailableError: ``weights=None`` and no cached weights (says what to run).
    """
    backbone, _ = parse_spec(spec)
    options = {"pca": False} if "pca" in BUNDLES[backbone].options else {}  # float embeddings
    bundle = load(backbone, weights=weights, device=device, seed=seed, **options)
    return ClipFeatureExtractor(spec, bundle, layers=layers, unit_seconds=unit_seconds)


# ----------------------------------------------------------------------------- cache

#: Settings fields that do not change the features (descriptions, derived flags).
_NON_KEY_FIELDS = ("weights", "pretrained")


def cache_key(settings: Mapping[str, object]) -> str:
    """Short stable id of the feature settings (all fields but the weights' description)."""
    key = {k: v for k, v in settings.items() if k not in _NON_KEY_FIELDS}
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def default_cache_dir() -> Path:
    """``<weights cache>/linear_eval`` (``$AUDIOREP_HOME`` or ``~/.cache/audiorep``)."""
    from audiorep.weights import cache_dir

    return cache_dir() / "linear_eval"


class FeatureCache:
    """Clip features of audio files under one set of feature settings.

    Args:
        root: cache folder.
        settings: :meth:`ClipFeatureExtractor.settings`; hashed by :func:`cache_key`.

    Attributes:
        hits, misses: lookups answered / not answered since construction.
    """

    def __init__(self, root: str | os.PathLike, settings: Mapping[str, object]) -> None:
        self.root = Path(root)
        self.settings = dict(settings)
        self.dir = self.root / cache_key(settings)
        self.hits = 0
        self.misses = 0

    def path_for(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        """Cached float32 ``(D,)`` for a file content sha256, or ``None``."""
        try:
            arr = np.load(self.path_for(digest), allow_pickle=False)
        except (OSError, ValueError, EOFError):  # absent or damaged: recompute and overwrite
            self.misses += 1
            return None
        self.hits += 1
        return arr

    def put(self, digest: str, features: np.ndarray) -> Path:
        """Store float32 features atomically; returns the entry's path."""
        from audiorep.extract.writers import write_bytes_atomic, write_npy_atomic

        if not (self.dir / "settings.json").exists():
            text = json.dumps(self.settings, indent=2, sort_keys=True, default=str)
            write_bytes_atomic(self.dir / "settings.json", text.encode())
        return write_npy_atomic(self.path_for(digest), np.asarray(features, dtype=np.float32))


__all__ = [
    "MODEL_SPECS",
    "DEFAULT_FUSION_LAYERS",
    "ClipFeatureExtractor",
    "FeatureCache",
    "cache_key",
    "default_cache_dir",
    "make_extractor",
    "parse_spec",
]
