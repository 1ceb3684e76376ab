"""The trainer and its run records: well-formed files, exact resume after SIGKILL and Ctrl-C,
divergence, and one-line errors from `lrlab train`."""

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

from lrlab.errors import LrlabError
from lrlab.lab.records import read_jsonl
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.trainer import epoch_permutation, train, update_indices
from tests.idx_fixtures import write_learnable_mnist_dir

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fmnist")
    write_learnable_mnist_dir(d, n_train=600, n_test=200, seed=1)
    return d


def _cfg(tmp_path, data_dir, **kw):
    base = dict(dataset="fashion-mnist", data_dir=str(data_dir), optimizer="adamw", lr=0.003,
                schedule="warmup(1ep) >> cosine()", epochs=2, batch_size=64, out=str(tmp_path),
                quiet=True, seed=3, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def lrlab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "lrlab", *args], capture_output=True,
                          text=True, env=ENV, timeout=300, **kw)


def test_two_epoch_run_writes_well_formed_records(tmp_path, mnist_dir):
    res = train(_cfg(tmp_path, mnist_dir, update_ratio=True))
    assert res.status == "ok"
    run = res.path
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.pt",
                                               "summary.json"}
    config = json.loads((run / "config.json").read_text())
    # the default validation split holds 1/6 of the 600 training images (data docstring)
    n_train, n_val = 600 - 100, 100
    assert (config["n_train"], config["n_val"], config["n_test"]) == (n_train, n_val, 200)
    spe = math.ceil(n_train / 64)
    assert config["updates_per_epoch"] == spe
    assert config["lr_used"] == 0.003 and config["model"] == "lenet"
    assert config["warmup"] == f"{spe} updates"  # warmup(1ep)
    assert config["beta2"] == 0.999  # AdamW's default, recorded as the trainer used it
    env = config["environment"]
    assert env["torch"] == torch.__version__ and env["threads"] == 1 and env["device"] == "cpu"
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [0, 1]
    # the LR of epoch 0's first update is the warmup's first value, by the formula
    assert rows[0]["lr_first"] == pytest.approx(0.003 / spe)
    assert rows[1]["lr_first"] == pytest.approx(0.003)  # cosine starts at the peak
    for r in rows:
        assert 0 <= r["test_acc"] <= 1 and r["train_loss"] > 0 and r["examples_per_s"] > 0
        assert 0 <= r["val_acc"] <= 1 and r["val_loss"] > 0
        ratios = r["update_ratio"]  # LeNet: 5 layers, a weight and a bias each
        assert len(ratios) == 10 and all(v >= 0 for v in ratios.values())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert summary["best_test_acc"] == max(r["test_acc"] for r in rows)
    assert summary["final_test_acc"] == rows[-1]["test_acc"]
    assert summary["final_val_acc"] == rows[-1]["val_acc"]
    assert summary["best_val_acc"] == max(r["val_acc"] for r in rows)
    assert summary["updates"] == 2 * spe


def test_batches_are_slices_of_a_seeded_permutation():
    p1, p2 = epoch_permutation(100, 0, 3), epoch_permutation(100, 0, 3)
    assert torch.equal(p1, p2) and not torch.equal(p1, epoch_permutation(100, 0, 4))
    assert sorted(p1.tolist()) == list(range(100))
    micro, total = update_indices(p1, 2, 30, world=1, rank=0, accumulate=1)
    assert total == 30 and torch.equal(micro[0], p1[60:90])
    # last update of the epoch is the remainder
    micro, total = update_indices(p1, 3, 30, world=1, rank=0, accumulate=1)
    assert total == 10 and torch.equal(micro[0], p1[90:])
    # two ranks each take a contiguous half, accumulation splits further
    a, _ = update_indices(p1, 0, 40, world=2, rank=0, accumulate=2)
    b, _ = update_indices(p1, 0, 40, world=2, rank=1, accumulate=2)
    assert torch.equal(torch.cat(a + b), p1[:40]) and [len(m) for m in a] == [10, 10]


def _params(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def _comparable(rows):
    drop = {"examples_per_s", "epoch_time", "time"}
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, mnist_dir):
    args = ["train", "--dataset", "fashion-mnist", "--data-dir", str(mnist_dir),
            "--optimizer", "momentum", "--lr", "0.01", "--schedule", "warmup(1ep) >> cosine()",
            "--epochs", "6", "--batch-size", "16", "--seed", "5", "--threads", "1", "--quiet"]
    ref = lrlab(*args, "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    ref_run = next((tmp_path / "ref").iterdir())

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "lrlab", *args, "--out", str(out)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    metrics = None
    while time.time() < deadline:
        runs = list(out.iterdir()) if out.exists() else []
        if runs and len(read_jsonl(runs[0] / "metrics.jsonl")) >= 2:
            metrics = runs[0] / "metrics.jsonl"
            break
        time.sleep(0.02)
    assert metrics is not None, "the run never wrote two epochs"
    # the checkpoint after epoch 1 is written right after its metrics row: once it is there,
    # the process is inside epoch 2 (an observable event, not a guess about speed)
    ck = metrics.parent / "checkpoint.pt"
    while time.time() < deadline and not (
            ck.exists() and torch.load(ck, weights_only=True)["epoch"] >= 2):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = metrics.parent
    assert len(read_jsonl(metrics)) < 6, "the run finished before it could be killed"
    assert json.loads((run / "summary.json").read_text())["status"] == "running"

    r = lrlab("train", "--resume", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    got, want = _params(run), _params(ref_run)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert _comparable(read_jsonl(metrics)) == _comparable(read_jsonl(ref_run / "metrics.jsonl"))
    assert json.loads((run / "summary.json").read_text())["status"] == "ok"


def test_ctrl_c_writes_a_checkpoint_and_resume_is_exact(tmp_path, mnist_dir):
    args = ["train", "--dataset", "fashion-mnist", "--data-dir", str(mnist_dir),
            "--optimizer", "adam", "--lr", "0.002", "--schedule", "cosine()",
            "--epochs", "8", "--batch-size", "16", "--seed", "2", "--threads", "1"]
    ref = lrlab(*args, "--quiet", "--out", str(tmp_path / "ref"))
    assert ref.returncode == 0, ref.stderr
    ref_run = next((tmp_path / "ref").iterdir())
    out = tmp_path / "int"
    proc = subprocess.Popen([sys.executable, "-m", "lrlab", *args, "--out", str(out)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:
        runs = list(out.iterdir()) if out.exists() else []
        if runs and len(read_jsonl(runs[0] / "metrics.jsonl")) >= 1:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # the handler is in place: an epoch was recorded
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stdout
    run = next(out.iterdir())
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert any(e["kind"] == "interrupted" for e in read_jsonl(run / "events.jsonl"))
    r = lrlab("train", "--resume", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    for k, v in _params(ref_run).items():
        assert torch.equal(_params(run)[k], v), k
    assert _comparable(read_jsonl(run / "metrics.jsonl")) == _comparable(
        read_jsonl(ref_run / "metrics.jsonl"))
    # throughput of the resumed epoch counts only what this process trained (and timed)
    cut = next(e for e in read_jsonl(run / "events.jsonl") if e["kind"] == "interrupted")
    row = read_jsonl(run / "metrics.jsonl")[cut["epoch"]]
    trained_here = 500 - cut["update"] * 16  # 500 training images, batch 16
    assert row["examples_per_s"] * row["epoch_time"] == pytest.approx(trained_here, rel=1e-9)


def test_huge_lr_diverges_with_the_update_index(tmp_path, mnist_dir):
    res = train(_cfg(tmp_path, mnist_dir, optimizer="sgd", lr=1e6, schedule="constant()",
                     epochs=3))
    assert res.status == "diverged"
    at = res.summary["diverged_at"]
    assert isinstance(at["update"], int) and at["update"] >= 0
    assert at["lr"] == pytest.approx(1e6)
    lines = (res.path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line parses on its own
    assert rows[-1]["diverged"] is True
    events = read_jsonl(res.path / "events.jsonl")
    assert any(e["kind"] == "diverged" and e["update"] == at["update"] for e in events)


def test_not_learning_is_flagged(tmp_path, mnist_dir):
    res = train(_cfg(tmp_path, mnist_dir, optimizer="sgd", lr=1e-9, schedule="constant()",
                     epochs=3))
    assert res.status == "not-learning"


def test_existing_run_is_never_overwritten(tmp_path, mnist_dir):
    cfg = _cfg(tmp_path, mnist_dir, epochs=1, schedule="constant()")
    first = train(cfg)
    before = (first.path / "metrics.jsonl").read_bytes()
    with pytest.raises(LrlabError, match="--resume"):
        train(_cfg(tmp_path, mnist_dir, epochs=1, schedule="constant()"))
    assert (first.path / "metrics.jsonl").read_bytes() == before
    again = train(_cfg(tmp_path, mnist_dir, epochs=1, schedule="constant()"), resume=True)
    assert again.status == "ok" and (first.path / "metrics.jsonl").read_bytes() == before


def test_config_toml_with_flags_overriding(tmp_path, mnist_dir):
    toml = tmp_path / "c.toml"
    toml.write_text(f'dataset = "fashion-mnist"\ndata-dir = "{mnist_dir}"\noptimizer = "sgd"\n'
                    'lr = 0.05\nepochs = 5\nbatch-size = 128\nschedule = "cosine()"\n')
    r = lrlab("train", "--config", str(toml), "--epochs", "1", "--out", str(tmp_path / "o"),
              "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr
    run = next((tmp_path / "o").iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["epochs"] == 1 and config["optimizer"] == "sgd" and config["batch_size"] == 128
    assert "run:" in r.stdout and "final test acc" in r.stdout


@pytest.mark.parametrize("args, needle", [
    (["--optimizer", "adamz"], "adamz"),
    (["--lr", "-1"], "lr"),
    (["--lr", "nan"], "finite"),
    (["--epochs", "0"], "positive"),
    (["--schedule", "warmup(3ep) >> cosine()", "--epochs", "2"], "longer"),
    (["--schedule", "cosine(("], "position"),
    (["--dataset", "imagenet"], "imagenet"),
    (["--data-dir", "TMP/missing/dir"], "TMP/missing/dir"),
    (["--config", "TMP/missing.toml"], "not found"),
    (["--betas", "0.9,1.5"], "betas"),
    (["--resume", "TMP/missing/run"], "not a run directory"),
])
def test_train_errors_are_one_line_exit_2(tmp_path, mnist_dir, args, needle):
    # TMP: a folder of this test's own that surely does not exist (a global path such as
    # /nonexistent may exist on a shared machine)
    missing = tmp_path / "absent"
    args = [a.replace("TMP", str(missing)) for a in args]
    needle = needle.replace("TMP", str(missing))
    base = ["train", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--quiet"]
    if "--data-dir" in args:
        base = ["train", "--out", str(tmp_path), "--quiet"]
    r = lrlab(*base, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in r.stderr


def test_param_group_flags_reach_the_optimizer(tmp_path):
    """lr_mult and layer decay multiply (BEiT: layer i of L gets decay^(L-i)); biases and
    no_decay patterns get no weight decay. The blobs MLP is Flatten-Linear-ReLU-Linear, so its
    parameter-owning layers are '1' (layer 0) and '3' (layer L=1)."""
    cfg = TrainConfig(dataset="blobs", optimizer="adamw", lr=0.01, weight_decay=0.1, epochs=1,
                      lr_mult={"1.*": 0.1}, layer_decay=0.5, no_decay=["3.weight"],
                      out=str(tmp_path), quiet=True)
    res = train(cfg)
    groups = torch.load(res.path / "checkpoint.pt", weights_only=True)["optimizer"][
        "param_groups"]
    by_name = {n: (g["initial_lr"], g["weight_decay"]) for g in groups for n in g["param_names"]}
    assert by_name["1.weight"] == (pytest.approx(0.01 * 0.1 * 0.5), 0.1)
    assert by_name["1.bias"] == (pytest.approx(0.01 * 0.1 * 0.5), 0.0)
    assert by_name["3.weight"] == (pytest.approx(0.01), 0.0)
    assert by_name["3.bias"] == (pytest.approx(0.01), 0.0)


def test_collapse_after_learning_is_a_divergence_not_not_learning(tmp_path, mnist_dir):
    """Momentum SGD learns for 3 epochs, then the schedule multiplies the LR by 5: the train
    loss jumps far above chance level. That is a divergence (a collapse), dated at an update
    of epoch 3, with the LR of the formula; never 'not-learning'."""
    res = train(_cfg(tmp_path, mnist_dir, optimizer="momentum", lr=0.05, epochs=6,
                     schedule="constant(steps=3ep) >> constant(v=5)"))
    rows = read_jsonl(res.path / "metrics.jsonl")
    spe = math.ceil(500 / 64)
    chance = math.log(10)
    assert min(r["train_loss"] for r in rows[:3]) < 0.8 * chance  # it learned
    assert res.status == "diverged"
    at = res.summary["diverged_at"]
    assert at["cause"] == "collapse" and at["epoch"] == 3 == len(rows) - 1
    assert 3 * spe <= at["update"] < 4 * spe  # after the LR jump, within epoch 3
    assert at["lr"] == pytest.approx(0.05 * 5)
    assert at["loss_before"] == rows[2]["train_loss"] and at["loss"] == rows[3]["train_loss"]
    assert at["loss"] >= 0.97 * chance
    kinds = [e["kind"] for e in read_jsonl(res.path / "events.jsonl")]
    assert "diverged" in kinds and "not-learning" not in kinds


def test_a_nan_seen_only_in_evaluation_marks_the_run_diverged(tmp_path, mnist_dir):
    """The last update of epoch 1 uses an LR of 1e30: its own loss was finite (computed
    before the step), but the weights are not; evaluation then gives NaN."""
    spe = math.ceil(500 / 64)
    res = train(_cfg(tmp_path, mnist_dir, optimizer="sgd", lr=0.01, epochs=3,
                     schedule=f"constant(steps={2 * spe - 1}) >> constant(v=1e32)"))
    assert res.status == "diverged"
    at = res.summary["diverged_at"]
    assert at["cause"] == "nonfinite-eval" and at["epoch"] == 1
    assert at["update"] == 2 * spe - 1


def test_crafted_checkpoint_is_refused_without_running_code(tmp_path, mnist_dir):
    res = train(_cfg(tmp_path, mnist_dir, epochs=1, schedule="constant()"))
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle
    with (res.path / "checkpoint.pt").open("wb") as fh:
        pickle.dump({"epoch": 0, "model": Payload()}, fh)
    summary = json.loads((res.path / "summary.json").read_text())
    summary["status"] = "interrupted"
    (res.path / "summary.json").write_text(json.dumps(summary))
    r = lrlab("train", "--resume", str(res.path), "--quiet")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "refused" in r.stderr and "checkpoint.pt" in r.stderr
    assert not marker.exists()


@pytest.mark.parametrize("content, needle", [
    ({}, "not an lrlab checkpoint"),
    ([1, 2, 3], "not an lrlab checkpoint"),
    ("other-model", "does not fit"),
])
def test_damaged_checkpoints_are_one_line_errors(tmp_path, mnist_dir, content, needle):
    res = train(_cfg(tmp_path, mnist_dir, epochs=1, schedule="constant()"))
    ck = res.path / "checkpoint.pt"
    if content == "other-model":  # a checkpoint of another run: an MLP's weights
        state = torch.load(ck, weights_only=True)
        state["model"] = torch.nn.Linear(3, 2).state_dict()
        content = state
    torch.save(content, ck)
    summary = json.loads((res.path / "summary.json").read_text())
    summary["status"] = "interrupted"
    (res.path / "summary.json").write_text(json.dumps(summary))
    r = lrlab("train", "--resume", str(res.path), "--quiet")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert needle in r.stderr


def test_resume_refuses_flags_that_would_change_the_run(tmp_path, mnist_dir):
    res = train(_cfg(tmp_path, mnist_dir, epochs=1, schedule="constant()"))
    before = (res.path / "metrics.jsonl").read_bytes()
    for flags, needle in ((["--lr", "5"], "--lr cannot change"),
                          (["--optimizer", "sgd"], "--optimizer cannot change"),
                          (["--name", "x"], "--name does not apply")):
        r = lrlab("train", "--resume", str(res.path), *flags)
        assert r.returncode == 2 and needle in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1
    assert (res.path / "metrics.jsonl").read_bytes() == before
    # --resume without a directory, when these settings name no run: refused, nothing made
    r = lrlab("train", "--dataset", "fashion-mnist", "--data-dir", str(mnist_dir), "--out",
              str(tmp_path / "fresh"), "--resume", "--quiet")
    assert r.returncode == 2 and "no run to continue" in r.stderr
    assert not (tmp_path / "fresh").exists()


def test_resume_with_more_epochs_extends_the_run_and_says_what_the_schedule_does(
        tmp_path, mnist_dir):
    """A 2-epoch cosine run extended to 3 epochs: the cosine is resolved again over 3 epochs,
    so update 2·spe runs at 0.003·(1+cos(π·2/3))/2, not at the 2-epoch cosine's end (0)."""
    res = train(_cfg(tmp_path, mnist_dir, epochs=2, schedule="cosine()"))
    spe = math.ceil(500 / 64)
    r = lrlab("train", "--resume", str(res.path), "--epochs", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "resolved again over 3 epochs" in r.stderr
    rows = read_jsonl(res.path / "metrics.jsonl")
    assert [x["epoch"] for x in rows] == [0, 1, 2]
    t, total = 2 * spe, 3 * spe
    assert rows[2]["lr_first"] == pytest.approx(0.003 * (1 + math.cos(math.pi * t / total)) / 2)
    config = json.loads((res.path / "config.json").read_text())
    assert config["epochs"] == 3 and config["extended_from_epochs"] == [2]
    event = next(e for e in read_jsonl(res.path / "events.jsonl") if e["kind"] == "extended")
    assert event["lr_before"] == pytest.approx(0.0, abs=1e-12)
    assert event["lr_after"] == pytest.approx(rows[2]["lr_first"])
    r = lrlab("train", "--resume", str(res.path), "--epochs", "1", "--quiet")
    assert r.returncode == 2 and "already trained 3 epochs" in r.stderr


def test_train_closes_the_process_group(tmp_path, mnist_dir, monkeypatch):
    from lrlab.lab.train import trainer
    from lrlab.lab.train.distributed import DistContext

    closed = []

    class Recording(DistContext):
        def close(self, clean: bool = True) -> None:
            closed.append(clean)

    monkeypatch.setattr(trainer, "init_distributed", lambda device: (Recording(), device))
    train(_cfg(tmp_path, mnist_dir, epochs=1, schedule="constant()"))
    assert closed == [True]


def test_summary_after_a_double_ctrl_c_counts_the_epochs_written(tmp_path, mnist_dir,
                                                                 monkeypatch):
    """A second Ctrl-C interrupts at once (here: while the checkpoint after epoch 2 is
    written): summary.json must say interrupted with the 3 epochs metrics.jsonl holds."""
    from lrlab.lab.train.session import RunSession

    calls = []
    real = RunSession.write_checkpoint

    def second_ctrl_c(self, *args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kw)

    monkeypatch.setattr(RunSession, "write_checkpoint", second_ctrl_c)
    cfg = _cfg(tmp_path, mnist_dir, epochs=5, schedule="constant()")
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    run = cfg.run_dir()
    rows = read_jsonl(run / "metrics.jsonl")
    summary = json.loads((run / "summary.json").read_text())
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert summary["status"] == "interrupted" and summary["epochs_done"] == 3
    assert summary["final_test_acc"] == rows[-1]["test_acc"]
