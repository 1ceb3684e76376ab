"""Schedules against torch's own LR schedulers, run here, to 1e-9 (torch only in tests)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch.optim import lr_scheduler as sched  # noqa: E402

from lrlab.schedules import Context, Plateau, PlateauState, parse  # noqa: E402

PEAK = 0.1


def torch_lrs(make, n: int, peak: float = PEAK) -> list[float]:
    """LR used by each of n optimizer updates under a torch scheduler stepped per update."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    s = make(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return out


def ours(spec: str, n: int, total: int | None = None) -> list[float]:
    s = parse(spec).resolve(Context(total_steps=total, peak_lr=PEAK))
    return [PEAK * m for m in s.values(n)]


def assert_close(a: list[float], b: list[float], tol: float = 1e-9) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert abs(x - y) <= tol, (i, x, y)


@pytest.mark.parametrize("T,eta_min", [(10, 0.0), (100, 0.0), (57, 1e-3)])
def test_cosine_annealing(T, eta_min):
    want = torch_lrs(lambda o: sched.CosineAnnealingLR(o, T_max=T, eta_min=eta_min), T + 1)
    assert_close(ours(f"cosine(end_lr={eta_min})", T + 1, total=T), want)
    assert_close(ours(f"cosine(end={eta_min / PEAK})", T + 1, total=T), want)


def test_cosine_annealing_closed_form():
    T, eta_min = 40, 2e-3
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=PEAK)
    s = sched.CosineAnnealingLR(opt, T_max=T, eta_min=eta_min)
    want = []
    for t in range(T + 1):
        s.last_epoch = t
        want.append(s._get_closed_form_lr()[0])
    assert_close(ours(f"cosine(end_lr={eta_min})", T + 1, total=T), want)


@pytest.mark.parametrize("milestones,gamma", [([3, 7], 0.1), ([10, 20, 25], 0.5), ([1], 0.3)])
def test_multistep(milestones, gamma):
    want = torch_lrs(lambda o: sched.MultiStepLR(o, milestones=milestones, gamma=gamma), 40)
    assert_close(ours(f"multistep({milestones}, gamma={gamma})", 40), want)


@pytest.mark.parametrize("gamma", [0.9, 0.99, 0.5])
def test_exponential(gamma):
    want = torch_lrs(lambda o: sched.ExponentialLR(o, gamma=gamma), 60)
    assert_close(ours(f"exp({gamma})", 60), want)


@pytest.mark.parametrize("every,gamma", [(1, 0.9), (5, 0.5), (7, 0.1)])
def test_step_lr(every, gamma):
    want = torch_lrs(lambda o: sched.StepLR(o, step_size=every, gamma=gamma), 50)
    assert_close(ours(f"factor({gamma}, every={every})", 50), want)


@pytest.mark.parametrize("T,start", [(5, 0.1), (10, 1 / 3), (4, 1e-3)])
def test_linear_lr_warmup(T, start):
    want = torch_lrs(
        lambda o: sched.LinearLR(o, start_factor=start, end_factor=1.0, total_iters=T), 20
    )
    assert_close(ours(f"warmup({T}, start={start}) >> constant()", 20), want)


@pytest.mark.parametrize("W,N", [(10, 100), (1, 20), (25, 60)])
def test_hf_linear_warmup_then_linear_decay(W, N):
    def hf(step):  # transformers.get_linear_schedule_with_warmup's lambda, written out
        if step < W:
            return step / max(1, W)
        return max(0.0, (N - step) / max(1, N - W))

    want = torch_lrs(lambda o: sched.LambdaLR(o, hf), N)
    assert_close(ours(f"warmup({W}, start=0) >> linear()", N, total=N), want)


@pytest.mark.parametrize("W,N", [(10, 100), (3, 33)])
def test_hf_cosine_with_warmup(W, N):
    def hf(step):  # transformers.get_cosine_schedule_with_warmup (num_cycles=0.5)
        if step < W:
            return step / max(1, W)
        progress = (step - W) / max(1, N - W)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))

    want = torch_lrs(lambda o: sched.LambdaLR(o, hf), N)
    assert_close(ours(f"warmup({W}, start=0) >> cosine()", N, total=N), want)


def test_d2l_square_root_schedule():
    # D2L 12.11 SquareRootScheduler: lr * (num_update + 1) ** -0.5
    want = torch_lrs(lambda o: sched.LambdaLR(o, lambda t: (t + 1.0) ** -0.5), 80)
    assert_close(ours("rsqrt()", 80), want)


@pytest.mark.parametrize("W", [4, 16])
def test_hf_inverse_sqrt(W):
    def hf(step):  # transformers.get_inverse_sqrt_schedule with timescale = num_warmup_steps
        if step < W:
            return step / max(1, W)
        shift = W - W
        return 1.0 / math.sqrt((step + shift) / W)

    want = torch_lrs(lambda o: sched.LambdaLR(o, hf), 100)
    assert_close(ours(f"warmup({W}, start=0) >> rsqrt({W})", 100), want)


@pytest.mark.parametrize("T0,mult,eta_min", [(10, 1, 0.0), (5, 2, 1e-3), (3, 3, 0.0)])
def test_cosine_warm_restarts(T0, mult, eta_min):
    want = torch_lrs(
        lambda o: sched.CosineAnnealingWarmRestarts(o, T_0=T0, T_mult=mult, eta_min=eta_min), 150
    )
    got = ours(f"restarts(period={T0}, mult={mult}, end_lr={eta_min})", 150)
    assert_close(got, want)


# -- plateau ---------------------------------------------------------------------------


def torch_plateau(metrics, p: Plateau) -> list[float]:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    s = sched.ReduceLROnPlateau(
        opt, mode=p.mode, factor=p.factor, patience=p.patience, threshold=p.threshold,
        threshold_mode="rel", cooldown=p.cooldown, min_lr=p.min, eps=0.0,
    )
    out = []
    for m in metrics:
        s.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


def our_plateau(metrics, p: Plateau) -> list[float]:
    state = PlateauState(p)
    out = []
    for m in metrics:
        state.report(m)
        out.append(state.factor)
    return out


FIXED = [
    [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8],
    [5, 4, 4, 4, 4, 4, 4, 4, 3.9999, 3.9999, 3.9999, 3.9999, 2, 2, 2, 2, 2, 2],
    [1.0, math.nan, math.nan, 0.5, math.nan, math.nan, math.nan, 0.4, 0.4, 0.4, 0.4, 0.4],
]


@pytest.mark.parametrize("metrics", FIXED)
@pytest.mark.parametrize(
    "p",
    [Plateau(), Plateau(patience=2), Plateau(patience=1, cooldown=2, factor=0.5),
     Plateau(patience=0, min=0.05, factor=0.3), Plateau(mode="max", patience=1),
     Plateau(patience=1, threshold=0.1)],
)
def test_plateau_matches_torch(metrics, p):
    assert our_plateau(metrics, p) == pytest.approx(torch_plateau(metrics, p), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    metrics=st.lists(
        st.one_of(st.floats(-5, 5, allow_nan=False), st.just(math.nan), st.sampled_from([1, 2])),
        max_size=40,
    ),
    factor=st.floats(0.05, 0.95),
    patience=st.integers(0, 4),
    cooldown=st.integers(0, 3),
    threshold=st.sampled_from([0.0, 1e-4, 0.05]),
    minimum=st.sampled_from([0.0, 0.01, 0.2]),
    mode=st.sampled_from(["min", "max"]),
)
def test_plateau_matches_torch_random(metrics, factor, patience, cooldown, threshold, minimum,
                                      mode):
    p = Plateau(factor=factor, patience=patience, cooldown=cooldown, threshold=threshold,
                min=minimum, mode=mode)
    assert our_plateau(metrics, p) == pytest.approx(torch_plateau(metrics, p), rel=1e-12)


# -- plateau parity: threshold_mode, eps, per-group min_lr --------------------------------

PEAKS = (0.5, 0.02)


def torch_plateau_groups(metrics, p: Plateau, peaks=PEAKS, **kw) -> list[list[float]]:
    """Each group's LR after each metric, with torch's ReduceLROnPlateau on groups at ``peaks``."""
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr}
                           for lr in peaks])
    min_lr = p.min_lr if p.min_lr is not None else [p.min * lr for lr in peaks]
    s = sched.ReduceLROnPlateau(
        opt, mode=p.mode, factor=p.factor, patience=p.patience, threshold=p.threshold,
        threshold_mode=p.threshold_mode, cooldown=p.cooldown,
        min_lr=list(min_lr) if isinstance(min_lr, tuple) else min_lr, eps=p.eps, **kw,
    )
    out = []
    for m in metrics:
        s.step(m)
        out.append([g["lr"] for g in opt.param_groups])
    return out


def our_plateau_groups(metrics, p: Plateau, peaks=PEAKS) -> list[list[float]]:
    state = PlateauState(p, peaks=peaks)
    out = []
    for m in metrics:
        state.report(m)
        out.append([peak * f for peak, f in zip(peaks, state.factors)])
    return out


PARITY = [
    Plateau(threshold_mode="abs", threshold=0.05, patience=1),
    Plateau(threshold_mode="abs", threshold=0.5, patience=0, mode="max"),
    Plateau(threshold_mode="abs", threshold=0.0, patience=1, cooldown=2, factor=0.5),
    Plateau(patience=0, factor=0.5, min_lr=0.01),  # group 1 (peak 0.02) stops at once
    Plateau(patience=0, factor=0.5, min_lr=(0.1, 0.001), mode="max", threshold=0.01),
    Plateau(patience=0, factor=0.5, eps=0.004),  # group 1 stops when a cut is <= 0.004
    Plateau(patience=1, factor=0.3, eps=1e-8, min_lr=(0.0, 0.005), cooldown=1,
            threshold_mode="abs", threshold=1e-3),
]


@pytest.mark.parametrize("metrics", FIXED)
@pytest.mark.parametrize("p", PARITY, ids=str)
def test_plateau_parity_with_torch(metrics, p):
    got, want = our_plateau_groups(metrics, p), torch_plateau_groups(metrics, p)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-12, abs=1e-15)


@settings(max_examples=80, deadline=None)
@given(
    metrics=st.lists(
        st.one_of(st.floats(-5, 5, allow_nan=False), st.just(math.nan), st.sampled_from([1, 2])),
        max_size=40,
    ),
    factor=st.floats(0.05, 0.95),
    patience=st.integers(0, 3),
    cooldown=st.integers(0, 2),
    threshold=st.sampled_from([0.0, 1e-4, 0.05, 0.5]),
    threshold_mode=st.sampled_from(["rel", "abs"]),
    mode=st.sampled_from(["min", "max"]),
    # eps values stay clear of the LR cuts' exact sizes (no tie for rounding to decide)
    eps=st.sampled_from([0.0, 1e-8, 3.3e-3, 0.0123]),
    min_lr=st.one_of(st.none(), st.sampled_from([0.0, 0.0077]),
                     st.tuples(st.sampled_from([0.0, 0.033]), st.sampled_from([0.0, 0.0011]))),
)
def test_plateau_parity_with_torch_random(metrics, factor, patience, cooldown, threshold,
                                          threshold_mode, mode, eps, min_lr):
    p = Plateau(factor=factor, patience=patience, cooldown=cooldown, threshold=threshold,
                threshold_mode=threshold_mode, mode=mode, eps=eps, min_lr=min_lr)
    got, want = our_plateau_groups(metrics, p), torch_plateau_groups(metrics, p)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-12, abs=1e-15)


def test_plateau_parity_through_the_scheduler():
    """lrlab.Scheduler with 'plateau(...)' against torch's class on the same two groups."""
    from lrlab.scheduler import Scheduler

    spec = "plateau(factor=0.5, patience=1, threshold_mode=abs, threshold=0.01, " \
           "min_lr=[0.1, 0.006], eps=1e-08)"
    p = parse(spec).plateau
    assert parse(str(parse(spec))) == parse(spec) and p.min_lr == (0.1, 0.006)
    metrics = [3, 2.995, 2.99, 2.9, 2.9, 2.9, 2.9, 2.9, 2.9, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    opt = torch.optim.SGD([{"params": [torch.zeros(1, requires_grad=True)], "lr": lr}
                           for lr in PEAKS])
    ours_ = Scheduler(opt, spec, total_steps=100)
    got = []
    for m in metrics:
        ours_.report(m)
        got.append([g["lr"] for g in opt.param_groups])
    want = torch_plateau_groups(metrics, p)
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-12)
    assert got[-1][0] != got[-1][1] * PEAKS[0] / PEAKS[1]  # the floors parted the groups


def test_plateau_state_dict_roundtrip():
    p = Plateau(patience=1, cooldown=1, factor=0.5)
    a = PlateauState(p)
    for m in [3, 2, 2, 2, 2]:
        a.report(m)
    b = PlateauState(p)
    b.load_state_dict(a.state_dict())
    for m in [2, 2, 2, 1, 1, 1]:
        a.report(m)
        b.report(m)
        assert a.factor == b.factor
    assert a.state_dict() == b.state_dict()
