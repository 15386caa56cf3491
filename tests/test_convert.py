"""VGGish weight conversion: TF names/npz, torchvggish .pth, safetensors round trip, errors."""

from __future__ import annotations

import argparse
import importlib.util
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import recipes
from audiorep.cli import weights as cli_weights
from audiorep.convert import vggish as cv
from audiorep.convert.vggish import WeightsFormatError
from audiorep.models.vggish import VGGish

HAS_TF = importlib.util.find_spec("tensorflow") is not None


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def recipe(request) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    """Recipe-v1 TF variables and the expected audiorep state dict (manual transposes)."""
    try:  # reuse the session-wide copy when conftest provides one (288 MB, ~1.5 s)
        tf_vars = request.getfixturevalue("recipe_variables")
    except pytest.FixtureLookupError:
        tf_vars = recipes.vggish_tf_variables()
    # torch's transpose copy is fast, and comparing contiguous tensors is ~5x faster.
    expected = {
        k: torch.from_numpy(v).contiguous() for k, v in recipes.tf_to_torch_layout(tf_vars).items()
    }
    return tf_vars, expected


def cheap_tf_variables(seed: int = 0) -> dict[str, np.ndarray]:
    """Full-shape TF variables that are quick to make: random convs/biases/fc2, and the two
    big dense kernels zero except for a few random entries (enough to catch a wrong
    transpose)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in recipes.VGGISH_TF_VARIABLES:
        if np.prod(shape) > 10**6:
            w = np.zeros(shape, np.float32)
            idx = tuple(rng.integers(0, n, size=64) for n in shape)
            w[idx] = rng.standard_normal(64).astype(np.float32)
        else:
            w = rng.standard_normal(shape).astype(np.float32)
        out[name] = w
    return out


def pca_params() -> dict[str, np.ndarray]:
    return recipes.vggish_pca_params()


def to_torchvggish(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        f"{cv.TORCHVGGISH_MODULES[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in sd.items()
    }


def assert_state_dicts_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == torch.float32, k
        assert got[k].is_contiguous(), k
        assert torch.equal(got[k], want[k]), k


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="audiorep")
    sub = parser.add_subparsers(dest="command")
    cli_weights.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


# ----------------------------------------------------------------------------- full recipe


def test_npz_and_torchvggish_pth_match_manual_transposes(recipe, tmp_path):
    tf_vars, expected = recipe

    # In memory, with TF's ":0" tensor suffix.
    sd = cv.tf_variables_to_state_dict({f"{k}:0": v for k, v in tf_vars.items()})
    assert_state_dicts_equal(sd, expected)
    del sd  # the full model is 288 MB; keep at most a few copies alive

    # .npz holding the TF variables and the PCA parameters together.
    npz = tmp_path / "vggish_tf.npz"
    np.savez(npz, **tf_vars, **pca_params())
    model, pca = cv.load_any(npz)
    assert_state_dicts_equal(model, expected)
    del model
    assert pca is not None
    assert pca["pca_means"].shape == (128,)
    assert torch.equal(
        pca["pca_eigen_vectors"], torch.from_numpy(pca_params()["pca_eigen_vectors"])
    )
    npz.unlink()

    # torchvggish's layout (as in vggish-10086976.pth).
    pth = tmp_path / "vggish-10086976.pth"
    torch.save(to_torchvggish(expected), pth)
    model, pca = cv.load_any(pth)
    assert pca is None
    assert_state_dicts_equal(model, expected)


def test_convert_to_safetensors_loads_into_vggish(recipe, tmp_path):
    tf_vars, expected = recipe
    npz = tmp_path / "vggish_tf.npz"
    np.savez(npz, **tf_vars, **pca_params())
    dst = cv.convert(npz, tmp_path / "out" / "vggish.safetensors")
    npz.unlink()
    assert dst == tmp_path / "out" / "vggish.safetensors"
    assert [p.name for p in dst.parent.iterdir()] == ["vggish.safetensors"]  # no temp left
    with safe_open(str(dst), framework="pt") as f:
        assert f.metadata() == {
            "format": "audiorep.vggish",
            "source": "vggish_tf.npz",
            "contains": "model,pca",
        }

    model_sd, pca = cv.load_any(dst)
    assert pca is not None
    # Built on the meta device and given the tensors (assign=True): no random init, no copy.
    with torch.device("meta"):
        converted, reference = VGGish(), VGGish()
    converted.load_state_dict(model_sd, strict=True, assign=True)
    reference.load_state_dict(expected, strict=True, assign=True)

    torch.manual_seed(0)
    batch = torch.randn(3, 96, 64) * 2.0
    with torch.no_grad():
        got, want = converted.eval()(batch), reference.eval()(batch)
    assert got.shape == (3, 128)
    assert torch.equal(got, want)
    assert (got < 0).any()  # pre-activation output: the torchvggish ReLU was not added


# ----------------------------------------------------------------------------- names/shapes


def test_model_shapes_match_the_model():
    with torch.device("meta"):
        sd = VGGish().state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == cv.MODEL_SHAPES
    assert list(sd) == list(cv.MODEL_SHAPES)
    assert dict(recipes.VGGISH_TF_VARIABLES) == cv.TF_SHAPES


def test_tf_variables_errors_list_every_problem():
    with pytest.raises(ValueError) as e:
        cv.tf_variables_to_state_dict({})
    assert "missing (18)" in str(e.value)
    assert "vggish/fc1/fc1_1/weights" in str(e.value)

    bad = {name: np.zeros(shape, np.float32) for name, shape in recipes.VGGISH_TF_VARIABLES}
    bad["vggish/conv1/weights"] = np.zeros((3, 3, 2, 64), np.float32)
    del bad["vggish/fc2/biases"]
    bad["vggish/fc3/weights"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError) as e:
        cv.tf_variables_to_state_dict(bad)
    msg = str(e.value)
    assert "missing (1): vggish/fc2/biases" in msg
    assert "unexpected (1): vggish/fc3/weights" in msg
    assert "vggish/conv1/weights has shape (3, 3, 2, 64), expected (3, 3, 1, 64)" in msg


def test_tf_variables_duplicate_and_dtype_errors():
    with pytest.raises(ValueError, match="given twice"):
        cv.tf_variables_to_state_dict(
            {"vggish/conv1/biases": np.zeros(64), "vggish/conv1/biases:0": np.zeros(64)}
        )
    ints = {name: np.zeros(shape, np.float32) for name, shape in recipes.VGGISH_TF_VARIABLES}
    ints["vggish/conv1/weights"] = np.zeros((3, 3, 1, 64), np.int32)
    with pytest.raises(ValueError, match="vggish/conv1/weights: expected floating-point"):
        cv.tf_variables_to_state_dict(ints)


def test_torchvggish_errors_name_keys():
    # Expanded scalars: right shapes, no memory.
    sd = {k: torch.zeros(()).expand(s) for k, s in cv.TORCHVGGISH_SHAPES.items()}
    sd["embeddings.4.weight"] = torch.zeros(()).expand(4096, 128)  # TF orientation by mistake
    sd["embeddings.6.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as e:
        cv.torchvggish_to_state_dict(sd)
    assert "embeddings.4.weight has shape (4096, 128), expected (128, 4096)" in str(e.value)
    assert "unexpected (1): embeddings.6.weight" in str(e.value)


def test_pca_from_mapping_shapes_and_dtypes():
    p = pca_params()
    out = cv.pca_from_mapping(p)
    assert out["pca_eigen_vectors"].dtype == torch.float32
    assert out["pca_means"].shape == (128,)
    assert torch.equal(out["pca_means"], torch.from_numpy(p["pca_means"][:, 0]))

    flat = cv.pca_from_mapping(
        {"pca_eigen_vectors": p["pca_eigen_vectors"].astype(np.float64), "pca_means": np.ones(128)}
    )
    assert flat["pca_eigen_vectors"].dtype == torch.float32
    assert flat["pca_means"].shape == (128,)

    with pytest.raises(ValueError, match="missing pca_means"):
        cv.pca_from_mapping({"pca_eigen_vectors": p["pca_eigen_vectors"]})
    with pytest.raises(ValueError, match=r"pca_means has shape \(64,\)"):
        cv.pca_from_mapping({"pca_eigen_vectors": p["pca_eigen_vectors"], "pca_means": np.ones(64)})
    with pytest.raises(ValueError, match="pca_eigen_vectors has shape"):
        cv.pca_from_mapping({"pca_eigen_vectors": np.eye(127), "pca_means": np.ones(128)})


# ----------------------------------------------------------------------------- load_any


def test_load_any_detects_by_content_not_extension(tmp_path):
    p = pca_params()
    # A safetensors file with a misleading extension.
    st = tmp_path / "pca.bin"
    save_file({k: torch.from_numpy(v) for k, v in p.items()}, st)
    assert cv.load_any(st)[0] is None
    # An npz named .pth.
    npz = tmp_path / "pca.pth"
    with open(npz, "wb") as f:
        np.savez(f, **p)
    model, pca = cv.load_any(npz)
    assert model is None
    assert torch.equal(pca["pca_means"], torch.from_numpy(p["pca_means"].reshape(128)))


def test_load_any_torchvggish_pca_pth(tmp_path):
    p = pca_params()
    # torchvggish's PCA file: plain keys, means as a (128, 1) column.
    pth = tmp_path / "vggish_pca_params-970ea276.pth"
    torch.save({k: torch.from_numpy(v) for k, v in p.items()}, pth)
    model, pca = cv.load_any(pth)
    assert model is None
    assert pca["pca_means"].shape == (128,)
    # The same tensors held by torchvggish's Postprocessor module.
    pth2 = tmp_path / "pproc.pth"
    torch.save({f"pproc.{k}": torch.from_numpy(v) for k, v in p.items()}, pth2)
    assert torch.equal(cv.load_any(pth2)[1]["pca_eigen_vectors"], pca["pca_eigen_vectors"])


def test_load_any_unwraps_training_checkpoints(tmp_path):
    # A training checkpoint: nested one level, DataParallel prefix, non-tensor entries.
    p = pca_params()
    wrapped = {
        "state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in p.items()},
        "epoch": 3,
    }
    pth = tmp_path / "train.ckpt"  # torch's zip format, even with a TF-ish extension
    torch.save(wrapped, pth)
    model, pca = cv.load_any(pth)
    assert model is None
    assert torch.equal(pca["pca_eigen_vectors"], torch.from_numpy(p["pca_eigen_vectors"]))


def test_load_any_drops_tf_training_state(tmp_path):
    # Optimizer slots and counters of a TF training checkpoint are not weights.
    extra = {"global_step": np.array(7, np.int64), "vggish/conv1/biases/Adam": np.zeros(64)}
    npz = tmp_path / "train.npz"
    np.savez(npz, **pca_params(), **extra)
    model, pca = cv.load_any(npz)
    assert model is None
    assert pca is not None


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.pth", b"", "is empty"),
        ("garbage.pth", b"this is not a checkpoint at all", "unrecognised content"),
        ("pickle.pth", b"\x80\x02garbage-pickle", "weights_only"),
        ("array.npy", None, "single .npy array"),
        ("archive.zip", None, "neither an .npz nor a torch checkpoint"),
    ],
)
def test_load_any_unreadable_files_name_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, np.zeros(3))
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("readme.txt", "hello")
    else:
        path.write_bytes(content)
    with pytest.raises(WeightsFormatError, match=match) as e:
        cv.load_any(path)
    assert str(path) in str(e.value)


def test_load_any_unknown_or_incomplete_content_names_the_file(tmp_path):
    unknown = tmp_path / "other.npz"
    np.savez(unknown, foo=np.zeros(3), bar=np.ones(2))
    with pytest.raises(WeightsFormatError, match=r"unexpected entries: bar, foo") as e:
        cv.load_any(unknown)
    assert str(unknown) in str(e.value)

    partial = tmp_path / "partial.npz"
    np.savez(partial, **{"vggish/conv1/biases": np.zeros(64, np.float32)})
    with pytest.raises(WeightsFormatError, match="missing \\(17\\)") as e:
        cv.load_any(partial)
    assert str(partial) in str(e.value)

    mixed = tmp_path / "mixed.pth"
    torch.save({"conv1.bias": torch.zeros(64), "features.0.bias": torch.zeros(64)}, mixed)
    with pytest.raises(WeightsFormatError, match="mixes parameter naming schemes"):
        cv.load_any(mixed)

    with pytest.raises(FileNotFoundError, match="nope.pth"):
        cv.load_any(tmp_path / "nope.pth")


def test_load_any_refuses_pickled_objects(tmp_path):
    objs = tmp_path / "objects.npz"
    np.savez(objs, pca_means=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsFormatError, match="objects.npz"):
        cv.load_any(objs)

    module = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), module)  # a whole pickled nn.Module
    with pytest.raises(WeightsFormatError, match="weights_only") as e:
        cv.load_any(module)
    assert str(module) in str(e.value)


def test_truncated_safetensors_names_the_file(tmp_path):
    st = tmp_path / "pca.safetensors"
    save_file({k: torch.from_numpy(v) for k, v in pca_params().items()}, st)
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFormatError) as e:
        cv.load_any(st)
    assert str(st) in str(e.value)


@pytest.mark.skipif(HAS_TF, reason="checks the message shown when TensorFlow is missing")
def test_tf_checkpoint_without_tensorflow_explains_what_to_do(tmp_path):
    ckpt = tmp_path / "vggish_model.ckpt"
    ckpt.write_bytes(b"\x00" * 64)  # V1 TensorSlice files start with zero bytes
    with pytest.raises(ImportError) as e:
        cv.load_any(ckpt)
    msg = str(e.value)
    assert str(ckpt) in msg
    assert "pip install 'audiorep[tf]'" in msg
    assert "np.savez" in msg


def test_tf_checkpoint_round_trip(tmp_path):
    tf = pytest.importorskip(
        "tensorflow", reason="TensorFlow not installed: `pip install 'audiorep[tf]'` to test .ckpt"
    )
    cheap = cheap_tf_variables()
    graph = tf.Graph()
    with graph.as_default():
        for name, value in cheap.items():
            tf.compat.v1.get_variable(name, initializer=tf.constant(value), use_resource=False)
        saver = tf.compat.v1.train.Saver(write_version=tf.compat.v1.train.SaverDef.V1)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            ckpt = Path(saver.save(sess, str(tmp_path / "vggish_model.ckpt")))
    assert ckpt.is_file()  # V1: one file
    read = cv.read_tf_checkpoint(ckpt)
    assert set(read) == set(cheap)
    model, pca = cv.load_any(ckpt)
    assert pca is None
    assert_state_dicts_equal(model, cv.tf_variables_to_state_dict(cheap))


# ----------------------------------------------------------------------------- convert / CLI


def test_convert_pca_only_and_failures_leave_nothing(tmp_path):
    npz = tmp_path / "vggish_pca_params.npz"
    np.savez(npz, **pca_params())
    dst = cv.convert(npz, tmp_path / "pca.safetensors")
    with safe_open(str(dst), framework="pt") as f:
        assert f.metadata()["contains"] == "pca"
        assert set(f.keys()) == {"pca_eigen_vectors", "pca_means"}
    umask = os.umask(0)
    os.umask(umask)
    assert dst.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any new file

    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    out_dir = tmp_path / "out"
    with pytest.raises(WeightsFormatError):
        cv.convert(bad, out_dir / "x.safetensors")
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_cli_convert(tmp_path, capsys):
    src = tmp_path / "vggish_pca_params.npz"
    np.savez(src, **pca_params())
    dst = tmp_path / "pca.safetensors"
    assert run_cli(["convert", str(src), "-o", str(dst)]) == 0
    assert f"wrote {dst} (pca) from {src}" in capsys.readouterr().out
    model, pca = cv.load_any(dst)
    assert model is None
    assert torch.equal(pca["pca_means"], cv.pca_from_mapping(pca_params())["pca_means"])

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"garbage!")
    assert run_cli(["convert", str(garbage), "-o", str(tmp_path / "g.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("audiorep convert:")
    assert str(garbage) in err
    assert not (tmp_path / "g.safetensors").exists()
    assert run_cli(["convert", str(dst), "-o", str(dst)]) == 2
