"""Deep feature losses: compare a frozen backbone's taps for an estimate and a target.

:class:`DeepFeatureLoss` works with any :class:`~audiorep.models.taps.TappedModel` and a
differentiable frontend. :class:`VGGishDFL` is the VGGish instance with the interface of the
``vggishdfl`` package (femtosense/torchvggish): ``loss = dfl(estimate, target)`` on 16 kHz
waveforms ``(batch, samples)``, per-layer normalised MSE ``sum((t - e)^2) / sum(t^2)`` averaged
over layers (``hook_relus=True``) or on the output layer only.

Two flavours:

* default (``VGGishDFL(model)``): audiorep's exact VGGish frontend (waveforms zero-padded to
  whole 0.96 s examples so no sample is dropped), the pre-activation embedding as the last term,
  no non-differentiable term, target branch computed without gradient unless
  ``detach_target=False``.
* :meth:`VGGishDFL.vggishdfl_compatible`: reproduces the original package: centred
  reflect-padded STFT, log-mel zero-padded to whole segments, final ReLU on the embedding, the
  rounding PCA quantiser as a 10th term when a postprocessor is given (it adds to the value but
  has no gradient), target not detached.

Reductions (both flavours, as the original): ``reduce=True`` forms one ratio per layer over the
whole batch (all items and segments); ``reduce=False`` returns ``(batch,)``. The default flavour
uses each item's own ratio there; the compatible flavour averages per-segment ratios, exactly as
the original does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from audiorep.frontends.vggish import (
    EXAMPLE_FRAMES,
    FFT_LENGTH,
    HOP_LENGTH,
    LOG_OFFSET,
    MIN_SAMPLES_16K,
    WINDOW_LENGTH,
    VGGishFrontend,
    mel_matrix,
)
from audiorep.models.taps import TappedModel
from audiorep.models.vggish import VGGish

_EPS = 1e-9  # keeps silent targets finite, as the original
_EXAMPLE_SAMPLES = EXAMPLE_FRAMES * HOP_LENGTH  # 15360

#: The ReLU taps of VGGish in depth order (the original hooks every nn.ReLU).
VGGISH_RELU_TAPS = ("conv1", "conv2", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "fc1_1", "fc1_2")


def _normalised_sq_error(
    est: torch.Tensor, tgt: torch.Tensor, groups: torch.Tensor | None
) -> torch.Tensor:
    """``sum((t - e)^2) / (sum(t^2) + eps)`` over everything (groups None) or per group.

    ``groups``: ``(rows,)`` group id of each leading-axis row (item index); returns ``(G,)``.
    """
    err = (tgt - est).pow(2).flatten(1).sum(1)
    energy = tgt.pow(2).flatten(1).sum(1)
    if groups is None:
        return err.sum() / (energy.sum() + _EPS)
    n = int(groups.max()) + 1 if groups.numel() else 0
    g_err = err.new_zeros(n).index_add_(0, groups, err)
    g_energy = energy.new_zeros(n).index_add_(0, groups, energy)
    return g_err / (g_energy + _EPS)


class DeepFeatureLoss(nn.Module):
    """Per-tap normalised MSE between a frozen backbone's activations of estimate and target.

    Args:
        backbone: a tapped model; its parameters are frozen (``requires_grad=False``).
        taps: tap names to compare (e.g. VGGish ReLU outputs).
        frontend: ``waveform (B, S) -> (model_input (R, ...), item_of_row (R,))``: turns a batch
            of waveforms into model inputs and says which item each row belongs to.
        layer_weights: one weight per tap (normalised to sum 1); default equal weights.
        detach_target: compute the target branch under ``no_grad`` (cheaper; gradients reach
            only the estimate).
        extra_terms: optional modules ``taps -> tensor`` whose outputs are compared like taps
            (e.g. a quantised embedding), appended after ``taps``.
        per_item_ratio: with ``reduce=False``, one ratio per item over its segments (default)
            or, as vggishdfl, the mean of per-segment ratios.
        extra_terms_need: taps the extra terms read (computed even if not compared).
    """

    def __init__(
        self,
        backbone: TappedModel,
        taps: Sequence[str],
        frontend: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        layer_weights: Sequence[float] | None = None,
        detach_target: bool = True,
        extra_terms: Sequence[nn.Module] = (),
        per_item_ratio: bool = True,
        extra_terms_need: Sequence[str] = (),
    ):
        super().__init__()
        self.backbone = backbone
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        unknown = [t for t in taps if t not in backbone.tap_names]
        if unknown:
            raise KeyError(f"unknown taps {unknown}; available: {', '.join(backbone.tap_names)}")
        self.taps = list(taps)
        self._run_taps = list(dict.fromkeys([*self.taps, *extra_terms_need]))
        self.frontend = frontend
        self.extra_terms = nn.ModuleList(extra_terms)  # registered: .to(device) moves them
        n_terms = len(self.taps) + len(self.extra_terms)
        if layer_weights is None:
            weights = torch.full((n_terms,), 1.0 / n_terms, dtype=torch.float64)
        else:
            if len(layer_weights) != n_terms:
                raise ValueError(f"{len(layer_weights)} layer weights for {n_terms} terms")
            weights = torch.as_tensor(layer_weights, dtype=torch.float64)
            weights = weights / weights.sum()
        self.register_buffer("layer_weights", weights, persistent=False)
        self.detach_target = detach_target
        self.per_item_ratio = per_item_ratio

    def features(self, waveform: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Terms compared by the loss for one batch, and the item index of each row."""
        inputs, items = self.frontend(waveform)
        taps = self.backbone.forward_taps(inputs, self._run_taps)
        terms = [taps[t] for t in self.taps] + [f(taps) for f in self.extra_terms]
        return terms, items

    def layer_errors(
        self, estimate: torch.Tensor, target: torch.Tensor, reduce: bool = True
    ) -> torch.Tensor:
        """Normalised MSE per term: ``(L,)`` with ``reduce``, else ``(L, batch)``."""
        _check_pair(estimate, target)
        if self.detach_target:
            with torch.no_grad():
                tgt_terms, items = self.features(target)
        else:
            tgt_terms, items = self.features(target)
        est_terms, _ = self.features(estimate)
        groups = None if reduce else items.to(est_terms[0].device)
        if not reduce and not self.per_item_ratio:
            groups = torch.arange(est_terms[0].shape[0], device=est_terms[0].device)
        errs = [_normalised_sq_error(e, t, groups) for e, t in zip(est_terms, tgt_terms)]
        out = torch.stack(errs)
        if not reduce and not self.per_item_ratio:
            # the original: mean over each item's segments of per-segment ratios
            b = estimate.shape[0]
            out = out.reshape(out.shape[0], b, -1).mean(-1)
        return out

    def forward(
        self, estimate: torch.Tensor, target: torch.Tensor, reduce: bool = True
    ) -> torch.Tensor:
        """Loss of ``estimate`` against ``target``, both ``(batch, samples)``.

        Returns a scalar with ``reduce=True``, else ``(batch,)``.
        """
        errs = self.layer_errors(estimate, target, reduce=reduce)
        w = self.layer_weights.to(errs.device, errs.dtype)
        return (w[:, None] * errs).sum(0) if errs.dim() == 2 else (w * errs).sum()


def _check_pair(estimate: torch.Tensor, target: torch.Tensor) -> None:
    if estimate.dim() != 2 or target.dim() != 2:
        raise ValueError(
            f"deep feature loss expects waveforms (batch, samples), got estimate "
            f"{tuple(estimate.shape)} and target {tuple(target.shape)}"
        )
    if estimate.shape != target.shape:
        raise ValueError(
            f"estimate {tuple(estimate.shape)} and target {tuple(target.shape)} differ"
        )


class ExactVGGishSegments(nn.Module):
    """Default DFL frontend: the reference VGGish log-mel on waveforms zero-padded to whole
    examples. ``(B, S)`` 16 kHz -> ``((B * n, 1, 96, 64), item (B * n,))`` with
    ``n = ceil((S - 240) / 15360)`` (at least 1)."""

    def __init__(self, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.frontend = VGGishFrontend(dtype)

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s = waveform.shape
        n = max(1, -(-(s - MIN_SAMPLES_16K) // _EXAMPLE_SAMPLES))
        padded = n * _EXAMPLE_SAMPLES + MIN_SAMPLES_16K
        x = nn.functional.pad(waveform, (0, padded - s))
        logmel = self.frontend.frame_examples(self.frontend.log_mel(x))  # (B, n, 96, 64)
        items = torch.arange(b, device=waveform.device).repeat_interleave(n)
        return logmel.reshape(b * n, 1, *logmel.shape[2:]), items


class VggishdflSegments(nn.Module):
    """The ``vggishdfl`` frontend: centred, reflect-padded STFT (``torch.stft`` defaults),
    magnitude, HTK mel, ``log(mel + 0.01)``, log-mel zero-padded to whole 96-frame segments.

    ``(B, S)`` float32, ``S > 256`` -> ``((B * n, 1, 96, 64), item)`` with
    ``n = ceil((1 + S // 160) / 96)``.
    """

    def __init__(self):
        super().__init__()
        window = torch.hann_window(WINDOW_LENGTH, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer(
            "mel", torch.from_numpy(np.array(mel_matrix(), dtype=np.float32)), persistent=False
        )

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s = waveform.shape
        if s <= FFT_LENGTH // 2:
            raise ValueError(
                f"vggishdfl's reflect-padded STFT needs more than 256 samples, got {s}"
            )
        spec = torch.stft(
            waveform, n_fft=FFT_LENGTH, hop_length=HOP_LENGTH, win_length=WINDOW_LENGTH,
            window=self.window.to(waveform.device, waveform.dtype), center=True,
            pad_mode="reflect", return_complex=True,
        ).abs()  # fmt: skip
        logmel = torch.log(spec.transpose(1, 2) @ self.mel.to(spec.dtype) + LOG_OFFSET)
        frames = logmel.shape[1]
        n = -(-frames // EXAMPLE_FRAMES)
        logmel = nn.functional.pad(logmel, (0, 0, 0, n * EXAMPLE_FRAMES - frames))
        items = torch.arange(b, device=waveform.device).repeat_interleave(n)
        return logmel.reshape(b * n, 1, EXAMPLE_FRAMES, logmel.shape[-1]), items


class _RoundedPCA(nn.Module):
    """vggishdfl's postprocess term: ``round((clip(E (emb - mu), -2, 2) + 2) * 255 / 4)``
    in float32 (values 0..255 as floats; zero gradient, like the original)."""

    def __init__(self, pca_eigen_vectors: torch.Tensor, pca_means: torch.Tensor):
        super().__init__()
        self.register_buffer("eigen", torch.as_tensor(pca_eigen_vectors, dtype=torch.float32))
        self.register_buffer("means", torch.as_tensor(pca_means, dtype=torch.float32).reshape(-1))

    def forward(self, taps: dict[str, torch.Tensor]) -> torch.Tensor:
        emb = taps["embedding"]
        # same operand order as the original (E @ (emb^T - mu)) so float32 rounding agrees
        means = self.means.to(emb.device)[:, None]
        pca = torch.mm(self.eigen.to(emb.device), emb.t() - means).t()
        return torch.round((pca.clamp(-2.0, 2.0) + 2.0) * (255.0 / 4.0))


class VGGishDFL(DeepFeatureLoss):
    """VGGish deep feature loss, ``loss = dfl(estimate, target)`` on 16 kHz ``(batch, samples)``.

    Args:
        model: a :class:`~audiorep.models.vggish.VGGish` (or a bundle's ``.model``); it is
            frozen. With ``torchvggish_compat=True`` the last term is post-ReLU.
        hook_relus: compare every ReLU output (6 conv + 2 FC) and the 128-d embedding, averaged;
            ``False``: the embedding only.
        layer_weights: optional per-term weights (normalised), in tap order.
        detach_target: see :class:`DeepFeatureLoss` (default ``True``).
        frontend_dtype: dtype of the exact frontend (float32 default: the gradients are
            float32 anyway; float64 for gradient checks).

    ``.to(device)`` moves everything; inputs must be on the same device.
    """

    def __init__(
        self,
        model: VGGish,
        hook_relus: bool = True,
        layer_weights: Sequence[float] | None = None,
        detach_target: bool = True,
        frontend_dtype: torch.dtype = torch.float32,
        _frontend: nn.Module | None = None,
        _extra_terms: Sequence[nn.Module] = (),
        _per_item_ratio: bool = True,
    ):
        taps = [*VGGISH_RELU_TAPS, "embedding"] if hook_relus else ["embedding"]
        if not hook_relus and _extra_terms:
            taps = []  # the original compares only its final (quantised) output
        frontend = _frontend if _frontend is not None else ExactVGGishSegments(frontend_dtype)
        super().__init__(
            model, taps, frontend, layer_weights, detach_target,
            extra_terms=list(_extra_terms), per_item_ratio=_per_item_ratio,
            extra_terms_need=["embedding"] if _extra_terms else [],
        )  # fmt: skip
        self.hook_relus = hook_relus

    @classmethod
    def vggishdfl_compatible(
        cls,
        model: VGGish,
        postprocessor=None,
        hook_relus: bool = True,
    ) -> VGGishDFL:
        """The original ``vggishdfl.VGGishDFL`` behaviour, for reproducing published numbers.

        Args:
            model: VGGish with the weights to use. The loss holds a frozen copy of its weights
                with a final ReLU on the embedding (as the original's port); later changes to
                ``model`` do not reach it.
            postprocessor: a :class:`~audiorep.features.postprocess.Postprocessor` (its PCA
                parameters are used with rounding, in float32) to add the quantised term
                (the original's ``postprocess=True`` default); ``None`` for ``postprocess=False``.
            hook_relus: as the original: all ReLUs (+ quantised term) or the output only.
                ``hook_relus=False`` with a postprocessor has zero gradient, as the original.
        """
        relu_model = VGGish(torchvggish_compat=True)
        relu_model.load_state_dict(model.state_dict())
        relu_model.to(next(model.parameters()).device)
        extra = []
        if postprocessor is not None:
            extra.append(_RoundedPCA(postprocessor.pca_eigen_vectors, postprocessor.pca_means))
        return cls(
            relu_model, hook_relus=hook_relus, detach_target=False,
            _frontend=VggishdflSegments(), _extra_terms=extra, _per_item_ratio=False,
        )  # fmt: skip
