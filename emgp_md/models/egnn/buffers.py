"""Weights and buffers of the fused EGNN kernels (:mod:`emgp_md.models.egnn.fused`), kept between calls.

- :class:`LayerWeights` / :class:`FusedWeights`: the parameters split, concatenated and
  transposed the way the fused layers multiply with them, and the embedded atom-feature table.
  Built once and cached (:func:`fused_weights`; rebuilt when a parameter changes: new storage,
  dtype or device, an in-place update such as an optimiser step, or a new parameter/module).
- :class:`Workspace`: the activation and scratch buffers of one forward/backward pass. Reusing them
  instead of allocating fresh memory for every intermediate avoids the page faults and cache
  misses that otherwise cost as much as the arithmetic for a small molecule. A pool hands each
  pass its own workspace, so concurrent passes never share buffers.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerWeights:
    """Detached weights of one :class:`~emgp_md.models.egnn.plain.EGCL`, H = hidden width.

    Attributes
    ----------
    w_node, w_node_t : (3H, H) and its transpose
        ``[W_i; W_j; W_3h]``: receiver and sender blocks of the first edge layer and node-feature
        block of the first node layer, one matrix product for all three (forward and backward).
    b_node : (3H,)
        ``[b_1, 0, b_3]``.
    w_i, w_j : (H, H)
        The first two blocks again, for the backward.
    w_5t : (1 + n_edge_types, H)
        Radial row then one row per edge type of the first edge layer; ``w_r`` is its first row.
    w_2, w_2t : (H, H) and its transpose; ``b_2`` : (H,)
        Second edge layer.
    w_a, w_a_row : (H,) and (1, H), ``b_a`` : (1,); all None without attention
        Attention gate.
    w_3h, w_3a, w_3at : (H, H)
        Blocks of the first node layer (``w_3at`` transposed).
    w_4, w_4t : (H, H), ``b_4`` : (H,)
        Second node layer.
    """

    w_node: torch.Tensor
    w_node_t: torch.Tensor
    b_node: torch.Tensor
    w_i: torch.Tensor
    w_j: torch.Tensor
    w_5t: torch.Tensor
    w_r: torch.Tensor
    w_2: torch.Tensor
    w_2t: torch.Tensor
    b_2: torch.Tensor
    w_a: torch.Tensor | None
    w_a_row: torch.Tensor | None
    b_a: torch.Tensor | None
    w_3h: torch.Tensor
    w_3a: torch.Tensor
    w_3at: torch.Tensor
    w_4: torch.Tensor
    w_4t: torch.Tensor
    b_4: torch.Tensor

    @classmethod
    def of(cls, layer: nn.Module) -> LayerWeights:
        """Split the parameters of an ``EGCL`` (detached; views except the concatenated ones)."""
        hid = layer.hidden_nf
        first, second = layer.edge_mlp[0], layer.edge_mlp[2]
        node1, node2 = layer.node_mlp[0], layer.node_mlp[2]
        w1, w3 = first.weight.detach(), node1.weight.detach()
        w_i, w_j, w_3h = w1[:, :hid], w1[:, hid : 2 * hid], w3[:, :hid]
        b_node = torch.cat([first.bias.detach(), torch.zeros_like(first.bias.detach()), node1.bias.detach()])
        w_a = layer.att_mlp[0].weight.detach()[0] if layer.attention else None
        w_5t = w1[:, 2 * hid :].t()
        w_node = torch.cat([w_i, w_j, w_3h])
        return cls(
            w_node=w_node,
            w_node_t=w_node.t(),
            b_node=b_node,
            w_i=w_i,
            w_j=w_j,
            w_5t=w_5t,
            w_r=w_5t[0],
            w_2=second.weight.detach(),
            w_2t=second.weight.detach().t(),
            b_2=second.bias.detach(),
            w_a=w_a,
            w_a_row=None if w_a is None else w_a.unsqueeze(0),
            b_a=layer.att_mlp[0].bias.detach() if layer.attention else None,
            w_3h=w_3h,
            w_3a=w3[:, hid:],
            w_3at=w3[:, hid:].t(),
            w_4=node2.weight.detach(),
            w_4t=node2.weight.detach().t(),
            b_4=node2.bias.detach(),
        )


@dataclass(frozen=True)
class FusedWeights:
    """Everything the fused kernels read from an :class:`~emgp_md.models.egnn.EGNN`.

    Attributes
    ----------
    embedding : (n_element_slots, H)
        ``embedding_in`` applied to the whole atom-feature table: row ``z`` is the input feature
        vector of element ``z`` (detached).
    layers : tuple of LayerWeights
        One per EGCL layer.
    """

    embedding: torch.Tensor
    layers: tuple[LayerWeights, ...]

    @classmethod
    def of(cls, backbone: nn.Module) -> FusedWeights:
        with torch.no_grad():
            weight = backbone.embedding_in.weight
            embedding = backbone.embedding_in(backbone.features.to(dtype=weight.dtype, device=weight.device))
        return cls(embedding, tuple(LayerWeights.of(layer) for layer in backbone.layers()))


@dataclass
class _CacheEntry:
    modules: list[nn.Module]  # kept alive (with the tensors), so their ids and addresses cannot be reused
    registries: list[dict]
    structure: list[int]
    tensors: list[torch.Tensor]
    state: list[tuple[int, int, int]]
    weights: FusedWeights


_weights_cache: weakref.WeakKeyDictionary[nn.Module, _CacheEntry] = weakref.WeakKeyDictionary()


def _registries(modules: list[nn.Module]) -> list[dict]:
    """The parameter, buffer and child dictionaries of each module."""
    return [d for m in modules for d in (m._parameters, m._buffers, m._modules)]


def _structure(registries: list[dict]) -> list[int]:
    """Ids of every registered parameter, buffer and child (None included), in order."""
    return [id(v) for d in registries for v in d.values()]


def _state(tensors: list[torch.Tensor]) -> list[tuple[int, int, int]]:
    return [(id(t), t._version, t.data_ptr()) for t in tensors]


def fused_weights(backbone: nn.Module) -> FusedWeights:
    """:class:`FusedWeights` of an EGNN, cached until a parameter or buffer may have changed.

    A cached entry is used while every module of the backbone holds the same parameter, buffer
    and child objects (a replaced ``Parameter`` or ``Linear`` is a new object), each tensor with
    the same version counter (bumped by every in-place update: optimiser steps,
    ``load_state_dict``) and storage address (changed by ``.to(...)`` and ``.data = ...``; the
    entry keeps the old modules and tensors alive, so neither ids nor addresses can be reused
    meanwhile). The check walks the cached module list instead of ``parameters()`` (whose
    recursive traversal costs several times more than the check itself, at every call). In-place
    writes through ``.data`` bypass the version counter: call :func:`clear_caches` after them.
    """
    entry = _weights_cache.get(backbone)
    try:
        if (
            entry is not None
            and _structure(entry.registries) == entry.structure
            and _state(entry.tensors) == entry.state
        ):
            return entry.weights
        tensors = [*backbone.parameters(), *backbone.buffers()]
        state = _state(tensors)
    except RuntimeError:  # inference tensors (made in inference mode) have no version counter
        return FusedWeights.of(backbone)
    modules = list(backbone.modules())
    registries = _registries(modules)
    with torch.inference_mode(False):
        weights = FusedWeights.of(backbone)
    _weights_cache[backbone] = _CacheEntry(modules, registries, _structure(registries), tensors, state, weights)
    return weights


def clear_caches() -> None:
    """Forget all cached weights and pooled workspaces."""
    _weights_cache.clear()
    WORKSPACES.clear()


class Workspace:
    """Buffers of one fused forward/backward pass: L layers, B molecules of n atoms, width H.

    Per-layer buffers are lists of L tensors (views of one allocation each); N = B·n·n edges.

    Attributes
    ----------
    node : (B·n, 3H) per layer
        ``[W_i h + b_1, W_j h, W_3h h + b_3]``; ``node_i4`` (B, n, 1, H), ``node_j4`` (B, 1, n, H)
        and ``node_u`` (B·n, H) are views of its blocks.
    pre, z, m : (N, H) per layer
        First edge-layer pre-activations (view ``pre4``: (B, n, n, H)), second edge-layer
        pre-activations and messages (view ``m3``: (B·n, n, H)).
    gate : (N,) per layer
        Attention gates, zero on the diagonal; views ``gate3`` (B, n, n), ``gate_row`` (B·n, 1, n),
        ``gate_col`` (B·n, n, 1).
    u : (B·n, H) per layer
        First node-layer pre-activations.
    edge_a, edge_b : (N, H)
        Scratch, with views ``edge_a3`` (B·n, n, H) and ``edge_b4`` (B, n, n, H).
    node_grad : (B·n, 3H)
        Backward scratch ``[Σ_j δpre_ij, Σ_j δpre_ji, δu]`` (views ``grad_sum_j``, ``grad_sum_i``, ``grad_u``).
    grad_r : (N,)
        ∂E/∂r_ij.
    grad_gate3 : (B·n, n, 1)
        Backward scratch ∂E/∂g_ij.
    edge_in : (N, 1 + n_edge_types)
        ``[r_ij, onehot(t_ij)]``; ``radial`` is its first column as (B, n, n).
    off_diagonal : (n, n)
        ``1 - I``.
    """

    def __init__(
        self, n_layers: int, n_graphs: int, n: int, hid: int, n_types: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.n_graphs, self.n, self.n_nodes = n_graphs, n, n_graphs * n
        n_edges = n_graphs * n * n
        kw = {"dtype": dtype, "device": device}
        self._bases: list[torch.Tensor] = []

        def buffer(*shape: int) -> torch.Tensor:
            self._bases.append(torch.empty(*shape, **kw))
            return self._bases[-1]

        self.node = list(buffer(n_layers, self.n_nodes, 3 * hid))
        self.node_i4 = [x[:, :hid].view(n_graphs, n, 1, hid) for x in self.node]
        self.node_j4 = [x[:, hid : 2 * hid].view(n_graphs, 1, n, hid) for x in self.node]
        self.node_u = [x[:, 2 * hid :] for x in self.node]
        self.pre = list(buffer(n_layers, n_edges, hid))
        self.pre4 = [x.view(n_graphs, n, n, hid) for x in self.pre]
        self.z = list(buffer(n_layers, n_edges, hid))
        self.m = list(buffer(n_layers, n_edges, hid))
        self.m3 = [x.view(self.n_nodes, n, hid) for x in self.m]
        self.gate = list(buffer(n_layers, n_edges))
        self.gate3 = [g.view(n_graphs, n, n) for g in self.gate]
        self.gate_row = [g.view(self.n_nodes, 1, n) for g in self.gate]
        self.gate_col = [g.view(self.n_nodes, n, 1) for g in self.gate]
        self.u = list(buffer(n_layers, self.n_nodes, hid))
        self.edge_a, self.edge_b = buffer(n_edges, hid), buffer(n_edges, hid)
        self.edge_a3 = self.edge_a.view(self.n_nodes, n, hid)
        self.edge_b4 = self.edge_b.view(n_graphs, n, n, hid)
        self.node_grad = buffer(self.n_nodes, 3 * hid)
        self.grad_sum_j = self.node_grad[:, :hid].view(n_graphs, n, hid)
        self.grad_sum_i = self.node_grad[:, hid : 2 * hid].view(n_graphs, n, hid)
        self.grad_u = self.node_grad[:, 2 * hid :]
        self.grad_r = buffer(n_edges)
        self.grad_gate3 = buffer(self.n_nodes, n, 1)
        self.off_diagonal = 1 - torch.eye(n, **kw)
        self.edge_in = torch.zeros(n_edges, 1 + n_types, **kw)
        self.radial = self.edge_in[:, 0].view(n_graphs, n, n)
        self._types: torch.Tensor | None = None
        self._types_version = -1

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._bases)

    def set_edge_types(self, edge_type: torch.Tensor) -> None:
        """Write ``onehot(edge_type)`` into ``edge_in`` unless ``edge_type`` (B, n, n) is the tensor of
        the previous call (same object, same version counter)."""
        version = -2 if edge_type.is_inference() else edge_type._version  # inference tensors have none
        if self._types is not edge_type or self._types_version != version or version == -2:
            self.edge_in[:, 1:].zero_().scatter_(1, edge_type.reshape(-1, 1), 1.0)
            self._types, self._types_version = edge_type, version


class WorkspacePool:
    """Free workspaces by size ``(L, B, n, H, n_edge_types, dtype, device)``; thread-safe.

    Keeps at most one free workspace per size, for at most ``max_keys`` sizes (the least recently
    used dropped), and none larger than ``max_bytes``. :meth:`release` only appends to a queue
    (atomic, takes no lock), so it is safe from a finalizer that runs at any point, even inside
    :meth:`acquire`; the queue is sorted into the pool under the lock by :meth:`acquire`.
    """

    def __init__(self, max_keys: int = 4, max_bytes: int = 256 * 2**20) -> None:
        self.max_keys, self.max_bytes = max_keys, max_bytes
        self._free: OrderedDict[tuple, Workspace] = OrderedDict()
        self._returned: deque[tuple[tuple, Workspace]] = deque()
        self._lock = threading.Lock()

    def _sort_returned(self) -> None:
        """Move released workspaces into the pool (caller holds the lock)."""
        while self._returned:
            key, ws = self._returned.popleft()
            if ws.nbytes > self.max_bytes:
                continue
            self._free[key] = ws
            self._free.move_to_end(key)
            while len(self._free) > self.max_keys:
                self._free.popitem(last=False)

    def acquire(self, key: tuple) -> Workspace:
        """A free workspace of this size, or a new one; the caller owns it until :meth:`release`."""
        with self._lock:
            self._sort_returned()
            ws = self._free.pop(key, None)
        if ws is None:
            with torch.inference_mode(False):  # normal tensors, usable in and out of inference mode
                ws = Workspace(*key)
        return ws

    def release(self, key: tuple, ws: Workspace) -> None:
        """Give a workspace back (it may be handed out again at once)."""
        self._returned.append((key, ws))

    def free_sizes(self) -> list[tuple]:
        """Sizes of the pooled free workspaces, least recently used first."""
        with self._lock:
            self._sort_returned()
            return list(self._free)

    def clear(self) -> None:
        """Free all pooled memory."""
        with self._lock:
            self._returned.clear()
            self._free.clear()


WORKSPACES = WorkspacePool()


class Lease:
    """Holds a workspace for an autograd graph; gives it back to the pool when garbage-collected
    (with the graph), so activations are never overwritten while a backward pass may still read them."""

    def __init__(self, key: tuple, workspace: Workspace) -> None:
        self.key, self.workspace = key, workspace

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: the pool may be gone already
            WORKSPACES.release(self.key, self.workspace)
