"""lrlab.lab.report.stats: row summaries, Welch contrasts, Holm's adjustment and the reference
verdict, checked against formulas written here and against scipy run in the test."""

from __future__ import annotations

import itertools
import math
import random
import statistics
import warnings

import pytest
from scipy import stats as sps

from lrlab.lab.report.stats import (
    BETTER,
    NO_CLEAR,
    NOT_COMPARABLE,
    WORSE,
    adjust_family,
    holm,
    reference_verdict,
    summarize,
    welch,
)

# Student's t quantiles t(0.975, df) from a printed table (NIST/SEMATECH e-Handbook 1.3.6.7.2)
T975 = {1: 12.706, 2: 4.303, 4: 2.776}


def test_summary_mean_sd_and_t_interval_from_the_formula():
    vals = [0.80, 0.83, 0.86]
    s = summarize(vals)
    mean = sum(vals) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / 2)  # sample sd, n - 1
    half = T975[2] * sd / math.sqrt(3)
    assert s.n == 3 and s.mean == pytest.approx(mean) and s.sd == pytest.approx(sd)
    assert s.ci[0] == pytest.approx(mean - half, abs=2e-4)
    assert s.ci[1] == pytest.approx(mean + half, abs=2e-4)
    two = summarize([0.8, 0.9, None, float("nan")])  # missing values are left out
    assert two.n == 2 and two.ci[1] - two.ci[0] == pytest.approx(
        2 * T975[1] * statistics.stdev([0.8, 0.9]) / math.sqrt(2), rel=1e-4)


def test_summary_with_one_seed_or_none_has_no_interval():
    one = summarize([0.9])
    assert (one.n, one.mean, one.sd, one.ci) == (1, 0.9, None, None)
    empty = summarize([])
    assert (empty.n, empty.mean, empty.ci) == (0, None, None)
    same = summarize([0.9, 0.9, 0.9])  # seeds that did not vary: a zero-width interval
    assert same.sd == 0 and same.ci == (0.9, 0.9)


def test_welch_matches_the_closed_form_at_two_degrees_of_freedom():
    # two seeds each with equal variances: Welch-Satterthwaite df = 2 exactly, and the t
    # distribution with 2 df has the closed form P(|T| > t) = 1 - t / sqrt(t^2 + 2)
    a, b = [1.0, 3.0], [0.0, 2.0]
    c = welch(a, b)
    se = math.sqrt(2.0 / 2 + 2.0 / 2)
    t = 1.0 / se
    assert c.test == "welch" and c.diff == pytest.approx(1.0)
    assert c.df == pytest.approx(2.0)
    assert c.p == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert c.ci[0] == pytest.approx(1.0 - T975[2] * se, abs=1e-3)
    assert c.ci[1] == pytest.approx(1.0 + T975[2] * se, abs=1e-3)
    assert c.verdict == NO_CLEAR


def test_welch_matches_scipy_and_the_satterthwaite_df():
    a, b = [0.912, 0.905, 0.917, 0.909], [0.884, 0.897, 0.879]
    c = welch(a, b)
    va, vb = statistics.variance(a) / 4, statistics.variance(b) / 3
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert c.df == pytest.approx(df)
    assert c.p == pytest.approx(ref.pvalue)
    d = statistics.fmean(a) - statistics.fmean(b)
    half = sps.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert c.ci == pytest.approx((d - half, d + half))
    assert c.p < 0.05 and c.verdict == BETTER
    assert welch(b, a).verdict == WORSE and welch(b, a).diff == pytest.approx(-d)


def test_a_known_large_difference_is_better_and_its_mirror_worse():
    rng = random.Random(7)
    good = [rng.gauss(0.90, 0.005) for _ in range(3)]
    bad = [rng.gauss(0.85, 0.005) for _ in range(3)]
    assert welch(good, bad).verdict == BETTER
    assert welch(bad, good).verdict == WORSE
    # a lower-is-better metric (a loss) flips the meaning
    assert welch(bad, good, higher_is_better=False).verdict == BETTER


def test_noise_only_pairs_are_calibrated_and_a_holm_family_calls_none():
    rng = random.Random(12345)

    def draw(n: int) -> list[float]:
        return [rng.gauss(0.88, 0.006) for _ in range(n)]

    pairs = [(draw(3), draw(3)) for _ in range(2000)]
    called = [welch(a, b).verdict for a, b in pairs]
    rate = sum(v != NO_CLEAR for v in called) / len(called)
    assert 0.03 <= rate <= 0.07  # a level-0.05 test: about 5% of noise-only pairs, no more
    # the report's contrasts form one family: Holm keeps the chance of any false call <= 5%
    family = [welch(a, b) for a, b in pairs[:20]]
    assert [c.verdict for c in adjust_family(family)] == [NO_CLEAR] * 20


def test_holm_adjustment_from_its_definition():
    # sorted p: 0.01, 0.03, 0.04, 0.5 -> 4*0.01, 3*0.03, max(0.09, 2*0.04), max(0.09, 0.5)
    assert holm([0.04, 0.5, 0.01, 0.03]) == pytest.approx([0.09, 0.5, 0.04, 0.09])
    assert holm([0.6, 0.6]) == [1.0, 1.0]  # capped at 1
    assert holm([]) == []
    # a contrast that passes alone fails once it shares the family with two others
    lone = welch([0.912, 0.905, 0.917, 0.909], [0.884, 0.897, 0.879])
    noise = [welch([0.5, 0.6, 0.7], [0.55, 0.65, 0.6]), welch([0.5, 0.6], [0.52, 0.61])]
    adjusted = adjust_family([lone, *noise])
    assert adjusted[0].p == lone.p and adjusted[0].p_adjusted == pytest.approx(
        min(1.0, 3 * lone.p))
    untested = welch([0.9], [0.8, 0.85])
    assert adjust_family([untested, lone])[1].p_adjusted == pytest.approx(lone.p)  # m = 1


def test_one_seed_or_no_finished_run_means_no_test():
    c = welch([0.95], [0.80, 0.81, 0.79])
    assert c.verdict == NO_CLEAR and c.reason == "n=1: no test" and c.p is None
    assert c.diff == pytest.approx(0.95 - 0.80)
    none = welch([], [0.8, 0.9])
    assert none.verdict == NOT_COMPARABLE and none.diff is None


def _exact_permutation_p(a: list[float], b: list[float]) -> float:
    """Two-sided: 2 × the smaller one-sided fraction of splits (capped at 1), enumerated."""
    pooled, na = a + b, len(a)
    obs = statistics.fmean(a) - statistics.fmean(b)
    diffs = []
    for idx in itertools.combinations(range(len(pooled)), na):
        x = [pooled[i] for i in idx]
        y = [pooled[i] for i in range(len(pooled)) if i not in idx]
        diffs.append(statistics.fmean(x) - statistics.fmean(y))
    eps = 1e-12
    ge = sum(d >= obs - eps for d in diffs) / len(diffs)
    le = sum(d <= obs + eps for d in diffs) / len(diffs)
    return min(1.0, 2 * min(ge, le))


def test_zero_variance_on_both_sides():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no precision-loss warning leaks out
        same = welch([0.9, 0.9, 0.9], [0.9, 0.9, 0.9])
        apart = welch([0.9, 0.9, 0.9], [0.8, 0.8, 0.8])
    assert same.p == 1.0 and same.verdict == NO_CLEAR and same.diff == 0
    assert same.ci is None and same.reason == "identical on every seed"
    # scipy's t-test says p = 0 here (t = inf); with 3 vs 3 seeds no split test can reach 0.05
    assert apart.test == "permutation" and apart.ci is None
    assert apart.p == pytest.approx(2 / math.comb(6, 3)) and apart.verdict == NO_CLEAR
    five = welch([1.0] * 5, [0.98] * 5)
    assert five.p == pytest.approx(2 / math.comb(10, 5)) and five.verdict == BETTER


def test_zero_variance_on_one_side_uses_the_exact_permutation_test():
    a, b = [1.0, 1.0, 1.0], [0.99, 0.995, 0.99]
    c = welch(a, b)
    assert c.test == "permutation" and c.ci is None and "sd 0 on one side" in c.reason
    assert c.p == pytest.approx(_exact_permutation_p(a, b))
    assert c.verdict == NO_CLEAR  # Welch alone would say p = 0.038 (better)
    a5, b5 = [1.0] * 5, [0.99, 0.995, 0.99, 0.985, 0.992]
    c5 = welch(a5, b5)
    assert c5.p == pytest.approx(_exact_permutation_p(a5, b5)) and c5.verdict == BETTER


def test_reference_verdict_widens_our_interval_by_the_published_spread():
    s = summarize([0.886, 0.887])  # CI = 0.8865 ± 12.706 · 0.0005 = [0.8801, 0.8929]
    assert reference_verdict(s, 0.878, 0.007) == ("within", "")
    vals = [0.886, 0.887, 0.8865, 0.8862, 0.8868]  # mean 0.8865, five seeds close together
    tight = summarize(vals)
    lo = statistics.fmean(vals) - T975[4] * statistics.stdev(vals) / math.sqrt(5)
    assert lo - 0.007 > 0.878  # our interval, widened by the spread, is above 0.878
    assert reference_verdict(tight, 0.878, 0.007)[0] == "above"
    assert reference_verdict(tight, 0.893, 0.007)[0] == "within"
    assert reference_verdict(tight, 0.900, 0.007)[0] == "below"
    assert reference_verdict(summarize([0.1, 0.1]), 0.878, 0.007)[0] == "below"
    # a target: met only when it lies below our whole interval
    assert reference_verdict(summarize([0.914, 0.915, 0.916]), 0.908, None,
                             "target")[0] == "met"
    assert reference_verdict(summarize([0.900, 0.915]), 0.908, None, "target")[0] == "within"
    assert reference_verdict(summarize([0.90, 0.904]), 0.908, None, "target")[0] == "within"
    assert reference_verdict(summarize([0.90, 0.9001, 0.9002]), 0.908, None,
                             "target")[0] == "missed"
    # one seed: the point ± the spread, said
    verdict, note = reference_verdict(summarize([0.9]), 0.895, 0.007)
    assert verdict == "within" and note.startswith("n=1")
    assert reference_verdict(summarize([]), 0.9) is None
