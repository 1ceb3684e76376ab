"""lrlab.lab.report.text: the rules every report writes its numbers by, checked on values
whose written form follows from the rule by hand (not by calling format())."""

from __future__ import annotations

from collections import Counter

import pytest

from lrlab.lab.report.stats import Summary
from lrlab.lab.report.text import (
    NONE,
    counts,
    fixed,
    interval,
    mean_sd,
    p_value,
    plural,
    setting,
    sig,
    signed,
    signed_interval,
)


@pytest.mark.parametrize("p, written", [
    (None, "—"),             # no test
    (0.0, "< 0.0001"),       # below 1e-4: only the bound
    (0.00009999, "< 0.0001"),
    (0.0001, "0.0001"),      # from 1e-4 on: three significant digits
    (0.000421, "0.000421"),
    (0.00042149, "0.000421"),
    (0.0312, "0.0312"),
    (0.07064, "0.0706"),
    (0.29, "0.29"),          # no trailing zeros
    (0.5, "0.5"),
    (0.9996, "1"),
    (1.0, "1"),
])
def test_p_values_have_three_significant_digits_and_a_floor(p, written):
    assert p_value(p) == written


def test_unknown_is_a_dash_everywhere():
    empty = Summary(0, None, None, None, 0.95)
    assert NONE == "—"
    assert {fixed(None), signed(None), sig(None), mean_sd(empty), interval(empty),
            signed_interval(None), p_value(None)} == {"—"}


def test_fixed_signed_and_significant_digits():
    assert fixed(0.85) == "0.8500" and fixed(0.12345) == "0.1235" and fixed(2, 1) == "2.0"
    assert fixed(1234.56, 0) == "1235"
    assert fixed(float("inf")) == "inf" and fixed(float("nan")) == "nan"  # a blown-up loss
    assert signed(0.0123) == "+0.0123" and signed(-0.01) == "-0.0100" and signed(0.0) == "+0.0000"
    assert sig(0.001) == "0.001" and sig(0.00001) == "1e-05" and sig(0.123456) == "0.1235"
    assert sig(0.0123456, 3) == "0.0123"


def test_mean_sd_and_intervals():
    assert mean_sd(Summary(3, 0.85, 0.0707, (0.2148, 1.4852), 0.95)) == "0.8500 ± 0.0707"
    assert mean_sd(Summary(1, 0.7, None, None, 0.95)) == "0.7000"  # one seed: the bare value
    assert interval(Summary(3, 0.85, 0.0707, (0.2148, 1.4852), 0.95)) == "[0.2148, 1.4852]"
    assert interval(Summary(1, 0.7, None, None, 0.95)) == "—"
    assert signed_interval((-0.433, 0.0408)) == "[-0.4330, +0.0408]"


def test_plural_counts_and_settings():
    assert plural(1, "run") == "1 run" and plural(0, "run") == "0 runs"
    assert plural(2, "tested contrast") == "2 tested contrasts"
    c = Counter({"diverged": 1, "ok": 2, "failed": 0})
    assert counts(c, ("ok", "diverged", "failed", "missing")) == "2 ok, 1 diverged"
    assert counts(Counter(), ("ok",)) == ""
    assert setting(0.078812) == "0.0788" and setting(64) == "64"
    assert setting("cosine()") == "cosine()" and setting(1e-05) == "1e-05"
