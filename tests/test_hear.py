"""audiorep.hear: the HEAR (hear-eval-kit) module API, on seeded random weights.

CPU cost is dominated by VGGish forwards (~30-60 ms per example on the 2-core box) and by
generating the random weights (~3 s, done once): inputs are kept to a few windows each.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiorep import hear
from audiorep.frontends.vggish import GOOGLE_FAD_WINDOWING, Windowing
from audiorep.pipelines import VGGishBundle, WeightsUnavailableError
from audiorep.pipelines.vggish import VGGishFrames
from numerics import VGGISH_EMBEDDING, VGGISH_LOGMEL, assert_reordering_close

SR = 16000


def _audio(n_sounds: int, seconds: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n_sounds, round(seconds * SR), generator=gen)


@pytest.fixture(scope="module", autouse=True)
def _eager_model():
    """Eager VGGish: skips compiling a TorchScript copy per bundle (seconds each here); the
    HEAR module only calls ``bundle.embed_examples``, whichever path that takes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIOREP_EAGER", "1")
        yield


@pytest.fixture(scope="module")
def model() -> hear.HearModel:
    """The default 50 ms hop (the only random weights generated)."""
    return hear.load_model("random", device="cpu")


def _same_weights(model: hear.HearModel, hop_seconds: float) -> hear.HearModel:
    bundle = VGGishBundle(
        model.bundle.model,
        None,
        model.bundle.weights_description,
        windowing=Windowing.from_hop_seconds(hop_seconds),
    )
    return hear.HearModel(bundle, hop_seconds=hop_seconds)


@pytest.fixture(scope="module")
def model_025(model) -> hear.HearModel:
    """A 0.25 s hop: 4000 samples, one leading window, first centre 237.5 ms."""
    return _same_weights(model, 0.25)


@pytest.fixture(scope="module")
def model_096(model) -> hear.HearModel:
    """The reference's 0.96 s hop: no front padding."""
    return _same_weights(model, 0.96)


def test_attributes(model):
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.sample_rate == 16000
    assert model.scene_embedding_size == model.timestamp_embedding_size == 128
    assert model.embedding_size == 128
    assert model.frames.hop_seconds == pytest.approx(0.05) and hear.DEFAULT_HOP_SECONDS == 0.05
    assert (
        model.frames.hop_samples,
        model.frames.lead_windows,
        model.frames.first_centre_samples,
    ) == (800, 9, 600)
    assert model.device == torch.device("cpu")
    assert "random" in model.bundle.weights_description
    assert model.bundle.postprocessor is None  # HEAR never uses the PCA bytes
    assert "hop_seconds=0.05" in repr(model)


def test_shapes_dtypes_and_centred_timestamps_in_ms(model):
    audio = _audio(2, 0.6).to(torch.float32)  # 9600 samples
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    n_ts = 12  # ceil((9600 - 600) / 800)
    assert emb.shape == (2, n_ts, 128) and emb.dtype == torch.float32
    assert ts.shape == (2, n_ts) and ts.dtype == torch.float32
    expected = torch.tensor([37.5 + 50.0 * k for k in range(n_ts)])
    for row in ts:
        assert torch.equal(row, expected)  # exact: window centres in ms
    assert float(ts[0, -1]) < 600.0  # every centre inside the clip
    assert torch.isfinite(emb).all()


@pytest.mark.parametrize(
    ("hop", "n_samples", "first_ms", "count"),
    [
        (0.05, 9600, 37.5, 12),
        (0.05, 0, 37.5, 1),
        (0.05, 600, 37.5, 1),
        (0.05, 1400, 37.5, 1),
        (0.05, 1401, 37.5, 2),
        (0.10, 16000, 87.5, 10),  # lead 4 hops of 1600, first centre 1400 samples
        (0.01, 800, 7.5, 5),  # lead 48 frames, first centre 120 samples
        (0.25, 32000, 237.5, 8),
        (0.96, 7800, 487.5, 1),
        (0.96, 23160, 487.5, 1),
        (0.96, 23161, 487.5, 2),
        (0.96, 10 * SR, 487.5, 10),
    ],
)
def test_timestamp_layout(hop, n_samples, first_ms, count):
    layout = hear.WindowLayout(round(hop * SR))
    assert layout.num_timestamps(n_samples) == count
    ts = layout.timestamps_ms(n_samples)
    assert ts.dtype == torch.float32
    assert torch.equal(ts, torch.tensor([first_ms + 1000 * hop * k for k in range(count)]))
    if count > 1:
        assert float(ts[-1]) * SR / 1000 < n_samples  # centres inside the sound
    with pytest.raises(ValueError, match="multiple of 160"):
        hear.WindowLayout(100)


def test_reference_hop_matches_bundle_without_padding(model_096):
    audio = _audio(2, 2.5, seed=1)  # 40000 samples
    emb, ts = hear.get_timestamp_embeddings(audio, model_096)
    # ceil((40000 - 7800) / 15360) = 3 windows; the reference cuts 2 from 40000 samples.
    assert emb.shape == (2, 3, 128)
    assert torch.equal(ts[0], torch.tensor([487.5, 1447.5, 2407.5]))
    assert model_096.frames.lead_windows == 0
    for i in range(2):
        ref = model_096.bundle.embed(audio[i], SR)
        assert ref.shape == (2, 128)
        assert_reordering_close(emb[i, :2], ref, VGGISH_EMBEDDING)  # other batch sizes


@pytest.mark.parametrize(("fixture", "seconds"), [("model", 1.1), ("model_025", 2.0)])
def test_full_windows_equal_bundle_embed(fixture, seconds, request):
    """Windows entirely inside the sound are the bundle's own examples and embeddings."""
    m: hear.HearModel = request.getfixturevalue(fixture)
    audio = _audio(1, seconds, seed=2)
    emb, _ = hear.get_timestamp_embeddings(audio, m)
    # The bundle loaded with the frames' hop cuts exactly these windows (inside the sound).
    hop = Windowing.from_hop_seconds(m.frames.hop_seconds)
    bundle = VGGishBundle(m.bundle.model, None, "same weights", windowing=hop)
    lead = m.frames.lead_windows
    ref_examples = bundle.examples(audio[0], SR)
    n_full = ref_examples.shape[0]
    assert n_full >= 3 and emb.shape[1] >= lead + n_full + 1
    # Front padding is a whole number of hops: the same frames, but the FFT batch differs in
    # length, so the float64 log-mels agree to FFT/mel summation rounding, not bit for bit.
    windows = m.frames.window_examples(audio)[0, lead : lead + n_full]
    # log(mel + 0.01): a relative error of the mel energy is an absolute error of its log
    assert_reordering_close(windows, ref_examples, VGGISH_LOGMEL, scale=1.0)
    ref = bundle.embed(audio[0], SR)
    # The model itself may round differently with another batch size (oneDNN).
    assert_reordering_close(emb[0, lead : lead + n_full], ref, VGGISH_EMBEDDING)
    # Windows reaching into the padding see zeros, so they differ.
    assert not torch.allclose(emb[0, lead - 1], ref[0], atol=1e-3)
    assert not torch.allclose(emb[0, lead + n_full], ref[-1], atol=1e-3)


def test_silence_and_short_inputs(model):
    audio = torch.zeros(2, 2400)  # 150 ms: silence, and a 50 ms burst
    audio[1, :800] = _audio(1, 0.05, seed=4)[0]
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape == (2, 3, 128)  # ceil((2400 - 600) / 800)
    assert torch.equal(ts[0], torch.tensor([37.5, 87.5, 137.5]))
    assert torch.isfinite(emb).all()
    # Silence: every window is all zeros, so every embedding is the same.
    # (the same input in another batch row: the same up to summation order)
    assert_reordering_close(emb[0], emb[0, :1].expand(3, 128), VGGISH_EMBEDDING)
    assert not torch.allclose(emb[1], emb[0], atol=1e-3)
    for n in (0, 239, 600):  # shorter than a spectrogram frame, or than the first centre
        e, t = hear.get_timestamp_embeddings(torch.zeros(2, n), model)
        assert e.shape == (2, 1, 128) and torch.equal(t, torch.full((2, 1), 37.5))
        assert_reordering_close(e[0, 0], emb[0, 0], VGGISH_EMBEDDING)
    assert hear.get_scene_embeddings(torch.zeros(1, 0), model).shape == (1, 128)
    e, t = hear.get_timestamp_embeddings(torch.zeros(0, 2400), model)  # no sounds at all
    assert e.shape == (0, 3, 128) and t.shape == (0, 3)


def test_deterministic_scene_mean_and_batch_independent(model_025):
    audio = _audio(2, 1.0, seed=5)  # 4 windows per sound
    a, ta = hear.get_timestamp_embeddings(audio, model_025)
    b, tb = hear.get_timestamp_embeddings(audio, model_025)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert torch.equal(ta[0], torch.tensor([237.5, 487.5, 737.5, 987.5]))
    scene = hear.get_scene_embeddings(audio, model_025)
    assert scene.shape == (2, 128) and scene.dtype == torch.float32
    assert_reordering_close(scene, a.mean(dim=1), (4,))  # a mean of 4 windows
    other = hear.HearModel(
        model_025.bundle, hop_seconds=0.25, batch_size=3
    )  # 8 examples in 3 batches
    c, _ = hear.get_timestamp_embeddings(audio, other)
    assert_reordering_close(c, a, VGGISH_EMBEDDING)
    # Each sound is embedded independently of the rest of the batch.
    d, _ = hear.get_timestamp_embeddings(audio[1:2], model_025)
    assert_reordering_close(d[0], a[1], VGGISH_EMBEDDING)


def test_runner_style_inputs(model_096):
    """hear-eval-kit: .to(device), torch.no_grad(), numpy float32 or tensors."""
    assert model_096.to("cpu") is model_096
    audio = _audio(1, 1.0, seed=6)
    ref, _ = hear.get_timestamp_embeddings(audio, model_096)
    with torch.no_grad():
        emb, ts = hear.get_timestamp_embeddings(audio.numpy().astype(np.float32), model_096)
    assert torch.equal(emb, ref)
    emb.add_(1.0)  # a plain tensor, not an inference tensor
    emb64, _ = hear.get_timestamp_embeddings(audio.double(), model_096)
    assert_reordering_close(emb64, ref, VGGISH_EMBEDDING)


def test_invalid_inputs_and_options(model):
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        hear.get_timestamp_embeddings(torch.zeros(16000), model)
    with pytest.raises(TypeError, match="float"):
        hear.get_scene_embeddings(torch.zeros(1, 16000, dtype=torch.int16), model)
    with pytest.raises(ValueError, match="multiple of 0.01"):
        hear.load_model("random", hop_seconds=0.055)
    with pytest.raises(TypeError, match="hop_seconds"):
        hear.load_model("random", windowing=Windowing())
    with pytest.raises(ValueError, match="frontend_dtype"):
        hear.load_model("random", frontend_dtype="float16")
    with pytest.raises(ValueError, match="peak"):  # FAD windows are not HEAR frames
        VGGishFrames(model.bundle, GOOGLE_FAD_WINDOWING, batch_size=8)
    with pytest.raises(ValueError, match="batch_size"):
        hear.HearModel(model.bundle, batch_size=0)


def test_load_model_options(monkeypatch, model):
    """What load_model asks audiorep.load for (weights, options), and the frames it builds."""
    calls = []

    def fake_load(name, **kwargs):
        calls.append((name, kwargs))
        return VGGishBundle(model.bundle.model, None, "fake")

    monkeypatch.setattr(hear, "load", fake_load)
    m = hear.load_model("path/to/w.safetensors", hop_seconds=0.1, device="cpu", batch_size=8)
    name, kwargs = calls[-1]
    assert name == "vggish" and kwargs["weights"] == "path/to/w.safetensors"
    assert kwargs["pca"] is False and kwargs["device"] == "cpu" and "windowing" not in kwargs
    assert m.batch_size == 8 and m.frames.hop_samples == 1600 and not m.training
    hear.load_model(
        "", seed=3, precision="bfloat16", frontend_dtype="float32", torchvggish_compat=True
    )
    _, kwargs = calls[-1]
    assert kwargs["weights"] is None and kwargs["seed"] == 3
    assert kwargs["precision"] == "bfloat16" and kwargs["torchvggish_compat"] is True
    assert kwargs["frontend_dtype"] == torch.float32
    assert hear.load_model("random").frames.hop_samples == 800  # the 50 ms default
    assert calls[-1][1]["weights"] == "random"


def test_deprecated_alias_keeps_the_bundle_hop(model):
    bundle = VGGishBundle(
        model.bundle.model, None, "alias", windowing=Windowing.from_hop_seconds(0.25)
    )
    assert hear.HearVGGish(bundle).frames.hop_samples == 4000


def test_missing_pretrained_weights_raise_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOREP_HOME", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="random"):
        hear.load_model("")
