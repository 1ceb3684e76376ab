"""One run's bookkeeping, whatever loop trains it: :class:`RunSession`.

A run is trained by one of two loops: the one-run loop (``lrlab.lab.train.trainer``), or
the stacked loop that trains K runs at once (``lrlab.lab.train.vectorised``), which keeps
one session per member. The loops only step; everything a run's records say comes from its
session, so both loops write the same run directory and either can resume the other's runs.
A loop calls, in order:

- :meth:`RunSession.prepare`: the run directory (made, locked, never another tool's), the
  checks of a resume (same config; ``--epochs`` may grow a run), the run built by
  ``build_run`` (model, optimizer, ``Scheduler``), ``config.json``;
- :meth:`RunSession.start`: the checkpoint restored (or a fresh start); returns where to
  go on from;
- per epoch :meth:`RunSession.begin_epoch` (the epoch's sample order), per update (after
  the optimizer's step) :meth:`RunSession.after_update`, then
  :meth:`RunSession.close_epoch`: the epoch's row, evaluation, the health checks
  (``lrlab.lab.train.health``), ``metrics.jsonl``, the events, the per-epoch schedule step
  and the checkpoint;
- :meth:`RunSession.finish` at the end (or at a divergence), :meth:`RunSession.interrupt`
  on Ctrl-C/SIGTERM (:class:`StopFlag`): a checkpoint where the run is, to ``--resume``;
- :meth:`RunSession.settle` after an exception, so the records say what happened.

Epoch order: epoch ``e`` draws a permutation of the training set from a generator seeded
with ``(seed, e)`` (:func:`epoch_permutation`), so any epoch's order is known without
replaying earlier ones: a resumed run (even one resumed mid-epoch after Ctrl-C) sees exactly
the batches of an uninterrupted one.

Rows: losses are means over the counted targets and accuracies correct / counted targets
(:mod:`lrlab.lab.data.targets`); ``seen`` and ``examples_per_s`` count examples (sequences).
A dataset whose loss is in characters (``chars``) also records ``train_bpc``/``val_bpc``/
``test_bpc`` = loss / ln 2 (bits per character) in each row and ``final_val_bpc``/
``final_test_bpc`` in the summary. When the dataset has a validation split (``val_size``,
see ``lrlab.lab.data.datasets``) every epoch records ``val_loss``/``val_acc``;
``plateau(...)`` schedules are fed the validation loss (the training loss without one).

Reproducibility: ``config.json`` records the run's environment (torch version, threads,
device, deterministic flags: ``lrlab.lab.train.device.run_environment``); a resume on a
different environment is recorded as an event, since the numbers may then differ in the last
bits.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lrlab.errors import LrlabError
from lrlab.lab.data.targets import LN2, at_least_float32, counted, mean_loss, sum_loss
from lrlab.lab.data.targets import correct as n_correct
from lrlab.lab.records import FINISHED, Divergence, RunRecords, write_json_atomic
from lrlab.lab.train import health as rules
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.device import autocast, run_environment
from lrlab.lab.train.distributed import DistContext
from lrlab.lab.train.health import EXPLODE_FACTOR, Health
from lrlab.optim.modes import eval_mode, has_modes, train_mode
from lrlab.rng import capture_rng_state, restore_rng_state
from lrlab.scheduler import Scheduler, optimizer_beta2

__all__ = ["RunSession", "RunResult", "EpochSums", "StopFlag", "epoch_permutation", "evaluate",
           "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 2


@dataclass
class RunResult:
    """What training a run came to: its directory, status (ok / diverged / not-learning /
    pruned / interrupted) and ``summary.json``."""

    path: Path
    status: str
    summary: dict[str, Any]
    main: bool = True  # False on a data-parallel rank other than 0, which writes no records


@dataclass
class EpochSums:
    """What an epoch accumulates, update by update (all ranks together).

    ``seen_untimed`` counts the examples of this epoch trained before a resume: they are in
    the epoch's loss and accuracy but not in its throughput (their time was not measured in
    this process). ``targets`` counts the targets the loss and accuracy are over (= ``seen``
    for one class per example; see :mod:`lrlab.lab.data.targets`).
    """

    loss: float = 0.0  # sum of per-target losses
    correct: float = 0.0
    seen: float = 0.0
    grad_norm: float = 0.0  # sum over updates
    updates: int = 0
    seen_untimed: float = 0.0
    targets: float = 0.0

    def add(self, loss: float, correct: float, seen: float, targets: float,
            grad_norm: float) -> None:
        """Book one update: its mean loss, correct count, examples, targets, gradient norm."""
        self.loss += loss * targets
        self.correct += correct
        self.seen += seen
        self.targets += targets
        self.grad_norm += grad_norm
        self.updates += 1

    @classmethod
    def from_checkpoint(cls, ck: dict[str, Any]) -> EpochSums:
        """The sums a checkpoint holds (of any version), all of them untimed here."""
        if "sums" in ck:
            sums = cls(**{k: v for k, v in ck["sums"].items() if k in cls.__dataclass_fields__})
            if "targets" not in ck["sums"]:  # written before sequences: one target each
                sums.targets = sums.seen
        else:  # version 1: a float64 tensor [loss sum, correct, seen, gnorm sum, updates]
            loss, correct, seen, gnorm, updates = ck["accum"].tolist()
            sums = cls(loss, correct, seen, gnorm, int(updates), targets=seen)
        sums.seen_untimed = sums.seen
        return sums


class StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM sets ``stop``, which a loop checks between updates: the
    run checkpoints where it is and stops (:meth:`RunSession.interrupt`); a second signal
    interrupts at once (KeyboardInterrupt). A context manager; outside the main thread it
    installs no handlers (``stop`` stays False)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of ``epoch``: a function of (seed, epoch) only."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7_919 + 17)
    return torch.randperm(n, generator=gen)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int,
             amp: torch.dtype | None, dist: DistContext | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over the counted targets of (x, y) (this rank's share
    when distributed); see :mod:`lrlab.lab.data.targets`."""
    dist = dist or DistContext()
    was_training = model.training
    model.eval()
    idx = torch.arange(len(x))
    if dist.world_size > 1:
        idx = torch.tensor_split(idx, dist.world_size)[dist.rank]
    total = torch.zeros(3, dtype=torch.float64, device=x.device)
    with torch.no_grad(), autocast(x.device, amp):
        for s in range(0, len(idx), batch):
            sel = idx[s:s + batch]
            out = at_least_float32(model(x[sel]))
            yy = y[sel]
            total[0] += sum_loss(out, yy).double()
            total[1] += n_correct(out, yy)
            total[2] += counted(yy)
    dist.all_reduce_sum(total)
    model.train(was_training)
    n = max(total[2].item(), 1.0)
    return total[0].item() / n, total[1].item() / n


class RunSession:
    """The bookkeeping of one run: set-up, resume, the epoch's books, records, checkpoints,
    interrupts and the health rules. A loop drives it (see the module docstring).

    After :meth:`prepare`: ``parts`` (``build_run``'s ``RunParts``), ``device``, ``amp``,
    ``data``, ``model``, ``params`` (the trainable parameters), ``train_model`` (the model
    the loop calls: wrapped for DDP or ``compile``), ``optimizer``, ``scheduler``, ``lr``,
    ``world``, ``global_batch``, ``updates_per_epoch``, ``total_updates``. After
    :meth:`start`: ``sums`` (the current epoch's :class:`EpochSums`), ``health``, ``rows``
    (the epochs recorded, on the main rank), ``elapsed`` (seconds trained, across resumes).
    A loop that measures the update ratio (``--update-ratio``) sets ``ratios`` to the
    epoch's last update's, for its row.
    """

    def __init__(self, config: TrainConfig, *, resume: bool = False,
                 dist: DistContext | None = None, echo: bool = False,
                 lock_wait: float = 0.0) -> None:
        """``resume``: continue the run if its directory holds one (else refuse it);
        ``echo``: print a line per epoch (on the main rank, unless ``config.quiet``);
        ``lock_wait``: seconds to wait for another process's lock on the directory."""
        self.config = config
        self.lock_wait = lock_wait
        self.made_dirs: list[Path] = []  # the run directory and any --out parents made here
        self.dist = dist = dist or DistContext()
        self.records = RunRecords(config.run_dir())
        self.resume = resume
        self.echo = echo and dist.is_main and not config.quiet
        self.extended_from: int | None = None  # epochs of the run before --epochs grew it
        self.ratios: dict[str, float] | None = None

    # -- set-up --------------------------------------------------------------------------
    def prepare(self) -> RunResult | None:
        """Make and lock the run directory, check a resume, build the run and write its
        ``config.json``. Returns the result of a run that already finished (nothing to
        train), else None. Raises LrlabError for a directory it must not train into."""
        if self.dist.is_main:  # one writer per run directory; never another tool's
            self.records.check_ours()
            missing = self.records.path
            while not missing.exists() and missing != missing.parent:
                self.made_dirs.append(missing)
                missing = missing.parent
            self.records.path.mkdir(parents=True, exist_ok=True)
            self.records.lock.acquire(wait=self.lock_wait)
        existing = self.records.exists()
        self.checkpoint: dict[str, Any] | None = None
        if existing:
            done = self._check_existing()
            if done is not None:
                return done
            self.checkpoint = self.records.load_checkpoint()
        self._build()
        if self.dist.is_main and not existing:
            self._record_config()
        elif self.dist.is_main and self.extended_from is not None:
            self._record_extension()
        self.dist.barrier()
        return None

    def _check_existing(self) -> RunResult | None:
        """Refuse a second run into the same directory; accept a resume of the same run."""
        cfg = self.config
        stored = self.records.read_config()
        if not self.resume:
            raise LrlabError(f"run directory {self.records.path} already exists; use "
                             "--resume to continue it, or --name/--out for a new run")
        diff = [k for k in cfg.result_diff(stored) if k != "epochs"]  # epochs may grow
        if diff:
            raise LrlabError(f"cannot resume {self.records.path}: its config differs in "
                             f"{', '.join(diff)}")
        summary = self.records.summary() or {}
        status = summary.get("status")
        old_epochs = int(stored.get("epochs", cfg.epochs))
        if cfg.epochs != old_epochs:
            done = sum(1 for r in self.records.metrics() if not r.get("diverged"))
            if status in ("diverged", "not-learning"):
                raise LrlabError(f"cannot extend {self.records.path} to {cfg.epochs} epochs: it "
                                 f"ended {status}; start a new run")
            if cfg.epochs < done:
                raise LrlabError(f"cannot resume {self.records.path} with --epochs "
                                 f"{cfg.epochs}: it has already trained {done} epochs")
            self.extended_from = old_epochs
            return None
        if status in FINISHED:
            return RunResult(self.records.path, status, summary, self.dist.is_main)
        return None

    def _build(self) -> None:
        from lrlab.lab.train.parts import build_run
        from lrlab.optim import scale_lr

        cfg = self.config
        parts = self.parts = build_run(cfg, self.dist.world_size)
        self.device, self.amp, self.data, self.model = (parts.device, parts.amp, parts.data,
                                                        parts.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.world, self.global_batch = parts.world_size, parts.global_batch
        self.updates_per_epoch, self.total_updates = parts.updates_per_epoch, parts.total_updates

        base_lr = self.lr_base = self._base_lr()
        lr = base_lr
        if cfg.scale_lr != "none":
            lr = scale_lr(base_lr, self.global_batch, cfg.ref_batch, rule=cfg.scale_lr)
        self.lr = lr
        self.optimizer = parts.make_optimizer(lr)
        self.scheduler = Scheduler(self.optimizer, cfg.schedule, total_steps=self.total_updates,
                                   steps_per_epoch=self.updates_per_epoch, per=cfg.per,
                                   epochs=cfg.epochs if cfg.per == "epoch" else None)
        self.train_model = self.model
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(self.model, device_ids=ids)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.environment = run_environment(self.device)

    def _record_config(self) -> None:
        cfg = self.config
        record = cfg.to_dict()
        record.update(model=cfg.resolved_model(), lr_used=self.lr, lr_base=self.lr_base,
                      beta2=optimizer_beta2(self.optimizer), world_size=self.world,
                      global_batch=self.global_batch, updates_per_epoch=self.updates_per_epoch,
                      total_updates=self.total_updates, warmup=self._warmup_description(),
                      n_train=self.data.n_train, n_val=self.data.n_val,
                      n_test=self.data.n_test, data_source=self.data.source,
                      preprocessing=self.data.preprocessing, device=str(self.device),
                      torch=torch.__version__, environment=self.environment)
        self.records.create(record)
        if getattr(self, "lr_finder_record", None) is not None:
            write_json_atomic(self.records.path / "lr_finder.json", self.lr_finder_record)
        self._warn_scaled_lr_without_warmup(self.lr_base, self.lr)
        self._note_schedule_free()

    def _record_extension(self) -> None:
        """--epochs grew a run: rewrite config.json and say what the schedule does now."""
        cfg = self.config
        old = self.extended_from
        assert old is not None
        stored = self.records.read_config()
        t = self._resume_count()
        before, after = self._schedule_lr(old, t), self._schedule_lr(cfg.epochs, t)
        stored.update(epochs=cfg.epochs, total_updates=self.total_updates,
                      extended_from_epochs=[*stored.get("extended_from_epochs", []), old])
        write_json_atomic(self.records.config_path, stored)
        msg = (f"extended from {old} to {cfg.epochs} epochs: the schedule {cfg.schedule!r} is "
               f"resolved again over {cfg.epochs} epochs, so the LR of the next update ({t}) "
               f"is {after:.4g} where the {old}-epoch run had {before:.4g}")
        self.records.event("extended", msg, from_epochs=old, to_epochs=cfg.epochs, update=t,
                           lr_before=before, lr_after=after)
        print(f"lrlab train: note: {msg}", file=sys.stderr)

    def _resume_count(self) -> int:
        ck = self.checkpoint or {}
        epoch, update = int(ck.get("epoch", 0)), int(ck.get("update", 0))
        return epoch * self.updates_per_epoch + update if self.config.per == "step" else epoch

    def _schedule_lr(self, epochs: int, t: int) -> float:
        """Group 0's LR at update (or epoch) ``t`` of this run's schedule resolved over
        ``epochs``, computed on a stand-in optimizer (the run's own is left untouched)."""
        cfg = self.config
        group = self.optimizer.param_groups[0]
        peak = float(group.get("initial_lr", group["lr"]))
        stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=peak)
        sched = Scheduler(stand_in, cfg.schedule, total_steps=self.updates_per_epoch * epochs,
                          steps_per_epoch=self.updates_per_epoch, per=cfg.per,
                          epochs=epochs if cfg.per == "epoch" else None,
                          beta2=optimizer_beta2(self.optimizer))
        return float(sched.lr_at(t)[0])

    def _base_lr(self) -> float:
        cfg = self.config
        if cfg.lr != "auto":
            return float(cfg.lr)
        if self.checkpoint is not None:
            return float(self.checkpoint["lr_base"])
        if self.records.exists():
            return float(self.records.read_config().get("lr_base"))
        from lrlab.lab.train.auto_lr import pick_lr

        lr, record = pick_lr(self.parts, self.dist)
        self.lr_finder_record = record
        return lr

    def _warmup_description(self) -> str | None:
        """The warmup this run uses, in updates, or None when it starts without one."""
        bound = self.scheduler.bound()
        if bound.phase_at(0) != "warmup":
            return None
        length = bound.phases[0].span  # the resolved warmup's own length
        unit = "epochs" if self.config.per == "epoch" else "updates"
        return f"{length} {unit}"

    def _warn_scaled_lr_without_warmup(self, base_lr: float, lr: float) -> None:
        if lr > base_lr * 2 and self._warmup_description() is None:
            msg = (f"the LR was scaled from {base_lr:g} to {lr:g} for a global batch of "
                   f"{self.global_batch} with no warmup; Goyal et al. (2017) warm up over 5 "
                   "epochs: add --schedule \"warmup(5ep) >> ...\"")
            self.records.event("warning", msg)
            print(f"lrlab train: warning: {msg}", file=sys.stderr)

    def _note_schedule_free(self) -> None:
        """A Schedule-Free optimizer needs no decaying schedule: say which one the run uses.

        lrlab's default ``constant()`` is what the method is meant for, and a ``warmup(T)``
        phase is the same as the optimizer's own ``warmup_steps=T`` (both scale the update
        ``k`` by ``(k+1)/T`` and the average's weights follow the largest LR so far). A
        schedule that lowers the LR after its peak is allowed (combining the two is an
        experiment one may want) with a warning, recorded as an event and on stderr."""
        if not has_modes(self.optimizer):
            return
        cfg = self.config
        n = self.total_updates if cfg.per == "step" else cfg.epochs
        ts = sorted({round(i * (n - 1) / 999) for i in range(1000)}) if n > 1000 else range(n)
        values = [float(self.scheduler.lr_at(t)[0]) for t in ts]
        peak_at = max(range(len(values)), key=values.__getitem__)
        decays = self.scheduler.plateau_state is not None or \
            min(values[peak_at:]) < values[peak_at] * (1 - 1e-9)
        if not decays:
            self.records.event("schedule", f"{cfg.optimizer} is schedule-free: the schedule "
                               f"{cfg.schedule!r} holds the LR after its peak (a warmup(T) "
                               "phase equals the optimizer's own warmup_steps=T)")
            return
        msg = (f"{cfg.optimizer} is schedule-free (Defazio et al. 2024): it averages its "
               f"iterates instead of decaying the LR, and the schedule {cfg.schedule!r} lowers "
               "the LR after its peak too; the method's own setting is constant() (lrlab's "
               "default), with warmup(T) >> constant() for a warmup")
        self.records.event("warning", msg)
        print(f"lrlab train: warning: {msg}", file=sys.stderr)

    # -- resume --------------------------------------------------------------------------
    def start(self) -> tuple[int, int]:
        """Restore the run from its checkpoint (or start it): the model, optimizer,
        scheduler, RNGs, the epoch's sums, health, rows and time; ``summary.json`` says
        ``running``. Returns the epoch and the update of that epoch to go on from."""
        dist = self.dist
        start_epoch, start_update, self.sums, self.elapsed, self.health = self._restore()
        self.rows: list[dict[str, Any]] = self.records.metrics() if dist.is_main else []
        if any(self._learned(r) for r in self.rows):
            self.health.learned = True
        self.flagged_not_learning = dist.is_main and any(
            e.get("kind") == "not-learning" for e in self.records.events())
        self.first_loss: float | None = self.checkpoint.get("first_loss") if self.checkpoint \
            else None
        self.write_summary("running", self.rows, self.elapsed)
        return start_epoch, start_update

    def _restore(self) -> tuple[int, int, EpochSums, float, Health]:
        """Load the checkpoint into the model, optimizer, scheduler and RNGs."""
        ck = self.checkpoint
        if ck is None:
            if self.records.exists() and self.dist.is_main:
                self.records.truncate_metrics(0)  # a run killed before its first checkpoint
            train_mode(self.optimizer)
            return 0, 0, EpochSums(), 0.0, Health()
        where = self.records.checkpoint_path
        try:
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            # a checkpoint holds a Schedule-Free run at its evaluation point x; train mode
            # moves it to y as the uninterrupted run did right after writing it, or, for a
            # checkpoint written mid-epoch, the y it was interrupted at is put back exactly
            train_mode(self.optimizer)
            if "model_train" in ck:
                self.model.load_state_dict(ck["model_train"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            first = " ".join(str(exc).split())[:200]
            raise LrlabError(f"{where}: does not fit this run's model/optimizer ({first})") \
                from None
        state = dict(ck["scheduler"])
        if self.extended_from is not None:  # the new length wins (see _record_extension)
            state.update(total_steps=self.total_updates,
                         epochs=self.config.epochs if self.config.per == "epoch" else None)
        self.scheduler.load_state_dict(state)
        restore_rng_state(ck["rng"])
        start_epoch, start_update = int(ck["epoch"]), int(ck["update"])
        health = Health(**ck["health"]) if isinstance(ck.get("health"), dict) else Health()
        if self.dist.is_main:
            self.records.truncate_metrics(start_epoch)
            self.records.event("resumed", f"resumed at epoch {start_epoch}, update "
                               f"{start_update} of the epoch", environment=self.environment)
            self._note_environment_change()
        return start_epoch, start_update, EpochSums.from_checkpoint(ck), \
            float(ck["elapsed"]), health

    def _note_environment_change(self) -> None:
        stored = (self.records.read_config().get("environment") or {})
        changed = [f"{k} {stored.get(k)!r} -> {v!r}" for k, v in self.environment.items()
                   if k in stored and stored[k] != v]
        if changed:
            self.records.event("environment-changed", "resumed in a different environment ("
                               + "; ".join(changed) + "): the numbers may differ in the last "
                               "bits from an uninterrupted run", changed=changed)

    def settle(self, status: str, exc: BaseException | None = None) -> None:
        """After an exception: leave records that say what happened (best effort).

        The summary is recomputed from the epochs in metrics.jsonl; a directory this call made
        and never wrote a record into is removed again, with the --out folders it made.
        """
        if not self.dist.is_main:
            return
        records = self.records
        try:
            if not records.exists():
                if self.made_dirs:
                    (records.path / ".lock").unlink(missing_ok=True)
                    with contextlib.suppress(OSError):  # stops at a folder no longer empty
                        for made in self.made_dirs:  # innermost first
                            made.rmdir()
                return
            summary = records.summary() or {}
            if summary.get("status") not in ("running", None):
                return
            rows = records.metrics()
            elapsed = float(rows[-1].get("time", 0.0)) if rows else 0.0
            if hasattr(self, "scheduler"):
                summary = self.write_summary(status, rows, elapsed)
            else:
                summary["status"] = status
            if exc is not None:
                summary["error"] = " ".join(str(exc).split())[:300] or type(exc).__name__
            records.write_summary(summary)
        except (OSError, LrlabError):  # a full disk, damaged records: the error says enough
            pass

    # -- the epoch's books ---------------------------------------------------------------
    def begin_epoch(self, epoch: int, first_update: int = 0) -> torch.Tensor:
        """Start ``epoch`` at its update ``first_update`` (> 0 when resumed mid-epoch, whose
        sums are kept): returns its sample order on the run's device."""
        cfg = self.config
        if first_update == 0:
            self.sums = EpochSums()
        perm = epoch_permutation(self.data.n_train, cfg.seed, epoch).to(self.device)
        # closed form: the same value whether or not the epoch was resumed mid-way
        self.lr_first = float(self.scheduler.lr_at(
            epoch * self.updates_per_epoch if cfg.per == "step" else epoch)[0])
        self.ratios = None
        return perm

    def after_update(self, epoch: int, u: int, loss: float, correct: float, seen: float,
                     targets: float, gnorm: float) -> Divergence | None:
        """Book update ``u`` of ``epoch`` (taken by the optimizer; ``loss`` its mean over
        ``targets`` counted targets of ``seen`` examples, ``gnorm`` the gradient norm):
        sums, health, the divergence check, the schedule's step. Returns the divergence it
        found (the schedule then stays where it is), if any."""
        step = epoch * self.updates_per_epoch + u
        if self.first_loss is None:
            self.first_loss = loss
        self.sums.add(loss, correct, seen, targets, gnorm)
        self.health.observe(step, loss, self.chance_loss)
        bad = rules.exploded(loss, self.first_loss)
        if self.dist.any_flag(bad, self.device):
            return Divergence("nonfinite" if not math.isfinite(loss) else "explosion", epoch,
                              step, self.current_lr(), loss,
                              loss_before=self._last_train_loss())
        if self.config.per == "step":
            self.scheduler.step()
        return None

    def close_epoch(self, epoch: int, outcome: Divergence | None, t0: float,
                    bar: Any = None) -> Divergence | None:
        """After the updates of ``epoch`` (started at ``t0``, a ``time.perf_counter()``;
        ``outcome`` the divergence that stopped it, if any): its row, the checks, the records
        and the checkpoint; the epoch's line is printed through the progress bar ``bar``
        when there is one. Returns the divergence that stops the run, if any."""
        cfg = self.config
        train_time = time.perf_counter() - t0
        # evaluation, sharpness and the checkpoint see a Schedule-Free run's evaluation point
        # x; training goes on from y (lrlab.optim.modes)
        eval_mode(self.optimizer)
        row = self._epoch_row(epoch, self.sums, train_time, diverged=outcome is not None)
        self.elapsed += time.perf_counter() - t0
        row["time"] = self.elapsed
        stop = self._check_after_epoch(epoch, row) if outcome is None else outcome
        if stop:
            row["diverged"] = True
        if self.dist.is_main:
            self.records.append_metrics(row)
            self.rows.append(row)
        self._echo_epoch(row, bar)
        if stop:
            self.record_divergence(stop)
            return stop
        self.diagnose(row)
        if self.scheduler.plateau_state is not None:
            self.scheduler.report(row.get("val_loss", row["train_loss"]))
        if cfg.per == "epoch":
            self.scheduler.step()
        self.write_checkpoint(epoch + 1, 0, EpochSums(), self.elapsed)
        train_mode(self.optimizer)
        return stop

    def _check_after_epoch(self, epoch: int, row: dict[str, Any]) -> Divergence | None:
        """A divergence seen only at the end of the epoch: in evaluation, or a collapse."""
        rows, health = self.rows, self.health
        bad_eval = rules.nonfinite_eval(row)
        if bad_eval is not None:
            key, value = bad_eval
            return Divergence("nonfinite-eval", epoch, row["step"] - 1, row["lr_last"], value,
                              metric=key,
                              loss_before=rows[-1]["train_loss"] if rows else None)
        chance = self.chance_loss
        if rules.collapsed(health, row["train_loss"], chance):
            update = health.candidate
            lr = float(self.scheduler.lr_at(update if self.config.per == "step" else epoch)[0]) \
                if update is not None else row["lr_first"]
            return Divergence("collapse", epoch, update, lr, row["train_loss"],
                              loss_before=rows[-1]["train_loss"] if rows else None)
        if self._learned(row):
            health.learned = True
        return None

    def _learned(self, row: dict[str, Any]) -> bool:
        return rules.learned(row.get("train_loss"), self.chance_loss)

    def _last_train_loss(self) -> float | None:
        rows = self.records.metrics() if self.dist.is_main else []
        return rows[-1].get("train_loss") if rows else None

    def current_lr(self) -> float:
        """Param group 0's LR now (that of the next update)."""
        lr = self.optimizer.param_groups[0]["lr"]
        return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)

    def _epoch_row(self, epoch: int, sums: EpochSums, train_time: float,
                   diverged: bool) -> dict[str, Any]:
        targets = max(sums.targets, 1.0)
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": epoch * self.updates_per_epoch + sums.updates,
            "lr": self.current_lr() if self.config.per == "epoch" else self.lr_first,
            "lr_first": self.lr_first,
            "lr_last": self._last_used_lr(),
            "train_loss": sums.loss / targets,
            "train_acc": sums.correct / targets,
            "grad_norm": sums.grad_norm / max(sums.updates, 1),
            # examples trained in this process only: a resumed epoch's earlier part was
            # trained (and timed) by the process that was interrupted
            "examples_per_s": (sums.seen - sums.seen_untimed) / max(train_time, 1e-9),
            "epoch_time": train_time,
        }
        if not diverged:
            ebs = self.config.eval_batch_size
            row["test_loss"], row["test_acc"] = evaluate(
                self.train_model, self.data.x_test, self.data.y_test, ebs, self.amp, self.dist)
            if self.data.x_val is not None:
                row["val_loss"], row["val_acc"] = evaluate(
                    self.train_model, self.data.x_val, self.data.y_val, ebs, self.amp,
                    self.dist)
        else:
            row["diverged"] = True
        if self.data.bpc:  # bits per character: the loss in nats / ln 2
            for split in ("train", "val", "test"):
                if isinstance(row.get(f"{split}_loss"), float):
                    row[f"{split}_bpc"] = row[f"{split}_loss"] / LN2
        if self.ratios is not None:
            row["update_ratio"] = self.ratios
        every = self.config.sharpness
        if every and not diverged and self.dist.is_main and \
                ((epoch + 1) % every == 0 or epoch + 1 == self.config.epochs):
            row.update(self._measure_sharpness())
        return row

    def _measure_sharpness(self) -> dict[str, Any]:
        """``--sharpness``: the top eigenvalue of the Hessian of the training loss on a fixed
        batch (the first ``--batch-size`` training examples: a batch of the size each update
        sees, the same one every time; in float32, in training
        mode), for Adam-like optimizers also of the preconditioned Hessian, and the stability
        threshold of the LR of the epoch's last update (param group 0; see
        :mod:`lrlab.diagnostics.sharpness`). The measurement leaves the model, its gradients
        and the RNGs as they were, so a run's numbers do not depend on it. Under torchrun
        rank 0 measures its copy (the ranks' models are identical)."""
        from lrlab.diagnostics import sharpness, stability_threshold

        n = min(self.config.batch_size, self.data.n_train)
        batch = (self.parts.inputs(self.data.x_train[:n]), self.data.y_train[:n])
        loss_fn = mean_loss  # the training loss: mean over the counted targets

        plain = sharpness(self.model, loss_fn, batch)
        out: dict[str, Any] = {"sharpness": plain.value}
        converged = plain.converged
        if self._adam_preconditioned():
            pre = sharpness(self.model, loss_fn, batch, preconditioner=self.optimizer)
            out["precond_sharpness"] = pre.value
            converged = converged and pre.converged
        threshold = stability_threshold(self.optimizer, lr=self._last_used_lr())
        if threshold is not None and math.isfinite(threshold):
            out["sharpness_threshold"] = threshold
        out["sharpness_converged"] = converged
        return out

    def _adam_preconditioned(self) -> bool:
        """Adam's sqrt(v)+eps preconditions every parameter's update: Adam, AdamW, AMSGrad,
        Adam without bias correction (not Muon's split, nor Schedule-Free or Prodigy, whose
        steps scale differently), once it has state."""
        from lrlab.optim import AdamNoBias

        return isinstance(self.optimizer, (torch.optim.Adam, AdamNoBias)) and \
            any("exp_avg_sq" in s for s in self.optimizer.state.values())

    def _last_used_lr(self) -> float:
        """LR of the epoch's last update (the scheduler has already moved past it)."""
        if self.config.per == "epoch":
            return self.current_lr()
        t = max(self.scheduler.count - 1, 0)
        return float(self.scheduler.lr_at(t)[0])

    # -- health --------------------------------------------------------------------------
    @property
    def chance_loss(self) -> float:
        """The loss of a model that ignores its input: ln(classes), or the dataset's own."""
        if self.data.chance_loss is not None:
            return self.data.chance_loss
        return math.log(self.data.num_classes)

    @property
    def chance_acc(self) -> float:
        """The accuracy of a model that ignores its input: 1/classes, or the dataset's own."""
        return self.data.chance_acc if self.data.chance_acc is not None \
            else 1.0 / self.data.num_classes

    @property
    def chance_text(self) -> str:
        """The chance loss as the messages name it."""
        if self.data.chance_loss is not None:
            return (f"{self.data.chance_loss:.4f} (the entropy of the training targets' "
                    "frequencies)")
        return f"ln({self.data.num_classes}) = {math.log(self.data.num_classes):.4f}"

    def _stuck(self, row: dict[str, Any] | None) -> bool:
        return rules.stuck(row, self.chance_loss, self.chance_acc)

    def diagnose(self, row: dict[str, Any]) -> None:
        """The events of an epoch that did not stop the run: ``not-learning`` (once) and
        ``large-update`` (see ``lrlab.lab.train.health``)."""
        if not self.dist.is_main:
            return
        if not self.health.learned and self._stuck(row) and not self.flagged_not_learning:
            self.flagged_not_learning = True
            self.records.event("not-learning", f"train loss {row['train_loss']:.4f} is still "
                               f"at chance level {self.chance_text} after epoch "
                               f"{row['epoch']}", epoch=row["epoch"])
        for name, r in rules.large_updates(row.get("update_ratio")):
            self.records.event("large-update", f"epoch {row['epoch']}: the update of "
                               f"{name} is {r:.2f}x its weights", epoch=row["epoch"],
                               param=name, ratio=r)

    def record_divergence(self, stop: Divergence) -> None:
        """The ``diverged`` event: a message saying what happened, and the record's fields."""
        if not self.dist.is_main:
            return
        where = f"update {stop.update}" if stop.update is not None else "an update"
        before = stop.loss_before
        kind = stop.cause
        if kind == "collapse":
            msg = (f"collapsed after learning: at {where} (epoch {stop.epoch}, lr "
                   f"{stop.lr:.4g}) the train loss went from {before:.4g} (previous epoch) "
                   f"to {stop.loss:.4g}, back at or above chance level "
                   f"{self.chance_text}")
        elif kind == "nonfinite-eval":
            assert stop.metric is not None
            msg = (f"diverged: the {stop.metric.replace('_', ' ')} became {stop.loss} "
                   f"after epoch {stop.epoch} (last update {stop.update}, lr "
                   f"{stop.lr:.4g})")
        else:
            what = "became non-finite" if kind == "nonfinite" else \
                f"exceeded {EXPLODE_FACTOR:g}x the first update's"
            msg = (f"diverged at {where} (epoch {stop.epoch}): the loss {what} "
                   f"({stop.loss:.4g}) with lr {stop.lr:.4g}")
        self.records.event("diverged", msg, **stop.to_dict())

    # -- checkpoints, the end ------------------------------------------------------------
    def write_checkpoint(self, epoch: int, update: int, sums: EpochSums, elapsed: float,
                         model_train: dict[str, torch.Tensor] | None = None) -> None:
        """Write the checkpoint of position (``epoch``, ``update`` of it) with the epoch's
        ``sums`` so far; a Schedule-Free run is in eval mode here, so ``model`` holds the
        weights to use (x); ``model_train`` is the training point y of a run interrupted
        mid-epoch (see ``_restore``). All ranks call it; the main rank writes."""
        if not self.dist.is_main:
            self.dist.barrier()
            return
        ck = {
            "version": CHECKPOINT_VERSION, "epoch": epoch, "update": update,
            "sums": asdict(sums), "health": asdict(self.health), "elapsed": elapsed,
            "first_loss": self.first_loss, "lr_base": self.lr_base,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": capture_rng_state(),
        }
        if model_train is not None:
            ck["model_train"] = model_train
        self.records.save_checkpoint(ck)
        self.dist.barrier()

    def interrupt(self, epoch: int, trained: float, bar: Any = None) -> RunResult:
        """Ctrl-C/SIGTERM between two updates of ``epoch`` (``trained`` seconds into it):
        checkpoint where the run is, record it ``interrupted``, close the progress bar."""
        if bar is not None:
            bar.close()
        self.elapsed += trained
        update = self.sums.updates
        model_train = None
        if has_modes(self.optimizer):  # mid-epoch: keep y itself, x is saved as the model
            model_train = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        eval_mode(self.optimizer)
        self.write_checkpoint(epoch, update, self.sums, self.elapsed, model_train)
        train_mode(self.optimizer)
        if self.dist.is_main:
            self.records.event("interrupted", f"interrupted at epoch {epoch}, update {update} "
                               "of the epoch; continue with --resume", epoch=epoch,
                               update=update)
        summary = self.write_summary("interrupted", self.rows, self.elapsed)
        return RunResult(self.records.path, "interrupted", summary, self.dist.is_main)

    def finish(self, stop: Divergence | None, *, pruned: bool = False) -> RunResult:
        """The run's end: ``diverged`` at ``stop``, ``pruned`` (stopped by the tuner's
        pruner), ``not-learning`` or ``ok``; writes the summary."""
        if stop:
            status = "diverged"
        elif pruned:
            status = "pruned"
        else:
            status = "not-learning" if not self.health.learned and self._stuck(
                self.rows[-1] if self.rows else None) else "ok"
        summary = self.write_summary(status, self.rows, self.elapsed, stop)
        return RunResult(self.records.path, status, summary, self.dist.is_main)

    def write_summary(self, status: str, rows: list[dict[str, Any]], elapsed: float,
                      stop: Divergence | None = None) -> dict[str, Any]:
        """``summary.json`` for ``status`` from the epoch ``rows`` (written on the main rank;
        returned on all)."""
        def series(key: str) -> list[float]:
            return [r[key] for r in rows if isinstance(r.get(key), (int, float))]

        accs, vals = series("test_acc"), series("val_acc")
        eps = [r["examples_per_s"] for r in rows if not r.get("diverged")]
        last = rows[-1] if rows else {}
        summary: dict[str, Any] = {
            "status": status,
            "epochs_done": sum(1 for r in rows if not r.get("diverged")),
            "epochs": self.config.epochs,
            "best_test_acc": max(accs) if accs else None,
            "final_test_acc": accs[-1] if accs else None,
            "best_val_acc": max(vals) if vals else None,
            "final_val_acc": vals[-1] if vals else None,
            "final_val_loss": last.get("val_loss"),
            "final_train_loss": last.get("train_loss"),
            "final_test_loss": last.get("test_loss"),
            "time_s": elapsed,
            "examples_per_s": sum(eps) / len(eps) if eps else None,
            "lr": self.lr,
            "chance_loss": self.chance_loss,
            "chance_acc": self.chance_acc,
            "updates": self.scheduler.count if self.config.per == "step" else
            (last.get("step", 0)),
        }
        if self.data.bpc:
            summary["final_val_bpc"] = last.get("val_bpc")
            summary["final_test_bpc"] = last.get("test_bpc")
        if stop:
            summary["diverged_at"] = stop.to_dict()
        if self.dist.is_main:
            self.records.write_summary(summary)
        return summary

    def _echo_epoch(self, row: dict[str, Any], bar: Any) -> None:
        if not self.echo:
            return
        parts = [f"epoch {row['epoch'] + 1:>3}/{self.config.epochs}",
                 f"lr {row['lr_first']:.3g}", f"train loss {row['train_loss']:.4f}",
                 f"acc {row['train_acc']:.4f}"]
        if "val_acc" in row:
            parts.append(f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}")
        if "test_acc" in row:
            parts.append(f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}")
        if "val_bpc" in row:
            parts.append(f"val bpc {row['val_bpc']:.3f}")
        parts.append(f"{row['examples_per_s']:.0f} ex/s")
        line = "  ".join(parts)
        if bar is not None:
            bar.write(line)
        else:
            print(line, flush=True)
