"""LDS: Learning Discrete Structures for GNNs (Franceschi, Niepert, Pontil & He, ICML 2019).

Thesis Algorithm 7 on :mod:`bilevel_core`: the graph is a random variable ``A ~ Ber(θ)`` over a
candidate set of pairs; the inner problem trains a 2-layer GCN with Adam on a fresh sample at every
step; every τ steps (``hypergrad_every``) the truncated reverse hypergradient of the validation
cross-entropy (one half of the validation nodes) updates θ by projected SGD. Early stopping uses
the other validation half, with predictions averaged over S sampled graphs.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from torch import Tensor

from bilevel_core import Adam, DynamicsState, hypergradient

from .backbones import Backbone
from .edges import EdgeDistribution, EdgeUniforms
from .gcn import _drop_features, gcn_forward, gcn_l2_penalty, init_gcn_params, preprocess_features, sample_dropout_masks
from .propagation import candidate_graph, defer_pair_gradients, reuse_sampled_graphs, to_edge_index

INNER_LR_RANGE = (1e-4, 0.05)


# ----------------------------------------------------------------------------- data checks


@dataclass
class PreparedData:
    """Validated tensors of one transductive problem, on the model's device."""

    x: Tensor
    y: Tensor
    num_classes: int
    train_idx: Tensor
    val_outer_idx: Tensor
    val_stop_idx: Tensor
    edge_index: Tensor
    num_nodes: int


def _mask(data: Any, name: str, n: int, required: bool = True) -> Tensor | None:
    mask = getattr(data, name, None)
    if mask is None:
        if required:
            raise ValueError(f"data.{name} is missing: LDS needs boolean train_mask and val_mask of length N.")
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != (n,):
        raise ValueError(
            f"data.{name} must be a boolean tensor of shape ({n},), got "
            f"{getattr(mask, 'dtype', type(mask).__name__)} of shape {tuple(getattr(mask, 'shape', ()))}."
        )
    return mask


def validate_data(data: Any, num_classes: int | None = None) -> tuple[Tensor, Tensor, dict[str, Tensor], int]:
    """One validation pass at the boundary: features, labels, masks, edges. Returns x, y, masks, C."""
    x = getattr(data, "x", None)
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError("data.x must be a 2-D tensor of node features (N, F).")
    if not x.is_floating_point():
        raise TypeError(f"data.x must be floating point, got {x.dtype}; convert with data.x.float().")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise ValueError(f"data.x contains NaN or infinite values in {bad} rows; impute or drop them first.")
    n = x.size(0)
    y = getattr(data, "y", None)
    if not isinstance(y, Tensor) or y.shape != (n,):
        raise ValueError(f"data.y must be a tensor of {n} integer labels, got {getattr(y, 'shape', None)}.")
    masks = {}
    for name, required in (("train_mask", True), ("val_mask", True), ("test_mask", False)):
        m = _mask(data, name, n, required)
        if m is not None:
            masks[name] = m
    if int(masks["train_mask"].sum()) == 0:
        raise ValueError("data.train_mask selects no nodes: LDS needs labelled training nodes.")
    if int(masks["val_mask"].sum()) < 2:
        raise ValueError("data.val_mask must select at least 2 nodes (one half for θ, one for early stopping).")
    names = list(masks)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            overlap = int((masks[names[a]] & masks[names[b]]).sum())
            if overlap:
                raise ValueError(
                    f"data.{names[a]} and data.{names[b]} overlap on {overlap} nodes; masks must be disjoint."
                )
    used = masks["train_mask"] | masks["val_mask"] | masks.get("test_mask", torch.zeros(n, dtype=torch.bool))
    labels = y[used]
    if labels.is_floating_point():
        raise TypeError("data.y must hold integer class labels.")
    if int(labels.min()) < 0:
        raise ValueError(
            f"labels out of range: data.y has {int((labels < 0).sum())} negative labels inside the masks; "
            "labels outside every mask may be -1, labels inside must be 0..C-1."
        )
    inferred = int(labels.max()) + 1
    if num_classes is None:
        attr = getattr(data, "num_classes_", None)
        num_classes = int(attr) if attr is not None else inferred
    if inferred > num_classes:
        raise ValueError(f"labels out of range: found label {inferred - 1} but num_classes={num_classes}.")
    edge_index = getattr(data, "edge_index", None)
    if edge_index is None:
        edge_index = torch.empty(2, 0, dtype=torch.long)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"data.edge_index must have shape (2, E), got {tuple(edge_index.shape)}.")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= n):
        raise ValueError(
            f"data.edge_index has node indices out of range [0, {n}): min {int(edge_index.min())}, "
            f"max {int(edge_index.max())}."
        )
    return x, y, masks, num_classes


def split_validation(val_mask: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """Exact, seeded halves of the validation nodes: (for the outer objective, for early stopping)."""
    idx = torch.nonzero(val_mask, as_tuple=True)[0]
    perm = idx[torch.randperm(idx.numel(), generator=torch.Generator().manual_seed(seed))]
    half = idx.numel() // 2
    return perm[:half].sort().values, perm[half:].sort().values


# ----------------------------------------------------------------------------- inner stop rule


class TrainLossStall:
    """Stop when the train loss has not fallen below ``(1 - tol)·best`` for ``patience`` steps."""

    def __init__(self, patience: int = 20, tol: float = 1e-3) -> None:
        self.patience = patience
        self.tol = tol
        self.best = math.inf
        self.since = 0

    def __call__(self, state: DynamicsState, t: int) -> bool:
        loss = float(state.loss) if state.loss is not None else math.inf
        if loss < (1 - self.tol) * self.best:
            self.best = loss
            self.since = 0
        else:
            self.since += 1
        return self.since >= self.patience


# ----------------------------------------------------------------------------- objectives


def network_logits(w, prep: PreparedData, values: Tensor, pairs: Tensor, *, backbone: Backbone | None = None,
                   dropout: float = 0.5, masks: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Logits of the GNN on the graph ``values`` over ``pairs``: the built-in GCN (sparse forward), or a
    message-passing ``backbone`` that sees every candidate pair as an edge of weight 0 or 1."""
    if backbone is None:
        return gcn_forward(w, prep.x, (values, pairs), dropout=dropout, dropout_masks=masks,
                           training=masks is not None)
    edge_index, edge_weight = to_edge_index(values, pairs, keep_zeros=True)
    x = prep.x if masks is None else _drop_features(prep.x, masks[0])
    return backbone(w, x, edge_index, edge_weight, None if masks is None else masks[1])


def lds_objectives(
    prep: PreparedData, dist: EdgeDistribution, *, sampling: bool = True, dropout: float = 0.5,
    weight_decay: float = 5e-4, backbone: Backbone | None = None,
) -> tuple[Callable[..., Tensor], Callable[[Tensor | None], Callable[..., Tensor]]]:
    """The inner and outer objectives of LDS (thesis eqs. 9.4-9.5), for ``hparams = (θ, λ_lr)``.

    ``inner(w, hparams, batch)``: train cross-entropy of the GCN on ``A_t ~ Ber(θ)`` (straight-through;
    ``batch = (uniforms, dropout_masks)`` fixes the sample and the dropout) plus ``ρ·½‖W₁‖²``.
    ``make_outer(uniforms)`` returns ``outer(w, hparams)``: unregularised cross-entropy on the outer
    validation half, on its own straight-through sample, without dropout. Without ``sampling`` the
    GCN runs on ``A = θ`` (kNN-LDS (dense)). ``backbone`` replaces the built-in GCN.
    """
    train_idx, val_idx, y = prep.train_idx, prep.val_outer_idx, prep.y

    def graph(theta: Tensor, uniforms: EdgeUniforms | None) -> tuple[Tensor, Tensor]:
        values = dist.sample(uniforms=uniforms, probs=theta, validate=False) if sampling else theta  # θ projected
        return values, dist.pairs

    def inner(w, hparams, batch):
        uniforms, masks = batch
        values, pairs = graph(hparams[0], uniforms)
        logits = network_logits(w, prep, values, pairs, backbone=backbone, dropout=dropout, masks=masks)
        penalty = gcn_l2_penalty(w, weight_decay) if backbone is None else backbone.l2_penalty(w, weight_decay)
        return F.cross_entropy(logits[train_idx], y[train_idx]) + penalty

    def make_outer(uniforms: EdgeUniforms | None) -> Callable[..., Tensor]:
        def outer(w, hparams):
            values, pairs = graph(hparams[0], uniforms)
            logits = network_logits(w, prep, values, pairs, backbone=backbone)
            return F.cross_entropy(logits[val_idx], y[val_idx])

        return outer

    return inner, make_outer


# ----------------------------------------------------------------------------- the estimator


def check_int_setting(estimator: Any, name: str, minimum: int = 1) -> None:
    """Raise unless the estimator's setting ``name`` is an int (not a bool) ``>= minimum``."""
    v = getattr(estimator, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}.")


def check_dtype_and_device(dtype: Any, device: Any) -> torch.device:
    """Raise unless ``dtype`` is ``"float32"``/``"float64"`` and this torch/machine can use ``device``; return
    ``torch.device(device)``."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be e.g. 'cpu', 'cuda' or 'cuda:0', got {device!r} ({exc}).") from None
    try:
        torch.empty(0, device=dev)
    except (AssertionError, RuntimeError) as exc:
        hint = " (torch.cuda.is_available() is False here)" if dev.type == "cuda" else ""
        raise ValueError(f"device={str(dev)!r} is not usable{hint}: {exc}. Use device='cpu'.") from None
    return dev


class LDS(BaseEstimator):
    """LDS / kNN-LDS estimator (scikit-learn contract: ``fit`` returns self, ``predict``, ``score``).

    Args:
        hypergrad_every: τ, inner steps per hypergradient window (≥ 1).
        truncate: steps back-propagated per window (default τ; 0 = plain alternating optimisation).
        outer_lr: η₀ of the outer SGD, ``η_k = η₀ / (1 + outer_lr_decay·k)``.
        outer_lr_decay: inverse-time decay of the outer learning rate, per θ update.
        inner_lr: initial inner Adam learning rate (0.02).
        learn_inner_lr: learn it as ``a + σ(λ)(b - a)``, ``(a, b) = (1e-4, 0.05)``.
        num_samples: S, graphs averaged for predictions.
        patience: early-stopping patience in outer iterations.
        max_inner_steps, inner_patience, inner_tol: inner stopping rule.
        max_outer_iters: maximum outer iterations.
        candidates: ``"auto"``, ``"all"`` or ``"sparse"`` (given ∪ kNN(k)).
        max_all_pairs: with ``"auto"``, all pairs are used up to this many pairs.
        k, metric: the kNN graph (initial graph without input graph; extra candidates when sparse).
        candidate_k: with sparse candidates, the candidate set is the initial graph ∪ kNN(candidate_k).
            Default: ``k`` when the data has a graph; ``2k`` without one, where the initial graph is kNN(k)
            itself (candidates equal to the initial graph would let LDS remove edges but never add one).
        init_prob: θ on candidates outside the initial graph.
        sampling: ``False`` runs the GCN on ``A = θ`` (kNN-LDS (dense)); ``True`` samples ``A ~ Ber(θ)``.
        hidden, dropout, weight_decay: the GCN (16, 0.5, 5e-4 on the first layer).
        normalize_features: Kipf's row normalisation of the features (``"auto"``: when non-negative).
        inner_eps: ε of the inner Adam.
        backbone: ``"gcn"`` (built-in, sparse forward, any candidate set), or on a sparse candidate set
            ``"gcnconv"``, ``"graphconv"`` or a factory ``(in_channels, out_channels) -> MessagePassing``
            (PyG layers taking ``edge_weight``), run through :class:`bilevel_core.FunctionalModule`.
        checkpoint_every: outer iterations between checkpoints (when ``checkpoint`` is given to fit).
        seed, device, dtype, verbose.
    """

    def __init__(
        self,
        hypergrad_every: int = 5,
        truncate: int | None = None,
        outer_lr: float = 1.0,
        outer_lr_decay: float = 1e-3,
        inner_lr: float = 0.02,
        learn_inner_lr: bool = True,
        inner_eps: float = 1e-8,
        num_samples: int = 16,
        patience: int = 20,
        max_inner_steps: int = 400,
        inner_patience: int = 20,
        inner_tol: float = 1e-3,
        max_outer_iters: int = 200,
        candidates: str = "auto",
        max_all_pairs: int = 6_000_000,
        k: int = 10,
        candidate_k: int | None = None,
        metric: str = "cosine",
        init_prob: float = 0.0,
        sampling: bool = True,
        hidden: int = 16,
        dropout: float = 0.5,
        weight_decay: float = 5e-4,
        normalize_features: bool | str = "auto",
        backbone: str | Callable[[int, int], Any] = "gcn",
        checkpoint_every: int = 5,
        seed: int = 0,
        device: str = "cpu",
        dtype: str = "float32",
        verbose: bool = True,
    ) -> None:
        self.hypergrad_every = hypergrad_every
        self.truncate = truncate
        self.outer_lr = outer_lr
        self.outer_lr_decay = outer_lr_decay
        self.inner_lr = inner_lr
        self.learn_inner_lr = learn_inner_lr
        self.inner_eps = inner_eps
        self.num_samples = num_samples
        self.patience = patience
        self.max_inner_steps = max_inner_steps
        self.inner_patience = inner_patience
        self.inner_tol = inner_tol
        self.max_outer_iters = max_outer_iters
        self.candidates = candidates
        self.max_all_pairs = max_all_pairs
        self.k = k
        self.candidate_k = candidate_k
        self.metric = metric
        self.init_prob = init_prob
        self.sampling = sampling
        self.hidden = hidden
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.normalize_features = normalize_features
        self.backbone = backbone
        self.checkpoint_every = checkpoint_every
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ settings
    def _check_settings(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            check_int_setting(self, name, minimum)

        positive_int("hypergrad_every")
        for name in ("num_samples", "patience", "max_inner_steps", "inner_patience", "max_outer_iters",
                     "hidden", "checkpoint_every"):
            positive_int(name)
        positive_int("k", 0)
        if self.candidate_k is not None:
            positive_int("candidate_k")
        if self.truncate is not None:
            positive_int("truncate", 0)
            if self.truncate > self.hypergrad_every:
                raise ValueError(
                    f"truncate={self.truncate} exceeds hypergrad_every={self.hypergrad_every}: the hypergradient "
                    "of a window can go back at most τ steps."
                )
        if not self.outer_lr > 0:
            raise ValueError(f"outer_lr must be > 0, got {self.outer_lr}.")
        a, b = INNER_LR_RANGE
        if self.learn_inner_lr and not a < self.inner_lr < b:
            raise ValueError(f"inner_lr must be in ({a}, {b}) when learned, got {self.inner_lr}.")
        if self.candidates not in ("auto", "all", "sparse"):
            raise ValueError(f"candidates must be 'auto', 'all' or 'sparse', got {self.candidates!r}.")
        if self.metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got {self.metric!r}.")
        if not 0.0 <= self.init_prob <= 1.0:
            raise ValueError(f"init_prob must be in [0, 1], got {self.init_prob}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if isinstance(self.backbone, str) and self.backbone not in ("gcn", "gcnconv", "graphconv"):
            raise ValueError(f"backbone must be 'gcn', 'gcnconv', 'graphconv' or a callable, got {self.backbone!r}.")
        check_dtype_and_device(self.dtype, self.device)

    @property
    def _torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    # ------------------------------------------------------------------ setup
    def _prepare(self, data: Any) -> PreparedData:
        x, y, masks, num_classes = validate_data(data)
        device = torch.device(self.device)
        val_outer, val_stop = split_validation(masks["val_mask"], self.seed)
        y_safe = y.clone().long()
        y_safe[y_safe < 0] = 0  # unlabelled nodes (never read)
        return PreparedData(
            x=preprocess_features(x.to(device=device, dtype=self._torch_dtype), self.normalize_features),
            y=y_safe.to(device),
            num_classes=num_classes,
            train_idx=torch.nonzero(masks["train_mask"], as_tuple=True)[0].to(device),
            val_outer_idx=val_outer.to(device),
            val_stop_idx=val_stop.to(device),
            edge_index=data.edge_index if getattr(data, "edge_index", None) is not None
            else torch.empty(2, 0, dtype=torch.long),
            num_nodes=x.size(0),
        )

    def _resolved_candidates(self, n: int) -> str:
        """``"all"`` or ``"sparse"``: all pairs up to ``max_all_pairs`` with the built-in GCN, else sparse."""
        if self.candidates != "auto":
            return self.candidates
        if self.backbone != "gcn":
            return "sparse"
        return "all" if n * (n - 1) // 2 <= self.max_all_pairs else "sparse"

    def _make_backbone(self, prep: PreparedData) -> Backbone | None:
        if isinstance(self.backbone, str) and self.backbone == "gcn":
            return None
        if self._resolved_candidates(prep.num_nodes) == "all":
            raise ValueError(
                f"backbone={self.backbone!r} on all pairs would pass every pair as an edge; all pairs work with the "
                "built-in GCN only: use candidates='sparse' (given/kNN edges ∪ kNN(k)) or backbone='gcn'."
            )
        return Backbone(self.backbone, prep.x.size(1), self.hidden, prep.num_classes, self._torch_dtype,
                        prep.x.device)

    def _candidate_k(self, has_graph: bool) -> int:
        """k of the kNN pairs added to a sparse candidate set (see ``candidate_k``)."""
        if self.candidate_k is not None:
            return self.candidate_k
        return self.k if has_graph else 2 * self.k

    def _build_distribution(self, prep: PreparedData) -> EdgeDistribution:
        n = prep.num_nodes
        has_graph = prep.edge_index.numel() > 0
        knn = None
        if self.k > 0 and (not has_graph or self._resolved_candidates(n) == "sparse"):
            if self.k >= n:
                raise ValueError(f"k={self.k} must be smaller than the number of nodes ({n}).")
            from lds.datasets import knn_graph

            knn = knn_graph(prep.x.cpu(), self.k, metric=self.metric)
        if not has_graph and knn is None:
            raise ValueError("the data has no graph and k=0: give k >= 1 (kNN initial graph) or data.edge_index.")
        init_edges = prep.edge_index.cpu() if has_graph else knn
        candidates = self._resolved_candidates(n)
        extra = None
        if candidates == "sparse":
            extra = knn
            k_cand = self._candidate_k(has_graph)
            if k_cand != self.k and k_cand > 0:
                if k_cand >= n:
                    raise ValueError(f"candidate_k={k_cand} must be smaller than the number of nodes ({n}).")
                from lds.datasets import knn_graph

                extra = knn_graph(prep.x.cpu(), k_cand, metric=self.metric)
        return EdgeDistribution.from_candidates(
            n,
            candidates=candidates,
            init_edge_index=init_edges,
            extra_edge_index=extra,
            init_prob=self.init_prob,
            dtype=self._torch_dtype,
            device=self.device,
        )

    def _inner_lr(self, hparams) -> Tensor | float:
        if not self.learn_inner_lr:
            return self.inner_lr
        a, b = INNER_LR_RANGE
        return a + torch.sigmoid(hparams[1]) * (b - a)

    # ------------------------------------------------------------------ fit
    def fit(self, data: Any, *, checkpoint: str | os.PathLike | None = None,
            resume: str | os.PathLike | None = None,
            callback: Callable[[int, dict[str, float], EdgeDistribution], Any] | None = None) -> LDS:
        """Algorithm 7 (thesis Sec. 9.3) on ``data``; keeps the best θ and GCN weights by early stopping.

        Args:
            data: a PyG ``Data`` with ``x``, ``y``, ``train_mask``, ``val_mask`` (``edge_index`` optional).
            checkpoint: path of a resumable checkpoint, written atomically every ``checkpoint_every``
                outer iterations.
            resume: path of a checkpoint to continue from (same data and settings).
            callback: ``callback(iteration, record, distribution)`` after every outer iteration, with the
                history record and the current (live, do not modify) edge distribution, e.g. to follow θ.
        """
        from tqdm.auto import tqdm

        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}.")

        self._check_settings()
        prep = self._prepare(data)
        torch_dtype = self._torch_dtype
        device = torch.device(self.device)
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        dist = self._build_distribution(prep)
        self.backbone_ = self._make_backbone(prep)
        a, b = INNER_LR_RANGE
        lr_logit = torch.tensor(math.log((self.inner_lr - a) / (b - self.inner_lr)), dtype=torch_dtype,
                                device=device)
        self.initial_num_edges_ = dist.expected_num_edges()
        start_iter, num_updates, best, since_best = 0, 0, None, 0
        history: list[dict[str, float]] = []
        elapsed = 0.0  # compute time of earlier runs of this fit (resume): times below add up across resumes
        if resume is not None:
            ck = torch.load(resume, map_location=device, weights_only=False)
            self._check_resume(ck, dist)
            dist.probs.copy_(ck["probs"])
            dist.invalidate()
            lr_logit.copy_(ck["lr_logit"])
            gen.set_state(ck["generator"])
            start_iter, num_updates, since_best = ck["iteration"], ck["num_updates"], ck["since_best"]
            best, history = ck["best"], ck["history"]
            elapsed = float(ck.get("elapsed", history[-1]["time"] if history else 0.0))

        truncate = self.hypergrad_every if self.truncate is None else self.truncate
        t0 = time.perf_counter() - elapsed
        bar = tqdm(total=self.max_outer_iters, initial=start_iter, disable=not self.verbose, desc="LDS",
                   dynamic_ncols=True)
        interrupted = False
        try:
            for it in range(start_iter, self.max_outer_iters):
                params, steps, num_updates = self._outer_iteration(prep, dist, lr_logit, gen, num_updates, truncate)
                val_acc, val_loss = self._evaluate(params, prep, dist, dist.probs, prep.val_stop_idx)
                record = {"iteration": it, "val_acc": val_acc, "val_loss": val_loss, "inner_steps": steps,
                          "expected_edges": dist.expected_num_edges(), "inner_lr": float(self._inner_lr(
                              (dist.probs, lr_logit))), "time": time.perf_counter() - t0}
                history.append(record)
                if callback is not None:
                    callback(it, record, dist)
                if best is None or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"]):
                    best = {"val_acc": val_acc, "val_loss": val_loss, "iteration": it,
                            "probs": dist.probs.detach().clone(), "params": tuple(p.detach().clone() for p in params),
                            "lr_logit": lr_logit.detach().clone()}
                    since_best = 0
                else:
                    since_best += 1
                bar.update(1)
                bar.set_postfix(val_acc=f"{val_acc:.4f}", best=f"{best['val_acc']:.4f}",
                                edges=f"{record['expected_edges']:.0f}", steps=steps)
                done = since_best >= self.patience
                if checkpoint is not None and ((it + 1) % self.checkpoint_every == 0 or done):
                    self._save_checkpoint(checkpoint, time.perf_counter() - t0, dist, lr_logit, gen, it + 1,
                                          num_updates, since_best, best, history)
                if done:
                    break
        except KeyboardInterrupt:
            interrupted = True
            warnings.warn("fit interrupted: keeping the best model found so far.", stacklevel=2)
        finally:
            bar.close()
        if best is None:
            raise RuntimeError("fit was interrupted before the first outer iteration finished; nothing to keep.")
        self._set_fitted(prep, dist, best, history)
        self.interrupted_ = interrupted
        self.fit_time_ = time.perf_counter() - t0
        return self

    def _outer_iteration(self, prep: PreparedData, dist: EdgeDistribution, lr_logit: Tensor,
                         gen: torch.Generator, num_updates: int, truncate: int) -> tuple[tuple[Tensor, ...], int, int]:
        """Reset w, run Adam on fresh samples; every τ steps a truncated hypergradient and a θ update."""
        if self.backbone_ is None:
            params = init_gcn_params(prep.x.size(1), self.hidden, prep.num_classes, generator=gen,
                                     dtype=self._torch_dtype, device=prep.x.device)
        else:
            params = self.backbone_.init_params(gen)
        hp = (dist.probs, lr_logit)
        inner, make_outer = lds_objectives(prep, dist, sampling=self.sampling, dropout=self.dropout,
                                           weight_decay=self.weight_decay, backbone=self.backbone_)

        def batches(t: int) -> tuple[EdgeUniforms | None, tuple[Tensor, Tensor]]:
            uniforms = dist.draw(gen) if self.sampling else None
            masks = sample_dropout_masks(prep.x, (prep.num_nodes, self.hidden), self.dropout, gen,
                                         self._torch_dtype, prep.x.device)
            return uniforms, masks

        dynamics = Adam(inner, lr=self._inner_lr, eps=self.inner_eps)
        stop = TrainLossStall(self.inner_patience, self.inner_tol)
        # Deferring pays where the pair gradient is a dense N×N product (all pairs); on a sparse candidate
        # set the per-use gather is cheaper (Cora, given ∪ kNN-20: 22 ms per step against 36 ms deferred).
        defer = self.backbone_ is None and candidate_graph(dist.pairs, prep.num_nodes, validate=False).mode == "dense"
        state: Any = params
        steps = 0
        while steps < self.max_inner_steps:
            window = min(self.hypergrad_every, self.max_inner_steps - steps)
            outer = make_outer(dist.draw(gen) if self.sampling else None)
            # The built-in GCN reaches θ through values = θ or a straight-through sample (∂values/∂θ = I):
            # its pair gradients are summed over the window and formed once (one N×N product per window).
            deferred = defer_pair_gradients(dist.pairs, prep.num_nodes) if defer else nullcontext()
            # Without sampling every step of the window propagates on θ itself: one graph build per window.
            reuse = nullcontext() if self.sampling else reuse_sampled_graphs()
            with deferred as acc, reuse:
                grads, state = hypergradient(state, hp, dynamics, outer, window, truncate=min(truncate, window),
                                             batches=batches, stop=stop, return_state=True)
            if acc is not None:
                grads = (grads[0] + acc.gradient(like=grads[0]), *grads[1:])
            lr_k = self.outer_lr / (1.0 + self.outer_lr_decay * num_updates)
            with torch.no_grad():
                dist.probs.sub_(lr_k * grads[0])
                if self.learn_inner_lr:
                    lr_logit.sub_(lr_k * grads[1])
            dist.project_()
            num_updates += 1
            steps = state.t
            if state.stopped:
                break
        return state.params, steps, num_updates

    # ------------------------------------------------------------------ evaluation
    def _mean_proba(self, params, prep: PreparedData, dist: EdgeDistribution, theta: Tensor) -> Tensor:
        """Class probabilities averaged over S graphs ``A ~ Ber(θ)`` (or on ``A = θ`` without sampling)."""
        gen = torch.Generator(device="cpu").manual_seed(self.seed + 7919)
        with torch.no_grad():
            if not self.sampling:
                return torch.softmax(network_logits(params, prep, theta, dist.pairs, backbone=self.backbone_), dim=1)
            total = None
            for _ in range(self.num_samples):
                values = dist.sample(uniforms=dist.draw(gen), probs=theta, validate=False)
                p = torch.softmax(network_logits(params, prep, values, dist.pairs, backbone=self.backbone_), dim=1)
                total = p if total is None else total + p
            return total / self.num_samples

    def _evaluate(self, params, prep, dist, theta, idx) -> tuple[float, float]:
        proba = self._mean_proba(params, prep, dist, theta)
        acc = float((proba[idx].argmax(1) == prep.y[idx]).double().mean())
        loss = float(F.nll_loss(torch.log(proba[idx].clamp_min(1e-12)), prep.y[idx]))
        return acc, loss

    def _set_fitted(self, prep: PreparedData, dist: EdgeDistribution, best: dict[str, Any],
                    history: list[dict[str, float]]) -> None:
        dist.probs.copy_(best["probs"])
        dist.invalidate()
        self.distribution_ = dist
        self.params_ = best["params"]
        self.inner_lr_ = float(self._inner_lr((dist.probs, best["lr_logit"])))
        self.best_iteration_ = best["iteration"]
        self.best_val_acc_ = best["val_acc"]
        self.history_ = history
        self.num_classes_ = prep.num_classes
        self.num_nodes_ = prep.num_nodes
        self.in_features_ = prep.x.size(1)
        self.val_outer_idx_ = prep.val_outer_idx.cpu()
        self.val_stop_idx_ = prep.val_stop_idx.cpu()

    # ------------------------------------------------------------------ predictions
    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError("this LDS model is not fitted yet: call fit(data) first.")

    def _prep_for_predict(self, data: Any) -> PreparedData:
        self._check_fitted()
        x = getattr(data, "x", None)
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(0) != self.num_nodes_:
            raise ValueError(
                f"data.x must have {self.num_nodes_} rows (LDS is transductive: predict on the graph it was fit on)."
            )
        x = preprocess_features(x.to(device=self.device, dtype=self._torch_dtype), self.normalize_features)
        return PreparedData(x=x, y=torch.zeros(0, dtype=torch.long),
                            num_classes=self.num_classes_, train_idx=torch.empty(0, dtype=torch.long),
                            val_outer_idx=self.val_outer_idx_, val_stop_idx=self.val_stop_idx_,
                            edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=self.num_nodes_)

    def predict_proba(self, data: Any) -> Tensor:
        """Class probabilities (N, C), averaged over S sampled graphs (LDS eq. 9.8)."""
        prep = self._prep_for_predict(data)
        return self._mean_proba(self.params_, prep, self.distribution_, self.distribution_.probs).cpu()

    def predict(self, data: Any) -> Tensor:
        """Predicted class of every node (N,)."""
        return self.predict_proba(data).argmax(dim=1)

    def score(self, data: Any, mask: Tensor | None = None) -> float:
        """Accuracy on ``mask`` (default ``data.test_mask``), in [0, 1]."""
        if mask is None:
            mask = getattr(data, "test_mask", None)
            if mask is None:
                raise ValueError("score needs a mask: pass score(data, data.test_mask).")
        pred = self.predict(data)
        y = data.y.cpu()
        mask = mask.cpu()
        if int(mask.sum()) == 0:
            raise ValueError("the mask selects no nodes.")
        return float((pred[mask] == y[mask]).double().mean())

    def edge_probs(self) -> tuple[Tensor, Tensor]:
        """The learned distribution as ``(edge_index, probs)`` (both directions, pairs with θ > 0)."""
        self._check_fitted()
        return self.distribution_.edge_probs()

    # ------------------------------------------------------------------ persistence
    def _save_checkpoint(self, path, elapsed, dist, lr_logit, gen, iteration, num_updates, since_best, best,
                         history) -> None:
        state = {"kind": "lds-checkpoint", "elapsed": elapsed, "params": self.get_params(),
                 "probs": dist.probs.detach().cpu(),
                 "num_pairs": dist.pairs.size(1), "lr_logit": lr_logit.detach().cpu(), "generator": gen.get_state(),
                 "iteration": iteration, "num_updates": num_updates, "since_best": since_best, "best": best,
                 "history": history}
        _atomic_save(state, path)

    def _check_resume(self, ck: dict[str, Any], dist: EdgeDistribution) -> None:
        if ck.get("kind") != "lds-checkpoint":
            raise ValueError("resume= is not an LDS checkpoint (written by fit(..., checkpoint=path)).")
        if ck["num_pairs"] != dist.pairs.size(1):
            raise ValueError(
                f"the checkpoint has {ck['num_pairs']} candidate pairs but this data gives {dist.pairs.size(1)}: "
                "resume with the same data and settings."
            )
        mine, theirs = self.get_params(), ck["params"]
        diff = {k for k in mine if k not in ("verbose", "max_outer_iters", "checkpoint_every", "device")
                and mine[k] != theirs.get(k)}
        if diff:
            raise ValueError(f"the checkpoint was written with different settings: {sorted(diff)}.")

    def save(self, path: str | os.PathLike) -> None:
        """Save the fitted model (settings, θ, GCN weights) atomically."""
        self._check_fitted()
        state = {"kind": "lds-model", "params": self.get_params(), "distribution": self.distribution_.state_dict(),
                 "gcn": tuple(p.cpu() for p in self.params_), "inner_lr": self.inner_lr_,
                 "num_classes": self.num_classes_, "num_nodes": self.num_nodes_, "history": self.history_,
                 "in_features": self.in_features_,
                 "best_iteration": self.best_iteration_, "best_val_acc": self.best_val_acc_,
                 "val_outer_idx": self.val_outer_idx_, "val_stop_idx": self.val_stop_idx_,
                 "initial_num_edges": self.initial_num_edges_}
        _atomic_save(state, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> LDS:
        """Load a model written by :meth:`save`."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("kind") != "lds-model":
            raise ValueError(f"{path} is not a saved LDS model (write one with model.save(path)).")
        params = dict(state["params"])
        if device is not None:
            params["device"] = device
        model = cls(**params)
        model.distribution_ = EdgeDistribution.from_state_dict(state["distribution"], device=model.device)
        model.params_ = tuple(p.to(model.device) for p in state["gcn"])
        model.inner_lr_ = state["inner_lr"]
        model.num_classes_ = state["num_classes"]
        model.num_nodes_ = state["num_nodes"]
        model.in_features_ = state["in_features"]
        model.backbone_ = None
        if not (isinstance(model.backbone, str) and model.backbone == "gcn"):
            model.backbone_ = Backbone(model.backbone, model.in_features_, model.hidden, model.num_classes_,
                                       model._torch_dtype, model.device)
        model.history_ = state["history"]
        model.best_iteration_ = state["best_iteration"]
        model.best_val_acc_ = state["best_val_acc"]
        model.val_outer_idx_ = state["val_outer_idx"]
        model.val_stop_idx_ = state["val_stop_idx"]
        model.initial_num_edges_ = state["initial_num_edges"]
        return model


def _atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """Write with ``torch.save`` to a temporary file, then rename (no torn checkpoint on a crash)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)

