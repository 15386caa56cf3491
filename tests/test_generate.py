"""`audiorep generate` and the generation chain, on tiny seeded transformers over the shipped
small codec (the shipped transformer itself is checked in tests/test_transformer_training.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.cli import main
from audiorep.models.gpt import GPTConfig
from audiorep.specvqgan.codec_models import load_codec
from audiorep.specvqgan.generation import (
    Condition,
    class_from_path,
    generate,
    load_generation_models,
    sample_folder,
    sample_stem,
)
from audiorep.specvqgan.sampling import SamplingSettings, sample_tokens
from audiorep.specvqgan.transformer import CodeTransformer, TransformerSpec, save_transformer

CLASSES = ("applause", "bird", "brass")


@pytest.fixture(scope="module")
def codec():
    return load_codec("small")[0]


def _save(tmp: Path, codec, **spec_kw) -> Path:
    spec = TransformerSpec(gpt=GPTConfig(128, 270, 1, 2, 32), codec="small", **spec_kw)
    torch.manual_seed(0)
    model = CodeTransformer.build(spec, codec)
    return save_transformer(model, tmp / "transformer.safetensors")


@pytest.fixture(scope="module")
def class_model(tmp_path_factory, codec) -> Path:
    return _save(tmp_path_factory.mktemp("cls"), codec, kind="class", n_classes=3,
                 feat_depth=0, feat_sample_size=0, classes=CLASSES)  # fmt: skip


@pytest.fixture(scope="module")
def feature_model(tmp_path_factory, codec) -> Path:
    return _save(tmp_path_factory.mktemp("feat"), codec, kind="feature", feat_depth=2048,
                 feat_sample_size=5)  # fmt: skip


def test_class_generation_chain(class_model):
    models = load_generation_models(str(class_model), "griffin-lim")
    assert models.default_top_k == 64
    cond = Condition.from_class(models.transformer, "Bird")
    assert (cond.target, cond.label, cond.value.tolist()) == (1, "bird", [[1]])
    clips = generate(models, cond, SamplingSettings(top_k=64), seed=7, num_samples=2)
    assert [c.seed for c in clips] == [7, 8]
    for c in clips:
        assert c.codes.shape == (5, 53) and c.tokens.shape == (265,)
        assert c.mel.shape == (80, 848) and c.wave.shape == (848 * 256,)
        assert np.isfinite(c.wave).all()
    # sample k alone, with seed 7 + k, gives the same tokens (per-sample generators)
    again = sample_tokens(models.transformer, cond.value, SamplingSettings(top_k=64), seeds=[8])
    assert torch.equal(again[0], clips[1].tokens)
    # the mel is the codec's decoding of the tokens, mapped to (x + 1) / 2 and not clamped
    dec = models.transformer.decode(clips[0].tokens[None])[0, 0]
    assert np.allclose(clips[0].mel, ((dec + 1) / 2).numpy(), atol=0)
    with pytest.raises(ValueError, match="knows: applause, bird, brass"):
        Condition.from_class(models.transformer, "dog")
    assert sample_folder("out", cond) == Path("out/cls_1")
    assert sample_stem(cond, 3) == "bird_sample_3"


def test_feature_file_conditions(tmp_path, feature_model):
    models = load_generation_models(str(feature_model), "griffin-lim")
    rng = np.random.RandomState(0)
    feats = rng.rand(215, 2048).astype(np.float32)
    folder = tmp_path / "dog" / "feature_resnet50_dim2048_21.5fps"
    folder.mkdir(parents=True)
    np.save(folder / "video_00007.npy", feats)
    cond = Condition.from_features(models.transformer, folder / "video_00007.npy")
    # dataset chain: pad/trim to 215, rows 1..212, S=5 -> crop rows 35, 77, 119, 162, 204
    expected = feats[1:213][[35, 77, 119, 162, 204]].T[None]
    assert torch.equal(cond.value, torch.from_numpy(np.ascontiguousarray(expected)))
    assert class_from_path(models.transformer, folder / "video_00007.npy") == 2  # VAS "dog"
    np.save(tmp_path / "narrow.npy", feats[:, :1024])
    with pytest.raises(ValueError, match="1024 wide"):
        Condition.from_features(models.transformer, tmp_path / "narrow.npy")
    with pytest.raises(ValueError, match="conditioned on feature"):
        Condition.from_class(models.transformer, 0)


def test_cli_writes_the_authors_layout_and_a_manifest(tmp_path, class_model, capsys):
    out = tmp_path / "gen"
    args = ["generate", "--class", "brass", "applause", "-n", "2", "--seed", "3",
            "--transformer", str(class_model), "--vocoder", "griffin-lim", "-o", str(out),
            "-q"]  # fmt: skip
    assert main(args) == 0
    for target, name in ((2, "brass"), (0, "applause")):
        for k in range(2):
            stem = out / f"cls_{target}" / f"{name}_sample_{k}"
            mel = np.load(f"{stem}.npy", allow_pickle=False)
            assert mel.shape == (1, 80, 848) and mel.dtype == np.float32
            wave, sr = sf.read(f"{stem}.wav")
            assert sr == 22050 and wave.shape == (848 * 256,)
    manifest = json.loads((out / "generation.json").read_text())
    assert manifest["settings"]["top_k"] == 64
    assert [s["seed"] for s in manifest["items"][0]["samples"]] == [3, 4]
    first = np.load(out / "cls_2" / "brass_sample_0.npy")
    # same seed, same sound; --resume skips what is there
    again = ["generate", "--class", "brass", "--seed", "3", "--transformer", str(class_model),
             "--vocoder", "griffin-lim", "-o", str(tmp_path / "again"), "-q"]  # fmt: skip
    assert main(again) == 0
    alone = np.load(tmp_path / "again" / "cls_2" / "brass_sample_0.npy")
    # same tokens; decoding 1 instead of 2 clips may change the convolution kernels' summation
    # order: float32 rounding of O(1) values over ~10^3-term sums, far below 1e-4
    assert np.allclose(alone, first, atol=1e-4, rtol=0)
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    assert "already generated, skipped" in capsys.readouterr().out


def test_cli_errors_name_the_problem(tmp_path, class_model, feature_model, capsys):
    base = ["--transformer", str(class_model), "--vocoder", "griffin-lim", "-o", str(tmp_path)]
    assert main(["generate", "--class", "dog", *base, "-q"]) == 1
    assert "unknown class 'dog'" in capsys.readouterr().out
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    feat = ["--transformer", str(feature_model), "--vocoder", "griffin-lim", "-o", str(tmp_path)]
    assert main(["generate", "--features", str(bad), *feat, "-q"]) == 1
    assert str(bad) in capsys.readouterr().out
    assert main(["generate", "--class", "bird", "--transformer", str(tmp_path / "none")]) == 2
    assert "no such file" in capsys.readouterr().err


def _tiny_video(path: Path, seconds: float = 2.0, fps: int = 25) -> Path:
    av = pytest.importorskip("av", reason="PyAV not installed (pip install 'audiorep[av]')")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(int(seconds * fps)):
            img = np.full((48, 64, 3), 4 * k, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = k
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_cli_video_to_mp4(tmp_path, feature_model):
    av = pytest.importorskip("av", reason="PyAV not installed (pip install 'audiorep[av]')")
    dog = tmp_path / "videos" / "dog"
    dog.mkdir(parents=True)
    video = _tiny_video(dog / "video_00042.mp4")
    out = tmp_path / "gen"
    args = ["generate", "--video", str(video), "--transformer", str(feature_model),
            "--resnet50", "random:0", "--vocoder", "griffin-lim", "-o", str(out), "-q"]  # fmt: skip
    assert main(args) == 0
    stem = out / "cls_2" / "video_00042_sample_0"  # VAS "dog" from the folder name
    assert np.load(f"{stem}.npy").shape == (1, 80, 848)
    with av.open(f"{stem}.mp4") as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert sum(1 for _ in c.decode(video=0)) == 50  # the picture is kept, frame for frame
    with av.open(f"{stem}.mp4") as c:
        audio_seconds = sum(f.samples for f in c.decode(audio=0)) / 22050
    assert 1.9 < audio_seconds < 2.2  # the new sound, cut to the 2 s video (AAC frames: +-46 ms)
    item = json.loads((out / "generation.json").read_text())["items"][0]
    assert item["details"]["feature_rows"] == 5 and item["label"] == "dog"
