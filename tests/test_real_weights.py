"""The reference's own smoke test, with the real released weights (skips without them).

tensorflow/models vggish_smoke_test.py (since 2023-07): a 3 s 1 kHz sine at 16 kHz gives
embedding mean 0.000657 / std 0.343 and postprocessed mean 126.0 / std 89.3 (rtol 0.1).
Point ``AUDIOREP_VGGISH_WEIGHTS`` at a weights file (converted .safetensors, vggish_model.ckpt
with TensorFlow installed, or torchvggish's .pth) and ``AUDIOREP_VGGISH_PCA`` at the PCA file,
or put them in the cache with ``audiorep weights download vggish-tf vggish-pca-tf``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from audiorep.pipelines import WeightsUnavailableError, load


@pytest.fixture(scope="module")
def real_bundle():
    weights = os.environ.get("AUDIOREP_VGGISH_WEIGHTS")
    pca = os.environ.get("AUDIOREP_VGGISH_PCA")
    try:
        bundle = load("vggish", weights=weights, pca=pca)
    except (WeightsUnavailableError, ImportError) as exc:
        pytest.skip(f"real VGGish weights not available here (no network, none cached): {exc}")
    return bundle


def test_reference_smoke_statistics(real_bundle):
    t = np.arange(0, 3.0, 1 / 16000)
    x = np.sin(2 * np.pi * 1000 * t)
    emb = real_bundle.embed(x, 16000).numpy()
    assert emb.shape == (3, 128)
    np.testing.assert_allclose([emb.mean(), emb.std()], [0.000657, 0.343], rtol=0.1)
    if real_bundle.postprocessor is None:
        pytest.skip("real PCA parameters not available: postprocess statistics not checked")
    q = real_bundle.quantize(real_bundle.embed(x, 16000)).numpy().astype(np.float64)
    np.testing.assert_allclose([q.mean(), q.std()], [126.0, 89.3], rtol=0.1)
