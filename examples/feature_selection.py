"""A learned feature-selection mask: a discrete hyperparameter beyond graphs, three estimators compared.

Issue 14. Built only on ``bilevel_core``'s public API, with the machinery of LDS: a Bernoulli mask
z ~ Ber(θ) over the input features is the outer variable; the inner model is a softmax regression on
the masked features x ⊙ z (max-abs scaled), trained by gradient descent from w = 0; the outer objective is the
validation cross-entropy plus a sparsity penalty α·mean(θ); θ is kept in [0, 1] by projection.

- ``st`` (straight-through) and ``gumbel_soft`` / ``gumbel_hard`` (binary concrete, temperature 0.5):
  a fresh mask at every inner step; every τ = 10 steps the truncated reverse hypergradient of the
  window and one θ update, as LDS does (Algorithm 7), over inner runs of T = 100 steps;
- ``sf`` (score function with a moving-average baseline): one mask per hyper-step, the inner run
  trained to T without any graph, and only the value f_T is used.

All use Adam (lr 0.05) on θ and the same number of θ updates. The learned mask is read as θ > 0.5;
a fresh softmax regression on the kept features gives validation and test accuracy. Baseline:
L1-regularised logistic regression (scikit-learn, saga) over a grid of C, features kept = those with
a nonzero coefficient. Also: the variance of each estimator's hypergradient over 100 draws at the
initial θ = 0.5, and the time of one hyper-step, for these four and for two unbiased, lower-variance
score-function estimators (issue 27): ``rloo4`` (REINFORCE leave-one-out, 4 samples) and ``disarm``
(DisARM, an antithetic pair).

Data: scikit-learn digits (64 pixels; 900 train / 400 validation / 497 test) and 20news (236 TF-IDF
features from ``lds.datasets.load_uci("20news")``; 3000 / 1000 / 5607), split seeded.

    python examples/feature_selection.py                  # about 20 min on one core
    python examples/feature_selection.py --quick          # smoke test

Resumable: one JSON line per finished run in ``results/feature_selection/runs.jsonl``; summary in
``results.md`` and ``accuracy_vs_features.png``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import Store, pyplot, run_all  # noqa: E402

ESTIMATORS = ("st", "gumbel_soft", "gumbel_hard", "sf")
# unbiased Bernoulli estimators with lower variance than sf (issue 27): in the variance table only
VARIANCE_ONLY = ("rloo4", "disarm")
ALPHAS = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0)
L1_C = tuple(10 ** (k / 4) for k in range(-12, 5))  # 1e-3 … 10
INNER_LR = 0.5  # gradient descent on the head; Adam's first steps from w = 0 give exploding hypergradients
BOUND = 1e-3  # θ is projected onto [BOUND, 1 − BOUND]: the relaxations have no gradient at exactly 0 or 1
SIZES = {"digits": (900, 400), "20news": (3000, 1000)}


# ----------------------------------------------------------------------------- data and model


def load_split(name: str, seed: int = 0) -> dict[str, Any]:
    """Max-abs scaled features (training statistics) and a seeded train/val/test split."""
    import torch

    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    elif name == "20news":
        from lds.datasets import load_uci

        data = load_uci("20news", seed=0)
        X, y = data.x.float(), data.y
    else:
        raise ValueError(f"unknown dataset {name!r}; choose 'digits' or '20news'.")
    n_tr, n_va = SIZES[name]
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    tr, va, te = perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:]
    X = X / X[tr].abs().amax(0).clamp_min(1e-12)  # max-abs scaling: a masked feature is 0, sparsity kept
    return {"X": X[tr], "y": y[tr], "Xv": X[va], "yv": y[va], "Xt": X[te], "yt": y[te],
            "num_classes": int(y.max()) + 1}


def make_estimator(name: str):
    from bilevel_core import DisARM, GumbelSoftmax, LeaveOneOut, ScoreFunction, StraightThrough

    factories: dict[str, Callable[[], Any]] = {
        "st": StraightThrough, "gumbel_soft": lambda: GumbelSoftmax(0.5, hard=False),
        "gumbel_hard": lambda: GumbelSoftmax(0.5, hard=True), "sf": lambda: ScoreFunction(0.9),
        "rloo4": lambda: LeaveOneOut(4), "disarm": DisARM}
    return factories[name]()


def _logits(w, X, z):
    return (X * z) @ w[0] + w[1]


def _zeros(d: int, c: int):
    import torch

    return torch.zeros(d, c), torch.zeros(c)


def train_head(X, y, z, c: int, T: int, lr: float | None = None):
    """Softmax regression on ``X ⊙ z`` by T gradient steps from 0 (the inner problem, detached)."""
    import torch.nn.functional as F

    from bilevel_core import GradientDescent

    dyn = GradientDescent(lambda w, hp: F.cross_entropy(_logits(w, X, z), y), lr=lr or INNER_LR)
    state = dyn.init(_zeros(X.size(1), c), ())
    for _ in range(T):
        state = dyn(state, (), create_graph=False)
    return state.params


def accuracy(w, X, y, z) -> float:
    return float((_logits(w, X, z).argmax(1) == y).double().mean())


# ----------------------------------------------------------------------------- learning the mask


def mask_problem(s: dict[str, Any], est, alpha: float = 0.0):
    """The bilevel mask problem for a pathwise estimator: the inner dynamics (gradient descent on the training
    loss of the head on ``X ⊙ z``, a fresh ``z`` from the per-step uniforms) and ``outer_for(u)``, the validation
    loss plus ``α·mean θ`` for the mask drawn from uniforms ``u``."""
    import torch.nn.functional as F

    from bilevel_core import GradientDescent

    X, y, Xv, yv = s["X"], s["y"], s["Xv"], s["yv"]

    def inner(w, hp, u):
        return F.cross_entropy(_logits(w, X, est.sample(hp[0], uniforms=u)), y)

    def outer_for(u):
        def outer(w, hp):
            z = est.sample(hp[0], uniforms=u)
            return est.surrogate(F.cross_entropy(_logits(w, Xv, z), yv) + alpha * hp[0].mean(), hp[0], z)

        return outer

    return GradientDescent(inner, lr=INNER_LR), outer_for


def learn_mask(s: dict[str, Any], estimator: str, alpha: float, *, T: int = 100, tau: int = 10,
               outer_iters: int = 30, outer_lr: float = 0.05, seed: int = 0,
               theta0: float = 0.5) -> dict[str, Any]:
    """Learn θ with one estimator; returns θ and timing. Same number of θ updates for every estimator."""
    import torch
    import torch.nn.functional as F

    from bilevel_core import hypergradient

    X, y, Xv, yv, c = s["X"], s["y"], s["Xv"], s["yv"], s["num_classes"]
    d = X.size(1)
    est = make_estimator(estimator)
    gen = torch.Generator().manual_seed(seed)
    theta = torch.full((d,), theta0, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=outer_lr)
    updates = outer_iters * (T // tau)
    t0 = time.perf_counter()

    def apply(grad):
        opt.zero_grad()
        theta.grad = grad
        opt.step()
        with torch.no_grad():
            theta.clamp_(BOUND, 1.0 - BOUND)

    if estimator == "sf":
        for _ in range(updates):
            z = est.sample(theta.detach(), gen)
            w = train_head(X, y, z, c, T)
            loss = F.cross_entropy(_logits(w, Xv, z), yv) + alpha * theta.mean()
            (g,) = torch.autograd.grad(est.surrogate(loss, theta, z), theta)
            apply(g)
    else:
        dyn, outer_for = mask_problem(s, est, alpha)
        for _ in range(outer_iters):
            state: Any = _zeros(d, c)
            for _ in range(T // tau):
                outer = outer_for(torch.rand(d, generator=gen))
                (g,), state = hypergradient(state, (theta.detach(),), dyn, outer, tau,
                                            batches=lambda t: torch.rand(d, generator=gen), return_state=True)
                apply(g)
    elapsed = time.perf_counter() - t0
    return {"theta": theta.detach(), "time_s": elapsed, "s_per_update": elapsed / updates}


def evaluate_mask(s: dict[str, Any], theta, T: int = 100) -> dict[str, Any]:
    z = (theta > 0.5).float()
    w = train_head(s["X"], s["y"], z, s["num_classes"], T)
    return {"features": int(z.sum()), "val_acc": accuracy(w, s["Xv"], s["yv"], z),
            "test_acc": accuracy(w, s["Xt"], s["yt"], z)}


def hypergradient_samples(s: dict[str, Any], estimator: str, n: int = 100, *, T: int = 100,
                          tau: int = 10) -> dict[str, Any]:
    """``n`` independent estimates of one hyper-step's gradient at θ = 0.5 (α = 0): variance and time."""
    import torch
    import torch.nn.functional as F

    from bilevel_core import hypergradient

    X, y, Xv, yv, c = s["X"], s["y"], s["Xv"], s["yv"], s["num_classes"]
    d = X.size(1)
    est = make_estimator(estimator)
    dyn, outer_for = mask_problem(s, est)
    theta = torch.full((d,), 0.5, requires_grad=True)
    grads, times = [], []
    for k in range(n):
        gen = torch.Generator().manual_seed(10_000 + k)
        t0 = time.perf_counter()
        if estimator in VARIANCE_ONLY:  # K inner runs (4 for leave-one-out, an antithetic pair for DisARM)
            z = est.sample(theta.detach(), gen)
            losses = torch.stack([F.cross_entropy(_logits(w, Xv, zk), yv)
                                  for zk in z for w in (train_head(X, y, zk, c, T),)])
            (g,) = torch.autograd.grad(est.surrogate(losses, theta, z), theta)
        elif estimator == "sf":
            if k == 0:  # warm the baseline up with a few draws, as during learning
                for _ in range(5):
                    z = est.sample(theta.detach(), gen)
                    w = train_head(X, y, z, c, T)
                    est.surrogate(F.cross_entropy(_logits(w, Xv, z), yv), theta, z)
            z = est.sample(theta.detach(), gen)
            w = train_head(X, y, z, c, T)
            loss = F.cross_entropy(_logits(w, Xv, z), yv)
            (g,) = torch.autograd.grad(est.surrogate(loss, theta, z, update=False), theta)
        else:
            # the last window of an inner run of T steps: T − τ detached steps, then τ tracked ones
            outer = outer_for(torch.rand(d, generator=gen))
            (g,) = hypergradient(_zeros(d, c), (theta.detach(),), dyn, outer, T, truncate=tau,
                                 batches=lambda t, gen=gen: torch.rand(d, generator=gen))
        times.append(time.perf_counter() - t0)
        grads.append(g.detach())
    G = torch.stack(grads)
    mean = G.mean(0)
    total_var = float(G.var(0, unbiased=True).sum())
    return {"total_variance": total_var, "mean_norm_sq": float(mean.pow(2).sum()),
            "snr": float(mean.pow(2).sum()) / max(total_var / n, 1e-30),
            "s_per_hyperstep": statistics.median(times), "n": n}


def refit_logreg(s: dict[str, Any], keep) -> dict[str, float]:
    """Logistic regression (L2, C chosen on validation from {0.1, 1, 10}) on the kept features only: the
    same final classifier as the L1 baseline, so that masks compare at equal numbers of features."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    cols = [i for i, k in enumerate(keep) if k]
    if not cols:
        return {"val_acc": float("nan"), "test_acc": float("nan")}
    X, Xv, Xt = (s[k].numpy()[:, cols] for k in ("X", "Xv", "Xt"))
    best = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for C in (0.1, 1.0, 10.0):
            clf = LogisticRegression(C=C, max_iter=3000).fit(X, s["y"].numpy())
            val = float(clf.score(Xv, s["yv"].numpy()))
            if best is None or val > best[0]:
                best = (val, float(clf.score(Xt, s["yt"].numpy())))
    assert best is not None  # three values of C were tried
    return {"val_acc": best[0], "test_acc": best[1]}


def l1_baseline(s: dict[str, Any], C: float) -> dict[str, Any]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(l1_ratio=1.0, C=C, solver="saga", max_iter=3000, tol=1e-4, random_state=0)
        clf.fit(s["X"].numpy(), s["y"].numpy())
    kept = int((abs(clf.coef_) > 1e-8).any(0).sum())
    return {"features": kept, "val_acc": float(clf.score(s["Xv"].numpy(), s["yv"].numpy())),
            "test_acc": float(clf.score(s["Xt"].numpy(), s["yt"].numpy()))}


# ----------------------------------------------------------------------------- runs and summary


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    s = load_split(task["dataset"], task["split_seed"])
    if task["kind"] == "l1":
        return l1_baseline(s, task["C"])
    if task["kind"] == "variance":
        return hypergradient_samples(s, task["estimator"], task["n"], T=task["T"])
    fit = learn_mask(s, task["estimator"], task["alpha"], T=task["T"], outer_iters=task["outer_iters"],
                     seed=task["seed"])
    res = evaluate_mask(s, fit["theta"], T=task["T"])
    theta = fit["theta"]
    return {**res, "time_s": fit["time_s"], "s_per_update": fit["s_per_update"],
            "expected_features": float(theta.sum()), "theta": [round(float(v), 4) for v in theta]}


def summarize(store: Store, tasks: list[dict[str, Any]], out: str, args: argparse.Namespace) -> str:
    recs = [(t, store.get(t)) for t in tasks]
    done = [(t, r) for t, r in recs if r is not None and r.get("status") == "ok"]
    cmd = "python examples/feature_selection.py" + (" --quick" if args.quick else "")
    lines = ["# Learned feature-selection masks (issue 14)", "", f"Command: `{cmd}`. Runs held: {len(done)} of "
             f"{len(tasks)}. Masks chosen on nothing but the validation objective; test accuracy only reported.",
             "", "## Accuracy against the number of features kept", "",
             "Head: the softmax regression of the inner problem (T gradient steps) on the kept features; refit: a "
             "logistic regression (L2, C chosen on validation) on the kept features, the classifier of the L1 "
             "baseline, so that masks and L1 compare at equal numbers of features.", "",
             "| dataset | method | α or C | features kept | val acc (%) head | test acc (%) head | val acc (%) refit | "
             "test acc (%) refit | learning time (s) |", "|---|---|---|---|---|---|---|---|---|"]
    splits: dict[str, Any] = {}
    for t, r in sorted(done, key=lambda tr: (tr[0]["dataset"], tr[0]["kind"], tr[0].get("estimator", ""),
                                             tr[0].get("alpha", 0), tr[0].get("C", 0))):
        if t["kind"] == "mask":
            if t["dataset"] not in splits:
                splits[t["dataset"]] = load_split(t["dataset"], t["split_seed"])
            refit = refit_logreg(splits[t["dataset"]], [v > 0.5 for v in r["theta"]])
            r["refit"] = refit
            lines.append(f"| {t['dataset']} | {t['estimator']} | α = {t['alpha']:g} | {r['features']} | "
                         f"{100 * r['val_acc']:.1f} | {100 * r['test_acc']:.1f} | {100 * refit['val_acc']:.1f} | "
                         f"{100 * refit['test_acc']:.1f} | {r['time_s']:.1f} |")
        elif t["kind"] == "l1":
            lines.append(f"| {t['dataset']} | L1 logistic regression | C = {t['C']:.3g} | {r['features']} | | | "
                         f"{100 * r['val_acc']:.1f} | {100 * r['test_acc']:.1f} | |")
    lines += ["", f"## Hypergradient variance at θ = 0.5 over {args.var_samples} draws (α = 0)", "",
              "Total variance: sum over features of the per-feature variance of one estimate; SNR: ‖mean‖² / "
              "(total variance / n), the squared norm of the mean against its standard error. rloo4 (REINFORCE "
              "leave-one-out, 4 samples) and disarm (DisARM, an antithetic pair) are unbiased like sf and cost 4 "
              "and 2 inner runs per estimate; st and gumbel are biased pathwise estimators.", "",
              "| dataset | estimator | total variance | ‖mean‖² | SNR | time of one hyper-step (ms) |",
              "|---|---|---|---|---|---|"]
    for t, r in done:
        if t["kind"] == "variance":
            lines.append(f"| {t['dataset']} | {t['estimator']} | {r['total_variance']:.3g} | {r['mean_norm_sq']:.3g} | "
                         f"{r['snr']:.3g} | {1000 * r['s_per_hyperstep']:.1f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    _plot(done, out)
    return text


def _plot(done, out: str) -> None:
    plt = pyplot()
    if plt is None:
        return
    datasets = sorted({t["dataset"] for t, _ in done})
    if not datasets:
        return
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for method in (*ESTIMATORS, "l1"):
            pts = sorted((r["features"], 100 * r.get("refit", r)["test_acc"]) for t, r in done
                         if t["dataset"] == ds and ((t["kind"] == "mask" and t["estimator"] == method)
                                                    or (t["kind"] == "l1" and method == "l1")))
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if method != "l1" else "k--s",
                        label="L1 logistic regression" if method == "l1" else method, ms=4)
        ax.set(xlabel="features kept", ylabel="test accuracy (%), refit on kept features", title=ds)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "accuracy_vs_features.png"), dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["digits", "20news"], choices=["digits", "20news"])
    p.add_argument("--estimators", nargs="+", default=list(ESTIMATORS), choices=ESTIMATORS)
    p.add_argument("--variance-estimators", nargs="+", default=list(ESTIMATORS + VARIANCE_ONLY),
                   choices=ESTIMATORS + VARIANCE_ONLY, help="estimators of the variance table")
    p.add_argument("--alphas", nargs="+", type=float, default=list(ALPHAS))
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--outer-iters", type=int, default=30, help="inner runs (each τ-window gives one θ update)")
    p.add_argument("--var-samples", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="results/feature_selection")
    args = p.parse_args(argv)
    if args.quick:
        args.datasets, args.alphas, args.T, args.outer_iters, args.var_samples = ["digits"], [0.0, 1.0], 20, 2, 5
    out = args.out + ("_quick" if args.quick else "")
    store = Store(os.path.join(out, "runs.jsonl"))
    base = {"exp": "feature_selection", "split_seed": args.seed, "T": args.T}
    tasks: list[dict[str, Any]] = []
    for ds in args.datasets:
        tasks += [{**base, "kind": "variance", "dataset": ds, "estimator": e, "n": args.var_samples}
                  for e in args.variance_estimators]
        tasks += [{**base, "kind": "mask", "dataset": ds, "estimator": e, "alpha": a, "outer_iters": args.outer_iters,
                   "seed": args.seed} for e in args.estimators for a in args.alphas]
        tasks += [{**base, "kind": "l1", "dataset": ds, "C": C} for C in (L1_C[::4] if args.quick else L1_C)]
    run_all(run_one, tasks, store, threads=1)
    print(summarize(store, tasks, out, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
