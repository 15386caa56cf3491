"""Converters from published checkpoint formats to audiorep's safetensors files.

Only safe loaders are used: safetensors, ``numpy.load(allow_pickle=False)`` and
``torch.load(weights_only=True)``. TensorFlow is imported lazily, only to read ``.ckpt`` files.
"""

from audiorep.convert.vggish import (
    WeightsFormatError,
    check_model_state_dict,
    convert,
    load_any,
    pca_from_mapping,
    read_tf_checkpoint,
    tf_variables_to_state_dict,
    torchvggish_to_state_dict,
    write_safetensors,
)

__all__ = [
    "WeightsFormatError",
    "check_model_state_dict",
    "convert",
    "load_any",
    "pca_from_mapping",
    "read_tf_checkpoint",
    "tf_variables_to_state_dict",
    "torchvggish_to_state_dict",
    "write_safetensors",
]
