"""Device selection and the process-wide torch settings of a run."""

from __future__ import annotations

import torch

from lrlab.errors import LrlabError

__all__ = ["select_device", "autocast_dtype"]


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit name is checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LrlabError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LrlabError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            raise LrlabError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise LrlabError("device 'mps' asked for, but MPS is not available here")
    return device


def autocast_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """bf16 autocast: on by default on CUDA (``auto``), on request elsewhere (``bf16``)."""
    if amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return torch.bfloat16
