"""LDS: Learning Discrete Structures for Graph Neural Networks (Franceschi et al., ICML 2019).

Example:
    >>> from lds import LDS                                          # doctest: +SKIP
    >>> from lds.datasets import load_planetoid, delete_edges        # doctest: +SKIP
    >>> data = delete_edges(load_planetoid("cora"), keep=0.5, seed=0)  # doctest: +SKIP
    >>> model = LDS(hypergrad_every=5, outer_lr=1.0, seed=0).fit(data)  # doctest: +SKIP
    >>> model.score(data, data.test_mask)                            # doctest: +SKIP
"""

from .baselines import GCNBaseline, label_propagation
from .edges import EdgeDistribution
from .model import LDS
from .sklearn import KNNLDSClassifier

__all__ = ["LDS", "EdgeDistribution", "GCNBaseline", "KNNLDSClassifier", "label_propagation"]
__version__ = "0.1.0"
