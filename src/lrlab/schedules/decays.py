"""The phases after warmup: constant and the decays (u: local update index, T: phase length).

=================================  =======================================================
``constant(v=1)``                  ``v``
``linear(end=0)``                  ``1 + (end-1) u/T``
``cosine(end=0)``                  ``end + (1-end)(1 + cos(pi u/T))/2``
``poly(power=1, end=0)``           ``end + (1-end)(1 - u/T)^power``
``rsqrt(scale=1)``                 ``(1 + u/scale)^(-1/2)``
``exp(gamma)``                     ``gamma^u`` (gamma > 1 grows, e.g. for LR range tests;
                                   overflow gives inf, never an exception)
``factor(gamma, every=1)``         ``max(floor, gamma^floor(u/every))``
``multistep([m1, ...], gamma)``    ``gamma^(number of milestones <= u)``
``wsd(decay=20%, shape, end)``     1, then down to ``end`` over the last ``decay`` updates
``onecycle(pct, div, final_div)``  sugar for ``warmup >> cosine``
=================================  =======================================================

After its length T a phase holds its value at u=T (the decays: ``end``). ``end_lr=`` and
``floor_lr=`` are absolute LRs turned into ``end`` and ``floor`` multipliers at resolve time
(``x_lr / peak_lr``). Multistep milestones and factor's ``every`` are local times of the
phase and may be durations (``multistep([30ep, 60ep])``).

``wsd(decay=20%, shape=linear|cosine|1-sqrt, end=0)`` -- warmup-stable-decay's stable and
decay parts (Hägele et al. 2024): 1 for the first ``T - D`` updates of the phase, then,
with ``v`` the time into the decay (v = 0 at its first update) and ``x = v/D``::

    linear: 1 + (end-1) x      cosine: end + (1-end)(1 + cos(pi x))/2
    1-sqrt: end + (1-end)(1 - sqrt(x))

``1-sqrt`` is the cooldown Hägele et al. (2024, "Scaling Laws and Compute-Optimal Training
Beyond Fixed Training Durations") found better than linear. It was first spelled
``shape=sqrt``, which could be read as ``sqrt(1-x)`` (a different, convex-then-steep curve);
``sqrt`` is still accepted, as the same ``1-sqrt`` curve, and is written ``1-sqrt``.

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

import functools
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

from lrlab.errors import SpecError
from lrlab.schedules.args import (
    AT_LEAST_0,
    OPEN_UNIT,
    POSITIVE,
    AbsoluteLR,
    ArgError,
    Length,
    Milestones,
    Number,
    OneOf,
    arg,
)
from lrlab.schedules.base import Phase, safe_pow
from lrlab.schedules.units import Context, Duration, DurationLike, round_half_up
from lrlab.schedules.warmups import Warmup


@dataclass(frozen=True, repr=False)
class Constant(Phase):
    """Constant multiplier ``v``."""

    name = "constant"
    needs_length = False

    v: float = arg(1.0, kind=Number(AT_LEAST_0), lead=True)

    def _value(self, u: int) -> float:
        return self.v


@dataclass(frozen=True, repr=False)
class Linear(Phase):
    """Straight line from 1 to ``end``."""

    name = "linear"

    end: float = arg(0.0, kind=Number(AT_LEAST_0))
    _: KW_ONLY
    end_lr: float | None = arg(None, kind=AbsoluteLR("end"))

    def _value(self, u: int) -> float:
        return 1.0 + (self.end - 1.0) * u / self.T


@dataclass(frozen=True, repr=False)
class Cosine(Phase):
    """Half cosine from 1 to ``end`` (torch's CosineAnnealingLR with ``eta_min=end_lr``)."""

    name = "cosine"

    end: float = arg(0.0, kind=Number(AT_LEAST_0))
    _: KW_ONLY
    end_lr: float | None = arg(None, kind=AbsoluteLR("end"))

    def _value(self, u: int) -> float:
        return self.end + (1.0 - self.end) * (1.0 + math.cos(math.pi * u / self.T)) / 2.0


@dataclass(frozen=True, repr=False)
class Poly(Phase):
    """Polynomial decay ``end + (1-end)(1-u/T)^power``."""

    name = "poly"

    power: float = arg(1.0, kind=Number(POSITIVE))
    _: KW_ONLY
    end: float = arg(0.0, kind=Number(AT_LEAST_0))
    end_lr: float | None = arg(None, kind=AbsoluteLR("end"))

    def _value(self, u: int) -> float:
        return self.end + (1.0 - self.end) * (1.0 - u / self.T) ** self.power


@dataclass(frozen=True, repr=False)
class Rsqrt(Phase):
    """Inverse square root ``(1 + u/scale)^-1/2`` (D2L's square root schedule; HF's
    inverse_sqrt with scale = its timescale)."""

    name = "rsqrt"
    needs_length = False

    scale: DurationLike = arg(Duration(1), kind=Length(fractional=True))

    def _value(self, u: int) -> float:
        return (1.0 + u / self.scale.value) ** -0.5


@dataclass(frozen=True, repr=False)
class Exp(Phase):
    """Exponential ``gamma^u`` (torch's ExponentialLR per update)."""

    name = "exp"
    needs_length = False

    gamma: float = arg(kind=Number(POSITIVE), lead=True)

    def _value(self, u: int) -> float:
        return safe_pow(self.gamma, u)


@dataclass(frozen=True, repr=False)
class Factor(Phase):
    """Multiply by ``gamma`` every ``every`` updates, not below ``floor`` (torch's StepLR)."""

    name = "factor"
    needs_length = False

    gamma: float = arg(kind=Number(POSITIVE), lead=True)
    every: DurationLike = arg(Duration(1), kind=Length())
    _: KW_ONLY
    floor: float = arg(0.0, kind=Number(AT_LEAST_0))
    floor_lr: float | None = arg(None, kind=AbsoluteLR("floor"))

    def _value(self, u: int) -> float:
        return max(self.floor, safe_pow(self.gamma, u // int(self.every.value)))


@dataclass(frozen=True, repr=False)
class Multistep(Phase):
    """Multiply by ``gamma`` at each milestone (local times; torch's MultiStepLR)."""

    name = "multistep"
    needs_length = False

    milestones: Sequence[DurationLike] = arg(kind=Milestones(), lead=True)
    gamma: float = arg(0.1, kind=Number(POSITIVE))

    @functools.cached_property
    def _ms(self) -> list[int]:
        return [int(m.value) for m in self.milestones]

    def _value(self, u: int) -> float:
        return safe_pow(self.gamma, bisect_right(self._ms, u))


#: wsd's decay shapes: x in (0, 1] is the fraction of the decay done.
_COOLDOWNS = {
    "linear": lambda x, end: 1.0 + (end - 1.0) * x,
    "cosine": lambda x, end: end + (1.0 - end) * (1.0 + math.cos(math.pi * x)) / 2.0,
    "1-sqrt": lambda x, end: end + (1.0 - end) * (1.0 - math.sqrt(x)),
}
#: Older names of wsd's shapes, accepted and written in their canonical form.
_COOLDOWN_ALIASES = {"sqrt": "1-sqrt"}


@dataclass(frozen=True, repr=False)
class Wsd(Phase):
    """Stable at 1, then decay to ``end`` over the last ``decay`` of the phase."""

    name = "wsd"

    decay: DurationLike = arg(Duration(20, "%"), kind=Length(fraction=True))
    _: KW_ONLY
    shape: str = arg("linear", kind=OneOf(*_COOLDOWNS, aliases=_COOLDOWN_ALIASES))
    end: float = arg(0.0, kind=Number(AT_LEAST_0))
    end_lr: float | None = arg(None, kind=AbsoluteLR("end"))

    def _value(self, u: int) -> float:
        D = int(self.decay.value)
        v = u - (self.T - D)
        return 1.0 if v <= 0 else _COOLDOWNS[self.shape](v / D, self.end)

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


@dataclass(frozen=True, repr=False)
class Onecycle(Phase):
    """One-cycle policy as ``warmup >> cosine`` (see the module docstring)."""

    name = "onecycle"

    _: KW_ONLY
    pct: float = arg(0.3, kind=Number(OPEN_UNIT))
    div: float = arg(25.0, kind=Number(POSITIVE))
    final_div: float = arg(1e4, kind=Number(POSITIVE))

    def _check(self) -> None:
        if self.clock != "phase":
            raise ArgError("onecycle() has no clock=; write warmup(...) >> cosine(clock=train) "
                           "for a cosine on the training clock", "clock")

    def _resolved(self, ctx: Context, T: int | None, start: int = 0) -> tuple[Phase, ...]:
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


constant = Constant
linear = Linear
cosine = Cosine
poly = Poly
rsqrt = Rsqrt
exp = Exp
factor = Factor
multistep = Multistep
wsd = Wsd
onecycle = Onecycle
