"""Copy what the metric tests need from ../shared into tests/fixtures (dev tool).

Tests must not read ../shared at run time. Every input set is regenerated in the tests from its
recipe (fadgen-v1 for the FAD fixtures, the SpecVQGAN evaluation-feature recipe v1 for the
metric fixtures) and checked against a sha256, so only small JSON files are copied:

* ``tests/fixtures/fad/golden.json`` - golden.json without the per-peer logs and timings;
* ``tests/fixtures/specvqgan_metrics/expected.json`` - metrics_expected.json plus the full
  sha256 of every stored input array (computed here from metrics_inputs.npz), so the
  regenerated arrays can be checked even where the JSON only had a 16-digit prefix or none.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "fixtures"
DST = ROOT / "tests" / "fixtures"


def _sha256_f32(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype="<f4").tobytes()).hexdigest()


def _trim_peer(entry: dict) -> dict:
    out = {k: v for k, v in entry.items() if k not in ("log", "seconds")}
    if entry.get("log"):
        out["warned"] = True
    return out


def copy_fad() -> None:
    src = json.loads((SHARED / "fad" / "golden.json").read_text())
    out = {k: src[k] for k in ("format", "variant", "recipe", "dtype_note", "versions", "sets")}
    out["fd_cases"] = [
        {**{k: v for k, v in c.items() if k not in ("fd", "seconds_total")},
         "fd": {p: _trim_peer(e) for p, e in c["fd"].items()}}
        for c in src["fd_cases"]
    ]  # fmt: skip
    out["fadtk_inf"] = [
        {**{k: v for k, v in c.items() if k != "fadtk_score_inf"},
         "fadtk_score_inf": _trim_peer(c["fadtk_score_inf"])}
        for c in src["fadtk_inf"]
    ]  # fmt: skip
    ps = src["fadtk_per_song"]
    out["fadtk_per_song"] = {
        "background": ps["background"],
        "songs": ps["songs"],
        "fadtk_score_individual": _trim_peer(ps["fadtk_score_individual"]),
        "reference_qr_svd": ps["reference_qr_svd"],
        "other_peers": {
            song: {p: _trim_peer(e) for p, e in peers.items()}
            for song, peers in ps["other_peers"].items()
        },
    }
    out["kid"] = [
        {**{k: v for k, v in c.items() if k not in ("torch_fidelity", "audioldm_eval")},
         "torch_fidelity": _trim_peer(c["torch_fidelity"]),
         "audioldm_eval": _trim_peer(c["audioldm_eval"])}
        for c in src["kid"]
    ]  # fmt: skip
    (DST / "fad").mkdir(parents=True, exist_ok=True)
    (DST / "fad" / "golden.json").write_text(json.dumps(out, indent=1) + "\n")


def copy_specvqgan() -> None:
    folder = SHARED / "specvqgan" / "metrics"
    src = json.loads((folder / "metrics_expected.json").read_text())
    with np.load(folder / "metrics_inputs.npz") as z:
        sha = {k: _sha256_f32(z[k]) for k in z.files}
    for name, case in src.items():
        if name == "versions":
            continue
        case.pop("seconds", None)
        stored = {k.split("__", 1)[1]: v for k, v in sha.items() if k.startswith(name + "__")}
        if stored:
            case["sha256_inputs"] = stored
    (DST / "specvqgan_metrics").mkdir(parents=True, exist_ok=True)
    (DST / "specvqgan_metrics" / "expected.json").write_text(json.dumps(src, indent=1) + "\n")


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED} not found", file=sys.stderr)
        return 1
    copy_fad()
    copy_specvqgan()
    print(f"copied to {DST / 'fad'} and {DST / 'specvqgan_metrics'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
