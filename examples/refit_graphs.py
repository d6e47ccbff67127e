"""Which graph should the weights be refitted on? A diagnosis of ``LDS(variant="refit")`` (issue 26).

``variant="refit"`` trains fresh GCN weights on train ∪ the outer validation half on graphs sampled from the
learned θ*. On Cora it does not beat the ``gcn_val`` control (the same GCN, the same labels, the given graph).
This study asks why: after one ``LDS(variant="refit")`` fit (Algorithm 7, then the refit), fresh GCN weights
are trained with Adam (Kipf's settings: lr 0.01, weight decay 5e-4 on W₁, dropout 0.5, up to 400 steps, early
stopping on the early-stopping validation half with patience 50 steps after at least 100) on

- ``given_tv``: the given graph, labels of train ∪ outer half (the ``gcn_val`` control, retrained here);
- ``sample_tv``: a fresh ``A ~ Ber(θ*)`` per step, train ∪ outer half; predictions averaged over 8 samples;
- ``mean_tv``: the weighted graph ``A = θ*`` (its expectation), train ∪ outer half;
- ``map_tv``: the pairs with ``θ* > 0.5``, train ∪ outer half;
- ``sample_t`` / ``mean_t``: as above, the training labels only (Algorithm 7's information);
- ``sample_tv_warm``: ``sample_tv`` started from Algorithm 7's weights;
- ``sample_tv_lr``: ``sample_tv`` at the learned inner learning rate.

Each records (test accuracy, early-stopping validation accuracy). The fit's own scores (``refit``, ``a7``: its
Algorithm 7 weights) and the ``gcn``/``gcn_val`` baselines of the same seed are recorded too, with θ*'s
expected edges, the given graph's edges and the number of pairs with ``θ* > 0.5``. Only the selection seeds
(100, 101) are used: this is a diagnosis, compared on validation, and no choice of the protocol depends on it.

    LDS_DATA_DIR=../shared/data python examples/refit_graphs.py                 # about 8 min per fit, one core
    python examples/refit_graphs.py --summary-only

Resumable: runs go to ``results/refit_graphs/runs.jsonl`` and are skipped when started again.
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

# The configuration edge_deletion.py selects for LDS on the full graph (results/edge_deletion/results.md).
CONFIGS: dict[str, dict[str, Any]] = {"cora": {"hypergrad_every": 5, "outer_lr": 0.1},
                                      "citeseer": {"hypergrad_every": 5, "outer_lr": 1.0}}
SEEDS = (100, 101)
ARMS = ("given_tv", "sample_tv", "mean_tv", "map_tv", "sample_t", "mean_t", "sample_tv_warm", "sample_tv_lr")


def weight_fits(data: Any, seed: int, pairs: Any, theta: Any, paper_params: Any, inner_lr: float) -> dict[str, Any]:
    """Every arm's (test accuracy, early-stopping validation accuracy) on the learned ``theta`` over ``pairs``."""
    import torch
    import torch.nn.functional as F

    from lds.gcn import gcn_forward, gcn_l2_penalty, init_gcn_params, preprocess_features, sample_dropout_masks
    from lds.model import split_validation
    from lds.propagation import pairs_from_edge_index

    x = preprocess_features(data.x.float(), "auto")
    y = data.y
    outer, stop = split_validation(data.val_mask, seed)
    train = torch.nonzero(data.train_mask, as_tuple=True)[0]
    test = data.test_mask
    given = pairs_from_edge_index(data.edge_index)
    num_classes = int(y.max()) + 1

    def run(kind: str, idx: Any, lr: float = 0.01, num_samples: int = 8, init: Any = None, wd: float = 5e-4,
            patience: int = 50, min_steps: int = 100, max_steps: int = 400) -> tuple[float, float]:
        g = torch.Generator().manual_seed(seed + 1)
        w = init_gcn_params(x.size(1), 16, num_classes, generator=g) if init is None else tuple(
            p.detach().clone() for p in init)
        w = tuple(p.requires_grad_(True) for p in w)
        opt = torch.optim.Adam(w, lr=lr)
        sampled = kind == "sample"

        def graph(training: bool) -> tuple[Any, Any]:
            if kind == "given":
                return torch.ones(given.size(1)), given
            if kind == "map":
                sel = theta > 0.5
                return torch.ones(int(sel.sum())), pairs[:, sel]
            if sampled and training:
                return (torch.rand(theta.shape, generator=g) < theta).float(), pairs
            return theta, pairs

        def proba(w: Any) -> Any:
            with torch.no_grad():
                if not sampled:
                    return torch.softmax(gcn_forward(w, x, graph(False), training=False), 1)
                gg = torch.Generator().manual_seed(seed + 7)
                total: Any = 0
                for _ in range(num_samples):
                    v = (torch.rand(theta.shape, generator=gg) < theta).float()
                    total = total + torch.softmax(gcn_forward(w, x, (v, pairs), training=False), 1)
                return total / num_samples

        best: tuple[float, float] | None = None
        best_w, since = w, 0
        for step in range(max_steps):
            masks = sample_dropout_masks(x, (x.size(0), 16), 0.5, g, x.dtype, x.device)
            logits = gcn_forward(w, x, graph(True), dropout_masks=masks, training=True)
            loss = F.cross_entropy(logits[idx], y[idx]) + gcn_l2_penalty(w, wd)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sampled and step % 5:  # sampled arms are scored every 5 steps (8 forwards each)
                continue
            pr = proba(w)
            acc = float((pr[stop].argmax(1) == y[stop]).float().mean())
            nll = float(F.nll_loss(torch.log(pr[stop].clamp_min(1e-12)), y[stop]))
            if best is None or (acc, -nll) > best:
                best, best_w, since = (acc, -nll), tuple(p.detach().clone() for p in w), 0
            else:
                since += 5 if sampled else 1
                if since >= patience and step >= min_steps:
                    break
        assert best is not None
        pr = proba(best_w)
        return round(float((pr[test].argmax(1) == y[test]).float().mean()), 4), round(best[0], 4)

    both = torch.cat([train, outer]).sort().values
    out: dict[str, Any] = {}
    for kind in ("given", "sample", "mean", "map"):
        out[f"{kind}_tv"] = run(kind, both)
    out["sample_t"] = run("sample", train)
    out["mean_t"] = run("mean", train)
    out["sample_tv_warm"] = run("sample", both, init=paper_params)
    out["sample_tv_lr"] = run("sample", both, lr=inner_lr)
    out["edges"] = [float(theta.sum()), given.size(1), int((theta > 0.5).sum())]
    return out


def theta_stats(data: Any, pairs: Any, theta: Any) -> dict[str, Any]:
    """How θ* spreads: pairs above each threshold, and on the pairs off the given graph their largest θ and
    expected number of edges (``Σ θ``)."""
    import torch

    from lds.propagation import pairs_from_edge_index

    n = data.num_nodes
    given = pairs_from_edge_index(data.edge_index)  # (i < j)
    on_given = torch.isin(pairs[0] * n + pairs[1], given[0] * n + given[1])
    off = theta[~on_given]
    return {"pairs_above": {str(t): int((theta > t).sum()) for t in (0.0, 0.01, 0.05, 0.1, 0.5, 0.99)},
            "given_pairs_above_0.99": int((theta[on_given] > 0.99).sum()),
            "off_given_max": float(off.max()) if off.numel() else 0.0, "off_given_expected": float(off.sum())}


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """One ``LDS(variant="refit")`` fit, the baselines of its seed, and every arm on its θ*."""
    import torch
    from lds.datasets import delete_edges, load_planetoid

    from lds import LDS, GCNBaseline

    seed = task["seed"]
    data = load_planetoid(task["dataset"])
    if task["keep"] < 1:
        data = delete_edges(data, keep=task["keep"], seed=seed)
    t = time.time()
    m = LDS(seed=seed, verbose=False, variant="refit", outer_optimizer="sgd", init_graph="given",
            **CONFIGS[task["dataset"]]).fit(data)
    out: dict[str, Any] = {"fit_s": time.time() - t, "refit": m.score(data, data.test_mask)}
    refitted, m.params_ = m.params_, m.paper_params_
    out["a7"] = m.score(data, data.test_mask)
    m.params_ = refitted
    out["gcn_val"] = GCNBaseline(seed=seed, train_on_outer_half=True).fit(data).score(data, data.test_mask)
    out["gcn"] = GCNBaseline(seed=seed).fit(data).score(data, data.test_mask)
    edge_index, probs = m.edge_probs()
    upper = edge_index[0] < edge_index[1]
    pairs, theta = edge_index[:, upper], probs[upper].float()
    out["theta_stats"] = theta_stats(data, pairs, theta)
    with torch.enable_grad():
        out.update(weight_fits(data, seed, pairs, theta, m.paper_params_, float(m.inner_lr_)))
    return out


def tasks_of(datasets: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    return [{"exp": "refit_graphs", "dataset": d, "keep": 1.0, "seed": s} for d in datasets for s in seeds]


def summary(store: Store) -> list[str]:
    lines = ["# Which graph should the refit use? (issue 26)", "",
             "`python examples/refit_graphs.py`. Fresh GCN weights trained on the labels named by the arm after one "
             "`LDS(variant=\"refit\")` fit; early-stopping validation accuracy (%) first, test accuracy (%) in "
             "brackets. tv: train ∪ outer half; t: train only. Selection seeds only (a diagnosis).", "",
             "| dataset | seed | " + " | ".join(ARMS) + " | fit: refit / Algorithm 7 (test) | gcn / gcn_val (test) | "
             "θ*: expected edges / given / θ > 0.5 |", "|---" * (len(ARMS) + 5) + "|"]
    recs = sorted((r for r in store.records.values() if r.get("status") == "ok"),
                  key=lambda r: (r["task"]["dataset"], r["task"]["seed"]))
    for r in recs:
        arms = " | ".join(f"{100 * r[a][1]:.1f} ({100 * r[a][0]:.1f})" for a in ARMS)
        e = r["edges"]
        lines.append(f"| {r['task']['dataset']} | {r['task']['seed']} | {arms} | {100 * r['refit']:.1f} / "
                     f"{100 * r['a7']:.1f} | {100 * r['gcn']:.1f} / {100 * r['gcn_val']:.1f} | "
                     f"{e[0]:.0f} / {e[1]} / {e[2]} |")
    stats = [r for r in recs if "theta_stats" in r]
    if stats:
        lines += ["", "How θ* spreads: pairs with θ* above each threshold; off the given graph, the largest θ* and the "
                  "expected edges (Σ θ*).", "",
                  "| dataset | seed | > 0 | > 0.01 | > 0.05 | > 0.1 | > 0.5 | > 0.99 (given pairs) | off-given max | "
                  "off-given expected edges |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in stats:
            t = r["theta_stats"]
            above = " | ".join(f"{t['pairs_above'][k]:,}" for k in ("0.0", "0.01", "0.05", "0.1", "0.5"))
            lines.append(f"| {r['task']['dataset']} | {r['task']['seed']} | {above} | {t['pairs_above']['0.99']:,} "
                         f"({t['given_pairs_above_0.99']:,}) | {t['off_given_max']:.3f} | "
                         f"{t['off_given_expected']:.0f} |")
    if recs:
        means = " | ".join(f"{statistics.fmean(100 * r[a][1] for r in recs):.1f}" for a in ARMS)
        lines += ["", f"Mean early-stopping validation accuracy over the {len(recs)} runs: " + ", ".join(
            f"{a} {m}" for a, m in zip(ARMS, means.split(" | ")))]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["cora"], choices=sorted(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/refit_graphs")
    p.add_argument("--summary-only", action="store_true")
    args = p.parse_args(argv)
    return run_and_summarise(run_one, tasks_of(args.datasets, args.seeds), args.out, summary,
                             run=not args.summary_only, workers=args.workers, threads=args.threads)


if __name__ == "__main__":
    raise SystemExit(main())
