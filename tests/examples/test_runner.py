"""The benchmark runner: resumable records, and side-by-side runners that split the work."""

import hashlib
import os
import platform
import subprocess
import sys
import time

import pytest
import torch

from lds import LDS

from ..lds.synthetic import planted_partition

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))

from runner import (  # noqa: E402
    CHECKPOINT_ENV,
    Store,
    chosen_on_validation,
    fit_resumable,
    keep_freed_memory,
    paired_cells,
    run_all,
    run_digest,
    run_key,
    select_arm,
    select_config,
)


def test_records_resume_and_side_by_side_runners_split_the_work(tmp_path):
    path = str(tmp_path / "runs.jsonl")
    a, b = Store(path), Store(path)
    tasks = [{"exp": "t", "seed": s} for s in range(4)]
    calls = []

    def fn(task):
        calls.append(task["seed"])
        if task["seed"] == 1:  # while this run is going, another runner records seed 2
            b.add(tasks[2], {"val_acc": 0.5, "test_acc": 0.5, "status": "ok", "wall_s": 0.0})
        return {"val_acc": 1.0, "test_acc": 1.0}

    run_all(fn, tasks, a, log=lambda msg: None)
    assert calls == [0, 1, 3]  # seed 2 was done by the other runner: picked up, not repeated
    assert Store(path).records.keys() == {run_key(t) for t in tasks}
    if platform.system() == "Linux":  # each record carries the runner's resident size, to spot leaks
        assert Store(path).get(tasks[0])["rss_mb"] > 10
    calls.clear()
    run_all(fn, tasks, Store(path), log=lambda msg: None)
    assert calls == []  # everything is recorded: a restart runs nothing


def test_claims_block_live_processes_and_take_over_stale_ones(tmp_path):
    store = Store(str(tmp_path / "runs.jsonl"))
    task = {"exp": "t", "seed": 0}
    assert store.claim(task) and store.claim(task)  # this process holds it (re-claim is fine)
    store.release(task)
    # a lock left by a process that no longer exists is taken over
    lock = os.path.join(store.path + ".claims", hashlib.sha1(run_key(task).encode()).hexdigest() + ".lock")
    with open(lock, "w") as fh:
        fh.write("999999999")
    assert store.claim(task)
    # so is one left by a killed process that is not reaped yet (a zombie still answers kill(pid, 0))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(500):
        with open(f"/proc/{child.pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    with open(lock, "w") as fh:
        fh.write(str(child.pid))
    assert store.claim(task)
    child.wait()
    # a lock held by another live process (our parent) blocks
    with open(lock, "w") as fh:
        fh.write(str(os.getppid()))
    assert not store.claim(task)


def _pool_fn(task):
    """A run for the worker-pool runner (module level: sent to the worker processes by reference)."""
    return {"val_acc": 1.0, "test_acc": float(task["seed"])}


def test_worker_pool_claims_each_run_so_side_by_side_runners_split_the_work(tmp_path):
    # the pool runner (workers > 1) used to take no claims: a second runner on the same store repeated its runs
    path = str(tmp_path / "runs.jsonl")
    store = Store(path)
    tasks = [{"exp": "t", "seed": s} for s in range(5)]
    other = Store(path)  # another runner: it holds seed 1 (a live process: our parent) and has recorded seed 3
    lock = os.path.join(path + ".claims", run_digest(tasks[1]) + ".lock")
    other.claim(tasks[1])
    with open(lock, "w") as fh:
        fh.write(str(os.getppid()))
    other.add(tasks[3], {"val_acc": 0.5, "test_acc": 0.5, "status": "ok", "wall_s": 0.0})
    run_all(_pool_fn, tasks, store, workers=2, threads=1, log=lambda msg: None)
    got = Store(path)
    assert set(got.records) == {run_key(t) for t in (tasks[0], tasks[2], tasks[3], tasks[4])}
    assert got.get(tasks[3])["test_acc"] == 0.5  # recorded by the other runner, not run again
    assert [got.get(tasks[s])["test_acc"] for s in (0, 2, 4)] == [0.0, 2.0, 4.0]
    # the claims it took are released; the other runner's is left alone
    assert os.listdir(path + ".claims") == [os.path.basename(lock)]
    os.remove(lock)
    run_all(_pool_fn, tasks, store, workers=2, threads=1, log=lambda msg: None)  # now seed 1 is free: run
    assert Store(path).get(tasks[1])["test_acc"] == 1.0


def test_failed_runs_are_recorded_then_retried_on_the_next_start(tmp_path):
    path = str(tmp_path / "runs.jsonl")
    tasks = [{"exp": "t", "config": {"c": c}, "seed": 0} for c in range(2)]
    attempts = []

    def flaky(task):
        attempts.append(task["config"]["c"])
        if task["config"]["c"] == 1 and attempts.count(1) == 1:
            raise RuntimeError("transient failure")
        return {"val_acc": 0.5 + task["config"]["c"] / 10, "test_acc": 0.0}

    run_all(flaky, tasks, Store(path), log=lambda msg: None)
    store = Store(path)
    assert store.get(tasks[1])["status"] == "error" and "transient failure" in store.get(tasks[1])["error"]
    assert not store.has(tasks[1])
    # a failed selection run counts as missing, so no configuration is chosen without it
    grid, make = [{"c": 0}, {"c": 1}], lambda c, s: {"exp": "t", "config": c, "seed": s}
    assert select_config(store, make, grid, [0])[0] is None
    run_all(flaky, tasks, store, log=lambda msg: None)
    assert attempts == [0, 1, 1]  # only the failed run is tried again
    store = Store(path)  # the success replaces the failure, whatever the order in the file
    assert store.has(tasks[1]) and store.get(tasks[1])["status"] == "ok"
    assert select_config(store, make, grid, [0])[0] == {"c": 1}


def test_a_missing_module_stops_the_runner_and_records_nothing(tmp_path):
    path = str(tmp_path / "runs.jsonl")
    tasks = [{"exp": "t", "config": {"c": c}, "seed": 0} for c in range(3)]

    def uninstalled(task):
        import lds_not_installed_anywhere  # noqa: F401

    with pytest.raises(RuntimeError, match="No module named 'lds_not_installed_anywhere'.*pip install"):
        run_all(uninstalled, tasks, Store(path), log=lambda msg: None)
    store = Store(path)
    assert not any(store.get(t) for t in tasks)  # no error records: nothing to clean up after installing
    assert not os.listdir(str(tmp_path / "runs.jsonl.claims"))  # and no claim is left behind


def test_fit_resumable_continues_a_cut_off_fit(tmp_path, monkeypatch):
    data = planted_partition(per_class=10, seed=3)
    settings = dict(
        hypergrad_every=5, max_outer_iters=6, patience=50, num_samples=4, max_inner_steps=40, seed=5, verbose=False
    )
    task = {"exp": "t", "seed": 5}
    full = LDS(**settings).fit(data)
    plain = fit_resumable(LDS(**settings), data, task)  # no checkpoint folder: a plain fit
    assert torch.equal(plain.distribution_.probs, full.distribution_.probs) and not plain.resumed_

    folder = tmp_path / "ckpt"
    monkeypatch.setenv(CHECKPOINT_ENV, str(folder))
    ck = folder / (hashlib.sha1(run_key(task).encode()).hexdigest() + ".ckpt")
    folder.mkdir()
    # a run cut off after 3 outer iterations leaves its checkpoint behind
    LDS(**{**settings, "max_outer_iters": 3, "checkpoint_every": 1}).fit(data, checkpoint=ck)
    assert ck.exists()
    resumed = fit_resumable(LDS(**settings), data, task)
    assert resumed.resumed_ and not ck.exists()  # continued, then cleaned up
    assert torch.equal(resumed.distribution_.probs, full.distribution_.probs)
    assert [h["val_acc"] for h in resumed.history_] == [h["val_acc"] for h in full.history_]
    # a checkpoint written with other settings is not resumed from: the run starts afresh
    LDS(**{**settings, "outer_lr": 0.1, "max_outer_iters": 2}).fit(data, checkpoint=ck)
    fresh = fit_resumable(LDS(**settings), data, task)
    assert not fresh.resumed_ and torch.equal(fresh.distribution_.probs, full.distribution_.probs)


def test_fit_resumable_does_not_pass_off_an_interrupted_fit(tmp_path, monkeypatch):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path))

    class Interrupted:  # LDS.fit catches Ctrl-C and keeps its best model, flagging interrupted_
        checkpoint_every = 5

        def fit(self, data, checkpoint=None, resume=None):
            self.interrupted_ = True
            return self

    with pytest.raises(KeyboardInterrupt, match="resumes it"):
        fit_resumable(Interrupted(), None, {"exp": "t", "seed": 0})


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_is_accepted_by_glibc():
    assert keep_freed_memory()
    a = torch.ones(5_000_000)  # allocations still work, and a fresh zeros tensor is still zero
    del a
    assert float(torch.zeros(5_000_000).abs().sum()) == 0.0


def test_selection_sees_runs_recorded_by_another_runner(tmp_path):
    path = str(tmp_path / "runs.jsonl")
    a, b = Store(path), Store(path)
    grid, make = [{"c": 0}, {"c": 1}], lambda c, s: {"exp": "t", "config": c, "seed": s}
    a.add(make(grid[0], 0), {"val_acc": 0.5, "status": "ok"})
    assert select_config(a, make, grid, [0])[0] is None  # the other configuration is still missing
    b.add(make(grid[1], 0), {"val_acc": 0.7, "status": "ok"})  # finished by the other runner meanwhile
    assert select_config(a, make, grid, [0])[0] == {"c": 1}
    calls = []
    run_all(lambda t: calls.append(t) or {"val_acc": 0.0}, [make(c, 0) for c in grid], a, log=lambda m: None)
    assert calls == []  # nothing left to do, and nothing is reported as to do


def test_paired_cells_compare_only_the_seeds_every_method_holds():
    lds = {0: 0.80, 1: 0.90, 2: 0.70}
    gcn = {0: 0.70, 1: 0.80, 2: 0.60}
    control = {0: 0.82, 1: 0.86}  # seed 2 not held yet: left out of every difference
    n, cells, ahead = paired_cells(lds, [gcn, control])
    assert n == 2
    assert cells[0] == "10.0 ± 0.0"  # LDS − GCN on seeds 0 and 1, in points
    assert cells[1] == "1.0 ± 4.2"  # (−2 + 4) / 2 = 1; std of (−2, 4) = 4.24
    assert ahead == 1
    assert paired_cells(lds, [{}]) == (0, ["–"], 0)
    # with the 95 % Student-t interval: (−2, 4) has mean 1 and s = 4.243; t(0.975, 1) = 12.706, so the half-width
    # is 12.706 · 4.243 / √2 = 38.1; a single pair has no interval
    assert paired_cells(lds, [control], interval=True)[1] == ["1.0 ± 4.2 [-37.1, 39.1]"]
    assert paired_cells(lds, [{0: 0.75}], interval=True)[1] == ["5.0 ± 0.0"]


def test_chosen_on_validation_takes_the_candidate_only_when_it_validates_strictly_higher():
    candidate = {0: (0.80, 0.70), 1: (0.75, 0.90), 2: (0.60, 0.10), 3: (0.9, 0.9)}
    control = {0: (0.78, 0.60), 1: (0.75, 0.50), 2: (0.70, 0.55)}  # seed 3: the control lacks it
    test, n_candidate = chosen_on_validation(candidate, control)
    assert test == {0: 0.70, 1: 0.50, 2: 0.55}  # 0: higher; 1: a tie keeps the control; 2: lower
    assert n_candidate == 1


def test_select_arm_is_the_control_the_select_variant_fits():
    """``select_arm`` (the benchmarks' θ₀ arm of ``variant="select"``, fitted without the bilevel problem) gives
    the control that ``LDS(variant="select").fit`` compares with: here θ₀ is the kNN(5) graph of graphless data."""
    data = planted_partition(per_class=12, num_val=8, feature_noise=0.3, seed=4)
    data.edge_index = None
    settings = dict(hypergrad_every=5, max_outer_iters=2, patience=5, num_samples=2, max_inner_steps=40, k=5,
                    seed=1, verbose=False, variant="select")
    model = LDS(**settings).fit(data)
    control, n_pairs = select_arm(LDS(**settings), data)
    assert control.best_val_acc_ == model.control_val_acc_
    assert n_pairs == round(model.initial_num_edges_) > 0
    if model.graph_choice_ == "initial":  # the model then predicts with this control's weights on θ₀
        assert all(torch.equal(p, q) for p, q in zip(model.params_, control.params_))
        assert model.distribution_.expected_num_edges() == n_pairs
