"""Losses built on tapped backbones (:mod:`audiorep.models.taps`).

* :mod:`~audiorep.losses.deep_feature`: :class:`DeepFeatureLoss` over any tapped backbone;
  :class:`VGGishDFL` and its ``vggishdfl``-compatible flavour.
* :mod:`~audiorep.losses.lpaps`: SpecVQGAN's LPAPS perceptual loss on the VGGish-ish taps.
* :mod:`~audiorep.losses.vqgan`: SpecVQGAN's codec training loss (L1 + LPAPS + patch-GAN hinge +
  VQ), :class:`VQGANLoss`, and its NaN / codebook-collapse guards.
"""

from audiorep.losses.deep_feature import (
    VGGISH_RELU_TAPS,
    DeepFeatureLoss,
    ExactVGGishSegments,
    VGGishDFL,
    VggishdflSegments,
)
from audiorep.losses.lpaps import LPAPS, LPAPS_TAPS, NetLinLayer, ScalingLayer
from audiorep.losses.vqgan import (
    CodebookCollapseWarning,
    NonFiniteLossError,
    VQGANLoss,
    VQGANLossConfig,
    check_finite,
    warn_if_collapsed,
)

__all__ = [
    "LPAPS",
    "LPAPS_TAPS",
    "VGGISH_RELU_TAPS",
    "CodebookCollapseWarning",
    "DeepFeatureLoss",
    "ExactVGGishSegments",
    "NetLinLayer",
    "NonFiniteLossError",
    "ScalingLayer",
    "VGGishDFL",
    "VQGANLoss",
    "VQGANLossConfig",
    "VggishdflSegments",
    "check_finite",
    "warn_if_collapsed",
]
