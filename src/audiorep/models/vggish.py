"""VGGish, exactly as Google's TensorFlow reference (tensorflow/models research/audioset/vggish).

Architecture: VGG configuration A without the fifth conv group, on ``(96 frames, 64 mel bands)``
log-mel examples. Every conv is 3x3/stride 1/SAME followed by ReLU; every pool is 2x2/stride 2.
The 128-d output is **pre-activation** (no ReLU), as the reference has been since
tensorflow/models PR #9080; torchvggish and torchaudio's prototype add a ReLU there.

Parameter names follow the TF variables (``conv3_1`` is ``vggish/conv3/conv3_1``), in torch
layouts: conv ``(out, in, 3, 3)``, linear ``(out, in)``. ``fc1_1`` consumes pool4 flattened in
TF's NHWC order, index ``(h * 4 + w) * 512 + c``; the model permutes before flattening.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn

from audiorep.models.taps import TappedModel

NUM_FRAMES = 96
NUM_BANDS = 64
EMBEDDING_SIZE = 128

#: Tap names in execution order. Conv/fc taps are post-ReLU (the TF ``.../Relu:0`` tensors);
#: ``embedding`` is the pre-activation output (``vggish/embedding:0``).
VGGISH_TAPS = (
    "conv1", "pool1", "conv2", "pool2", "conv3_1", "conv3_2", "pool3",
    "conv4_1", "conv4_2", "pool4", "flatten", "fc1_1", "fc1_2", "embedding",
)  # fmt: skip

_CONVS = (("conv1", 1, 64), ("conv2", 64, 128), ("conv3_1", 128, 256),
          ("conv3_2", 256, 256), ("conv4_1", 256, 512), ("conv4_2", 512, 512))  # fmt: skip
_FCS = (("fc1_1", 12288, 4096), ("fc1_2", 4096, 4096), ("fc2", 4096, 128))


class _ConvReLU(nn.Module):
    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class _LinearAct(nn.Module):
    def __init__(self, linear: nn.Linear, relu: bool):
        super().__init__()
        self.linear = linear
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return torch.relu(y) if self.relu else y


class _FlattenNHWC(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TF flattens NHWC; flattening torch's NCHW directly would scramble fc1_1's inputs.
        return x.permute(0, 2, 3, 1).flatten(1)


class VGGish(TappedModel):
    """The VGGish network: examples ``(N, 96, 64)`` or ``(N, 1, 96, 64)`` -> ``(N, 128)``.

    Args:
        torchvggish_compat: apply a ReLU to the 128-d output as torchvggish, torchaudio's
            prototype and the pre-2020 TF code did. Off by default: the reference embedding is
            pre-activation. Only for reproducing numbers computed with those ports.

    Taps (see :meth:`forward_taps`): ``conv1, pool1, conv2, pool2, conv3_1, conv3_2, pool3,
    conv4_1, conv4_2, pool4, flatten, fc1_1, fc1_2, embedding``. Conv taps are NCHW
    ``(N, C, frames, bands)``; use ``t.permute(0, 2, 3, 1)`` for TF's NHWC layout.
    """

    sample_rate = 16000
    embedding_size = EMBEDDING_SIZE

    def __init__(self, torchvggish_compat: bool = False):
        super().__init__()
        self.torchvggish_compat = torchvggish_compat
        for name, cin, cout in _CONVS:
            setattr(self, name, nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1))
        for name, fin, fout in _FCS:
            setattr(self, name, nn.Linear(fin, fout))
        self._pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self._flatten = _FlattenNHWC()

    def stages(self) -> Iterable[tuple[str, nn.Module]]:
        pool = self._pool
        yield "conv1", _ConvReLU(self.conv1)
        yield "pool1", pool
        yield "conv2", _ConvReLU(self.conv2)
        yield "pool2", pool
        yield "conv3_1", _ConvReLU(self.conv3_1)
        yield "conv3_2", _ConvReLU(self.conv3_2)
        yield "pool3", pool
        yield "conv4_1", _ConvReLU(self.conv4_1)
        yield "conv4_2", _ConvReLU(self.conv4_2)
        yield "pool4", pool
        yield "flatten", self._flatten
        yield "fc1_1", _LinearAct(self.fc1_1, relu=True)
        yield "fc1_2", _LinearAct(self.fc1_2, relu=True)
        yield "embedding", _LinearAct(self.fc2, relu=self.torchvggish_compat)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, NUM_FRAMES, NUM_BANDS):
            raise ValueError(
                f"VGGish expects examples of shape (N, 96, 64) or (N, 1, 96, 64), got "
                f"{tuple(x.shape)}"
            )
        return x.to(self.conv1.weight.dtype)

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """Embed log-mel examples.

        Args:
            examples: ``(N, 96, 64)`` or ``(N, 1, 96, 64)`` log-mel patches (frames x bands).

        Returns:
            ``(N, 128)`` pre-activation embeddings (post-ReLU with ``torchvggish_compat``).
            An empty batch returns ``(0, 128)``.
        """
        if examples.dim() >= 1 and examples.shape[0] == 0:
            self.prepare_input(examples)  # still validate the shape
            return examples.new_zeros((0, EMBEDDING_SIZE), dtype=self.fc2.weight.dtype)
        return self.forward_taps(examples, "embedding")["embedding"]


def seeded_random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """He-normal random weights (biases 0.01 * N(0, 1)) from ``torch.Generator(seed)``.

    For demos, tests and benchmarks when no pretrained weights are available; results from
    such weights are meaningless as features and must be labelled as such.
    """
    gen = torch.Generator().manual_seed(int(seed))
    out: dict[str, torch.Tensor] = {}
    for name, cin, cout in _CONVS:
        fan_in = cin * 9
        # In-place scaling: no temporary copy of the (large) weight tensors.
        out[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen).mul_(
            (2.0 / fan_in) ** 0.5
        )
        out[f"{name}.bias"] = torch.randn(cout, generator=gen).mul_(0.01)
    for name, fin, fout in _FCS:
        out[f"{name}.weight"] = torch.randn(fout, fin, generator=gen).mul_((2.0 / fin) ** 0.5)
        out[f"{name}.bias"] = torch.randn(fout, generator=gen).mul_(0.01)
    return out


class _ConvStack(nn.Module):
    """VGGish up to the NHWC flatten (the part oneDNN speeds up most)."""

    def __init__(self, model: VGGish):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_taps(x, "flatten")["flatten"]


class _FrozenConvEagerFC(nn.Module):
    """Frozen conv stack + the eager model's own fully connected layers (shared weights)."""

    def __init__(self, conv: torch.jit.ScriptModule, model: VGGish):
        super().__init__()
        self.conv = conv
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        m = self.model
        h = torch.relu(m.fc1_2(torch.relu(m.fc1_1(h))))
        out = m.fc2(h)
        return torch.relu(out) if m.torchvggish_compat else out


def _freeze(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    with torch.no_grad(), warnings.catch_warnings():
        # The shape checks in prepare_input trace as constants; they hold for any batch size.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch >= 2.10 marks the TorchScript API deprecated; it still works and is the
        # fastest exact CPU path we have measured (torch.compile costs ~1 min per process).
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module.eval(), example, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


# torch.jit.optimize_for_inference keeps the prepacked oneDNN weights of every module it
# optimises alive until the process exits: neither `del` nor gc frees them (measured with torch
# 2.13: +270 MB per call). Optimising each distinct set of weights once per process, keyed by
# their content, bounds that to the weights actually in use.
_FROZEN_CACHE: OrderedDict[tuple, torch.jit.ScriptModule] = OrderedDict()
_FROZEN_CACHE_SIZE = 4


def _frozen(module: nn.Module, example: torch.Tensor, key: tuple | None) -> torch.jit.ScriptModule:
    if key is None:
        return _freeze(module, example)
    if key in _FROZEN_CACHE:
        _FROZEN_CACHE.move_to_end(key)
        return _FROZEN_CACHE[key]
    frozen = _FROZEN_CACHE[key] = _freeze(module, example)
    while len(_FROZEN_CACHE) > _FROZEN_CACHE_SIZE:
        _FROZEN_CACHE.popitem(last=False)
    return frozen


def cpu_inference_module(
    model: VGGish, low_memory: bool = False, weights_key: str | None = None
) -> nn.Module:
    """A frozen TorchScript copy of ``model`` optimised for CPU inference (oneDNN layouts).

    Same arithmetic as the eager model up to float32 summation order (~1e-5 on embeddings);
    no autograd. About 1.2-1.5x faster than eager on 2 CPU threads (docs/benchmarks.md).
    The frozen fully connected layers hold repacked copies of their weights (+290 MB);
    ``low_memory=True`` freezes only the conv stack and runs the eager fully connected layers
    (shared weights, ~10-15 % slower).

    ``weights_key``: a digest of the model's weights (e.g. ``VGGishBundle.weights_fingerprint``).
    With it, the frozen copy is shared by every model with the same weights in this process
    (see ``_FROZEN_CACHE``); without it, each call freezes anew.
    """
    dtype = model.fc2.weight.dtype
    example = torch.zeros(2, 1, NUM_FRAMES, NUM_BANDS, dtype=dtype)
    if low_memory:
        key = None if weights_key is None else (weights_key, "conv", str(dtype))
        return _FrozenConvEagerFC(_frozen(_ConvStack(model), example, key), model)
    compat = model.torchvggish_compat
    key = None if weights_key is None else (weights_key, "full", str(dtype), compat)
    return _frozen(model, example, key)
