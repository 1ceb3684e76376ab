"""Statistics over seeds: a row's mean and its confidence interval, and two rows compared.

What a report claims rests on these rules (all two-sided, at ``LEVEL`` = 95%, ``ALPHA`` =
0.05):

- **A row** (one label, n seeds): the mean, the sample standard deviation (n − 1 in the
  denominator) and the 95% confidence interval of the mean from Student's t distribution,
  mean ± t(0.975, n − 1) · sd / √n (``scipy.stats.t``). It assumes the seeds' outcomes are
  independent draws from a roughly normal distribution; with 3 seeds t(0.975, 2) = 4.30, so
  the interval is wide, as it should be. With one seed there is no sd and no interval. When
  every seed gave exactly the same value the interval has zero width: the seeds did not vary,
  which is not a claim that the true value is known exactly.
- **Two rows** (A vs B): Welch's unequal-variances t-test (Welch 1947;
  ``scipy.stats.ttest_ind(equal_var=False)``): the difference of means A − B, its 95%
  interval with the Welch–Satterthwaite degrees of freedom, and the p-value. The verdict is
  ``better``/``worse`` only when p < α, else ``no clear difference``. With fewer than two
  seeds on either side there is no test (``no clear difference``, reason "n=1: no test").
  The test does not use the pairing of seeds (runs with the same seed share their data order
  and initialisation); ignoring a positive pairing makes it conservative, never bolder.
- **Several contrasts in one report** form one family: their p-values are adjusted with
  Holm's step-down method (Holm 1979), which keeps the probability of calling any
  noise-only pair better or worse at most α, and the verdicts read the adjusted p-value.
  Contrasts without a test do not count in the family. The printed interval of each
  difference stays the per-contrast 95% interval, so with several contrasts an interval may
  exclude 0 while the (adjusted) verdict is ``no clear difference``.

Zero variance (seeds that gave identical values, e.g. accuracy 1.0 on every seed): a sample
sd of exactly 0 cannot happen under the normal model Welch's test assumes; it happens at a
ceiling or with a coarse metric. Welch's test would then take the constant side's mean as
known exactly (its standard error from the other side alone), and with both sides constant
its statistic is 0/0 or x/0. So when either side has sd 0 we use instead the exact
permutation test of the difference in means (``scipy.stats.permutation_test``, every split
of the pooled seeds; it assumes only that the seeds are exchangeable when there is no
difference) and give no interval:

- identical values on both sides: p = 1, ``no clear difference``;
- completely separated sides: the smallest p the seed counts allow (3 vs 3 seeds: p = 0.1,
  never ``better`` at α = 0.05; 5 vs 5: p ≈ 0.008);
- sd 0 on one side only: the test weighs how far the varying side's seeds reach.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

__all__ = ["LEVEL", "ALPHA", "Summary", "Contrast", "summarize", "welch", "holm",
           "adjust_family", "reference_verdict", "BETTER", "WORSE", "NO_CLEAR",
           "NOT_COMPARABLE"]

LEVEL = 0.95
ALPHA = 0.05
BETTER, WORSE, NO_CLEAR, NOT_COMPARABLE = ("better", "worse", "no clear difference",
                                           "not comparable")
#: splits of the pooled seeds enumerated exactly by the permutation test (beyond: sampled)
_EXACT_SPLITS = 200_000


@dataclass(frozen=True)
class Summary:
    """One row over seeds: n, mean, sample sd and the t interval of the mean."""

    n: int
    mean: float | None
    sd: float | None  # sample sd (n - 1); None when n < 2
    ci: tuple[float, float] | None  # LEVEL t interval of the mean; None when n < 2
    level: float = LEVEL

    @property
    def half_width(self) -> float | None:
        return None if self.ci is None else (self.ci[1] - self.ci[0]) / 2


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def summarize(values: Sequence[float | None], level: float = LEVEL) -> Summary:
    """n, mean, sample sd and the Student-t confidence interval of the mean of ``values``
    (None and non-finite values are left out)."""
    from scipy import stats

    vals = _finite(values)
    n = len(vals)
    if n == 0:
        return Summary(0, None, None, None, level)
    mean = statistics.fmean(vals)
    if n == 1:
        return Summary(1, mean, None, None, level)
    sd = statistics.stdev(vals)  # exact arithmetic: identical values give exactly 0
    if sd == 0:
        return Summary(n, mean, 0.0, (mean, mean), level)
    lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return Summary(n, mean, sd, (float(lo), float(hi)), level)


@dataclass(frozen=True)
class Contrast:
    """A − B on one metric over seeds, and what may be said about it.

    ``p`` is the test's own p-value, ``p_adjusted`` the one the verdict reads (equal to ``p``
    for a lone test, Holm-adjusted within a family). ``ci`` is the per-contrast interval of
    the difference (None when there is no test, or when neither side varied). ``test`` names
    the test used, ``reason`` says why there was none or what was special.
    """

    a: Summary
    b: Summary
    diff: float | None
    ci: tuple[float, float] | None
    df: float | None
    p: float | None
    p_adjusted: float | None
    verdict: str
    test: str
    reason: str = ""
    alpha: float = ALPHA
    higher_is_better: bool = True

    @property
    def tested(self) -> bool:
        return self.p is not None

    def with_adjusted(self, p_adjusted: float) -> Contrast:
        return replace(self, p_adjusted=p_adjusted,
                       verdict=_verdict(self.diff, p_adjusted, self.alpha,
                                        self.higher_is_better))


def _verdict(diff: float | None, p: float | None, alpha: float, higher_is_better: bool) -> str:
    if diff is None or p is None or not p < alpha or diff == 0:
        return NO_CLEAR
    return BETTER if (diff > 0) == higher_is_better else WORSE


def welch(a: Sequence[float | None], b: Sequence[float | None], alpha: float = ALPHA,
          level: float = LEVEL, higher_is_better: bool = True) -> Contrast:
    """Compare the seeds of A with those of B (see the module docstring for the rules).

    Args:
        a, b: one value per seed (None and non-finite values are left out).
        alpha: the level of the test; ``better``/``worse`` only when p < alpha.
        level: the confidence level of the interval of the difference.
        higher_is_better: the direction that ``better`` means (accuracy: higher).
    Returns:
        a :class:`Contrast` whose ``p_adjusted`` equals ``p`` (a lone test).
    """
    from scipy import stats

    va, vb = _finite(a), _finite(b)
    sa, sb = summarize(va, level), summarize(vb, level)
    if sa.n == 0 or sb.n == 0:
        return Contrast(sa, sb, None, None, None, None, None, NOT_COMPARABLE, "none",
                        "no finished run on one side", alpha, higher_is_better)
    diff = sa.mean - sb.mean  # type: ignore[operator]
    if sa.n < 2 or sb.n < 2:
        return Contrast(sa, sb, diff, None, None, None, None, NO_CLEAR, "none",
                        "n=1: no test", alpha, higher_is_better)
    if sa.sd == 0 or sb.sd == 0:
        p = _permutation_p(va, vb)
        reason = ("identical on every seed" if sa.sd == sb.sd == 0 and diff == 0 else
                  "sd 0 on " + ("both sides" if sa.sd == sb.sd else "one side")
                  + ": exact permutation test, no interval")
        return Contrast(sa, sb, diff, None, None, p, p, _verdict(diff, p, alpha,
                        higher_is_better), "permutation", reason, alpha, higher_is_better)
    res = stats.ttest_ind(va, vb, equal_var=False)
    lo, hi = res.confidence_interval(level)
    p, df = float(res.pvalue), float(res.df)
    return Contrast(sa, sb, diff, (float(lo), float(hi)), df, p, p,
                    _verdict(diff, p, alpha, higher_is_better), "welch", "", alpha,
                    higher_is_better)


def _permutation_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of the exact permutation test of mean(a) − mean(b)."""
    import numpy as np
    from scipy import stats

    def statistic(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    splits = math.comb(len(a) + len(b), len(a))
    res = stats.permutation_test((a, b), statistic, permutation_type="independent",
                                 vectorized=True, alternative="two-sided",
                                 n_resamples=np.inf if splits <= _EXACT_SPLITS else 99_999,
                                 rng=np.random.default_rng(0))
    return float(res.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the order given.

    With m p-values sorted ascending p(1) ≤ … ≤ p(m), the adjusted value of the i-th is
    max over j ≤ i of min(1, (m − j + 1) · p(j)). Rejecting where the adjusted value is below
    α keeps the family-wise error rate at most α under any dependence between the tests.
    """
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def adjust_family(contrasts: Sequence[Contrast]) -> list[Contrast]:
    """The contrasts of one report with Holm-adjusted p-values and verdicts (those without a
    test are returned unchanged and do not count in the family)."""
    tested = [i for i, c in enumerate(contrasts) if c.tested]
    adjusted = holm([contrasts[i].p for i in tested])  # type: ignore[misc]
    out = list(contrasts)
    for i, p in zip(tested, adjusted):
        out[i] = contrasts[i].with_adjusted(p)
    return out


def reference_verdict(s: Summary, value: float, spread: float | None = None,
                      kind: str = "published") -> tuple[str, str] | None:
    """How a row compares with a published number, without claiming more than the seeds show.

    The row's interval is its 95% t interval of the mean (the single value when n = 1),
    widened on each side by the published spread (0 when the source gives none). A published
    value inside it: ``within``; below it: ``above`` (our row is higher); above it: ``below``.
    A target (a number to beat) below the interval is ``met``, above it ``missed``, inside it
    ``within``: neither shown. Returns (verdict, note), the note saying when n = 1; None
    without a finished run.
    """
    if s.n == 0 or s.mean is None:
        return None
    lo, hi = s.ci if s.ci is not None else (s.mean, s.mean)
    widen = float(spread or 0.0)
    lo, hi = lo - widen, hi + widen
    note = "n=1: no interval; the single run ± the published spread" if s.n == 1 else ""
    if lo <= value <= hi:
        return "within", note
    if value < lo:
        return ("met" if kind == "target" else "above"), note
    return ("missed" if kind == "target" else "below"), note
