"""Reports: what a comparison's records say, with statistics over seeds.

Reads only the records on disk (:mod:`lrlab.lab.records`), never the code that trained them.
"""

from __future__ import annotations

from lrlab.lab.report.build import (  # noqa: F401
    STATUSES,
    LabelStats,
    Report,
    build_report,
    label_stats,
    load_runs,
    summary_csv,
    write_report,
)

__all__ = [
    "LabelStats", "Report", "STATUSES", "build_report", "label_stats", "load_runs", "summary_csv",
    "write_report"
]
