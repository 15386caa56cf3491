"""The shipped AudioSet tagger: export / load of tagger files, the registry entry, and the
commands that use it by default."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.cli import main
from audiorep.heads import build_head
from audiorep.heads.tagging import (
    DEFAULT_TAGGER,
    export_tagger,
    load_classifier,
    load_tagger_file,
)
from audiorep.weights.download import fetch, sha256_file
from audiorep.weights.registry import REGISTRY

FIXTURES = Path(__file__).parent / "fixtures" / "yt8m" / "audioset"


def _frames(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = torch.tensor([10, 3, 1, 7])
    x = (4 * torch.rand(4, 10, 128, generator=g) - 2) * (
        torch.arange(10)[None, :, None] < n[:, None, None]
    )
    return x, n


@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_export_and_load_round_trip(tmp_path, dtype):
    torch.manual_seed(0)
    head = build_head("mlp", hidden_size=32, num_layers=1).eval()
    path = export_tagger(head, tmp_path / "t.safetensors", info={"note": "x"}, dtype=dtype)
    loaded, info = load_tagger_file(path)
    assert info["note"] == "x" and info["config"]["model"] == "mlp"
    reference = head
    if dtype is not None:  # the same head with its floats rounded to the stored precision
        reference = build_head("mlp", hidden_size=32, num_layers=1).eval()
        reference.load_state_dict({k: v.to(dtype).to(v.dtype) if v.is_floating_point() else v
                                   for k, v in head.state_dict().items()})  # fmt: skip
    x, n = _frames()
    with torch.no_grad():
        assert torch.equal(loaded(x, n)["predictions"], reference(x, n)["predictions"])
    model, state, where = load_classifier(path)
    assert where == path and state["model"] == "mlp" and not model.training


def test_bad_tagger_files_are_named(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_tagger_file(bad)
    with pytest.raises(FileNotFoundError, match="missing"):
        load_classifier(tmp_path / "missing")


def test_shipped_tagger_is_pinned_and_documented():
    entry = REGISTRY[DEFAULT_TAGGER]
    path = fetch(DEFAULT_TAGGER)  # verifies the bundled file's sha256
    assert sha256_file(path) == entry.sha256 and path.stat().st_size == entry.size
    assert "CC BY 4.0" in entry.licence
    model, state, _ = load_classifier(DEFAULT_TAGGER)
    assert model.config.num_classes == 527
    info = json.loads(path.with_suffix(".json").read_text())
    assert len(info["class_names"]) == 527 and info["class_names"][0] == "Speech"
    assert info["trained_on"].startswith("AudioSet bal_train")
    for key in ("map", "mauc", "d_prime"):
        assert 0 < info["eval"][key] < 5
    attribution = (path.parent / "ATTRIBUTION.md").read_text()
    assert DEFAULT_TAGGER in attribution and "Gemmeke" in attribution


def test_evaluate_and_tag_use_the_shipped_tagger(tmp_path, capsys):
    rc = main(["evaluate-classifier", "--checkpoint", DEFAULT_TAGGER, "--data",
               str(FIXTURES / "eval"), "--json", str(tmp_path / "m.json"), "-q"])  # fmt: skip
    assert rc == 0
    metrics = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert metrics["num_examples"] == 6  # the fixture eval shard RK.tfrecord: 6 segments
    sr = 16000
    t = np.arange(int(2.5 * sr)) / sr
    wav = tmp_path / "tone.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    capsys.readouterr()
    rc = main(["tag", str(wav), "--weights", "random", "--json", str(tmp_path / "t.json"), "-q"])
    assert rc == 0
    res = json.loads((tmp_path / "t.json").read_text())
    assert res["model"] == model_name() and res["meaningful"] is False
    assert len(res["files"][0]["top"]) == 5


def model_name() -> str:
    return json.loads(fetch(DEFAULT_TAGGER).with_suffix(".json").read_text())["config"]["model"]
