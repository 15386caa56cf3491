"""Throughput of the CNN14 and AST backbones next to VGGish, on CPU, batch 8, random weights.

Run with ``python benchmarks/bench_backbones.py [--threads 2] [--repeats 3] [--markdown PATH]``.
For each backbone it times a batch of 8 *examples* (the model's natural input unit):

* **VGGish**: one 0.96 s example = a ``(96, 64)`` log-mel patch (15 600 samples at 16 kHz);
* **CNN14** (PANNs ``Cnn14_16k``): one 10 s clip = ``(1, 1001, 64)`` log-mel;
* **AST** (AudioSet configuration): one 10.24 s clip = ``(1024, 128)`` normalised fbank
  (1022 real frames zero-padded to 1024, as AST does).

two ways: **model only** (features -> embedding) and **end to end** (16 kHz waveform ->
frontend -> embedding; VGGish's float64 reference frontend, the PANNs log-mel with the
torchlibrosa-exact ``conv`` DFT and with ``rfft``, AST's Kaldi fbank). Numbers are examples per
second and seconds of audio per second (best of ``--repeats`` timed calls after ``--warmup``
untimed ones, interleaved; medians are reported too). All models run eagerly in float32 under
``torch.inference_mode()`` with ``--threads`` torch threads. Weights are random (default
initialisation): the cost does not depend on their values, so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from audiorep.frontends.kaldi_fbank import ASTFrontend
from audiorep.frontends.panns import PannsLogmel
from audiorep.frontends.vggish import VGGishFrontend
from audiorep.models.ast import AST
from audiorep.models.cnn14 import Cnn14
from audiorep.models.vggish import VGGish

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import Timer  # noqa: E402  (benchmarks/ is on sys.path)

SAMPLE_RATE = 16000  # Hz
BATCH = 8


@dataclass
class Case:
    """One timed configuration and what one example of it holds."""

    backbone: str
    stage: str
    example: str
    example_seconds: float
    timer: Timer


def measure(timers: list[Timer], repeats: int, warmup: int) -> None:
    """Warm every timer up, then time them interleaved, rotating the order each repeat."""
    for t in timers:
        for _ in range(warmup):
            t.fn()
    for r in range(repeats):
        k = r % len(timers)
        for t in timers[k:] + timers[:k]:
            start = time.perf_counter()
            t.fn()
            t.times.append(time.perf_counter() - start)


def waveform(samples: int, gen: torch.Generator) -> torch.Tensor:
    """``(8, samples)`` float32 test audio at 16 kHz: harmonic tones + noise, peak < 1."""
    t = torch.arange(samples) / SAMPLE_RATE
    f0 = 100 + 300 * torch.rand(BATCH, 1, generator=gen)
    x = sum(torch.sin(2 * torch.pi * k * f0 * t) / k for k in range(1, 6)) * 0.1
    return (x + 0.01 * torch.randn(BATCH, samples, generator=gen)).float()


def build_cases(gen: torch.Generator) -> list[Case]:
    """The timed callables; models are built (random init) and put in eval mode here."""
    cases: list[Case] = []

    def add(backbone: str, stage: str, example: str, seconds: float, fn: Callable[[], object]):
        cases.append(Case(backbone, stage, example, seconds, Timer(f"{backbone} {stage}", fn)))

    # VGGish: 0.96 s examples. 15 600 samples give exactly one example per clip.
    vggish = VGGish().eval()
    vfe = VGGishFrontend()
    v_wave = waveform(15600, gen)
    v_feat = torch.randn(BATCH, 96, 64, generator=gen)

    def vggish_e2e() -> torch.Tensor:
        examples = vfe.frame_examples(vfe.log_mel(v_wave))[:, 0].float()
        return vggish(examples)

    add("VGGish", "model only", "0.96 s (96 x 64)", 0.96, lambda: vggish(v_feat))
    add("VGGish", "end to end (float64 frontend)", "0.96 s (96 x 64)", 0.96, vggish_e2e)

    # CNN14: 10 s clips -> 1001 frames.
    cnn14 = Cnn14().eval()
    c_wave = waveform(160000, gen)
    conv_fe, rfft_fe = PannsLogmel(method="conv"), PannsLogmel(method="rfft")
    c_feat = conv_fe(c_wave)
    add("CNN14", "model only", "10 s (1001 x 64)", 10.0, lambda: cnn14(c_feat))
    add("CNN14", "end to end (conv DFT)", "10 s (1001 x 64)", 10.0, lambda: cnn14(conv_fe(c_wave)))
    add("CNN14", "end to end (rfft)", "10 s (1001 x 64)", 10.0, lambda: cnn14(rfft_fe(c_wave)))

    # AST: 10.24 s clips -> 1022 frames, padded to 1024.
    ast = AST().eval()
    a_wave = waveform(163840, gen)
    a_fe = ASTFrontend()
    a_feat = a_fe(a_wave)
    add("AST", "model only", "10.24 s (1024 x 128)", 10.24, lambda: ast(a_feat))
    add("AST", "end to end", "10.24 s (1024 x 128)", 10.24, lambda: ast(a_fe(a_wave)))
    return cases


def markdown(cases: list[Case], threads: int, repeats: int) -> str:
    lines = [
        f"Batch {BATCH}, {threads} CPU thread(s), float32 eager, best of {repeats} "
        f"(median in brackets); torch {torch.__version__}, {platform.machine()}, "
        f"audiorep {importlib.metadata.version('audiorep')}.",
        "",
        "| backbone | example | stage | ms / batch | examples / s | audio s / s |",
        "|---|---|---|---:|---:|---:|",
    ]
    for c in cases:
        best, med = c.timer.best, c.timer.median
        lines.append(
            f"| {c.backbone} | {c.example} | {c.stage} | {best * 1e3:.0f} ({med * 1e3:.0f}) "
            f"| {BATCH / best:.1f} ({BATCH / med:.1f}) "
            f"| {BATCH * c.example_seconds / best:.1f} ({BATCH * c.example_seconds / med:.1f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per case first")
    parser.add_argument("--only", nargs="*", default=None, help="backbones to run (e.g. AST)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        cases = build_cases(gen)
        if args.only:
            wanted = {name.lower() for name in args.only}
            cases = [c for c in cases if c.backbone.lower() in wanted]
        measure([c.timer for c in cases], args.repeats, args.warmup)
    table = markdown(cases, args.threads, args.repeats)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
