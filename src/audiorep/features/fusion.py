"""Multi-layer "general purpose" features from a frozen backbone's taps (GP-VGGish).

Niizumi et al., "Composing General Audio Representation by Fusing Multilayer Features of a
Pre-trained Model" (EUSIPCO 2022): take intermediate activations, max-pool them along time only
to a common frame rate, flatten ``channel x frequency`` into the feature axis (index
``c * F + f``), and concatenate layers in network depth order -> frame-level features
``(B, D, T')``. Sample-level features are ``max_t + mean_t`` (summed, not concatenated).

For VGGish the paper numbers layers by their index in the reference port's conv
``Sequential`` continued through the FC stack::

    0 conv1  1 ReLU  2 pool1  3 conv2  4 ReLU  5 pool2  6 conv3_1  7 ReLU  8 conv3_2  9 ReLU
    10 pool3  11 conv4_1  12 ReLU  13 conv4_2  14 ReLU  15 pool4
    16 fc1_1  17 ReLU  18 fc1_2  19 ReLU  20 fc2  21 ReLU

"VGGish-Fusion#10#15" (1-based in the paper) is ``layers=[9, 14]`` -> 8192-d. Layer 21 is the
ReLU of the 128-d layer, which the current TF VGGish no longer applies; it is computed here
from the pre-activation embedding. Conv layers are pooled to 6 frames per 0.96 s example
(16 log-mel frames = 0.16 s each); FC layers are repeated over the 6 frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from audiorep.models.vggish import VGGish

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
FRAMES_PER_EXAMPLE = 6


def _resolve(layers: Sequence[int | str]) -> list[tuple[str, int, bool]]:
    """Map layer indices / tap names to (tap, stride, relu), deduplicated, in depth order."""
    if len(layers) == 0:
        raise ValueError("fusion needs at least one layer")
    chosen: dict[tuple[str, bool], tuple[str, int, bool]] = {}
    for layer in layers:
        if isinstance(layer, str) and layer.strip().lstrip("-").isdigit():
            layer = int(layer)
        if isinstance(layer, int):
            if layer not in VGGISH_LAYER_INDEX:
                raise ValueError(
                    f"VGGish fusion layer {layer} is not a ReLU or pooling output; use one of "
                    f"{sorted(VGGISH_LAYER_INDEX)} (ReLUs 1, 4, 7, 9, 12, 14, 17, 19, 21) or a "
                    f"tap name ({', '.join(_TAP_STRIDE)})"
                )
            entry = VGGISH_LAYER_INDEX[layer]
        elif layer in _TAP_STRIDE:
            entry = (layer, _TAP_STRIDE[layer], False)
        else:
            raise ValueError(f"unknown VGGish fusion layer {layer!r}")
        chosen[(entry[0], entry[2])] = entry
    order = {name: i for i, (name, _, _) in enumerate(VGGISH_LAYER_INDEX.values())}
    return sorted(chosen.values(), key=lambda e: (order[e[0]], e[2]))


def parse_layers(text: str) -> list[int | str]:
    """``"9,14"`` -> ``[9, 14]``; ``"conv3_2,conv4_2"`` -> names."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    return [int(t) if t.isdigit() else t for t in items]


class GeneralPurposeVGGish(nn.Module):
    """VGGish-Fusion features from one forward pass over the backbone's taps.

    Args:
        model: a :class:`~audiorep.models.vggish.VGGish` (frozen use; not modified).
        layers: paper layer indices (default ``[9, 14]`` -> 8192-d) and/or tap names.

    Shapes: ``logmel (B, 1, 96, 64)`` or ``(B, 96, 64)`` -> ``encode_frames`` ``(B, D, 6)``,
    ``forward`` ``(B, D)``.
    """

    def __init__(self, model: VGGish, layers: Sequence[int | str] = (9, 14)):
        super().__init__()
        self.model = model
        self.layers = _resolve(layers)
        self.taps = sorted({name for name, _, _ in self.layers}, key=model.tap_names.index)

    @property
    def dim(self) -> int:
        sizes = {"conv1": 4096, "pool1": 2048, "conv2": 4096, "pool2": 2048, "conv3_1": 4096,
                 "conv3_2": 4096, "pool3": 2048, "conv4_1": 4096, "conv4_2": 4096,
                 "pool4": 2048, "fc1_1": 4096, "fc1_2": 4096, "embedding": 128}  # fmt: skip
        return sum(sizes[name] for name, _, _ in self.layers)

    def frames_from_taps(self, taps: dict[str, torch.Tensor]) -> torch.Tensor:
        """Fuse already computed taps (``forward_taps`` output) into ``(B, D, 6)``."""
        parts = []
        for name, stride, relu in self.layers:
            x = taps[name]
            if relu:
                x = torch.relu(x)
            if x.dim() == 4:  # (B, C, T, F): pool time only, then channel-major flatten
                if stride > 1:
                    x = nn.functional.max_pool2d(x, kernel_size=(stride, 1), stride=(stride, 1))
                b, c, t, f = x.shape
                parts.append(x.permute(0, 1, 3, 2).reshape(b, c * f, t))
            else:  # (B, K): one vector per example, repeated over its frames
                parts.append(x[:, :, None].expand(-1, -1, FRAMES_PER_EXAMPLE))
        return torch.cat(parts, dim=1)

    def encode_frames(self, logmel: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 96, 64)`` log-mel examples -> frame-level features ``(B, D, 6)``."""
        return self.frames_from_taps(self.model.forward_taps(logmel, self.taps))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 96, 64)`` -> sample-level features ``(B, D)`` = max + mean over frames."""
        return pool_max_plus_mean(self.encode_frames(logmel))

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


def pool_max_plus_mean(frames: torch.Tensor) -> torch.Tensor:
    """``(B, D, T)`` -> ``(B, D)``: max over time plus mean over time (the paper's pooling)."""
    return frames.max(dim=-1).values + frames.mean(dim=-1)
