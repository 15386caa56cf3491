"""Generation quality of a class-conditional code transformer, judged by the sfx10 classifier.

Run with ``python benchmarks/generation_quality.py [--transformer small] [--data /tmp/sfx10]
[--judge tests/fixtures/specvqgan_judge/judge.safetensors] [--samples-per-clip 5]
[--markdown PATH] [--json PATH]`` (``--data``: built by ``tools/build_sfx_dataset.py``).

For every clip of the sfx10 **test** split (60 clips, 6 per class), ``--samples-per-clip``
samples are drawn conditioned on the clip's class (KV-cached sampler, top-k = n_codes // 2 = 64,
temperature 1, one seed per sample) and decoded by the transformer's codec into [0, 1] mels
(80 x 848, clamped as ``audiorep generate`` writes them). The judge is the small VGGish-ish
classifier trained on sfx10 (tests/fixtures/specvqgan_judge/README.md; test accuracy 0.967),
**not** the authors' Melception (trained on VGGSound, whose 309 classes do not contain sfx10's):

* **accuracy**: the judge's top-1 class equals the class the sample was asked for (chance 10 %);
  for the shuffled-class baseline also against the class of the clip it is paired with;
* **FID**: Fréchet distance between the judge's penultimate features (``fc2_relu``, 64-d) of a
  set and of the 60 real test clips (exact data-based route; 60 rows < 64 dimensions, so the
  real covariance is rank-deficient, as in the authors' VAS evaluation). Not comparable with
  Melception FIDs;
* **MKL**: the authors' pairing: each sample against the real clip it was made for, mean over
  samples of KL(softmax(judge logits of the real clip) || softmax(of the sample) + 1e-6).

Rows: the real test clips (accuracy only); the real validation clips (60 other real clips: the
FID / MKL a perfect generator would get against this small reference, MKL paired by class in
order); the codec's reconstructions of the test clips (the upper bound any transformer over this
codec can reach); the transformer's samples; samples conditioned on a wrong class (a seeded
derangement of the classes, scored against the clip's true class); random tokens (uniform over
the codebook, decoded).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from audiorep.frontends.specvqgan import (
    center_crop,
    from_model_range,
    normalize_for_judges,
)
from audiorep.metrics import frechet_distance_from_embeddings
from audiorep.specvqgan.classifier_data import audio_mel, read_mel
from audiorep.specvqgan.classifier_training import load_trained_judge
from audiorep.specvqgan.code_dataset import class_clip_table, encode_mels
from audiorep.specvqgan.evaluate import per_pair_kl
from audiorep.specvqgan.sampling import SamplingSettings, sample_tokens
from audiorep.specvqgan.transformer import CodeTransformer, load_transformer

REPO = Path(__file__).resolve().parents[1]
JUDGE = REPO / "tests" / "fixtures" / "specvqgan_judge" / "judge.safetensors"


def clip_mels(data: Path, split: str) -> tuple[list[str], list[str], torch.Tensor]:
    """``(clip ids, class names, (N, 80, 860) mels)`` of a split of the clip folder."""
    table = class_clip_table(data)
    clips = table.split(split)
    mels = [read_mel(c.path) if c.is_mel else audio_mel(c.path) for c in clips]
    return [c.clip_id for c in clips], [c.label for c in clips], torch.from_numpy(np.stack(mels))


@torch.no_grad()
def judge_outputs(
    judge: torch.nn.Module, mels: torch.Tensor, batch: int = 32
) -> dict[str, np.ndarray]:
    """``fc2_relu`` (N, hidden) and ``logits`` (N, C) of [0, 1] mels (N, 80, W >= 848)."""
    feats, logits = [], []
    for a in range(0, len(mels), batch):
        x = normalize_for_judges(center_crop(mels[a : a + batch].float(), 848))
        out = judge.forward_taps(x, ["fc2_relu", "logits"])
        feats.append(out["fc2_relu"].float())
        logits.append(out["logits"].float())
    return {"features": torch.cat(feats).numpy(), "logits": torch.cat(logits).numpy()}


@torch.no_grad()
def decode(model: CodeTransformer, tokens: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """(N, 265) tokens -> (N, 80, 848) [0, 1] mels (clamped)."""
    out = []
    for a in range(0, len(tokens), batch):
        out.append(from_model_range(model.decode(tokens[a : a + batch])[:, 0].cpu()).clamp(0, 1))
    return torch.cat(out)


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(n)`` without fixed points (n >= 2)."""
    rng = np.random.default_rng(seed)
    while True:
        p = rng.permutation(n)
        if not (p == np.arange(n)).any():
            return p


def score(
    name: str,
    out: dict[str, np.ndarray],
    asked: np.ndarray,
    real: dict[str, np.ndarray],
    pair: np.ndarray | None,
    paired_class: np.ndarray | None = None,
) -> dict:
    """Metrics of one set (see the module docstring)."""
    pred = out["logits"].argmax(1)
    row: dict = {"set": name, "n": int(len(pred)), "accuracy": float((pred == asked).mean())}
    if paired_class is not None:
        row["accuracy_vs_paired_clip_class"] = float((pred == paired_class).mean())
    if pair is not None:
        row["fid"] = float(frechet_distance_from_embeddings(out["features"], real["features"]))
        row["mkl"] = float(per_pair_kl(real["logits"][pair], out["logits"]).mean())
    c = real["logits"].shape[1]
    conf = np.zeros((c, c), dtype=np.int64)
    np.add.at(conf, (asked, pred), 1)
    row["confusion"] = conf.tolist()
    return row


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model, name = load_transformer(args.transformer)
    if model.kind != "class":
        raise SystemExit(f"{name}: a {model.kind!r} model; this benchmark needs a class model")
    judge, jinfo = load_trained_judge(args.judge)
    classes = list(jinfo["classes"])
    if model.classes != classes:
        raise SystemExit(f"the model's classes {model.classes} differ from the judge's {classes}")
    data = Path(args.data)
    ids, labels, test_mels = clip_mels(data, "test")
    _, vlabels, valid_mels = clip_mels(data, "valid")
    target = np.array([classes.index(x) for x in labels])
    vtarget = np.array([classes.index(x) for x in vlabels])
    real = judge_outputs(judge, test_mels)
    rows = [score("real test clips", real, target, real, None)]
    # validation clips paired with the test clip at the same position of the same class
    vpair = np.empty(len(vtarget), dtype=np.int64)
    for c in range(len(classes)):
        t_idx, v_idx = np.nonzero(target == c)[0], np.nonzero(vtarget == c)[0]
        vpair[v_idx] = t_idx[np.arange(len(v_idx)) % len(t_idx)]
    rows.append(
        score("real validation clips", judge_outputs(judge, valid_mels), vtarget, real, vpair)
    )
    codec = model.first_stage_model
    test_tokens = encode_mels(codec, list(test_mels))
    rec = decode(model, test_tokens)
    rec_out = judge_outputs(judge, rec)
    rows.append(
        score("codec reconstructions (upper bound)", rec_out, target, real, np.arange(len(target)))
    )
    k = args.samples_per_clip
    pair = np.repeat(np.arange(len(target)), k)
    asked = target[pair]
    settings = SamplingSettings(
        temperature=args.temperature, top_k=args.top_k or model.vocab_size // 2
    )
    seeds = [args.seed + i for i in range(len(pair))]
    t0 = time.perf_counter()
    tokens = sample_tokens(model, torch.from_numpy(asked)[:, None], settings, seeds=seeds)
    sample_s = time.perf_counter() - t0
    gen = decode(model, tokens)
    gen_out = judge_outputs(judge, gen)
    rows.append(score("transformer samples", gen_out, asked, real, pair))
    perm = derangement(len(classes), args.seed)
    wrong = perm[asked]
    tokens_w = sample_tokens(model, torch.from_numpy(wrong)[:, None], settings,
                             seeds=[s + 10**6 for s in seeds])  # fmt: skip
    wrong_out = judge_outputs(judge, decode(model, tokens_w))
    rows.append(score("samples of a wrong class (shuffled)", wrong_out, wrong, real, pair, asked))
    g = torch.Generator().manual_seed(args.seed)
    rand = torch.randint(0, model.vocab_size, (len(pair), model.sequence_length), generator=g)
    rows.append(
        score("random tokens", judge_outputs(judge, decode(model, rand)), asked, real, pair)
    )
    return {
        "transformer": name,
        "judge": str(Path(args.judge).name),
        "classes": classes,
        "test_clips": len(target),
        "samples_per_clip": k,
        "settings": settings.to_dict(),
        "seed": args.seed,
        "sampling_seconds": round(sample_s, 2),
        "sampling_seconds_per_clip": round(sample_s / len(pair), 4),
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "rows": rows,
    }


def markdown(result: dict) -> str:
    lines = [
        f"Transformer `{result['transformer']}`; judge: the sfx10 VGGish-ish classifier "
        f"(`{result['judge']}`), not Melception; {result['test_clips']} test clips x "
        f"{result['samples_per_clip']} samples, top-k {result['settings']['top_k']}, temperature "
        f"{result['settings']['temperature']}; FID on the judge's 64-d penultimate features, MKL "
        "on its logits (both against the real test clips; lower is better). Chance accuracy 10 %.",
        "",
        "| set | n | judge accuracy | FID | MKL |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        acc = f"{r['accuracy']:.3f}"
        if "accuracy_vs_paired_clip_class" in r:
            acc += f" (vs the clip's true class: {r['accuracy_vs_paired_clip_class']:.3f})"
        fid = f"{r['fid']:.2f}" if "fid" in r else "-"
        mkl = f"{r['mkl']:.3f}" if "mkl" in r else "-"
        lines.append(f"| {r['set']} | {r['n']} | {acc} | {fid} | {mkl} |")
    gen = next(r for r in result["rows"] if r["set"] == "transformer samples")
    lines += [
        "",
        "Confusion of the transformer samples (rows: class asked for, columns: judge):",
        "",
    ]
    cls = result["classes"]
    lines.append("| asked \\ judged | " + " | ".join(cls) + " |")
    lines.append("|---|" + "---:|" * len(cls))
    for name, row in zip(cls, gen["confusion"]):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        f"Sampling: {result['sampling_seconds']} s for {gen['n']} clips in one batch "
        f"({result['sampling_seconds_per_clip']} s per clip), {result['threads']} thread(s), "
        f"{result['machine']}, torch {result['torch']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--transformer", default="small")
    p.add_argument("--data", default="/tmp/sfx10", help="tools/build_sfx_dataset.py output")
    p.add_argument("--judge", default=str(JUDGE))
    p.add_argument("--samples-per-clip", type=int, default=5)
    p.add_argument("--top-k", type=int, default=None, help="(default n_codes // 2)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--markdown", default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    result = run(args)
    text = markdown(result)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
