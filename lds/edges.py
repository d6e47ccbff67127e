"""The edge distribution of LDS: independent Bernoulli(θ_ij) over a candidate set of undirected pairs.

θ holds one parameter per undirected candidate pair ``(i, j)``, ``i < j`` (Franceschi et al.,
ICML 2019, Sec. 3). The candidate set is either all pairs (the paper's choice) or a sparse set
(given edges ∪ kNN ∪ extra pairs), the way to scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bilevel_core import straight_through_bernoulli

from .propagation import CandidateGraph, all_pairs, pairs_from_edge_index


@dataclass(frozen=True)
class EdgeUniforms:
    """The randomness of one graph sample: one uniform per candidate in ``support`` (where θ > 0, ascending)."""

    support: Tensor
    values: Tensor

    def dense(self, num_pairs: int) -> Tensor:
        """One uniform per candidate, 1 outside the support (never below θ = 0)."""
        return torch.ones(num_pairs, dtype=self.values.dtype, device=self.values.device).index_put_(
            (self.support,), self.values)


def _pair_keys(pairs: Tensor, num_nodes: int) -> Tensor:
    return pairs[0] * num_nodes + pairs[1]


class EdgeDistribution:
    """Bernoulli parameters ``θ`` (``probs``) on a candidate set ``pairs`` of shape ``(2, P)``.

    Args:
        pairs: undirected candidate pairs with ``pairs[0] < pairs[1]``, no duplicates.
        num_nodes: number of nodes N.
        probs: initial θ, shape ``(P,)``, in [0, 1].
        all_pairs: whether ``pairs`` is the full upper triangle (enables the dense gradient path).
    """

    def __init__(self, pairs: Tensor, num_nodes: int, probs: Tensor, *, is_all_pairs: bool = False) -> None:
        if pairs.dim() != 2 or pairs.size(0) != 2:
            raise ValueError(f"pairs must have shape (2, P), got {tuple(pairs.shape)}.")
        if pairs.size(1) == 0:
            raise ValueError(
                "the candidate set is empty: give a graph, a kNN k >= 1, or candidates='all'."
            )
        if probs.shape != (pairs.size(1),):
            raise ValueError(f"probs must have shape ({pairs.size(1)},), got {tuple(probs.shape)}.")
        if not probs.is_floating_point():
            raise TypeError(f"probs must be a floating-point tensor, got dtype {probs.dtype}.")
        lo, hi = torch.aminmax(probs.detach())
        if not bool((lo >= 0) & (hi <= 1)):
            raise ValueError(f"probs must be edge probabilities in [0, 1], got values in [{float(lo):g}, "
                             f"{float(hi):g}].")
        self.pairs = pairs
        self.num_nodes = int(num_nodes)
        self.probs = probs
        self.is_all_pairs = bool(is_all_pairs)
        self._support: tuple[int, Tensor] | None = None  # (θ's version counter, indices with θ > 0)
        self._candidates: CandidateGraph | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_candidates(
        cls,
        num_nodes: int,
        *,
        candidates: str,
        init_edge_index: Tensor | None,
        extra_edge_index: Tensor | None = None,
        init_prob: float = 0.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> EdgeDistribution:
        """θ = 1 on the initial edges (given or kNN), ``init_prob`` elsewhere on the candidate set.

        ``candidates="all"`` uses all N(N-1)/2 pairs; ``"sparse"`` uses the initial edges ∪
        ``extra_edge_index``.
        """
        if not 0.0 <= init_prob <= 1.0:
            raise ValueError(f"init_prob must be in [0, 1], got {init_prob}.")
        init_pairs = (
            pairs_from_edge_index(init_edge_index)
            if init_edge_index is not None and init_edge_index.numel() > 0
            else torch.empty(2, 0, dtype=torch.long)
        )
        if candidates == "all":
            pairs = all_pairs(num_nodes)
            is_all = True
        elif candidates == "sparse":
            parts = [init_pairs]
            if extra_edge_index is not None and extra_edge_index.numel() > 0:
                parts.append(pairs_from_edge_index(extra_edge_index))
            pairs = pairs_from_edge_index(torch.cat(parts, dim=1)) if parts else init_pairs
            is_all = False
        else:
            raise ValueError(f"candidates must be 'all' or 'sparse', got {candidates!r}.")
        if pairs.size(1) == 0:
            raise ValueError(
                "the candidate set is empty: the data has no edges and no kNN pairs were added; "
                "pass k >= 1 or candidates='all'."
            )
        probs = torch.full((pairs.size(1),), float(init_prob), dtype=dtype)
        if init_pairs.size(1) > 0:
            keys = _pair_keys(pairs, num_nodes)
            init_keys = _pair_keys(init_pairs, num_nodes)
            order = torch.argsort(keys)
            pos = torch.searchsorted(keys[order], init_keys)
            probs[order[pos]] = 1.0
        return cls(pairs.to(device), num_nodes, probs.to(device), is_all_pairs=is_all)

    # ------------------------------------------------------------------ sampling
    @property
    def candidates(self) -> CandidateGraph:
        """The candidate set as a :class:`~lds.propagation.CandidateGraph`, built once: pass it to the GCN so
        that its derived index tensors, and the caches of a fit's windows, live as long as this distribution."""
        if self._candidates is None:
            self._candidates = CandidateGraph(self.pairs, self.num_nodes, validate=False)
        return self._candidates

    def support(self) -> Tensor:
        """Indices of the candidates with θ > 0, cached while θ's version counter is unchanged (every in-place
        update of ``probs`` moves it; a change through ``.data`` does not: call :meth:`invalidate` then)."""
        version = self.probs._version
        if self._support is None or self._support[0] != version:
            self._support = (version, torch.nonzero(self.probs.detach() > 0, as_tuple=True)[0])
        return self._support[1]

    def draw(self, generator: torch.Generator) -> EdgeUniforms:
        """The uniforms of one sample, for the pairs with θ > 0 only (pairs with θ = 0 are never drawn).

        Drawn on the generator's device: a CPU generator gives the same graphs on every device (a host draw
        and a copy), a generator on θ's device draws there without a copy.
        """
        support = self.support()
        u = torch.rand(support.numel(), generator=generator, dtype=self.probs.dtype, device=generator.device)
        return EdgeUniforms(support, u.to(self.probs.device))

    def uniforms(self, generator: torch.Generator) -> Tensor:
        """The same draw as :meth:`draw` as one uniform per candidate (1 where θ = 0)."""
        return self.draw(generator).dense(self.probs.numel())

    def sample(self, generator: torch.Generator | None = None, *, uniforms: Tensor | EdgeUniforms | None = None,
               probs: Tensor | None = None, validate: bool = True) -> Tensor:
        """A symmetric graph ``A ~ Ber(θ)`` as values on the candidate pairs, straight-through in θ.

        ``uniforms``: from :meth:`draw` (cost O(|support|)) or :meth:`uniforms` (one per candidate).
        The support of a draw must still hold every θ > 0 (θ unchanged since the draw, or only lowered).
        ``probs`` replaces θ (e.g. an alias that carries a gradient); it is checked to lie in [0, 1] unless
        ``validate=False`` (one pass over the candidates; LDS projects θ after every update instead).
        """
        theta = self.probs if probs is None else probs
        check = probs is not None and validate  # self.probs is checked at construction, then projected
        if uniforms is None:
            if generator is None:
                raise ValueError("sample needs a torch.Generator or precomputed uniforms.")
            uniforms = self.draw(generator)
        if isinstance(uniforms, EdgeUniforms):
            if uniforms.support.numel() == theta.numel():  # every θ > 0: the support is arange(P)
                return straight_through_bernoulli(theta, uniforms=uniforms.values, validate=check)
            return straight_through_bernoulli(theta, uniforms=uniforms.values, support=uniforms.support,
                                              validate=check)
        return straight_through_bernoulli(theta, uniforms=uniforms, validate=check)

    def project_(self) -> None:
        """Euclidean projection onto [0, 1]^P, in place."""
        with torch.no_grad():
            self.probs.clamp_(0.0, 1.0)

    def invalidate(self) -> None:
        """Forget the cached support of θ; needed only after a change the version counter does not see
        (through ``probs.data``)."""
        self._support = None

    def expected_num_edges(self) -> float:
        """E[|E|] = Σ θ_ij (undirected)."""
        return float(self.probs.detach().sum())

    # ------------------------------------------------------------------ export
    def edge_probs(self, *, nonzero_only: bool = True) -> tuple[Tensor, Tensor]:
        """``(edge_index, probs)`` with both directions (2, 2P') of the pairs with θ > 0."""
        theta = self.probs.detach()
        pairs = self.pairs
        if nonzero_only:
            keep = theta > 0
            pairs, theta = pairs[:, keep], theta[keep]
        edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
        return edge_index, torch.cat([theta, theta])

    def to_data(self) -> Any:
        """A PyG ``Data(edge_index, edge_weight, num_nodes)`` of the learned distribution."""
        from torch_geometric.data import Data

        edge_index, weight = self.edge_probs()
        return Data(edge_index=edge_index.cpu(), edge_weight=weight.cpu(), num_nodes=self.num_nodes)

    def to_networkx(self) -> Any:
        """An undirected ``networkx.Graph`` with the edge probability as attribute ``weight``."""
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(range(self.num_nodes))
        theta = self.probs.detach().cpu()
        keep = theta > 0
        pairs = self.pairs.cpu()[:, keep]
        g.add_weighted_edges_from(
            zip(pairs[0].tolist(), pairs[1].tolist(), theta[keep].tolist())
        )
        return g

    def state_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs.cpu(), "num_nodes": self.num_nodes, "probs": self.probs.detach().cpu(),
                "is_all_pairs": self.is_all_pairs}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> EdgeDistribution:
        return cls(state["pairs"].to(device), state["num_nodes"], state["probs"].to(device),
                   is_all_pairs=state["is_all_pairs"])
