"""Pretrained weights: a registry of published files, a cache, verified resumable downloads.

* Cache: ``$AUDIOREP_HOME`` or ``~/.cache/audiorep``. Raw downloads live in
  ``<cache>/<name>/<filename>``, converted audiorep files in ``<cache>/vggish/``.
* Nothing is downloaded at import time, nor by :func:`resolve_vggish_weights` in ``auto`` mode:
  only :func:`fetch` / :func:`download` (and resolving an explicit registry name) touch the
  network.
* ``AUDIOREP_OFFLINE=1`` forbids every download; errors then say which file to place where,
  or to pass ``--weights PATH``.
* Downloads stream to ``<dst>.part``, resume it with an HTTP ``Range`` request, check the
  sha256 (full digest, or the 8-hex prefix torch.hub-style file names carry) and only then
  rename the file into place.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import logging
import os
import re
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
from tqdm import tqdm

from audiorep.convert.vggish import load_any, write_safetensors
from audiorep.hashing import file_sha256

PathLike = Union[str, "os.PathLike[str]"]
StateDict = dict[str, torch.Tensor]

ENV_HOME = "AUDIOREP_HOME"
ENV_OFFLINE = "AUDIOREP_OFFLINE"
_CHUNK = 1 << 20
_USER_AGENT = "audiorep (+https://pypi.org/project/audiorep/)"

logger = logging.getLogger(__name__)


class WeightsError(RuntimeError):
    """Base class for weight download / cache errors."""


class OfflineError(WeightsError):
    """A download was needed but ``AUDIOREP_OFFLINE=1`` is set."""


class DownloadError(WeightsError):
    """A transfer failed (HTTP error, connection lost, every mirror failed)."""


class ChecksumError(DownloadError):
    """A file's sha256 does not match the pinned value."""


class UnpinnedWeightsWarning(UserWarning):
    """A file was downloaded without any checksum to verify it against."""


class _Interrupted(Exception):
    """Internal: a transfer broke off in a way that resuming may fix."""


def cache_dir() -> Path:
    """The weights cache: ``$AUDIOREP_HOME`` if set, else ``~/.cache/audiorep``."""
    home = os.environ.get(ENV_HOME, "").strip()
    return Path(home).expanduser() if home else Path.home() / ".cache" / "audiorep"


def is_offline() -> bool:
    """True when ``AUDIOREP_OFFLINE`` is set to 1/true/yes/on."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class WeightsEntry:
    """One published file.

    Attributes:
        name: registry key, e.g. ``"vggish-tf"``.
        urls: mirrors, tried in order.
        filename: name in the cache, ``cache_dir() / name / filename``.
        sha256: full hex digest when a credible published value is known, else ``None``.
        sha256_prefix: leading hex digits of the digest (torch.hub file-name convention).
        size: exact size in bytes when known.
        licence: licence of the file as published.
        description: one line for ``audiorep weights list``.
        kind: ``"model"`` (network weights) or ``"pca"`` (AudioSet PCA parameters).
        converter: which reader turns it into audiorep tensors (informational: the converter
            detects the format from the content).
        companions: other entries fetched with this one by :func:`resolve_vggish_weights`
            (the matching PCA file).
    """

    name: str
    urls: tuple[str, ...]
    filename: str
    sha256: str | None
    sha256_prefix: str | None
    size: int | None
    licence: str
    description: str
    kind: str
    converter: str
    companions: tuple[str, ...] = ()

    @property
    def pinned(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix)


_TORCHVGGISH_RELEASE = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"

REGISTRY: dict[str, WeightsEntry] = {
    entry.name: entry
    for entry in (
        WeightsEntry(
            name="vggish-tf",
            urls=("https://storage.googleapis.com/audioset/vggish_model.ckpt",),
            filename="vggish_model.ckpt",
            # No published digest found (searched code, issues and pages, 2026-11): unpinned.
            sha256=None,
            sha256_prefix=None,
            size=None,  # about 277 MB
            licence="Apache-2.0",
            description="Google's reference VGGish TF checkpoint (~277 MB); converting it "
            "needs TensorFlow once",
            kind="model",
            converter="tf_checkpoint",
            companions=("vggish-pca-tf",),
        ),
        WeightsEntry(
            name="vggish-pca-tf",
            urls=("https://storage.googleapis.com/audioset/vggish_pca_params.npz",),
            filename="vggish_pca_params.npz",
            sha256=None,  # no published digest found either
            sha256_prefix=None,
            size=None,
            licence="Apache-2.0",
            description="Google's AudioSet PCA/whitening parameters for the postprocessor",
            kind="pca",
            converter="pca_npz",
        ),
        WeightsEntry(
            name="vggish-torchvggish",
            urls=(_TORCHVGGISH_RELEASE + "vggish-10086976.pth",),
            filename="vggish-10086976.pth",
            # Full digest as pinned by uncharted-distil/distil-primitives
            # (distil/primitives/audio_transfer.py, D3M "file_digest" of this URL); the same
            # value is pinned by unrelated installer scripts, and it starts with the
            # file name's torch.hub prefix 10086976.
            sha256="10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b",
            sha256_prefix="10086976",
            size=None,  # about 275 MB
            licence="Apache-2.0 (torchvggish port of Google's weights)",
            description="torchvggish's port of the same weights (~275 MB); no TensorFlow needed",
            kind="model",
            converter="torchvggish",
            companions=("vggish-pca-torchvggish",),
        ),
        WeightsEntry(
            name="vggish-pca-torchvggish",
            urls=(_TORCHVGGISH_RELEASE + "vggish_pca_params-970ea276.pth",),
            filename="vggish_pca_params-970ea276.pth",
            sha256=None,  # only the torch.hub file-name prefix is published
            sha256_prefix="970ea276",
            size=None,
            licence="Apache-2.0 (torchvggish port of Google's PCA parameters)",
            description="torchvggish's copy of the AudioSet PCA parameters",
            kind="pca",
            converter="torchvggish_pca",
        ),
    )
}

# CNN14 (PANNs) and AST checkpoints. Read them with audiorep.convert.cnn14.load_cnn14_weights /
# audiorep.convert.ast.load_ast_weights (torch.load(weights_only=True) / safetensors only).
# No published sha256 was found for any of them (searched code, issues and pages, 2026-11),
# so they are unpinned like Google's files: the download warns and prints the digest.
for _entry in (
    WeightsEntry(
        name="cnn14-16k",
        urls=(
            "https://zenodo.org/records/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1",
            # the form the PANNs README documents (redirects to the one above)
            "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1",
        ),
        filename="Cnn14_16k_mAP=0.438.pth",
        sha256=None,
        sha256_prefix=None,
        size=None,  # about 330 MB
        licence="CC-BY-4.0 (Zenodo record 3987831, PANNs)",
        description="PANNs CNN14 16 kHz AudioSet tagger (mAP 0.438, ~330 MB; Kong et al. 2020)",
        kind="model",
        converter="panns_cnn14",
    ),
    WeightsEntry(
        name="ast-audioset",
        urls=("https://www.dropbox.com/s/cv4knew8mvbrnvq/audioset_0.4593.pth?dl=1",),
        filename="audioset_10_10_0.4593.pth",
        sha256=None,
        sha256_prefix=None,
        size=None,  # about 350 MB
        licence="BSD-3-Clause (YuanGongND/ast)",
        description="AST AudioSet model, fstride = tstride = 10, mAP 0.4593 (as linked by the "
        "AST README; ~350 MB)",
        kind="model",
        converter="ast",
    ),
    WeightsEntry(
        name="ast-audioset-hf",
        urls=(
            "https://huggingface.co/MIT/ast-finetuned-audioset-10-10-0.4593/resolve/main/"
            "model.safetensors",
        ),
        filename="model.safetensors",
        sha256=None,
        sha256_prefix=None,
        size=None,
        licence="BSD-3-Clause (MIT/ast-finetuned-audioset-10-10-0.4593)",
        description="The same AST AudioSet weights as converted by Hugging Face transformers "
        "(safetensors; a mirror when Dropbox fails)",
        kind="model",
        converter="ast_hf",
    ),
):
    REGISTRY[_entry.name] = _entry
del _entry

#: Converted files ``resolve_vggish_weights("auto")`` looks for, best first.
AUTO_ORDER = ("vggish-tf", "vggish-torchvggish")


def get_entry(name: str) -> WeightsEntry:
    """Registry lookup with an error that lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def cached_path(name: str) -> Path:
    """Where :func:`fetch` keeps registry entry ``name``: ``cache_dir()/name/filename``."""
    return cache_dir() / name / get_entry(name).filename


def converted_path(name: str) -> Path:
    """Converted audiorep file for ``name``: ``<cache>/vggish/<name>.safetensors``.

    Google's checkpoint (``vggish-tf``) is the canonical one, ``<cache>/vggish/vggish.safetensors``.
    """
    get_entry(name)
    stem = "vggish" if name == "vggish-tf" else name
    return cache_dir() / "vggish" / f"{stem}.safetensors"


# ----------------------------------------------------------------------------- hashing

sha256_file = file_sha256  # the name this module has always exported


def _digest_ok(digest: str, sha256: str | None, prefix: str | None) -> bool:
    if sha256 and digest != sha256.lower():
        return False
    return not (prefix and not digest.startswith(prefix.lower()))


def _expected_text(sha256: str | None, prefix: str | None) -> str:
    return sha256.lower() if sha256 else f"{prefix.lower()}... (prefix)" if prefix else "-"


# ----------------------------------------------------------------------------- download


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``'bytes 100-199/1000'`` -> (100, 1000); ``'bytes */1000'`` -> (None, 1000)."""
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _transfer(url: str, part: Path, *, progress: bool, timeout: float, desc: str) -> str:
    """Fetch ``url`` into ``part``, resuming what is there; return the whole file's sha256."""
    hasher = hashlib.sha256()
    offset = part.stat().st_size if part.exists() else 0
    if offset:
        with open(part, "rb") as f:  # the digest must cover the bytes already on disk
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                hasher.update(chunk)
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            # Nothing left after `offset`: either the .part is complete or it is junk.
            _, total = _content_range(e.headers.get("Content-Range"))
            if total == offset:
                return hasher.hexdigest()
            part.unlink()
            return _transfer(url, part, progress=progress, timeout=timeout, desc=desc)
        if e.code >= 500 or e.code == 429:
            raise _Interrupted(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"HTTP {e.code} {e.reason} for {url}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Interrupted(f"{type(e).__name__}: {e}") from e

    with resp:
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        start, total = _content_range(resp.headers.get("Content-Range"))
        if offset and resp.status == 206:
            if start != offset:
                # A range we did not ask for: drop the partial file and start over.
                part.unlink()
                return _transfer(url, part, progress=progress, timeout=timeout, desc=desc)
            mode = "ab"
            if total is None and length is not None:
                total = offset + length
        else:
            if offset:
                # The server ignored Range and sends the whole file: restart cleanly.
                logger.info("%s ignored the Range request; downloading from the start", url)
                hasher = hashlib.sha256()
                offset = 0
            mode = "wb"
            total = length
        received = 0
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc,
            disable=not progress,
        )
        with bar, open(part, mode) as f:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Interrupted(
                        f"connection lost after {offset + received} bytes: {e}"
                    ) from e
                if not chunk:
                    break
                f.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and offset + received != total:
        # http.client reports a short body as a plain EOF, so check the length ourselves.
        raise _Interrupted(f"connection closed after {offset + received} of {total} bytes")
    return hasher.hexdigest()


def download(
    url: str,
    dst: PathLike,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    progress: bool = True,
    timeout: float = 60,
    retries: int = 2,
) -> Path:
    """Download ``url`` to ``dst`` with resume and sha256 verification (urllib only).

    Bytes stream into ``dst + ".part"``. An existing ``.part`` is resumed with an HTTP
    ``Range`` request; a server that ignores ``Range`` (answers 200) is read from the start
    and the ``.part`` rewritten. After an interruption the transfer resumes up to ``retries``
    more times. The digest is checked before the ``.part`` is renamed onto ``dst``
    (``os.replace``), so ``dst`` only ever holds a complete, verified file.

    Args:
        url: http(s) URL.
        dst: final path; its folder is created.
        sha256: expected full hex digest.
        sha256_prefix: expected leading hex digits (e.g. ``"10086976"``).
        progress: show a tqdm bar (bytes) on stderr.
        timeout: socket timeout per connect/read, seconds.
        retries: extra attempts that resume after an interruption.

    Returns:
        ``Path(dst)``.

    Raises:
        OfflineError: ``AUDIOREP_OFFLINE=1``.
        ChecksumError: digest mismatch; the ``.part`` is deleted, ``dst`` is not created.
        DownloadError: HTTP error, or still interrupted after the retries (the ``.part`` is
            kept, so calling again resumes).

    Warns:
        UnpinnedWeightsWarning: neither ``sha256`` nor ``sha256_prefix`` was given; the
            message carries the computed digest.
    """
    dst = Path(dst)
    if is_offline():
        raise OfflineError(
            f"{ENV_OFFLINE}=1 is set, so {url} was not downloaded. Fetch it on a machine with "
            f"network access and place it at {dst}, or unset {ENV_OFFLINE}."
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + ".part")
    attempt = 0
    while True:
        try:
            digest = _transfer(url, part, progress=progress, timeout=timeout, desc=dst.name)
            break
        except _Interrupted as e:
            attempt += 1
            if attempt > retries:
                raise DownloadError(
                    f"downloading {url} failed after {attempt} attempt(s): {e}. The partial "
                    f"file {part} was kept; run again to resume."
                ) from e
            logger.warning(
                "download of %s failed (%s); retrying, resuming any partial file", url, e
            )
    if not _digest_ok(digest, sha256, sha256_prefix):
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"sha256 mismatch for {url}:\n"
            f"  expected {_expected_text(sha256, sha256_prefix)}\n"
            f"  got      {digest}\n"
            "The download was deleted. Try again; if it persists the file on the server has "
            "changed or is being corrupted in transit."
        )
    if not (sha256 or sha256_prefix):
        warnings.warn(
            f"{dst.name} is not pinned to a checksum, so its integrity was not verified "
            f"(downloaded from {url}); its sha256 is {digest}",
            UnpinnedWeightsWarning,
            stacklevel=2,
        )
    os.replace(part, dst)
    return dst


def _offline_message(entry: WeightsEntry, path: Path) -> str:
    return (
        f"{entry.name} is not in the cache and {ENV_OFFLINE}=1 is set. Download "
        f"{entry.urls[0]} on a machine with network access and place it at {path} "
        f"(or set {ENV_HOME} to a folder holding {entry.name}/{entry.filename}), or pass "
        "--weights PATH to use a file directly."
    )


def fetch(name: str, *, progress: bool = True) -> Path:
    """Return registry entry ``name``'s cached file, downloading it first if needed.

    A cached file is re-verified when the entry is pinned; one that fails is downloaded again
    (offline: an error). Mirrors are tried in order.

    Returns:
        ``cache_dir() / name / filename``.

    Raises:
        KeyError: unknown name.
        OfflineError: not cached and ``AUDIOREP_OFFLINE=1`` (says where to put the file).
        ChecksumError / DownloadError: every mirror failed.
    """
    entry = get_entry(name)
    path = cached_path(name)
    if path.exists():
        if not entry.pinned and (entry.size is None or path.stat().st_size == entry.size):
            return path
        digest = sha256_file(path)
        if _digest_ok(digest, entry.sha256, entry.sha256_prefix) and (
            entry.size is None or path.stat().st_size == entry.size
        ):
            return path
        if is_offline():
            raise ChecksumError(
                f"cached {path} fails its checksum (expected "
                f"{_expected_text(entry.sha256, entry.sha256_prefix)}, got {digest}). "
                f"Replace it with the file from {entry.urls[0]}."
            )
        logger.warning("cached %s fails its checksum (%s); downloading again", path, digest)
        path.unlink()
    if is_offline():
        raise OfflineError(_offline_message(entry, path))
    errors = []
    for url in entry.urls:
        try:
            return download(
                url,
                path,
                sha256=entry.sha256,
                sha256_prefix=entry.sha256_prefix,
                progress=progress,
            )
        except DownloadError as e:
            errors.append(f"{url}: {e}")
    raise DownloadError(f"could not download {name}:\n  " + "\n  ".join(errors))


def verify(name_or_path: PathLike) -> dict[str, Any]:
    """Hash a cached registry entry or any file.

    Args:
        name_or_path: a registry name (checks ``cache_dir()/name/filename`` against its pin)
            or a path (a file whose name is a registry filename is checked against that pin).

    Returns:
        ``{"name", "path", "exists", "size" (bytes), "sha256", "expected", "pinned", "ok",
        "message"}``. ``ok`` is True for an existing file that matches its pin or has none.

    Raises:
        FileNotFoundError: neither a registry name nor an existing file.
    """
    key = os.fspath(name_or_path)
    entry: WeightsEntry | None
    if key in REGISTRY:
        entry, path = REGISTRY[key], cached_path(key)
    else:
        path = Path(key)
        if not path.is_file():
            raise FileNotFoundError(
                f"{key}: neither a registry name ({', '.join(sorted(REGISTRY))}) nor a file"
            )
        entry = next((e for e in REGISTRY.values() if e.filename == path.name), None)
    result: dict[str, Any] = {
        "name": entry.name if entry else None,
        "path": str(path),
        "exists": path.is_file(),
        "size": None,
        "sha256": None,
        "expected": _expected_text(entry.sha256, entry.sha256_prefix) if entry else "-",
        "pinned": bool(entry and entry.pinned),
        "ok": False,
        "message": "",
    }
    if not path.is_file():
        result["message"] = f"not downloaded (audiorep weights download {key})"
        return result
    digest = sha256_file(path)
    size = path.stat().st_size
    result.update(size=size, sha256=digest)
    if entry is None or not entry.pinned:
        result["ok"] = entry is None or entry.size is None or size == entry.size
        result["message"] = "no pinned checksum to compare with" if result["ok"] else "bad size"
    else:
        ok = _digest_ok(digest, entry.sha256, entry.sha256_prefix)
        ok = ok and (entry.size is None or size == entry.size)
        result["ok"] = ok
        result["message"] = "checksum matches" if ok else "CHECKSUM MISMATCH"
    return result


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


def _cache_converted(
    name: str, model: StateDict | None, pca: StateDict | None, sources: list[Path]
) -> Path | None:
    dst = converted_path(name)
    try:
        return write_safetensors(dst, model, pca, source=",".join(p.name for p in sources))
    except OSError as e:  # a read-only cache must not stop inference
        logger.warning("could not cache converted weights at %s: %s", dst, e)
        return None


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
        conv = converted_path(name)
        if conv.is_file():
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
    conv = converted_path(name)
    if conv.is_file():
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
