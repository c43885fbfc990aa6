"""Batching of SE3Set hypergraphs into flat index tensors (torch only, no torch-geometric).

Graph ``b`` of the batch has its atom indices shifted by the number of atoms before it, its
anchored-hyperedge indices by the number of anchored hyperedges before it and its fragment indices
by the number of fragments before it (the authors' ``HyperGraphData.__inc__``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from emgp_md.data.hypergraph import Hypergraph


@dataclass(frozen=True)
class HypergraphBatch:
    """Several hypergraphs as one disconnected hypergraph (all index tensors long).

    Attributes
    ----------
    z : (n_atoms,)
        Atomic numbers.
    batch : (n_atoms,)
        Graph index of each atom.
    e2v_index : (2, n_anchored)
        ``[anchored hyperedge, anchor atom]``, global indices.
    v2e_index : (2, n_incidences)
        ``[source atom, anchored hyperedge]``, global indices.
    anchored_fragment : (n_anchored,)
        Global fragment index of each anchored hyperedge.
    anchored_batch : (n_anchored,)
        Graph index of each anchored hyperedge.
    atom_offset, anchored_offset, fragment_offset : (n_graphs,)
        First global atom, anchored hyperedge and fragment of each graph.
    pos : (n_atoms, 3) float, Å, or None
        Concatenated positions when given to :func:`collate_hypergraphs`.
    """

    z: torch.Tensor
    batch: torch.Tensor
    e2v_index: torch.Tensor
    v2e_index: torch.Tensor
    anchored_fragment: torch.Tensor
    anchored_batch: torch.Tensor
    atom_offset: torch.Tensor
    anchored_offset: torch.Tensor
    fragment_offset: torch.Tensor
    pos: torch.Tensor | None = None

    @property
    def n_graphs(self) -> int:
        return int(self.atom_offset.shape[0])

    def to(self, device: torch.device | str) -> HypergraphBatch:
        """Copy of the batch on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return HypergraphBatch(**{k: (v.to(device) if v is not None else None) for k, v in moved.items()})


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    """Exclusive cumulative sum: ``[0, c0, c0 + c1, ...]`` of shape ``(n_graphs,)``."""
    return torch.cumsum(counts, dim=0) - counts


def collate_hypergraphs(
    hypergraphs: Sequence[Hypergraph],
    positions: Sequence[np.ndarray | torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float32,
) -> HypergraphBatch:
    """Concatenate hypergraphs with index offsets.

    Parameters
    ----------
    hypergraphs : sequence of Hypergraph
    positions : sequence of (n_atoms_b, 3) arrays, Å, optional
        Per-graph coordinates (e.g. the current MD frames), concatenated into ``pos``.
    dtype : torch.dtype
        Floating dtype of ``pos``.
    """
    if not hypergraphs:
        raise ValueError("cannot collate an empty list of hypergraphs")
    if positions is not None and len(positions) != len(hypergraphs):
        raise ValueError(f"got {len(positions)} position arrays for {len(hypergraphs)} hypergraphs")

    def cat(name: str, dim: int = -1) -> torch.Tensor:
        return torch.cat([torch.tensor(getattr(h, name), dtype=torch.long) for h in hypergraphs], dim=dim)

    n_atoms = torch.tensor([h.n_atoms for h in hypergraphs], dtype=torch.long)
    n_anchored = torch.tensor([h.n_anchored for h in hypergraphs], dtype=torch.long)
    n_fragments = torch.tensor([h.n_hyperedges for h in hypergraphs], dtype=torch.long)
    n_incidences = torch.tensor([h.n_incidences for h in hypergraphs], dtype=torch.long)
    graphs = torch.arange(len(hypergraphs))
    atom_off, eps_off, frag_off = _offsets(n_atoms), _offsets(n_anchored), _offsets(n_fragments)
    e2v_shift = torch.stack([eps_off, atom_off]).repeat_interleave(n_anchored, dim=1)
    v2e_shift = torch.stack([atom_off, eps_off]).repeat_interleave(n_incidences, dim=1)
    anchored_batch = graphs.repeat_interleave(n_anchored)
    pos = None
    if positions is not None:
        pos = torch.cat([torch.as_tensor(p, dtype=dtype).reshape(-1, 3) for p in positions])
        if pos.shape[0] != int(n_atoms.sum()):
            raise ValueError(f"positions hold {pos.shape[0]} atoms, the hypergraphs {int(n_atoms.sum())}")
    return HypergraphBatch(
        z=cat("z", 0),
        batch=graphs.repeat_interleave(n_atoms),
        e2v_index=cat("e2v_index") + e2v_shift,
        v2e_index=cat("v2e_index") + v2e_shift,
        anchored_fragment=cat("anchored_fragment", 0) + frag_off[anchored_batch],
        anchored_batch=anchored_batch,
        atom_offset=atom_off,
        anchored_offset=eps_off,
        fragment_offset=frag_off,
        pos=pos,
    )
