"""Sparse GCN propagation against the dense reference: values, gradients, double backward."""

import pytest
import torch

from lds.gcn import gcn_forward, init_gcn_params, sample_dropout_masks
from lds.propagation import (
    CandidateGraph,
    all_pairs,
    dense_gcn_propagate,
    gcn_propagate,
    pairs_from_edge_index,
    to_edge_index,
)

DT = torch.float64


def _setup(n=12, h=3, subset=None, binary=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    pairs = all_pairs(n)
    if subset is not None:
        keep = torch.rand(pairs.size(1), generator=g) < subset
        pairs = pairs[:, keep]
    p = pairs.size(1)
    values = torch.rand(p, generator=g, dtype=DT)
    if binary:
        values = (values < 0.3).to(DT)
    M = torch.randn(n, h, generator=g, dtype=DT)
    return pairs, values, M


@pytest.mark.parametrize("mode", ["gather", "dense"])
@pytest.mark.parametrize("subset,binary", [(None, True), (None, False), (0.4, True)])
def test_forward_and_gradients_match_dense_reference(mode, subset, binary):
    pairs, values, M = _setup(subset=subset, binary=binary)
    n = M.size(0)
    cand = CandidateGraph(pairs, n, candidate_mode=mode)
    v1, m1 = values.clone().requires_grad_(True), M.clone().requires_grad_(True)
    v2, m2 = values.clone().requires_grad_(True), M.clone().requires_grad_(True)
    y1 = gcn_propagate(v1 * 1.0, cand, m1)
    y2 = dense_gcn_propagate(v2, pairs, m2)
    assert torch.allclose(y1, y2, atol=1e-12)
    w = torch.randn_like(y1)
    g1 = torch.autograd.grad((w * y1).sum(), (v1, m1))
    g2 = torch.autograd.grad((w * y2).sum(), (v2, m2))
    assert torch.allclose(g1[0], g2[0], atol=1e-12)  # every candidate, also those with value 0
    assert torch.allclose(g1[1], g2[1], atol=1e-12)
    if binary:
        assert bool((g1[0][values == 0] != 0).any())


@pytest.mark.parametrize("mode", ["gather", "dense"])
def test_gradcheck_and_gradgradcheck(mode):
    pairs, values, M = _setup(n=6, h=2, binary=False)
    cand = CandidateGraph(pairs, 6, candidate_mode=mode)
    values = values.requires_grad_(True)
    M = M.requires_grad_(True)
    fn = lambda v, m: gcn_propagate(v, cand, m)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (values, M))
    assert torch.autograd.gradgradcheck(fn, (values, M))


def test_gradient_through_a_gradient_step_matches_dense():
    """d/dθ of loss(w − η ∇_w L(w, θ)): the mixed second derivative the hypergradient needs."""
    pairs, values, _ = _setup(n=10, binary=True, seed=3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 4, generator=g, dtype=DT)
    theta = torch.rand(pairs.size(1), generator=g, dtype=DT)
    W = torch.randn(4, 3, generator=g, dtype=DT)
    y = torch.randint(0, 3, (10,), generator=g)

    def outcome(prop):
        th = theta.clone().requires_grad_(True)
        a = values + (th - th.detach())  # straight-through: exact sample forward, A = θ backward
        w = W.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(prop(a, torch.tanh(prop(a, x @ w))), y)
        (gw,) = torch.autograd.grad(loss, w, create_graph=True)
        w1 = w - 0.5 * gw
        outer = torch.nn.functional.cross_entropy(prop(a, x @ w1), y)
        return torch.autograd.grad(outer, th)[0]

    sparse = outcome(lambda a, m: gcn_propagate(a, pairs, m))
    dense = outcome(lambda a, m: dense_gcn_propagate(a, pairs, m))
    assert torch.allclose(sparse, dense, atol=1e-12)


def test_gcn_forward_dense_and_sparse_paths_agree():
    pairs, values, _ = _setup(n=15, binary=True, seed=4)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(15, 6, generator=g, dtype=DT)
    x[x < 0.5] = 0
    params = init_gcn_params(6, 16, 3, g, dtype=DT)
    masks = sample_dropout_masks(x, (15, 16), 0.5, g)
    th1 = values.clone().requires_grad_(True)
    th2 = values.clone().requires_grad_(True)
    from lds.propagation import dense_adjacency

    out_sparse = gcn_forward(params, x, (th1 * 1.0, pairs), dropout_masks=masks)
    out_dense = gcn_forward(params, x, dense_adjacency(th2, pairs, 15), dropout_masks=masks)
    assert torch.allclose(out_sparse, out_dense, atol=1e-12)
    w = torch.randn_like(out_sparse)
    (g1,) = torch.autograd.grad((w * out_sparse).sum(), th1)
    (g2,) = torch.autograd.grad((w * out_dense).sum(), th2)
    assert torch.allclose(g1, g2, atol=1e-12)


def test_pyg_message_passing_view_matches():
    """Every candidate passed as an edge with weight 0/1 to PyG's GCNConv gives the same propagation."""
    from torch_geometric.nn import GCNConv

    pairs, values, M = _setup(n=10, binary=True, seed=5)
    conv = GCNConv(3, 3, bias=False, add_self_loops=True, normalize=True).double()
    with torch.no_grad():
        conv.lin.weight.copy_(torch.eye(3, dtype=DT))
    edge_index, weight = to_edge_index(values, pairs)
    assert torch.allclose(conv(M, edge_index, weight), gcn_propagate(values, pairs, M), atol=1e-12)


def test_pairs_helpers_and_validation():
    ei = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 2, 0]])
    assert pairs_from_edge_index(ei).tolist() == [[0, 0, 1], [1, 3, 2]]
    pairs = all_pairs(4)
    assert pairs.size(1) == 6
    M = torch.randn(4, 2, dtype=DT)
    with pytest.raises(ValueError, match="values must have shape"):
        gcn_propagate(torch.ones(5, dtype=DT), pairs, M)
    with pytest.raises(ValueError, match="M must have shape"):
        gcn_propagate(torch.ones(6, dtype=DT), pairs, M, num_nodes=5)
    with pytest.raises(ValueError, match="pairs\\[0\\] < pairs\\[1\\]"):
        CandidateGraph(pairs.flip(0), 4)
    with pytest.raises(ValueError, match="outside"):
        CandidateGraph(torch.tensor([[0], [7]]), 4)
    with pytest.raises(ValueError, match="duplicate"):
        CandidateGraph(torch.tensor([[0, 0], [1, 1]]), 4)
