"""Wall time of ``lrlab compare`` with and without vectorised runs (``--vectorize on/off``).

The same comparison is run twice in this process's session, into fresh directories, with
the same ``--jobs``: every run in its own worker process (``off``), then the runs as one
stack (``on``, see ``lrlab.lab.train.vectorised``: ``on`` stacks even where ``auto`` would not,
so that the cost of stacking LeNet on a CPU stays measurable). End to end: process start,
data loading, training, per-epoch evaluation, records and the report. Ratios = off / on.

Cases (K = runs in the stack):

- ``unit6-9``, ``unit6-30``: the unit-6 MLP (100-100-50-2, make_classification, batch 32,
  SGD stepped per epoch), a grid of 3 or 10 LRs x 3 seeds;
- ``lenet-3``, ``lenet-9``: LeNet / Fashion-MNIST, AdamW batch 256 (the quickstart recipe),
  1 or 3 schedules x 3 seeds;
- ``preset-unit6``, ``preset-quickstart``: the presets as ``make demo`` runs them (their own
  epochs unless ``--epochs``).

    python benchmarks/vectorised.py [--cases unit6-9,unit6-30,lenet-3,lenet-9]
        [--epochs N] [--jobs 2]

Targets on a 2-core CPU: unit-6 preset >= 5x, quickstart >= 1.5x.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

from lrlab.lab.compare.comparison import compare

UNIT6 = {"dataset": "classification", "model": "mlp", "optimizer": "sgd", "batch_size": 32,
         "per": "epoch", "schedule": "cosine()"}
LENET = {"dataset": "fashion-mnist", "model": "lenet", "optimizer": "adamw", "lr": 0.01,
         "weight_decay": 0.05, "batch_size": 256, "per": "step"}
CASES = {
    "unit6-9": dict(grid={"lr": [0.03, 0.1, 0.3]}, overrides=UNIT6, epochs=20),
    "unit6-30": dict(grid={"lr": [0.01 * 1.5 ** i for i in range(10)]}, overrides=UNIT6,
                     epochs=20),
    "lenet-3": dict(grid={"schedule": ["warmup(1ep) >> cosine()"]}, overrides=LENET,
                    epochs=2),
    "lenet-9": dict(grid={"schedule": ["constant()", "cosine()", "warmup(1ep) >> cosine()"]},
                    overrides=LENET, epochs=2),
    "preset-unit6": dict(preset="dl-fundamentals-unit6"),
    "preset-quickstart": dict(preset="quickstart"),
}


def timed(case: dict, vectorize: str, jobs: int, epochs: int | None, out: Path) -> float:
    kw = dict(case)
    if epochs is not None or "preset" not in kw:
        kw["epochs"] = epochs if epochs is not None else kw.get("epochs")
    seeds = None if "preset" in kw else [0, 1, 2]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = compare(seeds=seeds, out=out, jobs=jobs, echo=False, vectorize=vectorize,
                         **kw)
    seconds = time.perf_counter() - t0
    bad = [o.name for o in result.outcomes if o.status == "failed"]
    if bad:
        raise SystemExit(f"failed runs in {out}: {bad}")
    return seconds


def _drift(off: Path, auto: Path) -> tuple[float, float]:
    """Largest difference of a run's final test accuracy between the two runners, and the
    seed-to-seed standard deviation of the same accuracy (off), averaged over labels."""
    import json
    import statistics
    from collections import defaultdict

    diffs, by_label = [], defaultdict(list)
    plan = json.loads((off / "comparison.json").read_text())
    for r in plan["runs"]:
        a, b = (json.loads((d / "runs" / r["name"] / "summary.json").read_text())
                for d in (off, auto))
        if isinstance(a.get("final_test_acc"), float) and \
                isinstance(b.get("final_test_acc"), float):
            diffs.append(abs(a["final_test_acc"] - b["final_test_acc"]))
            by_label[r["label"]].append(a["final_test_acc"])
    sds = [statistics.stdev(v) for v in by_label.values() if len(v) > 1]
    return max(diffs, default=float("nan")), statistics.fmean(sds) if sds else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="unit6-9,unit6-30,lenet-3,lenet-9")
    ap.add_argument("--epochs", type=int, default=None, help="override each case's epochs")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lrlab-vec-bench-"))
    print(f"{'case':<18} {'runs':>4} {'off (s)':>8} {'on (s)':>9} {'off/on':>9}")
    try:
        for name in args.cases.split(","):
            case = CASES[name]
            off = timed(case, "off", args.jobs, args.epochs, root / f"{name}-off")
            auto = timed(case, "on", args.jobs, args.epochs, root / f"{name}-auto")
            runs = len(list((root / f"{name}-auto" / "runs").iterdir()))
            drift, spread = _drift(root / f"{name}-off", root / f"{name}-auto")
            print(f"{name:<18} {runs:>4} {off:>8.1f} {auto:>9.1f} {off / auto:>8.2f}x   "
                  f"test acc: max |on - off| {drift:.4f}, seed sd (mean over labels) "
                  f"{spread:.4f}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
