"""The layout of lrlab.schedules: imports point one way, and file names hide no names."""

from __future__ import annotations

import ast
from pathlib import Path

import lrlab.schedules as S

PACKAGE = Path(S.__file__).parent


def _imports(path: Path) -> set[str]:
    """Modules of lrlab.schedules that ``path`` imports anywhere (inside functions too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("lrlab.schedules."):
                out.add(name.split(".")[2])
    return out


def test_no_import_cycles():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join(path + (module,))
        if module in done:
            return
        for dep in graph.get(module, ()):
            visit(dep, path + (module,))
        done.add(module)

    for module in graph:
        visit(module, ())
    # the base of the schedules knows neither the phases nor the parser
    assert _imports(PACKAGE / "schedule.py") <= {"onplateau", "units"}
    assert _imports(PACKAGE / "base.py") <= {"args", "schedule", "units"}


def test_module_names_do_not_collide_with_exported_names():
    # ``lrlab.schedules.warmup`` is the constructor; a module of that name would be hidden
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules.isdisjoint(S.__all__)
