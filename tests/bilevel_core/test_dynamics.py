"""The dynamics follow the optimizers they name (compared with torch.optim step by step)."""

import pytest
import torch

from bilevel_core import Adam, GradientDescent, Momentum

from .problems import DT, logistic_data, logistic_inner


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda f: GradientDescent(f, lr=0.3), lambda p: torch.optim.SGD(p, lr=0.3)),
        (lambda f: Momentum(f, lr=0.3, momentum=0.7), lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.7)),
        (lambda f: Adam(f, lr=0.05, betas=(0.8, 0.99), eps=1e-12),
         lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.8, 0.99), eps=1e-12)),
    ],
)
def test_matches_torch_optim(ours, theirs):
    X, y, _, _ = logistic_data()
    inner = logistic_inner(X, y)
    hp = (torch.log(torch.full((4,), 0.1, dtype=DT)),)
    dyn = ours(inner)
    state = dyn.init((torch.zeros(4, dtype=DT),), hp)
    w = torch.zeros(4, dtype=DT, requires_grad=True)
    opt = theirs([w])
    for _ in range(30):
        state = dyn(state, hp, create_graph=False)
        opt.zero_grad()
        inner((w,), hp).backward()
        opt.step()
    assert state.t == 30
    assert torch.allclose(state.params[0], w.detach(), rtol=1e-9, atol=1e-11)


def test_adam_reverse_pass_finite_at_zero_gradient():
    """sqrt(v̂ + ε²): a parameter with exactly zero gradient does not make the reverse pass NaN."""

    def inner(params, hparams):
        return ((params[0][:2] - hparams[0]) ** 2).sum()  # params[0][2] never gets a gradient

    lam = torch.tensor([1.0, 2.0], dtype=DT, requires_grad=True)
    dyn = Adam(inner, lr=0.1)
    state = dyn.init((torch.zeros(3, dtype=DT),), (lam,))
    for _ in range(5):
        state = dyn(state, (lam,), create_graph=True)
    (g,) = torch.autograd.grad(state.params[0].sum(), lam)
    assert torch.isfinite(g).all() and (g != 0).all()
