"""Tolerances derived from floating-point arithmetic, not from what one CPU happened to produce.

Two evaluations of the same computation that differ only in the order of their sums (another
batch size, other padding, another SIMD kernel: AMX, AVX-512, AVX2) round differently. A dot
product of K terms with random signs carries a rounding error of about ``eps * sqrt(K)`` times
the magnitude of its result (Higham, "Accuracy and Stability of Numerical Algorithms", §3.1 and
the probabilistic bound of §2.8; the worst case is ``K * eps``). Through a network of reductions
of lengths K_1, ..., K_L with ReLU/normalisation between them, a relative perturbation is carried
forward with gain about 1, so the errors of the layers add up: we bound the difference of two
evaluations by

    atol = SAFETY * eps * scale * sum_l sqrt(K_l)

with ``scale`` the RMS of the compared output (the magnitude of a typical result) and SAFETY = 4:
a factor sqrt(2) because both evaluations carry an error, times about 3 for the largest of a few
thousand compared elements (a 3-sigma tail). Bit-identity is asserted only where it is guaranteed
(same shapes, same kernels, same process).

A check built on this still catches real bugs: a shifted window, other padding or a wrong layer
moves outputs by O(scale), orders of magnitude above ``eps * sum sqrt(K)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
EPS64 = float(np.finfo(np.float64).eps)  # 2.2e-16
SAFETY = 4.0

# Reduction lengths (kernel * input channels, or input features) of each layer, in order.
# VGGish: conv1..conv4_2 (3x3 kernels), fc1_1, fc1_2, fc2.
VGGISH_EMBEDDING = (9, 9 * 64, 9 * 128, 9 * 256, 9 * 256, 9 * 512, 12288, 4096, 4096)
# VGGish's float32 log-mel: a 400-sample frame through a 512-point FFT (log2 512 = 9 butterfly
# stages; we count it as a 512-long reduction, the conservative choice), 257 bins into a mel band.
VGGISH_LOGMEL = (512, 257)
# CNN14 (16 kHz): a 512-point STFT as a conv, 257 bins into mel bands, then two 3x3 convs per
# block at 1-64-128-256-512-1024-2048 channels. conv_block6 is the last conv; fc1 follows it.
CNN14_LOGMEL = (512, 257)
CNN14_CONV_BLOCK6 = (
    *CNN14_LOGMEL,
    *(9 * c for c in (1, 64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024, 2048)),
)
CNN14_EMBEDDING = (*CNN14_CONV_BLOCK6, 2048)


def reordering_atol(
    scale: float, reductions: Sequence[int], *, eps: float = EPS32, safety: float = SAFETY
) -> float:
    """Absolute tolerance between two evaluations that differ only in summation order.

    scale: typical magnitude of the compared values (their RMS); reductions: the lengths of the
    chained reductions that produced them (see the module docstring for the derivation).
    """
    return safety * eps * max(float(scale), 0.0) * sum(math.sqrt(k) for k in reductions)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x.astype(np.float64))))) if x.size else 0.0


def assert_reordering_close(
    actual,
    expected,
    reductions: Sequence[int],
    *,
    eps: float | None = None,
    scale: float | None = None,
) -> None:
    """Assert ``actual`` and ``expected`` differ by no more than rounding in another sum order.

    eps defaults to the epsilon of ``expected``'s dtype; scale to the RMS of ``expected`` (pass
    it when the expected values are all equal, e.g. a silent input's embedding).
    """
    a = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    e = (
        expected.detach().cpu().numpy()
        if isinstance(expected, torch.Tensor)
        else np.asarray(expected)
    )
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    if eps is None:
        eps = EPS64 if e.dtype == np.float64 else EPS32
    ref_scale = _rms(e) if scale is None else scale
    atol = reordering_atol(ref_scale, reductions, eps=eps)
    np.testing.assert_allclose(
        a,
        e,
        rtol=0,
        atol=atol,
        err_msg=(
            f"beyond summation-order rounding: atol = {SAFETY} * eps {eps:.3g} * scale "
            f"{ref_scale:.3g} * sum sqrt(K) over {len(reductions)} reductions = {atol:.3g}"
        ),
    )


def ast_reductions(depth: int, embed_dim: int, tokens: int, mlp_ratio: float = 4.0) -> tuple:
    """AST: Kaldi fbank (512-point FFT, 257 bins per band), a 16x16 patch projection, then per
    block two LayerNorms (dim), qkv (dim), scores (dim), attention over the tokens, the output
    projection (dim) and the MLP (dim, then mlp_ratio * dim)."""
    block = (embed_dim, embed_dim, embed_dim, tokens, embed_dim, embed_dim, embed_dim)
    block = (*block, int(embed_dim * mlp_ratio))
    return (512, 257, 256, *(block * depth), embed_dim)
