"""Token datasets for SpecVQGAN's code transformer: clips -> codec codes -> 265-token sequences.

Every clip becomes the authors' transformer input (specs: SpecVQGAN §1.3, §3.3-3.4): its 10 s
dataset mel ``(80, 860)`` (looped to 10 s, 22 050 Hz), centre-cropped to 848 frames, mapped to
[-1, 1] and encoded by the (frozen) codec into a ``(5, 53)`` grid, read column by column into
265 tokens (sequence position ``w * 5 + h``). A :class:`TokenSet` holds the sequences of one
split with their conditions.

Two layouts:

* **class-labelled clips** (:func:`class_token_sets`): the VAS / sfx10 layout
  ``root/<class>/<id>.wav`` (or ``<class>/melspec_10s_22050hz/<id>_mel.npy``) with split
  files ``vas_train.txt``, ``vas_valid.txt``, ``vas_test.txt`` (rows ``<class>/<id>``);
  without split files any layout of
  :func:`audiorep.specvqgan.classifier_data.load_clip_table` (a ``<class>/`` folder tree is
  split 80/10/10 by its seeded rule). The condition is the class index (``(B, 1)``).
  **Augmentation** (training split only, audio files only): ``views`` extra views per clip, each
  a seeded random circular time shift of the clip's audio before it is looped to 10 s, and a
  random gain of at most ``max_gain_db`` dB, so that a few hundred clips give a few thousand
  different code sequences. View 0 is the clip as is.
* **feature-conditioned clips** (:func:`feature_token_sets`): the authors' layout
  ``root/<class>/melspec_10s_22050hz/<vid>_mel.npy`` + feature pickles, read through
  :mod:`audiorep.specvqgan.visual_features` (condition ``(B, 2048, S)`` features, and the
  class index for ``feature+class``).

Encoding is cached in an ``.npz`` (no pickle) whose name is a digest of the codec's weight
fingerprint, the clips' file contents and the view settings, so a changed codec or clip is
never served stale codes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from audiorep.atomic import write_bytes_atomic
from audiorep.audio import AUDIO_EXTENSIONS, load
from audiorep.frontends.specvqgan import (
    CLIP_SAMPLES,
    CLIP_SECONDS,
    CROP_FRAMES,
    SAMPLE_RATE,
    center_crop,
    mel_spectrogram,
    tile_seconds,
    to_model_range,
)
from audiorep.hashing import file_sha256, state_dict_sha256
from audiorep.models.vqgan import SpectrogramVQGAN, to_column_major
from audiorep.resample import resample
from audiorep.specvqgan.classifier_data import (
    SPLITS,
    Clip,
    ClipDataError,
    ClipTable,
    audio_mel,
    load_clip_table,
    read_mel,
)
from audiorep.specvqgan.mels import MEL_FOLDER, MEL_SUFFIX

#: Part of every cache key: bump when the tokens of a clip would change.
CACHE_VERSION = "audiorep-transformer-codes-v1"
KINDS = ("class", "feature", "feature+class")

PathLike = str | os.PathLike


@dataclass
class TokenSet:
    """Token sequences of one split and what conditions them.

    Attributes:
        tokens: ``(N, 265)`` int64 codes in sequence (column-major) order.
        targets: ``(N,)`` int64 class indices into ``classes`` (-1: no class).
        views: ``(N,)`` int64: 0 for a clip as is, k >= 1 for its k-th augmented view.
        clip_ids: ``N`` clip ids (``<class>/<id>``), one per row (views repeat their clip's).
        classes: class names in target order.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        features: ``(N, D, S)`` float32 feature conditions, or None.
    """

    tokens: torch.Tensor
    targets: torch.Tensor
    views: torch.Tensor
    clip_ids: list[str]
    classes: tuple[str, ...]
    split: str = "train"
    features: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.tokens.shape[0]
        if self.tokens.dim() != 2 or self.tokens.dtype != torch.long:
            raise ValueError(f"tokens must be (N, L) int64, got {self.tokens.dtype} "
                             f"{tuple(self.tokens.shape)}")  # fmt: skip
        if len(self.targets) != n or len(self.views) != n or len(self.clip_ids) != n:
            raise ValueError("tokens, targets, views and clip_ids must have one row per sequence")
        if self.features is not None and self.features.shape[0] != n:
            raise ValueError(f"features have {self.features.shape[0]} rows, tokens {n}")

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def sequence_length(self) -> int:
        return int(self.tokens.shape[1])

    def condition(self, index: torch.Tensor | Sequence[int], kind: str) -> Any:
        """The condition of rows ``index`` for a ``kind`` model: class ``(B, 1)`` int64,
        features ``(B, D, S)`` float32, or ``{"feature", "target"}`` for ``feature+class``."""
        index = torch.as_tensor(index, dtype=torch.long)
        if kind not in KINDS:
            raise ValueError(f"unknown conditioning kind {kind!r} (use {', '.join(KINDS)})")
        if "class" in kind:
            target = self.targets[index][:, None]
            if bool((target < 0).any()):
                raise ValueError(f"{self.split}: some rows have no class for a {kind!r} model")
            if kind == "class":
                return target
        if self.features is None:
            raise ValueError(f"{self.split}: no features for a {kind!r} model")
        feats = self.features[index]
        return feats if kind == "feature" else {"feature": feats, "target": target}

    def subset(self, index: torch.Tensor | Sequence[int]) -> TokenSet:
        """The rows ``index`` as a new set."""
        index = torch.as_tensor(index, dtype=torch.long)
        return TokenSet(
            self.tokens[index],
            self.targets[index],
            self.views[index],
            [self.clip_ids[i] for i in index.tolist()],
            self.classes,
            self.split,
            None if self.features is None else self.features[index],
        )

    def originals(self) -> TokenSet:
        """The view-0 rows (each clip once)."""
        return self.subset(torch.nonzero(self.views == 0).flatten())

    def summary(self) -> str:
        clips = len(set(self.clip_ids))
        return (
            f"{self.split}: {len(self)} sequences of {self.sequence_length} tokens ({clips} clips)"
        )


# --------------------------------------------------------------------------------- encoding


@torch.no_grad()
def encode_mels(
    codec: SpectrogramVQGAN,
    mels: Sequence[torch.Tensor | np.ndarray],
    *,
    batch_size: int = 16,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """``[0, 1]`` mels ``(80, W >= 848)`` -> ``(N, 265)`` int64 column-major tokens of their centre
    848 frames (the authors' transformer input, specs §1.3)."""
    dev = torch.device(device) if device is not None else next(codec.parameters()).device
    out = []
    for a in range(0, len(mels), batch_size):
        batch = torch.stack(
            [
                center_crop(torch.as_tensor(m, dtype=torch.float32), CROP_FRAMES)
                for m in mels[a : a + batch_size]
            ]
        )
        grid = codec.encode_to_codes(to_model_range(batch)[:, None].to(dev))
        out.append(to_column_major(grid).cpu())
    if not out:
        return torch.zeros(0, 5 * (CROP_FRAMES // 16), dtype=torch.long)
    return torch.cat(out)


def view_rng(seed: int, clip_id: str, view: int) -> np.random.Generator:
    """The generator of one augmented view (independent of every other clip and view)."""
    return np.random.default_rng([int(seed), zlib.crc32(clip_id.encode("utf-8")), int(view)])


def augmented_mel(wave: torch.Tensor, sample_rate: int, shift: int, gain_db: float) -> torch.Tensor:
    """The 10 s dataset mel ``(80, 860)`` of ``wave`` (``(channels, n)`` at ``sample_rate``)
    rotated left by ``shift`` samples before it is looped to 10 s, scaled by ``gain_db`` dB.

    ``shift = 0``, ``gain_db = 0`` gives the authors' dataset mel
    (:func:`audiorep.specvqgan.mels.load_clip` then :func:`mel_spectrogram`)."""
    mono = wave.to(torch.float64).mean(dim=0)
    mono = torch.roll(mono, -int(shift))
    clip = tile_seconds(mono, sample_rate, CLIP_SECONDS)
    clip = resample(clip, sample_rate, SAMPLE_RATE)
    n = clip.shape[-1]
    clip = (
        torch.nn.functional.pad(clip, (0, CLIP_SAMPLES - n))
        if n < CLIP_SAMPLES
        else clip[:CLIP_SAMPLES]
    )
    clip = clip * (10.0 ** (float(gain_db) / 20.0))
    return mel_spectrogram(clip).to(torch.float32)


def clip_view_mels(
    path: PathLike, clip_id: str, views: int, *, seed: int = 0, max_gain_db: float = 3.0
) -> list[torch.Tensor]:
    """``views`` augmented mels ``(80, 860)`` of the audio file ``path`` (module docstring):
    view k (1..views) rotates the clip by a uniform random number of samples and scales it by
    U(-max_gain_db, max_gain_db) dB, both drawn from :func:`view_rng` ``(seed, clip_id, k)``."""
    if views <= 0:
        return []
    wave, sr = load(path)
    n = wave.shape[-1]
    out = []
    for k in range(1, views + 1):
        rng = view_rng(seed, clip_id, k)
        shift = int(rng.integers(0, n))
        gain = float(rng.uniform(-max_gain_db, max_gain_db)) if max_gain_db > 0 else 0.0
        out.append(augmented_mel(wave, sr, shift, gain))
    return out


# --------------------------------------------------------------------------------- the clips


def _audio_beside(root: Path, row: str) -> Path | None:
    """``root/<class>/<id>.<audio ext>``, if there is one."""
    folder = root / PurePosixPath(row).parent
    stem = PurePosixPath(row).name
    if folder.is_dir():
        for p in sorted(folder.iterdir()):  # not glob: ids may hold glob characters
            if p.stem == stem and p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                return p
    return None


def class_clip_table(root: PathLike) -> ClipTable:
    """The labelled clips of ``root`` (module docstring): with ``vas_train.txt`` and
    ``vas_valid.txt`` (and optionally ``vas_test.txt``), rows ``<class>/<id>`` resolved to the
    audio file ``<class>/<id>.<ext>`` when there is one, else to the mel
    ``<class>/melspec_10s_22050hz/<id>_mel.npy``; otherwise
    :func:`~audiorep.specvqgan.classifier_data.load_clip_table`'s reading of ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise ClipDataError(f"{root}: not a folder")
    files = {s: root / f"vas_{s}.txt" for s in SPLITS}
    if not (files["train"].is_file() and files["valid"].is_file()):
        return load_clip_table(root)
    clips: list[Clip] = []
    seen: dict[str, str] = {}
    for split, f in files.items():
        if not f.is_file():
            continue
        try:
            rows = [x.strip() for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ClipDataError(f"{f}: unreadable split file ({e})") from None
        for n, row in enumerate(rows, start=1):
            parts = PurePosixPath(row).parts
            if len(parts) != 2 or ".." in parts:
                raise ClipDataError(f"{f}: row {n}: expected <class>/<id>, got {row!r}")
            if row in seen:
                raise ClipDataError(f"{f}: row {n}: {row} is also in the {seen[row]} split")
            seen[row] = split
            path = _audio_beside(root, row)
            if path is None:
                path = root / parts[0] / MEL_FOLDER / f"{parts[1]}{MEL_SUFFIX}"
                if not path.is_file():
                    raise ClipDataError(
                        f"{f}: row {n}: {row}: no audio file {root / row}.* and no mel {path}"
                    )
            clips.append(Clip(path, parts[0], split, row))
    return ClipTable(clips, (), f"clips {root}")


def _clip_mel(clip: Clip) -> torch.Tensor:
    if clip.is_mel:
        return torch.from_numpy(read_mel(clip.path))
    return torch.from_numpy(audio_mel(clip.path))


def _cache_key(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zlib.error):
        return None  # a damaged cache entry is recomputed


def _sets_from_arrays(a: Mapping[str, np.ndarray], classes: tuple[str, ...]) -> dict[str, TokenSet]:
    out = {}
    splits = a["split"].astype(str)
    for s in SPLITS:
        idx = np.nonzero(splits == s)[0]
        if idx.size == 0:
            continue
        feats = a.get("features")
        out[s] = TokenSet(
            torch.from_numpy(a["tokens"][idx].astype(np.int64)),
            torch.from_numpy(a["targets"][idx].astype(np.int64)),
            torch.from_numpy(a["views"][idx].astype(np.int64)),
            [str(x) for x in a["clip_ids"][idx]],
            classes,
            s,
            None if feats is None else torch.from_numpy(feats[idx].astype(np.float32)),
        )
    return out


def class_token_sets(
    root: PathLike,
    codec: SpectrogramVQGAN,
    *,
    views: int = 0,
    seed: int = 0,
    max_gain_db: float = 3.0,
    cache_dir: PathLike | None = None,
    batch_size: int = 16,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, TokenSet]:
    """``{split: TokenSet}`` of the class-labelled clips under ``root`` (module docstring).

    Args:
        root: the clip folder (:func:`class_clip_table`).
        codec: the frozen codec whose codes the transformer will model.
        views: augmented views per training clip (audio files only; 0: none).
        seed / max_gain_db: the augmentation's seed and gain range (dB).
        cache_dir: where the encoded tokens are cached (None: not cached).
        batch_size: clips per codec forward pass.

    Raises:
        ClipDataError: unreadable layout or clip (naming the file).
    """
    if views < 0 or max_gain_db < 0:
        raise ValueError(f"views and max_gain_db must be >= 0, got {views}, {max_gain_db}")
    table = class_clip_table(root)
    if not table.has_splits:
        raise ClipDataError(f"{root}: some clips have no split")
    classes = tuple(table.classes)
    codec_sha = state_dict_sha256(codec)
    cache_file = None
    if cache_dir is not None:
        listing = [
            [c.clip_id, c.label, c.split, file_sha256(c.path), int(not c.is_mel)]
            for c in table.clips
        ]
        key = _cache_key({
            "version": CACHE_VERSION, "codec_sha256": codec_sha, "views": int(views),
            "seed": int(seed), "max_gain_db": float(max_gain_db), "clips": listing,
            "classes": list(classes),
        })  # fmt: skip
        cache_file = Path(cache_dir) / f"tokens-{key[:20]}.npz"
        cached = _load_npz(cache_file) if cache_file.is_file() else None
        if cached is not None:
            if log:
                log(f"token cache: {cache_file}")
            return _sets_from_arrays(cached, classes)
    was_training = codec.training
    codec.eval()
    tokens, targets, view_ids, clip_ids, splits = [], [], [], [], []
    pending: list[torch.Tensor] = []
    meta: list[tuple[str, int, int, str]] = []

    def flush() -> None:
        if pending:
            tokens.append(encode_mels(codec, pending, batch_size=batch_size))
            for cid, target, v, s in meta:
                clip_ids.append(cid)
                targets.append(target)
                view_ids.append(v)
                splits.append(s)
            pending.clear()
            meta.clear()

    no_audio = 0
    try:
        for clip in tqdm(table.clips, "encoding clips", disable=not progress, leave=False):
            target = table.target(clip.label)
            mels = [_clip_mel(clip)]
            if clip.split == "train" and views:
                if clip.is_mel:
                    no_audio += 1
                else:
                    try:
                        mels += clip_view_mels(
                            clip.path, clip.clip_id, views, seed=seed, max_gain_db=max_gain_db
                        )
                    except ValueError as e:
                        raise ClipDataError(str(e) if str(clip.path) in str(e)
                                            else f"{clip.path}: {e}") from None  # fmt: skip
            for v, mel in enumerate(mels):
                pending.append(mel)
                meta.append((clip.clip_id, target, v, str(clip.split)))
            if len(pending) >= batch_size:
                flush()
        flush()
    finally:
        codec.train(was_training)
    if no_audio and log:
        log(f"{no_audio} training clips are mels only: no augmented views for them")
    arrays = {
        "tokens": torch.cat(tokens)
        .numpy()
        .astype(np.int16 if codec.config.n_embed <= 32767 else np.int64),
        "targets": np.asarray(targets, dtype=np.int64),
        "views": np.asarray(view_ids, dtype=np.int64),
        "clip_ids": np.asarray(clip_ids, dtype=str),
        "split": np.asarray(splits, dtype=str),
        "classes": np.asarray(classes, dtype=str),
        "codec_sha256": np.asarray(codec_sha),
    }
    if cache_file is not None:
        _save_npz(cache_file, arrays)
    return _sets_from_arrays(arrays, classes)


# --------------------------------------------------------------------------- feature layout


def feature_token_sets(
    root: PathLike,
    codec: SpectrogramVQGAN,
    *,
    feature_kind: str = "bninception",
    settings: Any = None,
    splits_dir: PathLike | None = None,
    cache_dir: PathLike | None = None,
    batch_size: int = 16,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, TokenSet]:
    """``{split: TokenSet}`` of the authors' feature-conditioned layout: ``root/<class>/
    melspec_10s_22050hz/<vid>_mel.npy`` with the feature files
    ``root/<class>/<feature folder>/<vid>.pkl`` of ``feature_kind`` (``"bninception"``: RGB |
    flow, ``"resnet50"``), turned into condition rows by
    :func:`audiorep.specvqgan.visual_features.load_feature_files` with ``settings`` (a
    ``FeatureSettings``: ``feat_sample_size`` and the rest; default S = 212); splits from the
    ``vas_*.txt`` files (:func:`~audiorep.specvqgan.classifier_data.vas_clips`). Every row
    carries its class too, so the same sets train ``feature`` and ``feature+class`` models.
    No augmentation. Features are ``(N, D, S)`` float32.
    """
    from audiorep.specvqgan import visual_features as vf
    from audiorep.specvqgan.classifier_data import vas_clips

    settings = settings if settings is not None else vf.FeatureSettings()
    table = vas_clips(root, splits_dir=splits_dir)
    classes = tuple(table.classes)
    codec_sha = state_dict_sha256(codec)
    files = []
    for clip in table.clips:
        try:
            files.append(vf.find_feature_files(root, clip.clip_id, feature_kind))
        except FileNotFoundError as e:
            raise ClipDataError(str(e)) from None
    cache_file = None
    if cache_dir is not None:
        listing = [
            [c.clip_id, c.label, c.split, file_sha256(c.path)]
            + [file_sha256(f) for f in fs if f is not None]
            for c, fs in zip(table.clips, files)
        ]
        key = _cache_key({
            "version": CACHE_VERSION, "codec_sha256": codec_sha, "clips": listing,
            "classes": list(classes), "features": settings.to_dict(), "kind": feature_kind,
        })  # fmt: skip
        cache_file = Path(cache_dir) / f"feature-tokens-{key[:20]}.npz"
        cached = _load_npz(cache_file) if cache_file.is_file() else None
        if cached is not None:
            if log:
                log(f"token cache: {cache_file}")
            return _sets_from_arrays(cached, classes)
    mels, feats = [], []
    for clip, (first, flow) in tqdm(
        list(zip(table.clips, files)), "reading clips", disable=not progress, leave=False
    ):
        mels.append(torch.from_numpy(read_mel(clip.path)))
        try:
            feats.append(vf.load_feature_files(first, flow, settings).astype(np.float32))
        except ValueError as e:  # FeatureFileError names the file
            raise ClipDataError(str(e)) from None
    was = codec.training
    codec.eval()
    try:
        tokens = encode_mels(codec, mels, batch_size=batch_size)
    finally:
        codec.train(was)
    features = np.ascontiguousarray(np.stack(feats).transpose(0, 2, 1))  # (N, S, D) -> (N, D, S)
    arrays = {
        "tokens": tokens.numpy().astype(np.int64),
        "targets": np.asarray([table.target(c.label) for c in table.clips], dtype=np.int64),
        "views": np.zeros(len(table.clips), dtype=np.int64),
        "clip_ids": np.asarray([c.clip_id for c in table.clips], dtype=str),
        "split": np.asarray([str(c.split) for c in table.clips], dtype=str),
        "classes": np.asarray(classes, dtype=str),
        "features": features,
        "codec_sha256": np.asarray(codec_sha),
    }
    if cache_file is not None:
        _save_npz(cache_file, arrays)
    if log:
        log(f"{len(table.clips)} clips, features (D, S) = {features.shape[1:]}")
    return _sets_from_arrays(arrays, classes)


def concat_sets(sets: Iterable[TokenSet]) -> TokenSet:
    """Rows of several sets of the same classes, in order."""
    sets = list(sets)
    if not sets:
        raise ValueError("nothing to concatenate")
    feats = [s.features for s in sets]
    return TokenSet(
        torch.cat([s.tokens for s in sets]),
        torch.cat([s.targets for s in sets]),
        torch.cat([s.views for s in sets]),
        [c for s in sets for c in s.clip_ids],
        sets[0].classes,
        sets[0].split,
        None if any(f is None for f in feats) else torch.cat(feats),  # type: ignore[arg-type]
    )


__all__ = [
    "CACHE_VERSION",
    "TokenSet",
    "augmented_mel",
    "class_clip_table",
    "class_token_sets",
    "clip_view_mels",
    "concat_sets",
    "encode_mels",
    "feature_token_sets",
    "view_rng",
]
