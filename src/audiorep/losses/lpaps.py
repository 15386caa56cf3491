"""LPAPS: SpecVQGAN's learned perceptual distance between spectrograms, on VGGish-ish taps.

LPIPS (Zhang et al. 2018) adapted by SpecVQGAN's authors to 80-band mel spectrograms:

    LPAPS(x, y) = sum_k mean_{h,w} lin_k((n(f_k(s(x))) - n(f_k(s(y))))^2)

* ``s``: the scaling layer, per mel bin ``(x - shift) / scale`` with ``shift = 2 mean - 1`` and
  ``scale = 2 std`` from the VGGSound statistics (the ``[0, 1]`` statistics mapped to the
  ``[-1, 1]`` range the codec works in), computed in float32 as the authors do;
* ``f_k``: the VGGish-ish taps ``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3``, ``relu5_3``
  (:class:`~audiorep.models.vggishish.VGGishishSlices`, one ``forward_taps`` call per input);
* ``n``: unit length over channels, ``f / (sqrt(sum_c f^2) + 1e-10)`` (eps outside the sqrt);
* ``lin_k``: a 1x1 conv ``C_k -> 1`` without bias (``NetLinLayer``), averaged over mel x time.

State-dict keys are the authors' (``scaling_layer.{shift,scale}``,
``net.slice{k}.{i}.{weight,bias}``, ``lin{k}.model.1.weight``), so the ``loss.perceptual_loss.*``
entries of a codebook checkpoint load unchanged
(:func:`audiorep.convert.specvqgan.sub_state_dict`).

Traps of the original, and what this module does about them (see the fixture README,
tests/fixtures/specvqgan_vggishish/README.md):

* **Nothing ever loaded (Issue #13).** The authors' LPAPS calls
  ``load_state_dict(torch.load("vggishish16.pt"), strict=False)`` on the file's outer dict
  (``{"model": ..., "optimizer": ..., ...}``): every key is unexpected and nothing loads,
  silently. Every released codebook was trained with a random backbone and random heads, and no
  trained ``lin`` weights exist anywhere. Here loading is always strict: a missing, unexpected
  or mis-shaped key raises :class:`~audiorep.convert.specvqgan.StateDictMismatchError` listing
  them, even when ``strict=False`` is passed or LPAPS is loaded as part of a larger module.
  :meth:`LPAPS.load_backbone` loads a trained VGGish-ish backbone on purpose (the authors'
  reverted fix; their users then saw NaN losses, Issues #13 and #20).
* **Dropout in training.** Each ``lin`` head starts with ``Dropout(0.5)``. The authors call
  ``LPAPS().eval()``, but the training loop's ``model.train()`` switches it back, so during
  codebook training the loss is stochastic (half the channels dropped, the rest doubled).
  Default here: ``dropout_in_train=False``, the heads never drop (the loss is a deterministic
  function, equal to the authors' eval-mode value); ``dropout_in_train=True`` reproduces the
  authors' training behaviour when the module is in train mode.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from audiorep.convert.specvqgan import check_state_dict, vggishish_to_lpaps_net
from audiorep.frontends.specvqgan import JUDGE_STATS_FILE, N_MELS
from audiorep.models.vggishish import (
    LPAPS_CHANNELS,
    LPAPS_TAPS,
    VGGishishSlices,
    recipe_round2_state_dict,
)

PathLike = Union[str, "os.PathLike[str]"]

#: Added to the channel norm (outside the sqrt), as the authors' ``normalize_tensor``.
NORM_EPS = 1e-10
#: Seed of the fixtures' LPAPS weights (recipe round 2).
RECIPE_SEED = 20261134


def read_scaling_stats(stats: PathLike | np.ndarray | None = None) -> np.ndarray:
    """The ``(80, 2)`` float32 table "mean std" per mel bin.

    ``stats``: a ``train_means_stds_melspec_10s_22050hz.txt``, an array, or ``None`` for the
    authors' file shipped with the package (``audiorep.frontends.specvqgan.JUDGE_STATS_FILE``).
    Parsed as float32, as the authors' ``np.loadtxt(..., dtype=np.float32)``.
    """
    if stats is None or isinstance(stats, (str, os.PathLike)):
        path = Path(stats) if stats is not None else JUDGE_STATS_FILE
        table = np.loadtxt(path, dtype=np.float32)
    else:
        table = np.asarray(stats, dtype=np.float32)
    if table.shape != (N_MELS, 2):
        raise ValueError(f"expected {N_MELS} rows 'mean std', got shape {table.shape}")
    return table


def scaling_buffers(stats: PathLike | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{"scaling_layer.shift", "scaling_layer.scale"}``, float32 ``(1, 1, 80, 1)``:
    ``2 mean - 1`` and ``2 std``, computed in float32."""
    table = read_scaling_stats(stats)
    means, stds = table[:, 0], table[:, 1]
    shift = np.float32(2) * means - np.float32(1)
    scale = np.float32(2) * stds
    return {
        "scaling_layer.shift": shift.astype(np.float32)[None, None, :, None],
        "scaling_layer.scale": scale.astype(np.float32)[None, None, :, None],
    }


class ScalingLayer(nn.Module):
    """Per-mel-bin ``(x - shift) / scale`` on ``(B, 1, 80, T)``; buffers ``(1, 1, 80, 1)``."""

    def __init__(self, stats: PathLike | np.ndarray | None = None):
        super().__init__()
        buffers = scaling_buffers(stats)
        self.register_buffer("shift", torch.from_numpy(buffers["scaling_layer.shift"].copy()))
        self.register_buffer("scale", torch.from_numpy(buffers["scaling_layer.scale"].copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class NetLinLayer(nn.Module):
    """``model = Sequential(Dropout(0.5), Conv2d(C, 1, 1, bias=False))`` (the authors' keys
    ``model.1.weight``). Whether the dropout runs is decided by :class:`LPAPS`."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor, dropout: bool = False) -> torch.Tensor:
        return self.model(x) if dropout else self.model[1](x)


def _unit_channels(f: torch.Tensor) -> torch.Tensor:
    return f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + NORM_EPS)


def _as_4d(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != N_MELS:
        raise ValueError(
            f"LPAPS expects {what} of shape (B, 1, 80, T) or (B, 80, T), got {tuple(x.shape)}"
        )
    return x


class LPAPS(nn.Module):
    """SpecVQGAN's perceptual loss: ``lpaps(input, target) -> (B, 1, 1, 1)``.

    Args:
        stats: mel statistics of the scaling layer (see :func:`read_scaling_stats`; default
            the shipped VGGSound file, the one the authors download).
        dropout_in_train: apply the heads' ``Dropout(0.5)`` while the module is in train mode,
            as the authors' training effectively did (default ``False``: never; see the module
            docstring).

    Weights start random with the authors' initialisation (backbone kaiming-normal convs,
    heads PyTorch's default), which is what every released codebook was trained with; load a
    codebook's ``loss.perceptual_loss.*`` or :func:`seeded_random_state_dict` to get fixed
    values. All parameters are frozen (``requires_grad=False``); gradients reach the inputs.

    Inputs: ``(B, 1, 80, T)`` or ``(B, 80, T)`` spectrograms in the codec's ``[-1, 1]`` range,
    ``T >= 16``, same shape for both.
    """

    def __init__(
        self, stats: PathLike | np.ndarray | None = None, *, dropout_in_train: bool = False
    ):
        super().__init__()
        self.scaling_layer = ScalingLayer(stats)
        self.net = VGGishishSlices()
        self.chns = LPAPS_CHANNELS
        for k, c in enumerate(LPAPS_CHANNELS):
            setattr(self, f"lin{k}", NetLinLayer(c))
        for p in self.parameters():
            p.requires_grad_(False)
        self.dropout_in_train = dropout_in_train
        self.register_load_state_dict_pre_hook(_strict_lpaps_load)

    @property
    def lins(self) -> list[NetLinLayer]:
        return [getattr(self, f"lin{k}") for k in range(len(self.chns))]

    def _terms(self, input: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
        x, y = _as_4d(input, "input"), _as_4d(target, "target")
        if x.shape != y.shape:
            raise ValueError(f"input {tuple(x.shape)} and target {tuple(y.shape)} differ")
        # two passes, as the original: identical inputs give bit-identical features (0 loss)
        fx = self.net.forward_taps(self.scaling_layer(x), LPAPS_TAPS)
        fy = self.net.forward_taps(self.scaling_layer(y), LPAPS_TAPS)
        dropout = self.dropout_in_train and self.training
        out = []
        for tap, lin in zip(LPAPS_TAPS, self.lins):
            diff = (_unit_channels(fx[tap]) - _unit_channels(fy[tap])) ** 2
            out.append(lin(diff, dropout=dropout).mean(dim=(2, 3), keepdim=True))
        return out

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The distance per item, ``(B, 1, 1, 1)`` (the authors' shape: it is broadcast over
        every pixel of the reconstruction loss). With random heads it can be negative."""
        terms = self._terms(input, target)
        value = terms[0]
        for t in terms[1:]:  # the authors' left-to-right float32 sum
            value = value + t
        return value

    def layer_terms(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The five per-tap terms ``(B, 5)`` (``relu1_2`` .. ``relu5_3``); they sum to
        :meth:`forward`."""
        return torch.cat([t.flatten(1) for t in self._terms(input, target)], dim=1)

    def load_backbone(self, vggishish_state_dict: Mapping[str, torch.Tensor]) -> LPAPS:
        """Load a VGGish-ish state dict (``vggishish16.pt``'s ``"model"``) into ``net``,
        strictly (classifier entries are ignored); the heads are left as they are."""
        net = {k[len("net.") :]: v for k, v in vggishish_to_lpaps_net(vggishish_state_dict).items()}
        check_state_dict(net, self.net, what="LPAPS backbone (VGGish-ish features)")
        self.net.load_state_dict(net, strict=True)
        return self


def _strict_lpaps_load(
    module: LPAPS,
    state_dict: Mapping[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    """Before any load that reaches LPAPS (directly or inside a parent, strict or not): its
    keys must be exactly LPAPS's, else raise listing them."""
    own = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    check_state_dict(own, module, what=f"LPAPS{f' ({prefix[:-1]})' if prefix else ''}")


def state_dict_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """``LPAPS().state_dict()`` as ``(key, shape)`` in order (33 entries)."""
    with torch.device("meta"):
        model = LPAPS(stats=np.ones((N_MELS, 2), dtype=np.float32))
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def seeded_random_state_dict(
    seed: int = RECIPE_SEED, stats: PathLike | np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """LPAPS weights of the fixtures' recipe (round 2): the scaling buffers from ``stats``
    (no draws), then, in state-dict order from one ``numpy.random.RandomState(seed)``, conv and
    head weights ``N(0,1) * sqrt(2 / fan_in)``, biases 0. The heads come out signed, so terms
    and totals can be negative (trained LPIPS heads are non-negative).

    For tests and demos only: distances from random weights are not perceptual.
    """
    return recipe_round2_state_dict(state_dict_shapes(), seed, fixed=scaling_buffers(stats))


def lpaps_from_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, dropout_in_train: bool = False
) -> LPAPS:
    """An eval-mode :class:`LPAPS` holding exactly ``state_dict`` (strict)."""
    with torch.device("meta"):
        model = LPAPS(
            stats=np.ones((N_MELS, 2), dtype=np.float32), dropout_in_train=dropout_in_train
        )
    model.load_state_dict(state_dict, strict=True, assign=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


__all__ = [
    "LPAPS",
    "LPAPS_TAPS",
    "NORM_EPS",
    "NetLinLayer",
    "RECIPE_SEED",
    "ScalingLayer",
    "lpaps_from_state_dict",
    "read_scaling_stats",
    "scaling_buffers",
    "seeded_random_state_dict",
    "state_dict_shapes",
]
