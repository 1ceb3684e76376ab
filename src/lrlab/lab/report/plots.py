"""Figures of a comparison report (matplotlib, Agg backend, PNG).

- ``lr.png``: the LR of each label over training, overlaid. Exact from the run's schedule spec
  (per update) when its config is known and it has no metric-driven plateau; otherwise the
  recorded LR of each epoch (``lr_first``) as steps.
- ``train_loss.png`` / ``test_acc.png`` / ``val_acc.png`` (the last when a run has a
  validation split): per label, a line through the mean over seeds at each epoch and a shaded
  band from the lowest to the highest seed there (min–max: with 3 seeds a standard deviation
  says little, the extremes say what the seeds did). A seed counts at an epoch when it has a
  finite value there, so a run that stopped early leaves the band after its last epoch.
- ``sharpness.png`` (when runs measured it, ``--sharpness EVERY``): per label, the sharpness
  that governs stability (the preconditioned sharpness for Adam-like optimizers, the Hessian's
  λ_max otherwise) divided by the stability threshold of the LR of the epoch's last update,
  mean over seeds with the min–max band, on a log scale; at 1 (dashed) the LR is at the
  edge of stability (Cohen et al. 2021, 2022), above it a quadratic with that curvature
  would diverge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lrlab.files import atomic_file
from lrlab.lab.report.observations import RunData, num, run_beta2

__all__ = ["lr_curve", "mean_curve", "band_curve", "plot_lr", "plot_metric", "plot_sharpness",
           "sharpness_key", "BAND", "figure", "save"]

#: what the shaded band of a metric plot shows (legends and captions say it)
BAND = "min–max over seeds"


def lr_curve(run: RunData) -> tuple[list[float], list[float]] | None:
    """(epochs, LRs) of a run: x in epochs from 0 (fractional for per-update schedules)."""
    cfg = run.config or {}
    spec = cfg.get("schedule")
    peak = num(cfg.get("lr_used"))
    epochs = int(cfg.get("epochs") or 0)
    upe = int(cfg.get("updates_per_epoch") or 0)
    if spec and peak and epochs and "plateau" not in spec:
        from lrlab.errors import LrlabError
        from lrlab.schedule_view import build_view

        beta2 = run_beta2(cfg)
        try:
            if cfg.get("per") == "epoch":
                view = build_view([spec], lr=peak, epochs=epochs, per="epoch", beta2=beta2,
                                  steps_per_epoch=upe or None)
                ys = view.curves[0].lrs
                xs = [float(e) for e in range(epochs)]
                return [*xs, float(epochs)], [*ys, ys[-1]]  # steps: each epoch's LR held
            if upe:
                view = build_view([spec], lr=peak, steps=upe * epochs, steps_per_epoch=upe,
                                  beta2=beta2)
                ys = view.curves[0].lrs
                return [t / upe for t in range(len(ys))], ys
        except (LrlabError, ValueError):
            pass
    pts = [(i, num(r.get("lr_first"))) for i, r in enumerate(run.metrics)]
    pts = [(float(i), v) for i, v in pts if v is not None and math.isfinite(v)]
    if not pts:
        return None
    xs = [p[0] for p in pts] + [pts[-1][0] + 1]
    return xs, [p[1] for p in pts] + [pts[-1][1]]


def band_curve(runs: Sequence[RunData], key: str
               ) -> tuple[list[int], list[float], list[float], list[float], list[int]]:
    """(1-based epochs, mean, min, max, number of seeds) of metric ``key`` over ``runs`` at
    each epoch, finite values only."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for i, v in enumerate(run.series(key)):
            if v is not None and math.isfinite(v):
                by_epoch.setdefault(i + 1, []).append(v)
    xs = sorted(by_epoch)
    return (xs, [sum(by_epoch[e]) / len(by_epoch[e]) for e in xs],
            [min(by_epoch[e]) for e in xs], [max(by_epoch[e]) for e in xs],
            [len(by_epoch[e]) for e in xs])


def mean_curve(runs: Sequence[RunData], key: str) -> tuple[list[int], list[float]]:
    """(1-based epochs, mean over runs) of metric ``key``, finite values only."""
    xs, mean, _, _, _ = band_curve(runs, key)
    return xs, mean


def figure(n_labels: int) -> tuple[Any, Any]:
    """A new report figure and its axes (matplotlib, Agg backend): 7.5 × 4.2 in at 110 dpi,
    a light grid, no top or right spine, and a colour cycle of ``n_labels`` distinct colours
    (tab10, or tab20 beyond ten). Finish it with :func:`save`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    ax.grid(True, alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_prop_cycle(color=[plt.get_cmap("tab10" if n_labels <= 10 else "tab20")(i)
                             for i in range(max(n_labels, 1))])
    return fig, ax


def save(fig: Any, ax: Any, path: Path, n: int) -> Path:
    """Write ``fig`` to ``path`` as a PNG (atomically, with no software stamp, so the same
    figure gives the same bytes), close it and return ``path``. ``n``: how many labelled
    series it has; with any, a legend (smaller, in two columns, beyond eight)."""
    import matplotlib.pyplot as plt

    if n:
        ax.legend(fontsize=8 if n <= 8 else 6, ncol=1 if n <= 8 else 2, frameon=False,
                  loc="best")
    fig.tight_layout()
    with atomic_file(path, "wb") as fh:
        fig.savefig(fh, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def plot_lr(groups: dict[str, list[RunData]], path: Path) -> Path:
    """Overlaid LR curves, one per label (its first run with a config)."""
    fig, ax = figure(len(groups))
    drawn, peaks = 0, []
    for label, runs in groups.items():
        curve = next((c for c in (lr_curve(r) for r in runs) if c is not None), None)
        if curve is None:
            ax.plot([], [])
            continue
        ax.plot(*curve, label=label, lw=1.6)
        peaks.append(max(curve[1]))
        drawn += 1
    if peaks and min(peaks) > 0 and max(peaks) / min(peaks) > 50:
        ax.set_yscale("log")
        # a cosine to 0 dives towards 1e-10 at its last update: keep the scale on the peaks
        ax.set_ylim(bottom=min(peaks) / 100)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate")
    ax.set_title("Learning rate")
    return save(fig, ax, path, drawn)


def plot_metric(groups: dict[str, list[RunData]], key: str, title: str, ylabel: str,
                path: Path, log: bool = False) -> Path:
    """Per label, the mean over seeds of ``key`` (line) and its min–max over seeds (band),
    against the 1-based epoch (``log``: a log scale when the values span more than a factor
    of 20, e.g. a loss that blew up)."""
    fig, ax = figure(len(groups))
    drawn = 0
    values: list[float] = []
    banded = False
    for label, runs in groups.items():
        xs, ys, lo, hi, counts = band_curve(runs, key)
        values += lo + hi
        n = max(counts, default=0)
        (line,) = ax.plot(xs, ys, marker="o" if len(xs) <= 12 else None, ms=3, lw=1.6,
                          label=f"{label}" + (f" ({n} seeds)" if n > 1 else ""))
        if n > 1:
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
            banded = True
        drawn += bool(xs)
    pos = [v for v in values if v > 0]
    if log and pos and max(pos) / min(pos) > 20:  # only when the range needs it
        ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title + (f"\nline: mean over seeds; band: {BAND}" if banded else ""),
                 fontsize=11)
    return save(fig, ax, path, drawn)


def sharpness_key(runs: Sequence[RunData]) -> str | None:
    """The recorded sharpness that the threshold applies to: ``precond_sharpness`` when the
    runs recorded it (Adam-like optimizers), else ``sharpness``; None when none was measured."""
    for key in ("precond_sharpness", "sharpness"):
        if any(v is not None for r in runs for v in r.series(key)):
            return key
    return None


def plot_sharpness(groups: dict[str, list[RunData]], path: Path) -> Path:
    """Per label, the sharpness as a fraction of the stability threshold of the LR in use
    (mean over seeds, min–max band), on a log scale, with the edge of stability at 1."""
    fig, ax = figure(len(groups))
    drawn = 0
    for label, runs in groups.items():
        key = sharpness_key(runs)
        if key is None:
            ax.plot([], [])
            continue
        by_epoch: dict[int, list[float]] = {}
        for run in runs:
            for i, (lam, limit) in enumerate(zip(run.series(key),
                                                 run.series("sharpness_threshold"))):
                if lam is not None and limit and math.isfinite(lam) and math.isfinite(limit):
                    by_epoch.setdefault(i + 1, []).append(max(lam, 0.0) / limit)
        xs = sorted(by_epoch)
        ys = [sum(by_epoch[e]) / len(by_epoch[e]) for e in xs]
        (line,) = ax.plot(xs, ys, marker="o" if len(xs) <= 12 else None, ms=3, lw=1.6,
                          label=label)
        if any(len(by_epoch[e]) > 1 for e in xs):
            ax.fill_between(xs, [min(by_epoch[e]) for e in xs],
                            [max(by_epoch[e]) for e in xs], color=line.get_color(),
                            alpha=0.18, lw=0)
        drawn += bool(xs)
    ax.axhline(1.0, color="black", lw=1.0, ls="--")
    ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("sharpness / threshold of the LR")
    ax.set_title("Sharpness as a fraction of its stability threshold (dashed: the edge, 1)\n"
                 f"line: mean over seeds; band: {BAND}", fontsize=11)
    return save(fig, ax, path, drawn)
