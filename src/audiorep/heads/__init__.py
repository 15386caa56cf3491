"""Classifier heads on AudioSet's VGGish frame features: the YouTube-8M starter models adapted
to AudioSet, attention heads from the AudioSet tagging literature, an MLP and an ensemble,
plus their training utilities.

Every head is a plain ``nn.Module`` configured by a dataclass (``config`` attribute, JSON round
trip) with the YouTube-8M defaults adapted to AudioSet: 527 classes, 128-d VGGish features,
at most 10 one-second frames.

Forward contract (all heads)::

    out = head(frames, num_frames)
    # frames:     (B, T, 128) float32 dequantized features as audiorep.data's AudioSet
    #             dataset yields them, zero-padded after num_frames (T <= 10 for AudioSet);
    #             frame-level heads L2-normalise each frame (normalize_frames, as train.py)
    # num_frames: (B,) int64
    # out["predictions"]: (B, 527) probabilities (sigmoid, the MoE mixture, an attention-
    #                     weighted mean); for the YouTube-8M heads exactly the original's
    # out["logits"]:      (B, 527) with sigmoid(logits) = predictions up to float rounding,
    #                     for EVERY head (mixtures: log p - log(1 - p) computed in log space)

``head.regularization_loss()`` is the original's L2 penalty for the YouTube-8M heads
(``1e-8 * ||W||^2 / 2`` on the logistic / MoE weights) and 0 for the attention and MLP heads
(use weight decay). Heads (registry names):

==========================  ==================================  ==================================
name                        class                               model
==========================  ==================================  ==================================
``logistic``                :class:`LogisticModel`              mean of the raw frames,
                                                                L2-normalised, logistic
``moe``                     :class:`MoeModel`                   same, mixture of 2 logistic
                                                                experts
``frame_logistic``          :class:`FrameLevelLogisticModel`    mean of the normalised frames
``dbof``                    :class:`DbofModel`                  30 sampled frames, 8192
                                                                clusters, 1024
``lstm``                    :class:`LstmModel`                  2 x 1024 LSTM, final state
``decision_attention``      :class:`DecisionAttentionModel`     3 x 1024 frame MLP, per-class
                                                                attention over the frames'
                                                                probabilities (Kong 2018)
``feature_attention``       :class:`FeatureAttentionModel`      3 x 1024 frame MLP, attention
                                                                pooling per hidden unit, linear
                                                                classifier (Kong 2019)
``multilevel_attention``    :class:`MultiLevelAttentionModel`   decision attention on the last 2
                                                                of 3 MLP layers, linear fusion
                                                                of their logits (Yu 2018)
``mlp``                     :class:`MlpModel`                   mean + max pooling, 2 x 1024 MLP
``ensemble``                :class:`EnsembleModel`              mean of its members'
                                                                probabilities
==========================  ==================================  ==================================

The attention and MLP heads are in :mod:`audiorep.heads.attention` (padded frames masked
out, input batch norm by default), the ensemble in :mod:`audiorep.heads.ensemble`.

Training: :mod:`audiorep.heads.training` (losses, Adam + decay schedule + per-tensor clipping,
``train_classifier`` with exact resume, ``evaluate_classifier``).
"""

from __future__ import annotations

from typing import Any

from audiorep.heads._common import (
    FEATURE_SIZE,
    MAX_FRAMES,
    NUM_CLASSES,
    Head,
    HeadConfig,
    l2_normalize,
    masked_mean,
)
from audiorep.heads.attention import (
    DecisionAttentionConfig,
    DecisionAttentionModel,
    FeatureAttentionConfig,
    FeatureAttentionModel,
    MlpConfig,
    MlpModel,
    MultiLevelAttentionConfig,
    MultiLevelAttentionModel,
)
from audiorep.heads.ensemble import EnsembleConfig, EnsembleModel, set_member_builder
from audiorep.heads.frame_level import (
    DbofConfig,
    DbofModel,
    FrameLevelLogisticConfig,
    FrameLevelLogisticModel,
    LstmConfig,
    LstmModel,
    sample_random_frames,
    sample_random_sequence,
)
from audiorep.heads.video_level import (
    LogisticClassifier,
    LogisticConfig,
    LogisticModel,
    MoeClassifier,
    MoeConfig,
    MoeModel,
)

#: Registry name -> head class (each has ``config_class``).
HEADS: dict[str, type[Head]] = {
    "logistic": LogisticModel,
    "moe": MoeModel,
    "frame_logistic": FrameLevelLogisticModel,
    "dbof": DbofModel,
    "lstm": LstmModel,
    "decision_attention": DecisionAttentionModel,
    "feature_attention": FeatureAttentionModel,
    "multilevel_attention": MultiLevelAttentionModel,
    "mlp": MlpModel,
    "ensemble": EnsembleModel,
}

# The original's class names (``--model`` values) are accepted too.
_ALIASES = {
    "LogisticModel": "logistic",
    "MoeModel": "moe",
    "FrameLevelLogisticModel": "frame_logistic",
    "DbofModel": "dbof",
    "LstmModel": "lstm",
}


def head_class(name: str) -> type[Head]:
    """The head class for a registry name (or the original's class name)."""
    key = _ALIASES.get(name, name)
    if key not in HEADS:
        raise KeyError(f"unknown head {name!r}; choose from {sorted(HEADS)}")
    return HEADS[key]


def head_config(name: str, **overrides: Any) -> HeadConfig:
    """The default config of head ``name`` with ``overrides`` applied (unknown keys raise)."""
    return head_class(name).config_class.from_dict(overrides)


def build_head(
    name: str, config: HeadConfig | dict[str, Any] | None = None, **overrides: Any
) -> Head:
    """Build head ``name`` from its defaults, an optional ``config`` (dataclass or dict) and
    keyword ``overrides``, e.g. ``build_head("dbof", cluster_size=2048)``."""
    cls = head_class(name)
    if isinstance(config, HeadConfig):
        if not isinstance(config, cls.config_class):
            raise TypeError(f"{name} needs a {cls.config_class.__name__}")
        config = config.to_dict()
    cfg = cls.config_class.from_dict({**(config or {}), **overrides})
    return cls(cfg)


# The ensemble builds its members by registry name (it cannot import this package: a cycle).
set_member_builder(build_head)


__all__ = [
    "FEATURE_SIZE",
    "HEADS",
    "MAX_FRAMES",
    "NUM_CLASSES",
    "DbofConfig",
    "DbofModel",
    "DecisionAttentionConfig",
    "DecisionAttentionModel",
    "EnsembleConfig",
    "EnsembleModel",
    "FeatureAttentionConfig",
    "FeatureAttentionModel",
    "FrameLevelLogisticConfig",
    "FrameLevelLogisticModel",
    "Head",
    "HeadConfig",
    "LogisticClassifier",
    "LogisticConfig",
    "LogisticModel",
    "LstmConfig",
    "LstmModel",
    "MlpConfig",
    "MlpModel",
    "MoeClassifier",
    "MoeConfig",
    "MoeModel",
    "MultiLevelAttentionConfig",
    "MultiLevelAttentionModel",
    "build_head",
    "head_class",
    "head_config",
    "l2_normalize",
    "masked_mean",
    "sample_random_frames",
    "sample_random_sequence",
]
