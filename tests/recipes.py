"""Seeded random VGGish weights ("recipe v1") in TensorFlow's own names and layouts.

The golden fixtures were produced by Google's TF VGGish with these weights; tests regenerate
them here instead of reading the shared folder at run time. The stream of the legacy
``numpy.random.RandomState`` is frozen, so the values are reproducible everywhere (the PCA
stand-in also goes through LAPACK's QR, so its last bits may depend on the BLAS build).

Recipe v1:

* ``rs = RandomState(seed)``; for each of the 18 variables, in :data:`VGGISH_TF_VARIABLES`
  order, draw ``x = rs.standard_normal(shape)`` (float64, C order, TF layout: HWIO conv,
  ``[in, out]`` dense).
* weights: ``x * sqrt(2 / fan_in)`` with ``fan_in = prod(shape[:-1])``; biases: ``x * 0.01``.
* cast to float32.

Generating the full set (72,141,184 parameters) takes about 1.5 s; share it via a
module-scoped fixture.
"""

from __future__ import annotations

import numpy as np

WEIGHTS_SEED = 20261121
PCA_SEED = WEIGHTS_SEED + 1

#: The 18 TF variables in the order the recipe draws them: (name, TF shape).
VGGISH_TF_VARIABLES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("vggish/conv1/weights", (3, 3, 1, 64)),
    ("vggish/conv1/biases", (64,)),
    ("vggish/conv2/weights", (3, 3, 64, 128)),
    ("vggish/conv2/biases", (128,)),
    ("vggish/conv3/conv3_1/weights", (3, 3, 128, 256)),
    ("vggish/conv3/conv3_1/biases", (256,)),
    ("vggish/conv3/conv3_2/weights", (3, 3, 256, 256)),
    ("vggish/conv3/conv3_2/biases", (256,)),
    ("vggish/conv4/conv4_1/weights", (3, 3, 256, 512)),
    ("vggish/conv4/conv4_1/biases", (512,)),
    ("vggish/conv4/conv4_2/weights", (3, 3, 512, 512)),
    ("vggish/conv4/conv4_2/biases", (512,)),
    ("vggish/fc1/fc1_1/weights", (12288, 4096)),
    ("vggish/fc1/fc1_1/biases", (4096,)),
    ("vggish/fc1/fc1_2/weights", (4096, 4096)),
    ("vggish/fc1/fc1_2/biases", (4096,)),
    ("vggish/fc2/weights", (4096, 128)),
    ("vggish/fc2/biases", (128,)),
)


def vggish_tf_variables(seed: int = WEIGHTS_SEED) -> dict[str, np.ndarray]:
    """Recipe-v1 weights: TF variable name -> float32 array in TF layout (HWIO / [in, out])."""
    rs = np.random.RandomState(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in VGGISH_TF_VARIABLES:
        x = rs.standard_normal(shape)  # float64; the draw order fixes every value
        if name.endswith("/weights"):
            x = x * np.sqrt(2.0 / np.prod(shape[:-1]))  # He scaling keeps activations O(1)
        else:
            x = x * 0.01
        out[name] = x.astype(np.float32)
    return out


def vggish_pca_params(seed: int = PCA_SEED) -> dict[str, np.ndarray]:
    """Stand-in for ``vggish_pca_params.npz``: ``pca_eigen_vectors`` float32 ``(128, 128)``
    (an orthonormal basis with row i scaled by ``1 / linspace(0.5, 3, 128)[i]``) and
    ``pca_means`` float32 ``(128, 1)``."""
    rs = np.random.RandomState(seed)
    q, _ = np.linalg.qr(rs.standard_normal((128, 128)))
    eigen = q * (1.0 / np.linspace(0.5, 3.0, 128))[:, None]
    means = rs.standard_normal((128, 1)) * 0.1
    return {
        "pca_eigen_vectors": eigen.astype(np.float32),
        "pca_means": means.astype(np.float32),
    }


def tf_to_torch_layout(variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Manual reference conversion (what the converter must reproduce), audiorep keys.

    conv HWIO -> OIHW ``transpose(3, 2, 0, 1)``; dense ``[in, out]`` -> ``[out, in]``.
    """
    scopes = {
        "conv1": "vggish/conv1",
        "conv2": "vggish/conv2",
        "conv3_1": "vggish/conv3/conv3_1",
        "conv3_2": "vggish/conv3/conv3_2",
        "conv4_1": "vggish/conv4/conv4_1",
        "conv4_2": "vggish/conv4/conv4_2",
        "fc1_1": "vggish/fc1/fc1_1",
        "fc1_2": "vggish/fc1/fc1_2",
        "fc2": "vggish/fc2",
    }
    out = {}
    for module, scope in scopes.items():
        w = variables[f"{scope}/weights"]
        out[f"{module}.weight"] = w.transpose(3, 2, 0, 1) if w.ndim == 4 else w.T
        out[f"{module}.bias"] = variables[f"{scope}/biases"]
    return out
