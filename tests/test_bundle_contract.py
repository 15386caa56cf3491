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
    with pytest.raises(
        ValueError,
        match="unknown model .nope.; available: vggish, cnn14, ast, melception, vggishish",
    ):
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


def test_every_method_means_the_same_for_every_bundle(bundle):
    """One meaning per method (issue 11): the return types and shapes agree across models."""
    from audiorep.pipelines import Embeddings
    from audiorep.pipelines.base import Frames

    spec = get_spec(bundle.name)
    gen = torch.Generator().manual_seed(1)
    n = max(spec.min_samples, 16000) + 8000
    clip = 0.1 * torch.randn(n, generator=gen)
    rows = bundle.embed(clip, 16000)
    vector = bundle.embed_clip(clip, 16000)
    assert isinstance(vector, torch.Tensor) and vector.shape == (bundle.embedding_size,)
    assert vector.dtype == torch.float32
    found = bundle.clip_embeddings(clip, 16000)
    assert isinstance(found, Embeddings)
    assert found.embeddings.shape == tuple(rows.shape) and found.embeddings.dtype == np.float32
    assert found.timestamps.shape == (rows.shape[0],) and found.timestamps.dtype == np.float64
    assert np.all(np.diff(found.timestamps) > 0) and found.timestamps[0] == 0.0
    assert 0 < bundle.unit_seconds(n / 16000) <= max(n / 16000, 10.24)
    assert bundle.settings()["windowing"] == bundle.windowing_settings()
    assert isinstance(bundle.describe_units(), str) and bundle.describe_units()
    assert isinstance(bundle.streams_windows, bool)
    fused = bundle.fusion(clip, 16000)
    assert fused.ndim == 1 and fused.dtype == torch.float32 and torch.isfinite(fused).all()
    frames = bundle.frames(batch_size=2)
    assert isinstance(frames, Frames) and frames.embedding_size == bundle.embedding_size
    with torch.inference_mode():
        emb = frames.embeddings(clip[None].repeat(2, 1))
    assert emb.shape == (2, frames.num_timestamps(n), bundle.embedding_size)
    assert frames.timestamps_ms(n).shape == (frames.num_timestamps(n),)
    # the HEAR API serves every bundle through the one generic wrapper
    from audiorep import hear

    module = hear.HearModel(bundle, batch_size=2)
    ts_emb, ts = hear.get_timestamp_embeddings(clip[None], module)
    assert ts_emb.shape == (1, frames.num_timestamps(n), bundle.embedding_size)
    assert ts.shape == (1, frames.num_timestamps(n)) and torch.all(torch.diff(ts[0]) > 0)
    assert hear.get_scene_embeddings(clip[None], module).shape == (1, bundle.embedding_size)


def test_consumers_do_not_branch_on_the_model_name():
    """extract/, evaluation/ and hear.py read the bundle surface, never guess by type."""
    import ast as pyast
    from pathlib import Path

    root = Path(audiorep.__file__).parent
    files = [*sorted((root / "extract").glob("*.py")), *sorted((root / "evaluation").glob("*.py"))]
    files.append(root / "hear.py")
    offenders = []
    for path in files:
        tree = pyast.parse(path.read_text())
        for node in pyast.walk(tree):
            if isinstance(node, pyast.Call) and getattr(node.func, "id", "") in (
                "hasattr",
                "isinstance",
            ):
                text = pyast.unparse(node)
                if "windowing" in text or "Bundle" in text:
                    offenders.append(f"{path.name}: {text}")
            if isinstance(node, pyast.Compare):
                text = pyast.unparse(node)
                if any(f"== '{name}'" in text or f'== "{name}"' in text for name in BUNDLES):
                    offenders.append(f"{path.name}: {text}")
    assert not offenders, offenders
