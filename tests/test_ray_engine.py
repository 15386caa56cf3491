"""``--engine ray``: the Ray Data pipeline writes exactly the local engine's outputs."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.extract.engine import FileResult
from audiorep.extract.ray_engine import (
    _regroup,
    _resolve_resources,
    add_ray_arguments,
    run_from_args,
)

# ----------------------------------------------------------------------------- no Ray needed


def _batch(rows):
    """rows: (index, example_index, value, count, duration, error) -> an actor output batch."""
    return {
        "index": np.array([r[0] for r in rows], np.int64),
        "example_index": np.array([r[1] for r in rows], np.int32),
        "embedding": np.array([np.full(128, r[2], np.float32) for r in rows]),
        "count": np.array([r[3] for r in rows], np.int64),
        "duration": np.array([r[4] for r in rows], np.float64),
        "padded": np.zeros(len(rows), bool),
        "error": np.array([r[5] for r in rows], dtype=object),
    }


def test_regroup_restores_example_order_and_drops_failed_files():
    items = [f"item{i}" for i in range(4)]
    batches = [
        _batch([(0, 2, 2.0, 0, 0, ""), (1, 0, 10.0, 0, 0, ""), (0, 0, 0.0, 0, 0, "")]),
        _batch([(0, -1, 0, 3, 2.5, ""), (2, -1, 0, 0, 0.4, "")]),  # 2: shorter than 1 example
        _batch([(1, -1, 0, 1, 0.0, "item1: audio contains NaN"), (1, 1, 11.0, 0, 0, "")]),
        _batch([(0, 1, 1.0, 0, 0, ""), (3, 0, 30.0, 0, 0, ""), (3, -1, 0, 1, 1.0, "")]),
    ]
    got = {r.index: r for r in _regroup(batches, items, {0, 1, 2, 3})}
    assert all(isinstance(r, FileResult) for r in got.values())
    assert [r.item for r in got.values()] == ["item2", "item1", "item0", "item3"]
    np.testing.assert_array_equal(got[0].embeddings[:, 0], [0.0, 1.0, 2.0])
    assert got[0].duration == 2.5 and got[0].error is None
    assert got[1].error == "item1: audio contains NaN" and got[1].embeddings is None
    assert got[2].embeddings.shape == (0, 128)
    assert got[3].embeddings[:, 0].tolist() == [30.0]
    with pytest.raises(RuntimeError, match="returned 0 of 1"):
        list(_regroup([_batch([(0, 0, 0.0, 0, 0, "")])], items, {0}))


def test_cli_arguments():
    p = argparse.ArgumentParser()
    add_ray_arguments(p)
    a = p.parse_args([])
    assert (a.engine, a.ray_address, a.num_gpus, a.ray_actors, a.ray_threads) == (
        "local",
        None,
        None,
        None,
        None,
    )
    a = p.parse_args(["--engine", "ray", "--ray-address", "auto", "--num-gpus", "0.5"])
    assert (a.engine, a.ray_address, a.num_gpus) == ("ray", "auto", 0.5)


class _FakeRay:
    def __init__(self, **resources):
        self.resources = resources

    def cluster_resources(self):
        return self.resources


def test_resources_default_to_gpus_when_present():
    assert _resolve_resources(_FakeRay(CPU=16, GPU=4), None, None, 1.0) == (1.0, 4)
    assert _resolve_resources(_FakeRay(CPU=16, GPU=4), 0.5, None, 1.0) == (0.5, 8)
    assert _resolve_resources(_FakeRay(CPU=2), None, None, 1.0) == (0.0, 1)
    assert _resolve_resources(_FakeRay(CPU=32), None, None, 2.0) == (0.0, 8)
    with pytest.raises(RuntimeError, match="cluster has 0"):
        _resolve_resources(_FakeRay(CPU=8), 1.0, None, 1.0)
    with pytest.raises(RuntimeError, match="decoding needs at least one"):
        _resolve_resources(_FakeRay(CPU=2), None, 2, 1.0)


def test_run_from_args_refuses_fusion(capsys):
    p = argparse.ArgumentParser()
    add_ray_arguments(p)
    args = p.parse_args(["--engine", "ray"])
    args.fusion = "9,14"
    assert run_from_args(args, {"weights": "random"}) == 2
    assert "--fusion" in capsys.readouterr().err


# ----------------------------------------------------------------------------- local Ray cluster


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[data]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")
    pytest.importorskip("pyarrow")
    started = not ray.is_initialized()
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """6 clips of 1-3 s at 16/22.05/44.1/48 kHz (one stereo), a 0.5 s clip, and two bad files:
    one unreadable, one whose NaN sits past the first decoded chunks (fails mid-stream)."""
    root = tmp_path_factory.mktemp("raycorpus")
    rs = np.random.RandomState(3)
    rates = [16000, 22050, 44100, 48000, 22050, 16000]
    for i, sr in enumerate(rates):
        sub = root / ("x" if i % 2 else "y")
        sub.mkdir(exist_ok=True)
        channels = 2 if i == 2 else 1
        wav = 0.2 * rs.randn(int(sr * rs.uniform(1.0, 3.0)), channels)
        sf.write(sub / f"clip{i}.wav", wav.astype(np.float32), sr)
    sf.write(root / "short.wav", (0.1 * rs.randn(8000)).astype(np.float32), 16000)
    (root / "garbage.wav").write_bytes(b"RIFF but not really audio")
    late_nan = (0.1 * rs.randn(16000 * 6)).astype(np.float32)
    late_nan[16000 * 5] = np.nan  # in the second 65536-frame read block
    sf.write(root / "late_nan.wav", late_nan, 16000, subtype="FLOAT")
    return root


def _rows(out: Path):
    import pyarrow.parquet as pq

    shards = sorted(out.glob("part-*.parquet"))
    table = pq.read_table(shards)
    order = sorted(
        range(table.num_rows),
        key=lambda i: (table["rel"][i].as_py(), table["example_index"][i].as_py()),
    )
    return shards, table.take(order)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")  # Ray's own DataContext fields
def test_ray_engine_equals_local_engine(ray_cluster, corpus, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import audiorep
    from audiorep.extract.ray_engine import embed_files_ray
    from audiorep.extract.runner import embed_files

    monkeypatch.chdir(corpus.parent)  # relative input paths: Ray workers have another cwd
    inputs = [corpus.name]
    load_kwargs = {"weights": "random", "seed": 7}  # random weights come with a random PCA
    common = {"fmt": "parquet", "shard_size": 3, "chunk_seconds": 1.0, "progress": False}
    bundle = audiorep.load("vggish", **load_kwargs)
    local = embed_files(bundle, inputs, tmp_path / "local", batch_size=8, **common)

    t0 = time.perf_counter()
    dist = embed_files_ray(
        load_kwargs,
        inputs,
        tmp_path / "ray",
        batch_size=8,
        concurrency=1,
        threads_per_actor=torch.get_num_threads(),  # CPU float32 bits depend on threads
        **common,
    )
    ray_seconds = time.perf_counter() - t0
    print(f"ray engine run: {ray_seconds:.1f} s")

    assert (dist.files, dist.written, dist.examples) == (local.files, local.written, 9)
    assert dist.written == 7 and dist.audio_seconds == pytest.approx(local.audio_seconds)
    assert dist.failures == local.failures and len(dist.failures) == 2
    reasons = dict(dist.failures)
    assert "NaN" in reasons[str(Path(corpus.name, "late_nan.wav"))]
    assert reasons[str(Path(corpus.name, "garbage.wav"))].startswith(f"{corpus.name}/garbage")
    tsv = "failures.tsv"
    assert (tmp_path / "ray" / tsv).read_text() == (tmp_path / "local" / tsv).read_text()

    # the same rows, bit for bit, sorted by (rel, example_index) ...
    local_shards, want = _rows(tmp_path / "local")
    ray_shards, got = _rows(tmp_path / "ray")
    assert got.schema.equals(want.schema, check_metadata=True)
    assert got.column_names == [
        "path",
        "rel",
        "example_index",
        "start",
        "end",
        "embedding",
        "quantized",
    ]
    assert got.num_rows == 9 and got.equals(want)
    emb_got = np.asarray(got["embedding"].combine_chunks().flatten()).view(np.uint32)
    emb_want = np.asarray(want["embedding"].combine_chunks().flatten()).view(np.uint32)
    np.testing.assert_array_equal(emb_got, emb_want)
    meta = json.loads(got.schema.metadata[b"audiorep.settings"])
    assert meta["weights_sha256"] == bundle.weights_fingerprint()
    # ... and, since the driver uses the local writer, the same shard files
    assert [s.name for s in ray_shards] == [s.name for s in local_shards]
    for a, b in zip(ray_shards, local_shards):
        assert pq.read_table(a).equals(pq.read_table(b))

    # resume: every shard is finished, nothing runs
    again = embed_files_ray(load_kwargs, inputs, tmp_path / "ray", resume=True, **common)
    assert again.skipped == again.files == 9 and again.written == 0
