"""The report of a comparison (or of one run), recomputed from the run records alone.

``write_report(DIR)`` reads ``DIR/comparison.json`` and each ``DIR/runs/NAME`` (or, for a
single run directory, that run) and writes into DIR: ``report.md``, ``report.html`` (one
self-contained file: inline CSS, figures as base64 ``data:`` URIs, no link to anything),
the figures as PNGs and ``summary.csv``.

Accuracies: *final* is the test accuracy after the last epoch, *best* the highest over the
epochs. Means and sample standard deviations (n-1) over seeds are taken over the runs that
trained every epoch (status ok or not-learning): a diverged or failed run is counted in the
status column, not averaged. The reference column is the published (or target) number and
"diff" is the final mean minus it.
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
from lrlab.lab.observations import RunData, has_warmup, num, observations, trace_rows
from lrlab.lab.records import RunRecords, read_json

__all__ = ["LabelStats", "Report", "load_runs", "label_stats", "build_report", "write_report",
           "summary_csv", "STATUSES"]

STATUSES = ("ok", "diverged", "not-learning", "interrupted", "running", "failed", "missing")


# -- loading ------------------------------------------------------------------------------------
def _read_run(path: Path, name: str, label: str, seed: int | None,
              error: str | None = None) -> RunData:
    run = RunData(name, label, seed, error=error)
    rec = RunRecords(path)
    if rec.exists():
        try:
            run.config = rec.read_config()
        except LrlabError:
            run.config = None
        run.metrics = rec.metrics()
        run.summary = rec.summary()
        run.events = rec.events()
        run.status = (run.summary or {}).get("status", "running")
    if error and run.status not in ("ok", "diverged", "not-learning"):
        run.status = "failed"
    return run


def load_runs(directory: str | Path) -> tuple[dict[str, Any], list[RunData]]:
    """The comparison's metadata and its runs, from a comparison or a run directory."""
    d = Path(directory)
    if not d.is_dir():
        raise LrlabError(f"{d} is not a directory")
    meta_path = d / "comparison.json"
    if meta_path.exists():
        meta = read_json(meta_path)
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
    label: str
    runs: list[RunData]
    status: Counter
    final: list[float]
    best: list[float]
    time_s: float | None
    throughput: float | None
    reference: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def final_mean(self) -> float | None:
        return statistics.fmean(self.final) if self.final else None

    @property
    def final_sd(self) -> float | None:
        return statistics.stdev(self.final) if len(self.final) > 1 else None

    @property
    def best_mean(self) -> float | None:
        return statistics.fmean(self.best) if self.best else None

    @property
    def best_sd(self) -> float | None:
        return statistics.stdev(self.best) if len(self.best) > 1 else None

    @property
    def verdict(self) -> str | None:
        """How the final mean compares with the reference: ``within`` its published spread,
        ``above``/``below`` it (or the bare number), ``met``/``missed`` for a target."""
        d = self.diff
        if d is None:
            return None
        ref = self.reference or {}
        if ref.get("kind") == "target":
            return "met" if d >= 0 else "missed"
        spread = ref.get("spread")
        if spread is not None and abs(d) <= spread:
            return "within"
        return "above" if d >= 0 else "below"

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
        best = [b[0] for b in (r.best() for r in done) if b is not None]
        out.append(LabelStats(
            label, group, Counter(r.status for r in group), final, best,
            _mean([r.time_s() for r in group]), _mean([r.throughput() for r in group]),
            info.get(label, {}).get("reference"), list(info.get(label, {}).get("notes", []))))
    return out


def _derived_notes(s: LabelStats) -> list[str]:
    """Short notes from the numbers: divergences, spikes, not learning."""
    notes = []
    n = len(s.runs)
    div = [r for r in s.runs if r.status == "diverged"]
    if div:
        d = (div[0].summary or {}).get("diverged_at") or {}
        where = f" (first at update {d.get('update')}, lr {_g(num(d.get('lr')))})" if d else ""
        notes.append(f"{len(div)}/{n} diverged{where}")
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


def _status_text(c: Counter) -> str:
    return ", ".join(f"{c[k]} {k}" for k in STATUSES if c.get(k))


def _ref_text(ref: dict[str, Any] | None) -> str:
    if not ref:
        return ""
    text = f"{ref['value']:.4g}"
    if ref.get("spread"):
        text += f" ± {ref['spread']:.3g}"
    return text + (" (target)" if ref.get("kind") == "target" else "")


def summary_csv(stats: list[LabelStats]) -> str:
    """The summary table as CSV (numbers with 6 decimals; empty when unknown)."""
    def f(v: float | None, digits: int = 6) -> str:
        return "" if v is None else f"{v:.{digits}f}"

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", "runs", *[s.replace("-", "_") for s in STATUSES], "final_acc_mean",
                "final_acc_sd", "best_acc_mean", "best_acc_sd", "time_s_mean",
                "examples_per_s_mean", "reference", "reference_spread", "reference_kind",
                "diff", "notes"])
    for s in stats:
        ref = s.reference or {}
        w.writerow([s.label, len(s.runs), *[s.status.get(k, 0) for k in STATUSES],
                    f(s.final_mean), f(s.final_sd), f(s.best_mean), f(s.best_sd),
                    f(s.time_s, 2), f(s.throughput, 1), f(ref.get("value")),
                    f(ref.get("spread")), ref.get("kind", ""), f(s.diff),
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
                    f'<td class="{_cell_class(c)}">{_e(c)}</td>' for c in row) + "</tr>"
                    for row in b.rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
                            "</table>")
            elif b.kind == "img" and b.image is not None:
                data = base64.b64encode(b.image.read_bytes()).decode("ascii")
                body.append(f'<figure><img alt="{_e(b.text)}" '
                            f'src="data:image/png;base64,{data}"></figure>')
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{_e(self.title)}</title><style>{_CSS}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")


_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;"
    "margin:2em auto;padding:0 1em;color:#1d2430;line-height:1.45}"
    "h1{font-size:1.5em;margin-bottom:.3em}h2{font-size:1.15em;margin-top:1.8em;"
    "border-bottom:1px solid #dde2ea;padding-bottom:.2em}"
    ".headline{font-size:1.2em;font-weight:600;background:#eef5ff;border-left:4px solid "
    "#2f6fdf;padding:.5em .8em}.sub{color:#4a5568;margin:.2em 0}"
    "table{border-collapse:collapse;font-size:.88em;margin:.5em 0}"
    "th,td{padding:.3em .6em;border-bottom:1px solid #e5e9f0;text-align:left;"
    "vertical-align:top}th{background:#f5f7fa}td.num{text-align:right;"
    "font-variant-numeric:tabular-nums}td.pos{color:#137333;text-align:right}"
    "td.neg{color:#b3261e;text-align:right}tr:hover td{background:#fafbfd}"
    "figure{margin:1em 0}img{max-width:100%;height:auto}li{margin:.2em 0}"
)


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _cell_class(text: str) -> str:
    if re.fullmatch(r"\+\d[\d.]*", text):
        return "pos"
    if re.fullmatch(r"-\d[\d.]*", text):
        return "neg"
    return "num" if re.fullmatch(r"[\d.,±\s—%e+-]+", text) else ""


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(t: str) -> str:
        return str(t).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def _headline(stats: list[LabelStats], baseline: str | None) -> list[str]:
    ranked = sorted((s for s in stats if s.final_mean is not None),
                    key=lambda s: -s.final_mean)
    lines = []
    if ranked:
        top = ranked[0]
        text = f"best: {top.label} {_acc(top.final_mean, top.final_sd)}"
        text += f" ({len(top.final)} seed{'s' if len(top.final) > 1 else ''})"
        base = next((s for s in stats if s.label == baseline), None) if baseline else None
        if base is None or base is top or base.final_mean is None:
            base = ranked[1] if len(ranked) > 1 else None
        if base is not None:
            text += f", {top.final_mean - base.final_mean:+.4f} over {base.label}"
        lines.append(text)
        judged = [s for s in stats if s.verdict is not None]
        if judged:
            good = [s for s in judged if s.verdict in ("within", "met")]
            text = (f"{len(good)} of {len(judged)} rows with a reference reproduce it (final "
                    "test accuracy within the published spread, or a target met)")
            misses = [f"{s.label} {s.verdict} ({s.diff:+.4f})" for s in judged
                      if s not in good]
            if misses:
                text += "; not reproduced: " + ", ".join(misses)
            lines.append(text)
    else:
        lines.append("no run finished all its epochs yet")
    bad = Counter()
    for s in stats:
        bad.update({k: v for k, v in s.status.items() if k != "ok"})
    if bad:
        lines.append("not ok: " + _status_text(bad))
    return lines


def _contrasts(stats: list[LabelStats], pairs: list[list[str]]) -> list[list[str]]:
    """Rows "A vs B": final means, their difference, and whether it exceeds the noise (the
    larger of the two seed sds; with one seed any difference counts)."""
    by = {s.label: s for s in stats}
    rows = []
    for a, b in pairs:
        sa, sb = by.get(a), by.get(b)
        if sa is None or sb is None:
            continue
        ma, mb = sa.final_mean, sb.final_mean
        if ma is None or mb is None:
            verdict, diff = "not comparable (a run did not finish)", ""
        else:
            noise = max(sa.final_sd or 0.0, sb.final_sd or 0.0)
            d = ma - mb
            diff = f"{d:+.4f}"
            verdict = ("within noise" if abs(d) <= noise else
                       "better" if d > 0 else "worse")
        rows.append([a, b, _acc(ma, sa.final_sd), _acc(mb, sb.final_sd), diff, verdict])
    return rows


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
    blocks: list[Block] = []

    header = ["label", "runs", "status", "final test acc", "best test acc", "reference",
              "diff", "time (s)", "examples/s", "notes"]
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
        rows.append([s.label, str(len(s.runs)), _status_text(s.status),
                     _acc(s.final_mean, s.final_sd), _acc(s.best_mean, s.best_sd),
                     _ref_text(s.reference),
                     "" if s.diff is None else f"{s.diff:+.4f} ({s.verdict})",
                     "—" if s.time_s is None else f"{s.time_s:.1f}",
                     "—" if s.throughput is None else f"{s.throughput:.0f}",
                     " ".join(["; ".join(_derived_notes(s)), *marks]).strip()])
    blocks.append(Block("h2", "Summary"))
    blocks.append(Block("table", header=header, rows=rows))
    blocks.append(Block("p", "Mean ± sample sd over seeds of the runs that trained every "
                        "epoch; diff = final mean − reference."))
    if foot:
        blocks.append(Block("ul", items=foot))

    contrast_rows = _contrasts(stats, meta.get("contrasts") or [])
    if contrast_rows:
        blocks.append(Block("h2", "Side by side"))
        blocks.append(Block("table", header=["label", "versus", "final test acc", "versus acc",
                                             "diff", "verdict"], rows=contrast_rows))

    from lrlab.lab.plots import plot_lr, plot_metric

    blocks.append(Block("h2", "Curves"))
    figs = [(plot_lr(groups, d / "lr.png"), "learning rate per label"),
            (plot_metric(groups, "train_loss", "Train loss (mean over seeds)", "train loss",
                         d / "train_loss.png", log=True), "train loss"),
            (plot_metric(groups, "test_acc", "Test accuracy (mean over seeds)",
                         "test accuracy", d / "test_acc.png"), "test accuracy")]
    blocks += [Block("img", text=alt, image=p) for p, alt in figs]

    run = _choose_trace(meta, runs, trace)
    if run is not None:
        trows = trace_rows(run)
        blocks.append(Block("h2", f"Epoch by epoch: {run.name}"))
        obs = observations(run, trows)
        if obs:
            blocks.append(Block("ul", items=obs))
        has_val = any(t.val_loss is not None for t in trows)
        th = ["epoch", "phase", "lr first → last", "train loss", "train acc", "test loss",
              "test acc", *(["val loss"] if has_val else []), "gap", "marks"]
        tr = []
        for t in trows:
            gap = None if t.train_acc is None or t.test_acc is None else t.train_acc - t.test_acc
            tr.append([str(t.epoch), t.phase, f"{_g(t.lr_first)} → {_g(t.lr_last)}",
                       _f4(t.train_loss), _f4(t.train_acc), _f4(t.test_loss), _f4(t.test_acc),
                       *([_f4(t.val_loss)] if has_val else []),
                       "—" if gap is None else f"{gap:+.4f}", ", ".join(t.marks)])
        blocks.append(Block("table", header=th, rows=tr))
        blocks.append(Block("p", "gap = train accuracy − test accuracy; epochs are 1-based."))

    blocks.append(Block("h2", "Runs"))
    rh = ["run", "label", "seed", "status", "epochs", "final test acc", "best (epoch)",
          "time (s)"]
    rr = []
    for r in runs:
        b = r.best()
        rr.append([r.name, r.label, "" if r.seed is None else str(r.seed), r.status,
                   str(len(r.metrics)), _f4(r.final_acc()),
                   "—" if b is None else f"{b[0]:.4f} ({b[1]})", _f1(r.time_s())])
    blocks.append(Block("table", header=rh, rows=rr))
    errors = [f"{r.name}: {r.error}" for r in runs if r.status == "failed" and r.error]
    if errors:
        blocks.append(Block("ul", items=errors))
    if meta.get("notes"):
        blocks.append(Block("h2", "Notes"))
        blocks.append(Block("ul", items=list(meta["notes"])))
    if meta.get("source"):
        blocks.append(Block("p", f"Comparison from {meta['source']}; regenerate this report "
                            "with: lrlab report DIR"))
    return Report(meta.get("title") or "Comparison", _headline(stats, meta.get("baseline")),
                  blocks, stats)


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
    md.write_text(report.markdown())
    page.write_text(report.html())
    table.write_text(summary_csv(report.stats))
    return ReportFiles(md, page, table, report.headline)
