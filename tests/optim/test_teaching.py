"""AdamNoBias and NormalizedSGD against their formulas and against torch.optim.Adam."""

from __future__ import annotations

import math

import pytest
import torch

from lrlab.errors import LrlabError
from lrlab.optim import AdamNoBias, NormalizedSGD


def _grads(steps: int, shape=(4, 3), seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(steps)]


def test_adam_nobias_matches_formula() -> None:
    lr, (b1, b2), eps, wd = 0.01, (0.9, 0.999), 1e-8, 0.1
    p = torch.nn.Parameter(torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3))
    opt = AdamNoBias([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    x = p.detach().reshape(-1).tolist()
    m = [0.0] * 12
    v = [0.0] * 12
    for g in _grads(20):
        p.grad = g.clone()
        opt.step()
        for j, gj in enumerate(g.reshape(-1).tolist()):
            gj = gj + wd * x[j]
            m[j] = b1 * m[j] + (1 - b1) * gj
            v[j] = b2 * v[j] + (1 - b2) * gj * gj
            x[j] = x[j] - lr * m[j] / (math.sqrt(v[j]) + eps)
    assert p.detach().reshape(-1).tolist() == pytest.approx(x, abs=1e-12)


def test_adam_nobias_equals_adam_with_zero_betas() -> None:
    p = torch.nn.Parameter(torch.ones(4, 3, dtype=torch.float64))
    q = torch.nn.Parameter(torch.ones(4, 3, dtype=torch.float64))
    ours = AdamNoBias([p], lr=0.05, betas=(0.0, 0.0))
    theirs = torch.optim.Adam([q], lr=0.05, betas=(0.0, 0.0))
    for g in _grads(10):
        p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_adam_nobias_is_adam_rescaled_by_bias_correction() -> None:
    """With eps=0 and the same gradients, Adam's step = ours * sqrt(1-b2^t)/(1-b1^t)."""
    b1, b2, lr = 0.6, 0.8, 0.01
    p = torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.float64))
    q = torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.float64))
    ours = AdamNoBias([p], lr=lr, betas=(b1, b2), eps=0.0)
    theirs = torch.optim.Adam([q], lr=lr, betas=(b1, b2), eps=0.0)
    for t, g in enumerate(_grads(60), start=1):
        p0, q0 = p.detach().clone(), q.detach().clone()
        p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
        factor = math.sqrt(1 - b2**t) / (1 - b1**t)
        torch.testing.assert_close((p - p0) * factor, q - q0, rtol=1e-9, atol=1e-15)
    # after many steps the correction -> 1 and the two steps coincide
    torch.testing.assert_close(p - p0, q - q0, rtol=1e-5, atol=0)


def test_nsgd_matches_formula() -> None:
    lr, mu, eps, wd = 0.1, 0.9, 1e-8, 0.05
    w = torch.nn.Parameter(torch.ones(4, 3, dtype=torch.float64))
    b = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    opt = NormalizedSGD([w, b], lr=lr, momentum=mu, eps=eps, weight_decay=wd)
    ref = {"w": w.detach().reshape(-1).tolist(), "b": b.detach().reshape(-1).tolist()}
    buf = {"w": [0.0] * 12, "b": [0.0] * 5}
    gws, gbs = _grads(15, (4, 3), 1), _grads(15, (5,), 2)
    for k, (gw, gb) in enumerate(zip(gws, gbs)):
        if k == 3:
            gb = torch.zeros(5, dtype=torch.float64)  # zero gradient: no NaN, no push
        w.grad, b.grad = gw.clone(), gb.clone()
        opt.step()
        for key, g in (("w", gw), ("b", gb)):
            flat = g.reshape(-1).tolist()
            norm = math.sqrt(sum(x * x for x in flat))
            for j, gj in enumerate(flat):
                buf[key][j] = mu * buf[key][j] + gj / (norm + eps)
                ref[key][j] = ref[key][j] * (1 - lr * wd) - lr * buf[key][j]
    assert w.detach().reshape(-1).tolist() == pytest.approx(ref["w"], abs=1e-12)
    assert b.detach().reshape(-1).tolist() == pytest.approx(ref["b"], abs=1e-12)


def test_nsgd_step_has_norm_lr_without_momentum() -> None:
    p = torch.nn.Parameter(torch.zeros(10, dtype=torch.float64))
    opt = NormalizedSGD([p], lr=0.3, momentum=0.0, eps=0.0)
    p.grad = torch.arange(10, dtype=torch.float64) * 1e3
    opt.step()
    assert torch.linalg.vector_norm(p.detach()).item() == pytest.approx(0.3)


@pytest.mark.parametrize("cls, kwargs", [
    (AdamNoBias, {"lr": -1.0}),
    (AdamNoBias, {"betas": (0.9, 1.0)}),
    (AdamNoBias, {"eps": -1.0}),
    (NormalizedSGD, {"momentum": 1.2}),
    (NormalizedSGD, {"weight_decay": -1.0}),
    (AdamNoBias, {"lr": "0.1"}),
    (AdamNoBias, {"lr": float("inf")}),
    (AdamNoBias, {"betas": "ab"}),
    (NormalizedSGD, {"lr": True}),
    (NormalizedSGD, {"momentum": float("nan")}),
])
def test_invalid_hyperparameters(cls, kwargs) -> None:
    with pytest.raises(LrlabError) as info:
        cls([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    assert "\n" not in str(info.value)
    assert any(key.split("[")[0] in str(info.value) for key in kwargs)


def test_first_uncorrected_adam_step_is_too_large() -> None:
    """m0 = v0 = 0: the first step without bias correction is (1-b1) g / sqrt((1-b2) g^2)
    = (1-b1)/sqrt(1-b2) times Adam's g/|g|: 0.1/sqrt(0.001) = 3.16x for the default betas."""
    b1, b2 = 0.9, 0.999
    ratio = (1 - b1) / math.sqrt(1 - b2)
    assert ratio == pytest.approx(3.1623, abs=1e-4) and ratio > 1  # too large, not too small
    p = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    q = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    g = torch.tensor([1e-3, -0.5, 2.0, 7.0, -30.0], dtype=torch.float64)
    ours = AdamNoBias([p], lr=0.01, betas=(b1, b2), eps=0.0)
    adam = torch.optim.Adam([q], lr=0.01, betas=(b1, b2), eps=0.0)
    p.grad, q.grad = g.clone(), g.clone()
    ours.step()
    adam.step()
    torch.testing.assert_close(q.detach(), -0.01 * torch.sign(g), rtol=1e-12, atol=0)
    expected = torch.full((5,), ratio, dtype=torch.float64)
    torch.testing.assert_close(p.detach() / q.detach(), expected, rtol=1e-12, atol=0)


def test_docs_say_the_early_steps_are_too_large() -> None:
    """The module doc once said 'too small' while the class doc said 3.16x too large."""
    from lrlab.optim import teaching

    for doc in (teaching.__doc__, AdamNoBias.__doc__):
        text = " ".join(doc.replace("*", "").split())
        assert "3.16" in text and "too large" in text
        assert "too small" not in text.replace("not too small", "")
