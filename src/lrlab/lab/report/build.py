"""The report of a comparison (or of one run), recomputed from the run records alone.

``write_report(DIR)`` reads ``DIR/comparison.json`` and each ``DIR/runs/NAME`` (or, for a
single run directory, that run) and writes into DIR: ``report.md``, ``report.html`` (one
self-contained file: inline CSS, figures as base64 ``data:`` URIs, no link to anything),
the figures as PNGs and ``summary.csv``.

Accuracies are *final*: after the last epoch. A row's statistics (``lrlab.lab.report.stats``) are
taken over the runs that trained every epoch (status ok or not-learning): n, mean, sample
sd and the 95% Student-t interval of the mean, of the test accuracy and, when the row has a
validation split, of the validation accuracy. A diverged or failed run is counted in the
status column, not averaged, and the headline says so when the best row lost any.

What chooses reads validation, what reports reads test (DESIGN.md, "Honest numbers"):

- the headline ``best:`` row is the highest mean final validation accuracy among the rows
  with a validation split; its test accuracy is reported, never used to choose; a Welch test
  on validation accuracy says whether it is distinguishable from the runner-up. Rows
  without a validation split are not ranked; with none, no best row is named;
- "Side by side" contrasts (the plan's pairs) test final test accuracy with Welch's t-test,
  Holm-adjusted over the report's contrasts: ``better``/``worse`` only when significant;
- a reference (published number or target) is compared by
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

import base64
import csv
import html
import io
import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError
from lrlab.files import atomic_file
from lrlab.lab.records import COMPARISON_FILE, FINISHED, RunRecords, read_comparison
from lrlab.lab.report import stats as st
from lrlab.lab.report.observations import (
    RunData,
    divergence,
    divergence_cause,
    divergence_text,
    has_warmup,
    observations,
    trace_rows,
)

__all__ = ["LabelStats", "Report", "load_runs", "label_stats", "build_report", "write_report",
           "summary_csv", "STATUSES"]

STATUSES = ("ok", "diverged", "not-learning", "pruned", "interrupted", "running", "failed",
            "missing")


# -- loading ------------------------------------------------------------------------------------
def _read_run(path: Path, name: str, label: str, seed: int | None,
              error: str | None = None) -> RunData:
    run = RunData(name, label, seed, error=error)
    rec = RunRecords(path)
    if rec.exists():  # damaged records are one-line errors naming the file
        run.config = rec.read_config()
        run.metrics = rec.metrics()
        run.summary = rec.summary()
        run.events = rec.events()
        run.status = (run.summary or {}).get("status", "running")
    if error and run.status not in FINISHED:
        run.status = "failed"
    return run


def load_runs(directory: str | Path) -> tuple[dict[str, Any], list[RunData]]:
    """The comparison's metadata and its runs, from a comparison or a run directory."""
    d = Path(directory)
    if not d.is_dir():
        raise LrlabError(f"{d} is not a directory")
    if (d / COMPARISON_FILE).exists():
        meta = read_comparison(d)
        failures = meta.get("failures") or {}
        runs = [_read_run(d / "runs" / r["name"], r["name"], r["label"], r.get("seed"),
                          failures.get(r["name"])) for r in meta.get("runs", [])]
        return meta, runs
    if (d / "config.json").exists():
        run = _read_run(d, d.name, d.name, None)
        if run.config:
            run.seed = run.config.get("seed")
        return {"title": f"Run {d.name}", "source": "run", "labels": [], "runs": []}, [run]
    runs_dir = d / "runs" if (d / "runs").is_dir() else d
    found = sorted(p for p in runs_dir.iterdir() if (p / "config.json").exists())
    if not found:
        raise LrlabError(f"{d} holds no comparison.json and no run directories")
    runs = []
    for p in found:
        m = re.fullmatch(r"(.+)-s(\d+)", p.name)
        runs.append(_read_run(p, p.name, m.group(1) if m else p.name,
                              int(m.group(2)) if m else None))
    return {"title": f"Runs in {d.name}", "source": "directory", "labels": [], "runs": []}, runs


# -- numbers ------------------------------------------------------------------------------------
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
        return self.test.mean

    @property
    def final_sd(self) -> float | None:
        return self.test.sd

    @property
    def best_mean(self) -> float | None:
        return statistics.fmean(self.best) if self.best else None

    @property
    def best_sd(self) -> float | None:
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
        v = self._reference()
        return "" if v is None else v[1]

    @property
    def diff(self) -> float | None:
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


def _derived_notes(s: LabelStats) -> list[str]:
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


# -- formatting -------------------------------------------------------------------------------
def _g(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


def _acc(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")


def _msd(s: st.Summary) -> str:
    """ "mean ± sd" of a summary (the bare value with one seed)."""
    return _acc(s.mean, s.sd)


def _ci(s: st.Summary) -> str:
    return "—" if s.ci is None else f"[{s.ci[0]:.4f}, {s.ci[1]:.4f}]"


def _p(p: float | None) -> str:
    if p is None:
        return "—"
    return "< 0.0001" if p < 1e-4 else f"{p:.3g}"


def _n_pair(c: st.Contrast) -> str:
    return f"{c.a.n} vs {c.b.n}"


def _test_name(c: st.Contrast) -> str:
    if c.test == "welch":
        return f"Welch t, df {c.df:.1f}"
    if c.test == "permutation":
        return "exact permutation (sd 0)"
    return f"none ({c.reason})"


def _contrast_brief(c: st.Contrast, what: str) -> str:
    """The difference with its interval or p-value and n, in words."""
    if c.diff is None:
        return f"{what}: not comparable ({c.reason})"
    text = f"{what} {c.diff:+.4f}"
    if c.test == "none":
        return text + f", n = {_n_pair(c)}: no test"
    if c.ci is not None:
        text += f", 95% CI [{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]"
    name = "Welch p" if c.test == "welch" else "exact permutation p"
    return text + f", {name} = {_p(c.p)}, n = {_n_pair(c)}"


def _status_text(c: Counter) -> str:
    return ", ".join(f"{c[k]} {k}" for k in STATUSES if c.get(k))


def _ref_text(ref: dict[str, Any] | None) -> str:
    if not ref:
        return ""
    text = f"{ref['value']:.4g}"
    if ref.get("spread"):
        text += f" ± {ref['spread']:.3g}"
    return text + (" (target)" if ref.get("kind") == "target" else "")


def _verdict_text(s: LabelStats) -> str:
    if s.diff is None:
        return ""
    return f"{s.diff:+.4f} ({s.verdict}{'; ' + s.verdict_note if s.verdict_note else ''})"


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
                    "; ".join([*_derived_notes(s), *s.notes])])
    return buf.getvalue()


# -- the document ---------------------------------------------------------------------------
@dataclass
class Block:
    kind: str  # h1 h2 p ul table img
    text: str = ""
    items: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    image: Path | None = None
    plain: bool = False  # a table of words: no numeric alignment of its cells


@dataclass
class Report:
    title: str
    headline: list[str]
    blocks: list[Block]
    stats: list[LabelStats]

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        out += [f"**{line}**  " if i == 0 else f"{line}  " for i, line in
                enumerate(self.headline)]
        out.append("")
        for b in self.blocks:
            if b.kind == "h2":
                out += [f"## {b.text}", ""]
            elif b.kind == "p":
                out += [b.text, ""]
            elif b.kind == "ul":
                out += [f"- {item}" for item in b.items] + [""]
            elif b.kind == "table":
                out += _md_table(b.header, b.rows) + [""]
            elif b.kind == "img" and b.image is not None:
                out += [f"![{b.text}]({b.image.name})", ""]
        return "\n".join(out).rstrip() + "\n"

    def html(self) -> str:
        body = [f"<h1>{_e(self.title)}</h1>"]
        if self.headline:
            body.append(f'<p class="headline">{_e(self.headline[0])}</p>')
            body += [f'<p class="sub">{_e(line)}</p>' for line in self.headline[1:]]
        for b in self.blocks:
            if b.kind == "h2":
                body.append(f"<h2>{_e(b.text)}</h2>")
            elif b.kind == "p":
                body.append(f"<p>{_e(b.text)}</p>")
            elif b.kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_e(i)}</li>" for i in b.items) + "</ul>")
            elif b.kind == "table":
                head = "".join(f"<th>{_e(h)}</th>" for h in b.header)
                rows = "".join("<tr>" + "".join(
                    f'<td class="{"" if b.plain else _cell_class(c)}">{_e(c)}</td>'
                    for c in row) + "</tr>" for row in b.rows)
                body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
                            f"<tbody>{rows}</tbody></table></div>")
            elif b.kind == "img" and b.image is not None:
                data = base64.b64encode(b.image.read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{_e(b.text)}" '
                            f'src="data:image/png;base64,{data}"></figure>')
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{_e(self.title)}</title><style>{_CSS}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")


_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;"
    "margin:2em auto;padding:0 1em;color:#1d2430;line-height:1.45}"
    "h1{font-size:1.5em;margin-bottom:.3em}h2{font-size:1.15em;margin-top:1.8em;"
    "border-bottom:1px solid #dde2ea;padding-bottom:.2em}"
    ".headline{font-size:1.08em;font-weight:600;background:#eef5ff;border-left:4px solid "
    "#2f6fdf;padding:.5em .8em}.sub{color:#4a5568;margin:.3em 0}"
    "table{border-collapse:collapse;font-size:.84em;margin:.5em 0}"
    "th,td{padding:.3em .45em;border-bottom:1px solid #e5e9f0;text-align:left;"
    "vertical-align:top}th{background:#f5f7fa}td.num{text-align:right;"
    "font-variant-numeric:tabular-nums;white-space:nowrap}td.pos{color:#137333;"
    "text-align:right;white-space:nowrap}td.neg{color:#b3261e;text-align:right;"
    "white-space:nowrap}td.wide{min-width:11em}tr:hover td{background:#fafbfd}"
    ".scroll{overflow-x:auto}"
    "figure{margin:1em 0}img{max-width:100%;height:auto}li{margin:.2em 0}"
)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _cell_class(text: str) -> str:
    if re.fullmatch(r"[+-]?0(\.0*)?", text):
        return "num"
    if re.fullmatch(r"\+\d[\d.]*", text):
        return "pos"
    if re.fullmatch(r"-\d[\d.]*", text):
        return "neg"
    if re.fullmatch(r"[\d.,±\s—%e+<\[\]-]+|\d+( of \d+)? vs \d+( of \d+)?", text):
        return "num"
    return "wide" if len(text) > 40 else ""


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(t: str) -> str:
        return str(t).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _best_line(stats: list[LabelStats], baseline: str | None) -> list[str]:
    """The "best:" line, chosen on validation (module docstring), and what it rests on."""
    finished = [s for s in stats if s.test.n]
    if not finished:
        return ["no run finished all its epochs yet"]
    if len(stats) == 1:  # nothing to choose between: say what the one row measured
        only = stats[0]
        text = f"{only.label}: test acc {_msd(only.test)}"
        if only.has_val and only.val_summary.n:
            text = f"{only.label}: val acc {_msd(only.val_summary)}, test acc {_msd(only.test)}"
        return [text + f" (n = {only.test.n})"]
    ranked = sorted((s for s in stats if s.has_val and s.val_summary.n),
                    key=lambda s: -s.val_summary.mean)  # type: ignore[operator]
    unranked = [s.label for s in finished if not s.has_val]
    if not ranked:
        return ["best: none chosen — no row has a validation split (val_size 0), and the test "
                "set is reported, never used to choose"]
    top = ranked[0]
    v, t = top.val_summary, top.test
    text = (f"best: {top.label} (chosen on validation: val acc {_msd(v)}, n = {v.n}); "
            f"its test acc {_msd(t)}")
    if t.ci is not None:
        text += f", 95% CI {_ci(t)}"
    if top.unfinished:
        text += f" ({_plural(top.unfinished, 'run')} that did not finish not averaged)"
    if len(ranked) > 1:
        c = st.welch(top.val, ranked[1].val)
        brief = _contrast_brief(c, "val diff")
        if c.diff == 0:
            text += (f"; tied with the runner-up {ranked[1].label} (named first as it comes "
                     f"first in the plan; {brief})")
        else:
            say = "not distinguishable from" if c.verdict != st.BETTER else \
                "distinguishable from"
            text += f"; {say} the runner-up {ranked[1].label} ({brief})"
    else:
        text += "; the only row with a validation split"
    lines = [text]
    base = next((s for s in ranked if s.label == baseline), None) if baseline else None
    if base is not None and base is not top and base is not ranked[1]:
        c = st.welch(top.val, base.val)
        lines.append(f"best vs baseline {base.label} on validation: "
                     f"{_contrast_brief(c, 'diff')} ({c.verdict})")
    if unranked:
        lines.append("not ranked (no validation split): " + ", ".join(unranked))
    return lines


def _workload(s: LabelStats) -> str | None:
    """What a row trains on: its dataset and model (rows on different workloads have
    accuracies that cannot be ranked against each other); None when no run of the row got
    as far as writing its configuration."""
    config = next((r.config for r in s.runs if r.config), None)
    if not config:
        return None
    return f"{config.get('dataset', '?')} / {config.get('model', '?')}"


def _best_lines(stats: list[LabelStats], baseline: str | None) -> list[str]:
    """One best line per workload: a plan that trains several datasets or models ranks its
    rows within each, never a LeNet accuracy against a transformer's."""
    workloads: dict[str, list[LabelStats]] = {}
    for s in stats:
        name = _workload(s)
        if name is not None:  # a row with no configuration on disk finished nothing
            workloads.setdefault(name, []).append(s)
    if len(workloads) <= 1:
        return _best_line(stats, baseline)
    lines: list[str] = []
    for name, rows in workloads.items():
        mine = baseline if any(r.label == baseline for r in rows) else None
        lines += [f"[{name}] {line}" for line in _best_line(rows, mine)]
    return lines


def _headline(stats: list[LabelStats], baseline: str | None,
              env_flags: list[str] | None = None) -> list[str]:
    lines = _best_lines(stats, baseline)
    judged = [s for s in stats if s.verdict is not None]
    if judged:
        good = [s for s in judged if s.verdict in ("within", "met")]
        split = [s for s in judged if s.verdict == "unstable"]
        text = (f"{len(good)} of {len(judged)} rows with a reference agree with it (the "
                "published value within our 95% CI of final test accuracy widened by the "
                "published spread, or a target below that interval)")
        misses = [f"{s.label} {s.verdict} ({s.diff:+.4f})" for s in judged
                  if s not in good and s not in split]
        if misses:
            text += "; not reproduced: " + ", ".join(misses)
        if split:
            text += ("; no verdict, seeds split between training and failing: " + ", ".join(
                f"{s.label} ({s.failed_runs} of {s.status.get('ok', 0) + s.failed_runs} "
                "diverged or did not learn)" for s in split))
        lines.append(text)
    bad: Counter = Counter()
    for s in stats:
        bad.update({k: v for k, v in s.status.items() if k != "ok"})
    if bad:
        lines.append("not ok: " + _status_text(bad))
    lines += env_flags or []
    return lines


def _contrasts(stats: list[LabelStats], pairs: list[list[str]]
               ) -> list[tuple[str, str, st.Contrast]]:
    """The plan's pairs A vs B on final test accuracy: Welch's t-test, Holm-adjusted over the
    report's pairs (``lrlab.lab.report.stats``). Pairs naming an unknown label are left out."""
    by = {s.label: s for s in stats}
    found = [(a, b) for a, b in pairs if a in by and b in by]
    raw = [st.welch(by[a].final, by[b].final) for a, b in found]
    return [(a, b, c) for (a, b), c in zip(found, st.adjust_family(raw))]


def _contrast_rows(contrasts: list[tuple[str, str, st.Contrast]],
                   stats: list[LabelStats]) -> list[list[str]]:
    runs = {s.label: len(s.runs) for s in stats}

    def n(label: str, k: int) -> str:  # "2 of 3" when a run of the label did not finish
        return str(k) if runs.get(label, k) == k else f"{k} of {runs[label]}"

    rows = []
    for a, b, c in contrasts:
        ci = "—" if c.ci is None else f"[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]"
        rows.append([a, b, f"{n(a, c.a.n)} vs {n(b, c.b.n)}", _msd(c.a), _msd(c.b),
                     "—" if c.diff is None else f"{c.diff:+.4f}", ci, _p(c.p),
                     _p(c.p_adjusted), _test_name(c), c.verdict])
    return rows


#: environment entries shown, in this order (others a run records follow)
ENV_KEYS = ("torch", "python", "numpy", "platform", "cpu", "cpu_count", "threads", "device",
            "gpu", "cuda", "deterministic", "cudnn_deterministic", "cudnn_benchmark",
            "float32_matmul_precision")


def _env_value(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _environment(runs: list[RunData]) -> tuple[list[Block], list[str]]:
    """The section on what the runs ran on, and the headline flags when they differ."""
    envs: dict[str, dict[str, Any]] = {}
    unrecorded: list[str] = []
    for r in runs:
        if not r.config:
            continue
        env = r.config.get("environment")
        if not isinstance(env, dict):
            unrecorded.append(r.name)
            env = {k: r.config[k] for k in ("torch", "device") if k in r.config}
        envs[r.name] = env
    if not envs:
        return [], []
    keys = [k for k in ENV_KEYS if any(k in e for e in envs.values())]
    keys += sorted({k for e in envs.values() for k in e} - set(keys))
    rows, differ = [], []
    for key in keys:
        where: dict[str, list[str]] = {}
        for name, env in envs.items():
            if key in env:
                where.setdefault(_env_value(env[key]), []).append(name)
        if len(where) == 1:
            rows.append([key, next(iter(where))])
            continue
        differ.append(key)
        parts = []
        for value, names in where.items():
            shown = ", ".join(names[:3]) + (f", … ({len(names)} runs)" if len(names) > 3 else "")
            parts.append(f"{value} ({shown})")
        rows.append([key, "DIFFERS: " + "; ".join(parts)])
    blocks = [Block("h2", "Environment"),
              Block("p", "What the runs' numbers depend on beyond their settings, from each "
                    "run's config.json: a seed reproduces bit for bit only with the same torch "
                    "version, thread count, device and deterministic settings, and runs near "
                    "the edge of stability can fork on the last bits."),
              Block("table", header=["", "value"], rows=rows, plain=True)]
    flags = []
    if differ:
        blocks.append(Block("p", f"The runs of this comparison differ in {', '.join(differ)}: "
                            "their numbers are not comparable bit for bit."))
        flags.append(f"environment differs across runs in: {', '.join(differ)} (see "
                     "Environment)")
    if unrecorded:
        blocks.append(Block("p", f"Not recorded for {_plural(len(unrecorded), 'run')} (older "
                            f"records: torch and device only): {', '.join(unrecorded[:6])}"
                            + (" …" if len(unrecorded) > 6 else "")))
    changed = [f"{r.name}: {e.get('message', '')}" for r in runs for e in r.events
               if e.get("kind") == "environment-changed"]
    if changed:
        blocks.append(Block("ul", items=changed))
        flags.append(f"{_plural(len(changed), 'resume')} in a different environment (see "
                     "Environment)")
    return blocks, flags


def _method_notes(stats: list[LabelStats], n_contrasts: int, tested: int) -> list[str]:
    """How the numbers were computed, stated in the report itself."""
    items = ["Rows: mean, sample sd (n − 1) and 95% confidence interval of the mean over the "
             "n seeds that trained every epoch. The interval is Student's t: mean ± "
             "t(0.975, n − 1) · sd / √n (scipy.stats.t); none with n = 1. Diverged and failed "
             "runs are counted in the status column, not averaged."]
    if any(s.has_val for s in stats):
        items.append("Best row: the highest mean final validation accuracy among rows with a "
                     "validation split; its test accuracy is reported, not used to choose. It "
                     "is compared with the runner-up by Welch's t-test on validation accuracy "
                     f"(two-sided, α = {st.ALPHA:g}; a single test, not adjusted; the exact "
                     "permutation test when a side's seeds are all identical).")
    else:
        items.append("Best row: none chosen, since no row has a validation split; the test "
                     "set is never used to choose.")
    if n_contrasts:
        items.append("Side by side: Welch's t-test (scipy.stats.ttest_ind, equal_var=False) on "
                     f"final test accuracy, two-sided, α = {st.ALPHA:g}; p-values are "
                     f"Holm-adjusted over this report's {_plural(tested, 'tested contrast')} "
                     "(family-wise error ≤ α), and better/worse is said only when the adjusted "
                     "p < α, else no clear difference. The 95% CI of a difference is per "
                     "contrast (Welch–Satterthwaite df). When a side's seeds are all identical "
                     "(sd 0) the exact permutation test is used instead, with no CI. The test "
                     "does not pair seeds, which makes it conservative.")
    if any(s.reference for s in stats):
        items.append("Reference: within when the published value lies inside our 95% CI "
                     "widened on each side by the published spread; above/below when it lies "
                     "below/above that interval; a target is met when it lies below it, missed "
                     "when above, within when inside (neither shown). With n = 1 the single "
                     "value ± the spread stands for the interval. A row where some seeds "
                     "trained and others diverged or did not learn gets no verdict "
                     "(unstable): a mean over two outcomes says nothing about either.")
    return items


def _choose_trace(meta: dict[str, Any], runs: list[RunData], trace: str | None) -> RunData | None:
    with_data = [r for r in runs if r.metrics]
    if not with_data:
        return None
    wanted = trace or meta.get("trace")
    if wanted:
        pick = next((r for r in with_data if r.label == wanted or r.name == wanted), None)
        if pick is not None:
            return pick
        if trace:
            labels = sorted({r.label for r in runs})
            raise LrlabError(f"--trace: no run labelled {trace!r} with records; labels: "
                             f"{', '.join(labels)}")
    return next((r for r in with_data if has_warmup(r.config)), with_data[0])


def build_report(directory: str | Path, trace: str | None = None) -> Report:
    """Read the records and write the figures; returns the report (text written separately)."""
    d = Path(directory)
    meta, runs = load_runs(d)
    stats = label_stats(meta, runs)
    groups = {s.label: s.runs for s in stats}
    any_val = any(s.has_val for s in stats)
    any_bpc = any(s.bpc for s in stats)
    blocks: list[Block] = []

    header = ["label", "runs", "n", "test acc", "test 95% CI",
              *(["test bpc"] if any_bpc else []),
              *(["val acc", "val 95% CI"] if any_val else []), "reference",
              "diff (verdict)", "time (s)", "examples/s", "notes"]
    rows = []
    foot: list[str] = []
    numbers: dict[str, int] = {}  # a note shared by several rows is listed once
    for s in stats:
        marks = []
        for note in s.notes:
            if note not in numbers:
                numbers[note] = len(foot) + 1
                foot.append(f"[{numbers[note]}] {s.label}: {note}")
            marks.append(f"[{numbers[note]}]")
        t, v = s.test, s.val_summary
        val_cells = ([_msd(v), _ci(v)] if s.has_val else ["no split", ""]) if any_val else []
        bpc_cells = [_msd(st.summarize(s.bpc)) if s.bpc else "—"] if any_bpc else []
        rows.append([s.label, _status_text(s.status), str(t.n), _msd(t),
                     _ci(t), *bpc_cells, *val_cells, _ref_text(s.reference), _verdict_text(s),
                     "—" if s.time_s is None else f"{s.time_s:.1f}",
                     "—" if s.throughput is None else f"{s.throughput:.0f}",
                     " ".join(["; ".join(_derived_notes(s)), *marks]).strip()])
    blocks.append(Block("h2", "Summary"))
    blocks.append(Block("table", header=header, rows=rows))
    bpc_text = "test bpc: final test loss in bits per character, mean ± sd. " \
        if any_bpc else ""
    blocks.append(Block("p", bpc_text + "runs: by status; n: the seeds averaged (those that "
                        "trained every "
                        "epoch). Accuracies are final (after the last epoch), as mean ± "
                        "sample sd and the 95% Student-t confidence interval of the mean over "
                        "the n seeds; diff = test mean − reference. How each verdict is "
                        "reached: see Statistics below."))
    if foot:
        blocks.append(Block("ul", items=foot))

    contrasts = _contrasts(stats, meta.get("contrasts") or [])
    tested = sum(1 for _, _, c in contrasts if c.tested)
    if contrasts:
        blocks.append(Block("h2", "Side by side"))
        blocks.append(Block("table", header=["label", "versus", "n", "test acc", "versus acc",
                                             "diff", "95% CI of diff", "p", "p (Holm)", "test",
                                             "verdict"], rows=_contrast_rows(contrasts, stats)))
        blocks.append(Block("p", "Final test accuracy, label − versus. Welch's t-test (the "
                            "exact permutation test, with no CI, when a side's seeds are all "
                            f"identical), two-sided, α = {st.ALPHA:g}; the verdict reads the "
                            "p-value Holm-adjusted over the "
                            f"{_plural(tested, 'tested contrast')} of this report (a pair "
                            "with a single seed on a side has no test and is not in the "
                            "family)."))

    from lrlab.lab.report.plots import BAND, plot_lr, plot_metric, plot_sharpness, sharpness_key

    blocks.append(Block("h2", "Curves"))
    figs = [(plot_lr(groups, d / "lr.png"), "learning rate per label"),
            (plot_metric(groups, "train_loss", "Train loss", "train loss",
                         d / "train_loss.png", log=True), "train loss"),
            (plot_metric(groups, "test_acc", "Test accuracy", "test accuracy",
                         d / "test_acc.png"), "test accuracy")]
    if any(r.series("val_acc") and any(v is not None for v in r.series("val_acc"))
           for r in runs):
        figs.append((plot_metric(groups, "val_acc", "Validation accuracy",
                                 "validation accuracy", d / "val_acc.png"),
                     "validation accuracy"))
    blocks += [Block("img", text=alt, image=p) for p, alt in figs]
    blocks.append(Block("p", f"Per label: the line is the mean over seeds at each epoch, the "
                        f"shaded band the {BAND} (a seed counts at an epoch where it has a "
                        "finite value; a run that stopped leaves the band there)."))
    if any(sharpness_key(rs) for rs in groups.values()):
        blocks.append(Block("img", text="sharpness against the stability threshold",
                            image=plot_sharpness(groups, d / "sharpness.png")))
        blocks.append(Block("p", "Sharpness: the top eigenvalue of the loss Hessian on a fixed "
                            "training batch (for Adam-like optimizers of the preconditioned "
                            "Hessian P⁻¹H, P = diag(√v̂ + ε)), measured by power iteration "
                            "after the epochs shown, divided by the threshold above which "
                            "the LR of the epoch's last update is unstable on a quadratic: "
                            "2/η for SGD, (2+2β)/η with momentum β, (2+2β1)/((1−β1)η) for "
                            "Adam (Cohen et al. 2021, 2022). At 1 (dashed) training is at the "
                            "edge of stability; a decayed LR moves the ratio down."))

    run = _choose_trace(meta, runs, trace)
    if run is not None:
        trows = trace_rows(run)
        blocks.append(Block("h2", f"Epoch by epoch: {run.name}"))
        obs = observations(run, trows)
        if obs:
            blocks.append(Block("ul", items=obs))
        has_val = any(t.val_loss is not None or t.val_acc is not None for t in trows)
        th = ["epoch", "phase", "lr first → last", "train loss", "train acc", "test loss",
              "test acc", *(["val loss", "val acc"] if has_val else []), "gap", "marks"]
        tr = []
        for t in trows:
            gap = None if t.train_acc is None or t.test_acc is None else t.train_acc - t.test_acc
            tr.append([str(t.epoch), t.phase, f"{_g(t.lr_first)} → {_g(t.lr_last)}",
                       _f4(t.train_loss), _f4(t.train_acc), _f4(t.test_loss), _f4(t.test_acc),
                       *([_f4(t.val_loss), _f4(t.val_acc)] if has_val else []),
                       "—" if gap is None else f"{gap:+.4f}", ", ".join(t.marks)])
        blocks.append(Block("table", header=th, rows=tr))
        blocks.append(Block("p", "gap = train accuracy − test accuracy; epochs are 1-based."))

    blocks.append(Block("h2", "Runs"))
    run_val = any(r.has_validation for r in runs)
    rh = ["run", "label", "seed", "status", "epochs", "final test acc",
          *(["final val acc"] if run_val else []), "peak test acc (epoch)", "time (s)"]
    rr = []
    for r in runs:
        b = r.best()
        cause = divergence_cause(divergence(r))
        rr.append([r.name, r.label, "" if r.seed is None else str(r.seed),
                   r.status + (f" ({cause})" if cause else ""), str(len(r.metrics)),
                   _f4(r.final_acc()), *([_f4(r.final_val_acc())] if run_val else []),
                   "—" if b is None else f"{b[0]:.4f} ({b[1]})", _f1(r.time_s())])
    blocks.append(Block("table", header=rh, rows=rr))
    blocks.append(Block("p", "peak test acc: the highest test accuracy over the epochs, "
                        "picked on the test set and so optimistic; shown, never used to "
                        "choose."))
    errors = [f"{r.name}: {r.error}" for r in runs if r.status == "failed" and r.error]
    if errors:
        blocks.append(Block("ul", items=errors))
    env_blocks, env_flags = _environment(runs)
    blocks += env_blocks
    blocks.append(Block("h2", "Statistics"))
    blocks.append(Block("ul", items=_method_notes(stats, len(contrasts), tested)))
    if meta.get("notes"):
        blocks.append(Block("h2", "Notes"))
        blocks.append(Block("ul", items=list(meta["notes"])))
    if meta.get("source"):
        blocks.append(Block("p", f"Comparison from {meta['source']}; regenerate this report "
                            "with: lrlab report DIR"))
    return Report(meta.get("title") or "Comparison",
                  _headline(stats, meta.get("baseline"), env_flags), blocks, stats)


def _f4(v: float | None) -> str:
    return "—" if v is None else (f"{v:.4f}" if math.isfinite(v) else str(v))


def _f1(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    csv: Path
    headline: list[str]


def write_report(directory: str | Path, trace: str | None = None) -> ReportFiles:
    """Write report.md, report.html, summary.csv and the PNGs into ``directory``."""
    d = Path(directory)
    report = build_report(d, trace)
    md, page, table = d / "report.md", d / "report.html", d / "summary.csv"
    for path, text in ((md, report.markdown()), (page, report.html()),
                       (table, summary_csv(report.stats))):
        with atomic_file(path) as fh:
            fh.write(text)
    return ReportFiles(md, page, table, report.headline)
