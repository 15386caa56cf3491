"""The 8-bit quantisation range of AudioSet's released embeddings (YouTube-8M convention).

PCA-whitened embeddings are clipped to ``[QUANTIZE_MIN, QUANTIZE_MAX]`` and mapped to 0..255;
the data readers dequantise with the same range (features/postprocess.py quantises with it).
"""

QUANTIZE_MIN = -2.0
QUANTIZE_MAX = 2.0
