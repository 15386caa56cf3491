"""Embed audio files one by one into ``.npz`` files (the first, simple ``audiorep embed``).

Each input ``<root>/<rel>/<name>.<ext>`` becomes ``<out>/<rel>/<name>.npz`` with keys
``embeddings`` float32 ``(N, 128)``, ``timestamps`` float64 ``(N,)`` (example start, seconds),
``settings`` (a JSON string: model, weights sha256, windowing, ...) and, when PCA parameters
are loaded, ``quantized`` uint8 ``(N, 128)``. A file that cannot be
decoded is reported and skipped; the others are still written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from audiorep.audio import AUDIO_EXTENSIONS, AudioLoadError, load
from audiorep.extract.writers import write_npz_atomic
from audiorep.features.fusion import GeneralPurposeVGGish, pool_max_plus_mean
from audiorep.frontends.vggish import example_timestamps


@dataclass
class RunSummary:
    files: int = 0
    written: int = 0
    audio_seconds: float = 0.0
    examples: int = 0
    wall_seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        rate = self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")
        out = [
            f"files:      {self.written} embedded of {self.files}",
            f"audio:      {self.audio_seconds:.1f} s ({self.audio_seconds / 3600:.3f} h)",
            f"examples:   {self.examples} (0.96 s each)",
            f"wall time:  {self.wall_seconds:.2f} s ({rate:.1f} s of audio per second)",
            f"failures:   {len(self.failures)}",
        ]
        out += [f"  FAILED {path}: {reason}" for path, reason in self.failures]
        return out


def collect_inputs(inputs: Sequence[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """Expand files and folders (recursively, audio extensions only) into ``(path, rel)``.

    ``rel`` is the path relative to the folder it was found in (just the name for files).
    A path that does not exist raises ``FileNotFoundError`` before any work starts.
    """
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS:
                    found.append((f, f.relative_to(p)))
        elif p.exists():
            found.append((p, Path(p.name)))
        else:
            raise FileNotFoundError(f"input not found: {p}")
    return found


def output_paths(items: Iterable[tuple[Path, Path]], out_dir: Path) -> list[Path]:
    """``<out>/<rel without extension>.npz``; two inputs mapping to one output is an error."""
    outs, seen = [], {}
    for src, rel in items:
        dst = out_dir / rel.with_suffix(".npz")
        if dst in seen:
            raise ValueError(f"{src} and {seen[dst]} would both write {dst}; rename one")
        seen[dst] = src
        outs.append(dst)
    return outs


def embed_files(
    bundle,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = True,
    batch_size: int = 64,
    progress: bool = True,
    fusion_layers: Sequence[int | str] | None = None,
) -> RunSummary:
    """Embed every input into ``out_dir``; returns what happened (never raises per file).

    With ``fusion_layers`` (e.g. ``[9, 14]``) each file also gets ``fusion`` float32 ``(N, D)``
    (per example: max + mean over its 6 frames) and, when ``N > 0``, ``fusion_clip`` ``(D,)``
    (max + mean over all ``6 N`` frames, EVAR's clip-level feature), from the same forward pass.
    """
    fusion = GeneralPurposeVGGish(bundle.model, fusion_layers) if fusion_layers else None
    # Stored with every file so later tools (audiorep fad) can check sets are comparable.
    settings_json = np.array(json.dumps(bundle.settings(), sort_keys=True))
    start = time.perf_counter()
    items = collect_inputs(inputs)
    dsts = output_paths(items, Path(out_dir))
    summary = RunSummary(files=len(items))
    bar = tqdm(total=len(items), unit="file", disable=not progress, dynamic_ncols=True)
    for (src, _), dst in zip(items, dsts):
        bar.set_description(src.name[:30])
        if dst.exists() and not overwrite:
            bar.update(1)
            continue
        try:
            waveform, sr = load(src)
            examples = bundle.examples(waveform, sr)
            if fusion is None:
                emb = bundle.embed_examples(examples, batch_size=batch_size)
            else:
                emb, frames = bundle.embed_examples_with_fusion(examples, fusion, batch_size)
            arrays = {
                "embeddings": emb.cpu().numpy(),
                "timestamps": example_timestamps(emb.shape[0], bundle.windowing.hop_seconds),
                "settings": settings_json,
            }
            if fusion is not None:
                arrays["fusion"] = pool_max_plus_mean(frames).cpu().numpy()
                if frames.shape[0] > 0:
                    clip = frames.permute(1, 0, 2).reshape(frames.shape[1], -1)
                    arrays["fusion_clip"] = pool_max_plus_mean(clip[None])[0].cpu().numpy()
            if bundle.postprocessor is not None:
                arrays["quantized"] = bundle.quantize(emb).cpu().numpy()
            write_npz_atomic(dst, **arrays)
        except (AudioLoadError, ValueError, RuntimeError) as exc:
            summary.failures.append((str(src), str(exc)))
        else:
            summary.written += 1
            summary.audio_seconds += waveform.shape[-1] / sr
            summary.examples += int(emb.shape[0])
        bar.update(1)
        elapsed = time.perf_counter() - start
        bar.set_postfix(audio_h=f"{summary.audio_seconds / 3600:.3f}",
                        x_realtime=f"{summary.audio_seconds / max(elapsed, 1e-9):.0f}")  # fmt: skip
    bar.close()
    summary.wall_seconds = time.perf_counter() - start
    return summary
