"""Phases with inner structure: ``restarts`` (SGDR), ``wsd`` and the ``onecycle`` sugar.

``restarts(cycles=k | period=P, mult=1, decay=1, end=0)`` -- cosine annealing with warm
restarts (Loshchilov & Hutter 2017, SGDR). Cycle ``i`` (0-based) starts at
``S_i = P (mult^i - 1)/(mult - 1)`` (``P i`` when mult=1), lasts ``P mult^i`` updates and
goes from its peak ``decay^i`` down to ``end``::

    m(u) = end + (decay^i - end) (1 + cos(pi (u - S_i) / (P mult^i))) / 2

``end`` is not decayed (as in timm's ``cycle_decay``). With ``cycles=k`` the period is
chosen so that the k cycles fill the phase exactly, ``P = T (mult-1)/(mult^k - 1)``, and
the phase ends at ``end``; with ``period=P`` (a duration) cycles repeat until the phase
ends (open-ended when last and total_steps is unknown). ``mult`` must be >= 1. The cycle
of ``u`` is found in O(1) with the closed-form logarithm, corrected for rounding.

``wsd(decay=20%, shape=linear|cosine|sqrt, end=0)`` -- warmup-stable-decay's stable and
decay parts (Hägele et al. 2024): 1 for the first ``T - D`` updates of the phase, then,
with ``v`` the time into the decay (v = 0 at its first update)::

    linear: 1 + (end-1) v/D      cosine: end + (1-end)(1 + cos(pi v/D))/2
    sqrt:   end + (1-end)(1 - sqrt(v/D))          ("1-sqrt" cooldown)

``decay`` is a duration (``20%`` is 20% of all updates in training, like every ``%``;
``300``, ``2ep``) or a plain fraction ``0 < f < 1`` meaning that fraction of the wsd phase
itself (rounded half up). The decay must fit in the phase and be at least 1 update.

``onecycle(pct=0.3, div=25, final_div=1e4)`` -- sugar: a phase of length T resolves to
``warmup(T1, start=1/div) >> cosine(end=1/(div*final_div), steps=T-T1)`` with
``T1 = round(pct*T)``. It follows the shape of torch's OneCycleLR (initial LR = peak/div,
final LR = initial/final_div) but its warmup is linear, not cosine, and it has no
momentum cycling; it is not step-for-step identical to torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from lrlab.errors import SpecError
from lrlab.schedules.args import ArgError, Param
from lrlab.schedules.phase import END, END_LR, STEPS, Phase, safe_pow, updates_of
from lrlab.schedules.phases import Cosine, Warmup
from lrlab.schedules.units import Context, Duration, DurationLike, round_half_up


@dataclass(frozen=True, kw_only=True, repr=False)
class Restarts(Phase):
    name: ClassVar[str] = "restarts"
    params: ClassVar[tuple[Param, ...]] = (
        Param("cycles", "int", ">=1", nullable=True),
        Param("period", "dur", nullable=True),
        Param("mult", "num", ">=1"),
        Param("decay", "num", ">0"),
        END,
        END_LR,
        STEPS,
    )
    cycles: int | None = None
    period: Any = None
    mult: float = 1.0
    decay: float = 1.0
    end: float = 0.0
    end_lr: float | None = None

    def _check(self) -> None:
        super()._check()
        if (self.cycles is None) == (self.period is None):
            raise ArgError("restarts() needs exactly one of cycles= or period=", "cycles")

    def _needs_length(self) -> bool:
        return self.cycles is not None

    def _resolve_args(self, ctx: Context, T: int | None) -> dict[str, Any]:
        args = super()._resolve_args(ctx, T)
        if self.period is not None:
            args["period"] = Duration(updates_of(self.period, ctx, "period"))
        elif self.mult != 1 and not math.isfinite(safe_pow(self.mult, self.cycles)):
            raise SpecError(f"restarts(): mult={self.mult} ** cycles={self.cycles} overflows")
        return args

    # -- evaluation -------------------------------------------------------------------
    def _period(self) -> float:
        if self.period is not None:
            return self.period.value
        T, k, m = self._T, self.cycles, self.mult
        return T / k if m == 1 else T * (m - 1.0) / (m**k - 1.0)

    def _cycle_start(self, i: int, P: float) -> float:
        m = self.mult
        return P * i if m == 1 else P * (safe_pow(m, i) - 1.0) / (m - 1.0)

    def _cycle_of(self, u: float, P: float) -> int:
        m = self.mult
        guess = u // P if m == 1 else math.log1p(u * (m - 1.0) / P) / math.log(m)
        i = int(guess) if math.isfinite(guess) else 0
        while i > 0 and self._cycle_start(i, P) > u:
            i -= 1
        while self._cycle_start(i + 1, P) <= u:
            i += 1
        return i

    def _in_cycle(self, i: int, x: float, P: float) -> float:
        length = P * safe_pow(self.mult, i)
        peak = safe_pow(self.decay, i)
        return self.end + (peak - self.end) * (1.0 + math.cos(math.pi * x / length)) / 2.0

    def _end_value(self, P: float) -> float:
        if self.cycles is not None:
            return self.end
        T = self._T
        i = self._cycle_of(T, P)
        if i > 0 and self._cycle_start(i, P) >= T:
            i -= 1  # T exactly at a restart: the phase ends at the end of the cycle before
        return self._in_cycle(i, T - self._cycle_start(i, P), P)

    def _value(self, u: int) -> float:
        P = self._period()
        T = self._T
        if T is not None and u >= T:
            return self._end_value(P)
        i = self._cycle_of(u, P)
        if self.cycles is not None:
            i = min(i, self.cycles - 1)
        return self._in_cycle(i, u - self._cycle_start(i, P), P)

    def _values(self, u0: int, n: int) -> list[float]:
        P = self._period()
        T = self._T
        last = self.cycles - 1 if self.cycles is not None else None
        out: list[float] = []
        i = -1
        start = nxt = 0.0
        for u in range(u0, u0 + n):
            if T is not None and u >= T:
                out.extend([self._end_value(P)] * (u0 + n - u))
                break
            if i < 0:
                i = self._cycle_of(u, P)
                if last is not None:
                    i = min(i, last)
                start, nxt = self._cycle_start(i, P), self._cycle_start(i + 1, P)
            while nxt <= u and (last is None or i < last):
                i += 1
                start, nxt = nxt, self._cycle_start(i + 1, P)
            out.append(self._in_cycle(i, u - start, P))
        return out


@dataclass(frozen=True, kw_only=True, repr=False)
class Wsd(Phase):
    name: ClassVar[str] = "wsd"
    params: ClassVar[tuple[Param, ...]] = (
        Param("decay", "dur_frac", positional=True),
        Param("shape", "choice", choices=("linear", "cosine", "sqrt")),
        END,
        END_LR,
        STEPS,
    )
    decay: Any = Duration(20, "%")
    shape: str = "linear"
    end: float = 0.0
    end_lr: float | None = None

    def _resolve_args(self, ctx: Context, T: int | None) -> dict[str, Any]:
        args = super()._resolve_args(ctx, T)
        if isinstance(self.decay, float):
            D = round_half_up(self.decay * T)
        else:
            D = self.decay.to_steps(ctx)
        if D < 1:
            raise SpecError(f"wsd(): decay={self.decay} rounds to {D} updates")
        if D > T:
            raise SpecError(f"wsd(): decay={self.decay} ({D} updates) is longer than the phase "
                            f"({T} updates)")
        args["decay"] = Duration(D)
        return args

    def _value(self, u: int) -> float:
        T = self._T
        D = int(self.decay.value)
        v = min(u, T) - (T - D)
        if v <= 0:
            return 1.0
        x = v / D
        if self.shape == "linear":
            return 1.0 + (self.end - 1.0) * x
        if self.shape == "cosine":
            return self.end + (1.0 - self.end) * (1.0 + math.cos(math.pi * x)) / 2.0
        return self.end + (1.0 - self.end) * (1.0 - math.sqrt(x))


@dataclass(frozen=True, kw_only=True, repr=False)
class Onecycle(Phase):
    name: ClassVar[str] = "onecycle"
    params: ClassVar[tuple[Param, ...]] = (
        Param("pct", "num", "(0,1)"),
        Param("div", "num", ">0"),
        Param("final_div", "num", ">0"),
        STEPS,
    )
    pct: float = 0.3
    div: float = 25.0
    final_div: float = 1e4

    def _resolved(self, ctx: Context, T: int | None) -> tuple[Phase, ...]:
        assert T is not None  # needs_length: resolution guarantees a length
        T1 = round_half_up(self.pct * T)
        if not 1 <= T1 < T:
            raise SpecError(
                f"{self} over {T} updates gives a warmup of {T1} updates; "
                "it needs at least 1 update of warmup and 1 of decay"
            )
        return (
            Warmup(steps=T1, start=1.0 / self.div),
            Cosine(end=1.0 / (self.div * self.final_div), steps=T - T1),
        )


def restarts(
    *,
    cycles: int | None = None,
    period: DurationLike | None = None,
    mult: float = 1.0,
    decay: float = 1.0,
    end: float = 0.0,
    end_lr: float | None = None,
    steps: DurationLike | None = None,
) -> Restarts:
    """Cosine with warm restarts (SGDR): give ``cycles=k`` or ``period=P``."""
    return Restarts(
        cycles=cycles, period=period, mult=mult, decay=decay, end=end, end_lr=end_lr, steps=steps
    )


def wsd(
    decay: DurationLike = "20%",
    *,
    shape: str = "linear",
    end: float = 0.0,
    end_lr: float | None = None,
    steps: DurationLike | None = None,
) -> Wsd:
    """Stable at 1, then decay to ``end`` over the last ``decay`` of the phase."""
    return Wsd(decay=decay, shape=shape, end=end, end_lr=end_lr, steps=steps)


def onecycle(
    *,
    pct: float = 0.3,
    div: float = 25.0,
    final_div: float = 1e4,
    steps: DurationLike | None = None,
) -> Onecycle:
    """One-cycle policy as ``warmup >> cosine`` (see module docstring)."""
    return Onecycle(pct=pct, div=div, final_div=final_div, steps=steps)
