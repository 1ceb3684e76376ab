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
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TrainConfig", "load_toml", "config_from_dict", "config_of_run", "TABULAR_DATASETS"]

TABULAR_DATASETS = ("classification", "blobs")

# Fields that only change how a run is executed or shown, not its numbers.
_EXECUTION_FIELDS = {"out", "name", "device", "quiet", "threads", "compile", "data_dir",
                     "update_ratio", "eval_batch_size"}


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    ``lr`` may be the string ``"auto"``: an LR range test picks it before training.
    ``model=None`` picks ``lenet`` for image datasets and ``mlp`` for tabular ones.
    ``hidden`` is the MLP's hidden sizes as ``"100-50"`` (None: the dataset's default).
    ``per`` steps the schedule per update (``"step"``) or per epoch (``"epoch"``).
    ``no_decay``/``lr_mult``/``layer_decay``: param groups (see ``lrlab.optim.param_groups``):
    name patterns without weight decay, per-pattern LR multipliers, layer-wise LR decay.
    ``pixels``: image preprocessing, ``standard`` (standardised) or ``unit`` (pixels/255
    only, as D2L feeds them).
    ``channels_last``: True/False, or None to decide by device and model.
    ``scale_lr``/``ref_batch``: scale ``lr`` from ``ref_batch`` to the global batch
    (``batch_size`` × world size × ``accumulate``) with the linear or sqrt rule.
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
    pixels: str = "standard"
    amp: str = "auto"
    channels_last: bool | None = None
    # execution only
    out: str = "runs"
    name: str | None = None
    device: str = "auto"
    compile: bool = False
    threads: int | None = None
    data_dir: str | None = None
    update_ratio: bool = False
    eval_batch_size: int = 2048
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_model(self) -> str:
        if self.model:
            return self.model
        return "mlp" if self.dataset in TABULAR_DATASETS else "lenet"

    def use_channels_last(self, device_type: str) -> bool:
        """channels-last memory format: None (auto) turns it on for the conv model on the CPU,
        where it measured 1.09x faster for LeNet (benchmarks/train_throughput.py)."""
        if self.channels_last is not None:
            return bool(self.channels_last)
        return device_type == "cpu" and self.resolved_model() == "lenet"

    def validate(self) -> TrainConfig:
        """Check every field; raise LrlabError naming the first bad one."""
        def bad(name: str, why: str) -> LrlabError:
            return LrlabError(f"{name.replace('_', '-')}: {why}")

        if isinstance(self.lr, str):
            if self.lr != "auto":
                try:
                    self.lr = float(self.lr)
                except ValueError:
                    raise bad("lr", f"expected a number or 'auto', got {self.lr!r}") from None
        if not isinstance(self.lr, str) and (not math.isfinite(self.lr) or self.lr <= 0):
            raise bad("lr", f"must be a positive finite number, got {self.lr}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", f"must be >= 0, got {self.weight_decay}")
        for name in ("epochs", "batch_size", "accumulate", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(name, f"must be a positive integer, got {value!r}")
        for name in ("limit", "ref_batch", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise bad(name, f"must be a positive integer, got {value!r}")
        if self.betas is not None:
            if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
                raise bad("betas", f"must be two numbers in [0, 1), got {self.betas}")
            self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise bad("momentum", f"must be in [0, 1), got {self.momentum}")
        if self.eps is not None and not self.eps > 0:
            raise bad("eps", f"must be > 0, got {self.eps}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise bad("layer_decay", f"must be in (0, 1], got {self.layer_decay}")
        for pattern, mult in dict(self.lr_mult).items():
            if not isinstance(mult, (int, float)) or not math.isfinite(mult) or mult < 0:
                raise bad("lr_mult", f"{pattern}: multiplier must be a number >= 0, got {mult!r}")
        if self.per not in ("step", "epoch"):
            raise bad("per", f"must be 'step' or 'epoch', got {self.per!r}")
        if self.pixels not in ("standard", "unit"):
            raise bad("pixels", f"must be standard or unit, got {self.pixels!r}")
        if self.amp not in ("auto", "bf16", "off"):
            raise bad("amp", f"must be auto, bf16 or off, got {self.amp!r}")
        if self.scale_lr not in ("none", "linear", "sqrt"):
            raise bad("scale_lr", f"must be none, linear or sqrt, got {self.scale_lr!r}")
        if self.scale_lr != "none" and self.ref_batch is None:
            raise bad("ref_batch", "--scale-lr needs --ref-batch (the batch the LR was tuned for)")
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9._+=-]+", self.name):
            raise bad("name", f"use letters, digits and . _ + = - only, got {self.name!r}")
        return self

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
        return {k: v for k, v in d.items() if k not in _EXECUTION_FIELDS}

    def fingerprint(self) -> str:
        blob = json.dumps(self.result_fields(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    def run_name(self) -> str:
        if self.name:
            return self.name
        return f"{self.dataset}-{self.resolved_model()}-{self.optimizer}-{self.fingerprint()}"

    def run_dir(self) -> Path:
        return Path(self.out) / self.run_name()


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
        if name == "betas" and value is not None:
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise LrlabError(f"{source}: betas must be a list of two numbers, got {value!r}")
            value = (float(value[0]), float(value[1]))
        kwargs[name] = value
    try:
        return TrainConfig(**kwargs).validate()
    except TypeError as exc:
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


def config_of_run(run_dir: str | Path) -> TrainConfig:
    """The TrainConfig stored in a run directory's ``config.json`` (for ``--resume DIR``)."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise LrlabError(f"{run_dir} is not a run directory (no config.json)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LrlabError(f"{path}: corrupt JSON ({exc})") from None
    known = {k: v for k, v in data.items() if k in _FIELDS}
    known["out"] = str(run_dir.parent)
    known["name"] = run_dir.name
    return config_from_dict(known, source=str(path))
