"""Where a large LDS fit spends its time: setup phases and the operations of the first inner steps (issue 29).

Builds ``lds.datasets.planted_partition(N)`` (the graphs of ``examples/scale.py``), times the setup phases of
``LDS()`` (validation, kNN search, candidate set) and profiles one short outer iteration with
``torch.profiler`` (self CPU time per operation). Writes ``results/scale/profile_<N>_<label>.md``.

    python examples/profile_scale.py --n 100000 --threads 2 --label after
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch
from lds.datasets import planted_partition
from torch.profiler import ProfilerActivity, profile

from lds import LDS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=20, help="inner steps profiled (one outer iteration)")
    p.add_argument("--lds", default="{}", help="JSON of LDS settings beside the defaults")
    p.add_argument("--label", default="after")
    p.add_argument("--out", default="results/scale")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    settings = json.loads(args.lds)
    data = planted_partition(args.n, noise=0.5, seed=0)
    model = LDS(verbose=False, max_outer_iters=1, max_inner_steps=args.steps, **settings)
    model._check_settings()
    phases = {}
    t = time.perf_counter()
    prep, _ = model._prepare(data, fingerprint=False)
    phases["validate and prepare"] = time.perf_counter() - t
    t = time.perf_counter()
    model.backbone_ = model._make_backbone(prep)  # as fit sets it up: the init_graph check trains it
    dist = model._build_distribution(prep)
    phases["kNN search and candidate set"] = time.perf_counter() - t
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        model.fit(data)
        fit_s = time.perf_counter() - t
    steps = int(model.history_[0]["inner_steps"])
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=40)
    lines = [f"# Profile of LDS at N = {args.n} ({args.label})", "",
             f"`python examples/profile_scale.py --n {args.n} --threads {args.threads} --label {args.label}"
             + (f" --lds '{args.lds}'" if settings else "") + "`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cpus, {args.threads} threads, load "
             f"{os.getloadavg()[0]:.2f} at the end; torch {torch.__version__}. Candidate pairs: "
             f"{dist.probs.numel():,}.", "", "## Setup phases (outside the profiler)", "",
             "| phase | seconds |", "|---|---|",
             *[f"| {k} | {v:.2f} |" for k, v in phases.items()], "",
             f"## One outer iteration under the profiler: {steps} inner steps, {fit_s:.1f} s in all (profiler "
             f"overhead included; setup again inside: {model.setup_time_:.1f} s)", "",
             "Self CPU time per operation, largest first:", "", "```", table, "```"]
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"profile_{args.n}_{args.label}.md")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines[:20]))
    print("written", path)


if __name__ == "__main__":
    main()
