"""Attention / MLP / ensemble heads, and the stable logits of the probability-mixture heads."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from audiorep.heads import (
    HEADS,
    EnsembleConfig,
    EnsembleModel,
    MoeClassifier,
    build_head,
    head_class,
    head_config,
)
from audiorep.heads.attention import attention_pool_probabilities, pack_frames, unpack_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


NEW = ["decision_attention", "feature_attention", "multilevel_attention", "mlp"]
SMALL = {
    "decision_attention": {"hidden_size": 16, "num_layers": 2},
    "feature_attention": {"hidden_size": 16, "num_layers": 2, "pooled_size": 12},
    "multilevel_attention": {"hidden_size": 16, "num_layers": 3, "num_levels": 2},
    "mlp": {"hidden_size": 16},
}

# float32 round-off: eps 1.2e-7; sigmoid(logits) vs the directly summed probability differ by
# a few roundings of O(1) quantities (softmax, sigmoid, a <= 10-term sum, logsumexp), so
# ~10-100 eps: rtol 1e-5 relative to p, atol 1e-6 absolute.
PROB_TOL = {"rtol": 1e-5, "atol": 1e-6}


def batch(b: int = 6, t: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Dequantised-like frames in [-2, 2], zero-padded after num_frames; row 0 has all t
    frames, row 1 none, the last row one."""
    g = torch.Generator().manual_seed(seed)
    frames = 4 * torch.rand(b, t, 128, generator=g) - 2
    n = torch.randint(1, t + 1, (b,), generator=g)
    n[0], n[1], n[-1] = t, 0, 1
    frames = frames * (torch.arange(t)[None, :, None] < n[:, None, None])
    return frames, n


def labels_for(b: int, c: int = 527) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    y = (torch.rand(b, c, generator=g) < 0.02).float()
    y[:, 0] = 1.0
    return y


def small(name: str, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_head(name, **{**SMALL[name], **kw})


# ------------------------------------------------------------------------------------------
# MoE logits


def _moe_reference(moe: MoeClassifier, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 p and 1 - p summed directly (no logs): ``1 - p`` as the sum of the gates times
    the experts' ``1 - sigmoid`` plus the dummy gate, which keeps tiny values exact."""
    b, c, m = x.shape[0], moe.num_classes, moe.num_mixtures
    x64 = x.double()
    g = torch.softmax((x64 @ moe.gates.weight.double().T).view(b, c, m + 1), -1)
    z = (x64 @ moe.experts.weight.double().T + moe.experts.bias.double()).view(b, c, m)
    p = (g[..., :m] * torch.sigmoid(z)).sum(-1)
    q = (g[..., :m] * torch.sigmoid(-z)).sum(-1) + g[..., m]
    return p, q


def test_moe_predictions_unchanged_and_logits_consistent():
    torch.manual_seed(0)
    moe = MoeClassifier(7, 5, 3)
    x = 3 * torch.randn(16, 7)
    out = moe(x)
    # "predictions" is the original mixture; the softmax now runs over the middle axis of a
    # transposed layout, so the sums of 3 products in [0, 1] may round differently: 4 eps
    gates = torch.softmax(moe.gates(x).view(16, 5, 4), -1)
    experts = torch.sigmoid(moe.experts(x).view(16, 5, 3))
    torch.testing.assert_close(
        out["predictions"], (gates[..., :3] * experts).sum(-1), rtol=0, atol=4 * 1.2e-7
    )
    torch.testing.assert_close(torch.sigmoid(out["logits"]), out["predictions"], **PROB_TOL)
    p, q = _moe_reference(moe, x)
    torch.testing.assert_close(out["logits"].double(), p.log() - q.log(), rtol=1e-5, atol=1e-5)


def test_moe_logits_finite_where_probability_rounds_to_0_or_1():
    c, m = 3, 2
    moe = MoeClassifier(1, c, m)
    x = torch.ones(1, 1)
    with torch.no_grad():
        # gate logits per class (real experts..., dummy), expert logits per class
        moe.gates.weight.copy_(torch.tensor([[-80.0, -80.0, 80.0],  # real gates ~e^-160
                                             [80.0, 80.0, -80.0],  # dummy gate ~e^-160
                                             [0.0, 0.0, 0.0]]).reshape(-1, 1))  # fmt: skip
        moe.experts.weight.copy_(torch.tensor([[-80.0, -80.0], [80.0, 80.0], [80.0, -80.0]])
                                 .reshape(-1, 1))  # fmt: skip
        moe.experts.bias.zero_()
    x.requires_grad_(True)
    out = moe(x)
    p = out["predictions"][0]
    assert p[0] == 0.0 and p[1] == 1.0  # float32 rounds: the naive log p / log(1-p) is -inf
    assert torch.isinf(torch.log(p[0])) and torch.isinf(torch.log1p(-p[1]))
    logits = out["logits"]
    assert torch.isfinite(logits).all()
    ref_p, ref_q = _moe_reference(moe, x.detach())
    ref = ref_p.log() - ref_q.log()  # float64: e^-240 and e^-160 are representable
    assert ref[0, 0] < -200 and ref[0, 1] > 70  # p ~ e^-240, 1 - p ~ e^-80
    # inputs of magnitude <= 240: each float32 op errs by <= 240 * 1.2e-7 ~ 3e-5 absolute,
    # a handful of them (log_softmax, add, logsumexp, subtract) -> 2e-4.
    torch.testing.assert_close(logits.double(), ref, rtol=0, atol=2e-4)
    loss = F.binary_cross_entropy_with_logits(logits, torch.tensor([[1.0, 0.0, 1.0]]))
    loss.backward()
    assert torch.isfinite(loss)
    for prm in (moe.gates.weight, moe.experts.weight, moe.experts.bias, x):
        assert torch.isfinite(prm.grad).all()
    assert moe.gates.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["moe", "dbof", "lstm"])
def test_mixture_heads_return_logits(name):
    kw = {"dbof": {"cluster_size": 24, "hidden_size": 12}, "lstm": {"lstm_cells": 8}}
    torch.manual_seed(0)
    model = build_head(name, **kw.get(name, {})).eval()
    out = model(*batch())
    torch.testing.assert_close(torch.sigmoid(out["logits"]), out["predictions"], **PROB_TOL)


# ------------------------------------------------------------------------------------------
# attention pooling arithmetic


def test_attention_pool_probabilities_by_hand_and_at_extremes():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 4, 5, generator=g)
    z = 4 * torch.randn(3, 4, 5, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    log_a = torch.log_softmax(s.masked_fill(~mask[..., None], -math.inf), 1)
    out = attention_pool_probabilities(log_a, z)
    for b in range(3):
        k = int(mask[b].sum())
        a = torch.softmax(s[b, :k], 0)
        torch.testing.assert_close(out["predictions"][b], (a * torch.sigmoid(z[b, :k])).sum(0))
    torch.testing.assert_close(torch.sigmoid(out["logits"]), out["predictions"], **PROB_TOL)
    # extremes: frame logits +-80 and attention scores +-80
    z = torch.tensor([[[-80.0, 80.0, 80.0]], [[-80.0, 80.0, -80.0]]]).transpose(1, 2)  # (2,3,1)
    s = torch.tensor([[[80.0, -80.0, -80.0]], [[0.0, 0.0, 0.0]]]).transpose(1, 2)
    s.requires_grad_(True)
    z.requires_grad_(True)
    out = attention_pool_probabilities(torch.log_softmax(s, 1), z)
    assert out["predictions"][0, 0] < 1e-30 and torch.isfinite(out["logits"]).all()
    z64, s64 = z.detach().double(), s.detach().double()
    a = torch.softmax(s64, 1)
    ref = (a * torch.sigmoid(z64)).sum(1).log() - (a * torch.sigmoid(-z64)).sum(1).log()
    # magnitudes <= 240: each float32 op errs by <= 3e-5 absolute, a few ops -> 2e-4
    torch.testing.assert_close(out["logits"].double(), ref, rtol=0, atol=2e-4)
    F.binary_cross_entropy_with_logits(out["logits"], torch.ones(2, 1)).backward()
    assert torch.isfinite(s.grad).all() and torch.isfinite(z.grad).all()


def test_pack_and_unpack():
    frames, n = batch(4, 5)
    frames[1, 0] = 9.0  # garbage in a 0-frame row's padding: replaced by a zero frame
    rows, mask = pack_frames(frames, n)
    assert rows.shape == (int(n.clamp(min=1).sum()), 128)
    assert mask.tolist()[1] == [True, False, False, False, False]
    back = unpack_rows(rows, mask)
    expected = frames * mask[..., None]
    expected[1] = 0.0
    assert torch.equal(back, expected)
    empty = pack_frames(torch.zeros(2, 0, 128), torch.zeros(2, dtype=torch.int64))[0]
    assert empty.shape == (2, 128) and not empty.any()


# ------------------------------------------------------------------------------------------
# the new heads


def test_registry_and_defaults():
    for name in [*NEW, "ensemble"]:
        assert name in HEADS and head_class(name).name == name
    for name in ("decision_attention", "feature_attention", "multilevel_attention"):
        cfg = head_config(name)
        assert (cfg.hidden_size, cfg.num_layers, cfg.dropout) == (1024, 3, 0.5)
        assert (cfg.batch_norm, cfg.input_norm, cfg.output_bias_init) == (
            True, "batch_norm", -5.0,
        )  # fmt: skip
    f = head_config("feature_attention")
    assert (f.pooled_size, f.attention, f.feature_activation, f.pooled_batch_norm) == (
        1024, "softmax", "linear", True,
    )  # fmt: skip
    ml = head_config("multilevel_attention")
    assert (ml.num_levels, ml.level_output) == (2, "logit")
    m = head_config("mlp")
    assert (m.hidden_size, m.num_layers, m.dropout, m.input_norm) == (1024, 2, 0.5, "batch_norm")
    with pytest.raises(ValueError, match="members is empty"):
        build_head("ensemble")


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("mlp", {"input_norm": "pca"}, "input_norm"),
        ("decision_attention", {"dropout": 1.0}, "dropout"),
        ("feature_attention", {"attention": "tanh"}, "attention"),
        ("feature_attention", {"feature_activation": "relu"}, "feature_activation"),
        ("multilevel_attention", {"num_levels": 4}, "num_levels"),
        ("multilevel_attention", {"level_output": "max"}, "level_output"),
        ("mlp", {"hidden": 3}, "unknown"),
    ],
)
def test_bad_configs_are_refused(name, bad, match):
    with pytest.raises(ValueError, match=match):
        build_head(name, **bad)


@pytest.mark.parametrize("name", NEW)
def test_shapes_ranges_and_logits(name):
    model = small(name)
    frames, n = batch()
    for train in (True, False):
        model.train(train)
        out = model(frames, n)
        p, z = out["predictions"], out["logits"]
        assert p.shape == z.shape == (6, 527) and p.dtype == z.dtype == torch.float32
        assert torch.isfinite(z).all() and (p >= 0).all() and (p <= 1).all()
        torch.testing.assert_close(torch.sigmoid(z), p, **PROB_TOL)
    assert float(model.regularization_loss()) == 0.0
    with pytest.raises(ValueError, match="frames must be"):
        model(frames[..., :64], n)
    with pytest.raises(ValueError, match="num_frames must be"):
        model(frames, n[:2])


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("train", [True, False])
def test_padded_frames_do_not_change_the_output(name, train):
    model = small(name).train(train)
    frames, n = batch()
    pad = torch.arange(10)[None, :, None] >= n[:, None, None]
    garbage = frames + 7.0 * pad * torch.randn(frames.shape, generator=torch.Generator())
    longer = torch.cat([garbage, 3.0 * torch.ones(6, 1, 128)], dim=1)  # one more padded step
    outs = []
    for x in (frames, garbage, longer):
        torch.manual_seed(5)  # the same dropout draws (the valid rows are the same)
        outs.append(model(x, n))
    for other in outs[1:]:
        for key in ("predictions", "logits"):
            # same packed rows, same arithmetic; extra -inf / zero terms are exact
            torch.testing.assert_close(other[key], outs[0][key], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NEW)
def test_zero_frame_rows_are_finite_and_see_one_zero_frame(name):
    model = small(name).train()
    frames, n = batch()
    frames[1, :] = 5.0  # padding of the 0-frame row is ignored
    y = labels_for(6)
    out = model(frames, n)
    loss = F.binary_cross_entropy_with_logits(out["logits"], y)
    loss.backward()
    assert torch.isfinite(out["logits"]).all() and torch.isfinite(loss)
    for pname, prm in model.named_parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), pname
        assert prm.grad.abs().sum() > 0, pname  # every parameter learns
    model.eval()
    with torch.no_grad():
        got = model(frames, n)["predictions"][1]
        one_zero = model(torch.zeros(1, 10, 128), torch.ones(1, dtype=torch.int64))
    torch.testing.assert_close(got, one_zero["predictions"][0])


@pytest.mark.parametrize("name", NEW)
def test_config_json_round_trip_and_state_dict(name):
    cfg = head_config(name, num_classes=31, **SMALL[name])
    text = cfg.to_json()
    assert type(cfg).from_json(text) == cfg and json.loads(text) == cfg.to_dict()
    torch.manual_seed(0)
    model = build_head(name, json.loads(text)).eval()
    rebuilt = build_head(name, cfg)
    rebuilt.load_state_dict(model.state_dict())
    frames, n = batch()
    assert torch.equal(rebuilt.eval()(frames, n)["logits"], model(frames, n)["logits"])
    assert model(frames, n)["logits"].shape == (6, 31)


def _embed_rows(model, x: torch.Tensor) -> list[torch.Tensor]:
    return model.embedding(x)


def test_decision_attention_by_hand():
    model = small("decision_attention").eval()
    frames, n = batch()
    out = model(frames, n)
    with torch.no_grad():
        for b, k in enumerate(n.clamp(min=1).tolist()):
            h = _embed_rows(model, frames[b, :k])[-1]
            z = model.classifier(h)  # (k, C)
            a = torch.softmax(model.attention(h), dim=0)  # over the clip's frames
            p = (a * torch.sigmoid(z)).sum(0)
            torch.testing.assert_close(out["predictions"][b], p)
    assert torch.equal(model.classifier.bias, torch.full((527,), -5.0))


@pytest.mark.parametrize("attention", ["softmax", "sigmoid"])
def test_feature_attention_by_hand(attention):
    model = small("feature_attention", attention=attention, feature_activation="sigmoid")
    model.eval()
    frames, n = batch()
    out = model(frames, n)
    with torch.no_grad():
        for b, k in enumerate(n.clamp(min=1).tolist()):
            h = _embed_rows(model, frames[b, :k])[-1]
            v = torch.sigmoid(model.feature(h))  # (k, P)
            s = model.attention(h)
            w = torch.softmax(s, 0) if attention == "softmax" else torch.sigmoid(s)
            w = w / w.sum(0)
            pooled = (w * v).sum(0, keepdim=True)
            logits = model.classifier(F.relu(model.pooled_bn(pooled)))[0]
            torch.testing.assert_close(out["logits"][b], logits)


@pytest.mark.parametrize("level_output", ["logit", "probability"])
def test_multilevel_attention_by_hand(level_output):
    model = small("multilevel_attention", level_output=level_output).eval()
    frames, n = batch()
    out = model(frames, n)
    with torch.no_grad():
        for b, k in enumerate(n.clamp(min=1).tolist()):
            layers = _embed_rows(model, frames[b, :k])
            pooled = []
            for h, cla, att in zip(layers[1:], model.classifiers, model.attentions, strict=True):
                a = torch.softmax(att(h), 0)
                p = (a * torch.sigmoid(cla(h))).sum(0)
                pooled.append(torch.logit(p.double()).float() if level_output == "logit" else p)
            # stable log-odds vs logit of a float32 p: p's few-eps relative error moves the
            # logit by ~few eps / (1 - p), times |logit| <= 10 here -> 1e-5 is ample
            torch.testing.assert_close(
                out["logits"][b], model.fc(torch.cat(pooled)), rtol=1e-5, atol=1e-5
            )
    if level_output == "logit":  # the fusion starts as the mean of the two levels' logits
        fresh = small("multilevel_attention")
        c = 527
        expected = torch.cat([torch.eye(c), torch.eye(c)], dim=1) / 2
        assert torch.equal(fresh.fc.weight, expected) and not fresh.fc.bias.any()


@pytest.mark.parametrize("input_norm", ["batch_norm", "l2", "none"])
def test_mlp_pools_mean_and_max(input_norm):
    model = small("mlp", input_norm=input_norm).eval()
    frames, n = batch()
    out = model(frames, n)
    with torch.no_grad():
        for b, k in enumerate(n.tolist()):
            x = frames[b, : max(k, 1)]
            if input_norm == "l2":
                x = x / x.norm(dim=1, keepdim=True).clamp(min=1e-6)
            pooled = torch.cat([x.mean(0), x.amax(0)])[None]
            logits = model.classifier(model.mlp(pooled)[-1])[0]
            torch.testing.assert_close(out["logits"][b], logits)
    if input_norm == "l2":  # per-frame scale does not matter
        scale = torch.rand(6, 10, 1) + 0.5
        torch.testing.assert_close(model(scale * frames, n), out)


def test_attention_input_l2_is_scale_invariant():
    model = small("decision_attention", input_norm="l2").eval()
    frames, n = batch()
    scale = torch.rand(6, 10, 1) + 0.5
    torch.testing.assert_close(model(scale * frames, n), model(frames, n))


# ------------------------------------------------------------------------------------------
# ensemble


MEMBERS = [
    {"model": "mlp", "config": {"hidden_size": 8}},
    {"model": "moe", "config": {"num_mixtures": 3}},
    {"model": "decision_attention", "config": {"hidden_size": 8, "num_layers": 1}},
]


def test_ensemble_is_the_mean_of_its_members():
    torch.manual_seed(0)
    ens = build_head("ensemble", members=MEMBERS).eval()
    assert isinstance(ens, EnsembleModel) and len(ens.members) == 3
    frames, n = batch()
    out = ens(frames, n)
    member_outs = [m(frames, n) for m in ens.members]
    mean = sum(o["predictions"] for o in member_outs) / 3
    torch.testing.assert_close(out["predictions"], mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.sigmoid(out["logits"]), out["predictions"], **PROB_TOL)
    reg = sum(m.regularization_loss() for m in ens.members)
    torch.testing.assert_close(ens.regularization_loss(), reg)
    assert float(reg.detach()) > 0  # the MoE member's L2 penalty
    keys = list(ens.state_dict())
    assert all(k.startswith(("members.0.", "members.1.", "members.2.")) for k in keys)
    assert "members.1.classifier.gates.weight" in keys


def test_ensemble_config_and_state_dict_round_trip():
    torch.manual_seed(0)
    ens = build_head("ensemble", members=MEMBERS, num_classes=31).eval()
    text = ens.config.to_json()
    cfg = EnsembleConfig.from_json(text)
    assert cfg == ens.config and cfg.members == MEMBERS
    rebuilt = build_head("ensemble", json.loads(text))
    rebuilt.load_state_dict(ens.state_dict())
    frames, n = batch()
    a, b = ens(frames, n), rebuilt.eval()(frames, n)
    assert a["logits"].shape == (6, 31)  # the members take the ensemble's num_classes
    assert torch.equal(a["predictions"], b["predictions"])
    assert torch.equal(a["logits"], b["logits"])


def test_ensemble_from_heads_copies_weights():
    heads = []
    for i, spec in enumerate(MEMBERS[:2]):
        torch.manual_seed(10 + i)
        heads.append(build_head(spec["model"], spec["config"]).eval())
    ens = EnsembleModel.from_heads(heads).eval()
    assert ens.config.members[0] == {"model": "mlp", "config": heads[0].config.to_dict()}
    frames, n = batch()
    before = ens(frames, n)["predictions"]
    mean = (heads[0](frames, n)["predictions"] + heads[1](frames, n)["predictions"]) / 2
    torch.testing.assert_close(before, mean, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        heads[0].classifier.bias.add_(1.0)  # a copy: the ensemble does not change
    assert torch.equal(ens(frames, n)["predictions"], before)
    with pytest.raises(ValueError, match="num_classes"):
        EnsembleModel.from_heads([heads[0], build_head("logistic", num_classes=5)])


def test_ensemble_logits_finite_when_probability_rounds_to_1():
    members = [{"model": "logistic", "config": {}}, {"model": "logistic", "config": {}}]
    ens = build_head("ensemble", members=members)
    with torch.no_grad():
        for member, bias in zip(ens.members, (100.0, 90.0), strict=True):
            member.classifier.fc.weight.zero_()
            member.classifier.fc.bias.fill_(bias)
            member.classifier.fc.bias[1] = -bias
    frames, n = batch(2)
    out = ens(frames, n)
    assert out["predictions"][0, 0] == 1.0 and torch.isfinite(out["logits"]).all()
    z = torch.tensor([100.0, 90.0], dtype=torch.float64)
    # float64 direct sums: 1 - p = mean sigmoid(-z) ~ 1e-40 is representable
    ref = torch.sigmoid(z).mean().log() - torch.sigmoid(-z).mean().log()
    # magnitudes ~100: float32 ops err by ~100 * 1.2e-7 ~ 1e-5 each, a few ops -> 1e-4
    torch.testing.assert_close(out["logits"][:, 0].double(), ref.expand(2), rtol=0, atol=1e-4)
    torch.testing.assert_close(out["logits"][:, 1].double(), -ref.expand(2), rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("members", "error", "match"),
    [
        ([{"model": "mlp", "cfg": {}}], ValueError, r"members\[0\]"),
        (["mlp"], ValueError, r"members\[0\]"),
        ([{"model": "mlp", "config": {"num_classes": 5}}], ValueError, "num_classes=5"),
        ([{"model": "nope", "config": {}}], KeyError, "unknown head"),
    ],
)
def test_ensemble_bad_members(members, error, match):
    with pytest.raises(error, match=match):
        build_head("ensemble", members=members)
