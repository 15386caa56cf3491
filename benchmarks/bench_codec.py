"""Codec and vocoder throughput: seconds of audio processed per second, on CPU (or --device).

Run with ``python benchmarks/bench_codec.py [--threads 2] [--seconds 10] [--repeats 3]
[--device cpu] [--markdown PATH]``. Models with random weights (speed does not depend on the
values):

* the authors' full-size codec (VAS config: 71.9 M parameters, attention at the 5 x 53
  latent) and the small shipped layout (1.4 M), on one ``--seconds`` mel (848 frames per
  9.85 s): ``encode_to_codes`` and ``decode_codes`` separately, batch 1;
* MelGAN at the released size (ngf 32, 4.27 M parameters) and at ngf 16, vocoding the same mel;
* Griffin-Lim (64 iterations), for reference.

The authors' own modules need their repository and PyTorch-Lightning, which are not
installed here; ours reproduce their outputs (tests/test_vqgan.py, tests/test_melgan.py), so
these numbers are the same arithmetic. Best of ``--repeats`` after one warm-up call.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from audiorep.models.melgan import MelGANConfig, MelGANGenerator
from audiorep.models.vqgan import SpectrogramVQGAN, VQGANConfig
from audiorep.specvqgan.griffin_lim import griffin_lim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import Timer  # noqa: E402  (benchmarks/ is on sys.path)

SMALL = VQGANConfig(ch=32, ch_mult=(1, 1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(),
                    z_channels=64, embed_dim=64, n_embed=128)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=9.85)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    frames = int(round(args.seconds * 22050 / 256)) // 16 * 16
    audio_seconds = frames * 256 / 22050
    torch.manual_seed(0)
    mel = torch.rand(80, frames, device=dev)
    x = (2 * mel - 1)[None, None]
    timers: list[tuple[Timer, str]] = []
    for label, cfg in (
        ("full VAS codec (71.9 M)", VQGANConfig.vas()),
        ("small codec (1.4 M)", SMALL),
    ):
        codec = SpectrogramVQGAN(cfg).to(dev).eval()
        codes = codec.encode_to_codes(x)
        timers.append((Timer(f"{label}: encode", lambda c=codec: c.encode_to_codes(x)), label))
        timers.append(
            (Timer(f"{label}: decode", lambda c=codec, k=codes: c.decode_codes(k)), label)
        )
    for ngf in (32, 16):
        gen = MelGANGenerator(MelGANConfig(ngf=ngf)).to(dev).eval()
        n = sum(q.numel() for q in gen.parameters()) / 1e6
        timers.append(
            (Timer(f"MelGAN ngf {ngf} ({n:.2f} M): vocode", lambda g=gen: g(mel[None])), "")
        )
    timers.append((Timer("Griffin-Lim, 64 iterations", lambda: griffin_lim(mel.cpu())), ""))
    with torch.inference_mode():
        for timer, _ in timers:
            timer.fn()
            for _ in range(args.repeats):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                timer.fn()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                timer.times.append(time.perf_counter() - t)
    lines = [
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads, device {dev}; one {audio_seconds:.2f} s mel ({frames} frames), "
        f"batch 1, best of {args.repeats}",
        "",
        "| what | seconds per call | audio seconds per second |",
        "|---|---|---|",
    ]
    for timer, _ in timers:
        lines.append(f"| {timer.name} | {timer.best:.3f} | {audio_seconds / timer.best:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
