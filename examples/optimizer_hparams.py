"""Optimiser and regularisation hyperparameters by forward mode (issue 12, part 2; Franceschi et al., ICML 2017).

An MLP 64 → 64 → 10 on scikit-learn's digits (1000 train / 400 validation / 397 test, seeded), trained
by T full-batch steps of heavy-ball momentum. Three hyperparameters: the learning rate η = exp(λ₀),
the momentum μ = σ(λ₁) and the weight decay ρ = exp(λ₂) (½ρ‖W‖² on both weight matrices). With so
few hyperparameters forward mode (one tangent per hyperparameter) is the natural choice: its memory
does not grow with T.

1. **Check**: at the initial λ, the forward hypergradient against central finite differences of
   f_T(λ) (float64) and against reverse mode.
2. **Tune**: ``HyperOptimizer(method="forward")`` with Adam on λ; validation and test accuracy before
   and after.
3. **Compare**: forward against reverse mode on time and peak memory as T grows (each case in a fresh
   process; peak memory = peak RSS above the RSS after setup).

    python examples/optimizer_hparams.py            # about 5 min on one core
    python examples/optimizer_hparams.py --quick    # smoke test

Output: ``results/optimizer_hparams/{results.json,results.md,scaling.png}``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import PeakRSS, pyplot  # noqa: E402


def problem(dtype_name: str = "float32", seed: int = 0) -> dict[str, Any]:
    """Data, initial weights, dynamics and objectives of the digits MLP problem."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    from bilevel_core import Momentum

    dtype = getattr(torch, dtype_name)
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=dtype)
    y = torch.tensor(y)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    tr, va, te = perm[:1000], perm[1000:1400], perm[1400:]
    h = 64
    w0 = ((torch.rand(64, h, generator=g, dtype=dtype) * 2 - 1) * math.sqrt(6 / (64 + h)), torch.zeros(h, dtype=dtype),
          (torch.rand(h, 10, generator=g, dtype=dtype) * 2 - 1) * math.sqrt(6 / (h + 10)), torch.zeros(10, dtype=dtype))

    def net(w, Xb):
        return torch.tanh(Xb @ w[0] + w[1]) @ w[2] + w[3]

    def inner(w, hp):
        decay = 0.5 * torch.exp(hp[2]) * (w[0].pow(2).sum() + w[2].pow(2).sum())
        return F.cross_entropy(net(w, X[tr]), y[tr]) + decay

    def outer(w, hp):
        return F.cross_entropy(net(w, X[va]), y[va])

    dyn = Momentum(inner, lr=lambda hp: torch.exp(hp[0]), momentum=lambda hp: torch.sigmoid(hp[1]))
    hparams = (torch.tensor(math.log(0.1), dtype=dtype), torch.tensor(math.log(0.5 / 0.5), dtype=dtype),
               torch.tensor(math.log(1e-3), dtype=dtype))

    def accuracy(w, idx):
        return float((net(w, X[idx]).argmax(1) == y[idx]).double().mean())

    return {"w0": w0, "dyn": dyn, "outer": outer, "hparams": hparams, "acc": accuracy, "val": va, "test": te}


def readable(hp) -> dict[str, float]:
    import torch

    return {"lr": float(torch.exp(hp[0])), "momentum": float(torch.sigmoid(hp[1])),
            "weight_decay": float(torch.exp(hp[2]))}


def run_plain(p: dict[str, Any], hp, T: int):
    state = p["dyn"].init(p["w0"], hp)
    for _ in range(T):
        state = p["dyn"](state, hp, create_graph=False)
    return state


def check(T: int) -> dict[str, Any]:
    """Forward vs reverse vs central finite differences at the initial λ, float64."""
    import torch

    from bilevel_core import hypergradient

    p = problem("float64")
    hp = p["hparams"]
    fwd = hypergradient(p["w0"], hp, p["dyn"], p["outer"], T, method="forward")
    rev = hypergradient(p["w0"], hp, p["dyn"], p["outer"], T, method="reverse")
    fd = []
    for i in range(len(hp)):
        eps = 1e-5
        plus = tuple(h + eps if j == i else h for j, h in enumerate(hp))
        minus = tuple(h - eps if j == i else h for j, h in enumerate(hp))
        f = [float(p["outer"](run_plain(p, q, T).params, q)) for q in (plus, minus)]
        fd.append((f[0] - f[1]) / (2 * eps))
    fwd_v = torch.stack([g.reshape(()) for g in fwd])
    fd_v = torch.tensor(fd, dtype=torch.float64)
    rev_v = torch.stack([g.reshape(()) for g in rev])
    return {"T": T, "forward": fwd_v.tolist(), "reverse": rev_v.tolist(), "finite_difference": fd,
            "rel_err_forward_vs_fd": float((fwd_v - fd_v).norm() / fd_v.norm()),
            "rel_err_forward_vs_reverse": float((fwd_v - rev_v).norm() / rev_v.norm())}


def tune(T: int, steps: int, outer_lr: float) -> dict[str, Any]:
    import torch

    from bilevel_core import HyperOptimizer

    p = problem()
    hp = tuple(h.clone().requires_grad_(True) for h in p["hparams"])
    before = run_plain(p, hp, T)
    record = {"T": T, "hyper_steps": steps, "before": {**readable(hp), "val_acc": p["acc"](before.params, p["val"]),
                                                       "test_acc": p["acc"](before.params, p["test"])}}
    hopt = HyperOptimizer(p["dyn"], p["outer"], hp, torch.optim.Adam(hp, lr=outer_lr), T=T, method="forward")
    t0 = time.perf_counter()
    trace = []
    for _ in range(steps):
        loss = hopt.step(p["w0"])
        trace.append({"val_loss": loss, **readable(hp)})
    after = run_plain(p, hp, T)
    record["after"] = {**readable(hp), "val_acc": p["acc"](after.params, p["val"]),
                       "test_acc": p["acc"](after.params, p["test"])}
    record["time_s"] = time.perf_counter() - t0
    record["trace"] = trace
    return record


def _scaling_worker(method: str, T: int, queue: Any) -> None:
    import torch

    from bilevel_core import hypergradient

    torch.set_num_threads(1)
    p = problem()
    hypergradient(p["w0"], p["hparams"], p["dyn"], p["outer"], 2, method=method)  # warm-up
    mem = PeakRSS()
    t0 = time.perf_counter()
    hypergradient(p["w0"], p["hparams"], p["dyn"], p["outer"], T, method=method)
    elapsed = time.perf_counter() - t0
    queue.put({"method": method, "T": T, "time_s": elapsed, "peak_mb": mem.mb()})


def scaling(Ts: list[int]) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    rows = []
    for T in Ts:
        for method in ("reverse", "forward"):
            q = ctx.Queue()
            proc = ctx.Process(target=_scaling_worker, args=(method, T, q))
            proc.start()
            proc.join()
            rows.append(q.get() if proc.exitcode == 0 else {"method": method, "T": T, "error": proc.exitcode})
            print(rows[-1], flush=True)
    return rows


def report(res: dict[str, Any], out: str, command: str) -> str:
    c, t = res["check"], res["tune"]
    names = ["lr (log)", "momentum (logit)", "weight decay (log)"]
    lines = ["# Optimiser hyperparameters by forward mode (digits MLP)", "", f"Command: `{command}`", "",
             f"## Check at the initial λ (T = {c['T']}, float64)", "",
             "| hyperparameter | forward | reverse | central finite difference |", "|---|---|---|---|"]
    lines += [f"| {n} | {f:.6e} | {r:.6e} | {d:.6e} |" for n, f, r, d in
              zip(names, c["forward"], c["reverse"], c["finite_difference"])]
    lines += ["", f"Relative error forward vs finite differences: {c['rel_err_forward_vs_fd']:.1e}; forward vs "
              f"reverse: {c['rel_err_forward_vs_reverse']:.1e}.", "",
              f"## Tuning (T = {t['T']}, {t['hyper_steps']} hyper-steps of Adam, forward mode, {t['time_s']:.0f} s)",
              "", "| | lr | momentum | weight decay | val acc (%) | test acc (%) |", "|---|---|---|---|---|---|"]
    for k in ("before", "after"):
        r = t[k]
        lines.append(f"| {k} | {r['lr']:.4g} | {r['momentum']:.3f} | {r['weight_decay']:.3g} | "
                     f"{100 * r['val_acc']:.1f} | {100 * r['test_acc']:.1f} |")
    lines += ["", "## Forward against reverse as T grows (one process per case, one thread)", "",
              "| T | reverse time (s) | forward time (s) | reverse peak memory (MB) | forward peak memory (MB) |",
              "|---|---|---|---|---|"]
    by = {(r["method"], r["T"]): r for r in res["scaling"]}
    for T in sorted({r["T"] for r in res["scaling"]}):
        rv, fw = by.get(("reverse", T), {}), by.get(("forward", T), {})
        lines.append(f"| {T} | {rv.get('time_s', float('nan')):.2f} | {fw.get('time_s', float('nan')):.2f} | "
                     f"{rv.get('peak_mb', float('nan')):.1f} | {fw.get('peak_mb', float('nan')):.1f} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    plt = pyplot()
    if plt is not None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for method in ("reverse", "forward"):
            rows = sorted((r for r in res["scaling"] if r["method"] == method and "time_s" in r), key=lambda r: r["T"])
            axes[0].plot([r["T"] for r in rows], [r["time_s"] for r in rows], "o-", label=method)
            axes[1].plot([r["T"] for r in rows], [r["peak_mb"] for r in rows], "o-", label=method)
        axes[0].set(xlabel="T", ylabel="time (s)")
        axes[1].set(xlabel="T", ylabel="peak memory above setup (MB)")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(os.path.join(out, "scaling.png"), dpi=120)
        plt.close(fig)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--T", type=int, default=100, help="inner steps for the check and the tuning")
    p.add_argument("--hyper-steps", type=int, default=40)
    p.add_argument("--outer-lr", type=float, default=0.1)
    p.add_argument("--scaling-T", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="results/optimizer_hparams")
    args = p.parse_args(argv)
    if args.quick:
        args.T, args.hyper_steps, args.scaling_T = 10, 3, [5, 10]
    out = args.out + ("_quick" if args.quick else "")
    os.makedirs(out, exist_ok=True)
    import torch

    torch.set_num_threads(1)
    res = {"check": check(args.T), "tune": tune(args.T, args.hyper_steps, args.outer_lr),
           "scaling": scaling(args.scaling_T), "torch": torch.__version__}
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=1)
    command = "python examples/optimizer_hparams.py" + (" --quick" if args.quick else "")
    print(report(res, out, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
