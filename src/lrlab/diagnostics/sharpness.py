r"""Sharpness: the top Hessian eigenvalue of the loss, and the threshold the LR sets for it.

``sharpness(model, loss_fn, batch)`` measures ``λ_max``, the largest (algebraic) eigenvalue of
the Hessian ``H = ∇²_θ L(θ)`` of ``L = loss_fn(model(x), y)`` on one fixed batch ``(x, y)``,
with respect to the model's trainable parameters ``θ`` (those with ``requires_grad``).
``stability_threshold(optimizer)`` is the value of ``λ_max`` beyond which the optimizer's
update, at the current LR, diverges on a quadratic with that curvature. Training "at the edge
of stability" (Cohen et al. 2021) holds the sharpness near that threshold.

The estimate is a seeded power iteration on Hessian-vector products by double backward (one
``create_graph`` gradient, then one backward per product), stopped by a tolerance with
geometric extrapolation or after ``iters`` products, and shifted by ``-μI`` when the most
negative eigenvalue dominates. With ``preconditioner=optimizer`` (an Adam or AdamW that has
taken a step) it is the top eigenvalue of ``P^{-1} H`` with Adam's denominator ``P``
(Cohen et al. 2022). Parameters are never written; each ``.grad``, every buffer, each
module's ``training`` flag and the global torch RNG states are put back, also when the
measurement raises. The model is evaluated in the mode it is in.

The stopping rule and its measurements, the shift, why double backward, the cost and the
preconditioned case in full: ``docs/sharpness.md``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from lrlab.errors import LrlabError
from lrlab.optim.teaching import AdamNoBias
from lrlab.tensors import as_float

__all__ = ["SharpnessResult", "sharpness", "stability_threshold"]

Vector = list[Tensor]  # one tensor per trainable parameter


@dataclass(frozen=True)
class SharpnessResult:
    """One sharpness measurement.

    Attributes:
        value: the estimate of ``λ_max`` (of ``H``, or of ``P^{-1}H`` when preconditioned).
        iters: power-iteration steps of the run that produced ``value``.
        converged: whether that run met ``tol`` before ``iters`` ran out.
        hvps: Hessian-vector products spent in all (both runs when the shift was needed).
    """

    value: float
    iters: int
    converged: bool
    hvps: int


# ---------------------------------------------------------------------------- vectors
def _flat(x: Tensor) -> Tensor:
    """``x`` as a 1-D tensor of at least single precision (dot products of half lose digits)."""
    return x.reshape(-1) if x.element_size() >= 4 else x.reshape(-1).float()


def _dot(a: Vector, b: Vector) -> float:
    return float(sum(torch.dot(_flat(x), _flat(y)).double() for x, y in zip(a, b)))


def _random_unit(params: Sequence[Tensor], gen: torch.Generator) -> Vector:
    """A unit vector with i.i.d. normal entries drawn on the CPU from ``gen`` (device-free)."""
    v = [torch.randn(p.shape, generator=gen).to(device=p.device, dtype=p.dtype)
         for p in params]
    norm = math.sqrt(_dot(v, v))
    return [x / norm for x in v]


def _power_iteration(apply: Callable[[Vector], Vector], v: Vector, iters: int,
                     tol: float) -> tuple[float, int, bool]:
    """Rayleigh quotient of the dominant eigenvalue of ``apply``: (value, steps, converged).

    Converged at step ``k`` when ``Δ_k = |μ_k - μ_{k-1}| <= tol·|μ_k|`` and the error left,
    extrapolated geometrically with ``q = Δ_k/Δ_{k-1} < 1``, ``Δ_k·q/(1-q)``, is too.
    """
    prev, prev_change = math.nan, math.nan
    for k in range(1, iters + 1):
        w = apply(v)
        mu, norm = _dot(v, w), math.sqrt(_dot(w, w))
        if not (math.isfinite(mu) and math.isfinite(norm)):
            raise LrlabError("sharpness: a Hessian-vector product is not finite "
                             "(the loss overflows near these parameters)")
        change = abs(mu - prev)
        if k > 2 and change <= tol * abs(mu):
            q = change / prev_change if prev_change > 0.0 else (0.0 if change == 0.0 else 1.0)
            if q < 1.0 and change * q <= tol * abs(mu) * (1.0 - q):
                return mu, k, True
        if norm == 0.0:  # v lies in the null space (H = 0 for a random v)
            return 0.0, k, True
        v = [x / norm for x in w]
        prev, prev_change = mu, change
    return prev, iters, False


# ------------------------------------------------------------------------- the model
@contextlib.contextmanager
def _preserved(model: torch.nn.Module, params: Sequence[Tensor]) -> Iterator[None]:
    """Put back grads, buffers, training flags and the global torch RNG states on exit."""
    grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    cuda = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        for p, g in zip(params, grads):
            p.grad = g
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
        for m, training in modes:
            m.training = training


def _hvp_operator(model: torch.nn.Module, loss_fn: Callable[[Any, Any], Tensor],
                  batch: Any, params: Sequence[Tensor]) -> Callable[[Vector], Vector]:
    """``v ↦ H v`` on the batch, by double backward through a gradient built once."""
    if not isinstance(batch, Sequence) or isinstance(batch, str) or len(batch) != 2:
        raise LrlabError(f"sharpness: batch must be a pair (x, y), got {type(batch).__name__}")
    x, y = batch
    # attention through the math kernel: the fused (flash / CPU) kernels of
    # scaled_dot_product_attention have no double backward
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        loss = loss_fn(model(x), y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise LrlabError("sharpness: loss_fn(model(x), y) must return a one-element tensor")
        if not torch.isfinite(loss.detach()).all():
            value = float(loss.detach())
            raise LrlabError(f"sharpness: the loss is not finite ({value:g}) on this batch")
        if not loss.requires_grad:
            raise LrlabError("sharpness: the loss does not depend on the trainable parameters")
        grads = torch.autograd.grad(loss.reshape(()), params, create_graph=True,
                                    allow_unused=True)
    live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def hvp(v: Vector) -> Vector:
        out = [torch.zeros_like(p) for p in params]
        if not live:  # the gradient is constant: H = 0
            return out
        with torch.enable_grad():
            gv = sum((grads[i] * v[i]).sum() for i in live)
            hv = torch.autograd.grad(gv, params, retain_graph=True, allow_unused=True)
        return [h.detach() if h is not None else z for h, z in zip(hv, out)]

    return hvp


# ------------------------------------------------------------------- preconditioning
def _adam_inverse_sqrt(optimizer: torch.optim.Optimizer, named: Sequence[tuple[str, Tensor]]
                       ) -> Vector:
    """``D = P^{-1/2} = (sqrt(v̂) + ε)^{-1/2}`` per parameter, from an Adam-like state."""
    kind = type(optimizer).__name__
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise LrlabError(f"sharpness: preconditioner must be an optimizer (Adam, AdamW), "
                         f"got {kind}")
    if not any(optimizer.state.values()):
        raise LrlabError(f"sharpness: the {kind} preconditioner has no state yet; take an "
                         "optimizer step first")
    if not any("exp_avg_sq" in s for s in optimizer.state.values()):
        raise LrlabError(f"sharpness: preconditioner {kind} has no 'exp_avg_sq' state; only "
                         "Adam-like optimizers (Adam, AdamW) precondition by sqrt(v) + eps")
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    scales = []
    for name, p in named:
        group, state = group_of.get(id(p)), optimizer.state.get(p, {})
        if group is None:
            raise LrlabError(f"sharpness: parameter {name!r} is trainable but not in the "
                             f"{kind} preconditioner")
        if "exp_avg_sq" not in state:
            raise LrlabError(f"sharpness: parameter {name!r} has no 'exp_avg_sq' in the "
                             f"{kind} state (it has had no gradient yet)")
        v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
        v = v.detach().to(dtype=torch.float64)
        if not isinstance(optimizer, AdamNoBias):
            if "step" not in state:
                raise LrlabError(f"sharpness: parameter {name!r} has no 'step' in the {kind} "
                                 "state, needed for Adam's bias correction")
            t = as_float(state["step"])
            v = v / (1.0 - float(group["betas"][1]) ** t)
        denom = v.sqrt() + float(group["eps"])
        scales.append(denom.rsqrt().to(device=p.device, dtype=p.dtype))
    return scales


# ---------------------------------------------------------------------------- public
def sharpness(model: torch.nn.Module, loss_fn: Callable[[Any, Any], Tensor], batch: Any, *,
              iters: int = 100, tol: float = 1e-3,
              preconditioner: torch.optim.Optimizer | None = None,
              seed: int = 0) -> SharpnessResult:
    """The top Hessian eigenvalue ``λ_max`` of ``loss_fn(model(x), y)`` on ``batch``.

    Args:
        model: the network; evaluated in the mode it is in and left as it was (parameters,
            ``.grad``, buffers, training flags, global RNG; module docstring).
        loss_fn: ``loss_fn(model(x), y)`` -> scalar tensor.
        batch: ``(x, y)``, held fixed for every Hessian-vector product.
        iters: at most this many Hessian-vector products per power iteration (>= 1); a
            second run with its own budget follows when the most negative eigenvalue
            dominates.
        tol: stop when the Rayleigh quotient changes by at most ``tol`` relative (>= 0; 0
            runs all ``iters``).
        preconditioner: an Adam/AdamW with state: measure ``λ_max(P^{-1} H)`` with
            ``P = diag(sqrt(v̂) + ε)`` (Cohen et al. 2022), to set against
            ``stability_threshold(optimizer)``.
        seed: seed of the start vector's own generator.

    Returns:
        ``SharpnessResult(value, iters, converged, hvps)``.

    Raises:
        LrlabError: no trainable parameters, ``iters < 1``, a negative ``tol``, a loss that
            is not a finite scalar, or a preconditioner without Adam-like state.
    """
    if isinstance(iters, bool) or not isinstance(iters, numbers.Integral) or iters < 1:
        raise LrlabError(f"sharpness: iters must be an integer >= 1, got {iters!r}")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0.0 <= tol < math.inf:
        raise LrlabError(f"sharpness: tol must be a finite number >= 0, got {tol!r}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise LrlabError("sharpness: the model has no trainable parameters "
                         "(none with requires_grad=True)")
    params = [p for _, p in named]
    scale = _adam_inverse_sqrt(preconditioner, named) if preconditioner is not None else None
    gen = torch.Generator().manual_seed(int(seed))

    with _preserved(model, params):
        hvp = _hvp_operator(model, loss_fn, batch, params)
        if scale is None:
            apply = hvp
        else:  # D H D with D = P^{-1/2}: the eigenvalues of P^{-1} H, symmetric
            def apply(v: Vector) -> Vector:
                return [d * h for d, h in zip(scale, hvp([d * x for d, x in zip(scale, v)]))]

        mu, steps, converged = _power_iteration(apply, _random_unit(params, gen), int(iters),
                                                float(tol))
        hvps = steps
        if mu >= 0.0:
            return SharpnessResult(mu, steps, converged, hvps)
        for _ in range(2):  # a second shift only when the first did not reach λ_min
            shift = mu

            def shifted(v: Vector, shift: float = shift) -> Vector:  # eigenvalues λ_i - shift
                return [a - shift * x for a, x in zip(apply(v), v)]

            nu, steps, converged = _power_iteration(shifted, _random_unit(params, gen),
                                                    int(iters), float(tol))
            hvps += steps
            mu = nu + shift
            if nu >= 0.0:
                break
        return SharpnessResult(mu, steps, converged, hvps)


def stability_threshold(optimizer: torch.optim.Optimizer,
                        lr: float | Tensor | None = None) -> float | None:
    r"""The sharpness beyond which the optimizer diverges at this LR (param group 0's).

    On a quadratic with curvature ``λ`` (and a frozen preconditioner ``P`` for Adam), each
    update is linear in ``(θ, momentum)``; it diverges once an eigenvalue of that map crosses
    ``-1`` (the ``+1`` and ``|det| = 1`` boundaries lie beyond it). With ``η`` the LR:

    - SGD: ``2/η``;
    - SGD with heavy-ball momentum ``β`` and dampening ``d``: ``(2 + 2β) / ((1 - d)·η)``,
      ``(2 + 2β)/η`` with torch's default ``d = 0``;
    - SGD with Nesterov momentum: ``(2 + 2β) / ((1 + 2β)·η)``;
    - SGD with ``weight_decay`` ``w`` (L2, added to the gradient): each of the above minus
      ``w``, since the update sees curvature ``λ + w``;
    - Adam, AdamW (and lrlab's AdamNoBias): ``(2 + 2β1) / ((1 - β1)·η)``, ``38/η`` at
      ``β1 = 0.9`` (Cohen et al. 2022): heavy ball with dampening ``β1`` on ``P^{-1}H``, so it
      bounds the *preconditioned* sharpness, ``sharpness(..., preconditioner=optimizer)``.
      The bias correction of ``m`` (-> 1) and weight decay (Adam's L2, AdamW's decoupled) are
      left out, as in the paper.

    Args:
        optimizer: the optimizer whose update rule and param group 0 are read.
        lr: the LR to use instead of group 0's (a number or a one-element tensor).

    Returns:
        The threshold (``inf`` at ``η = 0``), or None for other optimizers (RMSprop, Adagrad,
        Lion, ...) and ``maximize=True``, which have no such threshold here.

    Raises:
        LrlabError: a negative or non-finite LR.

    With param groups at different LRs, group ``g`` steps with ``η_g``: the threshold is
    exact for the matrix ``diag(η_g/η_0)·H`` (or ``·P^{-1}H``), not for ``H`` itself.
    """
    group = optimizer.param_groups[0]
    eta = as_float(group["lr"] if lr is None else lr)
    if not 0.0 <= eta < math.inf:
        raise LrlabError(f"stability_threshold: lr must be finite and >= 0, got {eta:g}")
    if group.get("maximize", False):
        return None
    if isinstance(optimizer, torch.optim.SGD):
        beta, wd = float(group["momentum"]), float(group["weight_decay"])
        if beta == 0.0:
            scale = 2.0
        elif group["nesterov"]:
            scale = (2.0 + 2.0 * beta) / (1.0 + 2.0 * beta)
        else:
            damp = float(group["dampening"])
            scale = (2.0 + 2.0 * beta) / (1.0 - damp) if damp < 1.0 else math.inf
        return scale / eta - wd if eta > 0.0 else math.inf
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW, AdamNoBias)):
        b1 = float(group["betas"][0])
        return (2.0 + 2.0 * b1) / ((1.0 - b1) * eta) if eta > 0.0 else math.inf
    return None
