"""Data-parallel training under torchrun (2 gloo ranks on the CPU), gradient accumulation,
and resume of a killed 2-rank run. Expectations come from single-process runs made here."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lrlab.lab.records import read_jsonl

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
COMMON = ["--dataset", "blobs", "--optimizer", "momentum", "--lr", "0.05",
          "--schedule", "warmup(5) >> cosine()", "--seed", "4", "--threads", "1", "--quiet"]


def single(*args):
    return subprocess.run([sys.executable, "-m", "lrlab", "train", *args], env=ENV,
                          capture_output=True, text=True, timeout=300)


def torchrun_cmd(*args, nproc=2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "lrlab", "train", *args]


def distributed(*args, nproc=2):
    return subprocess.run(torchrun_cmd(*args, nproc=nproc), env=ENV, capture_output=True,
                          text=True, timeout=300)


def params(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def assert_close_params(a: Path, b: Path, tol: float = 1e-5) -> None:
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], atol=tol, rtol=tol, msg=k)


def test_two_gloo_ranks_equal_one_process_with_the_doubled_batch(tmp_path):
    r = distributed(*COMMON, "--epochs", "2", "--batch-size", "16", "--out", str(tmp_path),
                    "--name", "ddp")
    assert r.returncode == 0, r.stderr[-2000:]
    r = single(*COMMON, "--epochs", "2", "--batch-size", "32", "--out", str(tmp_path),
               "--name", "one")
    assert r.returncode == 0, r.stderr
    assert_close_params(tmp_path / "ddp", tmp_path / "one")
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch"] == 32
    # blobs: 600 training examples after the default validation split of 200
    assert config["n_train"] == 600 and config["updates_per_epoch"] == math.ceil(600 / 32)
    # rank 0 alone wrote one metrics line per epoch; metrics are the global ones
    ddp_rows, one_rows = (read_jsonl(tmp_path / n / "metrics.jsonl") for n in ("ddp", "one"))
    assert [r["epoch"] for r in ddp_rows] == [0, 1]
    for a, b in zip(ddp_rows, one_rows):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-9)


def test_gradient_accumulation_equals_the_big_batch(tmp_path):
    r = single(*COMMON, "--epochs", "2", "--batch-size", "8", "--accumulate", "4",
               "--out", str(tmp_path), "--name", "acc")
    assert r.returncode == 0, r.stderr
    r = single(*COMMON, "--epochs", "2", "--batch-size", "32", "--out", str(tmp_path),
               "--name", "big")
    assert r.returncode == 0, r.stderr
    assert_close_params(tmp_path / "acc", tmp_path / "big")
    config = json.loads((tmp_path / "acc" / "config.json").read_text())
    assert config["global_batch"] == 32 and config["updates_per_epoch"] == math.ceil(600 / 32)
    assert json.loads((tmp_path / "acc" / "summary.json").read_text())["updates"] == \
        2 * math.ceil(600 / 32)


def test_linear_scaling_rule_is_recorded_and_warns_without_warmup(tmp_path):
    args = ["--dataset", "blobs", "--optimizer", "sgd", "--lr", "0.01", "--scale-lr", "linear",
            "--ref-batch", "8", "--batch-size", "32", "--epochs", "1", "--schedule",
            "constant()", "--out", str(tmp_path), "--name", "scaled", "--quiet"]
    r = single(*args)
    assert r.returncode == 0, r.stderr
    assert "warmup" in r.stderr  # Goyal et al.: a large scaled LR wants a warmup
    config = json.loads((tmp_path / "scaled" / "config.json").read_text())
    assert config["lr_used"] == pytest.approx(0.01 * 32 / 8) and config["warmup"] is None


def test_killed_two_rank_run_resumes_to_the_same_result(tmp_path):
    args = [*COMMON, "--epochs", "8", "--batch-size", "4"]
    r = distributed(*args, "--out", str(tmp_path), "--name", "ref")
    assert r.returncode == 0, r.stderr[-2000:]
    proc = subprocess.Popen(torchrun_cmd(*args, "--out", str(tmp_path), "--name", "cut"),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    metrics = tmp_path / "cut" / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and len(read_jsonl(metrics)) < 2:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
    proc.wait()
    assert 2 <= len(read_jsonl(metrics)) < 8
    r = distributed("--resume", str(tmp_path / "cut"), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert_close_params(tmp_path / "cut", tmp_path / "ref", tol=1e-6)
    assert [x["epoch"] for x in read_jsonl(metrics)] == list(range(8))


def test_compare_launches_each_run_distributed_without_breaking_parallel_workers(tmp_path):
    out = tmp_path / "cmp"
    r = subprocess.run([sys.executable, "-m", "lrlab", "compare", "--grid",
                        "optimizer=sgd,adam", "--dataset", "blobs", "--epochs", "1",
                        "--batch-size", "16", "--jobs", "2", "--nproc-per-run", "2",
                        "--out", str(out), "--quiet"],
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    runs = sorted(p for p in (out / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        assert config["world_size"] == 2 and config["global_batch"] == 32
        assert json.loads((run / "summary.json").read_text())["status"] == "ok"
        assert len(read_jsonl(run / "metrics.jsonl")) == 1  # rank 0 alone wrote
    assert (out / "summary.csv").exists()


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_rank_with_an_empty_share_of_the_last_update_neither_nans_nor_hangs(tmp_path,
                                                                               accumulate):
    """3 ranks, batch 4 per rank: the global batch is 12·accumulate and 98 examples leave 2
    for the last update of each epoch, so one rank (and, with accumulation, some micro-batches)
    gets none. The run must end ok with finite metrics, and equal one process with the
    global batch (the empty share contributes nothing)."""
    args = [*COMMON, "--epochs", "2", "--limit", "98", "--accumulate", str(accumulate)]
    assert 98 % (12 * accumulate) == 2
    r = distributed(*args, "--batch-size", "4", "--out", str(tmp_path), "--name", "ddp",
                    nproc=3)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("run: ") == 1, r.stdout  # rank 0 alone reports
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["status"] == "ok"
    rows = read_jsonl(tmp_path / "ddp" / "metrics.jsonl")
    assert [x["epoch"] for x in rows] == [0, 1]
    assert all(math.isfinite(x["train_loss"]) and math.isfinite(x["test_loss"]) for x in rows)
    r = single(*args, "--batch-size", str(12 * accumulate), "--accumulate", "1", "--out",
               str(tmp_path), "--name", "one")
    assert r.returncode == 0, r.stderr
    assert_close_params(tmp_path / "ddp", tmp_path / "one")


def test_two_gloo_ranks_weigh_per_token_targets_like_one_process(tmp_path):
    """modadd counts one target per sequence, chars every position: the per-token loss
    sums over ranks must give the parameters of one process with the doubled batch."""
    tiny = ["--model", "transformer", "--depth", "1", "--width", "16", "--heads", "2",
            "--optimizer", "adam", "--lr", "0.003", "--seed", "1", "--threads", "1", "--quiet",
            "--epochs", "2"]
    for data in (["--dataset", "modadd"],
                 ["--dataset", "chars", "--context", "16", "--limit", "96"]):
        name = data[1]
        r = distributed(*data, *tiny, "--batch-size", "8", "--out", str(tmp_path), "--name",
                        f"{name}-ddp")
        assert r.returncode == 0, r.stderr[-2000:]
        r = single(*data, *tiny, "--batch-size", "16", "--out", str(tmp_path), "--name",
                   f"{name}-one")
        assert r.returncode == 0, r.stderr
        assert_close_params(tmp_path / f"{name}-ddp", tmp_path / f"{name}-one", tol=1e-4)
