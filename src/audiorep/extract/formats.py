"""Output formats of ``audiorep embed`` and how ``--resume`` recognises finished work.

* ``npz``: one file per input, the input tree mirrored (``embeddings``, ``timestamps``,
  ``settings`` JSON, ``quantized`` with PCA, ``fusion``/``fusion_clip`` with ``--fusion``).
  Finished = the file loads and its settings match this run's.
* ``parquet``: shards ``part-NNNNN.parquet`` of ``shard_size`` consecutive inputs, one row per
  example: ``path``, ``rel``, ``example_index``, ``start``, ``end`` (seconds), ``embedding``
  (128 x float32) and ``quantized`` (128 x uint8, with PCA); the settings are in the schema
  metadata. The shard an input belongs to depends only on its position in the sorted input
  list, so a resumed run writes exactly the shards an uninterrupted one would.
* ``tfrecord``: the AudioSet release layout, shards ``part-NNNNN.tfrecord``: one
  ``SequenceExample`` per input with context ``video_id`` (the input's relative path without
  extension), ``start_time_seconds`` 0, ``end_time_seconds`` (duration), ``labels`` (empty) and
  feature list ``audio_embedding`` (one 128-byte quantised string per example). Needs PCA.

Every file is written atomically (temp file + rename): a killed run leaves only complete
outputs. A shard is written when all its inputs are processed; failed inputs are left out of
it (and listed in ``failures.tsv``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from audiorep.extract.engine import FileResult
from audiorep.extract.inputs import InputItem, output_names
from audiorep.extract.writers import write_bytes_atomic, write_npz_atomic
from audiorep.hashing import state_dict_sha256
from audiorep.pipelines import EMBEDDING_KEY_FIELDS as KEY_FIELDS

FORMATS = ("npz", "parquet", "tfrecord")
#: Settings that change an output's arrays: the bundle's embedding keys, plus the PCA
#: parameters (the ``quantized`` bytes) and the fusion layers (the ``fusion*`` arrays).
#: ``--resume`` redoes an output whose stored values differ in any of them.
OUTPUT_KEY_FIELDS = (*KEY_FIELDS, "pca_sha256", "fusion")


def output_settings(bundle, fusion_layers: Sequence[int | str] | None = None) -> dict:
    """``bundle.settings()`` plus what else shapes the written arrays (see
    :data:`OUTPUT_KEY_FIELDS`); stored in every output."""
    settings = dict(bundle.settings())
    post = getattr(bundle, "postprocessor", None)
    settings["pca_sha256"] = state_dict_sha256(post) if post is not None else None
    settings["fusion"] = [str(x) for x in fusion_layers] if fusion_layers else None
    return settings


def _same_settings(stored: dict, current: dict) -> bool:
    return all(stored.get(k) == current.get(k) for k in OUTPUT_KEY_FIELDS)


def _text(value: object) -> str:
    """A path as valid UTF-8 text for columns and ids: undecodable name bytes (surrogates)
    become backslash escapes instead of failing the encoder."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class NpzOutput:
    """One ``.npz`` per input under ``out_dir`` (see module docstring)."""

    def __init__(
        self, out_dir: Path, items: Sequence[InputItem], bundle, fusion_layers=None
    ) -> None:
        self.out_dir = Path(out_dir)
        self.items = items
        self.bundle = bundle
        self.settings = output_settings(bundle, fusion_layers)
        self._settings_json = np.array(json.dumps(self.settings, sort_keys=True))
        self.names = output_names(items, ".npz")

    def path(self, index: int) -> Path:
        return self.out_dir / self.names[index]

    def pending(self) -> list[int]:
        """Inputs without a complete output made with the same settings."""
        todo = []
        for i in range(len(self.items)):
            p = self.path(i)
            try:
                with np.load(p, allow_pickle=False) as d:
                    ok = "embeddings" in d.files and _same_settings(
                        json.loads(str(d["settings"])), self.settings
                    )
            except (OSError, ValueError, KeyError):
                ok = False
            if not ok:
                todo.append(i)
        return todo

    def add(self, result: FileResult) -> None:
        if result.error is not None:
            return
        emb = result.embeddings
        arrays = {
            "embeddings": emb,
            "timestamps": result.timestamps,
            "settings": self._settings_json,
        }
        if getattr(self.bundle, "postprocessor", None) is not None:
            import torch

            arrays["quantized"] = self.bundle.quantize(torch.from_numpy(emb)).cpu().numpy()
        if result.fusion is not None:
            arrays["fusion"] = result.fusion
        if result.fusion_clip is not None:
            arrays["fusion_clip"] = result.fusion_clip
        write_npz_atomic(self.path(result.index), **arrays)

    def close(self) -> None:
        pass


class _ShardedOutput:
    """Shards of ``shard_size`` consecutive inputs, each written once all its inputs are in."""

    suffix = ""

    def __init__(
        self, out_dir: Path, items: Sequence[InputItem], bundle, shard_size: int, fusion_layers=None
    ):
        if shard_size < 1:
            raise ValueError("shard size must be >= 1")
        self.out_dir = Path(out_dir)
        self.items = items
        self.bundle = bundle
        self.settings = output_settings(bundle, fusion_layers)
        self.shard_size = shard_size
        self.num_shards = -(-len(items) // shard_size)
        self._results: dict[int, dict[int, FileResult]] = {}

    def shard_path(self, shard: int) -> Path:
        return self.out_dir / f"part-{shard:05d}{self.suffix}"

    def settings_path(self, shard: int) -> Path:
        """Beside each shard: the settings it was written with (written after the shard, so
        a shard without one is incomplete)."""
        path = self.shard_path(shard)
        return path.with_name(path.name + ".settings.json")

    def shard_done(self, shard: int) -> bool:
        """Written, and with this run's settings (any output-changing difference redoes it)."""
        try:
            stored = json.loads(self.settings_path(shard).read_text())
        except (OSError, ValueError):
            return False
        return self.shard_path(shard).exists() and _same_settings(stored, self.settings)

    def pending(self) -> list[int]:
        todo = []
        for s in range(self.num_shards):
            if not self.shard_done(s):
                lo = s * self.shard_size
                todo += range(lo, min(len(self.items), lo + self.shard_size))
        return todo

    def add(self, result: FileResult) -> None:
        shard = result.index // self.shard_size
        got = self._results.setdefault(shard, {})
        got[result.index] = result
        lo = shard * self.shard_size
        size = min(len(self.items), lo + self.shard_size) - lo
        if len(got) == size:
            ordered = [got[i] for i in range(lo, lo + size) if got[i].error is None]
            self.settings_path(shard).unlink(missing_ok=True)
            write_bytes_atomic(self.shard_path(shard), self.encode(ordered))
            text = json.dumps(self.settings, sort_keys=True, indent=1)
            write_bytes_atomic(self.settings_path(shard), text.encode())
            del self._results[shard]

    def encode(self, results: list[FileResult]) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _quantized(self, emb: np.ndarray) -> np.ndarray | None:
        if getattr(self.bundle, "postprocessor", None) is None:
            return None
        import torch

        return self.bundle.quantize(torch.from_numpy(emb)).cpu().numpy()

    def close(self) -> None:
        if self._results:
            missing = sorted(self._results)
            raise RuntimeError(f"shards {missing} did not receive all their inputs")


class ParquetOutput(_ShardedOutput):
    suffix = ".parquet"

    def __init__(self, out_dir, items, bundle, shard_size=256, fusion_layers=None):
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(
                "--format parquet needs pyarrow: pip install 'audiorep[parquet]'"
            ) from exc
        super().__init__(out_dir, items, bundle, shard_size, fusion_layers)

    def encode(self, results: list[FileResult]) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        dim = self.bundle.embedding_size
        paths, rels, idx, starts, ends = [], [], [], [], []
        embs, quants = [], []
        for r in results:
            n = r.embeddings.shape[0]
            paths += [_text(r.item.path)] * n
            rels += [_text(r.item.rel)] * n
            idx.append(np.arange(n, dtype=np.int32))
            starts.append(r.timestamps)
            ends.append(r.ends)
            embs.append(r.embeddings)
            q = self._quantized(r.embeddings)
            if q is not None:
                quants.append(q)
        start = np.concatenate(starts) if starts else np.zeros(0)
        end = np.concatenate(ends) if ends else np.zeros(0)
        emb = np.concatenate(embs) if embs else np.zeros((0, dim), np.float32)
        columns = {
            "path": pa.array(paths, pa.string()),
            "rel": pa.array(rels, pa.string()),
            "example_index": pa.array(np.concatenate(idx) if idx else [], pa.int32()),
            "start": pa.array(start, pa.float64()),
            "end": pa.array(end, pa.float64()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(emb.reshape(-1), pa.float32()), dim
            ),
        }
        if getattr(self.bundle, "postprocessor", None) is not None:
            q = np.concatenate(quants) if quants else np.zeros((0, dim), np.uint8)
            columns["quantized"] = pa.FixedSizeListArray.from_arrays(
                pa.array(q.reshape(-1), pa.uint8()), dim
            )
        table = pa.table(columns)
        table = table.replace_schema_metadata(
            {"audiorep.settings": json.dumps(self.settings, sort_keys=True)}
        )
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()


class TFRecordOutput(_ShardedOutput):
    suffix = ".tfrecord"

    def __init__(self, out_dir, items, bundle, shard_size=256, fusion_layers=None):
        if getattr(bundle, "postprocessor", None) is None:
            raise RuntimeError(
                "--format tfrecord writes the AudioSet layout (PCA-quantised bytes): it needs "
                "PCA parameters (--pca PATH, or weights that come with them)"
            )
        super().__init__(out_dir, items, bundle, shard_size, fusion_layers)

    def encode(self, results: list[FileResult]) -> bytes:
        from audiorep.data.example import serialize_sequence_example
        from audiorep.data.tfrecord import frame_record

        out = []
        for r in results:
            q = self._quantized(r.embeddings)
            context = {
                "video_id": [_text(PurePosixPath(r.item.rel).with_suffix("")).encode()],
                "start_time_seconds": np.array([0.0], np.float32),
                "end_time_seconds": np.array([r.duration], np.float32),
                "labels": np.zeros(0, np.int64),
            }
            frames = [[row.tobytes()] for row in q]
            payload = serialize_sequence_example(context, {"audio_embedding": frames})
            out.append(frame_record(payload))
        return b"".join(out)


def make_output(
    fmt: str,
    out_dir: Path,
    items: Sequence[InputItem],
    bundle,
    shard_size: int = 256,
    fusion_layers: Sequence[int | str] | None = None,
):
    """The writer for ``fmt`` (one of :data:`FORMATS`); ``fusion_layers`` is recorded in the
    outputs' settings so that ``--resume`` notices a change."""
    if fmt == "npz":
        return NpzOutput(out_dir, items, bundle, fusion_layers)
    if fmt == "parquet":
        return ParquetOutput(out_dir, items, bundle, shard_size, fusion_layers)
    if fmt == "tfrecord":
        return TFRecordOutput(out_dir, items, bundle, shard_size, fusion_layers)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


__all__ = [
    "FORMATS",
    "OUTPUT_KEY_FIELDS",
    "NpzOutput",
    "ParquetOutput",
    "TFRecordOutput",
    "make_output",
    "output_settings",
]
