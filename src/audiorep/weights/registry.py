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
        bundled: file name under ``audiorep/weights/data/`` when the file ships inside the
            package (the small models trained here): nothing is downloaded, the sha256 is
            still checked.
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
    bundled: str | None = None

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

# SpecVQGAN's released codebooks and transformers: one gzipped Lightning logdir each
# (<date>_<name>/{checkpoints/*.ckpt, configs/*-{project,lightning}.yaml}), linked from the README
# tables "Pretrained Models" with the authors' md5 as the link text (the same md5 values are in
# feature_extraction/demo_utils.maybe_download_model for the VGGSound ones). No sha256 and no
# sizes are published. Unpack with audiorep.convert.archive.extract_archive and read the .ckpt
# with audiorep.convert.lightning (torch.load(weights_only=True); callback classes become inert
# records).
_SPECVQGAN_MODELS = _SPECVQGAN_BUCKET + "models/"
_SPECVQGAN_TARBALLS = (
    # (registry name, logdir, md5, what)
    (
        "specvqgan-codebook-vggsound",
        "2021-05-19T22-16-54_vggsound_codebook",
        "7ea229427297b5d220fb1c80db32dbc5",
        "Spectrogram VQGAN codebook trained on VGGSound (1024 codes; the codec demo's model)",
    ),
    (
        "specvqgan-codebook-vas",
        "2021-06-06T19-42-53_vas_codebook",
        "0024ad3705c5e58a11779d3d9e97cc8a",
        "Spectrogram VQGAN codebook trained on VAS (128 codes)",
    ),
)
# Transformers: (a) VGGSound data + VGGSound codebook, (b) VAS data + VGGSound codebook,
# (c) VAS data + VAS codebook. Names: specvqgan-transformer-<data>[-vggsound-codebook]-<cond>,
# cond = nofeats | <n>feat(s)-bn (BN-Inception RGB+flow) | <n>feat(s)-rn50 (ResNet50) | class.
_SPECVQGAN_TRANSFORMERS = (
    ("vggsound", "nofeats", "2021-06-20T16-35-20_vggsound", "b1f9bb63d831611479249031a1203371"),
    ("vggsound", "1feat-bn", "2021-06-03T11-18-51_vggsound", "f2fe41dab17e232bd94c6d119a807fee"),
    ("vggsound", "1feat-rn50", "2021-07-30T21-03-22_vggsound", "27a61d4b74a72578d13579333ed056f6"),
    ("vggsound", "5feats-bn", "2021-06-03T09-34-10_vggsound", "b082d894b741f0d7a1af9c2732bad70f"),
    ("vggsound", "5feats-rn50", "2021-07-30T21-34-25_vggsound", "f4d7105811589d441b69f00d7d0b8dc8"),
    ("vggsound", "212feats-bn", "2021-06-03T07-27-58_vggsound", "79895ac08303b1536809cad1ec9a7502"),
    (
        "vggsound",
        "212feats-rn50",
        "2021-07-30T21-34-41_vggsound",
        "b222cc0e7aeb419f533d5806a08669fe",
    ),
    ("vggsound", "class", "2021-06-03T00-43-28_vggsound", "98a3788ab973f1c3cc02e2e41ad253bc"),
    (
        "vas-vggsound-codebook",
        "nofeats",
        "2021-06-20T16-34-36_vas",
        "e6b0b5be1f8ac551700f49d29cda50d7",
    ),
    (
        "vas-vggsound-codebook",
        "1feat-bn",
        "2021-06-03T06-32-51_vas",
        "a98a124d6b3613923f28adfacba3890c",
    ),
    (
        "vas-vggsound-codebook",
        "1feat-rn50",
        "2021-07-29T11-47-40_vas",
        "37cd48f06d74176fa8d0f27303841d94",
    ),
    (
        "vas-vggsound-codebook",
        "5feats-bn",
        "2021-06-03T05-51-34_vas",
        "38da002f900fb81275b73e158e919e16",
    ),
    (
        "vas-vggsound-codebook",
        "5feats-rn50",
        "2021-07-29T11-36-00_vas",
        "7b6951a33771ef527f1c1b1f99b7595e",
    ),
    (
        "vas-vggsound-codebook",
        "212feats-bn",
        "2021-06-03T05-38-40_vas",
        "1c4e56077d737677eac524383e6d98d3",
    ),
    (
        "vas-vggsound-codebook",
        "212feats-rn50",
        "2021-07-29T11-52-28_vas",
        "6e553ea44c8bc7a3310961f74e7974ea",
    ),
    (
        "vas-vggsound-codebook",
        "class",
        "2021-06-08T14-41-19_vas",
        "16a816a270f09a76bfd97fe0006c704b",
    ),
    ("vas", "nofeats", "2021-06-20T16-24-38_vas", "ea4945802094f826061483e7b9892839"),
    ("vas", "1feat-bn", "2021-06-09T13-31-37_vas", "8a3adf60baa049a79ae62e2e95014ff7"),
    ("vas", "1feat-rn50", "2021-07-29T14-59-49_vas", "a7a1342030653945e97f68a8112ed54a"),
    ("vas", "5feats-bn", "2021-06-09T14-14-24_vas", "4e1b24207780eff26a387dd9317d054d"),
    ("vas", "5feats-rn50", "2021-07-29T14-51-25_vas", "78b8d42be19dd1b0a346b1f512967302"),
    ("vas", "212feats-bn", "2021-06-09T15-17-18_vas", "4542632b3c5bfbf827ea7868cedd4634"),
    ("vas", "212feats-rn50", "2021-07-29T13-34-39_vas", "dc2b5cbd28ad98d2f9ca4329e8aa0f64"),
    ("vas", "class", "2021-06-09T09-42-07_vas", "412b01be179c2b8b02dfa0c0b49b9a0f"),
)
_SPECVQGAN_CONDITIONS = {
    "nofeats": "no visual features",
    "1feat-bn": "1 BN-Inception RGB+flow feature",
    "1feat-rn50": "1 ResNet50 feature",
    "5feats-bn": "5 BN-Inception RGB+flow features",
    "5feats-rn50": "5 ResNet50 features",
    "212feats-bn": "212 BN-Inception RGB+flow features",
    "212feats-rn50": "212 ResNet50 features",
    "class": "the class label",
}
_SPECVQGAN_SETTINGS = {
    "vggsound": "trained on VGGSound, VGGSound codebook",
    "vas-vggsound-codebook": "trained on VAS, VGGSound codebook",
    "vas": "trained on VAS, VAS codebook",
}
_SPECVQGAN_TARBALLS += tuple(
    (
        f"specvqgan-transformer-{setting}-{cond}",
        f"{stamp}_transformer",
        md5,
        f"SpecVQGAN transformer ({_SPECVQGAN_SETTINGS[setting]}), conditioned on "
        f"{_SPECVQGAN_CONDITIONS[cond]}",
    )
    for setting, cond, stamp, md5 in _SPECVQGAN_TRANSFORMERS
)
for _name, _logdir, _md5, _what in _SPECVQGAN_TARBALLS:
    REGISTRY[_name] = WeightsEntry(
        name=_name,
        urls=(f"{_SPECVQGAN_MODELS}{_logdir}.tar.gz",),
        filename=f"{_logdir}.tar.gz",
        sha256=None,  # unknown: only the md5 is published (README table link text)
        sha256_prefix=None,
        size=None,  # not published
        licence="MIT (v-iashin/SpecVQGAN)",
        description=f"{_what}; a Lightning logdir tarball",
        kind="model",
        converter="specvqgan_lightning_tar",
        md5=_md5,
    )
del _name, _logdir, _md5, _what

# SpecVQGAN's MelGAN vocoder (trained on VGGSound): the generator the authors' tools load,
# vocoder/logs/vggsound/best_netG.pt, is committed to the repository (git blob
# 3277182de0554b2a4016ee42c9d0d4127c06ad8c at the commit below, so the commit-pinned URL is
# content-addressed by git), but no md5/sha256 or size is published for it: unpinned here.
# Its args.yml (487 bytes; git blob 173f2720acf1b3e6cd3cb7cab60e83d97cd358cb) is pinned by the
# sha256 computed here from that blob. The *last* (not best) generator netG.pt on the a3s.fi
# bucket carries the md5 the author posted in SpecVQGAN Issue #27 (2023-04-01). Read them with
# audiorep.convert.melgan (args.yml through a SafeLoader that admits only argparse.Namespace
# and pathlib paths; the .pt with torch.load(weights_only=True)).
_SPECVQGAN_VOCODER = _SPECVQGAN_RAW + "vocoder/logs/vggsound/"
for _entry in (
    WeightsEntry(
        name="specvqgan-melgan",
        urls=(_SPECVQGAN_VOCODER + "best_netG.pt",),
        filename="best_netG.pt",
        sha256=None,  # not published
        sha256_prefix=None,
        size=None,  # not published
        licence="MIT (v-iashin/SpecVQGAN; MelGAN after descriptinc/melgan-neurips)",
        description="SpecVQGAN's MelGAN generator (VGGSound, 22.05 kHz, 80 mels, hop 256): "
        "best_netG.pt, a plain state dict",
        kind="model",
        converter="melgan_pt",
        companions=("specvqgan-melgan-args",),
    ),
    WeightsEntry(
        name="specvqgan-melgan-args",
        urls=(_SPECVQGAN_VOCODER + "args.yml",),
        filename="args.yml",
        sha256="3bb67f45cccb8f8f7c8449d91b4baa510acf3b078971d8503fe3a9cd05273d30",
        sha256_prefix=None,
        size=487,
        licence="MIT (v-iashin/SpecVQGAN)",
        description="The MelGAN's training arguments (n_mel_channels 80, ngf 32, "
        "n_residual_layers 3, ...): YAML of an argparse.Namespace",
        kind="model",
        converter="melgan_args",
    ),
    WeightsEntry(
        name="specvqgan-melgan-last",
        urls=(_SPECVQGAN_BUCKET + "melgan_ckpt/netG.pt",),
        filename="netG.pt",
        sha256=None,  # only the md5 is published (Issue #27)
        sha256_prefix=None,
        size=None,
        licence="MIT (v-iashin/SpecVQGAN)",
        description="The same MelGAN's last (not best) generator, netG.pt, published for "
        "continued training; a plain state dict",
        kind="model",
        converter="melgan_pt",
        companions=("specvqgan-melgan-args",),
        md5="e9e3ea89122d31e3dec25f585d215335",
    ),
):
    REGISTRY[_entry.name] = _entry
del _entry

# torchvision's ImageNet ResNet-50 (IMAGENET1K_V1, what `resnet50(pretrained=True)` gave in
# 2021, when SpecVQGAN's video_features extractor ran): the network of SpecVQGAN's ResNet-50
# video features (audiorep.models.resnet50, audiorep.specvqgan.video.load_resnet50). torchvision
# names its files by the first 8 hex digits of their sha256 (0676ba61). The full digest and size
# are not published by PyTorch; the values below are those recorded independently by several
# public projects that downloaded this URL (searched code, 2026-12: the same 64 hex digits and
# 102,530,333 bytes in unrelated repositories), and they start with the file-name prefix.
REGISTRY["resnet50-imagenet"] = WeightsEntry(
    name="resnet50-imagenet",
    urls=("https://download.pytorch.org/models/resnet50-0676ba61.pth",),
    filename="resnet50-0676ba61.pth",
    sha256="0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
    sha256_prefix="0676ba61",
    size=102530333,
    licence="BSD-3-Clause (torchvision); trained on ImageNet-1k, whose terms limit use to "
    "non-commercial research",
    description="torchvision's ImageNet ResNet-50 (IMAGENET1K_V1, ~98 MB): SpecVQGAN's "
    "ResNet-50 video features (2048-d pool output)",
    kind="model",
    converter="torchvision_resnet50",
)

#: Converted files ``resolve_vggish_weights("auto")`` looks for, best first.
AUTO_ORDER = ("vggish-tf", "vggish-torchvggish")


def get_entry(name: str) -> WeightsEntry:
    """Registry lookup with an error that lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


#: Where bundled files live (``WeightsEntry.bundled``).
BUNDLED_DIR = Path(__file__).parent / "data"


def cached_path(name: str) -> Path:
    """Where :func:`fetch` keeps registry entry ``name``: ``cache_dir()/name/filename``, or the
    file inside the package for a bundled entry."""
    entry = get_entry(name)
    if entry.bundled:
        return BUNDLED_DIR / entry.bundled
    return cache_dir() / name / entry.filename


def converted_path(name: str) -> Path:
    """Converted audiorep file for ``name``: ``<cache>/vggish/<name>.safetensors``.

    Google's checkpoint (``vggish-tf``) is the canonical one, ``<cache>/vggish/vggish.safetensors``.
    """
    get_entry(name)
    stem = "vggish" if name == "vggish-tf" else name
    return cache_dir() / "vggish" / f"{stem}.safetensors"


# Small models trained here and shipped inside the package (docs/codec.md, "Shipped small
# models"; tools/train_small_models.py): trained on CC BY / public-domain recordings and on
# audio rendered here (weights/data/ATTRIBUTION.md). Stored as float16 (loaded as float32; the
# held-out mel L1 of the codec moves by 3e-6, the vocoder's by 6e-7).
for _entry in (
    WeightsEntry(
        name="audiorep-codec-small",
        urls=(),
        filename="codec_small.safetensors",
        sha256="69643efb4308078d7b175320251b7af3ae05e2cef354ece3f9fa63d76919819d",
        sha256_prefix=None,
        size=2835178,
        licence="CC BY 4.0 (trained on CC BY 3.0/4.0 and public-domain audio; see ATTRIBUTION.md)",
        description="small SpecVQGAN codec trained here (1.41 M parameters, 128 codes, 0.19 "
        "kbps); held-out mel L1 0.060",
        kind="model",
        converter="audiorep_codec",
        bundled="codec_small.safetensors",
    ),
    WeightsEntry(
        name="audiorep-melgan-small",
        urls=(),
        filename="melgan_small.safetensors",
        sha256="7e8a4fecc07c8fde999b10f523a13651fc0c3541c2b451efc5acb1fac2bb8681",
        sha256_prefix=None,
        size=8543676,
        licence="CC BY 4.0 (trained on CC BY 3.0/4.0 and public-domain audio; see ATTRIBUTION.md)",
        description="MelGAN generator at the released size (4.27 M parameters) trained here for "
        "25 CPU-minutes; held-out mel L1 0.055",
        kind="model",
        converter="audiorep_melgan",
        bundled="melgan_small.safetensors",
    ),
    WeightsEntry(
        name="audiorep-transformer-small",
        urls=(),
        filename="transformer_small.safetensors",
        sha256="7ef606aa6a0af075898552cf4996dd6b53212321e434fc5647d40c207458678c",
        sha256_prefix=None,
        size=7170032,
        licence="CC BY 4.0 (trained on sfx10: MIT-soundfont renders, CC BY 3.0/4.0 and "
        "public-domain audio; see ATTRIBUTION.md)",
        description="class-conditional SpecVQGAN code transformer trained here on sfx10 over "
        "audiorep-codec-small (3.30 M parameters, 10 classes, 30 CPU-minutes)",
        kind="model",
        converter="audiorep_transformer",
        bundled="transformer_small.safetensors",
    ),
    WeightsEntry(
        name="audiorep-tagger-audioset",
        urls=(),
        filename="tagger_audioset.safetensors",
        sha256="dd5a0913ae755f0786da225eacd42c28f77bf868712ac5d5898df04f98051b78",
        sha256_prefix=None,
        size=8620556,
        licence="CC BY 4.0 (trained on AudioSet's bal_train features, (c) Google, CC BY 4.0; "
        "see ATTRIBUTION.md)",
        description="AudioSet tagger on VGGish features (527 classes): MLP + feature-level "
        "attention ensemble trained here on bal_train only, eval mAP 0.280 / mAUC 0.953 "
        "(4.3 M parameters, float16); audiorep tag's default",
        kind="model",
        converter="audiorep_tagger",
        bundled="tagger_audioset.safetensors",
    ),
):
    REGISTRY[_entry.name] = _entry
del _entry
