"""Copy the VGGish golden fixtures from ../shared into tests/fixtures/vggish (dev tool).

Tests must not read ../shared at run time, so the data they need lives in the repo. Golden
arrays are re-saved compressed (values unchanged); activations keep the first of the 3 examples.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT.parent / "shared" / "fixtures" / "vggish"
DST = ROOT / "tests" / "fixtures" / "vggish"


def main() -> int:
    if not SRC.is_dir():
        print(f"{SRC} not found", file=sys.stderr)
        return 1
    (DST / "inputs").mkdir(parents=True, exist_ok=True)
    (DST / "golden").mkdir(parents=True, exist_ok=True)
    manifest = json.loads((SRC / "manifest.json").read_text())
    for case in manifest["cases"]:
        shutil.copyfile(SRC / case["file"], DST / case["file"])
        if case.get("golden"):
            with np.load(SRC / case["golden"]) as g:
                np.savez_compressed(DST / case["golden"], **{k: g[k] for k in g.files})
    for name in ("manifest.json", "tolerances.json", "README.md"):
        shutil.copyfile(SRC / name, DST / name)
    np.save(DST / "mel_matrix.npy", np.load(SRC / "mel_matrix.npy"))
    for name in ("pca_params.npz", "postprocess_only.npz"):
        with np.load(SRC / name) as d:
            np.savez_compressed(DST / name, **{k: d[k] for k in d.files})
    with np.load(SRC / "activations.npz") as d:
        np.savez_compressed(DST / "activations.npz", **{k: d[k][:1] for k in d.files})
    print(f"copied to {DST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
