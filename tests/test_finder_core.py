"""The LR range test: suggestions inside the analytically stable range, exact restoration of
every state, clean stops, param-group ratios, Lion, argument errors, and the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrlab.errors import LrlabError
from lrlab.finder import find_lr, ramp
from lrlab.optim import Lion

ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def _regression(n=512, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(0.5, 3.0, d)  # an ill-conditioned design
    x = torch.randn(n, d, generator=g) * scales
    w_true = torch.randn(d, 1, generator=g)
    y = x @ w_true + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def _batches(x, y, bs=64):
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]


def test_suggestions_lie_below_the_divergence_bound_2_over_L():
    """MSE on a linear model: the Hessian is 2/n XᵀX; plain SGD diverges for lr > 2/L."""
    x, y = _regression()
    L = torch.linalg.eigvalsh(2 * x.T @ x / len(x)).max().item()
    bound = 2 / L
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    res = find_lr(model, opt, torch.nn.functional.mse_loss, _batches(x, y), start=1e-5,
                  end=100 * bound, steps=120)
    assert {s.name for s in res.suggestions} == {"steepest", "valley", "largest-stable"}
    for s in res.suggestions:
        assert 0 < s.lr < bound, (s.name, s.lr, bound)
        assert s.reason  # each says why
    assert res.chosen_lr is not None and 1e-4 * bound < res.chosen_lr < bound
    assert res.stopped_early  # the ramp went 100x past the bound: the loss blew up


def _state(model, opt):
    params = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    ostate = {k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in v.items()}
              for k, v in opt.state_dict()["state"].items()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return params, grads, ostate, groups


def test_model_optimizer_and_rng_are_restored_bit_for_bit():
    x, y = _regression()
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    for xb, yb in _batches(x, y)[:3]:  # some optimizer state to preserve
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(xb), yb).backward()
        opt.step()
    before = _state(model, opt)
    weight = model[0].weight  # references must stay valid
    torch.manual_seed(123)
    expected_next = torch.rand(5)
    torch.manual_seed(123)
    import random

    random.seed(7)
    expected_py = random.random()
    random.seed(7)
    find_lr(model, opt, torch.nn.functional.mse_loss, _batches(x, y), steps=40)
    after = _state(model, opt)
    assert torch.equal(torch.rand(5), expected_next)
    assert random.random() == expected_py
    assert model[0].weight is weight
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), k
    for a, b in zip(before[1], after[1]):
        assert (a is None and b is None) or torch.equal(a, b)
    for k in before[2]:
        for n in before[2][k]:
            va, vb = before[2][k][n], after[2][k][n]
            assert torch.equal(va, vb) if torch.is_tensor(va) else va == vb
    assert before[3] == after[3]


def test_nan_mid_ramp_stops_cleanly_with_the_reason():
    x, y = _regression()
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = {"n": 0}

    def loss_fn(out, target):
        calls["n"] += 1
        loss = torch.nn.functional.mse_loss(out, target)
        return loss * float("nan") if calls["n"] == 30 else loss

    res = find_lr(model, opt, loss_fn, _batches(x, y), start=1e-6, end=1e-2, steps=100)
    assert res.stopped_early and "nan" in res.stop_reason.lower()
    assert len(res.lrs) == 29  # only finite points are in the curve
    assert all(math.isfinite(v) for v in res.losses)


def test_param_groups_keep_their_ratio_and_lion_works():
    x, y = _regression()
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    for opt in (torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                                 {"params": model[2].parameters(), "lr": 0.01}], lr=0.1),
                Lion([{"params": model[0].parameters(), "lr": 1e-3},
                      {"params": model[2].parameters(), "lr": 1e-4}], weight_decay=0.1)):
        seen = []

        def loss_fn(out, target, opt=opt, seen=seen):
            g = opt.param_groups
            seen.append((float(g[0]["lr"]), float(g[1]["lr"])))
            return torch.nn.functional.mse_loss(out, target)

        res = find_lr(model, opt, loss_fn, _batches(x, y), start=1e-6, end=1.0, steps=30)
        assert len(seen) >= 10
        for a, b in seen:
            assert b == pytest.approx(0.1 * a, rel=1e-12)
        assert [a for a, _ in seen[:len(res.lrs)]] == pytest.approx(res.lrs, rel=1e-12)
        # the exponential ramp: lr_i = start * (end/start)^(i/(n-1))
        assert res.lrs[:5] == pytest.approx([1e-6 * (1e6) ** (i / 29) for i in range(5)])
    assert ramp(1.0, 2.0, 5, "linear") == pytest.approx([1.0, 1.25, 1.5, 1.75, 2.0])


@pytest.mark.parametrize("kwargs", [
    {"start": 1.0, "end": 0.5}, {"start": 0.0}, {"start": -1e-3}, {"steps": 3},
    {"start": float("nan")}, {"end": float("inf")}, {"mode": "cubic"}, {"choose": "best"},
])
def test_bad_arguments_are_one_line_errors(kwargs):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(LrlabError) as err:
        find_lr(model, opt, torch.nn.functional.mse_loss,
                [(torch.zeros(4, 2), torch.zeros(4, 1))], **kwargs)
    assert "\n" not in str(err.value)


def lrlab(*args):
    return subprocess.run([sys.executable, "-m", "lrlab", *args], capture_output=True,
                          text=True, env=ENV, timeout=300)


def test_cli_find_lr_prints_suggestions_plot_and_train_command(tmp_path):
    png = tmp_path / "f.png"
    r = lrlab("find-lr", "--dataset", "classification", "--limit", "1024", "--optimizer", "sgd",
              "--steps", "40", "--plot", str(png), "--out", str(tmp_path), "--threads", "1")
    assert r.returncode == 0, r.stderr
    for name in ("steepest", "valley", "largest-stable", "chosen:", "lrlab train"):
        assert name in r.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    r = lrlab("find-lr", "--dataset", "classification", "--steps", "2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_train_lr_auto_records_the_range_test_in_the_run(tmp_path):
    r = lrlab("train", "--dataset", "classification", "--limit", "1024", "--optimizer", "sgd",
              "--lr", "auto", "--epochs", "1", "--out", str(tmp_path), "--quiet",
              "--threads", "1")
    assert r.returncode == 0, r.stderr
    run = next(tmp_path.iterdir())
    finder = json.loads((run / "lr_finder.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert config["lr"] == "auto"
    assert config["lr_used"] == pytest.approx(finder["chosen_lr"])
    assert finder["chosen"] in {"steepest", "valley", "largest-stable"}
    assert len(finder["lrs"]) == len(finder["losses"]) > 5
