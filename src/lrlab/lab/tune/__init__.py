"""Tuning on Optuna: ``lrlab tune`` searches train settings on the validation split.

- :mod:`~lrlab.lab.tune.space`: the ``--space`` grammar;
- :mod:`~lrlab.lab.tune.storage`: study storages (SQLite, PostgreSQL, a journal file) with
  heartbeats;
- :mod:`~lrlab.lab.tune.tuner`: ``settings_from``, ``tune`` and ``run`` (the worker loop, the
  objective, the fresh-seed retraining);
- :mod:`~lrlab.lab.tune.presets`: the tuning studies;
- :mod:`~lrlab.lab.tune.report`: the study's report.
"""

from __future__ import annotations

from lrlab.lab.tune.tuner import (  # noqa: F401
    METRICS,
    PRUNERS,
    SAMPLERS,
    TuneResult,
    TuneSettings,
    run,
    settings_from,
    tune,
)

__all__ = [
    "METRICS", "PRUNERS", "SAMPLERS", "TuneResult", "TuneSettings", "run", "settings_from",
    "tune"
]
