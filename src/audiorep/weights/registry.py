"""The registry of published weight files: URLs, checksums, sizes, converters, cache paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from audiorep.weights.cache import cache_dir

# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class WeightsEntry:
    """One published file.

    Attributes:
        name: registry key, e.g. ``"vggish-tf"``.
        urls: mirrors, tried in order.
        filename: name in the cache, ``cache_dir() / name / filename``.
        sha256: full hex digest when a credible published value is known, else ``None``.
        sha256_prefix: leading hex digits of the digest (torch.hub file-name convention).
        size: exact size in bytes when known.
        licence: licence of the file as published.
        description: one line for ``audiorep weights list``.
        kind: ``"model"`` (network weights) or ``"pca"`` (AudioSet PCA parameters).
        converter: which reader turns it into audiorep tensors (informational: the converter
            detects the format from the content).
        companions: other entries fetched with this one by :func:`resolve_vggish_weights`
            (the matching PCA file).
        md5: full hex MD5 digest when the publisher gives only that (SpecVQGAN's files); a
            weaker check than sha256, recorded so a file can be matched against the authors'
            published value. It does not make an entry :attr:`pinned`.
    """

    name: str
    urls: tuple[str, ...]
    filename: str
    sha256: str | None
    sha256_prefix: str | None
    size: int | None
    licence: str
    description: str
    kind: str
    converter: str
    companions: tuple[str, ...] = ()
    md5: str | None = None

    @property
    def pinned(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix)


_TORCHVGGISH_RELEASE = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/"

REGISTRY: dict[str, WeightsEntry] = {
    entry.name: entry
    for entry in (
        WeightsEntry(
            name="vggish-tf",
            urls=("https://storage.googleapis.com/audioset/vggish_model.ckpt",),
            filename="vggish_model.ckpt",
            # No published digest found (searched code, issues and pages, 2026-11): unpinned.
            sha256=None,
            sha256_prefix=None,
            size=None,  # about 277 MB
            licence="Apache-2.0",
            description="Google's reference VGGish TF checkpoint (~277 MB); converting it "
            "needs TensorFlow once",
            kind="model",
            converter="tf_checkpoint",
            companions=("vggish-pca-tf",),
        ),
        WeightsEntry(
            name="vggish-pca-tf",
            urls=("https://storage.googleapis.com/audioset/vggish_pca_params.npz",),
            filename="vggish_pca_params.npz",
            sha256=None,  # no published digest found either
            sha256_prefix=None,
            size=None,
            licence="Apache-2.0",
            description="Google's AudioSet PCA/whitening parameters for the postprocessor",
            kind="pca",
            converter="pca_npz",
        ),
        WeightsEntry(
            name="vggish-torchvggish",
            urls=(_TORCHVGGISH_RELEASE + "vggish-10086976.pth",),
            filename="vggish-10086976.pth",
            # Full digest as pinned by uncharted-distil/distil-primitives
            # (distil/primitives/audio_transfer.py, D3M "file_digest" of this URL); the same
            # value is pinned by unrelated installer scripts, and it starts with the
            # file name's torch.hub prefix 10086976.
            sha256="10086976245803799d9194e9a73d9b6c1549c71d1b80106f5cade5608a561f4b",
            sha256_prefix="10086976",
            size=None,  # about 275 MB
            licence="Apache-2.0 (torchvggish port of Google's weights)",
            description="torchvggish's port of the same weights (~275 MB); no TensorFlow needed",
            kind="model",
            converter="torchvggish",
            companions=("vggish-pca-torchvggish",),
        ),
        WeightsEntry(
            name="vggish-pca-torchvggish",
            urls=(_TORCHVGGISH_RELEASE + "vggish_pca_params-970ea276.pth",),
            filename="vggish_pca_params-970ea276.pth",
            sha256=None,  # only the torch.hub file-name prefix is published
            sha256_prefix="970ea276",
            size=None,
            licence="Apache-2.0 (torchvggish port of Google's PCA parameters)",
            description="torchvggish's copy of the AudioSet PCA parameters",
            kind="pca",
            converter="torchvggish_pca",
        ),
    )
}

# CNN14 (PANNs) and AST checkpoints. Read them with audiorep.convert.cnn14.load_cnn14_weights /
# audiorep.convert.ast.load_ast_weights (torch.load(weights_only=True) / safetensors only).
# No published sha256 was found for any of them (searched code, issues and pages, 2026-11),
# so they are unpinned like Google's files: the download warns and prints the digest.
for _entry in (
    WeightsEntry(
        name="cnn14-16k",
        urls=(
            "https://zenodo.org/records/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1",
            # the form the PANNs README documents (redirects to the one above)
            "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth?download=1",
        ),
        filename="Cnn14_16k_mAP=0.438.pth",
        sha256=None,
        sha256_prefix=None,
        size=None,  # about 330 MB
        licence="CC-BY-4.0 (Zenodo record 3987831, PANNs)",
        description="PANNs CNN14 16 kHz AudioSet tagger (mAP 0.438, ~330 MB; Kong et al. 2020)",
        kind="model",
        converter="panns_cnn14",
    ),
    WeightsEntry(
        name="ast-audioset",
        urls=("https://www.dropbox.com/s/cv4knew8mvbrnvq/audioset_0.4593.pth?dl=1",),
        filename="audioset_10_10_0.4593.pth",
        sha256=None,
        sha256_prefix=None,
        size=None,  # about 350 MB
        licence="BSD-3-Clause (YuanGongND/ast)",
        description="AST AudioSet model, fstride = tstride = 10, mAP 0.4593 (as linked by the "
        "AST README; ~350 MB)",
        kind="model",
        converter="ast",
    ),
    WeightsEntry(
        name="ast-audioset-hf",
        urls=(
            "https://huggingface.co/MIT/ast-finetuned-audioset-10-10-0.4593/resolve/main/"
            "model.safetensors",
        ),
        filename="model.safetensors",
        sha256=None,
        sha256_prefix=None,
        size=None,
        licence="BSD-3-Clause (MIT/ast-finetuned-audioset-10-10-0.4593)",
        description="The same AST AudioSet weights as converted by Hugging Face transformers "
        "(safetensors; a mirror when Dropbox fails)",
        kind="model",
        converter="ast_hf",
    ),
):
    REGISTRY[_entry.name] = _entry
del _entry

# SpecVQGAN's spectrogram classifiers and their input statistics, as the authors' code downloads
# them (specvqgan/util.py: URL_MAP, CKPT_MAP, MD5_MAP; README "Evaluation" section; repository
# v-iashin/SpecVQGAN @ 33c601d). The authors publish md5 only; no sha256 is published for the two
# .pt files (searched code, issues and pages, 2026-12), so they are unpinned here and carry their
# md5. Read them with audiorep.convert.specvqgan (torch.load(weights_only=True) with an explicit
# NumPy allow-list). LPAPS has no weights file of its own: the authors' LPAPS reads
# vggishish16.pt (their name for it: "vggishish_lpaps") and the statistics file below, and no
# trained LPAPS heads were ever published (SpecVQGAN Issue #13).
_SPECVQGAN_BUCKET = (
    "https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/specvqgan_public/"
)
_SPECVQGAN_RAW = (
    "https://raw.githubusercontent.com/v-iashin/SpecVQGAN/33c601d6dbb83867b8af5ad9b1613c31bafb4a40/"
)
for _entry in (
    WeightsEntry(
        name="specvqgan-vggishish16",
        urls=(_SPECVQGAN_BUCKET + "vggishish16.pt",),
        filename="vggishish16.pt",
        sha256=None,  # unknown: only the md5 is published
        sha256_prefix=None,
        size=None,  # about 1.54 GB (README); the exact size is not published
        licence="MIT (v-iashin/SpecVQGAN; trained on VGGSound)",
        description="SpecVQGAN's VGGish-ish classifier (VGGSound, 309 classes; also LPAPS's "
        "backbone, the authors' 'vggishish_lpaps'); a training checkpoint, ~1.54 GB",
        kind="model",
        converter="specvqgan_pt",
        companions=("specvqgan-mel-stats",),
        md5="197040c524a07ccacf7715d7080a80bd",
    ),
    WeightsEntry(
        name="specvqgan-melception",
        urls=(_SPECVQGAN_BUCKET + "melception-21-05-10T09-28-40.pt",),
        filename="melception-21-05-10T09-28-40.pt",
        sha256=None,  # unknown: only the md5 is published
        sha256_prefix=None,
        size=None,  # about 0.27 GB (README); the exact size is not published
        licence="MIT (v-iashin/SpecVQGAN; trained on VGGSound)",
        description="SpecVQGAN's Melception (Inception-v3 on mels, VGGSound, 309 classes): "
        "the FID / IS / KID / MKL feature extractor; a training checkpoint, ~0.27 GB",
        kind="model",
        converter="specvqgan_pt",
        companions=("specvqgan-mel-stats",),
        md5="a71a41041e945b457c7d3d814bbcf72d",
    ),
    WeightsEntry(
        name="specvqgan-mel-stats",
        urls=(
            _SPECVQGAN_BUCKET + "train_means_stds_melspec_10s_22050hz.txt",
            # the same bytes in the repository at the commit studied (md5 checked)
            _SPECVQGAN_RAW
            + "specvqgan/modules/losses/vggishish/data/train_means_stds_melspec_10s_22050hz.txt",
        ),
        filename="train_means_stds_melspec_10s_22050hz.txt",
        # computed here from the repository's copy, whose md5 equals the published one
        sha256="77e3ce8a878a837231581855434e2a85926b87d5cad0d57a3d0cad3292b2a5cc",
        sha256_prefix=None,
        size=1760,
        licence="MIT (v-iashin/SpecVQGAN)",
        description="VGGSound per-mel-bin mean/std (80 rows): the input normalisation of "
        "VGGish-ish and Melception and LPAPS's scaling layer (also shipped with audiorep)",
        kind="model",  # model input statistics (LPAPS buffers), not AudioSet PCA parameters
        converter="specvqgan_mel_stats",
        md5="f449c6fd0e248936c16f6d22492bb625",
    ),
):
    REGISTRY[_entry.name] = _entry
del _entry

#: Converted files ``resolve_vggish_weights("auto")`` looks for, best first.
AUTO_ORDER = ("vggish-tf", "vggish-torchvggish")


def get_entry(name: str) -> WeightsEntry:
    """Registry lookup with an error that lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def cached_path(name: str) -> Path:
    """Where :func:`fetch` keeps registry entry ``name``: ``cache_dir()/name/filename``."""
    return cache_dir() / name / get_entry(name).filename


def converted_path(name: str) -> Path:
    """Converted audiorep file for ``name``: ``<cache>/vggish/<name>.safetensors``.

    Google's checkpoint (``vggish-tf``) is the canonical one, ``<cache>/vggish/vggish.safetensors``.
    """
    get_entry(name)
    stem = "vggish" if name == "vggish-tf" else name
    return cache_dir() / "vggish" / f"{stem}.safetensors"
