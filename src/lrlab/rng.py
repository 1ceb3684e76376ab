"""Random-number-generator states of a process: captured and restored as plain data.

Used by the trainer's checkpoints (exact resume) and by the LR range test (which must leave
every generator as it found it). The captured state holds only tensors, numbers, strings and
tuples, so a checkpoint that carries it loads with ``torch.load(..., weights_only=True)``:
NumPy's state (a tuple with an ``ndarray`` of 624 words) is stored with its key words as an
int64 tensor.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    """torch CPU (and CUDA, when initialised), Python ``random`` and NumPy's global state."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = {"bit_generator": str(name),
                      "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what ``capture_rng_state`` took (CUDA only where CUDA is available)."""
    torch.set_rng_state(state["torch"])
    python = state["python"]
    # a checkpoint may hold the inner tuple as a list
    random.setstate((python[0], tuple(python[1]), python[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("numpy")
    if isinstance(saved, dict):
        keys = saved["keys"].numpy().astype(np.uint32)
        np.random.set_state((saved["bit_generator"], keys, saved["pos"], saved["has_gauss"],
                             saved["cached"]))
    elif saved is not None:  # the tuple of older captures, still in memory
        np.random.set_state(saved)
