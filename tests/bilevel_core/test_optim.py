"""InverseTimeSGD: the inverse-time step η_k = η₀/(1 + d·k), exact resume, bad input."""

import pytest
import torch

from bilevel_core.optim import InverseTimeSGD

DT = torch.float64


def test_steps_follow_the_inverse_time_schedule_bitwise():
    """Each update equals λ.sub_(η_k g) with η_k = η₀/(1 + d·k), k = 0, 1, 2, ... (a decay off by one step, or
    the fused add_(g, alpha=-η) of torch.optim.SGD, would differ)."""
    g = torch.Generator().manual_seed(0)
    lam = torch.rand(1000, generator=g, dtype=torch.float32).requires_grad_(True)
    ref = lam.detach().clone()
    opt = InverseTimeSGD([lam], lr=0.7, decay=0.3)
    for k in range(5):
        grad = torch.randn(1000, generator=g, dtype=torch.float32)
        lam.grad = grad.clone()
        opt.step()
        ref.sub_(0.7 / (1.0 + 0.3 * k) * grad)
        assert torch.equal(lam.detach(), ref)


def test_closed_form_with_a_constant_gradient():
    lam = torch.zeros(3, dtype=DT, requires_grad=True)
    opt = InverseTimeSGD([lam], lr=2.0, decay=0.5)
    for _ in range(4):
        lam.grad = torch.ones(3, dtype=DT)
        opt.step()
    expected = -sum(2.0 / (1 + 0.5 * k) for k in range(4))
    torch.testing.assert_close(lam.detach(), torch.full((3,), expected, dtype=DT), rtol=0, atol=1e-14)


def test_state_dict_resumes_the_schedule_and_tensors_without_gradient_are_left_alone():
    a = torch.zeros(2, dtype=DT, requires_grad=True)
    b = torch.ones(2, dtype=DT, requires_grad=True)
    opt = InverseTimeSGD([a, b], lr=1.0, decay=1.0)
    for _ in range(3):
        a.grad = torch.ones(2, dtype=DT)
        opt.step()
    assert torch.equal(b.detach(), torch.ones(2, dtype=DT))  # no gradient: not updated, no step counted
    resumed_a = a.detach().clone().requires_grad_(True)
    resumed = InverseTimeSGD([resumed_a, b], lr=1.0, decay=1.0)
    resumed.load_state_dict(opt.state_dict())
    for o, p in ((opt, a), (resumed, resumed_a)):
        p.grad = torch.ones(2, dtype=DT)
        o.step()
    assert torch.equal(a.detach(), resumed_a.detach())
    torch.testing.assert_close(a.detach(), torch.full((2,), -(1 + 1 / 2 + 1 / 3 + 1 / 4), dtype=DT))


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0.0), "lr must be > 0"),
    (dict(lr=float("inf")), "lr must be a finite number"),
    (dict(lr=float("nan")), "lr must be a finite number"),
    (dict(lr=1.0, decay=-1e-3), "decay must be >= 0"),
    (dict(lr=1.0, decay=float("nan")), "decay must be a finite number"),
    (dict(lr=True), "lr must be a finite number"),
])
def test_bad_rates_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InverseTimeSGD([torch.zeros(1, requires_grad=True)], **kwargs)


# ----------------------------------------------------------------------------- HyperOptimizer windows


def _windowed_problem():
    from bilevel_core import GradientDescent

    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(20, 4, generator=g, dtype=DT), torch.randn(20, generator=g, dtype=DT)
    Xv, yv = torch.randn(10, 4, generator=g, dtype=DT), torch.randn(10, generator=g, dtype=DT)

    def inner(w, lam):
        return ((X @ w[0] - y) ** 2).mean() + (torch.exp(lam[0]) * w[0] ** 2).sum()

    def make_outer(shift: float):
        return lambda w, lam: ((Xv @ w[0] - yv - shift) ** 2).mean()

    return GradientDescent(inner, lr=0.1), make_outer


def test_hyperoptimizer_windows_equal_a_hand_written_loop():
    """Per-step T, outer and truncate overrides, warm starts within a run and restart between runs give
    exactly the updates of a loop written with hypergradient and InverseTimeSGD's formula by hand."""
    from bilevel_core import HyperOptimizer, hypergradient, project_box

    dyn, make_outer = _windowed_problem()
    lam = torch.full((4,), -1.0, dtype=DT, requires_grad=True)
    hopt = HyperOptimizer(dyn, None, (lam,), InverseTimeSGD([lam], lr=0.5, decay=0.1), T=3,
                          projection=project_box(-3.0, 0.0), warm_start=True)
    ref = torch.full((4,), -1.0, dtype=DT)
    k = 0
    for run in range(2):
        hopt.restart()
        w0 = (torch.zeros(4, dtype=DT),)
        state = w0
        for window, T in enumerate((3, 3, 2)):
            outer = make_outer(0.1 * (run + window))
            hopt.step(w0, T=T, outer=outer, truncate=min(2, T))
            (g,), state = hypergradient(state, (ref,), dyn, outer, T, truncate=min(2, T), return_state=True)
            ref = (ref - 0.5 / (1 + 0.1 * k) * g).clamp(-3.0, 0.0)
            k += 1
            assert torch.equal(lam.detach(), ref)
            assert hopt.state.t == state.t == sum((3, 3, 2)[: window + 1])
    assert len(hopt.history) == 6


def test_hyperoptimizer_step_errors():
    from bilevel_core import HyperOptimizer

    dyn, make_outer = _windowed_problem()
    lam = torch.zeros(4, dtype=DT, requires_grad=True)
    hopt = HyperOptimizer(dyn, None, (lam,), InverseTimeSGD([lam], lr=0.1), T=2, warm_start=True)
    w0 = (torch.zeros(4, dtype=DT),)
    with pytest.raises(ValueError, match="no outer objective"):
        hopt.step(w0)
    with pytest.raises(ValueError, match="needs params0"):
        hopt.step(outer=make_outer(0.0))
    with pytest.raises(TypeError, match="return_state is managed"):
        hopt.step(w0, outer=make_outer(0.0), return_state=True)
    with pytest.raises(TypeError, match="unknown option"):
        hopt.step(w0, outer=make_outer(0.0), K=3)
    with pytest.raises(TypeError, match="outer must be a callable"):
        HyperOptimizer(dyn, "outer", (lam,), InverseTimeSGD([lam], lr=0.1), T=2)
