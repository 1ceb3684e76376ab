"""Each phase against its formula, written out independently here; resolution rules."""

from __future__ import annotations

import math
import pickle

import pytest

from lrlab.errors import LrlabError, SpecError
from lrlab.schedules import (
    PHASES,
    Chain,
    Context,
    Duration,
    Plateau,
    Schedule,
    constant,
    cosine,
    exp,
    factor,
    linear,
    multistep,
    onecycle,
    parse,
    plateau,
    poly,
    restarts,
    rsqrt,
    untuned_warmup_steps,
    warmup,
    wsd,
)

TOL = 1e-12


def run(spec: str | Schedule, n: int, **ctx) -> list[float]:
    s = parse(spec) if isinstance(spec, str) else spec
    return s.resolve(Context(**ctx)).values(n)


def assert_close(got: list[float], want: list[float], tol: float = TOL) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert math.isclose(g, w, rel_tol=tol, abs_tol=tol), (i, g, w)


# -- docs/design.md examples (peak 10, 10 updates, LR read before each step) ------------


def test_design_example_warmup_linear():
    lrs = [10 * m for m in run("warmup(2, start=0) >> linear()", 10, total_steps=10)]
    assert_close(lrs, [0, 5, 10, 8.75, 7.5, 6.25, 5, 3.75, 2.5, 1.25], 1e-9)


def test_design_example_warmup_cosine():
    lrs = [10 * m for m in run("warmup(2, start=0) >> cosine()", 10, total_steps=10)]
    want = [10 * t / 2 for t in range(2)]
    want += [10 * (1 + math.cos(math.pi * (t - 2) / 8)) / 2 for t in range(2, 10)]
    assert_close(lrs, want, 1e-9)
    listed = [0, 5, 10, 9.619, 8.536, 6.913, 5, 3.087, 1.464, 0.381]
    assert [round(x, 3) for x in lrs] == listed


def test_design_example_warmup_alone():
    lrs = [10 * m for m in warmup(4).values(8)]
    assert_close(lrs, [2.5, 5, 7.5, 10, 10, 10, 10, 10], 1e-9)


# -- every phase against its formula ---------------------------------------------------


@pytest.mark.parametrize("v", [1.0, 0.3, 2.0])
def test_constant(v):
    assert_close(constant(v).values(20), [v] * 20)


@pytest.mark.parametrize("T", [1, 3, 10])
def test_warmup_linear(T):
    want = [min(1.0, (u + 1) / T) for u in range(T + 5)]
    assert_close(warmup(T).values(T + 5), want)
    assert warmup(T)(T - 1) == 1.0  # reaches the peak on its last update


@pytest.mark.parametrize("T,s", [(1, 0.0), (4, 0.0), (7, 0.1), (10, 0.5)])
def test_warmup_start(T, s):
    want = [s + (1 - s) * u / T if u < T else 1.0 for u in range(T + 5)]
    assert_close(warmup(T, start=s).values(T + 5), want)


@pytest.mark.parametrize("T", [1, 5, 12])
def test_warmup_exp(T):
    k = 5.0
    want = [
        (1 - math.exp(-k * (u + 1) / T)) / (1 - math.exp(-k)) if u < T else 1.0
        for u in range(T + 3)
    ]
    got = warmup(T, shape="exp").values(T + 3)
    assert_close(got, want)
    assert got[T - 1] == 1.0
    s = 0.2
    want = [
        s + (1 - s) * (1 - math.exp(-k * u / T)) / (1 - math.exp(-k)) if u < T else 1.0
        for u in range(T + 3)
    ]
    assert_close(warmup(T, start=s, shape="exp").values(T + 3), want)


@pytest.mark.parametrize(
    "beta2,want", [(0.999, 2000), (0.99, 200), (0.98, 100), (0.95, 40), (0.9, 20), (0.0, 2),
                   (0.995, 400)]
)
def test_untuned_warmup_steps(beta2, want):
    # ceil(2 / (1 - beta2)), Ma & Yarats 2021, computed with exact fractions here
    assert untuned_warmup_steps(beta2) == want


@pytest.mark.parametrize("beta2", [1.0, -0.1, 1.5, math.nan])
def test_untuned_warmup_steps_rejects(beta2):
    with pytest.raises(SpecError):
        untuned_warmup_steps(beta2)


def test_warmup_auto():
    s = parse("warmup(auto) >> constant()").resolve(Context(beta2=0.99))
    assert s == warmup(200) >> constant()
    assert s.boundaries() == [200]
    assert_close(s.values(201), [min(1.0, (u + 1) / 200) for u in range(201)])


@pytest.mark.parametrize("T,end", [(1, 0.0), (8, 0.0), (13, 0.1)])
def test_linear(T, end):
    want = [1 + (end - 1) * min(u, T) / T for u in range(T + 4)]
    assert_close(linear(end, steps=T).values(T + 4), want)


@pytest.mark.parametrize("T,end", [(1, 0.0), (8, 0.0), (13, 0.05)])
def test_cosine(T, end):
    want = [end + (1 - end) * (1 + math.cos(math.pi * min(u, T) / T)) / 2 for u in range(T + 4)]
    assert_close(cosine(end, steps=T).values(T + 4), want)


@pytest.mark.parametrize("T,power,end", [(10, 1.0, 0.0), (10, 2.0, 0.0), (7, 0.5, 0.2)])
def test_poly(T, power, end):
    want = [end + (1 - end) * (1 - min(u, T) / T) ** power for u in range(T + 4)]
    assert_close(poly(power, end=end, steps=T).values(T + 4), want)


@pytest.mark.parametrize("scale", [1, 4, 2.5])
def test_rsqrt(scale):
    want = [(1 + u / scale) ** -0.5 for u in range(50)]
    assert_close(rsqrt(scale).values(50), want)


@pytest.mark.parametrize("gamma", [0.9, 0.5, 1.0])
def test_exp(gamma):
    assert_close(exp(gamma).values(40), [gamma**u for u in range(40)])


def test_exp_growth_overflows_to_inf_not_error():
    assert exp(1.5)(10**6) == math.inf


@pytest.mark.parametrize("gamma,every,floor", [(0.5, 1, 0.0), (0.1, 3, 0.0), (0.5, 2, 0.1)])
def test_factor(gamma, every, floor):
    want = [max(floor, gamma ** (u // every)) for u in range(30)]
    assert_close(factor(gamma, every, floor=floor).values(30), want)


def test_multistep():
    ms, g = [3, 7, 20], 0.5
    want = [g ** sum(1 for m in ms if m <= u) for u in range(30)]
    assert_close(multistep(ms, g).values(30), want)
    assert_close([multistep(ms, g)(u) for u in range(30)], want)


def test_multistep_durations_are_local_times():
    s = parse("warmup(4) >> multistep([1ep, 3ep], gamma=0.5)").resolve(Context(steps_per_epoch=5))
    got = s.values(30)
    want = [min(1.0, (t + 1) / 4) for t in range(4)]
    want += [0.5 ** sum(1 for m in (5, 15) if m <= t - 4) for t in range(4, 30)]
    assert_close(got, want)


def sgdr(u: int, P: float, mult: float, decay: float, end: float) -> float:
    """SGDR by walking the cycles one by one (no closed form)."""
    start, length, i = 0.0, P, 0
    while u >= start + length:
        start += length
        length *= mult
        i += 1
    peak = decay**i
    return end + (peak - end) * (1 + math.cos(math.pi * (u - start) / length)) / 2


@pytest.mark.parametrize(
    "P,mult,decay,end", [(10, 1, 1, 0.0), (5, 2, 1, 0.0), (4, 3, 0.5, 0.1), (7, 1.5, 0.8, 0.0)]
)
def test_restarts_period(P, mult, decay, end):
    s = restarts(period=P, mult=mult, decay=decay, end=end)
    want = [sgdr(u, P, mult, decay, end) for u in range(300)]
    assert_close(s.values(300), want, 1e-9)
    assert_close([s(u) for u in range(300)], want, 1e-9)


@pytest.mark.parametrize("T,k,mult", [(90, 3, 1), (70, 3, 2), (100, 4, 1.5)])
def test_restarts_cycles_fill_phase(T, k, mult):
    P = T / k if mult == 1 else T * (mult - 1) / (mult**k - 1)
    s = restarts(cycles=k, mult=mult, end=0.01, steps=T)
    want = [sgdr(u, P, mult, 1, 0.01) if u < T else 0.01 for u in range(T + 5)]
    assert_close(s.values(T + 5), want, 1e-9)
    assert_close([s(u) for u in range(T + 5)], want, 1e-9)


def test_restarts_far_out_is_closed_form():
    s = restarts(period=10, mult=2)
    t = 10 * (2**40 - 1)  # start of cycle 40
    assert s(t) == 1.0
    assert s.values(3, start=t) == [s(t), s(t + 1), s(t + 2)]


def test_restarts_extreme_mult_stays_finite():
    s = restarts(period=3, mult=1e300)
    assert all(math.isfinite(v) and v >= 0 for v in s.values(50, start=10**15))


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt", "sqrt"])
@pytest.mark.parametrize("T,D,end", [(20, 5, 0.0), (10, 10, 0.1), (9, 1, 0.0)])
def test_wsd(shape, T, D, end):
    def decay(x):
        if shape == "linear":
            return 1 + (end - 1) * x
        if shape == "cosine":
            return end + (1 - end) * (1 + math.cos(math.pi * x)) / 2
        return end + (1 - end) * (1 - math.sqrt(x))

    want = [1.0 if u < T - D else decay((min(u, T) - (T - D)) / D) for u in range(T + 3)]
    assert_close(wsd(D, shape=shape, end=end, steps=T).values(T + 3), want)


def test_wsd_decay_units():
    # 20% of training (default), a fraction of the phase, epochs
    a = parse("warmup(10) >> wsd()").resolve(Context(total_steps=100))
    assert a == warmup(10) >> wsd(20, steps=90)
    b = parse("warmup(10) >> wsd(0.1)").resolve(Context(total_steps=100))
    assert b == warmup(10) >> wsd(9, steps=90)
    c = parse("wsd(2ep)").resolve(Context(total_steps=100, steps_per_epoch=7))
    assert c == wsd(14, steps=100)


def test_onecycle_is_warmup_then_cosine():
    got = onecycle(steps=100).resolve()
    assert got == warmup(30, start=1 / 25) >> cosine(end=1 / (25 * 1e4), steps=70)
    assert onecycle(pct=0.25, div=10, final_div=100).resolve(Context(total_steps=40)) == (
        warmup(10, start=0.1) >> cosine(end=1e-3, steps=30)
    )


# -- absolute LRs ----------------------------------------------------------------------


def test_absolute_lrs_become_multipliers():
    ctx = Context(total_steps=50, peak_lr=0.1)
    assert parse("cosine(end_lr=0.001)").resolve(ctx) == cosine(0.001 / 0.1, steps=50)
    assert parse("warmup(5, start_lr=0.01) >> linear(end_lr=0.02)").resolve(ctx) == (
        warmup(5, start=0.01 / 0.1) >> linear(0.02 / 0.1, steps=45)
    )
    want = factor(0.5, floor=0.005 / 0.1, steps=50)
    assert parse("factor(0.5, floor_lr=0.005)").resolve(ctx) == want
    assert str(parse("cosine(end_lr=1e-5)")) == "cosine(end_lr=1e-05)"


@pytest.mark.parametrize(
    "spec", ["cosine(end_lr=1e-5)", "warmup(5, start_lr=0) >> constant()",
             "factor(0.5, floor_lr=1e-3)", "restarts(cycles=2, end_lr=0)", "wsd(end_lr=0)"]
)
def test_absolute_lr_needs_peak_lr(spec):
    with pytest.raises(SpecError, match="peak_lr"):
        parse(spec).resolve(Context(total_steps=100))


def test_zero_peak_lr_gives_zero_multiplier():
    ctx = Context(total_steps=10, peak_lr=0.0)
    assert parse("cosine(end_lr=0.001)").resolve(ctx) == cosine(0, steps=10)


def test_end_and_end_lr_together_rejected():
    with pytest.raises(SpecError, match="not both"):
        cosine(0.1, end_lr=0.01)


# -- resolution ------------------------------------------------------------------------


def test_open_last_phase_runs_to_the_end():
    s = parse("warmup(10) >> cosine()").resolve(Context(total_steps=100))
    assert s == warmup(10) >> cosine(steps=90)
    assert s.boundaries() == [10]
    assert [s.phase_at(t) for t in (0, 9, 10, 99, 150)] == ["warmup"] * 2 + ["cosine"] * 3


def test_units_round_half_up():
    ctx = Context(total_steps=1005, steps_per_epoch=391)
    assert Duration(10, "%").to_steps(ctx) == 101  # 100.5 -> 101
    assert Duration(0.5, "ep").to_steps(ctx) == 196  # 195.5 -> 196
    assert Duration.of("5ep") == Duration(5, "ep")
    assert Duration.of(" 10% ") == Duration(10, "%")
    assert parse("warmup(10%) >> cosine()").resolve(ctx).boundaries() == [101]


@pytest.mark.parametrize(
    "spec,ctx,needle",
    [
        ("warmup(10%) >> cosine()", {}, "10% needs total_steps"),
        ("warmup(5ep) >> cosine()", {"total_steps": 100}, "5ep needs steps_per_epoch"),
        ("warmup(200) >> cosine()", {"total_steps": 100}, "longer than training (100 updates)"),
        ("warmup(200)", {"total_steps": 100}, "warmup(200) is longer than training"),
        ("warmup(auto)", {}, "needs beta2"),
        ("warmup(auto) >> cosine()", {"beta2": 0.999, "total_steps": 100}, "longer than training"),
        ("warmup(5) >> cosine()", {}, "needs total_steps"),
        ("restarts(cycles=3)", {}, "needs total_steps"),
        ("cosine() >> constant()", {"total_steps": 10}, "needs a length"),
        ("warmup(0.1ep) >> cosine()", {"total_steps": 10, "steps_per_epoch": 3}, "positive"),
        ("warmup(0.04%) >> cosine()", {"total_steps": 1000}, "0 updates"),
        ("warmup(5) >> cosine(steps=10)", {"total_steps": 10}, "after the end of training"),
        ("warmup(10) >> cosine()", {"total_steps": 10}, "after the end of training"),
        ("wsd(decay=50%, steps=10)", {"total_steps": 100}, "longer than the phase"),
        ("multistep([10, 1ep])", {"steps_per_epoch": 5}, "increasing"),
        ("factor(0.5, every=0.1ep)", {"steps_per_epoch": 3}, "rounds to 0"),
        ("onecycle(pct=0.01)", {"total_steps": 10}, "at least 1 update"),
        ("cosine(end_lr=0.1)", {"total_steps": 10}, "needs peak_lr"),
    ],
)
def test_resolution_errors(spec, ctx, needle):
    with pytest.raises(SpecError) as info:
        parse(spec).resolve(Context(**ctx))
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "spec,needle",
    [("warmup(0)", "steps must be a positive duration, got 0"),
     ("warmup(-5)", "a duration must be >= 0, got -5"),
     ("cosine(steps=0)", "steps must be a positive duration, got 0"),
     ("linear(steps=-3)", "a duration must be >= 0, got -3"),
     ("warmup(0ep)", "steps must be a positive duration, got 0ep"),
     ("exp(0.9, steps=0%)", "steps must be a positive duration, got 0%")],
)
def test_zero_or_negative_lengths(spec, needle):
    with pytest.raises(SpecError, match="position") as info:
        parse(spec)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "kwargs,needle",
    [({"total_steps": 0}, "total_steps must be a positive whole number"),
     ({"total_steps": 1.5}, "total_steps must be a positive whole number"),
     ({"steps_per_epoch": -1}, "steps_per_epoch must be a positive whole number"),
     ({"updates_per_step": 0}, "updates_per_step must be a positive whole number"),
     ({"beta2": 1.0}, "beta2 must be in [0, 1)"),
     ({"peak_lr": -1.0}, "peak_lr must be >= 0"),
     ({"peak_lr": math.inf}, "peak_lr must be finite")],
)
def test_bad_context(kwargs, needle):
    with pytest.raises(SpecError) as info:
        Context(**kwargs)
    assert needle in str(info.value)


def test_unresolved_schedule_says_to_resolve():
    s = parse("warmup(5) >> cosine()")
    with pytest.raises(SpecError, match="resolve"):
        s(3)
    with pytest.raises(SpecError, match="total_steps"):
        s.values(3)
    # a schedule needing nothing from a context evaluates directly
    assert parse("warmup(5) >> exp(0.5)")(7) == 0.25


def test_resolve_is_idempotent():
    ctx = Context(total_steps=300, steps_per_epoch=10, beta2=0.99, peak_lr=0.5)
    s = parse("warmup(auto) >> multistep([2ep, 10%], gamma=0.5, steps=40) >> cosine(end_lr=0.01)")
    r = s.resolve(ctx)
    assert r.resolve(ctx) == r
    assert r.resolve() == r


def test_bad_time_index():
    s = warmup(4)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(LrlabError):
            s(bad)
    with pytest.raises(LrlabError):
        s.values(-1)


def test_values_with_start_matches_calls():
    s = parse("warmup(7) >> restarts(period=5, mult=2, decay=0.7, steps=100) >> cosine()")
    s = s.resolve(Context(total_steps=200))
    assert s.values(0) == []
    full = [s(t) for t in range(210)]
    for start in (0, 3, 7, 50, 199):
        assert s.values(210 - start, start) == full[start:]
    assert s.values(210) == full


def test_restarts_not_last_needs_length():
    with pytest.raises(SpecError, match="needs a length"):
        parse("restarts(period=5) >> cosine()").resolve(Context(total_steps=100))


# -- composition -----------------------------------------------------------------------


def test_chaining_is_flat_and_associative():
    a, b, c = warmup(5), cosine(steps=10), constant(0.1)
    assert a >> (b >> c) == (a >> b) >> c
    assert (a >> b >> c).phases == (a, b, c)
    assert isinstance(a >> b, Chain)
    assert "warmup(5)" >> cosine() == parse("warmup(5) >> cosine()")
    assert warmup(5) >> "cosine()" == parse("warmup(5) >> cosine()")


def test_plateau_combination():
    s = warmup(5) >> cosine() * plateau(patience=3)
    assert s == parse("warmup(5) >> cosine() * plateau(patience=3)")
    assert s.has_plateau and s.plateau == Plateau(patience=3)
    assert not s.without_plateau().has_plateau
    assert parse("plateau()") == constant() * Plateau()
    assert str(constant() * Plateau()) == "plateau()"
    with pytest.raises(SpecError, match="only one"):
        (cosine() * plateau()) >> (constant() * plateau())
    r = s.resolve(Context(total_steps=50))
    assert r.plateau == s.plateau


def test_constructors_mirror_spec_names():
    assert warmup(2, start=0) >> cosine() == parse("warmup(2, start=0) >> cosine()")
    assert warmup("5ep") == parse("warmup(5ep)")
    assert warmup("10%") == parse("warmup(steps=10%)")
    assert exp(0.9) == parse("exp(0.9)")
    assert factor(0.5, every=2) == parse("factor(0.5, every=2)")
    assert multistep(["15ep", "30ep"], gamma=0.5) == parse("multistep([15ep, 30ep], gamma=0.5)")
    assert restarts(cycles=3, mult=2) == parse("restarts(cycles=3, mult=2)")
    assert wsd("10%", shape="1-sqrt") == parse("wsd(10%, shape=1-sqrt)")
    import lrlab.schedules as S

    for name, cls in PHASES.items():  # the constructor of each spec name is its class
        assert getattr(S, name) is cls and cls.name == name


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: cosine("0.1"), "cosine(): end must be a number, got '0.1'"),
        (lambda: cosine(math.nan), "cosine(): end must be finite"),
        (lambda: exp(0), "exp(): gamma must be > 0, got 0"),
        (lambda: exp(None), "exp() needs gamma"),
        (lambda: warmup(2.5), "warmup(): steps must be a whole number of updates, got 2.5"),
        (lambda: warmup("5 epochs"), "expected a duration like 500, 5ep or 10%"),
        (lambda: multistep([]), "multistep(): milestones must not be empty"),
        (lambda: multistep([3, 2]), "multistep(): milestones must be increasing, got 3 then 2"),
        (lambda: factor(0.5, every=[1]), "factor(): every must be a duration like 500"),
        (lambda: restarts(cycles=2, period=3), "exactly one of cycles= or period="),
        (lambda: restarts(cycles=1.5), "restarts(): cycles must be a whole number, got 1.5"),
        (lambda: wsd(1.5), "wsd(): decay must be a fraction in (0, 1) or a whole number of "
                           "updates, got 1.5"),
        (lambda: wsd(shape="exp"), "wsd(): shape must be one of linear, cosine, 1-sqrt"),
        (lambda: onecycle(pct=1), "onecycle(): pct must be in (0, 1), got 1"),
        (lambda: plateau(factor=2), "plateau(): factor must be in (0, 1), got 2"),
        (lambda: plateau(min=1.5), "plateau(): min must be in [0, 1], got 1.5"),
        (lambda: plateau(min=0.1, min_lr=1e-4), "give min= (a multiplier) or min_lr="),
        (lambda: plateau(min_lr=-1e-4), "plateau(): min_lr must be >= 0"),
        (lambda: plateau(min_lr=[]), "plateau(): min_lr must not be an empty list"),
        (lambda: plateau(min_lr=[0.1, "x"]), "plateau(): min_lr must be a number"),
        (lambda: plateau(eps=-1), "plateau(): eps must be >= 0"),
        (lambda: plateau(threshold_mode="absolute"), "threshold_mode must be one of rel, abs"),
        (lambda: constant(None), "constant(): v must not be None"),
        (lambda: warmup(5, start=0.1, start_lr=0.01), "give start= or start_lr=, not both"),
    ],
)
def test_bad_python_arguments_raise_spec_error(make, needle):
    with pytest.raises(SpecError) as info:
        make()
    assert needle in str(info.value)


def test_missing_required_argument_is_a_type_error_in_python():
    # as for any Python function; a spec string says "exp() needs gamma" at its position
    with pytest.raises(TypeError):
        exp()  # type: ignore[call-arg]
    with pytest.raises(SpecError, match="needs gamma at position 0"):
        parse("exp()")


def test_positional_arguments_as_in_specs():
    # the arguments a spec may give without a name are the constructor's positional ones
    assert cosine(0.1) == parse("cosine(0.1)") == cosine(end=0.1)
    assert factor(0.5, 2) == parse("factor(0.5, 2)") == factor(gamma=0.5, every=2)
    assert multistep([1, 5], 0.5) == parse("multistep([1, 5], 0.5)")
    assert poly(2) == parse("poly(2)") and rsqrt(4) == parse("rsqrt(4)")
    assert wsd("10%") == parse("wsd(10%)")
    for make in (lambda: restarts(3), lambda: onecycle(0.3), lambda: plateau(0.5)):
        with pytest.raises(TypeError):
            make()


def test_resolved_phase_length():
    s = parse("warmup(10%) >> cosine()").resolve(Context(total_steps=250))
    assert [p.T for p in s.phases] == [25, 225]
    assert exp(0.5).resolve().T is None  # open-ended


def test_last_phase_holds_its_end_value():
    # warmup holds 1 (not (T+1)/T); a decay holds its end; exp holds gamma^T
    assert_close(warmup(4).values(7), [0.25, 0.5, 0.75, 1, 1, 1, 1])
    assert_close(cosine(0.2, steps=4).values(7)[4:], [0.2] * 3)
    assert_close(exp(0.5, steps=3).values(6), [1, 0.5, 0.25, 0.125, 0.125, 0.125])
    # restarts(period=) ending exactly at a restart holds the end of the cycle before
    # (cycles of 5 updates: u=10 starts a third cycle, which the phase never reaches)
    s = restarts(period=5, end=0.1, steps=10)
    assert_close(s.values(13)[10:], [0.1] * 3)
    # ... and ending inside a cycle holds the value the cycle reached there
    s = restarts(period=5, end=0.1, steps=12)
    at_12 = 0.1 + 0.9 * (1 + math.cos(math.pi * 2 / 5)) / 2
    assert_close(s.values(15)[12:], [at_12] * 3)


@pytest.mark.parametrize(
    "spec", ["cosine()", "exp(0.9)", "warmup(5) >> cosine()", "warmup(3) >> restarts(period=4)",
             "warmup(2) >> exp(0.9, steps=5) >> multistep([2, 4])"]
)
def test_evaluator_and_values_match_calls(spec):
    s = parse(spec).resolve(Context(total_steps=30))
    want = [s(t) for t in range(40)]
    ev = s.evaluator()
    assert [ev(t) for t in range(40)] == want
    assert s.values(40) == want


def test_evaluated_schedule_pickles():
    # the evaluation plan is cached on the schedule: it must pickle with it
    s = parse("warmup(5) >> cosine(end=0.1)").resolve(Context(total_steps=20))
    want = s.values(25)
    t = pickle.loads(pickle.dumps(s))
    assert t == s and t.values(25) == want and [t(i) for i in range(25)] == want


def test_wsd_1_sqrt_is_hageles_cooldown_and_sqrt_is_its_old_name():
    # Hägele et al. 2024: the "1-sqrt" cooldown is 1 - sqrt(x), x the fraction of it done
    s = wsd(10, shape="1-sqrt", steps=20)
    assert s.values(20)[10:] == pytest.approx([1 - math.sqrt(v / 10) for v in range(10)])
    old = parse("wsd(10, shape=sqrt, steps=20)")
    assert old == s and str(old) == "wsd(decay=10, shape=1-sqrt, steps=20)"
    assert parse(str(old)) == old
    for bad in ("wsd(shape=1-sqrtx2)", "wsd(shape=2-sqrt)", "wsd(shape=1 - sqrt)"):
        with pytest.raises(SpecError):
            parse(bad)
