"""Pure-math LR schedules: update index -> multiplier of the peak LR, and spec strings.

No torch here. ``parse("warmup(5%) >> cosine(end=0.01)")`` and the constructors
(``warmup("5%") >> cosine(end=0.01)``) build the same frozen, comparable objects;
``str(schedule)`` is the canonical spec and ``parse(str(s)) == s``. A schedule that needs
training facts (``%``, ``ep``, an open last cosine, ``warmup(auto)``, ``end_lr=``) is turned
into plain updates and multipliers by ``schedule.resolve(Context(...))``.

The constructors are the phase classes themselves (``cosine is Cosine``): a phase's
arguments are its dataclass fields, declared once (see ``args``).

Modules, bottom up: ``units`` (Duration, Context, numbers), ``args`` (how an argument is
declared, checked, printed and resolved), ``onplateau`` (Plateau, PlateauState),
``schedule`` (Schedule, Chain: resolution and evaluation), ``product`` (Product: ``a * b``),
``base`` (Phase),
``warmups`` (warmup, untuned_warmup_steps), ``decays`` (constant, linear, cosine, poly,
rsqrt, exp, factor, multistep, wsd, onecycle), ``warm_restarts`` (restarts),
``cyclical`` (cyclic),
``parser`` (parse, PHASES).
"""

from lrlab.schedules.base import Phase
from lrlab.schedules.cyclical import Cyclic, cyclic
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
    constant,
    cosine,
    exp,
    factor,
    linear,
    multistep,
    onecycle,
    poly,
    rsqrt,
    wsd,
)
from lrlab.schedules.onplateau import Plateau, PlateauState, plateau
from lrlab.schedules.parser import PHASES, parse
from lrlab.schedules.product import Product
from lrlab.schedules.schedule import Chain, Schedule
from lrlab.schedules.units import Context, Duration
from lrlab.schedules.warm_restarts import Restarts, restarts
from lrlab.schedules.warmups import EXP_WARMUP_K, Warmup, untuned_warmup_steps, warmup

__all__ = [
    "EXP_WARMUP_K",
    "PHASES",
    "Chain",
    "Constant",
    "Context",
    "Cosine",
    "Cyclic",
    "Duration",
    "Exp",
    "Factor",
    "Linear",
    "Multistep",
    "Onecycle",
    "Phase",
    "Plateau",
    "PlateauState",
    "Poly",
    "Product",
    "Restarts",
    "Rsqrt",
    "Schedule",
    "Warmup",
    "Wsd",
    "constant",
    "cosine",
    "cyclic",
    "exp",
    "factor",
    "linear",
    "multistep",
    "onecycle",
    "parse",
    "plateau",
    "poly",
    "restarts",
    "rsqrt",
    "untuned_warmup_steps",
    "warmup",
    "wsd",
]
