"""The command-line conventions every command shares (issue 12 item 12): one device check
before any work, counts that must be positive, a closed pipe, and one error format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audiorep.cli import COMMAND_MODULES, main

SRC = Path(__file__).resolve().parents[1] / "src"

# one argument list per command that takes --device (enough to reach argument parsing)
DEVICE_COMMANDS = {
    "embed": ["embed", "x.wav", "-o", "out"],
    "fad": ["fad", "a", "b"],
    "linear-eval": ["linear-eval", "--model", "vggish", "--dataset", "d"],
    "train-classifier": ["train-classifier", "--train", "t", "--out", "o"],
    "evaluate-classifier": ["evaluate-classifier", "--checkpoint", "c", "--data", "d"],
    "tag": ["tag", "x.wav", "--classifier", "c"],
}


def _exit_message(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


def test_every_command_module_follows_the_convention():
    import importlib

    for name in COMMAND_MODULES:
        module = importlib.import_module(f"audiorep.cli.{name}")
        assert callable(module.register), name


@pytest.mark.parametrize("command", sorted(DEVICE_COMMANDS))
def test_bad_device_is_refused_before_any_work(command, capsys, tmp_path):
    code, err = _exit_message([*DEVICE_COMMANDS[command], "--device", "gpu"], capsys)
    assert code == 2 and "unknown device 'gpu'" in err and "Traceback" not in err
    if not torch.cuda.is_available():
        code, err = _exit_message([*DEVICE_COMMANDS[command], "--device", "cuda"], capsys)
        assert code == 2 and "cuda" in err and "Traceback" not in err
        assert "no CUDA support" in err or "no CUDA device" in err


@pytest.mark.parametrize("command", ["embed", "fad", "train-classifier", "evaluate-classifier"])
def test_batch_size_must_be_positive(command, capsys):
    code, err = _exit_message([*DEVICE_COMMANDS[command], "--batch-size", "0"], capsys)
    assert code == 2 and "must be >= 1, got 0" in err


def test_closed_pipe_ends_quietly(tmp_path):
    """`audiorep ... | head`: no BrokenPipeError traceback."""
    code = (
        "import argparse, sys\n"
        "import audiorep.cli as c\n"
        "build = c.build_parser\n"
        "def parser():\n"
        "    p = build()\n"
        "    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))\n"
        "    q = sub.add_parser('spam')\n"
        "    q.set_defaults(func=lambda a: [print('x' * 80) for _ in range(200000)] and 0)\n"
        "    return p\n"
        "c.build_parser = parser\n"
        "sys.exit(c.main(['spam']))\n"
    )
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)  # fmt: skip
    assert proc.stdout.readline().startswith(b"xxxx")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_postprocessor_takes_numpy_like_the_reference():
    import numpy as np

    from audiorep.features.postprocess import Postprocessor

    rs = np.random.RandomState(0)
    post = Postprocessor(np.linalg.qr(rs.randn(128, 128))[0], rs.randn(128))
    emb = rs.randn(3, 128).astype(np.float32)
    out = post(emb)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (3, 128)
    np.testing.assert_array_equal(out, post(torch.from_numpy(emb)).numpy())
