"""Cost of one Hessian-vector product of lrlab.diagnostics.sharpness, in training steps.

Times, on a tanh MLP with cross entropy, (a) a plain forward + ``loss.backward()``, (b) the
one-off forward + ``autograd.grad(create_graph=True)`` that sharpness builds, (c) one
Hessian-vector product by double backward through that graph (what sharpness repeats), and
(d) a whole ``sharpness(...)`` call, and prints each as a multiple of (a). Repeats
alternate (a), (b), (c) so that load from other processes hits them alike; medians.

    python benchmarks/sharpness_cost.py [--width 256] [--batch 256] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lrlab.diagnostics import sharpness


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, a.width), torch.nn.Tanh(),
                                torch.nn.Linear(a.width, a.width), torch.nn.Tanh(),
                                torch.nn.Linear(a.width, 10))
    x, y = torch.randn(a.batch, 784), torch.randint(0, 10, (a.batch,))
    loss_fn = torch.nn.functional.cross_entropy
    params = list(model.parameters())
    v = [torch.randn_like(p) for p in params]

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()

    def build() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)

    grads = build()

    def hvp() -> None:
        gv = sum((g * u).sum() for g, u in zip(grads, v))
        torch.autograd.grad(gv, params, retain_graph=True)

    times: dict[str, list[float]] = {"fwd+bwd": [], "create_graph": [], "hvp": []}
    for f in (fwd_bwd, build, hvp):  # warm-up
        f()
    for _ in range(a.repeats):
        for name, f in (("fwd+bwd", fwd_bwd), ("create_graph", build), ("hvp", hvp)):
            t0 = time.perf_counter()
            f()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["fwd+bwd"])
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:>13}: {m * 1e3:7.2f} ms  = {m / base:4.2f} x fwd+bwd")
    t0 = time.perf_counter()
    r = sharpness(model, loss_fn, (x, y))
    t = time.perf_counter() - t0
    print(f"    sharpness: {t * 1e3:7.2f} ms  = {t / base:4.1f} x fwd+bwd  "
          f"({r.hvps} HVPs, converged={r.converged}, value={r.value:.4g})")


if __name__ == "__main__":
    main()
