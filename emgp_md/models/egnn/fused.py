"""Fused dense EGNN stack for energy + forces inference (one autograd node, hand-written backward).

The dense path of :class:`emgp_md.models.egnn.EGNN` runs ``L`` layers on ``B`` equal-size, fully
connected molecules of ``n`` atoms. Under plain autograd every elementwise operation on the
``(B, n, n, H)`` edge tensors is recorded and differentiated separately, and for a molecule of
~20 atoms that bookkeeping (plus allocating fresh memory for every intermediate) costs more than
the arithmetic. :class:`FusedDenseEGNN` computes the same function with few tensor operations,
into buffers reused from call to call (:mod:`emgp_md.models.egnn.buffers`), and a hand-written
backward pass that returns only what forces need: the gradients with respect to the positions
(and to the input node features). The weights are constants for it.

Maths (one layer; edge ``ij`` of a molecule, ``i`` receives; ``N = B n n`` edges with ``i = j``):
the EGNN message (Satorras et al. 2021, Eq. 3; ``pre``, ``z``, ``m``), gate, aggregation (Eq. 5;
``a``) and feature update (Eq. 6; ``u``, ``h'``)::

    r_ij   = |x_i - x_j|²
    pre_ij = (W_i h_i + b_1) + W_j h_j + [r_ij, onehot(t_ij)] · W_5    (first edge layer, split)
    s_ij   = silu(pre_ij),     z_ij = W_2 s_ij + b_2,     m_ij = silu(z_ij)
    g_ij   = sigmoid(w_a · m_ij + b_a) · [i != j]                       (attention gate)
    a_i    = Σ_j g_ij m_ij
    u_i    = W_3h h_i + W_3a a_i + b_3,    h'_i = h_i + W_4 silu(u_i) + b_4

Backward from ``δh' = ∂E/∂h'``, with ``silu'(x) = σ(x) (1 + x (1 - σ(x)))`` and
``σ'(x) = σ(x) (1 - σ(x))``::

    δu     = silu'(u) ⊙ (δh' W_4)                δa_i  = δu_i W_3a
    δh     = δh' + δu W_3h
    δg_ij  = m_ij · δa_i                          δℓ_ij = δg_ij g_ij (1 - g_ij)
    δm_ij  = g_ij δa_i + δℓ_ij w_a                δz    = silu'(z) ⊙ δm
    δpre   = silu'(pre) ⊙ (δz W_2)
    δh_i  += (Σ_j δpre_ij) W_i + (Σ_j δpre_ji) W_j
    δr_ij += δpre_ij · w_r                        (w_r: the radial column of W_5)

and at the end, with ``S = δr + δrᵀ``, ``δx_i = 2 Σ_j S_ij (x_i - x_j)``. The mask gives
``g_ii = 0`` and so ``δℓ_ii = 0``: no self-messages in either pass, as in the sparse graph.
The forward keeps ``pre``, ``z``, ``m``, ``g`` and ``u`` for the backward in a pooled workspace.

The backward is first order only: asking for a differentiable gradient (``create_graph=True``,
as a force loss needs) raises a ``RuntimeError`` at once instead of silently returning forces
that carry no graph. The fused path is used by :func:`fused_energy_and_forces` (inference energy
+ forces, through :meth:`~emgp_md.models.egnn.plain.EGNN.fast_energy_and_forces`) and, with
``keep=False``, by forwards without gradients (:func:`fused_forward_allowed`); training keeps
differentiable operations.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emgp_md.data.graph import GraphBatch
from emgp_md.models.egnn.buffers import WORKSPACES, LayerWeights, Lease, Workspace, fused_weights

_silu = torch._C._nn.silu  # accepts out=, unlike nn.functional.silu
_silu_backward_out = torch.ops.aten.silu_backward.grad_input
_sigmoid_backward = torch.ops.aten.sigmoid_backward.default


def check_first_order(name: str) -> None:
    """Raise in a fused backward that runs with ``create_graph=True`` (grad mode is then on)."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{name} has a first-order backward only and cannot be differentiated again (create_graph=True); "
            "compute forces for training with energy_and_forces(..., training=True)"
        )


def fused_forward_allowed() -> bool:
    """Whether a forward without gradients may run fused (``keep=False``, same numbers): gradients
    disabled, and not while ``torch.compile`` traces (the compiled path keeps plain operations)."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def _layer_forward(ws: Workspace, layer: int, w: LayerWeights, h: torch.Tensor) -> torch.Tensor:
    """One layer: (B·n, H) node features in, new features out; activations kept in ``ws``."""
    torch.addmm(w.b_node, h, w.w_node_t, out=ws.node[layer])  # [W_i h + b_1, W_j h, W_3h h + b_3]
    torch.add(ws.node_i4[layer], ws.node_j4[layer], out=ws.pre4[layer])
    s = _silu(ws.pre[layer].addmm_(ws.edge_in, w.w_5t), out=ws.edge_a)  # + [r, onehot(t)] W_5
    m = _silu(torch.addmm(w.b_2, s, w.w_2t, out=ws.z[layer]), out=ws.m[layer])
    if w.w_a is not None:
        torch.addmv(w.b_a, m, w.w_a, out=ws.gate[layer]).sigmoid_()
        ws.gate3[layer].mul_(ws.off_diagonal)
    else:
        ws.gate3[layer].copy_(ws.off_diagonal)
    agg = torch.bmm(ws.gate_row[layer], ws.m3[layer]).view(ws.n_nodes, -1)  # Σ_j g_ij m_ij
    u = torch.addmm(ws.node_u[layer], agg, w.w_3at, out=ws.u[layer])
    return torch.addmm(w.b_4, _silu(u), w.w_4t).add_(h)


def _layer_backward(
    ws: Workspace, layer: int, w: LayerWeights, grad_h: torch.Tensor, grad_r: torch.Tensor, need_grad_h: bool = True
) -> torch.Tensor | None:
    """Backward of :func:`_layer_forward`: adds ∂/∂r into ``grad_r`` (N,) and returns ∂/∂h (B·n, H),
    or None without ``need_grad_h``."""
    grad_u = _silu_backward_out(torch.mm(grad_h, w.w_4, out=ws.grad_u), ws.u[layer], grad_input=ws.grad_u)
    grad_agg = torch.mm(grad_u, w.w_3a).unsqueeze(1)  # (B·n, 1, H)
    grad_m = ws.edge_a
    if w.w_a is not None:
        grad_gate = torch.bmm(ws.m3[layer], grad_agg.transpose(1, 2), out=ws.grad_gate3).view(-1)  # m_ij · δa_i
        grad_logit = _sigmoid_backward(grad_gate, ws.gate[layer])  # 0 where the gate is masked
        torch.mul(ws.gate_col[layer], grad_agg, out=ws.edge_a3)
        grad_m.addmm_(grad_logit.unsqueeze(1), w.w_a_row)
    else:
        torch.mul(ws.gate_col[layer], grad_agg, out=ws.edge_a3)
    grad_s = torch.mm(_silu_backward_out(grad_m, ws.z[layer], grad_input=grad_m), w.w_2, out=ws.edge_b)
    grad_pre = _silu_backward_out(grad_s, ws.pre[layer], grad_input=grad_s)
    grad_r.addmv_(grad_pre, w.w_r)
    if not need_grad_h:
        return None
    torch.sum(ws.edge_b4, dim=2, out=ws.grad_sum_j)
    torch.sum(ws.edge_b4, dim=1, out=ws.grad_sum_i)
    return torch.addmm(grad_h, ws.node_grad, w.w_node)  # δh' + [Σ_j δpre, Σ_i δpre, δu] [W_i; W_j; W_3h]


class FusedDenseEGNN(torch.autograd.Function):
    """All EGNN layers on dense molecules as one autograd node (see the module docstring).

    ``apply(pos, h0, edge_type, weights, keep)``:

    Parameters
    ----------
    pos : (B, n, 3) float, Å
    h0 : (B·n, H) float
        Embedded atom features.
    edge_type : (B, n, n) long
        Hop types 0..n_edge_types-1 (the diagonal is ignored).
    weights : tuple of LayerWeights
        One per layer (:func:`~emgp_md.models.egnn.buffers.fused_weights`).
    keep : bool
        Keep the activations for a backward pass (else the buffers are released at once).

    Returns
    -------
    (B·n, H) node features after the last layer. Gradients flow to ``pos`` and ``h0`` only, and
    the backward cannot itself be differentiated. The activations stay in a pooled workspace until
    the autograd graph is freed.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        pos: torch.Tensor,
        h0: torch.Tensor,
        edge_type: torch.Tensor,
        weights: tuple[LayerWeights, ...],
        keep: bool,
    ) -> torch.Tensor:
        n_graphs, n, _ = pos.shape
        key = (len(weights), n_graphs, n, h0.shape[1], weights[0].w_5t.shape[0] - 1, pos.dtype, pos.device)
        ws = WORKSPACES.acquire(key)
        ws.set_edge_types(edge_type)
        diff = pos.unsqueeze(2) - pos.unsqueeze(1)
        torch.sum(diff * diff, dim=-1, out=ws.radial)  # r_ij, Å², the first column of ws.edge_in
        h = h0
        for layer, w in enumerate(weights):
            h = _layer_forward(ws, layer, w, h)
        if keep:  # the workspace goes back to the pool when the autograd graph is freed
            ctx.weights, ctx.pos, ctx.lease = weights, pos, Lease(key, ws)
        else:
            WORKSPACES.release(key, ws)
        return h

    @staticmethod
    def backward(ctx: Any, grad_h: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None]:
        check_first_order("FusedDenseEGNN")
        if getattr(ctx, "lease", None) is None:
            raise RuntimeError("FusedDenseEGNN ran with keep=False: its activations are gone, no backward possible")
        ws, pos = ctx.lease.workspace, ctx.pos
        grad_r = ws.grad_r.zero_()
        grad = grad_h.contiguous()
        for layer in reversed(range(len(ctx.weights))):  # ∂/∂h0 only when asked for
            grad = _layer_backward(ws, layer, ctx.weights[layer], grad, grad_r, layer > 0 or ctx.needs_input_grad[1])
        grad_pos = None
        if ctx.needs_input_grad[0]:  # δx_i = 2 Σ_j S_ij (x_i - x_j), S = δr + δrᵀ
            grad_r = grad_r.view(pos.shape[0], pos.shape[1], pos.shape[1])
            sym = grad_r + grad_r.transpose(1, 2)
            grad_pos = sym.sum(dim=2, keepdim=True).mul(pos).sub_(torch.bmm(sym, pos)).mul_(2.0)
        return grad_pos, grad, None, None, None


def fused_dense_backbone(
    backbone: nn.Module, z: torch.Tensor, pos: torch.Tensor, edge_type: torch.Tensor
) -> torch.Tensor:
    """Node features of an :class:`~emgp_md.models.egnn.EGNN` on dense molecules, by :class:`FusedDenseEGNN`.

    Parameters
    ----------
    backbone : EGNN
    z : (B·n,) long
        Atomic numbers.
    pos : (B, n, 3) float, Å
    edge_type : (B, n, n) long

    Returns
    -------
    (B·n, H)
    """
    weights = fused_weights(backbone)
    h0 = weights.embedding.index_select(0, z)
    keep = torch.is_grad_enabled() and pos.requires_grad
    return FusedDenseEGNN.apply(pos, h0, edge_type, weights.layers, keep)


class FusedAtomwiseEnergy(torch.autograd.Function):
    """``E_b = Σ_{i in b} (w_2 · silu(W_1 h_i + b_1) + b_2)`` as one autograd node (inference).

    The function of :class:`~emgp_md.models.heads.AtomwiseEnergyHead`.
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


def fused_energy(model: nn.Module, graph: GraphBatch) -> torch.Tensor:
    """Energies (n_graphs,) of an EGNN energy model on a dense batch through the fused kernels.

    The backbone runs as :class:`FusedDenseEGNN`; an atomwise head as :class:`FusedAtomwiseEnergy`
    (other heads as they are). Differentiable (first order) with respect to ``graph.pos`` only.

    Parameters
    ----------
    model : EnergyModel
        With an :class:`~emgp_md.models.egnn.plain.EGNN` backbone.
    graph : GraphBatch
        ``dense_edge_type`` (B, n, n) set; positions (B·n, 3) Å.
    """
    from emgp_md.models.heads import AtomwiseEnergyHead

    n_graphs, n, _ = graph.dense_edge_type.shape
    h = fused_dense_backbone(model.backbone, graph.z, graph.pos.view(n_graphs, n, 3), graph.dense_edge_type)
    head = model.head
    if type(head) is not AtomwiseEnergyHead:
        return model.energy_from_features(h, graph)
    first, last = head.mlp[0], head.mlp[2]
    energy = FusedAtomwiseEnergy.apply(
        h,
        graph.batch,
        graph.n_graphs,
        first.weight.detach(),
        first.bias.detach(),
        last.weight.detach()[0],
        last.bias.detach(),
    )
    return energy * model.energy_scale


def fused_energy_and_forces(model: nn.Module, graph: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies (n_graphs,) and forces ``-∂E/∂pos`` (n_atoms, 3) for inference, by :func:`fused_energy`.

    Both are returned without a graph (first-order kernels: no parameter gradients, no force loss).
    """
    with torch.enable_grad():
        pos = graph.pos.detach().requires_grad_(True)
        energy = fused_energy(model, graph.with_pos(pos))
        (grad,) = torch.autograd.grad(energy.sum(), pos)
    return energy.detach(), -grad
