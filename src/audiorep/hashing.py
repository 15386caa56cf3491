"""sha256 digests: of files (weights, audio, caches) and of a model's weights in memory.

The lowest layer of the package: every cache key and every weights check uses these two.
"""

from __future__ import annotations

import hashlib
import os

import torch
from torch import nn

CHUNK_BYTES = 1 << 20


def file_sha256(path: str | os.PathLike, chunk: int = CHUNK_BYTES) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks."""
    return _file_digest(hashlib.sha256(), path, chunk)


def file_md5(path: str | os.PathLike, chunk: int = CHUNK_BYTES) -> str:
    """Hex MD5 of a file's bytes: only to compare with a publisher's MD5 (SpecVQGAN gives no
    sha256); never a cache key."""
    return _file_digest(hashlib.md5(usedforsecurity=False), path, chunk)


def _file_digest(digest, path: str | os.PathLike, chunk: int) -> str:
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(model: nn.Module) -> str:
    """Hex sha256 of a module's state dict: names, dtypes, shapes and bytes, sorted by name.

    Identifies the weights whatever file format they came from; bundles use it as their
    ``weights_fingerprint`` to key caches.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            # reshape: 0-d tensors (BatchNorm num_batches_tracked) cannot be viewed as bytes
            digest.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


__all__ = ["CHUNK_BYTES", "file_sha256", "state_dict_sha256"]
