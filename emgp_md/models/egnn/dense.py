"""The EGNN on equal-size, fully connected molecules as dense tensors (docs/architecture.md, "Why it is fast").

Messages are an (n_graphs, n, n, hidden) tensor: broadcast adds instead of gathers, a masked sum
instead of a scatter. Same numbers as the per-edge path of :mod:`~emgp_md.models.egnn.plain`
(tested to 1e-10 in float64), no coordinate update. Without gradients the layers run fused
(:mod:`~emgp_md.models.egnn.fused`, same numbers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from emgp_md.models.egnn.fused import fused_dense_backbone, fused_forward_allowed

if TYPE_CHECKING:
    from emgp_md.models.egnn.plain import EGCL, EGNN


def edge_biases(egnn: EGNN, radial: torch.Tensor, types: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """First-layer radial + edge-type terms of every layer, computed together.

    ``radial``: (..., 1) squared distances, Å²; ``types``: (...) long. Returns ``n_layers``
    tensors of shape (..., hidden_nf).
    """
    hid = egnn.hidden_nf
    firsts = [layer.edge_mlp[0] for layer in egnn.layers()]
    tables = torch.cat([f.weight[:, 2 * hid + 1 :].t() + f.bias for f in firsts], dim=1)  # (n_types, L·hid)
    w_radial = torch.cat([f.weight[:, 2 * hid] for f in firsts])  # (L·hid,)
    return torch.addcmul(tables[types], radial, w_radial).split(hid, dim=-1)


def dense_layer(layer: EGCL, h: torch.Tensor, edge_bias: torch.Tensor, off_diagonal: torch.Tensor) -> torch.Tensor:
    """One :class:`~emgp_md.models.egnn.plain.EGCL` on dense molecules (no coordinate update).

    EGNN message (Satorras et al. 2021, Eq. 3) with the attention gate, aggregation (Eq. 5) as a
    masked sum over ``j``, and the residual feature update (Eq. 6).

    Parameters
    ----------
    h : (n_graphs, n, hidden_nf)
    edge_bias : (n_graphs, n, n, hidden_nf)
        Radial and edge-type part of the first edge layer, with its bias.
    off_diagonal : (n, n, 1)
        1 for i != j, 0 on the diagonal (no self-messages).
    """
    hid = layer.hidden_nf
    w = layer.edge_mlp[0].weight
    node = nn.functional.linear(h, torch.cat([w[:, :hid], w[:, hid : 2 * hid]]))  # (B, n, 2·hid)
    pre = node[..., :hid].unsqueeze(2) + node[..., hid:].unsqueeze(1) + edge_bias  # [b, i, j]
    m = layer.edge_mlp[3](layer.edge_mlp[2](layer.edge_mlp[1](pre)))
    gate = layer.att_mlp(m) * off_diagonal if layer.attention else off_diagonal
    agg = (m * gate).sum(dim=2)
    return h + layer.node_mlp(torch.cat([h, agg], dim=-1))


def dense_node_features(egnn: EGNN, z: torch.Tensor, pos: torch.Tensor, dense_edge_type: torch.Tensor) -> torch.Tensor:
    """Node features (n_atoms, hidden_nf) for molecules of equal size, all pairs dense.

    ``z``: (n_atoms,) long; ``pos``: (n_atoms, 3) Å, atoms ordered molecule by molecule;
    ``dense_edge_type``: (n_graphs, n, n) hop types. Runs the fused kernels where
    :func:`~emgp_md.models.egnn.fused.fused_forward_allowed` (same numbers).
    """
    n_graphs, n, _ = dense_edge_type.shape
    p = pos.view(n_graphs, n, 3)
    if fused_forward_allowed():
        return fused_dense_backbone(egnn, z, p, dense_edge_type)
    h = egnn.embedding_in(egnn.features.to(pos.dtype).index_select(0, z)).view(n_graphs, n, egnn.hidden_nf)
    diff = p.unsqueeze(2) - p.unsqueeze(1)
    radial = (diff * diff).sum(dim=-1, keepdim=True)  # (B, n, n, 1)
    off_diagonal = (1 - torch.eye(n, dtype=pos.dtype, device=pos.device)).unsqueeze(-1)
    for layer, bias in zip(egnn.layers(), edge_biases(egnn, radial, dense_edge_type)):
        h = dense_layer(layer, h, bias, off_diagonal)
    return h.reshape(n_graphs * n, egnn.hidden_nf)
