"""Truncated reverse mode, continuation through return_state, per-step batches, stop rules."""

import pytest
import torch

from bilevel_core import Adam, DynamicsState, GradientDescent, Momentum, hypergradient

from .problems import DT, assert_close, central_difference, logistic_data, logistic_inner, logistic_outer, rel_err


def _problem(seed=0):
    X, y, Xv, yv = logistic_data(seed=seed)
    inner = logistic_inner(X, y)
    outer = logistic_outer(Xv, yv)
    hp = (torch.log(torch.tensor([0.3, 0.1, 0.2, 0.05], dtype=DT)),)
    return inner, outer, hp, (torch.zeros(4, dtype=DT),)


def _hand_step(kind: str, inner, w: torch.Tensor, aux: tuple, h: tuple, t: int) -> tuple:
    """One step of GD / heavy ball / Adam written out with plain autograd (differentiable when ``w`` or ``h`` is).

    ``h = (l2, lr, momentum-or-beta1)``; Adam uses ``lr = 0.1 h[1]``, ``β2 = 0.99``, ``sqrt(v̂ + ε²)``, ε = 1e-8.
    """
    if not w.requires_grad:
        w = w.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(inner((w,), h), w, create_graph=True)
    if kind == "gd":
        return w - h[1] * g, ()
    if kind == "momentum":
        v = h[2] * aux[0] + g
        return w - h[1] * v, (v,)
    b1, b2 = h[2], 0.99
    m = b1 * aux[0] + (1 - b1) * g
    v = b2 * aux[1] + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
    return w - 0.1 * h[1] * m_hat / torch.sqrt(v_hat + 1e-16), (m, v)


def _hand_dynamics(kind: str, inner):
    if kind == "gd":
        return GradientDescent(inner, lr=lambda h: h[1])
    if kind == "momentum":
        return Momentum(inner, lr=lambda h: h[1], momentum=lambda h: h[2])
    return Adam(inner, lr=lambda h: 0.1 * h[1], betas=(lambda h: h[2], 0.99), eps=1e-8)


def _truncated_reference(kind: str, inner, outer, hp: tuple, w0: torch.Tensor, T: int, tau: int) -> tuple:
    """Hand-written truncated back-propagation: T - τ steps without graph at the detached λ, cut the
    state, then τ steps with ``create_graph`` and plain ``torch.autograd.grad`` of E w.r.t. λ."""
    n_aux = {"gd": 0, "momentum": 1, "adam": 2}[kind]
    h_const = tuple(x.detach() for x in hp)
    w, aux = w0.clone(), tuple(torch.zeros_like(w0) for _ in range(n_aux))
    for t in range(T - tau):
        w, aux = _hand_step(kind, inner, w, aux, h_const, t)
        w, aux = w.detach(), tuple(a.detach() for a in aux)
    lam = tuple(x.detach().clone().requires_grad_(True) for x in hp)
    for t in range(T - tau, T):
        w, aux = _hand_step(kind, inner, w, aux, lam, t)
    grads = torch.autograd.grad(outer((w,), lam), lam, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(lam, grads))


def _problem_with_direct_term(kind: str, seed: int = 0):
    inner, outer_base, (l2,), w0 = _problem(seed)

    def outer(params, hparams):  # has a direct term in λ
        return outer_base(params, hparams) + 0.1 * (hparams[0] ** 2).sum()

    hp = (l2, torch.tensor(0.4, dtype=DT), torch.tensor(0.6, dtype=DT))
    return inner, outer, hp, w0[0], _hand_dynamics(kind, inner)


@pytest.mark.parametrize("kind", ["gd", "momentum", "adam"])
def test_partial_truncation_matches_hand_written_window(kind):
    """truncate=τ, 0 < τ < T, against a hand-written τ-step unroll from the detached state (catches a
    window of τ ± 1 steps, or λ leaking into the untracked steps)."""
    inner, outer, hp, w0, dyn = _problem_with_direct_term(kind)
    T = 8
    for tau in (1, 3, 7):
        got = hypergradient((w0,), hp, dyn, outer, T, truncate=tau)
        ref = _truncated_reference(kind, inner, outer, hp, w0, T, tau)
        assert rel_err(got, ref) < 1e-11, (tau, got, ref)
        # the reference itself tells τ from τ + 1 steps apart: a one-step-too-long window cannot pass
        assert rel_err(_truncated_reference(kind, inner, outer, hp, w0, T, tau + 1), ref) > 1e-6


def test_truncated_gradient_closed_form_on_quadratic():
    """L = ½||w - λ||², w_{t+1} = w_t - η(w_t - λ), E = ½||w_T - c||² + ½β||λ||²: the τ-step truncated
    hypergradient is (w_T - c)(1 - (1-η)^τ) + βλ (the geometric sum η Σ_{k<τ} (1-η)^k), for every τ in 0..T."""
    eta, beta, T = 0.3, 0.2, 10
    w0 = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    lam = torch.tensor([0.7, 0.1, -1.3], dtype=DT)
    c = torch.tensor([0.2, 0.4, -0.6], dtype=DT)
    dyn = GradientDescent(lambda w, h: 0.5 * ((w[0] - h[0]) ** 2).sum(), lr=eta)
    outer = lambda w, h: 0.5 * ((w[0] - c) ** 2).sum() + 0.5 * beta * (h[0] ** 2).sum()  # noqa: E731
    w_T = (1 - eta) ** T * w0 + (1 - (1 - eta) ** T) * lam
    for tau in range(T + 1):
        (g,) = hypergradient((w0,), (lam,), dyn, outer, T, truncate=tau)
        expected = (w_T - c) * (1 - (1 - eta) ** tau) + beta * lam
        assert_close(g, expected, rtol=1e-12, atol=1e-14, msg=f"tau={tau}")
    (g_full,) = hypergradient((w0,), (lam,), dyn, outer, T)  # the default is the full window
    assert_close(g_full, (w_T - c) * (1 - (1 - eta) ** T) + beta * lam, rtol=1e-12, atol=1e-14)


def test_full_window_and_truncate_0_against_independent_references():
    """The default (full) window and truncate=T against a hand-written full unroll and finite differences;
    truncate=0 is the direct term ∂_λE alone."""
    inner, outer, hp, w0, dyn = _problem_with_direct_term("momentum")
    T = 15
    ref = _truncated_reference("momentum", inner, outer, hp, w0, T, T)

    def f(h):
        w, aux = w0.clone(), (torch.zeros_like(w0),)
        for t in range(T):
            w, aux = _hand_step("momentum", inner, w, aux, h, t)
            w, aux = w.detach(), tuple(a.detach() for a in aux)
        return float(outer((w,), h))

    fd = central_difference(f, hp)
    assert rel_err(ref, fd) < 1e-6
    for got in (hypergradient((w0,), hp, dyn, outer, T), hypergradient((w0,), hp, dyn, outer, T, truncate=T)):
        assert rel_err(got, ref) < 1e-11
        assert all(float(g.abs().min()) > 0 for g in got)  # λ, η and μ all receive a gradient
    g0, state = hypergradient((w0,), hp, dyn, outer, T, truncate=0, return_state=True)
    lam = tuple(x.clone().requires_grad_(True) for x in hp)
    direct = torch.autograd.grad(outer(state.params, lam), lam, allow_unused=True)
    assert direct[1] is None and direct[2] is None  # E does not read η and μ
    assert torch.equal(g0[1], torch.zeros_like(hp[1])) and torch.equal(g0[2], torch.zeros_like(hp[2]))
    assert_close(g0[0], direct[0], rtol=1e-14, atol=0)
    assert_close(g0[0], 0.2 * hp[0], rtol=1e-14, atol=0)  # ∂_λ(0.1 ||λ||²)


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
