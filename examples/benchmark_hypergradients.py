"""Benchmark of bilevel_core's hypergradient methods against the plain inner loop (issue 8).

Workload: an MLP 100 → 1000 → 10 (111k parameters) trained full-batch on 1000 synthetic examples
(a random linear teacher, 20 % of the training labels flipped, seeded); the outer objective is the
cross-entropy on another 1000 clean examples. Three hyperparameter sets:

- ``m = 1``    the learning rate η = exp(λ₀) of heavy-ball momentum (μ = 0.9 fixed);
- ``m = 10``   η = exp(λ₀), μ = σ(λ₁) and 8 weight decays exp(λ₂…₉), one per group of 125 hidden units
  (L2 on the first-layer weights of the group);
- ``m = 1000`` one loss weight σ(λᵢ) per training example, plain gradient descent with a fixed η.

A fourth workload, ``small`` (issue 27): softmax regression on 600 examples (d = 100, 10 classes), 10
weight decays (one per group of 10 features), 100 gradient-descent steps, where per-step overhead
dominates; it runs at T = 100 only.

Methods (each against ``plain``, the same T inner steps of our dynamics without any graph):
``reverse``; ``reverse_ckpt`` (``checkpoint_steps="sqrt"``); ``reverse_ckpt1`` (``checkpoint_steps=1``:
states only, Algorithm 2 as written, at the largest T); ``reverse_t10`` (truncate=10); ``forward``
(batched tangents; m ∈ {1, 10} at T < max T, m = 1 at every T); ``forward_dual`` (one dual-tensor pass
per direction, forward mode before batching, at the smallest T); ``hand_reverse`` (a hand-written
autograd unroll, on ``small``);
``cg`` (m = 10: only the 8 weight decays get a gradient, the lr and momentum components are 0 by
construction; m = 1000), K = 20 iterations; ``higher`` and ``torchopt``: the same reverse hypergradient
with those libraries (differentiable SGD with tensor lr/momentum), checked against ours. ``plain_torch``
is a hand-written in-place PyTorch loop, a second baseline that shows the overhead of our dynamics.

How: for every (m, T), one fresh process times all its methods side by side (a warm-up, then
``--repeats`` rounds, rotating the order, median; one round at the largest T), so the ratios to
``plain`` come from one process under the same load. Peak memory is measured per case in another
fresh process: peak RSS (VmHWM, reset through /proc/self/clear_refs) minus the RSS after the data,
the model and a warm-up of the same method on a tiny problem (to load modules and kernels without
filling the allocator's free lists, which would hide the working set of the measured run; see
``memory_worker``). Each process has an address-space cap (``--mem-cap-gb`` above its size after
setup) and each run a time cap (``--time-cap``): an out-of-memory or a timeout is recorded as the
result of the case. ``--threads`` (default 2) sets ``torch.set_num_threads``; on a machine shared with other jobs use
``--threads 1``: two OpenMP threads on two busy cores stall for seconds at a time.

    python examples/benchmark_hypergradients.py                 # full run (~30 min on 2 cores), resumable
    python examples/benchmark_hypergradients.py --quick         # small sizes, a smoke test (~1 min)

Output (under ``--out``, ``--out/quick`` for ``--quick``): ``cases.jsonl`` (one record per case, appended
as soon as its (m, T) group is timed; cases already there are skipped unless ``--force``),
``memory.jsonl`` (the memory runs, cached for resuming) and ``results.md`` (the table and the verdicts).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import PeakRSS, proc_status_kb  # noqa: E402

FULL: dict[str, Any] = {"sizes": {"n": 1000, "d": 100, "h": 1000, "c": 10}, "Ts": [10, 100, 1000]}
QUICK: dict[str, Any] = {"sizes": {"n": 100, "d": 20, "h": 80, "c": 10}, "Ts": [5, 20]}
KINDS = ("lr", "lr_mom_wd", "example_weights", "small")  # m = 1, 10, n; and the small problem (m = 10)
GROUPS = 8  # weight-decay groups of hidden units
SMALL = {"n": 600, "d": 100, "c": 10, "m": 10, "T": 100}  # softmax regression, 10 weight decays, 100 GD steps
CG_K = 20
TRUNCATE = 10
# glibc serves allocations above 32 MB (and, until its threshold adapts, above 128 kB) with fresh mmap pages
# and unmaps them on free, so a run that allocates and frees large tensors every step pays a page fault per
# 4 kB page in kernel time; these tunables keep freed memory in the heap for reuse (--glibc-no-mmap)
GLIBC_NO_MMAP = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"
ORDER = ("plain", "plain_torch", "hand_reverse", "reverse", "reverse_ckpt", "reverse_ckpt1", "reverse_t10",
         "forward", "forward_dual", "cg", "higher", "torchopt")


# ----------------------------------------------------------------------------- the problem


@dataclass
class Problem:
    kind: str
    m: int
    params0: tuple
    hparams: tuple
    dynamics: Any
    inner: Callable
    outer: Callable
    lr: float | Callable  # the optimiser settings, for the hand-written loops and the libraries
    momentum: float | Callable | None  # None: gradient descent


def num_hparams(kind: str, sizes: dict[str, int]) -> int:
    return {"lr": 1, "lr_mom_wd": 2 + GROUPS, "example_weights": sizes["n"], "small": SMALL["m"]}[kind]


def build_small(seed: int = 0) -> Problem:
    """The small problem: softmax regression on 600 examples, 10 weight decays (one per group of 10
    features), 100 steps of gradient descent, as a user would write it (per-step overhead dominates)."""
    import torch
    import torch.nn.functional as F

    from bilevel_core import GradientDescent

    g = torch.Generator().manual_seed(seed)
    n, d, c, m = SMALL["n"], SMALL["d"], SMALL["c"], SMALL["m"]
    teacher = torch.randn(d, c, generator=g)
    X, Xv = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    y, yv = (X @ teacher).argmax(1), (Xv @ teacher).argmax(1)
    group = torch.arange(d) * m // d
    params0 = (torch.zeros(d, c), torch.zeros(c))

    def inner(p, hp):
        wd = torch.exp(hp[0])[group]
        return F.cross_entropy(X @ p[0] + p[1], y) + 0.5 * (wd[:, None] * p[0] * p[0]).sum()

    def outer(p, hp):
        return F.cross_entropy(Xv @ p[0] + p[1], yv)

    dyn = GradientDescent(inner, lr=0.5)
    return Problem("small", m, params0, (torch.full((m,), -4.0),), dyn, inner, outer, 0.5, None)


def build(kind: str, sizes: dict[str, int], seed: int = 0) -> Problem:
    import torch
    import torch.nn.functional as F

    from bilevel_core import Dynamics, GradientDescent, Momentum

    if kind == "small":
        return build_small(seed)
    g = torch.Generator().manual_seed(seed)
    n, d, h, c = sizes["n"], sizes["d"], sizes["h"], sizes["c"]
    teacher = torch.randn(d, c, generator=g)
    X, Xv = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    y, yv = (X @ teacher).argmax(1), (Xv @ teacher).argmax(1)
    flip = torch.rand(n, generator=g) < 0.2
    y = torch.where(flip, torch.randint(0, c, (n,), generator=g), y)
    params0 = (torch.randn(d, h, generator=g) * (2 / d) ** 0.5, torch.zeros(h),
               torch.randn(h, c, generator=g) * (1 / h) ** 0.5, torch.zeros(c))

    def net(p, inputs):
        return torch.relu(inputs @ p[0] + p[1]) @ p[2] + p[3]

    def outer(p, hp):
        return F.cross_entropy(net(p, Xv), yv)

    if kind == "lr":
        hparams: tuple[torch.Tensor, ...] = (torch.tensor(math.log(0.05)),)

        def inner(p, hp):
            return F.cross_entropy(net(p, X), y)

        def lr(hp):
            return torch.exp(hp[0])

        mu = 0.9
        dyn: Dynamics = Momentum(inner, lr=lr, momentum=mu)
        return Problem(kind, 1, params0, hparams, dyn, inner, outer, lr, mu)
    if kind == "lr_mom_wd":
        hparams = (torch.tensor(math.log(0.05)), torch.tensor(math.log(9.0)), torch.full((GROUPS,), -6.0))
        group = torch.arange(h) * GROUPS // h

        def inner(p, hp):
            wd = torch.exp(hp[2])[group]
            return F.cross_entropy(net(p, X), y) + 0.5 * (wd * (p[0] * p[0]).sum(0)).sum()

        def lr(hp):
            return torch.exp(hp[0])

        def momentum(hp):
            return torch.sigmoid(hp[1])

        dyn = Momentum(inner, lr=lr, momentum=momentum)
        return Problem(kind, 2 + GROUPS, params0, hparams, dyn, inner, outer, lr, momentum)
    hparams = (torch.zeros(n),)

    def weighted_inner(p, hp):
        return (torch.sigmoid(hp[0]) * F.cross_entropy(net(p, X), y, reduction="none")).mean()

    dyn = GradientDescent(weighted_inner, lr=0.5)
    return Problem(kind, n, params0, hparams, dyn, weighted_inner, outer, 0.5, None)


# ----------------------------------------------------------------------------- the methods


def _setting(value, hp):
    return value(hp) if callable(value) else value


def run_plain(prob: Problem, T: int) -> None:
    dyn = prob.dynamics
    state = dyn.init(prob.params0, prob.hparams)
    for _ in range(T):
        state = dyn(state, prob.hparams, create_graph=False)


def run_plain_torch(prob: Problem, T: int) -> None:
    import torch

    lr = float(_setting(prob.lr, prob.hparams))
    mu = None if prob.momentum is None else float(_setting(prob.momentum, prob.hparams))
    params = [p.clone().requires_grad_(True) for p in prob.params0]
    vel = [torch.zeros_like(p) for p in params]
    for _ in range(T):
        grads = torch.autograd.grad(prob.inner(params, prob.hparams), params)
        with torch.no_grad():
            for p, v, gr in zip(params, vel, grads):
                if mu is None:
                    p.sub_(gr, alpha=lr)
                else:
                    v.mul_(mu).add_(gr)
                    p.sub_(v, alpha=lr)


def run_hand_reverse(prob: Problem, T: int):
    """A hand-written differentiable unroll with plain autograd (``create_graph``), the reference for the
    overhead of our reverse mode."""
    import torch

    hp = tuple(h.detach().clone().requires_grad_(True) for h in prob.hparams)
    lr = _setting(prob.lr, hp)
    mu = None if prob.momentum is None else _setting(prob.momentum, hp)
    params = [p.clone().requires_grad_(True) for p in prob.params0]
    vel = [torch.zeros_like(p) for p in params]
    for _ in range(T):
        grads = torch.autograd.grad(prob.inner(params, hp), params, create_graph=True)
        if mu is None:
            params = [p - lr * g for p, g in zip(params, grads)]
        else:
            vel = [mu * v + g for v, g in zip(vel, grads)]
            params = [p - lr * v for p, v in zip(params, vel)]
    return torch.autograd.grad(prob.outer(params, hp), hp, allow_unused=True)


def run_forward_dual(prob: Problem, T: int):
    """Forward mode as before batching: one dual-tensor (forward-over-reverse) pass per direction."""
    from bilevel_core.hypergradient import forward as fwd
    from bilevel_core.hypergradient._loop import _BatchSource, run_steps

    carry = fwd._DualTangents(prob.params0, prob.hparams, prob.dynamics)
    state = run_steps(carry.state0, T, carry.step, _BatchSource(None), None)
    return carry.outer(prob.outer, state)[0]


def run_ours(prob: Problem, method: str, T: int):
    from bilevel_core import hypergradient

    options: dict[str, Any] = {}
    name = method
    if method == "reverse_t10":
        name, options = "reverse", {"truncate": min(TRUNCATE, T)}
    elif method == "reverse_ckpt":
        name, options = "reverse", {"checkpoint_steps": "sqrt"}
    elif method == "reverse_ckpt1":
        name, options = "reverse", {"checkpoint_steps": 1}
    elif method == "cg":
        options = {"K": CG_K, "tol": 1e-10}
    return hypergradient(prob.params0, prob.hparams, prob.dynamics, prob.outer, T, method=name, **options)


def run_higher(prob: Problem, T: int):
    import higher
    import torch

    class Holder(torch.nn.Module):  # our parameter layout, in order, so that ``inner`` applies to fast_params
        def __init__(self, params0):
            super().__init__()
            self.ps = torch.nn.ParameterList([torch.nn.Parameter(p.clone()) for p in params0])

        def forward(self, x):  # unused: the objectives read fmodel.fast_params
            raise NotImplementedError

    hp = tuple(h.detach().clone().requires_grad_(True) for h in prob.hparams)
    model = Holder(prob.params0)
    mu = 0.0 if prob.momentum is None else prob.momentum
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5 if callable(mu) else mu)
    override = {"lr": [_setting(prob.lr, hp)]}
    if callable(mu):
        override["momentum"] = [mu(hp)]
    with higher.innerloop_ctx(model, opt, copy_initial_weights=True, override=override) as (fmodel, diffopt):
        for _ in range(T):
            diffopt.step(prob.inner(tuple(fmodel.fast_params), hp))
        return torch.autograd.grad(prob.outer(tuple(fmodel.fast_params), hp), hp, allow_unused=True)


def run_torchopt(prob: Problem, T: int):
    import torch
    import torchopt

    hp = tuple(h.detach().clone().requires_grad_(True) for h in prob.hparams)
    lr = _setting(prob.lr, hp)
    opt = torchopt.sgd(lr=lr) if prob.momentum is None else torchopt.sgd(lr=lr, momentum=_setting(prob.momentum, hp))
    params = tuple(p.clone().requires_grad_(True) for p in prob.params0)
    state = opt.init(params)
    for _ in range(T):
        grads = torch.autograd.grad(prob.inner(params, hp), params, create_graph=True)
        updates, state = opt.update(grads, state, inplace=False)
        params = tuple(torchopt.apply_updates(params, updates, inplace=False))
    return torch.autograd.grad(prob.outer(params, hp), hp, allow_unused=True)


def run_method(prob: Problem, method: str, T: int):
    if method == "plain":
        return run_plain(prob, T)
    if method == "plain_torch":
        return run_plain_torch(prob, T)
    if method == "hand_reverse":
        return run_hand_reverse(prob, T)
    if method == "forward_dual":
        return run_forward_dual(prob, T)
    if method == "higher":
        return run_higher(prob, T)
    if method == "torchopt":
        return run_torchopt(prob, T)
    return run_ours(prob, method, T)


def methods_for(kind: str, T: int, Ts: list[int]) -> list[str]:
    if kind == "small":  # at T = 100 only (the last T of --quick)
        if T != (SMALL["T"] if max(Ts) > SMALL["T"] else max(Ts)):
            return []
        return ["plain", "plain_torch", "hand_reverse", "reverse", "reverse_ckpt", "forward", "forward_dual",
                "higher", "torchopt"]
    out = ["plain", "plain_torch", "reverse", "reverse_ckpt", "reverse_t10"]
    if T >= max(Ts):
        out.insert(4, "reverse_ckpt1")  # states only (Algorithm 2 as written): where memory matters
    if kind == "lr" or (kind == "lr_mom_wd" and T < max(Ts)):
        out.append("forward")
    if kind in ("lr", "lr_mom_wd") and T == min(Ts):
        out.append("forward_dual")
    if kind in ("lr_mom_wd", "example_weights"):
        out.append("cg")
    if kind == "example_weights" or T < max(Ts):  # at the largest T (~11 GB each) only for m = n
        out += ["higher", "torchopt"]
    return out


# ----------------------------------------------------------------------------- worker processes


class _TimeCap(Exception):
    pass


def _on_alarm(signum, frame):
    raise _TimeCap


def _setup_worker(task: dict[str, Any]):
    import torch

    torch.set_num_threads(task["threads"])
    prob = build(task["kind"], task["sizes"])
    cap = (proc_status_kb("VmSize") * 1024) + int(task["mem_cap_gb"] * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.signal(signal.SIGALRM, _on_alarm)
    return prob


def _classify(exc: BaseException, task: dict[str, Any]) -> dict[str, Any]:
    if isinstance(exc, _TimeCap):
        return {"status": f"timeout (> {task['time_cap']:.0f} s)"}
    msg = str(exc)
    if isinstance(exc, MemoryError) or "alloc" in msg.lower() or "memory" in msg.lower():
        return {"status": f"out of memory (cap {task['mem_cap_gb']:g} GB)", "error": msg[:200]}
    return {"status": "error", "error": f"{type(exc).__name__}: {msg[:300]}", "trace": traceback.format_exc(limit=4)}


def _timed(prob: Problem, method: str, T: int, time_cap: float):
    gc.collect()
    signal.setitimer(signal.ITIMER_REAL, time_cap)
    try:
        t0 = time.perf_counter()
        out = run_method(prob, method, T)
        return time.perf_counter() - t0, out
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _cpu_s() -> float:
    """User + system CPU seconds of this process (less sensitive than wall time to other jobs' load)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def memory_worker(task: dict[str, Any], queue: Any) -> None:
    """One case in a fresh process: peak RSS above the RSS after the data and model are built.

    The warm-up runs the same method on a tiny problem: it loads lazily imported modules (higher,
    torchopt, forward mode's decompositions) and initialises the kernels, but leaves next to nothing in
    the allocator's free lists, which a full-size warm-up would do, hiding the working set of the run.
    """
    mem = PeakRSS(reset=False)  # until the warm-up is done: the lifetime peak above the RSS at start
    try:
        prob = _setup_worker(task)
        _timed(build(task["kind"], QUICK["sizes"]), task["method"], 2, task["time_cap"])
        gc.collect()
        mem = PeakRSS()
        wall, _ = _timed(prob, task["method"], task["T"], task["time_cap"])
        queue.put({"status": "ok", "peak_mem_MB": mem.mb(), "mem_run_wall_s": wall})
    except BaseException as exc:  # noqa: B036 - a failed case is a result
        out = _classify(exc, task)
        out["peak_mem_MB"] = mem.mb()  # for an out-of-memory: what it reached before the cap
        queue.put(out)


def timing_worker(task: dict[str, Any], queue: Any) -> None:
    """All methods of one (m, T) in one process: warm-up, then rounds in rotating order; medians."""
    import torch

    prob = _setup_worker(task)
    methods = task["methods"]
    res: dict[str, dict[str, Any]] = {k: {"status": "ok", "times_s": [], "cpu_times_s": []} for k in methods}
    hgs: dict[str, Any] = {}
    for k in methods:
        try:
            _timed(prob, k, min(2, task["T"]), task["time_cap"])
        except BaseException as exc:  # noqa: B036
            res[k] = _classify(exc, task)
    for r in range(task["repeats"]):
        order = methods[r % len(methods):] + methods[: r % len(methods)]
        for k in order:
            if res[k]["status"] != "ok":
                continue
            try:
                c0 = _cpu_s()
                dt, out = _timed(prob, k, task["T"], task["time_cap"])
                res[k]["cpu_times_s"].append(_cpu_s() - c0)
            except BaseException as exc:  # noqa: B036
                res[k] = _classify(exc, task)
                continue
            res[k]["times_s"].append(dt)
            if out is not None and k not in hgs:
                hgs[k] = torch.cat([torch.zeros(h.numel()) if g is None else g.detach().reshape(-1)
                                    for g, h in zip(out, prob.hparams)])
    ref = hgs.get("reverse")
    for k, out in hgs.items():
        rec = res[k]
        rec["hg_norm"] = float(out.norm())
        if not bool(torch.isfinite(out).all()):
            rec["status"] = "non-finite hypergradient"
        if ref is not None and k != "reverse":
            rec["rel_diff_to_reverse"] = float((out - ref).norm() / ref.norm().clamp_min(1e-30))
    queue.put(res)


def order_worker(task: dict[str, Any], queue: Any) -> None:
    """Methods run one after another in one process, in a given order: wall, user and system CPU time, minor
    page faults and peak RSS of each (the TorchOpt gap at T = 1000 of issue 27)."""
    prob = _setup_worker(task)
    for k in dict.fromkeys(task["order"]):
        _timed(build(task["kind"], QUICK["sizes"]), k, 2, task["time_cap"])
    out = []
    for k in task["order"]:
        gc.collect()
        mem = PeakRSS()
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        wall, _ = _timed(prob, k, task["T"], task["time_cap"])
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        out.append({"method": k, "wall_s": round(wall, 2), "user_s": round(r1.ru_utime - r0.ru_utime, 2),
                    "sys_s": round(r1.ru_stime - r0.ru_stime, 2), "minor_faults": r1.ru_minflt - r0.ru_minflt,
                    "peak_mem_MB": mem.mb(), "loadavg_1min": round(os.getloadavg()[0], 2)})
    queue.put({"status": "ok", "runs": out})


def order_study(cfg: dict[str, Any], out: str, ctx: Any, kind: str, T: int, orders: list[list[str]]) -> str:
    """Run ``order_worker`` once per order (a fresh process each); append to ``order_study.jsonl`` and
    write ``order_study.md``."""
    path = os.path.join(out, "order_study.jsonl")
    for order in orders:
        task = {"kind": kind, "T": T, "sizes": cfg["sizes"], "threads": cfg["threads"],
                "mem_cap_gb": cfg["mem_cap_gb"], "time_cap": cfg["time_cap"], "order": order}
        res = run_in_process(order_worker, task, cfg["time_cap"] * (len(order) + 1) + 300, ctx)
        rec = {"kind": kind, "T": T, "order": order, "sizes": cfg["sizes"], "threads": cfg["threads"],
               "date": time.strftime("%Y-%m-%d %H:%M:%S"), **res}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)
    lines = ["# Order study: the same methods in one process, in different orders", "",
             "Each row is one run; runs of one order share a fresh process. user/sys: CPU seconds of the "
             "process during the run; minor faults: pages first touched (each costs kernel time to zero).", "",
             "| m | T | order | position | method | wall (s) | user (s) | sys (s) | minor faults | peak RSS (MB) "
             "| load |",
             "|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            m = num_hparams(rec["kind"], rec["sizes"])
            for i, r in enumerate(rec.get("runs", [])):
                lines.append(f"| {m} | {rec['T']} | {' → '.join(rec['order'])} | {i + 1} | {r['method']} | "
                             f"{r['wall_s']} | {r['user_s']} | {r['sys_s']} | {r['minor_faults']} | "
                             f"{r['peak_mem_MB']} | {r['loadavg_1min']} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "order_study.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    return text


def run_in_process(target: Callable, task: dict[str, Any], timeout: float, ctx: Any) -> dict[str, Any]:
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(task, queue))
    proc.start()
    deadline = time.monotonic() + timeout
    out = None
    while out is None:
        try:
            out = queue.get(timeout=1.0)
        except Exception:  # queue.Empty
            if not proc.is_alive():
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.join()
                return {"status": f"timeout (process killed after {timeout:.0f} s)"}
    proc.join()
    if out is None:
        sig = -proc.exitcode if proc.exitcode is not None and proc.exitcode < 0 else None
        return {"status": f"killed by signal {sig} (out of memory?)" if sig else f"error: exit code {proc.exitcode}"}
    return out


# ----------------------------------------------------------------------------- records


def case_key(method: str, kind: str, T: int, cfg: dict[str, Any]) -> str:
    key: dict[str, Any] = {"method": method, "kind": kind, "T": T, "sizes": cfg["sizes"], "threads": cfg["threads"]}
    if method == "forward":  # issue 27 batched the directions: records of the per-direction pass are not reused
        key["impl"] = "batched"
    return json.dumps(key, sort_keys=True)


class JsonLines:
    """Append-only JSON lines keyed by ``key``; the last record of a key wins; a torn line is ignored."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []  # every record, oldest first (earlier runs of a key too)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    self.records[rec["key"]] = rec
                    self.history.append(rec)

    def add(self, rec: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
        self.records[rec["key"]] = rec
        self.history.append(rec)


def same_run(history: list[dict[str, Any]], r: dict[str, Any], method: str) -> dict[str, Any]:
    """The record of ``method`` timed in the same process as ``r`` (its ``run`` token; records written before
    the token existed share kind, T, sizes, threads and the load read before their process), or ``{}``."""
    fields = ("kind", "T", "sizes", "threads")
    for c in reversed(history):
        if c.get("method") != method or any(c.get(f) != r.get(f) for f in fields):
            continue
        if ("run" in r and c.get("run") == r["run"]) or (
                "run" not in r and "run" not in c and c.get("loadavg_1min") == r.get("loadavg_1min")):
            return c
    return {}


def target_of(method: str, m: int) -> float | None:
    """Targets in × plain: issue 8 (reverse ≤ 3, forward ≤ 3m + 2) and issue 27 (checkpointed reverse
    ≤ 3.5 with ≤ 1 GB at the largest T; forward with m = 10 ≤ 12)."""
    if method in ("reverse", "reverse_t10"):
        return 3.0
    if method in ("reverse_ckpt", "reverse_ckpt1"):
        return 3.5
    if method == "forward":
        return 12.0 if m == 10 else 3.0 * m + 2.0
    return None


def run_group(kind: str, T: int, cfg: dict[str, Any], cases: JsonLines, memory: JsonLines, ctx: Any,
              force: bool) -> None:
    m = num_hparams(kind, cfg["sizes"])
    methods = [k for k in methods_for(kind, T, cfg["Ts"]) if not cfg["methods"] or k in cfg["methods"]]
    keys = {k: case_key(k, kind, T, cfg) for k in methods}
    if not force and all(key in cases.records for key in keys.values()):
        return
    base = {"kind": kind, "m": m, "T": T, "sizes": cfg["sizes"], "threads": cfg["threads"],
            "mem_cap_gb": cfg["mem_cap_gb"], "time_cap": cfg["time_cap"]}
    hard_timeout = cfg["time_cap"] * 2.5 + 120
    mem: dict[str, dict[str, Any]] = {}
    for k in methods:
        if cfg["skip_memory"]:
            mem[k] = {"status": "ok"}
            continue
        if not force and keys[k] in memory.records:
            mem[k] = memory.records[keys[k]]
            continue
        t0 = time.perf_counter()
        out = run_in_process(memory_worker, {**base, "method": k}, hard_timeout, ctx)
        rec: dict[str, Any] = {"key": keys[k], **out}
        memory.add(rec)
        mem[k] = rec
        print(f"  memory m={m:<5d} T={T:<5d} {k:12s} {out.get('peak_mem_MB', '')} MB  {out['status']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    timed = [k for k in methods if mem[k]["status"] == "ok"]
    repeats = cfg["rounds_at_max_T"] if T >= max(cfg["Ts"]) else cfg["repeats"]
    load0 = os.getloadavg()[0]
    run = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{kind}-{T}"  # one timing process
    t0 = time.perf_counter()
    res = run_in_process(timing_worker, {**base, "methods": timed, "repeats": repeats},
                         hard_timeout * (repeats + 1) * max(len(timed), 1), ctx) if timed else {}
    if "status" in res:  # the timing process itself failed
        res = {k: dict(res) for k in timed}
    print(f"  timing m={m} T={T}: {len(timed)} methods × {repeats} rounds ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    plain = res.get("plain", {})
    plain_t = statistics.median(plain["times_s"]) if plain.get("status") == "ok" and plain.get("times_s") else None
    plain_cpu = (statistics.median(plain["cpu_times_s"]) if plain.get("status") == "ok" and plain.get("cpu_times_s")
                 else None)
    import torch

    for k in methods:
        r = dict(res.get(k, {})) if k in timed else {"status": mem[k]["status"], "error": mem[k].get("error")}
        rec = {"key": keys[k], "method": k, **base, "repeats": repeats,
               "torch": torch.__version__, "loadavg_1min": round(load0, 2), "run": run,
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        rec["status"] = r.pop("status", "error")
        times = r.pop("times_s", [])
        cpu = r.pop("cpu_times_s", [])
        if rec["status"] == "ok" and times:
            rec["time_s"] = statistics.median(times)
            rec["times_s"] = [round(x, 4) for x in times]
            if plain_t:
                rec["ratio_to_plain"] = rec["time_s"] / plain_t
        if rec["status"] == "ok" and cpu:
            rec["cpu_s"] = statistics.median(cpu)
            if plain_cpu:
                rec["cpu_ratio_to_plain"] = rec["cpu_s"] / plain_cpu
        rec["peak_mem_MB"] = mem[k].get("peak_mem_MB")
        rec.update({x: v for x, v in r.items() if v is not None})
        tgt = target_of(k, m)
        if tgt is not None and "ratio_to_plain" in rec:
            rec["target_ratio"] = tgt
            rec["target_met"] = rec["ratio_to_plain"] <= tgt
        cases.add(rec)
        t = f"{rec['time_s']:.3f} s" if "time_s" in rec else ""
        ratio = f"{rec['ratio_to_plain']:.2f}x" if "ratio_to_plain" in rec else ""
        print(f"  m={m:<5d} T={T:<5d} {k:12s} {t:>10s} {ratio:>8s} {rec['peak_mem_MB']} MB  {rec['status']}",
              flush=True)


# ----------------------------------------------------------------------------- report


def _fmt(x: Any, spec: str) -> str:
    return "" if x is None else format(x, spec)


def write_report(cases: JsonLines, cfg: dict[str, Any], out: str) -> str:
    """The markdown table of every recorded case of this configuration, and the target verdicts."""
    recs: dict[tuple[str, int, str], dict[str, Any]] = {}
    for rec in cases.records.values():
        if rec.get("sizes") == cfg["sizes"] and rec.get("threads") == cfg["threads"]:
            recs[(rec["kind"], rec["T"], rec["method"])] = rec
    lines = ["| m | T | method | time (s) | × plain | CPU × plain | target | peak memory (MB) | status | "
             "rel. diff to our reverse |", "|---:|---:|---|---:|---:|---:|---|---:|---|---:|"]
    verdicts: list[str] = []
    for kind in KINDS:
        n_hp = num_hparams(kind, cfg["sizes"])
        m = f"{n_hp} (small problem)" if kind == "small" else str(n_hp)
        for T in cfg["Ts"]:
            for k in ORDER:
                r = recs.get((kind, T, k))
                if r is None:
                    continue
                target = ""
                if "target_ratio" in r:
                    met = r["target_met"]
                    mem_note = ""
                    if k in ("reverse_ckpt", "reverse_ckpt1") and T >= max(cfg["Ts"]):
                        mem_ok = r.get("peak_mem_MB") is not None and r["peak_mem_MB"] <= 1024
                        met = met and mem_ok
                        mem_note = f", peak {_fmt(r.get('peak_mem_MB'), '.0f')} MB ≤ 1024"
                    target = f"≤ {r['target_ratio']:g}{mem_note}: " + ("met" if met else "**missed**")
                    if k in ("reverse", "forward", "reverse_ckpt", "reverse_ckpt1"):
                        verdicts.append(f"- {k}, m = {m}, T = {T}: {r['ratio_to_plain']:.2f}× plain{mem_note}, "
                                        f"target ≤ {r['target_ratio']:g}× " + ("met" if met else "missed"))
                hand = same_run(cases.history, r, "hand_reverse")
                if k == "reverse" and hand.get("time_s") and r.get("time_s"):
                    q = r["time_s"] / hand["time_s"]
                    verdicts.append(f"- reverse vs a hand-written autograd unroll, m = {m}, T = {T}: {q:.2f}×, "
                                    f"target ≤ 1.2× " + ("met" if q <= 1.2 else "missed"))
                ours = same_run(cases.history, r, "reverse")
                if k in ("higher", "torchopt"):
                    if r.get("time_s") and ours.get("time_s"):
                        q = ours["time_s"] / r["time_s"]
                        verdict = "met" if q <= 1.0 else "tie (within 5 %)" if q <= 1.05 else "**missed**"
                        target = f"ours/{k} = {q:.2f}: {verdict}"
                        verdicts.append(f"- reverse vs {k}, m = {m}, T = {T}: ours takes {q:.2f}× {k}'s time "
                                        f"({verdict.strip('*')}); rel. diff of the hypergradients "
                                        f"{_fmt(r.get('rel_diff_to_reverse'), '.1e')}")
                    else:
                        target = "n/a"
                diff = "" if k == "cg" else _fmt(r.get("rel_diff_to_reverse"), ".1e")
                status = r.get("status", "")
                lines.append(
                    f"| {m} | {T} | {k} | {_fmt(r.get('time_s'), '.3f')} | {_fmt(r.get('ratio_to_plain'), '.2f')} | "
                    f"{_fmt(r.get('cpu_ratio_to_plain'), '.2f')} | {target} | {_fmt(r.get('peak_mem_MB'), '.1f')} | "
                    f"{status} | {diff} |")
    flat = []
    for kind in ("lr", "lr_mom_wd"):
        mems = [(T, recs[(kind, T, "forward")]["peak_mem_MB"]) for T in cfg["Ts"]
                if (kind, T, "forward") in recs and recs[(kind, T, "forward")].get("status") == "ok"
                and recs[(kind, T, "forward")].get("peak_mem_MB") is not None]
        if len(mems) >= 2:
            n_hp = num_hparams(kind, cfg["sizes"])
            desc = ", ".join(f"T = {T}: {v:.1f} MB" for T, v in mems)
            spread = max(v for _, v in mems) - min(v for _, v in mems)
            ok = spread <= max(20.0, 0.25 * max(v for _, v in mems))
            verdict = "flat in T (met)" if ok else "grows with T (missed)"
            flat.append(f"- forward memory, m = {n_hp}: {desc} → {verdict}")
    load = sorted({r["loadavg_1min"] for r in recs.values() if r.get("loadavg_1min") is not None})
    head = [
        "# Hypergradient benchmark",
        "",
        f"sizes {cfg['sizes']}, T ∈ {cfg['Ts']}, torch {_torch_version()}, {cfg['threads']} thread(s), "
        f"{os.cpu_count()} CPU(s) ({platform.processor() or platform.machine()}), "
        f"1-min load average before the timing runs: {load[0] if load else '?'}–{load[-1] if load else '?'}."
        + (f" glibc tunables: `{os.environ['GLIBC_TUNABLES']}`." if os.environ.get("GLIBC_TUNABLES") else ""),
        "Times: medians over rounds in one process per (m, T); × plain: ratio to `plain` from the same process; "
        "CPU × plain: the same ratio in user + system CPU seconds (recorded since issue 27; less sensitive to "
        "other jobs on the machine); "
        "peak memory: peak RSS above the RSS after setup, one fresh process per case. "
        "rel. diff: ‖g − g_reverse‖ / ‖g_reverse‖ in the same process (float32; none for cg, an implicit "
        "gradient of another quantity).",
        "",
    ]
    text = "\n".join(head + lines + ["", "## Verdicts", ""] + verdicts + flat) + "\n"
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    return text


def _torch_version() -> str:
    import torch

    return torch.__version__


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and T (a smoke test, about a minute)")
    p.add_argument("--out", default="results/hypergradient_benchmark", help="output folder")
    p.add_argument("--repeats", type=int, default=3, help="timing rounds (at T below the largest)")
    p.add_argument("--rounds-at-max-T", type=int, default=1, help="timing rounds at the largest T")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every worker")
    p.add_argument("--mem-cap-gb", type=float, default=12.0, help="address-space cap per worker, above setup")
    p.add_argument("--time-cap", type=float, default=300.0, help="seconds per run of one case")
    p.add_argument("--T", type=int, nargs="*", help="only these T (default: all)")
    p.add_argument("--m", type=int, nargs="*", help="only these m (default: all)")
    p.add_argument("--methods", nargs="*", choices=ORDER, help="only these methods (default: all)")
    p.add_argument("--skip-memory", action="store_true", help="time only (no memory processes)")
    p.add_argument("--force", action="store_true", help="rerun cases already recorded")
    p.add_argument("--report-only", action="store_true", help="only rewrite results.md from the records")
    p.add_argument("--start-method", default="forkserver", choices=["forkserver", "spawn"])
    p.add_argument("--glibc-no-mmap", action="store_true",
                   help="run the workers with GLIBC_TUNABLES mmap_max=0 and a 16 GB trim threshold: freed memory "
                        "is reused instead of returned to the system and faulted in again (issue 27; use its own "
                        "--out)")
    p.add_argument("--order-study", action="store_true",
                   help="instead of the table: reverse and torchopt at the largest T, m = n, in both orders "
                        "in one process each (wall, CPU and page faults; issue 27)")
    args = p.parse_args(argv)
    if args.glibc_no_mmap:  # read by glibc when the forkserver (a fresh interpreter) starts
        os.environ["GLIBC_TUNABLES"] = GLIBC_NO_MMAP
    base = QUICK if args.quick else FULL
    cfg = {"sizes": base["sizes"], "Ts": base["Ts"], "threads": args.threads, "repeats": args.repeats,
           "rounds_at_max_T": args.rounds_at_max_T, "methods": args.methods, "skip_memory": args.skip_memory,
           "mem_cap_gb": args.mem_cap_gb, "time_cap": args.time_cap}
    out = os.path.join(args.out, "quick") if args.quick else args.out
    cases = JsonLines(os.path.join(out, "cases.jsonl"))
    memory = JsonLines(os.path.join(out, "memory.jsonl"))
    if args.order_study:
        ctx = mp.get_context(args.start_method)
        orders = [["reverse", "torchopt", "reverse"], ["torchopt", "reverse", "torchopt"]]
        print(order_study(cfg, out, ctx, "example_weights", max(cfg["Ts"]), orders))
        return 0
    if not args.report_only:
        ctx = mp.get_context(args.start_method)
        if args.start_method == "forkserver":
            ctx.set_forkserver_preload(["torch", "bilevel_core"])
        t_start = time.perf_counter()
        for T in cfg["Ts"]:
            if args.T and T not in args.T:
                continue
            for kind in KINDS:
                if args.m and num_hparams(kind, cfg["sizes"]) not in args.m:
                    continue
                print(f"m={num_hparams(kind, cfg['sizes'])} T={T}", flush=True)
                run_group(kind, T, cfg, cases, memory, ctx, args.force)
        print(f"total {time.perf_counter() - t_start:.0f} s", flush=True)
    print(write_report(cases, cfg, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
