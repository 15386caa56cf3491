"""YouTube-8M heads on AudioSet shapes: architecture, sampling, losses, training and resume."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from audiorep.heads import (
    HEADS,
    DbofModel,
    LogisticModel,
    LstmModel,
    MoeClassifier,
    build_head,
    head_class,
    head_config,
    l2_normalize,
    sample_random_frames,
    sample_random_sequence,
)
from audiorep.heads.training import (
    TrainConfig,
    clip_gradient_norms,
    cross_entropy_loss,
    evaluate_classifier,
    hinge_loss,
    label_loss,
    latest_checkpoint,
    learning_rate_at,
    load_head,
    softmax_loss,
    train_classifier,
)
from audiorep.metrics.classification import (
    ClassificationMetrics,
    global_average_precision,
    hit_at_one,
)

METRIC_FIXTURES = Path(__file__).parent / "fixtures" / "yt8m" / "metrics"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These are many tiny ops: one intra-op thread avoids OpenMP spin-wait stalls on a busy
    2-core machine (and keeps the resume test's arithmetic identical run to run)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# The YouTube-8M heads (tests/test_heads_attention.py covers the attention, MLP and ensemble
# heads). Small variants of the heavy ones (defaults: 8192 clusters / 2 x 1024 LSTM cells).
YT8M = ["logistic", "moe", "frame_logistic", "dbof", "lstm"]
SMALL = {
    "logistic": {},
    "moe": {},
    "frame_logistic": {},
    "dbof": {"cluster_size": 48, "hidden_size": 24},
    "lstm": {"lstm_cells": 12},
}


def batch(b: int = 6, t: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Dequantized-like frames in [-2, 2] (as the AudioSet dataset yields them, not
    normalised), zero-padded after num_frames (rows with 10, 0 and 1 frames)."""
    g = torch.Generator().manual_seed(seed)
    frames = 4 * torch.rand(b, t, 128, generator=g) - 2
    n = torch.randint(1, t + 1, (b,), generator=g)
    n[0], n[-1] = t, 1
    if b > 2:
        n[1] = 0
    frames = frames * (torch.arange(t)[None, :, None] < n[:, None, None])
    return frames, n


def labels_for(b: int, c: int = 527, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(b, c, generator=g) < 0.01).float()
    y[:, seed % c] = 1.0
    return y


# ------------------------------------------------------------------------------------------
# architecture


def test_registry_and_defaults():
    assert list(HEADS)[:5] == YT8M
    assert head_class("DbofModel") is DbofModel  # the original's --model names work
    for name in YT8M:
        cfg = head_config(name)
        assert (cfg.num_classes, cfg.feature_size) == (527, 128)
    d = head_config("dbof")
    assert (d.iterations, d.cluster_size, d.hidden_size) == (30, 8192, 1024)
    assert (d.sample_random_frames, d.add_batch_norm, d.pooling_method) == (True, True, "max")
    assert (d.activation, d.classifier, d.num_mixtures) == ("sigmoid", "moe", 2)
    assert (d.bn_momentum, d.bn_eps) == (0.001, 1e-3)  # slim decay 0.999, epsilon 0.001
    lstm = head_config("lstm")
    assert (lstm.lstm_cells, lstm.lstm_layers, lstm.forget_bias, lstm.classifier) == (
        1024, 2, 1.0, "moe",
    )  # fmt: skip
    assert head_config("moe").num_mixtures == 2
    with pytest.raises(KeyError):
        build_head("nope")
    with pytest.raises(ValueError):
        build_head("dbof", clusters=3)  # typo -> error, not a silent default


def _count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_default_parameter_counts():
    c, d = 527, 128
    moe = lambda i: i * c * 3 + i * c * 2 + c * 2  # noqa: E731  gates (no bias) + experts
    assert _count(build_head("logistic")) == d * c + c
    assert _count(build_head("moe")) == moe(d)
    assert _count(build_head("frame_logistic")) == d * c + c
    s, h = 8192, 1024
    assert _count(build_head("dbof")) == 2 * d + d * s + 2 * s + s * h + 2 * h + moe(h)
    cells = 1024
    lstm = 4 * cells * (d + cells) + 8 * cells + 4 * cells * 2 * cells + 8 * cells
    assert _count(build_head("lstm")) == lstm + moe(cells)


@pytest.mark.parametrize("name", YT8M)
def test_shapes_and_ranges(name):
    torch.manual_seed(0)
    model = build_head(name, **SMALL[name])
    frames, n = batch()
    for train in (True, False):
        model.train(train)
        out = model(frames, n)
        p = out["predictions"]
        assert p.shape == (6, 527) and p.dtype == torch.float32
        assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
        # every head returns logits (the mixtures' computed in log space)
        torch.testing.assert_close(torch.sigmoid(out["logits"]), p)
    with pytest.raises(ValueError):
        model(frames[..., :64], n)
    with pytest.raises(ValueError):
        model(frames, n[:2])


@pytest.mark.parametrize("name", YT8M)
def test_input_normalisation_as_train_py(name):
    """Frame-level heads L2-normalise every frame, video-level heads the mean of the raw
    frames: either way the output does not depend on the scale of the features."""
    torch.manual_seed(0)
    model = build_head(name, **SMALL[name]).eval()
    frames, n = batch()
    torch.testing.assert_close(model(3.5 * frames, n), model(frames, n))
    if name in ("logistic", "moe"):  # per-video scale too, but not per-frame scale
        scale = torch.rand(6, 10, 1) + 0.5
        assert not torch.allclose(model(scale * frames, n)["predictions"],
                                  model(frames, n)["predictions"])  # fmt: skip
    else:
        scale = torch.rand(6, 10, 1) + 0.5
        torch.testing.assert_close(model(scale * frames, n), model(frames, n))


@pytest.mark.parametrize("name", YT8M)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build_head(name, **SMALL[name]).train()
    frames, n = batch(8)
    y = labels_for(8)
    loss = cross_entropy_loss(model(frames, n)["predictions"], y) + model.regularization_loss()
    loss.backward()
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            assert name == "lstm" and pname.startswith("lstm.bias_hh")  # constant forget bias
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", YT8M)
def test_seeded_determinism(name):
    frames, n = batch()
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_head(name, **SMALL[name])
        outs.append((model.state_dict(), model.train()(frames, n)["predictions"]))
    for k in outs[0][0]:
        assert torch.equal(outs[0][0][k], outs[1][0][k]), k
    assert torch.equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize("name", YT8M)
def test_config_json_round_trip(name):
    overrides = {"num_classes": 31, **SMALL[name]}
    cfg = head_config(name, **overrides)
    text = cfg.to_json()
    back = type(cfg).from_json(text)
    assert back == cfg and json.loads(text) == cfg.to_dict()
    model = build_head(name, json.loads(text))
    assert model.config == cfg and model.name == name
    assert build_head(name, cfg).config == cfg
    assert cfg.replace(num_classes=5).num_classes == 5 and cfg.num_classes == 31


def test_logistic_pools_like_video_level_features():
    torch.manual_seed(0)
    model = LogisticModel()
    frames, n = batch()
    garbage = frames + 5.0 * (torch.arange(10)[None, :, None] >= n[:, None, None])
    out = model(garbage, n)  # padded rows are ignored
    # mean of the real frames, L2-normalised (train.py normalises video-level features)
    mean = torch.stack([frames[i, : max(int(k), 1)].sum(0) / max(int(k), 1)
                        for i, k in enumerate(n)])  # fmt: skip
    x = mean / mean.norm(dim=1, keepdim=True).clamp(min=1e-6)
    w, b = model.classifier.fc.weight, model.classifier.fc.bias
    torch.testing.assert_close(out["logits"], x @ w.T + b)
    assert torch.equal(out["logits"][1], b)  # 0 frames -> zero vector (original: NaN)
    expected = 1e-8 * 0.5 * w.square().sum()
    torch.testing.assert_close(model.regularization_loss(), expected)


def test_frame_logistic_is_mean_of_normalised_frames():
    torch.manual_seed(0)
    model = build_head("frame_logistic")
    frames, n = batch()
    # train.py normalises every frame; the model divides the sum by num_frames
    mean = l2_normalize(frames).sum(1) / n.clamp(min=1)[:, None].float()
    fc = model.classifier.fc
    torch.testing.assert_close(model(frames, n)["logits"], fc(mean))


def test_moe_matches_hand_computation():
    torch.manual_seed(0)
    c, m, d = 3, 2, 5
    moe = MoeClassifier(d, c, m)
    x = torch.randn(4, d)
    gate_logits = x @ moe.gates.weight.T  # (4, c*(m+1)), no bias
    expert = torch.sigmoid(x @ moe.experts.weight.T + moe.experts.bias)
    expected = torch.zeros(4, c)
    for i in range(4):
        for k in range(c):
            g = torch.softmax(gate_logits[i, k * (m + 1) : (k + 1) * (m + 1)], 0)
            expected[i, k] = sum(g[j] * expert[i, k * m + j] for j in range(m))  # dummy: 0
    torch.testing.assert_close(moe(x)["predictions"], expected)
    assert moe.gates.bias is None


def test_lstm_final_state_and_init():
    torch.manual_seed(0)
    model = LstmModel(head_config("lstm", lstm_cells=8))
    hsz = 8
    for layer, in_size in ((0, 128), (1, hsz)):
        limit = math.sqrt(6 / (in_size + hsz + 4 * hsz))
        for kind in ("ih", "hh"):
            w = getattr(model.lstm, f"weight_{kind}_l{layer}")
            assert w.abs().max() <= limit and w.abs().max() > 0.8 * limit
        bias_hh = getattr(model.lstm, f"bias_hh_l{layer}")
        assert bias_hh[hsz : 2 * hsz].eq(1.0).all() and bias_hh[:hsz].eq(0).all()
        assert not bias_hh.requires_grad
        assert getattr(model.lstm, f"bias_ih_l{layer}").eq(0).all()
    frames, n = batch()
    frames = frames + 3.0 * (torch.arange(10)[None, :, None] >= n[:, None, None])  # junk pad
    got = model(frames, n)["predictions"]
    for i, k in enumerate(n.tolist()):
        if k == 0:
            h = torch.zeros(1, hsz)  # TF: the zero initial state
        else:
            out, _ = model.lstm(l2_normalize(frames[i : i + 1, :k]))
            h = out[:, -1]
        torch.testing.assert_close(got[i : i + 1], model.classifier(h)["predictions"])


# ------------------------------------------------------------------------------------------
# DBoF sampling


def test_sample_random_frames_formula():
    n = torch.tensor([10, 3, 1, 0, 7])
    idx = sample_random_frames(n, 30, torch.Generator().manual_seed(5))
    u = torch.rand(5, 30, generator=torch.Generator().manual_seed(5))
    expected = torch.floor(u * n[:, None].float()).long().clamp(min=0)
    expected[3] = 0  # 0 frames -> index 0 (a zero row)
    assert torch.equal(idx, expected)
    assert idx.shape == (5, 30) and idx.dtype == torch.int64
    many = sample_random_frames(torch.full((2000,), 10), 30)
    counts = torch.bincount(many.flatten(), minlength=10).float()
    assert counts.min() > 0.9 * counts.mean()  # uniform over the frames, with replacement


def test_sample_random_sequence_formula():
    g = torch.Generator().manual_seed(3)
    n = torch.tensor([3, 10, 4, 0])
    idx = sample_random_sequence(n, 5, g)
    assert idx[0].tolist() == [0, 1, 2, 2, 2]  # shorter video: the last frame repeats
    start = int(idx[1, 0])
    assert 0 <= start <= 5 and idx[1].tolist() == list(range(start, start + 5))
    assert idx[2].tolist() == [0, 1, 2, 3, 3] and idx[3].tolist() == [0] * 5
    u = torch.rand(4, 1, generator=torch.Generator().manual_seed(3))
    assert start == int(u[1, 0] * 6)  # floor(u * (max(n - k, 0) + 1))
    starts = sample_random_sequence(torch.full((3000,), 10), 4)[:, 0]
    assert set(starts.tolist()) == set(range(7))


def _small_dbof(**kw) -> DbofModel:
    torch.manual_seed(0)
    return build_head("dbof", **{**SMALL["dbof"], **kw})


def test_dbof_train_and_eval_sampling():
    frames, n = batch()
    model = _small_dbof()
    torch.manual_seed(1)
    a = model.train()(frames, n)["predictions"]
    b = model(frames, n)["predictions"]
    assert not torch.equal(a, b)  # training: a fresh sample every call
    torch.manual_seed(1)
    model = _small_dbof()
    torch.manual_seed(1)
    assert torch.equal(model.train()(frames, n)["predictions"], a)  # global seed reproduces
    model.eval()
    # "seeded" (default): deterministic and the global RNG is neither used nor consumed
    state = torch.get_rng_state()
    e1 = model(frames, n)["predictions"]
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(99)
    assert torch.equal(model(frames, n)["predictions"], e1)
    # "random": the original's stochastic evaluation
    model.config.eval_sampling = "random"
    assert not torch.equal(model(frames, n)["predictions"], model(frames, n)["predictions"])
    # "all": every valid frame once -> invariant to frame order and padded content
    model.config.eval_sampling = "all"
    e_all = model(frames, n)["predictions"]
    perm = frames.clone()
    perm[0] = frames[0].flip(0)  # row 0 has all 10 frames
    perm[2:5] += 7.0 * (torch.arange(10)[None, :, None] >= n[2:5, None, None])
    torch.testing.assert_close(model(perm, n)["predictions"], e_all)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"pooling_method": "average"},
        {"sample_random_frames": False, "activation": "relu6"},
        {"add_batch_norm": False},
    ],
)
def test_dbof_folded_equals_literal_gather(kw):
    """fold_samples (cluster layer once per frame, weighted BN) == the original's gather."""
    frames, n = batch(8)
    y = labels_for(8)
    results = []
    for fold in (True, False):
        model = _small_dbof(fold_samples=fold, **kw)
        torch.manual_seed(7)
        out = model.train()(frames, n)["predictions"]
        cross_entropy_loss(out, y).backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        results.append((out, grads, {k: v.clone() for k, v in model.state_dict().items()}))
    (o1, g1, s1), (o2, g2, s2) = results
    torch.testing.assert_close(o1, o2, rtol=1e-5, atol=1e-6)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-4, atol=1e-6, msg=k)
    for k in s1:  # running statistics (unbiased variance over the B*K sampled rows)
        torch.testing.assert_close(s1[k].float(), s2[k].float(), rtol=1e-5, atol=1e-6, msg=k)


def test_dbof_without_batch_norm_has_biases():
    model = _small_dbof(add_batch_norm=False, classifier="logistic")
    names = {k for k, _ in model.named_parameters()}
    assert {"cluster_biases", "hidden1_biases"} <= names
    assert not any("bn" in k for k in names)
    assert "logits" in model(*batch())


# ------------------------------------------------------------------------------------------
# losses, schedule, clipping


def test_losses_by_hand():
    p = torch.tensor([[0.9, 0.2, 0.0], [0.5, 1.0, 0.3]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    eps = 1e-5
    rows = [
        -(math.log(0.9 + eps) + math.log(0.8 + eps) + math.log(0.0 + eps)),
        -(math.log(0.5 + eps) + math.log(1.0 + eps) + math.log(0.7 + eps)),
    ]
    assert float(cross_entropy_loss(p, y)) == pytest.approx(sum(rows) / 2, abs=1e-12)
    per = cross_entropy_loss(p, y, reduction="none")
    np.testing.assert_allclose(per.numpy(), rows, atol=1e-12)
    assert rows[0] > -math.log(eps)  # capped per element at -log(1e-5), not infinite
    hinge = [(1 - 0.9) + (1 + 0.2) + (1 - 0.0), (1 + 0.5) + max(0, 1 - 1.0) + (1 + 0.3)]
    assert float(hinge_loss(p, y)) == pytest.approx(sum(hinge) / 2, abs=1e-12)
    ls = torch.log_softmax(p, 1)
    soft = [-(ls[0, 0] + ls[0, 2]) / 2, -ls[1, 1]]
    assert float(softmax_loss(p, y)) == pytest.approx(float(sum(soft)) / 2, abs=1e-12)
    assert float(softmax_loss(p, torch.zeros_like(y))) == 0.0  # rows without labels
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    bce = label_loss("bce_logits", {"logits": logits}, torch.tensor([[1.0, 0.0, 1.0]]))
    want = -(math.log(1 / (1 + math.exp(-2))) + math.log(1 - 1 / (1 + math.exp(1)))
             + math.log(1 / (1 + math.exp(-0.5))))  # fmt: skip
    assert float(bce) == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError):
        label_loss("bce_logits", {"predictions": p}, y)


@pytest.mark.parametrize("name", ["c02_c10_n64", "c04_c10_n40_signed", "c07_c527_n100"])
def test_losses_match_tensorflow_golden(name):
    golden = {c["name"]: c for c in json.loads((METRIC_FIXTURES / "metrics_golden.json")
                                               .read_text())["cases"]}[name]  # fmt: skip
    with np.load(METRIC_FIXTURES / f"{name}.npz") as z:
        p32 = torch.from_numpy(z["predictions"].astype(np.float32))
        y = torch.from_numpy(z["labels"])
        per_example = z["loss_per_example"]
        p64 = torch.from_numpy(z["predictions"].astype(np.float64))
    tf = golden["tf_losses_float32"]
    fns = {"CrossEntropyLoss": cross_entropy_loss, "HingeLoss": hinge_loss,
           "SoftmaxLoss": softmax_loss}  # fmt: skip
    for key, fn in fns.items():
        if tf[key] is not None:
            assert float(fn(p32, y)) == pytest.approx(tf[key], rel=1e-5), key
    fn = (
        hinge_loss
        if golden["evaluation_metrics"]["loss_kind"] == "hinge_b1"
        else cross_entropy_loss
    )
    np.testing.assert_allclose(fn(p64, y.double(), reduction="none").numpy(), per_example,
                               rtol=0, atol=1e-9)  # fmt: skip


def test_learning_rate_schedule():
    assert learning_rate_at(0) == 0.01
    assert learning_rate_at(3_999_999) == 0.01
    assert learning_rate_at(4_000_000) == pytest.approx(0.0095)
    assert learning_rate_at(8_500_000) == pytest.approx(0.01 * 0.95**2)
    assert TrainConfig.for_head("lstm").base_learning_rate == 0.001
    assert TrainConfig.for_head("dbof").base_learning_rate == 0.01
    cfg = TrainConfig()
    assert (cfg.clip_gradient_norm, cfg.clip_mode, cfg.regularization_penalty) == (
        1.0, "per_tensor", 1.0,
    )  # fmt: skip
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_per_tensor_gradient_clipping():
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(3))
    c = torch.nn.Parameter(torch.zeros(1))  # no gradient: skipped
    a.grad = torch.tensor([3.0, 4.0])  # norm 5 -> scaled to norm 1
    b.grad = torch.tensor([0.1, 0.2, 0.2])  # norm 0.3 -> untouched (not a global norm)
    norms = clip_gradient_norms([a, b, c], 1.0)
    assert norms == pytest.approx([5.0, 0.3])
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(b.grad, torch.tensor([0.1, 0.2, 0.2]))


# ------------------------------------------------------------------------------------------
# training loop, checkpoints, resume, evaluation


def make_dataset(n: int = 40, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    nf = torch.randint(1, 11, (n,), generator=g)
    frames = 4 * torch.rand(n, 10, 128, generator=g) - 2
    frames = frames * (torch.arange(10)[None, :, None] < nf[:, None, None])
    y = torch.zeros(n, 527)
    cls = torch.randint(0, 527, (n, 2), generator=g)
    y.scatter_(1, cls, 1.0)
    return [{"embeddings": frames[i], "num_frames": nf[i], "labels": y[i]} for i in range(n)]


def loader(data, batch_size: int = 8, shuffle: bool = True):
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=shuffle)


LINE = re.compile(
    r"^training step \d+ \| Loss: \d+\.\d\d Examples/sec: \d+\.\d\d"
    r"( \| Hit@1: \d\.\d\d PERR: \d\.\d\d GAP: \d\.\d\d)?$"
)


def test_train_logs_and_learns(tmp_path):
    data = make_dataset(32)
    torch.manual_seed(0)
    model = build_head("moe")
    lines: list[str] = []
    res = train_classifier(model, loader(data), loader(data, 32, False), num_epochs=6,
                           checkpoint_dir=tmp_path, log=lines.append)  # fmt: skip
    assert res.step == 24 and res.examples_seen == 192 and res.epoch == 6
    train_lines = [ln for ln in lines if ln.startswith("training step")]
    assert len(train_lines) == 24 and all(LINE.match(ln) for ln in train_lines)
    assert "Hit@1" in train_lines[9] and "Hit@1" not in train_lines[8]  # every 10th step
    first, last = (float(ln.split("Loss: ")[1].split()[0]) for ln in train_lines[::23])
    assert last < first
    assert lines[-1].startswith("epoch/eval number 24 | Avg_Hit@1: ")
    assert res.eval_metrics["num_examples"] == 32
    assert res.checkpoint == latest_checkpoint(tmp_path) == tmp_path / "ckpt-00000024"


def _final_state(directory: Path) -> tuple[dict, dict, dict]:
    ckpt = latest_checkpoint(directory)
    state = json.loads((ckpt / "state.json").read_text())
    return (load_file(str(ckpt / "model.safetensors")),
            load_file(str(ckpt / "optimizer.safetensors")), state)  # fmt: skip


@pytest.mark.parametrize("split", [3, 5])  # mid-epoch, exactly at an epoch boundary
def test_resume_is_exact(tmp_path, split):
    """8 steps straight == ``split`` steps + resume + the rest (bitwise, CPU)."""
    data = make_dataset(40)  # 5 batches per epoch: 8 steps cross an epoch boundary
    kw = {"iterations": 6, **SMALL["dbof"]}  # exercises sampling RNG and batch norm

    torch.manual_seed(0)
    straight = build_head("dbof", **kw)
    train_classifier(straight, loader(data), max_steps=8, checkpoint_dir=tmp_path / "a",
                     log=lambda s: None)  # fmt: skip

    torch.manual_seed(0)
    first = build_head("dbof", **kw)
    train_classifier(first, loader(data), max_steps=split, checkpoint_dir=tmp_path / "b",
                     log=lambda s: None)  # fmt: skip
    torch.manual_seed(1234)  # a different fresh model and RNG: everything must come back
    second = build_head("dbof", **kw)
    res = train_classifier(second, loader(data), max_steps=8, checkpoint_dir=tmp_path / "b",
                           log=lambda s: None)  # fmt: skip
    assert res.step == 8 and res.examples_seen == 64

    wa, oa, sa = _final_state(tmp_path / "a")
    wb, ob, sb = _final_state(tmp_path / "b")
    assert wa.keys() == wb.keys() and oa.keys() == ob.keys() and len(oa) > 0
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for k in oa:
        assert torch.equal(oa[k], ob[k]), k
    for k, v in straight.state_dict().items():
        assert torch.equal(v, second.state_dict()[k]), k
    assert sa["trainer"]["rng"] == sb["trainer"]["rng"]
    assert sa["step"] == sb["step"] == 8


def test_checkpoint_contents_and_reload(tmp_path):
    data = make_dataset(16)
    torch.manual_seed(0)
    model = build_head("dbof", **SMALL["dbof"])
    train_classifier(model, loader(data), max_steps=4, checkpoint_dir=tmp_path,
                     checkpoint_every_steps=1, keep_checkpoints=2, log=lambda s: None)  # fmt: skip
    kept = sorted(p.name for p in tmp_path.iterdir())
    # the two newest checkpoints, and the run's chosen weights (here: the final ones)
    assert kept == ["ckpt-00000003", "ckpt-00000004", "selected"]
    assert [p.name for p in (tmp_path / "selected").iterdir()] == ["ckpt-00000004"]
    ckpt = tmp_path / "ckpt-00000004"
    assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "optimizer.safetensors",
                                                 "state.json"}  # fmt: skip
    state = json.loads((ckpt / "state.json").read_text())
    assert state["model"] == "dbof" and state["config"] == model.config.to_dict()
    assert state["step"] == 4 and state["trainer"]["examples_seen"] == 32
    assert state["optimizer"]["class"] == "Adam" and "rng" in state["trainer"]
    assert state["train_config"] == TrainConfig().to_dict()
    rebuilt, _ = load_head(tmp_path)
    frames, n = batch()
    model.eval()
    assert torch.equal(rebuilt.eval()(frames, n)["predictions"], model(frames, n)["predictions"])
    # resuming with another config refuses (original: model_flags.json mismatch)
    other = build_head("dbof", cluster_size=32, hidden_size=24)
    with pytest.raises(ValueError, match="start a new model"):
        train_classifier(other, loader(data), max_steps=5, checkpoint_dir=tmp_path)
    res = train_classifier(other, loader(data), max_steps=1, checkpoint_dir=tmp_path,
                           resume=False, log=lambda s: None)  # fmt: skip
    assert res.step == 1


class CountingLoader:
    def __init__(self, data, batch_size):
        self.data, self.batch_size, self.passes = data, batch_size, 0

    def __iter__(self):
        self.passes += 1
        yield from loader(self.data, self.batch_size, shuffle=False)


def test_evaluate_once_matches_direct_metrics():
    data = make_dataset(24)
    torch.manual_seed(0)
    model = build_head("frame_logistic").train()
    ev = CountingLoader(data, 10)
    lines: list[str] = []
    res = evaluate_classifier(model, ev, log=lines.append, log_every=1, global_step=7)
    assert ev.passes == 1 and model.training  # one pass; mode restored
    assert len(lines) == 4 and lines[0].startswith("examples_processed: 10 | global_step 7 |")
    full = next(iter(loader(data, 24, shuffle=False)))
    with torch.no_grad():
        p = model.eval()(full["embeddings"], full["num_frames"])["predictions"]
    y = full["labels"]
    assert res["num_examples"] == 24
    assert res["avg_hit_at_one"] == pytest.approx(hit_at_one(p, y), abs=1e-12)
    assert res["gap"] == pytest.approx(global_average_precision(p, y), abs=1e-12)
    assert res["avg_loss"] == pytest.approx(float(cross_entropy_loss(p, y)), rel=1e-6)
    direct = ClassificationMetrics(527)
    direct.update(p, y)
    assert res["map"] == pytest.approx(direct.compute()["map"], abs=1e-12)


def test_periodic_evaluation_does_not_perturb_training(tmp_path):
    """Evaluation (here DBoF's stochastic "random" eval sampling and a DataLoader, both on the
    global RNG) runs under a saved/restored RNG: weights equal a run without it."""
    data = make_dataset(24)
    kw = {"iterations": 6, "eval_sampling": "random", **SMALL["dbof"]}
    finals = []
    for every in (None, 2):
        torch.manual_seed(0)
        model = build_head("dbof", **kw)
        res = train_classifier(model, loader(data), loader(data, 12, False), max_steps=5,
                               eval_every_steps=every, log=lambda s: None)  # fmt: skip
        assert res.eval_metrics["num_examples"] == 24
        finals.append(model.state_dict())
    for k in finals[0]:
        assert torch.equal(finals[0][k], finals[1][k]), k
