"""Is the LR the range test picks as good as the best LR of a grid search?

For each workload: run `lrlab find-lr` (the range test, reading its suggestions on the
validation loss), train its chosen LR for --epochs with "warmup(1ep) >> cosine()", and
train every LR of a half-decade grid (1e-4, 3e-4, 1e-3, ..., 1) the same way. The grid's
best LR is chosen on VALIDATION accuracy (the final epoch's `val_acc` in metrics.jsonl,
10,000 images carved from Fashion-MNIST's training set, 1,600 examples for
`classification`); both LRs are then reported on the test set, never consulted. Prints
the gap in points (target: the chosen LR within 1 point of the grid's best, on test) and
the cost of the range test in epochs of data and in seconds against one training epoch.

Workloads (--workloads):
    lenet-sgd     LeNet on Fashion-MNIST, plain SGD, batch 256
    lenet-adamw   LeNet on Fashion-MNIST, AdamW (weight decay 0.05), batch 256
    mlp-sgd       the unit-6 MLP (100-100-50-2) on `classification`, SGD, batch 32
    mlp-adamw     the same MLP with AdamW (weight decay 0.05)
    tf-adam       a Pre-LN transformer (4 blocks, width 64, 4 heads) on `chars`, Adam
                  (β 0.9, 0.98), batch 32 (the warmup-transformer preset's model and optimizer);
                  the grid's best is chosen on validation next-character accuracy

--cost-only times the range test alone on one thread, with the validation curve (default)
and without it (--val-size 0), alternated three times (median), and prints the cost of the
extra evaluation per update (LeNet workloads; `classification` has no --val-size 0).

    python benchmarks/find_lr_quality.py [--workloads lenet-sgd,lenet-adamw,mlp-sgd,...]
        [--epochs 5] [--mlp-epochs 20] [--tf-epochs 3] [--grid 1e-4,3e-4,...] [--seed 0]
        [--jobs 2] [--limit N] [--cost-only]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
SCHEDULE = "warmup(1ep) >> cosine()"
WORKLOADS: dict[str, list[str]] = {
    "lenet-sgd": ["--dataset", "fashion-mnist", "--model", "lenet", "--optimizer", "sgd"],
    "lenet-adamw": ["--dataset", "fashion-mnist", "--model", "lenet", "--optimizer", "adamw",
                    "--weight-decay", "0.05"],
    "mlp-sgd": ["--dataset", "classification", "--model", "mlp", "--optimizer", "sgd",
                "--batch-size", "32"],
    "mlp-adamw": ["--dataset", "classification", "--model", "mlp", "--optimizer", "adamw",
                  "--weight-decay", "0.05", "--batch-size", "32"],
    "tf-adam": ["--dataset", "chars", "--model", "transformer", "--depth", "4", "--width",
                "64", "--heads", "4", "--optimizer", "adam", "--betas", "0.9,0.98",
                "--batch-size", "32"],
}


def _common(workload: str, seed: int, limit: int | None, threads: int, out: Path) -> list[str]:
    args = [*WORKLOADS[workload], "--seed", str(seed), "--out", str(out), "--threads",
            str(threads)]
    return args + (["--limit", str(limit)] if limit else [])


def _train_cmd(common: list[str], lr: float, epochs: int, name: str) -> list[str]:
    return [sys.executable, "-m", "lrlab", "train", *common, "--lr", repr(lr), "--schedule",
            SCHEDULE, "--epochs", str(epochs), "--name", name, "--quiet"]


def _find_lr(common: list[str], extra: list[str] = ()) -> tuple[dict, float]:
    t0 = time.perf_counter()
    fl = subprocess.run([sys.executable, "-m", "lrlab", "find-lr", *common, "--json",
                         *extra], capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if fl.returncode not in (0, 1):
        sys.exit(f"find-lr failed: {fl.stderr.strip()}")
    return json.loads(fl.stdout), elapsed


def _run_all(cmds: list[list[str]], jobs: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // jobs))}
    pending, running = list(cmds), []
    while pending or running:
        while pending and len(running) < jobs:
            running.append(subprocess.Popen(pending.pop(0), env=env,
                                            stdout=subprocess.DEVNULL))
        time.sleep(0.2)
        for p in [p for p in running if p.poll() is not None]:
            running.remove(p)
            if p.returncode != 0:
                print(f"warning: {' '.join(p.args[3:9])} exited {p.returncode}")


def _final(run: Path) -> tuple[float, float, str]:
    """(final val_acc, final test_acc, status) of a run, from its own files."""
    summary = json.loads((run / "summary.json").read_text())
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    last = rows[-1] if rows else {}
    return (float(last.get("val_acc") or 0.0), float(last.get("test_acc") or 0.0),
            summary["status"])


def _quality(workload: str, args: argparse.Namespace, grid: list[float], threads: int,
             out: Path) -> None:
    common = _common(workload, args.seed, args.limit, threads, out)
    epochs = args.mlp_epochs if workload.startswith("mlp") else \
        args.tf_epochs if workload.startswith("tf") else args.epochs
    result, finder_s = _find_lr(common)
    chosen = result["chosen_lr"]
    if chosen is None:
        print(f"\n{workload}: the range test suggested no LR ({result['chosen_reason']})")
        return
    cmds = [_train_cmd(common, chosen, epochs, f"{workload}-chosen")]
    cmds += [_train_cmd(common, lr, epochs, f"{workload}-{lr:g}") for lr in grid]
    _run_all(cmds, args.jobs)
    rows = [(lr, *_final(out / f"{workload}-{lr:g}")) for lr in grid]
    best_lr, best_val, best_test, _ = max(rows, key=lambda r: r[1])
    c_val, c_test, c_status = _final(out / f"{workload}-chosen")
    metrics = [json.loads(x) for x in
               (out / f"{workload}-chosen" / "metrics.jsonl").read_text().splitlines() if x]
    epoch_s = sum(m["epoch_time"] for m in metrics) / max(len(metrics), 1)
    s = result.get("settings", {})
    print(f"\n{workload} ({epochs} epochs of {SCHEDULE}, seed {args.seed}): range test read on "
          f"the {result['curve_used']} loss ({s.get('val_examples', 0)} examples), chose "
          f"{result['chosen']} lr {chosen:.3g}")
    for lr, val, test, status in rows:
        mark = "  <- best of grid on validation" if lr == best_lr else ""
        print(f"  grid lr {lr:<8g} val acc {val:.4f}  test acc {test:.4f} ({status}){mark}")
    print(f"  chosen lr {chosen:<8.3g}val acc {c_val:.4f}  test acc {c_test:.4f} ({c_status})")
    print(f"  gap to the grid's best (chosen on validation): test {(best_test - c_test) * 100:+.2f}"
          f" points (target <= 1.00), validation {(best_val - c_val) * 100:+.2f} points")
    test_s = s.get("time_s", finder_s)
    print(f"  range test cost: {s.get('epochs_equivalent', float('nan')):.2f} epochs of data, "
          f"{test_s:.1f} s for the test itself ({finder_s:.1f} s with process start and data "
          f"loading) vs {epoch_s:.1f} s per training epoch ({test_s / epoch_s:.2f} epochs of "
          "time)")


def _cost(workload: str, args: argparse.Namespace, out: Path, repeats: int = 3) -> None:
    if "classification" in WORKLOADS[workload] or "chars" in WORKLOADS[workload]:
        print(f"\n{workload}: skipped (its dataset keeps a fixed split: no --val-size 0 to "
              "compare with)")
        return
    # one thread, the two variants alternated, the median of `repeats` runs each: on a
    # shared machine the load changes between runs
    common = _common(workload, args.seed, args.limit, 1, out)
    per: dict[str, list[float]] = {"val": [], "train": []}
    last: dict[str, dict] = {}
    for _ in range(repeats):
        for key, extra in (("val", []), ("train", ["--val-size", "0"])):
            result, _ = _find_lr(common, extra)
            s = result["settings"]
            per[key].append(s["time_s"] / s["steps_run"])
            last[key] = s
    val, train = statistics.median(per["val"]), statistics.median(per["train"])
    print(f"\n{workload}, one thread, median of {repeats}: {val * 1000:.1f} ms per update "
          f"with the validation curve ({last['val']['val_examples']} examples evaluated after "
          f"every update), {train * 1000:.1f} ms on the training curve alone: "
          f"{val / train:.2f}x; {last['val']['steps_run']} updates = "
          f"{last['val']['epochs_equivalent']:.2f} epochs of data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--epochs", type=int, default=5, help="LeNet epochs (default 5)")
    ap.add_argument("--mlp-epochs", type=int, default=20, help="MLP epochs (default 20)")
    ap.add_argument("--tf-epochs", type=int, default=3, help="transformer epochs (default 3)")
    ap.add_argument("--grid", default=",".join(map(str, GRID)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cost-only", action="store_true",
                    help="time the range test with and without the validation curve")
    args = ap.parse_args()
    grid = [float(v) for v in args.grid.split(",")]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    # the range test runs with the threads of one training job (more threads on a loaded
    # machine only make it slower)
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    with tempfile.TemporaryDirectory() as tmp:
        for workload in workloads:
            if args.cost_only:
                _cost(workload, args, Path(tmp))
            else:
                _quality(workload, args, grid, threads, Path(tmp))


if __name__ == "__main__":
    main()
