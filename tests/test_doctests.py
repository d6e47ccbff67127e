"""The ``>>>`` examples in the packages' docstrings run. Those marked ``+SKIP`` for want of benchmark data run
too where ``LDS_DATA_DIR`` is set (as in CI); the package overview's full Cora fit (minutes) stays skipped."""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil

import lds.datasets
import pytest

import bilevel_core
import lds

#: modules whose skipped examples load benchmark data (fast) and run when LDS_DATA_DIR is set
NEEDS_DATA = frozenset({"lds.datasets", "lds.datasets.planetoid", "lds.datasets.omniglot"})
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules() -> list[str]:
    names = []
    for package in (bilevel_core, lds, lds.datasets):
        names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.endswith("__main__"):
                names.append(info.name)
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    with_data = name in NEEDS_DATA and bool(os.environ.get("LDS_DATA_DIR"))
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    attempted = 0
    for test in doctest.DocTestFinder().find(module, name):
        if with_data:
            for example in test.examples:
                example.options.pop(doctest.SKIP, None)
        result = runner.run(test)
        attempted += result.attempted
        assert result.failed == 0, f"{result.failed} docstring examples of {test.name} failed"
    if with_data:
        assert attempted > 0
