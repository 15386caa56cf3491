"""Labelled mel spectrograms for training SpecVQGAN's two judges (VGGish-ish, Melception).

A :class:`ClipTable` lists clips (a ``_mel.npy`` file or an audio file), their class name and
their split; :class:`JudgeMelDataset` turns one split of it into model inputs. Four layouts
are read (docs/specvqgan_training.md, "Data layouts"):

* :func:`folder_clips`: a folder tree ``root/<class>/.../<file>``, mels or audio files;
* :func:`csv_clips`: a CSV with columns ``path,label[,split]`` (header optional; paths
  relative to the CSV's folder);
* :func:`vggsound_clips`: VGGSound's ``vggsound.csv`` (``youtube id, start s, label, split``)
  + a flat ``melspec_10s_22050hz/<id>_<start ms>_<end ms>_mel.npy`` folder + split files
  ``vggsound_{train,valid,test}.txt`` (made with the authors' rule when missing:
  :func:`vggsound_split_lists`);
* :func:`vas_clips`: VAS's ``<class>/melspec_10s_22050hz/<id>_mel.npy`` + split files
  ``vas_train.txt``, ``vas_valid.txt`` (and, beyond VAS, ``vas_test.txt``) listing
  ``<class>/<id>`` (made with the authors' rule when missing: :func:`vas_split_lists`).

Labels are the index of the class name in the sorted class names of the whole table (the
authors' ``label2target``). A table without splits gets a fixed, seeded, per-class split
(:func:`assign_splits`).

Transforms (the authors' ``train_vggishish.py`` / ``train_melception.py``): per-mel-bin
standardisation with the shipped VGGSound statistics
(:func:`audiorep.frontends.specvqgan.normalize_for_judges`), then a crop to 848 frames, then
float32. Their ``Crop`` is built without its ``random_crop`` argument, so it is a CENTRE crop
in training too (the config's ``random_crop: False`` is never read); :class:`JudgeMelDataset`
does the same by default and offers a seeded random crop for training (``random_crop=True``).
Audio files become the authors' dataset mel on the fly (:func:`audiorep.specvqgan.mels.load_clip`:
looped to 10 s, mono, 22 050 Hz; then :func:`audiorep.frontends.specvqgan.mel_spectrogram`).
"""

from __future__ import annotations

import csv
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

from audiorep.audio import AUDIO_EXTENSIONS
from audiorep.frontends.specvqgan import (
    CROP_FRAMES,
    N_MELS,
    load_judge_stats,
    mel_spectrogram,
    normalize_for_judges,
)
from audiorep.specvqgan.mels import MEL_FOLDER, MEL_SUFFIX, load_clip

#: Split names, in order.
SPLITS = ("train", "valid", "test")
#: Seed of the authors' VGGSound validation draw and of their training runs.
AUTHORS_SEED = 1337
#: VAS validation clips per class when the split files are regenerated (the authors' rule:
#: the last 128 clips of the four big classes, the last 64 of the others).
VAS_VALID_COUNTS = {"dog": 128, "fireworks": 128, "baby": 128, "drum": 128}
VAS_VALID_DEFAULT = 64
#: Fractions of :func:`assign_splits` (train, valid, test).
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
LAYOUTS = ("auto", "folder", "csv", "vggsound", "vas")


class ClipDataError(ValueError):
    """Bad input data; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class Clip:
    """One labelled clip: ``path`` (a ``_mel.npy`` or an audio file), class ``label``, ``split``
    (``"train"``, ``"valid"``, ``"test"`` or None when not yet assigned) and an id unique in
    its table (the VAS row ``<class>/<id>``, the VGGSound clip id, or the path)."""

    path: Path
    label: str
    split: str | None = None
    clip_id: str = ""

    @property
    def is_mel(self) -> bool:
        return self.path.name.endswith(".npy")


@dataclass
class ClipTable:
    """Clips with their labels and splits; ``classes`` sorted (index = target)."""

    clips: list[Clip]
    classes: tuple[str, ...] = field(default=())
    source: str = ""

    def __post_init__(self) -> None:
        if not self.clips:
            raise ClipDataError(f"{self.source or 'clip table'}: no clips found")
        if not self.classes:
            self.classes = tuple(sorted({c.label for c in self.clips}))
        missing = sorted({c.label for c in self.clips} - set(self.classes))
        if missing:
            raise ClipDataError(f"{self.source}: labels not among the classes: {missing[:8]}")
        for c in self.clips:
            if c.split is not None and c.split not in SPLITS:
                raise ClipDataError(f"{c.path}: unknown split {c.split!r} (use {SPLITS})")

    @property
    def has_splits(self) -> bool:
        return all(c.split is not None for c in self.clips)

    def split(self, name: str) -> list[Clip]:
        """The clips of split ``name``, in table order."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {SPLITS}")
        return [c for c in self.clips if c.split == name]

    def target(self, label: str) -> int:
        return self.classes.index(label)

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class: clips}}`` (splits without clips are left out)."""
        out: dict[str, dict[str, int]] = {}
        for s in SPLITS:
            n = Counter(c.label for c in self.split(s))
            if n:
                out[s] = {k: n[k] for k in self.classes if n[k]}
        return out

    def summary(self) -> str:
        """One line: clips per split and classes."""
        parts = [f"{s} {len(self.split(s))}" for s in SPLITS if self.split(s)]
        return f"{len(self.clips)} clips ({', '.join(parts)}), {len(self.classes)} classes"


# ------------------------------------------------------------------------------ splitting


def assign_splits(
    clips: Sequence[Clip],
    *,
    seed: int = AUTHORS_SEED,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> list[Clip]:
    """A fixed, seeded, per-class split of clips that have none.

    Per class (sorted by clip id, so the result does not depend on listing order), a
    permutation from ``numpy.random.default_rng([seed, class index])`` puts the first
    ``round(valid_fraction * n)`` clips in valid, the next ``round(test_fraction * n)`` in
    test and the rest in train; a class with at least 3 clips gets at least one of each.
    Clips that already have a split keep it.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not sum(fractions) > 0:
        raise ValueError(f"fractions must be three non-negative numbers, got {fractions}")
    total = sum(fractions)
    f_valid, f_test = fractions[1] / total, fractions[2] / total
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(clips):
        if c.split is None:
            by_class[c.label].append(i)
    out = list(clips)
    for k, label in enumerate(sorted(by_class)):
        idx = sorted(by_class[label], key=lambda i: (clips[i].clip_id, str(clips[i].path)))
        n = len(idx)
        n_valid, n_test = round(f_valid * n), round(f_test * n)
        if n >= 3:
            n_valid = max(n_valid, 1) if f_valid > 0 else 0
            n_test = max(n_test, 1) if f_test > 0 else 0
        n_valid, n_test = min(n_valid, n), min(n_test, n - min(n_valid, n))
        order = np.random.default_rng([seed, k]).permutation(n)
        for rank, j in enumerate(order):
            split = "valid" if rank < n_valid else "test" if rank < n_valid + n_test else "train"
            out[idx[j]] = replace(clips[idx[j]], split=split)
    return out


# --------------------------------------------------------------------------------- layouts


def _is_mel_file(p: Path) -> bool:
    return p.name.endswith(MEL_SUFFIX)


def _is_audio_file(p: Path) -> bool:
    return p.suffix.lower() in AUDIO_EXTENSIONS


def folder_clips(
    root: str | os.PathLike,
    *,
    kind: str = "auto",
    seed: int = AUTHORS_SEED,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> ClipTable:
    """Every file under ``root/<class>/`` (any depth below the class folder) is a clip of that
    class; split by :func:`assign_splits`.

    ``kind``: ``"mel"`` (``*_mel.npy`` only), ``"audio"`` (audio/video extensions of
    :mod:`audiorep.audio`) or ``"auto"`` (mels if there is any ``*_mel.npy`` under ``root``,
    else audio; a folder of audio files with their mels beside them counts each clip once).
    Hidden files and folders are skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise ClipDataError(f"{root}: not a folder")
    if kind not in ("auto", "mel", "audio"):
        raise ValueError(f"kind must be 'auto', 'mel' or 'audio', got {kind!r}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files: dict[str, list[Path]] = {}
    for cls in classes:
        found = []
        for dirpath, dirnames, filenames in os.walk(root / cls):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [Path(dirpath, f) for f in sorted(filenames) if not f.startswith(".")]
        files[cls] = found
    if kind == "auto":
        kind = "mel" if any(_is_mel_file(p) for v in files.values() for p in v) else "audio"
    keep = _is_mel_file if kind == "mel" else _is_audio_file
    clips = [
        Clip(p, cls, None, p.relative_to(root).as_posix())
        for cls in classes
        for p in files[cls]
        if keep(p)
    ]
    if not clips:
        raise ClipDataError(
            f"{root}: no {'*_mel.npy' if kind == 'mel' else 'audio'} files in <class>/ folders"
        )
    used = tuple(sorted({c.label for c in clips}))
    return ClipTable(assign_splits(clips, seed=seed, fractions=fractions), used, f"folder {root}")


def _csv_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [row for row in csv.reader(f) if row and any(x.strip() for x in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ClipDataError(f"{path}: unreadable CSV ({e})") from None


def csv_clips(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    seed: int = AUTHORS_SEED,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
) -> ClipTable:
    """Clips from a CSV ``path,label[,split]`` (one header row ``path,label[,split]`` allowed).

    Relative paths are taken from ``root`` (default: the CSV's folder). ``split`` is
    ``train``, ``valid`` (``val``/``validation`` accepted) or ``test``; rows without one are
    split by :func:`assign_splits`. Errors name the CSV and the row.
    """
    path = Path(path)
    base = Path(root) if root is not None else path.parent
    rows = _csv_rows(path)
    header = bool(rows) and [x.strip().lower() for x in rows[0][:2]] == ["path", "label"]
    clips = []
    for n, row in enumerate(rows[1:] if header else rows, start=2 if header else 1):
        where = f"{path}: row {n}"  # rows counted as in the file (header = row 1)
        cells = [x.strip() for x in row]
        if len(cells) not in (2, 3) or not cells[0] or not cells[1]:
            raise ClipDataError(f"{where}: expected 'path,label[,split]', got {row}")
        split = _split_name(cells[2], where) if len(cells) == 3 and cells[2] else None
        p = Path(cells[0])
        p = p if p.is_absolute() else base / p
        if not (p.suffix == ".npy" or _is_audio_file(p)):
            raise ClipDataError(f"{where}: {p} is neither a .npy mel nor an audio file")
        if not p.is_file():
            raise ClipDataError(f"{where}: missing {p}")
        clips.append(Clip(p, cells[1], split, cells[0]))
    if not clips:
        raise ClipDataError(f"{path}: no rows")
    return ClipTable(assign_splits(clips, seed=seed, fractions=fractions), (), f"csv {path}")


def _split_name(text: str, where: str) -> str:
    t = text.strip().lower()
    t = {"val": "valid", "validation": "valid", "dev": "valid"}.get(t, t)
    if t not in SPLITS:
        raise ClipDataError(f"{where}: unknown split {text!r} (use train, valid or test)")
    return t


def _read_list(path: Path) -> list[str]:
    try:
        return [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ClipDataError(f"{path}: unreadable split file ({e})") from None


def vas_split_lists(
    root: str | os.PathLike, valid_counts: dict[str, int] | None = None
) -> dict[str, list[str]]:
    """The authors' VAS split for a folder without split files: per class (files sorted), the
    last ``valid_counts[class]`` clips (default :data:`VAS_VALID_COUNTS`, 64 for other
    classes) go to valid, the rest to train. Rows are ``<class>/<id>``.

    Raises:
        ClipDataError: a class would be left without training clips (the rule is meant for
            VAS-sized classes; write split files or use the folder layout for small data).
    """
    root = Path(root)
    counts = dict(VAS_VALID_COUNTS if valid_counts is None else valid_counts)
    out: dict[str, list[str]] = {"train": [], "valid": []}
    for cls, ids in sorted(_vas_ids(root).items()):
        n_valid = counts.get(cls, VAS_VALID_DEFAULT)
        if n_valid >= len(ids):
            raise ClipDataError(
                f"{root / cls / MEL_FOLDER}: {len(ids)} clips, but the authors' VAS rule puts "
                f"the last {n_valid} in valid; write vas_train.txt / vas_valid.txt (rows "
                "<class>/<id>) or read the folder with layout 'folder'"
            )
        rows = [f"{cls}/{i}" for i in ids]
        out["train"] += rows[:-n_valid]
        out["valid"] += rows[-n_valid:]
    return out


def _vas_ids(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for d in sorted(root.iterdir()):
        mel_dir = d / MEL_FOLDER
        if d.is_dir() and mel_dir.is_dir():
            ids = sorted(p.name[: -len(MEL_SUFFIX)] for p in mel_dir.glob("*" + MEL_SUFFIX))
            if ids:
                found[d.name] = ids
    if not found:
        raise ClipDataError(f"{root}: no <class>/{MEL_FOLDER}/*{MEL_SUFFIX} files (VAS layout)")
    return found


def vas_clips(
    root: str | os.PathLike,
    *,
    splits_dir: str | os.PathLike | None = None,
    valid_counts: dict[str, int] | None = None,
) -> ClipTable:
    """VAS layout: ``root/<class>/melspec_10s_22050hz/<id>_mel.npy`` with split files
    ``vas_train.txt``, ``vas_valid.txt`` and optionally ``vas_test.txt`` in ``splits_dir``
    (default ``root``), rows ``<class>/<id>`` (e.g. ``dog/video_00000``).

    Without ``vas_train.txt`` / ``vas_valid.txt`` the split is :func:`vas_split_lists`'s
    (nothing is written). A listed clip whose file is missing raises, naming the split file
    and the row; clips not listed in any split file are left out (as the authors do).
    """
    root = Path(root)
    sdir = Path(splits_dir) if splits_dir is not None else root
    files = {s: sdir / f"vas_{s}.txt" for s in SPLITS}
    if files["train"].is_file() and files["valid"].is_file():
        lists = {s: _read_list(f) for s, f in files.items() if f.is_file()}
        where = {s: str(files[s]) for s in lists}
    else:
        lists = vas_split_lists(root, valid_counts)
        where = {s: f"{root} (authors' VAS split rule)" for s in lists}
    clips: list[Clip] = []
    seen: dict[str, str] = {}
    for split, rows in lists.items():
        for n, row in enumerate(rows, start=1):
            parts = PurePosixPath(row).parts
            if len(parts) != 2:
                raise ClipDataError(f"{where[split]}: row {n}: expected <class>/<id>, got {row!r}")
            if row in seen:
                raise ClipDataError(
                    f"{where[split]}: row {n}: {row} is also in the {seen[row]} split"
                )
            seen[row] = split
            cls, vid = parts
            p = root / cls / MEL_FOLDER / f"{vid}{MEL_SUFFIX}"
            if not p.is_file():
                raise ClipDataError(f"{where[split]}: row {n}: {row}: missing {p}")
            clips.append(Clip(p, cls, split, row))
    return ClipTable(clips, (), f"vas {root}")


def _vggsound_meta(csv_path: Path) -> dict[str, tuple[str, str]]:
    """``{youtube id: (label, official split)}`` of ``vggsound.csv``."""
    meta: dict[str, tuple[str, str]] = {}
    for n, row in enumerate(_csv_rows(csv_path), start=1):
        if len(row) < 4:
            raise ClipDataError(
                f"{csv_path}: row {n}: expected 'youtube id,start seconds,label,split', got {row}"
            )
        if n == 1 and row[3].strip().lower() not in ("train", "test"):
            continue  # a header row
        meta[row[0].strip()] = (row[2].strip(), row[3].strip().lower())
    if not meta:
        raise ClipDataError(f"{csv_path}: no rows")
    return meta


def vggsound_split_lists(
    csv_path: str | os.PathLike, mels_dir: str | os.PathLike, *, seed: int = AUTHORS_SEED
) -> dict[str, list[str]]:
    """The authors' VGGSound split of the available mels, for when the split files are missing.

    Test = clips of the official test videos. Valid = per class, a seeded random draw of the
    official train videos with as many videos as that class has in the official test set;
    train = the remaining train videos. Clip ids ``<11-char id>_<start ms>_<end ms>``; the
    video is the first 11 characters. (The authors shuffle Python sets, whose order changes
    with the interpreter's hash seed; here the videos are sorted first and drawn with
    ``random.Random(seed)``, so the split is reproducible.)
    """
    csv_path, mels_dir = Path(csv_path), Path(mels_dir)
    meta = _vggsound_meta(csv_path)
    test_counts = Counter(label for label, s in meta.values() if s == "test")
    by_class: dict[str, list[str]] = defaultdict(list)
    for vid, (label, s) in meta.items():
        if s == "train":
            by_class[label].append(vid)
    rng = random.Random(seed)
    valid_vids: set[str] = set()
    for label in sorted(by_class):
        vids = sorted(by_class[label])
        rng.shuffle(vids)
        valid_vids.update(vids[: test_counts[label]])
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for p in sorted(mels_dir.glob("*" + MEL_SUFFIX)):
        clip = p.name[: -len(MEL_SUFFIX)]
        vid = clip[:11]
        if vid not in meta:
            raise ClipDataError(f"{p}: video {vid} is not in {csv_path}")
        s = meta[vid][1]
        out["test" if s == "test" else "valid" if vid in valid_vids else "train"].append(clip)
    return out


def vggsound_clips(
    csv_path: str | os.PathLike,
    mels_dir: str | os.PathLike,
    *,
    splits_dir: str | os.PathLike | None = None,
    seed: int = AUTHORS_SEED,
) -> ClipTable:
    """VGGSound layout: ``vggsound.csv`` + ``mels_dir/<clip id>_mel.npy`` + split files
    ``vggsound_{train,valid,test}.txt`` (one clip id per row) in ``splits_dir`` (default: the
    CSV's folder). Without split files the split is :func:`vggsound_split_lists`'s (nothing
    is written). Classes are ALL labels of the CSV, sorted (309 for VGGSound), so targets match
    the released judges even when some classes have no clip here.
    """
    csv_path, mels_dir = Path(csv_path), Path(mels_dir)
    meta = _vggsound_meta(csv_path)
    classes = tuple(sorted({label for label, _ in meta.values()}))
    sdir = Path(splits_dir) if splits_dir is not None else csv_path.parent
    files = {s: sdir / f"vggsound_{s}.txt" for s in SPLITS}
    if all(f.is_file() for f in files.values()):
        lists = {s: _read_list(f) for s, f in files.items()}
        where = {s: str(f) for s, f in files.items()}
    else:
        lists = vggsound_split_lists(csv_path, mels_dir, seed=seed)
        where = {s: f"{mels_dir} (authors' VGGSound split rule)" for s in SPLITS}
    clips = []
    for split, ids in lists.items():
        for n, clip in enumerate(ids, start=1):
            vid = clip[:11]
            if vid not in meta:
                raise ClipDataError(f"{where[split]}: row {n}: video {vid} not in {csv_path}")
            p = mels_dir / f"{clip}{MEL_SUFFIX}"
            if not p.is_file():
                raise ClipDataError(f"{where[split]}: row {n}: missing {p}")
            clips.append(Clip(p, meta[vid][0], split, clip))
    return ClipTable(clips, classes, f"vggsound {mels_dir}")


def detect_layout(path: str | os.PathLike) -> str:
    """``csv`` for a file, ``vggsound`` for a folder holding ``vggsound.csv``, ``vas`` for a
    folder of ``<class>/melspec_10s_22050hz/`` folders, else ``folder``."""
    p = Path(path)
    if p.is_file():
        return "csv"
    if not p.is_dir():
        raise ClipDataError(f"{p}: no such file or folder")
    if (p / "vggsound.csv").is_file():
        return "vggsound"
    if any((d / MEL_FOLDER).is_dir() for d in p.iterdir() if d.is_dir()):
        return "vas"
    return "folder"


def load_clip_table(
    path: str | os.PathLike,
    layout: str = "auto",
    *,
    splits_dir: str | os.PathLike | None = None,
    mels_dir: str | os.PathLike | None = None,
    seed: int = AUTHORS_SEED,
) -> ClipTable:
    """Read ``path`` in ``layout`` (:data:`LAYOUTS`; ``auto``: :func:`detect_layout`).

    ``vggsound``: ``path`` is ``vggsound.csv`` or its folder; ``mels_dir`` defaults to
    ``<folder>/melspec_10s_22050hz``. ``seed`` drives the split of tables without one.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    p = Path(path)
    if layout == "auto":
        layout = detect_layout(p)
    if layout == "csv":
        return csv_clips(p, seed=seed)
    if layout == "folder":
        return folder_clips(p, seed=seed)
    if layout == "vas":
        return vas_clips(p, splits_dir=splits_dir)
    csv_path = p if p.is_file() else p / "vggsound.csv"
    mdir = Path(mels_dir) if mels_dir is not None else csv_path.parent / MEL_FOLDER
    return vggsound_clips(csv_path, mdir, splits_dir=splits_dir, seed=seed)


# --------------------------------------------------------------------------------- dataset


def read_mel(path: str | os.PathLike, *, min_frames: int = CROP_FRAMES) -> np.ndarray:
    """A ``_mel.npy`` file: float ``(80, W)`` with ``W >= min_frames``, finite; returned as
    float32. Raises :class:`ClipDataError` naming the file otherwise."""
    path = Path(path)
    try:
        spec = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ClipDataError(f"{path}: unreadable .npy ({e})") from None
    return _check_mel(spec, path, min_frames)


def _check_mel(spec: np.ndarray, path: Path, min_frames: int) -> np.ndarray:
    if spec.ndim != 2 or spec.shape[0] != N_MELS or not np.issubdtype(spec.dtype, np.floating):
        raise ClipDataError(
            f"{path}: expected a float ({N_MELS}, frames) mel spectrogram, got "
            f"{spec.dtype} {spec.shape}"
        )
    if spec.shape[1] < min_frames:
        raise ClipDataError(
            f"{path}: {spec.shape[1]} frames, fewer than the {min_frames} the crop needs"
        )
    if not np.isfinite(spec).all():
        raise ClipDataError(f"{path}: contains NaN or infinite values")
    return spec.astype(np.float32, copy=False)


def audio_mel(path: str | os.PathLike, *, tile: bool = True) -> np.ndarray:
    """The authors' dataset mel of an audio file: float32 ``(80, 860)`` in [0, 1]
    (:func:`audiorep.specvqgan.mels.load_clip` + :func:`mel_spectrogram`)."""
    path = Path(path)
    try:
        clip = load_clip(path, tile=tile)
    except ValueError as e:  # AudioLoadError is a ValueError and names the file
        raise ClipDataError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
    return mel_spectrogram(clip).to(torch.float32).numpy()


def crop_offset(
    width: int, crop: int, *, random_crop: bool, seed: int, epoch: int, index: int
) -> int:
    """First column of the crop: centre (``(width - crop) // 2``, albumentations' rule) or, with
    ``random_crop``, uniform over ``0..width - crop`` from ``default_rng([seed, epoch, index])``
    (so a resumed or multi-worker run draws the same crops)."""
    if width < crop:
        raise ValueError(f"cannot crop {width} frames to {crop}")
    if not random_crop:
        return (width - crop) // 2
    return int(np.random.default_rng([seed, epoch, index]).integers(0, width - crop + 1))


class JudgeMelDataset(Dataset):
    """One split of a :class:`ClipTable` as judge inputs.

    Item ``i``: ``{"input": (80, crop_frames) float32, "target": int64 scalar, "index": i}``;
    the input is the [0, 1] mel standardised per mel bin (:func:`normalize_for_judges`) and
    cropped (centre, or seeded random with ``random_crop``: :func:`crop_offset`; call
    :meth:`set_epoch` each epoch).

    Args:
        clips: the split's clips; classes: the table's sorted class names.
        crop_frames: 848 as the authors (any width the model accepts works).
        random_crop: random crops (training only; the authors' crop is a centre crop).
        seed: of the random crops.
        stats: ``(means, stds)`` of :func:`load_judge_stats` (default: the shipped VGGSound
            statistics, as the authors use for both datasets).
        tile_audio: loop audio files shorter than 10 s before their mel (the authors'
            preparation); False zero-pads.
        cache: keep the [0, 1] mels in memory after the first read (worth it for audio files;
            ~275 kB per clip).
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        classes: Sequence[str],
        *,
        crop_frames: int = CROP_FRAMES,
        random_crop: bool = False,
        seed: int = AUTHORS_SEED,
        stats: tuple[torch.Tensor, torch.Tensor] | None = None,
        tile_audio: bool = True,
        cache: bool = False,
    ) -> None:
        super().__init__()
        self.clips = list(clips)
        self.classes = tuple(classes)
        self._targets = {c: i for i, c in enumerate(self.classes)}
        for c in self.clips:
            if c.label not in self._targets:
                raise ClipDataError(f"{c.path}: label {c.label!r} is not among the classes")
        self.crop_frames = int(crop_frames)
        self.random_crop = bool(random_crop)
        self.seed = int(seed)
        self.stats = stats if stats is not None else load_judge_stats()
        self.tile_audio = tile_audio
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        """Select the random crops of ``epoch`` (no effect with centre crops)."""
        self.epoch = int(epoch)

    @property
    def targets(self) -> list[int]:
        return [self._targets[c.label] for c in self.clips]

    def mel(self, index: int) -> np.ndarray:
        """The [0, 1] mel ``(80, W)`` float32 of clip ``index``, checked."""
        if index in self._cache:
            return self._cache[index]
        clip = self.clips[index]
        if clip.is_mel:
            spec = read_mel(clip.path, min_frames=self.crop_frames)
        else:
            spec = _check_mel(
                audio_mel(clip.path, tile=self.tile_audio), clip.path, self.crop_frames
            )
        if self.cache:
            self._cache[index] = spec
        return spec

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        spec = self.mel(index)
        start = crop_offset(
            spec.shape[1],
            self.crop_frames,
            random_crop=self.random_crop,
            seed=self.seed,
            epoch=self.epoch,
            index=index,
        )
        crop = torch.from_numpy(np.ascontiguousarray(spec[:, start : start + self.crop_frames]))
        return {
            "input": normalize_for_judges(crop, self.stats),
            "target": torch.tensor(self._targets[self.clips[index].label], dtype=torch.int64),
            "index": index,
        }


def epoch_batches(
    n: int,
    batch_size: int,
    *,
    epoch: int = 0,
    seed: int = AUTHORS_SEED,
    shuffle: bool = True,
    drop_last: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> list[list[int]]:
    """The batches of item indices one process uses in ``epoch``.

    Shuffled with ``numpy.random.default_rng([seed, epoch])`` (the same order on every rank
    and on every resume: nothing depends on global RNG state); with ``world_size > 1`` rank
    ``r`` takes every ``world_size``-th item starting at ``r``, cut to the same count on every
    rank (as ``DistributedSampler`` with ``drop_last``) when ``drop_last``. ``drop_last``
    drops a last short batch (the authors' training loader); evaluation uses
    ``shuffle=False, drop_last=False``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    mine = order[rank::world_size]
    if drop_last and world_size > 1:
        mine = mine[: n // world_size]
    stop = len(mine) - len(mine) % batch_size if drop_last else len(mine)
    return [mine[i : i + batch_size].tolist() for i in range(0, stop, batch_size)]


def table_from_clips(clips: Iterable[Clip], source: str = "") -> ClipTable:
    """A :class:`ClipTable` of ready clips (classes = their sorted labels)."""
    return ClipTable(list(clips), (), source)


__all__ = [
    "AUTHORS_SEED",
    "Clip",
    "ClipDataError",
    "ClipTable",
    "DEFAULT_FRACTIONS",
    "JudgeMelDataset",
    "LAYOUTS",
    "SPLITS",
    "VAS_VALID_COUNTS",
    "assign_splits",
    "audio_mel",
    "crop_offset",
    "csv_clips",
    "detect_layout",
    "epoch_batches",
    "folder_clips",
    "load_clip_table",
    "read_mel",
    "table_from_clips",
    "vas_clips",
    "vas_split_lists",
    "vggsound_clips",
    "vggsound_split_lists",
]
