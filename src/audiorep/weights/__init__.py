"""Pretrained weights: a registry of published files, a cache, verified resumable downloads.

* Cache: ``$AUDIOREP_HOME`` or ``~/.cache/audiorep``. Raw downloads live in
  ``<cache>/<name>/<filename>``, converted audiorep files in ``<cache>/vggish/``.
* Nothing is downloaded at import time, nor by :func:`resolve_vggish_weights` in ``auto`` mode:
  only :func:`fetch` / :func:`download` (and resolving an explicit registry name) touch the
  network.
* ``AUDIOREP_OFFLINE=1`` forbids every download; errors then say which file to place where,
  or to pass ``--weights PATH``.
* Downloads stream to ``<dst>.part``, resume it with an HTTP ``Range`` request, check the
  sha256 (full digest, or the 8-hex prefix torch.hub-style file names carry) and only then
  rename the file into place.

Modules: ``cache.py`` (folder, offline mode, errors), ``registry.py`` (published files),
``download.py`` (fetch / download / verify), ``vggish.py`` (resolving VGGish weights).
"""

from audiorep.hashing import file_sha256
from audiorep.weights.cache import (
    ENV_HOME,
    ENV_OFFLINE,
    ChecksumError,
    DownloadError,
    OfflineError,
    UnpinnedWeightsWarning,
    WeightsError,
    cache_dir,
    is_offline,
)
from audiorep.weights.download import download, fetch, verify
from audiorep.weights.registry import (
    AUTO_ORDER,
    REGISTRY,
    WeightsEntry,
    cached_path,
    converted_path,
    get_entry,
)
from audiorep.weights.vggish import resolve_vggish_weights

sha256_file = file_sha256  # the name this module has always exported

__all__ = [
    "AUTO_ORDER",
    "ENV_HOME",
    "ENV_OFFLINE",
    "REGISTRY",
    "ChecksumError",
    "DownloadError",
    "OfflineError",
    "UnpinnedWeightsWarning",
    "WeightsEntry",
    "WeightsError",
    "cache_dir",
    "cached_path",
    "converted_path",
    "download",
    "fetch",
    "get_entry",
    "is_offline",
    "resolve_vggish_weights",
    "sha256_file",
    "verify",
]
