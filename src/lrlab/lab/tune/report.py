"""The report of an ``lrlab tune`` study: ``OUT/report.md``, ``report.html`` and figures.

Everything is read from the study (its storage holds every worker's trials) and from the
final comparison's run records; nothing here chooses. Sections:

- the headline: the best trial by the validation objective, and (when the finish ran) the
  retrained winner's **test** accuracy over fresh seeds with its 95% CI, next to the
  default's, and Welch's test between them (``better`` only when p < 0.05);
- the LR-sensitivity figure: the objective against the trial's LR, one series per schedule
  family, with diverged trials marked ✕ at the chance level they were counted at and
  pruned trials as hollow circles at their last reported value — where training starts to
  fail;
- the trial history (objective by trial number, with the running best);
- a table per schedule family (trials, best validation value, its LR), the top trials, and
  the trials by state;
- Optuna's parameter importances (fANOVA) when enough trials completed;
- how to look at the study in ``optuna-dashboard``.

The study's best validation value is the maximum over many trials and so is optimistic
(the winner's curse); the retrained winner's mean validation accuracy over fresh seeds is
shown next to it.

Numbers are written as in the comparison report (:mod:`lrlab.lab.report.text`). P-values
are :func:`~lrlab.lab.report.text.p_value`'s: three significant digits, ``< 0.0001`` below
1e-4. Before, this report wrote three decimals, and below 0.001 one decimal of scientific
notation: p = 0.0706 was ``0.071`` and is now ``0.0706``; p = 0.000421 was ``4.2e-04`` and
is now ``0.000421``; p = 5e-6 was ``5.0e-06`` and is now ``< 0.0001``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from lrlab.lab.report import stats as st
from lrlab.lab.report.document import Block, Report
from lrlab.lab.report.plots import figure, save
from lrlab.lab.report.text import (
    NONE,
    counts,
    fixed,
    interval,
    mean_sd,
    p_value,
    setting,
    signed,
    signed_interval,
)

__all__ = ["write_tune_report", "schedule_family"]


def schedule_family(spec: str) -> str:
    """A schedule's family for grouping trials: the trial's ``schedule`` choice when the
    space has one (a ``warmup`` key does not make a new family), else its schedule with the
    warmup's length blanked (``warmup(3ep) >> cosine()`` and ``warmup(5ep) >> cosine()`` are
    one family)."""
    return re.sub(r"^warmup\([^)]*\)", "warmup(·)", spec.strip())


def _trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        status = t.user_attrs.get("status")
        state = t.state.name.lower()
        if state == "complete" and status == "diverged":
            kind = "diverged"
        elif state == "complete":
            kind = "complete"
        else:
            kind = state
        last = None
        if t.intermediate_values:
            last = t.intermediate_values[max(t.intermediate_values)]
        settings = t.user_attrs.get("settings", dict(t.params))
        rows.append({"number": t.number, "kind": kind, "value": t.value, "last": last,
                     "lr": t.user_attrs.get("lr"),
                     "schedule": settings.get("schedule", t.user_attrs.get("schedule")),
                     "settings": settings,
                     "status": status, "diverged_at": t.user_attrs.get("diverged_at"),
                     "retry_of": t.system_attrs.get("failed_trial",
                                                    t.user_attrs.get("retry_of"))})
    return rows


def _plot_sensitivity(rows: list[dict[str, Any]], metric: str, path: Path) -> Path | None:
    pts = [r for r in rows if isinstance(r["lr"], float) and r["kind"] in
           ("complete", "diverged", "pruned")]
    if not pts:
        return None
    families = sorted({schedule_family(r["schedule"] or "?") for r in pts})
    fig, ax = figure(len(families))
    colors = ax._get_lines.get_next_color
    for fam in families:
        color = colors()
        mine = sorted((r for r in pts if schedule_family(r["schedule"] or "?") == fam),
                      key=lambda r: r["lr"])
        done = [r for r in mine if r["kind"] == "complete"]
        ax.plot([r["lr"] for r in done], [r["value"] for r in done], "o-", color=color,
                label=fam, markersize=4, linewidth=1)
        div = [r for r in mine if r["kind"] == "diverged"]
        if div:
            ax.plot([r["lr"] for r in div], [r["value"] for r in div], "x", color=color,
                    markersize=8, mew=2)
        pr = [r for r in mine if r["kind"] == "pruned" and r["last"] is not None]
        if pr:
            ax.plot([r["lr"] for r in pr], [r["last"] for r in pr], "o", color=color,
                    markerfacecolor="none", markersize=6)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())  # 1 and 3 per decade: no overlaps
    ax.set_xlabel("peak LR")
    ax.set_ylabel(f"final {metric.replace('_', ' ')} (validation)")
    ax.set_title("LR sensitivity: ✕ diverged (counted at chance), ○ pruned (last value)",
                 fontsize=9)
    return save(fig, ax, path, len(families))


def _plot_history(rows: list[dict[str, Any]], metric: str, maximize: bool,
                  path: Path) -> Path | None:
    pts = sorted((r for r in rows if r["value"] is not None), key=lambda r: r["number"])
    if not pts:
        return None
    fig, ax = figure(2)
    best, run = [], None
    for r in pts:
        if r["kind"] == "complete":
            run = r["value"] if run is None else (max if maximize else min)(run, r["value"])
        best.append(run)
    for kind, style, label in (("complete", dict(marker="o"), "trial"),
                               ("pruned", dict(marker="o", markerfacecolor="none"),
                                "pruned (last value)"),
                               ("diverged", dict(marker="x", mew=2), "diverged (at chance)")):
        mine = [r for r in pts if r["kind"] == kind]
        if mine:
            ax.plot([r["number"] for r in mine], [r["value"] for r in mine], linestyle="none",
                    color="C0", markersize=5, label=label, **style)
    ax.step([r["number"] for r in pts], best, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"final {metric.replace('_', ' ')} (validation)")
    return save(fig, ax, path, 4)


def _importances(study: Any) -> tuple[list[list[str]], str]:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(done) < 4:
        return [], f"not computed: {len(done)} completed trials (at least 4 needed)"
    try:
        import optuna

        imp = optuna.importance.get_param_importances(study)
    except Exception as exc:  # too few distinct values, a single parameter, ...
        return [], f"not computed: {' '.join(str(exc).split())[:200]}"
    return [[k, fixed(v, 3)] for k, v in imp.items()], (
        "fANOVA (Optuna's default importance evaluator) over the completed trials, "
        "diverged ones included at their chance value: the share of the objective's "
        "variance each parameter explains; a guide, not a test.")


def write_tune_report(study: Any, settings: Any, out: Path, storage_label: str,
                      final: dict[str, Any] | None, best: dict[str, Any] | None) -> Path:
    """Write ``report.md``, ``report.html`` and the figures of a study into ``out``; returns
    the HTML page.

    ``settings`` is the study's ``TuneSettings``, ``best`` the tuner's pick (``number``,
    ``value``, ``settings``) and ``final`` its retraining (None when it did not run)."""
    rows = _trial_rows(study)
    blocks = [_study_text(settings, storage_label, rows), *_final_section(final),
              *_figures_section(rows, settings, out), *_families_section(rows, settings),
              *_top_section(rows, settings), *_odd_section(rows), *_importances_section(study),
              *_files_section(out, storage_label),
              *[Block("p", text=note) for note in settings.notes]]
    report = Report(settings.title or f"Tuning study {settings.study!r}",
                    _headline(settings, rows, final, best), blocks)
    return report.write(out)[1]


def _headline(settings: Any, rows: list[dict[str, Any]], final: dict[str, Any] | None,
              best: dict[str, Any] | None) -> list[str]:
    """The best trial on validation and, after the finish, the tuned vs default test line."""
    if best is None:
        lines = [f"No trial has completed yet ({len(rows)} trials)."]
    else:
        shown = ", ".join(f"{k}={setting(v)}" for k, v in best["settings"].items())
        lines = [f"Best trial #{best['number']}: {settings.metric} {best['value']:.4f} on the "
                 f"validation split, with {shown}."]
    if final is not None:
        t, d, c = final["tuned_summary"], final["default_summary"], final["contrast"]
        tv, dv = st.summarize(final["tuned_val"]), st.summarize(final["default_val"])
        verdict = {"better": "better than", "worse": "worse than"}.get(
            c.verdict, "no clear difference from")
        lines.append(
            f"Retrained on {len(final['seeds'])} fresh seeds: tuned test acc "
            f"{mean_sd(t)} (95% CI {interval(t)}) vs default {mean_sd(d)} ({interval(d)}): "
            f"{verdict} the default (Welch p = {p_value(c.p)}, n = {t.n} and {d.n}). "
            f"Validation on those seeds: {mean_sd(tv)} vs {mean_sd(dv)}.")
    return lines


def _study_text(settings: Any, storage_label: str, rows: list[dict[str, Any]]) -> Block:
    """What the study is: where it is stored, its trials by state, objective, sampler."""
    kinds = Counter(r["kind"] for r in rows)
    states = counts(kinds, ("complete", "diverged", "pruned", "fail", "running", "waiting"))
    maximize = settings.direction == "maximize"
    return Block("p", text=(
        f"Study {settings.study!r} in {storage_label}: {len(rows)} trials ({states}). "
        f"Objective: final {settings.metric} on the validation split "
        f"({'maximised' if maximize else 'minimised'}); sampler {settings.sampler}, pruner "
        f"{settings.pruner}. The test set is read only by the final retraining below."))


def _final_section(final: dict[str, Any] | None) -> list[Block]:
    """The retrained winner vs the default on fresh seeds, on the test set (none before the
    finish ran)."""
    if final is None:
        return []
    t, d, c = final["tuned_summary"], final["default_summary"], final["contrast"]
    ci = "" if c.ci is None else f", 95% CI of the difference {signed_interval(c.ci)}"
    return [Block("h2", text="Tuned vs default on the test set"),
            Block("table", header=["", "n", "test acc mean ± sd", "95% CI",
                                   "val acc mean ± sd"],
                  rows=[["tuned", str(t.n), mean_sd(t), interval(t),
                         mean_sd(st.summarize(final["tuned_val"]))],
                        ["default", str(d.n), mean_sd(d), interval(d),
                         mean_sd(st.summarize(final["default_val"]))]]),
            Block("p", text=(
                f"Difference {signed(c.diff)}{ci}; {_TESTS.get(c.test, c.test)}, p = "
                f"{p_value(c.p)}: {c.verdict}. Procedure: the study chose on validation (one "
                f"seed per trial); the winner and the default were then each trained on seeds "
                f"{final['seeds'][0]}–{final['seeds'][-1]} (never used by the search) and "
                f"their test accuracies read once. Runs and their own report: "
                f"{final.get('report')}."))]


def _figures_section(rows: list[dict[str, Any]], settings: Any, out: Path) -> list[Block]:
    """The LR-sensitivity and trial-history figures, written into ``out``."""
    figs = []
    path = _plot_sensitivity(rows, settings.metric, out / "lr_sensitivity.png")
    if path is not None:
        figs.append(Block("img", text="validation metric vs LR", image=path))
    path = _plot_history(rows, settings.metric, settings.direction == "maximize",
                         out / "trial_history.png")
    if path is not None:
        figs.append(Block("img", text="trial history", image=path))
    return [Block("h2", text="LR sensitivity and trial history"),
            *(figs or [Block("p", text="No finished trial to plot yet.")])]


def _families_section(rows: list[dict[str, Any]], settings: Any) -> list[Block]:
    """A row per schedule family (none with fewer than two families)."""
    fam_rows = _families(rows, settings.direction == "maximize")
    if not fam_rows:
        return []
    blocks = [Block("h2", text="By schedule family"),
              Block("table", header=["schedule", "trials", "diverged", "pruned",
                                     f"best {settings.metric}", "at LR"], rows=fam_rows)]
    if settings.balance:
        blocks.append(Block("p", text=f"Trials were balanced over {settings.balance}: each "
                            "family got the same budget, up to one trial."))
    return blocks


def _top_section(rows: list[dict[str, Any]], settings: Any) -> list[Block]:
    """The ten best completed trials on validation, with their settings."""
    top = sorted((r for r in rows if r["kind"] == "complete"), key=lambda r: r["value"],
                 reverse=settings.direction == "maximize")[:10]
    if not top:
        return []
    keys = settings.space.keys()
    return [Block("h2", text="Top trials (validation)"),
            Block("table", header=["trial", settings.metric, *keys],
                  rows=[[str(r["number"]), fixed(r["value"]),
                         *[setting(r["settings"].get(k, NONE)) for k in keys]] for r in top])]


def _odd_section(rows: list[dict[str, Any]]) -> list[Block]:
    """The trials that diverged, were pruned or failed, and why."""
    odd = [r for r in rows if r["kind"] in ("diverged", "pruned", "fail")]
    if not odd:
        return []
    return [Block("h2", text="Diverged, pruned and failed trials"),
            Block("table", header=["trial", "state", "LR", "schedule", "detail"],
                  rows=[[str(r["number"]), r["kind"], setting(r["lr"]) if r["lr"] else NONE,
                         r["schedule"] or NONE, _detail(r, rows)]
                        for r in sorted(odd, key=lambda r: r["number"])], plain=True)]


def _importances_section(study: Any) -> list[Block]:
    """Optuna's parameter importances, or why there are none."""
    imp, note = _importances(study)
    return [Block("h2", text="Parameter importances"),
            *([Block("table", header=["parameter", "importance"], rows=imp)] if imp else []),
            Block("p", text=note)]


def _files_section(out: Path, storage_label: str) -> list[Block]:
    """The winning settings' file, and how to browse the study."""
    items = [f"{out / 'best.toml'}: the winning settings (lrlab train --config best.toml)"]
    if str(storage_label).startswith("sqlite:///"):
        items.append(f"browse the study: pip install optuna-dashboard && optuna-dashboard "
                     f"{storage_label}")
    else:
        items.append(f"browse the study: pip install optuna-dashboard && optuna-dashboard "
                     f"'{storage_label}' (journal storages: optuna-dashboard FILE)")
    return [Block("h2", text="Files"), Block("ul", items=items)]


_TESTS = {"welch": "Welch's t-test", "permutation": "exact permutation test",
          "none": "no test"}


def _detail(r: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    if r["kind"] == "diverged":
        return f"diverged at update {r['diverged_at']}; counted at chance {fixed(r['value'])}"
    if r["kind"] == "pruned":
        return f"stopped by the pruner; last reported value {fixed(r['last'])}"
    again = [x["number"] for x in rows if x["retry_of"] == r["number"]]
    why = "its worker stopped (interrupted or killed)" if r["status"] in (None, "interrupted") \
        else f"run status {r['status']}"
    return why + (f"; retried as trial {', '.join(map(str, again))}" if again else "")


def _families(rows: list[dict[str, Any]], maximize: bool) -> list[list[str]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["schedule"] and r["kind"] in ("complete", "diverged", "pruned"):
            groups[schedule_family(r["schedule"])].append(r)
    if len(groups) < 2:
        return []
    out = []
    for fam, rs in groups.items():
        done = [r for r in rs if r["kind"] == "complete"]
        best = (max if maximize else min)(done, key=lambda r: r["value"]) if done else None
        out.append([fam, str(len(rs)), str(sum(r["kind"] == "diverged" for r in rs)),
                    str(sum(r["kind"] == "pruned" for r in rs)),
                    fixed(best["value"]) if best else NONE,
                    setting(best["lr"]) if best and best["lr"] else NONE])
    out.sort(key=lambda row: row[4], reverse=maximize)
    return out
