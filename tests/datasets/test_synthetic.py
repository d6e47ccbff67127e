"""planted_partition: seeded and exact (counts, noise share, split sizes), with clear errors on bad input."""

import pytest
import torch
from lds.datasets.synthetic import planted_partition


def undirected(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(min(i, j), max(i, j)) for i, j in zip(edge_index[0].tolist(), edge_index[1].tolist())}


@pytest.mark.parametrize(("n", "classes", "degree", "noise"), [(300, 3, 4.0, 0.5), (1000, 10, 6.0, 0.0),
                                                               (500, 4, 7.0, 1.0), (1001, 7, 3.3, 0.25)])
def test_counts_noise_share_and_split_are_exact(n: int, classes: int, degree: float, noise: float) -> None:
    g = planted_partition(n, num_classes=classes, num_features=5, avg_degree=degree, noise=noise,
                          num_train_per_class=3, num_val=20, seed=1)
    num_edges = round(degree * n / 2)
    num_noise = round(noise * num_edges)
    ei = g.edge_index
    pairs = undirected(ei)
    assert ei.size(1) == 2 * num_edges and len(pairs) == num_edges  # distinct pairs, both directions
    directed = set(zip(ei[0].tolist(), ei[1].tolist()))
    assert all((j, i) in directed for i, j in directed)
    assert bool((ei[0] != ei[1]).all())
    other = g.y[ei[0]] != g.y[ei[1]]
    assert int(other.sum()) == 2 * num_noise  # the noise edges are exactly the between-class ones
    assert undirected(g.noise_edge_index) == {p for p in pairs if g.y[p[0]] != g.y[p[1]]}
    sizes = torch.bincount(g.y, minlength=classes)
    assert int(sizes.max() - sizes.min()) <= 1 and g.x.shape == (n, 5)
    assert torch.equal(torch.bincount(g.y[g.train_mask], minlength=classes), torch.full((classes,), 3))
    assert int(g.val_mask.sum()) == 20 and int(g.test_mask.sum()) == n - 3 * classes - 20
    assert not bool((g.train_mask & g.val_mask).any() | (g.train_mask & g.test_mask).any()
                    | (g.val_mask & g.test_mask).any())


def test_same_seed_same_graph_other_seed_other_graph() -> None:
    a, b, c = (planted_partition(400, num_classes=4, seed=s, num_val=40) for s in (3, 3, 4))
    for key in ("x", "y", "edge_index", "noise_edge_index", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a.edge_index, c.edge_index) and not torch.equal(a.x, c.x)


def test_features_carry_the_class_and_class_sep_zero_carries_none() -> None:
    g = planted_partition(4000, num_classes=4, num_features=16, class_sep=2.0, num_val=40, seed=0)
    means = torch.stack([g.x[g.y == c].mean(0) for c in range(4)])
    nearest = torch.cdist(g.x, means).argmin(1)
    assert float((nearest == g.y).float().mean()) > 0.9
    flat = planted_partition(4000, num_classes=4, num_features=16, class_sep=0.0, num_val=40, seed=0)
    assert float(flat.x.mean(0).abs().max()) < 0.1 and abs(float(flat.x.std()) - 1.0) < 0.02


def test_pairs_are_uniform_within_a_class() -> None:
    # 2 classes of 4 nodes: 12 within-class pairs; 3 drawn per graph. Each must be drawn with probability 3/12.
    draws = 600
    counts = torch.zeros(12)
    for seed in range(draws):
        g = planted_partition(8, num_classes=2, num_features=1, avg_degree=0.75, noise=0.0, num_train_per_class=1,
                              num_val=0, seed=seed)
        within = [(i, j) for i in range(8) for j in range(i + 1, 8) if g.y[i] == g.y[j]]
        assert len(within) == 12
        for pair in undirected(g.edge_index):
            counts[within.index(pair)] += 1
    expected, se = draws * 3 / 12, (draws * 0.25 * 0.75) ** 0.5
    assert float(counts.sum()) == 3 * draws
    assert float((counts - expected).abs().max()) < 5 * se


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_nodes": 3, "num_classes": 2}, "at least 2 · num_classes"),
    ({"num_nodes": 100, "noise": 1.5}, r"noise must be in \[0, 1\]"),
    ({"num_nodes": 100, "avg_degree": -1}, "avg_degree must be in"),
    ({"num_nodes": 100, "num_classes": 2, "avg_degree": 60}, "lower avg_degree"),
    ({"num_nodes": 100, "num_val": 500}, "lower num_train_per_class or num_val"),
    ({"num_nodes": 100.0}, "num_nodes must be an int"),
    ({"num_nodes": 100, "seed": -1}, "seed"),
])
def test_bad_input_is_a_clear_error(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        planted_partition(**kwargs)
