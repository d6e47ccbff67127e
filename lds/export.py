"""The learned graph out of a fitted :class:`~lds.LDS`: PyG ``Data``, networkx, scipy, one sampled graph.

The fitted distribution is θ: one Bernoulli parameter per undirected candidate pair ``{i, j}``. Every
export reads it through the public :meth:`LDS.edge_probs` (both directions, pairs with θ > 0), keeps the
pairs with ``θ > min_prob``, and returns an undirected graph on all ``N`` nodes (isolated ones included):

- :func:`to_data`: ``Data(edge_index, edge_weight=θ, num_nodes)`` with both directions of every pair;
- :func:`to_networkx`: an undirected ``networkx.Graph`` with θ as the edge attribute ``weight``;
- :func:`to_scipy`: a symmetric ``scipy.sparse.csr_array`` ``(N, N)`` with θ on both ``(i, j)`` and ``(j, i)``;
- :func:`sample_graph`: one graph ``A ~ Ber(θ)`` as ``Data(edge_index, num_nodes)``, from a seed or a
  ``torch.Generator``.

Example:
    >>> import torch
    >>> from lds import LDS
    >>> from lds.export import to_data, to_scipy, sample_graph
    >>> from lds.datasets import load_uci
    >>> data = load_uci("wine", seed=0)
    >>> model = LDS(max_outer_iters=1, max_inner_steps=5, num_samples=1, verbose=False).fit(data)
    >>> graph = to_data(model, min_prob=0.5)
    >>> graph.num_nodes, bool((graph.edge_weight > 0.5).all())
    (178, True)
    >>> to_scipy(model).shape
    (178, 178)
    >>> sample_graph(model, 0).edge_index.shape[0]
    2
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["learned_pairs", "sample_graph", "to_data", "to_networkx", "to_scipy"]


def _check_min_prob(min_prob: Any) -> float:
    if isinstance(min_prob, bool) or not isinstance(min_prob, numbers.Real) or not math.isfinite(float(min_prob)) \
            or not 0.0 <= float(min_prob) <= 1.0:
        raise ValueError(f"min_prob must be a number in [0, 1] (pairs with θ > min_prob are kept), got {min_prob!r}.")
    return float(min_prob)


def learned_pairs(model: Any, min_prob: float = 0.0) -> tuple[Tensor, Tensor, int]:
    """``(pairs, probs, num_nodes)`` of a fitted model: undirected pairs ``(2, P)`` with ``i < j`` and
    ``θ > min_prob``, sorted by ``(i, j)``, their θ ``(P,)`` and the number of nodes; on the CPU."""
    min_prob = _check_min_prob(min_prob)
    edge_probs = getattr(model, "edge_probs", None)
    if not callable(edge_probs):
        raise TypeError(f"model must be a fitted lds.LDS (or have edge_probs()), got {type(model).__name__}.")
    edge_index, probs = edge_probs()  # raises RuntimeError when the model is not fitted
    num_nodes = int(model.num_nodes_)
    edge_index, probs = edge_index.detach().cpu(), probs.detach().cpu()
    upper = (edge_index[0] < edge_index[1]) & (probs > min_prob)
    pairs, probs = edge_index[:, upper], probs[upper]
    order = torch.argsort(pairs[0] * num_nodes + pairs[1])
    return pairs[:, order], probs[order], num_nodes


def to_data(model: Any, min_prob: float = 0.0) -> Any:
    """The learned graph as a PyG ``Data(edge_index, edge_weight, num_nodes)``: both directions of every pair
    with ``θ > min_prob``, ``edge_weight`` = θ (the i→j edges first, then j→i)."""
    from torch_geometric.data import Data

    pairs, probs, n = learned_pairs(model, min_prob)
    return Data(edge_index=torch.cat([pairs, pairs.flip(0)], dim=1), edge_weight=torch.cat([probs, probs]),
                num_nodes=n)


def to_networkx(model: Any, min_prob: float = 0.0) -> Any:
    """The learned graph as an undirected ``networkx.Graph`` on nodes ``0..N-1`` with θ as ``weight`` (pairs
    with ``θ > min_prob``)."""
    import networkx as nx

    pairs, probs, n = learned_pairs(model, min_prob)
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_weighted_edges_from(zip(pairs[0].tolist(), pairs[1].tolist(), probs.double().tolist()))
    return graph


def to_scipy(model: Any, min_prob: float = 0.0) -> Any:
    """The learned graph as a symmetric ``scipy.sparse.csr_array`` ``(N, N)`` (float64) with θ at ``(i, j)``
    and ``(j, i)`` for the pairs with ``θ > min_prob``, zero diagonal."""
    import scipy.sparse as sp

    pairs, probs, n = learned_pairs(model, min_prob)
    rows = np.concatenate([pairs[0].numpy(), pairs[1].numpy()])
    cols = np.concatenate([pairs[1].numpy(), pairs[0].numpy()])
    values = np.concatenate([probs.double().numpy()] * 2)
    return sp.csr_array((values, (rows, cols)), shape=(n, n))


def sample_graph(model: Any, generator: torch.Generator | int) -> Any:
    """One graph ``A ~ Ber(θ)`` as ``Data(edge_index, num_nodes)`` (both directions of each sampled pair).

    ``generator`` is a CPU ``torch.Generator`` or an int seed: the same seed gives the same graph. One uniform
    ``u`` is drawn per pair with θ > 0 (in ``(i, j)`` order) and the pair is an edge when ``u < θ``.
    """
    from torch_geometric.data import Data

    if isinstance(generator, torch.Generator):
        if generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU torch.Generator (samples are drawn on the CPU), got one on "
                             f"{generator.device}.")
        gen = generator
    elif isinstance(generator, numbers.Integral) and not isinstance(generator, bool) and 0 <= int(generator) < 2**63:
        gen = torch.Generator().manual_seed(int(generator))
    else:
        raise TypeError(f"generator must be a torch.Generator or an int seed in [0, 2**63), got "
                        f"{type(generator).__name__} {generator!r}; e.g. sample_graph(model, 0).")
    pairs, probs, n = learned_pairs(model, 0.0)
    uniforms = torch.rand(probs.numel(), generator=gen, dtype=torch.float64)
    kept = pairs[:, uniforms < probs.double()]
    return Data(edge_index=torch.cat([kept, kept.flip(0)], dim=1), num_nodes=n)
