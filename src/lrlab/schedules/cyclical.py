"""Cyclical learning rates (Smith 2017): ``cyclic(period, low=0.1, up=0.5, mode, gamma=1)``.

The LR rises linearly from ``low`` (a multiplier of the peak) to 1 over the first ``up`` of
each cycle of ``period`` updates and falls back to ``low`` over the rest. It is torch's
``CyclicLR`` with ``base_lr = low * peak`` and ``max_lr = peak``, ``step_size_up = U`` and
``step_size_down = period - U``, where ``U = up * period`` when ``up`` is a fraction in
(0, 1) (not rounded: an odd period's half is 3.5 updates, as in torch) or ``up`` itself when
it is a duration of whole updates (``up=2000``, ``up=1ep``; it must be shorter than the
period). With ``c = floor(1 + u/period)`` the 1-based cycle, ``x = 1 + u/period - c`` and
``r = U/period``::

    scale = x/r                     while x <= r (rising)
          = (x - 1)/(r - 1)         after (falling)
    m(u)  = low + (1 - low) * scale * f

    f = 1                  mode=triangular
    f = 1 / 2^(c-1)        mode=triangular2 (the height halves every cycle)
    f = gamma^u            mode=exp_range

As in torch, ``exp_range`` scales the *height* above ``low`` (not the whole LR) by
``gamma`` to the power of the update count ``u``: the phase's own clock, which is torch's
count when the cyclic phase starts training (``clock=train`` makes it the training count
elsewhere). ``gamma`` is only for ``exp_range``. ``low_lr=`` is torch's absolute
``base_lr``. Torch's ``cycle_momentum`` is not part of an LR schedule and is not modelled.
The phase repeats without end, so it needs no length.
"""

from __future__ import annotations

import functools
import math
from dataclasses import KW_ONLY, dataclass
from typing import Any

from lrlab.errors import SpecError
from lrlab.schedules.args import POSITIVE, AbsoluteLR, ArgError, Length, Number, OneOf, Range, arg
from lrlab.schedules.base import Phase, safe_pow
from lrlab.schedules.units import Context, Duration, DurationLike, fmt_num

_BELOW_1 = Range(0.0, 1.0, open_high=True)


@dataclass(frozen=True, repr=False)
class Cyclic(Phase):
    """Triangular cycles between ``low`` and 1 (torch's CyclicLR; see the module docstring)."""

    name = "cyclic"
    needs_length = False

    period: DurationLike = arg(kind=Length(), lead=True)
    low: float = arg(0.1, kind=Number(_BELOW_1))
    up: DurationLike = arg(0.5, kind=Length(fraction=True))
    mode: str = arg("triangular", kind=OneOf("triangular", "triangular2", "exp_range"))
    gamma: float = arg(1.0, kind=Number(POSITIVE))
    _: KW_ONLY
    low_lr: float | None = arg(None, kind=AbsoluteLR("low"))

    def _check(self) -> None:
        if self.gamma != 1.0 and self.mode != "exp_range":
            raise ArgError(f"cyclic(): gamma= is for mode=exp_range, not mode={self.mode}",
                           "gamma")
        if isinstance(self.up, Duration) and isinstance(self.period, Duration) \
                and self.up.unit == self.period.unit and self.up.value >= self.period.value:
            raise ArgError(f"cyclic(): up={self.up} must be shorter than the period "
                           f"({self.period})", "up")

    def _resolve_args(self, ctx: Context, T: int | None) -> dict[str, Any]:
        args = super()._resolve_args(ctx, T)
        period = args.get("period", self.period)
        if isinstance(self.up, Duration):
            U = self.up.to_steps(ctx)
            if not 1 <= U < period.value:
                raise SpecError(f"cyclic(): up={self.up} ({U} updates) must be at least 1 update "
                                f"and shorter than the period ({fmt_num(period.value)} updates)")
            args["up"] = Duration(U)
        low = args.get("low", self.low)
        if low >= 1.0:
            raise SpecError(f"cyclic(): low_lr={self.low_lr} is not below the peak LR, so "
                            "the LR cannot cycle up to it")
        return args

    # -- evaluation -------------------------------------------------------------------
    @functools.cached_property
    def _ratio(self) -> float:
        """The rising part of a cycle, as a fraction of the period (torch's step_ratio)."""
        if isinstance(self.up, Duration):
            return self.up.value / self.period.value
        return self.up

    def _value(self, u: int) -> float:
        P, r = self.period.value, self._ratio
        cycle = math.floor(1.0 + u / P)
        x = 1.0 + u / P - cycle
        scale = x / r if x <= r else (x - 1.0) / (r - 1.0)
        if self.mode == "triangular":
            f = 1.0
        elif self.mode == "triangular2":
            f = safe_pow(2.0, -(cycle - 1))
        else:
            f = safe_pow(self.gamma, u)
        return self.low + (1.0 - self.low) * scale * f


cyclic = Cyclic
