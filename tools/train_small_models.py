"""Train the small codec and vocoder shipped with audiorep (docs/codec.md), on a CPU budget.

    python tools/codec_corpus_lists.py /tmp/sfx10 ../shared/audio /tmp/corpus
    python tools/train_small_models.py codec   /tmp/corpus OUT_DIR [--minutes 25]
    python tools/train_small_models.py vocoder /tmp/corpus OUT_DIR [--minutes 25]

Each run uses one CPU thread (the two can run side by side on a 2-core machine) and stops
after the given budget of its own CPU time (other work on the machine does not shrink it);
the best held-out model is OUT_DIR/codec.safetensors or
OUT_DIR/vocoder.safetensors. Run again with the same arguments to continue (resume).
"""

from __future__ import annotations

import argparse
import logging

import torch

from audiorep.models.vqgan import VQGANConfig
from audiorep.specvqgan.audio_corpus import AudioCorpus
from audiorep.specvqgan.codec_training import CodecTrainConfig, train_codec
from audiorep.specvqgan.vocoder_training import VocoderTrainConfig, train_vocoder

#: The small codec: the authors' encoder / decoder layout at a quarter of the width, one
#: residual block per level, no attention; VAS's 128 codes of 64 dimensions. 1.41 M parameters.
SMALL_CODEC = {
    "ch": 32,
    "ch_mult": (1, 1, 2, 2, 2),
    "num_res_blocks": 1,
    "attn_resolutions": (),
    "z_channels": 64,
    "embed_dim": 64,
    "n_embed": 128,
}
CODEC_RUN = CodecTrainConfig(
    model=VQGANConfig(**SMALL_CODEC).to_dict(),
    # L1 + codebook loss only on a CPU budget: no LPAPS (the authors' README advises
    # perceptual_weight 0 too) and the GAN would start after the budget.
    loss={"disc_start": 10**9, "perceptual_weight": 0.0},
    batch_size=8,
    learning_rate=5e-4,
    crop_frames=128,
    lpaps=False,
    eval_every=200,
    restart_dead_codes=50,
)
#: The released MelGAN size (ngf 32, 4.27 M parameters), trained on the mel L1 loss alone
#: within the budget (generator warm-up; the GAN would start after it).
VOCODER_RUN = VocoderTrainConfig(
    batch_size=8,
    learning_rate=5e-4,
    disc_start=10**9,
    mel_loss_weight=45.0,
    eval_every=100,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=("codec", "vocoder"))
    p.add_argument("corpus", help="folder with train.txt and heldout.txt")
    p.add_argument("out_dir")
    p.add_argument("--minutes", type=float, default=25.0, help="CPU-time budget")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train = AudioCorpus.from_source(f"{args.corpus}/train.txt", progress=True)
    held = AudioCorpus.from_source(f"{args.corpus}/heldout.txt", progress=True)
    kw = {"heldout": held, "max_cpu_seconds": args.minutes * 60, "progress": False}
    if args.what == "codec":
        train_codec(train, args.out_dir, CODEC_RUN, checkpoint_every=200, **kw)
    else:
        train_vocoder(train, args.out_dir, VOCODER_RUN, checkpoint_every=100, **kw)


if __name__ == "__main__":
    main()
