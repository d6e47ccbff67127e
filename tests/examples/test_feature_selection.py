"""The feature-selection demo (issue 14): the learned mask keeps the informative features."""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))

import feature_selection as fs  # noqa: E402


def _synthetic(n=300, d=20, k=5, seed=0):
    """Only the first k features carry the label (3 classes); the rest are noise."""
    g = torch.Generator().manual_seed(seed)

    def draw(m):
        X = torch.randn(m, d, generator=g)
        W = torch.zeros(d, 3)
        W[:k] = torch.tensor([[2.0, -1.0, -1.0], [-1.0, 2.0, -1.0], [-1.0, -1.0, 2.0], [1.5, 0.0, -1.5],
                              [0.0, 1.5, -1.5]])[:k]
        return X, (X @ W).argmax(1)

    X, y = draw(n)
    Xv, yv = draw(n)
    return {"X": X, "y": y, "Xv": Xv, "yv": yv, "num_classes": 3}


@pytest.mark.parametrize("estimator", ["st", "gumbel_soft", "gumbel_hard"])
@pytest.mark.parametrize("seed", [0, 1])
def test_learned_mask_keeps_the_informative_features(estimator, seed):
    s = _synthetic(seed=seed)
    k = 5
    fit = fs.learn_mask(s, estimator, alpha=1.0, T=30, tau=10, outer_iters=15, outer_lr=0.05, seed=seed)
    theta = fit["theta"]
    top = set(torch.topk(theta, k).indices.tolist())
    recall = len(top & set(range(k))) / k  # at the matching sparsity: the k most probable features
    assert recall >= 0.8, (estimator, theta)
    kept = theta > 0.5
    assert int(kept[k:].sum()) <= 1  # the sparsity penalty removes the noise features
    assert bool(((theta >= fs.BOUND) & (theta <= 1 - fs.BOUND)).all())  # the projection


def test_score_function_ranks_informative_features_higher():
    """The score function needs only f_T; with the same budget its estimate is noisier, but the
    informative features still end with clearly larger θ on average."""
    s = _synthetic()
    theta = fs.learn_mask(s, "sf", alpha=1.0, T=30, tau=10, outer_iters=15, outer_lr=0.05, seed=0)["theta"]
    assert float(theta[:5].mean()) > float(theta[5:].mean()) + 0.2
