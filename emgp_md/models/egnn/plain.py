"""E(n)-equivariant graph network as used by 3D-EMGP (method doc 1.2).

Satorras et al. (ICML 2021), in the configuration of the 3D-EMGP code (``egnn_clean.py``):
squared distances as radial input, 4 hop-type edge attributes, sigmoid attention gate, sum
aggregation, residual node update, and a coordinate update only in the last layer.

Speed: the first edge-MLP layer acts on ``[h_i; h_j; r_ij; e_ij]``. It is split into its node
parts ``W_i h_i`` and ``W_j h_j`` (computed once per node), the radial column and a 4-row lookup
table for the edge types, which gives exactly the same numbers as the concatenation at a
fraction of the cost. The state-dict keys match the authors' checkpoint.

For energy + forces inference on dense molecules (inside
:func:`~emgp_md.models.egnn.fused.forces_only`, or with gradients off) all layers run as one
fused autograd node with a hand-written backward (:mod:`emgp_md.models.egnn.fused`). Training
on dense molecules writes the forces out explicitly (:mod:`emgp_md.models.egnn.train`, same
numbers); elsewhere it uses the plain operations below and autograd.
"""

from __future__ import annotations

import torch
from torch import nn

from emgp_md.data.features import N_NODE_FEATURES, feature_table
from emgp_md.data.topology import N_EDGE_TYPES
from emgp_md.models.egnn.fused import fused_dense_backbone, fused_enabled


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
            nn.Linear(2 * hidden_nf + 1 + n_edge_types, hidden_nf), nn.SiLU(), nn.Linear(hidden_nf, hidden_nf), nn.SiLU()
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
        """Edge messages ``m_ij``.

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


    def forward_dense(self, h: torch.Tensor, edge_bias: torch.Tensor, off_diagonal: torch.Tensor) -> torch.Tensor:
        """The same layer on dense fully connected molecules of equal size (no coordinate update).

        Parameters
        ----------
        h : (n_graphs, n, hidden_nf)
        edge_bias : (n_graphs, n, n, hidden_nf)
            Radial and edge-type part of the first edge layer, with its bias.
        off_diagonal : (n, n, 1)
            1 for i != j, 0 on the diagonal (no self-messages).
        """
        hid = self.hidden_nf
        w = self.edge_mlp[0].weight
        node = nn.functional.linear(h, torch.cat([w[:, :hid], w[:, hid : 2 * hid]]))  # (B, n, 2·hid)
        pre = node[..., :hid].unsqueeze(2) + node[..., hid:].unsqueeze(1) + edge_bias  # [b, i, j]
        m = self.edge_mlp[3](self.edge_mlp[2](self.edge_mlp[1](pre)))
        gate = self.att_mlp(m) * off_diagonal if self.attention else off_diagonal
        agg = (m * gate).sum(dim=2)
        return h + self.node_mlp(torch.cat([h, agg], dim=-1))


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

    def edge_biases(self, radial: torch.Tensor, types: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """First-layer radial + edge-type terms of every layer, computed together.

        ``radial``: (..., 1) squared distances, Å²; ``types``: (...) long. Returns ``n_layers``
        tensors of shape (..., hidden_nf).
        """
        hid = self.hidden_nf
        firsts = [layer.edge_mlp[0] for layer in self.layers()]
        tables = torch.cat([f.weight[:, 2 * hid + 1 :].t() + f.bias for f in firsts], dim=1)  # (n_types, L·hid)
        w_radial = torch.cat([f.weight[:, 2 * hid] for f in firsts])  # (L·hid,)
        return torch.addcmul(tables[types], radial, w_radial).split(hid, dim=-1)

    def forward_dense(self, z: torch.Tensor, pos: torch.Tensor, dense_edge_type: torch.Tensor) -> torch.Tensor:
        """Node features (n_atoms, hidden_nf) for molecules of equal size, all pairs dense.

        ``dense_edge_type``: (n_graphs, n, n) hop types; atoms are ordered molecule by molecule.
        Runs the fused kernels where :func:`~emgp_md.models.egnn.fused.fused_enabled` (same numbers).
        """
        n_graphs, n, _ = dense_edge_type.shape
        p = pos.view(n_graphs, n, 3)
        if fused_enabled():
            return fused_dense_backbone(self, z, p, dense_edge_type)
        h = self.embedding_in(self.features.to(pos.dtype).index_select(0, z)).view(n_graphs, n, self.hidden_nf)
        diff = p.unsqueeze(2) - p.unsqueeze(1)
        radial = (diff * diff).sum(dim=-1, keepdim=True)  # (B, n, n, 1)
        off_diagonal = (1 - torch.eye(n, dtype=pos.dtype, device=pos.device)).unsqueeze(-1)
        for layer, bias in zip(self.layers(), self.edge_biases(radial, dense_edge_type)):
            h = layer.forward_dense(h, bias, off_diagonal)
        return h.reshape(n_graphs * n, self.hidden_nf)

    def forward(
        self,
        z: torch.Tensor,
        pos: torch.Tensor,
        edge_index: torch.Tensor,
        edge_type: torch.Tensor,
        update_coords: bool = False,
        dense_edge_type: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Node features (and, on request, last-layer coordinates).

        Parameters
        ----------
        z : (n_atoms,) long
        pos : (n_atoms, 3) float, Å
        edge_index : (2, n_edges) long
        edge_type : (n_edges,) long
        update_coords : bool
            Return the last layer's updated coordinates (the "Direct" ablation).
        dense_edge_type : (n_graphs, n, n) long, optional
            When given (equal-size, fully connected molecules), the dense path is used; same numbers.

        Returns
        -------
        h : (n_atoms, hidden_nf)
        pos_out : (n_atoms, 3) Å, or None
        """
        if dense_edge_type is not None and not update_coords:
            return self.forward_dense(z, pos, dense_edge_type), None
        h = self.embedding_in(self.features.to(pos.dtype).index_select(0, z))
        coord_diff = pos.index_select(0, edge_index[0]) - pos.index_select(0, edge_index[1])
        radial = (coord_diff * coord_diff).sum(dim=1)
        pos_out = None
        for i, layer in enumerate(self.layers()):
            last = update_coords and i == self.n_layers - 1
            h, shift = layer(h, radial, edge_index, edge_type, coord_diff if last else None)
            if shift is not None:
                pos_out = pos + shift
        return h, pos_out
