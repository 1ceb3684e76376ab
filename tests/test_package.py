"""Package-level promises: the schedule layer is pure Python, the CLI entry points work."""

from __future__ import annotations

import subprocess
import sys


def _py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_schedules_never_import_torch():
    r = _py("import sys, lrlab, lrlab.schedules as s; "
            "s.parse('warmup(5) >> cosine()').resolve(s.Context(10)).values(10); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    assert r.returncode == 0, r.stderr


def test_python_dash_m_and_version():
    r = subprocess.run([sys.executable, "-m", "lrlab", "--version"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("lrlab ")
    r = subprocess.run([sys.executable, "-m", "lrlab", "frobnicate"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def _lrlab_imports(path, package: str) -> set[str]:
    """Every lrlab module ``path`` imports, at module level or inside a function."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            names = [name] + [f"{name}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n == "lrlab" or n.startswith("lrlab."))
    return found


def test_no_import_cycles_anywhere_in_src():
    """docs/design.md: imports point downwards only. Lazy imports inside functions count too: a
    cycle through them is still a knot (the trainer <-> range-test circle of old)."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    modules = {}
    for path in src.rglob("*.py"):
        name = ".".join(path.relative_to(src).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = {d for d in _lrlab_imports(path, package) if d in modules and d != name}
        # a package's __init__ re-exports its modules; importing it is not a dependency edge
        # of the modules back on it, so drop edges into a module's own package
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        assert state.get(node) != 1, "import cycle: " + " -> ".join(path + [node])
        state[node] = 1
        for dep in sorted(graph[node]):
            visit(dep, path + [node])
        state[node] = 2

    for name in sorted(graph):
        visit(name, [])
