"""A categorical hyperparameter learned by bilevel_core: one of K feature transformations per feature group.

Issue 27. Synthetic regression: 6 groups of 3 features; the target is built from each group through one
of K = 4 transformations (x, x², |x|, sin 3x), unknown to the learner. The hyperparameter is a logit
table ℓ (6 × 4), π_g = softmax(ℓ_g); the inner model is ridge regression on the transformed features
Σ_k z_gk T_k(x_g), z_g ~ Cat(π_g), trained by T steps of gradient descent from w = 0; the outer objective
is the validation mean squared error. ℓ is updated by Adam.

- ``st`` (:class:`CategoricalStraightThrough`) and ``gumbel_hard`` (:class:`CategoricalGumbelSoftmax`,
  τ = 0.5): a fresh choice at every inner step (its uniforms come from the per-step batch, so the
  checkpointed reverse hypergradient, ``checkpoint_steps="sqrt"``, replays it exactly);
- ``sf`` (:class:`CategoricalScoreFunction`): one choice per hyper-step, only the value f_T is used.

Reported: how many groups get their true transformation (argmax π_g), the test MSE of a head trained on
the chosen transformations, against the oracle (true transformations) and all-identity.

    python examples/categorical_transforms.py            # about a minute on one core
    python examples/categorical_transforms.py --quick
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bilevel_core import (
    CategoricalGumbelSoftmax,
    CategoricalScoreFunction,
    CategoricalStraightThrough,
    GradientDescent,
    hypergradient,
)

GROUPS, PER_GROUP, K = 6, 3, 4
NAMES = ("x", "x²", "|x|", "sin 3x")


def transforms(x: torch.Tensor) -> torch.Tensor:
    """``(n, G, P)`` → ``(n, G, K, P)``: the K candidate transformations of every feature."""
    return torch.stack([x, x * x - 1.0, x.abs() - 0.8, torch.sin(3 * x)], dim=2)


def make_data(seed: int = 0, n: int = 300) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    true = torch.randint(0, K, (GROUPS,), generator=g)
    beta = torch.randn(GROUPS, PER_GROUP, generator=g, dtype=torch.float64)

    def draw(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(m, GROUPS, PER_GROUP, generator=g, dtype=torch.float64)
        feats = transforms(x)[:, torch.arange(GROUPS), true]  # (m, G, P)
        y = (feats * beta).sum((1, 2)) + 0.1 * torch.randn(m, generator=g, dtype=torch.float64)
        return transforms(x), y

    (X, y), (Xv, yv), (Xt, yt) = draw(n), draw(n), draw(2 * n)
    return {"X": X, "y": y, "Xv": Xv, "yv": yv, "Xt": Xt, "yt": yt, "true": true}


def design(Tx: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Σ_k z_gk T_k(x_g), flattened to ``(n, G·P)``: z is one-hot (or relaxed) ``(G, K)``."""
    return torch.einsum("ngkp,gk->ngp", Tx, z).reshape(Tx.size(0), -1)


def fit_head(Tx: torch.Tensor, y: torch.Tensor, z: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    A = design(Tx, z)
    return torch.linalg.solve(A.T @ A / len(y) + ridge * torch.eye(A.size(1), dtype=A.dtype), A.T @ y / len(y))


def learn(data: dict[str, torch.Tensor], estimator: str, *, outer_iters: int, T: int, seed: int) -> torch.Tensor:
    """Learn the logits ℓ with the given estimator; returns ℓ."""
    X, y, Xv, yv = data["X"], data["y"], data["Xv"], data["yv"]
    est = {"st": CategoricalStraightThrough(), "gumbel_hard": CategoricalGumbelSoftmax(0.5, hard=True),
           "sf": CategoricalScoreFunction(0.9)}[estimator]
    logits = torch.zeros(GROUPS, K, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    n_uniforms = (GROUPS,) if estimator != "gumbel_hard" else (GROUPS, K)
    w0 = (torch.zeros(GROUPS * PER_GROUP, dtype=torch.float64),)

    def inner(w, hp, u):
        z = est.sample(torch.softmax(hp[0], -1), uniforms=u)
        return 0.5 * ((design(X, z) @ w[0] - y) ** 2).mean() + 1e-3 * (w[0] ** 2).sum()

    def inner_fixed(w, hp, z):  # the inner objective for one fixed choice z (score function)
        return 0.5 * ((design(X, z) @ w[0] - y) ** 2).mean() + 1e-3 * (w[0] ** 2).sum()

    dyn, dyn_fixed = GradientDescent(inner, lr=0.5), GradientDescent(inner_fixed, lr=0.5)
    for it in range(outer_iters):
        gen = torch.Generator().manual_seed(seed * 100_003 + it)
        u_outer = torch.rand(n_uniforms, generator=gen, dtype=torch.float64)
        if estimator == "sf":
            probs = torch.softmax(logits, -1)
            z = est.sample(probs.detach(), gen)
            state = dyn_fixed.init(w0, ())
            for _ in range(T):  # the value f_T only: T steps with this one choice, without any graph
                state = dyn_fixed(state, (), z, create_graph=False)
            loss = F.mse_loss(design(Xv, z) @ state.params[0], yv)
            (grad,) = torch.autograd.grad(est.surrogate(loss, probs, z), logits)
        else:
            base = torch.Generator().manual_seed(seed * 100_003 + it + 7)
            step_uniforms = torch.rand((T, *n_uniforms), generator=base, dtype=torch.float64)

            def outer(w, hp, u=u_outer):
                z = est.sample(torch.softmax(hp[0], -1), uniforms=u)
                return F.mse_loss(design(Xv, z) @ w[0], yv)

            (grad,) = hypergradient(w0, (logits.detach(),), dyn, outer, T, checkpoint_steps="sqrt",
                                    batches=lambda t, su=step_uniforms: su[t])
        opt.zero_grad()
        logits.grad = grad
        opt.step()
    return logits.detach()


def evaluate(data: dict[str, torch.Tensor], choice: torch.Tensor) -> dict[str, float]:
    z = F.one_hot(choice, K).to(torch.float64)
    w = fit_head(data["X"], data["y"], z)
    return {"correct_groups": int((choice == data["true"]).sum()),
            "test_mse": float(F.mse_loss(design(data["Xt"], z) @ w, data["yt"]))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    outer_iters, T = (10, 10) if args.quick else (150, 30)
    print(f"| seed | method | groups right (of {GROUPS}) | test MSE | time (s) |\n|---|---|---|---|---|")
    for seed in args.seeds[:1] if args.quick else args.seeds:
        data = make_data(seed)
        for name, choice in (("oracle", data["true"]), ("all x", torch.zeros(GROUPS, dtype=torch.long))):
            r = evaluate(data, choice)
            print(f"| {seed} | {name} | {r['correct_groups']} | {r['test_mse']:.4f} | |")
        for estimator in ("st", "gumbel_hard", "sf"):
            t0 = time.perf_counter()
            logits = learn(data, estimator, outer_iters=outer_iters, T=T, seed=seed)
            r = evaluate(data, logits.argmax(-1))
            print(f"| {seed} | {estimator} | {r['correct_groups']} | {r['test_mse']:.4f} | "
                  f"{time.perf_counter() - t0:.1f} |", flush=True)
    print("transformations:", ", ".join(f"{k} = {n}" for k, n in enumerate(NAMES)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
