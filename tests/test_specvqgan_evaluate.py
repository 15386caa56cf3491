"""SpecVQGAN evaluation library: inputs, MKL grouping, metrics end to end, cache, reports.

The judge is Melception with the fixture's seeded weights (tests/test_melception.py); one
80 x 848 forward pass costs ~1.3 s on two cores, so the folders here are tiny (5 passes for the
shared end-to-end run, a handful more elsewhere).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.frontends.specvqgan import center_crop, mel_spectrogram, normalize_for_judges
from audiorep.hashing import state_dict_sha256
from audiorep.metrics import (
    frechet_terms_from_embeddings,
    inception_score,
    kernel_inception_distance,
    mean_kl_divergence,
)
from audiorep.specvqgan.evaluate import (
    VAS_CLASSES,
    EvaluationInputError,
    collect_set,
    evaluate,
    judge_input,
    load_melception,
    mean_kl_by_video,
    video_key,
    write_report,
)
from test_melception import ATOL, recipe_melception
from test_metrics_recipes import specvqgan_expected, specvqgan_inputs

VID_A = "vidAAAAAAAA_0_10000"
VID_B = "vidBBBBBBBB_1000_11000"


def write_mel(path: Path, seed: int, width: int) -> Path:
    """A smooth random [0, 1] spectrogram ``(80, width)`` float32 (cumulative noise, clipped)."""
    rs = np.random.RandomState(seed)
    x = 0.4 + 0.02 * np.cumsum(rs.standard_normal((80, width)), axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.clip(x, 0.0, 1.0).astype(np.float32))
    return path


def write_wav(path: Path, seed: int, seconds: float, sr: int = 22050) -> Path:
    """16-bit PCM: a 440 Hz tone plus noise, ``seconds`` long (shorter than 10 s: zero-padded)."""
    rs = np.random.RandomState(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rs.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x, sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """VGGSound layout: 2 reference mels (860 wide), 3 generated inputs (+1 shadowed .wav)."""
    root = tmp_path_factory.mktemp("svq_eval")
    ref = root / "ref"
    write_mel(ref / "melspec_10s_22050hz" / f"{VID_A}_mel.npy", 1, 860)
    write_mel(ref / "melspec_10s_22050hz" / f"{VID_B}_mel.npy", 2, 860)
    gen = root / "gen" / "VGGSound_test"
    write_mel(gen / "cls_3" / f"{VID_A}_sample_0.npy", 3, 848)
    write_wav(gen / "cls_3" / f"{VID_A}_sample_0.wav", 4, 3.0)  # its vocoded audio: skipped
    write_wav(gen / "cls_3" / f"{VID_A}_sample_1.wav", 5, 4.0)
    write_mel(gen / "cls_5" / f"{VID_B}_sample_0.npy", 6, 848)
    return {"root": root, "ref": ref, "gen": root / "gen", "cache": root / "cache"}


@pytest.fixture(scope="module")
def result(folders):
    return evaluate(
        folders["gen"],
        folders["ref"],
        model=recipe_melception(),
        cache_dir=folders["cache"],
        cache_generated=True,
        dataset="vggsound",
        isc_splits=3,
        batch_size=2,
        progress=False,
    )


# ----------------------------------------------------------------------------- MKL grouping


def test_video_keys_vggsound_and_vas():
    assert video_key(f"/d/melspec_10s_22050hz/{VID_A}_mel.npy", "vggsound") == VID_A
    assert video_key(Path(f"/x/VGGSound_test/cls_3/{VID_A}_sample_7.npy"), "VGGSound") == VID_A
    assert video_key(f"/x/cls_3/{VID_A}_sample_1.wav", "vggsound") == VID_A
    real = "/data/vas/features/dog/melspec_10s_22050hz/video_00007_mel.npy"
    fake = "/logs/exp/samples_t/VAS_validation/cls_2/video_00007_sample_4.npy"  # sorted: dog = 2
    assert video_key(real, "vas") == video_key(fake, "vas") == "dog_video_00007"
    assert video_key(fake, "vas", ["dog", "cat", "bird"]) == "dog_video_00007"  # bird cat dog
    # the class folder is part of the VAS key: same id in two classes = two videos
    assert video_key(fake.replace("cls_2", "cls_3"), "vas") == "drum_video_00007"
    assert VAS_CLASSES == tuple(sorted(VAS_CLASSES))
    with pytest.raises(ValueError, match="unknown dataset"):
        video_key(fake, "audiocaps")


@pytest.mark.parametrize("name", ["kl_vggsound_10spv", "kl_vggsound_1spv", "kl_vas_3spv"])
def test_mkl_grouping_reproduces_the_authors_values(name):
    """The authors' path rules on their kind of paths (golden MKL of their metric code)."""
    case = specvqgan_expected()[name]
    x = specvqgan_inputs(name)
    res = mean_kl_by_video(
        x["real_logits"], x["real_paths"], x["fake_logits"], x["fake_paths"],
        case["dataset_name"], case["classes"],
    )  # fmt: skip
    assert res.value == pytest.approx(case["value"], rel=1e-5)
    assert res.pairs == case["n_videos"] * case["samples_per_video"]
    assert len(res.videos) == case["n_videos"]
    assert {v.samples for v in res.videos} == {case["samples_per_video"]}
    assert not res.unmatched_generated and res.references_without_samples == 0
    # the sample mean equals the mean of per-video means when every video has as many samples
    assert np.mean([v.kl for v in res.videos]) == pytest.approx(res.value, rel=1e-12)
    if case["dataset_name"] == "vas":
        assert {v.group for v in res.videos} <= set(case["classes"])  # cls_<i> -> class name
    else:
        assert all(v.group.startswith("cls_") for v in res.videos)


def test_mkl_unmatched_and_duplicates():
    rs = np.random.RandomState(0)
    real, fake = rs.standard_normal((3, 7)), rs.standard_normal((4, 7))
    real_paths = [f"r/{v}_mel.npy" for v in ("a", "b", "a")]  # "a" twice: the last row counts
    fake_paths = ["g/cls_0/a_sample_0.npy", "g/cls_0/z_sample_0.npy", "g/cls_1/a_sample_1.npy",
                  "g/cls_0/a_sample_2.npy"]  # fmt: skip
    res = mean_kl_by_video(real, real_paths, fake, fake_paths, "vggsound")
    assert res.unmatched_generated == ["g/cls_0/z_sample_0.npy"]
    assert res.duplicate_reference_keys == 1 and res.references_without_samples == 1
    assert res.pairs == 3 and [v.video for v in res.videos] == ["a"]
    with pytest.warns(UserWarning, match="1 generated"):
        ref = mean_kl_divergence(real, fake, ["a", "b", "a"], ["a", "z", "a", "a"])
    assert res.value == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="no generated file shares a video"):
        mean_kl_by_video(real, real_paths, fake[:1], ["g/q_sample_0.npy"], "vggsound")


# ----------------------------------------------------------------------------- inputs


def test_collect_set_skips_the_vocoded_twin(folders):
    items, notes = collect_set(folders["gen"])
    names = [it.path.name for it in items]
    assert names == [
        f"{VID_A}_sample_0.npy",
        f"{VID_A}_sample_1.wav",
        f"{VID_B}_sample_0.npy",
    ]
    assert len(notes) == 1 and "1 .wav files skipped" in notes[0]


def test_judge_input_of_a_mel_is_crop_then_normalise(folders):
    path = folders["ref"] / "melspec_10s_22050hz" / f"{VID_A}_mel.npy"
    spec = torch.from_numpy(np.load(path))
    expected = normalize_for_judges(spec[:, 6:854])  # columns 6..853 of 860
    got = judge_input(path)
    assert got.dtype == torch.float32 and tuple(got.shape) == (80, 848)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # (1, 80, W) is accepted as well
    np.save(folders["root"] / "batched.npy", spec[None].numpy())
    torch.testing.assert_close(judge_input(folders["root"] / "batched.npy"), expected)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((64, 860), np.float32), r"shape \(80, W\)"),
        (np.zeros((80, 500), np.float32), "500 frames; the judge needs at least 848"),
        (np.full((80, 848), np.nan, np.float32), "NaN"),
        (np.zeros((80, 848), np.int16), "float array"),
        (np.array([{"a": 1}], dtype=object), "cannot read as .npy"),
    ],
)
def test_bad_inputs_name_the_file(tmp_path, array, match):
    path = tmp_path / "bad_sample_0.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(EvaluationInputError, match=match) as info:
        judge_input(path)
    assert str(path) in str(info.value)


def test_bad_file_in_a_set_stops_before_the_model(tmp_path, folders):
    gen = tmp_path / "gen"
    write_mel(gen / "ok_sample_0.npy", 1, 848)
    (gen / "broken_sample_0.wav").write_bytes(b"RIFF....not a wav")
    with pytest.raises(EvaluationInputError, match="broken_sample_0.wav"):
        evaluate(gen, folders["ref"], model=recipe_melception(), batch_size=8, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationInputError, match="no .npy or .wav inputs"):
        evaluate(tmp_path / "empty", folders["ref"], model=recipe_melception(), progress=False)


def test_argument_errors(folders):
    with pytest.raises(ValueError, match="exactly one of"):
        evaluate(folders["gen"], folders["ref"])
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(folders["gen"], folders["ref"], weights="random", metrics=["fad"])
    with pytest.raises(ValueError, match="dataset"):
        evaluate(folders["gen"], folders["ref"], weights="random", dataset="audiocaps")


# ----------------------------------------------------------------------------- end to end


def test_end_to_end_metrics(result):
    gen, ref = result.generated, result.reference
    assert gen.n == 3 and ref.n == 2 and gen.computed == 3 and ref.computed == 2
    assert [Path(p).name for p in ref.paths] == [f"{VID_A}_mel.npy", f"{VID_B}_mel.npy"]
    for fs in (gen, ref):
        assert fs.features["2048"].shape == (fs.n, 2048)
        assert fs.features["logits"].shape == (fs.n, 309)
        assert all(v.dtype == np.float32 for v in fs.features.values())
    # each metric is the metrics package's function on these features (the authors' settings)
    fid = frechet_terms_from_embeddings(gen.features["2048"], ref.features["2048"]).value
    assert result.fid == pytest.approx(fid, rel=1e-12)
    isc = inception_score(gen.features["logits_unbiased"], splits=3, seed=2020)
    assert (result.isc_mean, result.isc_std) == (isc.mean, isc.std)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        kid = kernel_inception_distance(
            gen.features["2048"], ref.features["2048"], small_sets="clamp", seed=2020
        )
    assert result.kid_mean == pytest.approx(kid.mean, rel=1e-12) and result.kid_subset_size == 2
    keys_r = [video_key(p, "vggsound") for p in ref.paths]
    keys_g = [video_key(p, "vggsound") for p in gen.paths]
    mkl = mean_kl_divergence(ref.features["logits"], gen.features["logits"], keys_r, keys_g)
    assert result.mkl is not None and result.mkl.value == pytest.approx(mkl, rel=1e-12)
    per_video = {v.video: (v.samples, v.group) for v in result.mkl.videos}
    assert per_video == {VID_A: (2, "cls_3"), VID_B: (1, "cls_5")}
    assert any("KID subsets shrunk to 2" in n for n in result.notes)
    assert result.settings["weights_sha256"] == state_dict_sha256(recipe_melception())
    assert recipe_melception().training is False  # the caller's mode is restored


def test_wav_features_equal_the_pipeline_by_hand(result, folders):
    path = folders["gen"] / "VGGSound_test" / "cls_3" / f"{VID_A}_sample_1.wav"
    data, sr = sf.read(path, dtype="float32")
    assert sr == 22050
    by_hand = normalize_for_judges(center_crop(mel_spectrogram(torch.from_numpy(data))))
    torch.testing.assert_close(judge_input(path), by_hand, rtol=0, atol=0)
    with torch.inference_mode():
        taps = recipe_melception().forward_taps(by_hand[None], ["2048", "logits"])
    row = result.generated.paths.index(str(path))
    for tap in ("2048", "logits"):  # another batch composition: summation-order tolerance
        np.testing.assert_allclose(
            result.generated.features[tap][row], taps[tap][0].numpy(), rtol=0, atol=ATOL[tap]
        )


def test_reference_cache_reused_and_invalidated(result, folders, tmp_path):
    kwargs = {"model": recipe_melception(), "cache_dir": folders["cache"], "progress": False,
              "cache_generated": True, "isc_splits": 3}  # fmt: skip
    again = evaluate(folders["gen"], folders["ref"], **kwargs)
    assert (again.reference.cache_hits, again.reference.computed) == (2, 0)
    assert (again.generated.cache_hits, again.generated.computed) == (3, 0)
    assert again.fid == result.fid and again.mkl.value == result.mkl.value
    # a copy elsewhere has the same content: still cached; an edited file is recomputed
    ref = tmp_path / "ref"
    shutil.copytree(folders["ref"], ref)
    write_mel(ref / "melspec_10s_22050hz" / f"{VID_B}_mel.npy", 99, 860)
    edited = evaluate(folders["gen"], ref, **kwargs)
    assert (edited.reference.cache_hits, edited.reference.computed) == (1, 1)
    np.testing.assert_array_equal(
        edited.reference.features["2048"][0], result.reference.features["2048"][0]
    )
    assert not np.array_equal(
        edited.reference.features["2048"][1], result.reference.features["2048"][1]
    )
    # one entry per distinct content (the generated set too: cache_generated)
    entries = sorted(p.name for p in folders["cache"].rglob("*.npy"))
    assert len(entries) == 3 + 3  # 3 reference contents (2 + the edit) and 3 generated
    (settings_file,) = folders["cache"].glob("*/settings.json")
    assert json.loads(settings_file.read_text())["weights_sha256"] == state_dict_sha256(
        recipe_melception()
    )


def test_weights_file_is_loaded_and_keys_the_cache(result, folders, tmp_path):
    ckpt = tmp_path / "melception-21-05-10T09-28-40.pt"
    torch.save({"model": recipe_melception().state_dict(), "epoch": 7}, ckpt)  # authors' layout
    res = evaluate(folders["gen"], folders["ref"], weights=ckpt, cache_dir=folders["cache"],
                   cache_generated=True, progress=False, metrics=["fid"])  # fmt: skip
    assert res.settings["weights"] == str(ckpt)
    assert res.reference.computed == 0 and res.generated.computed == 0  # same fingerprint
    assert res.fid == result.fid and res.mkl is None and res.isc_mean is None
    other, desc = load_melception("random:5")
    assert desc == "random:5" and not other.training
    assert state_dict_sha256(other) != res.settings["weights_sha256"]
    bad = tmp_path / "not_melception.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, bad)
    with pytest.raises(ValueError, match=r"not_melception\.pt.*does not match: 565 missing"):
        load_melception(bad)


def test_json_text_and_plot_written(result, tmp_path):
    paths = write_report(result, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert set(data["metrics"]) == {
        "kullback_leibler_divergence",
        "inception_score_mean",
        "inception_score_std",
        "frechet_inception_distance",
        "kernel_inception_distance_mean",
        "kernel_inception_distance_std",
    }
    assert data["metrics"]["frechet_inception_distance"] == result.fid
    assert data["mkl"]["pairs"] == 3 and len(data["mkl"]["per_video"]) == 2
    assert data["generated"]["n"] == 3 and data["reference"]["computed"] == 2
    text = paths["text"].read_text()
    for label in ("FID:", "IS:", "KID:", "MKL:", "summary:    KL:", "1 .wav files skipped"):
        assert label in text, label
    pytest.importorskip("matplotlib")
    assert paths["plot"].stat().st_size > 1000
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave no temp files


def test_small_sets_skip_metrics_with_notes(result, folders, tmp_path):
    gen = tmp_path / "one"
    gen.mkdir()
    shutil.copy(result.generated.paths[0], gen / Path(result.generated.paths[0]).name)
    res = evaluate(gen, folders["ref"], model=recipe_melception(), cache_dir=folders["cache"],
                   cache_generated=True, progress=False)  # fmt: skip
    assert res.generated.computed == 0  # same content as a cached generated file
    assert res.fid is None and res.isc_mean is None and res.kid_mean is None
    assert res.mkl is not None and res.mkl.pairs == 1
    notes = " ".join(res.notes)
    assert "FID needs at least 2" in notes and "IS needs at least 10" in notes
    assert "KID needs at least 2" in notes
    assert "nan" in res.summary_line()
