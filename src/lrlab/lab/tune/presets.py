"""The studies of ``lrlab tune --preset NAME``, as data.

A :class:`TunePreset` is a base configuration (TrainConfig keys), a search space (the
strings of ``--space``), a budget, and the ``default``: the settings the tuned winner is
retrained beside on fresh seeds, so "what does tuning buy?" has a measured answer.

The book/course presets compare schedule *families* at an equal budget (Sivaprasad et al.
2020: a comparison of methods is only fair when each gets the same tuning budget): the
family is a choice balanced over the trials (``balance="schedule"``), and each family's LR
is searched on a log scale by TPE. They do not prune: a median pruner judges a trial on its
intermediate validation accuracy, and a schedule that decays late (cosine, multi-step) is
behind a constant LR until its decay, so pruning would starve exactly the families being
compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lrlab.errors import LrlabError
from lrlab.lab.compare.presets import LRLAB_RECIPE_QUICKSTART

__all__ = ["TunePreset", "TUNE_PRESETS", "get_tune_preset"]


@dataclass(frozen=True)
class TunePreset:
    name: str
    title: str
    description: str
    base: dict[str, Any]
    space: dict[str, Any]
    trials: int
    default: dict[str, Any]
    balance: str | None = None
    pruner: str = "median"
    final_seeds: int = 3
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a tune TOML file would hold them."""
        return {**self.base, "title": self.title, "space": dict(self.space),
                "trials": self.trials, "default": dict(self.default),
                "balance": self.balance, "pruner": self.pruner,
                "final_seeds": self.final_seeds, "notes": list(self.notes)}


#: D2L 12.11's schedules, as its text describes them (see presets._D2L_ROWS), with the LR
#: left to the search; multiplier-only so that the peak LR scales them all.
_D2L_SCHEDULES = ["constant()", "rsqrt()", "factor(0.9)", "multistep([15, 30], gamma=0.5)",
                  "cosine(steps=20, end=0.033)", "warmup(5) >> cosine(steps=15, end=0.033)"]
#: The unit-6 course's schedulers (see presets._UNIT6_ROWS).
_UNIT6_SCHEDULES = ["constant()", "factor(0.5, every=10)",
                    "constant() * plateau(factor=0.1, patience=5)", "cosine()",
                    "warmup(25%, start=0) >> cosine()"]

TUNE_PRESETS: dict[str, TunePreset] = {p.name: p for p in (
    TunePreset(
        name="quickstart",
        title="Tuning AdamW's LR, weight decay and warmup on LeNet / Fashion-MNIST (3 epochs)",
        description="12 TPE trials of 3 LeNet epochs over lr, weight decay and a warmup "
        "length in front of a cosine, then the winner and the quickstart recipe on 2 fresh "
        "seeds each. About 4 minutes on 2 cores.",
        base={"dataset": "fashion-mnist", "model": "lenet", **LRLAB_RECIPE_QUICKSTART,
              "schedule": "cosine()", "epochs": 3},
        space={"lr": "log(1e-3, 1e-1)", "weight_decay": "log(1e-3, 1)",
               "warmup": "int(0, 2)ep"},
        trials=12, default={"schedule": LRLAB_RECIPE_QUICKSTART["schedule"]},
        final_seeds=2,
        notes=("The default is the lab's quickstart recipe (AdamW lr 0.01, wd 0.05, "
               "warmup(1ep) >> cosine()) on the same 3 epochs.",),
    ),
    TunePreset(
        name="d2l",
        title="What does tuning buy over D2L 12.11's schedules? (LeNet, SGD, 30 epochs)",
        description="D2L's six schedules (constant, square root, factor, multi-step, cosine, "
        "warmup + cosine) on its LeNet / Fashion-MNIST / SGD / batch 256 / 30-epoch budget, "
        "each given 5 TPE trials of the peak LR on log(0.01, 3); the winner vs the book's "
        "cosine row (LR 0.3) on 3 fresh seeds.",
        base={"dataset": "fashion-mnist", "model": "lenet", "optimizer": "sgd",
              "batch_size": 256, "per": "epoch", "pixels": "unit", "epochs": 30},
        space={"schedule": _D2L_SCHEDULES, "lr": "log(0.01, 3)"},
        trials=30, balance="schedule", pruner="none",
        default={"schedule": "cosine(steps=20, end=0.033)", "lr": 0.3},
        notes=("The book's cosine row (0.3 → 0.01 over 20 epochs, written end=0.033 so the "
               "tuned LR scales the floor too) is the default; unlike the d2l-schedules "
               "preset, every run here trains on 50,000 images and keeps 10,000 for "
               "validation, because the search chooses on them.",
               "factor(0.9) is the book's FactorScheduler without its absolute floor (0.01), "
               "so that the floor scales with the searched LR.",),
    ),
    TunePreset(
        name="unit6",
        title="What does tuning buy over unit 6's schedulers? (MLP 100-100-50-2, SGD, 100 "
        "epochs)",
        description="The course's five schedulers (none, step, plateau, cosine, warmup + "
        "cosine) on the unit-6 MLP / batch 32 / 100 epochs, each given 6 TPE trials of the "
        "SGD LR on log(0.003, 1); the winner vs the course's best row (plateau, LR 0.1) on "
        "3 fresh seeds.",
        base={"dataset": "classification", "model": "mlp", "optimizer": "sgd",
              "batch_size": 32, "per": "epoch", "epochs": 100},
        space={"schedule": _UNIT6_SCHEDULES, "lr": "log(0.003, 1)"},
        trials=30, balance="schedule", pruner="none",
        default={"schedule": "constant() * plateau(factor=0.1, patience=5)", "lr": 0.1},
        notes=("The course's split is kept (14,400 train / 1,600 validation / 4,000 test); "
               "the search reads the 1,600, the final comparison reports the 4,000.",),
    ),
)}


def get_tune_preset(name: str) -> TunePreset:
    if name not in TUNE_PRESETS:
        raise LrlabError(f"unknown tuning preset {name!r}; presets: {', '.join(TUNE_PRESETS)}")
    return TUNE_PRESETS[name]
