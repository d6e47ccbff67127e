"""Where data comes from, the fast offline check, and the docstring examples."""

import doctest
import socket
import time
from pathlib import Path

import pytest
from lds.datasets import _paths, cache_root, data_root, graphs, planetoid, uci


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("LDS_DATA_DIR", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"  # root= first
    assert data_root() == tmp_path / "env"  # then the variable
    monkeypatch.delenv("LDS_DATA_DIR")
    assert data_root() is None  # then the cache, filled by a download
    with pytest.raises(TypeError, match="root must be a path"):
        data_root(3)


def test_cache_root_default(monkeypatch, tmp_path):
    assert cache_root(tmp_path) == tmp_path
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "lds"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "lds"


def test_network_check_gives_up_within_its_timeout(monkeypatch):
    def hanging_connect(*args, **kwargs):  # e.g. a DNS lookup that never answers
        time.sleep(5)
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", hanging_connect)
    start = time.perf_counter()
    assert _paths.network_available(timeout=0.2) is False
    assert time.perf_counter() - start < 1.5


def test_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert _paths.sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("module", [_paths, graphs, planetoid, uci])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
