"""Decoding audio files to ``(channels, samples)`` float32 tensors.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, Opus and MP3 (libsndfile >= 1.1). Containers
such as MP4/M4A/MOV/MKV/WebM go through PyAV (``pip install 'audiorep[av]'``). PCM WAV samples
come back scaled by 1/32768 exactly like the VGGish reference's ``int16 / 32768.0``.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

#: Extensions decoded with PyAV rather than libsndfile.
CONTAINER_EXTENSIONS = frozenset({".mp4", ".m4a", ".m4v", ".mov", ".mkv", ".webm", ".aac", ".3gp"})
#: Extensions audiorep treats as audio when scanning folders.
AUDIO_EXTENSIONS = (
    frozenset(
        {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf"}
    )
    | CONTAINER_EXTENSIONS
)


#: Sample rates accepted from files, Hz: below 1 kHz a "file" is almost surely not audio (a
#: 20 KB WAV at 1 Hz claims 10,000 s and made the frontend allocate 3.2 GB).
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000
#: Longest decoded audio accepted per file, seconds (``AUDIOREP_MAX_SECONDS`` overrides it,
#: as does ``--max-seconds`` on the commands that decode audio).
DEFAULT_MAX_SECONDS = 4 * 3600.0
ENV_MAX_SECONDS = "AUDIOREP_MAX_SECONDS"


def max_seconds() -> float:
    """The per-file ceiling on decoded audio in seconds (``AUDIOREP_MAX_SECONDS`` or 4 h)."""
    text = os.environ.get(ENV_MAX_SECONDS)
    if not text:
        return DEFAULT_MAX_SECONDS
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{ENV_MAX_SECONDS}={text!r}: expected a number of seconds") from None
    if not value > 0:
        raise ValueError(f"{ENV_MAX_SECONDS}={text!r}: must be > 0")
    return value


_READ_BLOCK = 1 << 16  # frames per soundfile read


class DamagedAudioWarning(UserWarning):
    """A file decoded only in part (truncated or damaged); the message names it."""


class AudioLoadError(ValueError):
    """A file could not be decoded into audio; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def check_waveform(
    waveform: torch.Tensor, sample_rate: int | None = None, what: str = "waveform"
) -> torch.Tensor:
    """Refuse what would otherwise give finite, normal-looking but meaningless embeddings.

    NaN/Inf samples (one NaN used to move an embedding row by 1.35 without a word) and a
    non-positive or non-integral sample rate raise ``ValueError`` naming ``what``. Returns
    ``waveform`` unchanged.
    """
    if sample_rate is not None:
        if isinstance(sample_rate, bool) or int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"{what}: sample rate must be a positive whole number of Hz, "
                             f"got {sample_rate!r}")  # fmt: skip
    if torch.is_floating_point(waveform) and waveform.numel():
        bad = ~torch.isfinite(waveform)
        if bool(bad.any()):
            first = tuple(int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(
                f"{what}: {int(bad.sum())} non-finite sample(s) (NaN/Inf), the first at index "
                f"{first}; clean or drop them before embedding"
            )
    return waveform


def native_path(path: str | os.PathLike) -> bytes:
    """The path as the operating system's bytes: soundfile encodes ``str`` paths itself and
    fails on names that are not valid UTF-8 (undecodable bytes arrive as surrogates)."""
    return os.fsencode(path)


def require_regular_file(path: Path) -> None:
    """Refuse what is not a plain file before opening it: opening a FIFO blocks until a
    writer appears (an ``embed`` run hung forever), devices never end, sockets cannot be read.

    Raises:
        AudioLoadError: no such file, a directory, or not a regular file (the kind is named).
    """
    try:
        mode = os.stat(path).st_mode  # follows links; never blocks, even on a FIFO
    except FileNotFoundError:
        kind = "dangling symbolic link" if os.path.islink(path) else "no such file"
        raise AudioLoadError(path, kind) from None
    except OSError as exc:  # ELOOP (symlink loop), EACCES, ENAMETOOLONG, ...
        raise AudioLoadError(path, f"cannot access ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode):
        return
    kinds = {stat.S_ISDIR: "a directory", stat.S_ISFIFO: "a FIFO (named pipe)",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
             stat.S_ISSOCK: "a socket"}  # fmt: skip
    kind = next((k for test, k in kinds.items() if test(mode)), "not a regular file")
    raise AudioLoadError(path, f"is {kind}, not an audio file")


def decode_reason(exc: BaseException) -> str:
    """A decoder's error as a reason for :class:`AudioLoadError` (which names the file itself):
    libsndfile says "File does not exist or is not a regular file" for data it does not
    recognise, which misleads once the file is known to exist."""
    text = re.sub(r"^Error opening .*?: ", "", str(exc))
    if "does not exist or is not a regular file" in text or "Format not recognised" in text:
        return "not a recognised audio format, or its data is corrupt"
    return f"cannot decode audio ({text})"


def check_size(path: str | os.PathLike, sample_rate: int, frames: int) -> None:
    """Refuse implausible sample rates and more audio than :func:`max_seconds` allows, before
    decoding (from the header) or right after (containers).

    Raises:
        AudioLoadError: naming the file, the value and the accepted range / the limit.
    """
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioLoadError(
            path,
            f"sample rate {sample_rate} Hz is implausible for audio (accepted: "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)",
        )
    limit = max_seconds()
    if frames / sample_rate > limit:
        raise AudioLoadError(
            path,
            f"{frames / sample_rate:.0f} s of audio exceeds the per-file limit of {limit:.0f} s "
            f"(raise it with {ENV_MAX_SECONDS} or --max-seconds)",
        )


def info(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(sample_rate, channels, frames)`` of a file without decoding it (soundfile formats)."""
    require_regular_file(Path(path))
    try:
        i = sf.info(native_path(path))
    except Exception as exc:  # soundfile raises several types
        raise AudioLoadError(path, f"cannot read audio header ({exc})") from None
    return int(i.samplerate), int(i.channels), int(i.frames)


def load(path: str | os.PathLike, *, mono: bool = False) -> tuple[torch.Tensor, int]:
    """Decode an audio file.

    Args:
        path: WAV/FLAC/OGG/MP3/... (soundfile) or MP4/M4A/... (PyAV, for the audio track).
        mono: average the channels and return ``(samples,)``.

    Returns:
        ``(waveform, sample_rate)``: float32 ``(channels, samples)`` in [-1, 1] (or
        ``(samples,)`` with ``mono=True``), and the file's sample rate in Hz.

    Raises:
        AudioLoadError: missing, unreadable, unsupported, empty or zero-length files, samples
            that are not finite, an implausible sample rate or more audio than
            :func:`max_seconds`; the message names the file.
    """
    p = Path(path)
    require_regular_file(p)
    if p.stat().st_size == 0:
        raise AudioLoadError(p, "empty file (0 bytes)")
    if p.suffix.lower() in CONTAINER_EXTENSIONS:
        data, sr = _load_with_av(p)
        check_size(p, int(sr), data.shape[-1])
    else:
        try:
            with sf.SoundFile(native_path(p)) as f:
                sr, declared = int(f.samplerate), int(f.frames)
                headerless = f.format == "RAW"
                check_size(p, sr, declared)
                # In blocks: a header that lies about its length cannot make us allocate it.
                blocks = list(f.blocks(_READ_BLOCK, dtype="float32", always_2d=True))
        except AudioLoadError:
            raise
        except Exception as exc:
            raise AudioLoadError(p, decode_reason(exc)) from None
        array = np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)
        data = np.ascontiguousarray(array.T)  # soundfile gives (samples, channels)
        if data.shape[-1] and not warn_if_wav_truncated(p, data.shape[-1]):
            _warn_damaged(p, declared, data.shape[-1])
        if headerless:
            # libsndfile reads a ".au"/".snd" without its ".snd" magic as headerless 8 kHz
            # mu-law, which any bytes are: the samples may be noise.
            warnings.warn(
                f"{p}: no audio header (libsndfile decoded it as headerless {sr} Hz "
                f"{f.subtype} samples, which any bytes are); check that it is audio",
                DamagedAudioWarning,
                stacklevel=2,
            )
    if data.shape[-1] == 0:
        raise AudioLoadError(p, "zero-length audio (no samples)")
    if not np.isfinite(data).all():
        raise AudioLoadError(p, "audio contains NaN or infinite samples")
    waveform = torch.from_numpy(data)
    if mono:
        waveform = waveform.mean(dim=0) if waveform.shape[0] > 1 else waveform[0]
    return waveform, int(sr)


def _warn_damaged(path: Path, declared: int, decoded: int) -> bool:
    if decoded >= declared:
        return False
    warnings.warn(
        f"{path}: damaged or truncated audio: the header declares {declared} frames, "
        f"{decoded} could be decoded; using those",
        DamagedAudioWarning,
        stacklevel=3,
    )
    return True


def warn_if_wav_truncated(path: str | os.PathLike, frames: int) -> bool:
    """Warn (:class:`DamagedAudioWarning`) when a WAV's header declares more frames than the
    ``frames`` available; libsndfile sizes a WAV by its file length, so a truncated file or a
    lying header is otherwise accepted silently. Returns whether it warned."""
    p = Path(path)
    if p.suffix.lower() not in (".wav", ".wave"):
        return False
    declared = _wav_declared_frames(p)
    return declared is not None and _warn_damaged(p, declared, frames)


def _wav_declared_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header declares (``data`` chunk size / block align), or None when the
    header cannot be parsed (then libsndfile's own count stands)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return None
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, None
    while pos + 8 <= len(head):
        tag, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if tag == b"fmt " and pos + 22 <= len(head):
            block_align = int.from_bytes(head[pos + 20 : pos + 22], "little")
        elif tag == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):  # unknown / streaming / RF64
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def _load_with_av(path: Path) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError:
        raise AudioLoadError(
            path, "decoding this container needs PyAV: pip install 'audiorep[av]'"
        ) from None
    try:
        with open(path, "rb") as fh, av.open(fh) as container:
            streams = container.streams.audio
            if not streams:
                raise AudioLoadError(path, "container has no audio stream")
            stream = streams[0]
            chunks = []
            sr = stream.codec_context.sample_rate or stream.rate
            for frame in container.decode(stream):
                # to_ndarray: planar -> (channels, samples), packed -> (1, samples*channels)
                arr = frame.to_ndarray()
                channels = len(frame.layout.channels)
                if not frame.format.is_planar:
                    arr = arr.reshape(-1, channels).T
                chunks.append(_to_float32(arr))
    except AudioLoadError:
        raise
    except Exception as exc:
        raise AudioLoadError(path, f"cannot decode container ({exc})") from None
    if not chunks:
        raise AudioLoadError(path, "zero-length audio (no decoded frames)")
    return np.ascontiguousarray(np.concatenate(chunks, axis=1)), int(sr)


def _to_float32(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    if arr.dtype == np.int32:
        return (arr.astype(np.float64) / 2147483648.0).astype(np.float32)
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128.0) / 128.0
    return arr.astype(np.float32)
