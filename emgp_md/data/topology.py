"""Frozen molecular topology: fully connected edges with 4 hop-distance edge types.

3D-EMGP (docs/method.md §1.1) connects every ordered pair of atoms of a molecule and labels each edge
with the shortest-path hop distance ``c`` in the bond graph: 1, 2 or 3 bonds, and 0 for "further
than 3 bonds or not connected". The bond graph comes from an RDKit molecule when one is given and
otherwise from the geometry with element-aware covalent radii (:mod:`emgp_md.data.bonds`; the
authors' single 1.6 Å cutoff, :func:`bonds_from_distances`, gives the same graphs on the rMD17
reference frames). The topology is computed **once** from a reference geometry and then frozen,
so the energy stays a smooth function of positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from emgp_md.data.hypergraph import Hypergraph

BOND_CUTOFF_A = 1.6
MAX_HOP = 3
N_EDGE_TYPES = MAX_HOP + 1


@dataclass(frozen=True)
class Topology:
    """Frozen graph of one molecule.

    Attributes
    ----------
    z : (n_atoms,) int64
        Atomic numbers, in atom order.
    bonds : (n_bonds, 2) int64
        Undirected bonds ``i < j`` of the bond graph.
    edge_index : (2, n_atoms*(n_atoms-1)) int64
        All ordered pairs ``i != j``; row 0 receives the message (the authors' ``row``).
    edge_type : (n_edges,) int64
        Hop category 0..3 of each edge.
    hypergraph : Hypergraph, optional
        Frozen SE3Set hypergraph of the molecule (same atoms, same order), for backbones that need
        one (``needs_hypergraph``); None otherwise.
    """

    z: np.ndarray
    bonds: np.ndarray
    edge_index: np.ndarray
    edge_type: np.ndarray
    hypergraph: Hypergraph | None = None

    def __post_init__(self) -> None:
        if self.hypergraph is not None and not np.array_equal(self.hypergraph.z, self.z):
            raise ValueError(
                f"the hypergraph's atoms {self.hypergraph.z.tolist()} do not match the topology's "
                f"{np.asarray(self.z).tolist()}"
            )

    @property
    def n_atoms(self) -> int:
        return int(self.z.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (atomic numbers, bonds, and the hypergraph when there is one); edges are
        rebuilt on load."""
        out: dict[str, Any] = {"z": self.z.tolist(), "bonds": self.bonds.tolist()}
        if self.hypergraph is not None:
            out["hypergraph"] = self.hypergraph.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Topology:
        topo = topology_from_bonds(np.asarray(data["z"]), np.asarray(data["bonds"]).reshape(-1, 2))
        if data.get("hypergraph") is None:
            return topo
        from dataclasses import replace

        from emgp_md.data.hypergraph import Hypergraph

        return replace(topo, hypergraph=Hypergraph.from_dict(data["hypergraph"]))


def bonds_from_distances(pos: np.ndarray, cutoff_A: float = BOND_CUTOFF_A) -> np.ndarray:
    """Bonds ``(i, j), i < j`` with interatomic distance ``<= cutoff_A``.

    Parameters
    ----------
    pos : (n_atoms, 3) float, Å
    cutoff_A : float, Å
    """
    pos = np.asarray(pos, dtype=np.float64)
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    i, j = np.nonzero(np.triu(dist <= cutoff_A, k=1))
    return np.stack([i, j], axis=1).astype(np.int64)


def bonds_from_rdkit(mol: Any) -> np.ndarray:
    """Bonds of an RDKit molecule (explicit hydrogens expected), bond orders discarded."""
    pairs = sorted(
        (min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        for b in mol.GetBonds()
    )
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def hop_matrix(n_atoms: int, bonds: np.ndarray, max_hop: int = MAX_HOP) -> np.ndarray:
    """(n_atoms, n_atoms) matrix of hop categories: shortest path length if ``<= max_hop``, else 0."""
    adj = np.zeros((n_atoms, n_atoms), dtype=np.int64)
    if len(bonds):
        adj[bonds[:, 0], bonds[:, 1]] = 1
        adj[bonds[:, 1], bonds[:, 0]] = 1
    hops = np.zeros((n_atoms, n_atoms), dtype=np.int64)
    reach = np.eye(n_atoms, dtype=bool)
    power = np.eye(n_atoms, dtype=np.int64)
    for k in range(1, max_hop + 1):
        power = np.minimum(power @ adj, 1)
        new = (power > 0) & ~reach
        hops[new] = k
        reach |= new
    return hops


def topology_from_bonds(z: np.ndarray, bonds: np.ndarray) -> Topology:
    """Build the fully connected, hop-typed topology from atomic numbers and bonds."""
    z = np.asarray(z, dtype=np.int64).reshape(-1)
    n = z.shape[0]
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    if len(bonds) and (bonds.min() < 0 or bonds.max() >= n):
        raise ValueError(f"bond indices must lie in 0..{n - 1}, got range {bonds.min()}..{bonds.max()}")
    row, col = np.nonzero(~np.eye(n, dtype=bool))
    hops = hop_matrix(n, bonds)
    return Topology(
        z=z,
        bonds=bonds,
        edge_index=np.stack([row, col]).astype(np.int64),
        edge_type=hops[row, col].astype(np.int64),
    )


def topology_from_positions(z: np.ndarray, pos: np.ndarray) -> Topology:
    """Topology of a reference geometry, bonds perceived with covalent radii (:func:`~emgp_md.data.bonds.perceive_bonds`)."""
    from emgp_md.data.bonds import perceive_bonds

    return topology_from_bonds(z, perceive_bonds(z, pos))


def topology_from_rdkit(mol: Any) -> Topology:
    """Topology with bonds taken from an RDKit molecule (the pretraining recipe)."""
    z = np.asarray([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    return topology_from_bonds(z, bonds_from_rdkit(mol))
