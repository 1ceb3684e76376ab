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
K·b, and W ranks with batch b equal one process with batch W·b.

Diagnostics: a non-finite loss, or a loss above 1000× the first update's (an explosion that
has not reached inf yet), stops the run as ``diverged`` with the update index and LR. A
train loss still within 3% of ln(classes) with chance-level accuracy after two or more epochs
marks the run ``not-learning``. ``update_ratio`` records ‖Δw‖/‖w‖ per parameter tensor at the
last update of each epoch and warns when a step is half as large as the weights or more.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lrlab.errors import LrlabError
from lrlab.lab.config import TrainConfig
from lrlab.lab.device import autocast_dtype, select_device
from lrlab.lab.distributed import DistContext, init_distributed
from lrlab.lab.records import RunRecords
from lrlab.rng import capture_rng_state, restore_rng_state
from lrlab.scheduler import Scheduler

__all__ = ["train", "RunResult", "update_indices", "epoch_permutation", "evaluate"]

FINISHED = ("ok", "diverged", "not-learning")
EXPLODE_FACTOR = 1000.0
LARGE_UPDATE_RATIO = 0.5


@dataclass
class RunResult:
    path: Path
    status: str
    summary: dict[str, Any]


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of ``epoch``: a function of (seed, epoch) only."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7_919 + 17)
    return torch.randperm(n, generator=gen)


def update_indices(perm: torch.Tensor, update: int, per_update: int, world: int, rank: int,
                   accumulate: int) -> tuple[list[torch.Tensor], int]:
    """This rank's micro-batches of ``update`` and the update's total sample count."""
    chunk = perm[update * per_update:(update + 1) * per_update]
    shard = torch.tensor_split(chunk, world)[rank] if world > 1 else chunk
    micro = [m for m in torch.tensor_split(shard, accumulate) if len(m)] if accumulate > 1 \
        else [shard]
    return micro, len(chunk)


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int,
             amp: torch.dtype | None, dist: DistContext | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y) (this rank's share when distributed)."""
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
            out = model(x[sel]).float()
            yy = y[sel]
            total[0] += F.cross_entropy(out, yy, reduction="sum").double()
            total[1] += (out.argmax(1) == yy).sum()
            total[2] += len(sel)
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
    """Ctrl-C sets a flag checked between updates (a second Ctrl-C interrupts at once)."""

    def __init__(self) -> None:
        self.stop = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _optimizer_hyper(config: TrainConfig) -> dict[str, Any]:
    hyper: dict[str, Any] = {}
    if config.betas is not None:
        hyper["betas"] = tuple(config.betas)
    if config.momentum is not None:
        hyper["momentum"] = config.momentum
    if config.eps is not None:
        hyper["eps"] = config.eps
    return hyper


class _Trainer:
    """One run: set-up, the loop, records. ``train()`` is the public entry point."""

    def __init__(self, config: TrainConfig, resume: bool, progress: bool | None,
                 dist: DistContext, echo: bool) -> None:
        self.config = config
        self.dist = dist
        self.records = RunRecords(config.run_dir())
        self.resume = resume
        self.echo = echo and dist.is_main and not config.quiet
        if progress is None:
            progress = not config.quiet and sys.stderr.isatty()
        self.progress = progress and dist.is_main

    # -- set-up --------------------------------------------------------------------------
    def prepare(self) -> RunResult | None:
        from lrlab.lab.data import load_dataset
        from lrlab.lab.models import build_model, parse_hidden
        from lrlab.optim import build_optimizer, scale_lr

        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = select_device(cfg.device)
        self.amp = autocast_dtype(self.device, cfg.amp)
        existing = self.records.exists()
        self.checkpoint: dict[str, Any] | None = None
        if existing:
            stored = self.records.read_config()
            if not self.resume:
                raise LrlabError(f"run directory {self.records.path} already exists; use "
                                 "--resume to continue it, or --name/--out for a new run")
            ours = cfg.result_fields()
            theirs = {k: v for k, v in stored.items() if k in ours}
            theirs.setdefault("model", ours["model"])
            if stored.get("model") is None:
                theirs["model"] = ours["model"]
            diff = sorted(k for k in ours if k in theirs and theirs[k] != ours[k])
            if diff:
                raise LrlabError(f"cannot resume {self.records.path}: its config differs in "
                                 f"{', '.join(diff)}")
            summary = self.records.summary() or {}
            if summary.get("status") in FINISHED:
                return RunResult(self.records.path, summary["status"], summary)
            self.checkpoint = self.records.load_checkpoint()

        self.data = load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed, limit=cfg.limit,
                                 pixels=cfg.pixels)
        self.data = self.data.to(self.device)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        hidden = parse_hidden(cfg.hidden) if cfg.hidden else None
        model = build_model(cfg.resolved_model(), self.data, hidden=hidden).to(self.device)
        self.channels_last = cfg.use_channels_last(self.device.type) and \
            self.data.x_train.dim() == 4
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.world = self.dist.world_size
        self.global_batch = cfg.batch_size * self.world * cfg.accumulate
        n = len(self.data.x_train)
        self.updates_per_epoch = math.ceil(n / self.global_batch)
        self.total_updates = self.updates_per_epoch * cfg.epochs

        base_lr = self.lr_base = self._base_lr()
        lr = base_lr
        if cfg.scale_lr != "none":
            lr = scale_lr(base_lr, self.global_batch, cfg.ref_batch, rule=cfg.scale_lr)
        self.lr = lr
        self.optimizer = build_optimizer(cfg.optimizer, model, lr, cfg.weight_decay,
                                         no_decay=cfg.no_decay, lr_mult=cfg.lr_mult or None,
                                         layer_decay=cfg.layer_decay, **_optimizer_hyper(cfg))
        self.scheduler = Scheduler(self.optimizer, cfg.schedule, total_steps=self.total_updates,
                                   steps_per_epoch=self.updates_per_epoch, per=cfg.per,
                                   epochs=cfg.epochs)
        self.train_model = model
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(model, device_ids=ids)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)

        if self.dist.is_main and not existing:
            record = cfg.to_dict()
            record.update(model=cfg.resolved_model(), lr_used=lr, lr_base=base_lr,
                          world_size=self.world, global_batch=self.global_batch,
                          updates_per_epoch=self.updates_per_epoch,
                          total_updates=self.total_updates,
                          warmup=self._warmup_description(), data_source=self.data.source,
                          device=str(self.device), torch=torch.__version__)
            self.records.create(record)
            if getattr(self, "lr_finder_record", None) is not None:
                from lrlab.lab.records import write_json_atomic

                write_json_atomic(self.records.path / "lr_finder.json", self.lr_finder_record)
            self._warn_scaled_lr_without_warmup(base_lr, lr)
        self.dist.barrier()
        return None

    def _base_lr(self) -> float:
        cfg = self.config
        if cfg.lr != "auto":
            return float(cfg.lr)
        if self.checkpoint is not None:
            return float(self.checkpoint["lr_base"])
        if self.records.exists():
            return float(self.records.read_config().get("lr_base"))
        from lrlab.lab.auto_lr import pick_lr

        lr, record = pick_lr(self)
        self.lr_finder_record = record
        return lr

    def _warmup_description(self) -> str | None:
        """The warmup this run uses, in updates, or None when it starts without one."""
        bound = self.scheduler.bound()
        if bound.phase_at(0) != "warmup":
            return None
        length = bound.phases[0]._T  # the resolved warmup's own length
        unit = "epochs" if self.config.per == "epoch" else "updates"
        return f"{length} {unit}"

    def _warn_scaled_lr_without_warmup(self, base_lr: float, lr: float) -> None:
        if lr > base_lr * 2 and self._warmup_description() is None:
            msg = (f"the LR was scaled from {base_lr:g} to {lr:g} for a global batch of "
                   f"{self.global_batch} with no warmup; Goyal et al. (2017) warm up over 5 "
                   "epochs: add --schedule \"warmup(5ep) >> ...\"")
            self.records.event("warning", msg)
            print(f"lrlab train: warning: {msg}", file=sys.stderr)

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg, dist = self.config, self.dist
        start_epoch, start_update = 0, 0
        acc = torch.zeros(5, dtype=torch.float64)  # loss sum, correct, seen, gnorm sum, updates
        elapsed = 0.0
        if self.checkpoint is not None:
            ck = self.checkpoint
            self.model.load_state_dict(ck["model"])
            self.optimizer.load_state_dict(ck["optimizer"])
            self.scheduler.load_state_dict(ck["scheduler"])
            restore_rng_state(ck["rng"])
            start_epoch, start_update = int(ck["epoch"]), int(ck["update"])
            acc = ck["accum"].clone()
            elapsed = float(ck["elapsed"])
            if dist.is_main:
                self.records.truncate_metrics(start_epoch)
                self.records.event("resumed", f"resumed at epoch {start_epoch}, update "
                                   f"{start_update} of the epoch")
        elif self.records.exists() and dist.is_main:
            self.records.truncate_metrics(0)  # a run killed before its first checkpoint
        rows = self.records.metrics() if dist.is_main else []
        self.flagged_not_learning = dist.is_main and any(
            e.get("kind") == "not-learning" for e in self.records.events())
        self.first_loss: float | None = self.checkpoint.get("first_loss") if self.checkpoint \
            else None
        n_classes = self.data.num_classes
        bar = self._bar(start_epoch * self.updates_per_epoch + start_update)
        status, stop_info = "running", {}
        self._write_summary("running", rows, elapsed)
        with _StopFlag() as flag:
            for epoch in range(start_epoch, cfg.epochs):
                t0 = time.perf_counter()
                perm = epoch_permutation(len(self.data.x_train), cfg.seed, epoch).to(self.device)
                first_update = start_update if epoch == start_epoch else 0
                if first_update == 0:
                    acc.zero_()
                # closed form: the same value whether or not the epoch was resumed mid-way
                first_t = epoch * self.updates_per_epoch if cfg.per == "step" else epoch
                lr_first = float(self.scheduler.lr_at(first_t)[0])
                ratios: dict[str, float] | None = None
                for u in range(first_update, self.updates_per_epoch):
                    if flag.stop:
                        elapsed += time.perf_counter() - t0
                        return self._interrupt(epoch, u, acc, elapsed, rows, bar)
                    want_ratio = cfg.update_ratio and u == self.updates_per_epoch - 1
                    loss, correct, seen, gnorm, ratio = self._update(perm, u, want_ratio)
                    if ratio is not None:
                        ratios = ratio
                    global_step = epoch * self.updates_per_epoch + u
                    if self.first_loss is None:
                        self.first_loss = loss
                    acc += torch.tensor([loss * seen, correct, seen, gnorm, 1.0],
                                        dtype=torch.float64)
                    bad = not math.isfinite(loss) or loss > EXPLODE_FACTOR * max(
                        self.first_loss, 1e-3)
                    if dist.any_flag(bad, self.device):
                        stop_info = {"update": global_step, "lr": self._current_lr(),
                                     "loss": loss, "epoch": epoch}
                        status = "diverged"
                        break
                    if cfg.per == "step":
                        self.scheduler.step()
                    if bar is not None:
                        bar.update(1)
                        if u % 10 == 0:
                            bar.set_postfix_str(f"ep {epoch} loss {loss:.4f} lr "
                                                f"{self._current_lr():.3g}", refresh=False)
                train_time = time.perf_counter() - t0
                row = self._epoch_row(epoch, acc, lr_first, train_time, ratios,
                                      diverged=status == "diverged")
                elapsed += time.perf_counter() - t0
                row["time"] = elapsed
                if dist.is_main:
                    self.records.append_metrics(row)
                    rows.append(row)
                self._echo_epoch(row, bar)
                if status == "diverged":
                    msg = (f"diverged at update {stop_info['update']} (epoch {epoch}): loss "
                           f"{stop_info['loss']:.4g} with lr {stop_info['lr']:.4g}")
                    if dist.is_main:
                        self.records.event("diverged", msg, **stop_info)
                    break
                self._diagnose(row, n_classes)
                if self.scheduler.plateau_state is not None:
                    metric = row.get("val_loss", row["train_loss"])
                    self.scheduler.report(metric)
                if cfg.per == "epoch":
                    self.scheduler.step()
                self._checkpoint(epoch + 1, 0, torch.zeros(5, dtype=torch.float64), elapsed)
        if bar is not None:
            bar.close()
        if status == "running":
            status = "not-learning" if self._stuck(rows[-1] if rows else None, n_classes) \
                else "ok"
        summary = self._write_summary(status, rows, elapsed, stop_info)
        return RunResult(self.records.path, status, summary)

    def _update(self, perm: torch.Tensor, u: int, want_ratio: bool
                ) -> tuple[float, float, float, float, dict[str, float] | None]:
        cfg = self.config
        x_all, y_all = self.data.x_train, self.data.y_train
        micro, total = update_indices(perm, u, self.global_batch, self.world, self.dist.rank,
                                      cfg.accumulate)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = 0
        for k, idx in enumerate(micro):
            x, y = x_all[idx], y_all[idx]
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            sync = contextlib.nullcontext()
            if self.world > 1 and k < len(micro) - 1:
                sync = self.train_model.no_sync()
            with sync:
                with _autocast(self.device, self.amp):
                    out = self.train_model(x)
                loss = F.cross_entropy(out.float(), y)
                # weight: this micro-batch's share of the whole update (all ranks)
                (loss * (len(idx) * self.world / total)).backward()
            loss_sum += loss.detach() * len(idx)
            correct += (out.detach().argmax(1) == y).sum()
            seen += len(idx)
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
        stats = torch.stack([loss_sum, correct, torch.tensor(float(seen), device=self.device)])
        stats = stats.double()
        if self.world > 1:
            self.dist.all_reduce_sum(stats)
        seen_all = stats[2].item()
        return (stats[0].item() / seen_all, stats[1].item(), seen_all, gnorm.item(), ratio)

    def _current_lr(self) -> float:
        lr = self.optimizer.param_groups[0]["lr"]
        return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)

    def _epoch_row(self, epoch: int, acc: torch.Tensor, lr_first: float, train_time: float,
                   ratios: dict[str, float] | None, diverged: bool) -> dict[str, Any]:
        loss_sum, correct, seen, gnorm_sum, updates = acc.tolist()
        seen = max(seen, 1.0)
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": epoch * self.updates_per_epoch + int(updates),
            "lr": self._current_lr() if self.config.per == "epoch" else lr_first,
            "lr_first": lr_first,
            "lr_last": self._last_used_lr(),
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "grad_norm": gnorm_sum / max(updates, 1.0),
            "examples_per_s": seen / max(train_time, 1e-9),
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
        if ratios is not None:
            row["update_ratio"] = ratios
        return row

    def _last_used_lr(self) -> float:
        """LR of the epoch's last update (the scheduler has already moved past it)."""
        if self.config.per == "epoch":
            return self._current_lr()
        t = max(self.scheduler.count - 1, 0)
        return float(self.scheduler.lr_at(t)[0])

    def _stuck(self, row: dict[str, Any] | None, n_classes: int) -> bool:
        if row is None or row["epoch"] < 1:
            return False
        chance = math.log(n_classes)
        return row["train_loss"] >= 0.97 * chance and row["train_acc"] <= 1.5 / n_classes

    def _diagnose(self, row: dict[str, Any], n_classes: int) -> None:
        if not self.dist.is_main:
            return
        if self._stuck(row, n_classes) and not self.flagged_not_learning:
            self.flagged_not_learning = True
            self.records.event("not-learning", f"train loss {row['train_loss']:.4f} is still "
                               f"at ln({n_classes}) = {math.log(n_classes):.4f} after epoch "
                               f"{row['epoch']}", epoch=row["epoch"])
        for name, r in (row.get("update_ratio") or {}).items():
            if r >= LARGE_UPDATE_RATIO:
                self.records.event("large-update", f"epoch {row['epoch']}: the update of "
                                   f"{name} is {r:.2f}x its weights", epoch=row["epoch"],
                                   param=name, ratio=r)

    def _checkpoint(self, epoch: int, update: int, acc: torch.Tensor, elapsed: float) -> None:
        if not self.dist.is_main:
            self.dist.barrier()
            return
        self.records.save_checkpoint({
            "version": 1, "epoch": epoch, "update": update, "accum": acc.clone(),
            "elapsed": elapsed, "first_loss": self.first_loss, "lr_base": self.lr_base,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": capture_rng_state(),
        })
        self.dist.barrier()

    def _interrupt(self, epoch: int, update: int, acc: torch.Tensor, elapsed: float,
                   rows: list[dict[str, Any]], bar: Any) -> RunResult:
        if bar is not None:
            bar.close()
        self._checkpoint(epoch, update, acc, elapsed)
        if self.dist.is_main:
            self.records.event("interrupted", f"interrupted at epoch {epoch}, update {update} "
                               "of the epoch; continue with --resume")
        summary = self._write_summary("interrupted", rows, elapsed)
        return RunResult(self.records.path, "interrupted", summary)

    def _write_summary(self, status: str, rows: list[dict[str, Any]], elapsed: float,
                       stop: dict[str, Any] | None = None) -> dict[str, Any]:
        accs = [r["test_acc"] for r in rows if "test_acc" in r]
        eps = [r["examples_per_s"] for r in rows if not r.get("diverged")]
        summary: dict[str, Any] = {
            "status": status,
            "epochs_done": sum(1 for r in rows if not r.get("diverged")),
            "epochs": self.config.epochs,
            "best_test_acc": max(accs) if accs else None,
            "final_test_acc": accs[-1] if accs else None,
            "final_train_loss": rows[-1]["train_loss"] if rows else None,
            "final_test_loss": rows[-1].get("test_loss") if rows else None,
            "time_s": elapsed,
            "examples_per_s": sum(eps) / len(eps) if eps else None,
            "lr": self.lr,
            "updates": self.scheduler.count if self.config.per == "step" else
            (rows[-1]["step"] if rows else 0),
        }
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
        if "test_acc" in row:
            parts.append(f"test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f}")
        parts.append(f"{row['examples_per_s']:.0f} ex/s")
        line = "  ".join(parts)
        if bar is not None:
            bar.write(line)
        else:
            print(line, flush=True)


def train(config: TrainConfig, *, resume: bool = False, progress: bool | None = None,
          echo: bool = True) -> RunResult:
    """Run (or with ``resume=True`` continue) one training run and write its records.

    Returns the run's path, status (ok / diverged / not-learning / interrupted) and summary.
    A finished run asked to resume is returned as it is, without training again.
    """
    config.validate()
    dist, device_name = init_distributed(config.device)
    if dist.enabled:
        config.device = device_name
    trainer = _Trainer(config, resume, progress, dist, echo)
    try:
        done = trainer.prepare()
        if done is not None:
            return done
        return trainer.run()
    except KeyboardInterrupt:
        if trainer.records.exists() and dist.is_main:
            summary = trainer.records.summary() or {}
            summary["status"] = "interrupted"
            trainer.records.write_summary(summary)
        raise
