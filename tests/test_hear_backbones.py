"""audiorep.hear with CNN14 and AST (issue #7): shapes, centred timestamps, scene embeddings.

Seeded random weights only. CNN14 is the full model (random weights ~3 s, ~0.5 s per second
of audio here); AST runs mostly on tiny configurations (the full one costs ~3 s per 10.24 s
window on the 2-core box, so it is run once), which exercise the same code paths: patch grid,
token layout, window stitching.
"""

from __future__ import annotations

import pytest
import torch

from audiorep import hear
from audiorep.backbones import ASTBundle, Cnn14Bundle
from audiorep.models.ast import AST
from audiorep.models.ast import seeded_random_state_dict as ast_random
from audiorep.pipelines import WeightsUnavailableError
from numerics import (
    CNN14_CONV_BLOCK6,
    CNN14_EMBEDDING,
    assert_reordering_close,
    ast_reductions,
)

SR = 16000
TINY_AST = {"depth": 2, "embed_dim": 32, "num_heads": 2}
# 1024-frame windows hold 12 x 101 patches, 128-frame ones 12 x 12 (+ cls and dist tokens)
TINY_AST_1024 = ast_reductions(2, 32, 12 * 101 + 2)
TINY_AST_128 = ast_reductions(2, 32, 12 * 12 + 2)


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOREP_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")  # nothing here may download


def _audio(n_sounds: int, samples: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n_sounds, samples, generator=gen)


def _tiny_ast(input_tdim: int = 1024, seed: int = 0) -> ASTBundle:
    config = dict(TINY_AST, input_tdim=input_tdim)
    model = AST(**config)
    model.load_state_dict(ast_random(seed, **config))
    return ASTBundle(model, f"tiny seed {seed}", pretrained=False)


@pytest.fixture(scope="module")
def cnn14() -> hear.HearModel:
    return hear.load_model("random", model="cnn14", device="cpu")


@pytest.fixture(scope="module")
def ast_tiny() -> hear.HearModel:
    """1024-frame windows (the AudioSet grid: 12 x 101 patches), 32-d tokens."""
    return hear.HearModel(_tiny_ast())


@pytest.fixture(scope="module")
def ast_short() -> hear.HearModel:
    """128-frame windows: 12 x 12 patches, windows every 120 frames (1.2 s)."""
    return hear.HearModel(_tiny_ast(input_tdim=128, seed=1), batch_size=3)


# ----------------------------------------------------------------------------- CNN14


def test_cnn14_attributes(cnn14):
    assert isinstance(cnn14, torch.nn.Module) and not cnn14.training
    assert cnn14.sample_rate == 16000
    assert cnn14.scene_embedding_size == cnn14.timestamp_embedding_size == 2048
    assert (cnn14.frames.first_centre_ms, cnn14.frames.hop_ms) == (155.0, 320.0)
    assert cnn14.device == torch.device("cpu") and "random" in repr(cnn14)
    # T = 1 + max(n, 4960) // 160 log-mel frames, one timestamp per 32
    counts = [cnn14.num_timestamps(n) for n in (0, 100, 4960, 10079, 10080, 32000)]
    assert counts == [1, 1, 1, 1, 2, 6]


def test_cnn14_timestamp_embeddings(cnn14):
    audio = _audio(2, 24000)  # 1.5 s: T = 151 log-mel frames -> 4 frames
    emb, ts = hear.get_timestamp_embeddings(audio, cnn14)
    assert emb.shape == (2, 4, 2048) and emb.dtype == torch.float32
    assert ts.shape == (2, 4) and ts.dtype == torch.float32
    expected = torch.tensor([155.0, 475.0, 795.0, 1115.0])
    assert torch.equal(ts[0], expected) and torch.equal(ts[1], expected)
    assert torch.all(torch.diff(ts, dim=1) == 320.0)
    assert not emb.is_inference()
    # = the bundle's conv_block6 map of each sound, averaged over frequency
    bundle = cnn14.bundle
    with torch.inference_mode():
        for i in range(2):
            fmap = bundle.model.forward_taps(bundle.logmel(audio[i], SR), "conv_block6")
            ref = fmap["conv_block6"][0].mean(dim=2).T  # (4, 2048)
            assert_reordering_close(emb[i], ref, (*CNN14_CONV_BLOCK6, 2 * 2))  # + freq mean
    # deterministic; independent of the batching beyond rounding; float64 input accepted
    again, ts2 = hear.get_timestamp_embeddings(audio, cnn14)
    assert torch.equal(again, emb) and torch.equal(ts2, ts)
    one = hear.HearModel(bundle, batch_size=1)
    assert_reordering_close(one.timestamp_embeddings(audio.double())[0], emb, CNN14_CONV_BLOCK6)


def test_cnn14_short_and_empty(cnn14):
    emb, ts = hear.get_timestamp_embeddings(_audio(1, 800), cnn14)  # padded to 4960
    assert emb.shape == (1, 1, 2048) and ts.tolist() == [[155.0]]
    emb, ts = hear.get_timestamp_embeddings(torch.zeros(0, 800), cnn14)
    assert emb.shape == (0, 1, 2048) and ts.shape == (0, 1)
    assert hear.get_scene_embeddings(torch.zeros(0, 800), cnn14).shape == (0, 2048)


def test_cnn14_scene_is_embed_clip(cnn14):
    audio = _audio(2, 12000, seed=1)  # 0.75 s
    scene = hear.get_scene_embeddings(audio, cnn14)
    assert scene.shape == (2, 2048) and scene.dtype == torch.float32
    for i in range(2):
        assert_reordering_close(scene[i], cnn14.bundle.embed_clip(audio[i], SR), CNN14_EMBEDDING)
    assert torch.equal(hear.get_scene_embeddings(audio, cnn14), scene)


# ----------------------------------------------------------------------------- AST


def test_ast_layout(ast_tiny, ast_short):
    assert ast_tiny.sample_rate == 16000
    assert ast_tiny.scene_embedding_size == ast_tiny.timestamp_embedding_size == 32
    assert (ast_tiny.frames.freq_patches, ast_tiny.frames.patches_per_window) == (12, 101)
    assert (
        ast_tiny.frames.hop_frames,
        ast_tiny.frames.first_centre_samples,
        ast_tiny.frames.hop_samples,
    ) == (
        1010,
        1400,
        1600,
    )
    assert (ast_tiny.frames.first_centre_ms, ast_tiny.frames.hop_ms) == (87.5, 100.0)
    assert (ast_short.frames.patches_per_window, ast_short.frames.hop_frames) == (12, 120)
    # one timestamp per patch centre inside the sound, at least one
    counts = [ast_tiny.num_timestamps(n) for n in (0, 400, 1400, 1401, 3000, 3001, 32000)]
    assert counts == [1, 1, 1, 1, 1, 2, 20]
    assert [
        ast_tiny.frames.num_windows(n) for n in (32000, 1401 + 1600 * 100, 1401 + 1600 * 101)
    ] == [
        1,
        1,
        2,
    ]


def test_ast_timestamp_embeddings_one_window(ast_tiny):
    audio = _audio(2, 32000)  # 2 s: patch centres 87.5 ... 1987.5 ms
    emb, ts = hear.get_timestamp_embeddings(audio, ast_tiny)
    assert emb.shape == (2, 20, 32) and emb.dtype == torch.float32
    assert ts.shape == (2, 20) and ts.dtype == torch.float32
    expected = 87.5 + 100.0 * torch.arange(20, dtype=torch.float32)
    assert torch.equal(ts[0], expected) and torch.equal(ts[1], expected)
    # = the bundle's own window: norm tokens without cls/dist, averaged over frequency
    bundle = ast_tiny.bundle
    with torch.inference_mode():
        for i in range(2):
            wins = bundle.windows(audio[i], SR)
            assert wins.shape[0] == 1
            tokens = bundle.model.forward_taps(wins, "norm")["norm"][0, 2:]
            ref = tokens.reshape(12, 101, 32).mean(dim=0)[:20]
            assert_reordering_close(emb[i], ref, (*TINY_AST_1024, 12))  # + freq mean
    again, _ = hear.get_timestamp_embeddings(audio, ast_tiny)
    assert torch.equal(again, emb)


def test_ast_windows_continue_the_patch_grid(ast_short):
    audio = _audio(2, 32000, seed=2)  # 20 timestamps: 12 from window 0, 8 from window 1
    emb, ts = hear.get_timestamp_embeddings(audio, ast_short)
    assert emb.shape == (2, 20, 32)
    assert torch.equal(ts[0], 87.5 + 100.0 * torch.arange(20, dtype=torch.float32))
    # window 1 = fbank frames [120, 248) of the mean-removed sound, normalised
    bundle = ast_short.bundle
    fe = bundle.frontend
    with torch.inference_mode():
        for i in range(2):
            x = audio[i].to(fe.fbank.dtype)
            feats = fe.fbank((x - x.mean())[None])[0]  # (198, 128)
            feats = torch.nn.functional.pad(feats, (0, 0, 0, 248 - feats.shape[0]))
            wins = torch.stack([feats[:128], feats[120:248]])
            wins = (wins - fe.mean) / (2.0 * fe.std)
            tokens = bundle.model.forward_taps(wins, "norm")["norm"][:, 2:]
            ref = tokens.reshape(2, 12, 12, 32).mean(dim=1).reshape(24, 32)[:20]
            assert_reordering_close(emb[i], ref, (*TINY_AST_128, 12))  # + freq mean


def test_ast_short_sounds(ast_short):
    emb, ts = hear.get_timestamp_embeddings(_audio(3, 100), ast_short)
    assert emb.shape == (3, 1, 32) and ts.tolist() == [[87.5]] * 3
    scene = hear.get_scene_embeddings(_audio(1, 100), ast_short)
    assert scene.shape == (1, 32)


def test_ast_scene_is_embed_clip(ast_tiny, ast_short):
    audio = _audio(2, 32000, seed=3)
    for wrapper in (ast_tiny, ast_short):  # one bundle window; two (hop 128 frames)
        scene = hear.get_scene_embeddings(audio, wrapper)
        assert scene.shape == (2, 32) and scene.dtype == torch.float32
        for i in range(2):
            ref = wrapper.bundle.embed_clip(audio[i], SR)
            assert_reordering_close(scene[i], ref, (*TINY_AST_1024, 1212))  # + token mean


def test_ast_full_config():
    model = hear.load_model("random", model="ast", device="cpu", seed=3)
    assert isinstance(model, hear.HearModel) and not model.training
    assert model.scene_embedding_size == model.timestamp_embedding_size == 768
    assert (model.frames.patches_per_window, model.frames.hop_frames, model.batch_size) == (
        101,
        1010,
        8,
    )
    emb, ts = hear.get_timestamp_embeddings(_audio(1, 8000), model)
    assert emb.shape == (1, 5, 768) and emb.dtype == torch.float32
    assert ts.tolist() == [[87.5, 187.5, 287.5, 387.5, 487.5]]
    assert torch.isfinite(emb).all()


# ----------------------------------------------------------------------------- load_model


def test_load_model_errors():
    with pytest.raises(ValueError, match="unknown HEAR model"):
        hear.load_model("random", model="panns")
    with pytest.raises(TypeError, match="hop_seconds"):
        hear.load_model("random", model="cnn14", hop_seconds=0.1)
    with pytest.raises(TypeError, match="pca"):
        hear.load_model("random", model="ast", pca=True)
    for name in ("cnn14", "ast"):  # "" = cached pretrained weights: none in the empty cache
        with pytest.raises(WeightsUnavailableError, match="audiorep weights download"):
            hear.load_model("", model=name, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        hear.HearModel(_tiny_ast(input_tdim=32), batch_size=0)


def test_cnn14_module(cnn14):
    assert isinstance(cnn14.bundle, Cnn14Bundle) and cnn14.model is cnn14.bundle.model
    assert cnn14.to("cpu") is cnn14 and cnn14.bundle.device == torch.device("cpu")
