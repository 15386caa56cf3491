"""Training SpecVQGAN's judges: data layouts, transforms, the loop, resume, and the shipped judge.

Small synthetic mels (80 x 100, cropped to 96 frames) keep every training test to seconds; the
shipped tiny judge (tests/fixtures/specvqgan_judge/) is checked on its stored held-out clips.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from audiorep.convert.specvqgan import load_into
from audiorep.frontends.specvqgan import center_crop, mel_spectrogram, normalize_for_judges
from audiorep.models.melception import Melception
from audiorep.models.vggishish import VGGishish
from audiorep.specvqgan.classifier_data import (
    Clip,
    ClipDataError,
    ClipTable,
    JudgeMelDataset,
    assign_splits,
    crop_offset,
    csv_clips,
    detect_layout,
    epoch_batches,
    folder_clips,
    load_clip_table,
    read_mel,
    vas_clips,
    vggsound_clips,
)
from audiorep.specvqgan.classifier_training import (
    JudgeTrainConfig,
    build_judge,
    classification_metrics,
    judge_logits,
    load_trained_judge,
    train_judge,
)
from audiorep.specvqgan.mels import load_clip

ROOT = Path(__file__).resolve().parents[1]
JUDGE = ROOT / "tests" / "fixtures" / "specvqgan_judge"
TINY = {"conv_layers": (4, "MP", 8, "MP", 8), "hidden": 16, "crop_frames": 96}


def _mel(rng: np.random.Generator, band: int, frames: int = 100) -> np.ndarray:
    """A [0, 1] mel whose loud band (of 4) tells its class."""
    m = rng.random((80, frames)).astype(np.float32) * 0.3
    m[band * 20 : (band + 1) * 20] += 0.6
    return m


def _class_tree(root: Path, classes=("a", "b", "c"), per_class: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for k, cls in enumerate(classes):
        d = root / cls / "melspec_10s_22050hz"
        d.mkdir(parents=True)
        for i in range(per_class):
            np.save(d / f"video_{i:05d}_mel.npy", _mel(rng, k))
    return root


# ------------------------------------------------------------------------------------ layouts


def test_folder_layout_split_is_fixed_and_seeded(tmp_path):
    root = _class_tree(tmp_path / "data", per_class=10)
    (root / "a" / "notes.txt").write_text("ignored")
    t1, t2 = folder_clips(root), folder_clips(root)
    assert t1.classes == ("a", "b", "c") and len(t1.clips) == 30
    assert [(c.clip_id, c.split) for c in t1.clips] == [(c.clip_id, c.split) for c in t2.clips]
    assert t1.counts() == {
        s: {"a": n, "b": n, "c": n} for s, n in (("train", 8), ("valid", 1), ("test", 1))
    }
    other = folder_clips(root, seed=7)
    assert [c.split for c in other.clips] != [c.split for c in t1.clips]
    # listing order does not matter
    shuffled = assign_splits([Clip(c.path, c.label, None, c.clip_id) for c in t1.clips[::-1]])
    assert {c.clip_id: c.split for c in shuffled} == {c.clip_id: c.split for c in t1.clips}
    assert detect_layout(root) == "vas"
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("no clips")
    with pytest.raises(ClipDataError, match=r"empty: no audio files in <class>/ folders"):
        folder_clips(tmp_path / "empty")


def test_audio_files_become_the_authors_mel_on_the_fly(tmp_path):
    rng = np.random.default_rng(1)
    for cls in ("hum", "noise"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            t = np.arange(11025) / 22050
            x = np.sin(2 * np.pi * 440 * t) if cls == "hum" else rng.standard_normal(11025) * 0.3
            sf.write(tmp_path / cls / f"{i}.wav", 0.5 * x, 22050, subtype="PCM_16")
    table = load_clip_table(tmp_path)  # auto: no mels -> audio
    assert table.source.startswith("folder") and len(table.clips) == 6
    ds = JudgeMelDataset(table.clips, table.classes)
    item = ds[0]
    assert item["input"].shape == (80, 848) and item["input"].dtype == torch.float32
    ref = mel_spectrogram(load_clip(table.clips[0].path)).to(torch.float32)
    assert torch.equal(item["input"], normalize_for_judges(center_crop(ref)))
    assert int(item["target"]) == table.target(table.clips[0].label)


def test_csv_layout(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "m").mkdir()
    rows = [["path", "label", "split"]]
    for i in range(9):
        np.save(tmp_path / "m" / f"{i}_mel.npy", _mel(rng, i % 3))
        split = ["train", "val", ""][i // 3] if i < 6 else "test"
        rows.append([f"m/{i}_mel.npy", f"class{i % 3}", split])
    path = tmp_path / "list.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    table = csv_clips(path)
    assert table.classes == ("class0", "class1", "class2")
    assert [c.split for c in table.clips[:3]] == ["train"] * 3
    assert [c.split for c in table.clips[3:6]] == ["valid"] * 3  # "val" accepted
    assert all(c.split == "test" for c in table.clips[6:])
    assert table.clips[0].path == tmp_path / "m" / "0_mel.npy"
    path.write_text("m/0_mel.npy,class0,holdout\n")
    with pytest.raises(ClipDataError, match=r"list.csv: row 1: unknown split 'holdout'"):
        csv_clips(path)
    path.write_text("m/0_mel.npy\n")
    with pytest.raises(ClipDataError, match=r"list.csv: row 1: expected 'path,label"):
        csv_clips(path)
    path.write_text("path,label\nm/0_mel.npy,class0\nm/9_mel.npy,class1\n")
    with pytest.raises(ClipDataError, match=r"list.csv: row 3: missing .*9_mel.npy"):
        csv_clips(path)


def test_vas_layout_with_split_files(tmp_path):
    root = _class_tree(tmp_path / "vas", per_class=5)
    (root / "vas_train.txt").write_text("a/video_00000\na/video_00001\nb/video_00000\n")
    (root / "vas_valid.txt").write_text("a/video_00002\nb/video_00001\n")
    (root / "vas_test.txt").write_text("c/video_00004\n")
    table = vas_clips(root)
    assert [c.clip_id for c in table.split("train")] == [
        "a/video_00000",
        "a/video_00001",
        "b/video_00000",
    ]
    assert table.classes == ("a", "b", "c") and len(table.split("test")) == 1
    assert table.split("valid")[0].path == root / "a/melspec_10s_22050hz/video_00002_mel.npy"
    (root / "vas_test.txt").write_text("c/video_00099\n")
    with pytest.raises(ClipDataError, match=r"vas_test.txt: row 1: c/video_00099: missing"):
        vas_clips(root)
    for f in root.glob("vas_*.txt"):
        f.unlink()
    with pytest.raises(ClipDataError, match="authors' VAS rule"):  # 64 valid clips of 5
        vas_clips(root)
    table = vas_clips(root, valid_counts={"a": 1, "b": 1, "c": 2})  # the last ones, sorted
    assert [c.clip_id for c in table.split("valid")] == [
        "a/video_00004",
        "b/video_00004",
        "c/video_00003",
        "c/video_00004",
    ]


def test_vggsound_layout(tmp_path):
    rng = np.random.default_rng(3)
    mels = tmp_path / "melspec_10s_22050hz"
    mels.mkdir()
    meta = []
    for i in range(12):
        vid = f"vid{i:08d}"  # 11 characters
        label, split = (
            ("dog barking", "cat, purring", "unused")[i % 3],
            "test" if i < 3 else "train",
        )
        meta.append([vid, "30", label, split])
        if label != "unused":
            np.save(mels / f"{vid}_30000_40000_mel.npy", _mel(rng, i % 3))
    with open(tmp_path / "vggsound.csv", "w", newline="") as f:
        csv.writer(f).writerows(meta)
    table = load_clip_table(tmp_path)  # auto-detected, split by the authors' rule
    assert table.source.startswith("vggsound")
    assert table.classes == ("cat, purring", "dog barking", "unused")  # all CSV labels
    assert {c.clip_id[:11] for c in table.split("test")} == {"vid00000000", "vid00000001"}
    assert table.counts()["valid"] == {"cat, purring": 1, "dog barking": 1}  # as test's counts
    for s in ("train", "valid", "test"):
        ids = [c.clip_id for c in table.split(s)]
        (tmp_path / f"vggsound_{s}.txt").write_text("".join(i + "\n" for i in ids))
    again = vggsound_clips(tmp_path / "vggsound.csv", mels)
    assert [(c.clip_id, c.split) for c in again.clips] == [
        (c.clip_id, c.split) for c in table.clips
    ]


def test_bad_mels_are_named(tmp_path):
    bad = {
        "shape": np.zeros((64, 900), np.float32),
        "short": np.zeros((80, 500), np.float32),
        "nan": np.full((80, 860), np.nan, np.float32),
        "ints": np.zeros((80, 860), np.int16),
    }
    for name, arr in bad.items():
        np.save(tmp_path / f"{name}_mel.npy", arr)
        with pytest.raises(ClipDataError, match=f"{name}_mel.npy"):
            read_mel(tmp_path / f"{name}_mel.npy")
    (tmp_path / "junk_mel.npy").write_bytes(b"not numpy")
    with pytest.raises(ClipDataError, match="junk_mel.npy: unreadable"):
        read_mel(tmp_path / "junk_mel.npy")


def test_crops_batches_and_transforms(tmp_path):
    root = _class_tree(tmp_path / "d", per_class=4)
    table = folder_clips(root)
    centre = JudgeMelDataset(table.clips, table.classes, crop_frames=96)
    spec = np.load(table.clips[0].path)
    want = normalize_for_judges(torch.from_numpy(spec[:, 2:98]))  # (100 - 96) // 2 = 2
    assert torch.equal(centre[0]["input"], want)
    rand = JudgeMelDataset(table.clips, table.classes, crop_frames=96, random_crop=True, seed=5)
    offsets = {crop_offset(100, 96, random_crop=True, seed=5, epoch=e, index=0) for e in range(20)}
    assert offsets <= set(range(5)) and len(offsets) > 1
    rand.set_epoch(3)
    start = crop_offset(100, 96, random_crop=True, seed=5, epoch=3, index=0)
    assert torch.equal(
        rand[0]["input"], normalize_for_judges(torch.from_numpy(spec[:, start : start + 96]))
    )
    b = epoch_batches(10, 3, epoch=1, seed=0)
    assert [len(x) for x in b] == [3, 3, 3] and b == epoch_batches(10, 3, epoch=1, seed=0)
    assert b != epoch_batches(10, 3, epoch=2, seed=0)
    r0, r1 = (epoch_batches(10, 2, epoch=0, rank=r, world_size=2) for r in (0, 1))
    assert len(r0) == len(r1) == 2 and not set(sum(r0, [])) & set(sum(r1, []))
    assert epoch_batches(5, 2, shuffle=False, drop_last=False) == [[0, 1], [2, 3], [4]]


def test_classification_metrics():
    logits = torch.tensor(
        [[3.0, 1, 0, 0, 0, 0], [0.0, 1, 2, 0, 0, 0], [0.0, 0, 0, 0, 1, 5], [1.0, 0, 0, 0, 0, 0]]
    )
    targets = torch.tensor([0, 1, 5, 3])
    m = classification_metrics(logits, targets)
    assert m["accuracy_1"] == 0.5  # rows 0 and 2
    assert m["accuracy_5"] == 1.0  # row 3: target 3 is tied at 0 with index order 1..5 -> kept
    assert m["num_classes_scored"] == 4 and 0 < m["mAP"] <= 1 and 0.5 < m["mROCAUC"] <= 1
    assert classification_metrics(logits, targets, topk=(1, 2))["accuracy_2"] == 0.75


# ----------------------------------------------------------------------------------- training


def _table(tmp_path: Path) -> ClipTable:
    root = _class_tree(tmp_path / "data", per_class=8)
    return folder_clips(root, fractions=(0.5, 0.25, 0.25))


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path):
    table = _table(tmp_path)
    cfg = JudgeTrainConfig(batch_size=4, num_epochs=3, random_crop=True, **TINY)
    lines: list[str] = []
    full = train_judge(
        table, tmp_path / "full", config=cfg, device="cpu", progress=False, log=lines.append
    )
    assert full.step == 9 and full.epochs == 3 and not full.interrupted  # 12 train clips / 4
    assert any(line.startswith("epoch 2: train loss") for line in lines)
    cut = train_judge(
        table,
        tmp_path / "cut",
        config=cfg,
        device="cpu",
        progress=False,
        log=lines.append,
        max_steps=4,
    )
    assert cut.interrupted and cut.step == 4 and cut.test_metrics is None  # mid-epoch 1
    done = train_judge(
        table, tmp_path / "cut", config=cfg, device="cpu", progress=False, log=lines.append
    )
    assert done.step == 9 and not done.interrupted
    for name in ("checkpoints/ckpt-00000009/model.safetensors", "best.safetensors"):
        a, b = load_file(tmp_path / "full" / name), load_file(tmp_path / "cut" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in full.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in done.history]
    assert done.test_metrics == full.test_metrics
    for key in ("loss", "accuracy_1", "accuracy_5", "mAP", "mROCAUC", "dprime"):
        assert key in full.test_metrics and key in full.history[-1]["valid"]

    # The best model in the authors' .pt layout loads into the judge model; ours too.
    ckpt = torch.load(full.best_checkpoint, weights_only=True)
    assert set(ckpt) == {"loss", "metrics", "epoch", "optimizer", "model"}
    assert ckpt["epoch"] == full.best_epoch and "accuracy_1" in ckpt["metrics"]
    model = load_into(
        VGGishish(TINY["conv_layers"], num_classes=3, hidden=16, match_last_conv=True),
        full.best_checkpoint,
    )
    judge, info = load_trained_judge(tmp_path / "full")
    assert info["classes"] == ["a", "b", "c"] and info["test"]["accuracy_1"] >= 0
    x = torch.randn(2, 80, 96)
    assert torch.equal(judge_logits(judge, x), model(x))

    other = JudgeTrainConfig(batch_size=2, num_epochs=1, **TINY)
    with pytest.raises(ValueError, match="another run"):
        train_judge(
            table, tmp_path / "full", config=other, device="cpu", progress=False, log=lines.append
        )
    fresh = train_judge(
        table,
        tmp_path / "full",
        config=other,
        device="cpu",
        progress=False,
        log=lines.append,
        resume=False,
    )
    assert fresh.step == 6 and fresh.epochs == 1  # the old run's checkpoints are gone
    assert [p.name for p in (tmp_path / "full" / "checkpoints").iterdir()] == ["ckpt-00000006"]


def test_early_stopping_uses_the_validation_loss(tmp_path):
    table = _table(tmp_path)
    cfg = JudgeTrainConfig(batch_size=4, num_epochs=50, patience=1, learning_rate=0.05, **TINY)
    res = train_judge(
        table,
        tmp_path / "o",
        config=cfg,
        device="cpu",
        progress=False,
        log=lambda s: None,
        evaluate_test=False,
    )
    assert res.stopped_early and res.epochs < 50 and res.test_metrics is None
    losses = [h["valid"]["loss"] for h in res.history]
    assert res.best_epoch == int(np.argmin(losses)) and len(losses) == res.best_epoch + 2


def test_melception_trains_a_step_and_leaves_its_aux_head_untrained(tmp_path):
    rng = np.random.default_rng(4)
    clips = []
    for i, (label, split) in enumerate(
        [("x", "train"), ("y", "train"), ("x", "valid"), ("y", "valid")]
    ):
        p = tmp_path / f"{i}_mel.npy"
        np.save(p, _mel(rng, i % 2, frames=96))
        clips.append(Clip(p, label, split, str(i)))
    cfg = JudgeTrainConfig.for_model("melception", batch_size=2, crop_frames=96, num_epochs=1)
    authors = JudgeTrainConfig.for_model("melception")
    assert (authors.batch_size, authors.weight_decay, authors.learning_rate) == (8, 0.0, 3e-4)
    res = train_judge(
        ClipTable(clips),
        tmp_path / "o",
        config=cfg,
        device="cpu",
        progress=False,
        log=lambda s: None,
    )
    assert res.step == 1 and isinstance(res.model, Melception)
    assert np.isfinite(res.history[0]["train"]["loss"])
    torch.manual_seed(cfg.seed)
    fresh = build_judge(cfg, 2).state_dict()
    trained = res.model.state_dict()
    # the authors' recipe never trains the aux head (its loss term is overwritten), but runs it:
    assert torch.equal(trained["AuxLogits.fc.weight"], fresh["AuxLogits.fc.weight"])
    assert not torch.equal(
        trained["AuxLogits.conv0.bn.running_mean"], fresh["AuxLogits.conv0.bn.running_mean"]
    )
    assert not torch.equal(trained["fc.weight"], fresh["fc.weight"])


def test_cli_train_judge(tmp_path, capsys):
    from audiorep.cli import specvqgan_train

    root = _class_tree(tmp_path / "data", per_class=4)
    parser = argparse.ArgumentParser(prog="audiorep specvqgan")
    specvqgan_train.register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(
        [
            "train-judge",
            str(root),
            str(tmp_path / "o"),
            "--layout",
            "folder",
            "--conv-layers",
            "4,MP,8",
            "--hidden",
            "8",
            "--crop-frames",
            "96",
            "--batch-size",
            "2",
            "--epochs",
            "1",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "1 epochs, best epoch 0" in out and "test: {" in out
    assert (tmp_path / "o" / "best.pt").is_file()
    args = parser.parse_args(["train-judge", str(tmp_path / "nothing"), str(tmp_path / "o2")])
    assert args.func(args) == 2
    assert "nothing: no such file or folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------- shipped judge


def test_shipped_tiny_judge_classifies_its_held_out_clips():
    model, info = load_trained_judge(JUDGE / "judge.safetensors")
    held = np.load(JUDGE / "heldout.npz")
    mels = torch.from_numpy(held["mel_uint8"].astype(np.float32) / 255.0)  # (N, 80, 860)
    x = normalize_for_judges(center_crop(mels))
    with torch.no_grad():
        logits = judge_logits(model, x)
    labels = [info["classes"][i] for i in logits.argmax(1).tolist()]
    assert labels == [str(s) for s in held["labels"]]
    # Other kernels sum in another order (docs/testing.md): allow 1e-5 of the largest logit
    # (87), far below the smallest gap between the top two logits of a clip (2.46).
    want = torch.from_numpy(held["logits"])
    torch.testing.assert_close(logits, want, rtol=0, atol=1e-5 * float(want.abs().max()))
    assert info["recipe"]["dataset"] == "sfx10" and info["test"]["accuracy_1"] > 0.5
    assert (JUDGE / "judge.safetensors").stat().st_size < 2_000_000


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("fluidsynth", "espeak-ng"))
    or not Path("/usr/share/sounds/sf2/FluidR3_GM.sf2").is_file(),
    reason="needs the fluidsynth, fluid-soundfont-gm and espeak-ng packages "
    "(docs/specvqgan_training.md)",
)
def test_sfx_dataset_builder_small(tmp_path):
    import runpy

    tool = runpy.run_path(str(ROOT / "tools" / "build_sfx_dataset.py"))
    # Stand-ins for the golden-data recordings (tests never read that folder): noise bursts
    # and tones of the real files' names and lengths.
    stand_ins = tmp_path / "recordings"
    stand_ins.mkdir()
    rng = np.random.default_rng(0)
    lengths = {"robin": 2.7, "trumpet": 5.3, "librispeech": 15.0, "humpback": 65.0}
    for key, (files, _) in tool["RECORDINGS"].items():
        for name in files:
            t = np.arange(int(lengths[key] * 16000)) / 16000
            x = 0.3 * np.sin(2 * np.pi * 300 * t) * (rng.random(len(t)) < 0.5)
            sf.write(stand_ins / name, x.astype(np.float32), 16000, format="OGG", subtype="VORBIS")
    argv = [str(tmp_path / "sfx"), "--clips-per-class", "7", "--shared-audio", str(stand_ins)]
    assert tool["main"](argv) == 0
    table = vas_clips(tmp_path / "sfx")
    assert len(table.classes) == 10 and len(table.clips) == 70
    assert {s: sum(v.values()) for s, v in table.counts().items()} == {
        "train": 50,
        "valid": 10,
        "test": 10,
    }
    recipe = json.loads((tmp_path / "sfx" / "RECIPE.json").read_text())
    assert recipe["recipe"] == "sfx10" and recipe["version"] == 1
    mel = read_mel(table.clips[0].path)
    assert mel.shape == (80, 860) and 0 <= mel.min() and mel.max() <= 1
    same = csv_clips(tmp_path / "sfx" / "clips.csv")
    assert {c.path: (c.label, c.split) for c in same.clips} == {
        c.path: (c.label, c.split) for c in table.clips
    }
