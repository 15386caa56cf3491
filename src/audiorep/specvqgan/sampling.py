"""Autoregressive sampling of codec tokens with a key/value cache, token-identical to the authors.

The authors' samplers (specs: SpecVQGAN §3.5) re-run the whole sequence for every token: 265
forward passes over up to ``S + 264`` positions per clip. Here each token costs one position: the
condition and any primed tokens are fed once, then every sampled token is fed alone and attends to
the cached keys/values of everything before it. Causal attention makes the two computations equal
position by position (up to float32 summation order), so for the same seed the same tokens come
out — the tests check it against the authors' recorded tokens and against :func:`authors_loop`.

**Random draws, as the authors'.** Each step turns the last position's logits into
probabilities (``/ temperature``, top-k keeping ties with the k-th value, optional top-p,
softmax in float32) and calls ``torch.multinomial(probs, 1)`` once on the whole ``(B, V)``
batch, on a CPU generator, exactly as their loops do after ``torch.manual_seed(seed)``; nothing
else draws. A :class:`torch.Generator` seeded with ``seed`` gives the same stream as the global
one. Drawing on the CPU also when the model runs on a GPU keeps tokens reproducible across
devices. ``seeds=[...]`` instead gives every batch row its own generator, so a clip's tokens do
not depend on what else was in the batch (``audiorep generate`` uses this).

**Longer than 10 s** (``width_scale`` > 1, the authors' Streamlit "temporal scale"): the grid is
``H x (W * width_scale)``; the model sees a sliding ``H x W`` window whose first column is
``clamp(j - W // 2, 0, total_columns - W)`` for the column ``j`` being sampled, and the full
condition every step. The cache is rebuilt whenever the window moves (once per column in the
middle of a long clip), so the saving there is smaller than at 10 s.

**Priming** (``prime_tokens`` > 0, the authors' "half" mode): the first ``prime_tokens`` tokens
are copied from ``prime`` (ground-truth codes) and sampling starts after them (the authors use
``(53 // 2) * 5 = 130`` in their evaluation and 132 in their training-time logger).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional as F

from audiorep.specvqgan.transformer import CodeTransformer


class SamplingCancelled(RuntimeError):
    """Raised by :func:`sample_tokens` when its ``cancel`` event is set."""


@dataclass(frozen=True)
class SamplingSettings:
    """How to pick each token.

    Attributes:
        temperature: logits are divided by it (> 0).
        top_k: keep the k most likely tokens (ties with the k-th kept, as the authors); None: all.
        top_p: then keep the smallest set whose probability reaches p (nucleus); None: off.
        prime_tokens: copy this many ground-truth tokens first (needs ``prime``).
        width_scale: clip length in units of the model's 9.8 s window (>= 1).
        greedy: take the most likely token instead of drawing (no random numbers used).
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    prime_tokens: int = 0
    width_scale: int = 1
    greedy: bool = False

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive number, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.prime_tokens < 0:
            raise ValueError(f"prime_tokens must be >= 0, got {self.prime_tokens}")
        if int(self.width_scale) != self.width_scale or self.width_scale < 1:
            raise ValueError(f"width_scale must be a whole number >= 1, got {self.width_scale}")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StepEvent:
    """Progress of a sampling run, passed to ``on_step``.

    Attributes:
        step: index (sequence order) of the token just chosen.
        total: tokens in the clip.
        tokens: ``(B, step + 1)`` int64 tokens so far, sequence (column-major) order, CPU.
        attention: ``(B, H, L)`` float32 attention of the query that chose this token (last
            block, every head) over the ``L`` positions it saw (condition, then tokens of the
            current window), or None when not requested.
        condition_length: S, the condition positions at the start of ``attention``'s last axis.
        window_start: first grid column of the window the model saw.
        elapsed_s: seconds since sampling started.
    """

    step: int
    total: int
    tokens: torch.Tensor
    attention: torch.Tensor | None
    condition_length: int
    window_start: int
    elapsed_s: float


StepCallback = Callable[[StepEvent], None]


def filter_logits(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """``(B, V)`` logits -> temperature-scaled, top-k / top-p filtered logits (-inf outside)."""
    logits = logits / settings.temperature
    if settings.top_k is not None and settings.top_k < logits.shape[-1]:
        kth = torch.topk(logits, settings.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if settings.top_p is not None and settings.top_p < 1:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(ordered, dim=-1)
        # mass strictly before each token: drop a token once the kept ones already reach p
        before = torch.cumsum(probs, dim=-1) - probs
        drop = before >= settings.top_p
        drop[:, 0] = False
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def choose_tokens(
    logits: torch.Tensor,
    settings: SamplingSettings,
    generators: Sequence[torch.Generator] | torch.Generator | None,
) -> torch.Tensor:
    """``(B, V)`` last-position logits -> ``(B,)`` int64 tokens (CPU), one multinomial call per
    generator (module docstring)."""
    logits = filter_logits(logits.float(), settings)
    if settings.greedy:
        return torch.topk(logits, 1, dim=-1).indices[:, 0].cpu()
    probs = F.softmax(logits, dim=-1).cpu()
    if isinstance(generators, Sequence):
        rows = [
            torch.multinomial(probs[i : i + 1], 1, generator=g) for i, g in enumerate(generators)
        ]
        return torch.cat(rows)[:, 0]
    return torch.multinomial(probs, 1, generator=generators)[:, 0]


def _generators(
    batch: int, seed: int | None, seeds: Sequence[int] | None, generator: torch.Generator | None
) -> Sequence[torch.Generator] | torch.Generator | None:
    if seeds is not None:
        if len(seeds) != batch:
            raise ValueError(f"{len(seeds)} seeds for a batch of {batch}")
        return [torch.Generator().manual_seed(int(s)) for s in seeds]
    if generator is not None:
        return generator
    if seed is not None:
        return torch.Generator().manual_seed(int(seed))
    return None  # torch's global generator, as the authors' scripts


def _batch_condition(model: CodeTransformer, condition: Any, repeats: int) -> Any:
    condition = model.condition_to(condition)
    if repeats == 1:
        return condition
    if isinstance(condition, dict):
        return {k: v.repeat_interleave(repeats, dim=0) for k, v in condition.items()}
    return condition.repeat_interleave(repeats, dim=0)


def _condition_batch(condition: Any) -> int:
    first = condition["feature"] if isinstance(condition, dict) else condition
    return int(first.shape[0])


def _prepare(
    model: CodeTransformer,
    condition: Any,
    settings: SamplingSettings,
    num_samples: int,
    prime: torch.Tensor | None,
) -> tuple[Any, torch.Tensor, int, int]:
    cond = _batch_condition(model, condition, num_samples)
    batch = _condition_batch(cond)
    height, width = model.spec.grid
    total = height * width * settings.width_scale
    tokens = torch.zeros(batch, total, dtype=torch.long)
    start = settings.prime_tokens
    if start > total:
        raise ValueError(f"prime_tokens {start} > {total} tokens in the clip")
    if start:
        if prime is None:
            raise ValueError(f"prime_tokens={start} needs ground-truth tokens (prime)")
        prime = torch.as_tensor(prime, dtype=torch.long)
        if prime.dim() == 1:
            prime = prime[None]
        if num_samples > 1:
            prime = prime.repeat_interleave(num_samples, dim=0)
        if prime.shape[0] != batch or prime.shape[1] < start:
            raise ValueError(
                f"prime has shape {tuple(prime.shape)}; need ({batch}, >= {start}) tokens"
            )
        tokens[:, :start] = prime[:, :start].cpu()
    if model.transformer.condition_length(cond) == 0 and start == 0:
        raise ValueError("nothing to start from: the model has no condition and no prime tokens")
    return cond, tokens, total, start


def _window_start(column: int, window: int, columns: int) -> int:
    return min(max(0, column - window // 2), columns - window)


@torch.no_grad()
def sample_tokens(
    model: CodeTransformer,
    condition: Any,
    settings: SamplingSettings | None = None,
    *,
    seed: int | None = None,
    seeds: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    num_samples: int = 1,
    prime: torch.Tensor | None = None,
    on_step: StepCallback | None = None,
    every: int = 1,
    cancel: threading.Event | None = None,
) -> torch.Tensor:
    """Sample a clip's tokens with the KV cache.

    Args:
        model: the transformer (eval mode is set here; the condition must fit its kind).
        condition: features ``(B, D, S)``, class indices ``(B, 1)``, or both as a dict.
        settings: temperature, top-k/p, priming, length (:class:`SamplingSettings`).
        seed / seeds / generator: one generator for the batch (``seed`` or ``generator``; the
            authors' draw order), or one seed per row (``seeds``); none: torch's global one.
        num_samples: samples per condition row (rows are repeated, sample-major per row).
        prime: ``(B, >= prime_tokens)`` ground-truth tokens (sequence order).
        on_step: called after every ``every``-th token and the last one.
        cancel: set it from another thread to stop; raises :class:`SamplingCancelled`.

    Returns:
        ``(B * num_samples, 5 * 53 * width_scale)`` int64 tokens on the CPU, sequence order.
    """
    settings = settings or SamplingSettings()
    model.eval()
    gpt = model.transformer
    cond, tokens, total, start = _prepare(model, condition, settings, num_samples, prime)
    batch = tokens.shape[0]
    gens = _generators(batch, seed, seeds, generator)
    height, window = model.spec.grid
    columns = total // height
    s_len = gpt.condition_length(cond)
    t0 = time.perf_counter()
    device = model.device
    cache = None
    current_window = -1
    logits = None
    for step in range(start, total):
        if cancel is not None and cancel.is_set():
            raise SamplingCancelled(f"sampling cancelled at token {step} of {total}")
        column, band = divmod(step, height)
        w0 = _window_start(column, window, columns)
        local = (column - w0) * height + band
        report = on_step is not None and ((step - start) % every == 0 or step == total - 1)
        if w0 != current_window:
            # (Re)fill the cache: condition + this window's tokens before the current one.
            cache = gpt.new_cache(batch, s_len + height * window)
            fed = tokens[:, w0 * height : w0 * height + local].to(device)
            logits, att = gpt(fed, cond, cache=cache, need_attention=report)
            current_window = w0
        else:
            fed = tokens[:, step - 1 : step].to(device)
            logits, att = gpt(fed, None, cache=cache, need_attention=report)
        chosen = choose_tokens(logits[:, -1], settings, gens)
        tokens[:, step] = chosen
        if report:
            assert on_step is not None
            on_step(
                StepEvent(
                    step=step,
                    total=total,
                    tokens=tokens[:, : step + 1].clone(),
                    attention=None if att is None else att[:, :, -1].float().cpu(),
                    condition_length=s_len,
                    window_start=w0,
                    elapsed_s=time.perf_counter() - t0,
                )
            )
    return tokens


@torch.no_grad()
def authors_loop(
    model: CodeTransformer,
    condition: Any,
    settings: SamplingSettings | None = None,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    prime: torch.Tensor | None = None,
) -> torch.Tensor:
    """The authors' sampler, for reference and benchmarks: no cache; every step runs the model on
    the whole current window (the 265-token buffer minus its last token, zeros ahead of the
    current position) with the full condition, and reads the logits of the current position
    (their ``generate_samples.py`` and Streamlit loops). Same settings and draws as
    :func:`sample_tokens`; ``num_samples`` 1."""
    settings = settings or SamplingSettings()
    model.eval()
    gpt = model.transformer
    cond, tokens, total, start = _prepare(model, condition, settings, 1, prime)
    gens = _generators(tokens.shape[0], seed, None, generator)
    height, window = model.spec.grid
    columns = total // height
    n = height * window
    for step in range(start, total):
        column, band = divmod(step, height)
        w0 = _window_start(column, window, columns)
        local = (column - w0) * height + band
        patch = tokens[:, w0 * height : w0 * height + n].to(model.device)
        logits, _ = gpt(patch[:, :-1], cond)
        tokens[:, step] = choose_tokens(logits[:, -n:][:, local], settings, gens)
    return tokens


__all__ = [
    "SamplingCancelled",
    "SamplingSettings",
    "StepCallback",
    "StepEvent",
    "authors_loop",
    "choose_tokens",
    "filter_logits",
    "sample_tokens",
]
