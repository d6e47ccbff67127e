"""Small iterative solvers on tuples of tensors, for the implicit hypergradient (thesis Sec. 5.4.3).

In the spirit of TorchOpt's ``linear_solve`` and JAXopt: each solver sees the linear map only through a
matrix-vector product on tuples of tensors (e.g. a vector-Jacobian product ``q -> ∂_wΦᵀ q``), runs at
most ``K`` iterations and stops early once the step it measures has norm ``<= tol``. Each starts from
zero and returns the iterate (no detach: it carries whatever graph ``matvec`` builds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from torch import Tensor

from .._validation import Params

MatVec = Callable[[Params], Params]


def tree_dot(a: Params, b: Params) -> Tensor:
    """``⟨a, b⟩ = Σ_i Σ a_i * b_i`` over two tuples of tensors of matching shapes."""
    # sum() of an empty tuple would be the int 0; Params are never empty (as_tensor_tuple)
    return cast(Tensor, sum((x * y).sum() for x, y in zip(a, b)))


def solve_cg(matvec: MatVec, b: Params, K: int, tol: float) -> Params:
    """Conjugate gradient (Hestenes & Stiefel, 1952) for ``A x = b``, ``A`` symmetric positive definite.

    Stops after ``K`` iterations or once the residual norm ``‖b - A x‖`` is ``<= tol`` (checked before
    each iteration, so ``b = 0`` returns zero without a product).
    """
    x = tuple(torch.zeros_like(t) for t in b)
    r = tuple(t.clone() for t in b)
    p = r
    rs = tree_dot(r, r)
    for _ in range(K):
        if torch.sqrt(rs) <= tol:
            break
        ap = matvec(p)
        alpha = rs / tree_dot(p, ap)
        x = tuple(xi + alpha * pi for xi, pi in zip(x, p))
        r = tuple(ri - alpha * api for ri, api in zip(r, ap))
        rs_new = tree_dot(r, r)
        p = tuple(ri + (rs_new / rs) * pi for ri, pi in zip(r, p))
        rs = rs_new
    return x


def solve_neumann(matvec_J: MatVec, b: Params, K: int, tol: float) -> Params:
    """Truncated Neumann series ``q = Σ_{k=0}^{K} Jᵏ b`` for ``(I - J) q = b`` (spectral radius of J < 1).

    Stops early once a term ``‖Jᵏ b‖`` is ``<= tol``; ``K = 0`` gives ``q = b``.
    """
    term = b
    q = b
    for _ in range(K):
        term = matvec_J(term)
        q = tuple(a + c for a, c in zip(q, term))
        if torch.sqrt(tree_dot(term, term)) <= tol:
            break
    return q


def solve_fixed_point(matvec_J: MatVec, b: Params, K: int, tol: float) -> Params:
    """Fixed-point iteration ``q ← J q + b`` from ``q = 0`` for ``(I - J) q = b`` (J a contraction).

    Stops after ``K`` iterations or once the update ``‖q_new - q‖`` is ``<= tol``; after k iterations
    ``q = Σ_{j<k} Jʲ b`` (thesis Sec. 5.4.3).
    """
    q = tuple(torch.zeros_like(x) for x in b)
    for _ in range(K):
        q_new = tuple(a + c for a, c in zip(matvec_J(q), b))
        diff = tuple(a - c for a, c in zip(q_new, q))
        q = q_new
        if torch.sqrt(tree_dot(diff, diff)) <= tol:
            break
    return q
