"""``--engine ray``: the extraction pipeline of :mod:`audiorep.extract.engine` on Ray Data.

Data flow (one Ray Dataset, streamed)::

    driver: collect_inputs -> rows (index, path, abspath)                ray.data.from_items
      -> CPU tasks: decode + mix + resample + frame (ClipExamples)      map_batches(fn, 1 file)
         one row per example (index, example_index, float32 96x64)
         + one marker row per file (example count, duration, or the error)
      -> model actors: audiorep.load(**load_kwargs) once per actor,      map_batches(class,
         embed_fixed_batches(bundle, x, batch_size)                        num_gpus=..., ...)
      -> driver: rows regrouped per file, in example order -> FileResult
         -> the local engine's writers (parquet shards / npz / tfrecord), failures.tsv

Why the outputs equal the local engine's, bit for bit:

* examples come from the same :class:`~audiorep.extract.stream.ClipExamples` with the same
  windowing, frontend dtype, ``chunk_seconds`` and ``pad_short``;
* the model always runs on batches of exactly ``batch_size`` rows (zero-padded,
  :func:`~audiorep.extract.engine.embed_fixed_batches`), so a row's embedding does not depend
  on which other rows (of which files) Ray packed with it;
* the driver rebuilds each file's ``(N, 128)`` array in example order and hands it to the very
  writer classes the local engine uses (:func:`~audiorep.extract.formats.make_output`): shard
  names, row order, timestamps, PCA quantisation (computed per file, as locally) and schema
  metadata are the same; ``--resume`` recognises the same finished shards.

What can still differ is the machine: on CPU the float32 model's last bits (~1e-5) depend on
the number of intra-op threads (``threads_per_actor`` here, ``torch.get_num_threads()``
locally) and on the CPU's kernels, so the same CPU type and thread count give identical files
(tested). On GPU the same should hold for the same GPU model and software stack (not tested:
the test machine has no GPU).

Only embeddings (0.5 KB per example) travel back to the driver; the examples (24 KB each) stay
between the decode tasks and the model actors. So the driver writes the outputs (its local disk
or a shared mount) and needs no more than a few MB/s of network, even with many GPUs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from audiorep.extract.engine import FILE_ERRORS, FileResult, RunSummary, embed_fixed_batches
from audiorep.extract.inputs import collect_inputs

ENGINES = ("local", "ray")
#: Memory reserved per decode task (a scheduling hint, not a limit): the worker with torch
#: imported (~250 MB) plus a chunk of ``chunk_seconds`` and the resampler's context.
DECODE_TASK_MEMORY = 512 * 2**20
_EMBEDDING_SIZE = 128


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "--engine ray needs Ray Data: pip install 'audiorep[ray]' (or 'ray[data]')"
        ) from exc
    return ray


# ----------------------------------------------------------------------------- stage 1: decode


def _marker(index: int, count: int, duration: float, padded: bool, error: str) -> dict:
    """The last row of a file: how many example rows it produced, its duration, or its error."""
    return {
        "index": np.array([index], np.int64),
        "example_index": np.array([-1], np.int32),
        "examples": np.zeros((1, 96, 64), np.float32),
        "count": np.array([count], np.int64),
        "duration": np.array([duration], np.float64),
        "padded": np.array([padded]),
        "error": np.array([error], dtype=object),
    }


def _decode_files(batch: dict, *, windowing, dtype, chunk_seconds: float, pad_short: bool):
    """Ray ``map_batches`` function: input rows ``(index, path, abspath)`` -> example rows and
    a marker row per file (``abspath`` is read: workers need not share the driver's cwd).

    Yields one batch per decoded chunk, so a long file never sits in memory whole. A file that
    fails (at any point) ends with an error marker; the driver then drops its rows.
    """
    from audiorep.extract.stream import ClipExamples

    for index, path, where in zip(
        batch["index"].tolist(), batch["path"].tolist(), batch["abspath"].tolist()
    ):
        clip = ClipExamples(where, windowing, dtype, chunk_seconds, pad_short)
        done = 0
        try:
            for chunk in clip:
                x = chunk.numpy()
                n = x.shape[0]
                if n == 0:
                    continue
                yield {
                    "index": np.full(n, index, np.int64),
                    "example_index": np.arange(done, done + n, dtype=np.int32),
                    "examples": x,
                    "count": np.zeros(n, np.int64),
                    "duration": np.zeros(n, np.float64),
                    "padded": np.zeros(n, bool),
                    "error": np.full(n, "", dtype=object),
                }
                done += n
        except Exception as exc:  # noqa: BLE001 - one bad file must not end a cluster job
            msg = str(exc).replace(where, path)  # name the file as the local engine does
            if not isinstance(exc, FILE_ERRORS):  # the local engine would stop here
                msg = f"{type(exc).__name__}: {msg}"
            yield _marker(index, done, 0.0, False, msg if path in msg else f"{path}: {msg}")
            continue
        yield _marker(index, done, float(clip.duration), bool(clip.padded), "")


# ----------------------------------------------------------------------------- stage 2: model


class _Embedder:
    """Ray actor: loads the bundle once, embeds example rows in fixed-size model batches."""

    def __init__(
        self,
        load_kwargs: dict,
        batch_size: int,
        weights_sha256: str,
        threads: int | None,
        low_memory: bool,
    ) -> None:
        import ray
        import torch

        from audiorep.pipelines import load

        if threads:
            torch.set_num_threads(int(threads))
        kwargs = dict(load_kwargs)
        kwargs["device"] = "cuda" if ray.get_gpu_ids() else "cpu"
        kwargs["pca"] = False  # the driver quantises, per file, as the local engine does
        self.bundle = load(**kwargs)
        self.bundle.low_memory = low_memory
        self.batch_size = batch_size
        got = self.bundle.weights_fingerprint()
        if got != weights_sha256:
            import socket

            raise RuntimeError(
                f"weights on {socket.gethostname()} (sha256 {got[:12]}...) differ from the "
                f"driver's ({weights_sha256[:12]}...): give every node the same weights file"
            )

    def __call__(self, batch: dict) -> dict:
        import torch

        keep = batch["example_index"] >= 0
        emb = np.zeros((keep.shape[0], _EMBEDDING_SIZE), np.float32)
        if keep.any():
            x = torch.from_numpy(np.ascontiguousarray(batch["examples"][keep], np.float32))
            with torch.inference_mode():
                e, _ = embed_fixed_batches(self.bundle, x, self.batch_size)
            emb[keep] = e.numpy()
        out = {k: batch[k] for k in ("index", "example_index", "count", "duration", "padded")}
        out["error"] = batch["error"]
        out["embedding"] = emb
        return out


# ----------------------------------------------------------------------------- driver


class _Pending:
    __slots__ = ("order", "parts", "count", "info")

    def __init__(self) -> None:
        self.order: list[np.ndarray] = []
        self.parts: list[np.ndarray] = []
        self.count = 0
        self.info: tuple[int, float, bool] | None = None  # (examples, duration, padded)


def _resolve_resources(ray, num_gpus_per_actor, concurrency, cpus_per_actor):
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0.0))
    cpus = float(resources.get("CPU", 1.0))
    if num_gpus_per_actor is None:
        num_gpus_per_actor = 1.0 if gpus > 0 else 0.0
    if num_gpus_per_actor > 0 and gpus < num_gpus_per_actor and concurrency is None:
        raise RuntimeError(
            f"{num_gpus_per_actor:g} GPU(s) per actor asked for, but the cluster has {gpus:g} "
            "(on an autoscaling cluster, give the number of actors to start anyway)"
        )
    if concurrency is None:
        if num_gpus_per_actor > 0:
            concurrency = max(1, int(gpus // num_gpus_per_actor))
        else:  # leave about half of the CPUs to decoding and resampling
            concurrency = max(1, int(cpus // (2 * cpus_per_actor)))
    fewest = concurrency[0] if isinstance(concurrency, (tuple, list)) else concurrency
    if fewest * cpus_per_actor + 1 > cpus:
        raise RuntimeError(
            f"{fewest} model actor(s) x {cpus_per_actor:g} CPU would take all {cpus:g} CPUs of "
            "the cluster; decoding needs at least one: use fewer actors or CPUs per actor"
        )
    return float(num_gpus_per_actor), concurrency


def embed_files_ray(
    load_kwargs: dict,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    fmt: str = "parquet",
    batch_size: int = 64,
    chunk_seconds: float = 20.0,
    pad_short: bool = False,
    extensions: Iterable[str] | None = None,
    shard_size: int = 256,
    resume: bool = False,
    num_gpus_per_actor: float | None = None,
    concurrency: int | tuple[int, int] | None = None,
    cpus_per_actor: float = 1.0,
    threads_per_actor: int | None = None,
    low_memory: bool = False,
    ray_address: str | None = None,
    bundle=None,
    progress: bool = True,
) -> RunSummary:
    """Embed every input on a Ray cluster; same outputs as :func:`~audiorep.extract.runner.
    embed_files` (see the module docstring for the conditions).

    Args:
        load_kwargs: keyword arguments of :func:`audiorep.load` (``weights``, ``pca``,
            ``seed``, ``windowing``, ``precision``, ``frontend_dtype``, ...). Every model actor
            loads its own bundle with them; ``device`` is replaced by ``cuda`` on actors given
            a GPU and ``cpu`` elsewhere. A weights file must exist at the same path on every
            node (the actors check that its fingerprint equals the driver's).
        inputs: files, folders (recursive) and list files, as for the local engine; paths
            must be readable at the same location from every node (shared storage).
        out_dir: output folder, written by the driver.
        fmt: ``parquet`` (default), ``npz`` or ``tfrecord``: the local engine's writers.
        batch_size: rows per model forward pass (fixed; the last one zero-padded).
        chunk_seconds, pad_short, extensions, shard_size, resume: as for the local engine.
        num_gpus_per_actor: GPUs per model actor; ``None``: 1 if the cluster has GPUs, else 0
            (CPU actors). Fractions (0.5) put several actors on one GPU.
        concurrency: number of model actors (or a ``(min, max)`` autoscaling range);
            ``None``: one per GPU slot, or on CPU clusters one per ``2 * cpus_per_actor``
            cluster CPUs.
        cpus_per_actor: CPUs reserved per model actor.
        threads_per_actor: torch intra-op threads in each actor (default
            ``max(1, int(cpus_per_actor))``). On CPU the float32 results depend on it: use the
            local run's ``torch.get_num_threads()`` to reproduce a local run bit for bit.
        low_memory: as ``bundle.low_memory`` (``--low-memory``).
        ray_address: cluster to join (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``);
            ``None``: the running Ray of this process, else ``RAY_ADDRESS``, else a new local
            one (which is shut down at the end).
        bundle: the driver's bundle made with the same ``load_kwargs`` (to avoid loading it
            twice); used for settings metadata, PCA quantisation and the output layout.
        progress: a tqdm bar (files/s, audio hours) on the driver.

    Returns:
        the run summary; failures are also written to ``<out>/failures.tsv`` (path, reason,
        in input order), which is removed when a run has none.
    """
    ray = _require_ray()
    from tqdm import tqdm

    from audiorep.extract.formats import make_output
    from audiorep.extract.runner import write_failures
    from audiorep.extract.writers import claim_output_dir
    from audiorep.pipelines import load

    if batch_size < 1:
        raise ValueError("batch size must be >= 1")
    if bundle is None:
        bundle = load(**{**load_kwargs, "device": "cpu"})
    if not bundle.streams_windows:
        raise ValueError("--engine ray runs VGGish (examples of 96 x 64 log-mel frames) only")
    items = collect_inputs(inputs, extensions)
    with claim_output_dir(out_dir) as out:
        writer = make_output(fmt, out, items, bundle, shard_size)
        todo = writer.pending() if resume else list(range(len(items)))
        summary = RunSummary(files=len(items))
        hop = bundle.windowing.hop_seconds
        if hasattr(summary, "windows"):  # as the local engine describes them
            summary.windows = bundle.describe_units()
        if hasattr(summary, "hop_seconds"):
            summary.hop_seconds = hop
        summary.skipped = len(items) - len(todo)
        start = time.perf_counter()

        started_here = False
        if todo and not ray.is_initialized():
            import logging

            init_kwargs: dict = {"logging_level": logging.INFO if progress else logging.WARNING}
            if ray_address is None and not os.environ.get("RAY_ADDRESS"):
                init_kwargs["include_dashboard"] = False
            ray.init(address=ray_address, **init_kwargs)
            started_here = True

        bar = tqdm(
            total=len(todo), unit="file", disable=not progress, dynamic_ncols=True, smoothing=0.05
        )

        def finish(result: FileResult) -> None:
            summary.record(result)
            writer.add(result)
            bar.update(1)
            wall = max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(
                audio_h=f"{summary.audio_seconds / 3600:.3f}",
                audio_h_per_s=f"{summary.audio_seconds / 3600 / wall:.4f}",
                failed=len(summary.failures),
            )

        try:
            if todo:
                rows = _run_dataset(
                    ray,
                    [(i, str(items[i].path), str(items[i].path.absolute())) for i in todo],
                    load_kwargs=load_kwargs,
                    windowing=bundle.windowing,
                    frontend_dtype=bundle.frontend.dtype,
                    weights_sha256=bundle.weights_fingerprint(),
                    batch_size=batch_size,
                    chunk_seconds=chunk_seconds,
                    pad_short=pad_short,
                    num_gpus_per_actor=num_gpus_per_actor,
                    concurrency=concurrency,
                    cpus_per_actor=cpus_per_actor,
                    threads_per_actor=threads_per_actor,
                    low_memory=low_memory,
                    progress=progress,
                )
                for result in _regroup(rows, items, set(todo)):
                    _set_times(result, bundle)
                    finish(result)
        finally:
            bar.close()
            if started_here:
                ray.shutdown()
        writer.close()
        position = {str(it.path): i for i, it in enumerate(items)}
        summary.failures.sort(key=lambda f: position.get(f[0], len(items)))
        summary.wall_seconds = time.perf_counter() - start
        write_failures(out, summary.failures)
    return summary


def _actor_pool(ray, actors):
    if isinstance(actors, (tuple, list)):
        return ray.data.ActorPoolStrategy(min_size=int(actors[0]), max_size=int(actors[1]))
    return ray.data.ActorPoolStrategy(size=int(actors))


def _run_dataset(
    ray, rows: list[tuple[int, str, str]], *, progress: bool, **kwargs
) -> Iterator[dict]:
    """Build and run the dataset; yields the actors' output batches (numpy dicts)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    settings = {
        "enable_progress_bars": False,  # the driver's own bar counts files and audio hours
        "print_on_execution_start": progress,
        "enable_auto_log_stats": False,
    }
    saved = {name: getattr(ctx, name) for name in settings if hasattr(ctx, name)}
    for name in saved:  # not all of them exist in every Ray version
        setattr(ctx, name, settings[name])
    try:
        yield from _execute(ray, rows, **kwargs)
    finally:  # leave the caller's Ray Data settings as they were
        for name, value in saved.items():
            setattr(ctx, name, value)


def _execute(
    ray,
    rows,
    *,
    load_kwargs,
    windowing,
    frontend_dtype,
    weights_sha256,
    batch_size,
    chunk_seconds,
    pad_short,
    num_gpus_per_actor,
    concurrency,
    cpus_per_actor,
    threads_per_actor,
    low_memory,
) -> Iterator[dict]:
    num_gpus, actors = _resolve_resources(ray, num_gpus_per_actor, concurrency, cpus_per_actor)
    if threads_per_actor is None:
        threads_per_actor = max(1, int(cpus_per_actor))
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    # Enough blocks to spread decoding over every CPU, small enough that stragglers are short.
    blocks = min(len(rows), max(4 * int(cpus), math.ceil(len(rows) / 32)), 20000)
    ds = ray.data.from_items(
        [{"index": i, "path": p, "abspath": a} for i, p, a in rows],
        override_num_blocks=max(1, blocks),
    )
    ds = ds.map_batches(
        _decode_files,
        batch_size=1,
        batch_format="numpy",
        # Distinct remote args also keep Ray from fusing decoding into the model actors (it
        # would then run serially inside them instead of in parallel CPU tasks).
        num_cpus=1,
        memory=DECODE_TASK_MEMORY,
        fn_kwargs={
            "windowing": windowing,
            "dtype": frontend_dtype,
            "chunk_seconds": chunk_seconds,
            "pad_short": pad_short,
        },
    )
    ds = ds.map_batches(
        _Embedder,
        batch_size=batch_size,
        batch_format="numpy",
        fn_constructor_kwargs={
            "load_kwargs": dict(load_kwargs),
            "batch_size": batch_size,
            "weights_sha256": weights_sha256,
            "threads": threads_per_actor,
            "low_memory": low_memory,
        },
        compute=_actor_pool(ray, actors),
        num_gpus=num_gpus,
        num_cpus=cpus_per_actor,
    )
    yield from ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2)


def _set_times(result: FileResult, bundle) -> None:
    """Fill the example start/end times the local engine puts on a result (where
    :class:`FileResult` has them), computed the same way."""
    if result.embeddings is None or not hasattr(result, "timestamps"):
        return
    n = result.embeddings.shape[0]
    try:
        from audiorep.extract.engine import window_times
    except ImportError:  # an engine without it: VGGish examples last 0.96 s, every hop
        starts = np.arange(n) * bundle.windowing.hop_seconds
        ends = starts + 0.96
    else:
        starts, ends = window_times(bundle, n, result.duration)
    result.timestamps, result.ends = starts, ends


def _regroup(batches: Iterable[dict], items, todo: set[int]) -> Iterator[FileResult]:
    """Example rows (any order, any packing) -> one :class:`FileResult` per input (``items``
    indices), as soon as its marker and all its rows have arrived."""
    pending: dict[int, _Pending] = {}
    failed: set[int] = set()
    finished = 0

    def complete(index: int, st: _Pending) -> FileResult:
        count, duration, padded = st.info
        if st.parts:
            order = np.concatenate(st.order)
            emb = np.concatenate(st.parts)[np.argsort(order, kind="stable")]
            if not np.array_equal(np.sort(order), np.arange(count)):
                raise RuntimeError(f"input {index}: example rows arrived incomplete")
        else:
            emb = np.zeros((0, _EMBEDDING_SIZE), np.float32)
        emb = np.ascontiguousarray(emb)
        return FileResult(
            index=index, item=items[index], embeddings=emb, duration=duration, padded=padded
        )

    for batch in batches:
        index_col = batch["index"]
        ex_col = batch["example_index"]
        for index in np.unique(index_col).tolist():
            if index in failed:
                continue
            sel = index_col == index
            ex = ex_col[sel]
            st = pending.setdefault(index, _Pending())
            rows = ex >= 0
            if rows.any():
                st.order.append(ex[rows])
                st.parts.append(batch["embedding"][sel][rows])
                st.count += int(rows.sum())
            if not rows.all():  # this batch holds the file's marker
                k = int(np.flatnonzero(~rows)[0])
                error = str(batch["error"][sel][k])
                if error:
                    del pending[index]
                    failed.add(index)
                    finished += 1
                    yield FileResult(index=index, item=items[index], error=error)
                    continue
                st.info = (
                    int(batch["count"][sel][k]),
                    float(batch["duration"][sel][k]),
                    bool(batch["padded"][sel][k]),
                )
            if st.info is not None and st.count == st.info[0]:
                del pending[index]
                finished += 1
                yield complete(index, st)
    if finished != len(todo) or pending:
        missing = sorted(todo - failed - set(pending))[:5]
        raise RuntimeError(
            f"the Ray pipeline returned {finished} of {len(todo)} inputs "
            f"(incomplete: {sorted(pending)[:5]}, e.g. {missing})"
        )


# ----------------------------------------------------------------------------- CLI glue


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine`` and the Ray options to the ``audiorep embed`` parser."""
    g = parser.add_argument_group("distributed (--engine ray)")
    g.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local (default): this process and --workers; ray: the same pipeline on a Ray "
        "cluster (pip install 'audiorep[ray]'; see docs/distributed.md)",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to join: 'auto' (the cluster this node belongs to), HOST:6379 or "
        "ray://HOST:10001; default: RAY_ADDRESS, else a local Ray on this machine",
    )
    g.add_argument(
        "--num-gpus",
        type=float,
        default=None,
        metavar="N",
        help="GPUs per model actor (e.g. 1, or 0.5 for two actors per GPU; 0 = CPU actors); "
        "default 1 if the cluster has GPUs, else 0",
    )
    g.add_argument(
        "--ray-actors",
        type=int,
        default=None,
        metavar="N",
        help="model actors (default: one per GPU; on CPU clusters one per 2 CPUs per actor)",
    )
    g.add_argument(
        "--ray-cpus-per-actor",
        type=float,
        default=1.0,
        metavar="N",
        help="CPUs reserved per model actor (default 1)",
    )
    g.add_argument(
        "--ray-threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads per model actor (default: its CPUs); on CPU, equal thread "
        "counts give bit-identical results to a local run",
    )


def _ray_error_line(exc: Exception) -> str:
    """The useful part of a Ray error (the remote exception's last line)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"Ray: {lines[-1] if lines else type(exc).__name__}"


def run_from_args(args: argparse.Namespace, load_kwargs: dict, bundle=None) -> int:
    """``audiorep embed --engine ray``: run, print the summary; exit status 0, 1 (some inputs
    failed) or 2 (the run could not start)."""
    from audiorep.extract.runner import FAILURES_FILE

    def fail(message: str) -> int:
        print(f"audiorep embed: {message}", file=sys.stderr)
        return 2

    if getattr(args, "fusion", None):
        return fail("--fusion is not available with --engine ray")
    if getattr(args, "workers", 0):
        print(
            "audiorep embed: --workers is ignored with --engine ray (Ray schedules decoding)",
            file=sys.stderr,
        )
    ext = getattr(args, "ext", None)
    extensions = [e.strip() for e in ext.split(",") if e.strip()] if ext else None
    try:
        summary = embed_files_ray(
            load_kwargs,
            args.inputs,
            args.out,
            fmt=getattr(args, "format", "parquet"),
            batch_size=args.batch_size,
            chunk_seconds=args.chunk_seconds,
            pad_short=args.pad_short,
            extensions=extensions,
            shard_size=getattr(args, "shard_size", 256),
            resume=bool(getattr(args, "resume", False) or getattr(args, "skip_existing", False)),
            num_gpus_per_actor=args.num_gpus,
            concurrency=args.ray_actors,
            cpus_per_actor=args.ray_cpus_per_actor,
            threads_per_actor=args.ray_threads,
            low_memory=bool(getattr(args, "low_memory", False)),
            ray_address=args.ray_address,
            bundle=bundle,
            progress=not getattr(args, "quiet", False),
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        return fail(str(exc))
    except Exception as exc:  # a Ray error: an actor or task that could not start or run
        if not type(exc).__module__.startswith("ray"):
            raise
        return fail(_ray_error_line(exc))
    for line in summary.lines():
        print(line)
    if summary.failures:
        print(f"failures listed in {Path(args.out) / FAILURES_FILE}")
    return 1 if summary.failures else 0


__all__ = ["ENGINES", "add_ray_arguments", "embed_files_ray", "run_from_args"]
