"""Read and write Gaussian statistics in the formats of other FAD tools.

Formats, as verified against the peers' sources (no TensorFlow or fadtk is needed here):

* **google-research** ``frechet_audio_distance`` (``create_embeddings_beam.py``,
  ``fad_utils.read_mean_and_covariances``): a TFRecord file whose first record is a serialised
  ``tf.train.Example`` with features ``mu`` (float_list, d), ``sigma`` (float_list, d*d, row
  major), ``embedding_length`` (int64_list, [d]) and ``embedding_count`` (int64_list, [n]).
  Values are **float32** on disk (``FloatList``) and become float64 here. The TFRecord framing
  (u64 length, masked CRC32C, data, masked CRC32C) and the protobuf wire format are decoded by
  a minimal reader below; CRCs are not checked. Verified with records built from the protobuf
  specification in our tests, not with a file written by TensorFlow (none is available here).
* **fadtk**: (a) ``.npz`` packs with keys ``<model>.mu`` / ``<model>.cov`` (``fadtk.package``,
  e.g. the shipped ``fma_pop.npz``); (b) a cache folder ``<dir>/stats/<model>/mu.npy`` and
  ``cov.npy`` (``FrechetAudioDistance.load_stats``). Neither stores the sample count, so the
  loaded :class:`GaussianStats` has ``n = None`` (comparable, not mergeable).
* **audiorep**: :meth:`GaussianStats.save` / :meth:`GaussianStats.load` (``mu``, ``sigma``,
  ``n``, ``meta``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from audiorep.metrics.stats import GaussianStats

# ----------------------------------------------------------------------------- protobuf


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, object]]:
    """Top-level (field number, wire type, value) of one protobuf message."""
    out: list[tuple[int, int, object]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
            out.append((field, wire, val))
        elif wire == 1:
            out.append((field, wire, buf[pos : pos + 8]))
            pos += 8
        elif wire == 2:
            ln, pos = _varint(buf, pos)
            out.append((field, wire, buf[pos : pos + ln]))
            pos += ln
        elif wire == 5:
            out.append((field, wire, buf[pos : pos + 4]))
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _float_list(buf: bytes) -> np.ndarray:
    parts: list[np.ndarray] = []
    for field, wire, val in _fields(buf):
        if field != 1:
            continue
        assert isinstance(val, bytes)
        # packed (wire 2) or one float per field (wire 5): both little-endian float32
        parts.append(np.frombuffer(val, dtype="<f4"))
        del wire
    return np.concatenate(parts) if parts else np.zeros(0, dtype="<f4")


def _int64_list(buf: bytes) -> list[int]:
    out: list[int] = []
    for field, wire, val in _fields(buf):
        if field != 1:
            continue
        if wire == 0:
            assert isinstance(val, int)
            out.append(val)
        else:  # packed varints
            assert isinstance(val, bytes)
            pos = 0
            while pos < len(val):
                v, pos = _varint(val, pos)
                out.append(v)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in out]


def parse_tf_example(record: bytes) -> dict[str, object]:
    """Decode a ``tf.train.Example``: name -> float32 array / list of int / list of bytes."""
    feats: dict[str, object] = {}
    for field, _, features in _fields(record):
        if field != 1:  # Example.features
            continue
        assert isinstance(features, bytes)
        for f2, _, entry in _fields(features):
            if f2 != 1:  # Features.feature (map entry)
                continue
            assert isinstance(entry, bytes)
            key = ""
            value = b""
            for f3, _, v in _fields(entry):
                if f3 == 1:
                    assert isinstance(v, bytes)
                    key = v.decode("utf-8")
                elif f3 == 2:
                    assert isinstance(v, bytes)
                    value = v
            for kind, _, payload in _fields(value):
                assert isinstance(payload, bytes)
                if kind == 1:  # bytes_list
                    feats[key] = [b for f, _, b in _fields(payload) if f == 1]
                elif kind == 2:  # float_list
                    feats[key] = _float_list(payload)
                elif kind == 3:  # int64_list
                    feats[key] = _int64_list(payload)
    return feats


def read_tfrecords(path: str | Path) -> list[bytes]:
    """All records of a (uncompressed) TFRecord file; CRCs are not verified."""
    data = Path(path).read_bytes()
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise ValueError(f"{path}: truncated TFRecord header")
        (length,) = struct.unpack_from("<Q", data, pos)
        start = pos + 12
        end = start + length
        if end + 4 > len(data):
            raise ValueError(f"{path}: truncated TFRecord")
        out.append(data[start:end])
        pos = end + 4
    return out


def load_google_stats(path: str | Path) -> GaussianStats:
    """Statistics written by google-research ``create_embeddings_main --stats`` (TFRecord)."""
    records = read_tfrecords(path)
    if not records:
        raise ValueError(f"{path}: empty TFRecord")
    feats = parse_tf_example(records[0])
    try:
        mu = np.asarray(feats["mu"], dtype=np.float64)
        sigma_flat = np.asarray(feats["sigma"], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"{path}: no mu/sigma features (empty statistics?)") from exc
    lengths = feats.get("embedding_length")
    d = int(lengths[0]) if isinstance(lengths, list) and lengths else mu.shape[0]
    counts = feats.get("embedding_count")
    n = int(counts[0]) if isinstance(counts, list) and counts else None
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


def load_stats(path: str | Path, *, model: str | None = None) -> GaussianStats:
    """Load statistics of any supported format (audiorep npz, fadtk npz/folder, google TFRecord)."""
    p = Path(path)
    if p.is_dir():
        return load_fadtk_stats(p, model)
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic.startswith(b"PK"):  # zip: an .npz
        with np.load(p, allow_pickle=False) as data:
            ours = "mu" in data.files and "sigma" in data.files
        return GaussianStats.load(p) if ours else load_fadtk_stats(p, model)
    return load_google_stats(p)
