"""Vectorised runs: K runs of one small architecture trained together, in one process.

A comparison is many runs of the same model that differ in seed, LR, schedule, optimizer
hyper-parameters or weight decay. :func:`train_group` trains such runs as one stack: every
parameter is one tensor ``[K, ...]``, the K forward passes are one ``torch.func.vmap`` of
``functional_call`` over the members (each on its own batch), one backward pass gives every
member its own gradient (the members are independent, so the gradient of the sum of their
losses is each one's own), and :mod:`lrlab.optim.stacked` updates them with each member's
own LR (read from its own optimizer's param groups, moved by its own ``Scheduler``), weight
decay and hyper-parameters. K small kernels become one large one.

Each member stays a run of its own, booked by its own
:class:`lrlab.lab.train.session.RunSession` (the one the one-run loop of
``lrlab.lab.train.trainer`` drives): it is set up by the same ``build_run`` with its seed (so
its initial weights are those a lone run has), its epoch ``e`` takes the batches of
``RunSession.begin_epoch`` (``epoch_permutation(n, seed, e)``), and after every update its
own sums, health, divergence check and schedule step are booked by
``RunSession.after_update``; after every epoch ``RunSession.close_epoch`` evaluates it on its
own model (the member's weights copied back), writes its metrics row, checks collapse and
evaluation NaNs, steps per-epoch and plateau schedules and writes its checkpoint (the
optimizer state handed back in torch's layout, the RNG state the lone run would hold). A
member that diverges is recorded as diverged at its update and leaves the stack; the others
go on. Ctrl-C or SIGTERM checkpoints every member where it is. So the run directories are
those a lone run writes (a lone ``lrlab train --resume`` continues a member, and this runner
resumes lone runs) but for one event, ``vectorised``, that names the group.

Which runs may share a stack (:func:`vectorise_reason`, :func:`group_key`, both pure
functions of the configs): the lab's LeNet and MLP (no dropout, no batch norm: a vmapped
forward is then exactly the lone forward) on a dataset of one class per example, an optimizer
of :data:`lrlab.optim.stacked.STACKED_KINDS`, one micro-batch per update, no ``compile``,
no ``sharpness``/``update_ratio`` diagnostics and a fixed ``lr`` (not ``auto``); and, to
stack, the same data, model, batch size, epochs, device and precision. Everything else runs
in its own process (``lrlab.lab.compare.runner``).

Numbers: batched kernels sum in another order than the lone ones, so in float32 a member
drifts from its lone twin by rounding (measured in the README); in float64 the two agree to
1e-10 (``tests/lab/train/test_vectorised.py``). On CUDA the same code runs (bf16 autocast as the
one-run loop), untested on a GPU so far.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from lrlab.errors import LrlabError
from lrlab.lab.data.targets import at_least_float32
from lrlab.lab.records import Divergence
from lrlab.lab.train.config import SEQUENCE_DATASETS, TrainConfig
from lrlab.lab.train.device import autocast, select_device
from lrlab.lab.train.distributed import DistContext
from lrlab.lab.train.session import RunResult, RunSession, StopFlag
from lrlab.optim.stacked import STACKED_KINDS, StackedOptimizer, member_hyper
from lrlab.rng import capture_rng_state, restore_rng_state

__all__ = ["vectorise_reason", "auto_skip_reason", "group_key", "group_runs", "train_group",
           "VECTORISED_MODELS", "stacked_sequential", "sequential_supported"]

#: Models a vmapped forward reproduces exactly (no dropout, no batch norm, no buffers).
VECTORISED_MODELS = ("lenet", "mlp")
#: Datasets whose data depends on the run's seed (the others are the same for every seed).
_SEEDED_DATA = ("blobs",)


def vectorise_reason(config: TrainConfig) -> str | None:
    """Why the run ``config`` cannot train in a stack (one short phrase), or None if it can."""
    model = config.resolved_model().strip().lower()
    if model not in VECTORISED_MODELS:
        return f"model {model}"
    if config.dataset_key() in SEQUENCE_DATASETS:
        return f"dataset {config.dataset} (targets per position)"
    if str(config.optimizer).strip().lower() not in STACKED_KINDS:
        return f"optimizer {config.optimizer}"
    if config.lr == "auto":
        return "lr auto (a range test per run)"
    for key, off in (("accumulate", 1), ("compile", False), ("sharpness", 0),
                     ("update_ratio", False)):
        if getattr(config, key) != off:
            return f"{key.replace('_', '-')} {getattr(config, key)}"
    return None


#: Models whose stacks are measured slower than lone runs on a CPU (``--vectorize auto``
#: leaves them alone there; ``on`` still stacks them). LeNet / Fashion-MNIST at batch 256 is
#: compute-bound: its convolutions already fill the cores, so a stack's grouped convolution
#: saves no kernel overhead, and one process with 2 threads scales worse than two processes
#: with one (quickstart preset, 9 runs, --jobs 2: 123.7 s alone vs 135.6 s stacked, 0.91x;
#: ``benchmarks/vectorised.py --cases preset-quickstart``).
SLOWER_STACKED_ON_CPU = ("lenet",)


def auto_skip_reason(config: TrainConfig) -> str | None:
    """Why ``--vectorize auto`` runs ``config`` alone although it could stack: its model's
    stack was measured slower than lone runs on this device (None: stacking pays)."""
    model = config.resolved_model().strip().lower()
    if model not in SLOWER_STACKED_ON_CPU:
        return None
    try:
        cpu = select_device(config.device).type == "cpu"
    except LrlabError:
        return None  # the run itself will say what is wrong with its device
    return f"model {model} on the CPU: stacking measured slower" if cpu else None


def group_key(config: TrainConfig) -> tuple[Any, ...]:
    """Runs with equal keys may share a stack: the same data, model, batch size, number of
    updates, device and precision (they may differ in seed, optimizer, LR, schedule, weight
    decay, hyper-parameters and param groups)."""
    data_seed = config.seed if config.dataset_key() in _SEEDED_DATA else None
    return (config.dataset_key(), config.data_dir, config.limit, config.val_size,
            config.pixels, config.context, data_seed, config.resolved_model(), config.hidden,
            config.batch_size, config.epochs, config.device, config.amp, config.threads)


def group_runs(configs: Sequence[TrainConfig], mode: str = "auto"
               ) -> tuple[list[list[int]], list[int], dict[int, str]]:
    """Split runs into stacks: ``(groups, alone, reasons)``, indices into ``configs``.

    ``mode`` ``auto``: runs that can share a stack with at least one other do, unless their
    stack is measured slower than lone runs on their device (:func:`auto_skip_reason`); the
    rest run alone (``reasons`` says why, for those that cannot or should not stack).
    ``off``: every run alone. ``on``: every run in a stack (a group of one if it must).

    Raises:
        LrlabError: ``mode`` ``on`` and a run that cannot stack (one line, naming it).
    """
    if mode not in ("auto", "on", "off"):
        raise LrlabError(f"--vectorize: expected auto, on or off, got {mode!r}")
    if mode == "off":
        return [], list(range(len(configs))), {}
    reasons: dict[int, str] = {}
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for i, cfg in enumerate(configs):
        why = vectorise_reason(cfg)
        if why is None and mode == "auto":
            why = auto_skip_reason(cfg)
        if why is not None:
            if mode == "on":
                raise LrlabError(f"--vectorize on: run {cfg.run_name()} cannot be vectorised "
                                 f"({why}); use --vectorize auto to run it in its own process")
            reasons[i] = why
        else:
            by_key.setdefault(group_key(cfg), []).append(i)
    groups = [g for g in by_key.values() if len(g) > 1 or mode == "on"]
    grouped = {i for g in groups for i in g}
    alone = [i for i in range(len(configs)) if i not in grouped]
    return groups, alone, reasons


# -- the stacked forward -------------------------------------------------------------------
_SEQUENTIAL_LAYERS = (torch.nn.Conv2d, torch.nn.ReLU, torch.nn.MaxPool2d, torch.nn.Flatten,
                      torch.nn.Linear)


def sequential_supported(model: torch.nn.Module) -> bool:
    """``model`` is an ``nn.Sequential`` of layers :func:`stacked_sequential` computes (the
    lab's LeNet and MLP): plain convolutions, ReLU, max pooling, a flatten, linear layers."""
    if not isinstance(model, torch.nn.Sequential):
        return False
    for layer in model:
        if not isinstance(layer, _SEQUENTIAL_LAYERS):
            return False
        if isinstance(layer, torch.nn.Conv2d) and (layer.groups != 1 or
                                                  layer.padding_mode != "zeros"):
            return False
        if isinstance(layer, torch.nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
            return False
    return True


def stacked_sequential(model: torch.nn.Sequential, params: dict[str, torch.Tensor],
                       x: torch.Tensor) -> torch.Tensor:
    """The forward of K members of ``model`` at once: ``params[name]`` is ``[K, ...]``,
    ``x`` is ``[K, B, ...]`` (each member's own batch); returns ``[K, B, classes]``.

    What ``vmap`` of the model would compute, with kernels that are fast on a CPU: the K
    convolutions are one grouped convolution over a channels-last ``[B, K*C, H, W]`` tensor
    (member k owns channels ``k*C .. (k+1)*C``; ReLU and max pooling act per channel), and
    the K linear layers one batched matrix product. (``vmap`` also makes a grouped
    convolution, but in a memory layout whose backward pass on the CPU is slower than K
    lone runs: measured in ``benchmarks/vectorised.py``.)
    """
    k, b = x.shape[0], x.shape[1]
    grouped: torch.Tensor | None = None  # [B, K*C, H, W] while in the convolutional part
    stacked: torch.Tensor | None = x  # [K, B, ...] otherwise
    for name, layer in model.named_children():
        if isinstance(layer, torch.nn.Conv2d):
            if grouped is None:
                assert stacked is not None
                c, h, w = stacked.shape[2:]
                grouped = stacked.transpose(0, 1).reshape(b, k * c, h, w).contiguous(
                    memory_format=torch.channels_last)
                stacked = None
            weight = params[f"{name}.weight"]
            bias = params.get(f"{name}.bias")
            grouped = F.conv2d(grouped, weight.reshape(-1, *weight.shape[2:]),
                               None if bias is None else bias.reshape(-1), layer.stride,
                               layer.padding, layer.dilation, groups=k)
        elif isinstance(layer, torch.nn.ReLU):
            if grouped is not None:
                grouped = F.relu(grouped)
            else:
                stacked = F.relu(stacked)
        elif isinstance(layer, torch.nn.MaxPool2d):
            assert grouped is not None, "max pooling before any convolution"
            grouped = F.max_pool2d(grouped, layer.kernel_size, layer.stride, layer.padding,
                                   layer.dilation, layer.ceil_mode)
        elif isinstance(layer, torch.nn.Flatten):
            if grouped is not None:
                c = grouped.shape[1] // k
                stacked = grouped.reshape(b, k, c, *grouped.shape[2:]).transpose(0, 1) \
                    .reshape(k, b, -1)
                grouped = None
            else:
                assert stacked is not None
                stacked = stacked.reshape(k, b, -1)
        elif isinstance(layer, torch.nn.Linear):
            assert stacked is not None and grouped is None, "linear before the flatten"
            weight = params[f"{name}.weight"]
            bias = params.get(f"{name}.bias")
            if bias is None:
                stacked = torch.bmm(stacked, weight.transpose(1, 2))
            else:
                stacked = torch.baddbmm(bias.unsqueeze(1), stacked, weight.transpose(1, 2))
    assert stacked is not None
    return stacked


# -- the group trainer --------------------------------------------------------------------
@dataclass
class _Member:
    """One run of the stack: its session (the run's books), where it starts, and the RNG
    state its lone run would hold (the stack draws no random numbers of its own)."""

    session: RunSession
    epoch: int = 0
    update: int = 0
    rng: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.session.records.path.name

    @property
    def kind(self) -> str:
        return str(self.session.config.optimizer).strip().lower()


class _Stack:
    """Members at the same point of training, their parameters stacked ``[K, ...]``."""

    def __init__(self, members: list[_Member]) -> None:
        # members of one optimizer kind sit next to each other: one stacked rule per slice
        self.members = sorted(members, key=lambda m: STACKED_KINDS.index(m.kind))
        first = self.members[0].session
        self.device, self.amp, self.batch = first.device, first.amp, first.global_batch
        self.updates_per_epoch = first.updates_per_epoch
        self.template = first.model  # functional_call reads its structure, not its weights
        self.names = [n for n, p in first.model.named_parameters() if p.requires_grad]
        self.sequential = sequential_supported(first.model)
        data = first.data
        for m in self.members[1:]:  # train_group shared one copy of the same data
            if m.session.data is not data:
                raise LrlabError(f"run {m.name} does not train on the same data as "
                                 f"{self.members[0].name}; it cannot share their stack")
        self.x, self.y = data.x_train, data.y_train
        with torch.no_grad():
            self.params = [torch.stack([m.session.params[j].detach() for m in self.members])
                           for j in range(len(self.names))]
        self._build_rules()

    def _build_rules(self) -> None:
        """Per-parameter group indices and weight decays, and one stacked rule per kind."""
        gid, wd = [], []
        for m in self.members:
            opt = m.session.optimizer
            where = {id(p): i for i, g in enumerate(opt.param_groups) for p in g["params"]}
            gid.append([where[id(p)] for p in m.session.params])
            wd.append([float(opt.param_groups[i]["weight_decay"]) for i in gid[-1]])
        self.gid = torch.tensor(gid, dtype=torch.long)
        self.wd = torch.tensor(wd, dtype=torch.float64)
        self.rules: list[tuple[int, int, StackedOptimizer]] = []
        start = 0
        while start < len(self.members):
            kind = self.members[start].kind
            stop = start
            while stop < len(self.members) and self.members[stop].kind == kind:
                stop += 1
            part = self.members[start:stop]
            hyper = [member_hyper(kind, m.session.optimizer.param_groups[0]) for m in part]
            with torch.no_grad():
                rule = StackedOptimizer(kind, [p[start:stop] for p in self.params], hyper)
            rule.load_member_states([[m.session.optimizer.state.get(p, {})
                                      for p in m.session.params] for m in part])
            self.rules.append((start, stop, rule))
            start = stop

    # -- one update of every member -------------------------------------------------------
    def update(self, idx: torch.Tensor) -> list[tuple[float, float, float]]:
        """Train every member on its batch ``idx[k]`` (indices ``[K, b]`` into the training
        set); returns each member's (mean loss, correct, gradient norm)."""
        lrs = [[float(g["lr"]) for g in m.session.optimizer.param_groups]
               for m in self.members]
        width = max(len(r) for r in lrs)  # members may have different numbers of groups
        groups = torch.tensor([r + [0.0] * (width - len(r)) for r in lrs], dtype=torch.float64)
        lr = groups.gather(1, self.gid)  # [K, P]: each parameter's LR in each member
        k, b = idx.shape
        x, y = self.x[idx], self.y[idx]
        ps = [p.detach().requires_grad_() for p in self.params]
        template, names = self.template, self.names

        def forward(params: list[torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(template, dict(zip(names, params)), (xb,))

        with autocast(self.device, self.amp):
            if self.sequential:
                out = stacked_sequential(template, dict(zip(names, ps)), x)
            else:
                out = torch.func.vmap(forward)(ps, x)
        o = at_least_float32(out)
        losses = F.cross_entropy(o.reshape(k * b, -1), y.reshape(-1),
                                 reduction="none").view(k, b).mean(1)
        grads = torch.autograd.grad(losses.sum(), ps)
        with torch.no_grad():
            correct = (o.argmax(-1) == y).sum(1).to(losses.dtype)
            gnorm = torch.linalg.vector_norm(
                torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1), dim=1)
            # the lone trainer sums loss and correct in float32, whatever the model's dtype
            stats = torch.stack([(losses.detach() * b).float(), correct.float()]).double()
            stats = torch.cat([stats, gnorm.double()[None]])
            for start, stop, rule in self.rules:
                rule.step([g[start:stop] for g in grads], list(lr[start:stop].T),
                          list(self.wd[start:stop].T))
        rows = stats.double().T.tolist()
        return [(s / b, c, gn) for s, c, gn in rows]

    # -- members in and out ---------------------------------------------------------------
    def sync(self, k: int) -> None:
        """Copy member ``k``'s weights and optimizer state back into its own model and
        optimizer (for its evaluation and checkpoint)."""
        m = self.members[k]
        start, _, rule = next(r for r in self.rules if r[0] <= k < r[1])
        opt = m.session.optimizer
        scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        with torch.no_grad():
            for j, p in enumerate(m.session.params):
                p.copy_(self.params[j][k])
                state = rule.member_state(k - start, j, scalar)
                if state:
                    opt.state[p] = state

    def drop(self, gone: Sequence[int]) -> None:
        """Remove members ``gone`` (diverged or finished) from the stack."""
        keep = [i for i in range(len(self.members)) if i not in set(gone)]
        keep_t = torch.tensor(keep, dtype=torch.long)
        with torch.no_grad():
            self.params = [p.index_select(0, keep_t.to(p.device)) for p in self.params]
        rules, start = [], 0
        for a, b, rule in self.rules:
            local = [i - a for i in keep if a <= i < b]
            if not local:
                continue
            stop = start + len(local)
            with torch.no_grad():
                rule.select(torch.tensor(local, dtype=torch.long),
                            [p[start:stop] for p in self.params])
            rules.append((start, stop, rule))
            start = stop
        self.rules = rules
        self.members = [self.members[i] for i in keep]
        self.gid = self.gid.index_select(0, keep_t)
        self.wd = self.wd.index_select(0, keep_t)


def _close(m: _Member, epoch: int, outcome: Divergence | None, train_time: float
           ) -> Divergence | None:
    """The session's end of epoch for one member; its own time is the stack's training time
    plus its own evaluation."""
    restore_rng_state(m.rng)  # the checkpoint holds the RNG state the lone run would hold
    t0 = time.perf_counter() - train_time
    return m.session.close_epoch(epoch, outcome, t0)


def _train_stack(stack: _Stack, flag: StopFlag, results: dict[str, RunResult]) -> None:
    """Train the members of ``stack`` to the end (or to Ctrl-C): see the module docstring."""
    first = stack.members[0]
    epochs = first.session.config.epochs
    for epoch in range(first.epoch, epochs):
        t0 = time.perf_counter()
        first_update = first.update if epoch == first.epoch else 0
        perm = torch.stack([m.session.begin_epoch(epoch, first_update) for m in stack.members])
        for u in range(first_update, stack.updates_per_epoch):
            if flag.stop:
                spent = time.perf_counter() - t0
                for k, m in enumerate(stack.members):
                    stack.sync(k)
                    restore_rng_state(m.rng)
                    results[m.name] = m.session.interrupt(epoch, spent)
                return
            idx = perm[:, u * stack.batch:(u + 1) * stack.batch]
            out = stack.update(idx)
            gone = []
            for k, (m, (loss, correct, gnorm)) in enumerate(zip(stack.members, out)):
                n = float(idx.shape[1])
                stop = m.session.after_update(epoch, u, loss, correct, n, n, gnorm)
                if stop:
                    _close(m, epoch, stop, time.perf_counter() - t0)
                    results[m.name] = m.session.finish(stop)
                    gone.append(k)
            if gone:
                stack.drop(gone)
                perm = perm.index_select(0, torch.tensor(
                    [i for i in range(len(perm)) if i not in gone], device=perm.device))
                if not stack.members:
                    return
        train_time = time.perf_counter() - t0
        gone = []
        for k, m in enumerate(stack.members):
            stack.sync(k)
            stop = _close(m, epoch, None, train_time)
            if stop:
                results[m.name] = m.session.finish(stop)
                gone.append(k)
        if gone:
            stack.drop(gone)
            if not stack.members:
                return
    for m in stack.members:
        results[m.name] = m.session.finish(None)


def train_group(configs: Sequence[TrainConfig], *, lock_wait: float = 0.0
                ) -> list[RunResult | BaseException]:
    """Train (or resume) the runs ``configs`` together; one result per config, in order: its
    RunResult, or the exception that made it fail (the others go on).

    Finished runs are returned as they are; runs at different points of training (resumed
    from different checkpoints) train as separate stacks, one after the other. Ctrl-C or
    SIGTERM checkpoints every member and records it interrupted (as ``train`` does, the
    results then say ``interrupted``); a second one interrupts at once.
    """
    results: dict[str, RunResult] = {}
    failed: dict[int, BaseException] = {}
    members: list[_Member] = []
    sessions: list[RunSession] = []
    names = [c.validate().run_dir().name for c in configs]
    if len(set(names)) != len(names):
        raise LrlabError("two runs of a vectorised group have the same name")
    try:
        for i, cfg in enumerate(configs):
            t = RunSession(cfg, resume=True, dist=DistContext(), echo=False, lock_wait=lock_wait)
            sessions.append(t)
            try:
                done = t.prepare()
                if done is not None:
                    results[names[i]] = done
                    continue
                reason = vectorise_reason(cfg)
                if reason is not None:
                    raise LrlabError(f"cannot be vectorised ({reason})")
                epoch, update = t.start()
            except Exception as exc:  # one run failing must never stop the others
                t.settle("failed", exc)
                failed[i] = exc
                continue
            for other in members:  # one copy of data that is the same (the usual case)
                d = other.session.data
                if torch.equal(d.x_train, t.data.x_train) and torch.equal(d.y_train,
                                                                          t.data.y_train):
                    t.data = t.parts.data = d
                    break
            members.append(_Member(t, epoch, update, capture_rng_state()))
        by_start: dict[tuple[int, int], list[_Member]] = {}
        for m in members:
            by_start.setdefault((m.epoch, m.update), []).append(m)
        with StopFlag() as flag:
            for part in by_start.values():
                names_in = [m.name for m in part]
                for m in part:
                    m.session.records.event(
                        "vectorised", f"trained in one process with {len(part) - 1} other "
                        "run(s), parameters stacked", runner="vectorised", group=names_in)
                if not flag.stop:
                    _train_stack(_Stack(part), flag, results)
        for m in members:  # a stack that never started: interrupted before its turn
            if m.name not in results:
                m.session.settle("interrupted")
                results[m.name] = RunResult(m.session.records.path, "interrupted",
                                            m.session.records.summary() or {})
    except KeyboardInterrupt:
        for t in sessions:
            if t.records.path.name not in results:
                t.settle("interrupted")
        raise
    except Exception as exc:
        for t in sessions:
            if t.records.path.name not in results:
                t.settle("failed", exc)
        raise
    finally:
        for t in sessions:
            t.records.lock.release()
    return [failed[i] if i in failed else results[names[i]] for i in range(len(configs))]
