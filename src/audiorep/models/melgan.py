"""SpecVQGAN's MelGAN vocoder: generator (mel -> waveform) and multi-scale discriminator.

SpecVQGAN (Iashin & Rahtu, BMVC 2021) turns its [0, 1] spectrograms into audio with a MelGAN
(Kumar et al., NeurIPS 2019, ``descriptinc/melgan-neurips``) that the authors trained on
VGGSound (their ``vocoder/``, ``args.yml``: ``n_mel_channels 80, ngf 32, n_residual_layers 3``).

Generator (:class:`MelGANGenerator`), for a ``(B, 80, T)`` mel in the authors' [0, 1] range
(:func:`audiorep.frontends.specvqgan.mel_spectrogram`; a codec output in [-1, 1] is mapped by
``(x + 1) / 2`` first, without clamping) -> ``(B, 1, 256 T)`` waveform at 22 050 Hz in (-1, 1):

* ReflectionPad(3) + conv k7 (80 -> 16 ngf = 512 channels);
* per upsampling ratio r in (8, 8, 2, 2): LeakyReLU(0.2) + transposed conv (C -> C/2, kernel
  2r, stride r, padding r//2 + r%2, output_padding r%2: exactly r x longer), then
  ``n_residual_layers`` residual units with dilations 1, 3, 9 (LReLU -> ReflectionPad(d) ->
  conv k3 dilation d -> LReLU -> conv k1, plus a conv k1 shortcut); 512 -> 256 -> 128 -> 64 -> 32;
* LReLU -> ReflectionPad(3) -> conv k7 (32 -> 1) -> tanh.

Discriminator (:class:`MelGANDiscriminator`): three identical ``NLayerDiscriminator`` on the
waveform, on it average-pooled once and twice (``AvgPool1d(4, stride 2, padding 1,
count_include_pad=False)``). Each: ReflectionPad(7) + conv k15 (1 -> 16) + LReLU; four grouped
strided convs (kernel 41, stride 4, padding 20, groups C_in / 4) to 64, 256, 1024, 1024 channels,
each + LReLU; conv k5 (1024 -> 1024) + LReLU; conv k3 (1024 -> 1). It returns every feature
map (``layer_0`` .. ``layer_6``) of every scale: the last is the hinge-loss score, the others
feed the feature-matching loss (:mod:`audiorep.losses.melgan`).

Every conv is weight-normalised: the kernel is ``w = g * v / ||v||`` with the norm over every dim
but 0 (for a transposed conv dim 0 is the INPUT channel, so ``g`` is ``(C_in, 1, 1)``). The
state dicts carry the authors' keys in the authors' order (``model.<i>.bias``,
``model.<i>.weight_g``, ``model.<i>.weight_v``; ``model.disc_<i>.model.layer_<n>...``), so the
released ``best_netG.pt`` loads unchanged. The weight norm is implemented here (module
:class:`WNConv1d` / :class:`WNConvTranspose1d`) instead of with ``torch.nn.utils.weight_norm``
(deprecated in torch 2.x) or its parametrization (other state-dict keys); same keys, same math.

Initialisation. The authors' ``weights_init`` writes N(0, 0.02) into each conv's ``.weight``
*after* ``weight_norm`` has split it into g and v; ``weight_norm`` recomputes ``.weight`` from g
and v before every forward, so that write has no effect. Their effective fresh init is
therefore PyTorch's default conv init (kaiming-uniform kernel, U(+-1/sqrt(fan_in)) bias)
decomposed into ``g = ||w||``, ``v = w``; that is what the constructors and ``init_weights_``
do here.

Differences from the original, on purpose:

* reflection padding of a signal not longer than the pad (the generator's first pad for
  T <= 3 frames, the dilation-9 pad for T = 1) mirrors repeatedly like ``numpy.pad(...,
  'reflect')``, where torch's ``ReflectionPad1d`` refuses; so the generator takes any T >= 1.
  Longer inputs are padded exactly as by ``ReflectionPad1d``;
* the discriminator's ``layer_5`` conv takes the channels that actually arrive (``nf``); the
  original declares ``nf_prev``, the same number whenever the last strided layer hits the
  1024-channel cap (the released setting), otherwise the original cannot run;
* the discriminator does not average-pool after its last scale (the original does and discards
  the result).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from audiorep.frontends.specvqgan import reflect_indices
from audiorep.models.vggishish import recipe_round2_state_dict

#: seeds of the fixtures' weight recipe, round 2 (tests/fixtures/specvqgan_vocoder/README.md)
GENERATOR_RECIPE_SEED = 20261130
DISCRIMINATOR_RECIPE_SEED = 20261131
LRELU_SLOPE = 0.2

__all__ = [
    "DISCRIMINATOR_RECIPE_SEED",
    "GENERATOR_RECIPE_SEED",
    "MelGANConfig",
    "MelGANDiscriminator",
    "MelGANGenerator",
    "ReflectionPad1d",
    "WNConv1d",
    "WNConvTranspose1d",
    "discriminator_state_dict_shapes",
    "generator_state_dict_shapes",
    "seeded_discriminator_state_dict",
    "seeded_random_state_dict",
]


# --------------------------------------------------------------------------- building blocks


class ReflectionPad1d(nn.ReflectionPad1d):
    """``nn.ReflectionPad1d`` that also pads signals not longer than the pad.

    ``(B, C, L) -> (B, C, L + 2 p)``. For ``L > p`` this is torch's reflection padding; shorter
    signals are mirrored about their end samples again and again, as ``numpy.pad(x, p,
    mode='reflect')`` does (a single sample is repeated).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.padding
        if left == right and 0 < x.shape[-1] <= left:
            index = torch.from_numpy(reflect_indices(x.shape[-1], left)).to(x.device)
            return x.index_select(-1, index)
        return super().forward(x)


class _WeightNormConv(nn.Module):
    """A 1-d (transposed) convolution whose kernel is ``g * v / ||v||`` (weight norm, dim 0).

    Parameters, registered in this order (the order of ``torch.nn.utils.weight_norm``):
    ``bias`` ``(C_out,)``, ``weight_g`` ``(D0, 1, 1)``, ``weight_v`` the kernel's shape, where
    D0 is the kernel's dim 0 (C_out for a conv, C_in for a transposed conv). After
    :meth:`remove_weight_norm_` the kernel is a plain ``weight`` parameter instead.
    """

    transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        output_padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{type(self).__name__}: channels {in_channels} -> {out_channels} are not "
                f"divisible by groups={groups}"
            )
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = int(kernel_size), int(stride), int(padding)
        self.output_padding, self.dilation, self.groups = (
            int(output_padding),
            int(dilation),
            int(groups),
        )
        if self.transposed:
            shape = (self.in_channels, self.out_channels // self.groups, self.kernel_size)
        else:
            shape = (self.out_channels, self.in_channels // self.groups, self.kernel_size)
        kw = {"device": device, "dtype": dtype}
        self.bias = nn.Parameter(torch.empty(self.out_channels, **kw))
        self.weight_g = nn.Parameter(torch.empty(shape[0], 1, 1, **kw))
        self.weight_v = nn.Parameter(torch.empty(shape, **kw))
        self.reset_parameters()

    @property
    def weight_normed(self) -> bool:
        """False once :meth:`remove_weight_norm_` has folded g and v into ``weight``."""
        return "weight_v" in self._parameters

    def kernel(self) -> torch.Tensor:
        """The effective kernel ``g * v / ||v||`` (or the folded ``weight``)."""
        if not self.weight_normed:
            return self.weight
        v = self.weight_v
        norm = torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), keepdim=True)
        return v * (self.weight_g / norm)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default conv init (what the authors' modules effectively start from).

        The kernel ``w`` is drawn kaiming-uniform (a = sqrt(5)), the bias from U(+-1/sqrt(fan_in))
        with fan_in from dim 1 of the kernel (as torch computes it, also for transposed convs);
        then ``g = ||w||``, ``v = w`` (so the effective kernel is ``w``).
        """
        w = torch.empty(self._kernel_shape(), device=self.bias.device, dtype=self.bias.dtype)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
        fan_in = w.shape[1] * w.shape[2]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(self.bias, -bound, bound, generator=generator)
        if self.weight_normed:
            self.weight_g.copy_(torch.linalg.vector_norm(w, dim=(1, 2), keepdim=True))
            self.weight_v.copy_(w)
        else:
            self.weight.copy_(w)

    def _kernel_shape(self) -> torch.Size:
        return (self.weight_v if self.weight_normed else self.weight).shape

    @torch.no_grad()
    def remove_weight_norm_(self) -> None:
        """Fold g and v into one ``weight`` parameter (same outputs, no norm per forward).

        The state dict then has ``bias`` and ``weight`` (not the authors' keys) for this conv.
        """
        if not self.weight_normed:
            return
        w = self.kernel().detach().clone()
        del self.weight_g, self.weight_v
        self.weight = nn.Parameter(w)

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.output_padding:
            s += f", output_padding={self.output_padding}"
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.weight_normed else ", weight_norm=removed")


class WNConv1d(_WeightNormConv):
    """Weight-normalised ``Conv1d``: ``(B, C_in, L) -> (B, C_out, L_out)``, torch's L_out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(
            x, self.kernel(), self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class WNConvTranspose1d(_WeightNormConv):
    """Weight-normalised ``ConvTranspose1d``; kernel ``(C_in, C_out / groups, k)``, so g is
    ``(C_in, 1, 1)``."""

    transposed = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(
            x,
            self.kernel(),
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )


def _weight_norm_convs(module: nn.Module) -> list[_WeightNormConv]:
    return [m for m in module.modules() if isinstance(m, _WeightNormConv)]


def _init_weights(module: nn.Module, seed: int | None) -> None:
    gen = None
    if seed is not None:
        gen = torch.Generator(device=next(module.parameters()).device).manual_seed(int(seed))
    for conv in _weight_norm_convs(module):
        conv.reset_parameters(generator=gen)


def _state_dict_shapes(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


# ------------------------------------------------------------------------------- generator


@dataclass(frozen=True)
class MelGANConfig:
    """MelGAN generator hyper-parameters (the authors' ``args.yml`` names).

    n_mel_channels: input mel bands; ngf: channels of the last stage (the first has
    ``ngf * 2 ** len(ratios)``); n_residual_layers: residual units per stage (dilations 1, 3,
    9, ...); ratios: upsampling factor of each stage (their product is the hop length).
    """

    n_mel_channels: int = 80
    ngf: int = 32
    n_residual_layers: int = 3
    ratios: tuple[int, ...] = (8, 8, 2, 2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", tuple(int(r) for r in self.ratios))
        for name in ("n_mel_channels", "ngf"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MelGANConfig.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.n_residual_layers) < 0:
            raise ValueError(
                f"MelGANConfig.n_residual_layers must be >= 0, got {self.n_residual_layers}"
            )
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ValueError(f"MelGANConfig.ratios must be positive integers, got {self.ratios}")

    @property
    def hop_length(self) -> int:
        """Waveform samples per mel frame: the product of the ratios (256)."""
        return int(np.prod(self.ratios))

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_mel_channels": self.n_mel_channels,
            "ngf": self.ngf,
            "n_residual_layers": self.n_residual_layers,
            "ratios": list(self.ratios),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, ignore_unknown: bool = False) -> MelGANConfig:
        """From :meth:`to_dict`'s keys (missing ones take the defaults; ``ratios`` is optional,
        the authors hard-code (8, 8, 2, 2)). ``ignore_unknown``: skip other keys (the authors'
        ``args.yml`` also holds the training settings); otherwise they raise ``ValueError``."""
        known = {"n_mel_channels", "ngf", "n_residual_layers", "ratios"}
        unknown = sorted(set(d) - known)
        if unknown and not ignore_unknown:
            raise ValueError(f"MelGANConfig: unknown keys {unknown} (known: {sorted(known)})")
        kw = {k: d[k] for k in known if k in d}
        for k in ("n_mel_channels", "ngf", "n_residual_layers"):
            if k in kw:
                kw[k] = int(kw[k])
        return cls(**kw)


class _ResnetBlock(nn.Module):
    """``shortcut(x) + block(x)``; block = LReLU, ReflectionPad(d), conv k3 dilation d, LReLU,
    conv k1 (keys ``block.2.*``, ``block.4.*``, ``shortcut.*``). ``(B, C, L) -> (B, C, L)``."""

    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(LRELU_SLOPE),
            ReflectionPad1d(dilation),
            WNConv1d(dim, dim, 3, dilation=dilation),
            nn.LeakyReLU(LRELU_SLOPE),
            WNConv1d(dim, dim, 1),
        )
        self.shortcut = WNConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class MelGANGenerator(nn.Module):
    """MelGAN generator: ``(B, n_mel, T)`` [0, 1] mel -> ``(B, 1, hop * T)`` waveform in (-1, 1).

    Module and parameter names follow the authors' ``Generator`` (``model.<i>``, an
    ``nn.Sequential``), so their ``best_netG.pt`` state dict loads with ``load_state_dict``.
    Train and eval mode compute the same (no BatchNorm, no dropout).
    """

    name = "melgan-generator"

    def __init__(self, config: MelGANConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else MelGANConfig()
        cfg = self.config
        self.hop_length = cfg.hop_length
        mult = 2 ** len(cfg.ratios)
        layers: list[nn.Module] = [
            ReflectionPad1d(3),
            WNConv1d(cfg.n_mel_channels, mult * cfg.ngf, 7),
        ]
        for r in cfg.ratios:
            channels = mult * cfg.ngf // 2
            layers += [
                nn.LeakyReLU(LRELU_SLOPE),
                # kernel 2r, stride r and this padding make the output exactly r x longer
                WNConvTranspose1d(
                    mult * cfg.ngf,
                    channels,
                    2 * r,
                    stride=r,
                    padding=r // 2 + r % 2,
                    output_padding=r % 2,
                ),
            ]
            layers += [_ResnetBlock(channels, 3**j) for j in range(cfg.n_residual_layers)]
            mult //= 2
        layers += [
            nn.LeakyReLU(LRELU_SLOPE),
            ReflectionPad1d(3),
            WNConv1d(cfg.ngf, 1, 7),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    @classmethod
    def from_config_dict(cls, d: Mapping[str, Any]) -> MelGANGenerator:
        """From a dict with (a subset of) ``n_mel_channels``, ``ngf``, ``n_residual_layers``,
        ``ratios``; other keys (the authors' ``args.yml`` training settings) are ignored."""
        return cls(MelGANConfig.from_dict(d, ignore_unknown=True))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``(B, n_mel, T)`` mel in the authors' [0, 1] range -> ``(B, 1, hop * T)`` waveform."""
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mel_channels:
            raise ValueError(
                f"{self.name}: expected a mel of shape (B, {self.config.n_mel_channels}, T), "
                f"got {tuple(mel.shape)}"
            )
        if mel.shape[-1] < 1:
            raise ValueError(f"{self.name}: the mel has no frames")
        return self.model(mel)

    def vocode(self, mel: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Waveform(s) of mel spectrogram(s), without gradients (the authors' ``vocode``).

        Args:
            mel: ``(n_mel, T)`` or ``(B, n_mel, T)`` [0, 1] mel, numpy or torch, any T >= 1;
                moved to the model's device and dtype.

        Returns:
            float32 ``(hop * T,)`` or ``(B, hop * T)``, numpy (on the CPU) for a numpy input,
            else a tensor on the model's device.
        """
        as_numpy = isinstance(mel, np.ndarray)
        x = torch.as_tensor(mel)
        if x.dim() not in (2, 3):
            raise ValueError(
                f"{self.name}.vocode: expected (n_mel, T) or (B, n_mel, T), got {tuple(x.shape)}"
            )
        single = x.dim() == 2
        param = next(self.parameters())
        x = x.to(device=param.device, dtype=param.dtype)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                wave = self(x[None] if single else x)[:, 0].float()
        finally:
            self.train(was_training)
        wave = wave[0] if single else wave
        return wave.cpu().numpy() if as_numpy else wave

    def init_weights_(self, seed: int | None = None) -> MelGANGenerator:
        """Re-initialise every conv as the authors' model effectively starts (module docstring:
        PyTorch's default conv init, g = ||w||, v = w); ``seed`` makes it reproducible."""
        _init_weights(self, seed)
        return self

    def remove_weight_norm_(self) -> MelGANGenerator:
        """Fold every weight norm into a plain kernel for inference (same outputs up to
        rounding; the state dict then has ``weight`` keys, not the authors')."""
        for conv in _weight_norm_convs(self):
            conv.remove_weight_norm_()
        return self

    @staticmethod
    def state_dict_shapes(config: MelGANConfig | None = None) -> list[tuple[str, tuple[int, ...]]]:
        return generator_state_dict_shapes(config)

    @staticmethod
    def seeded_random_state_dict(
        config: MelGANConfig | None = None, seed: int = GENERATOR_RECIPE_SEED
    ) -> dict[str, torch.Tensor]:
        return seeded_random_state_dict(config, seed)


def generator_state_dict_shapes(
    config: MelGANConfig | None = None,
) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` of the generator's state dict, in order (built on the meta device)."""
    with torch.device("meta"):
        return _state_dict_shapes(MelGANGenerator(config))


def seeded_random_state_dict(
    config: MelGANConfig | None = None, seed: int = GENERATOR_RECIPE_SEED
) -> dict[str, torch.Tensor]:
    """Random generator weights, the SpecVQGAN fixtures' recipe round 2.

    One ``numpy.random.RandomState(seed)`` walks the state dict in order: ``weight_g`` ~
    U(0.5, 1.5), ``weight_v`` ~ N(0, 1) * sqrt(2 / fan_in), biases 0
    (:func:`audiorep.models.vggishish.recipe_round2_state_dict`). With the defaults these are
    the weights of tests/fixtures/specvqgan_vocoder (|wave| < 0.4: tanh stays near-linear).
    For tests and demos only.
    """
    return recipe_round2_state_dict(generator_state_dict_shapes(config), seed)


# --------------------------------------------------------------------------- discriminator


class _NLayerDiscriminator(nn.Module):
    """One scale: ``(B, 1, N)`` -> list of the maps after ``layer_0`` .. ``layer_{n_layers+2}``.

    Lengths for N samples: N, then /4 per strided layer (ceil), then unchanged.
    """

    def __init__(self, ndf: int, n_layers: int, downsampling_factor: int) -> None:
        super().__init__()
        s = downsampling_factor
        self.model = nn.ModuleDict()
        self.model["layer_0"] = nn.Sequential(
            ReflectionPad1d(7),
            WNConv1d(1, ndf, 15),
            nn.LeakyReLU(LRELU_SLOPE, inplace=True),
        )
        nf = ndf
        for n in range(1, n_layers + 1):
            nf_prev, nf = nf, min(nf * s, 1024)
            self.model[f"layer_{n}"] = nn.Sequential(
                WNConv1d(nf_prev, nf, s * 10 + 1, stride=s, padding=s * 5, groups=nf_prev // 4),
                nn.LeakyReLU(LRELU_SLOPE, inplace=True),
            )
        nf_out = min(nf * 2, 1024)
        self.model[f"layer_{n_layers + 1}"] = nn.Sequential(
            WNConv1d(nf, nf_out, 5, padding=2),  # the original: nf_prev inputs (== nf here)
            nn.LeakyReLU(LRELU_SLOPE, inplace=True),
        )
        self.model[f"layer_{n_layers + 2}"] = WNConv1d(nf_out, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for layer in self.model.values():
            x = layer(x)
            maps.append(x)
        return maps


class MelGANDiscriminator(nn.Module):
    """Multi-scale MelGAN discriminator: ``(B, 1, N)`` -> ``num_D`` lists of feature maps.

    ``forward(x)[i][j]`` is map ``layer_j`` of scale i (scale i sees x average-pooled i times);
    ``[i][-1]`` is the ``(B, 1, ~N / 2**i / 256)`` score. Maps ``layer_0`` ..
    ``layer_{n_layers+1}`` are after LeakyReLU(0.2). Keys: ``model.disc_<i>.model.layer_<n>...``
    (the authors'). Needs ``ndf`` and the channel counts divisible by 4 (the grouped convs have
    4 input channels per group).
    """

    name = "melgan-discriminator"

    def __init__(
        self, num_D: int = 3, ndf: int = 16, n_layers: int = 4, downsampling_factor: int = 4
    ) -> None:
        super().__init__()
        if min(num_D, n_layers, downsampling_factor) < 1 or ndf < 4 or ndf % 4:
            raise ValueError(
                f"{self.name}: need num_D, n_layers, downsampling_factor >= 1 and ndf a "
                f"multiple of 4, got num_D={num_D} ndf={ndf} n_layers={n_layers} "
                f"downsampling_factor={downsampling_factor}"
            )
        self.num_D, self.ndf, self.n_layers = int(num_D), int(ndf), int(n_layers)
        self.downsampling_factor = int(downsampling_factor)
        self.model = nn.ModuleDict(
            {
                f"disc_{i}": _NLayerDiscriminator(ndf, n_layers, downsampling_factor)
                for i in range(num_D)
            }  # fmt: skip
        )
        self.downsample = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def scale_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each scale's input: ``x``, then average-pooled once, twice, ... ``(B, 1, ~N / 2**i)``."""
        xs = [x]
        for _ in range(self.num_D - 1):
            xs.append(self.downsample(xs[-1]))
        return xs

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """``(B, 1, N)`` waveform -> ``[scale][layer]`` feature maps (class docstring)."""
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"{self.name}: expected a waveform (B, 1, N), got {tuple(x.shape)}")
        return [disc(xi) for disc, xi in zip(self.model.values(), self.scale_inputs(x))]

    def init_weights_(self, seed: int | None = None) -> MelGANDiscriminator:
        """Re-initialise as the authors' model effectively starts (see :class:`MelGANGenerator`)."""
        _init_weights(self, seed)
        return self

    def state_dict_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return _state_dict_shapes(self)

    @staticmethod
    def seeded_random_state_dict(
        seed: int = DISCRIMINATOR_RECIPE_SEED, **kwargs: int
    ) -> dict[str, torch.Tensor]:
        return seeded_discriminator_state_dict(seed, **kwargs)


def discriminator_state_dict_shapes(**kwargs: int) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` of :class:`MelGANDiscriminator` ``(**kwargs)``'s state dict, in order."""
    with torch.device("meta"):
        return _state_dict_shapes(MelGANDiscriminator(**kwargs))


def seeded_discriminator_state_dict(
    seed: int = DISCRIMINATOR_RECIPE_SEED, **kwargs: int
) -> dict[str, torch.Tensor]:
    """Random discriminator weights, recipe round 2 (as :func:`seeded_random_state_dict`);
    ``kwargs`` are :class:`MelGANDiscriminator`'s. About 17 M values."""
    return recipe_round2_state_dict(discriminator_state_dict_shapes(**kwargs), seed)
