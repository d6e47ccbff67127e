"""Implicit methods against the exact bilevel gradient ∇f at the inner solution."""

import pytest
import torch

from bilevel_core import GradientDescent, hypergradient

from .problems import DT, central_difference, logistic_data, logistic_inner, logistic_outer, rel_err

IMPLICIT = ["cg", "fixed_point", "neumann"]


def _ridge(seed: int = 0):
    """Thesis eq. 6.2 / Example 3.4: L(w) = ||y - X H w||² + Σ_i λ_i w_i² on learned features XH."""
    g = torch.Generator().manual_seed(seed)
    n, p, k = 30, 6, 4
    X = torch.randn(n, p, generator=g, dtype=DT)
    H = torch.randn(p, k, generator=g, dtype=DT) / p**0.5
    y = torch.randn(n, generator=g, dtype=DT)
    Xv = torch.randn(n, p, generator=g, dtype=DT)
    yv = torch.randn(n, generator=g, dtype=DT)
    Z, Zv = X @ H, Xv @ H

    def inner(params, hparams):
        (w,) = params
        return ((y - Z @ w) ** 2).sum() + (hparams[0] * w * w).sum()

    def outer(params, hparams):
        (w,) = params
        return ((yv - Zv @ w) ** 2).sum()

    def solution(lam):
        return torch.linalg.solve(Z.T @ Z + torch.diag(lam), Z.T @ y)

    def exact_grad(lam):
        lam = lam.clone().requires_grad_(True)
        w = solution(lam)
        (g,) = torch.autograd.grad(outer((w,), (lam,)), lam)
        return g

    # Lipschitz constant of ∇L: 2 λ_max(ZᵀZ + Λ)
    lip = lambda lam: 2 * float(torch.linalg.eigvalsh(Z.T @ Z + torch.diag(lam)).max())  # noqa: E731
    return inner, outer, solution, exact_grad, lip


@pytest.mark.parametrize("method", IMPLICIT)
def test_ridge_closed_form(method):
    inner, outer, solution, exact_grad, lip = _ridge()
    lam = torch.tensor([0.5, 1.0, 2.0, 0.1], dtype=DT)
    eta = 1.0 / lip(lam)
    dyn = GradientDescent(inner, lr=eta)
    w_star = (solution(lam),)
    (g,) = hypergradient(w_star, (lam,), dyn, outer, 1, method=method, K=5000, tol=1e-14)
    assert rel_err((g,), (exact_grad(lam),)) < 1e-6


def _newton_solution(inner, hp, d, iters=50):
    w = torch.zeros(d, dtype=DT)
    for _ in range(iters):
        w = w.detach().requires_grad_(True)
        loss = inner((w,), hp)
        (g,) = torch.autograd.grad(loss, w, create_graph=True)
        Hm = torch.stack([torch.autograd.grad(g[i], w, retain_graph=True)[0] for i in range(d)])
        w = w - torch.linalg.solve(Hm, g)
    return w.detach()


@pytest.mark.parametrize("method", IMPLICIT)
def test_logistic_regression_solution_map(method):
    X, y, Xv, yv = logistic_data(seed=2)
    inner = logistic_inner(X, y)
    outer = logistic_outer(Xv, yv)
    hp = (torch.log(torch.tensor([0.1, 0.05, 0.2, 0.02], dtype=DT)),)

    def f(h):
        return float(outer((_newton_solution(inner, h, 4),), h))

    fd = central_difference(f, hp, eps=1e-5)
    w_star = (_newton_solution(inner, hp, 4),)
    dyn = GradientDescent(inner, lr=1.0)  # ∇L is at most ~ (||X||²/4n + max λ)-Lipschitz: η = 1 contracts
    g = hypergradient(w_star, hp, dyn, outer, 1, method=method, K=5000, tol=1e-14)
    assert rel_err(g, fd) < 1e-6


def test_implicit_gives_no_gradient_for_optimizer_settings():
    inner, outer, solution, exact_grad, lip = _ridge()
    lam = torch.tensor([0.5, 1.0, 2.0, 0.1], dtype=DT)
    lr = torch.tensor(0.5 / lip(lam), dtype=DT)
    dyn = GradientDescent(lambda w, h: inner(w, (h[0],)), lr=lambda h: h[1])
    w_star = (solution(lam),)
    g_lam, g_lr = hypergradient(
        w_star, (lam, lr), dyn, lambda w, h: outer(w, (h[0],)), 1, method="cg", K=200, tol=1e-14
    )
    assert float(g_lr) == 0.0
    assert rel_err((g_lam,), (exact_grad(lam),)) < 1e-6
    with pytest.raises(ValueError, match="fixed_point_lr"):
        hypergradient(w_star, (lam, lr), dyn, lambda w, h: outer(w, (h[0],)), 1, method="fixed_point")


def test_unrolled_converge_to_exact_as_T_grows():
    inner, outer, solution, exact_grad, lip = _ridge(seed=1)
    lam = torch.tensor([0.5, 1.0, 2.0, 0.1], dtype=DT)
    exact = (exact_grad(lam),)
    dyn = GradientDescent(inner, lr=1.0 / lip(lam))
    w0 = (torch.zeros(4, dtype=DT),)
    errors = []
    for T in (20, 200, 2000):
        rev = hypergradient(w0, (lam,), dyn, outer, T, method="reverse")
        fwd = hypergradient(w0, (lam,), dyn, outer, T, method="forward")
        assert rel_err(rev, fwd) < 1e-10
        errors.append(rel_err(rev, exact))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-6


def test_custom_fixed_point_map():
    inner, outer, solution, exact_grad, lip = _ridge()
    lam = torch.tensor([0.5, 1.0, 2.0, 0.1], dtype=DT)
    eta = 1.0 / lip(lam)
    dyn = GradientDescent(inner, lr=eta)

    def phi(params, hparams):
        (w,) = params
        (g,) = torch.autograd.grad(inner(params, hparams), w, create_graph=True)
        return (w - eta * g,)

    (g,) = hypergradient((solution(lam),), (lam,), dyn, outer, 1, method="fixed_point",
                         fixed_point_map=phi, K=5000, tol=1e-14)
    assert rel_err((g,), (exact_grad(lam),)) < 1e-6


@pytest.mark.parametrize("method", ["cg", "neumann", "fixed_point"])
def test_direct_term_included_in_implicit_hypergradients(method):
    """E depends on λ directly: ∇f = ∂_λE + ∂_λΦᵀ q. Inner L = ½‖w - Aλ‖² has w*(λ) = Aλ; with
    E = ½‖w - c‖² + ½‖λ‖², ∇f(λ) = Aᵀ(Aλ - c) + λ in closed form. Dropping the direct term λ is caught."""
    g = torch.Generator().manual_seed(7)
    A = torch.randn(5, 3, generator=g, dtype=DT)
    c = torch.randn(5, generator=g, dtype=DT)
    lam = torch.tensor([0.7, -1.2, 0.4], dtype=DT)

    def inner(w, hp):
        return 0.5 * ((w[0] - A @ hp[0]) ** 2).sum()

    def outer(w, hp):
        return 0.5 * ((w[0] - c) ** 2).sum() + 0.5 * (hp[0] ** 2).sum()

    (got,) = hypergradient((torch.zeros(5, dtype=DT),), (lam,), GradientDescent(inner, lr=0.5), outer, 80,
                           method=method, K=200)
    exact = A.T @ (A @ lam - c) + lam
    torch.testing.assert_close(got, exact, rtol=0, atol=1e-10)
    assert float((got - (exact - lam)).abs().max()) > 0.3  # the direct term matters here
