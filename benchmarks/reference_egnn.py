"""Reference 3D-EMGP EGNN, written the straightforward way the authors wrote it (``egnn_clean.py``).

This is the *baseline* of the speed benchmarks, not part of the package. It follows the
authors' ``E_GCL`` / ``EGNN_last`` / ``EGNN_md_last`` in the MD17 fine-tuning configuration:

- input: the 300-wide atom features (one-hot over 100 element slots × powers 0..2 of z/100,
  :func:`emgp_md.data.features.atom_features`, rounded to float32 as the authors' float32
  ``process_input`` does), embedded by ``Linear(300 → H)``;
- each layer: per edge, ``edge_mlp(cat[h[row], h[col], |x_row - x_col|², one_hot(edge_type, 4)])``
  with ``edge_mlp = Linear(2H+1+4 → H), SiLU, Linear(H → H), SiLU``, gated by
  ``att_mlp = Linear(H → 1), Sigmoid``; messages summed at ``row`` (``unsorted_segment_sum``);
  ``h = h + node_mlp(cat[h, agg])`` with ``node_mlp = Linear(2H → H), SiLU, Linear(H → H)``;
- no coordinate update (the authors' last-layer coordinate update does not change the energy;
  ``coord_mlp`` is kept only so that the state dicts match);
- atomwise energy head ``Linear(H → H), SiLU, Linear(H → 1)`` summed per molecule, forces by autograd.

The parameter names equal those of :class:`emgp_md.models.energy_model.EnergyModel` with the
atomwise head (``backbone.embedding_in``, ``backbone.gcl_0.edge_mlp.0``, ..., ``head.mlp.0``), so
``ReferenceEnergyModel(...).load_state_dict(model.state_dict())`` gives the same function. The
energy normalisation (``energy_scale``, ``energy_shift``) is copied from the model, as in
:meth:`ReferenceEnergyModel.from_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from torch import nn

from emgp_md.data.features import N_NODE_FEATURES, atom_features
from emgp_md.data.topology import N_EDGE_TYPES, Topology


def unsorted_segment_sum(data: torch.Tensor, segment_ids: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum the rows of ``data`` (n, F) into ``num_segments`` rows by ``segment_ids`` (as the authors)."""
    result = data.new_full((num_segments, data.size(1)), 0)
    segment_ids = segment_ids.unsqueeze(-1).expand(-1, data.size(1))
    result.scatter_add_(0, segment_ids, data)
    return result


class ReferenceEGCL(nn.Module):
    """``E_GCL`` of ``egnn_clean.py`` (attention on, residual on, no layer norm, coordinates fixed)."""

    def __init__(self, hidden_nf: int, edges_in_d: int = N_EDGE_TYPES) -> None:
        super().__init__()
        act_fn = nn.SiLU()
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * hidden_nf + 1 + edges_in_d, hidden_nf), act_fn, nn.Linear(hidden_nf, hidden_nf), act_fn
        )
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden_nf, hidden_nf), act_fn, nn.Linear(hidden_nf, hidden_nf))
        # Unused without a coordinate update; present so that the state dict matches the authors' and ours.
        self.coord_mlp = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), act_fn, nn.Linear(hidden_nf, 1, bias=False))
        self.att_mlp = nn.Sequential(nn.Linear(hidden_nf, 1), nn.Sigmoid())

    def edge_model(
        self, source: torch.Tensor, target: torch.Tensor, radial: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        """Gated message per edge from the concatenation ``[h_row, h_col, radial, edge_attr]``."""
        out = torch.cat([source, target, radial, edge_attr], dim=1)
        out = self.edge_mlp(out)
        att_val = self.att_mlp(out)
        return out * att_val

    def node_model(self, x: torch.Tensor, edge_index: torch.Tensor, edge_feat: torch.Tensor) -> torch.Tensor:
        """``node_mlp(cat[h, Σ_j m_ij])``."""
        row, _ = edge_index
        agg = unsorted_segment_sum(edge_feat, row, num_segments=x.size(0))
        return self.node_mlp(torch.cat([x, agg], dim=1))

    @staticmethod
    def coord2radial(edge_index: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
        """Squared distance per edge, (n_edges, 1)."""
        row, col = edge_index
        coord_diff = coord[row] - coord[col]
        return torch.sum(coord_diff**2, 1).unsqueeze(1)

    def forward(
        self, h: torch.Tensor, edge_index: torch.Tensor, coord: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        """One layer: (n_atoms, H) → (n_atoms, H)."""
        row, col = edge_index
        radial = self.coord2radial(edge_index, coord)
        edge_feat = self.edge_model(h[row], h[col], radial, edge_attr)
        return h + self.node_model(h, edge_index, edge_feat)


class ReferenceEGNN(nn.Module):
    """``EGNN_last`` of ``egnn_clean.py``: embedding, then ``n_layers`` :class:`ReferenceEGCL`."""

    def __init__(self, hidden_nf: int = 128, n_layers: int = 7, in_node_nf: int = N_NODE_FEATURES) -> None:
        super().__init__()
        self.hidden_nf = hidden_nf
        self.n_layers = n_layers
        self.embedding_in = nn.Linear(in_node_nf, hidden_nf)
        for i in range(n_layers):
            self.add_module(f"gcl_{i}", ReferenceEGCL(hidden_nf))

    def forward(self, h: torch.Tensor, x: torch.Tensor, edges: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        """Node features (n_atoms, H) from atom features (n_atoms, 300) and positions (n_atoms, 3) Å."""
        h = self.embedding_in(h)
        for i in range(self.n_layers):
            h = self._modules[f"gcl_{i}"](h, edges, x, edge_attr)
        return h


class ReferenceAtomwiseHead(nn.Module):
    """``graph_dec`` of ``EGNN_md_last``: per-atom MLP, summed per molecule (``scatter_add``)."""

    def __init__(self, hidden_nf: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), nn.SiLU(), nn.Linear(hidden_nf, 1))

    def forward(self, h: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        """(n_graphs,) energies."""
        return unsorted_segment_sum(self.mlp(h), batch, n_graphs).squeeze(1)


class ReferenceEnergyModel(nn.Module):
    """Backbone + atomwise head + energy normalisation, with the state-dict keys of ``EnergyModel``.

    Parameters
    ----------
    hidden_nf, n_layers : int
        Width and depth (paper: 128 and 7).
    energy_scale : float
        Multiplies the head output (model energy unit).
    energy_shift : float
        Added in float64 by :meth:`total_energy` (model energy unit).
    """

    def __init__(
        self, hidden_nf: int = 128, n_layers: int = 7, energy_scale: float = 1.0, energy_shift: float = 0.0
    ) -> None:
        super().__init__()
        self.backbone = ReferenceEGNN(hidden_nf, n_layers)
        self.head = ReferenceAtomwiseHead(hidden_nf)
        self.energy_scale = float(energy_scale)
        self.energy_shift = float(energy_shift)

    @classmethod
    def from_model(cls, model: nn.Module) -> ReferenceEnergyModel:
        """A reference copy (same weights, same normalisation, float32, eval mode) of an ``EnergyModel``."""
        ref = cls(model.backbone.hidden_nf, model.backbone.n_layers, model.energy_scale, model.energy_shift)
        ref.load_state_dict({k: v.detach().float() for k, v in model.state_dict().items()}, strict=True)
        return ref.eval()

    def forward(self, inputs: ReferenceInputs, pos: torch.Tensor) -> torch.Tensor:
        """(n_graphs,) energies without the constant shift, model energy unit."""
        h = self.backbone(inputs.node_features, pos, inputs.edge_index, inputs.edge_attr)
        return self.head(h, inputs.batch, inputs.n_graphs) * self.energy_scale

    def total_energy(self, energy: torch.Tensor) -> torch.Tensor:
        """Add the constant shift in float64 (as ``EnergyModel.total_energy``)."""
        return energy.detach().to(torch.float64) + self.energy_shift


@dataclass
class ReferenceInputs:
    """Model inputs as the authors' data pipeline builds them (features and edges one-hot, batched).

    Attributes
    ----------
    node_features : (n_atoms, 300) float
    edge_index : (2, n_edges) long, offset per molecule
    edge_attr : (n_edges, 4) float, one-hot hop type
    batch : (n_atoms,) long
    n_graphs : int
    """

    node_features: torch.Tensor
    edge_index: torch.Tensor
    edge_attr: torch.Tensor
    batch: torch.Tensor
    n_graphs: int


def reference_inputs(topology: Topology, n_replicas: int = 1, dtype: torch.dtype = torch.float32) -> ReferenceInputs:
    """Inputs for ``n_replicas`` copies of one molecule (positions are passed separately)."""
    n = topology.n_atoms
    z = torch.from_numpy(topology.z).repeat(n_replicas)
    edges = torch.from_numpy(topology.edge_index)
    edge_index = torch.cat([edges + k * n for k in range(n_replicas)], dim=1)
    edge_type = torch.from_numpy(topology.edge_type).repeat(n_replicas)
    # The authors compute the features in float32 (``process_input``) and cast them to the model
    # dtype, so in float64 the inputs are the float32-rounded values (emgp_md's table does the same).
    return ReferenceInputs(
        node_features=atom_features(z).to(torch.float32).to(dtype),
        edge_index=edge_index,
        edge_attr=nn.functional.one_hot(edge_type, N_EDGE_TYPES).to(dtype),
        batch=torch.arange(n_replicas).repeat_interleave(n),
        n_graphs=n_replicas,
    )


def reference_energy_and_forces(
    model: ReferenceEnergyModel, inputs: ReferenceInputs, pos: torch.Tensor, create_graph: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies (n_graphs,) and forces ``-∂E/∂pos`` (n_atoms, 3) by autograd (``md_type='gradient'``).

    ``create_graph=True`` keeps the graph of the gradient for a force loss (training).
    """
    with torch.enable_grad():
        x = pos.detach().clone().requires_grad_(True)
        energy = model(inputs, x)
        (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)
    if not create_graph:
        energy = energy.detach()
    return energy, -grad


class ReferenceCalculator(Calculator):
    """ASE calculator around :class:`ReferenceEnergyModel` (energy in eV, forces in eV/Å).

    The topology (bond graph and hop types) is derived on the first call, with the same rule as
    ``EMGPCalculator``, and then frozen until the atomic numbers change; the atom features and
    one-hot edge attributes are built once with it, as the authors' data pipeline does.

    Parameters
    ----------
    model : ReferenceEnergyModel
        In eval mode; it is converted in place to ``dtype``.
    energy_to_eV : float
        Factor from the model energy unit to eV.
    topology : dict, optional
        Reference topology of a checkpoint's metadata (``{"z", "bonds"}``).
    dtype : ``"float32"`` or ``"float64"``
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces"]

    def __init__(
        self,
        model: ReferenceEnergyModel,
        energy_to_eV: float = 1.0,
        topology: dict[str, Any] | None = None,
        dtype: str = "float32",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        self.model = model.to(self.dtype).eval()
        self.energy_to_eV = float(energy_to_eV)
        self.topology_reference = topology
        self._inputs: ReferenceInputs | None = None
        self._numbers: np.ndarray | None = None

    def calculate(
        self, atoms: Atoms | None = None, properties: list[str] | None = None, system_changes: list[str] = all_changes
    ) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        numbers = self.atoms.numbers
        if self._inputs is None or self._numbers is None or not np.array_equal(numbers, self._numbers):
            from emgp_md.data.convert import topology_for_atoms

            self._inputs = reference_inputs(topology_for_atoms(self.atoms, self.topology_reference), 1, self.dtype)
            self._numbers = numbers.copy()
        pos = torch.tensor(np.asarray(self.atoms.positions), dtype=self.dtype)
        energy, forces = reference_energy_and_forces(self.model, self._inputs, pos)
        e_eV = float(self.model.total_energy(energy)[0]) * self.energy_to_eV
        self.results["energy"] = e_eV
        self.results["free_energy"] = e_eV
        self.results["forces"] = forces.to(torch.float64).numpy() * self.energy_to_eV
