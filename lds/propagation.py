r"""Normalised GCN propagation ``Y = Â M`` on a graph given by values over candidate pairs.

Parametrisation (θ-space of LDS): ``values`` holds one entry per undirected candidate pair
``p = (i, j)``, ``i < j``, listed in ``pairs`` of shape ``(2, P)``. The adjacency is symmetric,
``A_ij = A_ji = values[p]``, and (Kipf & Welling, 2017)

    Â = D̃^{-1/2} (A + I) D̃^{-1/2},      d̃_i = 1 + Σ_j A_ij,      Y = Â M.

:func:`gcn_propagate` keeps the forward pass sparse: only the pairs with a nonzero value (a sampled
graph has ~7k of Cora's 3.7M pairs) enter a CSR matrix, and ``Y = s ⊙ ((A + I)(s ⊙ M))`` with
``s = d̃^{-1/2}``. The gradient nevertheless reaches *every* candidate pair, also those whose value is 0
(the straight-through estimator of LDS needs ``∂L/∂A_ij`` where ``A_ij = 0``).

Gradients (``E = ∂L/∂Y``, ``B = A + I``, directed entries ``A_ij`` treated as independent, then
evaluated at the symmetric point):

- ``∂L/∂M = Âᵀ E = Â E``.
- ``Y = S B S M`` with ``S = diag(s)``. Varying ``B`` at fixed ``S`` gives ``s_i s_j ⟨E_i, M_j⟩``.
  ``A_ij`` also changes ``d̃_i`` (row ``i`` only): ``∂s_i/∂A_ij = -½ s_i³``. ``s_i`` enters ``Y`` twice,
  as the left factor of row ``i`` (``∂L/∂s_i ∋ ⟨E_i, (BSM)_i⟩ = ⟨E_i, Y_i⟩ / s_i``) and as the right
  factor of column ``i`` (``∂L/∂s_i ∋ ⟨M_i, (BᵀSE)_i⟩ = ⟨M_i, (ÂE)_i⟩ / s_i``). Hence

      ∂L/∂A_ij = s_i s_j ⟨E_i, M_j⟩ + c_i,     c_i = -½ s_i² (⟨E_i, Y_i⟩ + ⟨(ÂE)_i, M_i⟩),

  and the undirected pair gets the sum of its two entries,

      g_p = s_i s_j (⟨E_i, M_j⟩ + ⟨E_j, M_i⟩) + c_i + c_j = ⟨L_i, R_j⟩,

  with ``L = [sE, sM, c, 1]`` and ``R = [sM, sE, 1, c]`` (``N × (2h+2)``): a rank-``2h+2`` matrix
  ``G = L Rᵀ`` (symmetric) read at the candidate pairs.

Two strategies evaluate ``g``: ``"gather"`` takes the rows of ``L`` and ``R`` at the pairs (O(P·h),
for a sparse candidate set) and ``"dense"`` forms ``G`` with one N×N matrix product and reads the
candidate entries (for the all-pairs set, where ``P ≈ N²/2``); ``"auto"`` picks ``"dense"`` when
``P`` is at least :data:`DENSE_FRACTION` of all pairs.

The backward pass is written with differentiable operations (``ÂE`` is computed by the same
autograd Function, the degree through a small Function whose backward again reaches every
candidate), so second and higher derivatives are exact: the bilevel hypergradient differentiates
through inner gradient steps. The pair term is only formed when autograd will use the gradient with
respect to ``values``; an ordinary inner step, which asks for the GCN weights only, skips it.

Example:
    >>> import torch
    >>> pairs = all_pairs(4)                               # the 6 pairs of 4 nodes
    >>> values = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], requires_grad=True)
    >>> M = torch.randn(4, 2)
    >>> Y = gcn_propagate(values, pairs, M, 4)
    >>> torch.allclose(Y, dense_gcn_propagate(values, pairs, M, 4), atol=1e-6)
    True
    >>> Y.sum().backward()                                 # a gradient for all 6 pairs
    >>> values.grad.shape
    torch.Size([6])
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from bilevel_core.estimators import flat_nonzero

__all__ = [
    "DENSE_FRACTION",
    "CandidateGraph",
    "PairGradientAccumulator",
    "SampledGraph",
    "all_pairs",
    "candidate_graph",
    "check_pairs",
    "dense_adjacency",
    "dense_gcn_propagate",
    "dense_normalized_adjacency",
    "defer_pair_gradients",
    "gcn_propagate",
    "pairs_from_edge_index",
    "reuse_sampled_graphs",
    "to_edge_index",
]

CandidateMode = Literal["auto", "gather", "dense"]
_MODES = ("auto", "gather", "dense")

DENSE_FRACTION = 0.25
"""With ``candidate_mode="auto"``, the pair gradient is formed densely when P ≥ this fraction of N(N-1)/2."""


# ----------------------------------------------------------------------------- pairs


def _check_num_nodes(num_nodes: Any) -> int:
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 0:
        raise ValueError(f"num_nodes must be a non-negative int, got {num_nodes!r}.")
    return num_nodes


def all_pairs(num_nodes: int, *, device: torch.device | str | None = None) -> Tensor:
    """All undirected pairs ``(i, j)``, ``i < j``, in row-major order: shape ``(2, N(N-1)/2)``.

    Example:
        >>> all_pairs(3)
        tensor([[0, 0, 1],
                [1, 2, 2]])
    """
    n = _check_num_nodes(num_nodes)
    return torch.triu_indices(n, n, offset=1, device=device)


def pairs_from_edge_index(edge_index: Tensor, num_nodes: int | None = None) -> Tensor:
    """Unique undirected pairs ``(min, max)`` of an edge index, self-loops dropped, sorted.

    Args:
        edge_index: ``(2, E)`` integer tensor; either or both directions of an edge may be present.
        num_nodes: N (default: largest index + 1); only used to form sort keys.

    Example:
        >>> pairs_from_edge_index(torch.tensor([[0, 1, 2, 2], [1, 0, 2, 0]]))
        tensor([[0, 0],
                [1, 2]])
    """
    if not isinstance(edge_index, Tensor):
        raise TypeError(f"edge_index must be a tensor of shape (2, E), got {type(edge_index).__name__}.")
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}.")
    if edge_index.dtype.is_floating_point or edge_index.dtype.is_complex or edge_index.dtype == torch.bool:
        raise TypeError(f"edge_index must hold integer node indices, got {edge_index.dtype}; use edge_index.long().")
    edge_index = edge_index.long()
    if edge_index.numel() == 0:
        return torch.empty(2, 0, dtype=torch.long, device=edge_index.device)
    if int(edge_index.min()) < 0:
        raise ValueError(f"edge_index has a negative node index ({int(edge_index.min())}).")
    lo = torch.minimum(edge_index[0], edge_index[1])
    hi = torch.maximum(edge_index[0], edge_index[1])
    keep = lo != hi
    lo, hi = lo[keep], hi[keep]
    n = int(edge_index.max()) + 1 if num_nodes is None else max(int(num_nodes), int(edge_index.max()) + 1)
    keys = torch.unique(lo * n + hi)  # sorted
    return torch.stack([keys // n, keys % n])


def check_pairs(pairs: Any, num_nodes: int) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``pairs`` is a valid ``(2, P)`` candidate set on N nodes.

    Valid: a ``torch.long`` tensor of shape ``(2, P)``, indices in ``[0, N)``, ``pairs[0] < pairs[1]``,
    no duplicate pair. Costs O(P) for sorted pairs (as produced by :func:`all_pairs` and
    :func:`pairs_from_edge_index`), O(P log P) otherwise.
    """
    n = _check_num_nodes(num_nodes)
    if not isinstance(pairs, Tensor):
        raise TypeError(f"pairs must be a torch.long tensor of shape (2, P), got {type(pairs).__name__}.")
    if pairs.dim() != 2 or pairs.size(0) != 2:
        raise ValueError(f"pairs must have shape (2, P), got {tuple(pairs.shape)}; "
                         "build it with all_pairs(N) or pairs_from_edge_index(edge_index).")
    if pairs.dtype != torch.long:
        raise TypeError(f"pairs must be a torch.long tensor, got {pairs.dtype}; use pairs.long().")
    if pairs.size(1) == 0:
        return
    lo, hi = int(pairs.min()), int(pairs.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"pairs has node indices outside [0, {n}) (num_nodes={n}): min {lo}, max {hi}.")
    bad = pairs[0] >= pairs[1]
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0, 0])
        raise ValueError(
            f"pairs must satisfy pairs[0] < pairs[1] (undirected pairs, no self-loops), but pair {k} is "
            f"({int(pairs[0, k])}, {int(pairs[1, k])}); use pairs_from_edge_index(edge_index)."
        )
    keys = pairs[0] * n + pairs[1]
    if keys.numel() > 1 and not bool((keys[1:] > keys[:-1]).all()):
        keys = keys.sort().values
        dup = keys[1:] == keys[:-1]
        if bool(dup.any()):
            key = int(keys[1:][dup][0])
            raise ValueError(f"pairs contains the pair ({key // n}, {key % n}) more than once; "
                             "use pairs_from_edge_index to deduplicate.")


def to_edge_index(values: Tensor, pairs: Tensor, keep_zeros: bool = True) -> tuple[Tensor, Tensor]:
    """Both directions ``(2, 2P)`` and their weights ``(2P,)``, e.g. for a PyG ``MessagePassing`` layer.

    With ``keep_zeros`` every candidate is an edge (weight 0 or 1), so a layer such as ``GCNConv``
    gives the same propagation and a gradient for every candidate. Without it only the pairs with a
    nonzero value are kept. The weights are differentiable in ``values``.

    Example:
        >>> to_edge_index(torch.tensor([1.0, 0.0]), torch.tensor([[0, 1], [1, 2]]))
        (tensor([[0, 1, 1, 2],
                [1, 2, 0, 1]]), tensor([1., 0., 1., 0.]))
    """
    if values.dim() != 1 or pairs.dim() != 2 or pairs.size(0) != 2 or values.numel() != pairs.size(1):
        raise ValueError(f"values must have shape (P,) and pairs (2, P), got {tuple(values.shape)} "
                         f"and {tuple(pairs.shape)}.")
    if not keep_zeros:
        nz = torch.nonzero(values.detach(), as_tuple=True)[0]
        values, pairs = values[nz], pairs[:, nz]
    return torch.cat([pairs, pairs.flip(0)], dim=1), torch.cat([values, values])


# ----------------------------------------------------------------------------- candidate set


class _CandidateCaches:
    """What one candidate set owns besides its pairs: derived index tensors (per strategy), the active
    :class:`reuse_sampled_graphs` cache and the active :class:`PairGradientAccumulator`.

    Shared by the views :meth:`CandidateGraph.with_mode` hands out, so a context entered on one view is
    seen by all of them; owned by the candidate set, so two fits (two candidate sets) never share it.
    """

    __slots__ = ("derived", "reuse", "deferred")

    def __init__(self) -> None:
        self.derived: dict[tuple[str, str], Any] = {}
        self.reuse: Any = None  # WeakIdKeyDictionary values -> (version, SampledGraph) inside reuse_sampled_graphs
        self.deferred: PairGradientAccumulator | None = None  # inside the accumulator's context


class CandidateGraph:
    """A static candidate set of pairs with its node count and pair-gradient strategy.

    Build it once per candidate set and pass it wherever ``pairs`` is accepted: validation and the
    index used by the dense strategy are computed once and cached on this object (and on the views
    :meth:`with_mode` returns), never in a module-level registry. :class:`reuse_sampled_graphs` and
    :class:`PairGradientAccumulator` attach to it as contexts.

    Args:
        pairs: ``(2, P)`` long tensor, ``pairs[0] < pairs[1]``, no duplicates.
        num_nodes: N.
        candidate_mode: ``"gather"`` (O(P·h)), ``"dense"`` (one N×N product) or ``"auto"`` (dense when
            P ≥ ``DENSE_FRACTION``·N(N-1)/2).
        validate: run :func:`check_pairs`.

    Attributes:
        pairs, num_nodes, num_pairs, mode (``"gather"`` or ``"dense"``), is_all_pairs, validated.
    """

    def __init__(self, pairs: Tensor, num_nodes: int, candidate_mode: CandidateMode = "auto", *,
                 validate: bool = True) -> None:
        if candidate_mode not in _MODES:
            raise ValueError(f"candidate_mode must be one of {_MODES}, got {candidate_mode!r}.")
        n = _check_num_nodes(num_nodes)
        if validate:
            check_pairs(pairs, n)
        self.pairs = pairs
        self.num_nodes = n
        self.num_pairs = int(pairs.size(1))
        self.validated = bool(validate)
        total = n * (n - 1) // 2
        if candidate_mode == "auto":
            candidate_mode = "dense" if total > 0 and self.num_pairs >= DENSE_FRACTION * total else "gather"
        self.mode: str = candidate_mode
        self._caches = _CandidateCaches()

    @property
    def is_all_pairs(self) -> bool:
        """Whether the (validated) candidate set is every pair of the N nodes."""
        n = self.num_nodes
        return self.validated and n > 1 and self.num_pairs == n * (n - 1) // 2

    @property
    def flat_index(self) -> Tensor:
        """``i·N + j`` per pair: where the dense strategy reads ``G``."""
        derived = self._caches.derived
        if ("flat_index", "") not in derived:
            flat = self.pairs[0] * self.num_nodes + self.pairs[1]
            small = self.num_nodes * self.num_nodes < 2**31
            derived[("flat_index", "")] = flat.int() if small else flat  # int32 reads faster, halves the cache
        return derived[("flat_index", "")]

    def sampled_dot(self, left: Tensor, right: Tensor) -> Tensor:
        """``⟨left_i, right_j⟩`` for every candidate pair ``(i, j)`` ``(P,)``: one sampled dense-dense product
        (SDDMM, ``torch.sparse.sampled_addmm``) on the pairs' CSR pattern, without the ``P × h`` gathered
        copies of ``left[i] * right[j]`` (20news, 151 k pairs × 34: 0.8 ms against 6-14 ms)."""
        derived = self._caches.derived
        if ("pattern", "") not in derived:
            pairs, n = self.pairs, self.num_nodes
            keys = pairs[0] * n + pairs[1]
            perm = None if bool((keys[1:] > keys[:-1]).all()) else torch.argsort(keys)
            rows, cols = (pairs[0], pairs[1]) if perm is None else (pairs[0][perm], pairs[1][perm])
            crow = torch.cat([rows.new_zeros(1), torch.bincount(rows, minlength=n).cumsum(0)])
            derived[("pattern", "")] = (crow, cols, perm)
        crow, cols, perm = derived[("pattern", "")]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            pattern = torch.sparse_csr_tensor(crow, cols, left.new_zeros(cols.numel()),
                                              (self.num_nodes, self.num_nodes), check_invariants=False)
            vals = torch.sparse.sampled_addmm(pattern, left, right.T, beta=0.0).values()
        return vals if perm is None else torch.empty_like(vals).index_copy_(0, perm, vals)

    def with_mode(self, candidate_mode: CandidateMode) -> CandidateGraph:
        """The same candidate set with another pair-gradient strategy (no new validation; shares the caches)."""
        if candidate_mode == "auto" or candidate_mode == self.mode:
            return self
        if candidate_mode not in _MODES:
            raise ValueError(f"candidate_mode must be one of {_MODES}, got {candidate_mode!r}.")
        other = CandidateGraph(self.pairs, self.num_nodes, candidate_mode, validate=False)
        other.validated = self.validated
        other._caches = self._caches
        return other

    def __repr__(self) -> str:
        return f"CandidateGraph(num_nodes={self.num_nodes}, num_pairs={self.num_pairs}, mode={self.mode!r})"


def candidate_graph(pairs: Tensor | CandidateGraph, num_nodes: int, candidate_mode: CandidateMode = "auto", *,
                    validate: bool = True) -> CandidateGraph:
    """``pairs`` as a :class:`CandidateGraph`: a prepared one is returned as it is (in ``candidate_mode``),
    a tensor gives a new one, validated when ``validate``.

    Nothing is cached between calls: code that propagates many times on one candidate set builds its
    :class:`CandidateGraph` once and passes it (as :class:`~lds.edges.EdgeDistribution` does).
    """
    if isinstance(pairs, CandidateGraph):
        if pairs.num_nodes != num_nodes:
            raise ValueError(f"the candidate set has {pairs.num_nodes} nodes, but num_nodes={num_nodes}.")
        return pairs.with_mode(candidate_mode)  # checks candidate_mode
    if not isinstance(pairs, Tensor):
        raise TypeError(f"pairs must be a torch.long tensor of shape (2, P), got {type(pairs).__name__}.")
    return CandidateGraph(pairs, num_nodes, candidate_mode, validate=validate)


# ----------------------------------------------------------------------------- one sampled graph


class SampledGraph:
    """The nonzero pattern of one ``values`` vector on a candidate set: CSR adjacency and degrees.

    A snapshot of ``values`` when it is built; share it between the propagations that use the same
    values (the two layers of a GCN, and the backward pass). Built by :func:`gcn_propagate` when not given.

    Attributes:
        candidates: the :class:`CandidateGraph`.
        nonzero: indices of the candidate pairs with a nonzero value.
        degree: ``d̃ = 1 + A 1`` ``(N,)``.
        inv_sqrt_degree: ``s = d̃^{-1/2}`` ``(N,)``.
        adjacency: the symmetric ``A`` as a CSR tensor (``None`` when there is no nonzero value).
    """

    def __init__(self, values: Tensor, candidates: CandidateGraph) -> None:
        n = candidates.num_nodes
        v = values.detach()
        pairs = candidates.pairs
        self.candidates = candidates
        self.nonzero = flat_nonzero(v)
        w = v.index_select(0, self.nonzero)
        i, j = pairs.index_select(1, self.nonzero)  # index_select: a third of the time of pairs[0, nonzero]
        degree = torch.ones(n, dtype=v.dtype, device=v.device)
        self.degree = degree.index_add_(0, i, w).index_add_(0, j, w)
        self.inv_sqrt_degree = self.degree.rsqrt()
        self.adjacency: Tensor | None = None
        if w.numel():
            rows = torch.cat([i, j])
            cols = torch.cat([j, i])
            order = torch.argsort(rows * n + cols)
            counts = torch.bincount(rows, minlength=n)
            crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                self.adjacency = torch.sparse_csr_tensor(crow, cols.index_select(0, order),
                                                         torch.cat([w, w]).index_select(0, order), (n, n),
                                                         check_invariants=False)

    @classmethod
    def of(cls, values: Tensor, candidates: CandidateGraph) -> SampledGraph:
        """The graph of ``values``; inside :class:`reuse_sampled_graphs` on ``candidates``, built once per values
        tensor while its version counter is unchanged."""
        cache = candidates._caches.reuse
        if cache is None:
            return cls(values, candidates)
        hit = cache.get(values)
        if hit is not None:
            version, graph = hit
            if version == values._version and graph.candidates.mode == candidates.mode:
                return graph
        graph = cls(values, candidates)
        cache[values] = (values._version, graph)  # lives until the context ends
        return graph

    def matmul(self, X: Tensor) -> Tensor:
        """``A X`` (not differentiable: used inside the autograd Functions)."""
        if self.adjacency is None:
            return torch.zeros_like(X)
        return self.adjacency @ X


class reuse_sampled_graphs:  # noqa: N801 (a context manager, used like a function)
    """Within this context, propagations on ``candidates`` with the same ``values`` tensor share one
    :class:`SampledGraph` (the cache is held by the candidate set and dropped when the context ends).

    Kipf's GCN on ``A = θ`` (kNN-LDS (dense)) propagates on the same θ at every step of a hypergradient
    window and in its replay: one build per window instead of 2τ + 2 (Citeseer, all pairs, 1.9 M pairs
    with θ > 0: a build sorts 3.7 M directed entries, ~90 ms). A graph is rebuilt when the tensor's version
    counter moves (an in-place update); a change through ``.data``, which the counter does not see, is not
    noticed, so use it only where ``values`` is not changed that way (the cache ends with the context).
    """

    def __init__(self, candidates: CandidateGraph) -> None:
        if not isinstance(candidates, CandidateGraph):
            raise TypeError("reuse_sampled_graphs needs the CandidateGraph the propagations use (build it once with "
                            f"candidate_graph(pairs, num_nodes)), got {type(candidates).__name__}.")
        self.candidates = candidates

    def __enter__(self) -> reuse_sampled_graphs:
        if self.candidates._caches.reuse is not None:
            raise RuntimeError("sampled graphs of this candidate set are already being reused (nested contexts).")
        self.candidates._caches.reuse = WeakIdKeyDictionary()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.candidates._caches.reuse = None


# ----------------------------------------------------------------------------- autograd


class _Degree(torch.autograd.Function):
    """``d̃ = 1 + A 1`` from the nonzero values; the gradient reaches every candidate pair."""

    @staticmethod
    def forward(values: Tensor, graph: SampledGraph) -> Tensor:
        return graph.degree.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.graph = inputs[1]

    @staticmethod
    def backward(ctx: Any, grad_degree: Tensor) -> tuple[Tensor, None]:
        pairs = ctx.graph.candidates.pairs
        return grad_degree.index_select(0, pairs[0]) + grad_degree.index_select(0, pairs[1]), None  # differentiable


def _values_grad_needed(ctx: Any) -> bool:
    """Whether autograd will use ``∂L/∂values`` in this backward pass (the pair term is skipped if not)."""
    if not ctx.needs_input_grad[0]:
        return False
    edge = ctx.values_edge
    if edge is None:
        return True
    try:
        return bool(torch._C._will_engine_execute_node(edge.node))
    except (RuntimeError, AttributeError, TypeError):  # outside the engine, or another torch version
        return True


def _pair_gradient(values: Tensor, M: Tensor, Y: Tensor, E: Tensor, AE: Tensor,
                   graph: SampledGraph) -> Tensor | None:
    """``g_p = ⟨L_i, R_j⟩`` for every candidate pair (see the module docstring); differentiable.

    Inside :func:`defer_pair_gradients` (and outside ``create_graph``) the factors go to the
    accumulator instead and ``None`` is returned.
    """
    grad_mode = torch.is_grad_enabled()
    if grad_mode:  # create_graph: the degree must carry its dependence on every candidate
        s = _Degree.apply(values, graph).rsqrt()
    else:
        s = graph.inv_sqrt_degree
    c = -0.5 * s * s * ((E * Y).sum(1) + (AE * M).sum(1))
    sE = s.unsqueeze(1) * E
    sM = s.unsqueeze(1) * M
    cand = graph.candidates
    if not grad_mode:
        acc = cand._caches.deferred
        if acc is not None:
            acc.add(sE, sM, c)
            return None
    c = c.unsqueeze(1)
    ones = torch.ones_like(c)
    left = torch.cat([sE, sM, c, ones], dim=1)
    right = torch.cat([sM, sE, ones, c], dim=1)
    if cand.mode == "dense":
        return (left @ right.T).reshape(-1).index_select(0, cand.flat_index)
    if not grad_mode:
        return cand.sampled_dot(left, right)
    pairs = cand.pairs
    return (left.index_select(0, pairs[0]) * right.index_select(0, pairs[1])).sum(1)  # differentiable


class PairGradientAccumulator:
    r"""Sum of deferred pair gradients ``Σ_k G_k`` over the uses of a candidate set in one backward pass.

    Each use contributes ``G_k = sE_k (sM_k)ᵀ + sM_k (sE_k)ᵀ + c_k 1ᵀ + 1 c_kᵀ`` (module docstring), so
    the sum is ``F + Fᵀ + c 1ᵀ + 1 cᵀ`` with ``F = P Qᵀ``, ``P = [sE_1 … sE_K]``, ``Q = [sM_1 … sM_K]``
    and ``c = Σ_k c_k``: one N×N product per backward pass (e.g. per hypergradient window of LDS)
    instead of one per use of a sampled graph (2τ + 2 of them per window with a 2-layer GCN).

    A context manager on its candidate set, and a :class:`bilevel_core.DeferredGradient`: inside the
    context, backward passes that are not ``create_graph`` send the pair gradients of the candidate set
    here instead of returning them to autograd, and :meth:`gradient` gives their sum. That is only the
    gradient of ``θ`` where ``∂values/∂θ`` is the identity (``values = θ``, or a straight-through sample
    of θ). Passed to ``hypergradient(..., deferred_grads={0: acc})`` the core adds it to the
    hypergradient it returns. Entering clears what an earlier use recorded.

    Example:
        >>> cand = candidate_graph(all_pairs(4), 4)
        >>> theta = torch.full((6,), 0.5, requires_grad=True)
        >>> M = torch.randn(4, 2)
        >>> with PairGradientAccumulator(cand) as acc:
        ...     Y = gcn_propagate(theta, cand, M, 4)
        ...     (g,) = torch.autograd.grad(Y.sum(), theta, allow_unused=True)
        >>> g is None, acc.gradient().shape
        (True, torch.Size([6]))
    """

    def __init__(self, candidates: CandidateGraph) -> None:
        if not isinstance(candidates, CandidateGraph):
            raise TypeError("PairGradientAccumulator needs the CandidateGraph the propagations use (build it once "
                            f"with candidate_graph(pairs, num_nodes)), got {type(candidates).__name__}.")
        self.candidates = candidates
        self.left: list[Tensor] = []
        self.right: list[Tensor] = []
        self.c: Tensor | None = None
        self.num_uses = 0

    def __enter__(self) -> PairGradientAccumulator:
        caches = self.candidates._caches
        if caches.deferred is not None:
            raise RuntimeError("pair gradients of this candidate set are already being deferred (nested contexts).")
        self.left, self.right, self.c, self.num_uses = [], [], None, 0
        caches.deferred = self
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.candidates._caches.deferred is self:
            self.candidates._caches.deferred = None

    def add(self, sE: Tensor, sM: Tensor, c: Tensor) -> None:
        """Record one use: ``G_k`` with factors ``sE``, ``sM`` ``(N, h)`` and the degree term ``c`` ``(N,)``."""
        self.left.append(sE.detach())
        self.right.append(sM.detach())
        self.c = c.detach().clone() if self.c is None else self.c.add_(c.detach())
        self.num_uses += 1

    def gradient(self, like: Tensor | None = None) -> Tensor:
        """``∂L/∂values`` ``(P,)`` summed over the recorded uses (zeros when there was none)."""
        cand = self.candidates
        if self.c is None:
            if like is None:
                raise ValueError("no use was recorded; pass like= to get zeros of the right dtype and device.")
            return torch.zeros(cand.num_pairs, dtype=like.dtype, device=like.device)
        P, Q = torch.cat(self.left, dim=1), torch.cat(self.right, dim=1)
        i, j = cand.pairs[0], cand.pairs[1]
        if cand.mode == "dense":
            F = P @ Q.T
            # F + Fᵀ through a contiguous (blocked) transpose: the strided read of F.T in a plain add is
            # cache-hostile, 156 → 129 ms per window on Citeseer; the sums are the same floats
            G = F.T.contiguous().add_(F).add_(self.c.unsqueeze(1)).add_(self.c.unsqueeze(0))
            return G.reshape(-1).index_select(0, cand.flat_index)
        F = cand.sampled_dot(torch.cat([P, Q], dim=1), torch.cat([Q, P], dim=1))  # ⟨P_i, Q_j⟩ + ⟨Q_i, P_j⟩
        return F + self.c.index_select(0, i) + self.c.index_select(0, j)


def defer_pair_gradients(candidates: CandidateGraph, candidate_mode: CandidateMode = "auto") -> PairGradientAccumulator:
    """A :class:`PairGradientAccumulator` on ``candidates`` (in ``candidate_mode``), to use as a context."""
    if not isinstance(candidates, CandidateGraph):
        raise TypeError("defer_pair_gradients needs the CandidateGraph the propagations use (build it once with "
                        f"candidate_graph(pairs, num_nodes)), got {type(candidates).__name__}.")
    return PairGradientAccumulator(candidates.with_mode(candidate_mode))


class _Propagate(torch.autograd.Function):
    """``Y = Â(values) M``: sparse forward, differentiable backward."""

    @staticmethod
    def forward(values: Tensor, M: Tensor, graph: SampledGraph) -> Tensor:
        s = graph.inv_sqrt_degree.unsqueeze(1)
        sM = s * M
        return s * (graph.matmul(sM) + sM)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        values, M, graph = inputs
        ctx.graph = graph
        ctx.save_for_backward(values, M, output)
        ctx.values_edge = None
        if values.requires_grad:  # a leaf too (A = θ itself): its edge is θ's gradient accumulator
            ctx.values_edge = torch.autograd.graph.get_gradient_edge(values)

    @staticmethod
    def backward(ctx: Any, E: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        values, M, Y = ctx.saved_tensors
        need_values = _values_grad_needed(ctx)
        need_M = ctx.needs_input_grad[1]
        if not (need_values or need_M):
            return None, None, None
        AE = _Propagate.apply(values, E, ctx.graph)  # Âᵀ E = Â E
        grad_values = _pair_gradient(values, M, Y, E, AE, ctx.graph) if need_values else None
        return grad_values, (AE if need_M else None), None


# ----------------------------------------------------------------------------- public API


def _check_inputs(values: Any, cand: CandidateGraph, M: Any, num_nodes: int) -> None:
    if not isinstance(values, Tensor):
        raise TypeError(f"values must be a tensor of shape (P,), got {type(values).__name__}.")
    if not isinstance(M, Tensor):
        raise TypeError(f"M must be a tensor of shape (N, h), got {type(M).__name__}.")
    if not values.is_floating_point():
        raise TypeError(f"values must be floating point, got {values.dtype}.")
    if values.shape != (cand.num_pairs,):
        raise ValueError(f"values must have shape ({cand.num_pairs},), one entry per candidate pair, "
                         f"got {tuple(values.shape)}.")
    if M.dim() != 2 or M.size(0) != num_nodes:
        raise ValueError(f"M must have shape (num_nodes, h) = ({num_nodes}, h), got {tuple(M.shape)}.")
    if M.dtype != values.dtype:
        raise TypeError(f"M and values must have the same dtype, got M {M.dtype} and values {values.dtype}.")
    if M.device != values.device or cand.pairs.device != values.device:
        raise ValueError(f"values, pairs and M must be on one device, got {values.device}, {cand.pairs.device} "
                         f"and {M.device}.")


def gcn_propagate(
    values: Tensor,
    pairs: Tensor | CandidateGraph,
    M: Tensor,
    num_nodes: int | None = None,
    *,
    candidate_mode: CandidateMode = "auto",
    validate: bool = True,
    sampled_graph: SampledGraph | None = None,
) -> Tensor:
    """``Â M`` for the symmetric graph with ``A_ij = A_ji = values[p]`` on the candidate pairs.

    Sparse in the forward pass (only nonzero values), exact gradients for every candidate pair and
    for ``M`` in the backward pass, differentiable to any order.

    Args:
        values: ``(P,)`` edge values (0/1 samples or weights; gradients are taken at any real value,
            but ``d̃`` must stay positive).
        pairs: ``(2, P)`` candidate pairs, or a prepared :class:`CandidateGraph`.
        M: ``(N, h)`` node features, same dtype and device as ``values``.
        num_nodes: N (default ``M.size(0)``).
        candidate_mode: how the gradient over all candidates is formed: ``"gather"``, ``"dense"`` or
            ``"auto"`` (see :class:`CandidateGraph`).
        validate: check the arguments (pairs once per tensor, shapes, dtypes, positive degrees). The
            hot path of a fit passes ``False``.
        sampled_graph: a :class:`SampledGraph` of ``values`` to reuse (e.g. across GCN layers).

    Returns:
        ``Y = Â M`` of shape ``(N, h)``.
    """
    if num_nodes is None:
        if not isinstance(M, Tensor) or M.dim() != 2:
            raise ValueError(f"M must be a tensor of shape (N, h), got {getattr(M, 'shape', type(M).__name__)}.")
        num_nodes = M.size(0)
    if validate:
        _check_num_nodes(num_nodes)
    cand = candidate_graph(pairs, num_nodes, candidate_mode, validate=validate)
    if validate:
        _check_inputs(values, cand, M, num_nodes)
    if sampled_graph is None:
        sampled_graph = SampledGraph.of(values, cand)
    elif sampled_graph.candidates.pairs is not cand.pairs or sampled_graph.candidates.num_nodes != num_nodes:
        raise ValueError("sampled_graph was built on another candidate set than pairs.")
    if validate and bool((sampled_graph.degree <= 0).any()):
        k = int(torch.nonzero(sampled_graph.degree <= 0)[0, 0])
        raise ValueError(f"values give node {k} the degree d̃ = 1 + Σ_j A_ij = {float(sampled_graph.degree[k]):g} "
                         "<= 0, where D̃^{-1/2} is undefined; keep values >= 0 (e.g. probabilities in [0, 1]).")
    return _Propagate.apply(values, M, sampled_graph)


def dense_adjacency(values: Tensor, pairs: Tensor, num_nodes: int) -> Tensor:
    """The dense symmetric ``A`` ``(N, N)`` with ``A_ij = A_ji = values[p]`` (differentiable in ``values``)."""
    A = values.new_zeros(num_nodes, num_nodes)
    A = A.index_put((pairs[0], pairs[1]), values)
    return A.index_put((pairs[1], pairs[0]), values)


def dense_normalized_adjacency(A_dense: Tensor) -> Tensor:
    """``Â = D̃^{-1/2}(A + I)D̃^{-1/2}`` with ``d̃_i = 1 + Σ_j A_ij`` for a dense ``(N, N)`` adjacency.

    Plain autograd; ``A_dense`` is expected to be symmetric (the row sums are the degrees).
    """
    if not isinstance(A_dense, Tensor) or A_dense.dim() != 2 or A_dense.size(0) != A_dense.size(1):
        raise ValueError(f"A_dense must be a square (N, N) tensor, got {tuple(getattr(A_dense, 'shape', ()))}.")
    B = A_dense + torch.eye(A_dense.size(0), dtype=A_dense.dtype, device=A_dense.device)
    s = B.sum(1).rsqrt()
    return s.unsqueeze(1) * B * s.unsqueeze(0)


def dense_gcn_propagate(values: Tensor, pairs: Tensor, M: Tensor, num_nodes: int | None = None) -> Tensor:
    """Reference ``Â M`` through a dense adjacency and plain autograd (tests; small graphs)."""
    n = M.size(0) if num_nodes is None else num_nodes
    return dense_normalized_adjacency(dense_adjacency(values, pairs, n)) @ M
