"""The package's layers: each sub-package imports only from itself and the layers below it, and
no two modules import each other (directly or around a longer loop)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "raw2rgb_plugin"

#: lowest first. `io` and `pipeline` are the bottom: they know nothing of models or profiles.
LAYERS = ["errors", "vocabulary", "pipeline", "io", "models", "profiles", "runtime", "engine", "training"]


def _modules() -> dict[str, Path]:
    return {".".join(("raw2rgb_plugin", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("raw2rgb_plugin"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("raw2rgb_plugin"))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for module, path in _modules().items():
        own = _layer(module)
        if own not in LAYERS:
            continue
        for target in _imports(path):
            other = _layer(target)
            if other in LAYERS and LAYERS.index(other) > LAYERS.index(own):
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_no_import_cycles():
    modules = _modules()
    graph = {m: {t for t in _imports(p) if t in modules and t != m} for m, p in modules.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    # A package's __init__ re-exporting its own modules lazily is not a cycle at import time.
    real = [c for c in cycles if not any(m.count(".") == 1 and m in graph and modules[m].name == "__init__.py" for m in c)]
    assert real == []
