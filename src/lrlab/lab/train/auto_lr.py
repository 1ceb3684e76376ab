"""The LR range test on a lab configuration: ``lrlab find-lr`` and ``lrlab train --lr auto``.

``run_find_lr(config, ...)`` sets the run up with :func:`lrlab.lab.train.parts.build_run`, the
one set-up ``lrlab train`` uses (same data and validation split, same seeded model, same
param groups), runs :func:`lrlab.finder.find_lr` on mini-batches of one global batch
(``batch_size × accumulate``) taken as slices of random permutations of the training set
(drawn from a generator seeded with ``config.seed``, so the global RNG is not touched), and
returns the result with the ``lrlab train`` command line that uses it.

``pick_lr(parts, dist)`` is the same test on the parts of a run being set up (``--lr
auto``).

Which curve chooses: whatever chooses reads validation (docs/design.md, *Honest numbers*). When
the dataset has a validation split, the model is evaluated after every update of the ramp
on a fixed subset of it, ``VAL_EXAMPLES`` = 1,024 examples (all of them when the split is
smaller: 200 for ``blobs``), drawn once by a permutation seeded with ``VAL_SUBSET_SEED``
(the same examples for every run and seed), kept in the split's order and evaluated in
batches of ``eval_batch_size``; the suggestions are read on that validation loss. Without
a validation split (``val_size=0``) they are read on the training loss. The result says
which (``curve_used``, ``settings["val_examples"]``).

What it costs, and why 1,024: one forward pass over the subset per update. Measured on
one CPU thread (a shared 2-core machine, 100-update ramps, ms per update without / with
256 / 512 / 1,024 / 2,048 validation examples): LeNet on Fashion-MNIST, batch 256, SGD
19.9 / 24.6 / 32.1 / 48.0 / 77.7, AdamW 18.1 / 25.6 / 35.4 / 50.4 / 81.4; the unit-6 MLP
(batch 32) 0.4–0.7 / 0.7–1.0 / 0.8–1.0 / 1.0–1.3 / 1.2–1.5. So 1,024 examples make the
LeNet test 2.4–2.8× as long as on the training loss alone (2,048: 3.9–4.5×). On those four
workloads 1,024 and 2,048 examples gave the same three suggestions (``python
benchmarks/find_lr_quality.py --cost-only`` repeats the LeNet timing: 2.41× for SGD, 2.47×
for AdamW, medians of three alternated runs); 256 and 512 moved the MLP's ``minimum`` by
one or two steps of the ramp. A fixed set has no batch-to-batch sampling noise, so its
curve is far smoother than the training loss: on the MLP with SGD at batch 32 the
training curve's fall (7 %) is within its noise (nothing trained, by the rule of
:mod:`lrlab.finder`), while the validation curve's is clear.

Sequence datasets (``modadd``, ``chars``): the loss is the trainer's, the mean over the
counted targets (:mod:`lrlab.lab.data.targets`). :func:`lrlab.finder.find_lr` weights each
validation batch's mean loss by its number of examples; as every sequence of these datasets
holds the same number of counted targets (1 for ``modadd``, ``context`` for ``chars``), that
is exactly the mean over the counted targets of the subset. ``VAL_EXAMPLES`` counts
sequences (1,024 windows of ``chars``, every one of ``modadd``'s 53).

Batch-size scaling: the test measures the LR for the batch it ran with (the global batch).
When the config scales its LR (``scale_lr`` linear/sqrt from ``ref_batch``), the LR handed
back as the base is the found LR divided by that scaling factor, so the trainer's scaling
brings it back to exactly the LR that was measured.

The suggested schedule is built from Schedule objects, never by editing strings: the
run's own schedule ``parse(config.schedule)`` with ``warmup("1ep") >>`` in front of it (a
``* plateau(...)`` factor is kept as it is), unless it already starts with a warmup (or a
``onecycle``, which ramps up by itself); the default ``constant()`` becomes
``warmup(1ep) >> cosine()``. If the warmup does not fit the run (fixed phase lengths that
already fill it), the run's own schedule is suggested unchanged and the note says why.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from lrlab.errors import LrlabError
from lrlab.finder import LRFinderResult, find_lr, plot_target
from lrlab.lab.data.targets import mean_loss
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.distributed import DistContext
from lrlab.lab.train.parts import RunParts, build_run, optimizer_hyper
from lrlab.schedules import Schedule, constant, cosine, parse, untuned_warmup_steps, warmup

__all__ = ["run_find_lr", "pick_lr", "train_command", "train_flags", "suggested_schedule",
           "default_plot_path", "validation_batches", "FINDER_DEFAULTS", "VAL_EXAMPLES",
           "VAL_SUBSET_SEED"]

FINDER_DEFAULTS: dict[str, Any] = {"start": 1e-7, "end": 10.0, "steps": 100, "mode": "exp"}

#: Validation examples evaluated after every update of the ramp (module docstring).
VAL_EXAMPLES = 1024
#: Seed of the permutation that picks them (fixed: every run sees the same examples).
VAL_SUBSET_SEED = 20_240_917

_SEED_OFFSET = 7_777_777  # the batch order of the test differs from every training epoch's
_ADAM_FAMILY = ("adam", "adamw", "amsgrad", "adam-nobias")
# fields of TrainConfig that the printed train line does not carry, and why
_NOT_CARRIED = {"lr": "replaced by the chosen LR", "schedule": "replaced by the suggestion",
                "quiet": "find-lr's own output setting",
                "eval_batch_size": "no flag: set it in a --config file"}


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


def validation_batches(data: Any, eval_batch: int, channels_last: bool = False,
                       examples: int = VAL_EXAMPLES) -> list[tuple[torch.Tensor, torch.Tensor]] \
        | None:
    """The fixed validation subset the range test reads, in batches; None without a split.

    ``min(examples, n_val)`` examples chosen by a permutation seeded with
    ``VAL_SUBSET_SEED``, kept in the split's order, cut into batches of ``eval_batch``.
    """
    x, y = getattr(data, "x_val", None), getattr(data, "y_val", None)
    if x is None or y is None or len(y) == 0:
        return None
    n = len(y)
    gen = torch.Generator().manual_seed(VAL_SUBSET_SEED)
    idx = torch.randperm(n, generator=gen)[:min(examples, n)].sort().values.to(x.device)
    xs, ys = x[idx], y[idx]
    out = []
    for s in range(0, len(ys), eval_batch):
        xb = xs[s:s + eval_batch]
        if channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        out.append((xb, ys[s:s + eval_batch]))
    return out


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The trainer's loss: mean cross-entropy over the counted targets (lrlab.lab.data.targets)."""
    return mean_loss(out, y)


def _lr_scale(config: TrainConfig, global_batch: int) -> float:
    """The factor the trainer multiplies the base LR by (1 when it does not scale)."""
    if config.scale_lr == "none" or config.ref_batch is None:
        return 1.0
    from lrlab.optim import scale_lr

    return scale_lr(1.0, global_batch, config.ref_batch, rule=config.scale_lr)


def _run(parts: RunParts, start: float, end: float, steps: int, mode: str,
         choose: str | None) -> LRFinderResult:
    config, data = parts.config, parts.data
    # the same param groups as training (no-decay, lr_mult, layer decay): their ratios hold
    optimizer = parts.make_optimizer(start)
    batches = _batches(data.x_train, data.y_train, parts.global_batch, config.seed,
                       parts.channels_last)
    val = validation_batches(data, config.eval_batch_size, parts.channels_last)
    result = find_lr(parts.model, optimizer, _loss, batches, start=start, end=end, steps=steps,
                     mode=mode, choose=choose, autocast=parts.amp, val_batches=val)
    n = len(data.x_train)
    used = min(parts.global_batch, n)
    result.settings.update(batch=used, n_train=n,
                           epochs_equivalent=result.settings["steps_run"] * used / n,
                           val_examples=sum(len(b[1]) for b in val) if val else 0)
    return result


def run_find_lr(config: TrainConfig, start: float = 1e-7, end: float = 10.0, steps: int = 100,
                mode: str = "exp", choose: str | None = None,
                plot_path: str | Path | None = None) -> tuple[LRFinderResult, str | None]:
    """Run the LR range test for ``config``; write the plot; suggest a ``lrlab train`` line.

    Args:
        config: the run the LR is for (dataset and its validation split, model, optimizer
            and its hyper-parameters, batch size, seed, device...). Its ``lr`` is not used;
            its ``schedule`` is the base of the suggested one.
        start, end, steps, mode: the ramp (see :func:`lrlab.finder.find_lr`).
        choose: ``steepest``, ``valley`` or ``minimum`` (None: the default, ``minimum``).
        plot_path: where to write the plot (None: no plot).

    Returns:
        The result, and the command line that trains with the chosen LR (None when nothing
        trained: ``result.chosen_reason`` says so).
    """
    if plot_path is not None:
        plot_path = plot_target(plot_path)  # a bad path fails before the test runs
    parts = build_run(config)
    config, updates_per_epoch = parts.config, parts.updates_per_epoch
    why = _fits(config, parse(config.schedule), updates_per_epoch)
    if why is not None:  # the run itself could not start: say so before the test runs
        raise LrlabError(f"schedule {config.schedule!r} does not fit this run: {why}")
    result = _run(parts, start, end, steps, mode, choose)
    if plot_path is not None:
        result.settings["plot"] = str(result.plot(plot_path))
    if result.chosen_lr is None:
        return result, None
    return result, train_command(config, result.chosen_lr, updates_per_epoch)


def _fits(config: TrainConfig, schedule: Schedule, updates_per_epoch: int) -> str | None:
    """None when the trainer can bind ``schedule`` to this run, else the reason it cannot."""
    from lrlab.optim import build_optimizer
    from lrlab.scheduler import Scheduler

    optimizer = build_optimizer(config.optimizer, torch.nn.Linear(1, 1), 1.0,
                                config.weight_decay, **optimizer_hyper(config))
    try:
        Scheduler(optimizer, schedule, total_steps=updates_per_epoch * config.epochs,
                  steps_per_epoch=updates_per_epoch, per=config.per,  # type: ignore[arg-type]
                  epochs=config.epochs if config.per == "epoch" else None)
    except LrlabError as exc:
        return " ".join(str(exc).split())
    return None


def suggested_schedule(config: TrainConfig, updates_per_epoch: int) -> tuple[Schedule, str]:
    """The schedule to train the chosen LR with, and a sentence on its warmup.

    Composed from Schedule objects (module docstring), so ``str()`` of it always parses.
    """
    from lrlab.optim.build import SCHEDULE_FREE

    own = parse(config.schedule)
    schedule_free = config.optimizer.strip().lower() in SCHEDULE_FREE
    if own.phases[0].name in ("warmup", "onecycle"):
        schedule, note = own, f"your schedule already starts with a {own.phases[0].name}"
    else:
        # a Schedule-Free optimizer keeps constant(): its average replaces the decay
        base = cosine() if own == constant() and not schedule_free else own
        schedule = warmup("1ep") >> base
        note = (f"warmup(1ep) ramps the LR up over the first epoch ({updates_per_epoch} "
                "updates): the range test started cold at tiny LRs, training starts at the "
                "chosen one")
        if base is not own:
            note += "; your schedule was the default constant(), so the LR decays with cosine()"
        why = _fits(config, schedule, updates_per_epoch)
        if why is not None:
            schedule = own
            note = (f"your schedule is kept without a warmup: with warmup(1ep) in front it "
                    f"does not fit the run ({why})")
    if schedule_free:
        note += (f"; {config.optimizer} is schedule-free: no decay, and warmup(T) is its own "
                 "warmup_steps=T")
    if config.optimizer in _ADAM_FAMILY:
        beta2 = config.betas[1] if config.betas is not None else 0.999
        w = untuned_warmup_steps(beta2)  # betas were validated with the config: in [0, 1)
        note += (f"; for {config.optimizer}, warmup(auto) is the untuned warmup of Ma & Yarats "
                 f"(2021), 2/(1-beta2) = {w} updates for beta2={beta2:g} "
                 f"(= {w / updates_per_epoch:.1f} epochs here)")
    return schedule, note


def train_flags(config: TrainConfig) -> list[str]:
    """The ``lrlab train`` flags that give ``config``, in field order, for the fields where
    it differs from the defaults. Not carried: ``lr`` and ``schedule`` (the caller adds its
    own), ``quiet`` and ``eval_batch_size`` (no flag). The range test's and the tuner's
    ``lrlab train`` lines are built on it."""
    defaults = TrainConfig()
    args: list[str] = []
    for name in TrainConfig.__dataclass_fields__:
        value = getattr(config, name)
        if name in _NOT_CARRIED or value == getattr(defaults, name):
            continue
        flag = "--" + name.replace("_", "-")
        if name == "channels_last":
            args.append(flag if value else "--no-channels-last")
        elif isinstance(value, bool):
            if value:
                args.append(flag)
        elif name == "betas":
            args += [flag, f"{value[0]!r},{value[1]!r}"]
        elif name == "no_decay":
            for pattern in value:
                args += [flag, pattern]
        elif name == "lr_mult":
            for pattern, mult in value.items():
                args += [flag, f"{pattern}={mult!r}"]
        else:
            args += [flag, repr(value) if isinstance(value, float) else str(value)]
    return args


def train_command(config: TrainConfig, chosen_lr: float, updates_per_epoch: int) -> str:
    """The ``lrlab train`` line for ``config`` with ``chosen_lr`` and a warmup schedule.

    Flags are given only where ``config`` differs from the defaults (``eval_batch_size``
    has no flag and is not carried); the LR is ``chosen_lr`` divided by the config's
    batch-size scaling factor (see the module docstring). The returned string is the
    command, then ``\\n# `` and a sentence on the warmup.
    """
    lr = chosen_lr / _lr_scale(config, config.batch_size * config.accumulate)
    schedule, note = suggested_schedule(config, updates_per_epoch)
    args = ["lrlab", "train", *train_flags(config), "--lr", f"{lr:.3g}", "--schedule",
            str(schedule)]
    return " ".join(shlex.quote(a) for a in args) + f"\n# {note}"


def pick_lr(parts: RunParts, dist: DistContext | None = None) -> tuple[float, dict[str, Any]]:
    """``--lr auto``: run the range test on the parts of a run being set up, before training.

    ``parts`` is the run's :class:`~lrlab.lab.train.parts.RunParts`. The model, the RNGs
    and everything else are left as they were, so the run then trains exactly as a run
    given the chosen LR would. Returns the base LR (the chosen LR divided by the config's
    batch-size scaling factor) and the record written to ``lr_finder.json``: the result's
    ``to_dict()`` with ``chosen``, ``lr_found`` and ``lr_base``. Under torchrun (``dist``
    with ``world_size > 1``) the test runs on rank 0 and its choice is broadcast. When
    nothing trained, LrlabError (one line, on every rank): a run needs an LR, and the test
    found none.
    """
    distributed = dist is not None and dist.world_size > 1
    record: dict[str, Any] | None = None
    if not distributed or dist.is_main:
        s = FINDER_DEFAULTS
        result = _run(parts, s["start"], s["end"], s["steps"], s["mode"], None)
        if result.chosen_lr is None:
            record = {"error": f"--lr auto: the LR range test suggests no LR "
                               f"({result.chosen_reason}); give --lr a number"}
        else:
            base = result.chosen_lr / _lr_scale(parts.config, parts.global_batch)
            record = result.to_dict()
            record.update(chosen=result.chosen, lr_found=result.chosen_lr, lr_base=base)
    if distributed:
        record = dist.broadcast_object(record)  # type: ignore[assignment]
    assert record is not None
    if "error" in record:
        raise LrlabError(record["error"])
    return float(record["lr_base"]), record
