"""LDS at scale: the one-search candidate set equals its reference, and a sparse fit stays linear in memory."""

import pytest
import torch
from lds.datasets import knn_graph, planted_partition
from torch.profiler import ProfilerActivity, profile

from lds import LDS
from lds.propagation import pairs_from_edge_index


@pytest.mark.parametrize("has_graph", [True, False])
def test_one_knn_search_gives_the_reference_candidate_set(has_graph):
    """LDS searches once for max(k, candidate_k) neighbours and slices; the candidate set and the initial θ must
    equal those built from separate knn_graph(k) and knn_graph(candidate_k) calls."""
    data = planted_partition(300, num_classes=3, num_features=8, num_val=60, seed=2)
    if not has_graph:
        data.edge_index = None
    model = LDS(candidates="sparse", k=4, candidate_k=9, init_graph="given", verbose=False)
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


def test_rng_device_is_the_same_fit_on_the_cpu_and_checked():
    """rng_device="device" draws on a generator of the model's device: on the CPU that is the CPU generator, so the
    fit is identical; a bad value is a clear error."""
    data = planted_partition(120, num_classes=3, num_features=8, num_val=30, seed=1)
    settings = dict(candidates="sparse", max_outer_iters=2, max_inner_steps=20, num_samples=2, verbose=False)
    a = LDS(**settings).fit(data)
    b = LDS(rng_device="device", **settings).fit(data)
    assert torch.equal(a.distribution_.probs, b.distribution_.probs)
    assert torch.equal(a.predict_proba(data), b.predict_proba(data))
    with pytest.raises(ValueError, match="rng_device must be 'cpu' or 'device'"):
        LDS(rng_device="gpu").fit(data)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rng_device_on_cuda_draws_there_and_resumes(tmp_path):
    data = planted_partition(400, num_classes=4, num_features=8, num_val=60, seed=1)
    settings = dict(candidates="sparse", max_outer_iters=3, max_inner_steps=20, num_samples=2, verbose=False,
                    device="cuda", rng_device="device", checkpoint_every=1)
    full = LDS(**settings).fit(data)
    ck = tmp_path / "ck.pt"
    LDS(**{**settings, "max_outer_iters": 2}).fit(data, checkpoint=ck)
    resumed = LDS(**settings).fit(data, resume=ck)
    assert torch.equal(full.distribution_.probs, resumed.distribution_.probs)
    probs = full.distribution_.probs
    assert probs.is_cuda and 0.0 <= float(probs.min()) and float(probs.max()) <= 1.0
