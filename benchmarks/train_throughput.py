"""Training throughput of the lab vs a minimal hand-written loop and a DataLoader loop.

LeNet on Fashion-MNIST, batch 256, AdamW with a warmup+cosine schedule, all measured in the
same run on the same in-memory tensors and thread count. Examples/s counts training only
(the lab's per-epoch evaluation is excluded from its own figure).

    python benchmarks/train_throughput.py [--epochs 2] [--limit 30000] [--threads 2]
        [--options]   also time --compile, channels-last and bf16 autocast (where supported)

Targets: lab >= 0.95x the hand loop (no overhead), >= 1.1x the DataLoader loop.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lrlab.lab.data.datasets import load_dataset
from lrlab.lab.models.zoo import build_model
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.trainer import epoch_permutation, train


def hand_loop(data, epochs: int, batch: int, seed: int) -> float:
    """The minimal loop: slices of a permutation, forward, backward, step. Best epoch ex/s."""
    torch.manual_seed(seed)
    model = build_model("lenet", data)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.05)
    x, y = data.x_train, data.y_train
    n = len(x)
    best = 0.0
    for e in range(epochs):
        perm = epoch_permutation(n, seed, e)
        t0 = time.perf_counter()
        for s in range(0, n, batch):
            idx = perm[s:s + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def dataloader_loop(data, epochs: int, batch: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = build_model("lenet", data)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.05)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=batch,
                        shuffle=True)
    best = 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        best = max(best, len(data.x_train) / (time.perf_counter() - t0))
    return best


def lab(epochs: int, batch: int, seed: int, limit: int | None, threads: int, **opts) -> float:
    """The lab's best epoch ex/s (its defaults: channels-last on for LeNet on the CPU)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(dataset="fashion-mnist", model="lenet", optimizer="adamw", lr=0.01,
                          weight_decay=0.05, schedule="warmup(1ep) >> cosine()",
                          epochs=max(epochs, 2), batch_size=batch, seed=seed, limit=limit,
                          out=out, quiet=True, threads=threads, device="cpu", **opts)
        res = train(cfg, echo=False)
        from lrlab.lab.records import read_jsonl

        rows = read_jsonl(res.path / "metrics.jsonl")
        return max(r["examples_per_s"] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--limit", type=int, default=None, help="training examples (default all)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--options", action="store_true", help="also time compile/channels-last/bf16")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist", limit=args.limit)
    print(f"LeNet, Fashion-MNIST ({len(data.x_train)} train), batch {args.batch}, "
          f"{args.threads} threads, best epoch of {args.epochs}, median of {args.repeats}")
    results: dict[str, list[float]] = {"lab": [], "hand loop": [], "DataLoader": []}
    for _ in range(args.repeats):  # interleaved, so background load hits all alike
        results["lab"].append(lab(args.epochs, args.batch, 0, args.limit, args.threads))
        results["hand loop"].append(hand_loop(data, args.epochs, args.batch, 0))
        results["DataLoader"].append(dataloader_loop(data, args.epochs, args.batch, 0))
    if args.options:
        results["lab --compile"] = [lab(args.epochs, args.batch, 0, args.limit, args.threads,
                                        compile=True)]
        results["lab --no-channels-last"] = [lab(args.epochs, args.batch, 0, args.limit,
                                                 args.threads, channels_last=False)]
        try:
            results["lab --amp bf16"] = [lab(args.epochs, args.batch, 0, args.limit,
                                             args.threads, amp="bf16")]
        except Exception as exc:  # noqa: BLE001 - a CPU without bf16 kernels
            print(f"bf16 autocast unavailable: {exc}")
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{'loop':<22}{'examples/s':>12}{'vs hand':>10}{'vs DataLoader':>15}")
    for k, v in med.items():
        print(f"{k:<22}{v:>12.0f}{v / med['hand loop']:>9.2f}x{v / med['DataLoader']:>14.2f}x")
    print(f"targets: lab/hand >= 0.95 (got {med['lab'] / med['hand loop']:.2f}), "
          f"lab/DataLoader >= 1.1 (got {med['lab'] / med['DataLoader']:.2f})")


if __name__ == "__main__":
    main()
