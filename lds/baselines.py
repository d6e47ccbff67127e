"""GCN baselines sharing LDS's GCN code and early-stopping half (thesis Sec. 9.4).

- ``graph="given"``: GCN on the input graph (Kipf & Welling, 2017);
- ``"random"``: GCN-RND, the input graph plus a fresh set of uniformly random pairs at every step;
- ``"knn"``: kNN-GCN; ``"erdos_renyi"``: Sparse-GCN on an Erdős–Rényi graph;
- ``"dense"``: Dense-GCN, the complete graph with equal weights; ``"rbf"``: RBF-GCN, a dense RBF kernel;
- ``"none"``: no edges, only the self-loops: ``Â = I`` and the network is the 2-layer MLP
  ``relu(X W₁) W₂`` (no biases, the same dropout and weight decay), whatever ``data.edge_index`` holds.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, cast

import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from torch import Tensor

from bilevel_core import Adam

from .gcn import DropoutMasks, gcn_forward, gcn_l2_penalty, init_gcn_params, preprocess_features, sample_dropout_masks
from .gcn import Params as GCNParams
from .model import (
    PreparedData,
    check_dtype_and_device,
    check_int_setting,
    check_predict_features,
    check_score_inputs,
    check_seed_setting,
    split_validation,
    validate_data,
)
from .propagation import pairs_from_edge_index
from .typing import GraphData, NetParams

GRAPHS = ("given", "random", "knn", "erdos_renyi", "dense", "rbf", "none")


class GCNBaseline(BaseEstimator):
    """A 2-layer GCN trained with Adam, early-stopped on the same validation half as :class:`~lds.LDS`.

    Args:
        graph: one of ``"given"``, ``"random"``, ``"knn"``, ``"erdos_renyi"``, ``"dense"``, ``"rbf"``, ``"none"``
            (the MLP baseline: self-loops only, the given edges are ignored).
        k, metric: kNN graph (``"knn"``).
        num_random_edges: pairs added per step for ``"random"`` (default: as many as the given graph has).
        er_prob: edge probability of ``"erdos_renyi"`` (default ``k / N``, about the kNN degree).
        rbf_gamma: ``γ`` of ``exp(-γ||x_i - x_j||²)``; by default ``rbf_scale`` / the median squared distance
            between the features the kernel is applied to (after ``normalize_features``: a γ taken from the raw
            features of row-normalised data, e.g. digits or bag-of-words, is far too small and gives the
            complete graph).
        rbf_scale: the multiple of 1 / median squared distance used when ``rbf_gamma`` is None.
        lr, max_steps, patience: Adam's learning rate, the step budget, early-stopping patience (steps).
        min_steps: early stopping never ends a run before this many steps. A run can sit on its initial
            plateau for longer than ``patience`` (Cora, 50 % of the edges, GCN-RND, seed 0: validation 24 %
            when stopped at step 55; 77.6 % at step 272 when allowed to go on), which is a failed fit, not
            a result of the baseline.
        num_samples: graphs averaged at prediction time for ``"random"``.
        train_on_outer_half: also train on the validation half that :class:`~lds.LDS` (same seed) uses for
            its outer objective, so that the baseline sees the same labels as LDS. Not in the paper: an
            information-matched control for LDS's use of both validation halves. Early stopping still uses
            only the other half.
    """

    def __init__(
        self,
        graph: str = "given",
        k: int = 10,
        metric: str = "cosine",
        num_random_edges: int | None = None,
        er_prob: float | None = None,
        rbf_gamma: float | None = None,
        rbf_scale: float = 1.0,
        lr: float = 0.01,
        max_steps: int = 400,
        patience: int = 50,
        min_steps: int = 100,
        num_samples: int = 16,
        train_on_outer_half: bool = False,
        hidden: int = 16,
        dropout: float = 0.5,
        weight_decay: float = 5e-4,
        normalize_features: bool | str = "auto",
        seed: int = 0,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        self.graph = graph
        self.k = k
        self.metric = metric
        self.num_random_edges = num_random_edges
        self.er_prob = er_prob
        self.rbf_gamma = rbf_gamma
        self.rbf_scale = rbf_scale
        self.train_on_outer_half = train_on_outer_half
        self.lr = lr
        self.max_steps = max_steps
        self.patience = patience
        self.min_steps = min_steps
        self.num_samples = num_samples
        self.hidden = hidden
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.normalize_features = normalize_features
        self.seed = seed
        self.device = device
        self.dtype = dtype

    @property
    def _torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    # ------------------------------------------------------------------ graphs
    def _fixed_graph(self, x: Tensor, edge_index: Tensor, gen: torch.Generator) -> Any:
        """The graph used at every step: ``(values, pairs)`` (sparse) or a dense adjacency."""
        n = x.size(0)
        dtype, device = self._torch_dtype, torch.device(self.device)
        if self.graph in ("given", "random"):
            if edge_index.numel() == 0 and self.graph == "given":
                raise ValueError("graph='given' needs data.edge_index; use graph='knn' without an input graph.")
            pairs = pairs_from_edge_index(edge_index) if edge_index.numel() else torch.empty(2, 0, dtype=torch.long)
        elif self.graph == "none":  # self-loops only (added by the normalisation): Â = I, a 2-layer MLP
            pairs = torch.empty(2, 0, dtype=torch.long)
        elif self.graph == "knn":
            from lds.datasets import knn_graph

            if self.k >= n:
                raise ValueError(f"k={self.k} must be smaller than the number of nodes ({n}).")
            pairs = pairs_from_edge_index(knn_graph(x.cpu(), self.k, metric=self.metric))
        elif self.graph == "erdos_renyi":
            p = self.er_prob if self.er_prob is not None else min(1.0, self.k / n)
            iu = torch.triu_indices(n, n, offset=1)
            keep = torch.rand(iu.size(1), generator=gen) < p
            pairs = iu[:, keep]
        elif self.graph == "dense":
            return torch.ones(n, n, dtype=dtype, device=device) - torch.eye(n, dtype=dtype, device=device)
        elif self.graph == "rbf":
            d2 = torch.cdist(x, x).pow(2)
            gamma = self.rbf_gamma
            if gamma is None:
                off = d2[~torch.eye(n, dtype=torch.bool, device=d2.device)]
                gamma = self.rbf_scale / float(off.median().clamp_min(1e-12))
            a = torch.exp(-gamma * d2)
            return a - torch.diag(torch.diagonal(a))
        else:
            raise ValueError(f"graph must be one of {', '.join(GRAPHS)}, got {self.graph!r}.")
        pairs = pairs.to(device)
        return torch.ones(pairs.size(1), dtype=dtype, device=device), pairs

    def _random_graph(self, base: tuple[Tensor, Tensor], n: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """GCN-RND: the given pairs plus ``num_random_edges`` uniformly random pairs (i ≠ j)."""
        values, pairs = base
        m = self.num_random_edges if self.num_random_edges is not None else pairs.size(1)
        i = torch.randint(0, n, (m,), generator=gen)
        j = torch.randint(0, n - 1, (m,), generator=gen)
        j = j + (j >= i).long()
        extra = torch.stack([torch.minimum(i, j), torch.maximum(i, j)]).to(pairs.device)
        all_pairs = pairs_from_edge_index(torch.cat([pairs, extra], dim=1))
        return torch.ones(all_pairs.size(1), dtype=values.dtype, device=values.device), all_pairs

    # ------------------------------------------------------------------ fit / predict
    def fit(self, data: GraphData) -> GCNBaseline:
        """Train with Adam; keep the weights of the best early-stopping accuracy."""
        if self.graph not in GRAPHS:
            raise ValueError(f"graph must be one of {', '.join(GRAPHS)}, got {self.graph!r}.")
        for name, minimum in (("max_steps", 1), ("patience", 1), ("min_steps", 0), ("num_samples", 1), ("hidden", 1)):
            check_int_setting(self, name, minimum)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}.")
        for name in ("rbf_gamma", "rbf_scale"):
            value: float | None = getattr(self, name)
            if value is not None and not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                                          and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        check_seed_setting(self)
        device = check_dtype_and_device(self.dtype, self.device)
        x, y, masks, num_classes = validate_data(data)
        dtype = self._torch_dtype
        gen = torch.Generator().manual_seed(int(self.seed))
        if not isinstance(self.train_on_outer_half, bool):
            raise TypeError(f"train_on_outer_half must be True or False, got {self.train_on_outer_half!r}.")
        val_outer, val_stop = split_validation(masks["val_mask"], int(self.seed))
        train_idx = torch.nonzero(masks["train_mask"], as_tuple=True)[0]
        if self.train_on_outer_half:
            train_idx = torch.cat([train_idx, val_outer]).sort().values
        self.num_train_nodes_ = int(train_idx.numel())
        y = y.clone().long()
        y[y < 0] = 0
        x = preprocess_features(x.to(device=device, dtype=dtype), self.normalize_features)
        given = getattr(data, "edge_index", None)  # optional: absent (or None) means no input graph
        edge_index = given if given is not None else torch.empty(2, 0, dtype=torch.long)
        prep = PreparedData(x=x, y=y.to(device), num_classes=num_classes,
                            train_idx=train_idx.to(device),
                            val_outer_idx=torch.empty(0, dtype=torch.long), val_stop_idx=val_stop.to(device),
                            edge_index=edge_index, num_nodes=x.size(0))
        self.graph_ = self._fixed_graph(prep.x, edge_index.long(), gen)
        n = prep.num_nodes

        def graph_at_step() -> Any:
            return self._random_graph(self.graph_, n, gen) if self.graph == "random" else self.graph_

        def inner(w: GCNParams, hparams: tuple[()], batch: tuple[Any, DropoutMasks]) -> Tensor:
            graph, dropout_masks = batch
            logits = gcn_forward(w, prep.x, graph, dropout=self.dropout, dropout_masks=dropout_masks, training=True)
            return F.cross_entropy(logits[prep.train_idx], prep.y[prep.train_idx]) + gcn_l2_penalty(
                w, self.weight_decay)

        dynamics = Adam(inner, lr=self.lr)
        state = dynamics.init(init_gcn_params(x.size(1), self.hidden, num_classes, generator=gen, dtype=dtype,
                                              device=device), ())
        best_key, best_params, since = (-math.inf, -math.inf), state.params, 0
        self.num_classes_, self.num_nodes_ = num_classes, n
        for _ in range(self.max_steps):
            masks_t = sample_dropout_masks(prep.x, (n, self.hidden), self.dropout, gen, dtype, device)
            state = dynamics(state, (), (graph_at_step(), masks_t), create_graph=False)
            proba = self._proba(state.params, prep.x)
            idx = prep.val_stop_idx
            acc = float((proba[idx].argmax(1) == prep.y[idx]).double().mean())
            loss = float(F.nll_loss(torch.log(proba[idx].clamp_min(1e-12)), prep.y[idx]))
            if (acc, -loss) > best_key:
                best_key, best_params, since = (acc, -loss), state.params, 0
            else:
                since += 1
                if since >= self.patience and state.t >= self.min_steps:
                    break
        self.params_ = best_params
        self.best_val_acc_ = best_key[0]
        self.steps_ = state.t
        return self

    def _proba(self, params: NetParams, x: Tensor) -> Tensor:
        gcn_params = cast(GCNParams, params)  # a GCN's (W1, W2), as a DynamicsState's params tuple
        with torch.no_grad():
            if self.graph != "random":
                return torch.softmax(gcn_forward(gcn_params, x, self.graph_, dropout=self.dropout, training=False), 1)
            gen = torch.Generator().manual_seed(int(self.seed) + 7919)
            total: Tensor | int = 0
            for _ in range(self.num_samples):
                g = self._random_graph(self.graph_, x.size(0), gen)
                total = total + torch.softmax(gcn_forward(gcn_params, x, g, dropout=self.dropout, training=False), 1)
            assert isinstance(total, Tensor)  # num_samples >= 1 (checked in fit)
            return total / self.num_samples

    def predict_proba(self, data: GraphData) -> Tensor:
        if not hasattr(self, "params_"):
            raise RuntimeError("this baseline is not fitted yet: call fit(data) first.")
        x = check_predict_features(data, self.num_nodes_)
        x = preprocess_features(x.to(device=self.device, dtype=self._torch_dtype), self.normalize_features)
        return self._proba(self.params_, x).cpu()

    def predict(self, data: GraphData) -> Tensor:
        return self.predict_proba(data).argmax(1)

    def score(self, data: GraphData, mask: Tensor | None = None) -> float:
        """Accuracy on ``mask`` (a boolean tensor of length N; default ``data.test_mask``), in [0, 1]."""
        if not hasattr(self, "params_"):
            raise RuntimeError("this baseline is not fitted yet: call fit(data) first.")
        mask, y = check_score_inputs(data, mask, self.num_nodes_)
        pred = self.predict(data)
        return float((pred[mask] == y[mask]).double().mean())


def label_propagation(
    x: Tensor, y: Tensor, train_mask: Tensor, k: int = 10, metric: str = "cosine",
    normalize_features: bool | str = "auto",
) -> Tensor:
    """Label propagation (Zhu, Ghahramani & Lafferty, ICML 2003): the harmonic function on the kNN graph.

    With ``W`` the symmetric kNN graph of the (preprocessed) features, ``L = D - W`` and the labelled nodes'
    one-hot rows ``Y_l`` clamped, the unlabelled rows are ``F_u = L_uu⁻¹ W_ul Y_l`` (their Eq. 5), the fixed
    point of propagating ``F <- D⁻¹ W F`` with the labels clamped. It is solved exactly (a sparse LU), so it
    does not stop early the way an iteration with a tolerance can on a graph with hubs. A connected component
    without a labelled node has no harmonic solution; its rows get the training label frequencies.

    Returns the ``N × C`` class scores (rows sum to 1, labelled rows one-hot); ``argmax(1)`` predicts.
    """
    import numpy as np
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import splu

    from lds.datasets import knn_graph

    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D feature tensor (nodes x features), got {getattr(x, 'shape', type(x))}.")
    n = x.size(0)
    if not isinstance(y, Tensor) or y.shape != (n,) or y.dtype.is_floating_point:
        raise ValueError(f"y must be an integer label tensor of shape ({n},), one label per row of x.")
    if not isinstance(train_mask, Tensor) or train_mask.dtype != torch.bool or train_mask.shape != (n,):
        raise ValueError(f"train_mask must be a boolean tensor of shape ({n},) marking the labelled nodes.")
    if not bool(train_mask.any()):
        raise ValueError("train_mask marks no node: label propagation needs at least one labelled node.")
    labels = y[train_mask]
    if bool((labels < 0).any()):
        raise ValueError("the labelled nodes (train_mask) must have labels >= 0.")
    feats = preprocess_features(x.detach().cpu().double(), normalize_features)
    edge_index = knn_graph(feats, k, metric=metric).numpy()
    W = sp.csr_matrix((np.ones(edge_index.shape[1]), (edge_index[0], edge_index[1])), shape=(n, n))
    num_classes = int(y.max()) + 1
    lab = train_mask.cpu().numpy()
    lab_y = labels.cpu().numpy()
    Y_l = np.eye(num_classes)[lab_y]
    F_out = np.empty((n, num_classes))
    F_out[lab] = Y_l
    _, comp = connected_components(W, directed=False)
    reached = np.isin(comp, np.unique(comp[lab]))
    F_out[~reached] = np.bincount(lab_y, minlength=num_classes) / lab.sum()
    u = np.flatnonzero(reached & ~lab)
    if u.size:  # every component solved here holds a labelled node, so L_uu is positive definite
        W_u = W[u]  # the unlabelled rows: their degrees, W_uu and W_ul
        L_uu = (sp.diags(np.asarray(W_u.sum(1)).ravel()) - W_u[:, u]).tocsc()
        F_out[u] = splu(L_uu).solve(np.asarray(W_u[:, np.flatnonzero(lab)] @ Y_l))
    return torch.from_numpy(F_out)
