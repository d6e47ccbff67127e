"""Outer optimisers for hyperparameters, as ``torch.optim`` optimisers.

:class:`InverseTimeSGD` is the projected SGD of LDS (Franceschi et al., ICML 2019, Sec. 3; thesis
Algorithm 7): ``λ_{k+1} = λ_k - η_k g_k`` with the inverse-time step ``η_k = η₀ / (1 + d·k)``, ``k`` the
number of updates so far. Pair it with :func:`~bilevel_core.optimizer.project_box` for the projection.

Example:
    >>> import torch
    >>> lam = torch.zeros(2, requires_grad=True)
    >>> opt = InverseTimeSGD([lam], lr=1.0, decay=1.0)
    >>> for _ in range(3):
    ...     lam.grad = torch.ones(2)
    ...     opt.step()
    >>> lam.detach()  # -(1 + 1/2 + 1/3)
    tensor([-1.8333, -1.8333])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


def _check_rate(value: Any, name: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}.")
    return float(value)


class InverseTimeSGD(torch.optim.Optimizer):
    """SGD with the inverse-time step size ``η_k = lr / (1 + decay·k)``, ``k`` = updates so far (per tensor).

    The update is ``λ ← λ - η_k g`` computed as ``λ.sub_(η_k * g)``: the step is rounded once, then
    subtracted (``torch.optim.SGD``'s fused ``add_(g, alpha=-η)`` rounds differently in the last bit).
    ``k`` is kept in the optimiser's state, so :meth:`state_dict` / :meth:`load_state_dict` resume the
    schedule exactly.

    Args:
        params: the hyperparameter tensors (leaves with ``requires_grad=True``) or parameter groups.
        lr: ``η₀ > 0``.
        decay: ``d >= 0`` (0: a constant step).
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float, decay: float = 0.0) -> None:
        lr = _check_rate(lr, "lr", positive=True)
        decay = _check_rate(decay, "decay", positive=False)
        super().__init__(params, {"lr": lr, "decay": decay})

    def step_size(self, group: dict[str, Any], k: int) -> float:
        """``η_k`` of a parameter group."""
        return group["lr"] / (1.0 + group["decay"] * k)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every tensor that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                k = int(state.get("step", 0))
                self._update(p, p.grad, group, state, k)
                state["step"] = k + 1
        return loss

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict[str, Any], k: int) -> None:
        """Update ``k`` of one tensor: ``λ ← λ - η_k g``."""
        p.sub_(self.step_size(group, k) * grad)


class InverseTimeAdam(InverseTimeSGD):
    """Adam (Kingma & Ba, ICLR 2015, Algorithm 1) with the inverse-time step ``η_k = lr / (1 + decay·k)``.

    ``m ← β₁m + (1-β₁)g``, ``v ← β₂v + (1-β₂)g²``, ``λ ← λ - η_k m̂ / (√v̂ + ε)`` with the bias corrections
    ``m̂ = m / (1-β₁^{k+1})``, ``v̂ = v / (1-β₂^{k+1})``. A per-coordinate step: a hyperparameter whose
    hypergradient is small but consistent moves as fast as one whose hypergradient is large (LDS's θ on a
    large graph). The state (``step``, ``exp_avg``, ``exp_avg_sq``) is tensors and ints: :meth:`state_dict`
    round-trips through ``torch.load(weights_only=True)``.

    Args:
        params: the hyperparameter tensors or parameter groups.
        lr: ``η₀ > 0``; decay: ``d >= 0``; betas: ``(β₁, β₂)`` in ``[0, 1)``; eps: ``ε > 0``.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float, decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        for i, b in enumerate(betas):
            if not 0.0 <= _check_rate(b, f"betas[{i}]", positive=False) < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {b!r}.")
        super().__init__(params, lr, decay)
        eps = _check_rate(eps, "eps", positive=True)
        for group in self.param_groups:
            group.setdefault("betas", tuple(float(b) for b in betas))
            group.setdefault("eps", eps)

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any], state: dict[str, Any], k: int) -> None:
        """Update ``k`` of one tensor: Adam's moments, then ``λ ← λ - η_k m̂ / (√v̂ + ε)``."""
        b1, b2 = group["betas"]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (v / (1 - b2 ** (k + 1))).sqrt_().add_(group["eps"])
        p.addcdiv_(m, denom, value=-self.step_size(group, k) / (1 - b1 ** (k + 1)))
