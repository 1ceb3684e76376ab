"""Time one optimizer.step() on ~20M parameters in 40 tensors.

Compares lrlab Lion (each path) with torch AdamW (for-loop, foreach, fused), torch
SGD-momentum and lion-pytorch (when installed). Optimizers are timed in a shuffled order within each
repeat so that load from other processes hits them alike; the table shows the median.

    .venv/bin/python benchmarks/optim_step.py                 # full size
    .venv/bin/python benchmarks/optim_step.py --numel 2e6 --repeats 5   # quick
    .venv/bin/python benchmarks/optim_step.py --numel 5e5 --tensors 4 --layout channels-last
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch

from lrlab.optim import Lion

LAYOUTS = ("flat", "channels-last", "transposed")


def _shape(size: int, layout: str) -> tuple[int, ...]:
    if layout == "channels-last":  # a 3x3 conv weight (out, 64, 3, 3)
        return (max(1, size // (64 * 9)), 64, 3, 3)
    if layout == "transposed":  # a (512, n) weight seen as its transpose
        return (512, max(1, size // 512))
    return (size,)


def _laid_out(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels-last":
        return x.to(memory_format=torch.channels_last)
    if layout == "transposed":
        return x.t()
    return x


def _make_params(numel: int, tensors: int, seed: int,
                 layout: str = "flat") -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shape = _shape(max(1, numel // tensors), layout)
    params = []
    for _ in range(tensors):
        p = torch.nn.Parameter(_laid_out(torch.randn(shape, generator=gen), layout))
        p.grad = _laid_out(torch.randn(shape, generator=gen), layout)
        params.append(p)
    return params


def _candidates(lr_adam: float, lr_lion: float, wd: float) -> list[tuple[str, Callable]]:
    out: list[tuple[str, Callable]] = [
        ("lrlab Lion auto", lambda ps: Lion(ps, lr_lion, weight_decay=wd, impl="auto")),
        ("lrlab Lion single", lambda ps: Lion(ps, lr_lion, weight_decay=wd, impl="single")),
        ("lrlab Lion foreach", lambda ps: Lion(ps, lr_lion, weight_decay=wd, impl="foreach")),
        ("lrlab Lion fused", lambda ps: Lion(ps, lr_lion, weight_decay=wd, impl="fused")),
        ("torch AdamW for-loop",
         lambda ps: torch.optim.AdamW(ps, lr_adam, weight_decay=wd, foreach=False)),
        ("torch AdamW foreach",
         lambda ps: torch.optim.AdamW(ps, lr_adam, weight_decay=wd, foreach=True)),
        ("torch AdamW fused",
         lambda ps: torch.optim.AdamW(ps, lr_adam, weight_decay=wd, fused=True)),
        ("torch SGD momentum",
         lambda ps: torch.optim.SGD(ps, lr_adam, momentum=0.9, foreach=True)),
    ]
    try:
        from lion_pytorch import Lion as LionPytorch
    except ImportError:
        print("lion-pytorch not installed: skipped (pip install lion-pytorch --no-deps)")
    else:
        out.append(("lion-pytorch", lambda ps: LionPytorch(ps, lr_lion, weight_decay=wd)))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numel", type=float, default=20e6, help="total parameters")
    ap.add_argument("--tensors", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=15, help="timed steps per optimizer")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per optimizer")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("--layout", choices=LAYOUTS, default="flat",
                    help="parameter layout: 1-D tensors, channels-last 3x3 conv weights, or "
                         "transposed matrices (the last two are not contiguous)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for name, factory in _candidates(1e-3, 1e-4, args.weight_decay):
        params = _make_params(int(args.numel), args.tensors, seed=0, layout=args.layout)
        opt = factory(params)
        t0 = time.perf_counter()
        opt.step()
        first = time.perf_counter() - t0
        for _ in range(args.warmup):
            opt.step()
        rows.append([name, opt, params, [], first])

    order = random.Random(0)
    for _ in range(args.repeats):  # every optimizer sees the same load, in a shuffled order
        # (a fixed order made each step follow the same neighbour, whose memory traffic
        # showed up as a steady 10% difference between two instances of one compiled kernel)
        for row in order.sample(rows, len(rows)):
            t0 = time.perf_counter()
            row[1].step()
            row[3].append(time.perf_counter() - t0)

    med = {row[0]: statistics.median(row[3]) * 1e3 for row in rows}
    ref_adamw = med["torch AdamW fused"]
    ref_lp = med.get("lion-pytorch")
    n = sum(p.numel() for p in rows[0][2])
    print(f"\none step() on {n / 1e6:.1f}M params in {args.tensors} {args.layout} tensors, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} (after {args.warmup} warm-up)")
    head = f"{'optimizer':<22}{'ms/step':>10}{'vs fused AdamW':>16}{'vs lion-pytorch':>17}"
    print(head + f"{'1st step s':>12}")
    print("-" * (len(head) + 12))
    for row in rows:
        name = row[0]
        lp = f"{med[name] / ref_lp:.2f}x" if ref_lp else "-"
        print(f"{name:<22}{med[name]:>10.2f}{med[name] / ref_adamw:>15.2f}x{lp:>17}"
              f"{row[4]:>12.2f}")
    auto = rows[0][1].resolve_impl()
    print(f"\nLion impl='auto' resolved to {auto!r} for this size")


if __name__ == "__main__":
    main()
