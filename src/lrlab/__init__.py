"""lrlab: learning-rate warmup, schedules and optimizers for PyTorch, and a lab to compare them.

``import lrlab`` is light: the torch-facing names (``Scheduler``, ``find_lr``, ``Lion``,
``build_optimizer``, ``tune``) are imported on first use, so ``lrlab.schedules`` stays pure Python.
"""

from __future__ import annotations

from typing import Any

from lrlab.errors import LrlabError, SpecError
from lrlab.schedules import parse

__version__ = "0.1.0"

_LAZY = {
    "Scheduler": ("lrlab.scheduler", "Scheduler"),
    "find_lr": ("lrlab.finder", "find_lr"),
    "Lion": ("lrlab.optim", "Lion"),
    "build_optimizer": ("lrlab.optim", "build_optimizer"),
    "tune": ("lrlab.lab.tune", "run"),
    "ScheduleChangedWarning": ("lrlab.scheduler", "ScheduleChangedWarning"),
    "PlateauNotReportedWarning": ("lrlab.scheduler", "PlateauNotReportedWarning"),
}

__all__ = ["LrlabError", "SpecError", "parse", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lrlab' has no attribute {name!r}")
