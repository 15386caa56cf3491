"""TFRecord framing, CRC-32C and the Example/SequenceExample codec against TensorFlow's files.

Golden data: ``tests/fixtures/yt8m`` (copied from the shared YT8M/AudioSet fixtures; README
there): files written by TensorFlow 2.21 and what it read back from each, corrupted copies
with TensorFlow's behaviour on them, and two real AudioSet shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest

from audiorep.data import crc
from audiorep.data.example import (
    ProtoDecodeError,
    SequenceExample,
    encode_feature,
    parse_example,
    parse_sequence_example,
    serialize_example,
    serialize_sequence_example,
)
from audiorep.data.tfrecord import (
    TFRecordError,
    TFRecordReader,
    TFRecordWarning,
    TFRecordWriter,
    frame_record,
    index_tfrecords,
    read_record_at,
    read_tfrecord,
    scan_tfrecord,
    write_tfrecord,
)

FIX = Path(__file__).parent / "fixtures" / "yt8m"
TFR = FIX / "tfrecord"
AUDIOSET = FIX / "audioset"
SYNTH = json.loads((TFR / "synthetic_contents.json").read_text())
REAL = json.loads((AUDIOSET / "expected_contents.json").read_text())

ALL_FILES = [(TFR / name, info) for name, info in SYNTH["files"].items()] + [
    (AUDIOSET / name, info) for name, info in REAL["files"].items()
]
IDS = [p.name for p, _ in ALL_FILES]


def synth_a_payloads() -> list[bytes]:
    return list(read_tfrecord(TFR / "synth_a.tfrecord"))


# --------------------------------------------------------------------------------- CRC-32C


def test_crc32c_check_value_and_mask():
    # the standard CRC-32C check value, and TFRecord's mask
    assert crc.crc32c_python(b"123456789") == 0xE3069283
    assert crc.crc32c_numpy(b"123456789" * 10) == crc.crc32c_python(b"123456789" * 10)
    assert crc.crc32c(b"") == 0
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF, 0x80000000):
        assert crc.unmask(crc.mask(value)) == value
    assert crc.mask(0) == 0xA282EAD8


@pytest.mark.parametrize(
    "n",
    [0, 1, 3, 4, 5, 47, 48, 49, 100, 1511, 4091, 4092, 4093, 4095, 4096, 4097, 4099, 4100, 9000],
)
def test_crc32c_numpy_matches_bytewise_loop(n):
    data = np.random.RandomState(n).randint(0, 256, n).astype(np.uint8).tobytes()
    ref = crc.crc32c_python(data)
    assert crc.crc32c_numpy(data) == ref
    assert crc.crc32c(data) == ref
    # continuing from a previous value == checksumming the concatenation
    head = b"abcdefgh" * 7
    assert crc.crc32c_numpy(data, crc.crc32c_python(head)) == crc.crc32c_python(head + data)
    assert crc.crc32c_numpy(memoryview(data)) == ref


@pytest.mark.parametrize("module", ["google_crc32c", "crc32c"])
def test_optional_accelerators_agree_with_pure_implementation(module):
    ext = pytest.importorskip(module)
    for n in (0, 7, 100, 4096, 4099, 70000):
        data = np.random.RandomState(n).randint(0, 256, n).astype(np.uint8).tobytes()
        got = ext.value(data) if module == "google_crc32c" else ext.crc32c(data)
        assert got == crc.crc32c_numpy(data) == crc.crc32c_python(data)


def test_backend_selection(monkeypatch):
    try:
        monkeypatch.setenv("AUDIOREP_PURE_CRC32C", "1")
        assert crc.set_backend("auto") == "numpy" == crc.BACKEND
        assert crc.crc32c(b"123456789") == 0xE3069283
        for name in ("google_crc32c", "crc32c"):
            try:
                assert crc.set_backend(name) == name
            except ImportError:
                continue  # not installed
            assert crc.crc32c(b"123456789" * 20, 7) == crc.crc32c_python(b"123456789" * 20, 7)
        with pytest.raises(ValueError):
            crc.set_backend("zlib")
    finally:
        monkeypatch.delenv("AUDIOREP_PURE_CRC32C")
        crc.set_backend("auto")


def test_window_crc32c():
    buf = np.random.RandomState(0).randint(0, 256, 300).astype(np.uint8).tobytes()
    w = crc.window_crc32c(buf, 8)
    assert w.shape == (293,)
    assert [int(x) for x in w] == [crc.crc32c_python(buf[p : p + 8]) for p in range(293)]
    assert crc.window_crc32c(buf[:5], 8).shape == (0,)


# ------------------------------------------------------------------------------ read parity


@pytest.mark.parametrize("path,info", ALL_FILES, ids=IDS)
def test_framing_matches_tensorflow(path, info):
    data = path.read_bytes()
    assert len(data) == info["file_size"]
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    got = list(TFRecordReader(path).iter_with_offsets())
    assert len(got) == info["num_records"]
    for (p, offset, payload), rec in zip(got, info["records"]):
        assert p == str(path)
        assert offset == rec["offset"]
        assert len(payload) == rec["length"]
        assert hashlib.sha256(payload).hexdigest() == rec["payload_sha256"]
        length_bytes = data[offset : offset + 8]
        assert crc.masked_crc32c(length_bytes) == rec["length_crc_masked"]
        assert crc.masked_crc32c(payload) == rec["data_crc_masked"]
        stored = struct.unpack_from("<I", data, offset + 12 + len(payload))[0]
        assert stored == rec["data_crc_masked"]
    offsets, lengths = scan_tfrecord(path)
    assert offsets.tolist() == [r["offset"] for r in info["records"]]
    assert lengths.tolist() == [r["length"] for r in info["records"]]


@pytest.mark.parametrize("path,info", ALL_FILES, ids=IDS)
def test_sequence_examples_decode_to_tensorflow_contents(path, info):
    for payload, rec in zip(read_tfrecord(path), info["records"]):
        ex = parse_sequence_example(payload)
        ctx = ex.context
        assert ctx["video_id"] == [rec["video_id"].encode()]
        for key in ("start_time_seconds", "end_time_seconds"):
            assert ctx[key].dtype == np.float32 and ctx[key].shape == (1,)
            assert float(ctx[key][0]) == rec[key]
        if rec.get("labels_key_present", True):
            assert ctx["labels"].dtype == np.int64
            assert ctx["labels"].tolist() == rec["labels"]
        else:
            assert "labels" not in ctx
        frames = ex.feature_lists["audio_embedding"]
        assert len(frames) == rec["num_frames"]
        assert [f[0].hex() for f in frames] == rec["audio_embedding_hex"]
        assert all(len(f) == 1 for f in frames)
        assert list(ex.feature_lists) == ["audio_embedding"]
        context_only = parse_sequence_example(payload, feature_lists=False)
        assert context_only.feature_lists == {} and list(context_only.context) == list(ctx)


def test_real_files_store_context_in_hash_order():
    # protobuf map order is unspecified; the release's order differs between records
    orders = {
        tuple(parse_sequence_example(p).context)
        for p in read_tfrecord(AUDIOSET / "eval/RK.tfrecord")
    }
    assert ("labels", "end_time_seconds", "video_id", "start_time_seconds") in orders
    assert len(orders) > 1


@pytest.mark.parametrize("path,info", ALL_FILES, ids=IDS)
def test_reserializing_reproduces_files_byte_for_byte(path, info, tmp_path):
    out = tmp_path / path.name
    n = write_tfrecord(
        out, (serialize_sequence_example(parse_sequence_example(p)) for p in read_tfrecord(path))
    )
    assert n == info["num_records"]
    assert out.read_bytes() == path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_reader_over_several_files_and_zero_byte_file():
    files = [TFR / "synth_a.tfrecord", TFR / "synth_empty.tfrecord", TFR / "synth_b.tfrecord"]
    got = list(TFRecordReader(files).iter_with_offsets())
    assert [(Path(p).name, o) for p, o, _ in got] == [
        (Path(f).name, r["offset"])
        for f in (files[0], files[2])
        for r in SYNTH["files"][Path(f).name]["records"]
    ]
    assert list(read_tfrecord(TFR / "synth_empty.tfrecord")) == []
    with pytest.raises(TFRecordError) as e:
        list(read_tfrecord(TFR / "synth_empty.tfrecord", empty_ok=False))
    assert e.value.offset == 0 and "empty file" in str(e.value)
    reader = TFRecordReader(TFR / "synth_empty.tfrecord", skip_bad=True, empty_ok=False)
    with pytest.warns(TFRecordWarning):
        assert list(reader) == []
    assert [(s.offset, s.num_bytes) for s in reader.skipped] == [(0, 0)]


# ------------------------------------------------------------------------------- corruption

# file -> (records TF yields before its error, our error offset (record header), reason,
#          synth_a records yielded with skip_bad, skipped (offset, bytes))
CORRUPT = {
    "corrupt_truncated_data": (4, 4470, "truncated record", [0, 1, 2, 3], [(4470, 287)]),
    "corrupt_truncated_header": (5, 5036, "truncated record header", [0, 1, 2, 3, 4], [(5036, 7)]),
    "corrupt_payload_bitflip": (2, 1817, "payload CRC mismatch", [0, 1, 3, 4], [(1817, 1108)]),
    "corrupt_data_crc": (2, 1817, "payload CRC mismatch", [0, 1, 3, 4], [(1817, 1108)]),
    "corrupt_length_crc": (1, 1527, "length CRC mismatch", [0, 2, 3, 4], [(1527, 290)]),
    "corrupt_length_field": (1, 1527, "length CRC mismatch", [0, 2, 3, 4], [(1527, 290)]),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_files_raise_with_file_and_offset(name):
    before, offset, reason, _, _ = CORRUPT[name]
    meta = SYNTH["corrupted"][f"{name}.tfrecord"]
    tf_before = meta["tensorflow_behaviour"]["TFRecordDataset"]["records_before_error"]
    path = TFR / f"{name}.tfrecord"
    got = []
    with pytest.raises(TFRecordError) as e:
        for payload in TFRecordReader(path):
            got.append(payload)
    assert got == synth_a_payloads()[:before]
    assert e.value.path == str(path) and e.value.offset == offset
    assert reason in str(e.value) and str(path) in str(e.value) and str(offset) in str(e.value)
    assert isinstance(e.value, ValueError)
    if name == "corrupt_truncated_header":
        # TF treats < 12 stray bytes as a clean end of file; we report them
        assert tf_before == 5 and meta["tensorflow_behaviour"]["TFRecordDataset"]["error"] is None
    else:
        assert tf_before == before
        tf_message = meta["tensorflow_behaviour"]["TFRecordDataset"]["message"]
        # TF quotes the payload offset (header + 12) for payload CRC errors: ours names both
        tf_offset = int(tf_message.split(" at ")[1].split("'")[0])
        assert str(tf_offset) in str(e.value)


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_files_skip_bad(name):
    _, _, reason, kept, skipped = CORRUPT[name]
    path = TFR / f"{name}.tfrecord"
    reader = TFRecordReader(path, skip_bad=True)
    with pytest.warns(TFRecordWarning, match=str(skipped[0][0])):
        got = list(reader)
    good = synth_a_payloads()
    assert got == [good[i] for i in kept]
    assert [(s.path, s.offset, s.num_bytes) for s in reader.skipped] == [
        (str(path), o, n) for o, n in skipped
    ]
    assert reason in reader.skipped[0].reason
    if "length" in name:
        assert "resynchronised at byte 1817" in reader.skipped[0].reason


def test_scan_and_index_on_corrupt_files():
    # scanning reads headers only: a bad payload CRC is found when the record is read
    offsets, _ = scan_tfrecord(TFR / "corrupt_data_crc.tfrecord")
    assert offsets.tolist() == [0, 1527, 1817, 2925, 4470]
    with pytest.raises(TFRecordError) as e:
        scan_tfrecord(TFR / "corrupt_data_crc.tfrecord", verify_data=True)
    assert e.value.offset == 1817
    with pytest.raises(TFRecordError) as e:
        read_record_at(TFR / "corrupt_data_crc.tfrecord", 1817)
    assert e.value.offset == 1817 and "1829" in str(e.value)
    assert read_record_at(TFR / "corrupt_data_crc.tfrecord", 1817, verify_crc=False)
    # without a known length the header's CRC is checked before the length is believed
    with pytest.raises(TFRecordError, match="length CRC") as e:
        read_record_at(TFR / "corrupt_length_field.tfrecord", 1527)
    assert e.value.offset == 1527
    assert len(read_record_at(TFR / "corrupt_length_field.tfrecord", 1527, verify_crc=False)) == 338
    with pytest.raises(TFRecordError, match="truncated record"):  # the fixture's "framing"
        read_record_at(TFR / "corrupt_length_field.tfrecord", 1881, verify_crc=False)
    with pytest.raises(TFRecordError, match="differs from the indexed"):
        read_record_at(TFR / "synth_a.tfrecord", 1527, 275)
    assert read_record_at(TFR / "synth_a.tfrecord", 1527) == synth_a_payloads()[1]
    for name, offset in [("corrupt_length_crc", 1527), ("corrupt_truncated_header", 5036)]:
        with pytest.raises(TFRecordError) as e:
            scan_tfrecord(TFR / f"{name}.tfrecord")
        assert e.value.offset == offset
    with pytest.warns(TFRecordWarning):
        offsets, lengths = scan_tfrecord(TFR / "corrupt_length_field.tfrecord", skip_bad=True)
    assert offsets.tolist() == [0, 1817, 2925, 4470]
    assert lengths.tolist() == [1511, 1092, 1529, 550]


def test_trailing_garbage_of_12_or_more_bytes(tmp_path):
    good = (TFR / "synth_a.tfrecord").read_bytes()
    garbage = tmp_path / "garbage.tfrecord"
    garbage.write_bytes(good + bytes(range(100, 120)))
    with pytest.raises(TFRecordError) as e:
        list(read_tfrecord(garbage))
    assert e.value.offset == 5036 and "length CRC" in str(e.value)
    reader = TFRecordReader(garbage, skip_bad=True)
    with pytest.warns(TFRecordWarning):
        assert len(list(reader)) == 5
    assert [(s.offset, s.num_bytes) for s in reader.skipped] == [(5036, 20)]
    assert "no valid record after it" in reader.skipped[0].reason
    # a whole valid header whose payload is missing: "truncated record"
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(good + frame_record(b"x" * 50)[:20])
    with pytest.raises(TFRecordError, match="truncated record:") as e:
        list(read_tfrecord(cut))
    assert e.value.offset == 5036


def test_verify_crc_false_only_checks_framing():
    got = list(read_tfrecord(TFR / "corrupt_payload_bitflip.tfrecord", verify_crc=False))
    good = synth_a_payloads()
    assert len(got) == 5 and got[2] != good[2] and got[:2] == good[:2] and got[3:] == good[3:]
    diff = [i for i, (a, b) in enumerate(zip(got[2], good[2])) if a != b]
    assert [1817 + 12 + i for i in diff] == [2375]  # the flipped byte the fixture names


# ---------------------------------------------------------------------------------- writing


def test_writer_round_trip_and_framing(tmp_path):
    rng = np.random.RandomState(1)
    payloads = [b"", b"x", rng.bytes(4096), rng.bytes(100_003), b"tail"]
    path = tmp_path / "w.tfrecord"
    assert write_tfrecord(path, payloads) == 5
    assert list(read_tfrecord(path)) == payloads
    data = path.read_bytes()
    assert data[:16] == struct.pack(
        "<QI", 0, crc.masked_crc32c(struct.pack("<Q", 0))
    ) + struct.pack("<I", crc.masked_crc32c(b""))
    assert len(data) == sum(16 + len(p) for p in payloads)


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "out.tfrecord"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with TFRecordWriter(path) as w:
            w.write(b"one")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tfrecord"]
    w = TFRecordWriter(path)
    w.write(b"one")
    assert path.read_bytes() == b"previous"  # nothing visible before close
    w.close()
    assert list(read_tfrecord(path)) == [b"one"]
    with pytest.raises(ValueError, match="closed"):
        w.write(b"two")


# -------------------------------------------------------------------------------- protobuf


def test_serialize_example_matches_hand_encoding():
    got = serialize_example(
        {
            "f": np.array([1.0, -2.5], np.float32),
            "i": np.array([1, 300, -1]),
            "b": [b"ab", "c"],
            "e": np.zeros(0, np.int64),
            "n": None,
        }
    )
    floats = struct.pack("<2f", 1.0, -2.5)
    minus_one = b"\xff" * 9 + b"\x01"  # int64 -1: ten-byte two's complement varint

    def entry(key: bytes, feature: bytes) -> bytes:
        body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(feature)]) + feature
        return b"\x0a" + bytes([len(body)]) + body

    ints = b"\x01\xac\x02" + minus_one
    features = (
        entry(b"f", b"\x12\x0a\x0a\x08" + floats)
        + entry(b"i", b"\x1a" + bytes([len(ints) + 2]) + b"\x0a" + bytes([len(ints)]) + ints)
        + entry(b"b", b"\x0a\x07\x0a\x02ab\x0a\x01c")
        + entry(b"e", b"\x1a\x00")
        + entry(b"n", b"")
    )
    assert got == b"\x0a" + bytes([len(features)]) + features
    back = parse_example(got)
    assert list(back) == ["f", "i", "b", "e", "n"]
    assert back["f"].dtype == np.float32 and back["f"].tolist() == [1.0, -2.5]
    assert back["i"].dtype == np.int64 and back["i"].tolist() == [1, 300, -1]
    assert back["b"] == [b"ab", b"c"]
    assert back["e"].dtype == np.int64 and back["e"].size == 0
    assert back["n"] is None


def test_parser_accepts_unpacked_unknown_fields_and_any_entry_order():
    unpacked_floats = b"\x0d" + struct.pack("<f", 0.5) + b"\x0d" + struct.pack("<f", 2.0)
    unpacked_ints = b"\x08\x05" + b"\x08" + b"\xff" * 9 + b"\x01" + b"\x0a\x02\x07\x08"
    unknown = b"\x20\x07" + b"\x29" + b"\x00" * 8 + b"\x35" + b"\x00" * 4 + b"\x3a\x01z"
    f_float = b"\x12" + bytes([len(unpacked_floats)]) + unpacked_floats
    f_int = b"\x1a" + bytes([len(unpacked_ints) + len(unknown)]) + unpacked_ints + unknown
    # value before key, an unknown field inside the entry
    e1 = b"\x12" + bytes([len(f_float)]) + f_float + b"\x18\x01" + b"\x0a\x01x"
    e2 = b"\x0a\x01y" + b"\x12" + bytes([len(f_int)]) + f_int
    features = b"".join(b"\x0a" + bytes([len(e)]) + e for e in (e1, e2))
    msg = unknown + b"\x0a" + bytes([len(features)]) + features
    got = parse_example(msg)
    assert got["x"].tolist() == [0.5, 2.0]
    assert got["y"].tolist() == [5, -1, 7, 8]
    # a oneof member given twice merges; another member replaces it
    twice = b"\x0a\x03\x0a\x01a" + b"\x0a\x03\x0a\x01b"
    assert parse_sequence_example(
        b"\x12" + _list_entry(b"k", [twice, b"\x1a\x03\x0a\x01\x02" + b"\x0a\x03\x0a\x01c"])
    ).feature_lists == {"k": [[b"a", b"b"], [b"c"]]}


def _list_entry(key: bytes, features: list[bytes]) -> bytes:
    fl = b"".join(b"\x0a" + bytes([len(f)]) + f for f in features)
    entry = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(fl)]) + fl
    body = b"\x0a" + bytes([len(entry)]) + entry
    return bytes([len(body)]) + body


@pytest.mark.parametrize(
    "bad",
    [
        b"\x0a\x05\x0a\x03",  # sub-message runs past the end
        b"\x0a",  # truncated length
        b"\x0b",  # wire type 3 (group)
        b"\x08" + b"\xff" * 11,  # varint too long
        b"\x0a\x06\x0a\x04\x0a\x02\xff\xfe",  # key not UTF-8
    ],
)
def test_malformed_protos_raise(bad):
    with pytest.raises(ProtoDecodeError):
        parse_example(bad)


def test_sequence_example_round_trip_and_coercions():
    ex = SequenceExample(
        context={"id": "abc", "w": 0.25, "n": 3, "flags": [True, False]},
        feature_lists={"rgb": [np.arange(3, dtype=np.float64), [b"q"], None], "empty": []},
    )
    data = serialize_sequence_example(ex)
    assert data == serialize_sequence_example(ex.context, ex.feature_lists)
    back = parse_sequence_example(data)
    assert back.context["id"] == [b"abc"]
    assert back.context["w"].tolist() == [0.25]
    assert back.context["n"].tolist() == [3] and back.context["flags"].tolist() == [1, 0]
    assert back.feature_lists["rgb"][0].dtype == np.float32
    assert back.feature_lists["rgb"][1:] == [[b"q"], None]
    assert back.feature_lists["empty"] == []
    assert serialize_sequence_example(back) == data
    assert encode_feature([]) == b"\x0a\x00"  # an empty list is an empty bytes_list
    with pytest.raises(TypeError):
        encode_feature({"a": 1})
    with pytest.raises(TypeError):
        serialize_sequence_example(ex, {})


# ----------------------------------------------------------------------------- index cache


def test_index_cache_cold_warm_and_invalidation(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for name in ("synth_a", "synth_b", "synth_empty"):
        (shards / f"{name}.tfrecord").write_bytes((TFR / f"{name}.tfrecord").read_bytes())
    paths = sorted(shards.iterdir())
    cache = tmp_path / "cache"
    cold = index_tfrecords(paths, cache_dir=cache)
    assert cold.num_scanned == 3 and len(cold) == 9
    assert len(list(cache.iterdir())) == 1  # one file per shard folder
    warm = index_tfrecords(paths, cache_dir=cache)
    assert warm.num_scanned == 0
    for field in ("shard", "offsets", "lengths"):
        assert np.array_equal(getattr(warm, field), getattr(cold, field))
    assert warm.offsets.tolist() == [
        r["offset"] for r in SYNTH["files"]["synth_a.tfrecord"]["records"]
    ] + [r["offset"] for r in SYNTH["files"]["synth_b.tfrecord"]["records"]]
    assert warm.shard.tolist() == [0] * 5 + [1] * 4
    # a changed shard (size/mtime) is scanned again, the others come from the cache
    (shards / "synth_b.tfrecord").write_bytes((TFR / "synth_single.tfrecord").read_bytes())
    changed = index_tfrecords(paths, cache_dir=cache)
    assert changed.num_scanned == 1 and len(changed) == 6
    # a subset of the folder reuses the same cache file
    assert index_tfrecords(paths[:1], cache_dir=cache).num_scanned == 0
    assert index_tfrecords(paths, cache_dir=cache, use_cache=False).num_scanned == 3
    # skip_bad indexes are cached separately from strict ones
    assert index_tfrecords(paths, cache_dir=cache, skip_bad=True).num_scanned == 3


def test_index_cache_unwritable_warns(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idx = index_tfrecords([TFR / "synth_a.tfrecord"], cache_dir=blocker / "sub")
    assert len(idx) == 5
    assert any("index cache" in str(w.message) for w in caught)


def test_default_cache_dir_follows_audiorep_home(tmp_path, monkeypatch):
    from audiorep.data.tfrecord import default_index_cache_dir

    monkeypatch.setenv("AUDIOREP_HOME", str(tmp_path))
    assert default_index_cache_dir() == tmp_path / "tfrecord-index"
    idx = index_tfrecords([TFR / "synth_b.tfrecord"])
    assert len(idx) == 4 and len(os.listdir(tmp_path / "tfrecord-index")) == 1


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_crc_checks_agree_with_the_fixtures_framing_walk(name):
    """Walk each corrupted file trusting every length, as the fixture's independent parser."""
    data = (TFR / f"{name}.tfrecord").read_bytes()
    walk, offset = [], 0
    while offset < len(data):
        if len(data) - offset < 12:
            walk.append({"offset": offset, "error": "truncated header"})
            break
        length, length_crc = struct.unpack_from("<QI", data, offset)
        if offset + 12 + length + 4 > len(data):
            walk.append({"offset": offset, "length": length, "error": "truncated data"})
            break
        payload = data[offset + 12 : offset + 12 + length]
        data_crc = struct.unpack_from("<I", data, offset + 12 + length)[0]
        walk.append(
            {
                "offset": offset,
                "length": length,
                "length_crc": length_crc,
                "data_crc": data_crc,
                "length_crc_ok": crc.masked_crc32c(data[offset : offset + 8]) == length_crc,
                "data_crc_ok": crc.masked_crc32c(payload) == data_crc,
            }
        )
        offset += 12 + length + 4
    assert walk == SYNTH["corrupted"][f"{name}.tfrecord"]["tensorflow_behaviour"]["framing"]
