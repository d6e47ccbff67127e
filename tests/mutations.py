"""Mutation check: apply plausible bugs to a copy of the packages and see whether the tests catch them.

Each :class:`Mutation` replaces one exact snippet of library code (it must occur exactly once, so a
mutation that no longer applies after a refactor is reported as ``stale`` instead of silently testing
nothing) and names the tests that should fail on it. For every mutant the script copies the working
tree (tracked and untracked, not ignored, files) to a temporary folder, applies the mutation there,
runs those tests with the copy as the working directory (so the copy's packages are imported) and
records whether they failed (``killed``) or passed (``survived``). A survivor is a bug the suite
would let through: add a test that kills it.

Usage (from the repository root; not part of CI, it takes several minutes)::

    LDS_DATA_DIR=../shared/data python tests/mutations.py                 # all mutants, report to results/
    LDS_DATA_DIR=../shared/data python tests/mutations.py --only gumbel-noise split-validation-overlap
    python tests/mutations.py --list

The report (``results/mutations.md`` by default) lists every mutant with its status and time.
The baseline (the unmutated copy) must pass each mutant's tests first; if it does not, the mutant is
reported as ``baseline-fails`` (the verdict would mean nothing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Mutation:
    """One bug: ``old`` (exactly once in ``path``) becomes ``new``; ``tests`` should then fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    what: str


MUTATIONS: tuple[Mutation, ...] = (
    # ------------------------------------------------------------------ the four of issue 30
    Mutation(
        "truncate-window-plus-one",
        "bilevel_core/hypergradient/reverse.py",
        "    first_tracked = T - truncate\n",
        "    first_tracked = T - truncate - 1 if 0 < truncate < T else T - truncate\n",
        ("tests/bilevel_core",),
        "reverse mode back-propagates through τ + 1 steps for 0 < τ < T",
    ),
    Mutation(
        "split-validation-overlap",
        "lds/model.py",
        "    return perm[:half].sort().values, perm[half:].sort().values\n",
        "    return perm[: half + 1].sort().values, perm[half:].sort().values\n",
        ("tests/lds",),
        "the outer and early-stopping validation halves share a node (label leak)",
    ),
    Mutation(
        "non-atomic-checkpoint",
        "lds/model.py",
        "    tmp = f\"{path}.tmp-{os.getpid()}\"\n    try:\n        with open(tmp, \"wb\") as f:\n",
        "    torch.save(obj, path)\n    return\n    tmp = path\n    try:\n        with open(tmp, \"wb\") as f:\n",
        ("tests/lds",),
        "the checkpoint is written in place: a failed write destroys the previous one",
    ),
    Mutation(
        "gumbel-noise",
        "bilevel_core/estimators.py",
        "    g = -torch.log(-torch.log(u.clamp(e, 1 - e)))\n",
        "    g = -torch.log(u.clamp(e, 1 - e))\n",
        ("tests/bilevel_core", "tests/examples/test_feature_selection.py"),
        "categorical Gumbel-softmax with exponential instead of Gumbel noise",
    ),
    # ------------------------------------------------------------------ core
    Mutation(
        "adam-no-bias-correction",
        "bilevel_core/dynamics.py",
        "        c1 = 1 - beta1**t\n",
        "        c1 = 1.0\n",
        ("tests/bilevel_core",),
        "Adam without the first-moment bias correction",
    ),
    Mutation(
        "momentum-velocity-dropped",
        "bilevel_core/dynamics.py",
        "        velocity = tuple(mu * v + g for v, g in zip(state.aux[0], grads))\n",
        "        velocity = tuple(mu * g + v for v, g in zip(state.aux[0], grads))\n",
        ("tests/bilevel_core",),
        "heavy-ball momentum with μ on the gradient instead of the velocity",
    ),
    Mutation(
        "implicit-direct-term-dropped",
        "bilevel_core/hypergradient/implicit.py",
        "    grads = tuple(a + b for a, b in zip(direct, indirect))\n",
        "    grads = tuple(b + 0 * a for a, b in zip(direct, indirect))\n",
        ("tests/bilevel_core",),
        "implicit hypergradients without the direct term ∂_λE",
    ),
    Mutation(
        "neumann-first-term-dropped",
        "bilevel_core/hypergradient/linear_solve.py",
        "    term = b\n    q = b\n",
        "    term = b\n    q = tuple(torch.zeros_like(x) for x in b)\n",
        ("tests/bilevel_core",),
        "Neumann series Σ_{k≥1} instead of Σ_{k≥0}",
    ),
    Mutation(
        "cg-wrong-beta",
        "bilevel_core/hypergradient/linear_solve.py",
        "        p = tuple(ri + (rs_new / rs) * pi for ri, pi in zip(r, p))\n",
        "        p = tuple(ri + (rs / rs_new) * pi for ri, pi in zip(r, p))\n",
        ("tests/bilevel_core",),
        "conjugate gradient with the inverted β ratio",
    ),
    Mutation(
        "forward-initial-tangent-ignored",
        "bilevel_core/hypergradient/forward.py",
        "    if not callable(params0) or isinstance(params0, DynamicsState):\n",
        "    if True:\n",
        ("tests/bilevel_core",),
        "forward mode drops dw_0/dλ when params0 is a callable of λ",
    ),
    Mutation(
        "score-function-baseline-sign",
        "bilevel_core/estimators.py",
        "        out = (value - b) * self.log_prob(probs, sample.detach())\n",
        "        out = (value + b) * self.log_prob(probs, sample.detach())\n",
        ("tests/bilevel_core", "tests/examples/test_feature_selection.py"),
        "score-function estimator adds its baseline instead of subtracting it (biased)",
    ),
    Mutation(
        "bernoulli-sample-flipped",
        "bilevel_core/estimators.py",
        "        return (u < p).to(p.dtype)\n",
        "        return (u > p).to(p.dtype)\n",
        ("tests/bilevel_core",),
        "Bernoulli samples drawn with probability 1 - θ",
    ),
    Mutation(
        "truncate-window-one-short",
        "bilevel_core/hypergradient/reverse.py",
        "    first_tracked = T - truncate\n",
        "    first_tracked = T - truncate + 1 if truncate > 0 else T\n",
        ("tests/bilevel_core",),
        "reverse mode back-propagates through τ - 1 steps (also at τ = T)",
    ),
    Mutation(
        "reverse-direct-term-dropped",
        "bilevel_core/hypergradient/reverse.py",
        '        value = check_scalar(outer(state.params, hp), "outer")\n',
        '        value = check_scalar(outer(state.params, hp_detached), "outer")\n',
        ("tests/bilevel_core",),
        "reverse mode without the direct term ∂_λE",
    ),
    Mutation(
        "forward-direct-term-dropped",
        "bilevel_core/hypergradient/forward.py",
        "            hp = tuple(fwAD.make_dual(h.detach(), e) for h, e in zip(hparams, _unit_tangents(hparams, d)))\n"
        "            out = check_scalar(outer(params, hp), \"outer\")\n",
        "            hp = tuple(h.detach() for h in hparams)\n"
        "            out = check_scalar(outer(params, hp), \"outer\")\n",
        ("tests/bilevel_core",),
        "forward mode without the direct term ∂_λE",
    ),
    Mutation(
        "marthe-discount-skips-aux",
        "bilevel_core/hypergradient/forward.py",
        "discount * zk if discount != 1.0 else zk",
        "discount * zk if discount != 1.0 and k < n else zk",
        ("tests/bilevel_core",),
        "MARTHE's discount applied to the parameter tangent but not to the velocity's",
    ),
    Mutation(
        "gumbel-temperature-on-logits-only",
        "bilevel_core/estimators.py",
        "    y = torch.softmax((logits + g) / temperature, dim=dim)\n",
        "    y = torch.softmax(logits / temperature + g, dim=dim)\n",
        ("tests/bilevel_core",),
        "Gumbel-softmax divides the logits but not the noise by the temperature",
    ),
    Mutation(
        "binary-concrete-noise-scale",
        "bilevel_core/estimators.py",
        "    noise = torch.log(u) - torch.log1p(-u)\n",
        "    noise = 0.8 * (torch.log(u) - torch.log1p(-u))\n",
        ("tests/bilevel_core",),
        "binary concrete with logistic noise of the wrong scale",
    ),
    Mutation(
        "binary-concrete-temperature-multiplied",
        "bilevel_core/estimators.py",
        "    y = torch.sigmoid((logits + noise) / temperature)\n",
        "    y = torch.sigmoid((logits + noise) * temperature)\n",
        ("tests/bilevel_core",),
        "binary concrete multiplies by the temperature instead of dividing",
    ),
    Mutation(
        "binary-concrete-gradient-detached",
        "bilevel_core/estimators.py",
        "    logits = torch.log(p) - torch.log1p(-p)\n",
        "    logits = torch.log(p) - torch.log1p(-p).detach()\n",
        ("tests/bilevel_core",),
        "relaxed Bernoulli loses part of its gradient in θ",
    ),
    Mutation(
        "load-params-into-copy",
        "bilevel_core/modules.py",
        "                named[n].copy_(p)\n",
        "                named[n].detach().clone().copy_(p)\n",
        ("tests/bilevel_core",),
        "FunctionalModule.load_params writes into a copy, not the module",
    ),
    Mutation(
        "hyperoptimizer-accepts-return-state",
        "bilevel_core/optimizer.py",
        '        if "return_state" in options:\n'
        '            raise TypeError("return_state is managed by HyperOptimizer; the last state is in .state.")\n'
        "        _check_options(method, options)\n",
        "        _check_options(method, options)\n",
        ("tests/bilevel_core",),
        "HyperOptimizer accepts return_state (its .state would be bypassed)",
    ),
    Mutation(
        "mean-ci95-biased-std",
        "bilevel_core/meta.py",
        "    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))\n",
        "    s = math.sqrt(sum((v - m) ** 2 for v in values) / n)\n",
        ("tests/bilevel_core",),
        "the 95 % interval of meta-test accuracy uses the biased standard deviation",
    ),
    Mutation(
        "inverse-time-sgd-off-by-one",
        "bilevel_core/optim.py",
        "                p.sub_(self.step_size(group, k) * p.grad)\n",
        "                p.sub_(self.step_size(group, k + 1) * p.grad)\n",
        ("tests/bilevel_core", "tests/lds/test_split_and_fit.py"),
        "the inverse-time outer step starts at η₀/(1 + d) instead of η₀",
    ),
    # ------------------------------------------------------------------ LDS
    Mutation(
        "pair-gradient-degree-term",
        "lds/propagation.py",
        "    c = -0.5 * s * s * ((E * Y).sum(1) + (AE * M).sum(1))\n",
        "    c = -0.5 * s * ((E * Y).sum(1) + (AE * M).sum(1))\n",
        ("tests/lds",),
        "the degree term of the pair gradient with d^-1/2 instead of d^-1",
    ),
    Mutation(
        "deferred-gradient-no-transpose",
        "lds/propagation.py",
        "            G = F.T.contiguous().add_(F).add_(self.c.unsqueeze(1)).add_(self.c.unsqueeze(0))\n",
        "            G = F.contiguous().add_(F).add_(self.c.unsqueeze(1)).add_(self.c.unsqueeze(0))\n",
        ("tests/lds",),
        "the deferred all-pairs gradient forms 2F instead of F + Fᵀ",
    ),
    Mutation(
        "sampled-degree-no-self-loop",
        "lds/propagation.py",
        "        degree = torch.ones(n, dtype=v.dtype, device=v.device)\n",
        "        degree = torch.full((n,), 2.0, dtype=v.dtype, device=v.device)\n",
        ("tests/lds",),
        "the sparse GCN normalisation counts the self-loop twice (d̃ = 2 + A1)",
    ),
    Mutation(
        "early-stopping-keeps-last",
        "lds/model.py",
        '        if best is None or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"]):\n',
        "        if True:\n",
        ("tests/lds",),
        "early stopping keeps the last outer iteration instead of the best",
    ),
    Mutation(
        "resume-ignores-the-data",
        "lds/model.py",
        "        if differ:\n",
        "        if False:\n",
        ("tests/lds",),
        "resume accepts a checkpoint written for other data of the same size",
    ),
    Mutation(
        "files-loaded-with-pickle",
        "lds/model.py",
        '            state = torch.load(path, map_location="cpu", weights_only=True)\n',
        '            state = torch.load(path, map_location="cpu", weights_only=False)\n',
        ("tests/lds",),
        "model and checkpoint files are unpickled with code execution",
    ),
    Mutation(
        "deferred-part-dropped",
        "bilevel_core/hypergradient/reverse.py",
        "        grads = tuple(g + _deferred_part(sinks[i], g, i) if i in sinks else g for i, g in enumerate(grads))\n",
        "        grads = tuple(grads)\n",
        ("tests/bilevel_core", "tests/lds"),
        "the deferred part of a hypergradient (LDS's all-pairs gradient) is not added back",
    ),
    Mutation(
        "fit-projection-no-upper-bound",
        "lds/model.py",
        "        project_theta = project_box(0.0, 1.0)\n",
        "        project_theta = project_box(0.0, None)\n",
        ("tests/lds",),
        "the fit projects θ on [0, ∞) instead of [0, 1] after each update",
    ),
    Mutation(
        "theta-projection-no-upper-bound",
        "lds/edges.py",
        "            self.probs.clamp_(0.0, 1.0)\n",
        "            self.probs.clamp_(min=0.0)\n",
        ("tests/lds",),
        "EdgeDistribution.project_ projects θ on [0, ∞) instead of [0, 1]",
    ),
    Mutation(
        "train-loss-stall-patience",
        "lds/model.py",
        "        return self.since >= self.patience\n",
        "        return self.since > self.patience\n",
        ("tests/lds",),
        "the inner stopping rule waits one step longer than its patience",
    ),
    # ------------------------------------------------------------------ datasets
    Mutation(
        "delete-edges-count",
        "datasets/graphs.py",
        "    num_keep = int(round(keep * num_edges))\n",
        "    num_keep = int(keep * num_edges)\n",
        ("tests/datasets",),
        "edge deletion truncates instead of rounding the number of kept edges",
    ),
    Mutation(
        "knn-directed",
        "datasets/graphs.py",
        "    return both_directions(undirected_pairs(directed))\n",
        "    return directed\n",
        ("tests/datasets",),
        "the kNN graph is left directed (not symmetrised)",
    ),
    Mutation(
        "row-normalisation-dropped",
        "lds/gcn.py",
        "    return torch.where(rowsum > 0, x / rowsum.clamp_min(torch.finfo(x.dtype).tiny), x)\n",
        "    return x\n",
        ("tests/lds",),
        "Kipf's row normalisation of the features is skipped",
    ),
)


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # killed | survived | stale | baseline-fails | error | timeout
    seconds: float
    detail: str = ""


def copy_tree(dest: str) -> None:
    """Copy the working tree's tracked and untracked (not ignored) files to ``dest``; map lds.datasets."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = os.path.join(ROOT, rel)
        if not os.path.isfile(src):
            continue  # deleted in the working tree
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(src, target)
    # the editable install maps lds.datasets to ROOT/datasets; inside the copy, map it to the copy's folder
    os.symlink(os.path.join("..", "datasets"), os.path.join(dest, "lds", "datasets"))


def run_tests(copy: str, tests: Sequence[str], timeout: float) -> tuple[int | None, str]:
    """pytest on ``tests`` inside ``copy``; returns (exit code or None on timeout, last output line)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return proc.returncode, lines[-1] if lines else proc.stderr.strip()[-200:]


def check_mutant(mutation: Mutation, copy: str, timeout: float, baseline: dict[tuple[str, ...], bool]) -> Outcome:
    """Apply ``mutation`` in ``copy``, run its tests, restore the file."""
    t0 = time.perf_counter()
    path = os.path.join(copy, mutation.path)
    with open(path, encoding="utf-8") as fh:
        source = fh.read()
    count = source.count(mutation.old)
    if count != 1:
        return Outcome(mutation, "stale", 0.0, f"snippet found {count} times in {mutation.path}")
    if mutation.tests not in baseline:
        code, last = run_tests(copy, mutation.tests, timeout)
        baseline[mutation.tests] = code == 0
        if code != 0:
            return Outcome(mutation, "baseline-fails", time.perf_counter() - t0, last)
    elif not baseline[mutation.tests]:
        return Outcome(mutation, "baseline-fails", 0.0, "")
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(source.replace(mutation.old, mutation.new))
        code, last = run_tests(copy, mutation.tests, timeout)
    finally:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(source)
    status = {None: "timeout", 0: "survived", 1: "killed"}.get(code, "error")
    return Outcome(mutation, status, time.perf_counter() - t0, last)


def write_report(outcomes: list[Outcome], path: str, command: str) -> None:
    killed = sum(o.status in ("killed", "timeout") for o in outcomes)
    lines = [
        "# Mutation report",
        "",
        f"Made by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"{killed} of {len(outcomes)} mutants killed; survivors: "
        + (", ".join(o.mutation.name for o in outcomes if o.status == "survived") or "none") + ".",
        "",
        "| mutant | file | bug | tests | status | s |",
        "|---|---|---|---|---|---:|",
    ]
    for o in outcomes:
        m = o.mutation
        lines.append(f"| `{m.name}` | `{m.path}` | {m.what} | {' '.join(m.tests)} | **{o.status}** | {o.seconds:.0f} |")
    details = [o for o in outcomes if o.status not in ("killed", "survived")]
    if details:
        lines += ["", "Details:", ""] + [f"- `{o.mutation.name}`: {o.detail}" for o in details]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run these mutants only")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--report", default=os.path.join(ROOT, "results", "mutations.md"),
                        help="where to write the markdown report")
    parser.add_argument("--jobs", type=int, default=1, help="mutants checked at once (one tree copy each)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per pytest run")
    args = parser.parse_args(argv)
    names = [m.name for m in MUTATIONS]
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:34s} {m.path:32s} {m.what}")
        return 0
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"unknown mutant(s) {', '.join(unknown)}; see --list.")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}.")
    chosen = [m for m in MUTATIONS if args.only is None or m.name in args.only]
    jobs = min(args.jobs, len(chosen))
    with tempfile.TemporaryDirectory(prefix="lds-mutants-") as tmp:
        copies = [os.path.join(tmp, f"tree{k}") for k in range(jobs)]
        for c in copies:
            copy_tree(c)
        queues = [chosen[k::jobs] for k in range(jobs)]

        def worker(k: int) -> list[Outcome]:
            baseline: dict[tuple[str, ...], bool] = {}
            out = []
            for m in queues[k]:
                o = check_mutant(m, copies[k], args.timeout, baseline)
                print(f"{o.status:15s} {m.name:34s} {o.seconds:6.0f} s  {o.detail if o.status != 'killed' else ''}",
                      flush=True)
                out.append(o)
            return out

        with ThreadPoolExecutor(jobs) as pool:
            results = [o for part in pool.map(worker, range(jobs)) for o in part]
    order = {m.name: i for i, m in enumerate(MUTATIONS)}
    results.sort(key=lambda o: order[o.mutation.name])
    command = "python tests/mutations.py" + (" " + " ".join(argv) if argv else " " + " ".join(sys.argv[1:])).rstrip()
    write_report(results, args.report, command.strip())
    survivors = [o.mutation.name for o in results if o.status == "survived"]
    print(f"{len(results) - len(survivors)} of {len(results)} killed; survivors: {', '.join(survivors) or 'none'}")
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
