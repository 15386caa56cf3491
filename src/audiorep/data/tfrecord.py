"""TFRecord files without TensorFlow: framing, checksums, reading, indexing, atomic writing.

A TFRecord file is a sequence of records, each (little endian)::

    uint64 length | uint32 masked_crc32c(length bytes) | payload | uint32 masked_crc32c(payload)

i.e. a 12-byte header, ``length`` payload bytes and a 4-byte footer. :class:`TFRecordReader`
checks both CRCs by default. What each kind of damage does; ``offset`` is always the byte
offset of the damaged record's 12-byte header (TensorFlow quotes header + 12, the payload
offset, for a bad payload CRC; both numbers are in our message):

* **bad length CRC, or an altered length field** -- strict: ``TFRecordError("corrupted
  record: length CRC mismatch")``. ``skip_bad``: the length cannot be trusted, so scan
  forward byte by byte for the next offset holding a complete record whose two CRCs verify
  and go on from there; if there is none, skip to the end of the file.
* **bad payload CRC** (a flipped payload bit or an altered stored CRC) -- strict:
  ``"corrupted record: payload CRC mismatch"``. ``skip_bad``: the length was verified, so
  skip exactly this record and go on with the next one.
* **file ends inside a record** (payload or footer cut off) -- strict: ``"truncated
  record"``. ``skip_bad``: skip the rest of the file.
* **1..11 stray bytes after the last record** (not a whole header) -- strict: ``"truncated
  record header"`` at their first byte. ``skip_bad``: skip them.
* **12 or more stray bytes after the last record** -- their "length CRC" fails: as a bad
  length CRC (with ``skip_bad`` normally skipped to the end of the file).
* **zero-byte file** -- a valid file without records, no error (as TensorFlow);
  ``empty_ok=False`` makes it damage ("empty file" at offset 0).

TensorFlow 2.21 (``TFRecordDataset``, ``tf_record_iterator``) raises ``DataLossError`` in the
same cases except for 1..11 stray bytes, which it silently takes as the end of the file (we
report them); its ``ignore_errors()`` stops at the first damage instead of skipping it.
``skip_bad`` yields every record that verifies, emits one :class:`TFRecordWarning` per
skipped region and lists them as :class:`SkippedRegion` on ``reader.skipped``.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np

from audiorep.atomic import commit, make_temp
from audiorep.data.crc import crc32c, mask, masked_crc32c, window_crc32c

PathLike = Union[str, os.PathLike]

HEADER_SIZE = 12  # uint64 length + uint32 masked CRC
FOOTER_SIZE = 4  # uint32 masked CRC of the payload
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<QI")
_RESYNC_CHUNK = 1 << 20  # bytes scanned per step when looking for the next valid header


class TFRecordError(ValueError):
    """A TFRecord file is damaged; ``path`` and ``offset`` (record header, bytes) locate it."""

    def __init__(self, path: PathLike, offset: int, reason: str):
        self.path = str(path)
        self.offset = int(offset)
        self.reason = reason
        super().__init__(f"{self.path}: {reason} (record header at byte {self.offset})")


class TFRecordWarning(UserWarning):
    """Emitted by ``skip_bad=True`` readers for every skipped damaged region."""


@dataclass(frozen=True)
class SkippedRegion:
    """A damaged part of a file that a ``skip_bad`` reader stepped over.

    ``offset``: first skipped byte (a record header); ``num_bytes``: how many bytes were
    skipped (to the next good record or the end of the file); ``reason``: what was wrong.
    """

    path: str
    offset: int
    num_bytes: int
    reason: str


def _length_ok(header: bytes) -> bool:
    return mask(crc32c(header[:8])) == _U32.unpack_from(header, 8)[0]


class _Damage(Exception):
    """Internal: damage at ``offset``; ``next_offset`` says where reading may go on."""

    def __init__(self, offset: int, reason: str, next_offset: int | None):
        self.offset = offset
        self.reason = reason
        self.next_offset = next_offset  # None: length untrusted (scan); -1: stop the file


def _read_one(f: BinaryIO, offset: int, size: int, verify_crc: bool) -> tuple[bytes | None, int]:
    """Read the record at ``offset`` of a file of ``size`` bytes.

    Returns ``(payload, next_offset)`` or ``(None, offset)`` at a clean end of file, raises
    :class:`_Damage` otherwise.
    """
    remaining = size - offset
    if remaining == 0:
        return None, offset
    if remaining < HEADER_SIZE:
        raise _Damage(
            offset,
            f"truncated record header: {remaining} byte(s) at the end of the file, "
            f"a header needs {HEADER_SIZE}",
            -1,
        )
    f.seek(offset)
    header = f.read(HEADER_SIZE)
    (length,) = _U64.unpack_from(header)
    if verify_crc and not _length_ok(header):
        raise _Damage(offset, "corrupted record: length CRC mismatch", None)
    end = offset + HEADER_SIZE + length + FOOTER_SIZE
    if end > size:
        raise _Damage(
            offset,
            f"truncated record: header announces {length} payload bytes + {FOOTER_SIZE} CRC "
            f"bytes, only {remaining - HEADER_SIZE} remain",
            -1,
        )
    body = f.read(length + FOOTER_SIZE)
    payload = body[:length]
    if verify_crc:
        stored = _U32.unpack_from(body, length)[0]
        if masked_crc32c(payload) != stored:
            raise _Damage(
                offset,
                f"corrupted record: payload CRC mismatch (payload at byte {offset + HEADER_SIZE})",
                end,
            )
    return payload, end


def _resync(f: BinaryIO, start: int, size: int, verify_crc: bool) -> int:
    """First offset ``>= start`` holding a complete record whose CRCs verify, else ``size``."""
    pos = start
    while pos + HEADER_SIZE <= size:
        f.seek(pos)
        chunk = f.read(min(_RESYNC_CHUNK, size - pos))
        if len(chunk) < HEADER_SIZE:
            break
        crcs = window_crc32c(chunk[: len(chunk) - 4], 8)  # CRC of each 8-byte length field
        stored = np.frombuffer(chunk, dtype=np.uint8)
        # stored masked CRC at p+8..p+12, assembled little endian for every p
        n = crcs.size
        stored_crc = (
            stored[8 : 8 + n].astype(np.uint32)
            | (stored[9 : 9 + n].astype(np.uint32) << 8)
            | (stored[10 : 10 + n].astype(np.uint32) << 16)
            | (stored[11 : 11 + n].astype(np.uint32) << 24)
        )
        rot = ((crcs >> np.uint32(15)) | (crcs << np.uint32(17))).astype(np.uint32)
        masked = (rot.astype(np.uint64) + 0xA282EAD8) & 0xFFFFFFFF
        for p in np.flatnonzero(masked == stored_crc):
            candidate = pos + int(p)
            try:
                payload, _ = _read_one(f, candidate, size, verify_crc)
            except _Damage:
                continue
            if payload is not None:
                return candidate
        pos += n  # windows starting at pos .. pos+n-1 are done
    return size


def _as_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(p) for p in paths]


class TFRecordReader:
    """Iterate over the payloads (``bytes``) of one or more TFRecord files, in order.

    Args:
        paths: a file or a sequence of files.
        verify_crc: check both CRCs of every record (default). ``False`` only checks the
            framing (lengths against the file size): faster, and blind to flipped bits.
        skip_bad: step over damage instead of raising (see the module docstring); each
            skipped region is appended to :attr:`skipped` and announced with a
            :class:`TFRecordWarning`.
        empty_ok: a zero-byte file is a valid file without records (default, as
            TensorFlow); ``False`` treats it as damage ("empty file" at offset 0).

    Raises (while iterating, strict mode):
        TFRecordError: naming the file and the byte offset of the damaged record.
        OSError: a file cannot be opened.

    :attr:`skipped` is reset at the start of every iteration.
    """

    def __init__(
        self,
        paths: PathLike | Iterable[PathLike],
        *,
        verify_crc: bool = True,
        skip_bad: bool = False,
        empty_ok: bool = True,
    ):
        self.paths = _as_paths(paths)
        self.verify_crc = verify_crc
        self.skip_bad = skip_bad
        self.empty_ok = empty_ok
        self.skipped: list[SkippedRegion] = []

    def __iter__(self) -> Iterator[bytes]:
        for _, _, payload in self.iter_with_offsets():
            yield payload

    def iter_with_offsets(self) -> Iterator[tuple[str, int, bytes]]:
        """Yield ``(path, header_offset, payload)`` for every good record."""
        self.skipped = []
        for path in self.paths:
            yield from self._iter_file(path)

    def _skip(self, path: Path, offset: int, num_bytes: int, reason: str) -> None:
        region = SkippedRegion(str(path), offset, num_bytes, reason)
        self.skipped.append(region)
        warnings.warn(
            f"{path}: skipped {num_bytes} byte(s) at byte {offset}: {reason}",
            TFRecordWarning,
            stacklevel=2,
        )

    def _iter_file(self, path: Path) -> Iterator[tuple[str, int, bytes]]:
        name = str(path)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0 and not self.empty_ok:
                if not self.skip_bad:
                    raise TFRecordError(path, 0, "empty file (0 bytes)")
                self._skip(path, 0, 0, "empty file (0 bytes)")
                return
            offset = 0
            while True:
                try:
                    payload, next_offset = _read_one(f, offset, size, self.verify_crc)
                except _Damage as d:
                    if not self.skip_bad:
                        raise TFRecordError(path, d.offset, d.reason) from None
                    if d.next_offset == -1:
                        self._skip(path, d.offset, size - d.offset, d.reason)
                        return
                    if d.next_offset is None:
                        nxt = _resync(f, d.offset + 1, size, self.verify_crc)
                        how = (
                            f"resynchronised at byte {nxt}"
                            if nxt < size
                            else "no valid record after it"
                        )
                        self._skip(path, d.offset, nxt - d.offset, f"{d.reason}; {how}")
                    else:
                        nxt = d.next_offset
                        self._skip(path, d.offset, nxt - d.offset, d.reason)
                    offset = nxt
                    continue
                if payload is None:
                    return
                yield name, offset, payload
                offset = next_offset


def read_tfrecord(
    paths: PathLike | Iterable[PathLike],
    *,
    verify_crc: bool = True,
    skip_bad: bool = False,
    empty_ok: bool = True,
) -> Iterator[bytes]:
    """Payloads of every record of ``paths``; shorthand for :class:`TFRecordReader`."""
    return iter(TFRecordReader(paths, verify_crc=verify_crc, skip_bad=skip_bad, empty_ok=empty_ok))


def scan_tfrecord(
    path: PathLike, *, verify_data: bool = False, skip_bad: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Locate every record of a file: ``(offsets, lengths)``, two ``(N,)`` int64 arrays.

    ``offsets`` are header byte offsets, ``lengths`` payload sizes in bytes. The length CRCs
    and the framing are always checked; payload CRCs only with ``verify_data`` (reading
    headers alone is what makes indexing thousands of shards cheap — payloads are checked
    when :func:`read_record_at` reads them). Damage raises :class:`TFRecordError`, or with
    ``skip_bad`` leaves the damaged records out (with a :class:`TFRecordWarning`).
    """
    offsets: list[int] = []
    lengths: list[int] = []
    if verify_data:
        reader = TFRecordReader(path, skip_bad=skip_bad)
        for _, off, payload in reader.iter_with_offsets():
            offsets.append(off)
            lengths.append(len(payload))
        return np.asarray(offsets, dtype=np.int64), np.asarray(lengths, dtype=np.int64)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset < size:
            f.seek(offset)
            header = f.read(HEADER_SIZE)
            reason = None
            if len(header) < HEADER_SIZE:
                reason = (
                    f"truncated record header: {len(header)} byte(s) at the end of the file, "
                    f"a header needs {HEADER_SIZE}"
                )
            elif not _length_ok(header):
                reason = "corrupted record: length CRC mismatch"
            else:
                (length,) = _U64.unpack_from(header)
                end = offset + HEADER_SIZE + length + FOOTER_SIZE
                if end > size:
                    reason = (
                        f"truncated record: header announces {length} payload bytes + "
                        f"{FOOTER_SIZE} CRC bytes, only {size - offset - HEADER_SIZE} remain"
                    )
            if reason is not None:
                if not skip_bad:
                    raise TFRecordError(path, offset, reason)
                # Fall back to the full reader for its resynchronisation rules.
                return scan_tfrecord(path, verify_data=True, skip_bad=True)
            offsets.append(offset)
            lengths.append(length)
            offset = end
    return np.asarray(offsets, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


def _pread(file: BinaryIO, size: int, offset: int) -> bytes:
    # positional read: no shared file position, so threads can share one handle
    if hasattr(os, "pread"):
        return os.pread(file.fileno(), size, offset)
    file.seek(offset)  # Windows
    return file.read(size)


def read_record_at(
    path: PathLike,
    offset: int,
    length: int | None = None,
    *,
    verify_crc: bool = True,
    file: BinaryIO | None = None,
) -> bytes:
    """Payload of the record whose header starts at byte ``offset``.

    Args:
        length: the expected payload length (from an index): the record is then read with
            one system call, and a header announcing another length raises
            :class:`TFRecordError` (the file changed since it was indexed).
        verify_crc: check both CRCs.
        file: an already open binary file for ``path`` (saves an ``open`` per record).
    """
    if file is None:
        with open(path, "rb") as f:
            return read_record_at(path, offset, length, verify_crc=verify_crc, file=f)
    if length is None:
        header = _pread(file, HEADER_SIZE, offset)
        if len(header) < HEADER_SIZE:
            raise TFRecordError(path, offset, "truncated record header")
        if verify_crc and not _length_ok(header):  # before trusting the length
            raise TFRecordError(path, offset, "corrupted record: length CRC mismatch")
        (length,) = _U64.unpack_from(header)
        if length > os.fstat(file.fileno()).st_size:
            raise TFRecordError(path, offset, f"truncated record: header announces {length} bytes")
        buf = header + _pread(file, length + FOOTER_SIZE, offset + HEADER_SIZE)
    else:
        buf = _pread(file, HEADER_SIZE + length + FOOTER_SIZE, offset)
    if len(buf) < HEADER_SIZE + length + FOOTER_SIZE:
        raise TFRecordError(path, offset, "truncated record")
    (stored_length,) = _U64.unpack_from(buf)
    if stored_length != length:
        raise TFRecordError(
            path, offset, f"record length {stored_length} differs from the indexed {length}"
        )
    if verify_crc and not _length_ok(buf):
        raise TFRecordError(path, offset, "corrupted record: length CRC mismatch")
    payload = buf[HEADER_SIZE : HEADER_SIZE + length]
    if verify_crc and masked_crc32c(payload) != _U32.unpack_from(buf, HEADER_SIZE + length)[0]:
        raise TFRecordError(
            path,
            offset,
            f"corrupted record: payload CRC mismatch (payload at byte {offset + HEADER_SIZE})",
        )
    return payload


def frame_record(payload: bytes | bytearray | memoryview) -> bytes:
    """One record as stored in a file: header + ``payload`` + footer."""
    length = _U64.pack(len(payload))
    return b"".join(
        (length, _U32.pack(masked_crc32c(length)), payload, _U32.pack(masked_crc32c(payload)))
    )


class TFRecordWriter:
    """Write records to ``path`` atomically (context manager).

    Records go to a temporary file in the same directory, which replaces ``path``
    (``os.replace``) only when the writer is closed without an exception: a crash or an
    error never leaves a half-written file under the final name. Leaving the ``with`` block
    with an exception, :meth:`abort`, or dropping a writer that was never closed discards
    everything written.
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        fd, tmp = make_temp(self.path.parent, f".{self.path.name}.", ".tmp")
        self._tmp = Path(tmp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self.num_records = 0

    def write(self, payload: bytes | bytearray | memoryview) -> None:
        """Append one record (``payload``: a serialized proto or any bytes)."""
        if self._file is None:
            raise ValueError(f"writer for {self.path} is closed")
        self._file.write(frame_record(payload))
        self.num_records += 1

    def close(self) -> None:
        """Flush, fsync and move the file into place."""
        if self._file is None:
            return
        f, self._file = self._file, None
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            commit(self._tmp, self.path)
        except BaseException:
            self._discard(f)
            raise

    def abort(self) -> None:
        """Discard everything written; ``path`` is left untouched."""
        if self._file is not None:
            f, self._file = self._file, None
            self._discard(f)

    def _discard(self, f: BinaryIO) -> None:
        f.close()
        try:
            self._tmp.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # an abandoned writer must not leave its temp file behind
        try:
            self.abort()
        except Exception:
            pass


def write_tfrecord(path: PathLike, payloads: Iterable[bytes | bytearray | memoryview]) -> int:
    """Write ``payloads`` as a TFRecord file atomically; returns the number of records."""
    with TFRecordWriter(path) as w:
        for p in payloads:
            w.write(p)
    return w.num_records


# ------------------------------------------------------------------------------ record index

_INDEX_VERSION = 1
ENV_HOME = "AUDIOREP_HOME"


def default_index_cache_dir() -> Path:
    """Where record indexes are cached: ``$AUDIOREP_HOME/tfrecord-index`` (default home
    ``~/.cache/audiorep``, the same as the weights cache)."""
    home = os.environ.get(ENV_HOME)
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "audiorep"
    return base / "tfrecord-index"


@dataclass
class TFRecordIndex:
    """Where every record of a list of shards is: record ``i`` is in ``paths[shard[i]]``,
    its header at byte ``offsets[i]``, with ``lengths[i]`` payload bytes. All ``(N,)``."""

    paths: list[Path]
    shard: np.ndarray  # int32
    offsets: np.ndarray  # int64
    lengths: np.ndarray  # int64
    #: how many shards were scanned (cache misses) when the index was built
    num_scanned: int = 0

    def __len__(self) -> int:
        return int(self.offsets.size)


def _cache_file(cache_dir: Path, directory: str) -> Path:
    import hashlib

    digest = hashlib.sha256(directory.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return cache_dir / f"{digest}.npz"


def _load_cache(file: Path, directory: str) -> dict[str, tuple]:
    """``{name: (size, mtime_ns, skip_bad, offsets, lengths)}``; empty if absent or unusable."""
    try:
        with np.load(file, allow_pickle=False) as z:
            if int(z["version"]) != _INDEX_VERSION or str(z["directory"]) != directory:
                return {}
            names, sizes, mtimes = z["names"], z["sizes"], z["mtimes"]
            flags, counts = z["skip_bad"], z["counts"]
            offsets, lengths = z["offsets"], z["lengths"]
    except (OSError, KeyError, ValueError):
        return {}  # no cache yet, or written by another version: rebuild
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return {
        str(n): (int(s), int(m), bool(f), offsets[a:b], lengths[a:b])
        for n, s, m, f, a, b in zip(names, sizes, mtimes, flags, bounds[:-1], bounds[1:])
    }


def _save_cache(file: Path, directory: str, entries: dict[str, tuple]) -> None:
    names = sorted(entries)
    e = [entries[n] for n in names]
    arrays = {
        "version": np.asarray(_INDEX_VERSION),
        "directory": np.asarray(directory),
        "names": np.asarray(names, dtype=str),
        "sizes": np.asarray([x[0] for x in e], dtype=np.int64),
        "mtimes": np.asarray([x[1] for x in e], dtype=np.int64),
        "skip_bad": np.asarray([x[2] for x in e], dtype=bool),
        "counts": np.asarray([len(x[3]) for x in e], dtype=np.int64),
        "offsets": np.concatenate([x[3] for x in e] or [np.zeros(0, np.int64)]),
        "lengths": np.concatenate([x[4] for x in e] or [np.zeros(0, np.int64)]),
    }
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = make_temp(file.parent, f".{file.stem}.", ".tmp.npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        commit(tmp, file)  # concurrent writers: the last complete file wins
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def index_tfrecords(
    paths: Iterable[PathLike],
    *,
    cache_dir: PathLike | None = None,
    use_cache: bool = True,
    skip_bad: bool = False,
) -> TFRecordIndex:
    """Index the records of ``paths`` (see :func:`scan_tfrecord`), with an on-disk cache.

    The cache holds one small ``.npz`` per shard directory (under ``cache_dir``, default
    :func:`default_index_cache_dir`) mapping each shard's file name, size and mtime to its
    record offsets and lengths, so reopening thousands of shards costs one ``stat`` per
    shard instead of a scan. A shard whose size or mtime changed is scanned again. A cache
    that cannot be written (read-only home) only costs a warning.

    Args:
        skip_bad: leave damaged records out instead of raising :class:`TFRecordError`
            (payload CRCs are then checked while indexing). The warnings about skipped
            regions come when a shard is scanned, not when its cached index is reused.
    """
    # os.path on strings: pathlib's per-object overhead dominated warm opens of 8k shards
    path_list = [p if isinstance(p, Path) else Path(p) for p in paths]
    names = [os.fspath(p) for p in path_list]
    cache_root = Path(cache_dir) if cache_dir is not None else default_index_cache_dir()
    by_dir: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        by_dir.setdefault(os.path.dirname(name), []).append(i)
    by_abs: dict[str, list[int]] = {}
    for d, members in by_dir.items():
        by_abs.setdefault(os.path.abspath(d), []).extend(members)
    per_path: list[tuple[np.ndarray, np.ndarray]] = [None] * len(path_list)  # type: ignore
    scanned = 0
    for directory, members in by_abs.items():
        file = _cache_file(cache_root, directory)
        entries = _load_cache(file, directory) if use_cache else {}
        changed = False
        for i in members:
            st = os.stat(names[i])
            base = os.path.basename(names[i])
            hit = entries.get(base)
            if hit is not None and hit[:3] == (st.st_size, st.st_mtime_ns, skip_bad):
                per_path[i] = (hit[3], hit[4])
                continue
            offsets, lengths = scan_tfrecord(names[i], verify_data=skip_bad, skip_bad=skip_bad)
            per_path[i] = (offsets, lengths)
            entries[base] = (st.st_size, st.st_mtime_ns, skip_bad, offsets, lengths)
            changed = True
            scanned += 1
        if use_cache and changed:
            # forget shards that no longer exist so the file does not grow forever
            entries = {
                n: v for n, v in entries.items() if os.path.exists(os.path.join(directory, n))
            }
            try:
                _save_cache(file, directory, entries)
            except OSError as exc:
                warnings.warn(
                    f"could not write the TFRecord index cache {file}: {exc}", stacklevel=2
                )
    counts = [len(o) for o, _ in per_path]
    return TFRecordIndex(
        paths=path_list,
        shard=np.repeat(np.arange(len(path_list), dtype=np.int32), counts),
        offsets=np.concatenate([o for o, _ in per_path] or [np.zeros(0, np.int64)]).astype(
            np.int64
        ),
        lengths=np.concatenate([n for _, n in per_path] or [np.zeros(0, np.int64)]).astype(
            np.int64
        ),
        num_scanned=scanned,
    )
