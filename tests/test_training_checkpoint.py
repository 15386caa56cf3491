"""training/checkpoint.py: damaged checkpoints are named and skipped for the newest intact one.

Issue 12 item 4: a truncated ``model.safetensors`` / ``optimizer.safetensors`` or an invalid
``state.json`` used to surface as a raw SafetensorError / JSONDecodeError traceback, and older
intact checkpoints were never tried.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from audiorep.heads import build_head
from audiorep.training import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)

SAVED: dict[int, dict[str, torch.Tensor]] = {}


def _head(seed: int):
    torch.manual_seed(seed)
    return build_head("logistic")


@pytest.fixture
def three(tmp_path):
    """Checkpoints at steps 1, 2, 3 of a logistic head, with optimizer state; distinct weights."""
    for step in (1, 2, 3):
        model = _head(step)
        opt = torch.optim.Adam(model.parameters())
        model(torch.randn(2, 10, 128), torch.tensor([10, 7]))["predictions"].sum().backward()
        opt.step()
        save_checkpoint(tmp_path, model, opt, step=step)
        SAVED[step] = {k: v.clone() for k, v in model.state_dict().items()}
    return tmp_path


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage",
    ["model.safetensors", "optimizer.safetensors", "state.json", "state.json-missing"],
)
def test_newest_damaged_checkpoint_is_named_and_skipped(three, damage):
    newest = three / "ckpt-00000003"
    if damage == "state.json":
        (newest / "state.json").write_text("{not json")
    elif damage == "state.json-missing":
        (newest / "state.json").unlink()
    else:
        _truncate(newest / damage)
    if damage != "state.json-missing":
        with pytest.raises(CheckpointError, match=damage):
            verify_checkpoint(newest)
        with pytest.warns(UserWarning, match=f"ckpt-00000003.{damage}"):
            assert latest_checkpoint(three) == three / "ckpt-00000002"
    else:
        assert latest_checkpoint(three) == three / "ckpt-00000002"
    model = _head(0)
    with pytest.warns(UserWarning) if damage != "state.json-missing" else _no_warning():
        state = load_checkpoint(three, model)  # the directory: its newest intact checkpoint
    assert state["step"] == 2
    assert all(torch.equal(model.state_dict()[k], v) for k, v in SAVED[2].items())
    if damage != "state.json-missing":  # loading the damaged folder itself names the file
        with pytest.raises(CheckpointError, match=f"ckpt-00000003.{damage}"):
            load_checkpoint(newest, _head(0))


def test_no_intact_checkpoint_is_a_clear_error(three):
    for d in three.glob("ckpt-*"):
        _truncate(d / "model.safetensors")
    with pytest.warns(UserWarning):
        assert latest_checkpoint(three) is None
    with pytest.warns(UserWarning), pytest.raises(FileNotFoundError, match="no intact checkpoint"):
        load_checkpoint(three, _head(0))


def test_evaluate_and_tag_name_the_damaged_file(three, tmp_path, capsys):
    from audiorep.cli import main

    only = tmp_path / "only"
    shutil.copytree(three / "ckpt-00000001", only / "ckpt-00000001")
    _truncate(only / "ckpt-00000001" / "model.safetensors")
    data = tmp_path / "none"
    data.mkdir()
    wav = tmp_path / "a.wav"
    import numpy as np
    import soundfile as sf

    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    code = main(["tag", str(wav), "--classifier", str(only / "ckpt-00000001"),
                 "--weights", "random", "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "model.safetensors" in err and "Traceback" not in err


class _no_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
