"""LDS: the window hypergradient, structure recovery, persistence and bad input."""

import pytest
import torch
import torch.nn.functional as F

from bilevel_core import Adam, bernoulli_sample, hypergradient
from lds import LDS, EdgeDistribution, GCNBaseline
from lds.gcn import gcn_forward, gcn_l2_penalty, init_gcn_params, sample_dropout_masks
from lds.model import INNER_LR_RANGE, PreparedData, lds_objectives, split_validation
from lds.propagation import all_pairs, pairs_from_edge_index

from .synthetic import planted_partition

DT = torch.float64


def _small_problem(seed=0):
    data = planted_partition(num_classes=3, per_class=5, num_features=4, seed=seed)
    n = data.num_nodes
    val_outer, val_stop = split_validation(data.val_mask, 0)
    prep = PreparedData(x=data.x.to(DT), y=data.y, num_classes=3,
                        train_idx=torch.nonzero(data.train_mask, as_tuple=True)[0], val_outer_idx=val_outer,
                        val_stop_idx=val_stop, edge_index=data.edge_index, num_nodes=n)
    pairs = all_pairs(n)
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(pairs.size(1), generator=g, dtype=DT)
    theta[theta < 0.3] = 0.0  # some pairs have θ = 0: they are never drawn but still get gradient
    return prep, EdgeDistribution(pairs, n, theta, is_all_pairs=True), g


def test_window_hypergradient_equals_surrogate_finite_difference():
    """Issue check: ∂f/∂θ_ij over one window = d/dδ f with A_t = b_t + δ(e_ij + e_ji) at δ = 0."""
    prep, dist, g = _small_problem()
    inner, make_outer = lds_objectives(prep, dist, dropout=0.5)
    hidden = 16
    a, b = INNER_LR_RANGE
    lr_logit = torch.tensor(0.3, dtype=DT)

    def lr(h):
        return a + torch.sigmoid(h[1]) * (b - a)

    dyn = Adam(inner, lr=lr)
    params = init_gcn_params(prep.x.size(1), hidden, 3, generator=g, dtype=DT, device="cpu")
    fixed = [(dist.uniforms(g), sample_dropout_masks(prep.x, (prep.num_nodes, hidden), 0.5, g, DT, "cpu"))
             for _ in range(7)]
    u_out = dist.uniforms(g)
    hp = (dist.probs, lr_logit)
    # 3 steps before the window (their dependence on θ is truncated), then a window of τ = 4
    _, s = hypergradient(params, hp, dyn, make_outer(u_out), 3, batches=lambda t: fixed[t], return_state=True)
    tau = 4
    (g_theta, g_lr) = hypergradient(s, hp, dyn, make_outer(u_out), tau, batches=lambda t: fixed[t])

    samples = [bernoulli_sample(dist.probs, uniforms=u) for u, _ in fixed]
    out_sample = bernoulli_sample(dist.probs, uniforms=u_out)

    def f(pair: int, delta: float) -> float:
        e = torch.zeros_like(dist.probs)
        e[pair] = delta
        state = s
        for t in range(3, 3 + tau):
            masks = fixed[t][1]

            def perturbed(w, h, batch=None, _t=t, _m=masks):
                logits = gcn_forward(w, prep.x, (samples[_t] + e, dist.pairs), dropout_masks=_m, training=True)
                return F.cross_entropy(logits[prep.train_idx], prep.y[prep.train_idx]) + gcn_l2_penalty(w, 5e-4)

            state = Adam(perturbed, lr=lr)(state, hp, create_graph=False)
        logits = gcn_forward(state.params, prep.x, (out_sample + e, dist.pairs), training=False)
        return float(F.cross_entropy(logits[prep.val_outer_idx], prep.y[prep.val_outer_idx]))

    zero_theta = int(torch.nonzero(dist.probs == 0)[0])
    sampled_one = int(torch.nonzero(samples[4] == 1)[0])
    sampled_zero = int(torch.nonzero((samples[4] == 0) & (dist.probs > 0))[0])
    h = 1e-6
    for pair in (zero_theta, sampled_one, sampled_zero):
        fd = (f(pair, h) - f(pair, -h)) / (2 * h)
        assert abs(float(g_theta[pair]) - fd) <= 1e-6 * max(1.0, abs(fd)), (pair, float(g_theta[pair]), fd)
    assert float(g_theta.abs().max()) > 0 and float(g_lr.abs()) > 0


def test_structure_recovery_on_planted_partition():
    """Most intra-class edges removed: LDS puts more probability on the missing intra-class pairs
    than on inter-class pairs, and beats GCN on the damaged graph (mean over two seeds)."""
    lds_acc, gcn_acc = [], []
    for seed in (0, 1):
        data = planted_partition(per_class=40, num_train=5, num_val=12, seed=seed)
        model = LDS(hypergrad_every=5, outer_lr=1.0, max_outer_iters=40, patience=10, num_samples=8, seed=seed,
                    verbose=False).fit(data)
        pairs, theta = model.distribution_.pairs, model.distribution_.probs
        n = data.num_nodes
        given = pairs_from_edge_index(data.edge_index)
        new = ~torch.isin(pairs[0] * n + pairs[1], given[0] * n + given[1])
        same = data.y[pairs[0]] == data.y[pairs[1]]
        intra, inter = float(theta[same & new].mean()), float(theta[~same & new].mean())
        assert intra > 1.8 * inter, (seed, intra, inter)
        lds_acc.append(model.score(data, data.test_mask))
        gcn_acc.append(GCNBaseline(graph="given", seed=seed).fit(data).score(data, data.test_mask))
    assert sum(lds_acc) > sum(gcn_acc), (lds_acc, gcn_acc)


def test_same_seed_identical_and_resume_reproduces(tmp_path):
    data = planted_partition(per_class=10, seed=3)
    settings = dict(hypergrad_every=5, max_outer_iters=6, patience=50, num_samples=4, max_inner_steps=40,
                    checkpoint_every=2, seed=5, verbose=False)
    full = LDS(**settings).fit(data)
    again = LDS(**settings).fit(data)
    assert torch.equal(full.distribution_.probs, again.distribution_.probs)
    assert [h["val_acc"] for h in full.history_] == [h["val_acc"] for h in again.history_]
    ck = tmp_path / "ck.pt"
    first = LDS(**{**settings, "max_outer_iters": 4}).fit(data, checkpoint=ck)
    resumed = LDS(**settings).fit(data, resume=ck)
    assert len(resumed.history_) == len(full.history_)
    # times add up across the resume: the clock continues from the checkpoint's elapsed time
    assert torch.load(ck, weights_only=False)["elapsed"] == pytest.approx(first.history_[-1]["time"], abs=0.5)
    times = [h["time"] for h in resumed.history_]
    assert times == sorted(times) and resumed.fit_time_ >= times[3] >= first.history_[3]["time"]
    assert torch.equal(resumed.distribution_.probs, full.distribution_.probs)
    for p, q in zip(resumed.params_, full.params_):
        assert torch.equal(p, q)
    assert [h["val_acc"] for h in resumed.history_] == [h["val_acc"] for h in full.history_]
    with pytest.raises(ValueError, match="different settings"):
        LDS(**{**settings, "outer_lr": 0.1}).fit(data, resume=ck)


def test_save_load_predict(tmp_path):
    """Catches a save/load that changes predictions, a predict that is not the argmax of predict_proba, a score
    that is not the accuracy of predict, and a fit that keeps untrained weights (chance is 1/3)."""
    data = planted_partition(per_class=20, seed=4)
    model = LDS(max_outer_iters=3, max_inner_steps=30, num_samples=4, verbose=False).fit(data)
    path = tmp_path / "model.pt"
    model.save(path)
    loaded = LDS.load(path)
    assert torch.equal(model.predict_proba(data), loaded.predict_proba(data))
    proba = model.predict_proba(data)
    assert proba.shape == (data.num_nodes, 3)
    assert torch.allclose(proba.sum(1), torch.ones(data.num_nodes))
    pred = model.predict(data)
    assert torch.equal(pred, proba.argmax(1))
    unseen = ~data.train_mask  # 51 nodes: untrained GCN weights score about 0.4 here, the fitted model 0.86
    for mask in (data.test_mask, unseen):
        assert model.score(data, mask) == float((pred[mask] == data.y[mask]).double().mean())
        assert loaded.score(data, mask) == model.score(data, mask)
    assert model.score(data) == model.score(data, data.test_mask)  # the default mask
    assert model.score(data, unseen) > 0.6
    edge_index, probs = model.edge_probs()
    assert edge_index.size(1) == probs.numel() and float(probs.min()) > 0 and float(probs.max()) <= 1
    nxg = model.distribution_.to_networkx()
    assert nxg.number_of_edges() * 2 == edge_index.size(1)


def test_sklearn_contract():
    from sklearn.base import clone

    model = LDS(hypergrad_every=20, outer_lr=0.1, k=20)
    assert clone(model).get_params() == model.get_params()
    assert model.set_params(outer_lr=1.0).outer_lr == 1.0


def test_unlabelled_nodes_may_be_minus_one():
    """Labels outside every mask are never read: -1 there is accepted and the fit equals the one on the true
    labels. Catches label checks over all nodes and any use of labels outside the train/val masks."""
    data = planted_partition(per_class=12, seed=2)
    data.test_mask = torch.zeros_like(data.test_mask)
    unlabelled = data.clone()
    unlabelled.y = data.y.clone()
    outside = ~(data.train_mask | data.val_mask)
    assert int(outside.sum()) == 9  # 3 per class
    unlabelled.y[outside] = -1
    settings = dict(max_outer_iters=1, max_inner_steps=10, num_samples=2, verbose=False)
    model = LDS(**settings).fit(unlabelled)
    reference = LDS(**settings).fit(data)
    assert model.num_classes_ == 3
    assert torch.equal(model.distribution_.probs, reference.distribution_.probs)
    for p, q in zip(model.params_, reference.params_):
        assert torch.equal(p, q)
    assert model.history_[0]["val_acc"] == reference.history_[0]["val_acc"]


def test_bad_input_errors():
    data = planted_partition(per_class=6, seed=0)
    quick = dict(max_outer_iters=1, max_inner_steps=5, verbose=False)
    bad = data.clone()
    bad.train_mask = torch.zeros_like(bad.train_mask)
    with pytest.raises(ValueError, match="train_mask selects no nodes"):
        LDS(**quick).fit(bad)
    bad = data.clone()
    bad.y = bad.y.clone()
    bad.y[bad.train_mask.nonzero()[0]] = -3
    with pytest.raises(ValueError, match="labels out of range"):
        LDS(**quick).fit(bad)
    bad = data.clone()
    bad.val_mask = bad.val_mask | bad.train_mask
    with pytest.raises(ValueError, match="overlap"):
        LDS(**quick).fit(bad)
    bad = data.clone()
    bad.x = bad.x.clone()
    bad.x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        LDS(**quick).fit(bad)
    bad = data.clone()
    bad.edge_index = bad.edge_index.clone()
    bad.edge_index[0, 0] = 10_000
    with pytest.raises(ValueError, match="out of range"):
        LDS(**quick).fit(bad)
    with pytest.raises(ValueError, match="candidate set is empty"):
        EdgeDistribution.from_candidates(10, candidates="sparse", init_edge_index=None)
    with pytest.raises(ValueError, match="hypergrad_every"):
        LDS(hypergrad_every=0, **quick).fit(data)
    with pytest.raises(ValueError, match="truncate=9 exceeds"):
        LDS(hypergrad_every=5, truncate=9, **quick).fit(data)
    with pytest.raises(RuntimeError, match="not fitted"):
        LDS().predict(data)


def test_edge_distribution_checks_probs_and_samples_a_full_support_like_a_partial_one():
    pairs = all_pairs(6)
    with pytest.raises(ValueError, match=r"edge probabilities in \[0, 1\], got values in \[0, 1.5\]"):
        EdgeDistribution(pairs, 6, torch.full((15,), 1.5).index_fill_(0, torch.tensor([0]), 0.0))
    dist = EdgeDistribution(pairs, 6, torch.linspace(0.05, 0.95, 15, dtype=DT))
    with pytest.raises(ValueError, match="probabilities in"):
        dist.sample(torch.Generator().manual_seed(0), probs=dist.probs * 2)
    dist.sample(torch.Generator().manual_seed(0), probs=dist.probs * 2, validate=False)  # the caller vouches
    # every θ > 0: the draw's support is all of arange(P) and the sample skips the gather; same draws, same
    # graph as with the support of a partial draw and as the dense uniforms
    draw = dist.draw(torch.Generator().manual_seed(3))
    assert torch.equal(draw.support, torch.arange(15))
    full = dist.sample(uniforms=draw)
    assert torch.equal(full, bernoulli_sample(dist.probs, uniforms=draw.dense(15)))
    assert torch.equal(full, bernoulli_sample(dist.probs, uniforms=draw.values, support=draw.support))


def test_sparse_candidates_without_a_graph_reach_beyond_the_initial_knn_graph():
    from lds.datasets import knn_graph

    data = planted_partition(per_class=10, seed=1)
    del data.edge_index
    n = data.num_nodes
    quick = dict(max_outer_iters=1, max_inner_steps=5, num_samples=2, verbose=False, candidates="sparse", k=3)

    def num_pairs(edge_index):
        return pairs_from_edge_index(edge_index).size(1)

    model = LDS(**quick).fit(data)  # default: candidates kNN(2k) ⊇ the initial kNN(k) graph
    initial = num_pairs(knn_graph(data.x, 3))
    assert model.initial_num_edges_ == initial
    assert model.distribution_.pairs.size(1) == num_pairs(torch.cat([knn_graph(data.x, 3), knn_graph(data.x, 6)], 1))
    assert model.distribution_.pairs.size(1) > initial
    wide = LDS(candidate_k=12, **quick).fit(data)
    assert wide.distribution_.pairs.size(1) > model.distribution_.pairs.size(1)
    assert wide.initial_num_edges_ == initial  # the extra candidates start at init_prob = 0
    with pytest.raises(ValueError, match=f"candidate_k={n} must be smaller than the number of nodes"):
        LDS(candidate_k=n, **quick).fit(data)
    with pytest.raises(ValueError, match="candidate_k must be an int >= 1"):
        LDS(candidate_k=0, **quick).fit(data)


def test_preprocess_features_auto_rows_sum_to_one_only_when_nonnegative():
    from lds.gcn import preprocess_features

    x = torch.tensor([[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]])
    out = preprocess_features(x, "auto")
    assert torch.allclose(out, torch.tensor([[0.25, 0.75], [0.0, 0.0], [0.5, 0.5]]))
    signed = torch.tensor([[1.0, -1.0], [0.5, 0.2]])
    assert torch.equal(preprocess_features(signed, "auto"), signed)
    assert torch.equal(preprocess_features(x, False), x)
    with pytest.raises(ValueError, match="non-negative"):
        preprocess_features(signed, True)


@pytest.mark.parametrize("backbone", ["gcnconv", "graphconv"])
def test_message_passing_backbones_on_sparse_candidates(backbone, tmp_path):
    """PyG layers through the core's nn.Module adapter: θ on the sparse candidate set gets gradient."""
    data = planted_partition(per_class=15, seed=1)
    model = LDS(backbone=backbone, candidates="sparse", k=5, max_outer_iters=2, max_inner_steps=20, num_samples=2,
                verbose=False, seed=0).fit(data)
    assert model.distribution_.is_all_pairs is False
    assert not torch.equal(model.distribution_.probs, torch.round(model.distribution_.probs))  # θ moved off 0/1
    path = tmp_path / "m.pt"
    model.save(path)
    assert torch.equal(LDS.load(path).predict_proba(data), model.predict_proba(data))
    with pytest.raises(ValueError, match="built-in GCN only"):
        LDS(backbone=backbone, candidates="all", verbose=False).fit(data)


def test_backbone_window_hypergradient_matches_builtin_gcn_path():
    """GCNConv without bias through the adapter computes the same Â as the built-in GCN path."""
    import torch_geometric.nn as pyg

    from lds.backbones import Backbone

    prep, dist, g = _small_problem(seed=2)
    bb = Backbone("gcnconv", prep.x.size(1), 4, 3, DT, "cpu")
    params = bb.init_params(g)
    values = dist.sample(g)
    from lds.model import network_logits

    out_bb = network_logits(params, prep, values, dist.pairs, backbone=bb)
    # the same weights in the built-in GCN: GCNConv computes Â (X Wᵀ)
    w1, w2 = (p.T for p in params)
    out_gcn = network_logits((w1, w2), prep, values, dist.pairs)
    assert torch.allclose(out_bb, out_gcn, atol=1e-10)
    assert isinstance(bb.net.conv1, pyg.GCNConv)


def test_all_pairs_fit_with_deferred_pair_gradients_equals_the_direct_one(monkeypatch):
    """On all pairs the fit forms the window's pair gradient once (PairGradientAccumulator); in float64 the
    learned θ equals that of a fit that lets autograd sum the per-use gradients."""
    import lds.model as model_module

    data = planted_partition(per_class=8, seed=5)
    settings = dict(candidates="all", hypergrad_every=3, max_outer_iters=2, max_inner_steps=12, num_samples=2,
                    dtype="float64", verbose=False, seed=1)
    uses = []

    class Counting(model_module.PairGradientAccumulator):
        def __exit__(self, *exc):
            uses.append(self.num_uses)
            return super().__exit__(*exc)

    monkeypatch.setattr(model_module, "PairGradientAccumulator", Counting)
    deferred = LDS(**settings).fit(data)
    assert deferred.distribution_.is_all_pairs and uses and min(uses) > 0  # the deferred path was taken
    monkeypatch.setattr(model_module, "_defer_pair_gradients", lambda *a: False)
    uses.clear()
    direct = LDS(**settings).fit(data)
    assert not uses
    torch.testing.assert_close(deferred.distribution_.probs, direct.distribution_.probs, rtol=0, atol=1e-10)
    assert bool((deferred.distribution_.probs != 0).any())


def test_fit_callback_sees_every_outer_iteration():
    data = planted_partition(per_class=6, seed=7)
    seen = []
    model = LDS(max_outer_iters=3, max_inner_steps=10, num_samples=2, verbose=False, patience=5).fit(
        data, callback=lambda it, record, dist: seen.append((it, record["val_acc"], float(dist.probs.sum()))))
    assert [s[0] for s in seen] == list(range(len(model.history_)))
    assert [s[1] for s in seen] == [h["val_acc"] for h in model.history_]
    with pytest.raises(TypeError, match="callback must be callable"):
        LDS(max_outer_iters=1, verbose=False).fit(data, callback=3)


def test_baseline_early_stopping_waits_for_min_steps():
    data = planted_partition(per_class=6, seed=2)
    eager = GCNBaseline(patience=1, min_steps=0, max_steps=60).fit(data)
    patient = GCNBaseline(patience=1, min_steps=30, max_steps=60).fit(data)
    assert eager.steps_ < 30 <= patient.steps_  # patience 1 alone stops at the first step without progress
    with pytest.raises(ValueError, match="min_steps must be an int >= 0"):
        GCNBaseline(min_steps=-1).fit(data)
    with pytest.raises(ValueError, match="lr must be > 0"):
        GCNBaseline(lr=0.0).fit(data)


def test_baseline_rbf_kernel_is_scaled_on_the_features_it_uses():
    data = planted_partition(per_class=6, seed=3)
    data.x = data.x.abs() * 10.0  # non-negative: "auto" row-normalises, so the raw features' median is wrong
    model = GCNBaseline(graph="rbf", rbf_scale=4.0, max_steps=1, min_steps=0).fit(data)
    x = data.x / data.x.sum(1, keepdim=True)
    d2 = torch.cdist(x.double(), x.double()).pow(2)
    off = ~torch.eye(x.size(0), dtype=torch.bool)
    expected = torch.exp(-4.0 / d2[off].median() * d2) * off
    torch.testing.assert_close(model.graph_.double(), expected, rtol=1e-4, atol=1e-6)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="rbf_scale must be a finite number > 0"):
            GCNBaseline(graph="rbf", rbf_scale=bad).fit(data)


def test_unusable_device_and_dtype_get_clear_errors():
    data = planted_partition(per_class=6, seed=1)
    with pytest.raises(ValueError, match="device must be e.g."):
        LDS(device="gpu0", verbose=False).fit(data)
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        GCNBaseline(dtype="float16").fit(data)
    if not torch.cuda.is_available():
        for estimator in (LDS(device="cuda", verbose=False), GCNBaseline(device="cuda")):
            with pytest.raises(ValueError, match="device='cuda' is not usable.*Use device='cpu'"):
                estimator.fit(data)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run by examples/device_check.sh on a GPU)")
def test_a_cuda_fit_matches_the_cpu_fit():
    """The graphs are drawn on the CPU generator, so in float64 a CUDA fit follows the CPU fit."""
    data = planted_partition(per_class=8, seed=4)
    settings = dict(max_outer_iters=2, max_inner_steps=15, num_samples=2, verbose=False, dtype="float64", seed=3)
    cpu = LDS(device="cpu", **settings).fit(data)
    gpu = LDS(device="cuda", **settings).fit(data)
    assert gpu.distribution_.probs.device.type == "cuda"
    torch.testing.assert_close(gpu.distribution_.probs.cpu(), cpu.distribution_.probs, rtol=1e-6, atol=1e-8)
    assert gpu.best_val_acc_ == cpu.best_val_acc_
    torch.testing.assert_close(gpu.predict_proba(data), cpu.predict_proba(data), rtol=1e-6, atol=1e-8)


def test_baseline_train_on_outer_half_learns_the_labels_only_that_half_holds():
    """The information-matched control trains on LDS's outer validation half, never on the stopping half."""
    data = planted_partition(per_class=12, num_val=8, feature_noise=0.3, seed=4)
    data.train_mask &= data.y < 2  # no class-2 training label: only the outer half can teach class 2
    val_outer, _ = split_validation(data.val_mask, 0)
    plain = GCNBaseline(seed=0, max_steps=150).fit(data)
    matched = GCNBaseline(seed=0, max_steps=150, train_on_outer_half=True).fit(data)
    assert plain.num_train_nodes_ == int(data.train_mask.sum())
    assert matched.num_train_nodes_ == int(data.train_mask.sum()) + val_outer.numel()
    assert not (plain.predict(data) == 2).any()  # never saw class 2
    class2 = data.test_mask & (data.y == 2)
    assert (matched.predict(data)[class2] == 2).float().mean() > 0.8
    with pytest.raises(TypeError, match="train_on_outer_half must be True or False"):
        GCNBaseline(train_on_outer_half="yes").fit(data)


def test_refit_variant_keeps_algorithm7_and_learns_the_labels_only_the_outer_half_holds():
    """``variant="refit"``: θ and Algorithm 7's weights are those of the paper fit with the same seed; the
    refitted weights are trained on train ∪ outer half (they learn a class only that half holds), stopped on the
    other half; the same seed gives the same refit."""
    data = planted_partition(per_class=12, num_val=8, feature_noise=0.3, seed=4)
    data.train_mask &= data.y < 2  # no class-2 training label: only the outer half can teach class 2
    settings = dict(hypergrad_every=5, max_outer_iters=3, patience=5, num_samples=4, max_inner_steps=150,
                    seed=0, verbose=False)
    paper = LDS(**settings).fit(data)
    refit = LDS(variant="refit", **settings).fit(data)
    again = LDS(variant="refit", **settings).fit(data)
    assert torch.equal(paper.distribution_.probs, refit.distribution_.probs)
    assert all(torch.equal(p, q) for p, q in zip(paper.params_, refit.paper_params_))
    assert all(torch.equal(p, q) for p, q in zip(refit.params_, again.params_))
    assert not any(torch.equal(p, q) for p, q in zip(refit.params_, refit.paper_params_))
    assert 0 < refit.refit_steps_ <= 150 and 0.0 <= refit.refit_val_acc_ <= 1.0
    assert not hasattr(paper, "refit_steps_")
    class2 = data.test_mask & (data.y == 2)
    recall = [float((m.predict(data)[class2] == 2).float().mean()) for m in (paper, refit)]
    assert recall[1] > 0.8 and recall[1] > recall[0] + 0.5, recall
    with pytest.raises(ValueError, match="variant must be one of 'paper', 'refit', 'select'"):
        LDS(variant="cross").fit(data)


def test_adam_outer_optimizer_moves_theta_and_resumes_exactly(tmp_path):
    """outer_optimizer="adam" (default step 0.01): projected Adam on θ; a fit stopped at a checkpoint and resumed
    (Adam's moments restored) equals the uninterrupted fit bit for bit."""
    data = planted_partition(per_class=10, seed=3)
    settings = dict(hypergrad_every=5, max_outer_iters=5, patience=50, num_samples=4, max_inner_steps=40,
                    checkpoint_every=2, seed=5, verbose=False, outer_optimizer="adam")
    full = LDS(**settings).fit(data)
    assert full.outer_lr_value("adam") == 0.01 and LDS().outer_lr_value("sgd") == 1.0
    assert LDS().resolved_outer_optimizer(all_pairs=True) == "sgd"
    assert LDS().resolved_outer_optimizer(all_pairs=False) == "adam"
    probs = full.distribution_.probs
    assert 0.0 <= float(probs.min()) and float(probs.max()) <= 1.0
    ck = tmp_path / "ck.pt"
    LDS(**{**settings, "max_outer_iters": 3}).fit(data, checkpoint=ck)
    saved = torch.load(ck, weights_only=True)
    assert [m.numel() for m in saved["outer_moments"]] == [probs.numel()] * 2 + [1, 1]
    resumed = LDS(**settings).fit(data, resume=ck)
    assert torch.equal(resumed.distribution_.probs, probs)
    assert [h["val_acc"] for h in resumed.history_] == [h["val_acc"] for h in full.history_]
    saved["outer_moments"] = []
    torch.save(saved, ck)
    with pytest.raises(ValueError, match="lacks the outer Adam moments"):
        LDS(**settings).fit(data, resume=ck)
    with pytest.warns(UserWarning, match=r"outer_lr=1.0 with the Adam outer step \(outer_optimizer='auto' on sparse"):
        LDS(candidates="sparse", outer_lr=1.0, max_outer_iters=1, max_inner_steps=5, verbose=False).fit(data)
    with pytest.raises(ValueError, match="outer_optimizer must be one of 'auto', 'sgd', 'adam'"):
        LDS(outer_optimizer="rmsprop").fit(data)


@pytest.mark.parametrize("refit_wins", [True, False])
def test_select_variant_keeps_the_learned_graph_only_when_its_refit_validates_higher(monkeypatch, tmp_path,
                                                                                      refit_wins):
    """``variant="select"``: the refit (as ``variant="refit"``) against GCNBaseline(train_on_outer_half=True) on
    the initial graph, by early-stopping accuracy. The refit's score is forced to either side of the control's;
    when the control wins the model predicts as it does, on the given graph, and θ* stays reachable."""
    data = planted_partition(per_class=12, num_val=8, feature_noise=0.3, seed=4)
    settings = dict(hypergrad_every=5, max_outer_iters=3, patience=5, num_samples=4, max_inner_steps=60,
                    init_graph="given", seed=0, verbose=False)
    refit = LDS(variant="refit", **settings).fit(data)
    control = GCNBaseline(train_on_outer_half=True, seed=0).fit(data)
    forced = control.best_val_acc_ + (0.01 if refit_wins else 0.0)  # a tie keeps the initial graph
    original = LDS._refit
    monkeypatch.setattr(LDS, "_refit", lambda self, prep, dist: (original(self, prep, dist)[0], forced, 7))
    model = LDS(variant="select", **settings).fit(data)
    assert model.control_val_acc_ == control.best_val_acc_
    assert torch.equal(model.learned_distribution_.probs, refit.distribution_.probs)
    if refit_wins:
        assert model.graph_choice_ == "learned" and model.distribution_ is model.learned_distribution_
        assert all(torch.equal(p, q) for p, q in zip(model.params_, refit.params_))
        torch.testing.assert_close(model.predict_proba(data), refit.predict_proba(data))
    else:
        assert model.graph_choice_ == "initial"
        torch.testing.assert_close(model.predict_proba(data), control.predict_proba(data))
        edge_index, probs = model.edge_probs()
        assert torch.equal(probs, torch.ones_like(probs))
        given = {tuple(e) for e in data.edge_index.t().tolist()}
        assert {tuple(e) for e in edge_index.t().tolist()} == given
    model.save(tmp_path / "select.pt")  # the graph and weights it predicts with
    torch.testing.assert_close(LDS.load(tmp_path / "select.pt").predict_proba(data), model.predict_proba(data))
    with pytest.raises(ValueError, match="variant='select' compares the learned graph with the built-in GCN"):
        LDS(variant="select", backbone="graphconv", candidates="sparse").fit(data)
