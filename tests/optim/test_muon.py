"""Muon (torch.optim.Muon) for the hidden Linear weights, AdamW for the rest, as one
optimizer: the split, the first two updates against the formula written here, one object
for the scheduler, state_dict and the range test."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from lrlab import Scheduler
from lrlab.errors import LrlabError
from lrlab.finder import find_lr
from lrlab.lab.models.transformer import Transformer
from lrlab.lab.models.zoo import build_model
from lrlab.optim import build_optimizer
from lrlab.optim.groups import muon_names, output_layer
from lrlab.optim.muon import MuonAdamW

# Newton-Schulz quintic coefficients of Jordan's Muon, written out for the reference
NS_A, NS_B, NS_C = 3.4445, -4.7750, 2.0315


def newton_schulz5(g: torch.Tensor) -> torch.Tensor:
    """X <- a X + (b A + c A^2) X, A = X X^T, five times, from X = G/||G||_F, on the wide
    orientation (transpose a tall matrix first, back at the end); in float64."""
    x = g.double()
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    x = x / max(x.norm().item(), 1e-7)
    for _ in range(5):
        a = x @ x.T
        x = NS_A * x + (NS_B * a + NS_C * a @ a) @ x
    return x.T if tall else x


class Net(nn.Module):
    """in 3 -> hidden 5 -> hidden 4 -> out 2: two hidden Linear weights for Muon (a tall 5x3
    and a wide 4x5) and the head and biases for AdamW. The loss sum(c_p * p) has gradient c_p
    wherever the weights are, so each update can be written out by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 5)
        self.fc2 = nn.Linear(5, 4)
        self.head = nn.Linear(4, 2)
        self.double()

    def loss(self, coeffs: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum((coeffs[n] * p).sum() for n, p in self.named_parameters())


def _grads(seed: int, model: nn.Module) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.randn(p.shape, generator=gen, dtype=torch.float64)
            for n, p in model.named_parameters()}


LR, WD = 0.02, 0.1


def test_the_split_leaves_head_embeddings_biases_norms_and_convs_to_adamw() -> None:
    lenet = build_model("lenet", None)  # conv 0, conv 3, Linear 7, 9 and the head 11
    assert output_layer(lenet) == "11"
    assert muon_names(lenet) == {"7.weight", "9.weight"}
    tf = Transformer(vocab=11, context=3, width=16, depth=2, heads=2, classes=7)
    names = muon_names(tf)
    assert output_layer(tf) == "head"
    assert names == {f"blocks.{i}.{m}.weight" for i in range(2)
                     for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}
    opt = build_optimizer("muon", tf, lr=1e-3, weight_decay=0.1)
    kinds = {n: g["use_muon"] for g in opt.param_groups for n in g["param_names"]}
    assert not kinds["patch_embed.weight"] and not kinds["pos_embed"] and \
        not kinds["head.weight"] and not kinds["blocks.0.norm1.weight"]
    assert not opt.param_groups[0]["use_muon"]  # group 0 is AdamW: its betas are the run's
    lenet_opt = build_optimizer("muon", lenet, lr=1e-3)
    conv = {n for g in lenet_opt.param_groups if not g["use_muon"] for n in g["param_names"]}
    assert {"0.weight", "3.weight", "11.weight"} <= conv  # 4-D kernels and the head: AdamW


def test_a_weight_tied_to_an_embedding_is_not_muons() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(6, 4)
            self.hidden = nn.Linear(4, 4)
            self.out = nn.Linear(4, 6, bias=False)
            self.out.weight = self.emb.weight

    assert muon_names(Tied()) == {"hidden.weight"}
    assert muon_names(Tied(), exclude="hidden.*") == set()


def test_first_updates_follow_the_formula() -> None:
    """Update 1, then update 2 (where Nesterov momentum changes the direction):

        B_t = mu B_{t-1} + (1-mu) g_t                     (torch's buf.lerp_(g, 1-mu))
        U_t = (1-mu) g_t + mu B_t                         (Nesterov)
        O_t = NS5(U_t)                                    (coefficients above)
        W  <- W (1 - lr wd) - lr * 0.2 sqrt(max(A, B)) O_t  (match_rms_adamw, A x B weight)

    on the hidden weights, and AdamW (decoupled decay, bias correction) on biases and the
    head. Newton-Schulz runs in bfloat16 in torch, so Muon's weights are compared at 3% of
    the step (plain momentum instead of Nesterov misses by more than 10%, the original
    sqrt(max(1, A/B)) scale by a factor 2 or more); AdamW's are exact."""
    torch.manual_seed(0)
    model = Net()
    opt = build_optimizer("muon", model, lr=LR, weight_decay=WD)
    assert isinstance(opt, MuonAdamW)
    muon = {n for g in opt.param_groups if g["use_muon"] for n in g["param_names"]}
    assert muon == {"fc1.weight", "fc2.weight"}
    decayed = {n for g in opt.param_groups if g["weight_decay"] for n in g["param_names"]}
    ref = {n: p.detach().clone() for n, p in model.named_parameters()}
    state: dict[str, dict[str, torch.Tensor]] = {n: {} for n in ref}
    mu, b1, b2, eps = 0.95, 0.9, 0.999, 1e-8
    for t in (1, 2):
        coeffs = _grads(t, model)
        opt.zero_grad()
        model.loss(coeffs).backward()
        opt.step()
        for n, w in ref.items():
            g, s = coeffs[n], state[n]
            wd = WD if n in decayed else 0.0
            if n in muon:
                s["B"] = mu * s.get("B", torch.zeros_like(g)) + (1 - mu) * g
                o = newton_schulz5((1 - mu) * g + mu * s["B"])
                step = LR * 0.2 * math.sqrt(max(w.shape))
                ref[n] = w * (1 - LR * wd) - step * o
                got = model.get_parameter(n).detach()
                torch.testing.assert_close(got, ref[n], rtol=0, atol=0.03 * step,
                                           msg=f"{n}, update {t}")
                if t == 2:  # the tolerance tells Nesterov from plain momentum
                    plain = w * (1 - LR * wd) - step * newton_schulz5(s["B"])
                    assert (got - plain).abs().max() > 0.1 * step, n
                ref[n] = model.get_parameter(n).detach().clone()  # no bf16 drift into t=2
            else:
                s["m"] = b1 * s.get("m", torch.zeros_like(g)) + (1 - b1) * g
                s["v"] = b2 * s.get("v", torch.zeros_like(g)) + (1 - b2) * g * g
                m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
                ref[n] = w * (1 - LR * wd) - LR * m_hat / (v_hat.sqrt() + eps)
                torch.testing.assert_close(model.get_parameter(n).detach(), ref[n],
                                           rtol=1e-12, atol=1e-14, msg=f"{n}, update {t}")


def test_newton_schulz_orthogonalises() -> None:
    """The reference itself: NS5's singular values land in roughly (0.5, 1.5) (Jordan)."""
    g = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s = torch.linalg.svdvals(newton_schulz5(g))
    assert bool(((s > 0.5) & (s < 1.5)).all()), s


def _two_steps(opt: torch.optim.Optimizer, model: Net, seeds: tuple[int, ...]) -> None:
    for seed in seeds:
        opt.zero_grad()
        model.loss(_grads(seed, model)).backward()
        opt.step()


def test_state_dict_round_trips_and_resumed_updates_equal() -> None:
    torch.manual_seed(0)
    a = Net()
    b = Net()
    b.load_state_dict(a.state_dict())
    opt_a = build_optimizer("muon", a, lr=LR, weight_decay=WD)
    _two_steps(opt_a, a, (1, 2))
    saved = copy.deepcopy(opt_a.state_dict())  # as written to disk: no tensor shared
    opt_b = build_optimizer("muon", b, lr=LR, weight_decay=WD)
    _two_steps(opt_b, b, (1, 2))  # b took the same steps: now replace its state by a's
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(saved)
    assert [g["use_muon"] for g in opt_b.param_groups] == \
        [g["use_muon"] for g in opt_a.param_groups]
    _two_steps(opt_a, a, (3, 4))
    _two_steps(opt_b, b, (3, 4))
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), n
    assert set(opt_a.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    kinds = [set(s) for s in opt_a.state_dict()["state"].values()]
    assert {"momentum_buffer"} in kinds


@pytest.mark.parametrize("spec", ["warmup(2) >> cosine()", "warmup(auto) >> linear()",
                                  "wsd(decay=30%)", "restarts(cycles=2)",
                                  "multistep([3, 6], gamma=0.5)", "constant(0.5)"])
def test_every_schedule_scales_both_kinds_of_group(spec: str) -> None:
    model = Net()
    opt = build_optimizer("muon", model, lr=LR, weight_decay=WD, betas=(0.9, 0.6))
    sched = Scheduler(opt, spec, total_steps=10)
    for t in range(10):
        m = sched.lr_at(t)[0] / LR
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(m * g["initial_lr"]), (spec, t)
        _two_steps(opt, model, (t,))
        sched.step()
    if "auto" in spec:  # 2/(1-beta2) of the AdamW groups: 5 updates
        assert sched.lr_at(0)[0] == pytest.approx(LR / 5)


def test_the_range_test_restores_a_muon_optimizer() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                          nn.Linear(8, 3))
    opt = build_optimizer("muon", model, lr=1e-3, weight_decay=0.1)
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = find_lr(model, opt, nn.functional.cross_entropy, [(x, y)], start=1e-5, end=1.0,
                     steps=20)
    assert len(result.lrs) >= 5
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
    assert not opt.state and all(g["lr"] == 1e-3 for g in opt.param_groups)


@pytest.mark.parametrize("kwargs, word", [
    ({"ns_steps": 0}, "ns_steps"),
    ({"ns_steps": 100}, "ns_steps"),
    ({"adjust_lr_fn": "fancy"}, "adjust_lr_fn"),
    ({"nesterov": "yes"}, "nesterov"),
    ({"ns_coefficients": (1.0, 2.0)}, "ns_coefficients"),
    ({"momentum": -0.5}, "momentum"),
    ({"muon_eps": 0.0}, "muon_eps"),
    ({"alpha": 0.9}, "'alpha'"),
])
def test_bad_hyper_is_one_line(kwargs: dict, word: str) -> None:
    with pytest.raises(LrlabError) as info:
        build_optimizer("muon", Net(), lr=0.1, **kwargs)
    msg = str(info.value)
    assert word in msg and "'muon'" in msg and "\n" not in msg, msg


def test_muon_needs_a_model_or_flagged_groups() -> None:
    with pytest.raises(LrlabError, match="needs a model"):
        build_optimizer("muon", Net().parameters(), lr=0.1)
    w = nn.Parameter(torch.zeros(3, 3))
    with pytest.raises(LrlabError, match="2-D"):
        build_optimizer("muon", [{"params": [nn.Parameter(torch.zeros(3))], "use_muon": True}],
                        lr=0.1)
    opt = build_optimizer("muon", [{"params": [w], "use_muon": True}], lr=0.1)
    assert opt.param_groups[0]["use_muon"] and opt.param_groups[0]["initial_lr"] == 0.1
