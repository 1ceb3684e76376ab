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
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

from lrlab.errors import LrlabError

#: ``LightningPlateau`` and ``HFPlateau`` are built on first access (module ``__getattr__``), so
#: they are not in ``__all__``: ``import *`` would import both frameworks.
__all__ = ["plateau_schedulers"]


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


def _check_name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise LrlabError(f"{what} must be a metric name such as 'val_loss', got {value!r}")
    return value


def _lightning_plateau_class() -> type:
    try:
        from lightning.pytorch import Callback
    except ImportError:
        try:
            from pytorch_lightning import Callback
        except ImportError:
            raise ImportError("LightningPlateau needs PyTorch Lightning "
                              "(pip install lightning)") from None

    class LightningPlateau(Callback):  # type: ignore[misc,valid-type]
        """Report ``trainer.callback_metrics[monitor]`` to every ``lrlab.Scheduler`` with a
        plateau after each validation run of ``fit`` (sanity checks excluded).

        Args:
            monitor: the logged metric (``self.log("val_loss", ...)`` in validation_step).
            strict: raise LrlabError when the metric was not logged (else warn and skip),
                like Lightning's own ``strict`` for ``ReduceLROnPlateau``.

        At the start of ``fit`` it refuses set-ups that cannot work: no lrlab Scheduler with
        a plateau, one that already gets the metric through ``reduce_on_plateau`` (it would
        be reported twice), or an ``interval`` that does not match the Scheduler's ``per``.
        """

        def __init__(self, monitor: str = "val_loss", strict: bool = True) -> None:
            super().__init__()
            self.monitor = _check_name("monitor", monitor)
            self.strict = bool(strict)

        def _targets(self, trainer: Any) -> list[Any]:
            from lrlab.scheduler import Scheduler

            configs = list(getattr(trainer, "lr_scheduler_configs", []) or [])
            for c in configs:
                if not isinstance(c.scheduler, Scheduler):
                    continue
                if c.reduce_on_plateau and c.scheduler.plateau_state is not None:
                    raise LrlabError(
                        "LightningPlateau: this lrlab.Scheduler already gets the metric "
                        "through reduce_on_plateau=True; use one of the two, not both"
                    )
                if c.interval != c.scheduler.per:
                    raise LrlabError(
                        f"Lightning steps this lrlab.Scheduler once per {c.interval} "
                        f"(interval={c.interval!r}) but it counts {c.scheduler.per}s "
                        f"(per={c.scheduler.per!r}); make them the same"
                    )
            targets = plateau_schedulers(c.scheduler for c in configs)
            if not targets:
                raise LrlabError(
                    "LightningPlateau: configure_optimizers() returned no lrlab.Scheduler "
                    "with a plateau(...) to report to"
                )
            return targets

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            self._targets(trainer)

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking or str(getattr(trainer.state.fn, "value",
                                                      trainer.state.fn)) != "fit":
                return
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                msg = (f"LightningPlateau: metric {self.monitor!r} was not logged (logged: "
                       f"{sorted(trainer.callback_metrics)}); log it in validation_step")
                if self.strict:
                    raise LrlabError(msg)
                warnings.warn(msg + "; skipping this report", RuntimeWarning, stacklevel=2)
                return
            for sched in self._targets(trainer):
                sched.report(value)

    LightningPlateau.__module__ = __name__
    LightningPlateau.__qualname__ = "LightningPlateau"
    return LightningPlateau


def _hf_plateau_class() -> type:
    try:
        from transformers import TrainerCallback
    except ImportError:
        raise ImportError("HFPlateau needs transformers (pip install transformers)") from None

    class HFPlateau(TrainerCallback):  # type: ignore[misc,valid-type]
        """Report ``metrics[metric]`` to the Trainer's ``lrlab.Scheduler`` after each
        evaluation during ``train()`` (evaluations outside training are not reported).

        Args:
            metric: the evaluation metric; a name without the ``eval_`` prefix gets it
                (``"loss"`` -> ``"eval_loss"``), as HF's ``metric_for_best_model``.
            scheduler: the Scheduler to report to; by default the Trainer's own.
        """

        def __init__(self, metric: str = "eval_loss", scheduler: Any = None) -> None:
            name = _check_name("metric", metric)
            self.metric = name if name.startswith("eval_") else f"eval_{name}"
            self.scheduler = scheduler
            self._training = False

        def _target(self, lr_scheduler: Any) -> Any:
            found = plateau_schedulers([self.scheduler if self.scheduler is not None
                                        else lr_scheduler])
            if not found:
                raise LrlabError(
                    "HFPlateau: the Trainer's scheduler is not an lrlab.Scheduler with a "
                    "plateau(...); pass one with Trainer(optimizers=(opt, scheduler))"
                )
            return found[0]

        def on_train_begin(self, args: Any, state: Any, control: Any,
                           lr_scheduler: Any = None, **kwargs: Any) -> None:
            self._target(lr_scheduler)
            self._training = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._training = False

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None,
                        lr_scheduler: Any = None, **kwargs: Any) -> None:
            if not self._training:
                return
            if not metrics or self.metric not in metrics:
                raise LrlabError(f"HFPlateau: the evaluation has no {self.metric!r} (it has "
                                 f"{sorted(metrics or {})})")
            self._target(lr_scheduler).report(metrics[self.metric])

    HFPlateau.__module__ = __name__
    HFPlateau.__qualname__ = "HFPlateau"
    return HFPlateau


_LAZY: dict[str, Callable[[], type]] = {
    "LightningPlateau": _lightning_plateau_class,
    "HFPlateau": _hf_plateau_class,
}


def __getattr__(name: str) -> type:
    """Build ``LightningPlateau`` / ``HFPlateau`` on first use (importing the framework)."""
    make = _LAZY.get(name)
    if make is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    cls = make()
    globals()[name] = cls  # later look-ups (and pickle) find the same class
    return cls


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
