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
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from lrlab.files import atomic_file
from lrlab.lab.report import stats as st
from lrlab.lab.report.build import Block, Report

__all__ = ["write_tune_report", "schedule_family"]


def schedule_family(spec: str) -> str:
    """A schedule's family for grouping trials: the trial's ``schedule`` choice when the
    space has one (a ``warmup`` key does not make a new family), else its schedule with the
    warmup's length blanked (``warmup(3ep) >> cosine()`` and ``warmup(5ep) >> cosine()`` are
    one family)."""
    import re

    return re.sub(r"^warmup\([^)]*\)", "warmup(·)", spec.strip())


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None or not isinstance(v, int | float) or not math.isfinite(v):
        return "—"
    return f"{v:.{digits}f}"


def _g(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


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
    from lrlab.lab.report.plots import _figure, _save

    families = sorted({schedule_family(r["schedule"] or "?") for r in pts})
    fig, ax = _figure(len(families))
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
    return _save(fig, ax, path, len(families))


def _plot_history(rows: list[dict[str, Any]], metric: str, maximize: bool,
                  path: Path) -> Path | None:
    pts = sorted((r for r in rows if r["value"] is not None), key=lambda r: r["number"])
    if not pts:
        return None
    from lrlab.lab.report.plots import _figure, _save

    fig, ax = _figure(2)
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
    return _save(fig, ax, path, 4)


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
    return [[k, f"{v:.3f}"] for k, v in imp.items()], (
        "fANOVA (Optuna's default importance evaluator) over the completed trials, "
        "diverged ones included at their chance value: the share of the objective's "
        "variance each parameter explains; a guide, not a test.")


def write_tune_report(study: Any, settings: Any, out: Path, storage_label: str,
                      final: dict[str, Any] | None, best: dict[str, Any] | None) -> Path:
    """Write ``report.md``, ``report.html`` and the figures of a study into ``out``.

    ``settings`` is the study's ``TuneSettings``, ``best`` the tuner's pick (``number``,
    ``value``, ``settings``) and ``final`` its retraining (None when it did not run)."""
    metric = settings.metric
    maximize = settings.direction == "maximize"
    rows = _trial_rows(study)
    kinds = Counter(r["kind"] for r in rows)
    headline: list[str] = []
    title = settings.title or f"Tuning study {settings.study!r}"
    if best is None:
        headline.append(f"No trial has completed yet ({len(rows)} trials).")
    else:
        shown = ", ".join(f"{k}={_g(v)}" for k, v in best["settings"].items())
        headline.append(f"Best trial #{best['number']}: {metric} {best['value']:.4f} on the "
                        f"validation split, with {shown}.")
    if final is not None:
        t, d, c = final["tuned_summary"], final["default_summary"], final["contrast"]
        tv, dv = st.summarize(final["tuned_val"]), st.summarize(final["default_val"])
        verdict = {"better": "better than", "worse": "worse than"}.get(
            c.verdict, "no clear difference from")
        headline.append(
            f"Retrained on {len(final['seeds'])} fresh seeds: tuned test acc "
            f"{_ms(t)} (95% CI {_ci(t)}) vs default {_ms(d)} ({_ci(d)}): {verdict} the "
            f"default (Welch p = {_p(c.p)}, n = {t.n} and {d.n}). Validation on those seeds: "
            f"{_ms(tv)} vs {_ms(dv)}.")
    blocks: list[Block] = []
    counts = ", ".join(f"{kinds[k]} {k}" for k in ("complete", "diverged", "pruned", "fail",
                                                    "running", "waiting") if kinds.get(k))
    blocks.append(Block("p", text=(
        f"Study {settings.study!r} in {storage_label}: {len(rows)} trials ({counts}). "
        f"Objective: final {metric} on the validation split "
        f"({'maximised' if maximize else 'minimised'}); sampler {settings.sampler}, pruner "
        f"{settings.pruner}. The test set is read only by the final retraining below.")))
    figs = []
    p = _plot_sensitivity(rows, metric, out / "lr_sensitivity.png")
    if p is not None:
        figs.append(Block("img", text="validation metric vs LR", image=p))
    p = _plot_history(rows, metric, maximize, out / "trial_history.png")
    if p is not None:
        figs.append(Block("img", text="trial history", image=p))
    if final is not None:
        t, d, c = final["tuned_summary"], final["default_summary"], final["contrast"]
        blocks.append(Block("h2", text="Tuned vs default on the test set"))
        blocks.append(Block("table", header=["", "n", "test acc mean ± sd", "95% CI",
                                             "val acc mean ± sd"],
                            rows=[["tuned", str(t.n), _ms(t), _ci(t),
                                   _ms(st.summarize(final["tuned_val"]))],
                                  ["default", str(d.n), _ms(d), _ci(d),
                                   _ms(st.summarize(final["default_val"]))]]))
        diff = "—" if c.diff is None else f"{c.diff:+.4f}"
        ci = "" if c.ci is None else f", 95% CI of the difference [{c.ci[0]:+.4f}, " \
            f"{c.ci[1]:+.4f}]"
        blocks.append(Block("p", text=(
            f"Difference {diff}{ci}; {_TESTS.get(c.test, c.test)}, p = {_p(c.p)}: "
            f"{c.verdict}. Procedure: "
            f"the study chose on validation (one seed per trial); the winner and the "
            f"default were then each trained on seeds {final['seeds'][0]}–"
            f"{final['seeds'][-1]} (never used by the search) and their test accuracies "
            f"read once. Runs and their own report: {final.get('report')}.")))
    blocks.append(Block("h2", text="LR sensitivity and trial history"))
    blocks += figs or [Block("p", text="No finished trial to plot yet.")]
    fam_rows = _families(rows, maximize)
    if fam_rows:
        blocks.append(Block("h2", text="By schedule family"))
        blocks.append(Block("table", header=["schedule", "trials", "diverged", "pruned",
                                             f"best {metric}", "at LR"], rows=fam_rows))
        if settings.balance:
            blocks.append(Block("p", text=f"Trials were balanced over {settings.balance}: "
                                "each family got the same budget, up to one trial."))
    top = sorted((r for r in rows if r["kind"] == "complete"), key=lambda r: r["value"],
                 reverse=maximize)[:10]
    if top:
        blocks.append(Block("h2", text="Top trials (validation)"))
        keys = settings.space.keys()
        blocks.append(Block("table", header=["trial", metric, *keys],
                            rows=[[str(r["number"]), _fmt(r["value"]),
                                   *[_g(r["settings"].get(k, "—")) for k in keys]]
                                  for r in top]))
    odd = [r for r in rows if r["kind"] in ("diverged", "pruned", "fail")]
    if odd:
        blocks.append(Block("h2", text="Diverged, pruned and failed trials"))
        blocks.append(Block("table", header=["trial", "state", "LR", "schedule", "detail"],
                            rows=[[str(r["number"]), r["kind"], _g(r["lr"]) if r["lr"]
                                   else "—", r["schedule"] or "—", _detail(r, rows)]
                                  for r in sorted(odd, key=lambda r: r["number"])],
                            plain=True))
    imp, note = _importances(study)
    blocks.append(Block("h2", text="Parameter importances"))
    if imp:
        blocks.append(Block("table", header=["parameter", "importance"], rows=imp))
    blocks.append(Block("p", text=note))
    blocks.append(Block("h2", text="Files"))
    items = [f"{out / 'best.toml'}: the winning settings (lrlab train --config best.toml)"]
    if str(storage_label).startswith("sqlite:///"):
        items.append(f"browse the study: pip install optuna-dashboard && optuna-dashboard "
                     f"{storage_label}")
    else:
        items.append(f"browse the study: pip install optuna-dashboard && optuna-dashboard "
                     f"'{storage_label}' (journal storages: optuna-dashboard FILE)")
    blocks.append(Block("ul", items=items))
    for note in settings.notes:
        blocks.append(Block("p", text=note))
    report = Report(title, headline, blocks, [])
    md, page = out / "report.md", out / "report.html"
    for path, text in ((md, report.markdown()), (page, report.html())):
        with atomic_file(path) as fh:
            fh.write(text)
    return page


_TESTS = {"welch": "Welch's t-test", "permutation": "exact permutation test",
          "none": "no test"}


def _detail(r: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    if r["kind"] == "diverged":
        return f"diverged at update {r['diverged_at']}; counted at chance {_fmt(r['value'])}"
    if r["kind"] == "pruned":
        return f"stopped by the pruner; last reported value {_fmt(r['last'])}"
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
                    _fmt(best["value"]) if best else "—",
                    _g(best["lr"]) if best and best["lr"] else "—"])
    out.sort(key=lambda row: row[4], reverse=maximize)
    return out


def _ms(s: st.Summary) -> str:
    if s.n == 0 or s.mean is None:
        return "—"
    return f"{s.mean:.4f}" + (f" ± {s.sd:.4f}" if s.sd is not None else "")


def _ci(s: st.Summary) -> str:
    if s.ci is None:
        return "—"
    return f"[{s.ci[0]:.4f}, {s.ci[1]:.4f}]"


def _p(p: float | None) -> str:
    return "—" if p is None else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")
