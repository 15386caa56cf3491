"""CNN14-Fusion (GeneralPurposeCnn14) parity with the reference + patch and EVAR's wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiorep.features.fusion import (
    FusionLayer,
    GeneralPurposeCnn14,
    GeneralPurposeFeatures,
    pool_max_plus_mean,
)
from audiorep.frontends.panns import PannsLogmel
from conftest import FIXTURES
from test_cnn14 import read_waves, recipe_cnn14

FUSION = FIXTURES / "fusion"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(FUSION / "cnn14_keys.npz") as d:
        return {k: d[k] for k in d.files}


def _close(out: torch.Tensor, ref: np.ndarray, rtol: float = 1e-4, atol_rel: float = 1e-5) -> None:
    out_np = out.detach().numpy()
    assert out_np.shape == ref.shape
    np.testing.assert_allclose(out_np, ref, rtol=rtol, atol=atol_rel * np.abs(ref).max())


def test_from_stored_logmel(golden):
    """GeneralPurposeCnn14()(logmel, layers) and encode_frames for [3, 6], [1..6], [6]."""
    model = recipe_cnn14()
    x = torch.from_numpy(golden["cnn14_logmel_16000"])  # T = 101 -> 3 frames
    with torch.no_grad():
        taps = model.forward_taps(x, [f"conv_block{k}" for k in range(1, 7)])  # one pass
    paper = GeneralPurposeCnn14(model)  # default [3, 6]
    every = GeneralPurposeCnn14(model, [1, 2, 3, 4, 5, 6])
    last = GeneralPurposeCnn14(model, [6])
    assert (paper.dim, every.dim, last.dim) == (6144, 14336, 4096)
    frames = paper.frames_from_taps(taps)
    assert frames.shape == (4, 6144, 3)
    _close(pool_max_plus_mean(frames), golden["gpcnn14_paper_3_6_16000_sample"])
    _close(frames[:, ::8], golden["gpcnn14_paper_3_6_16000_frames_every_8th_feature"])
    all_frames = every.frames_from_taps(taps)
    _close(
        pool_max_plus_mean(all_frames)[:, ::4],
        golden["gpcnn14_all_blocks_16000_sample_every_4th_feature"],
    )
    _close(all_frames[:, ::16], golden["gpcnn14_all_blocks_16000_frames_every_16th_feature"])
    _close(
        pool_max_plus_mean(last.frames_from_taps(taps))[:, ::4],
        golden["gpcnn14_block6_16000_sample_every_4th_feature"],
    )
    # The module's own forward gives the same as fusing precomputed taps.
    with torch.no_grad():
        torch.testing.assert_close(paper(x), pool_max_plus_mean(frames))


def test_evar_end_to_end_from_waveform(golden):
    """EVAR AR_Cnn14_Fusion on 2.5 s clips: torchlibrosa frontend + GP-CNN14 [3, 6]."""
    model = recipe_cnn14()
    waves = read_waves(FUSION / "wave_40000.wav")
    logmel = PannsLogmel()(waves)
    assert logmel.shape == (4, 1, 251, 64)
    with torch.no_grad():
        taps = model.forward_taps(logmel, ["conv_block3", "conv_block6"])
    paper = GeneralPurposeCnn14(model, [3, 6])
    frames = paper.frames_from_taps(taps)
    assert frames.shape == (4, 6144, 251 // 32)
    _close(pool_max_plus_mean(frames), golden["evar_cnn14_fusion_sample_40000"], 1e-3, 1e-4)
    _close(frames[:, ::8], golden["evar_cnn14_fusion_frames_40000_every_8th_feature"], 1e-3, 1e-4)
    block6 = GeneralPurposeCnn14(model, ["conv_block6"]).frames_from_taps(taps)
    _close(block6[:, ::16], golden["gpcnn14_block6_40000_frames_every_16th_feature"], 1e-3, 1e-4)


def test_layer_selection_rules():
    model = recipe_cnn14()
    a = GeneralPurposeCnn14(model, [6, 3, 3])
    b = GeneralPurposeCnn14(model, ["conv_block3", "6"])
    assert (
        [la.tap for la in a.layers] == [la.tap for la in b.layers] == ["conv_block3", "conv_block6"]
    )
    assert a.taps == ["conv_block3", "conv_block6"] and a.dim == 6144
    for bad in (0, 7, "fc2"):
        with pytest.raises(ValueError, match="CNN14 fusion layer"):
            GeneralPurposeCnn14(model, [bad])
    with pytest.raises(ValueError, match="at least one"):
        GeneralPurposeCnn14(model, [])
    x = torch.randn(1, 1, 64, 64) * 10 - 50
    with torch.no_grad():
        # pre-pooling taps and vectors: every map reaches T // 32 frames, vectors repeat
        mixed = GeneralPurposeCnn14(model, ["bn0", "conv_block2_prepool", "fc1"])
        frames = mixed.encode_frames(x)
        assert frames.shape == (1, 64 + 4096 + 2048, 2)
        taps = model.forward_taps(x, ["bn0", "fc1"])
        torch.testing.assert_close(frames[:, -2048:, 1], taps["fc1"])
        bn0 = taps["bn0"].amax(dim=2)  # T = 64: two 32-frame maxima, whose max is the overall one
        torch.testing.assert_close(frames[:, :64, :].amax(-1), bn0[:, 0])
        # vectors only: clip-level features, returned as they are (no max + mean doubling)
        fc1_only = GeneralPurposeCnn14(model, ["fc1"])
        assert fc1_only.clip_level
        torch.testing.assert_close(fc1_only(x), taps["fc1"])
        with pytest.raises(ValueError, match="at least 32"):
            GeneralPurposeCnn14(model)(x[:, :, :31])


def test_generic_mechanism_on_any_tapped_model():
    """GeneralPurposeFeatures needs only tap names and pooling strides."""
    model = recipe_cnn14()
    layers = [FusionLayer("conv_block4", 2048, stride=2), FusionLayer("conv_block4", 2048, 2)]
    fusion = GeneralPurposeFeatures(model, layers)
    assert len(fusion.layers) == 1  # duplicates collapse
    with pytest.raises(ValueError, match="unknown tap"):
        GeneralPurposeFeatures(model, [FusionLayer("conv7", 1)])
    x = torch.randn(2, 1, 96, 64)
    with torch.no_grad():
        out = fusion(x)
        ref = GeneralPurposeCnn14(model, [4])(x)
    torch.testing.assert_close(out, ref)
