"""`audiorep fad`: windowing presets, cross-file batching, embedding cache, sets, report, CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import audiorep
from audiorep.cli import main
from audiorep.extract.engine import embed_corpus
from audiorep.extract.inputs import InputItem
from audiorep.fad import (
    EmbeddingCache,
    SetError,
    SettingsMismatchError,
    compare_sets,
    open_set,
)
from audiorep.fad.cache import file_sha256, settings_id
from audiorep.frontends.vggish import (
    GOOGLE_FAD_WINDOWING,
    Windowing,
    waveform_to_examples,
)
from audiorep.metrics import (
    GaussianStats,
    fad_inf,
    frechet_distance_from_embeddings,
    kernel_inception_distance,
    per_clip_fd,
    save_fadtk_stats,
)
from numerics import VGGISH_EMBEDDING, assert_reordering_close


def _tone_clip(rs: np.random.RandomState, sr: int, seconds: float, square: bool) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    s = np.sin(2 * np.pi * rs.uniform(150, 900) * t)
    s = np.sign(s) if square else s
    return (rs.uniform(0.05, 0.5) * s + 0.05 * rs.randn(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    """Two small audio folders (16 kHz and 22.05 kHz) plus a short and a broken file."""
    root = tmp_path_factory.mktemp("fadsets")
    rs = np.random.RandomState(7)
    bg, ev = root / "bg", root / "ev"
    (bg / "sub").mkdir(parents=True)
    ev.mkdir()
    for i in range(6):
        folder = bg / "sub" if i % 2 else bg
        sf.write(folder / f"b{i}.wav", _tone_clip(rs, 16000, rs.uniform(2.5, 5), False), 16000)
    for i in range(5):
        sf.write(ev / f"e{i}.flac", _tone_clip(rs, 22050, rs.uniform(2.5, 5), True), 22050)
    sf.write(ev / "short.wav", np.zeros(8000, np.float32), 16000)
    (ev / "broken.wav").write_bytes(b"RIFF not really")
    return {"root": root, "bg": bg, "ev": ev}


@pytest.fixture(scope="module")
def bundle():
    return audiorep.load("vggish", weights="random", seed=3)


# ----------------------------------------------------------------------------- windowing


def test_google_windowing_equals_per_window_reference():
    """google-research cuts 1 s windows every 0.5 s and embeds each window's first example."""
    rs = np.random.RandomState(0)
    x = (0.3 * rs.randn(16000 * 4 + 5000)).astype(np.float64)
    x[1000] = 0.9  # the positive peak sets the gain
    got = waveform_to_examples(x, 16000, windowing=GOOGLE_FAD_WINDOWING)
    y = x / max(0.1, x.max())
    starts = range(0, len(y) - 16000 + 1, 8000)
    want = torch.cat([waveform_to_examples(y[s : s + 16000], 16000)[:1] for s in starts])
    assert got.shape == want.shape == (len(starts), 96, 64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_google_windowing_counts_and_quiet_clip_gain():
    w = GOOGLE_FAD_WINDOWING
    assert [w.num_examples(n) for n in (15999, 16000, 23999, 24000, 40000)] == [0, 1, 1, 2, 4]
    quiet = np.full(20000, 0.01)
    quiet[::7] = -0.02  # the negative peak is larger but google uses the positive maximum
    got = waveform_to_examples(quiet, 16000, windowing=w)
    want = waveform_to_examples(quiet / 0.1, 16000)[:1]  # gain capped at 1/0.1 (+20 dB)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_hop_gives_overlapping_examples_every_hop():
    rs = np.random.RandomState(1)
    x = rs.randn(16000 * 3)
    w = Windowing.from_hop_seconds(0.48)
    full = waveform_to_examples(x, 16000)
    half = waveform_to_examples(x, 16000, windowing=w)
    assert half.shape[0] == w.num_examples(len(x)) == 1 + (298 - 96) // 48
    torch.testing.assert_close(half[::2], full, rtol=0, atol=0)  # every 2nd is a reference one
    with pytest.raises(ValueError, match="multiple of 0.01"):
        Windowing.from_hop_seconds(0.123)


# ----------------------------------------------------------------------------- batching


def test_cross_file_batching_equals_file_by_file(sets, bundle):
    """The engine `fad` embeds audio folders with: one result per input, failures included."""
    files = sorted(sets["ev"].iterdir()) + sorted(sets["bg"].glob("*.wav"))
    got = {}
    embed_corpus(bundle, [InputItem(f, f.name) for f in files],
                 lambda r: got.setdefault(r.index, r), batch_size=7, progress=False)  # fmt: skip
    results = [got[i] for i in range(len(files))]
    assert [r.item.path for r in results] == files  # every input once, failures included
    for r in results:
        if r.item.path.name == "broken.wav":
            assert r.embeddings is None and "broken.wav" in r.error
            continue
        wav, sr = audiorep.audio.load(r.item.path)
        want = bundle.embed(wav, sr).numpy()
        assert r.embeddings.dtype == np.float32 and r.embeddings.shape == want.shape
        # batched with other files: the model's sums may run in another order
        assert_reordering_close(r.embeddings, want, VGGISH_EMBEDDING)
        assert r.duration == pytest.approx(wav.shape[-1] / sr)
    assert next(r for r in results if r.item.path.name == "short.wav").embeddings.shape == (0, 128)


# ----------------------------------------------------------------------------- cache


def test_cache_is_keyed_by_content_and_settings(tmp_path, bundle):
    s = bundle.settings()
    cache = EmbeddingCache(tmp_path, s)
    emb = np.random.RandomState(0).randn(5, 128).astype(np.float64)
    a = tmp_path / "a.wav"
    a.write_bytes(b"some audio bytes")
    digest = file_sha256(a)
    assert cache.get(digest) is None
    cache.put(digest, emb)
    got = cache.get(digest)
    assert got.dtype == np.float32  # never float16
    np.testing.assert_array_equal(got, emb.astype(np.float32))
    b = tmp_path / "renamed.wav"
    shutil.copy(a, b)
    assert file_sha256(b) == digest  # content, not name
    other = dict(s, final_relu=True)
    assert settings_id(other) != settings_id(s)
    assert EmbeddingCache(tmp_path, other).get(digest) is None
    assert settings_id(dict(s, weights="another description")) == settings_id(s)
    cache.path_for(digest).write_bytes(b"corrupt")
    assert cache.get(digest) is None  # unreadable entries are recomputed
    assert json.loads((cache.dir / "settings.json").read_text())["final_relu"] is False


# ----------------------------------------------------------------------------- sets


def test_audio_set_uses_cache_on_second_open(sets, bundle, tmp_path):
    def factory(b):
        return EmbeddingCache(tmp_path, b.settings())

    first = open_set(sets["ev"], bundle_factory=lambda: bundle, cache_factory=factory,
                     progress=False)  # fmt: skip
    assert first.kind == "audio" and first.cache_hits == 0
    assert [p for p, _ in first.failures] == [str(sets["ev"] / "broken.wav")]
    assert first.empty == ["short.wav"] and len(first.clips) == 6
    second = open_set(sets["ev"], bundle_factory=lambda: bundle, cache_factory=factory,
                      progress=False)  # fmt: skip
    assert second.cache_hits == 6
    np.testing.assert_array_equal(second.embeddings(), first.embeddings())
    assert second.n == first.n == sum(x.shape[0] for x in first.clips.values())


def test_open_set_reads_embed_output_stats_and_npy(sets, tmp_path):
    out = tmp_path / "emb"
    rc = main(["embed", str(sets["bg"]), "-o", str(out), "--weights", "random", "--seed", "3",
               "-q"])  # fmt: skip
    assert rc == 0
    emb_set = open_set(out)
    assert emb_set.kind == "embeddings" and set(emb_set.clips) == {
        "b0.npz", "b2.npz", "b4.npz", "sub/b1.npz", "sub/b3.npz", "sub/b5.npz"
    }  # fmt: skip
    assert (
        emb_set.settings["weights_sha256"]
        == audiorep.load("vggish", weights="random", seed=3).weights_fingerprint()
    )
    x = emb_set.embeddings()
    stats = GaussianStats.from_embeddings(x)
    stats.save(tmp_path / "s.npz")
    loaded = open_set(tmp_path / "s.npz")
    assert loaded.kind == "stats" and loaded.n == x.shape[0] and not loaded.has_embeddings
    np.save(tmp_path / "all.npy", x)
    assert open_set(tmp_path / "all.npy").n == x.shape[0]
    save_fadtk_stats(stats, tmp_path / "fadtk.npz", "vggish")
    assert open_set(tmp_path / "fadtk.npz", model="vggish").n is None  # fadtk stores no n


def test_open_set_errors_name_the_path(tmp_path):
    with pytest.raises(SetError, match="no such file"):
        open_set(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SetError, match="empty: no audio or embedding files"):
        open_set(tmp_path / "empty")
    np.save(tmp_path / "v.npy", np.zeros(128))
    with pytest.raises(SetError, match=r"v\.npy: embeddings must be 2-D"):
        open_set(tmp_path / "v.npy")
    bad = np.zeros((3, 4))
    bad[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(SetError, match=r"nan\.npy: embeddings contain NaN"):
        open_set(tmp_path / "nan.npy")
    (tmp_path / "x.npz").write_bytes(b"PK not a zip")
    with pytest.raises(SetError, match=r"x\.npz"):
        open_set(tmp_path / "x.npz")


# ----------------------------------------------------------------------------- report


def _embedding_sets(tmp_path, n_bg=300, n_ev=260, clips=13, d=16):
    rs = np.random.RandomState(4)
    mix = rs.randn(d, d) / 3
    bg = rs.randn(n_bg, d) @ mix
    ev = rs.randn(n_ev, d) @ mix + 0.3
    for name, x, k in (("bg", bg, 10), ("ev", ev, clips)):
        (tmp_path / name).mkdir()
        for i, part in enumerate(np.array_split(x, k)):
            np.save(tmp_path / name / f"c{i:02d}.npy", part.astype(np.float32))
    return open_set(tmp_path / "bg"), open_set(tmp_path / "ev")


def test_compare_sets_matches_metric_core(tmp_path):
    bg, ev = _embedding_sets(tmp_path)
    r = compare_sets(bg, ev, inf=True, inf_min_n=50, kid=True, kid_subset_size=100,
                     kid_subsets=20, per_clip=True, seed=5)  # fmt: skip
    xb, xe = bg.embeddings(), ev.embeddings()
    want = frechet_distance_from_embeddings(xb, xe)
    assert r.fad == pytest.approx(want, rel=1e-9)
    inf = fad_inf(bg.stats, xe, min_n=50, seed=5)
    assert r.fad_inf.value == pytest.approx(inf.value, rel=1e-12)
    assert r.fad_inf.points == inf.points
    kid = kernel_inception_distance(xe, xb, subsets=20, subset_size=100)
    assert r.kid.mean == pytest.approx(kid.mean, rel=1e-12)
    want_clips = per_clip_fd(bg.stats, ev.clips)
    assert [(c.clip, c.frames) for c in r.per_clip] == [(n, ev.clips[n].shape[0])
                                                         for n, _ in want_clips]  # fmt: skip
    np.testing.assert_allclose([c.fd for c in r.per_clip], [v for _, v in want_clips], rtol=1e-12)
    d = json.loads(r.to_json())
    assert d["fad"] == r.fad and d["background"]["n"] == 300 and len(d["per_clip"]) == 13
    assert d["fad_inf"]["points"][0] == [50, inf.points[0][1]]
    csv = r.write_per_clip(tmp_path / "clips.csv").read_text().splitlines()
    assert csv[0] == "clip,fd,frames" and csv[1].startswith(want_clips[0][0] + ",")
    # statistics on one side: the same FAD from the covariance route
    bg.stats.save(tmp_path / "bg.npz")
    r2 = compare_sets(open_set(tmp_path / "bg.npz"), ev)
    assert r2.fad == pytest.approx(want, rel=1e-9)
    with pytest.raises(SetError, match="KID needs background embeddings"):
        compare_sets(open_set(tmp_path / "bg.npz"), ev, kid=True)


def test_settings_mismatch_is_refused_unless_allowed(tmp_path):
    bg, ev = _embedding_sets(tmp_path, d=8)
    base = {"model": "vggish", "weights_sha256": "ab", "final_relu": False,
            "frontend_dtype": "float64", "precision": "float32", "windowing": {"hop": 0.96},
            "resampler": "r"}  # fmt: skip
    bg.settings, ev.settings = base, dict(base, final_relu=True)
    with pytest.raises(SettingsMismatchError, match="final_relu"):
        compare_sets(bg, ev)
    r = compare_sets(bg, ev, allow_mismatch=True)
    assert any("settings differ" in n for n in r.notes)
    ev.settings = dict(base)
    assert compare_sets(bg, ev).settings == base


# ----------------------------------------------------------------------------- CLI


def test_cli_fad_end_to_end(sets, tmp_path, capsys):
    cache = tmp_path / "cache"
    args = [
        "fad", str(sets["bg"]), str(sets["ev"]), "--weights", "random", "--seed", "3",
        "--cache-dir", str(cache), "--json", str(tmp_path / "r.json"), "--save-stats",
        str(tmp_path / "stats"), "--per-clip", str(tmp_path / "clips.csv"), "-q",
    ]  # fmt: skip
    assert main(args) == 1  # scored, but broken.wav failed
    out, err = capsys.readouterr()
    report = json.loads((tmp_path / "r.json").read_text())
    assert f"FAD: {report['fad']:.6f}" in out and "FAILED" in err and "broken.wav" in err
    assert report["eval"]["failures"][0]["path"].endswith("broken.wav")
    assert report["settings"]["windowing"]["hop_seconds"] == 0.96
    b = audiorep.load("vggish", weights="random", seed=3)
    xb = np.concatenate([b.embed(*audiorep.audio.load(f)).numpy()
                         for f in sorted(sets["bg"].rglob("*.wav"))])  # fmt: skip
    assert report["background"]["n"] == xb.shape[0]
    # from the saved statistics, no model needed: same FAD
    assert main(["fad", str(tmp_path / "stats/background.npz"),
                 str(tmp_path / "stats/eval.npz"), "--json", "-"]) == 0  # fmt: skip
    again = json.loads(capsys.readouterr().out)
    assert again["fad"] == pytest.approx(report["fad"], rel=1e-9)
    assert again["settings"]["weights_sha256"] == b.weights_fingerprint()
    # second audio run reads every embedding from the cache
    assert main(args) == 1
    report2 = json.loads((tmp_path / "r.json").read_text())
    assert report2["background"]["cache_hits"] == 6 and report2["fad"] == report["fad"]


def test_cli_fad_presets_and_plot(sets, tmp_path, capsys):
    common = [str(sets["bg"]), str(sets["ev"]), "--weights", "random", "--seed", "3",
              "--no-cache", "-q", "--json", "-"]  # fmt: skip
    assert main(["fad", *common, "--preset", "google", "--inf", "--inf-min-n", "5",
                 "--plot", str(tmp_path / "report.png")]) == 1  # fmt: skip
    google = json.loads(capsys.readouterr().out)
    w = google["settings"]["windowing"]
    assert w == {**w, "hop_seconds": 0.5, "window_samples": 16000, "peak_normalize": True}
    durations = [sf.info(f).frames / sf.info(f).samplerate for f in sorted(sets["bg"].rglob("*"))
                 if f.is_file()]  # fmt: skip
    assert google["background"]["n"] == sum(1 + int((d - 1) // 0.5) for d in durations)
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["fad", *common, "--preset", "torchvggish"]) == 1
    relu = json.loads(capsys.readouterr().out)
    assert relu["settings"]["final_relu"] is True and math.isfinite(relu["fad"])
    assert relu["fad"] != google["fad"]


def test_cli_fad_bad_input_exits_2(tmp_path, capsys):
    assert main(["fad", str(tmp_path / "nope"), str(tmp_path), "--weights", "random"]) == 2
    assert "nope: no such file or folder" in capsys.readouterr().err
    assert main(["fad", str(tmp_path), str(tmp_path), "--hop", "0.123"]) == 2
    assert "multiple of 0.01" in capsys.readouterr().err


def test_fad_cautions(tmp_path, capsys):
    """Issue 12 item 13: FAD without caution. An indefinite covariance scored normally; 2
    embeddings against d = 128 and FAD-inf from 2 rows were reported like any other value; the
    plot did not say the weights were random; --plot on statistics refused to run."""
    from audiorep.fad import compare_sets, open_set
    from audiorep.metrics import GaussianStats

    rs = np.random.RandomState(0)
    good = GaussianStats.from_moments(np.zeros(4), np.eye(4), 100)
    good.save(tmp_path / "good.npz")
    bad_cov = np.eye(4)
    # positive variances, eigenvalues 2.0001 and -1e-4: indefinite, yet FD computes (1.17)
    bad_cov[0, 1] = bad_cov[1, 0] = 1.0001
    GaussianStats.from_moments(np.zeros(4), bad_cov, 100).save(tmp_path / "bad.npz")
    report = compare_sets(open_set(tmp_path / "good.npz"), open_set(tmp_path / "bad.npz"))
    assert any(
        "not positive semi-definite (smallest eigenvalue -0.0001)" in n for n in report.notes
    )
    assert not any("positive semi-definite" in n for n in
                   compare_sets(open_set(tmp_path / "good.npz"),
                                open_set(tmp_path / "good.npz")).notes)  # fmt: skip
    # n <= d, and FAD-inf asked of 3 rows: cautions, not numbers that look normal
    np.save(tmp_path / "few.npy", rs.randn(3, 8).astype(np.float32))
    np.save(tmp_path / "many.npy", rs.randn(400, 8).astype(np.float32))
    few = compare_sets(open_set(tmp_path / "many.npy"), open_set(tmp_path / "few.npy"), inf=True)
    assert few.fad_inf is None
    text = " ".join(few.notes)
    assert "has n = 3 embeddings for d = 8 dimensions" in text
    assert "FAD-inf not computed" in text and "only N = 3 embeddings" in text
    # --plot on two statistics files draws what it can instead of refusing
    png = tmp_path / "p.png"
    code = main(["fad", str(tmp_path / "good.npz"), str(tmp_path / "bad.npz"), "--plot", str(png)])
    assert code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    assert "not positive semi-definite" in capsys.readouterr().out
