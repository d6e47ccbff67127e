"""Hypergradients of ``f_T(λ) = E(w_T(λ), λ)`` through the inner dynamics, one entry point.

Methods (Franceschi et al., ICML 2017; thesis Ch. 5):

- ``"reverse"``: Algorithm 2 (Reverse-HG), by back-propagation through the unrolled steps.
  ``truncate=τ`` keeps only the last τ steps (truncated back-propagation); ``truncate=0`` gives
  the direct term ``∂_λE`` alone.
- ``"forward"``: Algorithm 3 (Forward-HG), the tangent recursion ``Z_t = A_t Z_{t-1} + B_t``
  with Jacobian-vector products (forward-mode dual tensors); memory does not grow with T.
- ``"fixed_point"``, ``"cg"``, ``"neumann"``: implicit differentiation at ``w_T`` (thesis
  Sec. 5.4.3), ``∇f = ∂_λE + ∂_λΦᵀ q`` with ``(I - ∂_wΦᵀ) q = ∂_wE``.

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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from ._validation import (
    Params,
    as_tensor_tuple,
    check_callable,
    check_finite,
    check_positive_int,
    check_same_shapes,
    check_scalar,
)
from .dynamics import NO_BATCH, Dynamics, DynamicsState

METHODS = ("reverse", "forward", "fixed_point", "cg", "neumann")
_COMMON_OPTIONS = {"batches", "stop", "return_state"}
_METHOD_OPTIONS = {
    "reverse": {"truncate"},
    "forward": set(),
    "fixed_point": {"K", "tol", "fixed_point_lr", "implicit_batch", "fixed_point_map"},
    "cg": {"K", "tol", "fixed_point_lr", "implicit_batch", "fixed_point_map"},
    "neumann": {"K", "tol", "fixed_point_lr", "implicit_batch", "fixed_point_map"},
}

StopRule = Callable[[DynamicsState, int], bool]
Batches = Callable[[int], Any] | Iterable[Any] | None


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

    def get(self, t: int) -> Any:
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


def _requires_grad_alias(hparams: Params) -> Params:
    """Tensors to differentiate with respect to: the user's own, or a detached alias (same storage)."""
    return tuple(h if h.requires_grad else h.detach().requires_grad_(True) for h in hparams)


def _initial_state(
    params0: Any, hparams: Params, dynamics: Dynamics, *, track: bool
) -> DynamicsState:
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


def _grads_or_zeros(outputs: Tensor, inputs: Params, **kwargs: Any) -> Params:
    # e.g. truncate=0 with an outer objective that does not read λ: no graph, the gradient is zero
    if isinstance(outputs, Tensor) and not outputs.requires_grad:
        return tuple(torch.zeros_like(x) for x in inputs)
    grads = torch.autograd.grad(outputs, inputs, allow_unused=True, **kwargs)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads))


def _check_options(method: str, options: dict[str, Any]) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    allowed = _COMMON_OPTIONS | _METHOD_OPTIONS[method]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for method={method!r}; "
            f"valid options: {', '.join(sorted(allowed))}."
        )


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
        truncate = options.get("truncate", T)
        truncate = check_positive_int(truncate, "truncate", minimum=0)
        if truncate > T:
            raise ValueError(f"truncate={truncate} exceeds T={T}: choose 0 <= truncate <= T.")
        grads, state = _reverse(params0, hparams, dynamics, outer, T, truncate, batches, stop)
    elif method == "forward":
        grads, state = _forward(params0, hparams, dynamics, outer, T, batches, stop)
    else:
        grads, state = _implicit(method, params0, hparams, dynamics, outer, T, batches, stop, options)
    return (grads, state) if return_state else grads


def _reverse(
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
    with torch.enable_grad():
        for i in range(T):
            tracked = i >= first_tracked
            if tracked and i == first_tracked and i > 0:
                state = state.detach()
            batch = batches.get(state.t)
            state = dynamics(state, hp if tracked else hp_detached, batch, create_graph=tracked)
            if stop is not None and stop(state, state.t):
                state = replace(state, stopped=True)
                break
        value = check_scalar(outer(state.params, hp), "outer")
        grads = _grads_or_zeros(value, hp)
    final = replace(state.detach(), outer_loss=value.detach())
    return grads, final


# ----------------------------------------------------------------------------- forward mode


def _directions(hparams: Params) -> list[tuple[int, int]]:
    return [(i, j) for i, h in enumerate(hparams) for j in range(h.numel())]


def _unit_tangents(hparams: Params, direction: tuple[int, int]) -> Params:
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
    params0: Any, hparams: Params, dynamics: Dynamics, state: DynamicsState, dirs: list[tuple[int, int]]
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
) -> tuple[list[tuple[int, int]], DynamicsState, list[Params]]:
    """Directions (one per scalar hyperparameter), ``s_0`` and its tangents ``Z_0``."""
    dirs = _directions(hparams)
    state = _initial_state(params0, tuple(h.detach() for h in hparams), dynamics, track=False)
    return dirs, state, _forward_initial_tangents(params0, hparams, dynamics, state, dirs)


def _forward_step(
    dynamics: Dynamics,
    state: DynamicsState,
    tangents: list[Params],
    hparams: Params,
    dirs: list[tuple[int, int]],
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
    dirs: list[tuple[int, int]],
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


def _forward(
    params0: Any,
    hparams: Params,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    batches: _BatchSource,
    stop: StopRule | None,
) -> tuple[Params, DynamicsState]:
    """Algorithm 3 (Forward-HG): memory independent of T, cost proportional to dim(λ)."""
    dirs, state, tangents = _forward_start(params0, hparams, dynamics)
    for _ in range(T):
        state, tangents = _forward_step(dynamics, state, tangents, hparams, dirs, batches.get(state.t))
        if stop is not None and stop(state, state.t):
            state = replace(state, stopped=True)
            break
    grads, value = _forward_outer(outer, state, tangents, hparams, dirs)
    return grads, replace(state, outer_loss=value)


def real_time_hypergradients(
    params0: Params | DynamicsState | Callable[[Params], Params],
    hparams: Params | Tensor,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    every: int = 1,
    *,
    batches: Batches = None,
    outer_batches: Batches = None,
    stop: StopRule | None = None,
    discount: float = 1.0,
) -> Iterator[tuple[int, Params]]:
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
    dirs, state, tangents = _forward_start(params0, hparams, dynamics)
    for i in range(T):
        state, tangents = _forward_step(
            dynamics, state, tangents, hparams, dirs, source.get(state.t), discount=float(discount)
        )
        stopped = stop is not None and stop(state, state.t)
        if (i + 1) % every == 0 or stopped or i + 1 == T:
            step_outer = outer
            if outer_source is not None:
                batch = outer_source.get(state.t)

                def step_outer(params, hp, _b=batch):
                    return outer(params, hp, _b)

            grads, value = _forward_outer(step_outer, state, tangents, hparams, dirs)
            state = replace(state, outer_loss=value)
            yield state.t, grads
        if stopped:
            state = replace(state, stopped=True)
            break
    return state


# ----------------------------------------------------------------------------- implicit


def _plain_lr(dynamics: Dynamics) -> float | None:
    lr = getattr(dynamics, "lr", None)
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        return float(lr)
    if isinstance(lr, Tensor) and lr.numel() == 1 and not lr.requires_grad:
        return float(lr)
    return None


def _dot(a: Params, b: Params) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _implicit(
    method: str,
    params0: Any,
    hparams: Params,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    batches: _BatchSource,
    stop: StopRule | None,
    options: dict[str, Any],
) -> tuple[Params, DynamicsState]:
    """Implicit hypergradient at ``w_T`` (thesis Sec. 5.4.3): ``∂_λE + ∂_λΦᵀ (I - ∂_wΦᵀ)^{-1} ∂_wE``."""
    K = check_positive_int(options.get("K", 100), "K")
    tol = float(options.get("tol", 1e-10))
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}.")
    fixed_point_map = options.get("fixed_point_map")
    implicit_batch = options.get("implicit_batch", NO_BATCH)
    eta = options.get("fixed_point_lr")
    if fixed_point_map is None:
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
    else:
        check_callable(fixed_point_map, "fixed_point_map")

    hp_detached = tuple(h.detach() for h in hparams)
    state = _initial_state(params0, hp_detached, dynamics, track=False)
    for _ in range(T):
        state = dynamics(state, hp_detached, batches.get(state.t), create_graph=False)
        if stop is not None and stop(state, state.t):
            state = replace(state, stopped=True)
            break

    hp = _requires_grad_alias(hparams)
    with torch.enable_grad():
        w = tuple(p.detach().requires_grad_(True) for p in state.params)
        if fixed_point_map is None:
            _, g = dynamics.gradient(w, hp, implicit_batch, create_graph=True)
            phi = tuple(p - eta * gi for p, gi in zip(w, g))
        else:
            phi = as_tensor_tuple(fixed_point_map(w, hp), "fixed_point_map(params, hparams)")
            check_same_shapes(phi, w, "fixed_point_map(params, hparams)", "params")
        value = check_scalar(outer(w, hp), "outer")
        v = _grads_or_zeros(value, w, retain_graph=True)
        direct = _grads_or_zeros(value, hp, retain_graph=True)

        def jt(q: Params) -> Params:
            """``∂_wΦᵀ q`` (a vector-Jacobian product through the map)."""
            return _grads_or_zeros(phi, w, grad_outputs=q, retain_graph=True)

        if method == "cg":
            q = _conjugate_gradient(lambda q: tuple(a - b for a, b in zip(q, jt(q))), v, K, tol)
        elif method == "fixed_point":
            q = tuple(torch.zeros_like(x) for x in v)
            for _ in range(K):
                q_new = tuple(a + b for a, b in zip(jt(q), v))
                diff = tuple(a - b for a, b in zip(q_new, q))
                q = q_new
                delta = torch.sqrt(_dot(diff, diff))
                if delta <= tol:
                    break
        else:  # neumann: q = Σ_{k=0}^{K} (∂_wΦᵀ)^k v
            term = v
            q = v
            for _ in range(K):
                term = jt(term)
                q = tuple(a + b for a, b in zip(q, term))
                if torch.sqrt(_dot(term, term)) <= tol:
                    break
        indirect = _grads_or_zeros(phi, hp, grad_outputs=tuple(x.detach() for x in q))
    grads = tuple(a + b for a, b in zip(direct, indirect))
    return grads, replace(state, outer_loss=value.detach())


def _conjugate_gradient(
    matvec: Callable[[Params], Params], b: Params, K: int, tol: float
) -> Params:
    """Conjugate gradient for ``A x = b`` with ``A`` symmetric positive definite (Hestenes-Stiefel)."""
    x = tuple(torch.zeros_like(t) for t in b)
    r = tuple(t.clone() for t in b)
    p = r
    rs = _dot(r, r)
    for _ in range(K):
        if torch.sqrt(rs) <= tol:
            break
        ap = matvec(p)
        alpha = rs / _dot(p, ap)
        x = tuple(xi + alpha * pi for xi, pi in zip(x, p))
        r = tuple(ri - alpha * api for ri, api in zip(r, ap))
        rs_new = _dot(r, r)
        p = tuple(ri + (rs_new / rs) * pi for ri, pi in zip(r, p))
        rs = rs_new
    return tuple(t.detach() for t in x)
