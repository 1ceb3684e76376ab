"""Lion: three execution paths against each other and against an element-wise reference."""

from __future__ import annotations

import copy
import random

import pytest
import torch

from lrlab.errors import LrlabError
from lrlab.optim import lion as lion_mod
from lrlab.optim.lion import Lion

SHAPES = [(3, 4), (5,), (2, 3, 2), (7,)]
# three groups: (lr, wd, betas, maximize, tensor indices)
GROUPS = [
    (0.01, 0.1, (0.9, 0.99), False, [0, 1]),
    (0.003, 0.0, (0.8, 0.95), False, [2]),
    (0.02, 0.5, (0.5, 0.9), True, [3]),
]
STEPS = 100


def _problem(seed: int = 0) -> tuple[list[list[float]], list[list[float]], list[list[float]]]:
    """Initial params, curvature a > 0 and targets t (flat lists); loss = sum a (p - t)^2."""
    rng = random.Random(seed)
    sizes = [int(torch.Size(s).numel()) for s in SHAPES]
    p0 = [[rng.gauss(0, 1) for _ in range(n)] for n in sizes]
    a = [[rng.uniform(0.1, 2.0) for _ in range(n)] for n in sizes]
    t = [[rng.gauss(0, 1) for _ in range(n)] for n in sizes]
    return p0, a, t


def _sign(x: float) -> float:
    return float((x > 0) - (x < 0))


def _reference(steps: int, seed: int = 0) -> list[list[float]]:
    """Lion written out from the paper's equations, one float at a time."""
    p, a, t = _problem(seed)
    p = [list(x) for x in p]
    m = [[0.0] * len(x) for x in p]
    for _ in range(steps):
        for lr, wd, (b1, b2), maximize, idx in GROUPS:
            for i in idx:
                for j in range(len(p[i])):
                    g = 2.0 * a[i][j] * (p[i][j] - t[i][j])
                    if maximize:
                        g = -g
                    c = b1 * m[i][j] + (1 - b1) * g
                    p[i][j] = p[i][j] * (1 - lr * wd)
                    p[i][j] = p[i][j] - lr * _sign(c)
                    m[i][j] = b2 * m[i][j] + (1 - b2) * g
    return p


def _torch_problem(seed: int = 0, dtype: torch.dtype = torch.float64):
    p0, a, t = _problem(seed)
    params = [torch.nn.Parameter(torch.tensor(x, dtype=dtype).reshape(s))
              for x, s in zip(p0, SHAPES)]
    at = [torch.tensor(x, dtype=dtype).reshape(s) for x, s in zip(a, SHAPES)]
    tt = [torch.tensor(x, dtype=dtype).reshape(s) for x, s in zip(t, SHAPES)]
    return params, at, tt


def _make(params, impl: str, lr_tensor: bool = False) -> Lion:
    groups = []
    for lr, wd, betas, maximize, idx in GROUPS:
        groups.append({"params": [params[i] for i in idx],
                       "lr": torch.tensor(lr) if lr_tensor else lr,
                       "weight_decay": wd, "betas": betas, "maximize": maximize})
    return Lion(groups, impl=impl)


def _run(opt: Lion, params, a, t, steps: int) -> None:
    for _ in range(steps):
        for p, ai, ti in zip(params, a, t):
            p.grad = 2.0 * ai * (p.detach() - ti)
        opt.step()


def _flat(params) -> list[list[float]]:
    return [p.detach().reshape(-1).tolist() for p in params]


def _close(x: list[list[float]], y: list[list[float]], tol: float = 1e-6) -> None:
    for u, v in zip(x, y):
        assert len(u) == len(v)
        for a, b in zip(u, v):
            assert abs(a - b) <= tol, (a, b)


@pytest.fixture(scope="module")
def reference() -> list[list[float]]:
    return _reference(STEPS)


@pytest.mark.parametrize("impl", ["single", "foreach", "fused"])
def test_paths_match_reference(impl: str, reference) -> None:
    params, a, t = _torch_problem()
    opt = _make(params, impl)
    _run(opt, params, a, t, STEPS)
    _close(_flat(params), reference)


def test_foreach_cache_blocks_match_reference(monkeypatch, reference) -> None:
    monkeypatch.setattr(lion_mod, "CPU_BLOCK_NUMEL", 5)  # forces splitting and packing
    params, a, t = _torch_problem()
    _run(_make(params, "foreach"), params, a, t, STEPS)
    _close(_flat(params), reference)


def test_paths_agree_in_float32() -> None:
    results = []
    for impl in ("single", "foreach", "fused"):
        params, a, t = _torch_problem(seed=3, dtype=torch.float32)
        _run(_make(params, impl), params, a, t, 30)
        results.append(_flat(params))
    _close(results[0], results[1], 1e-6)
    _close(results[0], results[2], 1e-6)


@pytest.mark.parametrize("impl", ["single", "foreach", "fused"])
def test_tensor_lr(impl: str, reference) -> None:
    params, a, t = _torch_problem()
    opt = _make(params, impl, lr_tensor=True)
    _run(opt, params, a, t, STEPS)
    _close(_flat(params), reference)


@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_tensor_lr_updated_in_place(impl: str) -> None:
    params, a, t = _torch_problem()
    lr = torch.tensor(0.0, dtype=torch.float64)
    opt = Lion(params, lr=lr, impl=impl)
    before = _flat(params)
    _run(opt, params, a, t, 1)
    _close(_flat(params), before, 0.0)  # lr 0: nothing moves
    lr.fill_(0.5)
    _run(opt, params, a, t, 1)
    moved = [abs(x - y) for u, v in zip(_flat(params), before) for x, y in zip(u, v)]
    assert max(moved) == pytest.approx(0.5)


@pytest.mark.parametrize("impl", ["single", "foreach", "fused"])
def test_state_dict_round_trip(impl: str, reference) -> None:
    params, a, t = _torch_problem()
    opt = _make(params, impl)
    _run(opt, params, a, t, 50)
    saved_params = [p.detach().clone() for p in params]
    saved_state = copy.deepcopy(opt.state_dict())

    fresh = [torch.nn.Parameter(x.clone()) for x in saved_params]
    opt2 = _make(fresh, impl)
    opt2.load_state_dict(saved_state)
    _run(opt2, fresh, a, t, STEPS - 50)
    _close(_flat(fresh), reference)


def test_sparse_gradient_is_an_error() -> None:
    emb = torch.nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    opt = Lion(emb.parameters(), lr=0.1, impl="single")
    with pytest.raises(LrlabError, match="sparse") as info:
        opt.step()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, word", [
    ({"lr": -1.0}, "lr"),
    ({"betas": (1.0, 0.99)}, "betas"),
    ({"betas": (0.9, -0.1)}, "betas"),
    ({"betas": (0.9, 1.5)}, "betas"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"impl": "triton"}, "impl"),
    ({"lr": float("inf")}, "lr"),
    ({"lr": True}, "lr"),
    ({"lr": "0.1"}, "lr"),
    ({"betas": "ab"}, "betas"),
    ({"betas": (0.9,)}, "betas"),
    ({"betas": (0.9, "x")}, "betas"),
    ({"weight_decay": float("inf")}, "weight_decay"),
])
def test_invalid_hyperparameters(kwargs: dict, word: str) -> None:
    p = torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(LrlabError, match=word) as info:
        Lion([p], **kwargs)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_invalid_group_hyperparameters() -> None:
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(LrlabError, match="lr"):
        Lion([{"params": [p]}, {"params": [q], "lr": -0.5}], lr=0.1)


def test_auto_uses_foreach_for_small_models_and_fused_for_large() -> None:
    opt = Lion([torch.nn.Parameter(torch.zeros(10))])
    assert opt.resolve_impl() == "foreach"
    assert opt.resolve_impl(numel=lion_mod.AUTO_FUSED_MIN_NUMEL) == "fused"


def test_fused_falls_back_when_compile_fails(monkeypatch, reference) -> None:
    def broken():
        def fn(*args):
            raise RuntimeError("no compiler here")
        return fn

    monkeypatch.setattr(lion_mod, "_compiled_lists", broken)
    params, a, t = _torch_problem()
    opt = _make(params, "fused")
    with pytest.warns(RuntimeWarning, match="foreach"):
        _run(opt, params, a, t, 1)
    assert opt.resolve_impl() == "foreach"
    _run(opt, params, a, t, STEPS - 1)
    _close(_flat(params), reference)


def test_params_without_grad_are_skipped() -> None:
    p, q = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = Lion([p, q], lr=0.1, impl="foreach")
    opt.step()
    assert torch.equal(q.detach(), torch.ones(3))
    assert torch.allclose(p.detach(), torch.full((3,), 0.9))
    assert q not in opt.state


# ------------------------------------------------------------- non-contiguous tensors
# Dyadic problem: params k/8, integer gradients in [-3, 3] (zeros included, so sign(0) = 0
# is exercised), betas (1/2, 3/4), lr 1/8, weight decay 1/2 (p *= 15/16). Every
# intermediate of three steps has a few significant bits, so float32 computes all of them
# without rounding: the single path, the foreach path and the float64 formula below must
# agree bit for bit, and any element updated with another element's gradient or momentum
# (the failure mode of cutting tensors into blocks) shows up as a mismatch.
EXACT = {"lr": 0.125, "weight_decay": 0.5, "betas": (0.5, 0.75)}
EXACT_STEPS = 3


def _dyadic(shape: tuple[int, ...], seed: int, low: int, high: int, scale: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(low, high + 1, shape, generator=gen).to(torch.float32) * scale


def _channels_last(shape: tuple[int, ...]):
    return lambda x: x.reshape(shape).to(memory_format=torch.channels_last)


def _transposed(rows: int, cols: int):
    return lambda x: x.reshape(rows, cols).t()


def _permuted_as_strided(a: int, b: int, c: int):
    # dense, element (i, j, k) at storage offset j*a*c + k*a + i
    return lambda x: x.as_strided((a, b, c), (1, a * c, a))


def _gappy(rows: int, cols: int):
    # not dense: the left half of a wider matrix, rows 2*cols apart (cannot be flattened)
    return lambda x: torch.cat([x.reshape(rows, cols), torch.zeros(rows, cols)], 1)[:, :cols]


LAYOUTS = {  # name: (numel, maker); the large ones exceed CPU_BLOCK_NUMEL = 2**19
    "channels-last 256x256x3x3": (256 * 256 * 9, _channels_last((256, 256, 3, 3))),
    "channels-last 8x4x3x3": (8 * 4 * 9, _channels_last((8, 4, 3, 3))),
    "transposed 768x1024": (768 * 1024, _transposed(768, 1024)),
    "transposed 5x7": (35, _transposed(5, 7)),
    "as_strided permuted 64x96x128": (64 * 96 * 128, _permuted_as_strided(64, 96, 128)),
    "as_strided permuted 2x3x4": (24, _permuted_as_strided(2, 3, 4)),
    "strided slice 600x1000": (600 * 1000, _gappy(600, 1000)),
}


def _layout_problem(maker, numel: int, grad_maker=None):
    p = torch.nn.Parameter(maker(_dyadic((numel,), 0, -512, 512, 0.125)))
    grads = [(grad_maker or maker)(_dyadic((numel,), 10 + s, -3, 3, 1.0))
             for s in range(EXACT_STEPS)]
    return p, grads


def _formula(p0: torch.Tensor, grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Lion's update (Chen et al. 2023, Algorithm 2) in float64 on contiguous copies."""
    lr, wd, (b1, b2) = EXACT["lr"], EXACT["weight_decay"], EXACT["betas"]
    p = p0.detach().double().contiguous()
    m = torch.zeros_like(p)
    for g in grads:
        g = g.double().contiguous()
        p = p * (1 - lr * wd)
        c = b1 * m + (1 - b1) * g
        p = p - lr * torch.sign(c)
        m = b2 * m + (1 - b2) * g
    return p, m


def _run_layout(impl: str, p: torch.nn.Parameter, grads: list[torch.Tensor]) -> Lion:
    opt = Lion([p], **EXACT, impl=impl)
    for g in grads:
        p.grad = g
        opt.step()
    return opt


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_foreach_non_contiguous_matches_single_and_formula(layout: str) -> None:
    numel, maker = LAYOUTS[layout]
    runs = {}
    for impl in ("single", "foreach"):
        p, grads = _layout_problem(maker, numel)
        p0, stride = p.detach().clone(), p.stride()
        opt = _run_layout(impl, p, grads)
        runs[impl] = (p.detach(), opt.state[p]["exp_avg"])
        assert p.stride() == stride  # updated in place, layout kept
    p_ref, m_ref = _formula(p0, grads)
    assert torch.equal(runs["foreach"][0], runs["single"][0])
    assert torch.equal(runs["foreach"][1], runs["single"][1])
    assert torch.equal(runs["foreach"][0].double(), p_ref)
    assert torch.equal(runs["foreach"][1].double(), m_ref)


def test_foreach_grad_layout_differs_from_param() -> None:
    """A channels-last parameter with a contiguous gradient (assigned by hand)."""
    numel, maker = LAYOUTS["channels-last 256x256x3x3"]
    p, grads = _layout_problem(maker, numel, grad_maker=lambda x: x.reshape(256, 256, 3, 3))
    assert not grads[0].is_contiguous(memory_format=torch.channels_last)
    p0 = p.detach().clone()
    _run_layout("foreach", p, grads)
    assert torch.equal(p.detach().double(), _formula(p0, grads)[0])


def test_foreach_mixed_layouts_in_one_step() -> None:
    """All layouts in one optimizer, so small ones are packed into blocks beside slices."""
    params, all_grads, refs = [], [], []
    for numel, maker in LAYOUTS.values():
        p, grads = _layout_problem(maker, numel)
        refs.append(_formula(p.detach(), grads)[0])
        params.append(p)
        all_grads.append(grads)
    opt = Lion(params, **EXACT, impl="foreach")
    for s in range(EXACT_STEPS):
        for p, grads in zip(params, all_grads):
            p.grad = grads[s]
        opt.step()
    for p, ref in zip(params, refs):
        assert torch.equal(p.detach().double(), ref)


def test_fused_non_contiguous_matches_formula() -> None:
    makers = [_channels_last((8, 4, 3, 3)), _transposed(5, 7), _permuted_as_strided(2, 3, 4),
              _gappy(6, 10)]
    sizes = [8 * 4 * 9, 35, 24, 60]
    params, all_grads, refs = [], [], []
    for numel, maker in zip(sizes, makers):
        p, grads = _layout_problem(maker, numel)
        refs.append(_formula(p.detach(), grads)[0])
        params.append(p)
        all_grads.append(grads)
    opt = Lion(params, **EXACT, impl="fused")
    for s in range(EXACT_STEPS):
        for p, grads in zip(params, all_grads):
            p.grad = grads[s]
        opt.step()
    assert opt.resolve_impl() == "fused"
    for p, ref in zip(params, refs):
        assert torch.equal(p.detach().double(), ref)


def test_auto_on_a_channels_last_conv_trained_by_autograd() -> None:
    """The reported crash: impl='auto' picks foreach below 2**20 parameters."""
    torch.manual_seed(0)
    convs = [torch.nn.Conv2d(256, 256, 3).to(memory_format=torch.channels_last)
             for _ in range(2)]
    convs[1].load_state_dict(convs[0].state_dict())
    x = torch.randn(1, 256, 5, 5).to(memory_format=torch.channels_last)
    opts = [Lion(convs[0].parameters(), lr=1e-3, weight_decay=0.1, impl="auto"),
            Lion(convs[1].parameters(), lr=1e-3, weight_decay=0.1, impl="single")]
    assert opts[0].resolve_impl() == "foreach"
    assert convs[0].weight.numel() > lion_mod.CPU_BLOCK_NUMEL
    for conv, opt in zip(convs, opts):
        for _ in range(2):
            conv(x).square().mean().backward()
            opt.step()
            opt.zero_grad()
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # the same kernels on the same values (see the dyadic tests for the exact argument);
    # a float tolerance guards against a vectorised and a scalar tail rounding differently
    torch.testing.assert_close(convs[0].weight, convs[1].weight)
    torch.testing.assert_close(opts[0].state[convs[0].weight]["exp_avg"],
                               opts[1].state[convs[1].weight]["exp_avg"])


# ------------------------------------------------------------------ non-finite gradients
@pytest.mark.parametrize("impl", ["single", "foreach", "fused"])
def test_non_finite_gradient_turns_its_weights_nan(impl: str) -> None:
    """torch.sign(nan) is 0: a plain Lion would freeze these coordinates silently (their
    momentum stays NaN, every later update is 0). Ours makes them NaN, so the next loss is
    NaN and the trainer's divergence check stops the run."""
    p = torch.nn.Parameter(torch.ones(4))
    q = torch.nn.Parameter(torch.ones(2))
    lr, wd = 0.125, 0.5
    opt = Lion([p, q], lr=lr, weight_decay=wd, impl=impl)
    p.grad = torch.tensor([float("nan"), float("inf"), -float("inf"), -2.0])
    q.grad = torch.tensor([3.0, -1.0])
    opt.step()
    assert torch.isnan(p.detach()[:3]).all()
    decayed = 1.0 * (1 - lr * wd)
    assert p.detach()[3].item() == decayed + lr  # sign(-2) = -1: moves up by lr
    assert q.detach().tolist() == [decayed - lr, decayed + lr]
    for _ in range(2):  # later finite gradients never bring the poisoned weights back
        p.grad, q.grad = torch.ones(4), torch.ones(2)
        opt.step()
        assert torch.isnan(p.detach()[:3]).all()
        assert torch.isfinite(q.detach()).all()
    model_out = torch.nn.functional.linear(torch.ones(1, 4), p.detach().reshape(1, 4))
    assert torch.isnan(model_out).all()
