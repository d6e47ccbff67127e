"""Label propagation (Zhu, Ghahramani & Lafferty 2003): closed forms, the fixed point, and bad input."""

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
