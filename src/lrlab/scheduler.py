"""The torch adapter: a ``torch.optim.lr_scheduler.LRScheduler`` driven by an lrlab schedule.

The LR of each param group is computed in closed form from the count ``t``,
``lr_i = peak_i * m(t) * plateau_factor``, so resuming at update 10**6 costs the same as at 0
and never drifts. ``state_dict()`` holds the spec string and the count (plain data: it loads
with ``torch.load(weights_only=True)``); the scheduler itself pickles too.

Stepping convention (the same as torch's): create the scheduler after the optimizer (this
sets the LR of update 0), then call ``optimizer.step()`` followed by ``scheduler.step()``
once per update (``per="step"``, the default) or once per epoch (``per="epoch"``).

Time unit. With ``per="step"`` the count ``t`` is the optimizer update. With ``per="epoch"``
it is the epoch: ``5`` and ``5ep`` both mean five epochs, ``10%`` is 10% of the epochs, and
``warmup(auto)`` (defined as 2/(1-β2) *updates*) lasts ``ceil(2/(1-β2) / steps_per_epoch)``
epochs; without ``steps_per_epoch`` it is refused rather than read as that many epochs.

Length of training. Give ``total_steps`` (updates) or ``epochs``, or both; with
``steps_per_epoch`` each is derived from the other: ``total_steps = epochs * steps_per_epoch``
with ``per="step"``, ``epochs = ceil(total_steps / steps_per_epoch)`` with ``per="epoch"``
(a shorter last epoch is allowed). Both given must agree, which needs ``steps_per_epoch``;
a length that cannot be converted is refused, never ignored.

``step(x)`` with an argument. Torch's own ``step(epoch)`` is deprecated; Lightning calls
``step(metric)`` for a scheduler config with ``"reduce_on_plateau": True`` (once per
``interval``, with the ``monitor`` value), as torch's ``ReduceLROnPlateau.step(metrics)`` is
called. So: on a schedule with ``* plateau(...)`` the argument is a metric: it is reported and
the count then advances by one as in ``step()`` (``per="epoch"`` with Lightning's
``"interval": "epoch"`` is the matching pair). Without a plateau the argument can only be
the epoch index, a whole number >= 0; a float such as ``0.35`` is refused (it used to be
truncated to epoch 0, resetting the LR). A ``per="step"`` schedule under Lightning's
``reduce_on_plateau`` with ``"interval": "epoch"`` would advance one *update* per epoch:
use ``"interval": "step"`` with ``lrlab.integrations.LightningPlateau`` instead (which
refuses the mismatched pairing).

Resuming and extending a run. ``load_state_dict`` restores the count and the plateau state.
The constructor describes the run being trained now: when the saved spec, training length,
``steps_per_epoch``, β2 or peak LRs differ from this Scheduler's, this Scheduler's values
are kept and a :class:`ScheduleChangedWarning` naming both is given at the next ``step()``
(a different ``per`` is refused: the count would change unit). To extend a run from 48 to
96 updates, build the Scheduler with ``total_steps=96`` and resume: the schedule is
resolved again over 96 updates and training continues at update 48 of that curve (the LR
may jump: a decay that had reached 0 at update 48 restarts from its value at 48 of 96). To
rebuild a scheduler purely from a saved state use :meth:`Scheduler.from_state_dict`.

torch.compile. With tensor LRs (``lr=torch.tensor(...)``, PyTorch's "compiling the optimizer
and LR scheduler" recipe: ``@torch.compile def fn(): opt.step(); sched.step()``) ``step()``
runs outside the compiled graph (a graph break around it) and fills the LR tensors in place,
so the Python floats it computes never become constants of a graph and a new LR never
recompiles it. Float LRs are traced as usual: torch 2.13 recompiles once, at the first
change, and then treats the LR as dynamic, exactly as with torch's own schedulers.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrlab.errors import LrlabError
from lrlab.schedules import Context, Plateau, PlateauState, Schedule, parse
from lrlab.tensors import as_float

__all__ = ["PlateauNotReportedWarning", "ScheduleChangedWarning", "Scheduler", "optimizer_beta2"]

_is_compiling = torch.compiler.is_compiling
_Tensor = torch.Tensor
_INF = math.inf


class ScheduleChangedWarning(UserWarning):
    """``load_state_dict`` met a state saved with other settings; this Scheduler's were kept."""


class PlateauNotReportedWarning(UserWarning):
    """A schedule with ``plateau(...)`` got no metric for a whole epoch of steps."""


def optimizer_beta2(optimizer: Optimizer) -> float | None:
    """The second-moment decay β2 of an Adam-like optimizer (or Lion's β2), else None."""
    if not optimizer.param_groups:
        return None
    betas = optimizer.param_groups[0].get("betas")
    try:
        return float(betas[1]) if betas is not None and len(betas) >= 2 else None
    except (TypeError, ValueError):
        return None


def _positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise LrlabError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _as_schedule(schedule: Any) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, str):
        return parse(schedule)
    raise LrlabError(
        "schedule must be a spec string such as 'warmup(5%) >> cosine()' or a Schedule, "
        f"got {type(schedule).__name__} {schedule!r}"[:200]
    )


def _training_length(per: str, total: int | None, spe: int | None,
                     epochs: int | None) -> int | None:
    """Training length in units of ``t`` (updates, or epochs with per='epoch'), or None."""
    if total is not None and epochs is not None:
        if spe is None:
            raise LrlabError(
                f"total_steps={total} and epochs={epochs} given without steps_per_epoch: "
                "give one of them, or steps_per_epoch too so they can be checked"
            )
        if -(-total // spe) != epochs:
            raise LrlabError(
                f"total_steps={total} is {-(-total // spe)} epochs of {spe} updates, "
                f"not epochs={epochs}"
            )
    if per == "step":
        if total is not None or epochs is None:
            return total
        if spe is None:
            raise LrlabError(f"epochs={epochs} with per='step' needs steps_per_epoch to count "
                             "updates (or give total_steps)")
        return epochs * spe
    if epochs is not None or total is None:
        return epochs
    if spe is None:
        raise LrlabError(f"total_steps={total} with per='epoch' needs steps_per_epoch to count "
                         "epochs (or give epochs)")
    return -(-total // spe)


def _metric(value: Any) -> float:
    """A finite float from a number or a one-element tensor, else LrlabError."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex() \
            and value.dtype is not torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LrlabError(f"plateau metric must be a number, got {type(value).__name__} "
                         f"{value!r}"[:200])
    m = float(value)
    if not math.isfinite(m):
        raise LrlabError(
            f"plateau metric is {m}: the run has likely diverged; lrlab stops here instead "
            "of counting it as one more bad epoch (torch's ReduceLROnPlateau would)"
        )
    return m


def _set_initial_lr(group: dict[str, Any], peak: float) -> None:
    current = group.get("initial_lr")
    if isinstance(current, torch.Tensor):
        current.fill_(peak)
    else:
        group["initial_lr"] = peak


@dataclass(frozen=True)
class _SavedState:
    """A validated ``Scheduler.state_dict()``: nothing is assigned until all of it is read."""

    schedule: Schedule
    per: str
    total_steps: int | None
    steps_per_epoch: int | None
    epochs: int | None
    beta2: float | None
    last_epoch: int
    step_count: int
    peaks: list[float]
    plateau: PlateauState | None

    @property
    def length(self) -> int | None:
        return _training_length(self.per, self.total_steps, self.steps_per_epoch, self.epochs)


def _read_state(state: Any, groups: int) -> _SavedState:
    """Validate every field of a saved state; LrlabError naming the first bad one."""
    bad = "not an lrlab Scheduler state"
    if not isinstance(state, Mapping):
        raise LrlabError(f"{bad}: expected a dict, got {type(state).__name__}")
    try:
        spec, per, last_epoch, base_lrs = (state[k] for k in ("spec", "per", "last_epoch",
                                                              "base_lrs"))
    except KeyError as exc:
        raise LrlabError(f"{bad}: it has no {exc.args[0]!r}") from None
    if not isinstance(spec, str):
        raise LrlabError(f"{bad}: spec must be a string, got {spec!r}"[:200])
    try:
        schedule = parse(spec)
    except LrlabError as exc:
        raise LrlabError(f"{bad}: its spec does not parse ({exc})") from None
    if per not in ("step", "epoch"):
        raise LrlabError(f"{bad}: per must be 'step' or 'epoch', got {per!r}"[:200])
    try:
        lengths = [_positive_int(k, state.get(k)) for k in ("total_steps", "steps_per_epoch",
                                                           "epochs")]
    except LrlabError as exc:
        raise LrlabError(f"{bad}: {exc}") from None
    beta2 = state.get("beta2")
    if beta2 is not None and (isinstance(beta2, bool) or not isinstance(beta2, numbers.Real)
                              or not 0.0 <= float(beta2) < 1.0):
        raise LrlabError(f"{bad}: beta2 must be a number in [0, 1) or None, got {beta2!r}")
    step_count = state.get("_step_count", last_epoch + 1 if isinstance(last_epoch, int) else 0)
    for name, value, low in (("last_epoch", last_epoch, -1), ("_step_count", step_count, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise LrlabError(f"{bad}: {name} must be a whole number >= {low}, got {value!r}")
    if not isinstance(base_lrs, (list, tuple)) or not all(
            isinstance(p, numbers.Real) and not isinstance(p, bool) and math.isfinite(p)
            and p >= 0 for p in base_lrs):
        raise LrlabError(f"{bad}: base_lrs must be a list of finite LRs >= 0, got "
                         f"{base_lrs!r}"[:200])
    if len(base_lrs) != groups:
        raise LrlabError(f"the state has {len(base_lrs)} param groups, the optimizer has {groups}")
    plateau_sd = state.get("plateau")
    plateau = None
    if plateau_sd is not None:
        if schedule.plateau is None:
            raise LrlabError(f"{bad}: it holds a plateau state but its spec {spec!r} has no "
                             "plateau(...)")
        if not isinstance(plateau_sd, Mapping):
            raise LrlabError(f"{bad}: plateau must be a dict, got {type(plateau_sd).__name__}")
        plateau = _plateau_state(schedule.plateau, base_lrs)
        plateau.load_state_dict(dict(plateau_sd))  # LrlabError on a bad one; a fresh object
        if plateau.num_bad < 0 or plateau.cooldown_counter < 0 or plateau.reports < 0 \
                or not all(0.0 <= f <= 1.0 for f in plateau.factors):
            raise LrlabError(f"{bad}: plateau state out of range: {dict(plateau_sd)!r}"[:200])
    elif schedule.plateau is not None:
        plateau = _plateau_state(schedule.plateau, base_lrs)
    saved = _SavedState(schedule, per, *lengths, None if beta2 is None else float(beta2),
                        int(last_epoch), int(step_count), [float(p) for p in base_lrs], plateau)
    try:
        saved.length  # noqa: B018 -- the lengths must agree with each other
    except LrlabError as exc:
        raise LrlabError(f"{bad}: {exc}") from None
    return saved


def _plateau_state(plateau: Plateau, peaks: Any) -> PlateauState:
    """A fresh plateau state for groups with these peak LRs; LrlabError when ``min_lr=``
    does not fit the groups."""
    return PlateauState(plateau, peaks=tuple(float(p) for p in peaks))


def _carry_plateau(saved: PlateauState | None, new: Plateau | None, peaks: list[float],
                   notes: list[str]) -> PlateauState | None:
    """The plateau state to continue with when the spec may have changed."""
    if new is None:
        if saved is not None and not all(f == 1.0 for f in saved.factors):
            notes.append(f"the saved plateau factors {saved.factors} are dropped")
        return None
    state = _plateau_state(new, peaks)
    if saved is None:
        return state
    if saved.plateau.mode != new.mode:
        notes.append(f"the plateau mode changed ({saved.plateau.mode} -> {new.mode}), so it "
                     "starts afresh")
        return state
    state.factors = [max(f, floor / peak if peak > 0 else 0.0)
                     for f, floor, peak in zip(saved.factors, new.floors(state.peaks), peaks)]
    state.best, state.num_bad, state.reports = saved.best, saved.num_bad, saved.reports
    state.cooldown_counter = min(saved.cooldown_counter, new.cooldown)
    return state


class Scheduler(LRScheduler):
    """Drive every param group's LR from one schedule (spec string or Schedule object).

    Args:
        optimizer: any torch optimizer with at least one param group; each group's current
            ``lr`` (or ``initial_lr`` when already set) is its peak LR, so per-layer LRs stay
            in proportion. Float and tensor LRs are both supported (tensors are filled in
            place).
        schedule: a spec such as ``"warmup(5%) >> cosine(end=0.01)"`` or a Schedule.
        total_steps: total optimizer updates of training (needed by ``%`` durations and by a
            last phase such as ``cosine()`` that runs to the end).
        steps_per_epoch: updates per epoch (needed by ``Nep`` durations, by ``epochs`` with
            ``per="step"`` and by ``warmup(auto)`` with ``per="epoch"``).
        per: ``"step"`` (call ``step()`` after every update) or ``"epoch"`` (once per epoch).
        epochs: the number of epochs of training (see "Length of training" in the module
            docstring: honoured with either ``per``).
        beta2: β2 for ``warmup(auto)``; read from the optimizer's ``betas`` when not given.
        last_epoch: must stay -1. Torch uses it to resume; here resuming is
            ``load_state_dict`` (which also restores the plateau and checks the settings).

    Raises:
        SpecError / LrlabError: a malformed spec, a missing unit, a bad length or peak LR, a
        schedule that makes an LR inf or NaN within training, an unsupported argument.

    A schedule with ``* plateau(...)`` needs a metric: :meth:`report` (or ``step(metric)``,
    or the callbacks of :mod:`lrlab.integrations`). If none arrives within a whole epoch of
    steps a :class:`PlateauNotReportedWarning` is given once (see :meth:`report`).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        schedule: str | Schedule,
        total_steps: int | None = None,
        steps_per_epoch: int | None = None,
        per: Literal["step", "epoch"] = "step",
        epochs: int | None = None,
        beta2: float | None = None,
        last_epoch: int = -1,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise LrlabError(f"optimizer must be a torch.optim.Optimizer, got "
                             f"{type(optimizer).__name__}")
        if not optimizer.param_groups:
            raise LrlabError("the optimizer has no param groups: there is no LR to schedule")
        if isinstance(last_epoch, bool) or last_epoch != -1:
            raise LrlabError(
                f"last_epoch={last_epoch!r}: lrlab.Scheduler resumes with "
                "load_state_dict(state) or Scheduler.from_state_dict(optimizer, state), which "
                "also restore the plateau; leave last_epoch at -1"
            )
        if not isinstance(per, str) or per not in ("step", "epoch"):
            raise LrlabError(f"per must be 'step' or 'epoch', got {per!r}")
        self.schedule = _as_schedule(schedule)
        self.per = per
        self.total_steps = _positive_int("total_steps", total_steps)
        self.steps_per_epoch = _positive_int("steps_per_epoch", steps_per_epoch)
        self.epochs = _positive_int("epochs", epochs)
        self._length = _training_length(per, self.total_steps, self.steps_per_epoch, self.epochs)
        self.beta2 = beta2 if beta2 is not None else optimizer_beta2(optimizer)
        self._bind_peaks(optimizer)
        plateau = self.schedule.plateau
        self.plateau_state = _plateau_state(plateau, self._peaks) if plateau is not None \
            else None
        self._notice: str | None = None
        self._watch = self._report_deadline()
        self._make_step_eager(optimizer)
        super().__init__(optimizer, last_epoch)

    @classmethod
    def from_state_dict(cls, optimizer: Optimizer, state: Mapping[str, Any]) -> Scheduler:
        """A Scheduler rebuilt entirely from ``state`` (spec, lengths, peaks, count, plateau).

        The optimizer's groups get the saved peak LRs as ``initial_lr``. Use it where the
        code that built the original Scheduler is not at hand; to continue a run with new
        settings, build the Scheduler with them and call :meth:`load_state_dict` instead.
        """
        if not isinstance(optimizer, Optimizer):
            raise LrlabError(f"optimizer must be a torch.optim.Optimizer, got "
                             f"{type(optimizer).__name__}")
        saved = _read_state(state, len(optimizer.param_groups))
        kept = [group.get("initial_lr") for group in optimizer.param_groups]
        kept = [v.clone() if isinstance(v, torch.Tensor) else v for v in kept]
        try:
            for group, peak in zip(optimizer.param_groups, saved.peaks):
                _set_initial_lr(group, peak)
            sched = cls(optimizer, saved.schedule, total_steps=saved.total_steps,
                        steps_per_epoch=saved.steps_per_epoch, per=saved.per,  # type: ignore[arg-type]
                        epochs=saved.epochs, beta2=saved.beta2)
        except BaseException:
            for group, value in zip(optimizer.param_groups, kept):
                if value is None:
                    group.pop("initial_lr", None)
                else:
                    group["initial_lr"] = value
            raise
        sched.load_state_dict(state)
        return sched

    # -- binding -------------------------------------------------------------------------
    def _context(self, peak: float) -> Context:
        if self.per == "epoch":
            return Context(total_steps=self._length, steps_per_epoch=1, beta2=self.beta2,
                           peak_lr=peak, updates_per_step=self.steps_per_epoch)
        return Context(total_steps=self._length, steps_per_epoch=self.steps_per_epoch,
                       beta2=self.beta2, peak_lr=peak)

    def _bind_peaks(self, optimizer: Optimizer) -> None:
        """Resolve the schedule once per distinct peak LR (absolute end_lr= differ by peak)
        and refuse a schedule whose LR becomes inf or NaN within training."""
        peaks: list[float] = []
        for i, group in enumerate(optimizer.param_groups):
            try:
                peak = as_float(group.get("initial_lr", group["lr"]))
            except (KeyError, TypeError, ValueError, RuntimeError):
                raise LrlabError(f"param group {i} has no usable lr: {group.get('lr')!r}"[:200]) \
                    from None
            if not math.isfinite(peak) or peak < 0:
                raise LrlabError(f"param group {i} has peak lr {peak}; it must be finite and >= 0")
            peaks.append(peak)
        resolved: dict[float, Schedule] = {}
        for i, peak in enumerate(peaks):
            if peak in resolved:
                continue
            bound = resolved[peak] = self.schedule.resolve(self._context(peak))
            t = bound.first_nonfinite(self._length, scale=peak)
            if t is not None:
                unit = "epoch" if self.per == "epoch" else "update"
                end = (f"training ends at {unit} {self._length}" if self._length is not None
                       else "no training length was given, so it never ends")
                raise LrlabError(
                    f"schedule {str(self.schedule)!r} makes the LR of param group {i} "
                    f"(peak {peak:g}) {peak * bound(t)} at {unit} {t} and {end}: shorten it "
                    "or give a length that stops it earlier"
                )
        self._peaks = peaks
        self._max_peak = max(peaks)
        self._resolved = resolved
        self._make_shared()

    def _make_step_eager(self, optimizer: Optimizer) -> None:
        """With a tensor LR (the torch.compile set-up), ``step()`` inside a compiled region
        calls this copy of ``_step_any`` that torch.compile does not trace: the LR floats it
        computes are never baked into a graph as constants, which would recompile the graph
        for every new LR. Float LRs do not need it (dynamo makes a changing float LR dynamic
        after one recompile), so they skip it and the import of torch._dynamo it costs."""
        tensor_lr = any(isinstance(g["lr"], _Tensor) for g in optimizer.param_groups)
        self._step_eager = torch.compiler.disable(
            self._step_any, reason="lrlab.Scheduler computes LRs in Python, outside the graph"
        ) if tensor_lr else None

    def _make_shared(self) -> None:
        # Without absolute values (end_lr=...) every peak resolves to the same multipliers:
        # then one evaluation per step serves all groups.
        distinct = set(self._resolved.values())
        self._shared = next(iter(distinct)).evaluator() if len(distinct) == 1 else None

    # -- the closed form -----------------------------------------------------------------
    def multiplier(self, t: int, group: int = 0) -> float:
        """The multiplier of ``group``'s peak for update (or epoch) ``t``, plateau included."""
        m = self._resolved[self._peaks[group]](t)
        if self.plateau_state is not None:
            m *= self.plateau_state.factors[group]
        return m

    def bound(self, group: int = 0) -> Schedule:
        """The schedule as resolved for ``group`` (every duration in updates or epochs)."""
        return self._resolved[self._peaks[group]]

    def lr_at(self, t: int) -> list[float]:
        """LR of every param group for update (or epoch) ``t``, without changing any state."""
        return [peak * self.multiplier(t, i) for i, peak in enumerate(self._peaks)]

    def get_lr(self) -> list[float]:  # torch API
        return self.lr_at(max(self.last_epoch, 0))

    def get_last_lr(self) -> list[float | torch.Tensor]:  # torch API
        """The LRs set by the last step, one per group, typed like each group's ``lr``: a
        float, or for a tensor LR a copy of the tensor (as torch's own schedulers return)."""
        return self._last_lr

    def _apply(self) -> None:
        """Set every group's LR for the current count (the hot path: kept lean)."""
        t = self.last_epoch if self.last_epoch > 0 else 0
        shared = self._shared
        plateau = self.plateau_state
        if shared is None or (plateau is not None and not plateau.uniform):
            lrs = self.lr_at(t)
            for lr in lrs:
                if not lr < _INF:
                    self._refuse_nonfinite(t, lrs)
        else:
            m = shared(t)
            if plateau is not None:
                m *= plateau.factors[0]
            peaks = self._peaks
            if len(peaks) == 1:  # the common case, without the loop
                lr = peaks[0] * m
                if not lr < _INF:  # inf or NaN: never handed to the optimizer
                    self._refuse_nonfinite(t, [lr])
                group = self.optimizer.param_groups[0]
                current = group["lr"]
                if isinstance(current, _Tensor):
                    current.fill_(lr)
                    self._last_lr = [current.clone()]
                else:
                    group["lr"] = lr
                    self._last_lr = [lr]
                return
            if not self._max_peak * m < _INF:
                self._refuse_nonfinite(t, [peak * m for peak in peaks])
            lrs = [peak * m for peak in peaks]
        groups = self.optimizer.param_groups
        tensors = False
        for group, lr in zip(groups, lrs):
            current = group["lr"]
            if isinstance(current, _Tensor):
                current.fill_(lr)  # in place: no torch.compile recompiles
                tensors = True
            else:
                group["lr"] = lr
        self._last_lr = lrs if not tensors else [
            g["lr"].clone() if isinstance(g["lr"], _Tensor) else g["lr"] for g in groups]

    def _refuse_nonfinite(self, t: int, lrs: list[float]) -> None:
        unit = "epoch" if self.per == "epoch" else "update"
        raise LrlabError(f"schedule {str(self.schedule)!r} gives LRs {lrs} at {unit} {t}; "
                         "an LR must be finite")

    def step(self, epoch: Any = None) -> None:
        """Advance one update (or one epoch with ``per="epoch"``) and set the LRs.

        ``epoch``: leave it out. When given, it is a metric on a schedule with a plateau
        (reported, then the count advances by one: Lightning's ``reduce_on_plateau`` path)
        and torch's deprecated epoch index otherwise (a whole number >= 0); anything else
        is refused (module docstring, "step(x) with an argument").
        """
        if epoch is not None or self._step_eager is not None:
            if self._step_eager is not None and _is_compiling():
                self._step_eager(epoch)  # a graph break: runs outside any compiled graph
            else:
                self._step_any(epoch)
            return
        self._step_count += 1
        self.last_epoch += 1
        if self._watch is not None and self.last_epoch > self._watch:
            self._on_watch()
        self._apply()

    def _step_any(self, arg: Any) -> None:
        """``step(arg)`` in full: validate, then report / set the epoch, then apply."""
        metric = epoch = None
        if arg is not None:
            if self.plateau_state is not None:
                metric = _metric(arg)
            elif isinstance(arg, numbers.Integral) and not isinstance(arg, bool):
                if arg < 0:
                    raise LrlabError(f"epoch must be >= 0, got {arg}")
                epoch = int(arg)
            else:
                raise LrlabError(
                    f"step({arg!r}): schedule {str(self.schedule)!r} has no plateau(...), so "
                    "the argument can only be an epoch index (a whole number >= 0); to use "
                    "a metric (e.g. Lightning's reduce_on_plateau) append '* plateau(...)'"[:300]
                )
        if metric is not None:
            assert self.plateau_state is not None
            self.plateau_state.report(metric)
            self._watch = self._report_deadline()
        self._step_count += 1
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self._watch is not None and self.last_epoch > self._watch:
            self._on_watch()
        self._apply()

    # -- plateau -------------------------------------------------------------------------
    def report(self, metric: float | torch.Tensor) -> None:
        """Feed a validation metric to the schedule's ``plateau(...)`` multiplier.

        Call it once per validation (usually per epoch); the factor changes at once, so the
        next update uses the new LR. ``metric``: a real number or a one-element tensor; NaN
        and inf are refused (a diverged run), unlike torch's ReduceLROnPlateau which counts
        them as bad epochs.

        If a plateau schedule gets no report for a whole epoch of steps, a
        :class:`PlateauNotReportedWarning` is given once: at the first ``step()`` after
        ``steps_per_epoch`` updates (``per="step"``), after the second epoch's step
        (``per="epoch"``), or, when the epoch length is unknown, after half of
        ``total_steps`` (a plateau that waits longer has at most the second half of
        training to act); with no length known at all there is no warning.
        """
        if self.plateau_state is None:
            raise LrlabError(
                f"schedule {str(self.schedule)!r} has no plateau(...); "
                "append '* plateau(factor=0.1, patience=10)' to use report()"
            )
        self.plateau_state.report(_metric(metric))
        self._watch = self._report_deadline()
        self._apply()

    def _report_deadline(self) -> int | None:
        """The count after which ``step()`` calls :meth:`_on_watch`: at once when a notice of
        ``load_state_dict`` is pending, else when a plateau never reported to is overdue."""
        if self._notice is not None:
            return -1
        state = self.plateau_state
        if state is None or state.reports > 0:
            return None
        if self.per == "epoch":
            return 1
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        if self._length is not None:
            return max(1, self._length // 2)
        return None

    def _on_watch(self) -> None:
        """The rare checks of ``step()``: a pending notice, an overdue plateau report."""
        notice, self._notice = self._notice, None
        if notice is not None:
            warnings.warn(ScheduleChangedWarning(notice), stacklevel=3)
        self._watch = self._report_deadline()
        if self._watch is not None and self.last_epoch > self._watch:
            self._watch = None
            self._warn_unreported()

    def _warn_unreported(self) -> None:
        unit = "epochs" if self.per == "epoch" else "updates"
        warnings.warn(PlateauNotReportedWarning(
            f"schedule {str(self.schedule)!r} has a plateau(...) but no metric was reported "
            f"in {self.last_epoch} {unit}, so the plateau does nothing: call "
            "scheduler.report(val_loss) after each validation (Lightning: LightningPlateau or "
            "reduce_on_plateau; HF Trainer: HFPlateau, both in lrlab.integrations)"
        ), stacklevel=4)

    # -- state -----------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Updates (or epochs) taken so far: the index of the next one."""
        return max(self.last_epoch, 0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "spec": str(self.schedule),
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "per": self.per,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "epochs": self.epochs,
            "beta2": self.beta2,
            "base_lrs": list(self._peaks),
            "plateau": None if self.plateau_state is None else self.plateau_state.state_dict(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the count and the plateau state, and set the LRs of that count.

        Everything is validated before anything is assigned: a bad state raises LrlabError
        and leaves this Scheduler as it was. Settings that differ from this Scheduler's
        (spec, training length, steps_per_epoch, β2, peak LRs) are not taken from the state:
        this Scheduler's are kept and a :class:`ScheduleChangedWarning` naming both is given
        at the next ``step()`` (not here: the HF Trainer silences warnings while it loads a
        scheduler); that is how a run is extended (module docstring). The plateau's running
        state (factor, best metric, counters) is carried over when the new spec still has a
        plateau of the same mode. A different ``per`` is refused.
        """
        saved = _read_state(state_dict, len(self.optimizer.param_groups))
        if saved.per != self.per:
            raise LrlabError(
                f"the state counts {saved.per}s (per={saved.per!r}), this Scheduler counts "
                f"{self.per}s (per={self.per!r}); build it with per={saved.per!r}"
            )
        notes: list[str] = []
        unit = "epoch" if self.per == "epoch" else "update"
        spec = str(self.schedule)
        if str(saved.schedule) != spec:
            notes.append(f"spec {str(saved.schedule)!r} -> {spec!r}")
        if saved.length != self._length or saved.steps_per_epoch != self.steps_per_epoch:
            for name in ("total_steps", "epochs", "steps_per_epoch"):
                if getattr(saved, name) != getattr(self, name):
                    notes.append(f"{name} {getattr(saved, name)} -> {getattr(self, name)}")
        if saved.beta2 is not None and self.beta2 is not None and saved.beta2 != self.beta2:
            notes.append(f"beta2 {saved.beta2} -> {self.beta2}")
        if any(not math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
               for a, b in zip(saved.peaks, self._peaks)):
            notes.append(f"peak LRs {saved.peaks} -> {self._peaks}")
        if str(saved.schedule) == spec:
            plateau = saved.plateau
        else:
            plateau = _carry_plateau(saved.plateau, self.schedule.plateau, self._peaks, notes)
        # -- assign (nothing above changed this Scheduler) --
        for group, peak in zip(self.optimizer.param_groups, self._peaks):
            _set_initial_lr(group, peak)
        self.base_lrs = list(self._peaks)
        self.plateau_state = plateau
        self.last_epoch = saved.last_epoch
        self._step_count = saved.step_count
        self._notice = None if not notes else (
            "the saved scheduler state has other settings than this Scheduler; kept this "
            f"Scheduler's and continued at {unit} {self.count}: " + "; ".join(notes))
        self._watch = self._report_deadline()
        self._apply()

    # -- pickling: the fast evaluator and the eager step are closures, rebuilt on load ----
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_shared", None)
        state.pop("_step_eager", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._make_shared()
        self._make_step_eager(self.optimizer)

    def __repr__(self) -> str:
        return f"Scheduler({str(self.schedule)!r}, per={self.per!r}, count={self.count})"


