"""Checkpointed reverse mode (``checkpoint_steps``): the same hypergradient as the stored unroll, exactly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bilevel_core import GradientDescent, Momentum, hypergradient

from .problems import DT, central_difference, logistic_data, logistic_inner, logistic_outer
from .test_deferred_and_solvers import ListSink
from .test_deferred_and_solvers import _problem as _deferred_problem
from .test_unrolled import _setup

T = 12


def _max_diff(a, b) -> float:
    assert len(a) == len(b)
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _assert_same_state(a, b) -> None:
    assert a.t == b.t and a.stopped == b.stopped
    assert _max_diff(a.tensors(), b.tensors()) <= 1e-12
    assert float(abs(a.outer_loss - b.outer_loss)) <= 1e-12
    assert a.loss is not None and float(abs(a.loss - b.loss)) <= 1e-12


@pytest.mark.parametrize("kind", ["gd", "momentum", "adam"])
def test_checkpointed_equals_stored_unroll(kind):
    """Every segment length (1 = the paper's states-only Algorithm 2, T = one segment, 'sqrt', one that
    does not divide T) and truncations inside one segment, across segments and none at all."""
    dyn, outer, hp, w0 = _setup(kind)
    for truncate in (T, 7, 1, 0):
        ref, ref_state = hypergradient(w0, hp, dyn, outer, T, truncate=truncate, return_state=True)
        for k in (1, 5, T, "sqrt"):
            got, state = hypergradient(w0, hp, dyn, outer, T, truncate=truncate, checkpoint_steps=k,
                                       return_state=True)
            assert _max_diff(got, ref) <= 1e-10, (kind, truncate, k)
            _assert_same_state(state, ref_state)
        if truncate == T:
            assert all(float(g.abs().sum()) > 0 for g in ref)


def test_checkpointed_matches_finite_differences():
    dyn, outer, hp, w0 = _setup("momentum")

    def f(h):
        state = dyn.init(w0, h)
        for _ in range(T):
            state = dyn(state, h, create_graph=False)
        return float(outer(state.params, h))

    got = hypergradient(w0, hp, dyn, outer, T, checkpoint_steps=4)
    fd = central_difference(f, hp)
    assert _max_diff(got, fd) <= 1e-6


@pytest.mark.parametrize("fire_at", [2, 6, 11, 13])
def test_stop_rule_and_continuation(fire_at):
    """A stop rule firing in an early segment, in the last one, or never; then a second window continued
    from the returned state. Identical states, flags and gradients."""
    dyn, outer, hp, w0 = _setup("momentum")
    calls: list[int] = []

    def stop(state, t):
        calls.append(t)
        return t == fire_at

    ref, ref_state = hypergradient(w0, hp, dyn, outer, T, stop=stop, return_state=True)
    n_calls = len(calls)
    calls.clear()
    got, state = hypergradient(w0, hp, dyn, outer, T, stop=stop, return_state=True, checkpoint_steps=3)
    assert len(calls) == n_calls  # the stop rule runs in the forward pass only
    assert _max_diff(got, ref) <= 1e-10
    _assert_same_state(state, ref_state)
    assert state.stopped == (fire_at < T)
    ref2 = hypergradient(ref_state, hp, dyn, outer, 5, truncate=4)
    got2 = hypergradient(state, hp, dyn, outer, 5, truncate=4, checkpoint_steps=2)
    assert _max_diff(got2, ref2) <= 1e-10


def test_params0_callable():
    """``w_0 = Φ_0(λ)`` (MAML-style): the adjoint reaches λ through the start as well."""
    dyn, outer, hp, w0 = _setup("gd")
    scale = torch.tensor([0.5, -1.0, 2.0, 0.1], dtype=DT)

    def params0(h):
        return (scale * h[1],)

    ref = hypergradient(params0, hp, dyn, outer, T)
    for k in (1, 4, "sqrt"):
        assert _max_diff(hypergradient(params0, hp, dyn, outer, T, checkpoint_steps=k), ref) <= 1e-10
    assert float(ref[1].abs()) > 0


def _batches(n_steps: int, seed: int = 0):
    X, y, _, _ = logistic_data(n=60, seed=seed)
    g = torch.Generator().manual_seed(seed)
    idx = [torch.randperm(60, generator=g)[:20] for _ in range(n_steps)]
    return [(X[i], y[i]) for i in idx]


def test_batches_callable_iterator_and_generator():
    """A callable is called again, an iterator (here a one-shot generator) is recorded; both replay."""
    X, y, Xv, yv = logistic_data()
    dyn = GradientDescent(logistic_inner(X, y), lr=lambda h: h[1])
    outer = logistic_outer(Xv, yv)
    hp = (torch.full((4,), -2.0, dtype=DT), torch.tensor(0.5, dtype=DT))
    w0 = (torch.zeros(4, dtype=DT),)
    data = _batches(T)
    ref = hypergradient(w0, hp, dyn, outer, T, batches=data)
    calls: list[int] = []

    def by_step(t):
        calls.append(t)
        return data[t]

    assert _max_diff(hypergradient(w0, hp, dyn, outer, T, batches=by_step, checkpoint_steps=5), ref) <= 1e-10
    assert sorted(set(calls)) == list(range(T)) and len(calls) > T  # the replayed segments fetch again
    got = hypergradient(w0, hp, dyn, outer, T, batches=(b for b in data), checkpoint_steps=5)
    assert _max_diff(got, ref) <= 1e-10


def _noisy_problem():
    """Inner objective with a random draw per step: noise from the global RNG, or from a generator
    that arrives in the batch (drop-out-like feature noise)."""
    X, y, Xv, yv = logistic_data()

    def inner(params, hp, batch=None):
        (w,) = params
        gen = batch
        noise = torch.rand(X.shape, dtype=DT, generator=gen)
        logits = (X * (0.5 + noise)) @ w
        return F.binary_cross_entropy_with_logits(logits, y) + 0.5 * (torch.exp(hp[0]) * w * w).sum()

    hp = (torch.full((4,), -2.0, dtype=DT),)
    return GradientDescent(inner, lr=0.5), logistic_outer(Xv, yv), hp, (torch.zeros(4, dtype=DT),)


def test_random_draws_replay_identically():
    dyn, outer, hp, w0 = _noisy_problem()
    # the global RNG: restored per segment, and left where the plain unroll leaves it
    torch.manual_seed(7)
    ref = hypergradient(w0, hp, dyn, outer, T, batches=lambda t: None)
    after_ref = torch.rand(3)
    torch.manual_seed(7)
    got = hypergradient(w0, hp, dyn, outer, T, batches=lambda t: None, checkpoint_steps=4)
    assert torch.equal(torch.rand(3), after_ref)
    assert _max_diff(got, ref) <= 1e-10
    # a generator inside the batch (the same object every step, from an iterator): set back per step
    gen = torch.Generator().manual_seed(3)
    ref = hypergradient(w0, hp, dyn, outer, T, batches=[gen] * T)
    gen2 = torch.Generator().manual_seed(3)
    got = hypergradient(w0, hp, dyn, outer, T, batches=[gen2] * T, checkpoint_steps=5)
    assert _max_diff(got, ref) <= 1e-10
    assert torch.equal(gen.get_state(), gen2.get_state())


def test_unreplayable_steps_are_refused():
    X, y, Xv, yv = logistic_data()
    outer = logistic_outer(Xv, yv)
    hp = (torch.full((4,), -2.0, dtype=DT),)
    w0 = (torch.zeros(4, dtype=DT),)
    # an iterator that reuses one buffer, overwritten in place for every step
    dyn = GradientDescent(logistic_inner(X, y), lr=0.5)
    buf_X, buf_y = X[:20].clone(), y[:20].clone()

    def reusing():
        for t in range(T):
            buf_X.copy_(X[t : t + 20])
            buf_y.copy_(y[t : t + 20])
            yield buf_X, buf_y

    with pytest.raises(ValueError, match="modified in place.*callable t -> batch"):
        hypergradient(w0, hp, dyn, outer, T, batches=reusing(), checkpoint_steps=4)
    # randomness the core cannot see: a generator captured by the inner objective
    private = torch.Generator().manual_seed(0)

    def inner(params, h):
        noise = torch.rand(X.shape, dtype=DT, generator=private)
        return F.binary_cross_entropy_with_logits((X * noise) @ params[0], y) + (torch.exp(h[0]) * params[0] ** 2).sum()

    with pytest.raises(ValueError, match="not replayable"):
        hypergradient(w0, hp, GradientDescent(inner, lr=0.5), outer, T, checkpoint_steps=4)


@pytest.mark.parametrize("bad, error, match", [
    (0, ValueError, r"checkpoint_steps=0 is out of range.*1 <= checkpoint_steps <= T=12"),
    (-3, ValueError, "out of range"),
    (T + 1, ValueError, "out of range"),
    ("cube", ValueError, "'sqrt'"),
    (2.5, TypeError, "int segment length"),
    (True, TypeError, "int segment length"),
])
def test_bad_checkpoint_steps(bad, error, match):
    dyn, outer, hp, w0 = _setup("gd")
    with pytest.raises(error, match=match):
        hypergradient(w0, hp, dyn, outer, T, checkpoint_steps=bad)
    with pytest.raises(TypeError, match="checkpoint_steps is for method=reverse"):
        hypergradient(w0, hp, dyn, outer, T, method="forward", checkpoint_steps=2)


@pytest.mark.parametrize("truncate", [None, 3])
def test_deferred_grads_with_checkpoints(truncate):
    """A DeferredGradient sink collects its part in the segments' backward passes: the same total."""
    sink = ListSink()
    inner, outer, hp, w0 = _deferred_problem(sink)
    dyn = Momentum(inner, lr=0.2, momentum=0.5)
    opts = {} if truncate is None else {"truncate": truncate}
    plain = hypergradient(w0, hp, dyn, outer, 10, **opts)  # no sink: everything through autograd
    ref = hypergradient(w0, hp, dyn, outer, 10, deferred_grads={0: sink}, **opts)
    got = hypergradient(w0, hp, dyn, outer, 10, deferred_grads={0: sink}, checkpoint_steps=3, **opts)
    assert sink.parts  # the sink really took part
    assert _max_diff(got, ref) <= 1e-10 and _max_diff(got, plain) <= 1e-10


def test_hyper_cleaning_problem():
    """Per-example weights σ(λ_i) and η = exp(λ_η) (Franceschi et al., 2017, Sec. 5.1), softmax regression."""
    g = torch.Generator().manual_seed(0)
    n, d, c = 50, 5, 3
    X, Xv = torch.randn(n, d, generator=g, dtype=DT), torch.randn(30, d, generator=g, dtype=DT)
    W = torch.randn(d, c, generator=g, dtype=DT)
    y, yv = (X @ W).argmax(1), (Xv @ W).argmax(1)
    y[:15] = (y[:15] + 1) % c

    def inner(params, hp):
        return (torch.sigmoid(hp[0]) * F.cross_entropy(X @ params[0] + params[1], y, reduction="none")).mean()

    def outer(params, hp):
        return F.cross_entropy(Xv @ params[0] + params[1], yv)

    dyn = GradientDescent(inner, lr=lambda h: torch.exp(h[1]))
    hp = (torch.randn(n, generator=g, dtype=DT), torch.tensor(-0.5, dtype=DT))
    w0 = (torch.zeros(d, c, dtype=DT), torch.zeros(c, dtype=DT))
    ref = hypergradient(w0, hp, dyn, outer, 20)
    for k in (1, 7, "sqrt"):
        assert _max_diff(hypergradient(w0, hp, dyn, outer, 20, checkpoint_steps=k), ref) <= 1e-10
    assert float(ref[0][:15].mean()) > 0 > float(ref[0][15:].mean())  # flipped labels: lower their weights
