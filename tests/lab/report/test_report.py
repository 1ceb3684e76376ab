"""lrlab report: statistics, phases and observations recomputed from hand-written run records,
and a self-contained HTML file. The statistics themselves are tested in test_stats.py; here:
that the report shows them, chooses on validation and says what the seeds allow."""

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
from scipy import stats as sps

from lrlab.cli import main
from lrlab.lab.report.build import build_report, write_report
from lrlab.lab.report.observations import (
    RunData,
    observations,
    run_beta2,
    trace_rows,
    warmup_length,
)
from lrlab.lab.report.runs import load_runs

# Student's t quantile t(0.975, 1) from a printed table: the 95% interval of a 2-seed mean
T975_1 = 12.706


def _write_run(d: Path, config: dict, rows: list[dict], status: str = "ok",
               extra: dict | None = None, events: list[dict] | None = None) -> Path:
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(config))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "summary.json").write_text(json.dumps({"status": status, **(extra or {})}))
    if events:
        (d / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return d


def _rows(train_loss, test_loss, test_acc, train_acc=None, lrs=None, val_acc=None):
    out = []
    for i, (a, b, c) in enumerate(zip(train_loss, test_loss, test_acc)):
        lr = lrs[i] if lrs else 0.1
        out.append({"epoch": i, "step": 10 * (i + 1), "lr": lr, "lr_first": lr, "lr_last": lr,
                    "train_loss": a, "train_acc": train_acc[i] if train_acc else c,
                    "test_loss": b, "test_acc": c, "examples_per_s": 1000.0,
                    "epoch_time": 1.0, "time": float(i + 1)})
        if val_acc is not None:
            out[-1].update(val_loss=b, val_acc=val_acc[i])
    return out


def _comparison(d: Path, labels: dict[str, list[tuple[float, float | None]]], **meta) -> Path:
    """A comparison whose label L has one ok run per (final test acc, final val acc or None)
    given, 2 epochs each; ``meta`` adds comparison.json keys (contrasts, baseline, …)."""
    runs = []
    for label, finals in labels.items():
        for seed, (test, val) in enumerate(finals):
            name = f"{label}-s{seed}"
            cfg = {**CONFIG, "epochs": 2, "seed": seed, "n_val": 0 if val is None else 100}
            _write_run(d / "runs" / name, cfg,
                       _rows([1.0, 0.5], [1.0, 0.9], [0.5, test],
                             val_acc=None if val is None else [0.5, val]))
            runs.append({"name": name, "label": label, "seed": seed})
    full = {"title": "T", "source": "test", "labels": [{"label": k, "notes": [],
                                                       "reference": None} for k in labels],
            "runs": runs, "failures": {}, **meta}
    (d / "comparison.json").write_text(json.dumps(full))
    return d


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
    for record in ({"update": 12, "lr": 5.0, "loss": "nan", "epoch": 1},  # older records
                   {"cause": "nonfinite", "update": 12, "lr": 5.0, "loss": "nan", "epoch": 1,
                    "loss_before": 2.3}):
        run = RunData("r", "r", 0, CONFIG, rows, status="diverged",
                      summary={"status": "diverged", "diverged_at": record})
        assert "diverged" in trace_rows(run)[1].marks
        text = " ".join(observations(run))
        assert "Diverged at epoch 2 (update 12, LR 5)" in text
        assert "Collapsed" not in text and "Did not learn" not in text


def _collapsed_run(cause_key: str = "cause") -> RunData:
    """Trained to 0.887 test accuracy, then at epoch 30 (0-based 29) the train loss jumped from
    0.177 to 8.63 and accuracy fell to 0.10 (issue 10, item 4.12)."""
    n = 30
    train = [1.0 - 0.028 * i for i in range(n - 1)] + [8.63]
    train[-2] = 0.177
    acc = [0.5 + 0.013 * i for i in range(n - 1)] + [0.10]
    acc[-2] = 0.887
    stop = {cause_key: "collapse", "epoch": 29, "update": 6990, "lr": 0.3, "loss": 8.63,
            "loss_before": 0.177}
    return RunData("fixed-s0", "fixed", 0, {**CONFIG, "epochs": 30},
                   _rows(train, [1.0] * n, acc, lrs=[0.3] * n), status="diverged",
                   summary={"status": "diverged", "diverged_at": stop},
                   events=[{"kind": "diverged", "message": "collapsed after learning", **stop}])


@pytest.mark.parametrize("cause_key", ["cause", "kind"])
def test_collapse_after_learning_is_named_apart_from_not_learning(cause_key):
    run = _collapsed_run(cause_key)
    rows = trace_rows(run)
    assert rows[29].marks == ["collapse"] and "diverged" not in rows[29].marks
    text = " ".join(observations(run, rows))
    assert ("Collapsed after learning at epoch 30 (update 6990, LR 0.3): train loss 0.177 → "
            "8.63") in text
    assert "it had learned (train loss down to 0.177 at epoch 29)" in text
    assert "Did not learn" not in text and "still at" not in text


def test_collapse_note_in_the_summary_row(tmp_path):
    run = _collapsed_run()
    d = tmp_path / "c"
    _write_run(d / "runs" / "fixed-s0", run.config, run.metrics, "diverged", run.summary)
    _write_run(d / "runs" / "fixed-s1", {**CONFIG, "epochs": 2}, _rows([1, .5], [1, .9], [.5, .88]))
    (d / "comparison.json").write_text(json.dumps({
        "title": "T", "labels": [{"label": "fixed", "notes": [], "reference": None}],
        "runs": [{"name": "fixed-s0", "label": "fixed", "seed": 0},
                 {"name": "fixed-s1", "label": "fixed", "seed": 1}]}))
    write_report(d)
    row = next(csv.DictReader(io.StringIO((d / "summary.csv").read_text())))
    assert row["diverged"] == "1" and row["final_acc_n"] == "1"
    assert ("1/2 collapsed after learning at epoch 30 (update 6990, LR 0.3): train loss 0.177 "
            "→ 8.63") in row["notes"]
    md = (d / "report.md").read_text()
    assert "| fixed-s0 | fixed | 0 | diverged (collapse) |" in md


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
    assert a["final_acc_n"] == "2"
    assert float(a["final_acc_mean"]) == pytest.approx(0.85, abs=1e-6)
    sd = statistics.stdev([0.8, 0.9])
    assert float(a["final_acc_sd"]) == pytest.approx(sd, abs=1e-6)
    half = T975_1 * sd / math.sqrt(2)  # the t interval of a 2-seed mean
    assert float(a["final_acc_ci95_low"]) == pytest.approx(0.85 - half, abs=1e-3)
    assert float(a["final_acc_ci95_high"]) == pytest.approx(0.85 + half, abs=1e-3)
    assert a["val_acc_n"] == "" and a["val_acc_mean"] == ""  # no validation split recorded
    assert float(a["diff"]) == pytest.approx(0.85 - 0.8, abs=1e-6)
    assert a["reference_verdict"] == "within"
    # the diverged run is counted, not averaged
    assert b["diverged"] == "1" and b["ok"] == "1" and b["final_acc_n"] == "1"
    assert float(b["final_acc_mean"]) == pytest.approx(0.75, abs=1e-6) and b["final_acc_sd"] == ""
    assert b["final_acc_ci95_low"] == ""
    assert "1/2 diverged at epoch 2 (update 15, LR 3)" in b["notes"]
    # no validation split anywhere: no best row is named from the test set
    assert out.startswith("best: none chosen — no row has a validation split")
    md = (comparison / "report.md").read_text()
    assert "| a | 2 ok | 2 | 0.8500 ± 0.0707 | [" in md
    assert "Student's t: mean ± t(0.975, n − 1) · sd / √n" in md


def test_best_is_chosen_on_validation_and_reports_its_test_accuracy(tmp_path):
    # 'hi-test' has the higher test accuracy, 'hi-val' the higher validation accuracy
    d = _comparison(tmp_path / "c", {
        "hi-test": [(0.95, 0.80), (0.96, 0.82), (0.94, 0.81)],
        "hi-val": [(0.85, 0.90), (0.86, 0.91), (0.84, 0.905)],
    })
    headline = build_report(d).headline
    assert headline[0].startswith("best: hi-val (chosen on validation: val acc 0.9050 ± "
                                  "0.0050, n = 3); its test acc 0.8500 ± 0.0100")
    a, b = [0.90, 0.91, 0.905], [0.80, 0.82, 0.81]
    ref = sps.ttest_ind(a, b, equal_var=False)
    lo, hi = ref.confidence_interval(0.95)
    assert (f"distinguishable from the runner-up hi-test (val diff +0.0950, 95% CI "
            f"[{lo:+.4f}, {hi:+.4f}], Welch p = {ref.pvalue:.3g}, n = 3 vs 3)") in headline[0]
    assert "not distinguishable" not in headline[0]


def test_best_says_when_the_runner_up_is_not_distinguishable(tmp_path):
    xv, yv = [0.883, 0.874, 0.881], [0.878, 0.880, 0.875]
    d = _comparison(tmp_path / "c", {
        "x": [(0.88, xv[0]), (0.89, xv[1]), (0.87, xv[2])],
        "y": [(0.88, yv[0]), (0.89, yv[1]), (0.87, yv[2])],
        "one": [(0.99, 0.86)],
    })
    line = build_report(d).headline[0]
    ref = sps.ttest_ind(xv, yv, equal_var=False)
    lo, hi = ref.confidence_interval(0.95)
    diff = statistics.fmean(xv) - statistics.fmean(yv)
    assert line.startswith("best: x (chosen on validation")
    assert (f"; not distinguishable from the runner-up y (val diff {diff:+.4f}, 95% CI "
            f"[{lo:+.4f}, {hi:+.4f}], Welch p = {ref.pvalue:.3g}, n = 3 vs 3)") in line
    # a runner-up with a single seed cannot be told apart either
    d2 = _comparison(tmp_path / "d", {"x": [(0.8, 0.9), (0.8, 0.91)], "z": [(0.9, 0.7)]})
    assert "not distinguishable from the runner-up z (val diff +0.2050, n = 2 vs 1: no test)" \
        in build_report(d2).headline[0]


def test_rows_on_different_workloads_are_ranked_within_their_own(tmp_path):
    # the transformer's accuracies are far below LeNet's: one best line per workload
    d = _comparison(tmp_path / "c", {
        "lenet a": [(0.90, 0.91), (0.90, 0.92)], "lenet b": [(0.89, 0.90), (0.89, 0.89)],
        "tf a": [(0.40, 0.41), (0.41, 0.42)], "tf b": [(0.60, 0.61), (0.61, 0.60)],
    }, baseline="lenet b")
    for run in (d / "runs").iterdir():
        cfg = json.loads((run / "config.json").read_text())
        cfg.update(dataset="chars", model="transformer") if run.name.startswith("tf") else \
            cfg.update(dataset="fashion-mnist", model="lenet")
        (run / "config.json").write_text(json.dumps(cfg))
    lines = build_report(d).headline
    assert lines[0].startswith("[fashion-mnist / lenet] best: lenet a (chosen on validation")
    assert "runner-up lenet b" in lines[0]
    tf = next(line for line in lines if line.startswith("[chars / transformer]"))
    assert tf.startswith("[chars / transformer] best: tf b") and "runner-up tf a" in tf


def test_rows_without_validation_are_not_ranked(tmp_path):
    d = _comparison(tmp_path / "c", {"book": [(0.99, None), (0.98, None)],
                                     "ours": [(0.80, 0.85), (0.81, 0.86)]})
    lines = build_report(d).headline
    assert lines[0].startswith("best: ours (chosen on validation")
    assert "the only row with a validation split" in lines[0]
    assert "not ranked (no validation split): book" in lines
    md = (d / "report.md")
    write_report(d)
    assert "| book | 2 ok | 2 | 0.9850 ± 0.0071 | [" in md.read_text()
    assert "no split" in md.read_text()


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
    assert files.headline[0] == "one: test acc 0.7000 (n = 1)"  # nothing to choose between
    md = files.markdown.read_text()
    assert "Epoch by epoch: one" in md and "0.7000" in md
    meta, runs = load_runs(d)
    assert len(runs) == 1 and runs[0].status == "ok"


def test_trace_label_must_exist(comparison, capsys):
    assert main(["report", str(comparison), "--trace", "zzz"]) == 2
    assert "no run labelled 'zzz'" in capsys.readouterr().err
    assert main(["report", str(comparison), "--trace", "b"]) == 0
    assert "Epoch by epoch: b-s0" in (comparison / "report.md").read_text()


def test_contrasts_name_the_test_the_difference_p_and_n(tmp_path):
    a = [0.912, 0.905, 0.917, 0.909]
    b = [0.884, 0.897, 0.879]
    c = [0.886, 0.895, 0.881]
    d = _comparison(tmp_path / "c", {"a": [(v, None) for v in a], "b": [(v, None) for v in b],
                                     "c": [(v, None) for v in c], "solo": [(0.99, None)]},
                    contrasts=[["a", "b"], ["b", "c"], ["solo", "a"], ["a", "nope"]])
    write_report(d)
    md = (d / "report.md").read_text()
    section = md.split("## Side by side", 1)[1].split("## Curves", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert len(lines) == 3  # a pair naming an unknown label is left out
    ab = sps.ttest_ind(a, b, equal_var=False)
    bc = sps.ttest_ind(b, c, equal_var=False)
    lo, hi = ab.confidence_interval(0.95)
    diff = statistics.fmean(a) - statistics.fmean(b)
    # Holm over the two tested contrasts: the smaller p times 2, the larger times 1 (or the
    # running maximum); the lone-seed contrast has no test and is not in the family
    p_small, p_large = sorted([ab.pvalue, bc.pvalue])
    holm = {p_small: min(1, 2 * p_small), p_large: max(min(1, 2 * p_small), p_large)}
    # alone, a vs b would pass (p < 0.05); in the family of two it does not
    assert ab.pvalue < 0.05 < holm[ab.pvalue]
    sd_a, sd_b = statistics.stdev(a), statistics.stdev(b)
    assert lines[0] == (f"| a | b | 4 vs 3 | {statistics.fmean(a):.4f} ± {sd_a:.4f} | "
                        f"{statistics.fmean(b):.4f} ± {sd_b:.4f} | {diff:+.4f} | "
                        f"[{lo:+.4f}, {hi:+.4f}] | {ab.pvalue:.3g} | {holm[ab.pvalue]:.3g} | "
                        f"Welch t, df {ab.df:.1f} | no clear difference |")
    assert lines[1].endswith(f"| {bc.pvalue:.3g} | {holm[bc.pvalue]:.3g} | Welch t, df "
                             f"{bc.df:.1f} | no clear difference |")
    assert lines[2].startswith("| solo | a | 1 vs 4 |")
    assert lines[2].endswith("| — | — | none (n=1: no test) | no clear difference |")
    assert "Holm-adjusted over the 2 tested contrasts" in md


def test_a_noise_only_pair_of_real_runs_is_not_called_better_or_worse(tmp_path):
    """Blobs, SGD, one epoch, LR 0.0100 vs 0.0101 over 5 seeds: what differs is noise."""
    from lrlab.lab.train.config import TrainConfig
    from lrlab.lab.train.trainer import train

    d = tmp_path / "noise"
    runs, labels = [], {}
    for lr in (0.0100, 0.0101):
        label = f"lr={lr:.4f}"
        labels[label] = []
        for seed in range(5):
            name = f"{label}-s{seed}"
            r = train(TrainConfig(dataset="blobs", optimizer="sgd", lr=lr, epochs=1,
                                  batch_size=64, seed=seed, out=str(d / "runs"), name=name,
                                  quiet=True, threads=1))
            assert r.status == "ok"
            labels[label].append(r.summary["final_test_acc"])
            runs.append({"name": name, "label": label, "seed": seed})
    (d / "comparison.json").write_text(json.dumps({
        "title": "noise", "labels": [{"label": k, "notes": [], "reference": None}
                                     for k in labels], "runs": runs,
        "contrasts": [["lr=0.0101", "lr=0.0100"]]}))
    report = build_report(d)
    best = report.headline[0]
    assert "not distinguishable from the runner-up" in best or "tied with the runner-up" in best
    assert "; distinguishable from" not in best
    table = next(b for b in report.blocks if b.kind == "table" and "verdict" in b.header)
    assert table.rows[0][-1] == "no clear difference"
    assert table.rows[0][2] == "5 vs 5"


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

    from lrlab.lab.report.summary import LabelStats

    def stats(finals, ref):
        return LabelStats("x", [], Counter(), finals, finals, None, None, ref)

    published = {"value": 0.878, "spread": 0.007, "kind": "published"}
    # 95% interval of [0.875, 0.877]: 0.876 ± 12.706 · 0.001 = [0.8633, 0.8887] holds 0.878
    assert stats([0.875, 0.877], published).verdict == "within"
    # mean 0.8865 is 0.0085 above, beyond the spread, but 2 seeds give an interval of
    # ± 12.706 · 0.0005 = ±0.0064, and 0.8801 - 0.007 <= 0.878: not shown to be above (the
    # old rule, |diff| > spread, said "above")
    assert stats([0.886, 0.887], published).verdict == "within"
    assert stats([0.1, 0.1], published).verdict == "below"
    target = {"value": 0.908, "kind": "target"}
    assert stats([0.914], target).verdict == "met" and stats([0.9], target).verdict == "missed"
    assert stats([0.914], target).verdict_note.startswith("n=1")
    assert stats([0.9], None).verdict is None


def test_a_row_whose_seeds_split_between_training_and_failing_gets_no_verdict():
    from collections import Counter

    from lrlab.lab.report.build import headline
    from lrlab.lab.report.summary import LabelStats

    published = {"value": 0.886, "spread": 0.011, "kind": "published"}
    # two seeds at 0.89, one stuck at chance: the mean 0.627 has a 95% interval of
    # 0.627 ± 4.303 · 0.455 / √3, about [-0.50, 1.76], which "holds" any published number;
    # calling that "within" would be a verdict the seeds cannot support
    split = LabelStats("multi-step", [], Counter({"ok": 2, "not-learning": 1}),
                       [0.89, 0.891, 0.1], [0.89, 0.891, 0.1], None, None, published)
    assert split.verdict == "unstable" and "1 of 3" in split.verdict_note
    fine = LabelStats("cosine", [], Counter({"ok": 3}), [0.885, 0.887, 0.889],
                      [0.885, 0.887, 0.889], None, None, published)
    dead = LabelStats("dead", [], Counter({"not-learning": 3}), [0.1, 0.1, 0.1],
                      [0.1, 0.1, 0.1], None, None, published)
    assert fine.verdict == "within" and dead.verdict == "below"  # consistent outcomes judged
    line = next(x for x in headline([split, fine, dead], None) if "agree" in x)
    assert line.startswith("1 of 3 rows with a reference agree")
    assert "not reproduced: dead below" in line
    assert "multi-step (1 of 3 diverged or did not learn)" in line


def test_report_shows_the_environment_and_flags_differences(tmp_path):
    env = {"torch": "2.13.0+cpu", "python": "3.11.7", "threads": 2, "device": "cpu",
           "gpu": None, "deterministic": False, "cudnn_deterministic": False}
    d = _comparison(tmp_path / "c", {"a": [(0.8, 0.8), (0.82, 0.81)]})
    for seed, threads in ((0, 2), (1, 4)):
        path = d / "runs" / f"a-s{seed}" / "config.json"
        cfg = json.loads(path.read_text())
        path.write_text(json.dumps({**cfg, "environment": {**env, "threads": threads}}))
    report = build_report(d)
    assert "environment differs across runs in: threads (see Environment)" in report.headline
    md = report.markdown()
    env_md = md.split("## Environment", 1)[1].split("## Statistics", 1)[0]
    assert "| torch | 2.13.0+cpu |" in env_md and "| deterministic | no |" in env_md
    assert "| threads | DIFFERS: 2 (a-s0); 4 (a-s1) |" in env_md
    # the same environment everywhere: shown, not flagged
    path = d / "runs" / "a-s1" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "environment": env}))
    report = build_report(d)
    assert not any("environment" in line for line in report.headline)
    assert "| threads | 2 |" in report.markdown()


def test_beta2_comes_from_the_run_record():
    # warmup(auto) lasts 2/(1-β2) updates (Ma & Yarats 2021): the trainer recorded β2 0.98,
    # so 100 updates; the old guess (0.999 for AdamW) said 2000
    cfg = {**CONFIG, "optimizer": "adamw", "betas": None, "beta2": 0.98, "per": "step",
           "schedule": "warmup(auto) >> constant()", "epochs": 30, "updates_per_epoch": 10}
    assert run_beta2(cfg) == 0.98
    assert warmup_length(cfg) == (math.ceil(2 / (1 - 0.98)), "updates")
    from lrlab.lab.report.plots import lr_curve

    xs, ys = lr_curve(RunData("r", "r", 0, cfg, []))
    assert ys[0] == pytest.approx(0.1 / 100) and ys[99] == pytest.approx(0.1)
    assert run_beta2({"optimizer": "sgd", "beta2": None}) is None  # no β2: none guessed
    assert run_beta2({"optimizer": "adamw", "betas": [0.9, 0.95]}) == 0.95
    assert run_beta2({"optimizer": "lion"}) == 0.99  # older records: the optimizer's default


def test_curves_show_the_seed_spread_as_a_band(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    from lrlab.lab.report.plots import band_curve

    d = _comparison(tmp_path / "c", {"a": [(0.80, 0.7), (0.90, 0.75), (0.86, 0.8)],
                                     "solo": [(0.5, 0.6)]})
    groups = {"a": [r for r in load_runs(d)[1] if r.label == "a"]}
    xs, mean, lo, hi, n = band_curve(groups["a"], "test_acc")
    assert xs == [1, 2] and n == [3, 3]
    assert lo == [0.5, 0.80] and hi == [0.5, 0.90] and mean[1] == pytest.approx(2.56 / 3)
    bands = []
    real = Axes.fill_between

    def spy(self, x, y1, y2=0, **kw):
        bands.append((list(x), list(y1), list(y2)))
        return real(self, x, y1, y2, **kw)

    monkeypatch.setattr(Axes, "fill_between", spy)
    write_report(d)
    # train loss, test acc, val acc: one band each for 'a'; none for the one-seed label
    assert len(bands) == 3 and ([1, 2], [0.5, 0.80], [0.5, 0.90]) in bands
    assert (d / "val_acc.png").exists()
    assert "the shaded band the min–max over seeds" in (d / "report.md").read_text()


def test_a_contrast_says_when_a_side_lost_runs(tmp_path):
    d = _comparison(tmp_path / "c", {"a": [(0.90, None), (0.91, None), (0.92, None)],
                                     "b": [(0.80, None), (0.81, None)]},
                    contrasts=[["a", "b"]])
    _write_run(d / "runs" / "b-s2", {**CONFIG, "epochs": 2, "seed": 2}, _rows([1.0], [1.0], [0.5]),
               "diverged", {"diverged_at": {"cause": "nonfinite", "epoch": 1, "update": 15,
                                            "lr": 3.0, "loss": "nan"}})
    meta = json.loads((d / "comparison.json").read_text())
    meta["runs"].append({"name": "b-s2", "label": "b", "seed": 2})
    (d / "comparison.json").write_text(json.dumps(meta))
    md = build_report(d).markdown()
    assert "| a | b | 3 vs 2 of 3 |" in md  # the diverged seed is not averaged, and it says so


def test_warmup_length_of_a_lone_warmup_under_a_plateau():
    """warmup(5) * plateau(...) is a chain of one phase: its warmup is still 5 epochs."""
    from lrlab.lab.report.observations import warmup_length

    config = {"schedule": "warmup(5) * plateau(patience=2)", "per": "epoch", "epochs": 10,
              "updates_per_epoch": 7, "lr_used": 0.1}
    assert warmup_length(config) == (5, "epochs")


def test_character_runs_show_bits_per_character_and_sharpness_against_its_threshold(tmp_path):
    d = _comparison(tmp_path / "c", {"a": [(0.4, 0.4), (0.5, 0.5)], "b": [(0.3, 0.3)]})
    bpcs = {"a-s0": 2.0, "a-s1": 3.0}
    for name, bpc in bpcs.items():
        path = d / "runs" / name / "metrics.jsonl"
        rows = [json.loads(x) for x in path.read_text().splitlines()]
        for i, r in enumerate(rows):
            r.update(test_bpc=bpc, sharpness=10.0 + i, sharpness_threshold=38 / 0.01,
                     precond_sharpness=100.0 + i)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = build_report(d)
    table = next(b for b in report.blocks if b.kind == "table")
    col = table.header.index("test bpc")
    cells = {row[0]: row[col] for row in table.rows}
    # mean 2.5, sample sd of (2, 3) = 0.7071; label b has none
    assert cells["a"] == "2.5000 ± 0.7071" and cells["b"] == "—"
    assert (d / "sharpness.png").stat().st_size > 0
    from lrlab.lab.report.plots import sharpness_key
    assert sharpness_key(report_runs(d, "a")) == "precond_sharpness"  # Adam: the one that
    assert sharpness_key(report_runs(d, "b")) is None                 # meets the threshold


def report_runs(d: Path, label: str):
    return [r for r in load_runs(d)[1] if r.label == label]


def test_the_room_names_import_from_the_package_and_from_build():
    import lrlab.lab.report as package
    from lrlab.lab.report import build, document, runs, summary

    homes = {"LabelStats": summary, "Report": document, "STATUSES": runs, "build_report": build,
             "label_stats": summary, "load_runs": runs, "summary_csv": summary,
             "write_report": build}
    assert sorted(package.__all__) == sorted(homes)
    for name, home in homes.items():
        assert getattr(package, name) is getattr(build, name) is getattr(home, name), name
