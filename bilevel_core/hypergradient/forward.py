"""Forward mode: Algorithm 3 (Forward-HG) of Franceschi et al., ICML 2017, and its real-time variant.

The tangent recursion ``Z_t = A_t Z_{t-1} + B_t`` (``A_t = ∂Φ_t/∂s``, ``B_t = ∂Φ_t/∂λ``) runs with
Jacobian-vector products (forward-mode dual tensors), one per scalar hyperparameter; memory does not
grow with T. ``∇f = ∂_λE + ∂_wE · Z_T``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from .._validation import Params, as_tensor_tuple, check_callable, check_finite, check_positive_int, check_scalar
from ..dynamics import Dynamics, DynamicsState
from ._loop import Batches, StopRule, _BatchSource, _initial_state, iter_steps, run_steps

Direction = tuple[int, int]  # (hparam index, flat entry)


def _directions(hparams: Params) -> list[Direction]:
    return [(i, j) for i, h in enumerate(hparams) for j in range(h.numel())]


def _unit_tangents(hparams: Params, direction: Direction) -> Params:
    i, j = direction
    out = []
    for k, h in enumerate(hparams):
        z = torch.zeros_like(h)
        if k == i:
            z.view(-1)[j] = 1.0
        out.append(z)
    return tuple(out)


def _tangent(x: Tensor) -> Tensor:
    tangent = fwAD.unpack_dual(x).tangent
    return torch.zeros_like(x) if tangent is None else tangent


def _forward_initial_tangents(
    params0: Any, hparams: Params, dynamics: Dynamics, state: DynamicsState, dirs: list[Direction]
) -> list[Params]:
    """``Z_0 = ds_0/dλ`` per direction: zero, unless ``params0`` is a callable of λ."""
    zeros = tuple(torch.zeros_like(t) for t in state.tensors())
    if not callable(params0) or isinstance(params0, DynamicsState):
        return [zeros for _ in dirs]
    out = []
    n = len(state.params)
    for d in dirs:
        with fwAD.dual_level():
            hp = tuple(fwAD.make_dual(h.detach(), e) for h, e in zip(hparams, _unit_tangents(hparams, d)))
            params = as_tensor_tuple(params0(hp), "params0(hparams)")
            tangents = tuple(_tangent(p).detach() for p in params)
        out.append(tangents + zeros[n:])
    return out


def _forward_start(
    params0: Any, hparams: Params, dynamics: Dynamics
) -> tuple[list[Direction], DynamicsState, list[Params]]:
    """Directions (one per scalar hyperparameter), ``s_0`` and its tangents ``Z_0``."""
    dirs = _directions(hparams)
    state = _initial_state(params0, tuple(h.detach() for h in hparams), dynamics, track=False)
    return dirs, state, _forward_initial_tangents(params0, hparams, dynamics, state, dirs)


def _forward_step(
    dynamics: Dynamics,
    state: DynamicsState,
    tangents: list[Params],
    hparams: Params,
    dirs: list[Direction],
    batch: Any,
    discount: float = 1.0,
) -> tuple[DynamicsState, list[Params]]:
    """One step of ``Z_t = μ A_t Z_{t-1} + B_t`` for every direction (a JVP of Φ each)."""
    n = len(state.params)
    new_state: DynamicsState | None = None
    new_tangents = []
    base = state.tensors()
    for d, z in zip(dirs, tangents):
        with fwAD.dual_level():
            duals = tuple(
                fwAD.make_dual(t.detach().requires_grad_(k < n), discount * zk if discount != 1.0 else zk)
                for k, (t, zk) in enumerate(zip(base, z))
            )
            hp = tuple(fwAD.make_dual(h.detach(), e) for h, e in zip(hparams, _unit_tangents(hparams, d)))
            out = dynamics(state.with_tensors(duals), hp, batch, create_graph=True)
            outs = out.tensors()
            new_tangents.append(tuple(_tangent(t).detach() for t in outs))
            if new_state is None:
                new_state = out.with_tensors(tuple(fwAD.unpack_dual(t).primal.detach() for t in outs))
    assert new_state is not None
    return new_state, new_tangents


def _forward_outer(
    outer: Callable[[Params, Params], Tensor],
    state: DynamicsState,
    tangents: list[Params],
    hparams: Params,
    dirs: list[Direction],
) -> tuple[Params, Tensor]:
    """``∇f = ∂_λE + ∂_wE · Z`` by one JVP of E per direction."""
    n = len(state.params)
    flat = []
    value = None
    for d, z in zip(dirs, tangents):
        with fwAD.dual_level():
            params = tuple(fwAD.make_dual(p.detach(), zk) for p, zk in zip(state.params, z[:n]))
            hp = tuple(fwAD.make_dual(h.detach(), e) for h, e in zip(hparams, _unit_tangents(hparams, d)))
            out = check_scalar(outer(params, hp), "outer")
            flat.append(_tangent(out).detach().reshape(()))
            if value is None:
                value = fwAD.unpack_dual(out).primal.detach()
    grads = []
    offset = 0
    for h in hparams:
        k = h.numel()
        grads.append(torch.stack(flat[offset : offset + k]).reshape(h.shape).to(h.dtype))
        offset += k
    assert value is not None
    return tuple(grads), value


class _Tangents:
    """The forward-mode carry beside the state: ``Z_t`` per direction, advanced by :meth:`step`."""

    def __init__(self, params0: Any, hparams: Params, dynamics: Dynamics, discount: float = 1.0) -> None:
        self.dirs, self.state0, self.z = _forward_start(params0, hparams, dynamics)
        self.hparams, self.dynamics, self.discount = hparams, dynamics, discount

    def step(self, state: DynamicsState, batch: Any, i: int) -> DynamicsState:
        """``s_t = Φ_t(s_{t-1}, λ)`` and ``Z_t = μ A_t Z_{t-1} + B_t``."""
        state, self.z = _forward_step(self.dynamics, state, self.z, self.hparams, self.dirs, batch, self.discount)
        return state

    def outer(self, outer: Callable[[Params, Params], Tensor], state: DynamicsState) -> tuple[Params, Tensor]:
        """``(∂_λE + ∂_wE · Z_t, E(w_t))`` at ``state``."""
        return _forward_outer(outer, state, self.z, self.hparams, self.dirs)


def forward_hypergradient(
    params0: Any,
    hparams: Params,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    batches: _BatchSource,
    stop: StopRule | None,
) -> tuple[Params, DynamicsState]:
    """Algorithm 3 (Forward-HG): memory independent of T, cost proportional to dim(λ)."""
    tangents = _Tangents(params0, hparams, dynamics)
    state = run_steps(tangents.state0, T, tangents.step, batches, stop)
    grads, value = tangents.outer(outer, state)
    return grads, replace(state, outer_loss=value)


def real_time_hypergradients(
    params0: Params | DynamicsState | Callable[[Params], Params],
    hparams: Params | Tensor,
    dynamics: Dynamics,
    outer: Callable[..., Tensor],
    T: int,
    every: int = 1,
    *,
    batches: Batches = None,
    outer_batches: Batches = None,
    stop: StopRule | None = None,
    discount: float = 1.0,
) -> Generator[tuple[int, Params], None, DynamicsState]:
    """Real-time forward hypergradients (RTHO, thesis Sec. 5.4.2.1): a generator.

    Runs the inner dynamics for up to ``T`` steps while propagating ``Z_t = μ A_t Z_{t-1} + B_t``
    (``μ = discount``; 1 gives RTHO, 0 gives hypergradient descent's one-step tangent, values in
    between MARTHE's discounted tangent, thesis Algorithm 6). Every ``every`` steps it yields
    ``(t, ∂_λE(w_t) + ∂_wE(w_t) Z_t)``. The caller may change the hyperparameter tensors in place
    between yields; the run continues with the new values. With ``outer_batches`` (an iterable or
    a callable ``t -> batch``) the outer objective is ``outer(params, hparams, batch)`` with the batch
    of step t (e.g. the next training mini-batch, as in hypergradient descent). The final state is
    the generator's return value (``StopIteration.value``).
    """
    hparams = check_finite(as_tensor_tuple(hparams, "hparams"), "hparams")
    check_callable(outer, "outer")
    T = check_positive_int(T, "T")
    every = check_positive_int(every, "every")
    if not 0.0 <= float(discount) <= 1.0:
        raise ValueError(f"discount must be in [0, 1], got {discount}.")
    source = _BatchSource(batches)
    outer_source = _BatchSource(outer_batches) if outer_batches is not None else None
    tangents = _Tangents(params0, hparams, dynamics, discount=float(discount))
    state = tangents.state0
    for i, state in enumerate(iter_steps(tangents.state0, T, tangents.step, source, stop)):
        if (i + 1) % every == 0 or state.stopped or i + 1 == T:
            step_outer = outer
            if outer_source is not None:
                batch = outer_source.get(state.t)

                def step_outer(params: Params, hp: Params, _b: Any = batch) -> Tensor:
                    return outer(params, hp, _b)

            grads, value = tangents.outer(step_outer, state)
            state = replace(state, outer_loss=value)
            yield state.t, grads
    return state
