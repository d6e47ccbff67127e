"""``lds.KNNLDSClassifier``: scikit-learn's estimator checks, transductive and new-row predictions, pipelines."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from lds import KNNLDSClassifier
from lds.export import learned_pairs
from lds.sklearn import split_labelled

#: a tiny budget: a fit on a few hundred rows takes a fraction of a second
TINY = {"max_outer_iters": 1, "max_inner_steps": 15, "num_samples": 1, "patience": 1}

#: scikit-learn checks that do not apply to a semi-supervised transductive classifier, with the reason
#: (the convention of scikit-learn's own PER_ESTIMATOR_XFAIL_CHECKS)
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_classifiers_classes": (
        "its last problem has the labels [-1, 1], and -1 marks an unlabelled row (the semi-supervised convention), "
        "so it is one class plus unlabelled rows. scikit-learn exempts its own LabelSpreading, LabelPropagation and "
        "SelfTrainingClassifier from this by name (_choose_check_classifiers_labels). The string and object labels "
        "of its other problems are tested in test_string_and_object_classes."
    ),
}


@parametrize_with_checks([KNNLDSClassifier(**TINY)], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def iris_semi():
    """Standardised iris with 30 % of the labels (seeded); the rest -1."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    y_semi = np.where(np.random.default_rng(0).random(len(y)) < 0.3, y, -1)
    return X, y, y_semi


@pytest.fixture(scope="module")
def fitted(iris_semi):
    X, _, y_semi = iris_semi
    return KNNLDSClassifier(max_outer_iters=3, max_inner_steps=40, num_samples=4, n_neighbors=5,
                            random_state=1).fit(X, y_semi)


def test_split_labelled_is_stratified_seeded_and_keeps_every_class_in_training():
    codes = np.array([0] * 10 + [1] * 6 + [2] * 1 + [-1] * 5)
    labelled = codes >= 0
    train, val = split_labelled(codes, labelled, 0.5, seed=3)
    assert not (train & val).any() and np.array_equal(train | val, labelled)
    assert [int(val[codes == c].sum()) for c in (0, 1, 2)] == [5, 3, 0]
    assert all(train[codes == c].any() for c in (0, 1, 2))
    again = split_labelled(codes, labelled, 0.5, seed=3)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], val)
    assert not np.array_equal(split_labelled(codes, labelled, 0.5, seed=4)[1], val)
    # too few validation rows after rounding: they move from the class with the most training rows
    tiny = np.array([0, 0, 0, 1])
    train, val = split_labelled(tiny, tiny >= 0, 0.1, seed=0)
    assert int(val.sum()) == 2 and train.tolist() == [*(~val[:3]).tolist(), True] and int(train[:3].sum()) == 1
    with pytest.raises(ValueError, match="at least 4 labelled rows .* for 2 classes"):
        split_labelled(np.array([0, 0, 1, -1]), np.array([True, True, True, False]), 0.5, seed=0)


def test_training_rows_get_the_transductive_predictions(fitted, iris_semi):
    X, y, y_semi = iris_semi
    assert fitted.transduction_.shape == (len(X),) and fitted.label_distributions_.shape == (len(X), 3)
    # duplicated training rows (iris has a few) get their first copy's answer
    first_copy = np.array([next(j for j in range(len(X)) if np.array_equal(X[j], row)) for row in X])
    assert (first_copy != np.arange(len(X))).any()
    np.testing.assert_array_equal(fitted.predict_proba(X[::-1]), fitted.label_distributions_[first_copy[::-1]])
    np.testing.assert_array_equal(fitted.predict(X), fitted.transduction_[first_copy])
    np.testing.assert_allclose(fitted.label_distributions_.sum(axis=1), 1.0, rtol=1e-5)
    labelled = y_semi != -1
    assert np.array_equal(fitted.train_mask_ | fitted.val_mask_, labelled)
    # a working fit (a 3-iteration budget); chance is 1/3
    assert (fitted.transduction_[~labelled] == y[~labelled]).mean() > 0.7
    assert fitted.score(X, y_semi) == pytest.approx((fitted.transduction_[labelled] == y[labelled]).mean())


def test_new_rows_are_deterministic_and_independent_of_the_batch(fitted, iris_semi):
    X, y, _ = iris_semi
    X_new = X + np.random.default_rng(5).normal(scale=0.05, size=X.shape)
    first = fitted.predict_proba(X_new)
    np.testing.assert_array_equal(fitted.predict_proba(X_new), first)
    one_by_one = np.vstack([fitted.predict_proba(X_new[i:i + 1]) for i in range(0, len(X_new), 15)])
    np.testing.assert_allclose(one_by_one, first[::15], rtol=0, atol=1e-12)
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    assert not np.allclose(first, fitted.label_distributions_)  # not the training rows' answers
    assert (fitted.classes_[first.argmax(1)] == y).mean() > 0.7
    mixed = np.vstack([X[:3], X_new[:3]])
    np.testing.assert_allclose(fitted.predict_proba(mixed), np.vstack([fitted.label_distributions_[:3], first[:3]]),
                               atol=1e-12)


def test_new_rows_against_a_dense_reference(iris_semi):
    """sampling=False: a new row is a leaf fed by its k nearest training rows (edges into it only), and the GCN
    Â relu(Â X W1) W2 with Â = D^-1/2 (A + I) D^-1/2, D the in-degrees, written densely here."""
    X, _, y_semi = iris_semi
    k = 4
    clf = KNNLDSClassifier(sampling=False, n_neighbors=k, metric="euclidean", max_outer_iters=2,
                           max_inner_steps=20, random_state=0).fit(X, y_semi)
    X_new = X[:7] * 0.9 + 0.1
    n, m = len(X), len(X_new)
    pairs, probs, _ = learned_pairs(clf.model_)
    A = np.zeros((n + m, n + m))  # A[target, source]
    A[pairs[0].numpy(), pairs[1].numpy()] = probs.double().numpy()
    A[pairs[1].numpy(), pairs[0].numpy()] = probs.double().numpy()
    dist = ((X_new[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    for t, nearest in enumerate(np.argsort(dist, axis=1)[:, :k]):
        A[n + t, nearest] = 1.0
    s = 1 / np.sqrt(1 + A.sum(1))
    A_hat = s[:, None] * (A + np.eye(n + m)) * s[None, :]
    W1, W2 = (p.double().numpy() for p in clf.model_.params_)
    features = np.vstack([X, X_new])
    logits = A_hat @ np.maximum(A_hat @ features @ W1, 0) @ W2
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X_new), ref[n:], rtol=0, atol=1e-10)
    np.testing.assert_allclose(clf.label_distributions_, ref[:n], rtol=0, atol=1e-5)  # LDS's own (float32) pass


def test_string_and_object_classes(iris_semi):
    X, y, y_semi = iris_semi
    names = np.array(["setosa", "versicolor", "virginica"])
    clf = KNNLDSClassifier(**TINY).fit(X, names[y])
    assert list(clf.classes_) == list(names) and set(clf.predict(X + 0.01)) <= set(names)
    y_obj = np.array([names[v] if v >= 0 else -1 for v in y_semi], dtype=object)
    clf = KNNLDSClassifier(**TINY).fit(X, y_obj)
    assert list(clf.classes_) == list(names) and clf.transduction_.dtype == object
    assert set(clf.transduction_) <= set(names)
    assert np.array_equal(clf.train_mask_ | clf.val_mask_, y_semi != -1)


def test_sparse_input_gives_the_dense_fit(iris_semi):
    X, _, y_semi = iris_semi
    dense = KNNLDSClassifier(**TINY).fit(X, y_semi)
    sparse = KNNLDSClassifier(**TINY).fit(sp.csr_matrix(X), y_semi)
    np.testing.assert_array_equal(dense.label_distributions_, sparse.label_distributions_)
    np.testing.assert_array_equal(dense.predict_proba(X[:5] + 0.1), sparse.predict_proba(sp.csr_array(X[:5] + 0.1)))


def test_pipeline_grid_search_and_clone(iris_semi):
    X, y, y_semi = iris_semi
    pipe = make_pipeline(StandardScaler(), KNNLDSClassifier(**TINY))
    search = GridSearchCV(pipe, {"knnldsclassifier__n_neighbors": [3, 6]}, cv=2).fit(X, y_semi)
    assert search.best_params_["knnldsclassifier__n_neighbors"] in (3, 6)
    assert search.predict(X).shape == (len(X),) and 0.0 <= search.score(X, y) <= 1.0
    clf = clone(KNNLDSClassifier(n_neighbors=7, outer_lr=0.5))
    assert clf.get_params()["n_neighbors"] == 7 and clf.set_params(metric="euclidean").metric == "euclidean"


def test_row_normalisation_and_its_errors():
    rng = np.random.default_rng(0)
    X = rng.random((40, 5))
    y = np.array([0, 1] * 20)
    y[10:] = -1
    clf = KNNLDSClassifier(**TINY).fit(X, y)
    assert clf.normalize_features_  # non-negative: rows divided by their sums
    # the GCN sees row-normalised features: a new row scaled by 3 or by 2 is the same node
    np.testing.assert_allclose(clf.predict_proba(X[:4] * 3), clf.predict_proba(X[:4] * 2), atol=1e-12)
    with pytest.raises(ValueError, match="negative values"):
        clf.predict(X[:2] - 1)
    with pytest.raises(ValueError, match="normalize_features=True"):
        KNNLDSClassifier(normalize_features=True, **TINY).fit(X - 0.5, y)
    assert not KNNLDSClassifier(**TINY).fit(X - 0.5, y).normalize_features_


@pytest.mark.parametrize("params, match", [
    ({"validation_fraction": 0.0}, "validation_fraction"), ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"n_neighbors": 0}, "n_neighbors"), ({"random_state": -1}, "random_state"),
    ({"normalize_features": "yes"}, "normalize_features"),
])
def test_bad_settings_name_the_setting(params, match, iris_semi):
    X, _, y_semi = iris_semi
    with pytest.raises(ValueError, match=match):
        KNNLDSClassifier(**params).fit(X, y_semi)


def test_bad_labels(iris_semi):
    X, y, _ = iris_semi
    with pytest.raises(ValueError, match="no labelled rows"):
        KNNLDSClassifier().fit(X, np.full(len(y), -1))
    with pytest.raises(ValueError, match="one class"):
        KNNLDSClassifier().fit(X, np.where(y == 0, 0, -1))
    with pytest.raises(ValueError, match="at least 4 labelled rows"):
        KNNLDSClassifier().fit(X, np.r_[[0, 1, 1], np.full(len(y) - 3, -1)])
    with pytest.raises(ValueError, match="Unknown label type"):
        KNNLDSClassifier().fit(X, y + 0.5)
    clf = KNNLDSClassifier(**TINY).fit(X, y)
    with pytest.raises(ValueError, match="labelled rows"):
        clf.score(X, np.full(len(y), -1))
    assert torch.get_default_dtype() == torch.float32  # the fit does not change global torch state
