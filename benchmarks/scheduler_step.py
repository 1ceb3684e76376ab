"""Per-step cost of lrlab.Scheduler vs torch's SequentialLR(LinearLR, CosineAnnealingLR) and an
HF-style LambdaLR warmup+cosine, for 1 and 50 param groups; and the cost of resuming at
update 10**6 (closed form for lrlab, replay for SequentialLR).

    python benchmarks/scheduler_step.py [--steps 20000] [--repeats 5]

Target: lrlab <= 0.5x SequentialLR per step; resume at 10**6 costs what resume at 0 costs.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LinearLR, SequentialLR

from lrlab.scheduler import Scheduler

WARMUP, TOTAL = 1000, 1_000_000


class _NullOptimizer(torch.optim.SGD):
    """A real SGD whose step() does nothing, so only the scheduler is timed."""

    def step(self, closure=None):  # noqa: D401
        return None


def make_optimizer(groups: int) -> torch.optim.Optimizer:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1 * (1 + i / groups)}
              for i in range(groups)]
    return _NullOptimizer(params, lr=0.1)


def hf_lambda(step: int) -> float:
    if step < WARMUP:
        return (step + 1) / WARMUP
    progress = (step - WARMUP) / (TOTAL - WARMUP)
    return 0.5 * (1 + math.cos(math.pi * progress))


def build(kind: str, opt: torch.optim.Optimizer):
    if kind == "lrlab":
        return Scheduler(opt, f"warmup({WARMUP}) >> cosine()", total_steps=TOTAL)
    if kind == "SequentialLR":
        return SequentialLR(opt, [LinearLR(opt, 1 / WARMUP, 1.0, total_iters=WARMUP - 1),
                                  CosineAnnealingLR(opt, T_max=TOTAL - WARMUP)],
                            milestones=[WARMUP])
    return LambdaLR(opt, hf_lambda)


def time_steps(kind: str, groups: int, steps: int) -> float:
    opt = make_optimizer(groups)
    sched = build(kind, opt)
    opt.step()  # once, so torch's order check is satisfied; only scheduler.step() is timed
    step = sched.step
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def resume_cost(at: int) -> float:
    """Seconds to rebuild an lrlab Scheduler from a state saved at update ``at``."""
    opt = make_optimizer(1)
    state = Scheduler(opt, f"warmup({WARMUP}) >> cosine()", total_steps=TOTAL).state_dict()
    state["last_epoch"] = at
    t0 = time.perf_counter()
    for _ in range(200):
        Scheduler.from_state_dict(make_optimizer(1), state)
    return (time.perf_counter() - t0) / 200


def sequential_replay_cost(at: int) -> float:
    """SequentialLR has no closed form across its children: resuming means stepping ``at``."""
    opt = make_optimizer(1)
    sched = build("SequentialLR", opt)
    t0 = time.perf_counter()
    for _ in range(at):
        sched.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--replay", type=int, default=100_000,
                    help="updates SequentialLR replays to show the resume cost (scaled to 1e6)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    kinds = ["lrlab", "SequentialLR", "LambdaLR (HF-style)"]
    print(f"per-step cost, best of {args.repeats} x {args.steps} steps (timeit convention)")
    print(f"{'groups':>6}  {'scheduler':<22}{'us/step':>9}{'vs SequentialLR':>17}")
    for groups in (1, 50):
        res = {k: min(time_steps(k, groups, args.steps)
                                    for _ in range(args.repeats)) for k in kinds}
        for k in kinds:
            ratio = res[k] / res["SequentialLR"]
            print(f"{groups:>6}  {k:<22}{res[k] * 1e6:>9.2f}{ratio:>16.2f}x")
    r0, r1 = resume_cost(0), resume_cost(1_000_000)
    replay = sequential_replay_cost(args.replay) * (1_000_000 / args.replay)
    print(f"resume lrlab.Scheduler at update 0: {r0 * 1e6:.0f} us, at 10^6: {r1 * 1e6:.0f} us "
          f"(ratio {r1 / r0:.2f}: O(1))")
    print(f"SequentialLR replay to 10^6 (extrapolated from {args.replay}): {replay:.1f} s "
          f"({replay / r1:.0f}x lrlab)")


if __name__ == "__main__":
    main()
