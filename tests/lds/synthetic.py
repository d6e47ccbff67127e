"""A small planted-partition graph with informative features, for LDS tests."""

from __future__ import annotations

import torch
from torch_geometric.data import Data


def planted_partition(
    num_classes: int = 3,
    per_class: int = 30,
    p_in: float = 0.3,
    p_out: float = 0.02,
    keep_intra: float = 0.1,
    feature_noise: float = 1.0,
    num_features: int = 8,
    num_train: int = 3,
    num_val: int = 6,
    seed: int = 0,
) -> Data:
    """Planted partition with most intra-class edges removed; features = noisy class means."""
    g = torch.Generator().manual_seed(seed)
    n = num_classes * per_class
    y = torch.arange(num_classes).repeat_interleave(per_class)
    means = torch.randn(num_classes, num_features, generator=g)
    x = means[y] + feature_noise * torch.randn(n, num_features, generator=g)
    iu = torch.triu_indices(n, n, offset=1)
    same = y[iu[0]] == y[iu[1]]
    r = torch.rand(iu.size(1), generator=g)
    keep = torch.where(same, r < p_in * keep_intra, r < p_out)
    pairs = iu[:, keep]
    edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    perm = torch.randperm(n, generator=g)
    train = torch.zeros(n, dtype=torch.bool)
    val = torch.zeros(n, dtype=torch.bool)
    for c in range(num_classes):
        idx = perm[y[perm] == c]
        train[idx[:num_train]] = True
        val[idx[num_train : num_train + num_val]] = True
    test = ~(train | val)
    return Data(x=x, y=y, edge_index=edge_index, train_mask=train, val_mask=val, test_mask=test)
