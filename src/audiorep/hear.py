"""Every registered bundle as a HEAR module (the hear-eval-kit / HEAR 2021 common API).

hear-eval-kit imports a module and calls three functions on it::

    python -m heareval.embeddings.runner audiorep.hear --model path/to/weights.safetensors
    python -m heareval.embeddings.runner audiorep.hear --model-options '{"model": "cnn14"}'

One wrapper, :class:`HearModel`, serves every model: it loads the bundle through the registry
(``audiorep.load(model, ...)``) and asks it for its :class:`~audiorep.pipelines.base.Frames`
(``bundle.frames(hop_seconds=..., batch_size=...)``), which know the model's timestamps, frame
embeddings and scene embedding. ``model="cnn14"`` / ``"ast"`` use the networks' own time axis
(:class:`~audiorep.pipelines.backbones.Cnn14Frames`,
:class:`~audiorep.pipelines.backbones.ASTFrames`, docs/hear.md). The rest of this docstring
describes VGGish (the default ``model="vggish"``,
:class:`~audiorep.pipelines.vggish.VGGishFrames`):

- :func:`load_model` returns a :class:`HearModel` (a ``torch.nn.Module``) with
  ``sample_rate = 16000`` and ``scene_embedding_size = timestamp_embedding_size = 128``;
- :func:`get_timestamp_embeddings` returns ``(n_sounds, n_timestamps, 128)`` float32
  embeddings and ``(n_sounds, n_timestamps)`` float32 timestamps in milliseconds, each the
  centre of its 0.975 s VGGish window;
- :func:`get_scene_embeddings` returns ``(n_sounds, 128)``: the mean of the timestamp
  embeddings.

Window layout (``h`` = the hop in samples, a multiple of the 160-sample frame hop; ``W`` =
15 600 samples, one 96-frame example; ``n`` = the sound's length in samples at 16 kHz):

- The sound is padded with ``lead * h`` zeros in front, ``lead = (W // 2) // h`` (as many whole
  hops as fit in half a window), so that the first window is centred as close after t = 0 as
  the frame grid allows: at ``c0 = W // 2 - lead * h`` samples, ``0 <= c0 < h`` when
  ``h <= W / 2``. Window ``k`` starts at ``k * h - lead * h`` and is centred at
  ``c0 + k * h``.
- There is one window for each centre inside the sound (``c0 + k * h < n``), and at least
  one: ``n_timestamps = max(1, ceil((n - c0) / h))``. The sound is zero-padded at the end as
  far as the last window needs. Whenever ``h <= W / 2`` the windows cover every sample.
- Because the front padding is a whole number of hops (and so of 10 ms frames), every window
  lying entirely inside the sound is exactly an example of ``audiorep.load("vggish",
  windowing=Windowing.from_hop_seconds(hop))``: timestamp ``k`` is that bundle's example
  ``k - lead``. The windows that reach into the padding see zeros (log-mel ``ln(0.01)``), as
  in hearbaseline's centre-padded framing.
- With ``hop_seconds=0.96`` there is no front padding: windows are the reference's examples,
  timestamps ``487.5 + 960 k`` ms (hearbaseline's VGGish wrapper writes ``480 + 960 k``).

The default hop is 50 ms, the largest the HEAR rules suggest for timestamp tasks (onset
tolerances there are 50-200 ms; a 0.96 s hop cannot place events). It costs about 20 VGGish
examples per second of audio, ~19x the reference's 0.96 s hop: fine on a GPU, ~0.5 CPU-s per
second of audio on a CPU. ``--model-options '{"hop_seconds": 0.96}'`` gives the reference's
windows (and cheaper scene embeddings).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from audiorep.audio import check_waveform
from audiorep.pipelines import BUNDLES, RANDOM_WEIGHTS, Bundle, load
from audiorep.pipelines.base import Frames
from audiorep.pipelines.vggish import DEFAULT_FRAME_HOP_SECONDS as DEFAULT_HOP_SECONDS
from audiorep.pipelines.vggish import WindowLayout

#: Models hear-eval-kit can load here: every registered bundle.
HEAR_MODELS = tuple(BUNDLES)
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _as_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).replace("torch.", "")
    if name not in _DTYPES:
        raise ValueError(f"frontend_dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[name]


class HearModel(nn.Module):
    """Any bundle packaged for HEAR: its :class:`~audiorep.pipelines.base.Frames` behind the
    HEAR calls, with input checks, ``inference_mode`` and plain (non-inference) outputs.

    Args:
        bundle: any registered bundle (``audiorep.load(name, ...)``).
        hop_seconds: frame hop where the model lets one choose it (VGGish; default 0.05 s);
            ``None`` for the others, whose hop is the network's.
        batch_size: per model forward (``None``: the bundle's default for frames).

    Attributes:
        sample_rate: the bundle's rate (16000 Hz for every current model); HEAR feeds audio
            at this rate (no resampling here).
        scene_embedding_size, timestamp_embedding_size, embedding_size: the bundle's D.
        frames: the bundle's :class:`~audiorep.pipelines.base.Frames` (model-specific
            attributes such as ``layout``, ``hop_ms`` or ``windows`` live there).
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        hop_seconds: float | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        self.bundle = bundle
        self.frames: Frames = bundle.frames(hop_seconds=hop_seconds, batch_size=batch_size)
        self.sample_rate = int(bundle.sample_rate)
        size = int(self.frames.embedding_size)
        self.scene_embedding_size = self.timestamp_embedding_size = self.embedding_size = size

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    @property
    def model(self) -> nn.Module:
        """The bundle's network (registered under ``frames``, so ``.to()`` moves it)."""
        return self.bundle.model

    @property
    def batch_size(self) -> int:
        return self.frames.batch_size

    def num_timestamps(self, num_samples: int) -> int:
        """Timestamps for a sound of ``num_samples`` samples (>= 1)."""
        return self.frames.num_timestamps(num_samples)

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        """float32 ``(n_timestamps,)`` frame centres in ms, on the model's device."""
        return self.frames.timestamps_ms(num_samples)

    def timestamp_embeddings(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """See :func:`get_timestamp_embeddings`."""
        audio = _check_audio(audio)
        n_sounds, n = audio.shape
        count = self.num_timestamps(n)
        with torch.inference_mode():
            if n_sounds == 0:
                emb = torch.zeros((0, count, self.embedding_size), device=self.device)
            else:
                emb = self.frames.embeddings(audio.to(device=self.device, dtype=torch.float32))
            if emb.shape != (n_sounds, count, self.embedding_size):
                raise RuntimeError(
                    f"{type(self.frames).__name__} returned {tuple(emb.shape)}, expected "
                    f"{(n_sounds, count, self.embedding_size)}"
                )
            ts = self.timestamps_ms(n).expand(n_sounds, count)
        # Plain tensors (not inference tensors), usable anywhere afterwards.
        return emb.float().clone(), ts.clone()

    def scene_embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        """See :func:`get_scene_embeddings`."""
        audio = _check_audio(audio)
        with torch.inference_mode():
            if audio.shape[0] == 0:
                return torch.zeros((0, self.embedding_size), device=self.device)
            scene = self.frames.scene(audio.to(device=self.device, dtype=torch.float32))
        return scene.float().clone()

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`timestamp_embeddings`."""
        return self.timestamp_embeddings(audio)

    def extra_repr(self) -> str:
        return f"model={self.bundle.name!r}, weights={self.bundle.weights_description!r}"


def HearVGGish(bundle: Bundle, batch_size: int | None = None) -> HearModel:  # noqa: N802
    """Deprecated alias (one release): ``HearModel(bundle, hop_seconds=<the bundle's
    windowing hop>)``."""
    return HearModel(bundle, hop_seconds=bundle.windowing.hop_seconds, batch_size=batch_size)


def HearCnn14(bundle: Bundle, batch_size: int | None = None) -> HearModel:  # noqa: N802
    """Deprecated alias (one release): ``HearModel(bundle)``."""
    return HearModel(bundle, batch_size=batch_size)


HearAST = HearCnn14


def _check_audio(audio: torch.Tensor) -> torch.Tensor:
    audio = torch.as_tensor(audio)
    if audio.dim() != 2:
        raise ValueError(
            f"HEAR audio must be (n_sounds, n_samples) at 16 kHz, got shape {tuple(audio.shape)}"
        )
    if not torch.is_floating_point(audio):
        raise TypeError(f"HEAR audio must be float in [-1, 1], got dtype {audio.dtype}")
    return check_waveform(audio, what="HEAR audio")


def load_model(
    model_file_path: str = "",
    *,
    model: str = "vggish",
    hop_seconds: float | None = None,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    **options: Any,
) -> HearModel:
    """HEAR ``load_model``: any registered model with its weights, a ``torch.nn.Module``.

    Every keyword can come from hear-eval-kit's ``--model-options`` JSON.

    Args:
        model_file_path: ``""`` = the cached pretrained weights (``audiorep weights
            download``; raises :class:`~audiorep.pipelines.WeightsUnavailableError` with
            instructions when there are none); a weights file or a registry name, as for
            ``audiorep.load``; ``"random"`` = seeded random weights, **for testing only**.
        model: a registered bundle name (:data:`HEAR_MODELS`: ``"vggish"``, ``"cnn14"``,
            ``"ast"``).
        hop_seconds: seconds between timestamps where the model lets one choose (VGGish: a
            multiple of 0.01, default 0.05; 0.96 gives the reference's examples). CNN14 and
            AST have the network's hop (0.32 s, 0.1 s) and refuse this option.
        device: where to run; ``None`` = CUDA when available, else CPU (hear-eval-kit moves
            the module with ``.to()`` anyway).
        batch_size: per model forward: VGGish examples (default 256), CNN14 sounds or AST
            10.24 s windows (default 8).
        seed: seed of ``"random"`` weights.
        **options: the model's own ``audiorep.load`` options (VGGish: ``precision``,
            ``frontend_dtype`` (also as a string), ``torchvggish_compat``; ``pca`` defaults
            to False: HEAR uses the float embeddings). An option the model does not take is a
            ``TypeError`` naming the models it applies to.

    Returns:
        A :class:`HearModel` in eval mode.
    """
    key = str(model).lower().strip()
    if key not in HEAR_MODELS:
        raise ValueError(f"unknown HEAR model {model!r}; available: {', '.join(HEAR_MODELS)}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    path = os.fspath(model_file_path) if model_file_path else ""
    weights = None if path == "" else (RANDOM_WEIGHTS if path == RANDOM_WEIGHTS else path)
    if "windowing" in options:
        raise TypeError("load_model sets the frame hop from hop_seconds; do not pass windowing")
    own = set(BUNDLES[key].options)
    if "pca" in own:
        options.setdefault("pca", False)  # HEAR uses the float embeddings, never PCA bytes
    if "frontend_dtype" in options:
        options["frontend_dtype"] = _as_dtype(options["frontend_dtype"])
    unknown = sorted(set(options) - own)
    if unknown:
        owners = [n for n, s in BUNDLES.items() if set(unknown) <= set(s.options)]
        where = f"only apply to model={' / '.join(map(repr, owners))}" if owners else "unknown"
        raise TypeError(f"option(s) {', '.join(unknown)} {where}")
    bundle = load(key, weights=weights, device=device, seed=seed, **options)
    return HearModel(bundle, hop_seconds=hop_seconds, batch_size=batch_size).eval()


def get_timestamp_embeddings(
    audio: torch.Tensor, model: HearModel
) -> tuple[torch.Tensor, torch.Tensor]:
    """HEAR ``get_timestamp_embeddings``: one embedding per frame of each sound.

    Args:
        audio: ``(n_sounds, n_samples)`` mono float in [-1, 1] at 16 kHz (any device; all
            sounds the same length, as HEAR pads them).
        model: from :func:`load_model`.

    Returns:
        ``embeddings``: float32 ``(n_sounds, n_timestamps, D)``; ``timestamps``: float32
        ``(n_sounds, n_timestamps)``, the centre of each frame in **milliseconds**, the same
        for every sound. Both on the model's device. VGGish: ``D = 128`` pre-activation
        embeddings of 0.96 s windows centred at ``c0 + k * hop`` (37.5 + 50 k ms at the
        default hop; see the module docstring); CNN14: ``(n_sounds, T // 32, 2048)``
        conv_block6 frames at ``155 + 320 k`` ms; AST: ``(n_sounds, max(1, ceil((n - 1400) /
        1600)), 768)`` time-patch embeddings at ``87.5 + 100 k`` ms.
    """
    return model.timestamp_embeddings(audio)


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """HEAR ``get_scene_embeddings``: one embedding per sound.

    Args:
        audio: ``(n_sounds, n_samples)`` mono float in [-1, 1] at 16 kHz.
        model: from :func:`load_model`.

    Returns:
        float32 ``(n_sounds, D)``. VGGish: the mean over timestamps of
        :func:`get_timestamp_embeddings` (the HEAR baseline convention), padded windows
        included; CNN14 / AST: the bundle's ``embed_clip`` of each sound.
    """
    return model.scene_embeddings(audio)


__all__ = [
    "load_model",
    "get_timestamp_embeddings",
    "get_scene_embeddings",
    "HearModel",
    "HearVGGish",
    "HearCnn14",
    "HearAST",
    "HEAR_MODELS",
    "WindowLayout",
    "DEFAULT_HOP_SECONDS",
]
