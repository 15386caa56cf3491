"""Copy the DFL and fusion (VGGish keys) golden fixtures from ../shared into tests/fixtures.

Arrays are re-saved compressed with unchanged values; CNN14 keys of fusion.npz are left out
(the CNN14 issue copies its own).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "fixtures"
DST = ROOT / "tests" / "fixtures"


def _copy_npz(src: Path, dst: Path, keep=lambda k: True) -> None:
    with np.load(src) as d:
        np.savez_compressed(dst, **{k: d[k] for k in d.files if keep(k)})


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED} not found", file=sys.stderr)
        return 1
    (DST / "dfl").mkdir(parents=True, exist_ok=True)
    (DST / "fusion").mkdir(parents=True, exist_ok=True)
    for n in (16000, 48000):
        for side in ("est", "tgt"):
            shutil.copyfile(SHARED / "dfl" / f"{side}_{n}.wav", DST / "dfl" / f"{side}_{n}.wav")
        _copy_npz(SHARED / "dfl" / f"dfl_{n}.npz", DST / "dfl" / f"dfl_{n}.npz")
    shutil.copyfile(SHARED / "dfl" / "README.md", DST / "dfl" / "README.md")
    _copy_npz(
        SHARED / "fusion" / "fusion.npz",
        DST / "fusion" / "fusion_vggish.npz",
        keep=lambda k: "cnn14" not in k,
    )
    for name in ("wave_16000.wav", "wave_40000.wav", "README.md"):
        shutil.copyfile(SHARED / "fusion" / name, DST / "fusion" / name)
    print(f"copied to {DST}/dfl and {DST}/fusion")
    return 0


if __name__ == "__main__":
    sys.exit(main())
