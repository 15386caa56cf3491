"""A per-file embedding cache keyed by file content and embedding settings.

Layout: ``<root>/<settings id>/settings.json`` describes the pipeline (model, weights sha256,
windowing, output layer, precisions); ``<root>/<settings id>/<aa>/<sha256 of file>.npy``
holds one file's float32 ``(N, D)`` embeddings. The key is the file's *content*, so renamed or
copied files hit the cache and an edited file never returns stale embeddings. Embeddings are
stored as float32, never float16 (fadtk's float16 cache shifts FAD by ~4e-5 relative).
Entries are written atomically (temp file + rename): an interrupted run leaves no partial entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from audiorep.extract.writers import write_bytes_atomic, write_npy_atomic
from audiorep.hashing import file_sha256  # noqa: F401 - re-exported for fad.sources
from audiorep.pipelines import EMBEDDING_KEY_FIELDS as KEY_FIELDS


def settings_id(settings: Mapping[str, object]) -> str:
    """A short stable id of the fields of ``settings`` that determine the embeddings."""
    missing = [k for k in KEY_FIELDS if k not in settings]
    if missing:
        raise ValueError(f"settings lack {missing}; cannot key the cache")
    key = {k: settings[k] for k in KEY_FIELDS}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


class EmbeddingCache:
    """Embeddings of audio files under one set of settings.

    Args:
        root: cache folder (e.g. ``~/.cache/audiorep/embeddings``).
        settings: the bundle's ``settings()``; only :data:`KEY_FIELDS` form the key.
    """

    def __init__(self, root: str | os.PathLike, settings: Mapping[str, object]) -> None:
        self.root = Path(root)
        self.settings = dict(settings)
        self.dir = self.root / settings_id(settings)
        self.hits = 0
        self.misses = 0

    def path_for(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        """The cached ``(N, D)`` float32 embeddings for a content digest, or ``None``."""
        p = self.path_for(digest)
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError):  # absent, or unreadable: recompute (and overwrite)
            self.misses += 1
            return None
        self.hits += 1
        return arr

    def put(self, digest: str, embeddings: np.ndarray) -> Path:
        """Store float32 embeddings atomically; returns the entry's path."""
        if not (self.dir / "settings.json").exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            key = {k: self.settings.get(k) for k in KEY_FIELDS}
            write_bytes_atomic(self.dir / "settings.json", json.dumps(key, indent=2).encode())
        return write_npy_atomic(self.path_for(digest), np.asarray(embeddings, dtype=np.float32))


__all__ = ["EmbeddingCache", "file_sha256", "settings_id", "KEY_FIELDS"]
