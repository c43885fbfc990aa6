"""The one place ASE ``Atoms`` become model input: validation and the frozen topology."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

from emgp_md.data.features import validate_atomic_numbers
from emgp_md.data.topology import Topology, topology_from_positions

if TYPE_CHECKING:
    from emgp_md.data.fragment import FragmentOptions

log = logging.getLogger(__name__)


def check_atoms(atoms: Atoms) -> None:
    """Reject structures the models cannot evaluate, naming the offending value.

    Raises
    ------
    ValueError
        Periodic boundary conditions, non-finite positions, or atomic numbers out of range.
    """
    if len(atoms) == 0:
        raise ValueError("the structure has no atoms")
    if np.any(atoms.pbc):
        raise ValueError(
            f"periodic boundary conditions are not supported (pbc={atoms.pbc.tolist()}); "
            "emgp-md models are for isolated molecules: set atoms.pbc = False"
        )
    pos = atoms.positions
    bad = np.nonzero(~np.isfinite(pos).all(axis=1))[0]
    if len(bad):
        raise ValueError(f"non-finite positions for atom index(es) {bad.tolist()}: {pos[bad].tolist()}")
    validate_atomic_numbers(atoms.numbers)


def topology_for_atoms(atoms: Atoms, reference: dict[str, Any] | None = None,
                       hypergraph_options: FragmentOptions | None = None) -> Topology:
    """Frozen topology for ``atoms``.

    Uses the model's stored reference topology when the atomic numbers match it atom by atom;
    otherwise derives the bond graph from the current geometry (distances <= 1.6 Å) and freezes it.

    Parameters
    ----------
    atoms : ase.Atoms
    reference : dict, optional
        ``Topology.to_dict()`` stored with the model; its hypergraph, when it holds one, comes along.
    hypergraph_options : FragmentOptions, optional
        Given for models that need a hypergraph (SE3Set): the topology then always carries one, the
        reference's when it matches, else one built from the current geometry and frozen.

    Raises
    ------
    ValueError
        If a hypergraph is needed and cannot be built (bond perception failed, unsupported element).
    """
    if reference is not None and list(reference["z"]) == atoms.numbers.tolist():
        topo = Topology.from_dict(reference)  # with the reference hypergraph when it holds one
    else:
        log.info("bond graph of %s frozen from the current geometry (bonds <= 1.6 Å)", atoms.get_chemical_formula())
        topo = topology_from_positions(atoms.numbers, atoms.positions)
    if hypergraph_options is not None and topo.hypergraph is None:
        log.info("hypergraph of %s built from the current geometry and frozen", atoms.get_chemical_formula())
        topo = attach_hypergraph(topo, atoms.positions, hypergraph_options)
    return topo


def attach_hypergraph(topology: Topology, pos_A: np.ndarray, options: FragmentOptions | None = None, *,
                      mol: Any = None, charge: int = 0) -> Topology:
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
