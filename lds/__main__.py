"""``python -m lds``: fit LDS / kNN-LDS on a benchmark dataset and print the test accuracy.

With no arguments: kNN-LDS on scikit-learn's digits (no download), beside kNN-GCN.
``python -m lds --dataset cora --keep-edges 0.5 --seed 0`` runs the graph setting.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

PLANETOID = ("cora", "citeseer", "pubmed")
UCI = ("digits", "wine", "breast_cancer", "cancer", "20news")


def build_parser() -> argparse.ArgumentParser:
    """The options; the estimator's own defaults are the defaults of its settings (one source)."""
    from lds import LDS

    d = LDS().get_params()
    p = argparse.ArgumentParser(prog="python -m lds", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="digits", choices=PLANETOID + UCI, help="benchmark dataset")
    p.add_argument("--keep-edges", type=float, default=1.0,
                   help="fraction of the input graph's edges to keep (Planetoid only), in (0, 1]")
    p.add_argument("--no-graph", action="store_true",
                   help="drop the input graph (kNN-LDS on Cora/Citeseer); UCI data never has one")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help="seed of the fit (and of the data split / edge deletion)")
    p.add_argument("--hypergrad-every", type=int, default=d["hypergrad_every"],
                   help="τ: inner steps per hypergradient window")
    p.add_argument("--truncate", type=int, default=d["truncate"], help="steps back-propagated per window (default τ)")
    p.add_argument("--outer-lr", type=float, default=d["outer_lr"], help="outer SGD learning rate η₀ for θ")
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def load(args: argparse.Namespace):
    from lds.datasets import delete_edges, load_planetoid, load_uci

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
    try:
        return run(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """Fit and report, for parsed arguments (raises ValueError/TypeError on bad values)."""
    from lds import LDS, GCNBaseline
    from lds.model import check_seed_setting

    if not 0.0 < args.keep_edges <= 1.0:
        raise ValueError(f"--keep-edges must be in (0, 1], got {args.keep_edges}.")
    check_seed_setting(args, "seed", label="--seed")  # the estimator's rule, before the data split uses the seed
    torch.manual_seed(args.seed)
    data = load(args)
    has_graph = data.edge_index.numel() > 0
    print(f"dataset: {args.dataset}  nodes: {data.num_nodes}  features: {data.x.size(1)}  "
          f"edges: {data.edge_index.size(1) // 2}  train/val/test: {int(data.train_mask.sum())}/"
          f"{int(data.val_mask.sum())}/{int(data.test_mask.sum())}")
    if not args.no_baseline:
        base = GCNBaseline(graph="given" if has_graph else "knn", k=args.k, metric=args.metric, seed=args.seed,
                           device=args.device).fit(data)
        name = "GCN" if has_graph else f"kNN-GCN (k={args.k}, {args.metric})"
        print(f"{name} test accuracy: {base.score(data, data.test_mask):.4f}")
    model = LDS(hypergrad_every=args.hypergrad_every, truncate=args.truncate, outer_lr=args.outer_lr,
                learn_inner_lr=not args.fixed_inner_lr, num_samples=args.num_samples, patience=args.patience,
                max_outer_iters=args.max_outer_iters, max_inner_steps=args.max_inner_steps,
                candidates=args.candidates, k=args.k, metric=args.metric, sampling=not args.dense,
                seed=args.seed, device=args.device, verbose=not args.quiet)
    t0 = time.perf_counter()
    model.fit(data, checkpoint=args.checkpoint, resume=args.resume)
    name = "LDS" if has_graph else "kNN-LDS"
    print(f"{name}: {len(model.history_)} outer iterations in {time.perf_counter() - t0:.1f} s, best at "
          f"{model.best_iteration_}, early-stopping val accuracy {model.best_val_acc_:.4f}, expected edges "
          f"{model.distribution_.expected_num_edges():.0f} (initial {model.initial_num_edges_:.0f})")
    print(f"test accuracy: {model.score(data, data.test_mask):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
