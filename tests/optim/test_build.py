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


# --------------------------------------------------------------------------- layer decay
class Block(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.Linear(dim, dim)
        self.mlp = nn.Linear(dim, dim)


class TinyViT(nn.Module):
    """The ViT/BEiT layout: patch_embed, cls_token, pos_embed, blocks.0..N-1, norm, head."""

    def __init__(self, depth: int, dim: int = 4) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, 2, stride=2)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, dim))
        self.blocks = nn.Sequential(*[Block(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)


def beit_layer_id(name: str, depth: int) -> int:
    """BEiT's rule (Bao et al. 2021; unilm/beit get_num_layer_for_vit), written out."""
    if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed."):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1  # final norm, head: the top layer, full LR


def test_layer_decay_is_beits_on_a_vit_layout() -> None:
    groups = _by_name(param_groups(TinyViT(depth=2), 0.05, lr=1.0, layer_decay=0.5))
    # two blocks: L = 3, scale 0.5 ** (3 - id)
    assert groups["cls_token"]["lr"] == 0.125
    assert groups["patch_embed.weight"]["lr"] == 0.125
    assert groups["blocks.0.attn.weight"]["lr"] == 0.25  # lrlab 0.1 gave 0.125
    assert groups["blocks.1.mlp.bias"]["lr"] == 0.5
    assert groups["norm.weight"]["lr"] == 1.0  # the final norm is not decayed
    assert groups["head.weight"]["lr"] == 1.0


@pytest.mark.parametrize("depth, decay", [(1, 0.5), (3, 0.65), (12, 0.75)])
def test_layer_decay_follows_beits_rule_for_every_parameter(depth: int, decay: float) -> None:
    model = TinyViT(depth)
    top = depth + 1
    expected = {n: beit_layer_id(n, depth) for n, _ in model.named_parameters()}
    assert layer_ids(model) == (expected, top)
    groups = _by_name(param_groups(model, 0.05, lr=2.0, layer_decay=decay))
    for name, i in expected.items():
        assert groups[name]["lr"] == pytest.approx(2.0 * decay ** (top - i), rel=1e-12), name
        assert groups[name]["lr_scale"] == pytest.approx(decay ** (top - i), rel=1e-12)


def test_layer_decay_generic_rule_on_a_sequential_mlp() -> None:
    """No blocks: each parameter-owning layer is one layer, the head is the top one."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(),
                          nn.Linear(4, 2))
    ids, top = layer_ids(model)
    assert top == 2
    assert ids == {"1.weight": 0, "1.bias": 0, "3.weight": 1, "3.bias": 1,
                   "5.weight": 2, "5.bias": 2}
    groups = _by_name(param_groups(model, 0.0, lr=1.0, layer_decay=0.5))
    assert [groups[f"{k}.weight"]["lr"] for k in (1, 3, 5)] == [0.25, 0.5, 1.0]


class TimmViT(TinyViT):
    def group_matcher(self, coarse: bool = False) -> dict:
        # the matcher timm's VisionTransformer declares
        return dict(stem=r"^cls_token|pos_embed|patch_embed",
                    blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])


def test_layer_decay_honours_a_timm_group_matcher() -> None:
    """timm's rule: stem 0, blocks.i -> i+1, an ordinal ending in 99999 (the final norm)
    joins the previous layer (the last block), unmatched names (the head) on top."""
    depth = 3
    model = TimmViT(depth)

    def timm_layer_id(name: str) -> int:
        if name in ("cls_token", "pos_embed") or name.startswith("patch_embed."):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        if name.startswith("norm."):
            return depth
        return depth + 1

    expected = {n: timm_layer_id(n) for n, _ in model.named_parameters()}
    assert layer_ids(model) == (expected, depth + 1)
    groups = _by_name(param_groups(model, 0.0, lr=1.0, layer_decay=0.5))
    assert groups["norm.weight"]["lr"] == 0.5
    assert groups["head.weight"]["lr"] == 1.0
    assert groups["blocks.0.attn.weight"]["lr"] == 0.125


def test_layer_decay_callable_group_matcher() -> None:
    class Model(TinyViT):
        def group_matcher(self, coarse: bool = False):
            return lambda name: 7 if name.startswith("head") else (2, 1)

    ids, top = layer_ids(Model(2))
    assert top == 1
    assert {ids["head.weight"], ids["head.bias"]} == {1}
    assert {i for n, i in ids.items() if not n.startswith("head")} == {0}


def test_layer_id_fn_overrides_the_built_in_rules() -> None:
    def fn(name: str) -> int:
        return 2 if name.startswith("head") else 1 if name.startswith("blocks") else 0

    model = TimmViT(2)  # has blocks and a group matcher: the function still wins
    ids, top = layer_ids(model, fn)
    assert top == 2 and ids == {n: fn(n) for n, _ in model.named_parameters()}
    groups = _by_name(param_groups(model, 0.0, lr=1.0, layer_decay=0.5, layer_id_fn=fn))
    assert [groups[n]["lr"] for n in ("norm.weight", "blocks.1.mlp.weight", "head.bias")] \
        == [0.25, 0.5, 1.0]
    opt = build_optimizer("adamw", model, lr=1.0, layer_decay=0.5, layer_id_fn=fn)
    assert {g["lr"] for g in opt.param_groups} == {0.25, 0.5, 1.0}


@pytest.mark.parametrize("fn, kwargs, word", [
    (lambda n: -1, {"layer_decay": 0.5}, "layer_id_fn"),
    (lambda n: 1.5, {"layer_decay": 0.5}, "layer_id_fn"),
    (lambda n: True, {"layer_decay": 0.5}, "layer_id_fn"),
    (lambda n: "0", {"layer_decay": 0.5}, "layer_id_fn"),
    ("blocks", {"layer_decay": 0.5}, "layer_id_fn"),
    (lambda n: 0, {}, "layer_decay"),
])
def test_layer_id_fn_errors(fn, kwargs: dict, word: str) -> None:
    with pytest.raises(LrlabError, match=word) as info:
        param_groups(TinyViT(1), 0.0, lr=1.0, layer_id_fn=fn, **kwargs)
    assert "\n" not in str(info.value)


def test_broken_group_matcher_is_a_one_line_error() -> None:
    class Model(TinyViT):
        def group_matcher(self, coarse: bool = False) -> dict:
            return dict(blocks=r"^blocks\.(")

    with pytest.raises(LrlabError, match="group_matcher") as info:
        layer_ids(Model(1))
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ building and stepping
def test_build_uses_groups_and_scheduler_scales_in_proportion() -> None:
    opt = build_optimizer("adamw", Net(), lr=0.1, weight_decay=0.05, lr_mult={"head.*": 2.0})
    torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5)
    assert sorted(g["initial_lr"] for g in opt.param_groups) == [0.1, 0.1, 0.2, 0.2]
    for g in opt.param_groups:
        assert g["lr"] == 0.5 * g["initial_lr"]
    wds = sorted({g["weight_decay"] for g in opt.param_groups})
    assert wds == [0.0, 0.05]


class Linear2(nn.Module):
    """loss = sum(cw * weight) + sum(cb * bias): the gradient is (cw, cb) whatever the
    weights, so every optimizer's update can be written out by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]],
                                                dtype=torch.float64))
        self.bias = nn.Parameter(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))

    def forward(self, cw: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
        return (cw * self.weight).sum() + (cb * self.bias).sum()


GRADS = [  # (weight gradient, bias gradient) of update 1 and update 2
    (torch.tensor([[1.0, -2.0, 0.5], [-0.25, 3.0, -1.0]], dtype=torch.float64),
     torch.tensor([0.4, -0.1, 2.0], dtype=torch.float64)),
    (torch.tensor([[-0.5, 1.0, 0.0], [0.75, -1.5, 2.0]], dtype=torch.float64),
     torch.tensor([0.0, 0.3, -0.6], dtype=torch.float64)),
]
LR, WD = 0.1, 0.2


def reference_update(name: str, p: torch.Tensor, g: torch.Tensor, wd: float, s: dict,
                     t: int) -> torch.Tensor:
    """Update ``t`` (1-based) of optimizer ``name`` with its documented defaults, written
    from its formula (torch.optim docs; Kingma & Ba 2015; Loshchilov & Hutter 2019; Reddi
    et al. 2018; Chen et al. 2023). ``s`` holds the state; moments start at zero."""
    zero = torch.zeros_like(p)
    if name in ("sgd", "momentum", "nesterov"):  # L2 decay coupled into the gradient
        d = g + wd * p
        if name == "sgd":
            return p - LR * d
        mu = 0.9
        s["b"] = d if t == 1 else mu * s["b"] + d  # torch starts the buffer at d
        return p - LR * (d + mu * s["b"] if name == "nesterov" else s["b"])
    if name == "rmsprop":
        alpha, eps = 0.99, 1e-8
        d = g + wd * p
        s["v"] = alpha * s.get("v", zero) + (1 - alpha) * d * d
        return p - LR * d / (s["v"].sqrt() + eps)
    if name in ("adam", "adamw", "amsgrad", "adam-nobias"):
        b1, b2, eps = 0.9, 0.999, 1e-8
        if name == "adamw":  # decoupled: shrink the weights, the moments see g only
            p, d = p * (1 - LR * wd), g
        else:
            d = g + wd * p
        s["m"] = b1 * s.get("m", zero) + (1 - b1) * d
        s["v"] = b2 * s.get("v", zero) + (1 - b2) * d * d
        if name == "adam-nobias":
            return p - LR * s["m"] / (s["v"].sqrt() + eps)
        v = s["v"]
        if name == "amsgrad":
            v = s["vmax"] = torch.maximum(s.get("vmax", zero), v)
        m_hat, v_hat = s["m"] / (1 - b1**t), v / (1 - b2**t)
        return p - LR * m_hat / (v_hat.sqrt() + eps)
    if name == "lion":
        b1, b2 = 0.9, 0.99
        m = s.get("m", zero)
        p = p * (1 - LR * wd) - LR * torch.sign(b1 * m + (1 - b1) * g)
        s["m"] = b2 * m + (1 - b2) * g
        return p
    if name == "nsgd":
        mu, eps = 0.9, 1e-8
        s["b"] = mu * s.get("b", zero) + g / (torch.sqrt((g * g).sum()) + eps)
        return p * (1 - LR * wd) - LR * s["b"]
    raise AssertionError(f"no reference for {name}")


#: Names whose first updates are tested in their own files: Schedule-Free keeps two points
#: per parameter (test_optim_schedulefree), Muon needs hidden Linear layers
#: (test_optim_muon), Prodigy's step size is shared by all tensors (test_optim_prodigy).
OWN_FILES = {"adamw-schedulefree": "test_schedulefree.py",
             "sgd-schedulefree": "test_schedulefree.py",
             "muon": "test_muon.py", "prodigy": "test_prodigy.py"}


def test_every_name_has_a_first_update_test() -> None:
    from pathlib import Path

    here = Path(__file__).parent
    for name in OPTIMIZERS:
        if name in OWN_FILES:
            text = (here / OWN_FILES[name]).read_text()
            assert f'"{name}"' in text and "def test_" in text, name


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if n not in OWN_FILES])
def test_first_updates_follow_each_formula(name: str) -> None:
    """Update 1, then update 2 (which brings in momentum, the AMSGrad max and bias
    correction at t=2), against the formula; the weight is decayed, the bias is not (1-D)."""
    model = Linear2()
    opt = build_optimizer(name, model, lr=LR, weight_decay=WD)
    ref = {"weight": model.weight.detach().clone(), "bias": model.bias.detach().clone()}
    state: dict[str, dict] = {"weight": {}, "bias": {}}
    for t, (cw, cb) in enumerate(GRADS, start=1):
        opt.zero_grad()
        model(cw, cb).backward()
        assert torch.equal(model.weight.grad, cw) and torch.equal(model.bias.grad, cb)
        opt.step()
        ref["weight"] = reference_update(name, ref["weight"], cw, WD, state["weight"], t)
        ref["bias"] = reference_update(name, ref["bias"], cb, 0.0, state["bias"], t)
        for key in ("weight", "bias"):
            torch.testing.assert_close(getattr(model, key).detach(), ref[key], rtol=1e-12,
                                       atol=1e-14, msg=f"{name}: update {t} of {key}")


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


def test_unknown_keyword_names_it_and_lists_valid() -> None:
    with pytest.raises(LrlabError) as info:
        build_optimizer("sgd", [nn.Parameter(torch.zeros(1))], lr=0.1, betas=(0.9, 0.9))
    msg = str(info.value)
    assert "'betas'" in msg and "momentum" in msg and "\n" not in msg


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("name, kwargs, word", [
    ("adam", {"betas": (1.5, 0.9)}, "betas[0]"),
    ("rmsprop", {"alpha": -1.0}, "alpha"),
    ("sgd", {"momentum": -0.5}, "momentum"),
    ("lion", {"betas": (0.9, 1.0)}, "betas[1]"),
    ("adamw", {"lr": -1.0}, "lr"),
    # issue 11: mis-shaped betas, strings, non-finite values
    ("adam", {"betas": (0.9,)}, "betas"),
    ("adam", {"betas": (0.9, 0.99, 0.999)}, "betas"),
    ("adamw", {"betas": "ab"}, "betas"),
    ("adamw", {"betas": 0.9}, "betas"),
    ("adamw", {"betas": ("a", "b")}, "betas[0]"),
    ("lion", {"betas": [0.9, None]}, "betas[1]"),
    ("adamw", {"lr": INF}, "lr"),
    ("adamw", {"lr": NAN}, "lr"),
    ("sgd", {"lr": "0.1"}, "lr"),
    ("sgd", {"lr": True}, "lr"),
    ("sgd", {"lr": torch.tensor(0.1)}, "lr"),
    ("adamw", {"weight_decay": INF}, "weight_decay"),
    ("adamw", {"weight_decay": "lots"}, "weight_decay"),
    ("adamw", {"weight_decay": -0.1}, "weight_decay"),
    ("adamw", {"lr_mult": "head.*=10"}, "lr_mult"),
    ("adamw", {"lr_mult": {"head.*": "10"}}, "lr_mult"),
    ("adamw", {"lr_mult": {"head.*": -1.0}}, "lr_mult"),
    ("adamw", {"lr_mult": {"head.*": INF}}, "lr_mult"),
    ("adamw", {"lr_mult": {3: 2.0}}, "lr_mult"),
    ("adamw", {"layer_decay": "0.5"}, "layer_decay"),
    ("adamw", {"layer_decay": 0.0}, "layer_decay"),
    ("adamw", {"layer_decay": 1.5}, "layer_decay"),
    ("adamw", {"layer_decay": NAN}, "layer_decay"),
    ("adamw", {"no_decay": 5}, "no_decay"),
    ("adamw", {"no_decay": ["bias", 3]}, "no_decay"),
    ("sgd", {"momentum": "x"}, "momentum"),
    ("adam", {"eps": "tiny"}, "eps"),
    ("adam", {"maximize": "yes"}, "maximize"),
    ("lion", {"impl": 3}, "impl"),
    ("lion", {"lr": INF}, "lr"),
    ("nsgd", {"momentum": NAN}, "momentum"),
])
def test_bad_values_are_one_line_errors_naming_the_argument(name: str, kwargs: dict,
                                                            word: str) -> None:
    lr = kwargs.pop("lr", 0.1)
    with pytest.raises(LrlabError) as info:
        build_optimizer(name, Net(), lr=lr, **kwargs)
    msg = str(info.value)
    assert word in msg and f"{name!r}" in msg and "\n" not in msg, msg


def test_no_decay_given_as_one_string_is_one_pattern() -> None:
    """A bare string used to be iterated letter by letter ('h', 'e', ...), matching nothing."""
    groups = _by_name(param_groups(Net(), 0.1, no_decay="head.*"))
    assert groups["head.weight"]["weight_decay"] == 0.0
    assert groups["conv.weight"]["weight_decay"] == 0.1
    opt = build_optimizer("adamw", Net(), lr=0.1, weight_decay=0.1, no_decay="conv.weight")
    no_decay = {n for g in opt.param_groups if g["weight_decay"] == 0.0 for n in g["param_names"]}
    assert "conv.weight" in no_decay and "head.weight" not in no_decay


def test_group_options_need_a_model() -> None:
    params = [nn.Parameter(torch.zeros(2, 2))]
    for kwargs in ({"no_decay": "x"}, {"lr_mult": {"x": 2.0}}, {"layer_decay": 0.5},
                   {"layer_id_fn": lambda n: 0}):
        with pytest.raises(LrlabError, match="need a model"):
            build_optimizer("sgd", params, lr=0.1, **kwargs)


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
