"""Melception: SpecVQGAN's evaluation judge (Inception-v3 for 1-channel mel spectrograms), tapped.

Iashin & Rahtu (BMVC 2021) trained torchvision's ``Inception3(num_classes=309, aux_logits=True)``
on VGGSound mel spectrograms with two changes: the first conv takes 1 channel
(``Conv2d_1a_3x3 = BasicConv2d(1, 32, 3, stride 2)``) and both stem max-pools are removed (the
input is only 80 bins high). Their evaluation wrapper feeds the normalised mel ``(B, 80, 848)``
(:mod:`audiorep.frontends.specvqgan`) and reads six features; FID and KID use ``'2048'``, IS
``'logits_unbiased'``, MKL ``'logits'`` (:mod:`audiorep.specvqgan.evaluate`).

Architecture (eval mode), sizes for an 80 x 848 input (height x time):

* ``BasicConv2d`` = Conv2d (no bias) -> BatchNorm2d(eps 0.001) -> ReLU;
* stem: ``Conv2d_1a_3x3`` (1->32, stride 2) 39x423, ``Conv2d_2a_3x3`` (32->32) 37x421,
  ``Conv2d_2b_3x3`` (32->64, pad 1) 37x421, ``Conv2d_3b_1x1`` (64->80),
  ``Conv2d_4a_3x3`` (80->192) 35x419;
* ``Mixed_5b/5c/5d`` (InceptionA: 256, 288, 288 channels) 35x419, ``Mixed_6a`` (InceptionB,
  stride 2) 768x17x209, ``Mixed_6b..6e`` (InceptionC) 768x17x209, ``Mixed_7a`` (InceptionD,
  stride 2) 1280x8x104, ``Mixed_7b/7c`` (InceptionE) 2048x8x104;
* global average pool -> dropout 0.5 (training only) -> flatten: the 2048-d feature;
  ``fc`` (2048 -> 309): logits;
* ``AuxLogits`` (InceptionAux on the ``Mixed_6e`` map: avg-pool 5 stride 3 -> 1x1 conv 128 ->
  5x5 conv 768 -> global average -> Linear 768 -> 309). The authors' wrapper never computes it
  (torchvision only does in training); here it is the ``aux_logits`` tap.

Parameter and buffer names are torchvision's / the authors' (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, ``AuxLogits.fc.weight``, ``fc.bias``, ...), registered in
the same order, so ``load_state_dict(torch.load("melception-21-05-10T09-28-40.pt")["model"])``
works as is (580 tensors, 96 BatchNorms).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from audiorep.models.taps import TappedModel

NUM_CLASSES = 309
MEL_BINS = 80
#: time frames of the authors' input (860-frame mels centre-cropped, columns 6..853)
INPUT_FRAMES = 848
#: narrowest input the aux head accepts (its 5x5 conv needs Mixed_6e maps >= 17 wide)
MIN_FRAMES = 79
EMBEDDING_SIZE = 2048
BN_EPS = 1e-3
#: seed of the fixtures' weights recipe (round 2, tests/fixtures/specvqgan_melception/README.md)
RECIPE_SEED = 20261133
#: classifier biases the recipe draws (std), so that ``logits`` != ``logits_unbiased``
RECIPE_DRAWN_BIASES = {"fc.bias": 0.5, "AuxLogits.fc.bias": 0.5}

#: The chain's stages (module names), in execution order.
CHAIN_STAGES = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "2048",
    "logits_unbiased",
    "logits",
)
#: Taps computed from a chain stage's output, not passed along the chain: name -> source stage.
DERIVED_TAPS = {
    "64": "Conv2d_2b_3x3",
    "192": "Conv2d_4a_3x3",
    "768": "Mixed_6e",
    "aux_logits": "Mixed_6e",
}
#: The features the authors' evaluation wrapper returns.
AUTHORS_FEATURES = ("64", "192", "768", "2048", "logits_unbiased", "logits")


class BasicConv2d(nn.Module):
    """Conv2d without bias -> BatchNorm2d(eps 0.001) -> ReLU (torchvision's block)."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # 3x3 stride-1 pool of the pool branches; padded zeros count (torch's default, as torchvision)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """Branches 1x1 (64), 5x5 (64), double 3x3 (96), avg-pool + 1x1 (``pool``); same size."""

    def __init__(self, cin: int, pool: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    """Grid reduction: 3x3 stride 2 (384), double 3x3 ending stride 2 (96), max-pool 3 stride 2."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """Factorised 7x7: branches 1x1, 1x7 -> 7x1, double (7x1, 1x7), avg-pool + 1x1 (192 each)."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        row, col = {"padding": (0, 3)}, {"padding": (3, 0)}
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), **row)
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), **col)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), **row)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for k in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{k}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    """Grid reduction: 1x1 -> 3x3 stride 2 (320), 1x1 -> 1x7 -> 7x1 -> 3x3 stride 2 (192),
    max-pool 3 stride 2."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for k in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{k}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """Expanded filter bank: 1x1 (320), 1x1 -> (1x3 | 3x1) (768), 1x1 -> 3x3 -> (1x3 | 3x1)
    (768), avg-pool + 1x1 (192): 2048 channels."""

    def __init__(self, cin: int):
        super().__init__()
        row, col = {"padding": (0, 1)}, {"padding": (1, 0)}
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), **row)
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), **col)
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), **row)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), **col)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(s),
                self.branch3x3_2b(s),
                self.branch3x3dbl_3a(d),
                self.branch3x3dbl_3b(d),
                self.branch_pool(_avg3(x)),
            ],
            1,
        )


class InceptionAux(nn.Module):
    """Auxiliary classifier on the ``Mixed_6e`` map ``(B, 768, H, W)`` -> ``(B, classes)``."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class _PoolFeature(nn.Module):
    """``(B, 2048, H, W)`` -> global average -> dropout 0.5 (training only) -> ``(B, 2048)``."""

    def __init__(self, owner: nn.Module):
        super().__init__()
        self._owner = [owner]  # a plain list: not registered as a submodule (no cycle)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(F.adaptive_avg_pool2d(x, 1), p=0.5, training=self._owner[0].training)
        return torch.flatten(x, 1)


class _Unbiased(nn.Module):
    """``x @ fc.weight.T``: the logits without the classifier bias (for the Inception Score)."""

    def __init__(self, fc: nn.Linear):
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.fc.weight.T


class _AddBias(nn.Module):
    def __init__(self, fc: nn.Linear):
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc.bias


class Melception(TappedModel):
    """SpecVQGAN's Melception: normalised mel ``(B, 80, T)`` -> 2048-d features, 309 logits.

    Input: the judges' normalised mel spectrogram (per-bin standardised with the VGGSound
    statistics; :mod:`audiorep.frontends.specvqgan`), ``(B, 80, T)`` or ``(B, 1, 80, T)``,
    mel bins low to high, ``T = 848`` frames (9.85 s at 22.05 kHz) as the authors use; any
    ``T >= 79`` runs (the network is convolutional up to its global pools). It is cast to the
    parameters' dtype and device. Call ``.eval()`` for inference: BatchNorm uses its running
    statistics and the dropout before ``fc`` is off only in eval mode.

    Taps (:meth:`forward_taps`), in execution order:

    * the chain stages, named as the modules: ``Conv2d_1a_3x3`` ... ``Conv2d_4a_3x3``,
      ``Mixed_5b`` ... ``Mixed_7c``: NCHW maps ``(B, C, H, W)`` (sizes in the module docstring);
    * ``64``, ``192``, ``768`` ``(B, C, 1, 1)``: global averages of ``Conv2d_2b_3x3``,
      ``Conv2d_4a_3x3`` and ``Mixed_6e`` (kept 4-d, as the authors' wrapper returns them);
    * ``aux_logits`` ``(B, 309)``: the ``AuxLogits`` head on ``Mixed_6e``;
    * ``2048`` ``(B, 2048)``: global average of ``Mixed_7c``, dropout (training only), flatten:
      the FID/KID feature;
    * ``logits_unbiased`` ``(B, 309)``: ``2048 @ fc.weight.T`` (the IS input);
    * ``logits`` ``(B, 309)``: ``logits_unbiased + fc.bias`` (the MKL input).
    """

    embedding_size = EMBEDDING_SIZE
    #: tap holding the clip embedding (the FID feature)
    embedding_tap = "2048"

    def __init__(self, num_classes: int = NUM_CLASSES, aux_logits: bool = True):
        super().__init__()
        self.num_classes = num_classes
        # registration order = torchvision's Inception3, so state_dict keys come in its order
        self.Conv2d_1a_3x3 = BasicConv2d(1, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.fc = nn.Linear(EMBEDDING_SIZE, num_classes)

    def stages(self) -> Iterable[tuple[str, nn.Module]]:
        for name in CHAIN_STAGES[:-3]:
            yield name, getattr(self, name)
        yield "2048", _PoolFeature(self)
        yield "logits_unbiased", _Unbiased(self.fc)
        yield "logits", _AddBias(self.fc)

    @property
    def tap_names(self) -> tuple[str, ...]:
        """Chain stages and derived taps (each right after its source), in execution order."""
        out: list[str] = []
        for name in CHAIN_STAGES:
            out.append(name)
            out += [d for d, src in DERIVED_TAPS.items() if src == name]
        if self.AuxLogits is None:
            out.remove("aux_logits")
        return tuple(out)

    def forward_taps(
        self, x: torch.Tensor, taps: Sequence[str] | str | None = None
    ) -> dict[str, torch.Tensor]:
        """Run the model once and return the named activations (see the class docstring).

        The chain runs through :meth:`TappedModel.forward_taps`; the derived taps (``64``,
        ``192``, ``768``, ``aux_logits``) are computed from their source stage's output, which
        is returned too only when it was asked for. ``None`` returns every tap.
        """
        names = self.tap_names
        if taps is None:
            wanted = list(names)
        else:
            wanted = [taps] if isinstance(taps, str) else list(taps)
            unknown = [t for t in wanted if t not in names]
            if unknown:
                raise KeyError(
                    f"unknown tap(s) {unknown} for Melception; available taps: {', '.join(names)}"
                )
        chain = [t for t in wanted if t not in DERIVED_TAPS]
        chain += [DERIVED_TAPS[t] for t in wanted if t in DERIVED_TAPS]
        maps = super().forward_taps(x, list(dict.fromkeys(chain)))
        out: dict[str, torch.Tensor] = {}
        for name in names:
            if name not in wanted:
                continue
            if name == "aux_logits":
                assert self.AuxLogits is not None
                out[name] = self.AuxLogits(maps[DERIVED_TAPS[name]])
            elif name in DERIVED_TAPS:
                out[name] = F.adaptive_avg_pool2d(maps[DERIVED_TAPS[name]], 1)
            else:
                out[name] = maps[name]
        return out

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != MEL_BINS:
            raise ValueError(
                "Melception expects a normalised mel of shape (B, 80, T) or (B, 1, 80, T), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[3] < MIN_FRAMES:
            raise ValueError(
                f"Melception needs at least {MIN_FRAMES} frames (the authors use "
                f"{INPUT_FRAMES}), got {x.shape[3]}"
            )
        w = self.fc.weight
        return x.to(device=w.device, dtype=w.dtype)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """The 2048-d features ``(B, 2048)`` (the ``2048`` tap) of a normalised mel."""
        return self.forward_taps(mel, "2048")["2048"]

    def features(
        self, mel: torch.Tensor, names: Sequence[str] = AUTHORS_FEATURES
    ) -> tuple[torch.Tensor, ...]:
        """The authors' wrapper interface: a tuple of the requested taps, in ``names`` order."""
        out = self.forward_taps(mel, names)
        return tuple(out[n] for n in names)

    def aux_logits(self, mel: torch.Tensor) -> torch.Tensor:
        """Auxiliary-head logits ``(B, 309)`` (stops after ``Mixed_6e``)."""
        if self.AuxLogits is None:
            raise RuntimeError("this Melception was built without the auxiliary head")
        return self.forward_taps(mel, "aux_logits")["aux_logits"]


# ----------------------------------------------------------------------------- weights


def state_dict_shapes(
    num_classes: int = NUM_CLASSES, aux_logits: bool = True
) -> dict[str, tuple[int, ...]]:
    """``Melception(num_classes, aux_logits).state_dict()`` key -> shape, in order (built on the
    meta device: no memory, no initialisation). ``num_batches_tracked`` entries are ``()``."""
    with torch.device("meta"):
        model = Melception(num_classes, aux_logits)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def seeded_random_state_dict(
    seed: int = RECIPE_SEED, num_classes: int = NUM_CLASSES
) -> dict[str, torch.Tensor]:
    """Random Melception weights from ``numpy.random.RandomState(seed)`` ("recipe round 2").

    With the default seed these are exactly the weights of the Melception fixtures
    (tests/fixtures/specvqgan_melception/README.md). One generator walks the state dict in
    order; per tensor, first matching rule: ``num_batches_tracked`` = 0 (no draw);
    ``running_mean`` = ``0.1 * standard_normal``; ``running_var`` = ``uniform(0.5, 1.5)``;
    ``fc.bias`` and ``AuxLogits.fc.bias`` = ``0.5 * standard_normal`` (so that ``logits``
    differs from ``logits_unbiased``); other biases 0 and 1-d weights (BatchNorm scale) 1 (no
    draw); conv / linear weights ``standard_normal * sqrt(2 / fan_in)``, ``fan_in`` = the product
    of all but the first dimension. Drawn in float64, stored as float32. About 25 M values; a
    second or two.

    For tests, demos and benchmarks only: outputs from random weights are meaningless.
    """
    from audiorep.models.vggishish import recipe_round2_state_dict

    def biased(scale: float):
        return lambda rs, shape: rs.standard_normal(shape) * scale

    drawn = {name: biased(scale) for name, scale in RECIPE_DRAWN_BIASES.items()}
    return recipe_round2_state_dict(state_dict_shapes(num_classes).items(), seed, drawn=drawn)


def seeded_melception(seed: int = RECIPE_SEED, **kwargs) -> Melception:
    """A :class:`Melception` in eval mode with :func:`seeded_random_state_dict` weights."""
    model = Melception(**kwargs)
    model.load_state_dict(seeded_random_state_dict(seed, model.num_classes))
    return model.eval()


__all__ = [
    "AUTHORS_FEATURES",
    "CHAIN_STAGES",
    "DERIVED_TAPS",
    "INPUT_FRAMES",
    "MEL_BINS",
    "MIN_FRAMES",
    "Melception",
    "NUM_CLASSES",
    "RECIPE_SEED",
    "seeded_melception",
    "seeded_random_state_dict",
    "state_dict_shapes",
]
