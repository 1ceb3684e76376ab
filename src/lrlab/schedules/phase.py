"""The base of every phase: argument handling, length, resolution, pinning.

A phase of length ``T`` is evaluated at local times ``u >= 0``; from ``u = T`` on its value
is pinned at its end value (the formula at ``u = T``; for warmup, 1). Subclasses implement
``_value(u)`` for a *resolved* phase, where every duration is a whole number of updates
(``Duration(n)``) and every absolute LR has become a multiplier.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from lrlab.errors import SpecError
from lrlab.schedules.args import ArgError, Param, end_multiplier, format_call, normalize_fields
from lrlab.schedules.chain import Schedule
from lrlab.schedules.units import Context, Duration

#: Every phase takes an optional length ``steps=``.
STEPS = Param("steps", "dur", nullable=True)
#: ``end=`` and its absolute twin ``end_lr=``.
END = Param("end", "num", ">=0")
END_LR = Param("end_lr", "lr", ">=0", nullable=True)


def safe_pow(base: float, exponent: float) -> float:
    """``base ** exponent`` that gives ``inf`` instead of raising OverflowError."""
    try:
        return base**exponent
    except OverflowError:
        return math.inf


@dataclass(frozen=True, kw_only=True, repr=False)
class Phase(Schedule):
    """One phase of a schedule. ``steps`` is its length (None: open / to the end)."""

    name: ClassVar[str] = "phase"
    params: ClassVar[tuple[Param, ...]] = (STEPS,)
    #: Whether the formula needs the phase length T (so an open last phase needs total_steps).
    needs_length: ClassVar[bool] = True

    steps: Any = None

    def __post_init__(self) -> None:
        normalize_fields(self, self.params, f"{self.name}()")
        self._check()

    def _check(self) -> None:
        """Cross-argument checks (after each argument was normalised)."""
        if getattr(self, "end_lr", None) is not None and getattr(self, "end", 0) != 0:
            raise ArgError(f"{self.name}(): give end= or end_lr=, not both", "end_lr")

    @property
    def phases(self) -> tuple[Phase, ...]:  # type: ignore[override]
        return (self,)

    @property
    def plateau(self) -> None:  # type: ignore[override]
        return None

    def __str__(self) -> str:
        return format_call(self, self.name, self.params)

    # -- resolution -------------------------------------------------------------------
    def _needs_length(self) -> bool:
        return self.needs_length

    def _length(self, ctx: Context) -> int | None:
        """Length in updates, or None when the phase has none of its own."""
        return None if self.steps is None else self.steps.to_steps(ctx)

    def _resolve_args(self, ctx: Context, T: int | None) -> dict[str, Any]:
        """Fields to replace in the resolved copy (besides ``steps``)."""
        args: dict[str, Any] = {}
        if getattr(self, "end_lr", None) is not None:
            args["end"] = end_multiplier(0.0, self.end_lr, ctx.peak_lr, f"end_lr={self.end_lr}")
            args["end_lr"] = None
        return args

    def _resolved(self, ctx: Context, T: int | None) -> tuple[Phase, ...]:
        """The resolved phase(s) for length ``T`` (onecycle expands into two)."""
        steps = None if T is None else Duration(T)
        return (replace(self, steps=steps, **self._resolve_args(ctx, T)),)

    # -- evaluation (resolved phases only) ---------------------------------------------
    @functools.cached_property
    def _T(self) -> int | None:  # cached: read on every evaluation
        return None if self.steps is None else int(self.steps.value)

    def _value(self, u: int) -> float:
        raise NotImplementedError

    def _values(self, u0: int, n: int) -> list[float]:
        f = self._value
        return [f(u) for u in range(u0, u0 + n)]


def updates_of(d: Duration, ctx: Context, what: str) -> int:
    """Whole updates of a duration argument; SpecError if it rounds to 0."""
    n = d.to_steps(ctx)
    if n <= 0:
        raise SpecError(f"{what}={d} rounds to {n} updates; it must be at least 1")
    return n
