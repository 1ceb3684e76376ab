"""Prodigy (Mishchenko & Defazio 2024, prodigyopt): its first two updates against the
D-estimate recursion written here; lr is a multiplier the schedule scales; one lr for all."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrlab import Scheduler
from lrlab.errors import LrlabError
from lrlab.optim import build_optimizer

A = {"weight": torch.tensor([[1.0, 0.5, 2.0], [0.25, 3.0, 1.5]], dtype=torch.float64),
     "bias": torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)}
C = {"weight": torch.tensor([[0.3, -1.0, 0.2], [0.7, 0.1, -0.4]], dtype=torch.float64),
     "bias": torch.tensor([-0.6, 0.2, 0.9], dtype=torch.float64)}


class Quadratic(nn.Module):
    """f = sum_p sum(A_p p^2)/2 + sum(C_p p): gradient A_p p + C_p, which moves with p, so
    Prodigy's <g, p0 - p> is not zero from the second update on."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]],
                                                dtype=torch.float64))
        self.bias = nn.Parameter(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))

    def loss(self) -> torch.Tensor:
        return sum((A[n] * p**2).sum() / 2 + (C[n] * p).sum()
                   for n, p in self.named_parameters())


def prodigy_reference(params: dict[str, torch.Tensor], lrs: list[float], wd: dict[str, float]
                      ) -> list[tuple[dict[str, torch.Tensor], float]]:
    """Parameters and D after each update (prodigyopt defaults: beta1 0.9, beta2 0.999,
    beta3 = sqrt(beta2), eps 1e-8, d0 1e-6, d_coef 1, no growth limit, decoupled decay, no
    bias correction), with one D shared by all tensors:

        dlr = D_k * lr_k
        r_{k+1} = beta3 r_k + (D_k/d0) dlr sum_p <g_p, p0 - p>
        s_p <- beta3 s_p + (D_k/d0) dlr g_p
        m_p <- beta1 m_p + (1-beta1) D_k g_p ;  v_p <- beta2 v_p + (1-beta2) D_k^2 g_p^2
        D_{k+1} = max(D_k, r_{k+1} / sum_p ||s_p||_1)
        p <- p - wd dlr p - dlr m_p / (sqrt(v_p) + D_{k+1} eps)
    """
    b1, b2, eps, d0 = 0.9, 0.999, 1e-8, 1e-6
    b3 = math.sqrt(b2)
    p = {n: t.clone() for n, t in params.items()}
    p0 = {n: t.clone() for n, t in params.items()}
    zero = {n: torch.zeros_like(t) for n, t in params.items()}
    s, m, v = dict(zero), dict(zero), dict(zero)
    d, r = d0, 0.0
    out = []
    for lr in lrs:
        g = {n: A[n] * p[n] + C[n] for n in p}
        dlr = d * lr
        r = b3 * r + (d / d0) * dlr * sum(float((g[n] * (p0[n] - p[n])).sum()) for n in p)
        for n in p:
            s[n] = b3 * s[n] + (d / d0) * dlr * g[n]
            m[n] = b1 * m[n] + (1 - b1) * d * g[n]
            v[n] = b2 * v[n] + (1 - b2) * d * d * g[n] ** 2
        d_new = max(d, r / sum(float(s[n].abs().sum()) for n in p))
        for n in p:
            p[n] = p[n] - wd[n] * dlr * p[n] - dlr * m[n] / (v[n].sqrt() + d_new * eps)
        d = d_new
        out.append(({n: t.clone() for n, t in p.items()}, d))
    return out


def test_first_updates_follow_the_d_recursion() -> None:
    """Update 1 moves by d0·lr·(1-beta1)·g/(sqrt(1-beta2)|g| + eps) per entry and keeps D at
    d0 (p = p0, so the numerator is 0); update 2 raises D by the formula."""
    model = Quadratic()
    opt = build_optimizer("prodigy", model, lr=1.0, weight_decay=0.1)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = prodigy_reference(start, [1.0, 1.0], {"weight": 0.1, "bias": 0.0})
    g1 = {n: A[n] * start[n] + C[n] for n in start}
    first = {n: start[n] - (0.1 * 1e-6 * start[n] if n == "weight" else 0.0)
             - 1e-6 * 0.1 * g1[n] / (math.sqrt(0.001) * g1[n].abs() + 1e-8) for n in start}
    for n in start:  # the closed form of update 1 and the recursion agree
        torch.testing.assert_close(ref[0][0][n], first[n], rtol=1e-12, atol=0)
    for t, (params, d) in enumerate(ref, start=1):
        opt.zero_grad()
        model.loss().backward()
        opt.step()
        assert opt.param_groups[0]["d"] == pytest.approx(d, rel=1e-12), t
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.detach(), params[n], rtol=1e-12, atol=1e-15,
                                       msg=f"{n}, update {t}")
    assert ref[0][1] == 1e-6 and ref[1][1] > 1e-6


def test_the_schedule_multiplies_the_lr_multiplier() -> None:
    model = Quadratic()
    opt = build_optimizer("prodigy", model, lr=1.0)
    sched = Scheduler(opt, "warmup(4) >> cosine()", total_steps=8)
    lrs = []
    for _ in range(3):
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        model.loss().backward()
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.75])
    ref = prodigy_reference({"weight": Quadratic().weight.detach(),
                             "bias": Quadratic().bias.detach()}, lrs,
                            {"weight": 0.0, "bias": 0.0})
    torch.testing.assert_close(model.weight.detach(), ref[-1][0]["weight"], rtol=1e-12,
                               atol=1e-15)


@pytest.mark.parametrize("kwargs, word", [
    ({"d0": 0.0}, "d0"),
    ({"d_coef": -1.0}, "d_coef"),
    ({"growth_rate": 0.5}, "growth_rate"),
    ({"beta3": 1.0}, "beta3"),
    ({"slice_p": 0}, "slice_p"),
    ({"decouple": "yes"}, "decouple"),
    ({"lr_mult": {"bias": 2.0}}, "share one lr"),
    ({"momentum": 0.9}, "'momentum'"),
])
def test_bad_hyper_is_one_line(kwargs: dict, word: str) -> None:
    with pytest.raises(LrlabError) as info:
        build_optimizer("prodigy", Quadratic(), lr=1.0, **kwargs)
    msg = str(info.value)
    assert word in msg and "'prodigy'" in msg and "\n" not in msg, msg


def test_growth_rate_may_be_unbounded() -> None:
    opt = build_optimizer("prodigy", Quadratic(), lr=1.0, growth_rate=float("inf"))
    assert opt.param_groups[0]["growth_rate"] == float("inf")
