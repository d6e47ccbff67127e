"""MARTHE / HD / RTHO schedules against explicit recursions on least squares."""

import pytest
import torch

from bilevel_core import GradientDescent, real_time_hypergradients
from bilevel_core.schedules import marthe

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


def test_mu_one_is_rtho_with_delta_one_and_lr_never_negative():
    X, y, Xv, yv, batches = _data(seed=2)
    T, beta = 15, 0.01
    dyn = GradientDescent(lambda w, h, b: _loss(w[0], b), lr=lambda h: h[0])
    outer = lambda w, h: 0.5 * ((Xv @ w[0] - yv) ** 2).mean()  # noqa: E731
    lr_m = torch.tensor(0.05, dtype=DT)
    _, lrs = marthe((torch.zeros(5, dtype=DT),), lr_m, dyn, outer, T, beta=beta, mu=1.0,
                    batches=lambda t: batches[t])
    lr_r = torch.tensor(0.05, dtype=DT)
    rtho = [0.05]
    for _, (g,) in real_time_hypergradients((torch.zeros(5, dtype=DT),), (lr_r,), dyn, outer, T, every=1,
                                            batches=lambda t: batches[t]):
        lr_r.sub_(beta * g)
        rtho.append(float(lr_r))
    assert min(rtho) > 0  # the clip was inactive
    assert torch.allclose(torch.tensor(lrs, dtype=DT), torch.tensor(rtho, dtype=DT), rtol=1e-12)
    # a huge β drives the rate to the clip at 0, never below
    lr_big = torch.tensor(0.05, dtype=DT)
    _, lrs_big = marthe((torch.zeros(5, dtype=DT),), lr_big, dyn, lambda w, h: -outer(w, h), T, beta=1e3, mu=0.5,
                        batches=lambda t: batches[t])
    assert min(lrs_big) == 0.0 and all(v >= 0 for v in lrs_big)
