"""Every registered bundle honours the same contract (random weights; no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import audiorep
from audiorep.pipelines import BUNDLES, EMBEDDING_KEY_FIELDS, Bundle, get_spec


@pytest.fixture(scope="module", params=list(BUNDLES))
def bundle(request) -> Bundle:
    return audiorep.load(request.param, weights="random", seed=3)


def test_registry_lists_the_models_and_derives_their_consumers():
    from audiorep.evaluation.features import DEFAULT_FUSION_LAYERS, MIN_SAMPLES, MODEL_SPECS

    assert list(BUNDLES)[:3] == ["vggish", "cnn14", "ast"]
    for name, spec in BUNDLES.items():
        assert get_spec(name.upper()) is spec
        assert MIN_SAMPLES[name] == spec.min_samples
        assert DEFAULT_FUSION_LAYERS[name] == spec.fusion_layers
        assert {name, f"{name}-fusion"} <= set(MODEL_SPECS)
    with pytest.raises(ValueError, match="unknown model 'nope'; available: vggish, cnn14, ast"):
        audiorep.load("nope")
    with pytest.raises(ValueError, match=r"options \['pca'\] apply to VGGish only, not 'ast'"):
        audiorep.load("ast", weights="random", pca="x.npz")


def test_bundle_contract(bundle):
    spec = get_spec(bundle.name)
    assert isinstance(bundle, Bundle) and bundle.pretrained is False
    assert "random" in bundle.weights_description
    settings = bundle.settings()
    assert set(EMBEDDING_KEY_FIELDS) <= set(settings) and settings["model"] == bundle.name
    assert settings["weights_sha256"] == bundle.weights_fingerprint()
    assert len(bundle.weights_fingerprint()) == 64
    gen = torch.Generator().manual_seed(0)
    clip = 0.1 * torch.randn(spec.min_samples + 4000, generator=gen)
    emb = bundle.embed(clip, 16000)
    assert emb.dtype == torch.float32 and emb.ndim == 2 and emb.shape[0] >= 1
    assert emb.shape[1] == bundle.embedding_size and torch.isfinite(emb).all()
    # the shortest declared input embeds; other rates are resampled (numpy input accepted)
    assert bundle.embed(clip[: spec.min_samples], 16000).shape[0] >= 1
    at_48k = np.zeros(3 * (spec.min_samples + 4000), dtype=np.float32)
    assert bundle.embed(at_48k, 48000).shape[1] == bundle.embedding_size


def test_fingerprint_identifies_the_weights(bundle):
    same = audiorep.load(bundle.name, weights="random", seed=3)
    other = audiorep.load(bundle.name, weights="random", seed=4)
    assert same.weights_fingerprint() == bundle.weights_fingerprint()
    assert other.weights_fingerprint() != bundle.weights_fingerprint()
