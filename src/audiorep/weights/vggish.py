"""Resolving VGGish weights: a path, a registry name, or what is cached (converted once)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import warnings
from pathlib import Path

from audiorep.atomic import write_bytes_atomic
from audiorep.convert.vggish import load_any, write_safetensors
from audiorep.hashing import file_sha256 as sha256_file
from audiorep.weights.cache import PathLike, StateDict, cache_dir
from audiorep.weights.download import _digest_ok, fetch
from audiorep.weights.registry import (
    AUTO_ORDER,
    REGISTRY,
    cached_path,
    converted_path,
    get_entry,
)

logger = logging.getLogger("audiorep.weights")

# ----------------------------------------------------------------------------- resolution


def _kinds(model: StateDict | None, pca: StateDict | None) -> set[str]:
    return {k for k, v in (("model", model), ("pca", pca)) if v is not None}


def _merge_sources(paths: list[Path]) -> tuple[StateDict | None, StateDict | None]:
    model: StateDict | None = None
    pca: StateDict | None = None
    for path in paths:
        m, p = load_any(path)
        model = model if m is None or model is not None else m
        pca = pca if p is None or pca is not None else p
    return model, pca


def provenance_path(converted: Path) -> Path:
    """The JSON record beside a converted cache file: its own sha256 and its sources'."""
    return converted.with_name(converted.name + ".provenance.json")


def _cache_converted(
    name: str, model: StateDict | None, pca: StateDict | None, sources: list[Path]
) -> Path | None:
    dst = converted_path(name)
    try:
        write_safetensors(dst, model, pca, source=",".join(p.name for p in sources))
        record = {
            "converted_sha256": sha256_file(dst),
            "sources": {p.name: sha256_file(p) for p in sources},
        }
        write_bytes_atomic(provenance_path(dst), json.dumps(record, indent=1).encode())
        return dst
    except OSError as e:  # a read-only cache must not stop inference
        logger.warning("could not cache converted weights at %s: %s", dst, e)
        return None


def converted_problem(name: str) -> str | None:
    """Why the converted cache file of registry entry ``name`` cannot be trusted, or None.

    Trusted = audiorep wrote it from verified downloads: its provenance record exists, the
    file still has the sha256 recorded there, and every source it was converted from (the
    entry and its companions) matches its pinned registry digest. A file planted in the cache
    (say random weights under the pretrained name) fails this and is ignored with a warning.
    """
    conv = converted_path(name)
    record_path = provenance_path(conv)
    try:
        record = json.loads(record_path.read_text())
        recorded, sources = record["converted_sha256"], record["sources"]
    except FileNotFoundError:
        return f"no provenance record {record_path.name} (not converted here from a download)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable provenance record {record_path} ({e})"
    if sha256_file(conv) != recorded:
        return "its sha256 differs from the one recorded at conversion (changed since)"
    for n in (name, *REGISTRY[name].companions):
        e = REGISTRY[n]
        digest = sources.get(e.filename) if isinstance(sources, dict) else None
        if digest is None:
            return f"converted without {e.filename}"
        if e.pinned and not _digest_ok(digest, e.sha256, e.sha256_prefix):
            return f"converted from a {e.filename} that does not match the registry's checksum"
    return None


def _trusted_converted(name: str) -> Path | None:
    conv = converted_path(name)
    if not conv.is_file():
        return None
    problem = converted_problem(name)
    if problem is not None:
        message = f"ignoring the converted weights {conv}: {problem}"
        logger.warning(message)
        warnings.warn(message, stacklevel=3)
        return None
    return conv


def _from_cached_raw(name: str) -> tuple[StateDict | None, StateDict | None, str] | None:
    """Convert ``name`` (and its cached companions) from files already in the cache."""
    paths = []
    for n in (name, *REGISTRY[name].companions):
        path, e = cached_path(n), REGISTRY[n]
        usable = path.is_file()
        if usable and e.pinned and not _digest_ok(sha256_file(path), e.sha256, e.sha256_prefix):
            logger.warning("ignoring cached %s: checksum mismatch", path)
            usable = False
        if not usable and n == name:
            return None  # the network weights themselves are not (validly) cached
        if usable:
            paths.append(path)
    model, pca = _merge_sources(paths)
    dst = _cache_converted(name, model, pca, paths)
    where = f", cached as {dst}" if dst else ""
    return model, pca, f"{name}: converted from {', '.join(map(str, paths))}{where}"


def _resolve_auto() -> tuple[StateDict | None, StateDict | None, str]:
    for name in AUTO_ORDER:
        conv = _trusted_converted(name)
        if conv is not None:
            model, pca = load_any(conv)
            return model, pca, f"{name}: {conv}"
    notes = []
    for name in AUTO_ORDER:
        try:
            found = _from_cached_raw(name)
        except ImportError:
            notes.append(f"{cached_path(name)} is cached but converting it needs TensorFlow")
            continue
        if found is not None:
            return found
    note = f" ({'; '.join(notes)})" if notes else ""
    return (
        None,
        None,
        f"no VGGish weights in the cache {cache_dir()}{note}. Download them with "
        "`audiorep weights download vggish-torchvggish vggish-pca-torchvggish` (or vggish-tf "
        "vggish-pca-tf, converting needs TensorFlow), or pass --weights PATH.",
    )


def _resolve_name(name: str) -> tuple[StateDict | None, StateDict | None, str]:
    entry = get_entry(name)
    names = (name, *entry.companions)
    wanted = {REGISTRY[n].kind for n in names}
    conv = _trusted_converted(name)
    if conv is not None:
        model, pca = load_any(conv)
        if wanted <= _kinds(model, pca):
            return model, pca, f"{name}: {conv}"
    if entry.converter == "tf_checkpoint" and importlib.util.find_spec("tensorflow") is None:
        # Fail before a ~277 MB download that could not be converted here anyway.
        raise ImportError(
            f"{name} is a TensorFlow checkpoint and converting it needs TensorFlow: "
            "pip install 'audiorep[tf]', or use vggish-torchvggish (the same weights as a "
            "torch file), or convert elsewhere and pass --weights PATH."
        )
    paths = [fetch(n) for n in names]
    model, pca = _merge_sources(paths)
    dst = _cache_converted(name, model, pca, paths)
    where = f", cached as {dst}" if dst else ""
    return model, pca, f"{name}: converted from {', '.join(map(str, paths))}{where}"


def resolve_vggish_weights(
    weights: PathLike | None = None,
) -> tuple[StateDict | None, StateDict | None, str]:
    """Find VGGish weights and PCA parameters for a ``--weights`` option.

    Args:
        weights:
            * ``None`` or ``"auto"``: use what is cached, never download. First a converted
              file (``cache_dir()/vggish/vggish.safetensors`` from Google's checkpoint, then
              the torchvggish one), else raw cached downloads converted on the fly (and the
              result cached).
            * an existing path: any format :func:`audiorep.convert.vggish.load_any` reads.
            * a registry name (``vggish-tf``, ``vggish-torchvggish``, ...): fetch it and its
              PCA companion (downloading if needed), convert, cache the converted file.

    Returns:
        ``(model_state_dict | None, pca | None, description)``. In ``auto`` mode with nothing
        cached this is ``(None, None, reason)``, the reason saying how to get weights.

    Raises:
        FileNotFoundError: ``weights`` is neither an existing path nor a registry name.
        OfflineError / DownloadError: a registry name had to be downloaded and could not be.
        WeightsFormatError: the file could not be read.
    """
    if weights is None or (isinstance(weights, str) and weights.strip().lower() == "auto"):
        return _resolve_auto()
    path = Path(weights)
    if path.exists() or path.with_name(path.name + ".index").exists():
        model, pca = load_any(path)
        return model, pca, str(path)
    if isinstance(weights, str) and weights in REGISTRY:
        return _resolve_name(weights)
    raise FileNotFoundError(
        f"--weights {os.fspath(weights)}: no such file, and not a registry name (known: "
        f"{', '.join(sorted(REGISTRY))}, or 'auto')"
    )
