"""SpecVQGAN end to end on a video: video -> features -> codes -> spectrogram -> waveform -> mp4.

    python examples/specvqgan_demo.py [VIDEO] [--out demo_out/specvqgan]
        [--transformer small | NAME | PATH] [--class NAME] [--resnet50 SPEC] [--samples N]

Every stage is timed and the timings are printed and written to ``<out>/timings.json``:

1. **codec round trip of the video's own sound**: decode the audio track (PyAV), the authors'
   22.05 kHz mel, the codec's 5 x 53 token grid (its bitrate), decoded back to a mel and vocoded;
2. **visual features**: the frames at 21.5 fps that the condition uses, ResNet-50 pool features
   (torchvision ImageNet weights when cached, else seeded random weights, said plainly);
3. **sampling**: the transformer's 265 tokens with the KV-cached sampler (top-k = half the
   codebook, the authors' tool default);
4. **decoding**: tokens -> mel spectrogram (PNG) -> MelGAN waveform (WAV);
5. **muxing**: the video with the new sound (MP4).

Models. With ``--transformer`` naming a released feature-conditioned model that is cached
(e.g. ``specvqgan-transformer-vas-5feats-rn50`` after ``audiorep weights download``), the
features condition the sound, as in the paper. Offline, the shipped small models are used: the
small transformer is **class-conditional** (sfx10 classes, trained here), so the video's
features are extracted and timed but the sound is steered by ``--class`` (default: the sfx10
class nearest to the VAS folder the video is in, printed). No network access is needed.

Without a VIDEO argument the demo uses the first VAS video of the golden-data samples when they
are present, else a 4 s synthetic clip it writes itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SHARED_VAS = HERE.parent.parent / "shared" / "specvqgan_samples" / "vas" / "videos"
# The nearest sfx10 class (the shipped small model's) for each VAS class.
VAS_TO_SFX10 = {
    "baby": "speech",
    "cough": "speech",
    "dog": "speech",
    "drum": "drum_kit",
    "fireworks": "gunshot",
    "gun": "gunshot",
    "hammer": "drum_kit",
    "sneeze": "speech",
}


def _synthetic_video(path: Path, seconds: float = 4.0) -> Path:
    import av

    fps, sr = 25, 44100
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream("aac", rate=sr)
        audio.layout = "mono"
        for k in range(int(seconds * fps)):
            img = np.zeros((120, 160, 3), np.uint8)
            img[:, : 4 * (k % 40)] = (200, 80, 40)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = k
            for p in video.encode(frame):
                out.mux(p)
        for p in video.encode(None):
            out.mux(p)
        t = np.arange(int(seconds * sr)) / sr
        tone = 0.3 * np.sin(2 * np.pi * 330 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
        sound = av.AudioFrame.from_ndarray(tone.astype(np.float32)[None], format="fltp",
                                           layout="mono")  # fmt: skip
        sound.sample_rate, sound.pts = sr, 0
        for p in list(audio.encode(sound)) + list(audio.encode(None)):
            out.mux(p)
    return path


def _cached(name: str) -> bool:
    from audiorep.weights.registry import REGISTRY, cached_path

    return name in REGISTRY and (REGISTRY[name].bundled or cached_path(name).is_file())


class Stopwatch:
    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    def __call__(self, name: str):
        watch = self

        class _Stage:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                watch.stages[name] = round(time.perf_counter() - self.t, 3)
                print(f"[demo] {name}: {watch.stages[name]:.2f} s", flush=True)

        return _Stage()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video", nargs="?", default=None)
    p.add_argument("--out", type=Path, default=Path("demo_out/specvqgan"))
    p.add_argument("--transformer", default="small")
    p.add_argument("--class", dest="cls", default=None, help="class for a class-conditional model")
    p.add_argument("--resnet50", default=None, help="ResNet-50 weights (default: cached ImageNet)")
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from audiorep.frontends.specvqgan import mel_spectrogram
    from audiorep.resample import resample
    from audiorep.specvqgan.codec import bitrate_kbps, encode_mel, plot_comparison
    from audiorep.specvqgan.codec import decode_codes as decode_grid
    from audiorep.specvqgan.generation import (
        Condition,
        class_from_path,
        generate,
        load_generation_models,
        write_outputs,
    )
    from audiorep.specvqgan.sampling import SamplingSettings
    from audiorep.specvqgan.video import (
        load_resnet50,
        read_video_audio,
        video_condition_features,
        video_duration,
    )
    from audiorep.specvqgan.visual_features import FeatureSettings

    args.out.mkdir(parents=True, exist_ok=True)
    if args.video:
        video = Path(args.video)
    else:
        # a drum clip first: its nearest sfx10 class (drum_kit) suits the small offline model
        found = sorted(SHARED_VAS.glob("*/*.mp4"), key=lambda v: (v.parent.name != "drum", v))
        video = found[0] if found else _synthetic_video(args.out / "synthetic.mp4")
    print(f"[demo] video: {video} ({video_duration(video):.2f} s)")
    watch = Stopwatch()

    with watch("load models"):
        models = load_generation_models(args.transformer, "small")
    model = models.transformer
    codec = model.first_stage_model
    print(f"[demo] transformer: {models.name} ({model.kind}-conditioned, "
          f"{sum(p.numel() for p in model.transformer.parameters()) / 1e6:.2f} M params); "
          f"vocoder: {models.vocoder_name}")  # fmt: skip

    # 1. codec round trip of the video's own sound
    with watch("codec round trip of the video's sound"):
        wave, sr = read_video_audio(video)
        wave22 = resample(torch.as_tensor(wave, dtype=torch.float64), sr, 22050)
        mel = mel_spectrogram(wave22, None, max_frames=None).to(torch.float32)
        grid = encode_mel(codec, mel)
        recon = decode_grid(codec, grid, mel.shape[-1])
        seconds = wave22.shape[-1] / 22050
        kbps = bitrate_kbps(codec.quantize.n_e, grid.numel(), seconds)
    plot_comparison(args.out / "codec_round_trip.png", mel, recon,
                    title=f"{video.name}: codec round trip ({kbps:.3f} kbps)")  # fmt: skip
    print(f"[demo] codec: {tuple(grid.shape)} codes for {seconds:.2f} s = {kbps:.3f} kbps")

    # 2. visual features
    resnet_spec = args.resnet50
    if resnet_spec is None:
        resnet_spec = "resnet50-imagenet" if _cached("resnet50-imagenet") else "random:0"
        if resnet_spec.startswith("random"):
            print("[demo] ImageNet ResNet-50 weights are not cached (`audiorep weights download "
                  "resnet50-imagenet`): using seeded random weights, so the features only "
                  "exercise the pipeline")  # fmt: skip
    resnet, resnet_name = load_resnet50(resnet_spec)
    frames = model.spec.feat_sample_size or 5
    with watch(f"visual features ({frames} frames at 21.5 fps, ResNet-50 {resnet_name})"):
        rows = video_condition_features(video, resnet, FeatureSettings(feat_sample_size=frames))
    print(f"[demo] features: {rows.shape} (float64 rows of the 212-frame crop)")

    # 3-4. condition, sample, decode, vocode
    if "feature" in model.kind:
        cond = Condition.from_rows(model, rows, video.stem, source=str(video),
                                   target=class_from_path(model, video))  # fmt: skip
    else:
        name = args.cls or VAS_TO_SFX10.get(video.parent.name, (model.classes or ["0"])[0])
        print(f"[demo] class-conditional model: sampling class {name!r} "
              f"(VAS folder {video.parent.name!r}); the features do not steer it")  # fmt: skip
        cond = Condition.from_class(model, name)
        cond.name = video.stem
    settings = SamplingSettings(top_k=models.default_top_k)
    with watch(f"sample {args.samples} x 265 tokens + decode + vocode"):
        clips = generate(models, cond, settings, seed=args.seed, num_samples=args.samples)

    # 5. files and the mp4
    with watch("write wav / npy / mp4"):
        written = [write_outputs(c, args.out, f"{video.stem}_sample_{k}", video=video)
                   for k, c in enumerate(clips)]  # fmt: skip
    for k, c in enumerate(clips):
        plot_comparison(args.out / f"{video.stem}_sample_{k}.png", mel[:, :848],
                        torch.from_numpy(c.mel).clamp(0, 1), title=f"{video.name}",
                        label=f"generated sample {k} (seed {c.seed})")  # fmt: skip
    report = {
        "video": str(video),
        "transformer": models.name,
        "kind": model.kind,
        "resnet50": resnet_name,
        "codec_kbps": kbps,
        "stages_s": watch.stages,
        "samples": written,
        "torch": torch.__version__,
        "threads": args.threads,
    }
    (args.out / "timings.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"[demo] wrote {args.out}/: " + ", ".join(Path(v).name for v in written[0].values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
