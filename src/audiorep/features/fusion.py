"""Multi-layer "general purpose" features from a frozen backbone's taps (VGGish/CNN14/AST-Fusion).

Niizumi et al., "Composing General Audio Representation by Fusing Multilayer Features of a
Pre-trained Model" (EUSIPCO 2022): take intermediate activations, max-pool them along time only
to a common frame rate, flatten ``channel x frequency`` into the feature axis (index
``c * F + f``), and concatenate layers in network depth order -> frame-level features
``(B, D, T')``. Sample-level features are ``max_t + mean_t`` (summed, not concatenated).

One mechanism, :class:`GeneralPurposeFeatures`, does this for any
:class:`~audiorep.models.taps.TappedModel` from a list of :class:`FusionLayer` (tap name,
time-pooling stride, size, optional per-tap transform). The backbone classes only translate the
paper's layer numbers:

* :class:`GeneralPurposeVGGish` (VGGish-Fusion). Layers are indices in the reference port's conv
  ``Sequential`` continued through the FC stack::

      0 conv1  1 ReLU  2 pool1  3 conv2  4 ReLU  5 pool2  6 conv3_1  7 ReLU  8 conv3_2  9 ReLU
      10 pool3  11 conv4_1  12 ReLU  13 conv4_2  14 ReLU  15 pool4
      16 fc1_1  17 ReLU  18 fc1_2  19 ReLU  20 fc2  21 ReLU

  "VGGish-Fusion#10#15" (1-based in the paper) is ``layers=[9, 14]`` -> 8192-d. Layer 21 is the
  ReLU of the 128-d layer, which the current TF VGGish no longer applies; it is computed here
  from the pre-activation embedding. Conv layers are pooled to 6 frames per 0.96 s example
  (16 log-mel frames = 0.16 s each); FC layers are repeated over the 6 frames.
* :class:`GeneralPurposeCnn14` (CNN14-Fusion): 1-based ConvBlock numbers, the block's output
  after its 2x2 average pooling (the ``conv_block{k}`` taps), max-pooled along time by 16, 8, 4,
  2, 1, 1 so that every block reaches ``T // 32`` frames (0.32 s each). Sizes 2048 per block,
  4096 for block 6: ``layers=[3, 6]`` ("CNN14-Fusion#3#6") -> 6144-d. fc1 is not used.
* :class:`GeneralPurposeAST` (AST-Fusion, EVAR's ``AR_AST_Fusion``): 0-based transformer block
  numbers; each block's output goes through the model's final LayerNorm and is pooled to
  ``(cls + dist) / 2`` (768-d); ``layers=[4, 11]`` ("AST-Fusion#5#12") -> 1536-d. These are
  clip-level vectors: sample-level features are their concatenation (no max + mean), frames
  are ``(B, D, 1)`` as EVAR's ``AR_AST.encode_frames``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from audiorep.models.ast import AST
from audiorep.models.cnn14 import Cnn14
from audiorep.models.taps import TappedModel
from audiorep.models.vggish import VGGish


@dataclass(frozen=True)
class FusionLayer:
    """One fused layer.

    Attributes:
        tap: the backbone tap it reads.
        dim: features it contributes (``C * F`` for maps, ``K`` for vectors).
        stride: max-pooling kernel = stride along time for ``(B, C, T, F)`` maps (1: none).
        relu: apply a ReLU to the tap first (VGGish layer 21).
        transform: optional callable applied to the tap first (AST: LayerNorm + token pooling).
        key: identity for de-duplication (defaults to ``tap`` plus the ReLU flag).
    """

    tap: str
    dim: int
    stride: int = 1
    relu: bool = False
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    key: str = ""

    @property
    def ident(self) -> str:
        return self.key or f"{self.tap}{'+relu' if self.relu else ''}"


class GeneralPurposeFeatures(nn.Module):
    """Fusion features from one forward pass over any tapped backbone's taps.

    Args:
        model: the frozen backbone (not modified; call ``.eval()`` on models with BatchNorm
            or dropout).
        layers: :class:`FusionLayer` entries; de-duplicated and put in network depth order.
        frames_per_example: frame count for vector-only selections (VGGish: 6 per example).
            ``None``: vectors are repeated over the frame count of the map layers, and a
            selection of vectors only is *clip-level* (see :attr:`clip_level`).

    Shapes: ``encode_frames(x)`` ``(B, D, T')``; ``forward(x)`` ``(B, D)``.
    """

    def __init__(
        self,
        model: TappedModel,
        layers: Sequence[FusionLayer],
        frames_per_example: int | None = None,
    ):
        super().__init__()
        if len(layers) == 0:
            raise ValueError("fusion needs at least one layer")
        self.model = model
        order = {name: i for i, name in enumerate(model.tap_names)}
        unknown = [layer.tap for layer in layers if layer.tap not in order]
        if unknown:
            raise ValueError(f"unknown tap(s) {unknown} for {type(model).__name__}")
        unique = {layer.ident: layer for layer in layers}
        self.layers: list[FusionLayer] = sorted(
            unique.values(), key=lambda layer: (order[layer.tap], layer.relu)
        )
        self.taps = sorted({layer.tap for layer in self.layers}, key=order.__getitem__)
        self.frames_per_example = frames_per_example

    @property
    def dim(self) -> int:
        """Feature size ``D``."""
        return sum(layer.dim for layer in self.layers)

    @property
    def clip_level(self) -> bool:
        """True when every layer is a clip vector and no frame count is imposed: ``forward``
        then returns the concatenation itself, ``encode_frames`` ``(B, D, 1)``."""
        return self.frames_per_example is None and all(layer.stride == 0 for layer in self.layers)

    def frames_from_taps(self, taps: dict[str, torch.Tensor]) -> torch.Tensor:
        """Fuse already computed taps (``forward_taps`` output) into ``(B, D, T')``."""
        maps: list[torch.Tensor | None] = []
        frames = self.frames_per_example
        for layer in self.layers:
            x = taps[layer.tap]
            if layer.transform is not None:
                x = layer.transform(x)
            if layer.relu:
                x = torch.relu(x)
            if x.dim() == 4:  # (B, C, T, F): pool time only, then channel-major flatten
                if layer.stride > 1:
                    k = (layer.stride, 1)
                    x = nn.functional.max_pool2d(x, kernel_size=k, stride=k)
                b, c, t, f = x.shape
                x = x.permute(0, 1, 3, 2).reshape(b, c * f, t)
                frames = t if frames is None else frames
            elif x.dim() != 2:
                raise ValueError(
                    f"fusion tap {layer.tap!r} has shape {tuple(x.shape)}; expected a map "
                    "(B, C, T, F) or a vector (B, K) (give the layer a transform)"
                )
            maps.append(x)
        n = 1 if frames is None else frames
        # Vectors (B, K): one value per clip/example, repeated over its frames.
        parts = [x if x.dim() == 3 else x[:, :, None].expand(-1, -1, n) for x in maps]
        return torch.cat(parts, dim=1)

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone input -> frame-level features ``(B, D, T')``."""
        return self.frames_from_taps(self.model.forward_taps(x, self.taps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone input -> sample-level features ``(B, D)`` = max + mean over frames
        (the concatenated vectors themselves when :attr:`clip_level`)."""
        frames = self.encode_frames(x)
        if self.clip_level:
            return frames[:, :, 0]
        return pool_max_plus_mean(frames)


def pool_max_plus_mean(frames: torch.Tensor) -> torch.Tensor:
    """``(B, D, T)`` -> ``(B, D)``: max over time plus mean over time (the paper's pooling)."""
    return frames.max(dim=-1).values + frames.mean(dim=-1)


def parse_layers(text: str) -> list[int | str]:
    """``"9,14"`` -> ``[9, 14]``; ``"conv3_2,conv4_2"`` -> names."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    return [int(t) if t.isdigit() else t for t in items]


def _as_int(layer: int | str) -> int | str:
    if isinstance(layer, str) and layer.strip().lstrip("-").isdigit():
        return int(layer)
    return layer


# ----------------------------------------------------------------------------- VGGish

#: paper/reference layer index -> (tap name, time pooling stride, apply ReLU to the tap)
VGGISH_LAYER_INDEX: dict[int, tuple[str, int, bool]] = {
    1: ("conv1", 16, False),
    2: ("pool1", 8, False),
    4: ("conv2", 8, False),
    5: ("pool2", 4, False),
    7: ("conv3_1", 4, False),
    9: ("conv3_2", 4, False),
    10: ("pool3", 2, False),
    12: ("conv4_1", 2, False),
    14: ("conv4_2", 2, False),
    15: ("pool4", 1, False),
    17: ("fc1_1", 0, False),
    19: ("fc1_2", 0, False),
    21: ("embedding", 0, True),
}
#: tap name -> time pooling stride to reach 6 frames per example (0 = vector, repeated)
_TAP_STRIDE = {name: stride for name, stride, _ in VGGISH_LAYER_INDEX.values()}
_VGGISH_SIZES = {
    "conv1": 4096,
    "pool1": 2048,
    "conv2": 4096,
    "pool2": 2048,
    "conv3_1": 4096,
    "conv3_2": 4096,
    "pool3": 2048,
    "conv4_1": 4096,
    "conv4_2": 4096,
    "pool4": 2048,
    "fc1_1": 4096,
    "fc1_2": 4096,
    "embedding": 128,
}
FRAMES_PER_EXAMPLE = 6


def vggish_fusion_layers(layers: Sequence[int | str]) -> list[FusionLayer]:
    """VGGish paper layer indices and/or tap names -> :class:`FusionLayer` list."""
    if len(layers) == 0:
        raise ValueError("fusion needs at least one layer")
    out = []
    for layer in map(_as_int, layers):
        if isinstance(layer, int):
            if layer not in VGGISH_LAYER_INDEX:
                raise ValueError(
                    f"VGGish fusion layer {layer} is not a ReLU or pooling output; use one of "
                    f"{sorted(VGGISH_LAYER_INDEX)} (ReLUs 1, 4, 7, 9, 12, 14, 17, 19, 21) or a "
                    f"tap name ({', '.join(_TAP_STRIDE)})"
                )
            tap, stride, relu = VGGISH_LAYER_INDEX[layer]
        elif layer in _TAP_STRIDE:
            tap, stride, relu = layer, _TAP_STRIDE[layer], False
        else:
            raise ValueError(f"unknown VGGish fusion layer {layer!r}")
        out.append(FusionLayer(tap, _VGGISH_SIZES[tap], stride, relu))
    return out


class GeneralPurposeVGGish(GeneralPurposeFeatures):
    """VGGish-Fusion features from one forward pass over the backbone's taps.

    Args:
        model: a :class:`~audiorep.models.vggish.VGGish` (frozen use; not modified).
        layers: paper layer indices (default ``[9, 14]`` -> 8192-d) and/or tap names.

    Shapes: ``logmel (B, 1, 96, 64)`` or ``(B, 96, 64)`` -> ``encode_frames`` ``(B, D, 6)``,
    ``forward`` ``(B, D)``.
    """

    def __init__(self, model: VGGish, layers: Sequence[int | str] = (9, 14)):
        super().__init__(model, vggish_fusion_layers(layers), FRAMES_PER_EXAMPLE)

    def encode_clip_frames(
        self, examples: torch.Tensor, order: str = "chronological"
    ) -> torch.Tensor:
        """Clips of ``n`` examples ``(B, n, 96, 64)`` -> frames ``(B, D, 6 n)``.

        ``order="chronological"``: frame ``i * 6 + t`` is frame ``t`` of example ``i``.
        ``order="evar"``: EVAR's ``AR_VGGish_Fusion`` layout, frame ``t * n + i``
        (interleaved; identical after max + mean pooling, wrong as a time sequence).
        """
        b, n = examples.shape[:2]
        frames = self.encode_frames(examples.reshape(b * n, *examples.shape[2:]))
        d = frames.shape[1]
        frames = frames.reshape(b, n, d, FRAMES_PER_EXAMPLE)
        if order == "chronological":
            return frames.permute(0, 2, 1, 3).reshape(b, d, n * FRAMES_PER_EXAMPLE)
        if order == "evar":
            return frames.permute(0, 2, 3, 1).reshape(b, d, FRAMES_PER_EXAMPLE * n)
        raise ValueError(f"order must be 'chronological' or 'evar', got {order!r}")

    def forward_clip(self, examples: torch.Tensor) -> torch.Tensor:
        """EVAR's clip-level feature: ``(B, n, 96, 64)`` -> ``(B, D)``, max + mean over 6n."""
        return pool_max_plus_mean(self.encode_clip_frames(examples))


# ----------------------------------------------------------------------------- CNN14

#: CNN14 tap -> (time pooling stride to reach T // 32 frames, C * F features; 0 = vector).
#: ``conv_block{k}`` are post-pooling (time T / 2^k for k <= 5), ``_prepool`` T / 2^(k-1).
CNN14_TAP_POOLING: dict[str, tuple[int, int]] = {
    "bn0": (32, 64),
    **{
        f"conv_block{k}_prepool": (2 ** (6 - k), (64 * 2 ** (k - 1)) * (64 // 2 ** (k - 1)))
        for k in range(1, 7)
    },
    **{f"conv_block{k}": (2 ** (5 - k), 2048) for k in range(1, 6)},
    "conv_block6": (1, 4096),
    "pooled": (0, 2048),
    "fc1": (0, 2048),
}


def cnn14_fusion_layers(layers: Sequence[int | str]) -> list[FusionLayer]:
    """CNN14 block numbers 1..6 (post-pooling block outputs) and/or tap names."""
    if len(layers) == 0:
        raise ValueError("fusion needs at least one layer")
    out = []
    for layer in map(_as_int, layers):
        if isinstance(layer, int):
            if not 1 <= layer <= 6:
                raise ValueError(
                    f"CNN14 fusion layer {layer}: use ConvBlock numbers 1..6 (1-based, as the "
                    f"paper) or a tap name ({', '.join(CNN14_TAP_POOLING)})"
                )
            layer = f"conv_block{layer}"
        if layer not in CNN14_TAP_POOLING:
            raise ValueError(
                f"unknown CNN14 fusion layer {layer!r}; use 1..6 or one of "
                f"{', '.join(CNN14_TAP_POOLING)}"
            )
        stride, dim = CNN14_TAP_POOLING[layer]
        out.append(FusionLayer(layer, dim, stride))
    return out


class GeneralPurposeCnn14(GeneralPurposeFeatures):
    """CNN14-Fusion features (``GeneralPurposeCnn14`` of the paper's code) from one pass.

    Args:
        model: a :class:`~audiorep.models.cnn14.Cnn14` in eval mode.
        layers: ConvBlock numbers (default ``[3, 6]`` -> 6144-d) and/or tap names.

    Shapes: PANNs log-mel ``(B, 1, T, 64)`` (T >= 32) -> ``encode_frames`` ``(B, D, T // 32)``,
    ``forward`` ``(B, D)``. Waveforms go through :class:`~audiorep.frontends.panns.PannsLogmel`
    first (EVAR's ``AR_Cnn14_Fusion`` = that frontend + this module).
    """

    def __init__(self, model: Cnn14, layers: Sequence[int | str] = (3, 6)):
        super().__init__(model, cnn14_fusion_layers(layers))


# ----------------------------------------------------------------------------- AST


def ast_fusion_layers(model: AST, layers: Sequence[int | str]) -> list[FusionLayer]:
    """AST block numbers (0-based) and/or ``block_{i}`` tap names -> fusion layers that apply
    the final LayerNorm and ``(cls + dist) / 2`` pooling to each block's output."""
    if len(layers) == 0:
        raise ValueError("fusion needs at least one layer")
    out = []
    for layer in map(_as_int, layers):
        if isinstance(layer, str) and layer.startswith("block_") and layer[6:].isdigit():
            layer = int(layer[6:])
        if not isinstance(layer, int) or not 0 <= layer < model.depth:
            raise ValueError(
                f"AST fusion layer {layer!r}: use transformer block numbers 0..{model.depth - 1}"
                " (0-based: the paper's #5#12 is [4, 11]) or block_<i>"
            )
        out.append(
            FusionLayer(f"block_{layer}", model.embedding_size, 0, transform=model.pool_layer)
        )
    return out


class GeneralPurposeAST(GeneralPurposeFeatures):
    """AST-Fusion features (EVAR's ``AR_AST_Fusion``): clip-level ``(B, 768 * len(layers))``.

    Args:
        model: an :class:`~audiorep.models.ast.AST`.
        layers: 0-based block numbers (default ``[4, 11]`` -> 1536-d) or ``block_<i>`` names.

    Shapes: normalised fbank ``(B, input_tdim, 128)`` -> ``forward`` ``(B, D)``,
    ``encode_frames`` ``(B, D, 1)``.
    """

    def __init__(self, model: AST, layers: Sequence[int | str] = (4, 11)):
        super().__init__(model, ast_fusion_layers(model, layers))
