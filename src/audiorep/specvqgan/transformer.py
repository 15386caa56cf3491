"""SpecVQGAN's stage two: a GPT over codec tokens, with the frozen codec and the token order.

:class:`CodeTransformer` is the authors' ``Net2NetTransformer`` at inference and training time,
with their ``state_dict`` keys, so a released ``.ckpt`` loads strictly:

* ``transformer.*``: the GPT (:mod:`audiorep.models.gpt`; GPTFeats, GPTClass or GPTFeatsClass);
* ``first_stage_model.*``: the codec (:class:`~audiorep.models.vqgan.SpectrogramVQGAN`), frozen:
  always in eval mode and without gradients;
* ``first_stage_permuter.forward_shuffle_idx`` / ``backward_shuffle_idx``: the column-major token
  order (sequence position ``k = w*H + h`` holds grid cell ``(h, w)``: time column by time
  column, low to high band within a column).

Tokens here are always in sequence (column-major) order, ``(B, H*W)``; :meth:`CodeTransformer.grid`
turns them back into a ``(B, H, W)`` code grid.

Loading (:func:`load_transformer`): ``"small"`` (the shipped class-conditional model trained
here), a registry name (the authors' tarballs), an authors' ``.ckpt`` / logdir / ``.tar.gz``, or a
``transformer.safetensors`` written by :func:`save_transformer`. The safetensors file holds only
the GPT and the token order; its JSON config names the codec it was trained with and that
codec's weight fingerprint, which is checked on load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from audiorep.hashing import state_dict_sha256
from audiorep.models.gpt import GPT, GPTConfig, build_gpt
from audiorep.models.vqgan import SpectrogramVQGAN
from audiorep.training.export import load_model_file, save_model_file

TRANSFORMER_FORMAT = "audiorep.specvqgan.transformer"
SMALL_TRANSFORMER = "audiorep-transformer-small"
VAS_CLASSES = ("baby", "cough", "dog", "drum", "fireworks", "gun", "hammer", "sneeze")

PathLike = str | os.PathLike


class ColumnMajorPermuter(nn.Module):
    """The authors' ``ColumnMajor(H, W)``: raster index ``h*W + w`` <-> sequence ``w*H + h``."""

    def __init__(self, height: int = 5, width: int = 53):
        super().__init__()
        order = torch.arange(height * width).reshape(height, width).T.reshape(-1)
        self.register_buffer("forward_shuffle_idx", order)
        self.register_buffer("backward_shuffle_idx", torch.argsort(order))
        self.height, self.width = height, width

    def forward(self, raster: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """``(B, H*W)`` raster-order indices -> sequence order (``reverse``: back)."""
        idx = self.backward_shuffle_idx if reverse else self.forward_shuffle_idx
        return raster[:, idx]


@dataclass(frozen=True)
class TransformerSpec:
    """Everything needed to rebuild a :class:`CodeTransformer` except the weights.

    Attributes:
        gpt: the GPT's hyper-parameters.
        kind: ``"feature"``, ``"class"`` or ``"feature+class"`` (what conditions it).
        feat_depth: feature width (2048: BN-Inception RGB|flow, or ResNet50); 0 for class only.
        feat_sample_size: feature frames per clip (1, 5 or 212; 0 for class only).
        n_classes: classes of a class-conditional model (0 otherwise).
        classes: their names in target order, when known.
        grid: the codec's token grid ``(H, W)`` for a 9.8 s clip (5 x 53).
        codec: how to load the codec (a :func:`~audiorep.specvqgan.codec_models.load_codec`
            spec), for our own files.
        codec_sha256: the codec's weight fingerprint it was trained with, checked on load.
    """

    gpt: GPTConfig
    kind: str = "feature"
    feat_depth: int = 2048
    feat_sample_size: int = 212
    n_classes: int = 0
    classes: tuple[str, ...] = ()
    grid: tuple[int, int] = (5, 53)
    codec: str = ""
    codec_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("feature", "class", "feature+class"):
            raise ValueError(f"unknown conditioning kind {self.kind!r}")
        needed = self.condition_length + self.grid[0] * self.grid[1] - 1
        if needed > self.gpt.block_size:
            raise ValueError(
                f"block_size {self.gpt.block_size} < {needed} positions needed "
                f"({self.condition_length} condition + {self.grid[0]}x{self.grid[1]} - 1 tokens)"
            )

    @property
    def condition_length(self) -> int:
        """S: condition positions in front of the tokens."""
        feats = self.feat_sample_size if "feature" in self.kind else 0
        return feats + (1 if "class" in self.kind else 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpt": self.gpt.to_dict(),
            "kind": self.kind,
            "feat_depth": self.feat_depth,
            "feat_sample_size": self.feat_sample_size,
            "n_classes": self.n_classes,
            "classes": list(self.classes),
            "grid": list(self.grid),
            "codec": self.codec,
            "codec_sha256": self.codec_sha256,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TransformerSpec:
        d = dict(d)
        d["gpt"] = GPTConfig.from_dict(d["gpt"])
        d["classes"] = tuple(d.get("classes", ()))
        d["grid"] = tuple(d.get("grid", (5, 53)))
        return cls(**d)


class CodeTransformer(nn.Module):
    """GPT + frozen codec + token order (module docstring). Build with :meth:`build`."""

    def __init__(self, spec: TransformerSpec, gpt: GPT, codec: SpectrogramVQGAN):
        super().__init__()
        self.spec = spec
        self.transformer = gpt
        self.first_stage_model = codec.eval()
        for p in self.first_stage_model.parameters():
            p.requires_grad_(False)
        self.first_stage_permuter = ColumnMajorPermuter(*spec.grid)

    @classmethod
    def build(cls, spec: TransformerSpec, codec: SpectrogramVQGAN) -> CodeTransformer:
        """A freshly initialised GPT (minGPT init) for ``spec`` around ``codec``."""
        feat_depth = spec.feat_depth if "feature" in spec.kind else None
        n_classes = spec.n_classes if "class" in spec.kind else None
        if n_classes is not None and n_classes < 1:
            raise ValueError("a class-conditional transformer needs n_classes >= 1")
        return cls(spec, build_gpt(spec.gpt, feat_depth, n_classes), codec)

    def train(self, mode: bool = True) -> CodeTransformer:
        # The codec stays frozen in eval mode whatever the trainer asks (as the authors').
        super().train(mode)
        self.first_stage_model.eval()
        return self

    # ------------------------------------------------------------------ properties

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def classes(self) -> list[str] | None:
        return list(self.spec.classes) or None

    @property
    def vocab_size(self) -> int:
        return self.spec.gpt.vocab_size

    @property
    def sequence_length(self) -> int:
        """Tokens of one 9.8 s clip (265)."""
        return self.spec.grid[0] * self.spec.grid[1]

    @property
    def device(self) -> torch.device:
        return self.transformer.pos_emb.device

    def config_dict(self) -> dict[str, Any]:
        return self.spec.to_dict()

    # ------------------------------------------------------------------ tokens

    @torch.no_grad()
    def codes_of(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 80, 16 W)`` mel in [-1, 1] -> ``(B, 5 W)`` column-major tokens."""
        grid = self.first_stage_model.encode_to_codes(mel.to(self.device))
        return self.sequence(grid)

    def sequence(self, grid: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` code grid -> ``(B, H*W)`` tokens in sequence order (any W)."""
        if grid.dim() != 3 or grid.shape[1] != self.spec.grid[0]:
            raise ValueError(
                f"expected a (B, {self.spec.grid[0]}, W) grid, got {tuple(grid.shape)}"
            )
        return grid.transpose(1, 2).reshape(grid.shape[0], -1)

    def grid(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, H*W)`` tokens -> ``(B, H, W)`` grid (any W)."""
        h = self.spec.grid[0]
        if tokens.dim() != 2 or tokens.shape[1] % h:
            raise ValueError(f"expected (B, {h}*W) tokens, got {tuple(tokens.shape)}")
        return tokens.reshape(tokens.shape[0], -1, h).transpose(1, 2).contiguous()

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, 5 W)`` tokens -> ``(B, 1, 80, 16 W)`` mel in [-1, 1] (unclamped, as the
        authors save it)."""
        return self.first_stage_model.decode_codes(self.grid(tokens.to(self.device)))

    # ------------------------------------------------------------------ training

    def condition_to(self, condition: Any) -> Any:
        """Move a condition (tensor or {'feature', 'target'} dict) to the model's device."""
        if isinstance(condition, Mapping):
            return {k: torch.as_tensor(v).to(self.device) for k, v in condition.items()}
        return torch.as_tensor(condition).to(self.device)

    def logits(self, tokens: torch.Tensor, condition: Any) -> torch.Tensor:
        """Teacher-forced logits ``(B, L, V)``: position j predicts token j (L = tokens' length)."""
        condition = self.condition_to(condition)
        if self.transformer.condition_length(condition) < 1:
            raise ValueError("teacher forcing needs a condition: token 0 is predicted from it")
        out, _ = self.transformer(tokens[:, :-1].to(self.device), condition)
        return out[:, -tokens.shape[1] :]

    def loss(self, tokens: torch.Tensor, condition: Any) -> torch.Tensor:
        """Mean cross-entropy of the next-token predictions (the authors' objective)."""
        logits = self.logits(tokens, condition)
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1).to(self.device)
        )


# ---------------------------------------------------------------------- authors' configs


def spec_from_project_yaml(d: Mapping[str, Any]) -> TransformerSpec:
    """A :class:`TransformerSpec` from an authors' transformer ``configs/*-project.yaml``
    (read with :func:`audiorep.convert.archive.read_project_yaml`)."""
    try:
        params = d["model"]["params"]
        tcfg = params["transformer_config"]
        target = str(tcfg["target"]).rsplit(".", 1)[-1]
        tparams = tcfg["params"]
        gpt = GPTConfig.from_dict(tparams["GPT_config"])
        perm = params.get("first_stage_permuter_config", {}).get("params", {}) or {}
        grid = (int(perm.get("H", 5)), int(perm.get("W", 53)))
    except (KeyError, TypeError) as e:
        raise ValueError(f"not a SpecVQGAN transformer config (missing {e})") from None
    data = (d.get("data") or {}).get("params", {}) or {}
    sampler = (data.get("feat_sampler_cfg") or {}).get("params", {}) or {}
    size = int(sampler.get("feat_sample_size", data.get("feat_crop_len", 212)) or 0)
    repeat = sampler.get("times_to_repeat_after_resample")
    if repeat:
        size *= int(repeat)
    feat_depth = 0
    n_classes = 0
    if target in ("GPTFeats", "GPTFeatsClass"):
        key = "feat_embedding_config" if "feat_embedding_config" in tparams else None
        emb = (tparams.get(key) or {}).get("params", {}) if key else {}
        feat_depth = int(emb.get("in_channels", data.get("feat_depth", 2048)))
    if target in ("GPTClass", "GPTFeatsClass"):
        emb = (tparams.get("token_embedding_config") or {}).get("params", {})
        n_classes = int(emb.get("num_embeddings", 0))
    kinds = {"GPTFeats": "feature", "GPTClass": "class", "GPTFeatsClass": "feature+class"}
    if target not in kinds:
        raise ValueError(f"unsupported transformer class {target!r}")
    train_target = str(((data.get("train") or {}).get("target")) or "")
    classes: tuple[str, ...] = ()
    if n_classes == len(VAS_CLASSES) and ".vas." in train_target:
        classes = VAS_CLASSES
    return TransformerSpec(
        gpt=gpt,
        kind=kinds[target],
        feat_depth=feat_depth,
        feat_sample_size=size if "feature" in kinds[target] else 0,
        n_classes=n_classes,
        classes=classes,
        grid=grid,
        extra={"authors_target": target, "dataset": train_target},
    )


def _infer_spec(groups: Mapping[str, Mapping[str, torch.Tensor]]) -> TransformerSpec:
    # No project yaml: read the architecture off the tensors.
    gsd = groups["transformer"]
    vocab, d = gsd["tok_emb.weight"].shape
    block = gsd["pos_emb"].shape[1]
    n_layer = len({k.split(".")[1] for k in gsd if k.startswith("blocks.")})
    n_head = 16 if d % 64 == 0 and d >= 1024 else max(1, d // 64)
    feat = gsd.get("embedder.weight", gsd.get("feat_embedder.weight"))
    cls = gsd.get("cls_embedder.weight")
    if feat is not None and feat.dim() == 2 and cls is None:
        kind, feat_depth, n_classes = "class", 0, int(feat.shape[0])
    elif cls is not None:
        kind, feat_depth, n_classes = "feature+class", int(feat.shape[1]), int(cls.shape[0])
    else:
        kind, feat_depth, n_classes = "feature", int(feat.shape[1]), 0
    s = block - 265 if kind == "feature" else (1 if kind == "class" else block - 266)
    return TransformerSpec(
        gpt=GPTConfig(int(vocab), int(block), n_layer, n_head, int(d)),
        kind=kind,
        feat_depth=feat_depth,
        feat_sample_size=max(s, 0) if "feature" in kind else 0,
        n_classes=n_classes,
        extra={"inferred": "no project yaml: n_head guessed from the width"},
    )


def transformer_from_lightning(
    ckpt_path: PathLike, project_yaml: PathLike | None = None
) -> CodeTransformer:
    """An authors' transformer ``.ckpt`` (its codec included), loaded strictly."""
    from audiorep.convert.archive import codebook_config_from_project_yaml, read_project_yaml
    from audiorep.convert.lightning import transformer_state_dict
    from audiorep.models.vqgan import VQGANConfig

    groups = transformer_state_dict(ckpt_path)
    if project_yaml is not None:
        d = read_project_yaml(project_yaml)
        spec = spec_from_project_yaml(d)
        fields_ = codebook_config_from_project_yaml(d)
        names = set(VQGANConfig.__dataclass_fields__)
        vq = VQGANConfig.from_dict({k: v for k, v in fields_.items() if k in names})
    else:
        spec = _infer_spec(groups)
        n_embed, embed_dim = groups["first_stage_model"]["quantize.embedding.weight"].shape
        vq = VQGANConfig.from_dict(
            {**VQGANConfig.vas().to_dict(), "n_embed": int(n_embed), "embed_dim": int(embed_dim)}
        )
    with torch.device("meta"):
        model = CodeTransformer.build(spec, SpectrogramVQGAN(vq))
    sd = {f"{g}.{k}": v for g, part in groups.items() if g for k, v in part.items()}
    try:
        model.load_state_dict(sd, strict=True, assign=True)
    except RuntimeError as e:
        where = (
            f"the architecture in {project_yaml}"
            if project_yaml is not None
            else "the architecture read off the tensors and the released codec shape (no "
            "configs/*-project.yaml given)"
        )
        first = str(e).split("\n\t")[1:3]
        raise ValueError(
            f"{ckpt_path}: weights do not fit {where}: {'; '.join(first)[:400]}"
        ) from None
    return model.eval()


# ---------------------------------------------------------------------- our files


def save_transformer(
    model: CodeTransformer, path: PathLike, info: Mapping[str, Any] | None = None
) -> Path:
    """Write the GPT and token order (not the codec) to ``path`` (``.safetensors``) + ``.json``."""
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("first_stage_model.")}
    spec = model.spec
    if not spec.codec_sha256:
        spec = TransformerSpec.from_dict(
            {**spec.to_dict(), "codec_sha256": state_dict_sha256(model.first_stage_model)}
        )
    return save_model_file(
        path, sd, format=TRANSFORMER_FORMAT, config=spec.to_dict(), info=info or {}
    )


def load_trained_transformer(
    path: PathLike, codec: SpectrogramVQGAN | None = None, device: str | torch.device = "cpu"
) -> tuple[CodeTransformer, dict[str, Any]]:
    """A file from :func:`save_transformer` with its codec (``codec``, else the one its config
    names); raises ValueError if the codec's weights differ from those it was trained with."""
    from audiorep.specvqgan.codec_models import load_codec

    path = Path(path)
    if path.is_dir():
        path = path / "transformer.safetensors"
    sd, info = load_model_file(path, TRANSFORMER_FORMAT)
    spec = TransformerSpec.from_dict(info["config"])
    if codec is None:
        codec, _ = load_codec(spec.codec or "small", device)
    got = state_dict_sha256(codec)
    if spec.codec_sha256 and got != spec.codec_sha256:
        raise ValueError(
            f"{path}: trained with codec {spec.codec or '?'} ({spec.codec_sha256[:12]}), but the "
            f"codec given has weights {got[:12]}; its tokens would mean nothing"
        )
    model = CodeTransformer.build(spec, codec)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("first_stage_model.")]
    if missing or unexpected:
        raise ValueError(f"{path}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    return model.to(device).eval(), info


def load_transformer(
    spec: str | None = "small", device: str | torch.device = "cpu"
) -> tuple[CodeTransformer, str]:
    """``(model in eval mode, a name)`` from ``"small"``, a registry name, an authors' ``.ckpt``
    / logdir / ``.tar.gz``, or our ``.safetensors`` (module docstring)."""
    from audiorep.convert.archive import extract_archive, find_logdir_files

    spec = spec or "small"
    if spec == "small":
        spec = SMALL_TRANSFORMER
    path = Path(spec)
    name = path.name
    if not path.exists():
        from audiorep.weights.registry import REGISTRY

        if spec not in REGISTRY:
            known = sorted(n for n in REGISTRY if "transformer" in n)
            raise FileNotFoundError(
                f"{spec}: no such file, and not a transformer name (small, {', '.join(known)})"
            )
        from audiorep.weights.download import fetch

        name, path = spec, fetch(spec)
    if path.is_dir() and (path / "transformer.safetensors").is_file():
        path = path / "transformer.safetensors"
    if path.suffix == ".safetensors":
        model, _ = load_trained_transformer(path, device=device)
        return model, name
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        dest = path.parent / (path.name.split(".tar")[0] + ".extracted")
        if not dest.is_dir():
            extract_archive(path, dest)
        path = dest
    if path.is_dir():
        files = find_logdir_files(path)
        ckpt = _best_checkpoint(files.checkpoints)
        return transformer_from_lightning(ckpt, files.project_yaml).to(device), name
    if path.suffix == ".ckpt":
        yamls = sorted((path.parent.parent / "configs").glob("*-project.yaml"))
        return transformer_from_lightning(path, yamls[-1] if yamls else None).to(device), name
    raise ValueError(
        f"{path}: not a transformer (expected transformer.safetensors, an authors' .ckpt, "
        "logdir or .tar.gz)"
    )


def _best_checkpoint(paths: Sequence[Path]) -> Path:
    # The authors' sampler takes the first checkpoint by name (epoch_*.ckpt sorts before last).
    named = [p for p in paths if p.name != "last.ckpt"]
    return sorted(named or paths)[0]


__all__ = [
    "SMALL_TRANSFORMER",
    "TRANSFORMER_FORMAT",
    "VAS_CLASSES",
    "CodeTransformer",
    "ColumnMajorPermuter",
    "TransformerSpec",
    "load_trained_transformer",
    "load_transformer",
    "save_transformer",
    "spec_from_project_yaml",
    "transformer_from_lightning",
]
