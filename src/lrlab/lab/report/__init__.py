"""Reports: what a comparison's records say, with statistics over seeds.

Reads only the records on disk (:mod:`lrlab.lab.records`), never the code that trained them.
The room's modules, one concept each:

- :mod:`~lrlab.lab.report.runs`: a comparison's runs, loaded from disk;
- :mod:`~lrlab.lab.report.summary`: the numbers of each label over seeds, ``summary.csv``;
- :mod:`~lrlab.lab.report.text`: how every report writes p-values, means ± sd, intervals and
  counts;
- :mod:`~lrlab.lab.report.document`: the document model, as Markdown and self-contained HTML;
- :mod:`~lrlab.lab.report.build`: the comparison report, section by section, and
  ``write_report``;
- :mod:`~lrlab.lab.report.plots`: the figures (and the figure helpers other reports use);
- :mod:`~lrlab.lab.report.stats`: summaries, Welch and permutation tests, Holm, references;
- :mod:`~lrlab.lab.report.observations`: a run's phases, divergences and what stands out.
"""

from __future__ import annotations

from lrlab.lab.report.build import build_report, write_report
from lrlab.lab.report.document import Report
from lrlab.lab.report.runs import STATUSES, load_runs
from lrlab.lab.report.summary import LabelStats, label_stats, summary_csv

__all__ = [
    "LabelStats", "Report", "STATUSES", "build_report", "label_stats", "load_runs", "summary_csv",
    "write_report"
]
