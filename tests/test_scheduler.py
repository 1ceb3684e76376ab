"""lrlab.Scheduler: the torch adapter, checked against formulas and torch's own schedulers."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from lrlab.errors import LrlabError, SpecError
from lrlab.scheduler import Scheduler


def _opt(lrs=(10.0,), cls=torch.optim.SGD, **kw):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return cls(groups, **kw)


def _run(sched: Scheduler, n: int, group: int = 0) -> list[float]:
    """LR read before each of n updates, stepping optimizer then scheduler."""
    out = []
    for _ in range(n):
        out.append(float(sched.optimizer.param_groups[group]["lr"]))
        sched.optimizer.step()
        sched.step()
    return out


def _cos(u, T, end=0.0):
    return end + (1 - end) * (1 + math.cos(math.pi * u / T)) / 2


def test_design_examples_through_torch_optimizer():
    s = Scheduler(_opt(), "warmup(2, start=0) >> linear()", total_steps=10)
    assert _run(s, 10) == pytest.approx([0, 5, 10, 8.75, 7.5, 6.25, 5, 3.75, 2.5, 1.25], abs=1e-9)
    s = Scheduler(_opt(), "warmup(2, start=0) >> cosine()", total_steps=10)
    expected = [0, 5] + [10 * _cos(u, 8) for u in range(8)]
    got = _run(s, 10)
    assert got == pytest.approx(expected, abs=1e-9)
    assert [round(v, 3) for v in got] == [0, 5, 10, 9.619, 8.536, 6.913, 5, 3.087, 1.464, 0.381]
    s = Scheduler(_opt(), "warmup(4)", total_steps=10)
    assert _run(s, 6) == pytest.approx([2.5, 5, 7.5, 10, 10, 10], abs=1e-9)


def test_is_a_torch_lr_scheduler_and_matches_hf_style_lambda():
    """HF's get_linear_schedule_with_warmup written out as a LambdaLR, run side by side."""
    W, N = 7, 40

    def hf_linear(step):
        if step < W:
            return step / max(1, W)
        return max(0.0, (N - step) / max(1, N - W))

    ref_opt, our_opt = _opt((0.3, 0.03)), _opt((0.3, 0.03))
    ref = LambdaLR(ref_opt, hf_linear)
    ours = Scheduler(our_opt, f"warmup({W}, start=0) >> linear()", total_steps=N)
    assert isinstance(ours, LRScheduler)
    for _ in range(N):
        for g in (0, 1):
            assert our_opt.param_groups[g]["lr"] == pytest.approx(
                ref_opt.param_groups[g]["lr"], abs=1e-12)
        ref_opt.step(); ref.step(); our_opt.step(); ours.step()  # noqa: E702
    assert ours.get_last_lr() == pytest.approx(ref.get_last_lr(), abs=1e-12)


def test_param_groups_keep_their_ratio_and_absolute_end_lr_per_group():
    s = Scheduler(_opt((1.0, 0.1)), "cosine()", total_steps=20)
    for _ in range(20):
        a, b = (g["lr"] for g in s.optimizer.param_groups)
        assert b == pytest.approx(0.1 * a, abs=1e-15)
        s.optimizer.step(); s.step()  # noqa: E702
    # an absolute floor is the same LR for every group: a multiplier of each group's own peak
    s = Scheduler(_opt((1.0, 0.1)), "cosine(end_lr=0.01)", total_steps=20)
    lrs0, lrs1 = [], []
    for _ in range(21):
        lrs0.append(s.optimizer.param_groups[0]["lr"])
        lrs1.append(s.optimizer.param_groups[1]["lr"])
        s.optimizer.step(); s.step()  # noqa: E702
    assert lrs0[5] == pytest.approx(0.01 + (1 - 0.01) * (1 + math.cos(math.pi * 5 / 20)) / 2)
    assert lrs1[5] == pytest.approx(0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * 5 / 20)) / 2)
    assert lrs0[20] == pytest.approx(0.01) and lrs1[20] == pytest.approx(0.01)


def test_tensor_lr_updated_in_place():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.Adam([p], lr=torch.tensor(0.5))
    lr_tensor = opt.param_groups[0]["lr"]
    s = Scheduler(opt, "warmup(4)", total_steps=8)
    seen = []
    for _ in range(5):
        assert opt.param_groups[0]["lr"] is lr_tensor
        seen.append(lr_tensor.item())
        opt.step(); s.step()  # noqa: E702
    assert seen == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5])


def test_per_epoch_stepping_uses_epochs_as_the_unit():
    s = Scheduler(_opt((0.5,)), "multistep([3, 6], gamma=0.5)", per="epoch", epochs=8)
    assert _run(s, 8) == pytest.approx([0.5] * 3 + [0.25] * 3 + [0.125] * 2)
    s = Scheduler(_opt((1.0,)), "warmup(2ep) >> cosine()", per="epoch", epochs=6)
    assert _run(s, 6) == pytest.approx([0.5, 1.0] + [_cos(u, 4) for u in range(4)])


def test_warmup_auto_reads_beta2_from_the_optimizer():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0, betas=(0.9, 0.99))
    s = Scheduler(opt, "warmup(auto)", total_steps=1000)
    T = math.ceil(2 / (1 - 0.99))  # Ma & Yarats: 2 / (1 - beta2) = 200
    lrs = _run(s, T + 2)
    assert lrs[0] == pytest.approx(1 / T)
    assert lrs[T - 1] == pytest.approx(1.0) and lrs[T - 2] < 1.0


def test_plateau_combines_with_warmup_and_decay():
    s = Scheduler(_opt((1.0,)), "warmup(4) >> constant() * plateau(factor=0.5, patience=1)",
                  total_steps=100)
    assert _run(s, 2) == pytest.approx([0.25, 0.5])
    s.report(1.0)  # best
    s.report(2.0)  # bad 1
    assert s.optimizer.param_groups[0]["lr"] == pytest.approx(0.75)  # warmup continues
    s.report(3.0)  # bad 2 > patience -> halve
    assert s.optimizer.param_groups[0]["lr"] == pytest.approx(0.75 * 0.5)
    assert _run(s, 3) == pytest.approx([0.375, 0.5, 0.5])
    with pytest.raises(LrlabError):
        Scheduler(_opt(), "constant()").report(1.0)


def _make(spec, count, lrs=(0.2, 0.05)):
    opt = _opt(lrs)
    s = Scheduler(opt, spec, total_steps=300, steps_per_epoch=30)
    for _ in range(count):
        opt.step()
        s.step()
    return opt, s


@settings(max_examples=40, deadline=None)
@given(count=st.integers(0, 300), spec=st.sampled_from([
    "warmup(10) >> cosine(end=0.1)", "warmup(1ep, start=0) >> linear()",
    "restarts(cycles=3, mult=2, decay=0.5)", "wsd(decay=20%, shape=sqrt)",
    "factor(0.5, every=1ep, floor=0.1)", "warmup(5%) >> multistep([2ep, 5ep], gamma=0.3)",
]))
def test_resume_from_state_dict_at_any_count_reproduces_the_sequence(count, spec):
    _, full = _make(spec, 0)
    reference = _run(full, 300)
    _, s = _make(spec, count)
    state = pickle.loads(pickle.dumps(s.state_dict()))  # plain data, no lambdas
    opt2 = _opt((0.2, 0.05))
    s2 = Scheduler(opt2, "constant()")  # the state carries the spec
    s2.load_state_dict(state)
    assert str(s2.schedule) == str(s.schedule)
    assert _run(s2, 300 - count) == reference[count:]


def test_resume_at_a_million_updates_is_closed_form():
    opt = _opt((1.0,))
    s = Scheduler(opt, "warmup(1000) >> cosine(end=0.1)", total_steps=2_000_000)
    state = s.state_dict()
    state["last_epoch"] = 1_000_000
    s.load_state_dict(state)
    u, T = 1_000_000 - 1000, 2_000_000 - 1000
    expected = 0.1 + 0.9 * (1 + math.cos(math.pi * u / T)) / 2
    assert opt.param_groups[0]["lr"] == pytest.approx(expected)


def test_errors_are_value_errors_with_one_line():
    with pytest.raises(SpecError) as e:
        Scheduler(_opt(), "cosine()")  # needs total_steps
    assert "total_steps" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SpecError):
        Scheduler(_opt(), "warmup(5ep) >> cosine()", total_steps=100)  # no steps_per_epoch
    with pytest.raises(SpecError):
        Scheduler(_opt(), "warmup(200) >> cosine()", total_steps=100)
    with pytest.raises(LrlabError):
        Scheduler(_opt((-1.0,)), "constant()")
    with pytest.raises(LrlabError):
        Scheduler(_opt(), "constant()", total_steps=0)
    with pytest.raises(ValueError):
        Scheduler(_opt(), "cosin()", total_steps=10)
