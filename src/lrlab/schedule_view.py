"""Seeing a schedule: LR tables (table/csv/json), a terminal sparkline and a matplotlib plot.

This is what ``lrlab schedule`` calls. Indices are 0-based, as in the schedule contract:
update 0 is the first optimizer update, epoch 0 the first epoch. With ``steps_per_epoch``
and per-update stepping, the per-epoch table shows the LR of each epoch's first and last
update.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from lrlab.errors import LrlabError
from lrlab.files import atomic_file
from lrlab.schedules import Context, Schedule, parse

__all__ = ["ScheduleCurve", "ScheduleView", "build_view", "format_view", "sparkline", "plot_view"]


@dataclass
class ScheduleCurve:
    """One schedule evaluated over training: LR per update (or per epoch)."""

    spec: str
    lrs: list[float]
    boundaries: list[int]  # indices where a new phase starts
    phases: list[str]  # phase name active at each boundary, first phase included


@dataclass
class ScheduleView:
    lr: float
    unit: str  # "update" or "epoch"
    length: int
    steps_per_epoch: int | None
    curves: list[ScheduleCurve] = field(default_factory=list)


def build_view(
    specs: list[str | Schedule],
    lr: float = 1.0,
    steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    per: str = "step",
    beta2: float | None = None,
) -> ScheduleView:
    """Evaluate every spec over the same training length.

    Args:
        specs: schedules to show (the first is the main one, the rest are overlaid).
        lr: the peak LR the multipliers scale.
        steps: total updates (per="step"); or give ``epochs`` and ``steps_per_epoch``.
        epochs: total epochs; with per="epoch" the schedule is evaluated once per epoch.
        steps_per_epoch: updates per epoch (needed by ``Nep`` durations).
        per: "step" or "epoch".
        beta2: for ``warmup(auto)``.
    """
    if not math.isfinite(lr) or lr <= 0:
        raise LrlabError(f"--lr must be a positive finite number, got {lr}")
    for name, value in (("steps", steps), ("epochs", epochs), ("steps-per-epoch", steps_per_epoch)):
        if value is not None and value <= 0:
            raise LrlabError(f"--{name} must be a positive integer, got {value}")
    if per == "epoch":
        if epochs is None:
            raise LrlabError("per-epoch stepping needs --epochs")
        # warmup(auto) counts updates: it needs the updates per epoch to become epochs
        unit, length, ctx = "epoch", epochs, Context(epochs, 1, beta2, lr,
                                                     updates_per_step=steps_per_epoch)
    else:
        if steps is None:
            if epochs is None or steps_per_epoch is None:
                raise LrlabError("give --steps, or --epochs with --steps-per-epoch")
            steps = epochs * steps_per_epoch
        elif epochs is not None and steps_per_epoch is None:
            steps_per_epoch = max(1, steps // epochs)
        unit, length, ctx = "update", steps, Context(steps, steps_per_epoch, beta2, lr)
    if length > 10_000_000:
        raise LrlabError(f"{length} {unit}s is too many to tabulate (limit 10,000,000)")
    view = ScheduleView(lr=lr, unit=unit, length=length, steps_per_epoch=steps_per_epoch)
    for spec in specs:
        sched = parse(spec) if isinstance(spec, str) else spec
        bound = sched.resolve(ctx)
        bad = bound.first_nonfinite(length - 1, scale=lr)
        if bad is not None:  # never print Infinity into a table or JSON
            raise LrlabError(f"{sched}: the LR is no longer a finite number from {unit} {bad} "
                             f"on (peak {lr:g}); shorten the schedule or change its arguments")
        mults = bound.values(length)
        bounds = [b for b in bound.boundaries() if 0 < b < length]
        phases = [bound.phase_at(0)] + [bound.phase_at(b) for b in bounds]
        view.curves.append(ScheduleCurve(str(sched), [lr * m for m in mults], bounds, phases))
    return view


def _rows(view: ScheduleView, every: int = 1) -> tuple[list[str], list[list[object]]]:
    """Table rows. Per-update view with epochs known: one row per epoch (first/last LR)."""
    names = [c.spec for c in view.curves]
    if view.unit == "update" and view.steps_per_epoch and every == 1 and view.length > 1:
        spe = view.steps_per_epoch
        n_epochs = math.ceil(view.length / spe)
        if n_epochs < view.length:
            header = ["epoch", "first update"]
            for name in names:
                header += [f"lr@first {name}", f"lr@last {name}"]
            rows: list[list[object]] = []
            for e in range(n_epochs):
                first, last = e * spe, min((e + 1) * spe, view.length) - 1
                row: list[object] = [e, first]
                for c in view.curves:
                    row += [c.lrs[first], c.lrs[last]]
                rows.append(row)
            return header, rows
    header = [view.unit] + [f"lr {n}" if len(names) > 1 else "lr" for n in names]
    idx = list(range(0, view.length, every))
    if idx[-1] != view.length - 1:
        idx.append(view.length - 1)
    return header, [[i] + [c.lrs[i] for c in view.curves] for i in idx]


def _fmt(v: object) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def format_view(view: ScheduleView, fmt: str = "table", every: int = 1) -> str:
    """Render the view as ``table`` (aligned text), ``csv`` or ``json``."""
    if every <= 0:
        raise LrlabError(f"--every must be a positive integer, got {every}")
    if fmt == "json":
        return json.dumps({
            "unit": view.unit, "length": view.length, "peak_lr": view.lr,
            "steps_per_epoch": view.steps_per_epoch,
            "schedules": [
                {"spec": c.spec, "boundaries": c.boundaries, "phases": c.phases,
                 "lr": c.lrs[::every]}
                for c in view.curves
            ],
        })
    header, rows = _rows(view, every)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([[repr(v) if isinstance(v, float) else v for v in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    if fmt != "table":
        raise LrlabError(f"--format must be table, csv or json, got {fmt!r}")
    cells = [header] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60, top: float | None = None) -> str:
    """A one-line curve: ``values`` bucketed into ``width`` columns (mean per column)."""
    if not values:
        return ""
    width = max(1, min(width, len(values)))
    top = max(values) if top is None else top
    out = []
    for i in range(width):
        lo = i * len(values) // width
        hi = max((i + 1) * len(values) // width, lo + 1)
        chunk = values[lo:hi]
        v = sum(chunk) / len(chunk)
        level = 0 if top <= 0 else round(v / top * (len(_BARS) - 1))
        out.append(_BARS[max(0, min(len(_BARS) - 1, level))])
    return "".join(out)


def terminal_curves(view: ScheduleView, width: int = 60) -> str:
    """Sparklines of every curve on a common scale, with the peak and the final LR."""
    top = max(max(c.lrs) for c in view.curves)
    width = max(1, min(width, view.length))
    label_w = max(len(c.spec) for c in view.curves)
    lines = []
    for c in view.curves:
        lines.append(
            f"{c.spec.ljust(label_w)} |{sparkline(c.lrs, width, top)}| "
            f"max {max(c.lrs):.4g} end {c.lrs[-1]:.4g}"
        )
    lines.append(f"{'':{label_w}}  0{'':>{max(0, width - len(str(view.length)) - 1)}}"
                 f"{view.length} {view.unit}s")
    return "\n".join(lines)


def plot_view(view: ScheduleView, path: str | Path, title: str | None = None) -> Path:
    """Write a PNG of the curves with labelled axes; dotted lines mark phase boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise LrlabError(f"--plot needs a .png, .svg or .pdf file name, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for k, c in enumerate(view.curves):
        line, = ax.plot(range(view.length), c.lrs, label=c.spec, lw=1.8 if k == 0 else 1.3)
        for b in c.boundaries:
            ax.axvline(b, color=line.get_color(), ls=":", lw=0.9, alpha=0.8)
    if view.unit == "update" and view.steps_per_epoch:
        spe = view.steps_per_epoch
        secax = ax.secondary_xaxis("top", functions=(lambda x: x / spe, lambda e: e * spe))
        secax.set_xlabel("epoch")
    ax.set_xlabel(f"{view.unit} (0-based)")
    ax.set_ylabel("learning rate")
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, max(1, view.length - 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "learning-rate schedule (dotted: phase boundaries)", fontsize=10)
    fig.tight_layout()
    try:
        with atomic_file(path, "wb") as fh:
            fig.savefig(fh, format=path.suffix[1:] or "png")
    finally:
        plt.close(fig)
    return path
