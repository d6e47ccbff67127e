"""Type aliases shared across :mod:`lds` (in the spirit of ``torch_geometric/typing.py``).

Annotations only: nothing here is used at run time.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["HParams", "NetParams"]

NetParams = tuple[Tensor, ...]
"""Weights of the node classifier: the built-in GCN's ``(W1, W2)`` (:data:`lds.gcn.Params`) or a
:class:`~lds.backbones.Backbone`'s tensors, in ``FunctionalModule`` order."""

HParams = tuple[Tensor, ...]
"""LDS hyperparameters ``(θ, λ_lr)``: edge probabilities and the inner learning-rate logit."""
