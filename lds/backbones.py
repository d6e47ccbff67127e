"""Other GNN backbones for LDS: any PyG ``MessagePassing`` layer that takes ``edge_weight``.

On a sparse candidate set every candidate pair is passed as an edge in both directions with weight 0
or 1 (the straight-through sample), so that unsampled pairs still get gradient. The network runs
through :class:`bilevel_core.FunctionalModule`, so the bilevel core differentiates it like the
built-in GCN. All pairs of a large graph would make every pair an edge: that works with the built-in
GCN only (its forward stays sparse).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bilevel_core import FunctionalModule

ConvFactory = Callable[[int, int], nn.Module]


def _conv_factory(backbone: str | ConvFactory) -> ConvFactory:
    if callable(backbone):
        return backbone
    from torch_geometric.nn import GCNConv, GraphConv

    factories: dict[str, ConvFactory] = {
        "gcnconv": lambda i, o: GCNConv(i, o, bias=False),
        "graphconv": lambda i, o: GraphConv(i, o, aggr="add"),
    }
    if backbone not in factories:
        raise ValueError(
            f"backbone must be 'gcn' (built-in), {', '.join(repr(k) for k in factories)} or a callable "
            f"(in_channels, out_channels) -> MessagePassing layer taking edge_weight; got {backbone!r}."
        )
    return factories[backbone]


class MessagePassingNet(nn.Module):
    """``conv₂(drop(relu(conv₁(drop(X), A))), A)`` with any edge-weighted message-passing layer."""

    def __init__(self, conv: str | ConvFactory, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        make = _conv_factory(conv)
        self.conv1 = make(in_features, hidden)
        self.conv2 = make(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor, hidden_mask: Tensor | None = None) -> Tensor:
        h = F.relu(self.conv1(x, edge_index, edge_weight))
        if hidden_mask is not None:
            h = h * hidden_mask
        return self.conv2(h, edge_index, edge_weight)


class Backbone:
    """A message-passing network as a pure function of a params tuple, with seeded re-initialisation."""

    def __init__(self, conv: str | ConvFactory, in_features: int, hidden: int, num_classes: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        self.net = MessagePassingNet(conv, in_features, hidden, num_classes).to(dtype=dtype, device=device)
        self.functional = FunctionalModule(self.net)
        self.l2_names = [i for i, n in enumerate(self.functional.names) if n.startswith("conv1.") and "bias" not in n]

    def init_params(self, generator: torch.Generator) -> tuple[Tensor, ...]:
        """Fresh parameters from each layer's ``reset_parameters``, seeded from ``generator``."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in self.net.modules():
                if module is not self.net and hasattr(module, "reset_parameters"):
                    module.reset_parameters()  # type: ignore[operator]  # nn.Module.__getattr__ is typed Tensor | Module
        return self.functional.init_params()

    def __call__(self, params: tuple[Tensor, ...], x: Tensor, edge_index: Tensor, edge_weight: Tensor,
                 hidden_mask: Tensor | None = None) -> Tensor:
        return self.functional(params, x, edge_index, edge_weight, hidden_mask)

    def l2_penalty(self, params: tuple[Tensor, ...], weight_decay: float) -> Tensor | float:
        """``ρ·½‖first-layer weights‖²`` (Kipf's convention, as for the built-in GCN); ``0.0`` without such weights."""
        return 0.5 * weight_decay * sum((params[i] ** 2).sum() for i in self.l2_names)

    def state(self) -> dict[str, Any]:
        return {"names": self.functional.names}
