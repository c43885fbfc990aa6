"""TorchMD-Net equivariant transformer ("ET") as built by 3D-EMGP (docs/method.md §1.4).

Thölke & De Fabritiis (ICLR 2022), in the configuration of the authors' ``mgp/layers/et.py``:

- embedding ``x⁰ = Lin(300→H)(u_i)`` of the 300-wide atom features (the authors' ``max_z=300`` is
  the input width of a linear layer), refined by a neighbour embedding
  ``x ← Lin(2H→H)([x_i ; Σ_j Lin(300→H)(u_j) ⊙ Lin(f_ij) C(d_ij)])``;
- edge features ``f_ij = [ExpNormal RBF(d_ij) · C(d_ij) ; hop one-hot]`` (``n_rbf + 4`` wide), the
  RBF centres and widths trainable;
- ``n_layers`` multi-head attention layers on scalar features ``x`` (n_atoms, H) and vector
  features ``v`` (n_atoms, 3, H), both updated residually. The attention weight is
  ``SiLU(Σ_k q_i k_j d^K_ij) · C(d_ij)`` (no softmax, so no segment softmax is needed);
- a final LayerNorm on the scalars, which are the backbone's output.

Two deviations from the authors' code, both so that the model is the one its paper describes:

1. **Vector messages respect the cutoff (docs/method.md §7.9).** The authors' vector message
   ``v_j ⊙ s¹_ij + s²_ij r̂_ij`` is not multiplied by the cutoff, so on the fully connected graph
   pairs beyond ``r_c`` keep exchanging vector features through the hop-type part of ``f_ij``;
   upstream TorchMD-Net never sees such pairs (radius graph). Here the vector message is
   multiplied by ``C(d_ij)``: every message vanishes smoothly at ``r_c`` and molecules farther
   apart than the cutoff do not interact.
2. **No bias in the vector projection.** The authors' ``vec_proj`` has a (zero-initialised)
   trainable bias, which adds the same number to the x, y and z components and breaks rotation
   equivariance as soon as it trains; upstream TorchMD-Net uses ``bias=False``, as here.

Distances use a safe norm, and the unit vector of a zero-length edge is the zero vector, so
coinciding atoms give finite forces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from emgp_md.data.features import N_NODE_FEATURES, feature_table
from emgp_md.data.topology import N_EDGE_TYPES
from emgp_md.models.radial import ExpNormalRBF, cosine_cutoff, safe_norm

if TYPE_CHECKING:
    from emgp_md.data.graph import GraphBatch

PAPER_CUTOFF_A = 5.0


def _xavier_(layer: nn.Linear) -> None:
    """TorchMD-Net's init: Xavier-uniform weight, zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class NeighborEmbedding(nn.Module):
    """``x_i ← Lin(2H→H)([x_i ; Σ_j Lin(300→H)(u_j) ⊙ Lin(f_ij) C(d_ij)])``.

    Parameters
    ----------
    hidden_nf : int
    n_edge_in : int
        Width of ``f_ij``.
    """

    def __init__(self, hidden_nf: int, n_edge_in: int) -> None:
        super().__init__()
        self.embedding = nn.Linear(N_NODE_FEATURES, hidden_nf)
        self.distance_proj = nn.Linear(n_edge_in, hidden_nf)
        self.combine = nn.Linear(2 * hidden_nf, hidden_nf)
        _xavier_(self.distance_proj)
        _xavier_(self.combine)

    def forward(
        self, x: torch.Tensor, u: torch.Tensor, edge_index: torch.Tensor, f: torch.Tensor, cutoff: torch.Tensor
    ) -> torch.Tensor:
        """``x`` (n_atoms, H), atom features ``u`` (n_atoms, 300), ``edge_index`` (2, n_edges),
        ``f`` (n_edges, n_edge_in), ``cutoff`` (n_edges,) → (n_atoms, H)."""
        w = self.distance_proj(f) * cutoff.unsqueeze(1)
        msg = self.embedding(u).index_select(0, edge_index[1]) * w
        agg = torch.zeros_like(x).index_add_(0, edge_index[0], msg)
        return self.combine(torch.cat([x, agg], dim=1))


class EquivariantAttention(nn.Module):
    """One ET layer (``EquivariantMultiHeadAttention``, ``distance_influence="both"``).

    Parameters
    ----------
    hidden_nf : int
        Width ``H`` of scalar and vector features.
    n_edge_in : int
        Width of ``f_ij``.
    n_heads : int
        Attention heads; must divide ``hidden_nf``.
    """

    def __init__(self, hidden_nf: int, n_edge_in: int, n_heads: int) -> None:
        super().__init__()
        self.hidden_nf = hidden_nf
        self.n_heads = n_heads
        self.head_dim = hidden_nf // n_heads
        self.layernorm = nn.LayerNorm(hidden_nf)
        self.q_proj = nn.Linear(hidden_nf, hidden_nf)
        self.k_proj = nn.Linear(hidden_nf, hidden_nf)
        self.v_proj = nn.Linear(hidden_nf, 3 * hidden_nf)
        self.o_proj = nn.Linear(hidden_nf, 3 * hidden_nf)
        self.vec_proj = nn.Linear(hidden_nf, 3 * hidden_nf, bias=False)
        self.dk_proj = nn.Linear(n_edge_in, hidden_nf)
        self.dv_proj = nn.Linear(n_edge_in, 3 * hidden_nf)
        for layer in (self.q_proj, self.k_proj, self.v_proj, self.o_proj, self.vec_proj, self.dk_proj, self.dv_proj):
            _xavier_(layer)

    def forward(
        self,
        x: torch.Tensor,
        vec: torch.Tensor,
        edge_index: torch.Tensor,
        f: torch.Tensor,
        unit: torch.Tensor,
        cutoff: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual updates of the scalar and vector features.

        Parameters
        ----------
        x : (n_atoms, H) scalar features
        vec : (n_atoms, 3, H) vector features
        edge_index : (2, n_edges) long, receiver i (row 0), sender j (row 1)
        f : (n_edges, n_edge_in) edge features
        unit : (n_edges, 3) unit vector from receiver to sender
        cutoff : (n_edges,) cutoff factor in [0, 1]

        Returns
        -------
        dx : (n_atoms, H)
        dvec : (n_atoms, 3, H)
        """
        n_atoms, heads, hd, hid = x.shape[0], self.n_heads, self.head_dim, self.hidden_nf
        recv, send = edge_index[0], edge_index[1]
        x = self.layernorm(x)
        q = self.q_proj(x).view(n_atoms, heads, hd)
        k = self.k_proj(x).view(n_atoms, heads, hd)
        v = self.v_proj(x).view(n_atoms, heads, 3 * hd)
        vec1, vec2, vec3 = self.vec_proj(vec).split(hid, dim=-1)
        vec_dot = (vec1 * vec2).sum(dim=1)  # (n_atoms, H), invariant
        dk = F.silu(self.dk_proj(f)).view(-1, heads, hd)
        dv = F.silu(self.dv_proj(f)).view(-1, heads, 3 * hd)

        cut = cutoff.view(-1, 1)
        attn = F.silu((q.index_select(0, recv) * k.index_select(0, send) * dk).sum(dim=-1)) * cut  # (E, heads)
        s, s1, s2 = (v.index_select(0, send) * dv).split(hd, dim=2)  # (E, heads, hd) each
        msg_x = (s * attn.unsqueeze(2)).reshape(-1, hid)
        vec_j = vec.index_select(0, send).view(-1, 3, heads, hd)
        msg_vec = vec_j * s1.unsqueeze(1) + s2.unsqueeze(1) * unit.view(-1, 3, 1, 1)
        msg_vec = msg_vec.reshape(-1, 3, hid) * cut.unsqueeze(2)  # deviation 1: cutoff on vector messages

        agg_x = torch.zeros(n_atoms, hid, dtype=x.dtype, device=x.device).index_add_(0, recv, msg_x)
        agg_vec = torch.zeros_like(vec).index_add_(0, recv, msg_vec)
        o1, o2, o3 = self.o_proj(agg_x).split(hid, dim=1)
        return vec_dot * o2 + o3, vec3 * o1.unsqueeze(1) + agg_vec


class TorchMDET(nn.Module):
    """The 3D-EMGP equivariant-transformer backbone; outputs invariant node features.

    Parameters
    ----------
    hidden_nf : int
        Width of scalar and vector features (paper: 128).
    n_layers : int
        Attention layers (paper: 7).
    cutoff_A : float
        Upper cutoff radius, Å (paper: 5).
    n_rbf : int
        Exp-normal basis functions (paper: 50).
    n_heads : int
        Attention heads (paper: 8); must divide ``hidden_nf``.
    """

    needs_hypergraph = False

    def __init__(
        self,
        hidden_nf: int = 128,
        n_layers: int = 7,
        cutoff_A: float = PAPER_CUTOFF_A,
        n_rbf: int = 50,
        n_heads: int = 8,
    ) -> None:
        super().__init__()
        if hidden_nf < 1 or n_layers < 1:
            raise ValueError(f"ET needs hidden_nf >= 1 and n_layers >= 1, got {hidden_nf} and {n_layers}")
        if n_heads < 1 or hidden_nf % n_heads:
            raise ValueError(f"ET needs n_heads >= 1 dividing hidden_nf, got n_heads={n_heads}, hidden_nf={hidden_nf}")
        if not cutoff_A > 0:
            raise ValueError(f"ET needs a positive cutoff_A, got {cutoff_A}")
        self.hidden_nf = hidden_nf
        self.cutoff_A = float(cutoff_A)
        n_edge_in = n_rbf + N_EDGE_TYPES
        self.embedding = nn.Linear(N_NODE_FEATURES, hidden_nf)
        self.rbf = ExpNormalRBF(cutoff_A, n_rbf)
        self.neighbor_embedding = NeighborEmbedding(hidden_nf, n_edge_in)
        self.attention_layers = nn.ModuleList(
            EquivariantAttention(hidden_nf, n_edge_in, n_heads) for _ in range(n_layers)
        )
        self.out_norm = nn.LayerNorm(hidden_nf)
        self.register_buffer("features", feature_table(torch.float32), persistent=False)

    def forward(self, graph: GraphBatch) -> torch.Tensor:
        """Invariant node features (the :class:`~emgp_md.models.base.Backbone` protocol).

        Reads ``graph.z`` (n_atoms,) long, ``graph.pos`` (n_atoms, 3) Å, ``graph.edge_index``
        (2, n_edges) long (receiver row 0, sender row 1; no self-loops) and ``graph.edge_type``
        (n_edges,) long.

        Returns
        -------
        h : (n_atoms, hidden_nf)
            LayerNorm of the final scalar features.
        """
        z, pos, edge_index, edge_type = graph.z, graph.pos, graph.edge_index, graph.edge_type
        u = self.features.to(pos.dtype).index_select(0, z)
        rel = pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0])  # receiver → sender
        dist = safe_norm(rel)
        unit = rel / torch.where(dist > 0, dist, torch.ones_like(dist)).unsqueeze(1)
        cutoff = cosine_cutoff(dist, self.cutoff_A)
        f = torch.cat([self.rbf(dist), F.one_hot(edge_type, N_EDGE_TYPES).to(pos.dtype)], dim=1)
        x = self.neighbor_embedding(self.embedding(u), u, edge_index, f, cutoff)
        vec = torch.zeros(x.shape[0], 3, x.shape[1], dtype=x.dtype, device=x.device)
        for layer in self.attention_layers:
            dx, dvec = layer(x, vec, edge_index, f, unit, cutoff)
            x = x + dx
            vec = vec + dvec
        return self.out_norm(x)
