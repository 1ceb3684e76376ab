"""LR scaling rules for a change of batch size, and the untuned warmup length."""

from __future__ import annotations

import math

from lrlab.errors import LrlabError
from lrlab.schedules import untuned_warmup_steps as untuned_warmup_steps  # the one definition

RULES: tuple[str, ...] = ("linear", "sqrt", "none")


def scale_lr(lr: float, batch: int, ref_batch: int, rule: str = "linear") -> float:
    """LR for batch size ``batch`` given a tuned ``lr`` at ``ref_batch``.

    - ``linear``: ``lr * batch / ref_batch`` (Goyal et al. 2017, for SGD; pair with warmup);
    - ``sqrt``: ``lr * sqrt(batch / ref_batch)`` (Krizhevsky 2014, Hoffer et al. 2017; the
      usual choice for adaptive optimizers such as Adam);
    - ``none``: ``lr`` unchanged.
    """
    if rule not in RULES:
        raise LrlabError(f"unknown scaling rule {rule!r}; valid: {', '.join(RULES)}")
    for label, b in (("batch", batch), ("ref_batch", ref_batch)):
        if isinstance(b, bool) or not isinstance(b, int | float) or not b > 0:
            raise LrlabError(f"{label} must be a positive number, got {b!r}")
    if not float(lr) >= 0.0:
        raise LrlabError(f"lr must be >= 0, got {lr}")
    ratio = batch / ref_batch
    if rule == "linear":
        return float(lr) * ratio
    if rule == "sqrt":
        return float(lr) * math.sqrt(ratio)
    return float(lr)

