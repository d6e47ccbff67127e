"""LDS at scale: the one-search candidate set equals its reference, and a sparse fit stays linear in memory."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from lds import LDS
from lds.datasets import knn_graph, planted_partition
from lds.propagation import pairs_from_edge_index


@pytest.mark.parametrize("has_graph", [True, False])
def test_one_knn_search_gives_the_reference_candidate_set(has_graph):
    """LDS searches once for max(k, candidate_k) neighbours and slices; the candidate set and the initial θ must
    equal those built from separate knn_graph(k) and knn_graph(candidate_k) calls."""
    data = planted_partition(300, num_classes=3, num_features=8, num_val=60, seed=2)
    if not has_graph:
        data.edge_index = None
    model = LDS(candidates="sparse", k=4, candidate_k=9, verbose=False)
    prep, _ = model._prepare(data, fingerprint=False)
    dist = model._build_distribution(prep)
    init = data.edge_index if has_graph else knn_graph(data.x, 4)
    expected = pairs_from_edge_index(torch.cat([init, knn_graph(data.x, 9)], dim=1))
    assert torch.equal(dist.pairs, expected)
    n = data.num_nodes
    init_keys = pairs_from_edge_index(init)
    on_init = torch.isin(dist.pairs[0] * n + dist.pairs[1], init_keys[0] * n + init_keys[1])
    assert torch.equal(dist.probs, on_init.to(dist.probs.dtype))


def test_a_sparse_fit_never_allocates_an_n_by_n_tensor():
    """N = 9000 with sparse candidates: no operation of setup (kNN search in blocks of at most 128 MB of scores),
    fit, evaluation or prediction allocates half of one N×N float32 matrix (162 MB); an all-pairs step would
    allocate several (N(N-1)/2 pairs, N×N propagation). Counted by the profiler's per-operation memory."""
    n = 9000
    data = planted_partition(n, noise=0.5, seed=0)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model = LDS(candidates="sparse", max_outer_iters=1, max_inner_steps=10, num_samples=2,
                    verbose=False).fit(data)
        model.predict(data)
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < largest < n * n * 4 // 2, largest
    assert model.distribution_.probs.numel() < 20 * n
