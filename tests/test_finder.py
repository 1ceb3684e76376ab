"""LR range test (lrlab.finder): ramp and averages against their formulas, suggestions on
known curves at the default settings (clean and noisy), the analytic stable range of
gradient descent, "nothing trained", the validation curve, exact restoration of every
state, early stops, param-group ratios, Lion, batches and argument errors.

The CLI and ``--lr auto`` are tested in test_find_lr_cli.py."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from lrlab.errors import LrlabError
from lrlab.finder import SUGGESTIONS, Suggestion, _choose, find_lr, ramp, smooth_curve
from lrlab.optim import Lion

DEFAULT_STEP = 10 ** (8 / 99)  # LR ratio between neighbouring points of the default ramp


def _half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out - y) ** 2).mean()


def _regression(n: int = 256, d: int = 8, seed: int = 0, lo: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(lo, 3.0, d)  # ill-conditioned
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


# -- the analytic stable range of gradient descent ---------------------------------------------
def _gd_ramp_losses(x, y, lrs, batch, scale):
    """The range test's curve written out by hand: gradient descent on scale/2*mean((xw-y)^2)
    from w = 0, the loss of batch i recorded before the update with lrs[i]."""
    w = torch.zeros(x.shape[1], 1, dtype=torch.float64)
    x, y = x.double(), y.double()
    starts = [0] if batch is None else list(range(0, len(x), batch))
    losses = []
    for i, lr in enumerate(lrs):
        s = starts[i % len(starts)]
        xb, yb = (x, y) if batch is None else (x[s:s + batch], y[s:s + batch])
        r = xb @ w - yb
        losses.append(float(scale / 2 * (r ** 2).mean()))
        if not math.isfinite(losses[-1]):
            break
        w = w - lr * scale * xb.T @ r / len(xb)
    return losses


@pytest.mark.parametrize("loss, scale, batch, end_factor", [
    (_half_mse, 1.0, None, None),   # 0.5*mean: Hessian X^T X / n, full batch
    (_half_mse, 1.0, 32, None),     # the same, mini-batches
    (nn.functional.mse_loss, 2.0, 64, 100.0),  # mean: Hessian 2 X^T X / n; ramp to 100x bound
])
def test_suggestions_against_gradient_descent_written_out(loss, scale, batch, end_factor):
    x, y = _regression(n=512, lo=0.5) if end_factor else _regression()
    # GD on a quadratic is stable iff lr < 2 / lambda_max(Hessian)
    lam = torch.linalg.eigvalsh((scale * x.T @ x / len(x)).double()).max().item()
    bound = 2 / lam
    assert math.isfinite(_gd_final_loss(x * math.sqrt(scale), y * math.sqrt(scale),
                                        0.95 * bound))
    assert not _gd_final_loss(x * math.sqrt(scale), y * math.sqrt(scale), 1.05 * bound) < 1e3
    model = nn.Linear(x.shape[1], 1, bias=False)
    nn.init.zeros_(model.weight)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(x, y)] if batch is None else \
        [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]
    kwargs = {"start": 1e-5, "end": end_factor * bound, "steps": 120} if end_factor else {}
    r = find_lr(model, opt, loss, batches, **kwargs)
    # the recorded curve is the hand-written one
    hand = _gd_ramp_losses(x, y, r.lrs, batch, scale)
    i_low = min(range(len(r.losses)), key=lambda i: hand[i])
    # float32 against float64, up to just before the lowest point: from there on the ramp is
    # past the stability bound and both blow their rounding differences up geometrically
    assert r.losses[:i_low] == pytest.approx(hand[:i_low], rel=1e-2)
    assert r.trained and r.curve_used == "train"
    assert [s.name for s in r.suggestions] == list(SUGGESTIONS)
    # steepest and valley lie where gradient descent is stable
    for name in ("steepest", "valley"):
        assert bound * 1e-3 < r.suggestion(name).lr < bound, (name, bound)
    # minimum: where the hand-written curve is lowest, or up to three steps of the ramp
    # before it when that lowest point is the edge of a cliff (the fit's window sees it)
    lowest, step = r.lrs[i_low], r.lrs[1] / r.lrs[0]
    assert lowest / step ** 3 * 0.999 <= r.suggestion("minimum").lr <= lowest * step * 1.001
    for s in r.suggestions:
        assert s.reason and "\n" not in s.reason
    assert r.chosen == "minimum" and r.chosen_lr == r.suggestion("minimum").lr
    assert r.stopped_early and "exceeds 4" in r.stop_reason


# -- formulas ----------------------------------------------------------------------------------
def _tricube_line(values, window):
    """The local-linear tricube fit of ln(values), written out with numpy's polyfit."""
    h = (window - 1) // 2
    z = np.log(np.asarray(values, dtype=float))
    out = []
    for i in range(len(z)):
        k = np.arange(max(0, i - h), min(len(z), i + h + 1))
        w = (1 - (np.abs(k - i) / (h + 1)) ** 3) ** 3
        slope, intercept = np.polyfit(k - i, z[k], 1, w=np.sqrt(w))  # polyfit weighs residuals
        out.append(math.exp(intercept))
    return out


def test_ramp_averages_and_smoothing_follow_the_formulas():
    x, y = _regression(n=64)
    model = nn.Linear(x.shape[1], 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append(o.param_groups[0]["lr"]))
    for mode in ("exp", "linear"):
        seen.clear()
        r = find_lr(model, opt, _half_mse, [(x, y)], start=1e-4, end=1e-2, steps=20,
                    mode=mode, smooth=0.3, window=7)
        expect = [1e-4 * 100 ** (i / 19) if mode == "exp" else 1e-4 + (1e-2 - 1e-4) * i / 19
                  for i in range(20)]
        assert seen == pytest.approx(expect, rel=1e-12)
        assert r.lrs == pytest.approx(expect, rel=1e-12)
        # the stop's average: bias-corrected EMA with weight 0.3
        m, ema = 0.0, []
        for i, v in enumerate(r.losses):
            m = 0.7 * m + 0.3 * v
            ema.append(m / (1 - 0.7 ** (i + 1)))
        assert r.running == pytest.approx(ema, rel=1e-12)
        # the suggestions' curve: a centred tricube-weighted line through ln(loss)
        assert r.smoothed == pytest.approx(_tricube_line(r.losses, 7), rel=1e-9)
        assert r.settings["window"] == 7
        assert not r.stopped_early
    assert ramp(1.0, 2.0, 5, "linear") == pytest.approx([1.0, 1.25, 1.5, 1.75, 2.0])


def test_the_smoothed_curve_has_no_delay_even_at_the_ends():
    # a loss falling geometrically (a straight line in ln(loss)) is reproduced exactly at
    # every point, ends included; a causal moving average would trail it by (1-a)/a steps
    line = [3.0 * 0.9 ** i for i in range(40)]
    smoothed, gains = smooth_curve(line, 11)
    assert smoothed == pytest.approx(line, rel=1e-9)
    # symmetric weights in the interior: their squares sum to less than at the ends
    assert gains[20] < gains[0] and gains[0] == pytest.approx(gains[-1])
    # a quadratic bump: the minimum stays where it is (symmetric weights, no lag)
    bowl = [math.exp(0.01 * (i - 23) ** 2) for i in range(60)]
    smoothed, _ = smooth_curve(bowl, 11)
    assert min(range(60), key=lambda i: smoothed[i]) == 23
    # losses <= 0 are fitted as they are, without the log
    shifted = [1.0 - 0.1 * i for i in range(40)]  # crosses 0: a straight line
    assert smooth_curve(shifted, 11)[0] == pytest.approx(shifted, abs=1e-9)
    assert smooth_curve([1.0, 2.0, 0.5], 1)[0] == [1.0, 2.0, 0.5]


# -- known curves ------------------------------------------------------------------------------
def _lr_shaped_loss(opt, knee=1e-3, blow=0.1, noise=0.0, seed=0, val=None):
    """A loss that is a known function of the current LR (the model only carries gradients):
    2 - tanh(ln(lr/knee)) + (lr/blow)^2, times exp(noise * N(0, 1)) from a seeded generator.
    ``val=(knee, blow)``: in eval() mode (the validation pass) the same curve with those."""
    rng = np.random.default_rng(seed)

    def loss_fn(out, y):
        lr = float(opt.param_groups[0]["lr"])
        k, b = val if (val is not None and not out.requires_grad) else (knee, blow)
        v = 2 - math.tanh(math.log(lr / k)) + (lr / b) ** 2
        return out.sum() * 0 + v * math.exp(noise * rng.standard_normal())
    return loss_fn


def _truth(knee=1e-3, blow=0.1):
    """Where the known curve is lowest, steepest and its valley's middle, from its derivative
    in x = ln(lr): f'(x) = -sech^2(x - ln knee) + 2 (e^x / blow)^2."""
    def slope(x):
        return -1 / math.cosh(x - math.log(knee)) ** 2 + 2 * (math.exp(x) / blow) ** 2

    def root(g, lo, hi):  # bisection for g(lo) < 0 < g(hi)
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if g(mid) < 0 else (lo, mid)
        return (lo + hi) / 2

    x_min = root(slope, math.log(knee), math.log(10.0))
    # steepest: minimum of f' (ternary search left of the minimum)
    lo, hi = math.log(knee) - 5, x_min
    for _ in range(200):
        a, b = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        lo, hi = (lo, b) if slope(a) < slope(b) else (a, hi)
    x_steep = (lo + hi) / 2
    # valley: the stretch where f' <= 0.1 * min f'; its geometric middle
    limit = 0.1 * slope(x_steep)
    x_a = root(lambda x: limit - slope(x), math.log(knee) - 10, x_steep)
    x_b = root(lambda x: slope(x) - limit, x_steep, x_min)
    return math.exp(x_min), math.exp(x_steep), math.exp((x_a + x_b) / 2)


def test_suggestions_on_a_known_curve_at_the_default_settings():
    """Default ramp and smoothing. The causal moving average the stop watches trails the loss
    by 19 steps; read on it, the minimum was found at 0.079 instead of 0.012."""
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    batch = (torch.ones(4, 2), torch.zeros(4, 1))
    lr_min, lr_steep, lr_valley = _truth()
    assert 0.011 < lr_min < 0.013 and 9e-4 < lr_steep < 1.1e-3  # the truth, sanity-checked
    r = find_lr(model, opt, _lr_shaped_loss(opt), [batch])
    stable = r.suggestion("minimum")
    assert lr_min / 1.5 <= stable.lr <= lr_min * 1.5  # about two steps of the ramp
    assert stable.lr == r.lrs[stable.index]
    assert lr_steep / DEFAULT_STEP ** 2 <= r.suggestion("steepest").lr <= \
        lr_steep * DEFAULT_STEP ** 2
    assert lr_valley / DEFAULT_STEP ** 2 <= r.suggestion("valley").lr <= \
        lr_valley * DEFAULT_STEP ** 2
    assert r.chosen == "minimum" and r.chosen_lr == stable.lr
    for name in SUGGESTIONS:
        again = find_lr(model, opt, _lr_shaped_loss(opt), [batch], choose=name)
        assert again.chosen == name and again.chosen_lr == r.suggestion(name).lr
        assert again.chosen_reason == "as asked"


@pytest.mark.parametrize("seed", range(8))
def test_suggestions_on_a_noisy_known_curve(seed):
    """5 % multiplicative noise per batch (seeded): every located point stays near the truth."""
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    batch = (torch.ones(4, 2), torch.zeros(4, 1))
    lr_min, lr_steep, lr_valley = _truth()
    r = find_lr(model, opt, _lr_shaped_loss(opt, noise=0.05, seed=seed), [batch])
    assert r.trained
    assert lr_min / 1.5 <= r.suggestion("minimum").lr <= lr_min * 1.5
    assert lr_steep / DEFAULT_STEP ** 3 <= r.suggestion("steepest").lr <= \
        lr_steep * DEFAULT_STEP ** 3
    assert lr_valley / 2.5 <= r.suggestion("valley").lr <= lr_valley * 2.5


def test_suggestions_are_read_on_the_validation_curve():
    """Training and validation losses with different known curves: the suggestions follow
    the validation one (its minimum is ten times lower)."""
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    batch = (torch.ones(4, 2), torch.zeros(4, 1))
    loss_fn = _lr_shaped_loss(opt, val=(1e-4, 0.01))
    r = find_lr(model, opt, loss_fn, [batch], val_batches=[batch])
    assert r.curve_used == "validation" and r.curve is r.val_smoothed
    assert len(r.val_losses) == len(r.losses) == len(r.lrs)
    lr_min, _, _ = _truth(1e-4, 0.01)
    assert lr_min / 1.5 <= r.suggestion("minimum").lr <= lr_min * 1.5
    assert r.smoothed == pytest.approx(_tricube_line(r.losses, 11), rel=1e-9)
    assert r.val_smoothed == pytest.approx(_tricube_line(r.val_losses, 11), rel=1e-9)
    assert "validation" in r.summary_lines()[1]


# -- nothing trained ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["constant", "constant-huge-end", "noise", "rising"])
def test_nothing_trained_suggests_no_lr(case):
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    batch = (torch.ones(4, 2), torch.zeros(4, 1))
    rng = np.random.default_rng(3)

    def loss_fn(out, y):
        lr = float(opt.param_groups[0]["lr"])
        value = {"constant": 1.0, "constant-huge-end": 1.0,
                 "noise": math.exp(0.1 * rng.standard_normal()),
                 "rising": 1.0 + math.log1p(lr / 1e-7) / 100}[case]
        return out.sum() * 0 + value

    end = 1e20 if case == "constant-huge-end" else 10.0
    r = find_lr(model, opt, loss_fn, [batch], end=end)
    assert not r.trained
    assert r.suggestions == [] and r.chosen is None and r.chosen_lr is None
    assert r.chosen_reason.startswith("nothing trained")
    assert r.summary_lines()[-1].startswith("no LR suggested: nothing trained")
    json.dumps(r.to_dict(), allow_nan=False)


def test_a_real_fall_counts_as_training_under_noise():
    # the same noise as above on a curve that falls by 30 %: trained
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    rng = np.random.default_rng(3)

    def loss_fn(out, y):
        lr = float(opt.param_groups[0]["lr"])
        return out.sum() * 0 + (1 - 0.3 * (lr > 1e-3)) * math.exp(0.1 * rng.standard_normal())

    r = find_lr(model, opt, loss_fn, [(torch.ones(4, 2), torch.zeros(4, 1))])
    assert r.trained and r.chosen is not None


def test_a_missing_choice_falls_back_and_says_so():
    only = [Suggestion("minimum", 0.01, "lowest here", 50)]
    assert _choose(only, "valley", "") == (
        "minimum", 0.01, "no valley suggestion on this curve; the default: "
        "minimum")
    assert _choose([], None, "nothing trained: flat") == (None, None, "nothing trained: flat")


# -- restoration -------------------------------------------------------------------------------
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

    r = find_lr(model, opt, nn.functional.cross_entropy, batches, steps=40,
                val_batches=[(x[:16], y[:16])])
    assert len(r.lrs) > 5 and r.curve_used == "validation"
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
    assert len(r.lrs) == len(r.losses) == len(r.smoothed) == len(r.running) == 29
    assert all(math.isfinite(v) for v in r.losses)
    _assert_same(model, opt, snap)
    json.dumps(r.to_dict(), allow_nan=False)


def test_exploding_lr_stops_on_the_divergence_rule():
    x, y = _regression(n=64)
    model = nn.Linear(x.shape[1], 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    r = find_lr(model, opt, _half_mse, [(x, y)], start=1e-3, end=1e3, steps=60, diverge=4.0)
    assert r.stopped_early
    assert r.running[-1] > 4.0 * min(r.running)
    assert all(s <= 4.0 * min(r.running[:i + 1]) for i, s in enumerate(r.running[:-1]))
    assert len(r.lrs) < 60


# -- param groups and optimizers ---------------------------------------------------------------
@pytest.mark.parametrize("which", ["sgd", "lion"])
def test_param_groups_keep_their_ratio(which):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    if which == "sgd":
        opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                               {"params": model[2].parameters(), "lr": 0.025}], lr=0.1)
    else:
        opt = Lion([{"params": model[0].parameters(), "lr": 1e-3},
                    {"params": model[2].parameters(), "lr": 2.5e-4}], weight_decay=0.1)
    before = [g["lr"] for g in opt.param_groups]
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append([float(g["lr"])
                                                            for g in o.param_groups]))
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    r = find_lr(model, opt, nn.functional.cross_entropy, [(x, y)], start=1e-5, end=1e-1,
                steps=20, diverge=1e9)
    assert len(seen) == len(r.lrs) == 20
    for (a, b), lr in zip(seen, r.lrs):
        assert a == pytest.approx(lr, rel=1e-12)
        assert b / a == pytest.approx(0.25, rel=1e-12)
    # the exponential ramp: lr_i = start * (end/start)^(i/(n-1))
    assert r.lrs[:5] == pytest.approx([1e-5 * 1e4 ** (i / 19) for i in range(5)])
    assert [g["lr"] for g in opt.param_groups] == before
    assert r.settings["group_ratios"] == pytest.approx([1.0, 0.25])


def test_tensor_lr_is_updated_and_restored_in_place():
    model = nn.Linear(3, 1)
    lr = torch.tensor(0.01)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    seen = []
    opt.register_step_pre_hook(lambda o, a, k: seen.append(float(o.param_groups[0]["lr"])))
    r = find_lr(model, opt, _half_mse, [(torch.randn(8, 3), torch.randn(8, 1))], steps=10)
    assert seen == pytest.approx(r.lrs[:len(seen)], rel=1e-6)
    assert opt.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.01)


def test_lion_is_restored_and_its_choice_lies_below_its_blow_up():
    torch.manual_seed(0)
    model = _Net()
    opt = Lion(model.parameters(), lr=1e-4, weight_decay=0.1)
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    snap = _snapshot(model, opt)
    r = find_lr(model, opt, nn.functional.cross_entropy, [(x, y)], steps=60)
    assert r.stopped_early  # sign updates blow up long before lr 10
    # the choice is the LR of the smoothed curve's lowest point, below where it stopped
    i_min = min(range(len(r.curve)), key=lambda i: r.curve[i])
    assert r.chosen_lr == r.lrs[i_min] < r.lrs[-1]
    _assert_same(model, opt, snap)


# -- batches and arguments ---------------------------------------------------------------------
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
    with pytest.raises(LrlabError, match="val_batches is empty"):
        find_lr(model, opt, loss_fn, data, steps=10, val_batches=[])


@pytest.mark.parametrize("kwargs", [
    {"start": 1.0, "end": 1.0}, {"start": 2.0, "end": 1.0}, {"start": 0.0},
    {"start": -1e-3}, {"steps": 4}, {"steps": 10.5}, {"start": float("nan")},
    {"end": float("inf")}, {"mode": "cubic"}, {"smooth": 0.0}, {"smooth": 1.5},
    {"diverge": 1.0}, {"window": 0}, {"window": 4}, {"window": 2.0},
    {"choose": "best"},
])
def test_bad_arguments_are_one_line_errors(kwargs):
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(LrlabError) as info:
        find_lr(model, opt, _half_mse, [(torch.randn(4, 3), torch.randn(4, 1))], **kwargs)
    assert "\n" not in str(info.value)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_result_is_serialisable_and_the_plot_is_written_atomically(tmp_path):
    x, y = _regression(n=128)
    model = nn.Linear(x.shape[1], 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 96, 16)]
    val = [(x[96:], y[96:])]
    r = find_lr(model, opt, _half_mse, batches, val_batches=val)
    lam = torch.linalg.eigvalsh((x[:96].T @ x[:96] / 96).double()).max().item()
    for s in r.suggestions:
        assert s.lr < 2 / lam
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    assert d["chosen"] == r.chosen and d["curve_used"] == "validation"
    assert [s["name"] for s in d["suggestions"]] == [s.name for s in r.suggestions]
    path = r.plot(tmp_path / "sub" / "curve.png")
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["curve.png"]
    assert r.plot(tmp_path / "sub" / "bare").name == "bare.png"
    assert r.plot(tmp_path / "v.svg").read_bytes().lstrip().startswith(b"<?xml")
    for bad in (tmp_path / "x.foo", tmp_path):
        with pytest.raises(LrlabError, match="plot"):
            r.plot(bad)
