"""VGGish weights: read every published format and write audiorep's ``.safetensors``.

Formats understood (detected from the file's content, the extension is only a fallback):

* Google's TF checkpoint ``vggish_model.ckpt`` (a single-file V1 TensorSlice checkpoint; needs
  TensorFlow, see :func:`read_tf_checkpoint`), or the same variables saved in an ``.npz``
  under their TF names (``vggish/conv1/weights`` ..., with or without ``:0``).
* Google's ``vggish_pca_params.npz`` (``pca_eigen_vectors``, ``pca_means``).
* torchvggish's ``vggish-10086976.pth`` (``features.N.*``, ``embeddings.N.*``) and
  ``vggish_pca_params-970ea276.pth``, read with ``torch.load(weights_only=True)``.
* audiorep's own ``.safetensors`` / ``.pth``: :class:`audiorep.models.vggish.VGGish` state-dict
  keys (``conv1.weight`` ... ``fc2.bias``) and optionally the two PCA keys.

Layouts: TF conv kernels are HWIO ``(3, 3, in, out)`` and become OIHW ``(out, in, 3, 3)``; TF
dense kernels are ``(in, out)`` and become ``(out, in)``. ``fc1_1`` needs no row permutation
because the model flattens pool4 in TF's NHWC order.
"""

from __future__ import annotations

import os
import re
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from audiorep.atomic import commit
from audiorep.convert.readers import WeightsFormatError, read_safetensors

PathLike = Union[str, "os.PathLike[str]"]

#: ``format`` value written to the safetensors metadata.
FORMAT = "audiorep.vggish"
PCA_KEYS = ("pca_eigen_vectors", "pca_means")
PCA_DIM = 128

# (audiorep module, TF variable scope, torch weight shape), in the network's order.
_LAYERS: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("conv1", "vggish/conv1", (64, 1, 3, 3)),
    ("conv2", "vggish/conv2", (128, 64, 3, 3)),
    ("conv3_1", "vggish/conv3/conv3_1", (256, 128, 3, 3)),
    ("conv3_2", "vggish/conv3/conv3_2", (256, 256, 3, 3)),
    ("conv4_1", "vggish/conv4/conv4_1", (512, 256, 3, 3)),
    ("conv4_2", "vggish/conv4/conv4_2", (512, 512, 3, 3)),
    ("fc1_1", "vggish/fc1/fc1_1", (4096, 12288)),
    ("fc1_2", "vggish/fc1/fc1_2", (4096, 4096)),
    ("fc2", "vggish/fc2", (128, 4096)),
)

#: torchvggish module prefix for each audiorep module (its ReLU/pool modules fill the gaps).
TORCHVGGISH_MODULES: dict[str, str] = {
    "conv1": "features.0",
    "conv2": "features.3",
    "conv3_1": "features.6",
    "conv3_2": "features.8",
    "conv4_1": "features.11",
    "conv4_2": "features.13",
    "fc1_1": "embeddings.0",
    "fc1_2": "embeddings.2",
    "fc2": "embeddings.4",
}


def _tf_shape(torch_shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(torch_shape) == 4:  # OIHW -> HWIO
        o, i, h, w = torch_shape
        return (h, w, i, o)
    return (torch_shape[1], torch_shape[0])  # [out, in] -> [in, out]


#: audiorep state-dict key -> torch shape.
MODEL_SHAPES: dict[str, tuple[int, ...]] = {}
#: TF variable name -> TF shape (HWIO / [in, out]).
TF_SHAPES: dict[str, tuple[int, ...]] = {}
#: torchvggish state-dict key -> torch shape.
TORCHVGGISH_SHAPES: dict[str, tuple[int, ...]] = {}
for _name, _scope, _shape in _LAYERS:
    MODEL_SHAPES[f"{_name}.weight"] = _shape
    MODEL_SHAPES[f"{_name}.bias"] = (_shape[0],)
    TF_SHAPES[f"{_scope}/weights"] = _tf_shape(_shape)
    TF_SHAPES[f"{_scope}/biases"] = (_shape[0],)
    TORCHVGGISH_SHAPES[f"{TORCHVGGISH_MODULES[_name]}.weight"] = _shape
    TORCHVGGISH_SHAPES[f"{TORCHVGGISH_MODULES[_name]}.bias"] = (_shape[0],)
del _name, _scope, _shape

# Optimizer slots and counters a training checkpoint may carry next to the 18 variables.
_TRAINING_SLOTS = {"Adam", "Adam_1", "Momentum", "RMSProp", "RMSProp_1", "ExponentialMovingAverage"}
_TRAINING_VARS = {"global_step", "beta1_power", "beta2_power"}


# ----------------------------------------------------------------------------- helpers


def _shape_of(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in np.shape(x))


def _check_names_and_shapes(
    found: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], what: str
) -> None:
    """Raise one ValueError listing every missing, unexpected and mis-shaped entry."""
    missing = [k for k in expected if k not in found]
    unexpected = sorted(k for k in found if k not in expected)
    bad = [
        f"{k} has shape {_shape_of(found[k])}, expected {expected[k]}"
        for k in expected
        if k in found and _shape_of(found[k]) != expected[k]
    ]
    if not (missing or unexpected or bad):
        return
    lines = [f"not a valid set of {what}:"]
    if missing:
        lines.append(f"  missing ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): {', '.join(unexpected)}")
    lines.extend(f"  wrong shape: {b}" for b in bad)
    raise ValueError("\n".join(lines))


def _float_numpy(name: str, x: Any) -> np.ndarray:
    """Any array-like -> floating-point ndarray (NumPy dtype kept; tensors become float32)."""
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise ValueError(f"{name}: expected floating-point values, got {x.dtype}")
        # bfloat16 has no NumPy dtype; float32 is the target anyway.
        return x.detach().to(device="cpu", dtype=torch.float32).numpy()
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{name}: expected floating-point values, got dtype {a.dtype}")
    return a


def _to_tensor(a: np.ndarray, permute: tuple[int, ...] | None = None) -> torch.Tensor:
    """float32 C-contiguous CPU tensor, optionally with its axes permuted first."""
    a = np.asarray(a, dtype=np.float32)
    if not a.flags.writeable:  # torch.from_numpy warns on read-only memory
        a = a.copy()
    t = torch.from_numpy(a)
    if permute is not None:
        t = t.permute(*permute)  # torch's blocked transpose copy is ~5x faster than NumPy's
    return t.contiguous()


def _float_tensor(name: str, x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise ValueError(f"{name}: expected floating-point values, got {x.dtype}")
        return x.detach().to(device="cpu", dtype=torch.float32).contiguous()
    return _to_tensor(_float_numpy(name, x))


def _strip_tf_suffix(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _is_training_state(name: str) -> bool:
    name = _strip_tf_suffix(name)
    return name in _TRAINING_VARS or name.rsplit("/", 1)[-1] in _TRAINING_SLOTS


# ----------------------------------------------------------------------------- converters


def tf_variables_to_state_dict(variables: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map the 18 TF VGGish variables to a :class:`~audiorep.models.vggish.VGGish` state dict.

    Args:
        variables: TF variable name (``vggish/conv1/weights``, with or without ``:0``) ->
            array. Conv kernels HWIO ``(3, 3, in, out)``, dense kernels ``(in, out)``, biases
            ``(out,)``; any floating dtype (NumPy arrays or tensors).

    Returns:
        ``{"conv1.weight": (64, 1, 3, 3), ..., "fc2.bias": (128,)}``: float32, contiguous, CPU.
        Conv kernels are transposed to OIHW and dense kernels to ``(out, in)``.

    Raises:
        ValueError: listing every missing, unexpected or mis-shaped variable (nothing is
            converted unless the whole set is valid).
    """
    by_name: dict[str, Any] = {}
    for key, value in variables.items():
        name = _strip_tf_suffix(key)
        if name in by_name:
            raise ValueError(f"TF variable {name!r} given twice (with and without ':0')")
        by_name[name] = value
    _check_names_and_shapes(by_name, TF_SHAPES, "VGGish TensorFlow variables")
    out: dict[str, torch.Tensor] = {}
    for module, scope, shape in _LAYERS:
        kernel = _float_numpy(f"{scope}/weights", by_name[f"{scope}/weights"])
        # HWIO -> OIHW for convs, [in, out] -> [out, in] for dense layers.
        out[f"{module}.weight"] = _to_tensor(kernel, (3, 2, 0, 1) if len(shape) == 4 else (1, 0))
        out[f"{module}.bias"] = _to_tensor(
            _float_numpy(f"{scope}/biases", by_name[f"{scope}/biases"])
        )
    return out


def torchvggish_to_state_dict(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map a torchvggish ``VGG`` state dict (``vggish-10086976.pth``) to audiorep keys.

    torchvggish stores convs as ``features.{0,3,6,8,11,13}`` and the dense layers as
    ``embeddings.{0,2,4}``, already in torch layouts, and flattens pool4 in NHWC order like
    audiorep, so tensors are copied as they are. Its extra ReLU after ``fc2``
    (``embeddings.5``) has no parameters, so it is dropped automatically: the converted model
    gives the reference's pre-activation embedding (pass ``torchvggish_compat=True`` to
    :class:`~audiorep.models.vggish.VGGish` to get torchvggish's numbers instead).

    Args:
        sd: ``features.N.weight`` / ``.bias`` and ``embeddings.N.weight`` / ``.bias`` ->
            tensor (exactly the 18 entries).

    Returns:
        audiorep state dict, float32, contiguous, CPU.

    Raises:
        ValueError: listing every missing, unexpected or mis-shaped key.
    """
    _check_names_and_shapes(sd, TORCHVGGISH_SHAPES, "torchvggish VGGish parameters")
    out: dict[str, torch.Tensor] = {}
    for module, _scope, _shape in _LAYERS:
        prefix = TORCHVGGISH_MODULES[module]
        for param in ("weight", "bias"):
            out[f"{module}.{param}"] = _float_tensor(f"{prefix}.{param}", sd[f"{prefix}.{param}"])
    return out


def check_model_state_dict(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Validate an audiorep VGGish state dict (keys of ``VGGish().state_dict()``).

    Returns:
        The same keys in the model's order, float32, contiguous, CPU.

    Raises:
        ValueError: listing every missing, unexpected or mis-shaped key.
    """
    _check_names_and_shapes(sd, MODEL_SHAPES, "audiorep VGGish parameters")
    return {key: _float_tensor(key, sd[key]) for key in MODEL_SHAPES}


def pca_from_mapping(m: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Extract the AudioSet PCA parameters (as in ``vggish_pca_params.npz``).

    Args:
        m: must hold ``pca_eigen_vectors`` ``(128, 128)`` (rows are the eigenvectors, so the
            postprocessor computes ``E @ (x - mean)``) and ``pca_means`` ``(128,)``,
            ``(128, 1)`` (Google's and torchvggish's layout) or ``(1, 128)``. Other keys are
            ignored.

    Returns:
        ``{"pca_eigen_vectors": (128, 128), "pca_means": (128,)}``, float32 CPU tensors.

    Raises:
        ValueError: a key is missing or a shape is wrong.
    """
    missing = [k for k in PCA_KEYS if k not in m]
    if missing:
        raise ValueError(f"PCA parameters: missing {', '.join(missing)}")
    eigen = _float_numpy("pca_eigen_vectors", m["pca_eigen_vectors"])
    if eigen.shape != (PCA_DIM, PCA_DIM):
        raise ValueError(
            f"pca_eigen_vectors has shape {eigen.shape}, expected ({PCA_DIM}, {PCA_DIM})"
        )
    means = _float_numpy("pca_means", m["pca_means"])
    if means.shape not in ((PCA_DIM,), (PCA_DIM, 1), (1, PCA_DIM)):
        raise ValueError(
            f"pca_means has shape {means.shape}, expected ({PCA_DIM},) or ({PCA_DIM}, 1)"
        )
    return {
        "pca_eigen_vectors": _to_tensor(eigen),
        "pca_means": _to_tensor(means.reshape(PCA_DIM)),
    }


# ----------------------------------------------------------------------------- readers

_TF_HINT = (
    "pip install 'audiorep[tf]' (TensorFlow is only needed once, to convert), or use the npz "
    "interchange path: on any machine with TensorFlow run\n"
    '  python -c "import numpy as np, tensorflow as tf; '
    "r = tf.train.load_checkpoint('vggish_model.ckpt'); "
    "np.savez('vggish_model.npz', "
    '**{n: r.get_tensor(n) for n in r.get_variable_to_shape_map()})"\n'
    "then: audiorep convert vggish_model.npz -o vggish.safetensors"
)


def _tf_prefix(path: Path) -> Path:
    # TF V2 checkpoints are addressed by prefix; accept the .index / .data-* file names too.
    name = re.sub(r"\.(index|data-\d{5}-of-\d{5})$", "", path.name)
    return path.with_name(name)


def read_tf_checkpoint(path: PathLike) -> dict[str, np.ndarray]:
    """Read every variable of a TF checkpoint with ``tf.train.load_checkpoint``.

    Works for Google's single-file V1 ``vggish_model.ckpt`` and for V2 checkpoints (pass the
    prefix, the ``.index`` file or a directory). TensorFlow is imported here, lazily.

    Returns:
        variable name (without ``:0``) -> NumPy array in TF layout, bit-exact.

    Raises:
        ImportError: TensorFlow is not installed (the message says how to proceed).
        WeightsFormatError: TensorFlow could not read the file.
    """
    path = Path(path)
    try:
        import tensorflow as tf
    except ImportError as e:
        raise ImportError(
            f"Reading the TensorFlow checkpoint {path} needs TensorFlow, which is not "
            f"installed. {_TF_HINT}"
        ) from e
    try:
        reader = tf.train.load_checkpoint(str(_tf_prefix(path)))
        names = sorted(reader.get_variable_to_shape_map())
        return {name: np.asarray(reader.get_tensor(name)) for name in names}
    except Exception as e:  # TF raises a zoo of its own error types
        raise WeightsFormatError(
            f"{path}: TensorFlow could not read it as a checkpoint: {e}"
        ) from e


def _sniff(path: Path) -> str:
    """Return 'safetensors', 'npz', 'torch' or 'tf' from the file's content."""
    if path.is_dir():
        if (path / "checkpoint").exists() or any(path.glob("*.index")):
            return "tf"
        raise WeightsFormatError(f"{path} is a directory, not a weights file")
    if re.search(r"\.(index|data-\d{5}-of-\d{5})$", path.name):
        return "tf"  # TF V2 shards: raw bytes that could look like anything below
    size = path.stat().st_size
    if size == 0:
        raise WeightsFormatError(f"{path} is empty")
    with open(path, "rb") as f:
        head = f.read(16)
    # safetensors: u64 little-endian JSON header length, then the JSON object.
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= size - 8:
            return "safetensors"
    if head.startswith(b"\x93NUMPY"):
        raise WeightsFormatError(
            f"{path} is a single .npy array; save named arrays with numpy.savez instead"
        )
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile as e:
            raise WeightsFormatError(f"{path}: damaged zip archive: {e}") from e
        if any(n.endswith("data.pkl") for n in names):
            return "torch"  # torch.save's zip format
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise WeightsFormatError(
            f"{path}: a zip archive that is neither an .npz nor a torch checkpoint "
            f"(entries: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''})"
        )
    if head[:1] == b"\x80":
        return "torch"  # pickle protocol >= 2: torch.save's legacy format
    if path.suffix.lower() == ".ckpt" or path.with_name(path.name + ".index").exists():
        return "tf"  # e.g. Google's V1 vggish_model.ckpt (starts with zero bytes)
    raise WeightsFormatError(
        f"{path}: unrecognised content (not safetensors, .npz, a torch checkpoint or a "
        f"TensorFlow checkpoint); first bytes {head[:8]!r}"
    )


def _read_npz(path: Path) -> dict[str, Any]:
    # allow_pickle=False: object arrays are refused instead of unpickled.
    try:
        with np.load(path, allow_pickle=False) as z:
            return {key: z[key] for key in z.files}
    except (
        ValueError,
        OSError,
        EOFError,
        zipfile.BadZipFile,
        NotImplementedError,
        RuntimeError,
    ) as exc:  # fmt: skip - damaged zip, unsupported zip features
        raise WeightsFormatError(f"{path}: not a readable .npz ({exc})") from None


def _read_torch(path: Path) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsFormatError(
            f"{path}: torch.load(weights_only=True) refused or failed ({e}). audiorep never "
            "unpickles arbitrary objects; if this holds a pickled nn.Module, save its "
            "state_dict() instead"
        ) from e
    if not isinstance(obj, Mapping):
        raise WeightsFormatError(
            f"{path}: expected a dict of tensors, found a {type(obj).__name__}"
        )
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        # Training checkpoints nest the weights one level down.
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                tensors = {k: v for k, v in inner.items() if isinstance(v, torch.Tensor)}
                break
    if not tensors:
        raise WeightsFormatError(
            f"{path}: no tensors found (top-level keys: {', '.join(map(str, list(obj)[:8]))})"
        )
    return tensors


_TORCHVGGISH_KEY = re.compile(r"^(features|embeddings)\.\d+\.(weight|bias)$")


def _interpret(
    mapping: Mapping[str, Any], path: Path
) -> tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor] | None]:
    groups: dict[str, dict[str, Any]] = {"tf": {}, "torchvggish": {}, "audiorep": {}}
    pca: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in mapping.items():
        k = key[len("module.") :] if key.startswith("module.") else key  # DataParallel
        if k.startswith("vggish/"):
            if not _is_training_state(k):
                groups["tf"][k] = value
        elif k in _TRAINING_VARS:
            continue
        elif k in MODEL_SHAPES:
            groups["audiorep"][k] = value
        elif _TORCHVGGISH_KEY.match(k):
            groups["torchvggish"][k] = value
        elif k.rsplit(".", 1)[-1] in PCA_KEYS and k.count(".") <= 1:
            # Plain keys, or torchvggish's Postprocessor module ("pproc.pca_means").
            base = k.rsplit(".", 1)[-1]
            if base in pca:
                raise WeightsFormatError(f"{path}: {base} appears more than once")
            pca[base] = value
        else:
            unknown.append(key)
    if unknown:
        shown = ", ".join(sorted(unknown)[:10]) + (" ..." if len(unknown) > 10 else "")
        raise WeightsFormatError(
            f"{path}: unknown content ({len(unknown)} unexpected entries: {shown}). Expected "
            "VGGish TF variables (vggish/...), torchvggish keys (features.N / embeddings.N), "
            "audiorep keys (conv1.weight ...) and/or pca_eigen_vectors + pca_means"
        )
    families = [name for name, group in groups.items() if group]
    if len(families) > 1:
        raise WeightsFormatError(
            f"{path}: mixes parameter naming schemes ({', '.join(families)}); expected one"
        )
    converters = {
        "tf": tf_variables_to_state_dict,
        "torchvggish": torchvggish_to_state_dict,
        "audiorep": check_model_state_dict,
    }
    try:
        model = converters[families[0]](groups[families[0]]) if families else None
        pca_out = pca_from_mapping(pca) if pca else None
    except ValueError as e:
        raise WeightsFormatError(f"{path}: {e}") from e
    if model is None and pca_out is None:
        raise WeightsFormatError(f"{path}: holds no VGGish parameters or PCA parameters")
    return model, pca_out


def load_any(
    path: PathLike,
) -> tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor] | None]:
    """Load VGGish weights and/or PCA parameters from any supported file.

    The format is detected from the content (safetensors header, zip entries, pickle magic),
    then the tensors' names decide what they are. See the module docstring for the formats.

    Args:
        path: ``.safetensors``, ``.pth``/``.pt``, ``.npz``, or a TF checkpoint (``.ckpt``,
            V2 prefix/``.index``, or a directory), whatever its extension.

    Returns:
        ``(model_state_dict, pca)``: the :class:`~audiorep.models.vggish.VGGish` state dict
        (float32, torch layouts) or ``None`` if the file has no network weights, and
        ``{"pca_eigen_vectors": (128, 128), "pca_means": (128,)}`` or ``None``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        WeightsFormatError: unreadable, unknown or incomplete content (the message names the
            file and what was wrong).
        ImportError: a TF checkpoint was given and TensorFlow is not installed.
    """
    path = Path(path)
    if path.exists():
        kind = _sniff(path)
    elif path.with_name(path.name + ".index").exists():
        kind = "tf"  # a TF V2 checkpoint prefix
    else:
        raise FileNotFoundError(f"weights file not found: {path}")
    readers = {
        "safetensors": read_safetensors,
        "npz": _read_npz,
        "torch": _read_torch,
        "tf": read_tf_checkpoint,
    }
    try:
        mapping = readers[kind](path)
    except (WeightsFormatError, ImportError):
        raise
    except Exception as e:
        raise WeightsFormatError(f"{path}: could not read it as {kind}: {e}") from e
    return _interpret(mapping, path)


# ----------------------------------------------------------------------------- writer


def write_safetensors(
    dst: PathLike,
    model: Mapping[str, torch.Tensor] | None = None,
    pca: Mapping[str, torch.Tensor] | None = None,
    *,
    source: str = "",
) -> Path:
    """Atomically write an audiorep VGGish ``.safetensors`` (model and/or PCA tensors).

    Metadata: ``{"format": "audiorep.vggish", "source": source, "contains": "model,pca"}``
    (``contains`` lists what is present). The file is written to a temporary name in the
    destination folder and moved into place with ``os.replace``, so readers never see a
    partial file.

    Returns:
        ``Path(dst)``.
    """
    from safetensors.torch import save_file

    if model is None and pca is None:
        raise ValueError("nothing to write: neither model weights nor PCA parameters")
    dst = Path(dst)
    tensors: dict[str, torch.Tensor] = {}
    contains = []
    if model is not None:
        tensors.update({k: v.detach().cpu().contiguous() for k, v in model.items()})
        contains.append("model")
    if pca is not None:
        tensors.update({k: v.detach().cpu().contiguous() for k, v in pca.items()})
        contains.append("pca")
    metadata = {"format": FORMAT, "source": source, "contains": ",".join(contains)}
    dst.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same folder, as os.replace must not cross file systems.
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb"):
            pass
        # safetensors writes 0600 files; keep the umask-derived mode of a normal new file so
        # a shared cache stays readable.
        mode = tmp.stat().st_mode & 0o777
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, mode)
        commit(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dst


def convert(src: PathLike, dst: PathLike) -> Path:
    """Convert any supported VGGish weights / PCA file to an audiorep ``.safetensors``.

    Args:
        src: input file (see :func:`load_any`).
        dst: output path; written atomically. Holds whatever ``src`` held: the model
            state dict, the PCA parameters, or both.

    Returns:
        ``Path(dst)``.
    """
    src_path = Path(src)
    model, pca = load_any(src_path)
    return write_safetensors(dst, model, pca, source=src_path.name)
