"""Frame-level heads (YouTube-8M ``frame_level_models.py`` + ``model_utils.py``).

All take ``frames (B, T, D)`` float32 - the dequantized features as the AudioSet dataset
yields them, zero-padded after ``num_frames`` - and ``num_frames (B,)`` int64. Like train.py /
eval.py, every frame is first L2-normalised (``normalize_frames=True``; idempotent, so
already-normalised input is fine; zero rows stay zero).

* :class:`FrameLevelLogisticModel` - logistic regression on the masked mean of the frames.
* :class:`DbofModel` - Deep Bag of Frames: sample frames, project each into a wide "cluster"
  space, pool, hidden layer, video-level classifier (MoE by default).
* :class:`LstmModel` - stacked LSTM, final state of the top layer -> video-level classifier.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from audiorep.heads._common import (
    Head,
    HeadConfig,
    check_inputs,
    frame_mask,
    glorot_uniform_,
    l2_normalize,
    masked_mean,
)
from audiorep.heads.video_level import LogisticClassifier, make_classifier

__all__ = [
    "DbofConfig",
    "DbofModel",
    "FrameLevelLogisticConfig",
    "FrameLevelLogisticModel",
    "LstmConfig",
    "LstmModel",
    "sample_random_frames",
    "sample_random_sequence",
]


# ------------------------------------------------------------------------------------------
# frame sampling (model_utils.py)


def sample_random_frames(
    num_frames: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``SampleRandomFrames``: ``num_samples`` frame indices per row, i.i.d. with replacement.

    ``index = floor(u * num_frames)``, ``u ~ U[0, 1)`` float32 (as the original's float32
    product and int cast). ``num_frames (B,)`` -> ``(B, num_samples)`` int64; a row with
    ``num_frames == 0`` gets index 0 (a padded zero row, as the original).
    ``generator``: torch generator on ``num_frames``'s device (default: the global RNG).
    """
    n = num_frames.to(torch.int64)
    u = torch.rand(
        n.shape[0], num_samples, generator=generator, device=n.device, dtype=torch.float32
    )
    idx = (u * n.to(torch.float32)[:, None]).to(torch.int64)  # truncation = floor (>= 0)
    return torch.minimum(idx, (n - 1).clamp(min=0)[:, None])  # guard float rounding to n


def sample_random_sequence(
    num_frames: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``SampleRandomSequence``: a random contiguous run of ``num_samples`` frames per row.

    ``start = floor(u * (max(num_frames - num_samples, 0) + 1))``, ``index_j = min(start + j,
    num_frames - 1)`` (the last frame repeats when the video is shorter). ``num_frames == 0``
    gives index 0 here (the original gathers index -1 and fails). ``(B,)`` -> ``(B, K)`` int64.
    """
    n = num_frames.to(torch.int64)
    u = torch.rand(n.shape[0], 1, generator=generator, device=n.device, dtype=torch.float32)
    span = ((n - num_samples).clamp(min=0) + 1).to(torch.float32)
    start = (u * span[:, None]).to(torch.int64)
    offsets = torch.arange(num_samples, device=n.device)[None, :]
    return torch.minimum(start + offsets, (n - 1)[:, None]).clamp(min=0)


# ------------------------------------------------------------------------------------------
# FrameLevelLogisticModel


@dataclasses.dataclass
class FrameLevelLogisticConfig(HeadConfig):
    """FrameLevelLogisticModel (the original hard-codes L2 1e-8)."""

    l2_penalty: float = 1e-8
    normalize_frames: bool = True  # train.py L2-normalises every frame
    output_bias_init: float = 0.0  # classifier bias at init (0: the original; see video_level)


class FrameLevelLogisticModel(Head):
    """``sigmoid(W * masked_mean(normalised frames) + b)``; the pooled vector is not
    normalised again. Output ``predictions`` and ``logits``, ``(B, C)``.

    The original divides the sum over all padded rows by ``num_frames`` (NaN at 0 frames);
    here padded rows are masked out (same result for zero padding) and 0 frames give a zero
    vector.
    """

    name = "frame_logistic"
    config_class = FrameLevelLogisticConfig

    def __init__(self, config: FrameLevelLogisticConfig | None = None) -> None:
        config = config or FrameLevelLogisticConfig()
        super().__init__(config)
        self.classifier = LogisticClassifier(
            config.feature_size, config.num_classes, config.l2_penalty, config.output_bias_init
        )

    def forward(self, frames: torch.Tensor, num_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, T, D)``, ``(B,)`` -> ``{"predictions", "logits"}`` each ``(B, C)``."""
        check_inputs(frames, num_frames, self.config.feature_size)
        if self.config.normalize_frames:
            frames = l2_normalize(frames)
        return self.classifier(masked_mean(frames, num_frames))

    def regularization_loss(self) -> torch.Tensor:
        return self.classifier.regularization_loss()


# ------------------------------------------------------------------------------------------
# DbofModel


@dataclasses.dataclass
class DbofConfig(HeadConfig):
    """DbofModel; defaults = the original flags (``--iterations`` 30, ``--dbof_*``).

    Fields:
        iterations: frames sampled per video (with replacement: 30 draws from <= 10 AudioSet
            frames).
        sample_random_frames: True = i.i.d. frames, False = a random contiguous sequence.
            (The original's ``x or FLAGS.x`` pattern ignores False passed in code; here the
            config is honoured.)
        add_batch_norm: batch norm on the input, cluster and hidden layers (slim: centre and
            scale, decay 0.999 -> ``bn_momentum`` 0.001, ``bn_eps`` 1e-3); without it the
            cluster/hidden layers get biases ~ N(0, 1/sqrt(D)) / N(0, 0.01).
        cluster_size, hidden_size: 8192 and 1024.
        pooling_method: "max" or "average" over the sampled frames.
        activation: "sigmoid" (HEAD) or "relu6" (the 2017 code).
        classifier: ``video_level_classifier_model``: "moe" (default) or "logistic";
            ``num_mixtures`` and ``l2_penalty`` are its settings (the cluster/hidden weights
            carry no penalty, as the original).
        eval_sampling: what ``model.eval()`` does. The original samples at eval too (its only
            train/eval difference is batch norm using moving statistics), so its evaluation is
            stochastic. "seeded" (default): sample the same way from a generator seeded with
            ``eval_seed`` on every call - deterministic, same statistics as training; "random":
            the original (global RNG); "all": no sampling, pool over every valid frame.
        fold_samples: compute the cluster layer once per frame and weight it by how often it
            was drawn (batch-norm statistics weighted accordingly) instead of on the gathered
            ``B * iterations`` rows - the same function and gradients up to float rounding,
            ``iterations / T`` times less work (3x for AudioSet). Used only when
            ``T <= iterations``.
        fused_max_pool: with ``pooling_method="max"``, compute the pooled cluster layer
            without materialising the ``(B, R, cluster_size)`` activations (see
            :meth:`DbofModel._max_pooled_clusters`): the cluster batch-norm statistics come
            from the ``D x D`` covariance of the cluster layer's input, and because batch
            norm is a per-unit affine map and the activation is non-decreasing, the max over
            frames of ``act(bn(a))`` is ``act(bn(.))`` of the max (or, for a negative
            batch-norm scale, the min) of the pre-activations ``a``, taken chunk by chunk.
            The same function and gradients up to float rounding (and the choice among
            exactly tied frames); False = the plain layer-by-layer computation.
        normalize_frames: L2-normalise every frame first (train.py does it for all
            frame-level models).
    """

    iterations: int = 30
    sample_random_frames: bool = True
    add_batch_norm: bool = True
    cluster_size: int = 8192
    hidden_size: int = 1024
    pooling_method: str = "max"
    activation: str = "sigmoid"
    classifier: str = "moe"
    num_mixtures: int = 2
    l2_penalty: float = 1e-8
    bn_momentum: float = 0.001
    bn_eps: float = 1e-3
    eval_sampling: str = "seeded"
    eval_seed: int = 0
    fold_samples: bool = True
    fused_max_pool: bool = True
    normalize_frames: bool = True  # train.py L2-normalises every frame
    output_bias_init: float = 0.0  # classifier bias at init (0: the original; see video_level)


_ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu6": F.relu6}

# The fused max pool computes the cluster pre-activations in chunks of about this many float32
# values (16 MiB): a chunk is written, reduced and dropped while it is still in the last-level
# cache, instead of a fresh (B * R, cluster_size) tensor per operation (at batch 1024 each one
# is 335 MB, and most of the plain path's time goes into page-faulting such tensors in).
_CHUNK_VALUES = 1 << 22


class _MaxOfProjection(torch.autograd.Function):
    """``values[b, s] = max_r x[b, r] @ w[:, s]`` over the rows ``r`` with ``unused[b, r]``
    False: ``x (B, R, D)``, ``w (D, S)``, ``unused (B, R)`` bool or None (every row counts;
    each b needs at least one counted row) -> ``(B, S)``.

    Forward and backward run over chunks of b, never holding the ``(B, R, S)`` products. The
    backward sends ``grad[b, s]`` to the selected row (the first maximum, as
    ``Tensor.max(dim)``): per chunk it rebuilds that one-hot ``(c, R, S)`` gradient and
    multiplies it into ``grad_x = g @ w.T`` and ``grad_w += x.T @ g``; only the ``(B, S)``
    indices are kept between the passes.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, unused: torch.Tensor | None):
        b, r, d = x.shape
        s = w.shape[1]
        chunk = max(1, _CHUNK_VALUES // (r * s))
        values = x.new_empty(b, s)
        index = torch.empty(b, s, dtype=torch.int64, device=x.device)
        buf = x.new_empty(min(chunk, b) * r, s)
        count = x.new_empty(min(chunk, b), s)
        # -inf on the rows not to pool (an add, much cheaper than masked_fill on CPU)
        bias = None if unused is None else torch.zeros_like(unused, dtype=x.dtype)
        if bias is not None:
            bias.masked_fill_(unused, -math.inf)
        for i in range(0, b, chunk):
            c = min(chunk, b - i)
            a = torch.mm(x[i : i + c].reshape(c * r, d), w, out=buf[: c * r]).view(c, r, s)
            if bias is not None:
                a.add_(bias[i : i + c, :, None])
            # Running maxima in place (a[:, t] = max over rows <= t); the last is the max, and
            # the index of the first maximum = how many running maxima stay below it. Only
            # float elementwise ops and reductions: Tensor.max(dim) / argmax over the middle
            # axis, and ops with bool outputs, are 5-25x slower on CPU.
            for t in range(1, r):
                torch.maximum(a[:, t - 1], a[:, t], out=a[:, t])
            v = values[i : i + c]
            v.copy_(a[:, r - 1])
            torch.sum(torch.lt(a, v[:, None, :], out=a), dim=1, out=count[:c])
            index[i : i + c].copy_(count[:c])
        ctx.save_for_backward(x, w, index)
        return values

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w, index = ctx.saved_tensors
        b, r, d = x.shape
        s = w.shape[1]
        need_x, need_w = ctx.needs_input_grad[:2]
        grad = grad.contiguous()
        grad_x = torch.empty_like(x) if need_x else None
        grad_w = torch.zeros_like(w) if need_w else None
        chunk = max(1, _CHUNK_VALUES // (r * s))
        buf = x.new_empty(min(chunk, b) * r, s)
        for i in range(0, b, chunk):
            c = min(chunk, b - i)
            g = buf[: c * r].view(c, r, s).zero_()
            g.scatter_(1, index[i : i + c, None, :], grad[i : i + c, None, :])
            g = g.view(c * r, s)
            if need_w:
                grad_w.addmm_(x[i : i + c].reshape(c * r, d).t(), g)
            if need_x:
                torch.mm(g, w.t(), out=grad_x[i : i + c].view(c * r, d))
        return grad_x, grad_w, None


class DbofModel(Head):
    """Deep Bag of Frames (YouTube-8M ``DbofModel``), see :class:`DbofConfig`.

    Forward: sample ``K = iterations`` frame indices per video -> ``(B*K, D)`` ->
    BN("input_bn") -> ``x @ cluster_weights (D, S)`` (init N(0, 1/sqrt(D))) -> BN("cluster_bn")
    -> activation -> ``(B, K, S)`` -> max / average over K -> ``@ hidden1_weights (S, H)``
    (init N(0, 1/sqrt(S))) -> BN("hidden1_bn") -> activation -> classifier. By default the
    sampled frames are folded (``fold_samples``) and the cluster layer, its batch norm, the
    activation and the max pool run fused (``fused_max_pool``): the same function, at the
    cost of the matrix products alone (``benchmarks/bench_heads.py``).

    Randomness: training draws indices from the global torch RNG (seed with
    ``torch.manual_seed``; the trainer checkpoints it). Output: ``predictions (B, C)`` (+
    ``logits`` when ``classifier="logistic"``).
    """

    name = "dbof"
    config_class = DbofConfig

    def __init__(self, config: DbofConfig | None = None) -> None:
        config = config or DbofConfig()
        super().__init__(config)
        if config.pooling_method not in ("max", "average"):
            raise ValueError(
                f"pooling_method must be 'max' or 'average': {config.pooling_method!r}"
            )
        if config.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}")
        if config.eval_sampling not in ("seeded", "random", "all"):
            raise ValueError("eval_sampling must be 'seeded', 'random' or 'all'")
        if config.iterations < 1:
            raise ValueError("iterations must be >= 1")
        d, s, h = config.feature_size, config.cluster_size, config.hidden_size
        self.act = _ACTIVATIONS[config.activation]
        # TF layout (in, out) so that original checkpoints map 1:1.
        self.cluster_weights = nn.Parameter(torch.randn(d, s) / math.sqrt(d))
        self.hidden1_weights = nn.Parameter(torch.randn(s, h) / math.sqrt(s))
        if config.add_batch_norm:
            kw = {"eps": config.bn_eps, "momentum": config.bn_momentum}
            self.input_bn = nn.BatchNorm1d(d, **kw)
            self.cluster_bn = nn.BatchNorm1d(s, **kw)
            self.hidden1_bn = nn.BatchNorm1d(h, **kw)
        else:
            self.cluster_biases = nn.Parameter(torch.randn(s) / math.sqrt(d))
            self.hidden1_biases = nn.Parameter(torch.randn(h) * 0.01)
        self.classifier = make_classifier(
            config.classifier, h, config.num_classes, config.num_mixtures, config.l2_penalty,
            config.output_bias_init,
        )  # fmt: skip

    # -- sampling ---------------------------------------------------------------------------

    def sample_indices(
        self, num_frames: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The ``(B, iterations)`` frame indices the model would pool over."""
        fn = sample_random_frames if self.config.sample_random_frames else sample_random_sequence
        return fn(num_frames, self.config.iterations, generator)

    def _eval_generator(self, device: torch.device) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(self.config.eval_seed)
        return g

    # -- batch norm with per-row weights ----------------------------------------------------

    def _bn(
        self, bn: nn.BatchNorm1d, x: torch.Tensor, w: torch.Tensor | None, n: int
    ) -> torch.Tensor:
        """Batch norm over the last axis. ``w``: weight of every row of ``x[..., :]`` (same
        leading shape, sums to 1) = its share of the ``n`` sampled rows; None = the plain
        ``nn.BatchNorm1d`` on the flattened rows (also in eval mode: moving statistics)."""
        if w is None or not self.training:
            shape = x.shape
            return bn(x.reshape(-1, shape[-1])).reshape(shape)
        # Weighted sums as matrix-vector products: no (rows, S) temporaries for them.
        flat, wf = x.reshape(-1, x.shape[-1]), w.reshape(-1)
        mean = wf @ flat
        centered = flat - mean
        var = wf @ centered.square()  # biased, used to normalise
        self._update_running(bn, mean, var, n)
        return torch.addcmul(bn.bias, centered, bn.weight * torch.rsqrt(var + bn.eps)).view_as(x)

    @staticmethod
    def _update_running(bn: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        """Moving averages as ``nn.BatchNorm1d``: the biased batch ``var`` of ``n`` sampled
        rows enters unbiased (``x n / (n - 1)``)."""
        with torch.no_grad():
            unbiased = var * (n / max(n - 1, 1))
            bn.running_mean.mul_(1.0 - bn.momentum).add_(mean.detach(), alpha=bn.momentum)
            bn.running_var.mul_(1.0 - bn.momentum).add_(unbiased.detach(), alpha=bn.momentum)
            bn.num_batches_tracked.add_(1)

    @staticmethod
    def _projected_stats(
        x: torch.Tensor, w: torch.Tensor | None, proj: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted mean and biased variance over the rows of ``x @ proj`` without forming it:
        ``mean = xbar @ proj``, ``var_s = proj[:, s] . (cov @ proj[:, s])`` with ``xbar`` and
        ``cov (D, D)`` the weighted mean and covariance of the rows of ``x (..., D)``. ``w``:
        the rows' weights (same leading shape, summing to 1); None = uniform. -> ``(S,)``
        twice."""
        flat = x.reshape(-1, x.shape[-1])
        if w is None:
            wf = flat.new_full((flat.shape[0],), 1.0 / flat.shape[0])
        else:
            wf = w.reshape(-1)
        xbar = wf @ flat
        centered = flat - xbar
        cov = (centered * wf[:, None]).t() @ centered
        var = ((cov @ proj) * proj).sum(dim=0).clamp(min=0.0)  # >= 0 up to rounding
        return xbar @ proj, var

    # -- forward ----------------------------------------------------------------------------

    def forward(self, frames: torch.Tensor, num_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """``frames (B, T, D)``, ``num_frames (B,)`` -> ``{"predictions": (B, C)}``."""
        cfg = self.config
        check_inputs(frames, num_frames, cfg.feature_size)
        if cfg.normalize_frames:
            frames = l2_normalize(frames)
        b, t, d = frames.shape
        k = cfg.iterations
        num_frames = num_frames.to(frames.device)
        if not self.training and cfg.eval_sampling == "all":
            # Every valid frame once (a 0-frame row uses its zero row 0, as the original).
            valid = frame_mask(num_frames.clamp(min=1), t)
            counts = valid.to(frames.dtype)
            return self._folded(frames, counts, None, 0)
        generator = None
        if not self.training and cfg.eval_sampling == "seeded":
            generator = self._eval_generator(frames.device)
        idx = self.sample_indices(num_frames, generator)
        if cfg.fold_samples and t <= k:
            counts = torch.zeros(b, t, device=frames.device, dtype=frames.dtype)
            counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=frames.dtype))
            return self._folded(frames, counts, counts / (b * k), b * k)
        x = torch.gather(frames, 1, idx[..., None].expand(b, k, d))
        ones = torch.ones(b, k, device=frames.device, dtype=frames.dtype)
        return self._folded(x, ones, None, b * k)

    def _folded(
        self, x: torch.Tensor, counts: torch.Tensor, bn_weights: torch.Tensor | None, n: int
    ) -> dict[str, torch.Tensor]:
        """Cluster layer on rows ``x (B, R, D)`` that occur ``counts (B, R)`` times (0 = not
        sampled); ``bn_weights`` = counts / n for training-mode batch norm over the ``n``
        sampled rows (None: the rows are the literal sample)."""
        cfg = self.config
        if cfg.add_batch_norm:
            x = self._bn(self.input_bn, x, bn_weights, n)
        if cfg.pooling_method == "max" and cfg.fused_max_pool:
            pooled = self._max_pooled_clusters(x, counts, bn_weights, n)
        else:
            a = x @ self.cluster_weights  # (B, R, S)
            if cfg.add_batch_norm:
                a = self._bn(self.cluster_bn, a, bn_weights, n)
            else:
                a = a + self.cluster_biases
            a = self.act(a)
            if cfg.pooling_method == "max":
                unused = counts == 0
                if bool(unused.any()):
                    a = a.masked_fill(unused[..., None], -math.inf)
                # max (one index per feature) has a cheaper backward than amax (spreads over
                # ties); ties here are duplicate rows or saturated units, where either is a
                # valid gradient.
                pooled = a.max(dim=1).values
            else:
                pooled = torch.einsum("brs,br->bs", a, counts) / counts.sum(dim=1, keepdim=True)
        h = pooled @ self.hidden1_weights
        if cfg.add_batch_norm:
            h = self.hidden1_bn(h)
        else:
            h = h + self.hidden1_biases
        return self.classifier(self.act(h))

    def _max_pooled_clusters(
        self, x: torch.Tensor, counts: torch.Tensor, bn_weights: torch.Tensor | None, n: int
    ) -> torch.Tensor:
        """``max_r act(cluster_bn(x[b, r] @ cluster_weights))`` over the rows with
        ``counts[b, r] > 0`` (``fused_max_pool``): ``x (B, R, D)`` (after the input batch
        norm) -> ``(B, S)``, without the ``(B, R, S)`` activations.

        Batch norm maps unit s to ``shift_s + scale_s * a`` and ``act`` is non-decreasing,
        so the max over rows of ``act(bn(a))`` is ``act(shift_s + scale_s * m)`` with ``m``
        the max of ``a`` over the rows (the min where ``scale_s < 0``: the max of ``-a``). The
        training-mode statistics of ``a`` come from the input's covariance
        (:meth:`_projected_stats`)."""
        cfg = self.config
        unused = counts == 0
        mask = unused if bool(unused.any()) else None
        if not cfg.add_batch_norm:
            top = _MaxOfProjection.apply(x, self.cluster_weights, mask)
            return self.act(top + self.cluster_biases)
        bn = self.cluster_bn
        if self.training:
            mean, var = self._projected_stats(x, bn_weights, self.cluster_weights)
            self._update_running(bn, mean, var, n)
        else:
            mean, var = bn.running_mean, bn.running_var
        scale = bn.weight * torch.rsqrt(var + bn.eps)
        shift = bn.bias - mean * scale
        sign = torch.where(scale.detach() < 0, -1.0, 1.0)  # order-reversing units pool -a
        top = _MaxOfProjection.apply(x, self.cluster_weights * sign, mask)  # sign * chosen a
        return self.act(torch.addcmul(shift, top, scale * sign))

    def regularization_loss(self) -> torch.Tensor:
        return self.classifier.regularization_loss()


# ------------------------------------------------------------------------------------------
# LstmModel


@dataclasses.dataclass
class LstmConfig(HeadConfig):
    """LstmModel: ``lstm_layers`` 2 x ``lstm_cells`` 1024 (``BasicLSTMCell``, forget bias 1.0),
    then the ``classifier`` ("moe" default, ``num_mixtures`` 2, ``l2_penalty`` 1e-8 on the
    classifier only). The YT8M README trains it with learning rate 0.001
    (``TrainConfig.for_head("lstm")``)."""

    lstm_cells: int = 1024
    lstm_layers: int = 2
    forget_bias: float = 1.0
    classifier: str = "moe"
    num_mixtures: int = 2
    l2_penalty: float = 1e-8
    normalize_frames: bool = True  # train.py L2-normalises every frame
    output_bias_init: float = 0.0  # classifier bias at init (0: the original; see video_level)


class LstmModel(Head):
    """Stacked LSTM over the frames; the top layer's hidden state at step ``num_frames - 1``
    (= TF's final state with ``sequence_length``) feeds the classifier.

    The LSTM runs over all T padded steps and the state at ``num_frames - 1`` is gathered: the
    LSTM is causal, so this equals a packed / ``sequence_length`` run exactly (and costs
    nothing extra for AudioSet, where almost every clip has all 10 frames). 0 frames -> the
    zero initial state, as TF.

    TF ``BasicLSTMCell`` mapping: one kernel ``(in + H, 4H)`` Glorot-uniform -> ``weight_ih``
    and ``weight_hh`` drawn with that same limit; its single zero-initialised bias ->
    ``bias_ih`` (trainable); the constant ``forget_bias`` -> ``bias_hh`` holding 1.0 in the
    forget-gate block and 0 elsewhere, frozen (``requires_grad=False``), so training dynamics
    equal the original's. Gate order differs (TF i, j, f, o; PyTorch i, f, g, o) - relevant
    only when converting weights. Output: ``predictions (B, C)``.
    """

    name = "lstm"
    config_class = LstmConfig

    def __init__(self, config: LstmConfig | None = None) -> None:
        config = config or LstmConfig()
        super().__init__(config)
        hsz = config.lstm_cells
        self.lstm = nn.LSTM(config.feature_size, hsz, num_layers=config.lstm_layers,
                            batch_first=True)  # fmt: skip
        for layer in range(config.lstm_layers):
            in_size = config.feature_size if layer == 0 else hsz
            for kind in ("ih", "hh"):
                w = getattr(self.lstm, f"weight_{kind}_l{layer}")
                glorot_uniform_(w, in_size + hsz, 4 * hsz)
            nn.init.zeros_(getattr(self.lstm, f"bias_ih_l{layer}"))
            bias_hh = getattr(self.lstm, f"bias_hh_l{layer}")
            with torch.no_grad():
                bias_hh.zero_()
                bias_hh[hsz : 2 * hsz] = config.forget_bias  # PyTorch order i, f, g, o
            bias_hh.requires_grad_(False)
        self.classifier = make_classifier(
            config.classifier, hsz, config.num_classes, config.num_mixtures, config.l2_penalty,
            config.output_bias_init,
        )  # fmt: skip

    def forward(self, frames: torch.Tensor, num_frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """``frames (B, T, D)``, ``num_frames (B,)`` -> ``{"predictions": (B, C)}``."""
        check_inputs(frames, num_frames, self.config.feature_size)
        if self.config.normalize_frames:
            frames = l2_normalize(frames)
        out, _ = self.lstm(frames)  # (B, T, H), top layer
        n = num_frames.to(frames.device).clamp(max=frames.shape[1])
        last = out.gather(1, (n - 1).clamp(min=0)[:, None, None].expand(-1, 1, out.shape[-1]))
        last = last[:, 0] * (n > 0).to(out.dtype)[:, None]
        return self.classifier(last)

    def regularization_loss(self) -> torch.Tensor:
        return self.classifier.regularization_loss()
