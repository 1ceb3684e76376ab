"""`lrlab schedule`: tables, formats, plots and one-line errors, run as a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys

import pytest

from lrlab.cli import main


def lrlab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrlab", *args], capture_output=True, text=True,
                          timeout=120)


def _expected_warmup5_cosine(n=20, lr=0.5, end=0.01):
    out = [lr * (u + 1) / 5 for u in range(5)]
    T = n - 5
    out += [lr * (end + (1 - end) * (1 + math.cos(math.pi * u / T)) / 2) for u in range(T)]
    return out


def test_acceptance_command_prints_twenty_lrs_and_plots(tmp_path):
    png = tmp_path / "s.png"
    r = lrlab("schedule", "warmup(5) >> cosine(end=0.01)", "--lr", "0.5", "--steps", "20",
              "--plot", str(png))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    rows = [ln.split() for ln in lines[2:22]]
    assert [int(r[0]) for r in rows] == list(range(20))
    assert [float(r[1]) for r in rows] == pytest.approx(_expected_warmup5_cosine(), rel=1e-5)
    assert any("▇" in ln or "█" in ln for ln in lines)  # the terminal curve
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert img.std() > 0.01  # not a blank canvas


def test_csv_and_json_formats_and_compare(capsys):
    assert main(["schedule", "warmup(5) >> cosine(end=0.01)", "--lr", "0.5", "--steps", "20",
                 "--format", "csv", "--compare", "constant()"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["update", "lr warmup(5) >> cosine(end=0.01)", "lr constant()"]
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(_expected_warmup5_cosine(), rel=1e-12)
    assert [float(r[2]) for r in rows[1:]] == [0.5] * 20
    assert main(["schedule", "warmup(2) >> linear()", "--steps", "10", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    s = doc["schedules"][0]
    assert s["boundaries"] == [2] and s["phases"] == ["warmup", "linear"]
    assert s["lr"] == pytest.approx([0.5, 1] + [1 - u / 8 for u in range(8)])


def test_per_epoch_table_answers_what_is_the_lr_at_epoch_3(capsys):
    assert main(["schedule", "warmup(1ep) >> cosine()", "--lr", "1", "--epochs", "5",
                 "--steps-per-epoch", "10", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][:2] == ["epoch", "first update"]
    epoch3 = rows[1 + 3]
    T = 40
    assert float(epoch3[2]) == pytest.approx((1 + math.cos(math.pi * 20 / T)) / 2)
    assert float(epoch3[3]) == pytest.approx((1 + math.cos(math.pi * 29 / T)) / 2)
    # per-epoch stepping: one row per epoch
    assert main(["schedule", "multistep([2, 4], gamma=0.5)", "--lr", "0.4", "--epochs", "5",
                 "--per", "epoch", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert [float(r[1]) for r in rows[1:]] == pytest.approx([0.4, 0.4, 0.2, 0.2, 0.1])


@pytest.mark.parametrize("args, needle", [
    (["schedule", "cosin()", "--steps", "10"], "position"),
    (["schedule", "warmup(20) >> cosine()", "--steps", "10"], "longer"),
    (["schedule", "warmup(10%) >> cosine()"], "--steps"),
    (["schedule", "warmup(-3)", "--steps", "10"], "warmup"),
    (["schedule", "warmup(5", "--steps", "10"], "position"),
    (["schedule", "cosine()", "--steps", "0"], "positive"),
    (["schedule", "cosine()", "--steps", "10", "--lr", "nan"], "finite"),
    (["schedule", "cosine()", "--steps", "10", "--lr", "-1"], "positive"),
    (["schedule", "cosine()", "--steps", "10", "--plot", "x.txt"], ".png"),
])
def test_errors_are_one_line_exit_2(args, needle):
    r = lrlab(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert needle in r.stderr


@pytest.mark.parametrize("spec, steps, first_bad", [
    # 1.5**t overflows a float once t*log(1.5) > log(max float): t = 1751
    ("exp(1.5)", 5000, math.floor(math.log(1.7976931348623157e308) / math.log(1.5)) + 1),
    ("exp(1e10)", 100, math.floor(math.log(1.7976931348623157e308) / math.log(1e10)) + 1),
])
def test_a_schedule_reaching_inf_is_refused_never_printed(spec, steps, first_bad):
    for fmt in ("json", "table", "csv"):
        r = lrlab("schedule", spec, "--steps", str(steps), "--format", fmt)
        assert r.returncode == 2, r.stdout
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
        assert f"update {first_bad}" in r.stderr
        assert "Infinity" not in r.stdout and "inf" not in r.stdout


def test_warmup_auto_per_epoch_counts_updates():
    """beta2 0.99: 2/(1-0.99) = 200 updates = 4 epochs of 50 updates, not 200 epochs."""
    r = lrlab("schedule", "warmup(auto)", "--per", "epoch", "--epochs", "6",
              "--steps-per-epoch", "50", "--beta2", "0.99", "--format", "json")
    assert r.returncode == 0, r.stderr
    lrs = json.loads(r.stdout)["schedules"][0]["lr"]
    assert lrs == pytest.approx([(e + 1) / 4 for e in range(4)] + [1.0, 1.0])


def test_length_errors_name_the_unit_the_schedule_steps_in():
    r = lrlab("schedule", "warmup(5)", "--per", "epoch", "--epochs", "3")
    assert r.returncode == 2 and "longer than training (3 epochs)" in r.stderr
    r = lrlab("schedule", "warmup(5)", "--steps", "3")
    assert r.returncode == 2 and "longer than training (3 updates)" in r.stderr


def test_new_constructs_print_through_the_cli(capsys):
    """Products, the training clock, cyclic and SGDR with warmup: the CLI prints their LRs."""
    assert main(["schedule", "warmup(3) >> cosine() * exp(0.9)", "--steps", "8", "--lr", "2",
                 "--format", "json"]) == 0
    s = json.loads(capsys.readouterr().out)["schedules"][0]
    assert s["boundaries"] == [3] and s["phases"] == ["warmup", "cosine*exp"]
    want = [2 * (u + 1) / 3 for u in range(3)] + [
        2 * (1 + math.cos(math.pi * u / 5)) / 2 * 0.9**u for u in range(5)]
    assert s["lr"] == pytest.approx(want, rel=1e-12)
    for spec, first in [("cyclic(10, low=0.2, mode=triangular2)", 0.2),
                        ("warmup(4, start=0) >> cosine(clock=train)", 0.0),
                        ("restarts(period=10, peaks=[1, 0.5], warmup=2, start=0)", 0.0),
                        ("wsd(shape=sqrt)", 1.0)]:
        assert main(["schedule", spec, "--steps", "20", "--format", "csv"]) == 0, spec
        rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
        assert float(rows[1][1]) == pytest.approx(first) and len(rows) == 21


@pytest.mark.parametrize("spec,needle", [
    ("cyclic(10, up=1.5)", "position 14"),
    ("cosine() * plateau() * plateau()", "only one plateau"),
    ("(warmup(5) >> cosine()", "never closed"),
    ("cyclic(-5)", ">= 0"),
])
def test_new_constructs_refuse_bad_specs_in_one_line(spec, needle, capsys):
    assert main(["schedule", spec, "--steps", "20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
