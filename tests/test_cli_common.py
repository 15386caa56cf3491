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


def test_messages_say_what_is_wrong(tmp_path, capsys):
    """Issue 12 item 14: misleading or missing messages."""
    import numpy as np
    import soundfile as sf

    from audiorep.audio import AudioLoadError, load

    fake = tmp_path / "notaudio.mp3"
    fake.write_text("hello, this is not audio")
    with pytest.raises(AudioLoadError, match="not a recognised audio format") as exc:
        load(fake)
    assert "does not exist" not in str(exc.value) and "notaudio.mp3" in str(exc.value)
    # an empty folder, or an --ext that matches nothing: exit 2 and say so
    (tmp_path / "empty").mkdir()
    rnd = ["--weights", "random", "-q"]
    assert main(["embed", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), *rnd]) == 2
    assert "no input files found" in capsys.readouterr().err
    wav = tmp_path / "in" / "a.wav"
    wav.parent.mkdir()
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    assert main(["embed", str(wav.parent), "-o", str(tmp_path / "o"), "--ext", "flac", *rnd]) == 2
    assert "searched for flac" in capsys.readouterr().err
    # VGGish-only options with another model are refused, not ignored
    for flags in (["--hop", "0.5"], ["--float32-frontend"], ["--no-pca"]):
        argv = ["embed", str(wav), "-o", str(tmp_path / "o"), "--model", "cnn14", *flags]
        assert main(argv) == 2
        assert f"{flags[0]} apply to VGGish only, not --model cnn14" in capsys.readouterr().err
    argv = [
        "embed",
        str(wav),
        "-o",
        str(tmp_path / "o"),
        "--model",
        "cnn14",
        "--format",
        "tfrecord",
    ]
    assert main(argv) == 2 and "AudioSet's VGGish layout" in capsys.readouterr().err
    # fad with one audio file as a set
    assert main(["fad", str(wav.parent), str(wav), "--weights", "random", "-q"]) == 2
    assert "one audio file is not a set" in capsys.readouterr().err


def test_short_clips_and_failed_downloads_are_described(tmp_path, capsys):
    """Issue 12 item 14: a 0.5 s clip was counted as embedded with no word about its 0 rows;
    a failed download claimed a .part file was kept when none existed."""
    import numpy as np
    import soundfile as sf

    from audiorep.weights import DownloadError
    from audiorep.weights.download import download

    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "half.wav", np.zeros(8000, np.float32), 16000)
    sf.write(tmp_path / "in" / "long.wav", np.zeros(32000, np.float32), 16000)
    argv = ["embed", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--weights", "random", "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "too short:  1 file(s) shorter than one window gave no embeddings" in out
    assert "half.wav" in out
    with pytest.raises(DownloadError, match="Nothing was received") as exc:
        download("http://127.0.0.1:9/x.bin", tmp_path / "dl" / "x.bin", progress=False, retries=0)
    assert "was kept" not in str(exc.value)
