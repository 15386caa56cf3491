"""Per-clip sampling time: the authors' loop vs our KV-cached sampler, at 1, 5 and 212 frames.

Run with ``python benchmarks/bench_sampling.py [--threads 2] [--frames 1 5 212] [--layers 24]
[--authors-steps 3] [--device cpu] [--markdown PATH]``.

Model: the released VAS transformer's size (GPTFeats, vocab 128, 24 layers, 16 heads, width
1024: 305 M parameters; block size 265 + S), random weights (speed does not depend on the values),
batch 1, top-k 64, one 9.8 s clip = 265 tokens.

* **Ours** (:func:`audiorep.specvqgan.sampling.sample_tokens`): the whole clip, timed end to end.
* **The authors' loop** (:func:`audiorep.specvqgan.sampling.authors_loop`, the arithmetic of their
  ``generate_samples.py``): every step runs the model on the full 264-token buffer plus the S
  condition positions, so every step costs the same. Running 265 such steps of a 305 M model
  takes 10-20 minutes per clip on two CPU cores, so by default ``--authors-steps`` steps are
  timed and multiplied by 265. ``--check`` times the authors' loop in full on a 2-layer model of
  the same width to show that this extrapolation holds.

Both loops draw the same tokens for the same seed (tests/test_transformer.py).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from audiorep.models.gpt import GPTConfig
from audiorep.models.vqgan import SpectrogramVQGAN, VQGANConfig
from audiorep.specvqgan.sampling import SamplingSettings, authors_loop, sample_tokens
from audiorep.specvqgan.transformer import CodeTransformer, TransformerSpec

TOKENS = 265
TINY_CODEC = VQGANConfig(ch=32, ch_mult=(1, 1, 1, 1, 1), num_res_blocks=1, attn_resolutions=(),
                         z_channels=8, embed_dim=8, n_embed=128)  # fmt: skip


def build(frames: int, layers: int, device: torch.device) -> CodeTransformer:
    gpt = GPTConfig(vocab_size=128, block_size=TOKENS + frames, n_layer=layers, n_head=16,
                    n_embd=1024)  # fmt: skip
    spec = TransformerSpec(gpt=gpt, kind="feature", feat_depth=2048, feat_sample_size=frames)
    torch.manual_seed(0)
    return CodeTransformer.build(spec, SpectrogramVQGAN(TINY_CODEC)).to(device).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ours(model: CodeTransformer, cond: torch.Tensor, settings: SamplingSettings) -> float:
    sync(model.device)
    t = time.perf_counter()
    sample_tokens(model, cond, settings, seed=0)
    sync(model.device)
    return time.perf_counter() - t


def time_authors_steps(
    model: CodeTransformer, cond: torch.Tensor, settings: SamplingSettings, steps: int
) -> float:
    """Seconds per step of the authors' loop: the last ``steps`` of a primed clip (each step is
    one full forward, the same work wherever it is in the clip)."""
    primed = SamplingSettings(
        temperature=settings.temperature, top_k=settings.top_k, prime_tokens=TOKENS - steps
    )
    prime = torch.zeros(1, TOKENS, dtype=torch.long)
    authors_loop(model, cond, SamplingSettings(top_k=64, prime_tokens=TOKENS - 1), prime=prime)
    sync(model.device)
    t = time.perf_counter()
    authors_loop(model, cond, primed, seed=0, prime=prime)
    sync(model.device)
    return (time.perf_counter() - t) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, nargs="+", default=[1, 5, 212])
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--authors-steps", type=int, default=3)
    p.add_argument("--check", action="store_true", help="also time a full authors' loop (2 layers)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--markdown", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    settings = SamplingSettings(top_k=64)
    rows = []
    for frames in args.frames:
        model = build(frames, args.layers, dev)
        cond = torch.rand(1, 2048, frames, device=dev)
        sample_tokens(
            model,
            cond,
            SamplingSettings(top_k=64, prime_tokens=TOKENS - 2),
            prime=torch.zeros(1, TOKENS, dtype=torch.long),
        )  # fmt: skip  (warm-up)
        ours = time_ours(model, cond, settings)
        per_step = time_authors_steps(model, cond, settings, args.authors_steps)
        authors = per_step * TOKENS
        rows.append((frames, args.layers, authors, f"{args.authors_steps} steps x 265", ours))
        print(f"S={frames}: authors {authors:.1f} s/clip, ours {ours:.2f} s/clip, "
              f"{authors / ours:.1f}x", flush=True)  # fmt: skip
        del model
    if args.check:
        model = build(5, 2, dev)
        cond = torch.rand(1, 2048, 5, device=dev)
        t = time.perf_counter()
        authors_loop(model, cond, settings, seed=0)
        full = time.perf_counter() - t
        est = time_authors_steps(model, cond, settings, args.authors_steps) * TOKENS
        ours = time_ours(model, cond, settings)
        rows.append((5, 2, full, "full loop", ours))
        print(f"check (2 layers, S=5): full authors loop {full:.1f} s, extrapolated {est:.1f} s "
              f"({est / full:.2f}), ours {ours:.2f} s", flush=True)  # fmt: skip
    cpu = platform.processor() or platform.machine()
    if dev.type == "cuda":
        cpu = torch.cuda.get_device_name(dev)
    lines = [
        f"Sampling one 9.8 s clip (265 tokens), batch 1, top-k 64; {args.device} ({cpu}), "
        f"{args.threads} threads, torch {torch.__version__}.",
        "",
        "| feature frames S | layers | authors' loop (s/clip) | how | ours, KV cache (s/clip) "
        "| speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for frames, layers, authors, how, ours in rows:
        lines.append(
            f"| {frames} | {layers} | {authors:.1f} | {how} | {ours:.2f} | {authors / ours:.1f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
