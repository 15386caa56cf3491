"""Backbones. Each exposes named intermediate activations through ``forward_taps``."""

from audiorep.models.taps import TappedModel
from audiorep.models.vggish import VGGish

__all__ = ["TappedModel", "VGGish"]
