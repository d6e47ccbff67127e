"""The 2-layer GCN of Kipf & Welling (ICLR 2017) as a pure function of a params tuple.

``logits = Â · drop(relu(Â · drop(X) W₁)) W₂``, no biases (Kipf's reference model), Glorot
initialisation, inverted dropout, and the L2 penalty ``ρ·½‖W₁‖²`` on the first layer only. ``Â`` is
recomputed for every graph: either a dense (N, N) adjacency or ``(values, pairs)`` on a candidate set
through :func:`lds.propagation.gcn_propagate`. As a pure function the bilevel core can
differentiate it through inner gradient steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .propagation import (
    CandidateGraph,
    Support,
    TensorCache,
    candidate_graph,
    dense_normalized_adjacency,
    gcn_propagate,
)

Params = tuple[Tensor, ...]
DropoutMasks = tuple[Tensor, Tensor]


def init_gcn_params(
    in_features: int,
    hidden: int,
    num_classes: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Params:
    """``(W₁, W₂)`` with Glorot-uniform entries ``U(-r, r)``, ``r = sqrt(6 / (fan_in + fan_out))``."""
    out = []
    for fan_in, fan_out in ((in_features, hidden), (hidden, num_classes)):
        r = math.sqrt(6.0 / (fan_in + fan_out))
        w = (torch.rand(fan_in, fan_out, generator=generator, dtype=dtype) * 2 - 1) * r
        out.append(w.to(device))
    return tuple(out)


_NONZEROS = TensorCache()


def _feature_nonzeros(x: Tensor) -> Tensor:
    """Flat indices of the nonzero features (dropout on a zero is a no-op), cached per tensor."""
    idx = _NONZEROS.get(x)
    if idx is None:
        idx = torch.nonzero(x.reshape(-1) != 0, as_tuple=True)[0]
        _NONZEROS.set(x, idx)
    return idx


def sample_dropout_masks(
    x: Tensor,
    hidden_shape: tuple[int, int],
    p: float,
    generator: torch.Generator,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> DropoutMasks:
    """Inverted-dropout masks ``(mask_x, mask_h)`` with entries 0 or ``1/(1-p)``.

    ``mask_x`` covers the nonzero entries of ``x`` only (in row-major order), as Kipf's sparse
    dropout does: the result has the same law as dense dropout at a fraction of the cost.
    """
    dtype = dtype or x.dtype
    device = device or x.device
    keep = 1.0 - p
    nnz = _feature_nonzeros(x).numel()
    mask_x = (torch.rand(nnz, generator=generator) < keep).to(dtype) / keep
    mask_h = (torch.rand(hidden_shape, generator=generator) < keep).to(dtype) / keep
    return mask_x.to(device), mask_h.to(device)


def _propagator(graph: Any, num_nodes: int):
    """A function ``M -> Â M`` for a dense adjacency or ``(values, pairs | CandidateGraph)``."""
    if isinstance(graph, Tensor):
        if graph.shape != (num_nodes, num_nodes):
            raise ValueError(f"a dense graph must have shape ({num_nodes}, {num_nodes}), got {tuple(graph.shape)}.")
        a_hat = dense_normalized_adjacency(graph)
        return lambda M: a_hat @ M
    if not (isinstance(graph, tuple) and len(graph) == 2):
        raise TypeError("graph must be a dense (N, N) tensor or a tuple (values, pairs).")
    values, pairs = graph
    cand = pairs if isinstance(pairs, CandidateGraph) else candidate_graph(pairs, num_nodes)
    if values.shape != (cand.pairs.size(1),):
        raise ValueError(f"values must have shape ({cand.pairs.size(1)},), got {tuple(values.shape)}.")
    support = Support(values, cand)
    return lambda M: gcn_propagate(values, cand, M, num_nodes, support=support, validate=False)


def gcn_forward(
    params: Params,
    x: Tensor,
    graph: Any,
    *,
    dropout: float = 0.5,
    dropout_masks: DropoutMasks | None = None,
    generator: torch.Generator | None = None,
    training: bool = True,
) -> Tensor:
    """Logits of the 2-layer GCN, ``Â · drop(relu(Â · drop(X) W₁)) W₂``.

    Args:
        params: ``(W₁, W₂)``.
        x: node features ``(N, F)`` (dense).
        graph: dense adjacency ``(N, N)``, or ``(values, pairs)`` on a candidate set.
        dropout: rate p (used when ``training`` and no masks are given).
        dropout_masks: fixed masks from :func:`sample_dropout_masks` (reproducible steps).
        generator: source of fresh masks when ``training`` and no masks are given.
        training: apply dropout.
    """
    W1, W2 = params
    n = x.size(0)
    propagate = _propagator(graph, n)
    if training and dropout > 0:
        if dropout_masks is None:
            if generator is None:
                raise ValueError("training=True needs dropout_masks or a torch.Generator for dropout.")
            dropout_masks = sample_dropout_masks(x, (n, W1.size(1)), dropout, generator)
        mask_x, mask_h = dropout_masks
        flat = x.reshape(-1)
        idx = _feature_nonzeros(x)
        x = flat.index_put((idx,), flat[idx] * mask_x).reshape(x.shape)
    hidden = torch.relu(propagate(x @ W1))
    if training and dropout > 0:
        hidden = hidden * mask_h
    return propagate(hidden @ W2)


def gcn_l2_penalty(params: Params, weight_decay: float = 5e-4) -> Tensor:
    """``ρ·½‖W₁‖²`` (first layer only, Kipf's convention)."""
    return 0.5 * weight_decay * (params[0] ** 2).sum()
