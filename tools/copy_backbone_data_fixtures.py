"""Copy the CNN14, CNN14-Fusion and YouTube-8M/AudioSet golden data into tests/fixtures.

The tests read only tests/fixtures; this script (run by hand, when the shared data folder next to
the project changes) is the one place that reads it. Arrays keep their values; large arrays are
sliced as the fixture READMEs describe, and everything is re-saved compressed.

    python tools/copy_backbone_data_fixtures.py [--dst DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
AUDIOSET_SHARDS = ("bal_train/Av.tfrecord", "eval/RK.tfrecord")
AUDIOSET_WHAT = ("audio_embedding", "dequantized", "reader_matrix_max10", "labels_dense")


def copy_cnn14(dst: Path) -> None:
    src = SHARED / "fixtures" / "cnn14"
    out_dir = dst / "cnn14"
    out_dir.mkdir(parents=True, exist_ok=True)
    for wav in ("wave_32000.wav", "wave_24589.wav"):
        shutil.copyfile(src / wav, out_dir / wav)
    with np.load(src / "cnn14.npz") as d:
        out = {
            "logmel_32000_items_0_2": d["logmel_32000"][[0, 2]],
            "logmel_24589": d["logmel_24589"],
            "spectrogram_32000_every_20th_frame": d["spectrogram_32000"][:, :, ::20],
            "block6_24589_every_8th_channel": d["block6_24589"][:, ::8],
        }
        for tag in ("32000", "24589"):
            for k in ("pooled", "embedding", "logits", "clipwise_output"):
                out[f"{k}_{tag}"] = d[f"{k}_{tag}"]
    np.savez_compressed(out_dir / "cnn14.npz", **out)


def copy_cnn14_fusion(dst: Path) -> None:
    every = {  # kept key -> (source key, feature step); step 1 = unchanged
        "cnn14_logmel_16000": ("cnn14_logmel_16000", 1),
        "gpcnn14_paper_3_6_16000_sample": ("gpcnn14_paper_3_6_16000_sample", 1),
        "gpcnn14_paper_3_6_16000_frames_every_8th_feature": (
            "gpcnn14_paper_3_6_16000_frames", 8),
        "gpcnn14_all_blocks_16000_sample_every_4th_feature": (
            "gpcnn14_all_blocks_16000_sample", 4),
        "gpcnn14_all_blocks_16000_frames_every_16th_feature": (
            "gpcnn14_all_blocks_16000_frames", 16),
        "gpcnn14_block6_16000_sample_every_4th_feature": ("gpcnn14_block6_16000_sample", 4),
        "gpcnn14_block6_40000_frames_every_16th_feature": ("gpcnn14_block6_40000_frames", 16),
        "evar_cnn14_fusion_sample_40000": ("evar_cnn14_fusion_sample_40000", 1),
        "evar_cnn14_fusion_frames_40000_every_8th_feature": (
            "evar_cnn14_fusion_frames_40000", 8),
    }  # fmt: skip
    with np.load(SHARED / "fixtures" / "fusion" / "fusion.npz") as d:
        out = {k: d[src][:, ::step] if step > 1 else d[src] for k, (src, step) in every.items()}
    np.savez_compressed(dst / "fusion" / "cnn14_keys.npz", **out)


def copy_yt8m(dst: Path) -> None:
    src = SHARED / "fixtures" / "yt8m"
    out_dir = dst / "yt8m"
    shutil.copytree(src / "tfrecord", out_dir / "tfrecord", dirs_exist_ok=True)
    (out_dir / "dequantize").mkdir(parents=True, exist_ok=True)
    name = Path("dequantize") / "dequantize.npz"
    shutil.copyfile(src / name, out_dir / name)
    audioset = SHARED / "audioset"
    for shard in AUDIOSET_SHARDS:
        (out_dir / "audioset" / shard).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(audioset / shard, out_dir / "audioset" / shard)
    full = json.loads((audioset / "expected_contents.json").read_text())
    subset = {
        "source": "subset of shared/audioset/expected_contents.json "
        f"(files {', '.join(AUDIOSET_SHARDS)})",
        "versions": full["versions"],
        "files": {k: full["files"][k] for k in AUDIOSET_SHARDS},
    }
    (out_dir / "audioset" / "expected_contents.json").write_text(json.dumps(subset, indent=1))
    prefixes = tuple(s.replace(".tfrecord", "").replace("/", "__") + "__" for s in AUDIOSET_SHARDS)
    with np.load(audioset / "expected_contents.npz") as d:
        keep = {k: d[k] for k in d.files if k.startswith(prefixes) and k.endswith(AUDIOSET_WHAT)}
    np.savez_compressed(out_dir / "audioset" / "expected_contents.npz", **keep)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dst", type=Path, default=ROOT / "tests" / "fixtures")
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"{SHARED} not found: nothing to copy", file=sys.stderr)
        return 1
    copy_cnn14(args.dst)
    (args.dst / "fusion").mkdir(parents=True, exist_ok=True)
    copy_cnn14_fusion(args.dst)
    copy_yt8m(args.dst)
    print(f"copied into {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
