"""Label propagation (Zhu, Ghahramani & Lafferty 2003): closed forms, the fixed point, and bad input; the MLP baseline
(GCNBaseline(graph="none")): edges ignored, a 2-layer MLP in closed form."""

import pytest
import torch
from lds.datasets import knn_graph

from lds import label_propagation


def test_harmonic_function_on_a_path_interpolates_linearly():
    # 1-NN on these points (gaps 1, 1.1, 1.2, 1.3) is the path 0-1-2-3-4; labels at the two ends
    x = torch.tensor([[0.0], [1.0], [2.1], [3.3], [4.6]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1])
    mask = torch.tensor([True, False, False, False, True])
    F = label_propagation(x, y, mask, k=1, metric="euclidean", normalize_features=False)
    torch.testing.assert_close(F[:, 1], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    torch.testing.assert_close(F.sum(1), torch.ones(5, dtype=torch.float64))


def test_solution_is_the_clamped_propagation_fixed_point():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=gen)
    mask = torch.zeros(60, dtype=torch.bool)
    mask[torch.randperm(60, generator=gen)[:9]] = True
    F = label_propagation(x, y, mask, k=6, metric="euclidean")
    ei = knn_graph(x, 6, metric="euclidean")
    W = torch.zeros(60, 60, dtype=torch.float64)
    W[ei[0], ei[1]] = 1.0
    propagated = (W @ F) / W.sum(1, keepdim=True)  # F <- D⁻¹ W F
    torch.testing.assert_close(propagated[~mask], F[~mask])
    torch.testing.assert_close(F[mask], torch.nn.functional.one_hot(y[mask], 3).double())
    torch.testing.assert_close(F.sum(1), torch.ones(60, dtype=torch.float64))


def test_component_without_labels_gets_the_training_frequencies():
    # two far-apart clusters of 4; only the first holds labelled nodes (two of class 0, one of class 2)
    x = torch.tensor([[0.0], [0.1], [0.2], [0.3], [100.0], [100.1], [100.2], [100.3]])
    y = torch.tensor([0, 0, 2, 1, 1, 1, 1, 1])
    mask = torch.tensor([True, True, True, False, False, False, False, False])
    F = label_propagation(x, y, mask, k=2, metric="euclidean", normalize_features=False)
    torch.testing.assert_close(F[4:], torch.tensor([[2 / 3, 0.0, 1 / 3]] * 4, dtype=torch.float64))


def test_separated_clusters_are_labelled_by_their_seed_node():
    gen = torch.Generator().manual_seed(1)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    y = torch.arange(3).repeat_interleave(20)
    x = centres[y] + 0.5 * torch.randn(60, 2, generator=gen)
    mask = torch.zeros(60, dtype=torch.bool)
    mask[[0, 20, 40]] = True
    pred = label_propagation(x, y, mask, k=5, metric="euclidean").argmax(1)
    assert torch.equal(pred, y)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"train_mask": torch.zeros(5, dtype=torch.bool)}, "no node"),
    ({"train_mask": torch.ones(4, dtype=torch.bool)}, "train_mask must be a boolean tensor of shape"),
    ({"y": torch.zeros(5)}, "integer label tensor"),
    ({"x": torch.zeros(5)}, "2-D feature tensor"),
    ({"k": 5}, "smaller than the number of nodes"),
])
def test_bad_input_is_explained(kwargs, match):
    args = {"x": torch.arange(5.0).unsqueeze(1), "y": torch.tensor([0, 1, 0, 1, 0]),
            "train_mask": torch.tensor([True, True, False, False, False]), "k": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        label_propagation(args.pop("x"), args.pop("y"), args.pop("train_mask"), **args)


# ----------------------------------------------------------------------------- GCNBaseline(graph="none"): the MLP


def _tiny_graph_data(seed: int = 0):
    from torch_geometric.data import Data

    gen = torch.Generator().manual_seed(seed)
    n = 12
    y = torch.arange(n) % 3
    x = torch.randn(n, 4, generator=gen, dtype=torch.float64) + y.unsqueeze(1).double()
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 5, 6], [1, 0, 2, 1, 4, 3, 6, 5]])
    train = torch.zeros(n, dtype=torch.bool)
    train[:6] = True
    val = torch.zeros(n, dtype=torch.bool)
    val[6:10] = True
    test = torch.zeros(n, dtype=torch.bool)
    test[10:] = True
    return Data(x=x, y=y, edge_index=edge_index, train_mask=train, val_mask=val, test_mask=test)


def test_graph_none_ignores_the_given_edges():
    from lds import GCNBaseline

    data = _tiny_graph_data()
    settings = {"graph": "none", "max_steps": 15, "min_steps": 0, "seed": 3, "dtype": "float64"}
    model = GCNBaseline(**settings).fit(data)
    probs = model.predict_proba(data)
    rewired = data.clone()
    rewired.edge_index = torch.tensor([[0, 5, 2, 9, 7, 11], [5, 0, 9, 2, 11, 7]])
    no_graph = data.clone()
    no_graph.edge_index = None
    for other in (rewired, no_graph):
        torch.testing.assert_close(model.predict_proba(other), probs, rtol=0, atol=0)  # the same fitted weights
        refit = GCNBaseline(**settings).fit(other)  # and the same training: edges never enter it
        for a, b in zip(refit.params_, model.params_):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert model.graph_[1].shape == (2, 0)


def test_graph_none_is_a_two_layer_mlp():
    from lds import GCNBaseline
    from lds.gcn import preprocess_features

    data = _tiny_graph_data(1)
    model = GCNBaseline(graph="none", max_steps=5, min_steps=0, dtype="float64", normalize_features=False).fit(data)
    W1, W2 = model.params_
    expected = torch.softmax(torch.relu(data.x @ W1) @ W2, dim=1)  # Â = I: no neighbour enters a row
    torch.testing.assert_close(model.predict_proba(data), expected, rtol=1e-12, atol=1e-12)
    # with non-negative features the default "auto" normalisation row-normalises them first, as for the GCN
    data.x = data.x.abs()
    auto = GCNBaseline(graph="none", max_steps=5, min_steps=0, dtype="float64").fit(data)
    x = preprocess_features(data.x, "auto")
    torch.testing.assert_close(x.sum(1), torch.ones(12, dtype=torch.float64))
    expected = torch.softmax(torch.relu(x @ auto.params_[0]) @ auto.params_[1], dim=1)
    torch.testing.assert_close(auto.predict_proba(data), expected, rtol=1e-12, atol=1e-12)


def test_graph_none_is_listed_and_unknown_graphs_are_explained():
    from lds import GCNBaseline
    from lds.baselines import GRAPHS

    assert "none" in GRAPHS
    with pytest.raises(ValueError, match="graph must be one of given, random, knn, erdos_renyi, dense, rbf, none"):
        GCNBaseline(graph="mlp").fit(_tiny_graph_data())
