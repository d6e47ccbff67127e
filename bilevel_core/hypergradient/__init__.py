"""Hypergradients of ``f_T(λ) = E(w_T(λ), λ)`` through the inner dynamics, one entry point.

Methods (Franceschi et al., ICML 2017; thesis Ch. 5), one module each:

- ``"reverse"`` (:mod:`.reverse`): Algorithm 2 (Reverse-HG), by back-propagation through the unrolled
  steps. ``truncate=τ`` keeps only the last τ steps (truncated back-propagation); ``truncate=0`` gives
  the direct term ``∂_λE`` alone. ``checkpoint_steps=k`` (or ``"sqrt"``) stores states only every k
  steps and re-runs each segment with its graph in the backward pass. ``deferred_grads={i: sink}``
  lets a :class:`DeferredGradient` collect part of ``∂f/∂λ_i`` compactly during the backward pass;
  it is added back before returning.
- ``"forward"`` (:mod:`.forward`): Algorithm 3 (Forward-HG), the tangent recursion
  ``Z_t = A_t Z_{t-1} + B_t`` with Jacobian-vector products (forward-mode dual tensors); memory does
  not grow with T. :func:`real_time_hypergradients` is its real-time variant.
- ``"fixed_point"``, ``"cg"``, ``"neumann"`` (:mod:`.implicit`, solvers in :mod:`.linear_solve`):
  implicit differentiation at ``w_T`` (thesis Sec. 5.4.3), ``∇f = ∂_λE + ∂_λΦᵀ q`` with
  ``(I - ∂_wΦᵀ) q = ∂_wE``.

All of them run the inner steps through one loop (:func:`._loop.iter_steps`).

Example:
    >>> import torch
    >>> from bilevel_core import GradientDescent, hypergradient
    >>> inner = lambda w, lam: ((w[0] - lam[0]) ** 2).sum()
    >>> outer = lambda w, lam: (w[0] ** 2).sum()
    >>> dyn = GradientDescent(inner, lr=0.25)
    >>> (g,) = hypergradient((torch.zeros(1),), (torch.ones(1),), dyn, outer, T=2)
    >>> g  # w_2 = 0.75 λ, f = w_2², f' = 2 · 0.75² λ
    tensor([1.1250])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal, overload

from torch import Tensor

from .._validation import Params, as_tensor_tuple, check_callable, check_finite, check_positive_int
from ..dynamics import Dynamics, DynamicsState
from ._loop import Batches, StopRule, _BatchSource
from .forward import forward_hypergradient, real_time_hypergradients
from .implicit import IMPLICIT_OPTIONS, implicit_hypergradient
from .reverse import DeferredGradient, reverse_hypergradient

METHODS = ("reverse", "forward", "fixed_point", "cg", "neumann")
_COMMON_OPTIONS = frozenset({"batches", "stop", "return_state"})
_METHOD_OPTIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "reverse": frozenset({"truncate", "deferred_grads", "checkpoint_steps"}),
        "forward": frozenset(),
        "fixed_point": IMPLICIT_OPTIONS,
        "cg": IMPLICIT_OPTIONS,
        "neumann": IMPLICIT_OPTIONS,
    }
)

__all__ = [
    "METHODS",
    "Batches",
    "DeferredGradient",
    "StopRule",
    "hypergradient",
    "real_time_hypergradients",
]


def _check_options(method: str, options: Mapping[str, Any]) -> None:
    """Refuse an unknown method, or an option the method does not take (naming the methods that do)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    allowed = _COMMON_OPTIONS | _METHOD_OPTIONS[method]
    unknown = sorted(set(options) - allowed)
    if unknown:
        hints = [
            f"{name} is for method={'/'.join(m for m in METHODS if name in _METHOD_OPTIONS[m])}"
            for name in unknown
            if any(name in _METHOD_OPTIONS[m] for m in METHODS)
        ]
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for method={method!r}; "
            f"valid options: {', '.join(sorted(allowed))}." + (f" ({'; '.join(hints)})" if hints else "")
        )


@overload
def hypergradient(
    params0: Params | DynamicsState | Callable[[Params], Params],
    hparams: Params | Tensor,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    method: str = ...,
    *,
    return_state: Literal[False] = ...,
    **options: Any,
) -> Params: ...


@overload
def hypergradient(
    params0: Params | DynamicsState | Callable[[Params], Params],
    hparams: Params | Tensor,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    method: str = ...,
    *,
    return_state: Literal[True],
    **options: Any,
) -> tuple[Params, DynamicsState]: ...


@overload
def hypergradient(
    params0: Params | DynamicsState | Callable[[Params], Params],
    hparams: Params | Tensor,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    method: str = ...,
    *,
    return_state: bool,
    **options: Any,
) -> Params | tuple[Params, DynamicsState]: ...


def hypergradient(
    params0: Params | DynamicsState | Callable[[Params], Params],
    hparams: Params | Tensor,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    method: str = "reverse",
    **options: Any,
) -> Params | tuple[Params, DynamicsState]:
    """Hypergradient ``∇f_T(λ)`` of ``f_T(λ) = E(w_T(λ), λ)``, one tensor per hyperparameter.

    Args:
        params0: initial params (tuple of tensors), a state from an earlier call (continued from
            its detached value), or a callable ``hparams -> params`` (``w_0 = Φ_0(λ)``).
        hparams: the hyperparameters λ (tuple of floating tensors).
        dynamics: the inner dynamics ``Φ`` (:class:`GradientDescent`, :class:`Momentum`,
            :class:`Adam`, ...).
        outer: ``outer(params, hparams) -> scalar``, the outer objective ``E``.
        T: number of inner steps (``>= 1``).
        method: ``"reverse"``, ``"forward"``, ``"fixed_point"``, ``"cg"`` or ``"neumann"``.

    Options:
        batches: per-step data, an iterable or a callable ``t -> batch``; the inner objective is
            then called as ``inner(params, hparams, batch)``.
        stop: ``stop(state, t) -> bool`` checked after every step; the hypergradient then covers
            the steps taken (a partial window), and ``state.stopped`` is set.
        return_state: also return the final (detached) state, to continue the run.
        truncate: (reverse) back-propagate through the last ``truncate`` steps only (default T).
        checkpoint_steps: (reverse) store the states only every ``checkpoint_steps`` tracked steps (an int
            in ``[1, T]``, or ``"sqrt"`` for ``⌈√truncate⌉``) and re-run each segment with its graph in the
            backward pass: memory O(T/k · state + k · graph) instead of O(T · graph), the same result, at
            the cost of one more forward pass. ``1`` stores every state and no graph (Algorithm 2 as
            written). Per-step data is replayed: a callable ``t -> batch`` is called again, an iterator's
            batches are recorded; the global RNG is restored per segment.
        deferred_grads: (reverse) ``{i: sink}``, hyperparameter index -> :class:`DeferredGradient`;
            each sink is entered (in index order) around the unroll and backward pass, exited, and
            ``sink.gradient(like=g_i)`` is added to ``g_i``: the result is the complete hypergradient.
        K, tol: (implicit) iterations and tolerance of the linear solver (defaults 100, 1e-10).
        fixed_point_lr: (implicit) η of the default map ``w - η∇_wL(w, λ)``; it must satisfy
            η < 2/Lipschitz(∇L) for ``fixed_point`` and ``neumann``; ``cg`` does not depend on it.
        implicit_batch: (implicit) the batch on which ``L`` is evaluated (default: no batch).
        fixed_point_map: (implicit) ``Φ(params, hparams) -> params`` replacing the default map.

    Returns:
        A tuple with one gradient per hyperparameter (including the direct term ``∂_λE``), or
        ``(hypergradients, final_state)`` with ``return_state=True``.
    """
    _check_options(method, options)
    hparams = check_finite(as_tensor_tuple(hparams, "hparams"), "hparams")
    if not isinstance(dynamics, Dynamics):
        raise TypeError(
            f"dynamics must be a bilevel_core Dynamics (GradientDescent, Momentum, Adam), got "
            f"{type(dynamics).__name__}."
        )
    check_callable(outer, "outer")
    T = check_positive_int(T, "T")
    batches = _BatchSource(options.get("batches"))
    stop = options.get("stop")
    if stop is not None:
        check_callable(stop, "stop")
    return_state = bool(options.get("return_state", False))
    if method == "reverse":
        grads, state = reverse_hypergradient(params0, hparams, dynamics, outer, T, batches, stop, options)
    elif method == "forward":
        grads, state = forward_hypergradient(params0, hparams, dynamics, outer, T, batches, stop)
    else:
        grads, state = implicit_hypergradient(method, params0, hparams, dynamics, outer, T, batches, stop, options)
    return (grads, state) if return_state else grads
