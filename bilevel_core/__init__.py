"""bilevel_core: gradient-based bilevel optimization in PyTorch.

Inner objective ``L(w, λ)``, outer objective ``E(w, λ)``, dynamics ``s_t = Φ_t(s_{t-1}, λ)`` and
the problem ``min_λ f_T(λ) = E(w_T(λ), λ)`` (Franceschi et al., ICML 2017 and 2018).
"""

from .cleaning import HyperCleaner, detection_scores
from .dynamics import NO_BATCH, Adam, Dynamics, DynamicsState, GradientDescent, Momentum, PerStep
from .estimators import (
    CategoricalGumbelSoftmax,
    CategoricalScoreFunction,
    CategoricalStraightThrough,
    DisARM,
    Estimator,
    GumbelSoftmax,
    LeaveOneOut,
    ScoreFunction,
    StraightThrough,
    bernoulli_log_prob,
    bernoulli_sample,
    categorical_sample,
    flat_nonzero,
    gumbel_softmax,
    relaxed_bernoulli,
    straight_through_bernoulli,
)
from .hypergradient import METHODS, DeferredGradient, hypergradient, real_time_hypergradients
from .modules import FunctionalModule
from .optimizer import HyperOptimizer, project_box

__all__ = [
    "METHODS",
    "NO_BATCH",
    "Adam",
    "CategoricalGumbelSoftmax",
    "CategoricalScoreFunction",
    "CategoricalStraightThrough",
    "DeferredGradient",
    "DisARM",
    "Dynamics",
    "DynamicsState",
    "Estimator",
    "FunctionalModule",
    "GradientDescent",
    "GumbelSoftmax",
    "HyperCleaner",
    "HyperOptimizer",
    "LeaveOneOut",
    "Momentum",
    "PerStep",
    "ScoreFunction",
    "StraightThrough",
    "bernoulli_log_prob",
    "bernoulli_sample",
    "categorical_sample",
    "detection_scores",
    "flat_nonzero",
    "gumbel_softmax",
    "hypergradient",
    "project_box",
    "real_time_hypergradients",
    "relaxed_bernoulli",
    "straight_through_bernoulli",
]

__version__ = "0.1.0"
