"""Shared test helpers: data-dependent tests read LDS_DATA_DIR; under CI=true missing data fails."""

import os
from pathlib import Path

import pytest


def _data_dir() -> Path | None:
    env = os.environ.get("LDS_DATA_DIR")
    return Path(env) if env else None


@pytest.fixture
def data_dir() -> Path:
    """The benchmark data folder; skips (or fails under CI=true) when it is not there."""
    path = _data_dir()
    if path is None or not (path / "planetoid" / "ind.cora.x").is_file():
        reason = (f"benchmark data not found (LDS_DATA_DIR={os.environ.get('LDS_DATA_DIR')!r}); "
                  "set LDS_DATA_DIR to a folder with planetoid/ and 20newsgroups/")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
