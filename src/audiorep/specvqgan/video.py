"""Video in, video out for SpecVQGAN: frames at 21.5 fps, ResNet-50 features, sound muxed back.

Everything goes through PyAV (``pip install 'audiorep[av]'``), imported only when a video is
opened; no ffmpeg binary, OpenCV, PIL or torchvision is needed.

Frame sampling (:func:`iter_video_frames`)
    The authors' extractor (``v-iashin/video_features``, branch ``specvqgan``,
    ``models/resnet/extract_resnet.py`` and ``utils/utils.py``; the same code is in SpecVQGAN's
    ``feature_extraction/demo_utils.py``) re-encodes the video with
    ``ffmpeg -i in.mp4 -filter:v fps=fps=21.5 tmp.mp4`` and reads every frame of the result with
    OpenCV. The frames are therefore those of ffmpeg's ``fps`` filter (defaults ``round=near``,
    ``eof_action=round``, no ``start_time``; ``libavfilter/vf_fps.c``), reproduced here without
    the lossy H.264 round trip:

    * each decoded frame ``i`` gets the time ``t_i`` = its pts minus the file's start time (the
      offset ffmpeg applies without ``-copyts``), in exact rational seconds;
    * its output tick is ``q_i = round(t_i * 21.5)``, halves away from zero;
    * output ticks run from ``q_0`` up to, not including, ``E = round(t_end * 21.5)``, where
      ``t_end`` is the end of the last frame (its time plus its duration: the EOF timestamp
      ffmpeg's CLI gives the filter);
    * tick ``n`` shows the last frame ``i`` with ``q_i <= n`` (earlier frames whose tick is
      taken by a later one are dropped; a frame is repeated while the next one's tick is ahead).

    So output ``k`` shows the frame on screen at ``t = (q_0 + k) / 21.5``, each frame's start
    rounded to the nearest output tick. A 25 fps clip of 2 s gives ``round(2 * 21.5) = 43``
    frames; 10 s gives 215. The pixels differ from the authors' slightly (they went through
    libx264 and OpenCV's YUV -> BGR conversion); the choice of frames is the same.

ResNet-50 input (:func:`frames_to_resnet_input`)
    torchvision's ``Compose([ToPILImage(), Resize(256), CenterCrop(224), ToTensor(),
    Normalize(ImageNet)])`` on uint8 RGB, reproduced bit for bit in torch: the shorter side goes
    to 256 and the longer to ``int(256 * long / short)``; the resize is Pillow's bilinear filter
    with its antialiasing support (the triangle widened by the scale factor) in Pillow's 8-bit
    fixed-point arithmetic (22-bit coefficients, horizontal pass first, each pass rounded back to
    uint8); the crop offset is Python's ``round((size - 224) / 2)``; then ``/ 255`` and
    ``(x - mean) / std`` in float32.

The demo's 10-s rule (:func:`extract_demo_features`)
    ``generation_demo.ipynb`` trims the video to ``[start, start + 10 s)`` (``ffmpeg -ss start
    -t 10``), extracts ResNet-50 features from that at 21.5 fps and tiles a shorter result with
    ``LeftmostCropOrTile(215)`` (:func:`audiorep.specvqgan.visual_features.leftmost_crop_or_tile`):
    a 6-s clip's 129 rows are repeated to 215. For ``start > 0`` frames before ``start`` are
    dropped and times rebased (ffmpeg's re-encode may also repeat the frame showing at
    ``start``; not reproduced).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar, Union

import numpy as np
import torch

from audiorep.atomic import commit, make_temp
from audiorep.models.resnet50 import (
    FEATURE_DIM,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ResNet50,
    from_torchvision_state_dict,
    seeded_random_state_dict,
)
from audiorep.specvqgan.visual_features import (
    FEAT_LEN,
    FEATURE_FPS,
    FeatureSettings,
    leftmost_crop_or_tile,
    source_rows,
)

PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")

#: Seconds of video the demo conditions on.
DEMO_SECONDS = 10.0
#: torchvision ``Resize(256)`` / ``CenterCrop(224)``.
RESIZE_SHORTER = 256
CROP_SIZE = 224
#: Decoded frames kept in memory by :func:`read_video_frames` at most, bytes.
MAX_FRAME_BYTES = 4 << 30
#: The default ResNet-50 weights (registry entry).
RESNET50_WEIGHTS = "resnet50-imagenet"
_PIL_PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point coefficient precision (Resample.c)


class VideoError(ValueError):
    """A video could not be read or written; the message names the file and the reason."""

    def __init__(self, path: PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _av(path: PathLike) -> Any:
    try:
        import av
    except ImportError:
        reason = "reading or writing video needs PyAV: pip install 'audiorep[av]'"
        raise VideoError(path, reason) from None
    return av


def _check_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise VideoError(p, "no such file")
    if not p.is_file():
        raise VideoError(p, "not a regular file")
    if p.stat().st_size == 0:
        raise VideoError(p, "empty file (0 bytes)")
    return p


def _as_fraction(x: float | Fraction, what: str) -> Fraction:
    if isinstance(x, Fraction):
        value = x
    else:
        if not math.isfinite(float(x)):
            raise ValueError(f"{what} must be finite, got {x!r}")
        # Decimal spelling: 21.5 -> 43/2 and 29.97 -> 2997/100, as ffmpeg parses "fps=21.5".
        value = Fraction(repr(float(x)))
    return value


def _round_half_away(x: Fraction) -> int:
    """``av_rescale_q_rnd(..., AV_ROUND_NEAR_INF)``: nearest integer, halves away from 0."""
    return math.floor(x + Fraction(1, 2)) if x >= 0 else -math.floor(-x + Fraction(1, 2))


# ----------------------------------------------------------------------------- frame sampling


def select_frames_at_fps(
    frames: Iterable[tuple[Fraction | None, Fraction | None, T]],
    fps: float | Fraction = FEATURE_FPS,
    stop: float | Fraction | None = None,
) -> Iterator[T]:
    """ffmpeg's ``fps`` filter over timed items (module docstring): yields one item per output
    tick, repeating or skipping items as the filter does.

    Args:
        frames: ``(t, t_end, item)`` in decode order: the frame's time and end time in seconds
            (exact :class:`~fractions.Fraction` for exact rounding; ``t = None`` for a frame
            without a timestamp, dropped as the filter drops it; ``t_end = None`` when unknown,
            then the frame's own time ends the stream if it is the last), and any payload.
        fps: output rate (21.5).
        stop: cap on the end time (a trimmed clip's length), seconds.

    Yields:
        The payloads, ``round(t_end * fps) - round(t_0 * fps)`` of them.
    """
    rate = _as_fraction(fps, "fps")
    if rate <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    current: Any = None
    have = False
    n = 0
    last_end: Fraction | None = None
    for t, t_end, item in frames:
        tick = None if t is None else _round_half_away(t * rate)
        if not have:
            if tick is None:
                continue  # "Discarding initial frame(s) with no timestamp"
            current, have, n = item, True, tick
        else:
            if tick is not None:
                while n < tick:  # the next frame is not due yet: show the current one again
                    yield current
                    n += 1
            current = item  # the next frame's tick has come: drop the current one
        if t_end is not None:
            last_end = t_end
        elif t is not None:
            last_end = t
    if not have:
        return
    end = last_end
    if stop is not None:
        cap = _as_fraction(stop, "stop")
        end = cap if end is None else min(end, cap)
    last_tick = _round_half_away(end * rate)
    while n < last_tick:
        yield current
        n += 1


def fps_frame_indices(
    times: Iterable[float | Fraction | None],
    end: float | Fraction,
    fps: float | Fraction = FEATURE_FPS,
) -> np.ndarray:
    """Which source frames the ``fps`` filter outputs: int64 indices into ``times``.

    Args:
        times: each source frame's time in seconds (``None``: no timestamp).
        end: end of the last frame (its time plus its duration), seconds.
        fps: output rate.
    """
    ts = [None if t is None else _as_fraction(t, "time") for t in times]
    last = len(ts) - 1
    stop = _as_fraction(end, "end")
    items = [(t, stop if i == last else None, i) for i, t in enumerate(ts)]
    return np.fromiter(select_frames_at_fps(items, fps), dtype=np.int64)


def _timed_frames(
    container: Any, stream: Any, start: Fraction, duration: Fraction | None
) -> Iterator[tuple[Fraction | None, Fraction | None, Any]]:
    """Decoded frames of ``stream`` as ``(t, t_end, frame)``, times in seconds relative to
    ``start``, the file's start time subtracted (ffmpeg's default ``ts_offset``)."""
    tb = stream.time_base
    if tb is None:
        raise ValueError("the video stream has no time base")
    tb = Fraction(tb.numerator, tb.denominator)
    offset = Fraction(-(container.start_time or 0), 1_000_000)
    offset_ticks = _round_half_away(offset / tb)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    default_duration = Fraction(1, 25) if not rate else 1 / Fraction(rate)
    for frame in container.decode(stream):
        if frame.pts is None:
            yield None, None, frame
            continue
        t = (frame.pts + offset_ticks) * tb - start
        dur = getattr(frame, "duration", None)
        length = dur * tb if dur else default_duration
        if start > 0 and t < 0:
            continue  # before the trim window
        if duration is not None and t >= duration:
            break
        yield t, t + length, frame


def iter_video_frames(
    path: PathLike,
    fps: float = FEATURE_FPS,
    *,
    start: float = 0.0,
    duration: float | None = None,
) -> Iterator[np.ndarray]:
    """uint8 RGB frames ``(H, W, 3)`` of ``path`` sampled at ``fps`` (module docstring), from
    ``start`` seconds for at most ``duration`` seconds; memory stays at a few frames.

    Raises:
        VideoError: no PyAV, an unreadable file, no video stream, or decoding failed.
    """
    av = _av(path)
    p = _check_file(path)
    if not (start >= 0 and math.isfinite(start)):
        raise ValueError(f"start must be a finite number of seconds >= 0, got {start}")
    if duration is not None and not (duration > 0 and math.isfinite(duration)):
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    t0 = _as_fraction(start, "start")
    span = None if duration is None else _as_fraction(duration, "duration")
    try:
        with open(p, "rb") as fh, av.open(fh) as container:
            if not container.streams.video:
                raise VideoError(p, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            last_frame, last_rgb = None, None
            for frame in select_frames_at_fps(
                _timed_frames(container, stream, t0, span), fps, span
            ):
                if frame is not last_frame:  # a repeated frame is converted once
                    last_frame, last_rgb = frame, frame.to_ndarray(format="rgb24")
                yield last_rgb
    except VideoError:
        raise
    except Exception as exc:
        raise VideoError(p, f"cannot decode video ({type(exc).__name__}: {exc})") from None


def read_video_frames(
    path: PathLike,
    fps: float = FEATURE_FPS,
    *,
    start: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """All frames :func:`iter_video_frames` gives, uint8 ``(T, H, W, 3)`` RGB.

    Raises:
        VideoError: as :func:`iter_video_frames`; no frames in the window; more than
            :data:`MAX_FRAME_BYTES` of frames (use ``duration`` or :func:`iter_video_frames`).
    """
    frames: list[np.ndarray] = []
    total = 0
    for rgb in iter_video_frames(path, fps, start=start, duration=duration):
        total += rgb.nbytes
        if total > MAX_FRAME_BYTES:
            raise VideoError(
                path,
                f"more than {MAX_FRAME_BYTES >> 30} GiB of decoded frames; pass a duration or "
                "stream them with iter_video_frames",
            )
        frames.append(rgb)
    if not frames:
        where = f" from {start} s" if start else ""
        raise VideoError(path, f"no video frames decoded{where}")
    return np.stack(frames)


def video_duration(path: PathLike) -> float:
    """Seconds of video in ``path``: the container's duration, else the video stream's, else
    the end of its last decoded frame."""
    av = _av(path)
    p = _check_file(path)
    try:
        with open(p, "rb") as fh, av.open(fh) as container:
            if not container.streams.video:
                raise VideoError(p, "no video stream")
            if container.duration:
                return container.duration / 1_000_000
            stream = container.streams.video[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            end = Fraction(0)
            for t, t_end, _ in _timed_frames(container, stream, Fraction(0), None):
                end = max(end, t_end if t_end is not None else (t or Fraction(0)))
            return float(end)
    except VideoError:
        raise
    except Exception as exc:
        raise VideoError(p, f"cannot read video ({type(exc).__name__}: {exc})") from None


def read_video_audio(
    path: PathLike, *, start: float = 0.0, duration: float | None = None
) -> tuple[np.ndarray, int]:
    """The video's sound: ``(wave float32 (N,) mono in [-1, 1], sample rate Hz)``.

    Channels are averaged; ``start`` / ``duration`` (seconds) cut a window. Decoding is
    :func:`audiorep.audio.load` (PyAV for MP4/MOV/MKV/WebM/M4V/3GP).

    Raises:
        VideoError: the file has no decodable audio (reason given).
    """
    from audiorep.audio import CONTAINER_EXTENSIONS, AudioLoadError, load

    p = _check_file(path)
    if p.suffix.lower() not in CONTAINER_EXTENSIONS:
        raise VideoError(
            p,
            f"cannot read the sound of a {p.suffix or 'suffix-less'} file; supported "
            f"containers: {', '.join(sorted(CONTAINER_EXTENSIONS))}",
        )
    try:
        wave, sr = load(p, mono=True)
    except AudioLoadError as exc:
        raise VideoError(p, exc.reason) from None
    a = int(round(start * sr))
    b = None if duration is None else a + int(round(duration * sr))
    out = wave.numpy()[a:b]
    if out.size == 0:
        raise VideoError(p, f"no audio from {start} s (the sound lasts {wave.shape[0] / sr:.2f} s)")
    return np.ascontiguousarray(out, dtype=np.float32), int(sr)


# ----------------------------------------------------------------------------- ResNet-50 input


def resized_size(height: int, width: int, size: int = RESIZE_SHORTER) -> tuple[int, int]:
    """torchvision ``Resize(size)``'s output ``(height, width)``: shorter side ``size``, longer
    ``int(size * long / short)``; unchanged when the shorter side already is ``size``."""
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def pil_bilinear_weights(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's bilinear resampling taps for one axis: ``(index (out, K) int64, weight (out, K)
    int32)`` fixed-point weights (sum ~ 2**22), as Pillow's ``precompute_coeffs`` and
    ``normalize_coeffs_8bpc`` make them (triangle filter, support widened by the downscale
    factor; out-of-range taps get weight 0 and index 0)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    index = np.zeros((out_size, ksize), dtype=np.int64)
    weight = np.zeros((out_size, ksize), dtype=np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        ss = 1.0 / filterscale  # Pillow multiplies by the reciprocal (rounding matters)
        ws = [max(0.0, 1.0 - abs((x + xmin - center + 0.5) * ss)) for x in range(xmax)]
        total = sum(ws)
        for x, w in enumerate(ws):
            w = w / total if total != 0.0 else w
            fixed = w * (1 << _PIL_PRECISION_BITS)
            weight[xx, x] = int(fixed - 0.5) if w < 0 else int(fixed + 0.5)
            index[xx, x] = x + xmin
    return torch.from_numpy(index), torch.from_numpy(weight.astype(np.int32))


def _resample_first_axis(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor):
    """One Pillow pass over axis 0 of uint8 ``x``: ``clip((sum_k x[idx_k] w_k + 2**21) >> 22)``.

    The resampled axis is outermost, so each tap's gather copies whole contiguous slices and
    the multiply-add runs over long contiguous runs (K <= 2 ceil(scale) + 1 taps). Exact in
    int32: a product is at most 255 * 2**22 and the weights of an output sum to about 2**22.
    """
    shape = (-1,) + (1,) * (x.ndim - 1)
    size = (index.shape[0],) + tuple(x.shape[1:])
    xi = x.to(torch.int32)
    acc = torch.full(size, 1 << (_PIL_PRECISION_BITS - 1), dtype=torch.int32)
    tap = torch.empty(size, dtype=torch.int32)
    for k in range(index.shape[1]):
        torch.index_select(xi, 0, index[:, k], out=tap)
        acc.add_(tap.mul_(weight[:, k].reshape(shape)))
    return acc.bitwise_right_shift_(_PIL_PRECISION_BITS).clamp_(0, 255).to(torch.uint8)


def pil_resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> uint8 ``(N, height, width, 3)``, equal to Pillow's
    ``Image.resize((width, height), BILINEAR)`` of each frame (horizontal pass first, each
    pass rounded to uint8 as Pillow does)."""
    if frames.ndim != 4 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 (N, H, W, 3) frames, got {tuple(frames.shape)}")
    h, w = int(frames.shape[1]), int(frames.shape[2])
    x = frames
    if width != w:  # as (W, N, H, 3): columns outermost
        x = x.permute(2, 0, 1, 3).contiguous()
        x = _resample_first_axis(x, *pil_bilinear_weights(w, width)).permute(1, 2, 0, 3)
    if height != h:  # as (H, N, W', 3): rows outermost
        x = x.permute(1, 0, 2, 3).contiguous()
        x = _resample_first_axis(x, *pil_bilinear_weights(h, height)).permute(1, 0, 2, 3)
    return x.contiguous()


def _as_frames(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.asarray(frames))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 RGB frames (T, H, W, 3), got {tuple(x.shape)} {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError("no frames (T = 0)")
    return x.cpu()


def _frames_per_chunk(height: int, width: int) -> int:
    """Frames resized together: about 16 M int32 values (64 MB) per pass buffer, so that the
    ops are few and large (small ones are slow when the CPU is shared) but memory stays
    bounded (5 frames of 720p, 30 of 360p)."""
    return max(1, (16 << 20) // (height * width * 3))


def resize_and_crop(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``(T, H, W, 3)`` (or one ``(H, W, 3)``) -> uint8 ``(T, 224, 224, 3)``:
    torchvision's ``Resize(256)`` (Pillow bilinear) and ``CenterCrop(224)`` (module
    docstring). These are also the pictures to show as "the frames used"."""
    x = _as_frames(frames)
    h, w = resized_size(int(x.shape[1]), int(x.shape[2]))
    if min(h, w) < CROP_SIZE:
        raise ValueError(f"frames {tuple(x.shape[1:3])} are too small to crop {CROP_SIZE} pixels")
    n = _frames_per_chunk(int(x.shape[1]), int(x.shape[2]))
    x = torch.cat([pil_resize(x[i : i + n], h, w) for i in range(0, x.shape[0], n)])
    top = int(round((h - CROP_SIZE) / 2.0))  # Python's round, as torchvision's center_crop
    left = int(round((w - CROP_SIZE) / 2.0))
    return x[:, top : top + CROP_SIZE, left : left + CROP_SIZE].contiguous()


def normalize_for_resnet(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> float32 ``(T, 3, H, W)``: torchvision's ``ToTensor()``
    (``/ 255``) then ``Normalize`` with the ImageNet mean and std, in float32."""
    x = _as_frames(crops).permute(0, 3, 1, 2).to(torch.float32).div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    return x.sub(mean).div(std).contiguous()


def frames_to_resnet_input(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``(T, H, W, 3)`` (or one ``(H, W, 3)``) -> float32 ``(T, 3, 224, 224)``,
    torchvision's ``Resize(256)``, ``CenterCrop(224)``, ``ToTensor()``, ``Normalize(ImageNet)``
    (module docstring)."""
    return normalize_for_resnet(resize_and_crop(frames))


# ----------------------------------------------------------------------------- features


def load_resnet50(
    spec: str | None = None, device: str | torch.device = "cpu"
) -> tuple[ResNet50, str]:
    """``(ResNet-50 in eval mode, a name for its weights)``.

    ``spec``: ``None`` or ``"resnet50-imagenet"`` (torchvision's ImageNet weights from the
    registry: cached, else downloaded and checked), another registry name, a local torchvision
    ``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors`` file, or ``"random"`` /
    ``"random:SEED"`` (seeded random weights, for plumbing only).
    """
    spec = spec or RESNET50_WEIGHTS
    model = ResNet50()
    if spec == "random" or spec.startswith("random:"):
        text = spec.partition(":")[2]
        try:
            seed = int(text) if text else None
        except ValueError:
            raise ValueError(f"{spec!r}: expected 'random' or 'random:SEED' (an integer)") from None
        sd = seeded_random_state_dict() if seed is None else seeded_random_state_dict(seed)
        name = spec
    else:
        from audiorep.convert.readers import read_state_dict

        path = Path(spec)
        if path.exists():
            name = path.name
        else:
            from audiorep.weights.download import fetch
            from audiorep.weights.registry import REGISTRY

            if spec not in REGISTRY:
                raise FileNotFoundError(
                    f"{spec}: no such file, and not ResNet-50 weights (resnet50-imagenet, a "
                    "torchvision .pth / .safetensors file, random or random:SEED)"
                )
            path, name = fetch(spec), spec
        try:
            sd = from_torchvision_state_dict(read_state_dict(path))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval(), name


def _progress_callback(progress: bool | Callable[[int], None], total: int | None):
    if callable(progress):
        return progress, None
    if not progress:
        return (lambda n: None), None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="frame", desc="ResNet-50")
    return bar.update, bar


@torch.no_grad()
def _features_of_crops(
    crops: torch.Tensor, model: ResNet50, batch_size: int, update: Callable[[int], None]
) -> torch.Tensor:
    device = next(model.parameters()).device
    out = []
    for i in range(0, crops.shape[0], batch_size):
        x = normalize_for_resnet(crops[i : i + batch_size]).to(device)
        out.append(model.forward_features(x).float().cpu())
        update(int(x.shape[0]))
    return torch.cat(out) if out else torch.zeros((0, FEATURE_DIM))


def video_crops(
    path: PathLike,
    fps: float = FEATURE_FPS,
    *,
    start: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """The ResNet-50 pictures of a video: :func:`iter_video_frames` through
    :func:`resize_and_crop`, uint8 ``(T, 224, 224, 3)`` (150 kB a frame, whatever the video's
    size; a repeated frame is resized once).

    Raises:
        VideoError: as :func:`iter_video_frames`, or no frames in the window.
    """
    crops: list[torch.Tensor] = []
    pending: list[np.ndarray] = []  # distinct frames waiting to be resized together
    order: list[int] = []  # each output frame's index among the distinct frames
    count, last_rgb = 0, None
    for rgb in iter_video_frames(path, fps, start=start, duration=duration):
        if rgb is not last_rgb:  # iter_video_frames repeats the same array for a repeat
            last_rgb = rgb
            pending.append(rgb)
            count += 1
            if len(pending) == _frames_per_chunk(rgb.shape[0], rgb.shape[1]):
                crops.append(resize_and_crop(np.stack(pending)))
                pending = []
        order.append(count - 1)
    if not order:
        where = f" from {start} s" if start else ""
        raise VideoError(path, f"no video frames decoded{where}")
    if pending:
        crops.append(resize_and_crop(np.stack(pending)))
    return torch.cat(crops)[torch.tensor(order)]


def extract_resnet50_features(
    source: PathLike | np.ndarray | torch.Tensor,
    model: ResNet50,
    batch_size: int = 32,
    progress: bool | Callable[[int], None] = False,
    *,
    fps: float = FEATURE_FPS,
    start: float = 0.0,
    duration: float | None = None,
) -> np.ndarray:
    """float32 ``(T, 2048)`` ResNet-50 pool features, one row per frame (the authors'
    ``ExtractResNet`` with ``fc`` = identity).

    Args:
        source: a video file (frames sampled at ``fps`` from ``start`` for ``duration`` s) or
            uint8 RGB frames ``(T, H, W, 3)``.
        model: :class:`~audiorep.models.resnet50.ResNet50` in eval mode (its device is used).
        batch_size: frames per forward pass.
        progress: a tqdm bar (``True``) or a callable given the number of frames of each batch.

    Raises:
        VideoError: unreadable video or no frames.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(source, (np.ndarray, torch.Tensor)):
        crops = resize_and_crop(source)
    else:
        crops = video_crops(source, fps, start=start, duration=duration)
    update, bar = _progress_callback(progress, int(crops.shape[0]))
    try:
        feats = _features_of_crops(crops, model, batch_size, update)
    finally:
        if bar is not None:
            bar.close()
    return feats.numpy()


def extract_demo_features(
    path: PathLike,
    model: ResNet50,
    *,
    start: float = 0.0,
    seconds: float = DEMO_SECONDS,
    feat_len: int = FEAT_LEN,
    batch_size: int = 32,
    progress: bool | Callable[[int], None] = False,
) -> np.ndarray:
    """The demo's video features: float32 ``(feat_len, 2048)`` from ``[start, start + seconds)``
    at 21.5 fps, tiled (shorter clips) or cut to ``feat_len`` rows (``LeftmostCropOrTile``)."""
    feats = extract_resnet50_features(
        path, model, batch_size, progress, start=start, duration=seconds
    )
    return leftmost_crop_or_tile(feats, feat_len)


def video_condition_features(
    path: PathLike,
    model: ResNet50,
    settings: FeatureSettings | None = None,
    *,
    start: float = 0.0,
    seconds: float = DEMO_SECONDS,
    batch_size: int = 32,
    progress: bool | Callable[[int], None] = False,
    return_crops: bool = False,
) -> np.ndarray | tuple[np.ndarray, torch.Tensor]:
    """A video -> the transformer's condition rows, float64 ``(S * r, 2048)``.

    The demo's rule: ``[start, start + seconds)`` at 21.5 fps, ResNet-50 features, then the
    demo chain (``LeftmostCropOrTile`` -> centre crop -> ``ResampleFrames``; ``settings``'s
    ``tile_short`` is forced on). Equal to :func:`extract_demo_features` followed by
    :func:`audiorep.specvqgan.visual_features.prepare_features_demo`, but the network runs only
    on the frames the condition uses (:func:`~audiorep.specvqgan.visual_features.source_rows`):
    5 forward passes instead of 215 for ``S = 5``.

    Args:
        return_crops: also return the uint8 ``(S * r, 224, 224, 3)`` pictures of the rows
            (the demo's "frames used in conditioning" grid).
    """
    settings = replace(settings or FeatureSettings(), tile_short=True)
    crops = video_crops(path, start=start, duration=seconds)
    rows = source_rows(int(crops.shape[0]), settings)
    unique, inverse = np.unique(rows, return_inverse=True)
    picked = crops[torch.from_numpy(unique)]
    update, bar = _progress_callback(progress, len(unique))
    try:
        feats = _features_of_crops(picked, model, batch_size, update)
    finally:
        if bar is not None:
            bar.close()
    cond = feats.numpy().astype(np.float64)[inverse.reshape(-1)]
    if return_crops:
        return cond, crops[torch.from_numpy(rows)]
    return cond


# ----------------------------------------------------------------------------- muxing


def _check_wave(wave: Any, sample_rate: int) -> np.ndarray:
    w = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    w = w.astype(np.float32, copy=False)
    if w.ndim == 2 and w.shape[0] == 1:
        w = w[0]
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"expected a mono waveform (N,), got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("the waveform contains NaN or infinite samples")
    if (
        isinstance(sample_rate, bool)
        or int(sample_rate) != sample_rate
        or not (8000 <= sample_rate <= 96000)
    ):
        raise ValueError(f"sample rate must be an integer in 8000..96000 Hz, got {sample_rate}")
    return np.clip(w, -1.0, 1.0)


def _encode_aac(av: Any, out: Any, wave: np.ndarray, sample_rate: int) -> tuple[Any, list]:
    stream = out.add_stream("aac", rate=int(sample_rate))
    stream.layout = "mono"
    frame = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
    frame.sample_rate = int(sample_rate)
    frame.pts = 0
    frame.time_base = Fraction(1, int(sample_rate))
    packets = list(stream.encode(frame)) + list(stream.encode(None))
    return stream, packets


def _packet_seconds(packet: Any) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    return float(ts * packet.time_base) if ts is not None and packet.time_base else 0.0


def _mux_interleaved(out: Any, video_packets: Iterable[Any], audio: list) -> None:
    """Mux ``video_packets`` (a stream) and ``audio`` (a list) in time order."""
    pending = list(audio)
    for pkt in video_packets:
        t = _packet_seconds(pkt)
        while pending and _packet_seconds(pending[0]) <= t:
            out.mux(pending.pop(0))
        out.mux(pkt)
    for pkt in pending:
        out.mux(pkt)


def _remux(av: Any, src: Path, dst: str, wave: np.ndarray, sample_rate: int) -> None:
    with open(src, "rb") as fh, av.open(fh) as inp, av.open(dst, "w", format="mp4") as out:
        vin = inp.streams.video[0]
        if hasattr(out, "add_stream_from_template"):
            vout = out.add_stream_from_template(vin)
        else:  # PyAV < 13
            vout = out.add_stream(template=vin)
        _, audio = _encode_aac(av, out, wave, sample_rate)

        def packets() -> Iterator[Any]:
            for pkt in inp.demux(vin):
                if pkt.dts is None and pkt.pts is None:
                    continue  # the demuxer's empty flush packet
                pkt.stream = vout
                yield pkt

        _mux_interleaved(out, packets(), audio)


def _reencode(
    av: Any,
    src: Path,
    dst: str,
    wave: np.ndarray,
    sample_rate: int,
    start: float,
    duration: float | None,
) -> None:
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with open(src, "rb") as fh, av.open(fh) as inp, av.open(dst, "w", format="mp4") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        vout = out.add_stream(codec, rate=rate)
        width = max(2, vin.codec_context.width // 2 * 2)  # yuv420p needs even sizes
        height = max(2, vin.codec_context.height // 2 * 2)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        _, audio = _encode_aac(av, out, wave, sample_rate)
        t0 = _as_fraction(start, "start")
        span = None if duration is None else _as_fraction(duration, "duration")

        def packets() -> Iterator[Any]:
            k = 0
            for t, _, frame in _timed_frames(inp, vin, t0, span):
                if t is None:
                    continue
                f = frame.reformat(width=width, height=height, format="yuv420p")
                f.pts, f.time_base = k, Fraction(1, 1) / Fraction(rate)
                k += 1
                yield from vout.encode(f)
            yield from vout.encode(None)

        _mux_interleaved(out, packets(), audio)


def mux_audio_into_video(
    video_path: PathLike,
    wave: np.ndarray | torch.Tensor,
    sample_rate: int,
    out_path: PathLike,
    *,
    start: float = 0.0,
    duration: float | None = None,
) -> Path:
    """Write ``out_path`` (MP4): the video's picture with ``wave`` as its only sound (AAC).

    The video stream is copied packet for packet (no re-encoding) when the whole video is
    kept (``start == 0``, no ``duration``) and the MP4 muxer accepts its codec; otherwise the
    frames in ``[start, start + duration)`` are re-encoded with libx264 (yuv420p, the source's
    frame rate). The original sound is dropped. The file appears atomically (a temp file in the
    same folder, renamed when complete).

    Args:
        video_path: the source video.
        wave: mono float32 ``(N,)`` in [-1, 1] (clipped), starting at the video's start.
        sample_rate: Hz of ``wave`` (e.g. 22 050).
        out_path: the MP4 to write (replaced if it exists).

    Raises:
        VideoError: no PyAV, unreadable source / no video stream, or writing failed.
    """
    av = _av(video_path)
    src = _check_file(video_path)
    w = _check_wave(wave, sample_rate)
    out = Path(out_path)
    if out.resolve() == src.resolve():
        raise VideoError(out, "the output would overwrite the source video")
    if not out.parent.is_dir():
        raise VideoError(out, "the output folder does not exist")
    try:
        with open(src, "rb") as fh, av.open(fh) as probe:
            if not probe.streams.video:
                raise VideoError(src, "no video stream")
    except VideoError:
        raise
    except Exception as exc:
        raise VideoError(src, f"cannot read video ({type(exc).__name__}: {exc})") from None
    fd, tmp = make_temp(out.parent, f".{out.name}.", ".mp4")
    os.close(fd)
    try:
        done = False
        if start == 0 and duration is None:
            try:
                _remux(av, src, tmp, w, int(sample_rate))
                done = True
            except Exception:  # codec the MP4 muxer refuses, broken timestamps: re-encode
                done = False
        if not done:
            _reencode(av, src, tmp, w, int(sample_rate), start, duration)
        commit(tmp, out)
    except VideoError:
        raise
    except Exception as exc:
        raise VideoError(out, f"cannot write video ({type(exc).__name__}: {exc})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


__all__ = [
    "CROP_SIZE",
    "DEMO_SECONDS",
    "MAX_FRAME_BYTES",
    "RESIZE_SHORTER",
    "RESNET50_WEIGHTS",
    "VideoError",
    "extract_demo_features",
    "extract_resnet50_features",
    "fps_frame_indices",
    "frames_to_resnet_input",
    "iter_video_frames",
    "load_resnet50",
    "mux_audio_into_video",
    "normalize_for_resnet",
    "pil_bilinear_weights",
    "pil_resize",
    "read_video_audio",
    "read_video_frames",
    "resize_and_crop",
    "resized_size",
    "select_frames_at_fps",
    "video_condition_features",
    "video_crops",
    "video_duration",
]
