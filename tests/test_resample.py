"""The torch resampler against resampy 0.4.3 ``kaiser_best`` itself (a test dependency)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiorep.resample import (
    _phase0_fixups,
    _plan_is_small,
    kaiser_best_table,
    output_length,
    polyphase_plan,
    resample,
)

resampy = pytest.importorskip("resampy", reason="resampy is the reference; pip install resampy")

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 96000]


def _signals(sr: int, seconds: float = 1.3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(sr)
    n = int(sr * seconds) + 7  # not a multiple of any block size
    t = np.arange(n) / sr
    tone = 0.7 * np.sin(2 * np.pi * 997.0 * t) + 0.2 * np.sin(2 * np.pi * 7700.0 * t)
    return {"random": rng.uniform(-1, 1, n), "tonal": tone}


def test_filter_table_is_resampy_kaiser_best():
    import os

    path = os.path.join(os.path.dirname(resampy.__file__), "data", "kaiser_best.npz")
    with np.load(path) as d:
        np.testing.assert_allclose(kaiser_best_table(), d["half_window"], rtol=0, atol=1e-15)


@pytest.mark.parametrize("sr", RATES)
def test_matches_resampy_to_16k(sr):
    for name, x in _signals(sr).items():
        expected = resampy.resample(x, sr, 16000)
        got = resample(torch.from_numpy(x), sr, 16000).numpy()
        assert got.shape == expected.shape, name
        assert np.abs(got - expected).max() <= 1e-6, name


@pytest.mark.parametrize("sr_in,sr_out", [(16000, 44100), (48000, 22050), (40000, 22050)])
def test_other_rate_pairs(sr_in, sr_out):
    x = _signals(sr_in)["random"]
    np.testing.assert_allclose(
        resample(torch.from_numpy(x), sr_in, sr_out).numpy(),
        resampy.resample(x, sr_in, sr_out), atol=1e-6, rtol=0,
    )  # fmt: skip


def test_phase0_rounding_fixup_is_exercised_and_exact():
    # 40000 -> 22050: float64 t_j = j * (40000/22050) lands just below the integer for many j
    plan = polyphase_plan(40000, 22050)
    flipped, _ = _phase0_fixups(plan, 2000)
    assert flipped.size > 0
    x = np.random.default_rng(0).standard_normal(40000)
    got = resample(torch.from_numpy(x), 40000, 22050).numpy()
    assert np.abs(got - resampy.resample(x, 40000, 22050)).max() < 1e-9


@pytest.mark.parametrize("sr_in,sr_out", [(44101, 16000), (7999, 16000)])
def test_many_phase_pairs_use_direct_path_and_match(sr_in, sr_out):
    assert not _plan_is_small(sr_in, sr_out)
    x = np.random.default_rng(1).standard_normal(sr_in // 2)
    got = resample(torch.from_numpy(x), sr_in, sr_out).numpy()
    assert np.abs(got - resampy.resample(x, sr_in, sr_out)).max() < 1e-9


def test_output_length_matches_resampy():
    for n in (1000, 44099, 44100, 123457):
        assert output_length(n, 44100, 16000) == len(resampy.resample(np.zeros(n), 44100, 16000))


def test_batched_with_lengths_equals_each_item_alone():
    sr = 44100
    rng = np.random.default_rng(3)
    items = [rng.uniform(-1, 1, n) for n in (30000, 44100, 12345)]
    batch = torch.zeros(3, 44100, dtype=torch.float64)
    for i, x in enumerate(items):
        batch[i, : len(x)] = torch.from_numpy(x)
    out, out_lengths = resample(batch, sr, 16000, lengths=torch.tensor([len(x) for x in items]))
    for i, x in enumerate(items):
        expected = resampy.resample(x, sr, 16000)
        assert int(out_lengths[i]) == len(expected)
        assert np.abs(out[i, : len(expected)].numpy() - expected).max() <= 1e-6


def test_float32_and_leading_dims():
    x = _signals(48000)["tonal"]
    expected = resampy.resample(x, 48000, 16000)
    stacked = torch.from_numpy(np.stack([x, x]))[None].float()  # (1, 2, n)
    got = resample(stacked, 48000, 16000)
    assert got.dtype == torch.float32 and got.shape[:2] == (1, 2)
    assert np.abs(got[0, 1].double().numpy() - expected).max() < 1e-5


def test_differentiable():
    # fast_mode checks random projections of the Jacobian: far fewer evaluations than the
    # element-wise check, and still fails on any wrong gradient path.
    x = torch.randn(2, 2000, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(
        lambda v: resample(v, 44100, 16000), (x,), eps=1e-6, atol=1e-7, fast_mode=True
    )
    y = torch.randn(1, 300, dtype=torch.float64, requires_grad=True)  # full check, small input
    torch.autograd.gradcheck(lambda v: resample(v, 48000, 16000), (y,), eps=1e-6, atol=1e-7)


def test_bad_rates_raise():
    with pytest.raises(ValueError, match="positive integers"):
        resample(torch.zeros(100), 0, 16000)
    with pytest.raises(ValueError, match="positive integers"):
        resample(torch.zeros(100), 44100.5, 16000)
