"""Heterophilous node-classification graphs with their 10 fixed splits.

- ``load_heterophilous``: the ``.npz`` files of Platonov et al. (ICLR 2023, "A critical look at the
  evaluation of GNNs under heterophily"): chameleon and squirrel (plain, ``_filtered``, ``_directed``),
  actor, cornell, texas, wisconsin, minesweeper, tolokers. Read from ``heterophilous-graphs/<name>.npz`` in
  the data directory (``np.load(allow_pickle=False)``), or downloaded once into the cache when none is set.
- ``load_geom_gcn``: the Geom-GCN text files (Pei et al., ICLR 2020) of cornell, texas, wisconsin and film
  (Actor) with their 60/20/20 splits, from ``geom-gcn/new_data/`` and ``geom-gcn/splits/``; read only from a
  data directory. They give the same graphs, features, labels and masks as the ``.npz`` files.

Every file is checked against its known size and SHA-256 before it is parsed. Platonov et al. evaluate
minesweeper and tolokers (two classes) by ROC-AUC and the others by accuracy: ``heterophilous_metric(name)``
and the ``metric`` attribute of the loaded ``Data`` say which. They recommend the ``_filtered`` chameleon and
squirrel: the original ones hold duplicate nodes that leak between train and test.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch_geometric.data import Data

from ._paths import ENV_VAR, PathArg, cache_root, check_bool, data_root, network_available, verify, writable_dir
from .graphs import both_directions, undirected_pairs

FOLDER = "heterophilous-graphs"
NUM_SPLITS = 10
#: the source repository at the commit the known files come from
URL = "https://github.com/yandex-research/heterophilous-graphs/raw/a431395582e929d88271309716bea4fe24ce6318/data"

#: (size in bytes, SHA-256) of ``<name>.npz`` (yandex-research/heterophilous-graphs @ a431395, ``data/``).
KNOWN_FILES: Mapping[str, tuple[int, str]] = MappingProxyType({
    "actor": (252956, "c350eef06b2c2a9bf8218be2b57cac6d4003d0922eb597a039e9123f75817816"),
    "chameleon": (177840, "4c640bd2877fc4f9f101531e2f977bc16445a54e09a5cb01178df608e552f3fd"),
    "chameleon_directed": (191520, "34aea6b6888063544232100d53d4aa7e87e37953ec8dd3a7092afb25bb2f0328"),
    "chameleon_filtered": (58924, "bf46f07e1fb5249280447e5fe3100f3e82fc4b93ad1e13ffcfdec924b6ac0bb5"),
    "chameleon_filtered_directed": (69275, "5a2d40701407188f1661d37a326484b49cc15251e0dedaa7bd380873dac80f21"),
    "cornell": (30515, "684c54ba3daa13b0ba1f04a3d6dd1b1175c1ae9bdeb982851fd4ff96d3aac298"),
    "minesweeper": (135045, "e664c8dacf1e8ac466c2c09ed4b237bd2c5541f47a6eae9c6092cb87f16412b3"),
    "squirrel": (704277, "d436e3b42c0546b105241c0ab0766097074e68e55f67b133eeb9b0162e55cbd9"),
    "squirrel_directed": (760119, "3f0436486716cf77b651c372e54f6b4c2cc52262e7faeeab584a34b41bae2616"),
    "squirrel_filtered": (208215, "f06370ffb3116c5de8b7a600005400b2293c025e0ce2f6916d8201a825505ac7"),
    "squirrel_filtered_directed": (249855, "0526e53252f0b052124f7390829c32e923d432acaf64206191a1144a07b39620"),
    "texas": (28586, "b164b99e6c3d43e4ab07488ec59bd8c815f90cbc1bd4cf425ce587d2b534d844"),
    "texas_4_classes": (28586, "2da438ba7f41fd82e0953e2c9f63ef18e5a58da51ae6369cb5f5010bdf0e67bd"),
    "tolokers": (1329769, "dacf3ac94cec53d03cd2adb5255c08b33dee1656c33ca8164a464bd9450a1667"),
    "wisconsin": (41672, "2543c89838cfc75f737f7c4664cc1d097f8268602c20b2d1bd4f21407df9c074"),
})
NAMES = tuple(KNOWN_FILES)
#: Platonov et al.'s datasets that have no verified copy here (too large for the offline data folder).
NOT_AVAILABLE = ("roman_empire", "amazon_ratings", "questions")
ROC_AUC_NAMES = ("minesweeper", "tolokers")
DIRECTED_NAMES = tuple(name for name in NAMES if name.endswith("_directed"))

#: Geom-GCN datasets readable from the text files (Actor is ``film`` there), and their feature columns.
GEOM_GCN_FEATURES: Mapping[str, int] = MappingProxyType({"cornell": 1703, "texas": 1703, "wisconsin": 1703,
                                                         "film": 932})
GEOM_GCN_NAMES = tuple(GEOM_GCN_FEATURES)
GEOM_GCN_ALIASES: Mapping[str, str] = MappingProxyType({"actor": "film"})
#: (size in bytes, SHA-256) of the Geom-GCN files, by path under ``geom-gcn/`` (graphdml-uiuc-jlu/geom-gcn @
#: f1fc0d1; ``new_data/cornell/`` is the corrected upload of 2022-07-17, commit 3cc5710).
GEOM_GCN_FILES: Mapping[str, tuple[int, str]] = MappingProxyType({
    "new_data/cornell/out1_graph_edges.txt": (1989, "12dc60defc4f8a1f18499e3695bfd62ef0421f9b722297276e7f02dec7ae3dca"),
    "new_data/cornell/out1_node_feature_label.txt":
        (624308, "38561ad44e29199a826ccef7f94f469b94a912076f83fbc453a69b8ac2b4b858"),
    "new_data/texas/out1_graph_edges.txt": (2172, "0fe85183243a78cbee9b85a684f8240963d04d1020d10e9cd2b8cfb25e33b476"),
    "new_data/texas/out1_node_feature_label.txt":
        (624308, "cf5a3ca346cdd1210b8342e22517fcbbdae658065b7a3145f59350e50e6236a3"),
    "new_data/wisconsin/out1_graph_edges.txt":
        (3606, "ebd213511c88fce1eda450c2f920600c4b8cbb38f02384856bcc47c6ec1807ae"),
    "new_data/wisconsin/out1_node_feature_label.txt":
        (856324, "a32b0aa38d42f0d36841e8a8cb646d197f0ff33a182ac75a2b4476aeed3c7e4b"),
    "new_data/film/out1_graph_edges.txt": (323820, "997cdce67ea9c29257d3ffe796328391931901cf823830affa453178b60e2c3e"),
    "new_data/film/out1_node_feature_label.txt":
        (207718, "1d5cdd094f8b91e770f6decfca85b35cf42f75d1efb51055fd6af16e11820ff8"),
    "splits/cornell_split_0.6_0.2_0.npz": (704, "14022a1e19ec7fc0a07a2c06a785a2f9dc52809dbcd1c14fc318f7800675d73f"),
    "splits/cornell_split_0.6_0.2_1.npz": (700, "5568fa27e968a724c92211bf97026a36a08893cf94b218043e49b4c973c35cfb"),
    "splits/cornell_split_0.6_0.2_2.npz": (695, "763fc1f423395e4172617fa5b6bc0d7adad2241e5fedd1a4f0a098a67f9dc8e9"),
    "splits/cornell_split_0.6_0.2_3.npz": (701, "4334321cd9ec42de9d51107fb9a6dc310512e0921bc1cff0f390301ee37315fa"),
    "splits/cornell_split_0.6_0.2_4.npz": (759, "2b6b3ef396f4dc7fcdc276fb16b88bb87409b25879dd672b3a506eca844dd8d7"),
    "splits/cornell_split_0.6_0.2_5.npz": (754, "1a40ef8b20aa9e1aa850e1abdaba3efac1f66c98ef2c6a59eadefa21136ece6b"),
    "splits/cornell_split_0.6_0.2_6.npz": (758, "bcddf4ab59eae4c7d47b8a6cec9025a54ec0e6d3f3bdcd7678e201f25ace4642"),
    "splits/cornell_split_0.6_0.2_7.npz": (693, "2b497e12dfc123d7e7c9bb4fc4a82b5bee18409e109a3e3a04da439cacec964d"),
    "splits/cornell_split_0.6_0.2_8.npz": (701, "5c4e110d252d7ad156b2e4cd34b6dbd1cecbcc1755f8d72e932cc2a54f2b643c"),
    "splits/cornell_split_0.6_0.2_9.npz": (704, "80f1531807194d301affbf6f879a4ab4f56a19bdccb62d192e3ecd1b5275f052"),
    "splits/texas_split_0.6_0.2_0.npz": (698, "7ba77bf7a8856fcc0ab15623a611b8cdce994e820f577da914123fb4f45272b0"),
    "splits/texas_split_0.6_0.2_1.npz": (701, "21cc244a96e3c51ad7993afb4dd227f90e467d82b964bb42d7d9fc500a6ef87f"),
    "splits/texas_split_0.6_0.2_2.npz": (756, "b9e96a699ccf3a4c31ffbd03e52b25570889833425d20fa44e06c37b327cf61e"),
    "splits/texas_split_0.6_0.2_3.npz": (759, "1a7deeb1285009789d5e6045d7e39f7d019c9223d9a75a2b7ce5e26d33b51f63"),
    "splits/texas_split_0.6_0.2_4.npz": (702, "b5419ff3fe31adcae66fdb085d4f47d0b188e9436ab59f438632af969aafc674"),
    "splits/texas_split_0.6_0.2_5.npz": (691, "68405fd1b9ff6105d99717220ecbd198785e338bf4a73abee722bbc9703d2667"),
    "splits/texas_split_0.6_0.2_6.npz": (756, "8ad78b973164e70e5ac0d282e79adcbc6006e373909fbdfd72a13131e09040b8"),
    "splits/texas_split_0.6_0.2_7.npz": (693, "a84bcbf997365bddf5fdf72ed49dc7e435e475f8c6210f8cdee7c8581a2bd6df"),
    "splits/texas_split_0.6_0.2_8.npz": (762, "65ba65f296f91d40d2d7d3c9369b67415094a7e254c6eee48cd6d6531c586fdf"),
    "splits/texas_split_0.6_0.2_9.npz": (693, "4306981d654ad8835c000c1f73fb6c1e60dfe99e26c13a6073f3b0f4cc3ce6ee"),
    "splits/wisconsin_split_0.6_0.2_0.npz": (805, "f66f641e191d35d491cd3b63d6c2cd93c4b436da398984b44c19a8d4d7e7b1a5"),
    "splits/wisconsin_split_0.6_0.2_1.npz": (739, "534aeb97266bd5a85a8587adf8eebad3f2e001c1240610f24b62c0ad0c2466ee"),
    "splits/wisconsin_split_0.6_0.2_2.npz": (747, "047a5b641778ec3a4c76055fd7f18ecb2424c0952f20dfff7e1b17749d8acbdd"),
    "splits/wisconsin_split_0.6_0.2_3.npz": (810, "706c27b4c51d046c0316f1e915f093e4a1fff48b3436b3e7c421eab596a99e77"),
    "splits/wisconsin_split_0.6_0.2_4.npz": (812, "7ee813605eec086457aaff022cf3837f2f893fcf8bd37e3a8d2ff0c80e4c4f87"),
    "splits/wisconsin_split_0.6_0.2_5.npz": (749, "8094ac2bdaf2cbea8f7a48df66a0800c809b2fd5942740e6b0441b660d3a0dd5"),
    "splits/wisconsin_split_0.6_0.2_6.npz": (735, "c423a8deea9b18f9ecb6cfd703578e2159df167de01fe7e6195b88995010252d"),
    "splits/wisconsin_split_0.6_0.2_7.npz": (733, "57ad808c8d4dd94dc4404124370bbcebb3dcc597c2bea6457bf05f220adf1527"),
    "splits/wisconsin_split_0.6_0.2_8.npz": (741, "27d4d62a2a6aea2cdc399302237512ab0d64fb0c84e648112f97c5896274e42f"),
    "splits/wisconsin_split_0.6_0.2_9.npz": (744, "3c149cd124a19021031609e0d7743a7be59aae4f88c8d38410138e8f06f5daaf"),
    "splits/film_split_0.6_0.2_0.npz": (4214, "4505a41d4e90abd94d1ec22571ce528b09ad7cf20d87f764aebd4177590767f5"),
    "splits/film_split_0.6_0.2_1.npz": (4231, "1871b0d24e3977c41e378fd24acc8025b63f86b77739be77a5b558d1287f207d"),
    "splits/film_split_0.6_0.2_2.npz": (4224, "d26680e911ef3ecc9fc2a26d90c9d35028c63aadd7a5aea774649d1496c282cb"),
    "splits/film_split_0.6_0.2_3.npz": (4207, "6755ad5f6a0be8594b344af3d2261eed935b83b73c4d70136e1a7beea7f78cb0"),
    "splits/film_split_0.6_0.2_4.npz": (4233, "328fdca62b25074f21f2922518e042f24b3b8a1fc378f9dfb2cae36439aed902"),
    "splits/film_split_0.6_0.2_5.npz": (4224, "5b3161a8dc8de4b2e651ebd56d68e768d1377044895b325566117fe26ab81cb7"),
    "splits/film_split_0.6_0.2_6.npz": (4221, "e251b38abd4d7931b5e9ae5aba99dcdf87f0be283bdf6e65421274a1c9ef1df6"),
    "splits/film_split_0.6_0.2_7.npz": (4205, "12164ef9f5620a2f12a387f4f2b8636859d42201101d6d32829ade62d5a98326"),
    "splits/film_split_0.6_0.2_8.npz": (4217, "405cd1f7f631f678119f8bf2405809e86614d532985beb59566fcf95abd35b3f"),
    "splits/film_split_0.6_0.2_9.npz": (4208, "505691c5d41bb37b20d085415dcdde2e8e68b5bc4e1feb2c0e361308002012bb"),
})


def heterophilous_metric(name: str) -> str:
    """The metric Platonov et al. report for ``name``: ``"roc_auc"`` (minesweeper, tolokers) or ``"accuracy"``.

    >>> heterophilous_metric("tolokers"), heterophilous_metric("chameleon_filtered")
    ('roc_auc', 'accuracy')
    """
    return "roc_auc" if _check_name(name) in ROC_AUC_NAMES else "accuracy"


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {', '.join(NAMES)}; got {type(name).__name__} {name!r}.")
    key = name.lower().replace("-", "_")
    if key in NOT_AVAILABLE:
        raise ValueError(f"{name!r} (Platonov et al.) is not supported: there is no verified copy of {key}.npz; "
                         f"valid names: {', '.join(NAMES)}.")
    if key not in KNOWN_FILES:
        raise ValueError(f"unknown heterophilous dataset {name!r}; valid names: {', '.join(NAMES)}.")
    return key


def check_split_index(split: object, argument: str = "split") -> int:
    """One of the 10 fixed splits, ``0..9``."""
    if isinstance(split, (bool, np.bool_)) or not isinstance(split, (int, np.integer)):
        raise TypeError(f"{argument} must be an int, the index of one of the {NUM_SPLITS} fixed splits "
                        f"(0..{NUM_SPLITS - 1}); got {type(split).__name__} {split!r}.")
    if not 0 <= split < NUM_SPLITS:
        raise ValueError(f"{argument} must be one of the {NUM_SPLITS} fixed splits 0..{NUM_SPLITS - 1}, got "
                         f"{int(split)}.")
    return int(split)


def _npz_path(name: str, root: PathArg, cache_dir: PathArg) -> tuple[Path, tempfile.TemporaryDirectory | None]:
    """The verified ``<name>.npz``: from the data directory (never downloads), else the cache, downloading it
    once; with a temporary folder to clean up after loading when the cache cannot be written."""
    file = f"{name}.npz"
    size, digest = KNOWN_FILES[name]
    base = data_root(root)
    if base is not None:
        folder = base / FOLDER if (base / FOLDER).is_dir() else base
        path = folder / file
        if not path.is_file():
            raise FileNotFoundError(
                f"{name}: missing data file {file}: expected at {path} (from root= or ${ENV_VAR}). Copy it from "
                f"github.com/yandex-research/heterophilous-graphs (data/) there, point root=/{ENV_VAR} at a folder "
                f"holding {FOLDER}/{file}, or unset {ENV_VAR} (and root=) to download it once into the cache. "
                "Nothing is downloaded while a data directory is set."
            )
        verify(path, digest, size, f"Fix the file in {folder} or point root=/{ENV_VAR} elsewhere.")
        return path, None
    cache = cache_root(cache_dir) / FOLDER
    if (cache / file).is_file():
        verify(cache / file, digest, size, f"Delete {cache / file} to download it again.")
        return cache / file, None
    if not network_available():
        raise FileNotFoundError(
            f"no {name} data: {ENV_VAR} is unset, root= was not given, the cache {cache} lacks {file}, and there is "
            f"no network to download it. Set {ENV_VAR} (or root=) to a folder with {FOLDER}/{file} (from "
            "github.com/yandex-research/heterophilous-graphs), or run once with network access."
        )
    from torch_geometric.data import download_url

    target = writable_dir(cache)
    tmp = tempfile.TemporaryDirectory(prefix="lds-heterophilous-", dir=target)
    try:
        download_url(f"{URL}/{file}", tmp.name, log=False)
        verify(Path(tmp.name) / file, digest, size, f"The download from {URL} was damaged; try again.")
    except Exception as exc:
        tmp.cleanup()
        raise FileNotFoundError(f"downloading {file} from {URL} failed ({type(exc).__name__}: {exc}). Set "
                                f"{ENV_VAR} (or root=) to a folder with {FOLDER}/{file}.") from exc
    if target is None:  # read-only cache: load from the temporary folder, removed afterwards
        return Path(tmp.name) / file, tmp
    os.replace(Path(tmp.name) / file, cache / file)
    tmp.cleanup()
    return cache / file, None


def _consecutive_labels(labels: np.ndarray, used: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered over the classes seen in ``used`` nodes; a node of any other class gets ``-1``."""
    classes = np.unique(labels[used])
    position = np.searchsorted(classes, labels).clip(max=classes.size - 1)
    known = classes[position] == labels
    return np.where(known, position, -1).astype(np.int64), int(classes.size)


def _graph_data(x: np.ndarray, labels: np.ndarray, edges: np.ndarray, masks: tuple[np.ndarray, ...],
                used: np.ndarray, directed: bool, metric: str) -> Data:
    """``Data`` with float32 features, int64 labels, edges (undirected unless ``directed``) and bool masks."""
    y, num_classes = _consecutive_labels(labels, used)
    edge_index = torch.from_numpy(np.ascontiguousarray(edges.T, dtype=np.int64))
    if not directed:
        edge_index = both_directions(undirected_pairs(edge_index))
    train, val, test = (torch.from_numpy(np.ascontiguousarray(m, dtype=np.bool_)) for m in masks)
    data = Data(x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), y=torch.from_numpy(y),
                edge_index=edge_index, train_mask=train, val_mask=val, test_mask=test)
    data.num_classes = num_classes
    data.metric = metric
    return data


def load_heterophilous(
    name: str,
    split: int,
    *,
    directed: bool = False,
    root: PathArg = None,
    cache_dir: PathArg = None,
) -> Data:
    """A Platonov et al. (ICLR 2023) graph as a PyG ``Data``, with the masks of its fixed split ``split``.

    ``x`` (float32, as stored: not normalised), ``y`` (int64), ``edge_index``, boolean ``train_mask`` /
    ``val_mask`` / ``test_mask``, ``num_classes`` and ``metric`` (``"accuracy"``, or ``"roc_auc"`` for
    minesweeper and tolokers). The files store each undirected edge once; ``edge_index`` holds it in both
    directions, without self-loops or duplicates (``2 E`` columns). ``texas_4_classes`` is texas with its
    one-node class 1 (node 25) in no mask: its classes are renumbered ``0..3`` and node 25 gets label ``-1``.

    Args:
        name: one of ``NAMES`` (case-insensitive), e.g. ``"chameleon_filtered"``, ``"tolokers"``.
        split: which of the file's 10 fixed splits gives the masks, ``0..9``.
        directed: only for the ``*_directed`` files: keep their directed edge list as stored (Geom-GCN's,
            self-loops included) instead of symmetrising it.
        root: data directory holding ``heterophilous-graphs/<name>.npz`` (else ``$LDS_DATA_DIR``); only read.
        cache_dir: where the download goes when no data directory is set (default ``~/.cache/lds``).

    >>> data = load_heterophilous("chameleon_filtered", split=0)  # doctest: +SKIP
    >>> data.num_nodes, data.edge_index.size(1) // 2, int(data.train_mask.sum()), data.metric  # doctest: +SKIP
    (890, 8854, 409, 'accuracy')
    """
    name = _check_name(name)
    split = check_split_index(split)
    directed = check_bool(directed, "directed")
    if directed and not name.endswith("_directed"):
        raise ValueError(f"directed=True keeps a file's directed edge list, but {name}.npz stores each undirected "
                         f"edge once; use directed=False, or one of {', '.join(DIRECTED_NAMES)}.")
    path, tmp = _npz_path(name, root, cache_dir)
    try:
        with np.load(path, allow_pickle=False) as raw:
            masks = tuple(raw[key][split] for key in ("train_masks", "val_masks", "test_masks"))
            used = raw["train_masks"].any(0) | raw["val_masks"].any(0) | raw["test_masks"].any(0)
            return _graph_data(raw["node_features"], raw["node_labels"], raw["edges"], masks, used, directed,
                               heterophilous_metric(name))
    finally:
        if tmp is not None:
            tmp.cleanup()


def _check_geom_gcn_name(name: object) -> str:
    valid = ", ".join((*GEOM_GCN_NAMES, *GEOM_GCN_ALIASES))
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {valid}; got {type(name).__name__} {name!r}.")
    key = GEOM_GCN_ALIASES.get(name.lower(), name.lower())
    if key in ("chameleon", "squirrel"):
        raise ValueError(f"Geom-GCN's {key} feature file is not in the data folder; use "
                         f"load_heterophilous({key!r}, split=k), whose edges and masks equal Geom-GCN's.")
    if key in ("cora", "citeseer", "pubmed"):
        raise ValueError(f"load_geom_gcn does not read {key}; use load_planetoid({key!r}).")
    if key not in GEOM_GCN_FEATURES:
        raise ValueError(f"unknown Geom-GCN dataset {name!r}; valid names: {valid}.")
    return key


def _read_features(path: Path, num_features: int, sparse: bool) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels by node id from ``out1_node_feature_label.txt`` (dense 0/1 or sparse indices)."""
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    x = np.zeros((len(lines), num_features), dtype=np.float32)
    y = np.zeros(len(lines), dtype=np.int64)
    for line in lines:
        node, features, label = line.split("\t")
        i = int(node)
        values = np.array(features.split(","), dtype=np.int64)
        if sparse:
            x[i, values] = 1.0
        else:
            x[i] = values
        y[i] = int(label)
    return x, y


def load_geom_gcn(name: str, split: int, *, root: PathArg = None) -> Data:
    """A Geom-GCN (Pei et al., ICLR 2020) WebKB or Actor graph from the text files, with split ``split``.

    The same ``Data`` as ``load_heterophilous`` (``"film"`` / ``"actor"`` gives Actor): the edge list is
    symmetrised with self-loops and duplicates dropped, and the masks are those of
    ``splits/<name>_split_0.6_0.2_<split>.npz`` (60/20/20). Read only from a data directory (``root=`` or
    ``$LDS_DATA_DIR``, holding ``geom-gcn/new_data/`` and ``geom-gcn/splits/``); nothing is downloaded.

    >>> data = load_geom_gcn("texas", split=0)  # doctest: +SKIP
    >>> data.num_nodes, data.edge_index.size(1) // 2, data.x.size(1)  # doctest: +SKIP
    (183, 279, 1703)
    """
    name = _check_geom_gcn_name(name)
    split = check_split_index(split)
    base = data_root(root)
    if base is None:
        raise FileNotFoundError(
            f"no Geom-GCN data: {ENV_VAR} is unset and root= was not given. Set {ENV_VAR} (or root=) to a folder "
            f"holding geom-gcn/new_data/{name}/ and geom-gcn/splits/ (from github.com/graphdml-uiuc-jlu/geom-gcn), "
            f"or use load_heterophilous({'actor' if name == 'film' else name!r}, split={split}), which downloads."
        )
    folder = base / "geom-gcn" if (base / "geom-gcn").is_dir() else base
    relative = (f"new_data/{name}/out1_graph_edges.txt", f"new_data/{name}/out1_node_feature_label.txt",
                f"splits/{name}_split_0.6_0.2_{split}.npz")
    missing = [f for f in relative if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{name}: missing data file(s) {', '.join(missing)}: expected under {folder} (from root= or "
            f"${ENV_VAR}). Copy them from github.com/graphdml-uiuc-jlu/geom-gcn, or point root=/{ENV_VAR} at a "
            "folder holding geom-gcn/new_data/ and geom-gcn/splits/."
        )
    for f in relative:
        size, digest = GEOM_GCN_FILES.get(f, (None, None))
        verify(folder / f, digest, size, f"Fix the file in {folder} or point root=/{ENV_VAR} elsewhere.")
    x, labels = _read_features(folder / relative[1], GEOM_GCN_FEATURES[name], sparse=name == "film")
    edges = np.loadtxt(folder / relative[0], skiprows=1, dtype=np.int64, ndmin=2)
    with np.load(folder / relative[2], allow_pickle=False) as raw:
        masks = tuple(raw[key].astype(bool) for key in ("train_mask", "val_mask", "test_mask"))
    used = np.ones(labels.size, dtype=bool)
    return _graph_data(x, labels, edges, masks, used, False, "accuracy")
