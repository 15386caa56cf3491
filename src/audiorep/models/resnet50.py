"""ResNet-50 (ImageNet classifier) in plain torch, with torchvision's ``state_dict`` keys.

SpecVQGAN's ResNet-50 video features are torchvision's ImageNet ResNet-50 with ``fc`` replaced
by an identity: the 2048-d global-average-pooled output of the last stage, one vector per video
frame (``v-iashin/video_features``, branch ``specvqgan``, ``models/resnet/extract_resnet.py``).
This module rebuilds that network without torchvision, so torchvision's weight files load
strictly into it.

Layout (He et al. 2016, "v1.5": the stride of a down-sampling bottleneck sits on its 3 x 3
conv, as in torchvision, not on the first 1 x 1):

=====================  ===================================================  ==============
key prefix             layer                                                224 x 224 in ->
=====================  ===================================================  ==============
``conv1``, ``bn1``     conv 7 x 7 / 2, 3 -> 64 (no bias), BN, ReLU          112 x 112
(no key)               max pool 3 x 3 / 2, padding 1                        56 x 56
``layer1.0`` .. ``.2``   bottlenecks 64 -> 256 (width 64)                   56 x 56
``layer2.0`` .. ``.3``   bottlenecks -> 512 (width 128), first stride 2     28 x 28
``layer3.0`` .. ``.5``   bottlenecks -> 1024 (width 256), first stride 2    14 x 14
``layer4.0`` .. ``.2``   bottlenecks -> 2048 (width 512), first stride 2    7 x 7
(no key)               global average pool                                  2048
``fc``                 linear 2048 -> 1000 (ImageNet logits)
=====================  ===================================================  ==============

A bottleneck ``layerN.i`` is ``conv1`` (1 x 1, in -> width), ``bn1``, ReLU, ``conv2`` (3 x 3,
stride s, padding 1), ``bn2``, ReLU, ``conv3`` (1 x 1, width -> 4 width), ``bn3``, plus the
shortcut (identity, or ``downsample.0`` 1 x 1 conv with stride s and ``downsample.1`` BN on the
first block of each stage), then ReLU. Convs have no bias; BatchNorm eps is 1e-5. 320
``state_dict`` entries (53 convs, 53 BatchNorms x 5, ``fc`` weight and bias); torchvision's
published file omits the 53 ``num_batches_tracked`` counters (267 entries):
:func:`from_torchvision_state_dict` adds them.

Input: ``(B, 3, 224, 224)`` float32 RGB, scaled to [0, 1] and normalised with the ImageNet mean
``(0.485, 0.456, 0.406)`` and std ``(0.229, 0.224, 0.225)`` (other sizes >= 32 work too; the
pool makes the output size-independent).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from audiorep.models.vggishish import recipe_round2_state_dict

#: Bottlenecks per stage.
STAGES = (3, 4, 6, 3)
#: Bottleneck widths per stage; outputs are 4x these.
WIDTHS = (64, 128, 256, 512)
EXPANSION = 4
FEATURE_DIM = 2048
NUM_CLASSES = 1000
BN_EPS = 1e-5
#: ImageNet normalisation of the input (torchvision's ``Normalize`` values).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Seed of :func:`seeded_random_state_dict`'s default weights.
RECIPE_SEED = 20261150


class Bottleneck(nn.Module):
    """``(B, in, H, W) -> (B, 4 width, H / stride, W / stride)``: torchvision's ``Bottleneck``."""

    def __init__(self, in_channels: int, width: int, stride: int = 1):
        super().__init__()
        out = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, eps=BN_EPS)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out, eps=BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet50(nn.Module):
    """torchvision's ``resnet50()``: ``forward`` gives ImageNet logits ``(B, 1000)``,
    :meth:`forward_features` the 2048-d pooled features SpecVQGAN uses (``fc`` skipped)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = 64
        for n, (blocks, width) in enumerate(zip(STAGES, WIDTHS), start=1):
            stride = 1 if n == 1 else 2
            layers = []
            for i in range(blocks):
                layers.append(Bottleneck(in_channels, width, stride if i == 0 else 1))
                in_channels = width * EXPANSION
            setattr(self, f"layer{n}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(FEATURE_DIM, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised RGB -> ``(B, 2048)`` global-average-pooled features."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ResNet50 expects (B, 3, H, W) images, got {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, num_classes)`` logits."""
        return self.fc(self.forward_features(x))


def state_dict_shapes(num_classes: int = NUM_CLASSES) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` of :class:`ResNet50`'s ``state_dict()``, in order (built on the meta
    device: no memory, no initialisation)."""
    with torch.device("meta"):
        model = ResNet50(num_classes)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def from_torchvision_state_dict(
    state_dict: Mapping[str, torch.Tensor], num_classes: int = NUM_CLASSES
) -> dict[str, torch.Tensor]:
    """A torchvision ResNet-50 state dict, checked and completed for strict loading.

    Missing ``num_batches_tracked`` counters (torchvision's published files have none) are
    added as int64 zeros (they only matter for training with ``momentum=None``). A leading
    ``module.`` (DataParallel) is stripped.

    Raises:
        ValueError: missing, unexpected or mis-shaped keys (up to 10 of each listed).
    """
    sd = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state_dict.items()}
    shapes = state_dict_shapes(num_classes)
    out: dict[str, torch.Tensor] = OrderedDict()
    missing, wrong = [], []
    for key, shape in shapes:
        if key not in sd:
            if key.endswith("num_batches_tracked"):
                out[key] = torch.zeros((), dtype=torch.int64)
            else:
                missing.append(key)
            continue
        value = sd[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            wrong.append(f"{key}: {got}, expected {shape}")
            continue
        out[key] = value
    expected = {k for k, _ in shapes}
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected or wrong:
        parts = [
            f"{len(v)} {label}: {', '.join(v[:10])}" + (" ..." if len(v) > 10 else "")
            for label, v in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if v
        ]
        raise ValueError("not a torchvision ResNet-50 state dict: " + "; ".join(parts))
    return out


def seeded_random_state_dict(
    seed: int = RECIPE_SEED, num_classes: int = NUM_CLASSES
) -> dict[str, torch.Tensor]:
    """Random ResNet-50 weights from ``numpy.random.RandomState(seed)`` (the project's
    recipe, :func:`audiorep.models.vggishish.recipe_round2_state_dict`): conv / linear weights
    ``N(0,1) * sqrt(2 / fan_in)``, BatchNorm scales 1 and biases 0, running means ``0.1 N(0,1)``,
    running variances ``U(0.5, 1.5)``, ``fc.bias`` 0, drawn in state-dict order. About 25.6 M
    values (a second). For plumbing, tests and benchmarks only: the features are meaningless."""
    return recipe_round2_state_dict(state_dict_shapes(num_classes), seed)


__all__ = [
    "BN_EPS",
    "Bottleneck",
    "FEATURE_DIM",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NUM_CLASSES",
    "RECIPE_SEED",
    "ResNet50",
    "from_torchvision_state_dict",
    "seeded_random_state_dict",
    "state_dict_shapes",
]
