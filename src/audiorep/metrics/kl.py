"""Mean KL divergence (MKL) between paired real and generated classifier outputs (SpecVQGAN).

SpecVQGAN's ``evaluation/metrics/kl.py``: every generated sample is paired with the single real
sample of the same video, and

    MKL = sum_pairs sum_c p_real * (log p_real - log(p_fake + 1e-6)) / N_pairs,

with ``p = softmax(logits)``, i.e. the mean over generated samples of KL(real || fake). The +1e-6
inside the log makes identical inputs give ``~ -C * 1e-6`` instead of 0.

Pairing (as SpecVQGAN): real keys in their first-appearance order (a repeated real key keeps its
last logits); for each, the generated samples with that key in their order. Generated samples
whose key has no real sample are left out (a warning says how many); real samples without
generated ones contribute nothing.

Keys come from file paths, see :func:`specvqgan_shared_key`. Computed in float64 (SpecVQGAN:
float32; the difference is ~1e-7 relative).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np
import torch

from audiorep.metrics._array import ArrayLike, as_embeddings

KL_EPS = 1e-6

_CLS_DIR = re.compile(r"(?:(?<=/)|^)cls_(\d+)(?=/|$)")


def specvqgan_shared_key(path: str, dataset: str, classes: Sequence[str] | None = None) -> str:
    """Video key of a real or generated spectrogram path, as SpecVQGAN groups them.

    * ``vggsound``: file stem without ``_mel`` and without ``_sample_<k>``
      (``.../vid_0_10000_mel.npy`` and ``.../cls_3/vid_0_10000_sample_7.npy`` -> ``vid_0_10000``).
    * ``vas``: folders ``cls_<i>`` stand for ``sorted(classes)[i]`` and ``melspec_10s_22050hz/``
      is dropped; key = ``<class folder>_<stem without _mel / _sample_k>``.

    SpecVQGAN replaces ``cls_<i>`` as a plain substring (so ``cls_1`` also hits ``cls_10``);
    here only whole folder names are mapped. The two agree whenever there are <= 10 classes
    (VAS has 8).
    """
    ds = dataset.lower()
    if ds == "vas":
        if classes is None:
            raise ValueError("the vas key needs the list of classes")
        labels = sorted(classes)

        def _label(m: re.Match[str]) -> str:
            i = int(m.group(1))
            return labels[i] if i < len(labels) else m.group(0)

        path = _CLS_DIR.sub(_label, path).replace("melspec_10s_22050hz/", "")
        p = PurePosixPath(path)
        return p.parent.name + "_" + p.stem.replace("_mel", "").split("_sample_")[0]
    if ds == "vggsound":
        return PurePosixPath(path).stem.replace("_mel", "").split("_sample_")[0]
    raise ValueError(f"unknown dataset {dataset!r} (vggsound or vas)")


def pair_by_key(
    real_keys: Sequence[str], fake_keys: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Index pairs ``(real_idx, fake_idx)`` in SpecVQGAN order, and the unmatched fake count."""
    real_of: dict[str, int] = {}
    for i, k in enumerate(real_keys):
        real_of[k] = i  # insertion order from the first occurrence, value from the last
    fakes_of: dict[str, list[int]] = {}
    for j, k in enumerate(fake_keys):
        fakes_of.setdefault(k, []).append(j)
    ri: list[int] = []
    fi: list[int] = []
    for k, i in real_of.items():
        for j in fakes_of.get(k, ()):
            ri.append(i)
            fi.append(j)
    unmatched = sum(len(v) for k, v in fakes_of.items() if k not in real_of)
    return np.asarray(ri, dtype=np.int64), np.asarray(fi, dtype=np.int64), unmatched


def mean_kl_divergence(
    real_logits: ArrayLike,
    fake_logits: ArrayLike,
    real_keys: Sequence[str] | None = None,
    fake_keys: Sequence[str] | None = None,
    *,
    eps: float = KL_EPS,
) -> float:
    """MKL = mean over generated samples of KL(softmax(real) || softmax(fake) + eps).

    Args:
        real_logits: ``(n_real, C)``, one row per video.
        fake_logits: ``(n_fake, C)``, any number of rows per video.
        real_keys, fake_keys: video keys of the rows (:func:`specvqgan_shared_key`). Without
            keys the rows are paired one to one (equal counts required).
        eps: added to ``p_fake`` inside the log (SpecVQGAN: 1e-6).
    """
    real = as_embeddings(real_logits, "real_logits")
    fake = as_embeddings(fake_logits, "fake_logits", real.shape[1])
    if (real_keys is None) != (fake_keys is None):
        raise ValueError("give keys for both real and fake rows, or for neither")
    if real_keys is None:
        if real.shape[0] != fake.shape[0]:
            raise ValueError("without keys, real and fake need the same number of rows")
        ri = fi = np.arange(real.shape[0])
    else:
        assert fake_keys is not None
        if len(real_keys) != real.shape[0] or len(fake_keys) != fake.shape[0]:
            raise ValueError("one key per row is needed")
        ri, fi, unmatched = pair_by_key(list(real_keys), list(fake_keys))
        if unmatched:
            warnings.warn(
                f"{unmatched} generated samples have no real sample with the same key; "
                "they are left out (as in SpecVQGAN)",
                stacklevel=2,
            )
    if ri.size == 0:
        raise ValueError("no real/generated pairs")
    p_real = torch.from_numpy(real[ri]).softmax(dim=1)
    p_fake = torch.from_numpy(fake[fi]).softmax(dim=1)
    # kl_div(log q, p, 'sum') = sum p (log p - log q) with 0 log 0 = 0
    total = torch.special.xlogy(p_real, p_real) - p_real * torch.log(p_fake + eps)
    return float(total.sum()) / ri.size
