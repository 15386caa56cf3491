"""SpecVQGAN's spectrogram VQGAN codec ("codebook"): encoder, vector quantiser, decoder.

Iashin & Rahtu, "Taming Visually Guided Sound Generation" (BMVC 2021), stage 1: a
fully convolutional autoencoder with a vector-quantised bottleneck over log-mel spectrograms
(the taming-transformers "diffusionmodules" encoder/decoder, used without diffusion or
timestep embeddings).

Shapes for the VAS / VGGSound configuration (:meth:`VQGANConfig.vas`, ``ch 128``,
``ch_mult (1, 1, 2, 2, 4)``):

* input ``x``: ``(B, 1, 80, W)`` (or ``(B, 80, W)``), the authors' mel ``S`` in ``[0, 1]``
  mapped to ``2 S - 1`` in ``[-1, 1]``; ``W = 848`` frames (9.85 s at 22.05 kHz, hop 256)
  in training, any ``W >= 16`` works;
* encoder: ``conv_in`` then five levels of ``num_res_blocks`` residual blocks (widths 128,
  128, 256, 256, 512); levels 0-3 end with a stride-2 downsample, so 80 x 848 -> 5 x 53 and
  in general ``H x W -> floor(H/16) x floor(W/16)``; self-attention after each block of a
  level whose *tracked time resolution* (``config.resolution`` halved per level: 848, 424,
  212, 106, 53) is in ``attn_resolutions`` (only level 4 here); a middle block (res, attn,
  res); ``norm_out``, swish, ``conv_out`` to ``z_channels``;
* ``quant_conv`` (1x1) -> :class:`VectorQuantizer` (``n_embed`` entries of ``embed_dim``)
  -> ``post_quant_conv`` (1x1);
* decoder: the mirror image with ``num_res_blocks + 1`` blocks per level, nearest x2
  upsampling + conv; output ``(B, 1, 16 floor(H/16), 16 floor(W/16))``, unbounded (no output
  activation).

Every module and parameter name is the authors' (``encoder.down.{i}.block.{j}.norm1.weight``,
``decoder.up.{i}.upsample.conv.bias``, ``quantize.embedding.weight``, ...), in their
``state_dict`` order: the VAS configuration has exactly their 343 tensors (71,907,713 values),
so the non-``loss.*`` part of a codebook checkpoint loads unchanged
(:meth:`SpectrogramVQGAN.load_authors_state_dict`).

Codes: :meth:`SpectrogramVQGAN.encode_to_codes` gives ``(B, H', W')`` indices, row = mel band
(low to high), column = time; the quantiser's flat order is raster ``h * W' + w``. The
transformer reads them column-major (:func:`to_column_major`). ``bits_per_code`` is
``ceil(log2 n_embed)``: 7 bits (VAS) / 10 bits (VGGSound) per code, 265 codes per 9.85 s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Seed of the fixtures' codebook weights (recipe v1).
RECIPE_SEED = 20261123
#: Weight of the codebook term of the VQ loss (hard-coded by the authors).
BETA = 0.25
#: GroupNorm of the taming blocks: 32 groups, eps 1e-6, affine.
GROUPS = 32
GN_EPS = 1e-6
#: Keys of a codebook checkpoint that belong to the training loss (LPAPS, discriminator).
LOSS_PREFIX = "loss."


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class VQGANConfig:
    """Architecture of the codec (the authors' ``ddconfig`` + ``n_embed`` / ``embed_dim``).

    ``resolution`` is the *time* width the attention placement is computed from (the encoder
    halves it per level, the decoder starts at ``resolution // 2**(levels-1)``); it does not
    constrain the input width. ``double_z`` is always false in SpecVQGAN and not modelled.
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (53,)
    z_channels: int = 256
    embed_dim: int = 256
    n_embed: int = 128
    resolution: int = 848
    in_channels: int = 1
    out_ch: int = 1
    dropout: float = 0.0

    def __post_init__(self) -> None:
        # lists (JSON, YAML) become tuples so the config stays hashable and comparable
        object.__setattr__(self, "ch_mult", tuple(int(m) for m in self.ch_mult))
        object.__setattr__(self, "attn_resolutions", tuple(int(r) for r in self.attn_resolutions))
        positive = ("ch", "num_res_blocks", "z_channels", "embed_dim", "resolution",
                    "in_channels", "out_ch")  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VQGANConfig.{name} must be a positive integer, got {value!r}")
        if isinstance(self.n_embed, bool) or not isinstance(self.n_embed, int) or self.n_embed < 2:
            raise ValueError(f"VQGANConfig.n_embed must be an integer >= 2, got {self.n_embed!r}")
        if not self.ch_mult or any(m < 1 for m in self.ch_mult):
            raise ValueError(
                f"VQGANConfig.ch_mult must be a non-empty tuple of positive integers, "
                f"got {self.ch_mult!r}"
            )
        # every normalised width is ch * m (and ch itself: the first block's input)
        if self.ch % GROUPS:
            raise ValueError(
                f"VQGANConfig.ch = {self.ch}: GroupNorm uses {GROUPS} groups, so ch must be a "
                f"multiple of {GROUPS}"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"VQGANConfig.dropout must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def vas(cls) -> VQGANConfig:
        """``configs/vas_codebook.yaml``: 128 codes."""
        return cls(n_embed=128)

    @classmethod
    def vggsound(cls) -> VQGANConfig:
        """``configs/vggsound_codebook.yaml``: 1024 codes."""
        return cls(n_embed=1024)

    @property
    def num_levels(self) -> int:
        return len(self.ch_mult)

    @property
    def downsampling(self) -> int:
        """Input pixels per latent cell along each axis (16 for five levels)."""
        return 2 ** (self.num_levels - 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples as lists)."""
        d = asdict(self)
        d["ch_mult"] = list(self.ch_mult)
        d["attn_resolutions"] = list(self.attn_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VQGANConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"VQGANConfig: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**dict(d))


# ----------------------------------------------------------------------------- blocks


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=GROUPS, num_channels=channels, eps=GN_EPS, affine=True)


def _swish(x: torch.Tensor) -> torch.Tensor:
    # x * sigmoid(x); silu is the same function in one op (less activation memory in training)
    return F.silu(x)


class ResnetBlock(nn.Module):
    """GN -> swish -> conv3x3 -> GN -> swish -> dropout -> conv3x3, plus the input (through a
    1x1 ``nin_shortcut`` when the width changes). No timestep embedding."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all ``H * W`` positions (1x1 q, k, v, ``proj_out``;
    scores scaled by ``C**-0.5``), added to the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        b, c, hh, ww = x.shape
        q = self.q(h).reshape(b, c, hh * ww).transpose(1, 2)  # (B, N, C)
        k = self.k(h).reshape(b, c, hh * ww)  # (B, C, N)
        v = self.v(h).reshape(b, c, hh * ww)  # (B, C, N)
        weights = torch.softmax(torch.bmm(q, k) * (int(c) ** -0.5), dim=2)  # (B, Nq, Nk)
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then conv3x3 stride 2 without padding:
    ``n -> floor(n / 2)`` along each axis."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then conv3x3."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (residual blocks), ``attn`` (empty or one per block),
    optionally ``downsample`` / ``upsample``: the authors' ``down.{i}`` / ``up.{i}``."""

    def __init__(self, widths: list[tuple[int, int]], attention: bool, dropout: float):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(i, o, dropout) for i, o in widths)
        self.attn = nn.ModuleList(AttnBlock(o) for _, o in widths) if attention else nn.ModuleList()

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[j](h)
        return h


class _Mid(nn.Module):
    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    """``(B, in_channels, H, W) -> (B, z_channels, floor(H/16), floor(W/16))`` (5 levels)."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        cfg = config
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, 1, 1)
        res = cfg.resolution
        in_mult = (1, *cfg.ch_mult)
        self.down = nn.ModuleList()
        for lvl, mult in enumerate(cfg.ch_mult):
            cin, cout = cfg.ch * in_mult[lvl], cfg.ch * mult
            widths = [(cin if j == 0 else cout, cout) for j in range(cfg.num_res_blocks)]
            level = _Level(widths, res in cfg.attn_resolutions, cfg.dropout)
            if lvl != cfg.num_levels - 1:
                level.downsample = Downsample(cout)
                res //= 2
            self.down.append(level)
        width = cfg.ch * cfg.ch_mult[-1]
        self.mid = _Mid(width, cfg.dropout)
        self.norm_out = _norm(width)
        self.conv_out = nn.Conv2d(width, cfg.z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level.run_blocks(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(_swish(self.norm_out(h)))


class Decoder(nn.Module):
    """``(B, z_channels, h, w) -> (B, out_ch, 16 h, 16 w)`` (5 levels); ``up.0`` is the
    finest level, built last (the authors' order)."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        cfg = config
        width = cfg.ch * cfg.ch_mult[-1]
        res = cfg.resolution // 2 ** (cfg.num_levels - 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, width, 3, 1, 1)
        self.mid = _Mid(width, cfg.dropout)
        levels: list[_Level | None] = [None] * cfg.num_levels
        cin = width
        for lvl in reversed(range(cfg.num_levels)):
            cout = cfg.ch * cfg.ch_mult[lvl]
            widths = [(cin if j == 0 else cout, cout) for j in range(cfg.num_res_blocks + 1)]
            level = _Level(widths, res in cfg.attn_resolutions, cfg.dropout)
            cin = cout
            if lvl != 0:
                level.upsample = Upsample(cout)
                res *= 2
            levels[lvl] = level
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(cin)
        self.conv_out = nn.Conv2d(cin, cfg.out_ch, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level.run_blocks(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


# ----------------------------------------------------------------------------- quantiser


class VectorQuantizer(nn.Module):
    """Nearest-neighbour vector quantiser with a straight-through estimator (VQ-VAE, as
    taming-transformers / SpecVQGAN implement it).

    ``embedding.weight`` ``(n_embed, embed_dim)`` is the codebook, initialised
    ``U(-1/n_embed, 1/n_embed)`` as the authors'. No EMA, restarts or normalisation.

    Distances for the argmin are computed in **float64**: the entries are tiny
    (``|e| ~ 1/n_embed``) next to ``|z|^2 ~ 200``, so the best and second-best squared
    distances differ by as little as 6e-5 on real inputs, close to float32's resolution at that
    magnitude (1.5e-5); a float32 ``|z|^2 + |e|^2 - 2 z.e`` would then pick codes by rounding
    noise, differently per kernel and batch size. In float64 the reference codes are reproduced
    exactly. The argmin is not differentiable, so this costs no backward memory.
    """

    def __init__(self, n_embed: int, embed_dim: int, beta: float = BETA):
        super().__init__()
        self.n_embed, self.embed_dim, self.beta = int(n_embed), int(embed_dim), float(beta)
        self.embedding = nn.Embedding(self.n_embed, self.embed_dim)
        with torch.no_grad():
            self.embedding.weight.uniform_(-1.0 / self.n_embed, 1.0 / self.n_embed)

    @property
    def n_e(self) -> int:
        """The authors' name for ``n_embed``."""
        return self.n_embed

    def nearest(self, z_flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook entry for each row of ``z_flat`` ``(N, embed_dim)``,
        from float64 squared distances ``|z|^2 + |e|^2 - 2 z.e``; ties go to the lower index."""
        with torch.no_grad():
            z64 = z_flat.detach().to(torch.float64)
            e64 = self.embedding.weight.detach().to(torch.float64)
            d = (z64 * z64).sum(1, keepdim=True) + (e64 * e64).sum(1) - 2.0 * (z64 @ e64.t())
            return torch.argmin(d, dim=1)

    def forward(
        self, z: torch.Tensor, return_one_hot: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        """Quantise ``z`` ``(B, embed_dim, H, W)``.

        Returns ``(z_q, loss, (perplexity, one_hot, indices))``:

        * ``z_q`` ``(B, embed_dim, H, W)``: the straight-through value ``z + sg(e - z)``
          (equals the codebook rows up to float rounding; gradients flow to ``z``);
        * ``loss``: ``mean((sg[e] - z)^2) + beta * mean((e - sg[z])^2)`` (the taming order:
          the commitment term has weight 1, the codebook term ``beta``), a 0-d tensor;
        * ``perplexity``: ``exp(entropy)`` of the code histogram of this batch;
        * ``one_hot``: ``(B*H*W, n_embed)`` if ``return_one_hot`` else ``None``;
        * ``indices``: ``(B*H*W,)`` int64 in raster order ``b*H*W + h*W + w``.
        """
        if z.dim() != 4 or z.shape[1] != self.embed_dim:
            raise ValueError(
                f"VectorQuantizer expects (B, {self.embed_dim}, H, W), got {tuple(z.shape)}"
            )
        zp = z.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C): raster order over (h, w)
        flat = zp.view(-1, self.embed_dim)
        indices = self.nearest(flat)
        e = self.embedding.weight[indices].view(zp.shape)
        loss = torch.mean((e.detach() - zp) ** 2) + self.beta * torch.mean((e - zp.detach()) ** 2)
        zq = zp + (e - zp).detach()
        # at least float32: a half-precision histogram would round the probabilities
        counts = torch.bincount(indices, minlength=self.n_embed).to(
            torch.promote_types(z.dtype, torch.float32)
        )
        p = counts / indices.numel()
        perplexity = torch.exp(-torch.sum(p * torch.log(p + 1e-10)))
        one_hot = F.one_hot(indices, self.n_embed).to(z.dtype) if return_one_hot else None
        return zq.permute(0, 3, 1, 2).contiguous(), loss, (perplexity, one_hot, indices)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook rows for ``indices`` ``(B, H, W)`` (int) -> ``(B, embed_dim, H, W)`` (the
        authors' ``get_codebook_entry``)."""
        if indices.dim() != 3:
            raise ValueError(f"lookup expects code indices (B, H, W), got {tuple(indices.shape)}")
        if indices.is_floating_point() or indices.is_complex():
            raise ValueError(f"code indices must be integers, got {indices.dtype}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.n_embed):
            raise ValueError(
                f"code indices must be in [0, {self.n_embed}), got "
                f"[{int(indices.min())}, {int(indices.max())}]"
            )
        return self.embedding(indices.long()).permute(0, 3, 1, 2).contiguous()


def code_usage(indices: torch.Tensor, n_embed: int) -> torch.Tensor:
    """How often each code occurs: ``(n_embed,)`` int64 counts of ``indices`` (any shape).

    Accumulate it over an epoch to find dead codes (count 0; the authors log their number as
    ``val/zero_hit_codes``) or a collapsed codebook
    (:func:`audiorep.losses.vqgan.warn_if_collapsed`)."""
    flat = indices.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= n_embed):
        raise ValueError(
            f"code indices must be in [0, {n_embed}), got [{int(flat.min())}, {int(flat.max())}]"
        )
    return torch.bincount(flat.cpu(), minlength=int(n_embed))


def to_column_major(codes: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` codes -> ``(B, H*W)`` in the transformer's order: position ``w*H + h``
    holds ``codes[:, h, w]`` (time column by column, low to high band within a column; the
    authors' ``ColumnMajor`` permuter)."""
    if codes.dim() != 3:
        raise ValueError(f"expected codes (B, H, W), got {tuple(codes.shape)}")
    return codes.transpose(1, 2).reshape(codes.shape[0], -1)


def from_column_major(sequence: torch.Tensor, height: int = 5) -> torch.Tensor:
    """Inverse of :func:`to_column_major`: ``(B, H*W)`` -> ``(B, H, W)``."""
    if sequence.dim() != 2 or sequence.shape[1] % height:
        raise ValueError(f"expected a (B, {height}*W) code sequence, got {tuple(sequence.shape)}")
    b = sequence.shape[0]
    return sequence.reshape(b, -1, height).transpose(1, 2).contiguous()


# ----------------------------------------------------------------------------- the codec


class CodebookStateDictError(ValueError):
    """A codebook state dict whose keys or shapes do not match the model; ``missing``,
    ``unexpected`` and ``mismatched`` list them."""

    def __init__(
        self,
        message: str,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[str] | None = None,
    ):
        super().__init__(message)
        self.missing = list(missing or [])
        self.unexpected = list(unexpected or [])
        self.mismatched = list(mismatched or [])


@dataclass(frozen=True)
class LoadReport:
    """What :meth:`SpectrogramVQGAN.load_authors_state_dict` did besides loading.

    ``ignored``: the checkpoint's training-loss entries (``loss.*``: LPAPS and the patch-GAN
    discriminator), skipped on purpose; ``missing`` / ``unexpected``: keys left out with
    ``strict=False`` (always empty with ``strict=True``)."""

    ignored: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()


_LIST = 20  # keys listed per category in error messages


def _listing(label: str, keys: list[str]) -> str:
    more = f" ... ({len(keys) - _LIST} more)" if len(keys) > _LIST else ""
    return f"{len(keys)} {label}: {', '.join(keys[:_LIST])}{more}"


class SpectrogramVQGAN(nn.Module):
    """The SpecVQGAN codec (the authors' ``VQModel`` without its training loss).

    Attributes ``encoder``, ``decoder``, ``quantize``, ``quant_conv``, ``post_quant_conv``
    (state-dict keys and order as the authors'); ``name`` and ``config`` identify it in
    training checkpoints. Weights start with PyTorch's default initialisation (codebook
    ``U(-1/n, 1/n)``), as the authors'.

    Spectrogram inputs are ``(B, 1, 80, W)`` or ``(B, 80, W)`` in ``[-1, 1]`` (``2 S - 1`` of
    the authors' mel), any ``W >= 16``; outputs are 4-d with width ``16 floor(W/16)``.
    """

    name = "specvqgan-codec"

    def __init__(self, config: VQGANConfig | None = None):
        super().__init__()
        self.config = config if config is not None else VQGANConfig.vas()
        cfg = self.config
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim, beta=BETA)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    # ---------------------------------------------------------------- shapes

    @property
    def bits_per_code(self) -> int:
        """``ceil(log2 n_embed)`` (the codec demo's ``bit_length(n_embed - 1)``)."""
        return math.ceil(math.log2(self.config.n_embed))

    def latent_shape(self, height: int, width: int) -> tuple[int, int]:
        """Code grid ``(H', W')`` for an input ``height x width``: ``floor(n / 16)``."""
        f = self.config.downsampling
        return height // f, width // f

    def _as_input(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not torch.is_tensor(x) or not x.is_floating_point():
            what = f"a tensor of {x.dtype}" if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"SpectrogramVQGAN expects a float tensor, got {what}")
        if x.dim() == 3 and cfg.in_channels == 1:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"SpectrogramVQGAN expects (B, {cfg.in_channels}, mels, frames)"
                f"{' or (B, mels, frames)' if cfg.in_channels == 1 else ''}, "
                f"got {tuple(x.shape)}"
            )
        f = cfg.downsampling
        if x.shape[2] < f or x.shape[3] < f:
            raise ValueError(
                f"SpectrogramVQGAN needs at least {f} mel bands and {f} frames (each is "
                f"downsampled {f}x), got {x.shape[2]} x {x.shape[3]}"
            )
        return x

    # ---------------------------------------------------------------- codec

    def encode(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        """``x`` -> ``(z_q (B, embed_dim, H', W'), codebook loss, (perplexity, None,
        indices (B*H'*W',)))``; see :meth:`VectorQuantizer.forward`."""
        h = self.quant_conv(self.encoder(self._as_input(x)))
        return self.quantize(h)

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Quantised latents ``(B, embed_dim, H', W')`` -> ``(B, out_ch, 16 H', 16 W')``."""
        if z_q.dim() != 4 or z_q.shape[1] != self.config.embed_dim:
            raise ValueError(
                f"decode expects latents (B, {self.config.embed_dim}, H', W'), "
                f"got {tuple(z_q.shape)}"
            )
        return self.decoder(self.post_quant_conv(z_q))

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        """``x`` -> ``(xrec, codebook loss, info)`` (info as :meth:`encode`)."""
        z_q, qloss, info = self.encode(x)
        return self.decode(z_q), qloss, info

    def encode_to_codes(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` -> code indices ``(B, H', W')`` int64 (5 x floor(W/16) for 80 bands)."""
        x = self._as_input(x)
        z = self.quant_conv(self.encoder(x))
        b, _, hh, ww = z.shape
        return self.quantize.nearest(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])).view(b, hh, ww)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Code indices ``(B, H', W')`` -> spectrogram ``(B, out_ch, 16 H', 16 W')``."""
        return self.decode(self.quantize.lookup(codes))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Encode and decode: the codec's round trip, in the input's layout (``(B, 80, W)``
        in -> ``(B, 80, W')`` out; ``(B, 1, 80, W)`` -> ``(B, 1, 80, W')``), ``W' = 16
        floor(W/16)``."""
        xrec = self(x)[0]
        return xrec.squeeze(1) if x.dim() == 3 else xrec

    def get_last_layer(self) -> nn.Parameter:
        """``decoder.conv_out.weight``: the adaptive GAN weight compares gradients there."""
        return self.decoder.conv_out.weight

    # ---------------------------------------------------------------- weights

    def _checked(
        self, state_dict: Mapping[str, Any], strict: bool
    ) -> tuple[dict[str, torch.Tensor], LoadReport]:
        """Split off ``loss.*``, compare keys and shapes with the model; raise or report."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"expected a state dict (mapping), got {type(state_dict).__name__}")
        if isinstance(state_dict.get("state_dict"), Mapping):
            raise CodebookStateDictError(
                "this is a whole training checkpoint (keys "
                f"{', '.join(sorted(map(str, state_dict))[:8])}), not a state dict: pass "
                "ckpt['state_dict']",
                unexpected=[str(k) for k in state_dict],
            )
        ignored = [str(k) for k in state_dict if str(k).startswith(LOSS_PREFIX)]
        own = {str(k): v for k, v in state_dict.items() if not str(k).startswith(LOSS_PREFIX)}
        expected = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        missing = [k for k in expected if k not in own]
        unexpected = [k for k in own if k not in expected]
        mismatched = [
            f"{k}: {tuple(np.shape(own[k]))} given, {expected[k]} in the model"
            for k in expected
            if k in own and tuple(np.shape(own[k])) != expected[k]
        ]
        if mismatched or (strict and (missing or unexpected)):
            parts = [
                _listing(label, keys)
                for label, keys in (
                    ("missing", missing),
                    ("unexpected", unexpected),
                    ("wrong shape", mismatched),
                )
                if keys
            ]
            hint = ""
            prefixed = [k for k in unexpected if k.split(".", 1)[-1] in expected]
            if missing and prefixed:
                prefix = prefixed[0].split(".", 1)[0] + "."
                hint = f"; the keys carry an extra prefix: strip {prefix!r}"
            raise CodebookStateDictError(
                f"SpecVQGAN codebook state dict does not match {self.config}: "
                + "; ".join(parts)
                + hint,
                missing,
                unexpected,
                mismatched,
            )
        tensors = {k: torch.as_tensor(v) for k, v in own.items() if k in expected}
        return tensors, LoadReport(tuple(ignored), tuple(missing), tuple(unexpected))

    def load_authors_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True
    ) -> LoadReport:
        """Load a codebook state dict (a checkpoint's ``state_dict``) in the authors' keys.

        ``loss.*`` entries (the training loss: LPAPS and the discriminator) are ignored on
        purpose and listed in the report. Everything else must match exactly (keys and shapes)
        with ``strict=True``; with ``strict=False`` missing / unexpected keys are reported
        instead, wrong shapes still raise. Raises :class:`CodebookStateDictError` listing the
        keys, with a hint for a whole Lightning checkpoint or a prefixed (transformer) one.
        """
        tensors, report = self._checked(state_dict, strict)
        self.load_state_dict(tensors, strict=strict)
        return report

    @classmethod
    def from_state_dict(
        cls, state_dict: Mapping[str, Any], config: VQGANConfig | None = None
    ) -> SpectrogramVQGAN:
        """A model holding exactly ``state_dict`` (strict; ``loss.*`` ignored), built on the
        meta device so no time is spent on a random initialisation first."""
        with torch.device("meta"):
            model = cls(config)
        tensors, _ = model._checked(state_dict, strict=True)
        model.load_state_dict(tensors, strict=True, assign=True)
        return model


def state_dict_shapes(config: VQGANConfig | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """``SpectrogramVQGAN(config).state_dict()`` as ``(key, shape)`` in order, without
    allocating it (343 entries for the VAS / VGGSound configuration)."""
    with torch.device("meta"):
        model = SpectrogramVQGAN(config)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def seeded_random_state_dict(
    config: VQGANConfig | None = None, seed: int = RECIPE_SEED
) -> dict[str, torch.Tensor]:
    """Codec weights of the fixtures' recipe v1 (tests/fixtures/specvqgan_codebook/README.md).

    One ``numpy.random.RandomState(seed)`` walks the state dict in order:
    ``quantize.embedding.weight`` ``U(-1/n_embed, 1/n_embed)``; other tensors with ``ndim >= 2``
    ``N(0, 1) * sqrt(2 / prod(shape[1:]))``; GroupNorm weights 1 and biases 0 (no draws for
    those); drawn in float64, cast to float32. With the defaults these are the weights the
    golden codebook fixtures were computed with (72 M values, a few seconds).

    For tests, demos and benchmarks only: reconstructions from random weights are meaningless.
    """
    from audiorep.models.vggishish import recipe_round2_state_dict

    cfg = config if config is not None else VQGANConfig.vas()
    bound = 1.0 / cfg.n_embed
    drawn = {"quantize.embedding.weight": lambda rs, shape: rs.uniform(-bound, bound, size=shape)}
    return recipe_round2_state_dict(state_dict_shapes(cfg), seed, drawn=drawn)


__all__ = [
    "BETA",
    "AttnBlock",
    "CodebookStateDictError",
    "Decoder",
    "Downsample",
    "Encoder",
    "LoadReport",
    "RECIPE_SEED",
    "ResnetBlock",
    "SpectrogramVQGAN",
    "Upsample",
    "VQGANConfig",
    "VectorQuantizer",
    "code_usage",
    "from_column_major",
    "seeded_random_state_dict",
    "state_dict_shapes",
    "to_column_major",
]
