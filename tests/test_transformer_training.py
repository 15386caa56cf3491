"""The code transformer's training loop and token datasets: optimizer groups, the loss falls,
exact resume, save/load, the NaN guard, the class-clip token dataset (with augmented views and
its cache) and ``audiorep specvqgan train-transformer``. Tiny models and clips, a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from torch import nn

from audiorep.cli import main
from audiorep.models.vqgan import SpectrogramVQGAN, VQGANConfig
from audiorep.specvqgan import code_dataset
from audiorep.specvqgan.classifier_data import audio_mel
from audiorep.specvqgan.code_dataset import (
    TokenSet,
    augmented_mel,
    class_token_sets,
    encode_mels,
)
from audiorep.specvqgan.codec_training import save_trained_codec
from audiorep.specvqgan.transformer import (
    CodeTransformer,
    load_trained_transformer,
    save_transformer,
)
from audiorep.specvqgan.transformer_training import (
    EpochBatches,
    TransformerTrainConfig,
    configure_optimizer,
    parameter_groups,
    train_transformer,
    transformer_spec,
)

TINY_CODEC = {
    "ch": 32,
    "ch_mult": (1, 1, 1, 1, 1),
    "num_res_blocks": 1,
    "attn_resolutions": (),
    "z_channels": 32,
    "embed_dim": 16,
    "n_embed": 16,
}
CLASSES = ("beep", "noise")


@pytest.fixture(scope="module")
def codec() -> SpectrogramVQGAN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SpectrogramVQGAN(VQGANConfig(**TINY_CODEC)).eval()


def tiny_config(**kw) -> TransformerTrainConfig:
    base = dict(
        kind="class", n_layer=1, n_head=2, n_embd=32, batch_size=4, learning_rate=3e-3,
        eval_every=4, patience=0,
    )  # fmt: skip
    return TransformerTrainConfig(**{**base, **kw})


def token_sets(n_train: int = 24, n_valid: int = 8, vocab: int = 16) -> tuple[TokenSet, TokenSet]:
    """Class 0: tokens cycle 0..3 by band; class 1: the same cycle on 8..11 (learnable)."""
    g = torch.Generator().manual_seed(1)

    def make(n: int, split: str) -> TokenSet:
        targets = torch.arange(n) % 2
        base = torch.arange(265) % 5 % 4
        tokens = base[None].repeat(n, 1) + 8 * targets[:, None]
        noise = torch.rand(n, 265, generator=g) < 0.1
        tokens = torch.where(noise, torch.randint(0, vocab, (n, 265), generator=g), tokens)
        ids = [f"{CLASSES[int(t)]}/c{i}" for i, t in enumerate(targets)]
        return TokenSet(tokens, targets, torch.zeros(n, dtype=torch.long), ids, CLASSES, split)

    return make(n_train, "train"), make(n_valid, "valid")


# --------------------------------------------------------------------------- optimizer


@pytest.mark.parametrize("kind", ["class", "feature", "feature+class"])
def test_weight_decay_exactly_on_linear_weights(codec: SpectrogramVQGAN, kind: str) -> None:
    cfg = tiny_config(kind=kind, feat_depth=12, feat_sample_size=3)
    model = CodeTransformer.build(transformer_spec(cfg, codec, CLASSES), codec)
    decay, no_decay = parameter_groups(model)
    gpt = model.transformer
    linear = {f"{n}.weight" for n, m in gpt.named_modules() if isinstance(m, nn.Linear)}
    assert set(decay) == linear
    assert "head.weight" in decay and "blocks.0.attn.key.weight" in decay
    assert "blocks.0.mlp.0.weight" in decay and "blocks.0.mlp.2.weight" in decay
    for name in ("tok_emb.weight", "pos_emb", "ln_f.weight", "ln_f.bias", "blocks.0.ln1.weight",
                 "blocks.0.attn.key.bias", "blocks.0.mlp.0.bias"):  # fmt: skip
        assert name in no_decay
    embedders = [n for n in no_decay if "embedder" in n]
    assert embedders and not any("embedder" in n for n in decay)  # Embedding / Conv1d
    assert not set(decay) & set(no_decay)
    assert set(decay) | set(no_decay) == {n for n, _ in gpt.named_parameters()}
    opt = configure_optimizer(model, cfg)
    assert opt.defaults["betas"] == (0.9, 0.95)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in in_opt for p in model.first_stage_model.parameters())
    assert len(in_opt) == sum(1 for _ in gpt.parameters())


def test_learning_rate_rules() -> None:
    cfg = TransformerTrainConfig(batch_size=16)
    assert cfg.effective_learning_rate(world=4) == pytest.approx(6.4e-5)  # the authors' VAS lr
    assert cfg.betas == (0.9, 0.95) and cfg.weight_decay == 0.01 and cfg.patience == 2
    warm = TransformerTrainConfig(learning_rate=1.0, warmup_steps=4, lr_schedule="cosine",
                                  schedule_steps=14, min_lr_ratio=0.1)  # fmt: skip
    assert [warm.learning_rate_at(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warm.learning_rate_at(9) == pytest.approx(0.55)
    assert warm.learning_rate_at(14) == pytest.approx(0.1) == warm.learning_rate_at(100)
    with pytest.raises(ValueError, match="schedule_steps"):
        TransformerTrainConfig(lr_schedule="cosine", schedule_steps=0)
    with pytest.raises(ValueError, match="unknown"):
        TransformerTrainConfig.from_dict({"n_layers": 3})


def test_epoch_batches_cover_each_epoch_once_and_split_ranks() -> None:
    b = EpochBatches(10, 3, seed=5)
    assert b.steps_per_epoch == 3
    seen = torch.cat([b.indices(s) for s in range(3)])
    assert len(set(seen.tolist())) == 9
    assert not torch.equal(torch.cat([b.indices(s) for s in range(3, 6)]), seen)
    two = EpochBatches(10, 2, seed=5, world=2)
    r0, r1 = two.indices(0, 0), two.indices(0, 1)
    assert not set(r0.tolist()) & set(r1.tolist())
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochBatches(3, 4, seed=0)


# --------------------------------------------------------------------------- the loop


def test_a_few_steps_reduce_the_loss(codec: SpectrogramVQGAN, tmp_path: Path) -> None:
    train, valid = token_sets()
    result = train_transformer(train, valid, tmp_path, tiny_config(), codec=codec,
                               max_steps=24, samples=False, progress=False)  # fmt: skip
    losses = [h["valid"]["loss"] for h in result.history]
    assert len(losses) == 6
    assert losses[0] < np.log(16)  # better than uniform after 4 steps
    assert losses[-1] < 0.6 * losses[0]
    assert result.best["valid"]["loss"] == min(losses)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [4, 8, 12, 16, 20, 24]


def test_resume_is_bit_identical(codec: SpectrogramVQGAN, tmp_path: Path) -> None:
    train, valid = token_sets()
    # dropout (RNG), warm-up + cosine, clipping and early-stopping state all cross the break
    cfg = tiny_config(embd_pdrop=0.1, resid_pdrop=0.1, warmup_steps=3, lr_schedule="cosine",
                      schedule_steps=14, grad_clip=0.5, patience=5)  # fmt: skip
    kw = dict(codec=codec, samples=False, progress=False, checkpoint_every=0)
    straight = train_transformer(train, valid, tmp_path / "a", cfg, max_steps=14, **kw)
    train_transformer(train, valid, tmp_path / "b", cfg, max_steps=6, **kw)
    resumed = train_transformer(train, valid, tmp_path / "b", cfg, max_steps=14, **kw)
    assert resumed.step == straight.step == 14
    sa = load_file(str(tmp_path / "a" / "checkpoints" / "ckpt-00000014" / "model.safetensors"))
    sb = load_file(str(tmp_path / "b" / "checkpoints" / "ckpt-00000014" / "model.safetensors"))
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # the regular evaluations agree (the resumed run has an extra one where it was stopped)
    regular = [(h["step"], h["valid"]["loss"], h["train_loss"]) for h in straight.history
               if h["regular"]]  # fmt: skip
    assert regular == [
        (h["step"], h["valid"]["loss"], h["train_loss"]) for h in resumed.history if h["regular"]
    ]
    assert [h["step"] for h in resumed.history] == [4, 6, 8, 12, 14]
    # another config is refused
    with pytest.raises(ValueError, match="other settings"):
        train_transformer(train, valid, tmp_path / "b", tiny_config(), max_steps=16, **kw)


def test_early_stopping_and_round_trip(codec: SpectrogramVQGAN, tmp_path: Path) -> None:
    train, valid = token_sets()
    # lr far too high: the validation loss stops improving, patience 2 ends the run
    cfg = tiny_config(learning_rate=0.3, eval_every=2, patience=2)
    result = train_transformer(train, valid, tmp_path, cfg, codec=codec, max_steps=60,
                               samples=False, progress=False)  # fmt: skip
    assert result.stopped_early and result.step < 60
    losses = [h["valid"]["loss"] for h in result.history]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert len(losses) - 1 - best == 2  # two rounds without a new minimum
    # the saved model is the best one and reloads to the same logits
    model, info = load_trained_transformer(tmp_path / "transformer.safetensors", codec=codec)
    assert info["best"]["step"] == result.best["step"]
    assert model.classes == list(CLASSES) and model.kind == "class"
    cond = valid.condition([0, 1], "class")
    logits = model.logits(valid.tokens[:2], cond)
    assert torch.equal(logits, result.model.logits(valid.tokens[:2], cond))
    # save -> load keeps every weight (float32): the same arithmetic gives the same logits
    save_transformer(model, tmp_path / "copy.safetensors", {"note": "copy"})
    copy, copy_info = load_trained_transformer(tmp_path / "copy.safetensors", codec=codec)
    assert copy_info["note"] == "copy" and copy.spec == model.spec
    assert torch.equal(copy.logits(valid.tokens[:2], cond), logits)
    # a codec with other weights is refused (its tokens would mean something else)
    other = SpectrogramVQGAN(VQGANConfig(**TINY_CODEC))
    with pytest.raises(ValueError, match="trained with codec"):
        load_trained_transformer(tmp_path / "copy.safetensors", codec=other)
    # a finished (early-stopped) run does not train on when called again
    again = train_transformer(train, valid, tmp_path, cfg, codec=codec, max_steps=60,
                              samples=False, progress=False)  # fmt: skip
    assert again.step == result.step


def test_non_finite_loss_stops_with_the_step(codec: SpectrogramVQGAN, tmp_path: Path) -> None:
    train, valid = token_sets()
    cfg = tiny_config(learning_rate=float("inf"), eval_every=100)
    with pytest.raises(FloatingPointError, match="at step 1"):
        train_transformer(train, valid, tmp_path, cfg, codec=codec, max_steps=5,
                          samples=False, progress=False)  # fmt: skip


# --------------------------------------------------------------------------- token dataset


def write_clips(root: Path) -> None:
    """2 classes x 4 short clips (0.4-0.7 s), split 2 / 1 / 1 per class, with split files."""
    sr = 22050
    rng = np.random.default_rng(0)
    rows: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for cls in CLASSES:
        (root / cls).mkdir(parents=True)
        for i in range(4):
            t = np.arange(int(sr * (0.4 + 0.1 * i))) / sr
            if cls == "beep":
                x = 0.5 * np.sin(2 * np.pi * (440 + 110 * i) * t) * (t < 0.2)
            else:
                x = 0.2 * rng.standard_normal(t.size)
            sf.write(root / cls / f"c{i}.wav", x.astype(np.float32), sr)
            rows[["train", "train", "valid", "test"][i]].append(f"{cls}/c{i}")
    for split, r in rows.items():
        (root / f"vas_{split}.txt").write_text("\n".join(r) + "\n")


def test_class_token_sets_views_and_cache(
    codec: SpectrogramVQGAN, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_clips(tmp_path / "clips")
    sets = class_token_sets(
        tmp_path / "clips", codec, views=2, seed=3, cache_dir=tmp_path / "c", batch_size=4
    )
    train, valid, test = sets["train"], sets["valid"], sets["test"]
    assert (len(train), len(valid), len(test)) == (12, 2, 2)  # 4 clips x (1 + 2 views)
    assert train.tokens.shape == (12, 265) and int(train.tokens.max()) < 16
    assert train.views.tolist() == [0, 1, 2] * 4 and valid.views.tolist() == [0, 0]
    assert train.classes == CLASSES and train.targets.tolist() == [0] * 6 + [1] * 6
    assert train.clip_ids[:3] == ["beep/c0"] * 3
    # view 0 is the authors' dataset mel, encoded: the same tokens as encoding it directly
    mel = torch.from_numpy(audio_mel(tmp_path / "clips" / "beep" / "c2.wav"))
    assert torch.equal(valid.tokens[0], encode_mels(codec, [mel])[0])
    # the augmented views differ from the clip, and a shift/gain of 0 is the dataset mel exactly
    assert not torch.equal(train.tokens[0], train.tokens[1])
    wave = torch.from_numpy(sf.read(tmp_path / "clips" / "beep" / "c2.wav", dtype="float32")[0])
    assert torch.equal(augmented_mel(wave[None], 22050, 0, 0.0), mel)
    assert train.condition([0, 6], "class").tolist() == [[0], [1]]
    with pytest.raises(ValueError, match="no features"):
        train.condition([0], "feature")
    # the second call reads the cache (nothing is encoded)
    monkeypatch.setattr(code_dataset, "encode_mels", lambda *a, **k: pytest.fail("re-encoded"))
    again = class_token_sets(tmp_path / "clips", codec, views=2, seed=3, cache_dir=tmp_path / "c")
    assert torch.equal(again["train"].tokens, train.tokens)
    assert again["train"].clip_ids == train.clip_ids


def test_class_token_sets_names_a_missing_clip(codec: SpectrogramVQGAN, tmp_path: Path) -> None:
    write_clips(tmp_path)
    (tmp_path / "vas_test.txt").write_text("beep/nope\n")
    with pytest.raises(ValueError, match=r"vas_test.txt: row 1: beep/nope"):
        class_token_sets(tmp_path, codec)


def test_cli_tiny_run(codec: SpectrogramVQGAN, tmp_path: Path, capsys) -> None:
    write_clips(tmp_path / "clips")
    save_trained_codec(tmp_path / "codec.safetensors", codec)
    out = tmp_path / "run"
    argv = ["specvqgan", "train-transformer", str(tmp_path / "clips"), str(out),
            "--codec", str(tmp_path / "codec.safetensors"), "--views", "1", "--layers", "1",
            "--heads", "2", "--width", "16", "--batch-size", "2", "--lr", "1e-3",
            "--eval-every", "2", "--max-steps", "4", "--no-progress", "--no-samples",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 4 and summary["best_valid"]["tokens"] == 2 * 265
    model, info = load_trained_transformer(out / "transformer.safetensors", codec=codec)
    assert model.spec.gpt.n_layer == 1 and model.spec.gpt.block_size == 266
    assert info["train_config"]["n_embd"] == 16
    assert (out / "tokens").is_dir()
    # bad input fails with a message naming it, not a traceback
    bad = argv[:2] + [str(tmp_path / "nowhere"), str(out / "x"), "--codec", argv[5]]
    assert main(bad) == 2
    assert "nowhere: not a folder" in capsys.readouterr().err


def test_shipped_small_model_loads_with_its_record() -> None:
    from audiorep.specvqgan.transformer import load_transformer
    from audiorep.weights.registry import cached_path

    model, name = load_transformer("small")
    assert name == "audiorep-transformer-small" and model.kind == "class"
    assert model.classes == ["applause", "bird", "brass", "drum_kit", "gunshot", "helicopter",
                             "seashore", "speech", "telephone", "whale"]  # fmt: skip
    assert model.spec.gpt.block_size == 266 and model.vocab_size == 128
    record = json.loads(cached_path(name).with_suffix(".json").read_text())
    rows = {r["set"]: r for r in record["quality"]["rows"]}
    # the measured quality it ships with: the sfx10 judge recognises the asked-for class of
    # generated clips well above chance (10 %)
    assert rows["transformer samples"]["accuracy"] > 0.5 > rows["random tokens"]["accuracy"]
    assert record["best"]["valid"]["loss"] < np.log(128)
