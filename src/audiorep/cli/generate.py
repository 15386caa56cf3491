"""``audiorep generate``: sound for a video, a feature file or a class, with SpecVQGAN.

The work is done by :mod:`audiorep.specvqgan.generation`; this module parses, reports progress and
writes the run's manifest (``generation.json``: models, settings, seeds, timings, files).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from audiorep.cli.codec import VOCODER_HELP
from audiorep.cli.common import (
    EXIT_SOME_FAILED,
    add_device_option,
    display,
    fail,
    positive_int,
)

COMMAND = "generate"
TRANSFORMER_HELP = (
    "transformer: 'small' (default, shipped: class-conditional, sfx10 classes), our "
    "transformer.safetensors, an authors' .ckpt / logdir / .tar.gz, or a registry name "
    "(specvqgan-transformer-*)"
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="generate sound for videos, visual features or classes (SpecVQGAN)",
        description="Sample codec tokens with the SpecVQGAN transformer (KV-cached; the same "
        "tokens as the authors' sampler for the same seed), decode them to a mel spectrogram and "
        "vocode it. Writes <OUT>[/cls_<target>]/<name>_sample_<k>.{npy,wav} (the authors' "
        "naming, so `audiorep specvqgan evaluate` pairs them), and for a video also "
        "<name>_sample_<k>.mp4 with the new sound. Sample k uses seed SEED + k.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", nargs="+", metavar="FILE", help="videos (ResNet-50 features "
                     "are extracted on the fly at 21.5 fps)")  # fmt: skip
    src.add_argument("--features", nargs="+", metavar="FILE",
                     help="feature files: the authors' .pkl or .npy (T, D)")  # fmt: skip
    src.add_argument("--class", dest="classes", nargs="+", metavar="NAME",
                     help="class names or indices (class-conditional models)")  # fmt: skip
    p.add_argument("--flow", nargs="+", metavar="FILE", default=None,
                   help="optical-flow feature files, one per --features file")  # fmt: skip
    p.add_argument("-o", "--output-dir", default="generated", metavar="DIR")
    p.add_argument("--transformer", default="small", help=TRANSFORMER_HELP)
    p.add_argument("--vocoder", default="small", help=VOCODER_HELP)
    p.add_argument("--resnet50", default=None,
                   help="ResNet-50 weights for --video: a torchvision .pth, the registry name "
                   "resnet50-imagenet (default), or random[:SEED] (plumbing only)")  # fmt: skip
    p.add_argument("-n", "--samples", type=positive_int, default=1, help="samples per input")
    p.add_argument("--seed", type=int, default=0, help="seed of sample 0 (sample k: SEED + k)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="keep the k most likely tokens (default: half the codebook, the "
                   "authors' tool default)")  # fmt: skip
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling (off)")
    p.add_argument("--width-scale", type=positive_int, default=1,
                   help="length in 9.8 s windows (sliding-window sampling beyond 1)")  # fmt: skip
    p.add_argument("--prime-audio", nargs="+", metavar="AUDIO", default=None,
                   help="prime with this audio's first half of tokens (the authors' 'half' "
                   "mode), one file per input")  # fmt: skip
    p.add_argument("--label", default=None,
                   help="class of --video/--features inputs (cls_<target> folder, "
                   "feature+class models; default: the parent folder if it names one)")  # fmt: skip
    p.add_argument("--demo-tiling", action="store_true",
                   help="--features: tile short feature files as the authors' demo, instead of "
                   "zero-padding them as their datasets")  # fmt: skip
    p.add_argument("--no-mp4", action="store_true", help="--video: do not write the mp4")
    p.add_argument("--resume", action="store_true", help="skip samples already written")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_device_option(p)
    p.set_defaults(func=run)


def _inputs(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """``(kind, value, flow)`` per input."""
    if args.video:
        return [("video", v, None) for v in args.video]
    if args.features:
        flows = args.flow or []
        if flows and len(flows) != len(args.features):
            raise ValueError(f"{len(flows)} --flow files for {len(args.features)} --features")
        return [("features", f, flows[i] if flows else None) for i, f in enumerate(args.features)]
    return [("class", c, None) for c in args.classes]


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from audiorep.specvqgan.generation import (
        Condition,
        class_from_path,
        generate,
        label_target,
        load_generation_models,
        prime_tokens_from_audio,
        sample_folder,
        sample_stem,
        write_outputs,
    )
    from audiorep.specvqgan.sampling import SamplingSettings
    from audiorep.training.export import atomic_write

    try:
        inputs = _inputs(args)
        if args.prime_audio and len(args.prime_audio) != len(inputs):
            raise ValueError(
                f"{len(args.prime_audio)} --prime-audio files for {len(inputs)} inputs"
            )
        if args.flow and not args.features:
            raise ValueError("--flow goes with --features")
        models = load_generation_models(args.transformer, args.vocoder, args.device)
        top_k = args.top_k if args.top_k is not None else models.default_top_k
        settings = SamplingSettings(
            temperature=args.temperature, top_k=top_k, top_p=args.top_p,
            width_scale=args.width_scale, prime_tokens=130 if args.prime_audio else 0,
        )  # fmt: skip
    except (ValueError, FileNotFoundError, OSError) as e:
        return fail(COMMAND, display(e))
    model = models.transformer
    resnet = None
    if args.video:
        from audiorep.specvqgan.video import load_resnet50

        try:
            resnet, _ = load_resnet50(args.resnet50, args.device)
        except (ValueError, FileNotFoundError, OSError) as e:
            return fail(COMMAND, display(e))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "generation.json"
    manifest: dict[str, Any] = {
        "transformer": models.name,
        "transformer_config": model.config_dict(),
        "vocoder": models.vocoder_name,
        "settings": settings.to_dict(),
        "device": str(args.device),
        "torch": torch.__version__,
        "items": [],
    }
    if args.resume and manifest_path.is_file():
        manifest["items"] = json.loads(manifest_path.read_text()).get("items", [])
    failures = 0
    for i, (kind, value, flow) in enumerate(inputs):
        t0 = time.perf_counter()
        try:
            target = None
            if kind != "class":
                target = (
                    label_target(model, args.label)
                    if args.label is not None
                    else class_from_path(model, value)
                )
            if kind == "class":
                cond = Condition.from_class(model, value)
            elif kind == "features":
                cond = Condition.from_features(model, value, flow, demo_tiling=args.demo_tiling,
                                               target=target)  # fmt: skip
            else:
                cond = Condition.from_video(model, value, resnet=resnet, target=target,
                                            progress=not args.quiet)  # fmt: skip
            folder = sample_folder(out, cond)
            stems = [sample_stem(cond, k) for k in range(args.samples)]
            if args.resume and all((folder / f"{s}.wav").is_file() for s in stems):
                print(f"{value}: already generated, skipped")
                continue
            prime = (
                prime_tokens_from_audio(model, args.prime_audio[i]) if args.prime_audio else None
            )
            if prime is not None and settings.width_scale > 1:
                prime = prime.repeat(1, settings.width_scale)
            bar = tqdm(total=model.sequence_length * settings.width_scale,
                       desc=f"{Path(value).name} x{args.samples}", unit="tok",
                       disable=args.quiet, leave=False)  # fmt: skip

            def progress(event, bar=bar) -> None:
                bar.update(event.step + 1 - bar.n)

            clips = generate(models, cond, settings, seed=args.seed, num_samples=args.samples,
                             prime=prime, on_step=progress, every=5)  # fmt: skip
            bar.close()
            written = []
            for k, clip in enumerate(clips):
                video = value if kind == "video" and not args.no_mp4 else None
                paths = write_outputs(clip, folder, stems[k], video=video)
                written.append({"seed": clip.seed, **paths})
            seconds = time.perf_counter() - t0
            manifest["items"].append({
                "input": value, "kind": kind, "flow": flow, "label": cond.label,
                "target": cond.target, "details": cond.details, "samples": written,
                "seconds": round(seconds, 3),
            })  # fmt: skip
            text = json.dumps(manifest, indent=1)
            atomic_write(manifest_path, lambda tmp, text=text: Path(tmp).write_text(text + "\n"))
            label = f" [{cond.label}]" if cond.label else ""
            print(f"{value}{label}: {len(clips)} sample(s) in {seconds:.1f} s -> {folder}")
        except (ValueError, FileNotFoundError, OSError, RuntimeError) as e:
            failures += 1
            msg = display(e)
            print(f"audiorep {COMMAND}: {msg if str(value) in msg else f'{value}: {msg}'}")
    if failures:
        print(f"{failures} of {len(inputs)} input(s) failed")
        return EXIT_SOME_FAILED
    return 0
