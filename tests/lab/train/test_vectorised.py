"""Vectorised runs (lrlab.lab.train.vectorised) against the one-run trainer, run by run.

The reference is ``lrlab.lab.train.trainer.train`` on each config alone (same seed, same data
order). Exactness is checked in float64 (both paths build their models and data in float64
through a test-only wrapper of ``build_run``): the parameters of every member agree with its
lone run to 1e-10 after every update, for every stacked optimizer, with a member that
diverges mid-run, and across an interruption and resume. In float32 (what runs really use)
the batched kernels round differently: parameters to 1e-5 after 20 updates, final metrics
to 1e-3.
"""

from __future__ import annotations

import dataclasses
import json
import signal
from collections import defaultdict

import pytest
import torch

from lrlab.errors import LrlabError
from lrlab.lab.records import read_jsonl
from lrlab.lab.train import parts as setup
from lrlab.lab.train import trainer, vectorised
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.trainer import train
from lrlab.lab.train.vectorised import group_runs, train_group, vectorise_reason
from tests.idx_fixtures import write_learnable_mnist_dir

TIMING = {"epoch_time", "examples_per_s", "time", "time_s"}


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fmnist")
    write_learnable_mnist_dir(d, n_train=600, n_test=200, seed=1)
    return d


@pytest.fixture
def float64(monkeypatch):
    """Both paths build float64 models and data (test-only: wraps ``setup.build_run``)."""
    build = setup.build_run

    def build64(config, world_size=1):
        parts = build(config, world_size)
        parts.model = parts.model.double()
        d = parts.data
        parts.data = dataclasses.replace(
            d, x_train=d.x_train.double(), x_test=d.x_test.double(),
            x_val=None if d.x_val is None else d.x_val.double())
        return parts

    monkeypatch.setattr(setup, "build_run", build64)


@pytest.fixture
def trace(monkeypatch):
    """Every run's parameters after every update, by run name, for both paths."""
    seen: dict[str, list[list[torch.Tensor]]] = defaultdict(list)
    lone_update = trainer._LoneLoop._update

    def lone(self, *args, **kw):
        out = lone_update(self, *args, **kw)
        seen[self.session.config.name].append([p.detach().clone() for p in self.session.params])
        return out

    stack_update = vectorised._Stack.update

    def stacked(self, idx):
        out = stack_update(self, idx)
        for k, m in enumerate(self.members):
            seen[m.name].append([p[k].detach().clone() for p in self.params])
        return out

    monkeypatch.setattr(trainer._LoneLoop, "_update", lone)
    monkeypatch.setattr(vectorised._Stack, "update", stacked)
    return seen


def _cfg(out, data_dir, name, **kw):
    base = dict(dataset="fashion-mnist", data_dir=str(data_dir), model="mlp", hidden="32",
                optimizer="adamw", lr=0.003, schedule="warmup(1ep) >> cosine()", epochs=2,
                batch_size=64, out=str(out), quiet=True, seed=0, threads=1, name=name)
    base.update(kw)
    return TrainConfig(**base)


# one member per stacked optimizer, each with its own seed, LR, decay and schedule, and one
# that diverges mid-run (its LR grows 4x per update until the loss explodes)
MEMBERS = {
    "sgd": dict(optimizer="sgd", lr=0.05, seed=1, schedule="constant()", weight_decay=0.01),
    "momentum": dict(optimizer="momentum", lr=0.02, seed=2, per="epoch",
                     schedule="factor(0.5)"),
    "nesterov": dict(optimizer="nesterov", lr=0.02, seed=3, momentum=0.8),
    "rmsprop": dict(optimizer="rmsprop", lr=1e-3, seed=4, weight_decay=0.001),
    "adam": dict(optimizer="adam", lr=2e-3, seed=5, weight_decay=0.01, betas=(0.85, 0.99)),
    "adamw": dict(optimizer="adamw", lr=3e-3, seed=6, weight_decay=0.1),
    "amsgrad": dict(optimizer="amsgrad", lr=2e-3, seed=7),
    "adam-nobias": dict(optimizer="adam-nobias", lr=1e-3, seed=8),
    "lion": dict(optimizer="lion", lr=3e-4, seed=9, weight_decay=0.5),
    "diverges": dict(optimizer="sgd", lr=0.05, seed=10, schedule="exp(4)"),
}


def _configs(out, data_dir, names=MEMBERS, **kw):
    return [_cfg(out, data_dir, n, **{**MEMBERS[n], **kw}) for n in names]


def _assert_same_params(trace, names, tol, first=None):
    for name in names:
        a, b = trace[f"lone/{name}"], trace[name]
        assert len(a) == len(b) and a, name
        for u, (pa, pb) in enumerate(zip(a[:first], b[:first])):
            # relative to the weights' size once they exceed 1 (a diverging run's grow huge)
            worst = max(((x - y).abs().max() / x.abs().max().clamp(min=1.0)).item()
                        for x, y in zip(pa, pb))
            assert worst <= tol, f"{name}: update {u} differs by {worst:g}"


def _rows(path):
    return [{k: v for k, v in r.items() if k not in TIMING}
            for r in read_jsonl(path / "metrics.jsonl")]


def _close(a, b, tol):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k], tol)
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y, tol)
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= tol, (a, b)
    else:
        assert a == b


def test_float64_every_optimizer_and_a_divergence_match_lone_runs_after_every_update(
        tmp_path, mnist_dir, float64, trace):
    configs = _configs(tmp_path / "vec", mnist_dir)
    results = train_group(configs)
    for cfg in configs:  # the lone runs, traced under their own key
        lone = dataclasses.replace(cfg, out=str(tmp_path / "lone"), name=f"lone-{cfg.name}")
        train(lone)
        trace[f"lone/{cfg.name}"] = trace.pop(f"lone-{cfg.name}")
    _assert_same_params(trace, MEMBERS, 1e-10)
    by_name = {r.path.name: r for r in results}
    assert by_name["diverges"].status == "diverged"
    assert all(by_name[n].status == "ok" for n in MEMBERS if n != "diverges")
    for name in MEMBERS:
        vec, lone = tmp_path / "vec" / name, tmp_path / "lone" / f"lone-{name}"
        _close(_rows(vec), _rows(lone), 1e-10)
        s_vec, s_lone = (json.loads((p / "summary.json").read_text()) for p in (vec, lone))
        _close({k: v for k, v in s_vec.items() if k not in TIMING},
               {k: v for k, v in s_lone.items() if k not in TIMING}, 1e-10)
        kinds = [e["kind"] for e in read_jsonl(vec / "events.jsonl")]
        assert "vectorised" in kinds
        assert [k for k in kinds if k != "vectorised"] == \
            [e["kind"] for e in read_jsonl(lone / "events.jsonl")]
    stop = json.loads((tmp_path / "vec" / "diverges" / "summary.json").read_text())
    assert 0 < stop["diverged_at"]["update"] < 16  # mid-run, not at the first update
    # the checkpoints hold the same weights and optimizer state
    for name in ("adam", "momentum", "lion"):
        a = torch.load(tmp_path / "vec" / name / "checkpoint.pt", weights_only=True)
        b = torch.load(tmp_path / "lone" / f"lone-{name}" / "checkpoint.pt", weights_only=True)
        for k in a["model"]:
            torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=1e-10)
        sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
        assert sa.keys() == sb.keys()
        for i in sa:
            assert sa[i].keys() == sb[i].keys()
            for k in sa[i]:
                torch.testing.assert_close(sa[i][k], sb[i][k], rtol=0, atol=1e-10)
        assert a["scheduler"] == b["scheduler"]
        for key in ("torch", "python"):
            assert str(a["rng"][key]) == str(b["rng"][key])


def test_float64_interrupted_group_resumes_exactly(tmp_path, mnist_dir, float64, trace,
                                                   monkeypatch):
    names = ["adamw", "momentum", "lion", "diverges"]
    configs = _configs(tmp_path / "vec", mnist_dir, names, epochs=3)
    update = vectorised._Stack.update  # the tracing wrapper
    calls = {"n": 0}

    def ctrl_c_after_11(self, idx):  # Ctrl-C during epoch 1 (8 updates per epoch)
        out = update(self, idx)
        calls["n"] += 1
        if calls["n"] == 11:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(vectorised._Stack, "update", ctrl_c_after_11)
    first = train_group(configs)
    statuses = {r.path.name: r.status for r in first}
    assert statuses["adamw"] == "interrupted"
    ck = torch.load(tmp_path / "vec" / "adamw" / "checkpoint.pt", weights_only=True)
    assert (ck["epoch"], ck["update"]) == (1, 3)
    again = train_group(configs)
    assert {r.path.name: r.status for r in again} == {**{n: "ok" for n in names},
                                                      "diverges": "diverged"}
    for cfg in configs:
        lone = dataclasses.replace(cfg, out=str(tmp_path / "lone"), name=f"lone-{cfg.name}")
        train(lone)
        trace[f"lone/{cfg.name}"] = trace.pop(f"lone-{cfg.name}")
    _assert_same_params(trace, names, 1e-10)
    for name in names:
        _close(_rows(tmp_path / "vec" / name), _rows(tmp_path / "lone" / f"lone-{name}"),
               1e-10)
        kinds = [e["kind"] for e in read_jsonl(tmp_path / "vec" / name / "events.jsonl")]
        if name != "diverges":
            assert "interrupted" in kinds and "resumed" in kinds


def test_a_lone_run_resumes_a_vectorised_member_and_vice_versa(tmp_path, mnist_dir, float64,
                                                               monkeypatch):
    configs = _configs(tmp_path / "vec", mnist_dir, ["adam", "nesterov"], epochs=3)
    update = vectorised._Stack.update
    calls = {"n": 0}

    def ctrl_c_after_5(self, idx):
        out = update(self, idx)
        calls["n"] += 1
        if calls["n"] == 5:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(vectorised._Stack, "update", ctrl_c_after_5)
    train_group(configs)
    monkeypatch.setattr(vectorised._Stack, "update", update)
    resumed = train(configs[0], resume=True)  # the lone trainer takes over member adam
    lone = train(dataclasses.replace(configs[0], out=str(tmp_path / "lone")))
    assert resumed.status == lone.status == "ok"
    _close(_rows(resumed.path), _rows(lone.path), 1e-10)
    # a lone run interrupted mid-epoch, resumed by a group of one
    cfg = _cfg(tmp_path / "vec2", mnist_dir, "adamw", epochs=2)
    lone_update = trainer._LoneLoop._update
    calls["n"] = 0

    def lone_ctrl_c_after_5(self, *args, **kw):
        out = lone_update(self, *args, **kw)
        calls["n"] += 1
        if calls["n"] == 5:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(trainer._LoneLoop, "_update", lone_ctrl_c_after_5)
    assert train(cfg).status == "interrupted"
    monkeypatch.setattr(trainer._LoneLoop, "_update", lone_update)
    (res,) = train_group([cfg])
    ref = train(dataclasses.replace(cfg, out=str(tmp_path / "lone2")))
    assert res.status == "ok"
    _close(_rows(res.path), _rows(ref.path), 1e-10)


@pytest.mark.parametrize("model", ["mlp", "lenet"])
def test_float32_agrees_within_rounding(tmp_path, mnist_dir, trace, model):
    """float32, as runs really train: batched kernels sum in another order. Parameters agree
    to 1e-5 over the first 20 updates, final metrics to 1e-3. One measured exception: the
    adaptive optimizers (AdamW, RMSProp) on LeNet. The grouped convolution's gradients differ
    from the lone ones by ~1e-8, and a step lr·g/(sqrt(v)+eps) turns a difference d in a
    gradient near 0 into up to lr·d/eps: over 20 updates a few weights moved up to 1.1e-4
    apart, 4% of one step at the peak LR 3e-3 (bound here: 5e-4); the final metrics still
    agree to 1e-3."""
    names = ["adamw", "momentum", "lion", "rmsprop"]
    configs = _configs(tmp_path / "vec", mnist_dir, names, model=model,
                       hidden="32" if model == "mlp" else None, epochs=3)
    train_group(configs)
    for cfg in configs:
        lone = dataclasses.replace(cfg, out=str(tmp_path / "lone"), name=f"lone-{cfg.name}")
        train(lone)
        trace[f"lone/{cfg.name}"] = trace.pop(f"lone-{cfg.name}")
    _assert_same_params(trace, ["momentum", "lion"], 1e-5, first=20)
    _assert_same_params(trace, ["adamw", "rmsprop"], 1e-5 if model == "mlp" else 5e-4,
                        first=20)
    for name in names:
        a = json.loads((tmp_path / "vec" / name / "summary.json").read_text())
        b = json.loads((tmp_path / "lone" / f"lone-{name}" / "summary.json").read_text())
        for key in ("final_test_acc", "final_val_acc", "final_train_loss", "final_test_loss"):
            assert abs(a[key] - b[key]) <= 1e-3, (name, key, a[key], b[key])


# -- which runs stack ---------------------------------------------------------------------
def test_vectorise_reason_names_what_falls_back():
    base = dict(dataset="fashion-mnist", model="lenet")
    assert vectorise_reason(TrainConfig(**base)) is None
    assert vectorise_reason(TrainConfig(dataset="chars")) == "model transformer"
    assert vectorise_reason(TrainConfig(**base, optimizer="nsgd")) == "optimizer nsgd"
    assert vectorise_reason(TrainConfig(**base, accumulate=2)) == "accumulate 2"
    assert vectorise_reason(TrainConfig(**base, sharpness=1)) == "sharpness 1"
    assert vectorise_reason(TrainConfig(**base, update_ratio=True)) == "update-ratio True"
    assert vectorise_reason(TrainConfig(**base, compile=True)) == "compile True"
    assert vectorise_reason(TrainConfig(**base, lr="auto")).startswith("lr auto")
    # plateau, per-epoch schedules, param groups and any stacked optimizer do stack
    assert vectorise_reason(TrainConfig(**base, optimizer="lion", per="epoch",
                                        schedule="constant() * plateau()",
                                        lr_mult={"0.*": 2.0})) is None


def test_group_runs_by_shared_data_model_batch_and_length():
    def cfg(**kw):
        return TrainConfig(**{"dataset": "classification", "model": "mlp", **kw})

    configs = [cfg(seed=0), cfg(seed=1, optimizer="sgd", lr=0.1), cfg(batch_size=32),
               cfg(epochs=3), cfg(seed=2, schedule="cosine()"), cfg(optimizer="nsgd"),
               cfg(dataset="blobs", seed=0), cfg(dataset="blobs", seed=1)]
    groups, alone, reasons = group_runs(configs, "auto")
    assert groups == [[0, 1, 4]]  # blobs data depends on the seed: 6 and 7 do not stack
    assert alone == [2, 3, 5, 6, 7] and reasons == {5: "optimizer nsgd"}
    assert group_runs(configs, "off") == ([], list(range(8)), {})
    with pytest.raises(LrlabError, match="cannot be vectorised .optimizer nsgd"):
        group_runs(configs, "on")
    groups, alone, _ = group_runs(configs[:5], "on")
    assert groups == [[0, 1, 4], [2], [3]] and alone == []


def test_auto_leaves_lenet_alone_on_the_cpu_and_on_still_stacks_it():
    configs = [TrainConfig(dataset="fashion-mnist", model="lenet", seed=s, device="cpu")
               for s in range(3)]
    groups, alone, reasons = group_runs(configs, "auto")
    assert groups == [] and alone == [0, 1, 2]
    assert set(reasons.values()) == {"model lenet on the CPU: stacking measured slower"}
    assert group_runs(configs, "on")[0] == [[0, 1, 2]]
    mlps = [TrainConfig(dataset="classification", model="mlp", seed=s, device="cpu")
            for s in range(2)]
    assert group_runs(mlps, "auto")[0] == [[0, 1]]


# -- lrlab compare --------------------------------------------------------------------------
def test_compare_vectorize_on_refuses_incompatible_runs_in_one_line(tmp_path, capsys):
    from lrlab.cli import main

    out = tmp_path / "o"
    assert main(["compare", "--grid", "optimizer=sgd,nsgd", "--dataset", "blobs", "--epochs",
                 "1", "--vectorize", "on", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimizer=nsgd-s0 cannot be vectorised (optimizer nsgd)" in err[0]
    assert not out.exists()


def test_compare_auto_and_off_give_the_same_runs(tmp_path, capsys):
    from lrlab.cli import main

    common = ["--grid", "optimizer=sgd,adamw", "--grid", "lr=0.05,1e6", "--dataset",
              "classification", "--limit", "512", "--batch-size", "32", "--epochs", "2",
              "--seeds", "0,1", "--jobs", "2"]
    assert main(["compare", *common, "--out", str(tmp_path / "vec")]) == 0
    text = capsys.readouterr().out
    assert "vectorised: 8 of 8 runs in 1 stack" in text
    assert main(["compare", *common, "--vectorize", "off", "--out", str(tmp_path / "proc")]) == 0
    assert "vectorised:" not in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "proc" / "runs").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "vec" / "runs").iterdir())
    assert len(names) == 8
    for name in names:
        a = json.loads((tmp_path / "vec" / "runs" / name / "summary.json").read_text())
        b = json.loads((tmp_path / "proc" / "runs" / name / "summary.json").read_text())
        assert a["status"] == b["status"], name
        if a["status"] == "diverged":
            assert a["diverged_at"]["update"] == b["diverged_at"]["update"]
        else:
            for key in ("final_test_acc", "final_val_acc", "final_train_loss"):
                assert abs(a[key] - b[key]) <= 1e-3, (name, key)


@pytest.mark.parametrize("arch", ["lenet", "mlp"])
def test_the_stacked_forward_is_each_members_own_forward_and_gradient(arch):
    """The grouped-convolution / batched-matmul forward against each member's own model."""
    from torch import nn

    from lrlab.lab.train.vectorised import sequential_supported, stacked_sequential

    torch.manual_seed(0)
    if arch == "lenet":
        make = lambda: nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # noqa: E731
                                     nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Flatten(), nn.Linear(400, 120), nn.ReLU(),
                                     nn.Linear(120, 10)).double()
        x = torch.randn(3, 5, 1, 28, 28, dtype=torch.float64)
    else:
        make = lambda: nn.Sequential(nn.Flatten(), nn.Linear(20, 7), nn.ReLU(),  # noqa: E731
                                     nn.Linear(7, 2)).double()
        x = torch.randn(3, 5, 20, dtype=torch.float64)
    models = [make() for _ in range(3)]
    assert sequential_supported(models[0])
    names = [n for n, _ in models[0].named_parameters()]
    stacked = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models])
               .requires_grad_() for n in names}
    out = stacked_sequential(models[0], stacked, x)
    out.square().sum().backward()
    for k, m in enumerate(models):
        own = m(x[k])
        own.square().sum().backward()
        torch.testing.assert_close(out[k], own, rtol=0, atol=1e-12)
        for n, p in m.named_parameters():
            torch.testing.assert_close(stacked[n].grad[k], p.grad, rtol=0, atol=1e-10)
    assert not sequential_supported(nn.Sequential(nn.Linear(2, 2), nn.Dropout()))
