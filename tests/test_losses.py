"""Deep feature loss: parity with vggishdfl (all four configurations) and gradient checks."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.losses import VGGishDFL
from audiorep.models.vggish import VGGish, seeded_random_state_dict
from conftest import FIXTURES
from numerics import EPS64, VGGISH_EMBEDDING, reordering_atol

DFL = FIXTURES / "dfl"
CONFIGS = ["hook1_post1", "hook1_post0", "hook0_post1", "hook0_post0"]


def _batch(side: str, n: int) -> torch.Tensor:
    data, sr = sf.read(DFL / f"{side}_{n}.wav", dtype="int16")
    assert sr == 16000
    return torch.from_numpy(data.T.astype(np.float32) / np.float32(32768.0))


def _golden(n: int) -> dict[str, np.ndarray]:
    with np.load(DFL / f"dfl_{n}.npz") as d:
        return {k: d[k] for k in d.files}


def _compat(recipe_model, postprocessor, cfg: str) -> VGGishDFL:
    hook, post = cfg[4] == "1", cfg[-1] == "1"
    return VGGishDFL.vggishdfl_compatible(
        recipe_model, postprocessor if post else None, hook_relus=hook
    )


@pytest.mark.parametrize("n", [16000, 48000])
@pytest.mark.parametrize("cfg", CONFIGS)
def test_vggishdfl_compatible_values(n, cfg, recipe_model, fixture_postprocessor):
    golden = _golden(n)
    est, tgt = _batch("est", n), _batch("tgt", n)
    dfl = _compat(recipe_model, fixture_postprocessor, cfg)
    with torch.no_grad():
        loss = dfl(est, tgt)
        per_sample = dfl(est, tgt, reduce=False)
        assert dfl(tgt, tgt).item() == 0.0
        np.testing.assert_allclose(loss.item(), golden[f"{cfg}__loss"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(per_sample.numpy(), golden[f"{cfg}__loss_per_sample"],
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
        if cfg.startswith("hook1"):
            np.testing.assert_allclose(dfl.layer_errors(est, tgt).numpy(),
                                       golden[f"{cfg}__layer_nmse"], atol=1e-5)  # fmt: skip


def test_vggishdfl_compatible_frontend_and_embeddings(recipe_model, fixture_postprocessor):
    golden = _golden(16000)
    dfl = _compat(recipe_model, fixture_postprocessor, "hook1_post1")
    for side in ("est", "tgt"):
        logmel, items = dfl.frontend(_batch(side, 16000))
        assert items.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        np.testing.assert_allclose(logmel.numpy(), golden[f"logmel_{side}"], atol=1e-3)
        with torch.no_grad():
            taps = dfl.backbone.forward_taps(torch.from_numpy(golden[f"logmel_{side}"]))
            raw = golden[f"emb_raw_{side}"]
            np.testing.assert_allclose(
                taps["embedding"].numpy(), raw, atol=1e-4 * np.abs(raw).max()
            )
            quantized = dfl.extra_terms[0](taps).numpy()
        exact = (quantized == golden[f"emb_post_{side}"]).mean()
        assert exact >= 0.99 and np.abs(quantized - golden[f"emb_post_{side}"]).max() <= 1


@pytest.mark.parametrize("cfg", CONFIGS)
def test_vggishdfl_compatible_gradients(cfg, recipe_model, fixture_postprocessor):
    golden = _golden(16000)
    est = _batch("est", 16000).requires_grad_(True)
    tgt = _batch("tgt", 16000).requires_grad_(True)
    _compat(recipe_model, fixture_postprocessor, cfg)(est, tgt).backward()
    for name, grad in (("est", est.grad), ("tgt", tgt.grad)):
        ref = golden[f"{cfg}__grad_{name}"]
        g = grad.numpy()
        if cfg == "hook0_post1":  # the rounding quantiser: zero gradient, as the original
            assert not g.any() and not ref.any()
            continue
        for row in (0, 1, 4, 5):
            rel = np.linalg.norm(g[row] - ref[row]) / np.linalg.norm(ref[row])
            assert rel <= 3e-2, (name, row, rel)
        cosine = g[2] @ ref[2] / (np.linalg.norm(g[2]) * np.linalg.norm(ref[2]))
        assert cosine >= 0.95  # two pure tones: ill-conditioned (fixture README)
    assert not est.grad[3].any()  # identical pair


@pytest.fixture(scope="module")
def float64_dfl() -> VGGishDFL:
    model = VGGish()
    model.load_state_dict(seeded_random_state_dict(3))
    return VGGishDFL(model.double().eval(), frontend_dtype=torch.float64)


def test_default_flavour_gradient_matches_finite_differences(float64_dfl):
    g = torch.Generator().manual_seed(0)
    tgt = torch.randn(2, 16000, dtype=torch.float64, generator=g) * 0.1
    est = tgt + 0.05 * torch.randn(2, 16000, dtype=torch.float64, generator=g)
    est.requires_grad_(True)
    loss = float64_dfl(est, tgt)
    loss.backward()
    eps = 1e-8  # small enough not to cross ReLU/max-pool kinks (truncation error ~ eps**2)
    # Central differences of a loss L evaluated in float64 with rounding error delta each side
    # err by up to |delta| / eps. delta is bounded like every other chained reduction here:
    # VGGish's layers, then the loss's sum over the largest feature map (64 x 96 x 64 values).
    delta = reordering_atol(abs(loss.item()), (*VGGISH_EMBEDDING, 64 * 96 * 64), eps=EPS64)
    for _ in range(3):
        v = torch.randn(2, 16000, dtype=torch.float64, generator=g)
        with torch.no_grad():
            fd = (float64_dfl(est + eps * v, tgt) - float64_dfl(est - eps * v, tgt)) / (2 * eps)
        analytic = (est.grad * v).sum()
        assert abs(fd - analytic) <= delta / eps
        assert delta / eps < 1e-2 * abs(analytic)  # still sharp: a wrong path is off by O(1)


def test_default_flavour_behaviour(float64_dfl):
    g = torch.Generator().manual_seed(1)
    tgt = torch.randn(3, 20000, dtype=torch.float64, generator=g) * 0.1
    est = tgt + 0.1 * torch.randn(3, 20000, dtype=torch.float64, generator=g)
    tgt.requires_grad_(True)
    est.requires_grad_(True)
    loss = float64_dfl(est, tgt)
    assert float64_dfl.taps[-1] == "embedding" and len(float64_dfl.taps) == 9
    loss.backward()
    assert tgt.grad is None  # target branch without gradient by default
    assert est.grad[:, 15600:].abs().sum() > 0  # padded to whole examples: the tail counts
    per_item = float64_dfl(est, tgt, reduce=False)
    assert per_item.shape == (3,) and (per_item > 0).all()
    assert float64_dfl(tgt, tgt).item() == 0.0
    assert all(not p.requires_grad for p in float64_dfl.parameters())
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        float64_dfl(est[0], tgt[0])


def test_layer_weights_and_output_only():
    model = VGGish()
    model.load_state_dict(seeded_random_state_dict(4))
    g = torch.Generator().manual_seed(2)
    tgt = torch.randn(2, 16000, generator=g) * 0.1
    est = tgt + 0.05 * torch.randn(2, 16000, generator=g)
    full = VGGishDFL(model)
    errs = full.layer_errors(est, tgt)
    only_conv1 = VGGishDFL(model, layer_weights=[1.0] + [0.0] * 8)
    torch.testing.assert_close(only_conv1(est, tgt), errs[0].double().float(), rtol=1e-5, atol=0)
    output_only = VGGishDFL(model, hook_relus=False)
    torch.testing.assert_close(output_only(est, tgt), errs[-1], rtol=1e-5, atol=0)
    with pytest.raises(ValueError, match="layer weights"):
        VGGishDFL(model, layer_weights=[1.0, 2.0])
