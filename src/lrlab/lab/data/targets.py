"""Targets, loss and accuracy: one class per example, or one per position of a sequence.

A dataset's labels ``y`` are either

- ``(N,)`` class indices, one per example, with logits ``(N, C)`` (images, tabular data), or
- ``(N, T)`` class indices, one per position of a token sequence, with logits
  ``(N, T, C)`` (``chars``, ``modadd``). A position whose target is ``IGNORE_INDEX`` (-100,
  the default ``ignore_index`` of ``torch.nn.functional.cross_entropy``) is not counted:
  ``modadd`` counts only the answer position of each sequence, ``chars`` every position.

Whatever the layout, the loss is the mean cross-entropy over the *counted* targets and the
accuracy is correct counted targets / counted targets. For ``(N,)`` labels (no ignored
entries) every example is one counted target, so these are exactly the per-example mean and
accuracy, computed by the very same operations as before sequences existed: logits
``(N, C)`` and labels ``(N,)`` are passed through ``reshape`` unchanged (a view), so the
numbers of image and tabular runs are bit-for-bit what they were.

Throughput and ``seen`` still count examples (sequences), not targets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "LN2", "at_least_float32", "flat", "mean_loss", "sum_loss", "correct",
           "counted"]

#: Target of a position that is not counted (cross_entropy's default ignore_index).
IGNORE_INDEX = -100
#: ln 2: a loss in nats divided by it is in bits (bits per character for ``chars``).
LN2 = math.log(2.0)


def at_least_float32(out: torch.Tensor) -> torch.Tensor:
    """Logits for the loss: bf16 (autocast) and float16 become float32; float32 and float64
    stay as they are (a float64 model, as the exactness tests train, keeps float64)."""
    return out if out.dtype == torch.float64 else out.float()


def flat(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(..., C)`` and labels ``(...)`` as ``(M, C)`` and ``(M,)``."""
    return out.reshape(-1, out.shape[-1]), y.reshape(-1)


def mean_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the counted targets (float32 logits)."""
    o, t = flat(out.float(), y)
    return F.cross_entropy(o, t)


def sum_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over the counted targets."""
    o, t = flat(out, y)
    return F.cross_entropy(o, t, reduction="sum")


def correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of counted targets whose arg-max logit is the target (an ignored target, -100,
    never equals an arg-max)."""
    o, t = flat(out, y)
    return (o.argmax(1) == t).sum()


def counted(y: torch.Tensor) -> int:
    """Number of counted targets in ``y``: ``len(y)`` for one class per example."""
    if y.dim() == 1:
        return len(y)
    return int((y != IGNORE_INDEX).sum().item())
