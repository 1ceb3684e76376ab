"""Build an optimizer by name: ``build_optimizer("adamw", model, lr=3e-4, weight_decay=0.05)``."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lrlab.errors import LrlabError
from lrlab.optim.groups import (
    LayerIdFn,
    name_patterns,
    number,
    param_groups,
    parameters_of,
    split_for_muon,
)
from lrlab.optim.lion import Lion
from lrlab.optim.muon import MUON_DEFAULTS, MuonAdamW
from lrlab.optim.teaching import AdamNoBias, NormalizedSGD


def _schedulefree(name: str) -> Callable[..., torch.optim.Optimizer]:
    """The class ``name`` of the authors' ``schedulefree`` package, imported when used."""
    def make(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        try:
            import schedulefree
        except ImportError:
            raise LrlabError("the Schedule-Free optimizers need the schedulefree package "
                             "(pip install 'schedulefree>=1.4')") from None
        return getattr(schedulefree, name)(*args, **kwargs)
    return make


def _prodigy(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
    try:
        from prodigyopt import Prodigy
    except ImportError:
        raise LrlabError("the prodigy optimizer needs the prodigyopt package "
                         "(pip install 'prodigyopt>=1.1')") from None
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line for weight decay > 0
        return Prodigy(*args, **kwargs)


@dataclass(frozen=True)
class OptimizerSpec:
    """How a name maps to a class: fixed settings, default and allowed hyper keywords."""

    cls: Callable[..., torch.optim.Optimizer]
    summary: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    allowed: tuple[str, ...] = ()
    #: ``"muon"``: the model's groups are split by :func:`split_for_muon`; ``"one-lr"``: all
    #: groups must share one LR (Prodigy estimates one step size for all of them).
    groups: str = ""


_SCHEDULEFREE = ("warmup_steps", "r", "weight_lr_power", "foreach")
_ADAM = ("betas", "eps", "maximize", "foreach", "fused")
_SPECS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(torch.optim.SGD, "plain SGD: p -= lr*g (torch.optim.SGD)",
                         allowed=("momentum", "dampening", "maximize", "foreach")),
    "momentum": OptimizerSpec(torch.optim.SGD, "SGD with heavy-ball momentum 0.9 "
                              "(torch.optim.SGD)", defaults={"momentum": 0.9},
                              allowed=("momentum", "dampening", "maximize", "foreach")),
    "nesterov": OptimizerSpec(torch.optim.SGD, "SGD with Nesterov momentum 0.9 "
                              "(torch.optim.SGD)", fixed={"nesterov": True},
                              defaults={"momentum": 0.9},
                              allowed=("momentum", "maximize", "foreach")),
    "rmsprop": OptimizerSpec(torch.optim.RMSprop, "RMSProp: g/sqrt(EMA of g^2), alpha=0.99 "
                             "(torch.optim.RMSprop)",
                             allowed=("alpha", "eps", "momentum", "centered", "maximize",
                                      "foreach")),
    "adam": OptimizerSpec(torch.optim.Adam, "Adam with bias correction, L2 weight decay "
                          "coupled into the gradient (torch.optim.Adam)", allowed=_ADAM),
    "adamw": OptimizerSpec(torch.optim.AdamW, "AdamW: Adam with decoupled weight decay "
                           "(torch.optim.AdamW)", allowed=_ADAM),
    "amsgrad": OptimizerSpec(torch.optim.Adam, "AMSGrad: Adam with a running max of v "
                             "(torch.optim.Adam, amsgrad=True)", fixed={"amsgrad": True},
                             allowed=_ADAM),
    "lion": OptimizerSpec(Lion, "Lion: sign of interpolated momentum, decoupled weight decay; "
                          "use ~3-10x smaller lr than AdamW (lrlab.optim.Lion)",
                          allowed=("betas", "maximize", "impl")),
    "adam-nobias": OptimizerSpec(AdamNoBias, "Adam without bias correction, to show why it "
                                 "matters (lrlab.optim.AdamNoBias)", allowed=("betas", "eps")),
    "nsgd": OptimizerSpec(NormalizedSGD, "normalised SGD: steps along g/||g|| per tensor with "
                          "momentum 0.9 (lrlab.optim.NormalizedSGD)",
                          allowed=("momentum", "eps")),
    "adamw-schedulefree": OptimizerSpec(
        _schedulefree("AdamWScheduleFree"), "Schedule-Free AdamW (Defazio et al. 2024): "
        "interpolates between an SGD-like point and its average, no decay schedule needed; "
        "needs train()/eval() (schedulefree.AdamWScheduleFree)",
        allowed=("betas", "eps", *_SCHEDULEFREE)),
    "sgd-schedulefree": OptimizerSpec(
        _schedulefree("SGDScheduleFree"), "Schedule-Free SGD (Defazio et al. 2024), momentum "
        "0.9 as interpolation; needs train()/eval() (schedulefree.SGDScheduleFree)",
        allowed=("momentum", *_SCHEDULEFREE)),
    "muon": OptimizerSpec(
        MuonAdamW, "Muon (Jordan et al. 2024) on the hidden Linear weights, AdamW on "
        "embeddings, biases, norms, conv kernels and the output layer; one LR for both "
        "(adjust_lr_fn=match_rms_adamw) (torch.optim.Muon + torch.optim.AdamW)",
        defaults=MUON_DEFAULTS,
        allowed=("momentum", "nesterov", "ns_coefficients", "ns_steps", "adjust_lr_fn",
                 "muon_eps", "betas", "eps"), groups="muon"),
    "prodigy": OptimizerSpec(
        _prodigy, "Prodigy (Mishchenko & Defazio 2024): Adam whose step size D is "
        "estimated; lr is a multiplier of D, default 1 (prodigyopt.Prodigy)",
        allowed=("betas", "beta3", "eps", "d0", "d_coef", "growth_rate", "decouple",
                 "use_bias_correction", "safeguard_warmup", "slice_p"), groups="one-lr"),
}

OPTIMIZERS: tuple[str, ...] = tuple(_SPECS)
#: The optimizers with train()/eval() modes, whose own averaging replaces a decay schedule.
SCHEDULE_FREE: tuple[str, ...] = ("adamw-schedulefree", "sgd-schedulefree")


def _spec(name: str) -> OptimizerSpec:
    key = str(name).strip().lower()
    if key not in _SPECS:
        raise LrlabError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}")
    return _SPECS[key]


# Types of the optimizers' own keywords, checked before the class sees them (torch's own
# checks would compare a string with '<=' and answer with a TypeError naming nothing).
_NUMBERS: tuple[str, ...] = ("momentum", "dampening", "alpha", "eps", "r", "weight_lr_power")
_POSITIVE: tuple[str, ...] = ("d0", "d_coef", "muon_eps")
_FLAGS: tuple[str, ...] = ("maximize", "centered", "nesterov", "decouple",
                           "use_bias_correction", "safeguard_warmup")
_FLAGS_OR_NONE: tuple[str, ...] = ("foreach", "fused")
#: whole-number keywords and their least value (Muon's Newton-Schulz steps: at most 99)
_WHOLE: dict[str, int] = {"warmup_steps": 0, "ns_steps": 1, "slice_p": 1}
_ADJUST_LR = (None, "original", "match_rms_adamw")


def _betas(value: Any) -> tuple[float, float]:
    if isinstance(value, str) or not isinstance(value, tuple | list) or len(value) != 2:
        raise LrlabError(f"betas must be a pair (beta1, beta2) of numbers in [0, 1), "
                         f"got {value!r}")
    b1, b2 = (number(f"betas[{i}]", b, high=1.0, high_open=True) for i, b in enumerate(value))
    return b1, b2


def _checked_hyper(hyper: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in hyper.items():
        if k == "betas":
            out[k] = _betas(v)
        elif k in _NUMBERS:
            out[k] = number(k, v)
        elif k in _FLAGS and not isinstance(v, bool):
            raise LrlabError(f"{k} must be True or False, got {v!r}")
        elif k in _FLAGS_OR_NONE and not (v is None or isinstance(v, bool)):
            raise LrlabError(f"{k} must be True, False or None, got {v!r}")
        elif k == "impl" and not isinstance(v, str):
            raise LrlabError(f"impl must be a string, got {v!r}")
        elif k in _POSITIVE:
            out[k] = number(k, v, low_open=True)
        elif k in _WHOLE:
            if isinstance(v, bool) or not isinstance(v, int) or v < _WHOLE[k] or \
                    (k == "ns_steps" and v > 99):
                most = " and <= 99" if k == "ns_steps" else ""
                raise LrlabError(f"{k} must be a whole number >= {_WHOLE[k]}{most}, got {v!r}")
            out[k] = v
        elif k == "beta3":
            out[k] = None if v is None else number(k, v, high=1.0, high_open=True)
        elif k == "growth_rate":
            if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v) or v < 1:
                raise LrlabError(f"growth_rate must be a number >= 1 (inf: unbounded), got "
                                 f"{v!r}")
            out[k] = float(v)
        elif k == "ns_coefficients":
            if isinstance(v, str) or not isinstance(v, tuple | list) or len(v) != 3:
                raise LrlabError(f"ns_coefficients must be three numbers (a, b, c), got {v!r}")
            out[k] = tuple(number(f"ns_coefficients[{i}]", c, low=None) for i, c in enumerate(v))
        elif k == "adjust_lr_fn":
            if v not in _ADJUST_LR:
                raise LrlabError(f"adjust_lr_fn must be 'match_rms_adamw', 'original' or None, "
                                 f"got {v!r}")
            out[k] = v
        else:
            out[k] = v
    return out


def build_optimizer(name: str, model_or_params: nn.Module | Iterable[Any], lr: float,
                    weight_decay: float = 0.0, *, no_decay: Iterable[str] | str = (),
                    lr_mult: Mapping[str, float] | None = None,
                    layer_decay: float | None = None, layer_id_fn: LayerIdFn | None = None,
                    **hyper: Any) -> torch.optim.Optimizer:
    """Construct optimizer ``name`` (one of :data:`OPTIMIZERS`).

    A model is split by :func:`lrlab.optim.param_groups` (no decay on biases, norms, 1-D
    params and ``model.no_weight_decay()``; ``no_decay``, ``lr_mult``, ``layer_decay`` and
    ``layer_id_fn`` as there); an iterable of parameters or of group dicts is passed through
    with ``weight_decay`` as the default. Every group carries ``initial_lr`` (its peak LR).
    ``hyper`` holds the optimizer's own keywords (``betas``, ``momentum``, ``eps``,
    ``alpha``, ...).

    The newer names: ``adamw-schedulefree``/``sgd-schedulefree`` (the ``schedulefree``
    package; call ``optimizer.train()`` before stepping and ``optimizer.eval()`` before
    evaluating or saving, see :mod:`lrlab.optim.modes`; their own warmup is
    ``warmup_steps``), ``muon`` (:class:`lrlab.optim.muon.MuonAdamW` over the groups split by
    :func:`lrlab.optim.groups.split_for_muon`; ``momentum``/``nesterov``/``ns_*``/
    ``adjust_lr_fn`` are Muon's, ``betas``/``eps`` AdamW's), ``prodigy`` (``lr`` multiplies
    its estimated step size: 1.0 is the default; all groups must share one ``lr``).

    Every argument is checked before anything is built: ``lr`` and ``weight_decay`` are
    finite numbers >= 0 (not strings, bools or tensors), ``betas`` a pair in [0, 1),
    ``no_decay`` one pattern or a list of them, ``lr_mult`` a mapping to numbers >= 0,
    ``layer_decay`` a number in (0, 1].

    Raises:
        LrlabError: an unknown name, a keyword the optimizer does not take, a value of the
            wrong type or out of range; one line naming the argument.
    """
    spec = _spec(name)
    key = str(name).strip().lower()
    bad = sorted(k for k in hyper if k not in spec.allowed)
    if bad:
        valid = ", ".join(spec.allowed) or "none"
        raise LrlabError(f"optimizer {key!r} does not take {', '.join(map(repr, bad))}; "
                         f"valid keywords: {valid}")
    try:
        lr_f = number("lr", lr)
        wd_f = number("weight_decay", weight_decay)
        patterns = name_patterns("no_decay", no_decay)
        hyper = _checked_hyper(hyper)
    except LrlabError as e:
        raise LrlabError(f"optimizer {key!r}: {e}") from None

    if isinstance(model_or_params, nn.Module):
        try:
            params: list[Any] = param_groups(model_or_params, wd_f, lr=lr_f,
                                             no_decay=patterns, lr_mult=lr_mult,
                                             layer_decay=layer_decay, layer_id_fn=layer_id_fn)
        except LrlabError as e:
            raise LrlabError(f"optimizer {key!r}: {e}") from None
    else:
        if lr_mult or layer_decay is not None or layer_id_fn is not None or patterns:
            raise LrlabError("no_decay, lr_mult, layer_decay and layer_id_fn need a model, "
                             "not parameters")
        params = parameters_of(model_or_params)
        if params and isinstance(params[0], dict):
            params = [dict(g) for g in params]
            for g in params:
                g.setdefault("lr", lr_f)
                g.setdefault("initial_lr", g["lr"])
    if not params:
        raise LrlabError(f"optimizer {key!r} got no parameters to optimise")
    if spec.groups == "muon":
        if isinstance(model_or_params, nn.Module):
            params = split_for_muon(model_or_params, params)
        elif not all(isinstance(g, dict) and isinstance(g.get("use_muon"), bool)
                     for g in params):
            raise LrlabError("optimizer 'muon' needs a model (to tell the hidden weights from "
                             "the head, embeddings and biases) or param groups flagged "
                             "use_muon=True/False")
    elif spec.groups == "one-lr" and isinstance(params[0], dict):
        lrs = {float(g["lr"]) for g in params}
        if len(lrs) > 1:
            raise LrlabError(f"optimizer {key!r} estimates one step size for all param "
                             f"groups: they must share one lr (no lr_mult or layer_decay), "
                             f"got {', '.join(f'{x:g}' for x in sorted(lrs))}")
    kwargs = {**spec.defaults, **hyper, **spec.fixed, "lr": lr_f, "weight_decay": wd_f}
    try:
        opt = spec.cls(params, **kwargs)
    except LrlabError:
        raise
    except (ValueError, TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LrlabError(f"optimizer {key!r}: {first}") from None
    for g in opt.param_groups:
        g.setdefault("initial_lr", g["lr"])
    return opt
