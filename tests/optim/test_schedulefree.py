"""Schedule-Free AdamW and SGD (Defazio et al. 2024, "The Road Less Scheduled"): their first
updates against the y/z/x recursion written here, lrlab's warmup(T) against their own
warmup_steps=T, the train/eval helpers, and a trainer run resumed mid-epoch and at an epoch
boundary that equals an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import lrlab.lab.train.trainer as trainer_mod
from lrlab import Scheduler
from lrlab.errors import LrlabError
from lrlab.lab.records import read_jsonl
from lrlab.lab.train.config import TrainConfig
from lrlab.lab.train.trainer import train
from lrlab.optim import build_optimizer
from lrlab.optim.modes import eval_mode, evaluation_point, has_modes, train_mode

A = torch.tensor([[1.0, 0.5, 2.0], [0.25, 3.0, 1.5]], dtype=torch.float64)
C = torch.tensor([[0.3, -1.0, 0.2], [0.7, 0.1, -0.4]], dtype=torch.float64)
W0 = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], dtype=torch.float64)


class Quadratic(nn.Module):
    """f(w) = sum(A * w^2) / 2 + sum(C * w): the gradient A*w + C depends on where it is
    taken, so a test can tell the point y from x or z."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(W0.clone())

    def loss(self) -> torch.Tensor:
        return (A * self.weight**2).sum() / 2 + (C * self.weight).sum()


def grad_at(w: torch.Tensor) -> torch.Tensor:
    return A * w + C


def schedule_free_reference(kind: str, lrs: list[float], wd: float, warmup: int
                            ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(y, x) after each update, from the paper's recursion (Algorithm 1; the schedulefree
    package's defaults r=0, weight_lr_power=2, beta1=0.9 / momentum=0.9, beta2=0.999):

        y_t = (1-b1) z_t + b1 x_t                     (the gradient is taken at y_t)
        g'  = g(y_t) / (sqrt(v_t / (1-b2^t)) + eps)    (AdamW: v_t = b2 v + (1-b2) g^2;
                                                        SGD: g' = g(y_t))
        g'  = g' + wd * y_t                            (weight decay at y)
        gamma_t = lr_t * min(1, t / warmup)
        z_{t+1} = z_t - gamma_t g'
        c_{t+1} = max_{i<=t} gamma_i^2 / sum_{i<=t} max_{j<=i} gamma_j^2
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

    with z_1 = x_1 = w0. The weights are the squared largest LR so far (the package's
    lr_max; the paper's gamma_t^2 while the LR does not fall)."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    z, x = W0.clone(), W0.clone()
    v = torch.zeros_like(W0)
    lr_max, wsum = -1.0, 0.0
    out = []
    for t, lr in enumerate(lrs, start=1):
        y = (1 - b1) * z + b1 * x
        g = grad_at(y)
        if kind == "adamw":
            v = b2 * v + (1 - b2) * g * g
            g = g / ((v / (1 - b2**t)).sqrt() + eps)
        g = g + wd * y
        gamma = lr * min(1.0, t / warmup) if warmup else lr
        lr_max = max(lr_max, gamma)
        wsum += lr_max**2
        c = lr_max**2 / wsum
        z = z - gamma * g
        x = (1 - c) * x + c * z
        out.append(((1 - b1) * z + b1 * x, x.clone()))
    return out


@pytest.mark.parametrize("name, kind", [("adamw-schedulefree", "adamw"),
                                         ("sgd-schedulefree", "sgd")])
@pytest.mark.parametrize("warmup", [0, 2])
def test_first_updates_follow_the_y_z_x_recursion(name: str, kind: str, warmup: int) -> None:
    lrs = [0.1, 0.1, 0.1]
    model = Quadratic()
    opt = build_optimizer(name, model, lr=0.1, weight_decay=0.2, warmup_steps=warmup)
    assert has_modes(opt)
    ref = schedule_free_reference(kind, lrs, 0.2, warmup)
    train_mode(opt)
    for t, (y, x) in enumerate(ref, start=1):
        opt.zero_grad()
        model.loss().backward()
        opt.step()
        # train mode: the parameter is y; eval mode: the average x (then back to y)
        torch.testing.assert_close(model.weight.detach(), y, rtol=1e-12, atol=1e-13,
                                   msg=f"{name}: y after update {t}")
        with evaluation_point(opt):
            torch.testing.assert_close(model.weight.detach(), x, rtol=1e-12, atol=1e-13,
                                       msg=f"{name}: x after update {t}")


def test_a_falling_lr_keeps_the_largest_lr_as_the_averaging_weight() -> None:
    """lrlab's scheduler sets the group LR; the averaging weight follows its running max."""
    lrs = [0.05, 0.1, 0.02, 0.02]
    model = Quadratic()
    opt = build_optimizer("adamw-schedulefree", model, lr=0.1)
    ref = schedule_free_reference("adamw", lrs, 0.0, 0)
    train_mode(opt)
    for lr, (y, _) in zip(lrs, ref):
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        model.loss().backward()
        opt.step()
        torch.testing.assert_close(model.weight.detach(), y, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["adamw-schedulefree", "sgd-schedulefree"])
def test_lrlab_warmup_is_the_optimizers_own_warmup_steps(name: str) -> None:
    """warmup(T) >> constant() on a Schedule-Free optimizer with warmup_steps=0 makes the same
    updates as warmup_steps=T under constant(): both scale update k by (k+1)/T."""
    T, steps = 4, 9
    own, ours = Quadratic(), Quadratic()
    opt_own = build_optimizer(name, own, lr=0.05, warmup_steps=T)
    opt_ours = build_optimizer(name, ours, lr=0.05)
    sched_own = Scheduler(opt_own, "constant()", total_steps=steps)
    sched_ours = Scheduler(opt_ours, f"warmup({T}) >> constant()", total_steps=steps)
    train_mode(opt_own)
    train_mode(opt_ours)
    for _ in range(steps):
        for m, o, s in ((own, opt_own, sched_own), (ours, opt_ours, sched_ours)):
            o.zero_grad()
            m.loss().backward()
            o.step()
            s.step()
        torch.testing.assert_close(ours.weight.detach(), own.weight.detach(), rtol=1e-13,
                                   atol=1e-14)


def test_mode_helpers_do_nothing_without_modes() -> None:
    model = Quadratic()
    sgd = build_optimizer("sgd", model, lr=0.1)
    assert not has_modes(sgd)
    train_mode(sgd)
    eval_mode(sgd)
    with evaluation_point(sgd):
        pass
    assert torch.equal(model.weight.detach(), W0)


@pytest.mark.parametrize("name, kwargs, word", [
    ("adamw-schedulefree", {"warmup_steps": -1}, "warmup_steps"),
    ("adamw-schedulefree", {"warmup_steps": 2.5}, "warmup_steps"),
    ("adamw-schedulefree", {"betas": (0.9, 1.0)}, "betas[1]"),
    ("adamw-schedulefree", {"r": "x"}, "r"),
    ("adamw-schedulefree", {"weight_lr_power": -1.0}, "weight_lr_power"),
    ("adamw-schedulefree", {"momentum": 0.9}, "'momentum'"),  # not AdamW's keyword
    ("sgd-schedulefree", {"momentum": 0.0}, "momentum"),  # the package: in (0, 1)
    ("sgd-schedulefree", {"betas": (0.9, 0.99)}, "'betas'"),
])
def test_bad_hyper_is_one_line(name: str, kwargs: dict, word: str) -> None:
    with pytest.raises(LrlabError) as info:
        build_optimizer(name, Quadratic(), lr=0.1, **kwargs)
    msg = str(info.value)
    assert word.lower() in msg.lower() and name in msg and "\n" not in msg, msg


# -- the trainer: evaluation at x, exact resume -------------------------------------------------
def _cfg(tmp_path, name: str, out: str, **kw) -> TrainConfig:
    lr = {"sgd-schedulefree": 0.05, "prodigy": 1.0}.get(name, 0.01)  # Prodigy: a multiplier
    base = dict(dataset="blobs", optimizer=name, lr=lr,
                weight_decay=0.01, schedule="warmup(5) >> constant()", epochs=3, batch_size=32,
                out=str(tmp_path / out), name="run", quiet=True, seed=4, threads=1)
    base.update(kw)
    return TrainConfig(**base)


class _StopAt:
    """A stand-in for the trainer's Ctrl-C flag that is raised before update ``at`` (counted
    over the whole run), as a Ctrl-C between two updates would."""

    def __init__(self, at: int) -> None:
        self.at, self.checks = at, 0

    def __call__(self) -> _StopAt:
        return self

    def __enter__(self) -> _StopAt:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    @property
    def stop(self) -> bool:
        self.checks += 1
        return self.checks > self.at


def _comparable(rows):
    drop = {"examples_per_s", "epoch_time", "time"}
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def _final(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.parametrize("name", ["adamw-schedulefree", "sgd-schedulefree", "muon", "prodigy"])
def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch, name: str) -> None:
    """Interrupted mid-epoch (update 25 of 57, inside epoch 1), and at the start of epoch 2,
    then resumed: parameters (the evaluation point x for Schedule-Free) and metrics equal an
    uninterrupted run's bit for bit."""
    ref = train(_cfg(tmp_path, name, "ref"))
    assert ref.status == "ok"
    per_epoch = json.loads((ref.path / "config.json").read_text())["updates_per_epoch"]
    assert per_epoch == 19  # 600 training examples in batches of 32
    for stop_at in (25, 2 * per_epoch):
        out = f"cut{stop_at}"
        with monkeypatch.context() as m:
            m.setattr(trainer_mod, "StopFlag", _StopAt(stop_at))
            cut = train(_cfg(tmp_path, name, out))
        assert cut.status == "interrupted"
        done = train(_cfg(tmp_path, name, out), resume=True)
        assert done.status == "ok"
        got, want = _final(done.path), _final(ref.path)
        for k in want:
            assert torch.equal(got[k], want[k]), (name, stop_at, k)
        assert _comparable(read_jsonl(done.path / "metrics.jsonl")) == \
            _comparable(read_jsonl(ref.path / "metrics.jsonl"))


def test_resume_from_an_epoch_checkpoint_equals_an_uninterrupted_run(tmp_path) -> None:
    """A run that stopped after epoch 2 (its last checkpoint, in eval mode: x) and is
    continued for a third epoch equals the 3-epoch run: the y it goes on from is recomputed
    from x and z exactly as the uninterrupted run did after writing the same checkpoint."""
    ref = train(_cfg(tmp_path, "adamw-schedulefree", "ref", schedule="constant()"))
    short = train(_cfg(tmp_path, "adamw-schedulefree", "ext", schedule="constant()", epochs=2))
    assert short.status == "ok"
    longer = train(_cfg(tmp_path, "adamw-schedulefree", "ext", schedule="constant()",
                        epochs=3), resume=True)
    assert longer.status == "ok"
    for k, v in _final(ref.path).items():
        assert torch.equal(_final(longer.path)[k], v), k
    assert _comparable(read_jsonl(longer.path / "metrics.jsonl")) == \
        _comparable(read_jsonl(ref.path / "metrics.jsonl"))


def test_evaluation_is_at_the_average_and_the_checkpoint_holds_it(tmp_path) -> None:
    """The recorded test loss is the model at x: loading the checkpoint's weights (x) into a
    fresh model and evaluating reproduces the last row's test loss."""
    from lrlab.lab.train.parts import build_run
    from lrlab.lab.train.trainer import evaluate

    cfg = _cfg(tmp_path, "adamw-schedulefree", "x", epochs=2)
    res = train(cfg)
    parts = build_run(_cfg(tmp_path, "adamw-schedulefree", "x", epochs=2))
    parts.model.load_state_dict(_final(res.path))
    loss, acc = evaluate(parts.model, parts.data.x_test, parts.data.y_test, 2048, None)
    last = read_jsonl(res.path / "metrics.jsonl")[-1]
    assert (loss, acc) == (last["test_loss"], last["test_acc"])
    ck = torch.load(res.path / "checkpoint.pt", weights_only=True)
    assert all(g["train_mode"] is False for g in ck["optimizer"]["param_groups"])
    assert "model_train" not in ck  # written at an epoch's end: y follows from x and z


def test_default_schedule_is_constant_and_a_decay_is_warned(tmp_path, capsys) -> None:
    res = train(TrainConfig(dataset="blobs", optimizer="adamw-schedulefree", lr=0.01,
                            epochs=1, out=str(tmp_path), name="plain", quiet=True, threads=1))
    assert json.loads((res.path / "config.json").read_text())["schedule"] == "constant()"
    kinds = {e["kind"]: e["message"] for e in read_jsonl(res.path / "events.jsonl")}
    assert "schedule-free" in kinds["schedule"] and "warning" not in kinds
    assert "warning" not in capsys.readouterr().err
    res = train(TrainConfig(dataset="blobs", optimizer="sgd-schedulefree", lr=0.1,
                            schedule="warmup(2) >> cosine()", epochs=2, out=str(tmp_path),
                            name="cosine", quiet=True, threads=1))
    assert res.status == "ok"  # allowed, with a warning line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and "constant()" in err[0]
    assert any(e["kind"] == "warning" for e in read_jsonl(res.path / "events.jsonl"))
