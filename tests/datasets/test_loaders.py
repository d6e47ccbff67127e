"""Loader counts on the real files, read-only data folders, and clear errors for bad files."""

import os
import shutil
import stat
import time

import pytest
import torch
from lds.datasets import load_planetoid, load_uci

EXPECTED = {  # nodes, features, classes, undirected edges, train/val/test
    "cora": (2708, 1433, 7, 5278, (140, 500, 1000)),
    "citeseer": (3327, 3703, 6, 4552, (120, 500, 1000)),
}


@pytest.mark.parametrize("name", ["cora", "citeseer"])
def test_planetoid_public_split_counts(name, data_dir, tmp_path):
    data = load_planetoid(name, root=data_dir, cache_dir=tmp_path)
    n, f, c, e, split = EXPECTED[name]
    assert data.x.shape == (n, f) and data.y.shape == (n,)
    assert int(data.y.max()) + 1 == c
    ei = data.edge_index
    assert ei.size(1) == 2 * e
    assert not bool((ei[0] == ei[1]).any())
    keys = set(zip(ei[0].tolist(), ei[1].tolist()))
    assert len(keys) == 2 * e and all((j, i) in keys for i, j in keys)
    assert tuple(int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)) == split
    rows = data.x.sum(1)
    assert torch.allclose(rows[rows > 0], torch.ones_like(rows[rows > 0]), atol=1e-5)
    if name == "citeseer":
        assert int((rows == 0).sum()) == 15  # the isolated test ids without features: zero rows
    assert load_planetoid(name, graph=False, root=data_dir).edge_index.shape == (2, 0)
    raw = load_planetoid(name, normalize_features=False, root=data_dir)
    assert float(raw.x.max()) == 1.0


def test_random_split_is_seeded(data_dir):
    a = load_planetoid("cora", split="random", seed=3, root=data_dir)
    b = load_planetoid("cora", split="random", seed=3, root=data_dir)
    c = load_planetoid("cora", split="random", seed=4, root=data_dir)
    assert torch.equal(a.train_mask, b.train_mask) and not torch.equal(a.train_mask, c.train_mask)
    assert int(a.train_mask.sum()) == 140 and int(a.val_mask.sum()) == 500 and int(a.test_mask.sum()) == 1000
    assert torch.bincount(a.y[a.train_mask]).tolist() == [20] * 7
    assert not bool((a.train_mask & a.val_mask).any() or (a.val_mask & a.test_mask).any())
    with pytest.raises(ValueError, match="needs a seed"):
        load_planetoid("cora", split="random", root=data_dir)


def test_read_only_copy_loads_and_is_not_written(data_dir, tmp_path):
    ro = tmp_path / "ro" / "planetoid"
    ro.mkdir(parents=True)
    for f in (data_dir / "planetoid").glob("ind.cora.*"):
        shutil.copy(f, ro / f.name)
    for f in ro.iterdir():
        f.chmod(stat.S_IRUSR)
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    before = sorted(os.listdir(ro))
    try:
        data = load_planetoid("cora", root=tmp_path / "ro", cache_dir=tmp_path / "cache")
        assert data.num_nodes == 2708
        assert sorted(os.listdir(ro)) == before
    finally:
        ro.chmod(stat.S_IRWXU)


def _copy_cora(data_dir, dst):
    dst.mkdir(parents=True)
    for f in (data_dir / "planetoid").glob("ind.cora.*"):
        shutil.copy(f, dst / f.name)


def test_missing_truncated_and_corrupt_files(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("lds.datasets.planetoid.network_available", lambda: False)
    folder = tmp_path / "d" / "planetoid"
    _copy_cora(data_dir, folder)
    (folder / "ind.cora.graph").unlink()
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"ind\.cora\.graph missing.*LDS_DATA_DIR"):
        load_planetoid("cora", root=tmp_path / "d", cache_dir=tmp_path / "cache")
    assert time.perf_counter() - t0 < 10
    shutil.copy(data_dir / "planetoid" / "ind.cora.graph", folder / "ind.cora.graph")
    content = (folder / "ind.cora.x").read_bytes()
    (folder / "ind.cora.x").write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=r"ind\.cora\.x is truncated or corrupt"):
        load_planetoid("cora", root=tmp_path / "d")
    corrupt = bytearray(content)
    corrupt[100] ^= 0xFF
    (folder / "ind.cora.x").write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_planetoid("cora", root=tmp_path / "d")
    assert (folder / "ind.cora.x").read_bytes() == bytes(corrupt)  # nothing overwritten


def test_no_data_no_network_fails_fast_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setattr("lds.datasets.planetoid.network_available", lambda: False)
    monkeypatch.setattr("lds.datasets.uci.network_available", lambda: False)
    monkeypatch.delenv("LDS_DATA_DIR", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="LDS_DATA_DIR"):
        load_planetoid("cora", cache_dir=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="LDS_DATA_DIR"):
        load_uci("20news", cache_dir=tmp_path / "empty")
    assert time.perf_counter() - t0 < 10


def test_pubmed_offline_copy_fails_clearly(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("lds.datasets.planetoid.network_available", lambda: False)
    with pytest.raises(FileNotFoundError, match=r"ind\.pubmed\.allx"):
        load_planetoid("pubmed", root=data_dir, cache_dir=tmp_path)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="cora, citeseer, pubmed"):
        load_planetoid("coraa")
    with pytest.raises(ValueError, match="wine, breast_cancer, digits, 20news"):
        load_uci("iris")


@pytest.mark.parametrize("name,sizes,dim", [("wine", (10, 20, 148), 13), ("cancer", (10, 20, 539), 30),
                                            ("digits", (50, 100, 1647), 64)])
def test_uci_splits(name, sizes, dim):
    data = load_uci(name, seed=0)
    assert data.x.shape[1] == dim and data.edge_index.shape == (2, 0)
    assert tuple(int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)) == sizes
    assert int((data.train_mask | data.val_mask | data.test_mask).sum()) == data.num_nodes
    # stratified: every class is in the training set
    assert data.y[data.train_mask].unique().numel() == data.y.unique().numel()
    again = load_uci(name, seed=0)
    assert torch.equal(again.train_mask, data.train_mask)
    assert not torch.equal(load_uci(name, seed=1).train_mask, data.train_mask)
    if name != "digits":
        assert torch.allclose(data.x.mean(0), torch.zeros(dim), atol=1e-5)  # standardised


def test_20news_tfidf(data_dir, tmp_path):
    data = load_uci("20news", seed=0, root=data_dir, cache_dir=tmp_path)
    assert data.x.shape == (9607, 236)
    assert tuple(int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)) == (100, 200, 9307)
    assert data.y.unique().numel() == 10
    assert (tmp_path / "20news_tfidf_v1.npz").is_file()  # the derived features are cached, not the data dir
    cached = load_uci("20news", seed=0, root=data_dir, cache_dir=tmp_path)
    assert torch.equal(cached.x, data.x)


def test_20news_corrupt_pickle(data_dir, tmp_path, monkeypatch):
    bad = tmp_path / "bad" / "20newsgroups"
    bad.mkdir(parents=True)
    (bad / "20news-bydate_py3.pkz").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_uci("20news", root=tmp_path / "bad", cache_dir=tmp_path / "cache")
