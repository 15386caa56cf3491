"""EVAR-style linear evaluation of frozen clip-level features.

Protocol (EVAR ``2pass_lineareval.py`` + ``TorchMLPClassifier2(hidden_layer_sizes=())``, as
summarised in docs/linear_eval.md):

1. one feature vector per clip (:mod:`audiorep.evaluation.features`), extracted once and
   cached on disk;
2. standardised with the *training* split's mean and standard deviation (sklearn
   ``StandardScaler``: population std, constant features left unscaled);
3. one linear layer ``nn.Linear(D, classes)``, loss ``-mean(onehot * log_softmax)`` (cross
   entropy divided by the number of classes), Adam (lr 3e-4, betas (0.9, 0.999), eps 1e-8,
   weight decay 1e-8), batches of ``min(200, n_train)`` shuffled each epoch (last batch kept);
4. up to 200 epochs; after each, the validation accuracy; an epoch whose accuracy is ``>=`` the
   best so far becomes the best (ties go to the later epoch) and its weights are kept; training
   stops after 20 consecutive epochs without such an epoch (EVAR's ``early_stop_epochs``);
5. the best weights are scored on the test split (accuracy of the arg-max);
6. repeated for three seeds (42, 43, 44 as EVAR); reported as mean and standard deviation
   (population, ``ddof=0``) of the test accuracy.

Determinism: for a seed, the weight initialisation (PyTorch's default ``nn.Linear`` rule:
uniform in ``+-1/sqrt(D)`` for weights and biases) and the batch order come from a
``torch.Generator`` seeded with it, and training runs in float32 on the CPU, so a run is
repeatable. (EVAR builds its model before seeding, so its initialisation is not seeded.)

Datasets (:func:`read_dataset`): a folder per class ``DIR/<label>/**/*.wav`` (any audio
extension), or ``DIR/<split>/<label>/...`` with ``split`` in train/valid/test (``val``,
``validation`` accepted), or a CSV with columns ``path,label[,split]`` (header optional;
relative paths are relative to the CSV). Without splits, a seeded stratified split is made
(:func:`stratified_split`: per class 15 % valid, 15 % test, the rest train); with train and
test but no valid, 10 % of each class's training clips become the validation set (EVAR's
rule for fold datasets, made stratified here).
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SPLITS = ("train", "valid", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "dev": "valid",
    "test": "test",
    "eval": "test",
    "evaluation": "test",
}
#: Default proportions (train, valid, test) of the stratified split.
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
#: Share of each class's training clips moved to validation when only train/test exist.
VALID_FROM_TRAIN = 0.10
#: EVAR's training seeds.
DEFAULT_SEEDS = (42, 43, 44)


# ----------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class Clip:
    """One labelled audio file; ``split`` is ``None`` until assigned."""

    path: Path
    label: str
    split: str | None = None


def _audio_files(folder: Path) -> list[Path]:
    from audiorep.audio import AUDIO_EXTENSIONS

    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def _normalise_split(value: str, where: str) -> str | None:
    v = value.strip().lower()
    if not v:
        return None
    if v not in _SPLIT_ALIASES:
        raise ValueError(f"{where}: unknown split {value!r}; use train, valid or test")
    return _SPLIT_ALIASES[v]


def _read_csv(path: Path) -> list[Clip]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: empty CSV")
    head = [c.strip().lower() for c in rows[0]]
    header = "path" in head and "label" in head
    if header:  # columns by name
        ip, il = head.index("path"), head.index("label")
        isp = head.index("split") if "split" in head else None
        rows = rows[1:]
    else:  # no header: path, label[, split]
        ip, il, isp = 0, 1, 2
    clips = []
    for n, row in enumerate(rows, start=2 if header else 1):  # n: line number, for errors
        if len(row) <= max(ip, il):
            raise ValueError(f"{path}:{n}: expected path,label[,split], got {row}")
        p = Path(row[ip].strip())
        p = p if p.is_absolute() else path.parent / p
        split = row[isp] if isp is not None and len(row) > isp else ""
        clips.append(Clip(p, row[il].strip(), _normalise_split(split, f"{path}:{n}")))
    missing = [str(c.path) for c in clips if not c.path.is_file()]
    if missing:
        more = f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""
        raise FileNotFoundError(f"{path}: files not found: {', '.join(missing[:3])}{more}")
    return clips


def read_dataset(source: str | os.PathLike) -> list[Clip]:
    """Clips of a dataset folder or CSV (module docstring for the layouts), sorted by path
    within each class so the order does not depend on the file system.

    Raises:
        FileNotFoundError: ``source`` or a listed file does not exist.
        ValueError: no audio found, unknown split names, or a layout mixing split folders
            with class folders.
    """
    root = Path(source)
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise ValueError(f"{root}: expected a folder or a .csv file")
        return _read_csv(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset not found: {root}")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = [p for p in subdirs if p.name.lower() in _SPLIT_ALIASES]
    clips: list[Clip] = []
    if split_dirs:
        others = [p.name for p in subdirs if p not in split_dirs]
        if others:
            raise ValueError(
                f"{root}: has split folders ({', '.join(p.name for p in split_dirs)}) and "
                f"other folders ({', '.join(others)}); use DIR/<split>/<label>/ or DIR/<label>/"
            )
        for sd in split_dirs:
            split = _SPLIT_ALIASES[sd.name.lower()]
            for label_dir in sorted(p for p in sd.iterdir() if p.is_dir()):
                clips += [Clip(f, label_dir.name, split) for f in _audio_files(label_dir)]
    else:
        for label_dir in subdirs:
            clips += [Clip(f, label_dir.name) for f in _audio_files(label_dir)]
    if not clips:
        raise ValueError(f"{root}: no audio files found in DIR/<label>/ or DIR/<split>/<label>/")
    return clips


def _split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    """(valid, test) counts of a class of ``n`` clips; each >= 1 when ``n >= 3``."""
    n_valid = int(n * fractions[1] + 0.5)
    n_test = int(n * fractions[2] + 0.5)
    if n >= 3:  # every non-empty split gets each class at least once
        n_valid = max(1, n_valid) if fractions[1] > 0 else n_valid
        n_test = max(1, n_test) if fractions[2] > 0 else n_test
    while n_valid + n_test >= n and n_valid + n_test > 0:  # keep at least one training clip
        if n_valid >= n_test:
            n_valid -= 1
        else:
            n_test -= 1
    return n_valid, n_test


def stratified_split(
    labels: Sequence[str],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> list[str]:
    """Seeded stratified split: a split name per item.

    Classes are visited in sorted order; the items of each (in input order) are permuted with
    ``numpy.random.default_rng(seed)``; the first ``round(n * f_valid)`` go to valid, the next
    ``round(n * f_test)`` to test (each at least 1 when the class has >= 3 items, rounding
    half up), the rest to train. The same labels and seed always give the same split.

    Raises:
        ValueError: fractions that are not three non-negative numbers summing to 1.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be (train, valid, test) summing to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    out = ["train"] * len(labels)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    for label in sorted(by_class):
        idx = np.asarray(by_class[label])[rng.permutation(len(by_class[label]))]
        n_valid, n_test = _split_counts(len(idx), fractions)
        for i in idx[:n_valid]:
            out[i] = "valid"
        for i in idx[n_valid : n_valid + n_test]:
            out[i] = "test"
    return out


def assign_splits(
    clips: Sequence[Clip],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> list[Clip]:
    """Every clip with a split (module docstring for the rules).

    Raises:
        ValueError: some clips with a split and some without; no test split; a class with
            no training clip.
    """
    given = [c.split for c in clips]
    if all(s is None for s in given):
        splits = stratified_split([c.label for c in clips], fractions, seed)
        out = [Clip(c.path, c.label, s) for c, s in zip(clips, splits)]
    elif any(s is None for s in given):
        raise ValueError("some clips have a split and some do not; give all or none")
    else:
        present = set(given)
        if "test" not in present:
            raise ValueError("the dataset has splits but no test split")
        out = list(clips)
        if "valid" not in present:
            train = [i for i, c in enumerate(out) if c.split == "train"]
            labels = [out[i].label for i in train]
            sub = stratified_split(labels, (1 - VALID_FROM_TRAIN, VALID_FROM_TRAIN, 0.0), seed)
            for i, s in zip(train, sub):
                out[i] = Clip(out[i].path, out[i].label, s)
    train_labels = {c.label for c in out if c.split == "train"}
    lacking = sorted({c.label for c in out} - train_labels)
    if lacking:
        raise ValueError(f"classes without training clips: {', '.join(lacking)}")
    return out


# ----------------------------------------------------------------------------- protocol


@dataclass(frozen=True)
class LinearConfig:
    """Training settings; defaults are EVAR's."""

    lr: float = 3e-4
    max_epochs: int = 200
    patience: int = 20
    batch_size: int | None = None  # None: min(200, n_train), TorchMLPClassifier2's 'auto'
    weight_decay: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


@dataclass
class TrainResult:
    """One training run.

    Attributes:
        weight: float32 ``(classes, D)`` and ``bias`` ``(classes,)`` of the best epoch.
        best_epoch: 0-based epoch whose weights were kept.
        epochs: epochs run (``<= max_epochs``).
        best_valid_accuracy: validation accuracy of the kept weights (0..1).
        valid_history: validation accuracy after each epoch.
        stopped_early: True when patience ran out before ``max_epochs``.
    """

    weight: np.ndarray
    bias: np.ndarray
    best_epoch: int
    epochs: int
    best_valid_accuracy: float
    valid_history: list[float] = field(default_factory=list)
    stopped_early: bool = False

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices ``(n,)`` of standardised features ``(n, D)``."""
        return np.argmax(np.asarray(x, np.float32) @ self.weight.T + self.bias, axis=1)


def standardize(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """sklearn ``StandardScaler`` fit on ``train`` ``(n, D)``, applied to it and ``others``.

    Mean and population std (``ddof=0``) per feature, in float64; features with zero
    variance get scale 1 (only centred). Returns float32 arrays in the input order.
    """
    train = np.asarray(train, dtype=np.float64)
    mean = train.mean(axis=0)
    scale = train.std(axis=0)
    scale[scale == 0] = 1.0
    return tuple(((np.asarray(x, np.float64) - mean) / scale).astype(np.float32)
                 for x in (train, *others))  # fmt: skip


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Share of equal entries (0..1); 0 for empty inputs."""
    labels = np.asarray(labels)
    return float(np.mean(np.asarray(predictions) == labels)) if len(labels) else 0.0


def train_linear(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    num_classes: int,
    seed: int,
    config: LinearConfig = LinearConfig(),
) -> TrainResult:
    """Train one linear layer with EVAR's loop (module docstring, steps 3-4).

    Args:
        x_train, x_valid: standardised float features ``(n, D)``.
        y_train, y_valid: int class indices ``(n,)`` in ``[0, num_classes)``.
        seed: seeds the initialisation and the batch order.

    Returns:
        The best epoch's weights and the training history.
    """
    # Tiny matrices: thread start-up dominates, one thread is ~10x faster than two here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_linear(x_train, y_train, x_valid, y_valid, num_classes, seed, config)
    finally:
        torch.set_num_threads(threads)


def _train_linear(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    num_classes: int,
    seed: int,
    config: LinearConfig,
) -> TrainResult:
    gen = torch.Generator().manual_seed(int(seed))
    xt = torch.as_tensor(np.asarray(x_train, np.float32))
    yt = torch.as_tensor(np.asarray(y_train, np.int64))
    xv = torch.as_tensor(np.asarray(x_valid, np.float32))
    yv = np.asarray(y_valid, np.int64)
    n, d = xt.shape
    if n == 0:
        raise ValueError("no training examples")
    # nn.Linear's default init (kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(D))), from our generator.
    bound = 1.0 / math.sqrt(d)
    layer = torch.nn.Linear(d, num_classes)
    with torch.no_grad():
        layer.weight.copy_((torch.rand(num_classes, d, generator=gen) * 2 - 1) * bound)
        layer.bias.copy_((torch.rand(num_classes, generator=gen) * 2 - 1) * bound)
    opt = torch.optim.Adam(
        layer.parameters(),
        lr=config.lr,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
    )
    batch = int(config.batch_size or min(200, n))
    best_acc, best_epoch, since_best = -1.0, -1, 0
    best_w = layer.weight.detach().clone()
    best_b = layer.bias.detach().clone()
    history: list[float] = []
    stopped = False
    epoch = 0
    for epoch in range(config.max_epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            logp = torch.log_softmax(layer(xt[idx]), dim=-1)
            # -mean(onehot * log_softmax) over batch and classes = cross entropy / classes
            loss = -logp.gather(1, yt[idx, None]).sum() / (len(idx) * num_classes)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = accuracy(layer(xv).argmax(dim=-1).numpy(), yv)
        history.append(acc)
        if acc >= best_acc:  # ties go to the later epoch, as EVAR's EarlyStopping
            best_acc, best_epoch, since_best = acc, epoch, 0
            best_w = layer.weight.detach().clone()
            best_b = layer.bias.detach().clone()
        else:
            since_best += 1
            if since_best >= config.patience:
                stopped = True
                break
    return TrainResult(
        weight=best_w.numpy(),
        bias=best_b.numpy(),
        best_epoch=best_epoch,
        epochs=epoch + 1,
        best_valid_accuracy=best_acc,
        valid_history=history,
        stopped_early=stopped,
    )


@dataclass
class SeedResult:
    seed: int
    test_accuracy: float
    valid_accuracy: float
    best_epoch: int
    epochs: int


@dataclass
class LinearEvalResult:
    """Test accuracy over seeds (fractions 0..1).

    Attributes:
        runs: one :class:`SeedResult` per seed.
        mean, std: of the runs' test accuracies (std with ``ddof=0``).
    """

    runs: list[SeedResult]
    mean: float
    std: float

    def as_dict(self) -> dict[str, Any]:
        return {"runs": [asdict(r) for r in self.runs], "mean": self.mean, "std": self.std}


def evaluate_features(
    features: np.ndarray,
    labels: np.ndarray,
    splits: Sequence[str],
    num_classes: int,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    config: LinearConfig = LinearConfig(),
) -> LinearEvalResult:
    """Standardise with train statistics, train per seed, score on test.

    Args:
        features: ``(n, D)`` clip features; ``labels`` int ``(n,)``; ``splits`` a name per clip.
    """
    features = np.asarray(features)
    labels = np.asarray(labels, np.int64)
    split = np.asarray(list(splits))
    masks = {s: split == s for s in SPLITS}
    for s in SPLITS:
        if not masks[s].any():
            raise ValueError(f"no {s} clips")
    xt, xv, xs = standardize(*(features[masks[s]] for s in SPLITS))
    yt, yv, ys = (labels[masks[s]] for s in SPLITS)
    runs = []
    for seed in seeds:
        res = train_linear(xt, yt, xv, yv, num_classes, seed, config)
        runs.append(
            SeedResult(
                seed=int(seed),
                test_accuracy=accuracy(res.predict(xs), ys),
                valid_accuracy=res.best_valid_accuracy,
                best_epoch=res.best_epoch,
                epochs=res.epochs,
            )
        )
    accs = np.array([r.test_accuracy for r in runs])
    return LinearEvalResult(runs, float(accs.mean()), float(accs.std()))


# ----------------------------------------------------------------------------- runner


def extract_features(
    clips: Sequence[Clip],
    extractor: Callable[[torch.Tensor, int], np.ndarray],
    cache: Any | None = None,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Clip features ``(n, D)`` float32, read from ``cache`` (a :class:`FeatureCache`) when
    present, else computed with ``extractor(waveform, sample_rate)`` and stored."""
    from audiorep.audio import load
    from audiorep.hashing import file_sha256

    out = []
    step = max(1, len(clips) // 10)
    for i, clip in enumerate(clips):
        digest = file_sha256(clip.path) if cache is not None else ""
        feats = cache.get(digest) if cache is not None else None
        if feats is None:
            waveform, sr = load(clip.path)
            feats = np.asarray(extractor(waveform, sr), dtype=np.float32)
            if cache is not None:
                cache.put(digest, feats)
        out.append(feats)
        if log is not None and ((i + 1) % step == 0 or i + 1 == len(clips)):
            log(f"features: {i + 1}/{len(clips)}")
    dims = {f.shape for f in out}
    if len(dims) != 1:
        raise ValueError(f"features of different shapes: {sorted(dims)}")
    return np.stack(out)


def run_linear_eval(
    model: str,
    dataset: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    weights_seed: int = 0,
    device: str | torch.device = "cpu",
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    split_seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    layers: Sequence[int | str] | None = None,
    unit_seconds: float | None = None,
    config: LinearConfig = LinearConfig(),
    extractor: Any | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole linear evaluation of one model spec on one dataset.

    Args:
        model: a spec of :data:`audiorep.evaluation.features.MODEL_SPECS`.
        dataset: folder or CSV (:func:`read_dataset`).
        weights, weights_seed: the backbone's weights (``"random"`` + seed for random ones).
        cache_dir: feature cache (default ``<weights cache>/linear_eval``); ``use_cache=False``
            neither reads nor writes it.
        seeds: training seeds (EVAR: 42, 43, 44).
        split_seed, fractions: for datasets without splits.
        layers, unit_seconds: see :class:`~audiorep.evaluation.features.ClipFeatureExtractor`.
        extractor: a ready extractor (anything with ``__call__(waveform, sr)`` and
            ``settings()``), replacing the one built from ``model``/``weights``.

    Returns:
        JSON-serialisable dict: ``model``, ``dataset``, ``classes``, ``counts`` (per split),
        ``feature_dim``, ``settings``, ``cache`` (dir, hits, misses), ``config``, ``result``
        (:meth:`LinearEvalResult.as_dict`, accuracies in 0..1), ``timing`` (seconds:
        ``load``, ``features``, ``training``, ``total``).
    """
    from audiorep.evaluation.features import FeatureCache, default_cache_dir, make_extractor

    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    clips = assign_splits(read_dataset(dataset), fractions, split_seed)
    classes = sorted({c.label for c in clips})
    if extractor is None:
        extractor = make_extractor(
            model,
            weights=weights,
            device=device,
            seed=weights_seed,
            layers=layers,
            unit_seconds=unit_seconds,
        )
    settings = extractor.settings()
    t1 = time.perf_counter()
    cache = None
    if use_cache:
        cache = FeatureCache(cache_dir if cache_dir is not None else default_cache_dir(), settings)
    say(f"{model}: {len(clips)} clips, {len(classes)} classes; extracting features")
    feats = extract_features(clips, extractor, cache, say)
    t2 = time.perf_counter()
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c.label] for c in clips])
    result = evaluate_features(feats, labels, [c.split for c in clips], len(classes), seeds, config)
    t3 = time.perf_counter()
    return {
        "model": model,
        "dataset": str(dataset),
        "classes": classes,
        "counts": {s: sum(c.split == s for c in clips) for s in SPLITS},
        "feature_dim": int(feats.shape[1]),
        "settings": settings,
        "cache": {
            "dir": str(cache.dir) if cache is not None else None,
            "hits": cache.hits if cache is not None else 0,
            "misses": cache.misses if cache is not None else len(clips),
        },
        "config": {
            **asdict(config),
            "seeds": [int(s) for s in seeds],
            "split_seed": split_seed,
            "fractions": list(fractions),
        },  # fmt: skip
        "result": result.as_dict(),
        "timing": {
            "load": t1 - t0,
            "features": t2 - t1,
            "training": t3 - t2,
            "total": t3 - t0,
        },
    }


__all__ = [
    "Clip",
    "DEFAULT_FRACTIONS",
    "DEFAULT_SEEDS",
    "LinearConfig",
    "LinearEvalResult",
    "SeedResult",
    "TrainResult",
    "accuracy",
    "assign_splits",
    "evaluate_features",
    "extract_features",
    "read_dataset",
    "run_linear_eval",
    "standardize",
    "stratified_split",
    "train_linear",
]
