"""Run any ``torch.nn.Module`` as a pure function of a params tuple (``torch.func.functional_call``).

Example:
    >>> import torch
    >>> from bilevel_core import FunctionalModule
    >>> net = FunctionalModule(torch.nn.Linear(3, 2))
    >>> params = net.init_params()
    >>> net(params, torch.zeros(4, 3)).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._validation import Params, as_tensor_tuple, check_same_shapes


class FunctionalModule:
    """Adapter: ``module(*args)`` evaluated with parameters taken from a tuple.

    Args:
        module: the model. Its parameters (or those named in ``names``) become the tuple; buffers
            are taken from the module as they are.
        names: which parameters to expose, in order (default: all, in ``named_parameters`` order).
    """

    def __init__(self, module: nn.Module, names: Sequence[str] | None = None) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        all_params = dict(module.named_parameters())
        if names is None:
            names = list(all_params)
        unknown = [n for n in names if n not in all_params]
        if unknown:
            raise ValueError(f"unknown parameter name(s) {unknown}; the module has {list(all_params)}.")
        self.module = module
        self.names = tuple(names)

    def init_params(self) -> Params:
        """A detached copy of the module's current parameters, as the initial ``w_0``."""
        named = dict(self.module.named_parameters())
        return tuple(named[n].detach().clone() for n in self.names)

    def __call__(self, params: Params, *args: Any, **kwargs: Any) -> Any:
        params = as_tensor_tuple(params, "params")
        if len(params) != len(self.names):
            raise ValueError(f"params has {len(params)} tensors but the module exposes {len(self.names)}.")
        return torch.func.functional_call(self.module, dict(zip(self.names, params)), args, kwargs)

    def load_params(self, params: Params) -> None:
        """Copy ``params`` into the module (e.g. the final inner solution)."""
        params = as_tensor_tuple(params, "params")
        check_same_shapes(params, self.init_params(), "params", "module parameters")
        named = dict(self.module.named_parameters())
        with torch.no_grad():
            for n, p in zip(self.names, params):
                named[n].copy_(p)

    def parameters_tuple(self) -> tuple[Tensor, ...]:
        named = dict(self.module.named_parameters())
        return tuple(named[n] for n in self.names)
