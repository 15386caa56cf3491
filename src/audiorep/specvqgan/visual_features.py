"""SpecVQGAN's visual-feature input pipeline: feature files -> the transformer's condition.

The authors condition the transformer on one feature vector per video frame at 21.5 fps:
BN-Inception RGB and optical-flow streams (1024 channels each, concatenated to 2048) or ResNet-50
global-pool features (2048). Two chains turn a ``(T, D)`` matrix into the ``(S, D)`` rows the
model sees (their ``specvqgan/data/vas.py: VASFeats.__getitem__`` and
``feature_extraction/demo_utils.py: ExtractResNet50.post_transforms``, commit 33c601d):

dataset chain (:func:`prepare_features`)
    1. ``[RGB | flow]`` concatenated on the channel axis (:func:`concat_streams`);
    2. zero-padded or trimmed to ``feat_len`` = 215 rows in a **float64** buffer
       (:func:`pad_or_trim`): short clips get zero rows at the end;
    3. centre crop to ``feat_crop_len`` = 212 rows, offset ``(215 - 212) // 2 = 1``
       (:func:`center_crop_rows`);
    4. ``ResampleFrames``: rows ``int32(linspace(0, 212, S, endpoint=False)) + 212 // (S + 1)``
       of the crop, each optionally repeated ``times_to_repeat`` times
       (:func:`resample_frames_index`). S = 1 picks crop row 106 (input row 107); S = 5 picks
       crop rows 35, 77, 119, 162, 204; S = 212 keeps every row.

demo chain (``FeatureSettings(tile_short=True)``, :func:`prepare_features_demo`)
    step 2 is ``LeftmostCropOrTile(215)`` instead (:func:`leftmost_crop_or_tile`): a matrix of
    ``T != 215`` rows is tiled ``1 + 215 // T`` times and cut to its first 215 rows, so a short
    clip repeats instead of ending in zeros (the demo's extractor returns float64, via
    ``.tolist()``; both chains here return float64).

The output of either chain is float64 ``(S * r, D)`` (``r`` = ``times_to_repeat`` or 1); a batch
of them becomes the transformer's float32 ``(B, D, S)`` input with :func:`to_transformer_input`.
The "no feats" baseline replaces both streams by uniform noise (:func:`random_features`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from audiorep.convert.feature_pickle import FeatureFileError, read_feature_array

PathLike = Union[str, "os.PathLike[str]"]

#: Frames per second of every feature matrix the authors extract.
FEATURE_FPS = 21.5
#: Rows a 10-s clip gives at :data:`FEATURE_FPS` (``cfg: feat_len``).
FEAT_LEN = 215
#: Rows kept by the centre crop (``cfg: feat_crop_len``).
FEAT_CROP_LEN = 212
#: Channels the transformer's condition embedder takes (``cfg: feat_depth``).
FEAT_DEPTH = 2048

#: The authors' feature folders (specs: VAS ``<root>/<class>/<folder>/<vid>.pkl``, VGGSound
#: ``<root>/<folder>/<vid>.pkl``).
RGB_FOLDER = "feature_rgb_bninception_dim1024_21.5fps"
FLOW_FOLDER = "feature_flow_bninception_dim1024_21.5fps"
RESNET_FOLDER = "feature_resnet50_dim2048_21.5fps"
#: Feature kinds :func:`find_feature_files` knows: kind -> (first stream folder, flow folder).
FEATURE_KINDS: dict[str, tuple[str, str | None]] = {
    "bninception": (RGB_FOLDER, FLOW_FOLDER),
    "resnet50": (RESNET_FOLDER, None),
}
FEATURE_SUFFIX = ".pkl"


@dataclass(frozen=True)
class FeatureSettings:
    """How a feature matrix becomes the transformer's condition rows.

    Attributes:
        feat_len: rows after pad/trim (dataset) or crop/tile (demo); 215 = 10 s at 21.5 fps.
        feat_crop_len: rows kept by the centre crop (212).
        feat_sample_size: S, rows picked by ``ResampleFrames`` (1, 5 or 212 in the released
            models); at most ``feat_crop_len``.
        times_to_repeat: each picked row repeated this many times (``None`` or 1: no repeat;
            ``times_to_repeat_after_resample`` in the authors' configs).
        tile_short: use the demo's ``LeftmostCropOrTile`` instead of the dataset's zero pad.
    """

    feat_len: int = FEAT_LEN
    feat_crop_len: int = FEAT_CROP_LEN
    feat_sample_size: int = FEAT_CROP_LEN
    times_to_repeat: int | None = None
    tile_short: bool = False

    def __post_init__(self) -> None:
        for name in ("feat_len", "feat_crop_len", "feat_sample_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(
                    f"FeatureSettings.{name} must be a positive integer, got {value!r}"
                )
        if self.feat_crop_len > self.feat_len:
            raise ValueError(
                f"FeatureSettings: feat_crop_len {self.feat_crop_len} exceeds feat_len "
                f"{self.feat_len}"
            )
        if self.feat_sample_size > self.feat_crop_len:
            raise ValueError(
                f"FeatureSettings: feat_sample_size {self.feat_sample_size} exceeds the "
                f"{self.feat_crop_len} cropped rows it is sampled from"
            )
        r = self.times_to_repeat
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1):
            raise ValueError(f"FeatureSettings.times_to_repeat must be None or >= 1, got {r!r}")

    @property
    def output_rows(self) -> int:
        """Rows of the condition: ``feat_sample_size * times_to_repeat``."""
        r = self.times_to_repeat
        return self.feat_sample_size * (r if r and r > 1 else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSettings:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


# ----------------------------------------------------------------------------- steps


def _as_matrix(x: Any, what: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected a (frames, channels) matrix, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{what}: empty feature matrix (shape {arr.shape})")
    return arr


def concat_streams(rgb: np.ndarray, flow: np.ndarray | None = None) -> np.ndarray:
    """``[rgb | flow]`` on the channel axis: ``(T, D1)`` + ``(T, D2)`` -> ``(T, D1 + D2)``.

    With ``flow=None`` the (single-stream, e.g. ResNet-50) matrix is returned unchanged. Like
    the authors' ``np.concatenate``, both streams must have the same number of rows.
    """
    rgb = _as_matrix(rgb, "rgb features")
    if flow is None:
        return rgb
    flow = _as_matrix(flow, "flow features")
    if rgb.shape[0] != flow.shape[0]:
        raise ValueError(
            f"rgb and flow features have different frame counts ({rgb.shape[0]} vs "
            f"{flow.shape[0]}); they must come from the same video"
        )
    return np.concatenate((rgb, flow), axis=1)


def pad_or_trim(x: np.ndarray, feat_len: int = FEAT_LEN) -> np.ndarray:
    """float64 ``(feat_len, D)``: the first ``feat_len`` rows of ``x``, zero rows after them
    when ``x`` is shorter (the authors' float64 ``np.zeros`` buffer)."""
    x = _as_matrix(x, "features")
    out = np.zeros((feat_len, x.shape[1]), dtype=np.float64)
    n = min(feat_len, x.shape[0])
    out[:n] = x[:n]
    return out


def center_crop_rows(x: np.ndarray, crop_len: int = FEAT_CROP_LEN) -> np.ndarray:
    """Rows ``[o, o + crop_len)`` with ``o = (T - crop_len) // 2`` (albumentations'
    ``CenterCrop`` offset; 1 for 215 -> 212). Dtype kept."""
    x = np.asarray(x)
    t = x.shape[0]
    if crop_len > t:
        raise ValueError(f"cannot centre-crop {crop_len} rows from a {t}-row matrix")
    o = (t - crop_len) // 2
    return x[o : o + crop_len]


def resample_frames_index(
    crop_len: int, feat_sample_size: int, times_to_repeat: int | None = None
) -> np.ndarray:
    """The rows ``ResampleFrames`` picks from a ``crop_len``-row crop, int64 ``(S * r,)``.

    ``int32(linspace(0, crop_len, S, endpoint=False)) + crop_len // (S + 1)``: S evenly spaced
    rows shifted towards the middle of their stretch; then ``np.repeat(idx, r)`` when
    ``times_to_repeat = r > 1``. ``S = 1`` -> ``[106]``, ``S = 5`` -> ``[35, 77, 119, 162,
    204]``, ``S = 212`` -> ``0 .. 211`` (for ``crop_len = 212``).
    """
    crop_len, s = int(crop_len), int(feat_sample_size)
    if s < 1 or s > crop_len:
        raise ValueError(
            f"feat_sample_size must be in 1..{crop_len} (the cropped rows), got {feat_sample_size}"
        )
    idx = np.linspace(0, crop_len, s, endpoint=False, dtype=np.int32) + crop_len // (s + 1)
    if times_to_repeat is not None and times_to_repeat > 1:
        idx = np.repeat(idx, int(times_to_repeat))
    return idx.astype(np.int64)


def leftmost_crop_or_tile(x: np.ndarray, feat_len: int = FEAT_LEN) -> np.ndarray:
    """The demo's ``LeftmostCropOrTile``: ``x`` (any array, rows on axis 0) tiled
    ``1 + feat_len // T`` times along axis 0 and cut to its first ``feat_len`` rows.

    A no-op when ``T == feat_len``; a longer ``x`` keeps its first ``feat_len`` rows. Works on
    feature matrices ``(T, D)`` and on frame stacks ``(T, H, W, 3)`` alike. Dtype kept.
    """
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    t = x.shape[0] if x.ndim else 0
    if t < 1:
        raise ValueError("cannot tile an empty array (0 rows)")
    if t == feat_len:
        return x
    reps = 1 + feat_len // t
    return np.tile(x, (reps,) + (1,) * (x.ndim - 1))[:feat_len]


def random_features(
    rng: np.random.RandomState, feat_len: int = FEAT_LEN, feat_depth: int = FEAT_DEPTH
) -> np.ndarray:
    """The "no feats" condition: float32 ``(feat_len, feat_depth)`` uniform [0, 1) noise.

    As the authors' dataset with ``replace_feats_with_random``: an RGB stream
    ``rng.rand(feat_len, feat_depth // 2)`` is drawn first, then a flow stream the same way,
    each cast to float32, and the two are concatenated. Feed the result to
    :func:`prepare_features` (as ``rgb`` with ``flow=None``).
    """
    half = int(feat_depth) // 2
    rgb = rng.rand(int(feat_len), half).astype(np.float32)
    flow = rng.rand(int(feat_len), half).astype(np.float32)
    return np.concatenate((rgb, flow), axis=1)


# ----------------------------------------------------------------------------- chains


def prepare_features(
    rgb: np.ndarray,
    flow: np.ndarray | None = None,
    settings: FeatureSettings | None = None,
) -> np.ndarray:
    """The authors' dataset chain (module docstring): float64 ``(S * r, D)`` condition rows.

    Args:
        rgb: ``(T, D1)`` first stream (BN-Inception RGB, or ResNet-50 with ``flow=None``).
        flow: ``(T, D2)`` optical-flow stream or ``None``.
        settings: :class:`FeatureSettings`; ``tile_short=True`` swaps the zero pad for the
            demo's tiling (:func:`prepare_features_demo`).
    """
    settings = settings or FeatureSettings()
    feats = concat_streams(rgb, flow)
    if settings.tile_short:
        rows = leftmost_crop_or_tile(feats, settings.feat_len).astype(np.float64)
    else:
        rows = pad_or_trim(feats, settings.feat_len)
    crop = center_crop_rows(rows, settings.feat_crop_len)
    idx = resample_frames_index(
        settings.feat_crop_len, settings.feat_sample_size, settings.times_to_repeat
    )
    return np.ascontiguousarray(crop[idx])


def prepare_features_demo(
    features: np.ndarray, settings: FeatureSettings | None = None
) -> np.ndarray:
    """The demo chain: ``LeftmostCropOrTile(feat_len)`` -> centre crop -> ``ResampleFrames``,
    float64 ``(S * r, D)``, for a single-stream matrix such as ResNet-50 features of a video."""
    settings = replace(settings or FeatureSettings(), tile_short=True)
    return prepare_features(features, None, settings)


def load_feature_files(
    rgb_path: PathLike,
    flow_path: PathLike | None = None,
    settings: FeatureSettings | None = None,
) -> np.ndarray:
    """Feature files (``.pkl`` / ``.npy``) -> float64 ``(S * r, D)`` through
    :func:`prepare_features`.

    Raises:
        FeatureFileError: a file cannot be read (see
            :func:`audiorep.convert.feature_pickle.read_feature_array`), or the two streams
            have different frame counts (both files named).
    """
    rgb = read_feature_array(rgb_path)
    flow = None if flow_path is None else read_feature_array(flow_path)
    if flow is not None and flow.shape[0] != rgb.shape[0]:
        raise FeatureFileError(
            rgb_path,
            f"{rgb.shape[0]} frames, but the flow file {flow_path} has {flow.shape[0]}; "
            "both streams must come from the same video",
        )
    return prepare_features(rgb, flow, settings)


def source_rows(num_frames: int, settings: FeatureSettings | None = None) -> np.ndarray:
    """For each condition row of :func:`prepare_features`, the input frame it copies: int64
    ``(S * r,)``, ``-1`` for a zero-padding row (dataset chain on a clip shorter than
    ``feat_len``); with ``tile_short`` a tiled row ``j`` is frame ``j % num_frames``.

    Lets a caller run an expensive per-frame extractor on only the frames the condition uses
    (5 of 215 for ``S = 5``).
    """
    settings = settings or FeatureSettings()
    t = int(num_frames)
    if t < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    rows = np.arange(settings.feat_len, dtype=np.int64)
    rows = rows % t if settings.tile_short else np.where(rows < t, rows, -1)
    crop = center_crop_rows(rows, settings.feat_crop_len)
    idx = resample_frames_index(
        settings.feat_crop_len, settings.feat_sample_size, settings.times_to_repeat
    )
    return np.ascontiguousarray(crop[idx])


def to_transformer_input(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A batch of condition rows ``(B, S, D)`` (or one ``(S, D)``) -> float32 ``(B, D, S)``,
    as ``RawFeatsStage.get_input`` permutes it for the transformer's Conv1d embedder."""
    x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected (B, S, D) or (S, D) features, got shape {tuple(x.shape)}")
    return x.permute(0, 2, 1).to(torch.float32).contiguous()


# ----------------------------------------------------------------------------- folders


def find_feature_files(
    root: PathLike, video_id: str, kind: str = "bninception"
) -> tuple[Path, Path | None]:
    """The feature file(s) of one video in the authors' folder layout.

    Args:
        root: the features root: VAS ``data/vas/features`` (``<root>/<class>/<folder>/<vid>.pkl``)
            or VGGSound ``data/vggsound`` (``<root>/<folder>/<vid>.pkl``).
        video_id: ``<class>/<video>`` (a split-file row, VAS) or ``<video>``; for VAS without a
            class every class folder is searched.
        kind: ``"bninception"`` (RGB + flow) or ``"resnet50"``.

    Returns:
        ``(first stream path, flow path or None)``.

    Raises:
        ValueError: unknown kind; FileNotFoundError: no file (the paths tried are listed), or
        the video id is found under several classes.
    """
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; known: {', '.join(FEATURE_KINDS)}")
    first, second = FEATURE_KINDS[kind]
    root = Path(root)
    vid = video_id[: -len(FEATURE_SUFFIX)] if video_id.endswith(FEATURE_SUFFIX) else video_id
    parts = vid.replace("\\", "/").split("/")
    if len(parts) > 2 or not all(parts):
        raise ValueError(f"video id {video_id!r}: expected '<video>' or '<class>/<video>'")
    name = parts[-1] + FEATURE_SUFFIX
    if len(parts) == 2:
        bases = [root / parts[0]]
        tried = str(bases[0] / first / name)
    else:  # VGGSound's flat layout, or any VAS class folder
        bases = [root] + sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        tried = f"{root / first / name} or {root / '<class>' / first / name}"
    found = [b for b in bases if (b / first / name).is_file()]
    if not found:
        raise FileNotFoundError(f"no {kind} features for {video_id!r} (looked for {tried})")
    if len(found) > 1:
        classes = ", ".join(b.name for b in found[:5])
        raise FileNotFoundError(
            f"video {video_id!r} has {kind} features under several classes ({classes}); "
            "pass '<class>/<video>'"
        )
    base = found[0]
    flow = None
    if second is not None:
        flow = base / second / name
        if not flow.is_file():
            raise FileNotFoundError(f"{base / first / name} has no flow companion {flow}")
    return base / first / name, flow


__all__ = [
    "FEAT_DEPTH",
    "FEATURE_FPS",
    "FEATURE_KINDS",
    "FEAT_CROP_LEN",
    "FEAT_LEN",
    "FLOW_FOLDER",
    "FeatureSettings",
    "RESNET_FOLDER",
    "RGB_FOLDER",
    "center_crop_rows",
    "concat_streams",
    "find_feature_files",
    "leftmost_crop_or_tile",
    "load_feature_files",
    "pad_or_trim",
    "prepare_features",
    "prepare_features_demo",
    "random_features",
    "resample_frames_index",
    "source_rows",
    "to_transformer_input",
]
