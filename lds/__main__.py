"""``python -m lds``: fit LDS / kNN-LDS on a benchmark dataset or on your own graph and report its accuracy.

With no arguments: kNN-LDS on scikit-learn's breast cancer data (no download; all pairs, as in the paper),
beside kNN-GCN, in about a minute on 2 CPU cores.
``python -m lds --dataset cora --keep-edges 0.5 --seed 0`` runs the graph setting.
``python -m lds --data graph.npz --out results/`` fits your graph (``x``, ``y`` with -1 for unlabelled, optional
``edge_index``/``edges`` and masks); ``--features nodes.csv --edges edges.csv`` reads a CSV pair instead
(see ``lds.datasets.files``). ``--out DIR`` writes predictions.csv, learned_edges.csv, model.pt and summary.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from typing import Any

import torch

PLANETOID = ("cora", "citeseer", "pubmed")
UCI = ("digits", "wine", "breast_cancer", "cancer", "20news")
DEFAULT_DATASET = "breast_cancer"
SMALL_GRAPH = 1000  # nodes: up to here --threads 0 (auto) runs torch on one thread


def build_parser() -> argparse.ArgumentParser:
    """The options; the estimator's own defaults are the defaults of its settings (one source)."""
    from lds import LDS

    d = LDS().get_params()
    p = argparse.ArgumentParser(prog="python -m lds", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default=None, choices=PLANETOID + UCI,
                   help=f"benchmark dataset (default {DEFAULT_DATASET}, unless --data or --features is given)")
    p.add_argument("--data", default=None, help="your graph as .npz: x (N×F), y (N, -1 = unlabelled), optional "
                   "edge_index (2×E) or edges (E×2), train_mask/val_mask/test_mask (boolean)")
    p.add_argument("--features", default=None,
                   help="your nodes as CSV: a header, an id column, a label column (-1 or empty = unlabelled) and "
                   "feature columns")
    p.add_argument("--edges", default=None, help="with --features: edges as CSV, two node ids per line")
    p.add_argument("--validation-fraction", type=float, default=0.5,
                   help="your data without masks: share of the labelled nodes used for validation")
    p.add_argument("--out", default=None,
                   help="write predictions.csv, learned_edges.csv, model.pt and summary.json to this folder")
    p.add_argument("--min-prob", type=float, default=0.01, help="learned_edges.csv keeps the pairs with θ above this")
    p.add_argument("--keep-edges", type=float, default=1.0,
                   help="fraction of the input graph's edges to keep (Planetoid only), in (0, 1]")
    p.add_argument("--no-graph", action="store_true",
                   help="drop the input graph (kNN-LDS on Cora/Citeseer); UCI data never has one")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="seed of the fit (and of the data split / edge deletion)")
    p.add_argument("--hypergrad-every", type=int, default=d["hypergrad_every"],
                   help="τ: inner steps per hypergradient window")
    p.add_argument("--truncate", type=int, default=d["truncate"], help="steps back-propagated per window (default τ)")
    p.add_argument("--outer-lr", type=float, default=d["outer_lr"],
                   help="outer learning rate η₀ for θ (default: 1.0 with SGD on all pairs, 0.01 with Adam on sparse "
                        "candidates)")
    p.add_argument("--fixed-inner-lr", action="store_true", help="do not learn the inner learning rate")
    p.add_argument("--num-samples", type=int, default=d["num_samples"], help="S: graphs averaged for predictions")
    p.add_argument("--patience", type=int, default=d["patience"], help="early-stopping patience (outer iterations)")
    p.add_argument("--max-outer-iters", type=int, default=d["max_outer_iters"], help="maximum outer iterations")
    p.add_argument("--max-inner-steps", type=int, default=d["max_inner_steps"],
                   help="maximum inner steps per outer iteration")
    p.add_argument("--candidates", default=d["candidates"], choices=("auto", "all", "sparse"),
                   help="candidate pairs: all pairs, or the given/kNN edges ∪ kNN(k) (sparse)")
    p.add_argument("--k", type=int, default=d["k"], help="k of the kNN graph")
    p.add_argument("--metric", default=d["metric"], choices=("cosine", "euclidean"), help="kNN metric")
    p.add_argument("--dense", action="store_true", help="kNN-LDS (dense): learn a weighted graph, no sampling")
    p.add_argument("--no-baseline", action="store_true", help="skip the GCN / kNN-GCN baseline")
    p.add_argument("--checkpoint", default=None, help="write a resumable checkpoint to this path")
    p.add_argument("--resume", default=None, help="resume from this checkpoint")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads of torch; 0 = auto: 1 on graphs of at most "
                   f"{SMALL_GRAPH:,} nodes (on 2 busy cores, 2 threads made breast cancer 8x slower), else torch's "
                   "default")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def load(args: argparse.Namespace) -> Any:
    """The data of the run: the user's file(s) or a benchmark dataset."""
    from lds.datasets import delete_edges, load_graph, load_planetoid, load_uci

    if args.data is not None or args.features is not None:
        if args.data is not None and args.features is not None:
            raise ValueError("give --data (an .npz file) or --features (a node CSV), not both.")
        if args.dataset is not None:
            raise ValueError("--dataset names a benchmark; it cannot be combined with --data or --features.")
        if args.keep_edges != 1.0:
            raise ValueError("--keep-edges applies to Planetoid benchmarks, not to --data/--features.")
        if args.edges is not None and args.features is None:
            raise ValueError("--edges goes with --features (a node CSV); an .npz file holds its own edges.")
        path = args.data if args.data is not None else args.features
        if args.features is not None and not str(path).lower().endswith(".csv"):
            raise ValueError(f"--features {path}: expected a .csv file of nodes (id, label, features).")
        return load_graph(path, edges=args.edges, seed=args.seed, validation_fraction=args.validation_fraction)
    if args.edges is not None:
        raise ValueError("--edges goes with --features (a node CSV).")
    args.dataset = args.dataset or DEFAULT_DATASET
    if args.dataset in PLANETOID:
        data = load_planetoid(args.dataset, graph=not args.no_graph)
        if args.keep_edges < 1.0 and not args.no_graph:
            data = delete_edges(data, keep=args.keep_edges, seed=args.seed)
        return data
    if args.keep_edges != 1.0:
        raise ValueError(f"--keep-edges applies to Planetoid data; {args.dataset} has no input graph.")
    return load_uci(args.dataset, seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a user error (bad value, missing file) prints one ``error: ...`` line and returns 2."""
    args = build_parser().parse_args(argv)
    threads = torch.get_num_threads()
    try:
        return run(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)  # run() may set them (--threads); a caller of main() keeps its own


def _accuracies(model: Any, data: Any) -> dict[str, float]:
    """Accuracy on each mask the data has (train, val, test)."""
    out = {}
    for name in ("train_mask", "val_mask", "test_mask"):
        mask = getattr(data, name, None)
        if mask is not None and bool(mask.any()):
            out[name[:-5]] = model.score(data, mask)
    return out


def _setting(model: Any, n: int, has_graph: bool) -> str:
    """Which candidate set the fit uses, by the estimator's rule (``candidates``, ``max_all_pairs``)."""
    pairs = n * (n - 1) // 2
    mode = model.candidates
    if mode == "auto":
        mode = "all" if pairs <= model.max_all_pairs else "sparse"
    if mode == "all":
        return f"all {pairs:,} node pairs (the paper's setting)"
    k_cand = model.candidate_k or (model.k if has_graph else 2 * model.k)
    return (f"sparse candidate pairs: the {'given' if has_graph else f'kNN({model.k})'} edges ∪ kNN({k_cand}) "
            f"(all {pairs:,} pairs exceed max_all_pairs={model.max_all_pairs:,} or candidates='sparse')")


def write_outputs(out: str, model: Any, data: Any, summary: dict[str, Any], min_prob: float) -> None:
    """predictions.csv, learned_edges.csv, model.pt (LDS.save: tensors and plain values) and summary.json."""
    from lds.export import learned_pairs

    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file; give a folder (it is created if missing).")
    os.makedirs(out, exist_ok=True)
    ids = list(getattr(data, "node_ids", range(data.num_nodes)))
    proba = model.predict_proba(data)
    with open(os.path.join(out, "predictions.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["node_id", "predicted_class", *[f"prob_{c}" for c in range(proba.size(1))]])
        for node, p in zip(ids, proba.tolist()):
            w.writerow([node, int(max(range(len(p)), key=p.__getitem__)), *[f"{v:.6g}" for v in p]])
    pairs, probs, _ = learned_pairs(model, min_prob)
    with open(os.path.join(out, "learned_edges.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["i", "j", "theta"])
        for i, j, t in zip(pairs[0].tolist(), pairs[1].tolist(), probs.tolist()):
            w.writerow([ids[i], ids[j], f"{t:.6g}"])
    model.save(os.path.join(out, "model.pt"))
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump({**summary, "learned_edges_above_min_prob": int(probs.numel()), "min_prob": min_prob}, fh, indent=1)


def run(args: argparse.Namespace) -> int:
    """Fit and report, for parsed arguments (raises ValueError/TypeError on bad values)."""
    from lds import LDS, GCNBaseline
    from lds.model import check_seed_setting

    if not 0.0 < args.keep_edges <= 1.0:
        raise ValueError(f"--keep-edges must be in (0, 1], got {args.keep_edges}.")
    if not 0.0 <= args.min_prob <= 1.0:
        raise ValueError(f"--min-prob must be in [0, 1], got {args.min_prob}.")
    check_seed_setting(args, "seed", label="--seed")  # the estimator's rule, before the data split uses the seed
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    data = load(args)
    source = args.data or args.features or args.dataset
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0 (0 = auto), got {args.threads}.")
    if args.threads > 0 or data.num_nodes <= SMALL_GRAPH:
        torch.set_num_threads(args.threads or 1)  # the CLI is the application: it may set the process's threads
    has_graph = data.edge_index.numel() > 0
    test_mask = getattr(data, "test_mask", None)
    counts = "/".join(str(int(m.sum())) if m is not None else "-" for m in (data.train_mask, data.val_mask, test_mask))
    print(f"dataset: {source}  nodes: {data.num_nodes}  features: {data.x.size(1)}  "
          f"edges: {data.edge_index.size(1) // 2}  train/val/test: {counts}")
    model = LDS(hypergrad_every=args.hypergrad_every, truncate=args.truncate, outer_lr=args.outer_lr,
                learn_inner_lr=not args.fixed_inner_lr, num_samples=args.num_samples, patience=args.patience,
                max_outer_iters=args.max_outer_iters, max_inner_steps=args.max_inner_steps,
                candidates=args.candidates, k=args.k, metric=args.metric, sampling=not args.dense,
                seed=args.seed, device=args.device, verbose=not args.quiet)
    name = ("LDS" if has_graph else "kNN-LDS") + (" (dense)" if args.dense else "")
    outer = model.resolved_outer_optimizer(all_pairs=model._resolved_candidates(data.num_nodes) == "all")
    print(f"setting: {name}, {_setting(model, data.num_nodes, has_graph)}, τ={args.hypergrad_every}, outer "
          f"{outer} lr {model.outer_lr_value(outer)}, k={args.k} ({args.metric}), seed {args.seed}, device "
          f"{args.device}, {torch.get_num_threads()} CPU thread(s)")
    base_acc: dict[str, float] = {}
    base_name = "GCN" if has_graph else f"kNN-GCN (k={args.k}, {args.metric})"
    if not args.no_baseline:
        base = GCNBaseline(graph="given" if has_graph else "knn", k=args.k, metric=args.metric, seed=args.seed,
                           device=args.device).fit(data)
        base_acc = _accuracies(base, data)
        print(f"{base_name} " + "  ".join(f"{k} accuracy: {v:.4f}" for k, v in base_acc.items()))
    t0 = time.perf_counter()
    model.fit(data, checkpoint=args.checkpoint, resume=args.resume)
    fit_s = time.perf_counter() - t0
    print(f"{name}: {len(model.history_)} outer iterations in {fit_s:.1f} s, best at "
          f"{model.best_iteration_}, early-stopping val accuracy {model.best_val_acc_:.4f}, expected edges "
          f"{model.distribution_.expected_num_edges():.0f} (initial {model.initial_num_edges_:.0f})")
    acc = _accuracies(model, data)
    if "test" in acc and "test" in base_acc:
        print(f"{name} against {base_name}: test accuracy {acc['test']:.4f} vs {base_acc['test']:.4f} "
              f"({100 * (acc['test'] - base_acc['test']):+.1f} points, {int(data.test_mask.sum())} test nodes, seed "
              f"{args.seed}); total {time.perf_counter() - start:.0f} s")
    if args.out is not None:
        summary = {"data": source, "nodes": data.num_nodes, "features": int(data.x.size(1)),
                   "input_edges": data.edge_index.size(1) // 2, "method": name,
                   "setting": _setting(model, data.num_nodes, has_graph),
                   "settings": {k: v for k, v in model.get_params().items()
                                if v is None or isinstance(v, (bool, int, float, str))}, "accuracy": acc,
                   "baseline": {"method": base_name, "accuracy": base_acc} if base_acc else None,
                   "expected_edges": model.distribution_.expected_num_edges(),
                   "initial_edges": float(model.initial_num_edges_), "outer_iterations": len(model.history_),
                   "best_iteration": model.best_iteration_, "fit_seconds": fit_s,
                   "total_seconds": time.perf_counter() - start}
        write_outputs(args.out, model, data, summary, args.min_prob)
        print(f"wrote predictions.csv, learned_edges.csv, model.pt, summary.json to {args.out}")
    if "test" in acc:
        print(f"test accuracy: {acc['test']:.4f}")
    else:
        print("no test mask: " + "  ".join(f"{k} accuracy: {v:.4f}" for k, v in acc.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
