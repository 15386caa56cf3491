"""``tf.train.Example`` / ``tf.train.SequenceExample`` protos without TensorFlow or protobuf.

A minimal protocol-buffer wire-format codec for the messages of ``tensorflow/core/example``::

    Example         { Features features = 1; }
    SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
    Features        { map<string, Feature> feature = 1; }         // entry: key = 1, value = 2
    FeatureLists    { map<string, FeatureList> feature_list = 1; }
    FeatureList     { repeated Feature feature = 1; }
    Feature         { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                                   Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed]; }
    Int64List { repeated int64 value = 1 [packed]; }

Parsed values are plain Python/numpy (a feature's kind is carried by its type):

* ``bytes_list`` -> ``list[bytes]``
* ``float_list`` -> ``np.ndarray`` float32 ``(n,)``
* ``int64_list`` -> ``np.ndarray`` int64 ``(n,)``
* a ``Feature`` with no kind set -> ``None``

A features map is a ``dict[str, value]`` in stored order; a feature list is a ``list`` of
values, one per step (frame). The parser accepts packed and unpacked repeated numbers, map
entries in any order, and skips unknown fields. The serializer writes what TensorFlow's C++
serializer writes: packed numbers, map entries in the dict's order, key before value, and
both sub-messages of a SequenceExample (the ``features`` of an Example) even when empty.
Protobuf does not fix the order of map entries; the released AudioSet files store them in
hash order (``end_time_seconds, video_id, start_time_seconds, labels``), and parsing keeps
that order so re-serializing a parsed record reproduces its bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

FeatureValue = Union[list, np.ndarray, None]
_MASK64 = (1 << 64) - 1
_F32 = struct.Struct("<f")


class ProtoDecodeError(ValueError):
    """Bytes that are not a well-formed Example / SequenceExample."""


@dataclass
class SequenceExample:
    """A parsed ``tf.train.SequenceExample``.

    ``context``: name -> feature value; ``feature_lists``: name -> list of per-step values.
    """

    context: dict[str, FeatureValue] = field(default_factory=dict)
    feature_lists: dict[str, list[FeatureValue]] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- decoding


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift > 63:
            raise ProtoDecodeError(f"varint longer than 10 bytes at byte {pos}")


def _sub_end(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Read a length prefix at ``pos``; returns ``(start, stop)`` of the delimited bytes."""
    length, pos = _varint(buf, pos)
    stop = pos + length
    if stop > end:
        raise ProtoDecodeError(f"length-delimited field at byte {pos} runs past its message")
    return pos, stop


def _overrun(pos: int) -> None:
    # a loop over a message ends past its ``end`` when its last varint overran it
    raise ProtoDecodeError(f"field ending at byte {pos} runs past the end of its message")


def _skip(buf: bytes, pos: int, tag: int, end: int) -> int:
    wire = tag & 7
    if wire == 0:
        _, pos = _varint(buf, pos)
    elif wire == 1:
        pos += 8
    elif wire == 2:
        _, pos = _sub_end(buf, pos, end)
    elif wire == 5:
        pos += 4
    else:  # 3/4: deprecated groups, 6/7: invalid
        raise ProtoDecodeError(f"unsupported wire type {wire} (field {tag >> 3})")
    if pos > end:
        raise ProtoDecodeError("field runs past the end of its message")
    return pos


# Hot loops below read a one-byte tag (every field number here is < 16) and a one- or
# two-byte length inline (AudioSet frames are 128 bytes: a two-byte length), calling
# _varint/_skip only for anything else; the function-call overhead dominates otherwise.


def _parse_bytes_list(buf: bytes, pos: int, end: int) -> list[bytes]:
    out = []
    while pos < end:
        if buf[pos] == 0x0A:
            n = buf[pos + 1]
            if n < 0x80:
                start = pos + 2
            elif buf[pos + 2] < 0x80:
                n = (n & 0x7F) | (buf[pos + 2] << 7)
                start = pos + 3
            else:
                n, start = _varint(buf, pos + 1)
            pos = start + n
            if pos > end:
                raise ProtoDecodeError(f"bytes value at byte {start} runs past its message")
            out.append(buf[start:pos])
        else:
            tag, pos = _varint(buf, pos)
            pos = _skip(buf, pos, tag, end)
    if pos != end:
        _overrun(pos)
    return out


def _parse_float_list(buf: bytes, pos: int, end: int) -> np.ndarray:
    chunks: list[np.ndarray] = []
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x0A:  # packed
            start, pos = _sub_end(buf, pos, end)
            if (pos - start) % 4:
                raise ProtoDecodeError(f"packed float field of {pos - start} bytes")
            chunks.append(np.frombuffer(buf, dtype="<f4", count=(pos - start) // 4, offset=start))
        elif tag == 0x0D:  # one unpacked fixed32
            if pos + 4 > end:
                raise ProtoDecodeError("float runs past the end of its message")
            chunks.append(np.asarray(_F32.unpack_from(buf, pos), dtype=np.float32))
            pos += 4
        else:
            pos = _skip(buf, pos, tag, end)
    if pos != end:
        _overrun(pos)
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    # copy: the result must not pin the whole record buffer (frombuffer is a view)
    if len(chunks) == 1:
        return chunks[0].astype(np.float32)
    return np.concatenate(chunks).astype(np.float32)


def _parse_int64_list(buf: bytes, pos: int, end: int) -> np.ndarray:
    values: list[int] = []
    while pos < end:
        tag, pos = _varint(buf, pos)
        if tag == 0x0A:  # packed varints
            start, stop = _sub_end(buf, pos, end)
            pos = start
            while pos < stop:
                v, pos = _varint(buf, pos)
                values.append(v)
            if pos != stop:
                raise ProtoDecodeError("packed varint runs past its field")
        elif tag == 0x08:  # one unpacked varint
            v, pos = _varint(buf, pos)
            values.append(v)
        else:
            pos = _skip(buf, pos, tag, end)
    if pos != end:
        _overrun(pos)
    # int64 is two's complement in 64 bits (negatives take 10 varint bytes)
    return np.array([v - (1 << 64) if v >> 63 else v for v in values], dtype=np.int64)


_LIST_PARSERS = {1: _parse_bytes_list, 2: _parse_float_list, 3: _parse_int64_list}


def _concat(a: FeatureValue, b: FeatureValue) -> FeatureValue:
    if isinstance(a, list):
        return a + b  # type: ignore[operator]
    return np.concatenate([a, b])  # type: ignore[list-item]


def _parse_feature(buf: bytes, pos: int, end: int) -> FeatureValue:
    kind = 0
    value: FeatureValue = None
    while pos < end:
        tag = buf[pos]
        if tag == 0x0A or tag == 0x12 or tag == 0x1A:  # bytes/float/int64 list
            n = buf[pos + 1]
            if n < 0x80:
                start = pos + 2
            elif buf[pos + 2] < 0x80:
                n = (n & 0x7F) | (buf[pos + 2] << 7)
                start = pos + 3
            else:
                n, start = _varint(buf, pos + 1)
            pos = start + n
            if pos > end:
                raise ProtoDecodeError(f"feature at byte {start} runs past its message")
            number = tag >> 3
            parsed = _LIST_PARSERS[number](buf, start, pos)
            # oneof: a repeated occurrence of the same member merges, another member replaces
            value = _concat(value, parsed) if number == kind else parsed
            kind = number
        else:
            tag, pos = _varint(buf, pos)
            pos = _skip(buf, pos, tag, end)
    if pos != end:
        _overrun(pos)
    return value


def _parse_feature_list(buf: bytes, pos: int, end: int) -> list[FeatureValue]:
    out = []
    while pos < end:
        if buf[pos] == 0x0A:
            n = buf[pos + 1]
            if n < 0x80:
                start = pos + 2
            elif buf[pos + 2] < 0x80:
                n = (n & 0x7F) | (buf[pos + 2] << 7)
                start = pos + 3
            else:
                n, start = _varint(buf, pos + 1)
            pos = start + n
            if pos > end:
                raise ProtoDecodeError(f"feature at byte {start} runs past its list")
            out.append(_parse_feature(buf, start, pos))
        else:
            tag, pos = _varint(buf, pos)
            pos = _skip(buf, pos, tag, end)
    if pos != end:
        _overrun(pos)
    return out


def _parse_map(buf: bytes, pos: int, end: int, parse_value, out: dict) -> dict:
    """A ``map<string, V>`` field (number 1) of a message spanning ``[pos, end)``."""
    while pos < end:
        if buf[pos] != 0x0A:
            tag, pos = _varint(buf, pos)
            pos = _skip(buf, pos, tag, end)
            continue
        n = buf[pos + 1]
        if n < 0x80:
            start = pos + 2
        elif buf[pos + 2] < 0x80:
            n = (n & 0x7F) | (buf[pos + 2] << 7)
            start = pos + 3
        else:
            n, start = _varint(buf, pos + 1)
        pos = start + n
        if pos > end:
            raise ProtoDecodeError(f"map entry at byte {start} runs past its message")
        key = b""
        value_start = value_stop = 0  # an absent value parses as an empty message
        p = start
        while p < pos:
            etag = buf[p]
            if etag == 0x0A or etag == 0x12:
                n = buf[p + 1]
                if n < 0x80:
                    s = p + 2
                elif buf[p + 2] < 0x80:
                    n = (n & 0x7F) | (buf[p + 2] << 7)
                    s = p + 3
                else:
                    n, s = _varint(buf, p + 1)
                p = s + n
                if p > pos:
                    raise ProtoDecodeError(f"map entry field at byte {s} runs past the entry")
                if etag == 0x0A:
                    key = buf[s:p]
                else:
                    value_start, value_stop = s, p
            else:
                etag, p = _varint(buf, p)
                p = _skip(buf, p, etag, pos)
        if p != pos:
            _overrun(p)
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtoDecodeError(f"feature name {key!r} is not UTF-8") from None
        out[name] = parse_value(buf, value_start, value_stop)  # the last entry for a key wins
    if pos != end:
        _overrun(pos)
    return out


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


def parse_example(data: bytes | bytearray | memoryview) -> dict[str, FeatureValue]:
    """Parse a serialized ``tf.train.Example`` into ``{name: value}`` (see module doc)."""
    buf = _as_bytes(data)
    out: dict[str, FeatureValue] = {}
    try:
        pos, end = 0, len(buf)
        while pos < end:
            tag, pos = _varint(buf, pos)
            if tag == 0x0A:
                start, pos = _sub_end(buf, pos, end)
                _parse_map(buf, start, pos, _parse_feature, out)
            else:
                pos = _skip(buf, pos, tag, end)
    except IndexError:
        raise ProtoDecodeError("truncated Example") from None
    return out


def parse_sequence_example(
    data: bytes | bytearray | memoryview, *, feature_lists: bool = True
) -> SequenceExample:
    """Parse a serialized ``tf.train.SequenceExample``.

    Args:
        feature_lists: ``False`` skips the (large) feature lists and returns only the
            context, e.g. to index ids and labels cheaply.
    """
    buf = _as_bytes(data)
    result = SequenceExample()
    try:
        pos, end = 0, len(buf)
        while pos < end:
            tag, pos = _varint(buf, pos)
            if tag == 0x0A:
                start, pos = _sub_end(buf, pos, end)
                _parse_map(buf, start, pos, _parse_feature, result.context)
            elif tag == 0x12 and feature_lists:
                start, pos = _sub_end(buf, pos, end)
                _parse_map(buf, start, pos, _parse_feature_list, result.feature_lists)
            else:
                pos = _skip(buf, pos, tag, end)
    except IndexError:
        raise ProtoDecodeError("truncated SequenceExample") from None
    return result


# ----------------------------------------------------------------------------------- encoding


def _enc_varint(v: int) -> bytes:
    v &= _MASK64
    if v < 0x80:
        return bytes((v,))
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _enc_varint(len(payload)) + payload


def _coerce(value: Any) -> tuple[int, Any]:
    """``(kind, values)``: kind 0 none, 1 bytes (list of bytes), 2 float32, 3 int64 arrays."""
    if value is None:
        return 0, None
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        value = [value]
    elif isinstance(value, (bool, int, float, np.generic)):
        value = np.asarray([value])
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return 2, value.astype("<f4").reshape(-1)
        if value.dtype.kind in "iub":
            return 3, value.astype(np.int64).reshape(-1)
        value = value.reshape(-1).tolist()
    if isinstance(value, Sequence):
        items = list(value)
        if not items or all(isinstance(v, (bytes, bytearray, memoryview, str)) for v in items):
            return 1, [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in items]
        return _coerce(np.asarray(items))
    raise TypeError(f"cannot encode {type(value).__name__} as a tf.train.Feature")


def encode_feature(value: Any) -> bytes:
    """Serialize one ``tf.train.Feature``.

    ``value``: ``None`` (no kind), bytes/str or a sequence of them (bytes_list; an empty
    list is an empty bytes_list), a float array/scalar/list (float_list, stored as float32),
    an int/bool array/scalar/list (int64_list).
    """
    kind, values = _coerce(value)
    if kind == 0:
        return b""
    if kind == 1:
        body = b"".join(_delimited(b"\x0a", v) for v in values)
        return _delimited(b"\x0a", body)
    if kind == 2:
        packed = values.tobytes()
    else:
        packed = b"".join(_enc_varint(int(v)) for v in values.tolist())
    # proto3 packed repeated fields with no elements are omitted
    body = _delimited(b"\x0a", packed) if packed else b""
    return _delimited(b"\x12" if kind == 2 else b"\x1a", body)


def _encode_map(mapping: Mapping[str, Any], encode_value) -> bytes:
    parts = []
    for key, value in mapping.items():
        name = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        entry = _delimited(b"\x0a", name) + _delimited(b"\x12", encode_value(value))
        parts.append(_delimited(b"\x0a", entry))
    return b"".join(parts)


def _encode_feature_list(values: Sequence[Any]) -> bytes:
    return b"".join(_delimited(b"\x0a", encode_feature(v)) for v in values)


def serialize_example(features: Mapping[str, Any]) -> bytes:
    """Serialize ``{name: value}`` as a ``tf.train.Example`` (values as :func:`encode_feature`)."""
    return _delimited(b"\x0a", _encode_map(features, encode_feature))


def serialize_sequence_example(
    context: Mapping[str, Any] | SequenceExample,
    feature_lists: Mapping[str, Sequence[Any]] | None = None,
) -> bytes:
    """Serialize a ``tf.train.SequenceExample``.

    Args:
        context: ``{name: value}``, or a :class:`SequenceExample` (then ``feature_lists``
            must be ``None``).
        feature_lists: ``{name: [value per step]}``.
    """
    if isinstance(context, SequenceExample):
        if feature_lists is not None:
            raise TypeError("pass either a SequenceExample or context + feature_lists")
        context, feature_lists = context.context, context.feature_lists
    ctx = _encode_map(context, encode_feature)
    lists = _encode_map(feature_lists or {}, _encode_feature_list)
    return _delimited(b"\x0a", ctx) + _delimited(b"\x12", lists)
