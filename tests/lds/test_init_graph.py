"""LDS(init_graph=...): the initial graph θ₀, and the "auto" check that starts from kNN(k) or the empty graph where
the given graph hurts (issue 25)."""

from __future__ import annotations

import pytest
import torch
from lds.datasets import planted_partition
from lds.datasets.graphs import knn_graph

from lds import LDS
from lds.edges import pairs_from_edge_index

FAST = {"max_outer_iters": 2, "max_inner_steps": 20, "num_samples": 2, "verbose": False}


def graph(noise: float, seed: int = 0):
    """200 nodes, 4 classes, informative features; ``noise`` = share of the given edges joining two classes."""
    return planted_partition(200, num_classes=4, num_features=16, avg_degree=6.0, noise=noise,
                             num_train_per_class=5, num_val=60, seed=seed)


def pair_set(pairs: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, pairs.t().tolist()))


@pytest.mark.parametrize("candidates", ["all", "sparse"])
def test_auto_keeps_a_helpful_graph_and_fits_exactly_as_given(candidates):
    """Homophilous given graph: the check prefers it by a wide margin, and the fit is bit-identical to
    init_graph="given" (the check draws from its own stream, not the fit's, and runs before the kNN search, so
    that the sparse candidate set is the same search's)."""
    data = graph(noise=0.1)
    data.x = (data.x > 0).float()  # binary features: many tied cosine similarities
    auto = LDS(**FAST, seed=3, candidates=candidates).fit(data)
    given = LDS(**FAST, seed=3, candidates=candidates, init_graph="given").fit(data)
    assert torch.equal(auto.distribution_.pairs, given.distribution_.pairs)
    assert auto.init_graph_ == "given" and given.init_graph_ == "given"
    assert auto.init_check_["given"] < auto.init_check_["none"] - 2 * auto.init_check_["stderr"]
    assert given.init_check_ == {}
    assert torch.equal(auto.distribution_.probs, given.distribution_.probs)
    for a, b in zip(auto.params_, given.params_):
        assert torch.equal(a, b)


def test_auto_starts_from_knn_where_the_given_graph_hurts():
    """85 % of the given edges join two classes: the network does better without them, so θ₀ is kNN(k): 1 exactly
    on kNN(k), the given edges stay candidates at init_prob, and θ₀ on them is 0."""
    data = graph(noise=0.9)
    model = LDS(**FAST, seed=0, k=5)
    dist = model.initial_distribution(data)
    assert model.init_graph_ == "knn"
    check = model.init_check_
    assert check["none"] < check["given"]
    assert check["difference"] + 2 * check["stderr"] < 0
    # kNN(k) was then measured too, and beat the empty graph (features are informative, kNN(5) homophilous)
    assert check["knn"] < check["none"] and check["difference_knn"] == pytest.approx(check["none"] - check["knn"])
    assert dist.is_all_pairs
    ones = pair_set(dist.pairs[:, dist.probs == 1])
    assert ones == pair_set(pairs_from_edge_index(knn_graph(data.x, 5)))
    given = pair_set(pairs_from_edge_index(data.edge_index))
    theta = dict(zip(map(tuple, dist.pairs.t().tolist()), dist.probs.tolist()))
    assert all(theta[p] == (1.0 if p in ones else 0.0) for p in given)


def test_knn_init_on_sparse_candidates_keeps_the_given_edges():
    """Sparse candidates with θ₀ = kNN(k): given ∪ kNN(2k), θ₀ = 1 on kNN(k) only."""
    data = graph(noise=0.9, seed=1)
    model = LDS(**FAST, candidates="sparse", k=4, init_graph="knn")
    dist = model.initial_distribution(data)
    expected = pair_set(pairs_from_edge_index(torch.cat([data.edge_index, knn_graph(data.x, 8)], dim=1)))
    assert pair_set(dist.pairs) == expected
    assert pair_set(dist.pairs[:, dist.probs == 1]) == pair_set(pairs_from_edge_index(knn_graph(data.x, 4)))
    assert model.init_check_ == {}


@pytest.mark.parametrize("candidates", ["all", "sparse"])
def test_empty_init_starts_as_an_mlp_and_learns_edges(candidates):
    """init_graph="none": θ₀ = init_prob (0) on every candidate, the candidates those of "knn" (sparse: given ∪
    kNN(2k)); the first sampled graphs are empty, and the hypergradient (straight-through, eq. 9.6, reaching θ = 0)
    raises θ on some candidates."""
    data = graph(noise=0.9, seed=1)
    settings = {**FAST, "k": 4, "candidates": candidates, "outer_optimizer": "adam", "outer_lr": 0.05}
    model = LDS(**settings, init_graph="none")
    dist = model.initial_distribution(data)
    assert torch.equal(dist.pairs, LDS(**settings, init_graph="knn").initial_distribution(data).pairs)
    assert model.init_graph_ == "none" and model.init_check_ == {}
    assert float(dist.probs.abs().max()) == 0.0
    fitted = LDS(**settings, init_graph="none", seed=0).fit(data)
    assert fitted.init_graph_ == "none"
    assert float(fitted.distribution_.probs.max()) > 0.0


def test_empty_init_with_k0_keeps_the_given_edges_as_candidates():
    data = graph(noise=0.9, seed=1)
    model = LDS(**FAST, k=0, candidates="sparse", init_graph="none")
    dist = model.initial_distribution(data)
    assert pair_set(dist.pairs) == pair_set(pairs_from_edge_index(data.edge_index))
    assert float(dist.probs.max()) == 0.0


def test_check_reads_no_test_label():
    """The choice and its scores depend on the training and outer-validation labels only."""
    data = graph(noise=0.9, seed=2)
    shuffled = data.clone()
    test = shuffled.test_mask
    shuffled.y = shuffled.y.clone()
    shuffled.y[test] = shuffled.y[test][torch.randperm(int(test.sum()), generator=torch.Generator().manual_seed(0))]
    scores = []
    for d in (data, shuffled):
        model = LDS(**FAST, seed=5)
        model.initial_distribution(d)
        scores.append(model.init_check_)
    assert scores[0] == scores[1]


def test_no_graph_starts_from_knn_without_a_check():
    data = graph(noise=0.1)
    data.edge_index = None
    model = LDS(**FAST).fit(data)
    assert model.init_graph_ == "knn" and model.init_check_ == {}


def test_save_and_load_keep_the_choice(tmp_path):
    data = graph(noise=0.9)
    model = LDS(**FAST).fit(data)
    path = tmp_path / "m.pt"
    model.save(path)
    loaded = LDS.load(path)
    assert loaded.init_graph_ == model.init_graph_ == "knn"
    assert loaded.init_check_ == model.init_check_
    # a file of a version before init_graph: it started from the given graph
    state = torch.load(path, weights_only=True)
    del state["init_graph"], state["init_check"]
    torch.save(state, path)
    assert LDS.load(path).init_graph_ == "given"
    state["init_graph"] = "kNN"
    torch.save(state, path)
    with pytest.raises(ValueError, match="not a valid saved LDS model: 'init_graph' must be 'given', 'knn' or 'none'"):
        LDS.load(path)


@pytest.mark.parametrize("settings, message", [
    ({"init_graph": "knnn"}, "init_graph must be one of"),
    ({"init_graph": "knn", "k": 0}, "init_graph='knn' starts from the kNN"),
])
def test_bad_init_graph(settings, message):
    with pytest.raises(ValueError, match=message):
        LDS(**FAST, **settings).fit(graph(noise=0.5))


def test_choose_init_is_a_paired_test():
    """The given graph is replaced only when the network without a graph has a per-node outer loss lower than on
    the given graph by more than 2 standard errors of the paired difference."""
    given = torch.linspace(0.5, 1.5, 100, dtype=torch.float64)
    noise = torch.tensor([0.3, -0.3], dtype=torch.float64).repeat(50)  # standard error 0.3 / 10 = 0.03
    choice, scores = LDS._choose_init({"given": given, "none": given - 0.05 + noise})
    assert choice == "given"  # lower on average by 0.05 < 2 × 0.0302
    assert scores["difference"] == pytest.approx(-0.05)
    assert scores["stderr"] == pytest.approx(0.3 * (100 / 99) ** 0.5 / 10)
    assert scores["none"] < scores["given"]
    choice, _ = LDS._choose_init({"given": given, "none": given - 0.07 + noise})
    assert choice == "knn"  # 0.07 > 2 × 0.0302
    assert LDS._choose_init({"given": given[:1], "none": given[:1] - 1})[0] == "given"  # one node: no evidence


def test_choose_init_replaces_a_graph_that_hurts_by_the_lower_outer_loss():
    """Given graph rejected: kNN(k) or the empty graph, whichever has the lower mean outer loss (kNN(k) on a tie);
    without kNN(k)'s losses the first step's answer, "knn". A kept given graph stays kept whatever kNN(k) does."""
    given = torch.full((50,), 1.0, dtype=torch.float64)
    none = torch.linspace(0.4, 0.6, 50, dtype=torch.float64)  # far below the given graph's loss
    assert LDS._choose_init({"given": given, "none": none})[0] == "knn"
    choice, scores = LDS._choose_init({"given": given, "none": none, "knn": none - 0.01})
    assert choice == "knn" and scores["difference_knn"] == pytest.approx(0.01)
    assert scores["knn"] == pytest.approx(0.49)
    choice, scores = LDS._choose_init({"given": given, "none": none, "knn": none + 0.01})
    assert choice == "none" and scores["difference_knn"] == pytest.approx(-0.01)
    assert LDS._choose_init({"given": given, "none": none, "knn": none.clone()})[0] == "knn"
    assert LDS._choose_init({"given": none, "none": given, "knn": none - 0.3})[0] == "given"


def test_save_and_load_an_empty_init(tmp_path):
    model = LDS(**FAST, init_graph="none", k=4).fit(graph(noise=0.9))
    path = tmp_path / "m.pt"
    model.save(path)
    assert LDS.load(path).init_graph_ == "none"


def test_resume_starts_from_the_recorded_choice_without_the_check(tmp_path, monkeypatch):
    """The checkpoint records init_graph_ and init_check_; resume rebuilds θ₀ from them (the check is not run
    again) and ends exactly where the uninterrupted fit ends."""
    data = graph(noise=0.9)
    settings = {**FAST, "max_outer_iters": 3, "checkpoint_every": 1, "seed": 0}
    full = LDS(**settings).fit(data)
    assert full.init_graph_ in ("knn", "none")
    ck = tmp_path / "ck.pt"
    LDS(**{**settings, "max_outer_iters": 2}).fit(data, checkpoint=ck)
    state = torch.load(ck, weights_only=True)
    assert state["init_graph"] == full.init_graph_ and state["init_check"] == full.init_check_

    def no_check(*args, **kwargs):
        raise AssertionError("the check ran again on resume")

    monkeypatch.setattr(LDS, "_init_check", no_check)
    resumed = LDS(**settings).fit(data, resume=ck)
    assert resumed.init_graph_ == full.init_graph_ and resumed.init_check_ == full.init_check_
    assert torch.equal(resumed.distribution_.probs, full.distribution_.probs)
    state["init_graph"] = "kNN"
    torch.save(state, ck)
    with pytest.raises(ValueError, match="'init_graph' must be 'given', 'knn' or 'none'"):
        LDS(**settings).fit(data, resume=ck)


def test_auto_that_replaces_the_graph_fits_exactly_as_its_choice():
    """The check's trainings draw from their own stream: a fit whose check chose kNN(k) (or the empty graph) is
    bit-identical to one given that choice."""
    data = graph(noise=0.9)
    auto = LDS(**FAST, seed=0, candidates="sparse", k=5).fit(data)
    assert auto.init_graph_ in ("knn", "none")
    pinned = LDS(**FAST, seed=0, candidates="sparse", k=5, init_graph=auto.init_graph_).fit(data)
    assert torch.equal(auto.distribution_.pairs, pinned.distribution_.pairs)
    assert torch.equal(auto.distribution_.probs, pinned.distribution_.probs)
    for a, b in zip(auto.params_, pinned.params_):
        assert torch.equal(a, b)


def test_initial_distribution_is_the_theta0_a_fit_starts_from():
    """``initial_distribution`` builds θ₀ as ``fit`` does (the "auto" check included): the same choice, check
    scores and Σθ₀; ``init_graph=`` rebuilds a recorded choice without the check, leaving the record alone."""
    data = graph(noise=0.9, seed=3)
    fitted = LDS(**FAST, seed=2, k=5).fit(data)
    model = LDS(**FAST, seed=2, k=5)
    dist = model.initial_distribution(data)
    assert (model.init_graph_, model.init_check_) == (fitted.init_graph_, fitted.init_check_)
    assert dist.expected_num_edges() == fitted.initial_num_edges_
    assert torch.equal(dist.pairs, fitted.distribution_.pairs)
    fresh = LDS(**FAST, seed=2, k=5)
    rebuilt = fresh.initial_distribution(data, init_graph=fitted.init_graph_)
    assert torch.equal(rebuilt.probs, dist.probs) and not hasattr(fresh, "init_graph_")
    with pytest.raises(ValueError, match="init_graph must be None or one of"):
        fresh.initial_distribution(data, init_graph="kNN")
