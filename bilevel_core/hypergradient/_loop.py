"""The pieces every method shares: per-step data, ``s_0 = Φ_0(λ)`` and one step-and-stop loop.

All methods run ``s_t = Φ_t(s_{t-1}, λ)`` for ``t = 1..T`` (Franceschi et al., ICML 2017, eq. 1) and stop
early when a data-dependent rule fires; :func:`iter_steps` is that loop, written once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from .._validation import Params, as_tensor_tuple, check_same_shapes
from ..dynamics import NO_BATCH, Dynamics, DynamicsState

StopRule = Callable[[DynamicsState, int], bool]
Batches = Callable[[int], Any] | Iterable[Any] | None
#: ``step(state, batch, i) -> state``: the i-th step (0-based) of a method's unroll
Step = Callable[[DynamicsState, Any, int], DynamicsState]


class _BatchSource:
    """Per-step data: ``batches(t)`` for a callable (t = steps already taken), else ``next(it)``."""

    def __init__(self, batches: Batches) -> None:
        self._fn: Callable[[int], Any] | None = None
        self._it: Iterator[Any] | None = None
        if batches is None:
            return
        if callable(batches):
            self._fn = batches
        elif isinstance(batches, Iterable):
            self._it = iter(batches)
        else:
            raise TypeError(
                f"batches must be an iterable of batches or a callable t -> batch, got {type(batches).__name__}."
            )

    @property
    def replays_by_call(self) -> bool:
        """True for a callable (or no data): a step's batch is had again by calling it with the same ``t``."""
        return self._it is None

    def get(self, t: int) -> Any:
        """The batch of the step that starts after ``t`` steps (``NO_BATCH`` without data)."""
        if self._fn is not None:
            return self._fn(t)
        if self._it is not None:
            try:
                return next(self._it)
            except StopIteration:
                raise ValueError(
                    f"batches ran out at step {t}: supply at least one batch per inner step "
                    "(or pass a callable t -> batch)."
                ) from None
        return NO_BATCH


def iter_steps(
    state: DynamicsState, T: int, step: Step, batches: _BatchSource, stop: StopRule | None
) -> Iterator[DynamicsState]:
    """Yield ``s_1, s_2, ...`` from ``s_i = step(s_{i-1}, batch, i - 1)`` for at most ``T`` steps.

    After each step ``stop(state, state.t)`` is checked; when it fires, the state is yielded with
    ``stopped=True`` and the loop ends (the hypergradient then covers the steps taken).
    """
    for i in range(T):
        state = step(state, batches.get(state.t), i)
        if stop is not None and stop(state, state.t):
            yield replace(state, stopped=True)
            return
        yield state


def run_steps(
    state: DynamicsState, T: int, step: Step, batches: _BatchSource, stop: StopRule | None
) -> DynamicsState:
    """The last state of :func:`iter_steps` (``state`` itself when no step is taken)."""
    last = deque(iter_steps(state, T, step, batches, stop), maxlen=1)
    return last[0] if last else state


def _requires_grad_alias(hparams: Params) -> Params:
    """Tensors to differentiate with respect to: the user's own, or a detached alias (same storage)."""
    return tuple(h if h.requires_grad else h.detach().requires_grad_(True) for h in hparams)


def _initial_state(params0: Any, hparams: Params, dynamics: Dynamics, *, track: bool) -> DynamicsState:
    """``s_0 = Φ_0(λ)``: from a state (continuation, detached), a callable, or a tuple of tensors."""
    if isinstance(params0, DynamicsState):
        state = params0.detach()
        as_tensor_tuple(state.params, "params0.params")
        for k, slot in enumerate(state.aux):
            check_same_shapes(state.params, slot, "params0.params", f"params0.aux[{k}]")
        if len(state.aux) != dynamics.num_aux:
            raise ValueError(
                f"params0 is a state with {len(state.aux)} auxiliary slots but {type(dynamics).__name__} "
                f"needs {dynamics.num_aux}; continue a run with the dynamics that produced the state."
            )
        return replace(state, stopped=False, outer_loss=None)
    if callable(params0):
        hp = hparams if track else tuple(h.detach() for h in hparams)
        params = as_tensor_tuple(params0(hp), "params0(hparams)")
        if not track:
            params = tuple(p.detach() for p in params)
        return dynamics.init(params, hparams)
    params = as_tensor_tuple(params0, "params0")
    return dynamics.init(tuple(p.detach() for p in params), hparams)


def _grads_or_zeros(outputs: Tensor | Params, inputs: Params, **kwargs: Any) -> Params:
    """``torch.autograd.grad`` with zeros for inputs the outputs do not depend on."""
    # e.g. truncate=0 with an outer objective that does not read λ: no graph, the gradient is zero
    if isinstance(outputs, Tensor) and not outputs.requires_grad:
        return tuple(torch.zeros_like(x) for x in inputs)
    grads = torch.autograd.grad(outputs, inputs, allow_unused=True, **kwargs)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads))
