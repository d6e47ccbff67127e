"""Seeded synthetic graphs for scale and robustness experiments: a planted partition (stochastic block model)
with class-dependent Gaussian features and a given graph holding a chosen share of noise edges."""

from __future__ import annotations

import math
import numbers

import torch
from torch_geometric.data import Data

from ._paths import check_seed
from .graphs import both_directions
from .planetoid import random_split


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}.")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def _check_real(value: object, name: str, low: float, high: float | None = None) -> float:
    interval = f"[{low:g}, {'inf)' if high is None else f'{high:g}]'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise TypeError(f"{name} must be a finite number in {interval}, got {value!r}.")
    v = float(value)
    if v < low or (high is not None and v > high):
        raise ValueError(f"{name} must be in {interval}, got {value!r}.")
    return v


def _sample_pairs(count: int, draw: _PairDraw, generator: torch.Generator, num_nodes: int) -> torch.Tensor:
    """``count`` distinct unordered pairs ``(i < j)`` from ``draw`` (self-loops and repeats rejected), sorted, as
    ``(2, count)``: uniform among the pairs ``draw`` can produce."""
    keys = torch.empty(0, dtype=torch.long)
    while keys.numel() < count:
        need = count - keys.numel()
        a, b = draw(int(need * 1.2) + 16, generator)
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        new = (lo * num_nodes + hi)[lo != hi]
        # keep the first occurrence of every new key (in draw order), drop keys already taken or excluded
        uniq, inverse = torch.unique(new, return_inverse=True)
        first = torch.full((uniq.numel(),), new.numel(), dtype=torch.long).scatter_reduce_(
            0, inverse, torch.arange(new.numel()), reduce="amin")
        new = new[first.sort().values]
        if keys.numel():
            taken = keys.sort().values
            pos = torch.searchsorted(taken, new).clamp_max(taken.numel() - 1)
            new = new[taken[pos] != new]
        keys = torch.cat([keys, new[:need]])
    keys = keys.sort().values
    return torch.stack([keys // num_nodes, keys % num_nodes])


class _PairDraw:
    """Draws candidate pairs ``(a, b)``: both in one class (``same=True``) or uniformly at random, with the pairs
    of one class rejected afterwards (``same=False``)."""

    def __init__(self, y: torch.Tensor, num_classes: int, same: bool) -> None:
        self.y, self.same = y, same
        self.by_class = torch.argsort(y, stable=True)
        sizes = torch.bincount(y, minlength=num_classes)
        self.starts = torch.cumsum(sizes, 0) - sizes
        self.sizes = sizes
        weights = (sizes * (sizes - 1)).double()  # pairs per class ∝ n_c (n_c - 1)
        self.class_weights = weights / weights.sum()

    def __call__(self, m: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.y.numel()
        if self.same:
            c = torch.multinomial(self.class_weights, m, replacement=True, generator=g)
            size = self.sizes[c]
            a = self.by_class[self.starts[c] + (torch.rand(m, generator=g, dtype=torch.float64) * size).long()]
            b = self.by_class[self.starts[c] + (torch.rand(m, generator=g, dtype=torch.float64) * size).long()]
            return a, b
        a = torch.randint(n, (m,), generator=g)
        b = torch.randint(n, (m,), generator=g)
        other = self.y[a] != self.y[b]
        return a[other], b[other]


def planted_partition(
    num_nodes: int,
    num_classes: int = 10,
    num_features: int = 32,
    avg_degree: float = 6.0,
    noise: float = 0.5,
    class_sep: float = 0.4,
    num_train_per_class: int = 20,
    num_val: int = 500,
    num_test: int | None = None,
    seed: int = 0,
) -> Data:
    """A seeded planted partition (stochastic block model) with class-dependent Gaussian features.

    - Labels: ``num_classes`` balanced classes (sizes differ by at most one), in random order.
    - Features: ``x_i = μ_{y_i} + ε_i`` with ``μ_c ~ N(0, class_sep² I)`` and ``ε_i ~ N(0, I)`` in
      ``num_features`` dimensions (smaller ``class_sep``: features alone tell the classes apart less well).
    - Given graph: exactly ``E = round(avg_degree · N / 2)`` distinct undirected pairs (no self-loops), of which
      exactly ``round(noise · E)`` join two nodes of different classes (noise edges, drawn uniformly among such
      pairs) and the others two nodes of one class (drawn uniformly among such pairs). Its edge homophily is
      therefore ``1 - noise`` exactly. ``edge_index`` holds both directions; ``noise_edge_index`` the noise
      pairs (both directions) for analysis.
    - Split: ``num_train_per_class`` training nodes per class, then ``num_val`` validation nodes and
      ``num_test`` test nodes (default: all others) at random (:func:`~lds.datasets.random_split`, Planetoid's
      random-split convention, seeded with ``seed``).

    The same arguments give the same graph, bit for bit.

    >>> g = planted_partition(200, num_classes=4, avg_degree=5, noise=0.4, num_val=40, seed=0)
    >>> g.edge_index.size(1) // 2, g.noise_edge_index.size(1) // 2
    (500, 200)
    """
    n = _check_int(num_nodes, "num_nodes", 2)
    num_classes = _check_int(num_classes, "num_classes", 2)
    num_features = _check_int(num_features, "num_features", 1)
    avg_degree = _check_real(avg_degree, "avg_degree", 0.0)
    noise = _check_real(noise, "noise", 0.0, 1.0)
    class_sep = _check_real(class_sep, "class_sep", 0.0)
    per_class = _check_int(num_train_per_class, "num_train_per_class", 1)
    num_val = _check_int(num_val, "num_val", 0)
    seed = check_seed(seed)
    if n < 2 * num_classes:
        raise ValueError(f"num_nodes={n} must be at least 2 · num_classes = {2 * num_classes}: every class needs two "
                         "nodes for a within-class edge.")
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    sizes = torch.bincount(y, minlength=num_classes)
    num_edges = int(round(avg_degree * n / 2))
    num_noise = int(round(noise * num_edges))
    num_true = num_edges - num_noise
    same_capacity = int((sizes * (sizes - 1) // 2).sum())
    other_capacity = n * (n - 1) // 2 - same_capacity
    if num_true > same_capacity // 2 or num_noise > other_capacity // 2:
        raise ValueError(f"avg_degree={avg_degree:g} asks for more than half of all possible within-class or "
                         f"between-class pairs of {n} nodes; lower avg_degree (e.g. to {n // (4 * num_classes)}).")
    if num_classes * per_class + num_val > n:
        raise ValueError(f"the split asks for {num_classes * per_class} training and {num_val} validation nodes, more "
                         f"than the {n} nodes; lower num_train_per_class or num_val.")
    num_test = n - num_classes * per_class - num_val if num_test is None else _check_int(num_test, "num_test", 0)
    if per_class > int(sizes.min()) or num_classes * per_class + num_val + num_test > n:
        raise ValueError(f"the split asks for {num_classes * per_class} training, {num_val} validation and {num_test} "
                         f"test nodes, more than the {n} nodes (or a class has fewer than {per_class} nodes); lower "
                         "them.")
    means = class_sep * torch.randn(num_classes, num_features, generator=g)
    x = means[y] + torch.randn(n, num_features, generator=g)
    true_pairs = _sample_pairs(num_true, _PairDraw(y, num_classes, same=True), g, n)
    noise_pairs = _sample_pairs(num_noise, _PairDraw(y, num_classes, same=False), g, n)
    pairs = torch.cat([true_pairs, noise_pairs], dim=1)
    order = torch.argsort(pairs[0] * n + pairs[1])
    train, val, test = random_split(y, num_classes, seed, per_class, num_val, num_test)
    return Data(x=x, y=y, edge_index=both_directions(pairs[:, order]), noise_edge_index=both_directions(noise_pairs),
                train_mask=train, val_mask=val, test_mask=test, num_nodes=n)
