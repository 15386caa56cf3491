"""Train a tiny speech enhancer with the VGGish deep feature loss (DFL) or plain MSE.

Everything is synthesised locally, so the example runs offline in a few minutes on 2 CPU
threads:

* **clean speech**: English sentences spoken by ``espeak-ng`` with several voices, variants,
  speeds and pitches (``espeak-ng -w`` to a temporary 22.05 kHz WAV, resampled to 16 kHz with
  :func:`audiorep.resample.resample`). Training and held-out sets use disjoint sentences;
* **noise**: white, pink, babble-like (a sum of 3-5 other speech crops) or a random mixture of
  the three, added at a uniformly drawn 0-10 dB SNR to 1 s (16000-sample) segments;
* **enhancer**: a mask-based STFT net (~0.45 M parameters): log-magnitude of a 512-point STFT
  -> dilated 1-D convolutions over time -> sigmoid mask -> inverse STFT;
* **losses**: ``mse`` (waveform mean squared error), ``dfl`` (:class:`audiorep.losses.VGGishDFL`)
  or ``dfl+mse`` (the DFL plus ``--mse-weight`` x the waveform MSE normalised by the clean
  energy, the common practice). By default ``mse`` and ``dfl`` are trained back to back from
  the same initialisation on the same batches, then compared on the held-out set (SI-SDR and
  its improvement over the noisy input, held-out MSE and DFL).

The DFL uses pretrained VGGish weights when they are available (``--weights PATH`` or the
audiorep cache). Otherwise it says so and uses seeded random weights: the loss is then a
*random-feature* loss, and its results say nothing about the benefit of the real DFL.

Usage::

    python examples/train_enhancer_dfl.py                     # mse vs dfl, default settings
    python examples/train_enhancer_dfl.py --loss dfl+mse --steps 300 --out enh_out
    python examples/train_enhancer_dfl.py --weights vggish.safetensors

Runs are deterministic for a given ``--seed`` and ``--threads``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

import audiorep
from audiorep.losses import VGGishDFL
from audiorep.pipelines import WeightsUnavailableError
from audiorep.resample import resample

SAMPLE_RATE = 16000  # Hz, the rate VGGish (and the DFL) works at
SEGMENT = 16000  # samples per training/evaluation segment (1 s)
LOSSES = ("mse", "dfl", "dfl+mse")

TRAIN_SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A large size in stockings is hard to sell.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "The small pup gnawed a hole in the sock.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
    "Wipe the grease off his dirty face.",
    "Mend the coat before you go out.",
    "The wrist was badly strained and hung limp.",
    "The stray cat gave birth to kittens.",
)
TEST_SENTENCES = (
    "We talked about the weather for nearly an hour before the train arrived.",
    "A cold wind blew across the empty harbour all night long.",
    "Seven bright lamps lit the narrow path to the old garden gate.",
    "My neighbour repaired the broken fence with wire and nails.",
    "Numbers written on the board were copied by every student.",
    "The museum closes early on Sundays during the winter.",
)
# (voice+variant, words per minute, pitch 0-99)
TRAIN_VOICES = (
    ("en-us+m1", 150, 45),
    ("en-gb+f2", 170, 60),
    ("en-gb-scotland+m3", 135, 40),
    ("en-029+f4", 185, 55),
    ("en-us-nyc+m5", 160, 35),
    ("en-gb-x-rp+f1", 145, 65),
)
TEST_VOICES = (
    ("en-us+f3", 155, 58),
    ("en-gb+m7", 165, 42),
    ("en-gb-x-rp+m2", 140, 50),
)


# --------------------------------------------------------------------------- data


def _require_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit(
            "error: this example synthesises its speech with espeak-ng, which was not found on "
            "PATH. Install it (Debian/Ubuntu: `sudo apt-get install espeak-ng`, macOS: "
            "`brew install espeak-ng`) and run again."
        )
    return exe


def synthesise(exe: str, text: str, voice: str, wpm: int, pitch: int, workdir: Path) -> np.ndarray:
    """Speak ``text`` with espeak-ng; float32 ``(samples,)`` at 16 kHz, silence trimmed."""
    wav = workdir / "utterance.wav"
    cmd = [exe, "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(wav), text]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not wav.exists():
        raise SystemExit(f"error: espeak-ng failed ({' '.join(cmd[:7])}): {proc.stderr.strip()}")
    audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    x = torch.from_numpy(audio.mean(axis=1))
    if rate != SAMPLE_RATE:
        x = resample(x, int(rate), SAMPLE_RATE)
    x = x.numpy()
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
    return x[loud[0] : loud[-1] + 1] if loud.size else x


def speech_stream(exe: str, sentences, voices, workdir: Path) -> np.ndarray:
    """All sentences x voices, each normalised to unit RMS and joined by 50 ms gaps.

    Returns float32 ``(samples,)`` at 16 kHz.
    """
    gap = np.zeros(SAMPLE_RATE // 20, dtype=np.float32)
    parts = []
    for i, text in enumerate(sentences):
        for j, (voice, wpm, pitch) in enumerate(voices):
            # vary each voice's speed by -7, 0 or +7 words per minute across sentences
            x = synthesise(exe, text, voice, wpm + 7 * ((i + j) % 3 - 1), pitch, workdir)
            parts += [x / (np.sqrt(np.mean(x**2)) + 1e-8), gap]
    return np.concatenate(parts).astype(np.float32)


def _crops(stream: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random 1 s crops of a 1-D stream: ``(n, SEGMENT)``."""
    starts = torch.randint(0, stream.numel() - SEGMENT, (n,), generator=gen)
    return torch.stack([stream[s : s + SEGMENT] for s in starts.tolist()])


def _coloured(n: int, gen: torch.Generator, exponent: float) -> torch.Tensor:
    """``(n, SEGMENT)`` Gaussian noise with power spectrum ~ ``1 / f**exponent``.

    Coloured noise (``exponent > 0``) is band-limited to >= 20 Hz: no DC or infrasound, which
    would otherwise hold a third of pink noise's energy.
    """
    white = torch.randn(n, SEGMENT, generator=gen)
    if exponent == 0:
        return white
    spec = torch.fft.rfft(white)
    f = torch.fft.rfftfreq(SEGMENT, 1.0 / SAMPLE_RATE)
    gain = torch.where(f >= 20.0, f.clamp(min=20.0) ** (-exponent / 2), torch.zeros_like(f))
    return torch.fft.irfft(spec * gain, n=SEGMENT)


def _unit_rms(x: torch.Tensor) -> torch.Tensor:
    return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + 1e-8)


@dataclass
class Batch:
    """Noisy/clean pairs, float32 ``(batch, 16000)`` at 16 kHz, and per-item metadata."""

    noisy: torch.Tensor
    clean: torch.Tensor
    snr_db: torch.Tensor  # (batch,)
    noise_kind: list[str] = field(default_factory=list)


NOISE_KINDS = ("white", "pink", "babble", "mixture")


def make_batch(stream: torch.Tensor, n: int, gen: torch.Generator) -> Batch:
    """``n`` noisy mixtures of 1 s speech crops from ``stream`` (1-D float32, 16 kHz).

    Clean level: -30 to -15 dBFS RMS. Noise: white, pink, babble (3-5 other crops of the same
    stream) or a random mixture of the three, at a uniform 0-10 dB SNR.
    """
    clean = _unit_rms(_crops(stream, n, gen))
    level_db = -30.0 + 15.0 * torch.rand(n, 1, generator=gen)
    clean = clean * 10 ** (level_db / 20)
    white = _unit_rms(_coloured(n, gen, 0.0))
    pink = _unit_rms(_coloured(n, gen, 1.0))
    talkers = torch.randint(3, 6, (n,), generator=gen)
    babble = _crops(stream, 5 * n, gen).reshape(n, 5, SEGMENT)
    mask = (torch.arange(5)[None, :] < talkers[:, None]).float()
    babble = _unit_rms((babble * mask[..., None]).sum(1))
    kinds = torch.randint(0, len(NOISE_KINDS), (n,), generator=gen)
    mix_w = torch.rand(n, 3, generator=gen)
    one_hot = nn.functional.one_hot(kinds.clamp(max=2), 3).float()
    weights = torch.where((kinds == 3)[:, None], mix_w / mix_w.sum(1, keepdim=True), one_hot)
    noise = _unit_rms(weights[:, :1] * white + weights[:, 1:2] * pink + weights[:, 2:] * babble)
    snr_db = 10.0 * torch.rand(n, generator=gen)
    clean_rms = clean.pow(2).mean(-1, keepdim=True).sqrt()
    noise = noise * clean_rms * 10 ** (-snr_db[:, None] / 20)
    noisy = clean + noise
    return Batch(noisy, clean, snr_db, [NOISE_KINDS[k] for k in kinds.tolist()])


# --------------------------------------------------------------------------- model


class MaskEnhancer(nn.Module):
    """Mask-based STFT enhancer: ``(batch, samples)`` -> ``(batch, samples)``, 16 kHz.

    512-point STFT (32 ms periodic Hann window, 8 ms hop). The input is the log-magnitude
    ``(batch, 257, frames)``, standardised per item (zero mean, unit variance); a 1x5
    convolution, ``blocks`` residual dilated convolutions (dilations 1, 2, 4, ...) and a 1x1
    output layer predict a sigmoid mask ``(batch, 257, frames)`` that multiplies the complex
    STFT before the inverse STFT.
    """

    def __init__(self, channels: int = 128, blocks: int = 3, n_fft: int = 512, hop: int = 128):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.inp = nn.Conv1d(bins, channels, 5, padding=2)
        self.blocks = nn.ModuleList(
            nn.Conv1d(channels, channels, 5, padding=2 * 2**i, dilation=2**i) for i in range(blocks)
        )
        self.out = nn.Conv1d(channels, bins, 1)
        nn.init.constant_(self.out.bias, 1.0)  # start near "pass everything" (mask ~0.73)

    def stft(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` -> complex ``(B, 257, frames)``, ``frames = 1 + S // hop`` (centred)."""
        return torch.stft(waveform, self.n_fft, self.hop, window=self.window, return_complex=True)

    def mask(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``(B, 257, T)`` -> mask in (0, 1), ``(B, 257, T)``."""
        feat = torch.log(spec.abs() + 1e-5)
        mean, std = feat.mean(dim=(1, 2), keepdim=True), feat.std(dim=(1, 2), keepdim=True)
        h = torch.relu(self.inp((feat - mean) / (std + 1e-5)))
        for block in self.blocks:
            h = h + torch.relu(block(h))
        return torch.sigmoid(self.out(h))

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Noisy ``(B, S)`` -> enhanced ``(B, S)`` waveform, same scale (16 kHz)."""
        spec = self.stft(noisy)
        return torch.istft(
            spec * self.mask(spec), self.n_fft, self.hop, window=self.window, length=noisy.shape[-1]
        )


# --------------------------------------------------------------------------- losses, metrics


def si_sdr(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB, ``(batch, samples)`` x 2 -> ``(batch,)`` (zero-mean)."""
    est = estimate - estimate.mean(-1, keepdim=True)
    tgt = target - target.mean(-1, keepdim=True)
    alpha = (est * tgt).sum(-1, keepdim=True) / (tgt.pow(2).sum(-1, keepdim=True) + 1e-12)
    proj = alpha * tgt
    return 10 * torch.log10(proj.pow(2).sum(-1) / ((est - proj).pow(2).sum(-1) + 1e-12) + 1e-12)


def make_loss(name: str, dfl: VGGishDFL, mse_weight: float):
    """``(estimate, clean) -> scalar`` for ``name`` in :data:`LOSSES`; waveforms ``(B, S)``."""
    if name == "mse":
        return lambda est, ref: nn.functional.mse_loss(est, ref)
    if name == "dfl":
        return dfl

    def dfl_plus_mse(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        nmse = (est - ref).pow(2).sum() / (ref.pow(2).sum() + 1e-9)
        return dfl(est, ref) + mse_weight * nmse

    return dfl_plus_mse


@dataclass
class RunResult:
    """Outcome of training with one loss; metrics are means over the held-out set."""

    loss: str
    seconds: float
    curve: list[tuple[int, float]]  # (step, training loss): step 1, then window means
    own_init: float  # held-out value of the training loss before training
    own_final: float  # ... and after
    test_mse: float
    test_dfl: float
    si_sdr: float
    si_sdri: float
    saturated: float  # fraction of held-out mask values < 0.02 or > 0.98
    enhanced: torch.Tensor


@torch.no_grad()
def evaluate(
    model: MaskEnhancer, test: Batch, dfl: VGGishDFL, loss_fn
) -> tuple[torch.Tensor, dict]:
    """Enhance the held-out set; return ``(N, 16000)`` outputs and mean metrics."""
    model.eval()
    enhanced = torch.cat([model(x) for x in test.noisy.split(16)])
    mask = torch.cat([model.mask(model.stft(x)) for x in test.noisy.split(16)])
    model.train()
    return enhanced, {
        "own": float(loss_fn(enhanced, test.clean)),
        "test_mse": float(nn.functional.mse_loss(enhanced, test.clean)),
        "test_dfl": float(dfl(enhanced, test.clean)),
        "si_sdr": float(si_sdr(enhanced, test.clean).mean()),
        "saturated": float(((mask < 0.02) | (mask > 0.98)).float().mean()),
    }


def train(
    name: str, args, stream: torch.Tensor, test: Batch, dfl: VGGishDFL, noisy_sdr: float
) -> RunResult:
    """Train a fresh :class:`MaskEnhancer` with loss ``name``; same init and data for every loss."""
    torch.manual_seed(args.seed)
    model = MaskEnhancer()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = make_loss(name, dfl, args.mse_weight)
    _, init = evaluate(model, test, dfl, loss_fn)
    gen = torch.Generator().manual_seed(args.seed + 1)
    log_every = max(1, args.steps // 10)
    curve, window = [], []
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        batch = make_batch(stream, args.batch_size, gen)
        loss = loss_fn(model(batch.noisy), batch.clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        window.append(loss.item())
        if step == 1 or step % log_every == 0 or step == args.steps:
            curve.append((step, float(np.mean(window))))
            what = "train loss" if step == 1 else f"train loss, mean of last {len(window)}"
            print(
                f"  [{name:7s}] step {step:4d}/{args.steps}  {what}: {curve[-1][1]:.4g}"
                f"  ({time.perf_counter() - start:5.1f} s)",
                flush=True,
            )
            window = []
    seconds = time.perf_counter() - start
    enhanced, m = evaluate(model, test, dfl, loss_fn)
    print(
        f"  [{name:7s}] held-out {name} loss {init['own']:.4g} -> {m['own']:.4g}; "
        f"{100 * m['saturated']:.0f}% of mask values < 0.02 or > 0.98"
    )
    return RunResult(
        name,
        seconds,
        curve,
        init["own"],
        m["own"],
        m["test_mse"],
        m["test_dfl"],
        m["si_sdr"],
        m["si_sdr"] - noisy_sdr,
        m["saturated"],
        enhanced,
    )


# --------------------------------------------------------------------------- main


def load_vggish(weights: str | None, seed: int):
    """``(bundle, pretrained)``: ``--weights``, else cached weights, else seeded random."""
    if weights:
        bundle = audiorep.load("vggish", weights=weights, seed=seed)
        return bundle, bundle.pretrained
    try:
        return audiorep.load("vggish"), True  # cached pretrained weights; never downloads
    except WeightsUnavailableError as exc:
        print(f"[dfl] no pretrained VGGish weights: {exc}")
    print("[dfl] => using SEEDED RANDOM VGGish weights: the DFL below is a random-feature loss.")
    return audiorep.load("vggish", weights="random", seed=seed), False


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Train a tiny speech enhancer with the VGGish DFL vs MSE on synthetic speech.",
    )
    p.add_argument(
        "--loss",
        default="mse,dfl",
        help=f"comma-separated losses to train, from {', '.join(LOSSES)} (default: mse,dfl)",
    )
    p.add_argument("--steps", type=int, default=240, help="training steps per loss")
    p.add_argument("--batch-size", type=int, default=8, help="1 s segments per step")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument(
        "--mse-weight",
        type=float,
        default=0.1,
        help="weight of the energy-normalised MSE term in dfl+mse",
    )
    p.add_argument(
        "--flavour",
        choices=("default", "vggishdfl"),
        default="default",
        help="DFL flavour: audiorep's default or the vggishdfl-compatible one",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="VGGish weights (path or registry name, 'random' for seeded random); "
        "default: cached pretrained weights, else seeded random",
    )
    p.add_argument("--test-items", type=int, default=48, help="held-out 1 s segments")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default=None, help="folder for example WAVs (noisy/clean/enhanced)")
    p.add_argument("--save-examples", type=int, default=4, help="held-out items saved to --out")
    args = p.parse_args(argv)
    args.losses = [s.strip() for s in args.loss.split(",") if s.strip()]
    bad = [s for s in args.losses if s not in LOSSES]
    if bad or not args.losses:
        p.error(f"--loss: unknown {bad}; choose from {', '.join(LOSSES)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    exe = _require_espeak()
    t0 = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        train_stream = torch.from_numpy(
            speech_stream(exe, TRAIN_SENTENCES, TRAIN_VOICES, Path(tmp))
        )
        test_stream = torch.from_numpy(speech_stream(exe, TEST_SENTENCES, TEST_VOICES, Path(tmp)))
    print(
        f"[data] espeak-ng speech: train {train_stream.numel() / SAMPLE_RATE:.0f} s "
        f"({len(TRAIN_SENTENCES)} sentences x {len(TRAIN_VOICES)} voices), held-out "
        f"{test_stream.numel() / SAMPLE_RATE:.0f} s ({len(TEST_SENTENCES)} other sentences x "
        f"{len(TEST_VOICES)} other voices); synthesised in {time.perf_counter() - t0:.1f} s"
    )
    test = make_batch(test_stream, args.test_items, torch.Generator().manual_seed(args.seed + 2))
    noisy_sdr = float(si_sdr(test.noisy, test.clean).mean())

    bundle, pretrained = load_vggish(args.weights, args.seed)
    if args.flavour == "vggishdfl":
        dfl = VGGishDFL.vggishdfl_compatible(bundle.model, bundle.postprocessor)
    else:
        dfl = VGGishDFL(bundle.model)
    dfl.eval()
    label = "pretrained" if pretrained else "RANDOM (not pretrained)"
    print(f"[dfl] VGGish weights: {bundle.weights_description} -> {label}; flavour {args.flavour}")
    with torch.no_grad():
        noisy_metrics = {
            "test_mse": float(nn.functional.mse_loss(test.noisy, test.clean)),
            "test_dfl": float(dfl(test.noisy, test.clean)),
        }
    n_params = sum(p.numel() for p in MaskEnhancer().parameters())
    print(
        f"[model] MaskEnhancer, {n_params / 1e6:.2f} M parameters; {args.steps} steps x "
        f"{args.batch_size} x 1 s per loss; {args.threads} threads; seed {args.seed}"
    )

    results = []
    for name in args.losses:
        print(f"[train] loss = {name}")
        results.append(train(name, args, train_stream, test, dfl, noisy_sdr))

    print()
    print(
        f"Held-out set: {args.test_items} x 1 s, noise {'/'.join(NOISE_KINDS)}, SNR 0-10 dB. "
        f"VGGish weights: {label}."
    )
    header = (
        f"| {'trained with':13s} | {'held-out loss init -> trained':>29s} | {'time s':>6s} "
        f"| {'test MSE':>9s} | {'test DFL':>8s} | {'SI-SDR dB':>9s} | {'SI-SDRi dB':>10s} |"
    )
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    print(
        f"| {'(noisy input)':13s} | {'':>29s} | {'':>6s} | {noisy_metrics['test_mse']:9.3g} "
        f"| {noisy_metrics['test_dfl']:8.4f} | {noisy_sdr:9.2f} | {0.0:10.2f} |"
    )
    for r in results:
        own = f"{r.own_init:.4g} -> {r.own_final:.4g}"
        print(
            f"| {r.loss:13s} | {own:>29s} | {r.seconds:6.1f} | {r.test_mse:9.3g} "
            f"| {r.test_dfl:8.4f} | {r.si_sdr:9.2f} | {r.si_sdri:10.2f} |"
        )
    if not pretrained:
        print(
            "NOTE: the DFL used RANDOM VGGish weights (no pretrained weights available), i.e. a "
            "random-feature loss. These numbers do not show the real DFL's benefit; pass "
            "--weights PATH (or `audiorep weights download vggish-torchvggish`) for that."
        )

    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for i in range(min(args.save_examples, args.test_items)):
            tag = f"{i:02d}_{test.noise_kind[i]}_{test.snr_db[i]:.0f}dB"
            sf.write(out / f"{tag}_noisy.wav", test.noisy[i].numpy(), SAMPLE_RATE)
            sf.write(out / f"{tag}_clean.wav", test.clean[i].numpy(), SAMPLE_RATE)
            for r in results:
                safe = r.loss.replace("+", "_")
                sf.write(out / f"{tag}_enh_{safe}.wav", r.enhanced[i].numpy(), SAMPLE_RATE)
        print(f"[out] wrote {min(args.save_examples, args.test_items)} held-out examples to {out}")
    print(f"[done] total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
