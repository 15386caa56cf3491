"""Attention and pooling heads on the frame features (AudioSet tagging literature).

* :class:`DecisionAttentionModel` (``decision_attention``): Kong, Xu, Wang, Plumbley, "Audio
  Set classification with attention model: a probabilistic perspective", ICASSP 2018
  (arXiv:1711.00927). Per-frame classifier ``sigmoid(z_t)`` and per-class attention weights
  ``a_t`` (softmax over the clip's frames); ``p = sum_t a_t sigmoid(z_t)``.
* :class:`FeatureAttentionModel` (``feature_attention``): Kong, Yu, Xu, Iqbal, Wang,
  Plumbley, "Weakly labelled AudioSet tagging with attention neural networks", TASLP 2019
  (arXiv:1903.00765). Attention pooling of every hidden unit over time, then a classifier.
* :class:`MultiLevelAttentionModel` (``multilevel_attention``): Yu, Song, Jin, Wang et al.,
  "Multi-level attention model for weakly supervised audio classification", 2018
  (arXiv:1803.02353). Decision-level attention on several embedding layers, the pooled
  outputs (log-odds by default, the paper's probabilities as an option) concatenated, then a
  linear layer.
* :class:`MlpModel` (``mlp``): mean and max of the valid frames concatenated, then an MLP.

Input: ``frames (B, T, D)`` float32, the dequantised features (values in [-2, 2]) as the
AudioSet dataset yields them, zero-padded after ``num_frames (B,)`` int64. Output:
``{"predictions": (B, C) probabilities, "logits": (B, C)}`` with ``sigmoid(logits) =
predictions`` up to float rounding (train with BCE on the logits).

Padding. The frame-wise layers run on the valid frames only, packed into ``(N, D)`` rows
(``N = sum(num_frames)``), so padded frames never enter batch-norm statistics, and the
attention softmax is taken over the valid frames only: a padded frame's content (or an extra
padded time step) cannot change the output. A row with ``num_frames == 0`` is given one zero
frame (as the YouTube-8M heads' zero-padded row): a defined, finite output, no NaN.

Input normalisation (``input_norm``): ``"batch_norm"`` (default; batch norm of the 128
input features, per frame for the attention heads and on the pooled 256-d vector for the
MLP, as the attention papers' public code; in 5-epoch bal_train runs it scored at least as
well as the others: MLP 0.253 eval mAP vs 0.248 with "l2" and 0.252 with "none", feature
attention 0.216 vs 0.213 with "l2"), ``"l2"`` (L2-normalise every frame, as YouTube-8M's
train.py) or ``"none"``.

The heads carry no weight penalty (``regularization_loss()`` is 0): use the optimiser's
weight decay.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from audiorep.heads._common import Head, HeadConfig, check_inputs, frame_mask, l2_normalize

__all__ = [
    "DecisionAttentionConfig",
    "DecisionAttentionModel",
    "FeatureAttentionConfig",
    "FeatureAttentionModel",
    "MlpConfig",
    "MlpModel",
    "MultiLevelAttentionConfig",
    "MultiLevelAttentionModel",
    "attention_pool_probabilities",
    "pack_frames",
]

_INPUT_NORMS = ("batch_norm", "l2", "none")

#: Initial bias of the class logits: sigmoid(-5) = 0.0067, near AudioSet's label density
#: (bal_train: 2.4 labels per clip of 527 classes, 0.0045 = sigmoid(-5.4)). Starting at the
#: prior instead of 0.5 spares the first epoch of unlearning it (sanity run: MLP 0.253 vs
#: 0.216 eval mAP after 5 epochs).
OUTPUT_BIAS_INIT = -5.0


# ------------------------------------------------------------------------------------------
# shared pieces


def pack_frames(
    frames: torch.Tensor, num_frames: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid frames as rows: ``(B, T, D)``, ``(B,)`` -> ``(N, D)`` rows and the ``(B, T)``
    bool mask they came from (row-major order, ``N = mask.sum()``).

    ``num_frames`` is clamped to ``[0, T]``; a row with 0 frames contributes one zero frame
    (its position 0, set to zero whatever the padding holds), so every row has >= 1 valid
    frame and the softmax / max over frames is defined.
    """
    t = frames.shape[1]
    if t == 0:  # no time steps at all: one zero frame per row
        frames = frames.new_zeros(frames.shape[0], 1, frames.shape[2])
        t = 1
    n = num_frames.to(frames.device).clamp(min=0, max=t)
    mask = frame_mask(n.clamp(min=1), t)
    empty = (n == 0)[:, None] & (torch.arange(t, device=frames.device) == 0)[None, :]
    if bool(empty.any()):
        frames = torch.where(empty[..., None], torch.zeros((), dtype=frames.dtype), frames)
    return frames[mask], mask


def unpack_rows(rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_frames`: ``(N, H)`` rows -> ``(B, T, H)``, zeros where
    ``mask (B, T)`` is False."""
    out = rows.new_zeros(*mask.shape, rows.shape[-1])
    return out.masked_scatter(mask[..., None], rows)


def masked_log_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over time (dim 1) of ``scores (B, T, K)`` restricted to ``mask (B, T)``
    (every row has >= 1 True); ``-inf`` at the masked-out steps."""
    return torch.log_softmax(scores.masked_fill(~mask[..., None], float("-inf")), dim=1)


def attention_pool_probabilities(
    log_weights: torch.Tensor, logits: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``p = sum_t a_t sigmoid(z_t)`` and its stable logit.

    ``log_weights (B, T, K)``: ``log a_t`` (each ``(b, :, k)`` sums to 1 in probability,
    ``-inf`` at excluded steps); ``logits (B, T, K)``: ``z_t``. Returns ``predictions (B, K)``
    (the weighted sum) and ``logits (B, K) = log p - log(1 - p)`` with ``log p =
    logsumexp_t(log a_t + logsigmoid(z_t))`` and ``log(1 - p) = logsumexp_t(log a_t +
    logsigmoid(-z_t))`` (``sum_t a_t = 1``): finite where ``p`` rounds to 0 or 1.
    """
    predictions = (log_weights.exp() * torch.sigmoid(logits)).sum(dim=1)
    log_p = torch.logsumexp(log_weights + F.logsigmoid(logits), dim=1)
    log_q = torch.logsumexp(log_weights + F.logsigmoid(-logits), dim=1)
    return {"predictions": predictions, "logits": log_p - log_q}


def _check_common(config: HeadConfig) -> None:
    name = type(config).__name__
    if config.input_norm not in _INPUT_NORMS:
        raise ValueError(f"{name}.input_norm must be one of {_INPUT_NORMS}: {config.input_norm!r}")
    if config.hidden_size < 1:
        raise ValueError(f"{name}.hidden_size must be >= 1, got {config.hidden_size}")
    if config.num_layers < 0:
        raise ValueError(f"{name}.num_layers must be >= 0, got {config.num_layers}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"{name}.dropout must be in [0, 1), got {config.dropout}")


def _relu_linear(in_features: int, out_features: int, bias: bool) -> nn.Linear:
    """A linear layer feeding a ReLU: He-uniform weights, zero bias."""
    fc = nn.Linear(in_features, out_features, bias=bias)
    nn.init.kaiming_uniform_(fc.weight, nonlinearity="relu")
    if bias:
        nn.init.zeros_(fc.bias)
    return fc


class MlpStack(nn.Module):
    """Input normalisation then ``num_layers`` x [Linear -> (BatchNorm) -> ReLU -> Dropout].

    ``(N, in_features) -> list`` of the ``num_layers`` hidden outputs, each ``(N, hidden)``
    (the input itself, normalised, when ``num_layers == 0``). With ``batch_norm`` the linear
    layers have no bias (the batch norm's shift replaces it).
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
        batch_norm: bool,
        input_norm: str,
    ) -> None:
        super().__init__()
        self.input_norm = input_norm
        self.input_bn = nn.BatchNorm1d(in_features) if input_norm == "batch_norm" else None
        self.dropout = dropout
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        size = in_features
        for _ in range(num_layers):
            self.layers.append(_relu_linear(size, hidden_size, bias=not batch_norm))
            self.norms.append(nn.BatchNorm1d(hidden_size) if batch_norm else nn.Identity())
            size = hidden_size
        self.out_features = size

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.input_bn is not None:
            x = self.input_bn(x)
        elif self.input_norm == "l2":
            x = l2_normalize(x)
        outs = []
        for fc, norm in zip(self.layers, self.norms, strict=True):
            x = F.dropout(F.relu(norm(fc(x))), self.dropout, self.training)
            outs.append(x)
        return outs or [x]


def _class_linear(in_features: int, num_classes: int, bias_init: float) -> nn.Linear:
    """A layer producing class logits: PyTorch's default weights, bias ``bias_init``."""
    fc = nn.Linear(in_features, num_classes)
    nn.init.constant_(fc.bias, bias_init)
    return fc


def _zero_loss(module: nn.Module) -> torch.Tensor:
    p = next(module.parameters(), None)
    return torch.zeros((), device=None if p is None else p.device)


@dataclasses.dataclass
class _FrameMlpConfig(HeadConfig):
    """Fields shared by the attention heads (their per-frame embedding MLP).

    Fields:
        hidden_size: width of every hidden layer (1024, as the papers' code).
        num_layers: hidden layers of the per-frame embedding (3, as the papers' code).
        dropout: dropout after every hidden ReLU (0.5).
        batch_norm: batch norm before every hidden ReLU (statistics over the valid frames).
        input_norm: "batch_norm" (default), "l2" or "none" - see the module docstring.
        output_bias_init: initial bias of the class logits (-5.0, see the module docstring).
    """

    hidden_size: int = 1024
    num_layers: int = 3
    dropout: float = 0.5
    batch_norm: bool = True
    input_norm: str = "batch_norm"
    output_bias_init: float = OUTPUT_BIAS_INIT


class _FrameHead(Head):
    """Base of the attention heads: per-frame embedding MLP on the packed valid frames."""

    def _build_embedding(self) -> None:
        cfg = self.config
        _check_common(cfg)
        self.embedding = MlpStack(
            cfg.feature_size, cfg.hidden_size, cfg.num_layers, cfg.dropout, cfg.batch_norm,
            cfg.input_norm,
        )  # fmt: skip

    def _embed(
        self, frames: torch.Tensor, num_frames: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        check_inputs(frames, num_frames, self.config.feature_size)
        rows, mask = pack_frames(frames, num_frames)
        return self.embedding(rows), mask

    def regularization_loss(self) -> torch.Tensor:
        """0: these heads use the optimiser's weight decay instead of a loss penalty."""
        return _zero_loss(self)


# ------------------------------------------------------------------------------------------
# decision-level attention


@dataclasses.dataclass
class DecisionAttentionConfig(_FrameMlpConfig):
    """DecisionAttentionModel: the shared embedding fields (see ``_FrameMlpConfig``: 3 x 1024,
    dropout 0.5, batch norm, input batch norm); no others."""


class DecisionAttentionModel(_FrameHead):
    """Decision-level attention (Kong et al. 2018, arXiv:1711.00927).

    Per valid frame ``t``: embedding ``h_t (H,)`` -> class logits ``z_t = W_c h_t + b_c (C,)``
    and attention scores ``s_t = W_a h_t + b_a (C,)``; per class ``a_t = softmax over the
    clip's valid frames of s_t`` and ``p = sum_t a_t sigmoid(z_t)``. ``(B, T, D)``, ``(B,)``
    -> ``{"predictions", "logits"}`` each ``(B, C)`` (logits: see
    :func:`attention_pool_probabilities`).
    """

    name = "decision_attention"
    config_class = DecisionAttentionConfig

    def __init__(self, config: DecisionAttentionConfig | None = None) -> None:
        config = config or DecisionAttentionConfig()
        super().__init__(config)
        self._build_embedding()
        h = self.embedding.out_features
        self.classifier = _class_linear(h, config.num_classes, config.output_bias_init)
        self.attention = nn.Linear(h, config.num_classes)

    def forward(self, frames: torch.Tensor, num_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """``frames (B, T, D)``, ``num_frames (B,)`` -> ``{"predictions", "logits"}`` (B, C)."""
        layers, mask = self._embed(frames, num_frames)
        h = layers[-1]
        z = unpack_rows(self.classifier(h), mask)
        log_a = masked_log_softmax(unpack_rows(self.attention(h), mask), mask)
        return attention_pool_probabilities(log_a, z)


# ------------------------------------------------------------------------------------------
# feature-level attention


@dataclasses.dataclass
class FeatureAttentionConfig(_FrameMlpConfig):
    """FeatureAttentionModel: the shared embedding fields (3 x 1024, dropout 0.5, batch norm,
    input batch norm) and:

    Fields:
        pooled_size: units of the attention-pooled vector (1024).
        attention: how the per-unit weights over time are made: "softmax" (default,
            ``softmax_t(s_t)``) or "sigmoid" (``sigmoid(s_t) / sum_t sigmoid(s_t)``, the
            papers' public code).
        feature_activation: the pooled projection ``v_t``: "linear" (default, as the paper's
            best model) or "sigmoid".
        pooled_batch_norm: batch norm on the pooled vector before its ReLU and dropout (the
            paper's code: pooled -> BN -> ReLU -> dropout -> classifier).
    """

    pooled_size: int = 1024
    attention: str = "softmax"
    feature_activation: str = "linear"
    pooled_batch_norm: bool = True


class FeatureAttentionModel(_FrameHead):
    """Feature-level attention (Kong et al. 2019, arXiv:1903.00765).

    Per valid frame: embedding ``h_t (H,)`` -> feature projection ``v_t = act(W_v h_t + b_v)``
    and attention scores ``s_t = W_s h_t + b_s``, both ``(P,)``; per unit ``k`` weights
    ``w_{t,k}`` normalised over the clip's valid frames (``attention``); pooled ``u_k =
    sum_t w_{t,k} v_{t,k}`` ``(B, P)`` -> (BatchNorm) -> ReLU -> Dropout -> Linear ->
    ``logits (B, C)``, ``predictions = sigmoid(logits)``.
    """

    name = "feature_attention"
    config_class = FeatureAttentionConfig

    def __init__(self, config: FeatureAttentionConfig | None = None) -> None:
        config = config or FeatureAttentionConfig()
        super().__init__(config)
        self._build_embedding()
        if config.attention not in ("softmax", "sigmoid"):
            raise ValueError(
                f"FeatureAttentionConfig.attention must be 'softmax' or 'sigmoid': "
                f"{config.attention!r}"
            )
        if config.feature_activation not in ("linear", "sigmoid"):
            raise ValueError(
                "FeatureAttentionConfig.feature_activation must be 'linear' or 'sigmoid': "
                f"{config.feature_activation!r}"
            )
        if config.pooled_size < 1:
            raise ValueError(
                f"FeatureAttentionConfig.pooled_size must be >= 1, got {config.pooled_size}"
            )
        h, p = self.embedding.out_features, config.pooled_size
        self.feature = nn.Linear(h, p)
        self.attention = nn.Linear(h, p)
        self.pooled_bn = nn.BatchNorm1d(p) if config.pooled_batch_norm else nn.Identity()
        self.classifier = _class_linear(p, config.num_classes, config.output_bias_init)

    def forward(self, frames: torch.Tensor, num_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """``frames (B, T, D)``, ``num_frames (B,)`` -> ``{"predictions", "logits"}`` (B, C)."""
        cfg = self.config
        layers, mask = self._embed(frames, num_frames)
        h = layers[-1]
        v = self.feature(h)
        if cfg.feature_activation == "sigmoid":
            v = torch.sigmoid(v)
        v = unpack_rows(v, mask)  # (B, T, P)
        s = unpack_rows(self.attention(h), mask)
        if cfg.attention == "softmax":
            w = masked_log_softmax(s, mask).exp()
        else:
            # The public code's normalised sigmoid (clamped away from 0 so the sum is > 0).
            a = torch.sigmoid(s).clamp(min=1e-7) * mask[..., None].to(s.dtype)
            w = a / a.sum(dim=1, keepdim=True)
        pooled = (w * v).sum(dim=1)
        x = F.dropout(F.relu(self.pooled_bn(pooled)), cfg.dropout, self.training)
        logits = self.classifier(x)
        return {"predictions": torch.sigmoid(logits), "logits": logits}


# ------------------------------------------------------------------------------------------
# multi-level attention


@dataclasses.dataclass
class MultiLevelAttentionConfig(_FrameMlpConfig):
    """MultiLevelAttentionModel: the shared embedding fields (3 x 1024, dropout 0.5, batch
    norm, input batch norm) and:

    Fields:
        num_levels: decision-level attention modules on the outputs of the last
            ``num_levels`` embedding layers (2, as the paper's best model: layers 2 and 3 of
            3); ``1 <= num_levels <= num_layers``.
        level_output: what each level passes to the fusion layer: "logit" (default: the
            pooled probability's stable log-odds; the fusion layer starts as the mean of the
            levels' logits, identity blocks ``1/L`` and zero bias, so every level learns from
            the first step) or "probability" (the paper: the pooled probabilities, fusion
            layer with PyTorch's default init and bias ``output_bias_init``).
    """

    num_levels: int = 2
    level_output: str = "logit"


class MultiLevelAttentionModel(_FrameHead):
    """Multi-level attention (Yu et al. 2018, arXiv:1803.02353).

    For each of the last ``L = num_levels`` embedding layers ``l``: a decision-level
    attention module (as :class:`DecisionAttentionModel`: ``p_l = sum_t a_{l,t}
    sigmoid(z_{l,t})``, ``(B, C)``); the ``L`` pooled vectors (``level_output``: their
    log-odds or the probabilities ``p_l``) concatenated ``(B, L*C)`` -> Linear -> ``logits
    (B, C)``, ``predictions = sigmoid(logits)``.
    """

    name = "multilevel_attention"
    config_class = MultiLevelAttentionConfig

    def __init__(self, config: MultiLevelAttentionConfig | None = None) -> None:
        config = config or MultiLevelAttentionConfig()
        super().__init__(config)
        self._build_embedding()
        if not 1 <= config.num_levels <= config.num_layers:
            raise ValueError(
                f"MultiLevelAttentionConfig.num_levels must be in [1, num_layers="
                f"{config.num_layers}], got {config.num_levels}"
            )
        if config.level_output not in ("logit", "probability"):
            raise ValueError(
                "MultiLevelAttentionConfig.level_output must be 'logit' or 'probability': "
                f"{config.level_output!r}"
            )
        h, c, levels = config.hidden_size, config.num_classes, config.num_levels
        bias = config.output_bias_init
        self.classifiers = nn.ModuleList(_class_linear(h, c, bias) for _ in range(levels))
        self.attentions = nn.ModuleList(nn.Linear(h, c) for _ in range(levels))
        self.fc = _class_linear(levels * c, c, bias)
        if config.level_output == "logit":
            with torch.no_grad():  # start as the mean of the levels' logits
                self.fc.weight.copy_(torch.eye(c).repeat(1, levels) / levels)
                self.fc.bias.zero_()

    def forward(self, frames: torch.Tensor, num_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """``frames (B, T, D)``, ``num_frames (B,)`` -> ``{"predictions", "logits"}`` (B, C)."""
        layers, mask = self._embed(frames, num_frames)
        levels = layers[-self.config.num_levels :]
        pooled = []
        for h, cla, att in zip(levels, self.classifiers, self.attentions, strict=True):
            z = unpack_rows(cla(h), mask)
            log_a = masked_log_softmax(unpack_rows(att(h), mask), mask)
            level = attention_pool_probabilities(log_a, z)
            pooled.append(level["logits" if self.config.level_output == "logit" else "predictions"])
        logits = self.fc(torch.cat(pooled, dim=-1))
        return {"predictions": torch.sigmoid(logits), "logits": logits}


# ------------------------------------------------------------------------------------------
# MLP on mean + max pooling


@dataclasses.dataclass
class MlpConfig(_FrameMlpConfig):
    """MlpModel: mean and max of the valid frames ``(B, 2D)`` -> MLP -> logits. The fields of
    the attention heads' MLP, applied to the pooled vector: ``num_layers`` 2 by default (the
    spec's baseline); ``input_norm`` "batch_norm" normalises the pooled ``2D`` vector, "l2"
    every frame before pooling."""

    num_layers: int = 2


class MlpModel(Head):
    """``cat(mean_t x_t, max_t x_t)`` over the valid frames ``(B, 2D)`` -> ``num_layers`` x
    [Linear -> (BN) -> ReLU -> Dropout] -> Linear -> ``logits (B, C)``; ``predictions =
    sigmoid(logits)``. A 0-frame row pools one zero frame (mean = max = 0)."""

    name = "mlp"
    config_class = MlpConfig

    def __init__(self, config: MlpConfig | None = None) -> None:
        config = config or MlpConfig()
        super().__init__(config)
        _check_common(config)
        self.mlp = MlpStack(
            2 * config.feature_size, config.hidden_size, config.num_layers, config.dropout,
            config.batch_norm, "batch_norm" if config.input_norm == "batch_norm" else "none",
        )  # fmt: skip
        self.classifier = _class_linear(
            self.mlp.out_features, config.num_classes, config.output_bias_init
        )

    def forward(self, frames: torch.Tensor, num_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """``frames (B, T, D)``, ``num_frames (B,)`` -> ``{"predictions", "logits"}`` (B, C)."""
        check_inputs(frames, num_frames, self.config.feature_size)
        rows, mask = pack_frames(frames, num_frames)
        if self.config.input_norm == "l2":
            rows = l2_normalize(rows)
        x = unpack_rows(rows, mask)
        count = mask.sum(dim=1, keepdim=True).to(x.dtype)  # >= 1 (pack_frames)
        mean = x.sum(dim=1) / count
        peak = x.masked_fill(~mask[..., None], float("-inf")).amax(dim=1)
        logits = self.classifier(self.mlp(torch.cat([mean, peak], dim=-1))[-1])
        return {"predictions": torch.sigmoid(logits), "logits": logits}

    def regularization_loss(self) -> torch.Tensor:
        """0: this head uses the optimiser's weight decay instead of a loss penalty."""
        return _zero_loss(self)
