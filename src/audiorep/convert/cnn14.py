"""PANNs CNN14 (16 kHz) weights: read the published checkpoint, map it onto :class:`Cnn14`.

The PANNs file ``Cnn14_16k_mAP=0.438.pth`` (Zenodo record 3987831) is a ``torch.save`` of
``{"iteration": int, "model": state_dict, "sampler": sampler state}``. The sampler state holds
NumPy integer arrays pickled by NumPy 1.x, which ``torch.load(weights_only=True)`` refuses by
default; :func:`read_torch_checkpoint` then retries with exactly NumPy's array/dtype
constructors allow-listed (they rebuild plain arrays and run no other code), never with
``weights_only=False``.

Key mapping (``"model"`` entry -> :class:`~audiorep.models.cnn14.Cnn14`): identical names for
``bn0.*``, ``conv_block{1..6}.{conv1,conv2}.weight``, ``conv_block{k}.{bn1,bn2}.*``,
``fc1.*``, ``fc_audioset.*``. Dropped: the frontend buffers
``spectrogram_extractor.stft.conv_{real,imag}.weight`` ``(257, 1, 512)`` and
``logmel_extractor.melW`` ``(257, 64)`` (audiorep's frontend computes its own; they are used to
check that the file really is a 16 kHz / 512-point / 64-mel model). A ``module.`` prefix
(DataParallel) is removed. Missing ``num_batches_tracked`` entries are set to 0.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import torch

from audiorep.convert._checks import check_state_shapes
from audiorep.convert.readers import (  # noqa: F401 - re-exported: convert.ast and tests use them
    WeightsFormatError,
    read_state_dict,
    read_torch_checkpoint,
    write_state_dict,
)
from audiorep.frontends.panns import slaney_mel_matrix
from audiorep.models.cnn14 import EMBEDDING_SIZE, state_dict_shapes

PathLike = Union[str, "os.PathLike[str]"]

#: ``format`` value in the metadata of converted files.
FORMAT = "audiorep.cnn14"
#: Prefixes of the original model's frontend buffers (not part of audiorep's Cnn14).
FRONTEND_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.")


# ----------------------------------------------------------------------------- reading


# ----------------------------------------------------------------------------- mapping


def _check_frontend(sd: Mapping[str, Any]) -> None:
    """Reject checkpoints of other PANNs variants (32 kHz, 8 kHz ...) by their frontend."""
    mel = sd.get("logmel_extractor.melW")
    if mel is not None:
        mel = torch.as_tensor(mel).detach().cpu().float()
        ours = torch.from_numpy(slaney_mel_matrix().copy())
        if tuple(mel.shape) != tuple(ours.shape):
            raise ValueError(
                f"logmel_extractor.melW has shape {tuple(mel.shape)}, expected "
                f"{tuple(ours.shape)}: not a Cnn14_16k checkpoint (16 kHz, n_fft 512, 64 mels)"
            )
        if not torch.allclose(mel, ours, rtol=1e-4, atol=1e-7):
            # A warning, not an error: the file's matrix is only a consistency check (audiorep
            # computes its own), and librosa versions may differ in the last bits.
            warnings.warn(
                "logmel_extractor.melW differs from the 16 kHz 50-8000 Hz Slaney filterbank "
                f"(max |diff| {(mel - ours).abs().max().item():.3g}); is this a Cnn14_16k "
                "checkpoint?",
                stacklevel=3,
            )
    stft = sd.get("spectrogram_extractor.stft.conv_real.weight")
    if stft is not None and tuple(stft.shape) != (257, 1, 512):
        raise ValueError(
            f"spectrogram_extractor.stft.conv_real.weight has shape {tuple(stft.shape)}, "
            "expected (257, 1, 512): not a Cnn14_16k checkpoint"
        )


def panns_to_state_dict(sd: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map a PANNs ``Cnn14_16k`` state dict (the checkpoint's ``"model"``) onto :class:`Cnn14`.

    Also accepts an audiorep CNN14 state dict (same names, no frontend buffers). The number of
    classes is taken from ``fc_audioset.weight`` (527 for AudioSet).

    Returns:
        float32 tensors (``num_batches_tracked`` int64), CPU, contiguous, in the model's order.

    Raises:
        ValueError: listing every missing, unexpected or mis-shaped key, or a frontend that is
            not the 16 kHz one.
    """
    sd = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in sd.items()}
    _check_frontend(sd)
    body = {k: v for k, v in sd.items() if not k.startswith(FRONTEND_PREFIXES)}
    head = body.get("fc_audioset.weight")
    if head is None or len(tuple(head.shape)) != 2 or head.shape[1] != EMBEDDING_SIZE:
        raise ValueError(
            "fc_audioset.weight is missing or not (classes, 2048); is this a PANNs CNN14 file?"
        )
    expected = state_dict_shapes(int(head.shape[0]))
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in body:
            body[key] = torch.tensor(0, dtype=torch.int64)  # not needed in eval mode
    check_state_shapes(body, expected, "PANNs CNN14")
    out: dict[str, torch.Tensor] = {}
    for key in expected:
        v = torch.as_tensor(body[key]).detach().cpu()
        if key.endswith("num_batches_tracked"):
            out[key] = v.to(torch.int64).reshape(())
        else:
            if not v.is_floating_point():
                raise ValueError(f"{key}: expected floating-point values, got {v.dtype}")
            out[key] = v.to(torch.float32).contiguous()
    return out


def load_cnn14_weights(path: PathLike) -> dict[str, torch.Tensor]:
    """Read ``Cnn14_16k_mAP=0.438.pth`` (or a converted ``.safetensors``) -> Cnn14 state dict.

    Raises:
        FileNotFoundError, WeightsFormatError (naming the file and what was wrong).
    """
    tensors = read_state_dict(path)
    try:
        return panns_to_state_dict(tensors)
    except ValueError as e:
        raise WeightsFormatError(f"{path}: {e}") from e


# ----------------------------------------------------------------------------- writing


def convert(src: PathLike, dst: PathLike) -> Path:
    """Convert a PANNs CNN14 16 kHz checkpoint to an audiorep ``.safetensors`` (atomic)."""
    sd = load_cnn14_weights(src)
    return write_state_dict(dst, sd, fmt=FORMAT, source=Path(src).name)
