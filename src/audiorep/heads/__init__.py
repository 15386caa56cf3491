"""YouTube-8M starter classifier heads adapted to AudioSet, plus their training utilities.

Every head is a plain ``nn.Module`` configured by a dataclass (``config`` attribute, JSON round
trip) with the YouTube-8M defaults adapted to AudioSet: 527 classes, 128-d VGGish features,
at most 10 one-second frames.

Forward contract (all heads)::

    out = head(frames, num_frames)
    # frames:     (B, T, 128) float32 dequantized features as audiorep.data's AudioSet
    #             dataset yields them, zero-padded after num_frames (T <= 10 for AudioSet);
    #             frame-level heads L2-normalise each frame (normalize_frames, as train.py)
    # num_frames: (B,) int64
    # out["predictions"]: (B, 527) probabilities (sigmoid, or the MoE mixture), exactly the
    #                     original's "predictions"
    # out["logits"]:      (B, 527) pre-sigmoid scores, only where the output layer is logistic
    #                     (logistic, frame_logistic; dbof/lstm with classifier="logistic")

``head.regularization_loss()`` is the original's L2 penalty (``1e-8 * ||W||^2 / 2`` on the
logistic / MoE weights). Heads (registry names):

========================  ============================  ==========================================
name                      class                         input
========================  ============================  ==========================================
``logistic``              :class:`LogisticModel`        mean of the raw frames, L2-normalised
``moe``                   :class:`MoeModel`             same, mixture of 2 logistic experts
``frame_logistic``        :class:`FrameLevelLogisticModel`  mean of the normalised frames
``dbof``                  :class:`DbofModel`            30 sampled frames, 8192 clusters, 1024
``lstm``                  :class:`LstmModel`            2 x 1024 LSTM, final state
========================  ============================  ==========================================

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


__all__ = [
    "FEATURE_SIZE",
    "HEADS",
    "MAX_FRAMES",
    "NUM_CLASSES",
    "DbofConfig",
    "DbofModel",
    "FrameLevelLogisticConfig",
    "FrameLevelLogisticModel",
    "Head",
    "HeadConfig",
    "LogisticClassifier",
    "LogisticConfig",
    "LogisticModel",
    "LstmConfig",
    "LstmModel",
    "MoeClassifier",
    "MoeConfig",
    "MoeModel",
    "build_head",
    "head_class",
    "head_config",
    "l2_normalize",
    "masked_mean",
    "sample_random_frames",
    "sample_random_sequence",
]
