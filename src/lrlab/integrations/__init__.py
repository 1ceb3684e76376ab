"""Framework glue: feed a validation metric to an ``lrlab.Scheduler``'s ``plateau(...)``.

``lrlab.Scheduler`` is a torch ``LRScheduler``, so PyTorch Lightning and the Hugging Face
``Trainer`` step it like any other. What they cannot do on their own is hand it the
validation metric that a ``* plateau(...)`` factor needs; without one the plateau would
do nothing (the Scheduler warns once, see ``Scheduler.report``). The two ways:

PyTorch Lightning, native. For a schedule stepped per epoch, Lightning's own
reduce-on-plateau path works as is: it calls ``scheduler.step(metric)`` once per interval
with the monitored value, and the Scheduler reports the metric, then advances one epoch::

    sched = lrlab.Scheduler(opt, "warmup(2) >> cosine() * plateau(patience=3)",
                            per="epoch", epochs=max_epochs)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch",
            "monitor": "val_loss", "reduce_on_plateau": True}}

PyTorch Lightning, per-update schedules. With ``"interval": "step"`` Lightning would pass the
(stale) metric at every update; instead keep a plain step config and add the callback,
which reports once per validation run::

    sched = lrlab.Scheduler(opt, "warmup(500) >> cosine() * plateau(patience=3)",
                            total_steps=trainer.estimated_stepping_batches)
    # configure_optimizers: {"scheduler": sched, "interval": "step"}
    Trainer(callbacks=[LightningPlateau(monitor="val_loss")])

Hugging Face ``Trainer`` (which steps a non-``ReduceLROnPlateau`` scheduler every update and
never passes it a metric)::

    Trainer(..., optimizers=(opt, sched), callbacks=[HFPlateau(metric="eval_loss")])

``HFPlateau`` reports ``metrics[metric]`` after each evaluation during training (``"loss"``
means ``"eval_loss"``, as HF's ``metric_for_best_model`` does). The plateau's state is part
of ``scheduler.state_dict()``, so both frameworks' checkpoints resume it exactly.

Under data parallelism every rank reports its own metric: log it synchronised
(Lightning ``self.log(..., sync_dist=True)``; HF's evaluation loss already is) so that every
rank's plateau takes the same decisions.

Lightning (``lightning.pytorch``, else ``pytorch_lightning``) and ``transformers`` are imported
only when ``LightningPlateau`` or ``HFPlateau`` is first used: lrlab does not depend on them.
Each class lives in a submodule of its own (:mod:`lrlab.integrations.lightning_plateau`,
:mod:`lrlab.integrations.hf_plateau`) that imports its framework; this package imports it on
the first look-up of the name, and pickle finds the class under its real module.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from lrlab.errors import LrlabError

#: ``LightningPlateau`` and ``HFPlateau`` are imported on first access (module ``__getattr__``),
#: so they are not in ``__all__``: ``import *`` would import both frameworks.
__all__ = ["plateau_schedulers", "check_metric_name"]

#: The lazily imported classes and the submodule (of this package) that defines each.
_LAZY = {"LightningPlateau": "lightning_plateau", "HFPlateau": "hf_plateau"}


def plateau_schedulers(candidates: Iterable[Any]) -> list[Any]:
    """The ``lrlab.Scheduler``s among ``candidates`` whose schedule has a ``plateau(...)``.

    Wrappers with a ``.scheduler`` attribute (accelerate's ``AcceleratedScheduler``) are
    looked through.
    """
    from lrlab.scheduler import Scheduler

    found = []
    for obj in candidates:
        inner = obj if isinstance(obj, Scheduler) else getattr(obj, "scheduler", None)
        if isinstance(inner, Scheduler) and inner.plateau_state is not None \
                and all(inner is not f for f in found):
            found.append(inner)
    return found


def check_metric_name(what: str, value: Any) -> str:
    """``value`` when it is a non-empty string (a metric name), else an LrlabError naming
    the argument ``what``."""
    if not isinstance(value, str) or not value:
        raise LrlabError(f"{what} must be a metric name such as 'val_loss', got {value!r}")
    return value


def __getattr__(name: str) -> type:
    """Import ``LightningPlateau`` / ``HFPlateau`` on first use (importing the framework)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = cls  # later look-ups find it without this function
    return cls


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
