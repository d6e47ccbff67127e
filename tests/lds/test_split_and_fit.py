"""LDS: the validation split, an interrupted fit, and the outer learning-rate schedule."""


import pytest
import torch

import bilevel_core.optimizer as bilevel_optimizer
from lds import LDS
from lds.model import split_validation

from .synthetic import planted_partition


def _mask(n: int, size: int, seed: int) -> torch.Tensor:
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]] = True
    return mask


@pytest.mark.parametrize("size", [2, 3, 4, 5, 7, 10, 11, 50, 101])
def test_split_validation_gives_disjoint_balanced_seeded_halves(size):
    """Catches halves that share a node (a label leak between θ's objective and early stopping), that drop
    or invent a node, that are unbalanced, or that ignore the seed."""
    mask = _mask(3 * size + 5, size, seed=size)
    nodes = set(torch.nonzero(mask).flatten().tolist())
    halves = {}
    for seed in (0, 1, 2):
        outer, stop = split_validation(mask, seed)
        a, b = outer.tolist(), stop.tolist()
        assert len(set(a)) == len(a) and len(set(b)) == len(b), "a half repeats a node"
        assert not set(a) & set(b), f"the halves share nodes {sorted(set(a) & set(b))}"
        assert set(a) | set(b) == nodes and len(a) + len(b) == size
        assert abs(len(a) - len(b)) <= 1 and min(len(a), len(b)) >= 1
        again = split_validation(mask, seed)
        assert torch.equal(again[0], outer) and torch.equal(again[1], stop), "same seed, different halves"
        halves[seed] = frozenset(a)
    if size >= 10:
        assert len(set(halves.values())) > 1, "the halves do not depend on the seed"


def test_fitted_model_uses_the_seeded_disjoint_halves():
    """Catches a fit whose outer and early-stopping halves overlap or are not ``split_validation``'s for its seed."""
    data = planted_partition(per_class=6, num_val=5, seed=1)
    model = LDS(max_outer_iters=1, max_inner_steps=5, num_samples=2, verbose=False, seed=3).fit(data)
    outer, stop = split_validation(data.val_mask, 3)
    assert torch.equal(model.val_outer_idx_, outer) and torch.equal(model.val_stop_idx_, stop)
    assert not set(model.val_outer_idx_.tolist()) & set(model.val_stop_idx_.tolist())
    assert set(model.val_outer_idx_.tolist()) | set(model.val_stop_idx_.tolist()) == set(
        torch.nonzero(data.val_mask).flatten().tolist())


def _fit(model, data, **kwargs):
    """``model.fit``, with a KeyboardInterrupt that escapes it turned into a test failure (pytest would stop the
    whole session on it)."""
    try:
        return model.fit(data, **kwargs)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped fit")


def _key(record):
    return record["val_acc"], -record["val_loss"]


def test_keyboard_interrupt_keeps_the_best_completed_iteration():
    """Catches a fit that lets Ctrl-C escape, forgets to flag it, or keeps the last θ instead of the best one."""
    data = planted_partition(per_class=8, seed=3)
    snapshots = []

    def callback(it, record, dist):
        snapshots.append(dist.probs.detach().clone())
        if it == 2:
            raise KeyboardInterrupt

    model = LDS(max_outer_iters=6, max_inner_steps=5, num_samples=2, patience=10, verbose=False, seed=3)
    with pytest.warns(UserWarning, match="interrupted"):
        assert _fit(model, data, callback=callback) is model
    assert model.interrupted_ is True
    assert [h["iteration"] for h in model.history_] == list(range(len(snapshots))) == [0, 1, 2]
    best = model.best_iteration_
    assert 0 <= best <= 2
    assert model.best_val_acc_ == model.history_[best]["val_acc"]
    # the best of the iterations that finished before the interrupt (0 and 1; 2 was interrupted in its callback)
    assert _key(model.history_[best]) >= max(_key(h) for h in model.history_[:2])
    assert torch.equal(model.distribution_.probs, snapshots[best])
    # with this seed the best θ is neither the last completed one nor the interrupted one's: keeping either differs
    assert not torch.equal(snapshots[best], snapshots[1]) and not torch.equal(snapshots[best], snapshots[2])
    assert model.predict(data).shape == (data.num_nodes,)
    # an uninterrupted fit says so
    assert LDS(max_outer_iters=1, max_inner_steps=5, num_samples=2, verbose=False).fit(data).interrupted_ is False


@pytest.mark.filterwarnings("ignore:fit interrupted")
def test_keyboard_interrupt_before_the_first_iteration_finishes_raises(monkeypatch):
    """Catches a fit that returns an unfitted (or half-fitted) model when nothing was completed."""
    data = planted_partition(per_class=6, seed=2)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bilevel_optimizer, "hypergradient", interrupted)  # LDS's windows run on HyperOptimizer
    model = LDS(max_outer_iters=3, max_inner_steps=10, num_samples=2, verbose=False)
    with pytest.raises(RuntimeError, match="interrupted before the first outer iteration"):
        _fit(model, data)
    assert not hasattr(model, "params_")


def test_outer_lr_decays_as_inverse_time_over_all_theta_updates(monkeypatch):
    """θ update k is η₀/(1 + d·k)·g. A constant hypergradient g makes every step checkable: catches
    1 + d·(k+1), an ignored decay, η₀·d^k, or a counter k that restarts at every outer iteration."""
    outer_lr, decay, g = 0.5, 0.5, 0.01
    real = bilevel_optimizer.hypergradient
    thetas = []

    def constant_gradient(state, hp, *args, **kwargs):
        thetas.append(hp[0].detach().clone())  # θ before this window's update
        _, new_state = real(state, hp, *args, **kwargs)
        return (torch.full_like(hp[0], -g), torch.zeros_like(hp[1])), new_state

    monkeypatch.setattr(bilevel_optimizer, "hypergradient", constant_gradient)  # LDS's windows run on HyperOptimizer
    data = planted_partition(per_class=5, seed=4)
    after = []
    model = LDS(outer_lr=outer_lr, outer_lr_decay=decay, learn_inner_lr=False, hypergrad_every=2,
                max_inner_steps=6, inner_patience=100, max_outer_iters=2, patience=10, num_samples=2,
                init_prob=0.0, init_graph="given", dtype="float64", verbose=False, seed=0)
    model.fit(data, callback=lambda it, record, dist: after.append(dist.probs.detach().clone()))
    assert len(thetas) == 6 and len(after) == 2  # 3 windows of 2 steps per outer iteration
    assert torch.equal(thetas[3], after[0])
    sequence = [*thetas, after[1]]
    free = sequence[-1] < 1  # pairs off the initial graph: θ grows from 0, never clamped
    assert int(free.sum()) > 0
    steps = [float((sequence[k + 1] - sequence[k])[free].mean()) / g for k in range(6)]
    expected = [outer_lr / (1 + decay * k) for k in range(6)]
    assert steps == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert torch.allclose(sequence[-1][free], torch.full_like(sequence[-1][free], g * sum(expected)), rtol=1e-9)
    # the initial edges start at θ = 1 and are pushed up by -g at every update: the projection keeps them at 1
    assert bool((sequence[-1][~free] == 1).all()) and int((~free).sum()) > 0



def test_edge_distribution_projection_onto_the_unit_box():
    """``project_`` is the Euclidean projection onto [0, 1]^P: values below 0 go to 0, above 1 to 1."""
    from lds import EdgeDistribution
    from lds.propagation import all_pairs

    dist = EdgeDistribution(all_pairs(3), 3, torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64))
    with torch.no_grad():
        dist.probs.copy_(torch.tensor([-0.5, 0.5, 1.5], dtype=torch.float64))
    dist.project_()
    assert dist.probs.tolist() == [0.0, 0.5, 1.0]
    assert dist.support().tolist() == [1, 2]  # the support follows θ's version counter


def test_train_loss_stall_stops_after_exactly_patience_steps_without_improvement():
    """The inner stopping rule: stop at the first step where the loss has not fallen below (1 - tol)·best for
    ``patience`` steps (a rule that waited one step more, or reset on a tiny improvement, is caught)."""
    from types import SimpleNamespace

    from lds.model import TrainLossStall

    def steps_until_stop(losses, patience=3, tol=0.1):
        rule = TrainLossStall(patience=patience, tol=tol)
        for t, loss in enumerate(losses, start=1):
            if rule(SimpleNamespace(loss=torch.tensor(loss)), t):
                return t
        return None

    assert steps_until_stop([1.0] * 10) == 4  # best set at step 1, then 3 steps without improvement
    assert steps_until_stop([1.0, 0.95, 0.92, 0.91, 0.5] + [0.5] * 10) == 4  # 5 % and 8 % gains are below tol
    assert steps_until_stop([1.0, 0.8, 0.6, 0.6, 0.6, 0.6]) == 6  # each 20 % gain resets the count
    assert steps_until_stop([1.0] * 10, patience=1) == 2
