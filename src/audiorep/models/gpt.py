"""SpecVQGAN's code transformer: a minGPT-style decoder with a conditioning prefix and a KV cache.

The layout and ``state_dict`` keys are the authors' (specs: SpecVQGAN §3.2), so their checkpoints
load strictly: ``tok_emb.weight`` (V, d), ``pos_emb`` (1, block, d), ``blocks.<i>.ln1|ln2``,
``blocks.<i>.attn.mask`` (1, 1, block, block) lower-triangular buffer, ``blocks.<i>.attn.key|
query|value|proj``, ``blocks.<i>.mlp.0|2`` (d -> 4d -> d, exact-erf GELU), ``ln_f`` and a
bias-free ``head``. The condition is embedded and prepended: a sequence is ``[S condition
positions, T code tokens]``, and position embeddings are added to both.

The three variants differ only in how the condition becomes ``(B, S, d)`` embeddings:

* :class:`GPTFeats`: ``embedder`` = Conv1d(feat_depth, d, 1) over (B, feat_depth, S) features;
* :class:`GPTClass`: ``embedder`` = Embedding(n_classes, d) over a (B, 1) class index (S = 1);
* :class:`GPTFeatsClass`: ``feat_embedder`` and ``cls_embedder``; the class token follows the
  feature positions (S = frames + 1).

Unlike the authors' code, :meth:`GPT.forward` can keep keys and values in a :class:`KVCache`, so a
sampler feeds one token per step instead of re-running the whole sequence; the arithmetic per
position is the same (a row of causal attention only ever sees earlier positions).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

Condition = torch.Tensor | Mapping[str, torch.Tensor] | None


@dataclass(frozen=True)
class GPTConfig:
    """The authors' ``GPT_config`` (their transformer configs, e.g. VAS: vocab 128, block 477,
    24 layers, 16 heads, width 1024; dropouts default to 0)."""

    vocab_size: int
    block_size: int
    n_layer: int = 12
    n_head: int = 8
    n_embd: int = 256
    embd_pdrop: float = 0.0
    resid_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    n_unmasked: int = 0

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GPT {name} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GPTConfig:
        """From a plain mapping (our JSON, or the authors' ``GPT_config`` params); unknown keys
        are an error, so a typo does not silently fall back to a default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown GPT config keys: {', '.join(unknown)}")
        return cls(**dict(d))


class KVCache:
    """Keys and values of every block for the positions seen so far.

    Preallocated ``(B, H, capacity, head_dim)`` per block, so a step writes in place rather than
    concatenating. ``length`` is the number of positions stored.
    """

    def __init__(
        self,
        n_layer: int,
        batch: int,
        n_head: int,
        head_dim: int,
        capacity: int,
        device: torch.device,
        dtype: torch.dtype,
    ):
        shape = (batch, n_head, capacity, head_dim)
        self.keys = [torch.empty(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.values = [torch.empty(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.capacity = capacity
        self.length = 0

    def append(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``(B, H, T, hd)`` keys/values after the current ``length``; returns every stored
        key/value of ``layer`` including these. The caller advances ``length`` once per forward."""
        start, stop = self.length, self.length + k.shape[2]
        if stop > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions; {stop} requested")
        self.keys[layer][:, :, start:stop] = k
        self.values[layer][:, :, start:stop] = v
        return self.keys[layer][:, :, :stop], self.values[layer][:, :, :stop]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate key/query/value projections."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        d = config.n_embd
        self.key = nn.Linear(d, d)
        self.query = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.proj = nn.Linear(d, d)
        mask = torch.tril(torch.ones(config.block_size, config.block_size))
        if config.n_unmasked:
            mask[: config.n_unmasked, : config.n_unmasked] = 1
        # Part of the authors' checkpoints, so it is a persistent buffer.
        self.register_buffer("mask", mask.view(1, 1, config.block_size, config.block_size))
        self.n_head = config.n_head

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        return x.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        *,
        cache: KVCache | None = None,
        layer: int = 0,
        need_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (B, T, d) at positions ``past .. past+T-1`` -> ((B, T, d), attention
        (B, H, T, past+T) or None)."""
        b, t, c = x.shape
        past = cache.length if cache is not None else 0
        k, q, v = self._heads(self.key(x)), self._heads(self.query(x)), self._heads(self.value(x))
        if cache is not None:
            k, v = cache.append(layer, k, v)
        total = past + t
        mask = self.mask[:, :, past:total, :total]
        dropout = self.attn_drop.p if self.training else 0.0
        if need_attention or (self.training and dropout > 0):
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
            att = att.masked_fill(mask == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = self.attn_drop(att) @ v
        else:
            att = None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask != 0)
        y = y.transpose(1, 2).reshape(b, t, c)
        return self.resid_drop(self.proj(y)), att


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln1 x)``, then ``x + mlp(ln2 x)``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        d = config.n_embd
        self.ln1 = nn.LayerNorm(d)
        self.ln2 = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(config)
        self.mlp = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(config.resid_pdrop)
        )

    def forward(
        self,
        x: torch.Tensor,
        *,
        cache: KVCache | None = None,
        layer: int = 0,
        need_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, att = self.attn(self.ln1(x), cache=cache, layer=layer, need_attention=need_attention)
        x = x + y
        return x + self.mlp(self.ln2(x)), att


class GPT(nn.Module):
    """minGPT over code tokens with an optional prefix of condition embeddings."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        d = config.n_embd
        self.tok_emb = nn.Embedding(config.vocab_size, d)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, d))
        self.drop = nn.Dropout(config.embd_pdrop)
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size, bias=False)
        self.apply(_init_weights)

    @property
    def block_size(self) -> int:
        return self.config.block_size

    def embed_condition(self, condition: Condition) -> torch.Tensor | None:
        """``(B, S, d)`` condition embeddings; the plain GPT takes them as they are."""
        return condition  # type: ignore[return-value]

    def condition_length(self, condition: Condition) -> int:
        """S, the number of positions the condition occupies."""
        emb = self.embed_condition(condition)
        return 0 if emb is None else int(emb.shape[1])

    def new_cache(self, batch: int, capacity: int | None = None) -> KVCache:
        """An empty cache for ``batch`` sequences of ``capacity`` (default: block) positions."""
        p = self.pos_emb
        c = self.config
        return KVCache(
            c.n_layer, batch, c.n_head, c.n_embd // c.n_head, capacity or c.block_size,
            p.device, p.dtype,
        )  # fmt: skip

    def forward(
        self,
        idx: torch.Tensor,
        condition: Condition = None,
        *,
        cache: KVCache | None = None,
        need_attention: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits of every fed position.

        Args:
            idx: (B, T) int64 code tokens.
            condition: embedded and prepended (S positions); pass it only on the first call
                of a cached sequence.
            cache: keys/values of the positions already fed; this call's positions continue it
                and are appended.
            need_attention: return the last block's attention weights.

        Returns:
            ``(logits (B, S + T, vocab), attention (B, H, S + T, past + S + T) or None)``.
        """
        x = self.tok_emb(idx)
        emb = self.embed_condition(condition) if condition is not None else None
        if emb is not None:
            x = torch.cat([emb.to(x.dtype), x], dim=1)
        past = cache.length if cache is not None else 0
        total = past + x.shape[1]
        if total > self.config.block_size:
            raise ValueError(
                f"sequence of {total} positions exceeds the model's block size "
                f"{self.config.block_size}"
            )
        x = self.drop(x + self.pos_emb[:, past:total])
        att = None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x, att = block(x, cache=cache, layer=i, need_attention=need_attention and i == last)
        if cache is not None:
            cache.length = total
        return self.head(self.ln_f(x)), att


def _init_weights(module: nn.Module) -> None:
    # minGPT's initialisation (embedders created after it keep PyTorch's defaults).
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)


class GPTFeats(GPT):
    """Conditioned on (B, feat_depth, S) visual features through a 1x1 Conv1d."""

    def __init__(self, config: GPTConfig, feat_depth: int = 2048):
        super().__init__(config)
        self.embedder = nn.Conv1d(feat_depth, config.n_embd, kernel_size=1)

    def embed_condition(self, condition: Condition) -> torch.Tensor | None:
        if condition is None:
            return None
        feats = _tensor(condition, "feature")
        if feats.dim() != 3 or feats.shape[1] != self.embedder.in_channels:
            raise ValueError(
                f"expected features (B, {self.embedder.in_channels}, S), got {tuple(feats.shape)}"
            )
        return self.embedder(feats.to(self.embedder.weight.dtype)).permute(0, 2, 1)


class GPTClass(GPT):
    """Conditioned on a (B, 1) class index through an Embedding (one prefix position)."""

    def __init__(self, config: GPTConfig, n_classes: int):
        super().__init__(config)
        self.embedder = nn.Embedding(n_classes, config.n_embd)

    def embed_condition(self, condition: Condition) -> torch.Tensor | None:
        if condition is None:
            return None
        return _class_embedding(self.embedder, _tensor(condition, "target"))


class GPTFeatsClass(GPT):
    """Feature positions followed by one class position."""

    def __init__(self, config: GPTConfig, feat_depth: int, n_classes: int):
        super().__init__(config)
        self.feat_embedder = nn.Conv1d(feat_depth, config.n_embd, kernel_size=1)
        self.cls_embedder = nn.Embedding(n_classes, config.n_embd)

    def embed_condition(self, condition: Condition) -> torch.Tensor | None:
        if condition is None:
            return None
        if not isinstance(condition, Mapping):
            raise TypeError("GPTFeatsClass takes {'feature': (B, D, S), 'target': (B, 1)}")
        feats = condition["feature"]
        if feats.dim() != 3 or feats.shape[1] != self.feat_embedder.in_channels:
            raise ValueError(
                f"expected features (B, {self.feat_embedder.in_channels}, S), got "
                f"{tuple(feats.shape)}"
            )
        feats = feats.to(self.feat_embedder.weight.dtype)
        token = _class_embedding(self.cls_embedder, condition["target"])
        return torch.cat([self.feat_embedder(feats).permute(0, 2, 1), token], dim=1)


def _tensor(condition: Condition, key: str) -> torch.Tensor:
    if isinstance(condition, Mapping):
        return condition[key]
    assert condition is not None
    return condition


def _class_embedding(embedder: nn.Embedding, target: torch.Tensor) -> torch.Tensor:
    target = torch.as_tensor(target, dtype=torch.long, device=embedder.weight.device)
    if target.dim() == 1:
        target = target[:, None]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= embedder.num_embeddings):
        raise ValueError(
            f"class index out of range [0, {embedder.num_embeddings}): {target.flatten().tolist()}"
        )
    return embedder(target)


def build_gpt(
    config: GPTConfig, feat_depth: int | None = 2048, n_classes: int | None = None
) -> GPT:
    """The variant that ``feat_depth`` / ``n_classes`` select (both: :class:`GPTFeatsClass`)."""
    if feat_depth and n_classes:
        return GPTFeatsClass(config, feat_depth, n_classes)
    if n_classes:
        return GPTClass(config, n_classes)
    if feat_depth:
        return GPTFeats(config, feat_depth)
    return GPT(config)


def gpt_state_dict_shapes(
    config: GPTConfig, feat_depth: int | None = 2048, n_classes: int | None = None
) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a GPT's ``state_dict`` in order (without the ``transformer.``
    prefix); built on the meta device, so even the 300 M-parameter model costs no memory."""
    with torch.device("meta"):
        model = build_gpt(config, feat_depth, n_classes)
    return [(name, tuple(t.shape)) for name, t in model.state_dict().items()]


def seeded_random_state_dict(
    config: GPTConfig,
    feat_depth: int | None = 2048,
    n_classes: int | None = None,
    seed: int = 20261124,
) -> dict[str, torch.Tensor]:
    """GPT weights of the fixtures' recipe v1 (tests/fixtures/specvqgan_transformer/README.md).

    One ``numpy.random.RandomState(seed)`` walks the state dict in order: ``pos_emb`` and
    ``tok_emb.weight`` ``N(0, 1) * 0.02``; attention masks lower-triangular (no draw); biases 0
    and other 1-d weights 1 (no draw); every other tensor ``N(0, 1) * sqrt(2 / prod(shape[1:]))``;
    drawn in float64, cast to float32. For tests and benchmarks: the outputs mean nothing.
    """
    import numpy as np

    from audiorep.models.vggishish import recipe_round2_state_dict

    shapes = gpt_state_dict_shapes(config, feat_depth, n_classes)
    masks = {n: np.tril(np.ones(s[-2:])).reshape(s) for n, s in shapes if n.endswith("attn.mask")}
    drawn = {
        n: (lambda rs, shape: rs.standard_normal(shape) * 0.02)
        for n in ("tok_emb.weight", "pos_emb")
    }
    return recipe_round2_state_dict(shapes, seed, fixed=masks, drawn=drawn)


__all__ = [
    "Block",
    "CausalSelfAttention",
    "GPT",
    "GPTClass",
    "GPTConfig",
    "GPTFeats",
    "GPTFeatsClass",
    "KVCache",
    "build_gpt",
    "gpt_state_dict_shapes",
    "seeded_random_state_dict",
]
