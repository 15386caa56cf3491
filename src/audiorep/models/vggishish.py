"""SpecVQGAN's VGGish-ish spectrogram classifier (Iashin & Rahtu, BMVC 2021), tapped.

A VGG16 layout for one-channel 80-band mel spectrograms, trained by the authors on VGGSound
(309 classes) and used twice in SpecVQGAN: as a judge of generated spectrograms and, cut into
five slices, as the backbone of the LPAPS perceptual loss (:mod:`audiorep.losses.lpaps`).

Architecture (the authors' ``vggish.yaml``: ``use_bn`` false, 309 classes), eval = train
(no BatchNorm, no dropout):

* input ``(B, 80, T)``: a mel spectrogram normalised per mel bin with the VGGSound statistics
  (:func:`audiorep.frontends.specvqgan.normalize_for_judges`); a channel axis is added;
* ``features``: 13 conv3x3 (padding 1, bias) + ReLU in five blocks of 2, 2, 3, 3, 3 convs with
  64, 128, 256, 512, 512 channels; 2x2 max-pools (stride 2, floor) after blocks 1-4 only, so
  80 x 848 -> 5 x 53;
* ``AdaptiveAvgPool2d((5, 10))`` -> flatten in (C, H, W) order (25 600 values) ->
  ``classifier``: Linear 25600-4096, ReLU, Linear 4096-4096, ReLU, Linear 4096-C (logits).

Parameter names are the authors' (``features.<i>.{weight,bias}`` at the indices of their
``nn.Sequential``, ``classifier.{0,2,4}.*``), so ``model.load_state_dict(ckpt["model"])``
takes the state dict of their ``vggishish16.pt`` unchanged (read it with
:mod:`audiorep.convert.specvqgan`).

Taps are named like torchvision's VGG16 stages: ``conv{b}_{j}`` (before the ReLU),
``relu{b}_{j}``, ``pool{b}`` (block b = 1..5, conv j within the block), then ``avgpool``,
``fc1``, ``fc1_relu``, ``fc2``, ``fc2_relu``, ``logits``. The five LPAPS slices end at
``relu1_2``, ``relu2_2``, ``relu3_3``, ``relu4_3``, ``relu5_3`` (:data:`LPAPS_TAPS`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from audiorep.models.taps import TappedModel

#: The authors' ``vggish.yaml`` ``conv_layers`` (VGG16 without its last max-pool).
VGGISH16_LAYERS: tuple[int | str, ...] = (
    64, 64, "MP", 128, 128, "MP", 256, 256, 256, "MP", 512, 512, 512, "MP", 512, 512, 512,
)  # fmt: skip
NUM_CLASSES = 309  # VGGSound
MEL_BINS = 80
#: Output of the adaptive average pool before the classifier (mel, time).
POOL_SIZE = (5, 10)
HIDDEN = 4096
#: Seed of the fixtures' weights (recipe round 2, tests/fixtures/specvqgan_vggishish/README.md).
RECIPE_SEED = 20261132

#: ``features`` index ranges of the five LPAPS slices (slice1 .. slice5 of the authors' LPAPS).
LPAPS_SLICES: tuple[tuple[int, int], ...] = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
#: The tap each LPAPS slice ends at (torchvision/LPIPS names).
LPAPS_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
#: Channels of the LPAPS taps.
LPAPS_CHANNELS = (64, 128, 256, 512, 512)


def feature_layers(
    conv_layers: Sequence[int | str] = VGGISH16_LAYERS, use_bn: bool = False
) -> list[tuple[str, nn.Module]]:
    """The authors' ``features`` sequence as ``(tap name, module)``, in index order.

    An int ``v`` adds conv3x3(v) [+ BatchNorm2d(v)] + ReLU, ``"MP"`` a 2x2 max-pool. ReLUs are
    not in-place (the authors' are): a tap must not be overwritten by the next stage.
    """
    out: list[tuple[str, nn.Module]] = []
    cin, block, j = 1, 1, 0
    for v in conv_layers:
        if v == "MP":
            out.append((f"pool{block}", nn.MaxPool2d(kernel_size=2, stride=2)))
            block, j = block + 1, 0
            continue
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"conv_layers entries are channel counts or 'MP', got {v!r}")
        j += 1
        out.append((f"conv{block}_{j}", nn.Conv2d(cin, v, kernel_size=3, stride=1, padding=1)))
        if use_bn:
            out.append((f"bn{block}_{j}", nn.BatchNorm2d(v)))
        out.append((f"relu{block}_{j}", nn.ReLU()))
        cin = v
    return out


def _num_pools(conv_layers: Sequence[int | str]) -> int:
    return sum(1 for v in conv_layers if v == "MP")


def _check_spectrogram(x: torch.Tensor, pools: int, what: str) -> torch.Tensor:
    """``(B, F, T)`` or ``(B, 1, F, T)`` -> ``(B, 1, F, T)``; both sides at least ``2**pools``."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(
            f"{what} expects (B, 80, T) or (B, 1, 80, T) spectrograms, got {tuple(x.shape)}"
        )
    least = 2**pools
    if x.shape[2] < least or x.shape[3] < least:
        raise ValueError(
            f"{what} needs at least {least} mel bins and frames ({pools} 2x2 max-pools), "
            f"got {tuple(x.shape[2:])}"
        )
    return x


def reset_vgg_parameters(module: nn.Module) -> None:
    """The authors' initialisation: convs kaiming-normal (fan_out, ReLU gain) with zero bias,
    BatchNorm 1 / 0, linears ``N(0, 0.01)`` with zero bias (this is the random backbone every
    released SpecVQGAN codebook was trained with, Issue #13)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


class _FlattenLinear(nn.Module):
    """``(B, C, H, W)`` -> ``(B, C*H*W)`` (C, H, W order, as ``nn.Flatten``) -> linear."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(x, 1))


class VGGishish(TappedModel):
    """The authors' ``VGGishish(conv_layers, use_bn, num_classes)``: mel ``(B, 80, T)`` -> logits.

    Args:
        conv_layers: channel counts and ``"MP"`` (max-pool) markers; default the VGG16 layout
            of ``vggish.yaml`` / ``vggishish16.pt``. The last conv must have 512 channels
            (the classifier's input is 512 x 5 x 10, as in the original) unless
            ``match_last_conv``.
        use_bn: BatchNorm after each conv (false for every released model).
        num_classes: 309 for VGGSound.
        hidden: width of the two hidden classifier layers (keyword-only; 4096 as the
            original; smaller for the small judges of
            src/audiorep/specvqgan/classifier_training.py).
        match_last_conv: keyword-only; the classifier input follows the last conv's width
            (``C x 5 x 10``) instead of requiring 512 (the original hard-codes 512).

    Input ``(B, 80, T)`` (or ``(B, 1, 80, T)``), float, normalised per mel bin; ``T >= 16``
    (any width works, the classifier sees a fixed 5 x 10 pool; the authors use T = 848).

    Taps (:meth:`forward_taps`), NCHW maps ``(B, C, mel, time)``:

    * ``conv{b}_{j}`` / ``relu{b}_{j}``: conv j of block b before / after its ReLU
      (``bn{b}_{j}`` in between with ``use_bn``); ``pool{b}``: after the max-pool ending block
      b (b = 1..4). For 80 x 848: block 1 ``(B, 64, 80, 848)``, 2 ``(B, 128, 40, 424)``, 3
      ``(B, 256, 20, 212)``, 4 ``(B, 512, 10, 106)``, 5 ``(B, 512, 5, 53)``;
    * ``avgpool`` ``(B, 512, 5, 10)``; ``fc1``, ``fc2`` ``(B, hidden)`` before their ReLUs,
      ``fc1_relu``, ``fc2_relu`` after; ``logits`` ``(B, num_classes)``.
    """

    def __init__(
        self,
        conv_layers: Sequence[int | str] = VGGISH16_LAYERS,
        use_bn: bool = False,
        num_classes: int = NUM_CLASSES,
        *,
        hidden: int = HIDDEN,
        match_last_conv: bool = False,
    ):
        super().__init__()
        layers = feature_layers(conv_layers, use_bn)
        widths = [v for v in conv_layers if v != "MP"]
        if not widths or (widths[-1] != 512 and not match_last_conv):
            raise ValueError("the last conv must have 512 channels (classifier input 512*5*10)")
        if hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.conv_layers = tuple(conv_layers)
        self.use_bn = use_bn
        self.num_classes = num_classes
        self.hidden = int(hidden)
        width = int(widths[-1])
        self._feature_names = tuple(name for name, _ in layers)
        self._pools = _num_pools(conv_layers)
        self.features = nn.Sequential(*(m for _, m in layers))
        self.avgpool = nn.AdaptiveAvgPool2d(POOL_SIZE)
        self.classifier = nn.Sequential(
            nn.Linear(width * POOL_SIZE[0] * POOL_SIZE[1], self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, num_classes),
        )
        reset_vgg_parameters(self)

    def stages(self) -> Iterable[tuple[str, nn.Module]]:
        yield from zip(self._feature_names, self.features)
        yield "avgpool", self.avgpool
        yield "fc1", _FlattenLinear(self.classifier[0])
        yield "fc1_relu", self.classifier[1]
        yield "fc2", self.classifier[2]
        yield "fc2_relu", self.classifier[3]
        yield "logits", self.classifier[4]

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_spectrogram(x, self._pools, "VGGishish")
        return x.to(self.classifier[0].weight.dtype)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of normalised mel spectrograms ``(B, 80, T)``."""
        return self.forward_taps(spec, "logits")["logits"]


class VGGishishSlices(TappedModel):
    """The conv part of VGGish-ish grouped as the authors' LPAPS backbone (``vggishish16``).

    The same layers and taps as :class:`VGGishish`'s ``features`` (built by
    :func:`feature_layers`), held in ``slice1`` .. ``slice5`` under their original indices, so
    the state-dict keys are the authors' ``slice{k}.{i}.{weight,bias}`` (inside LPAPS:
    ``net.slice{k}.{i}.*``). Layers after the last slice are not built (for VGG16 there are
    none). Map a :class:`VGGishish` state dict onto it with :func:`slices_state_dict`.

    Input ``(B, 1, 80, T)`` or ``(B, 80, T)``, already scaled (LPAPS's scaling layer); taps as
    :class:`VGGishish` up to ``relu5_3``.
    """

    def __init__(
        self,
        conv_layers: Sequence[int | str] = VGGISH16_LAYERS,
        use_bn: bool = False,
        slices: Sequence[tuple[int, int]] = LPAPS_SLICES,
    ):
        super().__init__()
        layers = feature_layers(conv_layers, use_bn)
        if slices[-1][1] > len(layers):
            raise ValueError(f"slices {tuple(slices)} exceed the {len(layers)} feature layers")
        self.slices = tuple(tuple(s) for s in slices)
        names = []
        for k, (lo, hi) in enumerate(self.slices, start=1):
            seq = nn.Sequential()
            for i in range(lo, hi):
                name, module = layers[i]
                seq.add_module(str(i), module)
                names.append(name)
            setattr(self, f"slice{k}", seq)
        self._names = tuple(names)
        self._pools = sum(1 for name in names if name.startswith("pool"))
        reset_vgg_parameters(self)

    @property
    def slice_taps(self) -> tuple[str, ...]:
        """The tap each slice ends at (``relu1_2`` .. ``relu5_3`` for VGG16)."""
        ends = []
        n = 0
        for lo, hi in self.slices:
            n += hi - lo
            ends.append(self._names[n - 1])
        return tuple(ends)

    def stages(self) -> Iterable[tuple[str, nn.Module]]:
        modules = (m for k in range(1, len(self.slices) + 1) for m in getattr(self, f"slice{k}"))
        yield from zip(self._names, modules)

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        x = _check_spectrogram(x, self._pools, "VGGishishSlices")
        return x.to(self.slice1[0].weight.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The slice outputs (``relu1_2`` .. ``relu5_3``), as the authors' namedtuple's values."""
        taps = self.slice_taps
        out = self.forward_taps(x, taps)
        return tuple(out[t] for t in taps)


def slices_state_dict(
    features_sd: Mapping[str, torch.Tensor], slices: Sequence[tuple[int, int]] = LPAPS_SLICES
) -> dict[str, torch.Tensor]:
    """``features.<i>.*`` of a :class:`VGGishish` state dict -> ``slice<k>.<i>.*``.

    ``classifier.*`` and features outside the slices are dropped; any other key raises
    ``KeyError``. This is what the authors' LPAPS meant to load from ``vggishish16.pt``
    (Issue #13: it never did).
    """
    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in features_sd.items():
        head, _, rest = key.partition(".")
        if head == "classifier":
            continue
        index, _, leaf = rest.partition(".")
        if head != "features" or not index.isdigit() or not leaf:
            raise KeyError(f"not a VGGishish state-dict key: {key!r}")
        i = int(index)
        for k, (lo, hi) in enumerate(slices, start=1):
            if lo <= i < hi:
                out[f"slice{k}.{i}.{leaf}"] = value
                break
    return out


# ----------------------------------------------------------------------------- weights


def recipe_round2_state_dict(
    named_shapes: Iterable[tuple[str, tuple[int, ...]]],
    seed: int,
    fixed: Mapping[str, np.ndarray] | None = None,
    drawn: Mapping[str, Callable[[np.random.RandomState, tuple[int, ...]], np.ndarray]]
    | None = None,
) -> dict[str, torch.Tensor]:
    """The SpecVQGAN fixtures' weight recipe (round 2; recipe v1 is the same rules with the
    ``fixed`` / ``drawn`` exceptions its models need).

    One ``numpy.random.RandomState(seed)`` walks the state dict in order; per key (first
    match wins): ``num_batches_tracked`` -> int64 0; a key in ``fixed`` -> that array (no
    draw); a key in ``drawn`` -> ``drawn[key](rs, shape)``; ``running_mean`` ->
    ``0.1 N(0,1)``; ``running_var`` and ``weight_g`` -> ``U(0.5, 1.5)``; other ``bias`` -> 0;
    other 1-d weights -> 1 (no draw); every other tensor -> ``N(0,1) * sqrt(2 /
    prod(shape[1:]))``. Draws are float64, cast to float32.
    Large tensors are drawn in row blocks (the legacy generator's stream does not depend on
    how it is split), so peak memory stays near the float32 result.
    """
    rs = np.random.RandomState(int(seed))
    fixed = fixed or {}
    drawn = drawn or {}
    out: dict[str, torch.Tensor] = OrderedDict()
    for name, shape in named_shapes:
        shape = tuple(int(s) for s in shape)
        if name.endswith("num_batches_tracked"):
            out[name] = torch.zeros(shape, dtype=torch.int64)
            continue
        if name in fixed:
            x = np.asarray(fixed[name], dtype=np.float32)
            if x.shape != shape:
                raise ValueError(f"{name}: fixed value has shape {x.shape}, expected {shape}")
            out[name] = torch.from_numpy(x.copy())
            continue
        if name in drawn:
            x = drawn[name](rs, shape)
        elif name.endswith("running_mean"):
            x = rs.standard_normal(shape) * 0.1
        elif name.endswith(("running_var", "weight_g")):
            x = rs.uniform(0.5, 1.5, size=shape)
        elif name.endswith(".bias"):
            x = np.zeros(shape)
        elif len(shape) == 1:
            x = np.ones(shape)
        else:
            out[name] = torch.from_numpy(_scaled_normal(rs, shape))
            continue
        out[name] = torch.from_numpy(x.astype(np.float32))
    return out


def _scaled_normal(rs: np.random.RandomState, shape: tuple[int, ...]) -> np.ndarray:
    """``standard_normal(shape) * sqrt(2 / fan_in)`` as float32, drawn ~4 M values at a time."""
    std = np.sqrt(2.0 / np.prod(shape[1:]))
    out = np.empty(shape, dtype=np.float32)
    row = int(np.prod(shape[1:]))
    step = max(1, (1 << 22) // max(row, 1))
    for lo in range(0, shape[0], step):
        hi = min(shape[0], lo + step)
        out[lo:hi] = (rs.standard_normal((hi - lo, *shape[1:])) * std).astype(np.float32)
    return out


def state_dict_shapes(
    conv_layers: Sequence[int | str] = VGGISH16_LAYERS,
    use_bn: bool = False,
    num_classes: int = NUM_CLASSES,
) -> list[tuple[str, tuple[int, ...]]]:
    """``VGGishish(...).state_dict()`` as ``(key, shape)`` in order, without allocating it."""
    with torch.device("meta"):
        model = VGGishish(conv_layers, use_bn, num_classes)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def seeded_random_state_dict(
    seed: int = RECIPE_SEED, num_classes: int = NUM_CLASSES
) -> dict[str, torch.Tensor]:
    """Random VGGish-ish (VGG16 layout, no BN) weights, recipe round 2.

    With the default seed these are the weights the SpecVQGAN judge fixtures were computed with
    (tests/fixtures/specvqgan_vggishish/README.md): conv and linear weights
    ``N(0,1) * sqrt(2 / fan_in)`` drawn in state-dict order from one
    ``numpy.random.RandomState(seed)``, biases 0 (see :func:`recipe_round2_state_dict`). About
    138 M values (the first classifier layer alone is 105 M); takes a few seconds.

    For tests, demos and benchmarks only: outputs from random weights are meaningless.
    """
    return recipe_round2_state_dict(state_dict_shapes(num_classes=num_classes), seed)


__all__ = [
    "LPAPS_CHANNELS",
    "LPAPS_SLICES",
    "LPAPS_TAPS",
    "NUM_CLASSES",
    "RECIPE_SEED",
    "VGGISH16_LAYERS",
    "VGGishish",
    "VGGishishSlices",
    "feature_layers",
    "recipe_round2_state_dict",
    "reset_vgg_parameters",
    "seeded_random_state_dict",
    "slices_state_dict",
    "state_dict_shapes",
]
