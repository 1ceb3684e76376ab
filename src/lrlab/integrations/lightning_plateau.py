"""``LightningPlateau``: a PyTorch Lightning callback that reports a validation metric to the
``lrlab.Scheduler``s with a ``plateau(...)`` (see :mod:`lrlab.integrations`).

Importing this module imports Lightning (``lightning.pytorch``, else ``pytorch_lightning``);
``lrlab.integrations.LightningPlateau`` imports it on first use.
"""

from __future__ import annotations

import warnings
from typing import Any

from lrlab.errors import LrlabError
from lrlab.integrations import check_metric_name, plateau_schedulers
from lrlab.scheduler import Scheduler

try:
    from lightning.pytorch import Callback
except ImportError:
    try:
        from pytorch_lightning import Callback
    except ImportError:
        raise ImportError("LightningPlateau needs PyTorch Lightning "
                          "(pip install lightning)") from None

__all__ = ["LightningPlateau"]


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
        self.monitor = check_metric_name("monitor", monitor)
        self.strict = bool(strict)

    def _targets(self, trainer: Any) -> list[Any]:
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
