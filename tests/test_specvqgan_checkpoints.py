"""SpecVQGAN's classifier checkpoints: safe reading, strict key checks, registry entries."""

from __future__ import annotations

import hashlib
import os
import pickle
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audiorep import weights
from audiorep.convert import specvqgan as sc
from audiorep.convert.readers import WeightsFormatError, read_state_dict
from audiorep.frontends.specvqgan import JUDGE_STATS_FILE
from audiorep.models.vggishish import VGGishish, state_dict_shapes


class Payload:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


def small_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 3))


def authors_checkpoint(model: nn.Module) -> dict:
    """A dict shaped like the authors' ``logger.log_best_model`` output."""
    opt = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 1, 3, 3)).sum().backward()
    opt.step()
    return {
        "loss": 0.75,
        "metrics": {"accuracy_1": 0.5, "mAP": np.float64(0.4758), "dprime": np.float64(2.5)},
        "epoch": 7,
        "optimizer": opt.state_dict(),
        "model": model.state_dict(),
    }


class _NumPy1Pickler(pickle._Pickler):
    """Writes NumPy's constructors under their NumPy 1.x module name, as the authors' files."""

    def save_global(self, obj, name=None):
        try:
            from numpy._core import multiarray as ma
        except ImportError:  # pragma: no cover - NumPy 1.x names them so anyway
            from numpy.core import multiarray as ma
        for fn in ("scalar", "_reconstruct"):
            if obj is getattr(ma, fn):
                self.write(pickle.GLOBAL + f"numpy.core.multiarray\n{fn}\n".encode())
                self.memoize(obj)
                return
        super().save_global(obj, name)


NUMPY1 = types.SimpleNamespace(Pickler=_NumPy1Pickler, __name__="numpy1_pickle")


# ----------------------------------------------------------------------------- refusal


@pytest.mark.parametrize("payload", [Payload, EvalPayload])
def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "vggishish16.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "metrics": payload(marker)}, path)
    for read in (sc.read_specvqgan_checkpoint, sc.load_specvqgan_state_dict):
        with pytest.raises(WeightsFormatError, match="vggishish16.pt") as e:
            read(path)
        assert "refused" in str(e.value) and "GLOBAL" in str(e.value)  # names the global
        assert not marker.exists()
    with pytest.raises(WeightsFormatError):
        sc.convert(path, tmp_path / "out.safetensors")
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()
    if payload is EvalPayload:  # positive control (in-process, no fork): the payload is real
        pickle.loads(pickle.dumps(payload(marker)))
        assert marker.exists()


def test_numpy_allow_list_does_not_open_the_door(tmp_path):
    """NumPy arrays and scalars are allowed; a payload next to them is still refused."""
    marker = tmp_path / "pwned"
    path = tmp_path / "melception.pt"
    ckpt = {"model": {"w": torch.zeros(2)}, "arr": np.arange(3), "x": np.float64(1.0)}
    ckpt["zz"] = Payload(marker)
    torch.save(ckpt, path, pickle_module=NUMPY1, pickle_protocol=2)
    with pytest.raises(WeightsFormatError, match="melception.pt"):
        sc.read_specvqgan_checkpoint(path)
    assert not marker.exists()


def test_legacy_raw_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "old.pt"
    path.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    with pytest.raises(WeightsFormatError, match="old.pt"):
        sc.read_specvqgan_checkpoint(path)
    assert not marker.exists()


def test_other_contents_are_refused_clearly(tmp_path):
    p = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], p)
    with pytest.raises(WeightsFormatError, match="list.pt: expected a dict, found a list"):
        sc.read_specvqgan_checkpoint(p)
    p = tmp_path / "nomodel.pt"
    torch.save({"epoch": 3, "weights": {"w": torch.zeros(1)}}, p)
    with pytest.raises(WeightsFormatError, match=r"nomodel.pt: no state dict under 'model'.*epoch"):
        sc.load_specvqgan_state_dict(p)
    p = tmp_path / "junk.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFormatError, match="junk.pt"):
        sc.read_specvqgan_checkpoint(p)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        sc.read_specvqgan_checkpoint(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("numpy1", [False, True])
def test_authors_dict_round_trips(tmp_path, numpy1):
    model = small_model()
    ckpt = authors_checkpoint(model)
    path = tmp_path / "vggishish16.pt"
    if numpy1:  # pickled as torch 1.8 / NumPy 1.x wrote it: protocol 2, numpy.core names
        torch.save(ckpt, path, pickle_module=NUMPY1, pickle_protocol=2)
        assert b"numpy.core.multiarray\nscalar" in _data_pkl(path)
    else:
        torch.save(ckpt, path)
    whole = sc.read_specvqgan_checkpoint(path)
    assert whole["epoch"] == 7 and sc.numpy_metrics(whole)["mAP"] == pytest.approx(0.4758)
    sd = sc.load_specvqgan_state_dict(path, small_model())
    assert list(sd) == list(model.state_dict())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0)
    fresh = sc.load_into(small_model(), path)
    torch.testing.assert_close(fresh.state_dict(), model.state_dict(), rtol=0, atol=0)
    out = sc.convert(path, tmp_path / "vggishish16.safetensors", small_model())
    torch.testing.assert_close(read_state_dict(out), dict(model.state_dict()), rtol=0, atol=0)


def _data_pkl(path: Path) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))


def test_bare_state_dict_is_accepted(tmp_path):
    model = small_model()
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    sd = sc.load_specvqgan_state_dict(tmp_path / "bare.pt", small_model())
    assert list(sd) == list(model.state_dict())


# ----------------------------------------------------------------------------- key checks


def test_wrong_and_missing_keys_are_listed(tmp_path):
    model = small_model()
    sd = dict(model.state_dict())
    del sd["3.bias"]
    sd["4.weight"] = torch.zeros(1)
    sd["0.weight"] = torch.zeros(4, 1, 5, 5)
    path = tmp_path / "bad.pt"
    torch.save({"model": sd, "epoch": 1}, path)
    with pytest.raises(sc.StateDictMismatchError) as e:
        sc.load_specvqgan_state_dict(path, small_model())
    msg = str(e.value)
    assert msg.startswith(f"{path}: Sequential state dict does not match")
    assert "1 missing: 3.bias" in msg and "1 unexpected: 4.weight" in msg
    assert "0.weight: (4, 1, 5, 5) in the file, (4, 1, 3, 3) in the model" in msg
    assert e.value.missing == ["3.bias"] and e.value.unexpected == ["4.weight"]
    with pytest.raises(sc.StateDictMismatchError):
        sc.load_into(small_model(), path)


def test_check_against_the_vggishish_model_without_allocating():
    with torch.device("meta"):
        model = VGGishish()
        good = {k: torch.empty(s) for k, s in state_dict_shapes()}
    sc.check_state_dict(good, model)
    sc.check_state_dict(good, dict(state_dict_shapes()))
    prefixed = {f"module.{k}": v for k, v in good.items()}
    with pytest.raises(sc.StateDictMismatchError, match="32 missing.*strip 'module.'"):
        sc.check_state_dict(prefixed, model, "VGGishish")
    outer = {"model": good, "optimizer": {}, "epoch": 3, "loss": 1.0, "metrics": {}}
    with pytest.raises(sc.StateDictMismatchError, match="pass ckpt\\['model'\\]"):
        sc.check_state_dict(outer, model)


def test_many_keys_are_counted_not_all_printed():
    expected = {f"k{i}": (1,) for i in range(50)}
    with pytest.raises(sc.StateDictMismatchError, match=r"50 missing: k0, .*\(30 more\)"):
        sc.check_state_dict({}, expected)


def test_vggishish_to_lpaps_net_and_sub_state_dict():
    sd = {f"features.{i}.weight": torch.zeros(1) for i in (0, 2, 5, 28)}
    sd["classifier.0.weight"] = torch.zeros(1)
    net = sc.vggishish_to_lpaps_net(sd)
    assert list(net) == [
        "net.slice1.0.weight",
        "net.slice1.2.weight",
        "net.slice2.5.weight",
        "net.slice5.28.weight",
    ]
    ckpt = {"loss.perceptual_loss.lin0.model.1.weight": 1, "encoder.x": 2}
    assert sc.sub_state_dict(ckpt, sc.CODEBOOK_LPAPS_PREFIX) == {"lin0.model.1.weight": 1}
    with pytest.raises(KeyError, match="no keys under 'decoder.'"):
        sc.sub_state_dict(ckpt, "decoder.")


# ----------------------------------------------------------------------------- registry


def test_registry_entries_carry_the_authors_md5():
    bucket = "https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/specvqgan_public/"
    expected = {
        "specvqgan-vggishish16": ("vggishish16.pt", "197040c524a07ccacf7715d7080a80bd"),
        "specvqgan-melception": (
            "melception-21-05-10T09-28-40.pt",
            "a71a41041e945b457c7d3d814bbcf72d",
        ),
        "specvqgan-mel-stats": (
            "train_means_stds_melspec_10s_22050hz.txt",
            "f449c6fd0e248936c16f6d22492bb625",
        ),
    }
    for name, (filename, md5) in expected.items():
        e = weights.get_entry(name)
        assert e.filename == filename and e.md5 == md5
        assert e.urls[0] == bucket + filename
        assert e.kind == "model" and all(c in weights.REGISTRY for c in e.companions)
    for name in ("specvqgan-vggishish16", "specvqgan-melception"):
        assert weights.get_entry(name).sha256 is None  # not published
        assert not weights.get_entry(name).pinned


def test_shipped_statistics_match_the_registry():
    e = weights.get_entry("specvqgan-mel-stats")
    data = JUDGE_STATS_FILE.read_bytes()
    assert hashlib.md5(data).hexdigest() == e.md5
    assert hashlib.sha256(data).hexdigest() == e.sha256 and len(data) == e.size
