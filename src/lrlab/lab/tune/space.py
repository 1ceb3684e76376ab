"""Search spaces for ``lrlab tune``: which ``lrlab train`` settings a study varies, and how.

A space is one dimension per key, written ``KEY=DISTRIBUTION`` (``--space``) or as a TOML
table ``[space]`` whose values are the same distribution strings (a TOML list is a choice)::

    lr=log(1e-4, 1e-1)          log-uniform float in [1e-4, 1e-1]
    weight_decay=float(0, 0.3)  uniform float
    batch_size=int(32, 256)     uniform integer, both ends included
    schedule=choice('cosine()', 'warmup(5%) >> cosine()', 'wsd(decay=20%)')
    warmup=int(0, 10)ep         a warmup length in epochs ('%' of training, or updates)

``KEY`` is any ``lrlab train`` setting (dashes or underscores) except the ones that belong to
the study rather than to a trial (``out``, ``name``, ``quiet``, ``seed``), plus one key of the
tuner's own: ``warmup``, the length of a linear warmup put in front of the trial's schedule
(``warmup(N) >> SCHEDULE``; 0 means none). A space with ``warmup`` refuses schedules that
already start with a warmup, because one of the two would have to be silently dropped.

Every value a space can produce is checked when the space is read: each choice, and both
ends of a range, are applied to the base configuration and validated as a training run
would be, so a study never starts with a value that fails in its tenth trial. Parsing never
evaluates anything; an error names the key and the offending text.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lrlab.errors import LrlabError
from lrlab.lab.compare.plan import coerce_value
from lrlab.lab.train.config import TrainConfig, config_from_dict
from lrlab.schedules import Context
from lrlab.schedules import parse as parse_schedule

__all__ = ["Dimension", "SearchSpace", "parse_space", "WARMUP_KEY"]

WARMUP_KEY = "warmup"
_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_NOT_TUNED = {"out", "name", "quiet", "seed"}
_KINDS = ("log", "float", "int", "choice")
_UNITS = ("", "ep", "%")
_CALL = re.compile(r"\s*([A-Za-z_]+)\s*\((.*)\)\s*([A-Za-z%]*)\s*$", re.S)


@dataclass(frozen=True)
class Dimension:
    """One key of a space: ``kind`` is log/float/int (``low``..``high``) or choice
    (``choices``, the values' texts); ``unit`` is a duration unit (``warmup`` only)."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""

    def text(self) -> str:
        """The canonical distribution string; ``parse_space`` reads it back to this."""
        if self.kind == "choice":
            return "choice(" + ", ".join(_quote(c) for c in self.choices) + ")"
        low, high = (_num(self.low), _num(self.high))
        return f"{self.kind}({low}, {high}){self.unit}"

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for this dimension's value (a number, or a choice's text)."""
        if self.kind == "log":
            return trial.suggest_float(self.key, self.low, self.high, log=True)
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_categorical(self.key, list(self.choices))

    def grid_values(self) -> list[Any]:
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        raise LrlabError(f"--sampler grid: {self.key}={self.text()} is a continuous range; "
                         f"give it as choice(...) of the values to try")

    def typed(self, value: Any) -> Any:
        """A sampled value as the training setting it stands for."""
        if self.key == WARMUP_KEY:
            return int(value)
        if self.kind == "choice":
            return coerce_value(self.key, str(value), "--space")
        if self.kind == "int":
            return int(value)
        return float(value)


def _num(v: float | None) -> str:
    assert v is not None
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(float(v))


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of a study, in the order given."""

    dims: tuple[Dimension, ...]

    def to_dict(self) -> dict[str, str]:
        return {d.key: d.text() for d in self.dims}

    def keys(self) -> list[str]:
        return [d.key for d in self.dims]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The trial's settings, typed (``{"lr": 0.003, "schedule": "cosine()", ...}``)."""
        return {d.key: d.typed(d.suggest(trial)) for d in self.dims}

    def typed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Settings from a trial's stored params (``FrozenTrial.params``)."""
        by_key = {d.key: d for d in self.dims}
        return {k: by_key[k].typed(v) for k, v in params.items() if k in by_key}

    def grid(self) -> dict[str, list[Any]]:
        return {d.key: d.grid_values() for d in self.dims}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def apply(self, base: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
        """The training settings of a trial: ``base`` with ``settings`` put in (the tuner's
        ``warmup`` turned into a warmup phase in front of the schedule)."""
        out = dict(base)
        out.update({k: v for k, v in settings.items() if k != WARMUP_KEY})
        if WARMUP_KEY in settings:
            n = int(settings[WARMUP_KEY])
            if n > 0:
                unit = next(d.unit for d in self.dims if d.key == WARMUP_KEY)
                schedule = out.get("schedule", TrainConfig().schedule)
                out["schedule"] = f"warmup({n}{unit}) >> {schedule}"
        return out


def _split_args(text: str, where: str) -> list[str]:
    """Split on commas outside quotes and brackets; quoted items keep their quotes."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch in "([":
            depth += 1
            cur.append(ch)
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise LrlabError(f"{where}: unbalanced {ch!r} at character {i + 1} of {text!r}")
            cur.append(ch)
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if quote:
        raise LrlabError(f"{where}: unterminated quote in {text!r}")
    if depth:
        raise LrlabError(f"{where}: unbalanced brackets in {text!r}")
    parts.append("".join(cur).strip())
    if parts == [""]:
        return []
    if any(not p for p in parts):
        raise LrlabError(f"{where}: empty value in {text!r}")
    return parts


def _unquote(item: str, where: str) -> str:
    if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
        body = item[1:-1]
        return re.sub(r"\\(.)", r"\1", body)
    if item[:1] in "'\"" or item[-1:] in "'\"":
        raise LrlabError(f"{where}: badly quoted value {item!r}")
    return item


def _number(item: str, where: str) -> float:
    try:
        v = float(item)
    except ValueError:
        raise LrlabError(f"{where}: {item!r} is not a number") from None
    if not math.isfinite(v):
        raise LrlabError(f"{where}: {item!r} is not a finite number")
    return v


def _key(raw: str, where: str) -> str:
    key = raw.strip().replace("-", "_")
    if key == WARMUP_KEY:
        return key
    if key in _NOT_TUNED:
        raise LrlabError(f"{where}: {raw.strip()!r} cannot be tuned (it belongs to the study, "
                         "not to a trial)")
    if key not in _FIELDS:
        valid = ", ".join(sorted([WARMUP_KEY] + [n.replace("_", "-") for n in _FIELDS
                                                 if n not in _NOT_TUNED]))
        raise LrlabError(f"{where}: unknown key {raw.strip()!r} (keys: {valid})")
    return key


def _field_kind(key: str) -> str:
    if key == WARMUP_KEY:
        return "int"
    return str(_FIELDS[key].type)


def parse_dimension(key_text: str, value: Any) -> Dimension:
    """One dimension from a key and its distribution (a string, or a TOML list = choice)."""
    where = f"--space {key_text}"
    key = _key(key_text, "--space")
    if isinstance(value, list):
        if not value:
            raise LrlabError(f"{where}: an empty choice")
        items = [v if isinstance(v, str) else _plain(v, where) for v in value]
        return _choice(key, items, where)
    if not isinstance(value, str):
        raise LrlabError(f"{where}: expected a distribution such as log(1e-4, 1e-1) or a "
                         f"list of choices, got {value!r}")
    m = _CALL.match(value)
    if not m:
        raise LrlabError(f"{where}: expected log(low, high), float(low, high), int(low, high) "
                         f"or choice(a, b, ...), got {value!r}")
    kind, args_text, unit = m.group(1).lower(), m.group(2), m.group(3)
    if kind not in _KINDS:
        raise LrlabError(f"{where}: unknown distribution {m.group(1)!r} (use "
                         f"{', '.join(_KINDS)})")
    args = _split_args(args_text, where)
    if unit and (key != WARMUP_KEY or kind != "int"):
        raise LrlabError(f"{where}: a unit ({unit!r}) is only for warmup=int(low, high)UNIT")
    if unit not in _UNITS:
        raise LrlabError(f"{where}: unknown unit {unit!r} (use ep, % or none for updates)")
    if kind == "choice":
        if not args:
            raise LrlabError(f"{where}: an empty choice")
        return _choice(key, [_unquote(a, where) for a in args], where)
    if len(args) != 2:
        raise LrlabError(f"{where}: {kind} takes (low, high), got {len(args)} values")
    low, high = (_number(a, where) for a in args)
    field_kind = _field_kind(key)
    if kind in ("log", "float") and not field_kind.startswith("float") and \
            not field_kind.startswith("str | float"):
        raise LrlabError(f"{where}: {key} is not a number setting; use choice(...)")
    if kind == "int" and not field_kind.startswith("int"):
        raise LrlabError(f"{where}: {key} is not an integer setting; use "
                         f"{'float' if field_kind.startswith('float') else 'choice'}(...)")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise LrlabError(f"{where}: int bounds must be whole numbers, got {args_text!r}")
    if not low < high:
        raise LrlabError(f"{where}: low must be below high, got {args_text!r}")
    if kind == "log" and low <= 0:
        raise LrlabError(f"{where}: a log range needs low > 0, got {args_text!r}")
    if key == WARMUP_KEY and low < 0:
        raise LrlabError(f"{where}: a warmup length cannot be negative")
    return Dimension(key, kind, low, high, unit=unit)


def _plain(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    raise LrlabError(f"{where}: a choice must be strings or numbers, got {v!r}")


def _choice(key: str, items: Sequence[str], where: str) -> Dimension:
    if key == WARMUP_KEY:
        raise LrlabError(f"{where}: give warmup as int(low, high)UNIT")
    for item in items:
        coerce_value(key, item, "--space")  # the type check; the run check comes later
    if len(set(items)) != len(items):
        raise LrlabError(f"{where}: a choice lists a value twice")
    return Dimension(key, "choice", choices=tuple(items))


def parse_space(entries: Sequence[str] | Mapping[str, Any],
                base: Mapping[str, Any] | None = None) -> SearchSpace:
    """Read ``--space`` strings (``["lr=log(1e-4,1e-1)", ...]``) or a TOML ``[space]``
    table, and check every value it can produce against ``base`` (TrainConfig keys).

    Raises:
        LrlabError: a bad distribution, an unknown or untunable key, a key given twice, or
            a value that makes an invalid training run; one line naming the key.
    """
    pairs: list[tuple[str, Any]] = []
    if isinstance(entries, Mapping):
        pairs = list(entries.items())
    else:
        for entry in entries:
            key, sep, value = str(entry).partition("=")
            if not sep or not key.strip():
                raise LrlabError(f"--space: expected KEY=DISTRIBUTION, got {entry!r}")
            pairs.append((key, value))
    if not pairs:
        raise LrlabError("tune: the search space is empty; give --space KEY=DISTRIBUTION")
    dims: list[Dimension] = []
    for key, value in pairs:
        d = parse_dimension(str(key), value)
        if any(x.key == d.key for x in dims):
            raise LrlabError(f"--space: {key} given twice")
        dims.append(d)
    space = SearchSpace(tuple(dims))
    check_space(space, dict(base or {}))
    return space


def check_space(space: SearchSpace, base: dict[str, Any]) -> None:
    """Every choice and both ends of every range make a valid training run with ``base``."""
    options: list[list[tuple[str, Any]]] = []
    for d in space.dims:
        if d.kind == "choice":
            values = [d.typed(c) for c in d.choices]
        else:
            values = [d.typed(d.low), d.typed(d.high)]
        options.append([(d.key, v) for v in values])
    if WARMUP_KEY in space.keys():
        schedules = [str(v) for o in options for k, v in o if k == "schedule"] or \
            [str(base.get("schedule", TrainConfig().schedule))]
        for text in schedules:
            phases = parse_schedule(text).phases
            if phases and str(phases[0]).startswith("warmup("):
                raise LrlabError(f"--space warmup: schedule {text!r} already starts with a "
                                 "warmup; drop it from the schedule or drop the warmup key")
    if math.prod(len(o) for o in options) <= 64:  # few: every combination
        for combo in itertools.product(*options):
            _check_run(space, base, dict(combo))
        return
    # many: each value against the base, then the all-first and all-last combinations,
    # where interactions (a long warmup with few epochs) show
    for d_opts in options:
        for key, value in d_opts:
            _check_run(space, base, {key: value})
    for pick in (0, -1):
        _check_run(space, base, {o[pick][0]: o[pick][1] for o in options})


def _check_run(space: SearchSpace, base: dict[str, Any], settings: dict[str, Any]) -> None:
    data = space.apply(base, settings)
    shown = ", ".join(f"{k}={v}" for k, v in settings.items())
    try:
        config = config_from_dict(data, "--space")
        config.validate()
        _check_fits(config)
    except LrlabError as exc:
        raise LrlabError(f"--space {shown}: {str(exc).removeprefix('--space: ')}") from None


#: updates per epoch assumed when checking that a schedule fits the epochs (the data is not
#: loaded to check a space): durations in epochs and % are exact, plain update counts are
#: checked again when the trial starts
_CHECK_UPDATES_PER_EPOCH = 1000


def _check_fits(config: TrainConfig) -> None:
    """The schedule's phases fit in the run's epochs (SpecError otherwise)."""
    per_epoch = _CHECK_UPDATES_PER_EPOCH
    beta2 = config.betas[1] if config.betas else 0.999
    lr = config.lr if isinstance(config.lr, float) else 1.0
    if config.per == "step":
        ctx = Context(total_steps=config.epochs * per_epoch, steps_per_epoch=per_epoch,
                      beta2=beta2, peak_lr=lr)
    else:
        ctx = Context(total_steps=config.epochs, steps_per_epoch=1, beta2=beta2, peak_lr=lr,
                      updates_per_step=per_epoch)
    try:
        parse_schedule(config.schedule).resolve(ctx)
    except LrlabError as exc:
        if "longer than training" in str(exc):  # its update counts are the assumed ones
            raise LrlabError(f"schedule {config.schedule!r} is longer than the "
                             f"{config.epochs} epochs of training") from None
        raise
