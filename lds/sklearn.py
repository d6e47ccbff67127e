"""kNN-LDS as a scikit-learn semi-supervised classifier for tabular data: :class:`KNNLDSClassifier`.

It follows the convention of scikit-learn's ``LabelSpreading`` and ``SelfTrainingClassifier``: ``fit(X, y)``
on every row, with ``y == -1`` on the unlabelled ones; ``transduction_`` holds the labels it gives every
training row. Underneath it is :class:`lds.LDS` without an input graph (the LDS paper's kNN-LDS): θ starts
at 1 on the kNN graph of the rows and is learned on the candidate pairs.

Example:
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from lds import KNNLDSClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> y_semi = np.where(np.random.default_rng(0).random(len(y)) < 0.2, y, -1)   # 20 % labelled
    >>> clf = KNNLDSClassifier(max_outer_iters=2, max_inner_steps=20).fit(X, y_semi)
    >>> clf.transduction_.shape, clf.predict_proba(X[:2] + 0.01).shape
    ((150,), (2, 3))
"""

from __future__ import annotations

import numbers
from typing import Any, cast

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from lds.datasets import split_labelled

from .model import LDS, SEED_LIMIT

__all__ = ["KNNLDSClassifier", "split_labelled"]


def _unlabelled(y: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows whose label is ``-1`` (numbers, or ``-1`` inside an object array of labels)."""
    if y.dtype.kind in "US":  # an array of strings cannot hold -1
        return np.zeros(len(y), dtype=bool)
    if y.dtype.kind == "O":
        return np.array([isinstance(v, numbers.Number) and not isinstance(v, bool) and v == -1 for v in y],
                        dtype=bool)
    return np.asarray(y == -1, dtype=bool)


class KNNLDSClassifier(ClassifierMixin, BaseEstimator):
    """kNN-LDS (Franceschi et al., ICML 2019) for tabular data: a semi-supervised, transductive classifier.

    ``fit(X, y)``: ``X`` is array-like ``(n_samples, n_features)`` (numpy, pandas, scipy.sparse: densified);
    ``y`` holds the class of each labelled row and ``-1`` on the unlabelled ones (classes may be strings: use
    an object array to mix them with ``-1``). The labelled rows are split, seeded and stratified, into the rows
    the GCN trains on and ``validation_fraction`` of them for validation; LDS splits those into two halves,
    one for its graph's hypergradient and one for early stopping. Every row is a node of the graph.

    Features: with ``normalize_features="auto"`` each row is divided by its sum when every training feature is
    non-negative (counts, pixels: Kipf & Welling's preprocessing), else used as it is; ``True`` / ``False``
    force it. Nothing is standardised: put a ``StandardScaler`` in front (``make_pipeline``) for signed
    features on different scales.

    Predictions:

    - a row equal (exactly, after validation to float64) to a training row gets that row's transductive
      prediction: ``predict(X_train)`` is ``transduction_`` and ``predict_proba(X_train)`` is
      ``label_distributions_`` (training rows that are exact duplicates of each other all get the first copy's);
    - any other row is new: it is attached to its ``n_neighbors`` nearest training rows (same metric and
      feature processing as the fit) by edges *into* it, and the fitted GCN runs on the learned graph plus
      those edges, averaged over ``num_samples`` graphs ``A ~ Ber(θ)`` drawn from ``random_state``
      (on ``A = θ`` when ``sampling=False``). Edges point only from training rows to the new row, so the
      training rows' representations are unchanged and a new row's prediction does not depend on the other
      rows passed with it. Deterministic: the same call gives the same result.

    ``score(X, y)`` is the accuracy on the rows with ``y != -1``.

    Speed: candidate pairs follow :class:`lds.LDS`'s rule (all pairs up to ``max_all_pairs``, else kNN(2k)). On
    tables of a few thousand rows or fewer, one torch thread (``torch.set_num_threads(1)``) is often much
    faster than several on a busy machine (breast cancer: 50 s against 420 s on 2 busy cores).

    Args:
        n_neighbors: k of the initial kNN graph (LDS's ``k``; capped at ``n_samples - 1``) and of the edges
            that attach a new row.
        metric: ``"cosine"`` or ``"euclidean"``.
        validation_fraction: share of the labelled rows used for validation, in (0, 1).
        candidates: ``"auto"`` (all pairs when ``n(n-1)/2 <= max_all_pairs``, else the kNN(2k) pairs),
            ``"all"`` or ``"sparse"``; the same rule as :class:`lds.LDS`.
        hypergrad_every, outer_lr, num_samples, patience, max_inner_steps, max_outer_iters, max_all_pairs,
        sampling, hidden, dropout, weight_decay, device, dtype: as in :class:`lds.LDS`.
        normalize_features: ``"auto"``, ``True`` or ``False`` (see above).
        random_state: an int seed in ``[0, 2**63)`` for the split, the fit and the predictions of new rows.
        verbose: show LDS's progress bar.

    Attributes:
        classes_: the classes, sorted. transduction_: the predicted class of every training row.
        label_distributions_: class probabilities of every training row ``(n_samples, n_classes)``.
        model_: the fitted :class:`lds.LDS` (its learned graph: :mod:`lds.export`).
        train_mask_, val_mask_: the rows the GCN trained on and the validation rows.
        X_: the training features (float64), n_features_in_, feature_names_in_ (pandas input).

    Scikit-learn's ``check_estimator`` checks that are skipped, and why, are listed in
    ``tests/lds/test_sklearn.py`` (``EXPECTED_FAILED_CHECKS``).
    """

    def __init__(
        self,
        n_neighbors: int = 10,
        metric: str = "cosine",
        validation_fraction: float = 0.5,
        candidates: str = "auto",
        hypergrad_every: int = 5,
        outer_lr: float | None = None,
        num_samples: int = 16,
        patience: int = 20,
        max_inner_steps: int = 400,
        max_outer_iters: int = 200,
        max_all_pairs: int = 6_000_000,
        sampling: bool = True,
        hidden: int = 16,
        dropout: float = 0.5,
        weight_decay: float = 5e-4,
        normalize_features: bool | str = "auto",
        random_state: int = 0,
        device: str = "cpu",
        dtype: str = "float32",
        verbose: bool = False,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.validation_fraction = validation_fraction
        self.candidates = candidates
        self.hypergrad_every = hypergrad_every
        self.outer_lr = outer_lr
        self.num_samples = num_samples
        self.patience = patience
        self.max_inner_steps = max_inner_steps
        self.max_outer_iters = max_outer_iters
        self.max_all_pairs = max_all_pairs
        self.sampling = sampling
        self.hidden = hidden
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.normalize_features = normalize_features
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        for name, value in (("n_neighbors", self.n_neighbors), ("random_state", self.random_state)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}.")
        if self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be an int >= 1, got {self.n_neighbors!r}.")
        if not 0 <= self.random_state < SEED_LIMIT:
            raise ValueError(f"random_state must be an int in [0, 2**63), got {self.random_state!r}.")
        v = self.validation_fraction
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 < float(v) < 1.0:
            raise ValueError(f"validation_fraction must be a number in (0, 1), got {v!r}.")
        if self.normalize_features not in (True, False, "auto"):
            raise ValueError(f"normalize_features must be True, False or 'auto', got {self.normalize_features!r}.")

    @staticmethod
    def _dense(X: Any) -> np.ndarray:
        return np.ascontiguousarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)

    def _process(self, X: np.ndarray, *, new: bool) -> np.ndarray:
        """Row normalisation when the fit chose it (``normalize_features_``)."""
        if not self.normalize_features_:
            return X
        if (X < 0).any():
            rows = np.flatnonzero((X < 0).any(axis=1))
            where = "X" if not new else "the rows to predict"
            raise ValueError(
                f"{where} has negative values (rows {rows[:5].tolist()}) but the features are row-normalised "
                f"({'normalize_features=True' if not new else 'all training features were non-negative'}): "
                "use normalize_features=False, or scale the features the same way for fit and predict."
            )
        sums = X.sum(axis=1, keepdims=True)
        return np.where(sums > 0, X / np.where(sums > 0, sums, 1.0), X)

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any) -> KNNLDSClassifier:
        """Fit kNN-LDS on every row of ``X``; ``y`` is ``-1`` on the unlabelled rows. Returns self."""
        from torch_geometric.data import Data

        self._check_params()
        X, y = validate_data(self, X, y, accept_sparse=True, dtype=np.float64)
        X = self._dense(X)
        labelled = ~_unlabelled(y)
        if not labelled.any():
            raise ValueError("y has no labelled rows (every label is -1): label at least one row per class.")
        check_classification_targets(y[labelled])
        classes = np.unique(y[labelled])
        if classes.size < 2:
            raise ValueError(f"y has one class among its labelled rows ({classes[0]!r}): KNNLDSClassifier needs at "
                             "least 2 classes (y == -1 marks the unlabelled rows).")
        codes = np.full(len(y), -1, dtype=np.int64)
        codes[labelled] = np.searchsorted(classes, y[labelled])
        try:
            train, val = split_labelled(codes, labelled, float(self.validation_fraction), int(self.random_state))
        except ValueError as exc:
            raise ValueError(f"y (-1 = unlabelled): {exc}") from None
        n = X.shape[0]
        if self.normalize_features == "auto":
            self.normalize_features_ = bool((X >= 0).all())
        else:
            self.normalize_features_ = bool(self.normalize_features)
        x = self._process(X, new=False)
        k = min(int(self.n_neighbors), n - 1)
        dtype = torch.float64 if self.dtype == "float64" else torch.float32
        data = Data(x=torch.tensor(x, dtype=dtype), y=torch.from_numpy(codes),
                    edge_index=torch.empty(2, 0, dtype=torch.long), train_mask=torch.from_numpy(train),
                    val_mask=torch.from_numpy(val))
        data.num_classes_ = int(classes.size)
        model = LDS(hypergrad_every=self.hypergrad_every, outer_lr=self.outer_lr, num_samples=self.num_samples,
                    patience=self.patience, max_inner_steps=self.max_inner_steps,
                    max_outer_iters=self.max_outer_iters, candidates=self.candidates,
                    max_all_pairs=self.max_all_pairs, k=k, candidate_k=min(2 * k, n - 1), metric=self.metric,
                    sampling=self.sampling, hidden=self.hidden, dropout=self.dropout,
                    weight_decay=self.weight_decay, normalize_features=False, seed=int(self.random_state),
                    device=self.device, dtype=self.dtype, verbose=self.verbose)
        model.fit(data)
        self.model_ = model
        self.classes_ = classes
        self.X_ = X
        self.train_mask_, self.val_mask_ = train, val
        self.label_distributions_ = model.predict_proba(data).double().numpy()
        self.transduction_ = classes[self.label_distributions_.argmax(axis=1)]
        return self

    # ------------------------------------------------------------------ predictions
    def _training_rows(self, X: np.ndarray) -> np.ndarray:
        """For each row of X, the index of the first equal training row, or -1."""
        index: dict[bytes, int] = {}
        for i, row in enumerate(self.X_ + 0.0):  # + 0.0 maps -0.0 to 0.0
            index.setdefault(row.tobytes(), i)
        return np.array([index.get(row.tobytes(), -1) for row in X + 0.0], dtype=np.int64)

    def _new_rows_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities of rows that are not training rows (see the class docstring)."""
        from sklearn.neighbors import NearestNeighbors

        from .export import learned_pairs
        from .gcn import gcn_forward

        model = self.model_
        train_x = self._process(self.X_, new=False)
        new_x = self._process(X, new=True)
        n, m, k = train_x.shape[0], new_x.shape[0], int(model.k)
        neighbours = NearestNeighbors(n_neighbors=k, metric=self.metric, algorithm="brute").fit(train_x)
        nearest = neighbours.kneighbors(new_x, return_distance=False)
        attach = torch.stack([torch.from_numpy(nearest.reshape(-1)).long(),
                              n + torch.arange(m).repeat_interleave(k)])
        pairs, probs, _ = learned_pairs(model)
        device = torch.device(self.device)
        x_all = torch.from_numpy(np.vstack([train_x, new_x])).to(device)  # float64: no batch-size rounding
        params = cast("tuple[torch.Tensor, torch.Tensor]",  # the built-in GCN's (W1, W2)
                      tuple(p.detach().to(device=device, dtype=torch.float64) for p in model.params_))
        ones = torch.ones(attach.size(1), dtype=torch.float64)

        def proba(edges: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
            edge_index = torch.cat([edges, edges.flip(0), attach], dim=1).to(device)
            weight = torch.cat([weights, weights, ones]).to(device)
            with torch.no_grad():
                logits = gcn_forward(params, x_all, (edge_index, weight), training=False)
            return torch.softmax(logits[n:], dim=1).cpu()

        if not self.sampling:
            return proba(pairs, probs.double()).numpy()
        gen = torch.Generator().manual_seed(int(self.random_state))
        total = torch.zeros(m, len(self.classes_), dtype=torch.float64)
        for _ in range(int(self.num_samples)):
            keep = torch.rand(probs.numel(), generator=gen, dtype=torch.float64) < probs.double()
            total += proba(pairs[:, keep], torch.ones(int(keep.sum()), dtype=torch.float64))
        return (total / int(self.num_samples)).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n_rows, n_classes)``: transductive on training rows, by attachment on new ones."""
        check_is_fitted(self)
        X = self._dense(validate_data(self, X, accept_sparse=True, dtype=np.float64, reset=False))
        out = np.empty((X.shape[0], len(self.classes_)))
        match = self._training_rows(X)
        known = match >= 0
        out[known] = self.label_distributions_[match[known]]
        if not known.all():
            out[~known] = self._new_rows_proba(X[~known])
        return out

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row (``classes_`` values)."""
        proba = self.predict_proba(X)
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy on the rows with ``y != -1`` (the unlabelled rows have no label to score)."""
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != getattr(X, "shape", (len(X),))[0]:
            raise ValueError(f"y must be 1-D with one label per row of X, got shape {y.shape}.")
        keep = ~_unlabelled(y)
        if not keep.any():
            raise ValueError("score needs labelled rows: every y is -1.")
        rows = np.flatnonzero(keep)
        X_kept = X.iloc[rows] if hasattr(X, "iloc") else X[rows]
        weights = None if sample_weight is None else np.asarray(sample_weight)[rows]
        return float(accuracy_score(y[rows], self.predict(X_kept), sample_weight=weights))
