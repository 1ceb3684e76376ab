"""The training loop of the lab: in-memory tensors, slices of a permutation, closed-form LRs.

``train(config)`` runs (or resumes) one run and writes its records (see ``records``).

Batches: epoch ``e`` draws a permutation of the training set from a generator seeded with
``(seed, e)``, so any epoch's order is known without replaying earlier ones: a resumed run
(even one resumed mid-epoch after Ctrl-C) sees exactly the batches of an uninterrupted one.
Update ``u`` of an epoch takes the slice ``perm[u*G:(u+1)*G]`` with G = batch_size × world
size × accumulate (the last update of an epoch may be smaller); under torchrun each rank takes
its contiguous share of that slice, then splits it into ``accumulate`` micro-batches. Each
micro-batch loss is weighted by its share of the update's samples, so the gradient is the
mean over the whole update whatever the split: accumulation K with batch b equals one batch
K·b, and W ranks with batch b equal one process with batch W·b. When the last slice of an
epoch holds fewer samples than ranks (or micro-batches), a rank may get none: it still runs
its forward and backward passes on the empty batch (weight 0), so every rank takes part in
the same gradient all-reduces and none waits for another.

Targets (:mod:`lrlab.lab.data.targets`): a dataset gives one class per example, or one per position
of a token sequence (``modadd``, ``chars``; ``-100`` where a position is not counted). Losses
are means over the counted targets and accuracies are correct / counted targets; the
weight of a micro-batch is its share of the update's counted targets (for one class per
example: its share of the examples, as before). ``seen`` and ``examples_per_s`` count
examples (sequences). A dataset whose loss is in characters (``chars``) also records
``train_bpc``/``val_bpc``/``test_bpc`` = loss / ln 2 (bits per character) in each row and
``final_val_bpc``/``final_test_bpc`` in the summary.

Validation: when the dataset has a validation split (``val_size``, see ``lrlab.lab.data.datasets``)
every epoch records ``val_loss``/``val_acc``; ``plateau(...)`` schedules are fed the
validation loss (the training loss without one).

Diagnostics (the run stops as ``diverged``, recorded with its kind, epoch, update and LR):

- ``nonfinite``: a NaN/inf training loss;
- ``explosion``: a training loss above 1000× the first update's (it has not reached inf yet);
- ``nonfinite-eval``: a NaN/inf loss when evaluating (the last updates blew the weights up);
- ``collapse``: a run that had learned (an epoch's train loss below ``LEARNED`` × ln(classes))
  whose epoch train loss is back at chance level or above (>= ``CHANCE`` × ln(classes)): it
  learned, then blew up. The update is the first one where an exponential average of the
  update losses (weight ``HEALTH_EMA``) crossed chance level since it was last well below.

A run whose train loss is still within 3% of ln(classes) with chance-level accuracy after two
or more epochs, and never learned, is ``not-learning``. "Chance level" is ln(classes) and
1/classes for the balanced image and tabular datasets; a sequence dataset has its own
(``Dataset.chance_loss``/``chance_acc``: the unigram entropy of its training targets and
the frequency of the commonest one; the accuracy bound is 1.5× the chance accuracy), since a
character model that only learned letter frequencies sits far below ln(vocabulary).
``update_ratio`` records ‖Δw‖/‖w‖ per parameter tensor at the last update of each epoch and
warns when a step is half as large as the weights or more.

Reproducibility: ``config.json`` records the run's environment (torch version, threads,
device, deterministic flags: ``lrlab.lab.train.device.run_environment``); a resume on a different
environment is recorded as an event, since the numbers may then differ in the last bits.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lrlab.errors import LrlabError
from lrlab.lab.data.targets import LN2, at_least_float32, counted, mean_loss, sum_loss
from lrlab.lab.data.targets import correct as n_correct
from lrlab.lab.records import FINISHED, RunRecords
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.device import run_environment
from lrlab.lab.train.distributed import DistContext, init_distributed
from lrlab.optim.modes import eval_mode, has_modes, train_mode
from lrlab.rng import capture_rng_state, restore_rng_state
from lrlab.scheduler import Scheduler, optimizer_beta2

__all__ = ["train", "RunResult", "update_indices", "epoch_permutation", "evaluate", "FINISHED"]

EXPLODE_FACTOR = 1000.0
LARGE_UPDATE_RATIO = 0.5
#: an epoch train loss below LEARNED × ln(classes) means the run has learned something
LEARNED = 0.8
#: an epoch train loss at or above CHANCE × ln(classes) is chance level (or worse)
CHANCE = 0.97
#: weight of the newest update loss in the average that dates a collapse
HEALTH_EMA = 0.1
CHECKPOINT_VERSION = 2


@dataclass
class RunResult:
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
        self.loss += loss * targets
        self.correct += correct
        self.seen += seen
        self.targets += targets
        self.grad_norm += grad_norm
        self.updates += 1

    @classmethod
    def from_checkpoint(cls, ck: dict[str, Any]) -> EpochSums:
        if "sums" in ck:
            sums = cls(**{k: v for k, v in ck["sums"].items() if k in cls.__dataclass_fields__})
            if "targets" not in ck["sums"]:  # written before sequences: one target each
                sums.targets = sums.seen
        else:  # version 1: a float64 tensor [loss sum, correct, seen, gnorm sum, updates]
            loss, correct, seen, gnorm, updates = ck["accum"].tolist()
            sums = cls(loss, correct, seen, gnorm, int(updates), targets=seen)
        sums.seen_untimed = sums.seen
        return sums


@dataclass
class Health:
    """What the collapse diagnosis remembers between updates (and across a resume)."""

    learned: bool = False
    ema: float | None = None
    candidate: int | None = None  # update where the average last crossed chance level

    def observe(self, update: int, loss: float, chance: float) -> None:
        if not math.isfinite(loss):
            return
        self.ema = loss if self.ema is None else (1 - HEALTH_EMA) * self.ema + HEALTH_EMA * loss
        if self.ema >= CHANCE * chance:
            if self.candidate is None:
                self.candidate = update
        elif self.ema < LEARNED * chance:
            self.candidate = None


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of ``epoch``: a function of (seed, epoch) only."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7_919 + 17)
    return torch.randperm(n, generator=gen)


def update_indices(perm: torch.Tensor, update: int, per_update: int, world: int, rank: int,
                   accumulate: int) -> tuple[list[torch.Tensor], int]:
    """This rank's micro-batches of ``update`` and the update's total sample count.

    With several ranks every rank gets exactly ``accumulate`` micro-batches, some possibly
    empty (the last, short update of an epoch), so all ranks run the same number of backward
    passes; a single process skips empty micro-batches.
    """
    chunk = perm[update * per_update:(update + 1) * per_update]
    shard = torch.tensor_split(chunk, world)[rank] if world > 1 else chunk
    micro = list(torch.tensor_split(shard, accumulate)) if accumulate > 1 else [shard]
    if world == 1:
        micro = [m for m in micro if len(m)] or micro[:1]
    return micro, len(chunk)


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
    with torch.no_grad(), _autocast(x.device, amp):
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


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack(norms))


class _StopFlag:
    """Ctrl-C (SIGINT) or SIGTERM sets a flag checked between updates: the run checkpoints
    where it is and stops; a second signal interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        import threading

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


class _Trainer:
    """One run: set-up, the loop, records. ``train()`` is the public entry point."""

    def __init__(self, config: TrainConfig, resume: bool, progress: bool | None,
                 dist: DistContext, echo: bool, lock_wait: float = 0.0,
                 on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.config = config
        self.on_epoch = on_epoch
        self.pruned = False  # stopped by on_epoch (the tuner's pruner)
        self.lock_wait = lock_wait
        self.made_dirs: list[Path] = []  # the run directory and any --out parents made here
        self.dist = dist
        self.records = RunRecords(config.run_dir())
        self.resume = resume
        self.echo = echo and dist.is_main and not config.quiet
        if progress is None:
            progress = not config.quiet and sys.stderr.isatty()
        self.progress = progress and dist.is_main
        self.extended_from: int | None = None  # epochs of the run before --epochs grew it

    # -- set-up --------------------------------------------------------------------------
    def prepare(self) -> RunResult | None:
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
            from lrlab.lab.records import write_json_atomic

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
        from lrlab.lab.records import write_json_atomic

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
                summary = self._write_summary(status, rows, elapsed)
            else:
                summary["status"] = status
            if exc is not None:
                summary["error"] = " ".join(str(exc).split())[:300] or type(exc).__name__
            records.write_summary(summary)
        except (OSError, LrlabError):  # a full disk, damaged records: the error says enough
            pass

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.config
        start_epoch, start_update, sums, elapsed, health, rows = self._start()
        bar = self._bar(start_epoch * self.updates_per_epoch + start_update)
        stop: dict[str, Any] = {}
        with _StopFlag() as flag:
            for epoch in range(start_epoch, cfg.epochs):
                t0 = time.perf_counter()
                first_update = start_update if epoch == start_epoch else 0
                if first_update == 0:
                    sums = EpochSums()
                outcome = self._train_epoch(epoch, first_update, sums, health, flag, bar)
                if outcome == "interrupted":
                    elapsed += time.perf_counter() - t0
                    return self._interrupt(epoch, sums.updates, sums, health, elapsed, rows, bar)
                stop, elapsed = self._close_epoch(epoch, sums, outcome, t0, elapsed, rows,
                                                  health, bar)
                if stop:
                    break
                if self.on_epoch is not None and epoch + 1 < cfg.epochs and rows and \
                        self.on_epoch(rows[-1]):
                    self.pruned = True
                    break
        if bar is not None:
            bar.close()
        return self._finish(rows, elapsed, stop, health)

    def _start(self) -> tuple[int, int, EpochSums, float, Health, list[dict[str, Any]]]:
        """Restore (or start) the run: its position, the epoch's sums, time, health, rows."""
        dist = self.dist
        start_epoch, start_update, sums, elapsed, health = self._restore()
        rows = self.records.metrics() if dist.is_main else []
        if any(self._learned(r) for r in rows):
            health.learned = True
        self.flagged_not_learning = dist.is_main and any(
            e.get("kind") == "not-learning" for e in self.records.events())
        self.first_loss: float | None = self.checkpoint.get("first_loss") if self.checkpoint \
            else None
        self._write_summary("running", rows, elapsed)
        return start_epoch, start_update, sums, elapsed, health, rows

    def _close_epoch(self, epoch: int, sums: EpochSums, outcome: dict[str, Any] | None,
                     t0: float, elapsed: float, rows: list[dict[str, Any]], health: Health,
                     bar: Any) -> tuple[dict[str, Any], float]:
        """After the updates of ``epoch`` (started at ``t0``; ``outcome`` the divergence that
        stopped it, if any): its row, the checks, the records and the checkpoint. Returns the
        divergence that stops the run ({} if none) and the time trained."""
        cfg = self.config
        train_time = time.perf_counter() - t0
        # evaluation, sharpness and the checkpoint see a Schedule-Free run's evaluation point
        # x; training goes on from y (lrlab.optim.modes)
        eval_mode(self.optimizer)
        row = self._epoch_row(epoch, sums, train_time, diverged=outcome is not None)
        elapsed += time.perf_counter() - t0
        row["time"] = elapsed
        stop = self._check_after_epoch(epoch, row, rows, health) if outcome is None else outcome
        if stop:
            row["diverged"] = True
        if self.dist.is_main:
            self.records.append_metrics(row)
            rows.append(row)
        self._echo_epoch(row, bar)
        if stop:
            self._record_divergence(stop)
            return stop, elapsed
        self._diagnose(row, health)
        if self.scheduler.plateau_state is not None:
            self.scheduler.report(row.get("val_loss", row["train_loss"]))
        if cfg.per == "epoch":
            self.scheduler.step()
        self._checkpoint(epoch + 1, 0, EpochSums(), health, elapsed)
        train_mode(self.optimizer)
        return stop, elapsed

    def _finish(self, rows: list[dict[str, Any]], elapsed: float, stop: dict[str, Any],
                health: Health) -> RunResult:
        if stop:
            status = "diverged"
        elif self.pruned:
            status = "pruned"
        else:
            status = "not-learning" if not health.learned and self._stuck(
                rows[-1] if rows else None) else "ok"
        summary = self._write_summary(status, rows, elapsed, stop)
        return RunResult(self.records.path, status, summary, self.dist.is_main)

    def _train_epoch(self, epoch: int, first_update: int, sums: EpochSums, health: Health,
                     flag: _StopFlag, bar: Any) -> dict[str, Any] | str | None:
        """Train the updates of ``epoch`` from ``first_update``; None when it completed,
        ``"interrupted"`` after Ctrl-C, or the divergence that stopped it."""
        cfg = self.config
        perm = self._begin_epoch(epoch)
        for u in range(first_update, self.updates_per_epoch):
            if flag.stop:
                return "interrupted"
            want_ratio = cfg.update_ratio and u == self.updates_per_epoch - 1
            loss, correct, seen, targets, gnorm, ratio = self._update(perm, u, want_ratio)
            if ratio is not None:
                self.ratios = ratio
            stop = self._after_update(epoch, u, loss, correct, seen, targets, gnorm, sums,
                                      health)
            if stop:
                return stop
            if bar is not None:
                bar.update(1)
                if u % 10 == 0:
                    bar.set_postfix_str(f"ep {epoch} loss {loss:.4f} lr "
                                        f"{self._current_lr():.3g}", refresh=False)
        return None

    def _begin_epoch(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch`` (on the run's device); resets what an epoch keeps."""
        cfg = self.config
        perm = epoch_permutation(self.data.n_train, cfg.seed, epoch).to(self.device)
        # closed form: the same value whether or not the epoch was resumed mid-way
        self.lr_first = float(self.scheduler.lr_at(
            epoch * self.updates_per_epoch if cfg.per == "step" else epoch)[0])
        self.ratios: dict[str, float] | None = None
        return perm

    def _after_update(self, epoch: int, u: int, loss: float, correct: float, seen: float,
                      targets: float, gnorm: float, sums: EpochSums, health: Health
                      ) -> dict[str, Any] | None:
        """Book update ``u`` of ``epoch`` (taken by the optimizer): sums, health, the
        divergence check, the schedule's step. Returns the divergence it found, if any."""
        step = epoch * self.updates_per_epoch + u
        if self.first_loss is None:
            self.first_loss = loss
        sums.add(loss, correct, seen, targets, gnorm)
        health.observe(step, loss, self.chance_loss)
        finite = math.isfinite(loss)
        bad = not finite or loss > EXPLODE_FACTOR * max(self.first_loss, 1e-3)
        if self.dist.any_flag(bad, self.device):
            return {"cause": "nonfinite" if not finite else "explosion", "epoch": epoch,
                    "update": step, "lr": self._current_lr(), "loss": loss,
                    "loss_before": self._last_train_loss()}
        if self.config.per == "step":
            self.scheduler.step()
        return None

    def _learned(self, row: dict[str, Any]) -> bool:
        loss = row.get("train_loss")
        return isinstance(loss, (int, float)) and loss < LEARNED * self.chance_loss

    def _last_train_loss(self) -> float | None:
        rows = self.records.metrics() if self.dist.is_main else []
        return rows[-1].get("train_loss") if rows else None

    def _check_after_epoch(self, epoch: int, row: dict[str, Any], rows: list[dict[str, Any]],
                           health: Health) -> dict[str, Any]:
        """A divergence seen only at the end of the epoch: in evaluation, or a collapse."""
        for key in ("test_loss", "val_loss"):
            value = row.get(key)
            if value is not None and not math.isfinite(value):
                return {"cause": "nonfinite-eval", "epoch": epoch, "update": row["step"] - 1,
                        "lr": row["lr_last"], "loss": value, "metric": key,
                        "loss_before": rows[-1]["train_loss"] if rows else None}
        chance = self.chance_loss
        if health.learned and row["train_loss"] >= CHANCE * chance:
            update = health.candidate
            lr = float(self.scheduler.lr_at(update if self.config.per == "step" else epoch)[0]) \
                if update is not None else row["lr_first"]
            return {"cause": "collapse", "epoch": epoch, "update": update, "lr": lr,
                    "loss": row["train_loss"], "loss_before": rows[-1]["train_loss"] if rows
                    else None}
        if self._learned(row):
            health.learned = True
        return {}

    def _record_divergence(self, stop: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        where = f"update {stop['update']}" if stop.get("update") is not None else "an update"
        before = stop.get("loss_before")
        kind = stop["cause"]
        if kind == "collapse":
            msg = (f"collapsed after learning: at {where} (epoch {stop['epoch']}, lr "
                   f"{stop['lr']:.4g}) the train loss went from {before:.4g} (previous epoch) "
                   f"to {stop['loss']:.4g}, back at or above chance level "
                   f"{self.chance_text}")
        elif kind == "nonfinite-eval":
            msg = (f"diverged: the {stop['metric'].replace('_', ' ')} became {stop['loss']} "
                   f"after epoch {stop['epoch']} (last update {stop['update']}, lr "
                   f"{stop['lr']:.4g})")
        else:
            what = "became non-finite" if kind == "nonfinite" else \
                f"exceeded {EXPLODE_FACTOR:g}x the first update's"
            msg = (f"diverged at {where} (epoch {stop['epoch']}): the loss {what} "
                   f"({stop['loss']:.4g}) with lr {stop['lr']:.4g}")
        self.records.event("diverged", msg, **stop)

    def _update_targets(self, perm: torch.Tensor, u: int, total: int) -> int:
        """Counted targets of update ``u`` on all ranks together (its ``total`` examples when
        each example is one target): the denominator of every micro-batch's weight."""
        y_all = self.data.y_train
        if y_all.dim() == 1:
            return total
        return counted(y_all[perm[u * self.global_batch:(u + 1) * self.global_batch]])

    def _update(self, perm: torch.Tensor, u: int, want_ratio: bool
                ) -> tuple[float, float, float, float, float, dict[str, float] | None]:
        cfg = self.config
        x_all, y_all = self.data.x_train, self.data.y_train
        micro, total = update_indices(perm, u, self.global_batch, self.world, self.dist.rank,
                                      cfg.accumulate)
        total = self._update_targets(perm, u, total)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = targets = 0
        for k, idx in enumerate(micro):
            x, y = self.parts.inputs(x_all[idx]), y_all[idx]
            n = counted(y)
            sync = contextlib.nullcontext()
            if self.world > 1 and k < len(micro) - 1:
                sync = self.train_model.no_sync()
            with sync:
                with _autocast(self.device, self.amp):
                    out = self.train_model(x)
                if n:
                    o = at_least_float32(out).reshape(-1, out.shape[-1])
                    t = y.reshape(-1)
                    loss = F.cross_entropy(o, t)  # the mean over the counted targets
                    # weight: this micro-batch's share of the whole update (all ranks)
                    (loss * (n * self.world / total)).backward()
                    loss_sum += loss.detach() * n
                    correct += n_correct(out.detach(), y)
                else:  # an empty share: take part in the all-reduce with zero gradients
                    (out.float().sum() * 0.0).backward()
            seen += len(idx)
            targets += n
        gnorm = _grad_norm(self.params)
        before = None
        if want_ratio:
            before = [p.detach().clone() for p in self.params]
        self.optimizer.step()
        ratio = None
        if before is not None:
            names = [n for n, p in self.model.named_parameters() if p.requires_grad]
            ratio = {}
            for name, p, b in zip(names, self.params, before):
                w = b.norm().item()
                ratio[name] = (p.detach() - b).norm().item() / w if w > 0 else float("inf")
        stats = torch.stack([loss_sum, correct, torch.tensor(float(seen), device=self.device),
                             torch.tensor(float(targets), device=self.device)])
        stats = stats.double()
        if self.world > 1:
            self.dist.all_reduce_sum(stats)
        seen_all, targets_all = stats[2].item(), stats[3].item()
        return (stats[0].item() / max(targets_all, 1.0), stats[1].item(), seen_all, targets_all,
                gnorm.item(), ratio)

    def _current_lr(self) -> float:
        lr = self.optimizer.param_groups[0]["lr"]
        return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)

    def _epoch_row(self, epoch: int, sums: EpochSums, train_time: float,
                   diverged: bool) -> dict[str, Any]:
        targets = max(sums.targets, 1.0)
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": epoch * self.updates_per_epoch + sums.updates,
            "lr": self._current_lr() if self.config.per == "epoch" else self.lr_first,
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
            return self._current_lr()
        t = max(self.scheduler.count - 1, 0)
        return float(self.scheduler.lr_at(t)[0])

    @property
    def chance_loss(self) -> float:
        """The loss of a model that ignores its input: ln(classes), or the dataset's own."""
        if self.data.chance_loss is not None:
            return self.data.chance_loss
        return math.log(self.data.num_classes)

    @property
    def chance_text(self) -> str:
        if self.data.chance_loss is not None:
            return (f"{self.data.chance_loss:.4f} (the entropy of the training targets' "
                    "frequencies)")
        return f"ln({self.data.num_classes}) = {math.log(self.data.num_classes):.4f}"

    def _stuck(self, row: dict[str, Any] | None) -> bool:
        if row is None or row["epoch"] < 1:
            return False
        chance_acc = self.data.chance_acc if self.data.chance_acc is not None \
            else 1.0 / self.data.num_classes
        return row["train_loss"] >= CHANCE * self.chance_loss and \
            row["train_acc"] <= 1.5 * chance_acc

    def _diagnose(self, row: dict[str, Any], health: Health) -> None:
        if not self.dist.is_main:
            return
        if not health.learned and self._stuck(row) and not self.flagged_not_learning:
            self.flagged_not_learning = True
            self.records.event("not-learning", f"train loss {row['train_loss']:.4f} is still "
                               f"at chance level {self.chance_text} after epoch "
                               f"{row['epoch']}", epoch=row["epoch"])
        for name, r in (row.get("update_ratio") or {}).items():
            if r >= LARGE_UPDATE_RATIO:
                self.records.event("large-update", f"epoch {row['epoch']}: the update of "
                                   f"{name} is {r:.2f}x its weights", epoch=row["epoch"],
                                   param=name, ratio=r)

    def _checkpoint(self, epoch: int, update: int, sums: EpochSums, health: Health,
                    elapsed: float, model_train: dict[str, torch.Tensor] | None = None
                    ) -> None:
        """Write the checkpoint; a Schedule-Free run is in eval mode here, so ``model`` holds
        the weights to use (x); ``model_train`` is the training point y of a run interrupted
        mid-epoch (see ``_restore``)."""
        if not self.dist.is_main:
            self.dist.barrier()
            return
        ck = {
            "version": CHECKPOINT_VERSION, "epoch": epoch, "update": update,
            "sums": asdict(sums), "health": asdict(health), "elapsed": elapsed,
            "first_loss": self.first_loss, "lr_base": self.lr_base,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": capture_rng_state(),
        }
        if model_train is not None:
            ck["model_train"] = model_train
        self.records.save_checkpoint(ck)
        self.dist.barrier()

    def _interrupt(self, epoch: int, update: int, sums: EpochSums, health: Health,
                   elapsed: float, rows: list[dict[str, Any]], bar: Any) -> RunResult:
        if bar is not None:
            bar.close()
        model_train = None
        if has_modes(self.optimizer):  # mid-epoch: keep y itself, x is saved as the model
            model_train = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        eval_mode(self.optimizer)
        self._checkpoint(epoch, update, sums, health, elapsed, model_train)
        train_mode(self.optimizer)
        if self.dist.is_main:
            self.records.event("interrupted", f"interrupted at epoch {epoch}, update {update} "
                               "of the epoch; continue with --resume", epoch=epoch,
                               update=update)
        summary = self._write_summary("interrupted", rows, elapsed)
        return RunResult(self.records.path, "interrupted", summary, self.dist.is_main)

    def _write_summary(self, status: str, rows: list[dict[str, Any]], elapsed: float,
                       stop: dict[str, Any] | None = None) -> dict[str, Any]:
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
            "chance_acc": self.data.chance_acc if self.data.chance_acc is not None
            else 1.0 / self.data.num_classes,
            "updates": self.scheduler.count if self.config.per == "step" else
            (last.get("step", 0)),
        }
        if self.data.bpc:
            summary["final_val_bpc"] = last.get("val_bpc")
            summary["final_test_bpc"] = last.get("test_bpc")
        if stop:
            summary["diverged_at"] = stop
        if self.dist.is_main:
            self.records.write_summary(summary)
        return summary

    def _bar(self, initial: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.total_updates, initial=initial, unit="upd", leave=False,
                    dynamic_ncols=True, mininterval=0.25)

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


def train(config: TrainConfig, *, resume: bool = False, progress: bool | None = None,
          echo: bool = True, lock_wait: float = 0.0,
          on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> RunResult:
    """Run (or with ``resume=True`` continue) one training run and write its records.

    Returns the run's path, status (ok / diverged / not-learning / pruned / interrupted) and
    summary. ``on_epoch`` (the tuner's pruner) sees each epoch's metrics row after it is
    recorded and checkpointed, except the last; returning True ends the run there with
    status ``pruned``.
    A finished run asked to resume is returned as it is, without training again, unless
    ``config.epochs`` grew (see ``lrlab train --resume DIR --epochs N``).

    The run directory is locked while it trains: another process training it makes this
    call fail at once (or after ``lock_wait`` seconds of waiting) with an LrlabError naming
    it. A directory that holds files lrlab did not write is refused. If training fails after
    it started, ``summary.json`` says ``failed`` with the error, not ``running``.
    """
    config.validate()
    dist, device_name = init_distributed(config.device)
    if dist.enabled:
        config.device = device_name
    trainer = _Trainer(config, resume, progress, dist, echo, lock_wait, on_epoch)
    clean = False
    try:
        done = trainer.prepare()
        result = done if done is not None else trainer.run()
        clean = True
        return result
    except KeyboardInterrupt:
        trainer.settle("interrupted")
        raise
    except Exception as exc:
        trainer.settle("failed", exc)
        raise
    finally:
        trainer.records.lock.release()
        dist.close(clean=clean)
