"""`lrlab find-lr` and `lrlab train --lr auto` on small generated datasets (no files needed):
output, JSON, the validation curve, printed commands that parse back to the run, refused
flags, "nothing trained", the same initialisation as `lrlab train`."""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrlab.cli import build_parser, config_from_args, main
from lrlab.finder import SUGGESTIONS


def _find_lr(tmp_path, *extra):
    return ["find-lr", "--dataset", "blobs", "--steps", "40", "--out", str(tmp_path),
            "--device", "cpu", *extra]


def _train_line(out: str) -> str:
    return next(ln.strip() for ln in out.splitlines() if ln.strip().startswith("lrlab train"))


def test_find_lr_prints_suggestions_plot_and_train_command(tmp_path, capsys):
    assert main(_find_lr(tmp_path, "--optimizer", "momentum", "--batch-size", "64")) == 0
    out = capsys.readouterr().out
    for name in SUGGESTIONS:
        assert f"  {name} " in out
    assert "chosen: minimum" in out
    plot = tmp_path / "find-lr-blobs-mlp-momentum.png"
    assert plot.exists() and plot.read_bytes()[:4] == b"\x89PNG"
    line = _train_line(out)
    assert "--optimizer momentum" in line and "--batch-size 64" in line
    assert "--lr " in line and "warmup(1ep)" in line
    # 40 updates of 64 of blobs' 1000 * 0.8 = 800 training examples, less the 200 (1/4)
    # carved out for validation: 600
    assert f"{40 * 64 / 600:.2f} epochs" in out
    assert "read on the validation loss of 200 examples" in out


def test_find_lr_json_explicit_plot_and_the_curve_used(tmp_path, capsys):
    plot = tmp_path / "deep" / "curve.png"
    assert main(_find_lr(tmp_path, "--json", "--plot", str(plot), "--choose", "valley",
                         "--mode", "linear", "--start", "1e-4", "--end", "1")) == 0
    data = json.loads(capsys.readouterr().out)
    assert plot.exists()
    assert data["chosen"] == "valley" and data["chosen_reason"] == "as asked"
    valley = next(s for s in data["suggestions"] if s["name"] == "valley")
    assert data["chosen_lr"] == valley["lr"] == data["lrs"][valley["index"]]
    lrs = data["lrs"]
    assert lrs[0] == pytest.approx(1e-4)
    assert lrs[1] - lrs[0] == pytest.approx((1 - 1e-4) / 39)  # linear ramp over 40 steps
    assert data["command"].startswith("lrlab train")
    assert data["curve_used"] == "validation" and data["settings"]["val_examples"] == 200
    assert len(data["val_losses"]) == len(data["lrs"])
    # without a validation split the training loss is read, and the output says so
    assert main(_find_lr(tmp_path, "--json", "--val-size", "0")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["curve_used"] == "train" and data["val_losses"] is None
    assert data["settings"]["val_examples"] == 0
    assert data["settings"]["n_train"] == 800


def test_validation_subset_is_fixed_and_capped():
    from lrlab.lab.data.datasets import load_dataset
    from lrlab.lab.train.auto_lr import VAL_EXAMPLES, VAL_SUBSET_SEED, validation_batches

    assert VAL_EXAMPLES == 1024
    data = load_dataset("blobs", seed=0)  # 200 validation examples, fewer than 1,024
    batches = validation_batches(data, 64)
    assert [len(y) for _, y in batches] == [64, 64, 64, 8]
    x = torch.cat([b[0] for b in batches])
    assert torch.equal(x, data.x_val)  # every example, in the split's order
    data = load_dataset("classification")  # the course's own 1,600 validation examples
    batches = validation_batches(data, 500)
    assert [len(y) for _, y in batches] == [500, 500, 24]
    gen = torch.Generator().manual_seed(VAL_SUBSET_SEED)
    pick = torch.randperm(1600, generator=gen)[:1024].sort().values
    assert torch.equal(torch.cat([b[0] for b in batches]), data.x_val[pick])
    assert torch.equal(torch.cat([b[1] for b in batches]), data.y_val[pick])
    assert validation_batches(type("D", (), {"x_val": None, "y_val": None})(), 64) is None


def test_find_lr_adam_family_explains_untuned_warmup(tmp_path, capsys):
    assert main(_find_lr(tmp_path, "--optimizer", "adamw", "--betas", "0.9,0.99")) == 0
    out = capsys.readouterr().out
    # Ma & Yarats: 2 / (1 - beta2) updates = 200 for beta2 = 0.99
    assert "warmup(auto)" in out and "200 updates" in out


def test_quiet_prints_only_the_choice_and_the_train_line(tmp_path, capsys):
    assert main(_find_lr(tmp_path, "--quiet")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("chosen: minimum, lr ")
    assert lines[1].startswith("lrlab train ") and "--lr " in lines[1]


@pytest.mark.parametrize("argv", [
    ["--mode", "cubic"], ["--steps", "0"], ["--choose", "best"], ["--start", "abc"],
    ["--choose", "largest-stable"],
])
def test_bad_flag_exits_2_with_one_line(tmp_path, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(_find_lr(tmp_path, *argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [["--steps", "3"], ["--start", "1", "--end", "0.1"],
                                  ["--start", "0"], ["--compile"], ["--update-ratio"],
                                  ["--lr", "0.1"], ["--lr", "auto"],
                                  ["--schedule", "exp(0.99) >> constant()"],
                                  ["--schedule", "cosine(steps=1000)", "--epochs", "2"],
                                  ["--plot", "x.foo"], ["--plot", "/tmp"]])
def test_bad_range_and_refused_flags_are_one_line_errors(tmp_path, capsys, argv):
    assert main(_find_lr(tmp_path, *argv)) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and "error" in captured.err
    assert captured.out == ""
    assert not list(tmp_path.glob("*.png"))  # refused before anything ran


def test_compile_from_a_config_file_is_refused_too(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('dataset = "blobs"\ncompile = true\n')
    assert main(["find-lr", "--config", str(toml), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'compile' in --config" in err


def test_the_cli_offers_exactly_the_suggestions():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    choose = next(a for a in sub.choices["find-lr"]._actions if a.dest == "choose")
    assert tuple(choose.choices) == SUGGESTIONS


# -- printed commands parse back to the run ----------------------------------------------------
@pytest.mark.parametrize("user, expect", [
    ("constant()", "warmup(1ep) >> cosine()"),
    ("cosine()", "warmup(1ep) >> cosine()"),
    ("plateau(patience=5)", "warmup(1ep) >> constant() * plateau(patience=5)"),
    ("cosine(end=0.01) * plateau(factor=0.5, patience=2)",
     "warmup(1ep) >> cosine(end=0.01) * plateau(factor=0.5, patience=2)"),
    ("warmup(2ep) >> cosine()", "warmup(2ep) >> cosine()"),
    ("warmup(10) >> linear()", "warmup(10) >> linear()"),
    ("linear(steps=2ep, end=0.5) >> multistep([10, 20], gamma=0.5)",
     "warmup(1ep) >> linear(steps=2ep, end=0.5) >> multistep([10, 20], gamma=0.5)"),
    ("onecycle()", "onecycle()"),
    ("cosine(steps=100%)", "cosine(steps=100%)"),  # a warmup in front would not fit: kept
])
def test_every_printed_command_parses_back_to_the_run(user, expect):
    from lrlab.lab.train.auto_lr import train_command
    from lrlab.lab.train.config import TrainConfig
    from lrlab.schedules import parse

    config = TrainConfig(
        dataset="blobs", hidden="32-16", optimizer="adamw", weight_decay=0.0123456789,
        betas=(0.9, 0.99), no_decay=["fc*", "head.*"], lr_mult={"layers.0*": 0.1},
        schedule=user, epochs=7, batch_size=64, seed=3, limit=500, val_size=100,
        channels_last=False, out="some dir", name="my run", device="cpu", threads=1).validate()
    line, note = train_command(config, 0.0123, updates_per_epoch=7).split("\n# ")
    argv = shlex.split(line)
    assert argv[:2] == ["lrlab", "train"]
    args = build_parser().parse_args(argv[1:])
    back = config_from_args(args)
    assert parse(back.schedule) == parse(expect)
    assert back.lr == pytest.approx(0.0123)
    for name, value in config.to_dict().items():
        if name not in ("lr", "schedule", "quiet", "eval_batch_size"):
            assert back.to_dict()[name] == value, name
    if user == "cosine(steps=100%)":
        assert "does not fit" in note


@pytest.mark.parametrize("schedule", ["plateau(patience=5)", "warmup(3) >> cosine()",
                                      "linear(steps=10, end=0.5) >> constant()"])
def test_find_lr_printed_schedule_parses(tmp_path, capsys, schedule):
    from lrlab.schedules import parse

    assert main(_find_lr(tmp_path, "--steps", "20", "--quiet", "--schedule", schedule)) == 0
    argv = shlex.split(capsys.readouterr().out.splitlines()[1])
    args = build_parser().parse_args(argv[1:])
    printed = parse(args.schedule)
    assert printed.has_plateau == parse(schedule).has_plateau
    assert printed.phases[0].name == "warmup"


# -- nothing trained ---------------------------------------------------------------------------
def _flat_loss(monkeypatch):
    import lrlab.lab.train.auto_lr as auto_lr

    monkeypatch.setattr(auto_lr, "_loss", lambda out, y: out.sum() * 0 + 0.7)


def test_find_lr_says_when_nothing_trained(tmp_path, capsys, monkeypatch):
    _flat_loss(monkeypatch)
    assert main(_find_lr(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "no LR suggested: nothing trained" in out and "lrlab train" not in out
    assert main(_find_lr(tmp_path, "--json", "--end", "1e20")) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["chosen_lr"] is None and data["command"] is None and not data["trained"]


def test_train_lr_auto_refuses_when_nothing_trained(tmp_path, capsys, monkeypatch):
    _flat_loss(monkeypatch)
    assert main(["train", "--dataset", "blobs", "--lr", "auto", "--epochs", "1", "--out",
                 str(tmp_path), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "--lr auto" in err and "nothing trained" in err and "give --lr a number" in err
    assert not [p for p in tmp_path.rglob("summary.json")]


# -- the same model as train; --lr auto ---------------------------------------------------------
def test_model_is_the_one_train_builds(tmp_path):
    """run_find_lr seeds as the trainer does: same initial weights as `lrlab train`."""
    from lrlab.lab.data.datasets import load_dataset
    from lrlab.lab.models.zoo import build_model
    from lrlab.lab.train.auto_lr import run_find_lr
    from lrlab.lab.train.config import TrainConfig

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
    from lrlab.lab.train.config import TrainConfig
    from lrlab.lab.train.trainer import train

    base = dict(dataset="blobs", epochs=2, batch_size=64, out=str(tmp_path), device="cpu",
                quiet=True, optimizer="momentum", schedule="warmup(1ep) >> cosine()")
    auto = train(TrainConfig(lr="auto", name="auto", **base), echo=False)
    record = json.loads((auto.path / "lr_finder.json").read_text())
    config = json.loads((auto.path / "config.json").read_text())
    assert config["lr"] == "auto"
    assert record["chosen"] == "minimum" and record["curve_used"] == "validation"
    assert record["lr_base"] == pytest.approx(record["chosen_lr"])
    assert config["lr_base"] == pytest.approx(record["chosen_lr"])
    assert config["lr_used"] == pytest.approx(record["chosen_lr"])
    assert len(record["lrs"]) == len(record["losses"]) == len(record["val_losses"]) > 5
    # the range test left model and RNGs untouched: same numbers as a run given that LR
    fixed = train(TrainConfig(lr=config["lr_base"], name="fixed", **base), echo=False)
    rows = [json.loads(x) for x in (auto.path / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (fixed.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in ref]
    assert [r["test_acc"] for r in rows] == [r["test_acc"] for r in ref]


def test_train_lr_auto_with_lr_scaling_measures_the_global_batch_lr(tmp_path):
    from lrlab.lab.train.config import TrainConfig
    from lrlab.lab.train.trainer import train

    cfg = TrainConfig(dataset="blobs", epochs=1, batch_size=64, accumulate=2, lr="auto",
                      scale_lr="linear", ref_batch=32, out=str(tmp_path), device="cpu",
                      quiet=True, optimizer="sgd")
    run = train(cfg, echo=False)
    record = json.loads((run.path / "lr_finder.json").read_text())
    config = json.loads((run.path / "config.json").read_text())
    # linear rule: lr_used = lr_base * 128 / 32, and lr_used is what the test measured
    assert record["lr_base"] == pytest.approx(record["chosen_lr"] * 32 / 128)
    assert config["lr_used"] == pytest.approx(record["chosen_lr"])


def test_a_user_error_in_a_real_process_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    r = subprocess.run([sys.executable, "-m", "lrlab", "find-lr", "--dataset", "blobs",
                        "--steps", "2", "--out", str(tmp_path)], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
