"""Losses built on tapped backbones (:mod:`audiorep.models.taps`).

* :mod:`~audiorep.losses.deep_feature`: :class:`DeepFeatureLoss` over any tapped backbone;
  :class:`VGGishDFL` and its ``vggishdfl``-compatible flavour.
* :mod:`~audiorep.losses.lpaps`: SpecVQGAN's LPAPS perceptual loss on the VGGish-ish taps.
"""

from audiorep.losses.deep_feature import (
    VGGISH_RELU_TAPS,
    DeepFeatureLoss,
    ExactVGGishSegments,
    VGGishDFL,
    VggishdflSegments,
)
from audiorep.losses.lpaps import LPAPS, LPAPS_TAPS, NetLinLayer, ScalingLayer

__all__ = [
    "LPAPS",
    "LPAPS_TAPS",
    "VGGISH_RELU_TAPS",
    "DeepFeatureLoss",
    "ExactVGGishSegments",
    "NetLinLayer",
    "ScalingLayer",
    "VGGishDFL",
    "VggishdflSegments",
]
