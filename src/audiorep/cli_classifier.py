"""Compatibility alias for one release: the classifier commands moved to ``audiorep.cli``.

The library parts moved too: :class:`PackedAudioSet` and :class:`BatchLoader` to
:mod:`audiorep.data.packed`; :func:`load_classifier`, :func:`classify_quantized`,
:func:`tag_file` and :func:`top_classes` to :mod:`audiorep.heads.tagging`;
:func:`seed_everything` to :mod:`audiorep.heads.training`.
"""

from audiorep.cli.classifier import RANDOM_WEIGHTS_WARNING, register  # noqa: F401
from audiorep.data.packed import WINDOW_FRAMES, BatchLoader, PackedAudioSet  # noqa: F401
from audiorep.heads.tagging import (  # noqa: F401
    TagResult,
    classify_quantized,
    load_classifier,
    tag_file,
    top_classes,
)
from audiorep.heads.training import seed_everything  # noqa: F401

add_commands = register
