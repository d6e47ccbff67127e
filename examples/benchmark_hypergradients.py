"""Benchmark of bilevel_core's hypergradient methods (issue 8), against the plain inner loop.

Workload: an MLP 100 → 1000 → 10 (111k parameters) trained full-batch with heavy-ball momentum on
1000 synthetic examples; validation loss on another 1000. Hyperparameters:

- m = 1: the learning rate (log-parametrised);
- m = 10: learning rate, momentum and 8 weight decays, one per group of 125 first-layer units;
- m = 1000: per-example loss weights σ(λ_i) (learning rate and momentum fixed).

Methods: ``plain`` (the inner loop alone, no graph), ``reverse``, ``reverse`` with truncate=10,
``forward`` (m ≤ 10 and T ≤ 100, and m = 1 at T = 1000), ``cg`` (m = 10: only the weight decays get a
gradient; m = 1000), and the same reverse hypergradient with ``higher`` and ``torchopt`` (m = 1000, fixed
optimiser settings; their result is checked against ours). Each case runs in a fresh subprocess (peak
memory = its maximum RSS above the RSS after building the data and model), with an address-space cap
so that an out-of-memory is recorded as a result. Times are medians over repeats (one at T = 1000).

    python examples/benchmark_hypergradients.py                 # full run, resumable
    python examples/benchmark_hypergradients.py --quick         # small sizes, a smoke test

Results: ``results/hypergradient_benchmark/runs.jsonl`` (one record per case) and ``results.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import Store  # noqa: E402

GROUPS = 8


def _problem(m: int, sizes: dict[str, int], seed: int = 0):
    import torch
    import torch.nn.functional as F

    from bilevel_core import Momentum

    g = torch.Generator().manual_seed(seed)
    n, d, h, c = sizes["n"], sizes["d"], sizes["h"], sizes["c"]
    teacher = torch.randn(d, c, generator=g)
    X, Xv = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    y, yv = (X @ teacher).argmax(1), (Xv @ teacher).argmax(1)
    params0 = (torch.randn(d, h, generator=g) * (2 / d) ** 0.5, torch.zeros(h),
               torch.randn(h, c, generator=g) * (1 / h) ** 0.5, torch.zeros(c))

    def net(p, inputs):
        return torch.relu(inputs @ p[0] + p[1]) @ p[2] + p[3]

    def outer(p, hp):
        return F.cross_entropy(net(p, Xv), yv)

    if m == 1:
        hparams = (torch.tensor(-2.0),)

        def inner(p, hp):
            return F.cross_entropy(net(p, X), y)

        dyn = Momentum(inner, lr=lambda hp: torch.exp(hp[0]), momentum=0.9)
    elif m == 10:
        hparams = (torch.tensor(-2.0), torch.tensor(2.0), torch.full((GROUPS,), -6.0))
        group = torch.arange(h) * GROUPS // h

        def inner(p, hp):
            wd = torch.exp(hp[2])[group]
            return F.cross_entropy(net(p, X), y) + 0.5 * (wd * (p[0] ** 2).sum(0)).sum()

        dyn = Momentum(inner, lr=lambda hp: torch.exp(hp[0]), momentum=lambda hp: torch.sigmoid(hp[1]))
    else:
        hparams = (torch.zeros(n),)

        def inner(p, hp):
            return (torch.sigmoid(hp[0]) * F.cross_entropy(net(p, X), y, reduction="none")).mean()

        dyn = Momentum(inner, lr=0.1, momentum=0.9)
    return {"params0": params0, "hparams": hparams, "dyn": dyn, "outer": outer, "inner": inner, "net": net,
            "X": X, "y": y, "Xv": Xv, "yv": yv}


def _run_ours(prob: dict[str, Any], method: str, T: int) -> Any:
    from bilevel_core import hypergradient

    if method == "plain":
        dyn = prob["dyn"]
        state = dyn.init(prob["params0"], prob["hparams"])
        for _ in range(T):
            state = dyn(state, prob["hparams"], create_graph=False)
        return None
    options: dict[str, Any] = {}
    name = method
    if method == "reverse_t10":
        name, options = "reverse", {"truncate": min(10, T)}
    if method == "cg":
        options = {"K": 20, "tol": 1e-8}
    return hypergradient(prob["params0"], prob["hparams"], prob["dyn"], prob["outer"], T, method=name, **options)


def _run_higher(prob: dict[str, Any], T: int) -> Any:
    import higher
    import torch
    import torch.nn.functional as F

    lam = prob["hparams"][0].clone().requires_grad_(True)
    W1, b1, W2, b2 = (p.clone() for p in prob["params0"])
    model = torch.nn.Sequential(torch.nn.Linear(W1.size(0), W1.size(1)), torch.nn.ReLU(),
                                torch.nn.Linear(W2.size(0), W2.size(1)))
    with torch.no_grad():
        model[0].weight.copy_(W1.T), model[0].bias.copy_(b1), model[2].weight.copy_(W2.T), model[2].bias.copy_(b2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with higher.innerloop_ctx(model, opt, copy_initial_weights=True) as (fmodel, diffopt):
        for _ in range(T):
            loss = (torch.sigmoid(lam) * F.cross_entropy(fmodel(prob["X"]), prob["y"], reduction="none")).mean()
            diffopt.step(loss)
        (g,) = torch.autograd.grad(F.cross_entropy(fmodel(prob["Xv"]), prob["yv"]), lam)
    return (g,)


def _run_torchopt(prob: dict[str, Any], T: int) -> Any:
    import torch
    import torch.nn.functional as F
    import torchopt

    lam = prob["hparams"][0].clone().requires_grad_(True)
    params = tuple(p.clone().requires_grad_(True) for p in prob["params0"])
    opt = torchopt.sgd(lr=0.1, momentum=0.9)
    state = opt.init(params)
    for _ in range(T):
        per_example = F.cross_entropy(prob["net"](params, prob["X"]), prob["y"], reduction="none")
        loss = (torch.sigmoid(lam) * per_example).mean()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        updates, state = opt.update(grads, state, inplace=False)
        params = tuple(torchopt.apply_updates(params, updates, inplace=False))
    (g,) = torch.autograd.grad(F.cross_entropy(prob["net"](params, prob["Xv"]), prob["yv"]), lam)
    return (g,)


def _case(task: dict[str, Any], queue: Any) -> None:
    """One case in a fresh process: setup, warm-up-free timing over repeats, peak RSS above setup."""
    import torch

    torch.set_num_threads(task["threads"])
    cap = int(task["mem_cap_gb"] * 2**30)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))  # soft cap only, lifted again before reporting
    out: dict[str, Any] = {}
    try:
        prob = _problem(task["m"], task["sizes"])
        def run(T: int) -> Any:
            if task["method"] == "higher":
                return _run_higher(prob, T)
            if task["method"] == "torchopt":
                return _run_torchopt(prob, T)
            return _run_ours(prob, task["method"], T)

        run(2)  # warm-up: imports and first-call overheads are not timed
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times, result = [], None
        for _ in range(task["repeats"]):
            t0 = time.perf_counter()
            result = run(task["T"])
            times.append(time.perf_counter() - t0)
        out["time_s"] = statistics.median(times)
        out["peak_mem_mb"] = round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, 1)
        out["status"] = "ok"
        if result is not None:
            flat = torch.cat([r.reshape(-1) for r in result])
            out["hg_norm"] = float(flat.norm())
            if task["method"] in ("higher", "torchopt"):
                ours = torch.cat([r.reshape(-1) for r in _run_ours(prob, "reverse", task["T"])])
                out["rel_diff_to_ours"] = float((flat - ours).norm() / ours.norm().clamp_min(1e-30))
    except MemoryError:
        out = {"status": "out of memory", "mem_cap_gb": task["mem_cap_gb"]}
    except RuntimeError as exc:
        if "alloc" in str(exc).lower() or "memory" in str(exc).lower():
            out = {"status": "out of memory", "mem_cap_gb": task["mem_cap_gb"]}
        else:
            out = {"status": "error", "error": str(exc)[:300]}
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    queue.put(out)


def run_case(task: dict[str, Any], timeout: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_case, args=(task, queue))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return {"status": f"timeout after {timeout:.0f} s"}
    if queue.empty():
        if proc.exitcode is not None and proc.exitcode < 0:  # killed by a signal, e.g. the OOM killer
            return {"status": f"killed (signal {-proc.exitcode}; out of memory?)"}
        return {"status": "error", "error": f"exit code {proc.exitcode}"}
    return queue.get()


def cases(Ts: list[int]) -> list[tuple[str, int, int]]:
    out = []
    for T in Ts:
        for m in (1, 10, 1000):
            out += [("plain", m, T), ("reverse", m, T), ("reverse_t10", m, T)]
            if (m <= 10 and T <= 100) or (m == 1 and T == max(Ts)):
                out.append(("forward", m, T))
            if m in (10, 1000):
                out.append(("cg", m, T))
            if m == 1000:
                out += [("higher", m, T), ("torchopt", m, T)]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and T (smoke test)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mem-cap-gb", type=float, default=12.0, help="address-space cap per case")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    p.add_argument("--out", default="results/hypergradient_benchmark")
    p.add_argument("--summary-only", action="store_true")
    args = p.parse_args(argv)
    sizes = {"n": 200, "d": 20, "h": 200, "c": 10} if args.quick else {"n": 1000, "d": 100, "h": 1000, "c": 10}
    Ts = [5, 20] if args.quick else [10, 100, 1000]
    out = args.out + ("_quick" if args.quick else "")
    store = Store(os.path.join(out, "runs.jsonl"))
    if not args.summary_only:
        for method, m, T in cases(Ts):
            task = {"method": method, "m": m, "T": T, "sizes": sizes, "threads": args.threads,
                    "repeats": 1 if T >= 1000 else args.repeats, "mem_cap_gb": args.mem_cap_gb}
            if store.has(task):
                continue
            res = run_case(task, args.timeout)
            if res.get("status") != "error":  # errors are printed, not recorded, so a rerun retries them
                store.add(task, res)
            print(f"{method:12s} m={m:<5d} T={T:<5d} {res}", flush=True)
    write_summary(store, out, Ts)
    return 0


def write_summary(store: Store, out: str, Ts: list[int]) -> None:
    recs = {(r["task"]["method"], r["task"]["m"], r["task"]["T"]): r for r in store.records.values()}
    rows = ["| m | T | method | time (s) | × plain | target | peak memory above setup (MB) | status |",
            "|---|---|---|---|---|---|---|---|"]
    for m in (1, 10, 1000):
        for T in Ts:
            plain = recs.get(("plain", m, T))
            for method in ("plain", "reverse", "reverse_t10", "forward", "cg", "higher", "torchopt"):
                r = recs.get((method, m, T))
                if r is None:
                    continue
                ratio, target = "", ""
                if r.get("status") == "ok" and plain and plain.get("status") == "ok":
                    ratio = f"{r['time_s'] / plain['time_s']:.2f}"
                    if method in ("reverse", "reverse_t10"):
                        target = "≤ 3: " + ("met" if r["time_s"] <= 3 * plain["time_s"] else "missed")
                    if method == "forward":
                        met = r["time_s"] <= (3 * m + 2) * plain["time_s"]
                        target = f"≤ {3 * m + 2}: " + ("met" if met else "missed")
                    if method in ("higher", "torchopt") and recs.get(("reverse", m, T), {}).get("status") == "ok":
                        ours = recs[("reverse", m, T)]["time_s"]
                        target = ("ours faster" if ours <= r["time_s"] else "ours slower") + \
                            f" (rel. diff {r.get('rel_diff_to_ours', float('nan')):.1e})"
                time_s = f"{r['time_s']:.3f}" if "time_s" in r else ""
                mem = r.get("peak_mem_mb", "")
                rows.append(f"| {m} | {T} | {method} | {time_s} | {ratio} | {target} | {mem} | {r.get('status')} |")
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write("# Hypergradient benchmark\n\n" + "\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
