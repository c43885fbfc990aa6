"""Invariant readouts on top of a backbone's node features.

- :class:`AtomwiseEnergyHead`: the MD17 fine-tuning head (docs/method.md §4.1), per-atom
  ``Lin(H→H)–SiLU–Lin(H→1)`` then a sum over atoms.
- :class:`PooledEnergyHead`: the pretraining head (2.4), ``node_dec`` per atom, sum pooling,
  ``graph_dec`` on the pooled vector.
- :class:`NoiseLevelHead`: the INP classifier (2.6) on ``[pooled clean; pooled noisy]``.
"""

from __future__ import annotations

import torch
from torch import nn


def sum_pool(x: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """Sum rows of ``x`` (n_atoms, F) per molecule; returns (n_graphs, F)."""
    out = torch.zeros(n_graphs, *x.shape[1:], dtype=x.dtype, device=x.device)
    return out.index_add_(0, batch, x)


class AtomwiseEnergyHead(nn.Module):
    """MD17 head: ``E = Σ_i Lin(SiLU(Lin(h_i)))``; returns (n_graphs,).

    (The EGNN's fused inference path evaluates the same function as one autograd node,
    :class:`~emgp_md.models.egnn.fused.FusedAtomwiseEnergy`.)
    """

    def __init__(self, hidden_nf: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), nn.SiLU(), nn.Linear(hidden_nf, 1))

    def forward(self, h: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        return sum_pool(self.mlp(h).squeeze(1), batch, n_graphs)


class PooledEnergyHead(nn.Module):
    """Pretraining head: ``E = graph_dec(Σ_i node_dec(h_i))``; returns (n_graphs,).

    3D-EMGP's energy ``Ê(X) = φ_proj(Σ_i h'_i)`` whose forces ``F̂ = −∇_X Ê`` the EFP loss fits
    (docs/method.md §2.4).
    """

    def __init__(self, hidden_nf: int) -> None:
        super().__init__()
        self.node_dec = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), nn.SiLU(), nn.Linear(hidden_nf, hidden_nf))
        self.graph_dec = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), nn.SiLU(), nn.Linear(hidden_nf, 1))

    def pool(self, h: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        """Pooled representation g (n_graphs, hidden_nf) used by the INP head."""
        return sum_pool(self.node_dec(h), batch, n_graphs)

    def forward(self, h: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        return self.graph_dec(self.pool(h, batch, n_graphs)).squeeze(1)


class NoiseLevelHead(nn.Module):
    """INP classifier: logits (n_graphs, n_levels) from ``[g(X); g(X̃)]``.

    3D-EMGP's noise-scale predictor ``p = φ_Scale(Σ_i h'_i, Σ_i h̃'_i)`` of the INP loss
    (graph-level invariant noise-scale prediction, docs/method.md §2.6).
    """

    def __init__(self, hidden_nf: int, n_levels: int = 50) -> None:
        super().__init__()
        self.noise_pred = nn.Sequential(nn.Linear(2 * hidden_nf, hidden_nf), nn.SiLU(), nn.Linear(hidden_nf, n_levels))

    def forward(self, pooled_clean: torch.Tensor, pooled_noisy: torch.Tensor) -> torch.Tensor:
        return self.noise_pred(torch.cat([pooled_clean, pooled_noisy], dim=1))


class DistanceHead(nn.Module):
    """Invariant per-edge output for the "Distance" ablation (our design, docs/method.md §3 proposal).

    ``y_ij = MLP([h_i + h_j ; h_i ⊙ h_j ; d̃_ij])`` is symmetric in i, j and E(3)-invariant; it is
    regressed onto the distance score ``(d_ij - d̃_ij)/σ``. Returns (n_edges,).
    """

    def __init__(self, hidden_nf: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * hidden_nf + 1, hidden_nf), nn.SiLU(), nn.Linear(hidden_nf, 1))

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, dist_A: torch.Tensor) -> torch.Tensor:
        hi, hj = h.index_select(0, edge_index[0]), h.index_select(0, edge_index[1])
        return self.mlp(torch.cat([hi + hj, hi * hj, dist_A.unsqueeze(1)], dim=1)).squeeze(1)
