"""PANNs CNN14, 16 kHz variant (``Cnn14_16k`` of qiuqiangkong/audioset_tagging_cnn), tapped.

The network consumes the PANNs log-mel ``(B, 1, T, 64)`` (:mod:`audiorep.frontends.panns`);
the frontend is a separate module, as everywhere in audiorep. Architecture (eval mode):

* ``bn0``: BatchNorm2d(64) over the **mel axis** (the log-mel is transposed so that the 64 mel
  bins are the channels, normalised, and transposed back), as in the original, where it sits
  right after the log-mel extractor;
* six ConvBlocks with 64, 128, 256, 512, 1024, 2048 channels: conv3x3 (no bias, padding 1) ->
  BN -> ReLU -> conv3x3 -> BN -> ReLU, then average pooling 2x2 (blocks 1-5; floor on odd
  sizes) or 1x1 (block 6, a no-op), then dropout 0.2 (training only);
* mean over frequency -> ``(B, 2048, T // 32)``, max over time + mean over time -> dropout 0.5
  (training only) -> ``fc1`` (2048 -> 2048) -> ReLU: PANNs' ``embedding``;
* ``fc_audioset`` (2048 -> 527): logits; sigmoid: ``clipwise_output``.

Training-time SpecAugment and mixup of the original are not implemented (this is a frozen
feature extractor); dropout is, so ``train()`` behaves like the original minus augmentation.
In training PANNs returns ``dropout(fc1)`` as ``embedding`` while its classifier sees the
un-dropped ``fc1``; the ``fc1`` tap is the un-dropped value (identical in eval mode).

Parameter names are the original's (``bn0.*``, ``conv_block{k}.conv{1,2}.weight``,
``conv_block{k}.bn{1,2}.*``, ``fc1.*``, ``fc_audioset.*``), so a PANNs checkpoint maps over
one to one once its frontend buffers are dropped (:mod:`audiorep.convert.cnn14`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from audiorep.models.taps import TappedModel

SAMPLE_RATE = 16000
MEL_BINS = 64
EMBEDDING_SIZE = 2048
NUM_CLASSES = 527
#: (in, out) channels of conv_block1..6
BLOCK_CHANNELS = ((1, 64), (64, 128), (128, 256), (256, 512), (512, 1024), (1024, 2048))
#: log-mel frames per output frame after the five 2x2 poolings (frames T -> T // 32)
TIME_REDUCTION = 32
#: seed of the fixtures' weights recipe (recipe v1, tests/fixtures/cnn14/README.md)
RECIPE_SEED = 20261122

#: Tap names in execution order (see :class:`Cnn14`).
CNN14_TAPS = (
    "bn0",
    *(f"conv_block{k}{s}" for k in range(1, 7) for s in ("_prepool", "")),
    "pooled",
    "fc1",
    "logits",
    "clipwise",
)


class ConvBlock(nn.Module):
    """PANNs ConvBlock without its pooling: two (conv3x3 -> BN -> ReLU), ``(B, Cin, T, F)``
    -> ``(B, Cout, T, F)``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        kw = {"kernel_size": 3, "stride": 1, "padding": 1, "bias": False}
        self.conv1 = nn.Conv2d(in_channels, out_channels, **kw)
        self.conv2 = nn.Conv2d(out_channels, out_channels, **kw)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(x)))


class _MelBatchNorm(nn.Module):
    """bn0: BatchNorm over the mel axis of ``(B, 1, T, F)`` (mel bins act as channels)."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 3)).transpose(1, 3)


class _PoolDropout(nn.Module):
    """2x2 average pooling (or none) then dropout(p) in training, as after each ConvBlock."""

    def __init__(self, owner: nn.Module, pool: bool, p: float = 0.2):
        super().__init__()
        self._owner = [owner]  # a plain list: not registered as a submodule (no cycle)
        self.pool = pool
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool:
            x = nn.functional.avg_pool2d(x, kernel_size=(2, 2))
        return nn.functional.dropout(x, p=self.p, training=self._owner[0].training)


class _ClipPooling(nn.Module):
    """``(B, C, T', F')`` -> ``(B, C)``: mean over frequency, then max_t + mean_t; dropout 0.5."""

    def __init__(self, owner: nn.Module):
        super().__init__()
        self._owner = [owner]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        return nn.functional.dropout(x, p=0.5, training=self._owner[0].training)


class _LinearReLU(nn.Module):
    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x))


class _Sigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class Cnn14(TappedModel):
    """PANNs ``Cnn14_16k`` body: log-mel ``(B, 1, T, 64)`` or ``(B, T, 64)`` -> ``(B, 2048)``.

    ``T >= 32`` frames are needed (five 2x2 poolings); ``T = 1 + N // 160`` for ``N`` samples
    at 16 kHz, so at least 4960 samples (0.31 s). Call ``.eval()`` for inference: BatchNorm
    uses its running statistics and dropout is off only in eval mode.

    Taps (:meth:`forward_taps`, execution order), NCHW ``(B, C, time, mel)`` maps:

    * ``bn0`` ``(B, 1, T, 64)``: the normalised log-mel;
    * ``conv_block{k}_prepool`` ``(B, C_k, T_k, F_k)``: block k after its second ReLU, before
      pooling (``T_1 = T``, ``F_1 = 64``);
    * ``conv_block{k}``: after the 2x2 average pooling (blocks 1-5; block 6 has none, so its
      two taps are equal) and dropout (identity in eval): the tensor PANNs passes on and the one
      CNN14-Fusion pools; ``conv_block6`` is ``(B, 2048, T // 32, 2)``;
    * ``pooled`` ``(B, 2048)``: mean over frequency, max + mean over time (fc1's input);
    * ``fc1`` ``(B, 2048)``: ReLU(fc1) = PANNs' ``embedding`` (eval mode);
    * ``logits`` ``(B, 527)``: ``fc_audioset(fc1)`` (not returned by PANNs itself);
    * ``clipwise`` ``(B, 527)``: sigmoid of the logits = PANNs' ``clipwise_output``.
    """

    sample_rate = SAMPLE_RATE
    embedding_size = EMBEDDING_SIZE
    #: tap holding the clip embedding (PANNs' ``embedding``)
    embedding_tap = "fc1"

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.num_classes = num_classes
        self.bn0 = nn.BatchNorm2d(MEL_BINS)
        for k, (cin, cout) in enumerate(BLOCK_CHANNELS, start=1):
            setattr(self, f"conv_block{k}", ConvBlock(cin, cout))
        self.fc1 = nn.Linear(EMBEDDING_SIZE, EMBEDDING_SIZE, bias=True)
        self.fc_audioset = nn.Linear(EMBEDDING_SIZE, num_classes, bias=True)

    def stages(self) -> Iterable[tuple[str, nn.Module]]:
        yield "bn0", _MelBatchNorm(self.bn0)
        for k in range(1, 7):
            yield f"conv_block{k}_prepool", getattr(self, f"conv_block{k}")
            yield f"conv_block{k}", _PoolDropout(self, pool=k < 6)
        yield "pooled", _ClipPooling(self)
        yield "fc1", _LinearReLU(self.fc1)
        yield "logits", self.fc_audioset
        yield "clipwise", _Sigmoid()

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[3] != MEL_BINS:
            raise ValueError(
                f"CNN14 expects log-mel of shape (B, 1, T, 64) or (B, T, 64), got {tuple(x.shape)}"
            )
        if x.shape[2] < TIME_REDUCTION:
            raise ValueError(
                f"CNN14 needs at least {TIME_REDUCTION} log-mel frames (about 0.31 s at "
                f"16 kHz), got {x.shape[2]}; pad the clip"
            )
        return x.to(self.fc1.weight.dtype)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        """Clip embeddings ``(B, 2048)`` (PANNs' ``embedding``, i.e. the ``fc1`` tap)."""
        return self.forward_taps(logmel, "fc1")["fc1"]


# ----------------------------------------------------------------------------- weights


def state_dict_shapes(num_classes: int = NUM_CLASSES) -> dict[str, tuple[int, ...]]:
    """``Cnn14(num_classes).state_dict()`` key -> shape, in order, without building the model
    (``num_batches_tracked`` entries are scalars ``()``)."""
    out: dict[str, tuple[int, ...]] = {}
    for name, shape in _param_shapes(num_classes):
        out[name] = shape
        if name.endswith(".running_var"):
            out[f"{name.rsplit('.', 1)[0]}.num_batches_tracked"] = ()
    return out


def _param_shapes(num_classes: int = NUM_CLASSES) -> list[tuple[str, tuple[int, ...]]]:
    """Drawn tensors in the recipe's (= the original state_dict's) order."""

    def bn(prefix: str, n: int) -> list[tuple[str, tuple[int, ...]]]:
        return [
            (f"{prefix}.{leaf}", (n,)) for leaf in ("weight", "bias", "running_mean", "running_var")
        ]

    out = bn("bn0", MEL_BINS)
    for k, (cin, cout) in enumerate(BLOCK_CHANNELS, start=1):
        out.append((f"conv_block{k}.conv1.weight", (cout, cin, 3, 3)))
        out.append((f"conv_block{k}.conv2.weight", (cout, cout, 3, 3)))
        out += bn(f"conv_block{k}.bn1", cout)
        out += bn(f"conv_block{k}.bn2", cout)
    out += [
        ("fc1.weight", (EMBEDDING_SIZE, EMBEDDING_SIZE)),
        ("fc1.bias", (EMBEDDING_SIZE,)),
        ("fc_audioset.weight", (num_classes, EMBEDDING_SIZE)),
        ("fc_audioset.bias", (num_classes,)),
    ]
    return out


def seeded_random_state_dict(seed: int = RECIPE_SEED) -> dict[str, torch.Tensor]:
    """Random CNN14 weights from ``numpy.random.RandomState(seed)`` ("recipe v1").

    With the default seed these are exactly the weights the CNN14 and fusion fixtures were
    computed with (recipe v1, tests/fixtures/cnn14/README.md): one ``standard_normal(shape)``
    draw per tensor in state-dict order (bn0, conv_block1..6 as conv1, conv2, bn1, bn2, then fc1,
    fc_audioset); conv/linear weights ``x * sqrt(2 / fan_in)``; BN weight ``1 + 0.1 x``; BN
    and linear biases ``0.1 x``; ``running_mean = 0.1 x``; ``running_var = 1 + 0.1 |x|``;
    float32; ``num_batches_tracked = 0``. The legacy generator's stream is frozen, so the
    values are the same everywhere. About 81 M values; takes a few seconds.

    For tests, demos and benchmarks only: outputs from random weights are meaningless.
    """
    rs = np.random.RandomState(int(seed))
    out: dict[str, torch.Tensor] = OrderedDict()
    for name, shape in _param_shapes():
        x = rs.standard_normal(shape)
        leaf = name.rsplit(".", 1)[1]
        is_bn = name.startswith("bn0.") or ".bn1." in name or ".bn2." in name
        if len(shape) >= 2:
            x *= np.sqrt(2.0 / np.prod(shape[1:]))
        elif leaf == "weight" and is_bn:
            x = 1.0 + 0.1 * x
        elif leaf in ("bias", "running_mean"):
            x *= 0.1
        elif leaf == "running_var":
            x = 1.0 + 0.1 * np.abs(x)
        else:  # pragma: no cover - the list above is exhaustive
            raise ValueError(name)
        out[name] = torch.from_numpy(x.astype(np.float32))
        if leaf == "running_var":  # not drawn; placed where the model's state_dict has it
            out[f"{name.rsplit('.', 1)[0]}.num_batches_tracked"] = torch.tensor(0)
    return out
