"""Reverse and forward hypergradients against each other and against finite differences."""

import pytest
import torch

from bilevel_core import Adam, GradientDescent, Momentum, hypergradient

from .problems import DT, assert_close, central_difference, logistic_data, logistic_inner, logistic_outer, rel_err

T = 25


def _setup(kind: str):
    X, y, Xv, yv = logistic_data()
    inner = logistic_inner(X, y)
    outer = logistic_outer(Xv, yv)
    l2 = torch.log(torch.tensor([0.1, 0.05, 0.2, 0.01], dtype=DT))
    lr = torch.tensor(0.3, dtype=DT)
    mom = torch.tensor(0.6, dtype=DT)
    if kind == "gd":
        dyn = GradientDescent(inner, lr=lambda h: h[1])
        hp = (l2, lr)
    elif kind == "momentum":
        dyn = Momentum(inner, lr=lambda h: h[1], momentum=lambda h: h[2])
        hp = (l2, lr, mom)
    else:
        dyn = Adam(inner, lr=lambda h: h[1] * 0.1, betas=(lambda h: h[2], 0.99))
        hp = (l2, lr, mom)
    w0 = (torch.zeros(4, dtype=DT),)
    return dyn, outer, hp, w0


def _f_T(dyn, outer, w0, T):
    """f_T(λ) by a plain, detached unrolled run."""

    def f(hp):
        state = dyn.init(w0, hp)
        for _ in range(T):
            state = dyn(state, hp, create_graph=False)
        return float(outer(state.params, hp))

    return f


@pytest.mark.parametrize("kind", ["gd", "momentum", "adam"])
def test_reverse_forward_finite_differences(kind):
    dyn, outer, hp, w0 = _setup(kind)
    rev = hypergradient(w0, hp, dyn, outer, T, method="reverse")
    fwd = hypergradient(w0, hp, dyn, outer, T, method="forward")
    fd = central_difference(_f_T(dyn, outer, w0, T), hp, eps=1e-6)
    assert rel_err(rev, fwd) < 1e-10
    assert rel_err(rev, fd) < 1e-6
    # every hyperparameter really receives a gradient
    assert all(float(g.abs().sum()) > 0 for g in rev)


def test_params0_callable_maml_style():
    """w_0 = Φ_0(λ): the hypergradient includes the dependence of the start on λ."""
    X, y, Xv, yv = logistic_data(seed=3)
    inner = logistic_inner(X, y)
    outer = logistic_outer(Xv, yv)
    dyn = GradientDescent(inner, lr=0.5)
    hp = (torch.log(torch.full((4,), 0.1, dtype=DT)), torch.tensor([0.3, -0.2, 0.1, 0.0], dtype=DT))

    def params0(h):
        return (h[1] * 1.0,)

    rev = hypergradient(params0, hp, dyn, outer, 10)
    fwd = hypergradient(params0, hp, dyn, outer, 10, method="forward")

    def f(h):
        state = dyn.init(params0(h), h)
        for _ in range(10):
            state = dyn(state, h, create_graph=False)
        return float(outer(state.params, h))

    fd = central_difference(f, hp)
    assert rel_err(rev, fwd) < 1e-10
    assert rel_err(rev, fd) < 1e-6
    assert float(rev[1].abs().sum()) > 0


def test_direct_term_included():
    """E depends on λ directly: ∂_λE = 2λ is part of the hypergradient in both modes. Evaluated at λ ≠ 0, where
    the direct term is not zero, so a mode that drops it fails (checked: without it the gradient is far off)."""
    X, y, Xv, yv = logistic_data(seed=1)
    inner = logistic_inner(X, y)
    base = logistic_outer(Xv, yv)

    def outer(params, hparams):
        return base(params, hparams) + (hparams[0] ** 2).sum()

    dyn = GradientDescent(inner, lr=0.5)
    lam = torch.tensor([0.3, -0.5, 0.8, -0.2], dtype=DT)
    hp = (lam,)
    w0 = (torch.zeros(4, dtype=DT),)
    rev = hypergradient(w0, hp, dyn, outer, 5)
    fwd = hypergradient(w0, hp, dyn, outer, 5, method="forward")
    fd = central_difference(_f_T(dyn, outer, w0, 5), hp)
    assert rel_err(rev, fd) < 1e-6 and rel_err(fwd, fd) < 1e-6
    # the indirect part alone (E without its λ term) plus 2λ is the whole; the indirect part alone is not
    (indirect,) = central_difference(_f_T(dyn, base, w0, 5), hp)
    assert_close(rev[0], indirect + 2 * lam, rtol=1e-6, atol=1e-9)
    assert rel_err((indirect,), fd) > 0.5


def test_hparams_in_place_of_user_tensors_untouched():
    """The call never writes .grad on the user's tensors and returns one gradient per hparam."""
    dyn, outer, hp, w0 = _setup("momentum")
    hp = tuple(h.clone().requires_grad_(True) for h in hp)
    grads = hypergradient(w0, hp, dyn, outer, 3)
    assert len(grads) == len(hp)
    assert all(g.shape == h.shape for g, h in zip(grads, hp))
    assert all(h.grad is None for h in hp)


def test_per_step_learning_rate_schedule():
    """LRS-OPT: one learning rate per step (PerStep); reverse = forward = finite differences, and a
    constant schedule reproduces the plain setting."""
    from bilevel_core import PerStep

    X, y, Xv, yv = logistic_data(seed=5)
    inner, outer = logistic_inner(X, y), logistic_outer(Xv, yv)
    steps = 8
    l2 = torch.log(torch.full((4,), 0.05, dtype=DT))
    log_lrs = torch.log(torch.linspace(0.5, 0.1, steps, dtype=DT))
    dyn = GradientDescent(inner, lr=PerStep(lambda h, t: torch.exp(h[1][t])))
    w0 = (torch.zeros(4, dtype=DT),)
    hp = (l2, log_lrs)
    rev = hypergradient(w0, hp, dyn, outer, steps, method="reverse")
    fwd = hypergradient(w0, hp, dyn, outer, steps, method="forward")
    fd = central_difference(_f_T(dyn, outer, w0, steps), hp, eps=1e-6)
    assert rel_err(rev, fwd) < 1e-10 and rel_err(rev, fd) < 1e-6
    assert bool((rev[1] != 0).all())  # every step's learning rate gets its own gradient
    const = GradientDescent(inner, lr=PerStep(lambda h, t: 0.3))
    plain = GradientDescent(inner, lr=0.3)
    assert _f_T(const, outer, w0, 5)(hp) == _f_T(plain, outer, w0, 5)(hp)
