"""Small float64 bilevel problems shared by the core's tests."""

from __future__ import annotations

import torch

DT = torch.float64


def logistic_data(n: int = 40, d: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=DT)
    w_true = torch.randn(d, generator=g, dtype=DT)
    y = (X @ w_true + 0.5 * torch.randn(n, generator=g, dtype=DT) > 0).to(DT)
    Xv = torch.randn(n, d, generator=g, dtype=DT)
    yv = (Xv @ w_true > 0).to(DT)
    return X, y, Xv, yv


def logistic_inner(X, y):
    """Logistic loss with one L2 weight per feature: hparams[0] = log-weights (d,)."""

    def inner(params, hparams, batch=None):
        (w,) = params
        Xb, yb = (X, y) if batch is None else batch
        logits = Xb @ w
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yb)
        return loss + 0.5 * (torch.exp(hparams[0]) * w * w).sum()

    return inner


def logistic_outer(Xv, yv):
    def outer(params, hparams):
        (w,) = params
        return torch.nn.functional.binary_cross_entropy_with_logits(Xv @ w, yv)

    return outer


def central_difference(f, hparams, eps: float = 1e-6):
    """Central finite differences of a scalar function of a tuple of tensors."""
    grads = []
    for i, h in enumerate(hparams):
        g = torch.zeros_like(h)
        for j in range(h.numel()):
            plus = [x.clone() for x in hparams]
            minus = [x.clone() for x in hparams]
            plus[i].view(-1)[j] += eps
            minus[i].view(-1)[j] -= eps
            g.view(-1)[j] = (f(tuple(plus)) - f(tuple(minus))) / (2 * eps)
        grads.append(g)
    return tuple(grads)


def rel_err(a, b) -> float:
    a = torch.cat([x.reshape(-1) for x in a])
    b = torch.cat([x.reshape(-1) for x in b])
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, *, rtol: float, atol: float = 0.0, msg: str = ""
) -> None:
    """Same shape and dtype, and ``|actual - expected| <= atol + rtol |expected|`` everywhere.

    A light stand-in for ``torch.testing.assert_close``, whose first call imports sympy (about 1 s).
    """
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (msg, actual, expected)
    err = (actual - expected).abs().max() if actual.numel() else 0.0
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (msg, actual, expected, err)
