"""The shape EGNN and SAKE share: embed each element, interact over the graph, read out per atom."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import Tensor, nn

from .base import Potential, PotentialConfig, require
from .graph import AtomGraph
from .nn import mlp
from .radial import polynomial_envelope


@dataclass(kw_only=True)
class InvariantNetworkConfig(PotentialConfig):
    """Settings common to networks of invariant node features.

    Attributes:
        hidden: width of node features.
        layers: number of interaction layers.
        avg_num_neighbors: constant dividing neighbour sums (a fixed constant, not the neighbour
            count, whose jumps at the cutoff would make the energy discontinuous).
        envelope_exponent: p of the polynomial envelope every edge term is multiplied by.
    """

    hidden: int = 64
    layers: int = 4
    avg_num_neighbors: float = 12.0
    envelope_exponent: int = 6

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, "hidden", int, minimum=1)
        require(self, "layers", int, minimum=0)
        require(self, "avg_num_neighbors", float, minimum=0, inclusive=False)
        require(self, "envelope_exponent", int, minimum=1)


class InvariantNetwork(Potential):
    """h_i = embedding(Z_i); h <- interaction layers; E_i = MLP(h_i) relative to the isolated atom.

    Subclasses build their ``layers`` and implement :meth:`interact`.
    """

    def __init__(self, config: InvariantNetworkConfig, layers: Iterable[nn.Module]) -> None:
        super().__init__(config)
        self.embedding = nn.Embedding(len(config.elements), config.hidden)
        self.layers = nn.ModuleList(layers)
        self.readout = mlp([config.hidden, config.hidden, 1])

    def forward(self, graph: AtomGraph) -> dict[str, Tensor]:
        return {"energies": self.relative_to_isolated(graph, self._node_outputs)}

    def _node_outputs(self, graph: AtomGraph) -> Tensor:
        """Per-atom scalar output ``(n_atoms,)`` after all layers."""
        h = self.embedding(self.species(graph.numbers))
        envelope = polynomial_envelope(graph.edge_lengths, self.config.cutoff, self.config.envelope_exponent)
        return self.readout(self.interact(h, graph, envelope)).squeeze(-1)

    def interact(self, h: Tensor, graph: AtomGraph, envelope: Tensor) -> Tensor:
        """Run the layers on node features ``h`` ``(n_atoms, hidden)``; ``envelope`` is ``(n_edges,)``."""
        raise NotImplementedError
