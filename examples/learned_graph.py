"""What the learned graph looks like (LDS paper, Figures 9.3–9.4; issue 11 step 8).

One LDS fit on Cora with a fraction of the edges kept (default 50 %, seed 0, all pairs), with the
configuration that ``edge_deletion.py`` chose on validation for that setting when its records hold the
selection (else τ = 5, outer lr 1.0; ``--hypergrad-every`` / ``--outer-lr`` override). After every outer
iteration (``LDS.fit(callback=...)``) it records the mean edge probability θ over groups of candidate pairs:

- over the whole graph: the *held-out* true edges (deleted before the fit), the *kept* edges, and the
  other pairs between nodes of the same class and of different classes;
- for three example nodes (one train, one validation, one test node, seeded): their pairs to the
  held-out true neighbours, and their other non-edges of the input graph to same-class and
  different-class nodes whose label is known to LDS (train and validation nodes), and to nodes whose
  label is unknown (the rest).

Labels of test nodes are used only for this analysis, never by the fit. At the end: histograms of the
learned θ of same-class against different-class pairs and the degree distribution (``lds.plot``), and the
fraction of probability mass on same-class pairs (initial and learned).

    LDS_DATA_DIR=../shared/data python examples/learned_graph.py              # one Cora fit
    LDS_DATA_DIR=../shared/data python examples/learned_graph.py --quick      # tiny budget

Output: ``results/learned_graph/{trace.json,results.md,evolution.png,histograms.png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import pyplot  # noqa: E402


def choose_config(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """τ and the outer lr: given, else the ones ``edge_deletion.py`` selected on validation, else (5, 1.0)."""
    config = {"hypergrad_every": 5, "outer_lr": 1.0}
    origin = "the default: no selection recorded"
    if os.path.exists(args.selection_store) and not args.quick:
        from edge_deletion import LDS_GRID, make_task
        from runner import SELECTION_SEEDS, Store, select_config

        chosen, _ = select_config(Store(args.selection_store), lambda c, s: make_task(
            args.dataset, args.keep, "lds", c, s, "selection", False), LDS_GRID, SELECTION_SEEDS)
        if chosen is not None:
            config, origin = dict(chosen), "chosen on validation by edge_deletion.py"
    if args.hypergrad_every is not None or args.outer_lr is not None:
        origin = "given on the command line"
        config["hypergrad_every"] = args.hypergrad_every or config["hypergrad_every"]
        config["outer_lr"] = args.outer_lr or config["outer_lr"]
    return config, origin


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cora", choices=["cora", "citeseer"])
    p.add_argument("--keep", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--hypergrad-every", type=int, default=None, help="τ (default: the selected one)")
    p.add_argument("--outer-lr", type=float, default=None, help="outer lr (default: the selected one)")
    p.add_argument("--selection-store", default="results/edge_deletion/runs.jsonl",
                   help="edge_deletion records whose validation-selected configuration is used")
    p.add_argument("--out", default="results/learned_graph")
    args = p.parse_args(argv)
    out = args.out + ("_quick" if args.quick else "")
    os.makedirs(out, exist_ok=True)

    import torch
    from lds.datasets import delete_edges, load_planetoid

    from lds import LDS

    torch.set_num_threads(args.threads)
    data = delete_edges(load_planetoid(args.dataset), keep=args.keep, seed=args.seed)
    n = data.num_nodes
    y = data.y
    known = data.train_mask | data.val_mask
    held = data.dropped_edge_index
    kept = data.edge_index
    g = torch.Generator().manual_seed(args.seed)
    examples = {}
    for name, mask in (("train", data.train_mask), ("val", data.val_mask), ("test", data.test_mask)):
        idx = torch.nonzero(mask)[:, 0]
        # an example node that lost at least one edge, so its held-out group is not empty
        lost = set(held.flatten().tolist())
        cand = [int(i) for i in idx[torch.randperm(idx.numel(), generator=g)] if int(i) in lost]
        examples[name] = cand[0]

    groups: dict[str, Any] = {}

    def pair_key(i, j):
        return torch.minimum(i, j) * n + torch.maximum(i, j)

    def setup(dist) -> None:
        pairs = dist.pairs
        keys = pairs[0] * n + pairs[1]
        order = torch.argsort(keys)

        def member(edge_index):
            k = torch.unique(pair_key(edge_index[0], edge_index[1]))
            pos = torch.searchsorted(keys[order], k).clamp_max(keys.numel() - 1)
            found = keys[order][pos] == k
            m = torch.zeros(keys.numel(), dtype=torch.bool)
            m[order[pos[found]]] = True
            return m

        is_held, is_kept = member(held), member(kept)
        same = y[pairs[0]] == y[pairs[1]]
        groups["graph"] = {"held-out edges": is_held, "kept edges": is_kept,
                           "other same class": same & ~is_held & ~is_kept,
                           "other different class": ~same & ~is_held & ~is_kept}
        groups["same"], groups["pairs"] = same, pairs
        for name, v in examples.items():
            touches = (pairs[0] == v) | (pairs[1] == v)
            other = torch.where(pairs[0] == v, pairs[1], pairs[0])
            free = touches & ~is_held & ~is_kept  # pairs that were not edges of the input graph
            groups[name] = {"held-out edges": touches & is_held,
                            "same class (known)": free & known[other] & (y[other] == y[v]),
                            "different class (known)": free & known[other] & (y[other] != y[v]),
                            "unknown": free & ~known[other]}

    trace: list[dict[str, Any]] = []

    def stats(theta) -> dict[str, Any]:
        rec: dict[str, Any] = {}
        for scope in ("graph", *examples):
            rec[scope] = {k: (float(theta[m].mean()) if bool(m.any()) else None) for k, m in groups[scope].items()}
        total = float(theta.sum())
        rec["same_class_mass_fraction"] = float(theta[groups["same"]].sum()) / total if total > 0 else None
        rec["expected_edges"] = total
        return rec

    def callback(it: int, record: dict[str, float], dist) -> None:
        if not groups:
            setup(dist)
        trace.append({"iteration": it, "val_acc": record["val_acc"], **stats(dist.probs.detach())})

    config, origin = choose_config(args)
    extra: dict[str, Any] = {"max_outer_iters": 3, "max_inner_steps": 20, "num_samples": 2} if args.quick else {}
    model = LDS(**config, seed=args.seed, verbose=False, outer_optimizer="sgd", init_graph="given",
                **extra)  # the paper's SGD and θ₀
    t0 = time.perf_counter()
    model.fit(data, callback=callback)
    fit_s = time.perf_counter() - t0
    theta = model.distribution_.probs.detach()  # the best θ (early stopping)
    init = torch.zeros_like(theta)
    init[groups["graph"]["kept edges"]] = 1.0
    final = {"best": stats(theta), "initial": stats(init), "best_iteration": model.best_iteration_,
             "val_acc": model.best_val_acc_, "test_acc": model.score(data, data.test_mask), "fit_s": fit_s,
             "examples": examples}
    with open(os.path.join(out, "trace.json"), "w", encoding="utf-8") as fh:
        json.dump({"trace": trace, "final": final, "settings": {**vars(args), **config}, "config_origin": origin},
                  fh, indent=1)

    cmd = "LDS_DATA_DIR=../shared/data python examples/learned_graph.py" + (" --quick" if args.quick else "")
    lines = [f"# The learned graph ({args.dataset}, {int(100 * args.keep)} % of the edges kept, seed {args.seed})",
             "", f"Command: `{cmd}`. One LDS fit (τ = {config['hypergrad_every']}, outer lr {config['outer_lr']}, "
             f"{origin}; all pairs), {len(trace)} outer iterations, "
             f"{fit_s:.0f} s; best iteration {model.best_iteration_}, val {100 * model.best_val_acc_:.1f}, test "
             f"{100 * final['test_acc']:.1f}. Test labels are used for this analysis only.", "",
             "| group (whole graph) | mean θ initial | mean θ learned (best iteration) |", "|---|---|---|"]
    for k in groups["graph"]:
        a, b = final["initial"]["graph"][k], final["best"]["graph"][k]
        lines.append(f"| {k} | {a:.4f} | {b:.4f} |")
    fractions = (final["initial"]["same_class_mass_fraction"], final["best"]["same_class_mass_fraction"])
    lines += ["", f"Fraction of probability mass on same-class pairs: initial {fractions[0]:.3f}, learned "
              f"{fractions[1]:.3f}. "
              f"Expected edges: initial {final['initial']['expected_edges']:.0f}, learned "
              f"{final['best']['expected_edges']:.0f}.", "",
              "Example nodes (mean θ of their pairs, learned):"]
    for name, v in examples.items():
        vals = ", ".join(f"{k} {val:.3f}" if val is not None else f"{k} –" for k, val in final["best"][name].items())
        lines.append(f"- {name} node {v}: {vals}")
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    _plots(trace, model, y, groups, examples, out)
    print("\n".join(lines))
    return 0


def _plots(trace, model, labels, groups, examples, out) -> None:
    plt = pyplot()
    if plt is None:
        return
    scopes = ["graph", *examples]
    fig, axes = plt.subplots(1, len(scopes), figsize=(4.2 * len(scopes), 3.6), squeeze=False)
    for ax, scope in zip(axes[0], scopes):
        for k in groups[scope]:
            ys = [t[scope][k] for t in trace]
            if any(v is not None for v in ys):
                ax.plot([t["iteration"] for t in trace], [v if v is not None else float("nan") for v in ys], label=k)
        title = "whole graph" if scope == "graph" else f"{scope} node {examples[scope]}"
        ax.set(xlabel="outer iteration", ylabel="mean θ", yscale="log", title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "evolution.png"), dpi=120)
    plt.close(fig)
    from lds.plot import plot_learned_graph

    fig = plot_learned_graph(model, labels)  # lds.plot: degree distribution, θ by same / other class
    fig.savefig(os.path.join(out, "histograms.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
