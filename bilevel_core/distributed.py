"""Distributed meta-batches: hypergradients of many episodes spread over processes and machines.

The meta-objective of bilevel meta-learning (Franceschi et al., ICML 2018) is a mean over a
meta-batch of episodes, ``F(λ) = (1/N) Σ_i f_i(λ)`` with ``f_i(λ) = E_i(w_{T,i}(λ), λ)``, so its
hypergradient is the mean of the per-episode hypergradients. This module splits the global
meta-batch over the ranks of a :mod:`torch.distributed` process group (data parallelism over
episodes): every rank computes the hypergradients of its own episodes with any method of
:func:`~bilevel_core.hypergradient`, the count-weighted sums are all-reduced, and every rank divides
by the global count. Every rank therefore gets the exact mean over the global meta-batch (even when
``N`` is not divisible by the world size) and applies the same outer update, so λ stays identical
on every rank (start them from the same λ with :func:`broadcast_hparams`).

Without an initialised process group every function is a no-op (world size 1), so the same script
runs as a single process and gives the same λ up to floating-point summation order.

Launch (``examples/distributed_meta.py`` is a complete script):

- one machine, 2 processes::

      torchrun --nproc_per_node=2 examples/distributed_meta.py --out lam.json

- several machines (run on each; ``--node_rank`` is 0 on the first, 1 on the second, ...; HOST:PORT
  is reachable from all of them)::

      torchrun --nnodes=2 --node_rank=0 --nproc_per_node=4 --rdzv_backend=c10d \\
          --rdzv_endpoint=HOST:29500 examples/distributed_meta.py --out lam.json

- a single process: ``python examples/distributed_meta.py --out lam.json``.

Backends: ``gloo`` works on CPU tensors (also across machines); ``nccl`` needs CUDA tensors with one
GPU per rank, selected by ``torch.cuda.set_device(local_rank)`` before any CUDA work
(:func:`init_from_env` does both and returns the device to put λ and the data on).

Example (per rank, inside a script started by torchrun; ``make_episode`` is the user's)::

    device = init_from_env()
    lam = torch.zeros(5, device=device, requires_grad=True)
    broadcast_hparams((lam,))
    mine = shard(range(num_episodes))

    def fn(i, hparams):
        inner, outer = make_episode(i)
        return hypergradient((torch.zeros(5, device=device),), hparams, GradientDescent(inner, lr=0.1), outer, T=20)

    (g,) = meta_batch_hypergradient(mine, (lam,), fn)   # the same global mean on every rank
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from ._validation import Params, as_tensor_tuple, check_callable, check_same_shapes

__all__ = [
    "SHARD_STRATEGIES",
    "all_reduce_hypergradients",
    "broadcast_hparams",
    "init_from_env",
    "is_distributed",
    "meta_batch_hypergradient",
    "rank_and_world_size",
    "shard",
]

SHARD_STRATEGIES = ("contiguous", "strided")
_ENV_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_DTYPE_CODES = MappingProxyType({torch.float32: 1, torch.float64: 2})  # buffer dtypes (floating, at least float32)

_Item = TypeVar("_Item")
Group = Any  # a torch.distributed ProcessGroup, or None for the default group


def is_distributed() -> bool:
    """``True`` when a :mod:`torch.distributed` default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world_size(group: Group = None) -> tuple[int, int]:
    """``(rank, world_size)`` in ``group`` (default: the global group), ``(0, 1)`` without a process group."""
    if not is_distributed():
        return 0, 1
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError("this process is not a member of the given process group; pass a group that contains it.")
    return rank, dist.get_world_size(group)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return value


def shard(
    items: Sequence[_Item],
    rank: int | None = None,
    world_size: int | None = None,
    *,
    strategy: str = "contiguous",
    group: Group = None,
) -> list[_Item]:
    """The episodes of one rank from the global meta-batch ``items`` (identical on every rank).

    ``rank`` and ``world_size`` default to those of ``group`` (``0`` and ``1`` without a process group).

    Strategies, for ``n = len(items)`` and ``W = world_size``:

    - ``"contiguous"`` (default): consecutive blocks; the first ``n % W`` ranks get ``n // W + 1`` items,
      the others ``n // W`` (as :func:`numpy.array_split`). Rank order then equals episode order.
    - ``"strided"``: ``items[rank::W]`` (round robin).

    Both cover every item exactly once over the ranks. When ``n < W`` some ranks get an empty list;
    that is allowed: :func:`meta_batch_hypergradient` weights every rank by its count, so an empty rank
    contributes nothing and the result is still the mean over the ``n`` episodes.
    """
    if not isinstance(items, (Sequence, Tensor)) or isinstance(items, (str, bytes)):
        raise TypeError(
            f"items must be a sequence supporting len() and indexing (list, tuple, range, tensor), got "
            f"{type(items).__name__}; convert an iterator with list(...)."
        )
    if strategy not in SHARD_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(SHARD_STRATEGIES)}.")
    default_rank, default_world = rank_and_world_size(group)
    world_size = default_world if world_size is None else _check_int(world_size, "world_size", 1)
    rank = default_rank if rank is None else _check_int(rank, "rank", 0)
    if rank >= world_size:
        raise ValueError(f"rank={rank} is out of range for world_size={world_size}: need 0 <= rank < world_size.")
    n = len(items)
    if strategy == "strided":
        indices: Iterable[int] = range(rank, n, world_size)
    else:
        base, extra = divmod(n, world_size)
        start = rank * base + min(rank, extra)
        indices = range(start, start + base + (1 if rank < extra else 0))
    return [items[i] for i in indices]


def _flat_dtype(tensors: Sequence[Tensor]) -> torch.dtype:
    """Common floating dtype of the reduction buffer (at least float32, so counts stay exact)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _check_same_layout(buffer: Tensor, group: Group) -> None:
    """Every rank must all-reduce a buffer of the same size and dtype; a mismatch would otherwise hang,
    abort the process (gloo) or silently mix values, so compare them first (one tiny all-reduce)."""
    code = _DTYPE_CODES.get(buffer.dtype, 100 + buffer.element_size())
    mine = torch.tensor([buffer.numel(), code], dtype=torch.int64, device=buffer.device)
    both = torch.cat([mine, -mine])
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=group)
    if not torch.equal(both[:2], mine) or not torch.equal(-both[2:], mine):
        names = {v: str(k).replace("torch.", "") for k, v in _DTYPE_CODES.items()}
        raise ValueError(
            f"ranks disagree on the hypergradient layout: this rank reduces {buffer.numel() - 1} values as "
            f"{names.get(code, buffer.dtype)}, another rank a different number or dtype. Every rank must pass "
            "hyperparameters (and gradients) of the same shapes and dtypes."
        )


def _reduce_mean(
    sums: Params, count: int, extras: Sequence[float], group: Group
) -> tuple[Params, list[float]]:
    """Global ``(Σ sums) / (Σ count)`` and the same for ``extras``: one sum-all-reduce of one flat buffer."""
    if not is_distributed():
        if count == 0:
            raise ValueError("the meta-batch is empty (count=0): pass at least one episode.")
        return tuple(s / count for s in sums), [e / count for e in extras]
    device = sums[0].device
    for i, s in enumerate(sums):
        if s.device != device:
            raise ValueError(
                f"grads[{i}] is on {s.device} but grads[0] is on {device}: put all hyperparameters on one device."
            )
    backend = dist.get_backend(group)
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(
            f"the process group uses NCCL, which all-reduces CUDA tensors only, but the gradients are on {device}: "
            "move λ and the data to torch.device('cuda', local_rank) (see init_from_env), or use backend='gloo'."
        )
    dtype = _flat_dtype(sums)
    tail = torch.tensor([*extras, float(count)], dtype=dtype, device=device)
    buffer = torch.cat([s.detach().reshape(-1).to(dtype) for s in sums] + [tail])
    _check_same_layout(buffer, group)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=group)
    total = round(float(buffer[-1]))
    if total == 0:
        raise ValueError(
            "the global meta-batch is empty (every rank has count=0): pass at least one episode in total."
        )
    mean = buffer / total
    out = []
    offset = 0
    for s in sums:
        k = s.numel()
        out.append(mean[offset : offset + k].reshape(s.shape).to(s.dtype))
        offset += k
    return tuple(out), [float(v) for v in mean[offset : offset + len(extras)]]


def all_reduce_hypergradients(
    grads: Params | Tensor, count: int, group: Group = None, *, reduction: str = "mean"
) -> Params:
    """Global mean hypergradient over the meta-batch from each rank's ``grads`` over ``count`` episodes.

    Sum-all-reduces the count-weighted gradients (``count · mean`` or the given sum) together with the
    counts, then divides by the global count: the exact mean over all episodes however they are split,
    including ranks with ``count=0``. Every rank of ``group`` must call it with the same shapes.

    Args:
        grads: this rank's gradients, one tensor per hyperparameter: the mean over its episodes
            (``reduction="mean"``) or their sum (``reduction="sum"``). Any values when ``count=0``.
        count: the number of episodes behind ``grads`` (``>= 0``).
        group: the process group (default: the global one).
        reduction: ``"mean"`` or ``"sum"``, how ``grads`` were reduced over the local episodes.

    Returns:
        A new tuple of tensors (dtype and shape of ``grads``), the same on every rank. Without an
        initialised process group, ``grads`` themselves for ``reduction="mean"`` (a no-op).
    """
    grads = as_tensor_tuple(grads, "grads")
    count = _check_int(count, "count", 0)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}.")
    if not is_distributed():
        if count == 0:
            raise ValueError("the meta-batch is empty (count=0): pass at least one episode.")
        return grads if reduction == "mean" else tuple(g / count for g in grads)
    if count == 0:  # the values are arbitrary (maybe NaN): contribute exact zeros
        sums = tuple(torch.zeros_like(g) for g in grads)
    else:
        sums = grads if reduction == "sum" else tuple(g.detach() * count for g in grads)
    means, _ = _reduce_mean(sums, count, (), group)
    return means


def meta_batch_hypergradient(
    episodes: Iterable[Any],
    hparams: Params | Tensor,
    fn: Callable[[Any, Params], Any],
    group: Group = None,
    *,
    return_loss: bool = False,
) -> Params | tuple[Params, float]:
    """Mean hypergradient ``(1/N) Σ_i ∇f_i(λ)`` over the global meta-batch; this rank computes its episodes.

    Args:
        episodes: this rank's episodes (e.g. ``shard(all_episodes)``); may be empty.
        hparams: the hyperparameters λ (the same values on every rank), passed to ``fn`` unchanged.
        fn: ``fn(episode, hparams) -> grads``, one gradient per hyperparameter, e.g. a closure
            around :func:`~bilevel_core.hypergradient`; with ``return_loss=True`` it returns
            ``(grads, loss)`` where ``loss`` is a number or scalar tensor (e.g. ``state.outer_loss``).
        group: the process group (default: the global one; none needed for a single process).
        return_loss: also return the global mean of the losses (for logging).

    Returns:
        The mean gradients (dtype and shape of ``hparams``), identical on every rank, or
        ``(grads, mean_loss)`` with ``return_loss=True``.
    """
    hparams = as_tensor_tuple(hparams, "hparams")
    check_callable(fn, "fn")
    sums = tuple(torch.zeros(h.shape, dtype=h.dtype, device=h.device) for h in hparams)
    loss_sum = 0.0
    count = 0
    for k, episode in enumerate(episodes):
        out = fn(episode, hparams)
        name = f"fn(episode {k}, hparams)"
        if return_loss:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError(f"with return_loss=True, {name} must return (grads, loss), got {type(out).__name__}.")
            out, loss = out
            if isinstance(loss, Tensor):
                if loss.numel() != 1:
                    raise ValueError(f"the loss returned by {name} must be a scalar, got shape {tuple(loss.shape)}.")
                loss = loss.item()
            elif isinstance(loss, bool) or not isinstance(loss, (int, float)):
                raise TypeError(f"the loss returned by {name} must be a number or scalar tensor, got "
                                f"{type(loss).__name__}.")
            loss_sum += float(loss)
        grads = as_tensor_tuple(out, name)
        check_same_shapes(grads, hparams, name, "hparams")
        for s, g in zip(sums, grads):
            s.add_(g.detach())
        count += 1
    means, extras = _reduce_mean(sums, count, (loss_sum,) if return_loss else (), group)
    return (means, extras[0]) if return_loss else means


def broadcast_hparams(hparams: Params | Tensor, src: int = 0, group: Group = None) -> Params:
    """Copy λ from rank ``src`` (a global rank) to every rank of ``group``, in place; returns ``hparams``.

    Call it once before the first outer step so that all ranks start from identical values (e.g. after
    a random initialisation). A no-op without an initialised process group.
    """
    hparams = as_tensor_tuple(hparams, "hparams")
    src = _check_int(src, "src", 0)
    if not is_distributed():
        if src != 0:
            raise ValueError(f"src={src} but there is no process group (a single process is rank 0).")
        return hparams
    world = dist.get_world_size()
    if src >= world:
        raise ValueError(f"src={src} is out of range for world size {world}: need 0 <= src < {world}.")
    if dist.get_backend(group) == "nccl":
        for i, h in enumerate(hparams):
            if h.device.type != "cuda":
                raise ValueError(
                    f"hparams[{i}] is on {h.device} but NCCL broadcasts CUDA tensors only: move it to "
                    "torch.device('cuda', local_rank) (see init_from_env), or use backend='gloo'."
                )
    with torch.no_grad():
        for h in hparams:
            buf = h.detach()
            if buf.is_contiguous():
                dist.broadcast(buf, src, group=group)
            else:
                tmp = buf.contiguous()
                dist.broadcast(tmp, src, group=group)
                buf.copy_(tmp)
    return hparams


def init_from_env(backend: str | None = None, **kwargs: Any) -> torch.device:
    """Initialise the default process group from torchrun's environment; returns this rank's device.

    Reads ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` (and ``LOCAL_RANK``), all set by
    ``torchrun``. ``backend`` defaults to ``"nccl"`` when CUDA is available, else ``"gloo"``; with NCCL
    it first calls ``torch.cuda.set_device(local_rank)`` (one GPU per rank) and returns
    ``cuda:local_rank``, otherwise ``cpu``. Extra keyword arguments (e.g. ``timeout``) go to
    :func:`torch.distributed.init_process_group`. If the group is already initialised it is kept.
    Finish with ``torch.distributed.destroy_process_group()``.
    """
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build; run as a single process.")
    missing = [v for v in _ENV_VARS if not os.environ.get(v)]
    if missing and not dist.is_initialized():
        raise RuntimeError(
            f"environment variable(s) {', '.join(missing)} not set: start the script with torchrun "
            "(e.g. torchrun --nproc_per_node=2 script.py), or, for a single process, do not call init_from_env "
            "(every function of bilevel_core.distributed is then a no-op)."
        )
    if backend is None:
        backend = dist.get_backend() if dist.is_initialized() else ("nccl" if torch.cuda.is_available() else "gloo")
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string such as 'gloo' or 'nccl', got {type(backend).__name__}.")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = "nccl" in backend.lower()
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("backend='nccl' needs CUDA GPUs, but none is available; use backend='gloo' on CPU.")
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible: NCCL needs one GPU "
                "per rank; lower --nproc_per_node to the number of GPUs."
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
