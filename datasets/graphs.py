"""Edge deletion (LDS paper, Franceschi et al. 2019, Sec. 9.4.1 / Fig. 9.2) and exact kNN graphs by blocked
brute force in torch (PyG's ``knn_graph`` needs torch-cluster, which we do not require)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch_geometric.data import Data

from ._paths import check_bool, check_fraction, check_seed

METRICS = ("cosine", "euclidean")


def undirected_pairs(edge_index: torch.Tensor) -> torch.Tensor:
    """Unique undirected pairs ``(min, max)``, self-loops dropped, sorted: shape ``(2, E)``.

    >>> undirected_pairs(torch.tensor([[0, 1, 1, 2], [1, 0, 1, 0]])).tolist()
    [[0, 0], [1, 2]]
    """
    lo = torch.minimum(edge_index[0], edge_index[1])
    hi = torch.maximum(edge_index[0], edge_index[1])
    keep = lo != hi
    n = int(edge_index.max()) + 1 if edge_index.numel() else 1
    keys = torch.unique(lo[keep] * n + hi[keep])
    return torch.stack([keys // n, keys % n])


def both_directions(pairs: torch.Tensor) -> torch.Tensor:
    """``(2, E)`` pairs as ``(2, 2E)`` directed edges: first ``i -> j``, then ``j -> i``."""
    return torch.cat([pairs, pairs.flip(0)], dim=1)


def delete_edges(data: Data, keep: float, seed: int, keep_connected: bool = False) -> Data:
    """A copy of ``data`` keeping exactly ``round(keep · E)`` of its ``E`` undirected edges, chosen uniformly.

    This is the edge-deletion experiment of LDS (Franceschi et al., ICML 2019, Sec. 9.4.1: 25/50/75/100 %
    of Cora's and Citeseer's edges kept). The input is read as undirected (``{i, j}``, self-loops dropped).
    The kept edges are in ``edge_index`` and the dropped ones in ``dropped_edge_index``, both in both
    directions, so together they partition the original edges. Deterministic per ``seed``.

    ``keep_connected=True`` then gives back one original edge (the first in the random order) to every
    node that had edges and was left with none, so the result may keep a few more than ``round(keep · E)``.

    >>> g = Data(edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), num_nodes=3)
    >>> out = delete_edges(g, keep=0.5, seed=0)
    >>> out.edge_index.size(1), out.dropped_edge_index.size(1)
    (2, 2)
    """
    if not isinstance(data, Data):
        raise TypeError(f"data must be a torch_geometric.data.Data, got {type(data).__name__}.")
    keep = check_fraction(keep, "keep")
    seed = check_seed(seed)
    keep_connected = check_bool(keep_connected, "keep_connected")
    edge_index = getattr(data, "edge_index", None)
    if edge_index is None or edge_index.numel() == 0:
        raise ValueError("data has no edges to delete (edge_index is empty); load it with graph=True.")
    pairs = undirected_pairs(edge_index)
    num_edges = pairs.size(1)
    num_keep = int(round(keep * num_edges))
    perm = torch.randperm(num_edges, generator=torch.Generator().manual_seed(seed))
    kept_mask = torch.zeros(num_edges, dtype=torch.bool)
    kept_mask[perm[:num_keep]] = True
    if keep_connected:
        num_nodes = max(int(data.num_nodes or 0), int(pairs.max()) + 1)
        had_edge = torch.zeros(num_nodes, dtype=torch.bool)
        had_edge[pairs.reshape(-1)] = True
        degree = torch.bincount(pairs[:, kept_mask].reshape(-1), minlength=num_nodes)
        isolated = (had_edge & (degree == 0)).tolist()
        for e in perm[num_keep:].tolist():  # the dropped edges, in their random order
            i, j = pairs[0, e].item(), pairs[1, e].item()
            if isolated[i] or isolated[j]:
                kept_mask[e] = True
                isolated[i] = isolated[j] = False
    out = data.clone()
    out.edge_index = both_directions(pairs[:, kept_mask])
    out.dropped_edge_index = both_directions(pairs[:, ~kept_mask])
    return out


def knn_indices(x: torch.Tensor, k: int, metric: str = "cosine", block_bytes: int | None = None) -> torch.Tensor:
    """Exact brute-force k nearest neighbours of every row of ``x`` (itself excluded): ``(n, k)`` indices, nearest
    first. Cosine similarity ``x̂_i·x̂_j`` (zero rows have similarity 0 to all, as in scikit-learn) or Euclidean
    distance ranked by ``2 x_i·x_j - |x_j|²``. Rows are processed in blocks of at most ``block_bytes`` of scores,
    so memory stays O(n · block) and the cost is one matrix product and one top-k per block (default 128 MB on
    the CPU, 2 GB on an accelerator, where many small blocks would cost a kernel launch each)."""
    if block_bytes is None:
        block_bytes = 1 << 27 if x.device.type == "cpu" else 1 << 31
    x = x.detach()
    if metric == "cosine":
        norms = x.norm(dim=1, keepdim=True)
        keys = x / torch.where(norms > 0, norms, torch.ones_like(norms))
        bias = None
    else:
        keys = x
        bias = (x * x).sum(1)
    n = x.size(0)
    rows = max(1, min(n, block_bytes // max(1, n * x.element_size())))
    out = torch.empty(n, k, dtype=torch.long)
    # one score buffer for every block: a fresh rows × n allocation per block costs page faults each time
    buffer = torch.empty(rows, n, dtype=keys.dtype, device=keys.device)
    keys_t = keys.T
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        scores = torch.mm(keys[start:stop], keys_t, out=buffer[: stop - start])
        if bias is not None:
            scores.mul_(2).sub_(bias)
        local = torch.arange(stop - start, device=x.device)
        scores[local, local + start] = -math.inf  # a node is never its own neighbour
        out[start:stop] = scores.topk(k, dim=1).indices.cpu()
    return out


def knn_graph(x: torch.Tensor | np.ndarray, k: int, metric: str = "cosine", symmetric: bool = True,
              device: str | torch.device | None = None) -> torch.Tensor:
    """The k-nearest-neighbour graph of the rows of ``x``: ``edge_index`` of shape ``(2, M)``, no self-loops.

    Exact brute force (:func:`knn_indices`, in float64) with ``metric`` ``"cosine"`` or ``"euclidean"``; a
    node is never its own neighbour. ``symmetric=True`` returns the union of ``i -> j``
    and ``j -> i`` as unique pairs in both directions; ``symmetric=False`` the ``n · k`` directed edges
    ``(neighbour, node)`` (source to target, PyG's flow). ``device``: where the search runs (default the CPU;
    e.g. ``"cuda"`` for large graphs); the result is on the CPU either way.

    >>> knn_graph(torch.tensor([[0.0], [1.0], [3.0]]), k=1, metric="euclidean").tolist()
    [[0, 1, 1, 2], [1, 2, 0, 1]]
    """
    if isinstance(x, torch.Tensor):
        arr = x.detach().cpu().double().numpy()
    elif isinstance(x, np.ndarray):
        arr = np.asarray(x, dtype=np.float64)
    else:
        raise TypeError(f"x must be a torch.Tensor or numpy array of features, got {type(x).__name__}.")
    if arr.ndim != 2:
        raise ValueError(f"x must be a 2-D feature matrix (nodes x features), got shape {tuple(arr.shape)}.")
    if not np.isfinite(arr).all():
        bad = np.unique(np.nonzero(~np.isfinite(arr))[0])
        raise ValueError(f"x contains NaN or infinite values (rows {bad[:10].tolist()}...); impute or drop them "
                         "before building a kNN graph.")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__} {k!r}.")
    n = arr.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k={k} must be at least 1 and smaller than the number of nodes ({n}); use k <= {n - 1}.")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(map(repr, METRICS))}, got {metric!r}.")
    symmetric = check_bool(symmetric, "symmetric")
    idx = knn_indices(torch.from_numpy(arr).to("cpu" if device is None else device), int(k), metric)
    directed = torch.stack([idx.reshape(-1), torch.arange(n).repeat_interleave(int(k))])
    if not symmetric:
        return directed
    return both_directions(undirected_pairs(directed))
