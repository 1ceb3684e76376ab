"""The health rules of a run: when it has diverged, collapsed, or is not learning.

Pure functions of the numbers a run produces (no torch, no records); :class:`RunSession`
(``lrlab.lab.train.session``) applies them after every update and every epoch and records
what they find.

A run stops as ``diverged``, recorded with the cause, epoch, update and LR
(:class:`lrlab.lab.records.Divergence`), on:

- ``nonfinite``: a NaN/inf training loss (:func:`exploded`);
- ``explosion``: a training loss above ``EXPLODE_FACTOR`` (1000) × the first update's; it has
  not reached inf yet (:func:`exploded`);
- ``nonfinite-eval``: a NaN/inf loss when evaluating: the last updates blew the weights up
  (:func:`nonfinite_eval`);
- ``collapse``: a run that had learned (an epoch's train loss below ``LEARNED`` × the chance
  loss: :func:`learned`) whose epoch train loss is back at chance level or above
  (>= ``CHANCE`` × the chance loss: :func:`collapsed`): it learned, then blew up. The update
  recorded is the first one where an exponential average of the update losses (weight
  ``HEALTH_EMA``, kept by :class:`Health`) crossed chance level since it was last well below.

A run whose train loss is still within 3% of the chance loss (``CHANCE``) with chance-level
accuracy (at most 1.5× the chance accuracy) after two or more epochs, and never learned, is
``not-learning`` (:func:`stuck`). The chance loss is ln(classes) and the chance accuracy
1/classes for the balanced image and tabular datasets; a sequence dataset has its own
(``Dataset.chance_loss``/``chance_acc``: the unigram entropy of its training targets and the
frequency of the commonest one), since a character model that only learned letter
frequencies sits far below ln(vocabulary).

``update_ratio`` rows hold ‖Δw‖/‖w‖ per parameter tensor at the last update of an epoch; a
ratio of ``LARGE_UPDATE_RATIO`` (a step half as large as the weights) or more is worth a
warning (:func:`large_updates`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EXPLODE_FACTOR", "LARGE_UPDATE_RATIO", "LEARNED", "CHANCE", "HEALTH_EMA", "Health",
           "exploded", "learned", "at_chance", "collapsed", "stuck", "nonfinite_eval",
           "large_updates"]

#: an update loss above EXPLODE_FACTOR × the first update's loss is an explosion
EXPLODE_FACTOR = 1000.0
#: an update at least this large relative to its weights (‖Δw‖/‖w‖) is warned about
LARGE_UPDATE_RATIO = 0.5
#: an epoch train loss below LEARNED × the chance loss means the run has learned something
LEARNED = 0.8
#: an epoch train loss at or above CHANCE × the chance loss is chance level (or worse)
CHANCE = 0.97
#: weight of the newest update loss in the average that dates a collapse
HEALTH_EMA = 0.1


@dataclass
class Health:
    """What the collapse diagnosis remembers between updates (and across a resume: the
    checkpoint holds it as a dict of these fields)."""

    learned: bool = False
    ema: float | None = None
    candidate: int | None = None  # update where the average last crossed chance level

    def observe(self, update: int, loss: float, chance: float) -> None:
        """Fold the loss of ``update`` into the average (a non-finite loss is skipped) and
        date the latest crossing of chance level ``chance``."""
        if not math.isfinite(loss):
            return
        self.ema = loss if self.ema is None else (1 - HEALTH_EMA) * self.ema + HEALTH_EMA * loss
        if self.ema >= CHANCE * chance:
            if self.candidate is None:
                self.candidate = update
        elif self.ema < LEARNED * chance:
            self.candidate = None


def exploded(loss: float, first_loss: float) -> bool:
    """An update loss that is NaN/inf, or above ``EXPLODE_FACTOR`` × the first update's."""
    return not math.isfinite(loss) or loss > EXPLODE_FACTOR * max(first_loss, 1e-3)


def learned(train_loss: Any, chance_loss: float) -> bool:
    """An epoch train loss (as a row holds it) below ``LEARNED`` × the chance loss."""
    return isinstance(train_loss, (int, float)) and train_loss < LEARNED * chance_loss


def at_chance(train_loss: float, chance_loss: float) -> bool:
    """An epoch train loss at chance level or above (>= ``CHANCE`` × the chance loss)."""
    return train_loss >= CHANCE * chance_loss


def collapsed(health: Health, train_loss: float, chance_loss: float) -> bool:
    """A run that had learned whose epoch train loss is back at chance level or above."""
    return health.learned and at_chance(train_loss, chance_loss)


def stuck(row: Mapping[str, Any] | None, chance_loss: float, chance_acc: float) -> bool:
    """After its second epoch or later, an epoch row at chance level in loss and accuracy
    (at most 1.5× ``chance_acc``); a run that never learned and is stuck is not learning."""
    if row is None or row["epoch"] < 1:
        return False
    return at_chance(row["train_loss"], chance_loss) and row["train_acc"] <= 1.5 * chance_acc


def nonfinite_eval(row: Mapping[str, Any]) -> tuple[str, float] | None:
    """The first evaluation loss of an epoch row (``test_loss``, then ``val_loss``) that is
    NaN/inf, with its key; None when both are finite or absent."""
    for key in ("test_loss", "val_loss"):
        value = row.get(key)
        if value is not None and not math.isfinite(value):
            return key, value
    return None


def large_updates(ratios: Mapping[str, float] | None) -> list[tuple[str, float]]:
    """The parameters whose update ratio ‖Δw‖/‖w‖ is ``LARGE_UPDATE_RATIO`` or more."""
    return [(name, r) for name, r in (ratios or {}).items() if r >= LARGE_UPDATE_RATIO]
