"""Implicit hypergradients at ``w_T`` (thesis Sec. 5.4.3).

With a fixed-point map ``Φ(w, λ)`` (default ``w - η∇_wL(w, λ)``) and ``w_T ≈ Φ(w_T, λ)``,
``∇f = ∂_λE + ∂_λΦᵀ q`` where ``(I - ∂_wΦᵀ) q = ∂_wE``, solved by :mod:`.linear_solve`:
``"fixed_point"`` (``q ← ∂_wΦᵀ q + ∂_wE``), ``"neumann"`` (truncated series) or ``"cg"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from .._validation import Params, as_tensor_tuple, check_callable, check_positive_int, check_same_shapes, check_scalar
from ..dynamics import NO_BATCH, Dynamics, DynamicsState
from ._loop import StopRule, _BatchSource, _grads_or_zeros, _initial_state, _requires_grad_alias, run_steps
from .linear_solve import solve_cg, solve_fixed_point, solve_neumann

IMPLICIT_OPTIONS = frozenset({"K", "tol", "fixed_point_lr", "implicit_batch", "fixed_point_map"})


@dataclass(frozen=True)
class _ImplicitOptions:
    K: int
    tol: float
    eta: float | None  # η of the default map; None with a fixed_point_map
    fixed_point_map: Callable[[Params, Params], Params] | None
    implicit_batch: Any


def _plain_lr(dynamics: Dynamics) -> float | None:
    lr = getattr(dynamics, "lr", None)
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        return float(lr)
    if isinstance(lr, Tensor) and lr.numel() == 1 and not lr.requires_grad:
        return float(lr)
    return None


def _check_implicit_options(method: str, dynamics: Dynamics, options: Mapping[str, Any]) -> _ImplicitOptions:
    """``K``, ``tol`` and the map: a user ``fixed_point_map`` or the step ``w - η∇_wL`` (η from the dynamics)."""
    K = check_positive_int(options.get("K", 100), "K")
    tol = float(options.get("tol", 1e-10))
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}.")
    fixed_point_map = options.get("fixed_point_map")
    implicit_batch = options.get("implicit_batch", NO_BATCH)
    if fixed_point_map is not None:
        check_callable(fixed_point_map, "fixed_point_map")
        return _ImplicitOptions(K, tol, None, fixed_point_map, implicit_batch)
    eta = options.get("fixed_point_lr")
    if eta is None:
        eta = _plain_lr(dynamics)
    if eta is None:
        if method != "cg":
            raise ValueError(
                f"method={method!r} needs fixed_point_lr= (a plain number η < 2/L) because the "
                "dynamics' learning rate is not a plain number."
            )
        eta = 1.0
    eta = float(eta)
    if not eta > 0:
        raise ValueError(f"fixed_point_lr must be > 0, got {eta}.")
    return _ImplicitOptions(K, tol, eta, None, implicit_batch)


def _fixed_point_map(dynamics: Dynamics, opts: _ImplicitOptions, w: Params, hp: Params) -> Params:
    """``Φ(w, λ)``: the user's map, or one gradient step ``w - η∇_wL(w, λ)`` on ``implicit_batch``."""
    if opts.fixed_point_map is not None:
        phi = as_tensor_tuple(opts.fixed_point_map(w, hp), "fixed_point_map(params, hparams)")
        check_same_shapes(phi, w, "fixed_point_map(params, hparams)", "params")
        return phi
    eta = opts.eta
    assert eta is not None  # set by _check_implicit_options whenever there is no fixed_point_map
    _, g = dynamics.gradient(w, hp, opts.implicit_batch, create_graph=True)
    return tuple(p - eta * gi for p, gi in zip(w, g))


def _solve(method: str, jt: Callable[[Params], Params], v: Params, K: int, tol: float) -> Params:
    """``q`` with ``(I - ∂_wΦᵀ) q = v``, given ``jt(q) = ∂_wΦᵀ q``."""
    if method == "cg":
        return solve_cg(lambda q: tuple(a - b for a, b in zip(q, jt(q))), v, K, tol)
    if method == "fixed_point":
        return solve_fixed_point(jt, v, K, tol)
    return solve_neumann(jt, v, K, tol)


def implicit_hypergradient(
    method: str,
    params0: Any,
    hparams: Params,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    batches: _BatchSource,
    stop: StopRule | None,
    options: Mapping[str, Any],
) -> tuple[Params, DynamicsState]:
    """Implicit hypergradient at ``w_T`` (thesis Sec. 5.4.3): ``∂_λE + ∂_λΦᵀ (I - ∂_wΦᵀ)^{-1} ∂_wE``."""
    opts = _check_implicit_options(method, dynamics, options)
    hp_detached = tuple(h.detach() for h in hparams)
    state = _initial_state(params0, hp_detached, dynamics, track=False)
    state = run_steps(
        state, T, lambda s, batch, i: dynamics(s, hp_detached, batch, create_graph=False), batches, stop
    )

    hp = _requires_grad_alias(hparams)
    with torch.enable_grad():
        w = tuple(p.detach().requires_grad_(True) for p in state.params)
        phi = _fixed_point_map(dynamics, opts, w, hp)
        value = check_scalar(outer(w, hp), "outer")
        v = _grads_or_zeros(value, w, retain_graph=True)
        direct = _grads_or_zeros(value, hp, retain_graph=True)

        def jt(q: Params) -> Params:
            """``∂_wΦᵀ q`` (a vector-Jacobian product through the map)."""
            return _grads_or_zeros(phi, w, grad_outputs=q, retain_graph=True)

        q = _solve(method, jt, v, opts.K, opts.tol)
        indirect = _grads_or_zeros(phi, hp, grad_outputs=tuple(x.detach() for x in q))
    grads = tuple(a + b for a, b in zip(direct, indirect))
    return grads, replace(state, outer_loss=value.detach())
