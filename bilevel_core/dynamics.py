"""Differentiable inner dynamics ``s_t = Φ_t(s_{t-1}, λ)``.

Each dynamics is a pure map from a :class:`DynamicsState` to the next one, built from an inner
objective ``inner(params, hparams[, batch]) -> scalar``. Optimizer settings (learning rate,
momentum, Adam's betas) are numbers or functions of the hyperparameters, so they can be tuned.

The inner gradient is taken with :func:`torch.autograd.grad`; with ``create_graph=True`` reverse
mode differentiates through it. Forward mode moves all tangents at once with batched reverse-mode
products over the same graph (a Hessian-vector product and the update's double VJP); a dynamics that
overrides ``__call__`` or ``gradient`` is passed through with :mod:`torch.autograd.forward_ad` dual
tensors instead (forward-over-reverse, one direction at a time).

Example:
    >>> import torch
    >>> from bilevel_core import GradientDescent
    >>> inner = lambda params, hparams: ((params[0] - hparams[0]) ** 2).sum()
    >>> dyn = GradientDescent(inner, lr=0.5)
    >>> state = dyn.init((torch.zeros(2),), (torch.ones(2),))
    >>> state = dyn(state, (torch.ones(2),), create_graph=False)
    >>> state.params[0]
    tensor([1., 1.])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from ._validation import Params, check_callable, check_scalar


class PerStep:
    """An optimizer setting that depends on the step: ``fn(hparams, t) -> value``, ``t = 0, 1, ...``.

    E.g. a learning-rate schedule with one hyperparameter per step (LRS-OPT, thesis Sec. 8.5):
    ``GradientDescent(inner, lr=PerStep(lambda hp, t: torch.exp(hp[0][t])))``. ``t`` is the number of
    steps taken before this one (``state.t``), so a continued run keeps counting.
    """

    def __init__(self, fn: Callable[[Params, int], Tensor | float]) -> None:
        self.fn = check_callable(fn, "fn")

    def __call__(self, hparams: Params, t: int) -> Tensor | float:
        return self.fn(hparams, t)


Setting = float | Tensor | Callable[[Params], Tensor | float] | PerStep
"""An optimizer setting: a number, a tensor, or a function of the hyperparameters."""


class _NoBatch:
    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        return "NO_BATCH"


NO_BATCH: Any = _NoBatch()
"""Sentinel: the inner objective is called as ``inner(params, hparams)`` (no per-step data)."""


@dataclass(frozen=True)
class DynamicsState:
    """State ``s_t`` of an inner run: parameters, auxiliary variables and step count.

    Attributes:
        params: the inner variables ``w_t``.
        aux: auxiliary variables, one tuple per slot (velocity for momentum; first and second
            moments for Adam), each with one tensor per parameter.
        t: number of steps taken so far.
        loss: the inner objective at the start of the last step (detached), or ``None``.
        stopped: ``True`` when a data-dependent ``stop`` rule ended the run.
        outer_loss: outer objective at the final state, set by :func:`hypergradient`.
    """

    params: Params
    aux: tuple[Params, ...] = ()
    t: int = 0
    loss: Tensor | None = None
    stopped: bool = False
    outer_loss: Tensor | None = field(default=None, compare=False)

    def tensors(self) -> Params:
        """All differentiable state tensors, flattened: params first, then every aux slot."""
        out = list(self.params)
        for slot in self.aux:
            out.extend(slot)
        return tuple(out)

    def with_tensors(self, tensors: Params) -> DynamicsState:
        """Return a copy whose tensors are replaced (inverse of :meth:`tensors`)."""
        n = len(self.params)
        params = tuple(tensors[:n])
        aux = []
        offset = n
        for slot in self.aux:
            aux.append(tuple(tensors[offset : offset + len(slot)]))
            offset += len(slot)
        return replace(self, params=params, aux=tuple(aux))

    def detach(self) -> DynamicsState:
        """A copy cut from any autograd graph (the start of a truncated window)."""
        return self.with_tensors(tuple(t.detach() for t in self.tensors()))


def resolve_setting(setting: Setting, hparams: Params, name: str, t: int = 0) -> Tensor | float:
    """Evaluate an optimizer setting: call it on ``hparams`` (and the step ``t`` for :class:`PerStep`)."""
    if callable(setting):
        value = setting(hparams, t) if isinstance(setting, PerStep) else setting(hparams)
        if not isinstance(value, (Tensor, float, int)):
            raise TypeError(f"{name}(hparams) must return a tensor or a number, got {type(value).__name__}.")
        return value
    return setting


def _check_broadcast(value: Tensor | float, shape: torch.Size, name: str, index: int) -> None:
    if isinstance(value, Tensor) and value.dim() > 0:
        try:
            out = torch.broadcast_shapes(value.shape, shape)
        except RuntimeError:
            out = None
        if out != shape:
            raise ValueError(
                f"{name} has shape {tuple(value.shape)}, which does not broadcast to params[{index}] of "
                f"shape {tuple(shape)}; return a scalar or a tensor broadcastable to each parameter."
            )


def check_setting(setting: Any, name: str, *, low: float, high: float = float("inf"), closed_low: bool = False) -> Any:
    """Validate an optimizer setting given at construction: a number, a tensor or a callable.

    A number or tensor must lie in ``(low, high)`` (``[low, high)`` with ``closed_low``); callables are
    checked when called (their value may depend on the hyperparameters).
    """
    if isinstance(setting, bool) or not isinstance(setting, (int, float, Tensor)) and not callable(setting):
        raise TypeError(
            f"{name} must be a number, a tensor or a function of the hyperparameters, got {type(setting).__name__}."
        )
    if callable(setting):
        return setting
    value = setting.detach() if isinstance(setting, Tensor) else torch.tensor(float(setting))
    if value.numel() == 0:
        raise ValueError(f"{name} is an empty tensor; give a number or a tensor broadcastable to the parameters.")
    if not value.is_floating_point():
        value = value.double()
    lo, hi = float(value.min()), float(value.max())
    above = lo >= low if closed_low else lo > low
    if not (above and hi < high):  # NaN fails both comparisons, ±inf one of them
        bound = (f"be {'>=' if closed_low else '>'} {low:g}" if high == float("inf")
                 else f"lie in {'[' if closed_low else '('}{low:g}, {high:g})")
        shown = f"{float(value):g}" if value.numel() == 1 else f"values in [{lo:g}, {hi:g}]"
        raise ValueError(f"{name} must {bound}, got {shown}.")
    return setting


class Dynamics:
    """Base class: ``Φ(state, hparams, batch) -> state`` built from an inner objective.

    Args:
        inner: ``inner(params, hparams)`` or, with per-step data, ``inner(params, hparams, batch)``;
            returns a scalar.
    """

    #: number of auxiliary slots (velocity, moments, ...)
    num_aux: int = 0

    def __init__(self, inner: Callable[..., Tensor]) -> None:
        self.inner = check_callable(inner, "inner")

    def init(self, params: Params, hparams: Params) -> DynamicsState:
        """``s_0``: the parameters and zeroed auxiliary variables."""
        params = tuple(params)
        aux = tuple(tuple(torch.zeros_like(p) for p in params) for _ in range(self.num_aux))
        return DynamicsState(params=params, aux=aux, t=0)

    def inner_loss(self, params: Params, hparams: Params, batch: Any = NO_BATCH) -> Tensor:
        """Evaluate the inner objective (with the batch when one is given)."""
        value = self.inner(params, hparams) if batch is NO_BATCH else self.inner(params, hparams, batch)
        return check_scalar(value, "inner")

    def gradient(
        self, params: Params, hparams: Params, batch: Any = NO_BATCH, create_graph: bool = True
    ) -> tuple[Tensor, Params]:
        """Inner loss and ``∇_w L(w, λ)``; with ``create_graph`` the gradient is differentiable."""
        params = tuple(p if p.requires_grad else p.detach().requires_grad_(True) for p in params)
        with torch.enable_grad():
            loss = self.inner_loss(params, hparams, batch)
            grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
        grads = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(params, grads))
        return loss.detach(), grads

    def update(
        self, state: DynamicsState, grads: Params, hparams: Params
    ) -> tuple[Params, tuple[Params, ...]]:
        """The optimizer rule: new params and aux from the gradient (override in subclasses)."""
        raise NotImplementedError

    def __call__(
        self,
        state: DynamicsState,
        hparams: Params,
        batch: Any = NO_BATCH,
        *,
        create_graph: bool = True,
    ) -> DynamicsState:
        """One step ``s_t = Φ_t(s_{t-1}, λ)``; ``create_graph=False`` gives a cheap, detached step."""
        loss, grads = self.gradient(state.params, hparams, batch, create_graph=create_graph)
        if create_graph:
            params, aux = self.update(state, grads, hparams)
        else:
            with torch.no_grad():
                params, aux = self.update(state, grads, hparams)
            params = tuple(p.detach() for p in params)
            aux = tuple(tuple(a.detach() for a in slot) for slot in aux)
        return DynamicsState(params=params, aux=aux, t=state.t + 1, loss=loss)

    def _setting(self, setting: Setting, hparams: Params, name: str, params: Params, t: int = 0) -> Tensor | float:
        value = resolve_setting(setting, hparams, name, t)
        for i, p in enumerate(params):
            _check_broadcast(value, p.shape, name, i)
        return value


class GradientDescent(Dynamics):
    """Gradient descent, ``w_t = w_{t-1} - η ∇L(w_{t-1}, λ)`` (thesis eq. 5.9).

    Args:
        inner: inner objective.
        lr: learning rate ``η``: a number, tensor, or function of the hyperparameters.
    """

    def __init__(self, inner: Callable[..., Tensor], lr: Setting) -> None:
        super().__init__(inner)
        self.lr = check_setting(lr, "lr", low=0.0)

    def update(self, state, grads, hparams):
        lr = self._setting(self.lr, hparams, "lr", state.params, state.t)
        return tuple(p - lr * g for p, g in zip(state.params, grads)), ()


class Momentum(Dynamics):
    """Heavy-ball momentum (thesis eq. 5.10): ``v_t = μ v_{t-1} + ∇L``, ``w_t = w_{t-1} - η v_t``.

    Args:
        inner: inner objective.
        lr: learning rate ``η`` (number, tensor or function of the hyperparameters).
        momentum: ``μ`` (number, tensor or function of the hyperparameters).
    """

    num_aux = 1

    def __init__(self, inner: Callable[..., Tensor], lr: Setting, momentum: Setting = 0.9) -> None:
        super().__init__(inner)
        self.lr = check_setting(lr, "lr", low=0.0)
        self.momentum = check_setting(momentum, "momentum", low=0.0, high=1.0, closed_low=True)

    def update(self, state, grads, hparams):
        lr = self._setting(self.lr, hparams, "lr", state.params, state.t)
        mu = self._setting(self.momentum, hparams, "momentum", state.params, state.t)
        velocity = tuple(mu * v + g for v, g in zip(state.aux[0], grads))
        params = tuple(p - lr * v for p, v in zip(state.params, velocity))
        return params, (velocity,)


class Adam(Dynamics):
    """Adam (Kingma & Ba, 2015, Algorithm 1) as a differentiable map.

    ``m_t = β1 m + (1-β1) g``, ``v_t = β2 v + (1-β2) g²``,
    ``w_t = w_{t-1} - η m̂_t / sqrt(v̂_t + ε²)`` with bias-corrected ``m̂, v̂``.

    The denominator ``sqrt(v̂ + ε²)`` replaces ``sqrt(v̂) + ε``: the two agree to O(ε) but the
    former is smooth at ``v = 0``, where the derivative of ``sqrt`` is infinite and would make
    the reverse pass NaN.

    Args:
        inner: inner objective.
        lr: learning rate ``η``; ``betas``: ``(β1, β2)``; each a number, tensor or function of
            the hyperparameters. ``eps``: a number.
    """

    num_aux = 2

    def __init__(
        self,
        inner: Callable[..., Tensor],
        lr: Setting = 1e-3,
        betas: tuple[Setting, Setting] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(inner)
        if not (isinstance(betas, tuple) and len(betas) == 2):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}.")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}.")
        self.lr = check_setting(lr, "lr", low=0.0)
        self.betas = tuple(
            check_setting(b, f"betas[{i}]", low=0.0, high=1.0, closed_low=True) for i, b in enumerate(betas)
        )
        self.eps = float(eps)

    def update(self, state, grads, hparams):
        lr = self._setting(self.lr, hparams, "lr", state.params, state.t)
        beta1 = self._setting(self.betas[0], hparams, "betas[0]", state.params, state.t)
        beta2 = self._setting(self.betas[1], hparams, "betas[1]", state.params, state.t)
        t = state.t + 1
        m = tuple(beta1 * m_ + (1 - beta1) * g for m_, g in zip(state.aux[0], grads))
        v = tuple(beta2 * v_ + (1 - beta2) * g * g for v_, g in zip(state.aux[1], grads))
        c1 = 1 - beta1**t
        c2 = 1 - beta2**t
        eps2 = self.eps**2
        params = tuple(
            p - lr * (m_ / c1) / torch.sqrt(v_ / c2 + eps2) for p, m_, v_ in zip(state.params, m, v)
        )
        return params, (m, v)
