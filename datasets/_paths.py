"""Where data comes from, and the checks made at the public boundary.

Order: the ``root=`` argument, else ``$LDS_DATA_DIR``, else a per-user cache (``~/.cache/lds``) that is
filled by one download. A data directory (``root=`` or ``$LDS_DATA_DIR``) is only read, never written,
and nothing is downloaded when one is set. Anything derived goes to the cache directory (``cache_dir=``
or ``~/.cache/lds``); if that cannot be written, loading still works, with a warning.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import threading
import warnings
from pathlib import Path

import numpy as np

ENV_VAR = "LDS_DATA_DIR"

PathArg = str | os.PathLike | None


def _as_path(value: PathArg, argument: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a path (str or os.PathLike) or None, got {type(value).__name__} "
                        f"{value!r}.")
    return Path(value).expanduser()


def data_root(root: PathArg = None) -> Path | None:
    """The read-only data directory: ``root`` if given, else ``$LDS_DATA_DIR``, else ``None``.

    >>> data_root("/data")
    PosixPath('/data')
    """
    path = _as_path(root, "root")
    if path is not None:
        return path
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else None


def cache_root(cache_dir: PathArg = None) -> Path:
    """The writable cache directory: ``cache_dir``, else ``$XDG_CACHE_HOME/lds``, else ``~/.cache/lds``."""
    path = _as_path(cache_dir, "cache_dir")
    if path is not None:
        return path
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lds"


def writable_dir(path: Path) -> Path | None:
    """``path``, created if needed, or ``None`` with a warning when it cannot be written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}-{threading.get_ident()}"
        probe.write_bytes(b"")
        probe.unlink()
        return path
    except OSError as exc:
        warnings.warn(
            f"cache directory {path} is not writable ({exc}); loading without a cache. Pass cache_dir= "
            "(or set XDG_CACHE_HOME) to a writable folder to keep processed data between runs.",
            stacklevel=3,
        )
        return None


def sha256(path: Path) -> str:
    """SHA-256 of a file (hex). Not memoised: the Cora files hash in about 1 ms, the 20news cache in 30 ms."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, expected_sha256: str | None, expected_size: int | None, how_to_fix: str) -> None:
    """Raise a clear error if ``path`` is missing, truncated or its SHA-256 differs from the known one."""
    if not path.is_file():
        raise FileNotFoundError(f"missing data file {path.name}: expected at {path}. {how_to_fix}")
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        kind = "truncated" if size < expected_size else "corrupt (too long)"
        raise ValueError(
            f"data file {path.name} at {path} is {kind}: {size} bytes, expected {expected_size}. Replace it "
            f"with a fresh copy (nothing was overwritten). {how_to_fix}"
        )
    if expected_sha256 is None:
        return
    got = sha256(path)
    if got != expected_sha256:
        raise ValueError(
            f"data file {path.name} at {path} is corrupt: SHA-256 {got}, expected {expected_sha256}. Replace it "
            f"with a fresh copy (nothing was overwritten). {how_to_fix}"
        )


def network_available(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    """Whether ``host:port`` answers within ``timeout`` seconds (DNS included), so offline fails fast."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=probe, daemon=True)  # getaddrinfo ignores the socket timeout
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def check_bool(value: object, argument: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{argument} must be True or False, got {type(value).__name__} {value!r}.")
    return bool(value)


def check_seed(value: object, argument: str = "seed") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{argument} must be an int (e.g. {argument}=0), got {type(value).__name__} {value!r}.")
    if value < 0:
        raise ValueError(f"{argument} must be a non-negative int, got {value!r}.")
    return int(value)


def check_fraction(value: object, argument: str) -> float:
    """A number in (0, 1]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{argument} must be a number in (0, 1], got {type(value).__name__} {value!r}.")
    value = float(value)
    if math.isnan(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"{argument} must be a fraction in (0, 1], got {value!r}; e.g. {argument}=0.5 keeps half.")
    return value
