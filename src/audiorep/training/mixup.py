"""Mixup (Zhang et al., ICLR 2018) for sequences of frame features with multi-hot labels."""

from __future__ import annotations

import torch

__all__ = ["mixup_batch"]


def mixup_batch(
    frames: torch.Tensor, num_frames: torch.Tensor, labels: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blend every example with a random partner of the same batch.

    ``lam ~ Beta(alpha, alpha)`` (one per batch, drawn from the GLOBAL torch RNG so a resumed
    run draws the same values), partner order ``randperm(B)``:
    ``frames' = lam * frames + (1 - lam) * frames[perm]`` ``(B, T, D)``,
    ``labels' = lam * labels + (1 - lam) * labels[perm]`` ``(B, C)`` (soft targets), and
    ``num_frames' = max(num_frames, num_frames[perm])`` - the shorter clip contributes zeros past
    its end, which is how zero-padded batches mix. ``alpha <= 0`` returns the inputs unchanged.
    """
    if alpha <= 0:
        return frames, num_frames, labels
    concentration = torch.tensor([alpha, alpha], dtype=torch.float64)
    lam = float(torch.distributions.Dirichlet(concentration).sample()[0])
    perm = torch.randperm(frames.shape[0]).to(frames.device)
    mixed = torch.lerp(frames[perm], frames, lam)
    mixed_labels = torch.lerp(labels[perm].to(frames.dtype), labels.to(frames.dtype), lam)
    return mixed, torch.maximum(num_frames, num_frames[perm]), mixed_labels
