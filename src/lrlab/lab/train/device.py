"""Device selection and the process-wide torch settings of a run."""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any

import torch

from lrlab.errors import LrlabError

__all__ = ["select_device", "autocast_dtype", "autocast", "run_environment", "ENVIRONMENT_KEYS"]

#: What decides whether a seed reproduces bit for bit (recorded in each run's config.json).
ENVIRONMENT_KEYS = ("torch", "python", "numpy", "platform", "cpu", "cpu_count", "threads",
                    "device", "gpu", "cuda", "deterministic", "cudnn_deterministic",
                    "cudnn_benchmark", "float32_matmul_precision")


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


def autocast(device: torch.device, dtype: torch.dtype | None
             ) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device`` (see :func:`autocast_dtype`); with
    ``dtype`` None, nothing (full precision)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_environment(device: torch.device) -> dict[str, Any]:
    """The facts a run's numbers depend on beyond its config (``ENVIRONMENT_KEYS``).

    The same seed gives the same numbers bit for bit only with the same torch version, the
    same number of CPU threads (reductions split differently across threads), the same kind
    of device (and GPU model), and deterministic kernels on CUDA; runs near the edge of
    stability magnify the last-bit differences of any of these into a different outcome.
    """
    import numpy

    cuda = device.type == "cuda"
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }
