"""DBoF's fused max pool (``DbofConfig.fused_max_pool``) against the plain layer-by-layer path.

The fused path never forms the ``(B, R, cluster_size)`` activations: the cluster batch-norm
statistics come from the input covariance, and the max over frames is taken on the
pre-activations (the min where a batch-norm scale is negative). It must be the same function
with the same gradients and running statistics, up to float32 rounding.

Tolerances: float32 (eps ~1.2e-7) products over D = 16 inputs and batch-norm sums over
B x R <= 120 rows, then the hidden layer and classifier: a few hundred roundings of values
of order 1, so differences ~1e-5 relative; gradients add the backward sums (rtol 1e-4, and
atol 1e-6 for entries that are mathematically zero, like the input batch norm's bias, whose
every shift the cluster batch norm removes). The plain path can also pick a different one
of two frames whose sigmoid outputs round to the same float32 value; the inputs here keep
activations away from saturation so that does not happen.
"""

from __future__ import annotations

import pytest
import torch

import audiorep.heads.frame_level as frame_level
from audiorep.heads import DbofModel, build_head
from audiorep.heads.training import cross_entropy_loss

D = 16
SMALL = {"cluster_size": 40, "hidden_size": 12, "num_classes": 9, "feature_size": D}


def frames_batch(b: int = 8, t: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames in [-2, 2], rows with 10, 4, 1 and 0 valid frames (the rest zero-padded)."""
    g = torch.Generator().manual_seed(seed)
    frames = 4 * torch.rand(b, t, D, generator=g) - 2
    n = torch.full((b,), t, dtype=torch.int64)
    n[1], n[2], n[3] = 4, 1, 0
    frames *= (torch.arange(t)[None, :] < n[:, None])[..., None]
    return frames, n


def labels_for(b: int, c: int = 9) -> torch.Tensor:
    return (torch.rand(b, c, generator=torch.Generator().manual_seed(5)) < 0.3).float()


def model_pair(**kw) -> tuple[DbofModel, DbofModel]:
    """The same weights twice, fused and plain; cluster batch-norm scales of both signs."""
    models = []
    for fused in (True, False):
        torch.manual_seed(0)
        m = build_head("dbof", **{**SMALL, **kw, "fused_max_pool": fused})
        if m.config.add_batch_norm:
            with torch.no_grad():
                m.cluster_bn.weight.uniform_(-1.5, 1.5)  # negative scales reverse the order
                m.cluster_bn.bias.uniform_(-0.5, 0.5)
        models.append(m)
    return models[0], models[1]


def run(model: DbofModel, frames, n, train: bool) -> tuple[torch.Tensor, dict, dict]:
    model.train(train)
    torch.manual_seed(7)  # the same frame sample for both models
    out = model(frames, n)["predictions"]
    grads = {}
    if train:
        cross_entropy_loss(out, labels_for(frames.shape[0])).backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return out.detach(), grads, state


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"fold_samples": False},
        {"activation": "relu6", "sample_random_frames": False},
        {"add_batch_norm": False},
        {"classifier": "logistic", "iterations": 7},  # T = 10 > 7: the literal rows
    ],
)
@pytest.mark.parametrize("train", [True, False])
def test_fused_max_pool_equals_plain_path(kw, train):
    frames, n = frames_batch()
    fused, plain = model_pair(**kw)
    if not train:  # non-trivial moving statistics for eval mode
        for m in (fused, plain):
            run(m, frames, n, True)
    o1, g1, s1 = run(fused, frames, n, train)
    o2, g2, s2 = run(plain, frames, n, train)
    torch.testing.assert_close(o1, o2, rtol=1e-5, atol=1e-6)
    for k in g2:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-4, atol=1e-6, msg=k)
    for k in s2:  # running mean / unbiased variance over the B * iterations sampled rows
        torch.testing.assert_close(s1[k].float(), s2[k].float(), rtol=1e-5, atol=1e-6, msg=k)


def test_fused_eval_all_frames_equals_plain_path():
    frames, n = frames_batch()
    fused, plain = model_pair(eval_sampling="all")
    for m in (fused, plain):
        run(m, frames, n, True)
    torch.testing.assert_close(
        run(fused, frames, n, False)[0], run(plain, frames, n, False)[0], rtol=1e-5, atol=1e-6
    )


def _direct_max(x, w, unused):
    a = x @ w
    if unused is not None:
        a = a.masked_fill(unused[..., None], -torch.inf)
    return a.max(dim=1)


@pytest.mark.parametrize("chunk_values", [1 << 22, 7 * 3 * 5])  # one chunk; 7 + remainder
def test_max_of_projection_matches_direct_and_gradcheck(monkeypatch, chunk_values):
    monkeypatch.setattr(frame_level, "_CHUNK_VALUES", chunk_values)  # chunks of 7 rows of b
    g = torch.Generator().manual_seed(0)
    b, r, d, s = 16, 3, 4, 5
    x = torch.randn(b, r, d, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(d, s, generator=g, dtype=torch.float64, requires_grad=True)
    unused = torch.zeros(b, r, dtype=torch.bool)
    unused[0, 0] = unused[1, 1:] = unused[5, :2] = True  # never all rows of one b
    for mask in (None, unused):
        values = frame_level._MaxOfProjection.apply(x, w, mask)
        ref = _direct_max(x, w, mask)
        torch.testing.assert_close(values, ref.values, rtol=0, atol=0)  # the same products
        gout = torch.randn(b, s, generator=g, dtype=torch.float64)
        gx, gw = torch.autograd.grad(values, (x, w), gout)
        rx, rw = torch.autograd.grad(ref.values, (x, w), gout)
        # float64 sums of <= 16 products: differences at the 1e-15 level
        torch.testing.assert_close(gx, rx, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gw, rw, rtol=1e-12, atol=1e-12)


def test_max_of_projection_gradcheck(monkeypatch):
    monkeypatch.setattr(frame_level, "_CHUNK_VALUES", 2 * 3 * 2)  # chunks of 2 rows of b
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)
    unused = torch.zeros(5, 3, dtype=torch.bool)
    unused[0, 0] = unused[3, 1:] = True
    assert torch.autograd.gradcheck(
        lambda x_, w_: frame_level._MaxOfProjection.apply(x_, w_, unused), (x, w)
    )


def test_max_of_projection_first_index_on_ties():
    x = torch.tensor([[[1.0], [3.0], [3.0], [2.0]]], requires_grad=True)  # rows 1, 2 tie
    w = torch.ones(1, 1)
    values = frame_level._MaxOfProjection.apply(x, w, None)
    assert values.item() == 3.0
    (gx,) = torch.autograd.grad(values.sum(), x)
    assert gx.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]  # as Tensor.max(dim): the first


def test_projected_stats_match_direct_weighted_moments():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, D, generator=g, dtype=torch.float64) + 3.0  # off-centre input
    proj = torch.randn(D, 7, generator=g, dtype=torch.float64)
    wts = torch.rand(6, 5, generator=g, dtype=torch.float64)
    wts /= wts.sum()
    a = (x @ proj).reshape(-1, 7)
    for w, wf in ((wts, wts.reshape(-1)), (None, torch.full((30,), 1 / 30, dtype=x.dtype))):
        mean, var = DbofModel._projected_stats(x, w, proj)
        ref_mean = wf @ a
        # float64 sums over 30 rows and 16 features: ~1e-14 relative
        torch.testing.assert_close(mean, ref_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(var, wf @ (a - ref_mean).square(), rtol=1e-12, atol=1e-12)
