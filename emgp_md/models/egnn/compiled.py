"""Compiled EGNN fine-tuning step: the explicit forces of :mod:`~emgp_md.models.egnn.train` as one
``torch.compile`` graph (issue #16 item 3).

:func:`energy_forces_dense` is the whole of an EGNN energy model with the atomwise head, energies
*and* forces, written with plain differentiable operations only: the layers' forward (Satorras et
al. 2021, Eqs. 3, 5, 6 with the attention gate), the head's gradient in closed form and the
explicit force pass of :mod:`~emgp_md.models.egnn.train` (same equations, its docstring derives
them). With no ``autograd.grad`` inside, the force loss needs only a first-order backward, so
inductor can compile forward, force pass and their backward as one graph and fuse the elementwise
work on the ``(B, n, n, H)`` edge tensors (SiLU, its first and second derivatives, gates), which is
about half of an eager step on a CPU.

Opt in with :func:`compiled_forces` (fine-tuning: ``FinetuneConfig.compile``). The first step of
each batch shape and dtype compiles (1–2 min on a 2-core CPU, cached on disk afterwards); a
failure to compile (no C++ compiler, an inductor error) is logged once and the eager explicit path
runs instead, with the same numbers.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from emgp_md.data.graph import GraphBatch

log = logging.getLogger(__name__)
_state = threading.local()
_compiled: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {}
_failed: set[str] = set()
MODES = ("default", "max-autotune-no-cudagraphs")


@contextlib.contextmanager
def compiled_forces(enabled: bool = True, mode: str = "default") -> Iterator[None]:
    """Within this block, training steps of EGNN energy models with the atomwise head go through
    the compiled :func:`energy_forces_dense` where :func:`compiled_forces_apply`; ``mode`` is
    ``torch.compile``'s (one of :data:`MODES`)."""
    if mode not in MODES:
        raise ValueError(f"compile mode {mode!r} is not one of {MODES}")
    previous = getattr(_state, "mode", None)
    _state.mode = mode if enabled else None
    try:
        yield
    finally:
        _state.mode = previous


def silu_prime_times(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``grad ⊙ silu'(x)`` with ``silu'(x) = σ(x) (1 + x (1 - σ(x)))``, from plain operations
    (differentiable by autograd and fusable by inductor)."""
    sig = torch.sigmoid(x)
    return grad * (sig * (1 + x * (1 - sig)))


def energy_forces_dense(
    pos: torch.Tensor,
    types: torch.Tensor,
    h: torch.Tensor,
    n_types: int,
    layers: list[tuple[torch.Tensor, ...]],
    head: tuple[torch.Tensor, ...],
    scale: float,
    attention: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies and forces of an EGNN + atomwise-head energy model on dense molecules.

    Parameters
    ----------
    pos : (B, n, 3) Å
    types : (B, n, n) long, edge (hop) types
    h : (B, n, H) embedded node features (``embedding_in`` of the element features)
    n_types : number of edge types (width of the one-hot)
    layers : per layer ``(W_1, b_1, W_2, b_2, w_a, b_a, W_3, b_3, W_4, b_4)``: the two edge-MLP
        layers, the attention gate (``None`` pair without attention), the two node-MLP layers
    head : ``(W_1, b_1, W_2, b_2)`` of the atomwise head ``E = Σ_i W_2 silu(W_1 h_i + b_1) + b_2``
    scale : energy scale the head's output is multiplied by
    attention : whether the layers gate their messages

    Returns
    -------
    energy : (B,) model energy unit, without the constant shift
    forces : (B, n, 3) model energy unit per Å
    """
    n_graphs, n, hid = h.shape
    diff = pos.unsqueeze(2) - pos.unsqueeze(1)  # x_i - x_j
    radial = (diff * diff).sum(dim=-1, keepdim=True)  # r_ij = |x_i - x_j|², Å²
    pair_in = torch.cat([radial, F.one_hot(types, n_types).to(pos.dtype)], dim=-1)
    off_diagonal = (1 - torch.eye(n, dtype=pos.dtype, device=pos.device)).unsqueeze(-1)
    caches = []
    for w1, b1, w2, b2, wa, ba, w3, b3, w4, b4 in layers:  # EGNN Eqs. 3, 5, 6
        node = F.linear(h, torch.cat([w1[:, :hid], w1[:, hid : 2 * hid]]))
        pre = F.linear(pair_in, w1[:, 2 * hid :], b1) + node[..., :hid].unsqueeze(2) + node[..., hid:].unsqueeze(1)
        z = F.linear(F.silu(pre), w2, b2)
        m = F.silu(z)
        sig = torch.sigmoid(F.linear(m, wa, ba)) if attention else None
        gate = sig * off_diagonal if sig is not None else off_diagonal.expand(n_graphs, n, n, 1)
        agg = torch.bmm(gate.reshape(n_graphs * n, 1, n), m.reshape(n_graphs * n, n, hid)).view(n_graphs, n, hid)
        u = F.linear(torch.cat([h, agg], dim=-1), w3, b3)
        caches.append((pre, z, m, sig, gate, u))
        h = h + F.linear(F.silu(u), w4, b4)
    hw1, hb1, hw2, hb2 = head
    u_head = F.linear(h, hw1, hb1)
    energy = F.linear(F.silu(u_head), hw2, hb2).sum(dim=(1, 2)) * scale
    grad_h = silu_prime_times(hw2.expand_as(u_head) * scale, u_head) @ hw1  # ∂E/∂h_L
    grad_r = torch.zeros_like(radial[..., 0])
    for (w1, _, w2, _, wa, _, w3, _, w4, _), (pre, z, m, sig, gate, u) in zip(reversed(layers), reversed(caches)):
        grad_u = silu_prime_times(grad_h @ w4, u)
        grad_cat = grad_u @ w3
        grad_agg = grad_cat[..., hid:]
        grad_m = gate * grad_agg.unsqueeze(2)  # g_ij δa_i
        if sig is not None:  # + σ'(·) (m_ij · δa_i) w_a off the diagonal
            flat = grad_agg.reshape(n_graphs * n, hid, 1)
            grad_gate = torch.bmm(m.reshape(n_graphs * n, n, hid), flat).view(n_graphs, n, n, 1)
            grad_m = grad_m + (grad_gate * off_diagonal * sig * (1 - sig)) * wa
        grad_pre = silu_prime_times(silu_prime_times(grad_m, z) @ w2, pre)
        grad_r = grad_r + grad_pre @ w1[:, 2 * hid]
        grad_h = (
            grad_h
            + grad_cat[..., :hid]
            + grad_pre.sum(dim=2) @ w1[:, :hid]
            + grad_pre.sum(dim=1) @ w1[:, hid : 2 * hid]
        )
    sym = grad_r + grad_r.transpose(1, 2)
    grad_pos = 2.0 * (sym.sum(dim=2, keepdim=True) * pos - torch.bmm(sym, pos))  # 2 Σ_j S_ij (x_i - x_j)
    return energy, -grad_pos


def compile_failed(mode: str = "default") -> bool:
    """Whether compiling the training step in ``mode`` failed in this process (steps then run eager)."""
    return mode in _failed


def compiled_forces_apply(model: nn.Module, graph: GraphBatch) -> bool:
    """Whether a training step of ``model`` on ``graph`` goes through the compiled path: inside
    :func:`compiled_forces`, where the explicit forces apply
    (:func:`~emgp_md.models.egnn.train.explicit_forces_apply`), with the atomwise head, and unless
    compiling failed before in this process."""
    from emgp_md.models.egnn.train import explicit_forces_apply
    from emgp_md.models.heads import AtomwiseEnergyHead

    mode = getattr(_state, "mode", None)
    return (
        mode is not None
        and mode not in _failed
        and explicit_forces_apply(model, graph)
        and isinstance(getattr(model, "head", None), AtomwiseEnergyHead)
    )


def _weights(model: nn.Module) -> tuple[list[tuple[Any, ...]], tuple[torch.Tensor, ...]]:
    layers = []
    for layer in model.backbone.layers():
        gate = (layer.att_mlp[0].weight, layer.att_mlp[0].bias) if layer.attention else (None, None)
        layers.append(
            (
                layer.edge_mlp[0].weight,
                layer.edge_mlp[0].bias,
                layer.edge_mlp[2].weight,
                layer.edge_mlp[2].bias,
                *gate,
                layer.node_mlp[0].weight,
                layer.node_mlp[0].bias,
                layer.node_mlp[2].weight,
                layer.node_mlp[2].bias,
            )
        )
    mlp = model.head.mlp
    return layers, (mlp[0].weight, mlp[0].bias, mlp[2].weight, mlp[2].bias)


def compiled_energy_and_forces(model: nn.Module, graph: GraphBatch) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Energies (B,) and forces (B·n, 3) with the forces' graph kept, by the compiled
    :func:`energy_forces_dense`; None when compiling fails (logged once; the caller falls back)."""
    mode = _state.mode
    egnn = model.backbone
    types = graph.dense_edge_type
    n_graphs, n, _ = types.shape
    pos = graph.pos.view(n_graphs, n, 3)
    h = egnn.embedding_in(egnn.features.to(pos.dtype).index_select(0, graph.z)).view(n_graphs, n, -1)
    n_types = egnn.gcl_0.edge_mlp[0].in_features - 2 * egnn.hidden_nf - 1
    layers, head = _weights(model)
    attention = bool(egnn.gcl_0.attention)
    if mode not in _compiled:
        _compiled[mode] = torch.compile(energy_forces_dense, dynamic=False, mode=mode)
    try:
        energy, forces = _compiled[mode](pos, types, h, n_types, layers, head, float(model.energy_scale), attention)
    except Exception as exc:  # noqa: BLE001 - inductor needs a C++ toolchain; on any failure the eager path, same numbers
        _failed.add(mode)
        log.warning(
            "torch.compile of the training step failed (%s: %s); using the eager explicit forces",
            type(exc).__name__,
            exc,
        )
        return None
    return energy, forces.reshape(n_graphs * n, 3)
