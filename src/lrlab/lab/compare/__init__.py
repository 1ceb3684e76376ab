"""Comparisons: many runs side by side, then a report.

- :mod:`~lrlab.lab.compare.plan`: a pure plan of runs from a preset, a TOML file and grids;
- :mod:`~lrlab.lab.compare.presets`: the named experiments and their published references;
- :mod:`~lrlab.lab.compare.runner`: the plan's runs in worker processes (one run each, or a
  vectorised stack);
- :mod:`~lrlab.lab.compare.comparison`: ``compare(...)``, plan + runner + report in one call.
"""

from __future__ import annotations

from lrlab.lab.compare.comparison import (  # noqa: F401
    ComparisonResult,
    compare,
)

__all__ = [
    "ComparisonResult", "compare"
]
