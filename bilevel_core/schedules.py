"""Online learning-rate schedules from real-time hypergradients (thesis Ch. 8).

MARTHE (thesis Algorithm 6): during a single training run, the tangent ``Z_t = μ A_t Z_{t-1} + B_t``
of the parameters with respect to the learning rate is propagated forward, and after every step
the learning rate moves against the hypergradient ``Δη_t = ∇E_t(w_t)ᵀ Z_t``:
``η_t = max(η_{t-1} - β Δη_t, 0)``. ``μ = 0`` gives hypergradient descent (HD, Baydin et al.,
2018) when ``E_t`` is the next mini-batch's training loss; ``μ = 1`` gives RTHO with Δ = 1.

Example:
    >>> import torch
    >>> from bilevel_core import GradientDescent
    >>> from bilevel_core.schedules import marthe
    >>> inner = lambda w, h: ((w[0] - 3.0) ** 2).sum()
    >>> dyn = GradientDescent(inner, lr=lambda h: h[0])
    >>> state, lrs = marthe((torch.zeros(1),), torch.tensor(0.01), dyn, lambda w, h: inner(w, h), 20,
    ...                     beta=1e-3, mu=0.9)
    >>> bool(lrs[-1] > lrs[0])  # the schedule grows while the loss keeps falling
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._validation import Params
from .dynamics import Dynamics, DynamicsState
from .hypergradient import Batches, real_time_hypergradients


def marthe(
    params0: Params | DynamicsState,
    lr: Tensor,
    dynamics: Dynamics,
    outer: Callable[..., Tensor],
    T: int,
    *,
    beta: float,
    mu: float,
    batches: Batches = None,
    outer_batches: Batches = None,
    callback: Callable[[int, DynamicsState | None, float], Any] | None = None,
    stop: Callable[[DynamicsState, int], bool] | None = None,
) -> tuple[DynamicsState, list[float]]:
    """Run T steps with the MARTHE schedule (thesis Algorithm 6); returns the final state and ``η_0..η_T``.

    Args:
        params0: initial parameters (or a state to continue).
        lr: a 0-dim tensor holding ``η_0``; it is updated in place. The dynamics must read their
            learning rate from it, e.g. ``GradientDescent(inner, lr=lambda h: h[0])``.
        dynamics: the inner dynamics, with ``hparams = (lr,)``.
        outer: ``E_t(params, hparams)`` or, with ``outer_batches``, ``E_t(params, hparams, batch)``.
        T: number of steps.
        beta: hyper-learning rate β (> 0).
        mu: discount μ in [0, 1] (0: HD, 1: RTHO).
        batches, outer_batches: per-step data for the inner and outer objectives.
        callback: called as ``callback(t, None, η_t)`` after each update (e.g. for logging).
        stop: ``stop(state, t) -> bool`` after every inner step, with the current state (e.g. to
            evaluate and early-stop); the run ends when it returns True.
    """
    if not isinstance(lr, Tensor) or lr.numel() != 1:
        raise TypeError("lr must be a 1-element tensor holding the initial learning rate (updated in place).")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}.")
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"mu must be in [0, 1], got {mu}.")
    history = [float(lr)]
    gen = real_time_hypergradients(params0, (lr,), dynamics, outer, T, every=1, batches=batches,
                                   outer_batches=outer_batches, discount=mu, stop=stop)
    state: DynamicsState | None = None
    while True:
        try:
            t, (g,) = next(gen)
        except StopIteration as done:
            state = done.value
            break
        with torch.no_grad():
            lr.sub_(beta * g.reshape(lr.shape)).clamp_(min=0.0)
        history.append(float(lr))
        if callback is not None:
            callback(t, None, float(lr))
    assert state is not None
    return state, history
