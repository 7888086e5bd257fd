"""The package's layering: its subpackages import one another without a cycle, and the configuration
reads without torch (a stage loads its config before a model)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "whisper_llada"


def unit_of(path: Path) -> str:
    """A subpackage's name, or a top-level module's."""
    first = path.relative_to(PACKAGE).parts[0]
    return first[:-3] if first.endswith(".py") else first


def imported_units(path: Path) -> set[str]:
    """The package's units a module imports, at module level or inside functions alike."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {n.split(".")[1] for n in names if n.startswith("whisper_llada.")}
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = unit_of(path)
        graph.setdefault(unit, set()).update(imported_units(path) - {unit})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of ``graph`` as a path of units (first == last), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(u: str) -> list[str]:
        state[u] = 1
        path.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return path[path.index(v) :] + [v]
            if v not in state and (found := visit(v)):
                return found
        path.pop()
        state[u] = 2
        return []

    for u in sorted(graph):
        if u not in state and (found := visit(u)):
            return found
    return []


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_subpackages_import_without_cycles():
    graph = import_graph()
    assert {"models", "config", "training", "diffusion", "data", "checkpoint"} <= set(graph)
    assert find_cycle(graph) == [], "import cycle between subpackages"
    # The lowest layers stay below everything that builds on them.
    assert graph["utils"] == set()
    assert graph["checkpoint"] <= {"utils"}
    assert "training" not in graph["models"] and "models" not in graph["config"]


def test_config_reads_without_torch():
    code = (
        "import sys, whisper_llada.config.recipe, whisper_llada.config.registry; sys.exit(int('torch' in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
