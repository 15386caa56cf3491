"""Codec quality table: our small codec + vocoder vs Griffin-Lim vs Lyra / SoundStream at 3 kbps.

Run with ``python benchmarks/codec_quality.py [--clips DIR] [--heldout LIST] [--codec small]
[--vocoder small] [--markdown PATH] [--json PATH]``.

* ``--clips``: the authors' codec comparison clips, ``<clip>/{original,lyra_3.0kbps,
  soundstream_3.0kbps}.wav`` (24 kHz; default ../shared/specvqgan_samples/neural_audio_codec);
* ``--heldout``: a corpus list file of held-out recordings (tools/codec_corpus_lists.py), cut
  into clips of at most 10 s.

Every signal is compared with its original at 22 050 Hz (resampled exactly):

* **mel L1**: mean |S - S_ref| of the authors' [0, 1] mel spectrograms (the codec's own scale);
* **MR-STFT**: the multi-resolution STFT distance of Parallel WaveGAN (Yamamoto et al. 2020):
  spectral convergence + mean |log |X| - log |X_ref||, averaged over (FFT, hop, window) =
  (1024, 120, 600), (2048, 240, 1200), (512, 50, 240);
* **STOI** (pystoi) and **wide-band PESQ** (pesq, at 16 kHz) on the speech clips, when those
  packages are installed.

Lyra and SoundStream outputs are aligned to the original first (the lag of the
cross-correlation peak within +-50 ms; the shift is reported). Systems: the shipped 3 kbps
reconstructions; Griffin-Lim and our vocoder from the true mel (no coding: what the mel
representation and the vocoder alone lose); our codec with our vocoder and with Griffin-Lim.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
from pathlib import Path

import numpy as np
import torch

from audiorep.audio import load
from audiorep.frontends.specvqgan import SAMPLE_RATE, mel_spectrogram
from audiorep.resample import resample
from audiorep.specvqgan.audio_corpus import AudioCorpus
from audiorep.specvqgan.codec import bitrate_kbps, decode_codes, encode_mel, mel_to_audio
from audiorep.specvqgan.codec_models import load_codec, load_vocoder

RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))
SHARED = Path(__file__).resolve().parents[2] / "shared"


def at_22k(path: Path) -> np.ndarray:
    wave, sr = load(path)
    mono = wave.to(torch.float64).mean(dim=0)
    return resample(mono, sr, SAMPLE_RATE).numpy() if sr != SAMPLE_RATE else mono.numpy()


def mel(x: np.ndarray) -> torch.Tensor:
    return mel_spectrogram(torch.from_numpy(np.asarray(x, dtype=np.float64)), None, max_frames=None)


def mel_l1(x: np.ndarray, ref: np.ndarray) -> float:
    a, b = mel(x), mel(ref)
    n = min(a.shape[-1], b.shape[-1])
    return float((a[:, :n] - b[:, :n]).abs().mean())


def mrstft(x: np.ndarray, ref: np.ndarray) -> float:
    n = min(len(x), len(ref))
    xt, rt = torch.from_numpy(x[:n]).double(), torch.from_numpy(ref[:n]).double()
    total = 0.0
    for fft, hop, win in RESOLUTIONS:
        window = torch.hann_window(win, dtype=torch.float64)
        kw = {"n_fft": fft, "hop_length": hop, "win_length": win, "window": window,
              "return_complex": True}  # fmt: skip
        mx = torch.stft(xt, **kw).abs().clamp(min=1e-7)
        mr = torch.stft(rt, **kw).abs().clamp(min=1e-7)
        sc = torch.linalg.norm(mr - mx) / torch.linalg.norm(mr)
        mag = (mx.log() - mr.log()).abs().mean()
        total += float(sc + mag)
    return total / len(RESOLUTIONS)


def align(x: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[np.ndarray, int]:
    """``x`` shifted by the lag (samples, positive = x is late) that best matches ``ref``."""
    n = min(len(x), len(ref))
    best, lag = -math.inf, 0
    for k in range(-max_lag, max_lag + 1):
        a = x[max(k, 0) : n + min(k, 0)]
        b = ref[max(-k, 0) : n - max(k, 0)]
        m = min(len(a), len(b))
        c = float(np.dot(a[:m], b[:m]))
        if c > best:
            best, lag = c, k
    shifted = x[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag), x])
    return shifted, lag


def speech_scores(x: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    n = min(len(x), len(ref))
    try:
        from pystoi import stoi

        out["stoi"] = float(stoi(ref[:n], x[:n], SAMPLE_RATE, extended=False))
    except ImportError:
        pass
    try:
        from pesq import pesq

        r16 = resample(torch.from_numpy(ref[:n]), SAMPLE_RATE, 16000).numpy()
        x16 = resample(torch.from_numpy(x[:n]), SAMPLE_RATE, 16000).numpy()
        out["pesq_wb"] = float(pesq(16000, r16, x16, "wb"))
    except ImportError:
        pass
    except Exception as exc:  # pesq raises on silence / too short
        out["pesq_error"] = str(exc)[:60]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--clips", type=Path, default=SHARED / "specvqgan_samples" / "neural_audio_codec"
    )
    p.add_argument("--heldout", type=Path, default=None)
    p.add_argument("--heldout-clips", type=int, default=12, help="held-out clips used")
    p.add_argument("--codec", default="small")
    p.add_argument("--vocoder", default="small")
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    codec, codec_name = load_codec(args.codec)
    vocoder, vocoder_name = load_vocoder(args.vocoder)
    n_codes = codec.config.n_embed

    items: list[tuple[str, np.ndarray, dict[str, np.ndarray]]] = []
    for folder in sorted(d for d in args.clips.iterdir() if (d / "original.wav").is_file()):
        ref = at_22k(folder / "original.wav")
        others = {}
        for name, label in (
            ("lyra_3.0kbps", "Lyra 3 kbps"),
            ("soundstream_3.0kbps", "SoundStream 3 kbps"),
        ):
            if (folder / f"{name}.wav").is_file():
                others[label] = at_22k(folder / f"{name}.wav")
        items.append((folder.name, ref, others))
    if args.heldout:
        corpus = AudioCorpus.from_source(args.heldout)
        step = max(1, len(corpus) // args.heldout_clips)
        for rec in corpus.recordings[::step][: args.heldout_clips]:
            wave = rec.waveform.double().numpy()[: 10 * SAMPLE_RATE]
            items.append((f"heldout:{Path(rec.name.split('[')[0]).stem}", wave, {}))

    rows = []
    for name, ref, others in items:
        seconds = len(ref) / SAMPLE_RATE
        true_mel = mel(ref).float()
        systems: dict[str, tuple[np.ndarray, float | None, int | None]] = {}
        for label, x in others.items():
            shifted, lag = align(x, ref, int(0.05 * SAMPLE_RATE))
            systems[label] = (shifted, 3.0, lag)
        systems["Griffin-Lim (true mel)"] = (
            mel_to_audio(true_mel, None).double().numpy(),
            None,
            None,
        )
        if vocoder is not None:
            systems["our MelGAN (true mel)"] = (
                mel_to_audio(true_mel, vocoder).double().numpy(),
                None,
                None,
            )
        codes = encode_mel(codec, true_mel)
        rebuilt = decode_codes(codec, codes, true_mel.shape[-1])
        kbps = bitrate_kbps(n_codes, codes.numel(), seconds)
        if vocoder is not None:
            systems["our codec + MelGAN"] = (
                mel_to_audio(rebuilt, vocoder).double().numpy(),
                kbps,
                None,
            )
        systems["our codec + Griffin-Lim"] = (
            mel_to_audio(rebuilt, None).double().numpy(),
            kbps,
            None,
        )
        speech = "speech" in name or "heldout:espeak" in name or "heldout:libri" in name
        for label, (x, rate, lag) in systems.items():
            row = {"clip": name, "system": label, "kbps": rate, "lag_samples": lag,
                   "mel_l1": mel_l1(x, ref), "mrstft": mrstft(x, ref)}  # fmt: skip
            if speech:
                row.update(speech_scores(x, ref))
            rows.append(row)
        print(name, f"{seconds:.2f} s", flush=True)

    systems_order = list(dict.fromkeys(r["system"] for r in rows))
    held = [r for r in rows if r["clip"].startswith("heldout:")]
    groups = {"codec clips": [r for r in rows if r not in held], "held-out audio": held}
    n_params = sum(p.numel() for p in codec.parameters()) / 1e6
    lines = [
        f"codec `{codec_name}` ({n_codes} codes, {n_params:.2f} M "
        f"parameters), vocoder `{vocoder_name}`; {platform.processor() or platform.machine()}",
        "",
    ]
    for group, rs in groups.items():
        if not rs:
            continue
        clips = sorted({r["clip"] for r in rs})
        lines += [f"**{group}** ({len(clips)} clips; means)", "",
                  "| system | kbps | mel L1 | MR-STFT | STOI (speech) | PESQ-WB (speech) |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for s in systems_order:
            sel = [r for r in rs if r["system"] == s]
            if not sel:
                continue

            def mean(key: str, sel: list[dict] = sel) -> str:
                vals = [r[key] for r in sel if isinstance(r.get(key), float)]
                return f"{np.mean(vals):.3f}" if vals else "-"

            rates = [r["kbps"] for r in sel if r["kbps"] is not None]
            kb = f"{np.mean(rates):.3f}" if rates else "(mel)"
            cells = [s, kb, *(mean(k) for k in ("mel_l1", "mrstft", "stoi", "pesq_wb"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
