"""Warmup: the ramp up to the peak LR, and the untuned warmup length.

==============================  ==================================================
``warmup(T)``                   ``(u+1)/T``: the first update already moves, 1 at u=T-1
``warmup(T, start=s)``          ``s + (1-s) u/T`` (HF / D2L convention for s=0)
``warmup(T, shape=exp)``        ``r((u+1)/T)``, or ``s + (1-s) r(u/T)`` with ``start=s``,
                                where ``r(x) = (1 - e^(-k x)) / (1 - e^(-k))``, k = 5
``warmup(auto)``                T = ceil(2/(1-beta2)) updates (Ma & Yarats 2021); when t
                                counts epochs, ceil(T / updates per epoch) epochs
==============================  ==================================================

The exponential ramp ``r`` is normalised so that it is 0 at x=0, exactly 1 at x=1 and
continuous; with k=5 the unnormalised ``1 - e^(-5x)`` would be within 0.7% of 1 at the end.
``start_lr=`` is an absolute LR turned into ``start = start_lr / peak_lr`` at resolve time.
After its length T a warmup holds 1.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass

from lrlab.errors import SpecError
from lrlab.schedules.args import AT_LEAST_0, AbsoluteLR, Length, Number, OneOf, arg
from lrlab.schedules.base import Phase
from lrlab.schedules.units import Context, DurationLike, as_float

#: Steepness of ``warmup(shape=exp)``.
EXP_WARMUP_K = 5.0
_EXP_NORM = 1.0 - math.exp(-EXP_WARMUP_K)

#: Warmup shapes: x in (0, 1] is the fraction of the warmup done.
_RAMPS = {
    "linear": lambda x: x,
    "exp": lambda x: (1.0 - math.exp(-EXP_WARMUP_K * x)) / _EXP_NORM,
}


def untuned_warmup_steps(beta2: float) -> int:
    """Warmup length ``ceil(2 / (1 - beta2))`` of Ma & Yarats (2021), arXiv:1910.04209.

    Their "untuned" linear warmup reaches the full LR after 2/(1-beta2) updates: 2000 for
    Adam's default beta2=0.999. The quotient is rounded to 9 decimals before the ceiling so
    float noise (1 - 0.9 = 0.09999999999999998) does not add an update.
    """
    b = as_float(beta2, "beta2")
    if not 0.0 <= b < 1.0:
        raise SpecError(f"beta2 must be in [0, 1), got {b!r}")
    return max(1, math.ceil(round(2.0 / (1.0 - b), 9)))


@dataclass(frozen=True, repr=False)
class Warmup(Phase):
    """Ramp up to 1 over ``steps`` (updates, ``"5ep"``, ``"10%"`` or ``"auto"``)."""

    name = "warmup"

    steps: DurationLike = arg(kind=Length(auto=True), lead=True)
    _: KW_ONLY
    start: float | None = arg(None, kind=Number(AT_LEAST_0))
    shape: str = arg("linear", kind=OneOf(*_RAMPS))
    start_lr: float | None = arg(None, kind=AbsoluteLR("start"))

    def _value(self, u: int) -> float:
        ramp = _RAMPS[self.shape]
        if self.start is None:
            return ramp((u + 1) / self.T)
        return self.start + (1.0 - self.start) * ramp(u / self.T)

    def _end(self) -> float:
        return 1.0

    def _length(self, ctx: Context) -> int | None:
        if self.steps != "auto":
            return self.steps.to_steps(ctx)
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


warmup = Warmup
