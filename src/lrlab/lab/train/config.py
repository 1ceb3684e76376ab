"""The configuration of one training run: a dataclass, TOML loading and validation.

A config is plain data: it is written to ``config.json`` in the run directory, it names the
run (a short hash of the fields that change the result), and ``lrlab train --config
FILE.toml`` loads it, flags overriding the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError, SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TrainConfig", "load_toml", "config_from_dict", "config_of_run", "TABULAR_DATASETS"]

TABULAR_DATASETS = ("classification", "blobs")
#: Token-sequence datasets: the transformer is their model (lrlab.lab.data.sequences).
SEQUENCE_DATASETS = ("modadd", "chars")
#: Fields added after runs were first named: left out of a run's name (its hash) while
#: unset (None), so every run named before them keeps its name.
_LATER_FIELDS = ("norm", "depth", "width", "heads", "context")
#: Largest transformer sizes accepted (typo guards, far beyond what a CPU lab trains).
MAX_DEPTH = 64
MAX_WIDTH = 4096
MAX_HEADS = 256

# Fields that only change how a run is executed or shown, not its numbers.
_EXECUTION_FIELDS = {"out", "name", "device", "quiet", "threads", "compile", "data_dir",
                     "update_ratio", "sharpness", "eval_batch_size"}


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    ``lr`` may be the string ``"auto"``: an LR range test picks it before training.
    ``model=None`` picks ``lenet`` for image datasets, ``mlp`` for tabular ones and
    ``transformer`` for token sequences (``modadd``, ``chars``).
    ``hidden`` is the MLP's hidden sizes as ``"100-50"`` (None: the dataset's default).
    ``per`` steps the schedule per update (``"step"``) or per epoch (``"epoch"``).
    ``no_decay``/``lr_mult``/``layer_decay``: param groups (see ``lrlab.optim.param_groups``):
    name patterns without weight decay, per-pattern LR multipliers, layer-wise LR decay.
    ``val_size``: examples held out of the training set for validation (None: the
    dataset's default, 10,000 for Fashion-MNIST/MNIST; 0: no validation split). Whatever
    chooses (recipes, ``--lr auto``, a report's best row) reads the validation split.
    ``pixels``: image preprocessing, ``standard`` (standardised) or ``unit`` (pixels/255
    only, as D2L feeds them).
    ``channels_last``: True/False, or None to decide by device and model.
    ``scale_lr``/``ref_batch``: scale ``lr`` from ``ref_batch`` to the global batch
    (``batch_size`` × world size × ``accumulate``) with the linear or sqrt rule.
    ``norm``/``depth``/``width``/``heads``: the transformer's options (None: the defaults of
    ``lrlab.lab.models.transformer``); refused for the other models. ``context``: the window length
    of the ``chars`` dataset (None: 64), which is also the transformer's context; refused
    for every other dataset (``modadd`` sequences are 3 tokens).
    """

    dataset: str = "fashion-mnist"
    model: str | None = None
    hidden: str | None = None
    optimizer: str = "adamw"
    lr: float | str = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] | None = None
    momentum: float | None = None
    eps: float | None = None
    no_decay: list[str] = field(default_factory=list)
    lr_mult: dict[str, float] = field(default_factory=dict)
    layer_decay: float | None = None
    schedule: str = "constant()"
    per: str = "step"
    epochs: int = 10
    batch_size: int = 256
    accumulate: int = 1
    scale_lr: str = "none"
    ref_batch: int | None = None
    seed: int = 0
    limit: int | None = None
    val_size: int | None = None
    pixels: str = "standard"
    amp: str = "auto"
    channels_last: bool | None = None
    norm: str | None = None
    depth: int | None = None
    width: int | None = None
    heads: int | None = None
    context: int | None = None
    # execution only
    out: str = "runs"
    name: str | None = None
    device: str = "auto"
    compile: bool = False
    threads: int | None = None
    data_dir: str | None = None
    update_ratio: bool = False
    sharpness: int = 0  # measure the Hessian's top eigenvalue after every N-th epoch (0: off)
    eval_batch_size: int = 2048
    quiet: bool = False

    def resolved_model(self) -> str:
        if self.model:
            return self.model
        if self.dataset_key() in SEQUENCE_DATASETS:
            return "transformer"
        return "mlp" if self.dataset in TABULAR_DATASETS else "lenet"

    def dataset_key(self) -> str:
        """The dataset's name as runs compare it: case, ``_`` and ``-`` do not matter."""
        return str(self.dataset).strip().lower().replace("_", "-")

    def use_channels_last(self, device_type: str) -> bool:
        """channels-last memory format: None (auto) turns it on for the conv model on the CPU,
        where it measured 1.09x faster for LeNet (benchmarks/train_throughput.py)."""
        if self.channels_last is not None:
            return bool(self.channels_last)
        return device_type == "cpu" and self.resolved_model() == "lenet"

    def validate(self) -> TrainConfig:
        """Check and normalise every field; raise LrlabError naming the first bad one.

        The one typed validation layer of a run's settings: flags, TOML files, comparison
        plans and ``config.json`` all pass through it (see ``_CHECKS``).
        """
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                setattr(self, f.name, _CHECKS[f.name](value))
            except _Bad as exc:
                raise LrlabError(f"{f.name.replace('_', '-')}: {exc}") from None
        if self.scale_lr != "none" and self.ref_batch is None:
            raise LrlabError("ref-batch: --scale-lr needs --ref-batch (the batch the LR was "
                             "tuned for)")
        self._check_model_fits()
        return self

    def _check_model_fits(self) -> None:
        """The options that only some models/datasets take, and the model for the data: a
        setting that does not apply is refused (one line), never silently ignored."""
        model = self.resolved_model().strip().lower()
        sequences = self.dataset_key() in SEQUENCE_DATASETS
        for key in ("norm", "depth", "width", "heads"):
            if getattr(self, key) is not None and model != "transformer":
                raise LrlabError(f"{key}: applies to the transformer model only, not to "
                                 f"{model}")
        if self.context is not None and self.dataset_key() != "chars":
            raise LrlabError(f"context: sets the window length of the chars dataset only; "
                             f"{self.dataset} does not take it")
        if sequences and model != "transformer":
            raise LrlabError(f"model: dataset {self.dataset} is token sequences, which {model} "
                             "cannot read; use --model transformer")
        if model == "transformer" and not sequences:
            raise LrlabError(f"model: the transformer reads token sequences (modadd, chars), "
                             f"not {self.dataset}")
        if model == "transformer":
            from lrlab.lab.models.transformer import DEFAULT_HEADS, DEFAULT_WIDTH

            width = DEFAULT_WIDTH if self.width is None else self.width
            heads = DEFAULT_HEADS if self.heads is None else self.heads
            if width % heads:
                raise LrlabError(f"heads: width {width} is not divisible by {heads} heads "
                                 "(each head gets width/heads dimensions)")
            if self.channels_last:
                raise LrlabError("channels-last: applies to image models (lenet), not to the "
                                 "transformer")

    # -- identity --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["betas"] is not None:
            d["betas"] = list(d["betas"])
        return d

    def result_fields(self) -> dict[str, Any]:
        """The fields that change a run's numbers (what its name hashes)."""
        d = self.to_dict()
        d["model"] = self.resolved_model()
        return {k: v for k, v in d.items() if k not in _EXECUTION_FIELDS
                and not (k in _LATER_FIELDS and v is None)}

    def result_diff(self, stored: dict[str, Any]) -> list[str]:
        """The result fields whose value in ``stored`` (a run's config.json) differs from
        this config's: what forbids resuming that run with this config. A field the record
        does not hold (a record of an older lrlab) is not compared."""
        ours = self.result_fields()
        for key in _LATER_FIELDS:  # unset here but set in the record: a difference too
            ours.setdefault(key, None)
        return sorted(k for k, v in ours.items() if k in stored and stored[k] != v
                      and not (k == "model" and stored[k] is None))

    def fingerprint(self) -> str:
        blob = json.dumps(self.result_fields(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    def run_name(self) -> str:
        if self.name:
            return self.name
        return f"{self.dataset}-{self.resolved_model()}-{self.optimizer}-{self.fingerprint()}"

    def run_dir(self) -> Path:
        return Path(self.out) / self.run_name()


# -- the typed validation layer --------------------------------------------------------------
class _Bad(ValueError):
    """Why one value is refused (the caller prefixes the key)."""


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"expected a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise _Bad(f"expected a finite number, got {value!r}")
    return x


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(f"expected a whole number, got {value!r}")
    return int(value)


def _positive_int(value: Any) -> int:
    n = _whole(value)
    if n <= 0:
        raise _Bad(f"must be a positive whole number, got {n}")
    return n


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in options:
            raise _Bad(f"expected one of {', '.join(options)}, got {value!r}")
        return value
    return check


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"expected a non-empty string, got {value!r}")
    return value


def _in_range(lo: float, hi: float, lo_open: bool, hi_open: bool) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        x = _number(value)
        if (x < lo or (lo_open and x == lo)) or (x > hi or (hi_open and x == hi)):
            interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise _Bad(f"must be in {interval}, got {x:g}")
        return x
    return check


def _lr(value: Any) -> float | str:
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        raise _Bad(f"expected a number or 'auto', got {value!r}")
    x = _number(value)
    if x <= 0:
        raise _Bad(f"must be a positive finite number, got {x:g}")
    return x


def _non_negative(value: Any) -> float:
    x = _number(value)
    if x < 0:
        raise _Bad(f"must be >= 0, got {x:g}")
    return x


def _betas(value: Any) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) \
            or len(value) != 2:
        raise _Bad(f"expected two numbers in [0, 1), e.g. [0.9, 0.999], got {value!r}")
    check = _in_range(0.0, 1.0, False, True)
    return (check(value[0]), check(value[1]))


def _patterns(value: Any) -> list[str]:
    if isinstance(value, str):  # one pattern, never its letters
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise _Bad(f"expected a list of name patterns, got {value!r}")
    return list(value)


def _lr_mult(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise _Bad(f"expected a table of PATTERN = MULT, got {value!r}")
    out = {}
    for pattern, mult in value.items():
        if not isinstance(pattern, str) or not pattern:
            raise _Bad(f"pattern must be a non-empty string, got {pattern!r}")
        try:
            out[pattern] = _non_negative(mult)
        except _Bad as exc:
            raise _Bad(f"{pattern}: multiplier {exc}") from None
    return out


def _schedule(value: Any) -> str:
    from lrlab.schedules import parse

    if not isinstance(value, str):
        raise _Bad(f"expected a schedule spec string, got {value!r}")
    try:
        parse(value)
    except SpecError as exc:
        raise _Bad(str(exc)) from None
    return value


def _dataset(value: Any) -> str:
    from lrlab.lab.data.datasets import DATASETS

    if not isinstance(value, str) or value.strip().lower().replace("_", "-") not in \
            (*DATASETS, "fashionmnist"):
        raise _Bad(f"unknown dataset {value!r}; valid names: {', '.join(DATASETS)}")
    return value


def _model(value: Any) -> str:
    from lrlab.lab.models.zoo import MODELS

    if not isinstance(value, str) or value.strip().lower() not in MODELS:
        raise _Bad(f"unknown model {value!r}; valid models: {', '.join(MODELS)}")
    return value


#: Largest number of weights the hidden layers of an MLP may ask for (a typo guard).
MAX_HIDDEN_WEIGHTS = 1_000_000_000


def _hidden(value: Any) -> str:
    from lrlab.lab.models.zoo import parse_hidden

    if not isinstance(value, str):
        raise _Bad(f"expected widths joined by '-', e.g. '100-50', got {value!r}")
    try:
        sizes = parse_hidden(value)
    except LrlabError as exc:
        raise _Bad(str(exc)) from None
    weights = sum(a * b for a, b in zip(sizes, sizes[1:])) + max(sizes)
    if weights > MAX_HIDDEN_WEIGHTS:
        raise _Bad(f"{value!r} asks for at least {weights:,} weights (more than "
                   f"{MAX_HIDDEN_WEIGHTS:,}); check the widths")
    return value


def _optimizer(value: Any) -> str:
    from lrlab.optim.build import OPTIMIZERS

    if not isinstance(value, str) or value.strip().lower() not in OPTIMIZERS:
        raise _Bad(f"unknown optimizer {value!r}; valid names: {', '.join(OPTIMIZERS)}")
    return value


#: numpy's seeds are 0 .. 2**32 - 1 (blobs' make_blobs and its split take the run's seed).
MAX_SEED = 2**32 - 1


def _seed(value: Any) -> int:
    n = _whole(value)
    if not 0 <= n <= MAX_SEED:
        raise _Bad(f"must be in 0 .. {MAX_SEED} (numpy's seed range), got {n}")
    return n


def _threads(value: Any) -> int:
    n = _positive_int(value)
    limit = max(64, 4 * (os.cpu_count() or 1))
    if n > limit:
        raise _Bad(f"{n} threads on a machine with {os.cpu_count()} CPUs; at most {limit}")
    return n


def _device(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
        raise _Bad(f"expected auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return value


def _name(value: Any) -> str:
    """One directory name inside ``out``: never a path (no separators, not . or ..)."""
    if not isinstance(value, str) or not value.strip() or value in (".", "..") \
            or any(c in value for c in "/\\\0") or value != value.strip():
        raise _Bad(f"expected one directory name (no '/', not '.' or '..', no leading or "
                   f"trailing spaces), got {value!r}")
    return value


def _up_to(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        n = _whole(value)
        if not low <= n <= high:
            raise _Bad(f"must be a whole number in {low} .. {high}, got {n}")
        return n
    return check


def _max_context() -> int:
    from lrlab.lab.data.sequences import MAX_CONTEXT

    return MAX_CONTEXT


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "dataset": _dataset,
    "model": _optional(_model),
    "hidden": _optional(_hidden),
    "optimizer": _optimizer,
    "lr": _lr,
    "weight_decay": _non_negative,
    "betas": _optional(_betas),
    "momentum": _optional(_in_range(0.0, 1.0, False, True)),
    "eps": _optional(_in_range(0.0, math.inf, True, True)),
    "no_decay": _patterns,
    "lr_mult": _lr_mult,
    "layer_decay": _optional(_in_range(0.0, 1.0, True, False)),
    "schedule": _schedule,
    "per": _choice("step", "epoch"),
    "epochs": _positive_int,
    "batch_size": _positive_int,
    "accumulate": _positive_int,
    "scale_lr": _choice("none", "linear", "sqrt"),
    "ref_batch": _optional(_positive_int),
    "seed": _seed,
    "limit": _optional(_positive_int),
    "val_size": _optional(lambda v: int(_non_negative(_whole(v)))),
    "pixels": _choice("standard", "unit"),
    "amp": _choice("auto", "bf16", "off"),
    "channels_last": _optional(_flag),
    "norm": _optional(_choice("pre", "post")),
    "depth": _optional(_up_to(1, MAX_DEPTH)),
    "width": _optional(_up_to(1, MAX_WIDTH)),
    "heads": _optional(_up_to(1, MAX_HEADS)),
    "context": _optional(lambda v: _up_to(2, _max_context())(v)),
    "out": _text,
    "name": _optional(_name),
    "device": _device,
    "compile": _flag,
    "threads": _optional(_threads),
    "data_dir": _optional(_text),
    "update_ratio": _flag,
    "sharpness": lambda v: int(_non_negative(_whole(v))),
    "eval_batch_size": _positive_int,
    "quiet": _flag,
}


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def config_from_dict(data: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a config from a mapping (TOML table or config.json); dashes allowed in keys."""
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            close = [n.replace("_", "-") for n in _FIELDS if n[:3] == name[:3]]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise LrlabError(f"{source}: unknown key {key!r}{hint}")
        kwargs[name] = value
    try:
        return TrainConfig(**kwargs).validate()
    except LrlabError as exc:
        raise LrlabError(f"{source}: {exc}") from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict, with one-line errors for a missing or malformed file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise LrlabError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LrlabError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise LrlabError(f"{path}: not a text file") from None


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LrlabError(f"{where}: {value!r} cannot be written to TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v, where)}"
                               for k, v in value.items()) + "}"
    raise LrlabError(f"{where}: {type(value).__name__} cannot be written to TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """TOML text for settings that :func:`load_toml` reads back equal: top-level values
    (None left out) and lists of tables (``[[run]]``) given as lists of dicts."""
    lines: list[str] = []
    tables: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value))
            continue
        lines.append(f"{key} = {_toml_value(value, key)}")
    for key, rows in tables:
        for row in rows:
            lines += ["", f"[[{key}]]"]
            lines += [f"{k} = {_toml_value(v, k)}" for k, v in row.items() if v is not None]
    return "\n".join(lines) + "\n"


def config_of_run(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig stored in a run directory's ``config.json`` (for ``--resume DIR``)."""
    given = Path(run_dir)
    run_dir = given.resolve()  # "." (cd RUN && --resume .) has no name until resolved
    path = run_dir / "config.json"
    if not path.is_file():
        raise LrlabError(f"{given} is not a run directory (no config.json)")
    from lrlab.lab.records import read_json

    data = read_json(path, dict)
    known = {k: v for k, v in data.items() if k in _FIELDS}
    known["out"] = str(run_dir.parent)
    known["name"] = run_dir.name  # the directory as it is named now, however it was renamed
    return config_from_dict(known, source=str(path))
