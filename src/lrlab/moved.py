"""Old import paths of modules that moved, kept for one release.

The lab's flat modules moved into subpackages in 0.2 (``lrlab.lab.trainer`` is now
``lrlab.lab.train.trainer``, ...). :data:`MOVED` maps each old path to the new one, and
:func:`install` puts one finder on ``sys.meta_path`` that answers an import of an old path
with the module at its new path (the same module object, so monkeypatching either name
patches both), with a ``DeprecationWarning`` naming the new path. Packages whose public
names stay where they were (``lrlab.lab.compare``, ``.report``, ``.tune``, ``.data``,
``.models``) are real packages re-exporting those names, not aliases.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "REMOVED_IN", "MovedModuleFinder", "install"]

#: the release that drops the old paths
REMOVED_IN = "0.3"

#: old module path -> new module path
MOVED: dict[str, str] = {
    "lrlab.lab.idx": "lrlab.lab.data.idx",
    "lrlab.lab.sequences": "lrlab.lab.data.sequences",
    "lrlab.lab.targets": "lrlab.lab.data.targets",
    "lrlab.lab.transformer": "lrlab.lab.models.transformer",
    "lrlab.lab.config": "lrlab.lab.train.config",
    "lrlab.lab.setup": "lrlab.lab.train.parts",
    "lrlab.lab.device": "lrlab.lab.train.device",
    "lrlab.lab.distributed": "lrlab.lab.train.distributed",
    "lrlab.lab.trainer": "lrlab.lab.train.trainer",
    "lrlab.lab.vectorised": "lrlab.lab.train.vectorised",
    "lrlab.lab.auto_lr": "lrlab.lab.train.auto_lr",
    "lrlab.lab.plan": "lrlab.lab.compare.plan",
    "lrlab.lab.presets": "lrlab.lab.compare.presets",
    "lrlab.lab.runner": "lrlab.lab.compare.runner",
    "lrlab.lab.plots": "lrlab.lab.report.plots",
    "lrlab.lab.stats": "lrlab.lab.report.stats",
    "lrlab.lab.observations": "lrlab.lab.report.observations",
    "lrlab.lab.search_space": "lrlab.lab.tune.space",
    "lrlab.lab.study_storage": "lrlab.lab.tune.storage",
    "lrlab.lab.tune_presets": "lrlab.lab.tune.presets",
    "lrlab.lab.tune_report": "lrlab.lab.tune.report",
    "lrlab.lab.schedule_view": "lrlab.schedule_view",
}


def _caller_stacklevel() -> int:
    """The ``stacklevel`` for a warning raised in :meth:`MovedModuleFinder.create_module` that
    points at the user's ``import`` line: ``warnings`` itself skips the frames of the import
    machinery's bootstrap, so count only the other frames up to the first one outside
    importlib (``importlib.import_module`` is such a frame)."""
    frame = sys._getframe(2)  # the caller of create_module
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if not ("importlib" in name and "_bootstrap" in name):
            level += 1
        if "importlib" not in name:
            break
        frame = frame.f_back
    return level


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths of ``moved`` and loads each as the module at its new path."""

    def __init__(self, moved: dict[str, str]) -> None:
        self.moved = dict(moved)
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.moved:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = self.moved[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there (the old path "
                      f"goes in lrlab {REMOVED_IN})", DeprecationWarning,
                      stacklevel=_caller_stacklevel())
        module = importlib.import_module(new)
        self._specs[spec.name] = module.__spec__  # the import system overwrites it
        return module

    def exec_module(self, module: ModuleType) -> None:
        name = module.__spec__.name if module.__spec__ is not None else None
        if name in self._specs:
            module.__spec__ = self._specs.pop(name)


def install() -> None:
    """Put the finder of :data:`MOVED` on ``sys.meta_path`` (once per interpreter)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder(MOVED))
