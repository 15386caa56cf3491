"""Training to convergence: schedules, weight averaging, mixup, selection on validation, early
stopping, stratified validation splits, class-balanced sampling - and exact resume with all of
them on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from audiorep.data.packed import PackedAudioSet, balanced_order
from audiorep.data.splits import stratified_split
from audiorep.heads import build_head
from audiorep.heads.training import (
    SELECTED_DIR,
    TrainConfig,
    load_head,
    resolve_checkpoint,
    train_classifier,
)
from audiorep.training.checkpoint import latest_checkpoint, read_checkpoint_state
from audiorep.training.ema import WeightAverage
from audiorep.training.mixup import mixup_batch
from audiorep.training.schedules import scheduled_learning_rate
from audiorep.training.selection import BestTracker

# ------------------------------------------------------------------------------------------
# schedules


def test_cosine_schedule_warms_up_then_anneals():
    lrs = [scheduled_learning_rate("cosine", s, 10, 1.0, warmup_steps=2) for s in range(10)]
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0)  # the peak starts the half cosine
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)  # ... which ends at the floor
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))  # monotone after the warm-up
    # the midpoint of the cosine part is half way between peak and floor
    mid = scheduled_learning_rate("cosine", 6, 12, 2.0, warmup_steps=1, final_fraction=0.1)
    assert mid == pytest.approx(0.2 + (2.0 - 0.2) * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_one_cycle_and_constant():
    lrs = [scheduled_learning_rate("one_cycle", s, 20, 1.0, warmup_steps=5) for s in range(20)]
    assert lrs[0] == pytest.approx(0.04)  # 1 / 25 of the peak
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 5
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert scheduled_learning_rate("constant", 7, 10, 0.3, warmup_steps=2) == 0.3
    assert scheduled_learning_rate("constant", 0, 10, 0.3, warmup_steps=3) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown schedule"):
        scheduled_learning_rate("linear", 0, 10, 1.0)


# ------------------------------------------------------------------------------------------
# weight average, mixup, selection


def test_weight_average_is_the_exponential_average():
    lin = torch.nn.Linear(3, 2)
    ema = WeightAverage(lin, 0.9, warmup=False)
    start = lin.weight.detach().clone()
    expected = start.clone()
    for k in range(5):
        with torch.no_grad():
            lin.weight.add_(1.0 + k)
        ema.update(lin)
        expected = 0.9 * expected + 0.1 * lin.weight.detach()
    # 5 lerps of values <= 16: float32 rounding ~ 5 x 16 x 6e-8
    torch.testing.assert_close(ema.shadow["weight"], expected, atol=1e-5, rtol=0)
    trained = lin.weight.detach().clone()
    with ema.applied(lin):
        torch.testing.assert_close(lin.weight.detach(), expected, atol=1e-5, rtol=0)
    assert torch.equal(lin.weight.detach(), trained)  # put back exactly
    other = WeightAverage(torch.nn.Linear(3, 2), 0.9)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.shadow["weight"], ema.shadow["weight"]) and other.num_updates == 5
    assert WeightAverage(lin, 0.999).factor() == pytest.approx(0.1)  # warm-up: (1+0)/(10+0)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(lin, 1.0)


def test_mixup_blends_frames_and_labels_with_one_partner():
    torch.manual_seed(0)
    frames = torch.randn(6, 4, 3)
    n = torch.tensor([4, 1, 2, 4, 3, 4])
    frames = frames * (torch.arange(4)[None, :, None] < n[:, None, None])
    labels = torch.eye(6)
    mixed, mn, ml = mixup_batch(frames, n, labels, alpha=0.4)
    assert ml.sum(dim=1).allclose(torch.ones(6))  # convex weights of two one-hot rows
    lam = ml.max(dim=1).values.min().item()
    for i in range(6):
        partner = [j for j in range(6) if j != i and ml[i, j] > 0] or [i]
        j = partner[0]
        li = ml[i, i].item() if j != i else 1.0
        torch.testing.assert_close(mixed[i], li * frames[i] + (1 - li) * frames[j])
        assert mn[i] == max(n[i], n[j])
    assert 0.5 <= lam <= 1.0
    same = mixup_batch(frames, n, labels, alpha=0.0)
    assert same[0] is frames and same[2] is labels


def test_best_tracker_patience_and_round_trip():
    t = BestTracker(patience=2)
    assert t.update(0.3, step=1, epoch=1) and not t.should_stop
    assert not t.update(0.29, step=2, epoch=2)
    assert not t.update(math.nan, step=3, epoch=3) and t.should_stop
    assert (t.best, t.best_epoch) == (0.3, 1)
    back = BestTracker.from_dict(t.to_dict())
    assert back == t
    assert BestTracker(patience=0).should_stop is False


# ------------------------------------------------------------------------------------------
# splits and balanced sampling


def _random_labels(n: int, classes: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, classes + 1)  # Zipf-like class frequencies, as AudioSet
    out = []
    for _ in range(n):
        k = rng.integers(1, 4)
        out.append(np.unique(rng.choice(classes, size=k, p=freq / freq.sum())))
    return out


def test_stratified_split_keeps_every_class_share():
    labels = _random_labels(2000, 40, seed=1)
    kept, held = stratified_split(labels, 0.1, seed=3)
    assert len(kept) + len(held) == 2000 and not set(kept) & set(held)
    assert abs(len(held) - 200) <= 20
    counts = np.bincount(np.concatenate(labels), minlength=40)
    held_counts = np.bincount(np.concatenate([labels[i] for i in held]), minlength=40)
    # iterative stratification places each class's examples by its remaining want: within a
    # couple of examples of the 10 % target (multi-label rows can overshoot other classes)
    assert np.abs(held_counts - 0.1 * counts).max() <= 0.02 * counts.max() + 2
    again = stratified_split(labels, 0.1, seed=3)
    assert np.array_equal(again[1], held)  # seeded
    assert not np.array_equal(stratified_split(labels, 0.1, seed=4)[1], held)
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(labels, 1.0)


def _packed(n: int, classes: int = 6, seed: int = 0) -> PackedAudioSet:
    g = torch.Generator().manual_seed(seed)
    nf = torch.randint(1, 11, (n,), generator=g)
    q = torch.randint(0, 256, (n, 10, 128), generator=g, dtype=torch.uint8)
    q = q * (torch.arange(10)[None, :, None] < nf[:, None, None])
    rng = np.random.default_rng(seed)
    # class c appears in ~ 1 / (c + 1) of the segments: very unbalanced
    lists = [np.flatnonzero(rng.random(classes) < 1.0 / (np.arange(classes) + 1)) for _ in range(n)]
    lists = [ls if ls.size else np.array([0]) for ls in lists]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum([len(x) for x in lists])]))
    indices = torch.tensor(np.concatenate(lists), dtype=torch.int64)
    ids = [f"v{i:04d}" for i in range(n)]
    return PackedAudioSet(q, nf, indices, offsets, ids, np.zeros(n), num_classes=classes)


def test_subset_and_balanced_order():
    data = _packed(300)
    sub = data.subset([5, 2, 9])
    assert sub.video_ids == ["v0005", "v0002", "v0009"]
    assert torch.equal(sub.labels(torch.arange(3)), data.labels(torch.tensor([5, 2, 9])))
    assert torch.equal(sub.quantized, data.quantized[[5, 2, 9]])
    torch.manual_seed(0)
    order = balanced_order(data, 600)
    drawn = data.labels(order).sum(dim=0)
    natural = data.labels(torch.arange(300)).sum(dim=0) * 2
    # every class is visited once per round of 6 draws: 100 visits each, plus co-labels
    assert drawn.min() >= 100 and (drawn.max() / drawn.min()) < (natural.max() / natural.min())
    torch.manual_seed(0)
    assert torch.equal(balanced_order(data, 600), order)  # global RNG: resumable


# ------------------------------------------------------------------------------------------
# the trainer with everything on


def _loaders(seed: int = 0):
    data = _packed(96, classes=6, seed=seed)
    kept, held = stratified_split(data.label_lists(), 0.25, seed=0)
    train, valid = data.subset(kept), data.subset(held)
    return train.loader(16, shuffle=True), valid.loader(64)


def _config(**over) -> TrainConfig:
    base = {"label_loss": "bce_logits", "base_learning_rate": 3e-3, "schedule": "cosine",
            "warmup_steps": 3, "optimizer": "adamw", "weight_decay": 1e-2, "mixup_alpha": 0.5,
            "ema_decay": 0.9, "clip_mode": "global", "clip_gradient_norm": 5.0}  # fmt: skip
    return TrainConfig(**{**base, **over})


def _head():
    return build_head("mlp", num_classes=6, hidden_size=16, num_layers=1)


def test_selection_early_stopping_and_log(tmp_path):
    train, valid = _loaders()
    torch.manual_seed(0)
    model = _head()
    lines: list[str] = []
    info = {"train_class_counts": [1] * 6}
    res = train_classifier(model, train, valid, config=_config(patience=2), num_epochs=30,
                           checkpoint_dir=tmp_path, log=lines.append, log_every=0,
                           valid_loader=valid, run_info=info)  # fmt: skip
    epoch_lines = [ln for ln in lines if ln.startswith("epoch ")]
    assert len(epoch_lines) == res.epoch == len(res.history)  # one compact line per epoch
    assert not any(ln.startswith("training step") for ln in lines)
    maps = [h["valid"]["map"] for h in res.history]
    best = int(np.argmax(maps))
    assert res.best_epoch == best + 1
    assert res.valid_metrics["map"] == pytest.approx(maps[best])
    if res.stopped_early:
        assert res.epoch == res.best_epoch + 2 and "stopping" in epoch_lines[-1]
    # the selected checkpoint holds the weights that were validated (the average) ...
    selected = latest_checkpoint(tmp_path / SELECTED_DIR)
    state = read_checkpoint_state(selected)
    assert state["selection"]["epoch"] == res.best_epoch and state["selection"]["weight_average"]
    assert state["train_class_counts"] == [1] * 6
    # ... they are in the model on return, and a training folder resolves to them
    weights = load_file(str(selected / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert resolve_checkpoint(tmp_path) == selected
    again, _ = load_head(tmp_path)
    for k, v in again.state_dict().items():
        assert torch.equal(v, weights[k]), k


class _Killed(RuntimeError):
    pass


def test_resume_with_everything_on_is_exact(tmp_path):
    """A run killed mid-epoch and resumed ends with the same weights, weight average, selected
    checkpoint and history as an uninterrupted one (CPU, bitwise)."""
    cfg = _config(balanced_sampling=True)

    def run(folder, kill_at=None):
        data = _packed(96, classes=6)
        kept, held = stratified_split(data.label_lists(), 0.25, seed=0)
        train = data.subset(kept).loader(16, balanced=True)
        valid = data.subset(held).loader(64)

        def log(line: str) -> None:
            if kill_at is not None and line.startswith(f"training step {kill_at} "):
                raise _Killed

        model = _head()
        return model, train_classifier(
            model, train, config=cfg, num_epochs=4, checkpoint_dir=folder, log=log,
            checkpoint_every_steps=1, valid_loader=valid,
        )  # fmt: skip

    torch.manual_seed(0)
    straight, res_a = run(tmp_path / "a")
    torch.manual_seed(0)
    with pytest.raises(_Killed):
        run(tmp_path / "b", kill_at=7)  # 5 batches per epoch: killed in epoch 2
    torch.manual_seed(99)  # a fresh model and RNG: everything must come back from disk
    resumed, res_b = run(tmp_path / "b")
    assert (res_a.step, res_a.epoch) == (res_b.step, res_b.epoch) == (20, 4)
    timeless = [[{k: v for k, v in h.items() if k != "examples_per_second"} for h in r.history]
                for r in (res_a, res_b)]  # fmt: skip
    assert timeless[0] == timeless[1] and len(timeless[0]) == 4
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    a = latest_checkpoint(tmp_path / "a")
    b = latest_checkpoint(tmp_path / "b")
    ema_a = load_file(str(a / "tensors-ema.safetensors"))
    ema_b = load_file(str(b / "tensors-ema.safetensors"))
    assert ema_a.keys() == ema_b.keys()
    for k in ema_a:
        assert torch.equal(ema_a[k], ema_b[k]), k


def test_step_schedule_needs_a_length():
    model = _head()
    gen = ({"embeddings": torch.zeros(2, 1, 128), "num_frames": torch.ones(2, dtype=torch.int64),
            "labels": torch.zeros(2, 6)} for _ in range(3))  # fmt: skip
    with pytest.raises(ValueError, match="needs max_steps"):
        train_classifier(model, gen, config=_config(), num_epochs=2, log=lambda s: None)
