"""Build "sfx10": a small, real-sound, VAS-like class set for training and testing SpecVQGAN judges.

Ten classes of 2-10 s clips at 22 050 Hz, rendered or cut here from free material:

* General-MIDI sound effects rendered offline with FluidSynth and the FluidR3_GM soundfont
  (MIT): gunshot (program 127), helicopter (125), applause (126), seashore (122), telephone
  ring (124), bird tweet (123), brass (56-61) and drum-kit patterns on channel 10; pitch,
  velocity, timing, note patterns and kits vary per clip (seeded);
* speech from espeak-ng (16 voice variants, 7 English accents, seeded word sequences, rate, pitch);
* crops of the CC-BY / public-domain recordings of ../shared/audio (robin: CC BY 3.0,
  trumpet: CC BY 3.0, LibriSpeech: CC BY 4.0, humpback whale: public domain), with seeded
  offsets, gain and speed changes. No CC BY-NC recording is used.

Every clip gets a little seeded white noise (-70 to -45 dBFS) and a random peak level, so that
neither digital silence nor loudness gives the class away. Output, in the VAS layout
(src/audiorep/specvqgan/classifier_data.py, ``vas_clips``) under OUT_DIR:

    <class>/<id>.wav                            16-bit mono 22 050 Hz, 2-10 s
    <class>/melspec_10s_22050hz/<id>_mel.npy    float32 (80, 860), the authors' mel
    vas_train.txt, vas_valid.txt, vas_test.txt  rows <class>/<id> (the fixed split)
    clips.csv                                   path,label,split (the CSV layout)
    manifest.csv                                id, class, split, source, licence, seconds,
                                                details (JSON)
    RECIPE.json, LICENSES.md                    recipe, tool versions, checksums; attributions

The split is fixed by the recipe: per class and source, 15 % valid, 15 % test, the rest train
(28 / 6 / 6 of the 40 clips of a class). Crops of the longer recordings (whale, speech)
come from disjoint time regions per split (first 70 % train, next 15 % valid, last 15 % test);
the robin (2.7 s) and the trumpet loop (5.3 s) are too short for that, so their clips in
different splits share source material (noted in the docs).

The mels are computed from the written WAVs exactly as ``audiorep specvqgan mels`` does
(loop to 10 s, 22 050 Hz mel), so running that command on OUT_DIR reproduces them.

Usage::

    python tools/build_sfx_dataset.py [OUT_DIR] [--clips-per-class 40] [--seed 20260613]
    python tools/build_sfx_dataset.py OUT_DIR --export-judge TRAIN_DIR --fixture-dir DIR

The second form copies a judge trained on OUT_DIR (``audiorep specvqgan train-judge``) into a
test fixture with held-out clips (tests/fixtures/specvqgan_judge/README.md).

Needs the ``fluidsynth``, ``fluid-soundfont-gm`` and ``espeak-ng`` Debian packages (see
docs/specvqgan_training.md). The output is identical on every run with the same tool versions
(FluidSynth renders deterministically offline; RECIPE.json records the versions).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiorep.audio import load
from audiorep.frontends.specvqgan import mel_spectrogram
from audiorep.resample import resample
from audiorep.specvqgan.mels import MEL_FOLDER, MEL_SUFFIX, load_clip

RECIPE = "sfx10"
RECIPE_VERSION = 1
SR = 22050
DEFAULT_SEED = 20260613
DEFAULT_OUT = Path.home() / ".cache" / "audiorep" / "sfx10"
DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "audio" / "librosa-data"
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MIN_SECONDS, MAX_SECONDS = 2.0, 10.0
GAP_SECONDS = 3.0  # silence between clips in one FluidSynth render (reverb tails die out)
#: Split shares per class and source (valid, test); train takes the rest.
VALID_SHARE = TEST_SHARE = 0.15
#: Time regions of long recordings per split (fractions of the recording).
REGIONS = {"train": (0.0, 0.7), "valid": (0.7, 0.85), "test": (0.85, 1.0)}

# --------------------------------------------------------------------------- the sources

#: Recordings of ../shared/audio used here: key -> (files, licence, attribution file stems).
RECORDINGS = {
    "robin": (
        ["456440__inspectorj__bird-whistling-robin-single-13.hq.ogg"],
        "CC BY 3.0 (InspectorJ, freesound 456440)",
    ),
    "trumpet": (
        ["sorohanro_-_solo-trumpet-06.hq.ogg"],
        "CC BY 3.0 (Mihai Sorohan, freesound 77711)",
    ),
    "librispeech": (
        ["5703-47212-0000.hq.ogg", "3436-172162-0000.hq.ogg", "198-209-0000.hq.ogg"],
        "CC BY 4.0 (LibriSpeech SLR12: Garth Comira, Anders Lankford, Heather Barnett)",
    ),
    "humpback": (
        ["glacier-bay-humpback.hq.ogg"],
        "public domain (US National Park Service, Chris Gabriele)",
    ),
}
FLUID_LICENCE = "rendered with FluidSynth from FluidR3_GM.sf2 (MIT, Frank Wen)"
ESPEAK_LICENCE = "generated with espeak-ng (program GPL-3.0+; the generated audio is ours)"

#: class -> [(source, clips share)], source = "gm:<style>" | "espeak" | "rec:<key>".
CLASSES: dict[str, list[tuple[str, float]]] = {
    "applause": [("gm:applause", 1.0)],
    "bird": [("gm:bird", 0.75), ("rec:robin", 0.25)],
    "brass": [("gm:brass", 0.7), ("rec:trumpet", 0.3)],
    "drum_kit": [("gm:drums", 1.0)],
    "gunshot": [("gm:gunshot", 1.0)],
    "helicopter": [("gm:helicopter", 1.0)],
    "seashore": [("gm:seashore", 1.0)],
    "speech": [("espeak", 0.75), ("rec:librispeech", 0.25)],
    "telephone": [("gm:telephone", 1.0)],
    "whale": [("rec:humpback", 1.0)],
}

ESPEAK_ACCENTS = [
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us",
]
ESPEAK_VARIANTS = [
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "klatt",
    "klatt2",
    "klatt3",
    "croak",
    "whisperf",
]
WORDS = """the a of and to in is was that it he for on are with as his they be at one have this
from by hot word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her
long make thing see him two has look more day could go come did number sound no most people my
over know water than call first who may down side been now find any new work part take get
place made live where after back little only round man year came show every good me give our
under name very through just form sentence great think say help low line differ turn cause much
mean before move right boy old too same tell does set three want air well also play small end
put home read hand port large spell add even land here must big high such follow act why ask
men change went light kind off need house picture try us again animal point mother world near
build self earth father head stand own page should country found answer school grow study still
learn plant cover food sun four between state keep eye never last let thought city tree cross
farm hard start might story saw far sea draw left late run while press close night real life
few north open seem together next white children begin got walk example ease paper group always
music those both mark often letter until mile river car feet care second book carry took science
eat room friend began idea fish mountain stop once base hear horse cut sure watch color face
wood main enough plain girl usual young ready above ever red list though feel talk bird soon
body dog family direct pose leave song measure door product black short numeral class wind
question happen complete ship area half rock order fire south problem piece told knew pass since
top whole king space heard best hour better true during hundred five remember step early hold
west ground interest reach fast verb sing listen six table travel less morning ten simple several
vowel toward war lay against pattern slow center love person money serve appear road map rain
rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark machine
note wait plan figure star box noun field rest correct able pound done beauty drive stood
contain front teach week final gave green quick develop ocean warm free minute strong special
mind behind clear tail produce fact street inch multiply nothing course stay wheel full force
blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate miss brought heat
snow tire bring yes distant fill east paint language among""".split()

#: GM drum kits (bank 128 programs) and instruments of the "brass" style with pitch ranges.
DRUM_KITS = [0, 8, 16, 24, 25, 32, 40]
BRASS = {56: (55, 82), 57: (40, 72), 58: (28, 58), 59: (55, 82), 60: (41, 77), 61: (48, 80)}


@dataclass
class Clip:
    """One clip to make: class, id, split, source and its seeded parameters."""

    label: str
    clip_id: str
    split: str
    source: str
    seconds: float
    details: dict = field(default_factory=dict)
    audio: np.ndarray | None = None  # float64 (samples,) at 22 050 Hz once made


# ------------------------------------------------------------------------------- MIDI


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_file(events: list[tuple[int, int, bytes]]) -> bytes:
    """A format-0 standard MIDI file; ``events`` ``(ms, order, message)``; 1 tick = 1 ms
    (500 ticks per quarter note at 120 bpm)."""
    track = bytearray(b"\x00\xff\x51\x03" + (500000).to_bytes(3, "big"))
    now = 0
    for ms, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track += _vlq(ms - now) + msg
        now = ms
    track += b"\x00\xff\x2f\x00"
    return (
        b"MThd"
        + struct.pack(">IHHH", 6, 0, 1, 500)
        + b"MTrk"
        + struct.pack(">I", len(track))
        + track
    )


@dataclass
class Note:
    start: float  # seconds from the clip start
    length: float
    pitch: int
    velocity: int


def gm_style(style: str, rng: np.random.Generator, seconds: float) -> tuple[int, int, list[Note]]:
    """``(channel, program, notes)`` of one General-MIDI clip of ``style``."""

    def u(a: float, b: float) -> float:
        return float(rng.uniform(a, b))

    def ri(a: int, b: int) -> int:  # inclusive
        return int(rng.integers(a, b + 1))

    notes: list[Note] = []
    if style == "gunshot":
        for t in np.sort(rng.uniform(0, max(seconds - 1.0, 0.1), ri(1, 6))):
            notes.append(Note(float(t), u(0.3, 1.0), ri(36, 84), ri(60, 127)))
        return 0, 127, notes
    if style in ("helicopter", "applause", "seashore"):
        program = {"helicopter": 125, "applause": 126, "seashore": 122}[style]
        lo, hi = {"helicopter": (36, 84), "applause": (48, 84), "seashore": (36, 84)}[style]
        start = u(0, 0.4)
        notes.append(Note(start, max(seconds - start - u(0, 0.8), 1.0), ri(lo, hi), ri(50, 127)))
        for _ in range(ri(0, 2)):
            s = u(0, seconds * 0.6)
            notes.append(Note(s, u(1.0, seconds - s), ri(lo, hi), ri(40, 120)))
        return 0, program, notes
    if style == "telephone":
        on, off, pitch, t = u(0.4, 1.5), u(0.3, 1.5), ri(55, 84), u(0, 0.3)
        second = ri(55, 84) if rng.random() < 0.3 else pitch
        k = 0
        while t < seconds - 0.3:
            notes.append(
                Note(t, min(on, seconds - t), pitch if k % 2 == 0 else second, ri(70, 127))
            )
            t += on + off
            k += 1
        return 0, 124, notes
    if style == "bird":
        for t in np.sort(rng.uniform(0, seconds - 0.4, ri(2, 12))):
            notes.append(Note(float(t), u(0.05, 0.4), ri(60, 100), ri(60, 127)))
        return 0, 123, notes
    if style == "brass":
        program = int(rng.choice(list(BRASS)))
        lo, hi = BRASS[program]
        root = ri(lo, hi - 12)
        scale = [0, 2, 4, 5, 7, 9, 11, 12] if rng.random() < 0.5 else [0, 3, 5, 7, 10, 12]
        t = u(0, 0.3)
        while t < seconds - 0.3:
            length = min(u(0.15, 1.0), seconds - t)
            notes.append(Note(t, length, root + int(rng.choice(scale)), ri(50, 120)))
            t += length + (u(0.05, 0.6) if rng.random() < 0.3 else 0.0)
        return 0, program, notes
    if style == "drums":
        kit = int(rng.choice(DRUM_KITS))
        step = 60.0 / u(70, 170) / 4  # a 16th note
        kick = {0} | {s for s in range(16) if rng.random() < 0.2}
        snare = {4, 12} | {s for s in range(16) if rng.random() < 0.1}
        hat = int(rng.choice([42, 44, 46, 51]))
        hat_every = int(rng.choice([1, 2, 2, 4]))
        toms = [41, 43, 45, 47, 48, 50]
        t0, s = u(0, 0.2), 0
        if rng.random() < 0.5:
            notes.append(Note(t0, 0.5, 49, ri(80, 127)))  # crash on the first beat
        while t0 + s * step < seconds - 0.2:
            t, pos = t0 + s * step, s % 16
            if pos in kick:
                notes.append(Note(t, 0.1, 36, ri(80, 127)))
            if pos in snare:
                notes.append(Note(t, 0.1, 38, ri(70, 127)))
            if pos % hat_every == 0:
                notes.append(Note(t, 0.05, hat, ri(40, 110)))
            if pos >= 12 and rng.random() < 0.15:  # a fill at the end of the bar
                notes.append(Note(t, 0.1, int(rng.choice(toms)), ri(60, 120)))
            s += 1
        return 9, kit, notes
    raise ValueError(f"unknown GM style {style!r}")


def render_gm(clips: list[Clip], soundfont: Path, rng: np.random.Generator, work: Path) -> None:
    """Render the General-MIDI clips of one class in one FluidSynth run and cut them out."""
    events: list[tuple[int, int, bytes]] = []
    offsets = []
    t = 0.0
    for clip in clips:
        style = clip.source.split(":", 1)[1]
        channel, program, notes = gm_style(style, rng, clip.seconds)
        clip.details.update(program=program, channel=channel + 1, notes=len(notes))
        ms0 = round(t * 1000)
        events += [
            (ms0, 0, bytes([0xB0 | channel, 121, 0])),  # reset controllers
            (ms0, 0, bytes([0xB0 | channel, 7, 100])),
            (ms0, 1, bytes([0xC0 | channel, program])),
        ]
        for n in notes:
            on = ms0 + round(n.start * 1000) + 1
            off = on + max(round(n.length * 1000), 10)
            off = min(off, ms0 + round(clip.seconds * 1000) - 1)
            events.append((on, 3, bytes([0x90 | channel, n.pitch, n.velocity])))
            events.append((max(off, on + 1), 2, bytes([0x80 | channel, n.pitch, 0])))
        events.append((ms0 + round(clip.seconds * 1000), 2, bytes([0xB0 | channel, 123, 0])))
        offsets.append(t)
        t += clip.seconds + GAP_SECONDS
    mid, wav = work / "render.mid", work / "render.wav"
    mid.write_bytes(midi_file(events))
    cmd = [
        "fluidsynth",
        "-ni",
        "-q",
        "-g",
        "0.5",
        "-r",
        str(SR),
        "-T",
        "wav",
        "-F",
        str(wav),
        str(soundfont),
        str(mid),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    audio, sr = sf.read(wav, dtype="float64", always_2d=True)
    if sr != SR:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, expected {SR}")
    mono = audio.mean(axis=1)
    for clip, off in zip(clips, offsets):
        a = round(off * SR)
        clip.audio = mono[a : a + round(clip.seconds * SR)].copy()


# ----------------------------------------------------------------------------- espeak-ng


def render_espeak(clip: Clip, rng: np.random.Generator, work: Path) -> None:
    accent = str(rng.choice(ESPEAK_ACCENTS))
    variant = str(rng.choice(ESPEAK_VARIANTS))
    rate, pitch, gap = (
        int(rng.integers(120, 221)),
        int(rng.integers(15, 86)),
        int(rng.integers(0, 6)),
    )
    n_words = max(3, round(clip.seconds * rate / 60 * 1.1))
    words = [str(w) for w in rng.choice(WORDS, n_words)]
    text = " ".join(words).capitalize() + "."
    wav = work / "speech.wav"
    cmd = [
        "espeak-ng",
        "-v",
        f"{accent}+{variant}",
        "-s",
        str(rate),
        "-p",
        str(pitch),
        "-g",
        str(gap),
        "-w",
        str(wav),
        text,
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    audio, sr = sf.read(wav, dtype="float64", always_2d=True)
    mono = audio.mean(axis=1)
    if sr != SR:
        mono = resample(torch.from_numpy(mono), sr, SR).numpy()
    n = round(clip.seconds * SR)
    lead = int(rng.integers(0, SR // 4))
    out = np.zeros(n)
    body = mono[: n - lead]
    out[lead : lead + len(body)] = body
    clip.audio = out
    clip.details.update(
        voice=f"{accent}+{variant}", rate=rate, pitch=pitch, gap=gap, words=len(words), text=text
    )


# ----------------------------------------------------------------------------- recordings


def load_recording(shared: Path, key: str) -> np.ndarray:
    """The recording(s) of ``key``: mono float64 at 22 050 Hz, several files joined by 0.3 s of
    silence."""
    parts = []
    for name in RECORDINGS[key][0]:
        wave, sr = load(shared / name)
        mono = wave.to(torch.float64).mean(dim=0)
        parts.append(resample(mono, sr, SR).numpy())
        parts.append(np.zeros(round(0.3 * SR)))
    return np.concatenate(parts[:-1])


def _speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Play ``x`` ``factor`` times faster (pitch moves with it): linear interpolation."""
    n = max(2, int(len(x) / factor))
    return np.interp(np.arange(n) * factor, np.arange(len(x)), x)


def active_end(x: np.ndarray, floor_db: float = -40.0) -> int:
    """Samples up to the last 50 ms window louder than ``floor_db`` dBFS RMS."""
    w = round(0.05 * SR)
    rms = np.sqrt(np.convolve(x**2, np.ones(w) / w, mode="same"))
    loud = np.nonzero(20 * np.log10(rms + 1e-12) > floor_db)[0]
    return int(loud[-1]) + 1 if len(loud) else len(x)


def crop_recording(clip: Clip, rec: np.ndarray, rng: np.random.Generator, short: bool) -> None:
    """A seeded crop of ``rec``: from the clip's split region (long recordings), or the whole
    sound placed 1-3 times at random (short ones), with speed and gain changes."""
    n = round(clip.seconds * SR)
    factor = float(rng.uniform(0.88, 1.12))
    if short:
        out = np.zeros(n)
        src = rec[: active_end(rec)]
        copies = int(rng.integers(1, 4))
        for _ in range(copies):
            piece = _speed(src, float(rng.uniform(0.88, 1.12))) * rng.uniform(0.4, 1.0)
            if len(piece) > n:
                a = int(rng.integers(0, len(piece) - n + 1))
                piece = piece[a : a + n]
            at = int(rng.integers(0, n - len(piece) + 1))
            out[at : at + len(piece)] += piece
        clip.audio = out
        clip.details.update(copies=copies)
        return
    lo, hi = (round(f * len(rec)) for f in REGIONS[clip.split])
    need = int(np.ceil(n * factor)) + 2
    if need > hi - lo:  # a split region shorter than the clip: shorten the clip
        need = hi - lo
        n = int((need - 2) / factor)
        clip.seconds = n / SR
    start = int(rng.integers(lo, hi - need + 1))
    clip.audio = _speed(rec[start : start + need], factor)[:n]
    clip.details.update(start_seconds=round(start / SR, 3), speed=round(factor, 4))


# --------------------------------------------------------------------------------- recipe


def plan(clips_per_class: int, seed: int) -> list[Clip]:
    """Every clip's class, id, source, split and duration (no audio yet)."""
    clips = []
    for k, (label, sources) in enumerate(CLASSES.items()):
        rng = np.random.default_rng([seed, k, 0])
        counts = [round(share * clips_per_class) for _, share in sources]
        counts[0] += clips_per_class - sum(counts)
        for (source, _), count in zip(sources, counts):
            n_valid, n_test = round(VALID_SHARE * count), round(TEST_SHARE * count)
            splits = (
                ["valid"] * n_valid + ["test"] * n_test + ["train"] * (count - n_valid - n_test)
            )
            splits = [splits[i] for i in rng.permutation(count)]
            name = source.split(":")[-1] if source.startswith("rec:") else source.split(":")[0]
            name = {"gm": "fluidsynth"}.get(name, name)
            for i, split in enumerate(splits):
                seconds = round(float(rng.uniform(MIN_SECONDS, MAX_SECONDS)), 2)
                clips.append(Clip(label, f"{name}_{i:04d}", split, source, seconds))
    return clips


def finish(clip: Clip, rng: np.random.Generator) -> np.ndarray:
    """Peak to a random level, a little white noise, 2 ms fades; float64 in [-1, 1]."""
    x = clip.audio
    assert x is not None
    peak = float(np.abs(x).max())
    if peak < 1e-6:
        raise RuntimeError(f"{clip.label}/{clip.clip_id}: silent clip")
    level = float(rng.uniform(0.25, 0.9))
    noise_db = float(rng.uniform(-70, -45))
    x = x / peak * level + rng.standard_normal(len(x)) * 10 ** (noise_db / 20)
    fade = round(0.002 * SR)
    ramp = np.linspace(0, 1, fade)
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    clip.details.update(peak=round(level, 3), noise_dbfs=round(noise_db, 1))
    return np.clip(x, -1, 1)


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(
            f"build_sfx_dataset: {cmd[0]} is needed ({e}); see docs/specvqgan_training.md"
        ) from None
    return out.strip().splitlines()[0]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build(out: Path, clips_per_class: int, seed: int, shared: Path, soundfont: Path) -> dict:
    """Make the dataset in a temporary folder beside ``out`` and move it into place."""
    versions = {
        "fluidsynth": tool_version(["fluidsynth", "--version"]),
        "espeak-ng": tool_version(["espeak-ng", "--version"]),
    }
    if not soundfont.is_file():
        raise SystemExit(
            f"build_sfx_dataset: no soundfont at {soundfont} (apt install fluid-soundfont-gm)"
        )
    for key, (files, _) in RECORDINGS.items():
        for name in files:
            if not (shared / name).is_file():
                raise SystemExit(f"build_sfx_dataset: missing {shared / name} (recording {key!r})")
    t0 = time.perf_counter()
    clips = plan(clips_per_class, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        work = tmp / ".work"
        work.mkdir()
        recordings = {key: load_recording(shared, key) for key in RECORDINGS}
        for k, label in enumerate(CLASSES):
            mine = [c for c in clips if c.label == label]
            rng = np.random.default_rng([seed, k, 1])
            gm = [c for c in mine if c.source.startswith("gm:")]
            if gm:
                render_gm(gm, soundfont, rng, work)
            for c in mine:
                if c.source == "espeak":
                    render_espeak(c, rng, work)
                elif c.source.startswith("rec:"):
                    key = c.source[4:]
                    crop_recording(c, recordings[key], rng, short=key in ("robin", "trumpet"))
            fin = np.random.default_rng([seed, k, 2])
            for c in mine:
                folder = tmp / label
                (folder / MEL_FOLDER).mkdir(parents=True, exist_ok=True)
                wav = folder / f"{c.clip_id}.wav"
                sf.write(wav, finish(c, fin), SR, subtype="PCM_16")
                c.seconds = round(sf.info(wav).frames / SR, 4)
                mel = mel_spectrogram(load_clip(wav)).to(torch.float32).numpy()
                np.save(folder / MEL_FOLDER / f"{c.clip_id}{MEL_SUFFIX}", mel)
                c.audio = None
            print(f"{label}: {len(mine)} clips", file=sys.stderr)
        shutil.rmtree(work)
        _write_lists(tmp, clips)
        counts = {
            s: {lab: sum(1 for c in clips if c.label == lab and c.split == s) for lab in CLASSES}
            for s in ("train", "valid", "test")
        }
        recipe = {
            "recipe": RECIPE,
            "version": RECIPE_VERSION,
            "seed": seed,
            "clips_per_class": clips_per_class,
            "sample_rate": SR,
            "classes": list(CLASSES),
            "sources": {k: [s for s, _ in v] for k, v in CLASSES.items()},
            "counts": counts,
            "tools": versions,
            "soundfont": {"path": str(soundfont), "sha256": sha256(soundfont)},
            "recordings": {
                name: sha256(shared / name) for files, _ in RECORDINGS.values() for name in files
            },
        }
        (tmp / "RECIPE.json").write_text(json.dumps(recipe, indent=1) + "\n")
        (tmp / "LICENSES.md").write_text(licences_text())
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    recipe["build_seconds"] = round(time.perf_counter() - t0, 1)  # printed, not stored
    return recipe


def _write_lists(root: Path, clips: list[Clip]) -> None:
    for split in ("train", "valid", "test"):
        rows = [f"{c.label}/{c.clip_id}" for c in clips if c.split == split]
        (root / f"vas_{split}.txt").write_text("".join(r + "\n" for r in rows))
    with open(root / "clips.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        for c in clips:
            w.writerow([f"{c.label}/{MEL_FOLDER}/{c.clip_id}{MEL_SUFFIX}", c.label, c.split])
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "class", "split", "source", "licence", "seconds", "details"])
        for c in clips:
            licence = (
                FLUID_LICENCE
                if c.source.startswith("gm:")
                else ESPEAK_LICENCE
                if c.source == "espeak"
                else RECORDINGS[c.source[4:]][1]
            )
            w.writerow(
                [
                    f"{c.label}/{c.clip_id}",
                    c.label,
                    c.split,
                    c.source,
                    licence,
                    c.seconds,
                    json.dumps(c.details, sort_keys=True),
                ]
            )


def licences_text() -> str:
    lines = [
        f"# {RECIPE} (recipe version {RECIPE_VERSION}): licences of the material",
        "",
        "Built by tools/build_sfx_dataset.py of audiorep. Per clip, manifest.csv names its source.",
        "",
        f'* `fluidsynth_*` clips: {FLUID_LICENCE}. FluidR3_GM: "I hereby release Fluid under the',
        '  MIT license" (Frank Wen; Debian package fluid-soundfont-gm).',
        f"* `espeak_*` clips: {ESPEAK_LICENCE}.",
        "* Crops of recordings from librosa/data (see ../shared/audio/README.md there):",
    ]
    for key, (files, licence) in RECORDINGS.items():
        lines.append(f"  * `{key}_*`: {', '.join(files)}: {licence}.")
    lines += [
        "",
        "Attribution for the CC BY recordings (required when redistributing clips or mels):",
        "",
        '* "Bird Whistling, Robin, Single, 13.wav" by InspectorJ,',
        "  https://freesound.org/people/InspectorJ/sounds/456440/, CC BY 3.0.",
        '* "Jazz Trumpet Loops Pack in F 90 bpm" (solo-trumpet-06) by Mihai Sorohan,',
        "  https://freesound.org/s/77711/, CC BY 3.0.",
        "* LibriSpeech SLR12 (https://www.openslr.org/12/), CC BY 4.0: 5703-47212-0000 (Garth",
        "  Comira), 3436-172162-0000 (Anders Lankford), 198-209-0000 (Heather Barnett).",
        "* Humpback whale song, Glacier Bay, NPS / Chris Gabriele: public domain.",
        "",
        "All clips are cropped, resampled, speed- and gain-changed, with added noise.",
        "",
    ]
    return "\n".join(lines)


def export_judge_fixture(train_dir: Path, dataset: Path, fixture: Path, training: dict) -> dict:
    """Copy a judge trained on sfx10 (``train_dir``: ``best.safetensors`` + ``best.json``) to
    ``fixture`` as ``judge.safetensors`` / ``judge.json`` (+ the dataset recipe and ``training``
    facts), and store held-out clips: per class, the first test-split clip (by id) of a
    synthetic or public-domain source that the judge classifies correctly, as a uint8 mel
    (``round(255 S)``) with its logits (of the dequantised mel) in ``heldout.npz``."""
    from audiorep.frontends.specvqgan import center_crop, normalize_for_judges
    from audiorep.specvqgan.classifier_training import (
        JudgeTrainConfig,
        judge_logits,
        load_trained_judge,
        save_judge,
    )

    model, info = load_trained_judge(train_dir / "best.safetensors")
    recipe = json.loads((dataset / "RECIPE.json").read_text())
    rows = list(csv.DictReader(open(dataset / "manifest.csv", newline="")))
    free = ("gm:", "espeak", "rec:humpback")  # no attribution needed for these
    picked, mels, logits = [], [], []
    for label in info["classes"]:
        for row in sorted(rows, key=lambda r: r["id"]):
            if (
                row["class"] != label
                or row["split"] != "test"
                or not row["source"].startswith(free)
            ):
                continue
            name = row["id"].split("/")[1]
            mel = np.load(dataset / label / MEL_FOLDER / f"{name}{MEL_SUFFIX}")
            q = np.round(mel * 255).astype(np.uint8)
            x = normalize_for_judges(center_crop(torch.from_numpy(q.astype(np.float32) / 255.0)))
            with torch.no_grad():
                z = judge_logits(model, x[None])[0]
            if info["classes"][int(z.argmax())] == label:
                picked.append(row["id"])
                mels.append(q)
                logits.append(z.numpy())
                break
    fixture.mkdir(parents=True, exist_ok=True)
    keep = {k: info[k] for k in ("epoch", "valid", "test", "parameters", "history") if k in info}
    keep["recipe"] = {
        "dataset": recipe["recipe"],
        "dataset_version": recipe["version"],
        "dataset_seed": recipe["seed"],
        "counts": recipe["counts"],
        "tools": recipe["tools"],
    }
    keep["training"] = training
    keep["heldout"] = picked
    save_judge(
        fixture / "judge.safetensors",
        model,
        info["classes"],
        JudgeTrainConfig.from_dict(info["config"]),
        keep,
    )
    np.savez_compressed(
        fixture / "heldout.npz",
        mel_uint8=np.stack(mels),
        labels=np.array([p.split("/")[0] for p in picked]),
        ids=np.array(picked),
        logits=np.stack(logits).astype(np.float32),
    )
    return keep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output folder, replaced if it exists (default {DEFAULT_OUT})",
    )
    p.add_argument("--clips-per-class", type=int, default=40)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument(
        "--shared-audio",
        type=Path,
        default=DEFAULT_SHARED,
        help=f"folder of the librosa-data recordings (default {DEFAULT_SHARED})",
    )
    p.add_argument("--soundfont", type=Path, default=DEFAULT_SOUNDFONT)
    p.add_argument(
        "--export-judge",
        type=Path,
        default=None,
        metavar="TRAIN_DIR",
        help="instead of building: copy the judge trained in TRAIN_DIR on the "
        "dataset OUT_DIR to --fixture-dir, with held-out clips",
    )
    p.add_argument("--fixture-dir", type=Path, default=None)
    p.add_argument("--training-facts", default="{}", help="JSON added to judge.json 'training'")
    args = p.parse_args(argv)
    if args.export_judge is not None:
        if args.fixture_dir is None:
            p.error("--export-judge needs --fixture-dir")
        keep = export_judge_fixture(
            args.export_judge, args.out_dir, args.fixture_dir, json.loads(args.training_facts)
        )
        print(f"wrote {args.fixture_dir}: held-out {keep['heldout']}")
        return 0
    if args.clips_per_class < 7:
        p.error("--clips-per-class must be >= 7 (every split needs clips of every class)")
    recipe = build(args.out_dir, args.clips_per_class, args.seed, args.shared_audio, args.soundfont)
    n = {s: sum(v.values()) for s, v in recipe["counts"].items()}
    print(
        f"wrote {args.out_dir}: {len(recipe['classes'])} classes, train {n['train']}, "
        f"valid {n['valid']}, test {n['test']} ({recipe['build_seconds']} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
