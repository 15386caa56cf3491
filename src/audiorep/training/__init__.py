"""Training plumbing shared by every loop (YouTube-8M heads now; the SpecVQGAN loops next).

* :mod:`~audiorep.training.checkpoint`: atomic safetensors + JSON checkpoints, exact resume;
* :mod:`~audiorep.training.rng`: RNG capture / restore, seeding;
* :mod:`~audiorep.training.optim`: learning-rate schedules, per-tensor gradient clipping.
"""

from audiorep.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    read_checkpoint_state,
    save_checkpoint,
    verify_checkpoint,
)
from audiorep.training.optim import clip_gradient_norms, learning_rate_at
from audiorep.training.rng import rng_state, seed_everything, set_rng_state

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "read_checkpoint_state",
    "verify_checkpoint",
    "clip_gradient_norms",
    "latest_checkpoint",
    "learning_rate_at",
    "load_checkpoint",
    "prune_checkpoints",
    "rng_state",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]
