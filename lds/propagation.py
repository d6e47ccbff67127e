"""Normalised GCN propagation ``Y = Â M`` on a graph given by values over candidate pairs.

θ-space: ``values`` has one entry per undirected candidate pair ``(i, j)``, ``i < j``; the
adjacency is symmetric, ``A_ij = A_ji = values[p]``, and ``Â = D̃^{-1/2}(A + I)D̃^{-1/2}`` with
``d̃_i = 1 + Σ_j A_ij`` (Kipf & Welling, 2017).

:func:`gcn_propagate` keeps the forward pass sparse (only the pairs with a nonzero value enter a
CSR matrix) while the gradient reaches *every* candidate pair, also those sampled as 0
(straight-through, LDS eq. 9.6). With ``s = d̃^{-1/2}``, ``E = ∂L/∂Y``:

- ``∂L/∂M = Â E``;
- ``∂L/∂A_ij = s_i s_j ⟨E_i, M_j⟩ + c_i`` (directed entry), with
  ``c_i = -½ s_i² (⟨E_i, Y_i⟩ + ⟨(ÂE)_i, M_i⟩)`` from the degree, so an undirected pair gets
  ``g_p = s_i s_j (⟨E_i, M_j⟩ + ⟨E_j, M_i⟩) + c_i + c_j``.

The backward is written with differentiable operations (it calls the propagation itself for
``ÂE``), so second and higher derivatives exist: the bilevel hypergradient differentiates through
inner gradient steps. The pair term costs O(P·h), or one N×N product when the candidate set is
all pairs; it is skipped when the engine will not use the gradient with respect to the values
(an ordinary inner step asks only for the GCN weights).
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch
from torch import Tensor

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


def all_pairs(num_nodes: int) -> Tensor:
    """All undirected pairs ``(i, j)``, ``i < j``: shape ``(2, N(N-1)/2)``."""
    if num_nodes < 2:
        raise ValueError(f"num_nodes must be >= 2 for a candidate set of pairs, got {num_nodes}.")
    return torch.triu_indices(num_nodes, num_nodes, offset=1)


def pairs_from_edge_index(edge_index: Tensor) -> Tensor:
    """Unique undirected pairs ``(min, max)`` of an edge index, self-loops dropped, sorted."""
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}.")
    if edge_index.numel() == 0:
        return torch.empty(2, 0, dtype=torch.long, device=edge_index.device)
    lo = torch.minimum(edge_index[0], edge_index[1])
    hi = torch.maximum(edge_index[0], edge_index[1])
    keep = lo != hi
    lo, hi = lo[keep].long(), hi[keep].long()
    n = int(hi.max()) + 1 if hi.numel() else 1
    keys = torch.unique(lo * n + hi)
    return torch.stack([keys // n, keys % n])


def to_edge_index(values: Tensor, pairs: Tensor, keep_zeros: bool = True) -> tuple[Tensor, Tensor]:
    """Both directions ``(2, 2P)`` and their weights, e.g. to run a PyG ``MessagePassing`` layer.

    With ``keep_zeros`` every candidate is an edge (weight 0 or 1), so unsampled pairs get gradient.
    """
    if not keep_zeros:
        nz = values.detach() != 0
        values, pairs = values[nz], pairs[:, nz]
    return torch.cat([pairs, pairs.flip(0)], dim=1), torch.cat([values, values])


class CandidateGraph:
    """The static candidate set: pairs, node count and the strategy for the pair gradient.

    Args:
        pairs: ``(2, P)`` with ``pairs[0] < pairs[1]``, no duplicates.
        num_nodes: N.
        candidate_mode: ``"gather"`` (O(P·h)), ``"dense"`` (one N×N product) or ``"auto"`` (dense when
            P is at least half of all pairs).
        validate: check the pairs (shape, range, order, duplicates).
    """

    def __init__(self, pairs: Tensor, num_nodes: int, candidate_mode: str = "auto", validate: bool = True) -> None:
        if candidate_mode not in ("auto", "gather", "dense"):
            raise ValueError(f"candidate_mode must be 'auto', 'gather' or 'dense', got {candidate_mode!r}.")
        if validate:
            _check_pairs(pairs, num_nodes)
        self.pairs = pairs
        self.num_nodes = int(num_nodes)
        total = num_nodes * (num_nodes - 1) // 2
        if candidate_mode == "auto":
            candidate_mode = "dense" if pairs.size(1) >= 0.5 * max(total, 1) else "gather"
        self.mode = candidate_mode
        self.flat_index = pairs[0] * num_nodes + pairs[1] if candidate_mode == "dense" else None


class TensorCache:
    """A cache keyed by tensor identity that forgets an entry when its tensor is freed."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[weakref.ref, Any]] = {}

    def get(self, key: Tensor) -> Any:
        entry = self._entries.get(id(key))
        if entry is not None and entry[0]() is key:
            return entry[1]
        return None

    def set(self, key: Tensor, value: Any) -> None:
        self._entries[id(key)] = (weakref.ref(key), value)
        weakref.finalize(key, self._entries.pop, id(key), None)


_CANDIDATES = TensorCache()


def candidate_graph(pairs: Tensor, num_nodes: int, candidate_mode: str = "auto") -> CandidateGraph:
    """A :class:`CandidateGraph` for ``pairs``, cached per pairs tensor (validated once)."""
    cached = _CANDIDATES.get(pairs)
    if cached is not None and cached.num_nodes == num_nodes and candidate_mode in ("auto", cached.mode):
        return cached
    cand = CandidateGraph(pairs, num_nodes, candidate_mode)
    _CANDIDATES.set(pairs, cand)
    return cand


def _check_pairs(pairs: Tensor, num_nodes: int) -> None:
    if not isinstance(pairs, Tensor) or pairs.dim() != 2 or pairs.size(0) != 2:
        raise ValueError(f"pairs must be a tensor of shape (2, P), got {getattr(pairs, 'shape', type(pairs))}.")
    if pairs.dtype != torch.long:
        raise TypeError(f"pairs must be a LongTensor, got {pairs.dtype}.")
    if pairs.numel() == 0:
        return
    if int(pairs.min()) < 0 or int(pairs.max()) >= num_nodes:
        raise ValueError(f"pairs has node indices outside [0, {num_nodes}): min {int(pairs.min())}, "
                         f"max {int(pairs.max())}.")
    if not bool((pairs[0] < pairs[1]).all()):
        raise ValueError("pairs must satisfy pairs[0] < pairs[1] (undirected pairs, no self-loops); "
                         "use pairs_from_edge_index(edge_index).")
    keys = pairs[0] * num_nodes + pairs[1]
    if torch.unique(keys).numel() != keys.numel():
        raise ValueError("pairs contains duplicate pairs; use pairs_from_edge_index to deduplicate.")


class Support:
    """The nonzero pattern of one values vector (one sampled graph), shared by both GCN layers."""

    def __init__(self, values: Tensor, cand: CandidateGraph) -> None:
        n = cand.num_nodes
        self.cand = cand
        self.nz = torch.nonzero(values.detach() != 0, as_tuple=True)[0]
        i, j = cand.pairs[0, self.nz], cand.pairs[1, self.nz]
        rows = torch.cat([i, j])
        cols = torch.cat([j, i])
        order = torch.argsort(rows * n + cols)
        self.rows, self.cols, self.order = rows, cols, order
        self.i, self.j = i, j
        counts = torch.bincount(rows, minlength=n)
        self.crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        self.col_sorted = cols[order]

    def degree(self, values: Tensor) -> Tensor:
        """``d̃ = 1 + A 1`` (differentiable in ``values``)."""
        v = values[self.nz]
        d = torch.ones(self.cand.num_nodes, dtype=values.dtype, device=values.device)
        return d.index_add(0, self.i, v).index_add(0, self.j, v)

    def spmm(self, values: Tensor, X: Tensor) -> Tensor:
        """``A X`` with a CSR matrix (no autograd: used inside the Function's forward)."""
        v = values[self.nz]
        vals = torch.cat([v, v])[self.order]
        n = self.cand.num_nodes
        A = torch.sparse_csr_tensor(self.crow, self.col_sorted, vals, (n, n), dtype=X.dtype, device=X.device,
                                    check_invariants=False)
        return A @ X


def _needs_values_grad(ctx: Any) -> bool:
    """Whether the engine will use ∂L/∂values in this backward pass (skip the pair term if not)."""
    if not ctx.needs_input_grad[0]:
        return False
    edge = getattr(ctx, "values_edge", None)
    if edge is None:
        return True
    try:
        return bool(torch._C._will_engine_execute_node(edge.node))
    except (RuntimeError, AttributeError):  # a leaf under autograd.grad, or an older torch
        return True


class _Propagate(torch.autograd.Function):
    """``Y = Â(values) M`` with a sparse forward and a differentiable backward."""

    @staticmethod
    def forward(values: Tensor, M: Tensor, support: Support) -> Tensor:
        s = support.degree(values).rsqrt().unsqueeze(1)
        sm = s * M
        return s * (support.spmm(values, sm) + sm)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        values, M, support = inputs
        ctx.support = support
        ctx.save_for_backward(values, M, output)
        ctx.values_edge = None
        if values.requires_grad and values.grad_fn is not None:
            ctx.values_edge = torch.autograd.graph.get_gradient_edge(values)

    @staticmethod
    def backward(ctx: Any, E: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        values, M, Y = ctx.saved_tensors
        support: Support = ctx.support
        need_values = _needs_values_grad(ctx)
        need_M = ctx.needs_input_grad[1]
        AE = _Propagate.apply(values, E, support) if (need_M or need_values) else None
        grad_values = None
        if need_values:
            cand = support.cand
            s = support.degree(values).rsqrt()
            c = -0.5 * s * s * ((E * Y).sum(1) + (AE * M).sum(1))
            U = s.unsqueeze(1) * E
            V = s.unsqueeze(1) * M
            pi, pj = cand.pairs[0], cand.pairs[1]
            if cand.mode == "dense":
                G = U @ V.T
                G = G + G.T
                pair = G.reshape(-1)[cand.flat_index]
            else:
                pair = (U[pi] * V[pj]).sum(1) + (U[pj] * V[pi]).sum(1)
            grad_values = pair + c[pi] + c[pj]
        return grad_values, (AE if need_M else None), None


def gcn_propagate(
    values: Tensor,
    pairs: Tensor | CandidateGraph,
    M: Tensor,
    num_nodes: int | None = None,
    *,
    candidate_mode: str = "auto",
    support: Support | None = None,
    validate: bool = True,
) -> Tensor:
    """``Â M`` for the symmetric graph with ``A_ij = A_ji = values[p]`` on candidate pairs ``pairs``.

    Args:
        values: ``(P,)`` edge values (0/1 samples, or weights; the gradient is taken at any real value).
        pairs: ``(2, P)`` candidate pairs, or a prepared :class:`CandidateGraph`.
        M: ``(N, h)`` node features.
        num_nodes: N (default ``M.size(0)``).
        candidate_mode: how the gradient over all candidates is formed (see :class:`CandidateGraph`).
        support: a precomputed :class:`Support` of ``values`` (to share it between layers).
        validate: check shapes (cheap); pairs are checked once per candidate set.
    """
    n = M.size(0) if num_nodes is None else int(num_nodes)
    cand = pairs if isinstance(pairs, CandidateGraph) else candidate_graph(pairs, n, candidate_mode)
    if validate:
        if M.dim() != 2 or M.size(0) != n:
            raise ValueError(f"M must have shape ({n}, h), got {tuple(M.shape)}.")
        if values.shape != (cand.pairs.size(1),):
            raise ValueError(f"values must have shape ({cand.pairs.size(1)},) (one per candidate pair), "
                             f"got {tuple(values.shape)}.")
        if cand.num_nodes != n:
            raise ValueError(f"the candidate set has {cand.num_nodes} nodes but M has {n} rows.")
    if support is None:
        support = Support(values, cand)
    return _Propagate.apply(values, M, support)


def dense_adjacency(values: Tensor, pairs: Tensor, num_nodes: int) -> Tensor:
    """The dense symmetric ``A`` (differentiable in ``values``): the reference path for small graphs."""
    A = torch.zeros(num_nodes, num_nodes, dtype=values.dtype, device=values.device)
    A = A.index_put((pairs[0], pairs[1]), values)
    return A.index_put((pairs[1], pairs[0]), values)


def dense_normalized_adjacency(A: Tensor) -> Tensor:
    """``Â = D̃^{-1/2}(A + I)D̃^{-1/2}`` for a dense (N, N) adjacency."""
    if A.dim() != 2 or A.size(0) != A.size(1):
        raise ValueError(f"A must be a square (N, N) matrix, got {tuple(A.shape)}.")
    B = A + torch.eye(A.size(0), dtype=A.dtype, device=A.device)
    s = B.sum(1).rsqrt()
    return s.unsqueeze(1) * B * s.unsqueeze(0)


def dense_gcn_propagate(values: Tensor, pairs: Tensor, M: Tensor, num_nodes: int | None = None) -> Tensor:
    """Reference ``Â M`` with a dense adjacency and plain autograd (tests; small graphs)."""
    n = M.size(0) if num_nodes is None else num_nodes
    return dense_normalized_adjacency(dense_adjacency(values, pairs, n)) @ M
