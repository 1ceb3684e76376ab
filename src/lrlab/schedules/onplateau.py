"""A metric-driven LR factor: ``SPEC * plateau(factor=0.1, patience=10, ...)``.

:class:`Plateau` holds the settings (it is part of a schedule and of its spec string);
:class:`PlateauState` is the state machine that consumes one metric per report (usually
per epoch) and yields the current factor. The schedule's own multiplier ``s(t)`` does not
include it: the LR is ``peak * s(t) * state.factor``, so a plateau combines with any
schedule, warmup included.

Semantics are those of ``torch.optim.lr_scheduler.ReduceLROnPlateau`` with
``threshold_mode="rel"``, in multiplier space:

- a metric is *better* when ``m < best * (1 - threshold)`` (mode ``min``) or
  ``m > best * (1 + threshold)`` (mode ``max``); otherwise the report is a bad one, and a
  NaN metric is always bad;
- during cooldown bad reports are not counted;
- after more than ``patience`` bad reports in a row the factor is multiplied by ``factor``,
  never going below ``min`` (a floor on the multiplier, torch's ``min_lr`` divided by the
  peak LR), and cooldown starts.

Unlike torch there is no ``eps``: reductions stop only at ``min``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lrlab.errors import LrlabError, SpecError
from lrlab.schedules.args import (
    AT_LEAST_0,
    OPEN_UNIT,
    UNIT,
    Number,
    OneOf,
    Whole,
    arg,
    check_args,
    format_call,
)


@dataclass(frozen=True, kw_only=True, repr=False)
class Plateau:
    """Settings of a reduce-on-plateau factor (see the module docstring)."""

    name: ClassVar[str] = "plateau"

    factor: float = arg(0.1, kind=Number(OPEN_UNIT))
    patience: int = arg(10, kind=Whole(AT_LEAST_0))
    threshold: float = arg(1e-4, kind=Number(AT_LEAST_0))
    cooldown: int = arg(0, kind=Whole(AT_LEAST_0))
    min: float = arg(0.0, kind=Number(UNIT))
    mode: str = arg("min", kind=OneOf("min", "max"))

    def __post_init__(self) -> None:
        check_args(self)

    def __str__(self) -> str:
        return format_call(self)

    def __repr__(self) -> str:
        return str(self)


plateau = Plateau


@dataclass
class PlateauState:
    """The running state of a :class:`Plateau`: feed it metrics, read ``factor``."""

    plateau: Plateau = field(default_factory=Plateau)
    factor: float = 1.0
    best: float = math.nan  # set in __post_init__ from the mode
    num_bad: int = 0
    cooldown_counter: int = 0
    reports: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.plateau, Plateau):
            raise SpecError(f"PlateauState needs a Plateau, got {self.plateau!r}")
        if math.isnan(self.best):
            self.best = math.inf if self.plateau.mode == "min" else -math.inf

    def _is_better(self, metric: float) -> bool:
        p = self.plateau
        if p.mode == "min":
            return metric < self.best * (1.0 - p.threshold)
        return metric > self.best * (1.0 + p.threshold)

    def report(self, metric: float) -> None:
        """Take one metric value (e.g. the validation loss of an epoch)."""
        try:
            m = float(metric)
        except (TypeError, ValueError):
            raise LrlabError(f"plateau metric must be a number, got {metric!r}") from None
        self.reports += 1
        if self._is_better(m):  # NaN compares False: a bad report
            self.best = m
            self.num_bad = 0
        else:
            self.num_bad += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad = 0
        if self.num_bad > self.plateau.patience:
            self.factor = max(self.factor * self.plateau.factor, self.plateau.min)
            self.cooldown_counter = self.plateau.cooldown
            self.num_bad = 0

    def state_dict(self) -> dict[str, Any]:
        """Plain-dict state; ``plateau`` is its spec string."""
        return {
            "plateau": str(self.plateau),
            "factor": self.factor,
            "best": self.best,
            "num_bad": self.num_bad,
            "cooldown_counter": self.cooldown_counter,
            "reports": self.reports,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (settings must match)."""
        try:
            if state["plateau"] != str(self.plateau):
                raise LrlabError(
                    f"plateau state is for {state['plateau']}, not for {self.plateau}"
                )
            self.factor = float(state["factor"])
            self.best = float(state["best"])
            self.num_bad = int(state["num_bad"])
            self.cooldown_counter = int(state["cooldown_counter"])
            self.reports = int(state["reports"])
        except (KeyError, TypeError, ValueError) as e:
            raise LrlabError(f"bad plateau state: {e!r}") from None
