"""Frontends: waveform -> model input features (batched, differentiable, any device)."""

from audiorep.frontends.vggish import VGGishFrontend, waveform_to_examples

__all__ = ["VGGishFrontend", "waveform_to_examples"]
