"""The two sides of a FAD comparison: audio folders, embedding folders or statistics files.

:func:`open_set` looks at a path and returns an :class:`EmbeddingSet`:

* a folder with audio files (searched recursively) is embedded, file by file through the
  content-keyed cache, with model batches packed across files;
* a folder of ``.npz`` files written by ``audiorep embed`` (key ``embeddings``) or of ``.npy``
  arrays ``(N, D)`` (fadtk's per-file embeddings) is read as it is;
* a file is read as statistics (audiorep ``.npz`` with ``mu``/``sigma``, fadtk ``.npz``,
  google-research TFRecord), or, for ``.npy`` / an ``.npz`` with ``embeddings``, as one set of
  embeddings.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiorep.audio import AUDIO_EXTENSIONS
from audiorep.extract.engine import FileResult, embed_corpus
from audiorep.extract.inputs import InputItem
from audiorep.fad.cache import KEY_FIELDS, EmbeddingCache, file_sha256
from audiorep.metrics import GaussianStats, load_stats

EMBEDDING_EXTENSIONS = (".npz", ".npy")


class SetError(ValueError):
    """A side of the comparison cannot be used; the message names the path and the problem."""


@dataclass
class EmbeddingSet:
    """One side of a comparison.

    Attributes:
        source: the path given by the user.
        kind: ``"audio"``, ``"embeddings"`` or ``"stats"``.
        stats: float64 mean/covariance of all embeddings (always present).
        clips: ``{relative name: float32 (n_i, D)}`` in sorted order; ``None`` for ``stats``.
        settings: what produced the embeddings (model, weights, windowing...), when known.
        failures: ``[(path, reason)]`` of files that could not be used.
        empty: clips that gave no embeddings (shorter than one window).
        audio_seconds: duration of the audio embedded or read from the cache (``audio`` only).
        cache_hits: files whose embeddings came from the cache.
    """

    source: str
    kind: str
    stats: GaussianStats
    clips: dict[str, np.ndarray] | None = None
    settings: dict | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0
    cache_hits: int = 0

    @property
    def n(self) -> int | None:
        return self.stats.n

    @property
    def dim(self) -> int | None:
        return self.stats.dim

    @property
    def has_embeddings(self) -> bool:
        return self.clips is not None

    def embeddings(self) -> np.ndarray:
        """All embeddings ``(N, D)`` float32, clips in sorted order."""
        if self.clips is None:
            raise SetError(f"{self.source}: statistics only, no embeddings")
        parts = [x for x in self.clips.values() if x.shape[0]]
        if not parts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def describe(self) -> str:
        """One line: what the set is and how big."""
        if self.kind == "stats":
            n = "unknown n" if self.n is None else f"n = {self.n}"
            return f"{self.source} (statistics, {n}, d = {self.dim})"
        clips = len(self.clips or {})
        parts = [f"{clips} clips", f"{self.n} embeddings"]
        if self.audio_seconds:
            parts.append(f"{self.audio_seconds / 60:.1f} min of audio")
        if self.empty:
            parts.append(f"{len(self.empty)} too short for one window")
        if self.failures:
            parts.append(f"{len(self.failures)} failed")
        if self.cache_hits:
            parts.append(f"{self.cache_hits} from cache")
        return f"{self.source} ({self.kind}: {', '.join(parts)})"


def _scan(folder: Path) -> tuple[list[Path], list[Path]]:
    audio, emb = [], []
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        ext = f.suffix.lower()
        if ext in AUDIO_EXTENSIONS:
            audio.append(f)
        elif ext in EMBEDDING_EXTENSIONS:
            emb.append(f)
    return audio, emb


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _from_clips(
    source: str, kind: str, clips: dict[str, np.ndarray], settings: dict | None, **extra
) -> EmbeddingSet:
    dims = {x.shape[1] for x in clips.values() if x.ndim == 2 and x.shape[0]}
    if len(dims) > 1:
        raise SetError(f"{source}: embeddings of different sizes {sorted(dims)}")
    stats = GaussianStats(dims.pop() if dims else None, meta=settings or {})
    for x in clips.values():
        if x.shape[0]:
            stats.update(x)
    if not stats.n:
        raise SetError(f"{source}: no embeddings (every clip was empty or failed)")
    empty = [name for name, x in clips.items() if x.shape[0] == 0]
    return EmbeddingSet(source, kind, stats, clips, settings, empty=empty, **extra)


def _read_embedding_file(path: Path) -> tuple[np.ndarray, dict | None]:
    try:
        if path.suffix.lower() == ".npy":
            arr, settings = np.load(path, allow_pickle=False), None
        else:
            with np.load(path, allow_pickle=False) as data:
                if "embeddings" not in data.files:
                    raise SetError(f"{path}: no 'embeddings' array (keys: {data.files})")
                arr = data["embeddings"]
                settings = json.loads(str(data["settings"])) if "settings" in data.files else None
    except SetError:
        raise
    except (OSError, ValueError) as exc:
        raise SetError(f"{path}: cannot read embeddings ({exc})") from exc
    if arr.ndim != 2:
        raise SetError(f"{path}: embeddings must be 2-D (N, D), got shape {arr.shape}")
    if arr.dtype == np.float16:
        warnings.warn(
            f"{path}: float16 embeddings (fadtk's cache format); FAD from float16 differs "
            "from float32 by up to ~4e-5 relative",
            stacklevel=3,
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise SetError(f"{path}: embeddings must be floating point, got {arr.dtype}")
    if not np.isfinite(arr).all():
        raise SetError(f"{path}: embeddings contain NaN or infinite values")
    return arr.astype(np.float32, copy=False), settings


def _embedding_folder(root: Path, files: list[Path]) -> EmbeddingSet:
    clips: dict[str, np.ndarray] = {}
    seen: dict[str, tuple[str, dict]] = {}
    for f in files:
        arr, settings = _read_embedding_file(f)
        clips[_rel(f, root)] = arr
        if settings is not None:
            key = {k: settings.get(k) for k in KEY_FIELDS}
            sig = json.dumps(key, sort_keys=True)
            seen.setdefault(sig, (_rel(f, root), settings))
    if len(seen) > 1:
        (a, sa), (b, sb) = list(seen.values())[:2]
        diff = [k for k in KEY_FIELDS if sa.get(k) != sb.get(k)]
        raise SetError(f"{root}: files were embedded with different settings ({a} vs {b}: {diff})")
    settings = next(iter(seen.values()))[1] if seen else None
    return _from_clips(str(root), "embeddings", clips, settings)


def _audio_folder(
    root: Path,
    files: list[Path],
    bundle,
    cache: EmbeddingCache | None,
    batch_size: int,
    progress: bool,
) -> EmbeddingSet:
    clips: dict[str, np.ndarray] = {}
    failures: list[tuple[str, str]] = []
    digests: dict[Path, str] = {}
    todo: list[Path] = []
    seconds = 0.0
    hits = 0
    for f in files:
        if cache is None:
            todo.append(f)
            continue
        try:
            digests[f] = file_sha256(f)
        except OSError as exc:
            failures.append((str(f), f"cannot read: {exc}"))
            continue
        cached = cache.get(digests[f])
        if cached is None:
            todo.append(f)
        else:
            clips[_rel(f, root)] = cached
            hits += 1

    def take(result: FileResult) -> None:
        nonlocal seconds
        if result.error is not None:
            failures.append((str(result.item.path), result.error))
            return
        clips[result.item.rel] = result.embeddings
        seconds += result.duration
        if cache is not None:
            cache.put(digests[result.item.path], result.embeddings)

    # The corpus engine: model batches packed across files, long files streamed.
    items = [InputItem(f, _rel(f, root)) for f in todo]
    embed_corpus(bundle, items, take, batch_size=batch_size, progress=progress and bool(todo))
    clips = dict(sorted(clips.items()))
    return _from_clips(
        str(root),
        "audio",
        clips,
        bundle.settings(),
        failures=failures,
        audio_seconds=seconds,
        cache_hits=hits,
    )


def open_set(
    path: str | os.PathLike,
    *,
    bundle_factory: Callable[[], object] | None = None,
    cache_factory: Callable[[object], EmbeddingCache | None] | None = None,
    batch_size: int = 64,
    progress: bool = True,
    model: str | None = None,
) -> EmbeddingSet:
    """Read or compute one side of a comparison.

    Args:
        path: audio folder, embedding folder, statistics file or embedding file.
        bundle_factory: returns the model bundle, called only when audio must be embedded.
        cache_factory: given the bundle, returns the per-file embedding cache for audio
            folders (``None``: no caching).
        batch_size: examples per model batch.
        progress: show a progress bar while embedding.
        model: model key inside a fadtk statistics file.

    Raises:
        SetError: the path does not exist, holds nothing usable, or is inconsistent.
    """
    p = Path(path)
    if not p.exists():
        raise SetError(f"{p}: no such file or folder")
    if p.is_dir():
        audio, emb = _scan(p)
        if audio:
            if bundle_factory is None:
                raise SetError(f"{p}: audio folder, but no model to embed it with")
            bundle = bundle_factory()
            cache = cache_factory(bundle) if cache_factory is not None else None
            return _audio_folder(p, audio, bundle, cache, batch_size, progress)
        if emb:
            return _embedding_folder(p, emb)
        exts = ", ".join(sorted(AUDIO_EXTENSIONS | set(EMBEDDING_EXTENSIONS)))
        raise SetError(f"{p}: no audio or embedding files found (looked for {exts})")
    if p.suffix.lower() in AUDIO_EXTENSIONS:
        raise SetError(
            f"{p}: one audio file is not a set; put the audio in a folder and pass the folder "
            "(FAD compares distributions of many embeddings)"
        )
    if p.suffix.lower() == ".npy":
        arr, _ = _read_embedding_file(p)
        return _from_clips(str(p), "embeddings", {p.name: arr}, None)
    if p.suffix.lower() == ".npz":
        try:
            with np.load(p, allow_pickle=False) as data:
                is_embeddings = "embeddings" in data.files
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
            raise SetError(f"{p}: not a readable .npz ({exc})") from exc
        if is_embeddings:
            arr, settings = _read_embedding_file(p)
            return _from_clips(str(p), "embeddings", {p.name: arr}, settings)
    try:
        stats = load_stats(p, model=model)
    except (OSError, ValueError, KeyError) as exc:
        raise SetError(f"{p}: not a statistics file ({exc})") from exc
    settings = stats.meta if isinstance(stats.meta, Mapping) and stats.meta else None
    return EmbeddingSet(str(p), "stats", stats, None, dict(settings) if settings else None)


__all__ = ["EmbeddingSet", "SetError", "open_set"]
