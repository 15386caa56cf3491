"""AST: Kaldi fbank frontend vs an independent float64 NumPy implementation; model, fusion, weights.

No golden data from the original AST code exists (no torchaudio/timm 0.4.5 build, no weights
here): the frontend is checked against Kaldi's formulas written out below, the transformer
against an explicit re-derivation of the timm ViT block, the converter by round trips.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from audiorep import weights
from audiorep.convert import ast as ca
from audiorep.convert.vggish import WeightsFormatError
from audiorep.features.fusion import GeneralPurposeAST
from audiorep.frontends.kaldi_fbank import (
    AST_MEAN,
    AST_STD,
    ASTFrontend,
    KaldiFbank,
    kaldi_mel_banks,
)
from audiorep.models.ast import (
    AST,
    AST_TAPS,
    adapt_position_embedding,
    patch_grid,
    seeded_random_state_dict,
)
from numerics import assert_reordering_close, ast_reductions
from test_weights import RangeHandler, TestServer

EPS32 = 1.1920928955078125e-07  # std::numeric_limits<float>::epsilon()

# ----------------------------------------------------------------------------- Kaldi reference


def kaldi_fbank_reference(
    wave: np.ndarray,
    *,
    sample_frequency: float = 16000.0,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    num_mel_bins: int = 23,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    window_type: str = "povey",
    preemph: float = 0.97,
    snip_edges: bool = True,
    use_energy: bool = False,
    raw_energy: bool = True,
    energy_floor: float = 1.0,
    htk_compat: bool = False,
) -> np.ndarray:
    """Kaldi ``compute-fbank-feats`` (feature-window.cc, mel-computations.cc), frame by frame,
    float64, written from Kaldi's definitions (not from torchaudio): ``(T, bins [+ 1])``."""
    x = np.asarray(wave, dtype=np.float64)
    n = len(x)
    win = int(sample_frequency * frame_length_ms * 0.001)
    shift = int(sample_frequency * frame_shift_ms * 0.001)
    nfft = 1
    while nfft < win:
        nfft *= 2
    if snip_edges:
        num = 0 if n < win else 1 + (n - win) // shift
    else:
        num = (n + shift // 2) // shift

    def sample(i: int) -> float:
        # ExtractWindow: indices outside [0, n) are reflected (-1 -> 0, n -> n - 1).
        while i < 0 or i >= n:
            i = -i - 1 if i < 0 else 2 * n - 1 - i
        return x[i]

    j = np.arange(win)
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * j / (win - 1))
    window = {
        "hanning": hann,
        "povey": hann**0.85,
        "hamming": 0.54 - 0.46 * np.cos(2 * math.pi * j / (win - 1)),
        "rectangular": np.ones(win),
    }[window_type]

    # Mel banks: triangles linear in mel = 1127 ln(1 + f / 700), over FFT bins 0 .. nfft/2 - 1.
    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    nyquist = sample_frequency / 2
    hi = high_freq if high_freq > 0 else nyquist + high_freq
    mlo, mhi = mel(low_freq), mel(hi)
    delta = (mhi - mlo) / (num_mel_bins + 1)
    banks = np.zeros((num_mel_bins, nfft // 2 + 1))
    for b in range(num_mel_bins):
        left, centre, right = mlo + b * delta, mlo + (b + 1) * delta, mlo + (b + 2) * delta
        for k in range(nfft // 2):
            m = mel(k * sample_frequency / nfft)
            if left < m < right:
                banks[b, k] = (
                    (m - left) / (centre - left)
                    if m <= centre
                    else ((right - m) / (right - centre))
                )

    out = []
    for t in range(num):
        start = t * shift if snip_edges else t * shift + shift // 2 - win // 2
        frame = np.array([sample(start + s) for s in range(win)])
        frame = frame - frame.mean()
        energy = None
        if use_energy and raw_energy:
            energy = math.log(max(float(np.sum(frame**2)), EPS32))
        emph = frame.copy()
        for s in range(win - 1, 0, -1):
            emph[s] -= preemph * frame[s - 1]
        emph[0] -= preemph * frame[0]
        windowed = np.zeros(nfft)
        windowed[:win] = emph * window
        if use_energy and not raw_energy:
            energy = math.log(max(float(np.sum(windowed**2)), EPS32))
        power = np.abs(np.fft.rfft(windowed)) ** 2
        feats = np.log(np.maximum(banks @ power, EPS32))
        if energy is not None:
            energy = max(energy, math.log(energy_floor)) if energy_floor > 0 else energy
            feats = np.append(feats, energy) if htk_compat else np.insert(feats, 0, energy)
        out.append(feats)
    width = num_mel_bins + (1 if use_energy else 0)
    return np.array(out).reshape(num, width)


def _signals() -> np.ndarray:
    """Two 1 s clips at 16 kHz in [-1, 1]: tone + chirp + noise (with a DC offset), speech-like."""
    rng = np.random.default_rng(7)
    t = np.arange(16000) / 16000
    a = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * (200 + 3000 * t) * t)
    a = a + 0.02 * rng.standard_normal(t.size) + 0.05
    b = rng.standard_normal(t.size) * np.exp(-3 * t) * 0.2 * np.sin(2 * np.pi * 3 * t)
    return np.stack([a, b]).astype(np.float32)


CONFIGS = {
    "ast": dict(num_mel_bins=128, window_type="hanning", htk_compat=True),
    "kaldi_default": dict(num_mel_bins=23),
    "energy_htk": dict(num_mel_bins=40, use_energy=True, htk_compat=True),
    "energy_first_windowed": dict(num_mel_bins=40, use_energy=True, raw_energy=False),
    "no_snip_hamming": dict(num_mel_bins=64, snip_edges=False, window_type="hamming"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_kaldi_fbank_matches_reference(name):
    cfg = CONFIGS[name]
    waves = _signals()[:, :6000]  # 36 frames each keep the loop reference quick
    ref = np.stack([kaldi_fbank_reference(w, **cfg) for w in waves])
    ours_kw = dict(cfg)
    f64 = KaldiFbank(dtype=torch.float64, **ours_kw)(torch.from_numpy(waves).double()).numpy()
    assert f64.shape == ref.shape
    np.testing.assert_allclose(f64, ref, rtol=0, atol=1e-9)
    # float32 (torchaudio's precision on float32 input): loud bins agree closely; bins near
    # the eps floor or deep spectral valleys carry float32 rounding of the whole frame's energy.
    f32 = KaldiFbank(**ours_kw)(torch.from_numpy(waves)).numpy()
    loud = ref > ref.max() - 12.0  # within ~52 dB of the loudest value
    np.testing.assert_allclose(f32[loud], ref[loud], rtol=0, atol=2e-4)
    np.testing.assert_allclose(f32, ref, rtol=0, atol=2e-3)


def test_kaldi_frame_counts_and_banks():
    fb = KaldiFbank()
    assert (fb.window_size, fb.window_shift, fb.padded_window_size) == (400, 160, 512)
    assert [fb.num_frames(n) for n in (399, 400, 559, 560, 16000)] == [0, 1, 1, 2, 98]
    assert fb(torch.zeros(1, 300)).shape == (1, 0, 23)
    assert KaldiFbank(snip_edges=False).num_frames(16000) == 100
    banks = kaldi_mel_banks(128, 512, 16000.0, 20.0, 0.0)
    assert banks.shape == (128, 257) and (banks[:, -1] == 0).all()
    # 128 triangles between 20 Hz and 8 kHz on a 31.25 Hz grid: the narrowest low ones fall
    # between FFT bins and are empty, so AST's lowest bands are constant log(eps).
    assert (banks.sum(1) == 0).sum() > 0 and (banks.sum(1)[40:] > 0).all()
    silent = KaldiFbank(num_mel_bins=128)(torch.zeros(1, 1600))
    torch.testing.assert_close(silent, torch.full_like(silent, math.log(EPS32)))


def test_ast_frontend_pipeline():
    waves = _signals()
    fe = ASTFrontend()
    out = fe(torch.from_numpy(waves))
    assert out.shape == (2, 1024, 128)
    # reference: mean-removed clip -> fbank -> zero-pad to 1024 frames -> (x - mean) / (2 std)
    for i, w in enumerate(waves):
        ref = kaldi_fbank_reference(
            w.astype(np.float64) - w.astype(np.float64).mean(),
            num_mel_bins=128,
            window_type="hanning",
            htk_compat=True,
        )
        assert ref.shape == (98, 128)
        padded = np.zeros((1024, 128))
        padded[:98] = ref
        expected = (padded - AST_MEAN) / (2 * AST_STD)
        loud = padded > padded[:98].max() - 12.0
        np.testing.assert_allclose(out[i].numpy()[loud], expected[loud], atol=5e-5)
        np.testing.assert_allclose(out[i].numpy(), expected, atol=0.01)
        # padded frames: (0 - mean) / (2 std), not 0, as AST pads before normalising
        np.testing.assert_allclose(out[i, 98:].numpy(), -AST_MEAN / (2 * AST_STD), rtol=1e-6)
    # the DC offset of the clip is removed first
    shifted = fe(torch.from_numpy(waves) + 0.3)
    torch.testing.assert_close(shifted, out, atol=2e-4, rtol=0)
    # longer clips are cut to 1024 frames; target_length=None keeps them; no normalisation
    long = torch.from_numpy(np.tile(waves[:1], 11))  # 11 s -> 1098 frames
    assert fe(long).shape == (1, 1024, 128)
    raw = ASTFrontend(target_length=None, normalize=False)(long)
    assert raw.shape == (1, 1098, 128)
    torch.testing.assert_close(fe(long), (raw[:, :1024] - AST_MEAN) / (2 * AST_STD))


# ----------------------------------------------------------------------------- model

SMALL = dict(input_tdim=48, embed_dim=32, depth=3, num_heads=4)  # 12 x 4 patches, 50 tokens


def _small_model(seed: int = 1, **over) -> AST:
    cfg = {**SMALL, **over}
    model = AST(**cfg)
    model.load_state_dict(seeded_random_state_dict(seed, **cfg))
    return model.eval()


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> dict:
    """timm-0.4.5 ViT + AST head written out in float64 (patches by unfold, explicit softmax,
    erf GELU, LayerNorm eps 1e-6 inside / 1e-5 in the head)."""
    p = {k: v.double() for k, v in sd.items()}
    img = x.double().transpose(1, 2)[:, None]  # (B, 1, F, T)
    cols = torch.nn.functional.unfold(img, kernel_size=16, stride=10)  # (B, 256, L)
    w = p["patch_embed.proj.weight"].reshape(p["patch_embed.proj.weight"].shape[0], -1)
    tok = (w @ cols).transpose(1, 2) + p["patch_embed.proj.bias"]  # (B, L, D), L f-major
    b, _, d = tok.shape
    h = torch.cat([p["cls_token"].expand(b, 1, d), p["dist_token"].expand(b, 1, d), tok], 1)
    h = h + p["pos_embed"]

    def ln(v, prefix, eps):
        mu = v.mean(-1, keepdim=True)
        var = ((v - mu) ** 2).mean(-1, keepdim=True)
        return (v - mu) / torch.sqrt(var + eps) * p[f"{prefix}.weight"] + p[f"{prefix}.bias"]

    def lin(v, prefix):
        return v @ p[f"{prefix}.weight"].T + p[f"{prefix}.bias"]

    outs = {}
    i = 0
    while f"blocks.{i}.norm1.weight" in p:
        q, k, v = lin(ln(h, f"blocks.{i}.norm1", 1e-6), f"blocks.{i}.attn.qkv").chunk(3, -1)
        split = [t.reshape(b, -1, heads, d // heads).transpose(1, 2) for t in (q, k, v)]
        att = torch.softmax(split[0] @ split[1].transpose(-1, -2) / math.sqrt(d // heads), -1)
        y = (att @ split[2]).transpose(1, 2).reshape(b, -1, d)
        h = h + lin(y, f"blocks.{i}.attn.proj")
        m = lin(ln(h, f"blocks.{i}.norm2", 1e-6), f"blocks.{i}.mlp.fc1")
        m = 0.5 * m * (1 + torch.erf(m / math.sqrt(2)))
        h = h + lin(m, f"blocks.{i}.mlp.fc2")
        outs[f"block_{i}"] = h
        i += 1
    hn = ln(h, "norm", 1e-6)
    emb = (hn[:, 0] + hn[:, 1]) / 2
    outs.update(norm=hn, embedding=emb, logits=lin(ln(emb, "head_norm", 1e-5), "head"))
    return outs


def test_model_matches_explicit_reference():
    model = _small_model()
    x = torch.randn(2, 48, 128)
    with torch.no_grad():
        taps = model.forward_taps(x)
    ref = reference_forward(model.state_dict(), x, heads=4)
    for name, value in ref.items():
        torch.testing.assert_close(taps[name].double(), value, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(taps["clipwise"], torch.sigmoid(taps["logits"]))
    with torch.no_grad():
        again = model(x)
        single = model(x[1:])
    torch.testing.assert_close(again, taps["embedding"], rtol=0, atol=0)  # deterministic
    # batch-independent up to summation order (no frontend here: drop the fbank's reductions)
    assert_reordering_close(single, again[1:], ast_reductions(3, 32, 50)[2:])


def test_audioset_configuration_shapes():
    assert patch_grid() == (12, 101)
    model = AST(depth=2).eval()  # full width and sequence, two blocks to keep it quick
    assert model.tap_names[:4] == AST_TAPS[:4] and model.tap_names[-4:] == AST_TAPS[-4:]
    with torch.device("meta"):  # shapes only, no 86 M-parameter init
        full = AST()
    assert full.tap_names == AST_TAPS and len(AST_TAPS) == 18
    # DeiT-base distilled body + 527-way head (the AudioSet checkpoint's size)
    assert sum(v.numel() for v in full.state_dict().values()) == 86_594_063
    assert model.pos_embed.shape == (1, 1214, 768)
    x = torch.randn(1, 1024, 128)
    with torch.no_grad():
        taps = model.forward_taps(x)
    shapes = {k: tuple(v.shape) for k, v in taps.items()}
    assert shapes == {
        "patch_embed": (1, 1212, 768),
        "tokens": (1, 1214, 768),
        "block_0": (1, 1214, 768),
        "block_1": (1, 1214, 768),
        "norm": (1, 1214, 768),
        "embedding": (1, 768),
        "logits": (1, 527),
        "clipwise": (1, 527),
    }
    with pytest.raises(ValueError, match=r"\(B, 1024, 128\)"):
        model(torch.zeros(1, 1000, 128))


def test_position_embedding_adaptation():
    pos = torch.randn(1, 2 + 12 * 101, 8)
    grid = pos[:, 2:].transpose(1, 2).reshape(1, 8, 12, 101)
    short = adapt_position_embedding(pos, (12, 101), patch_grid(input_tdim=496))  # t = 49
    assert short.shape == (1, 2 + 12 * 49, 8)
    torch.testing.assert_close(short[:, :2], pos[:, :2])
    # AST keeps the middle columns: 50 - 49 // 2 = 26 ... 74
    expected = grid[:, :, :, 26:75].reshape(1, 8, -1).transpose(1, 2)
    torch.testing.assert_close(short[:, 2:], expected)
    long = adapt_position_embedding(pos, (12, 101), (12, 150))
    assert long.shape == (1, 2 + 12 * 150, 8)
    assert adapt_position_embedding(pos, (12, 101), (12, 101)) is pos


def test_ast_fusion():
    model = _small_model(depth=12)
    x = torch.randn(2, 48, 128)
    fusion = GeneralPurposeAST(model)  # paper's "AST-Fusion#5#12" = blocks [4, 11]
    assert fusion.dim == 64 and fusion.taps == ["block_4", "block_11"] and fusion.clip_level
    with torch.no_grad():
        taps = model.forward_taps(x)
        out = fusion(x)
        frames = fusion.encode_frames(x)
    expected = torch.cat([model.pool_layer(taps["block_4"]), model.pool_layer(taps["block_11"])], 1)
    torch.testing.assert_close(out, expected)
    assert frames.shape == (2, 64, 1)  # EVAR's AR_AST.encode_frames layout
    torch.testing.assert_close(frames[..., 0], out)
    # the last block through the model's norm and pooling is the embedding tap itself
    torch.testing.assert_close(out[:, 32:], taps["embedding"])
    same = GeneralPurposeAST(model, ["block_11", 4, "4"])
    assert [la.tap for la in same.layers] == ["block_4", "block_11"]
    for bad in (12, -1, "norm"):
        with pytest.raises(ValueError, match="AST fusion layer"):
            GeneralPurposeAST(model, [bad])


# ----------------------------------------------------------------------------- weights


def _original_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """audiorep names -> the DataParallel ASTModel checkpoint layout (+ DeiT's unused heads)."""
    out = {}
    for k, v in sd.items():
        if k.startswith("head_norm."):
            out["module.mlp_head.0." + k[len("head_norm.") :]] = v
        elif k.startswith("head."):
            out["module.mlp_head.1." + k[len("head.") :]] = v
        else:
            out["module.v." + k] = v
    d = sd["cls_token"].shape[-1]
    out.update(
        {
            "module.v.head.weight": torch.zeros(1000, d),
            "module.v.head.bias": torch.zeros(1000),
            "module.v.head_dist.weight": torch.zeros(1000, d),
            "module.v.head_dist.bias": torch.zeros(1000),
        }
    )
    return out


def _hf_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """audiorep names -> Hugging Face ASTForAudioClassification names (q, k, v split)."""
    pre = "audio_spectrogram_transformer."
    out = {
        pre + "embeddings.cls_token": sd["cls_token"],
        pre + "embeddings.distillation_token": sd["dist_token"],
        pre + "embeddings.position_embeddings": sd["pos_embed"],
        pre + "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        pre + "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        pre + "layernorm.weight": sd["norm.weight"],
        pre + "layernorm.bias": sd["norm.bias"],
        "classifier.layernorm.weight": sd["head_norm.weight"],
        "classifier.layernorm.bias": sd["head_norm.bias"],
        "classifier.dense.weight": sd["head.weight"],
        "classifier.dense.bias": sd["head.bias"],
    }
    names = {
        "attn.proj": "attention.output.dense",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
    }
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        layer = f"{pre}encoder.layer.{i}."
        for leaf in ("weight", "bias"):
            q, k, v = sd[f"blocks.{i}.attn.qkv.{leaf}"].chunk(3, 0)
            for part, value in zip(("query", "key", "value"), (q, k, v)):
                out[f"{layer}attention.attention.{part}.{leaf}"] = value
            for ours, theirs in names.items():
                out[f"{layer}{theirs}.{leaf}"] = sd[f"blocks.{i}.{ours}.{leaf}"]
        i += 1
    return out


def test_converter_layouts(tmp_path):
    sd = _small_model().state_dict()
    for layout in (_original_layout, _hf_layout):
        mapped = ca.ast_to_state_dict(layout(sd), input_tdim=48)
        assert list(mapped) == list(sd)
        for k, v in sd.items():
            assert torch.equal(mapped[k], v), (layout.__name__, k)
    # shorter inputs: the position embedding is cut as AST does
    short = ca.ast_to_state_dict(_original_layout(sd), input_tdim=28)  # 4 -> 2 time patches
    grid = sd["pos_embed"][:, 2:].transpose(1, 2).reshape(1, 32, 12, 4)
    torch.testing.assert_close(
        short["pos_embed"][:, 2:], grid[:, :, :, 1:3].reshape(1, 32, -1).transpose(1, 2)
    )
    model = AST(**{**SMALL, "input_tdim": 28})
    model.load_state_dict(short)  # loads into the model built for 28 frames
    broken = _original_layout(sd)
    del broken["module.v.blocks.1.mlp.fc2.bias"]
    with pytest.raises(ValueError, match=r"missing blocks\.1\.mlp\.fc2\.bias"):
        ca.ast_to_state_dict(broken, input_tdim=48)
    with pytest.raises(ValueError, match="is this an AST file"):
        ca.ast_to_state_dict({"conv1.weight": torch.zeros(1)})
    junk = tmp_path / "junk.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, junk)
    with pytest.raises(WeightsFormatError, match="junk.pth"):
        ca.load_ast_weights(junk)


@pytest.mark.network
def test_checkpoint_download_and_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIOREP_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("AUDIOREP_OFFLINE", raising=False)
    sd = _small_model().state_dict()
    ckpt = tmp_path / "ast.pth"
    torch.save(_original_layout(sd), ckpt)  # AST saves the DataParallel state_dict itself
    entry = weights.REGISTRY["ast-audioset"]
    assert entry.filename == "audioset_10_10_0.4593.pth" and "dropbox" in entry.urls[0]
    assert weights.REGISTRY["ast-audioset-hf"].urls[0].startswith("https://huggingface.co/MIT/")
    server = TestServer(RangeHandler)
    try:
        server.files["ast.pth"] = ckpt.read_bytes()
        monkeypatch.setitem(
            weights.REGISTRY,
            "ast-audioset",
            dataclasses.replace(entry, urls=(server.url("ast.pth"),)),
        )
        with pytest.warns(weights.UnpinnedWeightsWarning):
            path = weights.fetch("ast-audioset", progress=False)
    finally:
        server.close()
    loaded = ca.load_ast_weights(path, input_tdim=48)
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())
    out = ca.convert(path, tmp_path / "ast.safetensors")
    again = ca.load_ast_weights(out, input_tdim=48)
    assert all(torch.equal(again[k], v) for k, v in sd.items())
