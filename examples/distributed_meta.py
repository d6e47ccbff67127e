"""Distributed meta-learning demo: a shared ridge prior learned from meta-batches spread over ranks.

Each episode is a small linear regression task whose true weights are ``w* = μ* + σ ⊙ ε`` (the same
``μ*`` and per-coordinate spread ``σ`` for all tasks). The inner variables are the per-episode weights
``w``, trained by ``T`` steps of gradient descent on

    L(w, λ) = mean((X_tr w - y_tr)²) + Σ_j exp(ρ_j) (w_j - c_j)²,

and the outer variables ``λ = (ρ, c)`` (log precisions and centre of the prior, shared by all
episodes) minimise the mean validation error ``E(w_T) = mean((X_val w_T - y_val)²)`` over a
meta-batch of episodes by SGD, with reverse-mode hypergradients (the bilevel form of Franceschi et
al., ICML 2018, in small). Episode ``i`` of outer step ``s`` is generated from the seed ``(seed, s, i)``
alone, so every rank builds exactly the episodes of its shard and the global meta-batch does not
depend on the number of ranks.

    torchrun --nproc_per_node=2 examples/distributed_meta.py --episodes 5 --steps 3 --out lam.json
    python examples/distributed_meta.py --episodes 5 --steps 3 --out lam.json      # same λ, one process

Under torchrun the backend is NCCL when CUDA is available (one GPU per rank), else gloo; force it with
``--backend gloo``. With more ranks than episodes some ranks have no episode and only take part in
the all-reduce.

Rank 0 writes λ, the outer loss per step (mean over the meta-batch, before the update) and the run's
settings as JSON to ``--out``. See :mod:`bilevel_core.distributed` for launching on several machines.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from bilevel_core import GradientDescent, hypergradient
from bilevel_core.distributed import (
    broadcast_hparams,
    init_from_env,
    meta_batch_hypergradient,
    rank_and_world_size,
    shard,
)

DIM = 5
N_TRAIN = 8
N_VAL = 12
NOISE = 0.1
MU_STAR = (1.0, -1.0, 0.5, 0.0, 2.0)
SIGMA = (0.1, 0.3, 1.0, 0.05, 0.5)
INNER_LR = 0.05
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def make_episode(seed: int, step: int, index: int, dtype: torch.dtype, device: torch.device) -> dict[str, Any]:
    """Episode ``index`` of outer step ``step``: a deterministic function of ``(seed, step, index)``."""
    g = torch.Generator().manual_seed(((seed * 1_000_003) + step) * 1_000_003 + index)
    mu = torch.tensor(MU_STAR, dtype=torch.float64)
    w_star = mu + torch.tensor(SIGMA, dtype=torch.float64) * torch.randn(DIM, generator=g, dtype=torch.float64)
    X = torch.randn(N_TRAIN + N_VAL, DIM, generator=g, dtype=torch.float64)
    y = X @ w_star + NOISE * torch.randn(N_TRAIN + N_VAL, generator=g, dtype=torch.float64)
    X, y = X.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
    return {"X": X[:N_TRAIN], "y": y[:N_TRAIN], "Xv": X[N_TRAIN:], "yv": y[N_TRAIN:]}


def episode_hypergradient(episode: dict[str, Any], hparams: tuple[torch.Tensor, ...], T: int) -> tuple[Any, Any]:
    """Reverse-mode hypergradient of the validation error of one episode and that error."""
    X, y, Xv, yv = episode["X"], episode["y"], episode["Xv"], episode["yv"]

    def inner(w, hp):
        log_precision, centre = hp
        return ((X @ w[0] - y) ** 2).mean() + (torch.exp(log_precision) * (w[0] - centre) ** 2).sum()

    def outer(w, hp):
        return ((Xv @ w[0] - yv) ** 2).mean()

    w0 = (torch.zeros(DIM, dtype=X.dtype, device=X.device),)
    grads, state = hypergradient(w0, hparams, GradientDescent(inner, lr=INNER_LR), outer, T, return_state=True)
    return grads, state.outer_loss


def train(
    episodes: int, steps: int, *, T: int = 20, outer_lr: float = 0.2, seed: int = 0,
    dtype: torch.dtype = torch.float64, device: torch.device | None = None,
) -> dict[str, Any]:
    """Meta-train λ for ``steps`` outer steps on meta-batches of ``episodes`` episodes (spread over the ranks)."""
    device = torch.device("cpu") if device is None else device
    log_precision = torch.zeros(DIM, dtype=dtype, device=device)
    centre = torch.zeros(DIM, dtype=dtype, device=device)
    hparams = (log_precision, centre)
    broadcast_hparams(hparams)  # identical start on every rank (a no-op for one process)
    mine = shard(range(episodes))  # this rank's episode indices, the same for every step
    losses = []
    for step in range(steps):

        def fn(index: int, hp: tuple[torch.Tensor, ...], _step: int = step) -> tuple[Any, Any]:
            return episode_hypergradient(make_episode(seed, _step, index, dtype, device), hp, T)

        grads, loss = meta_batch_hypergradient(mine, hparams, fn, return_loss=True)
        with torch.no_grad():  # plain SGD, the same update on every rank (torch.optim.SGD works as well)
            for h, g in zip(hparams, grads):
                h.sub_(outer_lr * g)
        losses.append(loss)
    _, world_size = rank_and_world_size()
    return {
        "log_precision": log_precision.detach().cpu().tolist(),
        "centre": centre.detach().cpu().tolist(),
        "losses": losses,
        "world_size": world_size,
        "local_episodes": len(mine),
        "episodes": episodes,
        "steps": steps,
        "T": T,
        "outer_lr": outer_lr,
        "seed": seed,
        "dtype": str(dtype).replace("torch.", ""),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8, help="global meta-batch size (episodes per outer step)")
    parser.add_argument("--steps", type=int, default=5, help="outer SGD steps")
    parser.add_argument("--T", type=int, default=20, help="inner gradient-descent steps")
    parser.add_argument("--outer-lr", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    parser.add_argument("--backend", default=None, help="under torchrun: gloo or nccl (default: nccl with CUDA)")
    parser.add_argument("--out", default=None, help="JSON file written by rank 0 (λ, losses, settings)")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.steps < 1 or args.T < 1:
        parser.error("--episodes, --steps and --T must be >= 1")

    launched = any(v in os.environ for v in ("RANK", "WORLD_SIZE"))  # started by torchrun
    owns_group = launched and not dist.is_initialized()
    device = init_from_env(args.backend) if launched else None
    rank, _ = rank_and_world_size()
    try:
        result = train(args.episodes, args.steps, T=args.T, outer_lr=args.outer_lr, seed=args.seed,
                       dtype=DTYPES[args.dtype], device=device)
        if owns_group:
            dist.barrier()  # every rank leaves its last collective before any tears the group down
    finally:
        if owns_group:
            dist.destroy_process_group()
    if rank == 0:
        print(f"world size {result['world_size']}: outer loss "
              + " -> ".join(f"{v:.4f}" for v in result["losses"]), flush=True)
        if args.out:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            tmp = f"{args.out}.tmp"
            with open(tmp, "w") as f:
                json.dump(result, f, indent=1)
            os.replace(tmp, args.out)
    return result


if __name__ == "__main__":
    main()
