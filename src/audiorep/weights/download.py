"""Verified, resumable downloads into the cache (``.part`` + HTTP Range), and ``verify``."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from tqdm import tqdm

from audiorep.hashing import file_md5, file_sha256
from audiorep.weights.cache import (
    ENV_HOME,
    ENV_OFFLINE,
    ChecksumError,
    DownloadError,
    OfflineError,
    PathLike,
    UnpinnedWeightsWarning,
    WeightsError,
    _Interrupted,
    is_offline,
)
from audiorep.weights.registry import REGISTRY, WeightsEntry, cached_path, get_entry

_CHUNK = 1 << 20
_USER_AGENT = "audiorep (+https://pypi.org/project/audiorep/)"

logger = logging.getLogger("audiorep.weights")

# ----------------------------------------------------------------------------- hashing

sha256_file = file_sha256  # the name this module has always exported


def _digest_ok(digest: str, sha256: str | None, prefix: str | None) -> bool:
    if sha256 and digest != sha256.lower():
        return False
    return not (prefix and not digest.startswith(prefix.lower()))


def _expected_text(sha256: str | None, prefix: str | None, md5: str | None = None) -> str:
    if sha256:
        return sha256.lower()
    if prefix:
        return f"{prefix.lower()}... (prefix)"
    return f"md5 {md5.lower()}" if md5 else "-"


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
    md5: str | None = None,
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
        md5: expected hex MD5, where the publisher gives only that (checked after the
            transfer; a weaker check than sha256, still one against corruption).
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
        UnpinnedWeightsWarning: neither ``sha256``, ``sha256_prefix`` nor ``md5`` was given;
            the message carries the computed digest.
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
                kept = (
                    f"The partial file {part} ({part.stat().st_size} bytes) was kept; run "
                    "again to resume."
                    if part.is_file() and part.stat().st_size
                    else "Nothing was received."
                )
                raise DownloadError(
                    f"downloading {url} failed after {attempt} attempt(s): {e}. {kept}"
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
    if md5 and file_md5(part) != md5.lower():
        got = file_md5(part)
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"md5 mismatch for {url}:\n  expected {md5.lower()}\n  got      {got}\n"
            "The download was deleted. Try again; if it persists the file on the server has "
            "changed or is being corrupted in transit."
        )
    if not (sha256 or sha256_prefix or md5):
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
    if entry.bundled:
        if not path.is_file():
            raise WeightsError(f"{name}: the bundled file {path} is missing from this install")
        digest = sha256_file(path)
        if entry.sha256 and digest != entry.sha256:
            raise ChecksumError(
                f"{name}: the bundled file {path} fails its checksum (expected {entry.sha256}, "
                f"got {digest}); reinstall audiorep"
            )
        return path
    if path.exists():
        size_ok = entry.size is None or path.stat().st_size == entry.size
        if not entry.pinned and not entry.md5 and size_ok:
            return path
        if entry.pinned:
            digest = sha256_file(path)
            good = _digest_ok(digest, entry.sha256, entry.sha256_prefix)
        else:  # only the publisher's MD5 is known
            digest = file_md5(path)
            good = digest == entry.md5.lower()
        if good and size_ok:
            return path
        if is_offline():
            raise ChecksumError(
                f"cached {path} fails its checksum (expected "
                f"{_expected_text(entry.sha256, entry.sha256_prefix, entry.md5)}, got {digest}). "
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
                md5=entry.md5,
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
        "expected": (
            _expected_text(entry.sha256, entry.sha256_prefix, entry.md5) if entry else "-"
        ),
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
    if entry is not None and not entry.pinned and entry.md5:
        result["md5"] = file_md5(path)
        ok = result["md5"] == entry.md5.lower() and (entry.size is None or size == entry.size)
        result["ok"] = ok
        result["message"] = "md5 matches the publisher's" if ok else "MD5 MISMATCH"
    elif entry is None or not entry.pinned:
        result["ok"] = entry is None or entry.size is None or size == entry.size
        result["message"] = "no pinned checksum to compare with" if result["ok"] else "bad size"
    else:
        ok = _digest_ok(digest, entry.sha256, entry.sha256_prefix)
        ok = ok and (entry.size is None or size == entry.size)
        result["ok"] = ok
        result["message"] = "checksum matches" if ok else "CHECKSUM MISMATCH"
    return result
