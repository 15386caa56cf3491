"""Choosing ensemble members on validation predictions only.

:func:`greedy_selection` is Caruana et al.'s forward selection with replacement ("Ensemble
selection from libraries of models", ICML 2004): start from the best single run, then keep
adding the run (possibly again) whose inclusion raises the validation mAP of the averaged
probabilities the most, until no addition helps or ``max_members`` is reached. The eval set is
never looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from audiorep.metrics.classification import average_precision_per_class

__all__ = ["greedy_selection", "predict"]


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities (N, C) float32, labels (N, C) float32)`` of ``model`` (eval mode) over
    ``loader``'s batches (dicts ``embeddings``, ``num_frames``, ``labels``)."""
    was_training = model.training
    model.eval()
    probs, labels = [], []
    try:
        for batch in loader:
            out = model(torch.as_tensor(batch["embeddings"]), torch.as_tensor(batch["num_frames"]))
            probs.append(out["predictions"].float().numpy())
            labels.append(torch.as_tensor(batch["labels"]).float().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(probs), np.concatenate(labels)


def _map(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.nanmean(average_precision_per_class(p, y)))


def greedy_selection(
    predictions: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    max_members: int = 10,
    min_gain: float = 1e-4,
) -> tuple[list[int], list[float]]:
    """Forward selection with replacement on validation mAP.

    Args:
        predictions: every candidate run's validation probabilities, each ``(N, C)``.
        labels: ``(N, C)`` multi-hot validation labels.
        max_members: most members (a run chosen twice counts twice: it gets double weight).
        min_gain: an addition must raise the mAP by more than this.

    Returns:
        ``(chosen run indices in the order added, validation mAP after each addition)``.
    """
    if not predictions:
        raise ValueError("no candidate predictions")
    shapes = {p.shape for p in predictions}
    if len(shapes) != 1 or labels.shape != predictions[0].shape:
        raise ValueError(f"predictions {sorted(shapes)} and labels {labels.shape} differ in shape")
    singles = [_map(p, labels) for p in predictions]
    chosen = [int(np.argmax(singles))]
    scores = [singles[chosen[0]]]
    total = predictions[chosen[0]].astype(np.float64)
    while len(chosen) < max_members:
        trials = [_map((total + p) / (len(chosen) + 1), labels) for p in predictions]
        best = int(np.argmax(trials))
        if trials[best] <= scores[-1] + min_gain:
            break
        chosen.append(best)
        scores.append(trials[best])
        total += predictions[best]
    return chosen, scores
