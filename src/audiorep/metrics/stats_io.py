"""Read and write Gaussian statistics in the formats of other FAD tools.

Formats, as verified against the peers' sources (no TensorFlow or fadtk is needed here):

* **google-research** ``frechet_audio_distance`` (``create_embeddings_beam.py``,
  ``fad_utils.read_mean_and_covariances``): a TFRecord file whose first record is a serialised
  ``tf.train.Example`` with features ``mu`` (float_list, d), ``sigma`` (float_list, d*d, row
  major), ``embedding_length`` (int64_list, [d]) and ``embedding_count`` (int64_list, [n]).
  Values are **float32** on disk (``FloatList``) and become float64 here. Read with
  :mod:`audiorep.data` (CRC-checked TFRecord framing, protobuf ``Example`` codec, which
  round-trips the TF-written AudioSet shards byte for byte).
* **fadtk**: (a) ``.npz`` packs with keys ``<model>.mu`` / ``<model>.cov`` (``fadtk.package``,
  e.g. the shipped ``fma_pop.npz``); (b) a cache folder ``<dir>/stats/<model>/mu.npy`` and
  ``cov.npy`` (``FrechetAudioDistance.load_stats``). Neither stores the sample count, so the
  loaded :class:`GaussianStats` has ``n = None`` (comparable, not mergeable).
* **audiorep**: :meth:`GaussianStats.save` / :meth:`GaussianStats.load` (``mu``, ``sigma``,
  ``n``, ``meta``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from audiorep.metrics.stats import GaussianStats


def load_google_stats(path: str | Path) -> GaussianStats:
    """Statistics written by google-research ``create_embeddings_main --stats`` (TFRecord)."""
    from audiorep.data.example import parse_example
    from audiorep.data.tfrecord import TFRecordReader

    records = list(TFRecordReader(path))
    if not records:
        raise ValueError(f"{path}: empty TFRecord")
    feats = parse_example(records[0])
    try:
        mu = np.asarray(feats["mu"], dtype=np.float64)
        sigma_flat = np.asarray(feats["sigma"], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"{path}: no mu/sigma features (empty statistics?)") from exc
    lengths = feats.get("embedding_length")
    d = int(lengths[0]) if lengths is not None and len(lengths) else mu.shape[0]
    counts = feats.get("embedding_count")
    n = int(counts[0]) if counts is not None and len(counts) else None
    if mu.shape[0] != d or sigma_flat.shape[0] != d * d:
        raise ValueError(
            f"{path}: inconsistent sizes (d={d}, mu {mu.shape}, sigma {sigma_flat.shape})"
        )
    meta = {"source": "google-research", "path": str(path), "storage_dtype": "float32"}
    return GaussianStats.from_moments(mu, sigma_flat.reshape(d, d), n, meta=meta)


def load_fadtk_stats(path: str | Path, model: str | None = None) -> GaussianStats:
    """fadtk statistics: an ``.npz`` pack (needs ``model``) or ``<dir>/stats/<model>/``.

    ``path`` may also point directly at a folder holding ``mu.npy`` and ``cov.npy``.
    """
    p = Path(path)
    if p.is_file():
        with np.load(p, allow_pickle=False) as data:
            if model is None:
                models = sorted({k.rsplit(".", 1)[0] for k in data.files if k.endswith(".mu")})
                raise ValueError(f"{p}: give model=, one of {models}")
            if f"{model}.mu" not in data or f"{model}.cov" not in data:
                raise ValueError(f"{p} has no statistics for model {model!r}")
            mu, cov = data[f"{model}.mu"], data[f"{model}.cov"]
    else:
        folder = p if (p / "mu.npy").exists() else p / "stats" / str(model)
        if not (folder / "mu.npy").exists():
            raise ValueError(f"no fadtk statistics in {p} (looked for {folder}/mu.npy)")
        mu, cov = np.load(folder / "mu.npy"), np.load(folder / "cov.npy")
    meta = {"source": "fadtk", "path": str(p), "model": model}
    return GaussianStats.from_moments(mu, cov, None, meta=meta)


def save_fadtk_stats(stats: GaussianStats, path: str | Path, model: str) -> Path:
    """Write (or add to) a fadtk ``.npz`` pack: keys ``<model>.mu`` and ``<model>.cov``."""
    p = Path(path)
    data: dict[str, np.ndarray] = {}
    if p.exists():
        with np.load(p, allow_pickle=False) as old:
            data = {k: old[k] for k in old.files}
    data[f"{model}.mu"] = stats.mean
    data[f"{model}.cov"] = stats.cov
    with open(p, "wb") as fh:
        np.savez(fh, **data)
    return p


class StatsFormatError(ValueError):
    """A statistics file could not be read; the message names the file and the problem."""


def load_stats(path: str | Path, *, model: str | None = None) -> GaussianStats:
    """Load statistics of any supported format (audiorep npz, fadtk npz/folder, google TFRecord).

    Raises:
        FileNotFoundError: no such file or folder.
        StatsFormatError: anything else that stops reading it (a damaged zip or TFRecord,
            missing arrays, pickled objects, inconsistent shapes), naming the file.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such statistics file: {p}")
    try:
        return _load_stats(p, model)
    except StatsFormatError:
        raise
    except (
        ValueError,
        KeyError,
        OSError,
        EOFError,
        zipfile.BadZipFile,
        NotImplementedError,
        RuntimeError,
    ) as exc:  # fmt: skip - zipfile: unsupported versions, encryption
        text = str(exc)
        where = "" if str(p) in text else f"{p}: "
        raise StatsFormatError(f"{where}not a readable statistics file ({text})") from None


def _load_stats(p: Path, model: str | None) -> GaussianStats:
    if p.is_dir():
        return load_fadtk_stats(p, model)
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic.startswith(b"PK"):  # zip: an .npz
        with np.load(p, allow_pickle=False) as data:
            ours = "mu" in data.files and "sigma" in data.files
        return GaussianStats.load(p) if ours else load_fadtk_stats(p, model)
    return load_google_stats(p)
