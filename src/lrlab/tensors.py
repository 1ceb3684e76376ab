"""Small conversions between torch values and Python numbers."""

from __future__ import annotations

import torch

__all__ = ["as_float"]


def as_float(value: float | torch.Tensor) -> float:
    """A number, or a one-element tensor (an LR a scheduler fills in place), as a float."""
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)
