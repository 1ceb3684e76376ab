"""The base of every phase: arguments, length, resolution, evaluation.

A phase is a frozen dataclass whose fields are its arguments (declared with
:func:`~lrlab.schedules.args.arg`), a spec ``name`` and a formula ``_value(u)`` of its local
time ``u``. The formula is only asked for ``0 <= u < T`` on a *resolved* phase, where every
duration is a whole number of updates (``Duration(n)``) and every absolute LR has become a
multiplier; from ``u = T`` on the schedule holds the phase at ``_end()``, the formula at
``u = T`` unless the phase says otherwise (warmup ends at 1).
"""

from __future__ import annotations

import functools
import math
from dataclasses import KW_ONLY, dataclass, replace
from typing import Any, ClassVar

from lrlab.schedules.args import Length, arg, check_args, format_call, resolve_args
from lrlab.schedules.schedule import Schedule
from lrlab.schedules.units import Context, Duration, DurationLike


def safe_pow(base: float, exponent: float) -> float:
    """``base ** exponent`` that gives ``inf`` instead of raising OverflowError."""
    try:
        return base**exponent
    except OverflowError:
        return math.inf


@dataclass(frozen=True, repr=False)
class Phase(Schedule):
    """One phase of a schedule. ``steps`` is its length (None: open / to the end)."""

    #: The name in spec strings (``cosine``).
    name: ClassVar[str] = "phase"
    #: Whether the formula needs the phase length T (so an open last phase needs total_steps).
    needs_length: ClassVar[bool] = True

    _: KW_ONLY
    steps: DurationLike | None = arg(None, kind=Length())

    def __post_init__(self) -> None:
        check_args(self)
        self._check()

    def _check(self) -> None:
        """Checks across arguments, after each argument was checked on its own."""

    @property
    def phases(self) -> tuple[Phase, ...]:  # type: ignore[override]
        return (self,)

    @property
    def plateau(self) -> None:  # type: ignore[override]
        return None

    def __str__(self) -> str:
        return format_call(self)

    # -- resolution -------------------------------------------------------------------
    def _length(self, ctx: Context) -> int | None:
        """Length in updates, or None when the phase has none of its own."""
        return None if self.steps is None else self.steps.to_steps(ctx)

    def _resolve_args(self, ctx: Context, T: int | None) -> dict[str, Any]:
        """Fields to replace in the resolved copy (besides ``steps``)."""
        return resolve_args(self, ctx)

    def _resolved(self, ctx: Context, T: int | None) -> tuple[Phase, ...]:
        """The resolved phase(s) for length ``T`` (onecycle expands into two)."""
        steps = None if T is None else Duration(T)
        return (replace(self, steps=steps, **self._resolve_args(ctx, T)),)

    # -- evaluation (resolved phases only) ---------------------------------------------
    @functools.cached_property
    def T(self) -> int | None:
        """The length of a resolved phase in units of ``t`` (None: open-ended)."""
        return None if self.steps is None else int(self.steps.value)

    def _value(self, u: int) -> float:
        """The multiplier at local time ``0 <= u < T``."""
        raise NotImplementedError

    def _end(self) -> float:
        """The multiplier held from ``u = T`` on."""
        return self._value(self.T)

    def _values(self, u0: int, n: int) -> list[float]:
        """``[_value(u0), ..., _value(u0 + n - 1)]``; a phase may do it faster."""
        f = self._value
        return [f(u) for u in range(u0, u0 + n)]
