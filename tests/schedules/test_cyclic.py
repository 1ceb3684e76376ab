"""cyclic(...) against torch's CyclicLR run here; its spec, constructor and refusals."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.errors import LrlabError, SpecError
from lrlab.schedules import Context, cyclic, parse

torch = pytest.importorskip("torch")
from torch.optim import lr_scheduler as sched  # noqa: E402

from lrlab.scheduler import Scheduler  # noqa: E402

PEAK = 0.3


def torch_cyclic(n, period, low, up, mode="triangular", gamma=1.0, peaks=(PEAK,)):
    """LRs of each of n updates under torch's CyclicLR (step_size_up = U, down = period - U)."""
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": p}
                           for p in peaks])
    U = up * period if isinstance(up, float) else up
    s = sched.CyclicLR(opt, base_lr=[low * p for p in peaks], max_lr=list(peaks),
                       step_size_up=U, step_size_down=period - U, mode=mode, gamma=gamma,
                       cycle_momentum=False)
    out = []
    for _ in range(n):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        s.step()
    return out


def close(a, b, tol=1e-12):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert abs(x - y) <= tol, (i, x, y)


CASES = [
    (10, 0.1, 0.5, "triangular", 1.0),
    (7, 0.1, 0.5, "triangular", 1.0),  # odd period: 3.5 updates up, 3.5 down
    (7, 0.25, 2, "triangular", 1.0),  # up in whole updates
    (9, 0.0, 0.3, "triangular2", 1.0),
    (6, 0.1, 5, "triangular2", 1.0),  # up = 5 of 6
    (8, 0.1, 0.5, "exp_range", 0.99),
    (5, 0.3, 0.6, "exp_range", 0.9),
    (1, 0.1, 0.5, "triangular", 1.0),  # a cycle of one update never leaves low
]


@pytest.mark.parametrize("period,low,up,mode,gamma", CASES)
def test_matches_torch_cyclic_lr(period, low, up, mode, gamma):
    args = [f"low={low}", f"up={up}", f"mode={mode}"] + ([f"gamma={gamma}"] if gamma != 1 else [])
    spec = f"cyclic({period}, {', '.join(args)})"
    want = [lr for (lr,) in torch_cyclic(100, period, low, up, mode, gamma)]
    got = [PEAK * m for m in parse(spec).values(100)]
    close(got, want, tol=1e-12)
    assert parse(str(parse(spec))) == parse(spec)


@settings(max_examples=60, deadline=None)
@given(period=st.integers(2, 40), low=st.floats(0.0, 0.9), data=st.data(),
       mode=st.sampled_from(["triangular", "triangular2", "exp_range"]),
       gamma=st.floats(0.9, 1.0))
def test_matches_torch_random(period, low, data, mode, gamma):
    up = data.draw(st.one_of(st.floats(0.05, 0.95), st.integers(1, period - 1)))
    if mode != "exp_range":
        gamma = 1.0
    s = cyclic(period, low=low, up=up, mode=mode, gamma=gamma)
    assert parse(str(s)) == s
    want = [lr for (lr,) in torch_cyclic(3 * period + 5, period, low, up, mode, gamma)]
    close([PEAK * m for m in s.values(3 * period + 5)], want, tol=1e-9)


def test_through_the_scheduler_with_two_groups_and_low_lr():
    want = torch_cyclic(60, 10, 0.1, 0.5, "triangular2", peaks=(0.3, 0.03))
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": p}
                           for p in (0.3, 0.03)])
    s = Scheduler(opt, "cyclic(10, mode=triangular2)")
    got = []
    for _ in range(60):
        got.append([g["lr"] for g in opt.param_groups])
        opt.step()
        s.step()
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-12)
    # torch's absolute base_lr: low_lr= (a multiplier of each group's own peak when bound)
    r = parse("cyclic(10, low_lr=0.003)").resolve(Context(peak_lr=0.3))
    assert r == cyclic(10, low=0.01)


@pytest.mark.parametrize("count", [0, 1, 17, 55, 99])
def test_resume_mid_way_equals_uninterrupted(count):
    spec = "warmup(10) >> cyclic(1ep, up=0.3, mode=exp_range, gamma=0.995)"

    def make():
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=PEAK)
        return Scheduler(opt, spec, total_steps=100, steps_per_epoch=13)

    def run(s, n):
        out = []
        for _ in range(n):
            out.append(s.optimizer.param_groups[0]["lr"])
            s.optimizer.step()
            s.step()
        return out

    full = run(make(), 100)
    a = make()
    head = run(a, count)
    b = Scheduler.from_state_dict(
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=PEAK),
        pickle.loads(pickle.dumps(a.state_dict())))
    assert head + run(b, 100 - count) == full


def test_units_and_clock():
    # period in epochs, up in updates; the exp_range count is the phase's own clock
    s = parse("warmup(4) >> cyclic(2ep, up=3, mode=exp_range, gamma=0.9)")
    r = s.resolve(Context(steps_per_epoch=5))
    assert str(r) == "warmup(4) >> cyclic(10, up=3, mode=exp_range, gamma=0.9)"
    x = r.values(30)[4:]
    assert x[0] == pytest.approx(0.1) and x[3] == pytest.approx(0.1 + 0.9 * 0.9**3)
    t = parse("warmup(4) >> cyclic(10, mode=exp_range, gamma=0.9, clock=train)")
    assert t.values(30)[4 + 1] == pytest.approx(0.1 + 0.9 * (5 / 5) * 0.9**5)


@pytest.mark.parametrize("spec,needle", [
    ("cyclic()", "cyclic() needs period"),
    ("cyclic(-10)", ">= 0"),
    ("cyclic(0)", "positive duration"),
    ("cyclic(10.5)", "whole number of updates"),
    ("cyclic(10, up=0)", "positive duration"),
    ("cyclic(10, up=1.5)", "fraction in (0, 1) or a whole number of updates"),
    ("cyclic(10, up=-0.5)", ">= 0"),
    ("cyclic(10, up=10)", "must be shorter than the period"),
    ("cyclic(10, up=12)", "must be shorter than the period"),
    ("cyclic(10, low=1)", "low must be in [0, 1)"),
    ("cyclic(10, low=-0.1)", "low must be in [0, 1)"),
    ("cyclic(10, mode=triangle)", "mode must be one of triangular, triangular2, exp_range"),
    ("cyclic(10, gamma=0.99)", "gamma= is for mode=exp_range"),
    ("cyclic(10, mode=exp_range, gamma=0)", "gamma must be > 0"),
    ("cyclic(10, low=0.2, low_lr=0.01)", "give low= or low_lr=, not both"),
])
def test_bad_input(spec, needle):
    with pytest.raises(SpecError) as info:
        parse(spec)
    assert needle in str(info.value) and "position" in str(info.value)


def test_bad_input_found_when_bound():
    with pytest.raises(SpecError, match=r"up=1ep \(20 updates\) must be at least 1 update and "
                                        r"shorter than the period \(10 updates\)"):
        parse("cyclic(10, up=1ep)").resolve(Context(steps_per_epoch=20))
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(LrlabError, match="not below the peak LR"):
        Scheduler(opt, "cyclic(10, low_lr=0.5)")
    with pytest.raises(LrlabError, match="inf at update 309"):  # 10**309 > 1.8e308
        Scheduler(opt, "cyclic(10, mode=exp_range, gamma=10)", total_steps=1000)


def test_constructor_mirrors_the_spec():
    assert cyclic(2000) == parse("cyclic(2000)")
    assert cyclic("4ep", low=0.05, up=0.25, mode="triangular2") == parse(
        "cyclic(4ep, low=0.05, up=0.25, mode=triangular2)")
    assert str(cyclic(10, 0.2, 3)) == "cyclic(10, low=0.2, up=3)"
    assert math.isclose(cyclic(4).values(3)[2], 1.0)
