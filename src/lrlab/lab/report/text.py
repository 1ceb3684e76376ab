"""How the reports write numbers and counts: one formatter per kind of number.

The comparison report (:mod:`lrlab.lab.report.build`) and the tune report
(:mod:`lrlab.lab.tune.report`) both use these, so a p-value or a mean ± sd reads the same in
each. An unknown value (None) is written ``—`` (:data:`NONE`) by every formatter here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lrlab.lab.report.stats import Summary

__all__ = ["NONE", "p_value", "fixed", "signed", "sig", "mean_sd", "interval",
           "signed_interval", "plural", "counts", "setting"]

#: What stands for a number that is unknown, in every table and sentence.
NONE = "—"


def p_value(p: float | None) -> str:
    """A p-value: ``< 0.0001`` below 1e-4, else three significant digits (``0.0312``,
    ``0.29``, ``1``); ``—`` when there is none (no test)."""
    if p is None:
        return NONE
    return "< 0.0001" if p < 1e-4 else f"{p:.3g}"


def fixed(v: float | None, digits: int = 4) -> str:
    """``v`` with ``digits`` decimals (accuracies and losses: ``0.8500``); ``inf``/``nan`` as
    such (a loss that blew up says so)."""
    return NONE if v is None else f"{v:.{digits}f}"


def signed(v: float | None, digits: int = 4) -> str:
    """A difference, with its sign always written: ``+0.0123``, ``-0.0100``."""
    return NONE if v is None else f"{v:+.{digits}f}"


def sig(v: float | None, digits: int = 4) -> str:
    """``v`` with ``digits`` significant digits (LRs, references: ``0.001``, ``1e-05``)."""
    return NONE if v is None else f"{v:.{digits}g}"


def mean_sd(s: Summary) -> str:
    """``mean ± sd`` of a summary over seeds, 4 decimals; the bare mean with one seed."""
    if s.mean is None:
        return NONE
    return fixed(s.mean) + (f" ± {s.sd:.4f}" if s.sd is not None else "")


def interval(s: Summary) -> str:
    """The confidence interval of a summary's mean, ``[low, high]`` with 4 decimals."""
    return NONE if s.ci is None else f"[{s.ci[0]:.4f}, {s.ci[1]:.4f}]"


def signed_interval(ci: tuple[float, float] | None) -> str:
    """The confidence interval of a difference, signs written: ``[-0.0100, +0.0300]``."""
    return NONE if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def plural(n: int, word: str) -> str:
    """``1 run``, ``2 runs``: the count and the word, with an ``s`` unless n is 1."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def counts(counter: Mapping[str, int], order: Iterable[str]) -> str:
    """The non-zero counts of ``counter`` in ``order``: ``2 ok, 1 diverged``."""
    return ", ".join(f"{counter[k]} {k}" for k in order if counter.get(k))


def setting(v: Any) -> str:
    """A setting's value: a float with 3 significant digits (an LR, ``0.0788``), anything
    else as written (``cosine()``, ``64``)."""
    return sig(v, 3) if isinstance(v, float) else str(v)
