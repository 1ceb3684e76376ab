"""Spec strings: canonical form, round trips, and errors that point at the culprit."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrlab.errors import SpecError
from lrlab.schedules import Duration, parse

VALID = [
    "warmup(5%) >> cosine(end=0.01)",
    "warmup(2, start=0) >> linear()",
    "warmup(auto, shape=exp) >> rsqrt(scale=2.5)",
    "multistep([15ep, 30ep], gamma=0.5)",
    "factor(0.5, every=2, floor=0.01)",
    "exp(0.9, steps=100) >> constant(0.3)",
    "restarts(cycles=3, mult=2, decay=0.5, end=0.01)",
    "restarts(period=10ep) * plateau(factor=0.5, patience=5)",
    "warmup(500) >> wsd(decay=0.1, shape=1-sqrt) * plateau(mode=max)",
    "onecycle(pct=0.25, div=10)",
    "poly(power=2, end=0.1, steps=1000)",
    "cosine(end_lr=1e-05)",
    "plateau(cooldown=2, min=0.001)",
    "plateau(threshold_mode=abs, min_lr=[0.001, 1e-05], eps=1e-08)",
    "cosine() * plateau(min_lr=0.0001)",
]


@pytest.mark.parametrize(
    "spec,canonical",
    [
        ("warmup(2,start=0)>>cosine()", "warmup(2, start=0) >> cosine()"),
        ("warmup(steps=5)", "warmup(5)"),
        ("warmup(5.0)", "warmup(5)"),
        ("cosine(end=0)", "cosine()"),
        ("cosine(0.1)", "cosine(end=0.1)"),
        ("cosine(end=1e-3)", "cosine(end=0.001)"),
        ("cosine(end=0.00001)", "cosine(end=1e-05)"),
        ("exp(gamma=9e-1)", "exp(0.9)"),
        ("factor(0.5, 2)", "factor(0.5, every=2)"),
        ("multistep([15ep,30ep,],0.5,)", "multistep([15ep, 30ep], gamma=0.5)"),
        ("multistep([10], gamma=0.1)", "multistep([10])"),
        ("wsd(20%)", "wsd()"),
        ("wsd(decay=0.2)", "wsd(decay=0.2)"),
        ("warmup(1.5ep) >> rsqrt(+4)", "warmup(1.5ep) >> rsqrt(scale=4)"),
        ("constant() * plateau()", "plateau()"),
        ("constant(1) * plateau(factor=0.1, patience=10)", "plateau()"),
        ("cosine() * plateau(mode=min, threshold=1e-4)", "cosine() * plateau()"),
        ("restarts(cycles=2, mult=1.0, decay=1)", "restarts(cycles=2)"),
        ("onecycle(pct=0.3, div=25, final_div=1e4)", "onecycle()"),
        ("  warmup(\t10 )\n>>\ncosine( )  ", "warmup(10) >> cosine()"),
    ],
)
def test_canonical_form(spec, canonical):
    s = parse(spec)
    assert str(s) == canonical
    assert parse(canonical) == s


@pytest.mark.parametrize("spec", VALID)
def test_valid_specs_round_trip(spec):
    s = parse(spec)
    assert str(s) == spec  # these are written canonically
    assert parse(str(s)) == s


def test_values_types():
    s = parse("multistep([15ep, 30ep, 10%, 500], gamma=0.5)")
    assert s.milestones == (Duration(15, "ep"), Duration(30, "ep"), Duration(10, "%"),
                            Duration(500))


@pytest.mark.parametrize(
    "spec,pos,needle",
    [
        ("", 0, "empty"),
        ("   ", 0, "empty"),
        ("cosin()", 0, "did you mean 'cosine'"),
        ("warmup(5) >> cosin()", 13, "did you mean 'cosine'"),
        ("warmup(5) >> frobnicate()", 13, "unknown phase"),
        ("cosine(edn=0.1)", 7, "did you mean 'end'"),
        ("cosine(end=0.1, end=0.2)", 16, "twice"),
        ("cosine(0.1, end=0.2)", 12, "twice"),
        ("exp()", 0, "needs gamma"),
        ("exp(-1)", 4, "> 0"),
        ("exp(gamma=cosine)", 10, "number"),
        ("cosine(end=nan)", 11, "number"),
        ("cosine(end=inf)", 11, "number"),
        ("cosine(end=1e999)", 11, "out of range"),
        ("cosine(", 7, "never closed"),
        ("warmup(5 >> cosine()", 9, "expected ',' or ')'"),
        ("cosine())", 8, "unbalanced"),
        ("cosine() x", 9, "after the end"),
        ("cosine() >>", 11, "expected a phase"),
        ("warmup(5eps)", 8, "unknown unit"),
        ("warmup(5 ep)", 9, "expected ',' or ')'"),
        ("warmup(5%%)", 9, "unexpected character"),
        ("multistep([10, [20]])", 15, "nested"),
        ("multistep([10, 5])", 15, "increasing"),
        ("multistep([10, 20)", 17, "expected ',' or ']'"),
        ("multistep([10, 20", 17, "never closed"),
        ("multistep(10)", 10, "list"),
        ("warmup(5, shape=cosine)", 16, "linear, exp"),
        ("cosine(end=0.1, 0.2)", 16, "positional argument after"),
        ("cosine(1, 2)", 10, "positional"),
        ("cosine() * plateau() * (plateau())", 24, "only one"),
        ("plateau() * plateau()", 12, "only one"),
        ("(warmup(5) >> cosine()", 22, "'(' is never closed"),
        ("(warmup(5) cosine())", 11, "expected ')', '>>' or '*'"),
        ("warmup(5) * ()", 13, "expected a phase"),
        ("(" * 40 + "cosine()" + ")" * 40, 32, "nested more than 32 deep"),
        ("warmup(5) * plateau() >> cosine() * plateau()", 36, "only one plateau"),
        ("plateau() >> cosine()", 0, "not with '>>'"),
        ("cosine() * plateau() * plateau()", 23, "only one"),
        ("warmup(5) cosine()", 10, "after the end"),
        ("warmup(0)", 7, "positive"),
        ("warmup(2.5)", 7, "whole number"),
        ("warmup(-5)", 7, ">= 0"),
        ("cosine(end='a')", 11, "unexpected character"),
        ("restarts(mult=2)", 0, "exactly one"),
        ("plateau(factor=1.5)", 15, "(0, 1)"),
        ("plateau(patience=2.5)", 17, "whole number"),
        ("plateau(min_lr=[0.1, -2])", 21, ">= 0"),
        ("plateau(min_lr=0.1, min=0.5)", 15, "not both"),
        ("plateau(threshold_mode=ab)", 23, "rel, abs"),
        ("plateau(eps=-1)", 12, ">= 0"),
        ("cosine(end=1,,)", 13, "expected a value"),
        ("cosine(=1)", 7, "expected a value"),
        ("5 >> cosine()", 0, "expected a phase"),
        ("cosine", 6, "expected '('"),
        ("warmup(5) >> >> cosine()", 13, "expected a phase"),
        ("warmup(5) > cosine()", 10, "unexpected character"),
        ("warmup(5) >> cosine() €", 22, "unexpected character"),
        ("warmup(\u0663)", 7, "unexpected character"),
    ],
)
def test_error_positions(spec, pos, needle):
    with pytest.raises(SpecError) as info:
        parse(spec)
    e = info.value
    assert e.pos == pos, str(e)
    assert needle in str(e)
    assert f"position {pos}" in str(e)
    assert "\n" not in str(e)


def test_not_a_string():
    with pytest.raises(SpecError):
        parse(None)  # type: ignore[arg-type]


# -- fuzz: malformed specs raise SpecError and nothing else ----------------------------

HAND_WRITTEN_BAD = [
    "(", ")", "()", "[", "]", ">>", "*", ",", "=", "%", "ep", "5", "5ep", "-", "+", ".",
    "cosine(", "cosine)", "cosine(()", "cosine(]", "cosine[)", "cosine{}", "cosine(end=)",
    "cosine(end==1)", "cosine(end=1=2)", "cosine(,)", "cosine(end=1 2)", "cosine(end=-1)",
    "cosine(end=--1)", "cosine(end=1..0)", "cosine(end=1e)", "cosine(end=1e+)", "cosine(end=.)",
    "cosine(end=0x10)", "cosine(end=1_000)", "cosine(end=true)", "cosine(end=None)",
    "cosine(steps=auto)", "cosine(steps=5.5)", "cosine(steps=1%%)", "cosine(steps=[5])",
    "cosine(steps=5ep%)", "cosine() >> ", "cosine() * ", "cosine() ** plateau()",
    "cosine() * * exp(0.9)", "cosine() >>> cosine()", "cosine() << cosine()",
    "cosine() > > cosine()",
    "cosine() >> plateau()", "plateau() * plateau()", "plateau(mode=avg)", "plateau(min=2)",
    "plateau(patience=-1)", "plateau(cooldown=1.5)", "plateau(factor=0)", "plateau(5)",
    "warmup()", "warmup(auto2)", "warmup(Auto)", "warmup(5, 0)", "warmup(5, start=-0.1)",
    "warmup(5, shape=)", "warmup(5, start_lr=0.1, start=0)", "linear(1, 2)", "linear(end=)",
    "poly(0)", "poly(-1)", "poly(power=nan)", "rsqrt(0)", "rsqrt(-2)", "rsqrt(scale=[1])",
    "exp(0)", "exp(gamma=0.9, gamma=0.8)", "exp(0.9, 0.8)", "factor()", "factor(0.5, 0)",
    "factor(0.5, every=2.5)", "factor(0.5, floor=-1)", "multistep()", "multistep([])",
    "multistep([,])", "multistep([1,,2])", "multistep([a])", "multistep([1, 1])",
    "multistep([1], gamma=0)", "multistep([1], 0.1, 2)", "restarts()",
    "restarts(cycles=0)", "restarts(cycles=1.5)", "restarts(cycles=2, mult=0.5)",
    "restarts(period=0)", "restarts(cycles=2, decay=0)", "wsd(decay=0)", "wsd(decay=-0.5)",
    "wsd(decay=1.5)", "wsd(shape=exp)", "wsd(end=-1)", "onecycle(pct=1)", "onecycle(pct=0)",
    "onecycle(div=0)", "onecycle(0.3)", "constant(-1)", "constant(1, 2)", "constant(v=x)",
    "COSINE()", "Cosine()", "cosine ()x", "cosine()cosine()", "cosine();", "cosine()#",
    "cosine() // comment", "import os", "__import__('os')", "eval('1')", "lambda: 1",
    "cosine(end=1/10)", "cosine(end=1*2)", "cosine(end=(1))", "cosine(end=[)",
    "warmup(5) >> cosine(end=0.1", "warmup(5 >> cosine(end=0.1)", "warmup(5)) >> cosine()",
    "warmup[5] >> cosine()", "warmup(5) >> cosine() >>", ">> warmup(5)", "warmup(5) >>> cosine()",
    "warmup(5)>>cosine()*", "(warmup(5)", "warmup(5))", "(", "(()", "(cosine()]", "\x00",
    "warmup(5)\x00", "cosine(clock=now)", "cosine(clock=-1)", "cosine(clock=1.5)",
    "cosine(clock=[1])", "onecycle(clock=train)",
    "cosine(end=0.1\n", "cosine(\tend\t=\t)", "cosine(end=1e-3 ep)", "warmup(5 %)",
    "warmup(5)>>", "warmup(5) >> cosine(end=0.1) * plateau(", "warmup(5) >> cosine(end=0.1))",
    "warmup(5ep5)", "warmup(5e p)", "warmup(5.5.5)", "warmup(1e5.5)", "warmup(5epep)",
    "warmup(.)", "warmup(-)", "warmup(+)", "warmup(5-)", "warmup(5+5)", "warmup(0ep)",
    "warmup(0%)", "warmup(-1%)", "warmup(nan)", "warmup(inf%)", "warmup(5, shape=exp, shape=exp)",
    "warmup(auto, start=2, start_lr=1)", "warmup(steps=5, 5)", "cosine(end_lr=-1)",
    "cosine(end=0.1, end_lr=0.01)", "linear(end_lr=nan)", "poly(power=0, end=0)",
    "restarts(cycles=2, period=5)", "restarts(period=5ep, period=5ep)", "wsd(10%, 10%)",
    "wsd(shape=sqrt, shape=sqrt)", "onecycle(final_div=-1)", "factor(gamma=-0.5)",
    "factor(0.5, floor=0.1, floor_lr=0.1)", "multistep([1ep, 0.5ep])", "multistep([5, 2.5])",
    "multistep([5], gamma=[1])", "multistep(gamma=0.1)", "exp(0.9, steps=0)",
    "constant(steps=-5)", "constant(steps=1.5)", "rsqrt(scale=0)", "rsqrt(scale=-1ep)",
    "warmup(" + "9" * 400 + ")", "warmup(" + "9" * 5000 + ")", "cosine(end=" + "9" * 400 + ")",
    "exp(1" + "0" * 400 + ".0)", "warmup(1e400ep)", "multistep([1, 1e400])",
]


def _mutations(n: int, seed: int = 20240601) -> list[str]:
    rng = random.Random(seed)
    alphabet = "()[],=*>%.+-eE0123456789 abcdefghijklmnopqrstuvwxyz_\"'#;{}/\\"
    out = []
    for _ in range(n):
        s = list(rng.choice(VALID))
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(3)
            i = rng.randrange(len(s) + (op == 1))
            if op == 0 and s:
                del s[min(i, len(s) - 1)]
            elif op == 1:
                s.insert(i, rng.choice(alphabet))
            elif s:
                s[min(i, len(s) - 1)] = rng.choice(alphabet)
        out.append("".join(s))
    return out


def _check_rejected(spec: str) -> bool:
    """True if spec was rejected (with a proper SpecError); False if it parsed."""
    try:
        s = parse(spec)
    except SpecError as e:
        msg = str(e)
        assert msg and "\n" not in msg, repr(spec)
        if e.pos is not None:
            assert "position" in msg, repr(spec)
            assert 0 <= e.pos <= len(spec), repr(spec)
        return True
    # mutations that happen to stay valid must still round-trip
    assert parse(str(s)) == s, repr(spec)
    return False


def test_fuzz_hand_written_bad_specs_are_rejected():
    assert len(HAND_WRITTEN_BAD) >= 150
    for spec in HAND_WRITTEN_BAD:
        assert _check_rejected(spec), f"{spec!r} parsed but should not"


def test_fuzz_mutated_specs_raise_only_spec_error():
    rejected = sum(_check_rejected(spec) for spec in _mutations(1500))
    assert rejected >= 200


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="()[],=*>%.+-e0123456789 cosinewarmuplatexp_", max_size=40))
def test_fuzz_random_text_raises_only_spec_error(spec):
    _check_rejected(spec)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_fuzz_any_unicode_raises_only_spec_error(spec):
    _check_rejected(spec)
