"""Arguments of phases and of ``plateau``, declared once as dataclass fields.

Each argument is one field whose metadata says what it accepts::

    end: float = arg(0.0, kind=Number(AT_LEAST_0))
    _: KW_ONLY
    end_lr: float | None = arg(None, kind=AbsoluteLR("end"))

Everything else is derived from these fields:

- the constructor is the dataclass ``__init__``: fields before ``KW_ONLY`` may be given
  positionally, in Python and in spec strings alike (``cosine(0.1)``);
- :func:`check_args` turns each value into its canonical stored form (numbers to float,
  durations to :class:`Duration`) or raises an :class:`ArgError` naming the argument, which
  the parser uses to point at it;
- :func:`format_call` writes the canonical spec ``name(lead, key=value, ...)``, leaving out
  arguments at their default and writing ``lead`` arguments without their name;
- :func:`resolve_args` binds the arguments to a training: durations become updates and
  absolute LRs multipliers.

An argument accepts None exactly when None is its default; one without a default is
required. Arguments are checked and written in the constructor's order, except that the
inherited keywords ``clock=`` and ``steps=`` come last.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import MISSING, Field, dataclass
from typing import Any

from lrlab.errors import SpecError
from lrlab.schedules.units import Context, Duration, fmt_num, is_real


class ArgError(SpecError):
    """A SpecError caused by one argument (``param``; ``index`` into a list argument)."""

    def __init__(self, message: str, param: str | None = None, index: int | None = None):
        super().__init__(message)
        self.param = param
        self.index = index


@dataclass(frozen=True)
class Range:
    """The interval a number must lie in; ``str`` is how error messages say it."""

    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.open_low else x >= self.low
        below = x < self.high if self.open_high else x <= self.high
        return above and below

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.open_low else '>='} {fmt_num(self.low)}"
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"in {left}{fmt_num(self.low)}, {fmt_num(self.high)}{right}"


AT_LEAST_0 = Range(0.0)
POSITIVE = Range(0.0, open_low=True)
AT_LEAST_1 = Range(1.0)
OPEN_UNIT = Range(0.0, 1.0, open_low=True, open_high=True)
UNIT = Range(0.0, 1.0)


class Kind:
    """What an argument accepts and how it is bound to a training."""

    def check(self, value: Any, where: str) -> Any:
        """The canonical stored form of ``value``; ArgError (or SpecError) if it does not fit.
        ``where`` names the argument in messages, e.g. ``"exp(): gamma"``."""
        raise NotImplementedError

    def resolve(self, obj: Any, name: str, ctx: Context) -> dict[str, Any]:
        """Fields of ``obj`` to replace when it is resolved against ``ctx`` (none by default)."""
        return {}


class Number(Kind):
    """A finite real number in ``interval``, stored as a float."""

    def __init__(self, interval: Range = Range()) -> None:
        self.interval = interval

    def check(self, value: Any, where: str) -> float:
        if not is_real(value):
            raise ArgError(f"{where} must be a number, got {value!r}")
        try:
            x = float(value)
        except OverflowError:
            raise ArgError(f"{where} is too large: {value!r}") from None
        if not math.isfinite(x):
            raise ArgError(f"{where} must be finite, got {value!r}")
        if x not in self.interval:
            raise ArgError(f"{where} must be {self.interval}, got {fmt_num(x)}")
        return x + 0.0  # -0.0 -> 0.0


class Whole(Number):
    """A whole number in ``interval``, stored as an int."""

    def check(self, value: Any, where: str) -> int:
        x = super().check(value, where)
        if not x.is_integer():
            raise ArgError(f"{where} must be a whole number, got {fmt_num(x)}")
        return int(x)


class OneOf(Kind):
    """One of a few words (``shape=exp``). ``aliases`` maps an older name to the canonical
    one it is stored (and printed) as: ``OneOf("1-sqrt", aliases={"sqrt": "1-sqrt"})``."""

    def __init__(self, *options: str, aliases: dict[str, str] | None = None) -> None:
        self.options = options
        self.aliases = dict(aliases or {})

    def check(self, value: Any, where: str) -> str:
        if isinstance(value, str) and value in self.aliases:
            return self.aliases[value]
        if value not in self.options:
            raise ArgError(f"{where} must be one of {', '.join(self.options)}; got {value!r}")
        return str(value)


class AbsoluteLR(Number):
    """An absolute LR (>= 0) given instead of the multiplier argument ``of``: ``end_lr=`` for
    ``end=``. Only one of the two may be set; resolving turns it into ``of = lr / peak_lr``.
    """

    def __init__(self, of: str) -> None:
        super().__init__(AT_LEAST_0)
        self.of = of

    def resolve(self, obj: Any, name: str, ctx: Context) -> dict[str, Any]:
        lr = getattr(obj, name)
        if lr is None:
            return {}
        if ctx.peak_lr is None:
            raise SpecError(f"{name}={lr} needs peak_lr to turn the absolute LR into a multiplier")
        # a group whose peak is 0 stays at 0 whatever the multiplier
        return {self.of: 0.0 if ctx.peak_lr == 0 else lr / ctx.peak_lr, name: None}


class Length(Kind):
    """A positive duration (``500``, ``5ep``, ``10%``) of whole updates; resolving rounds it
    to whole updates (at least 1).

    ``fractional``: fractional updates are allowed and resolving keeps them exact
    (``rsqrt(scale=2.5)``). ``auto`` also accepts the word ``auto`` and ``fraction`` a plain
    number in (0, 1); what those mean depends on the phase, which resolves them itself
    (``warmup(auto)``, ``wsd(0.2)``).
    """

    def __init__(self, *, fractional: bool = False, auto: bool = False, fraction: bool = False):
        self.fractional = fractional
        self.auto = auto
        self.fraction = fraction

    def check(self, value: Any, where: str) -> Duration | str | float:
        if self.auto and value == "auto":
            return "auto"
        if self.fraction and is_real(value) and 0 < value < 1:
            return float(value)
        if self.fraction and is_real(value) and value > 1 and not float(value).is_integer():
            raise ArgError(f"{where} must be a fraction in (0, 1) or a whole number of "
                           f"updates, got {fmt_num(float(value))}")
        if isinstance(value, (list, tuple)):
            raise ArgError(f"{where} must be a duration like 500, 5ep or 10%, got a list")
        d = Duration.of(value)
        if d.value <= 0:
            raise ArgError(f"{where} must be a positive duration, got {d}")
        if d.unit == "step" and not self.fractional and not d.value.is_integer():
            raise ArgError(f"{where} must be a whole number of updates, got {d}")
        return d

    def resolve(self, obj: Any, name: str, ctx: Context) -> dict[str, Any]:
        d = getattr(obj, name)
        if self.auto or self.fraction or d is None:
            return {}  # resolved by the phase itself
        if self.fractional:
            return {name: Duration(d.updates(ctx))}
        n = d.to_steps(ctx)
        if n <= 0:
            raise SpecError(f"{name}={d} rounds to {n} updates; it must be at least 1")
        return {name: Duration(n)}


class Numbers(Kind):
    """A non-empty list of numbers in ``interval``, stored as a tuple of floats."""

    def __init__(self, interval: Range = Range()) -> None:
        self.one = Number(interval)

    def check(self, value: Any, where: str) -> tuple[float, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ArgError(f"{where} must be a list like [1, 0.5], got {value!r}")
        if len(value) == 0:
            raise ArgError(f"{where} must not be empty")
        out = []
        for i, v in enumerate(value):
            try:
                out.append(self.one.check(v, where))
            except ArgError as e:
                e.index = i
                raise
        return tuple(out)


class Clock(Kind):
    """Which clock a phase reads: ``phase`` (its own, from 0 at its first update; the
    default), ``train`` (the training clock: ``t`` itself), or a whole number ``c >= 0`` of
    updates its clock already reads at its first update (what ``train`` resolves to: the
    phase's start). ``0`` is ``phase``."""

    def check(self, value: Any, where: str) -> str | int:
        if value in ("phase", "train"):
            return str(value)
        if not is_real(value):
            raise ArgError(f"{where} must be phase, train or a whole number of updates, "
                           f"got {value!r}")
        c = Whole(AT_LEAST_0).check(value, where)
        return "phase" if c == 0 else c


class Milestones(Kind):
    """A non-empty list of increasing time points (durations, whole updates); resolving turns
    them into updates, which must still increase (``[10, 1ep]`` may not)."""

    def check(self, value: Any, where: str) -> tuple[Duration, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ArgError(f"{where} must be a list like [30ep, 60ep], got {value!r}")
        if len(value) == 0:
            raise ArgError(f"{where} must not be empty")
        out: list[Duration] = []
        for i, v in enumerate(value):
            try:
                d = Duration.of(v)
            except SpecError as e:
                raise ArgError(f"{where}: {e}", index=i) from None
            if d.unit == "step" and not d.value.is_integer():
                raise ArgError(f"{where} must be whole numbers of updates, got {d}", index=i)
            if i and d.unit == out[-1].unit and d.value <= out[-1].value:
                raise ArgError(f"{where} must be increasing, got {out[-1]} then {d}", index=i)
            out.append(d)
        return tuple(out)

    def resolve(self, obj: Any, name: str, ctx: Context) -> dict[str, Any]:
        ms = [m.to_steps(ctx) for m in getattr(obj, name)]
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise SpecError(f"{obj.name} {name} must be increasing, got {ms} updates")
        return {name: tuple(Duration(m) for m in ms)}


@dataclass(frozen=True)
class Arg:
    """Field metadata: the argument's kind, and whether specs write it without its name."""

    kind: Kind
    lead: bool = False


def arg(default: Any = MISSING, *, kind: Kind, lead: bool = False) -> Any:
    """Declare a phase argument: a dataclass field with a default (none: required) and a
    :class:`Kind`. ``lead=True`` writes it positionally in canonical specs (``exp(0.9)``)."""
    return dataclasses.field(default=default, metadata={"arg": Arg(kind, lead)})


@functools.cache
def args_of(cls: type) -> tuple[Field[Any], ...]:
    """The argument fields of ``cls`` in canonical order: positional ones, then keywords,
    ``clock=`` and ``steps=`` last."""
    fields = [f for f in dataclasses.fields(cls) if "arg" in f.metadata]
    last = {"clock": 1, "steps": 2}
    return tuple(sorted(fields, key=lambda f: (bool(f.kw_only),
                                               last.get(f.name, 0) if f.kw_only else 0)))


def positional_names(cls: type) -> list[str]:
    """Arguments that may be given without a name, in order."""
    return [f.name for f in args_of(cls) if not f.kw_only]


def required_names(cls: type) -> list[str]:
    """Arguments without a default."""
    return [f.name for f in args_of(cls) if f.default is MISSING]


def _kind(f: Field[Any]) -> Kind:
    return f.metadata["arg"].kind


def check_args(obj: Any) -> None:
    """Replace every argument of the frozen dataclass ``obj`` by its checked, canonical form
    (in place); then refuse an absolute LR given together with its multiplier."""
    owner = f"{obj.name}()"
    for f in args_of(type(obj)):
        value = getattr(obj, f.name)
        where = f"{owner}: {f.name}"
        if value is None:
            if f.default is MISSING:
                raise ArgError(f"{owner} needs {f.name}", f.name)
            if f.default is not None:
                raise ArgError(f"{where} must not be None", f.name)
            continue
        try:
            value = _kind(f).check(value, where)
        except ArgError as e:
            e.param = f.name
            raise
        except SpecError as e:
            raise ArgError(f"{where}: {e}", f.name) from None
        object.__setattr__(obj, f.name, value)
    fields = {f.name: f for f in args_of(type(obj))}
    for name, f in fields.items():
        kind = _kind(f)
        if isinstance(kind, AbsoluteLR) and getattr(obj, name) is not None:
            if getattr(obj, kind.of) != fields[kind.of].default:
                raise ArgError(f"{owner}: give {kind.of}= or {name}=, not both", name)


def resolve_args(obj: Any, ctx: Context) -> dict[str, Any]:
    """Fields to replace when ``obj`` is resolved: each argument but ``steps`` (which the
    chain resolves) bound to ``ctx`` by its kind."""
    out: dict[str, Any] = {}
    for f in args_of(type(obj)):
        if f.name != "steps":
            out.update(_kind(f).resolve(obj, f.name, ctx))
    return out


def format_value(value: Any) -> str:
    """Canonical spec text of a stored argument value."""
    if is_real(value):
        return fmt_num(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def format_call(obj: Any) -> str:
    """``name(lead, key=value, ...)`` with arguments at their default left out."""
    parts = []
    for f in args_of(type(obj)):
        value = getattr(obj, f.name)
        if f.default is not MISSING and value == f.default:
            continue
        text = format_value(value)
        parts.append(text if f.metadata["arg"].lead else f"{f.name}={text}")
    return f"{obj.name}({', '.join(parts)})"

