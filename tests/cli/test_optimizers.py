"""`lrlab train` / `lrlab find-lr` with the Schedule-Free, Muon and Prodigy optimizers: tiny
blobs runs with schedules and `--lr auto`, the printed suggestion, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrlab.cli import main
from lrlab.lab.compare.presets import PRESETS
from lrlab.lab.records import read_jsonl

NEW = ("adamw-schedulefree", "sgd-schedulefree", "muon", "prodigy")
LR = {"adamw-schedulefree": "0.01", "sgd-schedulefree": "0.1", "muon": "0.01", "prodigy": "1"}


def _train(tmp_path: Path, capsys, *args: str) -> tuple[int, str, str, Path]:
    code = main(["train", "--dataset", "blobs", "--epochs", "2", "--batch-size", "64",
                 "--threads", "1", "--quiet", "--out", str(tmp_path), "--name", "run", *args])
    out, err = capsys.readouterr()
    return code, out, err, tmp_path / "run"


@pytest.mark.parametrize("name", NEW)
def test_train_runs_with_the_default_schedule(tmp_path, capsys, name: str) -> None:
    code, out, err, run = _train(tmp_path, capsys, "--optimizer", name, "--lr", LR[name])
    assert code == 0, err
    assert out.startswith("ok: ") and err == ""
    config = json.loads((run / "config.json").read_text())
    assert config["optimizer"] == name and config["schedule"] == "constant()"


@pytest.mark.parametrize("name, schedule", [
    ("muon", "warmup(1ep) >> cosine()"),
    ("muon", "warmup(auto) >> wsd(decay=5)"),
    ("prodigy", "warmup(1ep) >> cosine()"),
    ("adamw-schedulefree", "warmup(1ep) >> constant()"),
])
def test_train_with_a_schedule(tmp_path, capsys, name: str, schedule: str) -> None:
    extra = ["--betas", "0.9,0.9"] if "auto" in schedule else []  # warmup(auto): 20 updates
    code, out, err, run = _train(tmp_path, capsys, "--optimizer", name, "--lr", LR[name],
                                 "--schedule", schedule, "--epochs", "3", *extra)
    assert code == 0 and err == "", err
    rows = read_jsonl(run / "metrics.jsonl")
    peak = float(LR[name])
    assert rows[0]["lr_first"] < peak  # the warmup's first update, below the peak
    if "cosine" in schedule:
        assert rows[-1]["lr_last"] < rows[1]["lr_first"]


def test_a_decaying_schedule_with_schedule_free_is_one_warning_line(tmp_path, capsys) -> None:
    code, out, err, run = _train(tmp_path, capsys, "--optimizer", "sgd-schedulefree", "--lr",
                                 "0.1", "--schedule", "warmup(1ep) >> cosine()")
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrlab train: warning: sgd-schedulefree")


@pytest.mark.parametrize("name", NEW)
def test_train_lr_auto(tmp_path, capsys, name: str) -> None:
    code, out, err, run = _train(tmp_path, capsys, "--optimizer", name, "--lr", "auto")
    assert code == 0, err
    finder = json.loads((run / "lr_finder.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert config["lr_base"] == finder["lr_base"] > 0
    assert json.loads((run / "summary.json").read_text())["status"] in ("ok", "not-learning")


@pytest.mark.parametrize("name", ["adamw-schedulefree", "muon"])
def test_find_lr_suggests_a_schedule_for_each(tmp_path, capsys, name: str) -> None:
    code = main(["find-lr", "--dataset", "blobs", "--optimizer", name, "--threads", "1",
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    line = next(x for x in out.splitlines() if x.strip().startswith("lrlab train"))
    if name == "adamw-schedulefree":  # no decay for Schedule-Free: a warmup, then constant
        assert "'warmup(1ep) >> constant()'" in line and "schedule-free" in out
    else:
        assert "'warmup(1ep) >> cosine()'" in line


@pytest.mark.parametrize("args, needle", [
    (["--optimizer", "sgd-schedulefree", "--momentum", "0"], "momentum"),
    (["--optimizer", "muon", "--eps", "0"], "eps"),
    (["--optimizer", "prodigy", "--lr-mult", "1.*=2"], "share one lr"),
    (["--optimizer", "muon", "--alpha", "0.9"], None),  # not a flag at all: argparse's exit
])
def test_bad_settings_are_one_line_exit_2(tmp_path, capsys, args, needle) -> None:
    if needle is None:
        with pytest.raises(SystemExit) as info:
            main(["train", "--dataset", "blobs", *args, "--out", str(tmp_path)])
        assert info.value.code == 2
        return
    code, out, err, run = _train(tmp_path, capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err.lower(), err
    assert "Traceback" not in err


def test_the_optimizers_preset_has_the_new_names() -> None:
    rows = {r.label: r.settings for r in PRESETS["optimizers"].rows}
    for name in NEW:
        assert rows[name]["optimizer"] == name
    assert rows["adamw-schedulefree"]["schedule"] == "warmup(1ep) >> constant()"
    assert "schedule" not in rows["muon"]  # the preset's warmup + cosine
