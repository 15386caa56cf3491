"""The patch-GAN discriminator of SpecVQGAN's codec training (pix2pix / taming-transformers
``NLayerDiscriminator`` with BatchNorm, one input channel).

Layout for ``n_layers = 3`` (all convs kernel 4, padding 1), keys ``main.<i>.*`` at the
authors' ``nn.Sequential`` indices:

====  ==========================================  =============================
main  layer                                       80 x 848 input ->
====  ==========================================  =============================
0, 1  conv 1 -> 64, stride 2 (bias), LeakyReLU 0.2   40 x 424
2-4   conv 64 -> 128, stride 2 (no bias), BN, LReLU  20 x 212
5-7   conv 128 -> 256, stride 2 (no bias), BN, LReLU 10 x 106
8-10  conv 256 -> 512, stride 1 (no bias), BN, LReLU 9 x 105
11    conv 512 -> 1, stride 1 (bias)                 8 x 104
====  ==========================================  =============================

So ``(B, 1, 80, 848) -> (B, 1, 8, 104)`` logits, one per overlapping patch (70 x 70 pixels of
receptive field). BatchNorm runs in train mode during the authors' training (batch statistics;
they used ``sync_batchnorm`` under DDP) and with running statistics in validation.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from audiorep.models.vggishish import recipe_round2_state_dict

#: Seed of the fixtures' discriminator weights (recipe round 2).
RECIPE_SEED = 20261135
KERNEL = 4
PADDING = 1
SLOPE = 0.2


class PatchGANDiscriminator(nn.Module):
    """``(B, in_channels, H, W) -> (B, 1, H', W')`` patch logits (``H, W >= 24``).

    Args:
        in_channels: input channels (1 for spectrograms).
        ndf: filters of the first conv; layer ``n`` has ``ndf * min(2**n, 8)``.
        n_layers: number of conv + BatchNorm layers (the last of them has stride 1).

    Initialised like the authors' ``weights_init``: conv weights ``N(0, 0.02)``, BatchNorm
    weights ``N(1, 0.02)`` and biases 0 (:meth:`init_weights_`).
    """

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("ndf", ndf), ("n_layers", n_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PatchGANDiscriminator: {name} must be >= 1, got {value!r}")
        self.in_channels, self.ndf, self.n_layers = in_channels, ndf, n_layers
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, KERNEL, stride=2, padding=PADDING),
            nn.LeakyReLU(SLOPE),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                # no bias: the BatchNorm that follows has its own
                nn.Conv2d(ndf * prev, ndf * mult, KERNEL, stride, PADDING, bias=False),
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(SLOPE),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, KERNEL, stride=1, padding=PADDING))
        self.main = nn.Sequential(*layers)
        self.init_weights_()

    @property
    def min_size(self) -> int:
        """Smallest input height / width giving at least one logit: ``n_layers`` halvings,
        then two stride-1 convs that each drop one pixel."""
        return 2**self.n_layers * 3

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """Logit grid for an input ``height x width``."""

        def one(n: int) -> int:
            for _ in range(self.n_layers):
                n = (n + 2 * PADDING - KERNEL) // 2 + 1
            return n - 2  # two stride-1 kernel-4 convs with padding 1

        return one(height), one(width)

    def init_weights_(self, generator: torch.Generator | None = None) -> PatchGANDiscriminator:
        """The authors' ``weights_init``: conv weights ``N(0, 0.02)``; BatchNorm weights
        ``N(1, 0.02)``, biases 0. Conv biases keep PyTorch's default initialisation (the
        authors' function does not touch them)."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.normal_(0.0, 0.02, generator=generator)
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.normal_(1.0, 0.02, generator=generator)
                    m.bias.zero_()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"PatchGANDiscriminator expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if min(x.shape[2], x.shape[3]) < self.min_size:
            raise ValueError(
                f"PatchGANDiscriminator needs inputs of at least {self.min_size} x "
                f"{self.min_size}, got {x.shape[2]} x {x.shape[3]}"
            )
        return self.main(x)


def state_dict_shapes(
    in_channels: int = 1, ndf: int = 64, n_layers: int = 3
) -> list[tuple[str, tuple[int, ...]]]:
    """``PatchGANDiscriminator(...).state_dict()`` as ``(key, shape)`` in order (22 entries
    for the defaults, BatchNorm running statistics and counters included)."""
    with torch.device("meta"):
        model = PatchGANDiscriminator(in_channels, ndf, n_layers)
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def seeded_random_state_dict(
    seed: int = RECIPE_SEED, in_channels: int = 1, ndf: int = 64, n_layers: int = 3
) -> dict[str, torch.Tensor]:
    """Discriminator weights of the fixtures' recipe (round 2,
    :func:`audiorep.models.vggishish.recipe_round2_state_dict`): conv weights
    ``N(0,1) * sqrt(2 / fan_in)``, conv biases 0, BatchNorm weights 1 / biases 0, running means
    ``0.1 N(0,1)``, running variances ``U(0.5, 1.5)``, counters 0, drawn in state-dict order.
    For tests and demos only."""
    return recipe_round2_state_dict(state_dict_shapes(in_channels, ndf, n_layers), seed)


def batchnorm_layers(model: PatchGANDiscriminator) -> Iterable[tuple[str, nn.BatchNorm2d]]:
    """``(key prefix, BatchNorm2d)`` pairs, e.g. ``("main.3", ...)``."""
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            yield name, m


__all__ = [
    "PatchGANDiscriminator",
    "RECIPE_SEED",
    "batchnorm_layers",
    "seeded_random_state_dict",
    "state_dict_shapes",
]
