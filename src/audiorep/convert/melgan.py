"""SpecVQGAN's MelGAN vocoder files (``best_netG.pt``, ``args.yml``), read safely.

* ``best_netG.pt`` is ``torch.save(netG.state_dict())`` of the generator (weight-norm keys
  ``*.weight_g``, ``*.weight_v``, ``*.bias``; ``vocoder/scripts/train.py``), read with
  ``torch.load(weights_only=True)`` (:func:`read_melgan_generator`).
* ``args.yml`` is ``yaml.dump(argparse.Namespace)``: a ``!!python/object:argparse.Namespace``
  mapping whose ``data_path`` / ``splits_path`` are ``!!python/object/apply:pathlib.PosixPath``
  lists of path parts. The authors load it with ``yaml.UnsafeLoader``, which would run any
  ``python/...`` tag in the file. :func:`read_melgan_args` uses a ``yaml.SafeLoader`` that
  maps exactly those two tags to a plain dict and a path string and refuses every other
  ``python/`` tag (naming the file and the tag) before anything is constructed.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Union

import torch

from audiorep.convert.readers import WeightsFormatError, read_torch_checkpoint
from audiorep.convert.specvqgan import StateDictMismatchError, check_state_dict
from audiorep.models.melgan import MelGANConfig, generator_state_dict_shapes

PathLike = Union[str, "os.PathLike[str]"]

#: Tags of the authors' ``args.yml`` that :func:`read_melgan_args` accepts.
NAMESPACE_TAG = "tag:yaml.org,2002:python/object:argparse.Namespace"
_PATH_TAGS = {
    "tag:yaml.org,2002:python/object/apply:pathlib.PosixPath": PurePosixPath,
    "tag:yaml.org,2002:python/object/apply:pathlib.PurePosixPath": PurePosixPath,
    "tag:yaml.org,2002:python/object/apply:pathlib.WindowsPath": PureWindowsPath,
    "tag:yaml.org,2002:python/object/apply:pathlib.PureWindowsPath": PureWindowsPath,
}
#: Fields the generator needs from ``args.yml``.
GENERATOR_ARGS = ("n_mel_channels", "ngf", "n_residual_layers")


class MelGANFormatError(WeightsFormatError):
    """A MelGAN file was refused or is not what was expected (names the file)."""


# ----------------------------------------------------------------------------- args.yml


def _args_loader() -> type:
    """A ``yaml.SafeLoader`` subclass knowing the two tags of the authors' ``args.yml``."""
    try:
        import yaml
    except ImportError:
        raise ImportError("reading MelGAN's args.yml needs PyYAML: pip install pyyaml") from None

    class ArgsLoader(yaml.SafeLoader):
        pass

    def namespace(loader: Any, node: Any) -> dict[str, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.tag} must be a mapping", node.start_mark
            )
        return loader.construct_mapping(node, deep=True)

    def path(loader: Any, node: Any) -> str:
        if not isinstance(node, yaml.SequenceNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.tag} must be a list of path parts", node.start_mark
            )
        parts = loader.construct_sequence(node, deep=True)
        if not all(isinstance(p, str) for p in parts):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.tag}: path parts must be strings", node.start_mark
            )
        return str(_PATH_TAGS[node.tag](*parts)) if parts else "."

    def refuse(loader: Any, suffix: str, node: Any) -> Any:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"refused tag !!python/{suffix}: only argparse.Namespace and pathlib paths are "
            "allowed (nothing was constructed)",
            node.start_mark,
        )

    ArgsLoader.add_constructor(NAMESPACE_TAG, namespace)
    for tag in _PATH_TAGS:
        ArgsLoader.add_constructor(tag, path)
    # Exact tags win over prefixes in PyYAML, so only the ones above get past this.
    ArgsLoader.add_multi_constructor("tag:yaml.org,2002:python/", refuse)
    return ArgsLoader


def read_melgan_args(path: PathLike) -> dict[str, Any]:
    """The authors' ``args.yml`` as a plain dict, without unsafe YAML.

    Returns:
        e.g. ``{"n_mel_channels": 80, "ngf": 32, "n_residual_layers": 3, "num_D": 3,
        "ndf": 16, "n_layers_D": 4, "downsamp_factor": 4, "batch_size": 64,
        "seq_len": 8192, "data_path": "/home/.../melspec_10s_22050hz", ...}`` (paths as
        strings).

    Raises:
        ImportError: PyYAML is not installed.
        FileNotFoundError: no such file.
        MelGANFormatError: a refused tag (named), not YAML, not a mapping, or a generator
            field (:data:`GENERATOR_ARGS`) missing or not a positive integer.
    """
    loader = _args_loader()
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MelGAN args not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise MelGANFormatError(f"{path}: refused or unreadable: {e}") from None
    if not isinstance(data, Mapping):
        raise MelGANFormatError(f"{path}: expected a mapping, found {type(data).__name__}")
    data = {str(k): v for k, v in data.items()}
    for key in GENERATOR_ARGS:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise MelGANFormatError(f"{path}: {key} is {value!r}, expected a positive integer")
    return data


# ----------------------------------------------------------------------------- generator


def read_melgan_generator(
    path: PathLike, args: Mapping[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """``best_netG.pt`` (or ``netG.pt``) -> the generator's state dict, read safely.

    Args:
        path: a ``torch.save(netG.state_dict())`` file.
        args: the vocoder's arguments (:func:`read_melgan_args`); when given, the keys and
            shapes are checked strictly against the generator they describe
            (:func:`audiorep.models.melgan.generator_state_dict_shapes`: weight-norm
            ``model.<i>.{weight_g, weight_v, bias}``).

    Returns:
        ``{key: tensor}`` on the CPU, as stored.

    Raises:
        FileNotFoundError: no such file.
        WeightsFormatError: refused / unreadable (``torch.load(weights_only=True)``), or not a
            plain state dict of tensors (e.g. a training checkpoint dict).
        StateDictMismatchError: ``args`` given and the keys or shapes differ.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MelGAN generator not found: {path}")
    obj = read_torch_checkpoint(path)
    if not isinstance(obj, Mapping) or not obj:
        raise MelGANFormatError(
            f"{path}: expected a plain state dict (torch.save(netG.state_dict())), found "
            f"{'an empty dict' if isinstance(obj, Mapping) else 'a ' + type(obj).__name__}"
        )
    bad = [str(k) for k, v in obj.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if bad:
        raise MelGANFormatError(
            f"{path}: expected a plain state dict (torch.save(netG.state_dict())); entries "
            f"that are not tensors: {', '.join(bad[:8])}"
        )
    sd = OrderedDict(obj.items())
    if args is not None:
        config = MelGANConfig(**{k: int(args[k]) for k in GENERATOR_ARGS})
        shapes = dict(generator_state_dict_shapes(config))
        try:
            check_state_dict(sd, shapes, what="MelGAN generator")
        except StateDictMismatchError as e:
            raise StateDictMismatchError(
                f"{path}: {e}", e.missing, e.unexpected, e.mismatched
            ) from None
    return sd


__all__ = [
    "GENERATOR_ARGS",
    "MelGANFormatError",
    "NAMESPACE_TAG",
    "read_melgan_args",
    "read_melgan_generator",
]
