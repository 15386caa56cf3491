"""Shared pieces of the heads: config base class, frame pooling, L2 penalty, initialisers."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, TypeVar

import torch
from torch import nn

#: AudioSet defaults: 527 classes (class_labels_indices.csv), 128-d VGGish PCA features,
#: at most 10 one-second frames per segment.
NUM_CLASSES = 527
FEATURE_SIZE = 128
MAX_FRAMES = 10

C = TypeVar("C", bound="HeadConfig")


@dataclasses.dataclass
class HeadConfig:
    """Base of the head configs: a flat dataclass of JSON scalars with a dict/JSON round trip."""

    num_classes: int = NUM_CLASSES
    feature_size: int = FEATURE_SIZE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, **kwargs)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build from a dict; unknown keys raise (a typo must not silently fall back)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def replace(self: C, **overrides: Any) -> C:
        return self.from_dict({**self.to_dict(), **overrides})


def frame_mask(num_frames: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B, T)`` bool, True for the first ``num_frames[b]`` frames of each row."""
    steps = torch.arange(max_len, device=num_frames.device)
    return steps[None, :] < num_frames.to(steps.device)[:, None]


def masked_mean(frames: torch.Tensor, num_frames: torch.Tensor) -> torch.Tensor:
    """Mean of the valid frames: ``(B, T, D)``, ``(B,)`` -> ``(B, D)``.

    Padded rows are excluded explicitly (the original sums all rows, relying on zero padding,
    then divides by num_frames). A row with ``num_frames == 0`` gives zeros instead of the
    original's NaN (division by zero).
    """
    mask = frame_mask(num_frames, frames.shape[1]).to(frames.dtype)
    total = torch.einsum("btd,bt->bd", frames, mask)
    count = num_frames.to(device=frames.device, dtype=frames.dtype).clamp(min=1.0)
    return total / count[:, None]


def l2_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``x / sqrt(max(sum x^2, 1e-12))`` along ``dim``, as ``tf.nn.l2_normalize`` (zeros stay
    zero). train.py/eval.py apply it to every frame (frame features) or to the video vector."""
    return x * torch.rsqrt(x.square().sum(dim=dim, keepdim=True).clamp(min=1e-12))


def l2_penalty(weights: list[torch.Tensor], scale: float) -> torch.Tensor:
    """slim ``l2_regularizer(scale)`` summed over ``weights``: ``scale * sum(w^2) / 2``."""
    total = sum(w.square().sum() for w in weights)
    return scale * 0.5 * total


def glorot_uniform_(w: torch.Tensor, fan_in: int, fan_out: int) -> torch.Tensor:
    """Uniform(-l, l), ``l = sqrt(6 / (fan_in + fan_out))`` (TF's glorot / slim's xavier)."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.uniform_(-limit, limit)


def check_inputs(frames: torch.Tensor, num_frames: torch.Tensor, feature_size: int) -> None:
    if frames.ndim != 3 or frames.shape[-1] != feature_size:
        raise ValueError(f"frames must be (B, T, {feature_size}), got {tuple(frames.shape)}")
    if num_frames.shape != frames.shape[:1]:
        raise ValueError(
            f"num_frames must be (B,) = ({frames.shape[0]},), got {tuple(num_frames.shape)}"
        )


class Head(nn.Module):
    """Base of all heads: ``forward(frames, num_frames) -> dict``; ``regularization_loss()``.

    Subclasses set ``name`` (registry name) and ``config_class`` and keep ``self.config``.
    """

    name: str = ""
    config_class: type[HeadConfig] = HeadConfig

    def __init__(self, config: HeadConfig) -> None:
        super().__init__()
        self.config = config

    def regularization_loss(self) -> torch.Tensor:  # pragma: no cover - overridden
        """The model's weight penalty (the original's slim regularisation losses), a scalar."""
        raise NotImplementedError
