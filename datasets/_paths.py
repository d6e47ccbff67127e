"""Where data comes from: ``root=``, else ``$LDS_DATA_DIR``, else a per-user cache (``~/.cache/lds``).

The data directory is only read, never written. Anything derived goes to the cache directory
(``cache_dir=`` or ``~/.cache/lds``); if that cannot be written, loading still works, with a warning.
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from pathlib import Path

ENV_VAR = "LDS_DATA_DIR"


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The read-only data directory: ``root`` if given, else ``$LDS_DATA_DIR``, else ``None``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else None


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The writable cache directory (``cache_dir`` or ``$XDG_CACHE_HOME/lds`` or ``~/.cache/lds``)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lds"


def writable_dir(path: Path) -> Path | None:
    """``path`` created if needed, or ``None`` (with a warning) if it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return path
    except OSError as exc:
        warnings.warn(f"cache directory {path} is not writable ({exc}); loading without a cache.", stacklevel=3)
        return None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, expected: str | None, how_to_fix: str) -> None:
    """Raise a clear error if ``path`` is missing or its SHA-256 differs from ``expected``."""
    if not path.is_file():
        raise FileNotFoundError(f"missing data file {path.name}: expected at {path}. {how_to_fix}")
    if expected is None:
        return
    got = sha256(path)
    if got != expected:
        size = path.stat().st_size
        raise ValueError(
            f"data file {path} is truncated or corrupt ({size} bytes, SHA-256 {got[:16]}…, expected "
            f"{expected[:16]}…). Replace it with a fresh copy (nothing was overwritten). {how_to_fix}"
        )


def network_available(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    """A quick reachability check, so that an offline machine fails within seconds, not minutes."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
