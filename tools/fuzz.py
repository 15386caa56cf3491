"""Coverage-guided fuzzing of audiorep's parsers with atheris (``make fuzz``).

Usage: ``python tools/fuzz.py TARGET [SECONDS]`` or ``python tools/fuzz.py all [SECONDS]``
(each target for SECONDS, default 60). Targets: ``tfrecord`` (framing + CRC),
``example`` (the Example / SequenceExample codec), ``wav`` (``audio.load`` on WAV-named
bytes), ``flac``, ``stats`` (``load_stats``), ``weights`` (``convert.vggish.load_any``),
``list`` (list files).

A target's documented errors (the same ones ``tests/test_fuzz_corpus.py`` accepts) are the
expected outcome for bad bytes; any other exception is a finding: atheris stops and writes the
input as ``crash-<sha1>``. Fix it, then copy the input into ``tests/fixtures/fuzz/<target>/``:
the test replays every file there on each ``make test``. Nothing here runs in ``make test``
itself (atheris instruments the code and needs minutes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ROOT / "tests" / "fixtures" / "fuzz"
TARGETS = ("tfrecord", "example", "wav", "flac", "stats", "weights", "list")


def _target(name: str):
    """``(function(bytes), expected exception types)`` for a target, imported instrumented."""
    import atheris

    with atheris.instrument_imports(include=["audiorep"]):
        from audiorep import audio
        from audiorep.convert.readers import WeightsFormatError
        from audiorep.convert.vggish import load_any
        from audiorep.data import example, tfrecord
        from audiorep.extract.inputs import read_list_file
        from audiorep.metrics.stats_io import load_stats

    scratch = Path(tempfile.mkdtemp(prefix="audiorep-fuzz-"))

    def via_file(suffix: str, fn):
        path = scratch / f"input{suffix}"

        def run(data: bytes) -> None:
            path.write_bytes(data)
            fn(path)

        return run

    def tfrecord_all(path: Path) -> None:
        for _ in tfrecord.read_tfrecord(path):
            pass

    def example_both(data: bytes) -> None:
        for parse in (example.parse_example, example.parse_sequence_example):
            try:
                parse(data)
            except example.ProtoDecodeError:
                pass

    table = {
        "tfrecord": (via_file(".tfrecord", tfrecord_all), (tfrecord.TFRecordError,)),
        "example": (example_both, ()),
        "wav": (via_file(".wav", audio.load), (audio.AudioLoadError,)),
        "flac": (via_file(".flac", audio.load), (audio.AudioLoadError,)),
        "stats": (via_file(".npz", load_stats), (ValueError, OSError)),
        "weights": (via_file(".safetensors", load_any), (WeightsFormatError,)),
        "list": (via_file(".txt", read_list_file), (ValueError, FileNotFoundError)),
    }
    return table[name]


def fuzz_one(name: str, seconds: int) -> None:
    import warnings

    import atheris

    fn, expected = _target(name)
    warnings.simplefilter("ignore")  # DamagedAudioWarning etc. are expected outcomes

    def one_input(data: bytes) -> None:
        try:
            fn(data)
        except expected:
            pass

    # libFuzzer adds every new interesting input to its first corpus folder: work on a copy
    # of the seeds so that tests/fixtures/fuzz only ever holds seeds and fixed findings.
    work = Path(tempfile.mkdtemp(prefix=f"audiorep-fuzz-{name}-corpus-"))
    for seed in sorted((FINDINGS / name).glob("*")):
        (work / seed.name).write_bytes(seed.read_bytes())
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-rss_limit_mb=4096", str(work)],
                  one_input)  # fmt: skip
    atheris.Fuzz()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*TARGETS, "all"):
        print(__doc__)
        return 2
    seconds = int(argv[1]) if len(argv) > 1 else 60
    if argv[0] != "all":
        fuzz_one(argv[0], seconds)
        return 0
    status = 0
    for name in TARGETS:  # one process each: atheris.Fuzz() does not return
        print(f"== {name}: {seconds} s", flush=True)
        code = subprocess.call([sys.executable, __file__, name, str(seconds)],
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")})  # fmt: skip
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
