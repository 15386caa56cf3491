"""train-classifier --recipe converge, its saved validation split, and ensemble-classifier."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audiorep.cli import main
from audiorep.data.packed import PackedAudioSet
from audiorep.data.splits import subset_of_record
from audiorep.heads.tagging import load_classifier
from test_heads_report import write_shard

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_shard(tmp_path_factory.mktemp("d") / "train" / "aa.tfrecord", seed=3).parent


def train(data: Path, out: Path, *extra: str) -> int:
    return main(["train-classifier", "--model", "mlp", "--recipe", "converge", "--train",
                 str(data), "--out", str(out), "--epochs", "3", "--batch-size", "8",
                 "--valid-fraction", "0.25", "--set", "hidden_size=16", "-q", *extra])  # fmt: skip


def test_converge_recipe_saves_split_and_selection(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert train(data, out, "--json", str(tmp_path / "run.json")) == 0
    text = capsys.readouterr().out
    assert "recipe converge" in text and "label_loss=bce_logits" in text
    assert "mixup_alpha=1.0" in text and "ema_decay=0.999" in text
    assert [ln for ln in text.splitlines() if ln.startswith("epoch ")][-1].startswith("epoch 3/3")
    split = json.loads((out / "split.json").read_text())
    assert split["fraction"] == 0.25 and split["num_train"] + split["num_valid"] == 48
    # the recorded segments rebuild the same validation set
    full = PackedAudioSet.load(data, progress=False)
    assert len(subset_of_record(full, split)) == split["num_valid"]
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["config"]["output_bias_init"] == -5.0  # the recipe's head setting
    assert summary["config"]["hidden_size"] == 16  # --set wins
    assert 1 <= summary["best_epoch"] <= 3 and len(summary["history"]) == 3
    model, state, path = load_classifier(out)
    assert path.parent.name == "selected" and state["selection"]["epoch"] == summary["best_epoch"]
    assert sum(state["train_class_counts"]) > 0
    # resuming with another split is refused, naming the file
    assert train(data, out, "--valid-seed", "1") == 2
    assert "split.json" in capsys.readouterr().err


def test_ensemble_is_chosen_on_validation(data, tmp_path, capsys):
    runs = []
    for seed in ("0", "1"):
        runs.append(tmp_path / f"r{seed}")
        assert train(data, runs[-1], "--seed", seed) == 0
    capsys.readouterr()
    out = tmp_path / "ens"
    summary = str(tmp_path / "e.json")
    rc = main(["ensemble-classifier", "--runs", *map(str, runs), "--train", str(data), "--out",
               str(out), "--eval", str(data), "--json", summary, "-q"])  # fmt: skip
    assert rc == 0
    res = json.loads((tmp_path / "e.json").read_text())
    scores = res["selection"]["valid_map"]
    assert scores == sorted(scores) and len(scores) == len(res["selection"]["members"])
    model, state, _ = load_classifier(out)
    assert model.name == "ensemble" and len(model.members) == len(scores)
    # runs validated on different splits cannot be combined
    other = tmp_path / "other"
    assert train(data, other, "--valid-seed", "5") == 0
    capsys.readouterr()
    rc = main(["ensemble-classifier", "--runs", str(runs[0]), str(other), "--train", str(data),
               "--out", str(tmp_path / "bad"), "-q"])  # fmt: skip
    assert rc == 2 and "different splits" in capsys.readouterr().err
