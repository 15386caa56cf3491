"""ResNet-50 (models/resnet50.py) and SpecVQGAN's video path (specvqgan/video.py): torchvision's
keys, an independent float64 bottleneck, Pillow-exact preprocessing, 21.5-fps frame sampling,
the demo's tiling, and muxing a new sound into a video.

No golden data: the references are written here (torchvision's documented ResNet-50 layout,
Pillow when installed, ffmpeg's own fps filter through PyAV's filter graph when available).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from audiorep.models.resnet50 import (
    Bottleneck,
    ResNet50,
    from_torchvision_state_dict,
    seeded_random_state_dict,
    state_dict_shapes,
)
from audiorep.specvqgan.video import (
    VideoError,
    extract_demo_features,
    extract_resnet50_features,
    fps_frame_indices,
    frames_to_resnet_input,
    load_resnet50,
    mux_audio_into_video,
    pil_bilinear_weights,
    read_video_audio,
    read_video_frames,
    resize_and_crop,
    resized_size,
    video_condition_features,
    video_duration,
)
from audiorep.specvqgan.visual_features import FeatureSettings

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def seeded_model() -> ResNet50:
    model = ResNet50()
    model.load_state_dict(seeded_random_state_dict(5))
    return model.eval()


# ----------------------------------------------------------------------------- the network


def torchvision_resnet50_keys() -> list[tuple[str, tuple[int, ...]]]:
    """torchvision's ``resnet50()`` state dict, from its documented layout: conv1 7x7 3->64,
    bn1, stages of [3, 4, 6, 3] bottlenecks of widths 64..512 (expansion 4, conv1 1x1, conv2
    3x3, conv3 1x1, each with a BN; downsample.0/.1 = 1x1 conv + BN on each stage's first
    block), fc 2048 -> 1000."""
    keys: list[tuple[str, tuple[int, ...]]] = []

    def bn(prefix, c):
        keys.extend(
            (f"{prefix}.{n}", (c,)) for n in ("weight", "bias", "running_mean", "running_var")
        )
        keys.append((f"{prefix}.num_batches_tracked", ()))

    keys.append(("conv1.weight", (64, 3, 7, 7)))
    bn("bn1", 64)
    inplanes = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for i in range(blocks):
            p = f"layer{stage}.{i}"
            keys.append((f"{p}.conv1.weight", (width, inplanes, 1, 1)))
            bn(f"{p}.bn1", width)
            keys.append((f"{p}.conv2.weight", (width, width, 3, 3)))
            bn(f"{p}.bn2", width)
            keys.append((f"{p}.conv3.weight", (4 * width, width, 1, 1)))
            bn(f"{p}.bn3", 4 * width)
            if i == 0:
                keys.append((f"{p}.downsample.0.weight", (4 * width, inplanes, 1, 1)))
                bn(f"{p}.downsample.1", 4 * width)
            inplanes = 4 * width
    keys += [("fc.weight", (1000, 2048)), ("fc.bias", (1000,))]
    return keys


def test_torchvision_keys_shapes_and_order():
    expected = torchvision_resnet50_keys()
    assert state_dict_shapes() == expected
    assert len(expected) == 320
    assert (
        sum(math.prod(s) for k, s in expected if "running" not in k and "num_batches" not in k)
        == 25_557_032
    )


def test_loading_torchvision_files(tmp_path):
    sd = seeded_random_state_dict(3)
    published = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert len(published) == 267  # torchvision's resnet50-0676ba61.pth has no counters
    completed = from_torchvision_state_dict(published)
    assert list(completed) == list(sd) and completed["bn1.num_batches_tracked"].dtype == torch.int64
    wrapped = {f"module.{k}": v for k, v in published.items()}  # DataParallel prefix
    assert list(from_torchvision_state_dict(wrapped)) == list(sd)
    broken = dict(published)
    del broken["layer3.2.conv2.weight"]
    broken["head.weight"] = torch.zeros(1)
    broken["fc.bias"] = torch.zeros(10)
    with pytest.raises(ValueError) as err:
        from_torchvision_state_dict(broken)
    message = str(err.value)
    assert "1 missing: layer3.2.conv2.weight" in message
    assert "1 unexpected: head.weight" in message and "fc.bias: (10,), expected (1000,)" in message
    # a .pth file through load_resnet50 (torch.load(weights_only=True) inside)
    path = tmp_path / "resnet50-test.pth"
    torch.save(published, path)
    model, name = load_resnet50(str(path))
    assert name == "resnet50-test.pth" and not model.training
    assert torch.equal(model.layer4[2].conv3.weight, sd["layer4.2.conv3.weight"])
    random_model, name = load_resnet50("random:3")
    assert name == "random:3"
    assert torch.equal(random_model.conv1.weight, sd["conv1.weight"])
    with pytest.raises(FileNotFoundError, match="not ResNet-50 weights"):
        load_resnet50(str(tmp_path / "nothing.pth"))
    with pytest.raises(ValueError, match="random:SEED"):
        load_resnet50("random:x")


def test_seeded_forward(seeded_model):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 112, 112)  # any size >= 32: the global pool fixes the output size
    with torch.no_grad():
        feats = seeded_model.forward_features(x)
        logits = seeded_model(x)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1000)
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # pooled ReLU outputs
    assert not torch.equal(feats[0], feats[1])
    again = ResNet50()
    again.load_state_dict(seeded_random_state_dict(5))
    with torch.no_grad():
        assert torch.equal(again.eval().forward_features(x), feats)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        seeded_model.forward_features(torch.zeros(2, 1, 32, 32))


def _conv_ref(x, w, stride, pad):
    """float64 NumPy convolution (cross-correlation), NCHW / OIHW, written out as im2col."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    cols = np.empty((n, c, kh, kw, oh, ow))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
    return np.einsum("ncijhw,ocij->nohw", cols, w)


def _bn_ref(x, sd, p):
    g, b = sd[f"{p}.weight"], sd[f"{p}.bias"]
    m, v = sd[f"{p}.running_mean"], sd[f"{p}.running_var"]
    return (x - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-5) * g[:, None, None] + b[
        :, None, None
    ]


def test_bottleneck_against_an_independent_float64_reference(seeded_model):
    """layer2.0 (256 -> 512, stride 2 on the 3x3 conv, projection shortcut) in float64."""
    block: Bottleneck = seeded_model.layer2[0]
    sd = {k: v.double().numpy() for k, v in block.state_dict().items()}
    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((2, 256, 9, 9)), 0)  # post-ReLU input, odd size
    y = np.maximum(_bn_ref(_conv_ref(x, sd["conv1.weight"], 1, 0), sd, "bn1"), 0)
    y = np.maximum(_bn_ref(_conv_ref(y, sd["conv2.weight"], 2, 1), sd, "bn2"), 0)
    y = _bn_ref(_conv_ref(y, sd["conv3.weight"], 1, 0), sd, "bn3")
    shortcut = _bn_ref(_conv_ref(x, sd["downsample.0.weight"], 2, 0), sd, "downsample.1")
    ref = np.maximum(y + shortcut, 0)
    block64 = Bottleneck(256, 128, stride=2).double().eval()
    block64.load_state_dict(block.state_dict())
    with torch.no_grad():
        got = block64(torch.from_numpy(x)).numpy()
    assert got.shape == ref.shape == (2, 512, 5, 5)
    # float64 both sides: sums of <= 1152 products of O(1) terms, eps 2.2e-16 -> ~1e-12 abs
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * max(1.0, np.abs(ref).max()))
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)  # v1.5


# ----------------------------------------------------------------------------- preprocessing


def test_torchvision_resize_rule():
    assert resized_size(224, 298) == (256, 340)  # int(256 * 298 / 224) = int(340.57)
    assert resized_size(360, 480) == (256, 341)
    assert resized_size(720, 1280) == (256, 455)
    assert resized_size(480, 270) == (455, 256)
    assert resized_size(300, 300) == (256, 256)
    assert resized_size(256, 341) == (256, 341)  # already 256: untouched
    index, weight = pil_bilinear_weights(1280, 455)
    assert index.shape == weight.shape == (455, 7)  # support 1280 / 455 = 2.8 -> 2 * 3 + 1 taps
    sums = weight.sum(dim=1)
    assert (sums - 2**22).abs().max() <= 7  # normalised to 1.0, rounded tap by tap
    assert (index.max(dim=1).values < 1280).all()


def test_constant_frames_normalise_exactly():
    frames = np.zeros((2, 240, 320, 3), np.uint8)
    frames[0] = (10, 128, 250)
    frames[1] = 255
    x = frames_to_resnet_input(frames)
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    for t in range(2):
        for c in range(3):
            v = torch.tensor(float(frames[t, 0, 0, c]), dtype=torch.float32) / 255
            expected = (v - torch.tensor(MEAN[c])) / torch.tensor(STD[c])
            assert torch.equal(x[t, c], torch.full((224, 224), expected.item()))
    with pytest.raises(ValueError, match="uint8 RGB"):
        frames_to_resnet_input(np.zeros((1, 8, 8, 3), np.float32))


@pytest.mark.parametrize(
    "size", [(224, 298), (360, 480), (480, 270), (199, 333), (101, 57), (720, 1280)]
)
def test_preprocessing_equals_pillow_and_torchvision_steps(size):
    image_mod = pytest.importorskip("PIL.Image", reason="Pillow not installed (the reference)")
    rng = np.random.default_rng(sum(size))
    h, w = size
    smooth = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.2, 1, h)[:, None, None]
    frames = np.stack(
        [rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (smooth * np.ones(3)).astype(np.uint8)]
    )
    got = frames_to_resnet_input(frames)
    for t, frame in enumerate(frames):
        # torchvision Resize(256) on a PIL image: shorter side 256, longer int(256 * l / s)
        if w <= h:
            ow, oh = 256, int(256 * h / w)
        else:
            oh, ow = 256, int(256 * w / h)
        img = image_mod.fromarray(frame).resize((ow, oh), image_mod.BILINEAR)
        top, left = int(round((oh - 224) / 2.0)), int(round((ow - 224) / 2.0))
        crop = np.asarray(img)[top : top + 224, left : left + 224]
        assert np.array_equal(resize_and_crop(frame)[0].numpy(), crop)
        ref = torch.from_numpy(crop.copy()).permute(2, 0, 1).float().div(255)
        ref = ref.sub(torch.tensor(MEAN)[:, None, None]).div(torch.tensor(STD)[:, None, None])
        assert torch.equal(got[t], ref)


# ----------------------------------------------------------------------------- video


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def expected_fps_indices(times, end, fps):
    """The fps filter written out plainly: output n (from round(t0 fps) to round(end fps) - 1)
    shows the last frame whose time rounds to a tick <= n."""
    ticks = [_half_up(t * fps) for t in times]
    return [
        max(i for i, q in enumerate(ticks) if q <= n) for n in range(ticks[0], _half_up(end * fps))
    ]


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory):
    """2 s at 25 fps, 64 x 48; frame k is a flat grey of level 5 k (k = round(level / 5): grey
    survives the YUV 4:2:0 round trip within +-1, a saturated colour does not); a 440 Hz sine
    at 44.1 kHz as its sound."""
    av = pytest.importorskip("av", reason="PyAV not installed (pip install 'audiorep[av]')")
    path = tmp_path_factory.mktemp("video") / "colours.mp4"
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.options = {"qp": "0"} if codec == "libx264" else {"qscale": "1"}
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for k in range(50):
            img = np.empty((48, 64, 3), np.uint8)
            img[...] = 5 * k
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = k
            for p in video.encode(frame):
                out.mux(p)
        for p in video.encode(None):
            out.mux(p)
        t = np.arange(2 * 44100) / 44100
        sound = av.AudioFrame.from_ndarray(
            (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
            format="fltp",
            layout="mono",
        )
        sound.sample_rate, sound.pts = 44100, 0
        for p in list(audio.encode(sound)) + list(audio.encode(None)):
            out.mux(p)
    return path


def frame_numbers(frames: np.ndarray) -> list[int]:
    return [int(round(f.mean() / 5)) for f in frames]


def test_frames_at_21_5_fps(synthetic_video):
    frames = read_video_frames(synthetic_video)
    assert frames.dtype == np.uint8 and frames.shape == (43, 48, 64, 3)  # round(2 s * 21.5)
    expected = expected_fps_indices([k / 25 for k in range(50)], 2.0, 21.5)
    assert frame_numbers(frames) == expected
    assert expected[:8] == [0, 1, 2, 4, 5, 6, 7, 8]  # frame 3 (tick round(2.58) = 3) is dropped
    window = read_video_frames(synthetic_video, start=0.4, duration=1.0)
    assert len(window) == 22 and frame_numbers(window)[0] == 10  # round(21.5) = 22 ticks
    assert video_duration(synthetic_video) == pytest.approx(2.0, abs=0.05)


def test_frame_rule_on_irregular_timestamps_and_against_ffmpeg():
    times_ms = [0, 30, 95, 100, 180, 260, 270, 400, 450, 470]
    durations_ms = [30, 65, 5, 80, 80, 10, 130, 50, 20, 40]
    times = [Fraction(t, 1000) for t in times_ms]
    got = fps_frame_indices(times, Fraction(510, 1000), 21.5).tolist()
    assert got == expected_fps_indices([t / 1000 for t in times_ms], 0.51, 21.5)
    assert got == [0, 1, 3, 3, 4, 4, 6, 6, 6, 7, 9]
    assert fps_frame_indices([None, 0.0, 0.1], 0.2, 10).tolist() == [1, 2]  # no pts: dropped
    av = pytest.importorskip("av", reason="PyAV not installed: no ffmpeg fps filter to compare")
    filt = pytest.importorskip("av.filter", reason="PyAV without filter graphs")
    graph = filt.Graph()
    src = graph.add_buffer(width=16, height=16, format="rgb24", time_base=Fraction(1, 1000))
    fps = graph.add("fps", "fps=21.5")
    sink = graph.add("buffersink")
    src.link_to(fps)
    fps.link_to(sink)
    graph.configure()
    out = []

    def drain():
        while True:
            try:
                frame = graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return
            out.append(int(frame.to_ndarray()[0, 0, 0]) // 10)

    for i, (t, d) in enumerate(zip(times_ms, durations_ms)):
        frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 10 * i, np.uint8), format="rgb24")
        frame.pts, frame.time_base, frame.duration = t, Fraction(1, 1000), d
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    assert out == got  # ffmpeg's own libavfilter fps filter (EOF = last pts + duration)


class _MeanColour(nn.Module):
    """A stand-in extractor: ``forward_features`` = the mean of each channel (B, 3)."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward_features(self, x):
        return x.mean(dim=(2, 3))


def test_demo_tiling_rule(synthetic_video, seeded_model):
    feats = extract_demo_features(synthetic_video, _MeanColour(), batch_size=16)
    assert feats.shape == (215, 3) and feats.dtype == np.float32
    direct = extract_resnet50_features(synthetic_video, _MeanColour())  # 43 rows
    assert direct.shape == (43, 3)
    np.testing.assert_array_equal(feats, direct[np.arange(215) % 43])  # tiled 1 + 215 // 43 = 6x
    # the condition path runs the network on the frames S = 5 uses: rows 1 + [35, 77, 119,
    # 162, 204] of the tiled 215, i.e. frames (those rows) % 43 = [36, 35, 34, 34, 33]
    frames = read_video_frames(synthetic_video)
    cond, crops = video_condition_features(
        synthetic_video, seeded_model, FeatureSettings(feat_sample_size=5), return_crops=True
    )
    assert cond.shape == (5, 2048) and cond.dtype == np.float64 and crops.shape == (5, 224, 224, 3)
    picked = [36, 35, 34, 34, 33]
    assert torch.equal(crops, resize_and_crop(frames[picked]))
    distinct = sorted(set(picked))
    with torch.no_grad():
        ref = seeded_model.forward_features(frames_to_resnet_input(frames[distinct])).numpy()
    ref = ref[[distinct.index(i) for i in picked]]
    # same frames, batch composition may differ: float32 conv sums over ~4600 terms per output,
    # relative error ~ sqrt(4600) * 6e-8 per layer over ~50 layers -> 1e-4 relative is ample
    np.testing.assert_allclose(cond, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_video_sound_and_errors(synthetic_video, tmp_path):
    wave, sr = read_video_audio(synthetic_video)
    assert sr == 44100 and wave.dtype == np.float32 and abs(len(wave) - 2 * sr) <= 2048
    spectrum = np.abs(np.fft.rfft(wave[4096 : 4096 + 44100]))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins
    part, _ = read_video_audio(synthetic_video, start=0.5, duration=0.25)
    assert len(part) == round(0.25 * sr)
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(VideoError, match="fake.mp4"):
        read_video_frames(fake)
    with pytest.raises(VideoError, match="no such file"):
        read_video_frames(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="no video frames"):
        read_video_frames(synthetic_video, start=5.0)


def test_mux_round_trip(synthetic_video, tmp_path):
    av = pytest.importorskip("av")
    sr = 22050
    wave = np.zeros(int(1.5 * sr), np.float32)
    wave[5000:5400] = np.random.default_rng(0).uniform(-0.5, 0.5, 400)  # a burst to align on
    out = mux_audio_into_video(synthetic_video, wave, sr, tmp_path / "out.mp4")
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.audio[0].codec_context.sample_rate == sr
        assert sum(1 for _ in c.decode(video=0)) == 50  # every source frame, copied
    np.testing.assert_array_equal(read_video_frames(out), read_video_frames(synthetic_video))
    sound, rate = read_video_audio(out)
    assert rate == sr and len(sound) >= len(wave)
    lag = int(np.argmax(np.abs(np.correlate(sound[:12000], wave[4000:6400], "valid")))) - 4000
    assert lag == 0  # AAC's priming delay is compensated by the MP4 edit list
    assert np.abs(sound[:4500]).max() < 0.05  # silence before the burst (AAC pre-echo is small)
    # a window is re-encoded (libx264): 1 s at 25 fps
    part = mux_audio_into_video(
        synthetic_video, wave, sr, tmp_path / "part.mp4", start=0.4, duration=1.0
    )
    with av.open(str(part)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 25
    assert frame_numbers(np.stack(frames))[:3] == [10, 11, 12]
    with pytest.raises(ValueError, match="NaN"):
        mux_audio_into_video(synthetic_video, np.full(100, np.nan), sr, tmp_path / "x.mp4")
    with pytest.raises(VideoError, match="overwrite the source"):
        mux_audio_into_video(synthetic_video, wave, sr, synthetic_video)
    with pytest.raises(VideoError, match="no such file"):
        mux_audio_into_video(tmp_path / "missing.mp4", wave, sr, tmp_path / "y.mp4")
    assert not (tmp_path / "x.mp4").exists()
