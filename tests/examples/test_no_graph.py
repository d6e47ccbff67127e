"""The no-graph benchmark's summary (LDS Table 9.2): the refitted variant is paired with its own fit (issue 26)."""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))

import no_graph as ng  # noqa: E402
from runner import Store, run_key, select_config  # noqa: E402


def _rec(method, seed, val, test, config, role="report", **extra):
    task = ng.make_task("wine", method, config, seed, role, False)
    return {"key": run_key(task), "task": task, "status": "ok", "val_acc": val, "test_acc": test, "wall_s": 1.0,
            **extra}


def test_refit_reuses_knn_lds_selection_and_is_paired_with_its_own_algorithm_7_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(ng, "_plot", lambda *a: None)
    cfg1 = ng.LDS_GRID[1]  # chosen: the best validation accuracy of kNN-LDS's selection runs
    recs = [_rec("knn_lds", ng.SELECTION_SEED, 0.9 if c == cfg1 else 0.7, 0.0, c, "selection") for c in ng.LDS_GRID]
    gcn_cfg = ng.KNN_GCN_GRID[0]
    for s in range(3):
        recs.append(_rec("knn_lds", s, 0.8, 0.90, cfg1, fit_s=10.0))
        recs.append(_rec("knn_gcn", s, 0.8, 0.80, gcn_cfg))
        recs.append(_rec("knn_gcn_val", s, 0.8, 0.92, gcn_cfg))
        # refit 93/94/95 against the same fit's Algorithm 7 weights (91) and knn_gcn_val (92)
        recs.append(_rec("knn_lds_refit", s, 0.85, 0.93 + 0.01 * s, cfg1, test_acc_paper=0.91, fit_s=10.0))
        # select's θ₀ arm: it validates higher than the refit on seed 0 only (0.9 > 0.85), so it is chosen there
        recs.append(_rec("knn_lds_select_arm", s, 0.9 if s == 0 else 0.8, 0.88 if s == 0 else 0.90, cfg1))
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    store = Store(str(path))
    chosen, _ = select_config(store, lambda c, s: ng.make_task("wine", "knn_lds", c, s, "selection", False),
                              ng.grid("knn_lds_refit"), [ng.SELECTION_SEED])
    assert chosen == cfg1
    ng.write_summary(store, argparse.Namespace(quick=False), str(tmp_path))
    text = (tmp_path / "results.md").read_text()
    # refit − same fit, refit − knn_gcn_val; select: 88 (θ₀ arm), 94, 95 (refit) against the same fit (91),
    # the θ₀ arm (88, 90, 90) and knn_gcn_val (92)
    # (the paired differences with their 95 % Student-t intervals, mean ± 2.484 s over 3 seeds)
    assert ("| wine | 3 | 3.0 ± 1.0 [0.5, 5.5] | 2.0 ± 1.0 [-0.5, 4.5] | 3 of 3 | 3 | 92.3 ± 3.8 | "
            "1.3 ± 3.8 [-8.1, 10.7] | 3.0 ± 2.6 [-3.6, 9.6] | 0.3 ± 3.8 [-9.1, 9.7] | 2 of 3 |") in text
    assert "| wine | 3 | 10.0 ± 0.0 | -2.0 ± 0.0 | 0 of 3 |" in text  # kNN-LDS − kNN-GCN, − knn_gcn_val
    # the refit row counts kNN-LDS's selection runs, whose choice it reuses
    assert f"| wine | knn_lds_refit | {cfg1} | {len(ng.LDS_GRID)} | 3 |" in text
    assert f"| wine | knn_lds_select_arm | {cfg1} | {len(ng.LDS_GRID)} | 3 |" in text
    # wall time: 31 runs held, 22 of them LDS fits (16 selection, 3 kNN-LDS, 3 refit; the θ₀ arm is a GCN fit)
    assert "| wine | 31 | 22 | " in text
