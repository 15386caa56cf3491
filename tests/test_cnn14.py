"""PANNs CNN14 (16 kHz): frontend, network and converter parity with the reference's outputs."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep import weights
from audiorep.convert import cnn14 as cc
from audiorep.convert.vggish import WeightsFormatError
from audiorep.frontends.panns import (
    PannsLogmel,
    hz_to_mel_slaney,
    mel_to_hz_slaney,
    num_frames,
    slaney_mel_matrix,
)
from audiorep.models.cnn14 import CNN14_TAPS, Cnn14, seeded_random_state_dict
from conftest import FIXTURES
from numerics import CNN14_EMBEDDING, assert_reordering_close
from test_weights import RangeHandler, TestServer

CNN14 = FIXTURES / "cnn14"


@functools.lru_cache(maxsize=1)
def recipe_cnn14() -> Cnn14:
    """CNN14 with recipe-v1 weights (the fixtures' weights), eval mode; shared, do not modify."""
    with torch.device("meta"):  # skip the default init: the recipe replaces every tensor
        model = Cnn14()
    sd = seeded_random_state_dict()
    assert list(sd) == list(model.state_dict())  # same order as the model (and the recipe)
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(CNN14 / "cnn14.npz") as d:
        return {k: d[k] for k in d.files}


def read_waves(path: Path) -> torch.Tensor:
    """16-bit multi-channel WAV -> float32 ``(B, N)`` = int16 / 32768 (channel = item)."""
    data, sr = sf.read(path, dtype="int16", always_2d=True)
    assert sr == 16000
    return torch.from_numpy(data.T.astype(np.float32) / np.float32(32768.0))


def close(out: torch.Tensor, ref: np.ndarray, rtol: float = 1e-4, atol_rel: float = 1e-5) -> None:
    out_np = out.detach().numpy()
    assert out_np.shape == ref.shape
    np.testing.assert_allclose(out_np, ref, rtol=rtol, atol=atol_rel * np.abs(ref).max())


# ----------------------------------------------------------------------------- frontend


def test_slaney_mel_scale_and_matrix():
    # Slaney's scale: linear (200/3 Hz per mel) below 1 kHz, 27 mels per factor 6.4 above.
    np.testing.assert_allclose(
        hz_to_mel_slaney([0.0, 50.0, 1000.0, 6400.0]), [0.0, 0.75, 15.0, 42.0], rtol=1e-12
    )
    f = np.array([20.0, 700.0, 1000.0, 3000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz_slaney(hz_to_mel_slaney(f)), f, rtol=1e-12)
    mel = slaney_mel_matrix()
    assert mel.shape == (257, 64) and mel.dtype == np.float32 and not mel.flags.writeable
    # Slaney normalisation: every triangle has the same area 2 / (f_hi - f_lo) * (f_hi - f_lo)
    # / 2 = 1 in Hz units, so its bin sum times the bin width (31.25 Hz) is about 1 -- except
    # the narrow low triangles, which fall between bins.
    area = mel.sum(axis=0) * 31.25
    np.testing.assert_allclose(area[20:], 1.0, rtol=0.05)
    assert mel[:2].sum() == 0 and mel[-1].sum() == 0  # nothing below 50 Hz or at 8 kHz


def test_power_spectrogram_parity(golden):
    waves = read_waves(CNN14 / "wave_32000.wav")
    ref = golden["spectrogram_32000_every_20th_frame"]
    for method in ("conv", "rfft"):
        spec = PannsLogmel(method=method).spectrogram(waves)[:, :, ::20]
        assert spec.shape == (4, 1, 11, 257)
        np.testing.assert_allclose(spec.numpy(), ref, rtol=0, atol=1e-5 * ref.max())


@pytest.mark.parametrize("method", ["conv", "rfft"])
def test_logmel_parity(golden, method):
    fe = PannsLogmel(method=method)
    for tag, items in (("32000", [0, 2]), ("24589", [0, 1])):
        waves = read_waves(CNN14 / f"wave_{tag}.wav")[items]
        ref = golden["logmel_32000_items_0_2" if tag == "32000" else "logmel_24589"]
        out = fe(waves).numpy()
        assert out.shape == ref.shape == (2, 1, num_frames(waves.shape[1]), 64)
        diff = np.abs(out - ref)
        loud = ref > -40
        # The fixture README's tolerances, for both methods: near-silent bins are power sums
        # that cancel to ~eps of the frame energy, so their dB value depends on the SIMD kernel
        # (0.04 dB with SSE4.1 kernels for the conv method, which agrees to 1e-5 dB on AVX2).
        assert diff.max() < 0.5, diff.max()
        assert diff[loud].max() < 1e-3, diff[loud].max()
        assert out.min() >= -100.0  # amin = 1e-10 floor, no top_db


def test_frontend_options_and_errors():
    x = torch.randn(2, 4000) * 0.1
    fe = PannsLogmel()
    assert fe(x[0]).shape == (1, 1, 26, 64)  # 1-D input is one clip
    clipped = PannsLogmel(top_db=30.0)(x)
    assert clipped.min() >= clipped.max() - 30.0 - 1e-4
    f64 = PannsLogmel(dtype=torch.float64)(x)
    assert f64.dtype == torch.float64
    torch.testing.assert_close(f64.float(), fe(x), atol=0.05, rtol=0)
    with pytest.raises(ValueError, match="more than 256 samples"):
        fe(torch.zeros(1, 256))
    with pytest.raises(ValueError, match="method"):
        PannsLogmel(method="fft")


# ----------------------------------------------------------------------------- network


def test_recipe_weights():
    sd = recipe_cnn14().state_dict()  # loaded from seeded_random_state_dict()
    drawn = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert len(drawn) == 68
    assert sum(v.numel() for v in drawn.values()) == 80_769_871
    # First values of the legacy RandomState(20261122) stream, scaled as the recipe says.
    first = np.random.RandomState(20261122).standard_normal(4)  # bn0.weight[:4]
    np.testing.assert_array_equal(
        sd["bn0.weight"][:4].numpy(), (1 + 0.1 * first).astype(np.float32)
    )
    assert sd["conv_block3.bn2.num_batches_tracked"].item() == 0
    assert (sd["conv_block1.bn1.running_var"] >= 1).all()
    w = sd["conv_block2.conv1.weight"]
    assert abs(w.std().item() - (2 / (64 * 9)) ** 0.5) < 1e-3  # He scaling


def test_network_from_stored_logmel(golden):
    model = recipe_cnn14()
    cases = (
        ("24589", golden["logmel_24589"], [0, 1]),
        ("32000", golden["logmel_32000_items_0_2"], [0, 2]),
    )
    for tag, logmel, items in cases:
        with torch.no_grad():
            taps = model.forward_taps(torch.from_numpy(logmel))
        if tag == "24589":
            close(taps["conv_block6"][:, ::8], golden["block6_24589_every_8th_channel"])
        close(taps["pooled"], golden[f"pooled_{tag}"][items])
        close(taps["fc1"], golden[f"embedding_{tag}"][items])
        close(taps["logits"], golden[f"logits_{tag}"][items])
        np.testing.assert_allclose(
            taps["clipwise"].numpy(), golden[f"clipwise_output_{tag}"][items], atol=1e-4
        )


@pytest.mark.parametrize(("method", "tags"), [("conv", ("32000", "24589")), ("rfft", ("24589",))])
def test_end_to_end_from_waveform(golden, method, tags):
    model = recipe_cnn14()
    fe = PannsLogmel(method=method)
    for tag in tags:
        waves = read_waves(CNN14 / f"wave_{tag}.wav")
        with torch.no_grad():
            taps = model.forward_taps(fe(waves), ["fc1", "logits", "clipwise"])
        emb = golden[f"embedding_{tag}"]
        np.testing.assert_allclose(taps["fc1"].numpy(), emb, rtol=0, atol=1e-4 * np.abs(emb).max())
        np.testing.assert_allclose(taps["logits"].numpy(), golden[f"logits_{tag}"], atol=2e-2)
        np.testing.assert_allclose(
            taps["clipwise"].numpy(), golden[f"clipwise_output_{tag}"], atol=2e-3
        )


def test_taps_shapes_and_consistency():
    model = recipe_cnn14()
    assert model.tap_names == CNN14_TAPS
    x = torch.randn(2, 70, 64) * 10 - 40  # 3-D input: (B, T, mel)
    with torch.no_grad():
        taps = model.forward_taps(x)
        emb = model(x)
    t = 70
    expected = {"bn0": (2, 1, t, 64)}
    for k, (_, c) in enumerate(
        ((1, 64), (64, 128), (128, 256), (256, 512), (512, 1024), (1024, 2048)), start=1
    ):
        expected[f"conv_block{k}_prepool"] = (2, c, t, 64 // 2 ** (k - 1))
        if k < 6:
            t //= 2
        expected[f"conv_block{k}"] = (2, c, t, 64 // 2 ** min(k, 5))
    expected.update(pooled=(2, 2048), fc1=(2, 2048), logits=(2, 527), clipwise=(2, 527))
    assert {k: tuple(v.shape) for k, v in taps.items()} == expected
    assert expected["conv_block6"] == (2, 2048, 70 // 32, 2)
    torch.testing.assert_close(taps["conv_block6"], taps["conv_block6_prepool"])
    torch.testing.assert_close(emb, taps["fc1"])
    torch.testing.assert_close(taps["clipwise"], torch.sigmoid(taps["logits"]))
    pooled = taps["conv_block6"].mean(3)
    torch.testing.assert_close(taps["pooled"], pooled.max(2).values + pooled.mean(2))
    # bn0 normalises each mel bin with its own running statistics
    bn = model.bn0
    ref = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(taps["bn0"][:, 0], ref)
    # batch items are independent (eval mode)
    with torch.no_grad():
        assert_reordering_close(model(x[1:]), emb[1:], CNN14_EMBEDDING[2:])  # no frontend


def test_input_checks_and_train_mode():
    model = recipe_cnn14()
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.zeros(1, 1, 31, 64))
    with pytest.raises(ValueError, match=r"\(B, 1, T, 64\)"):
        model(torch.zeros(1, 1, 64, 40))
    x = torch.randn(1, 1, 32, 64)
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # eval mode: deterministic
    saved = {k: v.clone() for k, v in model.named_buffers()}  # BN stats move in training
    try:
        model.train()
        torch.manual_seed(0)
        with torch.no_grad():
            dropped = model.forward_taps(x, "conv_block1")["conv_block1"]
        assert (dropped == 0).float().mean() > 0.1  # dropout 0.2 active in training
    finally:
        model.eval()
        for k, v in model.named_buffers():
            v.copy_(saved[k])


# ----------------------------------------------------------------------------- weights


def _panns_checkpoint(sd: dict[str, torch.Tensor]) -> dict:
    """The PANNs file layout: frontend buffers in the state dict, NumPy sampler state."""
    fe = PannsLogmel()
    model = {
        "spectrogram_extractor.stft.conv_real.weight": fe.dft_real.clone(),
        "spectrogram_extractor.stft.conv_imag.weight": fe.dft_imag.clone(),
        "logmel_extractor.melW": fe.mel_matrix.clone(),
        **sd,
    }
    sampler = {
        "indexes_per_class": [np.arange(7), np.arange(3)],
        "queue": [3, 1],
        "pointers_of_classes": [0, 2],
    }
    return {"iteration": 300000, "model": model, "sampler": sampler}


def _as_numpy1_pickle(src: Path, dst: Path) -> None:
    """Rewrite a torch zip checkpoint so its arrays name NumPy 1.x's module (as in 2020 files)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info, data)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("AUDIOREP_HOME", str(home))
    monkeypatch.delenv("AUDIOREP_OFFLINE", raising=False)
    return home


def test_registry_entry():
    e = weights.REGISTRY["cnn14-16k"]
    assert e.filename == "Cnn14_16k_mAP=0.438.pth"
    assert e.kind == "model" and e.urls[0].startswith("https://zenodo.org/")
    assert all("Cnn14_16k_mAP%3D0.438.pth" in u for u in e.urls)


@pytest.mark.network
def test_checkpoint_download_and_conversion(tmp_path, monkeypatch, isolated_cache):
    """Seeded weights in PANNs' file layout, served on 127.0.0.1, fetched, converted, loaded."""
    sd = recipe_cnn14().state_dict()
    ckpt = tmp_path / "ckpt.pth"
    torch.save(_panns_checkpoint(sd), ckpt)
    server = TestServer(RangeHandler)
    try:
        server.files["Cnn14_16k.pth"] = ckpt.read_bytes()
        entry = dataclasses.replace(
            weights.REGISTRY["cnn14-16k"], urls=(server.url("Cnn14_16k.pth"),)
        )
        monkeypatch.setitem(weights.REGISTRY, "cnn14-16k", entry)
        with pytest.warns(weights.UnpinnedWeightsWarning):
            path = weights.fetch("cnn14-16k", progress=False)
    finally:
        server.close()
    assert path == isolated_cache / "cnn14-16k" / "Cnn14_16k_mAP=0.438.pth"
    loaded = cc.load_cnn14_weights(path)
    assert list(loaded) == list(sd)
    for k, v in sd.items():
        assert torch.equal(loaded[k], v), k
    # Round trip through audiorep's safetensors file.
    out = cc.convert(path, tmp_path / "cnn14.safetensors")
    again = cc.load_cnn14_weights(out)
    assert all(torch.equal(again[k], v) for k, v in sd.items())


def test_checkpoint_layouts_and_errors(tmp_path):
    small = {"a": torch.ones(2)}
    ckpt = tmp_path / "numpy2.pth"
    torch.save({"model": small, "sampler": {"indexes": [np.arange(4)]}}, ckpt)
    legacy = tmp_path / "numpy1.pth"
    _as_numpy1_pickle(ckpt, legacy)
    for path in (ckpt, legacy):  # NumPy arrays in the file: allowed as plain data only
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            obj = cc.read_torch_checkpoint(path)
        np.testing.assert_array_equal(obj["sampler"]["indexes"][0], np.arange(4))
        assert cc.read_state_dict(path).keys() == {"a"}
    # Arbitrary objects are never unpickled.
    evil = tmp_path / "object.pth"
    torch.save({"model": small, "args": argparse.Namespace(x=1)}, evil)
    with pytest.raises(WeightsFormatError, match="weights_only"):
        cc.read_torch_checkpoint(evil)

    sd = recipe_cnn14().state_dict()
    # DataParallel prefix and missing num_batches_tracked are fine.
    lean = {f"module.{k}": v for k, v in sd.items() if "num_batches_tracked" not in k}
    mapped = cc.panns_to_state_dict(lean)
    assert all(torch.equal(mapped[k], v) for k, v in sd.items())
    # Another PANNs variant (32 kHz: n_fft 1024) is rejected by its frontend.
    other = dict(_panns_checkpoint(sd)["model"])
    other["logmel_extractor.melW"] = torch.zeros(513, 64)
    with pytest.raises(ValueError, match="not a Cnn14_16k"):
        cc.panns_to_state_dict(other)
    broken = {k: v for k, v in sd.items() if k != "fc1.bias"}
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing fc1\.bias.*unexpected extra\.weight"):
        cc.panns_to_state_dict(broken)
    with pytest.raises(FileNotFoundError):
        cc.load_cnn14_weights(tmp_path / "nope.pth")
