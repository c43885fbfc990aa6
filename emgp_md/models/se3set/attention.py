"""SE3Set hypergraph attention (V2E and E2V) and the transformer block (docs/method.md §S2.4).

Both stages are Equiformer's non-linear graph attention; they differ only in what flows where:

- **V2E** (vertex → anchored hyperedge): items are the incidences ``j → ε`` (``j`` ≠ anchor ``i``);
  the message mixes the hyperedge and the source atom, the attribute is ``Y(r̂_ij)`` and the
  tensor-product weights come from a radial network of ``|r_j − r_i|``;
- **E2V** (anchored hyperedge → anchor atom): items are the anchored hyperedges ``ε → i``; the
  message is the atom's alone and the attribute is the hyperedge feature itself (a bilinear
  product, no geometry), with learned shared weights.

Equivariant features are feature-major, ``(irreps.dim, n)`` (see :mod:`emgp_md.models.se3set.layers`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from e3nn import o3
from torch import nn

from emgp_md.models.se3set.layers import (
    SCALAR,
    EquivariantLayerNorm,
    FeedForward,
    RadialMLP,
    depthwise_tensor_product,
    gate_activation,
    make_alpha_activation,
    scatter_sum,
    segment_softmax,
)
from emgp_md.models.se3set.ops import LinearFM
from emgp_md.models.se3set.tp import linear_of_product


def head_irreps(irreps_head: o3.Irreps, n_heads: int) -> tuple[o3.Irreps, torch.Tensor]:
    """Irreps of all heads side by side and the head of every feature.

    Returns
    -------
    irreps : o3.Irreps
        ``(n_heads · mul) × ir`` for every ``mul × ir`` of ``irreps_head``.
    head_of_feature : (irreps.dim,) long
        Head that owns each feature (Equiformer's ``Vec2AttnHeads`` layout: inside a block the
        channels of head 0 come first).
    """
    blocks, owner = [], []
    for mul, ir in irreps_head:
        blocks.append((n_heads * mul, ir))
        owner.append(torch.arange(n_heads).repeat_interleave(mul * ir.dim))
    return o3.Irreps(blocks), torch.cat(owner)


class HypergraphAttention(nn.Module):
    """Multi-head non-linear attention from items into destinations.

    For item ``e`` with destination ``d(e)``::

        m_e = L_dst(dst[d(e)]) (+ L_src(src[s(e)]))
        q_e = DTP(m_e, a_e; w_e)                 # w_e = RadialMLP(basis_e) or learned
        s_e = < SmoothLeakyReLU(L_α(q_e))_k , a_k >   for each head k
        α_e = softmax of s_e over the items of the same destination
        v_e = L_v(DTP'(Gate(L_g(q_e)), a_e))
        out_d = Proj(Σ_e α_e[head of channel] v_e)

    Parameters
    ----------
    irreps : o3.Irreps
        Destination features in and out (and the message irreps).
    irreps_attr : o3.Irreps
        Per-item attribute ``a_e``.
    irreps_head : o3.Irreps
        Irreps of one head, sorted (even parity first) and simplified, with a ``0e`` part.
    n_heads : int
    irreps_src : o3.Irreps, optional
        Source features mixed into the message (V2E); None for E2V.
    radial_sizes : sequence of int, optional
        ``[n_rbf, hidden...]``: weights of the first tensor product from the items' radial basis.
    """

    def __init__(
        self,
        irreps: o3.Irreps,
        irreps_attr: o3.Irreps,
        irreps_head: o3.Irreps,
        n_heads: int,
        irreps_src: o3.Irreps | None = None,
        radial_sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        irreps_head = o3.Irreps(irreps_head)
        self.n_heads = n_heads
        self.mul_alpha = irreps_head.count(SCALAR)
        if self.mul_alpha == 0:
            raise ValueError(f"irreps_head needs 0e channels for the attention logits, got {irreps_head}")
        irreps_heads, _ = head_irreps(irreps_head, n_heads)
        self.merge_dst = LinearFM(irreps, irreps)
        self.merge_src = LinearFM(irreps_src, irreps) if irreps_src is not None else None
        self.dtp = depthwise_tensor_product(irreps, irreps_attr, irreps, internal_weights=radial_sizes is None)
        self.radial = RadialMLP([*radial_sizes, self.dtp.weight_numel]) if radial_sizes else None
        irreps_q = self.dtp.irreps_out.simplify()
        pieces = self.dtp.irreps_out  # the tensor products hand over their path outputs unconcatenated
        self.lin_alpha = LinearFM(irreps_q, o3.Irreps([(n_heads * self.mul_alpha, SCALAR)]), biases=True, pieces=pieces)
        self.alpha_act = make_alpha_activation()
        bound = math.sqrt(6.0 / (n_heads + self.mul_alpha))  # glorot, as GATv2 / Equiformer
        self.alpha_dot = nn.Parameter(torch.empty(n_heads, self.mul_alpha).uniform_(-bound, bound))
        self.gate = gate_activation(irreps)
        self.gate_blocks_fit = self.gate.irreps_out == o3.Irreps(irreps)  # its blocks can go to dtp_value as they are
        self.lin_gate = LinearFM(irreps_q, self.gate.irreps_in, biases=True, pieces=pieces)
        self.dtp_value = depthwise_tensor_product(irreps, irreps_attr, irreps_heads, internal_weights=True)
        self.lin_value = LinearFM(
            self.dtp_value.irreps_out.simplify(), irreps_heads, biases=True, pieces=self.dtp_value.irreps_out
        )
        self.proj = LinearFM(irreps_heads, irreps, biases=True)

    def forward(
        self,
        dst: torch.Tensor,
        dst_index: torch.Tensor,
        attr: torch.Tensor,
        src: torch.Tensor | None = None,
        src_index: torch.Tensor | None = None,
        basis: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention output for every destination.

        Parameters
        ----------
        dst : (irreps.dim, n_dst)
        dst_index : (n_items,) long
        attr : (irreps_attr.dim, n_items)
        src : (irreps_src.dim, n_src), optional
        src_index : (n_items,) long, optional
        basis : (n_items, n_rbf), optional
            Item-major; required when the layer has a radial network.

        Returns
        -------
        (irreps.dim, n_dst)
        """
        n_dst, n = dst.shape[1], dst_index.shape[0]
        msg = self.merge_dst.forward_fm(dst).index_select(1, dst_index)
        if self.merge_src is not None:
            msg = msg + self.merge_src.forward_fm(src).index_select(1, src_index)
        weight = self.radial.forward_fm(basis) if self.radial is not None else None
        # q = DTP(msg, attr; w) feeds L_α and L_g: both maps are evaluated path by path, q is never formed
        (alpha,), gate_in = linear_of_product(self.dtp, [self.lin_alpha, self.lin_gate], msg, attr, weight, blocks=True)
        alpha = self.alpha_act(alpha.view(self.n_heads, self.mul_alpha, n))
        logits = (alpha * self.alpha_dot.unsqueeze(-1)).sum(dim=1)  # (n_heads, n_items)
        attn = segment_softmax(logits, dst_index, n_dst, dim=1)
        gated = self.gate.forward_fm(gate_in, blocks=self.gate_blocks_fit)
        (value,) = linear_of_product(self.dtp_value, [self.lin_value], gated, attr, blocks=True)
        # a block (n_heads·mul)×ir holds the heads one after the other: weight each by its head's attention
        weighted = [(v.view(self.n_heads, -1, n) * attn.unsqueeze(1)).view(v.shape[0], n) for v in value]
        return self.proj.forward_fm([scatter_sum(w, dst_index, n_dst, dim=1) for w in weighted])


class SE3SetBlock(nn.Module):
    """One pre-norm SE3Set block (the authors' ``TransBlock``).

    Streams (feature-major): atoms ``X`` (V.dim, n_atoms) and anchored hyperedges ``H`` (V.dim,
    n_anchored), unnormalised, with their normalised copies ``X̂``, ``Ĥ``::

        H ← H + V2E(Ĥ, X̂, Y, φ);  H ← H + FFN_E(LN(H));  Ĥ ← LN(H)
        X ← X + E2V(X̂, Ĥ);        X ← S(X) + FFN_V(LN(X));  X̂ ← LN(X)

    ``S`` is the identity, or a linear shortcut when the block changes the atom irreps (the last
    block maps to ``feature_nf × 0e``).

    Parameters
    ----------
    irreps : o3.Irreps
        ``V``.
    irreps_sh : o3.Irreps
        Spherical harmonics.
    irreps_head : o3.Irreps
    n_heads : int
    irreps_mlp_mid : o3.Irreps
        Middle of both feed-forward networks.
    irreps_out : o3.Irreps
        Atom irreps after the block.
    radial_sizes : sequence of int
        ``[n_rbf, hidden...]`` of the V2E radial network.
    """

    def __init__(
        self,
        irreps: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_head: o3.Irreps,
        n_heads: int,
        irreps_mlp_mid: o3.Irreps,
        irreps_out: o3.Irreps,
        radial_sizes: Sequence[int],
    ) -> None:
        super().__init__()
        self.v2e = HypergraphAttention(
            irreps, irreps_sh, irreps_head, n_heads, irreps_src=irreps, radial_sizes=radial_sizes
        )
        self.norm_hyperedge_1 = EquivariantLayerNorm(irreps)
        self.ffn_hyperedge = FeedForward(irreps, irreps_mlp_mid, irreps)
        self.norm_hyperedge_2 = EquivariantLayerNorm(irreps)
        self.e2v = HypergraphAttention(irreps, irreps, irreps_head, n_heads)
        self.norm_atom_1 = EquivariantLayerNorm(irreps)
        self.ffn_atom = FeedForward(irreps, irreps_mlp_mid, irreps_out)
        self.shortcut = LinearFM(irreps, irreps_out, biases=True) if o3.Irreps(irreps_out) != irreps else None
        self.norm_atom_2 = EquivariantLayerNorm(irreps_out)

    def forward(
        self,
        x: torch.Tensor,
        x_hat: torch.Tensor,
        h: torch.Tensor,
        h_hat: torch.Tensor,
        incidences: tuple[torch.Tensor, torch.Tensor],
        anchor: torch.Tensor,
        sh: torch.Tensor,
        basis: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Update both streams.

        Parameters
        ----------
        x, x_hat : (V.dim, n_atoms)
            Feature-major, as all streams.
        h, h_hat : (V.dim, n_anchored)
        incidences : ((n_msg,), (n_msg,)) long
            Source atom ``j`` and anchored hyperedge ``ε`` of every incidence with ``j`` ≠ anchor.
        anchor : (n_anchored,) long
            Anchor atom of every anchored hyperedge.
        sh : (irreps_sh.dim, n_msg)
            ``Y(r̂_ij)`` of every incidence, feature-major.
        basis : (n_msg, n_rbf)
            Radial basis of ``|r_j − r_i|``, item-major.

        Returns
        -------
        x, x_hat : (irreps_out.dim, n_atoms)
        h, h_hat : (V.dim, n_anchored)
        """
        src, eps = incidences
        h = h + self.v2e(h_hat, eps, sh, src=x_hat, src_index=src, basis=basis)
        h = h + self.ffn_hyperedge(self.norm_hyperedge_1(h))
        h_hat = self.norm_hyperedge_2(h)
        x = x + self.e2v(x_hat, anchor, h_hat)
        update = self.ffn_atom(self.norm_atom_1(x))
        x = (self.shortcut.forward_fm(x) if self.shortcut is not None else x) + update
        return x, self.norm_atom_2(x), h, h_hat
