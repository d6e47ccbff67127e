"""Planetoid citation graphs Cora, Citeseer and Pubmed (Yang, Cohen & Salakhutdinov, ICML 2016), with the
public split of Kipf & Welling (ICLR 2017) or PyG's seeded random split.

The raw ``ind.<name>.*`` files are verified against known SHA-256 sums *before* they are unpickled, then
read with PyG's reader (``torch_geometric.io.read_planetoid_data``), which writes nothing; PyG's
``Planetoid(root)`` is not used because it writes a ``processed/`` folder beside the raw files.
"""

from __future__ import annotations

import numbers
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import torch
from torch_geometric.data import Data

from ._paths import (
    ENV_VAR,
    PathArg,
    cache_root,
    check_bool,
    check_seed,
    data_root,
    network_available,
    verify,
    writable_dir,
)
from .graphs import both_directions, undirected_pairs

NAMES = ("cora", "citeseer", "pubmed")
SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
SPLITS = ("public", "random")
URL = "https://github.com/kimiyoung/planetoid/raw/master/data"

#: (size in bytes, SHA-256) of the public ``ind.*`` files (kimiyoung/planetoid @ af6abf4, identical in
#: tkipf/gcn). ``ind.pubmed.allx`` is not known here: it is checked by the shapes it gives.
KNOWN_FILES: Mapping[str, tuple[int, str]] = MappingProxyType({
    "ind.citeseer.allx": (595021, "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668"),
    "ind.citeseer.ally": (55623, "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95"),
    "ind.citeseer.graph": (61987, "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7"),
    "ind.citeseer.test.index": (5000, "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4"),
    "ind.citeseer.tx": (260321, "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21"),
    "ind.citeseer.ty": (24135, "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce"),
    "ind.citeseer.x": (31087, "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6"),
    "ind.citeseer.y": (3014, "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924"),
    "ind.cora.allx": (257305, "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543"),
    "ind.cora.ally": (47959, "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71"),
    "ind.cora.graph": (59847, "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d"),
    "ind.cora.test.index": (5000, "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875"),
    "ind.cora.tx": (148025, "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a"),
    "ind.cora.ty": (28135, "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad"),
    "ind.cora.x": (22119, "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab"),
    "ind.cora.y": (4054, "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1"),
    "ind.pubmed.ally": (224739, "0c37bbe3b5014ec365e9d393cf4791925e5ed94fb194305d74f064a8d7b50f0e"),
    "ind.pubmed.graph": (471808, "5b89f0036ca22909471f1e6558eb42fa06e0c730a577bde5b058b40638f81dc9"),
    "ind.pubmed.test.index": (6000, "b101d421688bbaecbd82e8a18f1e282378d6830f3a37666f28ebc47f844341b5"),
    "ind.pubmed.tx": (405505, "4eb5f5d0f30f26497eb0ac6ac9719d09c67e284f1ed0385c93f3ef27a671da3d"),
    "ind.pubmed.ty": (12135, "ee2e0d4819d9fbcc403689c3bf2e49face401b605932f093bc58ab6461130fdd"),
    "ind.pubmed.x": (23172, "fbe9cb5c47200d1b7769a26e579be3b7130b556831f9d850e77c4c74f2599b33"),
    "ind.pubmed.y": (854, "e6c807633307a07ed659249006536a147c7999c797f11a2560752990181b41b3"),
})

#: nodes, features, classes after loading (Kipf & Welling, Table 1; Citeseer padded with 15 zero rows).
SHAPES = MappingProxyType({"cora": (2708, 1433, 7), "citeseer": (3327, 3703, 6), "pubmed": (19717, 500, 3)})


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {', '.join(NAMES)}; got {type(name).__name__} {name!r}.")
    if name.lower() not in NAMES:
        raise ValueError(f"unknown Planetoid dataset {name!r}; valid names: {', '.join(NAMES)}.")
    return name.lower()


def _files(name: str) -> list[str]:
    return [f"ind.{name}.{s}" for s in SUFFIXES]


def _verify_all(folder: Path, name: str, fix: str) -> None:
    for file in _files(name):
        size, digest = KNOWN_FILES.get(file, (None, None))
        verify(folder / file, digest, size, fix)


def _from_data_dir(base: Path, name: str) -> Path:
    """The verified folder under a data directory (``base/planetoid`` or ``base``); never downloads."""
    folder = base / "planetoid" if (base / "planetoid").is_dir() else base
    missing = [f for f in _files(name) if not (folder / f).is_file()]
    if missing:
        note = (" (a known gap: the offline data copy lacks ind.pubmed.allx, a 7-8 MB file, and Pubmed has no "
                "features for its 18,717 non-test nodes without it)") if "ind.pubmed.allx" in missing else ""
        raise FileNotFoundError(
            f"{name}: missing data file(s) {', '.join(missing)}{note}: expected in {folder} (from root= or "
            f"${ENV_VAR}). Copy the ind.{name}.* files from github.com/kimiyoung/planetoid (data/) there, or "
            f"point root=/{ENV_VAR} at a folder that has them, or unset {ENV_VAR} (and root=) to download them "
            "once into the cache. Nothing is downloaded while a data directory is set."
        )
    _verify_all(folder, name, f"Fix the file(s) in {folder} or point root=/{ENV_VAR} elsewhere.")
    return folder


def _download(name: str, cache_dir: PathArg) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The verified cache folder, downloading the files once; a temporary folder if the cache is read-only."""
    cache = cache_root(cache_dir) / "planetoid"
    fix = (f"Delete {cache} to download again, or set {ENV_VAR} (or root=) to a folder with "
           f"planetoid/ind.{name}.* files.")
    if all((cache / f).is_file() for f in _files(name)):
        _verify_all(cache, name, fix)
        return cache, None
    if not network_available():
        raise FileNotFoundError(
            f"no {name} data: {ENV_VAR} is unset, root= was not given, the cache {cache} lacks the ind.{name}.* "
            f"files, and there is no network to download them. Set {ENV_VAR} (or root=) to a folder with "
            f"planetoid/ind.{name}.* (from github.com/kimiyoung/planetoid), or run once with network access."
        )
    from torch_geometric.data import download_url

    target = writable_dir(cache)
    tmp = tempfile.TemporaryDirectory(prefix="lds-planetoid-", dir=target)
    try:
        for f in _files(name):
            download_url(f"{URL}/{f}", tmp.name, log=False)
        _verify_all(Path(tmp.name), name, f"The download from {URL} was damaged; try again.")
    except Exception as exc:
        tmp.cleanup()
        raise FileNotFoundError(f"downloading {name} from {URL} failed ({type(exc).__name__}: {exc}). "
                                f"Set {ENV_VAR} (or root=) to a folder with planetoid/ind.{name}.* files.") from exc
    if target is None:  # read-only cache: load from the temporary folder, removed afterwards
        return Path(tmp.name), tmp
    for f in _files(name):
        os.replace(Path(tmp.name) / f, cache / f)
    tmp.cleanup()
    return cache, None


def random_split(
    y: torch.Tensor,
    num_classes: int,
    seed: int,
    num_train_per_class: int = 20,
    num_val: int = 500,
    num_test: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boolean masks with PyG's ``Planetoid(split="random")`` convention, seeded.

    ``num_train_per_class`` nodes of each class for training, then ``num_val`` and ``num_test`` drawn at
    random from the remaining nodes.

    >>> train, val, test = random_split(torch.tensor([0, 0, 1, 1, 1]), 2, seed=0, num_train_per_class=1,
    ...                                 num_val=1, num_test=2)
    >>> [int(m.sum()) for m in (train, val, test)]
    [2, 1, 2]
    """
    g = torch.Generator().manual_seed(check_seed(seed))
    n = y.numel()
    train = torch.zeros(n, dtype=torch.bool)
    for c in range(num_classes):
        idx = torch.nonzero(y == c, as_tuple=True)[0]
        train[idx[torch.randperm(idx.numel(), generator=g)[:num_train_per_class]]] = True
    rest = torch.nonzero(~train, as_tuple=True)[0]
    rest = rest[torch.randperm(rest.numel(), generator=g)]
    val = torch.zeros(n, dtype=torch.bool)
    test = torch.zeros(n, dtype=torch.bool)
    val[rest[:num_val]] = True
    test[rest[num_val : num_val + num_test]] = True
    return train, val, test


def row_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows divided by their sums (Kipf & Welling's ``preprocess_features``); zero rows stay zero."""
    rowsum = x.sum(1, keepdim=True)
    return torch.where(rowsum != 0, x / torch.where(rowsum != 0, rowsum, torch.ones_like(rowsum)), x)


def load_planetoid(
    name: str,
    graph: bool = True,
    normalize_features: bool = True,
    split: str = "public",
    seed: int | None = None,
    *,
    root: PathArg = None,
    cache_dir: PathArg = None,
) -> Data:
    """Cora, Citeseer or Pubmed as a PyG ``Data`` with ``x``, ``y``, ``edge_index`` and boolean masks.

    The graph is undirected, in both directions, without self-loops or duplicates (Cora: 5278 edges,
    Citeseer: 4552). Citeseer's 15 test ids without features get zero rows (label 0, in no mask), as in
    PyG and Kipf & Welling's loader. ``num_classes`` is set on the result.

    Args:
        name: ``"cora"``, ``"citeseer"`` or ``"pubmed"`` (case-insensitive).
        graph: keep the citation graph; ``False`` gives an empty ``edge_index`` of shape ``(2, 0)``.
        normalize_features: row-normalise the features (rows sum to 1, zero rows stay zero), as LDS does.
        split: ``"public"``, the split of Yang et al. used by Kipf & Welling (Cora 140/500/1000, Citeseer
            120/500/1000), or ``"random"``: 20 nodes per class for training, 500 validation and 1000 test,
            drawn with ``seed`` (PyG's ``Planetoid(split="random")`` convention).
        seed: seed of the random split (required for ``split="random"``, ignored otherwise).
        root: data directory holding ``planetoid/ind.<name>.*`` (else ``$LDS_DATA_DIR``); only read.
        cache_dir: where downloads go when no data directory is set (default ``~/.cache/lds``).

    >>> data = load_planetoid("cora")  # doctest: +SKIP
    >>> data.num_nodes, data.edge_index.size(1) // 2, int(data.train_mask.sum())  # doctest: +SKIP
    (2708, 5278, 140)
    """
    name = _check_name(name)
    graph = check_bool(graph, "graph")
    normalize_features = check_bool(normalize_features, "normalize_features")
    if isinstance(split, numbers.Integral) and not isinstance(split, bool):
        raise ValueError(f"split={split!r} reads as the index of a fixed split, but Planetoid has no numbered "
                         "splits here: use split='public' (Kipf & Welling's) or split='random' with seed=k.")
    if split not in SPLITS:
        raise ValueError(f"split must be 'public' or 'random', got {split!r}.")
    if split == "random":
        if seed is None:
            raise ValueError("split='random' needs a seed (e.g. seed=0) so that the split is reproducible.")
        seed = check_seed(seed)
    base = data_root(root)
    tmp = None
    if base is not None:
        folder = _from_data_dir(base, name)
    else:
        folder, tmp = _download(name, cache_dir)
    from torch_geometric.io import read_planetoid_data

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # scipy.sparse.csr in the old pickles
            raw = read_planetoid_data(str(folder), name)
    except Exception as exc:  # e.g. an ind.pubmed.allx that is not the public file
        raise ValueError(f"cannot read the ind.{name}.* files in {folder} ({type(exc).__name__}: {exc}); "
                         "replace them with fresh copies from github.com/kimiyoung/planetoid.") from exc
    finally:
        if tmp is not None:
            tmp.cleanup()
    num_nodes, num_features, num_classes = SHAPES[name]
    got = (raw.x.size(0), raw.x.size(1), int(raw.y.max()) + 1)
    if got != SHAPES[name]:
        raise ValueError(f"the ind.{name}.* files in {folder} give {got[0]} nodes, {got[1]} features and {got[2]} "
                         f"classes, expected {num_nodes}, {num_features} and {num_classes}; replace them with "
                         "fresh copies from github.com/kimiyoung/planetoid.")
    x = raw.x.to(torch.float32)
    if normalize_features:
        x = row_normalize(x)
    y = raw.y.to(torch.long)
    if split == "public":
        train, val, test = raw.train_mask, raw.val_mask, raw.test_mask
    else:
        train, val, test = random_split(y, num_classes, seed)
    if graph:
        edge_index = both_directions(undirected_pairs(raw.edge_index))
    else:
        edge_index = torch.empty(2, 0, dtype=torch.long)
    data = Data(x=x, y=y, edge_index=edge_index, train_mask=train, val_mask=val, test_mask=test)
    data.num_classes = num_classes
    return data
