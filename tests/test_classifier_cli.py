"""``audiorep train-classifier`` / ``evaluate-classifier`` / ``tag`` end to end.

Data: the two real AudioSet shards of ``tests/fixtures/yt8m/audioset`` (8 bal_train and 6 eval
segments; README there) and synthetic audio written to ``tmp_path``. Heads are shrunk with
``--set`` (a 64-cluster DBoF, a 16-cell LSTM) so that everything runs in seconds.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from audiorep.cli import main
from audiorep.cli.classifier import RANDOM_WEIGHTS_WARNING
from audiorep.data import AudioSetDataset, collate_audioset
from audiorep.data.packed import PackedAudioSet
from audiorep.features.postprocess import dequantize
from audiorep.heads.tagging import classify_quantized, load_classifier, top_classes
from audiorep.heads.training import evaluate_classifier

FIX = Path(__file__).parent / "fixtures" / "yt8m" / "audioset"
TRAIN = FIX / "bal_train"
EVAL = FIX / "eval"
TINY_DBOF = ["--set", "cluster_size=64", "--set", "hidden_size=32"]
LINE = re.compile(
    r"^training step (\d+) \| Loss: [\d.]+ Examples/sec: [\d.]+"
    r"( \| Hit@1: [\d.]+ PERR: [\d.]+ GAP: [\d.]+)?$"
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def train(out: Path, *extra: str, model: str = "dbof") -> int:
    args = ["train-classifier", "--model", model, "--train", str(TRAIN), "--out", str(out)]
    args += ["--batch-size", "3", "-q", *extra]
    if model == "dbof":
        args += TINY_DBOF
    return main(args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny DBoF trained for 6 steps (shared by the evaluate and tag tests)."""
    out = tmp_path_factory.mktemp("ckpt")
    assert train(out, "--steps", "6", "--log-every", "0") == 0
    return out


# ------------------------------------------------------------------------------------------
# data


def test_packed_batches_equal_the_dataset_collate():
    packed = PackedAudioSet.load(TRAIN, progress=False)
    ds = AudioSetDataset(TRAIN, use_index_cache=False)
    assert len(packed) == len(ds) == 8
    idx = torch.tensor([5, 0, 4, 7])  # includes the 1- and 9-frame segments
    got = packed.batch(idx)
    ref = collate_audioset([ds[i] for i in idx.tolist()])
    assert got["video_id"] == ref["video_id"]
    assert torch.equal(got["num_frames"], ref["num_frames"])
    assert torch.equal(got["labels"], ref["labels"])
    assert torch.equal(got["embeddings"], ref["embeddings"])  # bitwise, zeros after padding
    assert packed.label_counts().sum() == ref["labels"].sum() + sum(
        ds[i]["labels"].sum() for i in range(8) if i not in idx.tolist()
    )


def test_loader_order_follows_the_global_torch_rng():
    packed = PackedAudioSet.load(TRAIN, progress=False)
    loader = packed.loader(3, shuffle=True)
    assert len(loader) == 3
    torch.manual_seed(1)
    a = [v for b in loader for v in b["video_id"]]
    torch.manual_seed(1)
    b = [v for b in loader for v in b["video_id"]]
    assert a == b and sorted(a) == sorted(packed.video_ids)
    assert [v for b in packed.loader(5) for v in b["video_id"]] == packed.video_ids


# ------------------------------------------------------------------------------------------
# train-classifier


def test_train_logs_checkpoints_and_resumes_exactly(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train(a, "--steps", "5", "--log-every", "1") == 0
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("training step")]
    assert [int(LINE.match(x).group(1)) for x in lines] == [1, 2, 3, 4, 5]
    ckpt = a / "ckpt-00000005"
    assert {p.name for p in ckpt.iterdir()} == {
        "model.safetensors",
        "optimizer.safetensors",
        "state.json",
    }
    state = json.loads((ckpt / "state.json").read_text())
    assert state["model"] == "dbof" and state["config"]["cluster_size"] == 64
    assert state["train_config"]["base_learning_rate"] == 0.01  # YT8M default

    # resumes at step 5 (mid-epoch: 3 batches/epoch)
    assert train(a, "--steps", "11", "--log-every", "1") == 0
    out = capsys.readouterr().out
    assert "restored" in out and "this run: 6 steps" in out
    assert "Hit@1:" in [x for x in out.splitlines() if x.startswith("training step 10 ")][0]
    assert train(b, "--steps", "11") == 0  # uninterrupted
    wa = load_file(str(a / "ckpt-00000011" / "model.safetensors"))
    wb = load_file(str(b / "ckpt-00000011" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wb)


def test_train_with_eval_prints_final_metrics_and_json(tmp_path, capsys):
    summary = tmp_path / "run.json"
    rc = train(tmp_path / "m", "--epochs", "2", "--eval", str(EVAL), "--json", str(summary),
               model="moe")  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "final evaluation" in out
    for name in ("Hit@1:", "PERR:", "GAP@20:", "YT8M MAP@20:", "mAP:", "mAUC:", "d':"):
        assert name in out
    s = json.loads(summary.read_text())
    assert s["step"] == 6 and s["epochs_completed"] == 2 and s["examples_seen"] == 16
    assert s["eval"]["num_examples"] == 6 and 0 <= s["eval"]["map"] <= 1
    assert s["examples_per_second"] > 0


def test_no_resume_starts_a_new_model(tmp_path, capsys):
    out = tmp_path / "r"
    assert train(out, "--steps", "4", "--log-every", "0") == 0
    assert train(out, "--steps", "2", "--no-resume", "--log-every", "0") == 0
    assert sorted(p.name for p in out.iterdir()) == ["ckpt-00000002", "selected"]
    assert [p.name for p in (out / "selected").iterdir()] == ["ckpt-00000002"]
    assert "removed 2 checkpoint folder" in capsys.readouterr().out  # ckpt-4 and selected/


def test_train_errors_name_the_problem(tmp_path, capsys):
    assert train(tmp_path / "x", "--steps", "1", "--train", str(tmp_path / "nope")) == 2
    assert "nope" in capsys.readouterr().err
    # a checkpoint of another head in --out
    assert train(tmp_path / "y", "--steps", "1", "--log-every", "0") == 0
    assert train(tmp_path / "y", "--steps", "2", model="frame_logistic") == 2
    err = capsys.readouterr().err
    assert "dbof" in err and "frame_logistic" in err
    # a truncated shard: the message names the file and the byte offset
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (TRAIN / "Av.tfrecord").read_bytes()
    (bad / "Av.tfrecord").write_bytes(data[:-100])
    assert train(tmp_path / "z", "--steps", "1", "--train", str(bad)) == 2
    err = capsys.readouterr().err
    assert "Av.tfrecord" in err and re.search(r"\d+", err)
    assert train(tmp_path / "w", "--steps", "1", "--set", "nonsense") == 2
    assert "KEY=VALUE" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# evaluate-classifier


def test_evaluate_equals_the_python_api(trained, tmp_path, capsys):
    out_json = tmp_path / "m.json"
    rc = main(["evaluate-classifier", "--checkpoint", str(trained), "--data", str(EVAL),
               "--json", str(out_json), "-q", "--batch-size", "4"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    got = json.loads(out_json.read_text())["metrics"]
    # reference: the library loop over the map-style dataset and its own collate
    model, _, _ = load_classifier(trained)
    ds = AudioSetDataset(EVAL, use_index_cache=False)
    loader = [collate_audioset([ds[j] for j in range(i, min(i + 4, len(ds)))])
              for i in range(0, len(ds), 4)]  # fmt: skip
    ref = evaluate_classifier(model, loader)
    for key in ("avg_hit_at_one", "avg_perr", "gap", "yt8m_map", "map", "mauc", "d_prime",
                "avg_loss", "num_examples"):  # fmt: skip
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key
    assert f"mAP:         {ref['map']:.4f}" in text
    assert f"d':          {ref['d_prime']:.3f}" in text
    assert "epoch/eval number 6 |" in text  # eval.py's end-of-pass line


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    assert main(["evaluate-classifier", "--checkpoint", str(tmp_path), "--data", str(EVAL)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# tag


def test_classify_quantized_windows_and_frames(trained):
    model, _, _ = load_classifier(trained)
    q = torch.randint(
        0, 256, (23, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    scores, frames, w = classify_quantized(model, q, frames=True)
    assert w == 3 and scores.shape == (527,) and frames.shape == (23, 527)
    x = dequantize(q)
    win = torch.zeros(3, 10, 128)
    win.view(30, 128)[:23] = x
    with torch.no_grad():
        p = model(win, torch.tensor([10, 10, 3]))["predictions"]
        one = model(x[4:5, None], torch.tensor([1]))["predictions"][0]
    np.testing.assert_allclose(scores, p.max(0).values.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(frames[4], one.numpy(), rtol=0, atol=1e-6)
    mean, _, _ = classify_quantized(model, q, pool="mean")
    ref = (p * torch.tensor([10.0, 10.0, 3.0])[:, None]).sum(0) / 23
    np.testing.assert_allclose(mean, ref.numpy(), rtol=0, atol=1e-6)


def test_top_classes_order_and_ties():
    s = np.array([0.1, 0.5, 0.5, 0.9])
    assert top_classes(s, 3, ["a", "b", "c", "d"]) == [(3, "d", 0.9), (1, "b", 0.5), (2, "c", 0.5)]


def _write_audio(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    t = np.arange(int(16000 * 12.5)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    noise = 0.1 * rng.standard_normal(int(22050 * 3.2))
    paths = [folder / "tone_12s.wav", folder / "noise_3s.flac"]
    sf.write(paths[0], tone.astype(np.float32), 16000)
    sf.write(paths[1], noise.astype(np.float32), 22050)
    return paths


def test_tag_end_to_end_with_random_vggish(trained, tmp_path, capsys):
    paths = _write_audio(tmp_path)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    out_json = tmp_path / "tags.json"
    rc = main(["tag", *map(str, paths), str(broken), "--classifier", str(trained), "--weights",
               "random", "--top-k", "4", "--frames", "--json", str(out_json), "-q"])  # fmt: skip
    assert rc == 1  # one file failed; the others are tagged
    captured = capsys.readouterr()
    assert RANDOM_WEIGHTS_WARNING in captured.out and "MEANINGLESS" in captured.out
    assert "broken.wav" in captured.err
    res = json.loads(out_json.read_text())
    assert res["meaningful"] is False and res["model"] == "dbof"
    assert [f["path"] for f in res["failures"]] == [str(broken)]

    # class names come from the CSV shipped in the package
    text = files("audiorep.data").joinpath("class_labels_indices.csv").read_text("utf-8")
    rows = list(csv.reader(text.splitlines()))[1:]
    csv_names = {int(i): (mid, name) for i, mid, name in rows}
    tone, noise = res["files"]
    assert tone["path"] == str(paths[0]) and noise["path"] == str(paths[1])
    assert tone["num_frames"] == 13 and tone["num_windows"] == 2  # 12.5 s -> 13 examples
    assert noise["num_frames"] == 3 and noise["num_windows"] == 1
    for f in (tone, noise):
        assert len(f["top"]) == 4 and len(f["frames"]) == f["num_frames"]
        scores = [e["score"] for e in f["top"]]
        assert scores == sorted(scores, reverse=True)
        for e in f["top"] + [e for fr in f["frames"] for e in fr["top"]]:
            assert (e["mid"], e["name"]) == csv_names[e["index"]]
        assert [fr["start"] for fr in f["frames"]] == pytest.approx(
            [0.96 * k for k in range(f["num_frames"])]
        )
        # the file score of a class is the max over windows, at least its best frame-window
        assert all(0.0 <= e["score"] <= 1.0 for e in f["top"])
    assert f"{tone['top'][0]['score']:.4f}  {tone['top'][0]['name']}" in captured.out


def test_tag_input_errors(trained, tmp_path, capsys):
    missing = tmp_path / "missing.wav"
    assert main(["tag", str(missing), "--classifier", str(trained), "--weights", "random"]) == 2
    assert "missing.wav" in capsys.readouterr().err
    audio = _write_audio(tmp_path)[1]
    assert main(["tag", str(audio), "--classifier", str(tmp_path / "no_ckpt")]) == 2
    assert "no_ckpt" in capsys.readouterr().err
    empty = tmp_path / "empty_ckpt"
    empty.mkdir()
    assert main(["tag", str(audio), "--classifier", str(empty), "--weights", "random"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_checkpoint_folder_or_training_folder(trained):
    m1, s1, p1 = load_classifier(trained)
    m2, s2, p2 = load_classifier(p1)
    assert p1 == p2 and s1 == s2 and not m1.training
    copy = trained.parent / "copy_ckpt"
    shutil.copytree(p1, copy)
    _, s3, _ = load_classifier(copy)
    # a training folder resolves to the weights the run selected (here: its final ones)
    assert p1.parent.name == "selected" and s3["step"] == 6
    assert s3["selection"]["step"] == 6 and s3["selection"]["valid_metrics"] is None
