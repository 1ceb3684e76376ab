"""``lrlab compare``: plan a comparison, run it, write its report — one call.

The three steps are separate modules a caller may also use alone: ``plan`` (which runs, as
data), ``runner`` (worker processes that train them, resumable) and ``report`` (recomputed
from the run records). :func:`compare` chains them the way the command line does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError
from lrlab.lab.compare.plan import ComparisonPlan, parse_grid, plan_comparison
from lrlab.lab.compare.runner import RunOutcome, run_comparison, sigterm_as_interrupt
from lrlab.lab.report.build import ReportFiles, write_report

__all__ = ["ComparisonResult", "compare"]


@dataclass
class ComparisonResult:
    """What :func:`compare` did: the plan, each run's outcome, the report's files (None when
    interrupted before the report)."""

    plan: ComparisonPlan
    outcomes: list[RunOutcome] = field(default_factory=list)
    report: ReportFiles | None = None
    interrupted: bool = False

    @property
    def failed(self) -> bool:
        return any(o.status == "failed" for o in self.outcomes)


def compare(*, preset: str | None = None, file: str | Path | None = None,
            grid: Mapping[str, list[Any]] | Sequence[str] | None = None,
            seeds: Sequence[int] | None = None, epochs: int | None = None,
            overrides: Mapping[str, Any] | None = None, out: str | Path | None = None,
            jobs: int = 1, nproc_per_run: int = 1, force: bool = False,
            trace: str | None = None, echo: bool = True,
            write: Callable[[str], None] | None = None,
            vectorize: str = "auto") -> ComparisonResult:
    """Plan (``plan_comparison``), run (``run_comparison``) and report (``write_report``).

    ``grid`` is a mapping ``{field: [values]}`` or ``--grid`` strings (``"lr=0.1,0.01"``).
    ``vectorize`` (``auto``/``on``/``off``): train compatible runs together as one stack
    (see ``runner.run_comparison`` and ``lrlab.lab.train.vectorised``).
    Ctrl-C or SIGTERM stops the workers (they checkpoint) and returns a result with
    ``interrupted=True``: the same call again resumes. Raises LrlabError for a bad plan,
    an ``--out`` that is not ours, or an unknown ``trace`` label.
    """
    say = write or print
    if grid is not None and not isinstance(grid, Mapping):
        grid = parse_grid(list(grid))
    if vectorize not in ("auto", "on", "off"):
        raise LrlabError(f"--vectorize: expected auto, on or off, got {vectorize!r}")
    plan = plan_comparison(preset=preset, file=file, grid=grid, seeds=seeds, epochs=epochs,
                           overrides=overrides, out=out)
    if trace and all(trace not in (d["label"], r.name) for d in plan.labels
                     for r in plan.runs):
        raise LrlabError(f"--trace: no run labelled {trace!r}; labels: "
                         + ", ".join(d["label"] for d in plan.labels))
    if echo:
        labels = len(plan.labels)
        n_seeds = len(plan.runs) // max(labels, 1)
        say(f"{plan.title}\n{len(plan.runs)} runs ({labels} labels × {n_seeds} "
            f"seed{'s' if n_seeds > 1 else ''}) in {plan.out}, {jobs} at a time")
    result = ComparisonResult(plan)
    try:
        with sigterm_as_interrupt():
            result.outcomes = run_comparison(plan, jobs, echo=echo, write=write,
                                             nproc_per_run=nproc_per_run, force=force,
                                             vectorize=vectorize)
    except KeyboardInterrupt:
        result.interrupted = True
        return result
    result.report = write_report(plan.out, trace=trace)
    return result
