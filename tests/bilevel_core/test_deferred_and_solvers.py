"""Reverse mode's deferred-gradient hook (``deferred_grads``) and the implicit methods' linear solvers."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bilevel_core import DeferredGradient, GradientDescent, HyperOptimizer, Momentum, hypergradient
from bilevel_core.hypergradient.linear_solve import solve_cg, solve_fixed_point, solve_neumann

from .problems import DT

# ----------------------------------------------------------------------------- deferred gradients


class ListSink:
    """A toy :class:`DeferredGradient`: keeps every recorded gradient and sums them once at the end."""

    def __init__(self, log: list[str] | None = None, name: str = "") -> None:
        self.parts: list[torch.Tensor] = []
        self.active = False
        self.log = log if log is not None else []
        self.name = name
        self.gradient_calls = 0

    def __enter__(self) -> ListSink:
        self.parts = []
        self.active = True
        self.log.append(f"enter {self.name}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.active = False
        self.log.append(f"exit {self.name}")

    def record(self, g: torch.Tensor) -> None:
        self.parts.append(g.detach().clone())

    def gradient(self, like: torch.Tensor) -> torch.Tensor:
        self.gradient_calls += 1
        assert not self.active, "gradient() is read after the sink was exited"
        out = torch.zeros_like(like)
        for p in self.parts:
            out = out + p
        return out


class Scale(torch.autograd.Function):
    """``y = θ ⊙ x``; its θ-gradient goes to ``sink`` (when given and active) outside ``create_graph``.

    The x-gradient ``θ ⊙ g`` is itself a ``Scale`` so that, in the second-order pass of reverse mode,
    θ is reached through this Function again (through the identity), as LDS's propagation does.
    """

    @staticmethod
    def forward(theta: torch.Tensor, x: torch.Tensor, sink: ListSink | None) -> torch.Tensor:
        return theta * x

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        theta, x, sink = inputs
        ctx.save_for_backward(theta, x)
        ctx.sink = sink

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        theta, x = ctx.saved_tensors
        grad_x = Scale.apply(theta, g, ctx.sink) if ctx.needs_input_grad[1] else None
        grad_theta = None
        if ctx.needs_input_grad[0]:
            grad_theta = g * x
            sink = ctx.sink
            if sink is not None and sink.active and not torch.is_grad_enabled():
                sink.record(grad_theta)
                grad_theta = torch.zeros_like(grad_theta)  # autograd sees nothing of this part
        return grad_theta, grad_x, None


def _problem(sink: ListSink | None, d: int = 5, seed: int = 0):
    """Ridge-like inner ``½‖w - a‖² + ½ Σ θ ⊙ w² + c Σ w`` and an outer that also reads θ directly."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, generator=g, dtype=DT)
    X = torch.randn(8, d, generator=g, dtype=DT)
    y = torch.randn(8, generator=g, dtype=DT)

    def inner(params, hp):
        (w,) = params
        theta, c = hp
        return 0.5 * ((w - a) ** 2).sum() + 0.5 * Scale.apply(theta, w * w, sink).sum() + c * w.sum()

    def outer(params, hp):
        (w,) = params
        theta, c = hp
        return ((X @ w - y) ** 2).mean() + 0.1 * Scale.apply(theta, w, sink).sum() + 0.01 * (theta**2).sum()

    theta = torch.linspace(0.2, 1.0, d, dtype=DT)
    c = torch.tensor(0.3, dtype=DT)
    return inner, outer, (theta, c), (torch.zeros(d, dtype=DT),)


@pytest.mark.parametrize("truncate", [None, 3, 0])
@pytest.mark.parametrize("dynamics", ["gd", "momentum"])
def test_deferred_hypergradient_equals_the_direct_one(truncate, dynamics):
    T = 6
    kw = {} if truncate is None else {"truncate": truncate}

    def run(sink, deferred):
        inner, outer, hp, w0 = _problem(sink)
        dyn = GradientDescent(inner, lr=0.3) if dynamics == "gd" else Momentum(inner, lr=0.2, momentum=0.6)
        return hypergradient(w0, hp, dyn, outer, T, "reverse", return_state=True, deferred_grads=deferred, **kw)

    direct, state_direct = run(None, None)
    sink = ListSink()
    deferred, state_deferred = run(sink, {0: sink})
    assert sink.parts, "the toy Function never deferred anything: the test would prove nothing"
    assert sink.gradient_calls == 1 and not sink.active
    for a, b in zip(deferred, direct):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(state_deferred.params, state_direct.params, rtol=0, atol=0)


def test_the_sink_part_is_needed_and_added_exactly_once():
    T = 4
    inner, outer, hp, w0 = _problem(None)
    (g_direct, _) = hypergradient(w0, hp, GradientDescent(inner, lr=0.3), outer, T)

    sink = ListSink()
    inner, outer, hp, w0 = _problem(sink)
    dyn = GradientDescent(inner, lr=0.3)
    with sink:  # deferring by hand, without the hook: autograd's part alone is incomplete
        g_autograd, _ = hypergradient(w0, hp, dyn, outer, T)
    by_hand = g_autograd + sink.gradient(like=g_autograd)
    assert not torch.allclose(g_autograd, g_direct)
    torch.testing.assert_close(by_hand, g_direct, rtol=0, atol=1e-12)
    # the hook does the same, and a second call with the same sink starts from an empty sink
    for _ in range(2):
        g_hook, _ = hypergradient(w0, hp, dyn, outer, T, deferred_grads={0: sink})
        torch.testing.assert_close(g_hook, g_direct, rtol=0, atol=1e-12)


def test_sinks_are_entered_in_index_order_and_exited_even_when_outer_raises():
    log: list[str] = []
    s0, s1 = ListSink(log, "0"), ListSink(log, "1")
    inner, outer, hp, w0 = _problem(s0)
    dyn = GradientDescent(inner, lr=0.3)
    hypergradient(w0, hp, dyn, outer, 2, deferred_grads={1: s1, 0: s0})
    assert log == ["enter 0", "enter 1", "exit 1", "exit 0"]

    log.clear()

    def failing_outer(params, hparams):
        raise RuntimeError("outer failed")

    with pytest.raises(RuntimeError, match="outer failed"):
        hypergradient(w0, hp, dyn, failing_outer, 2, deferred_grads={0: s0, 1: s1})
    assert log == ["enter 0", "enter 1", "exit 1", "exit 0"]
    assert not s0.active and not s1.active and s0.gradient_calls == 1


def test_deferred_grads_through_the_hyperoptimizer():
    sink = ListSink()
    runs = []
    for deferred in (None, {0: sink}):
        inner, outer, (theta, c), w0 = _problem(sink if deferred else None)
        hp = (theta.clone().requires_grad_(True), c.clone().requires_grad_(True))
        opt = HyperOptimizer(GradientDescent(inner, lr=0.3), outer, hp, lambda p: torch.optim.SGD(p, lr=0.5), T=3,
                             deferred_grads=deferred)
        opt.step(w0)
        opt.step(w0)
        runs.append(tuple(h.detach() for h in hp))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=1e-12)


class NoGradient:
    def __enter__(self) -> None: ...

    def __exit__(self, *exc: Any) -> None: ...


class WrongShape(ListSink):
    def gradient(self, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros(like.numel() + 1, dtype=like.dtype)


def test_deferred_grads_is_checked():
    inner, outer, hp, w0 = _problem(None)
    dyn = GradientDescent(inner, lr=0.3)
    sink: DeferredGradient = ListSink()  # a Protocol: structural, no base class needed
    for method in ("forward", "cg", "neumann", "fixed_point"):
        with pytest.raises(TypeError, match=f"unknown option\\(s\\) deferred_grads for method='{method}'"):
            hypergradient(w0, hp, dyn, outer, 2, method, deferred_grads={0: sink})
    with pytest.raises(TypeError, match="is for method=reverse"):
        hypergradient(w0, hp, dyn, outer, 2, "forward", deferred_grads={0: sink})
    with pytest.raises(ValueError, match="index 2 is out of range for 2"):
        hypergradient(w0, hp, dyn, outer, 2, deferred_grads={2: sink})
    with pytest.raises(ValueError, match="out of range"):
        hypergradient(w0, hp, dyn, outer, 2, deferred_grads={-1: sink})
    with pytest.raises(TypeError, match="keys must be hparam indices"):
        hypergradient(w0, hp, dyn, outer, 2, deferred_grads={"theta": sink})
    with pytest.raises(TypeError, match="keys must be hparam indices"):
        hypergradient(w0, hp, dyn, outer, 2, deferred_grads={True: sink})
    with pytest.raises(TypeError, match="must be a mapping"):
        hypergradient(w0, hp, dyn, outer, 2, deferred_grads=[sink])
    with pytest.raises(TypeError, match=r"deferred_grads\[0\] \(NoGradient\) is not a DeferredGradient.*gradient"):
        hypergradient(w0, hp, dyn, outer, 2, deferred_grads={0: NoGradient()})
    with pytest.raises(ValueError, match="same sink"):
        hypergradient(w0, hp, dyn, outer, 2, deferred_grads={0: sink, 1: sink})
    with pytest.raises(ValueError, match=r"gradient\(like\) must return a tensor of shape \(5,\)"):
        hypergradient(w0, hp, dyn, outer, 2, deferred_grads={0: WrongShape()})
    # an empty mapping is no deferral at all
    torch.testing.assert_close(
        hypergradient(w0, hp, dyn, outer, 2, deferred_grads={}), hypergradient(w0, hp, dyn, outer, 2)
    )


# ----------------------------------------------------------------------------- linear solvers

SHAPES = ((2,), (2, 2))  # a vector of size 6 as a tuple of two tensors


def _split(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (v[:2].clone(), v[2:].reshape(2, 2).clone())


def _flat(q: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat([x.reshape(-1) for x in q])


class CountingMatVec:
    """``q -> M q`` on tuples of tensors, counting its calls."""

    def __init__(self, M: torch.Tensor) -> None:
        self.M = M
        self.calls = 0

    def __call__(self, q: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        self.calls += 1
        return _split(self.M @ _flat(q))


def _systems(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B = torch.randn(6, 6, generator=g, dtype=DT)
    A = B @ B.T + 0.5 * torch.eye(6, dtype=DT)  # SPD
    C = torch.randn(6, 6, generator=g, dtype=DT)
    J = 0.6 * C / torch.linalg.matrix_norm(C, ord=2)  # a contraction (non-symmetric), ‖J‖ = 0.6
    b = torch.randn(6, generator=g, dtype=DT)
    return A, J, b


def test_solvers_match_a_dense_solve():
    A, J, b = _systems()
    x = solve_cg(CountingMatVec(A), _split(b), K=100, tol=1e-14)
    assert [t.shape for t in x] == [torch.Size(s) for s in SHAPES]
    torch.testing.assert_close(_flat(x), torch.linalg.solve(A, b), rtol=0, atol=1e-10)
    exact = torch.linalg.solve(torch.eye(6, dtype=DT) - J, b)
    for solve in (solve_neumann, solve_fixed_point):
        q = solve(CountingMatVec(J), _split(b), K=500, tol=1e-15)
        torch.testing.assert_close(_flat(q), exact, rtol=0, atol=1e-10)


def test_solvers_stop_after_K_products():
    A, J, b = _systems(1)
    bs = _split(b)
    Jb = J @ b
    JJb = J @ Jb
    mv = CountingMatVec(J)
    torch.testing.assert_close(_flat(solve_neumann(mv, bs, K=2, tol=0.0)), b + Jb + JJb, rtol=0, atol=1e-14)
    assert mv.calls == 2
    mv = CountingMatVec(J)
    torch.testing.assert_close(_flat(solve_fixed_point(mv, bs, K=2, tol=0.0)), b + Jb, rtol=0, atol=1e-14)
    assert mv.calls == 2
    mv = CountingMatVec(A)
    solve_cg(mv, bs, K=3, tol=0.0)
    assert mv.calls == 3
    # K = 0: the first term of each iteration
    assert torch.equal(_flat(solve_neumann(CountingMatVec(J), bs, K=0, tol=0.0)), b)
    assert torch.equal(_flat(solve_fixed_point(CountingMatVec(J), bs, K=0, tol=0.0)), torch.zeros(6, dtype=DT))
    assert torch.equal(_flat(solve_cg(CountingMatVec(A), bs, K=0, tol=0.0)), torch.zeros(6, dtype=DT))


def test_solvers_stop_at_tol():
    _, J, b = _systems(2)
    bs = _split(b)
    zero = CountingMatVec(torch.zeros(6, 6, dtype=DT))
    assert torch.equal(_flat(solve_neumann(zero, bs, K=50, tol=1e-12)), b) and zero.calls == 1  # J b = 0
    zero = CountingMatVec(torch.zeros(6, 6, dtype=DT))
    assert torch.equal(_flat(solve_fixed_point(zero, bs, K=50, tol=1e-12)), b) and zero.calls == 2  # q stays b
    two = CountingMatVec(2 * torch.eye(6, dtype=DT))
    torch.testing.assert_close(_flat(solve_cg(two, bs, K=50, tol=1e-12)), b / 2, rtol=0, atol=0)
    assert two.calls == 1  # exact after one step: the residual is zero
    nothing = CountingMatVec(2 * torch.eye(6, dtype=DT))
    zeros = torch.zeros(6, dtype=DT)
    assert torch.equal(_flat(solve_cg(nothing, _split(zeros), K=50, tol=0.0)), zeros)
    assert nothing.calls == 0
    # a loose tolerance on a contraction: fewer than K products, error of the order of the last step
    exact = torch.linalg.solve(torch.eye(6, dtype=DT) - J, b)
    for solve, name in ((solve_neumann, "neumann"), (solve_fixed_point, "fixed_point")):
        mv = CountingMatVec(J)
        q = solve(mv, bs, K=500, tol=1e-4)
        assert mv.calls < 60, name
        assert float((_flat(q) - exact).norm()) < 1e-3, name
