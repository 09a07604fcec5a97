"""The layers: each package imports only the layers below it, no import cycles, light imports.

The import graph is read from the source with ``ast`` (every import statement, lazy ones
inside functions included), so a violation fails here before it can hide behind a lazy
import. The torch-free modules are also imported in a fresh interpreter to check that
torch (and, for ``nos`` and ``nos --help``, sympy) never loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nos"

#: Layers from the bottom up; a module may import its own layer and those before it.
LAYERS = [
    "errors",
    "status",
    "jsonl",
    "symbolic",
    "reference",
    "zoo",
    "optim",
    "training",
    "executors",
    "search",
    "bench",
    "cli",
]

#: Modules that must load without torch (the driver, the CLI, the symbolic tools).
TORCH_FREE = [
    "nos",
    "nos.errors",
    "nos.status",
    "nos.jsonl",
    "nos.cli",
    "nos.executors",
    "nos.training",
    "nos.training.registry",
    "nos.training.presets",
    "nos.training.spec",
    *(f"nos.{pkg}" for pkg in ("symbolic", "reference", "zoo", "search", "bench")),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``nos`` modules that ``name`` imports, anywhere in the file."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        out.update(t for t in targets if t == "nos" or t.startswith("nos."))
    out.discard(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _layer(module: str) -> str:
    if module == "nos.__main__":
        return "cli"
    return module.split(".")[1]


def test_every_module_has_a_layer():
    for module in _graph():
        if module != "nos":
            assert _layer(module) in LAYERS, f"{module} belongs to no layer"


def test_imports_point_down():
    bad = []
    for module, targets in _graph().items():
        if module == "nos":  # the lazy public facade re-exports from every layer
            continue
        rank = LAYERS.index(_layer(module))
        for target in sorted(targets):
            if target == "nos":
                bad.append(f"{module} imports the package facade 'nos'")
            elif LAYERS.index(_layer(target)) > rank:
                bad.append(f"{module} ({_layer(module)}) imports {target} ({_layer(target)})")
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(','.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.strip().split(","))


def test_torch_free_modules_do_not_import_torch():
    loaded = _loaded_after(f"import importlib\nfor m in {TORCH_FREE!r}: importlib.import_module(m)")
    assert "torch" not in loaded


@pytest.mark.parametrize(
    "code",
    [
        "import nos",
        "from nos.cli import build_parser\nbuild_parser()",
        "import nos.executors.local",
    ],
)
def test_light_entry_points_load_neither_torch_nor_sympy(code):
    loaded = _loaded_after(code)
    assert not {"torch", "sympy", "deap"} & loaded
