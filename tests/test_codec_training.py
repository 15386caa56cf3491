"""Codec and vocoder training loops: loss falls, resume equals an uninterrupted run, guards,
and the two-optimizer checkpoints they rely on. Tiny models on the fixture WAVs (real speech,
a sweep, tones), a few steps each."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from audiorep.losses.vqgan import NonFiniteLossError
from audiorep.specvqgan.audio_corpus import AudioCorpus, MelCrops, WaveCrops, read_list_file
from audiorep.specvqgan.codec_training import (
    CodecTrainConfig,
    load_trained_codec,
    train_codec,
)
from audiorep.specvqgan.vocoder_training import (
    VocoderTrainConfig,
    load_trained_vocoder,
    train_vocoder,
)
from audiorep.training.checkpoint import load_checkpoint, save_checkpoint

WAVS = Path(__file__).parent / "fixtures" / "specvqgan_mel"
TINY_CODEC = {
    "ch": 32,
    "ch_mult": (1, 1, 1, 1, 1),
    "num_res_blocks": 1,
    "attn_resolutions": (),
    "z_channels": 32,
    "embed_dim": 16,
    "n_embed": 16,
}


@pytest.fixture(scope="module")
def corpus() -> AudioCorpus:
    return AudioCorpus.from_paths(
        [WAVS / "speech_long.wav", WAVS / "sweep.wav", WAVS / "tones.wav"]
    )


@pytest.fixture(scope="module")
def heldout() -> AudioCorpus:
    return AudioCorpus.from_paths([(WAVS / "speech_short.wav", 0.0, 2.0)])


def codec_config(**kw) -> CodecTrainConfig:
    base = dict(
        model=TINY_CODEC,
        loss={"disc_start": 3, "perceptual_weight": 0.0},
        batch_size=2,
        learning_rate=2e-3,
        crop_frames=32,
        lpaps=False,
        eval_every=4,
        eval_frames=64,
    )
    return CodecTrainConfig(**{**base, **kw})


def vocoder_config(**kw) -> VocoderTrainConfig:
    base = dict(
        generator={"ngf": 8},
        num_D=2,
        ndf=4,
        n_layers_D=2,
        batch_size=2,
        segment=2048,
        learning_rate=1e-3,
        mel_loss_weight=10.0,
        disc_start=2,
        eval_every=3,
    )
    return VocoderTrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- data


def test_batches_are_a_function_of_seed_and_step(corpus):
    crops = MelCrops(corpus, 32, seed=5)
    a, b = crops.batch(7, 3), crops.batch(7, 3)
    assert a.shape == (3, 1, 80, 32) and torch.equal(a, b)
    assert not torch.equal(a, crops.batch(8, 3))
    assert a.min() >= -1 and a.max() <= 1
    wave, mel = WaveCrops(corpus, seed=5, segment=2048).batch(0, 2)
    assert wave.shape == (2, 1, 2048) and mel.shape == (2, 80, 8)
    # the authors' pipeline: peak-normalised to 0.95, then scaled by U(0.3, 1)
    assert 0 < float(wave.abs().max()) <= 0.95 + 1e-6


def test_list_file_regions(tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text(f"# comment\n{WAVS / 'sweep.wav'} 1.0 3.5\n{WAVS / 'tones.wav'}\n")
    rows = read_list_file(lst)
    assert rows[0][1:] == (1.0, 3.5) and rows[1][1:] == (0.0, None)
    c = AudioCorpus.from_source(lst)
    assert c.recordings[0].waveform.shape[-1] == round(2.5 * 22050)
    lst.write_text("x.wav one two\n")
    with pytest.raises(ValueError, match="train.txt:1"):
        read_list_file(lst)


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_with_two_named_optimizers(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({"g": torch.nn.Linear(3, 2), "d": torch.nn.Linear(2, 1)})
    opts = {
        "generator": torch.optim.Adam(model["g"].parameters(), 1e-2, betas=(0.5, 0.9)),
        "discriminator": torch.optim.Adam(model["d"].parameters(), 1e-3),
    }
    for _ in range(2):
        loss = model["d"](model["g"](torch.randn(4, 3))).pow(2).mean()
        for o in opts.values():
            o.zero_grad()
        loss.backward()
        for o in opts.values():
            o.step()
    path = save_checkpoint(tmp_path, model, step=2, optimizers=opts)
    assert {p.name for p in path.iterdir()} >= {
        "optimizer-generator.safetensors",
        "optimizer-discriminator.safetensors",
    }
    fresh = torch.nn.ModuleDict({"g": torch.nn.Linear(3, 2), "d": torch.nn.Linear(2, 1)})
    fresh_opts = {
        "generator": torch.optim.Adam(fresh["g"].parameters(), 1e-2, betas=(0.5, 0.9)),
        "discriminator": torch.optim.Adam(fresh["d"].parameters(), 1e-3),
    }
    load_checkpoint(path, fresh, optimizers=fresh_opts, strict_config=False)
    for key in opts:
        a, b = opts[key].state_dict(), fresh_opts[key].state_dict()
        assert a["param_groups"] == b["param_groups"]
        for i, st in a["state"].items():
            assert torch.equal(st["exp_avg_sq"], b["state"][i]["exp_avg_sq"])
    with pytest.raises(ValueError, match="no state for optimizer 'other'"):
        load_checkpoint(
            path, fresh, optimizers={"other": fresh_opts["generator"]}, strict_config=False
        )
    with pytest.raises(ValueError, match="optimizer name"):
        save_checkpoint(tmp_path, model, step=3, optimizers={"bad/name": opts["generator"]})


# ----------------------------------------------------------------------------- codec loop


def test_codec_training_learns_and_writes_outputs(tmp_path, corpus, heldout):
    cfg = codec_config(eval_every=12)
    result = train_codec(corpus, tmp_path, cfg, heldout=heldout, max_steps=24, progress=False)
    first, last = result.history[0], result.history[-1]
    assert result.step == 24 and [h["step"] for h in result.history] == [12, 24]
    # the L1 reconstruction term falls on real audio within a couple of dozen steps
    assert last["train"]["train/nll_loss"] < first["train"]["train/nll_loss"]
    assert "train/disc_loss" in last["train"]  # the GAN started at disc_start = 3
    held = result.best["heldout"]
    assert 0 < held["mel_l1"] < 1 and 1 <= held["codes_used"] <= 16
    assert 1 <= held["perplexity"] <= held["codes_used"] + 1e-9
    codec, info = load_trained_codec(tmp_path)
    assert info["best"]["step"] == result.best["step"]
    assert codec.config.n_embed == 16
    assert {p.suffix for p in (tmp_path / "samples").iterdir()} >= {".wav"}
    # the checkpoint holds both optimizers and the authors' key layout
    ckpt = sorted((tmp_path / "checkpoints").glob("ckpt-*"))[-1]
    keys = load_file(str(ckpt / "model.safetensors")).keys()
    assert "quantize.embedding.weight" in keys and "loss.discriminator.main.0.weight" in keys
    assert (ckpt / "optimizer-autoencoder.safetensors").is_file()
    assert (ckpt / "optimizer-discriminator.safetensors").is_file()


def test_codec_resume_equals_uninterrupted(tmp_path, corpus):
    cfg = codec_config()
    whole = train_codec(corpus, tmp_path / "a", cfg, max_steps=6, progress=False)
    train_codec(corpus, tmp_path / "b", cfg, max_steps=4, progress=False, checkpoint_every=2)
    resumed = train_codec(corpus, tmp_path / "b", cfg, max_steps=6, progress=False)
    assert resumed.step == 6
    a, b = whole.codec.state_dict(), resumed.codec.state_dict()
    # CPU, same ops in the same order from the same state: bit-identical
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other settings"):
        train_codec(corpus, tmp_path / "b", codec_config(learning_rate=1e-3), max_steps=7,
                    progress=False)  # fmt: skip


def test_codec_training_stops_on_nan(tmp_path, corpus):
    cfg = codec_config(learning_rate=1e30, loss={"disc_start": 10**6, "perceptual_weight": 0.0})
    with pytest.raises(NonFiniteLossError, match="step"):
        train_codec(corpus, tmp_path, cfg, max_steps=50, progress=False, checkpoint_every=1)
    # what was done before the failure is kept: the last checkpoints are intact and finite
    ckpts = sorted((tmp_path / "checkpoints").glob("ckpt-*"))
    assert ckpts
    sd = load_file(str(ckpts[-1] / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


# ----------------------------------------------------------------------------- vocoder loop


def test_vocoder_training_warmup_then_gan_and_resume(tmp_path, corpus, heldout):
    cfg = vocoder_config()
    whole = train_vocoder(corpus, tmp_path / "a", cfg, heldout=heldout, max_steps=6, progress=False)
    assert [h["step"] for h in whole.history] == [3, 6]
    assert set(whole.history[0]["train"]) == {"loss_mel", "loss_D", "loss_G", "loss_feat",
                                              "loss_G_total", "s_error"}  # fmt: skip
    assert all(math.isfinite(h["heldout"]["mel_l1"]) for h in whole.history)
    train_vocoder(corpus, tmp_path / "b", cfg, heldout=heldout, max_steps=4, progress=False,
                  checkpoint_every=2)  # fmt: skip
    resumed = train_vocoder(corpus, tmp_path / "b", cfg, heldout=heldout, max_steps=6,
                            progress=False)  # fmt: skip
    a, b = whole.generator.state_dict(), resumed.generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    gen, info = load_trained_vocoder(tmp_path / "a")
    assert info["config"]["ngf"] == 8
    mel = heldout.mels()[0][:, :20]
    assert gen.vocode(mel).shape == (20 * 256,)


def test_vocoder_mel_loss_falls_in_warmup(tmp_path, corpus):
    cfg = vocoder_config(disc_start=10**6, eval_every=10)
    result = train_vocoder(corpus, tmp_path, cfg, heldout=corpus, max_steps=20, progress=False)
    assert result.history[-1]["train"]["loss_mel"] < result.history[0]["train"]["loss_mel"]
