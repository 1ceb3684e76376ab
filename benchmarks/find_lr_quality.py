"""Is the LR the range test picks as good as the best LR of a grid search?

LeNet on Fashion-MNIST, for plain SGD and AdamW (wd 0.05): run `lrlab find-lr` (the range
test), train its chosen LR for --epochs with "warmup(1ep) >> cosine()", and train every LR of
a half-decade grid (1e-4, 3e-4, 1e-3, ..., 1) the same way. Prints test accuracies, the gap
in points (target: within 1 point of the best grid LR) and the cost of the range test in
epochs of data and in seconds against one training epoch (target: <= 1 epoch).

    python benchmarks/find_lr_quality.py [--epochs 5] [--optimizers sgd,adamw]
        [--grid 1e-4,3e-4,...] [--limit N] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
SCHEDULE = "warmup(1ep) >> cosine()"


def _train_cmd(optimizer: str, lr: float | str, epochs: int, out: Path, name: str,
               limit: int | None, threads: int) -> list[str]:
    cmd = [sys.executable, "-m", "lrlab", "train", "--dataset", "fashion-mnist", "--model",
           "lenet", "--optimizer", optimizer, "--lr", str(lr), "--schedule", SCHEDULE,
           "--epochs", str(epochs), "--out", str(out), "--name", name, "--quiet",
           "--threads", str(threads)]
    if optimizer == "adamw":
        cmd += ["--weight-decay", "0.05"]
    if limit:
        cmd += ["--limit", str(limit)]
    return cmd


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
            if p.returncode not in (0, 1):
                print(f"warning: {' '.join(p.args[3:9])} exited {p.returncode}")


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--optimizers", default="sgd,adamw")
    ap.add_argument("--grid", default=",".join(map(str, GRID)))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    grid = [float(v) for v in args.grid.split(",")]
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for opt in args.optimizers.split(","):
            # the range test alone, timed, through the same CLI a user runs, with the threads
            # of one training job (more threads on a loaded machine only make it slower)
            t0 = time.perf_counter()
            fl = subprocess.run([sys.executable, "-m", "lrlab", "find-lr", "--dataset",
                                 "fashion-mnist", "--optimizer", opt, "--json", "--out",
                                 str(out), "--threads", str(threads)]
                                + (["--weight-decay", "0.05"] if opt == "adamw" else [])
                                + (["--limit", str(args.limit)] if args.limit else []),
                                capture_output=True, text=True, check=True)
            finder_s = time.perf_counter() - t0
            result = json.loads(fl.stdout)
            chosen = result["chosen_lr"]
            cmds = [_train_cmd(opt, chosen, args.epochs, out, f"{opt}-chosen", args.limit,
                               threads)]
            cmds += [_train_cmd(opt, lr, args.epochs, out, f"{opt}-{lr:g}", args.limit, threads)
                     for lr in grid]
            _run_all(cmds, args.jobs)
            chosen_acc = _summary(out / f"{opt}-chosen").get("final_test_acc") or 0.0
            rows = []
            for lr in grid:
                s = _summary(out / f"{opt}-{lr:g}")
                rows.append((lr, s.get("final_test_acc") or 0.0, s["status"]))
            best_lr, best_acc, _ = max(rows, key=lambda r: r[1])
            metrics = [json.loads(x) for x in
                       (out / f"{opt}-chosen" / "metrics.jsonl").read_text().splitlines()]
            epoch_s = sum(m["epoch_time"] for m in metrics) / len(metrics)
            settings = result.get("settings", {})
            print(f"\n{opt}: range test chose {result['chosen']} lr {chosen:.3g}")
            for lr, acc, status in rows:
                mark = "  <- best of grid" if lr == best_lr else ""
                print(f"  grid lr {lr:<8g} test acc {acc:.4f} ({status}){mark}")
            print(f"  chosen lr {chosen:<8.3g}test acc {chosen_acc:.4f}")
            gap = (best_acc - chosen_acc) * 100
            print(f"  gap to the best grid LR: {gap:+.2f} points (target <= 1.00)")
            eq = settings.get("epochs_equivalent")
            eq_txt = f"{eq:.2f} epochs of data" if eq is not None else "n/a"
            test_s = settings.get("time_s", finder_s)
            print(f"  range test cost: {eq_txt}, {test_s:.1f} s for the test itself "
                  f"({finder_s:.1f} s with process start and data loading) vs {epoch_s:.1f} s "
                  f"per training epoch ({test_s / epoch_s:.2f} epochs of time; target <= 1)")


if __name__ == "__main__":
    main()
