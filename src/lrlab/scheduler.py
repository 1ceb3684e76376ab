"""The torch adapter: a ``torch.optim.lr_scheduler.LRScheduler`` driven by an lrlab schedule.

The LR of each param group is computed in closed form from the update count,
``lr_i = peak_i * m(t) * plateau_factor``, so resuming at update 10**6 costs the same as at 0
and never drifts. ``state_dict()`` holds the spec string and the count (plain data, picklable).

Stepping convention (the same as torch's): create the scheduler after the optimizer (this
sets the LR of update 0), then call ``optimizer.step()`` followed by ``scheduler.step()``
once per update (``per="step"``, the default) or once per epoch (``per="epoch"``).

In ``per="epoch"`` mode the schedule's time unit is the epoch: ``5`` and ``5ep`` both mean
five epochs and ``total_steps`` is the number of epochs (``epochs=``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrlab.errors import LrlabError
from lrlab.schedules import Context, PlateauState, Schedule, parse

__all__ = ["Scheduler", "optimizer_beta2"]


def optimizer_beta2(optimizer: Optimizer) -> float | None:
    """The second-moment decay β2 of an Adam-like optimizer (or Lion's β2), else None."""
    group = optimizer.param_groups[0]
    betas = group.get("betas")
    if betas is not None and len(betas) >= 2:
        return float(betas[1])
    return None


def _as_float(value: float | torch.Tensor) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value)


class Scheduler(LRScheduler):
    """Drive every param group's LR from one schedule (spec string or Schedule object).

    Args:
        optimizer: any torch optimizer; each group's current ``lr`` (or ``initial_lr`` when
            already set) is its peak LR, so per-layer LRs stay in proportion.
        schedule: a spec such as ``"warmup(5%) >> cosine(end=0.01)"`` or a Schedule.
        total_steps: total optimizer updates of training (needed by ``%`` durations and by a
            last phase such as ``cosine()`` that runs to the end).
        steps_per_epoch: updates per epoch (needed by ``Nep`` durations).
        per: ``"step"`` (call ``step()`` after every update) or ``"epoch"`` (once per epoch).
        epochs: with ``per="epoch"``, the number of epochs of training.
        beta2: β2 for ``warmup(auto)``; read from the optimizer's ``betas`` when not given.
        last_epoch: torch's resume argument; prefer ``load_state_dict``.

    Raises:
        SpecError / LrlabError: a malformed spec, a missing unit, a bad length or peak LR.
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
        if per not in ("step", "epoch"):
            raise LrlabError(f"per must be 'step' or 'epoch', got {per!r}")
        for name, value in (("total_steps", total_steps), ("steps_per_epoch", steps_per_epoch),
                            ("epochs", epochs)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise LrlabError(f"{name} must be a positive integer, got {value!r}")
        self.schedule = parse(schedule) if isinstance(schedule, str) else schedule
        self.per = per
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.beta2 = beta2 if beta2 is not None else optimizer_beta2(optimizer)
        plateau = self.schedule.plateau
        self.plateau_state = PlateauState(plateau) if plateau is not None else None
        self._bind_peaks(optimizer)
        super().__init__(optimizer, last_epoch)

    # -- binding -------------------------------------------------------------------------
    def _context(self, peak: float) -> Context:
        if self.per == "epoch":
            total = self.epochs
            if total is None and self.total_steps is not None and self.steps_per_epoch:
                total = math.ceil(self.total_steps / self.steps_per_epoch)
            return Context(total_steps=total, steps_per_epoch=1, beta2=self.beta2, peak_lr=peak)
        return Context(total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                       beta2=self.beta2, peak_lr=peak)

    def _bind_peaks(self, optimizer: Optimizer) -> None:
        """Resolve the schedule once per distinct peak LR (absolute end_lr= differ by peak)."""
        self._peaks: list[float] = []
        for i, group in enumerate(optimizer.param_groups):
            peak = _as_float(group.get("initial_lr", group["lr"]))
            if not math.isfinite(peak) or peak < 0:
                raise LrlabError(f"param group {i} has peak lr {peak}; it must be finite and >= 0")
            self._peaks.append(peak)
        self._resolved: dict[float, Schedule] = {}
        for peak in self._peaks:
            if peak not in self._resolved:
                self._resolved[peak] = self.schedule.resolve(self._context(peak))
        # Without absolute values (end_lr=...) every peak resolves to the same multipliers:
        # then one evaluation per step serves all groups.
        distinct = set(self._resolved.values())
        self._shared = next(iter(distinct)).evaluator() if len(distinct) == 1 else None

    # -- the closed form -----------------------------------------------------------------
    def multiplier(self, t: int, group: int = 0) -> float:
        """The multiplier of ``group``'s peak for update (or epoch) ``t``, plateau included."""
        m = self._resolved[self._peaks[group]](t)
        if self.plateau_state is not None:
            m *= self.plateau_state.factor
        return m

    def bound(self, group: int = 0) -> Schedule:
        """The schedule as resolved for ``group`` (every duration in updates or epochs)."""
        return self._resolved[self._peaks[group]]

    def lr_at(self, t: int) -> list[float]:
        """LR of every param group for update (or epoch) ``t``, without changing any state."""
        return [peak * self.multiplier(t, i) for i, peak in enumerate(self._peaks)]

    def get_lr(self) -> list[float]:  # torch API
        return self.lr_at(max(self.last_epoch, 0))

    def _apply(self) -> None:
        """Set every group's LR for the current count (the hot path: kept lean)."""
        t = self.last_epoch if self.last_epoch > 0 else 0
        shared = self._shared
        if shared is None:
            lrs = self.lr_at(t)
        else:
            m = shared(t)
            plateau = self.plateau_state
            if plateau is not None:
                m *= plateau.factor
            peaks = self._peaks
            if len(peaks) == 1:  # the common case, without the loop
                lr = peaks[0] * m
                group = self.optimizer.param_groups[0]
                current = group["lr"]
                if isinstance(current, torch.Tensor):
                    current.fill_(lr)
                else:
                    group["lr"] = lr
                self._last_lr = [lr]
                return
            lrs = [peak * m for peak in peaks]
        Tensor = torch.Tensor
        for group, lr in zip(self.optimizer.param_groups, lrs):
            current = group["lr"]
            if isinstance(current, Tensor):
                current.fill_(lr)  # in place: no torch.compile recompiles
            else:
                group["lr"] = lr
        self._last_lr = lrs

    def step(self, epoch: int | None = None) -> None:
        """Advance one update (or one epoch with ``per="epoch"``) and set the LRs."""
        self._step_count += 1
        if epoch is None:
            self.last_epoch += 1
        else:
            if epoch < 0:
                raise LrlabError(f"epoch must be >= 0, got {epoch}")
            self.last_epoch = int(epoch)
        self._apply()

    # -- plateau -------------------------------------------------------------------------
    def report(self, metric: float) -> None:
        """Feed a validation metric to the schedule's ``plateau(...)`` multiplier."""
        if self.plateau_state is None:
            raise LrlabError(
                f"schedule {str(self.schedule)!r} has no plateau(...); "
                "append '* plateau(factor=0.1, patience=10)' to use report()"
            )
        self.plateau_state.report(float(metric))
        self._apply()

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

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the spec, the count and the plateau state, and set the LRs of that count."""
        try:
            self.schedule = parse(state_dict["spec"])
            self.per = state_dict["per"]
            self.total_steps = state_dict["total_steps"]
            self.steps_per_epoch = state_dict["steps_per_epoch"]
            self.epochs = state_dict.get("epochs")
            self.beta2 = state_dict.get("beta2")
            last_epoch = int(state_dict["last_epoch"])
            step_count = int(state_dict.get("_step_count", last_epoch + 1))
            peaks = [float(p) for p in state_dict["base_lrs"]]
            plateau_sd = state_dict.get("plateau")
        except (KeyError, TypeError, ValueError) as exc:
            raise LrlabError(f"not an lrlab Scheduler state: {exc}") from None
        if len(peaks) != len(self.optimizer.param_groups):
            raise LrlabError(
                f"state has {len(peaks)} param groups, the optimizer has "
                f"{len(self.optimizer.param_groups)}"
            )
        for group, peak in zip(self.optimizer.param_groups, peaks):
            group["initial_lr"] = peak
        self.base_lrs = list(peaks)
        self._bind_peaks(self.optimizer)
        plateau = self.schedule.plateau
        self.plateau_state = PlateauState(plateau) if plateau is not None else None
        if self.plateau_state is not None and plateau_sd is not None:
            self.plateau_state.load_state_dict(plateau_sd)
        self.last_epoch = last_epoch
        self._step_count = step_count
        self._apply()

    def __repr__(self) -> str:
        return f"Scheduler({str(self.schedule)!r}, per={self.per!r}, count={self.count})"
