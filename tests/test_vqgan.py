"""SpecVQGAN spectrogram codec (models/vqgan.py): parity with the authors' VQModel, API, loading."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from audiorep.models.vqgan import (
    CodebookStateDictError,
    LoadReport,
    SpectrogramVQGAN,
    VectorQuantizer,
    VQGANConfig,
    code_usage,
    from_column_major,
    seeded_random_state_dict,
    state_dict_shapes,
    to_column_major,
)
from conftest import FIXTURES

DATA = FIXTURES / "specvqgan_codebook"

# Tolerances: the fixture README's suggestions (section 3), from the reference's float32 vs
# float64 runs of the same code: encoder_out <= 5.1e-6, quant_conv_out <= 7.3e-6 (|z| <= 6.8),
# recon <= 7.4e-5 (|recon| <= 4.6); the straight-through z + (e - z) differs from the codebook
# row by up to 2.4e-7 (float32 rounding at |z| ~ 7).
ATOL_LATENT = 1e-4
ATOL_RECON = 5e-4
ATOL_QUANTIZED = 1e-6
# Indices are compared where the best-vs-second squared-distance gap exceeds 1e-3 (README):
# below that, float32 differences in z (<= 1e-5 here, times |z - e| ~ 15) can flip the argmin.
GAP = 1e-3

SMALL = VQGANConfig(
    ch=32, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=1, attn_resolutions=(), z_channels=64,
    embed_dim=64, n_embed=128,
)  # fmt: skip


def load(name: str) -> np.ndarray:
    return np.load(DATA / f"codebook_{name}.npy")


@pytest.fixture(scope="module")
def info() -> dict:
    return json.loads((DATA / "codebook_info.json").read_text())


@pytest.fixture(scope="module")
def codec() -> SpectrogramVQGAN:
    """The VAS codec with recipe-v1 weights (seed 20261123), eval mode, frozen. The tests that
    use it (directly or through the cases) are marked slow: drawing 72 M weights and one
    full-size run per case take ~10 s on two cores."""
    model = SpectrogramVQGAN.from_state_dict(seeded_random_state_dict()).eval()
    model.requires_grad_(False)
    return model


def _run(codec: SpectrogramVQGAN, case: str) -> dict[str, torch.Tensor]:
    """One ``encode`` (encoder and quant_conv outputs captured on the way) and one
    ``decode_codes`` with the reference indices: the full-size model runs once per case."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        codec.encoder.register_forward_hook(lambda m, i, o: seen.__setitem__("h", o)),
        codec.quant_conv.register_forward_hook(lambda m, i, o: seen.__setitem__("z", o)),
    ]
    try:
        with torch.inference_mode():
            zq, loss, (perplexity, one_hot, indices) = codec.encode(
                torch.from_numpy(load(f"{case}_input"))
            )
            recon = codec.decode_codes(torch.from_numpy(load(f"{case}_indices")))
    finally:
        for h in hooks:
            h.remove()
    return {**seen, "zq": zq, "loss": loss, "perplexity": perplexity, "one_hot": one_hot,
            "indices": indices, "recon": recon}  # fmt: skip


@pytest.fixture(scope="module")
def main_case(codec) -> dict[str, torch.Tensor]:
    return _run(codec, "main")


@pytest.fixture(scope="module")
def native_case(codec) -> dict[str, torch.Tensor]:
    return _run(codec, "native")


# ----------------------------------------------------------------------------- parity


@pytest.mark.slow
def test_main_latents_match_reference(main_case):
    """80 x 848 (speech_long, centre crop): encoder and quant_conv outputs (1, 256, 5, 53)."""
    with np.load(DATA / "codebook_main_encoder_out_edges.npz") as edges:
        h = main_case["h"].numpy()
        assert h.shape == (1, 256, 5, 53)
        # the stored slice: the first and last 8 time columns (the downsampling's one-sided
        # padding acts at the right edge); the native case below checks a full map
        np.testing.assert_allclose(h[..., :8], edges["first8"], rtol=0, atol=ATOL_LATENT)
        np.testing.assert_allclose(h[..., -8:], edges["last8"], rtol=0, atol=ATOL_LATENT)
    np.testing.assert_allclose(
        main_case["z"].numpy(), load("main_quant_conv_out"), rtol=0, atol=ATOL_LATENT
    )


@pytest.mark.slow
def test_native_latents_match_reference(native_case):
    """A 295-frame input (speech_short at its own length): latents (1, 256, 5, 18)."""
    np.testing.assert_allclose(
        native_case["h"].numpy(), load("native_encoder_out"), rtol=0, atol=ATOL_LATENT
    )
    np.testing.assert_allclose(
        native_case["z"].numpy(), load("native_quant_conv_out"), rtol=0, atol=ATOL_LATENT
    )


@pytest.mark.slow
@pytest.mark.parametrize("case", ["main", "native"])
def test_indices_match_where_the_choice_is_clear(request, case):
    out = request.getfixturevalue(f"{case}_case")
    ref, gap = load(f"{case}_indices"), load(f"{case}_index_gap")
    ours = out["indices"].numpy().reshape(ref.shape)  # raster h * W + w
    clear = gap > GAP
    assert clear.sum() >= ref.size - 4  # the README: 4 (main) / 2 (native) cells below 1e-3
    np.testing.assert_array_equal(ours[clear], ref[clear])


@pytest.mark.slow
@pytest.mark.parametrize("case", ["main", "native"])
def test_float64_distances_reproduce_every_reference_index(codec, info, case):
    """From the reference's own quant_conv output, all indices come out exactly, near-ties
    (gaps down to 6.1e-5) included; so does the codebook loss (same inputs, summation order
    only: rtol 1e-5, the README's "logged losses" tolerance)."""
    z = torch.from_numpy(load(f"{case}_quant_conv_out"))
    with torch.inference_mode():
        zq, loss, (_, _, indices) = codec.quantize(z)
    ref = load(f"{case}_indices")
    np.testing.assert_array_equal(indices.numpy().reshape(ref.shape), ref)
    assert (load(f"{case}_index_gap") < GAP).any()  # the near-ties are really there
    np.testing.assert_allclose(float(loss), info[case]["emb_loss"], rtol=1e-5)


@pytest.mark.slow
def test_quantized_values(native_case, main_case, codec):
    """z_q is the straight-through value z + (e - z): the reference's (native case stored),
    and the codebook rows up to float32 rounding (both cases)."""
    np.testing.assert_allclose(
        native_case["zq"].numpy(), load("native_quantized"), rtol=0, atol=ATOL_QUANTIZED
    )
    for case, out in (("main", main_case), ("native", native_case)):
        rows = codec.quantize.lookup(torch.from_numpy(load(f"{case}_indices")))
        clear = torch.from_numpy(load(f"{case}_index_gap") > GAP)[:, None]
        diff = (out["zq"] - rows).abs().masked_select(clear.expand_as(rows))
        assert float(diff.max()) <= ATOL_QUANTIZED


@pytest.mark.slow
@pytest.mark.parametrize("case", ["main", "native"])
def test_codebook_loss_matches_reference(request, info, case):
    """The taming ordering: mean((sg[e] - z)^2) + 0.25 mean((e - sg[z])^2) = 1.25 MSE. From our
    own z (within 1e-4 of the reference's): rtol 1e-4, the README's tolerance for terms
    recomputed through the codebook."""
    out = request.getfixturevalue(f"{case}_case")
    np.testing.assert_allclose(float(out["loss"]), info[case]["emb_loss"], rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["main", "native"])
def test_reconstruction_from_reference_indices(request, info, case):
    out = request.getfixturevalue(f"{case}_case")
    ref = load(f"{case}_recon")
    assert tuple(out["recon"].shape) == tuple(info[case]["recon_shape"])  # 848 / 288 wide
    np.testing.assert_allclose(out["recon"].numpy(), ref, rtol=0, atol=ATOL_RECON)


@pytest.mark.slow
def test_perplexity_and_code_usage(main_case, info):
    ref = torch.from_numpy(load("main_indices"))
    counts = code_usage(ref, 128)
    assert int(counts.sum()) == 265 and int((counts > 0).sum()) == info["main"]["n_unique_codes"]
    p = counts.double() / 265
    expected = math.exp(-float((p * torch.log(p + 1e-10)).sum()))
    assert float(main_case["perplexity"]) == pytest.approx(expected, rel=1e-5)
    assert main_case["one_hot"] is None  # only on request


def test_column_major_order():
    """Transformer order: position w*5 + h holds indices[h, w] (time column by column)."""
    ref = torch.from_numpy(load("main_indices"))
    seq = to_column_major(ref)
    np.testing.assert_array_equal(seq.numpy(), load("main_indices_columnmajor"))
    assert int(seq[0, 5 * 7 + 3]) == int(ref[0, 3, 7])
    torch.testing.assert_close(from_column_major(seq, 5), ref, rtol=0, atol=0)


# ----------------------------------------------------------------------------- weights, keys


def test_state_dict_keys_are_the_authors():
    ref = json.loads((DATA / "state_dict_shapes.json").read_text())["keys"]
    ours = state_dict_shapes(VQGANConfig.vas())
    assert [[k, list(s)] for k, s in ours] == ref  # names, shapes and order
    assert len(ours) == 343
    assert sum(math.prod(s) for _, s in ours) == 71_907_713
    vgg = dict(state_dict_shapes(VQGANConfig.vggsound()))
    assert vgg["quantize.embedding.weight"] == (1024, 256)
    assert sum(math.prod(s) for s in vgg.values()) == 71_907_713 + (1024 - 128) * 256


def test_attention_only_at_width_53():
    keys = [k for k, _ in state_dict_shapes()]
    attn = sorted({k.split(".attn")[0] for k in keys if ".attn." in k})
    assert attn == ["decoder.up.4", "encoder.down.4"]
    assert "encoder.mid.attn_1.q.weight" in keys and "decoder.mid.attn_1.proj_out.bias" in keys


@pytest.mark.slow
def test_seeded_state_dict_follows_recipe_v1(codec):
    sd = codec.state_dict()
    emb = sd["quantize.embedding.weight"]
    assert emb.abs().max() <= 1 / 128 and emb.abs().max() > 0.99 / 128
    assert torch.equal(sd["encoder.norm_out.weight"], torch.ones(512))
    assert (
        not sd["decoder.conv_out.bias"].any() and not sd["encoder.down.0.block.0.conv1.bias"].any()
    )
    w = sd["encoder.down.4.block.0.conv1.weight"]  # N(0, 2 / fan_in), fan_in 256 * 9
    assert float(w.std()) == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.01)
    small = seeded_random_state_dict(SMALL, seed=1)
    assert list(small) == [k for k, _ in state_dict_shapes(SMALL)]
    assert torch.equal(seeded_random_state_dict(SMALL, seed=1)["encoder.conv_in.weight"],
                       small["encoder.conv_in.weight"])  # fmt: skip


# ----------------------------------------------------------------------------- small model API


@pytest.fixture(scope="module")
def small() -> SpectrogramVQGAN:
    torch.manual_seed(0)
    return SpectrogramVQGAN(SMALL).eval()


def test_round_trip_shapes_and_consistency(small):
    x = torch.rand(2, 80, 70) * 2 - 1  # 70 frames -> 4 code columns -> 64 output frames
    with torch.inference_mode():
        xrec, qloss, (perplexity, _, indices) = small(x)
        codes = small.encode_to_codes(x)
        z_q, _, _ = small.encode(x.unsqueeze(1))
        again = small.decode_codes(codes)
        from_rows = small.decode(small.quantize.lookup(codes))
        from_zq = small.decode(z_q)
        rec3 = small.reconstruct(x)
        rec4 = small.reconstruct(x.unsqueeze(1))
    assert xrec.shape == (2, 1, 80, 64) and codes.shape == (2, 5, 4) and codes.dtype == torch.int64
    assert small.latent_shape(80, 70) == (5, 4)
    np.testing.assert_array_equal(indices.view(2, 5, 4).numpy(), codes.numpy())
    torch.testing.assert_close(again, from_rows, rtol=0, atol=0)
    # forward decodes the straight-through z + (e - z), which differs from e by float32 rounding
    # of z (|z| ~ 3: ~2e-7), amplified by the decoder's weights: well below 1e-4
    torch.testing.assert_close(again, xrec, rtol=0, atol=1e-4)
    torch.testing.assert_close(from_zq, xrec, rtol=0, atol=0)
    assert rec3.shape == (2, 80, 64) and rec4.shape == (2, 1, 80, 64)
    assert qloss.dim() == 0 and 1 <= float(perplexity) <= 128


def test_odd_width_gives_sixteen_times_floor():
    torch.manual_seed(1)
    model = SpectrogramVQGAN(SMALL).eval()
    with torch.inference_mode():
        out = model.reconstruct(torch.zeros(1, 1, 80, 295))
    assert out.shape == (1, 1, 80, 288)


def test_straight_through_and_loss_gradients():
    """Commitment weight 1 on z, codebook weight beta = 0.25 on e; z_q passes gradients to z."""
    torch.manual_seed(2)
    vq = VectorQuantizer(16, 8)
    z = torch.randn(2, 8, 3, 4, requires_grad=True)
    zq, loss, (_, one_hot, indices) = vq(z, return_one_hot=True)
    e = vq.embedding.weight[indices].view(2, 3, 4, 8).permute(0, 3, 1, 2)
    n = z.numel()
    gz, ge = torch.autograd.grad(loss, (z, vq.embedding.weight))
    torch.testing.assert_close(gz, 2 * (z - e).detach() / n)
    expected_ge = torch.zeros_like(vq.embedding.weight).index_add_(
        0, indices, (0.25 * 2 * (e - z).detach() / n).permute(0, 2, 3, 1).reshape(-1, 8)
    )
    torch.testing.assert_close(ge, expected_ge)
    mse = float(((z - e) ** 2).mean().detach())
    assert float(loss.detach()) == pytest.approx(1.25 * mse, rel=1e-6)
    g = torch.randn_like(zq)
    (zq * g).sum().backward()
    torch.testing.assert_close(z.grad, g)
    assert one_hot.shape == (24, 16) and torch.equal(one_hot.argmax(1), indices)


def test_float64_argmin_resolves_near_ties_float32_cannot():
    """Entries ~1/128 against |z|^2 ~ 1e3: the float32 expansion |z|^2 + |e|^2 - 2 z.e loses
    the difference; the quantiser's float64 argmin equals the exact nearest entry."""
    rs = np.random.RandomState(0)
    e = (rs.uniform(-1, 1, (128, 256)) / 128).astype(np.float32)
    z = (rs.standard_normal((2000, 256)) * 2).astype(np.float32)
    z64, e64 = z.astype(np.float64), e.astype(np.float64)
    exact = np.stack([((z64 - row) ** 2).sum(1) for row in e64], axis=1)  # direct, no expansion
    vq = VectorQuantizer(128, 256)
    with torch.no_grad():
        vq.embedding.weight.copy_(torch.from_numpy(e))
    ours = vq.nearest(torch.from_numpy(z)).numpy()
    np.testing.assert_array_equal(ours, exact.argmin(1))
    zt, et = torch.from_numpy(z), torch.from_numpy(e)
    d32 = (zt * zt).sum(1, keepdim=True) + (et * et).sum(1) - 2 * zt @ et.T
    assert (d32.argmin(1).numpy() != exact.argmin(1)).any()


def test_lookup_and_code_usage_errors(small):
    with pytest.raises(ValueError, match=r"\[0, 128\)"):
        small.decode_codes(torch.full((1, 5, 2), 128))
    with pytest.raises(ValueError, match="integers"):
        small.quantize.lookup(torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        small.quantize.lookup(torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        code_usage(torch.tensor([0, 4]), 4)
    assert code_usage(torch.tensor([[0, 3], [3, 3]]), 5).tolist() == [1, 0, 0, 3, 0]


def test_input_errors(small):
    with pytest.raises(ValueError, match=r"\(B, 1, mels, frames\)"):
        small.encode(torch.zeros(1, 2, 80, 64))
    with pytest.raises(ValueError, match="at least 16"):
        small.encode(torch.zeros(1, 1, 80, 15))
    with pytest.raises(ValueError, match="float tensor"):
        small.encode(torch.zeros(1, 1, 80, 64, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 64, H', W'\)"):
        small.decode(torch.zeros(1, 32, 5, 4))


def test_last_layer_and_bits(small):
    assert small.get_last_layer() is small.decoder.conv_out.weight
    assert small.name == "specvqgan-codec"
    assert small.bits_per_code == 7
    with torch.device("meta"):
        assert SpectrogramVQGAN(VQGANConfig.vggsound()).bits_per_code == 10
        assert SpectrogramVQGAN(VQGANConfig(n_embed=1000)).bits_per_code == 10
        assert SpectrogramVQGAN(VQGANConfig(n_embed=2)).bits_per_code == 1


# ----------------------------------------------------------------------------- config


def test_config_round_trip_and_presets():
    cfg = VQGANConfig.vas()
    assert cfg == VQGANConfig() and cfg.n_embed == 128 and VQGANConfig.vggsound().n_embed == 1024
    d = json.loads(json.dumps(SMALL.to_dict()))
    assert d["ch_mult"] == [1, 1, 2, 2, 4] and VQGANConfig.from_dict(d) == SMALL
    with pytest.raises(ValueError, match="unknown keys"):
        VQGANConfig.from_dict({**d, "double_z": False})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ch": 48}, "multiple of 32"),
        ({"n_embed": 1}, "n_embed"),
        ({"ch_mult": ()}, "ch_mult"),
        ({"num_res_blocks": 0}, "num_res_blocks"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VQGANConfig(**kwargs)


# ----------------------------------------------------------------------------- loading


def test_load_ignores_and_reports_loss_keys(small):
    sd = dict(small.state_dict())
    full = {**sd, "loss.discriminator.main.0.weight": torch.zeros(64, 1, 4, 4),
            "loss.perceptual_loss.lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}  # fmt: skip
    target = SpectrogramVQGAN(SMALL)
    report = target.load_authors_state_dict(full)
    assert isinstance(report, LoadReport)
    assert report.ignored == ("loss.discriminator.main.0.weight",
                              "loss.perceptual_loss.lin0.model.1.weight")  # fmt: skip
    assert report.missing == () and report.unexpected == ()
    torch.testing.assert_close(target.state_dict(), small.state_dict(), rtol=0, atol=0)


def test_load_is_strict_and_lists_keys(small):
    sd = dict(small.state_dict())
    del sd["decoder.conv_out.bias"]
    sd["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(CodebookStateDictError) as e:
        SpectrogramVQGAN(SMALL).load_authors_state_dict(sd)
    assert e.value.missing == ["decoder.conv_out.bias"]
    assert e.value.unexpected == ["decoder.extra.weight"]
    assert "decoder.conv_out.bias" in str(e.value)
    report = SpectrogramVQGAN(SMALL).load_authors_state_dict(sd, strict=False)
    assert report.missing == ("decoder.conv_out.bias",)
    assert report.unexpected == ("decoder.extra.weight",)


def test_load_wrong_shape_always_raises(small):
    sd = dict(small.state_dict())
    sd["quantize.embedding.weight"] = torch.zeros(1024, 64)
    for strict in (True, False):
        with pytest.raises(
            CodebookStateDictError, match=r"quantize.embedding.weight: \(1024, 64\)"
        ):
            SpectrogramVQGAN(SMALL).load_authors_state_dict(sd, strict=strict)


def test_load_hints(small):
    sd = dict(small.state_dict())
    with pytest.raises(CodebookStateDictError, match=r"ckpt\['state_dict'\]"):
        SpectrogramVQGAN(SMALL).load_authors_state_dict({"state_dict": sd, "global_step": 5})
    prefixed = {f"first_stage_model.{k}": v for k, v in sd.items()}
    with pytest.raises(CodebookStateDictError, match="strip 'first_stage_model.'"):
        SpectrogramVQGAN(SMALL).load_authors_state_dict(prefixed)
    with pytest.raises(CodebookStateDictError):
        SpectrogramVQGAN.from_state_dict(prefixed, SMALL)
