"""Seeded multi-label stratified splits (a validation set carved from a training split).

:func:`stratified_split` implements iterative stratification (Sechidis, Tsoumakas and Vlahavas,
"On the stratification of multi-label data", ECML PKDD 2011): examples are placed label by
label, rarest label first, each into the subset that still wants the most examples of that
label, so that every class keeps (within one example) the requested share in each subset -
which a random split cannot promise for AudioSet's rare classes (59 examples per class in
bal_train for most classes). The result depends only on the labels, the fraction and the seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from audiorep.data.packed import PackedAudioSet

__all__ = ["stratified_split", "subset_of_record", "validation_split"]


def stratified_split(
    label_lists: Sequence[Sequence[int]], fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split examples into ``(kept, held_out)`` index arrays (int64, ascending).

    Args:
        label_lists: the class indices of every example (an example may have none).
        fraction: share of the examples (and of every class's examples) held out, in (0, 1).
        seed: the split's seed (numpy ``default_rng``; no global RNG is touched).

    Examples without labels are spread by the subsets' overall wants. Ties (equal wants) are
    broken at random with the seeded generator.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = len(label_lists)
    if n < 2:
        raise ValueError(f"need at least 2 examples to split, got {n}")
    rng = np.random.default_rng(seed)
    labels = [np.unique(np.asarray(ls, dtype=np.int64)) for ls in label_lists]
    num_classes = max((int(ls.max()) + 1 for ls in labels if ls.size), default=0)
    shares = np.array([1.0 - fraction, fraction])
    counts = np.zeros(num_classes, dtype=np.float64)
    for ls in labels:
        counts[ls] += 1
    wants_label = shares[:, None] * counts[None, :]  # (2, C) examples still wanted
    wants_total = shares * n
    remaining = counts.copy()  # examples of each class not yet placed
    by_label: list[list[int]] = [[] for _ in range(num_classes)]
    for i in rng.permutation(n):  # seeded order within each class
        for c in labels[i]:
            by_label[c].append(int(i))
    subset = np.full(n, -1, dtype=np.int64)

    def place(i: int, wants: np.ndarray) -> None:
        best = np.flatnonzero(wants == wants.max())
        if best.size > 1:  # then the subset that wants the most examples overall
            totals = wants_total[best]
            best = best[totals == totals.max()]
        s = int(best[0] if best.size == 1 else rng.choice(best))
        subset[i] = s
        wants_label[s, labels[i]] -= 1
        wants_total[s] -= 1
        remaining[labels[i]] -= 1

    while True:
        open_classes = np.flatnonzero(remaining > 0)
        if open_classes.size == 0:
            break
        fewest = remaining[open_classes].min()
        rarest = open_classes[remaining[open_classes] == fewest]
        c = int(rarest[0] if rarest.size == 1 else rng.choice(rarest))
        for i in by_label[c]:
            if subset[i] < 0:
                place(i, wants_label[:, c].copy())
    for i in rng.permutation(n):  # examples without labels
        if subset[i] < 0:
            place(int(i), wants_total.copy())
    kept, held = np.flatnonzero(subset == 0), np.flatnonzero(subset == 1)
    if kept.size == 0 or held.size == 0:
        raise ValueError(f"fraction {fraction} of {n} examples leaves an empty subset")
    return kept.astype(np.int64), held.astype(np.int64)


def validation_split(
    data: PackedAudioSet, fraction: float, seed: int = 0
) -> tuple[PackedAudioSet, PackedAudioSet, dict]:
    """``(train, valid, record)``: :func:`stratified_split` of a packed split; ``record`` is
    JSON (method, fraction, seed, sizes and the held-out ``[video_id, start_time]`` pairs) for
    a run to save and for :func:`subset_of_record` to rebuild the same validation set."""
    kept, held = stratified_split(data.label_lists(), fraction, seed)
    record = {
        "method": "iterative stratification (Sechidis et al. 2011)",
        "fraction": fraction,
        "seed": seed,
        "num_train": len(kept),
        "num_valid": len(held),
        "valid_segments": [[data.video_ids[i], float(data.start_times[i])] for i in held.tolist()],
    }
    return data.subset(kept), data.subset(held), record


def subset_of_record(data: PackedAudioSet, record: dict) -> PackedAudioSet:
    """The held-out segments of a :func:`validation_split` record, taken from ``data``.

    Raises:
        KeyError: a recorded segment is not in ``data`` (another training set).
    """
    where = {(v, float(t)): i for i, (v, t) in enumerate(zip(data.video_ids, data.start_times))}
    index = []
    for v, t in record["valid_segments"]:
        if (v, float(t)) not in where:
            raise KeyError(f"validation segment {v} at {t} s is not in {data.source or 'the data'}")
        index.append(where[(v, float(t))])
    return data.subset(index)
