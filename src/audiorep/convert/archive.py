"""The authors' model tarballs (``<date>_<name>.tar.gz``), unpacked safely, and their logdirs.

SpecVQGAN releases each codebook / transformer as a gzipped tar of one Lightning logdir
(README "Pretrained Models"; ``feature_extraction/demo_utils.maybe_download_model`` unpacks it
into ``./logs``)::

    <date>_<name>/checkpoints/*.ckpt           # e.g. epoch_39.ckpt, last.ckpt
    <date>_<name>/configs/<now>-project.yaml   # OmegaConf dump: model / data config
    <date>_<name>/configs/<now>-lightning.yaml # trainer / callbacks config

:func:`extract_archive` accepts regular files and folders only. A member with an absolute
path, a ``..`` component, a link (symbolic or hard), a device or FIFO node, a duplicate name,
or a path that would leave the destination is refused, with an :class:`ArchiveError` naming
the archive and the member. Members are checked one by one as the archive streams past and
written into a temporary folder beside the destination, which is renamed into place only
after the whole archive was read: a refusal or a crash never leaves partial output under the
destination's name (the temporary folder is removed).

:func:`find_logdir_files` locates a logdir's checkpoints and configs;
:func:`read_project_yaml` reads a config with ``yaml.safe_load`` (PyYAML; the files are plain
YAML with ``target:`` strings); :func:`codebook_config_from_project_yaml` maps the codebook's
``model.params`` to plain numbers.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from audiorep.atomic import commit, current_umask
from audiorep.convert.readers import WeightsFormatError

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


#: What a corrupt or truncated (compressed) tar raises while streaming.
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


class ArchiveError(WeightsFormatError):
    """An archive was refused or could not be read (names the archive, and the member)."""


# ----------------------------------------------------------------------------- extraction


def _member_kind(member: tarfile.TarInfo) -> str:
    for test, kind in (
        (member.issym, "a symbolic link"),
        (member.islnk, "a hard link"),
        (member.ischr, "a character device"),
        (member.isblk, "a block device"),
        (member.isfifo, "a FIFO"),
    ):
        if test():
            return kind
    return f"an unsupported member type {member.type!r}"


def _member_parts(archive: Path, member: tarfile.TarInfo) -> tuple[str, ...]:
    """The checked relative path of ``member`` (empty for a ``./`` folder entry)."""
    name = member.name

    def refuse(why: str) -> ArchiveError:
        return ArchiveError(f"{archive}: refused member {name!r}: {why}; nothing was extracted")

    if not (member.isreg() or member.isdir()):
        raise refuse(f"it is {_member_kind(member)} (only regular files and folders are allowed)")
    if "\x00" in name:
        raise refuse("a NUL byte in its name")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise refuse("an absolute path")
    # Backslashes count as separators too, so a name cannot smuggle '..' past a Windows reader.
    parts = tuple(p for p in re.split(r"[/\\]", name) if p not in ("", "."))
    if ".." in parts:
        raise refuse("a '..' component")
    if not parts and not member.isdir():
        raise refuse("an empty file name")
    return parts


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - isreg() members always have data
        raise OSError("no data")
    with source, open(target, "xb") as out:  # "x": a duplicate name fails instead of overwriting
        shutil.copyfileobj(source, out, _CHUNK)


def _extract_into(archive: Path, tmp: Path) -> int:
    """Stream ``archive`` into the empty folder ``tmp``; return the number of members."""
    root = tmp.resolve()
    count = 0
    with tarfile.open(archive, mode="r|*") as tar:
        for member in tar:
            parts = _member_parts(archive, member)
            count += 1
            if not parts:
                continue
            target = tmp.joinpath(*parts)
            # Defence in depth: only folders and files this function made exist under tmp, so
            # resolving cannot follow a link; the check still catches any path logic slip.
            if not target.resolve().is_relative_to(root):
                raise ArchiveError(
                    f"{archive}: refused member {member.name!r}: it resolves outside the "
                    "destination; nothing was extracted"
                )
            try:
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _write_member(tar, member, target)
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
                raise ArchiveError(
                    f"{archive}: refused member {member.name!r}: it clashes with an earlier "
                    f"member of the same name or path ({type(e).__name__}); nothing was "
                    "extracted"
                ) from None
    return count


def extract_archive(archive: PathLike, dest: PathLike, *, overwrite: bool = False) -> Path:
    """Unpack a ``.tar`` / ``.tar.gz`` / ``.tar.bz2`` / ``.tar.xz`` into ``dest``, all or nothing.

    Args:
        archive: the tarball (compression detected from its content).
        dest: the folder that will hold the archive's members (created; for the authors'
            tarballs it then holds ``<date>_<name>/...``).
        overwrite: replace an existing non-empty ``dest`` (only after the new content was
            fully extracted).

    Returns:
        ``Path(dest)``.

    Raises:
        FileNotFoundError: no such archive.
        FileExistsError: ``dest`` exists, is not an empty folder, and ``overwrite`` is False.
        ArchiveError: a refused member (named), a corrupt or truncated archive, or no members.
            ``dest`` is then untouched and no temporary folder is left behind.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    occupied = dest.exists() and (not dest.is_dir() or any(dest.iterdir()))
    if occupied and not overwrite:
        raise FileExistsError(f"{dest} already exists and is not empty (pass overwrite=True)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".extracting", dir=dest.parent))
    old: Path | None = None
    try:
        try:
            count = _extract_into(archive, tmp)
        except _CORRUPT as e:
            raise ArchiveError(
                f"{archive}: not a readable tar archive ({type(e).__name__}: {e}); nothing "
                "was extracted"
            ) from e
        if count == 0:
            raise ArchiveError(f"{archive}: the archive has no members; nothing was extracted")
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; give a plain mkdir's mode
        if dest.exists():
            if occupied:  # overwrite: move the old content aside, publish, then delete it
                old = Path(
                    tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent)
                )
                os.replace(dest, old / "content")
            else:
                dest.rmdir()
        commit(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not dest.exists():  # put the previous content back
            with contextlib.suppress(OSError):
                os.replace(old / "content", dest)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest


# ----------------------------------------------------------------------------- logdirs


@dataclass(frozen=True)
class LogdirFiles:
    """One authors' logdir: ``<logdir>/{checkpoints/*.ckpt, configs/*-{project,lightning}.yaml}``.

    Attributes:
        logdir: the ``<date>_<name>`` folder.
        checkpoints: every ``checkpoints/*.ckpt``, sorted by name.
        project_yaml: the latest ``configs/*-project.yaml`` by name (the authors' rule), or None.
        lightning_yaml: the latest ``configs/*-lightning.yaml`` by name, or None.
    """

    logdir: Path
    checkpoints: tuple[Path, ...]
    project_yaml: Path | None
    lightning_yaml: Path | None

    @property
    def checkpoint(self) -> Path:
        """``last.ckpt`` if present, else the last by name: the authors' tools' choice
        (``evaluation/generate_samples.py``, the demos' ``sorted(...)[-1]``)."""
        for p in self.checkpoints:
            if p.name == "last.ckpt":
                return p
        return self.checkpoints[-1]


def find_logdir_files(root: PathLike, name: str | None = None) -> LogdirFiles:
    """Locate a logdir under ``root``: ``root`` itself, ``root/<name>`` or ``root/*/<name>``.

    Args:
        root: an extracted tarball's folder (or the logdir itself, or a ``logs/`` folder).
        name: the logdir's folder name when ``root`` holds several.

    Raises:
        FileNotFoundError: no folder with ``checkpoints/*.ckpt`` (the message lists what is
            there), or ``name`` not found.
        ValueError: several logdirs and no ``name``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder: {root}")
    candidates = [
        c.parent
        for pattern in ("checkpoints", "*/checkpoints", "*/*/checkpoints")
        for c in sorted(root.glob(pattern))
        if c.is_dir() and any(c.glob("*.ckpt"))
    ]
    if name is not None:
        candidates = [c for c in candidates if c.name == name]
    if not candidates:
        present = ", ".join(sorted(p.name for p in root.iterdir())[:10]) or "nothing"
        wanted = f" named {name!r}" if name else ""
        raise FileNotFoundError(
            f"{root}: no logdir{wanted} with checkpoints/*.ckpt (expected "
            f"<date>_<name>/checkpoints/*.ckpt; found: {present})"
        )
    if len(candidates) > 1:
        raise ValueError(
            f"{root}: several logdirs ({', '.join(str(c.relative_to(root)) for c in candidates)}); "
            "pass name="
        )
    logdir = candidates[0]

    def latest(pattern: str) -> Path | None:
        found = sorted(logdir.glob(pattern))
        return found[-1] if found else None

    return LogdirFiles(
        logdir=logdir,
        checkpoints=tuple(sorted(logdir.glob("checkpoints/*.ckpt"))),
        project_yaml=latest("configs/*-project.yaml"),
        lightning_yaml=latest("configs/*-lightning.yaml"),
    )


# ----------------------------------------------------------------------------- configs


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise ImportError(
            "reading the authors' YAML configs needs PyYAML: pip install pyyaml"
        ) from None
    return yaml


def read_project_yaml(path: PathLike) -> dict[str, Any]:
    """A ``configs/*-project.yaml`` as plain dicts/lists (``yaml.safe_load``; no tags run).

    Raises:
        ImportError: PyYAML is not installed (says how to install it).
        WeightsFormatError: not YAML, or not a mapping (names the file).
    """
    yaml = _yaml()
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise WeightsFormatError(f"{path}: not a plain YAML config ({e})") from None
    if not isinstance(data, Mapping):
        raise WeightsFormatError(f"{path}: expected a mapping, found {type(data).__name__}")
    return dict(data)


#: ``VQModel`` ``ddconfig`` fields and how to read them.
_DDCONFIG = {
    "ch": int,
    "ch_mult": "ints",
    "num_res_blocks": int,
    "attn_resolutions": "ints",
    "z_channels": int,
    "resolution": int,
    "in_channels": int,
    "out_ch": int,
    "dropout": float,
}
#: ``VQLPAPSWithDiscriminator`` parameters carried over.
_LOSS = {
    "disc_start": int,
    "disc_weight": float,
    "codebook_weight": float,
    "min_adapt_weight": float,
    "max_adapt_weight": float,
    "perceptual_weight": float,
}


def _number(value: Any, kind: Any, where: str) -> Any:
    try:
        if kind == "ints":
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise TypeError("not a list")
            return tuple(int(v) for v in value)
        if isinstance(value, bool):
            raise TypeError("a boolean")
        # YAML 1.1 reads '1e-6' (no dot) as a string: float() accepts it.
        out = kind(float(value)) if kind is int else kind(value)
        if kind is int and out != float(value):
            raise ValueError("not an integer")
        return out
    except (TypeError, ValueError) as e:
        raise WeightsFormatError(f"{where} = {value!r}: {e}") from None


def codebook_config_from_project_yaml(d: Mapping[str, Any]) -> dict[str, Any]:
    """The codebook's architecture (and loss weights, when trained with them) as plain values.

    Args:
        d: a project config (:func:`read_project_yaml`) of a codebook
            (``model.target`` ``...vqgan.VQModel``) or of a transformer, whose
            ``model.params.first_stage_config`` is then used.

    Returns:
        ``{ch, ch_mult (tuple), num_res_blocks, attn_resolutions (tuple), z_channels,
        embed_dim, n_embed, resolution, in_channels, out_ch, dropout}`` plus, when the loss is
        ``VQLPAPSWithDiscriminator``, ``{disc_start, disc_weight, codebook_weight,
        min_adapt_weight, max_adapt_weight, perceptual_weight}`` (a transformer's frozen
        first stage uses ``DummyLoss``: no loss keys).

    Raises:
        WeightsFormatError: not a VQModel config, a missing field (named with its path),
            ``double_z`` set, or a value of the wrong kind.
    """
    model = d.get("model") if isinstance(d, Mapping) else None
    if not isinstance(model, Mapping):
        raise WeightsFormatError("project config has no 'model' section")
    where = "model"
    target = str(model.get("target", ""))
    if target.endswith("Net2NetTransformer"):
        model = (model.get("params") or {}).get("first_stage_config") or {}
        where = "model.params.first_stage_config"
        target = str(model.get("target", ""))
    if not target.endswith("VQModel"):
        raise WeightsFormatError(f"{where}.target is {target!r}, not a SpecVQGAN VQModel")
    params = model.get("params")
    if not isinstance(params, Mapping):
        raise WeightsFormatError(f"{where}.params is missing")
    dd = params.get("ddconfig")
    if not isinstance(dd, Mapping):
        raise WeightsFormatError(f"{where}.params.ddconfig is missing")
    if dd.get("double_z"):
        raise WeightsFormatError(f"{where}.params.ddconfig.double_z is set: not a VQ codebook")
    out: dict[str, Any] = {}
    for key, kind in _DDCONFIG.items():
        if key not in dd:
            raise WeightsFormatError(f"{where}.params.ddconfig.{key} is missing")
        out[key] = _number(dd[key], kind, f"{where}.params.ddconfig.{key}")
    for key in ("embed_dim", "n_embed"):
        if key not in params:
            raise WeightsFormatError(f"{where}.params.{key} is missing")
        out[key] = _number(params[key], int, f"{where}.params.{key}")
    loss = params.get("lossconfig") or {}
    if str(loss.get("target", "")).endswith("VQLPAPSWithDiscriminator"):
        loss_params = loss.get("params") or {}
        for key, kind in _LOSS.items():
            if key in loss_params:
                out[key] = _number(loss_params[key], kind, f"{where}.params.lossconfig.{key}")
    return out


#: Keys of :func:`codebook_config_from_project_yaml` that describe the architecture
#: (``audiorep.models.vqgan.VQGANConfig``'s fields) ...
CODEBOOK_ARCH_KEYS = (*_DDCONFIG, "embed_dim", "n_embed")
#: ... and those that describe the training loss (``audiorep.losses.vqgan.VQGANLossConfig``).
CODEBOOK_LOSS_KEYS = tuple(_LOSS)


__all__ = [
    "ArchiveError",
    "CODEBOOK_ARCH_KEYS",
    "CODEBOOK_LOSS_KEYS",
    "LogdirFiles",
    "codebook_config_from_project_yaml",
    "extract_archive",
    "find_logdir_files",
    "read_project_yaml",
]
