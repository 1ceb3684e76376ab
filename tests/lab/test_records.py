"""One writer per run directory, and comparisons that survive their parent being killed.

Every wait here is for an observable event (a metrics row written, a process exit), never a
fixed sleep, so the trials hold on a loaded machine. In every case each epoch must appear in
metrics.jsonl exactly once, in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lrlab.lab.records import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
EPOCHS = 25
# blobs: 600 training examples, batch 4 -> 150 updates per epoch: long enough to act on
TRAIN = ["--dataset", "blobs", "--optimizer", "adam", "--lr", "0.001", "--batch-size", "4",
         "--epochs", str(EPOCHS), "--threads", "1", "--quiet"]


def lrlab(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrlab", *args], env=ENV, capture_output=True,
                          text=True, timeout=600, **kw)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lrlab", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_rows(metrics: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metrics.exists() and len(read_jsonl(metrics)) >= n:
            return
        assert proc.poll() is None, f"exited early: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"{metrics} never reached {n} rows")


def epochs_of(run: Path) -> list[int]:
    return [r["epoch"] for r in read_jsonl(run / "metrics.jsonl")]


def test_a_second_writer_and_a_resume_while_running_are_refused(tmp_path):
    run = tmp_path / "run"
    first = start("train", *TRAIN, "--out", str(tmp_path), "--name", "run")
    wait_for_rows(run / "metrics.jsonl", 1, first)
    os.kill(first.pid, signal.SIGSTOP)  # frozen mid-run, still holding the run's lock
    try:
        second = lrlab("train", *TRAIN, "--out", str(tmp_path), "--name", "run")
        resumed = lrlab("train", "--resume", str(run), "--quiet")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    for r in (second, resumed):
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert f"being trained by process {first.pid}" in r.stderr
    assert epochs_of(run) == list(range(EPOCHS))
    assert json.loads((run / "summary.json").read_text())["status"] == "ok"


def _compare(out: Path) -> list[str]:
    return ["compare", "--grid", "optimizer=adam", "--seeds", "0", "--out", str(out),
            *[a for a in TRAIN if a != "--optimizer" and a != "adam"]]


def _only_run(out: Path) -> Path:
    runs = list((out / "runs").iterdir()) if (out / "runs").exists() else []
    return runs[0] if runs else out / "runs" / "missing"


def _wait_for_run(out: Path, proc: subprocess.Popen, rows: int) -> Path:
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "runs").exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    while time.time() < deadline and not any((out / "runs").iterdir()):
        time.sleep(0.02)
    run = _only_run(out)
    wait_for_rows(run / "metrics.jsonl", rows, proc)
    return run


def test_sigkill_of_a_compare_parent_then_an_immediate_rerun(tmp_path):
    """SIGKILL reaches the parent alone; its worker gets SIGTERM from the kernel (parent-death
    signal), checkpoints and stops; the rerun's worker waits for its lock and resumes."""
    out = tmp_path / "cmp"
    parent = start(*_compare(out))
    run = _wait_for_run(out, parent, 2)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    again = lrlab(*_compare(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert epochs_of(run) == list(range(EPOCHS))
    assert json.loads((run / "summary.json").read_text())["status"] == "ok"


def test_sigterm_of_a_compare_parent_stops_its_workers_like_ctrl_c(tmp_path):
    out = tmp_path / "cmp"
    parent = start(*_compare(out))
    run = _wait_for_run(out, parent, 2)
    parent.send_signal(signal.SIGTERM)
    _, err = parent.communicate(timeout=300)
    assert parent.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"  # the worker checkpointed and stopped
    assert len(epochs_of(run)) < EPOCHS
    again = lrlab(*_compare(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert epochs_of(run) == list(range(EPOCHS))


def test_sigterm_of_a_train_checkpoints_and_resume_completes(tmp_path):
    run = tmp_path / "run"
    proc = start("train", *TRAIN, "--out", str(tmp_path), "--name", "run")
    wait_for_rows(run / "metrics.jsonl", 1, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "--resume" in out
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    r = lrlab("train", "--resume", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    assert epochs_of(run) == list(range(EPOCHS))
