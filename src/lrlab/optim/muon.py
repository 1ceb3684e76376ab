"""Muon for the hidden weight matrices, AdamW for the rest: one optimizer.

Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks") updates
a 2-D weight along the orthogonalised momentum (5 Newton-Schulz steps); it is meant for the
hidden layers only, so the usual split gives AdamW the embeddings, biases, norms and the
output layer (:func:`lrlab.optim.groups.split_for_muon` makes that split as data).

:class:`MuonAdamW` is one ``torch.optim.Optimizer`` over both kinds of param group, flagged
``use_muon``: its ``param_groups`` are all the groups and its ``state`` all the per-parameter
state, so ``lrlab.Scheduler`` (per-group ``initial_lr``), the trainer's checkpoints
(``state_dict``/``load_state_dict`` of the base class) and the range test (which restores
``param_groups`` and ``state``) treat it as one optimizer. The update rules are torch's own:
``step()`` hands the Muon groups to a ``torch.optim.Muon`` and the others to a
``torch.optim.AdamW``, both working on this optimizer's groups and state, nothing copied.

One LR for both: the Muon groups default to ``adjust_lr_fn="match_rms_adamw"`` (Liu et al.
2025, "Muon is Scalable for LLM Training"): the orthogonalised update is scaled by
``0.2·sqrt(max(A, B))`` for an A×B matrix, which gives it the RMS of a typical AdamW update,
so the LR and weight decay tuned for AdamW serve both kinds of group, the AdamW groups use
the same peak LR, and a schedule, ``lr_mult`` or the range test moves one number. (With
``adjust_lr_fn="original"``, Jordan's ``sqrt(max(1, A/B))``, Muon wants LRs near 0.02, ~20x
AdamW's, and the two would need separate peaks.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["MuonAdamW", "MUON_DEFAULTS"]

#: Muon's settings in lrlab (torch's defaults but for ``adjust_lr_fn``; see the module doc).
MUON_DEFAULTS: dict[str, Any] = {"momentum": 0.95, "nesterov": True,
                                 "ns_coefficients": (3.4445, -4.775, 2.0315), "ns_steps": 5,
                                 "adjust_lr_fn": "match_rms_adamw"}


def _muon_class() -> type[torch.optim.Optimizer]:
    cls = getattr(torch.optim, "Muon", None)
    if cls is None:
        raise ValueError(f"Muon needs torch.optim.Muon (torch >= 2.9); this is torch "
                         f"{torch.__version__}")
    return cls


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the param groups with ``use_muon=True``, AdamW on the others.

    Args:
        params: param-group dicts, each with ``use_muon`` (True: every tensor 2-D).
        lr, weight_decay: the defaults of every group (a group's own values win).
        momentum, nesterov, ns_coefficients, ns_steps, adjust_lr_fn: Muon's (torch's
            ``torch.optim.Muon``); ``muon_eps`` its Newton-Schulz normalisation floor.
        betas, eps: AdamW's (decoupled weight decay ``lr·weight_decay``, as Muon's).

    Raises:
        ValueError: a group without ``use_muon``, a Muon tensor that is not 2-D, or a value
            torch's classes refuse.
    """

    def __init__(self, params: Iterable[dict[str, Any]], lr: float = 1e-3,
                 weight_decay: float = 0.0, *, momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
                 ns_steps: int = 5, adjust_lr_fn: str | None = "match_rms_adamw",
                 muon_eps: float = 1e-7, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        groups = list(params)
        for g in groups:
            if not isinstance(g, dict) or not isinstance(g.get("use_muon"), bool):
                raise ValueError("MuonAdamW takes param-group dicts flagged use_muon=True/False "
                                 "(lrlab.optim.groups.split_for_muon makes them)")
        # torch's own classes check the values and give every key their step() reads
        self._muon = _muon_class()([torch.zeros(1, 1, requires_grad=True)], lr=lr,
                                   weight_decay=weight_decay, momentum=momentum,
                                   nesterov=nesterov, ns_coefficients=tuple(ns_coefficients),
                                   eps=muon_eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)
        self._adamw = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=lr,
                                        betas=tuple(betas), eps=eps, weight_decay=weight_decay)
        full = []
        for g in groups:
            kind = self._muon if g["use_muon"] else self._adamw
            group = {**kind.defaults, **g}
            if g["use_muon"]:
                for p in group["params"]:
                    if p.ndim != 2:
                        raise ValueError(f"Muon updates 2-D tensors only, got one of shape "
                                         f"{tuple(p.shape)}")
            full.append(group)
        super().__init__(full, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One update: Muon on the ``use_muon`` groups, AdamW on the others."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for flag, inner in ((True, self._muon), (False, self._adamw)):
            inner.param_groups = [g for g in self.param_groups if g["use_muon"] is flag]
            inner.state = self.state  # one state, keyed by parameter: the sets are disjoint
            if inner.param_groups:
                inner.step()
        return loss
