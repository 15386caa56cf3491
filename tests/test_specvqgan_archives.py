"""SpecVQGAN's released files read safely: Lightning .ckpt, model tarballs, MelGAN files.

Everything is built here in tmp_path in the authors' layouts (PL 1.2.10 checkpoint dicts,
``<date>_<name>/{checkpoints,configs}`` tarballs); the only fixture is the authors' real
``vocoder/logs/vggsound/args.yml`` (tests/fixtures/specvqgan_vocoder_args/README.md).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import threading
import types
import warnings
import zipfile
from collections import OrderedDict
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audiorep import weights
from audiorep.convert import archive as ar
from audiorep.convert import lightning as pl
from audiorep.convert import melgan as mg
from audiorep.convert.readers import WeightsFormatError
from audiorep.convert.specvqgan import StateDictMismatchError
from audiorep.losses.vqgan import VQGANLossConfig
from audiorep.models.vqgan import VQGANConfig

ARGS_YML = Path(__file__).parent / "fixtures" / "specvqgan_vocoder_args" / "args.yml"
MC_PATH = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"
ES_PATH = "pytorch_lightning.callbacks.early_stopping.EarlyStopping"
LOGDIR = "2021-06-06T19-42-53_vas_codebook"


# ----------------------------------------------------------------------------- builders


def fake_class(monkeypatch, dotted: str) -> type:
    """A class importable under ``dotted`` (fake modules in sys.modules), so the default
    pickler writes exactly the GLOBAL that Lightning's real class would get."""
    module, _, name = dotted.rpartition(".")
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        mod = ".".join(parts[:i])
        if mod not in sys.modules:
            monkeypatch.setitem(sys.modules, mod, types.ModuleType(mod))
    cls = type(name, (), {"__module__": module, "__qualname__": name})
    monkeypatch.setattr(sys.modules[module], name, cls, raising=False)
    return cls


def codebook_state_dict_like() -> OrderedDict:
    """A small state dict with the codebook's key groups, in the authors' order."""
    g = torch.Generator().manual_seed(0)
    sd = OrderedDict()
    for k, shape in (
        ("encoder.conv_in.weight", (8, 1, 3, 3)),
        ("encoder.conv_in.bias", (8,)),
        ("decoder.conv_out.weight", (1, 8, 3, 3)),
        ("decoder.conv_out.bias", (1,)),
        ("loss.discriminator.main.0.weight", (4, 1, 4, 4)),
        ("loss.discriminator.main.3.running_mean", (4,)),
        ("loss.perceptual_loss.scaling_layer.shift", (1, 1, 80, 1)),
        ("loss.perceptual_loss.lin0.model.1.weight", (1, 64, 1, 1)),
        ("quantize.embedding.weight", (128, 8)),
        ("quant_conv.weight", (8, 8, 1, 1)),
        ("quant_conv.bias", (8,)),
        ("post_quant_conv.weight", (8, 8, 1, 1)),
        ("post_quant_conv.bias", (8,)),
    ):
        sd[k] = torch.randn(shape, generator=g)
    sd["loss.discriminator.main.3.num_batches_tracked"] = torch.tensor(7)
    return sd


def lightning_dict(monkeypatch, state_dict: OrderedDict, early_stopping: bool = False) -> dict:
    """What PL 1.2.10's ``dump_checkpoint`` produces for the authors' models."""
    mc = fake_class(monkeypatch, MC_PATH)
    callbacks = {
        mc: {
            "monitor": "val/rec_loss",
            "best_model_score": torch.tensor(0.25),
            "best_model_path": f"/scratch/logs/{LOGDIR}/checkpoints/epoch_259.ckpt",
            "current_score": torch.tensor(0.3),
            "dirpath": f"/scratch/logs/{LOGDIR}/checkpoints",
        }
    }
    if early_stopping:
        es = fake_class(monkeypatch, ES_PATH)
        callbacks[es] = {
            "wait_count": 1,
            "stopped_epoch": 0,
            "best_score": torch.tensor(4.5),
            "patience": 2,
        }
    # Two Adams as the codebook's configure_optimizers (betas 0.5, 0.9): real state dicts.
    params = [nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))]
    opts = [torch.optim.Adam([p], lr=3.2e-5, betas=(0.5, 0.9)) for p in params]
    for p, o in zip(params, opts):
        p.sum().backward()
        o.step()
    return {
        "epoch": 260,
        "global_step": 102180,
        "pytorch-lightning_version": "1.2.10",
        "state_dict": state_dict,
        "callbacks": callbacks,
        "optimizer_states": [o.state_dict() for o in opts],
        "lr_schedulers": [],
    }


def save_ckpt(monkeypatch, path: Path, obj: dict, *, legacy: bool = False, cuda: bool = False):
    """torch.save as PL does (protocol 2); ``cuda`` tags the storages 'cuda:0' as a checkpoint
    written on a GPU is."""
    with monkeypatch.context() as m:
        if cuda:
            m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def pickle_bytes(path: Path) -> bytes:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    return path.read_bytes()


class SystemPayload:
    """Unpickling runs ``touch marker`` through os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class PopenPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.Popen, (["touch", str(self.marker)],))


class PartialPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (functools.partial, (open, str(self.marker), "w"))


class PlainObject:
    """An ordinary class instance: pickled as a class GLOBAL + object state."""

    def __init__(self, marker: Path):
        self.marker = str(marker)


# ----------------------------------------------------------------------------- lightning


@pytest.mark.parametrize("variant", ["zip", "legacy", "cuda", "mmap"])
def test_authors_codebook_checkpoint_reads(tmp_path, monkeypatch, variant):
    sd = codebook_state_dict_like()
    ckpt = lightning_dict(monkeypatch, sd)
    path = save_ckpt(
        monkeypatch,
        tmp_path / "last.ckpt",
        ckpt,
        legacy=variant == "legacy",
        cuda=variant == "cuda",
    )
    raw = pickle_bytes(path)
    # The file names the callback class exactly as Lightning's does, and the storage location
    # where the checkpoint was saved from the GPU: the reader must cope with both.
    assert b"pytorch_lightning.callbacks.model_checkpoint\nModelCheckpoint" in raw
    assert (b"cuda:0" in raw) == (variant == "cuda")
    monkeypatch.undo()  # the fake Lightning modules are gone: nothing may import them
    assert "pytorch_lightning" not in sys.modules

    got = pl.read_lightning_checkpoint(path, mmap=variant == "mmap")
    assert "pytorch_lightning" not in sys.modules  # nothing was imported to read it
    assert got["epoch"] == 260 and got["global_step"] == 102180
    assert got["pytorch-lightning_version"] == "1.2.10"
    assert list(got["state_dict"]) == list(sd)
    for k, v in sd.items():
        assert torch.equal(got["state_dict"][k], v) and got["state_dict"][k].device.type == "cpu"
    (key,) = got["callbacks"]
    assert isinstance(key, pl.ForeignClass) and str(key) == MC_PATH
    assert key == pl.ForeignClass.from_path(MC_PATH)
    state = got["callbacks"][key]
    assert state["best_model_path"].endswith("epoch_259.ckpt")
    assert torch.equal(state["best_model_score"], torch.tensor(0.25))
    adam = got["optimizer_states"][0]
    assert adam["param_groups"][0]["betas"] == (0.5, 0.9)
    assert torch.equal(
        adam["state"][0]["exp_avg"], ckpt["optimizer_states"][0]["state"][0]["exp_avg"]
    )
    assert got["lr_schedulers"] == []

    meta = pl.checkpoint_metadata(got)
    assert meta["callbacks"][MC_PATH]["monitor"] == "val/rec_loss"
    assert meta["num_tensors"] == len(sd) and meta["epoch"] == 260

    kept, ignored = pl.codebook_state_dict(got)
    assert list(kept) == [k for k in sd if not k.startswith("loss.")]
    assert ignored == [k for k in sd if k.startswith("loss.")] and len(ignored) == 5
    assert kept["quantize.embedding.weight"].shape == (128, 8)
    # also straight from the path (errors then name the file)
    kept2, _ = pl.codebook_state_dict(path)
    assert list(kept2) == list(kept)


def test_stand_ins_are_inert():
    f = pl.ForeignClass.from_path(MC_PATH)
    assert (f.module, f.name) == ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
    with pytest.raises(Exception, match="ModelCheckpoint"):
        f()
    with pytest.raises(AttributeError):
        f.name = "system"
    assert {f: 1}[pl.ForeignClass.from_path(MC_PATH)] == 1
    assert pickle.loads(pickle.dumps(f)) == f


def test_transformer_checkpoint_groups(tmp_path, monkeypatch):
    sd = OrderedDict()
    sd["transformer.tok_emb.weight"] = torch.randn(128, 16)
    sd["transformer.pos_emb"] = torch.zeros(1, 270, 16)
    sd["transformer.blocks.0.attn.mask"] = torch.tril(torch.ones(1, 1, 270, 270))
    sd["transformer.embedder.weight"] = torch.randn(16, 2048, 1)
    for k, v in codebook_state_dict_like().items():
        if not k.startswith("loss."):
            sd["first_stage_model." + k] = v
    fwd = torch.arange(265).reshape(5, 53).T.reshape(-1)
    sd["first_stage_permuter.forward_shuffle_idx"] = fwd
    sd["first_stage_permuter.backward_shuffle_idx"] = torch.argsort(fwd)
    path = save_ckpt(
        monkeypatch, tmp_path / "last.ckpt", lightning_dict(monkeypatch, sd, early_stopping=True)
    )
    monkeypatch.undo()
    got = pl.read_lightning_checkpoint(path)
    assert sorted(map(str, got["callbacks"])) == [ES_PATH, MC_PATH]
    es = got["callbacks"][pl.ForeignClass.from_path(ES_PATH)]
    assert es["patience"] == 2 and torch.equal(es["best_score"], torch.tensor(4.5))

    parts = pl.transformer_state_dict(got)
    assert set(parts) == {"transformer", "first_stage_model", "first_stage_permuter"}
    assert list(parts["transformer"]) == [
        "tok_emb.weight",
        "pos_emb",
        "blocks.0.attn.mask",
        "embedder.weight",
    ]
    assert torch.equal(
        parts["first_stage_permuter"]["backward_shuffle_idx"][fwd], torch.arange(265)
    )
    kept, ignored = pl.codebook_state_dict(parts["first_stage_model"])
    assert ignored == [] and list(kept) == list(parts["first_stage_model"])
    with pytest.raises(pl.LightningCheckpointError, match="use transformer_state_dict"):
        pl.codebook_state_dict(got)
    with pytest.raises(pl.LightningCheckpointError, match=r"no transformer\.\*"):
        pl.transformer_state_dict({"state_dict": codebook_state_dict_like()})


@pytest.mark.parametrize(
    "payload, global_name",
    [
        (SystemPayload, "posix.system"),
        (EvalPayload, "GLOBAL eval"),
        (PopenPayload, ".Popen"),  # protocol 2 names it commands.Popen (py2 name)
        (PartialPayload, "functools.partial"),
        (PlainObject, "PlainObject"),
    ],
)
@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_checkpoints_are_refused_without_running(
    tmp_path, monkeypatch, payload, global_name, legacy
):
    marker = tmp_path / "pwned"
    ckpt = lightning_dict(monkeypatch, codebook_state_dict_like())
    ckpt["optimizer_states"].append({"evil": payload(marker)})  # buried deep inside
    path = save_ckpt(monkeypatch, tmp_path / "evil.ckpt", ckpt, legacy=legacy)
    monkeypatch.undo()
    for read in (pl.read_lightning_checkpoint, pl.codebook_state_dict, pl.transformer_state_dict):
        with pytest.raises(pl.LightningCheckpointError, match="evil.ckpt") as e:
            read(path)
        assert global_name in str(e.value)
        assert not marker.exists()
    assert isinstance(e.value, WeightsFormatError)


def test_positive_control_the_payload_is_real(tmp_path):
    """In-process, no fork: unpickling EvalPayload with plain pickle does write the marker."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(EvalPayload(marker)))
    assert marker.exists()


def test_admitted_class_names_cannot_be_abused(tmp_path, monkeypatch):
    mc = fake_class(monkeypatch, MC_PATH)

    class CallIt:
        def __reduce__(self):
            return (mc, ())

    cases = {
        "call.ckpt": ({"state_dict": {"w": torch.zeros(1)}, "x": CallIt()}, "calls " + MC_PATH),
        "new.ckpt": ({"state_dict": {"w": torch.zeros(1)}, "x": mc()}, "instantiates " + MC_PATH),
        "value.ckpt": ({"state_dict": {"w": torch.zeros(1)}, "x": [mc]}, r"checkpoint\[x\]\[0\]"),
        "key.ckpt": ({"state_dict": {"w": torch.zeros(1)}, "x": {mc: 1}}, r"checkpoint\[x\] key"),
    }
    paths = {name: save_ckpt(monkeypatch, tmp_path / name, obj) for name, (obj, _) in cases.items()}
    monkeypatch.undo()
    for name, (_, message) in cases.items():
        with pytest.raises(pl.LightningCheckpointError, match=name) as e:
            pl.read_lightning_checkpoint(paths[name])
        assert e.match(message)
    # a class name that is not on the list is refused outright
    fake_class(monkeypatch, "pytorch_lightning.callbacks.custom.Mine")
    other = save_ckpt(
        monkeypatch,
        tmp_path / "other.ckpt",
        {
            "state_dict": {"w": torch.zeros(1)},
            "callbacks": {sys.modules["pytorch_lightning.callbacks.custom"].Mine: {}},
        },
    )
    monkeypatch.undo()
    with pytest.raises(
        pl.LightningCheckpointError, match="pytorch_lightning.callbacks.custom.Mine"
    ):
        pl.read_lightning_checkpoint(other)
    got = pl.read_lightning_checkpoint(
        other, callback_classes=("pytorch_lightning.callbacks.custom.Mine",)
    )
    assert [str(k) for k in got["callbacks"]] == ["pytorch_lightning.callbacks.custom.Mine"]


def test_numpy_data_is_allowed(tmp_path, monkeypatch):
    ckpt = lightning_dict(monkeypatch, codebook_state_dict_like())
    ckpt["extra"] = {"arr": np.arange(4), "x": np.float64(2.5)}
    path = save_ckpt(monkeypatch, tmp_path / "np.ckpt", ckpt)
    monkeypatch.undo()
    got = pl.read_lightning_checkpoint(path)
    assert got["extra"]["arr"].tolist() == [0, 1, 2, 3] and float(got["extra"]["x"]) == 2.5


def test_other_contents_are_refused_clearly(tmp_path):
    p = tmp_path / "nosd.ckpt"
    torch.save({"epoch": 1, "model": {"w": torch.zeros(1)}}, p)
    with pytest.raises(pl.LightningCheckpointError, match=r"nosd.ckpt: not a Lightning.*epoch"):
        pl.read_lightning_checkpoint(p)
    p = tmp_path / "list.ckpt"
    torch.save([torch.zeros(1)], p)
    with pytest.raises(
        pl.LightningCheckpointError, match="list.ckpt: expected a dict, found a list"
    ):
        pl.read_lightning_checkpoint(p)
    p = tmp_path / "junk.ckpt"
    p.write_bytes(b"not a checkpoint at all")
    with pytest.raises(pl.LightningCheckpointError, match="junk.ckpt"):
        pl.read_lightning_checkpoint(p)
    p = tmp_path / "strs.ckpt"
    torch.save({"state_dict": {"w": "not a tensor"}}, p)
    with pytest.raises(pl.LightningCheckpointError, match=r"strs.ckpt \['state_dict'\].*w"):
        pl.read_lightning_checkpoint(p)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        pl.read_lightning_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(pl.LightningCheckpointError, match="no quantize.embedding.weight"):
        pl.codebook_state_dict({"state_dict": {"encoder.w": torch.zeros(1)}})


# ----------------------------------------------------------------------------- archives

PROJECT_YAML = """\
model:
  base_learning_rate: 1.0e-06
  target: specvqgan.models.vqgan.VQModel
  params:
    embed_dim: 256
    n_embed: 128
    ddconfig:
      double_z: false
      z_channels: 256
      resolution: 848
      in_channels: 1
      out_ch: 1
      ch: 128
      ch_mult:
      - 1
      - 1
      - 2
      - 2
      - 4
      num_res_blocks: 2
      attn_resolutions:
      - 53
      dropout: 0.0
    lossconfig:
      target: specvqgan.modules.losses.vqperceptual.VQLPAPSWithDiscriminator
      params:
        disc_conditional: false
        disc_in_channels: 1
        disc_start: 2001
        disc_weight: 0.8
        codebook_weight: 1.0
        min_adapt_weight: 1.0
        max_adapt_weight: 1.0
        perceptual_weight: 1.0
data:
  target: train.SpectrogramDataModuleFromConfig
  params:
    batch_size: 8
    spec_dir_path: ./data/vas/features/*/melspec_10s_22050hz
"""
# configs/vas_codebook.yaml's values (spec section 2.1), as the codebook config helper returns them
VAS_CODEBOOK = {
    "ch": 128,
    "ch_mult": (1, 1, 2, 2, 4),
    "num_res_blocks": 2,
    "attn_resolutions": (53,),
    "z_channels": 256,
    "embed_dim": 256,
    "n_embed": 128,
    "resolution": 848,
    "in_channels": 1,
    "out_ch": 1,
    "dropout": 0.0,
    "disc_start": 2001,
    "disc_weight": 0.8,
    "codebook_weight": 1.0,
    "min_adapt_weight": 1.0,
    "max_adapt_weight": 1.0,
    "perceptual_weight": 1.0,
}


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_special(tar: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)


def authors_tarball(tmp_path: Path, monkeypatch, mode: str = "w:gz") -> tuple[Path, dict]:
    """A tarball in the released layout: <logdir>/{checkpoints/*.ckpt, configs/*.yaml}."""
    ckpt = lightning_dict(monkeypatch, codebook_state_dict_like())
    buf = tmp_path / "ckpt.tmp"
    save_ckpt(monkeypatch, buf, ckpt)
    monkeypatch.undo()
    data = buf.read_bytes()
    buf.unlink()
    path = tmp_path / f"{LOGDIR}.tar{'.gz' if 'gz' in mode else ''}"
    with tarfile.open(path, mode) as tar:
        for d in (LOGDIR, f"{LOGDIR}/checkpoints", f"{LOGDIR}/configs"):
            add_special(tar, d, tarfile.DIRTYPE)
        add_bytes(tar, f"{LOGDIR}/checkpoints/epoch_259.ckpt", data)
        add_bytes(tar, f"{LOGDIR}/checkpoints/last.ckpt", data)
        add_bytes(tar, f"{LOGDIR}/configs/2021-06-06T19-42-53-project.yaml", PROJECT_YAML.encode())
        add_bytes(
            tar,
            f"{LOGDIR}/configs/2021-06-06T19-42-53-lightning.yaml",
            b"lightning:\n  trainer:\n    sync_batchnorm: true\n",
        )
    return path, ckpt


@pytest.mark.parametrize("mode", ["w:gz", "w"])
def test_authors_tarball_extracts_and_loads(tmp_path, monkeypatch, mode):
    path, ckpt = authors_tarball(tmp_path, monkeypatch, mode)
    dest = tmp_path / "logs"
    assert ar.extract_archive(path, dest) == dest
    files = ar.find_logdir_files(dest)
    assert files.logdir == dest / LOGDIR
    assert [p.name for p in files.checkpoints] == ["epoch_259.ckpt", "last.ckpt"]
    assert files.checkpoint.name == "last.ckpt"
    assert files.project_yaml.name == "2021-06-06T19-42-53-project.yaml"
    assert files.lightning_yaml.name == "2021-06-06T19-42-53-lightning.yaml"
    assert ar.find_logdir_files(files.logdir) == files  # the logdir itself works too
    config = ar.codebook_config_from_project_yaml(ar.read_project_yaml(files.project_yaml))
    assert config == VAS_CODEBOOK
    assert all(type(config[k]) is type(v) for k, v in VAS_CODEBOOK.items())
    assert set(ar.CODEBOOK_ARCH_KEYS) | set(ar.CODEBOOK_LOSS_KEYS) == set(VAS_CODEBOOK)
    assert not set(ar.CODEBOOK_ARCH_KEYS) & set(ar.CODEBOOK_LOSS_KEYS)
    # the split feeds the codec's own configs as they are
    arch = VQGANConfig(**{k: config[k] for k in ar.CODEBOOK_ARCH_KEYS})
    assert arch == VQGANConfig(n_embed=128)  # VAS: the defaults but for 128 codes
    loss = VQGANLossConfig(**{k: config[k] for k in ar.CODEBOOK_LOSS_KEYS})
    assert loss.disc_start == 2001 and loss.disc_weight == 0.8
    kept, ignored = pl.codebook_state_dict(files.checkpoint)
    assert torch.equal(
        kept["quantize.embedding.weight"], ckpt["state_dict"]["quantize.embedding.weight"]
    )
    assert len(ignored) == 5
    # nothing but the destination was created beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "logs"])


def test_transformer_project_yaml_uses_the_first_stage(tmp_path):
    import yaml

    first = yaml.safe_load(PROJECT_YAML)["model"]
    first["params"]["lossconfig"] = {"target": "specvqgan.modules.losses.DummyLoss"}
    first["params"]["ckpt_path"] = "./logs/x/checkpoints/epoch_259.ckpt"
    d = {
        "model": {
            "target": "specvqgan.models.cond_transformer.Net2NetTransformer",
            "params": {"first_stage_config": first},
        }
    }
    got = ar.codebook_config_from_project_yaml(d)
    assert got == {k: VAS_CODEBOOK[k] for k in ar.CODEBOOK_ARCH_KEYS}
    bad = yaml.safe_load(PROJECT_YAML)
    del bad["model"]["params"]["ddconfig"]["ch_mult"]
    with pytest.raises(WeightsFormatError, match=r"model.params.ddconfig.ch_mult is missing"):
        ar.codebook_config_from_project_yaml(bad)
    bad = yaml.safe_load(PROJECT_YAML)
    bad["model"]["params"]["n_embed"] = "many"
    with pytest.raises(WeightsFormatError, match=r"model.params.n_embed = 'many'"):
        ar.codebook_config_from_project_yaml(bad)
    bad["model"]["target"] = "taming.models.cond_transformer.Something"
    with pytest.raises(WeightsFormatError, match="not a SpecVQGAN VQModel"):
        ar.codebook_config_from_project_yaml(bad)
    evil = tmp_path / "x-project.yaml"
    marker = tmp_path / "pwned"
    evil.write_text(f"model: !!python/object/apply:builtins.open [{str(marker)!r}, w]\n")
    with pytest.raises(WeightsFormatError, match="x-project.yaml"):
        ar.read_project_yaml(evil)
    assert not marker.exists()


def outside_listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


MALICIOUS = {
    "absolute": lambda tar, tmp: add_bytes(tar, str(tmp / "outside" / "evil.txt"), b"x"),
    "dotdot": lambda tar, tmp: add_bytes(tar, f"{LOGDIR}/../../outside/evil.txt", b"x"),
    "dotdot-leading": lambda tar, tmp: add_bytes(tar, "../evil.txt", b"x"),
    "backslash-dotdot": lambda tar, tmp: add_bytes(tar, "..\\evil.txt", b"x"),
    "symlink": lambda tar, tmp: add_special(tar, f"{LOGDIR}/link", tarfile.SYMTYPE, str(tmp)),
    "hardlink": lambda tar, tmp: add_special(tar, f"{LOGDIR}/hard", tarfile.LNKTYPE, "/etc/passwd"),
    "fifo": lambda tar, tmp: add_special(tar, f"{LOGDIR}/fifo", tarfile.FIFOTYPE),
    "chardev": lambda tar, tmp: add_special(tar, f"{LOGDIR}/null", tarfile.CHRTYPE),
    "blockdev": lambda tar, tmp: add_special(tar, f"{LOGDIR}/sda", tarfile.BLKTYPE),
    "duplicate": lambda tar, tmp: add_bytes(tar, f"{LOGDIR}/configs/a.yaml", b"second"),
    "file-then-dir": lambda tar, tmp: add_bytes(tar, f"{LOGDIR}/configs/a.yaml/b", b"x"),
}
WHY = {
    "absolute": "absolute path",
    "dotdot": "'..' component",
    "dotdot-leading": "'..' component",
    "backslash-dotdot": "'..' component",
    "symlink": "symbolic link",
    "hardlink": "hard link",
    "fifo": "FIFO",
    "chardev": "character device",
    "blockdev": "block device",
    "duplicate": "clashes with an earlier member",
    "file-then-dir": "clashes with an earlier member",
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archives_are_refused_leaving_nothing(tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    path = work / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        # good members first: they must not survive the refusal of a later one
        add_bytes(tar, f"{LOGDIR}/checkpoints/last.ckpt", b"weights")
        add_bytes(tar, f"{LOGDIR}/configs/a.yaml", b"first")
        MALICIOUS[case](tar, tmp_path)
        add_bytes(tar, f"{LOGDIR}/configs/after.yaml", b"late")
    before = outside_listing(tmp_path)
    with pytest.raises(ar.ArchiveError, match="evil.tar.gz: refused member") as e:
        ar.extract_archive(path, work / "logs")
    assert WHY[case] in str(e.value)
    assert not (work / "logs").exists()
    assert outside_listing(tmp_path) == before  # no temp folder, nothing escaped
    assert not (tmp_path / "outside").exists() and not (tmp_path / "evil.txt").exists()


def test_refused_archive_leaves_an_existing_destination_alone(tmp_path, monkeypatch):
    good, _ = authors_tarball(tmp_path, monkeypatch)
    dest = tmp_path / "logs"
    ar.extract_archive(good, dest)
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="logs"):
        ar.extract_archive(good, dest)
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        add_bytes(tar, "new/file.txt", b"x")
        add_special(tar, "new/link", tarfile.SYMTYPE, "/")
    with pytest.raises(ar.ArchiveError, match="'new/link'"):
        ar.extract_archive(evil, dest, overwrite=True)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    # overwrite replaces the content only once the new archive was read completely
    fresh = tmp_path / "fresh.tar"
    with tarfile.open(fresh, "w") as tar:
        add_bytes(tar, "other/file.txt", b"new")
    ar.extract_archive(fresh, dest, overwrite=True)
    assert outside_listing(dest) == ["other", "other/file.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".logs.")]


def test_corrupt_archives_are_refused(tmp_path, monkeypatch):
    good, _ = authors_tarball(tmp_path, monkeypatch)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not a tarball" * 100)
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    for bad, why in (
        (truncated, "not a readable tar"),
        (junk, "not a readable tar"),
        (empty, "the archive has no members"),
    ):
        with pytest.raises(ar.ArchiveError, match=f"{bad.name}: {why}"):
            ar.extract_archive(bad, tmp_path / "out")
        assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    with pytest.raises(FileNotFoundError, match="missing.tar.gz"):
        ar.extract_archive(tmp_path / "missing.tar.gz", tmp_path / "out")


def test_find_logdir_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no logdir with checkpoints"):
        ar.find_logdir_files(tmp_path)
    for name in ("a_codebook", "b_transformer"):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "epoch_1.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match="several logdirs.*a_codebook.*b_transformer"):
        ar.find_logdir_files(tmp_path)
    files = ar.find_logdir_files(tmp_path, name="b_transformer")
    assert files.checkpoint.name == "epoch_1.ckpt" and files.project_yaml is None
    with pytest.raises(FileNotFoundError, match="named 'c'"):
        ar.find_logdir_files(tmp_path, name="c")


# ----------------------------------------------------------------------------- MelGAN

# The authors' vocoder/logs/vggsound/args.yml, parsed by hand from its text.
AUTHORS_ARGS = {
    "batch_size": 64,
    "cond_disc": False,
    "data_path": "/home/nvme/data/vggsound/features/melspec_10s_22050hz",
    "downsamp_factor": 4,
    "epochs": 3000,
    "lambda_feat": 10,
    "load_path": None,
    "log_interval": 100,
    "n_layers_D": 4,
    "n_mel_channels": 80,
    "n_residual_layers": 3,
    "n_test_samples": 8,
    "ndf": 16,
    "ngf": 32,
    "num_D": 3,
    "save_interval": 1000,
    "save_path": "./logs/vggsound",
    "seq_len": 8192,
    "splits_path": "data",
}


def test_authors_args_yml_is_read_without_unsafe_yaml():
    assert ARGS_YML.read_bytes().startswith(b"!!python/object:argparse.Namespace\n")
    assert mg.read_melgan_args(ARGS_YML) == AUTHORS_ARGS
    # the fixture is the exact file the registry pins
    e = weights.get_entry("specvqgan-melgan-args")
    data = ARGS_YML.read_bytes()
    assert hashlib.sha256(data).hexdigest() == e.sha256 and len(data) == e.size == 487


NS = "!!python/object:argparse.Namespace\n"
EVIL_YAML = {
    "apply": NS + "ngf: 32\nx: !!python/object/apply:builtins.open [{m}, w]\n",
    "new": "!!python/object:argparse.Namespace\nx: !!python/object/new:builtins.open [{m}, w]\n",
    "name": "!!python/object:argparse.Namespace\nx: !!python/name:builtins.eval\n",
    "module": "!!python/object:argparse.Namespace\nx: !!python/module:os\n",
    "object": "!!python/object:builtins.open\nfile: {m}\n",
    "system": NS + "x: !!python/object/apply:os.system [touch {m}]\n",
}


@pytest.mark.parametrize("case", sorted(EVIL_YAML))
def test_malicious_args_yml_is_refused(tmp_path, case):
    import yaml

    marker = tmp_path / "pwned"
    text = EVIL_YAML[case].format(m=str(marker))
    path = tmp_path / "args.yml"
    path.write_text(text)
    with pytest.raises(mg.MelGANFormatError, match="args.yml: refused") as e:
        mg.read_melgan_args(path)
    assert "!!python/" in str(e.value)
    assert not marker.exists()
    if case == "apply":  # positive control: the unsafe loader the authors use does run it
        yaml.load(text, Loader=yaml.UnsafeLoader).x.close()
        assert marker.exists()


def test_args_yml_other_problems(tmp_path):
    p = tmp_path / "args.yml"
    p.write_text("!!python/object:argparse.Namespace\nngf: 32\nn_residual_layers: 3\n")
    with pytest.raises(mg.MelGANFormatError, match="n_mel_channels is None"):
        mg.read_melgan_args(p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(mg.MelGANFormatError, match="expected a mapping"):
        mg.read_melgan_args(p)
    p.write_text("!!python/object/apply:pathlib.PosixPath [1, 2]\n")
    with pytest.raises(mg.MelGANFormatError, match="path parts must be strings"):
        mg.read_melgan_args(p)
    with pytest.raises(FileNotFoundError):
        mg.read_melgan_args(tmp_path / "nope.yml")


def weight_normed_generator(n_mel: int, ngf: int, n_res: int) -> nn.Module:
    """MelGAN's generator layout built from torch modules (independent of the shape table)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old weight_norm gives *_g / *_v
        wn = nn.utils.weight_norm

        class Res(nn.Module):
            def __init__(self, dim, dilation):
                super().__init__()
                self.block = nn.Sequential(
                    nn.LeakyReLU(0.2),
                    nn.ReflectionPad1d(dilation),
                    wn(nn.Conv1d(dim, dim, 3, dilation=dilation)),
                    nn.LeakyReLU(0.2),
                    wn(nn.Conv1d(dim, dim, 1)),
                )
                self.shortcut = wn(nn.Conv1d(dim, dim, 1))

        c = ngf * 16
        layers = [nn.ReflectionPad1d(3), wn(nn.Conv1d(n_mel, c, 7))]
        for r in (8, 8, 2, 2):
            layers += [
                nn.LeakyReLU(0.2),
                wn(nn.ConvTranspose1d(c, c // 2, 2 * r, r, r // 2 + r % 2, r % 2)),
            ]
            layers += [Res(c // 2, 3**j) for j in range(n_res)]
            c //= 2
        layers += [nn.LeakyReLU(0.2), nn.ReflectionPad1d(3), wn(nn.Conv1d(ngf, 1, 7)), nn.Tanh()]
        gen = nn.Module()
        gen.model = nn.Sequential(*layers)
    return gen


def test_melgan_generator_reads_and_checks(tmp_path):
    gen = weight_normed_generator(80, 32, 3)
    assert len(gen.state_dict()) == 3 * (2 + 4 * (1 + 3 * 3))  # 42 weight-normed convs
    path = tmp_path / "best_netG.pt"
    torch.save(gen.state_dict(), path)
    sd = mg.read_melgan_generator(path, mg.read_melgan_args(ARGS_YML))
    assert list(sd) == list(gen.state_dict())
    assert all(torch.equal(sd[k], v) for k, v in gen.state_dict().items())
    assert sd["model.24.weight_v"].shape == (1, 32, 7)
    with pytest.raises(StateDictMismatchError, match=r"best_netG.pt: .*wrong shape"):
        mg.read_melgan_generator(path, dict(AUTHORS_ARGS, ngf=16))
    small = weight_normed_generator(80, 4, 2)
    torch.save(small.state_dict(), path)
    args = dict(AUTHORS_ARGS, ngf=4, n_residual_layers=2)
    assert list(mg.read_melgan_generator(path, args)) == list(small.state_dict())
    with pytest.raises(StateDictMismatchError, match=r"missing: model\.6\.block"):
        mg.read_melgan_generator(path, dict(args, n_residual_layers=3))


def test_melgan_generator_refusals(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "best_netG.pt"
    torch.save({"model.1.bias": torch.zeros(1), "x": EvalPayload(marker)}, evil)
    with pytest.raises(WeightsFormatError, match="best_netG.pt"):
        mg.read_melgan_generator(evil)
    assert not marker.exists()
    nested = tmp_path / "netG_ckpt.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": 3}, nested)
    with pytest.raises(
        mg.MelGANFormatError, match=r"netG_ckpt.pt: expected a plain state dict.*model"
    ):
        mg.read_melgan_generator(nested)
    with pytest.raises(FileNotFoundError):
        mg.read_melgan_generator(tmp_path / "nope.pt")


# ----------------------------------------------------------------------------- registry


def test_registry_has_the_released_models():
    bucket = (
        "https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/specvqgan_public/models/"
    )
    # md5 values from the README tables (link text), v-iashin/SpecVQGAN @ 33c601d
    spot = {
        "specvqgan-codebook-vggsound": (
            "2021-05-19T22-16-54_vggsound_codebook",
            "7ea229427297b5d220fb1c80db32dbc5",
        ),
        "specvqgan-codebook-vas": (
            "2021-06-06T19-42-53_vas_codebook",
            "0024ad3705c5e58a11779d3d9e97cc8a",
        ),
        "specvqgan-transformer-vggsound-212feats-bn": (
            "2021-06-03T07-27-58_vggsound_transformer",
            "79895ac08303b1536809cad1ec9a7502",
        ),
        "specvqgan-transformer-vas-vggsound-codebook-5feats-rn50": (
            "2021-07-29T11-36-00_vas_transformer",
            "7b6951a33771ef527f1c1b1f99b7595e",
        ),
        "specvqgan-transformer-vas-class": (
            "2021-06-09T09-42-07_vas_transformer",
            "412b01be179c2b8b02dfa0c0b49b9a0f",
        ),
    }
    for name, (logdir, md5) in spot.items():
        e = weights.get_entry(name)
        assert e.urls == (f"{bucket}{logdir}.tar.gz",) and e.filename == f"{logdir}.tar.gz"
        assert e.md5 == md5 and e.sha256 is None and e.converter == "specvqgan_lightning_tar"
    tarballs = [e for e in weights.REGISTRY.values() if e.converter == "specvqgan_lightning_tar"]
    assert len(tarballs) == 26  # 2 codebooks + 3 settings x 7 + 3 class-conditioned
    assert len({e.md5 for e in tarballs}) == 26 and len({e.urls for e in tarballs}) == 26
    for e in tarballs:
        assert e.urls[0].startswith("https://") and len(e.md5) == 32
    mel = weights.get_entry("specvqgan-melgan")
    assert mel.filename == "best_netG.pt" and mel.converter == "melgan_pt"
    assert mel.companions == ("specvqgan-melgan-args",)
    assert mel.urls[0].startswith("https://raw.githubusercontent.com/v-iashin/SpecVQGAN/33c601d")
    assert weights.get_entry("specvqgan-melgan-args").converter == "melgan_args"
    assert weights.get_entry("specvqgan-melgan-last").md5 == "e9e3ea89122d31e3dec25f585d215335"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.mark.network
def test_tarball_downloads_through_the_registry_and_loads(tmp_path, monkeypatch):
    path, ckpt = authors_tarball(tmp_path, monkeypatch)
    served = tmp_path / "served"
    served.mkdir()
    path.rename(served / path.name)
    md5 = hashlib.md5((served / path.name).read_bytes()).hexdigest()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        monkeypatch.setenv("AUDIOREP_HOME", str(tmp_path / "cache"))
        monkeypatch.delenv("AUDIOREP_OFFLINE", raising=False)
        entry = weights.get_entry("specvqgan-codebook-vas")
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{path.name}"
        monkeypatch.setitem(
            weights.REGISTRY, entry.name, dataclasses.replace(entry, urls=(url,), md5=md5)
        )
        got = weights.fetch(entry.name, progress=False)
        assert got == weights.cached_path(entry.name)
        logs = ar.extract_archive(got, got.parent / "logs")
        kept, _ = pl.codebook_state_dict(ar.find_logdir_files(logs).checkpoint)
        assert torch.equal(kept["quant_conv.weight"], ckpt["state_dict"]["quant_conv.weight"])
        # a corrupted download fails the authors' md5 and is not kept
        monkeypatch.setitem(
            weights.REGISTRY,
            entry.name,
            dataclasses.replace(entry, urls=(url,), md5="0" * 32),
        )
        got.unlink()
        with pytest.raises(weights.DownloadError, match="md5 mismatch"):
            weights.fetch(entry.name, progress=False)
        assert not got.exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
