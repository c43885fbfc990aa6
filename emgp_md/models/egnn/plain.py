"""E(n)-equivariant graph network as used by 3D-EMGP (docs/method.md §1.2).

Satorras et al., "E(n) Equivariant Graph Neural Networks" (ICML 2021), Eqs. 3–6, in the
configuration of the 3D-EMGP code (``egnn_clean.py``): squared distances as radial input, 4
hop-type edge attributes, sigmoid attention gate (the paper's §3.3, "inferring the edges"), sum
aggregation, residual node update, and a coordinate update only in the last layer:

- **EGNN message** (Eq. 3): ``m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖², e_ij)``, gated by
  ``σ(w·m_ij + b)`` (:meth:`EGCL.messages`);
- **coordinate update** (Eq. 4): ``x_i ← x_i + C Σ_j (x_i − x_j) φ_x(m_ij)`` with
  ``C = 1/(N − 1)`` (:meth:`EGCL.forward` with ``coord_diff``);
- **aggregation** (Eq. 5): ``a_i = Σ_{j≠i} m_ij``, and **feature update** (Eq. 6):
  ``h_i ← h_i + φ_h(h_i, a_i)`` (:meth:`EGCL.forward`).

Speed: the first edge-MLP layer acts on ``[h_i; h_j; r_ij; e_ij]``. It is split into its node
parts ``W_i h_i`` and ``W_j h_j`` (computed once per node), the radial column and a 4-row lookup
table for the edge types, which gives exactly the same numbers as the concatenation at a
fraction of the cost. The state-dict keys match the authors' checkpoint.

Equal-size, fully connected molecules (``graph.dense_edge_type``) run the dense path
(:mod:`~emgp_md.models.egnn.dense`). For energy + forces on them,
:meth:`EGNN.fast_energy_and_forces` (the hook :func:`~emgp_md.models.forces.energy_and_forces`
asks for) runs all layers as one fused autograd node with a hand-written backward for inference
(:mod:`~emgp_md.models.egnn.fused`) and writes the forces out explicitly for training
(:mod:`~emgp_md.models.egnn.train`); same numbers. Elsewhere the plain operations and autograd.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from emgp_md.data.features import N_NODE_FEATURES, feature_table
from emgp_md.data.topology import N_EDGE_TYPES
from emgp_md.models.egnn.compiled import compiled_energy_and_forces, compiled_forces_apply
from emgp_md.models.egnn.dense import dense_node_features
from emgp_md.models.egnn.fused import fused_energy_and_forces
from emgp_md.models.egnn.train import dense_energy_and_forces, explicit_forces_apply

if TYPE_CHECKING:
    from emgp_md.data.graph import GraphBatch


class EGCL(nn.Module):
    """One E(n)-equivariant convolution layer (``E_GCL`` of the authors' code).

    Parameters
    ----------
    hidden_nf : int
        Width of node features and messages.
    n_edge_types : int
        Width of the one-hot edge attribute.
    attention : bool
        Gate each message by ``sigmoid(w·m + b)``.
    """

    def __init__(self, hidden_nf: int, n_edge_types: int = N_EDGE_TYPES, attention: bool = True) -> None:
        super().__init__()
        self.hidden_nf = hidden_nf
        self.attention = attention
        self.edge_mlp = nn.Sequential(
            nn.Linear(2 * hidden_nf + 1 + n_edge_types, hidden_nf),
            nn.SiLU(),
            nn.Linear(hidden_nf, hidden_nf),
            nn.SiLU(),
        )
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden_nf, hidden_nf), nn.SiLU(), nn.Linear(hidden_nf, hidden_nf))
        last = nn.Linear(hidden_nf, 1, bias=False)
        nn.init.xavier_uniform_(last.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), nn.SiLU(), last)
        if attention:
            self.att_mlp = nn.Sequential(nn.Linear(hidden_nf, 1), nn.Sigmoid())

    def messages(
        self, h: torch.Tensor, radial: torch.Tensor, edge_index: torch.Tensor, edge_type: torch.Tensor
    ) -> torch.Tensor:
        """Edge messages ``m_ij``: the **EGNN message** (Satorras et al. 2021, Eq. 3) with its gate.

        ``m_ij = SiLU(Lin(SiLU(Lin([h_i; h_j; r_ij; e_ij]))))``, times ``σ(w·m_ij + b)`` when
        ``attention`` is on (the paper's §3.3, "inferring the edges").

        Parameters
        ----------
        h : (n_atoms, hidden_nf)
        radial : (n_edges,) squared distance, Å²
        edge_index : (2, n_edges) long
        edge_type : (n_edges,) long

        Returns
        -------
        (n_edges, hidden_nf)
        """
        hid = self.hidden_nf
        first = self.edge_mlp[0]
        w = first.weight
        node_i = h @ w[:, :hid].t()  # (n_atoms, hid), computed once per node
        node_j = h @ w[:, hid : 2 * hid].t()
        type_table = w[:, 2 * hid + 1 :].t() + first.bias  # (n_edge_types, hid)
        pre = node_i.index_select(0, edge_index[0]) + node_j.index_select(0, edge_index[1])
        pre = pre + radial.unsqueeze(1) * w[:, 2 * hid] + type_table.index_select(0, edge_type)
        m = self.edge_mlp[3](self.edge_mlp[2](self.edge_mlp[1](pre)))
        if self.attention:
            m = m * self.att_mlp(m)
        return m

    def forward(
        self,
        h: torch.Tensor,
        radial: torch.Tensor,
        edge_index: torch.Tensor,
        edge_type: torch.Tensor,
        coord_diff: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Update node features and, when ``coord_diff`` is given, return the coordinate shift.

        **Aggregation** (Satorras et al. 2021, Eq. 5) ``a_i = Σ_{j≠i} m_ij``; **feature update**
        (Eq. 6) ``h_i ← h_i + φ_h(h_i, a_i)``, residual; the shift is the **coordinate update**
        (Eq. 4) with ``C = 1/(N − 1)``, a mean over the incoming edges.

        Parameters
        ----------
        coord_diff : (n_edges, 3) float, Å, optional
            ``x_i - x_j`` per edge; requests the equivariant displacement of each atom.

        Returns
        -------
        h : (n_atoms, hidden_nf)
        shift : (n_atoms, 3) Å or None
            ``mean_j (x_i - x_j) φ_x(m_ij)``.
        """
        m = self.messages(h, radial, edge_index, edge_type)
        row = edge_index[0]
        agg = torch.zeros_like(h).index_add_(0, row, m)
        shift = None
        if coord_diff is not None:
            trans = coord_diff * self.coord_mlp(m)
            count = torch.zeros(h.shape[0], 1, dtype=h.dtype, device=h.device)
            count.index_add_(0, row, torch.ones_like(trans[:, :1]))
            shift = torch.zeros(h.shape[0], 3, dtype=h.dtype, device=h.device).index_add_(0, row, trans)
            shift = shift / count.clamp(min=1)
        h = h + self.node_mlp(torch.cat([h, agg], dim=1))
        return h, shift


class EGNN(nn.Module):
    """The 3D-EMGP EGNN backbone: 300-wide atom input, ``n_layers`` EGCL layers of width ``hidden_nf``.

    Parameters
    ----------
    hidden_nf : int
        Width (paper: 128).
    n_layers : int
        Depth (paper: 7).
    attention : bool
        Sigmoid message gate (paper: on).
    """

    needs_hypergraph = False

    def __init__(self, hidden_nf: int = 128, n_layers: int = 7, attention: bool = True) -> None:
        super().__init__()
        if hidden_nf < 1 or n_layers < 1:
            raise ValueError(f"EGNN needs hidden_nf >= 1 and n_layers >= 1, got {hidden_nf} and {n_layers}")
        self.hidden_nf = hidden_nf
        self.n_layers = n_layers
        self.embedding_in = nn.Linear(N_NODE_FEATURES, hidden_nf)
        for i in range(n_layers):
            self.add_module(f"gcl_{i}", EGCL(hidden_nf, attention=attention))
        self.register_buffer("features", feature_table(torch.float32), persistent=False)

    def layers(self) -> list[EGCL]:
        return [getattr(self, f"gcl_{i}") for i in range(self.n_layers)]

    def forward(self, graph: GraphBatch) -> torch.Tensor:
        """(n_atoms, hidden_nf) invariant node features of ``graph`` (the :class:`~emgp_md.models.base.Backbone` protocol).

        Reads ``z``, ``pos``, ``edge_index``, ``edge_type`` and, when set (equal-size, fully
        connected molecules), ``dense_edge_type``: then the dense path runs (same numbers,
        :mod:`~emgp_md.models.egnn.dense`).
        """
        if graph.dense_edge_type is not None:
            return dense_node_features(self, graph.z, graph.pos, graph.dense_edge_type)
        return self._sparse(graph, update_coords=False)[0]

    def features_and_coords(self, graph: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Node features and the last layer's updated coordinates (the "Direct" pretraining ablation).

        Returns
        -------
        h : (n_atoms, hidden_nf)
        pos_out : (n_atoms, 3) Å
            ``pos + mean_j (x_i - x_j) φ_x(m_ij)`` from the last layer (equivariant).
        """
        h, pos_out = self._sparse(graph, update_coords=True)
        assert pos_out is not None
        return h, pos_out

    def _sparse(self, graph: GraphBatch, update_coords: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The per-edge path; the last layer also moves the atoms with ``update_coords``."""
        pos, edge_index = graph.pos, graph.edge_index
        h = self.embedding_in(self.features.to(pos.dtype).index_select(0, graph.z))
        coord_diff = pos.index_select(0, edge_index[0]) - pos.index_select(0, edge_index[1])
        radial = (coord_diff * coord_diff).sum(dim=1)
        pos_out = None
        for i, layer in enumerate(self.layers()):
            last = update_coords and i == self.n_layers - 1
            h, shift = layer(h, radial, edge_index, graph.edge_type, coord_diff if last else None)
            if shift is not None:
                pos_out = pos + shift
        return h, pos_out

    def fast_energy_and_forces(
        self, model: nn.Module, graph: GraphBatch, training: bool
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The optional fast path of :func:`~emgp_md.models.forces.energy_and_forces` (its hook).

        Applies when ``model`` is an :class:`~emgp_md.models.energy_model.EnergyModel` whose
        backbone is this EGNN itself (not a ``torch.compile`` wrapper) and ``graph`` has the dense
        layout: for inference the fused first-order kernels (:mod:`~emgp_md.models.egnn.fused`),
        for training the explicit differentiable forces (:mod:`~emgp_md.models.egnn.train`, unless
        switched off by :func:`~emgp_md.models.egnn.train.explicit_forces`; compiled as one graph
        inside :func:`~emgp_md.models.egnn.compiled.compiled_forces`). Same numbers as
        autograd. Returns None where it does not apply (the caller then uses autograd).
        """
        if getattr(model, "backbone", None) is not self or graph.dense_edge_type is None:
            return None
        if training:
            compiled = compiled_forces_apply(model, graph)  # implies explicit_forces_apply: one check a step
            if not compiled and not explicit_forces_apply(model, graph):
                return None
            with torch.enable_grad():
                fast = compiled_energy_and_forces(model, graph) if compiled else None  # None: compiling failed
                return fast if fast is not None else dense_energy_and_forces(model, graph)
        return fused_energy_and_forces(model, graph)
