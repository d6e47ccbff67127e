"""The benchmark runner: resumable records, and side-by-side runners that split the work."""

import hashlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))

from runner import Store, run_all, run_key  # noqa: E402


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
    # a lock held by another live process (our parent) blocks
    with open(lock, "w") as fh:
        fh.write(str(os.getppid()))
    assert not store.claim(task)
