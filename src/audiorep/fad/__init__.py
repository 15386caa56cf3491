"""``audiorep fad``: FAD between folders of audio, embedding folders or statistics files.

* :mod:`audiorep.fad.presets` - the ``vggish`` / ``google`` / ``torchvggish`` pipelines;
* :mod:`audiorep.fad.cache` - per-file embeddings keyed by content hash + settings;
* :mod:`audiorep.fad.sources` - turning a path into an :class:`EmbeddingSet`;
* :mod:`audiorep.fad.report` - FAD, FAD-inf, KID and per-clip FD of two sets;
* :mod:`audiorep.fad.plot` - the ``--plot`` figure (matplotlib).
"""

from audiorep.fad.cache import EmbeddingCache
from audiorep.fad.presets import PRESETS, FadPreset, get_preset
from audiorep.fad.report import (
    ClipScore,
    FadReport,
    SettingsMismatchError,
    check_comparable,
    compare_sets,
)
from audiorep.fad.sources import EmbeddingSet, SetError, open_set

__all__ = [
    "PRESETS",
    "ClipScore",
    "EmbeddingCache",
    "EmbeddingSet",
    "FadPreset",
    "FadReport",
    "SetError",
    "SettingsMismatchError",
    "check_comparable",
    "compare_sets",
    "get_preset",
    "open_set",
]
