"""The learned graph out (``lds.export``): PyG, networkx and scipy agree with θ and with each other; sampling."""

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.utils import to_scipy_sparse_matrix

from lds import LDS
from lds.export import learned_pairs, sample_graph, to_data, to_networkx, to_scipy

from .synthetic import planted_partition


@pytest.fixture(scope="module")
def fitted():
    """A tiny fit on all pairs (45 nodes) whose θ has values strictly between 0 and 1."""
    data = planted_partition(per_class=15, seed=0)
    model = LDS(max_outer_iters=1, max_inner_steps=10, num_samples=2, outer_lr=1.0, init_prob=0.05,
                verbose=False, seed=0).fit(data)
    return model


def theta_matrix(model) -> np.ndarray:
    """θ as a dense symmetric matrix, built directly from the model's edge_probs (the reference)."""
    edge_index, probs = model.edge_probs()
    dense = np.zeros((model.num_nodes_, model.num_nodes_))
    dense[edge_index[0].numpy(), edge_index[1].numpy()] = probs.double().numpy()
    return dense


def test_theta_has_intermediate_values(fitted):
    """The round trips below are only informative if θ is not just 0/1."""
    probs = fitted.edge_probs()[1]
    assert bool(((probs > 0.01) & (probs < 0.99)).any())


@pytest.mark.parametrize("min_prob", [0.0, 0.04, 0.5])
def test_every_format_holds_theta_above_min_prob(fitted, min_prob):
    """Catches dropped/duplicated pairs, a lost direction, a wrong threshold or weights that are not θ."""
    ref = theta_matrix(fitted)
    ref[ref <= min_prob] = 0.0
    data = to_data(fitted, min_prob)
    n = fitted.num_nodes_
    assert data.num_nodes == n and data.edge_weight.shape == (data.edge_index.size(1),)
    assert bool((data.edge_weight > min_prob).all())
    from_data = to_scipy_sparse_matrix(data.edge_index, data.edge_weight.double(), n).toarray()
    np.testing.assert_array_equal(from_data, ref)
    graph = to_networkx(fitted, min_prob)
    assert graph.number_of_nodes() == n and not graph.is_directed()
    from_nx = nx.to_scipy_sparse_array(graph, nodelist=range(n), weight="weight").toarray()
    np.testing.assert_array_equal(from_nx, ref)
    matrix = to_scipy(fitted, min_prob)
    assert sp.issparse(matrix) and matrix.shape == (n, n) and matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix.toarray(), ref)
    assert (abs(matrix - matrix.T)).nnz == 0 and not matrix.diagonal().any()


def test_round_trip_data_networkx_scipy(fitted):
    """Data -> networkx -> scipy -> Data gives back the same pairs and weights."""
    data = to_data(fitted)
    graph = nx.Graph()
    graph.add_nodes_from(range(data.num_nodes))
    for (i, j), w in zip(data.edge_index.t().tolist(), data.edge_weight.tolist()):
        graph.add_edge(i, j, weight=w)
    exported = to_networkx(fitted)
    assert sorted(graph.nodes) == sorted(exported.nodes)
    assert sorted(graph.edges(data="weight")) == sorted(exported.edges(data="weight"))
    matrix = nx.to_scipy_sparse_array(graph, nodelist=range(data.num_nodes)).tocoo()
    back_pairs = torch.from_numpy(np.stack([matrix.row, matrix.col])).long()
    upper = back_pairs[0] < back_pairs[1]
    pairs, probs, _ = learned_pairs(fitted)
    keys = back_pairs[0, upper] * data.num_nodes + back_pairs[1, upper]
    order = torch.argsort(keys)
    torch.testing.assert_close(back_pairs[:, upper][:, order], pairs)
    torch.testing.assert_close(torch.from_numpy(matrix.data[upper.numpy()][order.numpy()]), probs.double())


def test_sample_graph_is_seeded_and_bernoulli(fitted):
    """Same seed, same graph; a generator advances; pair frequencies over many samples match θ; θ = 0 pairs
    never appear and θ = 1 pairs always do."""
    a, b = sample_graph(fitted, 3), sample_graph(fitted, 3)
    assert torch.equal(a.edge_index, b.edge_index)
    gen = torch.Generator().manual_seed(3)
    first = sample_graph(fitted, gen)
    assert torch.equal(first.edge_index, a.edge_index)
    assert not torch.equal(sample_graph(fitted, gen).edge_index, a.edge_index)
    pairs, probs, n = learned_pairs(fitted)
    dense_theta = theta_matrix(fitted)
    counts = np.zeros((n, n))
    draws = 300
    for seed in range(draws):
        g = sample_graph(fitted, seed)
        assert g.num_nodes == n
        counts[g.edge_index[0].numpy(), g.edge_index[1].numpy()] += 1
    np.testing.assert_array_equal(counts, counts.T)
    freq = counts / draws
    assert not freq[dense_theta == 0].any()
    assert (freq[dense_theta == 1] == 1).all()
    sd = np.sqrt(dense_theta * (1 - dense_theta) / draws)
    assert (np.abs(freq - dense_theta) <= 5 * sd + 1e-12).mean() > 0.999
    assert abs(freq.sum() - dense_theta.sum()) < 5 * np.sqrt((dense_theta * (1 - dense_theta)).sum() / draws)


def test_errors(fitted):
    with pytest.raises(RuntimeError, match="not fitted"):
        to_data(LDS())
    with pytest.raises(TypeError, match="fitted lds.LDS"):
        to_scipy(object())
    for bad in (-0.1, 1.5, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="min_prob"):
            to_networkx(fitted, bad)
    for bad in (None, -1, 1.5, "0"):
        with pytest.raises(TypeError, match="generator"):
            sample_graph(fitted, bad)


def test_lds_methods_delegate_to_export(fitted):
    assert torch.equal(fitted.to_data(0.1).edge_index, to_data(fitted, 0.1).edge_index)
    assert torch.equal(fitted.to_data(0.1).edge_weight, to_data(fitted, 0.1).edge_weight)
    assert (abs(fitted.to_scipy() - to_scipy(fitted))).nnz == 0
    assert sorted(fitted.to_networkx(0.1).edges(data="weight")) == sorted(to_networkx(fitted, 0.1).edges(data="weight"))
    assert torch.equal(fitted.sample_graph(4).edge_index, sample_graph(fitted, 4).edge_index)
