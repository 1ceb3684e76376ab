"""The report of a comparison (or of one run), recomputed from the run records alone.

``write_report(DIR)`` reads ``DIR/comparison.json`` and each ``DIR/runs/NAME`` (or, for a
single run directory, that run: :mod:`lrlab.lab.report.runs`) and writes into DIR:
``report.md``, ``report.html`` (one self-contained file, :mod:`lrlab.lab.report.document`),
the figures as PNGs (:mod:`lrlab.lab.report.plots`) and ``summary.csv``
(:mod:`lrlab.lab.report.summary`, which also says how a row's numbers are computed).

:func:`build_report` puts the sections together, one function each, in this order: the
headline, the summary table, "Side by side" contrasts, the curves, one run epoch by epoch,
the runs, their environment, how the statistics were computed, and the plan's notes.

What chooses reads validation, what reports reads test (docs/design.md, "Honest numbers"):

- the headline ``best:`` row is the highest mean final validation accuracy among the rows
  with a validation split; its test accuracy is reported, never used to choose; a Welch test
  on validation accuracy says whether it is distinguishable from the runner-up. Rows
  without a validation split are not ranked; with none, no best row is named. The headline
  also says when the best row lost runs (diverged or failed runs are not averaged);
- "Side by side" contrasts (the plan's pairs) test final test accuracy with Welch's t-test,
  Holm-adjusted over the report's contrasts: ``better``/``worse`` only when significant;
- a reference (published number or target) gets the verdict of
  :attr:`lrlab.lab.report.summary.LabelStats.verdict`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrlab.errors import LrlabError
from lrlab.files import atomic_file
from lrlab.lab.report import stats as st
from lrlab.lab.report.document import Block, Report
from lrlab.lab.report.observations import (
    RunData,
    divergence,
    divergence_cause,
    has_warmup,
    observations,
    trace_rows,
)
from lrlab.lab.report.plots import BAND, plot_lr, plot_metric, plot_sharpness, sharpness_key
from lrlab.lab.report.runs import STATUSES, load_runs
from lrlab.lab.report.summary import LabelStats, derived_notes, label_stats, summary_csv
from lrlab.lab.report.text import (
    NONE,
    counts,
    fixed,
    interval,
    mean_sd,
    p_value,
    plural,
    sig,
    signed,
    signed_interval,
)

# the room's names stay importable from here as well as from their own modules
__all__ = ["LabelStats", "Report", "ReportFiles", "load_runs", "label_stats", "build_report",
           "write_report", "summary_csv", "STATUSES", "headline"]


# -- the headline and the contrasts ----------------------------------------------------------------
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
    text = f"{what} {signed(c.diff)}"
    if c.test == "none":
        return text + f", n = {_n_pair(c)}: no test"
    if c.ci is not None:
        text += f", 95% CI {signed_interval(c.ci)}"
    name = "Welch p" if c.test == "welch" else "exact permutation p"
    return text + f", {name} = {p_value(c.p)}, n = {_n_pair(c)}"


def _ref_text(ref: dict[str, Any] | None) -> str:
    if not ref:
        return ""
    text = sig(ref["value"])
    if ref.get("spread"):
        text += f" ± {sig(ref['spread'], 3)}"
    return text + (" (target)" if ref.get("kind") == "target" else "")


def _verdict_text(s: LabelStats) -> str:
    if s.diff is None:
        return ""
    return f"{signed(s.diff)} ({s.verdict}{'; ' + s.verdict_note if s.verdict_note else ''})"


def _best_line(stats: list[LabelStats], baseline: str | None) -> list[str]:
    """The "best:" line, chosen on validation (module docstring), and what it rests on."""
    finished = [s for s in stats if s.test.n]
    if not finished:
        return ["no run finished all its epochs yet"]
    if len(stats) == 1:  # nothing to choose between: say what the one row measured
        only = stats[0]
        text = f"{only.label}: test acc {mean_sd(only.test)}"
        if only.has_val and only.val_summary.n:
            text = (f"{only.label}: val acc {mean_sd(only.val_summary)}, test acc "
                    f"{mean_sd(only.test)}")
        return [text + f" (n = {only.test.n})"]
    ranked = sorted((s for s in stats if s.has_val and s.val_summary.n),
                    key=lambda s: -s.val_summary.mean)  # type: ignore[operator]
    unranked = [s.label for s in finished if not s.has_val]
    if not ranked:
        return ["best: none chosen — no row has a validation split (val_size 0), and the test "
                "set is reported, never used to choose"]
    top = ranked[0]
    v, t = top.val_summary, top.test
    text = (f"best: {top.label} (chosen on validation: val acc {mean_sd(v)}, n = {v.n}); "
            f"its test acc {mean_sd(t)}")
    if t.ci is not None:
        text += f", 95% CI {interval(t)}"
    if top.unfinished:
        text += f" ({plural(top.unfinished, 'run')} that did not finish not averaged)"
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


def headline(stats: list[LabelStats], baseline: str | None,
             env_flags: list[str] | None = None) -> list[str]:
    """The report's headline lines: the best line(s), how the rows with a reference compare
    with it, the runs that are not ok, and ``env_flags`` (from the environment section)."""
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
        lines.append("not ok: " + counts(bad, STATUSES))
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
        rows.append([a, b, f"{n(a, c.a.n)} vs {n(b, c.b.n)}", mean_sd(c.a), mean_sd(c.b),
                     signed(c.diff), signed_interval(c.ci), p_value(c.p),
                     p_value(c.p_adjusted), _test_name(c), c.verdict])
    return rows


# -- the environment and the method ----------------------------------------------------------------
#: environment entries shown, in this order (others a run records follow)
ENV_KEYS = ("torch", "python", "numpy", "platform", "cpu", "cpu_count", "threads", "device",
            "gpu", "cuda", "deterministic", "cudnn_deterministic", "cudnn_benchmark",
            "float32_matmul_precision")


def _env_value(v: Any) -> str:
    if v is None:
        return NONE
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
        blocks.append(Block("p", f"Not recorded for {plural(len(unrecorded), 'run')} (older "
                            f"records: torch and device only): {', '.join(unrecorded[:6])}"
                            + (" …" if len(unrecorded) > 6 else "")))
    changed = [f"{r.name}: {e.get('message', '')}" for r in runs for e in r.events
               if e.get("kind") == "environment-changed"]
    if changed:
        blocks.append(Block("ul", items=changed))
        flags.append(f"{plural(len(changed), 'resume')} in a different environment (see "
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
                     f"Holm-adjusted over this report's {plural(tested, 'tested contrast')} "
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
    """The run shown epoch by epoch: ``trace`` (a label or run name; LrlabError when no run
    with records has it), else the plan's ``trace``, else the first run with a warmup, else
    the first run with records."""
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


# -- the sections ----------------------------------------------------------------------------------
def _summary_section(stats: list[LabelStats]) -> list[Block]:
    """The table of rows, one per label, what its columns mean, and the plan's notes on rows
    (a note shared by several rows is listed once)."""
    any_val = any(s.has_val for s in stats)
    any_bpc = any(s.bpc for s in stats)
    header = ["label", "runs", "n", "test acc", "test 95% CI",
              *(["test bpc"] if any_bpc else []),
              *(["val acc", "val 95% CI"] if any_val else []), "reference",
              "diff (verdict)", "time (s)", "examples/s", "notes"]
    rows = []
    foot: list[str] = []
    numbers: dict[str, int] = {}
    for s in stats:
        marks = []
        for note in s.notes:
            if note not in numbers:
                numbers[note] = len(foot) + 1
                foot.append(f"[{numbers[note]}] {s.label}: {note}")
            marks.append(f"[{numbers[note]}]")
        rows.append(_summary_row(s, any_val, any_bpc, marks))
    bpc_text = "test bpc: final test loss in bits per character, mean ± sd. " if any_bpc else ""
    blocks = [Block("h2", "Summary"), Block("table", header=header, rows=rows),
              Block("p", bpc_text + "runs: by status; n: the seeds averaged (those that "
                    "trained every epoch). Accuracies are final (after the last epoch), as "
                    "mean ± sample sd and the 95% Student-t confidence interval of the mean "
                    "over the n seeds; diff = test mean − reference. How each verdict is "
                    "reached: see Statistics below.")]
    if foot:
        blocks.append(Block("ul", items=foot))
    return blocks


def _summary_row(s: LabelStats, any_val: bool, any_bpc: bool, marks: list[str]) -> list[str]:
    t, v = s.test, s.val_summary
    val_cells = ([mean_sd(v), interval(v)] if s.has_val else ["no split", ""]) if any_val else []
    bpc_cells = [mean_sd(st.summarize(s.bpc)) if s.bpc else NONE] if any_bpc else []
    return [s.label, counts(s.status, STATUSES), str(t.n), mean_sd(t), interval(t), *bpc_cells,
            *val_cells, _ref_text(s.reference), _verdict_text(s), fixed(s.time_s, 1),
            fixed(s.throughput, 0), " ".join(["; ".join(derived_notes(s)), *marks]).strip()]


def _tested(contrasts: list[tuple[str, str, st.Contrast]]) -> int:
    """How many of the contrasts were tested (the family Holm adjusts over)."""
    return sum(1 for _, _, c in contrasts if c.tested)


def _contrast_section(contrasts: list[tuple[str, str, st.Contrast]],
                      stats: list[LabelStats]) -> list[Block]:
    """"Side by side": the plan's pairs, tested (none when the plan has no pairs)."""
    if not contrasts:
        return []
    return [Block("h2", "Side by side"),
            Block("table", header=["label", "versus", "n", "test acc", "versus acc", "diff",
                                   "95% CI of diff", "p", "p (Holm)", "test", "verdict"],
                  rows=_contrast_rows(contrasts, stats)),
            Block("p", "Final test accuracy, label − versus. Welch's t-test (the exact "
                  "permutation test, with no CI, when a side's seeds are all identical), "
                  f"two-sided, α = {st.ALPHA:g}; the verdict reads the p-value Holm-adjusted "
                  f"over the {plural(_tested(contrasts), 'tested contrast')} of this report "
                  "(a pair with a single seed on a side has no test and is not in the "
                  "family).")]


def _curves_section(stats: list[LabelStats], runs: list[RunData], d: Path) -> list[Block]:
    """The figures, written into ``d``: LR, train loss, test (and validation) accuracy per
    label over the epochs, and the sharpness when runs measured it."""
    groups = {s.label: s.runs for s in stats}
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
    blocks = [Block("h2", "Curves"), *[Block("img", text=alt, image=p) for p, alt in figs],
              Block("p", f"Per label: the line is the mean over seeds at each epoch, the "
                    f"shaded band the {BAND} (a seed counts at an epoch where it has a "
                    "finite value; a run that stopped leaves the band there).")]
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
    return blocks


def _trace_section(run: RunData | None) -> list[Block]:
    """One run epoch by epoch: what stands out, then a row per epoch (none without a run)."""
    if run is None:
        return []
    trows = trace_rows(run)
    blocks = [Block("h2", f"Epoch by epoch: {run.name}")]
    obs = observations(run, trows)
    if obs:
        blocks.append(Block("ul", items=obs))
    has_val = any(t.val_loss is not None or t.val_acc is not None for t in trows)
    header = ["epoch", "phase", "lr first → last", "train loss", "train acc", "test loss",
              "test acc", *(["val loss", "val acc"] if has_val else []), "gap", "marks"]
    rows = []
    for t in trows:
        gap = None if t.train_acc is None or t.test_acc is None else t.train_acc - t.test_acc
        val = [fixed(t.val_loss), fixed(t.val_acc)] if has_val else []
        rows.append([str(t.epoch), t.phase, f"{sig(t.lr_first)} → {sig(t.lr_last)}",
                     fixed(t.train_loss), fixed(t.train_acc), fixed(t.test_loss),
                     fixed(t.test_acc), *val, signed(gap), ", ".join(t.marks)])
    blocks.append(Block("table", header=header, rows=rows))
    blocks.append(Block("p", "gap = train accuracy − test accuracy; epochs are 1-based."))
    return blocks


def _runs_section(runs: list[RunData]) -> list[Block]:
    """A row per run (status, final and peak accuracy, time), and the errors of failed runs."""
    run_val = any(r.has_validation for r in runs)
    header = ["run", "label", "seed", "status", "epochs", "final test acc",
              *(["final val acc"] if run_val else []), "peak test acc (epoch)", "time (s)"]
    rows = []
    for r in runs:
        b = r.best()
        cause = divergence_cause(divergence(r))
        rows.append([r.name, r.label, "" if r.seed is None else str(r.seed),
                     r.status + (f" ({cause})" if cause else ""), str(len(r.metrics)),
                     fixed(r.final_acc()), *([fixed(r.final_val_acc())] if run_val else []),
                     NONE if b is None else f"{fixed(b[0])} ({b[1]})", fixed(r.time_s(), 1)])
    blocks = [Block("h2", "Runs"), Block("table", header=header, rows=rows),
              Block("p", "peak test acc: the highest test accuracy over the epochs, picked on "
                    "the test set and so optimistic; shown, never used to choose.")]
    errors = [f"{r.name}: {r.error}" for r in runs if r.status == "failed" and r.error]
    if errors:
        blocks.append(Block("ul", items=errors))
    return blocks


def _statistics_section(stats: list[LabelStats],
                        contrasts: list[tuple[str, str, st.Contrast]]) -> list[Block]:
    """How the numbers were computed, stated in the report itself."""
    return [Block("h2", "Statistics"),
            Block("ul", items=_method_notes(stats, len(contrasts), _tested(contrasts)))]


def _notes_section(meta: dict[str, Any]) -> list[Block]:
    """The plan's notes, and where the comparison came from."""
    blocks = []
    if meta.get("notes"):
        blocks += [Block("h2", "Notes"), Block("ul", items=list(meta["notes"]))]
    if meta.get("source"):
        blocks.append(Block("p", f"Comparison from {meta['source']}; regenerate this report "
                            "with: lrlab report DIR"))
    return blocks


# -- the report ------------------------------------------------------------------------------------
def build_report(directory: str | Path, trace: str | None = None) -> Report:
    """Read the records and write the figures; returns the report (text written separately).

    ``trace``: the label or run name shown epoch by epoch (see ``lrlab report --trace``)."""
    d = Path(directory)
    meta, runs = load_runs(d)
    stats = label_stats(meta, runs)
    contrasts = _contrasts(stats, meta.get("contrasts") or [])
    env_blocks, env_flags = _environment(runs)
    blocks = _summary_section(stats)
    blocks += _contrast_section(contrasts, stats)
    blocks += _curves_section(stats, runs, d)
    blocks += _trace_section(_choose_trace(meta, runs, trace))
    blocks += _runs_section(runs)
    blocks += env_blocks
    blocks += _statistics_section(stats, contrasts)
    blocks += _notes_section(meta)
    return Report(meta.get("title") or "Comparison",
                  headline(stats, meta.get("baseline"), env_flags), blocks, stats)


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote, and the report's headline lines."""

    markdown: Path
    html: Path
    csv: Path
    headline: list[str]


def write_report(directory: str | Path, trace: str | None = None) -> ReportFiles:
    """Write report.md, report.html, summary.csv and the PNGs into ``directory``."""
    d = Path(directory)
    report = build_report(d, trace)
    md, page = report.write(d)
    table = d / "summary.csv"
    with atomic_file(table) as fh:
        fh.write(summary_csv(report.stats))
    return ReportFiles(md, page, table, report.headline)
