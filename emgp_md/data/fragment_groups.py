"""Bond perception and unbreakable chemical groups of SE3Set (docs/method.md §S1.2–S1.3), RDKit only.

Bonds come from one reference geometry with RDKit's ``rdDetermineBonds`` (the Jensen xyz2mol
algorithm the authors vendored: connectivity ``d_ab <= 1.3 (R_a + R_b)`` with RDKit's covalent
radii, no Hückel, charge 0 by default). Atom pairs are **unbreakable** when they lie

- (a) inside a functional group (:data:`FUNCTIONAL_GROUP_SMARTS`; matches sharing atoms or joined
  by a bond are merged),
- (b) inside a ring system (SSSR rings of at most :data:`MAX_RING_ATOMS` atoms, rings sharing atoms
  merged; a functional group touching a ring joins it through the shared atom),
- (c) across a bond of Kekulé order above ``topo_bond_order_threshold`` (1.0: double, triple),
- (d) across any bond to hydrogen.

**Groups** are the connected components of the unbreakable pairs, so only single heavy-atom bonds
outside rings and functional groups are ever cut. These steps are purely topological and run once
per molecule. RDKit is imported inside the functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Unbreakable functional groups (adapted from openff-fragmenter by the authors, ``base.py``).
FUNCTIONAL_GROUP_SMARTS: dict[str, str] = {
    "hydrazine": "[NX3:1][NX3:2]",
    "hydrazone": "[NX3:1][NX2:2]",
    "nitric_oxide": "[N:1]-[O:2]",
    "amide": "[#7:1][#6:2](=[#8:3])",
    "amide_n": "[#7:1][#6:2](-[O-:3])",
    "amide_2": "[NX3:1][CX3:2](=[OX1:3])[NX3:4]",
    "aldehyde": "[CX3H1:1](=[O:2])[#6:3]",
    "sulfoxide_1": "[#16X3:1]=[OX1:2]",
    "sulfoxide_2": "[#16X3+:1][OX1-:2]",
    "sulfonyl": "[#16X4:1](=[OX1:2])=[OX1:3]",
    "sulfinic_acid": "[#16X3:1](=[OX1:2])[OX2H,OX1H0-:3]",
    "sulfinamide": "[#16X4:1](=[OX1:2])(=[OX1:3])([NX3R0:4])",
    "sulfonic_acid": "[#16X4:1](=[OX1:2])(=[OX1:3])[OX2H,OX1H0-:4]",
    "phosphine_oxide": "[PX4:1](=[OX1:2])([#6:3])([#6:4])([#6:5])",
    "phosphonate": "[P:1](=[OX1:2])([OX2H,OX1-:3])([OX2H,OX1-:4])",
    "phosphate": "[PX4:1](=[OX1:2])([#8:3])([#8:4])([#8:5])",
    "carboxylic_acid": "[CX3:1](=[O:2])[OX1H0-,OX2H1:3]",
    "nitro_1": "[NX3+:1](=[O:2])[O-:3]",
    "nitro_2": "[NX3:1](=[O:2])=[O:3]",
    "ester": "[CX3:1](=[O:2])[OX2H0:3]",
    "tri_halide": "[#6:1]([F,Cl,I,Br:2])([F,Cl,I,Br:3])([F,Cl,I,Br:4])",
    "hydroxyl": "[#8:1]-[#1:2]",
    "water": "[#1:1]-[#8:2]-[#1:3]",
}
MAX_RING_ATOMS = 8


def perceive_bonds(z: np.ndarray, pos_A: np.ndarray, charge: int = 0, name: str | None = None) -> Any:
    """RDKit molecule with bonds and orders perceived from one geometry (``DetermineBonds``).

    Parameters
    ----------
    z : (n_atoms,) int
        Atomic numbers.
    pos_A : (n_atoms, 3) float, Å
        Reference geometry.
    charge : int
        Total charge of the molecule.
    name : str, optional
        Used in error messages (default: the chemical formula).

    Returns
    -------
    rdkit.Chem.Mol
        Sanitized molecule with explicit hydrogens and one conformer, atoms in input order.

    Raises
    ------
    ValueError
        Non-finite positions, or bond orders could not be assigned; the message names the molecule
        and suspicious atoms.
    """
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    z = np.asarray(z, dtype=np.int64).reshape(-1)
    pos = np.asarray(pos_A, dtype=np.float64).reshape(-1, 3)
    name = name or Atoms(numbers=z).get_chemical_formula()
    bad = np.nonzero(~np.isfinite(pos).all(axis=1))[0]
    if len(bad) or len(pos) != len(z):
        raise ValueError(
            f"{name}: need finite positions for {len(z)} atoms; got shape {pos.shape}, non-finite rows {bad.tolist()}"
        )
    mol = _bare_mol(z, pos)
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=int(charge))
    except Exception as exc:  # RDKit raises ValueError or RuntimeError
        raise ValueError(
            f"RDKit could not perceive the bonds of {name} (charge {charge}): {exc}. {_valence_hint(z, pos)}"
        ) from exc
    n_parts = len(Chem.GetMolFrags(mol))
    if n_parts > 1:
        log.warning("%s has %d disconnected parts; each is fragmented separately", name, n_parts)
    return mol


def _bare_mol(z: np.ndarray, pos: np.ndarray) -> Any:
    """RDKit molecule with atoms and one conformer, no bonds."""
    from rdkit import Chem

    rw = Chem.RWMol()
    for v in z:
        rw.AddAtom(Chem.Atom(int(v)))
    conf = Chem.Conformer(len(z))
    for i, p in enumerate(pos):
        conf.SetAtomPosition(i, p.tolist())
    rw.AddConformer(conf, assignId=True)
    return rw.GetMol()


def _valence_hint(z: np.ndarray, pos: np.ndarray) -> str:
    """Atoms with no neighbour, or more neighbours than any valence of their element allows."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    probe = _bare_mol(z, pos)
    rdDetermineBonds.DetermineConnectivity(probe)
    table = Chem.GetPeriodicTable()
    bad = []
    for atom in probe.GetAtoms():
        valences = [v for v in table.GetValenceList(atom.GetAtomicNum()) if v >= 0]
        deg = atom.GetDegree()
        if deg == 0 and probe.GetNumAtoms() > 1:
            bad.append(f"{atom.GetSymbol()}{atom.GetIdx()} (no neighbour)")
        elif valences and deg > max(valences) + 1:  # +1: one dative/charged bond is allowed
            bad.append(f"{atom.GetSymbol()}{atom.GetIdx()} ({deg} neighbours)")
    advice = "check the total charge (charge=...), or pass an RDKit molecule with known bonds (mol=...)"
    if not bad:
        return f"No atom has an impossible neighbour count; {advice}."
    return (
        f"Suspicious atoms (symbol+index, neighbours within 1.3x covalent radii): {', '.join(bad)}; "
        f"check the geometry, or {advice}."
    )


@dataclass(frozen=True)
class ChemicalGroups:
    """Unbreakable groups of one molecule (topological; docs/method.md §S1.3).

    Attributes
    ----------
    bonds : (n_bonds, 2) int64
        Perceived bonds ``i < j``.
    group_of_atom : (n_atoms,) int64
        Group label of each atom; groups are numbered by their smallest atom index.
    functional_groups : tuple of tuple of int
        Merged functional-group atom sets (matches sharing atoms or bonded to each other).
    ring_systems : tuple of tuple of int
        Ring systems (SSSR rings of at most 8 atoms, fused or spiro rings merged), hydrogens excluded.
    """

    bonds: np.ndarray
    group_of_atom: np.ndarray
    functional_groups: tuple[tuple[int, ...], ...]
    ring_systems: tuple[tuple[int, ...], ...]


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union_all(self, atoms: Any) -> None:
        atoms = [int(a) for a in atoms]
        for a in atoms[1:]:
            self.parent[self.find(a)] = self.find(atoms[0])

    def sets(self) -> list[tuple[int, ...]]:
        out: dict[int, list[int]] = {}
        for a in range(len(self.parent)):
            out.setdefault(self.find(a), []).append(a)
        return sorted(tuple(v) for v in out.values())


def _matcher_mol(mol: Any) -> tuple[Any, np.ndarray]:
    """Copy for SMARTS matching (MDL aromaticity, as openff does) and Kekulé order of each bond."""
    from rdkit import Chem

    out = Chem.Mol(mol)
    try:
        Chem.Kekulize(out, clearAromaticFlags=True)
        Chem.SanitizeMol(out, Chem.SanitizeFlags.SANITIZE_ALL ^ Chem.SanitizeFlags.SANITIZE_SETAROMATICITY)
    except Exception as exc:  # RDKit raises several exception types
        raise ValueError(f"the RDKit molecule cannot be kekulized or sanitized: {exc}") from exc
    kekule_orders = np.asarray([b.GetBondTypeAsDouble() for b in out.GetBonds()], dtype=np.float64)
    Chem.SetAromaticity(out, Chem.AromaticityModel.AROMATICITY_MDL)
    return out, kekule_orders


def _functional_groups(mol: Any) -> list[tuple[int, ...]]:
    """SMARTS matches merged when they share atoms or are joined by a bond."""
    from rdkit import Chem

    fg = _UnionFind(mol.GetNumAtoms())
    in_fg = np.zeros(mol.GetNumAtoms(), dtype=bool)
    for smarts in FUNCTIONAL_GROUP_SMARTS.values():
        for match in mol.GetSubstructMatches(Chem.MolFromSmarts(smarts), uniquify=True, maxMatches=100000):
            fg.union_all(match)
            in_fg[list(match)] = True
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if in_fg[i] and in_fg[j]:
            fg.union_all((i, j))
    return [s for s in fg.sets() if in_fg[s[0]]]


def _ring_systems(mol: Any) -> list[tuple[int, ...]]:
    """SSSR rings of at most :data:`MAX_RING_ATOMS` atoms, merged when they share atoms."""
    from rdkit import Chem

    rings = _UnionFind(mol.GetNumAtoms())
    in_ring = np.zeros(mol.GetNumAtoms(), dtype=bool)
    for ring in Chem.GetSSSR(Chem.Mol(mol)):
        if len(ring) <= MAX_RING_ATOMS:
            rings.union_all(ring)
            in_ring[list(ring)] = True
    return [s for s in rings.sets() if in_ring[s[0]]]


def chemical_groups(mol: Any, topo_bond_order_threshold: float = 1.0) -> ChemicalGroups:
    """Groups = connected components of the unbreakable atom pairs of an RDKit molecule.

    Parameters
    ----------
    mol : rdkit.Chem.Mol
        Molecule with explicit hydrogens and bond orders (e.g. from :func:`perceive_bonds`).
    topo_bond_order_threshold : float
        Bonds of Kekulé order strictly above this are unbreakable.

    Raises
    ------
    ValueError
        The molecule cannot be kekulized.
    """
    matcher, kekule_orders = _matcher_mol(mol)
    functional_groups = _functional_groups(matcher)
    ring_systems = _ring_systems(matcher)
    bonds, unbreakable = [], []
    for bond in matcher.GetBonds():
        i, j = sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
        bonds.append((i, j))
        is_xh = 1 in (bond.GetBeginAtom().GetAtomicNum(), bond.GetEndAtom().GetAtomicNum())
        if is_xh or kekule_orders[bond.GetIdx()] > topo_bond_order_threshold:
            unbreakable.append((i, j))
    groups = _UnionFind(mol.GetNumAtoms())
    for atom_set in functional_groups + ring_systems + unbreakable:
        groups.union_all(atom_set)
    group_of_atom = np.empty(mol.GetNumAtoms(), dtype=np.int64)
    for label, atom_set in enumerate(groups.sets()):
        group_of_atom[list(atom_set)] = label
    return ChemicalGroups(
        bonds=np.asarray(sorted(bonds), dtype=np.int64).reshape(-1, 2),
        group_of_atom=group_of_atom,
        functional_groups=tuple(functional_groups),
        ring_systems=tuple(ring_systems),
    )
