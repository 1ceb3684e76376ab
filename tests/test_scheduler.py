"""lrlab.Scheduler: the torch adapter, checked against formulas and torch's own schedulers."""

from __future__ import annotations

import math
import pickle
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from lrlab.errors import LrlabError, SpecError
from lrlab.scheduler import PlateauNotReportedWarning, ScheduleChangedWarning, Scheduler


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
    "restarts(cycles=3, mult=2, decay=0.5)", "wsd(decay=20%, shape=1-sqrt)",
    "factor(0.5, every=1ep, floor=0.1)", "warmup(5%) >> multistep([2ep, 5ep], gamma=0.3)",
]))
def test_resume_from_state_dict_at_any_count_reproduces_the_sequence(count, spec):
    _, full = _make(spec, 0)
    reference = _run(full, 300)
    _, s = _make(spec, count)
    state = pickle.loads(pickle.dumps(s.state_dict()))  # plain data, no lambdas
    opt2 = _opt((0.2, 0.05))
    s2 = Scheduler.from_state_dict(opt2, state)  # the state carries the spec and lengths
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


# -- issue 10 / 11: units, inputs honoured or refused, resume, pickling, compile ---------------


def _adamw(beta2=0.99, lr=1.0):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr, betas=(0.9, beta2))


def test_warmup_auto_per_epoch_counts_updates_not_epochs():
    """2/(1-b2) = 200 *updates* of warmup; 30 updates per epoch -> ceil(200/30) = 7 epochs."""
    T = math.ceil(math.ceil(2 / (1 - 0.99)) / 30)
    s = Scheduler(_adamw(), "warmup(auto)", per="epoch", epochs=300, steps_per_epoch=30)
    lrs = _run(s, 10)
    assert lrs == pytest.approx([min((e + 1) / T, 1.0) for e in range(10)])
    with pytest.raises(LrlabError, match="steps_per_epoch") as e:  # not read as 200 epochs
        Scheduler(_adamw(), "warmup(auto)", per="epoch", epochs=300)
    assert "\n" not in str(e.value)


def test_epochs_with_per_step_is_honoured_and_lengths_must_agree():
    s = Scheduler(_opt((1.0,)), "cosine()", epochs=2, steps_per_epoch=5)  # 10 updates
    assert _run(s, 11) == pytest.approx([_cos(u, 10) for u in range(10)] + [0.0])
    s = Scheduler(_opt((1.0,)), "cosine()", per="epoch", total_steps=95, steps_per_epoch=10)
    assert _run(s, 10) == pytest.approx([_cos(e, 10) for e in range(10)])  # ceil(95/10) epochs
    for kw in (dict(epochs=5),  # per="step": updates unknown
               dict(per="epoch", total_steps=50),  # epochs unknown
               dict(total_steps=50, epochs=5),  # cannot be checked
               dict(total_steps=30, epochs=5, steps_per_epoch=4),  # 8 epochs, not 5
               dict(epochs=True, steps_per_epoch=4)):
        with pytest.raises(LrlabError):
            Scheduler(_opt(), "cosine()", **kw)
    # both given and agreeing (the lab trainer's call): a partial last epoch is allowed
    s = Scheduler(_opt((1.0,)), "cosine()", total_steps=95, epochs=10, steps_per_epoch=10)
    assert s.lr_at(50)[0] == pytest.approx(_cos(50, 95))


def test_step_with_a_float_is_a_metric_with_a_plateau_and_refused_without():
    s = Scheduler(_opt((1.0,)), "cosine()", total_steps=10)
    _run(s, 3)
    for bad in (0.35, torch.tensor(0.35), 3.0, "1", -1):
        with pytest.raises(LrlabError):
            s.step(bad)
    assert s.count == 3 and s.optimizer.param_groups[0]["lr"] == pytest.approx(_cos(3, 10))
    s.step(5)  # torch's (deprecated) epoch index is still honoured
    assert s.optimizer.param_groups[0]["lr"] == pytest.approx(_cos(5, 10))

    # with a plateau: step(metric) reports, then advances one epoch (Lightning's
    # reduce_on_plateau path); factors from torch's ReduceLROnPlateau run on the same metrics
    metrics = [1.0, 0.9, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85]
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, factor=0.5, patience=1, eps=0.0)
    factors = [1.0]
    for m in metrics:
        ref.step(m)
        factors.append(ref_opt.param_groups[0]["lr"])
    s = Scheduler(_opt((2.0,)), "warmup(2) >> constant() * plateau(factor=0.5, patience=1)",
                  per="epoch", epochs=9)
    seen = [s.optimizer.param_groups[0]["lr"]]
    for m in metrics:
        s.optimizer.step()
        s.step(torch.tensor(m))
        seen.append(s.optimizer.param_groups[0]["lr"])
    assert s.count == len(metrics)
    assert seen == pytest.approx([2.0 * min((e + 1) / 2, 1.0) * factors[e] for e in range(9)])
    assert min(factors) < 1.0  # the plateau did act


def _trained(spec, total, n, **kw):
    s = Scheduler(_opt((1.0,)), spec, total_steps=total, **kw)
    _run(s, n)
    return s


def test_load_state_dict_keeps_the_constructor_settings_and_says_so():
    """An HF run extended from 48 to 96 updates: updates 48-95 follow the 96-update curve."""
    old = _trained("warmup(4) >> cosine()", 48, 48)
    new = Scheduler(_opt((1.0,)), "warmup(4) >> cosine()", total_steps=96)
    new.load_state_dict(old.state_dict())
    assert new.count == 48
    with pytest.warns(ScheduleChangedWarning, match="total_steps 48 -> 96") as caught:
        lrs = _run(new, 48)  # said at the first step (HF silences warnings while loading)
    assert len(caught) == 1
    assert lrs == pytest.approx([_cos(t - 4, 92) for t in range(48, 96)])
    # the same settings: silent, and the sequence goes on
    again = Scheduler(_opt((1.0,)), "warmup(4) >> cosine()", total_steps=48)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again.load_state_dict(_trained("warmup(4) >> cosine()", 48, 20).state_dict())
        assert _run(again, 3) == pytest.approx([_cos(t - 4, 44) for t in (20, 21, 22)])
    # a new spec keeps the plateau's running state when it still has one
    p = _trained("cosine() * plateau(factor=0.5, patience=0)", 20, 5)
    p.report(1.0)
    p.report(2.0)  # halves
    q = Scheduler(_opt((1.0,)), "linear() * plateau(factor=0.5, patience=0)", total_steps=20)
    q.load_state_dict(p.state_dict())
    assert q.optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * (1 - 5 / 20))
    with pytest.warns(ScheduleChangedWarning, match="spec 'cosine"):
        q.step()
    # counting epochs vs updates cannot be reconciled
    e = Scheduler(_opt((1.0,)), "cosine()", per="epoch", epochs=20)
    with pytest.raises(LrlabError, match="per="):
        e.load_state_dict(_trained("cosine()", 20, 3).state_dict())


def _bad_states():
    good = _trained("warmup(2) >> cosine() * plateau(patience=1)", 50, 7).state_dict()

    def edit(**kw):
        return {**good, **kw}

    missing = dict(good)
    del missing["last_epoch"]
    return [
        ["not a dict"], missing, edit(spec="cosin()"), edit(spec=42), edit(per="week"),
        edit(total_steps=-1), edit(total_steps=True), edit(steps_per_epoch=2.5),
        edit(total_steps=50, epochs=3, steps_per_epoch=10), edit(beta2=1.5),
        edit(last_epoch="3"), edit(last_epoch=-2), edit(_step_count=-1),
        edit(base_lrs=[1.0, 2.0]), edit(base_lrs=[math.nan]), edit(base_lrs="1"),
        edit(plateau={"plateau": "plateau(patience=3)"}), edit(plateau="x"),
        edit(plateau={**good["plateau"], "factor": "big"}),
        edit(plateau={**good["plateau"], "num_bad": -4}),
        edit(spec="cosine()"),  # a plateau state for a spec without plateau(...)
    ]


@pytest.mark.parametrize("bad", _bad_states())
def test_a_bad_state_is_refused_and_changes_nothing(bad):
    s = _trained("warmup(3) >> linear() * plateau(factor=0.5, patience=0)", 40, 6)
    s.report(1.0)
    s.report(2.0)
    before = (s.state_dict(), s.optimizer.param_groups[0]["lr"],
              s.optimizer.param_groups[0].get("initial_lr"), str(s.schedule), s.get_last_lr())
    with pytest.raises(LrlabError) as e:
        s.load_state_dict(bad)
    assert "\n" not in str(e.value)
    after = (s.state_dict(), s.optimizer.param_groups[0]["lr"],
             s.optimizer.param_groups[0].get("initial_lr"), str(s.schedule), s.get_last_lr())
    assert after == before
    assert _run(s, 2) == pytest.approx([0.5 * (1 - u / 37) for u in (3, 4)])


def test_a_multi_phase_scheduler_pickles_and_goes_on_identically():
    import io

    s = _trained("warmup(5) >> cosine(end=0.1) * plateau(factor=0.5, patience=0)", 40, 7)
    s.report(1.0)
    s.report(2.0)
    copies = [pickle.loads(pickle.dumps(s))]
    buf = io.BytesIO()
    torch.save(s, buf)
    buf.seek(0)
    copies.append(torch.load(buf, weights_only=False))  # the whole object: a trusted buffer
    want = _run(s, 30)
    for c in copies:
        assert c.count == 7 and c.plateau_state.factor == 0.5
        assert _run(c, 30) == pytest.approx(want, abs=0)


def test_get_last_lr_is_typed_like_torchs_for_tensor_lrs():
    def make():
        return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=torch.tensor(0.4))

    ref_opt, our_opt = make(), make()
    ref = LambdaLR(ref_opt, lambda t: (t + 1) / 4 if t < 4 else 1.0)
    ours = Scheduler(our_opt, "warmup(4)", total_steps=8)
    for _ in range(6):
        a, b = ref.get_last_lr(), ours.get_last_lr()
        assert [type(x) for x in b] == [type(x) for x in a] == [torch.Tensor]
        assert b[0].item() == pytest.approx(a[0].item())
        assert b[0] is not our_opt.param_groups[0]["lr"]  # a copy, as torch's
        ref_opt.step(); ref.step(); our_opt.step(); ours.step()  # noqa: E702
    ours.get_last_lr()[0].fill_(123.0)  # does not touch the optimizer
    assert our_opt.param_groups[0]["lr"].item() == pytest.approx(0.4)
    assert [type(x) for x in Scheduler(_opt(), "constant()").get_last_lr()] == [float]


def test_last_epoch_is_refused_with_a_pointer_to_load_state_dict():
    with pytest.raises(LrlabError, match="load_state_dict"):
        Scheduler(_opt(), "cosine()", total_steps=10, last_epoch=3)


def _first_overflow(gamma: float, scale: float = 1.0) -> int:
    """The first t where scale * gamma**t is no longer a finite float."""
    t = 0
    while True:
        try:
            if math.isinf(scale * gamma**t):
                return t
        except OverflowError:
            return t
        t += 1


@pytest.mark.parametrize("spec,total,gamma", [
    ("exp(1.5)", 5000, 1.5), ("exp(1e10)", None, 1e10), ("warmup(10) >> exp(1.01)", None, 1.01),
])
def test_a_schedule_that_reaches_inf_is_refused_at_bind_time(spec, total, gamma):
    offset = 10 if spec.startswith("warmup") else 0
    with pytest.raises(LrlabError, match="inf") as e:
        Scheduler(_opt((1.0,)), spec, total_steps=total)
    assert f" {offset + _first_overflow(gamma)} " in str(e.value) and "\n" not in str(e.value)
    Scheduler(_opt((1.0,)), "exp(1.5)", total_steps=1000)  # 1.5**1000 ~ 1e176: fine


def test_first_nonfinite_is_the_api_for_checking_a_curve():
    from lrlab.schedules import Context, parse

    exp15 = parse("exp(1.5)")
    assert exp15.first_nonfinite(5000) == _first_overflow(1.5)
    assert exp15.first_nonfinite(1000) is None  # 1.5**1000 ~ 1e176
    assert exp15.first_nonfinite() == _first_overflow(1.5)  # open-ended: where it overflows
    # the peak LR counts: 10 * 2**t overflows one update before 2**t does
    assert parse("exp(2)").first_nonfinite(None, scale=10.0) == _first_overflow(2.0, 10.0)
    assert _first_overflow(2.0, 10.0) < _first_overflow(2.0)
    bound = parse("warmup(5) >> exp(1.01)").resolve(Context(total_steps=100_000))
    assert bound.first_nonfinite(100_000) == 5 + _first_overflow(1.01)
    assert parse("warmup(5) >> cosine()").resolve(Context(total_steps=50)).first_nonfinite(50) \
        is None


def test_an_inf_lr_the_bind_check_cannot_see_is_refused_by_step():
    from dataclasses import dataclass
    from typing import ClassVar

    from lrlab.schedules import Phase

    @dataclass(frozen=True, kw_only=True, repr=False)
    class Spike(Phase):  # finite at both ends, inf inside: not monotone
        name: ClassVar[str] = "spike"
        needs_length: ClassVar[bool] = False

        def _value(self, u: int) -> float:
            return math.inf if u == 5 else 1.0

    s = Scheduler(_opt((1.0,)), Spike(), total_steps=10)
    _run(s, 4)
    with pytest.raises(LrlabError, match="finite"):
        s.step()
    assert math.isfinite(s.optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("schedule", [None, 42, b"cosine()", 1.5, ["cosine()"]])
def test_python_api_refuses_what_is_not_a_schedule(schedule):
    with pytest.raises(LrlabError, match="spec string") as e:
        Scheduler(_opt(), schedule)
    assert "\n" not in str(e.value)


def test_python_api_refuses_bad_optimizers_and_metrics():
    opt = _opt()
    opt.param_groups.clear()
    with pytest.raises(LrlabError, match="no param groups"):
        Scheduler(opt, "constant()")
    with pytest.raises(LrlabError, match="Optimizer"):
        Scheduler("sgd", "constant()")  # type: ignore[arg-type]
    s = Scheduler(_opt((1.0,)), "constant() * plateau(patience=0)")
    for bad in ("abc", "1.5", math.nan, math.inf, True, None, torch.tensor([1.0, 2.0])):
        with pytest.raises(LrlabError) as e:
            s.report(bad)
        assert "\n" not in str(e.value)
    assert s.plateau_state.reports == 0 and s.plateau_state.factor == 1.0
    s.report(torch.tensor(0.5))
    s.report(1)
    assert s.plateau_state.reports == 2


def _steps_until_warning(s: Scheduler, n: int) -> list[int]:
    """Indices (count after the step) of the steps that warned PlateauNotReportedWarning."""
    warned = []
    for _ in range(n):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            s.optimizer.step()
            s.step()
        if any(issubclass(w.category, PlateauNotReportedWarning) for w in caught):
            warned.append(s.count)
    return warned


def test_a_plateau_never_reported_is_warned_about_once_after_a_whole_epoch():
    spec = "constant() * plateau(patience=2)"
    # steps_per_epoch known: the first step after a whole epoch (10 updates) without a report
    assert _steps_until_warning(Scheduler(_opt(), spec, total_steps=100,
                                          steps_per_epoch=10), 40) == [11]
    # per="epoch": the step after the first whole epoch
    assert _steps_until_warning(Scheduler(_opt(), spec, per="epoch", epochs=9), 5) == [2]
    # epoch length unknown: half of training
    assert _steps_until_warning(Scheduler(_opt(), spec, total_steps=100), 100) == [51]
    # nothing known: no warning
    assert _steps_until_warning(Scheduler(_opt(), spec), 100) == []
    # one report is enough
    s = Scheduler(_opt(), spec, total_steps=100, steps_per_epoch=10)
    _steps_until_warning(s, 10)
    s.report(1.0)
    assert _steps_until_warning(s, 50) == []


def test_torch_compile_does_not_recompile_on_lr_changes():
    """PyTorch's "compiling the optimizer and LR scheduler" pattern, beside SequentialLR."""
    pytest.importorskip("torch._dynamo")
    from torch._dynamo.backends.registry import lookup_backend
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    def run(kind: str, n: int = 30) -> tuple[list[int], list[float]]:
        torch._dynamo.reset()
        compiled_at: list[int] = []
        step = 0

        def counting(gm, inputs):  # aot_eager sees every (re)compile, quickly, on CPU
            compiled_at.append(step)
            return lookup_backend("aot_eager")(gm, inputs)

        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
        if kind == "lrlab":
            sched = Scheduler(opt, "warmup(5) >> cosine()", total_steps=n)
        else:
            sched = SequentialLR(opt, [LinearLR(opt, 0.2, 1.0, total_iters=4),
                                       CosineAnnealingLR(opt, T_max=n - 5)], milestones=[5])

        @torch.compile(backend=counting)
        def fn():
            opt.step()
            sched.step()

        x = torch.randn(8, 4)
        lrs = []
        for step in range(n):  # noqa: B007 -- read by counting()
            model(x).sum().backward()
            lrs.append(float(opt.param_groups[0]["lr"]))
            fn()
        return compiled_at, lrs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch_compiles, torch_lrs = run("SequentialLR")
        our_compiles, our_lrs = run("lrlab")
    assert our_lrs == pytest.approx(torch_lrs, rel=1e-6)
    assert [t for t in torch_compiles if t > 0] == []
    assert [t for t in our_compiles if t > 0] == []  # after warm-up (the first call)


def test_plateau_per_group_min_lr_resumes_and_must_fit_the_groups():
    spec = "constant() * plateau(factor=0.5, patience=0, min_lr=[1.0, 0.03])"
    a = Scheduler(_opt((4.0, 0.1)), spec, total_steps=50)
    for m in (5, 6, 7):  # three cuts: 4 -> 2 -> 1 (floor 1); 0.1 -> 0.05 -> 0.03 (floor)
        a.report(m)
    assert a.lr_at(0) == pytest.approx([1.0, 0.03])
    assert a.plateau_state.factors == pytest.approx([0.25, 0.3])
    b = Scheduler.from_state_dict(_opt((4.0, 0.1)), pickle.loads(pickle.dumps(a.state_dict())))
    assert b.plateau_state.factors == a.plateau_state.factors
    assert _run(b, 5, group=1) == _run(a, 5, group=1)
    with pytest.raises(LrlabError, match="gives 2 min_lr values for 3 param groups"):
        Scheduler(_opt((1.0, 1.0, 1.0)), spec, total_steps=50)
    one = Scheduler(_opt((1.0, 1.0, 1.0)), "plateau(min_lr=0.5, patience=0)")
    one.report(1)
    one.report(2)
    assert one.lr_at(0) == pytest.approx([0.5, 0.5, 0.5])


@pytest.mark.parametrize("spec", [
    "warmup(20) * exp(0.99) * plateau(factor=0.5, patience=1)",
    "warmup(1ep) >> (cosine(clock=train) * restarts(period=25, decay=0.5)) * plateau(patience=0)",
])
@pytest.mark.parametrize("count", [0, 13, 150, 299])
def test_a_product_with_a_plateau_resumes_mid_way_as_if_uninterrupted(spec, count):
    metrics = [3.0, 2.0, 2.5, 2.4, 2.6, 1.0, 1.5, 1.5, 1.4, 1.3]

    def drive(s, start, stop, out):
        for t in range(start, stop):
            if t % 30 == 29:  # one report per "epoch" of 30 updates
                s.report(metrics[t // 30])
            out.append([float(g["lr"]) for g in s.optimizer.param_groups])
            s.optimizer.step()
            s.step()

    full_lrs: list = []
    drive(Scheduler(_opt((0.2, 0.05)), spec, total_steps=300, steps_per_epoch=30), 0, 300,
          full_lrs)
    first: list = []
    a = Scheduler(_opt((0.2, 0.05)), spec, total_steps=300, steps_per_epoch=30)
    drive(a, 0, count, first)
    state = pickle.loads(pickle.dumps(a.state_dict()))
    b = Scheduler.from_state_dict(_opt((0.2, 0.05)), state)
    drive(b, count, 300, first)
    assert first == full_lrs
    assert b.plateau_state.factor < 1.0
    # the product is the LR: peak * warmup * exp (first spec), checked at one update
    if spec.startswith("warmup(20) * exp"):
        assert full_lrs[10][0] == pytest.approx(0.2 * 11 / 20 * 0.99**10)
