"""Ready-to-use model bundles (frontend + model + postprocessing + weights) and their registry.

``audiorep.load(name, ...)`` is the entry point (:func:`audiorep.pipelines.registry.load`);
every model registers a :class:`~audiorep.pipelines.registry.BundleSpec` in its own module:

* ``base.py``: the :class:`Bundle` base class, settings keys, the random-weights sentinel;
* ``registry.py``: :data:`BUNDLES`, :func:`register`, :func:`load`;
* ``vggish.py``: :class:`VGGishBundle`;
* ``backbones.py``: :class:`Cnn14Bundle`, :class:`ASTBundle`;
* ``specvqgan.py``: :class:`SpectrogramJudgeBundle` (Melception, VGGish-ish).
"""

from audiorep.pipelines.base import (
    EMBEDDING_KEY_FIELDS,
    PRECISIONS,
    RANDOM_WEIGHTS,
    RESAMPLER,
    Bundle,
    WeightsUnavailableError,
)
from audiorep.pipelines.registry import BUNDLES, BundleSpec, get_spec, load, register

# Registration order is the order of `--model` choices and error messages: VGGish first.
# isort: off
from audiorep.pipelines.vggish import Embeddings, VGGishBundle, load_vggish
from audiorep.pipelines.backbones import ASTBundle, Cnn14Bundle, load_backbone
from audiorep.pipelines.specvqgan import SpectrogramJudgeBundle, load_judge
# isort: on

__all__ = [
    "ASTBundle",
    "BUNDLES",
    "Bundle",
    "BundleSpec",
    "Cnn14Bundle",
    "EMBEDDING_KEY_FIELDS",
    "Embeddings",
    "PRECISIONS",
    "RANDOM_WEIGHTS",
    "RESAMPLER",
    "SpectrogramJudgeBundle",
    "VGGishBundle",
    "WeightsUnavailableError",
    "get_spec",
    "load",
    "load_backbone",
    "load_judge",
    "load_vggish",
    "register",
]
