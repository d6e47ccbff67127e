"""delete_edges and knn_graph: properties (hypothesis) and a brute-force kNN reference."""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lds.datasets import delete_edges, knn_graph, load_planetoid
from torch_geometric.data import Data


def random_graph(num_nodes: int, p: float, seed: int) -> Data:
    g = torch.Generator().manual_seed(seed)
    upper = torch.triu_indices(num_nodes, num_nodes, offset=1)
    pairs = upper[:, torch.rand(upper.size(1), generator=g) < p]
    return Data(x=torch.randn(num_nodes, 3, generator=g), edge_index=torch.cat([pairs, pairs.flip(0)], 1),
                train_mask=torch.rand(num_nodes, generator=g) < 0.5, num_nodes=num_nodes)


def pairs_of(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(min(i, j), max(i, j)) for i, j in zip(edge_index[0].tolist(), edge_index[1].tolist())}


def assert_both_directions(edge_index: torch.Tensor) -> None:
    directed = list(zip(edge_index[0].tolist(), edge_index[1].tolist()))
    assert len(set(directed)) == len(directed)  # no duplicates
    assert all(i != j for i, j in directed)  # no self-loops
    assert all((j, i) in set(directed) for i, j in directed)


@settings(max_examples=60, deadline=None)
@given(keep=st.floats(0.0, 1.0, exclude_min=True), seed=st.integers(0, 2**31 - 1), graph_seed=st.integers(0, 50),
       p=st.sampled_from([0.05, 0.2, 0.6]))
def test_delete_edges_partitions_the_edges(keep, seed, graph_seed, p):
    data = random_graph(25, p, graph_seed)
    assume(data.edge_index.numel() > 0)
    before = data.edge_index.clone()
    original = pairs_of(data.edge_index)
    out = delete_edges(data, keep=keep, seed=seed)
    kept, dropped = pairs_of(out.edge_index), pairs_of(out.dropped_edge_index)
    assert len(kept) == round(keep * len(original))
    assert kept | dropped == original and not kept & dropped
    assert_both_directions(out.edge_index)
    assert_both_directions(out.dropped_edge_index)
    again = delete_edges(data, keep=keep, seed=seed)
    assert torch.equal(again.edge_index, out.edge_index)
    assert torch.equal(again.dropped_edge_index, out.dropped_edge_index)
    assert torch.equal(data.edge_index, before)  # the input is not modified
    assert torch.equal(out.x, data.x) and torch.equal(out.train_mask, data.train_mask)  # the rest is kept


@settings(max_examples=60, deadline=None)
@given(keep=st.floats(0.01, 1.0), seed=st.integers(0, 10_000), graph_seed=st.integers(0, 50))
def test_keep_connected_gives_back_one_edge_per_isolated_node(keep, seed, graph_seed):
    data = random_graph(30, 0.1, graph_seed)
    assume(data.edge_index.numel() > 0)
    original = pairs_of(data.edge_index)
    had_edge = {v for e in original for v in e}
    plain = pairs_of(delete_edges(data, keep=keep, seed=seed).edge_index)
    out = delete_edges(data, keep=keep, seed=seed, keep_connected=True)
    connected = pairs_of(out.edge_index)
    assert plain <= connected <= original
    assert {v for e in connected for v in e} == had_edge  # no node that had an edge is left without one
    isolated = had_edge - {v for e in plain for v in e}
    given_back = connected - plain
    assert len(given_back) <= len(isolated)
    assert all(i in isolated or j in isolated for i, j in given_back)
    assert connected | pairs_of(out.dropped_edge_index) == original
    assert not connected & pairs_of(out.dropped_edge_index)


def test_delete_edges_on_cora_keeps_the_exact_count(planetoid_root):
    cora = load_planetoid("cora", root=planetoid_root)
    for keep, expected in [(0.25, 1320), (0.5, 2639), (0.75, 3958), (1.0, 5278)]:
        out = delete_edges(cora, keep=keep, seed=0)
        assert out.edge_index.size(1) == 2 * expected
        assert out.dropped_edge_index.size(1) == 2 * (5278 - expected)
    assert not torch.equal(delete_edges(cora, 0.5, seed=0).edge_index, delete_edges(cora, 0.5, seed=1).edge_index)


@pytest.mark.parametrize("keep", [0.0, -0.1, 1.5, math.nan, math.inf])
def test_delete_edges_rejects_keep_outside_unit_interval(keep):
    with pytest.raises(ValueError, match=r"keep must be a fraction in \(0, 1\], got"):
        delete_edges(random_graph(10, 0.3, 0), keep=keep, seed=0)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"keep": "0.5"}, TypeError, "keep must be a number"),
    ({"keep": True}, TypeError, "keep must be a number"),
    ({"seed": None}, TypeError, "seed must be an int"),
    ({"seed": 1.5}, TypeError, "seed must be an int"),
    ({"keep_connected": 1}, TypeError, "keep_connected must be True or False"),
])
def test_delete_edges_rejects_bad_types(kwargs, error, match):
    args = {"keep": 0.5, "seed": 0, **kwargs}
    with pytest.raises(error, match=match):
        delete_edges(random_graph(10, 0.3, 0), **args)


def test_delete_edges_needs_a_graph():
    with pytest.raises(ValueError, match="no edges"):
        delete_edges(Data(x=torch.zeros(3, 2), edge_index=torch.empty(2, 0, dtype=torch.long)), keep=0.5, seed=0)
    with pytest.raises(TypeError, match="Data"):
        delete_edges(torch.zeros(2, 3, dtype=torch.long), keep=0.5, seed=0)


def brute_force_neighbours(x: np.ndarray, k: int, metric: str) -> list[list[int]] | None:
    """Each row's k nearest other rows, or None when the k-th and (k+1)-th distances (nearly) tie."""
    if metric == "cosine":
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        dist = 1.0 - unit @ unit.T
    else:
        dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1)
    result = []
    for i in range(len(x)):
        ranked = dist[i, order[i]]
        if k < len(x) - 1 and ranked[k] - ranked[k - 1] < 1e-9:
            return None
        result.append(order[i, :k].tolist())
    return result


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 25), dim=st.integers(1, 5), k=st.integers(1, 6), seed=st.integers(0, 2**31 - 1),
       metric=st.sampled_from(["cosine", "euclidean"]))
def test_knn_graph_matches_brute_force(n, dim, k, seed, metric):
    assume(k < n)
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, dim))
    expected = brute_force_neighbours(x, k, metric)
    assume(expected is not None)  # ties: any choice among them is right, so skip those draws
    directed = knn_graph(torch.from_numpy(x), k, metric=metric, symmetric=False)
    assert directed.dtype == torch.long and directed.shape == (2, n * k)
    assert {(int(s), int(t)) for s, t in directed.T} == {(j, i) for i in range(n) for j in expected[i]}
    sym = knn_graph(x, k, metric=metric)  # numpy input works too
    assert sym.dtype == torch.long
    assert_both_directions(sym)
    assert pairs_of(sym) == {(min(i, j), max(i, j)) for i in range(n) for j in expected[i]}


def test_knn_graph_float32_tensor_and_default_metric():
    x = torch.rand(12, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(knn_graph(x, 3), knn_graph(x.double().numpy(), 3, metric="cosine"))


@pytest.mark.parametrize("x,k,kwargs,error,match", [
    (torch.randn(5, 3), 5, {}, ValueError, r"k=5 must be at least 1 and smaller than the number of nodes \(5\)"),
    (torch.randn(5, 3), 9, {}, ValueError, "smaller than the number of nodes"),
    (torch.randn(5, 3), 0, {}, ValueError, "k=0 must be at least 1"),
    (torch.randn(5, 3), 2.0, {}, TypeError, "k must be an int"),
    (torch.randn(5, 3), 2, {"metric": "manhattan"}, ValueError, "metric must be one of 'cosine', 'euclidean'"),
    (torch.randn(5), 2, {}, ValueError, "2-D feature matrix"),
    ([[0.0, 1.0], [1.0, 0.0]], 1, {}, TypeError, "torch.Tensor or numpy array"),
    (torch.randn(5, 3), 2, {"symmetric": "yes"}, TypeError, "symmetric must be True or False"),
])
def test_knn_graph_bad_input(x, k, kwargs, error, match):
    with pytest.raises(error, match=match):
        knn_graph(x, k, **kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_knn_graph_rejects_non_finite_features(bad):
    x = torch.randn(5, 3)
    x[3, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or infinite values \(rows \[3\]"):
        knn_graph(x, 2)
