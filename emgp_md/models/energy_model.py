"""An energy model = backbone + invariant energy head + energy normalisation (composition).

The model returns ``scale * head(backbone(graph))`` in its energy unit; the reference energy (the
constant ``energy_shift`` of a one-molecule model, e.g. its mean total energy, ~ -4·10⁵ kcal/mol for
aspirin, or the sum of per-element reference energies ``atom_ref`` of a many-molecule model) is
added separately in float64 by :meth:`EnergyModel.total_energy`, because float32 cannot resolve
such energies better than ~0.03 kcal/mol (docs/method.md §7.7).
"""

from __future__ import annotations

import torch
from torch import nn

from emgp_md.data.graph import GraphBatch
from emgp_md.models.heads import DistanceHead, NoiseLevelHead, PooledEnergyHead


class EnergyModel(nn.Module):
    """Energy of each molecule of a batch.

    Parameters
    ----------
    backbone : nn.Module
        A :class:`~emgp_md.models.base.Backbone`: maps the graph batch to (n_atoms, hidden_nf)
        invariant features.
    head : nn.Module
        Maps ``(h, batch, n_graphs)`` to (n_graphs,) energies.
    noise_head : NoiseLevelHead, optional
        INP classifier, present in pretraining models.
    distance_head : DistanceHead, optional
        Per-edge distance-denoising head (the "Distance" pretraining ablation).
    energy_scale : float
        Multiplies the head output (model energy unit).
    energy_shift : float
        Added in float64 by :meth:`total_energy` (model energy unit).
    atom_ref : dict, optional
        Atomic number → reference energy (model energy unit), summed over a molecule's atoms and
        added in float64 by :meth:`total_energy` (a least-squares fit on a many-molecule training set).
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        noise_head: NoiseLevelHead | None = None,
        distance_head: DistanceHead | None = None,
        energy_scale: float = 1.0,
        energy_shift: float = 0.0,
        atom_ref: dict[int, float] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.noise_head = noise_head
        self.distance_head = distance_head
        self.energy_scale = float(energy_scale)
        self.energy_shift = float(energy_shift)
        self.atom_ref = {int(k): float(v) for k, v in (atom_ref or {}).items()}

    def node_features(self, graph: GraphBatch) -> torch.Tensor:
        """(n_atoms, hidden_nf) invariant node features: ``backbone(graph)``."""
        return self.backbone(graph)

    def forward(self, graph: GraphBatch) -> torch.Tensor:
        """Energies without the constant shift.

        Returns
        -------
        (n_graphs,) float, model energy unit
        """
        return self.energy_from_features(self.node_features(graph), graph)

    def energy_from_features(self, h: torch.Tensor, graph: GraphBatch) -> torch.Tensor:
        """Energies (n_graphs,) from node features ``h`` (n_atoms, hidden_nf) of ``graph``."""
        return self.head(h, graph.batch, graph.n_graphs) * self.energy_scale

    def energy_and_pooled(self, graph: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies (n_graphs,) and the pooled representation (n_graphs, hidden_nf) for INP."""
        if not isinstance(self.head, PooledEnergyHead):
            raise TypeError("a pooled representation needs the pretraining head ('pooled')")
        h = self.node_features(graph)
        pooled = self.head.pool(h, graph.batch, graph.n_graphs)
        return self.head.graph_dec(pooled).squeeze(1) * self.energy_scale, pooled

    def reference_energy(self, graph: GraphBatch | None, n_graphs: int) -> torch.Tensor:
        """(n_graphs,) float64: ``energy_shift`` plus, with ``atom_ref``, the sum of the atoms' reference energies.

        Raises
        ------
        ValueError
            ``atom_ref`` is set but no graph is given, or the graph holds an element without a reference.
        """
        ref = torch.full((n_graphs,), self.energy_shift, dtype=torch.float64)
        if not self.atom_ref:
            return ref
        if graph is None:
            raise ValueError("a model with per-element reference energies needs the graph for its total energy")
        z = graph.z.detach().cpu()
        known = torch.zeros(max(max(self.atom_ref), int(z.max())) + 1, dtype=torch.bool)
        table = torch.zeros(known.shape[0], dtype=torch.float64)
        for k, v in self.atom_ref.items():
            known[k], table[k] = True, v
        if not bool(known[z].all()):
            missing = sorted({int(v) for v in z[~known[z]]})
            raise ValueError(f"no reference energy for element(s) {missing}; the model knows {sorted(self.atom_ref)}")
        return ref.index_add_(0, graph.batch.detach().cpu(), table[z])

    def total_energy(self, energy: torch.Tensor, graph: GraphBatch | None = None) -> torch.Tensor:
        """Add the reference energy (:meth:`reference_energy`) in float64. ``energy``: (n_graphs,) from
        :meth:`forward`; ``graph``: the batch it came from (needed with ``atom_ref``)."""
        e = energy.detach().to(torch.float64)
        return e + self.reference_energy(graph, e.shape[0]).to(e.device)
