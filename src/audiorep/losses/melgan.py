"""MelGAN vocoder losses and one training step, as in SpecVQGAN's ``vocoder/scripts/train.py``.

The discriminator maps are what :class:`audiorep.models.melgan.MelGANDiscriminator` returns:
``maps[i][j]`` is feature map j of scale i, ``maps[i][-1]`` the scale's score.

* D: hinge, ``sum_i mean(relu(1 + D_fake[i][-1])) + sum_i mean(relu(1 - D_real[i][-1]))`` -
  a SUM over scales and no 0.5 factor (unlike the codebook's hinge loss);
* G: ``sum_i -mean(D_fake[i][-1])`` + ``lambda_feat`` (10) x feature matching
  ``sum_i sum_{j < last} (1 / num_D) (4 / (n_layers_D + 1)) L1(D_fake[i][j], D_real[i][j])``;
* ``s_error`` (:func:`mel_l1`): L1 between the target's [0, 1] mel and the generated waveform's,
  only monitored (it picks ``best_netG.pt``), never backpropagated.

:func:`melgan_training_step` runs one step in the authors' statement order: G forward,
``s_error``, D on the detached fake and on the real batch, D loss, D Adam step, then the G terms
with the UPDATED D on the fake and the real features from BEFORE the update, G step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from audiorep.frontends.specvqgan import mel_spectrogram

FeatureMaps = Sequence[Sequence[torch.Tensor]]

__all__ = [
    "discriminator_hinge_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "mel_l1",
    "mel_reconstruction_loss",
    "melgan_training_step",
]


def _check_maps(maps: FeatureMaps, what: str) -> None:
    if len(maps) == 0 or any(len(scale) == 0 for scale in maps):
        raise ValueError(f"{what}: expected a non-empty list over scales of lists of feature maps")


def discriminator_hinge_loss(fake_maps: FeatureMaps, real_maps: FeatureMaps) -> torch.Tensor:
    """``sum_i mean(relu(1 + fake[i][-1])) + sum_i mean(relu(1 - real[i][-1]))`` (0-d).

    The authors' order: every fake term, then every real term. Pass the maps of the DETACHED
    fake waveform so the D loss does not reach the generator.
    """
    _check_maps(fake_maps, "discriminator_hinge_loss(fake_maps)")
    _check_maps(real_maps, "discriminator_hinge_loss(real_maps)")
    terms = [F.relu(1 + scale[-1]).mean() for scale in fake_maps]
    terms += [F.relu(1 - scale[-1]).mean() for scale in real_maps]
    return _sum_in_order(terms)


def generator_adversarial_loss(fake_maps: FeatureMaps) -> torch.Tensor:
    """``sum_i -mean(fake[i][-1])`` over scales (0-d): the generator's hinge-GAN term."""
    _check_maps(fake_maps, "generator_adversarial_loss")
    return _sum_in_order([-scale[-1].mean() for scale in fake_maps])


def feature_matching_loss(
    fake_maps: FeatureMaps,
    real_maps: FeatureMaps,
    n_layers_D: int = 4,
    num_D: int = 3,
) -> torch.Tensor:
    """``sum_i sum_{j < last} (1/num_D) (4/(n_layers_D + 1)) L1(fake[i][j], real[i][j])`` (0-d).

    L1 is the mean absolute difference of each map pair; the real maps are detached (the
    target). ``num_D`` and ``n_layers_D`` are the discriminator's (3 and 4 in the authors'
    ``args.yml``); they must agree with the maps (num_D scales of n_layers_D + 3 maps).
    """
    _check_maps(fake_maps, "feature_matching_loss(fake_maps)")
    if len(fake_maps) != num_D or len(real_maps) != num_D:
        raise ValueError(
            f"feature_matching_loss: num_D={num_D} but got {len(fake_maps)} fake and "
            f"{len(real_maps)} real scales"
        )
    weight = (1.0 / num_D) * (4.0 / (n_layers_D + 1))
    terms = []
    for fake, real in zip(fake_maps, real_maps):
        if len(fake) != n_layers_D + 3 or len(real) != len(fake):
            raise ValueError(
                f"feature_matching_loss: n_layers_D={n_layers_D} means {n_layers_D + 3} maps per "
                f"scale, got {len(fake)} fake and {len(real)} real"
            )
        terms += [weight * F.l1_loss(f, r.detach()) for f, r in zip(fake[:-1], real[:-1])]
    return _sum_in_order(terms)


def _sum_in_order(terms: list[torch.Tensor]) -> torch.Tensor:
    """Left-to-right sum (the authors' ``loss += term`` loop; the float32 rounding follows)."""
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def _waveform_mel(
    mel_target: torch.Tensor, waveform: torch.Tensor, compute_dtype: torch.dtype, who: str
) -> torch.Tensor:
    """Mel of ``waveform`` cut to the target's frames, in the target's dtype and device."""
    if waveform.dim() == mel_target.dim() and waveform.shape[-2] == 1:
        waveform = waveform.squeeze(-2)  # (B, 1, N) -> (B, N)
    if waveform.shape[:-1] != mel_target.shape[:-2]:
        raise ValueError(
            f"{who}: waveform {tuple(waveform.shape)} does not match mel target "
            f"{tuple(mel_target.shape)} (expected (..., N) or (..., 1, N) for (..., 80, T))"
        )
    frames = mel_target.shape[-1]
    # "librosa returns a weird number of frames": 1 + N // 256, cut to the target's T
    mel = mel_spectrogram(waveform, None, max_frames=None, compute_dtype=compute_dtype)
    if mel.shape[-1] < frames or mel.shape[-2] != mel_target.shape[-2]:
        raise ValueError(
            f"{who}: the waveform's mel {tuple(mel.shape)} cannot cover the target "
            f"{tuple(mel_target.shape)}"
        )
    return mel[..., :frames].to(device=mel_target.device, dtype=mel_target.dtype)


def mel_l1(
    mel_target: torch.Tensor,
    waveform: torch.Tensor,
    *,
    compute_dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The authors' ``s_error``: mean |mel_target - mel(waveform)|, without gradients (0-d).

    Args:
        mel_target: ``(B, 80, T)`` [0, 1] mel (the authors' front end) of the real audio.
        waveform: ``(B, 1, N)`` or ``(B, N)`` generated audio, ``N >= 256 (T - 1)``; its mel
            (:func:`audiorep.frontends.specvqgan.mel_spectrogram` on the samples as they are,
            ``1 + N // 256`` frames) is cut to the first T frames.
        compute_dtype: of the STFT; float64 is within 1.3e-7 of the authors' librosa mel.
    """
    with torch.no_grad():
        pred = _waveform_mel(mel_target, waveform.detach(), compute_dtype, "mel_l1")
        return F.l1_loss(mel_target.detach(), pred)


def mel_reconstruction_loss(
    mel_target: torch.Tensor,
    waveform: torch.Tensor,
    *,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """:func:`mel_l1` with gradients to ``waveform`` (float32 STFT by default) (0-d).

    Not part of the authors' recipe (their generator sees only the adversarial and
    feature-matching terms); an optional extra term for :func:`melgan_training_step`. Its
    gradient is zero where the mel floor (-100 dB) or the [0, 1] clip is active.
    """
    pred = _waveform_mel(mel_target, waveform, compute_dtype, "mel_reconstruction_loss")
    return F.l1_loss(pred, mel_target.detach())


def melgan_training_step(
    generator: nn.Module,
    discriminator: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    wave: torch.Tensor,
    mel: torch.Tensor,
    *,
    lambda_feat: float = 10.0,
    mel_loss_weight: float = 0.0,
) -> dict[str, float]:
    """One MelGAN training step (D step, then G step), the authors' statement order.

    Args:
        generator, discriminator: :class:`~audiorep.models.melgan.MelGANGenerator` and
            :class:`~audiorep.models.melgan.MelGANDiscriminator` (or modules with the same
            call signatures), on the device of ``wave`` and ``mel``.
        opt_g, opt_d: their optimisers (the authors: Adam lr 1e-4, betas (0.5, 0.9)).
        wave: ``(B, 1, N)`` real audio crops (the authors: N = 8192).
        mel: ``(B, 80, N // 256)`` their [0, 1] mels (the front end's ``1 + N // 256`` frames cut
            to ``N // 256``).
        lambda_feat: weight of the feature-matching term (``args.yml``: 10).
        mel_loss_weight: weight of :func:`mel_reconstruction_loss` added to the generator's
            loss; 0 (the authors' recipe) skips it.

    Returns:
        ``loss_D``, ``loss_G`` (adversarial, with the updated D), ``loss_feat``,
        ``loss_G_total`` (the backpropagated generator loss), ``s_error`` (:func:`mel_l1`
        of the batch before the G step), and ``loss_mel`` when ``mel_loss_weight != 0``.
    """
    n_layers_d = getattr(discriminator, "n_layers", None)
    num_d = getattr(discriminator, "num_D", None)

    pred = generator(mel)
    s_error = mel_l1(mel, pred)

    # discriminator step
    d_fake_det = discriminator(pred.detach())
    d_real = discriminator(wave)
    loss_d = discriminator_hinge_loss(d_fake_det, d_real)
    discriminator.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()

    # generator step: D frozen, so the backward pass skips the (unused) D weight gradients
    trainable = [p for p in discriminator.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        d_fake = discriminator(pred)  # the UPDATED discriminator
        loss_g = generator_adversarial_loss(d_fake)
        loss_feat = feature_matching_loss(
            d_fake,
            d_real,  # real features from BEFORE the D step, as the authors
            n_layers_D=n_layers_d if n_layers_d is not None else len(d_fake[0]) - 3,
            num_D=num_d if num_d is not None else len(d_fake),
        )
        total = loss_g + lambda_feat * loss_feat
        loss_mel = None
        if mel_loss_weight:
            loss_mel = mel_reconstruction_loss(mel, pred)
            total = total + mel_loss_weight * loss_mel
        generator.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
    finally:
        for p in trainable:
            p.requires_grad_(True)

    out = {
        "loss_D": loss_d.item(),
        "loss_G": loss_g.item(),
        "loss_feat": loss_feat.item(),
        "loss_G_total": total.item(),
        "s_error": s_error.item(),
    }
    if loss_mel is not None:
        out["loss_mel"] = loss_mel.item()
    return out
