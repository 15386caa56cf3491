"""SpecVQGAN's evaluation: FID, IS, KID and MKL of generated spectrograms with the Melception judge.

What the authors' evaluation script computes (see :mod:`audiorep.models.melception` and
:mod:`audiorep.metrics`), as a library call (:func:`evaluate`):

1. **Inputs.** Every ``.npy`` and ``.wav`` under the generated and the reference folder (or
   in a list file), sorted:

   * ``.npy``: a [0, 1] spectrogram ``(80, W)`` or ``(1, 80, W)`` (generated samples
     ``<video>_sample_<k>.npy``, 848 wide, saved unclamped as ``(x + 1) / 2``; dataset mels
     ``<video>_mel.npy``, 860 wide), read with ``allow_pickle=False``;
   * ``.wav``: decoded, averaged to mono, resampled to 22 050 Hz if needed, zero-padded or cut
     to 10 s and turned into the authors' mel
     (:func:`audiorep.frontends.specvqgan.mel_spectrogram`), as their ``FakesFolder`` does (no
     tiling). A ``.wav`` next to a ``.npy`` of the same clip
     (the authors' sample folders hold both) is skipped: the spectrogram is what was generated.

   Each is centre-cropped to 848 frames (columns 6..853 of an 860-wide mel) and normalised per
   mel bin with the VGGSound statistics (:func:`audiorep.frontends.specvqgan.normalize_for_judges`),
   then batched through :class:`~audiorep.models.melception.Melception` (eval mode).

2. **Metrics** (generated = the authors' ``input1``, reference = ``input2``):

   * FID on ``'2048'`` (:mod:`audiorep.metrics.frechet`; within 4e-8 relative of their sqrtm);
   * IS on the generated ``'logits_unbiased'``: 10 splits, rows shuffled with
     ``RandomState(2020)``;
   * KID on ``'2048'``: 100 subsets of ``min(1000, n_generated, n_reference)`` rows, kernel
     ``(x.y / d + 1)^3``, ``RandomState(2020)``;
   * MKL on ``'logits'``: every generated sample against the reference sample of the same video
     (:func:`video_key`: VGGSound and VAS naming), mean over generated samples of
     KL(softmax(real) || softmax(fake) + 1e-6).

3. **Caching.** Features are cached per input file under ``cache_dir``, keyed by the file's
   content (sha256) inside a folder keyed by the weights fingerprint
   (:func:`audiorep.hashing.state_dict_sha256`) and the input pipeline; entries are written
   atomically (:mod:`audiorep.atomic`). The reference set is cached by default (it is the same
   for every run of an experiment), the generated set on request.

Differences from the authors' script, all below their numerical noise: the reference ``_mel.npy``
files are normalised directly, not through their ``2S - 1`` then ``(x + 1) / 2`` round trip
(4.8e-7); a ``.wav`` is centre-cropped to 848 frames like every other input (their
``FakesFolder`` would feed all 860); the MKL key maps ``cls_<i>`` only as a whole folder name.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from tqdm import tqdm

from audiorep.atomic import write_bytes_atomic
from audiorep.audio import AudioLoadError, load
from audiorep.evaluation.features import FeatureCache
from audiorep.extract.inputs import InputItem, collect_inputs
from audiorep.frontends.specvqgan import (
    CLIP_SAMPLES,
    CROP_FRAMES,
    N_MELS,
    SAMPLE_RATE,
    center_crop,
    load_judge_stats,
    mel_spectrogram,
    normalize_for_judges,
)
from audiorep.hashing import file_sha256, state_dict_sha256
from audiorep.metrics import (
    GaussianStats,
    frechet_terms_from_embeddings,
    frechet_terms_from_stats,
    inception_score,
    kernel_inception_distance,
    specvqgan_shared_key,
)
from audiorep.metrics.kl import KL_EPS, pair_by_key
from audiorep.models.melception import Melception
from audiorep.resample import resample

#: The taps the metrics read (the authors' ``features_list``).
FEATURE_TAPS = ("2048", "logits_unbiased", "logits")
#: Input extensions read from folders.
INPUT_EXTENSIONS = (".npy", ".wav")
#: The eight VAS classes, as the authors' VAS evaluation config lists them.
VAS_CLASSES = ("baby", "cough", "dog", "drum", "fireworks", "gun", "hammer", "sneeze")
DATASETS = ("vggsound", "vas")
METRICS = ("fid", "isc", "kid", "mkl")
#: Version of the input pipeline; part of every cache key (bump when features would change).
PIPELINE_VERSION = "specvqgan-judge-input-v1"
#: Below this many rows per feature dimension FID takes the exact data route (QR), as
#: ``audiorep fad`` does; above it the covariance route (the authors' formulation).
DATA_ROUTE_ROWS_PER_DIM = 4
RANDOM_PREFIX = "random"


class EvaluationInputError(ValueError):
    """An input file cannot be used; the message names it."""


# ----------------------------------------------------------------------------- inputs


def _npy_spectrogram(path: Path) -> torch.Tensor:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # pickled objects, truncated, not an npy
        raise EvaluationInputError(f"{path}: cannot read as .npy ({exc})") from exc
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.shape[0] != N_MELS:
        raise EvaluationInputError(
            f"{path}: expected a spectrogram of shape ({N_MELS}, W) or (1, {N_MELS}, W), "
            f"got {arr.shape}"
        )
    if arr.dtype.kind != "f":
        raise EvaluationInputError(f"{path}: expected a float array, got {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _wav_spectrogram(path: Path) -> torch.Tensor:
    try:
        wave, sr = load(path, mono=True)
    except AudioLoadError as exc:
        raise EvaluationInputError(str(exc)) from exc
    wave64 = wave.to(torch.float64)
    if sr != SAMPLE_RATE:
        wave64 = resample(wave64, sr, SAMPLE_RATE)
    return mel_spectrogram(wave64, CLIP_SAMPLES).to(torch.float32)


def judge_input(
    path: str | os.PathLike, stats: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """One file -> the Melception input: normalised float32 ``(80, 848)``.

    ``.npy``: a [0, 1] spectrogram ``(80, W)`` / ``(1, 80, W)``, ``W >= 848``; ``.wav``: the
    authors' 10-s mel ``(80, 860)`` (module docstring). Then centre crop to 848 frames and the
    judges' per-bin normalisation (``stats``: default the shipped VGGSound statistics).

    Raises:
        EvaluationInputError: unreadable file, wrong shape or dtype, fewer than 848 frames or
            values that are not finite; the message names the file.
    """
    p = Path(path)
    if p.suffix.lower() == ".npy":
        spec = _npy_spectrogram(p)
    elif p.suffix.lower() == ".wav":
        spec = _wav_spectrogram(p)
    else:
        raise EvaluationInputError(f"{p}: not a .npy spectrogram or a .wav file")
    if spec.shape[-1] < CROP_FRAMES:
        raise EvaluationInputError(
            f"{p}: {spec.shape[-1]} frames; the judge needs at least {CROP_FRAMES} "
            "(9.85 s at 22.05 kHz)"
        )
    if not bool(torch.isfinite(spec).all()):
        raise EvaluationInputError(f"{p}: the spectrogram holds NaN or infinite values")
    return normalize_for_judges(center_crop(spec, CROP_FRAMES), stats)


def _clip_id(item: InputItem) -> tuple[str, str]:
    rel = PurePosixPath(item.rel)
    return rel.parent.as_posix(), rel.stem.removesuffix("_mel")


def collect_set(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    extensions: Iterable[str] = INPUT_EXTENSIONS,
) -> tuple[list[InputItem], list[str]]:
    """The inputs of one set (folders searched recursively, list files, single files), sorted
    per folder, and notes on what was left out (a ``.wav`` shadowed by its ``.npy``)."""
    sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    items = collect_inputs(sources, extensions)
    npy_clips = {_clip_id(it) for it in items if it.path.suffix.lower() == ".npy"}
    kept = [it for it in items if it.path.suffix.lower() == ".npy" or _clip_id(it) not in npy_clips]
    notes = []
    if len(kept) != len(items):
        notes.append(
            f"{len(items) - len(kept)} .wav files skipped: a .npy of the same clip is next to "
            "them (the spectrogram is the generated sample; the .wav its vocoded audio)"
        )
    return kept, notes


# ----------------------------------------------------------------------------- features


@dataclass
class FeatureSet:
    """Melception features of one input set.

    ``paths``: the files, in order; ``features``: tap -> float32 ``(n, dim)`` (``2048``,
    ``logits_unbiased``, ``logits``); ``cache_hits`` / ``computed``: how many rows came from
    the cache / from the model.
    """

    source: str
    paths: list[str]
    features: dict[str, np.ndarray]
    cache_hits: int = 0
    computed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.paths)

    def describe(self) -> str:
        kinds: dict[str, int] = {}
        for p in self.paths:
            suffix = Path(p).suffix.lower()
            kinds[suffix] = kinds.get(suffix, 0) + 1
        parts = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        cached = f"; {self.cache_hits} from the cache" if self.cache_hits else ""
        return f"{self.source} ({self.n} inputs: {parts or 'none'}{cached})"


def _model_settings(model: Melception) -> dict:
    return {
        "model": "melception",
        "weights_sha256": state_dict_sha256(model),
        "dtype": str(model.fc.weight.dtype).removeprefix("torch."),
        "pipeline": PIPELINE_VERSION,
        "crop_frames": CROP_FRAMES,
    }


def extract_features(
    items: Sequence[InputItem] | Sequence[str | os.PathLike],
    model: Melception,
    *,
    batch_size: int = 16,
    cache: FeatureCache | None = None,
    progress: bool = True,
    desc: str = "melception",
    source: str = "",
) -> FeatureSet:
    """Melception features of files (:func:`judge_input` each), ``batch_size`` per forward pass.

    The model must be in eval mode. With ``cache``, rows are looked up by file content first
    and the missing ones are computed and stored. Errors name the file.
    """
    if model.training:
        raise ValueError("the judge must be in eval mode (call model.eval())")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    paths = [Path(it.path) if isinstance(it, InputItem) else Path(it) for it in items]
    classes = model.num_classes
    width = 2048 + 2 * classes
    rows: list[np.ndarray | None] = [None] * len(paths)
    digests: list[str | None] = [None] * len(paths)
    hits = 0
    if cache is not None:
        for i, p in enumerate(paths):
            try:
                digests[i] = file_sha256(p)
            except OSError as exc:
                raise EvaluationInputError(f"{p}: cannot read ({exc})") from exc
            row = cache.get(digests[i])
            # another width or dtype (a damaged or foreign entry): recompute and overwrite
            ok = row is not None and row.shape == (width,) and row.dtype == np.float32
            rows[i] = row if ok else None
            hits += rows[i] is not None
    todo = [i for i, r in enumerate(rows) if r is None]
    stats = load_judge_stats()
    bar = tqdm(total=len(todo), unit="file", desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            x = torch.stack([judge_input(paths[i], stats) for i in chunk])
            with torch.inference_mode():
                out = model.forward_taps(x, FEATURE_TAPS)
            block = torch.cat([out[t].float().cpu() for t in FEATURE_TAPS], dim=1).numpy()
            for i, row in zip(chunk, block):
                rows[i] = row
                if cache is not None:
                    cache.put(digests[i], row)  # type: ignore[arg-type]
            bar.update(len(chunk))
    finally:
        bar.close()
    matrix = np.stack(rows) if rows else np.zeros((0, width), dtype=np.float32)  # type: ignore[arg-type]
    features = {
        "2048": matrix[:, :2048],
        "logits_unbiased": matrix[:, 2048 : 2048 + classes],
        "logits": matrix[:, 2048 + classes :],
    }
    return FeatureSet(
        source=source,
        paths=[str(p) for p in paths],
        features={k: np.ascontiguousarray(v) for k, v in features.items()},
        cache_hits=hits,
        computed=len(todo),
    )


# ----------------------------------------------------------------------------- MKL grouping


def video_key(path: str | os.PathLike, dataset: str, classes: Sequence[str] | None = None) -> str:
    """The video a real or generated file belongs to, by the authors' naming rules.

    * ``vggsound``: the file stem without ``_mel`` and ``_sample_<k>``:
      ``.../melspec_10s_22050hz/<id>_mel.npy`` and ``.../cls_<t>/<id>_sample_<k>.npy`` ->
      ``<id>``.
    * ``vas``: a folder ``cls_<i>`` stands for ``sorted(classes)[i]`` and a
      ``melspec_10s_22050hz`` folder is dropped; key = ``<class folder>_<stem without _mel and
      _sample_<k>>``: ``.../features/dog/melspec_10s_22050hz/video_00007_mel.npy`` and
      ``.../VAS_validation/cls_2/video_00007_sample_4.npy`` -> ``dog_video_00007``
      (classes default to :data:`VAS_CLASSES`).

    Paths are compared as POSIX strings (``\\`` separators are converted).
    """
    ds = dataset.lower()
    if ds == "vas" and classes is None:
        classes = VAS_CLASSES
    text = Path(path).as_posix() if not isinstance(path, str) else path.replace(os.sep, "/")
    return specvqgan_shared_key(text, ds, classes)


@dataclass(frozen=True)
class VideoKL:
    """KL(real || generated) of one video, averaged over its generated samples."""

    video: str
    kl: float
    samples: int
    group: str  # the generated files' folder (e.g. cls_<t>, or the VAS class name)


def per_pair_kl(real_logits: np.ndarray, fake_logits: np.ndarray) -> np.ndarray:
    """``sum_c p_real (log p_real - log(p_fake + 1e-6))`` per row pair, float64 ``(n,)``."""
    p = torch.from_numpy(np.asarray(real_logits, dtype=np.float64)).softmax(dim=1)
    q = torch.from_numpy(np.asarray(fake_logits, dtype=np.float64)).softmax(dim=1)
    return (torch.special.xlogy(p, p) - p * torch.log(q + KL_EPS)).sum(dim=1).numpy()


@dataclass
class MKLResult:
    """MKL with its pairing: value, pairs, per-video values and what could not be paired."""

    value: float
    pairs: int
    videos: list[VideoKL]
    unmatched_generated: list[str]
    references_without_samples: int
    duplicate_reference_keys: int


def mean_kl_by_video(
    real_logits: np.ndarray,
    real_paths: Sequence[str],
    fake_logits: np.ndarray,
    fake_paths: Sequence[str],
    dataset: str,
    classes: Sequence[str] | None = None,
) -> MKLResult:
    """The authors' MKL with per-video detail (:func:`video_key` pairs the rows).

    The value is :func:`audiorep.metrics.mean_kl_divergence` (the same pairing, sum over pairs
    divided by the number of pairs); generated files whose video has no reference file are left
    out and listed.
    """
    ds = dataset.lower()
    if ds == "vas" and classes is None:
        classes = VAS_CLASSES
    real_keys = [video_key(p, ds, classes) for p in real_paths]
    fake_keys = [video_key(p, ds, classes) for p in fake_paths]
    ri, fi, _ = pair_by_key(real_keys, fake_keys)
    known = set(real_keys)
    unmatched = [p for p, k in zip(fake_paths, fake_keys) if k not in known]
    if ri.size == 0:
        raise ValueError(
            f"no generated file shares a video with a reference file under the {ds} naming "
            f"rules (e.g. generated {fake_paths[0] if fake_paths else '-'} -> key "
            f"{fake_keys[0] if fake_keys else '-'}, reference "
            f"{real_paths[0] if real_paths else '-'} -> key {real_keys[0] if real_keys else '-'})"
        )
    values = per_pair_kl(real_logits[ri], fake_logits[fi])
    labels = sorted(classes) if classes else []
    by_video: dict[str, list[int]] = {}
    for n, i in enumerate(ri):
        by_video.setdefault(real_keys[i], []).append(n)
    videos = []
    for key, members in by_video.items():
        folder = PurePosixPath(Path(fake_paths[fi[members[0]]]).as_posix()).parent.name
        if ds == "vas" and folder.startswith("cls_") and folder[4:].isdigit():
            j = int(folder[4:])
            folder = labels[j] if j < len(labels) else folder
        videos.append(VideoKL(key, float(values[members].mean()), len(members), folder))
    return MKLResult(
        value=float(values.sum()) / values.size,
        pairs=int(values.size),
        videos=videos,
        unmatched_generated=unmatched,
        references_without_samples=len(known) - len(by_video),
        duplicate_reference_keys=len(real_keys) - len(known),
    )


# ----------------------------------------------------------------------------- result


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate` computed; ``lines()`` / ``as_dict()`` / ``to_json()``.

    Metric values are ``None`` when not requested or not computable (``notes`` says why).
    """

    generated: FeatureSet
    reference: FeatureSet
    settings: dict
    fid: float | None = None
    fid_terms: dict | None = None
    isc_mean: float | None = None
    isc_std: float | None = None
    isc_splits: int | None = None
    kid_mean: float | None = None
    kid_std: float | None = None
    kid_subsets: int | None = None
    kid_subset_size: int | None = None
    mkl: MKLResult | None = None
    notes: list[str] = field(default_factory=list)

    def authors_metrics(self) -> dict[str, float]:
        """The computed values under the names the authors' evaluation script prints."""
        out: dict[str, float] = {}
        if self.mkl is not None:
            out["kullback_leibler_divergence"] = self.mkl.value
        if self.isc_mean is not None:
            out["inception_score_mean"] = self.isc_mean
            out["inception_score_std"] = float(self.isc_std)  # type: ignore[arg-type]
        if self.fid is not None:
            out["frechet_inception_distance"] = self.fid
        if self.kid_mean is not None:
            out["kernel_inception_distance_mean"] = self.kid_mean
            out["kernel_inception_distance_std"] = float(self.kid_std)  # type: ignore[arg-type]
        return out

    def summary_line(self) -> str:
        """The authors' one-line summary (``KL: ...; ISc: ... (...); FID: ...; KID: ... (...)``)."""
        nan = float("nan")

        def v(x: float | None) -> float:
            return nan if x is None else x

        return (
            f"KL: {v(self.mkl.value if self.mkl else None):8.5f}; "
            f"ISc: {v(self.isc_mean):8.5f} ({v(self.isc_std):5f}); "
            f"FID: {v(self.fid):8.5f}; "
            f"KID: {v(self.kid_mean):.5f} ({v(self.kid_std):.5f})"
        )

    def lines(self) -> list[str]:
        s = self.settings
        out = ["SpecVQGAN evaluation (Melception judge)"]
        out.append(f"generated:  {self.generated.describe()}")
        out.append(f"reference:  {self.reference.describe()}")
        sha = str(s.get("weights_sha256", ""))[:12]
        out.append(f"weights:    {s.get('weights')} (sha256 {sha}...), {s.get('dtype')}")
        if self.fid is not None:
            out.append(f"FID:        {self.fid:.6f} ({(self.fid_terms or {}).get('method')})")
        if self.isc_mean is not None:
            out.append(
                f"IS:         {self.isc_mean:.6f} +- {self.isc_std:.4g} "
                f"({self.isc_splits} splits, seed {s.get('seed')})"
            )
        if self.kid_mean is not None:
            out.append(
                f"KID:        {self.kid_mean:.6g} +- {self.kid_std:.3g} "
                f"({self.kid_subsets} subsets of {self.kid_subset_size})"
            )
        m = self.mkl
        if m is not None:
            out.append(
                f"MKL:        {m.value:.6f} ({s.get('dataset')} naming, {m.pairs} generated "
                f"samples over {len(m.videos)} videos)"
            )
            worst = sorted(m.videos, key=lambda v: v.kl, reverse=True)[:5]
            if worst:
                out.append(
                    "worst KL:   " + ", ".join(f"{v.video} {v.kl:.4g} ({v.samples})" for v in worst)
                )
        out.append(f"summary:    {self.summary_line()}")
        notes = self.generated.notes + self.reference.notes + self.notes
        out += [f"note:       {n}" for n in notes]
        return out

    def as_dict(self) -> dict:
        def side(f: FeatureSet) -> dict:
            return {
                "source": f.source,
                "n": f.n,
                "cache_hits": f.cache_hits,
                "computed": f.computed,
                "notes": list(f.notes),
            }

        out: dict = {
            "metrics": self.authors_metrics(),
            "summary": self.summary_line(),
            "generated": side(self.generated),
            "reference": side(self.reference),
            "settings": self.settings,
            "notes": list(self.notes),
        }
        if self.fid is not None:
            out["fid"] = {"value": self.fid, "terms": self.fid_terms}
        if self.isc_mean is not None:
            out["isc"] = {"mean": self.isc_mean, "std": self.isc_std, "splits": self.isc_splits}
        if self.kid_mean is not None:
            out["kid"] = {
                "mean": self.kid_mean,
                "std": self.kid_std,
                "subsets": self.kid_subsets,
                "subset_size": self.kid_subset_size,
            }
        if self.mkl is not None:
            m = self.mkl
            out["mkl"] = {
                "value": m.value,
                "pairs": m.pairs,
                "videos": len(m.videos),
                "unmatched_generated": m.unmatched_generated,
                "references_without_samples": m.references_without_samples,
                "duplicate_reference_keys": m.duplicate_reference_keys,
                "per_video": [
                    {"video": v.video, "kl": v.kl, "samples": v.samples, "group": v.group}
                    for v in m.videos
                ],
            }
        return out

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


# ----------------------------------------------------------------------------- model


def load_melception(
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
) -> tuple[Melception, str]:
    """A :class:`Melception` in eval mode and a description of its weights, through the bundle
    registry (``audiorep.load("melception", ...)``, audiorep/pipelines/specvqgan.py).

    ``weights``: ``None`` = the cached authors' checkpoint (``audiorep weights download
    specvqgan-melception``); the authors' ``melception-21-05-10T09-28-40.pt`` (read through an
    allow-list, never unpickling arbitrary objects) or a converted ``.safetensors``, checked
    strictly (a missing or unexpected key is an error listing them); a registry name; or
    ``"random"`` / ``"random:<seed>"``: seeded random weights (recipe round 2; plumbing checks
    only, the scores mean nothing).
    """
    from audiorep.pipelines import load

    text = "" if weights is None else os.fspath(weights)
    seed = None
    if text == RANDOM_PREFIX or text.startswith(RANDOM_PREFIX + ":"):
        seed_text = text.partition(":")[2]
        seed = int(seed_text) if seed_text else None
        weights = RANDOM_PREFIX
    bundle = load("melception", weights=weights, device=device or "cpu", seed=seed)
    desc = text if seed is not None or text == RANDOM_PREFIX else bundle.weights_description
    return bundle.model, desc


# ----------------------------------------------------------------------------- evaluate


def _fid(gen: np.ndarray, ref: np.ndarray) -> tuple[float, dict]:
    d = gen.shape[1]
    if min(gen.shape[0], ref.shape[0]) < DATA_ROUTE_ROWS_PER_DIM * d:
        terms = frechet_terms_from_embeddings(gen, ref)
    else:
        terms = frechet_terms_from_stats(
            GaussianStats.from_embeddings(gen), GaussianStats.from_embeddings(ref)
        )
    info = {
        "mean_term": terms.mean_term,
        "trace_generated": terms.trace1,
        "trace_reference": terms.trace2,
        "trace_sqrt_product": terms.trace_sqrt_product,
        "method": terms.method,
    }
    return terms.value, info


def evaluate(
    generated: str | os.PathLike | Sequence[str | os.PathLike],
    reference: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    model: Melception | None = None,
    weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    cache_generated: bool = False,
    dataset: str | None = "vggsound",
    classes: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    isc_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 2020,
    progress: bool = True,
) -> EvaluationResult:
    """FID / IS / KID / MKL of generated spectrograms against a reference set (module docstring).

    Args:
        generated: folder(s), list file(s) or files of generated samples (``.npy`` / ``.wav``).
        reference: the same for the reference set (e.g. the dataset's ``_mel.npy`` files of
            the evaluation split: VGGSound test, VAS validation).
        model: a :class:`Melception` (put in eval mode for the run); or give ``weights``.
        weights: checkpoint path or ``"random[:seed]"`` (:func:`load_melception`), when no model.
        cache_dir: folder of the feature cache (``audiorep.evaluation.features.FeatureCache``:
            one float32 ``[2048 | logits_unbiased | logits]`` row per file content);
            ``None`` disables it.
        cache_generated: cache the generated set's features too (reference: always, with a
            ``cache_dir``).
        dataset: the MKL naming rules, ``"vggsound"`` or ``"vas"``; ``None`` skips MKL.
        classes: VAS class names (default :data:`VAS_CLASSES`) for ``cls_<i>`` folders.
        metrics: any of ``"fid", "isc", "kid", "mkl"``.
        batch_size: spectrograms per forward pass.
        device: run the judge there (default: where the model's parameters are).
        isc_splits, kid_subsets, kid_subset_size, seed: the authors' settings (10; 100,
            1000; 2020). KID shrinks the subsets to the smaller set, as theirs does.
        progress: tqdm bars while extracting features.

    Returns:
        :class:`EvaluationResult` (features included). A metric that cannot be computed on
        these sets (IS with fewer generated inputs than splits, FID / KID with fewer than 2
        rows) is ``None`` with a note; a bad input file raises :class:`EvaluationInputError`.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
    ds = None if dataset is None else dataset.lower()
    if ds is not None and ds not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS} or None, got {dataset!r}")
    if ds == "vas" and classes is None:
        classes = VAS_CLASSES
    if (model is None) == (weights is None):
        raise ValueError("give exactly one of model= (a Melception) or weights=")
    if model is None:
        model, weights_desc = load_melception(weights, device=device)
    else:
        if device is not None:
            model.to(device)
        weights_desc = "given model"
    was_training = model.training
    model.eval()
    try:
        settings = _model_settings(model)
        cache = FeatureCache(cache_dir, settings) if cache_dir is not None else None
        sets = {}
        for name, source, use_cache in (
            ("generated", generated, cache_generated),
            ("reference", reference, True),
        ):
            items, notes = collect_set(source)
            if not items:
                raise EvaluationInputError(f"no .npy or .wav inputs in the {name} set {source}")
            fs = extract_features(
                items,
                model,
                batch_size=batch_size,
                cache=cache if use_cache else None,
                progress=progress,
                desc=name,
                source=str(source) if isinstance(source, (str, os.PathLike)) else "files",
            )
            fs.notes += notes
            sets[name] = fs
    finally:
        model.train(was_training)
    gen, ref = sets["generated"], sets["reference"]
    settings.update(
        {
            "weights": weights_desc,
            "dataset": ds,
            "classes": list(classes) if ds == "vas" and classes else None,
            "seed": seed,
            "batch_size": batch_size,
        }
    )
    result = EvaluationResult(generated=gen, reference=ref, settings=settings)
    if str(weights_desc).startswith(RANDOM_PREFIX):
        result.notes.append("caution: random weights; the scores are plumbing checks only")
    g2048, r2048 = gen.features["2048"], ref.features["2048"]
    if "fid" in metrics:
        if min(gen.n, ref.n) < 2:
            result.notes.append("FID needs at least 2 inputs per set; not computed")
        else:
            result.fid, result.fid_terms = _fid(g2048, r2048)
    if "isc" in metrics:
        if gen.n < isc_splits:
            result.notes.append(
                f"IS needs at least {isc_splits} generated inputs (one per split); not computed"
            )
        else:
            res = inception_score(
                gen.features["logits_unbiased"], splits=isc_splits, shuffle=True, seed=seed
            )
            result.isc_mean, result.isc_std, result.isc_splits = res.mean, res.std, isc_splits
    if "kid" in metrics:
        m = min(kid_subset_size, gen.n, ref.n)
        if m < 2:
            result.notes.append("KID needs at least 2 inputs per set; not computed")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the shrink is noted below
                kid = kernel_inception_distance(
                    g2048,
                    r2048,
                    subsets=kid_subsets,
                    subset_size=kid_subset_size,
                    seed=seed,
                    small_sets="clamp",
                )
            result.kid_mean, result.kid_std = kid.mean, kid.std
            result.kid_subsets, result.kid_subset_size = kid.subsets, kid.subset_size
            if kid.subset_size < kid_subset_size:
                result.notes.append(
                    f"KID subsets shrunk to {kid.subset_size} rows (smaller set), as the "
                    "authors' evaluation does"
                )
    if "mkl" in metrics and ds is not None:
        mkl = mean_kl_by_video(
            ref.features["logits"],
            ref.paths,
            gen.features["logits"],
            gen.paths,
            ds,
            classes,
        )
        result.mkl = mkl
        if mkl.unmatched_generated:
            result.notes.append(
                f"MKL: {len(mkl.unmatched_generated)} generated files have no reference file "
                f"of the same video (left out, as the authors do), e.g. "
                f"{mkl.unmatched_generated[0]}"
            )
        if mkl.duplicate_reference_keys:
            result.notes.append(
                f"MKL: {mkl.duplicate_reference_keys} reference files repeat a video key; the "
                "last one of each is used (as the authors do)"
            )
    return result


# ----------------------------------------------------------------------------- outputs


def write_report(
    result: EvaluationResult,
    out_dir: str | os.PathLike,
    *,
    stem: str = "specvqgan_eval",
    plot: bool = True,
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.txt`` and, with MKL and matplotlib, ``<stem>_kl.png``
    (atomically). Returns ``{"json", "text"[, "plot"]}`` -> path; a missing matplotlib only
    drops the plot (and says so in the text report)."""
    out = Path(out_dir)
    paths = {"json": out / f"{stem}.json", "text": out / f"{stem}.txt"}
    lines = result.lines()
    if plot and result.mkl is not None:
        try:
            paths["plot"] = plot_kl(result, out / f"{stem}_kl.png")
        except RuntimeError as exc:  # no matplotlib
            lines.append(f"note:       plot not written: {exc}")
    write_bytes_atomic(paths["json"], (result.to_json() + "\n").encode())
    write_bytes_atomic(paths["text"], ("\n".join(lines) + "\n").encode())
    return paths


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("plots need matplotlib: pip install 'audiorep[plot]'") from exc
    return plt


def plot_kl(result: EvaluationResult, path: str | os.PathLike, *, top_groups: int = 30) -> Path:
    """Per-video KL histogram (left) and the mean KL per class folder (right) as a PNG."""
    if result.mkl is None:
        raise ValueError("no MKL was computed")
    plt = _pyplot()
    videos = result.mkl.videos
    values = np.array([v.kl for v in videos])
    groups: dict[str, list[float]] = {}
    for v in videos:
        groups.setdefault(v.group, []).append(v.kl)
    fig, (ax_hist, ax_grp) = plt.subplots(1, 2, figsize=(11, 4.2))
    title = f"MKL {result.mkl.value:.4f} over {len(videos)} videos ({result.mkl.pairs} samples)"
    random = any("random weights" in n for n in result.notes)
    if random:
        title += "\nRANDOM WEIGHTS: not meaningful (plumbing check only)"
    fig.suptitle(title, color="#C44E52" if random else "black")
    ax_hist.hist(values, bins=min(40, max(5, len(values) // 3)), color="#4C72B0")
    ax_hist.axvline(result.mkl.value, color="k", ls="--", lw=1, label="MKL (sample mean)")
    ax_hist.xaxis.set_major_locator(plt.MaxNLocator(5))  # readable ticks for tiny spreads
    ax_hist.set_xlabel("KL(real || generated), per video")
    ax_hist.set_ylabel("videos")
    ax_hist.legend(loc="upper right", fontsize=8)
    if len(groups) > 1:
        ranked = sorted(groups.items(), key=lambda kv: -float(np.mean(kv[1])))[:top_groups]
        names = [k for k, _ in ranked]
        means = [float(np.mean(v)) for _, v in ranked]
        ax_grp.barh(range(len(names)), means, color="#55A868")
        ax_grp.set_yticks(range(len(names)), names, fontsize=7)
        ax_grp.invert_yaxis()
        ax_grp.set_xlabel("mean KL per video")
        ax_grp.set_title(f"by class folder (worst {len(names)} of {len(groups)})")
    else:
        ax_grp.text(0.5, 0.5, "one class folder only", ha="center", va="center")
        ax_grp.set_axis_off()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return write_bytes_atomic(path, buffer.getbuffer())


__all__ = [
    "DATASETS",
    "EvaluationInputError",
    "EvaluationResult",
    "FEATURE_TAPS",
    "FeatureSet",
    "INPUT_EXTENSIONS",
    "MKLResult",
    "METRICS",
    "VAS_CLASSES",
    "VideoKL",
    "collect_set",
    "evaluate",
    "extract_features",
    "judge_input",
    "load_melception",
    "mean_kl_by_video",
    "per_pair_kl",
    "plot_kl",
    "video_key",
    "write_report",
]
