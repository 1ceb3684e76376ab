"""A comparison's numbers per label: the statistics over seeds of each row, and ``summary.csv``.

Accuracies are *final*: after the last epoch. A row's statistics (:mod:`lrlab.lab.report.stats`)
are taken over the runs that trained every epoch (status ok or not-learning): n, mean, sample
sd and the 95% Student-t interval of the mean, of the test accuracy and, when the row has a
validation split, of the validation accuracy. A diverged or failed run is counted in the
status column, not averaged. A reference (published number or target) is compared by
:func:`lrlab.lab.report.stats.reference_verdict`: our 95% interval widened by the published
spread; a row whose seeds split between training and diverging / not learning gets no
verdict (``unstable``) and is not counted as agreeing.

``summary.csv``, one row per label (numbers with 6 decimals, empty when unknown): ``label``,
``runs``, one count per status, ``final_acc_n``/``_mean``/``_sd``/``_ci95_low``/
``_ci95_high`` (final test accuracy over the finished seeds), ``val_acc_n``/``_mean``/``_sd``/
``_ci95_low``/``_ci95_high`` (final validation accuracy; empty without a validation split),
``best_acc_mean``/``_sd`` (the highest test accuracy over the epochs: picked on the test set,
so optimistic; reported, never used to choose), ``time_s_mean``, ``examples_per_s_mean``,
``reference``, ``reference_spread``, ``reference_kind``, ``diff`` (final test mean minus the
reference), ``reference_verdict`` and ``notes``.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lrlab.lab.report import stats as st
from lrlab.lab.report.observations import (
    RunData,
    divergence,
    divergence_cause,
    divergence_text,
    trace_rows,
)
from lrlab.lab.report.runs import STATUSES

__all__ = ["LabelStats", "label_stats", "derived_notes", "summary_csv"]


@dataclass
class LabelStats:
    """One row of the summary: the runs of a label and their numbers over seeds.

    ``final``/``val``/``best``: one value per run that trained every epoch (final test
    accuracy, final validation accuracy, highest test accuracy over the epochs).
    ``has_val``: the row's runs hold out a validation split (it may be ranked).
    """

    label: str
    runs: list[RunData]
    status: Counter
    final: list[float]
    best: list[float]
    time_s: float | None
    throughput: float | None
    reference: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    val: list[float] = field(default_factory=list)
    has_val: bool = False
    bpc: list[float] = field(default_factory=list)  # final test bits per character (chars)

    @property
    def test(self) -> st.Summary:
        """Final test accuracy over seeds: n, mean, sd, 95% CI."""
        return st.summarize(self.final)

    @property
    def val_summary(self) -> st.Summary:
        """Final validation accuracy over seeds (n = 0 without a validation split)."""
        return st.summarize(self.val if self.has_val else [])

    @property
    def final_mean(self) -> float | None:
        """Mean final test accuracy over the finished seeds."""
        return self.test.mean

    @property
    def final_sd(self) -> float | None:
        """Sample sd of the final test accuracy (None with fewer than two seeds)."""
        return self.test.sd

    @property
    def best_mean(self) -> float | None:
        """Mean over seeds of the highest test accuracy over the epochs (optimistic)."""
        return statistics.fmean(self.best) if self.best else None

    @property
    def best_sd(self) -> float | None:
        """Sample sd of the highest test accuracy over the epochs."""
        return statistics.stdev(self.best) if len(self.best) > 1 else None

    @property
    def unfinished(self) -> int:
        """Runs of the row that did not train every epoch (not averaged)."""
        return sum(1 for r in self.runs if not r.complete)

    @property
    def failed_runs(self) -> int:
        """Runs of the row that diverged or did not learn."""
        return self.status.get("diverged", 0) + self.status.get("not-learning", 0)

    def _reference(self) -> tuple[str, str] | None:
        ref = self.reference or {}
        if ref.get("value") is None:
            return None
        if self.status.get("ok") and self.failed_runs:
            # some seeds trained and some did not: the row's mean mixes two outcomes and its
            # interval is meaningless, so no verdict (it is neither a match nor a miss)
            total = self.status.get("ok", 0) + self.failed_runs
            return ("unstable", f"{self.failed_runs} of {total} runs diverged or did not "
                    "learn: no verdict on seeds this split")
        return st.reference_verdict(self.test, float(ref["value"]), ref.get("spread"),
                                    str(ref.get("kind", "published")))

    @property
    def verdict(self) -> str | None:
        """How the final test accuracy compares with the reference (see
        :func:`lrlab.lab.report.stats.reference_verdict`): within / above / below / met / missed;
        ``unstable`` when some of the row's seeds trained and others diverged or did not
        learn (no verdict)."""
        v = self._reference()
        return None if v is None else v[0]

    @property
    def verdict_note(self) -> str:
        """What the verdict rests on, in words (empty without a reference)."""
        v = self._reference()
        return "" if v is None else v[1]

    @property
    def diff(self) -> float | None:
        """Mean final test accuracy minus the reference value."""
        ref = (self.reference or {}).get("value")
        m = self.final_mean
        return None if ref is None or m is None else m - ref


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else None


def label_stats(meta: dict[str, Any], runs: list[RunData]) -> list[LabelStats]:
    """Per label, in the plan's order (labels not in the plan follow in run order)."""
    order = [d["label"] for d in meta.get("labels", [])]
    info = {d["label"]: d for d in meta.get("labels", [])}
    for r in runs:
        if r.label not in order:
            order.append(r.label)
    out = []
    for label in order:
        group = [r for r in runs if r.label == label]
        if not group:
            continue
        done = [r for r in group if r.complete]
        final = [a for a in (r.final_acc() for r in done) if a is not None]
        val = [a for a in (r.final_val_acc() for r in done) if a is not None]
        best = [b[0] for b in (r.best() for r in done) if b is not None]
        out.append(LabelStats(
            label, group, Counter(r.status for r in group), final, best,
            _mean([r.time_s() for r in group]), _mean([r.throughput() for r in group]),
            info.get(label, {}).get("reference"), list(info.get(label, {}).get("notes", [])),
            val, any(r.has_validation for r in group),
            [b for b in (r.final("test_bpc") for r in done) if b is not None]))
    return out


def derived_notes(s: LabelStats) -> list[str]:
    """Short notes from the numbers: divergences, spikes, not learning."""
    notes = []
    n = len(s.runs)
    div = [r for r in s.runs if r.status == "diverged"]
    collapsed = [r for r in div if divergence_cause(divergence(r)) == "collapse"]
    others = [r for r in div if r not in collapsed]
    if collapsed:
        notes.append(f"{len(collapsed)}/{n} {divergence_text(divergence(collapsed[0]))}"
                     + (" (the first)" if len(collapsed) > 1 else ""))
    if others:
        d = divergence(others[0])
        notes.append(f"{len(others)}/{n} " + (divergence_text(d) if d else "diverged")
                     + (" (the first)" if len(others) > 1 else ""))
    spikes = sum(1 for r in s.runs if any("loss spike" in t.marks for t in trace_rows(r)))
    if spikes:
        notes.append(f"loss spikes in {spikes}/{n} runs")
    if s.status.get("not-learning"):
        notes.append(f"{s.status['not-learning']}/{n} did not learn")
    if s.status.get("failed"):
        err = next((r.error for r in s.runs if r.error), "")
        notes.append(f"{s.status['failed']}/{n} failed: {err}")
    return notes


def summary_csv(stats: list[LabelStats]) -> str:
    """The summary table as CSV (columns in the module docstring; numbers with 6 decimals,
    empty when unknown)."""
    def f(v: float | None, digits: int = 6) -> str:
        return "" if v is None else f"{v:.{digits}f}"

    def block(s: st.Summary, present: bool = True) -> list[str]:
        if not present:
            return ["", "", "", "", ""]
        lo, hi = s.ci if s.ci is not None else (None, None)
        return [str(s.n), f(s.mean), f(s.sd), f(lo), f(hi)]

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    stat_cols = ["n", "mean", "sd", "ci95_low", "ci95_high"]
    w.writerow(["label", "runs", *[s.replace("-", "_") for s in STATUSES],
                *[f"final_acc_{c}" for c in stat_cols], *[f"val_acc_{c}" for c in stat_cols],
                "best_acc_mean", "best_acc_sd", "time_s_mean", "examples_per_s_mean",
                "reference", "reference_spread", "reference_kind", "diff",
                "reference_verdict", "notes"])
    for s in stats:
        ref = s.reference or {}
        w.writerow([s.label, len(s.runs), *[s.status.get(k, 0) for k in STATUSES],
                    *block(s.test), *block(s.val_summary, s.has_val),
                    f(s.best_mean), f(s.best_sd), f(s.time_s, 2), f(s.throughput, 1),
                    f(ref.get("value")), f(ref.get("spread")), ref.get("kind", ""),
                    f(s.diff), s.verdict or "",
                    "; ".join([*derived_notes(s), *s.notes])])
    return buf.getvalue()
