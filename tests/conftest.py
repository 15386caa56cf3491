"""Shared fixtures: golden VGGish data (copied from the reference's outputs) and recipe weights."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/recipes.py

from audiorep.features.postprocess import Postprocessor  # noqa: E402
from audiorep.models.vggish import VGGish  # noqa: E402
from recipes import tf_to_torch_layout, vggish_pca_params, vggish_tf_variables  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
VGGISH_FIXTURES = FIXTURES / "vggish"

# Tests measure numbers, not speed; keep them deterministic and light on the 2-core CI box.
torch.set_num_threads(min(2, os.cpu_count() or 1))
# Eager VGGish by default in tests (inherited by subprocesses): torch keeps every frozen
# TorchScript copy's weights until the process exits (+270 MB per distinct weights, see
# docs/testing.md), and the suite uses a dozen weight sets. The frozen path is the same
# arithmetic up to summation order; tests that cover it opt in with the `frozen_vggish`
# fixture (tests/test_cli_embed.py, tests/test_model.py, tests/test_vggish_parity.py).
os.environ.setdefault("AUDIOREP_EAGER", "1")


@pytest.fixture
def frozen_vggish(monkeypatch):
    """Run VGGish bundles on the default CPU path (frozen TorchScript copy), as users do."""
    monkeypatch.delenv("AUDIOREP_EAGER", raising=False)


def vggish_manifest() -> dict:
    return json.loads((VGGISH_FIXTURES / "manifest.json").read_text())


def vggish_cases() -> list[dict]:
    return vggish_manifest()["cases"]


@pytest.fixture(scope="session")
def recipe_variables() -> dict[str, np.ndarray]:
    return vggish_tf_variables()


@pytest.fixture(scope="session")
def recipe_model(recipe_variables) -> VGGish:
    """VGGish with recipe-v1 weights: the weights the golden fixtures were computed with."""
    model = VGGish()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
             tf_to_torch_layout(recipe_variables).items()}  # fmt: skip
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def fixture_postprocessor() -> Postprocessor:
    with np.load(VGGISH_FIXTURES / "pca_params.npz") as d:
        return Postprocessor(d["pca_eigen_vectors"], d["pca_means"])


@pytest.fixture(scope="session")
def recipe_pca() -> dict[str, np.ndarray]:
    return vggish_pca_params()


# ----------------------------------------------------------------------------- memory
# How `make test`'s memory is measured: the kernel's peak resident set size (getrusage ru_maxrss)
# of the pytest process itself and of the largest child it waited for (subprocess / worker
# tests). After each test we note which one raised either peak, and the session fails when a
# peak exceeds AUDIOREP_TEST_MAX_RSS_GB (default 8, the CI budget).
_MAX_RSS_GB = float(os.environ.get("AUDIOREP_TEST_MAX_RSS_GB", "8"))
_peaks: dict[str, tuple[float, str]] = {"pytest": (0.0, ""), "child": (0.0, "")}


def _rss_gb() -> dict[str, float]:
    import resource

    kib = {
        "pytest": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    return {k: v / 2**20 for k, v in kib.items()}  # Linux reports KiB


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    for who, gb in _rss_gb().items():
        if gb > _peaks[who][0]:
            if _peaks[who][0] and os.environ.get("AUDIOREP_TEST_RSS_LOG"):
                with open(os.environ["AUDIOREP_TEST_RSS_LOG"], "a") as log:
                    log.write(f"{who} {_peaks[who][0]:.2f} -> {gb:.2f} GiB  {item.nodeid}\n")
            _peaks[who] = (gb, item.nodeid)


def pytest_terminal_summary(terminalreporter):
    for who, (gb, nodeid) in _peaks.items():
        terminalreporter.write_line(f"peak RSS ({who}): {gb:.2f} GiB, reached by {nodeid or '-'}")


def pytest_sessionfinish(session, exitstatus):
    over = {w: p for w, p in _peaks.items() if p[0] > _MAX_RSS_GB}
    if over and exitstatus == 0:
        session.exitstatus = 1
        sys.stderr.write(f"peak RSS over {_MAX_RSS_GB} GiB: {over}\n")
    if _SHARED_READS and session.exitstatus == 0:
        session.exitstatus = 1
        sys.stderr.write(
            "tests read the shared data folder (copy what they need into tests/fixtures/): "
            + ", ".join(sorted(_SHARED_READS)[:10])
            + "\n"
        )


# ----------------------------------------------------------------------------- no golden-data reads
# The tests must run from a clean clone anywhere: nothing may be read from the developers'
# golden-data folder beside the repository; fixtures are copied into tests/fixtures/. A Python
# audit hook records every file or folder this process opens there (reads by C libraries such as
# libsndfile are not audited; `make test` with the folder hidden covers those), and the session
# fails if there is any.
GOLDEN_DATA_FOLDER = "shared"  # the folder's name, beside the repository root
_REPO_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SHARED_DIR = os.path.join(_REPO_PARENT, GOLDEN_DATA_FOLDER) + os.sep
_SHARED_READS: set[str] = set()


def _audit_shared_reads(event: str, args: tuple) -> None:
    if event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if isinstance(path, (str, bytes, os.PathLike)):
        full = os.path.abspath(os.fsdecode(path))
        if (full + os.sep).startswith(_SHARED_DIR):
            _SHARED_READS.add(full)


sys.addaudithook(_audit_shared_reads)


# ----------------------------------------------------------------------------- numeric tests
# Files whose tests compare floating-point results across code paths or with golden data.
# `make test-isa` runs them again with torch and oneDNN held to lower instruction sets, so a
# tolerance tuned on one CPU fails on the developer's own machine (docs/testing.md).
NUMERIC_FILES = {
    "test_ast.py",
    "test_backbones.py",
    "test_cli_embed.py",
    "test_cnn14.py",
    "test_embed_corpus.py",
    "test_fad_cli.py",
    "test_frontend.py",
    "test_fusion.py",
    "test_fusion_cnn14.py",
    "test_hear.py",
    "test_hear_backbones.py",
    "test_heads.py",
    "test_heads_attention.py",
    "test_heads_dbof_fused.py",
    "test_heads_report.py",
    "test_training_convergence.py",
    "test_tagger.py",
    "test_losses.py",
    "test_melception.py",
    "test_melgan.py",
    "test_resnet50_video.py",
    "test_transformer.py",
    "test_transformer_training.py",
    "test_visual_features.py",
    "test_vqgan.py",
    "test_vqgan_loss.py",
    "test_lpaps.py",
    "test_metrics_fad_inf.py",
    "test_metrics_frechet.py",
    "test_metrics_kid.py",
    "test_metrics_specvqgan.py",
    "test_metrics_stats.py",
    "test_model.py",
    "test_resample.py",
    "test_specvqgan_classifier_training.py",
    "test_specvqgan_evaluate.py",
    "test_specvqgan_judges.py",
    "test_vggish_parity.py",
    "test_vggishish.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in NUMERIC_FILES:
            item.add_marker(pytest.mark.numeric)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Many tiny ops: one intra-op thread avoids OpenMP spin-waits on a busy 2-core machine.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
