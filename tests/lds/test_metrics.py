"""lds.metrics: accuracy and exact ROC-AUC against scikit-learn, evaluate() and its errors."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, roc_auc_score

from lds.metrics import METRICS, accuracy, check_metric, evaluate, roc_auc


@pytest.mark.parametrize("seed", range(20))
def test_roc_auc_equals_sklearn_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(2, 300, (1,), generator=g))
    y = torch.randint(0, 2, (n,), generator=g)
    y[0], y[1] = 0, 1  # both classes
    levels = [2, 5, 20, 10**6][seed % 4]  # from heavy ties to almost none
    scores = torch.randint(0, levels, (n,), generator=g, dtype=torch.float64) / levels
    expected = roc_auc_score(y.numpy(), scores.numpy())
    assert roc_auc(y, scores) == pytest.approx(expected, abs=1e-12)
    assert roc_auc(y.bool().long(), scores.float()) == pytest.approx(expected, abs=1e-6)  # float32 scores


def test_roc_auc_edge_cases():
    y = torch.tensor([0, 0, 1, 1])
    assert roc_auc(y, torch.tensor([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(y, torch.tensor([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert roc_auc(y, torch.full((4,), 0.7)) == 0.5  # all tied
    assert roc_auc(y, torch.tensor([-0.0, 0.0, 0.0, -0.0])) == 0.5  # -0.0 and 0.0 tie
    big = torch.arange(100_000) % 2
    assert roc_auc(big, big.double()) == 1.0  # rank sums stay exact in float64


def test_accuracy_equals_sklearn():
    g = torch.Generator().manual_seed(0)
    y, pred = torch.randint(0, 5, (200,), generator=g), torch.randint(0, 5, (200,), generator=g)
    assert accuracy(y, pred) == pytest.approx(accuracy_score(y.numpy(), pred.numpy()), abs=1e-15)
    assert accuracy(y, y) == 1.0


def test_evaluate_uses_the_mask_and_class_one_probabilities():
    g = torch.Generator().manual_seed(1)
    n = 120
    probs = torch.softmax(torch.randn(n, 2, generator=g, dtype=torch.float64), dim=1)
    y = torch.randint(0, 2, (n,), generator=g)
    mask = torch.rand(n, generator=g) < 0.5
    auc = evaluate(probs, y, mask, "roc_auc")
    assert auc == pytest.approx(roc_auc_score(y[mask].numpy(), probs[mask, 1].numpy()), abs=1e-12)
    acc = evaluate(probs, y, mask, "accuracy")
    assert acc == pytest.approx(accuracy_score(y[mask].numpy(), probs[mask].argmax(1).numpy()), abs=1e-15)
    assert evaluate(probs, y, None, "accuracy") == accuracy(y, probs.argmax(1))
    many = torch.softmax(torch.randn(n, 4, generator=g), dim=1)
    y4 = torch.randint(0, 4, (n,), generator=g)
    assert evaluate(many, y4, mask, "accuracy") == accuracy(y4[mask], many[mask].argmax(1))


def test_check_metric():
    assert METRICS == ("accuracy", "roc_auc")
    assert check_metric("accuracy", 7) == "accuracy" and check_metric("roc_auc") == "roc_auc"


@pytest.mark.parametrize("call,error,match", [
    (lambda: check_metric("f1"), ValueError, r"unknown metric 'f1'; valid metrics: accuracy, roc_auc"),
    (lambda: check_metric(None), TypeError, "metric must be a str"),
    (lambda: check_metric("roc_auc", 5), ValueError, r"two-class task .* got 5 classes; use metric='accuracy'"),
    (lambda: evaluate(torch.rand(4, 3), torch.tensor([0, 1, 2, 0]), None, "roc_auc"), ValueError,
     "got 3 classes"),
    (lambda: evaluate(torch.rand(4, 2), torch.tensor([0, 1, 1, 0]), None, "auc"), ValueError,
     "valid metrics: accuracy, roc_auc"),
    (lambda: evaluate(torch.rand(4, 2), torch.tensor([0, 1, 1, 0]), torch.tensor([True, False, False, True]),
                      "roc_auc"), ValueError, r"both classes, but the mask selects 2 nodes, all of class 0"),
    (lambda: evaluate(torch.rand(4, 2), torch.tensor([0, 1, 1, 0]), torch.zeros(4, dtype=torch.bool),
                      "accuracy"), ValueError, "mask selects no nodes"),
    (lambda: evaluate(torch.rand(4, 2), torch.tensor([0, 1, 1, 0]), torch.ones(3, dtype=torch.bool), "accuracy"),
     ValueError, "mask must be a boolean tensor of length 4"),
    (lambda: evaluate(torch.rand(4), torch.tensor([0, 1, 1, 0]), None, "accuracy"), ValueError,
     r"probs must be a 2-D tensor"),
    (lambda: evaluate(torch.rand(4, 2), torch.tensor([0, 1, 1]), None, "accuracy"), ValueError,
     r"one label per row of probs \(4\), got 3"),
    (lambda: roc_auc(torch.tensor([1, 1]), torch.tensor([0.2, 0.3])), ValueError, "all 2 labels are 1"),
    (lambda: roc_auc(torch.tensor([0, 2]), torch.tensor([0.2, 0.3])), ValueError, r"labels 0 and 1 .* \[2\]"),
    (lambda: roc_auc(torch.tensor([0, 1]), torch.tensor([0.2, float("nan")])), ValueError, "1 NaN or infinite"),
    (lambda: roc_auc(torch.tensor([0, 1]), torch.tensor([[0.2, 0.3]])), ValueError, r"probs\[:, 1\]"),
    (lambda: roc_auc(torch.tensor([0.0, 1.0]), torch.tensor([0.2, 0.3])), TypeError, "integer class labels"),
    (lambda: roc_auc(np.array([0, 1]), torch.tensor([0.2, 0.3])), TypeError, "y_true must be a torch.Tensor"),
    (lambda: accuracy(torch.tensor([0, 1]), torch.tensor([0, 1, 1])), ValueError, "same length, got 2 and 3"),
    (lambda: accuracy(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)), ValueError,
     "y_true is empty"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_lds_score_metric_roc_auc_and_accuracy():
    from sklearn.metrics import roc_auc_score

    from lds import LDS

    from .synthetic import planted_partition

    data = planted_partition(num_classes=2, per_class=20, seed=0)
    model = LDS(max_outer_iters=2, max_inner_steps=10, patience=1, verbose=False, seed=0).fit(data)
    proba = model.predict_proba(data)
    mask = data.test_mask
    expected = roc_auc_score(data.y[mask].numpy(), proba[mask, 1].numpy())
    assert model.score(data, mask, metric="roc_auc") == pytest.approx(expected, abs=1e-12)
    assert model.score(data, mask) == float((proba[mask].argmax(1) == data.y[mask]).double().mean())
    with pytest.raises(ValueError, match="unknown metric"):
        model.score(data, mask, metric="f1")


def test_lds_score_roc_auc_on_three_classes_is_a_clear_error():
    from lds import LDS

    from .synthetic import planted_partition

    data = planted_partition(num_classes=3, per_class=10, seed=0)
    model = LDS(max_outer_iters=1, max_inner_steps=5, patience=1, verbose=False, seed=0).fit(data)
    with pytest.raises(ValueError, match="two-class task"):
        model.score(data, data.test_mask, metric="roc_auc")
