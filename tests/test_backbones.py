"""CNN14/AST bundles: load_backbone, shapes, settings, fingerprints, windows, weight resolution."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from audiorep.backbones import (
    ASTBundle,
    Cnn14Bundle,
    load_backbone,
    prepare_waveform,
    state_fingerprint,
)
from audiorep.features.fusion import GeneralPurposeAST, GeneralPurposeCnn14
from audiorep.frontends.kaldi_fbank import AST_MEAN, AST_STD
from audiorep.models.ast import AST
from audiorep.models.ast import seeded_random_state_dict as ast_random
from audiorep.pipelines import EMBEDDING_KEY_FIELDS, WeightsUnavailableError
from numerics import assert_reordering_close

#: The keys of VGGishBundle.settings().
SETTINGS_KEYS = {
    "model",
    "weights",
    "weights_sha256",
    "pretrained",
    "final_relu",
    "frontend_dtype",
    "precision",
    "windowing",
    "resampler",
}
TINY_AST = {"depth": 2, "embed_dim": 32, "num_heads": 2}
# float32 Kaldi fbank: a relative error r of a band's energy (FFT + 257-bin sum) is an absolute
# error r of its log, then divided by 2 * AST_STD by the input normalisation.
FBANK = (512, 257)
FBANK_SCALE = 1.0 / (2.0 * AST_STD)


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    home = tmp_path / "cache"
    monkeypatch.setenv("AUDIOREP_HOME", str(home))
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")  # nothing here may download
    return home


@pytest.fixture(scope="module")
def cnn14() -> Cnn14Bundle:
    return load_backbone("cnn14", weights="random", seed=0)


def tiny_ast_bundle(seed: int = 0, **kwargs) -> ASTBundle:
    model = AST(**TINY_AST)
    model.load_state_dict(ast_random(seed, **TINY_AST))
    return ASTBundle(model, f"tiny seed {seed}", pretrained=False, **kwargs)


def wave(
    seconds: float, sr: int = 16000, channels: int = 0, seed: int = 0, samples: int | None = None
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    n = samples if samples is not None else round(seconds * sr)
    shape = (channels, n) if channels else (n,)
    return 0.1 * torch.randn(shape, generator=gen)


# ----------------------------------------------------------------------------- CNN14


def test_cnn14_random_bundle(cnn14):
    assert cnn14.sample_rate == 16000 and cnn14.embedding_size == 2048
    assert not cnn14.pretrained and "random" in cnn14.weights_description
    assert not cnn14.model.training
    assert cnn14.device == torch.device("cpu")
    assert cnn14.to("cpu") is cnn14


def test_cnn14_embed_equals_model(cnn14):
    x = wave(0.5)  # 51 frames: the network needs >= 32
    emb = cnn14.embed(x, 16000)
    assert emb.shape == (1, 2048) and emb.dtype == torch.float32
    with torch.no_grad():
        ref = cnn14.model(cnn14.frontend(x[None]))
    torch.testing.assert_close(emb, ref, rtol=0, atol=0)
    torch.testing.assert_close(cnn14.embed_clip(x, 16000), ref[0], rtol=0, atol=0)
    with torch.no_grad():
        fus = GeneralPurposeCnn14(cnn14.model, [3, 6])(cnn14.frontend(x[None]))[0]
    out = cnn14.fusion(x, 16000)
    assert out.shape == (6144,)
    torch.testing.assert_close(out, fus, rtol=0, atol=0)
    assert cnn14.fusion(x, 16000, layers=[6]).shape == (4096,)


def test_cnn14_channels_rate_and_short_clips(cnn14):
    stereo = wave(0.5, sr=22050, channels=2)
    emb = cnn14.embed(stereo, 22050)
    mono16k = prepare_waveform(stereo, 22050)
    assert mono16k.shape == (8000,)  # resampy-style length int(n * 16000 / 22050)
    torch.testing.assert_close(emb, cnn14.embed(mono16k, 16000))
    # Shorter than 32 frames: zero-padded to 4960 samples.
    short = wave(0.1)
    padded = torch.nn.functional.pad(short, (0, 4960 - short.shape[0]))
    torch.testing.assert_close(cnn14.embed(short, 16000), cnn14.embed(padded, 16000))
    with pytest.raises(ValueError, match="samples, channels"):
        cnn14.embed(wave(0.5, channels=2).T, 16000)


def test_settings_and_fingerprint(cnn14):
    s = cnn14.settings()
    assert set(s) == SETTINGS_KEYS and set(EMBEDDING_KEY_FIELDS) <= set(s)
    json.dumps(s)  # serialisable
    assert s["model"] == "cnn14" and s["final_relu"] is False and s["pretrained"] is False
    assert s["precision"] == "float32" and s["frontend_dtype"] == "float32"
    assert s["windowing"]["min_samples"] == 4960
    fp = cnn14.weights_fingerprint()
    assert len(fp) == 64 and fp == s["weights_sha256"]
    cnn14._fingerprint = None  # recomputed from the tensors: same digest
    assert cnn14.weights_fingerprint() == fp == state_fingerprint(cnn14.model)

    a, a2, b = tiny_ast_bundle(0), tiny_ast_bundle(0), tiny_ast_bundle(1)
    assert a.weights_fingerprint() == a2.weights_fingerprint() != b.weights_fingerprint()
    assert set(a.settings()) == SETTINGS_KEYS


def test_cnn14_weights_from_cache_and_path(cnn14, empty_cache):
    # A PANNs-layout checkpoint in the cache is what weights=None picks up.
    dst = empty_cache / "cnn14-16k" / "Cnn14_16k_mAP=0.438.pth"
    dst.parent.mkdir(parents=True)
    torch.save({"iteration": 0, "model": cnn14.model.state_dict()}, dst)
    cached = load_backbone("cnn14")
    assert cached.pretrained and "cnn14-16k" in cached.weights_description
    assert cached.weights_fingerprint() == cnn14.weights_fingerprint()
    by_path = load_backbone("cnn14", weights=dst)
    assert by_path.weights_description == str(dst)
    assert by_path.weights_fingerprint() == cnn14.weights_fingerprint()


# ----------------------------------------------------------------------------- errors


def test_load_backbone_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("resnet")
    for name, entry in (("cnn14", "cnn14-16k"), ("ast", "ast-audioset")):
        with pytest.raises(WeightsUnavailableError, match=f"audiorep weights download {entry}"):
            load_backbone(name)
    with pytest.raises(ValueError, match="not cnn14 weights"):
        load_backbone("cnn14", weights="ast-audioset")
    with pytest.raises(FileNotFoundError):
        load_backbone("ast", weights=str(tmp_path / "missing.pth"))


def test_ast_random_full_config():
    bundle = load_backbone("ast", weights="random", seed=3)
    assert bundle.embedding_size == 768 and bundle.model.input_tdim == 1024
    assert bundle.window_frames == bundle.hop_frames == 1024
    s = bundle.settings()
    assert set(s) == SETTINGS_KEYS and s["model"] == "ast" and not s["pretrained"]
    assert s["windowing"]["window_seconds"] == 10.24
    # the model's seeded_random_state_dict scales (0.02 N(0, 1) for the position embedding)
    assert abs(bundle.model.pos_embed.std().item() - 0.02) < 1e-3


# ----------------------------------------------------------------------------- AST windows


def n_frames(samples: int) -> int:
    return 1 + (samples - 400) // 160


def test_ast_window_count_policy():
    b = tiny_ast_bundle()
    assert [b.num_windows(t) for t in (1, 1000, 1024, 1025, 2048, 2049)] == [1, 1, 1, 2, 2, 3]
    for samples, windows in ((100, 1), (16000, 1), (164080, 1), (164240, 2), (400000, 3)):
        assert n_frames(max(samples, 400)) <= 1024 * windows
        assert b.windows(wave(0, samples=samples), 16000).shape == (windows, 1024, 128)
    np.testing.assert_allclose(b.window_starts(2049), [0.0, 10.24, 20.48])
    overlap = tiny_ast_bundle(hop_frames=512)
    assert overlap.num_windows(2048) == 3 and overlap.settings()["windowing"]["hop_seconds"] == 5.12


def test_ast_short_clip_is_ast_input():
    """A clip up to 10.24 s gives one window equal to ASTFrontend's padded input."""
    b = tiny_ast_bundle()
    x = wave(3.0)
    wins = b.windows(x, 16000)
    ref = b.frontend(x[None])  # mean removal, fbank, pad to 1024, normalise
    assert_reordering_close(wins, ref, FBANK, scale=FBANK_SCALE)
    pad_value = (0 - AST_MEAN) / (2 * AST_STD)
    assert torch.allclose(wins[0, n_frames(48000) :], torch.tensor(pad_value))
    with torch.no_grad():
        direct = b.model(ref)
    torch.testing.assert_close(b.embed(x, 16000), direct)
    torch.testing.assert_close(b.embed_clip(x, 16000), direct[0])


def test_ast_long_clip_windows_and_pooling():
    b = tiny_ast_bundle(batch_size=2)
    x = wave(25.0, seed=1)  # 2499 frames -> 3 windows
    wins = b.windows(x, 16000)
    assert wins.shape == (3, 1024, 128)
    # The windows tile one fbank of the whole (mean-removed) clip.
    b.frontend.target_length = None
    whole = b.frontend(x[None])[0]
    b.frontend.target_length = 1024
    t = whole.shape[0]
    assert_reordering_close(wins[1], whole[1024:2048], FBANK, scale=FBANK_SCALE)
    assert_reordering_close(wins[2, : t - 2048], whole[2048:], FBANK, scale=FBANK_SCALE)
    emb = b.embed(x, 16000)
    assert emb.shape == (3, b.embedding_size)
    with torch.no_grad():
        torch.testing.assert_close(emb, b.model(wins))
        fus = GeneralPurposeAST(b.model, [0, 1])(wins)
    torch.testing.assert_close(b.embed_clip(x, 16000), emb.mean(0))
    out = b.fusion(x, 16000, layers=[0, 1])
    assert out.shape == (2 * b.embedding_size,)
    torch.testing.assert_close(out, fus.mean(0))
    # the last block of AST-Fusion is the embedding itself
    torch.testing.assert_close(out[b.embedding_size :], emb.mean(0))
    assert math.isclose(b.window_starts(t)[-1], 20.48)
