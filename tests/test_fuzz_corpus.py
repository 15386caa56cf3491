"""A corpus of generated malformed inputs: every one ends in a result or a clear error.

Issue 12 item 3. From valid seeds (audio in every container soundfile writes here, a real
AudioSet TFRecord shard, safetensors weights, npz statistics, list files) the corpus derives
truncations, byte flips, extreme header fields, random bytes and appended garbage, seeded so
that every run sees the same inputs. Each input goes through the reader a user would call:

* the outcome is a value, or the reader's documented error (``AudioLoadError``,
  ``TFRecordError``/``ProtoDecodeError``, ``WeightsFormatError``, ``ValueError`` from the stats
  readers, ``FileNotFoundError``) whose message names the file;
* anything else (another exception type, a traceback from deep inside a library) fails;
* each input is bounded in time (``signal.setitimer``): a hang fails too.

``AUDIOREP_FUZZ_REPORT=path.json`` writes the per-category figures used in
docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorep.audio import AudioLoadError, DamagedAudioWarning, load
from audiorep.convert.readers import WeightsFormatError
from audiorep.convert.vggish import load_any
from audiorep.data.example import ProtoDecodeError, parse_sequence_example
from audiorep.data.tfrecord import TFRecordError, read_tfrecord
from audiorep.extract.inputs import collect_inputs
from audiorep.metrics.stats_io import load_stats

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGALRM time bound: POSIX")

SEED = 20261207
TIME_BOUND_S = 20.0  # per input; the slowest clean input takes well under a second
SHARD = Path(__file__).parent / "fixtures" / "yt8m" / "audioset" / "eval" / "RK.tfrecord"
AUDIO_SEEDS = {  # extension -> soundfile (format, subtype)
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "aiff": ("AIFF", "PCM_16"),
    "au": ("AU", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "w64": ("W64", "FLOAT"),
}
MUTATIONS_PER_SEED = 110


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_bound(seconds: float):
    def expire(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def mutations(data: bytes, rng: np.random.RandomState, n: int) -> list[tuple[str, bytes]]:
    """``n`` damaged variants of ``data``: truncations (header region and body), byte flips,
    extreme 32-bit header fields, same-length random bytes, appended garbage, empty."""
    out: list[tuple[str, bytes]] = [("empty", b""), ("one_byte", data[:1])]
    size = len(data)
    extremes = [0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 44100, 7]
    while len(out) < n:
        kind = rng.randint(6)
        if kind == 0:  # truncation, biased to the header
            cut = (
                int(rng.randint(0, min(size, 128))) if rng.rand() < 0.5 else int(rng.randint(size))
            )
            out.append((f"trunc{cut}", data[:cut]))
        elif kind == 1:  # flips
            b = bytearray(data)
            for _ in range(int(rng.choice([1, 4, 32]))):
                i = int(rng.randint(size))
                b[i] ^= 1 << int(rng.randint(8))
            out.append(("flip", bytes(b)))
        elif kind == 2:  # an extreme little/big-endian 32-bit field in the first 64 bytes
            b = bytearray(data)
            at = int(rng.randint(0, max(1, min(size, 64) - 4)))
            value = int(rng.choice(extremes))
            b[at : at + 4] = value.to_bytes(4, "little" if rng.rand() < 0.5 else "big")
            out.append((f"field{at}", bytes(b)))
        elif kind == 3:
            out.append(("random", rng.bytes(size)))
        elif kind == 4:
            out.append(("append", data + rng.bytes(int(rng.randint(1, 4096)))))
        else:  # a random block overwritten in the body
            b = bytearray(data)
            at, length = int(rng.randint(size)), int(rng.randint(1, 256))
            b[at : at + length] = rng.bytes(len(b[at : at + length]))
            out.append(("block", bytes(b)))
    return out[:n]


def _audio_seeds(folder: Path) -> dict[str, bytes]:
    x = (0.1 * np.random.RandomState(SEED).randn(4800, 2)).astype(np.float32)
    seeds = {}
    for ext, (fmt, subtype) in AUDIO_SEEDS.items():
        path = folder / f"seed.{ext}"
        try:
            sf.write(path, x, 16000, format=fmt, subtype=subtype)
        except (sf.LibsndfileError, ValueError, TypeError):  # not in this libsndfile build
            continue
        seeds[ext] = path.read_bytes()
    return seeds


class Tally:
    def __init__(self) -> None:
        self.counts: dict[str, Counter] = {}
        self.problems: list[str] = []

    def run(self, category: str, path: Path, fn, errors: tuple[type[BaseException], ...]):
        counter = self.counts.setdefault(category, Counter())
        counter["inputs"] += 1
        try:
            with _time_bound(TIME_BOUND_S), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fn(path)
            counter["accepted"] += 1
            if any(issubclass(w.category, DamagedAudioWarning) for w in caught):
                counter["accepted_with_warning"] += 1
        except _Timeout:
            counter["hangs"] += 1
            self.problems.append(f"{category} {path.name}: no result in {TIME_BOUND_S} s")
        except errors as exc:
            named = path.name in str(exc) or str(path) in str(exc)
            counter["clean_errors" if named else "unnamed_errors"] += 1
            if not named:
                self.problems.append(f"{category} {path.name}: error without the file: {exc}")
        except Exception as exc:  # any other type is a traceback for the user
            counter["tracebacks"] += 1
            self.problems.append(f"{category} {path.name}: {type(exc).__name__}: {exc}")


def _load_audio(path: Path) -> None:
    wave, sr = load(path)
    assert wave.dtype == torch.float32 and wave.dim() == 2 and wave.shape[-1] > 0
    assert torch.isfinite(wave).all() and 1000 <= sr <= 768000


def _read_shard(path: Path) -> None:
    for payload in read_tfrecord(path):
        try:
            parse_sequence_example(payload)
        except ProtoDecodeError as exc:  # the codec's error; it has no file: add it
            raise ProtoDecodeError(f"{path}: {exc}") from None


def _stats(path: Path) -> None:
    stats = load_stats(path)
    assert stats.mean.ndim == 1


def _list_file(path: Path) -> None:
    collect_inputs([path])


def test_fuzz_corpus(tmp_path):
    rng = np.random.RandomState(SEED)
    tally = Tally()
    n = 0

    def emit(category: str, ext: str, label: str, data: bytes) -> Path:
        nonlocal n
        n += 1
        path = tmp_path / category / f"{n:05d}_{label}.{ext}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return path

    # audio, every container this libsndfile writes
    seeds = _audio_seeds(tmp_path)
    assert {"wav", "flac", "ogg"} <= set(seeds)
    for ext, data in seeds.items():
        for label, bad in mutations(data, rng, MUTATIONS_PER_SEED):
            tally.run(f"audio/{ext}", emit("audio", ext, label, bad), _load_audio,
                      (AudioLoadError,))  # fmt: skip
    # TFRecord framing and the SequenceExample codec
    shard = SHARD.read_bytes()
    for label, bad in mutations(shard, rng, 200):
        tally.run("tfrecord", emit("tfrecord", "tfrecord", label, bad), _read_shard,
                  (TFRecordError, ProtoDecodeError))  # fmt: skip
    # weights: safetensors and npz readers
    from safetensors.torch import save

    weights = save({"fc.weight": torch.randn(8, 4), "fc.bias": torch.zeros(8)})
    for label, bad in mutations(weights, rng, 120):
        tally.run("safetensors", emit("weights", "safetensors", label, bad), load_any,
                  (WeightsFormatError, AudioLoadError))  # fmt: skip
    # statistics files (audiorep npz)
    buf = io.BytesIO()
    np.savez(buf, mu=np.zeros(4), sigma=np.eye(4), n=np.array(10))
    for label, bad in mutations(buf.getvalue(), rng, 120):
        tally.run("stats", emit("stats", "npz", label, bad), _stats, (ValueError, OSError))
    # list files: text with odd lines, binary garbage, CSV with odd columns
    text = b"# list\na.wav\n\nsub/b.flac\n/abs/c.ogg\n"
    for label, bad in mutations(text, rng, 60):
        tally.run("list", emit("lists", "txt", label, bad), _list_file,
                  (FileNotFoundError, ValueError))  # fmt: skip
    csv = b"path,label\na.wav,dog\nb.wav,cat\n"
    for label, bad in mutations(csv, rng, 60):
        tally.run("list", emit("lists", "csv", label, bad), _list_file,
                  (FileNotFoundError, ValueError))  # fmt: skip

    total = sum(c["inputs"] for c in tally.counts.values())
    report = os.environ.get("AUDIOREP_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps({k: dict(v) for k, v in tally.counts.items()},
                                           indent=1, sort_keys=True))  # fmt: skip
    assert total >= 1000, total
    assert not tally.problems, "\n".join(tally.problems[:40])


FINDINGS = Path(__file__).parent / "fixtures" / "fuzz"
REPLAY = {  # tools/fuzz.py target -> (suffix, reader, documented errors)
    "tfrecord": (".tfrecord", _read_shard, (TFRecordError, ProtoDecodeError)),
    "wav": (".wav", _load_audio, (AudioLoadError,)),
    "flac": (".flac", _load_audio, (AudioLoadError,)),
    "stats": (".npz", _stats, (ValueError, OSError)),
    "weights": (".safetensors", load_any, (WeightsFormatError,)),
    "list": (".txt", _list_file, (FileNotFoundError, ValueError)),
}


def test_fuzz_findings_replay(tmp_path):
    """Every seed and every past finding of `make fuzz` (tests/fixtures/fuzz/) still ends in
    a value or a clean error."""
    tally = Tally()
    replayed = 0
    for target, (suffix, reader, errors) in REPLAY.items():
        for source in sorted((FINDINGS / target).glob("*")):
            path = tmp_path / target / (source.name + suffix)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(source.read_bytes())
            tally.run(target, path, reader, errors)
            replayed += 1
    for source in sorted((FINDINGS / "example").glob("*")):  # the codec: bytes, no file
        for parse in ("parse_example", "parse_sequence_example"):
            from audiorep.data import example

            with contextlib.suppress(ProtoDecodeError):
                getattr(example, parse)(source.read_bytes())
        replayed += 1
    assert replayed >= 8
    assert not tally.problems, "\n".join(tally.problems)
