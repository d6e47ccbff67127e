"""MARTHE / HD / RTHO schedules against explicit recursions on least squares."""

import pytest
import torch

from bilevel_core import GradientDescent, Momentum
from bilevel_core.schedules import marthe

from .problems import assert_close

DT = torch.float64


def _data(seed=0, n=40, d=5, T=15):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=DT)
    y = X @ torch.randn(d, generator=g, dtype=DT) + 0.1 * torch.randn(n, generator=g, dtype=DT)
    Xv = torch.randn(n, d, generator=g, dtype=DT)
    yv = Xv @ torch.randn(d, generator=g, dtype=DT)
    idx = [torch.randperm(n, generator=g)[:10] for _ in range(T + 1)]
    return X, y, Xv, yv, [(X[i], y[i]) for i in idx]


def _loss(w, batch):
    Xb, yb = batch
    return 0.5 * ((Xb @ w - yb) ** 2).mean()


def _grad(w, batch):
    Xb, yb = batch
    return Xb.T @ (Xb @ w - yb) / Xb.size(0)


@pytest.mark.parametrize("mu", [0.0, 0.5, 1.0])
def test_marthe_matches_explicit_tangent_recursion(mu):
    """Z_t = μ (I - η_{t-1} H_t) Z_{t-1} - ∇L_t(w_{t-1}); η_t = max(η_{t-1} - β ∇E(w_t)ᵀ Z_t, 0)."""
    X, y, Xv, yv, batches = _data()
    T, beta, eta0 = 15, 0.05, 0.05
    dyn = GradientDescent(lambda w, h, b: _loss(w[0], b), lr=lambda h: h[0])
    outer = lambda w, h: 0.5 * ((Xv @ w[0] - yv) ** 2).mean()  # noqa: E731
    lr = torch.tensor(eta0, dtype=DT)
    state, lrs = marthe((torch.zeros(5, dtype=DT),), lr, dyn, outer, T, beta=beta, mu=mu,
                        batches=lambda t: batches[t])
    # explicit reference
    w = torch.zeros(5, dtype=DT)
    z = torch.zeros(5, dtype=DT)
    eta = eta0
    ref = [eta]
    for t in range(T):
        Xb, _ = batches[t]
        H = Xb.T @ Xb / Xb.size(0)
        g = _grad(w, batches[t])
        z = mu * (z - eta * H @ z) - g
        w = w - eta * g
        grad_e = Xv.T @ (Xv @ w - yv) / Xv.size(0)
        eta = max(eta - beta * float(grad_e @ z), 0.0)
        ref.append(eta)
    assert torch.allclose(torch.tensor(lrs, dtype=DT), torch.tensor(ref, dtype=DT), rtol=1e-10, atol=1e-14)
    assert torch.allclose(state.params[0], w, rtol=1e-10)


def test_mu_zero_is_hypergradient_descent():
    """With E_t = next mini-batch's loss, μ = 0 gives SGD-HD (Baydin et al., 2018)."""
    X, y, Xv, yv, batches = _data(seed=1)
    T, beta, eta0 = 15, 0.02, 0.05
    dyn = GradientDescent(lambda w, h, b: _loss(w[0], b), lr=lambda h: h[0])
    lr = torch.tensor(eta0, dtype=DT)
    state, lrs = marthe((torch.zeros(5, dtype=DT),), lr, dyn, lambda w, h, b: _loss(w[0], b), T, beta=beta,
                        mu=0.0, batches=lambda t: batches[t], outer_batches=lambda t: batches[t])
    w, eta, g_prev, hd = torch.zeros(5, dtype=DT), eta0, None, [eta0]
    for t in range(T):
        g = _grad(w, batches[t])
        if g_prev is not None:
            eta = max(eta + beta * float(g @ g_prev), 0.0)
            hd.append(eta)
        w = w - eta * g
        g_prev = g
    assert torch.allclose(torch.tensor(lrs[:T], dtype=DT), torch.tensor(hd, dtype=DT), rtol=1e-10)
    assert torch.allclose(state.params[0], w, rtol=1e-10)


KAPPA = 0.05


def _loss_nl(w: torch.Tensor, batch) -> torch.Tensor:
    """Least squares plus a quartic term, so the step's Jacobian A_t changes with w."""
    return _loss(w, batch) + 0.25 * KAPPA * (w**4).sum()


def _grad_nl(w: torch.Tensor, batch) -> torch.Tensor:
    return _grad(w, batch) + KAPPA * w**3


@pytest.mark.parametrize("kind", ["gd", "momentum"])
@pytest.mark.parametrize("mu", [0.5, 1.0])
def test_marthe_and_rtho_match_jacobian_tangent_recursion(kind, mu):
    """μ = 1 is RTHO, μ < 1 MARTHE, on a non-quadratic inner problem, GD and heavy ball (state s = (w, v)):
    against Z_t = μ A_t Z_{t-1} + B_t with A_t = ∂Φ_t/∂s and B_t = ∂Φ_t/∂η computed by
    torch.autograd.functional.jacobian of a hand-written step Φ_t(s, η), Δη_t = ∇E(w_t)ᵀ Z_t^w,
    η_t = max(η_{t-1} - β Δη_t, 0). No bilevel_core code in the reference."""
    X, y, Xv, yv, batches = _data(seed=3)
    T, eta0, m, d = 12, 0.05, 0.5, 5
    beta = 0.05 if kind == "gd" else 0.003
    inner = lambda w, h, b: _loss_nl(w[0], b)  # noqa: E731
    if kind == "gd":
        dyn = GradientDescent(inner, lr=lambda h: h[0])
    else:
        dyn = Momentum(inner, lr=lambda h: h[0], momentum=m)
    outer = lambda w, h: 0.5 * ((Xv @ w[0] - yv) ** 2).mean()  # noqa: E731
    lr = torch.tensor(eta0, dtype=DT)
    w0 = torch.full((d,), 0.3, dtype=DT)
    state, lrs = marthe((w0.clone(),), lr, dyn, outer, T, beta=beta, mu=mu, batches=lambda t: batches[t])

    def phi(s: torch.Tensor, eta: torch.Tensor, batch) -> torch.Tensor:
        w = s[:d]
        if kind == "gd":
            return w - eta * _grad_nl(w, batch)
        v = m * s[d:] + _grad_nl(w, batch)
        return torch.cat([w - eta * v, v])

    s = w0.clone() if kind == "gd" else torch.cat([w0, torch.zeros(d, dtype=DT)])
    z = torch.zeros_like(s)
    eta = torch.tensor(eta0, dtype=DT)
    ref = [eta0]
    for t in range(T):
        A, B = torch.autograd.functional.jacobian(lambda s_, e_, b=batches[t]: phi(s_, e_, b), (s, eta))
        z = mu * (A @ z) + B
        s = phi(s, eta, batches[t])
        grad_e = Xv.T @ (Xv @ s[:d] - yv) / Xv.size(0)
        eta = torch.clamp(eta - beta * (grad_e @ z[:d]), min=0.0)
        ref.append(float(eta))
    assert min(ref) > 0  # the clip stayed inactive: the comparison is on the recursion itself
    assert abs(ref[-1] - eta0) > 1e-3  # and the schedule moved
    assert_close(torch.tensor(lrs, dtype=DT), torch.tensor(ref, dtype=DT), rtol=1e-10, atol=1e-14)
    assert_close(state.params[0], s[:d], rtol=1e-10, atol=1e-14)


def test_marthe_learning_rate_is_clipped_at_zero():
    """A huge β drives the rate to the clip at 0, never below."""
    X, y, Xv, yv, batches = _data(seed=2)
    dyn = GradientDescent(lambda w, h, b: _loss(w[0], b), lr=lambda h: h[0])
    outer = lambda w, h: 0.5 * ((Xv @ w[0] - yv) ** 2).mean()  # noqa: E731
    lr_big = torch.tensor(0.05, dtype=DT)
    _, lrs_big = marthe((torch.zeros(5, dtype=DT),), lr_big, dyn, lambda w, h: -outer(w, h), 15, beta=1e3, mu=0.5,
                        batches=lambda t: batches[t])
    assert min(lrs_big) == 0.0 and all(v >= 0 for v in lrs_big)
    assert float(lr_big) == lrs_big[-1]  # the tensor was updated in place
