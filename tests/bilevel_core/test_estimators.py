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

from .problems import assert_close, central_difference, rel_err

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


def _binary_concrete(p: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """Binary concrete written independently: σ((logit p + logit u)/τ) = 1 / (1 + ((1-p)(1-u)/(p u))^(1/τ))."""
    return 1.0 / (1.0 + ((1 - p) * (1 - u) / (p * u)) ** (1.0 / temperature))


def test_estimator_interface_gradients_are_the_closed_forms():
    """sample + surrogate for the three estimators, with fixed uniforms: the gradient each one claims."""
    theta = torch.tensor([0.3, 0.6, 0.8], dtype=DT, requires_grad=True)
    th = theta.detach()
    c = torch.tensor([1.0, 2.0, 3.0], dtype=DT)
    u = torch.tensor([0.5, 0.2, 0.9], dtype=DT)

    def grad_of(est):
        z = est.sample(theta, uniforms=u)
        (g,) = torch.autograd.grad(est.surrogate((z * c).sum(), theta, z), theta)
        return z.detach(), g

    z, g = grad_of(StraightThrough())
    assert z.tolist() == [0.0, 1.0, 0.0] and torch.equal(g, c)  # [u < θ], ∂z/∂θ = 1
    for hard in (False, True):
        for tau in (0.5, 2.0):
            y = _binary_concrete(th, u, tau)
            z, g = grad_of(GumbelSoftmax(tau, hard=hard))
            assert_close(z, (y > 0.5).to(DT) if hard else y, rtol=1e-12, atol=0)
            # dy/dθ = y (1 - y) / (τ θ (1 - θ)), for the soft and the straight-through hard sample alike
            assert_close(g, c * y * (1 - y) / (tau * th * (1 - th)), rtol=1e-10, atol=0)
    est = ScoreFunction(baseline_decay=0.75)
    score = lambda z: z / th - (1 - z) / (1 - th)  # noqa: E731  ∇_θ log p(z; θ)
    z1, g1 = grad_of(est)
    f1 = float((z1 * c).sum())
    assert_close(g1, f1 * score(z1), rtol=1e-12, atol=0)  # no baseline yet
    assert est.baseline == f1
    u2 = torch.tensor([0.1, 0.1, 0.1], dtype=DT)
    z2 = est.sample(theta, uniforms=u2)
    (g2,) = torch.autograd.grad(est.surrogate((z2 * c).sum(), theta, z2), theta)
    f2 = float((z2 * c).sum())
    assert_close(g2, (f2 - f1) * score(z2), rtol=1e-12, atol=0)  # the baseline is subtracted
    assert est.baseline == pytest.approx(0.75 * f1 + 0.25 * f2, rel=1e-15)


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


def test_categorical_gumbel_softmax_hard_soft_temperature_and_gradient():
    """Hard = one-hot of the soft sample's argmax; the noise enters as softmax((l + g)/τ): with one seed,
    τ (log y_k - log y_0) - (l_k - l_0) = g_k - g_0 whatever τ and the logits; straight-through gradient."""
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(6, 4, generator=gen, dtype=DT)
    other = torch.randn(6, 4, generator=gen, dtype=DT)
    c = torch.randn(6, 4, generator=gen, dtype=DT)

    def noise_diff(lg: torch.Tensor, tau: float) -> torch.Tensor:
        y = gumbel_softmax(lg, tau, torch.Generator().manual_seed(0))
        log_y = torch.log(y)
        return tau * (log_y - log_y[:, :1]) - (lg - lg[:, :1])

    ref = noise_diff(logits, 1.0)
    assert float(ref[:, 1:].abs().min()) > 0  # there is noise
    assert_close(noise_diff(logits, 0.3), ref, rtol=1e-9, atol=1e-9)
    assert_close(noise_diff(other, 2.0), ref, rtol=1e-9, atol=1e-9)
    x = logits.clone().requires_grad_(True)
    soft = gumbel_softmax(x, 0.5, torch.Generator().manual_seed(1))
    hard = gumbel_softmax(x, 0.5, torch.Generator().manual_seed(1), hard=True)
    assert torch.equal(hard.detach(), torch.nn.functional.one_hot(soft.argmax(-1), 4).to(DT))
    (g_soft,) = torch.autograd.grad((c * soft).sum(), x)
    (g_hard,) = torch.autograd.grad((c * hard).sum(), x)
    assert_close(g_hard, g_soft, rtol=1e-14, atol=0)
    assert float(g_soft.abs().min()) > 0
    # along another dimension: the same law, one-hot over dim 0
    y0 = gumbel_softmax(logits.T, 0.5, torch.Generator().manual_seed(2), hard=True, dim=0)
    assert torch.equal(y0.sum(0), torch.ones(6, dtype=DT)) and set(y0.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize("logits", [[0.0, 1.0, 2.0], [-1.0, 0.5, 0.0, 2.5], [3.0, -2.0], [0.2, 0.2, 0.2]])
def test_categorical_gumbel_softmax_hard_samples_follow_softmax(logits):
    """P(hard sample = e_k) = softmax(l)_k (Gumbel-max): 20000 draws, every frequency within 5 standard errors.
    Catches noise other than Gumbel, e.g. -log u (exponential) instead of -log(-log u)."""
    n = 20000
    lg = torch.tensor(logits, dtype=DT)
    p = torch.softmax(lg, 0)
    se = torch.sqrt(p * (1 - p) / n)
    for seed, (tau, dim) in enumerate(((1.0, -1), (0.3, 0))):
        x = lg.expand(n, -1) if dim == -1 else lg.unsqueeze(1).expand(-1, n)
        y = gumbel_softmax(x, tau, torch.Generator().manual_seed(10 + seed), hard=True, dim=dim)
        freq = y.sum(0 if dim == -1 else 1) / n
        assert bool(((freq - p).abs() <= 5 * se).all()), (tau, dim, freq, p)


@pytest.mark.parametrize("temperature", [0.3, 2.0])
def test_binary_concrete_hard_samples_follow_bernoulli(temperature):
    """P(y > ½) = θ at every temperature: the hard samples of relaxed_bernoulli, GumbelSoftmax(hard=True) and the
    rounded soft samples, 20000 draws per θ, within 5 standard errors."""
    n = 20000
    p = torch.tensor([0.05, 0.3, 0.5, 0.85], dtype=DT)
    probs = p.repeat_interleave(n)
    se = torch.sqrt(p * (1 - p) / n)
    draws = (
        relaxed_bernoulli(probs, temperature, torch.Generator().manual_seed(0), hard=True),
        GumbelSoftmax(temperature, hard=True).sample(probs, torch.Generator().manual_seed(1)),
        (relaxed_bernoulli(probs, temperature, torch.Generator().manual_seed(2)) > 0.5).to(DT),
    )
    for z in draws:
        assert set(z.detach().unique().tolist()) == {0.0, 1.0}
        freq = z.detach().reshape(4, n).mean(1)
        assert bool(((freq - p).abs() <= 5 * se).all()), (freq, p)


def test_relaxed_bernoulli_closed_form_and_low_temperature_limit():
    """Values for given uniforms against the binary-concrete formula written independently; as τ → 0 the
    sample becomes the hard Bernoulli sample [u > 1 - θ] (y > ½ ⇔ θu > (1-θ)(1-u))."""
    p = torch.tensor([0.1, 0.35, 0.5, 0.8, 0.97, 0.6], dtype=DT)
    u = torch.tensor([0.3, 0.9, 0.55, 0.05, 0.6, 0.3], dtype=DT)
    for tau in (0.25, 1.0, 3.0):
        y = relaxed_bernoulli(p, tau, uniforms=u)
        assert_close(y, _binary_concrete(p, u, tau), rtol=1e-12, atol=0)
        hard = relaxed_bernoulli(p, tau, uniforms=u, hard=True)
        assert torch.equal(hard, (_binary_concrete(p, u, tau) > 0.5).to(DT))
    hard_bernoulli = (u > 1 - p).to(DT)
    assert hard_bernoulli.tolist() == [0.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    errors = [float((relaxed_bernoulli(p, tau, uniforms=u) - hard_bernoulli).abs().max()) for tau in (1.0, 0.1, 1e-3)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-12
    assert errors[0] > 0.1  # at τ = 1 the sample is still soft


def test_relaxed_bernoulli_gradient_matches_finite_differences():
    """d/dθ of a weighted sum of binary-concrete samples (fixed uniforms) against central differences in
    float64; the hard (straight-through) sample carries the same gradient."""
    p = torch.tensor([0.1, 0.35, 0.5, 0.8, 0.97], dtype=DT)
    u = torch.tensor([0.3, 0.9, 0.55, 0.05, 0.6], dtype=DT)
    c = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.5], dtype=DT)
    for tau in (0.5, 2.0):
        theta = p.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((c * relaxed_bernoulli(theta, tau, uniforms=u)).sum(), theta)
        (fd,) = central_difference(lambda h, tau=tau: float((c * relaxed_bernoulli(h[0], tau, uniforms=u)).sum()), (p,))
        assert rel_err((g,), (fd,)) < 1e-7
        (g_hard,) = torch.autograd.grad((c * relaxed_bernoulli(theta, tau, uniforms=u, hard=True)).sum(), theta)
        assert_close(g_hard, g, rtol=1e-14, atol=0)


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
