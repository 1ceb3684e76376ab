"""restarts(...) with a warmup in every cycle and decaying or listed peaks, against optax's
``sgdr_schedule`` written here as a formula (optax is not a dependency)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.errors import SpecError
from lrlab.schedules import Context, parse, restarts


def optax_linear(init, end, steps, count):
    """optax.linear_schedule: init -> end over ``steps``, then end."""
    frac = min(count, steps) / steps
    return init + (end - init) * frac


def optax_cosine_decay(init, decay_steps, alpha, count):
    """optax.cosine_decay_schedule (exponent 1)."""
    count = min(count, decay_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * count / decay_steps))
    return init * ((1 - alpha) * cosine + alpha)


def optax_warmup_cosine(init, peak, warmup, decay_steps, end, count):
    """optax.warmup_cosine_decay_schedule: decay_steps counts the warmup too."""
    alpha = 0.0 if peak == 0 else end / peak
    if count < warmup:
        return optax_linear(init, peak, warmup, count)
    return optax_cosine_decay(peak, decay_steps - warmup, alpha, count - warmup)


def optax_sgdr(cycles, count):
    """optax.sgdr_schedule: join_schedules of one warmup_cosine_decay per cycle, each seeing
    the count since its boundary (the last one runs on after its end)."""
    boundary = 0
    for i, c in enumerate(cycles):
        if count < boundary + c["decay_steps"] or i == len(cycles) - 1:
            return optax_warmup_cosine(c["init"], c["peak"], c["warmup"], c["decay_steps"],
                                       c["end"], count - boundary)
        boundary += c["decay_steps"]
    raise AssertionError


def close(a, b, tol=1e-12):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert abs(x - y) <= tol, (i, x, y)


@pytest.mark.parametrize("L,W,peaks,init,end", [
    (100, 10, [1.0, 0.7, 0.4], 0.0, 0.0),
    (37, 5, [1.0, 1.0], 0.01, 0.001),  # odd cycle length, several equal peaks
    (20, 1, [0.5, 1.0, 0.25, 0.8], 0.1, 0.05),  # peaks in any order
])
def test_listed_peaks_are_optax_sgdr(L, W, peaks, init, end):
    cycles = [dict(init=init, peak=p, warmup=W, decay_steps=L, end=end) for p in peaks]
    n = L * len(peaks) + 15  # and after the last cycle: end
    want = [optax_sgdr(cycles, t) for t in range(n)]
    spec = f"restarts(period={L}, peaks={peaks}, warmup={W}, start={init}, end={end})"
    s = parse(spec)
    assert parse(str(s)) == s
    close(s.values(n), want)
    close([s(t) for t in range(n)], want)


@pytest.mark.parametrize("decay", [0.5, 0.8, 1.0])
def test_decaying_peaks_with_warmup_fill_the_phase(decay):
    """optax's sgdr with geometric peaks; cycles=k fitted to training like cycles= alone."""
    L, W, k = 50, 8, 4
    cycles = [dict(init=0.0, peak=decay**i, warmup=W, decay_steps=L, end=0.0) for i in range(k)]
    s = parse(f"restarts(cycles={k}, decay={decay}, warmup={W}, start=0)")
    r = s.resolve(Context(total_steps=L * k))
    close(r.values(L * k + 3), [optax_sgdr(cycles, t) for t in range(L * k + 3)])


def test_absolute_start_and_end_and_epoch_units():
    base = 0.4
    cycles = [dict(init=1e-4, peak=base * p, warmup=6, decay_steps=30, end=1e-5)
              for p in (1.0, 0.5)]
    spec = "restarts(period=3ep, peaks=[1, 0.5], warmup=0.6ep, start_lr=0.0001, end_lr=1e-05)"
    r = parse(spec).resolve(Context(steps_per_epoch=10, peak_lr=base))
    assert r == restarts(period=30, peaks=[1, 0.5], warmup=6, start=1e-4 / base,
                         end=1e-5 / base)
    close([base * m for m in r.values(70)], [optax_sgdr(cycles, t) for t in range(70)])


def test_warmup_without_start_ramps_like_warmup():
    # start left out: like warmup(W), the first update already moves: p (x+1)/W
    s = restarts(period=10, warmup=4, decay=0.5)
    v = s.values(20)
    close(v[:4], [0.25, 0.5, 0.75, 1.0])
    close(v[10:14], [0.5 * 0.25, 0.5 * 0.5, 0.5 * 0.75, 0.5])
    assert v[4] == pytest.approx(1.0) and v[9] == pytest.approx((1 + math.cos(math.pi * 5 / 6))
                                                                / 2)


@settings(max_examples=50, deadline=None)
@given(L=st.integers(3, 30), data=st.data(), init=st.floats(0, 0.5), end=st.floats(0, 0.2),
       peaks=st.lists(st.floats(0.05, 2.0), min_size=1, max_size=4))
def test_random_cycles_against_optax(L, data, init, end, peaks):
    W = data.draw(st.integers(1, L - 1))
    cycles = [dict(init=init, peak=p, warmup=W, decay_steps=L, end=end) for p in peaks]
    s = restarts(period=L, peaks=peaks, warmup=W, start=init, end=end)
    assert parse(str(s)) == s
    n = L * len(peaks) + 5
    close(s.values(n), [optax_sgdr(cycles, t) for t in range(n)], tol=1e-9)


def test_one_spec_on_the_training_clock_after_a_global_warmup():
    # timm's cycle_decay with a warmup only at the start is warmup >> restarts(clock=train);
    # the per-cycle warmup is optax's. Both are single specs:
    a = parse("warmup(10, start=0) >> restarts(period=50, decay=0.5, clock=train)")
    b = parse("restarts(period=50, decay=0.5, warmup=10, start=0)")
    va, vb = a.resolve(Context(total_steps=150)).values(150), b.values(150)
    assert va[:10] == pytest.approx(vb[:10])  # the same first ramp
    assert va[50] == pytest.approx(0.5) and vb[50] == 0.0  # restart: straight to 0.5 vs ramp


@pytest.mark.parametrize("spec,needle", [
    ("restarts(period=10, warmup=10)", "shorter than the first cycle"),
    ("restarts(period=10, warmup=-1)", ">= 0"),
    ("restarts(period=10, warmup=0)", "positive duration"),
    ("restarts(period=10, peaks=[])", "must not be empty"),
    ("restarts(period=10, peaks=[1, -0.5])", "must be >= 0"),
    ("restarts(cycles=2, peaks=[1, 0.5])", "peaks= sets the number of cycles"),
    ("restarts(period=10, peaks=[1, 0.5], decay=0.5)", "give decay= or peaks=, not both"),
    ("restarts(period=10, start=0)", "it needs warmup="),
    ("restarts(period=10, warmup=2, start=0.1, start_lr=0.1)", "not both"),
    ("restarts(warmup=5)", "exactly one of cycles= or period="),
])
def test_bad_input(spec, needle):
    with pytest.raises(SpecError) as info:
        parse(spec).resolve(Context(total_steps=100))
    assert needle in str(info.value)


def test_a_fitted_period_too_short_for_the_warmup_is_found_when_bound():
    with pytest.raises(SpecError, match=r"warmup=30 \(30 updates\) must be shorter than the "
                                        r"first cycle \(25 updates\)"):
        parse("restarts(peaks=[1, 0.5, 0.3, 0.2], warmup=30)").resolve(Context(total_steps=100))
