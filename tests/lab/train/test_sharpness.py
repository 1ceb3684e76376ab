"""``lrlab train --sharpness EVERY``: what it records, and that it does not change the run.

The expected sharpness comes from the full Hessian of the run's final model on the same
fixed batch, built by ``torch.autograd.functional.hessian`` in the test; the threshold from
the heavy-ball formula (2 + 2β)/η written here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lrlab.cli import main
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.parts import build_run

BLOBS = ["--dataset", "blobs", "--threads", "1", "--quiet", "--seed", "2"]
TIMING = {"examples_per_s", "epoch_time", "time"}
SHARP = {"sharpness", "precond_sharpness", "sharpness_threshold", "sharpness_converged"}


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _train(tmp_path: Path, name: str, *extra: str) -> Path:
    assert main(["train", *BLOBS, "--out", str(tmp_path), "--name", name, *extra]) == 0
    return tmp_path / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sharp")
    common = ["--epochs", "3", "--optimizer", "momentum", "--lr", "0.05"]
    return {"with": _train(d, "with", *common, "--sharpness", "2"),
            "without": _train(d, "without", *common)}


def test_measured_after_every_nth_epoch_and_the_last(runs):
    rows = _rows(runs["with"])
    assert [("sharpness" in r) for r in rows] == [False, True, True]  # epochs 2 and 3 of 3
    for r in rows[1:]:
        assert r["sharpness"] > 0 and isinstance(r["sharpness_converged"], bool)
        # heavy-ball SGD, momentum 0.9: unstable on a quadratic above (2 + 2·0.9)/η
        assert r["sharpness_threshold"] == pytest.approx(3.8 / r["lr_last"], rel=1e-12)
        assert "precond_sharpness" not in r  # SGD has no preconditioner


def test_the_measurement_does_not_change_the_run(runs):
    with_, without = _rows(runs["with"]), _rows(runs["without"])
    strip = TIMING | SHARP
    assert [{k: v for k, v in r.items() if k not in strip} for r in with_] == \
        [{k: v for k, v in r.items() if k not in strip} for r in without]
    a = torch.load(runs["with"] / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(runs["without"] / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _full_hessian_top(model: torch.nn.Module, loss_fn, x: torch.Tensor,
                      y: torch.Tensor) -> float:
    """The largest eigenvalue of the Hessian of loss_fn(model(x), y) in all parameters,
    built densely by torch.autograd.functional.hessian (the independent reference)."""
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            size = math.prod(shape)
            params[name] = flat[i:i + size].reshape(shape)
            i += size
        return loss_fn(torch.func.functional_call(model, params, (x,)), y)

    hessian = torch.autograd.functional.hessian(loss, flat0)
    return torch.linalg.eigvalsh(hessian.double()).max().item()


def test_the_value_is_the_top_eigenvalue_of_the_full_hessian(runs):
    parts = build_run(TrainConfig(dataset="blobs", seed=2, threads=1))
    model = parts.model
    model.load_state_dict(torch.load(runs["with"] / "checkpoint.pt",
                                     weights_only=True)["model"])
    n = TrainConfig().batch_size  # the fixed batch: the first --batch-size examples
    x, y = parts.data.x_train[:n], parts.data.y_train[:n]
    top = _full_hessian_top(model.double(), F.cross_entropy, x.double(), y)
    got = _rows(runs["with"])[-1]
    if got["sharpness_converged"]:
        assert got["sharpness"] == pytest.approx(top, rel=0.01)
    else:  # a Rayleigh quotient never exceeds the top eigenvalue
        assert got["sharpness"] <= top * (1 + 1e-5)


def test_adam_records_the_preconditioned_sharpness_and_its_threshold(tmp_path):
    run = _train(tmp_path, "adam", "--epochs", "1", "--optimizer", "adamw", "--lr", "0.01",
                 "--sharpness", "1")
    row = _rows(run)[0]
    assert row["precond_sharpness"] > 0 and row["sharpness"] > 0
    # Cohen et al. 2022: (2 + 2β1)/((1 - β1)η) = 38/η at β1 = 0.9
    assert row["sharpness_threshold"] == pytest.approx(38 / row["lr_last"], rel=1e-12)


def test_the_report_plots_sharpness_against_the_threshold(runs, tmp_path):
    cmp = tmp_path / "cmp"
    assert main(["compare", "--grid", "lr=0.05", "--out", str(cmp), *BLOBS, "--epochs", "2",
                 "--optimizer", "momentum", "--sharpness", "1"]) == 0
    assert (cmp / "sharpness.png").stat().st_size > 0
    assert "sharpness.png" in (cmp / "report.md").read_text()


def test_resume_accepts_sharpness_and_find_lr_refuses_it(tmp_path, capsys):
    run = _train(tmp_path, "r", "--epochs", "1")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--sharpness", "1",
                 "--quiet"]) == 0
    assert "sharpness" in _rows(run)[-1] and "sharpness" not in _rows(run)[0]
    capsys.readouterr()
    assert main(["find-lr", *BLOBS, "--sharpness", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--sharpness" in err
    assert main(["train", *BLOBS, "--sharpness", "-1", "--out", str(tmp_path)]) == 2


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_sharpness_of_a_transformer_matches_its_full_hessian(norm):
    # scaled_dot_product_attention's fused CPU kernel has no double backward: the
    # measurement must still work, and give the full Hessian's top eigenvalue
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from lrlab.diagnostics import sharpness
    from lrlab.lab.data.targets import mean_loss
    from lrlab.lab.models.transformer import Transformer

    torch.manual_seed(0)
    model = Transformer(vocab=7, context=5, norm=norm, depth=1, width=4, heads=2)
    x = torch.randint(0, 7, (16, 5))
    y = torch.randint(0, 7, (16, 5))
    with sdpa_kernel(SDPBackend.MATH):
        top = _full_hessian_top(model, mean_loss, x, y)
    got = sharpness(model, mean_loss, (x, y))
    assert got.converged and got.value == pytest.approx(top, rel=0.01)
