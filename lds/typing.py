"""Type aliases shared across :mod:`lds` (in the spirit of ``torch_geometric/typing.py``).

Annotations only: nothing here is used at run time.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

__all__ = ["GraphData", "HParams", "NetParams"]


class GraphData(Protocol):
    """What the estimators read from a PyG ``Data``: node features, labels and boolean masks of length N.

    ``edge_index`` ``(2, E)`` and ``test_mask`` are optional (read with ``getattr``); every field is validated
    at run time by :func:`lds.model.validate_data`, which names what is wrong and how to fix it.
    """

    x: Tensor
    y: Tensor
    train_mask: Tensor
    val_mask: Tensor

NetParams = tuple[Tensor, ...]
"""Weights of the node classifier: the built-in GCN's ``(W1, W2)`` (:data:`lds.gcn.Params`) or a
:class:`~lds.backbones.Backbone`'s tensors, in ``FunctionalModule`` order."""

HParams = tuple[Tensor, ...]
"""LDS hyperparameters ``(θ, λ_lr)``: edge probabilities and the inner learning-rate logit."""
