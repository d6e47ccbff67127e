"""Categorical estimators and the low-variance Bernoulli ones: exact samples, closed-form gradients,
unbiasedness against exact enumeration (within a confidence interval), clear errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bilevel_core import (
    CategoricalGumbelSoftmax,
    CategoricalScoreFunction,
    CategoricalStraightThrough,
    DisARM,
    LeaveOneOut,
    ScoreFunction,
    bernoulli_log_prob,
    categorical_sample,
    gumbel_softmax,
)

from .problems import assert_close

DT = torch.float64


def _mc(estimate, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, standard error and variance of ``n`` independent estimates."""
    samples = torch.stack([estimate(k) for k in range(n)])
    return samples.mean(0), samples.std(0) / math.sqrt(n), samples.var(0)


# ----------------------------------------------------------------------------- Bernoulli


THETA = torch.tensor([0.3, 0.6, 0.85], dtype=DT)
C = torch.tensor([1.5, -2.0, 0.7], dtype=DT)


def _f(z: torch.Tensor) -> torch.Tensor:
    """A non-linear loss of 3 binary variables (pairwise interactions), batched over leading axes."""
    return (C * z).sum(-1) + 3.0 * z[..., 0] * z[..., 1] - 1.0 * z[..., 1] * z[..., 2] + 0.5


def _exact_bernoulli_gradient() -> torch.Tensor:
    th = THETA.clone().requires_grad_(True)
    expected = sum(torch.exp(bernoulli_log_prob(th, torch.tensor(c, dtype=DT))) * _f(torch.tensor(c, dtype=DT))
                   for c in itertools.product([0.0, 1.0], repeat=3))
    (exact,) = torch.autograd.grad(expected, th)
    return exact


def _estimate(est, gen):
    def one(_k: int) -> torch.Tensor:
        th = THETA.clone().requires_grad_(True)
        z = est.sample(th, gen)
        (g,) = torch.autograd.grad(est.surrogate(_f(z), th, z), th)
        return g

    return one


@pytest.fixture(scope="module")
def variances() -> dict[str, float]:
    """Total variance per estimate of the moving-average score function and of leave-one-out with K = 2."""
    return {name: float(_mc(_estimate(est, torch.Generator().manual_seed(1)), 2000)[2].sum())
            for name, est in (("sf", ScoreFunction(0.9)), ("rloo2", LeaveOneOut(2)))}


@pytest.mark.parametrize("make, below", [(lambda: LeaveOneOut(4), "sf"), (lambda: LeaveOneOut(2), None),
                                         (DisARM, "rloo2")], ids=["rloo4", "rloo2", "disarm"])
def test_low_variance_bernoulli_estimators_are_unbiased(make, below, variances):
    """Unbiased within 4 standard errors of the exact gradient; leave-one-out with 4 samples has a lower
    variance than the moving-average score function, DisARM than leave-one-out at the same 2 evaluations."""
    exact = _exact_bernoulli_gradient()
    mean, se, var = _mc(_estimate(make(), torch.Generator().manual_seed(0)), 2000)
    assert torch.all((mean - exact).abs() <= 4 * se), (mean, exact, se)
    if below is not None:
        assert float(var.sum()) < 0.9 * variances[below], (var, variances)


def test_disarm_closed_form_and_direct_term():
    """One antithetic pair with fixed uniforms: the estimate eq. 7 gives, plus a loss's direct θ term."""
    theta = THETA.clone().requires_grad_(True)
    u = torch.tensor([0.2, 0.5, 0.5], dtype=DT)
    est = DisARM()
    z = est.sample(theta, uniforms=u)
    assert z.tolist() == [[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]  # [u < θ], [1 - u < θ]
    f = _f(z)
    (g,) = torch.autograd.grad(est.surrogate(f, theta, z), theta)
    expected = torch.zeros(3, dtype=DT)
    expected[0] = 0.5 * float(f[0] - f[1]) * 1.0 / min(0.3, 0.7)  # z̃_0 = 0: sign +1; only variable 0 differs
    assert_close(g, expected, rtol=1e-12)
    (g2,) = torch.autograd.grad(est.surrogate(f + (theta**2).sum(), theta, z), theta)
    assert_close(g2, expected + 2 * THETA, rtol=1e-12)  # the pathwise direct term is added
    # at θ ∈ {0, 1} the pair agrees: a finite zero, not NaN
    edge = torch.tensor([0.0, 1.0, 0.5], dtype=DT, requires_grad=True)
    ze = est.sample(edge, uniforms=torch.tensor([0.3, 0.3, 0.3], dtype=DT))
    (ge,) = torch.autograd.grad(est.surrogate(_f(ze), edge, ze), edge)
    assert torch.isfinite(ge).all() and ge[:2].tolist() == [0.0, 0.0]


def test_leave_one_out_closed_form():
    theta = THETA.clone().requires_grad_(True)
    u = torch.tensor([[0.1, 0.9, 0.5], [0.5, 0.5, 0.9], [0.9, 0.1, 0.1]], dtype=DT)
    est = LeaveOneOut(3)
    z = est.sample(theta, uniforms=u)
    f = _f(z)
    (g,) = torch.autograd.grad(est.surrogate(f, theta, z), theta)
    score = z / THETA - (1 - z) / (1 - THETA)
    baseline = torch.stack([(f.sum() - f[k]) / 2 for k in range(3)])
    assert_close(g, ((f - baseline)[:, None] * score).mean(0), rtol=1e-12)


# ----------------------------------------------------------------------------- categorical

PI = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]], dtype=DT)
A = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0], [2.0, 0.5, 0.0]], dtype=DT)
W = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, -0.5]], dtype=DT)


def _g(z: torch.Tensor) -> torch.Tensor:
    """A non-linear loss of two 3-way categorical choices (an interaction z₀ᵀ A z₁)."""
    return (W * z).sum() + z[0] @ A @ z[1]


def test_categorical_score_function_is_unbiased():
    """Gradient with respect to the logits of π = softmax(ℓ) (along the simplex, where a baseline's term
    b·∇log π_z has mean zero), against the exact one by enumeration of the 9 configurations."""
    logits = torch.log(PI)

    def softmax(x: torch.Tensor) -> torch.Tensor:  # by hand: torch.softmax stalls on a busy 2-core machine
        e = torch.exp(x)
        return e / e.sum(-1, keepdim=True)

    ell = logits.clone().requires_grad_(True)
    pi = softmax(ell)
    eye = torch.eye(3, dtype=DT)
    expected = sum(pi[0, i] * pi[1, j] * _g(torch.stack([eye[i], eye[j]])) for i in range(3) for j in range(3))
    (exact,) = torch.autograd.grad(expected, ell)
    est = CategoricalScoreFunction(0.9)
    gen = torch.Generator().manual_seed(0)

    def one(_k: int) -> torch.Tensor:
        ell = logits.clone().requires_grad_(True)
        p = softmax(ell)
        z = est.sample(p, gen)
        (g,) = torch.autograd.grad(est.surrogate(_g(z), p, z), ell)
        return g

    mean, se, _ = _mc(one, 3000)
    assert torch.all((mean - exact).abs() <= 4 * se), (mean, exact, se)


def test_categorical_samples_follow_the_probabilities():
    probs = PI[0].expand(20000, 3)
    z = categorical_sample(probs, torch.Generator().manual_seed(0))
    assert torch.equal(z.sum(-1), torch.ones(20000, dtype=DT)) and set(z.unique().tolist()) == {0.0, 1.0}
    freq = z.mean(0)
    assert torch.all((freq - PI[0]).abs() <= 5 * torch.sqrt(PI[0] * (1 - PI[0]) / 20000))
    # along another dim, inversion with fixed uniforms: u = 0.1 → category 0, 0.65 → 1, 0.95 → 2
    zt = categorical_sample(PI[0].reshape(3, 1).expand(3, 3), dim=0, uniforms=torch.tensor([0.1, 0.65, 0.95], dtype=DT))
    assert zt.argmax(0).tolist() == [0, 1, 2]


def test_categorical_straight_through_gradient():
    """One-hot forward; ∂z/∂π = I, hence the softmax's Jacobian for π = softmax(logits)."""
    logits = torch.tensor([[0.1, -0.3, 0.5], [1.0, 0.0, -1.0]], dtype=DT, requires_grad=True)
    pi = torch.softmax(logits, -1)
    z = CategoricalStraightThrough().sample(pi, uniforms=torch.tensor([0.1, 0.99], dtype=DT))
    assert z.detach().argmax(-1).tolist() == [0, 2] and torch.equal(z.detach().sum(-1), torch.ones(2, dtype=DT))
    (g,) = torch.autograd.grad((W * z).sum(), logits)
    p = pi.detach()
    jac = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    assert_close(g, (jac @ W[:, :, None]).squeeze(-1), rtol=1e-12)


@pytest.mark.parametrize("hard", [False, True])
def test_categorical_gumbel_softmax_closed_form(hard):
    pi = PI.clone().requires_grad_(True)
    u = torch.tensor([[0.3, 0.8, 0.5], [0.6, 0.2, 0.9]], dtype=DT)
    tau = 0.7
    y = CategoricalGumbelSoftmax(tau, hard=hard).sample(pi, uniforms=u)
    gumbel = -torch.log(-torch.log(u))
    soft = torch.softmax((torch.log(PI) + gumbel) / tau, -1)
    value = torch.nn.functional.one_hot(soft.argmax(-1), 3).to(DT) if hard else soft
    assert_close(y.detach(), value, rtol=1e-12)
    (g,) = torch.autograd.grad((W * y).sum(), pi)
    # d soft / d π_j = soft (e_j - soft_j) / (τ π_j): the soft sample's gradient, for hard as well
    expected = (soft * (W - (W * soft).sum(-1, keepdim=True))) / (tau * PI)
    assert_close(g, expected, rtol=1e-10)
    assert_close(gumbel_softmax(torch.log(PI), tau, uniforms=u, hard=hard).detach(), value, rtol=1e-12)


@pytest.mark.parametrize("make", [CategoricalStraightThrough, lambda: CategoricalGumbelSoftmax(0.5),
                                  CategoricalScoreFunction])
def test_categorical_estimators_refuse_bad_probabilities(make):
    est = make()
    with pytest.raises(ValueError, match=r"sum to 1 along dim=-1.*sums in \[0\.9, 1\.2\].*torch\.softmax"):
        est.sample(torch.tensor([[0.2, 0.7], [0.6, 0.6]], dtype=DT))
    with pytest.raises(ValueError, match="NaN"):
        est.sample(torch.tensor([float("nan"), 0.5], dtype=DT))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        est.sample(torch.tensor([1.5, -0.5], dtype=DT))
    with pytest.raises(TypeError, match="floating-point"):
        est.sample(torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="uniforms"):
        est.sample(PI, uniforms=torch.rand(5, dtype=DT))
    # a distribution along dim 0 is accepted when dim says so
    CategoricalStraightThrough(dim=0).sample(PI.T.contiguous())


def test_bad_logits_and_sample_counts():
    with pytest.raises(ValueError, match="logits contains NaN"):
        gumbel_softmax(torch.tensor([0.0, float("nan")]), 0.5)
    gumbel_softmax(torch.tensor([0.0, float("-inf")]), 0.5)  # a category that is never drawn is fine
    with pytest.raises(ValueError, match="num_samples must be an int >= 2"):
        LeaveOneOut(1)
    est = LeaveOneOut(3)
    z = est.sample(THETA)
    assert z.shape == (3, 3)
    with pytest.raises(ValueError, match=r"one loss per sample, a tensor of shape \(3,\)"):
        est.surrogate(_f(z).sum(), THETA, z)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        DisARM().surrogate(torch.zeros(3, dtype=DT), THETA, DisARM().sample(THETA))
