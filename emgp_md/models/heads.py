"""Invariant readouts on top of a backbone's node features.

- :class:`AtomwiseEnergyHead`: the MD17 fine-tuning head (docs/method.md §4.1), per-atom
  ``Lin(H→H)–SiLU–Lin(H→1)`` then a sum over atoms.
- :class:`PooledEnergyHead`: the pretraining head (2.4), ``node_dec`` per atom, sum pooling,
  ``graph_dec`` on the pooled vector.
- :class:`NoiseLevelHead`: the INP classifier (2.6) on ``[pooled clean; pooled noisy]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emgp_md.models.egnn.fused import check_first_order, fused_enabled


def sum_pool(x: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
    """Sum rows of ``x`` (n_atoms, F) per molecule; returns (n_graphs, F)."""
    out = torch.zeros(n_graphs, *x.shape[1:], dtype=x.dtype, device=x.device)
    return out.index_add_(0, batch, x)


class FusedAtomwiseEnergy(torch.autograd.Function):
    """``E_b = Σ_{i in b} (w_2 · silu(W_1 h_i + b_1) + b_2)`` as one autograd node (inference).

    ``apply(h, batch, n_graphs, w_1, b_1, w_2, b_2)`` with ``h`` (n_atoms, H), ``batch``
    (n_atoms,) long, ``w_1`` (H, H), ``b_1`` (H,), ``w_2`` (H,), ``b_2`` (1,); returns (n_graphs,).
    The backward gives ``∂E/∂h_i = (silu'(u_i) ⊙ w_2 ∂E/∂E_b) W_1`` (``u_i = W_1 h_i + b_1``)
    only: the weights are constants, and it cannot be differentiated again.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        h: torch.Tensor,
        batch: torch.Tensor,
        n_graphs: int,
        w_1: torch.Tensor,
        b_1: torch.Tensor,
        w_2: torch.Tensor,
        b_2: torch.Tensor,
    ) -> torch.Tensor:
        u = torch.addmm(b_1, h, w_1.t())
        per_atom = torch.addmv(b_2, nn.functional.silu(u), w_2)
        ctx.u, ctx.batch, ctx.w_1, ctx.w_2 = u, batch, w_1, w_2
        return h.new_zeros(n_graphs).index_add_(0, batch, per_atom)

    @staticmethod
    def backward(ctx: Any, grad_energy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        check_first_order("FusedAtomwiseEnergy")
        grad_s = torch.outer(grad_energy.index_select(0, ctx.batch), ctx.w_2)
        grad_h = torch.ops.aten.silu_backward(grad_s, ctx.u) @ ctx.w_1
        return grad_h, None, None, None, None, None, None


class AtomwiseEnergyHead(nn.Module):
    """MD17 head: ``E = Σ_i Lin(SiLU(Lin(h_i)))``; returns (n_graphs,).

    Where :func:`~emgp_md.models.egnn.fused.fused_enabled` (energy + forces inference), the same
    function runs as one autograd node (:class:`FusedAtomwiseEnergy`).
    """

    def __init__(self, hidden_nf: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), nn.SiLU(), nn.Linear(hidden_nf, 1))

    def forward(self, h: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        if fused_enabled():
            first, last = self.mlp[0], self.mlp[2]
            return FusedAtomwiseEnergy.apply(
                h, batch, n_graphs, first.weight.detach(), first.bias.detach(), last.weight.detach()[0],
                last.bias.detach(),
            )
        return sum_pool(self.mlp(h).squeeze(1), batch, n_graphs)


class PooledEnergyHead(nn.Module):
    """Pretraining head: ``E = graph_dec(Σ_i node_dec(h_i))``; returns (n_graphs,)."""

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
    """INP classifier: logits (n_graphs, n_levels) from ``[g(X); g(X̃)]``."""

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
