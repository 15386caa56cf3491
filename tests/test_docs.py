"""Documentation that cannot rot: every Python block of README.md and docs/*.md runs.

Convention (docs/testing.md, "Documentation that runs"):

* Every fenced ``python`` block runs, in order, one namespace per document, in a scratch
  folder. A block that cannot run here is preceded by ``<!-- docs: skip REASON -->`` and is
  reported as skipped with that reason.
* The namespace provides the inputs the examples name without defining: ``waveform``
  (1 s of noise, ``(samples,)``), ``sample_rate``/``sr`` (16000), ``waveform_16k`` and
  ``batch``/``lengths`` (two clips), ``model`` (VGGish), ``examples`` (3 log-mel examples),
  ``examples_of_clips``, ``estimate``/``target``, ``device`` ("cpu"),
  ``background_batches``/``eval_embeddings``.
* The scratch folder holds the files the examples name: ``weights/vggish.safetensors``,
  ``vggish.safetensors``, ``vggish_pca_params.npz`` (seeded random weights),
  ``real_stats.npz``, ``generated/`` (three clips), ``clip.wav``, ``audioset/`` (the real
  AudioSet shards of tests/fixtures/yt8m).
* ``audiorep.load(name)`` without ``weights`` gets seeded random weights (nothing can be
  downloaded here); the examples still exercise every call they show.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(
    r"(?:<!-- docs: skip (?P<skip>[^>]*?) -->\s*\n)?```python\n(?P<code>.*?)```", re.S
)


SHELL = re.compile(r"<!-- docs: run -->\s*\n```(?:sh|bash|shell)\n(?P<code>.*?)```", re.S)


def shell_blocks(path: Path) -> list[tuple[int, list[str]]]:
    """``(line number, commands)`` of the shell blocks marked ``<!-- docs: run -->``."""
    text = path.read_text()
    out = []
    for m in SHELL.finditer(text):
        lines = [x.strip() for x in m.group("code").splitlines()]
        out.append((text.count("\n", 0, m.start("code")) + 1,
                    [x for x in lines if x and not x.startswith("#")]))  # fmt: skip
    return out


def python_blocks(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line number, code, skip reason or None)`` for each python block of ``path``."""
    text = path.read_text()
    return [
        (text.count("\n", 0, m.start("code")) + 1, m.group("code"), m.group("skip"))
        for m in FENCE.finditer(text)
    ]


def _namespace() -> dict:
    from audiorep.models.vggish import VGGish, seeded_random_state_dict

    g = torch.Generator().manual_seed(0)
    model = VGGish()
    model.load_state_dict(seeded_random_state_dict(0))
    noise = 0.1 * torch.randn(2, 16000, generator=g)
    rs = np.random.RandomState(0)
    return {
        "waveform": noise[0].numpy(),
        "sample_rate": 16000,
        "sr": 16000,
        "waveform_16k": noise,
        "batch": noise.double(),
        "lengths": torch.tensor([16000, 12000]),
        "model": model.eval(),
        "examples": torch.randn(3, 96, 64, generator=g).abs(),
        "examples_of_clips": torch.randn(2, 2, 96, 64, generator=g).abs(),
        "estimate": noise[0:1] + 0.01,
        "target": noise[0:1],
        "device": "cpu",
        "background_batches": [rs.randn(300, 8), rs.randn(300, 8)],
        "eval_embeddings": rs.randn(600, 8),
    }


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    import audiorep
    from audiorep.convert.vggish import write_safetensors
    from audiorep.metrics import GaussianStats

    root = tmp_path_factory.mktemp("docs")
    bundle = audiorep.load("vggish", weights="random", seed=0)
    pca = {k: v.clone() for k, v in bundle.postprocessor.state_dict().items()}
    state = bundle.model.state_dict()
    (root / "weights").mkdir()
    write_safetensors(root / "weights" / "vggish.safetensors", state, pca, source="docs")
    write_safetensors(root / "vggish.safetensors", state, pca, source="docs")
    np.savez(root / "vggish_pca_params.npz",
             pca_eigen_vectors=pca["pca_eigen_vectors"].numpy(),
             pca_means=pca["pca_means"].numpy())  # fmt: skip
    rs = np.random.RandomState(1)
    GaussianStats.from_embeddings(rs.randn(400, 128)).save(root / "real_stats.npz")
    (root / "generated").mkdir()
    for i in range(3):
        sf.write(root / "generated" / f"g{i}.wav", 0.1 * rs.randn(32000), 16000)
    sf.write(root / "clip.wav", 0.1 * rs.randn(32000), 16000)
    shutil.copytree(ROOT / "tests" / "fixtures" / "yt8m" / "audioset", root / "audioset")
    return root


@pytest.fixture
def random_default_weights(monkeypatch):
    """``audiorep.load(name)`` without ``weights``: seeded random weights (the convention)."""
    import audiorep.pipelines as pipelines
    from audiorep.pipelines import registry

    real = registry.load

    def load(name: str = "vggish", **options):
        if options.get("weights") is None:
            options["weights"] = "random"
        return real(name, **options)

    monkeypatch.setattr(registry, "load", load)
    monkeypatch.setattr(pipelines, "load", load)


CASES = [pytest.param(path, id=str(path.relative_to(ROOT))) for path in DOCS if python_blocks(path)]


@pytest.mark.parametrize("path", CASES)
def test_python_blocks_run(path, scratch, random_default_weights, monkeypatch):
    monkeypatch.chdir(scratch)
    namespace = _namespace()
    skipped = []
    for line, code, skip in python_blocks(path):
        if skip:
            skipped.append(f"line {line}: {skip}")
            continue
        try:
            exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{path.name}, block at line {line}: {type(exc).__name__}: {exc}")
    if skipped and len(skipped) == len(python_blocks(path)):
        pytest.skip("; ".join(skipped))


SHELL_CASES = [
    pytest.param(path, id=str(path.relative_to(ROOT))) for path in DOCS if shell_blocks(path)
]


@pytest.mark.parametrize("path", SHELL_CASES)
def test_marked_shell_blocks_run(path, scratch, tmp_path):
    """Blocks marked ``<!-- docs: run -->``: each ``audiorep ...`` line runs as a command in
    the scratch folder (exit status 0 or 1 = ran; 1 means some inputs failed, which the
    example must not have) with an empty weights cache."""
    import shlex
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin", "AUDIOREP_HOME": str(tmp_path / "home"),
           "PYTHONPATH": str(ROOT / "src"), "AUDIOREP_EAGER": "1"}  # fmt: skip
    for line, commands in shell_blocks(path):
        for command in commands:
            argv = shlex.split(command)
            assert argv[0] == "audiorep", f"{path.name}:{line}: only audiorep commands run"
            done = subprocess.run([sys.executable, "-m", "audiorep", *argv[1:]], cwd=scratch,
                                  env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, f"{path.name}:{line}: {command}\n{done.stderr[-2000:]}"


def test_every_skip_marker_gives_a_reason():
    for path in DOCS:
        for line, _, skip in python_blocks(path):
            assert skip is None or len(skip.strip()) > 10, f"{path.name}:{line}: say why"
