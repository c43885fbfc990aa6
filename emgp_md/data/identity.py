"""Molecule identity: map a structure's atoms onto a model's reference bond graph.

A single-molecule model stores the bond graph of its reference frame. A structure is the same
molecule when its perceived bond graph is isomorphic to that graph with elements as node labels
(``networkx``'s VF2 matcher); the isomorphism then says which reference atom each atom is. Any
isomorphism will do: two of them differ by a graph automorphism, which leaves the hop-distance
edge types, and so the energy, unchanged.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from ase.data import chemical_symbols
from ase.formula import Formula

from emgp_md.errors import StructureError


def formula(z: np.ndarray) -> str:
    """Hill formula of atomic numbers ``z``, e.g. ``C2H6O``."""
    return Formula.from_list([chemical_symbols[int(v)] for v in z]).format("hill")


def bond_census(z: np.ndarray, bonds: np.ndarray) -> Counter[str]:
    """Bonds counted by element pair, e.g. ``{"C-H": 5, "C-C": 1, "C-O": 1, "H-O": 1}``."""
    names = [chemical_symbols[int(v)] for v in z]
    return Counter("-".join(sorted((names[int(i)], names[int(j)]))) for i, j in np.asarray(bonds).reshape(-1, 2))


def describe_graph(z: np.ndarray, bonds: np.ndarray) -> str:
    """One line naming a bond graph: formula, bond count and bonds by element pair."""
    census = ", ".join(f"{k}×{v}" for k, v in sorted(bond_census(z, bonds).items()))
    return f"{formula(z)} with {len(np.asarray(bonds).reshape(-1, 2))} bonds ({census or 'none'})"


def _graph(z: np.ndarray, bonds: np.ndarray):  # -> networkx.Graph
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from((i, {"z": int(v)}) for i, v in enumerate(z))
    g.add_edges_from((int(i), int(j)) for i, j in np.asarray(bonds).reshape(-1, 2))
    return g


def match_reference(z: np.ndarray, bonds: np.ndarray, ref_z: np.ndarray, ref_bonds: np.ndarray) -> np.ndarray:
    """Reference atom of each atom: ``perm`` with ``ref_z[perm] == z`` and bonds mapped onto bonds.

    Parameters
    ----------
    z : (n_atoms,) int
        Atomic numbers of the structure.
    bonds : (n_bonds, 2) int
        Its perceived bond graph.
    ref_z, ref_bonds
        The model's reference graph.

    Returns
    -------
    perm : (n_atoms,) int64
        ``perm[i]`` is the reference atom that atom ``i`` of the structure is.

    Raises
    ------
    StructureError
        The graphs are not isomorphic; the message names both and how their bonds differ.
    """
    from networkx.algorithms.isomorphism import GraphMatcher

    z, ref_z = np.asarray(z, dtype=np.int64), np.asarray(ref_z, dtype=np.int64)
    if sorted(z.tolist()) == sorted(ref_z.tolist()) and len(np.asarray(bonds).reshape(-1, 2)) == len(
        np.asarray(ref_bonds).reshape(-1, 2)
    ):
        matcher = GraphMatcher(_graph(z, bonds), _graph(ref_z, ref_bonds), node_match=lambda a, b: a["z"] == b["z"])
        mapping = next(matcher.isomorphisms_iter(), None)
        if mapping is not None:
            return np.array([mapping[i] for i in range(len(z))], dtype=np.int64)
    raise StructureError(_mismatch_message(z, bonds, ref_z, ref_bonds))


def _mismatch_message(z: np.ndarray, bonds: np.ndarray, ref_z: np.ndarray, ref_bonds: np.ndarray) -> str:
    ours, theirs = bond_census(z, bonds), bond_census(ref_z, ref_bonds)
    diff = [
        f"{k}: {ours.get(k, 0)} here, {theirs.get(k, 0)} in the model"
        for k in sorted(set(ours) | set(theirs))
        if ours.get(k, 0) != theirs.get(k, 0)
    ]
    detail = (
        "; bonds by element pair differ (" + "; ".join(diff) + ")"
        if diff
        else ("; same bond counts, different connectivity (another isomer)")
    )
    return (
        f"this structure is not the molecule of this model: its bond graph (perceived from the geometry "
        f"with covalent radii) is {describe_graph(z, bonds)}, the model's is {describe_graph(ref_z, ref_bonds)}"
        f"{detail}. If the geometry is distorted (a stretched or broken bond), relax it first or start "
        "from a sane geometry; for another molecule use a model trained on it (emgp-md learn / finetune)."
    )
