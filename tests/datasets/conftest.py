"""Fixtures for the datasets tests.

Data-dependent tests read ``$LDS_DATA_DIR``: when the files they need are not there they are skipped with
the reason, or fail under ``CI=true``. No test downloads anything: the loaders' network checks are patched
to "offline", and the per-user cache is redirected to a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ._helpers import CITATION_FILES, NEWS_FILE, require_data


@pytest.fixture
def planetoid_root() -> Path:
    """The data directory, with the Cora and Citeseer ``ind.*`` files."""
    return require_data(*CITATION_FILES)


@pytest.fixture
def news_root() -> Path:
    """The data directory, with scikit-learn's 20 Newsgroups cache."""
    return require_data(NEWS_FILE)


@pytest.fixture(autouse=True)
def _offline_and_private_cache(monkeypatch, tmp_path_factory):
    """Never download in tests, and never touch the user's ``~/.cache/lds``."""
    monkeypatch.setattr("lds.datasets.planetoid.network_available", lambda *a, **k: False)
    monkeypatch.setattr("lds.datasets.uci.network_available", lambda *a, **k: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
