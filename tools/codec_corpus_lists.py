"""Write the train / held-out list files of the small codec and vocoder runs (docs/codec.md).

Training: sfx10's train and valid clips (tools/build_sfx_dataset.py) and the first 80 % of four
CC-BY / public-domain music recordings of ../shared/audio; held out: sfx10's test clips and
the last 20 % of the same recordings. No CC BY-NC recording is used.

    python tools/codec_corpus_lists.py SFX10_DIR SHARED_AUDIO_DIR OUT_DIR
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import soundfile as sf

MUSIC = (  # file under librosa-data/, licence
    ("Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq.ogg", "PD"),
    ("Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg", "CC BY 3.0"),
    ("Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.hq.ogg", "CC BY 3.0"),
    ("Kevin_MacLeod_-_Vibe_Ace.hq.ogg", "CC BY 3.0"),
)
TRAIN_FRACTION = 0.8


def main(sfx10: Path, shared_audio: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    train, held = [], []
    with open(sfx10 / "clips.csv", newline="") as f:
        for row in csv.DictReader(f):
            # clips.csv lists the mels: <class>/melspec_10s_22050hz/<id>_mel.npy -> <class>/<id>.wav
            mel = Path(row["path"])
            path = (sfx10 / mel.parts[0] / (mel.name.removesuffix("_mel.npy") + ".wav")).resolve()
            (held if row["split"] == "test" else train).append(f"{path}")
    for name, _licence in MUSIC:
        path = (shared_audio / "librosa-data" / name).resolve()
        seconds = sf.info(str(path)).duration
        cut = round(seconds * TRAIN_FRACTION, 3)
        train.append(f"{path} 0 {cut}")
        held.append(f"{path} {cut} {seconds:.3f}")
    (out / "train.txt").write_text("\n".join(train) + "\n")
    (out / "heldout.txt").write_text("\n".join(held) + "\n")
    print(f"{out}: {len(train)} training and {len(held)} held-out rows")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*(Path(a) for a in sys.argv[1:]))
