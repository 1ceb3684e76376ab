"""`lrlab find-lr` and `lrlab train --lr auto` on small generated datasets (no files needed)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from lrlab.cli import main


def _find_lr(tmp_path, *extra):
    return ["find-lr", "--dataset", "blobs", "--steps", "40", "--out", str(tmp_path),
            "--quiet", "--device", "cpu", *extra]


def test_find_lr_prints_suggestions_plot_and_train_command(tmp_path, capsys):
    assert main(_find_lr(tmp_path, "--optimizer", "momentum", "--batch-size", "64")) == 0
    out = capsys.readouterr().out
    for name in ("steepest", "valley", "largest-stable"):
        assert name in out
    assert "chosen:" in out
    plot = tmp_path / "find-lr-blobs-mlp-momentum.png"
    assert plot.exists() and plot.read_bytes()[:4] == b"\x89PNG"
    line = next(ln.strip() for ln in out.splitlines() if ln.strip().startswith("lrlab train"))
    assert "--optimizer momentum" in line and "--batch-size 64" in line
    assert "--lr " in line and "warmup(1ep)" in line
    # 40 updates of 64 of blobs' 800 training examples
    assert "3.20 epochs" in out


def test_find_lr_json_and_explicit_plot(tmp_path, capsys):
    plot = tmp_path / "deep" / "curve.png"
    assert main(_find_lr(tmp_path, "--json", "--plot", str(plot), "--choose",
                         "largest-stable", "--mode", "linear", "--start", "1e-4",
                         "--end", "1")) == 0
    data = json.loads(capsys.readouterr().out)
    assert plot.exists()
    assert data["chosen"] == "largest-stable"
    stable = next(s for s in data["suggestions"] if s["name"] == "largest-stable")
    assert data["chosen_lr"] == stable["lr"]
    lrs = data["lrs"]
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[1] - lrs[0] == pytest.approx((1 - 1e-4) / 39)  # linear ramp over 40 steps
    assert data["command"].startswith("lrlab train")


def test_find_lr_adam_family_explains_untuned_warmup(tmp_path, capsys):
    assert main(_find_lr(tmp_path, "--optimizer", "adamw", "--betas", "0.9,0.99")) == 0
    out = capsys.readouterr().out
    # Ma & Yarats: 2 / (1 - beta2) updates = 200 for beta2 = 0.99
    assert "warmup(auto)" in out and "200 updates" in out


@pytest.mark.parametrize("argv", [
    ["--mode", "cubic"], ["--steps", "0"], ["--choose", "best"], ["--start", "abc"],
])
def test_bad_flag_exits_2_with_one_line(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(_find_lr(tmp_path, *argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["--steps", "3"], ["--start", "1", "--end", "0.1"],
                                  ["--start", "0"]])
def test_bad_range_is_one_line_error(tmp_path, capsys, argv):
    assert main(_find_lr(tmp_path, *argv)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err


def test_model_is_the_one_train_builds(tmp_path):
    """run_find_lr seeds as the trainer does: same initial weights as `lrlab train`."""
    from lrlab.lab.auto_lr import run_find_lr
    from lrlab.lab.config import TrainConfig
    from lrlab.lab.data import load_dataset
    from lrlab.lab.models import build_model

    # one batch = the whole (limited) training set, so the first loss of the test is the
    # freshly built model's mean loss over it, whatever the order of the examples
    cfg = TrainConfig(dataset="blobs", seed=3, limit=64, batch_size=64, out=str(tmp_path),
                      device="cpu", quiet=True)
    result, cmd = run_find_lr(cfg, steps=20)
    data = load_dataset("blobs", seed=3, limit=64)
    torch.manual_seed(3)
    random.seed(3)
    ref = build_model("mlp", data)
    with torch.no_grad():
        expect = torch.nn.functional.cross_entropy(ref(data.x_train), data.y_train).item()
    assert result.losses[0] == pytest.approx(expect, rel=1e-5)
    torch.manual_seed(4)
    other = build_model("mlp", data)
    with torch.no_grad():
        wrong = torch.nn.functional.cross_entropy(other(data.x_train), data.y_train).item()
    assert result.losses[0] != pytest.approx(wrong, rel=1e-5)
    assert "--seed 3" in cmd and "--limit 64" in cmd


def test_train_lr_auto_records_the_test_and_trains_as_with_that_lr(tmp_path):
    from lrlab.lab.config import TrainConfig
    from lrlab.lab.trainer import train

    base = dict(dataset="blobs", epochs=2, batch_size=64, out=str(tmp_path), device="cpu",
                quiet=True, optimizer="momentum", schedule="warmup(1ep) >> cosine()")
    auto = train(TrainConfig(lr="auto", name="auto", **base), echo=False)
    record = json.loads((auto.path / "lr_finder.json").read_text())
    config = json.loads((auto.path / "config.json").read_text())
    assert record["chosen"] in ("steepest", "valley", "largest-stable")
    assert record["lr_base"] == pytest.approx(record["chosen_lr"])
    assert config["lr_base"] == pytest.approx(record["chosen_lr"])
    assert len(record["lrs"]) == len(record["losses"]) > 0
    # the range test left model and RNGs untouched: same numbers as a run given that LR
    fixed = train(TrainConfig(lr=config["lr_base"], name="fixed", **base), echo=False)
    rows = [json.loads(x) for x in (auto.path / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (fixed.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in ref]
    assert [r["test_acc"] for r in rows] == [r["test_acc"] for r in ref]


def test_train_lr_auto_with_lr_scaling_measures_the_global_batch_lr(tmp_path):
    from lrlab.lab.config import TrainConfig
    from lrlab.lab.trainer import train

    cfg = TrainConfig(dataset="blobs", epochs=1, batch_size=64, accumulate=2, lr="auto",
                      scale_lr="linear", ref_batch=32, out=str(tmp_path), device="cpu",
                      quiet=True, optimizer="sgd")
    run = train(cfg, echo=False)
    record = json.loads((run.path / "lr_finder.json").read_text())
    config = json.loads((run.path / "config.json").read_text())
    # linear rule: lr_used = lr_base * 128 / 32, and lr_used is what the test measured
    assert record["lr_base"] == pytest.approx(record["chosen_lr"] * 32 / 128)
    assert config["lr_used"] == pytest.approx(record["chosen_lr"])
