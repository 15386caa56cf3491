"""SpecVQGAN's visual-feature pipeline (specvqgan/visual_features.py) and the allow-list reader of
the authors' feature pickles (convert/feature_pickle.py).

Golden data: tests/fixtures/specvqgan_features/README.md (the authors' VASFeats and demo chain on
real feature pickles). Tolerance: exact everywhere (the pipeline only copies and indexes).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from audiorep.convert.feature_pickle import (
    ALLOWED_GLOBALS,
    FeatureFileError,
    read_feature_array,
    unpickle_array,
)
from audiorep.specvqgan.visual_features import (
    FEAT_CROP_LEN,
    FEAT_LEN,
    FLOW_FOLDER,
    RESNET_FOLDER,
    RGB_FOLDER,
    FeatureSettings,
    center_crop_rows,
    concat_streams,
    find_feature_files,
    leftmost_crop_or_tile,
    load_feature_files,
    pad_or_trim,
    prepare_features,
    prepare_features_demo,
    random_features,
    resample_frames_index,
    source_rows,
    to_transformer_input,
)
from conftest import FIXTURES

DATA = FIXTURES / "specvqgan_features"
INFO = json.loads((DATA / "features_info.json").read_text())
CASES = INFO["cases"]
#: fixture setting name -> (feat_sample_size, times_to_repeat_after_resample)
SETTINGS = {"S1": (1, None), "S5": (5, None), "S212": (212, None), "S5_rep5": (5, 5)}
NOFEATS_SEED = 20261140


def sha16(x: np.ndarray) -> str:
    """The fixture's ``sha256_16_float32``: first 16 hex digits of the C-order float32 bytes."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()[:16]


def settings_for(name: str, case: str) -> FeatureSettings:
    s, r = SETTINGS[name]
    return FeatureSettings(feat_sample_size=s, times_to_repeat=r, tile_short="demo_tile" in case)


def resnet_input() -> np.ndarray:
    return np.load(DATA / "features_vas_dog_02754_resnet50_first64.npy")


def cough_streams(num_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The cough RGB / flow streams with only the stored rows known (others NaN)."""
    with np.load(DATA / "features_vas_cough_00331_rows.npz", allow_pickle=False) as d:
        rows, rgb_rows, flow_rows, total = d["rows"], d["rgb"], d["flow"], int(d["num_rows"])
    rgb = np.full((total, 1024), np.nan, np.float32)
    flow = np.full((total, 1024), np.nan, np.float32)
    rgb[rows], flow[rows] = rgb_rows, flow_rows
    n = total if num_rows is None else num_rows
    return rgb[:n], flow[:n]


# ----------------------------------------------------------------------------- indices


def test_resample_index_examples_and_fixture():
    assert resample_frames_index(212, 1).tolist() == [106]
    assert resample_frames_index(212, 5).tolist() == [35, 77, 119, 162, 204]
    assert resample_frames_index(212, 212).tolist() == list(range(212))
    assert (
        resample_frames_index(212, 5, 5).tolist() == np.repeat([35, 77, 119, 162, 204], 5).tolist()
    )
    assert resample_frames_index(212, 5, 1).tolist() == [35, 77, 119, 162, 204]  # 1: no repeat
    for case in CASES.values():
        for name, out in case["outputs"].items():
            if "resample_index" in out:
                s, r = SETTINGS[name]
                assert resample_frames_index(FEAT_CROP_LEN, s, r).tolist() == out["resample_index"]
    with pytest.raises(ValueError, match="1..212"):
        resample_frames_index(212, 213)
    with pytest.raises(ValueError, match="1..212"):
        resample_frames_index(212, 0)


@pytest.mark.parametrize("case", [c for c in CASES if c != "nofeats"])
def test_source_rows_match_fixture(case):
    info = CASES[case]
    for name, out in info["outputs"].items():
        rows = source_rows(info["input_rows_used"], settings_for(name, case))
        assert rows.tolist() == out["rows"], (case, name)
        assert int((rows < 0).sum()) == out["n_zero_rows"]


# ----------------------------------------------------------------------------- golden outputs


@pytest.mark.parametrize("case", ["vas_cough_00331", "vas_cough_00331_first150"])
def test_bninception_cases(case):
    info = CASES[case]
    rgb, flow = cough_streams(info["input_rows_used"])
    for name in ("S1", "S5", "S5_rep5"):
        out = prepare_features(rgb, flow, settings_for(name, case))
        expected = info["outputs"][name]
        assert out.dtype == np.float64 and list(out.shape) == expected["shape"]
        assert np.isfinite(out).all()  # only stored rows (or zero padding) were picked
        assert sha16(out) == expected["sha256_16_float32"], name
    # S212 needs all 214 rows; check the rows that are known and the zero padding.
    out = prepare_features(rgb, flow, settings_for("S212", case))
    rows = np.array(info["outputs"]["S212"]["rows"])
    assert out.shape == (212, 2048)
    assert (out[rows < 0] == 0).all() and int((rows < 0).sum()) == info["outputs"]["S212"][
        "n_zero_rows"
    ]
    known = np.isin(rows, [36, 78, 107, 120, 163, 205])
    np.testing.assert_array_equal(out[known], np.concatenate((rgb, flow), 1)[rows[known]])
    if case == "vas_cough_00331":
        stored = np.load(DATA / "features_vas_cough_00331_S5.npy")
        s5 = prepare_features(rgb, flow, FeatureSettings(feat_sample_size=5))
        np.testing.assert_array_equal(s5.astype(np.float32), stored)
        batch = to_transformer_input(s5[None])
        expected = np.load(DATA / "features_vas_cough_00331_S5_transformer_input.npy")
        assert batch.dtype == torch.float32 and batch.shape == (1, 2048, 5)
        np.testing.assert_array_equal(batch.numpy(), expected)


@pytest.mark.parametrize(
    "case", ["vas_dog_02754_resnet50_first64", "vas_dog_02754_resnet50_first64_demo_tile"]
)
def test_resnet50_cases_all_settings(case):
    feats = resnet_input()
    demo = "demo_tile" in case
    for name, expected in CASES[case]["outputs"].items():
        settings = settings_for(name, case)
        out = (
            prepare_features_demo(feats, settings)
            if demo
            else prepare_features(feats, None, settings)
        )
        assert out.dtype == np.float64 and list(out.shape) == expected["shape"]
        assert sha16(out) == expected["sha256_16_float32"], name
        # prepare_features with tile_short is the demo chain too
        np.testing.assert_array_equal(out, prepare_features(feats, None, settings))
    if demo:
        out = prepare_features_demo(feats, FeatureSettings(feat_sample_size=5))
        stored = np.load(DATA / "features_vas_dog_02754_resnet50_first64_demo_tile_S5.npy")
        np.testing.assert_array_equal(out.astype(np.float32), stored)


def test_nofeats_from_random_state():
    info = CASES["nofeats"]
    feats = random_features(np.random.RandomState(NOFEATS_SEED))
    assert feats.shape == (FEAT_LEN, 2048) and feats.dtype == np.float32
    assert feats.min() >= 0 and feats.max() < 1
    for name in ("S1", "S5"):
        out = prepare_features(feats, None, settings_for(name, "nofeats"))
        assert sha16(out) == info["outputs"][name]["sha256_16_float32"]
        rows = np.array(info["outputs"][name]["rows_of_the_215_random_rows"])
        np.testing.assert_array_equal(out, feats[rows])
    out = prepare_features(feats, None, FeatureSettings(feat_sample_size=5))
    np.testing.assert_array_equal(out.astype(np.float32), np.load(DATA / "features_nofeats_S5.npy"))
    # rgb is drawn entirely before flow (the authors' order)
    rs = np.random.RandomState(NOFEATS_SEED)
    np.testing.assert_array_equal(feats[:, :1024], rs.rand(215, 1024).astype(np.float32))


# ----------------------------------------------------------------------------- steps


def test_steps():
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    padded = pad_or_trim(x, 12)
    assert padded.dtype == np.float64 and padded.shape == (12, 3)
    np.testing.assert_array_equal(padded[:10], x)
    assert (padded[10:] == 0).all()
    np.testing.assert_array_equal(pad_or_trim(x, 4), x[:4])
    np.testing.assert_array_equal(center_crop_rows(np.arange(215), 212), np.arange(1, 213))
    np.testing.assert_array_equal(center_crop_rows(np.arange(216), 212), np.arange(2, 214))
    with pytest.raises(ValueError, match="cannot centre-crop"):
        center_crop_rows(np.zeros((5, 2)), 6)
    both = concat_streams(x, x + 100)
    assert both.shape == (10, 6) and (both[:, 3:] == x + 100).all()
    assert concat_streams(x) is not None and concat_streams(x).shape == (10, 3)
    with pytest.raises(ValueError, match="different frame counts"):
        concat_streams(x, x[:9])
    with pytest.raises(ValueError, match="frames, channels"):
        concat_streams(np.zeros(5))


def test_leftmost_crop_or_tile():
    x = np.arange(64)[:, None] * np.ones((1, 2))
    tiled = leftmost_crop_or_tile(x, 215)
    assert tiled.shape == (215, 2)
    np.testing.assert_array_equal(tiled[:, 0], np.arange(215) % 64)
    same = np.arange(215.0)[:, None]
    assert leftmost_crop_or_tile(same, 215) is same  # no-op at the target length
    np.testing.assert_array_equal(leftmost_crop_or_tile(np.arange(300.0), 215), np.arange(215.0))
    frames = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)  # works on frames too
    assert leftmost_crop_or_tile(frames, 7).shape == (7, 2, 2, 3)
    np.testing.assert_array_equal(leftmost_crop_or_tile(frames, 7)[6], frames[0])
    with pytest.raises(ValueError, match="empty"):
        leftmost_crop_or_tile(np.zeros((0, 3)), 215)


def test_settings_validation_and_transformer_input():
    assert FeatureSettings().output_rows == 212
    assert FeatureSettings(feat_sample_size=5, times_to_repeat=5).output_rows == 25
    d = FeatureSettings(feat_sample_size=5, tile_short=True).to_dict()
    assert FeatureSettings.from_dict(d) == FeatureSettings(feat_sample_size=5, tile_short=True)
    for bad in (
        {"feat_sample_size": 213},
        {"feat_sample_size": 0},
        {"feat_crop_len": 216},
        {"times_to_repeat": 0},
        {"feat_len": 2.5},
    ):
        with pytest.raises(ValueError):
            FeatureSettings(**bad)
    x = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(2, 3, 4)
    y = to_transformer_input(x)
    assert y.dtype == torch.float32 and y.shape == (2, 4, 3)
    assert torch.equal(y[1, :, 2], x[1, 2].float())
    assert to_transformer_input(np.zeros((5, 2048))).shape == (1, 2048, 5)
    with pytest.raises(ValueError, match=r"\(B, S, D\)"):
        to_transformer_input(np.zeros(3))


# ----------------------------------------------------------------------------- files


def test_reads_pickles_of_every_protocol_that_numpy_arrays_use(tmp_path):
    feats = resnet_input()
    for protocol in (3, 4):  # the authors' files: 3 (BN-Inception) and 4 (ResNet-50)
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(feats, protocol=protocol))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # NumPy 2 must not import its deprecated numpy.core
            got = read_feature_array(path)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, feats)
    for protocol, spelled in ((2, "_codecs.encode"), (5, "_frombuffer")):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(feats, protocol=protocol))
        with pytest.raises(FeatureFileError, match=f"{spelled}.*protocol {protocol}.*numpy.save"):
            read_feature_array(path)
    assert set(ALLOWED_GLOBALS) == {
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.ndarray",
        "numpy.dtype",
    }


def test_reads_the_authors_opcode_layout(tmp_path):
    """A pickle with exactly the authors' globals spelled the NumPy 1.x way (GLOBAL opcodes)."""
    data = pickle.dumps(np.arange(6, dtype=np.float32).reshape(2, 3), protocol=3)
    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path = tmp_path / "authors.pkl"
    path.write_bytes(data)
    assert b"cnumpy.core.multiarray\n_reconstruct" in data
    np.testing.assert_array_equal(read_feature_array(path), np.arange(6.0).reshape(2, 3))


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickles_are_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Exploit(marker), protocol=2))
    with pytest.raises(FeatureFileError) as err:
        read_feature_array(evil)
    message = str(err.value)
    assert str(evil) in message and f"{os.system.__module__}.system" in message
    assert "nothing was run" in message
    assert not marker.exists()
    # an array hidden next to a refused global in a container
    mixed = tmp_path / "mixed.pkl"
    mixed.write_bytes(pickle.dumps([np.zeros((2, 2), np.float32), _Exploit(marker)]))
    with pytest.raises(FeatureFileError, match="refused to unpickle global"):
        read_feature_array(mixed)
    assert not marker.exists()
    # builtins / other classes are refused too
    other = tmp_path / "eval.pkl"
    other.write_bytes(pickle.dumps(eval, protocol=4))
    with pytest.raises(FeatureFileError, match="builtins.eval"):
        unpickle_array(other)


def test_pickles_holding_other_things(tmp_path):
    for obj, found in (({"a": 1}, "dict"), ([1.0, 2.0], "list")):
        path = tmp_path / f"{found}.pkl"
        path.write_bytes(pickle.dumps(obj))
        with pytest.raises(FeatureFileError, match=f"found a {found}"):
            read_feature_array(path)
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(pickle.dumps(resnet_input(), protocol=4)[:1000])
    with pytest.raises(FeatureFileError, match="not a readable feature pickle"):
        read_feature_array(truncated)
    scalar = tmp_path / "scalar.pkl"
    scalar.write_bytes(pickle.dumps(np.zeros(3, np.float32)))
    with pytest.raises(FeatureFileError, match="2-D"):
        read_feature_array(scalar)


def test_npy_files_and_errors(tmp_path):
    good = tmp_path / "f.npy"
    np.save(good, resnet_input().astype(np.float64))
    got = read_feature_array(good)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, resnet_input())
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(FeatureFileError, match="Python objects"):
        read_feature_array(objects)
    cases = {
        "ints.npy": (np.zeros((3, 4), np.int64), "floating-point"),
        "cube.npy": (np.zeros((2, 3, 4), np.float32), "2-D"),
        "nan.npy": (np.array([[0.0, np.nan], [1.0, 2.0]]), "1 of 2 rows"),
        "empty.npy": (np.zeros((0, 4), np.float32), "empty feature matrix"),
    }
    for name, (arr, message) in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(FeatureFileError, match=message) as err:
            read_feature_array(tmp_path / name)
        assert name in str(err.value)
    with pytest.raises(FeatureFileError, match="no such file"):
        read_feature_array(tmp_path / "missing.npy")
    (tmp_path / "zero.pkl").write_bytes(b"")
    with pytest.raises(FeatureFileError, match="empty file"):
        read_feature_array(tmp_path / "zero.pkl")
    (tmp_path / "f.txt").write_text("1 2 3")
    with pytest.raises(FeatureFileError, match="unsupported feature file extension"):
        read_feature_array(tmp_path / "f.txt")


def write_layout(root, video, rows=20, depth=1024, flow=True, resnet=True):
    """The authors' folders for one video: returns the rgb / flow / resnet arrays written."""
    rng = np.random.default_rng(len(str(root / video)))
    out = {}
    kinds = [(RGB_FOLDER, depth)] + ([(FLOW_FOLDER, depth)] if flow else [])
    kinds += [(RESNET_FOLDER, 2048)] if resnet else []
    for folder, d in kinds:
        arr = rng.random((rows, d), dtype=np.float32)
        path = root / folder / f"{video}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(arr, protocol=3))
        out[folder] = arr
    return out


def test_folder_layouts_and_loading(tmp_path):
    vas = tmp_path / "vas"
    dog = write_layout(vas / "dog", "video_00001", rows=30)
    write_layout(vas / "cough", "video_00002", rows=30)
    rgb, flow = find_feature_files(vas, "dog/video_00001")
    assert rgb == vas / "dog" / RGB_FOLDER / "video_00001.pkl"
    assert flow == vas / "dog" / FLOW_FOLDER / "video_00001.pkl"
    assert find_feature_files(vas, "video_00001") == (rgb, flow)  # class searched
    res, none = find_feature_files(vas, "video_00002", "resnet50")
    assert res == vas / "cough" / RESNET_FOLDER / "video_00002.pkl" and none is None
    settings = FeatureSettings(feat_sample_size=5)
    got = load_feature_files(rgb, flow, settings)
    expected = prepare_features(dog[RGB_FOLDER], dog[FLOW_FOLDER], settings)
    np.testing.assert_array_equal(got, expected)
    assert (got[[3, 4]] == 0).all()  # 30 rows: S5 rows 163 and 205 are zero padding
    # VGGSound: flat folders
    vgg = tmp_path / "vggsound"
    write_layout(vgg, "abcdefghijk_1000_11000")
    assert find_feature_files(vgg, "abcdefghijk_1000_11000")[0].parent == vgg / RGB_FOLDER
    # errors
    with pytest.raises(FileNotFoundError, match="no bninception features"):
        find_feature_files(vas, "video_99999")
    write_layout(vas / "drum", "video_00001", rows=5)
    with pytest.raises(FileNotFoundError, match="several classes"):
        find_feature_files(vas, "video_00001")
    write_layout(vas / "gun", "video_00003", flow=False)
    with pytest.raises(FileNotFoundError, match="no flow companion"):
        find_feature_files(vas, "gun/video_00003")
    with pytest.raises(ValueError, match="unknown feature kind"):
        find_feature_files(vas, "dog/video_00001", "i3d")
    short = tmp_path / "short.npy"
    np.save(short, np.zeros((29, 1024), np.float32))
    with pytest.raises(FeatureFileError, match="flow file") as err:
        load_feature_files(rgb, short)
    assert str(rgb) in str(err.value) and str(short) in str(err.value)
