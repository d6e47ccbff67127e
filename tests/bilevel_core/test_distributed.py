"""Distributed meta-batches (bilevel_core.distributed): sharding, the single-process no-op path, and
2-rank gloo runs under torchrun on CPU that must reproduce the single-process λ."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

from bilevel_core import GradientDescent, hypergradient
from bilevel_core.distributed import (
    all_reduce_hypergradients,
    broadcast_hparams,
    init_from_env,
    is_distributed,
    meta_batch_hypergradient,
    rank_and_world_size,
    shard,
)

EXAMPLES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
EXAMPLE = os.path.join(EXAMPLES, "distributed_meta.py")
sys.path.insert(0, EXAMPLES)

import distributed_meta as demo  # noqa: E402

DT = torch.float64
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "GROUP_RANK", "TORCHELASTIC_RUN_ID")


# ----------------------------------------------------------------------------- shard


@pytest.mark.parametrize("strategy", ["contiguous", "strided"])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 7, 12])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shard_covers_every_item_once_with_balanced_sizes(strategy, n, world):
    parts = [shard(list(range(n)), r, world, strategy=strategy) for r in range(world)]
    assert sorted(i for p in parts for i in p) == list(range(n))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    if strategy == "contiguous":
        assert [i for p in parts for i in p] == list(range(n))  # rank order is episode order


def test_shard_layouts_and_defaults():
    items = ["a", "b", "c", "d", "e"]
    assert [shard(items, r, 2) for r in range(2)] == [["a", "b", "c"], ["d", "e"]]
    assert [shard(items, r, 2, strategy="strided") for r in range(2)] == [["a", "c", "e"], ["b", "d"]]
    assert shard(range(3), 3, 4) == []  # more ranks than episodes: an empty shard is allowed
    assert shard(range(4), 1, 3) == [2]
    assert not is_distributed() and rank_and_world_size() == (0, 1)
    assert shard(items) == items  # no process group: rank 0 of 1
    assert [int(i) for i in shard(torch.arange(5), 1, 2)] == [3, 4]  # tensors of episode ids work too


def test_shard_bad_input():
    with pytest.raises(ValueError, match="rank=2 is out of range for world_size=2"):
        shard(range(4), 2, 2)
    with pytest.raises(ValueError, match="rank=1 is out of range for world_size=1"):
        shard(range(4), rank=1)  # no process group: world size 1
    with pytest.raises(ValueError, match="world_size must be >= 1"):
        shard(range(4), 0, 0)
    with pytest.raises(TypeError, match="rank must be an int"):
        shard(range(4), 0.0, 2)
    with pytest.raises(ValueError, match="unknown strategy 'blocks'"):
        shard(range(4), 0, 2, strategy="blocks")
    with pytest.raises(TypeError, match="items must be a sequence.*list"):
        shard(iter(range(4)), 0, 2)


# ----------------------------------------------------------------------------- single process (no-op)


def _quadratic_fn(T=3):
    """Episode e: inner (w - λ)², outer (w - e)²; reverse hypergradient and outer loss."""

    def fn(e, hp):
        dyn = GradientDescent(lambda w, h: ((w[0] - h[0]) ** 2).sum(), lr=0.25)
        outer = lambda w, h: ((w[0] - e) ** 2).sum()  # noqa: E731
        grads, state = hypergradient((torch.zeros(2, dtype=DT),), hp, dyn, outer, T, return_state=True)
        return grads, state.outer_loss

    return fn


def test_all_reduce_without_process_group_is_a_no_op():
    g = (torch.ones(3, dtype=DT), torch.zeros(2, 2, dtype=DT))
    out = all_reduce_hypergradients(g, 4)
    assert len(out) == 2 and out[0] is g[0] and out[1] is g[1]  # the same tensors, untouched
    torch.testing.assert_close(all_reduce_hypergradients(g, 4, reduction="sum")[0], torch.full((3,), 0.25, dtype=DT))
    with pytest.raises(ValueError, match="meta-batch is empty"):
        all_reduce_hypergradients(g, 0)
    with pytest.raises(ValueError, match="count must be >= 0"):
        all_reduce_hypergradients(g, -1)
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum'"):
        all_reduce_hypergradients(g, 1, reduction="avg")
    with pytest.raises(TypeError, match="grads\\[1\\] has dtype torch.int64"):
        all_reduce_hypergradients((g[0], torch.ones(2, dtype=torch.long)), 1)


def test_meta_batch_hypergradient_is_the_mean_over_episodes():
    fn = _quadratic_fn()
    lam = (torch.tensor([0.5, -1.0], dtype=DT),)
    episodes = [0.0, 1.0, 3.0]
    grads, loss = meta_batch_hypergradient(episodes, lam, fn, return_loss=True)
    per = [fn(e, lam) for e in episodes]
    torch.testing.assert_close(grads[0], sum(p[0][0] for p in per) / 3, rtol=1e-14, atol=0)
    assert loss == pytest.approx(sum(float(p[1]) for p in per) / 3, rel=1e-14)
    only = meta_batch_hypergradient(episodes, lam, lambda e, hp: fn(e, hp)[0])
    torch.testing.assert_close(only[0], grads[0], rtol=0, atol=0)


def test_meta_batch_hypergradient_bad_input():
    fn = _quadratic_fn()
    lam = (torch.zeros(2, dtype=DT),)
    with pytest.raises(ValueError, match="meta-batch is empty"):
        meta_batch_hypergradient([], lam, fn)
    with pytest.raises(ValueError, match=r"shape mismatch: fn\(episode 0, hparams\)\[0\] has shape \(3,\)"):
        meta_batch_hypergradient([1.0], lam, lambda e, hp: (torch.zeros(3, dtype=DT),))
    with pytest.raises(ValueError, match="has 2 tensors but hparams has 1"):
        meta_batch_hypergradient([1.0], lam, lambda e, hp: (hp[0], hp[0]))
    with pytest.raises(TypeError, match="must return \\(grads, loss\\)"):
        meta_batch_hypergradient([1.0], lam, lambda e, hp: fn(e, hp)[0], return_loss=True)
    with pytest.raises(ValueError, match="loss returned by .* must be a scalar"):
        meta_batch_hypergradient([1.0], lam, lambda e, hp: (hp, torch.ones(2)), return_loss=True)
    with pytest.raises(TypeError, match="fn must be callable"):
        meta_batch_hypergradient([1.0], lam, None)


def test_broadcast_and_init_without_torchrun(monkeypatch):
    lam = (torch.ones(2, dtype=DT),)
    assert broadcast_hparams(lam)[0] is lam[0]
    with pytest.raises(ValueError, match="src=1 but there is no process group"):
        broadcast_hparams(lam, src=1)
    for var in TORCHRUN_ENV:
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set: start the script "
                                           "with torchrun"):
        init_from_env()


def test_collective_path_in_a_one_rank_gloo_group():
    """The real all-reduce path (flat buffer, layout check) in a world of one: equals the no-op result."""
    fn = _quadratic_fn()
    lam = (torch.tensor([0.5, -1.0], dtype=DT),)
    expected = meta_batch_hypergradient([0.0, 2.0], lam, fn, return_loss=True)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        assert is_distributed() and rank_and_world_size() == (0, 1)
        grads, loss = meta_batch_hypergradient([0.0, 2.0], lam, fn, return_loss=True)
        torch.testing.assert_close(grads[0], expected[0][0], rtol=1e-15, atol=0)
        assert loss == pytest.approx(expected[1], rel=1e-15)
        g = (torch.arange(6, dtype=torch.float32).reshape(2, 3),)
        out = all_reduce_hypergradients(g, 3)
        assert out[0].dtype == torch.float32 and out[0].shape == (2, 3)
        torch.testing.assert_close(out[0], g[0])
        with pytest.raises(ValueError, match="global meta-batch is empty"):
            meta_batch_hypergradient([], lam, fn)
        broadcast_hparams(lam)
        assert lam[0].tolist() == [0.5, -1.0]
    finally:
        dist.destroy_process_group()
    assert not is_distributed()


# ----------------------------------------------------------------------------- torchrun, 2 ranks (gloo, CPU)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(script, *args, nproc=2, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", script, *map(str, args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # a rare crash of a worker at interpreter exit, after its work is done (seen under heavy load, not
        # reproducible outside pytest): run once more rather than report it as a wrong result
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _assert_same_lambda(got, want, rtol=1e-10):
    for key in ("log_precision", "centre", "losses"):
        torch.testing.assert_close(torch.tensor(got[key], dtype=DT), torch.tensor(want[key], dtype=DT),
                                   rtol=rtol, atol=1e-13)


def test_torchrun_two_ranks_matches_single_process_with_uneven_meta_batch(tmp_path, monkeypatch):
    """5 episodes on 2 ranks (3 + 2): the count-weighted all-reduce gives the single-process λ."""
    out = tmp_path / "lam.json"
    _torchrun(EXAMPLE, "--episodes", 5, "--steps", 3, "--backend", "gloo", "--out", out)
    got = json.loads(out.read_text())
    assert got["world_size"] == 2 and got["local_episodes"] == 3 and got["dtype"] == "float64"
    for var in TORCHRUN_ENV:
        monkeypatch.delenv(var, raising=False)
    single_out = tmp_path / "single.json"
    want = demo.main(["--episodes", "5", "--steps", "3", "--out", str(single_out)])
    assert want["world_size"] == 1 and json.loads(single_out.read_text()) == want
    _assert_same_lambda(got, want)
    assert got["losses"][-1] < got["losses"][0]  # the demo does learn


WORKER = textwrap.dedent(
    """
    import json, math, sys
    import torch
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[2])
    import distributed_meta as demo
    from bilevel_core.distributed import (all_reduce_hypergradients, broadcast_hparams, init_from_env,
                                          meta_batch_hypergradient, rank_and_world_size, shard)

    init_from_env("gloo")
    rank, world = rank_and_world_size()
    assert world == 2
    # broadcast: different starts (one of them non-contiguous) become rank 0's values
    a = torch.full((3,), float(rank + 1), requires_grad=True)
    b = torch.full((4, 2), float(rank + 1)).t()
    broadcast_hparams((a, b))
    assert a.tolist() == [1.0] * 3 and bool((b == 1).all()) and a.requires_grad
    # count-weighted mean: rank 0 has 3 episodes with mean 1, rank 1 has 1 with mean 5 -> (3 + 5) / 4 = 2
    g = (torch.full((2,), 1.0 if rank == 0 else 5.0, dtype=torch.float64),)
    assert all_reduce_hypergradients(g, 3 if rank == 0 else 1)[0].tolist() == [2.0, 2.0]
    s = (torch.full((2,), 3.0 if rank == 0 else 5.0),)
    assert all_reduce_hypergradients(s, 3 if rank == 0 else 1, reduction="sum")[0].tolist() == [2.0, 2.0]
    nan = (torch.full((2,), math.nan, dtype=torch.float64),)  # an empty rank's values are ignored
    assert all_reduce_hypergradients(g if rank == 0 else nan, 3 if rank == 0 else 0)[0].tolist() == [1.0, 1.0]
    # layout mismatch across ranks: a clear error on every rank, no hang
    try:
        all_reduce_hypergradients((torch.zeros(3 + rank),), 1)
        raise AssertionError("no error on mismatched shapes")
    except ValueError as e:
        assert "ranks disagree on the hypergradient layout" in str(e), e
    try:
        all_reduce_hypergradients((torch.zeros(3, dtype=torch.float64 if rank else torch.float32),), 1)
        raise AssertionError("no error on mismatched dtypes")
    except ValueError as e:
        assert "another rank a different number or dtype" in str(e), e
    # the global meta-batch is empty on every rank
    try:
        meta_batch_hypergradient(shard([]), (a,), lambda e, hp: hp)
        raise AssertionError("no error on an empty meta-batch")
    except ValueError as e:
        assert "global meta-batch is empty" in str(e), e
    results = {}
    for episodes in (4, 1):  # even split, and rank 1 with an empty shard
        r = demo.train(episodes, 3)
        lam = torch.tensor(r["log_precision"] + r["centre"], dtype=torch.float64)
        gathered = [torch.empty_like(lam) for _ in range(world)]
        dist.all_gather(gathered, lam)
        assert torch.equal(gathered[0], gathered[1]), "λ differs between ranks"
        results[str(episodes)] = r
    if rank == 0:
        with open(sys.argv[1], "w") as f:
            json.dump(results, f)
    dist.barrier()  # nobody tears down gloo while a peer is still in its last collective
    dist.destroy_process_group()
    """
)


def test_torchrun_two_ranks_api_even_and_empty_shards(tmp_path, monkeypatch):
    """broadcast, weighted all-reduce, cross-rank errors, and the demo with 4 (2 + 2) and 1 (1 + 0) episodes."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "results.json"
    _torchrun(str(script), out, EXAMPLES)
    got = json.loads(out.read_text())
    for var in TORCHRUN_ENV:
        monkeypatch.delenv(var, raising=False)
    for episodes, local in ((4, 2), (1, 1)):
        r = got[str(episodes)]
        assert r["world_size"] == 2 and r["local_episodes"] == local
        _assert_same_lambda(r, demo.train(episodes, 3))
