"""load_planetoid on the real ind.* files: exact counts, splits, read-only data folders, clear errors."""

import shutil
import stat
import time
from pathlib import Path

import pytest
import torch
from lds.datasets import load_planetoid
from lds.datasets.planetoid import KNOWN_FILES, SUFFIXES

from ._helpers import require_data, snapshot

EXPECTED = {  # nodes, features, classes, undirected edges, (train, val, test) of the public split
    "cora": (2708, 1433, 7, 5278, (140, 500, 1000)),
    "citeseer": (3327, 3703, 6, 4552, (120, 500, 1000)),
}
# Citeseer test ids missing from ind.citeseer.test.index (no features or labels): zero rows.
CITESEER_NO_FEATURES = [2407, 2489, 2553, 2682, 2781, 2953, 3042, 3063, 3212, 3214, 3250, 3292, 3305, 3306, 3309]


def copy_files(src: Path, dst: Path, name: str, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for suffix in SUFFIXES:
        if suffix not in skip:
            shutil.copy(src / "planetoid" / f"ind.{name}.{suffix}", dst / f"ind.{name}.{suffix}")
    return dst


@pytest.mark.parametrize("name", ["cora", "citeseer"])
def test_public_split_exact_counts(name, planetoid_root):
    num_nodes, num_features, num_classes, num_edges, sizes = EXPECTED[name]
    data = load_planetoid(name, root=planetoid_root)
    assert data.x.shape == (num_nodes, num_features) and data.x.dtype == torch.float32
    assert data.y.shape == (num_nodes,) and data.y.dtype == torch.long
    assert int(data.y.max()) + 1 == num_classes == data.num_classes
    edges = data.edge_index
    assert edges.dtype == torch.long and edges.shape == (2, 2 * num_edges)
    directed = set(zip(edges[0].tolist(), edges[1].tolist()))
    assert len(directed) == 2 * num_edges  # no duplicates
    assert all(i != j for i, j in directed) and all((j, i) in directed for i, j in directed)
    masks = (data.train_mask, data.val_mask, data.test_mask)
    assert all(m.dtype == torch.bool and m.shape == (num_nodes,) for m in masks)
    assert tuple(int(m.sum()) for m in masks) == sizes
    assert not (data.train_mask & data.val_mask).any()
    assert not ((data.train_mask | data.val_mask) & data.test_mask).any()
    num_train = sizes[0]  # Kipf & Welling: train = the first |y| ids, val = the next 500
    assert data.train_mask[:num_train].all() and data.val_mask[num_train : num_train + 500].all()
    row_sums = data.x.sum(1)
    nonzero = row_sums != 0
    assert torch.allclose(row_sums[nonzero], torch.ones(int(nonzero.sum())), atol=1e-5)
    zero_rows = torch.nonzero(~nonzero).view(-1).tolist()
    assert zero_rows == (CITESEER_NO_FEATURES if name == "citeseer" else [])
    if name == "citeseer":
        assert not data.test_mask[CITESEER_NO_FEATURES].any()


@pytest.mark.parametrize("name", ["cora", "citeseer"])
def test_graph_false_and_raw_features(name, planetoid_root):
    no_graph = load_planetoid(name, graph=False, root=planetoid_root)
    assert no_graph.edge_index.shape == (2, 0) and no_graph.edge_index.dtype == torch.long
    raw = load_planetoid(name, normalize_features=False, root=planetoid_root)
    assert set(torch.unique(raw.x).tolist()) == {0.0, 1.0}  # binary bag-of-words
    normalized = load_planetoid(name, root=planetoid_root)
    rows = raw.x.sum(1, keepdim=True)
    assert torch.allclose(normalized.x, torch.where(rows > 0, raw.x / rows.clamp_min(1), raw.x))


def test_data_dir_from_environment(planetoid_root, monkeypatch):
    monkeypatch.setenv("LDS_DATA_DIR", str(planetoid_root))
    assert torch.equal(load_planetoid("cora").x, load_planetoid("cora", root=planetoid_root).x)
    monkeypatch.setenv("LDS_DATA_DIR", "/nonexistent/lds-data")
    assert load_planetoid("cora", root=planetoid_root).num_nodes == 2708  # root= wins over the variable


def test_random_split_is_seeded(planetoid_root):
    a = load_planetoid("citeseer", split="random", seed=3, root=planetoid_root)
    b = load_planetoid("citeseer", split="random", seed=3, root=planetoid_root)
    c = load_planetoid("citeseer", split="random", seed=4, root=planetoid_root)
    assert all(torch.equal(getattr(a, m), getattr(b, m)) for m in ("train_mask", "val_mask", "test_mask"))
    assert not torch.equal(a.train_mask, c.train_mask)
    assert (int(a.train_mask.sum()), int(a.val_mask.sum()), int(a.test_mask.sum())) == (120, 500, 1000)
    assert torch.bincount(a.y[a.train_mask], minlength=6).tolist() == [20] * 6
    assert not (a.train_mask & a.val_mask).any() and not ((a.train_mask | a.val_mask) & a.test_mask).any()
    assert torch.equal(a.edge_index, load_planetoid("citeseer", root=planetoid_root).edge_index)


def test_read_only_copy_loads_and_nothing_is_written(planetoid_root, tmp_path, monkeypatch):
    monkeypatch.delenv("LDS_DATA_DIR", raising=False)
    folder = copy_files(planetoid_root, tmp_path / "ro" / "planetoid", "cora")
    for path in [*folder.iterdir(), folder, folder.parent]:
        path.chmod(stat.S_IRUSR | (stat.S_IXUSR if path.is_dir() else 0))
    before = snapshot(tmp_path)
    try:
        data = load_planetoid("cora", root=tmp_path / "ro", cache_dir=tmp_path / "cache")
    finally:
        for path in [folder.parent, folder, *folder.iterdir()]:
            path.chmod(stat.S_IRWXU)
    assert data.num_nodes == 2708 and data.edge_index.size(1) == 2 * 5278
    assert snapshot(tmp_path) == before  # no processed/ folder, no cache, nothing at all


def test_missing_file_names_it_and_fails_fast_without_network(planetoid_root, tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("no download may be tried while a data directory is set")

    monkeypatch.setattr("lds.datasets.planetoid.network_available", no_download)
    copy_files(planetoid_root, tmp_path / "planetoid", "cora", skip=("graph",))
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"ind\.cora\.graph.*expected in .*planetoid.*LDS_DATA_DIR"):
        load_planetoid("cora", root=tmp_path, cache_dir=tmp_path / "cache")
    assert time.perf_counter() - start < 5
    with pytest.raises(FileNotFoundError, match=r"ind\.cora\.x.*LDS_DATA_DIR"):  # an empty data directory
        load_planetoid("cora", root=tmp_path / "empty")


def test_truncated_and_corrupt_files(planetoid_root, tmp_path):
    folder = copy_files(planetoid_root, tmp_path / "planetoid", "cora")
    content = (folder / "ind.cora.allx").read_bytes()
    (folder / "ind.cora.allx").write_bytes(content[:1000])
    with pytest.raises(ValueError, match=r"ind\.cora\.allx at .* is truncated: 1000 bytes, expected 257305"):
        load_planetoid("cora", root=tmp_path)
    corrupt = bytearray(content)
    corrupt[5000] ^= 0xFF  # same size, different bytes
    (folder / "ind.cora.allx").write_bytes(bytes(corrupt))
    sha = KNOWN_FILES["ind.cora.allx"][1]
    with pytest.raises(ValueError, match=rf"ind\.cora\.allx at .* is corrupt: SHA-256 [0-9a-f]{{64}}, expected {sha}"):
        load_planetoid("cora", root=tmp_path)
    assert (folder / "ind.cora.allx").read_bytes() == bytes(corrupt)  # nothing was overwritten
    (folder / "ind.cora.allx").write_bytes(content)
    (folder / "ind.cora.test.index").write_text((folder / "ind.cora.test.index").read_text() + "1\n")
    with pytest.raises(ValueError, match=r"ind\.cora\.test\.index .* corrupt \(too long\)"):
        load_planetoid("cora", root=tmp_path)


def test_pubmed_without_allx_says_so(tmp_path):
    root = require_data(*(f"planetoid/ind.pubmed.{s}" for s in SUFFIXES if s != "allx"))
    copy_files(root, tmp_path / "planetoid", "pubmed", skip=("allx",))
    with pytest.raises(FileNotFoundError, match=r"missing data file\(s\) ind\.pubmed\.allx \(a known gap"):
        load_planetoid("pubmed", root=tmp_path)


def test_no_data_and_no_network_fails_within_seconds_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("LDS_DATA_DIR", raising=False)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="LDS_DATA_DIR is unset.*no network"):
        load_planetoid("cora", cache_dir=tmp_path / "empty-cache")
    assert time.perf_counter() - start < 5


def test_download_goes_to_the_cache_once(planetoid_root, tmp_path, monkeypatch):
    """The download path, offline: PyG's download_url is replaced by a copy from the data directory."""
    calls = []

    def fake_download(url, folder, log=True):
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        shutil.copy(planetoid_root / "planetoid" / name, Path(folder) / name)
        return str(Path(folder) / name)

    monkeypatch.delenv("LDS_DATA_DIR", raising=False)
    monkeypatch.setattr("lds.datasets.planetoid.network_available", lambda *a, **k: True)
    monkeypatch.setattr("torch_geometric.data.download_url", fake_download)
    cache = tmp_path / "cache"
    first = load_planetoid("cora", cache_dir=cache)
    assert len(calls) == 8 and all(u.startswith("https://github.com/kimiyoung/planetoid/") for u in calls)
    assert sorted(p.name for p in (cache / "planetoid").iterdir()) == sorted(f"ind.cora.{s}" for s in SUFFIXES)
    second = load_planetoid("cora", cache_dir=cache)
    assert len(calls) == 8 and torch.equal(first.x, second.x)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.warns(UserWarning, match="not writable"):  # an unwritable cache: still loads, with a warning
        third = load_planetoid("citeseer", cache_dir=not_a_dir / "cache")
    assert third.num_nodes == 3327 and len(calls) == 16


@pytest.mark.parametrize("kwargs,error,match", [
    ({"name": "coraa"}, ValueError, r"unknown Planetoid dataset 'coraa'; valid names: cora, citeseer, pubmed"),
    ({"name": 3}, TypeError, "name must be a str"),
    ({"split": "full"}, ValueError, "split must be 'public' or 'random', got 'full'"),
    ({"split": "random"}, ValueError, r"needs a seed \(e.g. seed=0\)"),
    ({"split": "random", "seed": "1"}, TypeError, "seed must be an int"),
    ({"graph": "no"}, TypeError, "graph must be True or False"),
    ({"normalize_features": None}, TypeError, "normalize_features must be True or False"),
    ({"root": 5}, TypeError, "root must be a path"),
])
def test_bad_arguments(kwargs, error, match):
    args = {"name": "cora", **kwargs}
    with pytest.raises(error, match=match):
        load_planetoid(**args)
