"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

One update rule, three execution paths:

- ``single``: a plain loop over tensors with in-place torch ops (the readable reference);
- ``foreach``: ``torch._foreach_*`` multi-tensor ops; on CPU the tensors are cut into
  cache-sized blocks so that the intermediate passes of one block stay in cache. A tensor
  larger than a block is cut along its storage order when the parameter, its gradient and
  its momentum share one dense layout (contiguous, channels-last, transposed, any permuted
  ``as_strided``): the update is elementwise, so flat slices of the same storage positions
  line up. Anything else (a strided slice, a gradient laid out unlike its parameter) is
  updated whole, with its own temporary buffer;
- ``fused``: ``torch.compile`` of the whole step, which fuses it into one pass over memory
  (C++/OpenMP on CPU, Triton on CUDA).

``impl="auto"`` picks ``fused`` when the step is large enough to repay the one-off compile
and falls back to ``foreach`` (with one warning) when compilation is unavailable or fails.

Non-finite gradients: ``torch.sign(nan)`` is 0, so a Lion written with ``torch.sign`` freezes
a coordinate whose gradient was NaN once, silently: its momentum stays NaN and every later
update is 0, while the loss may stay finite. Here, on every path, a coordinate whose gradient
is NaN or ±inf gets a NaN update, so its weight becomes NaN, the next loss is NaN and the
trainer's divergence check stops the run (with the step and LR), as it does for torch's SGD
and Adam, whose updates carry the NaN by themselves. No step is skipped and nothing waits on
the host. (Under AMP, ``torch.amp.GradScaler`` skips steps with inf/NaN gradients before the
optimizer sees them.)
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from lrlab.errors import LrlabError
from lrlab.tensors import as_float

Impl = Literal["auto", "single", "foreach", "fused"]
IMPLS: tuple[str, ...] = ("auto", "single", "foreach", "fused")

# Below this many parameters (with gradients) "auto" uses foreach: a compiled call costs a
# one-off compile of several seconds and ~0.1 ms of guard checks per step, which small
# models never earn back. Measured with benchmarks/optim_step.py on a 2-core CPU.
AUTO_FUSED_MIN_NUMEL = 1 << 20
# Elements per cache block of the CPU foreach path (p, g, m and the buffer: 8 MiB in fp32).
CPU_BLOCK_NUMEL = 1 << 19


def _real(name: str, value: Any) -> float:
    """A Python number (not a bool or a string) as a float, else LrlabError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise LrlabError(f"Lion {name} must be a number, got {value!r}")
    return float(value)


def _check_hyper(lr: Any, betas: Any, weight_decay: Any) -> None:
    """Raise LrlabError for hyperparameters Lion cannot use."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise LrlabError(f"Lion lr must be a number or a 1-element tensor, got shape "
                             f"{tuple(lr.shape)}")
        lr_value = float(lr.detach().reshape(()).item()) if lr.device.type == "cpu" else 0.0
    else:
        lr_value = _real("lr", lr)
    if not 0.0 <= lr_value < math.inf:
        raise LrlabError(f"Lion lr must be finite and >= 0, got {lr_value}")
    if isinstance(betas, str) or not isinstance(betas, Sequence) or len(betas) != 2:
        raise LrlabError(f"Lion betas must be a pair of numbers, got {betas!r}")
    for i, b in enumerate(betas):
        if not 0.0 <= _real(f"betas[{i}]", b) < 1.0:
            raise LrlabError(f"Lion betas[{i}] must be in [0, 1), got {b}")
    if not 0.0 <= _real("weight_decay", weight_decay) < math.inf:
        raise LrlabError(f"Lion weight_decay must be finite and >= 0, got {weight_decay}")


# --------------------------------------------------------------------------- single
def _lion_single(params: list[Tensor], grads: list[Tensor], avgs: list[Tensor], *,
                 lr: float, wd: float, beta1: float, beta2: float, maximize: bool) -> None:
    for p, g, m in zip(params, grads, avgs):
        if maximize:
            g = torch.neg(g)
        if wd != 0.0:
            p.mul_(1.0 - lr * wd)
        c = torch.lerp(g, m, beta1)  # beta1*m + (1-beta1)*g
        c.sign_().add_(g, alpha=0.0)  # NaN where g is NaN/inf (torch.sign(nan) is 0)
        p.add_(c, alpha=-lr)
        m.lerp_(g, 1.0 - beta2)  # beta2*m + (1-beta2)*g


# -------------------------------------------------------------------------- foreach
def _flat_views(ts: Sequence[Tensor]) -> list[Tensor] | None:
    """1-D views of tensors that share one dense layout, in storage order; else None.

    A dense tensor fills one storage range without gaps or overlap: contiguous, channels-last,
    a transpose (``w.t()``), any permutation of those. Permuting its dims from the largest
    stride to the smallest makes it contiguous, and tensors with the same shape and strides
    line up element for element under the same permutation, so an elementwise update can run
    on flat slices of them. Tensors that differ in layout, or are not dense (a strided slice),
    give None and are updated whole.
    """
    first = ts[0]
    if any(t.shape != first.shape or t.stride() != first.stride() for t in ts[1:]):
        return None
    order = sorted(range(first.dim()), key=lambda d: -first.stride(d))
    flats = []
    for t in ts:
        permuted = t.permute(order)
        if not permuted.is_contiguous():
            return None
        flats.append(permuted.view(-1))
    return flats


def _blocks(lists: Sequence[list[Tensor]], block: int | None) -> Iterable[list[list[Tensor]]]:
    """Yield the parallel tensor lists cut into blocks of about ``block`` elements.

    A tensor larger than a block is split into flat slices when it and its partners share a
    dense layout (see :func:`_flat_views`; contiguous, channels-last and transposed tensors
    do); otherwise it forms a block of its own, larger than ``block``. ``block=None`` yields
    the lists whole.
    """
    if block is None:
        yield [list(ts) for ts in lists]
        return
    cur: list[list[Tensor]] = [[] for _ in lists]
    size = 0
    for ts in zip(*lists):
        n = ts[0].numel()
        flats = _flat_views(ts) if n > block else None
        if flats is not None:
            for start in range(0, n, block):
                if size:
                    yield cur
                    cur, size = [[] for _ in lists], 0
                for out, f in zip(cur, flats):
                    out.append(f[start:start + block])
                size = min(block, n - start)
            continue
        if size and size + n > block:
            yield cur
            cur, size = [[] for _ in lists], 0
        for out, t in zip(cur, ts):
            out.append(t)
        size += n
    if size or cur[0]:
        yield cur


def _lion_foreach(params: list[Tensor], grads: list[Tensor], avgs: list[Tensor], *,
                  lr: float, wd: float, beta1: float, beta2: float, maximize: bool) -> None:
    by_key: dict[tuple[torch.device, torch.dtype], tuple[list, list, list]] = {}
    for p, g, m in zip(params, grads, avgs):
        ps, gs, ms = by_key.setdefault((p.device, p.dtype), ([], [], []))
        ps.append(p)
        gs.append(g)
        ms.append(m)
    for (device, _), (ps, gs, ms) in by_key.items():
        if maximize:
            gs = list(torch._foreach_neg(gs))
        if device.type != "cpu":
            blocks: Iterable[list[list[Tensor]]] = _blocks((ps, gs, ms), None)
            scratch = None
        else:  # cache blocking; one reused buffer instead of a fresh allocation per block
            blocks = _blocks((ps, gs, ms), CPU_BLOCK_NUMEL)
            scratch = torch.empty(min(CPU_BLOCK_NUMEL, sum(p.numel() for p in ps)),
                                  dtype=ps[0].dtype, device=device)
        for bp, bg, bm in blocks:
            if scratch is None or sum(t.numel() for t in bg) > scratch.numel():
                # no buffer (accelerators), or a tensor that could not be cut (see _blocks)
                c = torch._foreach_lerp(bg, bm, beta1)  # beta1*m + (1-beta1)*g
            else:
                c, off = [], 0
                for t in bg:
                    c.append(scratch[off:off + t.numel()].view(t.shape))
                    off += t.numel()
                torch._foreach_copy_(c, bg)
                torch._foreach_lerp_(c, bm, beta1)  # beta1*m + (1-beta1)*g
            torch._foreach_sign_(c)
            torch._foreach_add_(c, bg, alpha=0.0)  # NaN where g is NaN/inf
            if wd != 0.0:
                torch._foreach_mul_(bp, 1.0 - lr * wd)
            torch._foreach_add_(bp, c, alpha=-lr)
            torch._foreach_lerp_(bm, bg, 1.0 - beta2)


# ---------------------------------------------------------------------------- fused
def _lion_lists(params: list[Tensor], grads: list[Tensor], avgs: list[Tensor],
                hyper: list[Tensor], group_of: tuple[int, ...],
                maximize: tuple[bool, ...]) -> None:
    """The whole step written elementwise, for torch.compile to fuse into one pass.

    ``hyper[k]`` is a float64 tensor ``[lr, wd, beta1, beta2]`` of param group k and
    ``group_of[i]`` the group of tensor i.
    """
    for i in range(len(params)):
        p, g, m = params[i], grads[i], avgs[i]
        h = hyper[group_of[i]]
        lr, wd, b1, b2 = h[0], h[1], h[2], h[3]
        if maximize[group_of[i]]:
            g = -g
        c = m * b1 + g * (1.0 - b1)
        update = torch.where(torch.isfinite(g), torch.sign(c), torch.nan)
        p.copy_(p * (1.0 - lr * wd) - lr * update)
        m.copy_(m * b2 + g * (1.0 - b2))


def _compiled_lists() -> Callable[..., None]:
    return torch.compile(_lion_lists, fullgraph=True, dynamic=False)


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


class Lion(torch.optim.Optimizer):
    r"""Lion: sign of an interpolated momentum, with decoupled weight decay.

    For each parameter ``p`` with gradient ``g`` (``-g`` when ``maximize``) and momentum ``m``
    (zero at the start), one step is

    .. math::
        p &\leftarrow p\,(1 - \eta\lambda) \\
        p &\leftarrow p - \eta\,\operatorname{sign}(\beta_1 m + (1-\beta_1) g) \\
        m &\leftarrow \beta_2 m + (1-\beta_2) g

    with ``sign(0) = 0``. Every update has the same size ``lr`` per coordinate, so Lion wants
    an LR ~3-10x smaller than AdamW and a weight decay ~3-10x larger. A coordinate whose
    gradient is NaN or ±inf gets a NaN update (its weight becomes NaN; see the module doc).
    Parameters may have any layout (channels-last, transposed, strided views); each path
    updates them in place and keeps their strides.

    Args:
        params: parameters or param-group dicts (each may set ``lr``, ``betas``,
            ``weight_decay``, ``maximize``).
        lr: step size η (a float or a 1-element tensor, e.g. one a scheduler updates in place).
        betas: (β1, β2), each in [0, 1).
        weight_decay: decoupled weight decay λ >= 0 (scaled by the current lr).
        maximize: ascend instead of descend.
        impl: ``"single"``, ``"foreach"``, ``"fused"`` or ``"auto"`` (see the module doc).
            ``"fused"`` falls back to ``"foreach"`` with a warning if torch.compile fails.
    """

    def __init__(self, params: Any, lr: float | Tensor = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0, *,
                 maximize: bool = False, impl: Impl = "auto") -> None:
        if impl not in IMPLS:
            raise LrlabError(f"unknown Lion impl {impl!r}; valid: {', '.join(IMPLS)}")
        self.impl: str = impl
        self._compiled: Callable[..., None] | None = None
        self._fused_failed = False
        self._hyper: list[Tensor] = []
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        g = self.param_groups[-1]
        _check_hyper(g["lr"], g["betas"], g["weight_decay"])

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("maximize", False)
        self.__dict__.setdefault("impl", "auto")
        self.__dict__.setdefault("_compiled", None)
        self.__dict__.setdefault("_fused_failed", False)
        self.__dict__.setdefault("_hyper", [])

    def _gather(self) -> list[tuple[dict[str, Any], list[Tensor], list[Tensor], list[Tensor]]]:
        work = []
        for group in self.param_groups:
            ps: list[Tensor] = []
            gs: list[Tensor] = []
            ms: list[Tensor] = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise LrlabError(
                        f"Lion does not support sparse gradients (parameter of shape "
                        f"{tuple(p.shape)}); use dense gradients, e.g. nn.Embedding(sparse=False)"
                    )
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ps.append(p)
                gs.append(p.grad)
                ms.append(state["exp_avg"])
            if ps:
                work.append((group, ps, gs, ms))
        return work

    def resolve_impl(self, numel: int | None = None, device: torch.device | None = None) -> str:
        """The path ``step()`` takes for ``numel`` parameters on ``device``."""
        if self.impl == "fused" and self._fused_failed:
            return "foreach"
        if self.impl != "auto":
            return self.impl
        if self._fused_failed:
            return "foreach"
        if numel is None:
            numel = sum(p.numel() for g in self.param_groups for p in g["params"])
        if device is None:
            device = next((p.device for g in self.param_groups for p in g["params"]),
                          torch.device("cpu"))
        if device.type == "cuda" or numel >= AUTO_FUSED_MIN_NUMEL:
            return "fused"
        return "foreach"

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = self._gather()
        if not work:
            return loss
        numel = sum(p.numel() for _, ps, _, _ in work for p in ps)
        impl = self.resolve_impl(numel, work[0][1][0].device)
        if impl == "fused" and self._step_fused(work):
            return loss
        fn = _lion_single if impl == "single" else _lion_foreach
        for group, ps, gs, ms in work:
            b1, b2 = group["betas"]
            fn(ps, gs, ms, lr=as_float(group["lr"]), wd=float(group["weight_decay"]),
               beta1=float(b1), beta2=float(b2), maximize=bool(group["maximize"]))
        return loss

    def _step_fused(self, work: list) -> bool:
        """Run the compiled step; False (after one warning) if it cannot be compiled."""
        device = work[0][1][0].device
        if len(self._hyper) != len(work) or self._hyper[0].device != device:
            self._hyper = [torch.zeros(4, dtype=torch.float64, device=device) for _ in work]
        params: list[Tensor] = []
        grads: list[Tensor] = []
        avgs: list[Tensor] = []
        group_of: list[int] = []
        maximize: list[bool] = []
        for k, (group, ps, gs, ms) in enumerate(work):
            h = self._hyper[k]
            lr = group["lr"]
            if isinstance(lr, Tensor):
                h[0].copy_(lr.detach().reshape(()))
            else:
                h[0].fill_(float(lr))
            b1, b2 = group["betas"]
            h[1].fill_(float(group["weight_decay"]))
            h[2].fill_(float(b1))
            h[3].fill_(float(b2))
            params += ps
            grads += gs
            avgs += ms
            group_of += [k] * len(ps)
            maximize.append(bool(group["maximize"]))
        args = (params, grads, avgs, self._hyper, tuple(group_of), tuple(maximize))
        if _is_compiling():  # already inside someone's torch.compile: let it trace us
            _lion_lists(*args)
            return True
        try:
            if self._compiled is None:
                self._compiled = _compiled_lists()
            self._compiled(*args)
        except Exception as e:  # compile unavailable (no compiler, platform, ...)
            self._fused_failed = True
            msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            warnings.warn(f"Lion fused path unavailable ({type(e).__name__}: {msg}); "
                          "using foreach", RuntimeWarning, stacklevel=3)
            return False
        return True
