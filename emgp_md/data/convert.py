"""The one place ASE ``Atoms`` become model input: validation and the frozen topology."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from emgp_md.data.bonds import OVERLAP_FACTOR, close_pairs, connected_components, perceive_bonds
from emgp_md.data.features import validate_atomic_numbers
from emgp_md.data.identity import formula, match_reference
from emgp_md.data.topology import Topology, topology_from_bonds
from emgp_md.errors import StructureError

if TYPE_CHECKING:
    from emgp_md.data.fragment import FragmentOptions
    from emgp_md.data.hypergraph import Hypergraph

log = logging.getLogger(__name__)


MAX_COORDINATE_A = 1.0e4


def check_atoms(atoms: Atoms, overlap_factor: float = OVERLAP_FACTOR) -> None:
    """Reject structures the models cannot evaluate, naming the offending atoms and values.

    Parameters
    ----------
    atoms : ase.Atoms
    overlap_factor : float
        Atoms closer than this multiple of their covalent-radius sum are refused as overlapping.

    Raises
    ------
    StructureError (a ValueError)
        No atoms, periodic boundary conditions, non-finite positions, a coordinate beyond
        ``MAX_COORDINATE_A`` (1e4 Å), atomic numbers out of range, or overlapping atoms.
    """
    check_coordinates(atoms)
    refuse_overlaps(atoms, close_pairs(atoms.numbers, atoms.positions, overlap_factor), overlap_factor)


def check_coordinates(atoms: Atoms) -> None:
    """The checks of :func:`check_atoms` that need no pair distances (each call of a run makes them;
    the overlap check then comes from :class:`~emgp_md.data.bonds.BondWatch`'s distances)."""
    if len(atoms) == 0:
        raise StructureError("the structure has no atoms")
    if np.any(atoms.pbc):
        raise StructureError(
            f"periodic boundary conditions are not supported (pbc={atoms.pbc.tolist()}); "
            "emgp-md models are for isolated molecules: set atoms.pbc = False"
        )
    pos = atoms.positions
    bad = np.nonzero(~np.isfinite(pos).all(axis=1))[0]
    if len(bad):
        raise StructureError(f"non-finite positions for atom index(es) {bad.tolist()}: {pos[bad].tolist()}")
    far = np.nonzero(np.abs(pos).max(axis=1) > MAX_COORDINATE_A)[0]
    if len(far):
        raise StructureError(
            f"coordinates beyond ±{MAX_COORDINATE_A:g} Å for atom index(es) {far[:10].tolist()} "
            f"(e.g. {pos[far[0]].tolist()}); positions must be in Å: check the units of the input file"
        )
    try:
        validate_atomic_numbers(atoms.numbers)
    except ValueError as exc:
        raise StructureError(str(exc)) from None


def refuse_overlaps(
    atoms: Atoms, overlaps: list[tuple[int, int, float]], overlap_factor: float = OVERLAP_FACTOR
) -> None:
    """Raise :class:`StructureError` naming overlapping pairs ``(i, j, d_ij Å)``, if there are any."""
    if overlaps:
        sym = atoms.get_chemical_symbols()
        listing = ", ".join(f"{sym[i]}{i}–{sym[j]}{j} at {d:.3f} Å" for i, j, d in overlaps[:5])
        raise StructureError(
            f"{len(overlaps)} pair(s) of atoms overlap (closer than {overlap_factor} × their covalent-radius "
            f"sum): {listing}; the structure is unphysical (duplicated atoms or wrong units?)"
        )


def check_single_molecule(atoms: Atoms, bonds: np.ndarray) -> None:
    """Refuse several disconnected fragments (a model for one molecule at a time).

    Raises
    ------
    StructureError
        Naming each fragment's formula and atom indices.
    """
    parts = connected_components(len(atoms), bonds)
    if len(parts) > 1:
        listing = "; ".join(
            f"{formula(atoms.numbers[p])} (atoms {p[:8].tolist()}{'…' if len(p) > 8 else ''})" for p in parts[:6]
        )
        raise StructureError(
            f"the structure {atoms.get_chemical_formula(mode='hill')} is {len(parts)} disconnected fragments "
            f"(bonds perceived with covalent radii): {listing}. This model is for one molecule at a time: "
            "evaluate the fragments separately, or check for a broken bond or wrong units"
        )


def topology_for_atoms(
    atoms: Atoms,
    reference: dict[str, Any] | None = None,
    hypergraph_options: FragmentOptions | None = None,
    *,
    allow_fragments: bool = False,
) -> Topology:
    """Frozen topology for ``atoms``, its bond graph perceived from the geometry (covalent radii).

    With a model's ``reference`` graph, the perceived graph must be isomorphic to it (elements as
    labels); the structure's atoms may come in any order. The hop-distance edge types are then
    those of the reference mapped onto the structure's atoms, so the energy does not depend on
    the atom order.

    Parameters
    ----------
    atoms : ase.Atoms
    reference : dict, optional
        ``Topology.to_dict()`` stored with the model; its hypergraph, when it holds one, comes along
        (relabelled to the structure's atom order).
    hypergraph_options : FragmentOptions, optional
        Given for models that need a hypergraph (SE3Set): the topology then always carries one, the
        reference's when there is one, else one built from the current geometry and frozen.
    allow_fragments : bool
        Accept several disconnected fragments (models trained on such structures only).

    Raises
    ------
    StructureError
        Several fragments, or a graph not isomorphic to the reference (message names both).
    ValueError
        If a hypergraph is needed and cannot be built (bond perception failed, unsupported element).
    """
    z = np.asarray(atoms.numbers, dtype=np.int64)
    bonds = perceive_bonds(z, atoms.positions)
    if not allow_fragments:
        check_single_molecule(atoms, bonds)
    topo = topology_from_bonds(z, bonds)
    if reference is not None:
        ref = Topology.from_dict(reference)
        perm = match_reference(z, bonds, ref.z, ref.bonds)
        if ref.hypergraph is not None:
            topo = replace(topo, hypergraph=permute_hypergraph(ref.hypergraph, perm))
    if hypergraph_options is not None and topo.hypergraph is None:
        log.info("hypergraph of %s built from the current geometry and frozen", atoms.get_chemical_formula())
        topo = attach_hypergraph(topo, atoms.positions, hypergraph_options)
    return topo


def attach_hypergraph(
    topology: Topology, pos_A: np.ndarray, options: FragmentOptions | None = None, *, mol: Any = None, charge: int = 0
) -> Topology:
    """The topology with an SE3Set hypergraph built once from the reference geometry ``pos_A``.

    The hypergraph is frozen: later frames reuse it, so energies stay smooth in the positions
    (:func:`emgp_md.data.hypergraph.rebuild_hypergraph` gives the authors' per-frame variant).

    Parameters
    ----------
    topology : Topology
    pos_A : (n_atoms, 3) float, Å
        Reference geometry.
    options : FragmentOptions, optional
        Fragmenter settings (default: the authors' MD17 template).
    mol : rdkit.Chem.Mol, optional
        Molecule with known bonds and orders (atoms in topology order) instead of perceiving them.
    charge : int
        Total charge for bond perception.

    Raises
    ------
    ValueError
        Bond perception failed or an element is outside the fragmenter's table (message names it).
    """
    from emgp_md.data.hypergraph import build_hypergraph

    atoms = Atoms(numbers=topology.z, positions=np.asarray(pos_A, dtype=np.float64))
    return replace(topology, hypergraph=build_hypergraph(atoms, options, mol=mol, charge=charge))


def permute_hypergraph(reference: Hypergraph, perm: np.ndarray) -> Hypergraph:
    """The reference hypergraph relabelled for a structure whose atom ``i`` is reference atom ``perm[i]``."""
    from emgp_md.data.hypergraph import Hypergraph

    perm = np.asarray(perm, dtype=np.int64)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    bonds = np.sort(inv[reference.bonds], axis=1)
    bonds = bonds[np.lexsort((bonds[:, 1], bonds[:, 0]))]
    frags = [np.sort(inv[f]) for f in reference.fragments]
    return Hypergraph(
        z=reference.z[perm],
        bonds=bonds,
        group_of_atom=reference.group_of_atom[perm],
        kernel_of_atom=reference.kernel_of_atom[perm],
        fragment_ptr=reference.fragment_ptr,
        fragment_atoms=np.concatenate(frags) if frags else reference.fragment_atoms,
        anchored_fragment=reference.anchored_fragment,
        e2v_index=np.stack([reference.e2v_index[0], inv[reference.e2v_index[1]]]),
        v2e_index=np.stack([inv[reference.v2e_index[0]], reference.v2e_index[1]]),
        options=reference.options,
    )
