"""Resumable benchmark runner shared by the LDS paper scripts.

Protocol (issue "Reproduce the LDS paper"): a configuration grid is run on *selection* seeds; the
configuration with the best mean early-stopping validation accuracy is chosen (never the test set);
it is then run on *reporting* seeds, distinct from the selection seeds, and test accuracy is
reported as mean ± std beside validation.

Every finished run is appended as one JSON line (config, seed, role, metrics) as soon as it ends,
so a benchmark can be stopped and started again across sessions: runs already recorded are skipped,
and the summary says which runs it holds. ``--workers 2`` runs two single-thread fits side by side;
two runners started separately on the same store also split the work: each re-reads the records
before a run and claims it with a lock file (``runs.jsonl.claims/``; a lock left by a dead process is
taken over). A fit in progress is checkpointed after every outer iteration (``fit_resumable``), so a
run cut off by the end of a session continues from its last outer iteration when started again.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

SELECTION_SEEDS = (100, 101)
CHECKPOINT_ENV = "LDS_BENCH_CHECKPOINTS"  # folder of per-run fit checkpoints (set by the scripts' main)
REPORT_SEEDS = (0, 1, 2, 3, 4)


def run_key(task: dict[str, Any]) -> str:
    """A stable identity of one run: everything that defines it, sorted."""
    return json.dumps({k: task[k] for k in sorted(task) if k != "note"}, sort_keys=True)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs. A killed process whose parent has not reaped it yet (a zombie, common
    in containers whose init does not reap) still answers ``kill(pid, 0)``, so its state is read too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def run_digest(task: dict[str, Any]) -> str:
    """A file-name-safe digest of :func:`run_key` (lock and checkpoint files are named by it)."""
    return hashlib.sha1(run_key(task).encode()).hexdigest()


@dataclass
class Store:
    """Append-only JSON-lines store of finished runs."""

    path: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._read()

    def _read(self) -> None:
        """Load the records of the file (a torn last line from a killed run is ignored). Per run, the first
        successful record wins; a failed run's record stays only until a later attempt succeeds."""
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                old = self.records.get(rec["key"])
                if old is None or (old.get("status") == "error" and rec.get("status") != "error"):
                    self.records[rec["key"]] = rec

    def refresh(self) -> None:
        """Re-read the file: pick up runs recorded by other processes working on the same store."""
        self._read()

    def claim(self, task: dict[str, Any]) -> bool:
        """Take the run for this process (a lock file next to the store; one left by a dead process is taken
        over). False when another live process is running it, so that side-by-side runners split the work."""
        folder = self.path + ".claims"
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, run_digest(task) + ".lock")
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    with open(path, encoding="utf-8") as fh:
                        pid = int(fh.read().strip() or 0)
                except (ValueError, FileNotFoundError):
                    pid = 0
                if pid > 0 and _alive(pid):  # someone else runs it
                    return pid == os.getpid()
                try:
                    os.remove(path)  # stale: its process is gone
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return True
        return False

    def release(self, task: dict[str, Any]) -> None:
        path = os.path.join(self.path + ".claims", run_digest(task) + ".lock")
        try:
            os.remove(path)
        except FileNotFoundError:
            pass

    def has(self, task: dict[str, Any]) -> bool:
        """True once the run finished without error (failed runs are tried again on the next start)."""
        rec = self.records.get(run_key(task))
        return rec is not None and rec.get("status") != "error"

    def get(self, task: dict[str, Any]) -> dict[str, Any] | None:
        return self.records.get(run_key(task))

    def add(self, task: dict[str, Any], result: dict[str, Any]) -> None:
        rec = {"key": run_key(task), "task": task, **result}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.records[rec["key"]] = rec


def fit_resumable(model: Any, data: Any, task: dict[str, Any]) -> Any:
    """``model.fit(data)`` with a checkpoint after every outer iteration, kept under ``$LDS_BENCH_CHECKPOINTS``
    by run key; a checkpoint left by a run that was cut off is resumed from (``LDS.fit(resume=)`` reproduces
    the uninterrupted fit), and removed once the fit ends. Without the variable this is a plain fit."""
    folder = os.environ.get(CHECKPOINT_ENV)
    model.resumed_ = False
    if not folder:
        return model.fit(data)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, run_digest(task) + ".ckpt")
    model.checkpoint_every = 1
    resume = path if os.path.exists(path) else None
    try:
        model.fit(data, checkpoint=path, resume=resume)
    except ValueError as exc:
        if resume is None or "checkpoint" not in str(exc):
            raise
        os.remove(path)  # written by other code, settings or data: start this run afresh
        resume = None
        model.fit(data, checkpoint=path)
    if getattr(model, "interrupted_", False):  # Ctrl-C keeps the best model; a benchmark must not record it
        raise KeyboardInterrupt(f"fit interrupted; its checkpoint {path} resumes it")
    model.resumed_ = resume is not None
    os.remove(path)
    return model


def _worker(fn: Callable[[dict[str, Any]], dict[str, Any]], task: dict[str, Any], threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        out = fn(task)
        out.setdefault("status", "ok")
    except ImportError as exc:  # a broken environment is not a result of the run: stop, record nothing
        raise RuntimeError(
            f"{type(exc).__name__}: {exc}. Install the project first: "
            'pip install -c constraints.txt -e ".[bench]" (README, Installation)'
        ) from exc
    except Exception as exc:  # a failed run is a result too: record it
        out = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc(limit=5)}
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    try:  # the runner's resident size after the run: a leak across runs shows as a climb (Linux only)
        out["rss_mb"] = proc_status_kb("VmRSS") // 1024
    except (OSError, KeyError):
        pass
    return out


def _take(store: Store, task: dict[str, Any]) -> bool:
    """True when this process should run ``task`` now: not recorded meanwhile by another runner on the same store
    (re-read first), and claimed."""
    store.refresh()
    return not store.has(task) and store.claim(task)


@contextmanager
def algorithm7_weights(model: Any) -> Iterator[Any]:
    """``model`` (an ``LDS(variant="refit")`` fit) predicting with the same fit's Algorithm 7 weights inside the
    block (``paper_params_``), its refitted ones again after: an exactly paired comparison of the two."""
    refitted, model.params_ = model.params_, model.paper_params_
    try:
        yield model
    finally:
        model.params_ = refitted


def lds_scores(model: Any, data: Any) -> dict[str, Any]:
    """What every LDS run records of its fitted ``model``: early-stopping validation accuracy (the refit's for
    ``variant="refit"``), test accuracy, whether it resumed; for a refit also the same fit's Algorithm 7 weights'
    scores, an exactly paired comparison."""
    refit = model.variant == "refit"
    out = {"val_acc": model.refit_val_acc_ if refit else model.best_val_acc_, "resumed": model.resumed_,
           "test_acc": model.score(data, data.test_mask)}
    if refit:
        with algorithm7_weights(model):
            out.update(test_acc_paper=model.score(data, data.test_mask), val_acc_paper=model.best_val_acc_,
                       refit_steps=model.refit_steps_)
    return out


def select_arm(model: Any, data: Any, init_graph: str | None = None) -> tuple[Any, int]:
    """``LDS(variant="select")``'s other arm for an unfitted ``model`` on ``data``, without the bilevel fit: θ₀
    built as ``fit`` builds it (:meth:`lds.LDS.initial_distribution`; ``init_graph`` when given, a recorded fit's
    ``init_graph_``), then :meth:`lds.LDS.initial_graph_control` on θ₀'s edges (the candidates with θ₀ = 1).
    Returns the fitted :class:`lds.GCNBaseline` (an MLP when θ₀ is empty) and the number of θ₀'s edges."""
    start = model.initial_distribution(data, init_graph=init_graph)
    pairs = start.pairs[:, start.probs == 1.0]
    return model.initial_graph_control(data, pairs), int(pairs.size(1))


def run_all(
    fn: Callable[[dict[str, Any]], dict[str, Any]],
    tasks: Iterable[dict[str, Any]],
    store: Store,
    *,
    workers: int = 1,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Run every task not yet in ``store``; record each as soon as it finishes."""
    store.refresh()  # runs recorded meanwhile by another runner on the same store
    todo = [t for t in tasks if not store.has(t)]
    if not todo:
        return
    threads = threads or (1 if workers > 1 else max(1, os.cpu_count() or 1))
    log(f"{len(todo)} runs to do ({workers} worker(s), {threads} thread(s) each)")
    if workers <= 1:
        for t in todo:
            if not _take(store, t):
                continue
            try:
                res = _worker(fn, t, threads)
                store.add(t, res)
            finally:
                store.release(t)
            log(f"done {describe(t)}: {summarize(res)}")
        return
    # Each run is claimed when it is submitted, not before: at most ``workers`` are claimed at a time, so a
    # runner started beside this one takes the rest (the lock holds this process's pid, alive meanwhile).
    pending = list(todo)
    running: dict[Future[dict[str, Any]], dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        try:
            while pending or running:
                while pending and len(running) < workers:
                    t = pending.pop(0)
                    if _take(store, t):
                        running[pool.submit(_worker, fn, t, threads)] = t
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    t = running.pop(fut)
                    try:
                        res = fut.result()
                        store.add(t, res)
                    finally:
                        store.release(t)
                    log(f"done {describe(t)}: {summarize(res)}")
        finally:
            for t in running.values():  # a worker raised (a broken environment): free the other claims
                store.release(t)


def run_and_summarise(fn: Callable[[dict[str, Any]], dict[str, Any]], tasks: list[dict[str, Any]], out: str,
                      summary: Callable[[Store], list[str]], *, run: bool = True, workers: int = 1,
                      threads: int | None = None) -> int:
    """The small studies' main: run the ``tasks`` not yet recorded in ``out/runs.jsonl`` (skipped unless
    ``run``), then write ``summary(store)`` to ``out/summary.md`` and print it."""
    store = Store(os.path.join(out, "runs.jsonl"))
    if run:
        run_all(fn, tasks, store, workers=workers, threads=threads)
        store.refresh()
    lines = summary(store)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def run_seconds(rec: dict[str, Any]) -> float:
    """Seconds a recorded run took: its wall time, or for a fit resumed from a checkpoint the fit's own time
    summed over the processes that ran it (``fit_s``, when larger). Fits resumed before LDS kept the time
    of earlier processes in its checkpoints count their last part only."""
    return max(float(rec.get("wall_s", 0.0)), float(rec.get("fit_s", 0.0)))


def describe(task: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in task.items() if k not in ("note",))


def summarize(res: dict[str, Any]) -> str:
    if res.get("status") != "ok":
        return f"{res.get('status')}: {res.get('error', '')}"
    val, test = res.get("val_acc", float("nan")), res.get("test_acc", float("nan"))
    return f"val {val:.4f} test {test:.4f} ({res['wall_s']} s)"


def select_config(
    store: Store,
    make_task: Callable[[dict[str, Any], int], dict[str, Any]],
    grid: list[dict[str, Any]],
    seeds: Iterable[int],
) -> tuple[dict[str, Any] | None, list[str]]:
    """The grid point with the best mean validation accuracy over ``seeds`` (ties: first in grid order).

    Returns ``(config, missing)``; ``config`` is None while selection runs are missing. The store is re-read
    first, so that selection runs finished by another runner on the same store count.
    """
    store.refresh()
    best, best_score, missing = None, -1.0, []
    for cfg in grid:
        vals = []
        for s in seeds:
            rec = store.get(make_task(cfg, s))
            if rec is None or rec.get("status") == "error":  # failed runs are retried: still missing
                missing.append(describe(make_task(cfg, s)))
            elif rec.get("status") == "ok":
                vals.append(rec["val_acc"])
        if vals and len(vals) == len(list(seeds)):
            score = statistics.fmean(vals)
            if score > best_score:
                best, best_score = cfg, score
    return (best if not missing else None), missing


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse rather than hand it back to the OS (``mallopt``
    ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` raised to 1-2 GB; the same as the ``MALLOC_*_`` variables).

    An all-pairs LDS step allocates and frees several tensors of the size of the candidate set (Citeseer:
    5.5 M pairs, and N × N once per window). By default each is a fresh mapping whose pages fault on first
    touch: on this machine two such allocations cost 25 ms, and 5 ms with the memory kept. Results are
    unchanged; peak memory is unchanged, but the resident size stays near its peak. Returns False (and
    does nothing) where the C library is not glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))


def proc_status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM, VmSize); Linux only."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRSS:
    """Peak resident memory above the RSS at creation, in MB, for one-case-per-process memory measurements.

    With ``reset`` (Linux ≥ 4.0) the high-water mark VmHWM is reset to the current RSS through
    ``/proc/self/clear_refs``, so earlier allocations (data loading, warm-up) do not hide the case's own peak;
    without it, or where the reset is refused, the process's lifetime peak (``ru_maxrss``) is used.
    """

    def __init__(self, reset: bool = True) -> None:
        self.can_reset = False
        if reset:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")
                self.can_reset = True
            except OSError:
                pass
        rss = proc_status_kb("VmRSS")
        # no reset possible: only growth of the lifetime peak beyond what was already reached is seen
        self.base = rss if (self.can_reset or not reset) else max(rss, self._lifetime_kb())

    @staticmethod
    def _lifetime_kb() -> int:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def mb(self) -> float:
        """Peak RSS since creation minus the RSS at creation, in MB (rounded to 0.1)."""
        peak = proc_status_kb("VmHWM") if self.can_reset else self._lifetime_kb()
        return round(max(peak - self.base, 0) / 1024, 1)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend, or None when matplotlib is not installed (the
    scripts then write their records and tables and skip the figures)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def t_interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95 % Student-t interval (NaN half-width for fewer than 2 values)."""
    from scipy import stats

    m = statistics.fmean(values)
    if len(values) < 2:
        return m, float("nan")
    return m, float(stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5)


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    m = 100 * statistics.fmean(values)
    s = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.1f} ± {s:.1f}"


def chosen_on_validation(candidate: dict[Any, tuple[float, float]], control: dict[Any, tuple[float, float]]
                         ) -> tuple[dict[Any, float], int]:
    """Per key (seed or split) held by both, ``(val, test)`` each: the candidate's test accuracy where its
    early-stopping validation accuracy is strictly higher than the control's, else the control's (a tie keeps
    the control). Returns those test accuracies and how often the candidate was chosen."""
    keys = sorted(set(candidate) & set(control))
    pick = {k: candidate[k][0] > control[k][0] for k in keys}
    return {k: (candidate if pick[k] else control)[k][1] for k in keys}, sum(pick.values())


def paired_cells(base: dict[Any, float], others: list[dict[Any, float]], *, interval: bool = False
                 ) -> tuple[int, list[str], int]:
    """Paired differences of accuracies keyed by seed (or split), over the keys every dict holds: the number
    of keys, ``mean ± std`` (points) of ``base − other`` for each other (``interval``: followed by the 95 %
    Student-t interval of the mean difference, ``[low, high]``, from two keys on), and on how many keys
    ``base`` is ahead of the last one."""
    keys = sorted(set(base).intersection(*others))
    cells = []
    for o in others:
        diffs = [base[k] - o[k] for k in keys]
        cell = mean_std(diffs)
        if interval and len(diffs) > 1:
            m, h = t_interval([100 * d for d in diffs])
            cell += f" [{m - h:.1f}, {m + h:.1f}]"
        cells.append(cell)
    ahead = sum(base[k] > others[-1][k] for k in keys) if others else 0
    return len(keys), cells, ahead
