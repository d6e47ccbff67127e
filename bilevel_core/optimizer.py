"""A thin hyper-optimizer loop over :func:`hypergradient` (in the spirit of FAR-HO's ``minimize``).

Each :meth:`HyperOptimizer.step` runs ``T`` inner steps, takes the hypergradient with the chosen
method, hands it to any ``torch.optim`` optimizer over λ, and applies a projection. With
``warm_start=True`` the next inner run continues from the last one's final state (warm restart of
w) until :meth:`HyperOptimizer.restart`; otherwise it starts from ``params0`` every time.

A step may override ``T``, the outer objective and any hypergradient option, which expresses
windowed schemes such as LDS (thesis Algorithm 7): one inner run cut into windows of τ steps, a
truncated hypergradient on a freshly sampled outer objective and an update after each window, a
data-dependent stop (``stop=``, then ``state.stopped``), and a restart of w per outer iteration.

Example:
    >>> import torch
    >>> from bilevel_core import GradientDescent, HyperOptimizer, project_box
    >>> lam = torch.zeros(1, requires_grad=True)
    >>> inner = lambda w, h: ((w[0] - h[0]) ** 2).sum()
    >>> outer = lambda w, h: ((w[0] - 1.0) ** 2).sum()
    >>> hopt = HyperOptimizer(GradientDescent(inner, lr=0.5), outer, (lam,),
    ...                       torch.optim.SGD([lam], lr=0.5), T=5, projection=project_box(0.0, 2.0))
    >>> for _ in range(50): _ = hopt.step((torch.zeros(1),))
    >>> round(float(lam.detach()), 3)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._validation import Params, as_tensor_tuple, check_positive_int
from .dynamics import Dynamics, DynamicsState
from .hypergradient import _check_options, hypergradient

Projection = Callable[[Params], Any]
Outer = Callable[[Params, Params], Tensor]


def project_box(low: float | None = None, high: float | None = None) -> Projection:
    """Projection onto the box ``[low, high]`` (in place), e.g. ``[0, 1]`` for Bernoulli parameters."""
    for name, bound in (("low", low), ("high", high)):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                  or bound != bound):
            raise TypeError(f"project_box: {name} must be a number or None, got {bound!r}.")
    if low is not None and high is not None and low > high:
        raise ValueError(f"project_box: low={low} exceeds high={high}; the box [low, high] would be empty.")

    def project(hparams: Params) -> None:
        with torch.no_grad():
            for h in hparams:
                h.clamp_(min=low, max=high)

    return project


class HyperOptimizer:
    """Hyper-step = T inner steps + hypergradient + ``optimizer.step()`` + projection.

    Args:
        dynamics: the inner dynamics.
        outer: the outer objective ``E(params, hparams)`` (``None``: every :meth:`step` passes ``outer=``).
        hparams: leaf tensors with ``requires_grad=True`` (the optimizer's parameters).
        optimizer: a ``torch.optim.Optimizer`` over ``hparams``, or a factory ``list -> Optimizer``.
        T: inner steps per hyper-step.
        method: any method of :func:`hypergradient`; ``**options`` are passed to it.
        projection: called on ``hparams`` after each update (in place), e.g. :func:`project_box`.
        warm_start: continue the inner run from the previous final state (warm restarts of w) until
            :meth:`restart`.

    Attributes:
        state: the final (detached) inner state of the last step (``None`` before the first one and after
            :meth:`restart`); ``state.t`` counts the inner steps since the last restart.
        history: the outer objective ``E(w_T)`` of every step.
    """

    def __init__(
        self,
        dynamics: Dynamics,
        outer: Outer | None,
        hparams: Params,
        optimizer: torch.optim.Optimizer | Callable[[list[Tensor]], torch.optim.Optimizer],
        T: int,
        method: str = "reverse",
        *,
        projection: Projection | None = None,
        warm_start: bool = False,
        **options: Any,
    ) -> None:
        self.hparams = as_tensor_tuple(hparams, "hparams")
        for i, h in enumerate(self.hparams):
            if not (h.is_leaf and h.requires_grad):
                raise ValueError(
                    f"hparams[{i}] must be a leaf tensor with requires_grad=True (the optimizer updates it); "
                    "create it with torch.tensor(..., requires_grad=True)."
                )
        if "return_state" in options:
            raise TypeError("return_state is managed by HyperOptimizer; the last state is in .state.")
        _check_options(method, options)
        self.optimizer = optimizer if isinstance(optimizer, torch.optim.Optimizer) else optimizer(
            list(self.hparams)
        )
        if outer is not None and not callable(outer):
            raise TypeError(f"outer must be a callable outer(params, hparams) -> scalar or None, got "
                            f"{type(outer).__name__}.")
        self.dynamics = dynamics
        self.outer = outer
        self.T = check_positive_int(T, "T")
        self.method = method
        self.projection = projection
        self.warm_start = bool(warm_start)
        self.options = options
        self.state: DynamicsState | None = None
        self.history: list[float] = []

    def restart(self) -> None:
        """Forget the inner state: the next :meth:`step` starts from its ``params0`` (a new inner run)."""
        self.state = None

    def step(self, params0: Any = None, *, T: int | None = None, outer: Outer | None = None, **options: Any) -> float:
        """One hyper-step from ``params0`` (or the last state when warm-starting); returns ``E(w_T)``.

        ``T``, ``outer`` and ``options`` override, for this step only, the constructor's ``T``, outer
        objective and hypergradient options (e.g. a shorter last window, a resampled outer objective,
        ``truncate=``, a fresh ``stop`` rule or ``deferred_grads``).
        """
        if "return_state" in options:
            raise TypeError("return_state is managed by HyperOptimizer; the last state is in .state.")
        _check_options(self.method, options)
        start = self.state if (self.warm_start and self.state is not None) else params0
        if start is None:
            raise ValueError("step needs params0 (the initial inner params) unless it continues a warm-started run.")
        outer = self.outer if outer is None else outer
        if outer is None:
            raise ValueError("no outer objective: pass outer= to HyperOptimizer or to step.")
        T = self.T if T is None else check_positive_int(T, "T")
        grads, state = hypergradient(
            start, self.hparams, self.dynamics, outer, T, self.method, return_state=True,
            **{**self.options, **options}
        )
        self.optimizer.zero_grad(set_to_none=True)
        for h, g in zip(self.hparams, grads):
            h.grad = g.detach().clone()
        self.optimizer.step()
        if self.projection is not None:
            self.projection(self.hparams)
        self.state = state
        value = float(state.outer_loss) if state.outer_loss is not None else float("nan")
        self.history.append(value)
        return value
