"""Forward mode: Algorithm 3 (Forward-HG) of Franceschi et al., ICML 2017, and its real-time variant.

The tangent recursion ``Z_t = A_t Z_{t-1} + B_t`` (``A_t = ∂Φ_t/∂s``, ``B_t = ∂Φ_t/∂λ``) is carried for
all m scalar hyperparameters at once: ``Z_t`` holds one ``(m, *shape)`` tensor per state tensor, and one
pass per step moves every direction. Memory does not grow with T. ``∇f = ∂_λE + ∂_wE · Z_T``.

For the built-in dynamics (a step ``Φ(s, λ) = U(s, ∇_wL(w, λ), λ)``) a step's tangents come from
batched reverse-mode products (``is_grads_batched``), with no forward-mode AD:

- the inner gradient's tangent by the symmetry of second derivatives,
  ``ġ = ∂_w[∇_wL·z + ∇_λL·e] = ∇²_wL z + ∂²_{wλ}L e`` (one batched Hessian-vector product);
- the update's tangent ``J_U (z, ġ, e)`` by the double-VJP identity ``J v = ∂_u ⟨J^T u, v⟩``.

Dynamics that override ``__call__`` or ``gradient`` fall back to one forward-mode (dual tensor) pass
per direction through their step.
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
from ._loop import Batches, StopRule, _BatchSource, _grads_or_zeros, _initial_state, iter_steps, run_steps

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


class _DualTangents:
    """The forward-mode carry beside the state: ``Z_t`` per direction, one dual-tensor pass each."""

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


def _leaves(tensors: Params) -> Params:
    return tuple(t.detach().requires_grad_(True) for t in tensors)


def _batched_vjp_of_vjp(
    outputs: list[Tensor], inputs: Params, tangents: Params, m: int
) -> list[Tensor | None]:
    """``J v`` for a batch of m tangents ``v`` of ``inputs``, ``J = ∂outputs/∂inputs``, by the double-VJP
    identity ``J v = ∂_u ⟨Jᵀu, v⟩`` (``Jᵀu`` is linear in the dummy cotangent ``u``)."""
    live = [k for k, o in enumerate(outputs) if o.requires_grad]
    u = [torch.zeros_like(outputs[k], requires_grad=True) for k in live]
    vjps = torch.autograd.grad([outputs[k] for k in live], inputs, u, create_graph=True, allow_unused=True)
    pairs = [(v, z) for v, z in zip(vjps, tangents) if v is not None and v.requires_grad]
    out: list[Tensor | None] = [None] * len(outputs)
    if pairs:
        jv = torch.autograd.grad([v for v, _ in pairs], u, [z for _, z in pairs], is_grads_batched=True,
                                 allow_unused=True)
        for k, t in zip(live, jv):
            out[k] = t
    return out


class _BatchedTangents:
    """``Z_t`` for all m directions at once (one ``(m, *shape)`` tensor per state tensor), one pass per step
    (module docstring: a batched Hessian-vector product and the double-VJP of the update)."""

    def __init__(self, params0: Any, hparams: Params, dynamics: Dynamics, discount: float = 1.0) -> None:
        dirs, self.state0, z = _forward_start(params0, hparams, dynamics)
        self.m = len(dirs)
        self.z: Params = tuple(torch.stack([zd[k] for zd in z]) for k in range(len(self.state0.tensors())))
        eye = torch.eye(self.m, dtype=hparams[0].dtype, device=hparams[0].device)
        cols, offset = [], 0
        for h in hparams:
            cols.append(eye[:, offset : offset + h.numel()].reshape((self.m, *h.shape)).to(h.dtype))
            offset += h.numel()
        self.e: Params = tuple(cols)  # the unit directions of λ
        self.hparams = _leaves(hparams)  # aliases of the caller's tensors (in-place changes are seen)
        self.dynamics, self.discount = dynamics, discount

    def step(self, state: DynamicsState, batch: Any, i: int) -> DynamicsState:
        """``s_t = Φ_t(s_{t-1}, λ)`` and ``Z_t = μ A_t Z_{t-1} + B_t`` for every direction."""
        dyn, hp, n = self.dynamics, self.hparams, len(state.params)
        z = self.z if self.discount == 1.0 else tuple(self.discount * t for t in self.z)
        w = _leaves(state.params)
        with torch.enable_grad():
            loss = dyn.inner_loss(w, hp, batch)
            grads = torch.autograd.grad(loss, w + hp, create_graph=True, allow_unused=True)
            # ġ = ∂_w[∇_wL·z_w + ∇_λL·e]: the tangent of the inner gradient, all directions in one product
            pairs = [(g, d) for g, d in zip(grads, z[:n] + self.e) if g is not None and g.requires_grad]
            hvp: tuple[Tensor | None, ...] = (None,) * n
            if pairs:
                hvp = torch.autograd.grad([g for g, _ in pairs], w, [d for _, d in pairs],
                                          is_grads_batched=True, allow_unused=True)
            g_w = _leaves(tuple(torch.zeros_like(p) if g is None else g for p, g in zip(w, grads[:n])))
            g_dot = tuple(torch.zeros_like(zk) if d is None else d for d, zk in zip(hvp, z[:n]))
            s = _leaves(state.tensors())
            params, aux = dyn.update(state.with_tensors(s), g_w, hp)
            outs = list(params) + [a for slot in aux for a in slot]
            jv = _batched_vjp_of_vjp(outs, s + g_w + hp, z + g_dot + self.e, self.m)
        self.z = tuple(torch.zeros((self.m, *o.shape), dtype=o.dtype, device=o.device) if t is None else t
                       for o, t in zip(outs, jv))
        new = tuple(o.detach() for o in outs)
        return DynamicsState(params=new[:n], aux=state.with_tensors(new).aux, t=state.t + 1, loss=loss.detach())

    def outer(self, outer: Callable[[Params, Params], Tensor], state: DynamicsState) -> tuple[Params, Tensor]:
        """``(∂_λE + ∂_wE · Z_t, E(w_t))`` at ``state``: one reverse pass of E, contracted with ``Z_t``."""
        w, hp, n = _leaves(state.params), self.hparams, len(state.params)
        with torch.enable_grad():
            value = check_scalar(outer(w, hp), "outer")
            grads = _grads_or_zeros(value, w + hp)
        flat = sum((zk.reshape(self.m, -1) @ gk.reshape(-1) for zk, gk in zip(self.z[:n], grads[:n])),
                   torch.zeros(self.m, dtype=value.dtype, device=value.device))
        out, offset = [], 0
        for h, direct in zip(hp, grads[n:]):
            k = h.numel()
            out.append((direct + flat[offset : offset + k].reshape(h.shape).to(direct.dtype)).detach())
            offset += k
        return tuple(out), value.detach()


def _batchable(dynamics: Dynamics) -> bool:
    """The step is the base class's ``U(s, ∇_wL, λ)`` (only ``update`` overridden): batched tangents apply."""
    cls = type(dynamics)
    return cls.__call__ is Dynamics.__call__ and cls.gradient is Dynamics.gradient


def _make_tangents(
    params0: Any, hparams: Params, dynamics: Dynamics, discount: float = 1.0
) -> _BatchedTangents | _DualTangents:
    """The tangent carry: batched for the built-in dynamics, one dual pass per direction otherwise."""
    if _batchable(dynamics):
        return _BatchedTangents(params0, hparams, dynamics, discount)
    return _DualTangents(params0, hparams, dynamics, discount)


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
    tangents = _make_tangents(params0, hparams, dynamics)
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
    tangents = _make_tangents(params0, hparams, dynamics, discount=float(discount))
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
