"""``lds.plot``: the degree distribution and θ's histogram by class, and the numbers behind them."""

import sys

import numpy as np
import pytest
import torch

from lds import LDS
from lds.plot import edge_probability_groups, expected_degrees, plot_edge_probabilities, plot_learned_graph

from .synthetic import planted_partition


@pytest.fixture(scope="module")
def fitted():
    data = planted_partition(per_class=15, seed=0)
    return LDS(max_outer_iters=1, max_inner_steps=10, num_samples=2, init_prob=0.05, verbose=False).fit(data), data


def dense_theta(model):
    edge_index, probs = model.edge_probs()
    dense = torch.zeros(model.num_nodes_, model.num_nodes_, dtype=torch.float64)
    dense[edge_index[0], edge_index[1]] = probs.double()
    return dense


def test_expected_degrees_are_row_sums_of_theta(fitted):
    model, _ = fitted
    torch.testing.assert_close(expected_degrees(model), dense_theta(model).sum(1))


def test_groups_split_the_pairs_by_class(fitted):
    model, data = fitted
    theta = dense_theta(model)
    iu = torch.triu_indices(data.num_nodes, data.num_nodes, 1)
    values = theta[iu[0], iu[1]]
    same = data.y[iu[0]] == data.y[iu[1]]
    groups = edge_probability_groups(model, data.y, min_prob=0.1)
    assert set(groups) == {"same class", "different class"}
    assert torch.equal(groups["same class"].double().sort().values, values[same & (values > 0.1)].sort().values)
    assert torch.equal(groups["different class"].double().sort().values, values[~same & (values > 0.1)].sort().values)
    known = data.train_mask | data.val_mask
    partial = edge_probability_groups(model, data.y, known=known)
    assert sum(v.numel() for v in partial.values()) == int((values > 0).sum())
    both = known[iu[0]] & known[iu[1]]
    assert partial["same class"].numel() == int((both & same & (values > 0)).sum())
    with pytest.raises(ValueError, match="labels must be"):
        edge_probability_groups(model, data.y[:-1])
    with pytest.raises(ValueError, match="known must be"):
        edge_probability_groups(model, data.y, known=known.long())


def test_plots_draw_every_pair(fitted, tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    model, data = fitted
    fig = plot_learned_graph(model, data.y)
    assert len(fig.axes) == 2
    degree_ax, theta_ax = fig.axes
    assert sum(p.get_height() for p in degree_ax.patches) == data.num_nodes
    groups = edge_probability_groups(model, data.y)
    assert sum(p.get_height() for p in theta_ax.patches) == sum(v.numel() for v in groups.values())
    fig.savefig(tmp_path / "graph.png")
    assert (tmp_path / "graph.png").stat().st_size > 0
    ax = plot_edge_probabilities(model)  # no labels: one histogram of every pair
    assert sum(p.get_height() for p in ax.patches) == int((dense_theta(model) > 0).sum()) // 2
    matplotlib.pyplot.close("all")


def test_missing_matplotlib_is_a_clear_import_error(fitted, monkeypatch):
    model, data = fitted
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"lds-bilevel\[plot\]"):
        plot_learned_graph(model, np.asarray(data.y))
