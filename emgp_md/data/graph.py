"""Batched molecular graphs with index offsets (no torch-geometric).

A :class:`GraphBatch` holds one or many molecules as flat tensors. Edges of molecule ``k`` are
offset by the number of atoms of the molecules before it, so torch's ``index_select`` and
``index_add_`` do all message passing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from emgp_md.data.topology import Topology

if TYPE_CHECKING:
    from emgp_md.data.hypergraph_batch import HypergraphBatch


@dataclass
class GraphBatch:
    """Flat batch of molecules.

    Attributes
    ----------
    z : (n_atoms,) long
        Atomic numbers.
    pos : (n_atoms, 3) float, Å
        Positions.
    edge_index : (2, n_edges) long
        Receiver (row 0) and sender (row 1) of each directed edge, already offset.
    edge_type : (n_edges,) long
        Hop category 0..3.
    batch : (n_atoms,) long
        Molecule index of each atom.
    n_graphs : int
        Number of molecules.
    dense_edge_type : (n_graphs, n, n) long, optional
        Hop types as a matrix per molecule, present when every molecule has the same number of
        atoms ``n`` and is fully connected (a molecule's frames, a single molecule). Backbones
        may then use dense (n × n) message passing, which gives the same numbers faster.
    hypergraph : HypergraphBatch, optional
        Collated SE3Set hypergraphs (index tensors with offsets, no positions), present when every
        topology of the batch carries a hypergraph.
    """

    z: torch.Tensor
    pos: torch.Tensor
    edge_index: torch.Tensor
    edge_type: torch.Tensor
    batch: torch.Tensor
    n_graphs: int
    dense_edge_type: torch.Tensor | None = None
    hypergraph: HypergraphBatch | None = None

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> GraphBatch:
        """Move to a device; ``dtype`` applies to the positions only."""
        return replace(
            self,
            z=self.z.to(device),
            pos=self.pos.to(device=device, dtype=dtype or self.pos.dtype),
            edge_index=self.edge_index.to(device),
            edge_type=self.edge_type.to(device),
            batch=self.batch.to(device),
            dense_edge_type=None if self.dense_edge_type is None else self.dense_edge_type.to(device),
            hypergraph=None if self.hypergraph is None else self.hypergraph.to(device),
        )

    def with_pos(self, pos: torch.Tensor) -> GraphBatch:
        """Same graph with new positions (topology frozen)."""
        if pos.shape != self.pos.shape:
            raise ValueError(f"positions of shape {tuple(pos.shape)} do not fit a graph of {tuple(self.pos.shape)}")
        return replace(self, pos=pos)

    @property
    def n_atoms_per_graph(self) -> torch.Tensor:
        """(n_graphs,) long."""
        return torch.bincount(self.batch, minlength=self.n_graphs)


def collate(
    topologies: Sequence[Topology],
    positions: Sequence[np.ndarray | torch.Tensor],
    dtype: torch.dtype = torch.float32,
) -> GraphBatch:
    """Stack molecules into one :class:`GraphBatch`.

    Parameters
    ----------
    topologies : sequence of Topology
        One frozen topology per molecule.
    positions : sequence of (n_atoms_k, 3) arrays, Å
        One geometry per molecule, matching its topology.
    dtype : torch.dtype
        Floating dtype of the positions.
    """
    if len(topologies) != len(positions):
        raise ValueError(f"{len(topologies)} topologies but {len(positions)} geometries")
    z, pos, edges, types, batch = [], [], [], [], []
    offset = 0
    for k, (topo, xyz) in enumerate(zip(topologies, positions)):
        xyz_t = torch.as_tensor(xyz).to(dtype)
        if xyz_t.shape != (topo.n_atoms, 3):
            raise ValueError(f"molecule {k}: positions of shape {tuple(xyz_t.shape)}, expected ({topo.n_atoms}, 3)")
        z.append(torch.from_numpy(topo.z))
        pos.append(xyz_t)
        edges.append(torch.from_numpy(topo.edge_index) + offset)
        types.append(torch.from_numpy(topo.edge_type))
        batch.append(torch.full((topo.n_atoms,), k, dtype=torch.long))
        offset += topo.n_atoms
    return GraphBatch(
        z=torch.cat(z),
        pos=torch.cat(pos),
        edge_index=torch.cat(edges, dim=1),
        edge_type=torch.cat(types),
        batch=torch.cat(batch),
        n_graphs=len(topologies),
        dense_edge_type=dense_types(topologies),
        hypergraph=collate_topology_hypergraphs(topologies),
    )


def repeat_topology(topology: Topology, positions: torch.Tensor) -> GraphBatch:
    """Batch many frames of one molecule quickly.

    Parameters
    ----------
    topology : Topology
    positions : (n_frames, n_atoms, 3) float, Å
    """
    n_frames, n_atoms, _ = positions.shape
    if n_atoms != topology.n_atoms:
        raise ValueError(f"frames have {n_atoms} atoms but the topology has {topology.n_atoms}")
    offsets = (torch.arange(n_frames) * n_atoms).repeat_interleave(topology.edge_index.shape[1])
    edge_index = torch.from_numpy(topology.edge_index).repeat(1, n_frames) + offsets
    mat = type_matrix(topology)
    return GraphBatch(
        z=torch.from_numpy(topology.z).repeat(n_frames),
        pos=positions.reshape(-1, 3),
        edge_index=edge_index,
        edge_type=torch.from_numpy(topology.edge_type).repeat(n_frames),
        batch=torch.arange(n_frames).repeat_interleave(n_atoms),
        n_graphs=n_frames,
        dense_edge_type=None if mat is None else mat.expand(n_frames, -1, -1),
        hypergraph=collate_topology_hypergraphs([topology] * n_frames),
    )


def collate_topology_hypergraphs(topologies: Sequence[Topology]) -> HypergraphBatch | None:
    """Collated hypergraphs of the topologies, or None unless every topology carries one."""
    if not topologies or any(t.hypergraph is None for t in topologies):
        return None
    from emgp_md.data.hypergraph_batch import collate_hypergraphs

    return collate_hypergraphs([t.hypergraph for t in topologies])  # type: ignore[misc]


def type_matrix(topology: Topology) -> torch.Tensor | None:
    """(n, n) long hop-type matrix of a fully connected topology (diagonal 0), else None."""
    n = topology.n_atoms
    if topology.edge_index.shape[1] != n * (n - 1):
        return None
    mat = torch.zeros(n, n, dtype=torch.long)
    mat[torch.from_numpy(topology.edge_index[0]), torch.from_numpy(topology.edge_index[1])] = torch.from_numpy(
        topology.edge_type
    )
    return mat


def dense_types(topologies: Sequence[Topology]) -> torch.Tensor | None:
    """(n_graphs, n, n) hop-type matrices when all molecules have ``n`` atoms and are fully connected."""
    if len({t.n_atoms for t in topologies}) != 1:
        return None
    mats = [type_matrix(t) for t in topologies]
    if any(m is None for m in mats):
        return None
    return torch.stack(mats)  # type: ignore[arg-type]
