"""Property tests over generated schedules (random chains of random phases)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.schedules import (
    Context,
    constant,
    cosine,
    exp,
    factor,
    linear,
    multistep,
    onecycle,
    parse,
    poly,
    restarts,
    rsqrt,
    warmup,
    wsd,
)

unit = st.floats(0.0, 1.0)
KINDS = ["constant", "warmup", "linear", "cosine", "poly", "rsqrt", "exp", "factor", "multistep",
         "restarts", "wsd", "onecycle"]
DECAYS = ["linear", "cosine", "poly", "wsd"]


@st.composite
def phase(draw, kind: str, T: int, with_steps: bool = True):
    """A phase of the given kind and length T with random valid arguments."""
    steps = T if with_steps else None
    if kind == "constant":
        return constant(draw(st.floats(0.0, 2.0)), steps=steps)
    if kind == "warmup":
        start = draw(st.one_of(st.none(), unit))
        return warmup(T, start=start, shape=draw(st.sampled_from(["linear", "exp"])))
    if kind == "linear":
        return linear(draw(unit), steps=steps)
    if kind == "cosine":
        return cosine(draw(unit), steps=steps)
    if kind == "poly":
        return poly(draw(st.floats(0.1, 5.0)), end=draw(unit), steps=steps)
    if kind == "rsqrt":
        return rsqrt(draw(st.floats(0.1, 100.0)), steps=steps)
    if kind == "exp":
        return exp(draw(st.floats(0.5, 1.0, exclude_min=True)), steps=steps)
    if kind == "factor":
        return factor(draw(st.floats(0.05, 1.0)), draw(st.integers(1, 10)),
                      floor=draw(st.floats(0.0, 0.5)), steps=steps)
    if kind == "multistep":
        ms = draw(st.lists(st.integers(1, 2 * T), min_size=1, max_size=5, unique=True))
        return multistep(sorted(ms), draw(st.floats(0.05, 1.0)), steps=steps)
    if kind == "restarts":
        mult = draw(st.one_of(st.just(1.0), st.floats(1.0, 3.0)))
        common = dict(mult=mult, decay=draw(st.floats(0.1, 1.0)), end=draw(unit), steps=steps)
        if draw(st.booleans()):
            return restarts(cycles=draw(st.integers(1, min(5, T))), **common)
        return restarts(period=draw(st.integers(1, 20)), **common)
    if kind == "wsd":
        if T >= 2 and draw(st.booleans()):
            decay = draw(st.floats(max(0.05, 1.0 / T), 0.95))
        else:
            decay = draw(st.integers(1, T))
        shape = draw(st.sampled_from(["linear", "cosine", "1-sqrt"]))
        return wsd(decay, shape=shape, end=draw(unit), steps=steps)
    if kind == "onecycle":
        return onecycle(pct=draw(st.floats(0.2, 0.8)), div=draw(st.floats(1.0, 100.0)),
                        final_div=draw(st.floats(1.0, 1e4)), steps=steps)
    raise AssertionError(kind)


@st.composite
def chains(draw):
    """(schedule, total_steps): 1-4 phases, the last one possibly open-ended."""
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
    lengths = [draw(st.integers(5 if k == "onecycle" else 1, 40)) for k in kinds]
    open_last = kinds[-1] != "warmup" and draw(st.booleans())
    phases = [
        draw(phase(k, T, with_steps=not (open_last and i == len(kinds) - 1)))
        for i, (k, T) in enumerate(zip(kinds, lengths))
    ]
    s = phases[0]
    for p in phases[1:]:
        s = s >> p
    total = sum(lengths) + (0 if open_last else draw(st.integers(0, 10)))
    return s, total


@settings(max_examples=150, deadline=None)
@given(chains())
def test_generated_schedules_are_finite_and_nonnegative(case):
    s, total = case
    r = s.resolve(Context(total_steps=total))
    vals = r.values(total + 10)
    assert all(math.isfinite(v) and v >= 0 for v in vals)


@settings(max_examples=150, deadline=None)
@given(chains(), st.data())
def test_values_equals_calls(case, data):
    s, total = case
    r = s.resolve(Context(total_steps=total))
    n = total + 10
    full = [r(t) for t in range(n)]
    assert r.values(n) == full
    ev = r.evaluator()
    assert [ev(t) for t in range(n)] == full
    start = data.draw(st.integers(0, n))
    assert r.values(n - start, start) == full[start:]
    assert len(r.boundaries()) == len(r.phases) - 1


@settings(max_examples=200, deadline=None)
@given(chains())
def test_generated_schedules_round_trip(case):
    s, total = case
    assert parse(str(s)) == s
    assert str(parse(str(s))) == str(s)
    r = s.resolve(Context(total_steps=total))
    assert parse(str(r)) == r
    assert hash(parse(str(s))) == hash(s)


def _phase_values(p, T):
    return p.values(T + 4)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60), st.data())
def test_warmups_rise_to_one(T, data):
    w = data.draw(phase("warmup", T))
    v = _phase_values(w, T)
    assert all(b >= a for a, b in zip(v, v[1:]))  # start is drawn in [0, 1]
    assert v[T] == 1.0 and v[-1] == 1.0
    if w.start is None:
        assert v[T - 1] == 1.0
        assert v[0] > 0  # never a wasted zero-LR step
    else:
        assert math.isclose(v[0], w.start, abs_tol=1e-15)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DECAYS + ["restarts"]), st.integers(1, 60), st.data())
def test_decays_fall_to_their_end(kind, T, data):
    p = data.draw(phase(kind, T))
    if kind == "restarts" and p.period is not None:
        p = restarts(cycles=1, end=p.end, steps=T)
    v = _phase_values(p, T)
    assert math.isclose(v[0], 1.0, abs_tol=1e-12)
    assert all(b <= a + 1e-15 for a, b in zip(v, v[1:])) or kind == "restarts"
    assert all(math.isclose(x, p.end, abs_tol=1e-12) for x in v[T:])


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["exp", "factor", "multistep", "rsqrt"]), st.integers(1, 60), st.data())
def test_open_decays_are_nonincreasing(kind, T, data):
    p = data.draw(phase(kind, T, with_steps=False))
    v = p.values(3 * T)
    assert v[0] == 1.0  # gamma^0, (1 + 0)^-1/2; factor's floor is drawn <= 0.5
    assert all(b <= a for a, b in zip(v, v[1:]))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 50), st.integers(1, 50), st.sampled_from(DECAYS + ["restarts"]), st.data())
def test_warmup_then_decay_is_continuous(W, T, kind, data):
    after = data.draw(phase(kind, T, with_steps=False))
    s = (warmup(W) >> after).resolve(Context(total_steps=W + T))
    assert s(W - 1) == 1.0  # warmup(W) reaches 1 on its last update ...
    assert math.isclose(s(W), 1.0, abs_tol=1e-12)  # ... and the decay starts at 1
    start = data.draw(unit)
    s = (warmup(W, start=start) >> after).resolve(Context(total_steps=W + T))
    # start= warmup: the next phase's first value is where the ramp's next step would be
    assert math.isclose(s(W) - s(W - 1), (1 - start) / W, abs_tol=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), unit, st.sampled_from(DECAYS))
def test_decay_then_constant_end_is_continuous(T, end, kind):
    p = {"linear": linear(end, steps=T), "cosine": cosine(end, steps=T),
         "poly": poly(1.0, end=end, steps=T), "wsd": wsd(T, end=end, steps=T)}[kind]
    s = p >> constant(end)
    assert math.isclose(s(T), end, abs_tol=1e-12)
    assert math.isclose(p(T), s(T), abs_tol=1e-12)
    # the linear-shaped ones take their last step of size (1 - end)/T into the constant
    if kind in ("linear", "poly", "wsd"):
        assert math.isclose(s(T - 1) - s(T), (1 - end) / T, abs_tol=1e-12)
