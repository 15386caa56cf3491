"""Named training recipes for ``audiorep train-classifier --recipe NAME``.

A recipe is a set of command-line defaults (train config fields, batch size, epochs, the
validation split); flags given explicitly still win. ``yt8m`` is YouTube-8M's train.py as it
is. ``converge`` is what trains a head to convergence on a small set such as AudioSet's
bal_train (22k clips): a seeded stratified validation split for selection and early stopping,
BCE on logits, AdamW with a warm-up + cosine schedule, mixup and a weight average - the
settings chosen on validation in docs/results.md. Per-head settings override it where the
validation runs (or the CPU budget) said so (:data:`HEAD_SETTINGS`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["HEAD_SETTINGS", "RECIPES", "recipe"]

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
        # head config fields set where the head has them (``--set`` still wins): the output
        # bias starts near AudioSet's label rate instead of p = 0.5 (heads/video_level.py)
        "head_config": {"output_bias_init": -5.0},
    },
}

#: ``converge`` settings per head where validation (or the CPU budget) asked for others; a
#: ``head_config`` here is merged over the recipe's.
HEAD_SETTINGS: dict[str, dict[str, Any]] = {
    # validation mAP of 40-epoch runs: 0.003: 0.032, 0.03: 0.279, 0.1: 0.309, 0.3: 0.308
    "logistic": {"base_learning_rate": 0.1},
    # 0.03: 0.256, 0.1: 0.289, 0.3: 0.291 (stopped at epoch 29)
    "frame_logistic": {"base_learning_rate": 0.1},
    # 0.01: 0.263, 0.03: 0.309, 0.1: 0.303
    "moe": {"base_learning_rate": 0.03},
    # 2 x 1024: 0.328, 2 x 2048: 0.329, 3 x 1024: 0.335 (all lr 1e-3)
    "mlp": {"head_config": {"num_layers": 3}},
    # YouTube-8M's 2 x 1024 LSTM trains at ~100 examples/s on one core: 8 epochs is the CPU
    # budget here, so a larger step and no mixup (which slows early progress)
    "lstm": {"base_learning_rate": 0.003, "mixup_alpha": 0.0, "epochs": 8},
    # DBoF (8192 clusters, 1024 hidden): ~80 updates per epoch, so batch-norm statistics must
    # follow faster than slim's 0.999 decay (0.999^800 leaves 45 % of the initial values)
    "dbof": {"head_config": {"bn_momentum": 0.01}, "epochs": 10},
    # the papers' 3 x 1024 per-frame layers cost ~80 s per epoch on one core here: 512 wide
    "decision_attention": {"head_config": {"hidden_size": 512}, "epochs": 20},
    "feature_attention": {"head_config": {"hidden_size": 512, "pooled_size": 512}, "epochs": 40},
    "multilevel_attention": {"head_config": {"hidden_size": 512}, "epochs": 20},
}


def recipe(name: str, head: str) -> dict[str, Any]:
    """The defaults of recipe ``name`` for head ``head`` (a copy)."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in RECIPES[name].items()}
    if name == "converge":
        extra = HEAD_SETTINGS.get(head, {})
        out.update({k: v for k, v in extra.items() if k != "head_config"})
        out["head_config"] = {**out.get("head_config", {}), **extra.get("head_config", {})}
    return out
