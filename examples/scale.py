"""LDS at scale: setup, per-step and whole-fit time, peak memory and accuracy against N (issue 29).

Graphs: ``lds.datasets.planted_partition`` (10 classes, 32 Gaussian features with ``class_sep=0.4``, average
degree 6, a share ``--noise`` of the given edges joining two classes; 20 training labels per class, 500
validation nodes, every other node a test node). Per run (one fresh process each, so that its peak RSS is its
own), ``LDS()`` with its defaults is fitted once, and GCN on the given graph and on the kNN(10) graph on the
same split. Every finished run is one JSON line in ``results/scale/runs.jsonl``; runs already there are
skipped when the script is started again, and a fit cut off midway resumes from its checkpoint
(``results/scale/checkpoints``).

    python examples/scale.py --sizes 10000 30000 100000 --seeds 0 1 2     # the benchmark (resumable)
    python examples/scale.py --sizes --datasets tolokers minesweeper --seeds 0   # the real graphs (split 0)
    python examples/scale.py --summary                                   # table + plot from the records

Reported per run: ``setup_s`` (validation, kNN search, candidate set), ``step_s`` (fit time / inner steps,
hypergradients and the per-iteration evaluation included), ``iter_s`` (fit time / outer iterations), ``fit_s``,
``peak_rss_mb``, ``num_pairs``, the test accuracy of LDS, GCN (given) and GCN (kNN), and θ on the given
graph's true and noise edges. The summary fits the log-log slope of ``step_s`` and of the peak RSS against
``num_pairs``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import CHECKPOINT_ENV, Store, describe, fit_resumable, keep_freed_memory, pyplot, run_all  # noqa: E402

OUT = "results/scale"


def one_run(task: dict[str, Any]) -> dict[str, Any]:
    """The run of ``task`` in this process (called in a fresh child by :func:`run_in_child`): the planted partition
    of ``task["n"]`` nodes, or a real graph of Platonov et al. (``task["dataset"]``, fixed split ``task["split"]``,
    scored in its metric: ROC-AUC for tolokers and minesweeper). LDS with its defaults (plus ``task["lds"]``), then
    GCN on the given and on the kNN graph on the same split."""
    import torch
    from lds.datasets import heterophilous_metric, load_heterophilous, planted_partition

    from lds import LDS, GCNBaseline
    from lds.metrics import evaluate

    torch.set_num_threads(int(task["threads"]))
    real = "dataset" in task
    t = time.perf_counter()
    if real:
        data = load_heterophilous(task["dataset"], split=int(task["split"]))
    else:
        data = planted_partition(task["n"], noise=task["noise"], seed=task["seed"])
    gen_s = time.perf_counter() - t
    metric = heterophilous_metric(task["dataset"]) if real else "accuracy"
    device = task.get("device", "cpu")
    model = LDS(seed=task["seed"], verbose=False, device=device, **{"init_graph": "given", **task.get("lds", {})})
    fit_resumable(model, data, task)
    steps = sum(int(r["inner_steps"]) for r in model.history_)
    outer = model.resolved_outer_optimizer(model.distribution_.is_all_pairs)
    out: dict[str, Any] = {
        "metric": metric, "num_nodes": int(data.num_nodes), "given_edges": int(data.edge_index.size(1) // 2),
        "gen_s": round(gen_s, 2), "setup_s": round(model.setup_time_, 2), "fit_s": round(model.fit_time_, 1),
        "outer_iters": len(model.history_), "inner_steps": steps,
        "step_s": round(model.fit_time_ / max(steps, 1), 4),
        "iter_s": round(model.fit_time_ / max(len(model.history_), 1), 2),
        "num_pairs": int(model.distribution_.probs.numel()),
        "expected_edges_initial": round(model.initial_num_edges_, 1),
        "expected_edges": round(model.distribution_.expected_num_edges(), 1),
        "best_iteration": model.best_iteration_,
        "lds_test": round(model.score(data, data.test_mask, metric=metric), 4),
        "lds_val": round(model.best_val_acc_, 4),
        "outer_optimizer": outer, "outer_lr": model.outer_lr_value(outer),
    }
    if not real:
        out.update(theta_analysis(model, data))
    for name, graph in (("gcn_given", "given"), ("gcn_knn", "knn")):
        t = time.perf_counter()
        base = GCNBaseline(graph=graph, seed=task["seed"], device=device).fit(data)
        out[name + "_test"] = round(evaluate(base.predict_proba(data), data.y, data.test_mask, metric), 4)
        out[name + "_s"] = round(time.perf_counter() - t, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["torch"] = torch.__version__
    out["machine"] = f"{platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f} at the end"
    if torch.device(device).type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(torch.device(device)) / 2**20)
    return out


def theta_analysis(model: Any, data: Any) -> dict[str, Any]:
    """θ on the planted partition's true and noise edges, overall and inside / outside the hypergradient's reach."""
    import torch

    out: dict[str, Any] = {}
    # θ on the given graph's true and noise edges (the pairs are undirected, i < j; searchsorted on sorted keys)
    edge_index, probs = model.edge_probs()
    n = data.num_nodes
    keys, order = (edge_index[0] * n + edge_index[1]).sort()
    probs = probs[order]

    def mean_theta(ei: torch.Tensor) -> float:
        ks = (ei[0] * n + ei[1])[ei[0] < ei[1]]
        if ks.numel() == 0 or keys.numel() == 0:
            return 0.0
        pos = torch.searchsorted(keys, ks).clamp_max(keys.numel() - 1)
        theta = torch.where(keys[pos] == ks, probs[pos], torch.zeros_like(probs[pos]))
        return round(float(theta.double().mean()), 4)

    given = data.edge_index
    noise_keys = (data.noise_edge_index[0] * n + data.noise_edge_index[1]).unique()
    is_noise = torch.isin(given[0] * n + given[1], noise_keys)
    out["theta_true_edges"] = mean_theta(given[:, ~is_noise])
    out["theta_noise_edges"] = mean_theta(given[:, is_noise])
    # Where the outer objective reaches: a 2-layer GCN's output at an outer-validation node v reads the pairs
    # with an endpoint in N(v) ∪ {v} (candidate graph), so only those get a direct hypergradient.
    pairs = model.distribution_.pairs.cpu()
    reach = torch.zeros(n, dtype=torch.bool)
    reach[model.val_outer_idx_] = True
    hop = reach.clone()
    hop[pairs[1][reach[pairs[0]]]] = True
    hop[pairs[0][reach[pairs[1]]]] = True
    in_reach = hop[given[0]] | hop[given[1]]
    out["given_edges_in_reach"] = round(float(in_reach.double().mean()), 4)
    out["candidates_in_reach"] = round(float((hop[pairs[0]] | hop[pairs[1]]).double().mean()), 4)
    for name, sel in (("in_reach", in_reach), ("out_of_reach", ~in_reach)):
        out[f"theta_true_{name}"] = mean_theta(given[:, ~is_noise & sel])
        out[f"theta_noise_{name}"] = mean_theta(given[:, is_noise & sel])
    return out


def run_in_child(task: dict[str, Any]) -> dict[str, Any]:
    """Run ``task`` in a fresh Python process (its own peak RSS); its result comes back as one JSON line."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", json.dumps(task)],
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        raise RuntimeError(f"child failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def fitted_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def settings(task: dict[str, Any]) -> str:
    """The run's LDS settings beside the defaults, as JSON (``defaults`` when none), and its device if not the CPU."""
    text = json.dumps(task["lds"], sort_keys=True) if task.get("lds") else "defaults"
    return text + (f" on {task['device']}" if task.get("device", "cpu") != "cpu" else "")


def summary(store: Store) -> str:
    real = [(r["task"], r) for r in store.records.values() if r.get("status") == "ok" and "dataset" in r["task"]]
    rows = [(r["task"], r) for r in store.records.values() if r.get("status") == "ok" and "dataset" not in r["task"]]
    rows.sort(key=lambda tr: (settings(tr[0]), tr[0]["n"], tr[0]["noise"], tr[0]["seed"]))
    head = ("| LDS settings | N | noise | seed | pairs | setup s | step s | iter s | fit s | outer iters | "
            "peak RSS MB | LDS | GCN given | GCN kNN | LDS − GCN | θ true | θ noise |")
    lines = ["# LDS at scale (examples/scale.py)", "", f"{len(rows)} finished runs held: "
             + ", ".join(f"N={t['n']} seed={t['seed']}" for t, _ in rows), "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for t, r in rows:
        lines.append(f"| {settings(t)} | {t['n']} | {t['noise']} | {t['seed']} | {r['num_pairs']} | {r['setup_s']} | "
                     f"{r['step_s']} | "
                     f"{r['iter_s']} | {r['fit_s']} | {r['outer_iters']} | {r['peak_rss_mb']} | {r['lds_test']:.4f} | "
                     f"{r['gcn_given_test']:.4f} | {r['gcn_knn_test']:.4f} | "
                     f"{100 * (r['lds_test'] - r['gcn_given_test']):+.1f} | {r['theta_true_edges']} | "
                     f"{r['theta_noise_edges']} |")
    if real:
        lines += ["", "Real graphs (Platonov et al. 2023; fixed split; scores in the dataset's metric):", "",
                  "| LDS settings | dataset | split | nodes | given edges | pairs | setup s | step s | fit s | "
                  "outer iters | peak RSS MB | metric | LDS | GCN given | GCN kNN |", "|" + "---|" * 15]
        for t, r in sorted(real, key=lambda tr: (tr[0]["dataset"], tr[0]["split"])):
            lines.append(f"| {settings(t)} | {t['dataset']} | {t['split']} | {r['num_nodes']} | {r['given_edges']} | "
                         f"{r['num_pairs']} | {r['setup_s']} | {r['step_s']} | {r['fit_s']} | {r['outer_iters']} | "
                         f"{r['peak_rss_mb']} | {r['metric']} | {r['lds_test']:.4f} | {r['gcn_given_test']:.4f} | "
                         f"{r['gcn_knn_test']:.4f} |")
    reach = [(t, r) for t, r in rows if "theta_true_in_reach" in r]
    if reach:
        lines += ["", "Where θ learns. The outer objective reads only the pairs with an endpoint in an "
                  "outer-validation node's candidate neighbourhood (a 2-layer GCN): θ on the given graph's "
                  "true and noise edges inside and outside that reach.", "",
                  "| LDS settings | N | seed | given edges in reach | candidate pairs in reach | θ true / noise in "
                  "reach | θ true / noise out of reach |", "|---|---|---|---|---|---|---|"]
        for t, r in reach:
            lines.append(f"| {settings(t)} | {t['n']} | {t['seed']} | {100 * r['given_edges_in_reach']:.1f} % | "
                         f"{100 * r['candidates_in_reach']:.1f} % | {r['theta_true_in_reach']} / "
                         f"{r['theta_noise_in_reach']} | {r['theta_true_out_of_reach']} / "
                         f"{r['theta_noise_out_of_reach']} |")
    for group in sorted({settings(t) for t, _ in rows}):
        held = [r for t, r in rows if settings(t) == group]
        pairs = [float(r["num_pairs"]) for r in held]
        if len({int(p) for p in pairs}) >= 2:
            s_step = fitted_slope(pairs, [float(r["step_s"]) for r in held])
            s_rss = fitted_slope(pairs, [float(r["peak_rss_mb"]) for r in held])
            lines += ["", f"Fitted log-log slope against candidate pairs, LDS settings {group}: per-step time "
                      f"{s_step:.2f}, peak RSS {s_rss:.2f} ({len(held)} runs)."]
    return "\n".join(lines) + "\n"


def plot(store: Store, path: str) -> None:
    plt = pyplot()
    rows = [r for r in store.records.values() if r.get("status") == "ok" and "dataset" not in r["task"]]
    if plt is None or len(rows) < 2:
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    pairs = [r["num_pairs"] for r in rows]
    for ax, key, label in ((axes[0], "step_s", "seconds per inner step"), (axes[1], "peak_rss_mb", "peak RSS (MB)")):
        ys = [r[key] for r in rows]
        ax.loglog(pairs, ys, "o")
        if len(set(pairs)) >= 2:
            ax.set_title(f"slope {fitted_slope([float(p) for p in pairs], [float(y) for y in ys]):.2f}")
        ax.set_xlabel("candidate pairs")
        ax.set_ylabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[10000, 30000, 100000])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--noise", type=float, default=0.5)
    p.add_argument("--datasets", nargs="*", default=[], help="real graphs too, e.g. tolokers minesweeper (split 0)")
    p.add_argument("--split", type=int, default=0, help="the fixed split of the real graphs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="device of LDS and the GCN baselines (e.g. cuda; recorded)")
    p.add_argument("--lds", default="{}", help="JSON of LDS settings other than the defaults (recorded per run)")
    p.add_argument("--out", default=OUT)
    p.add_argument("--summary", action="store_true", help="only write the summary and plot from the records")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        keep_freed_memory()
        print(json.dumps(one_run(json.loads(args.one))))
        return
    store = Store(os.path.join(args.out, "runs.jsonl"))
    if not args.summary:
        os.environ.setdefault(CHECKPOINT_ENV, os.path.join(args.out, "checkpoints"))
        extra = json.loads(args.lds)
        tasks = [{"n": n, "seed": s, "noise": args.noise, "threads": args.threads,
                  **({"device": args.device} if args.device != "cpu" else {}),
                  **({"lds": extra} if extra else {})} for n in args.sizes for s in args.seeds]
        tasks += [{"dataset": d, "split": args.split, "seed": s, "threads": args.threads,
                   **({"device": args.device} if args.device != "cpu" else {}),
                   **({"lds": extra} if extra else {})} for d in args.datasets for s in args.seeds]
        run_all(run_in_child, tasks, store, log=lambda m: print(m, flush=True))
        for t in tasks:
            if not store.has(t):
                print("not finished:", describe(t))
    text = summary(store)
    with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    plot(store, os.path.join(args.out, "scale.png"))
    print(text)


if __name__ == "__main__":
    main()
