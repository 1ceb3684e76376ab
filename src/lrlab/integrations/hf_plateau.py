"""``HFPlateau``: a Hugging Face ``Trainer`` callback that reports an evaluation metric to the
Trainer's ``lrlab.Scheduler`` with a ``plateau(...)`` (see :mod:`lrlab.integrations`).

Importing this module imports ``transformers``; ``lrlab.integrations.HFPlateau`` imports it
on first use.
"""

from __future__ import annotations

from typing import Any

from lrlab.errors import LrlabError
from lrlab.integrations import check_metric_name, plateau_schedulers

try:
    from transformers import TrainerCallback
except ImportError:
    raise ImportError("HFPlateau needs transformers (pip install transformers)") from None

__all__ = ["HFPlateau"]


class HFPlateau(TrainerCallback):  # type: ignore[misc,valid-type]
    """Report ``metrics[metric]`` to the Trainer's ``lrlab.Scheduler`` after each
    evaluation during ``train()`` (evaluations outside training are not reported).

    Args:
        metric: the evaluation metric; a name without the ``eval_`` prefix gets it
            (``"loss"`` -> ``"eval_loss"``), as HF's ``metric_for_best_model``.
        scheduler: the Scheduler to report to; by default the Trainer's own.
    """

    def __init__(self, metric: str = "eval_loss", scheduler: Any = None) -> None:
        name = check_metric_name("metric", metric)
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
