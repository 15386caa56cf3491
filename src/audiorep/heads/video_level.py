"""Video-level heads (YouTube-8M ``video_level_models.py``): logistic regression and a mixture
of logistic experts, on the mean-pooled frames.

Pooling. YouTube-8M's video-level features (``mean_rgb``, ``mean_audio``) are the average of
the DEQUANTIZED frame features over the video's real frames; AudioSet ships no video-level
file, so the heads compute that mean themselves from the frames the AudioSet dataset yields
(dequantized, not normalised): sum of the first ``num_frames`` frames divided by
``num_frames`` (padded rows excluded). train.py then L2-normalises the video-level vector
(``normalize_pooled=True``, the default). Unlike the frame-level heads, the frames are NOT
normalised one by one first (the original's video-level input is the mean of raw frames).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from audiorep.heads._common import (
    Head,
    HeadConfig,
    check_inputs,
    glorot_uniform_,
    l2_normalize,
    l2_penalty,
    masked_mean,
)

#: Config field of every head's output-bias initialisation. Why it matters: starting at
#: p = 0.5 (bias 0) costs ~365 nats per clip over 527 classes; the first huge gradients fill
#: Adam's second-moment estimates, which then shrink every later step for ~1/(1 - beta2) =
#: 1,000 steps - fatal for the LSTM on bal_train (docs/results.md). -5 ~ AudioSet's label rate.
OUTPUT_BIAS_FIELD = "output_bias_init"

__all__ = [
    "OUTPUT_BIAS_FIELD",
    "LogisticClassifier",
    "LogisticConfig",
    "LogisticModel",
    "MoeClassifier",
    "MoeConfig",
    "MoeModel",
]


class LogisticClassifier(nn.Module):
    """``p = sigmoid(x W + b)``: ``(B, D) -> {"predictions", "logits"}`` each ``(B, C)``.

    W: Glorot uniform, b: ``bias_init`` (0 = slim ``fully_connected``'s default); L2
    ``l2 * ||W||^2 / 2``.
    """

    def __init__(
        self, in_features: int, num_classes: int, l2: float = 1e-8, bias_init: float = 0.0
    ) -> None:
        super().__init__()
        self.l2 = l2
        self.fc = nn.Linear(in_features, num_classes)
        glorot_uniform_(self.fc.weight, in_features, num_classes)
        nn.init.constant_(self.fc.bias, bias_init)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.fc(x)
        return {"predictions": torch.sigmoid(logits), "logits": logits}

    def regularization_loss(self) -> torch.Tensor:
        return l2_penalty([self.fc.weight], self.l2)


class MoeClassifier(nn.Module):
    """Mixture of ``M`` logistic experts per class plus a dummy expert that always says 0.

    ``(B, D) -> {"predictions", "logits"}`` each ``(B, C)``. Gate logits ``x W_g`` (no bias)
    ``(B, C*(M+1))`` are read class-major (class c owns columns ``c*(M+1) ... c*(M+1)+M``),
    softmaxed over the M+1 gates; expert probabilities ``sigmoid(x W_e + b_e)`` ``(B, C*M)``,
    class c owns columns ``c*M ... c*M+M-1``; ``p_c = sum_{m<M} gate_{c,m} * expert_{c,m}``
    (the original's "predictions", computed exactly as before).

    ``logits = log p - log(1 - p)`` computed in log space, never as ``log`` of a rounded
    ``p``: ``log p = logsumexp_m(log gate_m + logsigmoid(z_m))`` over the M real experts and
    ``log(1 - p) = logsumexp(log gate_m + logsigmoid(-z_m), log gate_dummy)`` (the dummy
    expert's ``1 - p`` is 1), so they stay finite where ``p`` rounds to 0 or 1 and
    ``sigmoid(logits) = predictions`` up to float rounding. L2 ``l2 * ||W||^2 / 2`` on both
    weights. The experts' biases start at ``bias_init`` (0 = the original).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        num_mixtures: int = 2,
        l2: float = 1e-8,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        if num_mixtures < 1:
            raise ValueError("num_mixtures must be >= 1")
        self.num_classes = num_classes
        self.num_mixtures = num_mixtures
        self.l2 = l2
        self.gates = nn.Linear(in_features, num_classes * (num_mixtures + 1), bias=False)
        self.experts = nn.Linear(in_features, num_classes * num_mixtures)
        glorot_uniform_(self.gates.weight, in_features, num_classes * (num_mixtures + 1))
        glorot_uniform_(self.experts.weight, in_features, num_classes * num_mixtures)
        nn.init.constant_(self.experts.bias, bias_init)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b, m = x.shape[0], self.num_mixtures
        # Mixture axis first, classes last: a softmax over a short middle axis of a
        # (B, M+1, C) tensor is several times faster on CPU than over a last axis of size 3.
        gate_logits = self.gates(x).view(b, self.num_classes, m + 1).transpose(1, 2).contiguous()
        expert_logits = self.experts(x).view(b, self.num_classes, m).transpose(1, 2)
        log_gates = torch.log_softmax(gate_logits, dim=1)
        gates = torch.softmax(gate_logits, dim=1)
        experts = torch.sigmoid(expert_logits)
        # The (M+1)-th gate belongs to the dummy expert (probability 0): it only takes mass.
        predictions = (gates[:, :m] * experts).sum(dim=1)
        log_p = torch.logsumexp(log_gates[:, :m] + F.logsigmoid(expert_logits), dim=1)
        log_q = torch.logsumexp(
            torch.cat([log_gates[:, :m] + F.logsigmoid(-expert_logits), log_gates[:, m:]], 1),
            dim=1,
        )
        return {"predictions": predictions, "logits": log_p - log_q}

    def regularization_loss(self) -> torch.Tensor:
        return l2_penalty([self.gates.weight, self.experts.weight], self.l2)


def make_classifier(
    kind: str,
    in_features: int,
    num_classes: int,
    num_mixtures: int,
    l2: float,
    bias_init: float = 0.0,
) -> nn.Module:
    """The ``video_level_classifier_model`` of the frame-level heads: "moe" or "logistic"."""
    if kind == "moe":
        return MoeClassifier(in_features, num_classes, num_mixtures, l2, bias_init)
    if kind == "logistic":
        return LogisticClassifier(in_features, num_classes, l2, bias_init)
    raise ValueError(f"classifier must be 'moe' or 'logistic', got {kind!r}")


@dataclasses.dataclass
class LogisticConfig(HeadConfig):
    """LogisticModel. ``l2_penalty`` 1e-8 (the original's default). ``output_bias_init``: the
    output bias at initialisation (0 = the original; -5 ~ AudioSet's label rate, see
    :data:`OUTPUT_BIAS_FIELD`)."""

    l2_penalty: float = 1e-8
    normalize_pooled: bool = True  # train.py L2-normalises video-level features
    output_bias_init: float = 0.0


@dataclasses.dataclass
class MoeConfig(HeadConfig):
    """MoeModel. ``num_mixtures`` 2 (``--moe_num_mixtures``), ``l2_penalty`` 1e-8,
    ``output_bias_init`` of the experts (0 = the original)."""

    num_mixtures: int = 2
    l2_penalty: float = 1e-8
    normalize_pooled: bool = True
    output_bias_init: float = 0.0


class _VideoLevel(Head):
    classifier: nn.Module

    def forward(self, frames: torch.Tensor, num_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """``frames (B, T, D)`` float32, ``num_frames (B,)`` int64 -> ``{"predictions": (B, C)
        probabilities, "logits": (B, C)}``."""
        check_inputs(frames, num_frames, self.config.feature_size)
        pooled = masked_mean(frames, num_frames)
        if self.config.normalize_pooled:
            pooled = l2_normalize(pooled)
        return self.classifier(pooled)

    def regularization_loss(self) -> torch.Tensor:
        return self.classifier.regularization_loss()


class LogisticModel(_VideoLevel):
    """Logistic regression on the mean-pooled (then L2-normalised) frames.

    Output: ``predictions = sigmoid(logits)`` and ``logits``, both ``(B, C)``.
    """

    name = "logistic"
    config_class = LogisticConfig

    def __init__(self, config: LogisticConfig | None = None) -> None:
        config = config or LogisticConfig()
        super().__init__(config)
        self.classifier = LogisticClassifier(
            config.feature_size, config.num_classes, config.l2_penalty, config.output_bias_init
        )


class MoeModel(_VideoLevel):
    """Mixture of logistic experts on the mean-pooled (then L2-normalised) frames.

    Output: ``predictions`` ``(B, C)`` probabilities and their stable ``logits`` (see
    :class:`MoeClassifier`).
    """

    name = "moe"
    config_class = MoeConfig

    def __init__(self, config: MoeConfig | None = None) -> None:
        config = config or MoeConfig()
        super().__init__(config)
        self.classifier = MoeClassifier(
            config.feature_size,
            config.num_classes,
            config.num_mixtures,
            config.l2_penalty,
            config.output_bias_init,
        )
