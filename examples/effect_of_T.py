"""The effect of T: optimising the approximate objective f_T against the exact one (thesis Sec. 6.2.1, Figure 6.3,
Table 6.1, in small).

A hyper-representation (meta-learning) problem on scikit-learn's digits (pixels / 16) where the exact bilevel
objective has a closed form. Examples are split (seeded) into a meta-training pool and a held-out pool; every
episode is a 5-way task on a random subset of the ten digits (classes randomly assigned to the one-hot slots),
with ``shots`` training and ``queries`` validation (or test) examples per class.

- Outer variable: a linear feature map ``H`` (64 × p), shared by all episodes; features ``Φ = X H``.
- Inner problem per episode (ridge regression of the one-hot targets):
  ``L(w, H) = ½‖Φ w − Y‖²/n + ½ρ‖w‖²``, exact solution ``w*(H) = A⁻¹b`` with ``A = ΦᵀΦ/n + ρI``, ``b = ΦᵀY/n``.
- Exact outer objective ``f(H)``: mean over the meta-training episodes of ``½‖X_val H w*(H) − Y_val‖²/m``;
  its gradient by autograd through ``torch.linalg.solve`` (checked once against central finite differences).
- Approximate ``f_T(H)``: ``w_T`` after T steps of gradient descent from ``w = 0`` with step size
  ``η(H) = 1/λ_max(A(H))`` per episode (evaluated at the current H, a differentiable function of H, so the inner
  dynamics stay stable while H changes); hypergradient by reverse mode with
  :func:`bilevel_core.hypergradient` (all episodes in one batched inner problem, ``w`` of shape E × p × 5).

For T ∈ {1, 4, 16, 64, 256} and for the exact objective, Adam optimises H from the same initial H (seeded
Gaussian) for the same number of outer iterations, on the same fixed set of meta-training episodes (full batch).
Recorded every few iterations: the *exact* f(H_k) and the time. Reported: (a) the curves ``curves.png``;
(b) a table with the final exact f, f_T, the test accuracy on held-out episodes (ridge head solved exactly, or by
the T steps, on each episode's training part; argmax on its test part) and the times; (c) at the initial H the
cosine similarity and relative error between the f_T hypergradient and the exact one. Everything in float64.

    python examples/effect_of_T.py             # 500 outer iterations per run, about 3 min of CPU on one core
    python examples/effect_of_T.py --quick     # smoke test, < 30 s, writes results/effect_of_T_quick/

Outputs: ``results.json``, ``results.md`` and ``curves.png`` in ``--out`` (default ``results/effect_of_T``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

import torch
from torch import Tensor

from bilevel_core import GradientDescent, hypergradient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import pyplot  # noqa: E402

DTYPE = torch.float64
Episodes = dict[str, Tensor]


# ----------------------------------------------------------------------------- data


def load_pools(seed: int, n_meta_train: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Digits (pixels / 16) split into a meta-training pool and a held-out pool of examples."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=DTYPE)
    y = torch.tensor(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:n_meta_train], perm[n_meta_train:]
    return X[tr], y[tr], X[te], y[te]


def make_episodes(X: Tensor, y: Tensor, num: int, ways: int, shots: int, queries: int, seed: int) -> Episodes:
    """``num`` episodes: ``ways`` random classes (random one-hot slots), ``shots`` + ``queries`` examples each."""
    g = torch.Generator().manual_seed(seed)
    by_class = [torch.nonzero(y == c).flatten() for c in range(10)]
    xs_tr, xs_va, lab_tr, lab_va = [], [], [], []
    for _ in range(num):
        classes = torch.randperm(10, generator=g)[:ways]
        idx_tr, idx_va, l_tr, l_va = [], [], [], []
        for slot, c in enumerate(classes.tolist()):
            pool = by_class[c]
            pick = pool[torch.randperm(len(pool), generator=g)[:shots + queries]]
            idx_tr.append(pick[:shots])
            idx_va.append(pick[shots:])
            l_tr += [slot] * shots
            l_va += [slot] * queries
        xs_tr.append(X[torch.cat(idx_tr)])
        xs_va.append(X[torch.cat(idx_va)])
        lab_tr.append(torch.tensor(l_tr))
        lab_va.append(torch.tensor(l_va))
    y_tr, y_va = torch.stack(lab_tr), torch.stack(lab_va)
    one_hot = torch.eye(ways, dtype=DTYPE)
    return {"X_tr": torch.stack(xs_tr), "Y_tr": one_hot[y_tr], "X_va": torch.stack(xs_va), "Y_va": one_hot[y_va],
            "y_va": y_va}


# ----------------------------------------------------------------------------- the bilevel problem


def ridge_system(H: Tensor, ep: Episodes, rho: float) -> tuple[Tensor, Tensor]:
    """``A = ΦᵀΦ/n + ρI`` (E × p × p) and ``b = ΦᵀY/n`` (E × p × C), ``Φ = X_tr H``: ``∇_w L = A w − b``."""
    Phi = ep["X_tr"] @ H
    n = Phi.size(1)
    A = Phi.transpose(1, 2) @ Phi / n + rho * torch.eye(H.size(1), dtype=H.dtype)
    return A, Phi.transpose(1, 2) @ ep["Y_tr"] / n


def exact_head(H: Tensor, ep: Episodes, rho: float) -> Tensor:
    """The inner solution ``w*(H) = A⁻¹b`` (differentiable through ``torch.linalg.solve``)."""
    A, b = ridge_system(H, ep, rho)
    return torch.linalg.solve(A, b)


def step_size(H: Tensor, ep: Episodes, rho: float) -> Tensor:
    """``η(H) = 1/λ_max(A(H))`` per episode (E × 1 × 1): gradient descent on L is then a contraction."""
    A, _ = ridge_system(H, ep, rho)
    return (1.0 / torch.linalg.eigvalsh(A)[:, -1]).reshape(-1, 1, 1)


def outer_loss(w: Tensor, H: Tensor, ep: Episodes) -> Tensor:
    """Outer objective ``E(w, H)``: mean over episodes of ``½‖X_val H w − Y_val‖²/m``."""
    r = ep["X_va"] @ H @ w - ep["Y_va"]
    return 0.5 * (r ** 2).sum(dim=(1, 2)).mean() / r.size(1)


def exact_objective(H: Tensor, ep: Episodes, rho: float) -> Tensor:
    """The exact bilevel objective ``f(H) = E(w*(H), H)``."""
    return outer_loss(exact_head(H, ep, rho), H, ep)


def exact_hypergradient(H: Tensor, ep: Episodes, rho: float) -> tuple[Tensor, Tensor]:
    """``f(H)`` and ``∇f(H)`` by autograd through the closed-form solution."""
    Hv = H.detach().requires_grad_(True)
    with torch.enable_grad():
        value = exact_objective(Hv, ep, rho)
        (grad,) = torch.autograd.grad(value, Hv)
    return value.detach(), grad


def approx_hypergradient(H: Tensor, ep: Episodes, rho: float, T: int) -> tuple[Tensor, Tensor]:
    """``f_T(H)`` and its hypergradient by reverse mode through T gradient-descent steps (Algorithm 2)."""

    cache: dict[str, Any] = {}

    def shared(H: Tensor) -> dict[str, Any]:
        # Φ = X_tr H and η(H) are the same tensors at every step of one call: build (and differentiate) them once
        if cache.get("H") is not H:
            cache.update(H=H, Phi=ep["X_tr"] @ H, eta=step_size(H, ep, rho))
        return cache

    def inner(params: tuple[Tensor, ...], hparams: tuple[Tensor, ...]) -> Tensor:
        # sum over episodes: each episode's w is driven by its own gradient A w − b
        r = shared(hparams[0])["Phi"] @ params[0] - ep["Y_tr"]
        return 0.5 * (r ** 2).sum() / r.size(1) + 0.5 * rho * (params[0] ** 2).sum()

    def outer(params: tuple[Tensor, ...], hparams: tuple[Tensor, ...]) -> Tensor:
        return outer_loss(params[0], hparams[0], ep)

    def lr(hparams: tuple[Tensor, ...]) -> Tensor:
        return shared(hparams[0])["eta"]

    w0 = torch.zeros(ep["X_tr"].size(0), H.size(1), ep["Y_tr"].size(2), dtype=H.dtype)
    dyn = GradientDescent(inner, lr=lr)
    (grad,), state = hypergradient((w0,), (H.detach(),), dyn, outer, T, method="reverse", return_state=True)
    assert state.outer_loss is not None  # always set by hypergradient
    return state.outer_loss, grad


def gd_head(H: Tensor, ep: Episodes, rho: float, T: int) -> Tensor:
    """``w_T``: T gradient-descent steps from zero with step ``η(H)`` (the inner dynamics of f_T, no graph)."""
    with torch.no_grad():
        A, b = ridge_system(H, ep, rho)
        eta = 1.0 / torch.linalg.eigvalsh(A)[:, -1].reshape(-1, 1, 1)
        w = torch.zeros_like(b)
        for _ in range(T):
            w = w - eta * (A @ w - b)
    return w


def accuracy(H: Tensor, ep: Episodes, w: Tensor) -> float:
    """Fraction of the episodes' validation/test examples classified correctly by ``argmax(X H w)``."""
    return float(((ep["X_va"] @ H @ w).argmax(-1) == ep["y_va"]).double().mean())


# ----------------------------------------------------------------------------- experiments


def finite_difference_check(H: Tensor, ep: Episodes, rho: float, eps: float = 1e-6) -> float:
    """Relative error ‖g − g_fd‖/‖g_fd‖ of the closed-form hypergradient against central differences (all entries)."""
    _, grad = exact_hypergradient(H, ep, rho)
    fd = torch.zeros_like(H)
    with torch.no_grad():
        for i in range(H.size(0)):
            for j in range(H.size(1)):
                Hp, Hm = H.clone(), H.clone()
                Hp[i, j] += eps
                Hm[i, j] -= eps
                fd[i, j] = (exact_objective(Hp, ep, rho) - exact_objective(Hm, ep, rho)) / (2 * eps)
    return float((grad - fd).norm() / fd.norm())


def approx_objective(H: Tensor, ep: Episodes, rho: float, T: int) -> Tensor:
    """``f_T(H) = E(w_T(H), H)`` evaluated without a graph (for finite differences)."""
    return outer_loss(gd_head(H, ep, rho, T), H, ep)


def finite_difference_check_T(H: Tensor, ep: Episodes, rho: float, T: int, directions: int = 5,
                              eps: float = 1e-6, seed: int = 0) -> float:
    """Max relative error of the reverse-mode ∇f_T against central differences of f_T along random directions."""
    _, grad = approx_hypergradient(H, ep, rho, T)
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for _ in range(directions):
        d = torch.randn(H.shape, generator=g, dtype=H.dtype)
        fd = (approx_objective(H + eps * d, ep, rho, T) - approx_objective(H - eps * d, ep, rho, T)) / (2 * eps)
        worst = max(worst, abs(float((grad * d).sum() - fd)) / abs(float(fd)))
    return worst


def gradient_comparison(H: Tensor, ep: Episodes, rho: float, Ts: list[int]) -> list[dict[str, float]]:
    """For every T: f_T(H), cosine and relative error of ∇f_T(H) against the exact ∇f(H)."""
    f, g = exact_hypergradient(H, ep, rho)
    rows = []
    for T in Ts:
        fT, gT = approx_hypergradient(H, ep, rho, T)
        cos = float((gT * g).sum() / (gT.norm() * g.norm()))
        rows.append({"T": T, "f_T": float(fT), "f": float(f), "cosine": cos,
                     "rel_error": float((gT - g).norm() / g.norm()), "norm_ratio": float(gT.norm() / g.norm())})
    return rows


def optimise(H0: Tensor, train: Episodes, rho: float, T: int | None, iters: int, lr: float,
             every: int) -> tuple[Tensor, dict[str, Any]]:
    """Adam on f_T (``T`` an int) or on the exact f (``T=None``) from ``H0``; records the exact f every ``every``.

    Times are CPU seconds of the process (one thread), hypergradient and update only, so that other jobs on the
    machine and the recording of f do not count.
    """
    H = H0.clone().requires_grad_(True)
    opt = torch.optim.Adam([H], lr=lr)
    curve: list[list[float]] = []
    opt_time = 0.0
    for k in range(iters + 1):
        if k % every == 0 or k == iters:
            with torch.no_grad():
                curve.append([k, float(exact_objective(H, train, rho)), opt_time])
        if k == iters:
            break
        t0 = time.process_time()
        _, grad = exact_hypergradient(H, train, rho) if T is None else approx_hypergradient(H, train, rho, T)
        H.grad = grad
        opt.step()
        opt_time += time.process_time() - t0
    return H.detach(), {"curve": curve, "time_s": opt_time, "time_per_iter_s": opt_time / iters}


def evaluate(H: Tensor, T: int | None, train: Episodes, test: Episodes, rho: float) -> dict[str, Any]:
    """Final exact f (and f_T) on the meta-training episodes; loss and accuracy on the held-out episodes."""
    with torch.no_grad():
        w_test = exact_head(H, test, rho)
        out: dict[str, Any] = {"f_exact": float(exact_objective(H, train, rho)),
                               "test_f_exact": float(outer_loss(w_test, H, test)),
                               "test_acc_exact_head": accuracy(H, test, w_test),
                               "H_norm": float(H.norm()), "cond": condition_numbers(H, train, rho)}
        if T is not None:
            w_T, w_star = gd_head(H, train, rho, T), exact_head(H, train, rho)
            out["f_T"] = float(outer_loss(w_T, H, train))
            out["head_rel_dist"] = float((w_T - w_star).norm() / w_star.norm())
            out["test_acc_T_head"] = accuracy(H, test, gd_head(H, test, rho, T))
    return out


# ----------------------------------------------------------------------------- report


def label(T: int | None) -> str:
    return "exact" if T is None else f"T = {T}"


def write_report(res: dict[str, Any], out: str, command: str) -> str:
    """``results.md`` (with the command) and ``curves.png``."""
    a = res["args"]
    lines = ["# The effect of T (thesis Sec. 6.2.1, Figure 6.3, Table 6.1, in small)", "",
             f"Command: `{command}`. Digits, {a['ways']}-way episodes with {a['shots']} training and "
             f"{a['queries']} validation/test examples per class; {a['train_episodes']} meta-training episodes "
             f"(from {a['n_meta_train']} examples), {a['test_episodes']} test episodes (from the other "
             f"{res['n_heldout']} examples). H is 64 × {a['p']}, ridge ρ = {a['rho']}; inner gradient descent from "
             f"w = 0 with η(H) = 1/λ_max(ΦᵀΦ/n + ρI) per episode; Adam (lr {a['outer_lr']}) for "
             f"{a['iters']} outer iterations, full batch over the meta-training episodes, from the same seeded H₀. "
             "float64 throughout.", "",
             f"Exact hypergradient vs central finite differences of f (all {64 * a['p']} entries of H₀, ε = 1e-6): "
             f"relative error {res['fd_rel_error']:.2e}. Reverse-mode ∇f_T (library) vs central differences of f_T "
             "along 5 random directions at H₀, worst relative error: "
             + ", ".join(f"T = {T}: {e:.1e}" for T, e in res["fd_T_rel_error"].items()) + ".", "",
             "## (b) Final results", "",
             "Exact f and f_T: on the meta-training episodes at the final H. Test: held-out episodes, head solved "
             "exactly (`exact head`) or by the same T steps (`T-step head`) on each episode's training part. "
             "κ(A): median condition number of ΦᵀΦ/n + ρI over the meta-training episodes at the final H; "
             "‖w_T − w*‖/‖w*‖: how far the T-step head is from the exact one there. Times: CPU seconds of one "
             "thread for the hypergradient and the Adam step (recording f excluded).", "",
             "| objective | final exact f | final f_T | test f (exact head) | test acc exact head (%) | "
             "test acc T-step head (%) | κ(A) | ‖w_T − w*‖/‖w*‖ | CPU time / outer iter (ms) | total CPU time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    init = res["initial"]
    lines.append(f"| initial H₀ | {init['f_exact']:.4f} | | {init['test_f_exact']:.4f} | "
                 f"{100 * init['test_acc_exact_head']:.1f} | | {init['cond']['median']:.0f} | | | |")
    for r in res["runs"]:
        fT = f"{r['f_T']:.4f}" if "f_T" in r else ""
        accT = f"{100 * r['test_acc_T_head']:.1f}" if "test_acc_T_head" in r else ""
        dist = f"{r['head_rel_dist']:.3f}" if "head_rel_dist" in r else ""
        lines.append(f"| {label(r['T'])} | {r['f_exact']:.4f} | {fT} | {r['test_f_exact']:.4f} | "
                     f"{100 * r['test_acc_exact_head']:.1f} | {accT} | {r['cond']['median']:.0f} | {dist} | "
                     f"{1000 * r['time_per_iter_s']:.1f} | {r['time_s']:.1f} |")
    lines += ["", "## (c) Hypergradient of f_T against the exact one at H₀", "",
              "| T | f_T(H₀) | f(H₀) | cosine(∇f_T, ∇f) | ‖∇f_T − ∇f‖/‖∇f‖ | ‖∇f_T‖/‖∇f‖ |",
              "|---|---|---|---|---|---|"]
    for r in res["gradients"]:
        lines.append(f"| {r['T']} | {r['f_T']:.4f} | {r['f']:.4f} | {r['cosine']:.4f} | {r['rel_error']:.3e} | "
                     f"{r['norm_ratio']:.4f} |")
    lines += ["", f"Condition number of A(H₀) = ΦᵀΦ/n + ρI over the meta-training episodes: median "
              f"{res['cond_initial']['median']:.0f}, max {res['cond_initial']['max']:.0f}.",
              "", f"Total script time {res['total_time_s']:.0f} s wall, {res['total_cpu_s']:.0f} s CPU "
              "(torch threads: 1)."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    _plot(res, out)
    return text


def _plot(res: dict[str, Any], out: str) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in res["runs"]:
        k, f, t = zip(*r["curve"])
        style = {"color": "k", "ls": "--", "lw": 2} if r["T"] is None else {}
        axes[0].plot(k, f, label=label(r["T"]), **style)
        axes[1].plot(t, f, label=label(r["T"]), **style)
    axes[0].set(xlabel="outer iteration", ylabel="exact f(H)", yscale="log",
                title="exact objective while optimising f_T")
    axes[1].set_xscale("symlog", linthresh=1.0)
    axes[1].set(xlabel="optimisation CPU time (s)", ylabel="exact f(H)", yscale="log", xlim=(0, None))
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=120)
    plt.close(fig)


def condition_numbers(H: Tensor, ep: Episodes, rho: float) -> dict[str, float]:
    A, _ = ridge_system(H, ep, rho)
    ev = torch.linalg.eigvalsh(A)
    c = ev[:, -1] / ev[:, 0]
    return {"median": float(c.median()), "max": float(c.max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--Ts", nargs="+", type=int, default=[1, 4, 16, 64, 256])
    p.add_argument("--iters", type=int, default=500, help="outer (Adam) iterations per run")
    p.add_argument("--every", type=int, default=10, help="record the exact f every this many iterations")
    p.add_argument("--outer-lr", type=float, default=0.01)
    p.add_argument("--p", type=int, default=16, help="number of features (columns of H)")
    p.add_argument("--rho", type=float, default=0.1, help="ridge coefficient of the inner problem")
    p.add_argument("--ways", type=int, default=5)
    p.add_argument("--shots", type=int, default=5, help="training examples per class in an episode")
    p.add_argument("--queries", type=int, default=15, help="validation/test examples per class in an episode")
    p.add_argument("--train-episodes", type=int, default=100)
    p.add_argument("--test-episodes", type=int, default=200)
    p.add_argument("--n-meta-train", type=int, default=1000, help="examples in the meta-training pool")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="20 episodes, 30 outer iterations, smoke test")
    p.add_argument("--out", default="results/effect_of_T")
    args = p.parse_args(argv)
    if args.quick:
        args.iters, args.every, args.train_episodes, args.test_episodes = 30, 5, 20, 40
    out = args.out + ("_quick" if args.quick else "")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(args.threads)
    command = "OMP_NUM_THREADS=1 python examples/effect_of_T.py" + (" --quick" if args.quick else "")
    t_start, cpu_start = time.perf_counter(), time.process_time()

    X_tr, y_tr, X_te, y_te = load_pools(args.seed, args.n_meta_train)
    train = make_episodes(X_tr, y_tr, args.train_episodes, args.ways, args.shots, args.queries, args.seed + 1)
    test = make_episodes(X_te, y_te, args.test_episodes, args.ways, args.shots, args.queries, args.seed + 2)
    g = torch.Generator().manual_seed(args.seed + 3)
    H0 = torch.randn(64, args.p, generator=g, dtype=DTYPE) / math.sqrt(64)

    fd = finite_difference_check(H0, train, args.rho)
    print(f"finite-difference check of the exact hypergradient: relative error {fd:.2e}", flush=True)
    fd_T = {T: finite_difference_check_T(H0, train, args.rho, T) for T in args.Ts}
    print(f"finite-difference check of the reverse-mode f_T hypergradients: {fd_T}", flush=True)
    grads = gradient_comparison(H0, train, args.rho, args.Ts)
    for r in grads:
        print(f"T={r['T']:4d}  f_T={r['f_T']:.4f}  f={r['f']:.4f}  cos={r['cosine']:.4f}  rel={r['rel_error']:.3e}",
              flush=True)

    runs = []
    for T in [*args.Ts, None]:
        H, rec = optimise(H0, train, args.rho, T, args.iters, args.outer_lr, args.every)
        rec = {"T": T, **evaluate(H, T, train, test, args.rho), **rec}
        runs.append(rec)
        print(f"{label(T):>8}: exact f {rec['f_exact']:.4f}  test acc {100 * rec['test_acc_exact_head']:.1f} %  "
              f"{1000 * rec['time_per_iter_s']:.1f} ms/iter", flush=True)

    res = {"args": vars(args), "n_heldout": len(y_te), "fd_rel_error": fd, "fd_T_rel_error": fd_T, "gradients": grads,
           "initial": evaluate(H0, None, train, test, args.rho), "runs": runs,
           "cond_initial": condition_numbers(H0, train, args.rho)}
    res["total_time_s"] = time.perf_counter() - t_start
    res["total_cpu_s"] = time.process_time() - cpu_start
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(res, fh, indent=1)
    print(write_report(res, out, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
