"""Offline-first loaders for the LDS experiments, installed as ``lds.datasets``.

Data comes from ``root=``, else ``$LDS_DATA_DIR`` (layout ``planetoid/ind.<name>.*``,
``20newsgroups/20news-bydate_py3.pkz``), else a per-user cache (``~/.cache/lds``) filled by one
download. The data directory is never written.
"""

from ._paths import ENV_VAR, cache_root, data_root
from .graphs import delete_edges, knn_graph
from .planetoid import load_planetoid, random_split
from .uci import load_uci, stratified_split

__all__ = [
    "ENV_VAR",
    "cache_root",
    "data_root",
    "delete_edges",
    "knn_graph",
    "load_planetoid",
    "load_uci",
    "random_split",
    "stratified_split",
]
