"""SpecVQGAN's two spectrogram judges as bundles: ``audiorep.load("melception" | "vggishish")``.

A judge bundle = the 22.05 kHz mel front end (:mod:`audiorep.frontends.specvqgan`) + the
judges' input steps (centre crop to 848 frames, per-bin normalisation with the shipped VGGSound
statistics) + Melception or VGGish-ish + a description of the weights:

* ``embed(waveform, sample_rate)`` -> float32 ``(N, D)``, one row per 10 s window: Melception's
  ``2048`` tap (the FID feature, D = 2048) or VGGish-ish's ``fc2_relu`` (D = 4096);
* ``logits(waveform, sample_rate)`` -> ``(N, C)`` (``logits``: the MKL input; Melception also
  has ``logits_unbiased``, the IS input, through ``model.forward_taps``);
* ``fusion`` / ``fusion_module``: the global means of several taps, concatenated;
* ``frames()``: one timestamp per 10 s window (HEAR).

Windows: a clip up to 10 s is looped to 10 s at its own sample rate, then resampled to
22 050 Hz, as the authors' extraction does; a longer clip is resampled and cut into 10 s
windows, and a last window shorter than 10 s is looped to 10 s (the authors only ever see 10 s
clips). Each window's mel is ``(80, 860)``; the judges see its centre 848 frames.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiorep.audio import check_waveform
from audiorep.frontends.specvqgan import (
    CLIP_SAMPLES,
    CLIP_SECONDS,
    SAMPLE_RATE,
    center_crop,
    load_judge_stats,
    mel_spectrogram,
    normalize_for_judges,
    tile_to_length,
)
from audiorep.models import melception, vggishish
from audiorep.models.melception import Melception
from audiorep.models.vggishish import VGGishish
from audiorep.pipelines.base import (
    RANDOM_WEIGHTS,
    RESAMPLER,
    Bundle,
    Frames,
    WeightsUnavailableError,
    model_from_state,
    random_weights_description,
)
from audiorep.pipelines.registry import BundleSpec, register

#: Per judge: the registry weights entry, the embedding tap, the default fusion taps.
JUDGES = {
    "melception": ("specvqgan-melception", "2048", ("64", "192", "768", "2048")),
    "vggishish": ("specvqgan-vggishish16", "fc2_relu", ("relu3_3", "relu4_3", "relu5_3")),
}
DEFAULT_BATCH_SIZE = 8  # 10 s windows per model forward


def judge_windows(waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
    """One clip -> its 10 s windows at 22 050 Hz, float64 ``(N, 220500)`` (module docstring).

    ``waveform``: ``(samples,)`` or ``(channels, samples)`` float in [-1, 1] (channels are
    averaged), any sample rate.
    """
    x = check_waveform(torch.as_tensor(waveform), what="audio").to(torch.float64)
    if x.dim() == 2:
        x = x.mean(dim=0)
    if x.dim() != 1 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty (samples,) or (channels, samples) clip: {x.shape}")
    sr = int(sample_rate)
    if x.shape[0] <= round(CLIP_SECONDS * sr):
        x = tile_to_length(x, round(CLIP_SECONDS * sr))  # at the file's rate, as the authors
    if sr != SAMPLE_RATE:
        from audiorep.resample import resample

        x = resample(x, sr, SAMPLE_RATE)
    count = max(1, math.ceil(x.shape[0] / CLIP_SAMPLES - 1e-9))
    windows = [x[k * CLIP_SAMPLES : (k + 1) * CLIP_SAMPLES] for k in range(count)]
    windows[-1] = tile_to_length(windows[-1], CLIP_SAMPLES)
    return torch.stack(windows)


class TapMeans(nn.Module):
    """Judge input ``(B, 80, T)`` -> the global (spatial) means of ``taps``, concatenated:
    ``(B, sum of channels)``. The judges' multi-layer feature."""

    def __init__(self, model: nn.Module, taps: Sequence[str]) -> None:
        super().__init__()
        unknown = [t for t in taps if t not in model.tap_names]
        if not taps or unknown:
            raise ValueError(
                f"unknown layer(s) {unknown or list(taps)} for {type(model).__name__}; "
                f"available: {', '.join(model.tap_names)}"
            )
        self.model = model
        self.taps = tuple(taps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model.forward_taps(x, self.taps)
        parts = [t.flatten(2).mean(dim=2) if t.dim() > 2 else t for t in out.values()]
        return torch.cat(parts, dim=1)


class SpectrogramJudgeBundle(Bundle):
    """Mel front end + judge input steps + Melception or VGGish-ish, with their weights.

    Attributes:
        name: ``"melception"`` or ``"vggishish"``.
        sample_rate: 22050 (inputs at other rates are resampled).
        embedding_size: D of ``embed`` (2048 or 4096).
        model: the judge (eval mode); ``model.forward_taps`` gives every named activation.
        embedding_tap: the tap ``embed`` returns.
        num_classes: C of ``logits``.
    """

    sample_rate = SAMPLE_RATE
    streams_windows = False
    precision = "float32"

    def __init__(
        self,
        name: str,
        model: nn.Module,
        weights_description: str,
        device: str | torch.device = "cpu",
        pretrained: bool = True,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        super().__init__(weights_description, pretrained)
        self.name = name
        self.model = model.eval()
        self.embedding_tap = JUDGES[name][1]
        self.default_fusion_layers = JUDGES[name][2]
        # Melception's 2048-d pool; VGGish-ish's second hidden layer (4096 for the authors').
        hidden = getattr(model, "embedding_size", None)
        self.embedding_size = int(hidden or model.classifier[2].out_features)
        self.num_classes = int(model.num_classes)
        self.batch_size = int(batch_size)
        self._stats = load_judge_stats()
        self.to(device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> SpectrogramJudgeBundle:
        self.model.to(device)
        return self

    def mels(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip -> the authors' ``(N, 80, 860)`` [0, 1] mel of each 10 s window."""
        return mel_spectrogram(judge_windows(waveform, sample_rate).to(self.device))

    def judge_input(self, mels: torch.Tensor) -> torch.Tensor:
        """``(N, 80, 860)`` [0, 1] mels -> the judges' normalised ``(N, 80, 848)`` float32."""
        return normalize_for_judges(center_crop(mels), self._stats)

    def _run(self, waveform, sample_rate: int, fn) -> torch.Tensor:
        x = self.judge_input(self.mels(waveform, sample_rate))
        outs = [fn(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return torch.cat(outs).float()

    @torch.inference_mode()
    def embed(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip -> float32 ``(N, D)``: the embedding tap of each 10 s window."""
        tap = self.embedding_tap
        return self._run(waveform, sample_rate, lambda x: self.model.forward_taps(x, tap)[tap])

    @torch.inference_mode()
    def logits(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip -> float32 ``(N, C)`` class logits of each 10 s window."""
        return self._run(
            waveform, sample_rate, lambda x: self.model.forward_taps(x, "logits")["logits"]
        )

    def unit_starts(self, num_units: int) -> np.ndarray:
        return np.arange(num_units, dtype=np.float64) * CLIP_SECONDS

    def unit_seconds(self, clip_seconds: float) -> float:
        return CLIP_SECONDS

    def windowing_settings(self) -> dict[str, object]:
        return {
            "policy": "10 s windows, one embedding per window",
            "short_clips": "looped to 10 s at their own rate, then resampled (as the authors)",
            "mel": "specvqgan 22050 Hz, 80 x 860 in [0, 1], centre 848 frames",
            "normalization": "per mel bin, train_means_stds_melspec_10s_22050hz.txt",
            "tap": self.embedding_tap,
        }

    def describe_units(self) -> str:
        return "10 s windows"

    def settings(self) -> dict[str, object]:
        return {
            "model": self.name,
            "weights": self.weights_description,
            "weights_sha256": self.weights_fingerprint(),
            "pretrained": self.pretrained,
            "final_relu": False,
            "frontend_dtype": "float64",
            "precision": self.precision,
            "windowing": self.windowing_settings(),
            "resampler": RESAMPLER,
        }

    def fusion_module(self, layers: Sequence[int | str] | None = None) -> TapMeans:
        """Global means of the taps ``layers`` (default: :data:`JUDGES`'s), concatenated."""
        return TapMeans(self.model, [str(t) for t in (layers or self.default_fusion_layers)])

    @torch.inference_mode()
    def fusion(
        self,
        waveform: np.ndarray | torch.Tensor,
        sample_rate: int,
        layers: Sequence[int | str] | None = None,
    ) -> torch.Tensor:
        """One clip -> ``(D_fusion,)``: :meth:`fusion_module` averaged over the windows."""
        return self._run(waveform, sample_rate, self.fusion_module(layers)).mean(dim=0)

    def frames(
        self, *, hop_seconds: float | None = None, batch_size: int | None = None
    ) -> JudgeFrames:
        """One frame per 10 s window (:class:`JudgeFrames`); the hop is fixed."""
        if hop_seconds is not None:
            raise TypeError(f"hop_seconds does not apply to {self.name!r}: windows are 10 s")
        return JudgeFrames(self, DEFAULT_BATCH_SIZE if batch_size is None else batch_size)

    def __repr__(self) -> str:
        return f"SpectrogramJudgeBundle({self.name!r}, weights={self.weights_description!r})"


class JudgeFrames(Frames):
    """One embedding per 10 s window of each sound, centred at ``5 + 10 k`` s; the scene
    embedding is their mean. Sounds arrive at 22 050 Hz."""

    def __init__(self, bundle: SpectrogramJudgeBundle, batch_size: int) -> None:
        super().__init__(bundle, batch_size)
        self.model = bundle.model  # registered: ``.to(device)`` moves it

    def num_timestamps(self, num_samples: int) -> int:
        if int(num_samples) <= CLIP_SAMPLES:
            return 1
        return math.ceil(int(num_samples) / CLIP_SAMPLES - 1e-9)

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        k = torch.arange(self.num_timestamps(num_samples), dtype=torch.float64)
        return ((k + 0.5) * CLIP_SECONDS * 1000.0).to(torch.float32).to(self.device)

    def embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        bundle = self.bundle
        return torch.stack([bundle.embed(a, SAMPLE_RATE) for a in audio]).to(self.device)

    def scene(self, audio: torch.Tensor) -> torch.Tensor:
        return self.embeddings(audio).mean(dim=1)


# ----------------------------------------------------------------------------- loading


def _read_judge_weights(path: Path) -> dict[str, torch.Tensor]:
    from audiorep.convert.readers import is_safetensors, read_safetensors
    from audiorep.convert.specvqgan import load_specvqgan_state_dict

    return read_safetensors(path) if is_safetensors(path) else load_specvqgan_state_dict(path)


def resolve_judge_weights(
    name: str, weights: str | os.PathLike | None
) -> tuple[dict[str, torch.Tensor], str]:
    """State dict and description for ``load_judge(name, weights=...)`` (not ``"random"``):
    ``None`` = the cached registry file (never downloads); a path (the authors' ``.pt`` or a
    converted ``.safetensors``); or a registry name (fetched, downloaded if needed)."""
    from audiorep.weights import REGISTRY, cached_path, fetch

    entry = JUDGES[name][0]
    if weights is None:
        path = cached_path(entry)
        if path.is_file():
            return _read_judge_weights(path), f"{entry}: {path}"
        raise WeightsUnavailableError(
            f"no {name} weights in the cache. Run `audiorep weights download {entry}` "
            f"(or place the authors' file at {path}), pass weights=PATH, or use "
            "weights='random' for seeded random weights."
        )
    path = Path(weights)
    if path.is_file():
        return _read_judge_weights(path), str(path)
    key = os.fspath(weights)
    if key in REGISTRY:
        if key != entry:
            raise ValueError(f"weights {key!r} are not {name} weights; use {entry}")
        fetched = fetch(key)
        return _read_judge_weights(fetched), f"{key}: {fetched}"
    raise FileNotFoundError(
        f"weights {key}: no such file, and not the registry name of {name} ({entry}) or 'random'"
    )


def load_judge(
    name: str,
    *,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> SpectrogramJudgeBundle:
    """Build a judge bundle (``audiorep.load("melception" | "vggishish", ...)``).

    Args:
        name: ``"melception"`` or ``"vggishish"``.
        weights: ``None`` = the cached authors' checkpoint (``audiorep weights download
            specvqgan-melception`` / ``specvqgan-vggishish16``); a path (the authors' ``.pt``,
            read through an allow-list, or a converted ``.safetensors``); a registry name; or
            ``"random"`` for the seeded random weights of the test fixtures.
        device: where the mel front end and the model run.
        seed: seed of ``"random"`` (default: the fixture recipe's seed, so the bundle holds the
            weights of tests/fixtures/specvqgan_melception and specvqgan_vggishish).
        batch_size: 10 s windows per model forward.

    The class count follows the weights (309 for VGGSound; a judge trained on another class set
    loads the same way). The state dict is checked strictly: a missing or unexpected key is an
    error that lists them.
    """
    key = name.strip().lower()
    if key not in JUDGES:
        raise ValueError(f"unknown judge {name!r}; available: {', '.join(JUDGES)}")
    random = weights is not None and os.fspath(weights) == RANDOM_WEIGHTS
    if random:
        module = melception if key == "melception" else vggishish
        seed = module.RECIPE_SEED if seed is None else int(seed)
        state = module.seeded_random_state_dict(seed)
        description = random_weights_description(seed)
    else:
        state, description = resolve_judge_weights(key, weights)
    from audiorep.convert.specvqgan import check_state_dict

    if key == "melception":
        num_classes = int(state["fc.weight"].shape[0])
        kwargs = {"num_classes": num_classes, "aux_logits": "AuxLogits.fc.weight" in state}
        cls = Melception
    else:
        num_classes = int(state["classifier.4.weight"].shape[0])
        kwargs = {"num_classes": num_classes}
        cls = VGGishish
    with torch.device("meta"):
        check_state_dict(state, cls(**kwargs), what=f"{key} ({description})")
    model = model_from_state(cls, state, **kwargs)
    return SpectrogramJudgeBundle(key, model, description, device, not random, batch_size)


def _loader(name: str):
    def load(*, weights=None, device="cpu", seed=None, batch_size=DEFAULT_BATCH_SIZE):
        return load_judge(name, weights=weights, device=device, seed=seed, batch_size=batch_size)

    load.__doc__ = f"``audiorep.load({name!r}, ...)``: see :func:`load_judge`."
    return load


register(
    BundleSpec(
        name="melception",
        loader=_loader("melception"),
        summary="SpecVQGAN's Melception judge (22.05 kHz mel): 2048-d per 10 s window",
        min_samples=1,  # any clip: short ones are looped to 10 s
        fusion_layers=JUDGES["melception"][2],
        options=("batch_size",),
        clip_feature_notes=("mean over 10 s windows", "tap means, mean over 10 s windows"),
    )
)
register(
    BundleSpec(
        name="vggishish",
        loader=_loader("vggishish"),
        summary="SpecVQGAN's VGGish-ish judge (22.05 kHz mel): 4096-d per 10 s window",
        min_samples=1,
        fusion_layers=JUDGES["vggishish"][2],
        options=("batch_size",),
        clip_feature_notes=("mean over 10 s windows", "tap means, mean over 10 s windows"),
    )
)

__all__ = [
    "JUDGES",
    "JudgeFrames",
    "SpectrogramJudgeBundle",
    "TapMeans",
    "judge_windows",
    "load_judge",
    "resolve_judge_weights",
]
