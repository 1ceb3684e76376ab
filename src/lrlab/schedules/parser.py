"""Spec strings: a hand-written tokenizer and recursive-descent parser (never ``eval``).

Grammar::

    spec    := chain END                     plateau(...) alone means constant() * plateau(...)
    chain   := product ('>>' product)*       phases one after another
    product := factor ('*' factor)*          multipliers multiplied at the same update
    factor  := call | '(' chain ')'
    call    := NAME '(' [arg (',' arg)* [',']] ')'
    arg    := NAME '=' value | value         positional arguments come first
    value  := NUMBER | DURATION | NAME | '[' [scalar (',' scalar)* [',']] ']'
    scalar := NUMBER | DURATION

``*`` binds tighter than ``>>``, as in Python (``a >> b * c`` is ``a >> (b * c)``), so a
spec reads like the Python expression that builds it. ``plateau(...)`` may be a factor of
any product but multiplies the whole schedule (one per schedule; written last).

NUMBER is ``[+-]digits[.digits][e[+-]digits]`` (ASCII digits only), DURATION a NUMBER
followed directly by ``ep`` or ``%``. NAME is ``[A-Za-z_][A-Za-z0-9_]*`` or, for word values
such as ``shape=1-sqrt``, digits, ``-`` and such a word. Every error is a SpecError whose
``pos`` is the 0-based offset of the offending character; its message ends with ``at position N in
'spec'``. Formatting is ``str(schedule)``; ``parse(str(s)) == s`` for every schedule.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from lrlab.errors import SpecError
from lrlab.schedules.args import ArgError, args_of, positional_names, required_names
from lrlab.schedules.cyclical import Cyclic
from lrlab.schedules.decays import (
    Constant,
    Cosine,
    Exp,
    Factor,
    Linear,
    Multistep,
    Onecycle,
    Poly,
    Rsqrt,
    Wsd,
)
from lrlab.schedules.onplateau import Plateau
from lrlab.schedules.product import Product  # noqa: F401 -- plugs ``a * b`` into Schedule
from lrlab.schedules.schedule import Chain, Schedule
from lrlab.schedules.units import Duration, number_from_text
from lrlab.schedules.warm_restarts import Restarts
from lrlab.schedules.warmups import Warmup

#: Spec name -> class. ``plateau`` is not a phase but is called the same way.
PHASES: dict[str, type] = {
    c.name: c
    for c in (
        Constant, Warmup, Linear, Cosine, Poly, Rsqrt, Exp, Factor, Multistep, Restarts, Wsd,
        Onecycle, Cyclic,
    )
}
_CALLABLES: dict[str, type] = {**PHASES, "plateau": Plateau}

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: A word that starts with a number and a dash, as a value: ``shape=1-sqrt``.
_DASHED_WORD = re.compile(r"[0-9]+-[A-Za-z_][A-Za-z0-9_]*")
_SPACE = " \t\r\n"
#: How deep parentheses may nest (a bound on the parser's recursion).
_MAX_DEPTH = 32
_OPS = "()[],=*"


@dataclass(frozen=True)
class _Tok:
    kind: str  # "num", "dur", "name", "op", "end"
    value: Any
    pos: int
    text: str


@dataclass(frozen=True)
class _Arg:
    value: Any
    pos: int
    item_pos: tuple[int, ...] = ()


def _tokenize(spec: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(spec)
    while i < n:
        c = spec[i]
        if c in _SPACE:
            i += 1
            continue
        if spec.startswith(">>", i):
            toks.append(_Tok("op", ">>", i, ">>"))
            i += 2
            continue
        if c in _OPS:
            toks.append(_Tok("op", c, i, c))
            i += 1
            continue
        w = _DASHED_WORD.match(spec, i)
        if w is not None:
            toks.append(_Tok("name", w.group(), i, w.group()))
            i = w.end()
            continue
        m = _NUMBER.match(spec, i)
        if m is not None:
            toks.append(_number(spec, m))
            i += len(toks[-1].text)
            continue
        w = _WORD.match(spec, i)
        if w is not None:
            toks.append(_Tok("name", w.group(), i, w.group()))
            i = w.end()
            continue
        raise SpecError(f"unexpected character {c!r}", spec, i)
    toks.append(_Tok("end", None, n, "end of spec"))
    return toks


def _number(spec: str, m: re.Match[str]) -> _Tok:
    text, i, j = m.group(), m.start(), m.end()
    unit = "step"
    if spec.startswith("%", j):
        unit, j = "%", j + 1
    else:
        w = _WORD.match(spec, j)
        if w is not None:
            if w.group() != "ep":
                raise SpecError(
                    f"unknown unit {w.group()!r} after {text} (use ep, % or no unit)", spec, j
                )
            unit, j = "ep", w.end()
    if j < len(spec) and (spec[j].isalnum() or spec[j] in "_.%"):
        raise SpecError(f"unexpected character {spec[j]!r} after a number", spec, j)
    try:
        value = number_from_text(text)
    except ValueError:
        raise SpecError("number has too many digits", spec, i) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"number {text} is out of range", spec, i)
    if unit == "step":
        return _Tok("num", value, i, spec[i:j])
    return _Tok("dur", (value, unit), i, spec[i:j])


class _Parser:
    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.toks = _tokenize(spec)
        self.i = 0

    def error(self, message: str, pos: int) -> SpecError:
        return SpecError(message, self.spec, pos)

    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def is_op(self, tok: _Tok, op: str) -> bool:
        return tok.kind == "op" and tok.value == op

    # -- spec := chain END ----------------------------------------------------------------
    def parse_spec(self) -> Schedule:
        if self.peek().kind == "end":
            raise self.error("empty spec", 0)
        self.depth = 0
        self.plateaus: list[int] = []  # where each plateau(...) is written
        obj = self.chain()
        self.expect_end()
        return Chain((Constant(),), obj) if isinstance(obj, Plateau) else obj

    # -- chain := product ('>>' product)* ------------------------------------------------
    def chain(self) -> Schedule | Plateau:
        items = [(self.peek(), self.product())]
        while self.is_op(self.peek(), ">>"):
            self.next()
            items.append((self.peek(), self.product()))
        if len(items) == 1:
            return items[0][1]
        for tok, obj in items:
            if isinstance(obj, Plateau):
                raise self.error(
                    "plateau(...) joins a schedule as 'SPEC * plateau(...)', not with '>>'",
                    tok.pos,
                )
        result = items[0][1]
        for tok, obj in items[1:]:
            try:
                result = result >> obj
            except SpecError as e:
                raise self.error(e.args[0], self.culprit(e, tok.pos)) from None
        return result

    def culprit(self, e: SpecError, pos: int) -> int:
        """Where to point for an error of ``>>`` or ``*``: a second plateau(...) is the one
        to blame for "only one plateau"; anything else, ``pos``."""
        if "only one plateau" in e.args[0] and len(self.plateaus) > 1:
            return self.plateaus[1]
        return pos

    # -- product := factor ('*' factor)* -------------------------------------------------
    def product(self) -> Schedule | Plateau:
        result = self.factor()
        while self.is_op(self.peek(), "*"):
            op = self.next()
            other = self.factor()
            if isinstance(result, Plateau) and isinstance(other, Plateau):
                raise self.error("a schedule can have only one plateau(...)", self.plateaus[1])
            if isinstance(result, Plateau):
                result, other = other, result  # the plateau multiplies the whole schedule
            try:
                result = result * other
            except SpecError as e:
                raise self.error(e.args[0], self.culprit(e, op.pos)) from None
        return result

    # -- factor := call | '(' chain ')' --------------------------------------------------
    def factor(self) -> Schedule | Plateau:
        lp = self.peek()
        if not self.is_op(lp, "("):
            tok, obj = self.call()
            if isinstance(obj, Plateau):
                self.plateaus.append(tok.pos)
            return obj
        self.next()
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.error(f"parentheses nested more than {_MAX_DEPTH} deep", lp.pos)
        inner = self.chain()
        self.depth -= 1
        rp = self.next()
        if rp.kind == "end":
            raise self.error("unbalanced parentheses: '(' is never closed", rp.pos)
        if not self.is_op(rp, ")"):
            raise self.error(f"expected ')', '>>' or '*', got {rp.text!r}", rp.pos)
        return inner

    def expect_end(self) -> None:
        tok = self.peek()
        if tok.kind == "end":
            return
        if self.is_op(tok, ")"):
            raise self.error("unbalanced parentheses: ')' without a matching '('", tok.pos)
        raise self.error(f"unexpected {tok.text!r} after the end of the schedule "
                         "(expected '>>', '*' or the end)", tok.pos)

    # -- call := NAME '(' args ')' ------------------------------------------------------
    def call(self) -> tuple[_Tok, Any]:
        tok = self.next()
        if tok.kind != "name":
            what = tok.text if tok.kind != "end" else "the end of the spec"
            raise self.error(f"expected a phase like cosine(...), got {what!r}", tok.pos)
        cls = _CALLABLES.get(tok.value)
        if cls is None:
            close = difflib.get_close_matches(tok.value, list(_CALLABLES), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(_CALLABLES)
            raise self.error(f"unknown phase {tok.value!r} ({hint})", tok.pos)
        lp = self.next()
        if not self.is_op(lp, "("):
            raise self.error(f"expected '(' after {tok.value!r}", lp.pos)
        kwargs = self.arguments(cls, tok, lp)
        missing = [name for name in required_names(cls) if name not in kwargs]
        if missing:
            raise self.error(f"{tok.value}() needs {missing[0]}", tok.pos)
        try:
            obj = cls(**{k: a.value for k, a in kwargs.items()})
        except ArgError as e:
            arg = kwargs.get(e.param) if e.param else None
            pos = tok.pos if arg is None else arg.pos
            if arg is not None and e.index is not None and e.index < len(arg.item_pos):
                pos = arg.item_pos[e.index]
            raise self.error(e.args[0], pos) from None
        except SpecError as e:
            raise self.error(e.args[0], tok.pos) from None
        return tok, obj

    def arguments(self, cls: type, name: _Tok, lp: _Tok) -> dict[str, _Arg]:
        kwargs: dict[str, _Arg] = {}
        n_pos = 0
        if self.is_op(self.peek(), ")"):
            self.next()
            return kwargs
        if self.peek().kind == "end":
            raise self.error(f"unbalanced parentheses: {name.value}( is never closed", lp.pos + 1)
        while True:
            if self.peek().kind == "name" and self.is_op(self.peek(1), "="):
                self.keyword_argument(cls, name, kwargs)
            else:
                self.positional_argument(cls, name, kwargs, n_pos)
                n_pos += 1
            sep = self.next()
            if self.is_op(sep, ")"):
                return kwargs
            if sep.kind == "end":
                raise self.error(f"unbalanced parentheses: {name.value}( is never closed", sep.pos)
            if not self.is_op(sep, ","):
                raise self.error(f"expected ',' or ')', got {sep.text!r}", sep.pos)
            if self.is_op(self.peek(), ")"):
                self.next()
                return kwargs

    def keyword_argument(self, cls: type, name: _Tok, kwargs: dict[str, _Arg]) -> None:
        tok = self.next()
        self.next()  # '='
        known = [f.name for f in args_of(cls)]
        if tok.value not in known:
            close = difflib.get_close_matches(tok.value, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "takes " + ", ".join(known)
            raise self.error(f"unknown argument {tok.value!r} for {name.value}() ({hint})", tok.pos)
        if tok.value in kwargs:
            raise self.error(f"{name.value}() got {tok.value}= twice", tok.pos)
        kwargs[tok.value] = self.value()

    def positional_argument(self, cls: type, name: _Tok, kwargs: dict[str, _Arg],
                            n_pos: int) -> None:
        tok = self.peek()
        arg = self.value()
        if len(kwargs) > n_pos:
            raise self.error("positional argument after a keyword argument", tok.pos)
        positional = positional_names(cls)
        if n_pos >= len(positional):
            raise self.error(
                f"{name.value}() takes {len(positional)} positional argument"
                f"{'' if len(positional) == 1 else 's'}; name this one (key=value)",
                tok.pos,
            )
        kwargs[positional[n_pos]] = arg

    # -- value := NUMBER | DURATION | NAME | list --------------------------------------
    def value(self) -> _Arg:
        tok = self.next()
        if tok.kind in ("num", "dur", "name"):
            return _Arg(self.scalar(tok), tok.pos)
        if self.is_op(tok, "["):
            return self.list_value(tok)
        what = "the end of the spec" if tok.kind == "end" else repr(tok.text)
        raise self.error(f"expected a value, got {what}", tok.pos)

    def scalar(self, tok: _Tok) -> Any:
        if tok.kind != "dur":
            return tok.value
        try:
            return Duration(*tok.value)
        except SpecError as e:
            raise self.error(e.args[0], tok.pos) from None

    def list_value(self, lb: _Tok) -> _Arg:
        items: list[Any] = []
        where: list[int] = []
        while True:
            tok = self.next()
            if self.is_op(tok, "]") and not items:
                return _Arg(items, lb.pos)
            if tok.kind == "end":
                raise self.error("unbalanced brackets: '[' is never closed", tok.pos)
            if self.is_op(tok, "["):
                raise self.error("lists cannot be nested", tok.pos)
            if tok.kind not in ("num", "dur"):
                raise self.error(f"expected a duration in the list, got {tok.text!r}", tok.pos)
            items.append(self.scalar(tok))
            where.append(tok.pos)
            sep = self.next()
            if self.is_op(sep, "]"):
                return _Arg(items, lb.pos, tuple(where))
            if sep.kind == "end":
                raise self.error("unbalanced brackets: '[' is never closed", sep.pos)
            if not self.is_op(sep, ","):
                raise self.error(f"expected ',' or ']' in the list, got {sep.text!r}", sep.pos)
            if self.is_op(self.peek(), "]"):
                self.next()
                return _Arg(items, lb.pos, tuple(where))


def parse(spec: str) -> Schedule:
    """The schedule a spec string describes, e.g. ``parse("warmup(5%) >> cosine()")``.

    Raises:
        SpecError: with ``pos`` at the offending character for any malformed spec.
    """
    if not isinstance(spec, str):
        raise SpecError(f"a schedule spec must be a string, got {type(spec).__name__}")
    return _Parser(spec).parse_spec()


Schedule._parse_spec = staticmethod(parse)  # for ``s >> "cosine()"`` (see Schedule)
