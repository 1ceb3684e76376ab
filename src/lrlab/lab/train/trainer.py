"""The one-run loop: ``train(config)`` runs (or resumes) one run and writes its records.

The loop only steps; a :class:`lrlab.lab.train.session.RunSession` keeps the run's books
(set-up, resume, rows, health checks, records, checkpoints, interrupts: see there). The
stacked loop of many runs at once (``lrlab.lab.train.vectorised``) drives the same session,
and is tested against this loop.

Batches: epoch ``e`` takes the sample order ``epoch_permutation(n, seed, e)``. Update ``u``
of an epoch takes the slice ``perm[u*G:(u+1)*G]`` with G = batch_size × world size ×
accumulate (the last update of an epoch may be smaller); under torchrun each rank takes its
contiguous share of that slice, then splits it into ``accumulate`` micro-batches
(:func:`update_indices`). Each micro-batch loss is weighted by its share of the update's
counted targets (:mod:`lrlab.lab.data.targets`; for one class per example: its share of the
examples), so the gradient is the mean over the whole update whatever the split:
accumulation K with batch b equals one batch K·b, and W ranks with batch b equal one process
with batch W·b. When the last slice of an epoch holds fewer samples than ranks (or
micro-batches), a rank may get none: it still runs its forward and backward passes on the
empty batch (weight 0), so every rank takes part in the same gradient all-reduces and none
waits for another.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lrlab.lab.data.targets import at_least_float32, counted
from lrlab.lab.data.targets import correct as n_correct
from lrlab.lab.records import FINISHED, Divergence
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.device import autocast
from lrlab.lab.train.distributed import init_distributed

# StopFlag (the loop's Ctrl-C flag) is looked up here when a run starts: a test stands in
from lrlab.lab.train.session import (
    EpochSums,
    RunResult,
    RunSession,
    StopFlag,
    epoch_permutation,
    evaluate,
)

__all__ = ["train", "RunResult", "update_indices", "epoch_permutation", "evaluate", "FINISHED",
           "EpochSums"]

_INTERRUPTED = "interrupted"


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


def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack(norms))


class _LoneLoop:
    """The updates of one run, booked by its ``session``; ``progress`` shows a bar,
    ``on_epoch`` may end the run after an epoch (see :func:`train`)."""

    def __init__(self, session: RunSession, progress: bool | None,
                 on_epoch: Callable[[dict[str, Any]], bool] | None = None) -> None:
        self.session = session
        self.on_epoch = on_epoch
        if progress is None:
            progress = not session.config.quiet and sys.stderr.isatty()
        self.progress = progress and session.dist.is_main

    def run(self) -> RunResult:
        s = self.session
        cfg = s.config
        start_epoch, start_update = s.start()
        bar = self._bar(start_epoch * s.updates_per_epoch + start_update)
        stop: Divergence | None = None
        pruned = False
        with StopFlag() as flag:
            for epoch in range(start_epoch, cfg.epochs):
                t0 = time.perf_counter()
                first_update = start_update if epoch == start_epoch else 0
                outcome = self._train_epoch(epoch, first_update, flag, bar)
                if outcome == _INTERRUPTED:
                    return s.interrupt(epoch, time.perf_counter() - t0, bar)
                stop = s.close_epoch(epoch, outcome, t0, bar)
                if stop:
                    break
                if self.on_epoch is not None and epoch + 1 < cfg.epochs and s.rows and \
                        self.on_epoch(s.rows[-1]):
                    pruned = True
                    break
        if bar is not None:
            bar.close()
        return s.finish(stop, pruned=pruned)

    def _train_epoch(self, epoch: int, first_update: int, flag: StopFlag, bar: Any
                     ) -> Divergence | str | None:
        """Train the updates of ``epoch`` from ``first_update``; None when it completed,
        ``"interrupted"`` after Ctrl-C, or the divergence that stopped it."""
        s = self.session
        perm = s.begin_epoch(epoch, first_update)
        for u in range(first_update, s.updates_per_epoch):
            if flag.stop:
                return _INTERRUPTED
            want_ratio = s.config.update_ratio and u == s.updates_per_epoch - 1
            loss, correct, seen, targets, gnorm, ratio = self._update(perm, u, want_ratio)
            if ratio is not None:
                s.ratios = ratio
            stop = s.after_update(epoch, u, loss, correct, seen, targets, gnorm)
            if stop:
                return stop
            if bar is not None:
                bar.update(1)
                if u % 10 == 0:
                    bar.set_postfix_str(f"ep {epoch} loss {loss:.4f} lr "
                                        f"{s.current_lr():.3g}", refresh=False)
        return None

    def _update_targets(self, perm: torch.Tensor, u: int, total: int) -> int:
        """Counted targets of update ``u`` on all ranks together (its ``total`` examples when
        each example is one target): the denominator of every micro-batch's weight."""
        y_all = self.session.data.y_train
        if y_all.dim() == 1:
            return total
        batch = self.session.global_batch
        return counted(y_all[perm[u * batch:(u + 1) * batch]])

    def _update(self, perm: torch.Tensor, u: int, want_ratio: bool
                ) -> tuple[float, float, float, float, float, dict[str, float] | None]:
        s = self.session
        x_all, y_all = s.data.x_train, s.data.y_train
        world, device, model = s.world, s.device, s.train_model
        micro, total = update_indices(perm, u, s.global_batch, world, s.dist.rank,
                                      s.config.accumulate)
        total = self._update_targets(perm, u, total)
        s.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = targets = 0
        for k, idx in enumerate(micro):
            x, y = s.parts.inputs(x_all[idx]), y_all[idx]
            n = counted(y)
            sync = contextlib.nullcontext()
            if world > 1 and k < len(micro) - 1:
                sync = model.no_sync()
            with sync:
                with autocast(device, s.amp):
                    out = model(x)
                if n:
                    o = at_least_float32(out).reshape(-1, out.shape[-1])
                    t = y.reshape(-1)
                    loss = F.cross_entropy(o, t)  # the mean over the counted targets
                    # weight: this micro-batch's share of the whole update (all ranks)
                    (loss * (n * world / total)).backward()
                    loss_sum += loss.detach() * n
                    correct += n_correct(out.detach(), y)
                else:  # an empty share: take part in the all-reduce with zero gradients
                    (out.float().sum() * 0.0).backward()
            seen += len(idx)
            targets += n
        gnorm = _grad_norm(s.params)
        before = None
        if want_ratio:
            before = [p.detach().clone() for p in s.params]
        s.optimizer.step()
        ratio = None
        if before is not None:
            names = [n for n, p in s.model.named_parameters() if p.requires_grad]
            ratio = {}
            for name, p, b in zip(names, s.params, before):
                w = b.norm().item()
                ratio[name] = (p.detach() - b).norm().item() / w if w > 0 else float("inf")
        stats = torch.stack([loss_sum, correct, torch.tensor(float(seen), device=device),
                             torch.tensor(float(targets), device=device)])
        stats = stats.double()
        if world > 1:
            s.dist.all_reduce_sum(stats)
        seen_all, targets_all = stats[2].item(), stats[3].item()
        return (stats[0].item() / max(targets_all, 1.0), stats[1].item(), seen_all, targets_all,
                gnorm.item(), ratio)

    def _bar(self, initial: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.session.total_updates, initial=initial, unit="upd", leave=False,
                    dynamic_ncols=True, mininterval=0.25)


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
    session = RunSession(config, resume=resume, dist=dist, echo=echo, lock_wait=lock_wait)
    loop = _LoneLoop(session, progress, on_epoch)
    clean = False
    try:
        done = session.prepare()
        result = done if done is not None else loop.run()
        clean = True
        return result
    except KeyboardInterrupt:
        session.settle("interrupted")
        raise
    except Exception as exc:
        session.settle("failed", exc)
        raise
    finally:
        session.records.lock.release()
        dist.close(clean=clean)
