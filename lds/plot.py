"""Pictures of the learned graph of a fitted :class:`~lds.LDS`: its degree distribution and θ's histogram split
by same / other class (LDS paper, Figures 9.3-9.4). Needs matplotlib: ``pip install "lds-bilevel[plot]"``.

The numbers behind the pictures come without matplotlib: :func:`expected_degrees` and :func:`edge_probability_groups`.

Example:
    >>> from lds import LDS
    >>> from lds.datasets import load_uci
    >>> from lds.plot import edge_probability_groups, expected_degrees
    >>> data = load_uci("wine", seed=0)
    >>> model = LDS(max_outer_iters=1, max_inner_steps=5, num_samples=1, verbose=False).fit(data)
    >>> expected_degrees(model).shape
    torch.Size([178])
    >>> sorted(edge_probability_groups(model, data.y))
    ['different class', 'same class']
    >>> fig = plot_learned_graph(model, data.y)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .export import learned_pairs

__all__ = ["edge_probability_groups", "expected_degrees", "plot_degree_distribution", "plot_edge_probabilities",
           "plot_learned_graph"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError('plotting needs matplotlib: pip install "lds-bilevel[plot]" (or pip install matplotlib).'
                          ) from exc
    return plt


def expected_degrees(model: Any) -> Tensor:
    """``E[deg(i)] = Σ_j θ_ij`` of every node ``(N,)`` (float64) under the learned distribution."""
    pairs, probs, n = learned_pairs(model)
    probs = probs.double()
    return torch.zeros(n, dtype=torch.float64).index_add_(0, pairs[0], probs).index_add_(0, pairs[1], probs)


def edge_probability_groups(model: Any, labels: Any, known: Any = None, min_prob: float = 0.0) -> dict[str, Tensor]:
    """θ of the pairs with ``θ > min_prob``, grouped: ``"same class"`` and ``"different class"`` where both
    labels are known, ``"unknown label"`` where one is not (only when there are such pairs).

    ``labels``: ``(N,)`` integers, negative for unknown; ``known``: an optional boolean ``(N,)`` mask of the
    nodes whose label may be used (e.g. ``train_mask | val_mask``); default every non-negative label.
    """
    pairs, probs, n = learned_pairs(model, min_prob)
    labels = torch.as_tensor(labels).cpu()
    if labels.shape != (n,) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be {n} integer class labels (negative = unknown), got "
                         f"{labels.dtype} of shape {tuple(labels.shape)}.")
    has_label = labels >= 0
    if known is not None:
        known = torch.as_tensor(known).cpu()
        if known.shape != (n,) or known.dtype != torch.bool:
            raise ValueError(f"known must be a boolean mask of shape ({n},), got {known.dtype} of shape "
                             f"{tuple(known.shape)}.")
        has_label = has_label & known
    both = has_label[pairs[0]] & has_label[pairs[1]]
    same = labels[pairs[0]] == labels[pairs[1]]
    groups = {"same class": probs[both & same], "different class": probs[both & ~same]}
    if not bool(both.all()):
        groups["unknown label"] = probs[~both]
    return groups


def plot_degree_distribution(model: Any, ax: Any = None, bins: int = 30) -> Any:
    """Histogram of the nodes' expected degrees ``Σ_j θ_ij`` on ``ax`` (a new figure when None); returns ``ax``."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    degrees = expected_degrees(model).numpy()
    ax.hist(degrees, bins=bins, color="tab:blue", alpha=0.8)
    ax.set(xlabel="expected degree Σ_j θ_ij", ylabel="nodes",
           title=f"degree distribution (mean {degrees.mean():.1f})")
    return ax


def plot_edge_probabilities(model: Any, labels: Any = None, ax: Any = None, known: Any = None, min_prob: float = 0.0,
                            bins: int = 20) -> Any:
    """Histogram of the learned θ (pairs with ``θ > min_prob``, log scale), split by same / other class where the
    labels are known (see :func:`edge_probability_groups`); one histogram without ``labels``. Returns ``ax``."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    if labels is None:
        groups = {"all pairs": learned_pairs(model, min_prob)[1]}
    else:
        groups = edge_probability_groups(model, labels, known, min_prob)
    edges = [min_prob + (1 - min_prob) * i / bins for i in range(bins + 1)]
    for name, values in groups.items():
        ax.hist(values.double().numpy(), bins=edges, alpha=0.6, label=f"{name} ({values.numel()} pairs)")
    ax.set(xlabel="learned θ", ylabel="pairs", yscale="log", title=f"learned edge probabilities (θ > {min_prob:g})")
    ax.legend(fontsize=7)
    return ax


def plot_learned_graph(model: Any, labels: Any = None, known: Any = None, min_prob: float = 0.0) -> Any:
    """A figure with both panels: the degree distribution and θ's histogram by class. Returns the figure
    (``fig.savefig(path)`` to write it)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_degree_distribution(model, ax=left)
    plot_edge_probabilities(model, labels, ax=right, known=known, min_prob=min_prob)
    fig.tight_layout()
    return fig
