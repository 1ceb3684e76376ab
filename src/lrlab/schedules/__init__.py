"""Pure-math LR schedules: update index -> multiplier of the peak LR, and spec strings.

No torch here. ``parse("warmup(5%) >> cosine(end=0.01)")`` and the constructors
(``warmup("5%") >> cosine(end=0.01)``) build the same frozen, comparable objects;
``str(schedule)`` is the canonical spec and ``parse(str(s)) == s``. A schedule that needs
training facts (``%``, ``ep``, an open last cosine, ``warmup(auto)``, ``end_lr=``) is turned
into plain updates and multipliers by ``schedule.resolve(Context(...))``.

Modules: ``units`` (Duration, Context), ``args`` (argument declarations), ``chain``
(Schedule, Chain, resolution, evaluation), ``phase`` (phase base), ``phases`` (basic
phases), ``cyclic`` (restarts, wsd, onecycle), ``onplateau`` (Plateau, PlateauState),
``parse`` (spec parser).
"""

from lrlab.schedules.chain import Chain, Schedule
from lrlab.schedules.cyclic import Onecycle, Restarts, Wsd, onecycle, restarts, wsd
from lrlab.schedules.onplateau import Plateau, PlateauState, plateau
from lrlab.schedules.parse import PHASES, parse
from lrlab.schedules.phase import Phase
from lrlab.schedules.phases import (
    EXP_WARMUP_K,
    Constant,
    Cosine,
    Exp,
    Factor,
    Linear,
    Multistep,
    Poly,
    Rsqrt,
    Warmup,
    constant,
    cosine,
    exp,
    factor,
    linear,
    multistep,
    poly,
    rsqrt,
    warmup,
)
from lrlab.schedules.units import Context, Duration, untuned_warmup_steps

__all__ = [
    "EXP_WARMUP_K",
    "PHASES",
    "Chain",
    "Constant",
    "Context",
    "Cosine",
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
    "Restarts",
    "Rsqrt",
    "Schedule",
    "Warmup",
    "Wsd",
    "constant",
    "cosine",
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
