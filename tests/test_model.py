"""VGGish module: shapes, taps, autograd/inference modes, torchvggish compatibility."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from audiorep.models.vggish import VGGISH_TAPS, VGGish, seeded_random_state_dict


@pytest.fixture(scope="module")
def model() -> VGGish:
    m = VGGish()
    m.load_state_dict(seeded_random_state_dict(1))
    return m.eval()


def test_shapes_and_empty_batch(model):
    x = torch.randn(3, 96, 64)
    out = model(x)
    assert out.shape == (3, 128)
    torch.testing.assert_close(model(x[:, None]), out)
    assert model(torch.zeros(0, 96, 64)).shape == (0, 128)
    with pytest.raises(ValueError, match=r"\(N, 96, 64\)"):
        model(torch.zeros(2, 64, 96))


def test_parameter_count():
    assert sum(p.numel() for p in VGGish().parameters()) == 72_141_184


def test_taps_in_one_pass_without_hooks(model):
    x = torch.randn(2, 96, 64)
    taps = model.forward_taps(x)
    assert tuple(taps) == VGGISH_TAPS
    expected_shapes = {
        "conv1": (2, 64, 96, 64),
        "conv2": (2, 128, 48, 32),
        "conv4_2": (2, 512, 12, 8),
        "pool4": (2, 512, 6, 4),
        "flatten": (2, 12288),
        "fc1_2": (2, 4096),
        "embedding": (2, 128),
    }
    for name, shape in expected_shapes.items():
        assert tuple(taps[name].shape) == shape
    torch.testing.assert_close(taps["embedding"], model(x))
    assert (taps["conv3_1"] >= 0).all() and (taps["embedding"] < 0).any()  # pre-activation
    some = model.forward_taps(x, ["conv2", "conv1"])
    assert list(some) == ["conv1", "conv2"]
    torch.testing.assert_close(some["conv2"], taps["conv2"])
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    with pytest.raises(KeyError, match="available taps"):
        model.forward_taps(x, ["conv5"])


def test_taps_under_autograd_and_inference_mode(model):
    x = torch.randn(1, 96, 64, requires_grad=True)
    taps = model.forward_taps(x, ["conv3_2", "embedding"])
    (taps["conv3_2"].mean() + taps["embedding"].sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.inference_mode():
        t = model.forward_taps(torch.randn(1, 96, 64), "fc1_1")
    assert t["fc1_1"].shape == (1, 4096)


def test_flatten_is_tf_nhwc_order(model):
    x = torch.randn(1, 96, 64)
    with torch.no_grad():
        taps = model.forward_taps(x, ["pool4", "flatten"])
    np.testing.assert_array_equal(
        taps["flatten"].numpy(), taps["pool4"].permute(0, 2, 3, 1).reshape(1, -1).numpy()
    )


def test_torchvggish_compat_is_relu_of_reference(model):
    compat = VGGish(torchvggish_compat=True)
    compat.load_state_dict(model.state_dict())
    x = torch.randn(4, 96, 64)
    torch.testing.assert_close(compat(x), torch.relu(model(x)))


def test_same_numbers_as_torchvggish_package_plus_relu(model):
    tv = pytest.importorskip("torchvggish.torchvggish", reason="torchvggish not installed")
    net = tv.VGG(tv.make_layers(), postprocess=False).eval()
    sd = model.state_dict()
    convs = ["conv1", "conv2", "conv3_1", "conv3_2", "conv4_1", "conv4_2"]
    mapping = {f"features.{i}": n for i, n in zip([0, 3, 6, 8, 11, 13], convs)}
    mapping.update({"embeddings.0": "fc1_1", "embeddings.2": "fc1_2", "embeddings.4": "fc2"})
    net.load_state_dict({f"{k}.{p}": sd[f"{v}.{p}"] for k, v in mapping.items()
                         for p in ("weight", "bias")})  # fmt: skip
    x = torch.randn(3, 1, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), torch.relu(model(x)), atol=1e-5, rtol=1e-5)
        # and without its ReLU the reference differs: about half the values are negative
        assert (model(x) < 0).float().mean() > 0.2


def test_bfloat16_bundle_is_close_to_float32():
    from audiorep.pipelines import load

    exact = load("vggish", weights="random", seed=2)
    fast = load("vggish", weights="random", seed=2, precision="bfloat16")
    x = torch.randn(6, 96, 64) * 2
    a, b = exact.embed_examples(x), fast.embed_examples(x)
    assert b.dtype == torch.float32 and b.shape == (6, 128)
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.999
    assert (a - b).abs().max() > 0  # really a different path
    with pytest.raises(ValueError, match="precision"):
        load("vggish", weights="random", precision="int8")
    if not torch.cuda.is_available():  # float16 kernels are a CUDA-only path
        with pytest.raises(RuntimeError, match="float16 needs a CUDA device"):
            load("vggish", weights="random", precision="float16").embed_examples(x[:1])


def test_frozen_cpu_copy_is_shared_per_weights():
    """optimize_for_inference never frees what it prepacks: one frozen copy per distinct weights.

    Before this cache every bundle froze its own copy, +270 MB of process memory each time, and
    `make test` peaked at 17.5 GB.
    """
    from audiorep.models import vggish as mv

    def rss_gib() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30

    model = VGGish()
    model.load_state_dict(seeded_random_state_dict(7))
    twin = VGGish()
    twin.load_state_dict(model.state_dict())
    first = mv.cpu_inference_module(model.eval(), weights_key="seed-7")
    before = rss_gib()
    for _ in range(3):
        assert mv.cpu_inference_module(twin.eval(), weights_key="seed-7") is first
    assert rss_gib() - before < 0.05  # nothing new was frozen
    low = mv.cpu_inference_module(twin, low_memory=True, weights_key="seed-7")
    assert low.model is twin  # the eager FC layers are the caller's own model
    again = mv.cpu_inference_module(model, low_memory=True, weights_key="seed-7")
    assert again.conv is low.conv
    assert len(mv._FROZEN_CACHE) <= mv._FROZEN_CACHE_SIZE
