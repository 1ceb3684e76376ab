"""What a run's numbers say: the per-epoch trace with its schedule phase, and observations.

Everything here is computed from a run's records (``config.json``, ``metrics.jsonl``,
``summary.json``, ``events.jsonl``); epochs are shown 1-based (epoch 1 is the first).

Phases: ``warmup`` while the schedule's active phase at the epoch's first update is a warmup;
otherwise ``peak`` when the epoch's LR is within 0.1% of the run's highest LR, ``decay`` when
the LR fell since the previous epoch (or within the epoch), and ``flat`` when it holds below
the peak (a floor, or a plateau between reductions).

Observations (thresholds are module constants):

- loss spike: the train loss rose more than ``SPIKE`` (20%) over the previous epoch;
- divergence: the update, epoch and LR where the loss became non-finite or exploded;
- collapse after learning: a run that learned and then blew up (its train loss back at chance
  level or above, ``diverged_at.cause == "collapse"``): the epoch, update and LR, and the train
  loss before and after, said apart from never learning;
- not learning: the run's status, with the trainer's own explanation;
- overfitting: the test loss rose while the train loss fell for ``OVERFIT_EPOCHS`` (3) or more
  epochs in a row, or the train-test accuracy gap (once positive) widened that long, by more
  than 0.005 in all;
- warmup: the epoch at which the warmup ended;
- best epoch: where the best test accuracy was reached, and the final one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lrlab.lab.records import Divergence

__all__ = ["RunData", "TraceRow", "num", "trace_rows", "observations", "has_warmup",
           "warmup_length", "run_beta2", "divergence", "divergence_cause", "divergence_text",
           "SPIKE",
           "OVERFIT_EPOCHS"]

SPIKE = 0.20
OVERFIT_EPOCHS = 3
GAP_MIN_GROWTH = 0.005


def num(value: Any) -> float | None:
    """A metric as a float: the strings "nan"/"inf" of the records become floats; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


@dataclass
class RunData:
    """One run's records as read from its directory (or what is known of a missing run)."""

    name: str
    label: str
    seed: int | None
    config: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    status: str = "missing"
    error: str | None = None

    def series(self, key: str) -> list[float | None]:
        return [num(r.get(key)) for r in self.metrics]

    @property
    def complete(self) -> bool:
        """Every epoch trained (status ok or not-learning)."""
        return self.status in ("ok", "not-learning")

    def final_acc(self) -> float | None:
        """Test accuracy after the last epoch (None unless every epoch trained)."""
        return self.final("test_acc")

    def final_val_acc(self) -> float | None:
        """Validation accuracy after the last epoch (None without a validation split)."""
        return self.final("val_acc")

    def final(self, key: str) -> float | None:
        if not self.complete or not self.metrics:
            return None
        return num(self.metrics[-1].get(key))

    @property
    def has_validation(self) -> bool:
        """The run held out a validation split (``n_val`` > 0, or ``val_acc`` recorded)."""
        n_val = num((self.config or {}).get("n_val"))
        if n_val is not None:
            return n_val > 0
        return any(num(r.get("val_acc")) is not None for r in self.metrics)

    def best(self) -> tuple[float, int] | None:
        """Best test accuracy and its 1-based epoch."""
        accs = [(a, i + 1) for i, a in enumerate(self.series("test_acc"))
                if a is not None and math.isfinite(a)]
        return max(accs, key=lambda p: (p[0], -p[1])) if accs else None

    def time_s(self) -> float | None:
        return num(self.metrics[-1].get("time")) if self.metrics else None

    def throughput(self) -> float | None:
        vals = [num(r.get("examples_per_s")) for r in self.metrics if not r.get("diverged")]
        vals = [v for v in vals if v is not None and math.isfinite(v)]
        return sum(vals) / len(vals) if vals else None


@dataclass
class TraceRow:
    epoch: int  # 1-based
    phase: str
    lr_first: float | None
    lr_last: float | None
    train_loss: float | None
    train_acc: float | None
    test_loss: float | None
    test_acc: float | None
    val_loss: float | None
    val_acc: float | None = None
    marks: list[str] = field(default_factory=list)


#: β2 of each optimizer's own defaults, for records written before config.json held "beta2"
_DEFAULT_BETA2 = {"adam": 0.999, "adamw": 0.999, "amsgrad": 0.999, "adam-nobias": 0.999,
                  "lion": 0.99}


def run_beta2(config: dict[str, Any] | None) -> float | None:
    """The β2 the run's optimizer used (for ``warmup(auto)``), as the trainer recorded it.

    ``config["beta2"]`` when present (None: an optimizer without one, such as SGD); else the
    ``betas`` given to the run; else, for records older than the ``beta2`` entry, the
    optimizer's default (Adam family 0.999, Lion 0.99; None for the others).
    """
    cfg = config or {}
    if "beta2" in cfg:
        return num(cfg["beta2"])
    betas = cfg.get("betas")
    if isinstance(betas, (list, tuple)) and len(betas) >= 2:
        return num(betas[1])
    return _DEFAULT_BETA2.get(str(cfg.get("optimizer", "")).lower())


def _bound_schedule(config: dict[str, Any] | None) -> tuple[Any, int] | None:
    """The run's schedule resolved as the trainer resolved it, and the time units per epoch."""
    if not config or "schedule" not in config:
        return None
    from lrlab.errors import LrlabError
    from lrlab.schedules import Context, parse

    per = config.get("per", "step")
    upe = int(config.get("updates_per_epoch") or 0)
    epochs = int(config.get("epochs") or 0)
    beta2 = run_beta2(config)
    peak = num(config.get("lr_used")) or 1.0
    try:
        if per == "epoch":
            ctx = Context(epochs or None, 1, beta2, peak, updates_per_step=upe or None)
            return parse(config["schedule"]).resolve(ctx), 1
        if not upe:
            return None
        ctx = Context(upe * epochs or None, upe, beta2, peak)
        return parse(config["schedule"]).resolve(ctx), upe
    except (LrlabError, ValueError):
        return None


def warmup_length(config: dict[str, Any] | None) -> tuple[int, str] | None:
    """Length of the schedule's leading warmup: (count, "updates" or "epochs")."""
    bound = _bound_schedule(config)
    if bound is None or bound[0].phase_at(0) != "warmup":
        return None
    ends = bound[0].boundaries()
    n = ends[0] if ends else bound[0].phases[0].span
    if not n:
        return None
    unit = "epoch" if (config or {}).get("per") == "epoch" else "update"
    return int(n), unit + ("s" if n != 1 else "")


def has_warmup(config: dict[str, Any] | None) -> bool:
    """True when the run's schedule starts with a warmup phase."""
    if config and config.get("warmup"):
        return True
    bound = _bound_schedule(config)
    return bool(bound and bound[0].phase_at(0) == "warmup")


def trace_rows(run: RunData) -> list[TraceRow]:
    """One row per recorded epoch, with its phase and spike / best / divergence marks."""
    bound = _bound_schedule(run.config)
    lrs = [v for r in run.metrics for v in (num(r.get("lr_first")), num(r.get("lr_last")))
           if v is not None and math.isfinite(v)]
    peak = max(lrs) if lrs else None
    warm = warmup_length(run.config)
    best = run.best()
    stop = divergence(run)
    collapse_epoch = stop.epoch + 1 if stop is not None and stop.cause == "collapse" \
        and stop.epoch is not None else None
    rows: list[TraceRow] = []
    prev_lr: float | None = None
    prev_loss: float | None = None
    for i, r in enumerate(run.metrics):
        first, last = num(r.get("lr_first")), num(r.get("lr_last"))
        lr = first if first is not None else num(r.get("lr"))
        phase = "flat"
        # the leading warmup's own length: a lone warmup phase is pinned at 1 after it
        if bound is not None and warm is not None \
                and int(r.get("epoch", i)) * bound[1] < warm[0]:
            phase = "warmup"
        elif bound is None and lr is not None and last is not None and last > lr * 1.001 \
                and peak is not None and last < peak * 0.999:
            phase = "warmup"
        elif lr is not None and peak is not None and lr >= peak * 0.999:
            phase = "peak"
        elif lr is not None and ((prev_lr is not None and lr < prev_lr * 0.999)
                                 or (last is not None and last < lr * 0.999)):
            phase = "decay"
        loss = num(r.get("train_loss"))
        row = TraceRow(i + 1, phase, lr, last, loss, num(r.get("train_acc")),
                       num(r.get("test_loss")), num(r.get("test_acc")), num(r.get("val_loss")),
                       num(r.get("val_acc")))
        if r.get("diverged"):
            row.marks.append("diverged")
        elif collapse_epoch == i + 1:
            row.marks.append("collapse")
        elif _spiked(prev_loss, loss):
            row.marks.append("loss spike")
        if best is not None and best[1] == i + 1:
            row.marks.append("best")
        rows.append(row)
        prev_lr, prev_loss = lr, loss
    return rows


def _spiked(prev: float | None, cur: float | None) -> bool:
    if prev is None or cur is None or not math.isfinite(prev) or prev <= 0:
        return False
    return not math.isfinite(cur) or cur > prev * (1 + SPIKE)


def _runs_of(flags: list[bool]) -> list[tuple[int, int]]:
    """Maximal stretches [a, b] (indices) where flags are True."""
    out, start = [], None
    for i, f in enumerate([*flags, False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - 1))
            start = None
    return out


def observations(run: RunData, rows: list[TraceRow] | None = None) -> list[str]:
    """Plain-language observations from the run's numbers, in epoch order where it applies."""
    rows = rows if rows is not None else trace_rows(run)
    notes: list[str] = []
    warm = [r.epoch for r in rows if r.phase == "warmup"]
    length = warmup_length(run.config)
    if warm:
        peak_lr = max((r.lr_first for r in rows if r.lr_first is not None), default=None)
        end = warm[-1]
        text = f"Warmup ran over epoch{'s 1–' if end > 1 else ' '}{end}"
        if length:
            text += f" ({length[0]} {length[1]})"
        if end < len(rows):
            text += f"; the LR reached its peak {peak_lr:.4g} at epoch {end + 1}"
        notes.append(text + ".")
    for prev, r in zip(rows, rows[1:]):
        if "loss spike" in r.marks and prev.train_loss is not None:
            rise = (r.train_loss / prev.train_loss - 1) * 100 if r.train_loss is not None \
                and math.isfinite(r.train_loss) else float("inf")
            notes.append(f"Loss spike at epoch {r.epoch}: train loss rose {rise:.0f}% "
                         f"({prev.train_loss:.4f} → {_f(r.train_loss)}) with LR "
                         f"{_f(r.lr_first, '.4g')}.")
    if run.status == "diverged":
        notes.append(_divergence_observation(divergence(run), rows))
    if run.status == "not-learning":
        why = next((e.get("message") for e in run.events if e.get("kind") == "not-learning"),
                   None)
        notes.append("Did not learn" + (f": {why}." if why else ": the train loss stayed at "
                                        "chance level."))
    notes += _overfitting(rows)
    best = run.best()
    if best is not None:
        final = rows[-1].test_acc if rows else None
        text = f"Best test accuracy {best[0]:.4f} at epoch {best[1]} of {len(rows)}"
        if final is not None and run.complete and final != best[0]:
            text += f"; final {final:.4f} ({final - best[0]:+.4f})"
        notes.append(text + ".")
    if run.status == "failed" and run.error:
        notes.append(f"Failed: {run.error}")
    return notes


def divergence(run: RunData) -> Divergence | None:
    """What stopped a diverged run (``summary["diverged_at"]``, else its ``diverged`` event),
    read as a :class:`~lrlab.lab.records.Divergence` (its cause, 0-based ``epoch``,
    ``update``, ``lr``, ``loss``, ``loss_before``; any may be None in older records)."""
    if run.status != "diverged":
        return None
    d = (run.summary or {}).get("diverged_at")
    if isinstance(d, dict) and d:
        return Divergence.from_dict(d)
    ev = next((e for e in reversed(run.events) if e.get("kind") == "diverged"), None)
    if ev is None:
        return None
    return Divergence.from_dict({k: v for k, v in ev.items()
                                 if k not in ("kind", "message", "time")})


def _as_divergence(d: Divergence | dict[str, Any] | None) -> Divergence | None:
    """A record as a Divergence: a dict (``diverged_at`` as read) is read by ``from_dict``;
    None or an empty dict is no record."""
    if isinstance(d, dict):
        return Divergence.from_dict(d) if d else None
    return d


def divergence_cause(d: Divergence | dict[str, Any] | None) -> str | None:
    """``nonfinite``, ``explosion``, ``nonfinite-eval`` or ``collapse`` (None in records older
    than the cause). The record names it ``cause`` (``kind`` in an early draft of it)."""
    d = _as_divergence(d)
    return d.cause if d is not None else None


def _where(d: Divergence) -> str:
    """ "epoch E (update U, LR x)" with E 1-based; the update left out when unknown."""
    inner = [f"update {d.update}"] if d.update is not None else []
    inner.append(f"LR {_f(d.lr, '.4g')}")
    head = f"epoch {d.epoch + 1}" if d.epoch is not None else "an unknown epoch"
    return f"{head} ({', '.join(inner)})"


def divergence_text(d: Divergence | dict[str, Any] | None) -> str:
    """A short description of a divergence for a summary note (no final period)."""
    d = _as_divergence(d)
    if d is None:
        return "diverged"
    if d.cause == "collapse":
        return (f"collapsed after learning at {_where(d)}: train loss "
                f"{_f(d.loss_before, '.4g')} → {_f(d.loss, '.4g')}")
    return f"diverged at {_where(d)}: loss {_f(d.loss, '.4g')}"


def _divergence_observation(d: Divergence | None, rows: list[TraceRow]) -> str:
    if d is None:
        return "Diverged: the loss became non-finite and the run stopped."
    kind = d.cause
    loss, before = d.loss, d.loss_before
    if kind == "collapse":
        epoch = d.epoch
        learned = [r for r in rows if r.train_loss is not None and epoch is not None
                   and math.isfinite(r.train_loss) and r.epoch <= epoch]
        text = (f"Collapsed after learning at {_where(d)}: train loss {_f(before, '.4g')} → "
                f"{_f(loss, '.4g')}, back at chance level or above")
        if learned:
            low = min(learned, key=lambda r: (r.train_loss, r.epoch))
            text += (f"; it had learned (train loss down to {low.train_loss:.4g} at epoch "
                     f"{low.epoch}), so this is a divergence, not a failure to learn")
        return text + ". The run stopped there."
    if kind == "nonfinite-eval":
        metric = (d.metric if d.metric is not None else "evaluation loss").replace("_", " ")
        return (f"Diverged at {_where(d)}: the {metric} became {_f(loss)} after the epoch's "
                "last update, and the run stopped there.")
    what = {"nonfinite": "the loss became non-finite",
            "explosion": "the loss exploded"}.get(str(kind), "the loss")
    text = f"Diverged at {_where(d)}: {what} ({_f(loss, '.4g')}"
    if before is not None:
        text += f"; previous epoch's train loss {_f(before, '.4g')}"
    return text + ") and the run stopped there."


def _overfitting(rows: list[TraceRow]) -> list[str]:
    notes = []
    flags = []
    for a, b in zip(rows, rows[1:]):
        ok = None not in (a.test_loss, b.test_loss, a.train_loss, b.train_loss)
        flags.append(ok and b.test_loss > a.test_loss and b.train_loss < a.train_loss)
    for s, e in _runs_of(flags):
        if e - s + 1 >= OVERFIT_EPOCHS:
            a, b = rows[s], rows[e + 1]
            notes.append(f"Overfitting from epoch {a.epoch} to {b.epoch}: test loss rose "
                         f"{a.test_loss:.4f} → {b.test_loss:.4f} while train loss fell "
                         f"{a.train_loss:.4f} → {b.train_loss:.4f}.")
    gaps = [None if r.train_acc is None or r.test_acc is None else r.train_acc - r.test_acc
            for r in rows]
    flags = [g0 is not None and g1 is not None and g0 >= 0 and g1 > g0
             for g0, g1 in zip(gaps, gaps[1:])]
    for s, e in _runs_of(flags):
        g0, g1 = gaps[s], gaps[e + 1]
        if e - s + 1 >= OVERFIT_EPOCHS and g1 - g0 > GAP_MIN_GROWTH:
            notes.append(f"The train–test accuracy gap widened from {g0:.4f} to {g1:.4f} over "
                         f"epochs {rows[s].epoch}–{rows[e + 1].epoch}.")
    return notes


def _f(v: float | None, spec: str = ".4f") -> str:
    if v is None:
        return "—"
    if not math.isfinite(v):
        return str(v)
    return format(v, spec)
