"""Helpers shared by the datasets tests (data location policy, write detection)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CITATION_FILES = [f"planetoid/ind.{name}.{suffix}" for name in ("cora", "citeseer")
                  for suffix in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")]
NEWS_FILE = "20newsgroups/20news-bydate_py3.pkz"


def require_data(*relative_paths: str) -> Path:
    """``$LDS_DATA_DIR`` if it holds every given file; otherwise skip (or fail under ``CI=true``)."""
    env = os.environ.get("LDS_DATA_DIR")
    root = Path(env) if env else None
    missing = [p for p in relative_paths if root is None or not (root / p).is_file()]
    if missing:
        more = " ..." if len(missing) > 3 else ""
        reason = (f"benchmark data not found: {', '.join(missing[:3])}{more} not under LDS_DATA_DIR={env!r}; "
                  "set LDS_DATA_DIR to a folder with planetoid/ and 20newsgroups/ (see ../shared/data/README.md)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return root


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` with its size and modification time, to check that nothing was written."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}
