"""SchNet as built by 3D-EMGP for its "different backbones" figure (docs/method.md §1.3).

Schütt et al. (NeurIPS 2017), in the layout of the authors' ``mgp/layers/schnet.py``:

- node embedding ``h⁰ = Lin(300→H)(u_i)`` of the 300-wide 3D-EMGP atom features;
- edge features ``[RBF(d_ij) ; e_ij]``: ``n_rbf`` Gaussians on ``[0, r_c]`` concatenated with the
  4-wide hop-type one-hot (so the bond graph enters every filter, as in the authors' code);
- ``n_layers`` residual interaction blocks ``h ← h + Lin(ssp(CFConv(h)))`` with the continuous
  filter convolution ``CFConv(h)_i = Lin₂(Σ_j Lin₁(h)_j ⊙ W_ij)`` (``Lin₁`` without bias) and the
  filter ``W_ij = [Lin–ssp–Lin](edge features) · C(d_ij)``;
- per-atom output ``Lin(H→H/2)–ssp–Lin(H/2→H)``, so the heads see ``H`` features.

**Cutoff fix (docs/method.md §7.8).** The authors multiply the filter by the bare cosine
``½(cos(π d/r_c) + 1)`` on a fully connected graph. Beyond ``r_c`` (10 Å) that factor grows back
to 1 at ``2 r_c``, so atoms 15–20 Å apart interact as strongly as bonded ones, which noised
pretraining inputs (σ up to 10 Å) reach routinely. Here the distance is clamped at ``r_c`` before
the cosine (:func:`~emgp_md.models.radial.cosine_cutoff`): the filter is exactly zero beyond the
cutoff and the energy and forces stay continuous when a pair crosses it. Everything else, sizes
and parameter count included, is the authors' model.

The first filter layer acts on ``[RBF ; one-hot]``; its hop-type block is applied as a 4-row lookup
table (the same numbers as the concatenation, without building the one-hot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from emgp_md.data.features import N_NODE_FEATURES, feature_table
from emgp_md.data.topology import N_EDGE_TYPES
from emgp_md.models.radial import GaussianRBF, ShiftedSoftplus, cosine_cutoff, safe_norm

if TYPE_CHECKING:
    from emgp_md.data.graph import GraphBatch

PAPER_CUTOFF_A = 10.0


class InteractionBlock(nn.Module):
    """One SchNet interaction: continuous-filter convolution, shifted softplus, linear layer.

    Parameters
    ----------
    hidden_nf : int
        Width of the node features.
    n_filters : int
        Width of the filters (paper: equal to ``hidden_nf``).
    n_edge_in : int
        Width of the edge features, ``n_rbf + n_edge_types``.
    """

    def __init__(self, hidden_nf: int, n_filters: int, n_edge_in: int) -> None:
        super().__init__()
        self.filter_net = nn.Sequential(
            nn.Linear(n_edge_in, n_filters), ShiftedSoftplus(), nn.Linear(n_filters, n_filters)
        )
        self.lin1 = nn.Linear(hidden_nf, n_filters, bias=False)
        self.lin2 = nn.Linear(n_filters, hidden_nf)
        self.act = ShiftedSoftplus()
        self.lin = nn.Linear(hidden_nf, hidden_nf)

    def filters(self, rbf: torch.Tensor, edge_type: torch.Tensor, cutoff: torch.Tensor) -> torch.Tensor:
        """Filters ``W_ij`` (n_edges, n_filters) from ``rbf`` (n_edges, n_rbf), ``edge_type`` (n_edges,)
        long and the cutoff factor ``cutoff`` (n_edges,)."""
        first = self.filter_net[0]
        n_rbf = rbf.shape[1]
        type_table = first.weight[:, n_rbf:].t() + first.bias  # (n_edge_types, n_filters)
        pre = F.linear(rbf, first.weight[:, :n_rbf]) + type_table.index_select(0, edge_type)
        return self.filter_net[2](self.filter_net[1](pre)) * cutoff.unsqueeze(1)

    def forward(
        self,
        h: torch.Tensor,
        edge_index: torch.Tensor,
        rbf: torch.Tensor,
        edge_type: torch.Tensor,
        cutoff: torch.Tensor,
    ) -> torch.Tensor:
        """Update ``Δh`` (n_atoms, hidden_nf) of the residual ``h ← h + Δh``.

        Parameters
        ----------
        h : (n_atoms, hidden_nf)
        edge_index : (2, n_edges) long
            Receiver (row 0) and sender (row 1).
        rbf : (n_edges, n_rbf)
        edge_type : (n_edges,) long
        cutoff : (n_edges,) cutoff factor in [0, 1]
        """
        w = self.filters(rbf, edge_type, cutoff)
        x = self.lin1(h)
        msg = x.index_select(0, edge_index[1]) * w
        agg = torch.zeros_like(x).index_add_(0, edge_index[0], msg)
        return self.lin(self.act(self.lin2(agg)))


class SchNet(nn.Module):
    """The 3D-EMGP SchNet backbone with a cutoff that is zero beyond ``cutoff_A``.

    Parameters
    ----------
    hidden_nf : int
        Width of node features and filters (paper: 128); at least 2.
    n_layers : int
        Number of interaction blocks (paper: 7).
    cutoff_A : float
        Cutoff radius and last Gaussian centre, Å (paper: 10).
    n_rbf : int
        Number of Gaussians (paper: 50).
    """

    needs_hypergraph = False

    def __init__(
        self, hidden_nf: int = 128, n_layers: int = 7, cutoff_A: float = PAPER_CUTOFF_A, n_rbf: int = 50
    ) -> None:
        super().__init__()
        if hidden_nf < 2 or n_layers < 1:
            raise ValueError(f"SchNet needs hidden_nf >= 2 and n_layers >= 1, got {hidden_nf} and {n_layers}")
        if not cutoff_A > 0:
            raise ValueError(f"SchNet needs a positive cutoff_A, got {cutoff_A}")
        self.hidden_nf = hidden_nf
        self.cutoff_A = float(cutoff_A)
        self.embedding_in = nn.Linear(N_NODE_FEATURES, hidden_nf)
        self.rbf = GaussianRBF(cutoff_A, n_rbf)
        self.interactions = nn.ModuleList(
            InteractionBlock(hidden_nf, hidden_nf, n_rbf + N_EDGE_TYPES) for _ in range(n_layers)
        )
        self.out_mlp = nn.Sequential(
            nn.Linear(hidden_nf, hidden_nf // 2), ShiftedSoftplus(), nn.Linear(hidden_nf // 2, hidden_nf)
        )
        self.register_buffer("features", feature_table(torch.float32), persistent=False)

    def forward(self, graph: GraphBatch) -> torch.Tensor:
        """Invariant node features (the :class:`~emgp_md.models.base.Backbone` protocol).

        Reads ``graph.z`` (n_atoms,) long, ``graph.pos`` (n_atoms, 3) Å, ``graph.edge_index``
        (2, n_edges) long (receiver row 0, sender row 1) and ``graph.edge_type`` (n_edges,) long.

        Returns
        -------
        h : (n_atoms, hidden_nf)
        """
        z, pos, edge_index, edge_type = graph.z, graph.pos, graph.edge_index, graph.edge_type
        h = self.embedding_in(self.features.to(pos.dtype).index_select(0, z))
        dist = safe_norm(pos.index_select(0, edge_index[0]) - pos.index_select(0, edge_index[1]))
        rbf = self.rbf(dist)
        cutoff = cosine_cutoff(dist, self.cutoff_A)
        for block in self.interactions:
            h = h + block(h, edge_index, rbf, edge_type, cutoff)
        return self.out_mlp(h)
