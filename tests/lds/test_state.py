"""State has one owner: fits in threads and processes do not see each other, and no module-level container
of lds.* or bilevel_core.* changes during a fit."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from types import MappingProxyType, ModuleType
from typing import Any

import pytest
import torch

import bilevel_core
import lds
from lds import LDS

from .synthetic import planted_partition

# sampled / dense × all pairs / sparse candidates
COMBINATIONS = [(cand, sampling) for cand in ("all", "sparse") for sampling in (True, False)]
SETTINGS = dict(hypergrad_every=3, max_outer_iters=2, max_inner_steps=9, num_samples=2, verbose=False, k=3)


def _fit(candidates: str, sampling: bool, seed: int) -> dict[str, Any]:
    data = planted_partition(per_class=8, seed=seed)
    model = LDS(candidates=candidates, sampling=sampling, seed=seed, **SETTINGS).fit(data)
    return {"probs": model.distribution_.probs.clone(), "params": tuple(p.clone() for p in model.params_),
            "history": [(h["val_acc"], h["val_loss"], h["inner_steps"]) for h in model.history_]}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (torch.equal(a["probs"], b["probs"]) and all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))
            and a["history"] == b["history"])


# each combination beside itself and beside the next one
PAIRS = [(COMBINATIONS[i], COMBINATIONS[j]) for i in range(4) for j in (i, (i + 1) % 4)]


@pytest.mark.parametrize("first, second", PAIRS)
def test_two_fits_in_two_threads_equal_the_fits_run_alone(first, second):
    """Ten times over, two fits run at once in two threads: no error, and each result is bitwise the one of
    the same fit run alone (the candidate, reuse and deferral caches once lived in module-level registries
    that a second thread's fit popped: IndexError in 3 of 48 thread fits)."""
    alone = [_fit(*first, seed=1), _fit(*second, seed=2)]
    for _ in range(10):
        results: list[Any] = [None, None]

        def run(k: int, combo: tuple[str, bool], seed: int, results: list[Any] = results) -> None:
            try:
                results[k] = _fit(*combo, seed=seed)
            except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread)
                results[k] = exc

        threads = [threading.Thread(target=run, args=(0, first, 1)), threading.Thread(target=run, args=(1, second, 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k in range(2):
            if isinstance(results[k], BaseException):
                raise results[k]
            assert _same(results[k], alone[k])


def test_two_fits_in_two_processes_equal_the_fits_run_alone():
    """Every combination, in two worker processes at once (spawned: nothing is inherited), equals the fit run
    here; ten repetitions of each pair."""
    alone = {combo: _fit(*combo, seed=3) for combo in COMBINATIONS}
    jobs = [combo for combo in COMBINATIONS for _ in range(10)]
    ctx = torch.multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        futures = [(combo, pool.submit(_fit, *combo, 3)) for combo in jobs]
        for combo, future in futures:
            assert _same(future.result(timeout=600), alone[combo])


def _library_modules() -> list[ModuleType]:
    mods = []
    for package in (bilevel_core, lds):
        mods.append(package)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):
                continue
            mods.append(importlib.import_module(info.name))
    return mods


_CONTAINERS = (dict, list, set, bytearray)


def _snapshot(mods: list[ModuleType]) -> dict[str, Any]:
    """Every mutable container bound at module level: its identity and a shallow copy of its content."""
    snap = {}
    for mod in mods:
        for name, value in vars(mod).items():
            if name.startswith("__") or isinstance(value, ModuleType | type):
                continue
            if isinstance(value, _CONTAINERS) or type(value).__name__ in ("WeakIdKeyDictionary",
                                                                           "WeakKeyDictionary",
                                                                           "WeakValueDictionary"):
                content = list(value.items()) if hasattr(value, "items") else list(value)
                snap[f"{mod.__name__}.{name}"] = (id(value), len(content), repr(content)[:10_000])
    return snap


def test_no_module_level_container_changes_during_a_fit():
    """Walk the globals of every module of lds.* and bilevel_core.* before and after fits in every mode: no
    module-level container is created, grows, shrinks or changes (a cache belongs to its object)."""
    mods = _library_modules()
    before = _snapshot(mods)
    for combo in COMBINATIONS:
        _fit(*combo, seed=4)
    LDS(candidates="sparse", backbone="gcnconv", seed=0, **SETTINGS).fit(planted_partition(per_class=8, seed=4))
    after = _snapshot(_library_modules())
    assert after == before


def test_constant_tables_are_immutable():
    """Module-level tables of the library are tuples, frozensets or read-only mappings; only ``__all__`` lists
    are allowed (they are read by ``import *`` only)."""
    mutable = []
    for mod in _library_modules():
        for name, value in vars(mod).items():
            if name.startswith("__") or isinstance(value, ModuleType | type):
                continue
            if isinstance(value, _CONTAINERS) and not isinstance(value, MappingProxyType):
                mutable.append(f"{mod.__name__}.{name}: {type(value).__name__}")
    assert not mutable, mutable


def test_datasets_tables_are_read_only():
    from lds.datasets import planetoid, uci

    with pytest.raises(TypeError):
        uci.SPLITS["wine"] = (1, 1)  # type: ignore[index]
    with pytest.raises(TypeError):
        planetoid.SHAPES["cora"] = (1, 1, 1)  # type: ignore[index]
    assert "lds.datasets" in sys.modules
