"""The edge-deletion benchmark's summary (LDS Figure 9.2): the refit and select rows are paired seed by seed
with LDS and the information-matched control (issue 26)."""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))

import edge_deletion as ed  # noqa: E402
from runner import REPORT_SEEDS, SELECTION_SEEDS, Store, run_key  # noqa: E402


def _rec(method, seed, val, test, config, role="report", **extra):
    task = ed.make_task("cora", 0.5, method, config, seed, role, False)
    if method.startswith("lds"):
        extra = {"expected_edges": 100.0, "initial_edges": 90.0, **extra}
    return {"key": run_key(task), "task": task, "status": "ok", "val_acc": val, "test_acc": test, "wall_s": 60.0,
            **extra}


def test_select_row_is_the_refit_or_gcn_val_by_validation_paired_with_lds_and_the_control(tmp_path, monkeypatch):
    monkeypatch.setattr(ed, "pyplot", lambda: None)
    cfg = ed.LDS_GRID[2]  # chosen: the best mean validation accuracy over the selection seeds
    recs = [_rec("lds", s, 0.9 if c == cfg else 0.7, 0.0, c, "selection") for c in ed.LDS_GRID for s in SELECTION_SEEDS]
    seeds = list(REPORT_SEEDS)[:3]
    for s in seeds:
        recs.append(_rec("lds", s, 0.80, 0.80, cfg))
        recs.append(_rec("gcn", s, 0.75, 0.78, {}))
        # the control validates at 0.82: above the refit (0.81) on seed 0 only, so select keeps it there
        recs.append(_rec("gcn_val", s, 0.82, 0.79, {}))
        recs.append(_rec("lds_refit", s, 0.81 if s == seeds[0] else 0.85, 0.83 + 0.01 * s, cfg, test_acc_paper=0.80))
    path = tmp_path / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    args = argparse.Namespace(quick=False, selection_seeds=list(SELECTION_SEEDS), seeds=list(REPORT_SEEDS))
    ed.write_summary(Store(str(path)), args, str(tmp_path))
    text = (tmp_path / "results.md").read_text()
    # refit (83, 84, 85) − its own Algorithm 7 weights (80), − gcn_val (79); select: 79 (gcn_val), 84, 85,
    # − gcn_val (0, 5, 6; refit chosen 2 of 3), − LDS (80: −1, 4, 5); select's test accuracy 82.7 ± 3.2
    # each paired difference with its 95 % Student-t interval, mean ± t(0.975, 2) · s / √3 = mean ± 2.484 s
    assert ("| cora | 50 % | 3 | 4.0 ± 1.0 [1.5, 6.5] | 5.0 ± 1.0 [2.5, 7.5] | 3 of 3 | "
            "3.7 ± 3.2 [-4.3, 11.7] (2 of 3) | 2.7 ± 3.2 [-5.3, 10.7] | 82.7 ± 3.2 |" in text)
    assert "| cora | 50 % | 3 | 2.0 ± 0.0 | 1.0 ± 0.0 | 3 of 3 |" in text  # LDS − GCN, LDS − gcn_val
    assert f"| cora | 50 % | lds_refit | {cfg} | 3 |" in text  # the refit runs lds's selected configuration
