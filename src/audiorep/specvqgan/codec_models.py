"""Finding the codec and the vocoder a command should use, from a name or a path.

Codec (``--codec``):

* ``small`` (default): the small codec trained here and shipped with the package
  (registry entry ``audiorep-codec-small``, docs/codec.md);
* a file written by our training (``codec.safetensors``, or its folder);
* an authors' Lightning checkpoint (``.ckpt``), read with the restricted unpickler of
  :mod:`audiorep.convert.lightning`; the architecture comes from the logdir's
  ``configs/*-project.yaml`` when it is there, else the released configs (which differ only in
  the codebook size, read from ``quantize.embedding.weight``);
* an authors' logdir or ``.tar.gz`` archive, or a registry name (``specvqgan-codebook-vas``,
  ``specvqgan-codebook-vggsound``: downloaded, checked and extracted safely).

Vocoder (``--vocoder``): ``small`` (shipped), ``griffin-lim``, our ``vocoder.safetensors``,
an authors' ``best_netG.pt`` (with ``args.yml`` beside it), or the registry's ``specvqgan-melgan``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from audiorep.models.melgan import MelGANConfig, MelGANGenerator
from audiorep.models.vqgan import SpectrogramVQGAN, VQGANConfig
from audiorep.specvqgan.codec_training import load_trained_codec
from audiorep.specvqgan.vocoder_training import load_trained_vocoder

PathLike = str | os.PathLike
SMALL_CODEC = "audiorep-codec-small"
SMALL_VOCODER = "audiorep-melgan-small"
GRIFFIN_LIM = "griffin-lim"


def _registry_file(name: str) -> Path:
    from audiorep.weights.download import fetch

    return fetch(name)


def codec_from_lightning(
    ckpt_path: PathLike, project_yaml: PathLike | None = None
) -> SpectrogramVQGAN:
    """An authors' codebook ``.ckpt`` as a :class:`SpectrogramVQGAN` (the ``loss.*`` keys
    are left out on purpose; everything else loads strictly)."""
    from audiorep.convert.archive import codebook_config_from_project_yaml, read_project_yaml
    from audiorep.convert.lightning import codebook_state_dict

    sd, _ignored = codebook_state_dict(ckpt_path)
    if project_yaml is not None:
        fields = codebook_config_from_project_yaml(read_project_yaml(project_yaml))
        names = set(VQGANConfig.__dataclass_fields__)
        config = VQGANConfig.from_dict({k: v for k, v in fields.items() if k in names})
    else:
        n_embed, embed_dim = sd["quantize.embedding.weight"].shape
        config = VQGANConfig.from_dict(
            {**VQGANConfig.vas().to_dict(), "n_embed": int(n_embed), "embed_dim": int(embed_dim)}
        )
    codec = SpectrogramVQGAN(config)
    codec.load_state_dict(sd, strict=True)
    return codec.eval()


def _codec_from_logdir(root: Path) -> SpectrogramVQGAN:
    from audiorep.convert.archive import find_logdir_files

    files = find_logdir_files(root)
    return codec_from_lightning(files.checkpoint, files.project_yaml)


def _extracted(archive: Path) -> Path:
    from audiorep.convert.archive import extract_archive

    dest = archive.parent / (archive.name.split(".tar")[0] + ".extracted")
    if not dest.is_dir():
        extract_archive(archive, dest)
    return dest


def load_codec(
    spec: str | None = None, device: str | torch.device = "cpu"
) -> tuple[SpectrogramVQGAN, str]:
    """``(codec in eval mode, a name for it)`` from ``spec`` (module docstring)."""
    spec = spec or "small"
    if spec == "small":
        spec = SMALL_CODEC
    path = Path(spec)
    if not path.exists():
        from audiorep.weights.registry import REGISTRY

        if spec not in REGISTRY:
            raise FileNotFoundError(
                f"{spec}: no such file, and not a codec name (small, specvqgan-codebook-vas, "
                "specvqgan-codebook-vggsound)"
            )
        name, path = spec, _registry_file(spec)
    else:
        name = path.name
    if path.is_dir() and (path / "codec.safetensors").is_file():
        path = path / "codec.safetensors"
    if path.suffix == ".safetensors":
        codec, _ = load_trained_codec(path)
    elif path.suffix == ".ckpt":
        yamls = sorted((path.parent.parent / "configs").glob("*-project.yaml"))
        codec = codec_from_lightning(path, yamls[-1] if yamls else None)
    elif path.is_dir():
        codec = _codec_from_logdir(path)
    elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
        codec = _codec_from_logdir(_extracted(path))
    else:
        raise ValueError(
            f"{path}: not a codec (expected codec.safetensors, an authors' .ckpt, logdir or "
            ".tar.gz)"
        )
    return codec.to(device).eval(), name


def generator_vocoder(generator: MelGANGenerator) -> Callable[[torch.Tensor], torch.Tensor]:
    """``(80, T) [0, 1] mel -> (256 T,)`` float32 waveform, on the generator's device."""
    device = next(generator.parameters()).device

    @torch.no_grad()
    def vocode(mel: torch.Tensor) -> torch.Tensor:
        return generator(mel.to(device, torch.float32)[None])[0, 0].cpu()

    return vocode


def load_vocoder(
    spec: str | None = None, device: str | torch.device = "cpu"
) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, str]:
    """``(vocoder or None for Griffin-Lim, its name)`` from ``spec`` (module docstring)."""
    spec = spec or "small"
    if spec == GRIFFIN_LIM:
        return None, GRIFFIN_LIM
    if spec == "small":
        spec = SMALL_VOCODER
    path = Path(spec)
    args_path: Path | None = None
    if not path.exists():
        from audiorep.weights.registry import REGISTRY

        if spec not in REGISTRY:
            raise FileNotFoundError(
                f"{spec}: no such file, and not a vocoder name (small, griffin-lim, "
                "specvqgan-melgan)"
            )
        entry = REGISTRY[spec]
        name, path = spec, _registry_file(spec)
        for companion in entry.companions:
            args_path = _registry_file(companion)
    else:
        name = path.name
    if path.is_dir() and (path / "vocoder.safetensors").is_file():
        path = path / "vocoder.safetensors"
    if path.suffix == ".safetensors":
        generator, _ = load_trained_vocoder(path, device)
    elif path.suffix == ".pt":
        from audiorep.convert.melgan import read_melgan_args, read_melgan_generator

        args_path = args_path or path.with_name("args.yml")
        args = read_melgan_args(args_path) if args_path.is_file() else {}
        config = MelGANConfig.from_dict(
            {k: v for k, v in args.items() if k in MelGANConfig.__dataclass_fields__}
        )
        generator = MelGANGenerator(config)
        generator.load_state_dict(read_melgan_generator(path, args or None), strict=True)
        generator = generator.to(device).eval()
    else:
        raise ValueError(f"{path}: not a vocoder (expected vocoder.safetensors or best_netG.pt)")
    return generator_vocoder(generator), name


__all__ = [
    "GRIFFIN_LIM",
    "SMALL_CODEC",
    "SMALL_VOCODER",
    "codec_from_lightning",
    "generator_vocoder",
    "load_codec",
    "load_vocoder",
]
