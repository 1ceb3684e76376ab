"""LR range test (Smith 2015/2017, "Cyclical Learning Rates"): which learning rates train?

``find_lr(model, optimizer, loss_fn, batches)`` raises the learning rate of param group 0
over ``steps`` mini-batches from ``start`` to ``end``: step ``i`` (0-based, ``n = steps``)
uses ``start·(end/start)^(i/(n-1))`` with ``mode="exp"``, ``start + (end-start)·i/(n-1)``
with ``mode="linear"``; the other groups keep their ratios to group 0. It records the loss
of every batch before its update (and, with ``val_batches``, the loss on that fixed set
after every update, which then is the curve used), and stops when the bias-corrected moving
average of the loss exceeds ``diverge`` × its minimum or a loss turns NaN/inf.

The finished curve is smoothed without delay (at each point a straight line fitted with
tricube weights to the ``window`` points around it: LOESS of degree 1, on ``ln(loss)`` when
every loss is > 0). Only when its minimum lies below its first value by more than 1 % and
by more than 2.5 standard errors did anything train; then the suggestions ``steepest``,
``valley`` and ``minimum`` are read off it, each with its reason in a sentence, and
``choose=None`` takes ``minimum``. Afterwards the model, the optimizer and the random number
generators are exactly as they were, also when the test raises. Any ``torch.optim.Optimizer``
that steps without a closure works (SGD, Adam(W), Lion, ...).

The formulas, why the stop and the suggestions use different averages, each suggestion's
rule, the measurements behind the default choice and what is restored: ``docs/lr-range-test.md``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrlab.errors import LrlabError
from lrlab.files import atomic_file
from lrlab.optim.modes import evaluation_point, train_mode
from lrlab.rng import capture_rng_state, restore_rng_state
from lrlab.tensors import as_float

__all__ = ["find_lr", "LRFinderResult", "Suggestion", "SUGGESTIONS", "ramp", "smooth_curve",
           "plot_target"]

SUGGESTIONS = ("steepest", "valley", "minimum")

_SKIP_FRACTION = 0.05       # steepest: ignore the first 5 % of the points
_VALLEY_SLOPE = 0.10        # valley: "descending" = falling >= 10 % as fast as the steepest
_MIN_DROP = 0.01            # trained: the minimum is > 1 % below the start ...
_DROP_SE = 2.5              # ... and > 2.5 standard errors of the difference below it

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Suggestion:
    """One suggested LR, the curve point it was read at, and why."""

    name: str
    lr: float
    reason: str
    index: int


@dataclass
class LRFinderResult:
    """The curve of an LR range test, its suggestions and the choice.

    ``lrs`` are group 0's LRs, ``losses`` the raw training losses, ``smoothed`` their
    zero-phase fit, ``val_losses`` / ``val_smoothed`` the validation curve (or None),
    ``running`` the causal moving average the divergence stop watched (of the validation
    loss when there is one). ``curve_used`` is ``"validation"`` or ``"train"``: the curve the
    suggestions were read from. ``trained`` is False when the loss never fell (then there
    are no suggestions). Only finite points are in the curve: a NaN/inf loss ends it and is
    described in ``stop_reason``.
    """

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    val_losses: list[float] | None
    val_smoothed: list[float] | None
    running: list[float]
    curve_used: str
    trained: bool
    suggestions: list[Suggestion]
    chosen: str | None
    chosen_lr: float | None
    chosen_reason: str
    stopped_early: bool
    stop_reason: str
    settings: dict[str, Any] = field(default_factory=dict)

    def suggestion(self, name: str) -> Suggestion | None:
        """The suggestion called ``name``, or None when the curve gave none."""
        return next((s for s in self.suggestions if s.name == name), None)

    @property
    def curve(self) -> list[float]:
        """The smoothed curve the suggestions were read from (validation if there is one)."""
        return self.val_smoothed if self.val_smoothed is not None else self.smoothed

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (every number a Python float or int)."""
        d = asdict(self)
        d["suggestions"] = [asdict(s) for s in self.suggestions]
        return d

    def summary_lines(self) -> list[str]:
        """Human-readable lines: how it ended, the curve read, each suggestion, the choice."""
        lines = [self.stop_reason]
        if self.lrs:
            lines.append(f"suggestions read on the {self.curve_used} loss, smoothed without "
                         "delay")
        width = max(len(n) for n in SUGGESTIONS)
        for s in self.suggestions:
            lines.append(f"  {s.name:<{width}}  lr {s.lr:.3g}: {s.reason}")
        if self.chosen is not None:
            lines.append(f"chosen: {self.chosen}, lr {self.chosen_lr:.3g} ({self.chosen_reason})")
        else:
            lines.append(f"no LR suggested: {self.chosen_reason}")
        return lines

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Write loss vs LR (log axis) with the suggestions as labelled vertical lines.

        The file is written next to ``path`` under a temporary name, then renamed, so a
        reader never sees half a file. The format follows the suffix: ``.png`` (added when
        there is none), ``.svg`` or ``.pdf`` (see :func:`plot_target`).
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path = plot_target(path)
        fig = Figure(figsize=(7.5, 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(self.lrs, self.losses, color="0.75", lw=1, label="train loss (raw)")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=2, label="train loss (smoothed)")
        if self.val_losses is not None and self.val_smoothed is not None:
            ax.plot(self.lrs, self.val_losses, color="#f5c28e", lw=1,
                    label="validation loss (raw)")
            ax.plot(self.lrs, self.val_smoothed, color="C1", lw=2,
                    label="validation loss (smoothed)")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (group 0)")
        ax.set_ylabel("loss")
        curve = [v for v in self.curve if math.isfinite(v)]
        if curve:
            lo = min(min(curve), min(self.losses))
            hi = max(curve[0], min(max(curve), 3 * max(curve[0], 1e-12)))
            pad = 0.05 * (hi - lo or abs(hi) or 1.0)
            ax.set_ylim(lo - pad, hi + 4 * pad)
        colours = {"steepest": "C2", "valley": "C3", "minimum": "C4"}
        for s in self.suggestions:
            style = "-" if s.name == self.chosen else "--"
            ax.axvline(s.lr, color=colours.get(s.name, "k"), ls=style, lw=1.5,
                       label=f"{s.name} {s.lr:.2g}" + (" (chosen)" if s.name == self.chosen
                                                       else ""))
        title = f"LR range test, read on the {self.curve_used} loss"
        if not self.trained:
            title += ": nothing trained"
        elif self.stopped_early:
            title += " (stopped early)"
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "wb") as fh:
            fig.savefig(fh, format=path.suffix[1:], dpi=110)
        return path


def plot_target(path: str | os.PathLike[str]) -> Path:
    """The file a plot of ``path`` goes to: ``.png`` added when there is no suffix; a
    directory, or a suffix other than ``.png``/``.svg``/``.pdf``, is an LrlabError."""
    path = Path(path)
    if path.is_dir():
        raise LrlabError(f"plot: {str(path)!r} is a directory; give a file name ending in "
                         ".png, .svg or .pdf")
    if not path.suffix:
        path = path.with_suffix(".png")
    if path.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise LrlabError(f"plot: the file name must end in .png, .svg or .pdf, got "
                         f"{str(path)!r}")
    return path


# -- arguments --------------------------------------------------------------------------------
def _check_args(start: float, end: float, steps: int, mode: str, smooth: float,
                diverge: float, choose: str | None, window: int) -> None:
    for name, value in (("start", start), ("end", end), ("smooth", smooth),
                        ("diverge", diverge)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise LrlabError(f"LR range test: {name} must be a finite number, got {value!r}")
    if start <= 0:
        raise LrlabError(f"LR range test: start must be > 0, got {start:g}")
    if start >= end:
        raise LrlabError(f"LR range test: start ({start:g}) must be below end ({end:g})")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 5:
        raise LrlabError(f"LR range test: steps must be an integer >= 5, got {steps!r}")
    if mode not in ("exp", "linear"):
        raise LrlabError(f"LR range test: mode must be 'exp' or 'linear', got {mode!r}")
    if not 0 < smooth <= 1:
        raise LrlabError(f"LR range test: smooth must be in (0, 1], got {smooth:g}")
    if diverge <= 1:
        raise LrlabError(f"LR range test: diverge must be > 1, got {diverge:g}")
    if choose is not None and choose not in SUGGESTIONS:
        raise LrlabError(f"LR range test: choose must be one of {', '.join(SUGGESTIONS)}, "
                         f"got {choose!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise LrlabError(f"LR range test: window must be an odd number of points >= 1, got "
                         f"{window!r}")


def ramp(start: float, end: float, steps: int, mode: str = "exp") -> list[float]:
    """The LRs of group 0, one per step (see the module docstring for the formulas)."""
    last = steps - 1
    if mode == "exp":
        return [start * (end / start) ** (i / last) for i in range(steps)]
    return [start + (end - start) * i / last for i in range(steps)]


# -- batches ----------------------------------------------------------------------------------
def _batch_stream(batches: Iterable[Batch] | Callable[[], Iterable[Batch]]) -> Iterator[Batch]:
    """Yield batches forever: call ``batches`` again, re-iterate it, or replay a one-shot one."""
    if callable(batches) and not isinstance(batches, Iterable):
        def fresh() -> Iterator[Batch]:
            return iter(batches())
        one_shot = False
    else:
        first = iter(batches)
        one_shot = first is batches
        pending = [first]

        def fresh() -> Iterator[Batch]:
            return pending.pop() if pending else iter(batches)
    seen: list[Batch] = []
    while True:
        got = False
        for b in fresh():
            got = True
            if one_shot:
                seen.append(b)
            yield b
        if not got:
            break
        if one_shot:
            yield from itertools.cycle(seen)
    raise LrlabError("LR range test: batches yielded nothing")


def _unpack(batch: Any) -> Batch:
    try:
        x, y = batch
    except (TypeError, ValueError):
        raise LrlabError("LR range test: each batch must be a pair (x, y)") from None
    return x, y


# -- saving and restoring ---------------------------------------------------------------------
def _copy_into(dst: Any, src: Any) -> Any:
    """``src`` copied into ``dst`` in place when both are tensors of one kind, else ``src``."""
    if isinstance(dst, torch.Tensor) and isinstance(src, torch.Tensor) \
            and dst.shape == src.shape and dst.dtype == src.dtype and dst.device == src.device:
        with torch.no_grad():
            dst.copy_(src)
        return dst
    return src


class _Snapshot:
    """Everything the range test changes, copied before it and put back after it."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.optimizer = model, optimizer
        self.training = model.training
        self.tensors = [t.detach().clone() for t in self._model_tensors()]
        self.grads = [None if p.grad is None else p.grad.detach().clone()
                      for p in model.parameters()]
        self.groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
                       for g in optimizer.param_groups]
        self.state = {p: copy.deepcopy(optimizer.state[p]) for g in optimizer.param_groups
                      for p in g["params"] if p in optimizer.state}
        self.rng = capture_rng_state()

    def _model_tensors(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.model.buffers()]

    def restore(self) -> None:
        with torch.no_grad():
            for t, saved in zip(self._model_tensors(), self.tensors):
                t.copy_(saved)
        for p, g in zip(self.model.parameters(), self.grads):
            if g is None:
                p.grad = None
            elif p.grad is not None and p.grad.shape == g.shape and p.grad.dtype == g.dtype:
                with torch.no_grad():
                    p.grad.copy_(g)
            else:
                p.grad = g
        self.model.train(self.training)
        for group, saved in zip(self.optimizer.param_groups, self.groups):
            for key in [k for k in group if k != "params" and k not in saved]:
                del group[key]
            for key, value in saved.items():
                group[key] = _copy_into(group.get(key), value)
        state = self.optimizer.state
        for g in self.optimizer.param_groups:
            for p in g["params"]:
                if p not in self.state:
                    state.pop(p, None)
                    continue
                saved, current = self.state[p], state.get(p, {})
                state[p] = {k: _copy_into(current.get(k), v) for k, v in saved.items()}
        restore_rng_state(self.rng)


def _set_lr(group: dict[str, Any], lr: float) -> None:
    if isinstance(group["lr"], torch.Tensor):
        group["lr"].fill_(lr)
    else:
        group["lr"] = lr


# -- the test ---------------------------------------------------------------------------------
def find_lr(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    batches: Iterable[Batch] | Callable[[], Iterable[Batch]],
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    mode: str = "exp",
    smooth: float = 0.05,
    diverge: float = 4.0,
    val_batches: Iterable[Batch] | None = None,
    *,
    window: int = 11,
    choose: str | None = None,
    autocast: torch.dtype | None = None,
) -> LRFinderResult:
    """Run an LR range test and leave ``model`` and ``optimizer`` as they were.

    Args:
        model: the network; trained in ``train()`` mode during the test.
        optimizer: any optimizer over (some of) the model's parameters; its param groups'
            LRs keep their ratios to group 0 (module docstring).
        loss_fn: ``loss_fn(model(x), y)`` -> scalar tensor.
        batches: an iterable of ``(x, y)`` (re-iterated, or replayed, when shorter than
            ``steps``) or a callable returning a fresh such iterable.
        start, end: first and last LR of group 0 (``0 < start < end``).
        steps: number of updates (>= 5).
        mode: ``"exp"`` (geometric ramp) or ``"linear"``.
        smooth: the weight of the newest loss in the causal moving average that the
            divergence stop watches (not the curve the suggestions are read on).
        diverge: stop when the moving average exceeds ``diverge`` × its minimum so far.
        val_batches: optional fixed set of ``(x, y)`` evaluated after every update; its loss
            is then the curve the stop watches and the suggestions are read from.
        window: points (odd, >= 1) of the centred local-linear fit the suggestions are read
            on (module docstring); 1: the raw curve.
        choose: ``"steepest"``, ``"valley"`` or ``"minimum"``; None: the default,
            ``minimum`` (module docstring).
        autocast: run the forward pass under ``torch.autocast`` with this dtype.

    Returns:
        The :class:`LRFinderResult`; its ``chosen`` is None when nothing trained.

    Raises:
        LrlabError: bad arguments, empty batches, or a batch that is not a pair.
    """
    _check_args(start, end, steps, mode, smooth, diverge, choose, window)
    ratios = _group_ratios(optimizer)
    lrs = ramp(start, end, steps, mode)
    val = _validation_set(val_batches)
    t0 = time.perf_counter()
    snapshot = _Snapshot(model, optimizer)
    try:
        trace = _run_ramp(model, optimizer, loss_fn, batches, lrs, ratios, smooth=smooth,
                          diverge=diverge, val=val, cast=_autocast(model, autocast))
    finally:
        snapshot.restore()
    settings = {"start": start, "end": end, "steps": steps, "mode": mode, "smooth": smooth,
                "window": window, "diverge": diverge, "group_ratios": ratios,
                "steps_run": len(trace.lrs), "time_s": time.perf_counter() - t0}
    reading = _read_curve(trace, window, end, choose)
    return LRFinderResult(
        lrs=trace.lrs, losses=trace.losses, smoothed=reading.smoothed,
        val_losses=trace.val_losses, val_smoothed=reading.val_smoothed, running=trace.running,
        curve_used="validation" if trace.val_losses is not None else "train",
        trained=reading.trained, suggestions=reading.suggestions, chosen=reading.chosen,
        chosen_lr=reading.chosen_lr, chosen_reason=reading.chosen_reason,
        stopped_early=trace.stopped_early, stop_reason=trace.stop_reason, settings=settings)


def _group_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each param group's LR over group 0's (module docstring, *Param groups*)."""
    groups = optimizer.param_groups
    lr0 = as_float(groups[0]["lr"])
    if not lr0 > 0 or not math.isfinite(lr0):
        raise LrlabError(f"LR range test: param group 0 needs a positive lr to take the other "
                         f"groups' ratios from, got {lr0!r}")
    return [as_float(g["lr"]) / lr0 for g in groups]


def _validation_set(val_batches: Iterable[Batch] | None) -> list[Any] | None:
    """The validation batches as a list (evaluated after every update), or None."""
    val = list(val_batches) if val_batches is not None else None
    if val is not None and not val:
        raise LrlabError("LR range test: val_batches is empty")
    return val


def _autocast(model: torch.nn.Module,
              dtype: torch.dtype | None) -> Callable[[], contextlib.AbstractContextManager]:
    """A fresh context for each forward pass: ``torch.autocast`` to ``dtype`` on the model's
    device, or nothing when ``dtype`` is None."""
    def cast() -> contextlib.AbstractContextManager:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=_device_type(model), dtype=dtype)

    return cast


# -- the ramp: the measured curve -------------------------------------------------------------
@dataclass
class _Trace:
    """What the ramp measured, finite points only: group 0's LR, the training loss before
    each update, the validation loss after it (None without a validation set), the moving
    average the stop watched; and how the ramp ended."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val_losses: list[float] | None = None
    running: list[float] = field(default_factory=list)
    stopped_early: bool = False
    stop_reason: str = ""

    def stop(self, reason: str) -> _Trace:
        """End the ramp early for ``reason``; returns the trace."""
        self.stopped_early, self.stop_reason = True, reason
        return self


def _run_ramp(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
              batches: Iterable[Batch] | Callable[[], Iterable[Batch]], lrs: list[float],
              ratios: list[float], *, smooth: float, diverge: float, val: list[Any] | None,
              cast: Callable[[], contextlib.AbstractContextManager]) -> _Trace:
    """One update per LR of ``lrs`` (group ``g`` at ``ratios[g]`` × it), recording the curve.

    Stops at a NaN/inf loss (training, or validation when ``val`` is given) and when the
    bias-corrected moving average of the watched loss exceeds ``diverge`` × its minimum
    (module docstring, *Two averages for two jobs*). Leaves the model and the optimizer as
    the ramp made them: the caller restores them.
    """
    steps, watched_name = len(lrs), "validation loss" if val is not None else "loss"
    trace = _Trace(val_losses=[] if val is not None else None)
    avg, best = 0.0, math.inf
    model.train()
    train_mode(optimizer)  # a Schedule-Free optimizer steps in train mode only
    stream = _batch_stream(batches)
    for i, lr in enumerate(lrs):
        for g, r in zip(optimizer.param_groups, ratios):
            _set_lr(g, lr * r)
        value = _update(model, optimizer, loss_fn, next(stream), cast)
        if not math.isfinite(value):
            return trace.stop(f"stopped early at step {i + 1} of {steps}: the loss became "
                              f"{value} at lr {lr:.3g}")
        watched = value
        if trace.val_losses is not None:
            with evaluation_point(optimizer):  # Schedule-Free: its average x
                watched = _evaluate(model, loss_fn, val, cast)
            if not math.isfinite(watched):
                return trace.stop(f"stopped early at step {i + 1} of {steps}: the validation "
                                  f"loss became {watched} after the update with lr {lr:.3g}")
            trace.val_losses.append(watched)
        trace.lrs.append(lr)
        trace.losses.append(value)
        avg = (1 - smooth) * avg + smooth * watched
        trace.running.append(avg / (1 - (1 - smooth) ** (i + 1)))
        best = min(best, trace.running[-1])
        if i > 0 and trace.running[-1] > diverge * best:
            return trace.stop(f"stopped early at step {i + 1} of {steps}: the moving average "
                              f"of the {watched_name} {trace.running[-1]:.4g} at lr {lr:.3g} "
                              f"exceeds {diverge:g} × its minimum {best:.4g}")
    trace.stop_reason = f"ran all {steps} steps up to lr {lrs[-1]:.3g}"
    return trace


def _update(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            loss_fn: Callable[[Any, torch.Tensor], torch.Tensor], batch: Any,
            cast: Callable[[], contextlib.AbstractContextManager]) -> float:
    """The loss of ``batch`` before an update on it; the update is made only when the loss
    is finite."""
    x, y = _unpack(batch)
    optimizer.zero_grad(set_to_none=True)
    with cast():
        out = model(x)
    loss = loss_fn(out, y)
    value = float(loss.detach().float().item())
    if math.isfinite(value):
        loss.backward()
        optimizer.step()
    return value


def _device_type(model: torch.nn.Module) -> str:
    p = next(model.parameters(), None)
    return p.device.type if p is not None else "cpu"


def _evaluate(model: torch.nn.Module, loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
              val: list[Any], cast: Callable[[], contextlib.AbstractContextManager]) -> float:
    """Mean loss over the examples of ``val`` (batch losses weighted by their sizes)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in val:
            x, y = _unpack(batch)
            with cast():
                out = model(x)
            n = len(y)
            total += float(loss_fn(out, y).float().item()) * n
            count += n
    model.train()
    return total / max(count, 1)


# -- the reading of the curve -----------------------------------------------------------------
@dataclass
class _Reading:
    """What the measured curve says: the smoothed curves, whether anything trained, the
    suggestions and the choice among them (module docstring)."""

    smoothed: list[float]
    val_smoothed: list[float] | None
    trained: bool
    suggestions: list[Suggestion]
    chosen: str | None
    chosen_lr: float | None
    chosen_reason: str


def _read_curve(trace: _Trace, window: int, end: float, choose: str | None) -> _Reading:
    """Smooth the trace's curves without delay (``window`` points), decide on the watched one
    (validation if any) whether anything trained, read the suggestions off it and choose."""
    smoothed, gains = smooth_curve(trace.losses, window)
    read_on, curve = trace.losses, smoothed
    if trace.val_losses is not None:
        read_on = trace.val_losses
        curve, gains = smooth_curve(read_on, window)
    trained, untrained_why = _trained(read_on, curve, gains)
    suggestions = _suggest(trace.lrs, curve, trace.stopped_early, end) if trained else []
    chosen, chosen_lr, chosen_reason = _choose(suggestions, choose, untrained_why)
    return _Reading(smoothed, curve if trace.val_losses is not None else None, trained,
                    suggestions, chosen, chosen_lr, chosen_reason)


# -- the smoothed curve -----------------------------------------------------------------------
def _local_line_weights(offsets: np.ndarray, h: int) -> np.ndarray:
    """Weights ``L_k`` with ``sum_k L_k·y_k`` = the tricube-weighted least-squares line
    through the points at ``offsets`` (from the fitted point), evaluated at offset 0."""
    w = (1 - (np.abs(offsets) / (h + 1)) ** 3) ** 3
    design = np.stack([np.ones_like(offsets), offsets], axis=1).astype(np.float64)
    gram = design.T @ (w[:, None] * design)
    return np.linalg.solve(gram, (design * w[:, None]).T)[0]


def smooth_curve(values: Sequence[float], window: int = 11) -> tuple[list[float], list[float]]:
    """The zero-phase local-linear fit of ``values`` and each point's noise gain.

    Fits ``ln(values)`` when every value is > 0 (then maps back with ``exp``), else the
    values, with a tricube-weighted line over the ``window`` points centred on each point
    (fewer at the ends). Returns ``(smoothed, gains)``, ``gains[i] = sum_k L_k²`` of the
    weights that made ``smoothed[i]`` (see the module docstring).
    """
    n = len(values)
    y = np.asarray(values, dtype=np.float64)
    h = (window - 1) // 2
    if h < 1 or n < 3:
        return [float(v) for v in y], [1.0] * n
    logged = bool(np.all(y > 0))
    if logged:
        y = np.log(y)
    out = np.empty(n)
    gains = np.empty(n)
    for i in range(n):
        lo, hi = max(0, i - h), min(n, i + h + 1)
        weights = _local_line_weights(np.arange(lo - i, hi - i, dtype=np.float64), h)
        out[i] = weights @ y[lo:hi]
        gains[i] = weights @ weights
    if logged:
        out = np.exp(out)
    return [float(v) for v in out], [float(g) for g in gains]


def _trained(raw: list[float], s: list[float], gains: list[float]) -> tuple[bool, str]:
    """Did the smoothed loss fall below its start by more than noise? (module docstring)"""
    if not s:
        return False, "the range test recorded no finite loss"
    i_min = min(range(len(s)), key=lambda i: s[i])
    logged = all(v > 0 for v in raw)
    tr = np.log if logged else np.asarray
    x = np.asarray(tr(np.asarray(raw, dtype=np.float64)))
    diffs = np.diff(x)
    sigma = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2) \
        if len(diffs) else 0.0
    se = sigma * math.sqrt(gains[0] + gains[i_min])
    if logged:
        drop, floor = math.log(s[0] / s[i_min]), -math.log(1 - _MIN_DROP)
    else:
        drop, floor = s[0] - s[i_min], _MIN_DROP * abs(s[0])
    if drop > max(floor, _DROP_SE * se):
        return True, ""
    units = " (in ln units)" if logged else ""
    return False, (f"nothing trained: the smoothed loss never fell clearly below its first "
                   f"value {s[0]:.4g} (lowest {s[i_min]:.4g}; a fall counts when it exceeds "
                   f"{_MIN_DROP:.0%} and {_DROP_SE:g} standard errors, {_DROP_SE * se:.3g}"
                   f"{units}); check the model, the data and the loss, or the LR range")


# -- suggestions ------------------------------------------------------------------------------
def _suggest(lrs: list[float], s: list[float], stopped_early: bool,
             end: float) -> list[Suggestion]:
    n = len(s)
    i_min = min(range(n), key=lambda i: s[i])
    out: list[Suggestion] = []
    steep = _steepest(lrs, s, i_min)
    if steep is not None:
        out.append(steep)
    valley = _valley(lrs, s, i_min)
    if valley is not None:
        out.append(valley)
    lr_min = lrs[i_min]
    if i_min == n - 1 and not stopped_early:
        why = (f"the smoothed loss was still falling at the end of the ramp (lowest, "
               f"{s[i_min]:.4g}, at the last lr {lr_min:.3g}), so the limit lies above "
               f"{end:.3g}: rerun with a larger end")
    else:
        why = (f"the smoothed loss is lowest here ({s[i_min]:.4g}) and rises at larger LRs "
               "(Smith 2017: the peak of a schedule that warms up and decays; the ramp "
               "crosses the edge of stability a few steps before the loss turns up)")
    out.append(Suggestion("minimum", lr_min, why, i_min))
    return out


def _slopes(lrs: list[float], s: list[float], i_min: int) -> tuple[int, dict[int, float]]:
    """Central differences of ``s`` vs ln(lr) at the points the suggestions may use."""
    n = len(s)
    k = max(1, n // 50)
    first = max(k, math.ceil(_SKIP_FRACTION * n))
    out = {}
    for i in range(first, min(i_min, n - 1 - k) + 1):
        lo, hi = i - k, i + k
        out[i] = (s[hi] - s[lo]) / (math.log(lrs[hi]) - math.log(lrs[lo]))
    return k, out


def _steepest(lrs: list[float], s: list[float], i_min: int) -> Suggestion | None:
    k, slopes = _slopes(lrs, s, i_min)
    if not slopes or min(slopes.values()) >= 0:
        return None
    best_i = min(slopes, key=lambda i: slopes[i])
    why = (f"the smoothed loss falls fastest here: {slopes[best_i]:.3g} per unit of ln(lr) "
           f"(loss {s[best_i]:.4g}; central difference over ±{k} steps, lr "
           f"{lrs[best_i - k]:.3g}..{lrs[best_i + k]:.3g})")
    return Suggestion("steepest", lrs[best_i], why, best_i)


def _valley(lrs: list[float], s: list[float], i_min: int) -> Suggestion | None:
    _, slopes = _slopes(lrs, s, i_min)
    if not slopes or min(slopes.values()) >= 0:
        return None
    limit = _VALLEY_SLOPE * min(slopes.values())
    runs: list[tuple[int, int]] = []
    for i in sorted(slopes):
        if slopes[i] > limit:
            continue
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    a, b = max(runs, key=lambda r: (r[1] - r[0], s[r[0]] - s[r[1]]))
    idx = a + (b - a) // 2
    why = (f"half-way along the longest descending stretch of the smoothed loss, lr "
           f"{lrs[a]:.3g}..{lrs[b]:.3g} ({b - a + 1} steps falling at least "
           f"{_VALLEY_SLOPE:.0%} as fast as at the steepest point; loss {s[a]:.4g} -> "
           f"{s[b]:.4g})")
    return Suggestion("valley", lrs[idx], why, idx)


def _choose(suggestions: list[Suggestion], choose: str | None,
            untrained_why: str) -> tuple[str | None, float | None, str]:
    """The suggestion to use and why (every suggestion is at or below the minimum's LR)."""
    if not suggestions:
        return None, None, untrained_why
    by_name = {x.name: x for x in suggestions}
    if choose is not None and choose in by_name:
        return choose, by_name[choose].lr, "as asked"
    note = f"no {choose} suggestion on this curve; " if choose is not None else ""
    pick = by_name["minimum"]
    return pick.name, pick.lr, note + "the default: minimum"
