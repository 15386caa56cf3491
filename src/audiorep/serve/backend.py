"""What the web tool needs from the models, behind one small interface.

The server never touches the transformer, sampler or generation code directly: it talks to a
:class:`Backend`. :class:`GenerationBackend` is the real one, written against
:mod:`audiorep.specvqgan.generation` (``load_generation_models``, ``Condition``, ``generate``,
``prime_tokens_from_audio``) and :mod:`audiorep.specvqgan.sampling` (``SamplingSettings``,
``StepEvent``, ``SamplingCancelled``); every call into those modules is in this file, so a
change of their API is fixed here only. Tests substitute a backend with the same methods.

Shapes the rest of the package relies on:

* codes: int64 ``(5, W)`` (row 0 = lowest mel region), ``W = 53 width_scale``;
* tokens: int64 ``(n,)`` in the transformer's column-major order (position ``w * 5 + h``);
* mel: float32 ``(80, 16 W)``, ``(x + 1) / 2`` of the decoder output (a sampled clip's is not
  clamped, as the authors save samples; pictures clip it to [0, 1]); wave: float32
  ``(samples,)`` at 22 050 Hz;
* attention: float32 ``(heads, keys)``, the current step's query row of the last block
  (condition positions first).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiorep.specvqgan.codec import decode_codes

PathLike = str | os.PathLike

ROWS = 5
COLUMNS = 53  # code columns of one 9.85 s window
#: Tokens given as the prime in "half" mode: the first ``53 // 2`` columns (the authors'
#: ``generate_samples`` starts sampling at step 130).
HALF_PRIME_TOKENS = (COLUMNS // 2) * ROWS
FEATURE_DEPTH = 2048
SMALL_MODEL = "small"
RANDOM_MODEL = "random"


class SamplingCancelled(Exception):
    """The user pressed cancel; raised out of :meth:`Backend.sample`."""


class BackendError(ValueError):
    """A request the models cannot serve (bad condition, unknown model); the message is shown
    on the page."""


@dataclass
class SampleSettings:
    """The page's sampling controls.

    Attributes:
        temperature: logits are divided by it (> 0).
        top_k: keep the k most likely codes (None: all).
        top_p: keep the smallest set of codes whose probability reaches p (None: all).
        seed: seeds the sampler's generator.
        prime: give the first :data:`HALF_PRIME_TOKENS` ground-truth tokens ("half").
        width_scale: 9.85 s windows of codes to sample (the authors' "temporal scale").
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    prime: bool = False
    width_scale: int = 1

    def check(self, n_codes: int | None = None) -> SampleSettings:
        if not (self.temperature > 0 and np.isfinite(self.temperature)):
            raise BackendError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise BackendError(f"top-k must be >= 1, got {self.top_k}")
        if n_codes is not None and self.top_k is not None and self.top_k > n_codes:
            raise BackendError(f"top-k must be <= the codebook size {n_codes}, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise BackendError(f"top-p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.width_scale <= 8:
            raise BackendError(f"length must be 1 to 8 windows of 9.85 s, got {self.width_scale}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Progress:
    """One sampling step, as the page draws it (module docstring for the shapes)."""

    step: int
    total: int
    tokens: np.ndarray
    attention: np.ndarray | None
    elapsed_s: float
    condition_length: int | None = None


@dataclass
class Sample:
    """A finished clip: codes, mel, wave (module docstring), its seed and settings."""

    codes: np.ndarray
    mel: np.ndarray
    wave: np.ndarray
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    """A transformer ready to sample.

    Attributes:
        name: what the user picked. kind: ``"feature"``, ``"class"`` or ``"feature+class"``.
        classes: class names of class-conditional models (else None).
        n_codes: codebook size. feat_sample_size: feature frames the model takes (None for
        class-only models). codec: the transformer's own codec (partial decodes, priming).
        handle: what :meth:`Backend.sample` needs (the real backend: ``GenerationModels``).
        condition_length: S, the condition positions in front of the tokens.
    """

    name: str
    kind: str
    classes: list[str] | None
    n_codes: int
    feat_sample_size: int | None
    codec: Any
    handle: Any
    description: str = ""
    condition_length: int = 0

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "classes": self.classes,
            "n_codes": self.n_codes,
            "feat_sample_size": self.feat_sample_size,
            "description": self.description,
        }


OnStep = Callable[[Progress], None]


class Backend:
    """The interface :mod:`audiorep.serve.app` uses (see :class:`GenerationBackend`)."""

    def model_choices(self) -> list[dict[str, Any]]:
        """``[{"name", "description"}]``, the default model first."""
        raise NotImplementedError

    def load(self, name: str) -> LoadedModel:
        raise NotImplementedError

    def condition(
        self,
        model: LoadedModel,
        *,
        class_name: str | None = None,
        features: Path | None = None,
        flow: Path | None = None,
        video: Path | None = None,
    ) -> Any:
        """The model's condition from a class name, a features file (``.npy`` / the authors'
        ``.pkl``; ``flow``: the second BN-Inception stream) or a video file."""
        raise NotImplementedError

    def sample(
        self,
        model: LoadedModel,
        condition: Any,
        settings: SampleSettings,
        *,
        prime: torch.Tensor | None,
        on_step: OnStep | None,
        cancel: threading.Event | None,
    ) -> Sample:
        """One clip; raises :class:`SamplingCancelled` when ``cancel`` is set."""
        raise NotImplementedError

    def ground_truth_tokens(self, model: LoadedModel, path: Path) -> torch.Tensor:
        """int64 ``(265,)`` column-major tokens of an audio (or video) file, as the model saw
        its training data (looped to 10 s, the authors' mel, centre 848 frames), for priming."""
        raise NotImplementedError

    def decode(self, model: LoadedModel, codes: np.ndarray) -> np.ndarray:
        """[0, 1] mel ``(80, 16 k)`` of a ``(5, k)`` grid (the part sampled so far)."""
        mel = decode_codes(model.codec, torch.as_tensor(np.asarray(codes), dtype=torch.long))
        return mel.numpy()


def transformer_choices(extra: str | None = None) -> list[dict[str, Any]]:
    """The shipped small model, ``extra`` (a path the user gave), the registry's transformers
    (downloaded when picked) and the seeded random model, in that order."""
    from audiorep.weights.registry import REGISTRY

    out = [
        {
            "name": SMALL_MODEL,
            "description": "small class-conditional model shipped with audiorep (offline)",
        }
    ]
    if extra and extra not in (SMALL_MODEL, RANDOM_MODEL):
        out.append({"name": extra, "description": "given with --transformer"})
    for name in sorted(REGISTRY):
        entry = REGISTRY[name]
        # the shipped model (bundled) is "small" above; the rest download when picked
        if "transformer" in name and name != extra and not entry.bundled:
            out.append({"name": name, "description": entry.description + " (downloaded)"})
    out.append(
        {
            "name": RANDOM_MODEL,
            "description": "seeded tiny random model: noise, for trying the page",
        }
    )
    return out


class GenerationBackend(Backend):
    """The real models: :mod:`audiorep.specvqgan.generation` (module docstring).

    Args:
        default: the model listed first (``--transformer``). vocoder: ``--vocoder`` spec.
        device: torch device of every model.
    """

    def __init__(
        self, default: str = SMALL_MODEL, vocoder: str = "small", device: str = "cpu"
    ) -> None:
        self.default = default
        self.vocoder = vocoder
        self.device = device
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def model_choices(self) -> list[dict[str, Any]]:
        choices = transformer_choices(self.default)
        extra = [
            {"name": n, "description": m.description}
            for n, m in self._loaded.items()
            if all(c["name"] != n for c in choices)
        ]
        choices += extra
        choices.sort(key=lambda c: c["name"] != self.default)  # the default first (stable)
        return choices

    def add(self, name: str, models: Any) -> LoadedModel:
        """Offer already loaded ``GenerationModels`` under ``name`` (notebooks, tests)."""
        with self._lock:
            self._loaded[name] = loaded_model(name, models)
            return self._loaded[name]

    def load(self, name: str) -> LoadedModel:
        name = name or self.default
        with self._lock:  # two tabs picking one model load it once
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def _load(self, name: str) -> LoadedModel:
        from audiorep.specvqgan import generation

        if name == RANDOM_MODEL:
            return loaded_model(
                name, tiny_random_generation_models("class", self.vocoder, self.device)
            )
        try:
            models = generation.load_generation_models(
                transformer=name, vocoder=self.vocoder, device=self.device
            )
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise BackendError(f"cannot load transformer {name!r}: {text}") from None
        return loaded_model(name, models)

    def condition(self, model, *, class_name=None, features=None, flow=None, video=None):
        from audiorep.specvqgan.generation import Condition, resolve_class

        t = model.handle.transformer
        target = None
        if "class" in model.kind:
            if not class_name:
                raise BackendError(f"{model.name} is conditioned on a class: pick one")
            if model.kind == "class":
                return Condition.from_class(t, class_name)
            target = resolve_class(t, class_name)[0]
        if features is not None:
            return Condition.from_features(t, features, flow, target=target)
        if video is not None:
            return Condition.from_video(t, video, target=target)
        raise BackendError(
            f"{model.name} is conditioned on video features: upload a video or a features file"
        )

    def ground_truth_tokens(self, model, path):
        from audiorep.specvqgan.generation import prime_tokens_from_audio

        return prime_tokens_from_audio(model.handle.transformer, path)[0].cpu()

    def sample(self, model, condition, settings, *, prime, on_step, cancel):
        return generate_one(model, condition, settings, prime=prime, on_step=on_step, cancel=cancel)


def loaded_model(name: str, models: Any) -> LoadedModel:
    """A :class:`LoadedModel` around ``generation.GenerationModels``."""
    t = models.transformer
    return LoadedModel(
        name=name,
        kind=t.kind,
        classes=t.classes,
        n_codes=int(t.vocab_size),
        feat_sample_size=t.spec.feat_sample_size if "feature" in t.kind else None,
        codec=t.first_stage_model,
        handle=models,
        description=f"{models.name}, vocoder {models.vocoder_name}",
        condition_length=int(t.spec.condition_length),
    )


def generate_one(
    model: LoadedModel,
    condition: Any,
    settings: SampleSettings,
    *,
    prime: torch.Tensor | None,
    on_step: OnStep | None,
    cancel: threading.Event | None,
) -> Sample:
    """The one call into :func:`audiorep.specvqgan.generation.generate` (one clip)."""
    from audiorep.specvqgan import generation, sampling

    settings.check(model.n_codes)
    sampler_settings = sampling.SamplingSettings(
        temperature=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        prime_tokens=HALF_PRIME_TOKENS if prime is not None else 0,
        width_scale=settings.width_scale,
    )

    def step(event: Any) -> None:
        if on_step is not None:
            att = event.attention
            on_step(
                Progress(
                    step=int(event.step),
                    total=int(event.total),
                    tokens=event.tokens[0].numpy().astype(np.int64),
                    attention=None if att is None else att[0].numpy(),
                    elapsed_s=float(event.elapsed_s),
                    condition_length=int(event.condition_length),
                )
            )

    try:
        (clip,) = generation.generate(
            model.handle,
            condition,
            sampler_settings,
            seed=settings.seed,
            num_samples=1,
            prime=None if prime is None else prime.reshape(1, -1),
            on_step=step,
            cancel=cancel,
        )
    except sampling.SamplingCancelled:
        raise SamplingCancelled() from None
    return Sample(
        codes=clip.codes.numpy().astype(np.int64),
        mel=np.asarray(clip.mel, dtype=np.float32),
        wave=np.asarray(clip.wave, dtype=np.float32),
        seed=int(clip.seed),
        settings=settings.to_dict(),
    )


def tiny_random_generation_models(
    kind: str = "class", vocoder: str = "small", device: str = "cpu"
) -> Any:
    """``GenerationModels`` of a seeded tiny random transformer (1 block, 2 heads, 32 wide) on
    the shipped small codec: ``kind`` ``"class"`` (3 classes) or ``"feature"`` (5 frames of
    2048-d features). It samples noise, quickly: for trying the page without trained weights."""
    from audiorep.models.gpt import GPTConfig
    from audiorep.specvqgan import generation
    from audiorep.specvqgan.codec_models import load_codec, load_vocoder
    from audiorep.specvqgan.transformer import CodeTransformer, TransformerSpec

    codec, codec_name = load_codec("small", device)
    voc, voc_name = load_vocoder(vocoder, device)
    feats = 5 if kind == "feature" else 0
    spec = TransformerSpec(
        gpt=GPTConfig(
            vocab_size=codec.config.n_embed,
            block_size=ROWS * COLUMNS + max(feats, 1),
            n_layer=1,
            n_head=2,
            n_embd=32,
        ),
        kind=kind,
        feat_depth=FEATURE_DEPTH if feats else 0,
        feat_sample_size=feats,
        n_classes=0 if feats else 3,
        classes=() if feats else ("random-a", "random-b", "random-c"),
        codec=codec_name,
    )
    with torch.random.fork_rng(devices=[]):  # seeded, and the caller's RNG untouched
        torch.manual_seed(0)
        model = CodeTransformer.build(spec, codec)
    return generation.GenerationModels(model.to(device).eval(), voc, RANDOM_MODEL, voc_name)


__all__ = [
    "Backend",
    "BackendError",
    "GenerationBackend",
    "HALF_PRIME_TOKENS",
    "LoadedModel",
    "Progress",
    "RANDOM_MODEL",
    "SMALL_MODEL",
    "Sample",
    "SampleSettings",
    "SamplingCancelled",
    "generate_one",
    "loaded_model",
    "tiny_random_generation_models",
    "transformer_choices",
]
