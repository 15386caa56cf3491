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
