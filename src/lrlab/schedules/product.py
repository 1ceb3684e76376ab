"""The product of schedules: ``a * b`` multiplies their multipliers at the same update.

``warmup(auto) * exp(0.999)`` is pytorch_warmup's dampening of another scheduler (the
warmup factor times ExponentialLR, both counting from update 0); a product of several
schedules is torch's ``ChainedScheduler`` of multiplicative schedulers. Each factor is a
phase or a chain in parentheses: ``(warmup(100) >> cosine()) * exp(0.999)``.

Precedence: ``*`` binds tighter than ``>>``, as in Python, so the spec and the Python
expression read the same: ``warmup(5) >> cosine() * exp(0.9)`` is
``warmup(5) >> (cosine() * exp(0.9))``. A product takes the place of one phase in a chain:
its factors' clocks start together at the product's first update (``clock=train`` still
reads the training clock).

Length. A product lasts as long as its longest factor when every factor has a length of
its own (``warmup(10) * cosine(steps=100)`` lasts 100 updates); otherwise it has none and
runs to the end of training (so it must be the last phase), and every factor's last phase
without a length runs to the end of the product. A factor shorter than the product holds
its end value (warmup: 1) for the rest of it.

``plateau(...)`` is not a factor of time: written anywhere in a product, it multiplies the
whole schedule (it is written last: ``a >> b * plateau()`` is ``(a >> b) * plateau()``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

from lrlab.errors import SpecError
from lrlab.schedules.schedule import Chain, Schedule, resolve_phases, schedule_of
from lrlab.schedules.units import Context


@dataclass(frozen=True, repr=False)
class Product(Schedule):
    """``factors[0] * factors[1] * ...``: built by ``a * b``; flat (``a * (b * c)`` equals
    ``(a * b) * c``); no factor has a plateau (it is the whole schedule's)."""

    factors: tuple[Schedule, ...]

    #: Resolution and a chain ask phases for these; a product decides them itself.
    needs_length: ClassVar[bool] = False
    steps: ClassVar[None] = None

    def __post_init__(self) -> None:
        flat: list[Schedule] = []
        for f in tuple(self.factors):
            if not isinstance(f, Schedule):
                raise SpecError(f"a product multiplies schedules, got {f!r}")
            if f.plateau is not None:
                raise SpecError("a factor of a product cannot have its own plateau(...); "
                                "it multiplies the whole schedule")
            flat.extend(f.factors if isinstance(f, Product) else (f,))
        if len(flat) < 2:
            raise SpecError("a product needs at least two factors")
        object.__setattr__(self, "factors", tuple(flat))

    @property
    def phases(self) -> tuple[Product, ...]:  # type: ignore[override]
        return (self,)

    @property
    def plateau(self) -> None:  # type: ignore[override]
        return None

    @property
    def name(self) -> str:
        """``warmup*exp``: the names of the factors (``(warmup>>cosine)`` for a chain)."""
        return "*".join(
            f.phases[0].name if len(f.phases) == 1
            else "(" + ">>".join(p.name for p in f.phases) + ")" for f in self.factors)

    def __str__(self) -> str:
        return " * ".join(f"({f})" if isinstance(f, Chain) else str(f) for f in self.factors)

    # -- resolution -------------------------------------------------------------------
    def _length(self, ctx: Context) -> int | None:
        """The longest factor's length when every factor has one of its own, else None."""
        lengths = []
        for f in self.factors:
            total = 0
            for p in f.phases:
                n = p._length(ctx)
                if n is None:
                    return None
                total += n
            lengths.append(total)
        return max(lengths)

    def _resolved(self, ctx: Context, T: int | None, start: int = 0) -> tuple[Product, ...]:
        return (Product(tuple(schedule_of(resolve_phases(f.phases, ctx, origin=start, span=T))
                              for f in self.factors)),)

    # -- evaluation (resolved products only) -------------------------------------------
    @functools.cached_property
    def span(self) -> int | None:
        """How many updates a resolved product lasts (None: open-ended)."""
        ends = [f._plan.starts[-1] for f in self.factors if f.phases[-1].span is not None]
        return None if len(ends) < len(self.factors) else max(ends)

    @property
    def T(self) -> int | None:
        return self.span

    def _value(self, u: int) -> float:
        m = 1.0
        for f in self.factors:
            m *= f(u)
        return m

    def _values(self, u0: int, n: int) -> list[float]:
        out = [1.0] * n
        for f in self.factors:
            out = [a * b for a, b in zip(out, f.values(n, u0))]
        return out

    def _end(self) -> float:
        return self._value(self.T) if self.T is not None else math.nan


def multiply(a: Schedule, b: Schedule) -> Schedule:
    """``a * b``: the product of two schedules; a plateau of either multiplies the result."""
    plateaus = [s.plateau for s in (a, b) if s.plateau is not None]
    if len(plateaus) > 1:
        raise SpecError("a schedule can have only one plateau(...)")
    product = Product((a.without_plateau(), b.without_plateau()))
    return schedule_of((product,), plateaus[0] if plateaus else None)


Schedule._multiply = staticmethod(multiply)  # for ``a * b`` (see Schedule)
