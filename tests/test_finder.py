"""LR range test: analytic stable range, exact restoration, early stops, groups, Lion, errors."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from lrlab.errors import LrlabError
from lrlab.finder import find_lr


def _half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out - y) ** 2).mean()


def _regression(n: int = 256, d: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(0.3, 3.0, d)
    w = torch.randn(d, 1, generator=g)
    y = x @ w + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def _gd_final_loss(x, y, lr, steps=300):
    """Plain full-batch gradient descent on 0.5*mean((xw-y)^2), written out by hand."""
    w = torch.zeros(x.shape[1], 1, dtype=torch.float64)
    x, y = x.double(), y.double()
    for _ in range(steps):
        w = w - lr * x.T @ (x @ w - y) / len(x)
    return float(0.5 * ((x @ w - y) ** 2).mean())


def test_suggestions_lie_in_the_analytic_stable_range():
    x, y = _regression()
    # Hessian of 0.5*mean((xw-y)^2) is X^T X / n; GD is stable iff lr < 2 / lambda_max.
    lam = torch.linalg.eigvalsh((x.T @ x / len(x)).double()).max().item()
    bound = 2 / lam
    # the bound itself, checked independently of the finder
    assert math.isfinite(_gd_final_loss(x, y, 0.95 * bound))
    assert not _gd_final_loss(x, y, 1.05 * bound) < 1e3
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for batches in ([(x, y)], [(x[i:i + 32], y[i:i + 32]) for i in range(0, len(x), 32)]):
        r = find_lr(model, opt, _half_mse, batches)
        names = {s.name for s in r.suggestions}
        assert names == {"steepest", "valley", "largest-stable"}
        for s in r.suggestions:
            assert bound * 1e-3 < s.lr < bound, (s.name, s.lr, bound)
            assert s.reason and "\n" not in s.reason
        assert r.chosen == "valley"
        assert 0 < r.chosen_lr < bound
        assert r.stopped_early and "exceeds 4" in r.stop_reason


def test_ramp_and_smoothing_follow_the_formulas():
    x, y = _regression(n=64)
    model = nn.Linear(x.shape[1], 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append(o.param_groups[0]["lr"]))
    for mode in ("exp", "linear"):
        seen.clear()
        r = find_lr(model, opt, _half_mse, [(x, y)], start=1e-4, end=1e-2, steps=20,
                    mode=mode, smooth=0.3)
        expect = [1e-4 * 100 ** (i / 19) if mode == "exp" else 1e-4 + (1e-2 - 1e-4) * i / 19
                  for i in range(20)]
        assert seen == pytest.approx(expect, rel=1e-12)
        assert r.lrs == pytest.approx(expect, rel=1e-12)
        m, ema = 0.0, []
        for i, v in enumerate(r.losses):
            m = 0.7 * m + 0.3 * v
            ema.append(m / (1 - 0.7 ** (i + 1)))
        assert r.smoothed == pytest.approx(ema, rel=1e-12)
        assert not r.stopped_early


def _lr_shaped_loss(opt):
    """A loss that is a known function of the current LR (the model only carries gradients)."""
    def loss_fn(out, y):
        lr = opt.param_groups[0]["lr"]
        u = math.log(lr / 1e-3)
        return out.sum() * 0 + (2 - math.tanh(u) + (lr / 0.1) ** 2)
    return loss_fn


def test_suggestions_on_a_known_curve():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    batch = (torch.ones(4, 2), torch.zeros(4, 1))
    r = find_lr(model, opt, _lr_shaped_loss(opt), [batch], start=1e-7, end=10, steps=161,
                smooth=1.0, diverge=1e9)
    step = 10 ** (8 / 160)  # LR ratio between neighbouring points
    # f(ln lr) = 2 - tanh(u) + (lr/0.1)^2: steepest where -sech^2(u) is most negative, u = 0
    steep = r.suggestion("steepest").lr
    assert 1e-3 / step**2 <= steep <= 1e-3 * step**2
    # descending where sech^2(u) >= 0.1 * 1: |u| <= acosh(sqrt(10)), symmetric about 1e-3
    assert 1e-3 / step**3 <= r.suggestion("valley").lr <= 1e-3 * step**3
    # minimum: sech^2(u) = 2 (lr/0.1)^2, solved by bisection on ln lr
    lo, hi = math.log(1e-3), math.log(10.0)
    for _ in range(100):
        mid = (lo + hi) / 2
        g = -1 / math.cosh(mid - math.log(1e-3)) ** 2 + 2 * (math.exp(mid) / 0.1) ** 2
        lo, hi = (mid, hi) if g < 0 else (lo, mid)
    lr_min = math.exp(lo)
    stable = r.suggestion("largest-stable").lr
    assert lr_min / 10 / step <= stable <= lr_min / 10 * step
    assert r.chosen == "valley"
    r2 = find_lr(model, opt, _lr_shaped_loss(opt), [batch], start=1e-7, end=10, steps=161,
                 smooth=1.0, diverge=1e9, choose="largest-stable")
    assert r2.chosen == "largest-stable" and r2.chosen_lr == stable


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                  nn.Dropout(0.3), nn.Linear(16, 3))

    def forward(self, x):
        return self.body(x)


def _snapshot(model, opt):
    tensors = [t.detach().clone() for t in [*model.parameters(), *model.buffers()]]
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    state = {id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
             for p, s in opt.state.items()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return tensors, grads, state, groups


def _assert_same(model, opt, snap):
    tensors, grads, state, groups = snap
    for t, s in zip([*model.parameters(), *model.buffers()], tensors):
        assert torch.equal(t, s)
    for p, g in zip(model.parameters(), grads):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert {id(p) for p in opt.state} == set(state)
    for p, s in opt.state.items():
        assert s.keys() == state[id(p)].keys()
        for k, v in s.items():
            assert torch.equal(v, state[id(p)][k]) if torch.is_tensor(v) else v == state[id(p)][k]
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == groups


@pytest.mark.parametrize("make", [
    lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01),
    lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
])
def test_model_optimizer_and_rng_restored_bit_for_bit(make):
    torch.manual_seed(1)
    model = _Net()
    opt = make(model.parameters())
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    for _ in range(3):  # give the optimizer some state, and leave gradients behind
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    params = list(model.parameters())
    ptrs = [p.data_ptr() for p in params]
    snap = _snapshot(model, opt)
    torch_state, py_state, np_state = torch.get_rng_state(), random.getstate(), \
        np.random.get_state()
    expect = (torch.rand(5), random.random(), np.random.rand(3))
    torch.set_rng_state(torch_state)
    random.setstate(py_state)
    np.random.set_state(np_state)

    def batches():
        for i in range(0, 64, 16):
            random.random(), np.random.rand()  # user code drawing from the RNGs
            yield x[i:i + 16], y[i:i + 16]

    r = find_lr(model, opt, nn.functional.cross_entropy, batches, steps=40)
    assert len(r.lrs) > 5
    _assert_same(model, opt, snap)
    assert not model.training
    assert list(model.parameters()) == params and all(
        a is b for a, b in zip(model.parameters(), params))
    assert [p.data_ptr() for p in params] == ptrs
    assert torch.equal(torch.rand(5), expect[0])
    assert random.random() == expect[1]
    assert np.array_equal(np.random.rand(3), expect[2])


def test_nan_mid_ramp_stops_cleanly_and_restores():
    torch.manual_seed(0)
    model = _Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    snap = _snapshot(model, opt)
    calls = []

    def loss_fn(out, y):
        calls.append(1)
        loss = nn.functional.cross_entropy(out, y)
        return loss * float("nan") if len(calls) == 30 else loss

    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    r = find_lr(model, opt, loss_fn, [(x, y)], steps=100)
    assert r.stopped_early
    assert "step 30 of 100" in r.stop_reason and "nan" in r.stop_reason
    assert len(r.lrs) == len(r.losses) == len(r.smoothed) == 29
    assert all(math.isfinite(v) for v in r.losses)
    _assert_same(model, opt, snap)
    json.dumps(r.to_dict(), allow_nan=False)


def test_exploding_lr_stops_on_the_divergence_rule():
    x, y = _regression(n=64)
    model = nn.Linear(x.shape[1], 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    r = find_lr(model, opt, _half_mse, [(x, y)], start=1e-3, end=1e3, steps=60, diverge=4.0)
    assert r.stopped_early
    assert r.smoothed[-1] > 4.0 * min(r.smoothed)
    assert all(s <= 4.0 * min(r.smoothed[:i + 1]) for i, s in enumerate(r.smoothed[:-1]))
    assert len(r.lrs) < 60


def test_param_groups_keep_their_ratio():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                           {"params": model[2].parameters(), "lr": 0.025}], lr=0.1)
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append([g["lr"] for g in o.param_groups]))
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    r = find_lr(model, opt, nn.functional.cross_entropy, [(x, y)], start=1e-5, end=1e-1,
                steps=20)
    assert len(seen) == len(r.lrs) == 20
    for (a, b), lr in zip(seen, r.lrs):
        assert a == pytest.approx(lr, rel=1e-12)
        assert b / a == pytest.approx(0.25, rel=1e-12)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.025]
    assert r.settings["group_ratios"] == [1.0, 0.25]


def test_tensor_lr_is_updated_and_restored_in_place():
    model = nn.Linear(3, 1)
    lr = torch.tensor(0.01)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    find_lr(model, opt, _half_mse, [(torch.randn(8, 3), torch.randn(8, 1))], steps=10)
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.01)


def test_lion_works_and_is_restored():
    from lrlab.optim import Lion

    torch.manual_seed(0)
    model = _Net()
    opt = Lion(model.parameters(), lr=1e-4, weight_decay=0.1)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    snap = _snapshot(model, opt)
    r = find_lr(model, opt, nn.functional.cross_entropy, [(x, y)], steps=60)
    assert r.chosen is not None and r.chosen_lr > 0
    assert r.stopped_early  # sign updates blow up long before lr 10
    _assert_same(model, opt, snap)


def test_batches_iterables_callables_and_one_shot_generators_cycle():
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = [(torch.randn(4, 3), torch.randn(4, 1)) for _ in range(3)]
    used = []

    def loss_fn(out, y):
        used.append(y.data_ptr())
        return _half_mse(out, y)

    ptrs = [b[1].data_ptr() for b in data]
    for batches in (data, lambda: iter(data), iter(data), (b for b in data)):
        used.clear()
        find_lr(model, opt, loss_fn, batches, start=1e-6, end=1e-3, steps=10, diverge=1e9)
        assert used == [ptrs[i % 3] for i in range(10)]
    with pytest.raises(LrlabError, match="nothing"):
        find_lr(model, opt, loss_fn, [], steps=10)
    with pytest.raises(LrlabError, match="pair"):
        find_lr(model, opt, loss_fn, [torch.randn(4, 3)], steps=10)


@pytest.mark.parametrize("kwargs", [
    {"start": 1.0, "end": 1.0}, {"start": 2.0, "end": 1.0}, {"start": 0.0},
    {"start": -1e-3}, {"steps": 4}, {"steps": 10.5}, {"start": float("nan")},
    {"end": float("inf")}, {"mode": "cubic"}, {"smooth": 0.0}, {"diverge": 1.0},
    {"safety": 0.5}, {"choose": "best"},
])
def test_bad_arguments_are_one_line_errors(kwargs):
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(LrlabError) as info:
        find_lr(model, opt, _half_mse, [(torch.randn(4, 3), torch.randn(4, 1))], **kwargs)
    assert "\n" not in str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_validation_curve_is_used_and_serialisable(tmp_path):
    x, y = _regression(n=128)
    model = nn.Linear(x.shape[1], 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 96, 16)]
    val = [(x[96:], y[96:])]
    r = find_lr(model, opt, _half_mse, batches, val_batches=val)
    assert r.val_losses is not None and len(r.val_losses) == len(r.lrs)
    assert r.curve is r.val_smoothed
    lam = torch.linalg.eigvalsh((x[:96].T @ x[:96] / 96).double()).max().item()
    for s in r.suggestions:
        assert s.lr < 2 / lam
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["chosen"] == r.chosen and len(d["suggestions"]) == len(r.suggestions)
    path = r.plot(tmp_path / "sub" / "curve.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["curve.png"]
