"""Build a small labelled audio set for a linear-evaluation pipeline check.

    python examples/make_linear_eval_set.py OUT_DIR [--per-class 30] [--seed 0] [--no-speech]

Writes ``OUT_DIR/<label>/<label>_<k>.wav`` (16-bit PCM), seeded and reproducible:

* ``pure_tone``: one sine, 150-3000 Hz (log-uniform), optional slow vibrato;
* ``harmonic``: a harmonic complex, f0 80-400 Hz, 4-12 partials with random 1/k^a amplitudes;
* ``chirp``: a sweep between two random frequencies in 100-6000 Hz, up or down, linear or
  exponential;
* ``white_noise``, ``pink_noise``, ``brown_noise``: Gaussian noise shaped to 1/f^0, 1/f^1 and
  1/f^2 power spectra;
* ``speech_en``, ``speech_de`` (only when ``espeak-ng`` is installed): random word sequences
  spoken by espeak-ng in English / German with random voice variant, speed and pitch, at
  espeak's own 22 050 Hz (so the pipeline's resampler is exercised too).

Every clip is 2-4 s long (uniform), has a random gain (-30 to -6 dBFS RMS for the synthetic
classes), 10 ms fades, and a faint independent white-noise floor (-60 dBFS) so that no class is
identified by digital silence. The synthetic classes are written at 16 kHz.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
WORDS = {
    "en": (
        "the quick brown fox jumps over a lazy dog while seven green birds sing near old "
        "river stones and children laugh in the warm summer evening light before dinner"
    ).split(),
    "de": (
        "der schnelle braune fuchs springt über den faulen hund während sieben grüne vögel "
        "am alten fluss singen und kinder im warmen sommerabend lachen bevor es essen gibt"
    ).split(),
}
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "f4", "f5")


def _duration(rng: np.random.Generator) -> int:
    return int(rng.uniform(2.0, 4.0) * SR)


def _finish(x: np.ndarray, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Random RMS gain, 10 ms fades, a -60 dBFS noise floor, clipped to [-1, 1]."""
    x = x / max(np.sqrt(np.mean(x**2)), 1e-12) * 10 ** (rng.uniform(-30, -6) / 20)
    fade = int(0.01 * sr)
    ramp = np.linspace(0.0, 1.0, fade)
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    x = x + 1e-3 * rng.standard_normal(len(x))
    return np.clip(x, -1.0, 1.0)


def pure_tone(rng: np.random.Generator) -> np.ndarray:
    n = _duration(rng)
    t = np.arange(n) / SR
    f = np.exp(rng.uniform(np.log(150), np.log(3000)))
    vib = rng.uniform(0, 0.01) * np.sin(2 * np.pi * rng.uniform(3, 7) * t)  # <= 1 % vibrato
    phase = 2 * np.pi * np.cumsum(f * (1 + vib)) / SR
    return np.sin(phase + rng.uniform(0, 2 * np.pi))


def harmonic(rng: np.random.Generator) -> np.ndarray:
    n = _duration(rng)
    t = np.arange(n) / SR
    f0 = np.exp(rng.uniform(np.log(80), np.log(400)))
    slope = rng.uniform(0.5, 2.0)
    x = np.zeros(n)
    for k in range(1, int(rng.integers(4, 13)) + 1):
        if k * f0 < SR / 2 - 200:
            x += k**-slope * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    return x


def chirp(rng: np.random.Generator) -> np.ndarray:
    n = _duration(rng)
    t = np.arange(n) / SR
    f1, f2 = np.exp(rng.uniform(np.log(100), np.log(6000), size=2))
    if abs(np.log(f2 / f1)) < 0.7:  # at least a factor 2 in frequency
        f2 = f1 * (2.5 if f1 < 2000 else 0.4)
    dur = n / SR
    if rng.random() < 0.5:
        inst = f1 + (f2 - f1) * t / dur
    else:
        inst = f1 * (f2 / f1) ** (t / dur)
    return np.sin(2 * np.pi * np.cumsum(inst) / SR)


def coloured_noise(rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f^exponent (DC removed)."""
    n = _duration(rng)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    spec *= f ** (-exponent / 2)
    spec[0] = 0
    return np.fft.irfft(spec, n)


def speech(rng: np.random.Generator, lang: str, workdir: Path) -> tuple[np.ndarray, int]:
    words = rng.choice(WORDS[lang], size=int(rng.integers(6, 14)))
    voice = f"{lang}+{VARIANTS[int(rng.integers(len(VARIANTS)))]}"
    speed = int(rng.integers(120, 200))
    pitch = int(rng.integers(20, 80))
    out = workdir / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out),
         " ".join(words)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    x, sr = sf.read(out, dtype="float64")
    n = int(rng.uniform(2.0, 4.0) * sr)
    if len(x) >= n:  # a random 2-4 s excerpt, or zero-padded speech
        start = int(rng.integers(0, len(x) - n + 1))
        x = x[start : start + n]
    else:
        x = np.pad(x, (0, n - len(x)))
    return x, sr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--per-class", type=int, default=30, help="clips per class (30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--no-speech", action="store_true", help="skip the espeak-ng classes")
    args = parser.parse_args(argv)

    synth = {
        "pure_tone": pure_tone,
        "harmonic": harmonic,
        "chirp": chirp,
        "white_noise": lambda r: coloured_noise(r, 0.0),
        "pink_noise": lambda r: coloured_noise(r, 1.0),
        "brown_noise": lambda r: coloured_noise(r, 2.0),
    }
    speech_ok = not args.no_speech and shutil.which("espeak-ng") is not None
    if not args.no_speech and not speech_ok:
        print("espeak-ng not found: skipping the speech classes", file=sys.stderr)
    labels = list(synth) + (["speech_en", "speech_de"] if speech_ok else [])
    with tempfile.TemporaryDirectory() as tmp:
        for ci, label in enumerate(labels):
            folder = args.out / label
            folder.mkdir(parents=True, exist_ok=True)
            # One generator per class: adding a class never changes the others' clips.
            rng = np.random.default_rng([args.seed, ci])
            for k in range(args.per_class):
                if label.startswith("speech_"):
                    x, sr = speech(rng, label.split("_")[1], Path(tmp))
                    x = _speech_finish(x, rng, sr)
                else:
                    x, sr = _finish(synth[label](rng), rng), SR
                sf.write(folder / f"{label}_{k:03d}.wav", x.astype(np.float32), sr, "PCM_16")
            print(f"{label}: {args.per_class} clips", file=sys.stderr)
    print(f"wrote {len(labels)} classes x {args.per_class} clips to {args.out}")
    return 0


def _speech_finish(x: np.ndarray, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Speech keeps espeak's pauses: gain on the whole excerpt (not its RMS, which silence
    would distort), a random -12..-1 dB peak level, and the same noise floor and fades."""
    peak = max(np.max(np.abs(x)), 1e-12)
    x = x / peak * 10 ** (rng.uniform(-12, -1) / 20)
    fade = int(0.01 * sr)
    ramp = np.linspace(0.0, 1.0, fade)
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return np.clip(x + 1e-3 * rng.standard_normal(len(x)), -1.0, 1.0)


if __name__ == "__main__":
    sys.exit(main())
