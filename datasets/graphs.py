"""Edge deletion (LDS paper Sec. 9.4.1) and kNN graphs (scikit-learn neighbours, no torch-cluster)."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data


def undirected_pairs(edge_index: torch.Tensor) -> torch.Tensor:
    """Unique undirected pairs ``(min, max)``, self-loops dropped, sorted: shape ``(2, E)``."""
    lo = torch.minimum(edge_index[0], edge_index[1])
    hi = torch.maximum(edge_index[0], edge_index[1])
    keep = lo != hi
    n = int(edge_index.max()) + 1 if edge_index.numel() else 1
    keys = torch.unique(lo[keep] * n + hi[keep])
    return torch.stack([keys // n, keys % n])


def both_directions(pairs: torch.Tensor) -> torch.Tensor:
    """``(2, E)`` pairs as ``(2, 2E)`` directed edges."""
    return torch.cat([pairs, pairs.flip(0)], dim=1)


def delete_edges(data: Data, keep: float, seed: int, keep_connected: bool = False) -> Data:
    """A copy of ``data`` keeping exactly ``round(keep · E)`` of its E undirected edges, chosen uniformly.

    The kept edges are in ``edge_index`` (both directions), the dropped ones in ``dropped_edge_index``.
    ``keep_connected=True`` gives back one original edge to every node that the deletion isolated.
    Deterministic per ``seed``.
    """
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 < float(keep) <= 1.0:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep!r}.")
    if getattr(data, "edge_index", None) is None or data.edge_index.numel() == 0:
        raise ValueError("data has no edges to delete (edge_index is empty).")
    pairs = undirected_pairs(data.edge_index)
    num_edges = pairs.size(1)
    num_keep = int(round(float(keep) * num_edges))
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(num_edges, generator=g)
    kept_mask = torch.zeros(num_edges, dtype=torch.bool)
    kept_mask[perm[:num_keep]] = True
    if keep_connected:
        n = data.num_nodes
        had = torch.zeros(n, dtype=torch.bool)
        had[pairs.reshape(-1)] = True
        kept = pairs[:, kept_mask].reshape(-1)
        deg = torch.bincount(kept, minlength=n).tolist()
        had_list = had.tolist()
        for e in perm[num_keep:].tolist():  # dropped edges, in their random order
            i, j = int(pairs[0, e]), int(pairs[1, e])
            if (had_list[i] and deg[i] == 0) or (had_list[j] and deg[j] == 0):
                kept_mask[e] = True
                deg[i] += 1
                deg[j] += 1
    out = data.clone()
    out.edge_index = both_directions(pairs[:, kept_mask])
    out.dropped_edge_index = both_directions(pairs[:, ~kept_mask])
    return out


def knn_graph(x: torch.Tensor | np.ndarray, k: int, metric: str = "cosine", symmetric: bool = True) -> torch.Tensor:
    """The k-nearest-neighbour graph of the rows of ``x`` (both directions, no self-loops).

    ``symmetric=True`` returns the union of i→j and j→i; otherwise the directed edges
    ``(neighbour, node)`` (source → target).
    """
    from sklearn.neighbors import NearestNeighbors

    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}.")
    arr = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"x must be a 2-D feature matrix, got shape {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError("x contains NaN or infinite values; impute or drop them before building a kNN graph.")
    n = arr.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}.")
    if k >= n:
        raise ValueError(f"k={k} must be smaller than the number of nodes ({n}).")
    nn = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute").fit(arr)
    idx = nn.kneighbors(return_distance=False)  # the query set is the fit set: a point is not its own neighbour
    rows = np.repeat(np.arange(n), k)
    cols = idx.reshape(-1)
    directed = torch.from_numpy(np.stack([cols, rows])).long()
    if not symmetric:
        return directed
    return both_directions(undirected_pairs(directed))
