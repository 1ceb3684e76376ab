"""Random chains against a reference written here from docs/design.md's table, nanoGPT-style.

The test draws plain phase descriptions (dicts), writes them as a spec string, and compares
``parse(spec).resolve(...).values(n)`` with :func:`reference`, which walks the phases the
way a training loop's ``get_lr`` would: find the phase of ``t``, apply its formula to the
local time, and hold the last phase's end value after it.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.schedules import Context, parse

K = 5.0  # warmup(shape=exp) steepness, as documented


def sgdr(u: float, P: float, mult: float, decay: float, end: float, at_end: bool = False) -> float:
    """Cosine with warm restarts by walking cycles; ``at_end``: a restart at ``u`` belongs to
    the cycle before (the value a phase ending at ``u`` is held at)."""
    start, length, i = 0.0, P, 0
    while u > start + length or (u == start + length and not at_end):
        start += length
        length *= mult
        i += 1
    return end + (decay**i - end) * (1 + math.cos(math.pi * (u - start) / length)) / 2


def formula(p: dict, u: int, T: int) -> float:
    """Multiplier of phase ``p`` (length T) at local time u; u == T is the held end value."""
    kind, a = p["kind"], p
    if kind == "constant":
        return a["v"]
    if kind == "warmup":
        if u >= T:
            return 1.0
        ramp = (lambda x: x) if a["shape"] == "linear" else (
            lambda x: (1 - math.exp(-K * x)) / (1 - math.exp(-K)))
        if a["start"] is None:
            return ramp((u + 1) / T)
        return a["start"] + (1 - a["start"]) * ramp(u / T)
    if kind == "linear":
        return 1 + (a["end"] - 1) * u / T
    if kind == "cosine":
        return a["end"] + (1 - a["end"]) * (1 + math.cos(math.pi * u / T)) / 2
    if kind == "poly":
        return a["end"] + (1 - a["end"]) * (1 - u / T) ** a["power"]
    if kind == "rsqrt":
        return (1 + u / a["scale"]) ** -0.5
    if kind == "exp":
        return a["gamma"] ** u
    if kind == "factor":
        return max(a["floor"], a["gamma"] ** (u // a["every"]))
    if kind == "multistep":
        return a["gamma"] ** sum(1 for m in a["milestones"] if m <= u)
    if kind == "restarts":
        if a["cycles"] is not None:
            m, k = a["mult"], a["cycles"]
            P = T / k if m == 1 else T * (m - 1) / (m**k - 1)
            if u >= T:
                return a["end"]
            return sgdr(u, P, m, a["decay"], a["end"])
        return sgdr(u, a["period"], a["mult"], a["decay"], a["end"], at_end=u == T)
    if kind == "wsd":
        D = a["decay"]
        x = (u - (T - D)) / D
        if x <= 0:
            return 1.0
        if a["shape"] == "linear":
            return 1 + (a["end"] - 1) * x
        if a["shape"] == "cosine":
            return a["end"] + (1 - a["end"]) * (1 + math.cos(math.pi * x)) / 2
        return a["end"] + (1 - a["end"]) * (1 - math.sqrt(x))
    if kind == "onecycle":  # warmup(T1, start=1/div) >> cosine(end=1/(div*final_div))
        T1 = math.floor(a["pct"] * T + 0.5)
        if u < T1:
            return 1 / a["div"] + (1 - 1 / a["div"]) * u / T1
        end = 1 / (a["div"] * a["final_div"])
        return end + (1 - end) * (1 + math.cos(math.pi * (u - T1) / (T - T1))) / 2
    raise AssertionError(kind)


def reference(phases: list[dict], t: int) -> float:
    start = 0
    for i, p in enumerate(phases):
        last = i == len(phases) - 1
        if t < start + p["T"] or last:
            return formula(p, min(t - start, p["T"]), p["T"])
        start += p["T"]
    raise AssertionError("unreachable")


def phase_name(phases: list[dict], t: int) -> str:
    """Name of the phase active at t (onecycle is a warmup, then a cosine)."""
    start = 0
    for i, p in enumerate(phases):
        if t < start + p["T"] or i == len(phases) - 1:
            if p["kind"] != "onecycle":
                return p["kind"]
            T1 = math.floor(p["pct"] * p["T"] + 0.5)
            return "warmup" if t - start < T1 else "cosine"
        start += p["T"]
    raise AssertionError("unreachable")


def spec_of(p: dict) -> str:
    a, kind = p, p["kind"]
    steps = f"steps={p['T']}"
    if kind == "constant":
        args = [repr(a["v"]), steps]
    elif kind == "warmup":
        args = [str(p["T"]), f"shape={a['shape']}"]
        if a["start"] is not None:
            args.append(f"start={a['start']!r}")
    elif kind in ("linear", "cosine"):
        args = [f"end={a['end']!r}", steps]
    elif kind == "poly":
        args = [repr(a["power"]), f"end={a['end']!r}", steps]
    elif kind == "rsqrt":
        args = [f"scale={a['scale']!r}", steps]
    elif kind == "exp":
        args = [repr(a["gamma"]), steps]
    elif kind == "factor":
        args = [repr(a["gamma"]), f"every={a['every']}", f"floor={a['floor']!r}", steps]
    elif kind == "multistep":
        args = [f"[{', '.join(map(str, a['milestones']))}]", f"gamma={a['gamma']!r}", steps]
    elif kind == "restarts":
        what = f"cycles={a['cycles']}" if a["cycles"] is not None else f"period={a['period']}"
        args = [what, f"mult={a['mult']!r}", f"decay={a['decay']!r}", f"end={a['end']!r}",
                steps]
    elif kind == "wsd":
        args = [str(a["decay"]), f"shape={a['shape']}", f"end={a['end']!r}", steps]
    else:
        args = [f"pct={a['pct']!r}", f"div={a['div']!r}", f"final_div={a['final_div']!r}", steps]
    return f"{kind}({', '.join(args)})"


unit = st.floats(0.0, 1.0)


@st.composite
def phase(draw) -> dict:
    kind = draw(st.sampled_from(["constant", "warmup", "linear", "cosine", "poly", "rsqrt",
                                 "exp", "factor", "multistep", "restarts", "wsd", "onecycle"]))
    T = draw(st.integers(4 if kind == "onecycle" else 1, 40))
    p: dict = {"kind": kind, "T": T}
    if kind == "constant":
        p["v"] = draw(st.floats(0.0, 2.0))
    elif kind == "warmup":
        p["start"] = draw(st.one_of(st.none(), unit))
        p["shape"] = draw(st.sampled_from(["linear", "exp"]))
    elif kind in ("linear", "cosine"):
        p["end"] = draw(unit)
    elif kind == "poly":
        p.update(power=draw(st.floats(0.1, 4.0)), end=draw(unit))
    elif kind == "rsqrt":
        p["scale"] = draw(st.floats(0.1, 50.0))
    elif kind == "exp":
        p["gamma"] = draw(st.floats(0.5, 1.2))
    elif kind == "factor":
        p.update(gamma=draw(st.floats(0.05, 1.0)), every=draw(st.integers(1, 8)),
                 floor=draw(st.floats(0.0, 0.5)))
    elif kind == "multistep":
        ms = draw(st.lists(st.integers(0, 2 * T), min_size=1, max_size=4, unique=True))
        p.update(milestones=sorted(ms), gamma=draw(st.floats(0.05, 1.0)))
    elif kind == "restarts":
        cycles = draw(st.one_of(st.none(), st.integers(1, min(4, T))))
        p.update(cycles=cycles, period=None if cycles else draw(st.integers(1, 12)),
                 mult=draw(st.sampled_from([1.0, 1.5, 2.0])), decay=draw(st.floats(0.3, 1.0)),
                 end=draw(st.floats(0.0, 0.2)))
    elif kind == "wsd":
        p.update(decay=draw(st.integers(1, T)), shape=draw(st.sampled_from(["linear", "cosine",
                                                                             "1-sqrt"])),
                 end=draw(unit))
    else:
        p.update(pct=draw(st.floats(0.3, 0.7)), div=draw(st.floats(1.0, 50.0)),
                 final_div=draw(st.floats(1.0, 1e4)))
    return p


def assert_close(got: list[float], want: list[float]) -> None:
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12), (t, g, w)


@settings(max_examples=300, deadline=None)
@given(st.lists(phase(), min_size=1, max_size=4), st.integers(0, 15))
def test_chains_follow_the_reference(phases, extra):
    spec = " >> ".join(spec_of(p) for p in phases)
    total = sum(p["T"] for p in phases)
    s = parse(spec).resolve(Context(total_steps=total + extra))
    n = total + extra + 5  # past the end: the last phase is held at its end value
    want = [reference(phases, t) for t in range(n)]
    assert_close(s.values(n), want)
    assert_close([s(t) for t in range(n)], want)
    ev = s.evaluator()
    assert_close([ev(t) for t in range(n)], want)
    assert [s.phase_at(t) for t in range(n)] == [phase_name(phases, t) for t in range(n)]


def test_reference_agrees_with_design_examples():
    # docs/design.md: peak 10, warmup(2, start=0) >> linear() over 10 updates
    phases = [{"kind": "warmup", "T": 2, "start": 0.0, "shape": "linear"},
              {"kind": "linear", "T": 8, "end": 0.0}]
    got = [10 * reference(phases, t) for t in range(10)]
    assert_close(got, [0, 5, 10, 8.75, 7.5, 6.25, 5, 3.75, 2.5, 1.25])
