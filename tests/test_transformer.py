"""SpecVQGAN's code transformer and sampler against the authors' golden outputs.

Fixtures and tolerances: tests/fixtures/specvqgan_transformer/README.md.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from audiorep.models.gpt import (
    GPT,
    GPTClass,
    GPTConfig,
    GPTFeats,
    GPTFeatsClass,
    gpt_state_dict_shapes,
    seeded_random_state_dict,
)
from audiorep.models.vqgan import SpectrogramVQGAN, VQGANConfig
from audiorep.models.vqgan import seeded_random_state_dict as codec_recipe
from audiorep.specvqgan.sampling import (
    SamplingCancelled,
    SamplingSettings,
    StepEvent,
    authors_loop,
    filter_logits,
    sample_tokens,
)
from audiorep.specvqgan.transformer import (
    CodeTransformer,
    TransformerSpec,
    load_trained_transformer,
    load_transformer,
    save_transformer,
    spec_from_project_yaml,
    transformer_from_lightning,
)

HERE = Path(__file__).parent / "fixtures"
FIX = HERE / "specvqgan_transformer"
MINI = GPTConfig(vocab_size=128, block_size=270, n_layer=2, n_head=4, n_embd=64)
RUNS = {  # run: (seed, primed tokens, temperature, top_k)
    "sample_t1.0_k10": (20261150, 0, 1.0, 10),
    "sample_t0.7_k64": (20261151, 0, 0.7, 64),
    "sample_half_t1.0_k100": (20261152, 132, 1.0, 100),
    "sample_t1.0_k64": (20261153, 0, 1.0, 64),
    "generate_samples_nopix_t1.0_k64": (20261153, 0, 1.0, 64),
    "generate_samples_half_t1.0_k64": (20261154, 130, 1.0, 64),
}


def load(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(FIX / name, allow_pickle=False))


@pytest.fixture(scope="module")
def model() -> CodeTransformer:
    codec = SpectrogramVQGAN(VQGANConfig.vas())
    codec.load_state_dict(codec_recipe())
    spec = TransformerSpec(gpt=MINI, kind="feature", feat_depth=2048, feat_sample_size=5)
    m = CodeTransformer.build(spec, codec)
    m.transformer.load_state_dict(seeded_random_state_dict(MINI), strict=True)
    return m.eval()


@pytest.fixture(scope="module")
def condition() -> torch.Tensor:
    return load("transformer_condition.npy")


@pytest.fixture(scope="module")
def target() -> torch.Tensor:
    return load("transformer_target_tokens.npy")


def _expected_gpt_keys(n_layer: int) -> list[str]:
    # The authors' minGPT order: own parameter, embedding, blocks (LayerNorms, the attention
    # mask buffer before its child Linears, MLP), final norm, head, then the embedder.
    keys = ["pos_emb", "tok_emb.weight"]
    for i in range(n_layer):
        p = f"blocks.{i}"
        keys += [f"{p}.ln1.weight", f"{p}.ln1.bias", f"{p}.ln2.weight", f"{p}.ln2.bias"]
        keys += [f"{p}.attn.mask"]
        for m in ("key", "query", "value", "proj"):
            keys += [f"{p}.attn.{m}.weight", f"{p}.attn.{m}.bias"]
        keys += [f"{p}.mlp.0.weight", f"{p}.mlp.0.bias", f"{p}.mlp.2.weight", f"{p}.mlp.2.bias"]
    return keys + ["ln_f.weight", "ln_f.bias", "head.weight", "embedder.weight", "embedder.bias"]


def test_state_dict_keys_and_shapes_are_the_authors():
    shapes = dict(gpt_state_dict_shapes(MINI, 2048))
    assert list(shapes) == _expected_gpt_keys(2)
    assert shapes["pos_emb"] == (1, 270, 64)
    assert shapes["blocks.1.attn.mask"] == (1, 1, 270, 270)
    assert shapes["embedder.weight"] == (64, 2048, 1)
    assert shapes["blocks.0.mlp.0.weight"] == (256, 64)
    # the released VAS size: 24 x (12 d^2 + 13 d) + embeddings, ~305 M parameters
    big = gpt_state_dict_shapes(GPTConfig(128, 477, 24, 16, 1024), 2048)
    n = sum(int(np.prod(s)) for k, s in big if not k.endswith("attn.mask"))
    assert 304e6 < n < 306e6


def test_class_variants_have_their_embedder_keys():
    cls = [k for k, _ in gpt_state_dict_shapes(MINI, None, 8) if "embedder" in k]
    assert cls == ["embedder.weight"]
    both = dict(gpt_state_dict_shapes(MINI, 2048, 8))
    assert both["feat_embedder.weight"] == (64, 2048, 1)
    assert both["cls_embedder.weight"] == (8, 64)


def test_model_keys_are_net2net_groups(model):
    keys = list(model.state_dict())
    assert {k.split(".")[0] for k in keys} == {
        "transformer",
        "first_stage_model",
        "first_stage_permuter",
    }
    perm = model.first_stage_permuter
    assert perm.forward_shuffle_idx[:7].tolist() == [0, 53, 106, 159, 212, 1, 54]
    assert torch.equal(perm.forward_shuffle_idx[perm.backward_shuffle_idx], torch.arange(265))


def test_tokens_of_the_codec_input_are_the_target(model, target):
    mel = torch.from_numpy(np.load(HERE / "specvqgan_codebook" / "codebook_main_input.npy"))
    assert torch.equal(model.codes_of(mel), target)


def test_teacher_forced_logits_and_loss(model, condition, target):
    info = json.loads((FIX / "transformer_info.json").read_text())
    with torch.no_grad():
        logits = model.logits(target, condition)
        loss = model.loss(target, condition)
    ref = load("transformer_logits.npy")
    assert logits.shape == ref.shape
    assert torch.allclose(logits, ref, atol=1e-4, rtol=0)
    assert loss.item() == pytest.approx(info["loss"], rel=1e-5)
    _, att = model.transformer(target[:, :-1], condition, need_attention=True)
    assert list(att.shape) == info["attention_shape_last_block"]
    assert torch.allclose(att.sum(-1), torch.ones(()), atol=1e-5)


def test_greedy_decoding_and_its_spectrogram(model, condition):
    tokens = sample_tokens(model, condition, SamplingSettings(greedy=True))
    assert torch.equal(tokens, load("transformer_greedy_tokens.npy"))
    decoded = model.decode(tokens)
    assert torch.allclose(decoded, load("transformer_greedy_decoded.npy"), atol=5e-4, rtol=0)


def test_top_k_keeps_the_authors_set(model, condition):
    with torch.no_grad():
        first, _ = model.transformer(torch.zeros(1, 0, dtype=torch.long), condition)
    got = filter_logits(first[:, -1], SamplingSettings(top_k=10))
    ref = load("transformer_topk10_step0.npy")
    assert torch.equal(torch.isinf(got), torch.isinf(ref))
    finite = torch.isfinite(ref)
    assert torch.allclose(got[finite], ref[finite], atol=1e-4, rtol=0)


@pytest.mark.parametrize("run", sorted(RUNS))
def test_seeded_sampling_gives_the_authors_tokens(model, condition, target, run):
    seed, prime, temperature, top_k = RUNS[run]
    info = json.loads((FIX / "sampling_info.json").read_text())["runs"][run]
    assert (info["torch_seed"], info["top_k"]) == (seed, top_k)
    settings = SamplingSettings(temperature=temperature, top_k=top_k, prime_tokens=prime)
    ref = load(f"sampling_{run}_tokens.npy")
    cached = sample_tokens(model, condition, settings, seed=seed, prime=target)
    assert torch.equal(cached, ref)
    assert torch.equal(cached[:, :prime], target[:, :prime])
    # the global generator after torch.manual_seed, as the authors' scripts use it
    torch.manual_seed(seed)
    assert torch.equal(authors_loop(model, condition, settings, prime=target), ref)


@pytest.mark.parametrize(
    "settings",
    [
        SamplingSettings(top_k=20, width_scale=2),
        SamplingSettings(top_p=0.8, temperature=1.3),
        SamplingSettings(top_k=64, prime_tokens=130, width_scale=2),
    ],
    ids=["width2", "top_p", "half_width2"],
)
def test_cache_equals_full_recompute_token_for_token(model, condition, target, settings):
    prime = torch.cat([target, target], dim=1)
    a = sample_tokens(model, condition, settings, seed=11, prime=prime)
    b = authors_loop(model, condition, settings, seed=11, prime=prime)
    assert a.shape == (1, 265 * settings.width_scale)
    assert torch.equal(a, b)


def test_batch_with_one_generator_draws_like_the_authors_batch(model, condition):
    cond = torch.cat([condition, condition.flip(-1)])
    settings = SamplingSettings(top_k=32)
    a = sample_tokens(model, cond, settings, seed=5)
    b = authors_loop(model, cond, settings, seed=5)
    assert torch.equal(a, b)


def test_per_row_seeds_do_not_depend_on_the_batch(model, condition):
    settings = SamplingSettings(top_k=32)
    both = sample_tokens(model, condition, settings, seeds=[3, 4], num_samples=2)
    alone = sample_tokens(model, condition, settings, seeds=[4])
    assert torch.equal(both[1], alone[0])
    assert not torch.equal(both[0], both[1])


def test_kv_cache_logits_equal_full_forward_for_every_variant():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=50, block_size=40, n_layer=2, n_head=2, n_embd=16)
    idx = torch.randint(0, 50, (2, 30))
    cases = [
        (GPTFeats(cfg, 12), torch.rand(2, 12, 3)),
        (GPTClass(cfg, 4), torch.tensor([[1], [3]])),
        (
            GPTFeatsClass(cfg, 12, 4),
            {"feature": torch.rand(2, 12, 3), "target": torch.tensor([0, 2])},
        ),
        (GPT(cfg), torch.randn(2, 2, 16)),
    ]
    for gpt, cond in cases:
        gpt.eval()
        with torch.no_grad():
            full, _ = gpt(idx, cond)
            cache = gpt.new_cache(2)
            first, _ = gpt(idx[:, :10], cond, cache=cache)
            rest = [gpt(idx[:, j : j + 1], None, cache=cache)[0] for j in range(10, 30)]
        stepped = torch.cat([first] + rest, dim=1)
        # float32 sums of <= 64 products of O(1) terms: rounding far below 1e-5
        assert torch.allclose(stepped, full, atol=1e-5, rtol=0), type(gpt).__name__
        assert full.shape[1] == gpt.condition_length(cond) + 30


def test_block_size_and_condition_errors():
    gpt = GPTClass(GPTConfig(10, 8, 1, 1, 4), 3)
    with pytest.raises(ValueError, match="block size"):
        gpt(torch.zeros(1, 8, dtype=torch.long), torch.tensor([[0]]))
    with pytest.raises(ValueError, match="class index"):
        gpt(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[3]]))
    with pytest.raises(ValueError, match="block_size"):
        TransformerSpec(gpt=GPTConfig(10, 100, 1, 1, 4), kind="feature", feat_sample_size=5)
    with pytest.raises(ValueError, match="temperature"):
        SamplingSettings(temperature=0)
    with pytest.raises(ValueError, match="unknown GPT config"):
        GPTConfig.from_dict({"vocab_size": 3, "block_size": 4, "n_layers": 2})


def test_progress_events_and_cancel(model, condition):
    events: list[StepEvent] = []
    sample_tokens(
        model, condition, SamplingSettings(top_k=8), seed=1, on_step=events.append, every=50
    )
    assert [e.step for e in events] == [0, 50, 100, 150, 200, 250, 264]
    last = events[-1]
    assert last.tokens.shape == (1, 265) and last.total == 265
    assert last.attention.shape == (1, 4, 5 + 264)  # condition + the tokens before the last
    assert torch.allclose(last.attention.sum(-1), torch.ones(()), atol=1e-5)
    cancel = threading.Event()

    def stop_at_ten(event: StepEvent) -> None:
        if event.step == 10:
            cancel.set()

    with pytest.raises(SamplingCancelled, match="token 11 of 265"):
        sample_tokens(model, condition, seed=1, on_step=stop_at_ten, cancel=cancel)


def _small_codec() -> SpectrogramVQGAN:
    cfg = VQGANConfig(ch=32, ch_mult=(1, 1, 1, 1, 1), num_res_blocks=1, attn_resolutions=(),
                      z_channels=8, embed_dim=8, n_embed=16)  # fmt: skip
    torch.manual_seed(1)
    return SpectrogramVQGAN(cfg).eval()


PROJECT_YAML = """\
model:
  base_learning_rate: 1.0e-06
  target: specvqgan.models.cond_transformer.Net2NetTransformer
  params:
    cond_stage_key: target
    transformer_config:
      target: specvqgan.modules.transformer.mingpt.GPTClass
      params:
        token_embedding_config:
          target: torch.nn.Embedding
          params: {num_embeddings: 8, embedding_dim: 32}
        GPT_config: {vocab_size: 16, block_size: 266, n_layer: 1, n_head: 2, n_embd: 32}
    first_stage_permuter_config:
      target: specvqgan.modules.transformer.permuter.ColumnMajor
      params: {H: 5, W: 53}
    first_stage_config:
      target: specvqgan.models.vqgan.VQModel
      params:
        embed_dim: 8
        n_embed: 16
        ddconfig: {double_z: false, z_channels: 8, resolution: 848, in_channels: 1, out_ch: 1,
                   ch: 32, ch_mult: [1, 1, 1, 1, 1], num_res_blocks: 1, attn_resolutions: [],
                   dropout: 0.0}
        lossconfig: {target: specvqgan.modules.losses.DummyLoss}
    cond_stage_config: {target: specvqgan.modules.misc.class_cond.ClassOnlyStage}
data:
  params:
    train: {target: specvqgan.data.vas.VASSpecsCondOnClassTrain}
"""


def test_authors_logdir_loads_strictly(tmp_path):
    yaml = pytest.importorskip("yaml")
    spec = spec_from_project_yaml(yaml.safe_load(PROJECT_YAML))
    assert (spec.kind, spec.n_classes, spec.condition_length) == ("class", 8, 1)
    assert spec.classes[:2] == ("baby", "cough")
    torch.manual_seed(2)
    ours = CodeTransformer.build(spec, _small_codec())
    logdir = tmp_path / "2021-07-30T09-42-07_vas_transformer"
    (logdir / "checkpoints").mkdir(parents=True)
    (logdir / "configs").mkdir()
    (logdir / "configs" / "2021-07-30T09-42-07-project.yaml").write_text(PROJECT_YAML)
    ckpt = {"state_dict": ours.state_dict(), "global_step": 7, "epoch": 1}
    torch.save(ckpt, logdir / "checkpoints" / "epoch_01.ckpt")
    loaded, name = load_transformer(str(logdir))
    assert name == logdir.name
    for k, v in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    yaml_path = logdir / "configs" / "2021-07-30T09-42-07-project.yaml"
    direct = transformer_from_lightning(logdir / "checkpoints" / "epoch_01.ckpt", yaml_path)
    assert direct.spec.kind == "class" and direct.spec.n_classes == 8
    # without its config the small codec cannot be guessed: a clear error, not a key dump
    with pytest.raises(ValueError, match="no configs/.*-project.yaml given"):
        transformer_from_lightning(logdir / "checkpoints" / "epoch_01.ckpt")


def test_saved_transformer_round_trip_checks_its_codec(tmp_path):
    codec = _small_codec()
    spec = TransformerSpec(gpt=GPTConfig(16, 266, 1, 2, 32), kind="class", n_classes=3,
                           feat_depth=0, feat_sample_size=0, classes=("a", "b", "c"))  # fmt: skip
    torch.manual_seed(3)
    model = CodeTransformer.build(spec, codec)
    path = save_transformer(model, tmp_path / "t.safetensors", {"note": "test"})
    loaded, info = load_trained_transformer(path, codec=codec)
    assert info["note"] == "test" and loaded.classes == ["a", "b", "c"]
    cond = torch.tensor([[1]])
    settings = SamplingSettings(top_k=5)
    assert torch.equal(
        sample_tokens(model, cond, settings, seed=9), sample_tokens(loaded, cond, settings, seed=9)
    )
    other = _small_codec()
    with torch.no_grad():
        other.quantize.embedding.weight.add_(1.0)
    with pytest.raises(ValueError, match="tokens would mean nothing"):
        load_trained_transformer(path, codec=other)
