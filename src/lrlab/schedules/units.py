"""Durations, numbers and the resolution context.

A duration is a count of optimizer updates written in one of three units:

- ``500``  -- updates (``unit="step"``); lengths must be whole numbers of updates;
- ``5ep``  -- epochs, needs ``Context.steps_per_epoch``;
- ``10%``  -- percent of all updates in training, needs ``Context.total_steps``.

Epoch and percent durations are turned into updates by rounding to the nearest whole
update, ties rounded up (``0.5ep`` of 391 updates/epoch is 196 updates). A length that
rounds to 0 updates is an error at resolve time.

Numbers in canonical spec strings are printed by :func:`fmt_num`: integral values without
``.0`` (``5``, not ``5.0``), every other float in its shortest ``repr`` form (``0.0001``,
``1e-05``), so equal values always print equally.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from typing import Literal

from lrlab.errors import SpecError

Unit = Literal["step", "ep", "%"]
UNITS: tuple[str, ...] = ("step", "ep", "%")
_SUFFIX = {"step": "", "ep": "ep", "%": "%"}

#: A number as written in a spec: optional sign, digits, optional fraction and exponent.
NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DURATION_TEXT = re.compile(r"\s*(" + NUMBER_RE.pattern + r")\s*(ep|%)?\s*")


def fmt_num(x: float) -> str:
    """Canonical text of a number: ``5`` for 5.0, shortest ``repr`` otherwise."""
    if isinstance(x, int):
        return str(x)
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(x)


def round_half_up(x: float) -> int:
    """Nearest integer, ties rounded up (2.5 -> 3): how ep/% durations become updates."""
    return math.floor(x + 0.5)


def is_real(x: object) -> bool:
    """True for int/float-like numbers (numpy scalars included), False for bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def number_from_text(text: str) -> int | float:
    """Convert the text of a NUMBER_RE match: int when it has no '.' or exponent."""
    if not any(c in text for c in ".eE"):
        return int(text)
    return float(text)


def as_float(x: object, what: str) -> float:
    """A finite float from a real number, else SpecError naming ``what``."""
    if not is_real(x):
        raise SpecError(f"{what} must be a number, got {x!r}")
    try:
        f = float(x)  # type: ignore[arg-type]
    except OverflowError:
        raise SpecError(f"{what} is too large: {x!r}") from None
    if not math.isfinite(f):
        raise SpecError(f"{what} must be finite, got {x!r}")
    return f


@dataclass(frozen=True)
class Duration:
    """A length or time point: ``value`` updates, epochs (``"ep"``) or percent (``"%"``).

    ``value`` is stored as a float (``Duration(5) == Duration(5.0)``) and must be finite
    and >= 0. ``str(Duration(5, "ep")) == "5ep"``.
    """

    value: float
    unit: Unit = "step"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise SpecError(f"unknown duration unit {self.unit!r} (use 'step', 'ep' or '%')")
        v = as_float(self.value, "a duration")
        if v < 0:
            raise SpecError(f"a duration must be >= 0, got {fmt_num(v)}{_SUFFIX[self.unit]}")
        object.__setattr__(self, "value", v + 0.0)  # + 0.0 turns -0.0 into 0.0

    def __str__(self) -> str:
        return fmt_num(self.value) + _SUFFIX[self.unit]

    def __repr__(self) -> str:
        return f"Duration({fmt_num(self.value)}, {self.unit!r})"

    @classmethod
    def of(cls, x: DurationLike) -> Duration:
        """Duration from a Duration, a number of updates, or text like ``"5ep"``/``"10%"``."""
        if isinstance(x, Duration):
            return x
        if is_real(x):
            return cls(x, "step")  # type: ignore[arg-type]
        if isinstance(x, str):
            m = _DURATION_TEXT.fullmatch(x)
            if m is None:
                raise SpecError(f"expected a duration like 500, 5ep or 10%, got {x!r}")
            try:
                value = number_from_text(m.group(1))
            except ValueError:
                raise SpecError(f"number too long in {x!r}") from None
            return cls(value, m.group(2) or "step")  # type: ignore[arg-type]
        raise SpecError(f"expected a duration like 500, 5ep or 10%, got {x!r}")

    def updates(self, ctx: Context) -> float:
        """Exact (unrounded) number of updates; SpecError naming a missing quantity."""
        if self.unit == "step":
            return self.value
        if self.unit == "ep":
            if ctx.steps_per_epoch is None:
                raise SpecError(f"{self} needs steps_per_epoch (updates per epoch)")
            return self.value * ctx.steps_per_epoch
        if ctx.total_steps is None:
            raise SpecError(f"{self} needs total_steps (updates in the whole training)")
        return self.value * ctx.total_steps / 100.0

    def to_steps(self, ctx: Context) -> int:
        """Whole number of updates (ep and % rounded half up)."""
        u = self.updates(ctx)
        if self.unit == "step":
            if not u.is_integer():
                raise SpecError(f"{self} is not a whole number of updates")
            return int(u)
        return round_half_up(u)


DurationLike = Duration | int | float | str


@dataclass(frozen=True)
class Context:
    """What a schedule may need to know about the training it runs in.

    Attributes:
        total_steps: total optimizer updates in training (``%`` durations, open last phases).
        steps_per_epoch: optimizer updates per epoch (``ep`` durations).
        beta2: the optimizer's second-moment decay (``warmup(auto)``).
        peak_lr: one param group's peak LR (``end_lr=``, ``start_lr=``, ``floor_lr=``);
            0 is allowed (a frozen group): its absolute LRs then become multiplier 0.
        updates_per_step: optimizer updates per unit of ``t``. 1 (the default) when ``t``
            counts updates; the updates per epoch when ``t`` counts epochs (the torch
            adapter's ``per="epoch"``, which then also sets ``steps_per_epoch=1``); None when
            ``t`` counts epochs of unknown length. Only ``warmup(auto)`` reads it: its length
            is defined in updates (2/(1-beta2)) and becomes ``ceil(updates / updates_per_step)``
            units of ``t``; with None it is refused, never read as that many epochs.
    """

    total_steps: int | None = None
    steps_per_epoch: int | None = None
    beta2: float | None = None
    peak_lr: float | None = None
    updates_per_step: int | None = 1

    def __post_init__(self) -> None:
        for name in ("total_steps", "steps_per_epoch", "updates_per_step"):
            v = getattr(self, name)
            if v is None:
                continue
            if not (isinstance(v, numbers.Integral) and not isinstance(v, bool)) or v <= 0:
                raise SpecError(f"{name} must be a positive whole number, got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.beta2 is not None:
            b = as_float(self.beta2, "beta2")
            if not 0.0 <= b < 1.0:
                raise SpecError(f"beta2 must be in [0, 1), got {b!r}")
            object.__setattr__(self, "beta2", b)
        if self.peak_lr is not None:
            p = as_float(self.peak_lr, "peak_lr")
            if p < 0:
                raise SpecError(f"peak_lr must be >= 0, got {p!r}")
            object.__setattr__(self, "peak_lr", p)

