"""A report's runs, read from disk: a comparison directory, one run directory, or a directory
of runs.

Only the records are read (:mod:`lrlab.lab.records`: ``comparison.json`` and each run's
files), never the code that trained them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError
from lrlab.lab.records import COMPARISON_FILE, FINISHED, RunRecords, read_comparison
from lrlab.lab.report.observations import RunData

__all__ = ["STATUSES", "load_runs", "read_run"]

#: A run's statuses, in the order the reports count them (``missing``: no records at all).
STATUSES = ("ok", "diverged", "not-learning", "pruned", "interrupted", "running", "failed",
            "missing")


def read_run(path: Path, name: str, label: str, seed: int | None,
             error: str | None = None) -> RunData:
    """The records of the run directory ``path``, as the run ``name`` of ``label``.

    A run with no records yet has none of them (status ``missing``), one without a summary
    is ``running``; ``error`` (the comparison's note of its failure) makes a run that did not
    finish ``failed``. Damaged records are one-line LrlabErrors naming the file.
    """
    run = RunData(name, label, seed, error=error)
    rec = RunRecords(path)
    if rec.exists():
        run.config = rec.read_config()
        run.metrics = rec.metrics()
        run.summary = rec.summary()
        run.events = rec.events()
        run.status = (run.summary or {}).get("status", "running")
    if error and run.status not in FINISHED:
        run.status = "failed"
    return run


def load_runs(directory: str | Path) -> tuple[dict[str, Any], list[RunData]]:
    """The comparison's metadata and its runs, from a comparison or a run directory."""
    d = Path(directory)
    if not d.is_dir():
        raise LrlabError(f"{d} is not a directory")
    if (d / COMPARISON_FILE).exists():
        meta = read_comparison(d)
        failures = meta.get("failures") or {}
        runs = [read_run(d / "runs" / r["name"], r["name"], r["label"], r.get("seed"),
                         failures.get(r["name"])) for r in meta.get("runs", [])]
        return meta, runs
    if (d / "config.json").exists():
        run = read_run(d, d.name, d.name, None)
        if run.config:
            run.seed = run.config.get("seed")
        return {"title": f"Run {d.name}", "source": "run", "labels": [], "runs": []}, [run]
    runs_dir = d / "runs" if (d / "runs").is_dir() else d
    found = sorted(p for p in runs_dir.iterdir() if (p / "config.json").exists())
    if not found:
        raise LrlabError(f"{d} holds no comparison.json and no run directories")
    runs = []
    for p in found:
        m = re.fullmatch(r"(.+)-s(\d+)", p.name)
        runs.append(read_run(p, p.name, m.group(1) if m else p.name,
                             int(m.group(2)) if m else None))
    return {"title": f"Runs in {d.name}", "source": "directory", "labels": [], "runs": []}, runs
