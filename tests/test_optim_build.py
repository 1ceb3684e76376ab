"""build_optimizer, param_groups and scaling rules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrlab.errors import LrlabError
from lrlab.optim import (
    OPTIMIZERS,
    build_optimizer,
    describe_optimizer,
    layer_ids,
    param_groups,
    scale_lr,
)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8))  # 3-D, listed in no_weight_decay
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.blocks = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.LayerNorm(8), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x)).mean(dim=(2, 3))  # (N, 2)
        y = torch.cat([y, y, y, y], dim=1) + self.pos_embed.mean()
        return self.head(self.blocks(y))


def _by_name(groups: list[dict]) -> dict[str, dict]:
    return {n: g for g in groups for n in g["param_names"]}


def test_no_decay_group_membership() -> None:
    groups = _by_name(param_groups(Net(), 0.05))
    decayed = {n for n, g in groups.items() if g["weight_decay"] == 0.05}
    assert decayed == {"conv.weight", "blocks.0.weight", "blocks.3.weight", "head.weight"}
    no_decay = {n for n, g in groups.items() if g["weight_decay"] == 0.0}
    assert no_decay == {"pos_embed", "conv.bias", "bn.weight", "bn.bias", "blocks.0.bias",
                        "blocks.2.weight", "blocks.2.bias", "blocks.3.bias", "head.bias"}


def test_norm_weight_detected_by_type_even_if_not_1d() -> None:
    class WeirdNorm(nn.GroupNorm):
        pass

    model = nn.Sequential(WeirdNorm(2, 4), nn.Linear(4, 4))
    model[0].weight = nn.Parameter(torch.ones(4, 1))  # 2-D, still a norm parameter
    groups = _by_name(param_groups(model, 0.1))
    assert groups["0.weight"]["weight_decay"] == 0.0
    assert groups["1.weight"]["weight_decay"] == 0.1


def test_extra_no_decay_patterns() -> None:
    groups = _by_name(param_groups(Net(), 0.1, no_decay=("head.*",)))
    assert groups["head.weight"]["weight_decay"] == 0.0
    assert groups["conv.weight"]["weight_decay"] == 0.1


def test_lr_mult_patterns_and_initial_lr() -> None:
    groups = _by_name(param_groups(Net(), 0.1, lr=0.01,
                                   lr_mult={"head.*": 10.0, "*.bias": 0.5}))
    assert groups["head.weight"]["lr"] == pytest.approx(0.1)
    assert groups["head.bias"]["lr"] == pytest.approx(0.01 * 10 * 0.5)
    assert groups["conv.bias"]["lr"] == pytest.approx(0.005)
    assert groups["conv.weight"]["lr"] == pytest.approx(0.01)
    for g in groups.values():
        assert g["initial_lr"] == g["lr"]


def test_layer_decay_follows_formula() -> None:
    decay = 0.5
    model = Net()
    ids, last = layer_ids(model)
    # units with parameters: conv, bn, blocks.0, blocks.2, blocks.3, head -> L = 5
    expected_ids = {"pos_embed": 0, "conv.weight": 0, "conv.bias": 0, "bn.weight": 1,
                    "bn.bias": 1, "blocks.0.weight": 2, "blocks.0.bias": 2,
                    "blocks.2.weight": 3, "blocks.2.bias": 3, "blocks.3.weight": 4,
                    "blocks.3.bias": 4, "head.weight": 5, "head.bias": 5}
    assert (ids, last) == (expected_ids, 5)
    groups = _by_name(param_groups(model, 0.1, lr=1.0, layer_decay=decay))
    for name, i in expected_ids.items():
        assert groups[name]["lr"] == pytest.approx(decay ** (5 - i)), name


def test_build_uses_groups_and_scheduler_scales_in_proportion() -> None:
    opt = build_optimizer("adamw", Net(), lr=0.1, weight_decay=0.05, lr_mult={"head.*": 2.0})
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5)
    ratios = {g["lr"] / g["initial_lr"] for g in opt.param_groups}
    assert ratios == {0.5}
    assert sched is not None
    wds = sorted({g["weight_decay"] for g in opt.param_groups})
    assert wds == [0.0, 0.05]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_name_builds_and_steps(name: str) -> None:
    torch.manual_seed(0)
    model = Net()
    lr = 1e-4 if name == "lion" else 1e-2
    opt = build_optimizer(name, model, lr=lr, weight_decay=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randn(2, 1, 5, 5)).pow(2).sum()
    loss.backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert describe_optimizer(name).startswith(name)
    assert "\n" not in describe_optimizer(name)


def test_expected_classes_and_defaults() -> None:
    params = [nn.Parameter(torch.zeros(2))]
    mom = build_optimizer("momentum", params, lr=0.1)
    assert isinstance(mom, torch.optim.SGD) and mom.param_groups[0]["momentum"] == 0.9
    nest = build_optimizer("nesterov", params, lr=0.1)
    assert nest.param_groups[0]["nesterov"] is True
    assert build_optimizer("amsgrad", params, lr=0.1).param_groups[0]["amsgrad"] is True
    assert isinstance(build_optimizer("adamw", params, lr=0.1), torch.optim.AdamW)
    rms = build_optimizer("rmsprop", params, lr=0.1, alpha=0.9)
    assert rms.param_groups[0]["alpha"] == 0.9
    assert build_optimizer("lion", params, lr=0.1, betas=(0.8, 0.9)).param_groups[0][
        "betas"] == (0.8, 0.9)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(LrlabError) as info:
        build_optimizer("adan", [nn.Parameter(torch.zeros(1))], lr=0.1)
    msg = str(info.value)
    assert "'adan'" in msg and "\n" not in msg
    assert all(n in msg for n in OPTIMIZERS)
    with pytest.raises(LrlabError, match="adan"):
        describe_optimizer("adan")


def test_unknown_keyword_names_it_and_lists_valid() -> None:
    with pytest.raises(LrlabError) as info:
        build_optimizer("sgd", [nn.Parameter(torch.zeros(1))], lr=0.1, betas=(0.9, 0.9))
    msg = str(info.value)
    assert "'betas'" in msg and "momentum" in msg and "\n" not in msg


@pytest.mark.parametrize("name, kwargs", [
    ("adam", {"betas": (1.5, 0.9)}),
    ("rmsprop", {"alpha": -1.0}),
    ("sgd", {"momentum": -0.5}),
    ("lion", {"betas": (0.9, 1.0)}),
    ("adamw", {"lr": -1.0}),
])
def test_bad_values_are_one_line_errors(name: str, kwargs: dict) -> None:
    lr = kwargs.pop("lr", 0.1)
    with pytest.raises(LrlabError) as info:
        build_optimizer(name, [nn.Parameter(torch.zeros(1))], lr=lr, **kwargs)
    assert "\n" not in str(info.value)


def test_scale_lr_rules() -> None:
    assert scale_lr(0.1, 1024, 256, "linear") == pytest.approx(0.4)
    assert scale_lr(0.1, 1024, 256, "sqrt") == pytest.approx(0.2)
    assert scale_lr(0.1, 1024, 256, "none") == pytest.approx(0.1)
    assert scale_lr(0.1, 64, 256) == pytest.approx(0.025)
    with pytest.raises(LrlabError, match="cubic"):
        scale_lr(0.1, 64, 256, "cubic")
    with pytest.raises(LrlabError, match="batch"):
        scale_lr(0.1, 0, 256)


def test_untuned_warmup_steps() -> None:
    pytest.importorskip("lrlab.schedules")
    from lrlab.optim import untuned_warmup_steps
    try:
        from lrlab.schedules import untuned_warmup_steps as _  # noqa: F401
    except ImportError:
        pytest.skip("lrlab.schedules has no untuned_warmup_steps yet")
    assert untuned_warmup_steps(0.999) == math.ceil(2 / (1 - 0.999))
    assert untuned_warmup_steps(0.99) == 200
