"""Teaching optimizers: exact, small rules used in the lab's comparisons.

- :class:`AdamNoBias` is Adam without bias correction, to show why the correction matters.
  With ``m0 = v0 = 0`` its update at step ``t`` is Adam's times ``(1-β1^t)/sqrt(1-β2^t)``
  (exactly so for ε = 0), so with the usual β = (0.9, 0.999) the early steps are too
  **large**: 0.1/sqrt(0.001) ≈ 3.16× at t = 1, about 6.5× around t = 12, still 1.26× at
  t = 1000, tending to 1 as ``β^t → 0``.
- :class:`NormalizedSGD` steps along ``g/‖g‖`` per tensor, so every tensor moves by the same
  norm whatever its gradient scale (the RProp idea of equal-size updates).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from lrlab.errors import LrlabError


def _num(name: str, value: Any, owner: str) -> float:
    """A finite number (or a 1-element tensor, e.g. a scheduled LR); bools and strings are
    refused rather than converted."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LrlabError(f"{owner} {name} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise LrlabError(f"{owner} {name} must be finite, got {x}")
    return x


def _check_nonneg(owner: str, **values: Any) -> None:
    for name, v in values.items():
        x = _num(name, v, owner)
        if not x >= 0.0:
            raise LrlabError(f"{owner} {name} must be >= 0, got {x}")


def _check_unit(owner: str, name: str, value: Any) -> None:
    x = _num(name, value, owner)
    if not 0.0 <= x < 1.0:
        raise LrlabError(f"{owner} {name} must be in [0, 1), got {x}")


def _dense_grad(p: Tensor, owner: str) -> Tensor:
    g = p.grad
    assert g is not None
    if g.is_sparse:
        raise LrlabError(f"{owner} does not support sparse gradients "
                         f"(parameter of shape {tuple(p.shape)})")
    return g


class AdamNoBias(torch.optim.Optimizer):
    r"""Adam without bias correction.

    With gradient ``g`` (plus ``λ·p`` when ``weight_decay`` λ > 0, coupled L2 as in
    ``torch.optim.Adam``), moments ``m = v = 0`` at the start, and step size η:

    .. math::
        m &\leftarrow \beta_1 m + (1-\beta_1) g \\
        v &\leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        p &\leftarrow p - \eta\, m / (\sqrt{v} + \epsilon)

    Adam divides ``m`` by ``1-β1^t`` and ``v`` by ``1-β2^t``; without that, the update of step
    ``t`` is Adam's times ``(1-β1^t)/sqrt(1-β2^t)`` (exactly so for ε = 0). With the usual
    β=(0.9, 0.999) that factor is 0.1/sqrt(0.001) ≈ 3.16 at t=1 and peaks near 6.5 around
    t=12: the early steps are too large, not too small (v, the denominator, is biased towards
    zero more than m). It tends to 1 as ``β^t → 0`` and is exactly 1 for β1=β2=0.
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        _check_nonneg("AdamNoBias", lr=lr, eps=eps, weight_decay=weight_decay)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise LrlabError(f"AdamNoBias betas must be a pair, got {betas!r}") from None
        _check_unit("AdamNoBias", "betas[0]", b1)
        _check_unit("AdamNoBias", "betas[1]", b2)
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = _num("lr", group["lr"], "AdamNoBias")
            b1, b2 = (float(b) for b in group["betas"])
            eps, wd = float(group["eps"]), float(group["weight_decay"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = _dense_grad(p, "AdamNoBias")
                if wd != 0.0:
                    g = g.add(p, alpha=wd)
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(b1).add_(g, alpha=1.0 - b1)
                v.mul_(b2).addcmul_(g, g, value=1.0 - b2)
                p.addcdiv_(m, v.sqrt().add_(eps), value=-lr)
        return loss


class NormalizedSGD(torch.optim.Optimizer):
    r"""SGD along the per-tensor normalised gradient, with heavy-ball momentum.

    For each parameter tensor ``p`` with gradient ``g``, momentum buffer ``b = 0`` at the
    start, momentum μ, step size η and decoupled weight decay λ:

    .. math::
        d &= g / (\lVert g \rVert_2 + \epsilon) \\
        b &\leftarrow \mu b + d \\
        p &\leftarrow p\,(1 - \eta\lambda) - \eta\, b

    ``‖g‖`` is the Frobenius norm of the whole tensor, so each tensor's step has norm η
    (μ = 0) whatever the scale of its gradient: the equal-norm idea of RProp/LARS.
    """

    def __init__(self, params: Any, lr: float = 1e-2, momentum: float = 0.9, eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        _check_nonneg("NormalizedSGD", lr=lr, eps=eps, weight_decay=weight_decay)
        _check_unit("NormalizedSGD", "momentum", momentum)
        super().__init__(params, dict(lr=lr, momentum=momentum, eps=eps,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = _num("lr", group["lr"], "NormalizedSGD")
            mu, eps = float(group["momentum"]), float(group["eps"])
            wd = float(group["weight_decay"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = _dense_grad(p, "NormalizedSGD")
                d = g / (torch.linalg.vector_norm(g) + eps)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                b = state["momentum_buffer"]
                b.mul_(mu).add_(d)
                if wd != 0.0:
                    p.mul_(1.0 - lr * wd)
                p.add_(b, alpha=-lr)
        return loss
