"""SpecVQGAN's 22.05 kHz mel front end vs the authors' outputs (tests/fixtures/specvqgan_mel)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from audiorep.audio import load
from audiorep.frontends import specvqgan as sv
from numerics import EPS32

pytestmark = pytest.mark.numeric

FIXTURES = Path(__file__).parent / "fixtures" / "specvqgan_mel"
CLIPS = ("noise", "silence", "speech_long", "speech_short", "sweep", "tones")
NATIVE = ("silence", "speech_short", "tones")

# The mels lie in [0, 1] and the reference rounds to float32 along the way: a complex64
# spectrum, a 513-term float32 mel sum (relative error ~sqrt(513) * eps32, turned into
# 0.2 / ln(10) = 0.087 per unit of relative error by the 20 log10 / 100 mapping) and float32 dB
# arithmetic on values up to 100 dB (~4 eps32 after the / 100). That is ~7e-7; x4 for the
# largest of 68 800 values (numerics.SAFETY) gives ~3e-6 < 1e-5 (the fixture set's suggestion).
# We compute in float64 (measured max deviation 1.2e-7). Real errors are much larger: zero
# instead of reflect padding moves columns 0-1 by up to 0.1.
ATOL = 1e-5
assert 4 * (0.2 / np.log(10) * np.sqrt(513) + 4) * EPS32 < ATOL


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected_mels.npz") as data:
        return {k: data[k] for k in data.files}


def wav(name: str) -> torch.Tensor:
    waveform, sr = load(FIXTURES / f"{name}.wav", mono=True)
    assert sr == sv.SAMPLE_RATE
    return waveform


def numpy_mel(y: np.ndarray, pad_mode: str, frames: int = sv.SPEC_FRAMES) -> np.ndarray:
    """An independent NumPy rendering of the pipeline with a choice of STFT padding."""
    y = np.pad(y.astype(np.float64), (0, max(0, sv.CLIP_SAMPLES - y.size)))[: sv.CLIP_SAMPLES]
    y = np.pad(y, sv.N_FFT // 2, mode=pad_mode)
    starts = np.arange(frames) * sv.HOP_LENGTH
    framed = y[starts[:, None] + np.arange(sv.N_FFT)[None, :]]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(sv.N_FFT) / sv.N_FFT)
    mel = sv.mel_basis().astype(np.float64) @ np.abs(np.fft.rfft(framed * window, axis=-1)).T
    return np.clip((20 * np.log10(np.maximum(mel, 1e-5)) - 20 + 100) / 100, 0, 1)


@pytest.mark.parametrize("name", CLIPS)
def test_dataset_path_matches_reference(name, expected):
    out = sv.mel_spectrogram(wav(name))
    assert out.shape == (80, 860) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected[f"mel_{name}"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", NATIVE)
def test_native_width_matches_reference(name, expected):
    x = wav(name)
    out = sv.mel_spectrogram(x, length=None)
    assert out.shape == (80, 1 + x.shape[-1] // 256)
    np.testing.assert_allclose(out.numpy(), expected[f"melnative_{name}"], rtol=0, atol=ATOL)


def test_native_width_of_a_long_clip(expected):
    x = wav("speech_long")  # 304 485 samples
    full = sv.mel_spectrogram(x, length=None, max_frames=None)
    assert full.shape == (80, 1 + 304485 // 256)
    trimmed = sv.mel_spectrogram(x, length=None)  # the reference always keeps <= 860 frames
    assert trimmed.shape == (80, 860)
    assert torch.equal(trimmed, full[:, :860])
    # Frame 859 ends 84 samples before the 10 s cut, so truncating first changes nothing.
    np.testing.assert_allclose(trimmed.numpy(), expected["mel_speech_long"], rtol=0, atol=ATOL)


def test_zero_padding_would_fail(expected):
    """The reference pads the STFT by reflection; zero padding (librosa >= 0.10) is caught."""
    for name in ("noise", "speech_long", "sweep"):
        y = wav(name).numpy()
        ref = expected[f"mel_{name}"]
        reflect = numpy_mel(y, "reflect")
        np.testing.assert_allclose(reflect, ref, rtol=0, atol=ATOL)  # the NumPy rendering is right
        zeros = numpy_mel(y, "constant")
        assert np.abs(zeros[:, :2] - ref[:, :2]).max() > 1e-3
        np.testing.assert_allclose(zeros[:, 2:], ref[:, 2:], rtol=0, atol=ATOL)  # only 0-1 move


def test_reflect_indices_match_numpy_pad():
    for n in (1, 2, 3, 5, 100, 511, 512, 513, 2000):
        for pad in (0, 1, 2, 7, 512):
            a = np.arange(n)
            np.testing.assert_array_equal(sv.reflect_indices(n, pad), np.pad(a, pad, "reflect"))


@pytest.mark.parametrize("n", [1, 300, 512, 513, 1500])
def test_short_clips_either_side_of_the_padding(n):
    """Up to 512 samples the reflection wraps around (index path), above it torch's reflect
    padding is used: both must equal numpy.pad(mode='reflect')."""
    x = torch.linspace(-0.5, 0.5, n, dtype=torch.float64) ** 3 + 0.01
    out = sv.mel_spectrogram(x, length=None)
    frames = 1 + n // 256
    assert out.shape == (80, frames)
    y = np.pad(x.numpy(), 512, mode="reflect")
    framed = np.stack([y[256 * t : 256 * t + 1024] for t in range(frames)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    mel = sv.mel_basis().astype(np.float64) @ np.abs(np.fft.rfft(framed * window)).T
    ref = np.clip((20 * np.log10(np.maximum(mel, 1e-5)) + 80) / 100, 0, 1)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-12)


def test_batch_equals_per_clip():
    names = ("noise", "speech_short", "tones", "sweep", "silence", "speech_long")
    clips = [sv.tile_to_length(wav(n), sv.CLIP_SAMPLES) for n in names]
    batch = torch.stack(clips).reshape(2, 3, -1)
    out = sv.mel_spectrogram(batch)
    assert out.shape == (2, 3, 80, 860)
    assert sv.mel_spectrogram(torch.zeros(0, 4, 1000)).shape == (0, 4, 80, 860)
    for k, clip in enumerate(clips):
        # float64 arithmetic then one rounding to float32: another BLAS blocking can move a
        # value by at most one float32 ulp (<= 6e-8 in [0, 1]).
        single = sv.mel_spectrogram(clip)
        np.testing.assert_allclose(out.reshape(6, 80, 860)[k], single, rtol=0, atol=EPS32)


def test_dtypes(expected):
    x = wav("speech_short")
    out32 = sv.mel_spectrogram(x)
    out64 = sv.mel_spectrogram(x.double())
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    np.testing.assert_allclose(out64.numpy(), expected["mel_speech_short"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(out32.double(), out64, rtol=0, atol=EPS32)
    assert sv.mel_spectrogram(x.half()).dtype == torch.float32
    assert sv.mel_spectrogram(x.numpy()).dtype == torch.float32  # NumPy input is accepted
    with pytest.raises(TypeError, match="floating"):
        sv.mel_spectrogram(torch.zeros(1000, dtype=torch.int16))


def test_float32_computation_is_close(expected):
    # A true float32 FFT: documented as up to ~1e-4 off in quiet bands next to loud ones
    # (measured 6.8e-5 on the sweep); a loose bound that still catches a wrong pipeline.
    for name in ("noise", "speech_short", "sweep"):
        out = sv.mel_spectrogram(wav(name), compute_dtype=torch.float32)
        np.testing.assert_allclose(out.numpy(), expected[f"mel_{name}"], rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="compute_dtype"):
        sv.mel_spectrogram(wav("tones"), compute_dtype=torch.float16)


def test_gradient_flows():
    gen = torch.Generator().manual_seed(0)
    x = (0.1 * torch.randn(300, generator=gen, dtype=torch.float64)).requires_grad_()
    out = sv.mel_spectrogram(x, length=None)
    assert 0 < out.min() and out.max() < 1  # no clip active: smooth everywhere
    assert torch.autograd.gradcheck(
        lambda w: sv.mel_spectrogram(w, length=None), (x,), fast_mode=True
    )
    # Zero padding gives X = 0 exactly: the magnitude's gradient must stay finite there.
    short = wav("speech_short").requires_grad_()
    sv.mel_spectrogram(short).sum().backward()
    assert torch.isfinite(short.grad).all() and short.grad.abs().sum() > 0


def test_gradient_through_a_batch():
    x = torch.stack([wav("tones"), wav("tones") * 0.5]).requires_grad_()
    with_grad = sv.mel_spectrogram(x)
    with_grad.square().sum().backward()
    with torch.no_grad():  # the no-grad path computes |X| another way: same values
        np.testing.assert_allclose(with_grad.detach(), sv.mel_spectrogram(x), rtol=0, atol=EPS32)
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_model_input_transforms(expected):
    spec = torch.from_numpy(expected["mel_speech_long"])
    crop = sv.center_crop(spec)
    assert crop.shape == (80, 848)
    assert torch.equal(crop, spec[:, 6:854])  # offset (860 - 848) // 2 = 6
    # The judges' raw input case 2 is this clip's fixture mel, cropped by the authors' code.
    raw = np.load(FIXTURES / "judges_input_raw.npy")
    np.testing.assert_array_equal(crop.numpy(), raw[2])
    image = sv.to_model_range(crop)
    assert image.min() >= -1 and image.max() <= 1
    assert torch.equal(image, 2 * crop - 1)
    np.testing.assert_allclose(sv.from_model_range(image), crop, rtol=0, atol=EPS32)
    assert sv.center_crop(torch.zeros(2, 80, 295), 288).shape == (2, 80, 288)
    with pytest.raises(ValueError, match="848"):
        sv.center_crop(torch.zeros(80, 847))


def test_tiling_repeats_the_waveform():
    x = torch.arange(5.0)
    assert sv.tile_to_length(x, 12).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert sv.tile_to_length(x, 3).tolist() == [0, 1, 2]
    stereo = torch.stack([x, -x])
    assert sv.tile_to_length(stereo, 7).shape == (2, 7)
    assert sv.tile_seconds(torch.zeros(2, 44100 * 3), 44100).shape == (2, 441000)
    with pytest.raises(ValueError, match="empty"):
        sv.tile_to_length(torch.zeros(0), 10)


def test_tiling_happens_before_the_mel():
    """A tiled clip's mel repeats with the clip (the authors loop the audio, then take the
    mel); zero padding would leave the tail silent."""
    x = wav("tones")[: 256 * 100]  # a period of exactly 100 frames
    tiled = sv.mel_spectrogram(sv.tile_to_length(x, sv.CLIP_SAMPLES))
    np.testing.assert_allclose(tiled[:, 110:750], tiled[:, 210:850], rtol=0, atol=EPS32)
    padded = sv.mel_spectrogram(x)
    assert padded[:, 110:].max() == 0 and tiled[:, 110:].min() > 0


def test_mel_basis():
    basis = sv.mel_basis()
    assert basis.shape == (80, 513) and basis.dtype == np.float32
    assert (basis >= 0).all() and (basis.sum(axis=1) > 0).all()
    peaks = basis.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all()
    assert 125 / (22050 / 1024) < peaks[0] and peaks[-1] < 7600 / (22050 / 1024)


def test_judge_stats_file():
    data = sv.JUDGE_STATS_FILE.read_bytes()
    assert hashlib.md5(data).hexdigest() == "f449c6fd0e248936c16f6d22492bb625"  # the authors'
    means, stds = sv.load_judge_stats()
    assert means.shape == stds.shape == (80,)
    assert means.dtype == stds.dtype == torch.float64
    assert (stds > 0).all() and ((means > 0) & (means < 1)).all()


def test_judge_normalisation_matches_reference():
    raw = torch.from_numpy(np.load(FIXTURES / "judges_input_raw.npy"))
    ref = np.load(FIXTURES / "judges_input_normalised.npy")
    out = sv.normalize_for_judges(raw)
    assert out.dtype == torch.float32 and out.shape == (3, 80, 848)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-6)
    # Bit-identical: float64 - and / are correctly rounded, then one rounding to float32.
    np.testing.assert_array_equal(out.numpy(), ref)
    # The real-data chain reaches it from the [-1, 1] image ((2S - 1 + 1) / 2 round trip).
    via_image = sv.normalize_for_judges(sv.from_model_range(sv.to_model_range(raw)))
    np.testing.assert_allclose(via_image.numpy(), ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="80 mel bins"):
        sv.normalize_for_judges(torch.zeros(3, 64, 10))


def test_gradients_after_an_inference_mode_call():
    """The cached window and mel basis must not be inference tensors, whichever call came
    first (a bundle's embed runs under inference_mode)."""
    from audiorep.frontends import specvqgan

    specvqgan._constants.cache_clear()
    with torch.inference_mode():
        specvqgan.mel_spectrogram(torch.zeros(4096, dtype=torch.float64), None)
    x = (0.1 * torch.randn(4096, dtype=torch.float64)).requires_grad_()
    specvqgan.mel_spectrogram(x, None).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
