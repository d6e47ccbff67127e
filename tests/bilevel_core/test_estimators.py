"""Discrete estimators: exact samples, straight-through gradients, unbiased score function."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bilevel_core import (
    GumbelSoftmax,
    ScoreFunction,
    StraightThrough,
    bernoulli_log_prob,
    bernoulli_sample,
    flat_nonzero,
    gumbel_softmax,
    relaxed_bernoulli,
    straight_through_bernoulli,
)

DT = torch.float64


@settings(max_examples=25, deadline=None)
@given(p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_bernoulli_samples_are_binary_with_right_mean(p, seed):
    n = 20000
    probs = torch.full((n,), p, dtype=DT)
    z = straight_through_bernoulli(probs, generator=torch.Generator().manual_seed(seed))
    assert set(z.unique().tolist()) <= {0.0, 1.0}
    # 5 standard errors (plus a hair for p ∈ {0, 1})
    assert abs(float(z.mean()) - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-12


def test_straight_through_gradient_identity_and_surrogate():
    probs = torch.tensor([0.2, 0.7, 0.0, 1.0], dtype=DT, requires_grad=True)
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=DT)
    z = straight_through_bernoulli(probs, generator=torch.Generator().manual_seed(1))
    (g,) = torch.autograd.grad((weights * z).sum(), probs)
    assert torch.equal(g, weights)  # A = θ in the backward pass
    assert z[2] == 0 and z[3] == 1
    z = straight_through_bernoulli(probs, torch.Generator().manual_seed(1), surrogate=lambda p: p**2)
    (g,) = torch.autograd.grad((weights * z).sum(), probs)
    assert torch.allclose(g, weights * 2 * probs.detach())
    # second derivatives pass through (needed inside unrolled inner steps)
    z = straight_through_bernoulli(probs, torch.Generator().manual_seed(1))
    (g,) = torch.autograd.grad((z**2 * weights).sum(), probs, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), probs)
    assert torch.allclose(h, 2 * weights)


def test_fixed_uniforms_fix_the_sample():
    probs = torch.tensor([0.3, 0.6], dtype=DT)
    u = torch.tensor([0.5, 0.5], dtype=DT)
    assert straight_through_bernoulli(probs, uniforms=u).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="uniforms"):
        straight_through_bernoulli(probs, uniforms=torch.zeros(3, dtype=DT))


def test_support_sampling_matches_dense_sampling_and_keeps_all_gradients():
    """With a support (the θ > 0 indices), the same uniforms give the same sample; θ = 0 elsewhere
    costs no random number, and the straight-through gradient still reaches every variable."""
    g = torch.Generator().manual_seed(3)
    probs = torch.rand(50, dtype=DT, generator=g) * (torch.rand(50, dtype=DT, generator=g) < 0.4)
    support = torch.nonzero(probs > 0)[:, 0]
    u_support = torch.rand(support.numel(), dtype=DT, generator=g)
    u_dense = torch.ones(50, dtype=DT).index_put((support,), u_support)
    theta = probs.clone().requires_grad_(True)
    z = straight_through_bernoulli(theta, uniforms=u_support, support=support)
    assert torch.equal(z, straight_through_bernoulli(probs, uniforms=u_dense))
    w = torch.arange(50, dtype=DT)
    (grad,) = torch.autograd.grad((w * z).sum(), theta)
    assert torch.equal(grad, w)
    # the same random stream: drawing from a generator with a support consumes support.numel() numbers
    a = straight_through_bernoulli(probs, torch.Generator().manual_seed(9), support=support)
    b = torch.ones(50, dtype=DT).index_put((support,), torch.rand(support.numel(), dtype=DT,
                                                                  generator=torch.Generator().manual_seed(9)))
    assert torch.equal(a, straight_through_bernoulli(probs, uniforms=b))
    with pytest.raises(ValueError, match="one uniform per index of support"):
        straight_through_bernoulli(probs, uniforms=u_dense, support=support)
    with pytest.raises(TypeError, match="support must be a 1-D torch.long"):
        straight_through_bernoulli(probs, uniforms=u_dense, support=support.int())


def test_straight_through_forward_mode_is_the_identity():
    import torch.autograd.forward_ad as fwAD

    probs = torch.tensor([0.2, 0.7, 0.0], dtype=DT)
    tangent = torch.tensor([1.0, -2.0, 3.0], dtype=DT)
    with fwAD.dual_level():
        z = straight_through_bernoulli(fwAD.make_dual(probs, tangent), uniforms=torch.full((3,), 0.5, dtype=DT))
        primal, out_tangent = fwAD.unpack_dual(z)
    assert primal.tolist() == [0.0, 1.0, 0.0]
    assert torch.equal(out_tangent, tangent)


def test_score_function_unbiased_on_enumerable_problem():
    """3 Bernoulli variables, 8 configurations: the exact gradient of E_z[f(z)] by enumeration."""
    theta = torch.tensor([0.3, 0.6, 0.8], dtype=DT)
    c = torch.tensor([1.5, -2.0, 0.7], dtype=DT)

    def f(z):
        return (c * z).sum() + 3.0 * z[0] * z[1] - 1.0 * z[1] * z[2] + 0.5

    th = theta.clone().requires_grad_(True)
    expected = sum(
        torch.exp(bernoulli_log_prob(th, torch.tensor(cfg, dtype=DT))) * f(torch.tensor(cfg, dtype=DT))
        for cfg in itertools.product([0.0, 1.0], repeat=3)
    )
    (exact,) = torch.autograd.grad(expected, th)

    est = ScoreFunction(baseline_decay=0.9)
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(20000):
        th = theta.clone().requires_grad_(True)
        z = est.sample(th, g)
        loss = f(z)
        (grad,) = torch.autograd.grad(est.surrogate(loss, th, z), th)
        samples.append(grad)
    samples = torch.stack(samples)
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(len(samples))
    assert torch.all((mean - exact).abs() <= 4 * se), (mean, exact, se)
    assert est.baseline is not None


def test_estimator_interface_all_three():
    theta = torch.tensor([0.3, 0.6, 0.8], dtype=DT, requires_grad=True)
    for est in (StraightThrough(), GumbelSoftmax(0.5), GumbelSoftmax(0.5, hard=True), ScoreFunction()):
        z = est.sample(theta, torch.Generator().manual_seed(0))
        loss = (z * torch.tensor([1.0, 2.0, 3.0], dtype=DT)).sum()
        (grad,) = torch.autograd.grad(est.surrogate(loss, theta, z), theta)
        assert grad.shape == theta.shape and torch.isfinite(grad).all()


def test_relaxed_bernoulli_soft_hard_and_low_temperature():
    probs = torch.tensor([0.1, 0.5, 0.9] * 1000, dtype=DT, requires_grad=True)
    soft = relaxed_bernoulli(probs, 0.5, torch.Generator().manual_seed(0))
    assert ((soft > 0) & (soft < 1)).all()
    hard = relaxed_bernoulli(probs, 0.5, torch.Generator().manual_seed(0), hard=True)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(hard.detach(), (soft.detach() > 0.5).to(DT))
    (g,) = torch.autograd.grad(hard.sum(), probs)
    assert (g > 0).all()
    # P(y > 1/2) = θ for every temperature (the relaxation keeps the Bernoulli law after rounding)
    cold = relaxed_bernoulli(probs.detach(), 0.05, torch.Generator().manual_seed(2), hard=True)
    for k, p in enumerate([0.1, 0.5, 0.9]):
        assert abs(float(cold[k::3].mean()) - p) < 0.05
    with pytest.raises(ValueError, match="temperature"):
        relaxed_bernoulli(probs, 0.0)


def test_categorical_gumbel_softmax():
    logits = torch.randn(5, 4, dtype=DT, requires_grad=True)
    y = gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(0), hard=True)
    assert torch.allclose(y.sum(-1), torch.ones(5, dtype=DT))
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}


def test_relaxations_stay_finite_at_the_bounds_in_float32():
    """1 − 1e-12 rounds to 1 in float32: the clamp margin follows the dtype, so θ ∈ {0, 1} gives no NaN."""
    from bilevel_core import relaxed_bernoulli

    for hard in (False, True):
        theta = torch.tensor([0.0, 1.0, 0.5], requires_grad=True)
        y = relaxed_bernoulli(theta, 0.5, torch.Generator().manual_seed(0), hard=hard)
        (g,) = torch.autograd.grad(y.sum(), theta)
        assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(g).all())


@pytest.mark.parametrize("bad", [1.5, -0.25, float("nan")])
def test_samplers_refuse_values_that_are_not_probabilities(bad):
    probs = torch.tensor([0.2, bad, 0.7], dtype=DT)
    for sample in (bernoulli_sample, straight_through_bernoulli, lambda p: relaxed_bernoulli(p, 0.5)):
        with pytest.raises(ValueError, match=r"probs must be probabilities in \[0, 1\].*torch.sigmoid"):
            sample(probs)
    with pytest.raises(ValueError, match="probabilities"):
        bernoulli_log_prob(probs, torch.ones(3, dtype=DT))
    gumbel_softmax(probs.nan_to_num(0.0) * 10, 1.0)  # logits may be any real number


@pytest.mark.parametrize("n", [0, 5, 8, 65536, 200_003])
@pytest.mark.parametrize("density", [0.0, 0.002, 0.5, 1.0])
def test_flat_nonzero_matches_torch_nonzero(n, density):
    g = torch.Generator().manual_seed(n)
    x = (torch.rand(n, generator=g) < density).float()
    if n % 2:
        x = x.double()  # float64 words hold one entry, float32 two, a bool mask eight
    if n > 10:  # values that are nonzero without being 1, and a negative zero (which is zero)
        x[3], x[7], x[9], x[-1] = float("nan"), -2.5, -0.0, 1e-30
    expected = torch.nonzero(x, as_tuple=True)[0]
    assert torch.equal(flat_nonzero(x), expected)
    assert torch.equal(flat_nonzero(x != 0), expected)
    assert torch.equal(flat_nonzero(x[1:]), torch.nonzero(x[1:], as_tuple=True)[0])  # offset views
    assert torch.equal(flat_nonzero((x != 0)[3:]), torch.nonzero(x[3:], as_tuple=True)[0])
    assert torch.equal(flat_nonzero((x != 0)[::3]), torch.nonzero(x[::3], as_tuple=True)[0])
    with pytest.raises(ValueError, match="1-D"):
        flat_nonzero(x.reshape(1, -1))
