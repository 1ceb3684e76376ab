"""What every schedule can do (:class:`Schedule`) and phases run one after another (:class:`Chain`).

A schedule is a tuple of phases plus an optional :class:`Plateau`. Phase ``i`` starts
where phase ``i-1`` ends and sees local time ``u = t - start`` (unless it reads the
training clock, ``clock=train``: see :mod:`lrlab.schedules.base`). An element of the tuple
may also be a product ``a * b`` of schedules (:mod:`lrlab.schedules.product`), which takes
the place of one phase.

Resolution (:meth:`Schedule.resolve`) walks the phases once, left to right:

- a phase with a length (``steps=``, or warmup's own length) takes that many updates;
- the last phase without a length runs to the end of training, ``total_steps - start``;
  when ``total_steps`` is unknown it stays open-ended, which only phases that do not need
  their length may do (constant, exp, rsqrt, factor, multistep, restarts(period=),
  cyclic);
- a phase without a length that is not last is an error (where would the next start?);
- lengths must be positive and must fit in training when ``total_steps`` is known;
- every duration becomes a whole number of updates and every absolute LR (``end_lr=``,
  ``start_lr=``, ``floor_lr=``) becomes a multiplier of ``peak_lr``.

A schedule that needs nothing from a :class:`Context` (``warmup(4)``, ``cosine(steps=100)``)
can be called directly; otherwise calling it raises a SpecError saying what to resolve.
Evaluation is closed form: ``s(t)`` costs O(log phases) and ``s.values(n)`` O(n + phases).
After its length the last phase is pinned at its end value (warmup: 1; a decay: ``end``).
The plateau is not part of ``s(t)``: it is a separate, metric-driven factor (see
:mod:`lrlab.schedules.onplateau`) that the torch adapter multiplies in.
"""

from __future__ import annotations

import functools
import math
import numbers
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from lrlab.errors import SpecError
from lrlab.schedules.onplateau import Plateau
from lrlab.schedules.units import Context, Duration


class Schedule:
    """Maps the 0-based update index ``t`` to a multiplier of the peak LR.

    Subclasses provide ``phases`` (tuple of phases) and ``plateau`` (Plateau or None).
    """

    phases: tuple[Any, ...]
    plateau: Plateau | None

    #: The spec parser, for ``s >> "cosine()"``. The parser is built on the phases, which are
    #: built on this class, so :mod:`lrlab.schedules.parser` plugs ``parse`` in here when it is
    #: imported (importing any part of ``lrlab.schedules`` imports it) instead of this module
    #: importing the parser.
    _parse_spec: ClassVar[Callable[[str], Schedule]]
    #: ``a * b`` of two schedules, plugged in by :mod:`lrlab.schedules.product` the same way.
    _multiply: ClassVar[Callable[[Schedule, Schedule], Schedule]]

    @property
    def has_plateau(self) -> bool:
        """True when a metric-driven ``* plateau(...)`` factor is attached."""
        return self.plateau is not None

    def without_plateau(self) -> Schedule:
        """The same schedule with its plateau removed."""
        return schedule_of(self.phases, None)

    # -- resolution -------------------------------------------------------------------
    def resolve(self, ctx: Context | None = None) -> Schedule:
        """An equal-valued schedule with every duration in updates and every absolute LR
        turned into a multiplier; SpecError naming whatever ``ctx`` lacks."""
        if ctx is None:
            ctx = Context()
        if not isinstance(ctx, Context):
            raise SpecError(f"resolve() takes a Context, got {type(ctx).__name__}")
        return schedule_of(resolve_phases(self.phases, ctx), self.plateau)

    @functools.cached_property
    def _plan(self) -> _Plan:
        try:
            resolved = self.resolve(Context())
        except SpecError as e:
            raise SpecError(
                f"cannot evaluate '{self}' before it is resolved ({e}); "
                "call .resolve(Context(total_steps=..., ...)) first"
            ) from None
        return _Plan(resolved.phases)

    # -- evaluation -------------------------------------------------------------------
    def __call__(self, t: int) -> float:
        """Multiplier for the 0-based update index ``t``."""
        if type(t) is not int or t < 0:  # fast path for the common case
            t = _check_index(t, "t")
        plan = self._plan
        i = bisect_right(plan.starts, t) - 1
        return plan.segments[i]._value(t - plan.starts[i])

    def evaluator(self) -> Callable[[int], float]:
        """A fast ``t -> multiplier`` for hot loops: same values as ``self(t)``, but ``t``
        (an int >= 0) is not checked. Resolves like ``__call__`` does.

        It is a closure (the fastest call in CPython), so it cannot be pickled: pickle the
        schedule and call ``evaluator()`` again after loading (the torch adapter does).
        """
        plan = self._plan
        starts = tuple(plan.starts)
        fns = tuple(s._value for s in plan.segments)
        if len(fns) == 1:
            return fns[0]  # one open-ended phase starting at 0: its local time is t
        if len(fns) == 2 and isinstance(plan.segments[1], _Hold):
            # one phase, then its end value: a comparison instead of a search (-0.1 us/step
            # in benchmarks/scheduler_step.py with "cosine()")
            f, T, end = fns[0], starts[1], plan.segments[1].value
            return lambda t: f(t) if t < T else end

        def evaluate(t: int) -> float:
            i = bisect_right(starts, t) - 1
            return fns[i](t - starts[i])

        return evaluate

    def values(self, n: int, start: int = 0) -> list[float]:
        """``[self(start), ..., self(start + n - 1)]`` in O(n) total."""
        n = _check_index(n, "n")
        t = _check_index(start, "start")
        plan = self._plan
        starts, segments = plan.starts, plan.segments
        stop = t + n
        out: list[float] = []
        while t < stop:
            i = bisect_right(starts, t) - 1
            end = min(stop, starts[i + 1]) if i + 1 < len(starts) else stop
            out.extend(segments[i]._values(t - starts[i], end - t))
            t = end
        return out

    def first_nonfinite(self, horizon: int | None = None, scale: float = 1.0) -> int | None:
        """The first ``t`` in ``[0, horizon]`` where ``scale * self(t)`` is inf or NaN, else None.

        ``horizon`` is the last index that matters (the end of training: the LR a scheduler
        sets after the last update is included); None means every ``t >= 0``, so a multiplier
        that grows without end (``exp(1.5)`` with no length) is found where it overflows.
        ``scale`` is the peak LR, so ``1e308 * 10`` counts as inf. Each phase is checked at its
        first and last index inside the range, and the first bad index is found by bisection:
        exact for phases monotone in their local time (all but ``restarts(decay>1)``, whose
        cycle peaks inside the phase are not looked at). Costs O(phases * 64) evaluations.
        """
        h = _check_index(horizon, "horizon") if horizon is not None else None
        plan = self._plan
        starts, segments = plan.starts, plan.segments
        for i, seg in enumerate(segments):
            start = starts[i]
            if h is not None and start > h:
                break
            last = starts[i + 1] - 1 - start if i + 1 < len(segments) else _FAR
            if h is not None:
                last = min(last, h - start)
            if not _finite_at(seg, 0, scale):
                return start
            if not _finite_at(seg, last, scale):
                return start + _first_bad(seg, last, scale)
        return None

    def boundaries(self) -> list[int]:
        """Update indices where each phase after the first starts."""
        plan = self._plan
        return plan.starts[1 : len(plan.phases)]

    def phase_at(self, t: int) -> str:
        """Name of the phase active at update ``t`` (``"warmup"``, ``"cosine"``, ...)."""
        t = _check_index(t, "t")
        plan = self._plan
        return plan.segments[bisect_right(plan.starts, t) - 1].name

    # -- composition ------------------------------------------------------------------
    def __rshift__(self, other: Schedule | str) -> Schedule:
        if isinstance(other, str):
            other = self._parse_spec(other)
        if not isinstance(other, Schedule):
            return NotImplemented
        plateaus = [s.plateau for s in (self, other) if s.plateau is not None]
        if len(plateaus) > 1:
            raise SpecError("a schedule can have only one plateau(...)")
        return schedule_of(self.phases + other.phases, plateaus[0] if plateaus else None)

    def __rrshift__(self, other: str) -> Schedule:
        if isinstance(other, str):
            return self._parse_spec(other) >> self
        return NotImplemented

    def __mul__(self, other: Schedule | Plateau | str) -> Schedule:
        """``s * plateau(...)``: the metric-driven factor (one per schedule, wherever it is
        written: it multiplies the whole schedule); ``a * b``: the product of two schedules
        at the same update (see :mod:`lrlab.schedules.product`)."""
        if isinstance(other, str):
            other = self._parse_spec(other)
        if isinstance(other, Plateau):
            if self.plateau is not None:
                raise SpecError("a schedule can have only one plateau(...)")
            return Chain(self.phases, other)
        if isinstance(other, Schedule):
            return self._multiply(self, other)
        return NotImplemented

    def __rmul__(self, other: Plateau | str) -> Schedule:
        if isinstance(other, str):
            return self._parse_spec(other) * self
        if isinstance(other, Plateau):
            return self * other
        return NotImplemented

    def __repr__(self) -> str:
        return f"parse({str(self)!r})"


@dataclass(frozen=True, repr=False)
class Chain(Schedule):
    """Phases run one after another, optionally times a plateau factor.

    Built by ``a >> b`` and ``s * plateau(...)``; always flat (``a >> (b >> c)`` equals
    ``(a >> b) >> c``) and never a single phase without a plateau.
    """

    phases: tuple[Any, ...]
    plateau: Plateau | None = None

    def __post_init__(self) -> None:
        phases = tuple(self.phases)
        for p in phases:
            if not isinstance(p, Schedule) or isinstance(p, Chain):
                raise SpecError(f"a Chain holds phases, got {p!r}")
        if not phases:
            raise SpecError("a Chain needs at least one phase")
        if len(phases) == 1 and self.plateau is None:
            raise SpecError("a Chain of one phase needs a plateau; use the phase itself")
        if self.plateau is not None and not isinstance(self.plateau, Plateau):
            raise SpecError(f"plateau must be a Plateau, got {self.plateau!r}")
        object.__setattr__(self, "phases", phases)

    def __str__(self) -> str:
        body = " >> ".join(str(p) for p in self.phases)
        if self.plateau is None:
            return body
        if len(self.phases) == 1 and body == "constant()":
            return str(self.plateau)
        return f"{body} * {self.plateau}"


def schedule_of(phases: tuple[Any, ...], plateau: Plateau | None = None) -> Schedule:
    """The schedule of ``phases`` laid end to end, times ``plateau``: the phase itself when
    there is one phase and no plateau, else a :class:`Chain` (which is never a lone phase).
    The constructor that ``>>``, ``*`` and resolution build their results with."""
    if len(phases) == 1 and plateau is None:
        return phases[0]
    return Chain(phases, plateau)


#: Where an open-ended last phase is probed for growth without end (a later t is never reached).
_FAR = 2**62


def _finite_at(segment: Any, u: int, scale: float) -> bool:
    try:
        return math.isfinite(scale * segment._value(u))
    except OverflowError:
        return False


def _first_bad(segment: Any, bad: int, scale: float) -> int:
    """The first non-finite local time of a segment finite at 0 and not at ``bad``: bisection."""
    good = 0
    while bad - good > 1:
        mid = (good + bad) // 2
        if _finite_at(segment, mid, scale):
            good = mid
        else:
            bad = mid
    return bad


def _check_index(t: Any, what: str) -> int:
    if not isinstance(t, numbers.Integral) or isinstance(t, bool):
        raise SpecError(f"{what} must be a whole number, got {t!r}")
    if t < 0:
        raise SpecError(f"{what} must be >= 0, got {t}")
    return int(t)


_TRAINING = object()


def resolve_phases(phases: tuple[Any, ...], ctx: Context, origin: int = 0,
                   span: Any = _TRAINING) -> tuple[Any, ...]:
    """Resolve phases laid end to end from update ``origin`` of training, within ``span``
    updates (the rest of training by default; a product's length for its factors, None:
    open-ended). Returns the resolved phases (the rules are in the module docstring); a
    SpecError names the phase that cannot be resolved."""
    total = ctx.total_steps if span is _TRAINING else span
    within = "training" if span is _TRAINING else "the product"
    out: list[Any] = []
    start = 0
    for i, p in enumerate(phases):
        try:
            T = p._length(ctx)
        except SpecError as e:
            raise SpecError(f"{e}, in {p}") from None
        if T is None:
            T = _open_length(p, start, total, last=i == len(phases) - 1,
                             unit=_unit(ctx), within=within)
        else:
            _check_fits(p, T, start, total, _unit(ctx), within=within)
        try:
            out.extend(p._resolved(ctx, T, origin + start))
        except SpecError as e:
            raise SpecError(f"{e}, in {p}") from None
        if T is not None:
            start += T
    return tuple(out)


def _unit(ctx: Context) -> str:
    """What ``t`` counts, for messages: updates, or epochs when a scheduler steps per epoch
    (``Context.updates_per_step`` other than 1)."""
    return "update" if ctx.updates_per_step == 1 else "epoch"


def _open_length(p: Any, start: int, total: int | None, last: bool,
                 unit: str = "update", within: str = "training") -> int | None:
    """Length of a phase without one: to the end of training, or open-ended (None)."""
    if not last:
        raise SpecError(f"{p} is followed by another phase, so it needs a length (steps=)")
    if total is not None:
        if total - start <= 0:
            raise SpecError(
                f"{p} would start at {unit} {start}, after the end of {within} "
                f"({total} {unit}s)"
            )
        return total - start
    if p.needs_length:
        raise SpecError(
            f"{p} is the last phase and runs to the end of training, so it needs "
            "total_steps (or give it steps=)"
        )
    return None


def _check_fits(p: Any, T: int, start: int, total: int | None, unit: str = "update",
                within: str = "training") -> None:
    """A phase's own length must be positive and end within training."""
    label = str(p) if getattr(p, "steps", None) == Duration(T) else f"{p} ({T} {unit}s)"
    if T <= 0:
        raise SpecError(f"{label}: a phase length must be positive")
    if total is not None and start + T > total:
        if start == 0:
            raise SpecError(f"{label} is longer than {within} ({total} {unit}s)")
        raise SpecError(
            f"{label} ends at {unit} {start + T}, after the end of {within} "
            f"({total} {unit}s)"
        )


class _Plan:
    """Resolved phases laid end to end for evaluation: ``segments[i]`` starts at update
    ``starts[i]``. The segments are the phases (a phase on another clock behind a
    :class:`_Shift`), plus a :class:`_Hold` of the last phase's end value after it when that
    phase has a length; so ``_value(u)`` of a phase is only ever asked for ``0 <= u < T``."""

    __slots__ = ("phases", "segments", "starts")

    def __init__(self, phases: tuple[Any, ...]) -> None:
        self.phases = phases
        self.segments: list[Any] = [
            _Shift(p) if getattr(p, "offset", 0) else p for p in phases]
        self.starts: list[int] = []
        s = 0
        for p in phases:
            self.starts.append(s)
            if p.span is not None:
                s += p.span
        last = phases[-1]
        if last.span is not None:
            self.starts.append(s)
            self.segments.append(_Hold(last._end(), last.name))


class _Shift:
    """A phase whose clock reads ``offset`` at its first update: its formula at ``u + offset``."""

    def __init__(self, phase: Any) -> None:
        self.phase = phase
        self.offset = phase.offset
        self.name = phase.name

    def _value(self, u: int) -> float:
        return self.phase._value(u + self.offset)

    def _values(self, u0: int, n: int) -> list[float]:
        return self.phase._values(u0 + self.offset, n)


class _Hold:
    """A value held from the end of the last phase on (named after that phase)."""

    def __init__(self, value: float, name: str) -> None:
        self.value = value
        self.name = name

    def _value(self, u: int) -> float:
        return self.value

    def _values(self, u0: int, n: int) -> list[float]:
        return [self.value] * n
