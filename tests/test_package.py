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
