r"""Meta-learning of hyper-representations (Franceschi et al., ICML 2018, Sec. 4, Algorithm 1).

A representation ``h_λ`` (e.g. the 4-block convolutional network C4L) is the outer variable, shared
across episodes; each episode ``j`` has its own linear head ``w_j`` (multinomial logistic regression),
the inner variable, trained by T steps of gradient descent from 0 on the episode's training set:

    w_j^T(λ) = Φ^T(0; h_λ(X_j^tr)),      min_λ  Σ_j  ℓ(h_λ(X_j^val) w_j^T(λ), Y_j^val).

The hypergradient is computed by :func:`bilevel_core.hypergradient` (reverse mode through the heads'
dynamics) with respect to the *features* ``h_λ(X^tr)``, ``h_λ(X^val)`` (and the inner learning rate),
then back-propagated once into λ: the network runs once per episode, not once per inner step.

Variants (the ICML 2018 Table 4 baselines): ``"bilevel"``; ``"approx"`` ignores the inner dynamics
(``∇_λ w_T = 0``, only the direct term, ``truncate=0``); ``"bilevel_train"`` uses the training set as
validation set; ``"classic"`` ignores the dynamics *and* uses the training set, i.e. joint (alternating)
multitask training of the representation and the heads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .dynamics import GradientDescent
from .hypergradient import hypergradient

__all__ = ["MODES", "HyperRepresentation", "conv4_features", "conv4_init", "mean_ci95"]

MODES = ("bilevel", "approx", "bilevel_train", "classic")


def conv4_init(filters: int = 64, in_channels: int = 1, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32) -> tuple[Tensor, ...]:
    """Parameters of C4L: 4 blocks of 3×3 convolution (He init), batch-norm scale and shift."""
    params: list[Tensor] = []
    c_in = in_channels
    for _ in range(4):
        std = math.sqrt(2.0 / (9 * c_in))
        zeros = torch.zeros(filters, dtype=dtype)
        params += [torch.randn(filters, c_in, 3, 3, generator=generator, dtype=dtype) * std, zeros,
                   torch.ones(filters, dtype=dtype), zeros.clone()]
        c_in = filters
    return tuple(params)


def conv4_features(params: Sequence[Tensor], x: Tensor) -> Tensor:
    """C4L features ``(n, filters·s²)``: [conv3×3 → batch norm (batch statistics) → ReLU → 2×2 max-pool] × 4."""
    h = x
    for b in range(4):
        W, bias, gamma, beta = params[4 * b: 4 * b + 4]
        h = F.conv2d(h, W, bias, padding=1)
        h = F.batch_norm(h, None, None, gamma, beta, training=True)
        h = F.max_pool2d(F.relu(h), 2)
    return h.flatten(1)


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95 % normal-approximation half-width ``1.96·s/√n`` (for ≥ 600 episodes)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci95 needs at least one value.")
    m = sum(values) / n
    if n < 2:
        return m, float("nan")
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, 1.96 * s / math.sqrt(n)


class HyperRepresentation:
    """Hyper-representation learner (ICML 2018 Algorithm 1) over N-way episodes.

    Args:
        features: ``features(params, x) -> (n, d)``, the representation ``h_λ`` (default C4L).
        params: the initial λ (tuple of tensors; default ``conv4_init(filters)``).
        n_way: classes per episode (the head's output size).
        T: inner gradient steps of the head.
        inner_lr: initial learning rate of the head (learned as ``exp(λ_η)`` when ``learn_inner_lr``).
        meta_batch: episodes per outer step.
        outer_lr: Adam's step size on λ.
        mode: one of :data:`MODES`.
        filters, seed, device, dtype.
    """

    def __init__(self, n_way: int = 5, T: int = 5, inner_lr: float = 0.1, learn_inner_lr: bool = True,
                 meta_batch: int = 4, outer_lr: float = 1e-3, mode: str = "bilevel", filters: int = 32,
                 features: Callable[[Sequence[Tensor], Tensor], Tensor] | None = None,
                 params: Sequence[Tensor] | None = None, seed: int = 0, device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        for name, v in (("n_way", n_way), ("T", T), ("meta_batch", meta_batch), ("filters", filters)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}.")
        if not inner_lr > 0 or not outer_lr > 0:
            raise ValueError(f"inner_lr and outer_lr must be > 0, got {inner_lr} and {outer_lr}.")
        self.n_way, self.T, self.meta_batch, self.mode = n_way, T, meta_batch, mode
        self.learn_inner_lr, self.outer_lr, self.device, self.dtype = learn_inner_lr, outer_lr, device, dtype
        self.features = features or conv4_features
        g = torch.Generator().manual_seed(seed)
        init = params if params is not None else conv4_init(filters, generator=g, dtype=dtype)
        self.params = tuple(p.detach().clone().to(device).requires_grad_(True) for p in init)
        self.log_lr = torch.tensor(math.log(inner_lr), dtype=dtype, device=device, requires_grad=learn_inner_lr)
        hp = [*self.params, self.log_lr] if learn_inner_lr else list(self.params)
        self.optimizer = torch.optim.Adam(hp, lr=outer_lr)
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ one episode
    def _head_dynamics(self, feats_tr: Tensor, y_tr: Tensor) -> GradientDescent:
        def inner(w, hp):
            return F.cross_entropy(hp[0] @ w[0] + w[1], y_tr)

        return GradientDescent(inner, lr=lambda hp: torch.exp(hp[2]))

    def _zero_head(self, d: int) -> tuple[Tensor, Tensor]:
        return (torch.zeros(d, self.n_way, dtype=self.dtype, device=self.device),
                torch.zeros(self.n_way, dtype=self.dtype, device=self.device))

    def episode_hypergradient(self, x_tr: Tensor, y_tr: Tensor, x_val: Tensor, y_val: Tensor,
                              ) -> tuple[tuple[Tensor, ...], Tensor, float]:
        """Hypergradient of one episode's outer loss w.r.t. (λ, log η), and the loss value (Algorithm 1, lines 3–6)."""
        if self.mode in ("bilevel_train", "classic"):
            x_val, y_val = x_tr, y_tr
        n_tr = x_tr.size(0)
        feats = self.features(self.params, torch.cat([x_tr, x_val]).to(self.device, self.dtype))
        f_tr, f_val = feats[:n_tr], feats[n_tr:]
        y_tr, y_val = y_tr.to(self.device), y_val.to(self.device)

        def outer(w, hp):
            return F.cross_entropy(hp[1] @ w[0] + w[1], y_val)

        hp = (f_tr.detach(), f_val.detach(), self.log_lr.detach())
        truncate = 0 if self.mode in ("approx", "classic") else self.T
        grads, state = hypergradient(self._zero_head(feats.size(1)), hp, self._head_dynamics(f_tr, y_tr), outer,
                                     self.T, truncate=truncate, return_state=True)
        lam_grads = torch.autograd.grad((f_tr, f_val), self.params, (grads[0], grads[1]), allow_unused=True)
        lam_grads = tuple(torch.zeros_like(p) if g is None else g for p, g in zip(self.params, lam_grads))
        assert state.outer_loss is not None  # always set by hypergradient
        return lam_grads, grads[2], float(state.outer_loss)

    # ------------------------------------------------------------------ training
    def step(self, episodes: Sequence[Any]) -> float:
        """One outer step on a meta-batch of episodes (objects with support/query tensors and labels)."""
        total: list[Tensor] | None = None
        lr_grad = torch.zeros((), dtype=self.dtype, device=self.device)
        losses = []
        for ep in episodes:
            g, g_lr, loss = self.episode_hypergradient(ep.support, ep.support_labels, ep.query, ep.query_labels)
            total = list(g) if total is None else [a + b for a, b in zip(total, g)]
            lr_grad = lr_grad + g_lr
            losses.append(loss)
        assert total is not None
        self.optimizer.zero_grad(set_to_none=True)
        for p, g_total in zip(self.params, total):
            p.grad = g_total / len(episodes)
        if self.learn_inner_lr:
            self.log_lr.grad = lr_grad / len(episodes)
        self.optimizer.step()
        value = sum(losses) / len(losses)
        self.history.append({"outer_loss": value, "inner_lr": float(self.log_lr.detach().exp())})
        return value

    def fit(self, sampler: Sequence[Any], meta_iters: int, callback: Callable[[int, float], Any] | None = None,
            start: int = 0) -> HyperRepresentation:
        """``meta_iters`` outer steps on consecutive meta-batches ``sampler[k·B : (k+1)·B]`` from ``start``."""
        for it in range(start, meta_iters):
            batch = [sampler[it * self.meta_batch + j] for j in range(self.meta_batch)]
            loss = self.step(batch)
            if callback is not None:
                callback(it, loss)
        return self

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def _features_eval(self, x: Tensor) -> Tensor:
        return self.features(tuple(p.detach() for p in self.params), x.to(self.device, self.dtype))

    def episode_accuracy(self, x_tr: Tensor, y_tr: Tensor, x_test: Tensor, y_test: Tensor,
                         n_way: int | None = None) -> float:
        """Train a fresh head (T steps, the learned η) on the features of ``x_tr``; accuracy on ``x_test``."""
        n_way = n_way or self.n_way
        n_tr = x_tr.size(0)
        feats = self._features_eval(torch.cat([x_tr, x_test]))
        f_tr, f_te = feats[:n_tr], feats[n_tr:]
        y_tr = y_tr.to(self.device)
        w = torch.zeros(feats.size(1), n_way, dtype=self.dtype, device=self.device, requires_grad=True)
        b = torch.zeros(n_way, dtype=self.dtype, device=self.device, requires_grad=True)
        lr = float(self.log_lr.detach().exp())
        for _ in range(self.T):
            with torch.enable_grad():
                gw, gb = torch.autograd.grad(F.cross_entropy(f_tr @ w + b, y_tr), (w, b))
            w, b = (w - lr * gw).detach().requires_grad_(True), (b - lr * gb).detach().requires_grad_(True)
        pred = (f_te @ w + b).argmax(1).cpu()
        return float((pred == y_test.cpu()).double().mean())

    def evaluate(self, sampler: Sequence[Any], num_episodes: int) -> tuple[float, float]:
        """Mean query accuracy and 95 % half-width over the first ``num_episodes`` episodes of ``sampler``."""
        accs = [self.episode_accuracy(ep.support, ep.support_labels, ep.query, ep.query_labels)
                for ep in (sampler[i] for i in range(num_episodes))]
        return mean_ci95(accs)

    def state_dict(self) -> dict[str, Any]:
        return {"params": [p.detach().cpu() for p in self.params], "log_lr": self.log_lr.detach().cpu(),
                "optimizer": self.optimizer.state_dict(), "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for p, q in zip(self.params, state["params"]):
                p.copy_(q)
            self.log_lr.copy_(state["log_lr"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = list(state["history"])
