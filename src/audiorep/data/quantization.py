"""The 8-bit quantisation range of AudioSet's released embeddings (YouTube-8M convention).

PCA-whitened embeddings are clipped to ``[QUANTIZE_MIN, QUANTIZE_MAX]`` and mapped to 0..255;
the data readers dequantise with the same range (features/postprocess.py quantises with it).
"""

from __future__ import annotations

import numpy as np
import torch

QUANTIZE_MIN = -2.0
QUANTIZE_MAX = 2.0


def dequantize(
    quantized: torch.Tensor | np.ndarray,
    max_quantized_value: float = QUANTIZE_MAX,
    min_quantized_value: float = QUANTIZE_MIN,
) -> torch.Tensor:
    """YouTube-8M's inverse of the quantiser: uint8 ``(..., 128)`` -> float32.

    ``q * (range / 255) + range / 512 + min`` with ``range = max - min``: each byte maps to
    (roughly) the centre of its quantisation bin, as the YouTube-8M readers do.
    """
    q = torch.as_tensor(
        np.asarray(quantized) if not isinstance(quantized, torch.Tensor) else quantized
    )
    value_range = max_quantized_value - min_quantized_value
    scalar = value_range / 255.0
    bias = value_range / 512.0 + min_quantized_value
    return q.to(torch.float32) * scalar + bias
