"""Reverse mode: Algorithm 2 (Reverse-HG) of Franceschi et al., ICML 2017, with truncation.

Back-propagation through the unrolled steps ``s_t = Φ_t(s_{t-1}, λ)``; ``truncate=τ`` keeps only the
last τ steps (truncated back-propagation), ``truncate=0`` the direct term ``∂_λE`` alone. Optional
:class:`DeferredGradient` sinks collect part of ``∂f/∂λ_i`` in a compact form during the backward pass
and hand it back once; the result is complete either way.

``checkpoint_steps=k`` (or ``"sqrt"``) stores the states only at segment boundaries (every k tracked
steps) and re-runs each segment with its graph in the backward pass (:mod:`._checkpoint`): memory
O(T/k · state + k · one step's graph) instead of O(T · graph), for one more forward pass.
``checkpoint_steps=1`` is Algorithm 2 as written in the paper: every ``s_t`` is stored, no graph, and
each step's VJP is recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import replace
from typing import Any, Protocol

import torch
from torch import Tensor

from .._validation import Params, check_positive_int, check_scalar
from ..dynamics import Dynamics, DynamicsState
from ._checkpoint import check_checkpoint_steps, checkpointed_gradient
from ._loop import StopRule, _BatchSource, _grads_or_zeros, _initial_state, _requires_grad_alias, run_steps

_SINK_METHODS = ("__enter__", "__exit__", "gradient")


class DeferredGradient(Protocol):
    """Collects part of ∂f/∂λ_i during the backward pass in a compact form (e.g. low-rank factors) and
    returns it as a dense tensor once. Only valid for contributions that reach λ_i through the identity.

    :func:`~bilevel_core.hypergradient` (``method="reverse"``, ``deferred_grads={i: sink}``) enters the
    sink around the unroll and backward pass of one call, exits it, then adds ``sink.gradient(like=g_i)``
    to the gradient ``g_i`` autograd returned; a sink used for several calls should start empty on
    ``__enter__``.
    """

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...

    def gradient(self, like: Tensor) -> Tensor:
        """The collected part, shaped and typed like ``like``."""
        ...


def check_deferred_grads(deferred: Any, num_hparams: int) -> dict[int, DeferredGradient]:
    """Validate ``deferred_grads``: hyperparameter index -> :class:`DeferredGradient`, in index order."""
    if deferred is None:
        return {}
    if not isinstance(deferred, Mapping):
        raise TypeError(
            f"deferred_grads must be a mapping hparam index -> DeferredGradient, got {type(deferred).__name__}."
        )
    for i, sink in deferred.items():
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"deferred_grads keys must be hparam indices (int), got {i!r}.")
        if not 0 <= i < num_hparams:
            raise ValueError(f"deferred_grads index {i} is out of range for {num_hparams} hyperparameter(s).")
        missing = [m for m in _SINK_METHODS if not callable(getattr(sink, m, None))]
        if missing:
            raise TypeError(
                f"deferred_grads[{i}] ({type(sink).__name__}) is not a DeferredGradient: it lacks "
                f"{', '.join(missing)}."
            )
    if len({id(s) for s in deferred.values()}) != len(deferred):
        raise ValueError("deferred_grads gives the same sink to two hyperparameters; use one sink per index.")
    return {i: deferred[i] for i in sorted(deferred)}


def reverse_hypergradient(
    params0: Any,
    hparams: Params,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    batches: _BatchSource,
    stop: StopRule | None,
    options: Mapping[str, Any],
) -> tuple[Params, DynamicsState]:
    """Algorithm 2 (options ``truncate``, ``deferred_grads``, ``checkpoint_steps``), with the deferred parts
    added back."""
    truncate = check_positive_int(options.get("truncate", T), "truncate", minimum=0)
    if truncate > T:
        raise ValueError(f"truncate={truncate} exceeds T={T}: choose 0 <= truncate <= T.")
    segment = check_checkpoint_steps(options.get("checkpoint_steps"), T, truncate)
    sinks = check_deferred_grads(options.get("deferred_grads"), len(hparams))
    with ExitStack() as stack:
        for sink in sinks.values():
            stack.enter_context(sink)
        if segment is None:
            grads, state = _unrolled_gradient(params0, hparams, dynamics, outer, T, truncate, batches, stop)
        else:
            grads, state = checkpointed_gradient(
                params0, hparams, dynamics, outer, T, truncate, segment, batches, stop
            )
    if sinks:
        grads = tuple(g + _deferred_part(sinks[i], g, i) if i in sinks else g for i, g in enumerate(grads))
    return grads, state


def _deferred_part(sink: DeferredGradient, like: Tensor, i: int) -> Tensor:
    """``sink.gradient(like=g_i)``, checked against ``g_i``'s shape and dtype."""
    part = sink.gradient(like=like)
    if not isinstance(part, Tensor) or part.shape != like.shape or part.dtype != like.dtype:
        got = f"{tuple(part.shape)} {part.dtype}" if isinstance(part, Tensor) else type(part).__name__
        raise ValueError(
            f"deferred_grads[{i}].gradient(like) must return a tensor of shape {tuple(like.shape)} and dtype "
            f"{like.dtype}, got {got}."
        )
    return part


def _unrolled_gradient(
    params0: Any,
    hparams: Params,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    truncate: int,
    batches: _BatchSource,
    stop: StopRule | None,
) -> tuple[Params, DynamicsState]:
    """Algorithm 2 by automatic differentiation of the unrolled (last ``truncate``) steps."""
    hp = _requires_grad_alias(hparams)
    hp_detached = tuple(h.detach() for h in hparams)
    first_tracked = T - truncate
    state = _initial_state(params0, hp, dynamics, track=first_tracked == 0)

    def step(state: DynamicsState, batch: Any, i: int) -> DynamicsState:
        tracked = i >= first_tracked
        if tracked and i == first_tracked and i > 0:
            state = state.detach()  # the start of the truncated window
        return dynamics(state, hp if tracked else hp_detached, batch, create_graph=tracked)

    with torch.enable_grad():
        state = run_steps(state, T, step, batches, stop)
        value = check_scalar(outer(state.params, hp), "outer")
        grads = _grads_or_zeros(value, hp)
    final = replace(state.detach(), outer_loss=value.detach())
    return grads, final
