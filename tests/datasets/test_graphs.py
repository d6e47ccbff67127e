"""Edge deletion and kNN graphs (property tests with hypothesis)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lds.datasets import delete_edges, knn_graph
from torch_geometric.data import Data


def _random_graph(n, p, seed):
    g = torch.Generator().manual_seed(seed)
    iu = torch.triu_indices(n, n, offset=1)
    pairs = iu[:, torch.rand(iu.size(1), generator=g) < p]
    return Data(x=torch.randn(n, 3, generator=g), edge_index=torch.cat([pairs, pairs.flip(0)], 1), num_nodes=n)


def _pairs(ei):
    return {(min(i, j), max(i, j)) for i, j in zip(ei[0].tolist(), ei[1].tolist())}


@settings(max_examples=40, deadline=None)
@given(keep=st.floats(0.01, 1.0), seed=st.integers(0, 10_000), gseed=st.integers(0, 100))
def test_delete_edges_properties(keep, seed, gseed):
    data = _random_graph(30, 0.2, gseed)
    original = _pairs(data.edge_index)
    out = delete_edges(data, keep=keep, seed=seed)
    kept, dropped = _pairs(out.edge_index), _pairs(out.dropped_edge_index)
    assert len(kept) == round(keep * len(original))
    assert kept | dropped == original and not (kept & dropped)
    for ei in (out.edge_index, out.dropped_edge_index):  # both directions
        assert ei.size(1) == 2 * len(_pairs(ei))
        s = set(zip(ei[0].tolist(), ei[1].tolist()))
        assert all((j, i) in s for i, j in s)
    again = delete_edges(data, keep=keep, seed=seed)
    assert torch.equal(again.edge_index, out.edge_index)
    assert torch.equal(data.edge_index, _random_graph(30, 0.2, gseed).edge_index)  # input untouched


def test_keep_connected_gives_back_one_edge_to_isolated_nodes():
    data = _random_graph(40, 0.1, 1)
    had = set(data.edge_index.reshape(-1).tolist())
    out = delete_edges(data, keep=0.2, seed=0, keep_connected=True)
    now = set(out.edge_index.reshape(-1).tolist())
    assert had == now
    plain = delete_edges(data, keep=0.2, seed=0)
    assert set(plain.edge_index.reshape(-1).tolist()) != had


@pytest.mark.parametrize("keep", [0.0, 1.5, -0.1])
def test_delete_edges_rejects_bad_keep(keep):
    with pytest.raises(ValueError, match="keep must be a fraction in \\(0, 1\\]"):
        delete_edges(_random_graph(10, 0.3, 0), keep=keep, seed=0)


def _brute_knn(x, k, metric):
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1 - xn @ xn.T
    else:
        d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nbrs = np.argsort(d, axis=1, kind="stable")[:, :k]
    return {(min(i, j), max(i, j)) for i in range(len(x)) for j in nbrs[i]}


@settings(max_examples=30, deadline=None)
@given(n=st.integers(5, 25), k=st.integers(1, 4), seed=st.integers(0, 1000),
       metric=st.sampled_from(["cosine", "euclidean"]))
def test_knn_graph_matches_brute_force(n, k, seed, metric):
    x = np.random.default_rng(seed).normal(size=(n, 4))
    ei = knn_graph(torch.from_numpy(x), k, metric=metric)
    assert not bool((ei[0] == ei[1]).any())
    assert _pairs(ei) == _brute_knn(x, k, metric)
    s = set(zip(ei[0].tolist(), ei[1].tolist()))
    assert all((j, i) in s for i, j in s) and ei.size(1) == len(s)
    directed = knn_graph(torch.from_numpy(x), k, metric=metric, symmetric=False)
    assert directed.size(1) == n * k


def test_knn_graph_bad_input():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="k=5 must be smaller than the number of nodes"):
        knn_graph(x, 5)
    x[1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        knn_graph(x, 2)
    with pytest.raises(ValueError, match="metric"):
        knn_graph(torch.randn(5, 3), 2, metric="manhattan")
