"""The basic phases and their formulas (u: local update index, T: phase length).

==============================  ==================================================
``constant(v=1)``               ``v``
``warmup(T)``                   ``(u+1)/T``: the first update already moves, 1 at u=T-1
``warmup(T, start=s)``          ``s + (1-s) u/T`` (HF / D2L convention for s=0)
``warmup(T, shape=exp)``        ``r((u+1)/T)``, or ``s + (1-s) r(u/T)`` with ``start=s``,
                                where ``r(x) = (1 - e^(-k x)) / (1 - e^(-k))``, k = 5
``warmup(auto)``                T = ceil(2/(1-beta2)) updates (Ma & Yarats 2021); when t
                                counts epochs, ceil(T / updates per epoch) epochs
``linear(end=0)``               ``1 + (end-1) u/T``
``cosine(end=0)``               ``end + (1-end)(1 + cos(pi u/T))/2``
``poly(power=1, end=0)``        ``end + (1-end)(1 - u/T)^power``
``rsqrt(scale=1)``              ``(1 + u/scale)^(-1/2)``
``exp(gamma)``                  ``gamma^u`` (gamma > 1 grows, e.g. for LR range tests;
                                overflow gives inf, never an exception)
``factor(gamma, every=1)``      ``max(floor, gamma^floor(u/every))``
``multistep([m1, ...], gamma)`` ``gamma^(number of milestones <= u)``
==============================  ==================================================

The exponential warmup ramp ``r`` is normalised so that it is 0 at x=0, exactly 1 at x=1
and continuous; with k=5 the unnormalised ``1 - e^(-5x)`` would be within 0.7% of 1 at
the end. ``start_lr=`` (warmup), ``end_lr=`` and ``floor_lr=`` are absolute LRs turned
into ``start``, ``end`` and ``floor`` multipliers at resolve time (``x_lr / peak_lr``).

After its length T a phase is pinned at its end value (warmup: 1; the decays: ``end``;
exp/factor/multistep/rsqrt: their value at u=T). Multistep milestones and factor's
``every`` are local times of the phase and may be durations (``multistep([30ep, 60ep])``).
"""

from __future__ import annotations

import functools
import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, ClassVar

from lrlab.errors import SpecError
from lrlab.schedules.args import ArgError, Param, end_multiplier
from lrlab.schedules.phase import END, END_LR, STEPS, Phase, safe_pow, updates_of
from lrlab.schedules.units import Context, Duration, DurationLike, untuned_warmup_steps

#: Steepness of ``warmup(shape=exp)``.
EXP_WARMUP_K = 5.0
_EXP_NORM = 1.0 - math.exp(-EXP_WARMUP_K)


def _ramp_exp(x: float) -> float:
    return (1.0 - math.exp(-EXP_WARMUP_K * x)) / _EXP_NORM


@dataclass(frozen=True, kw_only=True, repr=False)
class Constant(Phase):
    name: ClassVar[str] = "constant"
    params: ClassVar[tuple[Param, ...]] = (
        Param("v", "num", ">=0", positional=True, lead=True),
        STEPS,
    )
    needs_length: ClassVar[bool] = False
    v: float = 1.0

    def _value(self, u: int) -> float:
        return self.v

    def _values(self, u0: int, n: int) -> list[float]:
        return [self.v] * n


@dataclass(frozen=True, kw_only=True, repr=False)
class Warmup(Phase):
    name: ClassVar[str] = "warmup"
    params: ClassVar[tuple[Param, ...]] = (
        Param("steps", "dur_auto", positional=True, lead=True, required=True),
        Param("start", "num", ">=0", nullable=True),
        Param("shape", "choice", choices=("linear", "exp")),
        Param("start_lr", "lr", ">=0", nullable=True),
    )
    start: float | None = None
    shape: str = "linear"
    start_lr: float | None = None

    def _check(self) -> None:
        if self.start is not None and self.start_lr is not None:
            raise ArgError("warmup(): give start= or start_lr=, not both", "start_lr")

    def _length(self, ctx: Context) -> int | None:
        if self.steps == "auto":
            if ctx.beta2 is None:
                raise SpecError("warmup(auto) needs beta2 (the optimizer's second-moment decay)")
            updates = untuned_warmup_steps(ctx.beta2)
            per = ctx.updates_per_step
            if per is None:
                raise SpecError(
                    f"warmup(auto) lasts {updates} optimizer updates (2/(1-beta2)) but time is "
                    "counted in epochs here: it needs steps_per_epoch (updates per epoch)"
                )
            return -(-updates // per)  # ceil: at least 2/(1-beta2) updates of warmup
        return self.steps.to_steps(ctx)

    def _resolve_args(self, ctx: Context, T: int | None) -> dict[str, Any]:
        if self.start_lr is None:
            return {}
        start = end_multiplier(0.0, self.start_lr, ctx.peak_lr, f"start_lr={self.start_lr}")
        return {"start": start, "start_lr": None}

    def _value(self, u: int) -> float:
        T = self._T
        if u >= T:
            return 1.0
        ramp = _ramp_exp if self.shape == "exp" else float
        if self.start is None:
            return ramp((u + 1) / T)
        return self.start + (1.0 - self.start) * ramp(u / T)


@dataclass(frozen=True, kw_only=True, repr=False)
class Linear(Phase):
    name: ClassVar[str] = "linear"
    params: ClassVar[tuple[Param, ...]] = (
        Param("end", "num", ">=0", positional=True),
        END_LR,
        STEPS,
    )
    end: float = 0.0
    end_lr: float | None = None

    def _value(self, u: int) -> float:
        T = self._T
        return 1.0 + (self.end - 1.0) * min(u, T) / T


@dataclass(frozen=True, kw_only=True, repr=False)
class Cosine(Phase):
    name: ClassVar[str] = "cosine"
    params: ClassVar[tuple[Param, ...]] = (
        Param("end", "num", ">=0", positional=True),
        END_LR,
        STEPS,
    )
    end: float = 0.0
    end_lr: float | None = None

    def _value(self, u: int) -> float:
        T = self._T
        if u >= T:
            return self.end
        return self.end + (1.0 - self.end) * (1.0 + math.cos(math.pi * u / T)) / 2.0


@dataclass(frozen=True, kw_only=True, repr=False)
class Poly(Phase):
    name: ClassVar[str] = "poly"
    params: ClassVar[tuple[Param, ...]] = (
        Param("power", "num", ">0", positional=True),
        END,
        END_LR,
        STEPS,
    )
    power: float = 1.0
    end: float = 0.0
    end_lr: float | None = None

    def _value(self, u: int) -> float:
        T = self._T
        if u >= T:
            return self.end
        return self.end + (1.0 - self.end) * (1.0 - u / T) ** self.power


@dataclass(frozen=True, kw_only=True, repr=False)
class Rsqrt(Phase):
    name: ClassVar[str] = "rsqrt"
    params: ClassVar[tuple[Param, ...]] = (
        Param("scale", "dur_real", positional=True),
        STEPS,
    )
    needs_length: ClassVar[bool] = False
    scale: Any = Duration(1)

    def _resolve_args(self, ctx: Context, T: int | None) -> dict[str, Any]:
        return {"scale": Duration(self.scale.updates(ctx))}

    def _value(self, u: int) -> float:
        T = self._T
        if T is not None and u > T:
            u = T
        return (1.0 + u / self.scale.value) ** -0.5


@dataclass(frozen=True, kw_only=True, repr=False)
class Exp(Phase):
    name: ClassVar[str] = "exp"
    params: ClassVar[tuple[Param, ...]] = (
        Param("gamma", "num", ">0", positional=True, lead=True, required=True),
        STEPS,
    )
    needs_length: ClassVar[bool] = False
    gamma: float | None = None

    def _value(self, u: int) -> float:
        T = self._T
        if T is not None and u > T:
            u = T
        return safe_pow(self.gamma, u)


@dataclass(frozen=True, kw_only=True, repr=False)
class Factor(Phase):
    name: ClassVar[str] = "factor"
    params: ClassVar[tuple[Param, ...]] = (
        Param("gamma", "num", ">0", positional=True, lead=True, required=True),
        Param("every", "dur", positional=True),
        Param("floor", "num", ">=0"),
        Param("floor_lr", "lr", ">=0", nullable=True),
        STEPS,
    )
    needs_length: ClassVar[bool] = False
    gamma: float | None = None
    every: Any = Duration(1)
    floor: float = 0.0
    floor_lr: float | None = None

    def _check(self) -> None:
        if self.floor_lr is not None and self.floor != 0:
            raise ArgError("factor(): give floor= or floor_lr=, not both", "floor_lr")

    def _resolve_args(self, ctx: Context, T: int | None) -> dict[str, Any]:
        args: dict[str, Any] = {"every": Duration(updates_of(self.every, ctx, "every"))}
        if self.floor_lr is not None:
            what = f"floor_lr={self.floor_lr}"
            args["floor"] = end_multiplier(0.0, self.floor_lr, ctx.peak_lr, what)
            args["floor_lr"] = None
        return args

    def _value(self, u: int) -> float:
        T = self._T
        if T is not None and u > T:
            u = T
        return max(self.floor, safe_pow(self.gamma, u // int(self.every.value)))


@dataclass(frozen=True, kw_only=True, repr=False)
class Multistep(Phase):
    name: ClassVar[str] = "multistep"
    params: ClassVar[tuple[Param, ...]] = (
        Param("milestones", "durs", positional=True, lead=True, required=True),
        Param("gamma", "num", ">0", positional=True),
        STEPS,
    )
    needs_length: ClassVar[bool] = False
    milestones: Any = None
    gamma: float = 0.1

    def _resolve_args(self, ctx: Context, T: int | None) -> dict[str, Any]:
        ms = [m.to_steps(ctx) for m in self.milestones]
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise SpecError(f"multistep milestones must be increasing, got {ms} updates")
        return {"milestones": tuple(Duration(m) for m in ms)}

    @functools.cached_property
    def _ms(self) -> list[int]:
        return [int(m.value) for m in self.milestones]

    def _value(self, u: int) -> float:
        T = self._T
        if T is not None and u > T:
            u = T
        return safe_pow(self.gamma, bisect_right(self._ms, u))

    def _values(self, u0: int, n: int) -> list[float]:
        T = self._T
        ms = self._ms
        k = bisect_right(ms, u0 if T is None else min(u0, T))
        out = []
        for u in range(u0, u0 + n):
            uu = u if T is None else min(u, T)
            while k < len(ms) and ms[k] <= uu:
                k += 1
            out.append(safe_pow(self.gamma, k))
        return out


def constant(v: float = 1.0, *, steps: DurationLike | None = None) -> Constant:
    """Constant multiplier ``v``."""
    return Constant(v=v, steps=steps)


def warmup(
    steps: DurationLike,
    *,
    start: float | None = None,
    shape: str = "linear",
    start_lr: float | None = None,
) -> Warmup:
    """Ramp up to 1 over ``steps`` (updates, ``"5ep"``, ``"10%"`` or ``"auto"``)."""
    return Warmup(steps=steps, start=start, shape=shape, start_lr=start_lr)


def linear(
    end: float = 0.0, *, end_lr: float | None = None, steps: DurationLike | None = None
) -> Linear:
    """Straight line from 1 to ``end``."""
    return Linear(end=end, end_lr=end_lr, steps=steps)


def cosine(
    end: float = 0.0, *, end_lr: float | None = None, steps: DurationLike | None = None
) -> Cosine:
    """Half cosine from 1 to ``end`` (torch's CosineAnnealingLR with ``eta_min=end_lr``)."""
    return Cosine(end=end, end_lr=end_lr, steps=steps)


def poly(
    power: float = 1.0,
    *,
    end: float = 0.0,
    end_lr: float | None = None,
    steps: DurationLike | None = None,
) -> Poly:
    """Polynomial decay ``end + (1-end)(1-u/T)^power``."""
    return Poly(power=power, end=end, end_lr=end_lr, steps=steps)


def rsqrt(scale: DurationLike = 1, *, steps: DurationLike | None = None) -> Rsqrt:
    """Inverse square root ``(1 + u/scale)^-1/2``."""
    return Rsqrt(scale=scale, steps=steps)


def exp(gamma: float, *, steps: DurationLike | None = None) -> Exp:
    """Exponential ``gamma^u`` (torch's ExponentialLR per update)."""
    return Exp(gamma=gamma, steps=steps)


def factor(
    gamma: float,
    every: DurationLike = 1,
    *,
    floor: float = 0.0,
    floor_lr: float | None = None,
    steps: DurationLike | None = None,
) -> Factor:
    """Multiply by ``gamma`` every ``every`` updates, not below ``floor`` (torch StepLR)."""
    return Factor(gamma=gamma, every=every, floor=floor, floor_lr=floor_lr, steps=steps)


def multistep(
    milestones: list[DurationLike] | tuple[DurationLike, ...],
    gamma: float = 0.1,
    *,
    steps: DurationLike | None = None,
) -> Multistep:
    """Multiply by ``gamma`` at each milestone (local times; torch MultiStepLR)."""
    return Multistep(milestones=milestones, gamma=gamma, steps=steps)
