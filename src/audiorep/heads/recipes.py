"""Named training recipes for ``audiorep train-classifier --recipe NAME``.

A recipe is a set of command-line defaults (train config fields, batch size, epochs, the
validation split); flags given explicitly still win. ``yt8m`` is YouTube-8M's train.py as it
is. ``converge`` is what trains a head to convergence on a small set such as AudioSet's
bal_train (22k clips): a seeded stratified validation split for selection and early stopping,
BCE on logits, AdamW with a warm-up + cosine schedule, mixup and a weight average - the
settings chosen on validation in docs/results.md. Per-head learning rates override it where the
validation runs said so (:data:`HEAD_LEARNING_RATES`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["HEAD_LEARNING_RATES", "RECIPES", "recipe"]

RECIPES: dict[str, dict[str, Any]] = {
    "yt8m": {},
    "converge": {
        "label_loss": "bce_logits",
        "optimizer": "adamw",
        "weight_decay": 1e-4,
        "base_learning_rate": 1e-3,
        "schedule": "cosine",
        "warmup_epochs": 1.0,
        "final_lr_fraction": 0.01,
        "clip_mode": "global",
        "clip_gradient_norm": 10.0,
        "mixup_alpha": 1.0,
        "ema_decay": 0.999,
        "patience": 10,
        "valid_fraction": 0.1,
        "batch_size": 256,
        "epochs": 60,
    },
}

#: ``converge`` learning rates per head where the default 1e-3 was not the best on validation.
#: Chosen by validation mAP over 40-epoch runs (docs/results.md): the linear heads on the
#: L2-normalised mean want a far larger step than the deep ones.
HEAD_LEARNING_RATES: dict[str, float] = {
    "logistic": 0.1,  # 0.003: 0.032, 0.03: 0.279, 0.1: 0.309, 0.3: 0.308
    "frame_logistic": 0.1,  # 0.03: 0.256, 0.1: 0.289, 0.3: 0.291 (stopped at epoch 29)
    "moe": 0.03,  # 0.01: 0.263, 0.03: 0.309, 0.1: 0.303
}


def recipe(name: str, head: str) -> dict[str, Any]:
    """The defaults of recipe ``name`` for head ``head`` (a copy)."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}")
    out = dict(RECIPES[name])
    if name == "converge" and head in HEAD_LEARNING_RATES:
        out["base_learning_rate"] = HEAD_LEARNING_RATES[head]
    return out
