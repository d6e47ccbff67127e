"""Data hyper-cleaning: the learned weights find the corrupted labels; clear errors on bad input."""

import pytest
import torch

from bilevel_core.cleaning import HyperCleaner, detection_scores


def _noisy_blobs(n=90, n_val=60, d=4, flip=0.3, seed=0):
    """Three well-separated Gaussian classes; a fraction of the training labels moved to another class."""
    g = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.randn(3, d, generator=g, dtype=torch.float64)

    def draw(m):
        y = torch.randint(0, 3, (m,), generator=g)
        return centers[y] + torch.randn(m, d, generator=g, dtype=torch.float64), y

    X, y = draw(n)
    Xv, yv = draw(n_val)
    corrupted = torch.zeros(n, dtype=torch.bool)
    corrupted[torch.randperm(n, generator=g)[: int(flip * n)]] = True
    y_noisy = y.clone()
    y_noisy[corrupted] = (y[corrupted] + torch.randint(1, 3, (int(corrupted.sum()),), generator=g)) % 3
    return X, y_noisy, corrupted, Xv, yv


@pytest.mark.parametrize("truncate", [None, 10])
def test_hyper_cleaning_finds_most_corrupted_examples(truncate):
    X, y, corrupted, Xv, yv = _noisy_blobs()
    hc = HyperCleaner(T=40, truncate=truncate, inner_lr=0.3, outer_iters=60, dtype=torch.float64,
                      verbose=False).fit(X, y, Xv, yv)
    scores = hc.detection(corrupted)
    assert scores["recall"] >= 0.8 and scores["precision"] >= 0.7, scores
    assert float(hc.weights_[corrupted].mean()) < 0.3 < float(hc.weights_[~corrupted].mean())
    assert hc.history_[-1] < hc.history_[0]  # the validation loss went down
    assert hc.score(Xv, yv) >= 0.9


def test_detection_scores():
    flagged = torch.tensor([True, True, False, False, True])
    corrupted = torch.tensor([True, False, True, False, True])
    s = detection_scores(flagged, corrupted)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="one shape"):
        detection_scores(flagged, corrupted[:3])


def test_bad_input_is_a_clear_error():
    X, y, _, Xv, yv = _noisy_blobs(n=20, n_val=10)
    with pytest.raises(ValueError, match="truncate"):
        HyperCleaner(T=5, truncate=6).fit(X, y, Xv, yv)
    with pytest.raises(ValueError, match="init_weight"):
        HyperCleaner(init_weight=1.0).fit(X, y, Xv, yv)
    with pytest.raises(ValueError, match="NaN"):
        HyperCleaner(T=2, outer_iters=1).fit(X.clone().fill_(float("nan")), y, Xv, yv)
    with pytest.raises(ValueError, match=r"validation labels must be in \[0, 3\)"):
        HyperCleaner(T=2, outer_iters=1).fit(X, y, Xv, yv + 5)
    with pytest.raises(ValueError, match=r"training labels must be in \[0, 2\)"):
        HyperCleaner(T=2, outer_iters=1).fit(X, y, Xv, yv, num_classes=2)
    with pytest.raises(ValueError, match="training set is empty"):
        HyperCleaner(T=2, outer_iters=1).fit(X[:0], y[:0], Xv, yv)
    with pytest.raises(ValueError, match="X_val has 2 features"):
        HyperCleaner(T=2, outer_iters=1).fit(X, y, Xv[:, :2], yv)
    with pytest.raises(RuntimeError, match="not fitted"):
        HyperCleaner().predict(X)


def test_mlp_head_and_momentum_also_clean():
    """The one-hidden-layer variant (tanh MLP) and heavy-ball momentum inner dynamics."""
    X, y, corrupted, Xv, yv = _noisy_blobs(seed=2)
    hc = HyperCleaner(hidden=8, momentum=0.5, T=40, inner_lr=0.2, outer_iters=60, dtype=torch.float64,
                      verbose=False).fit(X, y, Xv, yv)
    assert len(hc.params_) == 4
    scores = hc.detection(corrupted)
    assert scores["recall"] >= 0.7 and scores["precision"] >= 0.7, scores
    assert hc.predict(Xv).shape == yv.shape
