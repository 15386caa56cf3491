"""kill -9 at every commit point of real runs, then resume: the outputs equal an uninterrupted
run's (issue 12: >= 50 kill points across embed, fad, train-classifier and conversion).

Every finished output is published by one rename (``audiorep.atomic.commit``);
``AUDIOREP_FAULT_KILL_AT_COMMIT=N:before|after`` makes a run SIGKILL itself just before or just
after its N-th one. For each command: an uninterrupted run, then for every commit N and both
phases a run killed there followed by a resumed run, compared with the uninterrupted outputs.

The whole campaign is marked ``long`` (``make test-long``; about 10 minutes on 2 cores); one
kill point for each kind of commit runs in ``make test``. ``AUDIOREP_KILL_REPORT=path.json``
writes the figures used in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
YT8M = ROOT / "tests" / "fixtures" / "yt8m" / "audioset" / "bal_train"
REPORT: dict[str, dict[str, int]] = {}


def _run(args: list[str], cwd: Path, home: Path, fault: str | None = None) -> int:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "AUDIOREP_EAGER": "1",
           "AUDIOREP_HOME": str(home), "OMP_NUM_THREADS": "1"}  # fmt: skip
    if fault:
        env["AUDIOREP_FAULT_KILL_AT_COMMIT"] = fault
    done = subprocess.run([sys.executable, "-m", "audiorep", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    if fault is None and done.returncode not in (0,):
        raise AssertionError(f"{args}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return done.returncode


def _files(folder: Path) -> dict[str, bytes]:
    skip = (".audiorep.lock",)
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip and not p.name.endswith(".tmp")
    }


def _same_npz(a: bytes, b: bytes) -> bool:
    import io

    x, y = np.load(io.BytesIO(a)), np.load(io.BytesIO(b))
    return x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)


def _same_safetensors(a: bytes, b: bytes) -> bool:
    import json as _json

    from safetensors.torch import load

    def header(data: bytes) -> dict:
        n = int.from_bytes(data[:8], "little")
        return _json.loads(data[8 : 8 + n])

    x, y = load(a), load(b)
    return (
        header(a).get("__metadata__") == header(b).get("__metadata__")
        and x.keys() == y.keys()
        and all(bool((x[k] == y[k]).all()) for k in x)
    )


def _same_outputs(clean: dict[str, bytes], got: dict[str, bytes]) -> bool:
    if clean.keys() != got.keys():
        return False
    for name, data in clean.items():
        if name.endswith(".npz"):  # zip entries carry write times: compare the arrays
            if not _same_npz(data, got[name]):
                return False
        elif name.endswith(".safetensors"):  # the header's metadata order is not stable
            if not _same_safetensors(data, got[name]):
                return False
        elif name.endswith("report.json"):
            a, b = json.loads(data), json.loads(got[name])
            if a["fad"] != b["fad"]:
                return False
        elif data != got[name]:
            return False
    return True


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Inputs shared by every scenario: 4 short clips, two FAD sets, random VGGish weights."""
    import audiorep
    from audiorep.convert.vggish import write_safetensors

    root = tmp_path_factory.mktemp("kill")
    rs = np.random.RandomState(3)
    for name, n in (("in", 4), ("bg", 3), ("ev", 3)):
        (root / name).mkdir()
        for i in range(n):
            sf.write(root / name / f"c{i}.wav", 0.1 * rs.randn(16000 + 4000 * i), 16000)
    bundle = audiorep.load("vggish", weights="random", seed=0)
    pca = {k: v.clone() for k, v in bundle.postprocessor.state_dict().items()}
    write_safetensors(root / "vggish.safetensors", bundle.model.state_dict(), pca)
    (root / "home").mkdir()
    return root


W = ["--weights", "vggish.safetensors"]
SCENARIOS = {
    # name: (argv with OUT as the output folder, argv of the resumed run, outputs folder)
    "embed-npz": (["embed", "in", "-o", "OUT", *W, "-q", "--batch-size", "2"], ["--resume"]),
    "embed-parquet": (
        ["embed", "in", "-o", "OUT", *W, "-q", "--format", "parquet", "--shard-size", "1"],
        ["--resume"],
    ),  # fmt: skip
    "embed-tfrecord": (
        ["embed", "in", "-o", "OUT", *W, "-q", "--format", "tfrecord", "--shard-size", "2"],
        ["--resume"],
    ),  # fmt: skip
    "fad-cache": (
        ["fad", "bg", "ev", *W, "-q", "--cache-dir", "OUT/cache", "--json", "OUT/report.json"],
        [],
    ),  # fmt: skip
    "train-classifier": (
        [
            "train-classifier",
            "--model",
            "logistic",
            "--train",
            str(YT8M),
            "--out",
            "OUT",
            "--batch-size",
            "3",
            "--steps",
            "8",
            "--checkpoint-every",
            "2",
            "--keep",
            "10",
            "-q",
            "--log-every",
            "0",
        ],
        [],
    ),  # fmt: skip  (resume is the default)
    "convert": (["convert", "vggish.safetensors", "-o", "OUT/converted.safetensors"], []),
}


def _argv(args: list[str], out: Path) -> list[str]:
    return [a.replace("OUT", str(out)) for a in args]


def _campaign(workspace: Path, scenario: str, points: list[tuple[int, str]] | None):
    args, resume = SCENARIOS[scenario]
    clean_out = workspace / f"{scenario}-clean"
    _run(_argv(args, clean_out), workspace, workspace / "home")
    clean = _files(clean_out)
    commits = len(clean) - (1 if scenario == "fad-cache" else 0)  # the json is not committed
    if scenario == "train-classifier":
        commits = len({k.split("/")[0] for k in clean})  # one commit per ckpt folder
    if points is None:
        points = [(n, phase) for n in range(1, commits + 1) for phase in ("before", "after")]
    stats = REPORT.setdefault(scenario, {"kill_points": 0, "equal_after_resume": 0})
    for n, phase in points:
        out = workspace / f"{scenario}-{n}-{phase}"
        code = _run(_argv(args, out), workspace, workspace / "home", fault=f"{n}:{phase}")
        assert code == -signal.SIGKILL, f"{scenario} {n}:{phase}: not killed (exit {code})"
        _run(_argv(args + resume, out), workspace, workspace / "home")
        stats["kill_points"] += 1
        if _same_outputs(clean, _files(out)):
            stats["equal_after_resume"] += 1
        else:
            raise AssertionError(f"{scenario} killed at {n}:{phase}: outputs differ after resume")
    return stats


@pytest.mark.parametrize("scenario", ["embed-parquet", "fad-cache", "train-classifier"])
def test_one_kill_point_per_command(workspace, scenario):
    """In `make test` (time budget): one kill point for each kind of commit (a shard and its
    settings file, a cache entry, a checkpoint folder), right after the first commit."""
    _campaign(workspace, scenario, [(1, "after")])


@pytest.mark.long
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_kill_at_every_commit(workspace, scenario):
    _campaign(workspace, scenario, None)


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("AUDIOREP_KILL_REPORT")
    if path and REPORT:
        Path(path).write_text(json.dumps(REPORT, indent=1, sort_keys=True))
