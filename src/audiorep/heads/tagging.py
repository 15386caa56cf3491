"""Tagging audio with a trained head: load a checkpoint, score VGGish's quantised features.

:func:`load_classifier` reads a ``ckpt-<step>`` folder (or a training directory's selected /
latest weights), a tagger file written by :func:`export_tagger`, or a registry name such as
:data:`DEFAULT_TAGGER` (the tagger shipped inside the package);
:func:`classify_quantized` scores a clip's uint8 PCA features in the 10-frame windows the heads
were trained on; :func:`tag_file` runs a file through a VGGish bundle and a head.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiorep.data.packed import WINDOW_FRAMES

#: Registry name of the AudioSet tagger shipped with the package (``audiorep tag``'s default).
DEFAULT_TAGGER = "audiorep-tagger-audioset"
#: ``format`` of tagger files (:func:`export_tagger`).
TAGGER_FORMAT = "audiorep.tagger"


def export_tagger(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    info: dict[str, Any] | None = None,
    dtype: torch.dtype | None = torch.float16,
) -> Path:
    """Write a trained head as one tagger file (``.safetensors`` + ``.json`` sidecar).

    The safetensors metadata holds the head's registry name and config (what loading needs,
    covered by the file's sha256); the sidecar repeats them with ``info`` (training data,
    metrics, class names, attribution). ``dtype``: float16 halves the file; loading returns
    float32 weights, and the documented metrics must be measured on the exported file.
    """
    from audiorep.training.export import save_model_file

    config = {"model": model.name, "head_config": model.config.to_dict()}
    return save_model_file(
        path, model.state_dict(), format=TAGGER_FORMAT, config=config, info=info, dtype=dtype
    )


def load_tagger_file(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``(head in eval mode, info)`` of a file written by :func:`export_tagger`.

    Raises:
        FileNotFoundError / ValueError: missing, or not a tagger file (the message names it).
    """
    from audiorep.heads import build_head
    from audiorep.training.export import load_model_file

    state, info = load_model_file(path, TAGGER_FORMAT)
    cfg = info["config"]
    try:
        model = build_head(cfg["model"], cfg["head_config"])
        model.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: tagger file does not match its head ({exc})") from None
    return model.to(device).eval(), info


def load_classifier(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any], Path]:
    """Load a head from a ``ckpt-<step>`` folder, a training directory (the weights it
    selected, else its latest checkpoint), a tagger file (:func:`export_tagger`) or a
    registry name of a tagger (e.g. :data:`DEFAULT_TAGGER`, shipped with the package).

    Returns ``(model in eval mode, state (``model``, ``config``, ``step`` ...), the folder or
    file loaded)``.

    Raises:
        FileNotFoundError: no checkpoint there (the message names the path).
        ValueError: a folder that is not an audiorep head checkpoint.
    """
    from audiorep.heads.training import latest_checkpoint, load_head, resolve_checkpoint
    from audiorep.weights.registry import REGISTRY

    p = Path(path)
    if not p.exists() and str(path) in REGISTRY:
        from audiorep.weights.download import fetch

        p = fetch(str(path))
    if p.is_file():
        model, info = load_tagger_file(p, device)
        state = {**info, "model": model.name, "config": model.config.to_dict(), "step": None}
        return model, state, p
    if not p.exists():
        raise FileNotFoundError(f"no such checkpoint: {p}")
    p = resolve_checkpoint(p)
    if not (p / "state.json").is_file():
        latest = latest_checkpoint(p)
        if latest is None:
            raise FileNotFoundError(
                f"{p}: no checkpoint (expected a ckpt-<step>/ folder with state.json and "
                "model.safetensors, or a training directory holding them)"
            )
        p = latest
    try:
        model, state = load_head(p, device=device)
    except (KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not an audiorep classifier checkpoint ({exc})") from None
    return model.eval(), state, p


@dataclass
class TagResult:
    """What :func:`tag_file` returns for one file.

    ``scores``: float32 ``(C,)`` file-level class scores; ``frame_scores``: ``(N, C)``
    per-frame scores (``--frames``) or None; ``timestamps``: ``(N,)`` start times (s) of the
    VGGish frames; ``num_windows``: 10-frame windows the file was classified in.
    """

    path: str
    duration: float
    num_frames: int
    num_windows: int
    scores: np.ndarray
    timestamps: np.ndarray
    frame_scores: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def classify_quantized(
    model: torch.nn.Module,
    quantized: torch.Tensor | np.ndarray,
    *,
    window: int = WINDOW_FRAMES,
    pool: str = "max",
    frames: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Run a head on one clip's uint8 PCA-quantised VGGish frames ``(N, 128)``.

    The frames are dequantised exactly as the YouTube-8M reader does, then cut into
    consecutive ``window``-frame windows (the last may be shorter) - the ``<= 10``-frame
    segments the heads were trained on. Clip scores: the per-class ``max`` (or ``mean``,
    weighted by window length) over windows. With ``frames=True`` every frame is also
    classified ON ITS OWN as a 1-frame clip (``num_frames = 1``), for every head type.

    Returns ``(scores (C,), frame_scores (N, C) or None, number of windows)``.
    """
    from audiorep.features.postprocess import dequantize

    if pool not in ("max", "mean"):
        raise ValueError(f"pool must be 'max' or 'mean', got {pool!r}")
    q = torch.as_tensor(np.asarray(quantized) if not isinstance(quantized, torch.Tensor)
                        else quantized)  # fmt: skip
    if q.dim() != 2 or q.dtype != torch.uint8:
        raise ValueError(f"expected uint8 (N, D) quantized frames, got {q.dtype} {tuple(q.shape)}")
    n = q.shape[0]
    if n == 0:
        raise ValueError("no frames to classify")
    device = next(iter(model.parameters())).device
    x = dequantize(q).to(device)
    was_training = model.training
    model.eval()
    try:
        w = math.ceil(n / window)
        padded = x.new_zeros(w * window, x.shape[1])
        padded[:n] = x
        lengths = torch.full((w,), window, dtype=torch.int64)
        lengths[-1] = n - (w - 1) * window
        win = padded.view(w, window, x.shape[1])
        if w > 0 and lengths[-1] < window:
            t = torch.arange(window)[None, :] < lengths[:, None]
            win = win * t[..., None].to(win.device, win.dtype)
        p = model(win, lengths.to(device))["predictions"].float().cpu()
        if pool == "max":
            scores = p.max(dim=0).values
        else:
            scores = (p * lengths[:, None]).sum(0) / lengths.sum()
        frame_scores = None
        if frames:
            out = [
                model(x[i : i + 512, None, :], torch.ones(len(x[i : i + 512]), dtype=torch.int64,
                      device=device))["predictions"].float().cpu()
                for i in range(0, n, 512)
            ]  # fmt: skip
            frame_scores = torch.cat(out).numpy()
    finally:
        model.train(was_training)
    return scores.numpy(), frame_scores, w


def top_classes(scores: np.ndarray, k: int, names: Sequence[str]) -> list[tuple[int, str, float]]:
    """The ``k`` highest ``scores`` as ``(class index, name, score)``, best first (ties: lower
    index first)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))[:k]
    return [(int(i), names[i], float(scores[i])) for i in order]


def tag_file(
    bundle: Any,
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    frames: bool = False,
    pool: str = "max",
    batch_size: int = 64,
) -> TagResult:
    """VGGish -> PCA + quantisation -> dequantisation -> ``model`` for one audio file.

    ``bundle``: ``audiorep.load("vggish", ...)`` with PCA parameters (``bundle.postprocessor``).

    Raises:
        audiorep.audio.AudioLoadError: the file cannot be decoded (the message names it).
        ValueError: the clip is shorter than one VGGish example (0.96 s).
    """
    from audiorep.audio import load

    wave, sr = load(path, mono=True)
    duration = wave.shape[-1] / sr
    emb = bundle.embed_examples(bundle.examples(wave, sr), batch_size=batch_size)
    if emb.shape[0] == 0:
        raise ValueError(
            f"{path}: {duration:.3f} s is shorter than one VGGish example (0.96 s); nothing to tag"
        )
    q = bundle.quantize(emb).cpu()
    scores, frame_scores, w = classify_quantized(model, q, pool=pool, frames=frames)
    hop = bundle.windowing.hop_seconds
    return TagResult(
        path=str(path),
        duration=float(duration),
        num_frames=int(q.shape[0]),
        num_windows=w,
        scores=scores,
        timestamps=np.arange(q.shape[0], dtype=np.float64) * hop,
        frame_scores=frame_scores,
    )


__all__ = [
    "DEFAULT_TAGGER",
    "TAGGER_FORMAT",
    "TagResult",
    "classify_quantized",
    "export_tagger",
    "load_classifier",
    "load_tagger_file",
    "tag_file",
    "top_classes",
]
