"""``LDS(variant="select")`` on the heterophilous graphs, from the refit runs already recorded (issue 26).

The select variant runs the refit, then keeps the learned graph only where the refit's early-stopping accuracy is
strictly higher than that of its other arm: :class:`lds.GCNBaseline` with ``train_on_outer_half=True`` on the
initial graph θ₀ (the given graph, kNN(k) or none, as the fit's ``init_graph_`` says; none: an MLP on the same
labels). The refit arm is the ``--variant refit`` runs of ``results/heterophily/runs.jsonl``
(``heterophily.py --methods lds_auto --variant refit``), in the configuration chosen for the refit. This script
fits the other arm exactly as the variant does (:meth:`lds.LDS.initial_graph_control` on θ₀ rebuilt from the
record's ``init_graph``; a GCN fit of seconds) and reads off the choice. It is paired, split by split, with the
refit, with the same fit's Algorithm 7 weights, and with the issue-25 baselines ``gcn_val`` (GCN on the given
graph, the same labels) and ``mlp``.

    LDS_DATA_DIR=../shared/data python examples/select_heterophily.py          # under a minute, one core
    python examples/select_heterophily.py --summary-only

Resumable: the other arm's runs go to ``results/select_heterophily/runs.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import Store, chosen_on_validation, mean_std, paired_cells, run_and_summarise, select_arm  # noqa: E402

SOURCE = os.path.join("results", "heterophily", "runs.jsonl")


def refit_records(path: str = SOURCE) -> list[dict[str, Any]]:
    """The reported ``--variant refit`` runs scored by accuracy (the select arm needs their early-stopping
    accuracy): per dataset the configuration ``heterophily.py`` chose on the refit's validation score (the other
    arm does not depend on it), one run per split."""
    import heterophily as het

    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh if line.strip()]
    return [r for g in het.collect(recs, quick=False).values() if g["variant"] == "refit"
            for r in g["runs"].values() if r.get("metric") == "accuracy"]


def task_of(rec: dict[str, Any]) -> dict[str, Any]:
    t = rec["task"]
    return {"exp": "select_heterophily", "dataset": t["dataset"], "method": t["method"], "split": t["split"],
            "config": t["config"], "lds": t["lds"], "init_graph": rec["init_graph"]}


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """The select variant's other arm for one refit run: θ₀ rebuilt as that fit built it, the control fitted on it."""
    import heterophily as het

    from lds import LDS

    data = het.load(task["dataset"], task["split"])
    fit_data, settings = het.lds_inputs(data, task["method"], "select", {**task["config"], **task["lds"]})
    control, n_pairs = select_arm(LDS(seed=task["split"], verbose=False, **settings), fit_data, task["init_graph"])
    test = float((control.predict(fit_data)[data.test_mask] == data.y[data.test_mask]).double().mean())
    return {"val_acc": float(control.best_val_acc_), "test_acc": test, "initial_pairs": n_pairs}


def summary(store: Store, refits: list[dict[str, Any]], path: str = SOURCE) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        recs = [json.loads(line) for line in fh if line.strip()] if os.path.exists(path) else []
    base = {(r["task"]["dataset"], r["task"]["method"], r["task"]["split"]): r["test_score"] for r in recs
            if r.get("status") == "ok" and r["task"]["method"] in ("gcn_val", "mlp") and not r["task"]["quick"]}
    lines = ["# `LDS(variant=\"select\")` on the heterophilous graphs (issue 26)", "",
             "`python examples/select_heterophily.py`. The refit arm: the `--variant refit` records of "
             "`results/heterophily/runs.jsonl`; the other arm: GCNBaseline(train_on_outer_half=True) on the fit's "
             "initial graph θ₀ (an MLP when θ₀ is empty), fitted here. The learned graph is kept where the refit's "
             "early-stopping accuracy is strictly higher (a tie keeps θ₀). Test accuracy (%), mean ± std over the "
             "splits; differences paired split by split (points, mean ± std [95 % Student-t interval of "
             "the mean]).", "",
             "| dataset | method | splits | θ₀ (given / kNN / none) | refit chosen | select | θ₀ arm | "
             "select − refit | select − θ₀ arm | select − Algorithm 7 | select − gcn_val | select − mlp |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in refits:
        groups.setdefault((r["task"]["dataset"], r["task"]["method"]), []).append(r)
    for (dataset, method), rs in sorted(groups.items()):
        refit = {r["task"]["split"]: (r["val_score"], r["test_score"]) for r in rs}
        arm = {}
        for r in rs:
            rec = store.get(task_of(r))
            if rec is not None and rec.get("status") == "ok":
                arm[r["task"]["split"]] = (rec["val_acc"], rec["test_acc"])
        chosen, n_refit = chosen_on_validation(refit, arm)
        if not chosen:
            continue
        paper = {r["task"]["split"]: r["paper"]["test_score"] for r in rs}
        others = [{s: t for s, (_, t) in refit.items()}, {s: t for s, (_, t) in arm.items()}, paper,
                  *({s: base[dataset, m, s] for s in chosen if (dataset, m, s) in base} for m in ("gcn_val", "mlp"))]
        cells = [paired_cells(chosen, [o], interval=True)[1][0] if set(chosen) <= set(o) else "–" for o in others]
        inits = [r["init_graph"] for r in rs if r["task"]["split"] in chosen]
        lines.append(f"| {dataset} | {method} | {len(chosen)} | {inits.count('given')} / {inits.count('knn')} / "
                     f"{inits.count('none')} | {n_refit} of {len(chosen)} | {mean_std(list(chosen.values()))} | "
                     f"{mean_std([arm[s][1] for s in chosen])} | {' | '.join(cells)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/select_heterophily")
    p.add_argument("--summary-only", action="store_true")
    args = p.parse_args(argv)
    refits = refit_records()
    return run_and_summarise(run_one, [task_of(r) for r in refits], args.out, lambda st: summary(st, refits),
                             run=not args.summary_only, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
