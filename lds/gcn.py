"""The 2-layer GCN of Kipf & Welling (ICLR 2017) as a pure function of a params tuple.

``logits = Â · drop(relu(Â · drop(X) W₁)) W₂``: no biases (Kipf's reference model), Glorot-uniform
initialisation, inverted dropout on the input features and on the hidden layer, and the L2 penalty
``ρ·½‖W₁‖²`` on the first layer only. The graph is given per call, so the bilevel core can
differentiate the network through inner gradient steps with respect to both the weights and the graph:

- a dense ``(N, N)`` adjacency (``Â`` built densely, plain autograd);
- ``(values, pairs)`` on a candidate set of undirected pairs (``pairs`` a ``(2, P)`` tensor or a
  :class:`~lds.propagation.CandidateGraph`): sparse forward through
  :func:`~lds.propagation.gcn_propagate`, gradient for every candidate pair;
- ``(edge_index, edge_weight)``, directed edges as in PyG's ``GCNConv`` (plain autograd).

Randomness comes only from the masks or the ``torch.Generator`` passed in.

Example:
    >>> import torch
    >>> from lds.propagation import all_pairs
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(5, 3)
    >>> params = init_gcn_params(3, 4, 2, g)
    >>> pairs = all_pairs(5)
    >>> values = torch.zeros(pairs.size(1)); values[:4] = 1.0
    >>> masks = sample_dropout_masks(x.shape, (5, 4), 0.5, g)
    >>> gcn_forward(params, x, (values, pairs), dropout_masks=masks).shape
    torch.Size([5, 2])
    >>> gcn_forward(params, x, (values, pairs), training=False).shape   # no dropout
    torch.Size([5, 2])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .propagation import (
    CandidateGraph,
    CandidateMode,
    SampledGraph,
    candidate_graph,
    dense_normalized_adjacency,
    gcn_propagate,
)

__all__ = ["DropoutMasks", "NodeFeatures", "Params", "as_node_features", "features_times", "gcn_forward",
           "gcn_l2_penalty", "init_gcn_params", "sample_dropout_masks"]

Params = tuple[Tensor, Tensor]
"""``(W₁, W₂)`` of shapes ``(F, h)`` and ``(h, C)``."""
DropoutMasks = tuple[Tensor, Tensor]
"""``(mask_x, mask_h)`` with entries 0 or ``1/(1-p)``; see :func:`sample_dropout_masks`."""


def init_gcn_params(
    in_features: int,
    hidden: int,
    num_classes: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Params:
    """``(W₁, W₂)`` with Glorot-uniform entries ``U(-r, r)``, ``r = sqrt(6 / (fan_in + fan_out))``.

    Drawn from ``generator`` (on its own device), then moved to ``device``: the same generator state
    gives the same weights on every device.
    """
    for name, value in (("in_features", in_features), ("hidden", hidden), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
    params = []
    for fan_in, fan_out in ((in_features, hidden), (hidden, num_classes)):
        r = math.sqrt(6.0 / (fan_in + fan_out))
        u = torch.rand(fan_in, fan_out, generator=generator, dtype=dtype, device=generator.device)
        params.append(((2 * u - 1) * r).to(device))
    return params[0], params[1]


# ----------------------------------------------------------------------------- dropout

SPARSE_FEATURES_MAX_DENSITY = 0.1
"""Features with at most this fraction of nonzeros take the gather/scatter path of :func:`features_times`."""


class NodeFeatures:
    """Node features ``X`` ``(N, F)`` with the index structures derived from them, computed once.

    The flat indices of the nonzeros (compact dropout masks) and, for sparse features, their
    ``(rows, cols, values)`` (the gather/scatter first layer of :func:`features_times`) belong to the
    features of one problem: build this once (LDS keeps it in the prepared data of a fit) and pass it
    wherever ``x`` is accepted. A plain tensor works too and derives them at every call. They are
    recomputed when ``x`` changes in place (its version counter moves).
    """

    __slots__ = ("x", "_version", "_nonzero", "_sparse")

    def __init__(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor of shape (N, F), got {getattr(x, 'shape', type(x))}.")
        self.x = x
        self._version = -1
        self._nonzero: Tensor | None = None
        self._sparse: tuple[Tensor, Tensor, Tensor] | None = None

    def _refresh(self) -> None:
        if self._version != self.x._version:
            self._nonzero = None
            self._sparse = None
            self._version = self.x._version

    def nonzero_flat(self) -> Tensor:
        """Flat (row-major) indices of the nonzero entries of ``x``."""
        self._refresh()
        if self._nonzero is None:
            self._nonzero = torch.nonzero(self.x.detach().reshape(-1), as_tuple=True)[0]
        return self._nonzero

    def sparse(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """``(rows, cols, values)`` of the nonzeros in row-major order, or None when ``x`` is dense
        (more than :data:`SPARSE_FEATURES_MAX_DENSITY` nonzero)."""
        idx = self.nonzero_flat()
        if idx.numel() > SPARSE_FEATURES_MAX_DENSITY * self.x.numel():
            return None
        if self._sparse is None:
            f = self.x.size(1)
            self._sparse = (torch.div(idx, f, rounding_mode="floor"), idx % f,
                            self.x.detach().reshape(-1).index_select(0, idx))
        return self._sparse


def as_node_features(x: Tensor | NodeFeatures) -> NodeFeatures:
    """``x`` as :class:`NodeFeatures` (a new one for a tensor)."""
    return x if isinstance(x, NodeFeatures) else NodeFeatures(x)


def sample_dropout_masks(
    x_shape: torch.Size | tuple[int, int] | Tensor | NodeFeatures,
    hidden_shape: torch.Size | tuple[int, int],
    p: float,
    generator: torch.Generator,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> DropoutMasks:
    """Inverted-dropout masks ``(mask_x, mask_h)``: each entry is 0 with probability ``p``, else ``1/(1-p)``.

    Args:
        x_shape: the shape ``(N, F)`` of the features, giving a dense ``mask_x`` of that shape; or the
            feature tensor itself, giving a compact ``mask_x`` over its nonzero entries only (row-major
            order). Dropping a zero is a no-op, so both have the same law, and the compact mask costs
            ``nnz(x)`` random numbers instead of ``N·F`` (Cora: 49k instead of 3.9M), as in Kipf's
            sparse dropout.
        hidden_shape: ``(N, h)``.
        p: dropout rate in ``[0, 1)``.
        generator: the only source of randomness.
        dtype, device: of the masks (default: those of ``x`` when given, else float32 on the CPU).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"the dropout rate p must be in [0, 1), got {p}.")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
    if isinstance(x_shape, Tensor | NodeFeatures):
        feats = as_node_features(x_shape)
        dtype = dtype or feats.x.dtype
        device = device or feats.x.device
        x_numel: tuple[int, ...] = (feats.nonzero_flat().numel(),)
    else:
        x_numel = tuple(int(d) for d in x_shape)
    dtype = dtype or torch.float32
    device = device or "cpu"
    keep = 1.0 - p
    masks = []
    for shape in (x_numel, tuple(int(d) for d in hidden_shape)):
        u = torch.rand(shape, generator=generator, device=generator.device)
        masks.append(((u < keep).to(dtype) / keep).to(device))
    return masks[0], masks[1]


def _check_compact_mask(x: Tensor, mask_x: Tensor, nnz: int) -> None:
    if mask_x.dim() != 1 or mask_x.numel() != nnz:
        raise ValueError(f"dropout_masks[0] must have the shape of x {tuple(x.shape)} or one entry per nonzero "
                         f"feature ({nnz},), got {tuple(mask_x.shape)}; use sample_dropout_masks.")


def _drop_features(features: Tensor | NodeFeatures, mask_x: Tensor) -> Tensor:
    feats = as_node_features(features)
    x = feats.x
    if mask_x.shape == x.shape:
        return x * mask_x
    idx = feats.nonzero_flat()
    _check_compact_mask(x, mask_x, idx.numel())
    flat = x.reshape(-1)
    return torch.zeros_like(flat).index_put((idx,), flat.index_select(0, idx) * mask_x).view_as(x)


def features_times(features: Tensor | NodeFeatures, W: Tensor, mask_x: Tensor | None = None) -> Tensor:
    """``drop(X) · W`` (inverted dropout with ``mask_x``, dense or compact, or none).

    For sparse features (bag of words: Cora 1.3 %, Citeseer 0.9 % nonzero) this is a gather/scatter over
    the nonzeros, ``Σ_k v_k m_k W[c_k]`` added into row ``r_k``: O(nnz·h) work and no dense ``(N, F)``
    temporary, instead of the O(N·F·h) dense product (Kipf's sparse dropout and sparse matmul). Gradients
    w.r.t. ``W`` of any order are those of the dense product (up to summation order); features that need
    a gradient themselves take the dense path.
    """
    feats = as_node_features(features)
    x = feats.x
    sparse = None if x.requires_grad else feats.sparse()
    if sparse is None or (mask_x is not None and mask_x.shape == x.shape):
        return (x if mask_x is None else _drop_features(feats, mask_x)) @ W
    rows, cols, values = sparse
    if mask_x is not None:
        _check_compact_mask(x, mask_x, values.numel())
        values = values * mask_x
    out = torch.zeros(x.size(0), W.size(1), dtype=W.dtype, device=W.device)
    return out.index_add(0, rows, values.unsqueeze(1) * W.index_select(0, cols))


# ----------------------------------------------------------------------------- graphs


def _edge_index_propagator(edge_index: Tensor, edge_weight: Tensor, n: int) -> Callable[[Tensor], Tensor]:
    """``M -> Â M`` for directed weighted edges (source ``edge_index[0]`` to target), as PyG's ``GCNConv``."""
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_weight.shape != (edge_index.size(1),):
        raise ValueError(f"(edge_index, edge_weight) must have shapes (2, E) and (E,), got "
                         f"{tuple(edge_index.shape)} and {tuple(edge_weight.shape)}.")
    src, dst = edge_index[0].long(), edge_index[1].long()
    degree = torch.ones(n, dtype=edge_weight.dtype, device=edge_weight.device).index_add(0, dst, edge_weight)
    s = degree.rsqrt()
    norm = (s[src] * edge_weight * s[dst]).unsqueeze(1)
    self_weight = (s * s).unsqueeze(1)
    return lambda M: (self_weight * M).index_add(0, dst, norm * M[src])


def _propagator(graph: Any, n: int, candidate_mode: CandidateMode, validate: bool) -> Callable[[Tensor], Tensor]:
    """A function ``M -> Â M`` for one of the graph formats of :func:`gcn_forward`."""
    if isinstance(graph, Tensor):
        if validate and graph.shape != (n, n):
            raise ValueError(f"a dense graph must have shape (N, N) = ({n}, {n}), got {tuple(graph.shape)}.")
        a_hat = dense_normalized_adjacency(graph)
        return lambda M: a_hat @ M
    if not (isinstance(graph, tuple | list) and len(graph) == 2 and isinstance(graph[0], Tensor)):
        raise TypeError("graph must be a dense (N, N) adjacency, a tuple (values, pairs) or a tuple "
                        f"(edge_index, edge_weight), got {type(graph).__name__}.")
    first, second = graph
    if not first.is_floating_point():  # (edge_index, edge_weight)
        return _edge_index_propagator(first, second, n)
    values = first
    cand = candidate_graph(second, n, candidate_mode, validate=validate)
    if validate and values.shape != (cand.num_pairs,):
        raise ValueError(f"graph values must have shape ({cand.num_pairs},), one per candidate pair, "
                         f"got {tuple(values.shape)}.")
    sampled = SampledGraph.of(values, cand)  # shared by both layers and their backward passes (and by later
    # forward passes on the same tensor inside reuse_sampled_graphs)
    if validate and bool((sampled.degree <= 0).any()):
        raise ValueError("graph values give a node a degree d̃ = 1 + Σ_j A_ij <= 0; keep values >= 0.")
    return lambda M: gcn_propagate(values, cand, M, n, validate=False, sampled_graph=sampled)


def _check_forward_inputs(params: Any, x: Any) -> None:
    if not isinstance(params, tuple | list) or len(params) != 2 or not all(isinstance(p, Tensor) for p in params):
        raise TypeError("params must be a tuple (W1, W2) of two tensors; build it with init_gcn_params.")
    W1, W2 = params
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor of shape (N, F), got {getattr(x, 'shape', type(x))}.")
    if W1.dim() != 2 or W2.dim() != 2 or W1.size(0) != x.size(1) or W2.size(0) != W1.size(1):
        raise ValueError(f"params have shapes {tuple(W1.shape)} and {tuple(W2.shape)}; with x of shape "
                         f"{tuple(x.shape)} they must be (F, h) = ({x.size(1)}, h) and (h, C).")
    if W1.dtype != x.dtype or W2.dtype != x.dtype:
        raise TypeError(f"params and x must have one dtype, got {W1.dtype}, {W2.dtype} and {x.dtype}.")


def gcn_forward(
    params: Params,
    x: Tensor | NodeFeatures,
    graph: Tensor | tuple[Tensor, Tensor | CandidateGraph],
    *,
    dropout: float = 0.5,
    dropout_masks: DropoutMasks | torch.Generator | None = None,
    generator: torch.Generator | None = None,
    training: bool = True,
    candidate_mode: CandidateMode = "auto",
    validate: bool = True,
) -> Tensor:
    """Logits ``(N, C)`` of the 2-layer GCN: ``H₁ = relu(Â (drop(X) W₁))``, ``logits = Â (drop(H₁) W₂)``.

    Args:
        params: ``(W₁, W₂)`` from :func:`init_gcn_params`.
        x: dense node features ``(N, F)``, or :class:`NodeFeatures` (their nonzero index is then built once).
        graph: dense adjacency ``(N, N)``; ``(values, pairs)`` on a candidate set (sparse forward, the
            gradient reaches every candidate pair); or ``(edge_index, edge_weight)``.
        dropout: rate p of fresh masks (when ``training`` and no masks are given).
        dropout_masks: fixed masks from :func:`sample_dropout_masks` (reproducible steps, e.g. the same
            step replayed by a hypergradient), or a ``torch.Generator`` to draw them from.
        generator: source of fresh masks (alternative to passing it as ``dropout_masks``).
        training: apply dropout; ``False`` for predictions.
        candidate_mode: pair-gradient strategy of the ``(values, pairs)`` path (see
            :func:`~lds.propagation.gcn_propagate`).
        validate: check shapes and dtypes (pairs are checked once per tensor).
    """
    feats = x if isinstance(x, NodeFeatures) else None
    x = x.x if isinstance(x, NodeFeatures) else x
    if validate:
        _check_forward_inputs(params, x)
    if feats is None:
        feats = NodeFeatures(x)
    W1, W2 = params
    n = x.size(0)
    propagate = _propagator(graph, n, candidate_mode, validate)
    masks: DropoutMasks | None = None
    if training:
        if isinstance(dropout_masks, torch.Generator):
            generator, dropout_masks = dropout_masks, None
        if dropout_masks is not None:
            masks = dropout_masks
            if validate and (not isinstance(masks, tuple | list) or len(masks) != 2):
                raise TypeError("dropout_masks must be a tuple (mask_x, mask_h) from sample_dropout_masks.")
        elif dropout > 0:
            if generator is None:
                raise ValueError("training=True with dropout > 0 needs dropout_masks or a torch.Generator "
                                 "(generator=...); library code draws no global random numbers.")
            masks = sample_dropout_masks(feats, (n, W1.size(1)), dropout, generator, x.dtype, x.device)
    hidden = torch.relu(propagate(features_times(feats, W1, None if masks is None else masks[0])))
    if masks is not None:
        if validate and masks[1].shape != hidden.shape:
            raise ValueError(f"dropout_masks[1] must have shape {tuple(hidden.shape)}, got {tuple(masks[1].shape)}.")
        hidden = hidden * masks[1]
    return propagate(hidden @ W2)


def preprocess_features(x: Tensor, normalize: bool | str = "auto") -> Tensor:
    """Kipf & Welling's feature preprocessing: row-normalise so that each row sums to 1.

    ``"auto"`` normalises when every feature is non-negative (counts, pixels, TF-IDF, bag of words)
    and leaves signed features (e.g. standardised ones, whose row sums can vanish) unchanged;
    ``True`` requires non-negative features; ``False`` leaves ``x`` as it is. Rows of zeros stay zero.
    Without it, raw inputs of a large scale (pixel values up to 16) make the fresh GCN's logits
    large and the hypergradient through the first inner steps unstable.
    """
    if normalize not in (True, False, "auto"):
        raise ValueError(f"normalize_features must be True, False or 'auto', got {normalize!r}.")
    if normalize is False:
        return x
    nonnegative = bool((x >= 0).all())
    if not nonnegative:
        if normalize is True:
            raise ValueError("normalize_features=True needs non-negative features (row sums); use 'auto' or False.")
        return x
    rowsum = x.sum(1, keepdim=True)
    return torch.where(rowsum > 0, x / rowsum.clamp_min(torch.finfo(x.dtype).tiny), x)


def gcn_l2_penalty(params: Params, weight_decay: float = 5e-4) -> Tensor:
    """``ρ·½‖W₁‖²``: weight decay on the first layer only (Kipf's convention)."""
    return 0.5 * weight_decay * params[0].pow(2).sum()
