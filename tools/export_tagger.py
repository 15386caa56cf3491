"""Export a train-classifier / ensemble-classifier run as the shipped AudioSet tagger.

    python tools/export_tagger.py RUN_DIR [--data /work/shared/audioset/full]
        [--out src/audiorep/weights/data/tagger_audioset.safetensors] [--command "..."]

Loads the run's selected weights, writes them in float16 with :func:`export_tagger`, then
scores THE EXPORTED FILE once on the eval set (``--data/eval``) so that the documented numbers
are those of the shipped weights, and records in the sidecar: what it was trained on, the
command, its eval mAP / mAUC / d', the class names and the data attribution. Prints the
sha256 and size for the registry entry (``src/audiorep/weights/registry.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src/audiorep/weights/data"
ATTRIBUTION = (
    "Trained on Google's AudioSet v1 embedding release (audioset_v1_embeddings, bal_train "
    "split), (c) Google Inc., CC BY 4.0: J. F. Gemmeke et al., 'Audio Set: An ontology and "
    "human-labeled dataset for audio events', ICASSP 2017; https://research.google.com/audioset/"
)


def main(argv: list[str] | None = None) -> int:
    from audiorep.data import audioset_class_mids, audioset_class_names
    from audiorep.data.packed import PackedAudioSet
    from audiorep.heads.tagging import export_tagger, load_classifier, load_tagger_file
    from audiorep.heads.training import evaluate_classifier
    from audiorep.weights.download import sha256_file

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, default=Path("/work/shared/audioset/full"))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT / "tagger_audioset.safetensors")
    ap.add_argument("--command", default="", help="the command that trained the run")
    args = ap.parse_args(argv)

    model, state, where = load_classifier(args.run)
    summary_file = args.run / "run.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    info = {
        "trained_on": "AudioSet bal_train (audioset_v1_embeddings, 22,160 segments; a 10 % "
        "stratified validation split held out for selection); eval never used for a choice",
        "source_checkpoint": str(where),
        "command": args.command,
        "selection": state.get("selection"),
        "train_config": state.get("train_config"),
        "train_class_counts": state.get("train_class_counts"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "class_names": audioset_class_names(),
        "class_mids": audioset_class_mids(),
        "attribution": ATTRIBUTION,
        "history": summary.get("history"),
    }
    path = export_tagger(model, args.out, info=info)
    shipped, _ = load_tagger_file(path)
    evalset = PackedAudioSet.load(args.data / "eval", progress=True, desc="reading eval")
    metrics = evaluate_classifier(shipped, evalset.loader(1024), loss="bce_logits")
    keep = ("map", "mauc", "d_prime", "gap", "avg_hit_at_one", "num_examples")
    info["eval"] = {k: float(metrics[k]) for k in keep}
    path = export_tagger(model, args.out, info=info)  # same weights, sidecar with the metrics
    print(json.dumps({"file": str(path), "sha256": sha256_file(path),
                      "size": path.stat().st_size, "eval": info["eval"]}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
