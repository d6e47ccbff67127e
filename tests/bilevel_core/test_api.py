"""Bad input, the nn.Module adapter, HyperOptimizer and real-time (RTHO) hypergradients."""

import pytest
import torch

from bilevel_core import (
    Adam,
    DynamicsState,
    FunctionalModule,
    GradientDescent,
    HyperOptimizer,
    Momentum,
    hypergradient,
    project_box,
    real_time_hypergradients,
)

from .problems import DT, assert_close, logistic_data, logistic_inner, logistic_outer, rel_err


def _problem():
    X, y, Xv, yv = logistic_data()
    return logistic_inner(X, y), logistic_outer(Xv, yv), (torch.zeros(4, dtype=DT),), (torch.zeros(4, dtype=DT),)


def test_bad_input_errors_name_the_argument():
    inner, outer, hp, w0 = _problem()
    dyn = GradientDescent(inner, lr=0.1)
    with pytest.raises(ValueError, match="T must be >= 1"):
        hypergradient(w0, hp, dyn, outer, 0)
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        hypergradient(w0, hp, dyn, outer, 3, method="magic")
    with pytest.raises(ValueError, match="truncate=5 exceeds T=3"):
        hypergradient(w0, hp, dyn, outer, 3, truncate=5)
    with pytest.raises(TypeError, match="unknown option.*trunc"):
        hypergradient(w0, hp, dyn, outer, 3, trunc=2)
    with pytest.raises(TypeError, match="unknown option.*truncate.*forward"):
        hypergradient(w0, hp, dyn, outer, 3, method="forward", truncate=2)
    with pytest.raises(ValueError, match="outer must return a scalar"):
        hypergradient(w0, hp, dyn, lambda w, h: w[0] * 2, 3)
    bad_inner = GradientDescent(lambda w, h: w[0] ** 2, lr=0.1)
    with pytest.raises(ValueError, match="inner must return a scalar"):
        hypergradient(w0, hp, bad_inner, outer, 3)
    with pytest.raises(ValueError, match="lr has shape"):
        hypergradient(w0, hp, GradientDescent(inner, lr=torch.ones(3, dtype=DT)), outer, 3)
    with pytest.raises(TypeError, match="hparams"):
        hypergradient(w0, "lambda", dyn, outer, 3)
    with pytest.raises(TypeError, match="floating-point"):
        hypergradient(w0, (torch.zeros(4, dtype=torch.long),), dyn, outer, 3)
    state = DynamicsState(params=w0, aux=((torch.zeros(3, dtype=DT),),), t=0)
    with pytest.raises(ValueError, match="shape mismatch"):
        hypergradient(state, hp, Momentum(inner, lr=0.1), outer, 3)
    with pytest.raises(ValueError, match="auxiliary slots"):
        hypergradient(DynamicsState(params=w0), hp, Momentum(inner, lr=0.1), outer, 3)


def test_out_of_range_settings_and_non_finite_hyperparameters_are_refused():
    inner, outer, hp, w0 = _problem()
    with pytest.raises(ValueError, match="lr must be > 0, got -0.1"):
        GradientDescent(inner, lr=-0.1)
    with pytest.raises(ValueError, match=r"lr must be > 0, got values in \[-1, 0.5\]"):
        GradientDescent(inner, lr=torch.tensor([0.5, -1.0]))
    with pytest.raises(TypeError, match="lr must be a number, a tensor or a function"):
        GradientDescent(inner, lr="0.1")
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\), got 1"):
        Momentum(inner, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"betas\[1\] must lie in \[0, 1\), got nan"):
        Adam(inner, lr=0.1, betas=(0.9, float("nan")))
    Momentum(inner, lr=lambda h: h[0].exp().sum(), momentum=0.0)  # callables are resolved when called
    with pytest.raises(ValueError, match=r"hparams\[0\] has 1 non-finite value"):
        hypergradient(w0, (torch.tensor([0.0, float("nan"), 0.0, 0.0], dtype=DT),), GradientDescent(inner, lr=0.1),
                      outer, 3)
    with pytest.raises(ValueError, match="low=1.0 exceeds high=0.0"):
        project_box(1.0, 0.0)


def test_functional_module_adapter_matches_pure_function():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    fnet = FunctionalModule(net)
    X, y, Xv, yv = logistic_data()

    def inner(params, hparams):
        out = fnet(params, X).squeeze(-1)
        l2 = sum((p**2).sum() for p in params)
        return torch.nn.functional.binary_cross_entropy_with_logits(out, y) + torch.exp(hparams[0]) * l2

    def outer(params, hparams):
        return torch.nn.functional.binary_cross_entropy_with_logits(fnet(params, Xv).squeeze(-1), yv)

    hp = (torch.tensor(-3.0, dtype=DT),)
    dyn = GradientDescent(inner, lr=0.3)
    rev = hypergradient(fnet.init_params(), hp, dyn, outer, 10)
    fwd = hypergradient(fnet.init_params(), hp, dyn, outer, 10, method="forward")
    assert rel_err(rev, fwd) < 1e-10
    assert float(rev[0].abs()) > 0
    with pytest.raises(ValueError, match="unknown parameter"):
        FunctionalModule(net, names=["nope"])


def test_functional_module_load_params_writes_the_module():
    """load_params copies the tuple into the module's own parameters: afterwards the module itself computes
    what the functional call computes with those params, and init_params returns them (not the old ones)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    fnet = FunctionalModule(net)
    X = torch.randn(6, 4, generator=torch.Generator().manual_seed(1), dtype=DT)
    before = net(X).detach().clone()
    old = fnet.init_params()
    g = torch.Generator().manual_seed(2)
    new = tuple(p + 0.5 * torch.randn(p.shape, generator=g, dtype=DT) for p in old)
    expected = fnet(new, X).detach()
    assert float((expected - before).abs().max()) > 1e-2  # the new params really change the output
    fnet.load_params(new)
    for p_module, p_new in zip(fnet.parameters_tuple(), new):
        assert torch.equal(p_module.detach(), p_new)
        assert p_module.requires_grad and p_module.is_leaf  # still the module's trainable parameters
    assert all(torch.equal(a, b) for a, b in zip(fnet.init_params(), new))
    assert_close(net(X), expected, rtol=0, atol=0)
    # a subset of names: only those parameters are written
    head = FunctionalModule(net, names=["2.bias"])
    weight = net[0].weight.detach().clone()
    head.load_params((torch.tensor([3.0], dtype=DT),))
    assert float(net[2].bias.detach()) == 3.0 and torch.equal(net[0].weight.detach(), weight)
    with pytest.raises(ValueError, match="shape"):
        head.load_params((torch.zeros(2, dtype=DT),))


def test_hyperoptimizer_reduces_outer_loss_and_projects():
    inner, outer, _, w0 = _problem()
    lam = torch.zeros(4, dtype=DT, requires_grad=True)
    hopt = HyperOptimizer(
        GradientDescent(inner, lr=0.5), outer, (lam,), torch.optim.Adam([lam], lr=0.1), T=20,
        projection=project_box(-2.0, 0.5),
    )
    losses = [hopt.step(w0) for _ in range(15)]
    assert losses[-1] < losses[0]
    assert float(lam.detach().max()) <= 0.5 and float(lam.detach().min()) >= -2.0
    warm = HyperOptimizer(GradientDescent(inner, lr=0.5), outer, (lam,), lambda p: torch.optim.SGD(p, lr=0.1),
                          T=5, warm_start=True)
    warm.step(w0)
    warm.step(w0)
    assert warm.state is not None and warm.state.t == 10
    with pytest.raises(ValueError, match="leaf tensor"):
        HyperOptimizer(GradientDescent(inner, lr=0.5), outer, (lam * 2,), lambda p: torch.optim.SGD(p, lr=0.1), T=5)


def test_hyperoptimizer_refuses_return_state():
    """return_state is HyperOptimizer's own business: passing it is a TypeError at construction that says so."""
    inner, outer, _, _ = _problem()
    lam = torch.zeros(4, dtype=DT, requires_grad=True)
    for value in (True, False):
        with pytest.raises(TypeError, match="return_state is managed by HyperOptimizer"):
            HyperOptimizer(GradientDescent(inner, lr=0.5), outer, (lam,), torch.optim.SGD([lam], lr=0.1), T=2,
                           return_state=value)


def test_real_time_with_every_T_equals_offline_forward():
    X, y, Xv, yv = logistic_data()
    inner = logistic_inner(X, y)
    outer = logistic_outer(Xv, yv)
    hp = (torch.log(torch.full((4,), 0.1, dtype=DT)), torch.tensor(0.4, dtype=DT))
    dyn = Momentum(inner, lr=lambda h: h[1], momentum=0.5)
    w0 = (torch.zeros(4, dtype=DT),)
    T = 12
    out = list(real_time_hypergradients(w0, hp, dyn, outer, T, every=T))
    assert [t for t, _ in out] == [T]
    fwd = hypergradient(w0, hp, dyn, outer, T, method="forward")
    assert rel_err(out[0][1], fwd) < 1e-12
    # intermediate yields equal the forward hypergradient of the shorter run
    out4 = list(real_time_hypergradients(w0, hp, dyn, outer, T, every=4))
    assert [t for t, _ in out4] == [4, 8, 12]
    assert rel_err(out4[0][1], hypergradient(w0, hp, dyn, outer, 4, method="forward")) < 1e-12


def test_real_time_sees_in_place_hparam_updates():
    X, y, Xv, yv = logistic_data()
    inner = logistic_inner(X, y)
    outer = logistic_outer(Xv, yv)
    lam = torch.log(torch.full((4,), 0.1, dtype=DT))
    dyn = GradientDescent(inner, lr=0.5)
    w0 = (torch.zeros(4, dtype=DT),)
    gen = real_time_hypergradients(w0, (lam,), dyn, outer, 6, every=3)
    next(gen)
    lam.add_(1.0)  # in-place update between yields
    _, g_changed = next(gen)
    lam.sub_(1.0)
    gen2 = real_time_hypergradients(w0, (lam,), dyn, outer, 6, every=3)
    next(gen2)
    _, g_same = next(gen2)
    assert rel_err(g_changed, g_same) > 1e-3
