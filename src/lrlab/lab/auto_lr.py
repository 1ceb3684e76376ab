"""The LR range test on a lab configuration: ``lrlab find-lr`` and ``lrlab train --lr auto``.

``run_find_lr(config, ...)`` builds the data, the model and the optimizer exactly as
``lrlab train`` would for ``config`` (the same seeded initialisation: ``torch.manual_seed``
and ``random.seed`` with ``config.seed``, then ``build_model``), runs
:func:`lrlab.finder.find_lr` on mini-batches of one global batch (``batch_size ×
accumulate``) taken as slices of random permutations of the training set (drawn from a
generator seeded with ``config.seed``, so the global RNG is not touched), and returns the
result with the ``lrlab train`` command line that uses it.

``pick_lr(trainer)`` is the same test inside a run being set up (``--lr auto``).

Batch-size scaling: the test measures the LR for the batch it ran with (the global batch).
When the config scales its LR (``scale_lr`` linear/sqrt from ``ref_batch``), the LR handed
back as the base is the found LR divided by that scaling factor, so the trainer's scaling
brings it back to exactly the LR that was measured.
"""

from __future__ import annotations

import math
import random
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lrlab.errors import LrlabError
from lrlab.finder import LRFinderResult, find_lr
from lrlab.lab.config import TrainConfig

__all__ = ["run_find_lr", "pick_lr", "train_command", "default_plot_path", "FINDER_DEFAULTS"]

FINDER_DEFAULTS: dict[str, Any] = {"start": 1e-7, "end": 10.0, "steps": 100, "mode": "exp"}

_SEED_OFFSET = 7_777_777  # the batch order of the test differs from every training epoch's
_ADAM_FAMILY = ("adam", "adamw", "amsgrad", "adam-nobias")


def default_plot_path(config: TrainConfig) -> Path:
    """``<out>/find-lr-<dataset>-<model>-<optimizer>.png``."""
    return Path(config.out) / (f"find-lr-{config.dataset}-{config.resolved_model()}-"
                               f"{config.optimizer}.png")


def _batches(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int,
             channels_last: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Slices of successive random permutations of (x, y), forever."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + _SEED_OFFSET)
    n = len(x)
    batch = min(batch, n)
    while True:
        perm = torch.randperm(n, generator=gen).to(x.device)
        for s in range(0, n - batch + 1, batch):
            idx = perm[s:s + batch]
            xb = x[idx]
            if channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, y[idx]


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.float(), y)


def _lr_scale(config: TrainConfig, global_batch: int) -> float:
    """The factor the trainer multiplies the base LR by (1 when it does not scale)."""
    if config.scale_lr == "none" or config.ref_batch is None:
        return 1.0
    from lrlab.optim import scale_lr

    return scale_lr(1.0, global_batch, config.ref_batch, rule=config.scale_lr)


def _run(config: TrainConfig, model: torch.nn.Module, data: Any, device: torch.device,
         amp: torch.dtype | None, global_batch: int, start: float, end: float, steps: int,
         mode: str, choose: str | None) -> LRFinderResult:
    from lrlab.lab.trainer import _optimizer_hyper
    from lrlab.optim import build_optimizer

    # the same param groups as training (no-decay, lr_mult, layer decay): their ratios hold
    optimizer = build_optimizer(config.optimizer, model, start, config.weight_decay,
                                no_decay=config.no_decay, lr_mult=config.lr_mult or None,
                                layer_decay=config.layer_decay, **_optimizer_hyper(config))
    batches = _batches(data.x_train, data.y_train, global_batch, config.seed,
                       config.use_channels_last(device.type))
    result = find_lr(model, optimizer, _loss, batches, start=start, end=end, steps=steps,
                     mode=mode, choose=choose, autocast=amp)
    n = len(data.x_train)
    used = min(global_batch, n)
    result.settings.update(batch=used, n_train=n,
                           epochs_equivalent=result.settings["steps_run"] * used / n)
    return result


def run_find_lr(config: TrainConfig, start: float = 1e-7, end: float = 10.0, steps: int = 100,
                mode: str = "exp", choose: str | None = None,
                plot_path: str | Path | None = None) -> tuple[LRFinderResult, str]:
    """Run the LR range test for ``config``; write the plot; suggest a ``lrlab train`` line.

    Args:
        config: the run the LR is for (dataset, model, optimizer and its hyper-parameters,
            batch size, seed, device...). Its ``lr`` and ``schedule`` are not used.
        start, end, steps, mode: the ramp (see :func:`lrlab.finder.find_lr`).
        choose: ``steepest``, ``valley`` or ``largest-stable`` (None: the default policy).
        plot_path: where to write the plot (None: no plot).

    Returns:
        The result, and the command line that trains with the chosen LR.
    """
    from lrlab.lab.data import load_dataset
    from lrlab.lab.device import autocast_dtype, select_device
    from lrlab.lab.models import build_model, parse_hidden

    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = select_device(config.device)
    amp = autocast_dtype(device, config.amp)
    data = load_dataset(config.dataset, config.data_dir, seed=config.seed,
                        limit=config.limit, pixels=config.pixels).to(device)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    hidden = parse_hidden(config.hidden) if config.hidden else None
    model = build_model(config.resolved_model(), data, hidden=hidden).to(device)
    if config.use_channels_last(device.type) and data.x_train.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    global_batch = config.batch_size * config.accumulate
    result = _run(config, model, data, device, amp, global_batch, start, end, steps, mode,
                  choose)
    if plot_path is not None:
        result.settings["plot"] = str(result.plot(plot_path))
    updates_per_epoch = math.ceil(len(data.x_train) / global_batch)
    return result, train_command(config, result, updates_per_epoch)


def _warmup(config: TrainConfig, updates_per_epoch: int) -> tuple[str, str]:
    """The schedule to suggest and a sentence on its warmup."""
    spec = config.schedule.strip()
    default = TrainConfig.__dataclass_fields__["schedule"].default
    if spec.startswith("warmup"):
        schedule = spec
        note = "your schedule already starts with a warmup"
    else:
        schedule = "warmup(1ep) >> cosine()" if spec == default else f"warmup(1ep) >> {spec}"
        note = (f"warmup(1ep) ramps the LR up over the first epoch ({updates_per_epoch} "
                "updates): the range test started cold at tiny LRs, training starts at the "
                "chosen one")
    if config.optimizer in _ADAM_FAMILY:
        beta2 = config.betas[1] if config.betas is not None else 0.999
        try:
            from lrlab.optim import untuned_warmup_steps

            w = untuned_warmup_steps(beta2)
        except LrlabError:
            w = math.ceil(2 / (1 - beta2))
        note += (f"; for {config.optimizer}, warmup(auto) is the untuned warmup of Ma & Yarats "
                 f"(2021), 2/(1-beta2) = {w} updates for beta2={beta2:g} "
                 f"(= {w / updates_per_epoch:.1f} epochs here)")
    return schedule, note


def train_command(config: TrainConfig, result: LRFinderResult, updates_per_epoch: int) -> str:
    """The ``lrlab train`` line for ``config`` with the chosen LR and a warmup schedule.

    Flags are given only where ``config`` differs from the defaults; the LR is the chosen
    one divided by the config's batch-size scaling factor (see the module docstring). The
    returned string is the command, then ``\\n# `` and a sentence on the warmup.
    """
    if result.chosen_lr is None:
        raise LrlabError("the LR range test gave no usable loss; nothing to suggest")
    defaults = TrainConfig()
    lr = result.chosen_lr / _lr_scale(config, config.batch_size * config.accumulate)
    schedule, note = _warmup(config, updates_per_epoch)
    args = ["lrlab", "train"]
    skip = {"lr", "schedule", "quiet", "name", "extra", "eval_batch_size"}
    for name in TrainConfig.__dataclass_fields__:
        value = getattr(config, name)
        if name in skip or value == getattr(defaults, name):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if value:
                args.append(flag)
        elif name == "betas":
            args += [flag, f"{value[0]:g},{value[1]:g}"]
        else:
            args += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    args += ["--lr", f"{lr:.3g}", "--schedule", schedule]
    return " ".join(shlex.quote(a) for a in args) + f"\n# {note}"


def pick_lr(trainer: Any) -> tuple[float, dict[str, Any]]:
    """``--lr auto``: run the range test on the trainer's model and data, before training.

    The model, the RNGs and everything else are left as they were, so the run then trains
    exactly as a run given the chosen LR would. Returns the base LR (the chosen LR divided
    by the config's batch-size scaling factor) and the record written to ``lr_finder.json``:
    the result's ``to_dict()`` with ``chosen``, ``lr_found`` and ``lr_base``. Under
    torchrun the test runs on rank 0 and its choice is broadcast.
    """
    config: TrainConfig = trainer.config
    dist = getattr(trainer, "dist", None)
    distributed = dist is not None and dist.world_size > 1
    record: dict[str, Any] | None = None
    if not distributed or dist.is_main:
        s = FINDER_DEFAULTS
        result = _run(config, trainer.model, trainer.data, trainer.device, trainer.amp,
                      trainer.global_batch, s["start"], s["end"], s["steps"], s["mode"], None)
        if result.chosen_lr is None:
            raise LrlabError("--lr auto: the LR range test gave no usable loss ("
                             f"{result.stop_reason}); give --lr a number")
        base = result.chosen_lr / _lr_scale(config, trainer.global_batch)
        record = result.to_dict()
        record.update(chosen=result.chosen, lr_found=result.chosen_lr, lr_base=base)
    if distributed:
        record = dist.broadcast_object(record)  # type: ignore[assignment]
    assert record is not None
    return float(record["lr_base"]), record
