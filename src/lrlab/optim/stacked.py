"""Optimizer updates for K models stacked along a leading dimension (functional, in place).

The vectorised runner (:mod:`lrlab.lab.train.vectorised`) trains K copies of one architecture at
once: every parameter is one tensor ``[K, ...]`` whose slice ``k`` is member ``k``'s. This
module applies one update rule to such tensors with per-member (and, through param groups,
per-parameter) LR and weight decay, and per-member hyper-parameters (betas, eps, momentum,
alpha). Each rule follows the single-tensor path of the optimizer it stands for, operation
by operation, with every per-member scalar computed in float64 and then cast to the
parameter's dtype as torch casts its Python scalars:

- ``sgd`` / ``momentum`` / ``nesterov``: ``torch.optim.SGD`` (dampening 0; the momentum buffer
  starts as the first gradient);
- ``rmsprop``: ``torch.optim.RMSprop`` (not centred; with or without momentum);
- ``adam`` / ``adamw`` / ``amsgrad``: ``torch.optim.Adam`` / ``AdamW`` (coupled L2 or decoupled
  decay; bias correction from each member's own step count);
- ``adam-nobias``: :class:`lrlab.optim.AdamNoBias`;
- ``lion``: :class:`lrlab.optim.Lion` (a NaN/inf gradient gives a NaN update, as there).

State uses the key names of those optimizers (``exp_avg``, ``exp_avg_sq``,
``max_exp_avg_sq``, ``square_avg``, ``momentum_buffer``, ``step``), so
:meth:`StackedOptimizer.member_state` hands member ``k``'s state to the real optimizer (for a
checkpoint that a one-run trainer can resume) and :meth:`StackedOptimizer.load_member_states`
takes it back. Tests compare every rule with the real optimizer run member by member
(``tests/test_optim_stacked.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lrlab.errors import LrlabError

__all__ = ["STACKED_KINDS", "StackedOptimizer", "member_hyper"]

#: lrlab optimizer names (``lrlab.optim.OPTIMIZERS``) this module can update stacked.
STACKED_KINDS: tuple[str, ...] = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw",
                                  "amsgrad", "adam-nobias", "lion")
_SGD = ("sgd", "momentum", "nesterov")
_ADAM = ("adam", "adamw", "amsgrad")
# the per-member hyper-parameters each rule reads (floats; see member_hyper)
_HYPER: dict[str, tuple[str, ...]] = {
    **{k: ("momentum",) for k in _SGD},
    "rmsprop": ("alpha", "eps", "momentum"),
    **{k: ("beta1", "beta2", "eps") for k in _ADAM},
    "adam-nobias": ("beta1", "beta2", "eps"),
    "lion": ("beta1", "beta2"),
}
# state tensors shaped like the parameter, by rule (``step`` is kept apart, per member)
_STATE: dict[str, tuple[str, ...]] = {
    **{k: ("momentum_buffer",) for k in _SGD},
    "rmsprop": ("square_avg", "momentum_buffer"),
    "adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq"),
    "amsgrad": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    "adam-nobias": ("exp_avg", "exp_avg_sq"),
    "lion": ("exp_avg",),
}
_HAS_STEP = ("rmsprop", *_ADAM)


def member_hyper(kind: str, group: Mapping[str, Any]) -> dict[str, float]:
    """The hyper-parameters rule ``kind`` reads, from one param group of the real optimizer.

    Raises:
        LrlabError: a setting the stacked rule does not implement (dampening, a centred
            RMSProp, maximize).
    """
    if kind not in STACKED_KINDS:
        raise LrlabError(f"optimizer {kind!r} has no stacked update; stacked: "
                         f"{', '.join(STACKED_KINDS)}")
    if group.get("maximize") or group.get("centered") or group.get("dampening", 0) != 0:
        raise LrlabError(f"optimizer {kind!r}: maximize, centered and dampening are not "
                         "implemented by the stacked update")
    out: dict[str, float] = {}
    for key in _HYPER[kind]:
        if key in ("beta1", "beta2"):
            out[key] = float(group["betas"][0 if key == "beta1" else 1])
        else:
            out[key] = float(group[key])
    return out


def _b(values: Tensor, like: Tensor) -> Tensor:
    """Per-member values ``[K]`` (float64) shaped to broadcast over ``like`` ``[K, ...]`` in
    its dtype (the cast torch applies to a Python scalar)."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


class StackedOptimizer:
    """Rule ``kind`` over parameters ``[K, ...]`` (updated in place by :meth:`step`).

    Args:
        kind: one of :data:`STACKED_KINDS`.
        params: the stacked parameters (or views of them: a slice of members).
        hyper: per-member hyper-parameters, one float per member for each key the rule
            reads (see :func:`member_hyper`).
    """

    def __init__(self, kind: str, params: Sequence[Tensor],
                 hyper: Sequence[Mapping[str, float]]) -> None:
        if kind not in STACKED_KINDS:
            raise LrlabError(f"optimizer {kind!r} has no stacked update; stacked: "
                             f"{', '.join(STACKED_KINDS)}")
        self.kind = kind
        self.params = list(params)
        k = self.members = len(hyper)
        if any(p.shape[0] != k for p in self.params):
            raise LrlabError(f"stacked parameters must all have {k} members")
        self.hyper = {key: torch.tensor([float(h[key]) for h in hyper], dtype=torch.float64)
                      for key in _HYPER[kind]}
        self.state: list[dict[str, Tensor]] = [{} for _ in self.params]
        self.steps = torch.zeros(k, dtype=torch.float64)  # optimizer steps taken, per member

    # -- the update --------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, grads: Sequence[Tensor], lr: Sequence[Tensor],
             weight_decay: Sequence[Tensor]) -> None:
        """One update. ``lr[j]`` and ``weight_decay[j]`` are parameter ``j``'s values per
        member (float64 ``[K]``: each member's param-group LR at this update)."""
        self.steps += 1
        rule = getattr(self, "_" + self.kind.replace("-", "_"))
        for j, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            rule(p, g, self.state[j], lr[j].to(torch.float64),
                 weight_decay[j].to(torch.float64))

    def _sgd(self, p: Tensor, g: Tensor, st: dict[str, Tensor], lr: Tensor, wd: Tensor
             ) -> None:
        mom = self.hyper["momentum"]
        if bool((wd != 0).any()):
            g = g.add(p * _b(wd, p))
        if bool((mom != 0).any()):
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = g.detach().clone()
            else:
                buf.mul_(_b(mom, p)).add_(g)
            g = g.add(buf * _b(mom, p)) if self.kind == "nesterov" else buf
        p.sub_(g * _b(lr, p))

    _momentum = _sgd
    _nesterov = _sgd

    def _rmsprop(self, p: Tensor, g: Tensor, st: dict[str, Tensor], lr: Tensor, wd: Tensor
                 ) -> None:
        h = self.hyper
        if bool((wd != 0).any()):
            g = g.add(p * _b(wd, p))
        sq = st.setdefault("square_avg", torch.zeros_like(p))
        sq.mul_(_b(h["alpha"], p)).addcmul_(g * _b(1 - h["alpha"], p), g)
        avg = sq.sqrt().add_(_b(h["eps"], p))
        if bool((h["momentum"] > 0).any()):
            buf = st.setdefault("momentum_buffer", torch.zeros_like(p))
            buf.mul_(_b(h["momentum"], p)).addcdiv_(g, avg)
            p.sub_(buf * _b(lr, p))
        else:
            p.addcdiv_(g * _b(-lr, p), avg)

    def _adam(self, p: Tensor, g: Tensor, st: dict[str, Tensor], lr: Tensor, wd: Tensor
              ) -> None:
        h = self.hyper
        if bool((wd != 0).any()):
            if self.kind == "adamw":
                p.mul_(_b(1 - lr * wd, p))
            else:
                g = g.add(p * _b(wd, p))
        m = st.setdefault("exp_avg", torch.zeros_like(p))
        v = st.setdefault("exp_avg_sq", torch.zeros_like(p))
        m.lerp_(g, _b(1 - h["beta1"], p))
        v.mul_(_b(h["beta2"], p)).addcmul_(g * _b(1 - h["beta2"], p), g)
        bc1 = 1 - h["beta1"] ** self.steps
        bc2_sqrt = (1 - h["beta2"] ** self.steps) ** 0.5
        step_size = lr / bc1
        if self.kind == "amsgrad":
            vmax = st.setdefault("max_exp_avg_sq", torch.zeros_like(p))
            torch.maximum(vmax, v, out=vmax)
            v = vmax
        denom = (v.sqrt() / _b(bc2_sqrt, p)).add_(_b(h["eps"], p))
        p.addcdiv_(m * _b(-step_size, p), denom)

    _adamw = _adam
    _amsgrad = _adam

    def _adam_nobias(self, p: Tensor, g: Tensor, st: dict[str, Tensor], lr: Tensor,
                     wd: Tensor) -> None:
        h = self.hyper
        if bool((wd != 0).any()):
            g = g.add(p * _b(wd, p))
        m = st.setdefault("exp_avg", torch.zeros_like(p))
        v = st.setdefault("exp_avg_sq", torch.zeros_like(p))
        m.mul_(_b(h["beta1"], p)).add_(g * _b(1 - h["beta1"], p))
        v.mul_(_b(h["beta2"], p)).addcmul_(g * _b(1 - h["beta2"], p), g)
        p.addcdiv_(m * _b(-lr, p), v.sqrt().add_(_b(h["eps"], p)))

    def _lion(self, p: Tensor, g: Tensor, st: dict[str, Tensor], lr: Tensor, wd: Tensor
              ) -> None:
        h = self.hyper
        m = st.setdefault("exp_avg", torch.zeros_like(p))
        if bool((wd != 0).any()):
            p.mul_(_b(1 - lr * wd, p))
        c = torch.lerp(g, m, _b(h["beta1"], p))
        c.sign_().add_(g, alpha=0.0)  # NaN where g is NaN/inf, as lrlab's Lion
        p.sub_(c * _b(lr, p))
        m.lerp_(g, _b(1 - h["beta2"], p))

    # -- members' state in the real optimizers' layout ---------------------------------------
    def member_state(self, k: int, j: int, scalar_dtype: torch.dtype = torch.float32
                     ) -> dict[str, Tensor]:
        """Member ``k``'s state of parameter ``j`` as the real optimizer keeps it (copies;
        ``step`` a 0-d tensor of ``scalar_dtype`` where the optimizer has one). Empty before
        the first update, as there."""
        st = self.state[j]
        if not st and not (self.kind in _HAS_STEP and self.steps[k] > 0):
            return {}
        out = {name: t[k].detach().clone() for name, t in st.items()}
        if "momentum" in self.hyper and float(self.hyper["momentum"][k]) == 0:
            out.pop("momentum_buffer", None)  # torch keeps none without momentum
        if self.kind in _HAS_STEP:
            out["step"] = torch.tensor(float(self.steps[k]), dtype=scalar_dtype)
        return out

    def load_member_states(self, states: Sequence[Sequence[Mapping[str, Tensor]]]) -> None:
        """Take the real optimizers' state: ``states[k][j]`` is member ``k``'s state of
        parameter ``j`` (an empty mapping before its first update). Members must agree on
        which tensors they hold (they are at the same point of training)."""
        if len(states) != self.members:
            raise LrlabError(f"expected the state of {self.members} members, got {len(states)}")
        for j, p in enumerate(self.params):
            names = {n for n in _STATE[self.kind] if any(n in s[j] for s in states)}
            for name in sorted(names):
                if name == "momentum_buffer" and "momentum" in self.hyper:
                    states = [s if name in s[j] or float(self.hyper["momentum"][k]) != 0 else
                              [{**x, name: torch.zeros_like(p[0])} if i == j else x
                               for i, x in enumerate(s)] for k, s in enumerate(states)]
                if not all(name in s[j] for s in states):
                    raise LrlabError(f"members disagree on whether {name!r} exists; they "
                                     "are not at the same point of training")
                self.state[j][name] = torch.stack(
                    [s[j][name].detach().to(device=p.device, dtype=p.dtype) for s in states])
        if self.kind in _HAS_STEP:
            self.steps = torch.tensor([float(s[0]["step"]) if s and "step" in s[0] else 0.0
                                       for s in states], dtype=torch.float64)

    def select(self, keep: Tensor, params: Sequence[Tensor]) -> None:
        """Keep only members ``keep`` (indices) and take ``params`` (the matching stacked
        parameters) as the tensors to update from now on."""
        self.params = list(params)
        self.state = [{n: t.index_select(0, keep.to(t.device)) for n, t in st.items()}
                      for st in self.state]
        self.hyper = {n: t.index_select(0, keep) for n, t in self.hyper.items()}
        self.steps = self.steps.index_select(0, keep)
        self.members = len(keep)
