"""Checkpointed reverse mode: Algorithm 2 (Reverse-HG) with states stored at segment boundaries only.

The tracked steps ``s_t = Φ_t(s_{t-1}, λ)`` are cut into segments of ``k`` steps. The forward pass runs
them without a graph and keeps the state at the start of every segment; the last segment keeps its
graph. The backward pass then walks the segments from the last to the first: it re-runs a segment from
its stored start with the graph, and back-propagates the adjoint ``∂f/∂s_end`` through it to
``∂f/∂s_start`` and to λ (Griewank's checkpointing, applied to eq. (12) of Franceschi et al., ICML 2017).
Memory: ``T/k`` states plus one segment's graph; ``k = 1`` is the paper's Algorithm 2 (all states
stored, each step's VJP recomputed), ``k ≈ √T`` minimises the sum.

Replay is exact:

- the global RNG state (CPU and the CUDA devices in use) is saved at each segment start and restored
  for the re-run, as :func:`torch.utils.checkpoint.checkpoint` does;
- per-step data from a callable ``t -> batch`` is fetched again; data from an iterator is recorded
  (references to its batches, with the version counters of their tensors: a batch changed in place
  afterwards cannot be replayed and is refused); a :class:`torch.Generator` inside a batch is set back
  to the state it had when the batch was first used;
- every re-run segment is checked against the state stored at its end; a mismatch (randomness the
  core cannot see, such as a generator captured by the inner objective) is a clear error, never a
  silently wrong hypergradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from .._validation import Params, check_scalar
from ..dynamics import Dynamics, DynamicsState
from ._loop import StopRule, _BatchSource, _initial_state, _requires_grad_alias

_MAX_DEPTH = 4


def check_checkpoint_steps(value: Any, T: int, truncate: int) -> int | None:
    """Validate ``checkpoint_steps``: ``None``, an int in ``[1, T]`` or ``"sqrt"`` (``⌈√τ⌉``, τ tracked steps)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value != "sqrt":
            raise ValueError(
                f"checkpoint_steps={value!r} is not understood: give a segment length (an int in [1, T={T}]) "
                "or 'sqrt' for about √T steps per segment."
            )
        return max(1, math.isqrt(max(truncate, 1) - 1) + 1)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"checkpoint_steps must be an int segment length or 'sqrt', got {type(value).__name__} ({value!r})."
        )
    if not 1 <= value <= T:
        raise ValueError(
            f"checkpoint_steps={value} is out of range: the segment length must satisfy 1 <= checkpoint_steps "
            f"<= T={T} (or pass 'sqrt' for about √T steps per segment, or None to store the whole unroll)."
        )
    return value


def _leaves(batch: Any, depth: int = 0) -> Iterator[Tensor | torch.Generator]:
    """The tensors and generators of a batch (inside tuples, lists and mappings, a few levels deep)."""
    if isinstance(batch, (Tensor, torch.Generator)):
        yield batch
    elif depth < _MAX_DEPTH and isinstance(batch, (tuple, list)):
        for x in batch:
            yield from _leaves(x, depth + 1)
    elif depth < _MAX_DEPTH and isinstance(batch, Mapping):
        for x in batch.values():
            yield from _leaves(x, depth + 1)


@dataclass
class _BatchRecord:
    """What it takes to give step ``i`` its batch again: the batch itself (iterators) or its ``t``."""

    t: int
    batch: Any
    versions: list[tuple[Tensor, int]]
    generator_states: list[Tensor]


class _BatchReplay:
    """Records the batches of the checkpointed steps and hands them back identically (module docstring)."""

    def __init__(self, source: _BatchSource) -> None:
        self.source = source
        self.records: dict[int, _BatchRecord] = {}

    def get(self, t: int, i: int) -> Any:
        """The batch of step ``i`` (taken after ``t`` steps), recorded for a replay."""
        batch = self.source.get(t)
        leaves = list(_leaves(batch))
        gens = [g.get_state() for g in leaves if isinstance(g, torch.Generator)]
        if self.source.replays_by_call:  # fetched again at replay: keep only the generator states
            self.records[i] = _BatchRecord(t, None, [], gens)
        else:
            versions = [(x, x._version) for x in leaves if isinstance(x, Tensor)]
            self.records[i] = _BatchRecord(t, batch, versions, gens)
        return batch

    def check_unchanged(self, i: int | None = None) -> None:
        """Refuse to replay a recorded batch (of step ``i``, or of any step) changed in place since its use."""
        for rec in self.records.values() if i is None else (self.records[i],):
            for x, version in rec.versions:
                if x._version != version:
                    raise ValueError(
                        f"checkpoint_steps cannot replay the batch of step {rec.t}: a tensor in it was modified "
                        "in place after the step used it (an iterator that reuses its buffers). Pass batches as "
                        "a callable t -> batch, yield fresh tensors, or drop checkpoint_steps."
                    )

    @contextmanager
    def replay(self, i: int) -> Iterator[Any]:
        """The batch of step ``i`` as it was first used; generators in it are restored afterwards."""
        rec = self.records[i]
        if self.source.replays_by_call:
            batch = self.source.get(rec.t)
        else:
            self.check_unchanged(i)
            batch = rec.batch
        gens = [g for g in _leaves(batch) if isinstance(g, torch.Generator)]
        now = [g.get_state() for g in gens]
        if len(gens) == len(rec.generator_states):
            for g, s in zip(gens, rec.generator_states):
                g.set_state(s)
        try:
            yield batch
        finally:
            for g, s in zip(gens, now):
                g.set_state(s)


@dataclass
class _RngState:
    cpu: Tensor
    cuda: list[Tensor]


def _cuda_devices(tensors: Params) -> list[int]:
    return sorted({int(x.device.index or 0) for x in tensors if x.device.type == "cuda"})


def _save_rng(devices: list[int]) -> _RngState:
    return _RngState(torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices])


@contextmanager
def _restored_rng(saved: _RngState, devices: list[int]) -> Iterator[None]:
    """Run with the global RNG as saved; the current RNG state comes back afterwards."""
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(saved.cpu)
        for d, s in zip(devices, saved.cuda):
            torch.cuda.set_rng_state(s, d)
        yield


@dataclass
class _Segment:
    """A segment of tracked steps: its first step index, its start state (detached) and RNG state."""

    start: int
    state: DynamicsState
    rng: _RngState
    stop: int = -1  # one past its last step, set when the next segment starts or the run ends


class _StateStore:
    """The segment start states, copied into one preallocated flat buffer per dtype and device.

    Thousands of separately allocated states, interleaved with each step's temporaries, fragment the heap
    (measured on the benchmark MLP, T = 200, one state per step: 823 MB peak for 170 MB of states; 479 MB
    with one buffer)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buffers: dict[tuple[torch.dtype, torch.device], Tensor] = {}
        self.offsets: dict[tuple[torch.dtype, torch.device], int] = {}

    def keep(self, state: DynamicsState) -> DynamicsState:
        """A detached copy of ``state`` whose tensors are views of the store's buffers."""
        tensors = [t.detach() for t in state.tensors()]
        if not self.buffers:
            sizes: dict[tuple[torch.dtype, torch.device], int] = {}
            for t in tensors:
                sizes[(t.dtype, t.device)] = sizes.get((t.dtype, t.device), 0) + t.numel()
            self.buffers = {k: torch.empty(n * self.capacity, dtype=k[0], device=k[1]) for k, n in sizes.items()}
            self.offsets = dict.fromkeys(sizes, 0)
        out = []
        for t in tensors:
            key = (t.dtype, t.device)
            buf, start = self.buffers.get(key), self.offsets.get(key, 0)
            if buf is None or start + t.numel() > buf.numel():  # not the layout of the first state: a copy
                out.append(t.clone())
                continue
            view = buf[start : start + t.numel()].view(t.shape)
            view.copy_(t)
            self.offsets[key] = start + t.numel()
            out.append(view)
        return state.with_tensors(tuple(out))


def _leaf_state(state: DynamicsState) -> DynamicsState:
    """A copy whose tensors are fresh leaves that require grad (the start of a segment's graph)."""
    return state.with_tensors(tuple(t.detach().requires_grad_(True) for t in state.tensors()))


def _vjp(outputs: Params, adjoint: list[Tensor | None], inputs: Params) -> list[Tensor | None]:
    """``adjointᵀ ∂outputs/∂inputs`` (``None`` where no output reaches an input)."""
    pairs = [(o, a) for o, a in zip(outputs, adjoint) if a is not None and o.requires_grad]
    if not pairs:
        return [None] * len(inputs)
    grads = torch.autograd.grad([o for o, _ in pairs], inputs, [a for _, a in pairs], allow_unused=True)
    return list(grads)


def _check_replayed(end: DynamicsState, stored: DynamicsState, first: int, last: int) -> None:
    """The re-run segment must end where the forward pass did (else the steps are not replayable)."""
    for a, b in zip(end.tensors(), stored.tensors()):
        a = a.detach()
        if a.shape != b.shape:
            raise ValueError(f"checkpoint_steps: re-running steps {first}..{last} changed a state tensor's shape.")
        tol = math.sqrt(float(torch.finfo(b.dtype).eps)) if b.is_floating_point() else 0.0
        diff = float((a - b).abs().max()) if b.numel() else 0.0
        scale = float(b.abs().max()) if b.numel() else 0.0
        if not diff <= tol * (1.0 + scale):
            raise ValueError(
                f"checkpoint_steps: re-running steps {first}..{last} did not reproduce the stored state (max "
                f"difference {diff:.3g}); the inner steps are not replayable. Per-step data and random draws "
                "must repeat identically: pass batches as a callable t -> batch that is deterministic in t, draw "
                "random numbers from the global RNG or from a torch.Generator inside the batch (not one captured "
                "by the inner objective), or drop checkpoint_steps."
            )


def checkpointed_gradient(
    params0: Any,
    hparams: Params,
    dynamics: Dynamics,
    outer: Callable[[Params, Params], Tensor],
    T: int,
    truncate: int,
    segment: int,
    batches: _BatchSource,
    stop: StopRule | None,
) -> tuple[Params, DynamicsState]:
    """Algorithm 2 over the last ``truncate`` steps, with ``segment``-step checkpoints (module docstring)."""
    hp = _requires_grad_alias(hparams)
    hp_detached = tuple(h.detach() for h in hparams)
    first_tracked = T - truncate
    replay = _BatchReplay(batches)
    with torch.enable_grad():
        state0 = _initial_state(params0, hp, dynamics, track=first_tracked == 0)
    devices = _cuda_devices(state0.tensors() + hp_detached)
    # the last planned segment keeps its graph: it is never re-run
    last_start = first_tracked + ((truncate - 1) // segment) * segment if truncate else T
    segments: list[_Segment] = []
    store = _StateStore(capacity=-(-truncate // segment))
    kept: DynamicsState | None = None  # the leaf start of the segment run with its graph
    state = state0.detach()
    steps = 0
    with torch.enable_grad():
        for i in range(T):
            tracked = i >= first_tracked
            if tracked and (i - first_tracked) % segment == 0:
                if segments:
                    segments[-1].stop = i
                segments.append(_Segment(i, store.keep(state), _save_rng(devices)))
                if i == last_start:
                    kept = state = _leaf_state(state)
            if kept is not None:
                state = dynamics(state, hp, replay.get(state.t, i), create_graph=True)
            elif tracked:
                state = dynamics(state, hp_detached, replay.get(state.t, i), create_graph=False)
            else:
                state = dynamics(state, hp_detached, batches.get(state.t), create_graph=False)
            steps = i + 1
            if stop is not None and stop(state, state.t):
                state = replace(state, stopped=True)
                break
        if segments:
            segments[-1].stop = steps
        replay.check_unchanged()
        final = state
        grads: list[Tensor | None]
        if kept is not None:  # outer and the last segment in one backward pass
            value = check_scalar(outer(final.params, hp), "outer")
            n_state = len(kept.tensors())
            both = _vjp((value,), [torch.ones_like(value)], kept.tensors() + hp)
            adjoint, grads = both[:n_state], both[n_state:]
            todo = segments[:-1]
        else:
            leaf = _leaf_state(final)
            value = check_scalar(outer(leaf.params, hp), "outer")
            n = len(leaf.params)
            both = _vjp((value,), [torch.ones_like(value)], leaf.params + hp)
            adjoint = both[:n] + [None] * (len(leaf.tensors()) - n)
            grads = both[n:]
            todo = segments
        end_state = segments[-1].state if kept is not None else final.detach()
        for seg in reversed(todo):
            start = _leaf_state(seg.state)
            s = start
            with _restored_rng(seg.rng, devices):
                for i in range(seg.start, seg.stop):
                    with replay.replay(i) as batch:
                        s = dynamics(s, hp, batch, create_graph=True)
            _check_replayed(s, end_state, seg.start, seg.stop - 1)
            both = _vjp(s.tensors(), adjoint, start.tensors() + hp)
            adjoint = both[: len(adjoint)]
            grads = [g if d is None else d if g is None else g + d for g, d in zip(grads, both[len(adjoint):])]
            end_state = seg.state
            del s, start, both
        if first_tracked == 0 and any(t.requires_grad for t in state0.tensors()):  # w_0 = Φ_0(λ)
            both = _vjp(state0.tensors(), adjoint, hp)
            grads = [g if d is None else d if g is None else g + d for g, d in zip(grads, both)]
    out = tuple(torch.zeros_like(h) if g is None else g for h, g in zip(hp, grads))
    return out, replace(final.detach(), outer_loss=value.detach())
