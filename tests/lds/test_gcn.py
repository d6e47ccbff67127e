"""The functional 2-layer GCN: initialisation, dropout masks, graph formats, gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from lds.gcn import (
    SPARSE_FEATURES_MAX_DENSITY,
    _drop_features,
    features_times,
    gcn_forward,
    gcn_l2_penalty,
    init_gcn_params,
    sample_dropout_masks,
)
from lds.propagation import all_pairs, candidate_graph, dense_adjacency, dense_normalized_adjacency, to_edge_index

DT = torch.float64
N, FEATURES, HIDDEN, CLASSES = 16, 6, 8, 3


def _problem(seed=0, subset=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(N, FEATURES, generator=g, dtype=DT)
    x[x < 0.6] = 0.0  # sparse bag-of-words-like features
    pairs = all_pairs(N)
    if subset is not None:
        pairs = pairs[:, torch.rand(pairs.size(1), generator=g) < subset]
    sample = (torch.rand(pairs.size(1), generator=g, dtype=DT) < 0.2).to(DT)
    params = init_gcn_params(FEATURES, HIDDEN, CLASSES, g, dtype=DT)
    return x, pairs, sample, params, g


def test_init_gcn_params_glorot_and_reproducible():
    W1, W2 = init_gcn_params(100, 16, 7, torch.Generator().manual_seed(0), dtype=DT)
    assert W1.shape == (100, 16) and W2.shape == (16, 7) and W1.dtype == DT
    assert float(W1.abs().max()) <= math.sqrt(6 / 116) and float(W2.abs().max()) <= math.sqrt(6 / 23)
    assert abs(float(W1.var()) - 2 / 116) < 0.2 * 2 / 116  # Var U(-r, r) = r²/3 = 2/(fan_in + fan_out)
    again = init_gcn_params(100, 16, 7, torch.Generator().manual_seed(0), dtype=DT)
    other = init_gcn_params(100, 16, 7, torch.Generator().manual_seed(1), dtype=DT)
    assert torch.equal(W1, again[0]) and torch.equal(W2, again[1]) and not torch.equal(W1, other[0])
    with pytest.raises(ValueError, match="hidden"):
        init_gcn_params(3, 0, 2, torch.Generator())
    with pytest.raises(TypeError, match="generator"):
        init_gcn_params(3, 4, 2, 0)


def test_dropout_masks_law_shapes_and_reproducibility():
    x, *_ = _problem()
    mx, mh = sample_dropout_masks((200, 50), (200, 16), 0.5, torch.Generator().manual_seed(0), DT)
    assert mx.shape == (200, 50) and mh.shape == (200, 16) and mx.dtype == DT
    assert set(mx.unique().tolist()) == {0.0, 2.0}
    assert abs(float((mx > 0).double().mean()) - 0.5) < 0.03
    again = sample_dropout_masks((200, 50), (200, 16), 0.5, torch.Generator().manual_seed(0), DT)
    assert torch.equal(mx, again[0]) and torch.equal(mh, again[1])
    compact, _ = sample_dropout_masks(x, (N, HIDDEN), 0.25, torch.Generator().manual_seed(0))
    assert compact.shape == (int((x != 0).sum()),) and compact.dtype == DT
    assert set(compact.unique().tolist()) <= {0.0, 1 / 0.75}
    with pytest.raises(ValueError, match="dropout rate"):
        sample_dropout_masks((2, 2), (2, 2), 1.0, torch.Generator())


@pytest.mark.parametrize("mode", ["gather", "dense"])
@pytest.mark.parametrize("subset", [None, 0.4])
def test_dense_and_sparse_paths_agree_with_fixed_masks(mode, subset):
    x, pairs, sample, params, g = _problem(seed=1, subset=subset)
    masks = sample_dropout_masks(x.shape, (N, HIDDEN), 0.5, g, DT)
    weights = torch.randn(N, CLASSES, generator=g, dtype=DT)
    outs, grads = [], []
    for path in ("sparse", "dense", "edge_index"):
        theta = sample.clone().requires_grad_(True)
        values = theta * 1.0
        if path == "sparse":
            graph = (values, pairs)
        elif path == "dense":
            graph = dense_adjacency(values, pairs, N)
        else:
            graph = to_edge_index(values, pairs)
        w = tuple(p.clone().requires_grad_(True) for p in params)
        out = gcn_forward(w, x, graph, dropout_masks=masks, candidate_mode=mode)
        outs.append(out)
        grads.append(torch.autograd.grad((weights * out).sum() + out.pow(2).sum(), (theta, *w)))
    for out, grad in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(outs[0], out, rtol=0, atol=1e-12)
        for a, b in zip(grads[0], grad):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-11)
    assert bool((grads[0][0][sample == 0] != 0).any())  # θ-gradient also where the sample is 0


def test_layer_order_matches_the_formula():
    x, pairs, sample, (W1, W2), g = _problem(seed=2)
    mx, mh = sample_dropout_masks(x.shape, (N, HIDDEN), 0.5, g, DT)
    a_hat = dense_normalized_adjacency(dense_adjacency(sample, pairs, N))
    expected = a_hat @ ((torch.relu(a_hat @ ((x * mx) @ W1)) * mh) @ W2)
    torch.testing.assert_close(gcn_forward((W1, W2), x, (sample, pairs), dropout_masks=(mx, mh)), expected)
    no_dropout = a_hat @ (torch.relu(a_hat @ (x @ W1)) @ W2)
    torch.testing.assert_close(gcn_forward((W1, W2), x, (sample, pairs), training=False), no_dropout)


def test_compact_masks_equal_the_same_dense_masks():
    x, pairs, sample, params, g = _problem(seed=3)
    compact, mh = sample_dropout_masks(x, (N, HIDDEN), 0.5, g)
    dense = torch.ones(x.numel(), dtype=DT)
    dense[torch.nonzero(x.reshape(-1), as_tuple=True)[0]] = compact
    out_compact = gcn_forward(params, x, (sample, pairs), dropout_masks=(compact, mh))
    out_dense = gcn_forward(params, x, (sample, pairs), dropout_masks=(dense.view_as(x), mh))
    torch.testing.assert_close(out_compact, out_dense, rtol=0, atol=1e-14)


def test_generator_dropout_is_reproducible_and_uses_no_global_rng():
    x, pairs, sample, params, _ = _problem(seed=4)
    state = torch.random.get_rng_state()
    a = gcn_forward(params, x, (sample, pairs), generator=torch.Generator().manual_seed(9))
    b = gcn_forward(params, x, (sample, pairs), dropout_masks=torch.Generator().manual_seed(9))
    c = gcn_forward(params, x, (sample, pairs), generator=torch.Generator().manual_seed(10))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="dropout_masks or a torch.Generator"):
        gcn_forward(params, x, (sample, pairs))
    torch.testing.assert_close(gcn_forward(params, x, (sample, pairs), dropout=0.0),
                               gcn_forward(params, x, (sample, pairs), training=False))


@pytest.mark.parametrize("mode", ["gather", "dense"])
def test_hypergradient_through_an_inner_step_matches_dense(mode):
    """θ-gradient of the validation loss after one SGD step on the train loss, sparse vs dense GCN."""
    x, pairs, sample, params, g = _problem(seed=5, subset=0.8 if mode == "gather" else None)
    masks = sample_dropout_masks(x, (N, HIDDEN), 0.5, g)
    theta0 = torch.rand(pairs.size(1), generator=g, dtype=DT)
    y = torch.randint(0, CLASSES, (N,), generator=g)
    train, val = torch.arange(0, 8), torch.arange(8, N)

    def hypergrad(as_graph):
        theta = theta0.clone().requires_grad_(True)
        a = sample + (theta - theta.detach())  # straight-through
        w = tuple(p.clone().requires_grad_(True) for p in params)
        logits = gcn_forward(w, x, as_graph(a), dropout_masks=masks, candidate_mode=mode)
        inner = F.cross_entropy(logits[train], y[train]) + gcn_l2_penalty(w)
        gw = torch.autograd.grad(inner, w, create_graph=True)
        w1 = tuple(p - 0.5 * q for p, q in zip(w, gw))
        outer = F.cross_entropy(gcn_forward(w1, x, as_graph(a), training=False)[val], y[val])
        return torch.autograd.grad(outer, theta)[0]

    sparse = hypergrad(lambda a: (a, pairs))
    dense = hypergrad(lambda a: dense_adjacency(a, pairs, N))
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-12)


def test_prepared_candidate_graph_is_accepted():
    x, pairs, sample, params, _ = _problem(seed=6)
    cand = candidate_graph(pairs, N, "gather")
    torch.testing.assert_close(gcn_forward(params, x, (sample, cand), training=False),
                               gcn_forward(params, x, (sample, pairs), training=False))


def test_l2_penalty_is_on_the_first_layer_only():
    W1, W2 = torch.full((3, 2), 2.0, dtype=DT), torch.full((2, 4), 5.0, dtype=DT)
    torch.testing.assert_close(gcn_l2_penalty((W1, W2)), torch.tensor(5e-4 * 0.5 * 24, dtype=DT))
    torch.testing.assert_close(gcn_l2_penalty((W1, W2), weight_decay=1.0), torch.tensor(12.0, dtype=DT))


def test_forward_validation_errors():
    x, pairs, sample, params, _ = _problem(seed=7)
    with pytest.raises(TypeError, match="params must be a tuple"):
        gcn_forward(params[0], x, (sample, pairs), training=False)
    with pytest.raises(ValueError, match="params have shapes"):
        gcn_forward((params[0][:-1], params[1]), x, (sample, pairs), training=False)
    with pytest.raises(TypeError, match="one dtype"):
        gcn_forward(params, x.float(), (sample.float(), pairs), training=False)
    with pytest.raises(ValueError, match="dense graph must have shape"):
        gcn_forward(params, x, torch.zeros(N, N + 1, dtype=DT), training=False)
    with pytest.raises(ValueError, match="graph values must have shape"):
        gcn_forward(params, x, (sample[:-1], pairs), training=False)
    with pytest.raises(TypeError, match="graph must be"):
        gcn_forward(params, x, [sample], training=False)
    with pytest.raises(ValueError, match="dropout_masks\\[0\\]"):
        gcn_forward(params, x, (sample, pairs), dropout_masks=(torch.ones(3, dtype=DT), torch.ones(N, HIDDEN)))
    with pytest.raises(ValueError, match="dropout_masks\\[1\\]"):
        gcn_forward(params, x, (sample, pairs), dropout_masks=(torch.ones_like(x), torch.ones(N, 1, dtype=DT)))


def test_sparse_features_product_equals_the_dense_one_to_second_order():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(40, 50, generator=g, dtype=DT)
    x[x < 0.95] = 0.0  # 5 % nonzero, as bag-of-words features: the gather/scatter path
    assert 0 < int((x != 0).sum()) <= SPARSE_FEATURES_MAX_DENSITY * x.numel()
    W = torch.randn(50, 7, generator=g, dtype=DT, requires_grad=True)
    v = torch.randn(50, 7, generator=g, dtype=DT)
    compact, _ = sample_dropout_masks(x, (40, 7), 0.5, g)
    dense_mask = torch.ones(x.numel(), dtype=DT)  # the same draw, full shape
    dense_mask[torch.nonzero(x.reshape(-1), as_tuple=True)[0]] = compact
    dense_mask = dense_mask.view_as(x)
    for mask in (None, compact, dense_mask):
        dense = (x if mask is None else _drop_features(x, mask)) @ W
        sparse = features_times(x, W, mask)
        assert torch.allclose(sparse, dense, rtol=1e-13, atol=1e-13)
        # gradient and a Hessian-vector product through an inner step (what hypergradients need)
        grads = [torch.autograd.grad(out.tanh().pow(2).sum(), W, create_graph=True)[0] for out in (dense, sparse)]
        hvps = [torch.autograd.grad((gr * v).sum(), W)[0] for gr in grads]
        assert torch.allclose(grads[1], grads[0], rtol=1e-12, atol=1e-13)
        assert torch.allclose(hvps[1], hvps[0], rtol=1e-12, atol=1e-13)
    # the whole network: sparse first layer against dense features that take the dense path
    x_dense = x.clone()
    x_dense[0, x_dense[0] == 0] = 1e-300  # now every entry is nonzero: dense path, same values to 1e-300
    pairs = all_pairs(40)
    values = (torch.rand(pairs.size(1), generator=g, dtype=DT) < 0.1).to(DT)
    W1, W2 = init_gcn_params(50, 7, 3, g, dtype=DT)
    masks = sample_dropout_masks(x.shape, (40, 7), 0.5, g, dtype=DT)
    a = gcn_forward((W1, W2), x, (values, pairs), dropout_masks=masks)
    b = gcn_forward((W1, W2), x_dense, (values, pairs), dropout_masks=masks)
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    # features that need a gradient themselves take the dense path
    xg = x.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(features_times(xg, W.detach(), compact).sum(), xg)
    assert gx.shape == x.shape
    with pytest.raises(ValueError, match="one entry per nonzero"):
        features_times(x, W, compact[:-1])
