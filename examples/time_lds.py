"""Time one full LDS fit on Cora (one config, one seed): per inner step, per outer iteration, whole fit,
peak memory, for a candidate set (all pairs, or the given graph ∪ kNN-20).

    python examples/time_lds.py --candidates sparse --k 20
    python examples/time_lds.py --candidates all

Appends one JSON line per fit to results/lds_timing/runs.jsonl (device, threads and torch version included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import keep_freed_memory  # noqa: E402


def code_version(path: str) -> str:
    """The commit of the checkout that holds ``path`` (``+dirty`` when its lds/ or bilevel_core/ differ), or
    ``unknown``."""
    import subprocess

    def git(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", path, *cmd], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode:
            return "unknown"
        top = git("rev-parse", "--show-toplevel").stdout.strip()
        dirty = git("-C", top, "diff", "--quiet", "HEAD", "--", "lds", "bilevel_core").returncode
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cora")
    p.add_argument("--candidates", default="all", choices=("all", "sparse"))
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--hypergrad-every", type=int, default=5)
    p.add_argument("--outer-lr", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-outer-iters", type=int, default=200)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default="results/lds_timing/runs.jsonl")
    p.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's malloc settings alone (by default freed memory is kept for reuse)")
    p.add_argument("--note", default="", help="free text stored with the record (e.g. what else ran meanwhile)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    kept = False if args.default_malloc else keep_freed_memory()
    from lds.datasets import load_planetoid

    import lds
    from lds import LDS

    data = load_planetoid(args.dataset)
    model = LDS(hypergrad_every=args.hypergrad_every, outer_lr=args.outer_lr, outer_optimizer="sgd", init_graph="given",
                candidates=args.candidates, k=args.k,
                seed=args.seed, device=args.device, max_outer_iters=args.max_outer_iters, verbose=False)
    t0 = time.perf_counter()
    model.fit(data)
    fit_s = time.perf_counter() - t0
    steps = sum(h["inner_steps"] for h in model.history_)
    record = {
        "dataset": args.dataset, "candidates": args.candidates, "k": args.k if args.candidates == "sparse" else None,
        "num_pairs": int(model.distribution_.pairs.size(1)), "hypergrad_every": args.hypergrad_every,
        "outer_lr": args.outer_lr, "seed": args.seed, "device": args.device, "threads": args.threads,
        "torch": torch.__version__, "machine": platform.machine(), "fit_s": round(fit_s, 1),
        "outer_iters": len(model.history_), "inner_steps": steps, "ms_per_inner_step": round(1000 * fit_s / steps, 1),
        "s_per_outer_iter": round(fit_s / len(model.history_), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "best_iteration": model.best_iteration_, "val_acc": model.best_val_acc_,
        "test_acc": model.score(data, data.test_mask), "expected_edges": model.distribution_.expected_num_edges(),
        "initial_edges": model.initial_num_edges_, "keep_freed_memory": kept,
        "code": code_version(os.path.dirname(lds.__file__)), "note": args.note,
    }
    if args.device.startswith("cuda"):
        record["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
