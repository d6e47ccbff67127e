"""The heterophily benchmark's pure parts (issue 25): homophily, θ analysis, selection and the summary."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))

import heterophily as het  # noqa: E402
from runner import run_key  # noqa: E402


def test_edge_homophily_counts_each_undirected_edge_once_over_labelled_ends():
    y = torch.tensor([0, 0, 1, 1, -1])
    # 0-1 same (stored both ways), 1-2 other, 2-3 same, 3-4 unlabelled end, 2-2 self-loop (ignored)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 2], [1, 0, 2, 3, 4, 2]])
    assert het.edge_homophily(edge_index, y) == pytest.approx(2 / 3)
    assert het.edge_homophily(torch.tensor([[3], [4]]), y) is None


def test_graph_analysis_weights_pairs_by_theta():
    y = torch.tensor([0, 0, 1, 1, -1])
    pairs = torch.tensor([[0, 0, 1, 2, 3], [1, 2, 3, 3, 4]])  # same, other, other, same, unlabelled
    theta = torch.tensor([0.8, 0.2, 0.4, 0.6, 1.0])
    given = torch.tensor([[1, 2, 4], [0, 0, 3]])  # pairs 0-1, 0-2 and 3-4 (any direction)
    out = het.graph_analysis(pairs, theta, y, given)
    assert out["learned_homophily"] == pytest.approx((0.8 + 0.6) / (0.8 + 0.2 + 0.4 + 0.6))
    assert out["theta_same_class"] == pytest.approx(0.7)
    assert out["theta_other_class"] == pytest.approx(0.3)
    assert out["theta_given"] == pytest.approx((0.8 + 0.2 + 1.0) / 3)
    assert out["theta_not_given"] == pytest.approx(0.5)
    assert out["given_homophily"] == pytest.approx(0.5)  # 0-1 same, 0-2 other; 3-4 has an unlabelled end
    assert (out["candidates"], out["given_candidates"]) == (5, 3)
    assert out["expected_edges"] == pytest.approx(3.0)
    none = het.graph_analysis(pairs, theta, y, None)
    assert none["given_homophily"] is None and none["theta_given"] is None
    assert none["theta_not_given"] == pytest.approx(float(theta.double().mean()))


def test_synthetic_hetero_matches_the_issue():
    data = het.synthetic_hetero(1)
    assert data.num_nodes == 600 and data.x.shape == (600, 16)
    assert data.edge_index.size(1) // 2 == 1800
    assert het.edge_homophily(data.edge_index, data.y) == pytest.approx(0.15)
    for c in range(4):
        assert int((data.train_mask & (data.y == c)).sum()) == 10
        assert int((data.val_mask & (data.y == c)).sum()) == 30
    assert not bool((data.train_mask & data.val_mask).any()) and int(data.test_mask.sum()) == 440
    assert torch.equal(het.synthetic_hetero(1).x, data.x)


def _rec(dataset, method, split, val, test, config=None, **extra):
    task = het.make_task(dataset, method, split, False, config)
    return {"key": run_key(task), "task": task, "status": "ok", "metric": "accuracy", "val_score": val,
            "test_score": test, "wall_s": 2.0, **extra}


def _fake_records():
    recs = []
    for s in range(3):
        recs += [_rec("cornell", "gcn", s, 0.50, 0.50), _rec("cornell", "mlp", s, 0.60, 0.70 + 0.01 * s),
                 _rec("cornell", "gcn_val", s, 0.55, 0.90)]
    analysis = {"given_homophily": 0.1, "learned_homophily": 0.3, "theta_same_class": 0.2, "theta_other_class": 0.1,
                "theta_given": 0.5, "theta_not_given": 0.05,
                "initial": {"learned_homophily": 0.1, "theta_same_class": 0.1, "theta_other_class": 0.3}}
    lds = {"analysis": analysis, "expected_edges": 250.0, "initial_edges": 277.0, "fit_s": 30.0}
    slow, fast = het.LDS_GRID
    # the first grid point wins on validation (0.70 against 0.65) although its test scores are worse
    for s in (0, 1):
        recs.append(_rec("cornell", "lds", s, 0.70, 0.72, slow, **lds))
        recs.append(_rec("cornell", "lds", s, 0.65, 0.99, fast, **lds))
    recs.append(_rec("cornell", "lds", 2, 0.70, 0.75, slow, **lds))
    recs.append(_rec("cornell", "lds", 2, 0.10, 0.10, fast, **lds))  # not chosen: never reported
    # knn_lds: higher test, lower validation than lds, so lds is the LDS method compared
    for s in range(3):
        for cfg in het.LDS_GRID:
            recs.append(_rec("cornell", "knn_lds", s, 0.40, 0.95, cfg, **lds))
    # a literature-only dataset, and a selection still pending on another
    recs += [_rec("chameleon", "gcn", 0, 0.5, 0.5), _rec("chameleon", "lds", 0, 0.6, 0.6, slow, **lds),
             _rec("chameleon", "lds", 1, 0.6, 0.6, slow, **lds), _rec("chameleon", "lds", 0, 0.5, 0.5, fast, **lds),
             _rec("chameleon", "lds", 1, 0.5, 0.5, fast, **lds)]
    recs += [_rec("texas", "gcn", 0, 0.5, 0.5), _rec("texas", "lds", 0, 0.9, 0.9, slow, **lds)]
    failed = _rec("texas", "lds", 1, 0.9, 0.9, slow)
    failed["status"] = "error"
    return [*recs, failed]


def test_selection_is_on_validation_and_reuses_the_selection_runs():
    groups = het.collect(_fake_records(), quick=False)
    lds = groups[("cornell", "lds")]
    assert lds["config"] == het.LDS_GRID[0]
    assert lds["means"] == pytest.approx([0.70, 0.65])
    assert {s: r["test_score"] for s, r in lds["runs"].items()} == {0: 0.72, 1: 0.72, 2: 0.75}
    assert groups[("texas", "lds")]["config"] is None and not groups[("texas", "lds")]["runs"]  # failed: pending
    assert sorted(groups[("cornell", "mlp")]["runs"]) == [0, 1, 2]


def test_summary_tables():
    text = "\n".join(het.summary_lines(_fake_records(), quick=False))
    # (a): mean ± std over the splits held, and their number
    assert "| cornell | accuracy | 71.0 ± 1.0 (3) | 50.0 ± 0.0 (3) | 90.0 ± 0.0 (3) |" in text
    assert "73.0 ± 1.7 (3)" in text  # lds on cornell: the chosen configuration's test scores
    # (b): the best LDS (lds, by validation; not knn_lds, better on test) against mlp (best of the three on
    # validation; not gcn_val, better on test): 72 − 70, 72 − 71, 75 − 72 points
    assert "| cornell | lds | mlp | 3 | 2.0 ± 1.0 | 3 of 3 | yes |" in text
    assert "on 1 of 1 real datasets" in text  # chameleon is literature only, texas has no reported LDS run
    lit = text.index("Literature only")
    assert text.index("| chameleon | accuracy |") > lit > text.index("| cornell | accuracy |")
    # (c): initial → learned
    assert "| cornell | lds | 0.100 | 0.100 → 0.300 | 0.100 → 0.200 | 0.300 → 0.100 | – → 0.500 | – → 0.050 | " \
           "277 → 250 |" in text
    # (d) and the selection table
    assert "| dataset | mlp | gcn | gcn_val | lds | knn_lds | total, every run held (h, one thread) |" in text
    assert "| cornell | 2.0 | 2.0 | 2.0 | 30.0 | 30.0 | 0.10 |" in text  # LDS: fit_s (30 s) > wall_s; 378 s in all
    assert f"| cornell | lds | 70.0 | 65.0 | {het.LDS_GRID[0]} |" in text
    assert "| texas | lds | – | – | pending |" in text  # split 1 failed: no choice yet


def test_linear_first_graphconv_equals_pyg_graphconv():
    from torch_geometric.nn import GraphConv

    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 6, 5], [1, 0, 2, 1, 4, 3, 5, 6]])
    weight = torch.rand(8, generator=g, dtype=torch.float64)
    ref = GraphConv(5, 3, aggr="add").double()
    ours = het.LinearFirstGraphConv(5, 3).double()
    with torch.no_grad():
        ours.lin_rel.weight.copy_(ref.lin_rel.weight)
        ours.lin_root.weight.copy_(ref.lin_root.weight)
        ours.lin_root.bias.copy_(ref.lin_rel.bias)
    torch.testing.assert_close(ours(x, edge_index, weight), ref(x, edge_index, weight))
    # the same parameter shapes and names under conv1.* (first-layer weight decay: both weights, not the bias)
    assert sorted(n for n, _ in ours.named_parameters()) == ["lin_rel.weight", "lin_root.bias", "lin_root.weight"]


def test_a_method_still_missing_splits_is_not_the_best_lds():
    """lds_auto holds only its 2 selection splits, with the best validation score: (b) waits for it and compares
    lds, which holds all 3."""
    recs = _fake_records()
    for s in (0, 1):
        for cfg in het.LDS_GRID:
            recs.append(_rec("cornell", "lds_auto", s, 0.99, 0.10, cfg))
    text = "\n".join(het.summary_lines(recs, quick=False))
    assert "| cornell | lds | mlp | 3 | 2.0 ± 1.0 | 3 of 3 | yes |" in text


def test_lds_default_has_no_grid():
    assert het.grid_of("lds_default") == [{}]
    assert het.grid_of("lds_auto") == het.LDS_GRID
    groups = het.collect([_rec("cornell", "lds_default", s, 0.5, 0.6, {}) for s in (0, 1, 2)], quick=False)
    g = groups[("cornell", "lds_default")]
    assert g["config"] == {} and sorted(g["runs"]) == [0, 1, 2]


def test_auto_methods_are_paired_against_every_baseline():
    """(b2): lds_default's test score minus each baseline's, paired over the splits both hold."""
    recs = _fake_records() + [_rec("cornell", "lds_default", s, 0.5, 0.75, {}) for s in (0, 1, 2)]
    text = "\n".join(het.summary_lines(recs, quick=False))
    # − gcn_val: 75 − 90 on every split; − mlp: 75 − 70, 75 − 71, 75 − 72; − gcn: 75 − 50; no knn_gcn column
    assert "| dataset | method | − gcn_val | − mlp | − gcn |" in text
    assert "| cornell | lds_default | -15.0 ± 0.0 (0 of 3 ahead) | 4.0 ± 1.0 (3 of 3 ahead) | " \
           "25.0 ± 0.0 (3 of 3 ahead) |" in text


def test_refit_runs_are_paired_with_their_own_algorithm_7_weights_and_the_control():
    """(b3): a refit record holds the same fit's Algorithm 7 score; the variant is paired against it and gcn_val."""
    recs = _fake_records()
    for s in range(3):
        for cfg, val in zip(het.LDS_GRID, (0.8, 0.7)):  # the first grid point is chosen on validation
            task = het.make_task("cornell", "lds_auto", s, False, cfg, "refit")
            recs.append({"key": run_key(task), "task": task, "status": "ok", "metric": "accuracy", "val_score": val,
                         "test_score": 0.80 + 0.01 * s, "wall_s": 2.0,
                         "paper": {"val_score": 0.6, "test_score": 0.85}})
    text = "\n".join(het.summary_lines(recs, quick=False))
    # refit 80/81/82 against Algorithm 7's 85 and gcn_val's 90 on every split
    # each difference with its 95 % Student-t interval (mean ± 2.484 s over 3 splits)
    assert "| cornell | lds_auto [refit] | 3 | 81.0 ± 1.0 | 85.0 ± 0.0 | 90.0 ± 0.0 (3) | " \
           "-4.0 ± 1.0 [-6.5, -1.5] (0 of 3 ahead) | -9.0 ± 1.0 [-11.5, -6.5] (0 of 3 ahead) | " \
           "-5.0 ± 0.0 [-5.0, -5.0] (0 of 3 ahead) |" in text
    # paper-variant runs have no row there
    assert "| cornell | lds | 3 |" not in text.split("## (b3)")[1].split("## (c)")[0]
