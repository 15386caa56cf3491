"""SpecVQGAN's codec training loss (the authors' ``VQLPAPSWithDiscriminator``) and guards.

Generator step (:meth:`VQGANLoss.generator_loss`), for a batch ``x`` and its reconstruction
``xrec`` (both ``(B, 1, 80, W)``, ``[-1, 1]``):

* ``rec = |x - xrec| + perceptual_weight * p`` per pixel, ``p = LPAPS(x, xrec)`` ``(B, 1, 1, 1)``
  broadcast over the pixels (L1 only: the authors' ``pixelloss_weight`` is unused);
  ``nll = mean(rec)``;
* ``g = -mean(D(xrec))``, D the patch-GAN
  (:class:`~audiorep.models.patchgan.PatchGANDiscriminator`);
* adaptive weight ``d_weight = clamp(|grad_W nll| / (|grad_W g| + 1e-4), min, max) * disc_weight``
  (detached) with ``W`` the decoder's last conv weight; 0 when no gradient can be taken
  (validation under ``torch.no_grad``). With the released configs (min = max = 1) it is the
  constant ``float32(0.8)``, but the two gradient norms are still computed every step;
* ``disc_factor = disc_factor if global_step >= disc_start else 0`` (2001 VAS, 30001 VGGSound);
* ``loss = nll + d_weight * disc_factor * g + codebook_weight * mean(codebook_loss)``.

Discriminator step (:meth:`VQGANLoss.discriminator_loss`): hinge with the 0.5 factor,
``disc_factor * 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(xrec)))`` on detached inputs (it
is exactly 0 before ``disc_start``, though D still runs and updates its BatchNorm statistics).

Logs carry the authors' names (``{split}/total_loss`` ... ``{split}/g_loss``;
``{split}/disc_loss``, ``logits_real``, ``logits_fake``), as detached 0-d tensors.

LPAPS is optional: ``perceptual_weight = 0`` or ``lpaps=None`` skip it (``p_loss`` logs 0).
The authors' LPAPS never loaded its weights (Issue #13), so every released codebook was
trained with a *random* perceptual network; their README advises ``perceptual_weight = 0``,
and loading the trained backbone was reverted after NaN losses (Issue #20). Guards for those
failures: :func:`check_finite` (stop with a clear message on a NaN/inf term) and
:func:`warn_if_collapsed` (warn when the codebook collapses onto a few codes).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audiorep.losses.lpaps import LPAPS
from audiorep.models.patchgan import PatchGANDiscriminator

#: Added to the generator gradient norm of the adaptive weight (the authors' value).
ADAPTIVE_EPS = 1e-4


@dataclass
class VQGANLossConfig:
    """The authors' ``lossconfig.params`` (VAS values by default; :meth:`vggsound` starts the
    discriminator at step 30001). ``min_adapt_weight = max_adapt_weight = 1`` turns the
    adaptive weight into the constant ``disc_weight`` (the released configs); the class
    defaults of the original were ``0`` and ``1e4``."""

    disc_start: int = 2001
    disc_weight: float = 0.8
    codebook_weight: float = 1.0
    min_adapt_weight: float = 1.0
    max_adapt_weight: float = 1.0
    perceptual_weight: float = 1.0
    disc_factor: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.disc_start, bool) or not isinstance(self.disc_start, int):
            raise ValueError(
                f"VQGANLossConfig.disc_start must be an integer, got {self.disc_start!r}"
            )
        for f in fields(self):
            if f.name == "disc_start":
                continue
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"VQGANLossConfig.{f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"VQGANLossConfig.{f.name} must be finite and >= 0, got {value}")
        if self.min_adapt_weight > self.max_adapt_weight:
            raise ValueError(
                f"VQGANLossConfig: min_adapt_weight {self.min_adapt_weight} > "
                f"max_adapt_weight {self.max_adapt_weight}"
            )

    @classmethod
    def vas(cls) -> VQGANLossConfig:
        """``configs/vas_codebook.yaml``."""
        return cls(disc_start=2001)

    @classmethod
    def vggsound(cls) -> VQGANLossConfig:
        """``configs/vggsound_codebook.yaml``."""
        return cls(disc_start=30001)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VQGANLossConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"VQGANLossConfig: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**dict(d))


@dataclass(frozen=True)
class AdaptiveWeight:
    """The adaptive GAN weight and the two gradient norms it came from (``nan`` when no
    gradient could be taken)."""

    d_weight: torch.Tensor
    nll_grad_norm: float
    g_grad_norm: float


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """``0.5 * (mean relu(1 - real) + mean relu(1 + fake))``."""
    return 0.5 * (torch.mean(F.relu(1.0 - logits_real)) + torch.mean(F.relu(1.0 + logits_fake)))


def _check_pair(x: torch.Tensor, xrec: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape != xrec.shape:
        raise ValueError(
            "VQGANLoss expects inputs and reconstructions of the same shape (B, 1, mels, frames), "
            f"got {tuple(x.shape)} and {tuple(xrec.shape)}"
        )


class VQGANLoss(nn.Module):
    """The codec's training loss: L1 + LPAPS + patch-GAN hinge + VQ loss (module docstring).

    Submodules ``perceptual_loss`` (when given) and ``discriminator``, in that order, so
    ``state_dict()`` has the keys of a codebook checkpoint's ``loss.*`` entries (without the
    prefix). The discriminator is trained by the caller's second optimizer on
    :meth:`discriminator_loss`; LPAPS stays frozen.
    """

    def __init__(
        self,
        config: VQGANLossConfig | None = None,
        discriminator: PatchGANDiscriminator | None = None,
        lpaps: LPAPS | None = None,
    ):
        super().__init__()
        self.config = config if config is not None else VQGANLossConfig()
        # registered first: the authors' state-dict order (loss.perceptual_loss.* first)
        self.perceptual_loss = lpaps
        self.discriminator = discriminator if discriminator is not None else PatchGANDiscriminator()
        self.last_adaptive: AdaptiveWeight | None = None

    @property
    def uses_perceptual(self) -> bool:
        """Whether LPAPS is computed (a module is set and ``perceptual_weight > 0``)."""
        return self.perceptual_loss is not None and self.config.perceptual_weight > 0

    def disc_factor_at(self, global_step: int) -> float:
        """``disc_factor`` from ``disc_start`` on, 0 before (the authors' ``adopt_weight``)."""
        return self.config.disc_factor if global_step >= self.config.disc_start else 0.0

    def adaptive_weight(
        self, nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor | None
    ) -> AdaptiveWeight:
        """``clamp(|grad nll| / (|grad g| + 1e-4), min, max).detach() * disc_weight``, the
        gradients taken at ``last_layer`` (graphs retained for the caller's backward).

        0 (a float32 tensor) when no gradient can be taken: no ``last_layer``, gradients
        disabled (validation under ``torch.no_grad``), or losses that do not require grad -
        where the authors catch autograd's error and use 0."""
        cfg = self.config
        if (
            last_layer is None
            or not torch.is_grad_enabled()
            or not (nll_loss.requires_grad and g_loss.requires_grad)
        ):
            zero = torch.tensor(0.0, device=nll_loss.device)
            return AdaptiveWeight(zero, math.nan, math.nan)
        nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
        g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        nll_norm, g_norm = torch.norm(nll_grads), torch.norm(g_grads)
        ratio = nll_norm / (g_norm + ADAPTIVE_EPS)
        d_weight = torch.clamp(ratio, cfg.min_adapt_weight, cfg.max_adapt_weight).detach()
        return AdaptiveWeight(d_weight * cfg.disc_weight, float(nll_norm), float(g_norm))

    def generator_loss(
        self,
        codebook_loss: torch.Tensor,
        x: torch.Tensor,
        xrec: torch.Tensor,
        global_step: int,
        last_layer: torch.Tensor | None,
        split: str = "train",
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The autoencoder's loss (optimizer 0) and its logs.

        Args:
            codebook_loss: the quantiser's loss (its mean is used).
            x, xrec: ``(B, 1, mels, frames)`` inputs and reconstructions.
            global_step: the optimisation step (decides ``disc_factor``).
            last_layer: ``model.get_last_layer()`` (the decoder's ``conv_out.weight``).
            split: log-name prefix (``"train"`` / ``"val"``).

        The last :class:`AdaptiveWeight` (with both gradient norms) is kept in
        ``self.last_adaptive`` for extra logging.
        """
        _check_pair(x, xrec)
        rec_loss = torch.abs(x.contiguous() - xrec.contiguous())
        if self.uses_perceptual:
            p_loss = self.perceptual_loss(x.contiguous(), xrec.contiguous())
            rec_loss = rec_loss + self.config.perceptual_weight * p_loss
        else:
            p_loss = torch.zeros(1, device=x.device)
        nll_loss = torch.mean(rec_loss)
        logits_fake = self.discriminator(xrec.contiguous())
        g_loss = -torch.mean(logits_fake)
        adaptive = self.adaptive_weight(nll_loss, g_loss, last_layer)
        self.last_adaptive = adaptive
        d_weight = adaptive.d_weight
        disc_factor = self.disc_factor_at(global_step)
        # the authors' order of operations (float32 rounding of the logged total)
        loss = (
            nll_loss
            + d_weight * disc_factor * g_loss
            + (self.config.codebook_weight * codebook_loss.mean())
        )
        logs = {
            f"{split}/total_loss": loss.clone().detach().mean(),
            f"{split}/quant_loss": codebook_loss.detach().mean(),
            f"{split}/nll_loss": nll_loss.detach().mean(),
            f"{split}/rec_loss": rec_loss.detach().mean(),
            f"{split}/p_loss": p_loss.detach().mean(),
            f"{split}/d_weight": d_weight.detach(),
            f"{split}/disc_factor": torch.tensor(disc_factor),
            f"{split}/g_loss": g_loss.detach().mean(),
        }
        return loss, logs

    def discriminator_loss(
        self, x: torch.Tensor, xrec: torch.Tensor, global_step: int, split: str = "train"
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminator's hinge loss (optimizer 1) on detached inputs, and its logs."""
        _check_pair(x, xrec)
        logits_real = self.discriminator(x.contiguous().detach())
        logits_fake = self.discriminator(xrec.contiguous().detach())
        d_loss = self.disc_factor_at(global_step) * hinge_d_loss(logits_real, logits_fake)
        logs = {
            f"{split}/disc_loss": d_loss.clone().detach().mean(),
            f"{split}/logits_real": logits_real.detach().mean(),
            f"{split}/logits_fake": logits_fake.detach().mean(),
        }
        return d_loss, logs

    def forward(
        self,
        codebook_loss: torch.Tensor,
        x: torch.Tensor,
        xrec: torch.Tensor,
        optimizer_idx: int,
        global_step: int,
        last_layer: torch.Tensor | None = None,
        split: str = "train",
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The authors' call form: ``optimizer_idx`` 0 -> :meth:`generator_loss`, 1 ->
        :meth:`discriminator_loss`."""
        if optimizer_idx == 0:
            return self.generator_loss(codebook_loss, x, xrec, global_step, last_layer, split)
        if optimizer_idx == 1:
            return self.discriminator_loss(x, xrec, global_step, split)
        raise ValueError(
            f"optimizer_idx must be 0 (generator) or 1 (discriminator), got {optimizer_idx}"
        )


# ----------------------------------------------------------------------------- guards


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; training stopped (see :func:`check_finite`).

    ``terms``: the non-finite log names; ``step``: the step."""

    def __init__(self, message: str, terms: list[str], step: int):
        super().__init__(message)
        self.terms, self.step = list(terms), step


def _as_float(value: Any) -> float:
    if torch.is_tensor(value):
        return float(value.detach().float().mean()) if value.numel() else math.nan
    return float(value)


def check_finite(
    logs: Mapping[str, Any],
    step: int,
    last_finite: Mapping[str, float] | None = None,
    last_step: int | None = None,
) -> dict[str, float]:
    """Raise :class:`NonFiniteLossError` if any logged term is NaN or infinite.

    Args:
        logs: ``{name: value}`` (tensors or numbers), e.g. :meth:`VQGANLoss.generator_loss`'s.
        step: the current step (named in the message).
        last_finite, last_step: the values returned by the previous call, quoted in the
            message so the user sees where the run was before it diverged.

    Returns ``{name: float}`` of ``logs``, to pass as ``last_finite`` next time.

    SpecVQGAN users saw the codebook loss turn NaN after the first epoch once LPAPS weights were
    really loaded (Issues #13, #20); the message suggests the usual remedies.
    """
    values = {str(k): _as_float(v) for k, v in logs.items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if not bad:
        return values
    what = ", ".join(f"{k} is {'NaN' if math.isnan(values[k]) else values[k]}" for k in bad)
    if last_finite:
        at = f" (step {last_step})" if last_step is not None else ""
        before = (
            "; last finite values"
            + at
            + ": "
            + ", ".join(f"{k}={v:.6g}" for k, v in last_finite.items() if math.isfinite(v))
        )
    else:
        before = "; no earlier finite values recorded"
    raise NonFiniteLossError(
        f"training stopped: {what} at step {step}{before}; try a lower learning rate or "
        "perceptual_weight=0 (the SpecVQGAN codebook loss went NaN with LPAPS weights loaded, "
        "SpecVQGAN issue #20)",
        bad,
        step,
    )


class CodebookCollapseWarning(UserWarning):
    """Few codebook entries are in use (see :func:`warn_if_collapsed`)."""


def warn_if_collapsed(
    counts: torch.Tensor | Any,
    step: int,
    min_codes: int = 2,
    min_fraction: float = 0.01,
) -> int:
    """Warn (:class:`CodebookCollapseWarning`) when the codebook has collapsed.

    Args:
        counts: per-code usage counts ``(n_embed,)`` over a window (an epoch, a validation
            pass), e.g. :func:`audiorep.models.vqgan.code_usage` summed over batches.
        step: named in the message.
        min_codes: warn when at most this many codes are used (SpecVQGAN Issue #20 reported a
            collapse onto a single code).
        min_fraction: also warn when fewer than this fraction of the codebook is used.

    Returns the number of codes used. Empty counts (nothing seen) return 0 without a warning.
    """
    c = torch.as_tensor(counts).reshape(-1)
    if c.numel() == 0 or int(c.sum()) == 0:
        return 0
    used = int((c > 0).sum())
    n = c.numel()
    if used <= min_codes or used < min_fraction * n:
        top = torch.topk(c.double(), k=min(3, n))
        share = float(top.values.sum() / c.sum())
        warnings.warn(
            f"codebook collapse at step {step}: {used} of {n} codes in use (the top "
            f"{min(3, n)} codes {top.indices.tolist()} take {share:.1%} of the positions); "
            "the reconstructions carry little information. Try a lower learning rate or "
            "perceptual_weight=0 (SpecVQGAN issue #20)",
            CodebookCollapseWarning,
            stacklevel=2,
        )
    return used


__all__ = [
    "ADAPTIVE_EPS",
    "AdaptiveWeight",
    "CodebookCollapseWarning",
    "NonFiniteLossError",
    "VQGANLoss",
    "VQGANLossConfig",
    "check_finite",
    "hinge_d_loss",
    "warn_if_collapsed",
]
