r"""Data hyper-cleaning: per-example loss weights as hyperparameters (Franceschi et al., ICML 2017, Sec. 5.1).

Some training labels are wrong; a small validation set is clean. Each training example ``i`` gets a
weight ``σ(λ_i)`` in the inner objective, and the learning rate ``η = exp(λ_η)`` is a hyperparameter too:

    L(w, λ) = (1/n) Σ_i σ(λ_i) ℓ(f_w(x_i), y_i),        E(w) = (1/m) Σ_j ℓ(f_w(x'_j), y'_j),

    min_λ  E(w_T(λ)),    w_t = w_{t-1} − η ∇_w L(w_{t-1}, λ),   w_0 fixed,

with the hypergradient of ``E(w_T)`` by reverse mode over the T steps (or truncated to the last
``truncate`` of them), and Adam on λ. Examples whose weight ends below ``threshold`` are flagged
as corrupted.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(60, 5, generator=g); y = (X[:, 0] > 0).long()
    >>> y_noisy = y.clone(); y_noisy[:15] = 1 - y_noisy[:15]          # 15 flipped labels
    >>> Xv = torch.randn(40, 5, generator=g); yv = (Xv[:, 0] > 0).long()
    >>> hc = HyperCleaner(T=30, outer_iters=40, verbose=False).fit(X, y_noisy, Xv, yv)
    >>> hc.weights_.shape, float(hc.weights_[:15].mean()) < float(hc.weights_[15:].mean())
    (torch.Size([60]), True)
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .dynamics import GradientDescent, Momentum
from .hypergradient import hypergradient

__all__ = ["HyperCleaner", "detection_scores"]


def detection_scores(flagged: Tensor, corrupted: Tensor) -> dict[str, float]:
    """Precision, recall and F1 of ``flagged`` as a detector of ``corrupted`` (boolean masks, same shape)."""
    flagged, corrupted = torch.as_tensor(flagged, dtype=torch.bool), torch.as_tensor(corrupted, dtype=torch.bool)
    if flagged.shape != corrupted.shape:
        raise ValueError(f"flagged and corrupted must have one shape, got {tuple(flagged.shape)} and "
                         f"{tuple(corrupted.shape)}.")
    tp = int((flagged & corrupted).sum())
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(corrupted.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


class HyperCleaner:
    """Learn per-example loss weights ``σ(λ_i)`` (and the learning rate) on a clean validation set.

    Args:
        hidden: ``None`` for softmax regression, or the width of a one-hidden-layer tanh MLP.
        T: inner gradient steps per hyper-iteration (from the same ``w_0`` every time).
        truncate: back-propagate through the last ``truncate`` steps only (``None``: all T, full reverse).
        inner_lr: initial η (learned as ``exp(λ_η)`` when ``learn_lr``).
        learn_lr: treat η as a hyperparameter.
        momentum: heavy-ball momentum of the inner run (``None``: plain gradient descent).
        outer_lr: Adam's step size on λ.
        outer_iters: hyper-iterations.
        init_weight: initial σ(λ_i) for every example, in (0, 1).
        threshold: examples with ``σ(λ_i) < threshold`` are flagged as corrupted.
        seed, device, dtype, verbose.

    Attributes (after :meth:`fit`): ``weights_`` (n,), ``lr_``, ``flagged_`` (n,), ``params_`` (the
    inner solution ``w_T`` with the learned λ), ``history_`` (outer loss per hyper-iteration).
    """

    def __init__(
        self,
        hidden: int | None = None,
        T: int = 100,
        truncate: int | None = None,
        inner_lr: float = 0.5,
        learn_lr: bool = True,
        momentum: float | None = None,
        outer_lr: float = 0.1,
        outer_iters: int = 300,
        init_weight: float = 0.5,
        threshold: float = 0.5,
        seed: int = 0,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        verbose: bool = True,
    ) -> None:
        self.hidden = hidden
        self.T = T
        self.truncate = truncate
        self.inner_lr = inner_lr
        self.learn_lr = learn_lr
        self.momentum = momentum
        self.outer_lr = outer_lr
        self.outer_iters = outer_iters
        self.init_weight = init_weight
        self.threshold = threshold
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ checks
    def _check(self) -> None:
        for name in ("T", "outer_iters"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}.")
        if self.truncate is not None and (not isinstance(self.truncate, int) or not 0 <= self.truncate <= self.T):
            raise ValueError(f"truncate must be None or an int in [0, T={self.T}], got {self.truncate!r}.")
        if self.hidden is not None and (not isinstance(self.hidden, int) or self.hidden < 1):
            raise ValueError(f"hidden must be None (softmax regression) or an int >= 1, got {self.hidden!r}.")
        if not self.inner_lr > 0 or not self.outer_lr > 0:
            raise ValueError(f"inner_lr and outer_lr must be > 0, got {self.inner_lr} and {self.outer_lr}.")
        if not 0 < self.init_weight < 1:
            raise ValueError(f"init_weight must be in (0, 1), got {self.init_weight}.")
        if self.momentum is not None and not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be None or in [0, 1), got {self.momentum}.")

    def _data(self, X: Any, y: Any, name: str) -> tuple[Tensor, Tensor]:
        X = torch.as_tensor(X, dtype=self.dtype, device=self.device)
        y = torch.as_tensor(y, device=self.device)
        if X.dim() != 2:
            raise ValueError(f"{name} features must have shape (n, d), got {tuple(X.shape)}.")
        if y.shape != (X.size(0),) or y.dtype.is_floating_point:
            raise ValueError(f"{name} labels must be integers of shape ({X.size(0)},), got {tuple(y.shape)} {y.dtype}.")
        if X.size(0) == 0:
            raise ValueError(f"the {name} set is empty: pass at least one example.")
        if not bool(torch.isfinite(X).all()):
            raise ValueError(f"{name} features contain NaN or infinite values.")
        return X, y.long()

    @staticmethod
    def _check_labels(y: Tensor, name: str, num_classes: int) -> None:
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"{name} labels must be in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}].")

    # ------------------------------------------------------------------ model
    def _init_params(self, d: int, c: int) -> tuple[Tensor, ...]:
        kw: dict[str, Any] = {"dtype": self.dtype, "device": self.device}
        if self.hidden is None:
            return torch.zeros(d, c, **kw), torch.zeros(c, **kw)
        g = torch.Generator().manual_seed(self.seed)
        h = self.hidden
        W1 = (torch.rand(d, h, generator=g, dtype=self.dtype) * 2 - 1) * math.sqrt(6 / (d + h))
        W2 = (torch.rand(h, c, generator=g, dtype=self.dtype) * 2 - 1) * math.sqrt(6 / (h + c))
        return W1.to(self.device), torch.zeros(h, **kw), W2.to(self.device), torch.zeros(c, **kw)

    @staticmethod
    def _logits(params: tuple[Tensor, ...], X: Tensor) -> Tensor:
        if len(params) == 2:
            return X @ params[0] + params[1]
        W1, b1, W2, b2 = params
        return torch.tanh(X @ W1 + b1) @ W2 + b2

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any, X_val: Any, y_val: Any, num_classes: int | None = None) -> HyperCleaner:
        """Learn the weights on ``(X, y)`` (noisy) against ``(X_val, y_val)`` (clean); returns self."""
        self._check()
        X, y = self._data(X, y, "training")
        X_val, y_val = self._data(X_val, y_val, "validation")
        if num_classes is None:
            num_classes = int(y.max()) + 1
        self._check_labels(y, "training", num_classes)
        self._check_labels(y_val, "validation", num_classes)
        if X_val.size(1) != X.size(1):
            raise ValueError(f"X_val has {X_val.size(1)} features, X has {X.size(1)}.")
        n = X.size(0)
        kw: dict[str, Any] = {"dtype": self.dtype, "device": self.device}
        logit = math.log(self.init_weight / (1 - self.init_weight))
        lam = torch.full((n,), logit, **kw, requires_grad=True)
        lr_log = torch.tensor(math.log(self.inner_lr), **kw, requires_grad=self.learn_lr)
        hparams = (lam, lr_log)
        params0 = self._init_params(X.size(1), num_classes)

        def inner(w, hp):
            losses = F.cross_entropy(self._logits(w, X), y, reduction="none")
            return (torch.sigmoid(hp[0]) * losses).mean()

        def outer(w, hp):
            return F.cross_entropy(self._logits(w, X_val), y_val)

        def lr(hp):
            return torch.exp(hp[1])

        self.dynamics_ = (GradientDescent(inner, lr=lr) if self.momentum is None
                          else Momentum(inner, lr=lr, momentum=self.momentum))
        opt = torch.optim.Adam([lam, lr_log] if self.learn_lr else [lam], lr=self.outer_lr)
        truncate = self.T if self.truncate is None else self.truncate
        self.history_: list[float] = []
        for it in range(self.outer_iters):
            grads, state = hypergradient(params0, hparams, self.dynamics_, outer, self.T, truncate=truncate,
                                         return_state=True)
            opt.zero_grad(set_to_none=True)
            lam.grad = grads[0]
            if self.learn_lr:
                lr_log.grad = grads[1]
            opt.step()
            assert state.outer_loss is not None  # always set by hypergradient
            self.history_.append(float(state.outer_loss))
            if self.verbose and (it % 50 == 0 or it == self.outer_iters - 1):
                print(f"hyper-iteration {it}: validation loss {self.history_[-1]:.4f}, lr {float(lr_log.exp()):.3g}")
        self.weights_ = torch.sigmoid(lam.detach())
        self.lr_ = float(lr_log.detach().exp())
        self.flagged_ = self.weights_ < self.threshold
        # the inner solution w_T with the learned hyperparameters
        state = hypergradient(params0, tuple(h.detach() for h in hparams), self.dynamics_, outer, self.T,
                              truncate=0, return_state=True)[1]
        self.params_ = tuple(p.detach() for p in state.params)
        self.num_classes_ = num_classes
        return self

    # ------------------------------------------------------------------ use
    def predict(self, X: Any) -> Tensor:
        """Predicted classes of the model trained with the learned weights."""
        if not hasattr(self, "params_"):
            raise RuntimeError("this HyperCleaner is not fitted yet: call fit(X, y, X_val, y_val) first.")
        X = torch.as_tensor(X, dtype=self.dtype, device=self.device)
        return self._logits(self.params_, X).argmax(1)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy in [0, 1]."""
        y = torch.as_tensor(y, device=self.device)
        return float((self.predict(X) == y).double().mean())

    def detection(self, corrupted: Any) -> dict[str, float]:
        """Precision, recall and F1 of the flagged examples against the true corrupted mask."""
        if not hasattr(self, "flagged_"):
            raise RuntimeError("this HyperCleaner is not fitted yet: call fit(X, y, X_val, y_val) first.")
        return detection_scores(self.flagged_.cpu(), torch.as_tensor(corrupted).cpu())
