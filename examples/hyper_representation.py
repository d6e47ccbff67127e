"""Hyper-representations on Omniglot (Franceschi et al., ICML 2018, Sec. 4 and Table 4, in small).

A narrow C4L (4 conv blocks, ``--filters`` channels, 28×28 inputs) is the outer variable; per-episode
multinomial logistic-regression heads, trained by T = 5 gradient steps from 0, are the inner variables.
Meta-batches of 4 episodes, Adam on λ, the heads' learning rate learned too. Variants (ICML 2018
Table 4): ``bilevel`` (Algorithm 1), ``approx`` (∇_λ w_T = 0), ``bilevel_train`` (D_val = D_tr) and
``classic`` (joint multitask training: both simplifications).

Data: only the authors' two *small* background sets are available offline (242 characters of 8
alphabets; the full 1623-character Omniglot is not). Characters are split 60/20/20 (seed 0) into
meta-train (with the 90° rotations as extra classes), meta-val and meta-test; nothing is shared
across splits. Every ``--eval-every`` meta-iterations the model is scored on 100 meta-val episodes and
the best state is kept (selection on meta-val only). Reported: 5-way 1-shot and 5-shot accuracy on 600
meta-test episodes (15 queries per class) with 95 % intervals, and the 20 official 20-way one-shot runs
(Lake et al., 2015; drawn from the evaluation alphabets, so none of their characters is seen in training).

    LDS_DATA_DIR=../shared/data python examples/hyper_representation.py          # ~1 h on one core
    LDS_DATA_DIR=../shared/data python examples/hyper_representation.py --quick  # smoke test

Resumable: each (mode, shots) run checkpoints every ``--eval-every`` iterations to
``results/hyper_representation/ckpt/*.ckpt`` (not committed) and appends its final record to
``runs.jsonl``; the summary is ``results.md`` and ``curves.png``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import Store, pyplot, run_all  # noqa: E402

MODES = ("bilevel", "approx", "bilevel_train", "classic")
PAPER_TABLE4 = "ICML 2018 Table 4 (full Omniglot, 5-way 1-shot): Bilevel 98.6, Approx 97.6, Classic 96.7"


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    import torch
    from lds.datasets import load_omniglot, load_omniglot_runs

    from bilevel_core.meta import HyperRepresentation, mean_ci95

    chars = load_omniglot()
    train, val, test = chars.split((0.6, 0.2, 0.2), seed=0)
    k = task["shots"]
    train_eps = train.episodes(5, k, 15, seed=task["seed"], rotations=True)
    val_eps = val.episodes(5, k, 15, seed=10_000)
    test_eps = test.episodes(5, k, 15, seed=20_000)
    model = HyperRepresentation(n_way=5, T=task["T"], filters=task["filters"], meta_batch=4, outer_lr=task["outer_lr"],
                                mode=task["mode"], seed=task["seed"])
    ckpt = os.path.join(task["out"], "ckpt", f"{task['mode']}_{k}shot.ckpt")
    os.makedirs(os.path.dirname(ckpt), exist_ok=True)
    start, best, curve, elapsed = 0, None, [], 0.0
    if os.path.exists(ckpt):
        try:  # tensors and plain containers only: a checkpoint cannot run code when read
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError, AttributeError) as exc:
            raise ValueError(f"{ckpt} is not a readable checkpoint of this script ({type(exc).__name__}); delete it "
                             "to restart that run.") from exc
        model.load_state_dict(state["model"])
        start, best, curve, elapsed = state["iteration"], state["best"], state["curve"], state["elapsed"]
    t0 = time.perf_counter() - elapsed
    it = start
    while it < task["meta_iters"]:
        stop = min(it + task["eval_every"], task["meta_iters"])
        model.fit(train_eps, meta_iters=stop, start=it)
        it = stop
        val_acc, _ = model.evaluate(val_eps, task["val_episodes"])
        curve.append({"iteration": it, "val_acc": val_acc, "outer_loss": model.history[-1]["outer_loss"],
                      "time_s": time.perf_counter() - t0})
        if best is None or val_acc > best["val_acc"]:
            best = {"val_acc": val_acc, "iteration": it, "model": model.state_dict()}
        tmp = ckpt + ".tmp"
        torch.save({"model": model.state_dict(), "iteration": it, "best": best, "curve": curve,
                    "elapsed": time.perf_counter() - t0}, tmp)
        os.replace(tmp, ckpt)
    train_time = time.perf_counter() - t0
    if best is None:
        raise ValueError(f"no meta-validation ran (meta_iters = {task['meta_iters']}): there is no state to evaluate")
    model.load_state_dict(best["model"])
    test_acc, test_ci = model.evaluate(test_eps, task["test_episodes"])
    runs = load_omniglot_runs()
    run_accs = [model.episode_accuracy(r.train, torch.arange(20), r.test, r.test_labels, n_way=20) for r in runs]
    runs_mean, runs_ci = mean_ci95(run_accs)
    return {"val_acc": best["val_acc"], "best_iteration": best["iteration"], "test_acc": test_acc,
            "test_ci95": test_ci, "official_runs_acc": runs_mean, "official_runs_ci95": runs_ci,
            "inner_lr": float(model.log_lr.detach().exp()), "train_time_s": train_time, "curve": curve,
            "num_train_chars": len(train), "num_val_chars": len(val), "num_test_chars": len(test)}


def summarize(store: Store, tasks: list[dict[str, Any]], out: str, args: argparse.Namespace) -> str:
    cmd = "LDS_DATA_DIR=../shared/data python examples/hyper_representation.py" + (" --quick" if args.quick else "")
    lines = ["# Hyper-representations on Omniglot (ICML 2018 Sec. 4, in small)", "", f"Command: `{cmd}`.",
             f"C4L with {args.filters} filters; T = {args.T} head steps; {args.meta_iters} meta-iterations of 4 "
             f"episodes; state chosen on {args.val_episodes} meta-val episodes every {args.eval_every} iterations. "
             "Data: the two small background sets only (242 characters, split 60/20/20 by character); "
             f"accuracy on {args.test_episodes} meta-test episodes ± 95 % interval; official runs: the 20 "
             "20-way one-shot runs of Lake et al. (the 1-shot-trained model is the relevant one). 2 CPU cores "
             "shared with other jobs, one thread.", "",
             "| mode | shots | meta-test acc (%) | official 20-way runs (%) | meta-val acc (%) | best iteration | "
             "learned head lr | training time (s) |", "|---|---|---|---|---|---|---|---|"]
    for t in tasks:
        r = store.get(t)
        if r is None or r.get("status") != "ok":
            continue
        lines.append(f"| {t['mode']} | {t['shots']} | {100 * r['test_acc']:.1f} ± {100 * r['test_ci95']:.1f} | "
                     f"{100 * r['official_runs_acc']:.1f} ± {100 * r['official_runs_ci95']:.1f} | "
                     f"{100 * r['val_acc']:.1f} | {r['best_iteration']} | {r['inner_lr']:.3g} | "
                     f"{r['train_time_s']:.0f} |")
    lines += ["", f"For scale, {PAPER_TABLE4}; our data has 15 % of the characters and our network is narrower."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    plt = pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for t in tasks:
            r = store.get(t)
            if r is not None and r.get("status") == "ok":
                ax.plot([c["iteration"] for c in r["curve"]], [100 * c["val_acc"] for c in r["curve"]],
                        "o-" if t["shots"] == 1 else "s--", label=f"{t['mode']}, {t['shots']}-shot", ms=3)
        ax.set(xlabel="meta-iteration", ylabel="meta-val accuracy (%)", title="5-way Omniglot (small sets)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "curves.png"), dpi=120)
        plt.close(fig)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--shots", nargs="+", type=int, default=[1, 5])
    p.add_argument("--meta-iters", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--val-episodes", type=int, default=100)
    p.add_argument("--test-episodes", type=int, default=600)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--T", type=int, default=5)
    p.add_argument("--outer-lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="results/hyper_representation")
    args = p.parse_args(argv)
    if args.quick:
        args.meta_iters, args.eval_every, args.val_episodes, args.test_episodes, args.filters = 4, 2, 5, 10, 8
        args.modes, args.shots = ["bilevel", "approx"], [1]
    out = args.out + ("_quick" if args.quick else "")
    store = Store(os.path.join(out, "runs.jsonl"))
    tasks = [{"exp": "hyper_representation", "mode": m, "shots": k, "meta_iters": args.meta_iters,
              "eval_every": args.eval_every, "val_episodes": args.val_episodes, "test_episodes": args.test_episodes,
              "filters": args.filters, "T": args.T, "outer_lr": args.outer_lr, "seed": args.seed, "out": out}
             for k in args.shots for m in args.modes]
    run_all(run_one, tasks, store, threads=1)
    print(summarize(store, tasks, out, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
