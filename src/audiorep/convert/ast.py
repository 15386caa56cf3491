"""AST weights: map the AudioSet checkpoint (timm-style keys) or its HF copy onto :class:`AST`.

Formats understood (detected from the key names):

* the original ``audioset_10_10_0.4593.pth`` (YuanGongND/ast; a ``torch.save`` of the
  ``DataParallel``-wrapped ``ASTModel.state_dict()``): ``module.v.cls_token``,
  ``module.v.dist_token``, ``module.v.pos_embed`` ``(1, 1214, 768)``,
  ``module.v.patch_embed.proj.{weight,bias}``, ``module.v.blocks.{i}.{norm1,attn.qkv,attn.proj,
  norm2,mlp.fc1,mlp.fc2}.*``, ``module.v.norm.*``, ``module.mlp_head.{0,1}.*``. Mapping: drop
  ``module.v.`` / ``module.``; ``mlp_head.0`` -> ``head_norm``, ``mlp_head.1`` -> ``head``;
  the DeiT ImageNet heads ``v.head.*`` / ``v.head_dist.*`` (unused by AST) are dropped;
* Hugging Face ``MIT/ast-finetuned-audioset-10-10-0.4593`` (``ASTForAudioClassification``):
  ``audio_spectrogram_transformer.embeddings.{cls_token,distillation_token,position_embeddings,
  patch_embeddings.projection.*}``, ``...encoder.layer.{i}.attention.attention.{query,key,
  value}.*`` (concatenated into ``attn.qkv`` in q, k, v order), ``attention.output.dense`` ->
  ``attn.proj``, ``intermediate.dense`` -> ``mlp.fc1``, ``output.dense`` -> ``mlp.fc2``,
  ``layernorm_before/after`` -> ``norm1/2``, ``...layernorm`` -> ``norm``,
  ``classifier.{layernorm,dense}`` -> ``head_norm`` / ``head``. (That port's LayerNorm eps is
  1e-12 instead of 1e-6; audiorep keeps the original's eps.);
* audiorep's own names (a converted ``.safetensors``).

``input_tdim`` other than 1024 adapts the position embedding with AST's rule
(:func:`audiorep.models.ast.adapt_position_embedding`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import torch

from audiorep.convert._checks import check_state_shapes
from audiorep.convert.readers import WeightsFormatError, read_state_dict, write_state_dict
from audiorep.models.ast import INPUT_TDIM, _shape_model, adapt_position_embedding, patch_grid

PathLike = Union[str, "os.PathLike[str]"]

#: ``format`` value in the metadata of converted files.
FORMAT = "audiorep.ast"
_HF_PREFIX = "audio_spectrogram_transformer."
_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_HF_LAYER_MAP = {
    "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
}
_HF_TOP_MAP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.distillation_token": "dist_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def _from_original(sd: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in sd.items():
        k = key[len("module.") :] if key.startswith("module.") else key
        if k.startswith(("v.head.", "v.head_dist.")):
            continue  # DeiT's ImageNet classifier heads: never used by AST
        if k.startswith("v."):
            out[k[2:]] = value
        elif k.startswith("mlp_head.0."):
            out["head_norm." + k[len("mlp_head.0.") :]] = value
        elif k.startswith("mlp_head.1."):
            out["head." + k[len("mlp_head.1.") :]] = value
        else:
            out[k] = value  # reported as unexpected by the shape check
    return out


def _from_hf(sd: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    qkv: dict[tuple[int, str], dict[str, Any]] = {}
    for key, value in sd.items():
        if key.startswith("classifier."):
            rest = key[len("classifier.") :]
            if rest.startswith("layernorm."):
                out["head_norm." + rest[len("layernorm.") :]] = value
            elif rest.startswith("dense."):
                out["head." + rest[len("dense.") :]] = value
            else:
                out[key] = value
            continue
        k = key[len(_HF_PREFIX) :] if key.startswith(_HF_PREFIX) else key
        if k in _HF_TOP_MAP:
            out[_HF_TOP_MAP[k]] = value
            continue
        m = _HF_LAYER.match(k)
        if not m:
            out[key] = value
            continue
        i, rest = int(m.group(1)), m.group(2)
        qkv_match = re.match(r"^attention\.attention\.(query|key|value)\.(weight|bias)$", rest)
        if qkv_match:
            qkv.setdefault((i, qkv_match.group(2)), {})[qkv_match.group(1)] = value
            continue
        module, _, leaf = rest.rpartition(".")
        if module in _HF_LAYER_MAP:
            out[f"blocks.{i}.{_HF_LAYER_MAP[module]}.{leaf}"] = value
        else:
            out[key] = value
    for (i, leaf), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise ValueError(f"layer {i}: incomplete query/key/value {leaf}s")
        # timm's fused qkv output is [q | k | v]; HF splits exactly along that axis.
        out[f"blocks.{i}.attn.qkv.{leaf}"] = torch.cat(
            [torch.as_tensor(parts[n]) for n in ("query", "key", "value")], dim=0
        )
    return out


def ast_to_state_dict(
    sd: Mapping[str, Any], input_tdim: int | None = None
) -> dict[str, torch.Tensor]:
    """Map an AST checkpoint (original or Hugging Face layout) onto :class:`AST`.

    Args:
        sd: the checkpoint's tensors.
        input_tdim: input frames of the model to build; the checkpoint's position embedding
            is adapted when its grid differs. ``None``: keep the checkpoint's own grid (1024
            frames for the AudioSet model).

    Returns:
        float32 CPU tensors named as ``AST(num_classes, input_tdim).state_dict()``; the class
        count, width, depth and MLP size come from the tensors (build the model with the
        same ``embed_dim``/``depth``; the AudioSet file uses the defaults).

    Raises:
        ValueError: listing missing, unexpected or mis-shaped keys.
    """
    keys = list(sd)
    if any(k.startswith((_HF_PREFIX, "classifier.")) for k in keys):
        mapped = _from_hf(sd)
    else:
        mapped = _from_original(sd)
    head = mapped.get("head.weight")
    pos = mapped.get("pos_embed")
    if head is None or pos is None:
        raise ValueError("no AST classifier head or position embedding found; is this an AST file?")
    num_classes = int(head.shape[0])
    # The checkpoint's own grid: the AudioSet model is 128 x 1024 -> 12 x 101 patches.
    src_patches = int(pos.shape[1]) - 2
    f_dim = patch_grid(input_tdim=INPUT_TDIM)[0]
    if src_patches % f_dim:
        raise ValueError(f"pos_embed has {src_patches} patch positions, not a multiple of {f_dim}")
    src_grid = (f_dim, src_patches // f_dim)
    if input_tdim is None:  # the smallest frame count giving the checkpoint's time patches
        input_tdim = (src_grid[1] - 1) * 10 + 16
    new_grid = patch_grid(input_tdim=input_tdim)
    mapped["pos_embed"] = adapt_position_embedding(
        torch.as_tensor(pos).detach().float(), src_grid, new_grid
    )
    # Architecture from the tensors (the AudioSet file is the default 768-d, 12-block model);
    # the head count does not show in any shape, so 1 stands in for building the shapes.
    embed_dim = int(pos.shape[-1])
    depth = 1 + max((int(m.group(1)) for m in map(_BLOCK.match, mapped) if m), default=-1)
    fc1 = mapped.get("blocks.0.mlp.fc1.weight")
    ratio = int(fc1.shape[0]) / embed_dim if fc1 is not None else 4.0
    reference = _shape_model(
        num_classes=num_classes,
        input_tdim=input_tdim,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=1,
        mlp_ratio=ratio,
    )
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    check_state_shapes(mapped, expected, "AST")
    out: dict[str, torch.Tensor] = {}
    for key in expected:
        v = torch.as_tensor(mapped[key]).detach().cpu()
        if not v.is_floating_point():
            raise ValueError(f"{key}: expected floating-point values, got {v.dtype}")
        out[key] = v.to(torch.float32).contiguous()
    return out


def load_ast_weights(path: PathLike, input_tdim: int | None = None) -> dict[str, torch.Tensor]:
    """Read an AST checkpoint (``.pth`` via ``torch.load(weights_only=True)``, or
    ``.safetensors``) -> :class:`AST` state dict for ``input_tdim`` frames (``None``: the
    checkpoint's own, 1024 for the AudioSet model).

    Raises:
        FileNotFoundError, WeightsFormatError (naming the file and what was wrong).
    """
    tensors = read_state_dict(path)
    try:
        return ast_to_state_dict(tensors, input_tdim)
    except ValueError as e:
        raise WeightsFormatError(f"{path}: {e}") from e


def convert(src: PathLike, dst: PathLike) -> Path:
    """Convert an AST checkpoint to an audiorep ``.safetensors`` (its own input size, atomic)."""
    sd = load_ast_weights(src)
    return write_state_dict(dst, sd, fmt=FORMAT, source=Path(src).name)
