"""AudioSet feature datasets against what TensorFlow + the YouTube-8M reader produce.

Golden data: ``tests/fixtures/yt8m`` (README there): two real AudioSet shards with the
TF-decoded bytes, dequantised frames and the reader's zero-padded ``[10, 128]`` matrices;
synthetic AudioSet-layout files (missing/empty labels, zero frames); YT8M's dequantisation
table.
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from audiorep.data import (
    AudioSetDataset,
    AudioSetIterableDataset,
    AudioSetWithRecordings,
    TFRecordError,
    TFRecordWarning,
    audioset_class_mids,
    audioset_class_names,
    collate_audioset,
    decode_audioset_record,
    read_tfrecord,
    serialize_sequence_example,
    write_tfrecord,
)
from audiorep.data.audioset import dequantize_frames
from audiorep.features.postprocess import dequantize

FIX = Path(__file__).parent / "fixtures" / "yt8m"
TFR = FIX / "tfrecord"
AUDIOSET = FIX / "audioset"
REAL = json.loads((AUDIOSET / "expected_contents.json").read_text())
SYNTH = json.loads((TFR / "synthetic_contents.json").read_text())
SYNTH_NAMES = ["synth_a", "synth_b", "synth_single", "synth_edge"]


@pytest.fixture(scope="module")
def real_npz():
    with np.load(AUDIOSET / "expected_contents.npz") as z:
        return dict(z)


@pytest.fixture(scope="module")
def synth_npz():
    with np.load(TFR / "synthetic_contents.npz") as z:
        return dict(z)


def real_expected() -> list[tuple[str, dict]]:
    """``(npz key prefix, json record)`` in the datasets' order (sorted relative path)."""
    out = []
    for name in sorted(REAL["files"]):
        split, stem = name[: -len(".tfrecord")].split("/")
        for i, rec in enumerate(REAL["files"][name]["records"]):
            out.append((f"{split}__{stem}__{i}__", rec))
    return out


def bits(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


@pytest.fixture()
def dataset(tmp_path) -> AudioSetDataset:
    return AudioSetDataset(AUDIOSET, cache_dir=tmp_path / "cache", return_quantized=True)


# ------------------------------------------------------------------------- dequantisation


def test_dequantize_matches_youtube8m_bitwise():
    with np.load(FIX / "dequantize" / "dequantize.npz") as d:
        q = d["q"]
        assert q.tolist() == list(range(256))
        assert np.array_equal(bits(dequantize(q)), bits(d["default_float32_tf"]))
        assert np.array_equal(bits(dequantize(q, 4.0, -4.0)), bits(d["extra_float32_tf"]))
        assert float(dequantize(q)[0]) == -1.9921875 and float(dequantize(q)[255]) == 2.0078125
        # the datasets' numpy path is the same function, bit for bit
        frames = np.stack([q, q[::-1]])
        assert np.array_equal(bits(dequantize_frames(frames)), bits(dequantize(frames)))
        assert dequantize_frames(frames).dtype == torch.float32


# ------------------------------------------------------------------------------- records


@pytest.mark.parametrize("stem", SYNTH_NAMES)
def test_decode_synthetic_records(stem, synth_npz):
    records = SYNTH["files"][f"{stem}.tfrecord"]["records"]
    for i, (payload, rec) in enumerate(zip(read_tfrecord(TFR / f"{stem}.tfrecord"), records)):
        r = decode_audioset_record(payload)
        assert r.video_id == rec["video_id"]
        assert r.start_time_seconds == rec["start_time_seconds"]
        assert r.end_time_seconds == rec["end_time_seconds"]
        if rec["labels_key_present"]:
            assert r.labels.tolist() == rec["labels"]
        else:
            assert r.labels is None
        assert r.quantized.dtype == np.uint8 and r.quantized.shape == (rec["num_frames"], 128)
        assert np.array_equal(r.quantized, synth_npz[f"{stem}__{i}__audio_embedding"])


def test_synthetic_single_frame_values(synth_npz):
    (payload,) = read_tfrecord(TFR / "synth_single.tfrecord")
    q = decode_audioset_record(payload).quantized
    assert (q[0] == 0).all() and (q[1] == 255).all() and q[2].tolist() == list(range(0, 256, 2))


def test_dataset_items_match_tensorflow(dataset, real_npz):
    expected = real_expected()
    assert len(dataset) == len(expected) == 14
    assert [p.relative_to(AUDIOSET).as_posix() for p in dataset.shards] == [
        "bal_train/Av.tfrecord",
        "eval/RK.tfrecord",
    ]
    for i, (key, rec) in enumerate(expected):
        item = dataset[i]
        assert item["video_id"] == rec["video_id"]
        assert item["start_time_seconds"] == rec["start_time_seconds"]
        assert item["end_time_seconds"] == rec["end_time_seconds"]
        assert item["num_frames"] == rec["num_frames"]
        assert item["labels"].dtype == torch.float32 and item["labels"].shape == (527,)
        assert np.array_equal(
            item["labels"].numpy(), real_npz[key + "labels_dense"].astype(np.float32)
        )
        assert np.array_equal(item["quantized"].numpy(), real_npz[key + "audio_embedding"])
        assert item["embeddings"].dtype == torch.float32
        assert np.array_equal(bits(item["embeddings"]), bits(real_npz[key + "dequantized"]))
        assert dataset.location(i) == (
            AUDIOSET / ("bal_train/Av.tfrecord" if i < 8 else "eval/RK.tfrecord"),
            rec["offset"],
        )
    assert dataset[-1]["video_id"] == expected[-1][1]["video_id"]
    with pytest.raises(IndexError):
        dataset[14]


def test_collate_matches_youtube8m_reader_matrix(dataset, real_npz):
    expected = real_expected()
    batch = collate_audioset([dataset[i] for i in range(len(dataset))], pad_to=10)
    assert batch["embeddings"].shape == (14, 10, 128)
    for i, (key, _) in enumerate(expected):
        # zero padding after dequantisation, as get_video_matrix(max_frames=10)
        assert np.array_equal(
            bits(batch["embeddings"][i]), bits(real_npz[key + "reader_matrix_max10"])
        )
    assert batch["num_frames"].tolist() == [10, 10, 10, 10, 9, 1, 10, 10, 2, 10, 10, 10, 4, 10]
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].sum(1).tolist() == batch["num_frames"].tolist()
    assert batch["quantized"].dtype == torch.uint8 and batch["quantized"][5, 1:].eq(0).all()
    assert batch["video_id"] == [r["video_id"] for _, r in expected]
    assert batch["start_time_seconds"].dtype == torch.float64
    # default: pad to the longest item of the batch
    short = collate_audioset([dataset[5], dataset[8]])
    assert short["embeddings"].shape == (2, 2, 128) and short["mask"].tolist() == [
        [True, False],
        [True, True],
    ]
    with pytest.raises(ValueError, match="more than pad_to"):
        collate_audioset([dataset[0]], pad_to=5)


def test_synthetic_edge_cases_through_the_dataset(tmp_path, synth_npz):
    ds = AudioSetDataset(
        [TFR / f"{s}.tfrecord" for s in SYNTH_NAMES] + [TFR / "synth_empty.tfrecord"],
        cache_dir=tmp_path,
        max_frames=10,
    )
    assert len(ds) == 5 + 4 + 1 + 2
    items = [ds[i] for i in range(len(ds))]
    keys = [
        f"{s}__{i}__"
        for s in SYNTH_NAMES
        for i in range(SYNTH["files"][f"{s}.tfrecord"]["num_records"])
    ]
    for item, key in zip(items, keys):
        assert np.array_equal(
            item["labels"].numpy(), synth_npz[key + "labels_dense"].astype(np.float32)
        )
        assert np.array_equal(bits(item["embeddings"]), bits(synth_npz[key + "dequantized"]))
    assert items[2]["labels"].sum() == 0  # empty labels list
    assert items[6]["labels"].sum() == 0  # no labels key
    assert items[7]["labels"][[0, 526]].tolist() == [1.0, 1.0]
    zero = items[10]  # synth_edge record 0: no frames at all
    assert zero["num_frames"] == 0 and zero["embeddings"].shape == (0, 128)
    assert items[11]["start_time_seconds"] == 6.5 and items[11]["end_time_seconds"] == 10.5
    batch = collate_audioset(items, pad_to=10)
    for i, key in enumerate(keys):
        assert np.array_equal(
            bits(batch["embeddings"][i]), bits(synth_npz[key + "reader_matrix_max10"])
        )
    assert not batch["mask"][10].any()
    assert collate_audioset([zero])["embeddings"].shape == (1, 0, 128)


def test_max_frames_truncates(tmp_path):
    ds = AudioSetDataset(AUDIOSET, cache_dir=tmp_path, max_frames=3, return_quantized=True)
    full = AudioSetDataset(AUDIOSET, cache_dir=tmp_path, return_quantized=True)
    assert [ds[i]["num_frames"] for i in (0, 5, 8)] == [3, 1, 2]
    assert torch.equal(ds[0]["quantized"], full[0]["quantized"][:3])


# ----------------------------------------------------------------------- index and shards


def test_index_cache_is_reused(tmp_path):
    cold = AudioSetDataset(AUDIOSET, cache_dir=tmp_path)
    assert cold.index.num_scanned == 2
    assert len(list(tmp_path.iterdir())) == 2  # one index file per shard folder
    warm = AudioSetDataset(
        [AUDIOSET / "eval", AUDIOSET / "bal_train/Av.tfrecord"], cache_dir=tmp_path
    )
    assert warm.index.num_scanned == 0
    assert [warm[i]["video_id"] for i in range(6)] == [cold[8 + i]["video_id"] for i in range(6)]
    with pytest.raises(FileNotFoundError):
        AudioSetDataset(AUDIOSET / "nope", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.tfrecord files"):
        AudioSetDataset(tmp_path / "empty", cache_dir=tmp_path)


def test_dataset_is_thread_safe(dataset):
    from concurrent.futures import ThreadPoolExecutor

    order = np.random.RandomState(0).permutation(len(dataset)).tolist() * 3
    expected = {i: dataset[i]["video_id"] for i in range(len(dataset))}
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda i: dataset[i]["video_id"], order))
    assert got == [expected[i] for i in order]


def test_dataset_pickles_and_loads_in_workers(dataset):
    import pickle

    dataset[0]  # opens a file handle, which must not travel
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone[3]["video_id"] == dataset[3]["video_id"]
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collate_audioset)
    ids = [v for batch in loader for v in batch["video_id"]]
    assert ids == [r["video_id"] for _, r in real_expected()]


def test_corrupt_shards_strict_and_skip_bad(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for name in ("corrupt_data_crc", "corrupt_length_crc"):
        (shards / f"{name}.tfrecord").write_bytes((TFR / f"{name}.tfrecord").read_bytes())
    with pytest.raises(TFRecordError) as e:  # a bad length CRC is found while indexing
        AudioSetDataset(shards, cache_dir=tmp_path / "c")
    assert e.value.offset == 1527 and e.value.path.endswith("corrupt_length_crc.tfrecord")
    ds = AudioSetDataset(shards / "corrupt_data_crc.tfrecord", cache_dir=tmp_path / "c")
    assert len(ds) == 5
    with pytest.raises(TFRecordError) as e:  # a bad payload CRC when the record is read
        ds[2]
    assert e.value.offset == 1817
    with pytest.warns(TFRecordWarning):
        ok = AudioSetDataset(shards, cache_dir=tmp_path / "c", skip_bad=True)
    ids = [r["video_id"] for r in SYNTH["files"]["synth_a.tfrecord"]["records"]]
    assert [ok[i]["video_id"] for i in range(len(ok))] == [ids[i] for i in (0, 1, 3, 4, 0, 2, 3, 4)]
    it = AudioSetIterableDataset(shards, skip_bad=True)
    with pytest.warns(TFRecordWarning):
        assert [x["video_id"] for x in it] == [ids[i] for i in (0, 1, 3, 4, 0, 2, 3, 4)]
    assert [(Path(s.path).name, s.offset) for s in it.skipped] == [
        ("corrupt_data_crc.tfrecord", 1817),
        ("corrupt_length_crc.tfrecord", 1527),
    ]


def test_malformed_records_name_file_and_offset(tmp_path):
    good = {"video_id": "abcdefghijk", "start_time_seconds": 0.0, "end_time_seconds": 1.0}
    frame = [bytes(128)]
    cases = {
        "label.tfrecord": ({**good, "labels": np.array([527])}, {"audio_embedding": [frame]}),
        "frame.tfrecord": (good, {"audio_embedding": [[bytes(127)]]}),
        "nolist.tfrecord": (good, {"rgb": [frame]}),
        "noid.tfrecord": (
            {"start_time_seconds": 0.0, "end_time_seconds": 1.0},
            {"audio_embedding": []},
        ),
    }
    messages = {
        "label": "outside",
        "frame": "128-byte",
        "nolist": "audio_embedding",
        "noid": "video_id",
    }
    for name, (ctx, lists) in cases.items():
        write_tfrecord(tmp_path / name, [serialize_sequence_example(ctx, lists)])
        ds = AudioSetDataset(tmp_path / name, cache_dir=tmp_path / "c")
        with pytest.raises(ValueError, match=messages[name.split(".")[0]]) as e:
            ds[0]
        assert f"{name}: record at byte 0" in str(e.value)
        with pytest.raises(ValueError, match=f"{name}: record at byte 0"):
            list(AudioSetIterableDataset(tmp_path / name))


# ------------------------------------------------------------------------------ streaming


def test_iterable_dataset_reads_everything_once(dataset):
    stream = AudioSetIterableDataset(AUDIOSET, return_quantized=True)
    got = list(stream)
    assert [g["video_id"] for g in got] == [dataset[i]["video_id"] for i in range(len(dataset))]
    assert all(torch.equal(g["embeddings"], dataset[i]["embeddings"]) for i, g in enumerate(got))
    shuffled = AudioSetIterableDataset(AUDIOSET, shuffle=True, seed=3)
    a = [x["video_id"] for x in shuffled]
    assert sorted(a) == sorted(g["video_id"] for g in got) and a == [
        x["video_id"] for x in shuffled
    ]
    orders = set()
    for epoch in range(6):
        shuffled.set_epoch(epoch)
        orders.add(tuple(x["video_id"] for x in shuffled))
    assert len(orders) > 1


def test_iterable_dataset_splits_shards_across_ranks_and_workers():
    shards = [TFR / f"{s}.tfrecord" for s in SYNTH_NAMES]
    full = AudioSetIterableDataset(shards)
    assert full.shards_for(0, 2) == [shards[0], shards[2]] and full.shards_for(1, 2) == [
        shards[1],
        shards[3],
    ]
    r1 = AudioSetIterableDataset(shards, rank=1, world_size=2)
    assert r1.shards_for(0, 2) == [shards[1]] and r1.shards_for(1, 2) == [shards[3]]
    loader = DataLoader(full, batch_size=None, num_workers=2)
    got = sorted(x["video_id"] for x in loader)
    expected = sorted(
        r["video_id"] for s in SYNTH_NAMES for r in SYNTH["files"][f"{s}.tfrecord"]["records"]
    )
    assert got == expected  # every record exactly once across the two workers
    with pytest.raises(ValueError):
        AudioSetIterableDataset(shards, rank=2, world_size=2)


# -------------------------------------------------------------------------------- classes


def test_class_names_ship_with_the_package():
    csv_bytes = files("audiorep.data").joinpath("class_labels_indices.csv").read_bytes()
    assert hashlib.md5(csv_bytes).hexdigest() == "68c0b5c199d6cc789852b144cc3ab500"
    names, mids = audioset_class_names(), audioset_class_mids()
    assert len(names) == len(mids) == 527
    assert names[:2] == ["Speech", "Male speech, man speaking"]
    assert mids[0] == "/m/09x0r" and len(set(mids)) == 527
    names.append("x")  # callers get a copy
    assert len(audioset_class_names()) == 527
    assert files("audiorep.data").joinpath("ATTRIBUTION.md").read_text().count("CC BY 4.0")


# ----------------------------------------------------------------------------- recordings


def _write_wav(path: Path, seconds: float, sr: int, seed: int, channels: int = 1) -> np.ndarray:
    pcm = np.random.RandomState(seed).randint(-20000, 20000, (int(seconds * sr), channels))
    sf.write(path, pcm.astype(np.int16), sr, subtype="PCM_16")
    return pcm.astype(np.float32).T / 32768.0


@pytest.fixture()
def recordings(tmp_path):
    """Recordings for 4 of the 8 Av segments, in the three accepted namings."""
    records = REAL["files"]["bal_train/Av.tfrecord"]["records"]
    root = tmp_path / "audio"
    (root / "sub").mkdir(parents=True)
    made = {}
    r0, r1, r2, r5 = records[0], records[1], records[2], records[5]
    ms = int(round(r0["start_time_seconds"] * 1000))
    made[0] = (
        root / f"{r0['video_id']}_{ms}.wav",
        _write_wav(root / f"{r0['video_id']}_{ms}.wav", 0.5, 8000, 0),
    )
    made[1] = (
        root / "sub" / f"{r1['video_id']}.wav",
        _write_wav(root / "sub" / f"{r1['video_id']}.wav", 0.25, 16000, 1, 2),
    )
    made[2] = (
        root / f"Y{r2['video_id']}.flac",
        _write_wav(root / f"Y{r2['video_id']}.flac", 0.3, 8000, 2),
    )
    # whole-video file for record 5 (1 s segment starting at start_time_seconds)
    dur = r5["end_time_seconds"] + 0.5
    made[5] = (
        root / f"{r5['video_id']}.wav",
        _write_wav(root / f"{r5['video_id']}.wav", dur, 1000, 5),
    )
    (root / "notes.txt").write_text("not audio")
    return root, made


def test_recordings_pairing_and_audio(tmp_path, recordings):
    root, made = recordings
    ds = AudioSetWithRecordings(AUDIOSET / "bal_train", root, cache_dir=tmp_path / "c", mono=False)
    assert [i for i, _, _ in ds.pairs] == [0, 1, 2, 5]
    assert len(ds) == 4 and len(ds.missing) == 4
    features = AudioSetDataset(AUDIOSET / "bal_train", cache_dir=tmp_path / "c")
    for k, (i, path, _) in enumerate(ds.pairs):
        item = ds[k]
        assert item["audio_path"] == str(made[i][0]) == str(path)
        assert item["video_id"] == features[i]["video_id"]
        assert torch.equal(item["embeddings"], features[i]["embeddings"])
        assert np.array_equal(item["audio"].numpy(), made[i][1])
    assert ds[0]["sample_rate"] == 8000 and ds[1]["audio"].shape == (2, 4000)


def test_recordings_modes_trim_resample_and_collate(tmp_path, recordings):
    root, made = recordings
    cache = tmp_path / "c"
    audio_only = AudioSetWithRecordings(
        AUDIOSET / "bal_train", root, output="audio", cache_dir=cache
    )
    item = audio_only[1]
    assert "embeddings" not in item and item["audio"].shape == (4000,)  # mono: channel mean
    assert np.allclose(item["audio"].numpy(), made[1][1].mean(0), atol=1e-7)
    emb_only = AudioSetWithRecordings(
        AUDIOSET / "bal_train", root, output="embeddings", cache_dir=cache
    )
    assert "audio" not in emb_only[0] and emb_only[0]["embeddings"].shape == (10, 128)
    trimmed = AudioSetWithRecordings(AUDIOSET / "bal_train", root, trim=True, cache_dir=cache)
    r5 = REAL["files"]["bal_train/Av.tfrecord"]["records"][5]
    a, b = int(round(r5["start_time_seconds"] * 1000)), int(round(r5["end_time_seconds"] * 1000))
    assert np.array_equal(trimmed[3]["audio"].numpy(), made[5][1][0, a:b])
    assert trimmed[0]["audio"].shape == (4000,)  # ID_<ms> files are segments: never trimmed
    resampled = AudioSetWithRecordings(
        AUDIOSET / "bal_train", root, sample_rate=16000, cache_dir=cache
    )
    assert resampled[0]["sample_rate"] == 16000 and resampled[0]["audio"].shape == (8000,)
    batch = collate_audioset([audio_only[k] for k in range(len(audio_only))])
    assert batch["audio"].shape == (4, max(len(m[1][0]) for m in made.values()))
    assert batch["audio_lengths"].tolist() == [4000, 4000, 2400, len(made[5][1][0])]
    assert batch["sample_rate"].tolist() == [8000, 16000, 8000, 1000]
    assert "embeddings" not in batch and batch["labels"].shape == (4, 527)
    with pytest.raises(FileNotFoundError, match="4 of 8 segments"):
        AudioSetWithRecordings(AUDIOSET / "bal_train", root, missing="error", cache_dir=cache)
    with pytest.raises(ValueError):
        AudioSetWithRecordings(AUDIOSET / "bal_train", root, output="video", cache_dir=cache)
    reuse = AudioSetWithRecordings(AudioSetDataset(AUDIOSET / "bal_train", cache_dir=cache), root)
    assert len(reuse) == 4
