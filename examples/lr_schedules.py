"""Online learning-rate schedules: HD, RTHO and MARTHE against fixed, exponential and cosine schedules.

Issue 12, part 3 (thesis Ch. 8 in small). A 3-layer MLP 64 → 64 → 64 → 10 (ReLU) on scikit-learn's
digits (1000 train / 400 validation / 397 test, split seed 0), plain SGD on mini-batches of 50,
T = 300 steps (15 epochs).

**A. Quality of the schedules** (thesis Figure 8.2): the offline optimised schedule LRS-OPT (every η_t
a hyperparameter, ``PerStep``; log η optimised by Adam on the full reverse hypergradient of the
validation loss at w_T, the mini-batch sequence fixed) against MARTHE for μ ∈ {0, 0.5, 0.9, 0.99, 1}
(outer objective: a validation mini-batch of 100 per step; β per μ chosen on final validation accuracy
from a grid), all from η₀ = 0.05, plotted together.

**B. Equal budget random search** (thesis Sec. 8.5 scaled to a CPU). Each method samples configurations
from its own space until its budget (CPU seconds of one thread, so that other jobs on the machine do
not bias the comparison) is spent; every run is early-stopped on validation accuracy (checked every 25
steps, patience 4). The configuration with the best validation accuracy gives the test accuracy.
Repeated with ``--reps`` search seeds: mean ± 95 % t-interval.

- ``fixed``: η ~ logU(1e-3, 1);  ``exp``: η₀ ~ logU(1e-3, 1), η_t = η₀ γ^t, 1 − γ ~ logU(1e-4, 2e-2);
  ``cosine``: η₀ ~ logU(1e-3, 1), η_t = η₀ (1 + cos(π t / T)) / 2;
- ``hd``: MARTHE with μ = 0 and the next training mini-batch as outer objective (Baydin et al., 2018);
  η₀ ~ logU(1e-3, 1), β ~ logU(1e-6, 1e-1);
- ``rtho``: μ = 1, validation mini-batches; ``marthe``: μ ~ U(0, 1), validation mini-batches;
  both η₀ ~ logU(1e-3, 1), β ~ logU(1e-6, 1e-1).

    python examples/lr_schedules.py                  # about 25 min on one core
    python examples/lr_schedules.py --quick          # smoke test

Resumable: one JSON line per finished unit in ``results/lr_schedules/runs.jsonl``; summary in
``results.md``, ``schedules.png`` (A) and ``search.png`` (B).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import Store, pyplot, run_all, t_interval  # noqa: E402

T_DEFAULT = 300
BATCH = 50
VAL_BATCH = 100
ETA0 = 0.05
MUS = (0.0, 0.5, 0.9, 0.99, 1.0)
BETA_GRID = (1e-5, 1e-4, 1e-3, 1e-2)
METHODS = ("fixed", "exp", "cosine", "hd", "rtho", "marthe")


# ----------------------------------------------------------------------------- the problem


class Problem:
    """Digits split, the MLP, per-step mini-batches and evaluation."""

    def __init__(self, T: int) -> None:
        import torch
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = torch.tensor(X / 16.0, dtype=torch.float32)
        y = torch.tensor(y)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        tr, va, te = perm[:1000], perm[1000:1400], perm[1400:]
        self.X, self.y, self.Xv, self.yv, self.Xt, self.yt = X[tr], y[tr], X[va], y[va], X[te], y[te]
        self.T = T

    def init_params(self, seed: int):
        import torch

        g = torch.Generator().manual_seed(seed)
        sizes = [(64, 64), (64, 64), (64, 10)]
        params = []
        for fan_in, fan_out in sizes:
            bound = math.sqrt(6 / (fan_in + fan_out))
            params += [(torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * bound, torch.zeros(fan_out)]
        return tuple(params)

    @staticmethod
    def net(w, X):
        import torch

        h = torch.relu(X @ w[0] + w[1])
        h = torch.relu(h @ w[2] + w[3])
        return h @ w[4] + w[5]

    def batches(self, seed: int):
        """``t -> (x, y)``: the t-th training mini-batch of a seeded epoch order (reproducible, any t)."""
        import torch

        n = self.X.size(0)
        per_epoch = n // BATCH
        orders: dict[int, Any] = {}

        def get(t: int):
            epoch, k = divmod(t, per_epoch)
            if epoch not in orders:
                orders[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            idx = orders[epoch][k * BATCH:(k + 1) * BATCH]
            return self.X[idx], self.y[idx]

        return get

    def val_batches(self, seed: int):
        import torch

        g = torch.Generator().manual_seed(seed + 7)
        cache: dict[int, Any] = {}

        def get(t: int):
            if t not in cache:
                idx = torch.randint(0, self.Xv.size(0), (VAL_BATCH,), generator=g)
                cache.clear()
                cache[t] = (self.Xv[idx], self.yv[idx])
            return cache[t]

        return get

    def inner(self, w, hp, batch):
        import torch.nn.functional as F

        return F.cross_entropy(self.net(w, batch[0]), batch[1])

    def outer_batch(self, w, hp, batch):
        import torch.nn.functional as F

        return F.cross_entropy(self.net(w, batch[0]), batch[1])

    def accuracy(self, w, which: str) -> float:
        import torch

        X, y = (self.Xv, self.yv) if which == "val" else (self.Xt, self.yt)
        with torch.no_grad():
            return float((self.net(w, X).argmax(1) == y).double().mean())


class EarlyStopping:
    """``stop(state, t)``: validation accuracy every ``every`` steps, keeps the best (and its test accuracy)."""

    def __init__(self, prob: Problem, every: int = 25, patience: int = 4) -> None:
        self.prob, self.every, self.patience = prob, every, patience
        self.best_val, self.best_test, self.best_step, self.bad = -1.0, float("nan"), 0, 0

    def __call__(self, state, t: int) -> bool:
        if t % self.every and t != self.prob.T:
            return False
        w = tuple(p.detach() for p in state.params)
        if not all(bool(p.isfinite().all()) for p in w):
            return True  # diverged
        val = self.prob.accuracy(w, "val")
        if val > self.best_val:
            self.best_val, self.best_test, self.best_step, self.bad = val, self.prob.accuracy(w, "test"), t, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


# ----------------------------------------------------------------------------- one training run


def fixed_schedule(kind: str, cfg: dict[str, float], T: int):
    if kind == "fixed":
        return lambda t: cfg["eta0"]
    if kind == "exp":
        return lambda t: cfg["eta0"] * cfg["gamma"] ** t
    return lambda t: cfg["eta0"] * 0.5 * (1 + math.cos(math.pi * t / T))


def train(prob: Problem, method: str, cfg: dict[str, float], seed: int) -> dict[str, Any]:
    """One early-stopped run; returns val/test accuracy at the best step and the schedule η_0..η_t."""
    import torch

    from bilevel_core import GradientDescent, PerStep
    from bilevel_core.schedules import marthe

    params0 = prob.init_params(seed)
    batches = prob.batches(seed)
    stopper = EarlyStopping(prob)
    if method in ("fixed", "exp", "cosine"):
        sched = fixed_schedule(method, cfg, prob.T)
        dyn = GradientDescent(lambda w, hp, b: prob.inner(w, hp, b), lr=PerStep(lambda hp, t: sched(t)))
        state = dyn.init(params0, ())
        lrs = []
        for _ in range(prob.T):
            lrs.append(sched(state.t))
            state = dyn(state, (), batches(state.t), create_graph=False)
            if stopper(state, state.t):
                break
    else:
        lr = torch.tensor(cfg["eta0"])
        dyn = GradientDescent(lambda w, hp, b: prob.inner(w, hp, b), lr=lambda hp: hp[0])
        outer_batches = batches if method == "hd" else prob.val_batches(seed)
        mu = {"hd": 0.0, "rtho": 1.0}.get(method, cfg.get("mu", 0.0))
        _, lrs = marthe(params0, lr, dyn, prob.outer_batch, prob.T, beta=cfg["beta"], mu=mu, batches=batches,
                        outer_batches=outer_batches, stop=stopper)
    return {"val_acc": stopper.best_val, "test_acc": stopper.best_test, "best_step": stopper.best_step,
            "schedule": [round(float(v), 6) for v in lrs]}


def sample_config(method: str, rng) -> dict[str, float]:
    def logu(lo: float, hi: float) -> float:
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))

    cfg = {"eta0": logu(1e-3, 1.0)}
    if method == "exp":
        cfg["gamma"] = 1 - logu(1e-4, 2e-2)
    if method in ("hd", "rtho", "marthe"):
        cfg["beta"] = logu(1e-6, 1e-1)
    if method == "marthe":
        cfg["mu"] = rng.uniform(0.0, 1.0)
    return cfg


# ----------------------------------------------------------------------------- units of work


def run_unit(task: dict[str, Any]) -> dict[str, Any]:
    import random

    prob = Problem(task["T"])
    if task["part"] == "marthe_mu":
        best = None
        for beta in BETA_GRID:
            res = train(prob, "marthe", {"eta0": ETA0, "beta": beta, "mu": task["mu"]}, seed=0)
            res["beta"] = beta
            if best is None or res["val_acc"] > best["val_acc"]:
                best = res
        assert best is not None  # BETA_GRID is not empty
        return best
    if task["part"] == "lrs_opt":
        return lrs_opt(prob, task["hyper_iters"])
    # random search on a CPU-time budget
    rng = random.Random(1000 * task["rep"] + METHODS.index(task["method"]))
    start = time.process_time()
    tried = []
    while time.process_time() - start < task["budget_s"]:
        cfg = sample_config(task["method"], rng)
        res = train(prob, task["method"], cfg, seed=rng.randrange(10**6))
        tried.append({"cfg": cfg, **res})
    best = max(tried, key=lambda r: r["val_acc"])
    return {"val_acc": best["val_acc"], "test_acc": best["test_acc"], "best_cfg": best["cfg"],
            "schedule": best["schedule"], "num_configs": len(tried),
            "cpu_s": time.process_time() - start}


def lrs_opt(prob: Problem, hyper_iters: int) -> dict[str, Any]:
    """Offline schedule: one log η per step, full reverse hypergradient of the full validation loss at w_T."""
    import torch
    import torch.nn.functional as F

    from bilevel_core import GradientDescent, PerStep, hypergradient

    params0 = prob.init_params(0)
    batches = prob.batches(0)
    log_lr = torch.full((prob.T,), math.log(ETA0), requires_grad=True)
    dyn = GradientDescent(lambda w, hp, b: prob.inner(w, hp, b), lr=PerStep(lambda hp, t: torch.exp(hp[0][t])))

    def outer(w, hp):
        return F.cross_entropy(prob.net(w, prob.Xv), prob.yv)

    opt = torch.optim.Adam([log_lr], lr=0.05)
    losses = []
    for _ in range(hyper_iters):
        (g,), state = hypergradient(params0, (log_lr,), dyn, outer, prob.T, batches=batches, return_state=True)
        opt.zero_grad()
        log_lr.grad = g
        opt.step()
        assert state.outer_loss is not None  # always set by hypergradient
        losses.append(float(state.outer_loss))
    state = dyn.init(params0, ())
    hp = (log_lr.detach(),)
    for _ in range(prob.T):
        state = dyn(state, hp, batches(state.t), create_graph=False)
    return {"val_acc": prob.accuracy(state.params, "val"), "test_acc": prob.accuracy(state.params, "test"),
            "schedule": [round(float(v), 6) for v in log_lr.detach().exp()], "val_loss_trace": losses}


# ----------------------------------------------------------------------------- summary


def ci95(values: list[float]) -> str:
    m, h = t_interval(values)
    return f"{100 * m:.1f}" if len(values) < 2 else f"{100 * m:.1f} ± {100 * h:.1f}"


def summarize(store: Store, tasks: list[dict[str, Any]], out: str, args: argparse.Namespace) -> str:
    recs = {t["part"] + str(t.get("mu", "")) + t.get("method", "") + str(t.get("rep", "")): store.get(t)
            for t in tasks}
    done = {k: r for k, r in recs.items() if r is not None and r.get("status") == "ok"}
    cmd = "python examples/lr_schedules.py" + (" --quick" if args.quick else "")
    lines = ["# Learning-rate schedules on digits (thesis Ch. 8 in small)", "", f"Command: `{cmd}`. T = {args.T} "
             f"SGD steps, mini-batch {BATCH}; 3-layer MLP. Runs held: {len(done)} of {len(tasks)}.", "",
             "## A. Schedules from η₀ = 0.05 (split seed 0, one data order)", "",
             "MARTHE: accuracies at the best validation checkpoint (every 25 steps); LRS-OPT: at w_T.", "",
             "| schedule | β (chosen on validation) | val acc (%) | test acc (%) |", "|---|---|---|---|"]
    a = done.get("lrs_opt")
    if a:
        lines.append(f"| LRS-OPT ({args.hyper_iters} hyper-iterations, reverse) | – | {100 * a['val_acc']:.1f} | "
                     f"{100 * a['test_acc']:.1f} |")
    for mu in MUS:
        r = done.get(f"marthe_mu{mu}")
        if r:
            lines.append(f"| MARTHE μ = {mu} | {r['beta']:g} | {100 * r['val_acc']:.1f} | {100 * r['test_acc']:.1f} |")
    lines += ["", f"## B. Random search, {args.budget:g} CPU-seconds per method and repetition "
              f"({args.reps} repetitions)", "",
              "| method | test acc (%) of the best-on-validation config | val acc (%) | configs tried per budget |",
              "|---|---|---|---|"]
    for m in METHODS:
        rs = [done[k] for k in done if k.startswith("search") and k[len("search"):].startswith(m)
              and k[len("search") + len(m):].isdigit()]
        if not rs:
            continue
        lines.append(f"| {m} | {ci95([r['test_acc'] for r in rs])} | {ci95([r['val_acc'] for r in rs])} | "
                     f"{statistics.fmean(r['num_configs'] for r in rs):.0f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    _plots(done, out)
    return text


def _plots(done: dict[str, dict[str, Any]], out: str) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    if "lrs_opt" in done:
        ax.plot(done["lrs_opt"]["schedule"], "k-", lw=2, label="LRS-OPT (offline)")
    for mu in MUS:
        r = done.get(f"marthe_mu{mu}")
        if r:
            ax.plot(r["schedule"], label=f"MARTHE μ={mu} (β={r['beta']:g})")
    ax.set(xlabel="step t", ylabel="learning rate η_t", yscale="log", title="A. schedules from η₀ = 0.05")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "schedules.png"), dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in METHODS:
        r = done.get(f"search{m}0")
        if r:
            ax.plot(r["schedule"], label=m)
    ax.set(xlabel="step t", ylabel="learning rate η_t", yscale="log", title="B. best schedules found (repetition 0)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "search.png"), dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, default=T_DEFAULT)
    p.add_argument("--hyper-iters", type=int, default=100, help="LRS-OPT hyper-iterations")
    p.add_argument("--budget", type=float, default=30.0, help="CPU seconds per method and repetition")
    p.add_argument("--reps", type=int, default=5, help="random-search repetitions (search seeds)")
    p.add_argument("--parts", nargs="+", default=["A", "B"], choices=["A", "B"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="results/lr_schedules")
    args = p.parse_args(argv)
    if args.quick:
        args.T, args.hyper_iters, args.budget, args.reps = 40, 3, 1.0, 2
    out = args.out + ("_quick" if args.quick else "")
    store = Store(os.path.join(out, "runs.jsonl"))
    tasks: list[dict[str, Any]] = []
    if "A" in args.parts:
        tasks.append({"exp": "lr_schedules", "part": "lrs_opt", "T": args.T, "hyper_iters": args.hyper_iters})
        tasks += [{"exp": "lr_schedules", "part": "marthe_mu", "T": args.T, "mu": mu} for mu in MUS]
    if "B" in args.parts:
        tasks += [{"exp": "lr_schedules", "part": "search", "T": args.T, "method": m, "rep": r, "budget_s": args.budget}
                  for r in range(args.reps) for m in METHODS]
    run_all(run_unit, tasks, store, threads=1)
    print(summarize(store, tasks, out, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
