"""The web tool's work, without HTTP: uploads, the codec round trip, sampling jobs, judges,
result files. :mod:`audiorep.serve.server` maps requests onto :class:`App`'s methods.

Everything a request makes is written under one private temporary folder (``uploads/``,
``results/<id>/``), removed by :meth:`App.close`.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiorep.serve.backend import (
    HALF_PRIME_TOKENS,
    ROWS,
    Backend,
    BackendError,
    GenerationBackend,
    LoadedModel,
    Progress,
    SampleSettings,
    SamplingCancelled,
)
from audiorep.serve.images import b64_uint8, codes_png, spectrogram_png
from audiorep.serve.jobs import Job, JobManager

PathLike = str | os.PathLike
SAMPLE_RATE = 22050
FEATURE_SUFFIXES = (".npy", ".pkl")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
AUDIO_SUFFIXES = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".m4a",
    ".aac",
    ".au",
    ".w64",
    ".caf",
)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass
class ServeConfig:
    """``audiorep serve``'s options (see :mod:`audiorep.cli.serve`).

    Attributes:
        transformer: the model picked by default. codec / vocoder: the codec round trip's
        models (``codec_models`` specs); the vocoder also voices sampled clips.
        judge: a judge ``.safetensors`` written by ``audiorep specvqgan train-judge``, or
        Melception weights (the authors' ``.pt``, a converted ``.safetensors``, a registry
        name); None: no predictions. judge_classes: text file, one class name per line
        (Melception's VGGSound names are not shipped).
        device: torch device. max_upload_mb: largest upload. max_clip_seconds: longest audio
        the codec round trip takes.
    """

    transformer: str = "small"
    codec: str = "small"
    vocoder: str = "small"
    judge: str | None = None
    judge_classes: str | None = None
    device: str = "cpu"
    max_upload_mb: float = 200.0
    max_clip_seconds: float = 60.0
    decode_interval_s: float = 0.5


@dataclass
class Upload:
    id: str
    name: str
    path: Path
    kind: str  # "audio", "video" or "features"

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "bytes": self.path.stat().st_size,
        }


def upload_kind(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in FEATURE_SUFFIXES:
        return "features"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    raise BackendError(
        f"{name}: unsupported file type {suffix or '(none)'}; audio "
        f"({', '.join(AUDIO_SUFFIXES)}), video ({', '.join(VIDEO_SUFFIXES)}) or features "
        "(.npy, .pkl)"
    )


def wav_bytes(wave: np.ndarray | torch.Tensor, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV of a float waveform in [-1, 1] (clipped)."""
    import soundfile as sf

    data = np.clip(np.asarray(torch.as_tensor(wave).cpu(), dtype=np.float32).reshape(-1), -1, 1)
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def grid_of(tokens: np.ndarray, rows: int = ROWS) -> np.ndarray:
    """Complete columns of column-major ``tokens (n,)`` as a ``(rows, n // rows)`` grid."""
    cols = len(tokens) // rows
    return np.asarray(tokens[: cols * rows], dtype=np.int64).reshape(cols, rows).T


class Judge:
    """Top-k class predictions of a [0, 1] mel: our trained judge or Melception (see
    :class:`ServeConfig`). Windows of 848 frames (tiled when shorter), probabilities averaged."""

    def __init__(self, spec: str, classes_file: str | None = None, device: str = "cpu") -> None:
        from audiorep.specvqgan.classifier_training import JUDGE_FORMAT, load_trained_judge

        path = Path(spec)
        meta: dict[str, str] = {}
        if path.suffix == ".safetensors" and path.is_file():
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        if meta.get("format") == JUDGE_FORMAT:
            self.model, info = load_trained_judge(path, device)
            classes = list(info["classes"])
            self.name = f"{path.name} ({meta.get('model', 'judge')}, {len(classes)} classes)"
        else:
            from audiorep.specvqgan.evaluate import load_melception

            self.model, desc = load_melception(spec, device=device)
            classes = [f"class {i}" for i in range(self.model.num_classes)]
            self.name = f"Melception ({desc})"
        if classes_file:
            names = [x.strip() for x in Path(classes_file).read_text().splitlines() if x.strip()]
            if len(names) != len(classes):
                raise BackendError(
                    f"{classes_file}: {len(names)} class names, the judge has {len(classes)}"
                )
            classes = names
        self.classes = classes
        self.device = device
        self._lock = threading.Lock()

    @torch.no_grad()
    def top(self, mel: np.ndarray | torch.Tensor, k: int = 10) -> list[dict[str, Any]]:
        from audiorep.frontends.specvqgan import CROP_FRAMES, normalize_for_judges
        from audiorep.specvqgan.classifier_training import judge_logits

        m = torch.as_tensor(np.asarray(mel), dtype=torch.float32)
        if m.shape[-1] < CROP_FRAMES:
            m = m.repeat(1, -(-CROP_FRAMES // m.shape[-1]))[:, :CROP_FRAMES]
        starts = list(range(0, m.shape[-1] - CROP_FRAMES + 1, CROP_FRAMES))
        if starts[-1] + CROP_FRAMES < m.shape[-1]:
            starts.append(m.shape[-1] - CROP_FRAMES)
        x = torch.stack([m[:, a : a + CROP_FRAMES] for a in starts])
        with self._lock:
            logits = judge_logits(self.model, normalize_for_judges(x).to(self.device))
        probs = torch.softmax(logits.float().cpu(), dim=-1).mean(0)
        p, idx = probs.topk(min(k, probs.numel()))
        return [
            {"label": self.classes[i], "p": round(float(v), 4)} for v, i in zip(p, idx.tolist())
        ]


class App:
    """State of one ``audiorep serve`` process (thread-safe; requests run on many threads)."""

    def __init__(self, config: ServeConfig | None = None, backend: Backend | None = None) -> None:
        self.config = config or ServeConfig()
        self.backend = backend or GenerationBackend(
            self.config.transformer, self.config.vocoder, self.config.device
        )
        self.workdir = Path(tempfile.mkdtemp(prefix="audiorep-serve-"))
        (self.workdir / "uploads").mkdir()
        (self.workdir / "results").mkdir()
        self._private = re.compile(re.escape(str(self.workdir)) + r"/uploads/[0-9a-f]{16}/")
        self.jobs = JobManager(scrub=self.scrub)
        self._uploads: dict[str, Upload] = {}
        self._lock = threading.Lock()
        self._codec: tuple[Any, str] | None = None
        self._vocoder: tuple[Any, str] | None = None
        self._judge: Judge | None = None
        self._judge_error: str | None = None

    # ------------------------------------------------------------------ models

    def codec(self) -> tuple[Any, str]:
        with self._lock:
            if self._codec is None:
                from audiorep.specvqgan.codec_models import load_codec

                self._codec = load_codec(self.config.codec, self.config.device)
            return self._codec

    def vocoder(self) -> tuple[Any, str]:
        with self._lock:
            if self._vocoder is None:
                from audiorep.specvqgan.codec_models import load_vocoder

                self._vocoder = load_vocoder(self.config.vocoder, self.config.device)
            return self._vocoder

    def judge(self) -> Judge | None:
        """The configured judge (loaded on first use), or None."""
        if not self.config.judge:
            return None
        with self._lock:
            if self._judge is None and self._judge_error is None:
                try:
                    self._judge = Judge(
                        self.config.judge, self.config.judge_classes, self.config.device
                    )
                except (OSError, ValueError, KeyError, RuntimeError) as exc:
                    self._judge_error = f"judge {self.config.judge}: {exc}"
            if self._judge_error:
                raise BackendError(self._judge_error)
            return self._judge

    def info(self) -> dict[str, Any]:
        from audiorep._version import __version__

        judge: dict[str, Any] = {"configured": bool(self.config.judge)}
        if self.config.judge:
            try:
                j = self.judge()
                judge.update(name=j.name, classes=len(j.classes))
            except BackendError as exc:
                judge.update(error=str(exc))
        return {
            "version": __version__,
            "default_model": self.config.transformer,
            "models": self.backend.model_choices(),
            "codec": self.config.codec,
            "vocoder": self.config.vocoder,
            "judge": judge,
            "limits": {
                "max_upload_mb": self.config.max_upload_mb,
                "max_clip_seconds": self.config.max_clip_seconds,
            },
            "half_prime_tokens": HALF_PRIME_TOKENS,
        }

    def model_info(self, name: str) -> dict[str, Any]:
        try:
            return self.backend.load(name).info()
        except ImportError as exc:
            raise BackendError(f"sampling is not available in this install ({exc})") from None

    # ------------------------------------------------------------------ uploads

    def save_upload(self, name: str, data: bytes) -> dict[str, Any]:
        """Keep an uploaded file as ``uploads/<id>/<its name>`` (the name made file-safe)."""
        name = Path(name.replace("\\", "/")).name or "upload"
        kind = upload_kind(name)
        if not data:
            raise BackendError(f"{name}: empty file")
        up_id = secrets.token_hex(8)
        folder = self.workdir / "uploads" / up_id
        folder.mkdir()
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "upload"
        path = folder / safe
        path.write_bytes(data)
        up = Upload(up_id, name, path, kind)
        with self._lock:
            self._uploads[up_id] = up
        return up.info()

    def scrub(self, text: str) -> str:
        """An error message without this process's private folder: uploads by their name."""
        return self._private.sub("", str(text))

    def upload(self, up_id: str | None, *, kinds: tuple[str, ...], what: str) -> Upload:
        with self._lock:
            up = self._uploads.get(up_id or "")
        if up is None:
            raise BackendError(f"{what}: no such upload (upload the file again)")
        if up.kind not in kinds:
            raise BackendError(f"{up.name}: a {up.kind} file, {what} needs {' or '.join(kinds)}")
        return up

    # ------------------------------------------------------------------ results

    def _new_result(self) -> tuple[str, Path]:
        rid = secrets.token_hex(8)
        folder = self.workdir / "results" / rid
        folder.mkdir()
        return rid, folder

    def result_file(self, rid: str, name: str) -> Path | None:
        if not _ID.match(rid) or not _SAFE_NAME.match(name):
            return None
        path = self.workdir / "results" / rid / name
        return path if path.is_file() else None

    @staticmethod
    def _url(rid: str, name: str) -> str:
        return f"/files/{rid}/{name}"

    def _predictions(self, mel: np.ndarray | torch.Tensor) -> list[dict[str, Any]] | None:
        judge = self.judge()
        return None if judge is None else judge.top(mel)

    # ------------------------------------------------------------------ codec round trip

    def codec_round_trip(self, up_id: str) -> dict[str, Any]:
        """Upload -> mel -> codes -> mel -> waveform with the codec and vocoder; writes the
        files the page plays and offers (see the returned ``files``)."""
        from audiorep.audio import AudioLoadError
        from audiorep.specvqgan.codec import (
            CodeFile,
            audio_to_mel,
            codec_identity,
            decode_codes,
            encode_mel,
            load_audio_22k,
            mel_to_audio,
        )

        up = self.upload(up_id, kinds=("audio", "video"), what="the codec round trip")
        t0 = time.perf_counter()
        with self.jobs.exclusive():
            codec, codec_name = self.codec()
            vocoder, vocoder_name = self.vocoder()
            try:
                wave, sr, n = load_audio_22k(up.path)
            except AudioLoadError as exc:
                raise BackendError(self.scrub(str(exc))) from None
            seconds = n / sr
            if seconds > self.config.max_clip_seconds:
                raise BackendError(
                    f"{up.name}: {seconds:.1f} s; the codec round trip takes at most "
                    f"{self.config.max_clip_seconds:g} s here"
                )
            mel = audio_to_mel(wave)
            codes = encode_mel(codec, mel)
            rebuilt = decode_codes(codec, codes, mel.shape[-1])
            voiced = mel_to_audio(rebuilt, vocoder)
            voiced_original = mel_to_audio(mel, vocoder)
            cf = CodeFile(
                codes=codes.numpy().astype(np.int64),
                n_codes=codec.config.n_embed,
                frames=mel.shape[-1],
                source_rate=sr,
                source_samples=n,
                codec=codec_identity(codec, codec_name),
            )
            predictions = None
            if self.config.judge:
                predictions = {
                    "original": self._predictions(mel),
                    "reconstruction": self._predictions(rebuilt),
                }
        rid, folder = self._new_result()
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(up.name).stem)[:40] or "clip"
        files = {
            "original": ("original.wav", wav_bytes(wave)),
            "original_vocoded": ("original_vocoded.wav", wav_bytes(voiced_original)),
            "reconstruction": ("reconstruction.wav", wav_bytes(voiced)),
            "original_png": ("original_mel.png", spectrogram_png(mel.numpy())),
            "reconstruction_png": ("reconstruction_mel.png", spectrogram_png(rebuilt.numpy())),
            "codes_png": ("codes.png", codes_png(cf.codes, cf.n_codes)),
            "codes": (f"{stem}.codes", cf.to_bytes()),
        }
        npz = io.BytesIO()
        np.savez_compressed(npz, codes=cf.codes, mel=mel.numpy(), reconstruction=rebuilt.numpy())
        files["npz"] = (f"{stem}_codes.npz", npz.getvalue())
        for fname, data in files.values():
            (folder / fname).write_bytes(data)
        return {
            "id": rid,
            "input": up.name,
            "seconds": round(seconds, 3),
            "source_rate": sr,
            "grid": list(cf.codes.shape),
            "n_codes": cf.n_codes,
            "bits_per_code": cf.bits,
            "kbps": round(cf.kbps, 4),
            "bytes": len(files["codes"][1]),
            "mel_l1": round(float((rebuilt - mel).abs().mean()), 5),
            "codec": codec_name,
            "vocoder": vocoder_name,
            "elapsed_s": round(time.perf_counter() - t0, 3),
            "files": {k: self._url(rid, v[0]) for k, v in files.items()},
            "predictions": predictions,
        }

    # ------------------------------------------------------------------ sampling

    def start_sampling(self, params: dict[str, Any]) -> Job:
        """Check the request and start a sampling job (its events: :mod:`audiorep.serve.jobs`).

        ``params``: ``model``; ``condition`` (``class``, ``features`` or ``video``); ``class``;
        ``features`` / ``flow`` / ``video`` / ``audio`` upload ids (``audio``: the ground
        truth for priming; a video's own sound is used when none is given); ``temperature``,
        ``top_k``, ``top_p``, ``seed``, ``prime`` (bool), ``width_scale``.
        """
        settings = settings_from(params)
        return self.jobs.submit("sample", lambda job: self._sample(job, params, settings))

    def _sample(self, job: Job, params: dict[str, Any], settings: SampleSettings) -> dict:
        t0 = time.perf_counter()
        job.publish("status", {"status": "running", "message": "loading the model"})
        try:
            model = self.backend.load(str(params.get("model") or self.config.transformer))
        except ImportError as exc:
            raise BackendError(f"sampling is not available in this install ({exc})") from None
        settings.check(model.n_codes)
        job.publish(
            "status",
            {"status": "running", "message": "preparing the condition", "model": model.info()},
        )
        condition, gt_source = self._condition(model, params)
        prime = None
        if settings.prime:
            source = params.get("audio") or gt_source
            if not source:
                raise BackendError("priming needs ground-truth audio: upload the clip's audio")
            up = self.upload(source, kinds=("audio", "video"), what="priming")
            prime = self.backend.ground_truth_tokens(model, up.path)
        if job.cancel.is_set():
            raise SamplingCancelled()
        job.publish("status", {"status": "running", "message": "sampling"})
        on_step = self._step_publisher(job, model)
        sample = self.backend.sample(
            model, condition, settings, prime=prime, on_step=on_step, cancel=job.cancel
        )
        job.publish(
            "spectrogram", _mel_payload(sample.mel, sample.codes.shape[1], sample.codes.shape[1])
        )
        job.publish("status", {"status": "running", "message": "saving"})
        return self._save_sample(model, sample, params, time.perf_counter() - t0)

    def _condition(self, model: LoadedModel, params: dict[str, Any]) -> tuple[Any, str | None]:
        """The backend's condition, and the upload whose sound is the ground truth (a video)."""
        mode = str(params.get("condition") or ("class" if model.kind == "class" else "features"))
        class_name = params.get("class") or None
        if model.kind == "class":
            return self.backend.condition(model, class_name=class_name), None
        if mode == "video":
            up = self.upload(params.get("video"), kinds=("video",), what="the video condition")
            return self.backend.condition(model, class_name=class_name, video=up.path), up.id
        if mode == "features":
            up = self.upload(params.get("features"), kinds=("features",), what="the features")
            flow = None
            if params.get("flow"):
                flow = self.upload(params.get("flow"), kinds=("features",), what="flow").path
            return self.backend.condition(
                model, class_name=class_name, features=up.path, flow=flow
            ), None
        raise BackendError(f"{model.name} takes video features: pick a video or a features file")

    def _step_publisher(self, job: Job, model: LoadedModel):
        interval = self.config.decode_interval_s
        state = {"last": -1e9, "columns": 0, "cost": 0.0}

        def on_step(p: Progress) -> None:
            payload: dict[str, Any] = {
                "step": p.step,
                "total": p.total,
                "elapsed_s": round(p.elapsed_s, 3),
                "tokens": np.asarray(p.tokens).tolist(),
                "rows": ROWS,
                "n_codes": model.n_codes,
            }
            if p.attention is not None:
                att = np.asarray(p.attention, dtype=np.float32)
                att = att.reshape(-1, att.shape[-1])
                # each head stretched to its own range: a near-uniform row still shows where
                # it looks most (the page's caption says so)
                low = att.min(axis=1, keepdims=True)
                span = att.max(axis=1, keepdims=True) - low
                payload["attention"] = {
                    "heads": att.shape[0],
                    "keys": att.shape[1],
                    "condition_length": (
                        model.condition_length if p.condition_length is None else p.condition_length
                    ),
                    "data": b64_uint8((att - low) / np.where(span > 0, span, 1.0)),
                }
            job.publish("progress", payload)
            # The spectrogram so far: a decode of every complete column, at most every
            # `interval` s and at least twice its own cost apart, so decoding takes at most a
            # third of the run (the finished clip's mel is sent after the last step).
            columns = len(p.tokens) // ROWS
            started = time.monotonic()
            wait = max(interval, 2.0 * state["cost"])
            if columns > state["columns"] and started - state["last"] >= wait:
                mel = self.backend.decode(model, grid_of(np.asarray(p.tokens)))
                job.publish("spectrogram", _mel_payload(mel, columns, p.total // ROWS))
                done = time.monotonic()
                state.update(last=done, columns=columns, cost=done - started)

        return on_step

    def _save_sample(self, model: LoadedModel, sample: Any, params: dict, elapsed: float) -> dict:
        rid, folder = self._new_result()
        tag = f"{model.name}_seed{sample.seed}".replace("/", "_")
        tag = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)[:60]
        npz = io.BytesIO()
        np.savez_compressed(
            npz,
            codes=sample.codes,
            mel=sample.mel,
            seed=np.int64(sample.seed),
            settings=np.array(json.dumps(sample.settings)),
            model=np.array(model.name),
        )
        files = {
            "wav": (f"{tag}.wav", wav_bytes(sample.wave)),
            "npz": (f"{tag}.npz", npz.getvalue()),
            "png": (f"{tag}.png", spectrogram_png(sample.mel)),
            "codes_png": (f"{tag}_codes.png", codes_png(sample.codes, model.n_codes)),
        }
        for fname, data in files.values():
            (folder / fname).write_bytes(data)
        return {
            "id": rid,
            "model": model.name,
            "seed": sample.seed,
            "settings": sample.settings,
            "grid": list(sample.codes.shape),
            "seconds": round(len(sample.wave) / SAMPLE_RATE, 3),
            "elapsed_s": round(elapsed, 3),
            "files": {k: self._url(rid, v[0]) for k, v in files.items()},
            "predictions": self._predictions(sample.mel) if self.config.judge else None,
        }

    def close(self) -> None:
        self.jobs.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _mel_payload(mel: np.ndarray, columns: int, total_columns: int) -> dict[str, Any]:
    mel = np.asarray(mel, dtype=np.float32)
    return {
        "bands": mel.shape[0],
        "frames": mel.shape[1],
        "columns": columns,
        "total_columns": total_columns,
        "data": b64_uint8(mel),
    }


def _optional(params: dict[str, Any], key: str, cast: type) -> Any:
    value = params.get(key)
    if value is None or value == "" or value == 0 and key in ("top_k", "top_p"):
        return None
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise BackendError(f"{key}: expected a number, got {value!r}") from None


def settings_from(params: dict[str, Any]) -> SampleSettings:
    """:class:`SampleSettings` from a request's JSON (empty / 0 top-k or top-p: off)."""
    seed = _optional(params, "seed", int)
    temperature = _optional(params, "temperature", float)
    return SampleSettings(
        temperature=1.0 if temperature is None else temperature,
        top_k=_optional(params, "top_k", int),
        top_p=_optional(params, "top_p", float),
        seed=0 if seed is None else seed,
        prime=bool(params.get("prime")),
        width_scale=_optional(params, "width_scale", int) or 1,
    ).check()


__all__ = [
    "App",
    "Judge",
    "ServeConfig",
    "Upload",
    "grid_of",
    "settings_from",
    "upload_kind",
    "wav_bytes",
]
