"""Batched forward mode: all directions in one pass per step, equal to the per-direction dual-tensor pass."""

from __future__ import annotations

import pytest
import torch

from bilevel_core import NO_BATCH, GradientDescent, hypergradient, real_time_hypergradients
from bilevel_core.hypergradient import forward as fwd_mode
from bilevel_core.hypergradient._loop import _BatchSource, run_steps

from .problems import DT, central_difference, logistic_data, logistic_inner, logistic_outer
from .test_unrolled import _setup

T = 10


def _dual_forward(params0, hp, dyn, outer, steps, batches=None):
    """The per-direction dual-tensor pass (forward mode before batching), as the reference."""
    carry = fwd_mode._DualTangents(params0, hp, dyn)
    state = run_steps(carry.state0, steps, carry.step, _BatchSource(batches), None)
    return carry.outer(outer, state)[0]


def _max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["gd", "momentum", "adam"])
def test_batched_equals_per_direction_and_reverse(kind):
    dyn, outer, hp, w0 = _setup(kind)
    assert fwd_mode._batchable(dyn)
    got, state = hypergradient(w0, hp, dyn, outer, T, method="forward", return_state=True)
    ref = _dual_forward(w0, hp, dyn, outer, T)
    assert _max_diff(got, ref) <= 1e-10
    assert _max_diff(got, hypergradient(w0, hp, dyn, outer, T)) <= 1e-10
    assert all(g.shape == h.shape and g.dtype == h.dtype for g, h in zip(got, hp))
    assert state.t == T and state.loss is not None and state.outer_loss is not None


def test_single_hyperparameter_and_callable_start_and_batches():
    """m = 1; ``w_0 = Φ_0(λ)``; per-step mini-batches; against finite differences too."""
    X, y, Xv, yv = logistic_data(n=60)
    inner, outer = logistic_inner(X, y), logistic_outer(Xv, yv)
    dyn = GradientDescent(inner, lr=lambda h: torch.exp(h[0]).sum() * 0.0 + 0.4)  # lr reads λ (a zero slope)
    hp = (torch.tensor([-1.5], dtype=DT),)
    w0 = (torch.zeros(4, dtype=DT),)
    assert _max_diff(hypergradient(w0, hp, dyn, outer, T, method="forward"),
                     _dual_forward(w0, hp, dyn, outer, T)) <= 1e-10
    g = torch.Generator().manual_seed(1)
    data = [(X[i], y[i]) for i in (torch.randperm(60, generator=g)[:20] for _ in range(T))]
    hp2 = (torch.full((4,), -1.5, dtype=DT), torch.tensor([0.2, -0.1, 0.3, 0.0], dtype=DT))

    def params0(h):
        return (2.0 * h[1],)

    got = hypergradient(params0, hp2, GradientDescent(inner, lr=0.4), outer, T, method="forward", batches=data)
    ref = _dual_forward(params0, hp2, GradientDescent(inner, lr=0.4), outer, T, batches=data)
    assert _max_diff(got, ref) <= 1e-10 and float(got[1].abs().sum()) > 0

    def f(h):
        dyn2 = GradientDescent(inner, lr=0.4)
        state = dyn2.init(params0(h), h)
        for b in data:
            state = dyn2(state, h, b, create_graph=False)
        return float(outer(state.params, h))

    assert _max_diff(got, central_difference(f, hp2)) <= 1e-7


def test_real_time_discounted_tangents_match_per_direction():
    """MARTHE's ``Z_t = μ A_t Z_{t-1} + B_t`` (μ = 0.7) with batched tangents equals the dual-tensor pass."""
    dyn, outer, hp, w0 = _setup("momentum")
    got = [g for _, g in real_time_hypergradients(w0, hp, dyn, outer, T, every=3, discount=0.7)]
    carry = fwd_mode._DualTangents(w0, hp, dyn, discount=0.7)
    state, ref = carry.state0, []
    for i in range(T):
        state = carry.step(state, NO_BATCH, i)
        if (i + 1) % 3 == 0 or i + 1 == T:
            ref.append(carry.outer(outer, state)[0])
    assert len(got) == len(ref) == 4
    for a, b in zip(got, ref):
        assert _max_diff(a, b) <= 1e-10


def test_custom_step_falls_back_to_dual_tensors():
    """A dynamics that overrides ``__call__`` is not of the form U(s, ∇L, λ): one dual pass per direction."""

    class Clipped(GradientDescent):
        def __call__(self, state, hparams, batch=NO_BATCH, *, create_graph=True):
            out = super().__call__(state, hparams, batch, create_graph=create_graph)
            return out.with_tensors(tuple(torch.tanh(t) for t in out.tensors()))

    X, y, Xv, yv = logistic_data()
    dyn = Clipped(logistic_inner(X, y), lr=0.5)
    assert not fwd_mode._batchable(dyn)
    hp = (torch.full((4,), -2.0, dtype=DT),)
    w0 = (torch.zeros(4, dtype=DT),)
    outer = logistic_outer(Xv, yv)
    got = hypergradient(w0, hp, dyn, outer, 6, method="forward")
    assert _max_diff(got, hypergradient(w0, hp, dyn, outer, 6)) <= 1e-10
