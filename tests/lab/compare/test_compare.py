"""lrlab compare: grid splitting and expansion, presets as data, the worker runner (parallel,
resumable, failures isolated), and one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrlab.cli import main
from lrlab.errors import LrlabError
from lrlab.lab.compare.plan import parse_grid, plan_comparison, split_grid_values
from lrlab.lab.compare.presets import PRESETS
from lrlab.lab.records import read_jsonl
from lrlab.schedules import Context, parse

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")}


# -- grid values ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("sgd,adam", ["sgd", "adam"]),
    ("constant();cosine()", ["constant()", "cosine()"]),
    ("multistep([15, 30], gamma=0.5),cosine(end=0.1)",
     ["multistep([15, 30], gamma=0.5)", "cosine(end=0.1)"]),
    ("warmup(1ep) >> cosine(end=0.01, steps=20); constant()",
     ["warmup(1ep) >> cosine(end=0.01, steps=20)", "constant()"]),
    ("0.9,0.999;0.9,0.99", ["0.9,0.999", "0.9,0.99"]),
])
def test_split_grid_values_keeps_brackets_together(text, expected):
    assert split_grid_values(text) == expected


def test_parse_grid_converts_to_field_types():
    grid = parse_grid(["lr=0.1,auto", "epochs=2,3", "betas=0.9,0.999;0.8,0.99",
                       "weight-decay=0,0.05", "channels_last=true,false"])
    assert grid["lr"] == [0.1, "auto"]
    assert grid["epochs"] == [2, 3] and all(type(e) is int for e in grid["epochs"])
    assert grid["betas"] == [(0.9, 0.999), (0.8, 0.99)]
    assert grid["weight_decay"] == [0.0, 0.05]
    assert grid["channels_last"] == [True, False]


@pytest.mark.parametrize("option", ["foo=1,2", "lr", "epochs=two", "out=a,b", "lr=0.1,,0.2"])
def test_parse_grid_rejects_bad_options(option):
    with pytest.raises(LrlabError):
        parse_grid([option])


# -- plans -----------------------------------------------------------------------------------------
def test_preset_plan_is_rows_times_seeds_with_overrides(tmp_path):
    preset = PRESETS["quickstart"]
    plan = plan_comparison(preset="quickstart", seeds=[0, 1, 2], epochs=2,
                           overrides={"dataset": "blobs", "limit": 100}, out=tmp_path)
    assert len(plan.runs) == 3 * len(preset.rows)
    assert [d["label"] for d in plan.labels] == [r.label for r in preset.rows]
    names = [r.name for r in plan.runs]
    assert len(set(names)) == len(names)
    for run in plan.runs:
        assert run.name.endswith(f"-s{run.seed}")
        assert run.config.epochs == 2 and run.config.dataset == "blobs"
        assert run.config.limit == 100 and run.config.seed == run.seed
        assert Path(run.config.out) == tmp_path / "runs"
    schedules = {r.label: r.config.schedule for r in plan.runs}
    assert schedules["warmup + cosine"] == "warmup(1ep) >> cosine()"


def test_toml_plan_expands_runs_times_grid(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('title = "mine"\nepochs = 3\ndataset = "blobs"\nseeds = [4, 5]\n'
                 '[[run]]\nlabel = "a"\noptimizer = "sgd"\nlr = 0.1\n'
                 '[[run]]\nlabel = "b"\noptimizer = "adam"\n'
                 '[grid]\nschedule = ["constant()", "cosine()"]\n')
    plan = plan_comparison(file=f, out=tmp_path / "o")
    assert plan.title == "mine"
    assert [d["label"] for d in plan.labels] == [
        "a schedule=constant()", "a schedule=cosine()", "b schedule=constant()",
        "b schedule=cosine()"]
    assert len(plan.runs) == 8
    assert {r.seed for r in plan.runs} == {4, 5}
    a = [r for r in plan.runs if r.label.startswith("a ")]
    assert all(r.config.optimizer == "sgd" and r.config.lr == 0.1 and r.config.epochs == 3
               for r in a)


def test_every_preset_expands_to_valid_configs():
    for name, preset in PRESETS.items():
        plan = plan_comparison(preset=name, out="x")
        assert len(plan.runs) == len(preset.rows) * len(preset.seeds)
        own = {row.label: row.settings.get("epochs", preset.epochs) for row in preset.rows}
        assert all(r.config.epochs == own[r.label] for r in plan.runs)
        for run in plan.runs:
            parse(run.config.schedule)


def _d2l_lrs(label: str) -> list[float]:
    row = next(r for r in PRESETS["d2l-schedules"].rows if r.label == label)
    lr = row.settings["lr"]
    bound = parse(row.settings["schedule"]).resolve(Context(30, 1, None, lr))
    return [lr * m for m in bound.values(30)]


def test_d2l_schedules_follow_the_book_text():
    # formulas of D2L 12.11, written out here, per epoch t = 0..29
    assert _d2l_lrs("fixed 0.3") == pytest.approx([0.3] * 30)
    assert _d2l_lrs("square root") == pytest.approx([0.1 * (t + 1) ** -0.5 for t in range(30)])
    assert _d2l_lrs("factor 0.9") == pytest.approx([max(0.01, 2.0 * 0.9 ** t)
                                                    for t in range(30)])
    assert _d2l_lrs("multi-step") == pytest.approx([0.5 if t < 15 else 0.25 for t in range(30)])
    cos = [0.01 + (0.3 - 0.01) * (1 + math.cos(math.pi * t / 20)) / 2 if t <= 20 else 0.01
           for t in range(30)]
    assert _d2l_lrs("cosine") == pytest.approx(cos)
    warm = [0.3 * (t + 1) / 5 if t < 5 else
            0.01 + (0.3 - 0.01) * (1 + math.cos(math.pi * (t - 5) / 15)) / 2 if t <= 20 else 0.01
            for t in range(30)]
    assert _d2l_lrs("warmup + cosine") == pytest.approx(warm)


def test_published_numbers_are_stored_with_their_source():
    d2l = {r.label: r.reference for r in PRESETS["d2l-schedules"].rows}
    assert (d2l["fixed 0.3"].value, d2l["fixed 0.3"].spread) == (0.883, 0.013)
    assert (d2l["cosine"].value, d2l["cosine"].spread) == (0.899, 0.005)
    assert d2l["lrlab"].kind == "target" and d2l["lrlab"].value == 0.908
    assert d2l["factor 0.9"] is None
    unit6 = {r.label: r.reference.value for r in PRESETS["dl-fundamentals-unit6"].rows}
    assert unit6["no schedule"] == 0.8625 and unit6["plateau"] == 0.892
    assert all(r.reference.source for p in PRESETS.values() for r in p.rows if r.reference)


# -- one-line errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["compare", "--preset", "nope"],
    ["compare", "--grid", "foo=1,2", "--dataset", "blobs"],
    ["compare", "--grid", "schedule=cosine(;constant()", "--dataset", "blobs"],
    ["compare"],
    ["compare", "--preset", "quickstart", "--name", "x"],
])
def test_user_errors_are_one_line_exit_2(argv, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lrlab compare: error:") and "\n" not in err


@pytest.mark.parametrize("text", ["this is = = not toml", 'epochs = 2\nbogus_key = 1\n',
                                  '[[run]]\nlabel = "a"\nlr = "fast"\n'])
def test_bad_toml_is_one_line_exit_2(text, capsys, tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    assert main(["compare", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lrlab compare: error:") and "\n" not in err


# -- running -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    """A 2x2 grid plus a diverging row, run with --jobs 2 (the slow part, done once, here:
    the tests that use it may run in any order), with what the first run printed."""
    base = tmp_path_factory.mktemp("cmp")
    f = base / "runs.toml"
    f.write_text('[[run]]\nlabel = "sgd"\noptimizer = "sgd"\nlr = 0.1\n'
                 '[[run]]\nlabel = "adam"\noptimizer = "adam"\nlr = 0.01\n'
                 '[[run]]\nlabel = "too high"\noptimizer = "sgd"\nlr = 1e6\n'
                 'schedule = "constant()"\n')
    out = base / "out"
    # classification is not separable, so an LR of 1e6 blows the loss up (blobs would not)
    argv = ["compare", str(f), "--grid", "schedule=constant();cosine()", "--dataset",
            "classification", "--limit", "512", "--batch-size", "32", "--epochs", "2",
            "--jobs", "2", "--out", str(out)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    return out, argv, code, printed.getvalue()


def test_grid_runs_all_reports_and_isolates_divergence(grid_dir):
    out, argv, code, text = grid_dir
    # the diverging row is in the grid too: 3 rows x 2 schedules
    assert code == 0
    meta = json.loads((out / "comparison.json").read_text())
    assert len(meta["runs"]) == 6
    for r in meta["runs"]:
        summary = json.loads((out / "runs" / r["name"] / "summary.json").read_text())
        if r["label"].startswith("too high"):
            assert summary["status"] == "diverged", r["name"]
        else:  # finished all its epochs (a 2-epoch run on 512 examples may be flagged
            assert summary["status"] in ("ok", "not-learning"), r["name"]  # not-learning)
            assert summary["epochs_done"] == 2
        assert f"{r['name']}: {summary['status']}" in text
    for name in ("report.md", "report.html", "summary.csv", "lr.png"):
        assert (out / name).stat().st_size > 0
    rows = (out / "summary.csv").read_text().splitlines()
    assert len(rows) == 1 + 6
    assert "report.html" in text and "report.md" in text


def test_rerun_skips_finished_runs_and_report_reproduces(grid_dir, capsys):
    out, argv, code, _ = grid_dir
    assert code == 0
    capsys.readouterr()
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.jsonl")}
    csv_before = (out / "summary.csv").read_bytes()
    md_before = (out / "report.md").read_text()
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("skipped") == 6
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/metrics.jsonl")} == mtimes
    (out / "summary.csv").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "summary.csv").read_bytes() == csv_before

    def table(md: str) -> str:
        return md.split("## Summary", 1)[1].split("## Curves", 1)[0]
    assert table((out / "report.md").read_text()) == table(md_before)


def test_failing_run_is_recorded_and_others_finish(tmp_path, capsys):
    # a schedule longer than training parses but cannot be resolved: the worker fails
    f = tmp_path / "c.toml"
    f.write_text('dataset = "blobs"\nepochs = 1\noptimizer = "sgd"\nlr = 0.1\n'
                 '[[run]]\nlabel = "fine"\nschedule = "constant()"\n'
                 '[[run]]\nlabel = "broken"\nschedule = "warmup(100000) >> cosine()"\n')
    assert main(["compare", str(f), "--jobs", "2", "--out", str(tmp_path / "o")]) == 1
    text = capsys.readouterr().out
    assert "broken-s0: failed:" in text and "fine-s0: ok" in text
    meta = json.loads((tmp_path / "o" / "comparison.json").read_text())
    assert "longer than training" in meta["failures"]["broken-s0"]
    assert "failed" in (tmp_path / "o" / "report.md").read_text()


def test_killed_comparison_resumes_the_run(tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["compare", "--grid", "optimizer=sgd", "--dataset", "blobs", "--epochs", "150",
            "--batch-size", "8", "--lr", "0.01", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "lrlab", *argv], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    metrics = out / "runs" / "optimizer=sgd-s0" / "metrics.jsonl"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and len(read_jsonl(metrics)) < 3:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    summary = json.loads((metrics.parent / "summary.json").read_text())
    assert summary["status"] == "running"
    done_before = len(read_jsonl(metrics))
    assert 3 <= done_before < 150
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "[resumed]" in text
    assert [r["epoch"] for r in read_jsonl(metrics)] == list(range(150))
    events = read_jsonl(metrics.parent / "events.jsonl")
    assert any(e["kind"] == "resumed" for e in events)
