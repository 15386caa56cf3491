"""The VGGish bundle: resampler + log-mel frontend + VGGish + PCA postprocessor + weights.

``audiorep.load("vggish", ...)`` (:mod:`audiorep.pipelines.registry`) builds it with
:func:`load_vggish`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiorep.features.fusion import GeneralPurposeVGGish
from audiorep.features.postprocess import Postprocessor
from audiorep.frontends.vggish import (
    EXAMPLE_FRAMES,
    EXAMPLE_SAMPLES,
    HOP_LENGTH,
    NUM_BANDS,
    SAMPLE_RATE,
    VGGISH_WINDOWING,
    VGGishFrontend,
    Windowing,
    example_timestamps,
    waveform_to_examples,
)
from audiorep.models.vggish import VGGish, cpu_inference_module, seeded_random_state_dict
from audiorep.pipelines.base import (
    PRECISIONS,
    RANDOM_WEIGHTS,
    RESAMPLER,
    Bundle,
    Embeddings,
    Frames,
    WeightsUnavailableError,
    model_from_state,
    random_weights_description,
)
from audiorep.pipelines.registry import BundleSpec, register


class VGGishBundle(Bundle):
    """VGGish frontend + model (+ PCA postprocessor) with their weights.

    Attributes:
        sample_rate: 16000, the rate the model works at (inputs at other rates are resampled).
        embedding_size: 128.
        weights_description: where the weights came from (a path, a registry name, or
            ``"seeded random weights (seed=S)"``, which are meaningless as features).
    """

    name = "vggish"
    sample_rate = 16000
    embedding_size = 128
    streams_windows = True

    def __init__(
        self,
        model: VGGish,
        postprocessor: Postprocessor | None,
        weights_description: str,
        frontend_dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
        pretrained: bool = True,
        precision: str = "float32",
        windowing: Windowing = VGGISH_WINDOWING,
    ):
        self.model = model.eval()
        self.postprocessor = postprocessor
        self.windowing = windowing
        self.frontend = VGGishFrontend(frontend_dtype, windowing)
        super().__init__(weights_description, pretrained)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        #: CPU float32 inference without repacked fully connected weights (-290 MB, slower).
        self.low_memory = False
        self._fast_cpu_model: torch.jit.ScriptModule | None = None
        self._bf16_model: VGGish | None = None
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.model.conv1.weight.device

    def to(self, device: str | torch.device) -> VGGishBundle:
        self.model.to(device)
        self.frontend.to(device)
        if self.postprocessor is not None:
            self.postprocessor.to(device)
        self._fast_cpu_model = None
        self._bf16_model = None
        return self

    def examples(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """Log-mel examples ``(N, 96, 64)`` of one clip ``(samples,)``/``(channels, samples)``."""
        return waveform_to_examples(
            waveform,
            sample_rate,
            dtype=self.frontend.dtype,
            device=self.device,
            windowing=self.windowing,
        )

    @torch.inference_mode()
    def embed_examples(self, examples: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """``(N, 96, 64)`` examples -> float32 ``(N, 128)`` embeddings, in model batches."""
        x = examples.to(self.device, torch.float32)
        if x.shape[0] == 0:
            return x.new_zeros((0, self.embedding_size))
        model = self._inference_model()
        return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])

    @torch.inference_mode()
    def embed_examples_with_fusion(
        self, examples: torch.Tensor, fusion, batch_size: int = 64
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings ``(N, 128)`` and fusion frames ``(N, D, 6)`` from one pass per batch.

        ``fusion``: a :class:`~audiorep.features.fusion.GeneralPurposeVGGish` on this model.
        """
        x = examples.to(self.device, torch.float32)
        taps = list(dict.fromkeys([*fusion.taps, "embedding"]))
        embs, frames = [], []
        for i in range(0, len(x), batch_size):
            out = self.model.forward_taps(x[i : i + batch_size], taps)
            embs.append(out["embedding"])
            frames.append(fusion.frames_from_taps(out))
        if not embs:
            return x.new_zeros((0, self.embedding_size)), x.new_zeros((0, fusion.dim, 6))
        return torch.cat(embs), torch.cat(frames)

    def _inference_model(self):
        if self.precision in ("bfloat16", "float16"):
            low = torch.bfloat16 if self.precision == "bfloat16" else torch.float16
            if low == torch.float16 and self.device.type != "cuda":
                raise RuntimeError("precision float16 needs a CUDA device; use bfloat16 on CPU")
            if self._bf16_model is None:
                # Low-precision weights in channels-last layout: AMX/AVX512-BF16 kernels on
                # recent x86 CPUs, tensor cores on GPUs. Not reference-exact.
                m = VGGish(torchvggish_compat=self.model.torchvggish_compat)
                m.load_state_dict(self.model.state_dict())
                m = m.to(self.device, low).eval()
                self._bf16_model = m.to(memory_format=torch.channels_last)
            lowp = self._bf16_model
            return lambda x: lowp(
                (x.unsqueeze(1) if x.dim() == 3 else x)
                .to(low)
                .contiguous(memory_format=torch.channels_last)
            ).float()
        if self.device.type != "cpu" or os.environ.get("AUDIOREP_EAGER") == "1":
            return self.model
        if self._fast_cpu_model is None:
            try:
                self._fast_cpu_model = cpu_inference_module(
                    self.model, self.low_memory, weights_key=self.weights_fingerprint()
                )
            except Exception:  # no TorchScript/oneDNN in this torch build: eager is still exact
                self._fast_cpu_model = self.model  # type: ignore[assignment]
        fast = self._fast_cpu_model
        return lambda x: fast(x.unsqueeze(1) if x.dim() == 3 else x)

    def embed(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> torch.Tensor:
        """One clip -> float32 ``(N, 128)`` pre-activation embeddings (no gradients).

        ``waveform``: ``(samples,)`` or ``(channels, samples)``, float in [-1, 1]. For a
        differentiable path use ``bundle.frontend`` and ``bundle.model`` directly.
        """
        return self.embed_examples(self.examples(waveform, sample_rate))

    @torch.inference_mode()
    def quantize(self, embeddings: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, 128)`` PCA-quantised embeddings (needs PCA parameters)."""
        if self.postprocessor is None:
            raise RuntimeError(
                "no PCA parameters loaded: pass pca=PATH to audiorep.load (vggish_pca_params.npz "
                "or a converted .safetensors)"
            )
        return self.postprocessor(embeddings.to(self.device))

    def clip_embeddings(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> Embeddings:
        """Embeddings, example start times and (with PCA) the quantised bytes of one clip."""
        emb = self.embed(waveform, sample_rate)
        quantized = self.quantize(emb).cpu().numpy() if self.postprocessor is not None else None
        return Embeddings(
            embeddings=emb.cpu().numpy().astype(np.float32),
            timestamps=self.unit_starts(emb.shape[0]),
            quantized=quantized,
        )

    def unit_starts(self, num_units: int) -> np.ndarray:
        """Start of each example in seconds, float64 ``(num_units,)`` (``k * hop``)."""
        return example_timestamps(num_units, self.windowing.hop_seconds)

    def unit_seconds(self, clip_seconds: float) -> float:
        """0.96 s: one 96-frame example."""
        return EXAMPLE_FRAMES * HOP_LENGTH / SAMPLE_RATE

    def windowing_settings(self) -> dict[str, object]:
        return self.windowing.as_dict()

    def describe_units(self) -> str:
        return f"0.96 s each, hop {self.windowing.hop_seconds:g} s"

    def fusion_module(self, layers: Sequence[int | str] | None = None) -> GeneralPurposeVGGish:
        """GP-VGGish on this model (default layers ``[9, 14]``, VGGish-Fusion#10#15)."""
        return GeneralPurposeVGGish(self.model, layers or DEFAULT_FUSION_LAYERS)

    @torch.inference_mode()
    def fusion(
        self,
        waveform: np.ndarray | torch.Tensor,
        sample_rate: int,
        layers: Sequence[int | str] | None = None,
    ) -> torch.Tensor:
        """One clip -> GP-VGGish clip feature ``(D,)`` (8192 for ``[9, 14]``): the fusion
        frames of every example, max + mean over all of them (EVAR's ``AR_VGGish_Fusion``)."""
        examples = self.examples(waveform, sample_rate)
        module = self.fusion_module(layers)
        return module.forward_clip(examples[None].to(self.device, torch.float32))[0].float()

    def frames(
        self, *, hop_seconds: float | None = None, batch_size: int | None = None
    ) -> VGGishFrames:
        """HEAR-style frames: 0.96 s examples centred every ``hop_seconds`` (default 0.05 s,
        :class:`VGGishFrames`)."""
        hop = DEFAULT_FRAME_HOP_SECONDS if hop_seconds is None else hop_seconds
        return VGGishFrames(
            self,
            Windowing.from_hop_seconds(hop),
            DEFAULT_FRAME_BATCH_SIZE if batch_size is None else batch_size,
        )

    def settings(self) -> dict[str, object]:
        """Everything that determines the embeddings (JSON-serialisable), for reports and caches."""
        return {
            "model": "vggish",
            "weights": self.weights_description,
            "weights_sha256": self.weights_fingerprint(),
            "pretrained": self.pretrained,
            "final_relu": bool(self.model.torchvggish_compat),
            "frontend_dtype": str(self.frontend.dtype).replace("torch.", ""),
            "precision": self.precision,
            "windowing": self.windowing_settings(),
            "resampler": RESAMPLER,
        }

    def __repr__(self) -> str:
        pca = "with PCA" if self.postprocessor is not None else "no PCA"
        return (
            f"VGGishBundle(weights={self.weights_description!r}, {pca}, "
            f"frontend_dtype={self.frontend.dtype}, device={self.device})"
        )


#: Default hop between frame (HEAR timestamp) centres, in seconds (HEAR suggests <= 50 ms).
DEFAULT_FRAME_HOP_SECONDS = 0.05
#: Examples per model forward when computing frames.
DEFAULT_FRAME_BATCH_SIZE = 256
#: The paper's fusion layers (VGGish-Fusion#10#15: the conv4_2 block and fc1_2).
DEFAULT_FUSION_LAYERS = (9, 14)
_HALF_WINDOW = EXAMPLE_SAMPLES // 2  # 7800 samples = 487.5 ms, centre of an example


@dataclass(frozen=True)
class WindowLayout:
    """Where the centred windows of a sound lie, for a hop of ``hop_samples`` at 16 kHz.

    The sound is padded with ``lead_windows * hop_samples`` zeros in front (as many whole hops
    as fit in half a window), so the first window is centred as close after t = 0 as the frame
    grid allows, at ``c0 = first_centre_samples``; window ``k`` is centred at ``c0 + k * hop``.
    docs/hear.md has the full rule.

    Attributes:
        hop_samples: samples between window starts (a multiple of the 160-sample frame hop).
    """

    hop_samples: int

    def __post_init__(self) -> None:
        if self.hop_samples < HOP_LENGTH or self.hop_samples % HOP_LENGTH:
            raise ValueError(
                f"hop_samples must be a positive multiple of {HOP_LENGTH}, got {self.hop_samples}"
            )

    @property
    def lead_windows(self) -> int:
        """Windows before the first one starting at sample 0: the front padding is
        ``lead_windows * hop_samples`` zeros, as many whole hops as fit in half a window."""
        return _HALF_WINDOW // self.hop_samples

    @property
    def first_centre_samples(self) -> int:
        """Centre of the first window, in samples from the sound's start (``c0``)."""
        return _HALF_WINDOW - self.lead_windows * self.hop_samples

    def num_timestamps(self, num_samples: int) -> int:
        """Windows for ``num_samples`` samples: one per centre ``c0 + k * hop`` inside the
        sound, and at least one: ``max(1, ceil((num_samples - c0) / hop))``."""
        rest = int(num_samples) - self.first_centre_samples
        return max(1, -(-rest // self.hop_samples))

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        """float32 ``(n_timestamps,)`` window centres in milliseconds (CPU)."""
        k = torch.arange(self.num_timestamps(num_samples), dtype=torch.float64)
        centres = (self.first_centre_samples + k * self.hop_samples) * (1000.0 / SAMPLE_RATE)
        return centres.to(torch.float32)


class VGGishFrames(Frames):
    """VGGish examples centred every hop (:class:`WindowLayout`): one 128-d embedding per
    window; the scene embedding is their mean (the HEAR baseline convention).

    Every window lying entirely inside the sound is exactly an example of the bundle loaded with
    ``windowing=Windowing.from_hop_seconds(hop)``; windows reaching into the padding see zeros.

    Args:
        bundle: the VGGish bundle (its model, frontend dtype and precision are used).
        windowing: the hop (``window_samples`` must be ``None``, no peak normalisation: those
            are FAD conventions).
        batch_size: examples per model forward.
    """

    def __init__(self, bundle: VGGishBundle, windowing: Windowing, batch_size: int) -> None:
        super().__init__(bundle, batch_size)
        if windowing.window_samples is not None or windowing.peak_normalize:
            raise ValueError(
                f"frames are 96-frame examples without peak normalisation; got {windowing!r}"
            )
        self.model = bundle.model  # registered: ``.to(device)`` moves it
        self.frontend = VGGishFrontend(bundle.frontend.dtype, windowing).to(bundle.device)
        self.layout = WindowLayout(windowing.hop_frames * HOP_LENGTH)

    @property
    def hop_samples(self) -> int:
        return self.layout.hop_samples

    @property
    def lead_windows(self) -> int:
        return self.layout.lead_windows

    @property
    def first_centre_samples(self) -> int:
        return self.layout.first_centre_samples

    @property
    def hop_seconds(self) -> float:
        return self.hop_samples / SAMPLE_RATE

    def _apply(self, fn, *args, **kwargs):  # type: ignore[override]
        out = super()._apply(fn, *args, **kwargs)
        # Let the bundle move what it owns outside the registered modules (PCA) and drop its
        # device-specific caches (TorchScript / bfloat16 copies of the model).
        self.bundle.to(self.bundle.device)
        return out

    def num_timestamps(self, num_samples: int) -> int:
        return self.layout.num_timestamps(num_samples)

    def timestamps_ms(self, num_samples: int) -> torch.Tensor:
        return self.layout.timestamps_ms(num_samples).to(self.device)

    def window_examples(self, audio: torch.Tensor) -> torch.Tensor:
        """The log-mel example of every window: ``(n_sounds, n_timestamps, 96, 64)``.

        ``audio``: ``(n_sounds, n_samples)`` at 16 kHz. One frontend pass for the whole batch
        (in the frontend's dtype, on the model's device); the result is a strided view of
        the log-mel frames, so it costs ~frames, not ~examples, of memory (~19x less at 50 ms).
        """
        n = audio.shape[1]
        h, lead = self.hop_samples, self.lead_windows
        # Samples the last window reaches, counted from the start of the front padding.
        needed = (self.num_timestamps(n) - 1) * h + EXAMPLE_SAMPLES
        x = audio.to(device=self.device, dtype=self.frontend.dtype)
        if x.shape[0] == 0:  # an empty batch (FFT backends reject zero-size inputs)
            return x.new_zeros((0, self.num_timestamps(n), EXAMPLE_FRAMES, NUM_BANDS))
        x = nn.functional.pad(x, (lead * h, max(0, needed - lead * h - n)))[:, :needed]
        return self.frontend.frame_examples(self.frontend.log_mel(x))

    def embeddings(self, audio: torch.Tensor) -> torch.Tensor:
        n_sounds, n = audio.shape
        count = self.num_timestamps(n)
        examples = self.window_examples(audio)
        total = n_sounds * count
        out = torch.empty((total, self.embedding_size), device=self.device)
        for start in range(0, total, self.batch_size):
            idx = torch.arange(start, min(start + self.batch_size, total), device=self.device)
            chunk = examples[idx // count, idx % count]  # gathers this batch only
            out[start : start + len(idx)] = self.bundle.embed_examples(chunk, len(idx))
        return out.reshape(n_sounds, count, self.embedding_size)

    def scene(self, audio: torch.Tensor) -> torch.Tensor:
        return self.embeddings(audio).mean(dim=1)

    def extra_repr(self) -> str:
        return f"hop_seconds={self.hop_seconds}, batch_size={self.batch_size}"


def _random_pca(seed: int) -> Postprocessor:
    gen = torch.Generator().manual_seed(int(seed) + 1)
    q, _ = torch.linalg.qr(torch.randn(128, 128, generator=gen, dtype=torch.float64))
    # Scale so that random-weight embeddings land mostly inside the quantiser's [-2, 2] range.
    return Postprocessor((q / 8.0).float().numpy(), np.zeros(128, dtype=np.float32))


def load_vggish(
    *,
    weights: str | os.PathLike | None = None,
    pca: str | os.PathLike | bool | None = None,
    device: str | torch.device = "cpu",
    frontend_dtype: torch.dtype = torch.float64,
    torchvggish_compat: bool = False,
    seed: int = 0,
    precision: str = "float32",
    windowing: Windowing = VGGISH_WINDOWING,
) -> VGGishBundle:
    """Build a VGGish bundle (``audiorep.load("vggish", ...)``).

    Args:
        weights: ``None`` = the cached pretrained weights (see ``audiorep weights download``;
            never downloads by itself); a file path (``.safetensors`` from ``audiorep
            convert``, Google's ``vggish_model.ckpt``, a TF-named ``.npz`` or torchvggish's
            ``.pth``); a registry name (downloaded into the cache unless
            ``AUDIOREP_OFFLINE=1``); or ``"random"`` for seeded random weights (labelled as such).
        pca: ``None`` = PCA parameters found alongside the weights, if any; a path; ``False``
            to skip postprocessing.
        device: where the frontend and model run.
        frontend_dtype: ``torch.float64`` (reference-exact) or ``torch.float32`` (faster).
        torchvggish_compat: final ReLU and rounding quantiser, to reproduce torchvggish numbers.
        seed: seed for ``weights="random"``.
        precision: ``"float32"`` (default, matches the reference to ~1e-5) or ``"bfloat16"``
            (inference only; several times faster on CPUs with AMX/AVX512-BF16 and on GPUs;
            embeddings within cosine 0.9999 of float32, not reference-exact).
        windowing: example hop / window rule / loudness normalisation
            (:class:`~audiorep.frontends.vggish.Windowing`; default: the reference's 0.96 s).

    Raises:
        WeightsUnavailableError: no weights were found; the message lists the options.
    """
    pca_params = None
    if weights is not None and str(weights) == RANDOM_WEIGHTS:
        state = seeded_random_state_dict(seed)
        description = random_weights_description(seed)
        pretrained = False
    else:
        from audiorep.weights import resolve_vggish_weights

        state, pca_params, description = resolve_vggish_weights(weights)
        if state is None:
            raise WeightsUnavailableError(
                f"{description} Or use weights='random' (--weights random) for seeded random "
                "weights."
            )
        pretrained = True
    model = model_from_state(VGGish, state, torchvggish_compat=torchvggish_compat)

    rounding = "round" if torchvggish_compat else "truncate"
    postprocessor = None
    if pca is False:
        pass
    elif pca is not None and pca is not True:
        from audiorep.convert.vggish import load_any

        _, pca_from_file = load_any(Path(pca))
        if pca_from_file is None:
            raise ValueError(f"{pca}: no PCA parameters (pca_eigen_vectors, pca_means) found")
        postprocessor = Postprocessor(
            pca_from_file["pca_eigen_vectors"], pca_from_file["pca_means"], rounding
        )
    elif pca_params is not None:
        postprocessor = Postprocessor(
            pca_params["pca_eigen_vectors"], pca_params["pca_means"], rounding
        )
    elif not pretrained:
        postprocessor = _random_pca(seed)
    elif pca is True:
        raise WeightsUnavailableError("pca=True but no PCA parameters were found with the weights")
    return VGGishBundle(
        model, postprocessor, description, frontend_dtype, device, pretrained, precision,
        windowing,
    )  # fmt: skip


register(
    BundleSpec(
        name="vggish",
        loader=load_vggish,
        summary="VGGish (Google, AudioSet): 128-d per 0.96 s example, TF-reference exact",
        min_samples=15600,  # one 0.96 s example: 96 frames of 10 ms + the 25 ms window tail
        fusion_layers=DEFAULT_FUSION_LAYERS,
        options=("pca", "frontend_dtype", "torchvggish_compat", "precision", "windowing"),
        clip_feature="mean_max",
        clip_feature_notes=("max+mean over examples", "max+mean over 6n fusion frames"),
    )
)

__all__ = ["Embeddings", "VGGishBundle", "VGGishFrames", "WindowLayout", "load_vggish"]
