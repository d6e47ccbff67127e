"""The refit diagnosis (issue 26): how θ* spreads over the given and the other pairs."""

import os
import sys
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))

import refit_graphs as rg  # noqa: E402


def test_theta_stats_splits_given_and_other_pairs():
    # given edges 0-1 and 2-3 (both directions); candidates (i < j) 0-1, 0-2, 1-3, 2-3
    data = SimpleNamespace(num_nodes=4, edge_index=torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]]))
    pairs = torch.tensor([[0, 0, 1, 2], [1, 2, 3, 3]])
    theta = torch.tensor([1.0, 0.02, 0.3, 0.6])
    out = rg.theta_stats(data, pairs, theta)
    assert out["pairs_above"] == {"0.0": 4, "0.01": 4, "0.05": 3, "0.1": 3, "0.5": 2, "0.99": 1}
    assert out["given_pairs_above_0.99"] == 1
    assert out["off_given_max"] == pytest.approx(0.3)
    assert out["off_given_expected"] == pytest.approx(0.32)
