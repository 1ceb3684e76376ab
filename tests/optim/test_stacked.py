"""Stacked optimizer updates (lrlab.optim.stacked) against the real optimizers, member by member.

Reference: K separate models, each with the optimizer ``build_optimizer`` makes for it (its
own LR, weight decay, hyper-parameters and param groups: no decay on biases), stepped with
the same gradients and the same per-update LR changes. The stacked rule must give the same
parameters (float64: to 1e-12) and hand back a state the real optimizer continues from.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrlab.optim import build_optimizer
from lrlab.optim.stacked import STACKED_KINDS, StackedOptimizer, member_hyper

K = 3
STEPS = 12


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()


def _members(kind: str) -> list[tuple[nn.Module, torch.optim.Optimizer]]:
    out = []
    for k in range(K):
        hyper = {}
        if kind in ("adam", "adamw", "amsgrad", "adam-nobias", "lion"):
            hyper["betas"] = (0.9 - 0.05 * k, 0.99 - 0.01 * k)
        if kind in ("momentum", "nesterov"):
            hyper["momentum"] = 0.9 - 0.1 * k
        if kind == "rmsprop" and k == 1:
            hyper["momentum"] = 0.5
        model = _model(k)
        opt = build_optimizer(kind, model, lr=0.05 * (k + 1), weight_decay=0.1 * k, **hyper)
        out.append((model, opt))
    return out


def _group_of(opt: torch.optim.Optimizer, p: torch.Tensor) -> dict:
    return next(g for g in opt.param_groups if any(q is p for q in g["params"]))


@pytest.mark.parametrize("kind", STACKED_KINDS)
def test_stacked_update_equals_the_real_optimizer_member_by_member(kind: str) -> None:
    members = _members(kind)
    plists = [list(m.parameters()) for m, _ in members]
    stacked = [torch.stack([pl[j].detach() for pl in plists]).clone()
               for j in range(len(plists[0]))]
    hyper = [member_hyper(kind, opt.param_groups[0]) for _, opt in members]
    sopt = StackedOptimizer(kind, stacked, hyper)
    gen = torch.Generator().manual_seed(1)
    for t in range(STEPS):
        factor = 1.0 / (1 + t)  # an LR schedule: each group's LR changes every update
        grads = [torch.randn(s.shape, generator=gen, dtype=torch.float64) for s in stacked]
        for k, (model, opt) in enumerate(members):
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * factor
            for j, p in enumerate(model.parameters()):
                p.grad = grads[j][k].clone()
            opt.step()
        lrs = [torch.tensor([_group_of(opt, pl[j])["lr"] for (_, opt), pl in
                             zip(members, plists)], dtype=torch.float64)
               for j in range(len(stacked))]
        wds = [torch.tensor([_group_of(opt, pl[j])["weight_decay"] for (_, opt), pl in
                             zip(members, plists)], dtype=torch.float64)
               for j in range(len(stacked))]
        sopt.step(grads, lrs, wds)
        for j in range(len(stacked)):
            ref = torch.stack([pl[j].detach() for pl in plists])
            torch.testing.assert_close(stacked[j], ref, rtol=0, atol=1e-12)
    # biases get no decay: the groups really differ (else the test would not test them)
    assert any(_group_of(members[2][1], p)["weight_decay"] == 0 for p in plists[2])

    # the state handed to a real optimizer continues exactly where the stacked one is
    for k, (model, opt) in enumerate(members):
        for j, p in enumerate(model.parameters()):
            ours = sopt.member_state(k, j)
            theirs = opt.state[p]
            assert set(ours) == {n for n, v in theirs.items() if v is not None}
            for name, value in ours.items():
                torch.testing.assert_close(value.double(), theirs[name].double(), rtol=0,
                                           atol=1e-12)


@pytest.mark.parametrize("kind", ["adamw", "momentum", "rmsprop", "lion"])
def test_state_round_trip_through_the_real_layout(kind: str) -> None:
    members = _members(kind)
    plists = [list(m.parameters()) for m, _ in members]
    for model, opt in members:  # three real updates first
        for _ in range(3):
            for p in model.parameters():
                p.grad = torch.ones_like(p)
            opt.step()
    stacked = [torch.stack([pl[j].detach() for pl in plists]).clone()
               for j in range(len(plists[0]))]
    sopt = StackedOptimizer(kind, stacked, [member_hyper(kind, o.param_groups[0])
                                            for _, o in members])
    sopt.load_member_states([[opt.state[p] for p in pl] for (_, opt), pl in
                             zip(members, plists)])
    grads = [torch.full_like(s, 0.5) for s in stacked]
    for model, opt in members:
        for j, p in enumerate(model.parameters()):
            p.grad = grads[j][0].clone()
        opt.step()
    lrs = [torch.tensor([_group_of(o, pl[j])["lr"] for (_, o), pl in zip(members, plists)],
                        dtype=torch.float64) for j in range(len(stacked))]
    wds = [torch.tensor([_group_of(o, pl[j])["weight_decay"] for (_, o), pl in
                         zip(members, plists)], dtype=torch.float64)
           for j in range(len(stacked))]
    sopt.step(grads, lrs, wds)
    for j in range(len(stacked)):
        torch.testing.assert_close(stacked[j], torch.stack([pl[j].detach() for pl in plists]),
                                   rtol=0, atol=1e-12)


def test_select_drops_members() -> None:
    p = torch.zeros(3, 2, dtype=torch.float64)
    sopt = StackedOptimizer("adam", [p], [{"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}] * 3)
    sopt.step([torch.ones_like(p)], [torch.ones(3, dtype=torch.float64)],
              [torch.zeros(3, dtype=torch.float64)])
    keep = torch.tensor([0, 2])
    q = p.index_select(0, keep)
    sopt.select(keep, [q])
    assert sopt.members == 2 and sopt.state[0]["exp_avg"].shape == (2, 2)
    sopt.step([torch.ones_like(q)], [torch.ones(2, dtype=torch.float64)],
              [torch.zeros(2, dtype=torch.float64)])
    assert sopt.member_state(1, 0)["step"].item() == 2.0
