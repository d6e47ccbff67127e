"""Sparse GCN propagation against the dense autograd reference: values, gradients, higher orders."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import lds.propagation as propagation
from lds.propagation import (
    CandidateGraph,
    SampledGraph,
    all_pairs,
    candidate_graph,
    check_pairs,
    defer_pair_gradients,
    dense_adjacency,
    dense_gcn_propagate,
    dense_normalized_adjacency,
    gcn_propagate,
    pairs_from_edge_index,
    reuse_sampled_graphs,
    to_edge_index,
)

DT = torch.float64
MODES = ["gather", "dense"]


def _problem(n=30, h=4, subset=None, kind="binary", seed=0):
    """Candidate pairs (all, or a random subset), values of the given kind, features M."""
    g = torch.Generator().manual_seed(seed)
    pairs = all_pairs(n)
    if subset is not None:
        pairs = pairs[:, torch.rand(pairs.size(1), generator=g) < subset]
    u = torch.rand(pairs.size(1), generator=g, dtype=DT)
    values = (u < 0.15).to(DT) if kind == "binary" else u
    M = torch.randn(n, h, generator=g, dtype=DT)
    return pairs, values, M


CASES = [(None, "binary"), (None, "uniform"), (0.3, "binary"), (0.3, "uniform")]


# ----------------------------------------------------------------------------- pairs helpers


def test_all_pairs_is_the_upper_triangle():
    pairs = all_pairs(5)
    assert pairs.shape == (2, 10) and pairs.dtype == torch.long
    assert bool((pairs[0] < pairs[1]).all())
    assert all_pairs(1).shape == (2, 0)
    check_pairs(pairs, 5)


def test_pairs_from_edge_index_dedupes_orients_and_drops_self_loops():
    ei = torch.tensor([[0, 1, 1, 2, 2, 3, 3], [1, 0, 2, 1, 2, 0, 0]])
    assert pairs_from_edge_index(ei).tolist() == [[0, 0, 1], [1, 3, 2]]
    assert pairs_from_edge_index(torch.empty(2, 0, dtype=torch.long)).shape == (2, 0)
    with pytest.raises(ValueError, match="edge_index must have shape"):
        pairs_from_edge_index(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        pairs_from_edge_index(torch.zeros(2, 4))


def test_candidate_mode_auto_and_cache():
    pairs = all_pairs(20)
    assert candidate_graph(pairs, 20).mode == "dense"
    assert candidate_graph(pairs, 20).is_all_pairs
    first = candidate_graph(pairs, 20)
    assert first.flat_index is first.flat_index  # derived once, cached on the candidate set
    view = first.with_mode("gather")
    assert view.mode == "gather" and view.flat_index is first.flat_index  # views share the caches
    assert candidate_graph(first, 20) is first  # a prepared candidate set is passed through
    assert candidate_graph(pairs, 20).flat_index is not first.flat_index  # a tensor gives a new candidate set
    sparse = pairs[:, ::10].clone()
    assert candidate_graph(sparse, 20).mode == "gather"
    assert candidate_graph(sparse, 20, "dense").mode == "dense"
    with pytest.raises(ValueError, match="candidate_mode"):
        candidate_graph(pairs, 20, "fast")


def test_nothing_outlives_a_dropped_candidate_set():
    """The caches belong to the candidate set: once its owner drops the pairs and the CandidateGraph, nothing
    holds them (GCN-RND draws a new candidate set at every step; a module-level cache once kept 10 k of them,
    1.5 GB after 3 Citeseer fits)."""
    import gc
    import weakref

    pairs = all_pairs(30)[:, ::3].clone()
    values = torch.ones(pairs.size(1), dtype=DT, requires_grad=True)
    cand = candidate_graph(pairs, 30)
    gcn_propagate(values, cand, torch.randn(30, 2, dtype=DT), 30).sum().backward()
    cand.sampled_dot(torch.randn(30, 2, dtype=DT), torch.randn(30, 2, dtype=DT))
    with reuse_sampled_graphs(cand), defer_pair_gradients(cand):
        gcn_propagate(values, cand, torch.randn(30, 2, dtype=DT), 30).sum().backward()
    refs = weakref.ref(pairs), weakref.ref(cand)
    del pairs, cand
    gc.collect()
    assert all(r() is None for r in refs)
    assert not any(isinstance(v, dict | list) and v for k, v in vars(propagation).items()
                   if not k.startswith("__") and k not in propagation.__all__ and k != "_MODES")


# ----------------------------------------------------------------------------- values and gradients


@pytest.mark.parametrize("mode", MODES + ["auto"])
@pytest.mark.parametrize("subset,kind", CASES)
def test_forward_matches_dense_reference(mode, subset, kind):
    pairs, values, M = _problem(subset=subset, kind=kind)
    Y = gcn_propagate(values, pairs, M, 30, candidate_mode=mode)
    torch.testing.assert_close(Y, dense_gcn_propagate(values, pairs, M, 30), rtol=0, atol=1e-12)


@pytest.mark.parametrize("deferred", [False, True])
def test_gather_strategy_on_unsorted_pairs_matches_dense_reference(deferred):
    """The gather strategy evaluates ⟨L_i, R_j⟩ by one sampled product on the pairs' CSR pattern; pairs in
    any order must get their own value back (the pattern is built on the sorted pairs)."""
    pairs, values, M = _problem(subset=0.3, kind="binary", seed=4)
    perm = torch.randperm(pairs.size(1), generator=torch.Generator().manual_seed(5))
    pairs, values = pairs[:, perm], values[perm]
    assert not bool((pairs[0, 1:] * 30 + pairs[1, 1:] > pairs[0, :-1] * 30 + pairs[1, :-1]).all())
    W = torch.randn(30, 4, generator=torch.Generator().manual_seed(6), dtype=DT)
    ref_v = values.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad((W * dense_gcn_propagate(ref_v, pairs, M, 30)).sum(), ref_v)
    v = values.clone().requires_grad_(True)
    if deferred:
        cand = candidate_graph(pairs, 30, "gather")
        with defer_pair_gradients(cand) as acc:
            Y = gcn_propagate(v, cand, M, 30, candidate_mode="gather")
            torch.autograd.grad((W * Y).sum(), v, allow_unused=True)
        got = acc.gradient()
    else:
        (got,) = torch.autograd.grad((W * gcn_propagate(v, pairs, M, 30, candidate_mode="gather")).sum(), v)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("subset,kind", CASES)
def test_gradients_match_dense_reference_for_every_candidate(mode, subset, kind):
    pairs, values, M = _problem(subset=subset, kind=kind, seed=1)
    W = torch.randn(30, 4, generator=torch.Generator().manual_seed(2), dtype=DT)
    grads = []
    for prop in (lambda v, m: gcn_propagate(v, pairs, m, 30, candidate_mode=mode),
                 lambda v, m: dense_gcn_propagate(v, pairs, m, 30)):
        v, m = values.clone().requires_grad_(True), M.clone().requires_grad_(True)
        loss = (W * prop(v, m)).sum() + prop(v, m).pow(2).sum()  # a nonlinear loss
        grads.append(torch.autograd.grad(loss, (v, m)))
    (gv, gm), (rv, rm) = grads
    torch.testing.assert_close(gv, rv, rtol=0, atol=1e-11)
    torch.testing.assert_close(gm, rm, rtol=0, atol=1e-11)
    if kind == "binary":  # the pairs sampled as 0 get a (nonzero) gradient too
        assert bool((gv[values == 0] != 0).all())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["binary", "uniform"])
def test_gradcheck_and_gradgradcheck(mode, kind):
    """At 0/1 values gradgradcheck also checks that the degree's derivative reaches the zero pairs."""
    pairs, values, M = _problem(n=7, h=2, subset=0.7, kind=kind, seed=3)
    if kind == "binary":
        values[0] = 0.0
    cand = CandidateGraph(pairs, 7, candidate_mode=mode)
    inputs = (values.requires_grad_(True), M.requires_grad_(True))

    def fn(v, m):
        return gcn_propagate(v, cand, m, 7)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("mode", MODES)
def test_third_derivatives_match_dense_reference(mode):
    pairs, values, M = _problem(n=9, h=3, kind="binary", seed=4)
    g = torch.Generator().manual_seed(5)
    W, r, q = (torch.randn(9, 3, generator=g, dtype=DT), torch.randn(values.shape, generator=g, dtype=DT),
               torch.randn(values.shape, generator=g, dtype=DT))

    def third(prop):
        v, m = values.clone().requires_grad_(True), M.clone().requires_grad_(True)
        f = (W * torch.tanh(prop(v, m))).sum()
        (g1,) = torch.autograd.grad(f, v, create_graph=True)
        (g2,) = torch.autograd.grad((g1 * r).sum(), v, create_graph=True)
        return torch.autograd.grad((g2 * q).sum(), (v, m))

    sparse = third(lambda v, m: gcn_propagate(v, pairs, m, 9, candidate_mode=mode))
    dense = third(lambda v, m: dense_gcn_propagate(v, pairs, m, 9))
    for a, b in zip(sparse, dense):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_gradient_through_a_gradient_step_matches_dense(mode):
    """d/dθ of loss(w − η ∇_w L(w, θ)) with straight-through values: what the hypergradient computes."""
    n = 12
    pairs, sample, _ = _problem(n=n, kind="binary", seed=6)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, 5, generator=g, dtype=DT)
    theta0 = torch.rand(pairs.size(1), generator=g, dtype=DT)
    W0 = torch.randn(5, 3, generator=g, dtype=DT)
    y = torch.randint(0, 3, (n,), generator=g)

    def hypergrad(prop):
        theta = theta0.clone().requires_grad_(True)
        a = sample + (theta - theta.detach())  # exact 0/1 sample forward, A = θ backward
        w = W0.clone().requires_grad_(True)
        inner = F.cross_entropy(prop(a, torch.tanh(prop(a, x @ w))), y)
        (gw,) = torch.autograd.grad(inner, w, create_graph=True)
        w1 = w - 0.3 * gw
        outer = F.cross_entropy(prop(a, torch.tanh(prop(a, x @ w1))), y)
        return torch.autograd.grad(outer, theta)[0]

    sparse = hypergrad(lambda a, m: gcn_propagate(a, pairs, m, n, candidate_mode=mode))
    dense = hypergrad(lambda a, m: dense_gcn_propagate(a, pairs, m, n))
    torch.testing.assert_close(sparse, dense, rtol=0, atol=1e-12)
    assert bool((sparse[sample == 0] != 0).any())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("subset", [None, 0.3])
def test_deferred_pair_gradients_equal_the_direct_ones(mode, subset):
    """One N×N product per backward pass (defer_pair_gradients) gives the same θ-gradient through an
    inner gradient step, two sampled graphs and the outer loss, also where the sample is 0."""
    n = 14
    g = torch.Generator().manual_seed(11)
    pairs = all_pairs(n)
    if subset is not None:
        pairs = pairs[:, torch.rand(pairs.size(1), generator=g) < subset]
    P = pairs.size(1)
    x = torch.randn(n, 5, generator=g, dtype=DT)
    theta0 = torch.rand(P, generator=g, dtype=DT) * 0.4
    u1, u2 = torch.rand(P, generator=g, dtype=DT), torch.rand(P, generator=g, dtype=DT)
    W0 = torch.randn(5, 3, generator=g, dtype=DT)
    y = torch.randint(0, 3, (n,), generator=g)

    cand = candidate_graph(pairs, n, mode)

    def run(theta):
        prop = lambda a, m: gcn_propagate(a, cand, m, n)  # noqa: E731
        a1 = (u1 < theta).to(DT) + (theta - theta.detach())
        a2 = (u2 < theta).to(DT) + (theta - theta.detach())
        w = W0.clone().requires_grad_(True)
        inner = F.cross_entropy(prop(a1, torch.relu(prop(a1, x @ w))), y)
        (gw,) = torch.autograd.grad(inner, w, create_graph=True)
        return F.cross_entropy(prop(a2, torch.relu(prop(a2, x @ (w - 0.5 * gw)))), y)

    theta = theta0.clone().requires_grad_(True)
    (direct,) = torch.autograd.grad(run(theta), theta)
    with defer_pair_gradients(cand) as acc:
        (rest,) = torch.autograd.grad(run(theta), theta, allow_unused=True)
    assert rest is None  # every pair gradient went to the accumulator
    assert acc.num_uses == 6  # 2 forward uses per graph, 2 transposed uses in the inner gradient
    deferred = acc.gradient()
    torch.testing.assert_close(deferred, direct, rtol=0, atol=1e-12)
    assert bool((deferred[(u2 >= theta0) & (u1 >= theta0)] != 0).any())


def test_deferral_scope_and_errors():
    pairs = all_pairs(5)
    cand = candidate_graph(pairs, 5)
    M = torch.randn(5, 2, dtype=DT)
    theta = torch.full((10,), 0.5, dtype=DT, requires_grad=True)
    with pytest.raises(TypeError, match="CandidateGraph"):
        defer_pair_gradients(pairs)
    with pytest.raises(TypeError, match="CandidateGraph"):
        reuse_sampled_graphs(pairs)
    # another candidate set on the same pairs tensor is another owner: its gradients are not deferred here
    other = candidate_graph(pairs, 5)
    with defer_pair_gradients(cand) as acc:
        (g_other,) = torch.autograd.grad(gcn_propagate(theta, other, M, 5).sum(), theta)
        assert g_other.shape == (10,) and acc.num_uses == 0
        with pytest.raises(RuntimeError, match="already being deferred"):
            with defer_pair_gradients(cand.with_mode("gather")):
                pass
        torch.testing.assert_close(acc.gradient(like=theta), torch.zeros(10, dtype=DT))
        with pytest.raises(ValueError, match="no use was recorded"):
            acc.gradient()
    # outside the context, gradients flow to autograd again
    (g,) = torch.autograd.grad(gcn_propagate(theta, cand, M, 5).sum(), theta)
    torch.testing.assert_close(g, g_other)


def test_pair_term_is_skipped_when_only_M_gradient_is_used(monkeypatch):
    calls = []
    original = propagation._pair_gradient
    monkeypatch.setattr(propagation, "_pair_gradient", lambda *a: calls.append(1) or original(*a))
    pairs, values, M = _problem(n=10, seed=8)
    theta = torch.rand(values.shape, dtype=DT, requires_grad=True)
    a = values + (theta - theta.detach())
    m = M.clone().requires_grad_(True)
    Y = gcn_propagate(a, pairs, m, 10)
    torch.autograd.grad(Y.sum(), m, retain_graph=True)
    assert calls == []
    torch.autograd.grad(Y.sum(), theta)
    assert calls == [1]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 10), density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16),
       mode=st.sampled_from(MODES))
def test_random_graphs_match_dense_reference(n, density, seed, mode):
    g = torch.Generator().manual_seed(seed)
    pairs = all_pairs(n)
    pairs = pairs[:, torch.rand(pairs.size(1), generator=g) < density]
    values = (torch.rand(pairs.size(1), generator=g, dtype=DT) < 0.5).to(DT).requires_grad_(True)
    M = torch.randn(n, 2, generator=g, dtype=DT, requires_grad=True)
    Y = gcn_propagate(values, pairs, M, n, candidate_mode=mode)
    R = dense_gcn_propagate(values, pairs, M, n)
    torch.testing.assert_close(Y, R, rtol=0, atol=1e-12)
    for a, b in zip(torch.autograd.grad(Y.sin().sum(), (values, M), allow_unused=True),
                    torch.autograd.grad(R.sin().sum(), (values, M), allow_unused=True)):
        if b is None:  # no candidate pair at all
            assert a is None or a.numel() == 0
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_empty_candidate_set_is_the_identity():
    M = torch.randn(4, 2, dtype=DT, requires_grad=True)
    values = torch.zeros(0, dtype=DT, requires_grad=True)
    Y = gcn_propagate(values, torch.empty(2, 0, dtype=torch.long), M)
    torch.testing.assert_close(Y, M)
    gv, gm = torch.autograd.grad(Y.sum(), (values, M))
    assert gv.shape == (0,)
    torch.testing.assert_close(gm, torch.ones_like(M))


def test_float32_and_shared_sampled_graph():
    pairs, values, M = _problem(n=15, seed=9)
    cand = candidate_graph(pairs, 15)
    sampled = SampledGraph(values.float(), cand)
    Y = gcn_propagate(values.float(), cand, M.float(), sampled_graph=sampled)
    assert Y.dtype == torch.float32
    torch.testing.assert_close(Y.double(), dense_gcn_propagate(values, pairs, M), rtol=1e-5, atol=1e-5)


def test_dense_normalized_adjacency():
    pairs, values, _ = _problem(n=6, kind="uniform", seed=10)
    A = dense_adjacency(values, pairs, 6)
    torch.testing.assert_close(A, A.T)
    a_hat = dense_normalized_adjacency(A)
    d = 1 + A.sum(1)
    torch.testing.assert_close(a_hat, (A + torch.eye(6, dtype=DT)) / torch.sqrt(d[:, None] * d[None, :]))
    with pytest.raises(ValueError, match="square"):
        dense_normalized_adjacency(torch.zeros(3, 4))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit inside PyG
def test_edge_index_view_matches_pyg_gcnconv():
    """Every candidate as an edge with weight 0/1 in PyG's GCNConv gives the same propagation."""
    from torch_geometric.nn import GCNConv

    pairs, values, M = _problem(n=12, h=3, seed=11)
    conv = GCNConv(3, 3, bias=False, add_self_loops=True, normalize=True).double()
    with torch.no_grad():
        conv.lin.weight.copy_(torch.eye(3, dtype=DT))
    edge_index, weight = to_edge_index(values, pairs)
    assert edge_index.shape == (2, 2 * pairs.size(1)) and weight.shape == (2 * pairs.size(1),)
    torch.testing.assert_close(conv(M, edge_index, weight), gcn_propagate(values, pairs, M), rtol=0, atol=1e-12)
    ei_nz, w_nz = to_edge_index(values, pairs, keep_zeros=False)
    assert ei_nz.size(1) == 2 * int((values != 0).sum()) and bool((w_nz != 0).all())
    torch.testing.assert_close(conv(M, ei_nz, w_nz), gcn_propagate(values, pairs, M), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- validation


def test_validation_errors_name_the_argument():
    pairs = all_pairs(4)
    M = torch.randn(4, 2, dtype=DT)
    ones = torch.ones(6, dtype=DT)
    with pytest.raises(ValueError, match=r"values must have shape \(6,\)"):
        gcn_propagate(torch.ones(5, dtype=DT), pairs, M)
    with pytest.raises(ValueError, match="M must have shape"):
        gcn_propagate(ones, pairs, M, 5)
    with pytest.raises(TypeError, match="same dtype"):
        gcn_propagate(ones, pairs, M.float())
    with pytest.raises(TypeError, match="values must be floating"):
        gcn_propagate(torch.ones(6, dtype=torch.long), pairs, M)
    with pytest.raises(ValueError, match=r"pairs must have shape \(2, P\)"):
        gcn_propagate(ones, pairs[0].clone(), M)
    with pytest.raises(TypeError, match="torch.long"):
        gcn_propagate(ones, pairs.int(), M)
    with pytest.raises(ValueError, match=r"pairs\[0\] < pairs\[1\]"):
        gcn_propagate(ones, pairs.flip(0).clone(), M)
    with pytest.raises(ValueError, match="outside"):
        gcn_propagate(torch.ones(1, dtype=DT), torch.tensor([[0], [7]]), M)
    with pytest.raises(ValueError, match="more than once"):
        gcn_propagate(torch.ones(3, dtype=DT), torch.tensor([[0, 1, 0], [1, 2, 1]]), M)
    with pytest.raises(ValueError, match="degree"):
        gcn_propagate(-ones, pairs, M)
    with pytest.raises(ValueError, match="candidate_mode"):
        gcn_propagate(ones, pairs, M, candidate_mode="sparse")
    with pytest.raises(ValueError, match="num_nodes"):
        CandidateGraph(pairs, -1)


def test_validate_false_trusts_the_caller_and_cached_pairs_are_checked_once():
    pairs = all_pairs(5).flip(0).clone()  # invalid, but not checked with validate=False
    gcn_propagate(torch.zeros(10, dtype=DT), pairs, torch.randn(5, 2, dtype=DT), validate=False)
    with pytest.raises(ValueError, match=r"pairs\[0\] < pairs\[1\]"):
        gcn_propagate(torch.zeros(10, dtype=DT), pairs, torch.randn(5, 2, dtype=DT))
    good = all_pairs(5)
    gcn_propagate(torch.zeros(10, dtype=DT), good, torch.randn(5, 2, dtype=DT))
    good[0, 0] = 3  # in-place change: the cached check is forgotten
    with pytest.raises(ValueError, match=r"pairs\[0\] < pairs\[1\]"):
        gcn_propagate(torch.zeros(10, dtype=DT), good, torch.randn(5, 2, dtype=DT))


def test_the_pair_term_is_skipped_for_a_leaf_values_tensor_whose_gradient_is_not_asked(monkeypatch):
    """A = θ itself (a leaf): an inner step asks for ∂L/∂W only, so the N×N pair term must not be formed."""
    calls = []
    original = propagation._pair_gradient
    monkeypatch.setattr(propagation, "_pair_gradient", lambda *a, **k: calls.append(1) or original(*a, **k))
    pairs = all_pairs(12)
    values = torch.rand(pairs.size(1), dtype=DT, generator=torch.Generator().manual_seed(0)).requires_grad_()
    M = torch.randn(12, 3, dtype=DT, requires_grad=True)
    Y = gcn_propagate(values, pairs, M, 12)
    (gM,) = torch.autograd.grad(Y.pow(2).sum(), M, create_graph=True)
    assert not calls
    (gv,) = torch.autograd.grad(gM.sum(), values)  # and it is formed when it is asked for (second order)
    assert calls
    (ref,) = torch.autograd.grad(
        torch.autograd.grad(dense_gcn_propagate(values, pairs, M, 12).pow(2).sum(), M, create_graph=True)[0].sum(),
        values)
    torch.testing.assert_close(gv, ref)


def test_reuse_sampled_graphs_builds_once_per_unchanged_values_tensor():
    pairs = all_pairs(15)
    values = torch.rand(pairs.size(1), dtype=DT, generator=torch.Generator().manual_seed(1))
    values[values < 0.5] = 0
    cand = candidate_graph(pairs, 15)
    assert SampledGraph.of(values, cand).nonzero is not SampledGraph.of(values, cand).nonzero  # no reuse outside
    M = torch.randn(15, 2, dtype=DT)
    with reuse_sampled_graphs(cand):
        first = SampledGraph.of(values, cand)
        assert SampledGraph.of(values, cand).adjacency is first.adjacency
        other = candidate_graph(pairs, 15)  # another candidate set does not see this one's cache
        assert SampledGraph.of(values, other).adjacency is not first.adjacency
        torch.testing.assert_close(gcn_propagate(values, cand, M, 15), dense_gcn_propagate(values, pairs, M, 15))
        values.mul_(0.5)  # an in-place change moves the version counter: the graph is built again
        again = SampledGraph.of(values, cand)
        assert again.adjacency is not first.adjacency
        torch.testing.assert_close(again.degree, SampledGraph(values, cand).degree)
        torch.testing.assert_close(gcn_propagate(values, cand, M, 15), dense_gcn_propagate(values, pairs, M, 15))
    assert cand._caches.reuse is None


def test_the_pair_term_is_skipped_when_only_the_weights_need_a_gradient(monkeypatch):
    """An inner step asks for ∂L/∂W only: the pair term must not be formed, which relies on torch's private
    ``torch._C._will_engine_execute_node``. If a torch release moves it, the code falls back to forming the
    term (still exact, but an N×N product per step on all pairs): this test fails loudly instead."""
    assert callable(getattr(torch._C, "_will_engine_execute_node", None)), "torch moved _will_engine_execute_node"
    calls = []
    real = propagation._pair_gradient
    monkeypatch.setattr(propagation, "_pair_gradient", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    cand = candidate_graph(all_pairs(12), 12)
    theta = torch.full((cand.num_pairs,), 0.3, dtype=DT, requires_grad=True)
    W = torch.randn(4, 3, dtype=DT, requires_grad=True)
    x = torch.randn(12, 4, dtype=DT)
    loss = gcn_propagate(theta, cand, x @ W, 12).pow(2).sum()
    torch.autograd.grad(loss, W, retain_graph=True)
    assert calls == []  # weights only: skipped
    torch.autograd.grad(loss, theta)
    assert calls == [1]  # θ asked for: formed once
