"""LDS: Learning Discrete Structures for GNNs (Franceschi, Niepert, Pontil & He, ICML 2019).

Thesis Algorithm 7 on :mod:`bilevel_core`: the graph is a random variable ``A ~ Ber(θ)`` over a
candidate set of pairs; the inner problem trains a 2-layer GCN with Adam on a fresh sample at every
step; every τ steps (``hypergrad_every``) the truncated reverse hypergradient of the validation
cross-entropy (one half of the validation nodes) updates θ by projected SGD. Early stopping uses
the other validation half, with predictions averaged over S sampled graphs.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import math
import numbers
import os
import pickle
import struct
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from torch import Tensor

from bilevel_core import Adam, DynamicsState, HyperOptimizer, project_box
from bilevel_core.optim import InverseTimeAdam, InverseTimeSGD

from .backbones import Backbone
from .edges import EdgeDistribution, EdgeUniforms
from .gcn import (
    DropoutMasks,
    NodeFeatures,
    _drop_features,
    gcn_forward,
    gcn_l2_penalty,
    init_gcn_params,
    preprocess_features,
    sample_dropout_masks,
)
from .gcn import Params as GCNParams
from .propagation import (
    CandidateGraph,
    PairGradientAccumulator,
    candidate_graph,
    check_pairs,
    reuse_sampled_graphs,
    to_edge_index,
)
from .typing import GraphData, HParams, NetParams

if TYPE_CHECKING:
    from .baselines import GCNBaseline

INNER_LR_RANGE = (1e-4, 0.05)
VARIANTS = ("paper", "refit", "select")
INIT_GRAPHS = ("auto", "given", "knn", "none")
#: initialisations averaged by the init_graph="auto" check (LDS._init_check)
INIT_CHECK_RESTARTS = 2
#: standard errors by which the network without a graph must beat the given graph for init_graph="auto" to
#: judge that the graph hurts (and start from kNN(k) or the empty graph)
INIT_CHECK_Z = 2.0
#: the outer optimisers and their default step η₀
OUTER_OPTIMIZERS: Mapping[str, float] = MappingProxyType({"sgd": 1.0, "adam": 0.01})
SEED_LIMIT = 2**63  # seeds are ints in [0, 2**63): torch.Generator takes < 2**64, and seed + 7919 must fit too


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
    features: NodeFeatures = field(init=False, repr=False)
    """``x`` with its nonzero index and sparse first layer, derived once per fit (the fit's feature cache)."""

    def __post_init__(self) -> None:
        self.features = NodeFeatures(self.x)


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
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"data.y must hold integer class labels, got {y.dtype}; convert with data.y.long().")
    labels = y[used]
    if int(labels.min()) < 0:
        raise ValueError(
            f"labels out of range: data.y has {int((labels < 0).sum())} negative labels inside the masks; "
            "labels outside every mask may be -1, labels inside must be 0..C-1."
        )
    inferred = int(labels.max()) + 1
    source = "the largest label + 1"
    if num_classes is None:
        attr = getattr(data, "num_classes_", None)
        if attr is not None:
            num_classes, source = attr, "data.num_classes_"
        else:
            num_classes = inferred
    else:
        source = "num_classes"
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise TypeError(f"{source} must be an int (the number of classes), got {num_classes!r}.")
    num_classes = int(num_classes)
    if inferred > num_classes:
        raise ValueError(f"labels out of range: found label {inferred - 1} but num_classes={num_classes}.")
    present = torch.unique(labels)
    if present.numel() < 2:
        raise ValueError(
            f"the labelled nodes (train ∪ val ∪ test masks) all have class {int(present[0])}: LDS needs at least "
            "2 classes among them."
        )
    if present.numel() != num_classes:
        missing = sorted(set(range(num_classes)) - set(present.tolist()))
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise ValueError(
            f"labels must be 0..C-1 with every class present among the labelled nodes (train ∪ val ∪ test masks): "
            f"C={num_classes} ({source}) but {len(missing)} classes never appear ({shown}); relabel the classes "
            "to consecutive ids 0..C-1 (e.g. with torch.unique(labels, return_inverse=True))."
        )
    edge_index = getattr(data, "edge_index", None)
    if edge_index is None:
        edge_index = torch.empty(2, 0, dtype=torch.long)
    if not isinstance(edge_index, Tensor):
        raise TypeError(
            f"data.edge_index must be a torch.long tensor of shape (2, E), got {type(edge_index).__name__}; "
            "convert with torch.from_numpy(edge_index).long()."
        )
    if edge_index.is_floating_point() or edge_index.is_complex() or edge_index.dtype == torch.bool:
        raise TypeError(
            f"data.edge_index must hold integer node indices (torch.long), got {edge_index.dtype}; "
            "convert with data.edge_index.long()."
        )
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


def data_fingerprint(x: Tensor, y: Tensor, masks: dict[str, Tensor], edge_index: Tensor | None,
                     num_classes: int) -> dict[str, Any]:
    """SHA-256 of each data tensor (shape + bytes in a canonical CPU dtype), to tie a checkpoint to its data."""
    parts: dict[str, Any] = {"num_classes": int(num_classes)}
    canonical: dict[str, tuple[Tensor | None, torch.dtype]] = {
        "x": (x, torch.float64), "y": (y, torch.int64),
        "edge_index": (torch.empty(2, 0) if edge_index is None else edge_index, torch.int64)}
    canonical.update({name: (masks.get(name), torch.uint8) for name in ("train_mask", "val_mask", "test_mask")})
    for name, (t, dtype) in canonical.items():
        if t is None:
            parts[name] = None
            continue
        t = t.detach().to(device="cpu", dtype=dtype).contiguous()
        h = hashlib.sha256(repr(tuple(t.shape)).encode())
        h.update(t.numpy())  # type: ignore[arg-type]  # numpy declares ndarray.__buffer__ only for Python >= 3.12
        parts[name] = f"{tuple(t.shape)}:{h.hexdigest()}"
    return parts


def check_predict_features(data: Any, num_nodes: int, in_features: int | None = None) -> Tensor:
    """``data.x`` checked for prediction: finite floats, ``num_nodes`` rows (and ``in_features`` columns)."""
    x = getattr(data, "x", None)
    if not isinstance(x, Tensor) or x.dim() != 2 or x.size(0) != num_nodes:
        raise ValueError(
            f"data.x must have {num_nodes} rows (LDS is transductive: predict on the graph it was fit on), got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}."
        )
    if in_features is not None and x.size(1) != in_features:
        raise ValueError(f"data.x must have {in_features} features (as in fit), got {x.size(1)}.")
    if not x.is_floating_point():
        raise TypeError(f"data.x must be floating point, got {x.dtype}; convert with data.x.float().")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise ValueError(f"data.x contains NaN or infinite values in {bad} rows; impute or drop them first.")
    return x


def check_score_inputs(data: Any, mask: Any, num_nodes: int) -> tuple[Tensor, Tensor]:
    """The boolean ``mask`` (default ``data.test_mask``) and ``data.y`` on CPU, checked for ``score``."""
    if mask is None:
        mask = getattr(data, "test_mask", None)
        if mask is None:
            raise ValueError("score needs a mask: pass score(data, data.test_mask).")
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(
            f"mask must be a boolean tensor of length {num_nodes}, got {got}; for 0/1 values use mask.bool(), for "
            f"node indices build one: m = torch.zeros({num_nodes}, dtype=torch.bool); m[idx] = True."
        )
    if mask.shape != (num_nodes,):
        raise ValueError(f"mask must have shape ({num_nodes},) (one entry per node), got {tuple(mask.shape)}.")
    y = getattr(data, "y", None)
    if not isinstance(y, Tensor) or y.shape != (num_nodes,):
        raise ValueError(f"data.y must be a tensor of {num_nodes} labels, got {getattr(y, 'shape', type(y))}.")
    mask, y = mask.cpu(), y.cpu()
    if int(mask.sum()) == 0:
        raise ValueError("the mask selects no nodes.")
    if int((y[mask] < 0).sum()):
        raise ValueError(f"the mask selects {int((y[mask] < 0).sum())} unlabelled nodes (label < 0).")
    return mask, y


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


def network_logits(w: NetParams, prep: PreparedData, values: Tensor, pairs: Tensor | CandidateGraph, *,
                   backbone: Backbone | None = None, dropout: float = 0.5,
                   masks: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Logits of the GNN on the graph ``values`` over ``pairs``: the built-in GCN (sparse forward), or a
    message-passing ``backbone`` that sees every candidate pair as an edge of weight 0 or 1. Pass the fit's
    :class:`CandidateGraph` (``dist.candidates``) so that its derived tensors are built once."""
    if not isinstance(pairs, CandidateGraph):
        pairs = candidate_graph(pairs, prep.num_nodes)
    if backbone is None:  # the built-in GCN's weights are (W1, W2)
        return gcn_forward(cast(GCNParams, w), prep.features, (values, pairs), dropout=dropout, dropout_masks=masks,
                           training=masks is not None)
    edge_index, edge_weight = to_edge_index(values, pairs.pairs, keep_zeros=True)
    x = prep.x if masks is None else _drop_features(prep.features, masks[0])
    return backbone(w, x, edge_index, edge_weight, None if masks is None else masks[1])


def lds_objectives(
    prep: PreparedData, dist: EdgeDistribution, *, sampling: bool = True, dropout: float = 0.5,
    weight_decay: float = 5e-4, backbone: Backbone | None = None,
) -> tuple[Callable[..., Tensor], Callable[[EdgeUniforms | None], Callable[..., Tensor]]]:
    """The inner and outer objectives of LDS (thesis eqs. 9.4-9.5), for ``hparams = (θ, λ_lr)``.

    ``inner(w, hparams, batch)``: train cross-entropy of the GCN on ``A_t ~ Ber(θ)`` (straight-through;
    ``batch = (uniforms, dropout_masks)`` fixes the sample and the dropout) plus ``ρ·½‖W₁‖²``.
    ``make_outer(uniforms)`` returns ``outer(w, hparams)``: unregularised cross-entropy on the outer
    validation half, on its own straight-through sample, without dropout. Without ``sampling`` the
    GCN runs on ``A = θ`` (kNN-LDS (dense)). ``backbone`` replaces the built-in GCN.
    """
    train_idx, val_idx, y = prep.train_idx, prep.val_outer_idx, prep.y

    def graph(theta: Tensor, uniforms: EdgeUniforms | None) -> tuple[Tensor, CandidateGraph]:
        values = dist.sample(uniforms=uniforms, probs=theta, validate=False) if sampling else theta  # θ projected
        return values, dist.candidates

    def inner(w: NetParams, hparams: HParams, batch: tuple[EdgeUniforms | None, DropoutMasks]) -> Tensor:
        uniforms, masks = batch
        values, pairs = graph(hparams[0], uniforms)
        logits = network_logits(w, prep, values, pairs, backbone=backbone, dropout=dropout, masks=masks)
        penalty = (gcn_l2_penalty(cast(GCNParams, w), weight_decay) if backbone is None
                   else backbone.l2_penalty(w, weight_decay))
        return F.cross_entropy(logits[train_idx], y[train_idx]) + penalty

    def make_outer(uniforms: EdgeUniforms | None) -> Callable[..., Tensor]:
        def outer(w: NetParams, hparams: HParams) -> Tensor:
            values, pairs = graph(hparams[0], uniforms)
            logits = network_logits(w, prep, values, pairs, backbone=backbone)
            return F.cross_entropy(logits[val_idx], y[val_idx])

        return outer

    return inner, make_outer


def _defer_pair_gradients(dist: EdgeDistribution, backbone: Backbone | None) -> bool:
    """Whether a window forms θ's pair gradient once (:class:`PairGradientAccumulator`) instead of per use.

    Deferring pays where the pair gradient is a dense N×N product (all pairs); on a sparse candidate set the
    per-use gather is cheaper (Cora, given ∪ kNN-20: 22 ms per step against 36 ms deferred). It needs
    ``∂values/∂θ = I``, which holds for the built-in GCN (values = θ or a straight-through sample).
    """
    return backbone is None and dist.candidates.mode == "dense"


def _initial_index(dist: EdgeDistribution) -> Tensor:
    """Indices of θ₀'s edges in the candidate set: the candidates with θ = 1 (before θ moves)."""
    return torch.nonzero(dist.probs.detach() == 1.0, as_tuple=True)[0]


# ----------------------------------------------------------------------------- the state of a fit


@dataclass
class FitState:
    """Everything one fit carries from an outer iteration to the next: the single source of its checkpoint,
    of resume and of the fitted model (Algorithm 7's loop state).

    Attributes:
        theta: θ, the edge probabilities (the distribution's ``probs``; a leaf the outer optimiser updates).
        lr_logit: λ of the learned inner learning rate ``a + σ(λ)(b - a)`` (0 and never read when fixed).
        generator: the only source of randomness of the fit (samples, dropout, initial weights).
        optimizer: the outer optimiser over θ (and λ when learned): :class:`~bilevel_core.optim.InverseTimeSGD`
            or :class:`~bilevel_core.optim.InverseTimeAdam`.
        iteration: the next outer iteration.
        since_best: outer iterations since the best early-stopping score (patience).
        best: the best iteration so far: ``val_acc``, ``val_loss``, ``iteration``, ``probs``, ``params``,
            ``lr_logit`` (``None`` before the first one).
        history: one record per finished outer iteration.
        elapsed: compute seconds of earlier runs of this fit (resume): times add up across resumes.
    """

    theta: Tensor
    lr_logit: Tensor
    generator: torch.Generator
    optimizer: InverseTimeSGD  # or its subclass InverseTimeAdam
    iteration: int = 0
    since_best: int = 0
    best: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def num_updates(self) -> int:
        """θ updates so far, ``k`` of the step ``η_k = η₀ / (1 + d·k)``."""
        return int(self.optimizer.state[self.theta].get("step", 0)) if self.theta in self.optimizer.state else 0

    def set_num_updates(self, k: int) -> None:
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                self.optimizer.state[p]["step"] = int(k)

    def _moments(self) -> list[Tensor]:
        """The outer optimiser's per-tensor state beyond the step count: Adam's ``exp_avg``, ``exp_avg_sq`` of θ
        and λ in that order (copies on the CPU; ``[]`` for SGD or before the first update)."""
        out = []
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                st = self.optimizer.state.get(p, {})
                out += [st[k].detach().to("cpu", copy=True) for k in ("exp_avg", "exp_avg_sq") if k in st]
        return out

    def consider(self, iteration: int, val_acc: float, val_loss: float, params: tuple[Tensor, ...]) -> None:
        """Keep this iteration if it is the best so far (accuracy, then loss, on the early-stopping half)."""
        best = self.best
        if best is None or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"]):
            self.best = {"val_acc": val_acc, "val_loss": val_loss, "iteration": iteration,
                         "probs": self.theta.detach().clone(), "params": tuple(p.detach().clone() for p in params),
                         "lr_logit": self.lr_logit.detach().clone()}
            self.since_best = 0
        else:
            self.since_best += 1

    def to_checkpoint(self, settings: dict[str, Any], fingerprint: dict[str, Any], elapsed: float) -> dict[str, Any]:
        """A resumable snapshot in tensors and plain values (copies: later iterations do not change it)."""
        best = self.best
        assert best is not None
        return {"kind": "lds-checkpoint", "elapsed": float(elapsed), "params": settings,
                "data": fingerprint, "probs": self.theta.detach().to("cpu", copy=True),
                "num_pairs": self.theta.numel(), "lr_logit": self.lr_logit.detach().to("cpu", copy=True),
                "generator": self.generator.get_state(), "iteration": self.iteration,
                "num_updates": self.num_updates, "since_best": self.since_best,
                "outer_moments": self._moments(),
                "best": {**best, "probs": best["probs"].cpu(), "params": tuple(p.cpu() for p in best["params"]),
                         "lr_logit": best["lr_logit"].cpu()},
                "history": list(self.history)}

    def restore(self, ck: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`to_checkpoint` (already checked against the data)."""
        device = self.theta.device
        with torch.no_grad():
            self.theta.copy_(ck["probs"])
            self.lr_logit.copy_(ck["lr_logit"])
        try:
            self.generator.set_state(ck["generator"])
        except RuntimeError as exc:
            raise ValueError(f"the checkpoint's generator state does not fit this fit's {self.generator.device} "
                             f"generator ({exc}): resume with the same rng_device and device.") from exc
        self.set_num_updates(ck["num_updates"])
        moments = list(ck.get("outer_moments", []))
        if moments:
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            for p, (m, v) in zip(params, zip(moments[0::2], moments[1::2])):
                self.optimizer.state[p].update(exp_avg=m.to(p), exp_avg_sq=v.to(p))
        self.iteration, self.since_best = ck["iteration"], ck["since_best"]
        best = dict(ck["best"])
        best.update(probs=best["probs"].to(device), params=tuple(p.to(device) for p in best["params"]),
                    lr_logit=best["lr_logit"].to(device))
        self.best, self.history, self.elapsed = best, ck["history"], float(ck["elapsed"])


class _Checkpointer:
    """Writes a fit's checkpoint every ``every`` outer iterations, when it stops early, and (``close``) the
    last finished iteration when the fit ends between two of those (``max_outer_iters``, Ctrl-C)."""

    def __init__(self, path: str | os.PathLike | None, every: int, fingerprint: dict[str, Any],
                 settings: dict[str, Any], init: dict[str, Any]) -> None:
        self.path, self.every, self.fingerprint, self.settings = path, every, fingerprint, settings
        self.init = init  # the initial graph chosen (init_graph, init_check): resume rebuilds θ₀ without the check
        self.unsaved: dict[str, Any] | None = None  # the last finished iteration, not yet written

    def after_iteration(self, state: FitState, elapsed: float, done: bool) -> None:
        if self.path is None:
            return
        self.unsaved = {**state.to_checkpoint(self.settings, self.fingerprint, elapsed), **self.init}
        if state.iteration % self.every == 0 or done:
            _atomic_save(self.unsaved, self.path)
            self.unsaved = None

    def close(self) -> None:
        if self.path is not None and self.unsaved is not None:
            _atomic_save(self.unsaved, self.path)
            self.unsaved = None


# ----------------------------------------------------------------------------- the estimator


def check_int_setting(estimator: Any, name: str, minimum: int = 1) -> None:
    """Raise unless the estimator's setting ``name`` is an int (not a bool) ``>= minimum``."""
    v = getattr(estimator, name)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}.")


def check_float_setting(estimator: Any, name: str, low: float | None = None, high: float | None = None, *,
                        low_open: bool = False, high_open: bool = False) -> None:
    """Raise unless the estimator's setting ``name`` is a finite real number in the given range."""
    v = getattr(estimator, name)
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a finite number in {interval}, got {type(v).__name__} {v!r}.")
    f = float(v)
    if (not math.isfinite(f) or (low is not None and (f < low or (low_open and f == low)))
            or (high is not None and (f > high or (high_open and f == high)))):
        raise ValueError(f"{name} must be a finite number in {interval}, got {v!r}.")


def check_seed_setting(estimator: Any, name: str = "seed", label: str | None = None) -> None:
    """Raise unless the estimator's seed is an int in ``[0, 2**63)``; ``label`` names it in the message (e.g. the
    CLI's ``--seed``; default ``name``)."""
    v: int = getattr(estimator, name)
    label = name if label is None else label
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{label} must be an int in [0, 2**63), e.g. {label}=0, got {type(v).__name__} {v!r}.")
    if not 0 <= v < SEED_LIMIT:
        raise ValueError(f"{label} must be an int in [0, 2**63), got {v!r}; e.g. {label}=0.")


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
        outer_lr: η₀ of the outer step, ``η_k = η₀ / (1 + outer_lr_decay·k)`` (default: 1.0 with ``"sgd"``,
            0.01 with ``"adam"``).
        outer_lr_decay: inverse-time decay of the outer learning rate, per θ update.
        outer_optimizer: ``"sgd"``, the paper's projected SGD ``θ ← Proj(θ - η_k g)`` (Algorithm 7), or
            ``"adam"``, projected Adam (Kingma & Ba 2015, Alg. 1) on θ and λ with step ``η_k``: a per-pair
            adaptive step, so that θ moves at every graph size even though one pair's hypergradient shrinks
            as the graph grows. ``"auto"`` (default): ``"sgd"`` on all pairs (the paper's setting: Cora,
            Citeseer), ``"adam"`` on a sparse candidate set (large graphs), as measured in docs/results.md.
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
            Default: ``k`` beside a given initial graph; ``2k`` when the initial graph is kNN(k) itself (no graph,
            or ``init_graph`` resolved to ``"knn"``: candidates equal to the initial graph would let LDS remove
            edges but never add one).
        init_prob: θ on candidates outside the initial graph.
        init_graph: the initial graph θ₀ when the data has a graph. ``"given"``: the given graph (the paper).
            ``"knn"``: kNN(k), with the given edges kept as candidates at ``init_prob`` (on a sparse candidate set
            the candidates are then given ∪ kNN(candidate_k), ``candidate_k`` defaulting to 2k). ``"none"``: the
            empty graph, θ₀ = ``init_prob`` on every candidate (the same candidates as ``"knn"``): the network
            starts as an MLP on self-loops and the hypergradient adds the edges that lower the outer loss.
            ``"auto"`` (default): a discrete outer step before Algorithm 7 (:meth:`_init_check`,
            :meth:`_choose_init`). The outer objective (outer-half validation cross-entropy of the network
            trained on the training labels) is measured on the given graph and without a graph. When the given
            graph does worse than none by more than ``INIT_CHECK_Z`` = 2 standard errors of the paired per-node
            difference, it hurts and is replaced by kNN(k) or the empty graph, whichever has the lower outer loss
            (the given edges stay candidates); otherwise it is kept. The choice and the numbers are kept in
            ``init_graph_`` and ``init_check_``. Without a graph θ₀ is kNN(k) whatever this setting.
        sampling: ``False`` runs the GCN on ``A = θ`` (kNN-LDS (dense)); ``True`` samples ``A ~ Ber(θ)``.
        hidden, dropout, weight_decay: the GCN (16, 0.5, 5e-4 on the first layer).
        normalize_features: Kipf's row normalisation of the features (``"auto"``: when non-negative).
        inner_eps: ε of the inner Adam.
        backbone: ``"gcn"`` (built-in, sparse forward, any candidate set), or on a sparse candidate set
            ``"gcnconv"``, ``"graphconv"`` or a factory ``(in_channels, out_channels) -> MessagePassing``
            (PyG layers taking ``edge_weight``), run through :class:`bilevel_core.FunctionalModule`.
        checkpoint_every: outer iterations between checkpoints (when ``checkpoint`` is given to fit).
        rng_device: where the fit's random numbers (graph samples, dropout, initial weights) are drawn.
            ``"cpu"``: on a CPU generator, so that a seed gives the same fit on every device (a host draw and
            a copy per step of the size of θ's support). ``"device"``: on a generator of ``device`` (no host
            draw and no copy on a GPU; on the CPU the two are the same).
        variant: ``"paper"`` is the paper's Algorithm 7: the GCN weights kept are those trained (on the
            training labels only) in the best outer iteration. ``"refit"`` runs Algorithm 7 unchanged, then
            refits the weights from a fresh initialisation on train ∪ the outer validation half, on a fresh
            ``A ~ Ber(θ*)`` per step of the learned θ*, early-stopped on the other validation half (see
            :meth:`_refit`): the outer half's labels then shape both θ and w, as the ``gcn_val`` control's do.
            ``"select"`` runs the refit, then keeps the learned graph only where it earns its place (see
            :meth:`_select_graph`): the same GCN trained on train ∪ the outer half on the initial graph θ₀
            alone (:class:`~lds.GCNBaseline` with ``train_on_outer_half=True``, the information-matched
            control) replaces it when its early-stopping accuracy is at least the refit's. ``graph_choice_``
            (``"learned"`` or ``"initial"``) and ``control_val_acc_`` say which; built-in GCN only.
        seed: an int in ``[0, 2**63)``.
        device, dtype, verbose.

    Data: ``y`` holds labels ``0..C-1`` on the nodes of the masks, every class present among them and
    ``C >= 2`` (``-1`` allowed outside every mask); ``C`` is ``data.num_classes_`` if set, else the largest
    label + 1. Float settings must be finite.
    """

    def __init__(
        self,
        hypergrad_every: int = 5,
        truncate: int | None = None,
        outer_lr: float | None = None,
        outer_lr_decay: float = 1e-3,
        outer_optimizer: str = "auto",
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
        init_graph: str = "auto",
        sampling: bool = True,
        hidden: int = 16,
        dropout: float = 0.5,
        weight_decay: float = 5e-4,
        normalize_features: bool | str = "auto",
        backbone: str | Callable[[int, int], Any] = "gcn",
        checkpoint_every: int = 5,
        rng_device: str = "cpu",
        variant: str = "paper",
        seed: int = 0,
        device: str = "cpu",
        dtype: str = "float32",
        verbose: bool = True,
    ) -> None:
        self.hypergrad_every = hypergrad_every
        self.truncate = truncate
        self.outer_lr = outer_lr
        self.outer_lr_decay = outer_lr_decay
        self.outer_optimizer = outer_optimizer
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
        self.init_graph = init_graph
        self.sampling = sampling
        self.hidden = hidden
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.normalize_features = normalize_features
        self.backbone = backbone
        self.checkpoint_every = checkpoint_every
        self.rng_device = rng_device
        self.variant = variant
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
        positive_int("max_all_pairs")
        if self.outer_lr is not None:
            check_float_setting(self, "outer_lr", 0.0, low_open=True)
        if self.outer_optimizer not in ("auto", *OUTER_OPTIMIZERS):
            raise ValueError(f"outer_optimizer must be one of 'auto', {', '.join(map(repr, OUTER_OPTIMIZERS))}, got "
                             f"{self.outer_optimizer!r}.")
        check_float_setting(self, "outer_lr_decay", 0.0)
        check_float_setting(self, "inner_lr", 0.0, low_open=True)
        check_float_setting(self, "inner_eps", 0.0, low_open=True)
        check_float_setting(self, "inner_tol", 0.0, 1.0, high_open=True)
        check_float_setting(self, "init_prob", 0.0, 1.0)
        if self.init_graph not in INIT_GRAPHS:
            raise ValueError(f"init_graph must be one of {', '.join(map(repr, INIT_GRAPHS))}, got {self.init_graph!r}.")
        if self.init_graph == "knn" and self.k == 0:
            raise ValueError("init_graph='knn' starts from the kNN(k) graph: give k >= 1, or init_graph='given'.")
        check_float_setting(self, "dropout", 0.0, 1.0, high_open=True)
        check_float_setting(self, "weight_decay", 0.0)
        check_seed_setting(self)
        a, b = INNER_LR_RANGE
        if self.learn_inner_lr and not a < self.inner_lr < b:
            raise ValueError(f"inner_lr must be in ({a}, {b}) when learned, got {self.inner_lr}.")
        if self.rng_device not in ("cpu", "device"):
            raise ValueError(f"rng_device must be 'cpu' or 'device', got {self.rng_device!r}.")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(map(repr, VARIANTS))}, got {self.variant!r}.")
        if self.variant == "select" and not (isinstance(self.backbone, str) and self.backbone == "gcn"):
            raise ValueError("variant='select' compares the learned graph with the built-in GCN (GCNBaseline) on "
                             "the initial graph: use backbone='gcn', or variant='refit' with this backbone.")
        if self.candidates not in ("auto", "all", "sparse"):
            raise ValueError(f"candidates must be 'auto', 'all' or 'sparse', got {self.candidates!r}.")
        if self.metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got {self.metric!r}.")
        if isinstance(self.backbone, str) and self.backbone not in ("gcn", "gcnconv", "graphconv"):
            raise ValueError(f"backbone must be 'gcn', 'gcnconv', 'graphconv' or a callable, got {self.backbone!r}.")
        check_dtype_and_device(self.dtype, self.device)

    @property
    def _torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    def _generator(self, offset: int) -> torch.Generator:
        """A generator seeded ``seed + offset`` (a stream of its own per use), on ``rng_device``."""
        device = torch.device(self.device) if self.rng_device == "device" else torch.device("cpu")
        return torch.Generator(device=device).manual_seed(int(self.seed) + offset)

    def resolved_outer_optimizer(self, all_pairs: bool) -> str:
        """``"sgd"`` or ``"adam"``: ``outer_optimizer``, with ``"auto"`` resolved by the candidate set."""
        if self.outer_optimizer != "auto":
            return self.outer_optimizer
        return "sgd" if all_pairs else "adam"

    def outer_lr_value(self, optimizer: str) -> float:
        """η₀: ``outer_lr``, or the default step of ``optimizer`` (``"sgd"`` or ``"adam"``) when it is ``None``."""
        return float(OUTER_OPTIMIZERS[optimizer] if self.outer_lr is None else self.outer_lr)

    # ------------------------------------------------------------------ setup
    def _prepare(self, data: GraphData, *, fingerprint: bool) -> tuple[PreparedData, dict[str, Any]]:
        """Validated tensors of ``data`` and, when ``fingerprint`` (a checkpoint is written or resumed), their
        fingerprint (see :func:`data_fingerprint`; else ``{}``: hashing large features costs seconds)."""
        x, y, masks, num_classes = validate_data(data)
        edge_index = getattr(data, "edge_index", None)
        edge_index = torch.empty(2, 0, dtype=torch.long) if edge_index is None else edge_index.long()
        fp = data_fingerprint(x, y, masks, edge_index, num_classes) if fingerprint else {}
        device = torch.device(self.device)
        val_outer, val_stop = split_validation(masks["val_mask"], int(self.seed))
        y_safe = y.clone().long()
        y_safe[y_safe < 0] = 0  # unlabelled nodes (never read)
        return PreparedData(
            x=preprocess_features(x.to(device=device, dtype=self._torch_dtype), self.normalize_features),
            y=y_safe.to(device),
            num_classes=num_classes,
            train_idx=torch.nonzero(masks["train_mask"], as_tuple=True)[0].to(device),
            val_outer_idx=val_outer.to(device),
            val_stop_idx=val_stop.to(device),
            edge_index=edge_index,
            num_nodes=x.size(0),
        ), fp

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

    def _candidate_k(self, knn_init: bool) -> int:
        """k of the kNN pairs added to a sparse candidate set (see ``candidate_k``): by default k beside a given
        initial graph, 2k when the initial graph is kNN(k) itself."""
        if self.candidate_k is not None:
            return self.candidate_k
        return 2 * self.k if knn_init else self.k

    def _build_distribution(self, prep: PreparedData, init_graph: str | None = None) -> EdgeDistribution:
        """θ₀ on the candidate set. The initial graph is the given one or kNN(k): ``init_graph`` when given (a
        fitted model's ``init_graph_``), else the setting, ``"auto"`` resolved by :meth:`_init_check`; the choice
        and the check's scores are kept in ``init_graph_`` and ``init_check_``."""
        n = prep.num_nodes
        has_graph = prep.edge_index.numel() > 0
        candidates = self._resolved_candidates(n)
        if not has_graph and self.k == 0:
            raise ValueError("the data has no graph and k=0: give k >= 1 (kNN initial graph) or data.edge_index.")
        setting = self.init_graph if init_graph is None else init_graph
        if not has_graph:
            setting = "knn"
        elif self.k == 0 and setting != "none":
            setting = "given"  # no kNN graph to start from (init_graph='knn' with k=0 is refused in the settings)
        given = prep.edge_index.cpu() if has_graph else None
        scores: dict[str, float] = {}
        terms: dict[str, Tensor] = {}
        if setting == "auto":  # given or not decided before any kNN search: the search is then the choice's own
            assert given is not None
            terms = self._init_check(prep, {"given": (given, 1.0), "none": (given, 0.0)})
            setting, scores = self._choose_init(terms)
        replaced = setting in ("knn", "none")  # θ₀ is not the given graph: kNN(2k) candidates by default
        k_cand = self._candidate_k(replaced) if candidates == "sparse" else 0
        k_max = max(self.k, k_cand) if (replaced or candidates == "sparse") else 0
        directed: Tensor | None = None
        if k_max > 0:
            if self.k >= n:
                raise ValueError(f"k={self.k} must be smaller than the number of nodes ({n}).")
            if k_max >= n:
                what = "candidate_k" if self.candidate_k is not None else "candidate_k (default: k, or 2k from kNN(k))"
                raise ValueError(f"{what}={k_max} must be smaller than the number of nodes ({n}): pass a smaller "
                                 "candidate_k or k, or candidates='all'.")
            from lds.datasets.graphs import knn_graph

            # one search for the larger k: the nearest k of the k_max nearest (node-major, nearest first)
            directed = knn_graph(prep.x, k_max, metric=self.metric, symmetric=False,
                                 device=prep.x.device).view(2, n, k_max)  # the search runs on the model's device

        def nearest(k: int) -> Tensor | None:
            from lds.datasets.graphs import both_directions, undirected_pairs

            if k == 0 or directed is None:
                return None
            return both_directions(undirected_pairs(directed[:, :, :k].reshape(2, -1)))

        knn = nearest(self.k) if replaced else None
        if terms and knn is not None:  # the given graph hurts: kNN(k) or the empty graph, by the outer loss
            terms.update(self._init_check(prep, {"knn": (knn, 1.0)}))
            setting, scores = self._choose_init(terms)
        if init_graph is None:  # a fit's choice (a rebuild from init_graph_ keeps the fitted record)
            self.init_graph_, self.init_check_ = setting, scores
        init_edges = {"given": given, "knn": knn, "none": None}[setting]
        extra = None
        if candidates == "sparse":
            extra = knn if knn is not None and k_cand == self.k else nearest(k_cand)
            if replaced and given is not None:  # the given edges stay candidates (at init_prob)
                extra = given if extra is None else torch.cat([given, extra], dim=1)
        return EdgeDistribution.from_candidates(
            n,
            candidates=candidates,
            init_edge_index=init_edges,
            extra_edge_index=extra,
            init_prob=self.init_prob,
            dtype=self._torch_dtype,
            device=self.device,
        )

    def _init_check(self, prep: PreparedData, graphs: Mapping[str, tuple[Tensor, float]]) -> dict[str, Tensor]:
        """The outer objective at each graph A of ``graphs`` (name → edges and their weight: 1, or 0 for the
        network without a graph, whose self-loops remain), per outer validation node: the terms of
        ``F(w(A), A)``, the cross-entropy on the outer validation half (eq. 9.5) of the network trained on the
        training labels (eq. 9.4) on ``A``.

        ``w(A)``: Adam at ``inner_lr`` with dropout, from the same seeded initial weights and dropout masks on
        every graph (its own random stream: the fit's is untouched). The outer loss is read every τ steps and
        the per-node losses of its minimum kept; the run stops after ``inner_patience`` reads without
        improvement or ``max_inner_steps``. Mean over ``INIT_CHECK_RESTARTS`` initialisations. Only the
        training labels and the outer half's, the labels θ is fitted to, are read.
        """
        out: dict[str, Tensor] = {}
        idx, y = prep.val_outer_idx, prep.y[prep.val_outer_idx]
        for name, (edges, weight) in graphs.items():
            dist = EdgeDistribution.from_candidates(prep.num_nodes, candidates="sparse", init_edge_index=None,
                                                    extra_edge_index=edges, init_prob=weight,
                                                    dtype=self._torch_dtype, device=self.device)
            inner, _ = lds_objectives(prep, dist, sampling=False, dropout=self.dropout,
                                      weight_decay=self.weight_decay, backbone=self.backbone_)
            theta = dist.probs.detach()
            hparams = (theta, torch.zeros((), dtype=theta.dtype, device=theta.device))
            gen = self._generator(15485863)  # the same stream for every graph: paired initialisations

            def batch(gen: torch.Generator = gen) -> tuple[None, DropoutMasks]:
                return None, sample_dropout_masks(prep.features, (prep.num_nodes, self.hidden), self.dropout, gen,
                                                  self._torch_dtype, prep.x.device)

            def score(params: NetParams, theta: Tensor = theta, dist: EdgeDistribution = dist) -> tuple[float, Tensor]:
                with torch.no_grad():
                    logits = network_logits(params, prep, theta, dist.candidates, backbone=self.backbone_)
                    terms = F.cross_entropy(logits[idx], y, reduction="none").double()
                return -float(terms.mean()), terms  # the lowest outer loss wins

            total = torch.zeros(idx.numel(), dtype=torch.float64, device=idx.device)
            with reuse_sampled_graphs(dist.candidates):
                for _ in range(INIT_CHECK_RESTARTS):
                    _, terms, _ = self._train_early_stopped(inner, self._init_params(prep, gen), hparams,
                                                            float(self.inner_lr), batch, score, self.inner_patience)
                    total = total + terms
            out[name] = total / INIT_CHECK_RESTARTS
        return out

    @staticmethod
    def _choose_init(terms: Mapping[str, Tensor]) -> tuple[str, dict[str, float]]:
        """The initial graph from the per-node outer losses of :meth:`_init_check`, in two steps.

        1. Whether the given graph hurts: it does when the outer loss of the network without a graph
           (``terms["none"]``) is below the given graph's by more than ``INIT_CHECK_Z`` standard errors of the
           paired per-node difference (a one-sided paired z-test over the outer validation nodes). Otherwise
           ``"given"``: the user's graph is kept unless the outer labels show that it does worse than no graph.
        2. What replaces it: with ``terms["knn"]`` (kNN(k)), the lower mean outer loss of ``"knn"`` and
           ``"none"`` (a discrete outer step on F, eq. 9.5; ``"knn"`` on a tie); without it ``"knn"``, the
           first step's answer before the kNN graph is built.

        Returns the choice and the check's numbers: mean losses, the mean difference none − given and its
        standard error, and with kNN(k) the mean difference none − knn."""
        def paired(a: str, b: str) -> tuple[float, float]:
            diff = terms[a] - terms[b]
            m = diff.numel()
            return float(diff.mean()), (float(diff.std(unbiased=True)) / math.sqrt(m) if m > 1 else math.inf)

        mean, stderr = paired("none", "given")
        scores = {name: float(t.mean()) for name, t in terms.items()}
        scores.update(difference=mean, stderr=stderr)
        if not mean + INIT_CHECK_Z * stderr < 0:
            return "given", scores
        if "knn" not in terms:
            return "knn", scores
        scores["difference_knn"], scores["stderr_knn"] = paired("none", "knn")
        return ("none" if scores["difference_knn"] < 0 else "knn"), scores

    def _inner_lr(self, hparams: HParams) -> Tensor | float:
        if not self.learn_inner_lr:
            return self.inner_lr
        a, b = INNER_LR_RANGE
        return a + torch.sigmoid(hparams[1]) * (b - a)

    # ------------------------------------------------------------------ fit
    def fit(self, data: GraphData, *, checkpoint: str | os.PathLike | None = None,
            resume: str | os.PathLike | None = None,
            callback: Callable[[int, dict[str, float], EdgeDistribution], Any] | None = None) -> LDS:
        """Algorithm 7 (thesis Sec. 9.3) on ``data``; keeps the best θ and GCN weights by early stopping.

        Args:
            data: a PyG ``Data`` with ``x``, ``y``, ``train_mask``, ``val_mask`` (``edge_index`` optional).
            checkpoint: path of a resumable checkpoint, written atomically every ``checkpoint_every``
                outer iterations and when the fit ends (early stop, ``max_outer_iters``, Ctrl-C: the last
                finished iteration). Its directory must be writable: checked before the first iteration.
            resume: path of a checkpoint to continue from; it must have been written for the same data
                (x, y, masks, edge_index: compared by SHA-256) and settings. Read with
                ``weights_only=True``: a file cannot run code.
            callback: ``callback(iteration, record, distribution)`` after every outer iteration, with the
                history record and the current (live, do not modify) edge distribution, e.g. to follow θ.
        """
        from tqdm.auto import tqdm

        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}.")
        for name, value in (("checkpoint", checkpoint), ("resume", resume)):
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{name} must be a file path (str or os.PathLike), got {type(value).__name__}.")
        self._check_settings()
        if checkpoint is not None:
            _check_writable(checkpoint, "checkpoint")
        t_setup = time.perf_counter()
        prep, dist, state, fingerprint, initial_idx = self._setup(data, resume, fingerprint=checkpoint is not None)
        setup_time = time.perf_counter() - t_setup
        saver = _Checkpointer(checkpoint, self.checkpoint_every, fingerprint,
                              self._plain_params(checkpoint=True) if checkpoint is not None else {},
                              {"init_graph": self.init_graph_, "init_check": dict(self.init_check_)})
        hopt, make_outer = self._hyper_optimizer(prep, dist, state)
        t0 = time.perf_counter() - state.elapsed
        interrupted = False
        with tqdm(total=self.max_outer_iters, initial=state.iteration, disable=not self.verbose, desc="LDS",
                  dynamic_ncols=True) as bar:
            try:
                for it in range(state.iteration, self.max_outer_iters):
                    record = self._outer_step(it, prep, dist, state, hopt, make_outer, callback, t0)
                    bar.update(1)
                    bar.set_postfix(val_acc=f"{record['val_acc']:.4f}", edges=f"{record['expected_edges']:.0f}",
                                    steps=record["inner_steps"])
                    done = state.since_best >= self.patience
                    saver.after_iteration(state, time.perf_counter() - t0, done)
                    if done:
                        break
            except KeyboardInterrupt:
                interrupted = True
                warnings.warn("fit interrupted: keeping the best model found so far.", stacklevel=2)
        saver.close()  # the fit ended between checkpoints (max_outer_iters, interrupt): write the last one
        if state.best is None:
            raise RuntimeError("fit was interrupted before the first outer iteration finished; nothing to keep.")
        self._set_fitted(prep, dist, state)
        self.paper_params_ = state.best["params"]  # Algorithm 7's weights (params_ too, unless refit or select)
        if self.variant in ("refit", "select"):
            self.params_, self.refit_val_acc_, self.refit_steps_ = self._refit(prep, self.distribution_)
        if self.variant == "select":
            self._select_graph(data, initial_idx)
        self.interrupted_ = interrupted
        self.fit_time_ = time.perf_counter() - t0
        self.setup_time_ = setup_time  # validation, kNN search and candidate set, before the first outer iteration
        return self

    def _setup(self, data: GraphData, resume: str | os.PathLike | None, *, fingerprint: bool
               ) -> tuple[PreparedData, EdgeDistribution, FitState, dict[str, Any], Tensor]:
        """Validated data, θ's candidate set and the fit's state (continued from ``resume`` when given, after
        checking that it was written for this data and these settings); the data's fingerprint when
        ``fingerprint`` or ``resume`` (else ``{}``); the candidates of the initial graph (θ₀ = 1)."""
        ck = _load_checkpoint(resume) if resume is not None else None
        # a resumed fit starts from the initial graph its checkpoint records (older ones: the check runs again)
        init = ck.get("init_graph") if ck is not None else None
        prep, fp, dist = self._initial_setup(data, init, fingerprint=fingerprint or ck is not None)
        if ck is not None and init is not None:
            self.init_graph_, self.init_check_ = init, dict(ck.get("init_check", {}))
        self.initial_num_edges_ = dist.expected_num_edges()
        # θ₀'s edges, before θ moves (select's other arm trains on them)
        initial_idx = _initial_index(dist) if self.variant == "select" else torch.empty(0, dtype=torch.long)
        state = self._start(dist)
        if ck is not None:
            assert resume is not None
            self._check_resume(ck, dist, fp, resume)
            state.restore(ck)
        return prep, dist, state, fp, initial_idx

    def _initial_setup(self, data: GraphData, init_graph: str | None, *, fingerprint: bool
                       ) -> tuple[PreparedData, dict[str, Any], EdgeDistribution]:
        """Validated data, its fingerprint (``{}`` unless ``fingerprint``), ``backbone_`` and θ₀: what a fit
        does before the first outer step (:meth:`_setup`, :meth:`initial_distribution`)."""
        prep, fp = self._prepare(data, fingerprint=fingerprint)
        self.backbone_ = self._make_backbone(prep)  # before θ₀: the init_graph check trains it
        return prep, fp, self._build_distribution(prep, init_graph=init_graph)

    def _outer_step(self, it: int, prep: PreparedData, dist: EdgeDistribution, state: FitState,
                    hopt: HyperOptimizer, make_outer: Callable[[EdgeUniforms | None], Callable[..., Tensor]],
                    callback: Callable[[int, dict[str, float], EdgeDistribution], Any] | None,
                    t0: float) -> dict[str, float]:
        """Outer iteration ``it``: the inner run with its θ updates, then early-stopping bookkeeping; returns
        its history record."""
        params, steps = self._outer_iteration(prep, dist, hopt, make_outer, state.generator)
        val_acc, val_loss = self._evaluate(params, prep, dist, dist.probs, prep.val_stop_idx)
        record = {"iteration": it, "val_acc": val_acc, "val_loss": val_loss, "inner_steps": steps,
                  "expected_edges": dist.expected_num_edges(),
                  "inner_lr": float(self._inner_lr((dist.probs, state.lr_logit.detach()))),
                  "time": time.perf_counter() - t0}
        state.history.append(record)
        if callback is not None:
            with torch.no_grad():  # θ is the outer optimiser's leaf: a callback reads it, never builds on it
                callback(it, record, dist)
        state.consider(it, val_acc, val_loss, params)
        state.iteration = it + 1
        return record

    def _start(self, dist: EdgeDistribution) -> FitState:
        """The state before the first outer iteration: θ from the initial graph, λ from ``inner_lr``, the seeded
        generator and the outer optimiser (θ and, when learned, λ)."""
        a, b = INNER_LR_RANGE
        # with a fixed inner lr the logit is never read (and inner_lr may lie outside (a, b))
        logit = math.log((self.inner_lr - a) / (b - self.inner_lr)) if self.learn_inner_lr else 0.0
        theta = dist.probs.requires_grad_(True)
        lr_logit = torch.tensor(logit, dtype=self._torch_dtype, device=torch.device(self.device), requires_grad=True)
        outer_params = [theta, lr_logit] if self.learn_inner_lr else [theta]
        optimizer: InverseTimeSGD
        name = self.resolved_outer_optimizer(dist.is_all_pairs)
        lr, decay = self.outer_lr_value(name), float(self.outer_lr_decay)
        if name == "adam":
            if lr > 0.2:
                why = "outer_optimizer='auto' on sparse candidates" if self.outer_optimizer == "auto" else "adam"
                warnings.warn(f"outer_lr={lr} with the Adam outer step ({why}): Adam moves every θ by about the "
                              "step per update, so θ ∈ [0, 1] jumps to a bound; use a step of 0.001-0.05 (the default "
                              "0.01: outer_lr=None), or outer_optimizer='sgd'.",
                              stacklevel=4)
            optimizer = InverseTimeAdam(outer_params, lr=lr, decay=decay)
        else:
            optimizer = InverseTimeSGD(outer_params, lr=lr, decay=decay)
        return FitState(theta=theta, lr_logit=lr_logit, generator=self._generator(0), optimizer=optimizer)

    def _hyper_optimizer(self, prep: PreparedData, dist: EdgeDistribution, state: FitState
                         ) -> tuple[HyperOptimizer, Callable[[EdgeUniforms | None], Callable[..., Tensor]]]:
        """Algorithm 7's outer loop on the core: Adam on fresh samples (``batches``), a truncated reverse
        hypergradient per window of τ steps, projected inverse-time SGD on θ (``θ ← Proj_[0,1](θ - η_k g)``);
        and ``make_outer(uniforms)``, the outer objective of a window on its own sample."""
        inner, make_outer = lds_objectives(prep, dist, sampling=self.sampling, dropout=self.dropout,
                                                 weight_decay=self.weight_decay, backbone=self.backbone_)
        gen = state.generator

        def batches(t: int) -> tuple[EdgeUniforms | None, tuple[Tensor, Tensor]]:
            uniforms = dist.draw(gen) if self.sampling else None
            masks = sample_dropout_masks(prep.features, (prep.num_nodes, self.hidden), self.dropout, gen,
                                         self._torch_dtype, prep.x.device)
            return uniforms, masks

        project_theta = project_box(0.0, 1.0)
        hopt = HyperOptimizer(Adam(inner, lr=self._inner_lr, eps=self.inner_eps), None,
                              (state.theta, state.lr_logit), state.optimizer, T=self.hypergrad_every,
                              projection=lambda hp: project_theta(hp[:1]), warm_start=True, batches=batches)
        return hopt, make_outer

    def _train_early_stopped(self, inner: Callable[..., Tensor], params: NetParams, hparams: HParams, lr: float,
                             batch: Callable[[], Any], score: Callable[[NetParams], tuple[Any, Any]],
                             patience: int) -> tuple[Any, Any, int]:
        """Adam at ``lr`` on ``inner`` from ``params`` with θ fixed (``hparams``), a fresh ``batch()`` per step.
        Every τ steps and at the last, ``score(params)`` gives ``(key, payload)``; the payload of the largest key
        is kept. Stops after ``patience`` scorings without improvement or ``max_inner_steps``. Returns the best
        key, its payload and the number of steps (the refit and the init_graph check)."""
        dynamics = Adam(inner, lr=lr, eps=self.inner_eps)
        state = dynamics.init(params, hparams)
        best_key: Any = None
        best: Any = None
        since = 0
        while state.t < self.max_inner_steps and since < patience:
            state = dynamics(state, hparams, batch(), create_graph=False)
            if state.t % self.hypergrad_every and state.t < self.max_inner_steps:
                continue
            key, payload = score(state.params)
            if best_key is None or key > best_key:
                best_key, best, since = key, payload, 0
            else:
                since += 1
        return best_key, best, int(state.t)

    def _init_params(self, prep: PreparedData, gen: torch.Generator) -> NetParams:
        """Fresh network weights from ``gen``: the built-in GCN's Glorot (W1, W2), or the backbone's."""
        if self.backbone_ is None:
            return init_gcn_params(prep.x.size(1), self.hidden, prep.num_classes, generator=gen,
                                   dtype=self._torch_dtype, device=prep.x.device)
        return self.backbone_.init_params(gen)

    def _outer_iteration(self, prep: PreparedData, dist: EdgeDistribution, hopt: HyperOptimizer,
                         make_outer: Callable[[EdgeUniforms | None], Callable[..., Tensor]],
                         gen: torch.Generator) -> tuple[tuple[Tensor, ...], int]:
        """Reset w, run Adam on fresh samples; every τ steps a truncated hypergradient and a θ update."""
        params = self._init_params(prep, gen)
        truncate = self.hypergrad_every if self.truncate is None else self.truncate
        stop = TrainLossStall(self.inner_patience, self.inner_tol)
        # The built-in GCN reaches θ through values = θ or a straight-through sample (∂values/∂θ = I): its pair
        # gradients are summed over a window and formed once (one N×N product per window), then added by the core.
        deferred = {0: PairGradientAccumulator(dist.candidates)} if _defer_pair_gradients(dist, self.backbone_) else {}
        # Without sampling every step of a window propagates on θ itself: one graph build per window.
        reuse = nullcontext() if self.sampling else reuse_sampled_graphs(dist.candidates)
        hopt.restart()
        steps = 0
        with reuse:
            while steps < self.max_inner_steps:
                window = min(self.hypergrad_every, self.max_inner_steps - steps)
                outer = make_outer(dist.draw(gen) if self.sampling else None)
                hopt.step(params, T=window, outer=outer, truncate=min(truncate, window), stop=stop,
                          deferred_grads=deferred)
                assert hopt.state is not None
                steps = hopt.state.t
                if hopt.state.stopped:
                    break
        assert hopt.state is not None
        return hopt.state.params, steps

    def _refit(self, prep: PreparedData, dist: EdgeDistribution) -> tuple[tuple[Tensor, ...], float, int]:
        """``variant="refit"``: fresh weights trained on train ∪ the outer validation half with θ* fixed.

        The inner objective of eq. 9.4 with the outer half's labels added to the training set: Adam at the
        learned inner learning rate, a fresh straight-through sample ``A_t ~ Ber(θ*)`` and dropout per step.
        Every τ steps the early-stopping half is scored as in the fit (S sampled graphs); the best weights
        are kept, and the refit stops after ``patience`` scorings without improvement or ``max_inner_steps``.
        Returns the weights, their early-stopping accuracy and the number of steps.
        """
        refit_prep = dataclasses.replace(prep, train_idx=torch.cat([prep.train_idx, prep.val_outer_idx]).sort().values,
                                         val_outer_idx=prep.val_outer_idx[:0])
        refit_prep.features = prep.features  # the same x: share its derived tensors
        inner, _ = lds_objectives(refit_prep, dist, sampling=self.sampling, dropout=self.dropout,
                                  weight_decay=self.weight_decay, backbone=self.backbone_)
        gen = self._generator(104729)  # its own stream, seeded
        params = self._init_params(prep, gen)
        theta = dist.probs.detach()
        hparams = (theta, torch.zeros((), dtype=theta.dtype, device=theta.device))

        def batch() -> tuple[EdgeUniforms | None, DropoutMasks]:
            uniforms = dist.draw(gen) if self.sampling else None
            return uniforms, sample_dropout_masks(prep.features, (prep.num_nodes, self.hidden), self.dropout, gen,
                                                  self._torch_dtype, prep.x.device)

        def score(params: NetParams) -> tuple[tuple[float, float], tuple[Tensor, ...]]:
            acc, loss = self._evaluate(params, prep, dist, theta, prep.val_stop_idx)
            return (acc, -loss), tuple(p.detach() for p in params)

        reuse = nullcontext() if self.sampling else reuse_sampled_graphs(dist.candidates)
        with reuse:
            best, best_params, steps = self._train_early_stopped(inner, params, hparams, float(self.inner_lr_), batch,
                                                                 score, self.patience)
        return best_params, best[0], steps

    def _select_graph(self, data: GraphData, initial_idx: Tensor) -> None:
        """``variant="select"``: the refit on θ*, or the control on the initial graph, by validation.

        The control is :class:`~lds.GCNBaseline` (``train_on_outer_half=True``, this model's seed, GCN settings,
        device and dtype) on θ₀'s graph, the candidates with θ₀ = 1 (the given graph, kNN(k) or none, as
        ``init_graph_`` says): the same labels and the same early-stopping half as the refit. The learned graph
        is kept only when the refit's early-stopping accuracy is strictly higher; otherwise the model predicts
        with the control's weights on θ₀'s graph (``distribution_`` then holds θ₀'s 0/1 graph; θ* stays in
        ``learned_distribution_``).
        """
        dist: EdgeDistribution = self.distribution_
        control = self.initial_graph_control(data, dist.pairs[:, initial_idx])
        self.control_val_acc_ = float(control.best_val_acc_)
        self.learned_distribution_ = dist
        if self.refit_val_acc_ > self.control_val_acc_:
            self.graph_choice_ = "learned"
            return
        self.graph_choice_ = "initial"
        probs = torch.zeros_like(dist.probs)
        probs[initial_idx.to(probs.device)] = 1.0
        self.distribution_: EdgeDistribution = EdgeDistribution(dist.pairs, dist.num_nodes, probs,
                                                                 is_all_pairs=dist.is_all_pairs)
        self.params_ = tuple(p.detach().to(device=probs.device, dtype=probs.dtype) for p in control.params_)

    def initial_distribution(self, data: GraphData, init_graph: str | None = None) -> EdgeDistribution:
        """θ₀ on the candidate set, built as :meth:`fit` builds it before the first outer step, without fitting:
        1 on the initial graph (the given one, kNN(k) or none), ``init_prob`` on the other candidates.

        ``init_graph``: ``"given"``, ``"knn"`` or ``"none"`` (e.g. a fitted model's ``init_graph_``, to rebuild
        its θ₀ without the ``"auto"`` check); ``None``: this model's setting, whose choice is then kept in
        ``init_graph_`` and ``init_check_`` as a fit keeps it. It sets up ``backbone_`` as a fit does: call it on
        an unfitted model (for a fitted one, on ``sklearn.base.clone(model)``).
        ``initial_distribution(data).expected_num_edges()`` equals a fit's ``initial_num_edges_``; θ₀'s edges
        are ``dist.pairs[:, dist.probs == 1]``."""
        self._check_settings()
        if init_graph is not None and init_graph not in INIT_GRAPHS:
            raise ValueError(f"init_graph must be None or one of {', '.join(map(repr, INIT_GRAPHS))}, got "
                             f"{init_graph!r}.")
        return self._initial_setup(data, init_graph, fingerprint=False)[2]

    def initial_graph_control(self, data: GraphData, pairs: Tensor) -> GCNBaseline:
        """``variant="select"``'s other arm: :class:`~lds.GCNBaseline` fitted with ``train_on_outer_half=True``,
        this model's seed, GCN settings, device and dtype, on the graph of the candidate ``pairs`` (``(2, E)``,
        each undirected edge once; θ₀'s edges in the select variant; none: the MLP). With
        :meth:`initial_distribution` it gives the arm without the bilevel fit::

            start = model.initial_distribution(data)
            control = model.initial_graph_control(data, start.pairs[:, start.probs == 1])
        """
        from .baselines import GCNBaseline

        pairs = pairs.cpu()
        arm = copy.copy(data)
        setattr(arm, "edge_index", torch.cat([pairs, pairs.flip(0)], dim=1))  # noqa: B010 (optional in GraphData)
        return GCNBaseline(graph="given" if pairs.numel() else "none", train_on_outer_half=True, hidden=self.hidden,
                           dropout=self.dropout, weight_decay=self.weight_decay,
                           normalize_features=self.normalize_features, seed=self.seed, device=self.device,
                           dtype=self.dtype).fit(arm)

    # ------------------------------------------------------------------ evaluation
    def _mean_proba(self, params: NetParams, prep: PreparedData, dist: EdgeDistribution, theta: Tensor) -> Tensor:
        """Class probabilities averaged over S graphs ``A ~ Ber(θ)`` (or on ``A = θ`` without sampling)."""
        gen = self._generator(7919)
        with torch.no_grad():
            if not self.sampling:
                return torch.softmax(network_logits(params, prep, theta, dist.candidates, backbone=self.backbone_),
                                     dim=1)
            total: Tensor | None = None
            for _ in range(self.num_samples):
                values = dist.sample(uniforms=dist.draw(gen), probs=theta, validate=False)
                p = torch.softmax(network_logits(params, prep, values, dist.candidates, backbone=self.backbone_), dim=1)
                total = p if total is None else total + p
            assert total is not None  # num_samples >= 1 (checked in _check_settings)
            return total / self.num_samples

    def _evaluate(self, params: NetParams, prep: PreparedData, dist: EdgeDistribution, theta: Tensor,
                  idx: Tensor) -> tuple[float, float]:
        proba = self._mean_proba(params, prep, dist, theta)
        acc = float((proba[idx].argmax(1) == prep.y[idx]).double().mean())
        loss = float(F.nll_loss(torch.log(proba[idx].clamp_min(1e-12)), prep.y[idx]))
        return acc, loss

    def _set_fitted(self, prep: PreparedData, dist: EdgeDistribution, state: FitState) -> None:
        best, history = state.best, state.history
        assert best is not None
        with torch.no_grad():
            dist.probs.copy_(best["probs"])
        dist.probs.requires_grad_(False)
        self.distribution_ = dist
        self.params_ = best["params"]
        fitted = {"inner_lr": float(self._inner_lr((dist.probs, best["lr_logit"]))),
                  "best_iteration": best["iteration"], "best_val_acc": float(best["val_acc"]), "history": history,
                  "num_classes": prep.num_classes, "num_nodes": prep.num_nodes, "in_features": prep.x.size(1),
                  "val_outer_idx": prep.val_outer_idx.cpu(), "val_stop_idx": prep.val_stop_idx.cpu(),
                  "initial_num_edges": float(self.initial_num_edges_)}
        assert fitted.keys() == set(_FITTED)
        for name, value in fitted.items():
            setattr(self, name + "_", value)

    # ------------------------------------------------------------------ predictions
    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError("this LDS model is not fitted yet: call fit(data) first.")

    def _prep_for_predict(self, data: GraphData) -> PreparedData:
        self._check_fitted()
        x = check_predict_features(data, self.num_nodes_, self.in_features_)
        x = preprocess_features(x.to(device=self.device, dtype=self._torch_dtype), self.normalize_features)
        return PreparedData(x=x, y=torch.zeros(0, dtype=torch.long),
                            num_classes=self.num_classes_, train_idx=torch.empty(0, dtype=torch.long),
                            val_outer_idx=self.val_outer_idx_, val_stop_idx=self.val_stop_idx_,
                            edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=self.num_nodes_)

    def predict_proba(self, data: GraphData) -> Tensor:
        """Class probabilities (N, C), averaged over S sampled graphs (LDS eq. 9.8)."""
        prep = self._prep_for_predict(data)
        return self._mean_proba(self.params_, prep, self.distribution_, self.distribution_.probs).cpu()

    def predict(self, data: GraphData) -> Tensor:
        """Predicted class of every node (N,)."""
        return self.predict_proba(data).argmax(dim=1)

    def score(self, data: GraphData, mask: Tensor | None = None, metric: str = "accuracy") -> float:
        """``metric`` on ``mask`` (a boolean tensor of length N; default ``data.test_mask``), in [0, 1]:
        ``"accuracy"``, or ``"roc_auc"`` for two classes (scored by the probability of class 1, as Platonov et
        al. (ICLR 2023) evaluate minesweeper and tolokers; see :func:`lds.metrics.evaluate`)."""
        from .metrics import check_metric, evaluate

        self._check_fitted()
        metric = check_metric(metric, self.num_classes_)
        mask, y = check_score_inputs(data, mask, self.num_nodes_)
        return evaluate(self.predict_proba(data), y, mask, metric)

    def edge_probs(self) -> tuple[Tensor, Tensor]:
        """The learned distribution as ``(edge_index, probs)`` (both directions, pairs with θ > 0)."""
        self._check_fitted()
        return self.distribution_.edge_probs()

    # ------------------------------------------------------------------ the learned graph out
    def to_data(self, min_prob: float = 0.0) -> Any:
        """The learned graph as a PyG ``Data(edge_index, edge_weight=θ, num_nodes)``: both directions of every
        pair with ``θ > min_prob`` (see :func:`lds.export.to_data`)."""
        from .export import to_data

        return to_data(self, min_prob)

    def to_networkx(self, min_prob: float = 0.0) -> Any:
        """The learned graph as an undirected ``networkx.Graph`` on nodes ``0..N-1`` with θ as the edge attribute
        ``weight`` (pairs with ``θ > min_prob``; see :func:`lds.export.to_networkx`)."""
        from .export import to_networkx

        return to_networkx(self, min_prob)

    def to_scipy(self, min_prob: float = 0.0) -> Any:
        """The learned graph as a symmetric ``scipy.sparse.csr_array`` ``(N, N)`` (float64) with θ at ``(i, j)``
        and ``(j, i)`` for the pairs with ``θ > min_prob`` (see :func:`lds.export.to_scipy`)."""
        from .export import to_scipy

        return to_scipy(self, min_prob)

    def sample_graph(self, generator: torch.Generator | int) -> Any:
        """One graph ``A ~ Ber(θ)`` as ``Data(edge_index, num_nodes)`` from a CPU ``torch.Generator`` or an int
        seed (the same seed gives the same graph; see :func:`lds.export.sample_graph`)."""
        from .export import sample_graph

        return sample_graph(self, generator)

    # ------------------------------------------------------------------ persistence
    def _plain_params(self, *, checkpoint: bool) -> dict[str, Any]:
        """``get_params()`` as plain Python values, loadable with ``torch.load(weights_only=True)``.

        A callable ``backbone`` is code, not data: a checkpoint records its qualified name (to compare on
        resume); :meth:`save` refuses it."""
        out: dict[str, Any] = {}
        for name, value in self.get_params().items():
            if name == "backbone" and callable(value):
                if not checkpoint:
                    raise ValueError(
                        f"save cannot store backbone={value!r}: a callable backbone is code, and model files are "
                        "loaded without running code. Fit with a string backbone ('gcn', 'gcnconv', 'graphconv') "
                        "to save the model, or save the weights separately (model.params_, "
                        "model.distribution_.state_dict())."
                    )
                value = f"<callable {getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}>"
            elif isinstance(value, torch.device):
                value = str(value)
            elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
                value = int(value)
            elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                value = float(value)
            elif value is not None and not isinstance(value, (bool, int, float, str)):
                raise ValueError(f"cannot save setting {name}={value!r}: settings must be numbers, strings, bools or "
                                 "None.")
            out[name] = bool(value) if isinstance(value, bool) else value
        return out

    def _check_resume(self, ck: dict[str, Any], dist: EdgeDistribution, fingerprint: dict[str, Any],
                      path: str | os.PathLike) -> None:
        path = os.fspath(path)
        theirs_data = ck["data"]
        differ = sorted(k for k in fingerprint.keys() | theirs_data.keys()
                        if fingerprint.get(k) != theirs_data.get(k))
        if differ:
            raise ValueError(
                f"the checkpoint {path} was written for different data (differs in: {', '.join(differ)}): resume "
                "with the same x, y, masks and edge_index, or start a new fit without resume=."
            )
        mine, theirs = self._plain_params(checkpoint=True), ck["params"]
        diff = {k for k in mine if k not in ("verbose", "max_outer_iters", "checkpoint_every", "device")
                and mine[k] != theirs.get(k)}
        if diff:
            raise ValueError(f"the checkpoint {path} was written with different settings: {sorted(diff)}.")
        if ck["num_pairs"] != dist.pairs.size(1) or ck["probs"].shape != (dist.pairs.size(1),):
            raise ValueError(
                f"the checkpoint {path} has {ck['num_pairs']} candidate pairs but this data gives "
                f"{dist.pairs.size(1)}: resume with the same data and settings."
            )
        moments = ck.get("outer_moments", [])
        sizes = [dist.pairs.size(1)] * 2 + ([1, 1] if self.learn_inner_lr else [])
        if self.resolved_outer_optimizer(dist.is_all_pairs) == "adam" and ck["num_updates"] > 0 and (
                not isinstance(moments, list) or not all(isinstance(m, Tensor) for m in moments)
                or [m.numel() for m in moments] != sizes):
            raise ValueError(f"the checkpoint {path} lacks the outer Adam moments of θ (and λ) that resume needs: "
                             "it is corrupt or of an older version; start a new fit without resume=.")

    def save(self, path: str | os.PathLike) -> None:
        """Save the fitted model (settings, θ, GCN weights) atomically; the file holds only tensors and plain
        values, so :meth:`load` runs no code. A model with a callable ``backbone`` cannot be saved."""
        self._check_fitted()
        state = {"kind": "lds-model", "params": self._plain_params(checkpoint=False),
                 "distribution": self.distribution_.state_dict(), "gcn": tuple(p.cpu() for p in self.params_),
                 **{name: getattr(self, name + "_") for name in _FITTED},
                 "init_graph": self.init_graph_, "init_check": dict(self.init_check_)}
        _atomic_save(state, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> LDS:
        """Load a model written by :meth:`save` (tensors and plain values only: no code runs)."""
        state = _load_file(path, "a saved LDS model (written by model.save(path))", "lds-model", _MODEL_KEYS)
        path = os.fspath(path)
        params = dict(state["params"])
        unknown = sorted(set(params) - set(cls._get_param_names()))
        if unknown:
            raise ValueError(f"{path} is not a saved LDS model of this version: unknown settings {unknown}.")
        if device is not None:
            params["device"] = device
        model = cls(**params)
        try:
            model._check_settings()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} holds settings that cannot be used here: {exc} (pass load(path, device=...) "
                             "to choose the device).") from exc
        try:
            dist_state = state["distribution"]
            _check_keys(dist_state, path, "distribution", {"pairs": Tensor, "num_nodes": int, "probs": Tensor,
                                                           "is_all_pairs": bool})
            check_pairs(dist_state["pairs"], dist_state["num_nodes"])
            model.distribution_ = EdgeDistribution.from_state_dict(dist_state, device=model.device)
            gcn = state["gcn"]
            if not isinstance(gcn, (tuple, list)) or not gcn or not all(
                    isinstance(p, Tensor) and p.is_floating_point() for p in gcn):
                raise ValueError("'gcn' must be a non-empty tuple of floating-point weight tensors")
            for name in ("val_outer_idx", "val_stop_idx"):
                idx = state[name]
                if idx.dtype != torch.long or idx.dim() != 1 or (idx.numel() and not (
                        0 <= int(idx.min()) and int(idx.max()) < state["num_nodes"])):
                    raise ValueError(f"{name!r} must be node indices in [0, {state['num_nodes']})")
            if dist_state["num_nodes"] != state["num_nodes"]:
                raise ValueError(f"the distribution has {dist_state['num_nodes']} nodes, the model "
                                 f"{state['num_nodes']}")
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{path} is not a valid saved LDS model: {exc}.") from exc
        model.params_ = tuple(p.to(model.device) for p in gcn)
        for name in _FITTED:
            setattr(model, name + "_", state[name])
        # the initial graph chosen (files of versions before init_graph started from the given graph)
        init_graph, init_check = state.get("init_graph", "given"), state.get("init_check", {})
        if (problem := _init_record_problem(init_graph, init_check)) is not None:
            raise ValueError(f"{path} is not a valid saved LDS model: {problem}.")
        model.init_graph_, model.init_check_ = init_graph, init_check
        model.backbone_ = None
        if not (isinstance(model.backbone, str) and model.backbone == "gcn"):
            model.backbone_ = Backbone(model.backbone, model.in_features_, model.hidden, model.num_classes_,
                                       model._torch_dtype, model.device)
        return model


# ----------------------------------------------------------------------------- files

_Real = (int, float)
#: the fitted attributes (``name + "_"``) beside θ and the weights: set by fit, written by save, read by load
_FITTED = ("inner_lr", "best_iteration", "best_val_acc", "history", "num_classes", "num_nodes", "in_features",
           "val_outer_idx", "val_stop_idx", "initial_num_edges")
_MODEL_KEYS: Mapping[str, Any] = MappingProxyType({
    "params": dict, "distribution": dict, "gcn": (tuple, list), "inner_lr": _Real, "num_classes": int,
    "num_nodes": int, "history": list, "in_features": int, "best_iteration": int, "best_val_acc": _Real,
    "val_outer_idx": Tensor, "val_stop_idx": Tensor, "initial_num_edges": _Real,
})
_CHECKPOINT_KEYS: Mapping[str, Any] = MappingProxyType({
    "elapsed": _Real, "params": dict, "data": dict, "probs": Tensor, "num_pairs": int, "lr_logit": Tensor,
    "generator": Tensor, "iteration": int, "num_updates": int, "since_best": int, "best": dict, "history": list,
})
_BEST_KEYS: Mapping[str, Any] = MappingProxyType({
    "val_acc": _Real, "val_loss": _Real, "iteration": int, "probs": Tensor, "params": (tuple, list),
    "lr_logit": Tensor,
})
# what torch.load raises on a file that is not a torch file, a truncated one, or one with code in its pickle
_LOAD_ERRORS = (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, TypeError, KeyError, AttributeError,
                IndexError, ImportError, NotImplementedError, OverflowError, MemoryError, struct.error, OSError)


def _check_keys(state: Any, path: str, what: str, spec: Mapping[str, Any]) -> None:
    """Raise ValueError unless ``state`` is a dict with every key of ``spec``, each of the given type(s)."""
    if not isinstance(state, dict):
        raise ValueError(f"{path}: {what} must be a dict, got {type(state).__name__}")
    for key, types in spec.items():
        if key not in state:
            raise ValueError(f"{path}: {what} has no {key!r} entry")
        value = state[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in (
                types if isinstance(types, tuple) else (types,))):
            raise ValueError(f"{path}: {what}[{key!r}] must be {getattr(types, '__name__', types)}, got "
                             f"{type(value).__name__}")


def _load_file(path: str | os.PathLike, what: str, kind: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` (tensors and plain containers only: a pickled payload is refused,
    not run) and a check that it is ``what``: a dict of ``kind`` with the keys and types of ``spec``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {type(path).__name__}.")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (expected {what}).")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (PermissionError, FileNotFoundError, IsADirectoryError):
        raise
    except _LOAD_ERRORS as exc:  # OSError: torch seeks past the end of a truncated file
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path} is not {what}: torch.load (weights only, no code) cannot read it ({type(exc).__name__}: "
            f"{first}). The file is truncated, corrupt, not a torch file, or holds objects other than tensors "
            "and plain values."
        ) from exc
    if not isinstance(state, dict) or state.get("kind") != kind:
        found = state.get("kind") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path} is not {what}: found {found!r} instead of a dict with kind={kind!r}.")
    if kind == "lds-checkpoint" and "data" not in state:
        raise ValueError(f"{path} is an LDS checkpoint of an older version, without the data fingerprint that resume "
                         "checks: start a new fit without resume=.")
    try:
        _check_keys(state, path, "the file", spec)
    except ValueError as exc:
        raise ValueError(f"{exc}: it is not {what}.") from None
    return state


def _init_record_problem(init_graph: Any, init_check: Any) -> str | None:
    """What is wrong with a recorded initial-graph choice (a saved model's or a checkpoint's), or None."""
    if init_graph in INIT_GRAPHS[1:] and isinstance(init_check, dict):
        return None
    return (f"'init_graph' must be 'given', 'knn' or 'none' and 'init_check' a dict, got {init_graph!r} and "
            f"{type(init_check).__name__}")


def _load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by ``fit(..., checkpoint=path)``, checked for the entries that resume reads."""
    what = "an LDS checkpoint (written by fit(..., checkpoint=path))"
    ck = _load_file(path, what, "lds-checkpoint", _CHECKPOINT_KEYS)
    path = os.fspath(path)
    try:
        _check_keys(ck["best"], path, "best", _BEST_KEYS)
        if not all(isinstance(p, Tensor) for p in ck["best"]["params"]):
            raise ValueError(f"{path}: best['params'] must hold weight tensors")
        if ck["generator"].dtype != torch.uint8 or ck["generator"].dim() != 1:
            raise ValueError(f"{path}: 'generator' must be a torch.Generator state (a 1-D uint8 tensor)")
        if ck["probs"].dim() != 1 or not ck["probs"].is_floating_point() or ck["lr_logit"].numel() != 1:
            raise ValueError(f"{path}: 'probs' must be a 1-D float tensor and 'lr_logit' a scalar")
        if min(ck["since_best"], ck["iteration"], ck["num_updates"]) < 0 or not ck["best"]["params"]:
            raise ValueError(f"{path}: negative counters or no network weights")
        if "init_graph" in ck and (problem := _init_record_problem(ck["init_graph"], ck.get("init_check", {}))):
            raise ValueError(f"{path}: {problem}")
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{exc}: it is not {what}.") from exc
    return ck


def _check_writable(path: str | os.PathLike, argument: str) -> None:
    """Raise ValueError unless a file can be written at ``path`` (its directory is created if missing)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        example = os.path.join(path, "lds.ckpt")
        raise ValueError(f"{argument}={path!r} is a directory: give a file path, e.g. {example!r}.")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(
            f"{argument}={path!r} is not writable ({exc.strerror or exc}): choose a path in a writable directory."
        ) from exc


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable, where the platform supports fsync on a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """Write with ``torch.save`` to a temporary file, fsync it, then rename (no torn file on a crash); the
    temporary file is removed when the write fails."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
