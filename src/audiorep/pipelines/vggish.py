"""The VGGish bundle: resampler + log-mel frontend + VGGish + PCA postprocessor + weights.

``audiorep.load("vggish", ...)`` (:mod:`audiorep.pipelines.registry`) builds it with
:func:`load_vggish`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from audiorep.features.postprocess import Postprocessor
from audiorep.frontends.vggish import (
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
    WeightsUnavailableError,
    model_from_state,
    random_weights_description,
)
from audiorep.pipelines.registry import BundleSpec, register


@dataclass
class Embeddings:
    """The result of embedding one clip.

    Attributes:
        embeddings: float32 ``(N, 128)``.
        timestamps: float64 ``(N,)`` start time of each example in seconds (``k * hop``).
        quantized: uint8 ``(N, 128)`` PCA-quantised (AudioSet release form), if PCA loaded.
    """

    embeddings: np.ndarray
    timestamps: np.ndarray
    quantized: np.ndarray | None = None


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

    def embed_clip(self, waveform: np.ndarray | torch.Tensor, sample_rate: int) -> Embeddings:
        """Embeddings, example start times and (with PCA) the quantised bytes of one clip."""
        emb = self.embed(waveform, sample_rate)
        quantized = self.quantize(emb).cpu().numpy() if self.postprocessor is not None else None
        return Embeddings(
            embeddings=emb.cpu().numpy().astype(np.float32),
            timestamps=example_timestamps(emb.shape[0], self.windowing.hop_seconds),
            quantized=quantized,
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
            "windowing": self.windowing.as_dict(),
            "resampler": RESAMPLER,
        }

    def __repr__(self) -> str:
        pca = "with PCA" if self.postprocessor is not None else "no PCA"
        return (
            f"VGGishBundle(weights={self.weights_description!r}, {pca}, "
            f"frontend_dtype={self.frontend.dtype}, device={self.device})"
        )


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
        fusion_layers=(9, 14),  # VGGish-Fusion#10#15 (conv4_2 block and fc1_2)
        options=("pca", "frontend_dtype", "torchvggish_compat", "precision", "windowing"),
    )
)

__all__ = ["Embeddings", "VGGishBundle", "load_vggish"]
