"""load_heterophilous / load_geom_gcn on the real files: the README's counts, the 10 fixed splits, clear errors."""

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lds.datasets import heterophilous_metric, load_geom_gcn, load_heterophilous, load_planetoid
from lds.datasets.heterophilous import GEOM_GCN_FILES, KNOWN_FILES, NAMES

from ._helpers import require_data

# name: N, rows of `edges` in the file, undirected edges (no self-loops), F, classes in the file, split 0 sizes,
# edge homophily h (plain files; ../shared/data/heterophilous-graphs/README.md)
EXPECTED = {
    "minesweeper": (10000, 39402, 39402, 7, 2, (5000, 2500, 2500), 0.683),
    "tolokers": (11758, 519000, 519000, 10, 2, (5879, 2939, 2940), 0.595),
    "chameleon": (2277, 31371, 31371, 2325, 5, (1092, 729, 456), 0.230),
    "chameleon_directed": (2277, 36101, 31371, 2325, 5, (1092, 729, 456), None),
    "chameleon_filtered": (890, 8854, 8854, 2325, 5, (409, 287, 194), 0.236),
    "chameleon_filtered_directed": (890, 13584, 8854, 2325, 5, (409, 287, 194), None),
    "squirrel": (5201, 198353, 198353, 2089, 5, (2496, 1664, 1041), 0.222),
    "squirrel_directed": (5201, 217073, 198353, 2089, 5, (2496, 1664, 1041), None),
    "squirrel_filtered": (2223, 46998, 46998, 2089, 5, (1053, 718, 452), 0.207),
    "squirrel_filtered_directed": (2223, 65718, 46998, 2089, 5, (1053, 718, 452), None),
    "actor": (7600, 26659, 26659, 932, 5, (3648, 2432, 1520), 0.217),
    "cornell": (183, 277, 277, 1703, 5, (87, 59, 37), 0.123),
    "texas": (183, 279, 279, 1703, 5, (87, 59, 37), 0.061),
    "texas_4_classes": (183, 279, 279, 1703, 5, (87, 58, 37), 0.061),
    "wisconsin": (251, 450, 450, 1703, 5, (120, 80, 51), 0.178),
}
BIG = {"tolokers", "squirrel", "squirrel_directed", "squirrel_filtered", "squirrel_filtered_directed"}
MASKS = ("train_mask", "val_mask", "test_mask")


def npz_root(*names: str) -> Path:
    return require_data(*(f"heterophilous-graphs/{n}.npz" for n in names))


def geom_root(name: str) -> Path:
    return require_data(*(f"geom-gcn/{f}" for f in GEOM_GCN_FILES if f"/{name}" in f or f"{name}_split" in f))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setattr("lds.datasets.heterophilous.network_available", lambda *a, **k: False)


def test_names_and_metrics():
    assert set(NAMES) == set(EXPECTED) and len(NAMES) == 15
    assert {n for n in NAMES if heterophilous_metric(n) == "roc_auc"} == {"minesweeper", "tolokers"}
    assert heterophilous_metric("Chameleon-Filtered") == "accuracy"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in EXPECTED])
def test_counts_match_the_readme(name):
    root = npz_root(name)
    num_nodes, rows, undirected, num_features, classes, sizes, homophily = EXPECTED[name]
    with np.load(root / "heterophilous-graphs" / f"{name}.npz") as raw:
        assert raw["edges"].shape == (rows, 2)
    data = load_heterophilous(name, split=0)
    assert data.x.shape == (num_nodes, num_features) and data.x.dtype == torch.float32
    assert data.y.shape == (num_nodes,) and data.y.dtype == torch.long
    edges = data.edge_index
    assert edges.dtype == torch.long and edges.shape == (2, 2 * undirected)  # plain files: 2 E exactly
    src, dst = edges
    assert not (src == dst).any()
    keys = torch.unique(src * num_nodes + dst)
    assert keys.numel() == edges.size(1)  # no duplicates
    assert torch.equal(keys, torch.unique(dst * num_nodes + src))  # symmetric
    masks = [getattr(data, m) for m in MASKS]
    assert all(m.dtype == torch.bool and m.shape == (num_nodes,) for m in masks)
    assert tuple(int(m.sum()) for m in masks) == sizes
    assert int((masks[0].int() + masks[1].int() + masks[2].int()).max()) == 1  # disjoint
    assert data.metric == ("roc_auc" if classes == 2 else "accuracy")
    if name == "texas_4_classes":  # node 25, the only node of the file's class 1, is in no mask: relabelled -1
        assert data.num_classes == 4 and data.y[25] == -1 and (data.y >= 0).sum() == 182
        assert not any(bool(m[25]) for m in masks)
        assert torch.equal(data.y[data.y >= 0], torch.tensor([0, 0, 1, 2, 3])[load_heterophilous("texas", 0).y][
            data.y >= 0])
    else:
        assert data.num_classes == classes == int(data.y.max()) + 1 and int(data.y.min()) == 0
        assert int(sum(int(m.sum()) for m in masks)) == num_nodes  # they cover every node
    if homophily is not None:
        same = (data.y[src] == data.y[dst]).double().mean()
        assert round(float(same), 3) == homophily


@pytest.mark.parametrize("name", ["cornell", "texas_4_classes", "chameleon_filtered"])
def test_all_ten_splits(name):
    npz_root(name)
    splits = [load_heterophilous(name, split=k) for k in range(10)]
    for data in splits:
        masks = [getattr(data, m) for m in MASKS]
        assert int((masks[0].int() + masks[1].int() + masks[2].int()).max()) == 1
        assert sum(int(m.sum()) for m in masks) == data.num_nodes - (name == "texas_4_classes")
        assert torch.equal(data.edge_index, splits[0].edge_index) and torch.equal(data.x, splits[0].x)
    assert len({tuple(d.train_mask.nonzero().view(-1).tolist()) for d in splits}) == 10  # ten different splits


def test_directed_edge_list_as_stored():
    root = npz_root("chameleon_filtered_directed", "chameleon_filtered")
    data = load_heterophilous("chameleon_filtered_directed", split=2, directed=True, root=root)
    with np.load(root / "heterophilous-graphs" / "chameleon_filtered_directed.npz") as raw:
        assert torch.equal(data.edge_index, torch.from_numpy(raw["edges"].T))
    assert data.edge_index.shape == (2, 13584) and int((data.edge_index[0] == data.edge_index[1]).sum()) == 50
    plain = load_heterophilous("chameleon_filtered", split=2)
    undirected = load_heterophilous("chameleon_filtered_directed", split=2)
    assert torch.equal(undirected.edge_index, plain.edge_index)  # same undirected graph
    with pytest.raises(ValueError, match=r"chameleon_filtered\.npz stores each undirected edge once.*_directed"):
        load_heterophilous("chameleon_filtered", split=0, directed=True)


@pytest.mark.parametrize("name,twin", [("cornell", "cornell"), ("texas", "texas"), ("wisconsin", "wisconsin"),
                                       ("film", "actor")])
def test_geom_gcn_text_files_equal_the_npz(name, twin):
    geom_root(name)
    npz_root(twin)
    for k in (0, 9):
        text, npz = load_geom_gcn(name, split=k), load_heterophilous(twin, split=k)
        for key in ("x", "y", "edge_index", *MASKS):
            assert torch.equal(text[key], npz[key]), key
        assert text.num_classes == npz.num_classes == 5 and text.metric == "accuracy"
    if twin == "actor":
        assert torch.equal(load_geom_gcn("Actor", split=3).test_mask, load_heterophilous("actor", split=3).test_mask)


def test_data_dir_from_environment_and_root(monkeypatch, tmp_path):
    root = npz_root("texas")
    monkeypatch.setenv("LDS_DATA_DIR", "/nonexistent/lds-data")
    assert load_heterophilous("texas", split=1, root=root).num_nodes == 183  # root= wins over the variable
    flat = tmp_path / "flat"  # root= may also be the heterophilous-graphs folder itself
    flat.mkdir()
    shutil.copy(root / "heterophilous-graphs" / "texas.npz", flat / "texas.npz")
    assert torch.equal(load_heterophilous("texas", split=1, root=flat).x, load_heterophilous("texas", 1, root=root).x)


def test_truncated_and_corrupt_files(tmp_path):
    root = npz_root("cornell")
    folder = tmp_path / "heterophilous-graphs"
    folder.mkdir()
    content = (root / "heterophilous-graphs" / "cornell.npz").read_bytes()
    (folder / "cornell.npz").write_bytes(content[:1000])
    with pytest.raises(ValueError, match=r"cornell\.npz at .* is truncated: 1000 bytes, expected 30515"):
        load_heterophilous("cornell", split=0, root=tmp_path)
    corrupt = bytearray(content)
    corrupt[5000] ^= 0xFF
    (folder / "cornell.npz").write_bytes(bytes(corrupt))
    sha = KNOWN_FILES["cornell"][1]
    with pytest.raises(ValueError, match=rf"cornell\.npz at .* is corrupt: SHA-256 [0-9a-f]{{64}}, expected {sha}"):
        load_heterophilous("cornell", split=0, root=tmp_path)


def test_missing_file_says_where_it_looked(tmp_path):
    (tmp_path / "heterophilous-graphs").mkdir()
    with pytest.raises(FileNotFoundError, match=r"missing data file tolokers\.npz: expected at .*heterophilous-graphs"
                                                r"/tolokers\.npz \(from root= or \$LDS_DATA_DIR\).*point root=/"):
        load_heterophilous("tolokers", split=0, root=tmp_path)


def test_no_data_and_no_network_fails_within_seconds(tmp_path, monkeypatch):
    monkeypatch.delenv("LDS_DATA_DIR", raising=False)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="LDS_DATA_DIR is unset.*no network"):
        load_heterophilous("texas", split=0, cache_dir=tmp_path / "cache")
    assert time.perf_counter() - start < 5
    with pytest.raises(FileNotFoundError, match=r"no Geom-GCN data: LDS_DATA_DIR is unset.*load_heterophilous"):
        load_geom_gcn("texas", split=0)


def test_download_goes_to_the_cache_once(tmp_path, monkeypatch):
    """The download path, offline: PyG's download_url is replaced by a copy from the data directory."""
    root = npz_root("texas")
    calls = []

    def fake_download(url, folder, log=True):
        calls.append(url)
        name = url.rsplit("/", 1)[1]
        shutil.copy(root / "heterophilous-graphs" / name, Path(folder) / name)
        return str(Path(folder) / name)

    monkeypatch.delenv("LDS_DATA_DIR", raising=False)
    monkeypatch.setattr("lds.datasets.heterophilous.network_available", lambda *a, **k: True)
    monkeypatch.setattr("torch_geometric.data.download_url", fake_download)
    cache = tmp_path / "cache"
    first = load_heterophilous("texas", split=0, cache_dir=cache)
    assert len(calls) == 1 and calls[0].startswith("https://github.com/yandex-research/heterophilous-graphs/")
    assert [p.name for p in (cache / "heterophilous-graphs").iterdir()] == ["texas.npz"]
    second = load_heterophilous("texas", split=0, cache_dir=cache)
    assert len(calls) == 1 and torch.equal(first.x, second.x)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.warns(UserWarning, match="not writable"):  # an unwritable cache: still loads, with a warning
        third = load_heterophilous("texas", split=0, cache_dir=not_a_dir / "cache")
    assert torch.equal(third.x, first.x) and len(calls) == 2


@pytest.mark.parametrize("kwargs,error,match", [
    ({"name": "chamelon"}, ValueError, r"unknown heterophilous dataset 'chamelon'; valid names: actor, chameleon, "),
    ({"name": "roman_empire"}, ValueError, r"not supported: there is no verified copy of roman_empire\.npz"),
    ({"name": 3}, TypeError, "name must be a str"),
    ({"split": 10}, ValueError, r"split must be one of the 10 fixed splits 0\.\.9, got 10"),
    ({"split": -1}, ValueError, r"0\.\.9, got -1"),
    ({"split": "public"}, TypeError, r"split must be an int, the index of one of the 10 fixed splits"),
    ({"split": True}, TypeError, "split must be an int"),
    ({"directed": "yes"}, TypeError, "directed must be True or False"),
    ({"root": 5}, TypeError, "root must be a path"),
])
def test_bad_arguments(kwargs, error, match):
    args = {"name": "texas", "split": 0, **kwargs}
    with pytest.raises(error, match=match):
        load_heterophilous(**args)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"name": "chameleon"}, ValueError, r"feature file is not in the data folder; use load_heterophilous\('chamel"),
    ({"name": "cora"}, ValueError, r"use load_planetoid\('cora'\)"),
    ({"name": "texa"}, ValueError, r"unknown Geom-GCN dataset 'texa'; valid names: cornell, texas, wisconsin, film"),
    ({"split": 10}, ValueError, r"0\.\.9, got 10"),
])
def test_geom_gcn_bad_arguments(kwargs, error, match):
    args = {"name": "texas", "split": 0, **kwargs}
    with pytest.raises(error, match=match):
        load_geom_gcn(**args)


def test_geom_gcn_missing_file_names_it(tmp_path):
    (tmp_path / "geom-gcn").mkdir()
    with pytest.raises(FileNotFoundError, match=r"texas: missing data file\(s\) new_data/texas/out1_graph_edges\.txt"
                                                r".*splits/texas_split_0\.6_0\.2_4\.npz: expected under .*geom-gcn"):
        load_geom_gcn("texas", split=4, root=tmp_path)


def test_planetoid_has_no_numbered_splits():
    with pytest.raises(ValueError, match=r"split=3 reads as the index of a fixed split, but Planetoid has no numbered"):
        load_planetoid("cora", split=3)
