"""Optimizers with a train and an eval mode (Schedule-Free, Defazio et al. 2024).

A Schedule-Free optimizer keeps two points per parameter and swaps them in place: in train
mode the parameters hold ``y`` (where gradients are taken), in eval mode ``x`` (the average
that is evaluated and saved). ``optimizer.train()`` must come before ``step()``,
``optimizer.eval()`` before evaluating or saving weights. Other optimizers have no modes and
these helpers do nothing for them, so the trainer and the range test call them for every
optimizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["has_modes", "train_mode", "eval_mode", "evaluation_point"]


def has_modes(optimizer: torch.optim.Optimizer) -> bool:
    """True for an optimizer with ``train()``/``eval()`` (Schedule-Free)."""
    return callable(getattr(optimizer, "train", None)) and \
        callable(getattr(optimizer, "eval", None))


def train_mode(optimizer: torch.optim.Optimizer) -> None:
    """Parameters at the training point ``y`` (no-op without modes)."""
    if has_modes(optimizer):
        optimizer.train()  # type: ignore[attr-defined]


def eval_mode(optimizer: torch.optim.Optimizer) -> None:
    """Parameters at the evaluation point ``x`` (no-op without modes)."""
    if has_modes(optimizer):
        optimizer.eval()  # type: ignore[attr-defined]


@contextlib.contextmanager
def evaluation_point(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Inside: the parameters at ``x``; after: back in train mode (``y``).

    A round trip ``y -> x -> y`` is two ``lerp`` calls, equal to ``y`` up to rounding: a run
    is reproducible because every run (and every resume, see the trainer) makes the same
    round trips at the same updates.
    """
    eval_mode(optimizer)
    try:
        yield
    finally:
        train_mode(optimizer)
