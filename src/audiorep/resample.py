"""Band-limited resampling identical to resampy 0.4.3 ``kaiser_best``, in torch.

The VGGish reference resamples with ``resampy.resample(x, sr, 16000)``; a different resampler
moves log-mel values by up to ~2 near 8 kHz, so a parity port must reproduce resampy's
algorithm, including its quirks:

* the filter is a half window of 50 zero crossings x 8192 table entries: a Kaiser-windowed sinc
  (beta 12.98458524704, roll-off 0.91734737126). We rebuild it from those two numbers with
  NumPy (max deviation from resampy's shipped table: 3.3e-16);
* when downsampling the table is scaled by the ratio, and the table stride per input sample is
  ``int(ratio * 8192)`` (truncated, so tap positions drift slightly from the ideal ones);
* each output time ``t_j = j * (sr_in / sr_out)`` is a float64 product; weights interpolate the
  table linearly between entries;
* output length ``int(n * sr_out / sr_in)``; samples outside the signal count as zero.

For integer rates the pattern of fractional offsets repeats every ``L = sr_out / g`` outputs
(``g = gcd``), during which the input advances ``M = sr_in / g`` samples. We precompute the
weights of those ``L`` phases once per rate pair as a dense ``(L, R)`` matrix over a window of
``R`` input samples, and resample by matrix-multiplying overlapping input blocks (stride ``M``)
with it: vectorised, batched, on any device and differentiable. The one place where float64
``t_j`` differs from exact arithmetic in a way that matters (phase 0, where ``t_j`` should be an
integer but may round just below it) is corrected per output exactly as resampy computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

#: resampy 0.4.3 ``kaiser_best`` parameters (recovered from its shipped table to 3.3e-16).
KAISER_BEST_BETA = 12.984585247040012
KAISER_BEST_ROLLOFF = 0.9173473712608761
KAISER_BEST_ZEROS = 50
KAISER_BEST_PRECISION = 8192  # table entries per zero crossing

# Input blocks per matmul: bounds the temporary copy to ~block_rows x R values.
_BLOCK_ROWS = 8192
# Rate pairs whose polyphase matrix would exceed this many entries (e.g. 44101 -> 16000,
# L = 16000 phases) are resampled output by output instead (_resample_direct).
_MAX_PLAN_ENTRIES = 1 << 22
_DIRECT_CHUNK = 4096


@lru_cache(maxsize=1)
def kaiser_best_table() -> np.ndarray:
    """resampy's ``kaiser_best`` half window, float64 ``(409601,)``."""
    n = KAISER_BEST_PRECISION * KAISER_BEST_ZEROS
    r = KAISER_BEST_ROLLOFF
    sinc = r * np.sinc(r * np.linspace(0.0, KAISER_BEST_ZEROS, num=n + 1, endpoint=True))
    taper = np.kaiser(2 * n + 1, KAISER_BEST_BETA)[n:]
    return taper * sinc


def output_length(num_samples: int, sr_in: int, sr_out: int) -> int:
    """Number of output samples for ``num_samples`` inputs, as resampy >= 0.4.1 computes it."""
    if sr_in == sr_out:
        return int(num_samples)
    return int(num_samples * float(sr_out) / float(sr_in))


def _wing(table, delta, frac, step, nwin, precision):
    """Weights of one filter wing for fractional offset ``frac`` (resampy's inner loop)."""
    index_frac = frac * precision
    offset = int(index_frac)
    eta = index_frac - offset
    count = (nwin - offset) // step
    idx = offset + step * np.arange(count)
    return table[idx] + eta * delta[idx]


def _phase_taps(frac_left, table, delta, scale, step, nwin, precision):
    """Left weights (for x[n], x[n-1], ...) and right weights (for x[n+1], x[n+2], ...)."""
    left = _wing(table, delta, frac_left, step, nwin, precision)
    right = _wing(table, delta, scale - frac_left, step, nwin, precision)
    return left, right


@dataclass(frozen=True)
class PolyphasePlan:
    """Precomputed resampling weights for one ``(sr_in, sr_out)`` pair.

    ``weights[p, r]`` multiplies input sample ``q * M + first + r`` for output ``q * L + p``.
    ``phase0_*`` describe the alternative phase-0 row used where float64 ``t_j`` falls just
    below the integer ``q * M`` (resampy then uses ``n = q * M - 1``).
    """

    sr_in: int
    sr_out: int
    up: int  # L
    down: int  # M
    first: int  # offset of the window start relative to q * M (<= 0)
    weights: np.ndarray  # (L, R) float64
    time_increment: float
    scale: float

    @property
    def width(self) -> int:
        return self.weights.shape[1]


def _scaled_table(ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The (ratio-scaled when downsampling) table and its forward difference."""
    table = kaiser_best_table()
    if ratio < 1:
        table = ratio * table
    return table, np.diff(table, append=table[-1])


def _plan_is_small(sr_in: int, sr_out: int) -> bool:
    g = math.gcd(int(sr_in), int(sr_out))
    up, down = sr_out // g, sr_in // g
    ratio = sr_out / sr_in
    taps = 2 * (KAISER_BEST_ZEROS * KAISER_BEST_PRECISION // int(min(1.0, ratio) * 8192) + 1)
    return up * (down + taps) <= _MAX_PLAN_ENTRIES


def _check_rates(sr_in, sr_out) -> None:
    if sr_in <= 0 or sr_out <= 0 or int(sr_in) != sr_in or int(sr_out) != sr_out:
        raise ValueError(f"sample rates must be positive integers, got {sr_in} -> {sr_out}")


@lru_cache(maxsize=32)
def polyphase_plan(sr_in: int, sr_out: int) -> PolyphasePlan:
    """Build (and cache) the polyphase weight matrix for ``sr_in -> sr_out`` (integer Hz)."""
    _check_rates(sr_in, sr_out)
    g = math.gcd(int(sr_in), int(sr_out))
    up, down = sr_out // g, sr_in // g
    ratio = float(sr_out) / sr_in
    table, delta = _scaled_table(ratio)
    scale = min(1.0, ratio)
    precision = KAISER_BEST_PRECISION
    step = int(scale * precision)
    nwin = table.shape[0]

    rows = []
    lo, hi = 0, 0
    for p in range(up):
        base, rem = divmod(p * down, up)
        left, right = _phase_taps(scale * (rem / up), table, delta, scale, step, nwin, precision)
        rows.append((base, left, right))
        lo = min(lo, base - len(left) + 1)
        hi = max(hi, base + len(right))
    weights = np.zeros((up, hi - lo + 1))
    for p, (base, left, right) in enumerate(rows):
        # left[i] multiplies x[base - i]; right[k] multiplies x[base + 1 + k]
        weights[p, base - lo - np.arange(len(left))] += left
        weights[p, base + 1 - lo : base + 1 - lo + len(right)] += right
    return PolyphasePlan(
        sr_in=int(sr_in),
        sr_out=int(sr_out),
        up=up,
        down=down,
        first=lo,
        weights=weights,
        time_increment=1.0 / ratio,
        scale=scale,
    )


def _phase0_fixups(
    plan: PolyphasePlan, q_stop: int, q_start: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Blocks in ``[q_start, q_stop)`` whose phase-0 output resampy computes from
    ``n = q*M - 1``, and their weights.

    Returns ``(block_indices (K,) relative to q_start, weights (K, R))`` in the plan's window
    coordinates. Which blocks flip depends on the absolute block index (float64 rounding of
    ``t_j``), so streamed ranges must pass their true ``q_start``.
    """
    q = np.arange(q_start, q_stop)
    t = (q * plan.up).astype(np.float64) * plan.time_increment  # resampy's float64 t_j
    flipped = np.nonzero(np.floor(t) < q * plan.down)[0]
    if flipped.size == 0:
        return flipped, np.zeros((0, plan.width))
    table, delta = _scaled_table(plan.sr_out / plan.sr_in)
    step = int(plan.scale * KAISER_BEST_PRECISION)
    out = np.zeros((flipped.size, plan.width))
    for row, qi in enumerate(q[flipped]):
        n = int(t[qi - q_start])
        left, right = _phase_taps(
            plan.scale * (t[qi - q_start] - n), table, delta, plan.scale, step, table.shape[0],
            KAISER_BEST_PRECISION,
        )  # fmt: skip
        base = n - int(qi) * plan.down  # = -1
        li = base - plan.first - np.arange(len(left))
        ri = base + 1 - plan.first + np.arange(len(right))
        keep_l, keep_r = li >= 0, (ri >= 0) & (ri < plan.width)
        out[row, li[keep_l]] += left[keep_l]
        out[row, ri[keep_r]] += right[keep_r]
    return flipped, out


def input_range(sr_in: int, sr_out: int, out_start: int, out_stop: int) -> tuple[int, int]:
    """Input samples ``[a, b)`` that outputs ``[out_start, out_stop)`` read (may exceed the
    signal; samples outside it count as zero)."""
    if sr_in == sr_out:
        return out_start, out_stop
    if not _plan_is_small(int(sr_in), int(sr_out)):
        half = KAISER_BEST_ZEROS * max(1.0, sr_in / sr_out) + 2
        a = int(math.floor(out_start * sr_in / sr_out - half))
        return a, int(math.ceil((out_stop - 1) * sr_in / sr_out + half)) + 1
    plan = polyphase_plan(int(sr_in), int(sr_out))
    q0, q1 = out_start // plan.up, -(-out_stop // plan.up)
    return q0 * plan.down + plan.first, (q1 - 1) * plan.down + plan.first + plan.width


def resample_range(
    segment: torch.Tensor,
    segment_start: int,
    num_samples: int,
    sr_in: int,
    sr_out: int,
    out_start: int,
    out_stop: int,
) -> torch.Tensor:
    """Outputs ``[out_start, out_stop)`` of ``resample(x, sr_in, sr_out)`` from part of ``x``.

    Args:
        segment: ``(..., m)`` the samples ``x[segment_start : segment_start + m]``; it must
            cover :func:`input_range` clipped to ``[0, num_samples)``.
        segment_start: index of ``segment[..., 0]`` in the whole signal.
        num_samples: length of the whole signal (samples past it are zero, as in resampy).

    Used to resample long files chunk by chunk in bounded memory; the values equal those of
    the whole-signal call (same weights, same absolute phases) up to summation order.
    """
    _check_rates(sr_in, sr_out)
    a, b = input_range(sr_in, sr_out, out_start, out_stop)
    lo, hi = max(a, 0), min(b, num_samples)
    if lo < segment_start or hi > segment_start + segment.shape[-1]:
        raise ValueError(
            f"segment [{segment_start}, {segment_start + segment.shape[-1]}) does not cover "
            f"input [{lo}, {hi}) needed for outputs [{out_start}, {out_stop})"
        )
    part = segment[..., lo - segment_start : hi - segment_start]
    x = torch.nn.functional.pad(part, (lo - a, b - hi))  # the zeros resampy assumes
    if sr_in == sr_out:
        return x.clone()
    if not _plan_is_small(int(sr_in), int(sr_out)):
        lead = x.shape[:-1]
        y = _resample_direct(x.reshape(-1, x.shape[-1]), int(sr_in), int(sr_out),
                             out_stop - out_start, j_start=out_start, x_start=a)  # fmt: skip
        return y.reshape(*lead, -1)
    plan = polyphase_plan(int(sr_in), int(sr_out))
    q0, q1 = out_start // plan.up, -(-out_stop // plan.up)
    y = _polyphase_blocks(x, plan, q0, q1)
    return y[..., out_start - q0 * plan.up : out_stop - q0 * plan.up]


#: Outputs per matmul row at least this many: rate pairs with few phases (48 -> 16 kHz has one)
#: are grouped so that each strided input window feeds many outputs, instead of copying a
#: ~300-sample window per output sample.
_MIN_OUTPUTS_PER_ROW = 64


@lru_cache(maxsize=32)
def _grouped_weights(sr_in: int, sr_out: int, group: int) -> np.ndarray:
    """``(R + (G-1) M, G L)``: ``G`` consecutive blocks' weights as one wider block."""
    plan = polyphase_plan(sr_in, sr_out)
    width = plan.width + (group - 1) * plan.down
    out = np.zeros((width, group * plan.up))
    for g in range(group):
        out[g * plan.down : g * plan.down + plan.width, g * plan.up : (g + 1) * plan.up] = (
            plan.weights.T
        )
    return out  # cached: callers must not modify it


def _polyphase_blocks(xp: torch.Tensor, plan: PolyphasePlan, q0: int, q1: int) -> torch.Tensor:
    """Output blocks ``[q0, q1)`` from ``xp`` = input ``[q0*M + first, (q1-1)*M + first + R)``
    (zero-filled outside the signal): ``(..., (q1 - q0) * L)``."""
    lead = xp.shape[:-1]
    x = xp.reshape(-1, xp.shape[-1])
    num = q1 - q0
    group = max(1, -(-_MIN_OUTPUTS_PER_ROW // plan.up))
    rows = -(-num // group)  # super-blocks of `group` blocks
    y = x.new_empty((x.shape[0], rows * group, plan.up))
    if num > 0:
        w = torch.as_tensor(
            _grouped_weights(plan.sr_in, plan.sr_out, group), dtype=x.dtype, device=x.device
        )
        need = (rows * group - 1) * plan.down + plan.width
        xg = torch.nn.functional.pad(x, (0, max(0, need - x.shape[-1])))  # discarded outputs
        supers = xg.unfold(-1, w.shape[0], group * plan.down)  # (B, rows', R') strided view
        flat = y.view(x.shape[0], rows, group * plan.up)
        for start in range(0, rows, _BLOCK_ROWS):
            stop = min(rows, start + _BLOCK_ROWS)
            flat[:, start:stop] = supers[:, start:stop] @ w
        fix_q, fix_w = _phase0_fixups(plan, q1, q0)
        if fix_q.size:
            blocks = x.unfold(-1, plan.width, plan.down)
            fq = torch.as_tensor(fix_q, device=x.device)
            fw = torch.as_tensor(fix_w, dtype=x.dtype, device=x.device)
            y[:, fq, 0] = (blocks[:, fq] * fw).sum(-1)
    return y[:, :num].reshape(*lead, num * plan.up)


def resample(
    waveform: torch.Tensor,
    sr_in: int,
    sr_out: int,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Resample like ``resampy.resample(x, sr_in, sr_out)`` (filter ``kaiser_best``).

    Args:
        waveform: ``(..., samples)`` real tensor on any device; the last axis is time.
            Computation runs in the input's floating dtype (float64 reproduces resampy to
            ~1e-15 for float64 input; float32 is faster and within ~1e-6).
        sr_in, sr_out: integer sample rates in Hz.
        lengths: optional ``(batch,)`` valid lengths of a zero-padded ``(batch, samples)``
            batch. Padding beyond each length must be zero (resampy treats samples outside
            the signal as zero, so each item then resamples exactly as on its own).

    Returns:
        ``(..., int(samples * sr_out / sr_in))``; with ``lengths``, also the output lengths.
        Differentiable with respect to ``waveform``.
    """
    _check_rates(sr_in, sr_out)
    if not torch.is_floating_point(waveform):
        waveform = waveform.to(torch.float32)
    n = waveform.shape[-1]
    n_out = output_length(n, sr_in, sr_out)
    out_lengths = None
    if lengths is not None:
        out_lengths = torch.tensor(
            [output_length(int(k), sr_in, sr_out) for k in lengths.tolist()],
            dtype=torch.long,
        )
    if sr_in == sr_out:
        y = waveform.clone()
        return (y, out_lengths) if lengths is not None else y
    lead = waveform.shape[:-1]
    x = waveform.reshape(-1, n)
    if not _plan_is_small(int(sr_in), int(sr_out)):
        y = _resample_direct(x, int(sr_in), int(sr_out), n_out).reshape(*lead, n_out)
        return (y, out_lengths) if lengths is not None else y
    plan = polyphase_plan(int(sr_in), int(sr_out))
    num_blocks = -(-n_out // plan.up)
    # zero-pad so that block q covers padded[q*M : q*M + R]
    pad_left = -plan.first
    total = (num_blocks - 1) * plan.down + plan.width if num_blocks > 0 else 0
    pad_right = max(0, total - pad_left - n)
    xp = torch.nn.functional.pad(x, (pad_left, pad_right))
    y = _polyphase_blocks(xp, plan, 0, num_blocks)
    y = y[:, :n_out].reshape(*lead, n_out)
    return (y, out_lengths) if lengths is not None else y


def _wing_gather(frac: np.ndarray, table, delta, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output wing weights ``(C, K)`` and which of them resampy uses."""
    nwin = table.shape[0]
    index_frac = frac * KAISER_BEST_PRECISION
    offset = index_frac.astype(np.int64)
    eta = index_frac - offset
    k = np.arange(nwin // step + 1)
    idx = offset[:, None] + step * k[None, :]
    # resampy's tap count, (nwin - offset) // step, can leave out the last in-table entry
    valid = k[None, :] < ((nwin - offset) // step)[:, None]
    idx = np.where(valid, idx, 0)
    return np.where(valid, table[idx] + eta[:, None] * delta[idx], 0.0), valid


def _resample_direct(
    x: torch.Tensor, sr_in: int, sr_out: int, n_out: int, j_start: int = 0, x_start: int = 0
) -> torch.Tensor:
    """Output-by-output resampling with resampy's own float64 time arithmetic.

    Used for rate pairs with thousands of phases, where a polyphase matrix would be huge.
    ``x``: ``(B, n)`` holding input samples from index ``x_start`` (zeros outside it) ->
    outputs ``[j_start, j_start + n_out)`` ``(B, n_out)``.
    """
    ratio = float(sr_out) / sr_in
    table, delta = _scaled_table(ratio)
    scale = min(1.0, ratio)
    step = int(scale * KAISER_BEST_PRECISION)
    n = x.shape[-1]
    out = x.new_zeros((x.shape[0], n_out))
    for j0 in range(0, n_out, _DIRECT_CHUNK):
        t = np.arange(j_start + j0, j_start + min(n_out, j0 + _DIRECT_CHUNK)) * (1.0 / ratio)
        base = t.astype(np.int64) - x_start
        frac = scale * (t - (base + x_start))
        acc = None
        for wing, weights_valid in (
            (-1, _wing_gather(frac, table, delta, step)),
            (+1, _wing_gather(scale - frac, table, delta, step)),
        ):
            w, valid = weights_valid
            k = np.arange(w.shape[1])
            src = base[:, None] - k if wing < 0 else base[:, None] + 1 + k
            valid &= (src >= 0) & (src < n)
            w = np.where(valid, w, 0.0)
            src = np.where(valid, src, 0)
            gathered = x[:, torch.from_numpy(src).to(x.device)]  # (B, C, K)
            part = (gathered * torch.from_numpy(w).to(x.device, x.dtype)).sum(-1)
            acc = part if acc is None else acc + part
        out[:, j0 : j0 + len(t)] = acc
    return out
