"""lrlab report: statistics, phases and observations recomputed from hand-written run records,
and a self-contained HTML file."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import re
import statistics
from pathlib import Path

import pytest

from lrlab.cli import main
from lrlab.lab.observations import RunData, observations, trace_rows
from lrlab.lab.report import load_runs, write_report


def _write_run(d: Path, config: dict, rows: list[dict], status: str = "ok",
               extra: dict | None = None) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(config))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "summary.json").write_text(json.dumps({"status": status, **(extra or {})}))
    return d


def _rows(train_loss, test_loss, test_acc, train_acc=None, lrs=None):
    out = []
    for i, (a, b, c) in enumerate(zip(train_loss, test_loss, test_acc)):
        lr = lrs[i] if lrs else 0.1
        out.append({"epoch": i, "step": 10 * (i + 1), "lr": lr, "lr_first": lr, "lr_last": lr,
                    "train_loss": a, "train_acc": train_acc[i] if train_acc else c,
                    "test_loss": b, "test_acc": c, "examples_per_s": 1000.0,
                    "epoch_time": 1.0, "time": float(i + 1)})
    return out


CONFIG = {"schedule": "constant()", "per": "epoch", "epochs": 6, "lr_used": 0.1,
          "optimizer": "sgd", "updates_per_epoch": 10}


def test_phases_follow_the_schedule_and_the_lr():
    # warmup(2) >> cosine() per epoch over 6 epochs, peak 0.1: from the formulas
    lrs = [0.1 * (u + 1) / 2 for u in range(2)]
    lrs += [0.1 * (1 + math.cos(math.pi * u / 4)) / 2 for u in range(4)]
    cfg = {**CONFIG, "schedule": "warmup(2) >> cosine()", "warmup": "2 epochs"}
    run = RunData("r", "r", 0, cfg, _rows([1.0] * 6, [1.0] * 6, [0.5] * 6, lrs=lrs),
                  status="ok")
    assert [t.phase for t in trace_rows(run)] == ["warmup", "warmup", "peak", "decay",
                                                   "decay", "decay"]
    notes = observations(run)
    assert any("Warmup ran over epochs 1–2" in n and "peak 0.1 at epoch 3" in n for n in notes)


def test_spike_overfitting_and_best_epoch_observations():
    train = [1.0, 0.5, 0.7, 0.4, 0.3, 0.2, 0.1]  # +40% at epoch 3 (1-based)
    test = [1.0, 0.6, 0.65, 0.5, 0.55, 0.6, 0.7]  # rises over epochs 4..7 while train falls
    acc = [0.5, 0.7, 0.68, 0.8, 0.79, 0.78, 0.77]
    run = RunData("r", "r", 0, {**CONFIG, "epochs": 7}, _rows(train, test, acc), status="ok")
    rows = trace_rows(run)
    assert rows[2].marks == ["loss spike"]
    assert [r.epoch for r in rows if "best" in r.marks] == [4]
    text = " ".join(observations(run, rows))
    assert "Loss spike at epoch 3: train loss rose 40% (0.5000 → 0.7000)" in text
    assert "Overfitting from epoch 4 to 7" in text
    assert "Best test accuracy 0.8000 at epoch 4 of 7; final 0.7700 (-0.0300)" in text


def test_divergence_observation_names_update_and_lr():
    rows = _rows([2.3], [2.2], [0.2]) + [{"epoch": 1, "step": 12, "lr": 5.0, "lr_first": 5.0,
                                          "lr_last": 5.0, "train_loss": "nan",
                                          "train_acc": 0.1, "diverged": True, "time": 2.0}]
    run = RunData("r", "r", 0, CONFIG, rows, status="diverged",
                  summary={"status": "diverged",
                           "diverged_at": {"update": 12, "lr": 5.0, "loss": "nan", "epoch": 1}})
    rows = trace_rows(run)
    assert "diverged" in rows[1].marks
    assert any("Diverged at update 12 (epoch 2) with LR 5" in n for n in observations(run))


@pytest.fixture
def comparison(tmp_path):
    """Two labels: 'a' with seeds finishing at 0.80 / 0.90, 'b' with one ok and one diverged."""
    d = tmp_path / "cmp"
    runs = [("a-s0", "a", 0, [0.7, 0.80], "ok"), ("a-s1", "a", 1, [0.85, 0.90], "ok"),
            ("b-s0", "b", 0, [0.6, 0.75], "ok"), ("b-s1", "b", 1, [0.5], "diverged")]
    for name, _label, seed, accs, status in runs:
        n = len(accs)
        _write_run(d / "runs" / name, {**CONFIG, "epochs": 2, "seed": seed},
                   _rows([1.0 - 0.1 * i for i in range(n)], [1.0] * n, accs), status,
                   {"diverged_at": {"update": 15, "lr": 3.0, "loss": "inf", "epoch": 1}}
                   if status == "diverged" else None)
    meta = {"title": "T", "source": "test", "baseline": "b", "notes": ["a note"],
            "contrasts": [["a", "b"], ["b", "a"], ["a", "nope"]],
            "labels": [{"label": "a", "notes": ["row note"],
                        "reference": {"value": 0.8, "spread": 0.01, "kind": "published",
                                      "source": "book"}},
                       {"label": "b", "notes": [], "reference": None}],
            "runs": [{"name": n, "label": lab, "seed": s} for n, lab, s, _, _ in runs],
            "failures": {}}
    (d / "comparison.json").write_text(json.dumps(meta))
    return d


def test_summary_statistics_and_csv(comparison, capsys):
    assert main(["report", str(comparison)]) == 0
    out = capsys.readouterr().out
    table = list(csv.DictReader(io.StringIO((comparison / "summary.csv").read_text())))
    a, b = table
    assert a["label"] == "a" and a["runs"] == "2" and a["ok"] == "2"
    assert float(a["final_acc_mean"]) == pytest.approx(0.85, abs=1e-6)
    assert float(a["final_acc_sd"]) == pytest.approx(statistics.stdev([0.8, 0.9]), abs=1e-6)
    assert float(a["diff"]) == pytest.approx(0.85 - 0.8, abs=1e-6)
    # the diverged run is counted, not averaged
    assert b["diverged"] == "1" and b["ok"] == "1"
    assert float(b["final_acc_mean"]) == pytest.approx(0.75, abs=1e-6) and b["final_acc_sd"] == ""
    assert "1/2 diverged" in b["notes"]
    assert out.startswith("best: a 0.8500 ± 0.0707 (2 seeds), +0.1000 over b")


def test_html_is_self_contained(comparison):
    write_report(comparison)
    page = (comparison / "report.html").read_text()
    assert "http" not in page and "href" not in page.lower()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert len(srcs) == 3
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<link" not in page and "<script" not in page and "url(" not in page


def test_report_of_a_single_run_dir(tmp_path):
    d = _write_run(tmp_path / "one", {**CONFIG, "epochs": 3},
                   _rows([1.0, 0.8, 0.6], [1.0, 0.9, 0.8], [0.5, 0.6, 0.7]))
    files = write_report(d)
    md = files.markdown.read_text()
    assert "Epoch by epoch: one" in md and "0.7000" in md
    meta, runs = load_runs(d)
    assert len(runs) == 1 and runs[0].status == "ok"


def test_trace_label_must_exist(comparison, capsys):
    assert main(["report", str(comparison), "--trace", "zzz"]) == 2
    assert "no run labelled 'zzz'" in capsys.readouterr().err
    assert main(["report", str(comparison), "--trace", "b"]) == 0
    assert "Epoch by epoch: b-s0" in (comparison / "report.md").read_text()


def test_contrasts_compare_final_means(comparison):
    write_report(comparison)
    md = (comparison / "report.md").read_text()
    section = md.split("## Side by side", 1)[1].split("## Curves", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| a") or ln.startswith("| b")]
    # a: mean of 0.80 and 0.90; b: its one finished run, 0.75; noise = sd of a = 0.0707
    assert lines[0].startswith("| a | b | 0.8500 ± 0.0707 | 0.7500 | +0.1000 | better |")
    assert lines[1].startswith("| b | a | 0.7500 | 0.8500 ± 0.0707 | -0.1000 | worse |")
    assert len(lines) == 2  # a pair naming an unknown label is left out


def test_lone_warmup_phase_ends_at_its_length():
    # warmup(2, start=0) alone, per epoch, peak 0.1: 0, 0.05, then pinned at 0.1
    lrs = [0.0, 0.05, 0.1, 0.1]
    cfg = {**CONFIG, "schedule": "warmup(2, start=0)", "epochs": 4}
    run = RunData("r", "r", 0, cfg, _rows([1.0] * 4, [1.0] * 4, [0.5] * 4, lrs=lrs),
                  status="ok")
    assert [t.phase for t in trace_rows(run)] == ["warmup", "warmup", "peak", "peak"]
    assert any(n.startswith("Warmup ran over epochs 1–2 (2 epochs)") for n in observations(run))


def test_verdict_against_a_published_spread_and_a_target():
    from collections import Counter

    from lrlab.lab.report import LabelStats

    def stats(finals, ref):
        return LabelStats("x", [], Counter(), finals, finals, None, None, ref)

    published = {"value": 0.878, "spread": 0.007, "kind": "published"}
    assert stats([0.875, 0.877], published).verdict == "within"  # mean 0.876: |-0.002| <= 0.007
    assert stats([0.886, 0.887], published).verdict == "above"   # +0.0085 > 0.007
    assert stats([0.1, 0.1], published).verdict == "below"
    target = {"value": 0.908, "kind": "target"}
    assert stats([0.914], target).verdict == "met" and stats([0.9], target).verdict == "missed"
    assert stats([0.9], None).verdict is None
