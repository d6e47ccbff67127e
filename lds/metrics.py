"""Evaluation metrics in torch: accuracy, and exact two-class ROC-AUC (Platonov et al., ICLR 2023, report it
for minesweeper and tolokers).

``roc_auc`` is the Mann-Whitney U statistic divided by ``n_pos · n_neg``: the probability that a random
positive scores above a random negative, ties counting one half. That equals the area under the ROC curve
with ties handled as scikit-learn's ``roc_auc_score`` does. ROC-AUC is defined here for two classes only;
more classes (macro one-vs-rest) are refused with a ``ValueError``.
"""

from __future__ import annotations

import torch
from torch import Tensor

METRICS = ("accuracy", "roc_auc")


def check_metric(metric: object, num_classes: int | None = None) -> str:
    """``metric`` if it is one of ``METRICS`` and fits a task of ``num_classes`` classes (when given).

    >>> check_metric("roc_auc", num_classes=2)
    'roc_auc'
    """
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a str, one of {', '.join(METRICS)}; got {type(metric).__name__} "
                        f"{metric!r}.")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}.")
    if metric == "roc_auc" and num_classes is not None and num_classes != 2:
        raise ValueError(f"metric='roc_auc' needs a two-class task (the score is the probability of class 1), "
                         f"got {num_classes} classes; use metric='accuracy' (multi-class ROC-AUC is not supported).")
    return metric


def _labels(y: object, argument: str) -> Tensor:
    if not isinstance(y, Tensor):
        raise TypeError(f"{argument} must be a torch.Tensor, got {type(y).__name__}.")
    if y.dim() != 1:
        raise ValueError(f"{argument} must be 1-D, got shape {tuple(y.shape)}.")
    if y.is_floating_point() or y.is_complex():
        raise TypeError(f"{argument} must hold integer class labels, got {y.dtype}; convert with .long().")
    if y.numel() == 0:
        raise ValueError(f"{argument} is empty: a metric needs at least one node.")
    return y.long()


def accuracy(y_true: Tensor, y_pred: Tensor) -> float:
    """Share of ``y_pred`` equal to ``y_true`` (two 1-D integer tensors of the same length), in [0, 1].

    >>> accuracy(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
    0.75
    """
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {y_true.numel()} and {y_pred.numel()}.")
    return float((y_true == y_pred.to(y_true.device)).double().mean())


def roc_auc(y_true: Tensor, scores: Tensor) -> float:
    """Exact ROC-AUC of ``scores`` (higher = more likely class 1) for labels ``y_true`` in {0, 1}.

    The Mann-Whitney U statistic over average ranks (tied scores share their mean rank), divided by
    ``n_pos · n_neg``; both classes must be present.

    >>> roc_auc(torch.tensor([0, 0, 1, 1]), torch.tensor([0.1, 0.4, 0.35, 0.8]))
    0.75
    >>> roc_auc(torch.tensor([0, 1]), torch.tensor([0.5, 0.5]))  # a tie counts one half
    0.5
    """
    y_true = _labels(y_true, "y_true")
    if not isinstance(scores, Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}.")
    if scores.shape != y_true.shape:
        raise ValueError(f"scores must have the shape of y_true {tuple(y_true.shape)}, got {tuple(scores.shape)}; "
                         "pass the probability of class 1 per node (e.g. probs[:, 1]).")
    if scores.is_complex():
        raise TypeError(f"scores must be real, got {scores.dtype}.")
    scores = scores.to(torch.float64)
    if not torch.isfinite(scores).all():
        raise ValueError(f"scores contains {int((~torch.isfinite(scores)).sum())} NaN or infinite values.")
    bad = (y_true != 0) & (y_true != 1)
    if bad.any():
        found = torch.unique(y_true[bad])[:5].tolist()
        raise ValueError(f"roc_auc needs labels 0 and 1 (two classes), found label(s) {found}; use accuracy for "
                         "more classes.")
    positive = (y_true == 1).to(scores.device)
    num_pos = int(positive.sum())
    num_neg = positive.numel() - num_pos
    if num_pos == 0 or num_neg == 0:
        only = 1 if num_pos else 0
        raise ValueError(f"roc_auc needs both classes, but all {positive.numel()} labels are {only}; evaluate on "
                         "nodes of both classes.")
    ordered, order = torch.sort(scores)
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).to(torch.float64)  # 1-based rank of each group's last member
    mean_rank = last - (counts.to(torch.float64) - 1) / 2
    rank_sum = mean_rank[group][positive[order]].sum()
    u = rank_sum - num_pos * (num_pos + 1) / 2
    return float(u / (num_pos * num_neg))


def evaluate(probs: Tensor, y: Tensor, mask: Tensor | None, metric: str) -> float:
    """``metric`` (``"accuracy"`` or ``"roc_auc"``) of class probabilities ``probs`` (N, C) on ``mask``.

    Accuracy compares the argmax with ``y``; ROC-AUC (C = 2 only) scores each node by ``probs[:, 1]``.
    ``mask`` is a boolean tensor of length N (``None``: every node).

    >>> probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]])
    >>> y = torch.tensor([0, 1, 1, 0])
    >>> evaluate(probs, y, None, "accuracy"), evaluate(probs, y, None, "roc_auc")
    (0.5, 0.5)
    """
    if not isinstance(probs, Tensor) or probs.dim() != 2:
        raise ValueError(f"probs must be a 2-D tensor of class probabilities (N, C), got "
                         f"{tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__}.")
    metric = check_metric(metric, probs.size(1))
    n = probs.size(0)
    y = _labels(y, "y")
    if y.numel() != n:
        raise ValueError(f"y must hold one label per row of probs ({n}), got {y.numel()}.")
    if mask is None:
        mask = torch.ones(n, dtype=torch.bool)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (n,):
        raise ValueError(f"mask must be a boolean tensor of length {n} (or None for every node), got "
                         f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__} "
                         f"{tuple(mask.shape) if isinstance(mask, Tensor) else ''}.")
    mask = mask.to(probs.device)
    if not mask.any():
        raise ValueError("mask selects no nodes: there is nothing to evaluate.")
    y = y.to(probs.device)[mask]
    if metric == "accuracy":
        return accuracy(y, probs[mask].argmax(dim=1))
    present = torch.unique(y)
    if present.numel() < 2:
        raise ValueError(f"metric='roc_auc' needs nodes of both classes, but the mask selects {y.numel()} nodes, "
                         f"all of class {int(present[0])}.")
    return roc_auc(y, probs[mask, 1])
