"""Planetoid citation graphs (Yang, Cohen & Salakhutdinov, 2016; Kipf & Welling, 2017 splits).

The raw ``ind.<name>.*`` files are read with PyG's reader (nothing is written next to them) and
verified against known SHA-256 sums.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch_geometric.data import Data

from ._paths import ENV_VAR, cache_root, data_root, network_available, verify, writable_dir
from .graphs import both_directions, undirected_pairs

NAMES = ("cora", "citeseer", "pubmed")
SUFFIXES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")

#: SHA-256 of the public ``ind.*`` files (kimiyoung/planetoid); pubmed's allx sum is not known here.
SHA256 = {
    "ind.citeseer.allx": "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668",
    "ind.citeseer.ally": "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95",
    "ind.citeseer.graph": "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7",
    "ind.citeseer.test.index": "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4",
    "ind.citeseer.tx": "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
    "ind.citeseer.ty": "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
    "ind.citeseer.x": "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
    "ind.citeseer.y": "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
    "ind.cora.allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
    "ind.cora.ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
    "ind.cora.graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
    "ind.cora.test.index": "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
    "ind.cora.tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
    "ind.cora.ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
    "ind.cora.x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
    "ind.cora.y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
    "ind.pubmed.ally": "0c37bbe3b5014ec365e9d393cf4791925e5ed94fb194305d74f064a8d7b50f0e",
    "ind.pubmed.graph": "5b89f0036ca22909471f1e6558eb42fa06e0c730a577bde5b058b40638f81dc9",
    "ind.pubmed.test.index": "b101d421688bbaecbd82e8a18f1e282378d6830f3a37666f28ebc47f844341b5",
    "ind.pubmed.tx": "4eb5f5d0f30f26497eb0ac6ac9719d09c67e284f1ed0385c93f3ef27a671da3d",
    "ind.pubmed.ty": "ee2e0d4819d9fbcc403689c3bf2e49face401b605932f093bc58ab6461130fdd",
    "ind.pubmed.x": "fbe9cb5c47200d1b7769a26e579be3b7130b556831f9d850e77c4c74f2599b33",
    "ind.pubmed.y": "e6c807633307a07ed659249006536a147c7999c797f11a2560752990181b41b3",
}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or name.lower() not in NAMES:
        raise ValueError(f"unknown Planetoid dataset {name!r}; valid names: {', '.join(NAMES)}.")
    return name.lower()


def _raw_folder(name: str, root: str | os.PathLike | None, cache_dir: str | os.PathLike | None) -> Path:
    """A folder holding all eight ``ind.<name>.*`` files, verified; downloads to the cache if needed."""
    fix = (f"Set {ENV_VAR} (or root=) to a folder with planetoid/ind.{name}.* files "
           f"(e.g. from github.com/kimiyoung/planetoid), or run with network access to download them.")
    base = data_root(root)
    partial = ""
    if base is not None:
        folder = base / "planetoid" if (base / "planetoid").is_dir() else base
        present = [s for s in SUFFIXES if (folder / f"ind.{name}.{s}").is_file()]
        if present:
            missing = [f"ind.{name}.{s}" for s in SUFFIXES if s not in present]
            if not missing:
                for s in SUFFIXES:
                    verify(folder / f"ind.{name}.{s}", SHA256.get(f"ind.{name}.{s}"), fix)
                return folder
            partial = (f"{name}: {', '.join(missing)} missing from {folder} (the other ind.{name}.* files are there; "
                       f"the offline copy of pubmed lacks ind.pubmed.allx). Copy the missing file(s) there. ")
    cache = cache_root(cache_dir) / "planetoid"
    if all((cache / f"ind.{name}.{s}").is_file() for s in SUFFIXES):
        for s in SUFFIXES:
            verify(cache / f"ind.{name}.{s}", SHA256.get(f"ind.{name}.{s}"), fix)
        return cache
    if not network_available():
        where = f"{base}" if base is not None else f"${ENV_VAR} (unset)"
        raise FileNotFoundError(
            f"{partial}no complete {name} data in {where} nor in the cache {cache}, and there is no network. {fix}"
        )
    target = writable_dir(cache)
    if target is None:
        raise FileNotFoundError(f"cannot download {name}: the cache {cache} is not writable. {fix}")
    from torch_geometric.data import download_url

    url = "https://github.com/kimiyoung/planetoid/raw/master/data"
    for s in SUFFIXES:
        download_url(f"{url}/ind.{name}.{s}", str(target), log=False)
    for s in SUFFIXES:
        verify(target / f"ind.{name}.{s}", SHA256.get(f"ind.{name}.{s}"), fix)
    return target


def random_split(y: torch.Tensor, num_classes: int, seed: int, num_train_per_class: int = 20,
                 num_val: int = 500, num_test: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PyG's ``Planetoid(split="random")`` convention: 20 per class for training, then 500 / 1000 at random."""
    g = torch.Generator().manual_seed(seed)
    n = y.numel()
    train = torch.zeros(n, dtype=torch.bool)
    for c in range(num_classes):
        idx = torch.nonzero(y == c, as_tuple=True)[0]
        idx = idx[torch.randperm(idx.numel(), generator=g)[:num_train_per_class]]
        train[idx] = True
    rest = torch.nonzero(~train, as_tuple=True)[0]
    rest = rest[torch.randperm(rest.numel(), generator=g)]
    val = torch.zeros(n, dtype=torch.bool)
    test = torch.zeros(n, dtype=torch.bool)
    val[rest[:num_val]] = True
    test[rest[num_val : num_val + num_test]] = True
    return train, val, test


def load_planetoid(
    name: str,
    graph: bool = True,
    normalize_features: bool = True,
    split: str = "public",
    seed: int | None = None,
    *,
    root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Data:
    """Cora, Citeseer or Pubmed as a PyG ``Data`` (x, y, edge_index, train/val/test masks).

    Args:
        name: ``"cora"``, ``"citeseer"`` or ``"pubmed"``.
        graph: keep the citation graph; ``False`` gives an empty ``edge_index`` (no-graph setting).
        normalize_features: row-normalise the features (rows sum to 1), as LDS and GCN do.
        split: ``"public"`` (Kipf & Welling: 140/500/1000 on Cora) or ``"random"`` (seeded, 20 per class
            for training, 500 validation, 1000 test).
        seed: seed of the random split (required for ``split="random"``).
        root: data folder (else ``$LDS_DATA_DIR``), holding ``planetoid/ind.<name>.*``.
        cache_dir: writable folder for downloads (default ``~/.cache/lds``).
    """
    name = _check_name(name)
    if split not in ("public", "random"):
        raise ValueError(f"split must be 'public' or 'random', got {split!r}.")
    if split == "random" and seed is None:
        raise ValueError("split='random' needs a seed (e.g. seed=0) so that the split is reproducible.")
    from torch_geometric.io import read_planetoid_data

    folder = _raw_folder(name, root, cache_dir)
    raw = read_planetoid_data(str(folder), name)
    x = raw.x.float()
    if normalize_features:
        rowsum = x.sum(1, keepdim=True)
        x = torch.where(rowsum > 0, x / rowsum.clamp_min(1e-12), x)
    y = raw.y.long()
    num_classes = int(y.max()) + 1
    if split == "public":
        train, val, test = raw.train_mask, raw.val_mask, raw.test_mask
    else:
        train, val, test = random_split(y, num_classes, int(seed))
    edge_index = both_directions(undirected_pairs(raw.edge_index)) if graph else torch.empty(2, 0, dtype=torch.long)
    return Data(x=x, y=y, edge_index=edge_index, train_mask=train, val_mask=val, test_mask=test)
