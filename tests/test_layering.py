"""The package's import graph: no cycles, and no layer imports a higher one.

The layer order is written once here and once in docs/architecture.md ("Layers"). Every import
counts, including those inside functions: a lazy import of a higher layer is still a back-edge.
The checker itself is tested on a synthetic package, so the real package never has to be broken
to prove the test can fail.
"""

from __future__ import annotations

import ast
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Lowest first. A unit is a subpackage or a top-level module of ``audiorep`` (``cli_*`` modules
#: and ``__main__`` count as the ``cli`` unit). A unit may import units of lower layers only;
#: units of one layer are peers and may not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hashing", "atomic", "_version"),
    ("audio", "resample"),
    ("data",),
    ("frontends",),
    ("models",),
    ("convert",),
    ("weights",),
    ("training",),
    ("features", "losses", "metrics"),
    ("heads",),
    ("pipelines",),
    ("extract", "hear", "backbones"),  # backbones: alias of pipelines.backbones for one release
    ("fad", "evaluation"),
    ("specvqgan",),
    ("serve",),
    ("cli",),
    ("__init__",),  # the facade: `import audiorep` re-exports the public API
)


def module_imports(package_dir: Path) -> dict[str, set[str]]:
    """Map each module of the package (dotted name) to the package modules it imports."""
    root = package_dir.name
    files = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]  # fmt: skip
            else:
                continue
            for target in targets:
                if target == root or target.startswith(root + "."):
                    while target not in files and "." in target:
                        target = target.rpartition(".")[0]
                    if target != name:
                        graph[name].add(target)
        graph.setdefault(name, set())
    return dict(graph)


def unit_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    head = parts[1]
    return "cli" if head.startswith("cli_") or head == "__main__" else head


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def layer_violations(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    rank = {unit: i for i, layer in enumerate(layers) for unit in layer}
    problems = []
    for src, targets in sorted(graph.items()):
        a = unit_of(src)
        if a not in rank:
            problems.append(f"{src}: unit {a!r} is in no layer (add it to LAYERS and the docs)")
            continue
        for dst in sorted(targets):
            b = unit_of(dst)
            if a == b:
                continue
            if b not in rank:
                problems.append(f"{src} -> {dst}: unit {b!r} is in no layer")
            elif rank[b] >= rank[a]:
                kind = "a peer of" if rank[b] == rank[a] else "a higher layer than"
                problems.append(f"{src} -> {dst}: {b!r} is {kind} {a!r}")
    return problems


def test_package_has_no_import_cycle():
    cycle = find_cycle(module_imports(SRC / "audiorep"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_layer_imports_a_higher_one():
    assert layer_violations(module_imports(SRC / "audiorep")) == []


def test_layer_order_is_the_documented_one():
    doc = (SRC.parent / "docs" / "architecture.md").read_text()
    written = " < ".join(" | ".join(layer) for layer in LAYERS)
    assert written in doc, f"docs/architecture.md must state the layer order:\n{written}"


# ----------------------------------------------------------------------------- the checker


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "audiorep"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_checker_flags_back_imports_peers_and_cycles(tmp_path):
    good = {
        "__init__.py": "from audiorep.pipelines import load\n",
        "audio.py": "import numpy\n",
        "frontends/__init__.py": "",
        "frontends/mel.py": "from audiorep import audio\nfrom ..resample import resample\n",
        "resample.py": "",
        "pipelines/__init__.py": "from .base import load\n",
        "pipelines/base.py": "from audiorep.frontends.mel import x\n",
    }
    graph = module_imports(_package(tmp_path / "good", good))
    assert graph["audiorep.frontends.mel"] == {"audiorep.audio", "audiorep.resample"}
    assert graph["audiorep.pipelines"] == {"audiorep.pipelines.base"}
    assert find_cycle(graph) is None and layer_violations(graph) == []

    # a deliberate back-import, inside a function: models -> pipelines
    bad = {**good, "models/__init__.py": "def f():\n    from audiorep.pipelines import load\n"}
    problems = layer_violations(module_imports(_package(tmp_path / "back", bad)))
    assert problems == [
        "audiorep.models -> audiorep.pipelines: 'pipelines' is a higher layer than 'models'"
    ]
    # peers: audio <-> resample, both ways, which is also a cycle
    peers = {
        **good,
        "audio.py": "from . import resample\n",
        "resample.py": "import audiorep.audio\n",
    }
    graph = module_imports(_package(tmp_path / "peers", peers))
    assert len(layer_violations(graph)) == 2
    assert find_cycle(graph) in (
        ["audiorep.audio", "audiorep.resample", "audiorep.audio"],
        ["audiorep.resample", "audiorep.audio", "audiorep.resample"],
    )
    # a unit nobody placed in a layer
    stray = {**good, "newthing.py": "from audiorep import audio\n"}
    assert layer_violations(module_imports(_package(tmp_path / "stray", stray))) == [
        "audiorep.newthing: unit 'newthing' is in no layer (add it to LAYERS and the docs)"
    ]


@pytest.mark.parametrize("layers_ok", [True, False])
def test_checker_uses_the_given_order(tmp_path, layers_ok):
    files = {"__init__.py": "", "audio.py": "", "data/__init__.py": "from audiorep import audio\n"}
    graph = module_imports(_package(tmp_path, files))
    layers = LAYERS if layers_ok else (("data",), ("audio",), ("__init__",))
    assert (layer_violations(graph, layers) == []) is layers_ok
