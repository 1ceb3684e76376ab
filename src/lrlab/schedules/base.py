"""The base of every phase: arguments, length, clock, resolution, evaluation.

A phase is a frozen dataclass whose fields are its arguments (declared with
:func:`~lrlab.schedules.args.arg`), a spec ``name`` and a formula ``_value(u)`` of its local
time ``u``. The formula is only asked for ``0 <= u < T`` on a *resolved* phase, where every
duration is a whole number of updates (``Duration(n)``) and every absolute LR has become a
multiplier; from ``u = T`` on the schedule holds the phase at ``_end()``, the formula at
``u = T`` unless the phase says otherwise (warmup ends at 1).

Every phase takes two keywords besides its own arguments:

- ``steps=``: how many updates it lasts (its *span*); none: to the end of training.
- ``clock=``: the clock its formula reads. ``phase`` (default): its own, 0 at its first
  update. ``train``: the training clock, as if the phase had started at update 0 and had
  been hidden until now; its formula then runs from 0 to where the phase ends. So in
  ``warmup(W) >> cosine(clock=train)`` over N updates the cosine has length N and is at
  ``cos(pi t/N)`` at update ``t >= W`` (timm's ``warmup_prefix=False``), where
  ``cosine()`` would have length N-W and start again at 1. Inside a product the training
  clock is still the training's. Resolving writes ``clock=train`` as ``clock=c``, the
  update the phase starts at (an explicit ``clock=c`` means the phase's clock reads ``c``
  at its first update): a phase with ``clock=c, steps=S`` evaluates its formula, of
  length ``T = c + S``, at ``u = c .. c+S-1``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import KW_ONLY, dataclass, replace
from typing import Any, ClassVar

from lrlab.schedules.args import Clock, Length, arg, check_args, format_call, resolve_args
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
    clock: str | int = arg("phase", kind=Clock())

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

    def _resolved(self, ctx: Context, T: int | None, start: int = 0) -> tuple[Phase, ...]:
        """The resolved phase(s) for span ``T``, starting at update ``start`` of training
        (onecycle expands into two)."""
        c = start if self.clock == "train" else self.offset
        steps = None if T is None else Duration(T)
        length = None if T is None else T + c
        return (replace(self, steps=steps, clock=c or "phase",
                        **self._resolve_args(ctx, length)),)

    # -- evaluation (resolved phases only) ---------------------------------------------
    @property
    def offset(self) -> int:
        """What the clock of a resolved phase reads at its first update (0: its own)."""
        return self.clock if isinstance(self.clock, int) else 0

    @functools.cached_property
    def span(self) -> int | None:
        """How many updates a resolved phase lasts (None: open-ended)."""
        return None if self.steps is None else int(self.steps.value)

    @functools.cached_property
    def T(self) -> int | None:
        """The length of a resolved phase's formula in units of ``t``: its span, plus its
        clock offset (None: open-ended)."""
        return None if self.steps is None else int(self.steps.value) + self.offset

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
