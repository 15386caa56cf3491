"""Features computed from backbone outputs (postprocessing, later fusion)."""

from audiorep.features.postprocess import Postprocessor, dequantize

__all__ = ["Postprocessor", "dequantize"]
