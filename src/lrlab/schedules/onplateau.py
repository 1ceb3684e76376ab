"""A metric-driven LR factor: ``SPEC * plateau(factor=0.1, patience=10, ...)``.

:class:`Plateau` holds the settings (it is part of a schedule and of its spec string);
:class:`PlateauState` is the state machine that consumes one metric per report (usually
per epoch) and yields the current factor of each param group. The schedule's own multiplier
``s(t)`` does not include it: the LR of group ``i`` is ``peak_i * s(t) * state.factors[i]``,
so a plateau combines with any schedule, warmup included.

Semantics are those of ``torch.optim.lr_scheduler.ReduceLROnPlateau``, applied to the
plateau's own LR ``peak_i * factors[i]`` of each group (the LR torch's class would hold if
the schedule were ``constant()``):

- a metric is *better* when, with ``threshold_mode=rel`` (the default),
  ``m < best * (1 - threshold)`` (mode ``min``) or ``m > best * (1 + threshold)`` (mode
  ``max``); with ``threshold_mode=abs``, ``m < best - threshold`` or
  ``m > best + threshold``; otherwise the report is a bad one, and a NaN metric is always bad;
- during cooldown bad reports are not counted;
- after more than ``patience`` bad reports in a row each group's LR ``lr = peak * f`` is
  multiplied by ``factor``, never going below its floor, and cooldown starts. The floor is
  ``min * peak`` (``min``: a multiplier of each group's peak) or ``min_lr`` (an absolute LR,
  torch's ``min_lr``: one value for every group, or a list with one per group; give one of
  ``min``/``min_lr``). A group whose LR would fall by ``eps`` or less keeps it (torch's
  ``eps``, an absolute LR).

One difference from torch: ``eps`` defaults to 0, not 1e-8, so that a spec means the same
whatever the size of the peak LR; write ``eps=1e-8`` for torch's behaviour exactly.
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
    ArgError,
    Kind,
    Number,
    OneOf,
    Whole,
    arg,
    check_args,
    format_call,
)


class LRs(Kind):
    """An absolute LR >= 0, or a non-empty list of them (one per param group), stored as a
    float or a tuple of floats."""

    def check(self, value: Any, where: str) -> float | tuple[float, ...]:
        one = Number(AT_LEAST_0)
        if isinstance(value, (list, tuple)):
            if not value:
                raise ArgError(f"{where} must not be an empty list")
            out = []
            for i, v in enumerate(value):
                try:
                    out.append(one.check(v, where))
                except ArgError as e:
                    e.index = i
                    raise
            return tuple(out)
        return one.check(value, where)


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
    threshold_mode: str = arg("rel", kind=OneOf("rel", "abs"))
    min_lr: float | tuple[float, ...] | None = arg(None, kind=LRs())
    eps: float = arg(0.0, kind=Number(AT_LEAST_0))

    def __post_init__(self) -> None:
        check_args(self)
        if self.min_lr is not None and self.min != 0.0:
            raise ArgError("plateau(): give min= (a multiplier) or min_lr= (an absolute LR), "
                           "not both", "min_lr")

    def floors(self, peaks: tuple[float, ...]) -> list[float]:
        """The lowest LR of each param group (absolute), for groups with these peak LRs."""
        if self.min_lr is None:
            return [self.min * p for p in peaks]
        if isinstance(self.min_lr, tuple):
            if len(self.min_lr) != len(peaks):
                raise LrlabError(
                    f"{self} gives {len(self.min_lr)} min_lr values for {len(peaks)} param "
                    f"group{'' if len(peaks) == 1 else 's'}: give one value, or one per group"
                )
            return list(self.min_lr)
        return [self.min_lr] * len(peaks)

    def __str__(self) -> str:
        return format_call(self)

    def __repr__(self) -> str:
        return str(self)


plateau = Plateau


@dataclass
class PlateauState:
    """The running state of a :class:`Plateau`: feed it metrics, read ``factors``.

    ``peaks``: the peak LR of each param group, which ``min_lr=`` and ``eps=`` (absolute
    LRs) are measured against; by default one group per ``min_lr`` value, at peak 1 (then
    factors are LRs).
    """

    plateau: Plateau = field(default_factory=Plateau)
    peaks: tuple[float, ...] | None = None
    factors: list[float] = field(default_factory=list)
    best: float = math.nan  # set in __post_init__ from the mode
    num_bad: int = 0
    cooldown_counter: int = 0
    reports: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.plateau, Plateau):
            raise SpecError(f"PlateauState needs a Plateau, got {self.plateau!r}")
        if self.peaks is None:
            n = len(self.plateau.min_lr) if isinstance(self.plateau.min_lr, tuple) else 1
            self.peaks = (1.0,) * n
        self.peaks = tuple(float(p) for p in self.peaks)
        if not self.peaks or not all(math.isfinite(p) and p >= 0 for p in self.peaks):
            raise LrlabError(f"plateau peaks must be finite LRs >= 0, got {self.peaks}")
        self._floors = self.plateau.floors(self.peaks)
        if not self.factors:
            self.factors = [1.0] * len(self.peaks)
        if len(self.factors) != len(self.peaks):
            raise LrlabError(f"{len(self.factors)} plateau factors for {len(self.peaks)} groups")
        if math.isnan(self.best):
            self.best = math.inf if self.plateau.mode == "min" else -math.inf

    @property
    def factor(self) -> float:
        """The factor of the first param group (of every group, unless ``min_lr`` or ``eps``
        stopped some groups' reductions earlier than others)."""
        return self.factors[0]

    @factor.setter
    def factor(self, value: float) -> None:
        self.factors = [float(value)] * len(self.factors)

    @property
    def uniform(self) -> bool:
        """True when every group has the same factor."""
        first = self.factors[0]
        return all(f == first for f in self.factors)

    def _is_better(self, metric: float) -> bool:
        p = self.plateau
        if p.threshold_mode == "rel":
            if p.mode == "min":
                return metric < self.best * (1.0 - p.threshold)
            return metric > self.best * (1.0 + p.threshold)
        if p.mode == "min":
            return metric < self.best - p.threshold
        return metric > self.best + p.threshold

    def _reduce(self) -> None:
        """Multiply each group's LR by ``factor``, not below its floor, unless it would fall by
        ``eps`` or less (torch's ``_reduce_lr``, on the LR ``peak * factor`` of each group)."""
        p = self.plateau
        for i, (peak, floor) in enumerate(zip(self.peaks, self._floors)):
            old = peak * self.factors[i]
            new = max(old * p.factor, floor)
            if old - new > p.eps:  # implies old > 0, so peak > 0
                self.factors[i] = new / peak

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
            self._reduce()
            self.cooldown_counter = self.plateau.cooldown
            self.num_bad = 0

    def state_dict(self) -> dict[str, Any]:
        """Plain-dict state; ``plateau`` is its spec string, ``factor`` the first group's."""
        return {
            "plateau": str(self.plateau),
            "factor": self.factors[0],
            "factors": list(self.factors),
            "best": self.best,
            "num_bad": self.num_bad,
            "cooldown_counter": self.cooldown_counter,
            "reports": self.reports,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (settings must match). A state saved
        before per-group factors (``factor`` only) gives every group that factor."""
        try:
            if state["plateau"] != str(self.plateau):
                raise LrlabError(
                    f"plateau state is for {state['plateau']}, not for {self.plateau}"
                )
            first = float(state["factor"])
            saved = state.get("factors")
            if saved is None:
                factors = [first] * len(self.peaks)
            else:
                factors = [float(f) for f in saved]
                if len(factors) != len(self.peaks):
                    raise LrlabError(f"plateau state has {len(factors)} factors for "
                                     f"{len(self.peaks)} param groups")
            best = float(state["best"])
            num_bad = int(state["num_bad"])
            cooldown_counter = int(state["cooldown_counter"])
            reports = int(state["reports"])
        except (KeyError, TypeError, ValueError) as e:
            raise LrlabError(f"bad plateau state: {e!r}") from None
        self.factors, self.best, self.num_bad = factors, best, num_bad
        self.cooldown_counter, self.reports = cooldown_counter, reports
