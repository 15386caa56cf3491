"""The bundle registry: one entry per model, and ``load(name, ...)`` over it.

Everything that differs per model and is needed outside its bundle (CLI ``--model`` choices,
linear-evaluation specs, HEAR models, the shortest input, the paper's fusion layers) is read
from :data:`BUNDLES`; adding a model is one :func:`register` call in its
``pipelines/<name>.py`` module, imported by ``pipelines/__init__.py`` (docs/architecture.md,
"Adding a model").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from audiorep.pipelines.base import Bundle


@dataclass(frozen=True)
class BundleSpec:
    """One registered model.

    Attributes:
        name: the registry name (``audiorep.load(name)``, ``--model name``).
        loader: ``loader(**options) -> Bundle``; raises ``TypeError`` for an unknown option.
        summary: one line for ``--help`` and docs.
        min_samples: shortest input at 16 kHz, in samples, the bundle embeds without padding.
        fusion_layers: the paper's default fusion layers (``--fusion``, ``*-fusion`` specs).
        options: keyword options the loader accepts besides ``weights``, ``device``, ``seed``.
        clip_feature: how linear evaluation makes one vector per clip (EVAR's wrappers):
            ``"embed_clip"`` (the bundle's own clip vector) or ``"mean_max"`` (max + mean over
            the rows of ``embed``, EVAR's ``temporal_pooling: mean_max``).
        clip_feature_notes: what the plain and the fusion clip features pool, in words (they
            are part of the linear-evaluation cache key: change them only with the features).
    """

    name: str
    loader: Callable[..., Bundle]
    summary: str
    min_samples: int
    fusion_layers: tuple[int | str, ...]
    options: tuple[str, ...] = ()
    clip_feature: str = "embed_clip"
    clip_feature_notes: tuple[str, str] = ("clip embedding", "fusion feature")


BUNDLES: dict[str, BundleSpec] = {}


def register(spec: BundleSpec) -> BundleSpec:
    """Add a model to the registry (once per name)."""
    if spec.name in BUNDLES:
        raise ValueError(f"bundle {spec.name!r} is registered twice")
    BUNDLES[spec.name] = spec
    return spec


def get_spec(name: str) -> BundleSpec:
    """The spec of ``name`` (case-insensitive); ``ValueError`` lists the available ones."""
    key = str(name).strip().lower()
    if key not in BUNDLES:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(BUNDLES)}")
    return BUNDLES[key]


def load(name: str = "vggish", **options) -> Bundle:
    """Build a ready-to-use bundle of a registered model.

    ``weights`` (``None`` = the cached pretrained weights, never downloaded here; a path; a
    registry name; ``"random"``), ``device`` and ``seed`` apply to every model; the other
    options are the model's own (VGGish: ``pca``, ``frontend_dtype``, ``torchvggish_compat``,
    ``precision``, ``windowing``; see :func:`audiorep.pipelines.vggish.load_vggish`).

    Raises:
        ValueError: unknown model, or an option the model does not take.
        WeightsUnavailableError: no weights were found; the message lists the options.
    """
    spec = get_spec(name)
    common = {"weights", "device", "seed"}
    unknown = sorted(set(options) - common - set(spec.options))
    if unknown:
        owners = [s.name for s in BUNDLES.values() if set(unknown) <= set(s.options)]
        who = (
            f"apply to {', '.join(o if o != 'vggish' else 'VGGish' for o in owners)} only"
            if owners
            else "are unknown"
        )
        raise ValueError(f"options {unknown} {who}, not {spec.name!r}")
    return spec.loader(**options)


__all__ = ["BUNDLES", "BundleSpec", "get_spec", "load", "register"]
