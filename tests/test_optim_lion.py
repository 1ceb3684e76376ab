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
