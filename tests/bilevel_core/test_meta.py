"""Hyper-representations (ICML 2018): the feature-space hypergradient equals differentiating the whole
unrolled episode; the baselines' gradients are what they claim; meta-training lowers the outer loss."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from bilevel_core.meta import HyperRepresentation, conv4_features, conv4_init, mean_ci95

DT = torch.float64


def _linear_features(params, x):
    return torch.tanh(x.flatten(1) @ params[0])


def _episode(seed, n_way=3, k=4, q=5, d=6):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_way, d, generator=g, dtype=DT)
    y_tr, y_q = torch.arange(n_way).repeat_interleave(k), torch.arange(n_way).repeat_interleave(q)
    x_tr = centers[y_tr] + 0.5 * torch.randn(len(y_tr), d, generator=g, dtype=DT)
    x_q = centers[y_q] + 0.5 * torch.randn(len(y_q), d, generator=g, dtype=DT)
    return SimpleNamespace(support=x_tr, support_labels=y_tr, query=x_q, query_labels=y_q)


def _model(mode, T=4):
    H0 = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=DT)
    return HyperRepresentation(n_way=3, T=T, inner_lr=0.5, mode=mode, features=_linear_features, params=(H0,),
                               dtype=DT)


def _unrolled_loss(H, log_lr, ep, T, detach_head=False, val_is_train=False):
    """The episode's outer loss by plain autograd through T explicit head steps."""
    f_tr = _linear_features((H,), ep.support)
    xv, yv = (ep.support, ep.support_labels) if val_is_train else (ep.query, ep.query_labels)
    f_val = _linear_features((H,), xv)
    w = torch.zeros(5, 3, dtype=DT, requires_grad=True)
    b = torch.zeros(3, dtype=DT, requires_grad=True)
    for _ in range(T):
        gw, gb = torch.autograd.grad(F.cross_entropy(f_tr @ w + b, ep.support_labels), (w, b), create_graph=True)
        w, b = w - log_lr.exp() * gw, b - log_lr.exp() * gb
    if detach_head:
        w, b = w.detach(), b.detach()
    return F.cross_entropy(f_val @ w + b, yv)


@pytest.mark.parametrize("mode", ["bilevel", "approx", "bilevel_train", "classic"])
def test_episode_hypergradient_matches_unrolled_autograd(mode):
    model = _model(mode)
    ep = _episode(1)
    (gH,), g_lr, loss = model.episode_hypergradient(ep.support, ep.support_labels, ep.query, ep.query_labels)
    H = model.params[0].detach().clone().requires_grad_(True)
    log_lr = model.log_lr.detach().clone().requires_grad_(True)
    ref = _unrolled_loss(H, log_lr, ep, 4, detach_head=mode in ("approx", "classic"),
                         val_is_train=mode in ("bilevel_train", "classic"))
    rH, r_lr = torch.autograd.grad(ref, (H, log_lr), allow_unused=True)
    assert loss == pytest.approx(float(ref), rel=1e-12)
    torch.testing.assert_close(gH, rH, rtol=1e-10, atol=1e-12)
    if mode in ("approx", "classic"):
        assert float(g_lr) == 0.0  # the head's dynamics are ignored
    else:
        torch.testing.assert_close(g_lr, r_lr, rtol=1e-10, atol=1e-12)


def test_meta_training_lowers_the_outer_loss_on_new_episodes():
    model = _model("bilevel", T=5)
    episodes = [_episode(s) for s in range(120)]
    held_out = [_episode(1000 + s) for s in range(30)]

    def mean_outer_loss():
        return sum(model.episode_hypergradient(e.support, e.support_labels, e.query, e.query_labels)[2]
                   for e in held_out) / len(held_out)

    before = mean_outer_loss()
    for group in model.optimizer.param_groups:
        group["lr"] = 0.05
    model.fit(episodes, meta_iters=30)
    after = mean_outer_loss()
    assert after < 0.8 * before, (before, after)
    assert len(model.history) == 30


def test_conv4_shapes_and_ci():
    params = conv4_init(8, generator=torch.Generator().manual_seed(0))
    assert conv4_features(params, torch.rand(10, 1, 28, 28)).shape == (10, 8)
    m, h = mean_ci95([0.5, 0.7, 0.6, 0.8])
    # sample std with n - 1: sqrt((0.15² + 0.05² + 0.05² + 0.15²) / 3); half-width 1.96 s / sqrt(4)
    assert m == pytest.approx(0.65, rel=1e-12) and h == pytest.approx(1.96 * (0.05 / 3) ** 0.5 / 2, rel=1e-12)
    m1, h1 = mean_ci95([0.4])
    assert m1 == 0.4 and h1 != h1  # one value: no interval (NaN)
    with pytest.raises(ValueError, match="mode"):
        HyperRepresentation(mode="maml")


def test_state_dict_round_trip_continues_identically():
    """A checkpointed learner continues exactly like the uninterrupted one (resumable meta-training)."""
    episodes = [_episode(s) for s in range(24)]
    full = _model("bilevel").fit(episodes, meta_iters=6)
    first = _model("bilevel").fit(episodes, meta_iters=3)
    resumed = _model("bilevel")
    resumed.load_state_dict(first.state_dict())
    resumed.fit(episodes, meta_iters=6, start=3)
    torch.testing.assert_close(resumed.params[0], full.params[0], rtol=0, atol=0)
    assert [h["outer_loss"] for h in resumed.history] == [h["outer_loss"] for h in full.history]
