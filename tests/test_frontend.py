"""Frontend behaviour beyond the golden cases: layouts, short inputs, gradients, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiorep.frontends.vggish import (
    VGGishFrontend,
    example_timestamps,
    num_examples_for,
    waveform_to_examples,
)


@pytest.mark.parametrize(
    "n,expected",
    [(239, 0), (240, 0), (15359, 0), (15360, 0), (15599, 0), (15600, 1), (30959, 1),
     (30960, 2), (46080, 2), (46320, 3), (480000, 31)],
)  # fmt: skip
def test_example_count_rule(n, expected):
    assert num_examples_for(n) == expected == max(0, (n - 240) // 15360)
    if n >= 240:
        assert waveform_to_examples(np.zeros(n), 16000).shape[0] == expected


def test_accepts_numpy_torch_int16_and_channels_first():
    rng = np.random.default_rng(0)
    mono = rng.uniform(-0.5, 0.5, 20000)
    ref = waveform_to_examples(mono, 16000)
    np.testing.assert_array_equal(waveform_to_examples(torch.from_numpy(mono), 16000), ref)
    stereo = np.stack([mono, mono])
    np.testing.assert_allclose(waveform_to_examples(stereo, 16000), ref, atol=1e-12)
    as_int16 = (mono * 32767).astype(np.int16)
    scaled = as_int16.astype(np.float64) / 32768.0
    np.testing.assert_array_equal(
        waveform_to_examples(as_int16, 16000), waveform_to_examples(scaled, 16000)
    )


def test_transposed_stereo_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match=r"\(samples, channels\).*waveform\.T"):
        waveform_to_examples(np.zeros((20000, 2)), 16000)


def test_too_short_warns_and_returns_empty():
    with pytest.warns(UserWarning, match="too short"):
        out = waveform_to_examples(np.zeros(100), 16000)
    assert out.shape == (0, 96, 64)
    # 44.1 kHz: 661 samples -> int(661 * 16000 / 44100) = 239 < 240
    with pytest.warns(UserWarning):
        assert waveform_to_examples(np.zeros(661), 44100).shape == (0, 96, 64)


def test_silence_gives_log_offset():
    out = waveform_to_examples(np.zeros(16000), 16000)
    np.testing.assert_allclose(out.numpy(), np.log(0.01), rtol=0, atol=1e-12)


def test_batched_module_counts_and_differentiability():
    frontend = VGGishFrontend()
    wave = (torch.randn(2, 40000, dtype=torch.float64) * 0.1).requires_grad_(True)
    lengths = torch.tensor([40000, 20000])
    examples, counts = frontend(wave, 22050, lengths)
    assert counts.tolist() == [num_examples_for(int(40000 * 16000 / 22050)),
                               num_examples_for(int(20000 * 16000 / 22050))]  # fmt: skip
    assert examples.shape == (int(counts.sum()), 96, 64)
    examples.sum().backward()
    assert wave.grad is not None and torch.isfinite(wave.grad).all()
    assert wave.grad[1, 20000:].abs().max() == 0  # padding does not influence anything


def test_gradcheck_small_float64():
    frontend = VGGishFrontend()
    wave = (torch.randn(1, 15600, dtype=torch.float64) * 0.1).requires_grad_(True)

    def f(w):
        ex, _ = frontend(w, 16000)
        return ex[:, :3, :4]  # a few outputs keep finite differences affordable

    torch.autograd.gradcheck(f, (wave,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_timestamps():
    np.testing.assert_allclose(example_timestamps(3), [0.0, 0.96, 1.92])
    assert example_timestamps(0).shape == (0,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    x = np.random.default_rng(0).uniform(-1, 1, 44100 * 3)
    cpu = waveform_to_examples(x, 44100)
    gpu = waveform_to_examples(x, 44100, device="cuda")
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-9)


def test_gradients_after_an_inference_mode_call():
    """The cached frontend must not hold inference tensors, whichever call came first (bundles
    embed under inference_mode; a DFL training step then needs gradients)."""
    from audiorep.frontends import vggish as frontend

    frontend._frontend_for.cache_clear()
    with torch.inference_mode():
        frontend.waveform_to_examples(torch.zeros(16000, dtype=torch.float64), 16000)
    x = (0.1 * torch.randn(16000, dtype=torch.float64)).requires_grad_()
    frontend.waveform_to_examples(x, 16000).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
