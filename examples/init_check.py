"""Where does ``LDS(init_graph="auto")`` keep the given graph (issue 25)? The check alone, no LDS fit.

For each dataset and split, :meth:`lds.LDS._init_check` trains the network (the built-in GCN, LDS's defaults) on
the training labels with the given graph and without a graph, and :meth:`lds.LDS._choose_init` replaces the
given graph only when the outer-half validation cross-entropy without it is lower by more than 2 standard
errors of the paired per-node difference; then by kNN(k) or the empty graph, whichever has the lower outer loss
(the network trained on kNN(k) too). Recorded per run: the choice, the mean losses, the difference (none −
given: negative when the graph hurts) and its standard error, and none − kNN(k) where it was measured.

- ``cora`` / ``citeseer``: the public split with 100 / 75 / 50 / 25 % of the edges (``delete_edges``, seeds 0–4:
  the edge-deletion protocol's graphs), LDS seed = deletion seed;
- the Platonov et al. heterophilous graphs: their 10 fixed splits, LDS seed = split;
- ``synthetic_hetero``: seeds 0–3 (``heterophily.synthetic_hetero``).

    LDS_DATA_DIR=../shared/data python examples/init_check.py              # about 20 min on one core
    python examples/init_check.py --summary-only

Resumable: runs go to ``results/init_check/runs.jsonl`` and are skipped when started again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import Store, run_and_summarise  # noqa: E402

PLANETOID = ("cora", "citeseer")
KEEPS = (1.0, 0.75, 0.5, 0.25)
HETERO = ("chameleon_filtered", "squirrel_filtered", "actor", "cornell", "texas", "wisconsin", "minesweeper",
          "tolokers")
DATASETS = (*PLANETOID, *HETERO, "synthetic_hetero")


def tasks_of(dataset: str) -> list[dict[str, Any]]:
    if dataset in PLANETOID:
        return [{"exp": "init_check", "dataset": dataset, "keep": keep, "seed": s} for keep in KEEPS for s in range(5)]
    splits = range(4) if dataset == "synthetic_hetero" else range(10)
    return [{"exp": "init_check", "dataset": dataset, "keep": 1.0, "seed": s} for s in splits]


def load(task: dict[str, Any]) -> Any:
    dataset, seed = task["dataset"], task["seed"]
    if dataset in PLANETOID:
        from lds.datasets import delete_edges, load_planetoid

        data = load_planetoid(dataset)
        return data if task["keep"] == 1.0 else delete_edges(data, keep=task["keep"], seed=seed)
    if dataset == "synthetic_hetero":
        from heterophily import synthetic_hetero

        return synthetic_hetero(seed)
    from lds.datasets import load_heterophilous

    return load_heterophilous(dataset, split=seed)


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """The check of ``LDS(seed=task seed)`` with its defaults on the task's graph: θ₀ built as a fit builds it
    (:meth:`lds.LDS._build_distribution`, the kNN search included), no outer step."""
    from lds import LDS

    data = load(task)
    model = LDS(seed=task["seed"], verbose=False)
    t = time.perf_counter()
    prep, _ = model._prepare(data, fingerprint=False)
    model.backbone_ = None  # the built-in GCN, as LDS() fits it
    model._build_distribution(prep)
    return {"init_graph": model.init_graph_, **model.init_check_, "outer_nodes": int(prep.val_outer_idx.numel()),
            "check_s": time.perf_counter() - t}


def summary(store: Store, datasets: list[str]) -> list[str]:
    lines = ["# Where `LDS(init_graph=\"auto\")` keeps the given graph (issue 25)", "",
             "`python examples/init_check.py`. Outer-half validation cross-entropy of the GCN trained on the "
             "training labels, with the given graph and without one (mean over the runs); difference = none − "
             "given (negative: the network does better without the graph), in its standard errors (SE) of the "
             "paired per-node difference; the given graph is replaced when the difference is below −2 SE, by "
             "kNN(k) or the empty graph, whichever has the lower loss (loss, kNN(k): mean over those runs).", "",
             "| dataset | edges kept | runs | given kept | kNN(k) chosen | empty chosen | loss, given | "
             "loss, no graph | loss, kNN(k) | difference / SE, mean (min, max) | check s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in datasets:
        for keep in (KEEPS if d in PLANETOID else (1.0,)):
            recs = [r for t in tasks_of(d) if t["keep"] == keep
                    and (r := store.get(t)) is not None and r.get("status") == "ok"]
            if not recs:
                continue
            z = [r["difference"] / r["stderr"] for r in recs]
            count = {c: sum(r["init_graph"] == c for r in recs) for c in ("given", "knn", "none")}
            knn = [r["knn"] for r in recs if "knn" in r]
            knn_loss = f"{statistics.fmean(knn):.3f} ({len(knn)})" if knn else "–"
            lines.append(f"| {d} | {100 * keep:.0f} % | {len(recs)} | {count['given']} | {count['knn']} | "
                         f"{count['none']} | {statistics.fmean(r['given'] for r in recs):.3f} | "
                         f"{statistics.fmean(r['none'] for r in recs):.3f} | {knn_loss} | {statistics.fmean(z):+.1f} "
                         f"({min(z):+.1f}, {max(z):+.1f}) | {statistics.median(r['check_s'] for r in recs):.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/init_check")
    p.add_argument("--summary-only", action="store_true")
    args = p.parse_args(argv)
    tasks = [t for d in args.datasets for t in tasks_of(d)]
    return run_and_summarise(run_one, tasks, args.out, lambda store: summary(store, list(DATASETS)),
                             run=not args.summary_only, workers=args.workers, threads=args.threads)


if __name__ == "__main__":
    raise SystemExit(main())
