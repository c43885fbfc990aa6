"""Fast EGNN fine-tuning step: explicit, differentiable forces on dense molecules.

A force loss needs ``F = -∂E/∂x`` as a differentiable function of the weights. Plain autograd
gets it from ``autograd.grad(..., create_graph=True)``, which records a generic backward of every
operation (broadcast adds and masks, the ``(B, n, n, L·H)`` radial/edge-type table, expanded sums,
zero fills) and then differentiates all of it again. Here the forward of the dense path
(:func:`emgp_md.models.egnn.dense.dense_node_features`) is recorded once, keeping each layer's
activations, and the forces are written out with ordinary differentiable operations on them,
following the backward of :mod:`emgp_md.models.egnn.fused`. ``loss.backward()`` is then one first
order pass through forward + forces ("double backward" without a second autograd sweep).

Forward of one layer (edge ``ij`` of a molecule, ``i`` receives; ``W_i``, ``W_j``, ``w_r``,
``W_t`` are the blocks of the first edge layer over ``[h_i; h_j; r_ij; onehot(t_ij)]``): the EGNN
message (Satorras et al. 2021, Eq. 3), gate, aggregation (Eq. 5) and feature update (Eq. 6)::

    pre_ij = W_i h_i + W_j h_j + [r_ij, onehot(t_ij)] · [w_r; W_t] + b_1
    z_ij = W_2 silu(pre_ij) + b_2,   m_ij = silu(z_ij)
    g_ij = sigmoid(w_a · m_ij + b_a) · [i != j],   a_i = Σ_j g_ij m_ij
    u_i = W_3 [h_i; a_i] + b_3,      h'_i = h_i + W_4 silu(u_i) + b_4

Force backward (``δ = ∂E/∂·``; ``silu_grad(δ, x) = δ ⊙ silu'(x)`` (:class:`SiluGrad`) and
``sigmoid_backward(δ, σ) = δ ⊙ σ(1 - σ)`` are single kernels, differentiable again)::

    δu = silu_grad(δh' W_4, u),   [δh_u; δa] = δu W_3,   δh = δh' + δh_u
    δm_ij = g_ij δa_i + sigmoid_backward(m_ij · δa_i, σ_ij) [i != j] w_a
    δpre = silu_grad(silu_grad(δm, z) W_2, pre)
    δh_i += (Σ_j δpre_ij) W_i + (Σ_j δpre_ji) W_j,   δr_ij += δpre_ij · w_r

and with ``S = δr + δrᵀ``: ``∂E/∂x_i = 2 Σ_j S_ij (x_i - x_j)`` (``r_ij = |x_i - x_j|²``).
The energy head's gradient ``δh_L`` comes from autograd (node-sized, any head).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from emgp_md.data.graph import GraphBatch

log = logging.getLogger(__name__)
_sigmoid_backward = torch.ops.aten.sigmoid_backward.default  # δ ⊙ σ(1 - σ), differentiable in both
_state = threading.local()


@contextlib.contextmanager
def explicit_forces(enabled: bool = True) -> Iterator[None]:
    """Within this block, ``enabled=False`` makes training use plain autograd for the forces
    (``create_graph=True``) even where :func:`dense_energy_and_forces` applies (tests, benchmarks)."""
    previous = getattr(_state, "enabled", True)
    _state.enabled = enabled
    try:
        yield
    finally:
        _state.enabled = previous


class SiluGrad(torch.autograd.Function):
    """``silu_grad(δ, x) = δ ⊙ silu'(x)`` as one kernel, differentiable to any order.

    ``silu'(x) = σ(x) (1 + x (1 - σ(x)))``; its derivative, needed by the force loss, is
    ``silu''(x) = σ(x) (1 - σ(x)) (2 + x (1 - 2σ(x)))``. ATen's ``silu_backward`` kernel has no
    derivative of its own, so this node supplies it. ``δ``, ``x``: same shape (or broadcastable).
    """

    @staticmethod
    def forward(ctx: Any, grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(grad, x)
        return torch.ops.aten.silu_backward(grad, x)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        grad, x = ctx.saved_tensors
        d_grad = silu_grad(grad_out, x) if ctx.needs_input_grad[0] else None
        d_x = None
        if ctx.needs_input_grad[1]:
            sig = torch.sigmoid(x)
            if torch.is_grad_enabled():  # differentiable again (create_graph=True)
                d_x = grad_out * grad * sig * (1 - sig) * (2 + x * (1 - 2 * sig))
            else:  # the usual case, loss.backward(): few passes, in place
                d_x = torch.ops.aten.sigmoid_backward(grad_out * grad, sig)  # δ_out δ σ(1 - σ)
                d_x.mul_(sig.mul_(-2.0).add_(1.0).mul_(x).add_(2.0))  # ⊙ (2 + x (1 - 2σ))
        return d_grad, d_x


def silu_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``grad ⊙ silu'(x)``, differentiable (:class:`SiluGrad`)."""
    return SiluGrad.apply(grad, x)


@dataclass
class LayerCache:
    """Activations of one dense layer kept for the force pass (``E = B·n·n`` edges).

    Attributes
    ----------
    pre, z, m : (B, n, n, H)
        First edge-layer output, second edge-layer output, message.
    sig : (B, n, n, 1) or None
        Unmasked attention gate ``σ(w_a · m + b_a)``; None without attention.
    gate : (B, n, n, 1)
        Gate with the diagonal masked.
    u : (B, n, H)
        Node-MLP hidden pre-activation.
    """

    pre: torch.Tensor
    z: torch.Tensor
    m: torch.Tensor
    sig: torch.Tensor | None
    gate: torch.Tensor
    u: torch.Tensor


def explicit_forces_apply(model: nn.Module, graph: GraphBatch) -> bool:
    """Whether :func:`dense_energy_and_forces` computes this model on this batch: not switched off
    by :func:`explicit_forces`, an
    :class:`~emgp_md.models.energy_model.EnergyModel` with an EGNN backbone (no coordinate
    update), a batch of equal-size, fully connected molecules (``graph.dense_edge_type``)."""
    from emgp_md.models.egnn.plain import EGNN
    from emgp_md.models.energy_model import EnergyModel

    return (
        getattr(_state, "enabled", True)
        and isinstance(model, EnergyModel)
        and type(model.backbone) is EGNN
        and graph.dense_edge_type is not None
        and graph.pos.shape[0] == graph.dense_edge_type.numel() // graph.dense_edge_type.shape[-1]
    )


def _layer_forward(
    layer: nn.Module, h: torch.Tensor, pair_in: torch.Tensor, off_diagonal: torch.Tensor
) -> tuple[torch.Tensor, LayerCache]:
    """One EGCL on dense molecules. ``h``: (B, n, H); ``pair_in``: (B, n, n, 1 + n_types) =
    ``[r_ij Å², onehot(t_ij)]``; ``off_diagonal``: (n, n, 1). Returns h' (B, n, H) and the cache."""
    hid = layer.hidden_nf
    first = layer.edge_mlp[0]
    w = first.weight
    node = F.linear(h, torch.cat([w[:, :hid], w[:, hid : 2 * hid]]))  # (B, n, 2H): [W_i h, W_j h]
    pre = (
        F.linear(pair_in, w[:, 2 * hid :], first.bias)
        .add_(node[..., :hid].unsqueeze(2))
        .add_(node[..., hid:].unsqueeze(1))
    )
    z = layer.edge_mlp[2](F.silu(pre))
    m = F.silu(z)
    sig = None
    if layer.attention:
        sig = torch.sigmoid(layer.att_mlp[0](m))  # (B, n, n, 1)
        gate = sig * off_diagonal
    else:
        gate = off_diagonal.expand(*m.shape[:3], 1)
    b, n = h.shape[:2]
    agg = torch.bmm(gate.reshape(b * n, 1, n), m.reshape(b * n, n, hid)).view(b, n, hid)  # Σ_j g_ij m_ij
    u = layer.node_mlp[0](torch.cat([h, agg], dim=-1))
    h_new = h + layer.node_mlp[2](F.silu(u))
    return h_new, LayerCache(pre, z, m, sig, gate, u)


def _layer_force_backward(
    layer: nn.Module, cache: LayerCache, grad_h: torch.Tensor, off_diagonal: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Force pass of one layer: ``grad_h`` = ∂E/∂h' (B, n, H) in; returns ∂E/∂h (B, n, H) and
    this layer's ∂E/∂r (B, n, n), both as differentiable functions of the weights."""
    hid = layer.hidden_nf
    b, n = grad_h.shape[:2]
    grad_u = silu_grad(grad_h @ layer.node_mlp[2].weight, cache.u)
    grad_cat = grad_u @ layer.node_mlp[0].weight  # (B, n, 2H)
    grad_agg = grad_cat[..., hid:]
    if cache.sig is None:
        grad_m = cache.gate * grad_agg.unsqueeze(2)  # g_ij δa_i
    else:  # g_ij δa_i + δℓ_ij w_a as one batched product [g, δℓ]_ij [δa_i; w_a]
        grad_agg = grad_agg.reshape(b * n, 1, hid)
        grad_gate = torch.bmm(cache.m.reshape(b * n, n, hid), grad_agg.transpose(1, 2))  # m_ij · δa_i
        grad_logit = _sigmoid_backward(grad_gate.view(b, n, n, 1) * off_diagonal, cache.sig)
        coef = torch.cat([cache.gate, grad_logit], dim=-1).view(b * n, n, 2)
        rows = torch.cat([grad_agg, layer.att_mlp[0].weight.expand(b * n, 1, hid)], dim=1)  # (B·n, 2, H)
        grad_m = torch.bmm(coef, rows).view(b, n, n, hid)
    grad_s = silu_grad(grad_m, cache.z) @ layer.edge_mlp[2].weight
    grad_pre = silu_grad(grad_s, cache.pre)  # (B, n, n, H)
    w = layer.edge_mlp[0].weight
    grad_r = grad_pre @ w[:, 2 * hid]  # (B, n, n)
    grad_h_in = (
        grad_h + grad_cat[..., :hid] + grad_pre.sum(dim=2) @ w[:, :hid] + grad_pre.sum(dim=1) @ w[:, hid : 2 * hid]
    )
    return grad_h_in, grad_r


def dense_energy_and_forces(model: nn.Module, graph: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies and forces of an EGNN energy model with the forces' graph kept (training).

    Same numbers as ``energy_and_forces(model, graph, training=True)`` by autograd; check
    :func:`explicit_forces_apply` first.

    Parameters
    ----------
    model : EnergyModel
        With an :class:`~emgp_md.models.egnn.EGNN` backbone.
    graph : GraphBatch
        ``B`` molecules of ``n`` atoms each, atoms ordered molecule by molecule, positions Å,
        ``dense_edge_type`` (B, n, n).

    Returns
    -------
    energy : (B,) model energy unit, without the constant shift
    forces : (B·n, 3) model energy unit per Å
    """
    egnn = model.backbone
    types = graph.dense_edge_type
    n_graphs, n, _ = types.shape
    pos = graph.pos.view(n_graphs, n, 3)  # forces stay differentiable in pos too (Hessian tests)
    diff = pos.unsqueeze(2) - pos.unsqueeze(1)  # x_i - x_j, Å
    radial = (diff * diff).sum(dim=-1, keepdim=True)
    n_types = egnn.gcl_0.edge_mlp[0].in_features - 2 * egnn.hidden_nf - 1
    pair_in = torch.cat([radial, F.one_hot(types, n_types).to(pos.dtype)], dim=-1)  # (B, n, n, 1 + n_types)
    off_diagonal = (1 - torch.eye(n, dtype=pos.dtype, device=pos.device)).unsqueeze(-1)
    h = egnn.embedding_in(egnn.features.to(pos.dtype).index_select(0, graph.z)).view(n_graphs, n, -1)
    layers, caches = egnn.layers(), []
    for layer in layers:
        h, cache = _layer_forward(layer, h, pair_in, off_diagonal)
        caches.append(cache)
    h_last = h.reshape(n_graphs * n, -1)
    energy = model.energy_from_features(h_last, graph)
    (grad_h,) = torch.autograd.grad(energy.sum(), h_last, create_graph=True)  # node-sized head backward
    grad_h, grad_r = grad_h.view(n_graphs, n, -1), torch.zeros_like(radial[..., 0])
    for layer, cache in zip(reversed(layers), reversed(caches)):
        grad_h, grad_r_layer = _layer_force_backward(layer, cache, grad_h, off_diagonal)
        grad_r = grad_r + grad_r_layer
    sym = grad_r + grad_r.transpose(1, 2)  # S = δr + δrᵀ
    grad_pos = 2.0 * (sym.sum(dim=2, keepdim=True) * pos - torch.bmm(sym, pos))  # 2 Σ_j S_ij (x_i - x_j)
    return energy, -grad_pos.reshape(n_graphs * n, 3)
