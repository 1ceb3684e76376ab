"""Arguments of phases and of ``plateau``: declared once, checked once, printed once.

Each phase class lists its arguments as :class:`Param` objects. The same list drives the
Python constructors (values are normalised and range-checked in ``__post_init__``), the
spec parser (positional order, keyword names, which argument an error points at) and the
canonical string (defaults omitted, the ``lead`` argument written positionally).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lrlab.errors import SpecError
from lrlab.schedules.units import Duration, fmt_num, is_real

# Bounds a number may have to satisfy: name -> (test, description).
_BOUNDS = {
    "": (lambda x: True, ""),
    ">=0": (lambda x: x >= 0, ">= 0"),
    ">0": (lambda x: x > 0, "> 0"),
    ">=1": (lambda x: x >= 1, ">= 1"),
    "(0,1)": (lambda x: 0 < x < 1, "in (0, 1)"),
    "[0,1]": (lambda x: 0 <= x <= 1, "in [0, 1]"),
}


class ArgError(SpecError):
    """A SpecError caused by one argument (``param``; ``index`` into a list argument)."""

    def __init__(self, message: str, param: str | None = None, index: int | None = None):
        super().__init__(message)
        self.param = param
        self.index = index


@dataclass(frozen=True)
class Param:
    """One argument of a phase.

    kind: ``num`` (float), ``int`` (whole number), ``dur`` (a length: positive duration,
    whole updates), ``dur_auto`` (``dur`` or the word ``auto``), ``dur_real`` (positive
    duration, fractional updates allowed), ``dur_frac`` (``dur`` or a plain fraction in
    (0, 1)), ``durs`` (list of durations), ``choice`` (one of ``choices``), ``lr`` (an
    absolute learning rate >= 0).
    """

    name: str
    kind: str
    bound: str = ""
    positional: bool = False
    lead: bool = False
    required: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()

    def normalize(self, value: Any, owner: str) -> Any:
        """The canonical stored form of ``value``; ArgError if it does not fit."""
        where = f"{owner}: {self.name}"
        if value is None:
            if self.required:
                raise ArgError(f"{owner} needs {self.name}", self.name)
            if self.nullable:
                return None
            raise ArgError(f"{where} must not be None", self.name)
        try:
            return _NORMALIZERS[self.kind](self, value, where)
        except ArgError:
            raise
        except SpecError as e:
            raise ArgError(f"{where}: {e}", self.name) from None

    def format(self, value: Any) -> str:
        """Canonical spec text of a stored value."""
        if self.kind in ("num", "lr", "int", "dur_frac") and is_real(value):
            return fmt_num(value)
        if self.kind == "durs":
            return "[" + ", ".join(str(d) for d in value) + "]"
        return str(value)


def _bounded(p: Param, x: float, where: str) -> None:
    test, text = _BOUNDS[p.bound]
    if not test(x):
        raise ArgError(f"{where} must be {text}, got {fmt_num(x)}", p.name)


def _num(p: Param, value: Any, where: str) -> float:
    if not is_real(value):
        raise ArgError(f"{where} must be a number, got {value!r}", p.name)
    try:
        x = float(value)
    except OverflowError:
        raise ArgError(f"{where} is too large: {value!r}", p.name) from None
    if not math.isfinite(x):
        raise ArgError(f"{where} must be finite, got {value!r}", p.name)
    _bounded(p, x, where)
    return x + 0.0


def _int(p: Param, value: Any, where: str) -> int:
    x = _num(p, value, where)
    if not x.is_integer():
        raise ArgError(f"{where} must be a whole number, got {fmt_num(x)}", p.name)
    return int(x)


def _length(p: Param, value: Any, where: str) -> Duration:
    if isinstance(value, (list, tuple)):
        raise ArgError(f"{where} must be a duration like 500, 5ep or 10%, got a list", p.name)
    d = Duration.of(value)
    if d.value <= 0:
        raise ArgError(f"{where} must be a positive duration, got {d}", p.name)
    if d.unit == "step" and p.kind != "dur_real" and not d.value.is_integer():
        raise ArgError(f"{where} must be a whole number of updates, got {d}", p.name)
    return d


def _dur_auto(p: Param, value: Any, where: str) -> Duration | str:
    if value == "auto":
        return "auto"
    return _length(p, value, where)


def _dur_frac(p: Param, value: Any, where: str) -> Duration | float:
    if is_real(value) and 0 < value < 1:
        return float(value)
    return _length(p, value, where)


def _durs(p: Param, value: Any, where: str) -> tuple[Duration, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ArgError(f"{where} must be a list like [30ep, 60ep], got {value!r}", p.name)
    if len(value) == 0:
        raise ArgError(f"{where} must not be empty", p.name)
    out = []
    for i, v in enumerate(value):
        try:
            d = Duration.of(v)
        except SpecError as e:
            raise ArgError(f"{where}: {e}", p.name, i) from None
        if d.unit == "step" and not d.value.is_integer():
            raise ArgError(f"{where} must be whole numbers of updates, got {d}", p.name, i)
        if i and d.unit == out[-1].unit and d.value <= out[-1].value:
            raise ArgError(f"{where} must be increasing, got {out[-1]} then {d}", p.name, i)
        out.append(d)
    return tuple(out)


def _choice(p: Param, value: Any, where: str) -> str:
    if value not in p.choices:
        raise ArgError(f"{where} must be one of {', '.join(p.choices)}; got {value!r}", p.name)
    return str(value)


_NORMALIZERS = {
    "num": _num,
    "lr": _num,
    "int": _int,
    "dur": _length,
    "dur_real": _length,
    "dur_auto": _dur_auto,
    "dur_frac": _dur_frac,
    "durs": _durs,
    "choice": _choice,
}


def normalize_fields(obj: Any, params: tuple[Param, ...], owner: str) -> None:
    """Replace each field of a frozen dataclass by its normalised value (in place)."""
    for p in params:
        object.__setattr__(obj, p.name, p.normalize(getattr(obj, p.name), owner))


def format_call(obj: Any, name: str, params: tuple[Param, ...]) -> str:
    """``name(lead, key=value, ...)`` with arguments at their default left out."""
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(obj)
        if f.default is not dataclasses.MISSING
    }
    parts = []
    for p in params:
        value = getattr(obj, p.name)
        if not p.required and p.name in defaults and value == defaults[p.name]:
            continue
        text = p.format(value)
        parts.append(text if p.lead else f"{p.name}={text}")
    return f"{name}({', '.join(parts)})"


def end_multiplier(end: float, end_lr: float | None, peak_lr: float | None, what: str) -> float:
    """``end`` itself, or ``end_lr / peak_lr`` when an absolute LR was given."""
    if end_lr is None:
        return end
    if peak_lr is None:
        raise SpecError(f"{what} needs peak_lr to turn the absolute LR into a multiplier")
    if peak_lr == 0:
        return 0.0  # a group whose peak is 0 stays at 0 whatever the multiplier
    return end_lr / peak_lr
