"""Train the small class-conditional code transformer shipped with audiorep (docs/generation.md).

    python tools/build_sfx_dataset.py /tmp/sfx10                      # if missing (~25 s)
    python tools/train_small_transformer.py train /tmp/sfx10 OUT_DIR [--minutes 30]
    python benchmarks/generation_quality.py --transformer OUT_DIR/transformer.safetensors \\
        --data /tmp/sfx10 --json OUT_DIR/quality.json
    python tools/train_small_transformer.py export OUT_DIR [--quality OUT_DIR/quality.json]

``train`` encodes sfx10 (10 classes x 40 clips, split 28 / 6 / 6 per class) with the shipped
small codec (128 codes, a 5 x 53 grid per 9.8 s clip), each training clip as is plus
:data:`VIEWS` augmented views (random circular time shift of the clip before it is looped to
10 s, +-3 dB gain; src/audiorep/specvqgan/code_dataset.py), then trains :data:`SMALL_RUN` on one
CPU thread until early stopping or the budget of its own CPU time (other work on the machine
does not shrink it). Run it again with the same arguments to resume.

``export`` writes the best model as float16 to
``src/audiorep/weights/data/transformer_small.safetensors`` + ``.json`` (config, training facts,
validation loss, and the quality measured by benchmarks/generation_quality.py) and prints the
sha256 and size for the registry entry ``audiorep-transformer-small``. The tensors and the
metadata are the same on every export, but safetensors writes its metadata map in an arbitrary
order, so the file's sha256 can differ between two exports: update the registry with the value
printed.

Model size (see :data:`SMALL_RUN`): a training step costs about ``6 N T`` FLOPs per sequence
(N = 3.30 M parameters at width 256 with 4 layers, T = 265 positions: 5.2 GFLOP) plus attention
(``3 x 4 T^2 d`` per layer: 0.9 GFLOP), about 6.1 GFLOP in all. One thread of this machine (AMD
EPYC) ran 12 sequences per second at this size in a timing of forward + backward + AdamW, so 30
CPU-minutes buy about 21 000 sequences (1 300 steps of 16, 1.3e14 FLOPs), i.e. 7.5 passes over
the 2 800 training sequences. In the same timing width 256 with 6 layers (4.9 M) ran 8.3
sequences per second (5 passes) and width 192 with 4 layers (1.9 M) 20 per second: 4 layers at
256 is the largest of these that still sees the augmented data several times in the budget
(the shipped run's validation loss was still falling slowly when the budget ended).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import sys
import time
from pathlib import Path

import torch

from audiorep.specvqgan.code_dataset import class_token_sets
from audiorep.specvqgan.codec_models import load_codec
from audiorep.specvqgan.transformer import load_trained_transformer
from audiorep.specvqgan.transformer_training import TransformerTrainConfig, train_transformer

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "src" / "audiorep" / "weights" / "data" / "transformer_small.safetensors"
#: Augmented views per training clip (280 clips -> 2 800 training sequences).
VIEWS = 9
VIEW_SEED = 0
MAX_GAIN_DB = 3.0
#: The run. The authors' optimizer (AdamW (0.9, 0.95), decay 0.01 on Linear weights) and early
#: stopping (patience 2, here in evaluations every 100 steps, about 0.6 epoch); a larger learning
#: rate than the authors' base x batch (1.6e-5) with warm-up and a cosine decay over the
#: expected budget, and dropout 0.1, because the data is tiny.
SMALL_RUN = TransformerTrainConfig(
    kind="class",
    n_layer=4,
    n_head=8,
    n_embd=256,
    embd_pdrop=0.1,
    resid_pdrop=0.1,
    batch_size=16,
    learning_rate=1e-3,
    warmup_steps=50,
    lr_schedule="cosine",
    schedule_steps=1300,
    min_lr_ratio=0.1,
    eval_every=100,
    patience=2,
    grad_clip=1.0,
    seed=23,
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    codec, _ = load_codec("small")
    t_cpu = time.process_time()
    sets = class_token_sets(
        args.data, codec, views=VIEWS, seed=VIEW_SEED, max_gain_db=MAX_GAIN_DB,
        cache_dir=out / "tokens", progress=True, log=print,
    )  # fmt: skip
    encode_cpu = time.process_time() - t_cpu
    for s in sets.values():
        print(s.summary())
    facts = {
        "data": "sfx10 (tools/build_sfx_dataset.py, recipe version 1, seed 20260613)",
        "views": VIEWS,
        "view_seed": VIEW_SEED,
        "max_gain_db": MAX_GAIN_DB,
        "encode_cpu_seconds_this_call": round(encode_cpu, 1),
        "cpu_budget_minutes": args.minutes,
        "threads": 1,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    result = train_transformer(
        sets["train"], sets["valid"], out, SMALL_RUN, codec=codec, codec_name="small",
        device="cpu", max_cpu_seconds=args.minutes * 60, checkpoint_every=100,
        progress=False, log=print, info={"training_facts": facts},
    )  # fmt: skip
    print(json.dumps({"step": result.step, "stopped_early": result.stopped_early,
                      "best": result.best}, indent=1))  # fmt: skip


def export(args: argparse.Namespace) -> None:
    out = Path(args.out_dir)
    model, info = load_trained_transformer(out / "transformer.safetensors")
    history = info.get("history", [])
    last = history[-1] if history else {}
    keep = {
        "description": "small class-conditional SpecVQGAN code transformer trained on sfx10 "
        "over the shipped small codec (tools/train_small_transformer.py)",
        "classes": model.classes,
        "best": info.get("best"),
        "history": history,
        "train_config": info.get("train_config"),
        "parameters": info.get("parameters"),
        "train_sequences": info.get("train_sequences"),
        "valid_sequences": info.get("valid_sequences"),
        "training_facts": {
            **info.get("training_facts", {}),
            "steps_run": last.get("step"),
            "cpu_seconds": last.get("cpu_seconds"),
            "wall_seconds": last.get("seconds"),
        },
        "stored_as": "float16",
    }
    if args.facts:
        keep["training_facts"].update(json.loads(args.facts))
    if args.quality:
        keep["quality"] = json.loads(Path(args.quality).read_text())
    target = Path(args.target)
    # float16 halves the file; the validation loss of the stored weights is measured and recorded
    from audiorep.specvqgan.transformer_training import evaluate_loss
    from audiorep.training.export import save_model_file

    torch.set_num_threads(1)
    sets = class_token_sets(
        args.data, model.first_stage_model, views=VIEWS, seed=VIEW_SEED, max_gain_db=MAX_GAIN_DB,
        cache_dir=out / "tokens",
    )  # fmt: skip
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("first_stage_model.")}
    for _ in range(2):  # the second pass writes the float16 losses into the JSON
        save_model_file(
            target, sd, format="audiorep.specvqgan.transformer", config=model.config_dict(),
            info=keep, dtype=torch.float16,
        )  # fmt: skip
        again, _ = load_trained_transformer(target)
        keep["float16"] = {
            split: {"loss": evaluate_loss(again, sets[split])["loss"],
                    "loss_float32": evaluate_loss(model, sets[split])["loss"]}
            for split in ("valid", "test")
        }  # fmt: skip
    print(json.dumps(keep["float16"]))
    print(f"{target}: sha256 {_sha256(target)}, {target.stat().st_size} bytes")
    print(f"{target.with_suffix('.json')}: written")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("data", help="the sfx10 folder (tools/build_sfx_dataset.py)")
    t.add_argument("out_dir")
    t.add_argument("--minutes", type=float, default=30.0, help="CPU-time budget (minutes)")
    t.set_defaults(func=train)
    e = sub.add_parser("export")
    e.add_argument("out_dir")
    e.add_argument("--quality", default=None, help="JSON from benchmarks/generation_quality.py")
    e.add_argument("--data", default="/tmp/sfx10", help="the sfx10 folder (for the fp16 check)")
    e.add_argument("--facts", default=None, help="more training facts, a JSON object")
    e.add_argument("--target", default=str(WEIGHTS))
    e.set_defaults(func=export)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
