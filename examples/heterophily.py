"""LDS on heterophilous graphs (issue 25): does learning the graph help where the given one misleads a GCN?

Datasets: the Platonov et al. (ICLR 2023) ``.npz`` files with their 10 fixed splits (0–9): chameleon_filtered,
squirrel_filtered, actor, cornell, texas, wisconsin, minesweeper and tolokers (ROC-AUC for the last two,
accuracy for the others: ``heterophilous_metric``), and ``synthetic_hetero``, a seeded planted partition
(4 classes × 150 nodes, 16 Gaussian features with ``class_sep`` 0.4, 1,800 given edges = 6 per node of which
15 % join two nodes of one class, 10 training and 30 validation nodes per class, the rest test), whose seeds
0–3 play the part of the splits. The original chameleon and squirrel can be run too, but they hold duplicate
nodes that leak between train and test (Platonov et al.): their rows are for comparison with the literature
only and are kept out of the LDS-against-baseline count.

Methods (model seed = split index; every method early-stops on the same validation half as LDS):

- ``mlp``: ``GCNBaseline(graph="none")``, the same 2-layer network on self-loops only (a 2-layer MLP);
- ``gcn``: GCN on the given graph; ``gcn_val``: the same, also trained on the validation half LDS uses for θ
  (``train_on_outer_half``: it sees the labels LDS sees); ``knn_gcn``: GCN on the kNN(10) graph (cosine);
- ``lds``: LDS on the candidate set given ∪ kNN(k) (``candidates="sparse"``), θ = 1 on the given edges and
  ``init_prob`` (0) on the kNN pairs; ``knn_lds``: the same with the given graph removed (θ = 1 on kNN(k),
  candidates kNN(2k));
- ``lds_sage`` / ``knn_lds_sage``: the same two with a GraphConv backbone (PyG's ``GraphConv``, sum
  aggregation: a node's own features pass through their own weight matrix, apart from the weighted sum over its
  neighbours, so a bad neighbourhood cannot wash them out; the built-in GCN averages a node with its neighbours).
  It runs as :class:`LinearFirstGraphConv`, the same function with the linear map applied before the sum (PyG's
  layer sums the raw features over every candidate edge: hundreds of times slower on 2,000 features);
  ``--lds '{"backbone": "graphconv"}'`` runs PyG's own layer;
- ``lds_auto``: ``lds`` with ``init_graph="auto"``: when the GCN trained without the given graph has an outer-half
  validation cross-entropy lower than with it by more than 2 standard errors (``LDS._init_check``,
  ``LDS._choose_init``: the graph hurts), θ₀ is kNN(k) or the empty graph, whichever has the lower outer loss;
  else the given graph; the given edges are candidates either way;
- ``lds_default``: ``LDS()`` with its defaults and the given graph, no grid (all pairs and the paper's SGD on
  graphs up to ``max_all_pairs``, ``init_graph="auto"``): what a user gets without tuning.

The ``lds``/``lds_sage`` runs pin ``init_graph="given"`` (θ₀ at the given graph, as the issue's protocol states).

Protocol: every LDS method but ``lds_default`` has the grid ``LDS_GRID`` (LDS's default on sparse candidates, Adam
with step 0.01, or the paper's SGD with lr 1.0); the configuration with the best mean validation score (the
dataset's metric on the early-stopping half of the validation nodes) over selection splits 0 and 1 is chosen, then
run on all splits 0–9 (the selection runs of the chosen configuration are reused for splits 0 and 1). The baselines
have no grid. ``--variant`` (``paper``/``refit``) and ``--lds JSON`` (extra LDS settings, e.g.
``'{"max_outer_iters": 50}'`` for the big graphs) are part of every LDS run's record key; each record also holds
every setting of the fitted model. Test labels are never used for a choice; the graph analysis of the LDS runs
(homophily of the given and the learned graph, mean θ by pair kind) reads all labels after the fit, for reporting
only.

    LDS_DATA_DIR=../shared/data python examples/heterophily.py --workers 2          # the whole protocol
    LDS_DATA_DIR=../shared/data python examples/heterophily.py --datasets cornell texas wisconsin synthetic_hetero
    LDS_DATA_DIR=../shared/data python examples/heterophily.py --datasets minesweeper tolokers \\
        --lds '{"max_outer_iters": 50}'
    LDS_DATA_DIR=../shared/data python examples/heterophily.py --variant refit --methods lds knn_lds
    LDS_DATA_DIR=../shared/data python examples/heterophily.py --datasets chameleon squirrel   # literature only
    python examples/heterophily.py --summary-only                  # rebuild summary.md from the records
    LDS_DATA_DIR=../shared/data python examples/heterophily.py --quick --datasets cornell synthetic_hetero

Resumable: every finished run is appended to ``results/heterophily/runs.jsonl`` and skipped when started
again; ``results/heterophily/summary.md`` summarises every run held. ``--quick`` runs a tiny budget (2 outer
iterations of at most 20 inner steps, 20 GCN steps) into ``results/heterophily_quick/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch
from sklearn.base import clone
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.dense.linear import Linear

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import (  # noqa: E402
    CHECKPOINT_ENV,
    Store,
    algorithm7_weights,
    fit_resumable,
    keep_freed_memory,
    mean_std,
    paired_cells,
    run_all,
    run_key,
    run_seconds,
)

MAIN_DATASETS = ("chameleon_filtered", "squirrel_filtered", "actor", "cornell", "texas", "wisconsin", "minesweeper",
                 "tolokers")
LITERATURE_ONLY = ("chameleon", "squirrel")  # duplicate nodes leak between train and test (Platonov et al.)
SYNTHETIC = "synthetic_hetero"
DATASETS = (SYNTHETIC, *MAIN_DATASETS, *LITERATURE_ONLY)
DEFAULT_DATASETS = (SYNTHETIC, "cornell", "texas", "wisconsin", "chameleon_filtered", "squirrel_filtered", "actor",
                    "minesweeper", "tolokers")
SPLITS = tuple(range(10))
SYNTHETIC_SEEDS = tuple(range(4))
SELECTION_SPLITS = (0, 1)

#: baseline -> (GCNBaseline graph, train_on_outer_half)
BASELINES: dict[str, tuple[str, bool]] = {"mlp": ("none", False), "gcn": ("given", False),
                                          "gcn_val": ("given", True), "knn_gcn": ("knn", False)}
#: LDS method -> (keeps the given graph, backbone, initial graph θ₀ of LDS's init_graph)
LDS_METHODS: dict[str, tuple[bool, str, str]] = {
    "lds": (True, "gcn", "given"), "knn_lds": (False, "gcn", "knn"), "lds_sage": (True, "graphconv", "given"),
    "knn_lds_sage": (False, "graphconv", "knn"), "lds_auto": (True, "gcn", "auto"),
    "lds_default": (True, "gcn", "auto")}
#: LDS methods run with LDS's defaults only: no grid, no LDS_BASE
DEFAULT_LDS_METHODS = ("lds_default",)
METHODS = (*BASELINES, *LDS_METHODS)
#: the baselines the best LDS method is compared against (the best of them on validation)
REFERENCE_BASELINES = ("gcn", "mlp", "gcn_val")
#: LDS's default outer step (Adam, 0.01, on these sparse candidate sets) and the paper's projected SGD (lr 1.0)
LDS_GRID: list[dict[str, Any]] = [{"outer_optimizer": "adam", "outer_lr": 0.01},
                                  {"outer_optimizer": "sgd", "outer_lr": 1.0}]
LDS_BASE: dict[str, Any] = {"candidates": "sparse"}  # θ = 1 on the initial graph, init_prob (0) elsewhere
QUICK_LDS: dict[str, Any] = {"max_outer_iters": 2, "max_inner_steps": 20, "num_samples": 2}
QUICK_GCN: dict[str, Any] = {"max_steps": 20, "min_steps": 0}
DEFAULT_VARIANT = "paper"  # LDS's default variant, written explicitly into the record keys


def grid_of(method: str) -> list[dict[str, Any]]:
    """The selection grid of an LDS method: ``LDS_GRID``, or the defaults alone for ``DEFAULT_LDS_METHODS``."""
    return [{}] if method in DEFAULT_LDS_METHODS else LDS_GRID


# ----------------------------------------------------------------------------- the GraphConv backbone


class LinearFirstGraphConv(MessagePassing):
    """The ``_sage`` methods' layer: PyG's ``GraphConv(aggr="add")``, ``h_i = W_root x_i + b + Σ_j a_ij W_rel x_j``
    (the node's own features through their own weights, apart from its neighbours'), with ``W_rel`` applied before
    the sum: the same function, but messages ``out_channels`` wide. PyG's GraphConv sums the raw features over
    every candidate edge first: on chameleon_filtered (2,325 features, 30,000 directed candidate edges) one LDS
    inner step then took 240 times as long as with the built-in GCN."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(aggr="add")
        self.lin_rel = Linear(in_channels, out_channels, bias=False)
        self.lin_root = Linear(in_channels, out_channels, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin_rel.reset_parameters()
        self.lin_root.reset_parameters()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        return self.propagate(edge_index, x=self.lin_rel(x), edge_weight=edge_weight) + self.lin_root(x)

    def message(self, x_j: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        return edge_weight.view(-1, 1) * x_j


# ----------------------------------------------------------------------------- data


def synthetic_hetero(seed: int) -> Any:
    """The issue's heterophilous planted partition: 4 classes × 150 nodes, 16 features, 6 edges per node of which
    15 % within a class (``planted_partition(noise=0.85)``), and exactly 10 training and 30 validation nodes
    per class (a seeded draw per class; the others are test nodes)."""
    from lds.datasets import planted_partition

    data = planted_partition(600, num_classes=4, num_features=16, avg_degree=6.0, noise=0.85,
                             num_train_per_class=10, num_val=120, seed=seed)
    g = torch.Generator().manual_seed(seed + 7_777)
    train = torch.zeros(600, dtype=torch.bool)
    val = torch.zeros(600, dtype=torch.bool)
    for c in range(4):
        idx = torch.nonzero(data.y == c, as_tuple=True)[0]
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        train[idx[:10]] = True
        val[idx[10:40]] = True
    data.train_mask, data.val_mask, data.test_mask = train, val, ~(train | val)
    data.metric = "accuracy"
    return data


def load(dataset: str, split: int) -> Any:
    """One dataset with the masks of split ``split`` (for ``synthetic_hetero``: the graph of seed ``split``)."""
    if dataset == SYNTHETIC:
        return synthetic_hetero(split)
    from lds.datasets import load_heterophilous

    return load_heterophilous(dataset, split=split)


def splits_of(dataset: str, splits: Iterable[int]) -> list[int]:
    """The requested splits that exist for ``dataset`` (synthetic_hetero has seeds 0–3)."""
    return [s for s in splits if dataset != SYNTHETIC or s in SYNTHETIC_SEEDS]


# ----------------------------------------------------------------------------- graph analysis (pure)


def _pair_keys(edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """Sorted unique keys ``min·n + max`` of the undirected pairs of ``edge_index`` (self-loops dropped)."""
    i, j = edge_index[0].long(), edge_index[1].long()
    keep = i != j
    lo, hi = torch.minimum(i, j)[keep], torch.maximum(i, j)[keep]
    return torch.unique(lo * n + hi)


def edge_homophily(edge_index: torch.Tensor, y: torch.Tensor) -> float | None:
    """Share of the undirected edges joining two nodes of one class, over the edges with both ends labelled
    (label ≥ 0); None when there is no such edge. Each edge counts once, whichever directions it is stored in."""
    n = y.numel()
    keys = _pair_keys(edge_index, n)
    a, b = keys // n, keys % n
    labelled = (y[a] >= 0) & (y[b] >= 0)
    if not bool(labelled.any()):
        return None
    return float((y[a] == y[b])[labelled].double().mean())


def _mean(values: torch.Tensor) -> float | None:
    return float(values.double().mean()) if values.numel() else None


def pair_membership(pairs: torch.Tensor, edge_index: torch.Tensor | None, n: int) -> torch.Tensor:
    """Which of the undirected ``pairs`` (2, P) are edges of ``edge_index`` (either direction), as a bool (P,)."""
    pairs = pairs.cpu().long()
    if edge_index is None or edge_index.numel() == 0:
        return torch.zeros(pairs.size(1), dtype=torch.bool)
    edge_keys = _pair_keys(edge_index.cpu(), n)
    keys = torch.minimum(pairs[0], pairs[1]) * n + torch.maximum(pairs[0], pairs[1])
    pos = torch.searchsorted(edge_keys, keys).clamp_max(edge_keys.numel() - 1)
    return edge_keys[pos] == keys


def graph_analysis(pairs: torch.Tensor, theta: torch.Tensor, y: torch.Tensor,
                   given_edge_index: torch.Tensor | None) -> dict[str, Any]:
    """The distribution θ on the candidate ``pairs`` (2, P) against the labels ``y`` (−1: unlabelled).

    - ``learned_homophily``: Σθ over same-class pairs / Σθ over pairs with both ends labelled (the expected
      graph's edge homophily);
    - ``theta_same_class`` / ``theta_other_class``: mean θ over the labelled same-class / other-class candidates;
    - ``theta_given`` / ``theta_not_given``: mean θ over the candidates that are / are not given edges;
    - ``given_homophily``: edge homophily of the given graph (None without one).
    """
    theta = theta.detach().double().cpu()
    pairs = pairs.cpu().long()
    ya, yb = y[pairs[0]], y[pairs[1]]
    labelled = (ya >= 0) & (yb >= 0)
    same = labelled & (ya == yb)
    other = labelled & (ya != yb)
    mass = float(theta[labelled].sum())
    given = pair_membership(pairs, given_edge_index, y.numel())
    return {
        "given_homophily": (edge_homophily(given_edge_index, y)
                            if given_edge_index is not None and given_edge_index.numel() else None),
        "learned_homophily": float(theta[same].sum()) / mass if mass > 0 else None,
        "theta_same_class": _mean(theta[same]), "theta_other_class": _mean(theta[other]),
        "theta_given": _mean(theta[given]), "theta_not_given": _mean(theta[~given]),
        "candidates": int(pairs.size(1)), "given_candidates": int(given.sum()), "expected_edges": float(theta.sum()),
    }


# ----------------------------------------------------------------------------- runs


def make_task(dataset: str, method: str, split: int, quick: bool, config: dict[str, Any] | None = None,
              variant: str = DEFAULT_VARIANT, lds: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's identity. Selection and reporting runs share it (no role), so that the chosen configuration's
    selection runs are its reporting runs on splits 0 and 1. Baselines have no config, variant or LDS settings."""
    task: dict[str, Any] = {"exp": "heterophily", "dataset": dataset, "method": method, "split": split,
                            "quick": quick}
    if method in LDS_METHODS:
        task.update(config=dict(config or {}), variant=variant, lds=dict(lds or {}))
    return task


def _scores(probs: torch.Tensor, y: torch.Tensor, stop_mask: torch.Tensor, test_mask: torch.Tensor,
            metric: str) -> dict[str, Any]:
    from lds.metrics import evaluate

    return {"metric": metric,
            "val_score": evaluate(probs, y, stop_mask, metric), "test_score": evaluate(probs, y, test_mask, metric),
            "val_acc": evaluate(probs, y, stop_mask, "accuracy"), "test_acc": evaluate(probs, y, test_mask, "accuracy")}


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v) for k, v in params.items()}


def lds_inputs(data: Any, method: str, variant: str, extra: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """What an LDS ``method`` is fitted on (the data, without its graph for the kNN methods) and its settings,
    ``extra`` (quick budget, grid point, task settings) last."""
    keeps_graph, backbone, init_graph = LDS_METHODS[method]
    fit_data = data.clone()
    if not keeps_graph:
        fit_data.edge_index = None  # no input graph: θ starts at kNN(k)
    base = {} if method in DEFAULT_LDS_METHODS else {**LDS_BASE, "init_graph": init_graph}
    return fit_data, {**base, "backbone": backbone, "variant": variant, **extra}


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """Fit one method on one (dataset, split); scores in the dataset's metric (validation: the early-stopping
    half), accuracies, settings, and for LDS the fit's statistics and the graph analysis."""
    from lds import LDS, GCNBaseline
    from lds.model import split_validation

    data = load(task["dataset"], task["split"])
    metric = str(getattr(data, "metric", "accuracy"))
    n = data.num_nodes
    split, method, quick = task["split"], task["method"], task["quick"]
    y = data.y.long()
    test_mask = data.test_mask
    given = data.edge_index
    if method in BASELINES:
        graph, on_outer = BASELINES[method]
        model = GCNBaseline(graph=graph, seed=split, train_on_outer_half=on_outer,
                            **(QUICK_GCN if quick else {})).fit(data)
        stop = torch.zeros(n, dtype=torch.bool)
        stop[split_validation(data.val_mask, split)[1]] = True
        out = _scores(model.predict_proba(data), y, stop, test_mask, metric)
        pairs = model.graph_[1]
        out.update(settings=_plain(model.get_params()), steps=model.steps_, best_val_acc=model.best_val_acc_,
                   graph_edges=int(pairs.size(1)),
                   graph_homophily=edge_homophily(pairs, y) if pairs.numel() else None)
        return out
    fit_data, settings = lds_inputs(data, method, task["variant"], {**(QUICK_LDS if quick else {}),
                                                                   **task["config"], **task["lds"]})
    if settings["backbone"] == "graphconv" and "backbone" not in task["lds"]:  # PyG's own only when asked for
        settings["backbone"] = LinearFirstGraphConv
    model = fit_resumable(LDS(seed=split, verbose=False, **settings), fit_data, task)
    stop = torch.zeros(n, dtype=torch.bool)
    stop[model.val_stop_idx_] = True
    out = _scores(model.predict_proba(fit_data), y, stop, test_mask, metric)
    if task["variant"] == "refit":  # the same fit's Algorithm 7 weights: an exactly paired comparison
        with algorithm7_weights(model):
            out["paper"] = _scores(model.predict_proba(fit_data), y, stop, test_mask, metric)
    dist = model.distribution_
    analysis = graph_analysis(dist.pairs, dist.probs, y, given)
    # the initial θ, rebuilt as the fit built it (1 on the given graph or kNN(k), init_prob elsewhere); same kNN
    # search and tie-breaking, so Σθ equals initial_num_edges_
    start = clone(model).initial_distribution(fit_data, init_graph=model.init_graph_)
    theta0 = start.probs if torch.equal(start.pairs.cpu(), dist.pairs.cpu()) else None
    analysis["initial"] = graph_analysis(dist.pairs, theta0, y, given) if theta0 is not None else {}
    used = _plain(model.get_params())
    if model.backbone is LinearFirstGraphConv:
        used["backbone"] = "graphconv (LinearFirstGraphConv)"
    out.update(settings=used, best_val_acc=model.best_val_acc_, resumed=model.resumed_,
               init_graph=model.init_graph_, init_check=model.init_check_,
               expected_edges=dist.expected_num_edges(), initial_edges=model.initial_num_edges_,
               fit_s=model.fit_time_, setup_s=getattr(model, "setup_time_", None),
               best_iteration=model.best_iteration_, outer_iters=len(model.history_), analysis=analysis)
    return out


# ----------------------------------------------------------------------------- selection and summary (pure)


def choose_config(records: dict[str, dict[str, Any]], make: Callable[[dict[str, Any], int], dict[str, Any]],
                  grid: list[dict[str, Any]], splits: Iterable[int]) -> tuple[dict[str, Any] | None, list[float]]:
    """The grid point with the best mean validation score (``val_score``) over ``splits`` (ties: first in grid
    order), or None while a run is missing or failed; with the mean score of every grid point (NaN: missing)."""
    splits = list(splits)
    best, best_score, means, complete = None, -float("inf"), [], True
    for cfg in grid:
        recs = [records.get(run_key(make(cfg, s))) for s in splits]
        ok = [r for r in recs if r is not None and r.get("status") == "ok"]
        if len(ok) < len(splits):
            complete = False
            means.append(float("nan"))
            continue
        score = statistics.fmean(r["val_score"] for r in ok)
        means.append(score)
        if score > best_score:
            best, best_score = cfg, score
    return (best if complete else None), means


def entry_label(method: str, variant: str | None, lds: dict[str, Any] | None) -> str:
    """A method as shown in the tables: LDS runs with a non-default variant or extra settings are told apart."""
    label = method
    if variant not in (None, DEFAULT_VARIANT):
        label += f" [{variant}]"
    if lds:
        label += " " + json.dumps(lds, sort_keys=True)
    return label


def collect(records: Iterable[dict[str, Any]], quick: bool) -> dict[tuple[str, str], dict[str, Any]]:
    """The reported runs per (dataset, entry): every baseline run, and the LDS runs of the configuration chosen
    on the selection splits. Value: ``{"method", "config", "means", "runs": {split: record}}`` (``runs`` empty and
    ``config`` None while the selection is pending)."""
    recs = [r for r in records if r["task"].get("exp") == "heterophily" and r["task"].get("quick") == quick]
    by_key = {r["key"]: r for r in recs}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in recs:
        t = r["task"]
        label = entry_label(t["method"], t.get("variant"), t.get("lds"))
        g = groups.setdefault((t["dataset"], label), {"method": t["method"], "config": None, "means": [], "runs": {},
                                                      "variant": t.get("variant"), "lds": t.get("lds")})
        if t["method"] in BASELINES and r.get("status") == "ok":
            g["runs"][t["split"]] = r
    for (dataset, _), g in groups.items():
        if g["method"] not in LDS_METHODS:
            continue

        def make(c: dict[str, Any], s: int, d: str = dataset, gr: dict[str, Any] = g) -> dict[str, Any]:
            return make_task(d, gr["method"], s, quick, c, gr["variant"], gr["lds"])

        cfg, means = choose_config(by_key, make, grid_of(g["method"]), SELECTION_SPLITS)
        g["config"], g["means"] = cfg, means
        if cfg is not None:
            for r in recs:
                if r["key"] == run_key(make(cfg, r["task"]["split"])) and r.get("status") == "ok":
                    g["runs"][r["task"]["split"]] = r
    return groups


def _fmean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _cell(recs: list[dict[str, Any]], field: str) -> str:
    return mean_std([r[field] for r in recs]) + f" ({len(recs)})" if recs else "–"


def _analysis_mean(recs: list[dict[str, Any]], field: str, initial: bool = False) -> str:
    """Mean of one analysis value over runs (of the initial θ when ``initial``), 3 decimals; "–" when absent."""
    vals = [(r["analysis"].get("initial", {}) if initial else r["analysis"]).get(field) for r in recs]
    kept = [v for v in vals if v is not None]
    return f"{_fmean(kept):.3f}" if kept else "–"


def summary_lines(records: Iterable[dict[str, Any]], quick: bool) -> list[str]:
    """The markdown summary of every run held: (a) scores, (b) paired LDS-against-baseline differences, (c) the
    homophily of the given and learned graphs, (d) wall time, then the selection and the splits held."""
    records = list(records)
    groups = collect(records, quick)
    datasets = [d for d in DATASETS if any(k[0] == d for k in groups)]
    entries = sorted({k[1] for k in groups}, key=lambda e: (METHODS.index(e.split()[0]), e))

    def runs(d: str, e: str) -> list[dict[str, Any]]:
        g = groups.get((d, e))
        return [g["runs"][s] for s in sorted(g["runs"])] if g else []

    def test_scores(d: str, e: str) -> dict[int, float]:
        """Split → test score of the runs reported for ``e`` on ``d`` (empty when none)."""
        return {s: r["test_score"] for s, r in groups.get((d, e), {}).get("runs", {}).items()}

    def metric(d: str) -> str:
        for e in entries:
            for r in runs(d, e):
                return "ROC-AUC" if r["metric"] == "roc_auc" else "accuracy"
        return "–"

    head = "| dataset | metric | " + " | ".join(entries) + " |"
    rule = "|---|---|" + "---|" * len(entries)
    main = [d for d in datasets if d not in LITERATURE_ONLY]
    lit = [d for d in datasets if d in LITERATURE_ONLY]

    def score_table(ds: list[str]) -> list[str]:
        return [head, rule, *(f"| {d} | {metric(d)} | " + " | ".join(_cell(runs(d, e), "test_score") for e in entries)
                              + " |" for d in ds)]

    text = ["# Heterophilous graphs (issue 25)" + (" — quick smoke test, tiny budget" if quick else ""), "",
            "Test score (%) in the dataset's metric, mean ± std over the splits held (their number in brackets; "
            "synthetic_hetero: seeds). LDS methods: the configuration of `LDS_GRID` with the best mean validation "
            f"score over splits {list(SELECTION_SPLITS)} (early-stopping half); baselines: no grid.", "",
            "## (a) Every method on every dataset", "", *score_table(main)]
    if lit:
        text += ["", "Literature only: the original chameleon and squirrel hold duplicate nodes that leak between "
                 "train and test (Platonov et al. 2023); not counted below.", "", *score_table(lit)]
    text += ["", "Validation score (%), the same runs (early-stopping half):", "", head, rule,
             *(f"| {d} | {metric(d)} | " + " | ".join(_cell(runs(d, e), "val_score") for e in entries) + " |"
               for d in datasets)]

    # (b) the best LDS entry against the best reference baseline, both chosen on validation
    pair_rows = ["| dataset | best LDS (val) | best of gcn/mlp/gcn_val (val) | splits | LDS − baseline | "
                 "LDS ahead on | LDS ≥ baseline |", "|---|---|---|---|---|---|---|"]
    count, counted = 0, 0
    for d in datasets:
        full = max((len(runs(d, e)) for e in entries), default=0)  # entries still missing splits are not eligible

        def best(candidates: list[str], d: str = d, full: int = full) -> str | None:
            scored = [(_fmean([r["val_score"] for r in runs(d, e)]), -i, e) for i, e in enumerate(candidates)
                      if runs(d, e) and len(runs(d, e)) == full]
            return max(scored)[2] if scored else None

        lds_e = best([e for e in entries if groups.get((d, e), {}).get("method") in LDS_METHODS])
        base_e = best([e for e in entries if e in REFERENCE_BASELINES])
        if lds_e is None or base_e is None:
            continue
        a, b = test_scores(d, lds_e), test_scores(d, base_e)
        n, cells, ahead = paired_cells(a, [b])
        if not n:
            continue
        keys = sorted(set(a) & set(b))
        ok = _fmean([a[k] - b[k] for k in keys]) >= 0
        if d not in LITERATURE_ONLY and d != SYNTHETIC:
            counted += 1
            count += ok
        pair_rows.append(f"| {d} | {lds_e} | {base_e} | {n} | {cells[0]} | {ahead} of {n} | {'yes' if ok else 'no'} |")
    text += ["", "## (b) Best LDS method against the best of GCN, MLP and gcn_val", "",
             "Both chosen per dataset by mean validation score over their splits (never test), among the methods "
             "that hold as many splits as the best-covered method of the dataset (a method still missing splits "
             "waits). Paired test-score differences (points) over the splits both hold.", "", *pair_rows, "",
             f"LDS ≥ the best baseline (mean paired difference ≥ 0) on {count} of {counted} real datasets "
             "(synthetic_hetero and the literature-only datasets not counted)."]

    # (b2) the LDS methods with init_graph="auto" against each baseline, paired
    auto_methods = [e for e in ("lds_default", "lds_auto") if e in entries]
    bases = [e for e in ("gcn_val", "mlp", "gcn", "knn_gcn") if e in entries]
    vs_rows = ["| dataset | method | " + " | ".join(f"− {name}" for name in bases) + " |",
               "|---|---|" + "---|" * len(bases)]
    for d in datasets:
        for auto_e in auto_methods:
            if (d, auto_e) not in groups:
                continue
            mine = test_scores(d, auto_e)
            vs_cells = []
            for base_name in bases:
                n, diff, ahead = paired_cells(mine, [test_scores(d, base_name)])
                vs_cells.append(f"{diff[0]} ({ahead} of {n} ahead)" if n else "–")
            vs_rows.append(f"| {d} | {auto_e} | " + " | ".join(vs_cells) + " |")
    if len(vs_rows) > 2:
        text += ["", "## (b2) The init_graph=\"auto\" methods against each baseline", "",
                 "Paired test-score differences (points, mean ± std over the splits both hold; ahead: the LDS "
                 "method higher). `lds_default` is `LDS()` untuned; `lds_auto` has the `LDS_GRID` selection.", "",
                 *vs_rows]

    # (b3) variants (issue 26) against the same fit's Algorithm 7 weights and the control
    var_rows = ["| dataset | method | splits | variant | Algorithm 7 weights | gcn_val | variant − Algorithm 7 | "
                "variant − gcn_val | Algorithm 7 − gcn_val |", "|---|---|---|---|---|---|---|---|---|"]
    for d in datasets:
        for e in entries:
            rs = [r for r in runs(d, e) if "paper" in r]  # only refit runs score Algorithm 7's weights too
            if not rs:
                continue
            mine = {r["task"]["split"]: r["test_score"] for r in rs}
            paper = {r["task"]["split"]: r["paper"]["test_score"] for r in rs}
            control = test_scores(d, "gcn_val")
            cells = []
            for a, b in ((mine, paper), (mine, control), (paper, control)):
                n, (cell,), ahead = paired_cells(a, [b], interval=True)  # each over the splits both of its pair hold
                cells.append(f"{cell} ({ahead} of {n} ahead)" if n else "–")
            var_rows.append(f"| {d} | {e} | {len(rs)} | {mean_std(list(mine.values()))} | "
                            f"{mean_std(list(paper.values()))} | {_cell(runs(d, 'gcn_val'), 'test_score')} | "
                            + " | ".join(cells) + " |")
    if len(var_rows) > 2:
        text += ["", "## (b3) LDS variants against the same fit's Algorithm 7 weights and the control", "",
                 "A `refit` run fits Algorithm 7 unchanged, then refits the weights on train ∪ the outer validation "
                 "half (`LDS(variant=\"refit\")`); its record also holds the test score of the same fit's Algorithm 7 "
                 "weights. Configuration chosen on the refit's validation score. Test score (%), then paired "
                 "differences (points, mean ± std over the splits both hold [95 % Student-t interval of the "
                 "mean]).", "", *var_rows]

    # (c) homophily
    hom_rows = ["| dataset | method | given graph | learned (θ-weighted) | θ same class | θ other class | "
                "θ given edges | θ other candidates | expected edges | θ₀: given / kNN(k) / empty |",
                "|---|---|---|---|---|---|---|---|---|---|"]
    knn_rows = []
    for d in datasets:
        knn = [r["graph_homophily"] for r in runs(d, "knn_gcn") if r.get("graph_homophily") is not None]
        giv = [r["graph_homophily"] for r in runs(d, "gcn") if r.get("graph_homophily") is not None]
        if knn or giv:
            knn_rows.append(f"| {d} | {f'{_fmean(giv):.3f}' if giv else '–'} | "
                            f"{f'{_fmean(knn):.3f}' if knn else '–'} |")
        for e in entries:
            rs = [r for r in runs(d, e) if "analysis" in r]
            if not rs:
                continue
            cells = [_analysis_mean(rs, "given_homophily")]
            for f in ("learned_homophily", "theta_same_class", "theta_other_class", "theta_given", "theta_not_given"):
                cells.append(f"{_analysis_mean(rs, f, initial=True)} → {_analysis_mean(rs, f)}")
            initial, learned = (_fmean([r[f] for r in rs]) for f in ("initial_edges", "expected_edges"))
            cells.append(f"{initial:.0f} → {learned:.0f}")
            chosen = [r["init_graph"] for r in rs if r.get("init_graph")]
            cells.append(" / ".join(str(chosen.count(c)) for c in ("given", "knn", "none")) if chosen else "–")
            hom_rows.append(f"| {d} | {e} | " + " | ".join(cells) + " |")
    text += ["", "## (c) Homophily: given against learned graph", "",
             "Edge homophily (share of edges within a class, over edges with both ends labelled) of the given "
             "graph; the θ-weighted share over the candidate pairs for θ, initial → learned (the initial θ is 1 on "
             "the given graph, or on kNN(k) for the knn_ methods, and init_prob on the other candidates). Mean θ "
             "over candidate pairs within one class / across two classes, and over candidates that are / are not "
             "given edges; expected number of edges Σθ. Means over the reported splits; every label, test labels "
             "included, is read here for reporting only. θ₀: on how many splits the initial graph was the given one, "
             "kNN(k) or the empty graph (kNN(k) always for knn_ methods; for lds_auto and lds_default "
             "`init_graph=\"auto\"` replaces a given graph that hurts by kNN(k) or the empty graph, whichever has "
             "the lower outer loss; the initial θ columns then describe that graph, and an empty θ₀ has no "
             "initial homophily).", "", *hom_rows]
    if knn_rows:
        text += ["", "Edge homophily of the baselines' graphs:", "", "| dataset | given | kNN(10) |", "|---|---|---|",
                 *knn_rows]

    # (d) wall time
    time_rows = ["| dataset | " + " | ".join(entries) + " | total, every run held (h, one thread) |",
                 "|---|" + "---|" * (len(entries) + 1)]
    held_recs = [r for r in records if r["task"].get("exp") == "heterophily" and r["task"].get("quick") == quick
                 and r.get("status") == "ok"]
    for d in datasets:
        alls = [r for r in held_recs if r["task"]["dataset"] == d]
        cells = []
        for e in entries:
            secs = [run_seconds(r) for r in runs(d, e)]
            cells.append(f"{statistics.median(secs):.1f}" if secs else "–")
        time_rows.append(f"| {d} | " + " | ".join(cells) + f" | {sum(run_seconds(r) for r in alls) / 3600:.2f} |")
    text += ["", "## (d) Wall time", "", "Median seconds per reported run (a resumed fit counts every process that "
             "ran it); total over every run held, selection runs included.", "", *time_rows]

    sel_rows = ["| dataset | method | " + " | ".join(json.dumps(c) for c in LDS_GRID) + " | chosen |",
                "|---|---|" + "---|" * (len(LDS_GRID) + 1)]
    held = []
    for d in datasets:
        for e in entries:
            g = groups.get((d, e))
            if g is None:
                continue
            if g["method"] in LDS_METHODS:
                cells = ["–" if v != v else f"{100 * v:.1f}" for v in g["means"]]
                cells += ["(no grid)"] * (len(LDS_GRID) - len(cells))
                sel_rows.append(f"| {d} | {e} | " + " | ".join(cells) + f" | {g['config'] or 'pending'} |")
            held.append(f"- {d} / {e}: splits {sorted(g['runs'])}")
    text += ["", "## LDS selection: mean validation score (%) over the selection splits", "", *sel_rows, "",
             "## Splits held", "", *held]
    return text


def write_summary(store: Store, out: str, quick: bool) -> list[str]:
    lines = summary_lines(store.records.values(), quick)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return lines


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS), choices=DATASETS)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--splits", nargs="+", type=int, default=None,
                   help="reported splits (default 0-9; synthetic_hetero: seeds 0-3; --quick: 0-2)")
    p.add_argument("--variant", default=DEFAULT_VARIANT, choices=["paper", "refit"], help="LDS variant")
    p.add_argument("--lds", default="{}", help="extra LDS settings as JSON, part of the record key")
    p.add_argument("--workers", type=int, default=1, help="fits side by side (one thread each when > 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per fit")
    p.add_argument("--quick", action="store_true", help="tiny budget smoke test (separate records)")
    p.add_argument("--out", default="results/heterophily")
    p.add_argument("--summary-only", action="store_true", help="only rebuild the summary from the records")
    args = p.parse_args(argv)
    try:
        extra = json.loads(args.lds)
    except json.JSONDecodeError as exc:
        p.error(f"--lds must be a JSON object: {exc}")
    if not isinstance(extra, dict):
        p.error("--lds must be a JSON object, e.g. '{\"max_outer_iters\": 50}'")
    splits = args.splits if args.splits is not None else list(range(3) if args.quick else SPLITS)
    out = args.out + ("_quick" if args.quick else "")
    store = Store(os.path.join(out, "runs.jsonl"))
    os.environ.setdefault(CHECKPOINT_ENV, os.path.join(out, "ckpt"))
    keep_freed_memory()  # fewer page faults from the per-step pair-sized tensors (results unchanged)

    def lds_task(d: str, m: str, c: dict[str, Any], s: int) -> dict[str, Any]:
        return make_task(d, m, s, args.quick, c, args.variant, extra)

    for dataset in ([] if args.summary_only else args.datasets):
        here = splits_of(dataset, splits)
        lds_methods = [m for m in args.methods if m in LDS_METHODS]
        first = [make_task(dataset, m, s, args.quick) for m in args.methods if m in BASELINES for s in here]
        first += [lds_task(dataset, m, c, s) for m in lds_methods for c in grid_of(m) for s in SELECTION_SPLITS]
        run_all(run_one, first, store, workers=args.workers, threads=args.threads)
        store.refresh()
        report = []
        for m in lds_methods:
            def make(c: dict[str, Any], s: int, d: str = dataset, m: str = m) -> dict[str, Any]:
                return lds_task(d, m, c, s)

            cfg, _ = choose_config(store.records, make, grid_of(m), SELECTION_SPLITS)
            if cfg is None:
                print(f"{dataset}/{m}: selection incomplete (a run failed, or another runner on this store is still "
                      "running one); reporting runs skipped: start again once it is recorded")
                continue
            report += [lds_task(dataset, m, cfg, s) for s in here]
        run_all(run_one, report, store, workers=args.workers, threads=args.threads)
    store.refresh()
    lines = write_summary(store, out, args.quick)
    print("\n".join(lines[: lines.index("## (c) Homophily: given against learned graph")]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
