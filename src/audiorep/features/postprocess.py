"""VGGish PCA + 8-bit quantisation, exactly as the reference ``vggish_postprocess``.

``uint8 = floor((clip(E @ (emb - mu), -2, 2) + 2) * 255 / 4)``: the reference casts with
``astype(uint8)``, which truncates (torchvggish rounds instead, changing ~25% of the bytes).
This is the form of the released AudioSet features; :func:`dequantize` is YouTube-8M's inverse.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from audiorep.data.quantization import QUANTIZE_MAX, QUANTIZE_MIN, dequantize  # noqa: F401

_LEVELS = 255.0


class Postprocessor(nn.Module):
    """PCA-whiten and quantise embeddings: ``(N, 128)`` float -> ``(N, 128)`` uint8.

    Args:
        pca_eigen_vectors: ``(128, 128)``, rows are the PCA basis (``vggish_pca_params.npz``).
        pca_means: ``(128,)`` or ``(128, 1)``.
        rounding: ``"truncate"`` (reference) or ``"round"`` (torchvggish's behaviour, only
            for reproducing numbers computed with it).

    The PCA is evaluated in float64 so that the result does not depend on the device's
    float32 summation order; it then differs from the reference's float32 NumPy product by
    far less than one quantisation step (values within ~1e-4 of an integer boundary can land
    one level apart).
    """

    def __init__(
        self,
        pca_eigen_vectors: np.ndarray | torch.Tensor,
        pca_means: np.ndarray | torch.Tensor,
        rounding: str = "truncate",
    ):
        super().__init__()
        e = torch.as_tensor(np.asarray(pca_eigen_vectors, dtype=np.float32))
        m = torch.as_tensor(np.asarray(pca_means, dtype=np.float32)).reshape(-1)
        if e.dim() != 2 or e.shape[0] != e.shape[1] or m.shape[0] != e.shape[1]:
            raise ValueError(
                f"PCA parameters must be (D, D) eigenvectors and (D,) means, got "
                f"{tuple(e.shape)} and {tuple(m.shape)}"
            )
        if rounding not in ("truncate", "round"):
            raise ValueError(f"rounding must be 'truncate' or 'round', got {rounding!r}")
        self.rounding = rounding
        self.register_buffer("pca_eigen_vectors", e)
        self.register_buffer("pca_means", m)

    def project(self, embeddings: torch.Tensor) -> torch.Tensor:
        """PCA projection ``(N, 128) -> (N, 128)`` float64, before clipping."""
        e = self.pca_eigen_vectors.to(embeddings.device, torch.float64)
        m = self.pca_means.to(embeddings.device, torch.float64)
        return (embeddings.to(torch.float64) - m) @ e.T

    def forward(self, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Quantise ``(N, 128)`` embeddings to uint8 ``(N, 128)``; ``(0, 128)`` stays empty.

        A NumPy array (as the reference's ``Postprocessor.postprocess`` takes) gives a NumPy
        uint8 array back; a tensor gives a tensor on its device."""
        if isinstance(embeddings, np.ndarray):
            return self.forward(torch.from_numpy(np.asarray(embeddings))).cpu().numpy()
        if not isinstance(embeddings, torch.Tensor):
            raise TypeError(f"expected a tensor or NumPy array, got {type(embeddings).__name__}")
        if embeddings.dim() != 2 or embeddings.shape[1] != self.pca_means.shape[0]:
            raise ValueError(
                f"expected embeddings (N, {self.pca_means.shape[0]}), got {tuple(embeddings.shape)}"
            )
        clipped = self.project(embeddings).clamp(QUANTIZE_MIN, QUANTIZE_MAX)
        scaled = (clipped - QUANTIZE_MIN) * (_LEVELS / (QUANTIZE_MAX - QUANTIZE_MIN))
        scaled = torch.round(scaled) if self.rounding == "round" else torch.floor(scaled)
        return scaled.to(torch.uint8)
