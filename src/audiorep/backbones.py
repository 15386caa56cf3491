"""Compatibility alias: the CNN14 and AST bundles now live in :mod:`audiorep.pipelines.backbones`.

Kept for one release so ``from audiorep.backbones import ...`` still works; new code imports
from :mod:`audiorep.pipelines`.
"""

from audiorep.pipelines.backbones import *  # noqa: F403
from audiorep.pipelines.backbones import (  # noqa: F401 - names tests and users imported
    AST_MIN_SAMPLES,
    BACKBONES,
    CNN14_MIN_SAMPLES,
    PRETRAINED_ENTRIES,
    SAMPLE_RATE,
    resolve_backbone_weights,
    state_fingerprint,
)
