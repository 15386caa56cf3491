"""SpecVQGAN as a neural audio codec: audio file -> code grid -> audio (the authors' demo).

Encoding (the authors' ``neural_audio_codec_demo``): decode the file, average its channels,
resample to 22 050 Hz exactly (:func:`audiorep.resample.resample`), take the mel spectrogram
at the clip's own length (§1.2 "demo path": no padding to 10 s), map it to [-1, 1] and encode
it to a grid of code indices, 5 rows (mel regions, low to high) by ``ceil(T / 16)`` columns.
The codec keeps ``16 floor(W / 16)`` frames of a width-``W`` input, so the spectrogram is
first extended to a multiple of 16 frames by repeating its last column (the authors' demo
drops up to 15 frames, ~0.17 s, instead); the decoder's output is cut back to ``T`` frames.
Long inputs are encoded in windows of ``window_frames`` (default 848, the training width):
each window is encoded on its own, so memory stays bounded and the result does not depend on
the file's length.

A :class:`CodeFile` (``.codes``) holds the grid bit-packed at ``ceil(log2 n_codes)`` bits per
code behind a small JSON header (codec identity, frames, duration, the source's sample rate):
about 250 bytes for 10 s with 128 codes. Bitrate, correctly (their issue #39 divided by 1024):
``bits x codes / seconds / 1000`` kbps, e.g. 7 x 265 / 9.85 s = 0.188 kbps for 128 codes and
10 x 265 / 9.85 s = 0.269 kbps for 1024.

Decoding: grid -> [-1, 1] spectrogram -> ``(x + 1) / 2`` -> waveform with the MelGAN when one
is given, else Griffin-Lim (:mod:`audiorep.specvqgan.griffin_lim`).
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiorep.audio import load
from audiorep.frontends.specvqgan import (
    HOP_LENGTH,
    SAMPLE_RATE,
    from_model_range,
    mel_spectrogram,
    to_model_range,
)
from audiorep.models.vqgan import SpectrogramVQGAN
from audiorep.resample import resample
from audiorep.specvqgan.griffin_lim import griffin_lim

PathLike = str | os.PathLike
MAGIC = b"AUDIOREP-CODES\x00\x01"
SUFFIX = ".codes"
LATENT_ROWS = 5
DOWNSAMPLE = 16


class CodeFileError(ValueError):
    """A ``.codes`` file that cannot be read (the message names the file and the problem)."""


def bits_per_code(n_codes: int) -> int:
    """``ceil(log2 n_codes)`` (at least 1): the bits one index needs."""
    return max(1, math.ceil(math.log2(n_codes)))


def bitrate_kbps(n_codes: int, num_codes: int, seconds: float) -> float:
    """``bits per code x codes / seconds / 1000``."""
    return bits_per_code(n_codes) * num_codes / seconds / 1000.0


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Unsigned ints ``< 2**bits``, most significant bit first, zero-padded to a byte."""
    v = np.asarray(values, dtype=np.uint64).ravel()
    if v.size and int(v.max()) >= 1 << bits:
        raise ValueError(f"a code ({int(v.max())}) does not fit in {bits} bits")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    matrix = ((v[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
    return np.packbits(matrix.ravel()).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits]
    if flat.size != count * bits:
        raise ValueError(f"payload holds {flat.size} bits, {count * bits} needed")
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int64)
    return flat.reshape(count, bits).astype(np.int64) @ weights


@dataclass
class CodeFile:
    """A clip's code grid and what decoding needs.

    Attributes:
        codes: int64 ``(5, columns)`` indices (row 0 = lowest mel region).
        n_codes: codebook size. frames: mel frames to return (``T``).
        source_rate: the input file's sample rate (Hz); source_samples: its length.
        codec: identity of the codec (name / config / weights hash) that made the grid.
    """

    codes: np.ndarray
    n_codes: int
    frames: int
    source_rate: int
    source_samples: int
    codec: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.source_samples / self.source_rate

    @property
    def bits(self) -> int:
        return bits_per_code(self.n_codes)

    @property
    def kbps(self) -> float:
        return bitrate_kbps(self.n_codes, self.codes.size, self.seconds)

    def to_bytes(self) -> bytes:
        header = {
            "n_codes": self.n_codes,
            "bits": self.bits,
            "shape": list(self.codes.shape),
            "frames": self.frames,
            "source_rate": self.source_rate,
            "source_samples": self.source_samples,
            "codec": self.codec,
        }
        head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
        return MAGIC + struct.pack("<I", len(head)) + head + pack_bits(self.codes, self.bits)

    def save(self, path: PathLike) -> Path:
        from audiorep.atomic import commit, make_temp

        path = Path(path)
        fd, tmp = make_temp(path.parent, f".{path.name}.", ".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(self.to_bytes())
        commit(tmp, path)
        return path

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "<bytes>") -> CodeFile:
        if not data.startswith(MAGIC):
            raise CodeFileError(f"{where}: not an audiorep .codes file (bad magic)")
        try:
            (n,) = struct.unpack_from("<I", data, len(MAGIC))
            start = len(MAGIC) + 4
            header = json.loads(data[start : start + n])
            rows, cols = (int(s) for s in header["shape"])
            bits = int(header["bits"])
            n_codes = int(header["n_codes"])
            if bits != bits_per_code(n_codes) or rows < 1 or cols < 1:
                raise ValueError(f"inconsistent header {header}")
            codes = unpack_bits(data[start + n :], bits, rows * cols).reshape(rows, cols)
            if int(codes.max()) >= n_codes:
                raise ValueError(f"a code ({int(codes.max())}) is >= n_codes ({n_codes})")
            return cls(
                codes=codes,
                n_codes=n_codes,
                frames=int(header["frames"]),
                source_rate=int(header["source_rate"]),
                source_samples=int(header["source_samples"]),
                codec=dict(header.get("codec", {})),
            )
        except (struct.error, KeyError, TypeError, ValueError) as exc:
            raise CodeFileError(f"{where}: damaged .codes file ({exc})") from None

    @classmethod
    def load(cls, path: PathLike) -> CodeFile:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CodeFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return cls.from_bytes(data, str(path))


def load_audio_22k(path: PathLike) -> tuple[torch.Tensor, int, int]:
    """``(mono float32 (samples,) at 22 050 Hz, source rate, source samples)``."""
    wave, sr = load(path)
    mono = wave.to(torch.float64).mean(dim=0)
    out = resample(mono, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else mono
    return out.to(torch.float32), int(sr), int(wave.shape[-1])


def audio_to_mel(wave: torch.Tensor) -> torch.Tensor:
    """[0, 1] mel ``(80, 1 + n // 256)`` of a 22 050 Hz clip, the authors' demo path."""
    return mel_spectrogram(wave.to(torch.float64), None, max_frames=None).to(torch.float32)


@torch.no_grad()
def encode_mel(
    codec: SpectrogramVQGAN, mel: torch.Tensor, *, window_frames: int = 848
) -> torch.Tensor:
    """int64 ``(5, ceil(T / 16))`` codes of a [0, 1] mel ``(80, T)`` (module docstring)."""
    frames = mel.shape[-1]
    columns = -(-frames // DOWNSAMPLE)
    padded = torch.cat([mel, mel[:, -1:].expand(-1, columns * DOWNSAMPLE - frames)], dim=-1)
    window = max(DOWNSAMPLE, window_frames // DOWNSAMPLE * DOWNSAMPLE)
    device = next(codec.parameters()).device
    grids = []
    for a in range(0, padded.shape[-1], window):
        x = to_model_range(padded[:, a : a + window])[None, None].to(device)
        grids.append(codec.encode_to_codes(x)[0].cpu())
    return torch.cat(grids, dim=-1)


@torch.no_grad()
def decode_codes(
    codec: SpectrogramVQGAN,
    codes: torch.Tensor,
    frames: int | None = None,
    *,
    window_frames: int = 848,
) -> torch.Tensor:
    """[0, 1] mel ``(80, frames)`` (clamped) from a ``(5, columns)`` grid, decoded in the same
    windows it was encoded in."""
    step = max(1, window_frames // DOWNSAMPLE)
    device = next(codec.parameters()).device
    parts = []
    for a in range(0, codes.shape[-1], step):
        grid = torch.as_tensor(codes[:, a : a + step], dtype=torch.long)[None].to(device)
        parts.append(codec.decode_codes(grid)[0, 0].cpu())
    mel = from_model_range(torch.cat(parts, dim=-1)).clamp(0.0, 1.0)
    return mel[:, :frames] if frames is not None else mel


Vocoder = Callable[[torch.Tensor], torch.Tensor]


def mel_to_audio(mel: torch.Tensor, vocoder: Vocoder | None = None) -> torch.Tensor:
    """float32 ``(256 T,)`` waveform at 22 050 Hz: the vocoder's, else Griffin-Lim's (padded
    by one hop so both give ``256 T`` samples)."""
    if vocoder is not None:
        return vocoder(mel).reshape(-1).to(torch.float32)
    wave = griffin_lim(mel)
    return torch.nn.functional.pad(wave, (0, HOP_LENGTH * mel.shape[-1] - wave.shape[-1]))


def plot_comparison(
    path: PathLike,
    original: torch.Tensor,
    rebuilt: torch.Tensor,
    title: str = "",
    label: str = "reconstruction",
) -> bool:
    """Save a PNG of two [0, 1] mels ``(80, T)`` one above the other; False (nothing written)
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional
        return False
    fig, axes = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True)
    for ax, img, name in ((axes[0], original, "original"), (axes[1], rebuilt, label)):
        ax.imshow(img.numpy(), origin="lower", aspect="auto", vmin=0, vmax=1, cmap="magma")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("mel band")
    axes[1].set_xlabel("frame (11.6 ms)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def codec_identity(codec: SpectrogramVQGAN, name: str = "") -> dict[str, Any]:
    """What a ``.codes`` file records about the codec that wrote it."""
    from audiorep.hashing import state_dict_sha256

    return {
        "name": name,
        "n_codes": codec.config.n_embed,
        "weights_sha256": state_dict_sha256(codec)[:16],
    }


def encode_file(
    codec: SpectrogramVQGAN, path: PathLike, *, name: str = "", window_frames: int = 848
) -> tuple[CodeFile, torch.Tensor]:
    """``(CodeFile, [0, 1] mel of the input)`` for an audio file of any rate and length."""
    wave, sr, n = load_audio_22k(path)
    mel = audio_to_mel(wave)
    codes = encode_mel(codec, mel, window_frames=window_frames)
    cf = CodeFile(
        codes=codes.numpy().astype(np.int64),
        n_codes=codec.config.n_embed,
        frames=mel.shape[-1],
        source_rate=sr,
        source_samples=n,
        codec=codec_identity(codec, name),
    )
    return cf, mel


def check_codec_matches(codes: CodeFile, codec: SpectrogramVQGAN, where: str) -> None:
    """Refuse a grid made by another codec (different size or weights)."""
    if codes.n_codes != codec.config.n_embed:
        raise CodeFileError(
            f"{where}: made by a codec with {codes.n_codes} codes, this one has "
            f"{codec.config.n_embed}"
        )
    want = codes.codec.get("weights_sha256")
    have = codec_identity(codec)["weights_sha256"]
    if want and want != have:
        raise CodeFileError(
            f"{where}: made by codec weights {want} ({codes.codec.get('name') or 'unnamed'}), "
            f"these are {have}: decoding would give noise; pass the codec that encoded it"
        )


__all__ = [
    "CodeFile",
    "CodeFileError",
    "SUFFIX",
    "audio_to_mel",
    "bitrate_kbps",
    "bits_per_code",
    "check_codec_matches",
    "codec_identity",
    "decode_codes",
    "encode_file",
    "encode_mel",
    "load_audio_22k",
    "mel_to_audio",
    "pack_bits",
    "plot_comparison",
    "unpack_bits",
]
