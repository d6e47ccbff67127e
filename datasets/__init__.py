"""Offline-first data for the LDS experiments, installed as ``lds.datasets`` (repository folder ``datasets/``).

Every loader returns a ``torch_geometric.data.Data`` with ``x``, ``y``, ``edge_index`` (empty when there
is no graph), boolean ``train_mask`` / ``val_mask`` / ``test_mask`` and ``num_classes``.

Heterophilous graphs: ``load_heterophilous(name, split=k)`` reads Platonov et al.'s ``.npz`` files (chameleon,
squirrel, actor, WebKB, minesweeper, tolokers) with their 10 fixed splits; ``heterophilous_metric(name)`` (and
``data.metric``) says whether a dataset is scored by accuracy or ROC-AUC. ``load_geom_gcn`` reads the same
WebKB / Actor graphs from the Geom-GCN text files.

Data comes from ``root=``, else ``$LDS_DATA_DIR`` (layout ``planetoid/ind.<name>.*``,
``20newsgroups/20news-bydate_py3.pkz``, ``heterophilous-graphs/<name>.npz``, ``geom-gcn/``), else a per-user
cache (``~/.cache/lds`` or ``cache_dir=``) filled by one download through PyG / scikit-learn (not for the
Geom-GCN text files). A data directory is only read, never written; processed data
(the 20 Newsgroups TF-IDF matrix) goes to the cache directory.

>>> from lds.datasets import load_planetoid, delete_edges
>>> cora = load_planetoid("cora")  # doctest: +SKIP
>>> half = delete_edges(cora, keep=0.5, seed=0)  # doctest: +SKIP
>>> from lds.datasets import load_heterophilous
>>> texas = load_heterophilous("texas", split=0)  # doctest: +SKIP
>>> texas.num_nodes, texas.metric  # doctest: +SKIP
(183, 'accuracy')
"""

from ._paths import ENV_VAR, cache_root, data_root
from .files import load_graph, load_graph_csv, load_graph_npz, split_labelled
from .graphs import delete_edges, knn_graph
from .heterophilous import heterophilous_metric, load_geom_gcn, load_heterophilous
from .omniglot import EpisodeSampler, OmniglotCharacters, load_omniglot, load_omniglot_runs
from .planetoid import load_planetoid, random_split
from .synthetic import planted_partition
from .uci import load_uci, stratified_split

__all__ = [
    "ENV_VAR",
    "EpisodeSampler",
    "OmniglotCharacters",
    "cache_root",
    "data_root",
    "delete_edges",
    "heterophilous_metric",
    "knn_graph",
    "load_geom_gcn",
    "load_heterophilous",
    "load_graph",
    "load_graph_csv",
    "load_graph_npz",
    "load_omniglot",
    "load_omniglot_runs",
    "load_planetoid",
    "load_uci",
    "planted_partition",
    "random_split",
    "split_labelled",
    "stratified_split",
]
