"""Products ``a * b``, their precedence and length, and phases on the training clock.

References are written here: pytorch_warmup's dampening and timm's CosineLRScheduler as
formulas, torch's ChainedScheduler run side by side.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.errors import SpecError
from lrlab.schedules import (
    Chain,
    Context,
    Product,
    constant,
    cosine,
    exp,
    linear,
    multistep,
    parse,
    plateau,
    restarts,
    warmup,
)

torch = pytest.importorskip("torch")
from torch.optim import lr_scheduler as sched  # noqa: E402


def close(a, b, tol=1e-12):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert abs(x - y) <= tol, (i, x, y)


# -- precedence and spec round trips ----------------------------------------------------


def test_star_binds_tighter_than_shift_as_in_python():
    s = parse("warmup(5) >> cosine() * exp(0.9)")
    assert s == warmup(5) >> cosine() * exp(0.9)  # Python's own precedence
    assert s == warmup(5) >> (cosine() * exp(0.9))
    assert s != (warmup(5) >> cosine()) * exp(0.9)
    assert isinstance(s, Chain) and isinstance(s.phases[1], Product)
    grouped = parse("(warmup(5) >> cosine()) * exp(0.9)")
    assert grouped == (warmup(5) >> cosine()) * exp(0.9)
    assert str(grouped) == "(warmup(5) >> cosine()) * exp(0.9)"
    assert str(s) == "warmup(5) >> cosine() * exp(0.9)"
    # the two readings give different curves: the exp starts at 5 in one, at 0 in the other
    a, b = s.resolve(Context(total_steps=20)), grouped.resolve(Context(total_steps=20))
    assert a.values(20)[5] == pytest.approx(1.0)
    assert b.values(20)[5] == pytest.approx(0.9**5)


@pytest.mark.parametrize("spec,canonical", [
    ("cosine()*exp(0.9)", "cosine() * exp(0.9)"),
    ("((cosine())) * (exp(0.9))", "cosine() * exp(0.9)"),
    ("cosine() * (exp(0.9) * linear())", "cosine() * exp(0.9) * linear()"),
    ("(warmup(5) >> cosine())*exp(0.9)", "(warmup(5) >> cosine()) * exp(0.9)"),
    ("plateau() * cosine()", "cosine() * plateau()"),
    ("warmup(5) * plateau() >> cosine()", "warmup(5) >> cosine() * plateau()"),
    ("(warmup(5) >> cosine() * plateau(patience=2)) * exp(0.9)",
     "(warmup(5) >> cosine()) * exp(0.9) * plateau(patience=2)"),
    ("warmup(2, start=0) >> cosine(clock=train)", "warmup(2, start=0) >> cosine(clock=train)"),
    ("cosine(0.1, clock=0)", "cosine(end=0.1)"),
    ("poly(2, steps=5, clock=3, end=0.1)", "poly(power=2, end=0.1, clock=3, steps=5)"),
])
def test_canonical_forms(spec, canonical):
    s = parse(spec)
    assert str(s) == canonical and parse(canonical) == s


def test_plateau_anywhere_multiplies_the_whole_schedule():
    a = parse("warmup(4) * plateau(factor=0.5) >> constant()")
    assert a == (warmup(4) >> constant()) * plateau(factor=0.5)
    assert a == plateau(factor=0.5) * (warmup(4) >> constant())
    assert a.without_plateau() == warmup(4) >> constant()


PHASE_SPECS = ["warmup(3)", "cosine(end=0.1)", "exp(0.9)", "linear(steps=4)",
               "constant(0.5, steps=2)", "cosine(clock=train)", "multistep([2, 5])",
               "restarts(period=3, decay=0.5)", "warmup(2, start=0, clock=train)"]


@st.composite
def schedules(draw, depth=2):
    """A random spec tree of chains and products, built with the Python operators."""
    if depth == 0 or draw(st.booleans()):
        return parse(draw(st.sampled_from(PHASE_SPECS)))
    parts = draw(st.lists(schedules(depth=depth - 1), min_size=2, max_size=3))
    out = parts[0]
    for p in parts[1:]:
        out = out * p if draw(st.booleans()) else out >> p
    return out


@settings(max_examples=150, deadline=None)
@given(schedules(), st.booleans())
def test_round_trip_of_random_products_and_chains(s, with_plateau):
    if with_plateau:
        s = s * plateau(patience=3)
    assert parse(str(s)) == s
    assert parse(str(parse(str(s)))) == parse(str(s))


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_resolved_products_round_trip_and_evaluate_alike(s):
    try:
        r = s.resolve(Context(total_steps=40))
    except SpecError:
        return  # e.g. a phase without a length followed by another
    assert parse(str(r)) == r and r.resolve(Context(total_steps=40)) == r
    assert r.values(45) == [r(t) for t in range(45)]


# -- values -----------------------------------------------------------------------------


@pytest.mark.parametrize("W,gamma", [(1, 0.99), (5, 0.9), (20, 0.999)])
def test_pytorch_warmup_dampening(W, gamma):
    """pytorch_warmup's LinearWarmup dampens ExponentialLR: min(1, (t+1)/W) * gamma^t."""
    want = [min(1.0, (t + 1) / W) * gamma**t for t in range(60)]
    close(parse(f"warmup({W}) * exp({gamma})").values(60), want)


def test_warmup_auto_dampening_reads_beta2():
    s = parse("warmup(auto) * exp(0.999)").resolve(Context(beta2=0.99))  # W = 200
    close(s.values(300), [min(1.0, (t + 1) / 200) * 0.999**t for t in range(300)])


def torch_lrs(make, n, peak=1.0):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
    s = make(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return out


@pytest.mark.parametrize("start,T,gamma,ms", [(0.1, 5, 0.9, [7, 12]), (0.5, 9, 0.97, [3])])
def test_torch_chained_scheduler(start, T, gamma, ms):
    want = torch_lrs(lambda o: sched.ChainedScheduler([
        sched.LinearLR(o, start_factor=start, total_iters=T),
        sched.ExponentialLR(o, gamma),
        sched.MultiStepLR(o, milestones=ms, gamma=0.5),
    ]), 30)
    spec = f"warmup({T}, start={start}) * exp({gamma}) * multistep({ms}, gamma=0.5)"
    close(parse(spec).values(30), want, tol=1e-9)


def test_product_length_is_its_longest_factor_when_all_have_one():
    s = parse("warmup(10) * cosine(steps=100) >> constant(0.1)").resolve(Context(total_steps=150))
    assert s.boundaries() == [100]
    v = s.values(150)
    close(v[:100], [min(1.0, (t + 1) / 10) * (1 + math.cos(math.pi * t / 100)) / 2
                    for t in range(100)])
    assert v[100:] == [0.1] * 50
    # a factor shorter than the product holds its end value; an open one runs to its end
    s = parse("linear(steps=4) * constant() >> constant(0.3)")
    with pytest.raises(SpecError, match="needs a length"):
        s.resolve(Context(total_steps=10))
    s = parse("(warmup(2) >> cosine()) * linear(steps=4)").resolve(Context(total_steps=10))
    want = [min(1, (t + 1) / 2) * (1 if t < 2 else (1 + math.cos(math.pi * (t - 2) / 8)) / 2)
            * max(0.0, 1 - t / 4) for t in range(12)]
    close(s.values(12), want)


def test_a_product_inside_a_chain_starts_its_factors_together():
    s = parse("warmup(3) >> cosine() * exp(0.9)").resolve(Context(total_steps=13))
    want = [(t + 1) / 3 for t in range(3)] + [
        (1 + math.cos(math.pi * u / 10)) / 2 * 0.9**u for u in range(10)]
    close(s.values(13), want)
    assert s.phase_at(0) == "warmup" and s.phase_at(3) == "cosine*exp"
    assert s.boundaries() == [3]


def test_products_are_refused_where_they_cannot_work():
    with pytest.raises(TypeError):
        cosine() * 3  # noqa: B018
    with pytest.raises(SpecError, match="at least two factors"):
        Product((cosine(),))
    with pytest.raises(SpecError, match="own plateau"):
        Product((cosine() * plateau(), exp(0.9)))
    with pytest.raises(SpecError, match="only one plateau"):
        (cosine() * plateau()) * (exp(0.9) * plateau())
    with pytest.raises(SpecError, match="needs total_steps"):
        parse("cosine() * exp(0.9)")(3)  # the cosine runs to the end of training
    assert (cosine(steps=10) * "exp(0.5)") == parse("cosine(steps=10) * exp(0.5)")
    assert ("exp(0.5)" * cosine(steps=10)) == parse("exp(0.5) * cosine(steps=10)")


# -- the training clock (timm's warmup_prefix=False) ------------------------------------


def timm_cosine(t, base, N, W, warmup_init, lr_min, P=None, mult=1.0, decay=1.0, limit=1):
    """timm's CosineLRScheduler (warmup_prefix=False, t from 0 of training, per update):
    ``t_initial`` is N (one cycle) or P; cycles with ``cycle_mul`` and ``cycle_decay``."""
    if t < W:
        return warmup_init + t * (base - warmup_init) / W
    t_initial = N if P is None else P
    if mult != 1:
        i = math.floor(math.log(1 - t / t_initial * (1 - mult), mult))
        t_i = mult**i * t_initial
        t_curr = t - (1 - mult**i) / (1 - mult) * t_initial
    else:
        i = t // t_initial
        t_i = t_initial
        t_curr = t - t_initial * i
    if i >= limit:
        return lr_min
    lr_max = base * decay**i
    return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t_curr / t_i))


@pytest.mark.parametrize("N,W,init,lr_min", [(100, 10, 1e-5, 1e-4), (37, 5, 0.0, 0.0),
                                             (50, 1, 3e-3, 0.0)])
def test_cosine_on_the_training_clock_is_timms_default(N, W, init, lr_min):
    base = 0.1
    want = [timm_cosine(t, base, N, W, init, lr_min) for t in range(N)]
    spec = f"warmup({W}, start_lr={init}) >> cosine(end_lr={lr_min}, clock=train)"
    s = parse(spec).resolve(Context(total_steps=N, peak_lr=base))
    close([base * m for m in s.values(N)], want)
    own = parse(spec.replace(", clock=train", "")).resolve(Context(total_steps=N, peak_lr=base))
    assert own.values(N)[W] == pytest.approx(1.0)  # its own clock: the cosine starts again
    assert s.values(N)[W] < 1.0


@pytest.mark.parametrize("P,mult,decay,limit", [(20, 1.0, 0.5, 5), (10, 2.0, 0.7, 4),
                                                (13, 1.0, 0.8, 3)])
def test_restarts_on_the_training_clock_is_timms_cycle_decay_with_warmup(P, mult, decay, limit):
    base, W, init, lr_min = 0.5, 7, 0.01, 0.001
    N = int(sum(P * mult**i for i in range(limit)))
    want = [timm_cosine(t, base, N, W, init, lr_min, P, mult, decay, limit)
            for t in range(N)]
    spec = (f"warmup({W}, start_lr={init}) >> restarts(period={P}, mult={mult}, "
            f"decay={decay}, end_lr={lr_min}, clock=train)")
    s = parse(spec).resolve(Context(total_steps=N, peak_lr=base))
    close([base * m for m in s.values(N)], want)


def test_clock_train_resolves_to_the_phase_start_and_inside_products():
    s = parse("constant(steps=4) >> warmup(2) >> cosine(clock=train)")
    r = s.resolve(Context(total_steps=20))
    assert str(r) == "constant(steps=4) >> warmup(2) >> cosine(clock=6, steps=14)"
    close(r.values(20)[6:], [(1 + math.cos(math.pi * t / 20)) / 2 for t in range(6, 20)])
    # inside a product at update 5: the cosine reads the training clock, exp its own
    p = parse("constant(steps=5) >> cosine(clock=train) * exp(0.9)")
    close(p.resolve(Context(total_steps=15)).values(15)[5:],
          [(1 + math.cos(math.pi * t / 15)) / 2 * 0.9 ** (t - 5) for t in range(5, 15)])
    # a phase of its own length on the training clock ends where it would have ended
    q = parse("constant(steps=3) >> linear(steps=5, clock=train) >> constant(0.2)")
    close(q.values(10), [1, 1, 1, 1 - 3 / 8, 1 - 4 / 8, 1 - 5 / 8, 1 - 6 / 8, 1 - 7 / 8,
                         0.2, 0.2])
    # an open phase (no training length) keeps its clock too
    e = parse("constant(steps=3) >> exp(0.5, clock=train)")
    close(e.values(6), [1, 1, 1, 0.5**3, 0.5**4, 0.5**5])


@pytest.mark.parametrize("make,needle", [
    (lambda: cosine(clock="now"), "cosine(): clock must be phase, train or a whole number"),
    (lambda: cosine(clock=-1), "cosine(): clock must be >= 0"),
    (lambda: cosine(clock=1.5), "cosine(): clock must be a whole number"),
    (lambda: parse("onecycle(clock=train)"), "onecycle() has no clock="),
])
def test_bad_clocks(make, needle):
    with pytest.raises(SpecError) as info:
        make()
    assert needle in str(info.value)


def test_constructors_mirror_the_spec():
    assert warmup(5) * exp(0.99) == parse("warmup(5) * exp(0.99)")
    assert cosine(clock="train") == parse("cosine(clock=train)")
    assert linear() * multistep([3]) * restarts(period=4) == parse(
        "linear() * multistep([3]) * restarts(period=4)")
