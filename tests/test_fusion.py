"""GP-VGGish (VGGish-Fusion) parity with the reference port + patch and EVAR's wrappers."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.features.fusion import GeneralPurposeVGGish, parse_layers
from audiorep.frontends.vggish import waveform_to_examples
from conftest import FIXTURES

FUSION = FIXTURES / "fusion"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(FUSION / "fusion_vggish.npz") as d:
        return {k: d[k] for k in d.files}


def _close(out: torch.Tensor, ref: np.ndarray) -> None:
    out = out.detach().numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


LAYER_SETS = {
    "gpvggish_default": (9, 14),
    "gpvggish_paper_9_14": (9, 14),
    "gpvggish_all_relu": (1, 4, 7, 9, 12, 14, 17, 19, 21),
    "gpvggish_tutorial_4_7_9_14": (4, 7, 9, 14),
    "gpvggish_fc_17_21": (17, 21),
}


@pytest.mark.parametrize("key", list(LAYER_SETS))
def test_layer_sets_sample_and_frames(key, golden, recipe_model):
    fusion = GeneralPurposeVGGish(recipe_model, LAYER_SETS[key])
    x = torch.from_numpy(golden["vggish_logmel"])
    with torch.no_grad():
        _close(fusion(x), golden[f"{key}_sample"])
        assert fusion.dim == golden[f"{key}_sample"].shape[1]
        if f"{key}_frames" in golden:
            _close(fusion.encode_frames(x), golden[f"{key}_frames"])


def test_reference_port_embedding_is_relu_of_ours(golden, recipe_model):
    with torch.no_grad():
        _close(torch.relu(recipe_model(torch.from_numpy(golden["vggish_logmel"]))),
               golden["vggish_embedding128"])  # fmt: skip


def test_order_duplicates_and_tap_names(golden, recipe_model):
    x = torch.from_numpy(golden["vggish_logmel"][:2])
    a = GeneralPurposeVGGish(recipe_model, [14, 9, 9])
    b = GeneralPurposeVGGish(recipe_model, ["conv3_2", "conv4_2"])
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))
        _close(a(x), golden["gpvggish_paper_9_14_sample"][:2])
    assert parse_layers("9, 14") == [9, 14]
    with pytest.raises(ValueError, match="not a ReLU"):
        GeneralPurposeVGGish(recipe_model, [16])
    with pytest.raises(ValueError, match="at least one"):
        GeneralPurposeVGGish(recipe_model, [])


def _wave_40000() -> np.ndarray:
    data, sr = sf.read(FUSION / "wave_40000.wav", dtype="int16")
    assert sr == 16000
    return data.T.astype(np.float32) / np.float32(32768.0)


def test_evar_wrapper_end_to_end(golden, recipe_model):
    """EVAR's AR_VGGish_Fusion on 2.5 s clips: frontend, interleaved frames, max + mean."""
    waves = _wave_40000()
    examples = torch.stack([waveform_to_examples(w, 16000) for w in waves]).float()
    np.testing.assert_allclose(examples.numpy(), golden["evar_vggish_features"], atol=1e-5)
    fusion = GeneralPurposeVGGish(recipe_model, [9, 14])
    with torch.no_grad():
        _close(fusion.encode_clip_frames(examples, order="evar"),
               golden["evar_vggish_fusion_frames"])  # fmt: skip
        _close(fusion.forward_clip(examples), golden["evar_vggish_fusion_sample"])
        chrono = fusion.encode_clip_frames(examples)
        per_example = fusion.encode_frames(examples[:, 1])
        torch.testing.assert_close(chrono[:, :, 6:], per_example)
        emb = torch.relu(recipe_model(examples.reshape(-1, 96, 64))).reshape(4, 2, 128)
        _close(emb.max(1).values + emb.mean(1), golden["evar_vggish_plain_sample"])
