"""Sharpness by power iteration against dense Hessians built here, and the stability thresholds
of SGD, momentum and Adam against their formulas and against simulated quadratics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrlab.diagnostics import SharpnessResult, sharpness, stability_threshold
from lrlab.errors import LrlabError
from lrlab.optim import AdamNoBias, Lion

D64 = torch.float64


def _least_squares(n: int, d: int, seed: int, scale: torch.Tensor | None = None):
    """A linear model without bias, its data and ``H = 2 XᵀX / n`` of the mean squared error."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=D64)
    if scale is not None:
        x = x * scale
    y = torch.randn(n, 1, generator=g, dtype=D64)
    model = nn.Linear(d, 1, bias=False).to(D64)
    return model, (x, y), 2.0 * x.T @ x / n


def _flat_hessian(model: nn.Module, loss_fn, batch) -> torch.Tensor:
    """The dense Hessian of the loss over the flattened trainable parameters."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for n, p in model.named_parameters() if p.requires_grad]
    flat0 = torch.cat([p.detach().reshape(-1) for n, p in model.named_parameters()
                       if p.requires_grad])

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        tensors, i = {}, 0
        for name, shape in zip(names, shapes):
            k = math.prod(shape)
            tensors[name] = flat[i:i + k].reshape(shape)
            i += k
        return loss_fn(torch.func.functional_call(model, tensors, (batch[0],)), batch[1])

    return torch.autograd.functional.hessian(loss_of, flat0)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ------------------------------------------------------------------- least squares
@pytest.mark.parametrize("seed", range(8))
def test_least_squares_random_design_with_defaults(seed):
    """Within 1 % when the top eigenvalue stands out (λ_2/λ_1 < 0.95); when the top two are
    closer than that, power iteration may stop between them (seed 1: 0.981)."""
    model, batch, h = _least_squares(64, 10, seed)
    lam = torch.linalg.eigvalsh(h)
    r = sharpness(model, F.mse_loss, batch)
    assert isinstance(r, SharpnessResult)
    assert r.value <= lam[-1].item() * (1 + 1e-12)  # a Rayleigh quotient never exceeds λ_max
    if lam[-2] / lam[-1] < 0.95:
        assert _rel(r.value, lam[-1].item()) < 0.01
    else:
        assert r.value >= 0.99 * lam[-2].item()
    assert r.hvps == r.iters <= 100


def test_least_squares_separated_spectrum_converges_fast():
    scale = torch.tensor([3.0, 2.0, 1.0, 1.0, 1.0, 0.5], dtype=D64)
    model, batch, h = _least_squares(200, 6, 5, scale)
    lam = torch.linalg.eigvalsh(h)
    assert lam[-2] / lam[-1] < 0.6  # the shape of problem this test is about
    r = sharpness(model, F.mse_loss, batch, iters=20)
    assert r.converged and r.iters < 20
    assert _rel(r.value, lam[-1].item()) < 1e-3


def test_frozen_parameters_are_skipped():
    """Only the head trains: H = 2 ZᵀZ / n with Z the frozen layer's features."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(50, 4, generator=g, dtype=D64), torch.randn(50, 1, generator=g, dtype=D64)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1, bias=False)).to(D64)
    for p in model[0].parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        z = model[1](model[0](x))
    lam = torch.linalg.eigvalsh(2.0 * z.T @ z / 50).max().item()
    assert _rel(sharpness(model, F.mse_loss, (x, y)).value, lam) < 0.01


# ------------------------------------------------------------------- small network
def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(D64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tanh_mlp_against_full_hessian(seed):
    model = _mlp(seed)
    g = torch.Generator().manual_seed(10 + seed)
    x, y = torch.randn(40, 3, generator=g, dtype=D64) * 2, torch.randint(0, 2, (40,), generator=g)
    h = _flat_hessian(model, F.cross_entropy, (x, y))
    assert h.shape == (26, 26)
    lam = torch.linalg.eigvalsh(h).max().item()  # largest algebraic
    r = sharpness(model, F.cross_entropy, (x, y))
    assert _rel(r.value, lam) < 0.01


class _Quadratic(nn.Module):
    """``L(θ) = ½ θᵀAθ`` with ``A`` passed as the batch's x: its Hessian is A."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.linspace(-1.0, 1.0, n, dtype=D64))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.theta @ a @ self.theta


def _with_eigenvalues(values: list[float], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(values), len(values), generator=g, dtype=D64))
    return q @ torch.diag(torch.tensor(values, dtype=D64)) @ q.T


def _identity_loss(out: torch.Tensor, y: object) -> torch.Tensor:
    return out


@pytest.mark.parametrize("values, top", [([-5.0, 3.0, 1.0], 3.0),
                                         ([-5.0, -3.0, -1.0], -1.0),
                                         ([-2.0, 3.0, 1.0], 3.0)])
def test_largest_algebraic_when_a_negative_eigenvalue_dominates(values, top):
    a = _with_eigenvalues(values)
    r = sharpness(_Quadratic(3), _identity_loss, (a, None))
    assert r.converged
    assert abs(r.value - top) < 0.01 * abs(top)
    if min(values) < -max(values):  # the second, shifted run was needed
        assert r.hvps > r.iters
    else:
        assert r.hvps == r.iters


def test_first_run_cut_off_mid_swing_is_shifted_again():
    """|λ_min| ≈ λ_max: four steps leave the first run's μ between (λ_min+λ_max)/2 and 0 (this
    seed), where H - μI is not positive semi-definite; a second shift finds λ_max."""
    a = _with_eigenvalues([-1.0, 0.99, 0.2])
    r = sharpness(_Quadratic(3), _identity_loss, (a, None), iters=4, seed=23)
    assert r.hvps == 12  # three runs of 4: the scenario this test is about
    assert abs(r.value - 0.99) < 0.01


# ------------------------------------------------------------------ preconditioned
def _adam_denominator(grads: list[torch.Tensor], beta2: float, eps: float, *, bias: bool,
                      amsgrad: bool = False) -> torch.Tensor:
    """``sqrt(v̂) + ε`` from the gradients seen, written from Adam's recursion."""
    v = torch.zeros_like(grads[0])
    vmax = torch.zeros_like(grads[0])
    for g in grads:
        v = beta2 * v + (1 - beta2) * g * g
        vmax = torch.maximum(vmax, v)
    t = len(grads)
    used = vmax if amsgrad else v
    return (used / (1 - beta2 ** t) if bias else used).sqrt() + eps


@pytest.mark.parametrize("make, bias, amsgrad", [
    (lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.9, 0.95), eps=1e-3), True, False),
    (lambda p: torch.optim.AdamW(p, lr=0.05, betas=(0.8, 0.9), eps=1e-4, amsgrad=True),
     True, True),
    (lambda p: AdamNoBias(p, lr=0.05, betas=(0.9, 0.95), eps=1e-3), False, False),
])
def test_preconditioned_sharpness_against_dense_formula(make, bias, amsgrad):
    scale = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.25], dtype=D64)
    # the model's initial weights from a seed of their own, not from whatever the global RNG
    # holds after the tests that ran before (for some starts P^{-1} H happens to share H's top
    # eigenvalue, and the last check below would then depend on the test order)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, (x, y), _ = _least_squares(80, 5, 7, scale)
    opt = make(model.parameters())
    grads = []
    for step in range(3):  # different batches: different gradients each step
        sl = slice(20 * step, 20 * step + 40)
        opt.zero_grad()
        F.mse_loss(model(x[sl]), y[sl]).backward()
        grads.append(model.weight.grad.detach().clone().reshape(-1))
        opt.step()
    group = opt.param_groups[0]
    denom = _adam_denominator(grads, group["betas"][1], group["eps"], bias=bias, amsgrad=amsgrad)
    h = 2.0 * x.T @ x / 80  # the Hessian at the current weights, too (quadratic loss)
    d = denom.rsqrt()
    sym = d[:, None] * h * d[None, :]  # P^{-1/2} H P^{-1/2}
    lam = torch.linalg.eigvalsh(sym).max().item()
    # the same eigenvalue as the non-symmetric P^{-1} H
    assert _rel(torch.linalg.eigvals(h / denom[:, None]).real.max().item(), lam) < 1e-9
    r = sharpness(model, F.mse_loss, (x, y), preconditioner=opt)
    assert _rel(r.value, lam) < 0.01
    assert _rel(r.value, torch.linalg.eigvalsh(h).max().item()) > 0.1  # P matters here


# ----------------------------------------------------------------- leaves no trace
def test_model_grads_buffers_mode_and_rng_unchanged():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.3),
                          nn.Linear(8, 3))
    model.train()  # batch norm updates its running stats in forward, dropout draws a mask
    model[2].eval()  # a mixed state must survive
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    grads = {}
    for i, p in enumerate(model.parameters()):
        if i != 1:  # one parameter keeps grad None
            p.grad = torch.randn_like(p)
        grads[p] = p.grad
    params = [p.detach().clone() for p in model.parameters()]
    grad_values = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()

    r = sharpness(model, F.cross_entropy, (x, y), iters=5)
    assert math.isfinite(r.value)

    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == modes
    for p, before in zip(model.parameters(), params):
        assert torch.equal(p, before)
    for p, before in zip(model.parameters(), grad_values):
        assert p.grad is grads[p]  # the same object (or None)
        assert (p.grad is None and before is None) or torch.equal(p.grad, before)
    for b, before in zip(model.buffers(), buffers):
        assert torch.equal(b, before)
    # seeded: the same start vector, the same dropout mask (forked RNG) -> the same value
    assert sharpness(model, F.cross_entropy, (x, y), iters=5) == r
    model(x)  # the check above means something: a forward in train mode does use the RNG
    assert not torch.equal(torch.get_rng_state(), rng)


def test_eval_mode_is_kept():
    model = _mlp(0).eval()
    x, y = torch.randn(10, 3, dtype=D64), torch.randint(0, 2, (10,))
    sharpness(model, F.cross_entropy, (x, y), iters=3)
    assert not any(m.training for m in model.modules())


# ------------------------------------------------------------- stability threshold
def _diverges(opt_factory, curvature: float, steps: int = 1000) -> bool:
    """Run the optimizer on ``½ λ θ²`` and say whether ``|θ|`` grew (or overflowed)."""
    theta = nn.Parameter(torch.tensor([1.0], dtype=D64))
    opt = opt_factory([theta])
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * curvature * theta * theta).sum().backward()
        opt.step()
    return not abs(theta.item()) <= 1.0  # NaN after an overflow counts


@pytest.mark.parametrize("factory, formula", [
    (lambda p: torch.optim.SGD(p, lr=0.1), 2 / 0.1),
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), (2 + 2 * 0.9) / 0.1),
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.5), 3 / 0.5 / 0.1),
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
     (2 + 2 * 0.9) / (1 + 2 * 0.9) / 0.1),
    (lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=2.0), 2 / 0.1 - 2.0),
    (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1.0), 38 - 1.0),
])
def test_sgd_thresholds_formula_and_simulation(factory, formula):
    thr = stability_threshold(factory([nn.Parameter(torch.zeros(1))]))
    assert thr == pytest.approx(formula, rel=1e-12)
    assert not _diverges(factory, 0.97 * formula)
    assert _diverges(factory, 1.03 * formula)


def test_adam_thresholds_and_others():
    p = [nn.Parameter(torch.zeros(2))]
    assert stability_threshold(torch.optim.Adam(p, lr=0.01)) == pytest.approx(38 / 0.01)
    assert stability_threshold(torch.optim.AdamW(p, lr=1e-3, betas=(0.8, 0.999))) == \
        pytest.approx((2 + 1.6) / (0.2 * 1e-3))
    assert stability_threshold(AdamNoBias(p, lr=0.01)) == pytest.approx(3800)
    assert stability_threshold(torch.optim.RMSprop(p, lr=0.01)) is None
    assert stability_threshold(Lion(p, lr=0.01)) is None
    assert stability_threshold(torch.optim.SGD(p, lr=0.1, maximize=True)) is None


def test_threshold_lr_override_tensor_and_zero():
    p = [nn.Parameter(torch.zeros(2))]
    sgd = torch.optim.SGD(p, lr=torch.tensor(0.1))
    assert stability_threshold(sgd) == pytest.approx(20.0)
    assert stability_threshold(sgd, lr=0.5) == pytest.approx(4.0)
    assert stability_threshold(sgd, lr=torch.tensor(0.25)) == pytest.approx(8.0)
    assert stability_threshold(sgd, lr=0.0) == math.inf
    with pytest.raises(LrlabError, match="lr"):
        stability_threshold(sgd, lr=-1.0)


# --------------------------------------------------------------------------- errors
def test_errors():
    model, batch, _ = _least_squares(10, 3, 0)
    with pytest.raises(LrlabError, match="iters"):
        sharpness(model, F.mse_loss, batch, iters=0)
    with pytest.raises(LrlabError, match="tol"):
        sharpness(model, F.mse_loss, batch, tol=-1.0)
    with pytest.raises(LrlabError, match="pair"):
        sharpness(model, F.mse_loss, batch[0])
    x, y = batch
    with pytest.raises(LrlabError, match="not finite"):
        sharpness(model, F.mse_loss, (x, torch.full_like(y, math.nan)))
    with pytest.raises(LrlabError, match="one-element"):
        sharpness(model, lambda out, t: (out - t) ** 2, batch)
    frozen = nn.Linear(3, 1).requires_grad_(False)
    with pytest.raises(LrlabError, match="no trainable parameters"):
        sharpness(frozen, F.mse_loss, (x.float(), y.float()))


def test_preconditioner_errors():
    model, batch, _ = _least_squares(10, 3, 0)
    with pytest.raises(LrlabError, match="no state yet"):
        sharpness(model, F.mse_loss, batch, preconditioner=torch.optim.Adam(model.parameters()))
    for opt in (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                Lion(model.parameters(), lr=0.1), torch.optim.RMSprop(model.parameters())):
        opt.zero_grad()
        F.mse_loss(model(batch[0]), batch[1]).backward()
        opt.step()
        with pytest.raises(LrlabError, match="exp_avg_sq"):
            sharpness(model, F.mse_loss, batch, preconditioner=opt)
    other = torch.optim.Adam([nn.Parameter(torch.zeros(3, dtype=D64))])
    other.param_groups[0]["params"][0].grad = torch.ones(3, dtype=D64)
    other.step()
    with pytest.raises(LrlabError, match="not in the Adam preconditioner"):
        sharpness(model, F.mse_loss, batch, preconditioner=other)
