"""InverseTimeSGD and InverseTimeAdam: the inverse-time step η_k = η₀/(1 + d·k), exact resume, bad input."""

import pytest
import torch

from bilevel_core.optim import InverseTimeAdam, InverseTimeSGD

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


def test_adam_without_decay_equals_torch_adam_and_its_closed_form():
    """decay = 0: the iterates of torch.optim.Adam (float64); with a constant gradient g every bias-corrected step
    is exactly η·sign(g)·|g|/(|g| + ε): k steps move λ by -k·η (to ε)."""
    g = torch.Generator().manual_seed(1)
    lam = torch.randn(50, generator=g, dtype=DT).requires_grad_(True)
    ref = lam.detach().clone().requires_grad_(True)
    opt, torch_opt = InverseTimeAdam([lam], lr=0.05, betas=(0.8, 0.99)), torch.optim.Adam([ref], lr=0.05,
                                                                                            betas=(0.8, 0.99))
    for _ in range(6):
        grad = torch.randn(50, generator=g, dtype=DT)
        lam.grad, ref.grad = grad.clone(), grad.clone()
        opt.step()
        torch_opt.step()
    torch.testing.assert_close(lam.detach(), ref.detach(), rtol=0, atol=1e-13)
    c = torch.zeros(3, dtype=DT, requires_grad=True)
    opt = InverseTimeAdam([c], lr=0.1, eps=1e-12)
    for _ in range(5):
        c.grad = torch.tensor([2.0, -3.0, 1e-3], dtype=DT)
        opt.step()
    torch.testing.assert_close(c.detach(), torch.tensor([-0.5, 0.5, -0.5], dtype=DT), rtol=0, atol=1e-9)


def test_adam_decay_and_state_dict_resume_through_weights_only_load(tmp_path):
    """The step k is η₀/(1 + d·k) times Adam's direction; a state_dict saved and loaded with weights_only=True
    continues bit for bit."""
    lam = torch.zeros(2, dtype=DT, requires_grad=True)
    opt = InverseTimeAdam([lam], lr=1.0, decay=1.0, eps=1e-12)
    for _ in range(3):
        lam.grad = torch.ones(2, dtype=DT)
        opt.step()
    torch.testing.assert_close(lam.detach(), torch.full((2,), -(1 + 1 / 2 + 1 / 3), dtype=DT))
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    again = lam.detach().clone().requires_grad_(True)
    resumed = InverseTimeAdam([again], lr=1.0, decay=1.0, eps=1e-12)
    resumed.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    grad = torch.tensor([0.3, -2.0], dtype=DT)
    for o, p in ((opt, lam), (resumed, again)):
        p.grad = grad.clone()
        o.step()
    assert torch.equal(lam.detach(), again.detach())
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\)"):
        InverseTimeAdam([lam], lr=1.0, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps must be > 0"):
        InverseTimeAdam([lam], lr=1.0, eps=0.0)
