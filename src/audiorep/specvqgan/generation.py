"""Visually guided (or class-conditioned) sound generation: condition -> tokens -> mel -> audio.

One call chain for the CLI (``audiorep generate``), the web tool and the demo:

1. a :class:`Condition` from a class name, a feature file (the authors' ``.pkl`` or ``.npy``,
   optionally RGB + flow), or a video (ResNet-50 features extracted on the fly at 21.5 fps,
   :mod:`audiorep.specvqgan.video`); features go through the authors' chain
   (:mod:`audiorep.specvqgan.visual_features`) with the model's own ``feat_sample_size``;
2. :func:`audiorep.specvqgan.sampling.sample_tokens` with one seed per sample (``seed + k``), so
   sample k of an input is reproducible on its own;
3. the codec decodes the tokens to a mel in [-1, 1]; it is saved as ``(x + 1) / 2`` without
   clamping, as the authors save samples (their evaluation reads that); the audio comes from the
   clamped [0, 1] mel through MelGAN (or Griffin-Lim).
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiorep.specvqgan.codec import mel_to_audio
from audiorep.specvqgan.codec_models import load_vocoder
from audiorep.specvqgan.sampling import SamplingSettings, StepCallback, sample_tokens
from audiorep.specvqgan.transformer import VAS_CLASSES, CodeTransformer, load_transformer

PathLike = str | os.PathLike
SAMPLE_RATE = 22050


@dataclass
class Condition:
    """What one generated clip is conditioned on.

    Attributes:
        value: the model input: features ``(1, D, S)`` float32, a class ``(1, 1)`` int64, or
            ``{"feature", "target"}``.
        name: a file-safe id for the outputs (the video / feature file stem, or the class).
        target: the class index when known (names the ``cls_<target>`` output folder).
        label: the class name when known.
        source: where it came from (file path or "class").
        details: anything worth recording (frames used, feature shape, timings).
    """

    value: Any
    name: str
    target: int | None = None
    label: str | None = None
    source: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_class(cls, model: CodeTransformer, name_or_index: str | int) -> Condition:
        """A class condition; names are matched case-insensitively against the model's classes."""
        if "class" not in model.kind:
            raise ValueError(f"this model is conditioned on {model.kind}, not on a class")
        if model.kind == "feature+class":
            raise ValueError("a feature+class model needs features too: use from_features")
        target, label = resolve_class(model, name_or_index)
        value = torch.tensor([[target]], dtype=torch.long)
        return cls(value, _safe(label or f"class_{target}"), target, label, "class")

    @classmethod
    def from_features(
        cls,
        model: CodeTransformer,
        path: PathLike,
        flow: PathLike | None = None,
        *,
        demo_tiling: bool = False,
        target: int | None = None,
    ) -> Condition:
        """Features from the authors' ``.pkl`` or an ``.npy`` ``(T, D)`` (RGB + ``flow`` for
        BN-Inception), through the dataset chain (zero-pad/trim to 215, crop 212, resample to the
        model's S), or the demo's tiling with ``demo_tiling``."""
        from audiorep.specvqgan.visual_features import FeatureSettings, load_feature_files

        _needs_features(model)
        settings = FeatureSettings(feat_sample_size=model.spec.feat_sample_size,
                                   tile_short=demo_tiling)  # fmt: skip
        rows = load_feature_files(path, flow, settings)
        if rows.shape[1] != model.spec.feat_depth:
            raise ValueError(
                f"{path}: features are {rows.shape[1]} wide (with flow: {flow is not None}); "
                f"the model expects {model.spec.feat_depth}"
            )
        value = _with_class(model, _as_input(rows), target)
        label = _label_of(model, target)
        details = {"feature_rows": int(rows.shape[0]), "flow": str(flow) if flow else None}
        return cls(value, _safe(Path(path).stem), target, label, str(path), details)

    @classmethod
    def from_rows(
        cls,
        model: CodeTransformer,
        rows: np.ndarray,
        name: str,
        *,
        target: int | None = None,
        source: str = "",
        details: dict[str, Any] | None = None,
    ) -> Condition:
        """Condition rows ``(S, D)`` already through the feature chain (e.g. from
        :func:`audiorep.specvqgan.video.video_condition_features`)."""
        _needs_features(model)
        if rows.ndim != 2 or rows.shape != (model.spec.feat_sample_size, model.spec.feat_depth):
            raise ValueError(
                f"{source or name}: condition rows {tuple(rows.shape)}; the model takes "
                f"({model.spec.feat_sample_size}, {model.spec.feat_depth})"
            )
        value = _with_class(model, _as_input(rows), target)
        return cls(value, _safe(name), target, _label_of(model, target), source,
                   dict(details or {}))  # fmt: skip

    @classmethod
    def from_video(
        cls,
        model: CodeTransformer,
        path: PathLike,
        *,
        resnet: torch.nn.Module | None = None,
        target: int | None = None,
        progress: bool = False,
    ) -> Condition:
        """ResNet-50 features of a video (decoded at 21.5 fps, first 10 s, short videos tiled as
        the authors' demo), then the demo chain to the model's S frames."""
        from audiorep.specvqgan.video import load_resnet50, video_condition_features
        from audiorep.specvqgan.visual_features import FeatureSettings

        _needs_features(model)
        if model.spec.feat_depth != 2048:
            raise ValueError(
                f"video features are ResNet-50 (2048); the model takes {model.spec.feat_depth}"
            )
        if resnet is None:
            resnet = load_resnet50(None, model.device)[0]
        t0 = time.perf_counter()
        settings = FeatureSettings(feat_sample_size=model.spec.feat_sample_size)
        rows = video_condition_features(path, resnet, settings, progress=progress)
        seconds = time.perf_counter() - t0
        details = {"feature_rows": int(rows.shape[0]), "feature_seconds": round(seconds, 3)}
        return cls.from_rows(model, rows, Path(path).stem, target=target, source=str(path),
                             details=details)  # fmt: skip


def resolve_class(model: CodeTransformer, name_or_index: str | int) -> tuple[int, str | None]:
    """``(index, name or None)`` of a class given by name or index."""
    classes = model.classes or []
    n = model.spec.n_classes
    if isinstance(name_or_index, int) or str(name_or_index).isdigit():
        i = int(name_or_index)
        if not 0 <= i < n:
            raise ValueError(f"class index {i} out of range: the model has {n} classes")
        return i, (classes[i] if classes else None)
    wanted = str(name_or_index).strip().lower()
    for i, c in enumerate(classes):
        if c.lower() == wanted:
            return i, c
    known = ", ".join(classes) if classes else f"indices 0..{n - 1} (no names stored)"
    raise ValueError(f"unknown class {name_or_index!r}; this model knows: {known}")


def known_classes(model: CodeTransformer) -> list[str]:
    """Class names for labels and output folders: the model's own, else VAS's for a VAS-sized
    (or feature-only) model."""
    if model.classes:
        return list(model.classes)
    return list(VAS_CLASSES) if model.spec.n_classes in (0, len(VAS_CLASSES)) else []


def label_target(model: CodeTransformer, label: str) -> int:
    """The index of ``label`` (a name or a number) among :func:`known_classes`."""
    classes = known_classes(model)
    if label.isdigit() and (not classes or int(label) < len(classes)):
        return int(label)
    for i, c in enumerate(classes):
        if c.lower() == label.strip().lower():
            return i
    raise ValueError(f"unknown label {label!r}; known: {', '.join(classes) or 'none'}")


def class_from_path(model: CodeTransformer, path: PathLike) -> int | None:
    """The class of an input in a ``<class>/<file>`` layout (VAS videos and features), if the
    folder name is one of :func:`known_classes`."""
    folder = Path(path).parent.name.lower()
    if folder.startswith("feature_") or folder == "melspec_10s_22050hz":
        folder = Path(path).parent.parent.name.lower()
    for i, c in enumerate(known_classes(model)):
        if c.lower() == folder:
            return i
    return None


def _needs_features(model: CodeTransformer) -> None:
    if "feature" not in model.kind:
        raise ValueError("this model is conditioned on a class only: use --class")


def _as_input(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rows.T, dtype=np.float32))[None]


def _with_class(model: CodeTransformer, feats: torch.Tensor, target: int | None) -> Any:
    if model.kind != "feature+class":
        return feats
    if target is None:
        raise ValueError("this model is conditioned on features and a class: give the class too")
    return {"feature": feats, "target": torch.tensor([[target]], dtype=torch.long)}


def _label_of(model: CodeTransformer, target: int | None) -> str | None:
    classes = known_classes(model)
    return classes[target] if target is not None and target < len(classes) else None


def _safe(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return keep.strip("._") or "input"


@dataclass
class GenerationModels:
    """The loaded models of one generation setup."""

    transformer: CodeTransformer
    vocoder: Callable[[torch.Tensor], torch.Tensor] | None
    name: str
    vocoder_name: str

    @property
    def default_top_k(self) -> int:
        """The authors' tool default: half the codebook (64 for 128 codes)."""
        return max(1, self.transformer.vocab_size // 2)


def load_generation_models(
    transformer: str | None = "small", vocoder: str | None = "small", device: str = "cpu"
) -> GenerationModels:
    """Transformer (with its codec) and vocoder, by the loaders' specs."""
    model, name = load_transformer(transformer, device)
    voc, voc_name = load_vocoder(vocoder, device)
    return GenerationModels(model, voc, name, voc_name)


@dataclass
class GeneratedClip:
    """One sample.

    Attributes:
        tokens: ``(5 W,)`` int64 tokens in sequence order; ``codes`` the ``(5, W)`` grid.
        mel: ``(80, 16 W)`` float32 ``(x + 1) / 2`` of the decoder output, unclamped (the
            authors' sample files); ``wave`` float32 at 22 050 Hz from the clamped mel.
        seed: the seed of this sample's generator.
        seconds: sampling + decoding + vocoding time of the batch, shared equally.
    """

    tokens: torch.Tensor
    codes: torch.Tensor
    mel: np.ndarray
    wave: np.ndarray
    seed: int
    seconds: float


def generate(
    models: GenerationModels,
    condition: Condition,
    settings: SamplingSettings | None = None,
    *,
    seed: int = 0,
    num_samples: int = 1,
    prime: torch.Tensor | None = None,
    on_step: StepCallback | None = None,
    every: int = 1,
    cancel: threading.Event | None = None,
) -> list[GeneratedClip]:
    """``num_samples`` clips for one condition; sample k uses seed ``seed + k``."""
    model = models.transformer
    settings = settings or SamplingSettings(top_k=models.default_top_k)
    seeds = [int(seed) + k for k in range(num_samples)]
    t0 = time.perf_counter()
    tokens = sample_tokens(
        model, condition.value, settings, seeds=seeds, num_samples=num_samples, prime=prime,
        on_step=on_step, every=every, cancel=cancel,
    )  # fmt: skip
    mels = ((model.decode(tokens) + 1.0) / 2.0)[:, 0].cpu()
    clips = []
    for k in range(num_samples):
        wave = mel_to_audio(mels[k].clamp(0.0, 1.0), models.vocoder)
        clips.append(
            GeneratedClip(
                tokens=tokens[k],
                codes=model.grid(tokens[k : k + 1])[0],
                mel=mels[k].numpy().astype(np.float32),
                wave=wave.numpy().astype(np.float32),
                seed=seeds[k],
                seconds=0.0,
            )
        )
    spent = (time.perf_counter() - t0) / num_samples
    for c in clips:
        c.seconds = spent
    return clips


def sample_stem(condition: Condition, k: int) -> str:
    """The authors' sample name: ``<video>_sample_<k>``."""
    return f"{condition.name}_sample_{k}"


def sample_folder(out_dir: PathLike, condition: Condition) -> Path:
    """``<out>/cls_<target>`` when the class is known (the authors' layout, which
    ``audiorep specvqgan evaluate`` groups by), else ``<out>``."""
    out = Path(out_dir)
    return out / f"cls_{condition.target}" if condition.target is not None else out


def prime_tokens_from_audio(model: CodeTransformer, path: PathLike) -> torch.Tensor:
    """Ground-truth tokens ``(1, 265)`` of an audio file (looped to 10 s, the authors' mel),
    for "half" priming."""
    from audiorep.frontends.specvqgan import mel_spectrogram
    from audiorep.specvqgan.mels import load_clip

    mel = mel_spectrogram(load_clip(path)).to(torch.float32)
    start = (mel.shape[-1] - 16 * model.spec.grid[1]) // 2  # the authors' centre crop 860 -> 848
    mel = mel[:, start : start + 16 * model.spec.grid[1]]
    return model.codes_of((2 * mel - 1)[None, None])


def write_outputs(
    clip: GeneratedClip,
    folder: Path,
    stem: str,
    *,
    video: PathLike | None = None,
) -> dict[str, str]:
    """Write ``<stem>.npy`` (mel), ``<stem>.wav`` and, for a video input, ``<stem>.mp4``: the
    video with the new sound (cut to the shorter of the two); returns the paths written."""
    import soundfile as sf

    from audiorep.atomic import write_bytes_atomic

    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    npy = folder / f"{stem}.npy"
    buf = io.BytesIO()
    np.save(buf, clip.mel[None], allow_pickle=False)
    write_bytes_atomic(npy, buf.getvalue())
    paths["mel"] = str(npy)
    wav = folder / f"{stem}.wav"
    buf = io.BytesIO()
    sf.write(buf, clip.wave, SAMPLE_RATE, subtype="PCM_24", format="WAV")
    write_bytes_atomic(wav, buf.getvalue())
    paths["wav"] = str(wav)
    if video is not None:
        from audiorep.specvqgan.video import mux_audio_into_video, video_duration

        # The sound covers the first 9.85 s (x width scale): a shorter video keeps its length
        # and gets the sound's start; a longer one is cut to the sound (re-encoded).
        sound_seconds = len(clip.wave) / SAMPLE_RATE
        video_seconds = video_duration(video)
        seconds = min(video_seconds, sound_seconds)
        wave = clip.wave[: int(round(seconds * SAMPLE_RATE))]
        mp4 = folder / f"{stem}.mp4"
        cut = seconds if video_seconds > sound_seconds else None
        mux_audio_into_video(video, wave, SAMPLE_RATE, mp4, duration=cut)
        paths["mp4"] = str(mp4)
    return paths


__all__ = [
    "Condition",
    "GeneratedClip",
    "GenerationModels",
    "class_from_path",
    "known_classes",
    "label_target",
    "generate",
    "load_generation_models",
    "prime_tokens_from_audio",
    "resolve_class",
    "sample_folder",
    "sample_stem",
    "write_outputs",
]
