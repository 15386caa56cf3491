"""Per-class reports of ``audiorep evaluate-classifier``: the table, CSV, JSON, best / worst
lines and the AP-vs-training-examples PNG (``audiorep.heads.report`` / ``report_plot``).

Data: a synthetic AudioSet shard written to ``tmp_path`` (48 segments of random bytes, labels
drawn from 8 of the 527 classes, so the other classes have no AP) and a logistic head with
random weights saved with the training checkpoint plumbing.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audiorep.cli import main
from audiorep.data import audioset_class_mids, audioset_class_names
from audiorep.data.example import serialize_sequence_example
from audiorep.data.packed import PackedAudioSet
from audiorep.data.tfrecord import write_tfrecord
from audiorep.heads import build_head
from audiorep.heads.report import (
    CSV_COLUMNS,
    ClassRow,
    best_and_worst,
    check_train_counts,
    class_labels,
    format_best_worst,
    per_class_table,
    train_counts_from_state,
)
from audiorep.heads.report_plot import PlotUnavailableError, binned_ap, require_matplotlib
from audiorep.heads.training import evaluate_classifier
from audiorep.metrics.classification import average_precision_per_class, roc_auc_per_class
from audiorep.training.checkpoint import save_checkpoint

C = 527
N = 48
USED = [0, 1, 2, 5, 10, 72, 137, 300]  # the classes that get labels
# AP is a mean of at most N precisions in [0, 1]; two float64 evaluations of the same ranking
# can differ only by summation order: <= N * 2**-52 ~ 1e-14, so 1e-12 is generous.
AP_TOL = 1e-12
# Training counts saved with the run: distinct, so every class has its own x position.
COUNTS = [1 + (37 * i) % 500 for i in range(C)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_shard(path: Path, seed: int = 0) -> Path:
    """N segments, 1-10 frames of random bytes, 1-2 labels each from USED."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(N):
        t = int(rng.integers(1, 11))
        frames = [[rng.integers(0, 256, 128, dtype=np.uint8).tobytes()] for _ in range(t)]
        labels = rng.choice(USED, size=int(rng.integers(1, 3)), replace=False)
        ctx = {
            "video_id": f"vid{i:08d}",
            "start_time_seconds": np.float32(10.0 * i),
            "end_time_seconds": np.float32(10.0 * i + t),
            "labels": np.sort(labels).astype(np.int64),
        }
        records.append(serialize_sequence_example(ctx, {"audio_embedding": frames}))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tfrecord(path, records)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("report")
    shard = write_shard(root / "eval" / "synthetic.tfrecord")
    train_shard = write_shard(root / "train" / "synthetic.tfrecord", seed=1)
    torch.manual_seed(0)
    model = build_head("logistic")
    with torch.no_grad():  # random weights: distinct scores, so APs differ between classes
        for p in model.parameters():
            p.normal_(0.0, 1.0)
    with_counts = save_checkpoint(root / "run", model, step=7, extra={"train_class_counts": COUNTS})
    without = save_checkpoint(root / "run_nocounts", model, step=7)
    data = PackedAudioSet.load(shard, progress=False)
    batch = data.batch(torch.arange(len(data)))
    model.eval()
    with torch.no_grad():
        pred = model(batch["embeddings"], batch["num_frames"])["predictions"].numpy()
    labels = batch["labels"].numpy()
    positives = labels.sum(axis=0)
    assert np.all(positives[USED] > 0) and np.all(positives[USED] < N)  # every AP defined
    return {
        "root": root,
        "shard": shard,
        "train_shard": train_shard,
        "ckpt": with_counts,
        "ckpt_nocounts": without,
        "pred": pred,
        "labels": labels,
    }


def evaluate(setup: dict, *extra: str, ckpt: str = "ckpt") -> int:
    args = ["evaluate-classifier", "--checkpoint", str(setup[ckpt]), "--data", str(setup["shard"])]
    return main([*args, "-q", *extra])


def _same(got: float | None, want: float, tol: float = AP_TOL) -> bool:
    if not math.isfinite(want):
        return got is None
    return got is not None and abs(got - want) <= tol


# ------------------------------------------------------------------------------------------
# CLI outputs


def test_json_and_csv_per_class_equal_the_metrics(setup, tmp_path, capsys):
    out_json, out_csv = tmp_path / "m.json", tmp_path / "m.csv"
    assert evaluate(setup, "--json", str(out_json), "--per-class-csv", str(out_csv)) == 0
    capsys.readouterr()
    ap = average_precision_per_class(setup["pred"], setup["labels"])
    auc = roc_auc_per_class(setup["pred"], setup["labels"])
    pos = setup["labels"].sum(axis=0)
    names, mids = audioset_class_names(), audioset_class_mids()

    doc = json.loads(out_json.read_text())
    rows = doc["per_class"]
    assert len(rows) == C and doc["train_counts_from"] == "checkpoint"
    for i, r in enumerate(rows):
        assert set(r) == set(CSV_COLUMNS)
        assert (r["index"], r["mid"], r["name"]) == (i, mids[i], names[i])
        assert _same(r["ap"], ap[i]) and _same(r["auc"], auc[i]), i
        assert r["eval_positives"] == int(pos[i]) and r["train_examples"] == COUNTS[i]
    assert sum(r["ap"] is not None for r in rows) == len(USED)
    # the metrics block stays scalar; its mAP is the mean of the per-class APs
    assert not any(isinstance(v, list) for v in doc["metrics"].values())
    assert abs(doc["metrics"]["map"] - np.nanmean(ap)) <= AP_TOL

    with out_csv.open(newline="") as f:
        table = list(csv.reader(f))
    assert tuple(table[0]) == CSV_COLUMNS and len(table) == C + 1
    for i, line in enumerate(table[1:]):
        rec = dict(zip(CSV_COLUMNS, line))
        want = rows[i]
        assert int(rec["index"]) == i and rec["mid"] == mids[i] and rec["name"] == names[i]
        for key in ("ap", "auc"):  # repr round-trips: the same float as the JSON
            assert (float(rec[key]) if rec[key] else None) == want[key]
        assert int(rec["eval_positives"]) == want["eval_positives"]
        assert int(rec["train_examples"]) == COUNTS[i]


def _table(lines: list[str], title: str) -> list[list[str]]:
    start = next(k for k, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("  ") or not line.strip()[0].isdigit():
            break
        rows.append(line.split(None, 5))
    return rows


def test_text_shows_best_and_worst_classes_in_order(setup, capsys):
    assert evaluate(setup, "--show", "3") == 0
    lines = capsys.readouterr().out.splitlines()
    ap = average_precision_per_class(setup["pred"], setup["labels"])
    order = [i for i in np.argsort(-ap, kind="stable") if math.isfinite(ap[i])]
    names = audioset_class_names()
    best = _table(lines, "best 3 classes by AP")
    worst = _table(lines, "worst 3 classes by AP")
    assert [r[0] for r in best] == ["1", "2", "3"] and len(worst) == 3
    best_ap = [float(r[1]) for r in best]
    worst_ap = [float(r[1]) for r in worst]
    assert best_ap == sorted(best_ap, reverse=True) and worst_ap == sorted(worst_ap)
    assert [r[5].rsplit(" (", 1)[0] for r in best] == [names[i] for i in order[:3]]
    assert [r[5].rsplit(" (", 1)[0] for r in worst] == [names[i] for i in order[::-1][:3]]
    # columns: rank, AP, AUC, #train, #eval, class
    top = order[0]
    assert best[0][3] == f"{COUNTS[top]:,}"
    assert best[0][4] == str(int(setup["labels"][:, top].sum()))
    assert any("classes without an AP on this data not ranked" in line for line in lines)

    assert evaluate(setup, "--show", "0") == 0
    assert "classes by AP" not in capsys.readouterr().out


def test_train_counts_from_data_or_unknown(setup, tmp_path, capsys):
    out_csv, out_json = tmp_path / "n.csv", tmp_path / "n.json"
    rc = evaluate(
        setup, "--per-class-csv", str(out_csv), "--json", str(out_json), ckpt="ckpt_nocounts"
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert f"best {len(USED)} classes" in text  # only the classes with an AP are ranked
    with out_csv.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == C and all(r["train_examples"] == "" for r in table)
    doc = json.loads(out_json.read_text())
    assert doc["train_counts_from"] is None
    assert all(r["train_examples"] is None for r in doc["per_class"])

    # --train-data wins over the checkpoint's counts
    rc = evaluate(setup, "--train-data", str(setup["train_shard"]), "--json", str(out_json))
    assert rc == 0
    capsys.readouterr()
    want = PackedAudioSet.load(setup["train_shard"], progress=False).label_counts().tolist()
    doc = json.loads(out_json.read_text())
    assert doc["train_counts_from"] == "--train-data"
    assert [r["train_examples"] for r in doc["per_class"]] == want


def test_errors_name_the_problem(setup, tmp_path, capsys):
    png = tmp_path / "p.png"
    assert evaluate(setup, "--plot", str(png), ckpt="ckpt_nocounts") == 2
    err = capsys.readouterr().err
    assert "--plot needs the number of training examples" in err and "--train-data" in err
    assert "train_class_counts" in err and not png.exists()

    assert evaluate(setup, "--plot", str(tmp_path / "p.jpg")) == 2
    assert "name a .png file" in capsys.readouterr().err
    assert evaluate(setup, "--show", "-1") == 2
    assert "--show must be >= 0" in capsys.readouterr().err
    assert evaluate(setup, "--train-data", str(tmp_path / "missing")) == 2
    assert "--train-data" in capsys.readouterr().err

    bad = save_checkpoint(
        tmp_path / "bad", build_head("logistic"), extra={"train_class_counts": [1, 2, 3]}
    )
    assert evaluate({**setup, "bad": bad}, ckpt="bad") == 2
    err = capsys.readouterr().err
    assert "train_class_counts" in err and "3 class counts for a 527-class head" in err


def test_missing_matplotlib_names_the_extra(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(PlotUnavailableError, match=r"pip install 'audiorep\[plot\]'"):
        require_matplotlib()
    assert evaluate(setup, "--plot", str(tmp_path / "p.png")) == 2
    captured = capsys.readouterr()
    assert "pip install 'audiorep[plot]'" in captured.err
    assert "checkpoint:" not in captured.out  # refused before the evaluation pass


def test_plot_png_is_written_and_drawn(setup, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (audiorep[plot])")
    image = pytest.importorskip("PIL.Image", reason="reading the PNG back needs Pillow")
    png = tmp_path / "sub" / "ap.png"
    assert evaluate(setup, "--plot", str(png)) == 0
    assert f"per-class AP plot: {png}" in capsys.readouterr().out
    with image.open(png) as im:
        assert im.format == "PNG" and im.size == (1200, 700)
        pixels = np.asarray(im.convert("RGB"), dtype=np.int64)
    not_white = (pixels < 250).any(axis=2)
    assert not_white.mean() > 0.02  # axes, text, dots and curves: far from blank
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # several colours, antialiased
    # the dots' colour (#3b75af, alpha-blended on white) is present
    blue = (pixels[..., 2] > pixels[..., 0] + 40) & (pixels[..., 2] > 120)
    assert blue.sum() > 50


# ------------------------------------------------------------------------------------------
# library


def test_evaluate_classifier_per_class_arrays(setup):
    from audiorep.heads.training import load_head

    model, _ = load_head(setup["ckpt"])
    loader = PackedAudioSet.load(setup["shard"], progress=False).loader(16)
    plain = evaluate_classifier(model, loader)
    assert not {"ap", "auc", "num_positives", "yt8m_aps"} & set(plain)
    res = evaluate_classifier(model, loader, per_class=True)
    for key in ("ap", "auc", "num_positives", "yt8m_aps"):
        assert res[key].shape == (C,)
    np.testing.assert_array_equal(res["num_positives"], setup["labels"].sum(axis=0))
    ap = average_precision_per_class(setup["pred"], setup["labels"])
    assert np.array_equal(np.isnan(res["ap"]), np.isnan(ap))
    assert np.nanmax(np.abs(res["ap"] - ap)) <= AP_TOL


def _row(i: int, ap: float, train: int | None = 10) -> ClassRow:
    return ClassRow(i, f"/m/{i}", f"c{i}", ap, 0.5, 3, train)


def test_table_ranking_and_formatting():
    rows = [_row(0, 0.5), _row(1, math.nan), _row(2, 0.9), _row(3, 0.5), _row(4, 0.1)]
    best, worst = best_and_worst(rows, 2)
    assert [r.index for r in best] == [2, 0]  # equal APs in class order
    assert [r.index for r in worst] == [4, 0]
    best, worst = best_and_worst(rows, 10)
    assert len(best) == len(worst) == 4  # the NaN class is not ranked
    assert format_best_worst(rows, 0) == []
    lines = format_best_worst(rows, 1)
    assert lines[0] == "best 1 classes by AP (1 classes without an AP on this data not ranked):"
    assert lines[2].split() == ["1", "0.9000", "0.5000", "10", "3", "c2", "(/m/2)"]
    assert format_best_worst([_row(0, 0.2, None)], 1)[2].split()[3] == "-"
    assert _row(5, math.nan).to_dict()["ap"] is None

    names, mids = class_labels(5)
    assert names == [f"class {i}" for i in range(5)] and mids == [""] * 5
    table = per_class_table([0.1] * 5, [0.6] * 5, [2.0] * 5)
    assert table[3].label == "class 3" and table[3].train_examples is None
    assert per_class_table([0.1] * C, [0.6] * C, [1] * C)[0].label == "Speech (/m/09x0r)"
    with pytest.raises(ValueError, match="auc: expected 5 values"):
        per_class_table([0.1] * 5, [0.6] * 4, [2.0] * 5)


def test_train_count_validation():
    assert check_train_counts([0, 3, 7], 3, "x").tolist() == [0, 3, 7]
    cases = [
        ([1, 2], "2 class counts for a 3-class head"),
        ([1, -2, 3], "non-negative integers"),
        ([1, 2.5, 3], "non-negative integers"),
        (["a", 1, 2], "not a list"),
    ]
    for bad, msg in cases:
        with pytest.raises(ValueError, match=f"what: .*{msg}"):
            check_train_counts(bad, 3, "what")
    assert train_counts_from_state({}, 3) is None
    with pytest.raises(ValueError, match="'train_class_counts'"):
        train_counts_from_state({"train_class_counts": [1]}, 3)


def test_binned_ap_by_hand():
    # counts 1..1000 over 3 log bins [1, 10), [10, 100), [100, 1000]: 3, 3 and 4 classes
    # (no count on an inner edge, where rounding of log() could pick either side)
    x = np.array([1, 2, 5, 12, 20, 50, 120, 200, 500, 1000], dtype=np.float64)
    y = np.array([0.1, 0.2, 0.6, 0.3, 0.3, 0.9, 0.5, 0.6, 0.7, 1.0])
    bx, med, mean = binned_ap(x, y, bins=3)
    assert np.allclose(bx, [10 ** (1 / 3), 12_000 ** (1 / 3), 1.2e10 ** (1 / 4)])
    assert np.allclose(med, [0.2, 0.3, 0.65]) and np.allclose(mean, [0.3, 0.5, 0.7])
    bx, med, _ = binned_ap(x, y, bins=3, min_count=4)  # the two 3-class bins are dropped
    assert len(bx) == 1 and np.isclose(med[0], 0.65)
    bx, med, _ = binned_ap(np.full(4, 60.0), np.array([0.1, 0.2, 0.3, 0.4]))
    assert np.allclose(bx, [60.0]) and np.allclose(med, [0.25])
