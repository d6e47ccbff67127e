"""Truncated reverse mode, continuation through return_state, per-step batches, stop rules."""

import pytest
import torch

from bilevel_core import Adam, DynamicsState, GradientDescent, Momentum, hypergradient

from .problems import DT, central_difference, logistic_data, logistic_inner, logistic_outer, rel_err


def _problem(seed=0):
    X, y, Xv, yv = logistic_data(seed=seed)
    inner = logistic_inner(X, y)
    outer = logistic_outer(Xv, yv)
    hp = (torch.log(torch.tensor([0.3, 0.1, 0.2, 0.05], dtype=DT)),)
    return inner, outer, hp, (torch.zeros(4, dtype=DT),)


def test_truncate_T_equals_full_and_0_equals_direct_term():
    inner, outer_base, hp, w0 = _problem()

    def outer(params, hparams):  # has a direct term
        return outer_base(params, hparams) + 0.1 * (hparams[0] ** 2).sum()

    dyn = Momentum(inner, lr=0.5, momentum=0.5)
    T = 15
    full = hypergradient(w0, hp, dyn, outer, T)
    same = hypergradient(w0, hp, dyn, outer, T, truncate=T)
    assert rel_err(full, same) == 0.0
    g0, state = hypergradient(w0, hp, dyn, outer, T, truncate=0, return_state=True)
    lam = hp[0].clone().requires_grad_(True)
    (direct,) = torch.autograd.grad(outer(state.params, (lam,)), lam)
    assert rel_err(g0, (direct,)) < 1e-14


def test_truncation_error_shrinks_on_contractive_problem():
    inner, outer, hp, w0 = _problem(seed=1)
    dyn = GradientDescent(inner, lr=0.5)  # strongly convex + small step: a contraction
    T = 40
    full = hypergradient(w0, hp, dyn, outer, T)
    errors = [rel_err(hypergradient(w0, hp, dyn, outer, T, truncate=tau), full) for tau in (1, 5, 20, 40)]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] == 0.0


@pytest.mark.parametrize("dyn_cls", [GradientDescent, Momentum, Adam])
def test_continuation_through_return_state(dyn_cls):
    inner, outer, hp, w0 = _problem(seed=2)
    dyn = dyn_cls(inner, lr=0.1) if dyn_cls is not GradientDescent else dyn_cls(inner, lr=0.5)
    tau = 6
    _, s1 = hypergradient(w0, hp, dyn, outer, tau, return_state=True)
    g2, s2 = hypergradient(s1, hp, dyn, outer, tau, return_state=True)
    _, s_full = hypergradient(w0, hp, dyn, outer, 2 * tau, return_state=True)
    assert s2.t == 2 * tau
    for a, b in zip(s2.tensors(), s_full.tensors()):
        assert torch.equal(a, b)
    # the second call's hypergradient = reverse over those τ steps from the detached state
    lam = hp[0].clone().requires_grad_(True)
    state = s1.detach()
    for _ in range(tau):
        state = dyn(state, (lam,), create_graph=True)
    (ref,) = torch.autograd.grad(outer(state.params, (lam,)), lam)
    assert rel_err(g2, (ref,)) < 1e-13


def test_per_step_batches_match_finite_differences():
    X, y, Xv, yv = logistic_data(n=60, seed=4)
    inner = logistic_inner(X, y)
    outer = logistic_outer(Xv, yv)
    g = torch.Generator().manual_seed(0)
    T = 12
    idx = [torch.randperm(60, generator=g)[:10] for _ in range(T)]
    batches = [(X[i], y[i]) for i in idx]
    hp = (torch.log(torch.tensor([0.3, 0.1, 0.2, 0.05], dtype=DT)), torch.tensor(0.4, dtype=DT))
    dyn = Momentum(inner, lr=lambda h: h[1], momentum=0.3)
    w0 = (torch.zeros(4, dtype=DT),)

    def f(h):
        state = dyn.init(w0, h)
        for t in range(T):
            state = dyn(state, h, batches[t], create_graph=False)
        return float(outer(state.params, h))

    fd = central_difference(f, hp)
    rev_iter = hypergradient(w0, hp, dyn, outer, T, batches=iter(batches))
    rev_call = hypergradient(w0, hp, dyn, outer, T, batches=lambda t: batches[t])
    fwd = hypergradient(w0, hp, dyn, outer, T, method="forward", batches=lambda t: batches[t])
    assert rel_err(rev_iter, fd) < 1e-6
    assert rel_err(rev_call, rev_iter) == 0.0
    assert rel_err(fwd, rev_call) < 1e-10
    with pytest.raises(ValueError, match="batches ran out"):
        hypergradient(w0, hp, dyn, outer, T, batches=batches[:3])


def test_batches_callable_sees_global_step_on_continuation():
    inner, outer, hp, w0 = _problem()
    seen = []

    def inner_b(params, hparams, batch):
        seen.append(batch)
        return inner(params, hparams)

    dyn = GradientDescent(inner_b, lr=0.5)
    _, s = hypergradient(w0, hp, dyn, outer, 3, batches=lambda t: t, return_state=True)
    hypergradient(s, hp, dyn, outer, 2, batches=lambda t: t)
    assert seen == [0, 1, 2, 3, 4]


def test_stop_rule_covers_partial_window():
    inner, outer, hp, w0 = _problem()
    dyn = GradientDescent(inner, lr=0.5)
    g, state = hypergradient(w0, hp, dyn, outer, 10, stop=lambda s, t: t >= 4, return_state=True)
    assert state.stopped and state.t == 4
    assert isinstance(state, DynamicsState) and state.loss is not None
    ref = hypergradient(w0, hp, dyn, outer, 4)
    assert rel_err(g, ref) < 1e-14
