"""LPAPS (SpecVQGAN's perceptual loss) on the VGGish-ish taps: parity, strict loading, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from audiorep.convert.specvqgan import (
    CODEBOOK_LPAPS_PREFIX,
    StateDictMismatchError,
    sub_state_dict,
)
from audiorep.frontends.specvqgan import JUDGE_STATS_FILE
from audiorep.losses import LPAPS
from audiorep.losses.lpaps import (
    lpaps_from_state_dict,
    scaling_buffers,
    seeded_random_state_dict,
    state_dict_shapes,
)
from audiorep.models.vggishish import LPAPS_TAPS
from conftest import FIXTURES
from numerics import EPS32

DATA = FIXTURES / "specvqgan_vggishish"

# Values and per-layer terms: atol 1e-6 (the fixture README's suggestion). Each term is a mean of
# lin_k(d^2) with d the difference of unit-normalised features (|n(f)| <= 1): the features carry
# a relative float32 rounding of about eps * sqrt(sum K) (relu5_3: sum K = 38,000, so 2.3e-5),
# which moves a term of size 0.025 by about 2.3e-5 * 0.025 = 6e-7 < 1e-6. Measured in the
# reference, float32 vs float64: values 1.3e-9, terms 8e-10.
ATOL = 1e-6
DEEPEST_SUM_K = sum(9 * c for c in (1, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512))


@pytest.fixture(scope="module")
def lpaps() -> LPAPS:
    """LPAPS with the fixtures' recipe weights (round 2, seed 20261134), eval mode."""
    return lpaps_from_state_dict(seeded_random_state_dict())


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(DATA / "losses_lpaps.npz") as d:
        return {k: d[k] for k in d.files}


def pair(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if name == "pairA":
        x, y = np.load(DATA / "codebook_main_input.npy"), np.load(DATA / "codebook_main_recon.npy")
    else:
        x, y = (
            np.load(DATA / "losses_lpaps_pairB_x.npy"),
            np.load(DATA / "losses_lpaps_pairB_y.npy"),
        )
    return torch.from_numpy(x), torch.from_numpy(y)


def test_tolerance_covers_float32_rounding(golden):
    term = float(np.abs(golden["pairA_layers"]).max())
    assert EPS32 * math.sqrt(DEEPEST_SUM_K) * term < ATOL


@pytest.fixture(scope="module")
def results(lpaps) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{pair: (value (1, 1, 1, 1), terms (1, 5))}`` for the two fixture pairs."""
    with torch.inference_mode():
        return {n: (lpaps(*pair(n)), lpaps.layer_terms(*pair(n))) for n in ("pairA", "pairB")}


@pytest.mark.parametrize("name", ["pairA", "pairB"])
def test_value_and_layer_terms_match_reference(results, golden, name):
    value, terms = results[name]
    assert value.shape == (1, 1, 1, 1) and terms.shape == (1, 5)
    np.testing.assert_allclose(value.reshape(1).numpy(), golden[f"{name}_value"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(terms.numpy(), golden[f"{name}_layers"], rtol=0, atol=ATOL)
    # the value is the left-to-right float32 sum of the terms
    np.testing.assert_allclose(float(value), float(terms.sum()), rtol=0, atol=1e-8)


def test_three_dimensional_inputs(lpaps):
    x, y = (t[..., :96] for t in pair("pairB"))
    with torch.inference_mode():
        torch.testing.assert_close(lpaps(x[:, 0], y[:, 0]), lpaps(x, y), rtol=0, atol=0)
    with pytest.raises(ValueError, match="differ"):
        lpaps(x, y[..., :64])
    with pytest.raises(ValueError, match=r"\(B, 1, 80, T\)"):
        lpaps(x[:, :, :40], y[:, :, :40])


def test_backbone_taps_match_reference_means(lpaps, golden):
    x, _ = pair("pairB")
    with torch.inference_mode():
        taps = lpaps.net.forward_taps(lpaps.scaling_layer(x), LPAPS_TAPS)
    for k, tap in enumerate(LPAPS_TAPS, start=1):
        ref = golden[f"pairB_x_slice{k}_chmean"]
        np.testing.assert_allclose(taps[tap].mean((2, 3)).numpy(), ref, rtol=0, atol=1e-5)


def test_identical_inputs_give_exactly_zero(lpaps, golden):
    x, _ = pair("pairA")  # the fixture's pairC
    with torch.inference_mode():
        assert float(lpaps(x, x.clone())) == 0.0
        assert not lpaps.layer_terms(x[..., :128], x[..., :128].clone()).any()
    assert float(golden["pairC_identical_value"][0]) == 0.0


def test_batch_of_pairs(lpaps):
    xa, ya = (t[..., :128] for t in pair("pairA"))
    with torch.inference_mode():
        both = lpaps(torch.cat([xa, ya]), torch.cat([ya, ya])).reshape(2)
        one = lpaps(xa, ya).reshape(())
    np.testing.assert_allclose(float(both[0]), float(one), rtol=0, atol=ATOL)
    assert float(both[1]) == 0.0


def test_gradient_reaches_the_input_only(lpaps):
    x, y = (t[..., :128] for t in pair("pairB"))
    x = x.clone().requires_grad_(True)
    value = lpaps(x, y).sum()
    value.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in lpaps.parameters())


def test_dropout_flag(lpaps):
    x, y = pair("pairB")
    x, y = x[..., :64], y[..., :64]
    sd = lpaps.state_dict()
    quiet = lpaps_from_state_dict(sd)  # default: the heads never drop
    noisy = lpaps_from_state_dict(sd, dropout_in_train=True)
    with torch.inference_mode():
        ref = lpaps(x, y)
        quiet.train()
        torch.testing.assert_close(quiet(x, y), ref, rtol=0, atol=0)
        noisy.eval()
        torch.testing.assert_close(noisy(x, y), ref, rtol=0, atol=0)
        noisy.train()  # the authors' training: Dropout(0.5) active, the loss is stochastic
        torch.manual_seed(0)
        a = noisy(x, y)
        b = noisy(x, y)
    assert not torch.equal(a, b)


# ----------------------------------------------------------------------------- weights, loading


def test_state_dict_keys_are_the_authors():
    keys = [k for k, _ in state_dict_shapes()]
    assert len(keys) == 33
    assert keys[:3] == ["scaling_layer.shift", "scaling_layer.scale", "net.slice1.0.weight"]
    assert "net.slice5.28.bias" in keys and "net.slice2.5.weight" in keys
    assert keys[-5:] == [f"lin{k}.model.1.weight" for k in range(5)]
    assert dict(state_dict_shapes())["scaling_layer.shift"] == (1, 1, 80, 1)


def test_default_scaling_is_the_shipped_statistics():
    model = LPAPS()
    buffers = scaling_buffers()
    table = np.loadtxt(JUDGE_STATS_FILE, dtype=np.float32)
    np.testing.assert_array_equal(buffers["scaling_layer.shift"][0, 0, :, 0], 2 * table[:, 0] - 1)
    np.testing.assert_array_equal(model.scaling_layer.scale.numpy(), buffers["scaling_layer.scale"])
    assert all(not p.requires_grad for p in model.parameters())


def test_strict_loading_lists_missing_and_unexpected_keys(lpaps):
    sd = dict(lpaps.state_dict())
    model = LPAPS()
    del sd["lin3.model.1.weight"]
    sd["lin5.model.1.weight"] = torch.zeros(1, 512, 1, 1)
    for strict in (True, False):  # strict=False cannot make it skip keys
        with pytest.raises(StateDictMismatchError) as e:
            model.load_state_dict(sd, strict=strict)
        assert "lin3.model.1.weight" in str(e.value) and "lin5.model.1.weight" in str(e.value)
        assert e.value.missing == ["lin3.model.1.weight"]
        assert e.value.unexpected == ["lin5.model.1.weight"]


def test_wrong_shape_is_reported(lpaps):
    sd = dict(lpaps.state_dict())
    sd["lin0.model.1.weight"] = torch.zeros(1, 32, 1, 1)
    with pytest.raises(StateDictMismatchError, match=r"lin0.model.1.weight: \(1, 32, 1, 1\)"):
        LPAPS().load_state_dict(sd)


def test_whole_checkpoint_is_refused_with_the_issue_13_hint():
    """The authors' bug: the outer training dict passed to load_state_dict(strict=False)."""
    model = LPAPS()
    ckpt = {"model": {"features.0.weight": torch.zeros(64, 1, 3, 3)}, "optimizer": {}, "epoch": 3}
    with pytest.raises(StateDictMismatchError, match="Issue #13") as e:
        model.load_state_dict(ckpt, strict=False)
    assert "33 missing" in str(e.value) and "model" in e.value.unexpected


def test_nested_loading_is_strict_too(lpaps):
    """Inside a parent loaded with strict=False (as the authors' VQ loss), still strict."""

    class Parent(nn.Module):
        def __init__(self):
            super().__init__()
            self.perceptual_loss = LPAPS()
            self.other = nn.Linear(2, 2)

    parent = Parent()
    sd = {f"perceptual_loss.{k}": v for k, v in lpaps.state_dict().items()}
    parent.load_state_dict(sd, strict=False)  # complete: loads (other.* may be missing)
    torch.testing.assert_close(
        parent.perceptual_loss.lin2.model[1].weight, lpaps.lin2.model[1].weight
    )
    del sd["perceptual_loss.net.slice3.12.bias"]
    with pytest.raises(StateDictMismatchError, match=r"net\.slice3\.12\.bias"):
        parent.load_state_dict(sd, strict=False)


def test_codebook_prefix_hint_and_extraction(lpaps):
    codebook = {f"{CODEBOOK_LPAPS_PREFIX}{k}": v for k, v in lpaps.state_dict().items()}
    codebook["encoder.conv_in.weight"] = torch.zeros(128, 1, 3, 3)
    with pytest.raises(StateDictMismatchError, match="strip 'loss.perceptual_loss.'"):
        LPAPS().load_state_dict({k: v for k, v in codebook.items() if k.startswith("loss.")})
    model = lpaps_from_state_dict(sub_state_dict(codebook, CODEBOOK_LPAPS_PREFIX))
    torch.testing.assert_close(model.state_dict(), lpaps.state_dict(), rtol=0, atol=0)


def test_load_backbone_from_a_vggishish_state_dict(lpaps):
    """The authors' intended (and reverted) fix: their classifier's convs as the backbone."""
    vgg = {}
    for k, v in lpaps.net.state_dict().items():  # slice<k>.<i>.<leaf> -> features.<i>.<leaf>
        _, i, leaf = k.split(".")
        vgg[f"features.{i}.{leaf}"] = v
    vgg["classifier.4.bias"] = torch.zeros(309)  # ignored
    model = LPAPS().load_backbone(vgg)
    torch.testing.assert_close(model.net.state_dict(), lpaps.net.state_dict(), rtol=0, atol=0)
    del vgg["features.28.weight"]
    with pytest.raises(StateDictMismatchError, match=r"slice5\.28\.weight"):
        LPAPS().load_backbone(vgg)
