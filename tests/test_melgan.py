"""SpecVQGAN's MelGAN vocoder: parity with the authors' generator, discriminator and training step.

Golden data: tests/fixtures/specvqgan_vocoder (the authors' code on recipe-round-2 weights; see
its README). Tolerances are the fixture README's suggestions (section 7.1), which sit >= 10x
above the reference's own float32-vs-float64 deviations recorded in vocoder_info.json:
waveforms <= 7.1e-7, discriminator outputs <= 1.0e-7 and features <= 8.0e-7, losses <= 2.1e-7
relative except the post-Adam-step loss_G (6.2e-5 relative, 3.0e-6 absolute: Adam's first step
is ~lr * sign(grad), so near-zero gradients move parameters by +-lr either way).
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from audiorep.frontends.specvqgan import mel_spectrogram
from audiorep.losses.melgan import (
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mel_l1,
    mel_reconstruction_loss,
    melgan_training_step,
)
from audiorep.models.melgan import (
    MelGANConfig,
    MelGANDiscriminator,
    MelGANGenerator,
    ReflectionPad1d,
    WNConv1d,
    WNConvTranspose1d,
    discriminator_state_dict_shapes,
    generator_state_dict_shapes,
    seeded_discriminator_state_dict,
    seeded_random_state_dict,
)
from conftest import FIXTURES

DATA = FIXTURES / "specvqgan_vocoder"
INFO = json.loads((DATA / "vocoder_info.json").read_text())
STEP = INFO["train_step"]["float32"]

WAVE_ATOL = 1e-5  # README 7.1: waveforms
DISC_ATOL = 1e-5  # README 7.1: discriminator outputs and features
LOSS_RTOL = 1e-5  # README 7.1: loss_D, loss_feat, before-update terms, s_error
LOSS_G_ATOL = 2e-5  # README 7.1: post-update loss_G
LOSS_G_TOTAL_RTOL = 2e-5  # README 7.1: loss_G_total
CASES = ("vas_dog_02677", "vas_drum_02480", "fixture_speech_long")


def _load(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(DATA / name))


@pytest.fixture(scope="module")
def g_state() -> dict[str, torch.Tensor]:
    return seeded_random_state_dict()


@pytest.fixture(scope="module")
def d_state() -> dict[str, torch.Tensor]:
    return seeded_discriminator_state_dict()


def _generator(state) -> MelGANGenerator:
    with torch.device("meta"):
        g = MelGANGenerator()
    g.load_state_dict(state, strict=True, assign=True)
    return g


def _discriminator(state) -> MelGANDiscriminator:
    with torch.device("meta"):
        d = MelGANDiscriminator()
    d.load_state_dict(state, strict=True, assign=True)
    return d


@pytest.fixture(scope="module")
def generator(g_state) -> MelGANGenerator:
    # assign=True shares the module-scoped tensors: clone so the training tests cannot alter them
    return _generator({k: v.clone() for k, v in g_state.items()}).eval()


@pytest.fixture(scope="module")
def discriminator(d_state) -> MelGANDiscriminator:
    return _discriminator({k: v.clone() for k, v in d_state.items()}).eval()


@pytest.fixture(scope="module")
def train_batch() -> tuple[torch.Tensor, torch.Tensor]:
    return _load("vocoder_train_wave.npy"), _load("vocoder_train_mel.npy")


@pytest.fixture(scope="module")
def initial_maps(generator, discriminator, train_batch):
    """(pred, D(real), D(pred)) with the initial weights, no gradients."""
    wave, mel = train_batch
    with torch.no_grad():
        pred = generator(mel)
        return pred, discriminator(wave), discriminator(pred)


# ------------------------------------------------------------------------ state dicts, config


def test_state_dict_keys_shapes_and_order_are_the_authors():
    ref = json.loads((DATA / "state_dict_keys.json").read_text())
    for ours, theirs in (
        (generator_state_dict_shapes(), ref["generator"]),
        (discriminator_state_dict_shapes(), ref["discriminator"]),
    ):
        assert [[k, list(s)] for k, s in ours] == theirs


def test_parameter_counts(generator, discriminator):
    for model, tensors, values in ((generator, 126, 4_266_050), (discriminator, 63, 16_924_086)):
        sd = model.state_dict()
        assert len(sd) == tensors
        assert sum(v.numel() for v in sd.values()) == values


def test_recipe_rules(g_state):
    # weight_g ~ U(0.5, 1.5), biases 0, weight_v ~ N(0, 2 / fan_in) (README 7.0). Sampling
    # error: the mean of 5,793 g values has std 0.29 / sqrt(5793) = 0.004 (bound: 5 sigma); the
    # std of 286,720 v values is off by ~1 / sqrt(2 n) = 0.13 % (bound 2 %).
    g = torch.cat([v.flatten() for k, v in g_state.items() if k.endswith("weight_g")])
    assert 0.5 <= g.min() and g.max() < 1.5 and abs(g.mean().item() - 1.0) < 0.02
    assert all(not v.any() for k, v in g_state.items() if k.endswith("bias"))
    v = g_state["model.1.weight_v"]  # (512, 80, 7): std sqrt(2 / 560)
    assert v.std().item() == pytest.approx((2 / 560) ** 0.5, rel=0.02)


def test_config_round_trip_and_args_dict():
    cfg = MelGANConfig()
    assert cfg.hop_length == 256
    assert MelGANConfig.from_dict(cfg.to_dict()) == cfg
    args = {"n_mel_channels": 80, "ngf": 8, "n_residual_layers": 2, "batch_size": 64, "ndf": 16}
    g = MelGANGenerator.from_config_dict(args)
    assert g.config == MelGANConfig(ngf=8, n_residual_layers=2)
    with pytest.raises(ValueError, match="unknown keys"):
        MelGANConfig.from_dict(args)
    with pytest.raises(ValueError, match="ratios"):
        MelGANConfig(ratios=())


# ----------------------------------------------------------------------------- generator


@pytest.mark.parametrize("case", CASES)
def test_vocoder_waveforms_match_the_authors(generator, case):
    mel = np.load(DATA / f"vocoder_{case}_mel.npy")
    wave = generator.vocode(mel)  # numpy in -> numpy out, as the authors' vocode
    assert isinstance(wave, np.ndarray) and wave.dtype == np.float32
    np.testing.assert_allclose(
        wave, np.load(DATA / f"vocoder_{case}_wave.npy"), rtol=0, atol=WAVE_ATOL
    )


def test_generator_batch_matches_train_pred(initial_maps):
    pred = initial_maps[0]
    assert pred.shape == (2, 1, 8192)
    torch.testing.assert_close(pred, _load("vocoder_train_pred.npy"), rtol=0, atol=WAVE_ATOL)


def test_vocode_batched_equals_single(generator, train_batch):
    mel = train_batch[1]
    batched = generator.vocode(mel)
    assert batched.shape == (2, 8192) and batched.dtype == torch.float32
    for i in range(2):
        # the same computation at another batch size (README: 7.3e-7 in the reference)
        torch.testing.assert_close(batched[i], generator.vocode(mel[i]), rtol=0, atol=WAVE_ATOL)


@pytest.mark.parametrize("frames", [1, 2, 3, 7, 1000])
def test_any_number_of_frames(generator, frames):
    mel = torch.rand(80, frames, generator=torch.Generator().manual_seed(frames))
    wave = generator.vocode(mel)
    assert wave.shape == (256 * frames,)
    assert torch.isfinite(wave).all() and wave.abs().max() < 1


def test_reflection_pad_extends_numpy_reflect():
    # long signals: torch's ReflectionPad1d; short ones (where torch refuses): numpy's 'reflect'
    for pad in (1, 3, 7, 9):
        for n in range(1, 13):
            x = torch.arange(float(n)).reshape(1, 1, n) + 1
            ref = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad)), mode="reflect")
            np.testing.assert_array_equal(ReflectionPad1d(pad)(x).numpy(), ref)


def test_remove_weight_norm_keeps_outputs(g_state, train_batch):
    g = _generator({k: v.clone() for k, v in g_state.items()})
    mel = train_batch[1][:1]
    before = g.vocode(mel)
    g.remove_weight_norm_()
    assert not any(k.endswith(("weight_g", "weight_v")) for k in g.state_dict())
    # the folded kernel differs by rounding only (the waveform tolerance)
    torch.testing.assert_close(g.vocode(mel), before, rtol=0, atol=WAVE_ATOL)


@pytest.mark.parametrize("cls", [WNConv1d, WNConvTranspose1d])
def test_fresh_init_is_torch_default_with_weight_norm(cls):
    # The authors' convs: PyTorch's default init, then weight_norm (g = ||w||, v = w); their
    # N(0, 0.02) weights_init is overwritten by weight_norm before every forward.
    plain = torch.nn.Conv1d if cls is WNConv1d else torch.nn.ConvTranspose1d
    torch.manual_seed(3)
    ref = torch.nn.utils.parametrizations.weight_norm(plain(8, 12, 5, groups=2))
    torch.manual_seed(3)
    ours = cls(8, 12, 5, groups=2)
    wn = ref.parametrizations.weight
    assert (
        ours.weight_g.shape == wn.original0.shape == ((8 if cls is WNConvTranspose1d else 12), 1, 1)
    )
    torch.testing.assert_close(ours.weight_v, wn.original1, rtol=0, atol=0)
    torch.testing.assert_close(ours.weight_g, wn.original0, rtol=1e-6, atol=0)
    torch.testing.assert_close(ours.bias, ref.bias, rtol=0, atol=0)
    x = torch.randn(2, 8, 11)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_init_weights_is_seeded():
    a = MelGANGenerator(MelGANConfig(ngf=4, n_residual_layers=1)).init_weights_(seed=1)
    b = MelGANGenerator(MelGANConfig(ngf=4, n_residual_layers=1)).init_weights_(seed=1)
    c = MelGANGenerator(MelGANConfig(ngf=4, n_residual_layers=1)).init_weights_(seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["model.1.weight_v"], sc["model.1.weight_v"])


def test_bad_inputs_raise(generator, discriminator):
    with pytest.raises(ValueError, match=r"\(B, 80, T\)"):
        generator(torch.zeros(1, 64, 10))
    with pytest.raises(ValueError, match="vocode"):
        generator.vocode(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(B, 1, N\)"):
        discriminator(torch.zeros(2, 8192))


# ------------------------------------------------------------------------- discriminator


def test_discriminator_scale_inputs(discriminator, train_batch):
    xs = discriminator.scale_inputs(train_batch[0])
    for i in (1, 2):
        expected = _load(f"vocoder_disc_scale{i}_input.npy")
        torch.testing.assert_close(xs[i], expected, rtol=0, atol=DISC_ATOL)


def test_discriminator_outputs_and_features(initial_maps):
    _, real, fake = initial_maps
    shapes = INFO["discriminator"]["feature_map_shapes"]
    feats = np.load(DATA / "vocoder_disc_features.npz")
    for i in range(3):
        assert [list(m.shape) for m in real[i]] == [shapes[f"d{i}_layer_{j}"] for j in range(7)]
        for name, maps in (("real", real), ("fake", fake)):
            expected = _load(f"vocoder_disc_{name}_out{i}.npy")
            torch.testing.assert_close(maps[i][-1], expected, rtol=0, atol=DISC_ATOL)
        for j in range(7):
            np.testing.assert_allclose(
                real[i][j].mean(-1).numpy(), feats[f"real_d{i}_l{j}_chmean"], rtol=0, atol=DISC_ATOL
            )
            np.testing.assert_allclose(
                real[i][j][:, :4, :32].numpy(),
                feats[f"real_d{i}_l{j}_head"],
                rtol=0,
                atol=DISC_ATOL,
            )


# ---------------------------------------------------------------------------------- losses


def test_losses_before_the_d_update(initial_maps):
    _, real, fake = initial_maps
    assert generator_adversarial_loss(fake).item() == pytest.approx(
        STEP["loss_G_before_D_update"], rel=LOSS_RTOL
    )
    assert feature_matching_loss(fake, real).item() == pytest.approx(
        STEP["loss_feat_before_D_update"], rel=LOSS_RTOL
    )
    assert discriminator_hinge_loss(fake, real).item() == pytest.approx(
        STEP["loss_D"], rel=LOSS_RTOL
    )


def test_hinge_and_feature_losses_by_hand():
    # one scale of 4 maps (n_layers_D = 1): three feature maps and the score
    fake = [[torch.ones(1, 2, 3), torch.zeros(1, 1, 4), torch.full((1, 2, 2), 3.0),
             torch.tensor([[[0.5, -2.0]]])]]  # fmt: skip
    real = [[torch.zeros(1, 2, 3), torch.ones(1, 1, 4), torch.full((1, 2, 2), 1.0),
             torch.tensor([[[2.0, 0.0]]])]]  # fmt: skip
    # D: mean(relu(1 + [0.5, -2])) + mean(relu(1 - [2, 0])) = 0.75 + 0.5
    assert discriminator_hinge_loss(fake, real).item() == pytest.approx(1.25)
    assert generator_adversarial_loss(fake).item() == pytest.approx(0.75)
    # weight (1 / 1) * (4 / 2) = 2 on L1s 1, 1, 2 (the scores are not matched)
    assert feature_matching_loss(fake, real, n_layers_D=1, num_D=1).item() == pytest.approx(8.0)
    with pytest.raises(ValueError, match="maps per scale"):
        feature_matching_loss(fake, real, n_layers_D=4, num_D=1)
    with pytest.raises(ValueError, match="num_D"):
        feature_matching_loss(fake, real, n_layers_D=1)


def test_mel_l1_is_the_authors_s_error(train_batch, initial_maps):
    wave, mel = train_batch
    # the target mel is the same front end on the real crop: s_error ~ 0 (float64 STFT vs
    # librosa's, 1.3e-7 per element at most)
    assert mel_l1(mel, wave).item() < 2e-7
    assert mel_l1(mel, initial_maps[0]).item() == pytest.approx(STEP["s_error"], rel=LOSS_RTOL)


def test_mel_reconstruction_loss_has_gradients(train_batch, initial_maps):
    mel = train_batch[1]
    pred = initial_maps[0].clone().requires_grad_(True)
    loss = mel_reconstruction_loss(mel, pred)
    # float32 STFT: up to ~1e-4 per element in quiet bands (frontends.specvqgan docstring)
    assert loss.item() == pytest.approx(STEP["s_error"], abs=1e-4)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    # the mel of the crop: 1 + 8192 // 256 = 33 frames, the target keeps the first 32
    assert mel_spectrogram(pred.detach()[:, 0], None, max_frames=None).shape[-1] == 33


# --------------------------------------------------------------------------- training step


def _adam(module: torch.nn.Module) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=1e-4, betas=(0.5, 0.9))


def test_training_step_matches_the_authors(g_state, d_state, train_batch):
    wave, mel = train_batch
    g = _generator({k: v.clone() for k, v in g_state.items()})
    d = _discriminator({k: v.clone() for k, v in d_state.items()})
    g0, d0 = copy.deepcopy(g), copy.deepcopy(d)
    out = melgan_training_step(g, d, _adam(g), _adam(d), wave, mel)

    assert set(out) == {"loss_D", "loss_G", "loss_feat", "loss_G_total", "s_error"}
    for key in ("loss_D", "loss_feat", "s_error"):
        assert out[key] == pytest.approx(STEP[key], rel=LOSS_RTOL), key
    assert out["loss_G"] == pytest.approx(STEP["loss_G"], rel=0, abs=LOSS_G_ATOL)
    assert out["loss_G_total"] == pytest.approx(STEP["loss_G_total"], rel=LOSS_G_TOTAL_RTOL)
    assert all(p.requires_grad for p in d.parameters())  # the G pass's freeze is undone

    # The generator's gradient equals plain autograd through the UPDATED D on the fake and the
    # ORIGINAL D's real features (same operations: equal up to rounding).
    pred = g0(mel)
    real = d0(wave)
    fake = d(pred)
    total = generator_adversarial_loss(fake) + 10.0 * feature_matching_loss(fake, real)
    assert total.item() == pytest.approx(out["loss_G_total"], rel=1e-6)
    grads = torch.autograd.grad(total, list(g0.parameters()))
    for (name, p), ref in zip(g.named_parameters(), grads):
        scale = ref.abs().max().item()
        torch.testing.assert_close(p.grad, ref, rtol=0, atol=1e-5 * scale + 1e-12, msg=name)
    # and both optimisers stepped
    assert not torch.equal(g.model[1].weight_v, g0.model[1].weight_v)
    d_before, d_after = d0.state_dict(), d.state_dict()
    assert not torch.equal(d_after["model.disc_0.model.layer_0.1.bias"],
                           d_before["model.disc_0.model.layer_0.1.bias"])  # fmt: skip


def test_training_step_with_mel_loss(g_state, d_state, train_batch):
    wave, mel = train_batch
    cfg = MelGANConfig(ngf=4, n_residual_layers=1)  # small: this checks the bookkeeping only
    g = MelGANGenerator(cfg).init_weights_(seed=0)
    d = MelGANDiscriminator(num_D=2, ndf=4, n_layers=2).init_weights_(seed=0)
    out = melgan_training_step(
        g, d, _adam(g), _adam(d), wave, mel, lambda_feat=2.0, mel_loss_weight=3.0
    )
    assert set(out) >= {"loss_mel"}
    expected = out["loss_G"] + 2.0 * out["loss_feat"] + 3.0 * out["loss_mel"]
    assert out["loss_G_total"] == pytest.approx(expected, rel=1e-6)
    assert out["loss_mel"] == pytest.approx(out["s_error"], abs=1e-4)  # float32 vs float64 STFT
