"""load_uci: the LDS split sizes, stratification, 20 Newsgroups TF-IDF (9607 x 236) and its cache, errors."""

import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lds.datasets import load_uci, stratified_split
from lds.datasets.uci import NEWS_COUNTS

from ._helpers import NEWS_FILE, snapshot

MASKS = ("train_mask", "val_mask", "test_mask")


def sizes(data):
    return tuple(int(getattr(data, m).sum()) for m in MASKS)


def assert_partition_and_stratified(data):
    total = torch.stack([getattr(data, m) for m in MASKS]).sum(0)
    assert bool((total == 1).all())  # every node in exactly one part
    share = torch.bincount(data.y).double() / data.num_nodes
    for mask in (data.train_mask, data.val_mask):
        counts = torch.bincount(data.y[mask], minlength=data.num_classes).double()
        assert bool(((counts - share * int(mask.sum())).abs() <= 1.0).all())  # stratified: proportional to within 1


@pytest.mark.parametrize("name,features,split", [
    ("wine", 13, (10, 20, 148)),
    ("breast_cancer", 30, (10, 20, 539)),
    ("cancer", 30, (10, 20, 539)),
    ("digits", 64, (50, 100, 1647)),
])
def test_bundled_datasets_have_the_lds_splits(name, features, split):
    data = load_uci(name, seed=0)
    assert data.x.shape == (sum(split), features) and data.x.dtype == torch.float32
    assert data.y.dtype == torch.long and data.num_classes == int(data.y.max()) + 1
    assert data.edge_index.shape == (2, 0) and data.edge_index.dtype == torch.long
    assert sizes(data) == split
    assert_partition_and_stratified(data)
    again, other = load_uci(name, seed=0), load_uci(name, seed=1)
    assert all(torch.equal(getattr(again, m), getattr(data, m)) for m in MASKS)
    assert not torch.equal(other.train_mask, data.train_mask)
    if name == "digits":  # raw pixel counts
        assert float(data.x.min()) == 0.0 and float(data.x.max()) == 16.0
    else:  # standardized
        assert torch.allclose(data.x.double().mean(0), torch.zeros(features, dtype=torch.float64), atol=1e-5)
        assert torch.allclose(data.x.double().std(0, unbiased=False), torch.ones(features, dtype=torch.float64),
                              atol=1e-4)


def test_stratified_split_follows_train_test_split():
    from sklearn.model_selection import train_test_split

    y = np.repeat([0, 1, 2], [30, 20, 10])
    train, val, test = stratified_split(y, 12, 18, seed=7)
    idx_train, rest = train_test_split(np.arange(60), train_size=12, stratify=y, random_state=7)
    idx_val, idx_test = train_test_split(rest, train_size=18, stratify=y[rest], random_state=7)
    for mask, idx in [(train, idx_train), (val, idx_val), (test, idx_test)]:
        assert torch.nonzero(mask).view(-1).tolist() == sorted(idx.tolist())


def test_20news_tfidf_from_a_read_only_copy_is_cached(news_root, tmp_path, monkeypatch):
    monkeypatch.delenv("LDS_DATA_DIR", raising=False)
    data_dir = tmp_path / "ro"
    (data_dir / "20newsgroups").mkdir(parents=True)
    shutil.copy(news_root / NEWS_FILE, data_dir / NEWS_FILE)
    read_only = [data_dir / NEWS_FILE, data_dir / "20newsgroups", data_dir]
    for path in read_only:
        path.chmod(stat.S_IRUSR | (stat.S_IXUSR if path.is_dir() else 0))
    before = snapshot(data_dir)
    cache = tmp_path / "cache"
    try:
        data = load_uci("20news", seed=0, root=data_dir, cache_dir=cache)
    finally:
        for path in reversed(read_only):
            path.chmod(stat.S_IRWXU)
    assert snapshot(data_dir) == before  # the data directory is only read
    assert data.x.shape == (9607, 236) and data.x.dtype == torch.float32
    assert sizes(data) == (100, 200, 9307)
    assert data.num_classes == 10 and torch.bincount(data.y).tolist() == list(NEWS_COUNTS.values())
    assert_partition_and_stratified(data)
    norms = data.x.double().norm(dim=1)
    assert torch.allclose(norms[norms > 0], torch.ones(int((norms > 0).sum()), dtype=torch.float64), atol=1e-5)
    cached = list(cache.glob("20news10_tfidf_*.npz"))
    assert len(cached) == 1
    start = time.perf_counter()
    again = load_uci("20news", seed=1, root=data_dir, cache_dir=cache)
    assert time.perf_counter() - start < 2  # from the cache
    assert torch.equal(again.x, data.x) and torch.equal(again.y, data.y)
    assert not torch.equal(again.train_mask, data.train_mask)
    cached[0].write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="damaged cache file"):
        rebuilt = load_uci("20news", seed=0, root=data_dir, cache_dir=cache)
    assert torch.equal(rebuilt.x, data.x)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.warns(UserWarning, match="not writable"):  # an unwritable cache: still loads
        uncached = load_uci("20news", seed=0, root=data_dir, cache_dir=not_a_dir / "cache")
    assert torch.equal(uncached.x, data.x) and torch.equal(uncached.train_mask, data.train_mask)


def test_20news_missing_truncated_and_corrupt_pickle(news_root, tmp_path, monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("no download may be tried while a data directory is set")

    monkeypatch.setattr("lds.datasets.uci.network_available", no_download)
    folder = tmp_path / "d" / "20newsgroups"
    folder.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"20news-bydate_py3\.pkz: expected at .*20newsgroups.*LDS_DATA_DIR"):
        load_uci("20news", seed=0, root=tmp_path / "d", cache_dir=tmp_path / "cache")
    content = (news_root / NEWS_FILE).read_bytes()
    (folder / "20news-bydate_py3.pkz").write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=r"cannot read 20news-bydate_py3\.pkz at .*truncated, corrupt"):
        load_uci("20news", seed=0, root=tmp_path / "d", cache_dir=tmp_path / "cache")
    (folder / "20news-bydate_py3.pkz").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="truncated, corrupt"):
        load_uci("20news", seed=0, root=tmp_path / "d", cache_dir=tmp_path / "cache")
    assert (folder / "20news-bydate_py3.pkz").read_bytes() == b"not a pickle"  # nothing overwritten
    assert not list((tmp_path / "cache").glob("*.npz"))


def test_20news_content_is_checked_by_category_counts(news_root, tmp_path, monkeypatch):
    wrong = dict(NEWS_COUNTS, **{"sci.med": 991})
    monkeypatch.setattr("lds.datasets.uci.NEWS_COUNTS", wrong)
    with pytest.raises(ValueError, match=r"unexpected document counts .*'sci\.med': \(990, 991\)"):
        load_uci("20news", seed=0, root=news_root, cache_dir=tmp_path)


def test_20news_without_data_or_network_fails_fast(tmp_path, monkeypatch):
    monkeypatch.delenv("LDS_DATA_DIR", raising=False)
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="LDS_DATA_DIR is unset.*no network"):
        load_uci("20news", seed=0, cache_dir=tmp_path / "empty")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("kwargs,error,match", [
    ({"name": "iris"}, ValueError, r"unknown dataset 'iris'; valid names: wine, breast_cancer, digits, 20news"),
    ({"name": None}, TypeError, "name must be a str"),
    ({"seed": "0"}, TypeError, "seed must be an int"),
    ({"seed": -1}, ValueError, "seed must be a non-negative int"),
    ({"cache_dir": 1.5}, TypeError, "cache_dir must be a path"),
])
def test_bad_arguments(kwargs, error, match):
    args = {"name": "20news", "seed": 0, **kwargs}
    with pytest.raises(error, match=match):
        load_uci(**args)


def test_20news_download_goes_to_the_cache(news_root, tmp_path, monkeypatch):
    """The download path, offline: scikit-learn's download is replaced by a copy of the .pkz."""
    import sklearn.datasets

    real_fetch = sklearn.datasets.fetch_20newsgroups
    downloads = []

    def fake_fetch(data_home=None, download_if_missing=True, **kwargs):
        target = Path(data_home) / "20news-bydate_py3.pkz"
        if download_if_missing and not target.is_file():
            downloads.append(data_home)
            shutil.copy(news_root / NEWS_FILE, target)
        return real_fetch(data_home=data_home, download_if_missing=False, **kwargs)

    monkeypatch.delenv("LDS_DATA_DIR", raising=False)
    monkeypatch.setattr("lds.datasets.uci.network_available", lambda *a, **k: True)
    monkeypatch.setattr(sklearn.datasets, "fetch_20newsgroups", fake_fetch)
    cache = tmp_path / "cache"
    data = load_uci("20news", seed=0, cache_dir=cache)
    assert downloads == [str(cache / "20newsgroups")] and data.x.shape == (9607, 236)
    assert load_uci("20news", seed=0, cache_dir=cache).x.shape == (9607, 236) and len(downloads) == 1
