"""Audio Spectrogram Transformer (Gong et al., Interspeech 2021; YuanGongND/ast), as a tapped model.

The AudioSet-pretrained configuration (``audioset_10_10_0.4593.pth``): a DeiT-base distilled ViT
(timm 0.4.5 ``vit_deit_base_distilled_patch16_384``) on normalised Kaldi fbank input
``(B, 1024, 128)`` (10.24 s, 128 mel bins; :class:`audiorep.frontends.kaldi_fbank.ASTFrontend`):

1. the input is transposed to ``(B, 1, 128 freq, 1024 time)`` and cut into 16x16 patches with
   stride 10 along both axes by a Conv2d(1, 768, 16, stride=10): ``12 x 101 = 1212`` patches,
   ordered frequency-major (index ``f * 101 + t``);
2. a ``cls`` and a distillation token are prepended (1214 tokens) and a learned position
   embedding ``(1, 1214, 768)`` is added (dropout 0 at inference);
3. 12 pre-norm transformer blocks, 768-d, 12 heads of 64, MLP 3072 with exact (erf) GELU,
   LayerNorm eps 1e-6, qkv with bias: ``x += attn(norm1(x)); x += mlp(norm2(x))``;
4. final LayerNorm (eps 1e-6), then the clip embedding ``(cls + dist) / 2`` (768-d);
5. ``mlp_head`` = LayerNorm(768, eps 1e-5) -> Linear(768, 527): logits (AST's output; its
   inference applies a sigmoid).

Other input lengths: AST (and EVAR) rebuild the model with ``input_tdim`` frames and adapt the
AudioSet position embedding: for fewer than 101 time patches it keeps the middle ones
(``50 - t // 2 ...``), otherwise it resizes bilinearly (:func:`adapt_position_embedding`).
AST's original forward runs under CUDA autocast (float16 on GPUs); this implementation runs in
the parameters' dtype. Nothing here has been compared with the original code's outputs (no
golden data exists); see docs/backbones.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from audiorep.models.taps import TappedModel

SAMPLE_RATE = 16000
INPUT_FDIM = 128
INPUT_TDIM = 1024
PATCH_SIZE = 16
STRIDE = 10
EMBED_DIM = 768
DEPTH = 12
NUM_HEADS = 12
MLP_RATIO = 4.0
NUM_CLASSES = 527

#: Tap names in execution order for the default depth of 12.
AST_TAPS = (
    "patch_embed",
    "tokens",
    *(f"block_{i}" for i in range(DEPTH)),
    "norm",
    "embedding",
    "logits",
    "clipwise",
)


def patch_grid(
    input_fdim: int = INPUT_FDIM,
    input_tdim: int = INPUT_TDIM,
    fstride: int = STRIDE,
    tstride: int = STRIDE,
    patch_size: int = PATCH_SIZE,
) -> tuple[int, int]:
    """``(f_dim, t_dim)``: patches along frequency and time (12, 101 for 128 x 1024)."""
    if input_fdim < patch_size or input_tdim < patch_size:
        raise ValueError(f"AST input must be at least {patch_size}x{patch_size} (freq x time)")
    return (input_fdim - patch_size) // fstride + 1, (input_tdim - patch_size) // tstride + 1


class Attention(nn.Module):
    """timm-0.4.5 multi-head self-attention (``qkv`` and ``proj`` with bias)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        # (3, B, heads, N, head_dim): the qkv output is laid out as [q | k | v], each head-major.
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # softmax(q k^T / sqrt(d)) v; the fused kernel computes the same in one pass.
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))  # exact erf GELU, as nn.GELU()


class Block(nn.Module):
    """Pre-norm ViT block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = MLP_RATIO):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """``(B, T, F)`` fbank -> ``(B, f_dim * t_dim, D)`` patch tokens (frequency-major)."""

    def __init__(self, embed_dim: int, patch_size: int, fstride: int, tstride: int):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=(fstride, tstride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1).transpose(2, 3)  # (B, 1, F, T): frequency is the image height
        return self.proj(x).flatten(2).transpose(1, 2)


class _Tokens(nn.Module):
    """Prepend cls and distillation tokens, add the position embedding."""

    def __init__(self, owner: AST):
        super().__init__()
        self._owner = [owner]  # not registered: the parameters live on the model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self._owner[0]
        b = x.shape[0]
        x = torch.cat((m.cls_token.expand(b, -1, -1), m.dist_token.expand(b, -1, -1), x), dim=1)
        return x + m.pos_embed


class _PoolTokens(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, 0] + x[:, 1]) / 2


class _Head(nn.Module):
    def __init__(self, norm: nn.LayerNorm, linear: nn.Linear):
        super().__init__()
        self.norm = norm
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


class _Sigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class AST(TappedModel):
    """Audio Spectrogram Transformer: fbank ``(B, input_tdim, 128)`` -> embedding ``(B, 768)``.

    Args:
        num_classes: classifier outputs (527 for AudioSet).
        input_tdim: input frames; the position embedding is sized for it (1024 for the
            AudioSet checkpoint; adapt it with :func:`adapt_position_embedding`).
        input_fdim, fstride, tstride, patch_size, embed_dim, depth, num_heads, mlp_ratio:
            architecture (defaults: the AudioSet base384 model, fstride = tstride = 10).

    Taps (:meth:`forward_taps`), ``N = 2 + f_dim * t_dim`` tokens (1214 by default):

    * ``patch_embed`` ``(B, N - 2, 768)``; ``tokens`` ``(B, N, 768)`` (with cls, dist and
      position embedding);
    * ``block_0`` ... ``block_11`` ``(B, N, 768)``: each transformer block's output (no norm);
    * ``norm`` ``(B, N, 768)``: the final LayerNorm of the last block;
    * ``embedding`` ``(B, 768)``: ``(cls + dist) / 2`` of ``norm`` (what AST's head and
      EVAR's AR_AST use);
    * ``logits`` ``(B, 527)``: ``mlp_head``; ``clipwise`` ``(B, 527)``: their sigmoid.
    """

    sample_rate = SAMPLE_RATE
    embedding_size = EMBED_DIM
    #: tap holding the clip embedding
    embedding_tap = "embedding"

    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        input_tdim: int = INPUT_TDIM,
        input_fdim: int = INPUT_FDIM,
        fstride: int = STRIDE,
        tstride: int = STRIDE,
        patch_size: int = PATCH_SIZE,
        embed_dim: int = EMBED_DIM,
        depth: int = DEPTH,
        num_heads: int = NUM_HEADS,
        mlp_ratio: float = MLP_RATIO,
    ):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.num_classes = num_classes
        self.input_tdim = input_tdim
        self.input_fdim = input_fdim
        self.embedding_size = embed_dim
        self.grid = patch_grid(input_fdim, input_tdim, fstride, tstride, patch_size)
        num_patches = self.grid[0] * self.grid[1]
        self.patch_embed = PatchEmbed(embed_dim, patch_size, fstride, tstride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 2, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_norm = nn.LayerNorm(embed_dim)  # mlp_head.0 (default eps 1e-5)
        self.head = nn.Linear(embed_dim, num_classes)  # mlp_head.1

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def stages(self) -> Iterable[tuple[str, nn.Module]]:
        yield "patch_embed", self.patch_embed
        yield "tokens", _Tokens(self)
        for i, block in enumerate(self.blocks):
            yield f"block_{i}", block
        yield "norm", self.norm
        yield "embedding", _PoolTokens()
        yield "logits", _Head(self.head_norm, self.head)
        yield "clipwise", _Sigmoid()

    def pool_layer(self, block_output: torch.Tensor) -> torch.Tensor:
        """AST-Fusion's per-layer feature: the final LayerNorm applied to a block's output
        ``(B, N, D)``, then ``(cls + dist) / 2`` -> ``(B, D)`` (EVAR's ``AR_AST_Fusion``)."""
        x = self.norm(block_output)
        return (x[:, 0] + x[:, 1]) / 2

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.input_tdim, self.input_fdim):
            raise ValueError(
                f"AST expects normalised fbank of shape (B, {self.input_tdim}, "
                f"{self.input_fdim}) (frames x mel bins), got {tuple(x.shape)}; use "
                f"ASTFrontend(target_length={self.input_tdim}) or build the model with "
                "another input_tdim"
            )
        return x.to(self.head.weight.dtype)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """Clip embeddings ``(B, 768)``: ``(cls + dist) / 2`` after the final LayerNorm."""
        return self.forward_taps(fbank, "embedding")["embedding"]


def adapt_position_embedding(
    pos_embed: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """Resize a position embedding ``(1, 2 + f * t, D)`` to another patch grid, as AST does.

    AST's rule for its AudioSet model (``audioset_pretrain=True``) on the time axis: keep the
    middle ``t'`` columns when ``t' < t`` (columns ``t // 2 - t' // 2 ...``), otherwise resize
    bilinearly (``align_corners=False``); the frequency axis is treated the same way. The two
    token embeddings are kept.
    """
    (f, t), (nf, nt) = grid, new_grid
    if (f, t) == (nf, nt):
        return pos_embed
    d = pos_embed.shape[-1]
    if pos_embed.shape[1] != 2 + f * t:
        raise ValueError(
            f"position embedding has {pos_embed.shape[1]} tokens, expected {2 + f * t}"
        )
    grid_embed = pos_embed[:, 2:].transpose(1, 2).reshape(1, d, f, t)
    if nt < t:
        start = t // 2 - nt // 2
        grid_embed = grid_embed[:, :, :, start : start + nt]
    elif nt > t:
        grid_embed = nn.functional.interpolate(grid_embed, size=(f, nt), mode="bilinear")
    if nf < f:
        start = f // 2 - nf // 2
        grid_embed = grid_embed[:, :, start : start + nf, :]
    elif nf > f:
        grid_embed = nn.functional.interpolate(grid_embed, size=(nf, nt), mode="bilinear")
    grid_embed = grid_embed.reshape(1, d, nf * nt).transpose(1, 2)
    return torch.cat((pos_embed[:, :2], grid_embed), dim=1).contiguous()


def _shape_model(**kwargs: Any) -> AST:
    """An AST whose tensors are only shapes (meta device): no random init cost."""
    with torch.device("meta"):
        return AST(**kwargs)


def seeded_random_state_dict(seed: int = 0, **config: Any) -> dict[str, torch.Tensor]:
    """Random AST weights from ``torch.Generator(seed)`` for tests, demos and benchmarks.

    ``config``: :class:`AST` constructor arguments (default: the AudioSet model). Matrices,
    tokens and position embedding ``0.02 * N(0, 1)`` (timm's init scale); the patch
    projection ``N(0, 1) / sqrt(256)``; biases ``0.02 * N(0, 1)``; LayerNorm weights
    ``1 + 0.1 * N(0, 1)``, biases ``0.1 * N(0, 1)``. Meaningless as features.
    """
    gen = torch.Generator().manual_seed(int(seed))
    model = _shape_model(**config)
    out: dict[str, torch.Tensor] = {}
    norms = {name for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    for name, p in model.state_dict().items():
        module, _, leaf = name.rpartition(".")
        x = torch.randn(p.shape, generator=gen)
        if module in norms:
            out[name] = 1.0 + 0.1 * x if leaf == "weight" else 0.1 * x
        elif name == "patch_embed.proj.weight":
            out[name] = x / math.sqrt(x[0].numel())
        else:
            out[name] = 0.02 * x
    return out
