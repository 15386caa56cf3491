"""What to embed: files, folders (recursive, extension filter) and list files (.txt / .csv).

Every input becomes an :class:`InputItem` with the path to read and ``rel``, the relative path
its outputs are named after (the folder tree is mirrored under the output folder).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from audiorep.audio import AUDIO_EXTENSIONS, AudioLoadError, require_regular_file

LIST_EXTENSIONS = (".txt", ".lst", ".csv", ".tsv")


@dataclass(frozen=True)
class InputItem:
    """One input file: ``path`` to read, ``rel`` (POSIX relative path) to name outputs."""

    path: Path
    rel: str


def _normalise_exts(extensions: Iterable[str] | None) -> frozenset[str]:
    if extensions is None:
        return AUDIO_EXTENSIONS
    return frozenset(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: name it by its own absolute path
        return Path(os.path.abspath(path))


def _rel_for(path: Path, base: Path) -> str:
    try:
        return _resolved(path).relative_to(_resolved(base)).as_posix()
    except ValueError:  # outside the list's folder: keep the path without its anchor
        parts = _resolved(path).parts[1:]
        return PurePosixPath(*parts).as_posix()


def read_list_file(path: Path) -> list[InputItem]:
    """Paths from a text list (one per line, ``#`` comments) or a CSV/TSV with a ``path``
    column (else the first column). Relative paths are relative to the list's folder."""
    base = path.parent
    rows: list[str] = []
    if path.suffix.lower() in (".csv", ".tsv"):
        delim = "\t" if path.suffix.lower() == ".tsv" else ","
        # surrogateescape: paths that are not valid UTF-8 keep their bytes, as file names do
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            reader = csv.reader(fh, delimiter=delim)
            header = next(reader, None)
            if header is None:
                return []
            col = header.index("path") if "path" in header else 0
            if "path" not in header:
                rows.append(header[0])
            rows += [r[col] for r in reader if len(r) > col and r[col].strip()]
    else:
        for line in path.read_text(encoding="utf-8", errors="surrogateescape").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                rows.append(line)
    items = []
    for number, r in enumerate(rows, 1):
        if "\x00" in r:
            raise ValueError(f"{path}: entry {number} contains a NUL byte; not a list of paths")
        try:
            p = Path(r.strip()).expanduser()
        except RuntimeError:  # "~user" for an unknown user, or no home directory at all
            raise ValueError(f"{path}: entry {number}: cannot expand {r.strip()!r}") from None
        p = p if p.is_absolute() else base / p
        items.append(InputItem(p, _rel_for(p, base)))
    return items


def collect_inputs(
    inputs: Sequence[str | os.PathLike],
    extensions: Iterable[str] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[InputItem]:
    """Expand files, folders and list files into :class:`InputItem` s (sorted per folder).

    A folder is searched recursively for files with ``extensions`` (default: every audio and
    container extension audiorep decodes). A file whose extension is in
    :data:`LIST_EXTENSIONS` is read as a list of paths. A path that does not exist raises
    ``FileNotFoundError`` before any work starts; listed files are checked when read.

    In folders, entries with an audio extension that are not regular files (dangling links,
    symlink loops, FIFOs, devices) are not embedded; with ``skipped`` given, each is appended
    to it as ``(path, reason)`` so the run can report it.
    """
    exts = _normalise_exts(extensions)
    found: list[InputItem] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix.lower() not in exts or f.name.startswith("."):
                    continue
                if f.is_file():
                    found.append(InputItem(f, f.relative_to(p).as_posix()))
                elif skipped is not None and not f.is_dir():
                    try:
                        require_regular_file(f)
                    except AudioLoadError as exc:
                        skipped.append((str(f), str(exc)))
        elif p.is_file() and p.suffix.lower() in LIST_EXTENSIONS:
            found += read_list_file(p)
        elif p.exists():
            found.append(InputItem(p, p.name))
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return found


def output_names(items: Sequence[InputItem], suffix: str) -> list[str]:
    """``rel`` with its extension replaced by ``suffix``; two inputs mapping to one output name
    (``a.wav`` and ``a.flac``) is an error naming both."""
    seen: dict[str, Path] = {}
    out = []
    for it in items:
        name = PurePosixPath(it.rel).with_suffix(suffix).as_posix()
        if name in seen:
            raise ValueError(f"{it.path} and {seen[name]} would both write {name}; rename one")
        seen[name] = it.path
        out.append(name)
    return out


__all__ = ["InputItem", "LIST_EXTENSIONS", "collect_inputs", "output_names", "read_list_file"]
